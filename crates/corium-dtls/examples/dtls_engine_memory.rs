//! Resident memory per idle established PSK server session, native engine or dimpl
//! (no sockets; one server endpoint, N client sessions from N addresses, each client
//! endpoint dropped after its handshake). One engine per run, so that one engine's freed
//! memory does not hide the other's growth (`unsafe` is forbidden in the workspace, so
//! no counting allocator).
//!
//! ```sh
//! cargo run --release -p corium-dtls --example dtls_engine_memory -- native|dimpl [SESSIONS]
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant as Clock};

use corium_dtls::{
    ClientConfig, DtlsConfig, DtlsEndpoint, EngineChoice, Event, Instant, PskMap, ServerConfig,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Resident set size (Linux `/proc/self/statm`).
fn rss_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn client_addr(i: u32) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 40_000))
}

fn measure(engine: EngineChoice, sessions: u32) -> (f64, f64) {
    let server_addr: SocketAddr = "10.255.0.1:5684".parse().unwrap();
    let config = DtlsConfig {
        max_sessions: sessions as usize + 10,
        max_handshakes: sessions as usize + 10,
        max_handshakes_per_addr: u32::MAX,
        engine,
        ..DtlsConfig::default()
    };
    let mut keys = PskMap::new();
    keys.insert("device", "secretPSK").unwrap();
    let mut server = DtlsEndpoint::new(
        config.clone(),
        Some(ServerConfig::psk(keys)),
        &mut StdRng::seed_from_u64(1),
    )
    .unwrap();
    let psk = ClientConfig::psk("device", "secretPSK").unwrap();
    let now = Instant::ZERO + Duration::from_secs(1);
    let before = rss_bytes();
    let t = Clock::now();
    let mut established = 0;
    for i in 0..sessions {
        let mut c = DtlsEndpoint::new(config.clone(), None, &mut StdRng::seed_from_u64(3)).unwrap();
        c.connect(now, server_addr, &psk).unwrap();
        let from = client_addr(i);
        loop {
            let mut quiet = true;
            while let Some((_, d)) = c.poll_transmit() {
                quiet = false;
                server.handle_datagram(now, from, &d);
            }
            while let Some((_, d)) = server.poll_transmit() {
                quiet = false;
                c.handle_datagram(now, server_addr, &d);
            }
            if quiet {
                break;
            }
        }
        while let Some(e) = server.poll_event() {
            if matches!(e, Event::HandshakeComplete { .. }) {
                established += 1;
            }
        }
    }
    let elapsed = t.elapsed();
    assert_eq!(established, sessions);
    let after = rss_bytes();
    let per_session = (after - before) as f64 / f64::from(sessions);
    let rate = f64::from(sessions) / elapsed.as_secs_f64();
    drop(server);
    (per_session, rate)
}

fn main() {
    let engine = match std::env::args().nth(1).as_deref() {
        Some("dimpl") => EngineChoice::Dimpl,
        _ => EngineChoice::NativePsk,
    };
    let sessions: u32 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    {
        let (bytes, rate) = measure(engine, sessions);
        println!(
            "{engine:?}: {bytes:.0} resident bytes per idle established server session \
             ({sessions} sessions; endpoint tables included); {rate:.0} handshakes/s \
             (client + server work, one core)"
        );
    }
    println!(
        "inline: NativePskSession {} bytes, DimplSession {} bytes",
        std::mem::size_of::<corium_dtls::NativePskSession>(),
        std::mem::size_of::<corium_dtls::DimplSession>()
    );
}
