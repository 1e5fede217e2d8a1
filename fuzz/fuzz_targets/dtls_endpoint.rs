//! The DTLS layer (`corium-dtls`) under untrusted datagrams: a PSK server `DtlsEndpoint`
//! with one established client session, fed arbitrary datagrams from arbitrary addresses.
//!
//! Input: chunks `ctrl (1) | len (u16 BE) | datagram (len bytes)`.
//!
//! * `ctrl & 7` picks the source address; address 0 is the established client's.
//! * `ctrl` bit 3: instead of a datagram, the clock advances `len × 10 ms` and every
//!   endpoint's timers run.
//! * `ctrl` bit 4: the datagram goes to the client endpoint (from the server's address).
//! * `ctrl` bit 5: the datagram is XORed over a real record of the client (application data
//!   or, with bit 6, its first ClientHello), to reach deeper than random bytes.
//!
//! Asserts: nothing panics; the session table stays within `max_sessions`; no new session
//! appears without a cookie round trip (only the real client's ClientHello can start one);
//! every transmitted datagram is a sequence of well-formed DTLS 1.x records; once the clock
//! passes every timeout, no session and no timer is left.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use corium_dtls::{ClientConfig, DtlsConfig, DtlsEndpoint, Instant, PskMap, ServerConfig};
use libfuzzer_sys::fuzz_target;
use rand::rngs::SmallRng;
use rand::SeedableRng;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 2 + i], 40_000 + u16::from(i)))
}

const SERVER: ([u8; 4], u16) = ([10, 0, 0, 1], 5684);

fn check_records(datagram: &[u8]) {
    let mut rest = datagram;
    assert!(!rest.is_empty());
    while !rest.is_empty() {
        assert!(rest.len() >= 13, "truncated record header");
        assert!((20..=25).contains(&rest[0]), "content type {}", rest[0]);
        assert_eq!(rest[1], 0xfe, "DTLS version");
        let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        assert!(rest.len() >= 13 + len, "truncated record");
        rest = &rest[13 + len..];
    }
}

struct World {
    now: Instant,
    server: DtlsEndpoint,
    client: DtlsEndpoint,
    hello: Vec<u8>,
    app_record: Vec<u8>,
}

impl World {
    fn new() -> World {
        let config = DtlsConfig {
            max_sessions: 4,
            max_handshakes: 2,
            ..DtlsConfig::default()
        };
        let mut keys = PskMap::new();
        keys.insert("client", "secret").unwrap();
        let server = DtlsEndpoint::new(
            config.clone(),
            Some(ServerConfig::psk(keys)),
            &mut SmallRng::seed_from_u64(1),
        )
        .unwrap();
        let client = DtlsEndpoint::new(config, None, &mut SmallRng::seed_from_u64(2)).unwrap();
        let mut w = World {
            now: Instant::ZERO,
            server,
            client,
            hello: Vec::new(),
            app_record: Vec::new(),
        };
        let psk = ClientConfig::psk("client", "secret").unwrap();
        let session = w.client.connect(w.now, SERVER.into(), &psk).unwrap();
        w.pump();
        assert!(w.client.is_established(session), "setup handshake");
        w.client.send(w.now, session, b"\x40\x01\x00\x01").unwrap();
        let (_, record) = w.client.poll_transmit().unwrap();
        w.app_record = record.to_vec();
        w
    }

    /// Delivers datagrams between the client and the server until both are quiet.
    fn pump(&mut self) {
        for _ in 0..64 {
            let mut quiet = true;
            while let Some((_, d)) = self.client.poll_transmit() {
                quiet = false;
                check_records(&d);
                if self.hello.is_empty() {
                    self.hello = d.to_vec();
                }
                self.server.handle_datagram(self.now, addr(0), &d);
            }
            while let Some((to, d)) = self.server.poll_transmit() {
                quiet = false;
                check_records(&d);
                if to == addr(0) {
                    self.client.handle_datagram(self.now, SERVER.into(), &d);
                }
            }
            while self.server.poll_event().is_some() {}
            while self.client.poll_event().is_some() {}
            if quiet {
                return;
            }
        }
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        self.server.handle_timeout(self.now);
        self.client.handle_timeout(self.now);
        self.pump();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut w = World::new();
    let mut rest = data;
    while rest.len() >= 3 {
        let ctrl = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        rest = &rest[3..];
        if ctrl & 0x08 != 0 {
            w.tick(Duration::from_millis(10 * len as u64));
            continue;
        }
        let take = len.min(rest.len());
        let mut datagram = rest[..take].to_vec();
        rest = &rest[take..];
        if ctrl & 0x20 != 0 {
            let base = if ctrl & 0x40 != 0 {
                &w.hello
            } else {
                &w.app_record
            };
            let mut mutated = base.clone();
            for (i, b) in datagram.iter().enumerate() {
                if let Some(m) = mutated.get_mut(i) {
                    *m ^= b;
                }
            }
            datagram = mutated;
        }
        if ctrl & 0x10 != 0 {
            w.client.handle_datagram(w.now, SERVER.into(), &datagram);
        } else {
            let before = w.server.stats().sessions_accepted;
            w.server.handle_datagram(w.now, addr(ctrl & 7), &datagram);
            // A session needs a valid cookie: only the real client's ClientHello, replayed
            // from its own address, could carry one, and it is refused as a replay.
            assert_eq!(w.server.stats().sessions_accepted, before);
        }
        w.pump();
        assert!(w.server.session_count() <= w.server.config().max_sessions);
    }
    // Past every handshake and idle timeout, nothing is left.
    for _ in 0..20 {
        w.tick(Duration::from_secs(60));
    }
    assert_eq!(w.server.session_count(), 0);
    assert_eq!(w.client.session_count(), 0);
    assert_eq!(w.server.poll_timeout(), None);
    assert_eq!(w.client.poll_timeout(), None);
});
