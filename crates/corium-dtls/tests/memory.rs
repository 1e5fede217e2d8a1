//! Two `DtlsEndpoint`s talking in memory under a virtual clock: handshakes, data, failures,
//! floods and timers, asserted on behaviour only.

use std::net::SocketAddr;
use std::time::Duration;

use corium_dtls::{
    AlertDescription, CertificateError, ClientConfig, CloseReason, ConnectError, DtlsConfig,
    DtlsEndpoint, DtlsError, Event, Instant, PeerIdentity, PskMap, Role, SendError, ServerConfig,
    SessionId,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

const SERVER: &str = "10.0.0.1:5684";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn psk_server(config: DtlsConfig) -> DtlsEndpoint {
    let mut keys = PskMap::new();
    keys.insert("client1", "secretPSK").unwrap();
    keys.insert("client2", "other-key").unwrap();
    let server = ServerConfig::psk(keys).with_identity_hint("corium");
    DtlsEndpoint::new(config, Some(server), &mut StdRng::seed_from_u64(1)).unwrap()
}

fn client_endpoint() -> DtlsEndpoint {
    DtlsEndpoint::new(DtlsConfig::default(), None, &mut StdRng::seed_from_u64(2)).unwrap()
}

/// Datagrams in flight from one endpoint to the other.
type Wire = Vec<(SocketAddr, SocketAddr, Vec<u8>)>;

/// A server and any number of client endpoints on a lossless in-memory network.
struct Net {
    now: Instant,
    server: DtlsEndpoint,
    server_addr: SocketAddr,
    clients: Vec<(SocketAddr, DtlsEndpoint)>,
    server_events: Vec<Event>,
    client_events: Vec<Vec<Event>>,
    /// Everything the server sent, for inspection.
    server_sent: Wire,
    /// Everything the clients sent.
    client_sent: Wire,
}

impl Net {
    fn new(server: DtlsEndpoint) -> Self {
        Net {
            now: Instant::ZERO,
            server,
            server_addr: addr(SERVER),
            clients: Vec::new(),
            server_events: Vec::new(),
            client_events: Vec::new(),
            server_sent: Vec::new(),
            client_sent: Vec::new(),
        }
    }

    fn add_client(&mut self, at: &str) -> usize {
        self.clients.push((addr(at), client_endpoint()));
        self.client_events.push(Vec::new());
        self.clients.len() - 1
    }

    fn connect(&mut self, client: usize, config: &ClientConfig) -> SessionId {
        let server_addr = self.server_addr;
        self.clients[client]
            .1
            .connect(self.now, server_addr, config)
            .unwrap()
    }

    /// Delivers datagrams until nobody has anything to send; `filter` may drop or alter
    /// each (from, to, bytes) and returns whether to deliver it.
    fn run_with(&mut self, mut filter: impl FnMut(SocketAddr, SocketAddr, &mut Vec<u8>) -> bool) {
        for _ in 0..1000 {
            let mut wire: Wire = Vec::new();
            for (caddr, c) in &mut self.clients {
                while let Some((to, bytes)) = c.poll_transmit() {
                    wire.push((*caddr, to, bytes.to_vec()));
                }
            }
            while let Some((to, bytes)) = self.server.poll_transmit() {
                wire.push((self.server_addr, to, bytes.to_vec()));
            }
            self.collect_events();
            if wire.is_empty() {
                return;
            }
            for (from, to, mut bytes) in wire {
                if from == self.server_addr {
                    self.server_sent.push((from, to, bytes.clone()));
                } else {
                    self.client_sent.push((from, to, bytes.clone()));
                }
                if !filter(from, to, &mut bytes) {
                    continue;
                }
                if to == self.server_addr {
                    self.server.handle_datagram(self.now, from, &bytes);
                } else if let Some((_, c)) = self.clients.iter_mut().find(|(a, _)| *a == to) {
                    c.handle_datagram(self.now, from, &bytes);
                }
            }
        }
        panic!("the endpoints never went quiet");
    }

    fn run(&mut self) {
        self.run_with(|_, _, _| true);
    }

    fn collect_events(&mut self) {
        while let Some(e) = self.server.poll_event() {
            self.server_events.push(e);
        }
        for (i, (_, c)) in self.clients.iter_mut().enumerate() {
            while let Some(e) = c.poll_event() {
                self.client_events[i].push(e);
            }
        }
    }

    /// Moves the virtual clock to the earliest timer of any endpoint (at most `limit`
    /// ahead) and fires it.
    fn advance(&mut self, limit: Duration) {
        let mut next = self.now + limit;
        for t in std::iter::once(self.server.poll_timeout())
            .chain(self.clients.iter().map(|(_, c)| c.poll_timeout()))
            .flatten()
        {
            next = next.min(t);
        }
        self.now = next.max(self.now);
        self.server.handle_timeout(self.now);
        for (_, c) in &mut self.clients {
            c.handle_timeout(self.now);
        }
    }

    fn server_closed(&self) -> Vec<CloseReason> {
        closed(&self.server_events)
    }

    fn client_closed(&self, i: usize) -> Vec<CloseReason> {
        closed(&self.client_events[i])
    }
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

fn data(events: &[Event]) -> Vec<(SessionId, Vec<u8>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ApplicationData { session, bytes } => Some((*session, bytes.to_vec())),
            _ => None,
        })
        .collect()
}

fn completed(events: &[Event]) -> Vec<(SessionId, Role, PeerIdentity)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::HandshakeComplete {
                session,
                role,
                identity,
                ..
            } => Some((*session, *role, identity.clone())),
            _ => None,
        })
        .collect()
}

fn psk(identity: &str, key: &str) -> ClientConfig {
    ClientConfig::psk(identity.as_bytes().to_vec(), key.as_bytes().to_vec()).unwrap()
}

fn established_pair() -> (Net, SessionId, SessionId) {
    let mut net = Net::new(psk_server(DtlsConfig::default()));
    net.add_client("10.0.0.2:40000");
    let cid = net.connect(0, &psk("client1", "secretPSK"));
    net.run();
    let server_done = completed(&net.server_events);
    assert_eq!(
        server_done.len(),
        1,
        "server events: {:?}",
        net.server_events
    );
    (net, cid, server_done[0].0)
}

#[test]
fn psk_handshake_and_both_directions() {
    let (mut net, cid, sid) = established_pair();
    assert_eq!(
        completed(&net.client_events[0]),
        [(
            cid,
            Role::Client,
            PeerIdentity::Psk {
                identity: "client1".into()
            }
        )]
    );
    assert_eq!(
        completed(&net.server_events),
        [(
            sid,
            Role::Server,
            PeerIdentity::Psk {
                identity: "client1".into()
            }
        )]
    );
    let stats = net.server.stats();
    assert_eq!(stats.hello_verify_sent, 1, "one cookie round trip");
    assert_eq!(stats.sessions_accepted, 1);
    assert_eq!((stats.sessions, stats.handshakes), (1, 0));
    assert_eq!(
        net.server.session_identity(sid),
        Some(&PeerIdentity::Psk {
            identity: "client1".into()
        })
    );

    let now = net.now;
    net.clients[0]
        .1
        .send(now, cid, b"\x40\x01\x12\x34\xb1x")
        .unwrap();
    net.run();
    assert_eq!(
        data(&net.server_events),
        [(sid, b"\x40\x01\x12\x34\xb1x".to_vec())]
    );
    net.server
        .send(now, sid, b"\x60\x45\x12\x34\xffhi")
        .unwrap();
    net.run();
    assert_eq!(
        data(&net.client_events[0]),
        [(cid, b"\x60\x45\x12\x34\xffhi".to_vec())]
    );
}

#[test]
fn messages_sent_during_the_handshake_wait_for_it() {
    let mut net = Net::new(psk_server(DtlsConfig::default()));
    net.add_client("10.0.0.2:40000");
    let cid = net.connect(0, &psk("client1", "secretPSK"));
    let now = net.now;
    net.clients[0].1.send(now, cid, b"first").unwrap();
    net.clients[0].1.send(now, cid, b"second").unwrap();
    net.run();
    let got: Vec<_> = data(&net.server_events)
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(got, [b"first".to_vec(), b"second".to_vec()]);
}

#[test]
fn wrong_key_fails_cleanly_on_both_sides() {
    let mut net = Net::new(psk_server(DtlsConfig::default()));
    net.add_client("10.0.0.2:40000");
    net.connect(0, &psk("client1", "wrong-key"));
    net.run();
    assert_eq!(
        net.server_closed(),
        [CloseReason::Failed(DtlsError::AuthenticationFailed)]
    );
    assert_eq!(
        net.client_closed(0),
        [CloseReason::PeerAlert(AlertDescription::DECRYPT_ERROR)]
    );
    assert!(completed(&net.server_events).is_empty());
    assert!(completed(&net.client_events[0]).is_empty());
    assert_eq!(net.server.session_count(), 0);
    assert_eq!(net.clients[0].1.session_count(), 0);
    assert_eq!(net.server.poll_timeout(), None, "nothing left to time out");
}

#[test]
fn unknown_identity_fails_like_a_wrong_key_for_the_client() {
    let mut net = Net::new(psk_server(DtlsConfig::default()));
    net.add_client("10.0.0.2:40000");
    net.connect(0, &psk("nobody", "secretPSK"));
    net.run();
    assert_eq!(
        net.server_closed(),
        [CloseReason::Failed(DtlsError::UnknownPskIdentity)]
    );
    assert_eq!(
        net.client_closed(0),
        [CloseReason::PeerAlert(AlertDescription::DECRYPT_ERROR)]
    );
}

#[test]
fn client_hello_flood_keeps_no_state_before_the_cookie() {
    // One real ClientHello, replayed from 2 000 spoofed addresses.
    let mut client = client_endpoint();
    client
        .connect(Instant::ZERO, addr(SERVER), &psk("client1", "secretPSK"))
        .unwrap();
    let (_, hello) = client.poll_transmit().unwrap();
    let mut server = psk_server(DtlsConfig::default());
    for i in 0..2_000u32 {
        let from = SocketAddr::from(([192, 0, (i >> 8) as u8, i as u8], 1000 + (i % 50) as u16));
        server.handle_datagram(Instant::ZERO, from, &hello);
        let (to, reply) = server.poll_transmit().expect("a HelloVerifyRequest");
        assert_eq!(to, from);
        assert_eq!(reply[13], 3, "hello_verify_request");
    }
    assert_eq!(server.session_count(), 0);
    assert_eq!(server.stats().hello_verify_sent, 2_000);
    assert_eq!(server.poll_timeout(), None, "no timers either");

    // The same with forged cookies: still nothing kept, each answered with a fresh cookie.
    let mut forged = hello.to_vec();
    let cookie_len_at = 13 + 12 + 2 + 32 + 1; // empty session id
    assert_eq!(forged[cookie_len_at], 0);
    forged.insert(cookie_len_at + 1, 0xaa);
    forged[cookie_len_at] = 1;
    let record_len = u16::from_be_bytes([forged[11], forged[12]]) + 1;
    forged[11..13].copy_from_slice(&record_len.to_be_bytes());
    for pos in [14usize, 22] {
        let len = u32::from_be_bytes([0, forged[pos], forged[pos + 1], forged[pos + 2]]) + 1;
        forged[pos..pos + 3].copy_from_slice(&len.to_be_bytes()[1..]);
    }
    for i in 0..500u32 {
        let from = SocketAddr::from(([198, 51, (i >> 8) as u8, i as u8], 2000));
        server.handle_datagram(Instant::ZERO, from, &forged);
        assert!(server.poll_transmit().is_some());
    }
    assert_eq!(server.session_count(), 0);
    assert_eq!(server.stats().sessions_accepted, 0);

    // Garbage from unknown addresses is dropped without a reply.
    server.handle_datagram(
        Instant::ZERO,
        addr("203.0.113.9:9"),
        b"\x17\xfe\xfd\0\x01garbage",
    );
    server.handle_datagram(Instant::ZERO, addr("203.0.113.9:9"), b"");
    assert!(server.poll_transmit().is_none());
    assert_eq!(server.session_count(), 0);
}

#[test]
fn tampered_record_is_dropped_and_the_session_survives() {
    let (mut net, cid, sid) = established_pair();
    let now = net.now;
    net.clients[0].1.send(now, cid, b"tampered").unwrap();
    net.run_with(|_, _, bytes| {
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01; // the AEAD tag
        true
    });
    net.clients[0].1.send(now, cid, b"ciphertext").unwrap();
    net.run_with(|_, _, bytes| {
        bytes[13 + 8] ^= 0x80; // first ciphertext byte after the explicit nonce
        true
    });
    assert!(data(&net.server_events).is_empty());
    assert!(net.server_closed().is_empty());
    assert!(net.server.is_established(sid));

    net.clients[0].1.send(now, cid, b"intact").unwrap();
    net.run();
    assert_eq!(data(&net.server_events), [(sid, b"intact".to_vec())]);
}

#[test]
fn replayed_record_is_dropped() {
    let (mut net, cid, sid) = established_pair();
    let now = net.now;
    net.clients[0].1.send(now, cid, b"once").unwrap();
    net.run();
    let (from, _, record) = net.client_sent.last().unwrap().clone();
    net.server.handle_datagram(now, from, &record);
    net.run();
    assert_eq!(data(&net.server_events), [(sid, b"once".to_vec())]);
}

#[test]
fn close_sends_close_notify() {
    let (mut net, cid, sid) = established_pair();
    let now = net.now;
    net.clients[0].1.close(now, cid).unwrap();
    net.run();
    assert_eq!(net.client_closed(0), [CloseReason::Local]);
    assert_eq!(net.server_closed(), [CloseReason::PeerClosed]);
    assert!(!net.server.is_established(sid));
    assert_eq!(net.server.session_count(), 0);
    assert_eq!(
        net.clients[0].1.send(now, cid, b"x"),
        Err(SendError::UnknownSession)
    );
}

#[test]
fn idle_sessions_are_evicted_with_close_notify() {
    let config = DtlsConfig {
        idle_timeout: Duration::from_secs(60),
        ..DtlsConfig::default()
    };
    let mut net = Net::new(psk_server(config));
    net.add_client("10.0.0.2:40000");
    let cid = net.connect(0, &psk("client1", "secretPSK"));
    net.run();
    // Activity at 30 s keeps it alive past the first 60 s.
    net.now += Duration::from_secs(30);
    let now = net.now;
    net.clients[0].1.send(now, cid, b"ping").unwrap();
    net.run();
    while net.now < Instant::ZERO + Duration::from_secs(89) {
        net.advance(Duration::from_secs(1));
        net.run();
    }
    assert!(net.server_closed().is_empty(), "{:?}", net.server_events);
    while net.now < Instant::ZERO + Duration::from_secs(95) {
        net.advance(Duration::from_secs(1));
        net.run();
    }
    assert_eq!(net.server_closed(), [CloseReason::IdleTimeout]);
    assert_eq!(net.client_closed(0), [CloseReason::PeerClosed]);
}

#[test]
fn lost_flight_is_retransmitted() {
    let mut net = Net::new(psk_server(DtlsConfig::default()));
    net.add_client("10.0.0.2:40000");
    net.connect(0, &psk("client1", "secretPSK"));
    // Lose the first two datagrams from the server (HelloVerifyRequest, then ServerHello flight).
    let mut lost = 0;
    let server = net.server_addr;
    for _ in 0..20 {
        net.run_with(|from, _, _| {
            if from == server && lost < 2 {
                lost += 1;
                false
            } else {
                true
            }
        });
        if !completed(&net.client_events[0]).is_empty() {
            break;
        }
        net.advance(Duration::from_secs(10));
    }
    assert_eq!(lost, 2);
    assert_eq!(completed(&net.client_events[0]).len(), 1);
    assert_eq!(completed(&net.server_events).len(), 1);
}

#[test]
fn handshake_abandoned_half_way_is_freed() {
    let config = DtlsConfig {
        handshake_timeout: Duration::from_secs(20),
        ..DtlsConfig::default()
    };
    let mut net = Net::new(psk_server(config));
    net.add_client("10.0.0.2:40000");
    net.connect(0, &psk("client1", "secretPSK"));
    // The client's third datagram (ClientKeyExchange flight) and everything later is lost.
    let client = net.clients[0].0;
    let mut from_client = 0;
    net.run_with(|from, _, _| {
        if from == client {
            from_client += 1;
            from_client <= 2
        } else {
            true
        }
    });
    assert_eq!(net.server.session_count(), 1);
    assert_eq!(net.server.stats().handshakes, 1);
    for _ in 0..100 {
        net.advance(Duration::from_secs(60));
        net.run_with(|from, _, _| from != client);
        if net.server.session_count() == 0 && net.clients[0].1.session_count() == 0 {
            break;
        }
    }
    assert_eq!(net.server.session_count(), 0);
    assert_eq!(net.server.stats().handshakes, 0);
    assert_eq!(net.server_closed(), [CloseReason::HandshakeTimeout]);
    assert_eq!(net.client_closed(0), [CloseReason::HandshakeTimeout]);
    assert_eq!(net.server.poll_timeout(), None);
}

#[test]
fn handshake_limit_refuses_new_clients() {
    let config = DtlsConfig {
        max_handshakes: 2,
        ..DtlsConfig::default()
    };
    let mut net = Net::new(psk_server(config));
    for i in 0..3 {
        net.add_client(&format!("10.0.0.{}:40000", 10 + i));
    }
    // Each client gets its cookie first, then the three cookie-bearing ClientHellos
    // arrive while no handshake can finish (server flights are held back).
    for i in 0..3 {
        net.connect(i, &psk("client1", "secretPSK"));
    }
    let server = net.server_addr;
    let mut hvr = 0;
    net.run_with(|from, _, bytes| {
        if from == server {
            if bytes[13] == 3 {
                hvr += 1;
                return true;
            }
            return false;
        }
        true
    });
    assert_eq!(hvr, 3);
    assert_eq!(net.server.session_count(), 2);
    assert_eq!(net.server.stats().refused, 1);
}

#[test]
fn handshake_rate_per_address_is_limited() {
    let config = DtlsConfig {
        max_handshakes_per_addr: 2,
        ..DtlsConfig::default()
    };
    let mut net = Net::new(psk_server(config));
    // Four clients behind one address (different ports), one elsewhere.
    for port in 0..4 {
        net.add_client(&format!("10.0.0.2:{}", 40_000 + port));
    }
    net.add_client("10.0.0.3:40000");
    for i in 0..5 {
        net.connect(i, &psk("client1", "secretPSK"));
    }
    net.run();
    let from = |net: &Net, ip: &str| {
        net.server_events
            .iter()
            .filter(|e| matches!(e, Event::HandshakeComplete { addr, .. } if addr.ip().to_string() == ip))
            .count()
    };
    // At t = 0: two handshakes from 10.0.0.2 (the burst), and 10.0.0.3 is unaffected.
    assert_eq!(from(&net, "10.0.0.2"), 2);
    assert_eq!(from(&net, "10.0.0.3"), 1);
    assert_eq!(net.server.stats().rate_limited, 2);
    // Every client got its HelloVerifyRequest: the limit only holds back cookie-bearing
    // ClientHellos, and the held-back clients retransmit them (RFC 6347 §4.2.4).
    assert_eq!(net.server.stats().hello_verify_sent, 5);
    assert_eq!(net.server.session_count(), 3);

    // A spoofer replaying a cookie-bearing ClientHello from 10.0.0.4 (where the cookie
    // is not valid) spends none of 10.0.0.4's allowance.
    let second_hello = net
        .client_sent
        .iter()
        .filter(|(f, _, _)| *f == addr("10.0.0.2:40000"))
        .nth(1)
        .map(|(_, _, b)| b.clone())
        .unwrap();
    for _ in 0..10 {
        let now = net.now;
        net.server
            .handle_datagram(now, addr("10.0.0.4:40000"), &second_hello);
        while net.server.poll_transmit().is_some() {}
    }
    let real = net.add_client("10.0.0.4:40000");
    net.connect(real, &psk("client1", "secretPSK"));
    net.run();
    assert_eq!(from(&net, "10.0.0.4"), 1);

    // Virtual time passes: the retransmitted ClientHellos get through as the allowance
    // refills (2 per second).
    for _ in 0..20 {
        if from(&net, "10.0.0.2") == 4 {
            break;
        }
        net.advance(Duration::from_secs(1));
        net.run();
    }
    assert_eq!(from(&net, "10.0.0.2"), 4);
    assert!(net.now >= Instant::ZERO + Duration::from_millis(500));
    assert_eq!(net.server.session_count(), 6);
}

#[test]
fn session_limit_refuses_new_clients() {
    let config = DtlsConfig {
        max_sessions: 1,
        ..DtlsConfig::default()
    };
    let mut net = Net::new(psk_server(config));
    net.add_client("10.0.0.2:40000");
    net.add_client("10.0.0.3:40000");
    net.connect(0, &psk("client1", "secretPSK"));
    net.run();
    net.connect(1, &psk("client2", "other-key"));
    net.run();
    assert_eq!(completed(&net.server_events).len(), 1);
    assert_eq!(net.server.session_count(), 1);
    assert!(net.server.stats().refused >= 1);
}

#[test]
fn replayed_first_flight_does_not_start_a_session() {
    let (mut net, cid, _) = established_pair();
    // The client's cookie-bearing ClientHello, as captured on the wire.
    let (from, _, hello) = net
        .client_sent
        .iter()
        .filter(|(_, _, b)| b[0] == 22 && b[13] == 1)
        .nth(1)
        .cloned()
        .unwrap();
    let now = net.now;
    net.clients[0].1.close(now, cid).unwrap();
    net.run();
    assert_eq!(net.server.session_count(), 0);
    net.server
        .handle_datagram(now + Duration::from_secs(1), from, &hello);
    assert_eq!(net.server.session_count(), 0);
    assert_eq!(net.server.stats().replays, 1);
}

#[test]
fn new_handshake_from_a_known_address_replaces_the_session() {
    let (mut net, _, old) = established_pair();
    // The client "reboots": a fresh endpoint on the same address.
    net.clients[0].1 = client_endpoint();
    let cid = net.connect(0, &psk("client2", "other-key"));
    net.run();
    assert_eq!(net.server_closed(), [CloseReason::Replaced]);
    let done = completed(&net.server_events);
    assert_eq!(done.len(), 2);
    assert_ne!(done[1].0, old);
    assert_eq!(
        done[1].2,
        PeerIdentity::Psk {
            identity: "client2".into()
        }
    );
    assert_eq!(net.server.session_count(), 1);
    assert!(net.clients[0].1.is_established(cid));
}

#[test]
fn api_errors() {
    let (mut net, cid, _) = established_pair();
    let now = net.now;
    let big = vec![0u8; 1153];
    assert_eq!(
        net.clients[0].1.send(now, cid, &big),
        Err(SendError::TooLarge)
    );
    let server = net.server_addr;
    assert_eq!(
        net.clients[0]
            .1
            .connect(now, server, &psk("client1", "secretPSK")),
        Err(ConnectError::SessionExists(cid))
    );
    assert!(net.clients[0].1.close(now, cid).is_ok());
    assert!(net.clients[0].1.close(now, cid).is_err());
}

#[test]
fn client_without_server_config_ignores_client_hellos() {
    let mut a = client_endpoint();
    let mut b = client_endpoint();
    a.connect(Instant::ZERO, addr("10.0.0.9:5684"), &psk("x", "y"))
        .unwrap();
    let (_, hello) = a.poll_transmit().unwrap();
    b.handle_datagram(Instant::ZERO, addr("10.0.0.8:1"), &hello);
    assert!(b.poll_transmit().is_none());
    assert_eq!(b.session_count(), 0);
}

// ---- certificate mode -------------------------------------------------------------------

struct Pki {
    ca_pem: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, PKCS_ECDSA_P256_SHA256,
    };
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Corium test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |name: &str, purpose: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(vec![name.to_owned()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![purpose];
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = leaf("device-7", ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca_pem: ca_cert.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

fn cert_server(pki: &Pki, require_client: bool) -> DtlsEndpoint {
    let mut server =
        ServerConfig::certificate(pki.server_cert.as_bytes(), pki.server_key.as_bytes()).unwrap();
    if require_client {
        server = server.with_client_ca(pki.ca_pem.as_bytes()).unwrap();
    }
    DtlsEndpoint::new(
        DtlsConfig::default(),
        Some(server),
        &mut StdRng::seed_from_u64(3),
    )
    .unwrap()
}

#[test]
fn certificate_mode_with_client_certificates() {
    let pki = pki();
    let mut net = Net::new(cert_server(&pki, true));
    net.add_client("10.0.0.2:40000");
    let config = ClientConfig::certificate(pki.ca_pem.as_bytes())
        .unwrap()
        .with_client_certificate(pki.client_cert.as_bytes(), pki.client_key.as_bytes())
        .unwrap()
        .with_server_name("localhost");
    let cid = net.connect(0, &config);
    net.run();
    let server_done = completed(&net.server_events);
    assert_eq!(
        server_done.len(),
        1,
        "{:?} / {:?}",
        net.server_events,
        net.client_events
    );
    let client_der = rustls_pki_types_der(&pki.client_cert);
    assert_eq!(
        server_done[0].2,
        PeerIdentity::Certificate {
            end_entity: client_der.into()
        }
    );
    let server_der = rustls_pki_types_der(&pki.server_cert);
    assert_eq!(
        completed(&net.client_events[0]),
        [(
            cid,
            Role::Client,
            PeerIdentity::Certificate {
                end_entity: server_der.into()
            }
        )]
    );
    let now = net.now;
    net.clients[0].1.send(now, cid, b"over ECDHE").unwrap();
    net.run();
    assert_eq!(data(&net.server_events).len(), 1);
}

#[test]
fn certificate_mode_without_client_authentication() {
    let pki = pki();
    let mut net = Net::new(cert_server(&pki, false));
    net.add_client("10.0.0.2:40000");
    net.connect(
        0,
        &ClientConfig::certificate(pki.ca_pem.as_bytes()).unwrap(),
    );
    net.run();
    assert_eq!(completed(&net.server_events)[0].2, PeerIdentity::Anonymous);
    assert_eq!(completed(&net.client_events[0]).len(), 1);
}

#[test]
fn server_certificate_from_another_ca_is_refused() {
    let pki = pki();
    let other = self::pki();
    let mut net = Net::new(cert_server(&pki, false));
    net.add_client("10.0.0.2:40000");
    net.connect(
        0,
        &ClientConfig::certificate(other.ca_pem.as_bytes()).unwrap(),
    );
    net.run();
    assert_eq!(
        net.client_closed(0),
        [CloseReason::Failed(DtlsError::Certificate(
            CertificateError::UnknownIssuer
        ))]
    );
    assert_eq!(
        net.server_closed(),
        [CloseReason::PeerAlert(AlertDescription::UNKNOWN_CA)]
    );
}

#[test]
fn server_name_must_match() {
    let pki = pki();
    let mut net = Net::new(cert_server(&pki, false));
    net.add_client("10.0.0.2:40000");
    let config = ClientConfig::certificate(pki.ca_pem.as_bytes())
        .unwrap()
        .with_server_name("elsewhere.example");
    net.connect(0, &config);
    net.run();
    assert_eq!(
        net.client_closed(0),
        [CloseReason::Failed(DtlsError::Certificate(
            CertificateError::NameMismatch
        ))]
    );
}

#[test]
fn client_certificate_is_required_when_configured() {
    let pki = pki();
    let other = self::pki();
    let mut net = Net::new(cert_server(&pki, true));
    net.add_client("10.0.0.2:40000");
    // A certificate from a CA the server does not trust.
    let config = ClientConfig::certificate(pki.ca_pem.as_bytes())
        .unwrap()
        .with_client_certificate(other.client_cert.as_bytes(), other.client_key.as_bytes())
        .unwrap();
    net.connect(0, &config);
    net.run();
    assert_eq!(
        net.server_closed(),
        [CloseReason::Failed(DtlsError::Certificate(
            CertificateError::UnknownIssuer
        ))]
    );
    assert_eq!(
        net.client_closed(0),
        [CloseReason::PeerAlert(AlertDescription::UNKNOWN_CA)]
    );
}

#[test]
fn psk_and_certificates_on_one_server() {
    let pki = pki();
    let mut keys = PskMap::new();
    keys.insert("client1", "secretPSK").unwrap();
    let server = ServerConfig::certificate(pki.server_cert.as_bytes(), pki.server_key.as_bytes())
        .unwrap()
        .with_psk(std::sync::Arc::new(keys));
    let endpoint = DtlsEndpoint::new(
        DtlsConfig::default(),
        Some(server),
        &mut StdRng::seed_from_u64(4),
    )
    .unwrap();
    let mut net = Net::new(endpoint);
    net.add_client("10.0.0.2:40000");
    net.add_client("10.0.0.3:40000");
    net.connect(0, &psk("client1", "secretPSK"));
    net.connect(
        1,
        &ClientConfig::certificate(pki.ca_pem.as_bytes()).unwrap(),
    );
    net.run();
    let mut identities: Vec<_> = completed(&net.server_events)
        .into_iter()
        .map(|c| c.2)
        .collect();
    identities.sort_by_key(|i| matches!(i, PeerIdentity::Anonymous));
    assert_eq!(
        identities,
        [
            PeerIdentity::Psk {
                identity: "client1".into()
            },
            PeerIdentity::Anonymous
        ]
    );
}

fn rustls_pki_types_der(pem: &str) -> Vec<u8> {
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    base64_decode(&b64)
}

fn base64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = A.iter().position(|a| *a == c).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn a_new_client_hello_does_not_disturb_an_established_session_before_its_cookie() {
    let (mut net, cid, sid) = established_pair();
    // Another client's first ClientHello, arriving from the established client's address.
    let mut other = client_endpoint();
    other
        .connect(net.now, net.server_addr, &psk("client2", "other-key"))
        .unwrap();
    let (_, hello) = other.poll_transmit().unwrap();
    let from = net.clients[0].0;
    let now = net.now;
    net.server.handle_datagram(now, from, &hello);
    let (to, reply) = net.server.poll_transmit().unwrap();
    assert_eq!((to, reply[13]), (from, 3), "a HelloVerifyRequest");
    // RFC 6347 §4.2.8: the association survives until the new client proves its address.
    assert!(net.server.is_established(sid));
    net.clients[0].1.send(now, cid, b"still here").unwrap();
    net.run();
    assert_eq!(data(&net.server_events), [(sid, b"still here".to_vec())]);
}

#[test]
fn a_cookie_is_bound_to_the_address_it_was_issued_to() {
    let mut net = Net::new(psk_server(DtlsConfig::default()));
    net.add_client("10.0.0.2:40000");
    net.connect(0, &psk("client1", "secretPSK"));
    // Deliver only the first exchange (ClientHello, HelloVerifyRequest), then capture the
    // cookie-bearing ClientHello instead of delivering it.
    let mut delivered = 0;
    net.run_with(|_, _, _| {
        delivered += 1;
        delivered <= 2
    });
    let (_, _, hello) = net
        .client_sent
        .iter()
        .rfind(|(_, _, b)| b[0] == 22 && b[13] == 1)
        .cloned()
        .unwrap();
    let now = net.now;
    net.server
        .handle_datagram(now, addr("10.0.0.66:40000"), &hello);
    let (_, reply) = net.server.poll_transmit().unwrap();
    assert_eq!(reply[13], 3, "a fresh HelloVerifyRequest, no session");
    assert_eq!(net.server.session_count(), 0);
    // From the right address it is accepted.
    net.server.handle_datagram(now, net.clients[0].0, &hello);
    assert_eq!(net.server.session_count(), 1);
}

#[test]
fn a_stale_cookie_gets_a_fresh_one() {
    let config = DtlsConfig {
        cookie_lifetime: Duration::from_secs(10),
        ..DtlsConfig::default()
    };
    let mut net = Net::new(psk_server(config));
    net.add_client("10.0.0.2:40000");
    net.connect(0, &psk("client1", "secretPSK"));
    let mut delivered = 0;
    net.run_with(|_, _, _| {
        delivered += 1;
        delivered <= 2
    });
    let (from, _, hello) = net
        .client_sent
        .iter()
        .rfind(|(_, _, b)| b[0] == 22 && b[13] == 1)
        .cloned()
        .unwrap();
    // A cookie only verifies at the server whose secret made it...
    let mut keys = PskMap::new();
    keys.insert("client1", "secretPSK").unwrap();
    let mut fresh = DtlsEndpoint::new(
        DtlsConfig::default(),
        Some(ServerConfig::psk(keys)),
        &mut StdRng::seed_from_u64(77),
    )
    .unwrap();
    fresh.handle_datagram(net.now, from, &hello);
    assert_eq!(
        fresh.session_count(),
        0,
        "another server's secret: not valid"
    );
    // ...and not two periods later (a server with the same secret, seed 1)...
    let mut late = psk_server(DtlsConfig {
        cookie_lifetime: Duration::from_secs(10),
        ..DtlsConfig::default()
    });
    late.handle_datagram(net.now + Duration::from_secs(25), from, &hello);
    assert_eq!(late.session_count(), 0);
    let (_, reply) = late.poll_transmit().unwrap();
    assert_eq!(reply[13], 3, "a fresh HelloVerifyRequest");
    // ...but in the next period it still is.
    net.server
        .handle_datagram(net.now + Duration::from_secs(15), from, &hello);
    assert_eq!(net.server.session_count(), 1);
}

#[test]
fn messages_queued_behind_a_handshake_are_bounded() {
    let config = DtlsConfig {
        max_pending_sends: 2,
        ..DtlsConfig::default()
    };
    let mut client = DtlsEndpoint::new(config, None, &mut StdRng::seed_from_u64(9)).unwrap();
    let id = client
        .connect(Instant::ZERO, addr(SERVER), &psk("client1", "secretPSK"))
        .unwrap();
    client.send(Instant::ZERO, id, b"1").unwrap();
    client.send(Instant::ZERO, id, b"2").unwrap();
    assert_eq!(
        client.send(Instant::ZERO, id, b"3"),
        Err(SendError::QueueFull)
    );
}
