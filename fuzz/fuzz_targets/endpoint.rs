//! The sans-IO endpoint (corium-proto) under a stream of untrusted datagrams.
//!
//! A client and a server `Endpoint<u8>` are wired together (each is peer 0 for the
//! other); the client sends one Confirmable GET first. The input is then a sequence of
//! chunks, each
//!
//! ```text
//!  ctrl (1) | dt (1) | len (2, big-endian, capped at MAX_DATAGRAM) | datagram (len)
//! ```
//!
//! * the virtual clock advances by `dt * 100 ms` and both endpoints run `handle_timeout`;
//! * the datagram is delivered from peer `ctrl % 16` (peer 0 spoofs the partner);
//!   bit 4 of ctrl picks the client endpoint instead of the server; bit 5 delivers it as
//!   multicast (RFC 7252 §8); bit 6 lets the application answer its oldest pending request
//!   late (a separate response, §5.2.2); bit 7 makes the client send another request.
//!
//! After every step, datagrams between the two endpoints are pumped until quiet, every
//! event is drained, requests with an even `IncomingId` are answered 2.05 at once (every
//! fourth with a body over the server's amplification limit, RFC 9175 §2.4) and odd
//! ones are left pending. Everything an endpoint transmits must parse, and the table
//! sizes (`Endpoint::stats`) must stay within the configured hard limits.
#![no_main]

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use corium_proto::wire::{Code, Message};
use corium_proto::{
    AmplificationLimit, Endpoint, EndpointConfig, Event, IncomingId, Instant, Request,
    RequestOptions, RespondError, Response, Token,
};
use libfuzzer_sys::fuzz_target;
use rand::rngs::SmallRng;
use rand::SeedableRng;

const MAX_DATAGRAM: usize = 1152;
const MAX_STEPS: usize = 256;
/// The peer id under which the client and the server know each other.
const PARTNER: u8 = 0;

/// Set `CORIUM_FUZZ_TRACE=1` to print every event, transmit and the final table sizes
/// (useful with `cargo fuzz run endpoint <file>` on a single input).
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("CORIUM_FUZZ_TRACE").is_some())
}

/// A `fmt::Write` that discards: exercises `Debug` impls without allocating.
struct Sink;

impl std::fmt::Write for Sink {
    fn write_str(&mut self, _: &str) -> std::fmt::Result {
        Ok(())
    }
}

fn config() -> EndpointConfig {
    EndpointConfig {
        max_dedup_entries: 64,
        max_server_exchanges: 16,
        max_server_exchanges_per_peer: 6,
        max_peers: 8,
        max_client_exchanges: 8,
        max_queued_per_peer: 4,
        ..EndpointConfig::default()
    }
}

fn check_limits(name: &str, ep: &Endpoint<u8>) {
    let s = ep.stats();
    let c = ep.config();
    assert!(s.dedup_entries <= c.max_dedup_entries, "{name}: {s:?}");
    assert!(
        s.server_exchanges <= c.max_server_exchanges,
        "{name}: {s:?}"
    );
    assert!(
        s.client_exchanges <= c.max_client_exchanges,
        "{name}: {s:?}"
    );
    assert!(s.peers <= c.max_peers, "{name}: {s:?}");
    if let Some(limit) = &c.amplification_limit {
        assert!(s.verified_addresses <= limit.max_verified_peers, "{name}: {s:?}");
    }
}

struct Harness {
    now: Instant,
    server: Endpoint<u8>,
    client: Endpoint<u8>,
    /// Odd request ids the server application has not answered yet.
    pending: VecDeque<IncomingId>,
}

impl Harness {
    /// Drains events of one endpoint; answers even requests at once.
    fn drain_events(&mut self, server: bool) {
        let now = self.now;
        let ep = if server {
            &mut self.server
        } else {
            &mut self.client
        };
        while let Some(event) = ep.poll_event() {
            if trace() {
                eprintln!(
                    "{} @{:?}: {event:?}",
                    if server { "server" } else { "client" },
                    now
                );
            } else {
                let _ = write!(Sink, "{event:?}");
            }
            if let Event::Request(req) = event {
                assert!(req.request.method.is_request(), "{req:?}");
                if req.id.0 % 2 == 0 {
                    // Every fourth answer is larger than the amplification limit of an
                    // unverified peer (RFC 9175 §2.4 item 3).
                    let size = if req.id.0 % 4 == 0 { 700 } else { 0 };
                    let response = Response::with_payload(Code::CONTENT, vec![b'x'; size]);
                    match ep.respond(now, req.id, response) {
                        Ok(()) | Err(RespondError::AddressUnverified) => {}
                        Err(e) => panic!("respond to fresh {:?}: {e:?}", req.id),
                    }
                } else if server {
                    self.pending.push_back(req.id);
                }
            }
        }
    }

    /// Moves datagrams between the endpoints until neither has anything to send.
    fn pump(&mut self) {
        for _ in 0..64 {
            self.drain_events(true);
            self.drain_events(false);
            let mut moved = false;
            while let Some(t) = self.server.poll_transmit() {
                check_wire("server", t.peer, &t.payload);
                if t.peer == PARTNER {
                    self.client.handle_datagram(self.now, PARTNER, &t.payload);
                    self.drain_events(false);
                    moved = true;
                }
            }
            while let Some(t) = self.client.poll_transmit() {
                check_wire("client", t.peer, &t.payload);
                if t.peer == PARTNER {
                    self.server.handle_datagram(self.now, PARTNER, &t.payload);
                    self.drain_events(true);
                    moved = true;
                }
            }
            check_limits("server", &self.server);
            check_limits("client", &self.client);
            if !moved {
                return;
            }
        }
    }

    /// Runs both endpoints' timers at `self.now`, then pumps.
    fn advance(&mut self) {
        for (name, ep) in [("server", &mut self.server), ("client", &mut self.client)] {
            ep.handle_timeout(self.now);
            // Every timer due at `now` ran: the next deadline lies in the future.
            if let Some(t) = ep.poll_timeout() {
                assert!(
                    t > self.now,
                    "{name}: timer at {t:?} still due at {:?}",
                    self.now
                );
            }
        }
        self.pump();
    }

    fn send_request(&mut self, n: u8) {
        let mut req = Request::new(Code::GET);
        req.set_path("/temperature");
        let opts = RequestOptions {
            token: Some(Token::new(&[0xAB, n])),
            non_confirmable: n & 1 == 1,
            timeout: Some(Duration::from_secs(30)),
            ..RequestOptions::default()
        };
        let _ = self.client.send_request(self.now, PARTNER, &req, opts);
    }
}

/// RFC 7252 §3: whatever an endpoint emits must be a well-formed message.
fn check_wire(from: &str, to: u8, bytes: &[u8]) {
    match Message::parse(bytes) {
        Ok(m) if trace() => eprintln!("{from} -> peer {to}: {m:?}"),
        Ok(_) => {}
        Err(e) => panic!("{from} transmitted a malformed message ({e:?}): {bytes:02x?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut h = Harness {
        now: Instant::ZERO,
        server: Endpoint::new(
            EndpointConfig {
                amplification_limit: Some(AmplificationLimit {
                    max_verified_peers: 4,
                    ..AmplificationLimit::default()
                }),
                ..config()
            },
            Box::new(SmallRng::seed_from_u64(0)),
        ),
        client: Endpoint::new(config(), Box::new(SmallRng::seed_from_u64(1))),
        pending: VecDeque::new(),
    };
    h.send_request(0);
    h.pump();

    let mut rest = data;
    let mut extra_requests = 1u8;
    for _ in 0..MAX_STEPS {
        let [ctrl, dt, l0, l1, tail @ ..] = rest else {
            break;
        };
        let len = usize::from(u16::from_be_bytes([*l0, *l1])) % (MAX_DATAGRAM + 1);
        let len = len.min(tail.len());
        let (datagram, tail) = tail.split_at(len);
        rest = tail;

        h.now += Duration::from_millis(u64::from(*dt) * 100);
        h.advance();

        let peer = ctrl % 16;
        let to_client = ctrl & 0x10 != 0;
        let multicast = ctrl & 0x20 != 0;
        let ep = if to_client {
            &mut h.client
        } else {
            &mut h.server
        };
        if multicast {
            ep.handle_multicast_datagram(h.now, peer, datagram);
        } else {
            ep.handle_datagram(h.now, peer, datagram);
        }
        h.pump();

        if ctrl & 0x40 != 0 {
            if let Some(id) = h.pending.pop_front() {
                // May legitimately fail: the peer may have reset the exchange meanwhile.
                let _ =
                    h.server
                        .respond(h.now, id, Response::with_payload(Code::CONTENT, "22.3 C"));
                h.pump();
            }
        }
        if ctrl & 0x80 != 0 {
            h.send_request(extra_requests);
            extra_requests = extra_requests.wrapping_add(1);
            h.pump();
        }
    }

    // Run out the clock: every client exchange and cache entry must eventually go.
    for _ in 0..1024 {
        let next = [h.server.poll_timeout(), h.client.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else {
            for (name, ep) in [("server", &h.server), ("client", &h.client)] {
                let s = ep.stats();
                if trace() {
                    eprintln!("{name} at the end: {s:?}");
                }
                assert_eq!(s.client_exchanges, 0, "{name}: no timers left but {s:?}");
                assert_eq!(s.dedup_entries, 0, "{name}: no timers left but {s:?}");
            }
            break;
        };
        h.now = h.now.max(next);
        h.advance();
    }
});
