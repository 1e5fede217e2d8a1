//! The native PSK engine of `corium-dtls` (`EngineChoice::NativePsk`) under untrusted
//! bytes: its handshake-message parsers and reassembler, and a server and a client
//! endpoint (one established session between them) fed arbitrary datagrams.
//!
//! Input: chunks `ctrl (1) | len (u8) | bytes (len)`.
//!
//! * `ctrl & 3 == 0`: the bytes go to the handshake parsers only.
//! * `ctrl & 3 == 1`: a datagram to the server from the established client's address.
//! * `ctrl & 3 == 2`: a datagram to the client from the server's address.
//! * `ctrl & 3 == 3`: the clock advances `len × 100 ms` and timers run.
//! * `ctrl` bit 2: the bytes are XORed over a real record of the client (its next
//!   application-data record) to reach past the MAC check's framing.
//!
//! Asserts: nothing panics, and the session table stays within its limit.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use corium_dtls::{
    ClientConfig, DtlsConfig, DtlsEndpoint, EngineChoice, Instant, PskMap, ServerConfig,
};
use libfuzzer_sys::fuzz_target;
use rand::rngs::SmallRng;
use rand::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let server_addr = SocketAddr::from(([10, 0, 0, 1], 5684));
    let client_addr = SocketAddr::from(([10, 0, 0, 2], 40_000));
    let config = DtlsConfig {
        engine: EngineChoice::NativePsk,
        max_sessions: 4,
        ..DtlsConfig::default()
    };
    let mut keys = PskMap::new();
    keys.insert("id", "key").unwrap();
    let mut server = DtlsEndpoint::new(
        config.clone(),
        Some(ServerConfig::psk(keys)),
        &mut SmallRng::seed_from_u64(1),
    )
    .unwrap();
    let mut client = DtlsEndpoint::new(config, None, &mut SmallRng::seed_from_u64(2)).unwrap();
    let mut now = Instant::ZERO;
    let session = client
        .connect(now, server_addr, &ClientConfig::psk("id", "key").unwrap())
        .unwrap();
    for _ in 0..10 {
        while let Some((_, d)) = client.poll_transmit() {
            server.handle_datagram(now, client_addr, &d);
        }
        while let Some((_, d)) = server.poll_transmit() {
            client.handle_datagram(now, server_addr, &d);
        }
    }
    let mut rest = data;
    while let [ctrl, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let mut datagram = bytes.to_vec();
        if ctrl & 4 != 0 && client.is_established(session) {
            let _ = client.send(now, session, b"\x40\x01\x00\x01");
            if let Some((_, real)) = client.poll_transmit() {
                let mut r = real.to_vec();
                for (i, b) in bytes.iter().enumerate() {
                    if let Some(x) = r.get_mut(i) {
                        *x ^= b;
                    }
                }
                datagram = r;
            }
        }
        match ctrl & 3 {
            0 => corium_dtls::native_fuzzing::parse_handshake(&datagram),
            1 => server.handle_datagram(now, client_addr, &datagram),
            2 => client.handle_datagram(now, server_addr, &datagram),
            _ => {
                now = now + Duration::from_millis(100 * u64::from(*len));
                server.handle_timeout(now);
                client.handle_timeout(now);
            }
        }
        while server.poll_transmit().is_some() {}
        while client.poll_transmit().is_some() {}
        while server.poll_event().is_some() {}
        while client.poll_event().is_some() {}
        assert!(server.session_count() <= 4);
    }
});
