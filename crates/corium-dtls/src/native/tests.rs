//! In-memory handshakes of the native engine with itself and with dimpl, both roles.

use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::EngineChoice;
use crate::{
    AlertDescription, ClientConfig, CloseReason, DtlsConfig, DtlsEndpoint, DtlsError, Event,
    Instant, PeerIdentity, PskMap, Role, ServerConfig, SessionId,
};

const SERVER: &str = "192.0.2.1:5684";
const CLIENT: &str = "192.0.2.2:40000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config(engine: EngineChoice) -> DtlsConfig {
    DtlsConfig {
        engine,
        ..DtlsConfig::default()
    }
}

fn server(engine: EngineChoice, hint: Option<&str>) -> DtlsEndpoint {
    let mut keys = PskMap::new();
    keys.insert("client1", "secretPSK").unwrap();
    let mut sc = ServerConfig::psk(keys);
    if let Some(h) = hint {
        sc = sc.with_identity_hint(h.as_bytes().to_vec());
    }
    DtlsEndpoint::new(config(engine), Some(sc), &mut StdRng::seed_from_u64(1)).unwrap()
}

fn client(engine: EngineChoice) -> DtlsEndpoint {
    DtlsEndpoint::new(config(engine), None, &mut StdRng::seed_from_u64(2)).unwrap()
}

struct Net {
    server: DtlsEndpoint,
    client: DtlsEndpoint,
    now: Instant,
    server_events: Vec<Event>,
    client_events: Vec<Event>,
}

impl Net {
    fn new(server_engine: EngineChoice, client_engine: EngineChoice) -> Self {
        Net {
            server: server(server_engine, None),
            client: client(client_engine),
            now: Instant::ZERO + Duration::from_secs(100),
            server_events: Vec::new(),
            client_events: Vec::new(),
        }
    }

    /// Moves datagrams until both sides are quiet; `filter` may change or drop them
    /// (`true` keeps). Arguments: from the client?, datagram.
    fn run_with(&mut self, mut filter: impl FnMut(bool, &mut Vec<u8>) -> bool) {
        for _ in 0..100 {
            let mut quiet = true;
            while let Some((_, d)) = self.client.poll_transmit() {
                quiet = false;
                let mut d = d.to_vec();
                if filter(true, &mut d) {
                    self.server.handle_datagram(self.now, addr(CLIENT), &d);
                }
            }
            while let Some((_, d)) = self.server.poll_transmit() {
                quiet = false;
                let mut d = d.to_vec();
                if filter(false, &mut d) {
                    self.client.handle_datagram(self.now, addr(SERVER), &d);
                }
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            if quiet {
                return;
            }
        }
        panic!("no quiescence");
    }

    fn run(&mut self) {
        self.run_with(|_, _| true)
    }

    /// Advances the virtual clock to the next timer (of either side) and fires it.
    fn tick(&mut self) -> bool {
        let next = [self.server.poll_timeout(), self.client.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(t) = next else { return false };
        self.now = self.now.max(t);
        self.server.handle_timeout(self.now);
        self.client.handle_timeout(self.now);
        true
    }

    fn connect(&mut self, identity: &str, key: &str) -> SessionId {
        let cfg = ClientConfig::psk(identity.as_bytes().to_vec(), key.as_bytes().to_vec()).unwrap();
        self.client.connect(self.now, addr(SERVER), &cfg).unwrap()
    }
}

fn completed(events: &[Event]) -> Vec<(Role, PeerIdentity)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::HandshakeComplete { role, identity, .. } => Some((*role, identity.clone())),
            _ => None,
        })
        .collect()
}

fn closed(events: &[Event]) -> Vec<CloseReason> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Closed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn data(events: &[Event]) -> Vec<Vec<u8>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ApplicationData { bytes, .. } => Some(bytes.to_vec()),
            _ => None,
        })
        .collect()
}

fn psk_identity() -> PeerIdentity {
    PeerIdentity::Psk {
        identity: "client1".into(),
    }
}

/// A handshake, data both ways, and close_notify, for one pair of engines.
fn full_exchange(server_engine: EngineChoice, client_engine: EngineChoice) {
    let mut net = Net::new(server_engine, client_engine);
    let cs = net.connect("client1", "secretPSK");
    net.client.send(net.now, cs, b"GET /hello").unwrap();
    net.run();
    assert_eq!(
        completed(&net.server_events),
        [(Role::Server, psk_identity())]
    );
    assert_eq!(
        completed(&net.client_events),
        [(Role::Client, psk_identity())]
    );
    assert_eq!(data(&net.server_events), [b"GET /hello".to_vec()]);
    let ss = net.server.session_by_addr(addr(CLIENT)).unwrap();
    for i in 0..5u8 {
        net.server.send(net.now, ss, &[i; 40]).unwrap();
    }
    net.run();
    assert_eq!(data(&net.client_events).len(), 5);
    assert_eq!(data(&net.client_events)[4], vec![4; 40]);
    net.client.close(net.now, cs).unwrap();
    net.run();
    assert_eq!(closed(&net.client_events), [CloseReason::Local]);
    assert_eq!(closed(&net.server_events), [CloseReason::PeerClosed]);
}

#[test]
fn native_with_native() {
    full_exchange(EngineChoice::NativePsk, EngineChoice::NativePsk);
}

#[test]
fn native_server_with_dimpl_client() {
    full_exchange(EngineChoice::NativePsk, EngineChoice::Dimpl);
}

#[test]
fn dimpl_server_with_native_client() {
    full_exchange(EngineChoice::Dimpl, EngineChoice::NativePsk);
}

#[test]
fn identity_hint_is_sent_and_ignored() {
    for client_engine in [EngineChoice::NativePsk, EngineChoice::Dimpl] {
        let mut net = Net::new(EngineChoice::NativePsk, client_engine);
        net.server = server(EngineChoice::NativePsk, Some("hint"));
        net.connect("client1", "secretPSK");
        net.run();
        assert_eq!(completed(&net.client_events).len(), 1, "{client_engine:?}");
    }
}

#[test]
fn wrong_key_fails_cleanly_on_both_sides() {
    for (s, c) in [
        (EngineChoice::NativePsk, EngineChoice::NativePsk),
        (EngineChoice::NativePsk, EngineChoice::Dimpl),
        (EngineChoice::Dimpl, EngineChoice::NativePsk),
    ] {
        let mut net = Net::new(s, c);
        net.connect("client1", "wrong-key");
        net.run();
        assert!(completed(&net.server_events).is_empty());
        assert_eq!(
            closed(&net.server_events),
            [CloseReason::Failed(DtlsError::AuthenticationFailed)],
            "{s:?} {c:?}"
        );
        if c == EngineChoice::NativePsk {
            assert_eq!(
                closed(&net.client_events),
                [CloseReason::PeerAlert(AlertDescription::DECRYPT_ERROR)],
                "{s:?} {c:?}"
            );
        }
    }
}

#[test]
fn unknown_identity_looks_like_a_wrong_key() {
    let mut net = Net::new(EngineChoice::NativePsk, EngineChoice::NativePsk);
    net.connect("nobody", "secretPSK");
    net.run();
    assert_eq!(
        closed(&net.server_events),
        [CloseReason::Failed(DtlsError::UnknownPskIdentity)]
    );
    assert_eq!(
        closed(&net.client_events),
        [CloseReason::PeerAlert(AlertDescription::DECRYPT_ERROR)]
    );
}

#[test]
fn no_state_before_the_cookie() {
    let mut net = Net::new(EngineChoice::NativePsk, EngineChoice::NativePsk);
    net.connect("client1", "secretPSK");
    let (_, hello) = net.client.poll_transmit().unwrap();
    for i in 0..100u16 {
        let from = SocketAddr::from(([198, 51, 100, (i % 250) as u8], 1000 + i));
        net.server.handle_datagram(net.now, from, &hello);
    }
    assert_eq!(net.server.session_count(), 0);
    assert_eq!(net.server.stats().hello_verify_sent, 100);
    while net.server.poll_transmit().is_some() {}
    // A cookie issued to one address is refused from another.
    net.server.handle_datagram(net.now, addr(CLIENT), &hello);
    let (_, hvr) = net.server.poll_transmit().unwrap();
    net.client.handle_datagram(net.now, addr(SERVER), &hvr);
    let (_, hello2) = net.client.poll_transmit().unwrap();
    let other = addr("192.0.2.3:40000");
    net.server.handle_datagram(net.now, other, &hello2);
    assert_eq!(net.server.session_count(), 0);
    net.server.handle_datagram(net.now, addr(CLIENT), &hello2);
    assert_eq!(net.server.session_count(), 1);
}

#[test]
fn tampered_and_replayed_records_are_dropped_and_the_session_survives() {
    let mut net = Net::new(EngineChoice::NativePsk, EngineChoice::NativePsk);
    let cs = net.connect("client1", "secretPSK");
    net.run();
    net.client.send(net.now, cs, b"one").unwrap();
    let (_, rec) = net.client.poll_transmit().unwrap();
    let mut bad = rec.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    net.server.handle_datagram(net.now, addr(CLIENT), &bad);
    net.server.handle_datagram(net.now, addr(CLIENT), &rec);
    net.server.handle_datagram(net.now, addr(CLIENT), &rec); // replay
    net.run();
    assert_eq!(data(&net.server_events), [b"one".to_vec()]);
    assert!(closed(&net.server_events).is_empty());
    net.client.send(net.now, cs, b"two").unwrap();
    net.run();
    assert_eq!(data(&net.server_events), [b"one".to_vec(), b"two".to_vec()]);
}

#[test]
fn lost_flights_are_retransmitted() {
    for (s, c) in [
        (EngineChoice::NativePsk, EngineChoice::NativePsk),
        (EngineChoice::NativePsk, EngineChoice::Dimpl),
        (EngineChoice::Dimpl, EngineChoice::NativePsk),
    ] {
        // Drop each side's n-th datagram once, for every n of the handshake.
        for lose in 0..6 {
            let mut net = Net::new(s, c);
            net.connect("client1", "secretPSK");
            let mut count = [0usize; 2];
            let mut filter = |from_client: bool, _: &mut Vec<u8>| {
                let i = usize::from(from_client);
                count[i] += 1;
                count[i] != lose + 1
            };
            net.run_with(&mut filter);
            for _ in 0..20 {
                if completed(&net.server_events).len() == 1
                    && completed(&net.client_events).len() == 1
                {
                    break;
                }
                net.tick();
                net.run_with(&mut filter);
            }
            assert_eq!(
                completed(&net.server_events).len(),
                1,
                "{s:?} {c:?} lose {lose}"
            );
            assert_eq!(
                completed(&net.client_events).len(),
                1,
                "{s:?} {c:?} lose {lose}"
            );
            // The session works afterwards.
            let cs = net.client.session_by_addr(addr(SERVER)).unwrap();
            net.client.send(net.now, cs, b"after").unwrap();
            net.run();
            assert_eq!(
                data(&net.server_events),
                [b"after".to_vec()],
                "{s:?} {c:?} {lose}"
            );
        }
    }
}

#[test]
fn handshake_gives_up_after_max_retransmits() {
    let mut net = Net::new(EngineChoice::NativePsk, EngineChoice::NativePsk);
    net.connect("client1", "secretPSK");
    // The server never answers.
    net.run_with(|from_client, _| !from_client);
    let mut ticks = 0;
    while net.tick() {
        net.run_with(|from_client, _| !from_client);
        ticks += 1;
        assert!(ticks < 50);
    }
    assert_eq!(closed(&net.client_events), [CloseReason::HandshakeTimeout]);
}

#[test]
fn garbage_never_panics() {
    let mut net = Net::new(EngineChoice::NativePsk, EngineChoice::NativePsk);
    let cs = net.connect("client1", "secretPSK");
    let mut transcript = Vec::new();
    net.run_with(|_, d| {
        transcript.push(d.clone());
        true
    });
    net.client.send(net.now, cs, b"x").unwrap();
    let (_, r) = net.client.poll_transmit().unwrap();
    transcript.push(r.to_vec());
    let mut rng = StdRng::seed_from_u64(9);
    use rand::Rng;
    for d in &transcript {
        for n in 0..d.len() {
            // Truncations, to both sides, established and fresh.
            net.server.handle_datagram(net.now, addr(CLIENT), &d[..n]);
            net.client.handle_datagram(net.now, addr(SERVER), &d[..n]);
            let mut s = server(EngineChoice::NativePsk, None);
            s.handle_datagram(net.now, addr(CLIENT), &d[..n]);
        }
        for _ in 0..50 {
            let mut m = d.clone();
            let i = rng.gen_range(0..m.len());
            m[i] = rng.gen();
            net.server.handle_datagram(net.now, addr(CLIENT), &m);
            net.client.handle_datagram(net.now, addr(SERVER), &m);
            super::fuzzing::parse_handshake(&m);
        }
    }
    // Fresh sessions fed every handshake datagram out of order.
    for _ in 0..20 {
        let mut c = client(EngineChoice::NativePsk);
        let cfg = ClientConfig::psk("client1", "secretPSK").unwrap();
        c.connect(net.now, addr(SERVER), &cfg).unwrap();
        for _ in 0..transcript.len() {
            let d = &transcript[rng.gen_range(0..transcript.len())];
            c.handle_datagram(net.now, addr(SERVER), d);
        }
    }
}

#[test]
fn established_native_session_is_small() {
    let size = std::mem::size_of::<super::NativePskSession>();
    assert!(size < 400, "NativePskSession is {size} bytes inline");
}
