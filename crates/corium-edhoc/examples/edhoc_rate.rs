//! EDHOC handshakes per second (RFC 9528, cipher suite 2, method 3), in one process:
//! an initiator and a responder run complete handshakes back to back on one thread
//! for `SECONDS` (default 5), each with fresh ephemeral keys, and the time spent on
//! each side is summed separately. The responder's share is what a server spends per
//! client; the pair's total is what one core does for both sides.
//!
//! ```text
//! cargo run --release -p corium-edhoc --example edhoc_rate -- [SECONDS]
//! ```
//!
//! The last line is machine-readable:
//! `RESULT handshakes=N pair_per_s=F responder_per_s=F initiator_per_s=F`.

use std::time::{Duration, Instant};

use corium_edhoc::{message_1_c_i, Initiator, OwnCredential, PeerCredentials, Responder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: f64 = match std::env::args().nth(1) {
        Some(s) => s
            .parse()
            .map_err(|_| format!("not a number of seconds: {s}"))?,
        None => 5.0,
    };
    let (i_key, i_ccs) = OwnCredential::generate(b"\x2b", "initiator")?;
    let (r_key, r_ccs) = OwnCredential::generate(b"\x32", "responder")?;
    let initiator = Initiator::new(
        OwnCredential::new(&i_key, &i_ccs)?,
        PeerCredentials::new().with_ccs(&r_ccs)?,
    );
    let responder = Responder::new(
        OwnCredential::new(&r_key, &r_ccs)?,
        PeerCredentials::new().with_ccs(&i_ccs)?,
    );
    let budget = Duration::from_secs_f64(seconds);
    let (mut on_initiator, mut on_responder) = (Duration::ZERO, Duration::ZERO);
    let mut handshakes = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        let t0 = Instant::now();
        let (wait_m2, message_1) = initiator.message_1(None)?;
        let t1 = Instant::now();
        // C_R differs from the initiator's random C_I (RFC 9528 §3.3.2).
        let c_r: &[u8] = if message_1_c_i(&message_1).as_deref() == Some(&[0x27]) {
            &[0x28]
        } else {
            &[0x27]
        };
        let (wait_m3, message_2) = responder.process_message_1(&message_1, c_r)?;
        let t2 = Instant::now();
        let (wait_m4, message_3) = wait_m2.process_message_2(&message_2)?;
        let t3 = Instant::now();
        let (r_session, message_4) = wait_m3.process_message_3(&message_3)?;
        let t4 = Instant::now();
        let i_session = wait_m4.process_message_4(&message_4)?;
        let t5 = Instant::now();
        // The keys must agree, or the figure would be for a broken handshake.
        let client = i_session.oscore_context().build()?;
        let server = r_session.oscore_context().build()?;
        if client.sender_id() != server.recipient_id() {
            return Err("the two sides derived different OSCORE contexts".into());
        }
        on_initiator += (t1 - t0) + (t3 - t2) + (t5 - t4);
        on_responder += (t2 - t1) + (t4 - t3);
        handshakes += 1;
    }
    let per_s = |d: Duration| handshakes as f64 / d.as_secs_f64();
    let pair = per_s(on_initiator + on_responder);
    println!(
        "{handshakes} handshakes in {:.1} s on one thread: {pair:.0}/s for both sides, \
         responder alone {:.0}/s ({:.0} µs each), initiator alone {:.0}/s",
        start.elapsed().as_secs_f64(),
        per_s(on_responder),
        on_responder.as_secs_f64() * 1e6 / handshakes as f64,
        per_s(on_initiator),
    );
    println!(
        "RESULT handshakes={handshakes} pair_per_s={pair:.1} responder_per_s={:.1} initiator_per_s={:.1}",
        per_s(on_responder),
        per_s(on_initiator)
    );
    Ok(())
}
