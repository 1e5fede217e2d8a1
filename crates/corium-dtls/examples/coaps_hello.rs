//! A `coaps://` server in a few lines: one tokio UDP socket, one `DtlsEndpoint`, every CoAP
//! request answered with 2.05 "hello". Shows the driving loop a runtime needs.
//!
//! ```sh
//! cargo run -p corium-dtls --example coaps_hello -- 127.0.0.1:5684 CoAP:secretPSK
//! coap-client-openssl -u CoAP -k secretPSK coaps://127.0.0.1/hello
//! ```

use std::time::Duration;

use corium_dtls::{DtlsConfig, DtlsEndpoint, Event, Instant, PskMap, ServerConfig};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::UdpSocket;

/// 2.05 "hello" for a CoAP request (RFC 7252 §3): piggybacked on the ACK of a CON, a NON
/// for a NON.
fn answer(request: &[u8]) -> Option<Vec<u8>> {
    let &[b0, code, m0, m1, ..] = request else {
        return None;
    };
    let tkl = usize::from(b0 & 0x0f);
    if b0 >> 6 != 1 || tkl > 8 || code == 0 || code >> 5 != 0 {
        return None;
    }
    let ty = match (b0 >> 4) & 3 {
        0 => 2,
        1 => 1,
        _ => return None,
    };
    let mut out = vec![0x40 | (ty << 4) | tkl as u8, 0x45, m0, m1];
    out.extend_from_slice(request.get(4..4 + tkl)?);
    out.extend_from_slice(b"\xffhello");
    Some(out)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:5684".into());
    let psk = args.next().unwrap_or_else(|| "CoAP:secretPSK".into());
    let keys = PskMap::parse(&psk)?;
    let server = ServerConfig::psk(keys).with_identity_hint("CoAP");
    let mut dtls = DtlsEndpoint::new(
        DtlsConfig::default(),
        Some(server),
        &mut StdRng::from_entropy(),
    )?;
    let socket = UdpSocket::bind(&bind).await?;
    eprintln!("coaps server on {}", socket.local_addr()?);
    let start = std::time::Instant::now();
    let now = || Instant::from_duration(start.elapsed());
    let mut buf = vec![0u8; 65_536];
    loop {
        while let Some((to, bytes)) = dtls.poll_transmit() {
            socket.send_to(&bytes, to).await?;
        }
        while let Some(event) = dtls.poll_event() {
            match event {
                Event::ApplicationData { session, bytes } => {
                    if let Some(response) = answer(&bytes) {
                        dtls.send(now(), session, &response)?;
                    }
                }
                other => eprintln!("{other:?}"),
            }
        }
        let wake = dtls
            .poll_timeout()
            .map(|t| start + Duration::from_nanos(t.as_nanos()))
            .unwrap_or_else(|| std::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, from) = r?;
                dtls.handle_datagram(now(), from, &buf[..n]);
            }
            _ = tokio::time::sleep_until(wake.into()) => dtls.handle_timeout(now()),
        }
    }
}
