//! [`DtlsEndpoint`]: the sessions of one UDP socket.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use corium_proto::rand_core::RngCore;
use corium_proto::Instant;

use crate::config::{ClientConfig, DtlsConfig, ServerConfig};
use crate::engine::{
    Accept, DropReason, DtlsEngine, EngineSession, PeerIdentity, Role, SessionOutput,
};
use crate::error::{CloseReason, ConfigError, ConnectError, SendError, UnknownSession};
use crate::native::SelectEngine;
use crate::rate::{HandshakeRate, RateKey};
use crate::record::{self, ClientHello};

/// Names one DTLS session of a [`DtlsEndpoint`]. Never reused by an endpoint, so it can
/// serve as the peer of a `corium_proto::Endpoint` (alone, or with the address).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u64);

impl SessionId {
    /// The number behind the id (unique within its endpoint).
    pub fn value(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dtls#{}", self.0)
    }
}

/// What [`DtlsEndpoint::poll_event`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A handshake completed: the session carries application data from now on.
    HandshakeComplete {
        /// The session.
        session: SessionId,
        /// The peer's address.
        addr: SocketAddr,
        /// Our side of the handshake.
        role: Role,
        /// Who the peer proved to be.
        identity: PeerIdentity,
    },
    /// One decrypted record of application data: one CoAP message (RFC 7252 §9.1).
    ApplicationData {
        /// The session it arrived on.
        session: SessionId,
        /// The plaintext.
        bytes: Bytes,
    },
    /// The session is gone; its id is not used again.
    Closed {
        /// The session.
        session: SessionId,
        /// The peer's address.
        addr: SocketAddr,
        /// Why.
        reason: CloseReason,
    },
}

/// Counters of a [`DtlsEndpoint`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DtlsStats {
    /// Sessions now (handshaking and established).
    pub sessions: usize,
    /// Handshakes in progress now.
    pub handshakes: usize,
    /// HelloVerifyRequests sent (each one stateless).
    pub hello_verify_sent: u64,
    /// Server sessions created after a verified cookie.
    pub sessions_accepted: u64,
    /// Handshakes completed (both roles).
    pub handshakes_completed: u64,
    /// Datagrams from addresses without a session that were not ClientHellos, or were
    /// ClientHellos the engine dropped.
    pub dropped: u64,
    /// ClientHellos dropped because a session or handshake limit was reached, or the
    /// recent-handshake table was full.
    pub refused: u64,
    /// Cookie-verified ClientHellos refused as replays.
    pub replays: u64,
    /// ClientHellos with a cookie dropped because their address was over
    /// [`DtlsConfig::max_handshakes_per_addr`](crate::DtlsConfig::max_handshakes_per_addr)
    /// (or the table of addresses was full).
    pub rate_limited: u64,
}

/// One session and its bookkeeping. Kept boxed in the table: engine sessions are
/// kilobytes, and neither they nor these fields should be multiplied by the hash table's
/// spare capacity (up to half of it right after the table grows).
struct Entry<S> {
    addr: SocketAddr,
    role: Role,
    session: S,
    established: bool,
    created: Instant,
    last_activity: Instant,
    /// Application data waiting for the handshake.
    pending: VecDeque<Bytes>,
    /// The earliest wake-up queued in the timer heap for this session.
    scheduled: Option<Instant>,
    identity: Option<PeerIdentity>,
}

/// The DTLS layer of one UDP socket, sans-IO: many server sessions (peers that connect to
/// us) and client sessions ([`connect`](Self::connect)) keyed by peer address.
///
/// # Driving it
///
/// ```text
///   socket ──datagram──► handle_datagram(now, addr, bytes)
///   timer  ────────────► handle_timeout(now)        (at poll_timeout())
///   app    ────────────► connect / send / close
///   poll_transmit() ──► (addr, record bytes) ──► socket
///   poll_event()    ──► HandshakeComplete / ApplicationData (a CoAP message) / Closed
/// ```
///
/// After every `handle_*`, `connect`, `send` or `close`, drain `poll_transmit` and
/// `poll_event`, then sleep until `poll_timeout`. `now` is any monotonic clock (the runtime
/// uses the time since it started, tests a virtual one); calling early is harmless.
///
/// Between this and a `corium_proto::Endpoint<SessionId>`: feed each
/// [`Event::ApplicationData`] to the CoAP endpoint with the session as the peer, and give
/// each CoAP transmit for a session to [`send`](Self::send).
pub struct DtlsEndpoint<E: DtlsEngine = SelectEngine> {
    config: DtlsConfig,
    engine: E,
    sessions: HashMap<SessionId, Box<Entry<E::Session>>>,
    by_addr: HashMap<SocketAddr, SessionId>,
    handshakes: usize,
    next_id: u64,
    timers: BinaryHeap<Reverse<(Instant, SessionId)>>,
    transmits: VecDeque<(SocketAddr, Bytes)>,
    events: VecDeque<Event>,
    stats: DtlsStats,
    /// Per-address handshake allowances ([`DtlsConfig::max_handshakes_per_addr`]).
    rate: HandshakeRate,
}

impl<E: DtlsEngine> fmt::Debug for DtlsEndpoint<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsEndpoint")
            .field("sessions", &self.sessions.len())
            .field("handshakes", &self.handshakes)
            .field("transmits", &self.transmits.len())
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl DtlsEndpoint<SelectEngine> {
    /// An endpoint with the engine [`DtlsConfig::engine`] picks ([`SelectEngine`]): a
    /// server if `server` is given, a client always. `rng` supplies the cookie secret.
    pub fn new(
        config: DtlsConfig,
        server: Option<ServerConfig>,
        rng: &mut dyn RngCore,
    ) -> Result<Self, ConfigError> {
        let engine = SelectEngine::new(&config, server, rng)?;
        Ok(Self::with_engine(config, engine))
    }
}

impl<E: DtlsEngine> DtlsEndpoint<E> {
    /// An endpoint over any [`DtlsEngine`].
    pub fn with_engine(config: DtlsConfig, engine: E) -> Self {
        let rate = HandshakeRate::new(
            config.max_handshakes_per_addr,
            config.max_rate_limited_addrs,
        );
        DtlsEndpoint {
            rate,
            config,
            engine,
            sessions: HashMap::new(),
            by_addr: HashMap::new(),
            handshakes: 0,
            next_id: 1,
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: DtlsStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DtlsConfig {
        &self.config
    }

    /// A datagram arrived from `addr`.
    pub fn handle_datagram(&mut self, now: Instant, addr: SocketAddr, datagram: &[u8]) {
        if let Some(&id) = self.by_addr.get(&addr) {
            let Some(entry) = self.sessions.get_mut(&id) else {
                return;
            };
            // RFC 6347 §4.2.8: a ClientHello with a new random on an existing association
            // is a client that lost its state; its session is replaced once it completes a
            // cookie exchange, and kept until then.
            if entry.role == Role::Server && record::is_client_hello(datagram) {
                if let Some(ch) = ClientHello::parse(datagram) {
                    if entry.session.client_random() != Some(ch.random) {
                        self.accept(now, addr, datagram, Some(id));
                        self.after_input();
                        return;
                    }
                }
            }
            entry.session.handle_datagram(now, datagram);
            self.pump(id, now);
        } else if record::is_client_hello(datagram) {
            self.accept(now, addr, datagram, None);
        } else {
            self.stats.dropped += 1;
        }
        self.after_input();
    }

    /// Timers due at `now` fire: retransmissions, handshake timeouts, idle eviction.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            due.push((t, id));
        }
        for (t, id) in due {
            let Some(entry) = self.sessions.get_mut(&id) else {
                continue;
            };
            if entry.scheduled != Some(t) {
                continue; // superseded by an earlier wake-up
            }
            entry.scheduled = None;
            if !entry.established && now >= entry.created + self.config.handshake_timeout {
                entry.session.close(now, CloseReason::HandshakeTimeout);
            } else if entry.established && now >= entry.last_activity + self.config.idle_timeout {
                entry.session.close(now, CloseReason::IdleTimeout);
            } else if entry.session.poll_timeout().is_some_and(|t| t <= now) {
                entry.session.handle_timeout(now);
            }
            self.pump(id, now);
        }
        self.after_input();
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// The next datagram to send: destination and bytes (one or more DTLS records).
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Starts a client handshake with `addr`. The session is usable at once: messages given
    /// to [`send`](Self::send) wait for [`Event::HandshakeComplete`] (at most
    /// [`DtlsConfig::max_pending_sends`]).
    pub fn connect(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        config: &ClientConfig,
    ) -> Result<SessionId, ConnectError> {
        if let Some(&id) = self.by_addr.get(&addr) {
            return Err(ConnectError::SessionExists(id));
        }
        if self.sessions.len() >= self.config.max_sessions {
            return Err(ConnectError::TooManySessions);
        }
        if self.handshakes >= self.config.max_handshakes {
            return Err(ConnectError::TooManyHandshakes);
        }
        let session = self
            .engine
            .connect(now, addr, config)
            .map_err(|e| ConnectError::Engine(e.to_string()))?;
        let id = self.insert(now, addr, Role::Client, session);
        self.pump(id, now);
        self.after_input();
        Ok(id)
    }

    /// Encrypts `bytes` (one CoAP message) into one record for `session`. Before the
    /// handshake completes the message is queued.
    pub fn send(
        &mut self,
        now: Instant,
        session: SessionId,
        bytes: &[u8],
    ) -> Result<(), SendError> {
        let entry = self
            .sessions
            .get_mut(&session)
            .ok_or(SendError::UnknownSession)?;
        if bytes.len() > self.config.max_application_data {
            return Err(SendError::TooLarge);
        }
        if !entry.established {
            if entry.pending.len() >= self.config.max_pending_sends {
                return Err(SendError::QueueFull);
            }
            entry.pending.push_back(Bytes::copy_from_slice(bytes));
            return Ok(());
        }
        entry.last_activity = now;
        let result = entry.session.send(now, bytes);
        self.pump(session, now);
        self.after_input();
        result.map_err(SendError::Failed)
    }

    /// Closes `session`: `close_notify` if established (RFC 5246 §7.2.1), silent during
    /// the handshake. [`Event::Closed`] with [`CloseReason::Local`] follows.
    pub fn close(&mut self, now: Instant, session: SessionId) -> Result<(), UnknownSession> {
        let entry = self.sessions.get_mut(&session).ok_or(UnknownSession)?;
        entry.session.close(now, CloseReason::Local);
        self.pump(session, now);
        self.after_input();
        Ok(())
    }

    /// Closes every session (shutdown).
    pub fn close_all(&mut self, now: Instant) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            let _ = self.close(now, id);
        }
    }

    /// The session with `addr`, if any.
    pub fn session_by_addr(&self, addr: SocketAddr) -> Option<SessionId> {
        self.by_addr.get(&addr).copied()
    }

    /// The peer address of `session`.
    pub fn session_addr(&self, session: SessionId) -> Option<SocketAddr> {
        self.sessions.get(&session).map(|e| e.addr)
    }

    /// Our role in `session`.
    pub fn session_role(&self, session: SessionId) -> Option<Role> {
        self.sessions.get(&session).map(|e| e.role)
    }

    /// The verified identity of the peer of `session`, once established.
    pub fn session_identity(&self, session: SessionId) -> Option<&PeerIdentity> {
        self.sessions
            .get(&session)
            .and_then(|e| e.identity.as_ref())
    }

    /// Whether `session` completed its handshake.
    pub fn is_established(&self, session: SessionId) -> bool {
        self.sessions.get(&session).is_some_and(|e| e.established)
    }

    /// Sessions now (handshaking and established).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Counters.
    pub fn stats(&self) -> DtlsStats {
        DtlsStats {
            sessions: self.sessions.len(),
            handshakes: self.handshakes,
            ..self.stats.clone()
        }
    }

    fn accept(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        datagram: &[u8],
        replacing: Option<SessionId>,
    ) {
        let sessions_full = replacing.is_none() && self.sessions.len() >= self.config.max_sessions;
        if sessions_full || self.handshakes >= self.config.max_handshakes {
            self.stats.refused += 1;
            return;
        }
        // Per-address handshake rate: checked before the cookie (no work for an address
        // over its rate), used up only by a ClientHello whose cookie passed.
        let key = RateKey::of(addr.ip());
        let has_cookie = ClientHello::parse(datagram).is_some_and(|ch| !ch.cookie().is_empty());
        if has_cookie && !self.rate.allows(now, key) {
            self.stats.rate_limited += 1;
            return;
        }
        match self.engine.accept(now, addr, datagram) {
            Accept::Reply(bytes) => {
                self.stats.hello_verify_sent += 1;
                self.transmits.push_back((addr, bytes));
            }
            Accept::Session(session) => {
                self.rate.take(now, key);
                if let Some(old) = replacing {
                    self.remove(old, CloseReason::Replaced);
                }
                self.stats.sessions_accepted += 1;
                let id = self.insert(now, addr, Role::Server, session);
                self.pump(id, now);
            }
            Accept::Drop(DropReason::Replay) => self.stats.replays += 1,
            Accept::Drop(DropReason::HandshakeRateLimit | DropReason::Limit) => {
                self.stats.refused += 1
            }
            Accept::Drop(_) => self.stats.dropped += 1,
        }
    }

    fn insert(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        role: Role,
        session: E::Session,
    ) -> SessionId {
        let id = SessionId(self.next_id);
        self.next_id += 1;
        self.handshakes += 1;
        self.sessions.insert(
            id,
            Box::new(Entry {
                addr,
                role,
                session,
                established: false,
                created: now,
                last_activity: now,
                pending: VecDeque::new(),
                scheduled: None,
                identity: None,
            }),
        );
        self.by_addr.insert(addr, id);
        id
    }

    /// Moves a session's outputs to the endpoint's queues and reschedules it.
    fn pump(&mut self, id: SessionId, now: Instant) {
        let Self {
            sessions,
            transmits,
            events,
            handshakes,
            stats,
            ..
        } = self;
        let Some(entry) = sessions.get_mut(&id) else {
            return;
        };
        let mut closed = None;
        while let Some(output) = entry.session.poll_output() {
            match output {
                SessionOutput::Transmit(bytes) => transmits.push_back((entry.addr, bytes)),
                SessionOutput::Connected(identity) => {
                    if entry.established {
                        continue;
                    }
                    entry.established = true;
                    *handshakes -= 1;
                    stats.handshakes_completed += 1;
                    entry.last_activity = now;
                    entry.identity = Some(identity.clone());
                    events.push_back(Event::HandshakeComplete {
                        session: id,
                        addr: entry.addr,
                        role: entry.role,
                        identity,
                    });
                    while let Some(message) = entry.pending.pop_front() {
                        if entry.session.send(now, &message).is_err() {
                            break; // the session reports Closed next
                        }
                    }
                    // The queue is not used again: free it.
                    entry.pending = VecDeque::new();
                }
                SessionOutput::ApplicationData(bytes) => {
                    entry.last_activity = now;
                    events.push_back(Event::ApplicationData { session: id, bytes });
                }
                SessionOutput::Closed(reason) => {
                    closed = Some(reason);
                    break;
                }
            }
        }
        match closed {
            Some(reason) => self.remove(id, reason),
            None => self.reschedule(id),
        }
    }

    fn remove(&mut self, id: SessionId, reason: CloseReason) {
        let Some(entry) = self.sessions.remove(&id) else {
            return;
        };
        if self.by_addr.get(&entry.addr) == Some(&id) {
            self.by_addr.remove(&entry.addr);
        }
        if !entry.established {
            self.handshakes -= 1;
        }
        self.events.push_back(Event::Closed {
            session: id,
            addr: entry.addr,
            reason,
        });
    }

    fn reschedule(&mut self, id: SessionId) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        let limit = if entry.established {
            entry.last_activity + self.config.idle_timeout
        } else {
            entry.created + self.config.handshake_timeout
        };
        let deadline = entry.session.poll_timeout().map_or(limit, |t| t.min(limit));
        // Keep an earlier wake-up if there is one: when it fires the session is looked at
        // again and rescheduled, so the heap holds few entries per session.
        if entry.scheduled.is_none_or(|s| deadline < s) {
            entry.scheduled = Some(deadline);
            self.timers.push(Reverse((deadline, id)));
        }
    }

    /// Bounds the timer heap: superseded entries are dropped once they outnumber sessions.
    fn after_input(&mut self) {
        // The earliest entry is always live, so poll_timeout is exact.
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if self
                .sessions
                .get(&id)
                .is_some_and(|e| e.scheduled == Some(t))
            {
                break;
            }
            self.timers.pop();
        }
        if self.timers.len() > 2 * self.sessions.len() + 64 {
            let sessions = &self.sessions;
            let live: Vec<_> = self
                .timers
                .drain()
                .filter(|Reverse((t, id))| {
                    sessions.get(id).is_some_and(|e| e.scheduled == Some(*t))
                })
                .collect();
            self.timers = live.into();
        }
    }
}
