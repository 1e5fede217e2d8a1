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

    /// Runs, firing timers, until the server reports a closed session or nothing is
    /// pending. A wrong key is detected on the peer's retransmitted Finished (the first
    /// one that fails could be forged, RFC 6347 §4.1.2.7).
    fn run_until_server_closed(&mut self) {
        self.run();
        while closed(&self.server_events).is_empty() && self.tick() {
            self.run();
        }
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
        net.run_until_server_closed();
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
    net.run_until_server_closed();
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

/// A raw DTLS 1.2 record, as an off-path attacker would forge it.
fn raw_record(ty: u8, epoch: u16, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut r = vec![ty, 0xfe, 0xfd];
    r.extend_from_slice(&epoch.to_be_bytes());
    r.extend_from_slice(&seq.to_be_bytes()[2..]);
    r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    r.extend_from_slice(payload);
    r
}

/// A handshake fragment: header (RFC 6347 §4.2.2) and body.
fn raw_fragment(msg_type: u8, length: usize, seq: u16, offset: usize, body: &[u8]) -> Vec<u8> {
    let mut f = vec![msg_type];
    f.extend_from_slice(&(length as u32).to_be_bytes()[1..]);
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&(offset as u32).to_be_bytes()[1..]);
    f.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(body);
    f
}

/// Whether a client datagram carries a ChangeCipherSpec record (its final flight).
fn is_final_flight(d: &[u8]) -> bool {
    crate::record::records(d).any(|r| r.content_type == 20)
}

fn native_pair_completed(net: &Net) {
    assert_eq!(completed(&net.server_events).len(), 1, "server");
    assert_eq!(completed(&net.client_events).len(), 1, "client");
    assert!(closed(&net.server_events).is_empty());
    assert!(closed(&net.client_events).is_empty());
}

/// RFC 6347 §4.1.2.7: a spoofed plaintext ChangeCipherSpec followed by a forged
/// Finished-sized epoch-1 record (from another datagram) is silently discarded; the
/// genuine Finished still completes the handshake.
#[test]
fn forged_epoch1_record_after_spoofed_ccs_is_discarded() {
    let mut net = Net::new(EngineChoice::NativePsk, EngineChoice::NativePsk);
    net.connect("client1", "secretPSK");
    let mut held = None;
    net.run_with(|from_client, d| {
        if from_client && held.is_none() && is_final_flight(d) {
            // The client's final flight (CKE, CCS, Finished): held back.
            held = Some(d.clone());
            return false;
        }
        true
    });
    let held = held.expect("final flight");
    let recs: Vec<Vec<u8>> = crate::record::records(&held)
        .map(|r| r.bytes.to_vec())
        .collect();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[2].len(), 13 + 40, "Finished record length");
    // The ClientKeyExchange alone: the server now waits for the Finished.
    net.server.handle_datagram(net.now, addr(CLIENT), &recs[0]);
    // The attacker: a plaintext CCS, then forged Finished-sized records, twice with the
    // same sequence number and once with garbage of another size.
    for d in [
        raw_record(20, 0, 9, &[1]),
        raw_record(22, 1, 0, &[0xaa; 40]),
        raw_record(22, 1, 0, &[0xbb; 40]),
        raw_record(22, 1, 1, &[0xcc; 33]),
    ] {
        net.server.handle_datagram(net.now, addr(CLIENT), &d);
    }
    assert!(net.server.poll_event().is_none(), "nothing happened");
    net.server.handle_datagram(net.now, addr(CLIENT), &held);
    net.run();
    native_pair_completed(&net);
}

/// Two forged Finished-sized records under different sequence numbers do end the
/// handshake (the rule that lets a wrong key fail on the retransmitted Finished), with
/// the key-mismatch error; so does a timeout after one.
#[test]
fn failing_finished_twice_or_then_timeout_reports_the_key_mismatch() {
    for second in [true, false] {
        let mut net = Net::new(EngineChoice::NativePsk, EngineChoice::NativePsk);
        net.connect("client1", "secretPSK");
        let mut held = None;
        net.run_with(|from_client, d| {
            if from_client && held.is_none() && is_final_flight(d) {
                held = Some(d.clone());
                return false;
            }
            true
        });
        let held = held.unwrap();
        let cke = crate::record::records(&held).next().unwrap().bytes.to_vec();
        net.server.handle_datagram(net.now, addr(CLIENT), &cke);
        net.server
            .handle_datagram(net.now, addr(CLIENT), &raw_record(20, 0, 9, &[1]));
        net.server
            .handle_datagram(net.now, addr(CLIENT), &raw_record(22, 1, 5, &[0xaa; 40]));
        if second {
            net.server
                .handle_datagram(net.now, addr(CLIENT), &raw_record(22, 1, 6, &[0xaa; 40]));
        } else {
            // No genuine Finished ever arrives: the client's flight is lost each time.
            while net.tick() {
                net.run_with(|from_client, _| !from_client);
            }
        }
        while let Some(e) = net.server.poll_event() {
            net.server_events.push(e);
        }
        assert_eq!(
            closed(&net.server_events),
            [CloseReason::Failed(DtlsError::AuthenticationFailed)],
            "second: {second} {:?} {:?}",
            net.server_events,
            net.client_events
        );
    }
}

/// Unauthenticated epoch-0 handshake records that are malformed, unexpected,
/// inconsistent with a reassembly, or a HelloRequest are discarded on both sides.
#[test]
fn spoofed_epoch0_handshake_records_are_discarded() {
    let mut net = Net::new(EngineChoice::NativePsk, EngineChoice::NativePsk);
    net.connect("client1", "secretPSK");
    let mut from_client = 0;
    net.run_with(|client, d| {
        if client {
            from_client += 1;
            if from_client <= 2 {
                return true; // the ClientHellos: no session yet
            }
        }
        let mut spoofed = Vec::new();
        spoofed.extend(raw_record(22, 0, 90, &[1, 2, 3])); // malformed
        spoofed.extend(raw_record(22, 0, 91, &raw_fragment(0, 0, 0, 0, &[]))); // HelloRequest
        for seq in 0..6 {
            // A whole unexpected message (Finished in epoch 0) and a partial fragment
            // of a message too long to be true.
            spoofed.extend(raw_record(
                22,
                0,
                92,
                &raw_fragment(20, 12, seq, 0, &[0; 12]),
            ));
            spoofed.extend(raw_record(
                22,
                0,
                93,
                &raw_fragment(16, 500, seq, 0, &[7; 10]),
            ));
            spoofed.extend(raw_record(
                22,
                0,
                94,
                &raw_fragment(1, 1 << 20, seq, 0, &[1]),
            ));
        }
        spoofed.extend_from_slice(d);
        *d = spoofed;
        true
    });
    for _ in 0..10 {
        if completed(&net.server_events).len() == 1 && completed(&net.client_events).len() == 1 {
            break;
        }
        net.tick();
        net.run();
    }
    native_pair_completed(&net);
}

/// Reassembly keeps the epoch of its first fragment: a fragment of the same message
/// from another epoch is refused without changing it (RFC 6347 §4.2.3).
#[test]
fn reassembly_does_not_mix_epochs() {
    use super::messages::{fragments, Reassembly};
    let a = raw_fragment(20, 12, 3, 0, &[1; 6]);
    let b = raw_fragment(20, 12, 3, 6, &[2; 6]);
    let fa = fragments(&a).unwrap().remove(0);
    let fb = fragments(&b).unwrap().remove(0);
    let mut r = Reassembly::new_in(&fa, 0).unwrap();
    assert!(!r.add_in(&fb, 1));
    assert!(r.complete().is_none());
    assert!(r.add_in(&fb, 0));
    assert_eq!(
        r.complete(),
        Some(&[1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2][..])
    );
    // End to end: an epoch-0 fragment of the client's Finished, slipped into the final
    // flight before the genuine one, is dropped and the handshake completes.
    let mut net = Net::new(EngineChoice::NativePsk, EngineChoice::NativePsk);
    net.connect("client1", "secretPSK");
    net.run_with(|from_client, d| {
        if from_client && is_final_flight(d) {
            let recs: Vec<Vec<u8>> = crate::record::records(d)
                .map(|r| r.bytes.to_vec())
                .collect();
            let mut out = recs[0].clone();
            out.extend(recs[1].clone());
            for seq in 0..6 {
                out.extend(raw_record(
                    22,
                    0,
                    99,
                    &raw_fragment(20, 12, seq, 0, &[9; 6]),
                ));
            }
            out.extend(recs[2].clone());
            *d = out;
        }
        true
    });
    native_pair_completed(&net);
}

/// Before the ServerHello the client takes only the expected `message_seq` (or the
/// HelloVerifyRequest-shifted one), and only from a ServerHello that parses.
#[test]
fn client_ignores_spoofed_server_hello_numbering() {
    let mut net = Net::new(EngineChoice::NativePsk, EngineChoice::NativePsk);
    net.connect("client1", "secretPSK");
    let mut from_server = 0;
    net.run_with(|client, d| {
        if !client {
            from_server += 1;
            if from_server == 2 {
                // Before the genuine ServerHello flight: ServerHellos with far-off
                // numbers, and one with the expected number that does not parse.
                let mut spoofed = Vec::new();
                for seq in [0u16, 1, 5, 200] {
                    spoofed.extend(raw_record(22, 0, 1, &raw_fragment(2, 3, seq, 0, &[0; 3])));
                    spoofed.extend(raw_record(
                        22,
                        0,
                        2,
                        &raw_fragment(2, 90, seq + 7, 0, &[0; 10]),
                    ));
                }
                spoofed.extend_from_slice(d);
                *d = spoofed;
            }
        }
        true
    });
    native_pair_completed(&net);
}

/// Spoofed plaintext copies of the client's final flight after the handshake do not make
/// the server resend its Finished; during the handshake, a burst of spoofed old-flight
/// messages triggers at most one resend.
#[test]
fn spoofed_epoch0_packets_do_not_amplify_retransmissions() {
    let mut net = Net::new(EngineChoice::NativePsk, EngineChoice::NativePsk);
    net.connect("client1", "secretPSK");
    // Cookie exchange only: the client has sent its second ClientHello.
    let (_, hello) = net.client.poll_transmit().unwrap();
    net.server.handle_datagram(net.now, addr(CLIENT), &hello);
    let (_, hvr) = net.server.poll_transmit().unwrap();
    net.client.handle_datagram(net.now, addr(SERVER), &hvr);
    let (_, hello2) = net.client.poll_transmit().unwrap();
    for i in 0..10 {
        let d = raw_record(22, 0, 50 + i, &raw_fragment(14, 0, 0, 0, &[]));
        net.client.handle_datagram(net.now, addr(SERVER), &d);
    }
    let mut resent = 0;
    while net.client.poll_transmit().is_some() {
        resent += 1;
    }
    assert_eq!(resent, 1, "one resend for ten spoofed packets");
    net.server.handle_datagram(net.now, addr(CLIENT), &hello2);
    net.run();
    native_pair_completed(&net);
    // After the handshake: plaintext ClientKeyExchange / Finished copies are ignored.
    for (ty, seq) in [(16u8, 2u16), (20, 3)] {
        let d = raw_record(22, 0, 70, &raw_fragment(ty, 12, seq, 0, &[0; 12]));
        net.server.handle_datagram(net.now, addr(CLIENT), &d);
    }
    assert!(net.server.poll_transmit().is_none(), "no resend");
}
