//! Instruction-count driver for the sans-IO endpoint (issue 8, "Hot path"): serves `N`
//! GET `/test` requests from one peer, each through `handle_datagram` →
//! `poll_event` → `respond` (2.05, short payload) → `poll_transmit`, as the runtime
//! does, with the server's default configuration (amplification limit on). The virtual
//! clock advances 100 µs per request, so deduplication entries expire as in a real run.
//! `bench/callgrind.sh` runs it under `valgrind --tool=callgrind` with two values of
//! `N` and divides the difference in instructions by the difference in `N`.
//!
//! ```sh
//! cargo run --release -p corium-proto --example endpoint_hot -- 100000 [non]
//! ```

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use corium_proto::wire::Code;
use corium_proto::{AmplificationLimit, Endpoint, EndpointConfig, Event, Instant, Response};
use rand::{rngs::StdRng, SeedableRng};

/// GET `/test`, CON or NON, with a 4-byte token.
fn request(confirmable: bool, mid: u16, token: u32) -> [u8; 13] {
    let ty: u8 = if confirmable { 0 } else { 1 };
    let [m0, m1] = mid.to_be_bytes();
    let [t0, t1, t2, t3] = token.to_be_bytes();
    [
        0x40 | (ty << 4) | 4,
        0x01,
        m0,
        m1,
        t0,
        t1,
        t2,
        t3,
        0xB4,
        b't',
        b'e',
        b's',
        b't',
    ]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().map_or(100_000, |a| a.parse().expect("N"));
    let confirmable = args.next().as_deref() != Some("non");
    let config = EndpointConfig {
        amplification_limit: Some(AmplificationLimit::default()),
        ..EndpointConfig::default()
    };
    let mut endpoint: Endpoint<SocketAddr> =
        Endpoint::new(config, Box::new(StdRng::seed_from_u64(1)));
    let peer: SocketAddr = "192.0.2.1:40000".parse().expect("peer");
    let mut now = Instant::ZERO;
    let mut sent = 0usize;
    for i in 0..n {
        now += Duration::from_micros(100);
        let datagram = request(confirmable, i as u16, i);
        endpoint.handle_datagram(now, peer, black_box(&datagram));
        while let Some(event) = endpoint.poll_event() {
            if let Event::Request(incoming) = event {
                let response = Response::with_payload(Code::CONTENT, "hello");
                let _ = endpoint.respond(now, incoming.id, response);
            }
        }
        while let Some(transmit) = endpoint.poll_transmit() {
            sent += black_box(transmit.payload.len());
        }
        if endpoint.poll_timeout().is_some_and(|t| t <= now) {
            endpoint.handle_timeout(now);
        }
    }
    println!(
        "endpoint_hot n={n} confirmable={confirmable} bytes_sent={sent} {:?}",
        endpoint.stats()
    );
}
