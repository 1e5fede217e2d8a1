//! The Pair harness (quinn's): a client and a server endpoint joined by a simulated
//! network, driven by a virtual clock. The network can lose, duplicate and reorder
//! datagrams, all from a seeded generator, so every run is reproducible.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{
    Endpoint, EndpointConfig, Event, IncomingId, IncomingRequest, Instant, Request, RequestId,
    RequestOptions, Response,
};

/// Peers are small numbers in the harness.
pub(crate) type Addr = u8;
pub(crate) const CLIENT: Addr = 1;
pub(crate) const SERVER: Addr = 2;

/// Faults the simulated network injects (smoltcp's `FaultInjector`, for datagrams).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Faults {
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Extra random delay up to this, which reorders datagrams.
    pub jitter: Duration,
}

pub(crate) struct InFlight {
    at: Instant,
    seq: u64,
    from: Addr,
    to: Addr,
    bytes: Bytes,
}

/// What the server application does with a request: answer after a delay, or never.
pub(crate) type Responder = Box<dyn FnMut(&IncomingRequest<Addr>) -> Option<(Duration, Response)>>;

pub(crate) struct Pair {
    pub now: Instant,
    pub client: Endpoint<Addr>,
    pub server: Endpoint<Addr>,
    pub faults: Faults,
    /// Every datagram put on the wire (before faults), in order: (time, from, to, bytes).
    pub wire: Vec<(Instant, Addr, Addr, Bytes)>,
    /// Requests the server application received.
    pub server_requests: Vec<IncomingRequest<Addr>>,
    /// Events the server reported other than requests.
    pub server_events: Vec<Event<Addr>>,
    /// Events the client received.
    pub client_events: Vec<Event<Addr>>,
    pub responder: Responder,
    pub latency: Duration,
    net_rng: StdRng,
    in_flight: Vec<InFlight>,
    seq: u64,
    pending_responses: Vec<(Instant, IncomingId, Response)>,
    /// Connections an endpoint closed (reliable transports), in order: (closer, peer).
    pub closed: Vec<(Addr, Addr)>,
}

pub(crate) fn echo_responder() -> Responder {
    Box::new(|req: &IncomingRequest<Addr>| {
        let mut response = Response::new(corium_wire::Code::CONTENT);
        response.payload = req.request.payload.clone();
        Some((Duration::ZERO, response))
    })
}

impl Pair {
    pub(crate) fn new(seed: u64, client: EndpointConfig, server: EndpointConfig) -> Pair {
        Pair {
            now: Instant::ZERO,
            client: Endpoint::new(client, Box::new(StdRng::seed_from_u64(seed))),
            server: Endpoint::new(server, Box::new(StdRng::seed_from_u64(seed ^ 0x5eed))),
            faults: Faults::default(),
            wire: Vec::new(),
            server_requests: Vec::new(),
            server_events: Vec::new(),
            client_events: Vec::new(),
            responder: echo_responder(),
            latency: Duration::from_millis(10),
            net_rng: StdRng::seed_from_u64(seed.wrapping_mul(31)),
            in_flight: Vec::new(),
            seq: 0,
            pending_responses: Vec::new(),
            closed: Vec::new(),
        }
    }

    /// A pair on a reliable transport (RFC 8323): the client connects, both sides send
    /// their CSM. Messages are delivered in order and without faults, as TCP does.
    pub(crate) fn connected(
        seed: u64,
        framing: corium_wire::Framing,
        client: EndpointConfig,
        server: EndpointConfig,
    ) -> Pair {
        let mut pair = Pair::new(
            seed,
            EndpointConfig {
                framing: Some(framing),
                ..client
            },
            EndpointConfig {
                framing: Some(framing),
                ..server
            },
        );
        pair.client.handle_connected(pair.now, SERVER);
        pair.server.handle_connected(pair.now, CLIENT);
        let latency = pair.latency;
        pair.run_for(latency);
        pair
    }

    pub(crate) fn default_pair(seed: u64) -> Pair {
        Pair::new(seed, EndpointConfig::default(), EndpointConfig::default())
    }

    pub(crate) fn send(&mut self, request: Request, options: RequestOptions) -> RequestId {
        let id = self
            .client
            .send_request(self.now, SERVER, &request, options)
            .expect("request accepted");
        self.flush();
        id
    }

    /// Injects raw bytes as if `from` sent them to `to`, bypassing faults.
    pub(crate) fn inject(&mut self, from: Addr, to: Addr, bytes: &[u8]) {
        let ep = if to == SERVER {
            &mut self.server
        } else {
            &mut self.client
        };
        if ep.config().framing.is_some() {
            ep.handle_stream_message(self.now, from, bytes);
        } else {
            ep.handle_datagram(self.now, from, bytes);
        }
        self.flush();
    }

    /// Moves transmits into the network and events to the applications.
    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.client.poll_transmit() {
                self.put_on_wire(CLIENT, t.peer, t.payload);
                progressed = true;
            }
            while let Some(t) = self.server.poll_transmit() {
                self.put_on_wire(SERVER, t.peer, t.payload);
                progressed = true;
            }
            while let Some(peer) = self.client.poll_close() {
                self.close(CLIENT, peer);
                progressed = true;
            }
            while let Some(peer) = self.server.poll_close() {
                self.close(SERVER, peer);
                progressed = true;
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
                progressed = true;
            }
            while let Some(e) = self.server.poll_event() {
                progressed = true;
                match e {
                    Event::Request(req) => {
                        if let Some((delay, response)) = (self.responder)(&req) {
                            self.pending_responses
                                .push((self.now + delay, req.id, response));
                        }
                        self.server_requests.push(req);
                    }
                    other => self.server_events.push(other),
                }
            }
            if !self.answer_due() && !progressed {
                return;
            }
        }
    }

    /// `closer` closes its connection to `peer`: what is in flight is still delivered
    /// (TCP flushes before FIN), then the other side learns of the close.
    fn close(&mut self, closer: Addr, peer: Addr) {
        self.closed.push((closer, peer));
        let now = self.now;
        let pending: Vec<InFlight> = self.in_flight.drain(..).collect();
        for f in pending {
            let ep = if f.to == SERVER {
                &mut self.server
            } else {
                &mut self.client
            };
            ep.handle_stream_message(now, f.from, &f.bytes);
        }
        let other = if peer == SERVER {
            &mut self.server
        } else {
            &mut self.client
        };
        other.handle_disconnected(now, closer);
    }

    fn answer_due(&mut self) -> bool {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self
            .pending_responses
            .drain(..)
            .partition(|(at, _, _)| *at <= now);
        self.pending_responses = later;
        let any = !due.is_empty();
        for (_, id, response) in due {
            let _ = self.server.respond(now, id, response);
        }
        any
    }

    fn put_on_wire(&mut self, from: Addr, to: Addr, bytes: Bytes) {
        self.wire.push((self.now, from, to, bytes.clone()));
        if self.net_rng.gen_bool(self.faults.loss) {
            return;
        }
        let copies = if self.net_rng.gen_bool(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if self.faults.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_nanos(
                    self.net_rng
                        .gen_range(0..=self.faults.jitter.as_nanos() as u64),
                )
            };
            self.seq += 1;
            self.in_flight.push(InFlight {
                at: self.now + self.latency + jitter,
                seq: self.seq,
                from,
                to,
                bytes: bytes.clone(),
            });
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        [
            self.in_flight.iter().map(|f| f.at).min(),
            self.client.poll_timeout(),
            self.server.poll_timeout(),
            self.pending_responses.iter().map(|p| p.0).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Advances to the next thing that happens, if it is at or before `limit`.
    pub(crate) fn step(&mut self, limit: Instant) -> bool {
        self.flush();
        let Some(at) = self.next_wakeup() else {
            return false;
        };
        if at > limit {
            return false;
        }
        self.now = self.now.max(at);
        let now = self.now;
        // Deliver due datagrams in (time, sequence) order.
        self.in_flight.sort_by_key(|f| (f.at, f.seq));
        while self.in_flight.first().is_some_and(|f| f.at <= now) {
            let f = self.in_flight.remove(0);
            let ep = if f.to == SERVER {
                &mut self.server
            } else {
                &mut self.client
            };
            if ep.config().framing.is_some() {
                ep.handle_stream_message(now, f.from, &f.bytes);
            } else {
                ep.handle_datagram(now, f.from, &f.bytes);
            }
            self.flush();
        }
        self.client.handle_timeout(now);
        self.server.handle_timeout(now);
        self.flush();
        true
    }

    /// Runs until nothing is left to do before `limit`.
    pub(crate) fn run_until(&mut self, limit: Instant) {
        while self.step(limit) {}
        self.now = self.now.max(limit);
    }

    /// Runs for `d` of virtual time.
    pub(crate) fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        self.run_until(limit);
    }

    /// The client's outcome for a request, if it has one.
    pub(crate) fn outcome(&self, id: RequestId) -> Option<&Event<Addr>> {
        self.client_events.iter().find(|e| match e {
            Event::Response { request, .. }
            | Event::RequestFailed { request, .. }
            | Event::RequestFinished { request }
            | Event::Pong { request } => *request == id,
            _ => false,
        })
    }

    /// The response to a request, panicking with the actual outcome if there is none.
    pub(crate) fn response(&self, id: RequestId) -> &Response {
        match self.outcome(id) {
            Some(Event::Response { response, .. }) => response,
            other => panic!("expected a response for {id:?}, got {other:?}"),
        }
    }

    /// Datagrams sent by `from`, parsed.
    pub(crate) fn sent_by(&self, from: Addr) -> Vec<(Instant, Bytes)> {
        self.wire
            .iter()
            .filter(|(_, f, _, _)| *f == from)
            .map(|(t, _, _, b)| (*t, b.clone()))
            .collect()
    }
}
