//! Measures the DTLS layer in memory (no sockets): stateless HelloVerifyRequests per second,
//! complete PSK handshakes per second (client and server work together, on one core),
//! encrypted CoAP-sized records per second, and resident memory per idle established
//! session (Linux `/proc/self/statm`).
//!
//! ```sh
//! cargo run --release -p corium-dtls --example dtls_measure -- [SESSIONS]
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant as Clock};

use corium_dtls::{ClientConfig, DtlsConfig, DtlsEndpoint, Event, Instant, PskMap, ServerConfig};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn client_addr(i: u32) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 40_000))
}

fn main() {
    let sessions: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000);
    let server_addr: SocketAddr = "10.255.0.1:5684".parse().unwrap();
    let config = DtlsConfig {
        max_sessions: sessions as usize + 10,
        max_handshakes: sessions as usize + 10,
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
    let mut client = DtlsEndpoint::new(config, None, &mut StdRng::seed_from_u64(2)).unwrap();
    let psk = ClientConfig::psk("device", "secretPSK").unwrap();
    let now = Instant::ZERO + Duration::from_secs(1);

    // 1. Stateless HelloVerifyRequests.
    client.connect(now, server_addr, &psk).unwrap();
    let (_, hello) = client.poll_transmit().unwrap();
    client.close_all(now);
    while client.poll_event().is_some() {}
    let n = 20_000u32;
    let t = Clock::now();
    for i in 0..n {
        server.handle_datagram(now, client_addr(1_000_000 + i), &hello);
        server.poll_transmit().unwrap();
    }
    let hvr = f64::from(n) / t.elapsed().as_secs_f64();
    assert_eq!(server.session_count(), 0);

    // 2. Complete PSK handshakes: `sessions` clients, all kept open.
    let rss_before = rss_bytes();
    let t = Clock::now();
    let mut established = 0u32;
    for i in 0..sessions {
        // One client endpoint per address would be realistic; one endpoint with many
        // sessions to one server address is not allowed, so each session uses its own
        // client endpoint and is dropped after the handshake (the server keeps its side).
        let mut c =
            DtlsEndpoint::new(DtlsConfig::default(), None, &mut StdRng::seed_from_u64(3)).unwrap();
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
    let rss_after = rss_bytes();
    assert_eq!(established, sessions);

    // 3. Records: one client session, CoAP-sized messages.
    let mut c =
        DtlsEndpoint::new(DtlsConfig::default(), None, &mut StdRng::seed_from_u64(4)).unwrap();
    let id = c.connect(now, server_addr, &psk).unwrap();
    let from = client_addr(sessions + 1);
    for _ in 0..10 {
        while let Some((_, d)) = c.poll_transmit() {
            server.handle_datagram(now, from, &d);
        }
        while let Some((_, d)) = server.poll_transmit() {
            c.handle_datagram(now, server_addr, &d);
        }
    }
    while server.poll_event().is_some() {}
    let message = [
        0x42u8, 0x01, 0x12, 0x34, 0xca, 0xfe, 0xb4, b't', b'e', b's', b't',
    ];
    let records = 100_000u32;
    let t = Clock::now();
    for _ in 0..records {
        c.send(now, id, &message).unwrap();
        let (_, d) = c.poll_transmit().unwrap();
        server.handle_datagram(now, from, &d);
        server.poll_event().unwrap();
    }
    let rec = f64::from(records) / t.elapsed().as_secs_f64();

    println!("stateless HelloVerifyRequests: {hvr:.0}/s");
    println!(
        "PSK handshakes (client + server work, one core): {:.0}/s ({} in {:.2?})",
        f64::from(sessions) / elapsed.as_secs_f64(),
        sessions,
        elapsed
    );
    if let (Some(a), Some(b)) = (rss_before, rss_after) {
        println!(
            "resident memory per established idle server session: {:.0} bytes ({} sessions)",
            (b.saturating_sub(a)) as f64 / f64::from(sessions),
            sessions
        );
    }
    println!("application-data records (encrypt + decrypt, 11-byte CoAP GET): {rec:.0}/s");
    println!(
        "inline size of one session: {} bytes (dimpl::Dtls itself: {} bytes)",
        std::mem::size_of::<corium_dtls::DimplSession>(),
        std::mem::size_of::<dimpl::Dtls>()
    );
}
