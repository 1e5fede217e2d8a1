//! The sans-IO CoAP endpoint (RFC 7252 §4–5, §8).
//!
//! One `Endpoint` is both client and server for every peer reachable through one socket.
//! Calling order (quinn's): feed input with [`Endpoint::handle_datagram`] and
//! [`Endpoint::handle_timeout`], act with [`Endpoint::send_request`] and
//! [`Endpoint::respond`], then drain [`Endpoint::poll_transmit`] and
//! [`Endpoint::poll_event`] until they return `None`, and sleep until
//! [`Endpoint::poll_timeout`]. Calling `handle_timeout` early is harmless.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use core::hash::Hash;
use core::time::Duration;

use bytes::Bytes;
use corium_wire::{
    BlockValue, Code, Framing, Header, Message, MessageType, OptionNumber, ParseError,
};
use hashbrown::HashMap;
use rand_core::RngCore;

use crate::amplification::{AddressValidation, EchoKey, ECHO_LEN};
use crate::block1::{Block1Limits, Block1Outcome, Block1Table};
use crate::blockwise::{self, BlockLimit, Cut};
use crate::codec::{self, Inbound};
use crate::config::EndpointConfig;
use crate::dedup::{DedupCache, DedupState};
use crate::error::{DeliveryError, RequestError, RespondError, SendError};
use crate::message::{Options, Request, Response, Token};
use crate::message_id::MessageIdTracker;
use crate::response_cache::{self, ResponseCache};
use crate::time::Instant;
use crate::timer::{TimerHandle, TimerQueue};

// RFC 7641: a child module, so that it shares the retransmission and timer machinery.
#[path = "observe.rs"]
pub(crate) mod observe;
use observe::{ClientObserve, ObservationEndReason, ObservationId, Observations, Verdict};

// RFC 8323: connections of reliable transports (CSM, Ping/Pong, Release, Abort).
#[path = "signaling.rs"]
pub(crate) mod signaling;
use signaling::Connection;

/// What identifies a peer: a socket address for plain UDP, a session for DTLS.
pub trait Peer: Clone + Eq + Hash + fmt::Debug {}
impl<T: Clone + Eq + Hash + fmt::Debug> Peer for T {}

/// Identifies a request this endpoint sent (the client side of an exchange).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Identifies a request this endpoint received and has not answered yet.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncomingId(pub u64);

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit<P> {
    /// Where to send it.
    pub peer: P,
    /// The whole CoAP message.
    pub payload: Bytes,
}

/// A request received from a peer, for the application to answer with
/// [`Endpoint::respond`].
#[derive(Clone, Debug)]
pub struct IncomingRequest<P> {
    /// Pass this to [`Endpoint::respond`].
    pub id: IncomingId,
    /// Who sent it.
    pub peer: P,
    /// The request.
    pub request: Request,
    /// Whether it came as a Confirmable message.
    pub confirmable: bool,
    /// Whether it was addressed to a multicast group (RFC 7252 §8.2).
    pub multicast: bool,
    /// The Observe option of a GET or FETCH (RFC 7641 §2): `Some(0)` asks to register
    /// (answer with [`Endpoint::respond_observe`]), `Some(1)` deregistered the relation
    /// with this token, if there was one (answer with [`Endpoint::respond`]).
    pub observe: Option<u32>,
}

/// Something that happened, for the application.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event<P> {
    /// A request arrived.
    Request(IncomingRequest<P>),
    /// A response to a request this endpoint sent.
    Response {
        /// The request it answers.
        request: RequestId,
        /// Who answered (differs from the destination for multicast requests).
        peer: P,
        /// The response.
        response: Response,
    },
    /// A request ended without a response.
    RequestFailed {
        /// The request.
        request: RequestId,
        /// Why.
        error: RequestError,
    },
    /// A request that accepts several responses is over: a multicast request reached its
    /// timeout, or an observe request got its last response (not observable, or an
    /// error, RFC 7641 §3.2).
    RequestFinished {
        /// The request.
        request: RequestId,
    },
    /// A CoAP ping (RFC 7252 §4.3) was answered with a Reset.
    Pong {
        /// The ping.
        request: RequestId,
    },
    /// A separate Confirmable response was not delivered.
    ResponseNotDelivered {
        /// The request it answered.
        request: IncomingId,
        /// Who was to receive it.
        peer: P,
        /// Why.
        error: DeliveryError,
    },
    /// The peer of a reliable transport sent Release (RFC 8323 §5.5): it wants the
    /// connection closed once outstanding requests are answered, and asks not to be
    /// reconnected to for `hold_off` seconds, or to use an alternative address.
    Released {
        /// The connection.
        peer: P,
        /// Alternative-Address options (authority form, RFC 3986 §3.2).
        alternative_addresses: Vec<alloc::string::String>,
        /// Hold-Off option, in seconds.
        hold_off: Option<u32>,
    },
    /// The peer of a reliable transport sent a CSM (RFC 8323 §5.3): what it can take now.
    Capabilities {
        /// The connection.
        peer: P,
        /// The capabilities and settings in force after it.
        capabilities: signaling::PeerCapabilities,
    },
    /// A connection of a reliable transport ended: the peer sent Abort, or this endpoint
    /// aborted it (RFC 8323 §5.6), or the runtime reported it closed. Its requests failed
    /// with [`RequestError::ConnectionClosed`], its relations ended.
    ConnectionEnded {
        /// The connection.
        peer: P,
        /// Why.
        reason: signaling::ConnectionEnd,
    },
    /// An observation relation this endpoint served ended (RFC 7641 §3.6, §4.5); not
    /// reported for [`Endpoint::end_observation`] or an error notification.
    ObservationEnded {
        /// The relation.
        obs: ObservationId,
        /// The observer.
        peer: P,
        /// Why.
        reason: ObservationEndReason,
    },
}

/// How to send one request.
#[derive(Clone, Debug, Default)]
pub struct RequestOptions {
    /// Send as Non-confirmable (RFC 7252 §4.3) instead of Confirmable.
    pub non_confirmable: bool,
    /// How long to wait for a response; the endpoint's default when `None`.
    pub timeout: Option<Duration>,
    /// The destination is a multicast group: the request goes out Non-confirmable,
    /// responses are accepted from any peer until the timeout (RFC 7252 §8.1).
    pub multicast: bool,
    /// Use this token instead of a random one.
    pub token: Option<Token>,
    /// Observe the resource (RFC 7641 §3.1): the request (a GET or FETCH) carries
    /// Observe = 0 and stays open for notifications, each an [`Event::Response`]; stale
    /// ones (§3.4) are dropped. It ends with [`Event::RequestFinished`] after a response
    /// without Observe or with an error code, or with [`Endpoint::cancel_request`]
    /// (after which the next notification is answered with RST, §3.6). When the latest
    /// notification's Max-Age passes, the request is sent again with the same token
    /// (§3.3.1); if that gets no answer or a RST, it ends with [`Event::RequestFailed`].
    pub observe: bool,
    /// With `observe`: never send the registration again when Max-Age passes (§3.3.1
    /// makes re-registering a MAY). For a registration that must not be repeated as it
    /// is: an OSCORE-protected one would be a replay (RFC 8613 §7.4), a fresh one needs
    /// a new Partial IV from the layer above.
    pub no_reregistration: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum TimerKind {
    /// Retransmit the CON of a client exchange.
    ClientRetransmit(u64),
    /// Give up waiting for a response.
    ClientDeadline(u64),
    /// Send the empty ACK that turns a response into a separate one.
    SeparateAck(u64),
    /// Forget a received request the application never answered.
    IncomingExpiry(u64),
    /// Retransmit a separate CON response.
    ServerRetransmit(u64),
    /// Send a multicast response after the leisure delay.
    Leisure(u64),
    /// Coalesced wake-up to expire the deduplication cache.
    DedupExpiry,
    /// Retransmit a Confirmable notification (RFC 7641 §4.5).
    NotifyRetransmit(u64),
    /// Re-register an observation whose latest notification is stale (RFC 7641 §3.3.1).
    ObserveRefresh(u64),
    /// Check a connection of a reliable transport for silence (RFC 8323 §5.4).
    KeepAlive(u64),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
enum Owner {
    Client(u64),
    Server(u64),
    /// A notification of an observation relation (RFC 7641).
    Observation(u64),
}

/// Retransmission state of one outgoing Confirmable message (RFC 7252 §4.2).
#[derive(Debug)]
struct Retransmission {
    message_id: u16,
    wire: Bytes,
    sent: u32,
    timeout: Duration,
    timer: TimerHandle,
}

impl Retransmission {
    /// Schedules the next retransmission, the timeout doubled (RFC 7252 §4.2), and
    /// returns the datagram to send again.
    fn again(
        &mut self,
        now: Instant,
        timers: &mut TimerQueue<TimerKind>,
        kind: TimerKind,
    ) -> Bytes {
        self.sent += 1;
        self.timeout = self.timeout.saturating_mul(2);
        self.timer = timers.insert(now + self.timeout, kind);
        self.wire.clone()
    }
}

#[derive(Debug)]
enum ClientState {
    /// Waiting for an NSTART slot; encoded with message ID 0.
    Queued(Bytes),
    /// CON sent, no ACK yet.
    AwaitingAck(Retransmission),
    /// NON sent, or CON acknowledged; waiting for the (separate) response.
    AwaitingResponse { message_id: u16 },
}

#[derive(Debug)]
struct ClientExchange<P> {
    peer: P,
    token: Token,
    confirmable: bool,
    multicast: bool,
    ping: bool,
    responses: u32,
    holds_slot: bool,
    deadline: Option<TimerHandle>,
    state: ClientState,
    /// Set for an observe request (RFC 7641 §3).
    observe: Option<ClientObserve>,
}

#[derive(Debug)]
struct IncomingExchange<P> {
    peer: P,
    message_id: u16,
    token: Token,
    confirmable: bool,
    multicast: bool,
    no_response: u32,
    acked: bool,
    ack_timer: Option<TimerHandle>,
    /// Set once the application answered and a separate CON response is in flight.
    separate: Option<Retransmission>,
    /// Set once the application answered a multicast request: the response waits here.
    leisure: Option<(Bytes, TimerHandle)>,
    /// The Block2 option of the request, if any (RFC 7959 §2.4).
    block2: Option<BlockValue>,
    /// The last Block1 of a reassembled upload, echoed in the response (RFC 7959 §2.3).
    block1: Option<BlockValue>,
    /// For unsafe methods: the key under which a large response is kept for its later
    /// blocks (RFC 7959 §2.7, `response_cache`).
    cache_key: Option<response_cache::RequestKey>,
    /// The request carried Size2 (0): the client asks for the representation's size
    /// (RFC 7959 §4).
    size2: bool,
    /// The most bytes the response may have while the peer's address is unverified
    /// (RFC 9175 §2.4 item 3); `None` when there is no limit.
    budget: Option<u32>,
    /// The method is unsafe (POST, PUT, …): it has run, so an oversized response is
    /// sent in smaller blocks instead of being replaced by an Echo challenge.
    unsafe_method: bool,
}

#[derive(Debug)]
struct PeerState {
    message_ids: MessageIdTracker,
    outstanding: usize,
    queue: VecDeque<u64>,
    incoming: usize,
    last_active: Instant,
}

impl PeerState {
    /// Nothing in flight either way, and no message ID ever allocated: the state holds
    /// nothing a fresh one would not.
    fn is_blank(&self) -> bool {
        self.incoming == 0
            && self.outstanding == 0
            && self.queue.is_empty()
            && self.message_ids.last_used().is_none()
    }
}

/// The CoAP endpoint state machine. See the module documentation for the calling order.
pub struct Endpoint<P: Peer> {
    config: EndpointConfig,
    rng: Box<dyn RngCore + Send>,
    peers: HashMap<P, PeerState>,
    dedup: DedupCache<P>,
    block1: Block1Table<P>,
    response_cache: ResponseCache<P>,
    timers: TimerQueue<TimerKind>,
    dedup_timer: Option<TimerHandle>,
    clients: HashMap<u64, ClientExchange<P>>,
    by_token: HashMap<(P, Token), u64>,
    multicast_by_token: HashMap<Token, u64>,
    by_message_id: HashMap<(P, u16), Owner>,
    incoming: HashMap<u64, IncomingExchange<P>>,
    next_id: u64,
    transmits: VecDeque<Transmit<P>>,
    events: VecDeque<Event<P>>,
    observations: Observations<P>,
    /// `Some` on a reliable transport (RFC 8323): no message layer, framed messages.
    framing: Option<Framing>,
    /// Amplification mitigation: verified addresses and the Echo key (RFC 9175 §2.4).
    validation: Option<AddressValidation<P>>,
    /// The Echo key for request freshness (RFC 9175 §2.4 item 1) of an endpoint without
    /// an amplification limit (which has its own), made on first use.
    freshness_key: Option<EchoKey>,
    /// Per-connection state of a reliable transport (the peer's CSM).
    connections: HashMap<P, Connection>,
    /// The connections by the number their keep-alive timer names.
    connection_ids: HashMap<u64, P>,
    /// Connections the runtime is to close once the transmits queued before are sent.
    closes: VecDeque<P>,
    /// Where transient datagrams (piggybacked and NON responses) are encoded: one
    /// allocation shared by many of them, reclaimed once they are sent (issue 8, no
    /// allocation per request on the plain GET path).
    out: bytes::BytesMut,
}

impl<P: Peer> fmt::Debug for Endpoint<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("peers", &self.peers.len())
            .field("client_exchanges", &self.clients.len())
            .field("server_exchanges", &self.incoming.len())
            .field("dedup_entries", &self.dedup.len())
            .field("timers", &self.timers.len())
            .finish_non_exhaustive()
    }
}

/// Table sizes, for monitoring and for tests of the hard limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointStats {
    /// Peers with state.
    pub peers: usize,
    /// Requests sent and not finished.
    pub client_exchanges: usize,
    /// Requests received and not finished.
    pub server_exchanges: usize,
    /// Entries in the deduplication cache.
    pub dedup_entries: usize,
    /// Block1 uploads being reassembled.
    pub block1_transfers: usize,
    /// Large responses to unsafe requests kept for their later blocks.
    pub cached_responses: usize,
    /// Pending timers.
    pub timers: usize,
    /// Observation relations served (RFC 7641).
    pub observations: usize,
    /// Addresses verified for the amplification limit (RFC 9175 §2.4 item 3).
    pub verified_addresses: usize,
}

/// RFC 7252 §5.4.1: the critical options this endpoint processes itself in requests.
const RECOGNIZED_REQUEST_CRITICAL: &[OptionNumber] = &[
    OptionNumber::IF_MATCH,
    OptionNumber::URI_HOST,
    OptionNumber::IF_NONE_MATCH,
    OptionNumber::URI_PORT,
    OptionNumber::URI_PATH,
    OptionNumber::URI_QUERY,
    OptionNumber::ACCEPT,
    // RFC 7959 §2.4: Block2 in a request (block number, late size negotiation) is served
    // by `blockwise::fragment_response`.
    OptionNumber::BLOCK2,
    // RFC 7959 §2.3: uploads are reassembled by `block1::Block1Table`.
    OptionNumber::BLOCK1,
];

/// Critical options accepted in responses: the client layer above handles Block1/Block2.
const RECOGNIZED_RESPONSE_CRITICAL: &[OptionNumber] = &[
    OptionNumber::BLOCK1,
    OptionNumber::BLOCK2,
    OptionNumber::OSCORE,
];

/// RFC 7967 §2.1: No-Response bits that suppress a response class.
fn no_response_suppresses(bits: u32, code: Code) -> bool {
    match code.class() {
        2 => bits & 0b0_0010 != 0,
        4 => bits & 0b0_1000 != 0,
        5 => bits & 0b1_0000 != 0,
        _ => false,
    }
}

/// The largest block size (as SZX, at least 0) whose block of a response with `options`
/// fits `budget` bytes, counting what a block adds: Block2 (≤ 4 bytes), an ETag (≤ 10)
/// unless there is one, an Echo value (≤ 3 + its length) and the payload marker (RFC
/// 9175 §2.4 item 3).
fn szx_within(token: &Token, options: &Options, budget: u32) -> u8 {
    let etag = if options.contains(OptionNumber::ETAG) {
        0
    } else {
        10
    };
    let fixed = codec::datagram_len(token.as_bytes(), options, &[]) + 4 + etag + 3 + ECHO_LEN + 1;
    let room = (budget as usize).saturating_sub(fixed);
    (0..=blockwise::MAX_UDP_SZX)
        .rev()
        .find(|szx| 16usize << szx <= room)
        .unwrap_or(0)
}

impl<P: Peer> Endpoint<P> {
    /// A new endpoint. `rng` provides tokens, initial message IDs and the randomised
    /// timeouts; the runtime passes an OS-seeded generator, tests a seeded one.
    pub fn new(config: EndpointConfig, mut rng: Box<dyn RngCore + Send>) -> Self {
        let validation = match (&config.amplification_limit, config.framing) {
            (Some(limit), None) => {
                let mut key = [0u8; 32];
                rng.fill_bytes(&mut key);
                Some(AddressValidation::new(limit.clone(), key))
            }
            _ => None,
        };
        let dedup = DedupCache::new(config.max_dedup_entries);
        let response_cache = ResponseCache::new(
            config.max_cached_responses,
            config.max_cached_response_bytes,
            config.blockwise_timeout,
        );
        let block1 = Block1Table::new(Block1Limits {
            max_body: config.max_block1_body,
            max_transfers: config.max_block1_transfers,
            max_total: config.max_block1_total,
            timeout: config.blockwise_timeout,
            max_szx: config.max_block_szx,
        });
        let framing = config.framing;
        Endpoint {
            config,
            rng,
            peers: HashMap::new(),
            dedup,
            block1,
            response_cache,
            timers: TimerQueue::new(),
            dedup_timer: None,
            clients: HashMap::new(),
            by_token: HashMap::new(),
            multicast_by_token: HashMap::new(),
            by_message_id: HashMap::new(),
            incoming: HashMap::new(),
            next_id: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            observations: Observations::new(),
            framing,
            validation,
            freshness_key: None,
            connections: HashMap::new(),
            connection_ids: HashMap::new(),
            closes: VecDeque::new(),
            out: bytes::BytesMut::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Current table sizes.
    pub fn stats(&self) -> EndpointStats {
        EndpointStats {
            peers: self.peers.len(),
            client_exchanges: self.clients.len(),
            server_exchanges: self.incoming.len(),
            dedup_entries: self.dedup.len(),
            block1_transfers: self.block1.len(),
            cached_responses: self.response_cache.len(),
            timers: self.timers.len(),
            observations: self.observations.len(),
            verified_addresses: self.validation.as_ref().map_or(0, AddressValidation::len),
        }
    }

    // ----------------------------------------------------------------------------------
    // Output
    // ----------------------------------------------------------------------------------

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event<P>> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    // ----------------------------------------------------------------------------------
    // Input
    // ----------------------------------------------------------------------------------

    /// Processes a unicast datagram from `peer`.
    pub fn handle_datagram(&mut self, now: Instant, peer: P, data: &[u8]) {
        self.handle(now, peer, data, false);
    }

    /// Processes a datagram from `peer` that was addressed to a multicast group this
    /// endpoint joined (RFC 7252 §8.2: no RST, no error responses, responses after a
    /// random leisure).
    pub fn handle_multicast_datagram(&mut self, now: Instant, peer: P, data: &[u8]) {
        self.handle(now, peer, data, true);
    }

    fn handle(&mut self, now: Instant, peer: P, data: &[u8], multicast: bool) {
        self.dedup.expire(now);
        self.block1.expire(now);
        self.response_cache.expire(now);
        if let Some(v) = &mut self.validation {
            v.expire(now);
        }
        let msg = match Message::parse_with_max_token(data, self.config.max_incoming_token_len) {
            Ok(msg) => msg,
            Err(err) => return self.reject_malformed(peer, data, err, multicast),
        };
        let msg = Inbound::datagram(&msg);
        let code = msg.code();
        match (msg.ty(), code.class()) {
            (_, 0) if code.is_empty() => self.handle_empty(now, peer, &msg, multicast),
            (MessageType::Confirmable | MessageType::NonConfirmable, 0) => {
                self.handle_request(now, peer, &msg, multicast)
            }
            (_, 0) => {} // A request in an ACK or RST: format error, silently ignored.
            (MessageType::Acknowledgement, 2..=5) => self.handle_piggybacked(now, peer, &msg),
            (MessageType::Confirmable | MessageType::NonConfirmable, 2..=5) if !multicast => {
                self.handle_separate_response(now, peer, &msg)
            }
            // Reserved classes 1, 6, 7 (signaling belongs to reliable transports), a
            // response in a RST, or a response sent to a multicast group: RFC 7252 §4.2
            // rejects a CON, §4.3 lets a NON be ignored.
            (MessageType::Confirmable, _) if !multicast => {
                self.send_reset(peer, msg.message_id());
            }
            _ => {}
        }
    }

    /// RFC 7252 §4.2: a Confirmable message with a format error is rejected with a RST;
    /// anything else malformed is silently dropped. Never RST a multicast (§8.1).
    fn reject_malformed(&mut self, peer: P, data: &[u8], _err: ParseError, multicast: bool) {
        if multicast {
            return;
        }
        if let Some(header) = Header::parse(data) {
            if header.version == corium_wire::VERSION && header.ty == MessageType::Confirmable {
                self.send_reset(peer, header.message_id);
            }
        }
    }

    fn send_reset(&mut self, peer: P, message_id: u16) {
        let wire = codec::empty(MessageType::Reset, message_id);
        self.transmits.push_back(Transmit {
            peer,
            payload: wire,
        });
    }

    fn handle_empty(&mut self, now: Instant, peer: P, msg: &Inbound<'_>, multicast: bool) {
        let mid = msg.message_id();
        match msg.ty() {
            // RFC 7252 §4.3: an empty CON is a CoAP ping, answered with a RST.
            MessageType::Confirmable if !multicast => self.send_reset(peer, mid),
            MessageType::Confirmable | MessageType::NonConfirmable => {}
            MessageType::Acknowledgement => {
                match self.by_message_id.get(&(peer.clone(), mid)).copied() {
                    Some(Owner::Client(id)) => self.client_acknowledged(now, id),
                    Some(Owner::Server(id)) => {
                        self.by_message_id.remove(&(peer, mid));
                        self.finish_incoming(id);
                    }
                    Some(Owner::Observation(id)) => self.notification_acknowledged(now, id, mid),
                    None => {}
                }
            }
            MessageType::Reset => match self.by_message_id.get(&(peer.clone(), mid)).copied() {
                Some(Owner::Client(id)) => {
                    let ping = self.clients.get(&id).is_some_and(|c| c.ping);
                    self.finish_client(now, id);
                    self.events.push_back(if ping {
                        Event::Pong {
                            request: RequestId(id),
                        }
                    } else {
                        Event::RequestFailed {
                            request: RequestId(id),
                            error: RequestError::Reset,
                        }
                    });
                }
                Some(Owner::Server(id)) => {
                    self.by_message_id.remove(&(peer.clone(), mid));
                    self.finish_incoming(id);
                    self.events.push_back(Event::ResponseNotDelivered {
                        request: IncomingId(id),
                        peer,
                        error: DeliveryError::Reset,
                    });
                }
                Some(Owner::Observation(id)) => self.notification_reset(id),
                // A RST to an older notification of a relation (RFC 7641 §3.6).
                None => {
                    if let Some(id) = self.observations.by_recent_mid(&peer, mid) {
                        self.notification_reset(id);
                    }
                }
            },
        }
    }

    // ----------------------------------------------------------------------------------
    // Server side
    // ----------------------------------------------------------------------------------

    fn handle_request(&mut self, now: Instant, peer: P, msg: &Inbound<'_>, multicast: bool) {
        let mid = msg.message_id();
        let confirmable = msg.ty() == MessageType::Confirmable;
        if multicast && confirmable {
            // RFC 7252 §8.1: multicast requests are Non-confirmable; a CON is not answered.
            return;
        }
        if self.framing.is_none() {
            if let Some(state) = self.dedup.get(&peer, mid) {
                return self.handle_duplicate_request(now, peer, confirmable, state);
            }
        }
        let token = Token::new(msg.token());
        let lifetime = if confirmable {
            self.config.transmission.exchange_lifetime()
        } else {
            self.config.transmission.non_lifetime()
        };

        // Requests rejected by the endpoint itself, before the application sees them.
        if let Some(code) = self.reject_request_code(msg) {
            let mut response = Response::new(code);
            if code == Code::BAD_OPTION {
                response.payload = b"Unrecognized critical option".to_vec();
            }
            let no_response = msg
                .option(OptionNumber::NO_RESPONSE)
                .and_then(corium_wire::decode_uint)
                .unwrap_or(0);
            if multicast || no_response_suppresses(no_response, code) {
                if confirmable {
                    let ack = codec::empty(MessageType::Acknowledgement, mid);
                    self.answer_and_remember(now, peer, mid, ack, lifetime);
                }
                return;
            }
            return self.answer_directly(now, peer, mid, &token, confirmable, &response, lifetime);
        }

        // Hard limits on the work a peer can leave with us (RFC 8516).
        let per_peer = self.peers.get(&peer).map_or(0, |p| p.incoming);
        let overloaded = if self.incoming.len() >= self.config.max_server_exchanges {
            Some(Code::SERVICE_UNAVAILABLE)
        } else if per_peer >= self.config.max_server_exchanges_per_peer {
            Some(Code::TOO_MANY_REQUESTS)
        } else {
            None
        };
        if let Some(code) = overloaded {
            if confirmable && !multicast {
                let mut response = Response::new(code);
                response
                    .options
                    .push_uint(OptionNumber::MAX_AGE, self.config.overload_max_age);
                self.answer_directly(now, peer, mid, &token, true, &response, lifetime);
            }
            return;
        }
        if self.peer_state(now, &peer).is_none() {
            return; // Peer table full of busy peers: drop, as under overload.
        }
        // RFC 9175 §2.4 item 3 and RFC 7252 §11.3: a group request is limited too (a
        // spoofed one is the worst amplifier, every member answers it); a response too
        // large goes out as its first block with an Echo value (RFC 7959 §2.8: the
        // client fetches the rest by unicast), and the 4.01 that replaces one that cannot
        // be cut is an error response, not sent to a group request (§8.2).
        let budget = self.amplification_budget(now, &peer, msg);

        let mut request = Request {
            method: msg.code(),
            options: self.request_options(msg),
            payload: codec::payload_of(msg),
        };
        // RFC 7959 §2.7: later blocks of a large response come from the response kept
        // when block 0 was sent; an unsafe request is not run again (its follow-ups have
        // no payload), and a GET need not be. A GET whose response is no longer kept is
        // simply answered again.
        let block2 = msg
            .option(OptionNumber::BLOCK2)
            .and_then(BlockValue::decode);
        let unsafe_method = response_cache::is_unsafe_method(request.method);
        let cache_key = response_cache::request_key_inline(
            request.method,
            &request.options,
            response_cache::NOT_PART_OF_THE_KEY,
        );
        if let (Some(b2), false) = (block2, multicast) {
            if b2.num > 0 {
                let mut limit = self.block_limit_for(&peer);
                let mut echo = None;
                if let Some(budget) = budget {
                    // Blocks within the amplification limit, with an Echo value the
                    // client can verify its address with (RFC 9175 §2.4 item 3).
                    if let Some(options) = self
                        .response_cache
                        .kept_options(&peer, cache_key.as_slice())
                    {
                        let szx = szx_within(&token, options, budget);
                        if szx < limit.max_szx || limit.bert_units > 0 {
                            limit = BlockLimit::plain(szx);
                            echo = self.validation.as_ref().map(|v| v.make_echo(now, &peer));
                        }
                    }
                }
                let kept =
                    self.response_cache
                        .serve_block(now, &peer, cache_key.as_slice(), b2, limit);
                let response = match kept {
                    Some(Ok(mut block)) => {
                        if let Some(echo) = echo {
                            block.options.set(OptionNumber::ECHO, echo.to_vec());
                        }
                        Some(block)
                    }
                    Some(Err(code)) => Some(Response::new(code)),
                    None if unsafe_method => Some(Response::with_payload(
                        Code::REQUEST_ENTITY_INCOMPLETE,
                        b"No response kept for this block".to_vec(),
                    )),
                    None => None,
                };
                if let Some(response) = response {
                    return self.answer_directly(
                        now,
                        peer,
                        mid,
                        &token,
                        confirmable,
                        &response,
                        lifetime,
                    );
                }
            }
        }
        let cache_key = Some(cache_key);

        // RFC 7959 §2.3: blocks of an upload are answered 2.31 by the endpoint; the
        // application sees one request with the whole body (atomic). Uploads the
        // application takes block by block (§2.5, non-atomic) pass through as they are.
        let mut block1 = None;
        let passthrough = self
            .config
            .block1_passthrough
            .as_ref()
            .is_some_and(|filter| (filter.0)(&request));
        if let Some(block) = msg
            .option(OptionNumber::BLOCK1)
            .and_then(BlockValue::decode)
            .filter(|_| !passthrough)
        {
            if multicast {
                return; // No block-wise uploads to groups.
            }
            let bert = self.accepts_bert();
            match self.block1.handle(now, &peer, request, block, bert) {
                Block1Outcome::Respond(response) => {
                    self.arm_dedup_timer(now);
                    return self.answer_directly(
                        now,
                        peer,
                        mid,
                        &token,
                        confirmable,
                        &response,
                        lifetime,
                    );
                }
                Block1Outcome::Deliver(whole, last) => {
                    request = whole;
                    block1 = Some(last);
                }
            }
        }

        let id = self.alloc_id();
        let no_response = msg
            .option(OptionNumber::NO_RESPONSE)
            .and_then(corium_wire::decode_uint)
            .unwrap_or(0);
        // A CON first waits for its separate-ACK moment; a NON only for its expiry.
        let ack_timer = Some(if confirmable {
            self.timers.insert(
                now + self.config.separate_ack_delay,
                TimerKind::SeparateAck(id),
            )
        } else {
            self.timers
                .insert(now + lifetime, TimerKind::IncomingExpiry(id))
        });
        let state = if confirmable {
            DedupState::Pending(id)
        } else {
            DedupState::Seen
        };
        if self.framing.is_none() {
            self.dedup
                .insert(peer.clone(), mid, state, now + lifetime, confirmable);
            self.arm_dedup_timer(now);
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.incoming += 1;
        }
        self.incoming.insert(
            id,
            IncomingExchange {
                peer: peer.clone(),
                message_id: mid,
                token,
                confirmable,
                multicast,
                no_response,
                acked: false,
                ack_timer,
                separate: None,
                leisure: None,
                block2,
                block1,
                cache_key,
                size2: msg.option(OptionNumber::SIZE2).is_some(),
                budget,
                unsafe_method,
            },
        );
        let observe = request.options.get_uint(OptionNumber::OBSERVE);
        let observe = self.observe_request(&peer, request.method, msg.token(), observe);
        self.events.push_back(Event::Request(IncomingRequest {
            id: IncomingId(id),
            peer,
            request,
            confirmable,
            multicast,
            observe,
        }));
    }

    /// RFC 7252 §5.8 (unknown method → 4.05), §5.4.1 (unrecognised critical option →
    /// 4.02), §5.7.2 (proxying not offered → 5.05).
    fn reject_request_code(&self, msg: &Inbound<'_>) -> Option<Code> {
        let method = msg.code();
        if !(Code::GET.0..=Code::IPATCH.0).contains(&method.0) {
            return Some(Code::METHOD_NOT_ALLOWED);
        }
        for opt in msg.options() {
            let n = opt.number;
            if n == OptionNumber::PROXY_URI || n == OptionNumber::PROXY_SCHEME {
                return Some(Code::PROXYING_NOT_SUPPORTED);
            }
            if n.is_critical()
                && (!RECOGNIZED_REQUEST_CRITICAL.contains(&n)
                    && !self.config.recognized_critical_options.contains(&n)
                    || !n.check_length(opt.value.len()))
            {
                return Some(Code::BAD_OPTION);
            }
        }
        None
    }

    /// The options of a request, less elective options whose length is out of range
    /// (RFC 7252 §5.4.3: treated like unrecognised options, i.e. ignored).
    fn request_options(&self, msg: &Inbound<'_>) -> Options {
        let mut options = codec::options_of(msg);
        if msg
            .options()
            .any(|o| !o.number.is_critical() && !o.number.check_length(o.value.len()))
        {
            let kept: alloc::vec::Vec<_> = options
                .iter()
                .filter(|(n, v)| n.is_critical() || n.check_length(v.len()))
                .map(|(n, v)| (n, v.to_vec()))
                .collect();
            options = Options::new();
            for (n, v) in kept {
                options.push(n, v);
            }
        }
        options
    }

    /// Answers a request on the spot (piggybacked for a CON, a NON otherwise) and
    /// remembers the answer for duplicates.
    #[allow(clippy::too_many_arguments)]
    fn answer_directly(
        &mut self,
        now: Instant,
        peer: P,
        mid: u16,
        token: &Token,
        confirmable: bool,
        response: &Response,
        lifetime: Duration,
    ) {
        if confirmable {
            let wire = codec::encode_transient(
                &mut self.out,
                self.framing,
                MessageType::Acknowledgement,
                response.code,
                mid,
                token.as_bytes(),
                &response.options,
                &response.payload,
            );
            self.answer_and_remember(now, peer, mid, wire, lifetime);
        } else {
            if self.framing.is_none() {
                self.dedup
                    .insert(peer.clone(), mid, DedupState::Seen, now + lifetime, false);
                self.arm_dedup_timer(now);
            }
            self.send_non_response(now, peer, token, response);
        }
    }

    fn answer_and_remember(
        &mut self,
        now: Instant,
        peer: P,
        mid: u16,
        wire: Bytes,
        lifetime: Duration,
    ) {
        self.dedup
            .insert_answer(peer.clone(), mid, &wire, now + lifetime, true);
        self.arm_dedup_timer(now);
        self.transmits.push_back(Transmit {
            peer,
            payload: wire,
        });
    }

    fn send_non_response(&mut self, now: Instant, peer: P, token: &Token, response: &Response) {
        let Some(mid) = self.allocate_message_id(now, &peer) else {
            return;
        };
        let wire = codec::encode_transient(
            &mut self.out,
            self.framing,
            MessageType::NonConfirmable,
            response.code,
            mid,
            token.as_bytes(),
            &response.options,
            &response.payload,
        );
        self.transmits.push_back(Transmit {
            peer,
            payload: wire,
        });
    }

    /// RFC 7252 §4.5: a duplicate CON gets the same answer again; a duplicate NON is
    /// ignored. A duplicate of a CON the application is still working on gets an empty
    /// ACK at once, making the response a separate one (§5.2.2).
    fn handle_duplicate_request(
        &mut self,
        now: Instant,
        peer: P,
        confirmable: bool,
        state: DedupState,
    ) {
        if !confirmable {
            return;
        }
        match state {
            DedupState::Answered(wire) => self.transmits.push_back(Transmit {
                peer,
                payload: wire,
            }),
            DedupState::Pending(id) => {
                self.send_separate_ack(now, id);
                let lifetime = self.config.transmission.exchange_lifetime();
                if let Some(ex) = self.incoming.get_mut(&id) {
                    if ex.ack_timer.is_none() {
                        ex.ack_timer = Some(
                            self.timers
                                .insert(now + lifetime, TimerKind::IncomingExpiry(id)),
                        );
                    }
                }
            }
            DedupState::Seen => {}
        }
    }

    /// Sends the empty ACK for a CON request still waiting for the application.
    fn send_separate_ack(&mut self, _now: Instant, id: u64) {
        let Some(ex) = self.incoming.get_mut(&id) else {
            return;
        };
        if ex.acked || !ex.confirmable {
            return;
        }
        ex.acked = true;
        if let Some(t) = ex.ack_timer.take() {
            self.timers.remove(t);
        }
        let wire = codec::empty(MessageType::Acknowledgement, ex.message_id);
        let (peer, mid) = (ex.peer.clone(), ex.message_id);
        self.dedup
            .update(&peer, mid, DedupState::Answered(wire.clone()));
        self.transmits.push_back(Transmit {
            peer,
            payload: wire,
        });
    }

    /// Answers a request delivered in [`Event::Request`].
    ///
    /// A Confirmable request still within `separate_ack_delay` gets a piggybacked
    /// response; later, a separate response (§5.2.2), Confirmable by default. A
    /// Non-confirmable request gets a Non-confirmable response (§5.2.3). Multicast
    /// requests get no error responses and are answered after a random leisure (§8.2).
    /// The No-Response option (RFC 7967) suppresses the classes it names.
    ///
    /// With an [`AmplificationLimit`](crate::AmplificationLimit), a response to a safe
    /// request that is too large for a peer whose address is unverified is replaced by a
    /// 4.01 with an Echo option (RFC 9175 §2.4 item 3); this returns
    /// [`RespondError::AddressUnverified`] then, after sending it.
    pub fn respond(
        &mut self,
        now: Instant,
        id: IncomingId,
        response: Response,
    ) -> Result<(), RespondError> {
        if self.respond_checked(now, id, response)? {
            Err(RespondError::AddressUnverified)
        } else {
            Ok(())
        }
    }

    /// [`respond`](Self::respond); `Ok(true)` when an Echo challenge went out instead.
    fn respond_checked(
        &mut self,
        now: Instant,
        id: IncomingId,
        response: Response,
    ) -> Result<bool, RespondError> {
        if !response.code.is_response() {
            return Err(RespondError::NotAResponse);
        }
        let key = id.0;
        let Some(ex) = self.incoming.get_mut(&key) else {
            return Err(RespondError::UnknownRequest);
        };
        if ex.separate.is_some() || ex.leisure.is_some() {
            return Err(RespondError::UnknownRequest);
        }
        if let Some(t) = ex.ack_timer.take() {
            self.timers.remove(t);
        }
        let mut response = response;
        if ex.size2 && response.code.is_success() {
            // RFC 7959 §4: the client asked for the size.
            let size = u32::try_from(response.payload.len()).unwrap_or(u32::MAX);
            response.options.set_uint(OptionNumber::SIZE2, size);
        }
        let (block1, block2, cache_key) = (ex.block1, ex.block2, ex.cache_key.take());
        let (budget, unsafe_method) = (ex.budget, ex.unsafe_method);
        let peer = ex.peer.clone();
        let token = ex.token.clone();
        let limit = self.block_limit_for(&peer);
        // A layer above may have vouched for the address since (`confirm_address`).
        let budget = budget.filter(|_| self.address_unverified(now, &peer));
        let mut challenged = false;
        // The response was cut to fit the amplification limit.
        let mut limited = false;
        let mut kept = None;
        match blockwise::cut_block(&mut response, block2, limit) {
            Err(code) => response = Response::new(code),
            Ok(Cut::Whole) => {}
            Ok(Cut::Block(block)) => {
                // The whole response is kept for the rest of the transfer (RFC 7959
                // §2.7 for unsafe methods; for GET it spares running the handler and
                // copying the representation once per block).
                kept = Some(core::mem::replace(&mut response, block));
            }
        }
        if let Some(budget) = budget {
            let len = codec::datagram_len(token.as_bytes(), &response.options, &response.payload);
            if len > budget as usize {
                // The response goes out in blocks small enough for the budget (RFC 7959
                // §2.4 lets the server pick the size), with an Echo value the client
                // proves its address with on the next block (RFC 9175 §2.3, preemptive):
                // every client can follow that, and one that echoes gets full-size
                // responses afterwards.
                let had_kept = kept.is_some();
                let mut whole = kept.take().unwrap_or_else(|| response.clone());
                if let Some(block) =
                    self.shrink_for_budget(now, &peer, &token, &mut whole, block2, budget)
                {
                    response = block;
                    kept = Some(whole);
                    limited = true;
                } else if unsafe_method {
                    // It cannot be cut (the application did its own block-wise
                    // transfer), and the request has taken effect: sent as it is.
                    kept = had_kept.then_some(whole);
                } else {
                    // RFC 9175 §2.4 item 3: a short 4.01 with Echo instead; the request
                    // is safe to repeat.
                    response = self.echo_challenge(now, &peer);
                    challenged = true;
                }
            }
        }
        if let (Some(whole), Some(k)) = (kept, cache_key) {
            if whole.code.is_success() {
                self.response_cache
                    .insert(now, peer.clone(), k.into_vec(), whole);
            }
        }
        if let Some(block) = block1 {
            let mut buf = [0u8; 4];
            response
                .options
                .set(OptionNumber::BLOCK1, block.encode(&mut buf).to_vec());
        }
        let Some(ex) = self.incoming.get_mut(&key) else {
            return Err(RespondError::UnknownRequest);
        };
        let suppress_errors_for_multicast =
            ex.multicast && !response.code.is_success() && ex.no_response == 0;
        if no_response_suppresses(ex.no_response, response.code) || suppress_errors_for_multicast {
            if ex.confirmable && !ex.acked {
                self.send_separate_ack(now, key);
            }
            self.finish_incoming(key);
            return Ok(challenged);
        }
        let peer = ex.peer.clone();
        let token = ex.token.clone();
        if ex.multicast {
            // RFC 7252 §8.2: spread responses over the leisure period.
            let leisure = self.config.transmission.default_leisure;
            let delay = self.random_duration(Duration::ZERO, leisure);
            let wire = match self.allocate_message_id(now, &peer) {
                Some(mid) => codec::encode(
                    self.framing,
                    MessageType::NonConfirmable,
                    response.code,
                    mid,
                    token.as_bytes(),
                    &response.options,
                    &response.payload,
                ),
                None => {
                    self.finish_incoming(key);
                    return Ok(challenged);
                }
            };
            let timer = self.timers.insert(now + delay, TimerKind::Leisure(key));
            if let Some(ex) = self.incoming.get_mut(&key) {
                ex.leisure = Some((wire, timer));
            }
            return Ok(challenged);
        }
        if !ex.confirmable {
            self.send_non_response(now, peer, &token, &response);
            self.finish_incoming(key);
            return Ok(challenged);
        }
        if !ex.acked {
            // Piggybacked (RFC 7252 §5.2.1).
            let mid = ex.message_id;
            let wire = codec::encode_transient(
                &mut self.out,
                self.framing,
                MessageType::Acknowledgement,
                response.code,
                mid,
                token.as_bytes(),
                &response.options,
                &response.payload,
            );
            self.dedup.update_answer(&peer, mid, &wire);
            self.transmits.push_back(Transmit {
                peer,
                payload: wire,
            });
            self.finish_incoming(key);
            return Ok(challenged);
        }
        // Separate response (RFC 7252 §5.2.2). One that carries an Echo value for an
        // unverified address is never Confirmable: its retransmissions would multiply
        // the bytes (RFC 9175 §2.4 item 3: piggybacked or Non-confirmable).
        if !self.config.separate_response_confirmable || challenged || limited {
            self.send_non_response(now, peer, &token, &response);
            self.finish_incoming(key);
            return Ok(challenged);
        }
        let Some(mid) = self.allocate_message_id(now, &peer) else {
            self.finish_incoming(key);
            return Ok(challenged);
        };
        let wire = codec::encode(
            self.framing,
            MessageType::Confirmable,
            response.code,
            mid,
            token.as_bytes(),
            &response.options,
            &response.payload,
        );
        let timeout = self.initial_timeout();
        let timer = self
            .timers
            .insert(now + timeout, TimerKind::ServerRetransmit(key));
        self.by_message_id
            .insert((peer.clone(), mid), Owner::Server(key));
        self.transmits.push_back(Transmit {
            peer,
            payload: wire.clone(),
        });
        if let Some(ex) = self.incoming.get_mut(&key) {
            ex.separate = Some(Retransmission {
                message_id: mid,
                wire,
                sent: 1,
                timeout,
                timer,
            });
        }
        Ok(challenged)
    }

    /// The budget of a request from `peer` under the amplification limit (RFC 9175
    /// §2.4 item 3): `None` when there is no limit or the address is verified. A valid
    /// Echo value in the request verifies the address first.
    fn amplification_budget(&mut self, now: Instant, peer: &P, msg: &Inbound<'_>) -> Option<u32> {
        let v = self.validation.as_mut()?;
        if v.is_verified(now, peer) {
            return None;
        }
        if let Some(echo) = msg.option(OptionNumber::ECHO) {
            if v.echo_is_valid(now, peer, echo) {
                v.confirm(now, peer);
                return None;
            }
        }
        Some(u32::try_from(v.limit().budget(msg.wire_len())).unwrap_or(u32::MAX))
    }

    /// A 4.01 (Unauthorized) with a fresh Echo value: the client repeats its request
    /// with the value to prove its address (RFC 9175 §2.3, §2.4 item 3).
    fn echo_challenge(&self, now: Instant, peer: &P) -> Response {
        let mut response = Response::new(Code::UNAUTHORIZED);
        if let Some(v) = &self.validation {
            response
                .options
                .set(OptionNumber::ECHO, v.make_echo(now, peer).to_vec());
        }
        response
    }

    /// Cuts `whole` into blocks small enough for `budget` (RFC 7959 §2.4: the server
    /// may pick a smaller size than asked) and puts an Echo value on the first one (a
    /// preemptive Echo, RFC 9175 §2.3), so the client's next request verifies its
    /// address. `None` when the response cannot be cut (the application did its own
    /// block-wise transfer, or its options alone are too large): it then goes out as
    /// it is.
    fn shrink_for_budget(
        &self,
        now: Instant,
        peer: &P,
        token: &Token,
        whole: &mut Response,
        requested: Option<BlockValue>,
        budget: u32,
    ) -> Option<Response> {
        let echo = self.validation.as_ref()?.make_echo(now, peer);
        let szx = szx_within(token, &whole.options, budget);
        match blockwise::cut_block(whole, requested, BlockLimit::plain(szx)) {
            Ok(Cut::Block(mut block)) => {
                block.options.set(OptionNumber::ECHO, echo.to_vec());
                Some(block)
            }
            _ => None,
        }
    }

    /// Marks `peer`'s address as verified for the amplification limit (RFC 9175 §2.4
    /// item 3), for a layer above that authenticated it otherwise (an OSCORE request
    /// that verified, say). No effect without an
    /// [`AmplificationLimit`](crate::AmplificationLimit).
    pub fn confirm_address(&mut self, now: Instant, peer: &P) {
        if let Some(v) = &mut self.validation {
            v.confirm(now, peer);
        }
    }

    /// Answers request `id` with 4.01 (Unauthorized) and a fresh Echo value, for an
    /// application that wants the client's address verified before it acts (RFC 9175
    /// §2.4 item 3; RFC 9176 §5.1 for an RD's simple registration): the client repeats
    /// the request with the value, which verifies its address. Use it when
    /// [`address_unverified`](Self::address_unverified) says so; without an
    /// [`AmplificationLimit`](crate::AmplificationLimit) there are no Echo values and
    /// this answers a plain 4.01.
    pub fn challenge(&mut self, now: Instant, id: IncomingId) -> Result<(), RespondError> {
        let Some(peer) = self.incoming.get(&id.0).map(|ex| ex.peer.clone()) else {
            return Err(RespondError::UnknownRequest);
        };
        let challenge = self.echo_challenge(now, &peer);
        self.respond(now, id, challenge)
    }

    /// The key of this endpoint's Echo values: the amplification limit's, else one drawn
    /// on first use.
    fn echo_key(&mut self) -> &EchoKey {
        if let Some(v) = &self.validation {
            return v.key();
        }
        let rng = &mut self.rng;
        self.freshness_key.get_or_insert_with(|| {
            let mut key = [0u8; 32];
            rng.fill_bytes(&mut key);
            EchoKey::new(key)
        })
    }

    /// A new Echo value for `peer` (RFC 9175 §2.3): a timestamp and a MAC over it and
    /// the peer, so the endpoint keeps no state for it (Appendix A item 2). A request
    /// that carries it back is at most as old as the value
    /// ([`echo_is_fresh`](Self::echo_is_fresh)), and it proves the peer's address to the
    /// amplification limit (§2.4 item 3).
    pub fn echo_value(&mut self, now: Instant, peer: &P) -> Vec<u8> {
        self.echo_key().make(now, peer).to_vec()
    }

    /// Whether `value` is an Echo value this endpoint made for `peer` no more than
    /// `max_age` ago (RFC 9175 §2.4 item 1: request freshness; the timestamp has a
    /// resolution of one second).
    pub fn echo_is_fresh(
        &mut self,
        now: Instant,
        peer: &P,
        value: &[u8],
        max_age: Duration,
    ) -> bool {
        self.echo_key()
            .age(now, peer, value)
            .is_some_and(|age| age.as_secs() <= max_age.as_secs())
    }

    /// Whether the amplification limit applies to `peer` (its address is not verified).
    pub fn address_unverified(&self, now: Instant, peer: &P) -> bool {
        self.validation
            .as_ref()
            .is_some_and(|v| !v.is_verified(now, peer))
    }

    /// Forgets a server exchange and its timers.
    fn finish_incoming(&mut self, key: u64) {
        let Some(ex) = self.incoming.remove(&key) else {
            return;
        };
        if let Some(t) = ex.ack_timer {
            self.timers.remove(t);
        }
        if let Some(r) = ex.separate {
            self.timers.remove(r.timer);
            self.forget_message_id(&ex.peer, r.message_id, Owner::Server(key));
        }
        if let Some((_, t)) = ex.leisure {
            self.timers.remove(t);
        }
        if let Some(p) = self.peers.get_mut(&ex.peer) {
            p.incoming = p.incoming.saturating_sub(1);
            // A peer that only sent requests (answered piggybacked or NON) leaves nothing
            // behind once they are done: no message ID of ours to protect (§4.4), nothing
            // in flight. Forget it now rather than keep an idle entry per client: a
            // server with many clients keeps state only for those with work in progress,
            // and the full-table eviction scan never runs for them.
            if self.framing.is_none() && p.is_blank() {
                self.peers.remove(&ex.peer);
            }
        }
        if self.framing.is_some() {
            self.close_if_released(ex.peer.clone());
        }
        if ex.confirmable && self.dedup.is_pending(&ex.peer, ex.message_id) {
            self.dedup.update(&ex.peer, ex.message_id, DedupState::Seen);
        }
    }

    // ----------------------------------------------------------------------------------
    // Client side
    // ----------------------------------------------------------------------------------

    /// Sends a request to `peer` and returns its ID; the outcome arrives as
    /// [`Event::Response`] or [`Event::RequestFailed`] (or, for multicast,
    /// [`Event::RequestFinished`]).
    ///
    /// Requests beyond NSTART outstanding interactions towards the peer (RFC 7252 §4.7)
    /// wait in a bounded queue.
    pub fn send_request(
        &mut self,
        now: Instant,
        peer: P,
        request: &Request,
        options: RequestOptions,
    ) -> Result<RequestId, SendError> {
        if !request.method.is_request() {
            return Err(SendError::NotARequest);
        }
        if self.clients.len() >= self.config.max_client_exchanges {
            return Err(SendError::TooManyExchanges);
        }
        // RFC 8323 §3.2: a reliable transport has no message types (and no multicast).
        let multicast = options.multicast && self.framing.is_none();
        let confirmable = !(options.non_confirmable || multicast || self.framing.is_some());
        let token = match options.token {
            Some(t) => t,
            None => self.fresh_token(&peer).ok_or(SendError::TokensExhausted)?,
        };
        let timeout = options
            .timeout
            .unwrap_or_else(|| self.config.request_timeout());
        let ty = if confirmable {
            MessageType::Confirmable
        } else {
            MessageType::NonConfirmable
        };
        let token_bytes = token.clone();
        let mut observed;
        let request = if options.observe {
            // RFC 7641 §3.1: Observe = 0 registers.
            observed = request.clone();
            observed.options.set_uint(OptionNumber::OBSERVE, 0);
            &observed
        } else {
            request
        };
        let framing = self.framing;
        let wire = |mid| {
            codec::encode(
                framing,
                ty,
                request.method,
                mid,
                token_bytes.as_bytes(),
                &request.options,
                &request.payload,
            )
        };
        let id = self.start_exchange(
            now,
            peer,
            token,
            confirmable,
            multicast,
            false,
            timeout,
            wire,
        )?;
        if options.observe {
            if let Some(ex) = self.clients.get_mut(&id.0) {
                let again = (!options.no_reregistration).then(|| request.clone());
                ex.observe = Some(ClientObserve::new(again, timeout));
            }
        }
        Ok(id)
    }

    /// Sends a CoAP ping (an empty CON, RFC 7252 §4.3; a 7.02 Ping on a reliable
    /// transport, RFC 8323 §5.4); [`Event::Pong`] reports the RST or the Pong.
    pub fn ping(&mut self, now: Instant, peer: P) -> Result<RequestId, SendError> {
        if self.clients.len() >= self.config.max_client_exchanges {
            return Err(SendError::TooManyExchanges);
        }
        if let Some(framing) = self.framing {
            return self.stream_ping(now, peer, framing);
        }
        let timeout = self.config.transmission.max_transmit_wait();
        let wire = |mid| codec::empty(MessageType::Confirmable, mid);
        self.start_exchange(now, peer, Token::EMPTY, true, false, true, timeout, wire)
    }

    #[allow(clippy::too_many_arguments)]
    fn start_exchange(
        &mut self,
        now: Instant,
        peer: P,
        token: Token,
        confirmable: bool,
        multicast: bool,
        ping: bool,
        timeout: Duration,
        wire: impl Fn(u16) -> Bytes,
    ) -> Result<RequestId, SendError> {
        let nstart = self.config.transmission.nstart.max(1);
        let max_queued = self.config.max_queued_per_peer;
        // RFC 8323: the transport does congestion control; NSTART is a UDP rule.
        let reliable = self.framing.is_some();
        let Some(state) = self.peer_state(now, &peer) else {
            return Err(SendError::TooManyPeers);
        };
        let slot_free = multicast || reliable || state.outstanding < nstart;
        if !slot_free && state.queue.len() >= max_queued {
            return Err(SendError::QueueFull);
        }
        let id = self.alloc_id();
        let state = if slot_free {
            let mid = self
                .allocate_message_id(now, &peer)
                .ok_or(SendError::MessageIdsExhausted)?;
            self.transmit_request(now, id, &peer, mid, confirmable, wire(mid))
        } else {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.queue.push_back(id);
            }
            ClientState::Queued(wire(0))
        };
        let holds_slot = slot_free && !multicast && !reliable;
        if holds_slot {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.outstanding += 1;
            }
        }
        // A Ping of a reliable transport is matched by its token (RFC 8323 §5.4).
        if !ping || reliable {
            if multicast {
                self.multicast_by_token.insert(token.clone(), id);
            } else {
                self.by_token.insert((peer.clone(), token.clone()), id);
            }
        }
        let deadline = Some(
            self.timers
                .insert(now + timeout, TimerKind::ClientDeadline(id)),
        );
        self.clients.insert(
            id,
            ClientExchange {
                peer,
                token,
                confirmable,
                multicast,
                ping,
                responses: 0,
                holds_slot,
                deadline,
                state,
                observe: None,
            },
        );
        Ok(RequestId(id))
    }

    /// Puts a request on the wire and returns its state.
    fn transmit_request(
        &mut self,
        now: Instant,
        id: u64,
        peer: &P,
        mid: u16,
        confirmable: bool,
        wire: Bytes,
    ) -> ClientState {
        if self.framing.is_none() {
            self.by_message_id
                .insert((peer.clone(), mid), Owner::Client(id));
        }
        self.transmits.push_back(Transmit {
            peer: peer.clone(),
            payload: wire.clone(),
        });
        if confirmable {
            let timeout = self.initial_timeout();
            let timer = self
                .timers
                .insert(now + timeout, TimerKind::ClientRetransmit(id));
            ClientState::AwaitingAck(Retransmission {
                message_id: mid,
                wire,
                sent: 1,
                timeout,
                timer,
            })
        } else {
            ClientState::AwaitingResponse { message_id: mid }
        }
    }

    /// Stops a request: no more retransmissions, no event; a late response is answered
    /// with RST like any unknown one.
    pub fn cancel_request(&mut self, now: Instant, id: RequestId) {
        self.finish_client(now, id.0);
    }

    /// An empty ACK (or the ACK of a piggybacked response) for a client exchange.
    fn client_acknowledged(&mut self, now: Instant, id: u64) {
        let Some(ex) = self.clients.get_mut(&id) else {
            return;
        };
        if let ClientState::AwaitingAck(r) = &ex.state {
            let (timer, message_id) = (r.timer, r.message_id);
            ex.state = ClientState::AwaitingResponse { message_id };
            self.timers.remove(timer);
            // RFC 7252 §4.7: an acknowledged CON is no longer outstanding.
            self.release_slot(now, id);
        }
    }

    fn handle_piggybacked(&mut self, now: Instant, peer: P, msg: &Inbound<'_>) {
        let mid = msg.message_id();
        let Some(Owner::Client(id)) = self.by_message_id.get(&(peer.clone(), mid)).copied() else {
            return; // An ACK for nothing we sent (late duplicate): ignore.
        };
        let Some(ex) = self.clients.get(&id) else {
            return;
        };
        if ex.token.as_bytes() != msg.token() || !matches!(ex.state, ClientState::AwaitingAck(_)) {
            return; // RFC 7252 §5.3.2: the token must match.
        }
        self.client_acknowledged(now, id);
        self.deliver_response(now, id, peer, msg);
    }

    fn handle_separate_response(&mut self, now: Instant, peer: P, msg: &Inbound<'_>) {
        let mid = msg.message_id();
        let confirmable = msg.ty() == MessageType::Confirmable;
        let lifetime = if confirmable {
            self.config.transmission.exchange_lifetime()
        } else {
            self.config.transmission.non_lifetime()
        };
        if let Some(state) = self
            .dedup
            .get(&peer, mid)
            .filter(|_| self.framing.is_none())
        {
            if let (true, DedupState::Answered(wire)) = (confirmable, state) {
                self.transmits.push_back(Transmit {
                    peer,
                    payload: wire,
                });
            }
            return;
        }
        let token = Token::new(msg.token());
        let id = self
            .by_token
            .get(&(peer.clone(), token.clone()))
            .or_else(|| self.multicast_by_token.get(&token))
            .copied();
        // A request still waiting for its NSTART slot was never sent: nothing can
        // answer it yet.
        let id = id.filter(|id| {
            !matches!(
                self.clients.get(id).map(|c| &c.state),
                Some(ClientState::Queued(_))
            )
        });
        let Some(id) = id else {
            if self.framing.is_some() {
                return; // RFC 8323 has no Reset: an unexpected response is ignored.
            }
            // RFC 7252 §4.2/§4.3: nothing waits for this response; reject it, so an
            // observer that forgot its registration stops getting notifications.
            let rst = codec::empty(MessageType::Reset, mid);
            if confirmable {
                self.answer_and_remember(now, peer, mid, rst, lifetime);
            } else {
                self.transmits.push_back(Transmit { peer, payload: rst });
            }
            return;
        };
        if self.framing.is_some() {
        } else if confirmable {
            let ack = if self.response_is_acceptable(msg) {
                codec::empty(MessageType::Acknowledgement, mid)
            } else {
                codec::empty(MessageType::Reset, mid)
            };
            self.answer_and_remember(now, peer.clone(), mid, ack, lifetime);
        } else {
            self.dedup
                .insert(peer.clone(), mid, DedupState::Seen, now + lifetime, false);
            self.arm_dedup_timer(now);
        }
        // The response may overtake the empty ACK (RFC 7252 §5.2.2): it acknowledges too.
        self.client_acknowledged(now, id);
        self.deliver_response(now, id, peer, msg);
    }

    /// RFC 7252 §5.4.1: a response with an unrecognised critical option is rejected.
    fn response_is_acceptable(&self, msg: &Inbound<'_>) -> bool {
        msg.options().all(|o| {
            let n = o.number;
            !n.is_critical()
                || RECOGNIZED_REQUEST_CRITICAL.contains(&n)
                || RECOGNIZED_RESPONSE_CRITICAL.contains(&n)
                || self.config.recognized_critical_options.contains(&n)
        })
    }

    fn deliver_response(&mut self, now: Instant, id: u64, peer: P, msg: &Inbound<'_>) {
        let acceptable = self.response_is_acceptable(msg);
        let Some(ex) = self.clients.get_mut(&id) else {
            return;
        };
        if !acceptable {
            self.finish_client(now, id);
            self.events.push_back(Event::RequestFailed {
                request: RequestId(id),
                error: RequestError::BadResponse,
            });
            return;
        }
        ex.responses += 1;
        let multicast = ex.multicast;
        let response = Response {
            code: msg.code(),
            options: codec::options_of(msg),
            payload: codec::payload_of(msg),
        };
        let verdict = self.observe_verdict(now, id, &response);
        if verdict == Verdict::Stale {
            return; // RFC 7641 §3.4: older than a notification already delivered.
        }
        if !multicast && verdict != Verdict::Notification {
            self.finish_client(now, id);
        }
        self.events.push_back(Event::Response {
            request: RequestId(id),
            peer,
            response,
        });
        if verdict == Verdict::Last {
            self.events.push_back(Event::RequestFinished {
                request: RequestId(id),
            });
        }
    }

    /// Forgets a client exchange and its timers, and frees its NSTART slot.
    fn finish_client(&mut self, now: Instant, id: u64) {
        let Some(ex) = self.clients.get(&id) else {
            return;
        };
        if ex.holds_slot {
            self.release_slot(now, id);
        }
        let Some(ex) = self.clients.remove(&id) else {
            return;
        };
        if let Some(t) = ex.deadline {
            self.timers.remove(t);
        }
        if let Some(t) = ex.observe.as_ref().and_then(|o| o.refresh_timer()) {
            self.timers.remove(t);
        }
        match ex.state {
            ClientState::Queued(_) => {
                if let Some(p) = self.peers.get_mut(&ex.peer) {
                    p.queue.retain(|q| *q != id);
                }
            }
            ClientState::AwaitingAck(r) => {
                self.timers.remove(r.timer);
                self.forget_message_id(&ex.peer, r.message_id, Owner::Client(id));
            }
            ClientState::AwaitingResponse { message_id } => {
                self.forget_message_id(&ex.peer, message_id, Owner::Client(id));
            }
        }
        // The index entries go only if they still name this exchange: a later request
        // may reuse the token (RFC 7641 §3.3.1 re-registration) or, much later, the
        // message ID.
        if ex.multicast {
            if self.multicast_by_token.get(&ex.token) == Some(&id) {
                self.multicast_by_token.remove(&ex.token);
            }
        } else if !ex.ping || self.framing.is_some() {
            let key = (ex.peer, ex.token);
            if self.by_token.get(&key) == Some(&id) {
                self.by_token.remove(&key);
            }
        }
    }

    /// Removes a message-ID index entry if it still belongs to `owner`.
    fn forget_message_id(&mut self, peer: &P, message_id: u16, owner: Owner) {
        let key = (peer.clone(), message_id);
        if self.by_message_id.get(&key) == Some(&owner) {
            self.by_message_id.remove(&key);
        }
    }

    /// Frees the NSTART slot held by exchange `id` and starts the next queued request.
    fn release_slot(&mut self, now: Instant, id: u64) {
        let Some(ex) = self.clients.get_mut(&id) else {
            return;
        };
        if !ex.holds_slot {
            return;
        }
        ex.holds_slot = false;
        let peer = ex.peer.clone();
        if let Some(p) = self.peers.get_mut(&peer) {
            p.outstanding = p.outstanding.saturating_sub(1);
        }
        self.start_queued(now, &peer);
    }

    fn start_queued(&mut self, now: Instant, peer: &P) {
        let nstart = self.config.transmission.nstart.max(1);
        loop {
            let Some(p) = self.peers.get_mut(peer) else {
                return;
            };
            if p.outstanding >= nstart {
                return;
            }
            let Some(next) = p.queue.pop_front() else {
                return;
            };
            let Some(ex) = self.clients.get(&next) else {
                continue;
            };
            let ClientState::Queued(template) = &ex.state else {
                continue;
            };
            let template = template.clone();
            let confirmable = ex.confirmable;
            let Some(mid) = self.allocate_message_id(now, peer) else {
                // No message ID free: the request fails rather than wait past its timeout.
                self.finish_client(now, next);
                self.events.push_back(Event::RequestFailed {
                    request: RequestId(next),
                    error: RequestError::Timeout,
                });
                continue;
            };
            let mut bytes = template.to_vec();
            bytes[2..4].copy_from_slice(&mid.to_be_bytes());
            let state = self.transmit_request(now, next, peer, mid, confirmable, bytes.into());
            if let Some(ex) = self.clients.get_mut(&next) {
                ex.state = state;
                ex.holds_slot = true;
            }
            if let Some(p) = self.peers.get_mut(peer) {
                p.outstanding += 1;
            }
        }
    }

    /// A random token not in use towards `peer`; `None` if a few draws all collide
    /// (only possible with very short tokens and many requests in flight).
    fn fresh_token(&mut self, peer: &P) -> Option<Token> {
        let len = self.config.token_len.min(8);
        for _ in 0..32 {
            let mut bytes = [0u8; 8];
            self.rng.fill_bytes(&mut bytes[..len]);
            let token = Token::new(&bytes[..len]);
            if len == 0
                || (!self.by_token.contains_key(&(peer.clone(), token.clone()))
                    && !self.multicast_by_token.contains_key(&token))
            {
                return Some(token);
            }
        }
        None
    }

    // ----------------------------------------------------------------------------------
    // Timers
    // ----------------------------------------------------------------------------------

    /// Runs every timer due at `now`: retransmissions (RFC 7252 §4.2), request timeouts,
    /// empty ACKs for slow responses, multicast leisure, cache expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.dedup.expire(now);
        self.block1.expire(now);
        self.response_cache.expire(now);
        while let Some(kind) = self.timers.pop_due(now) {
            match kind {
                TimerKind::ClientRetransmit(id) => self.client_retransmit(now, id),
                TimerKind::ClientDeadline(id) => self.client_deadline(now, id),
                TimerKind::SeparateAck(id) => {
                    if let Some(ex) = self.incoming.get_mut(&id) {
                        ex.ack_timer = None;
                    }
                    self.send_separate_ack(now, id);
                    // The client stops waiting after its request timeout; a request the
                    // application never answers is forgotten after EXCHANGE_LIFETIME so it
                    // cannot hold a slot of `max_server_exchanges` forever.
                    let lifetime = self.config.transmission.exchange_lifetime();
                    if let Some(ex) = self.incoming.get_mut(&id) {
                        ex.ack_timer = Some(
                            self.timers
                                .insert(now + lifetime, TimerKind::IncomingExpiry(id)),
                        );
                    }
                }
                TimerKind::IncomingExpiry(id) => {
                    if let Some(ex) = self.incoming.get_mut(&id) {
                        ex.ack_timer = None;
                    }
                    if self
                        .incoming
                        .get(&id)
                        .is_some_and(|ex| ex.separate.is_none() && ex.leisure.is_none())
                    {
                        self.finish_incoming(id);
                    }
                }
                TimerKind::ServerRetransmit(id) => self.server_retransmit(now, id),
                TimerKind::Leisure(id) => {
                    if let Some(ex) = self.incoming.get_mut(&id) {
                        if let Some((wire, _)) = ex.leisure.take() {
                            let peer = ex.peer.clone();
                            self.transmits.push_back(Transmit {
                                peer,
                                payload: wire,
                            });
                        }
                    }
                    self.finish_incoming(id);
                }
                TimerKind::DedupExpiry => {
                    self.dedup_timer = None;
                    self.arm_dedup_timer(now);
                }
                TimerKind::NotifyRetransmit(id) => self.notification_retransmit(now, id),
                TimerKind::ObserveRefresh(id) => self.observe_refresh(now, id),
                TimerKind::KeepAlive(id) => self.keepalive(now, id),
            }
        }
    }

    fn client_retransmit(&mut self, now: Instant, id: u64) {
        let max = self.config.transmission.max_retransmit;
        let Some(ex) = self.clients.get_mut(&id) else {
            return;
        };
        let ClientState::AwaitingAck(r) = &mut ex.state else {
            return;
        };
        if r.sent > max {
            self.finish_client(now, id);
            self.events.push_back(Event::RequestFailed {
                request: RequestId(id),
                error: RequestError::NoAcknowledgement,
            });
            return;
        }
        let payload = r.again(now, &mut self.timers, TimerKind::ClientRetransmit(id));
        self.transmits.push_back(Transmit {
            peer: ex.peer.clone(),
            payload,
        });
    }

    fn client_deadline(&mut self, now: Instant, id: u64) {
        let Some(ex) = self.clients.get_mut(&id) else {
            return;
        };
        ex.deadline = None;
        let event = if ex.multicast {
            Event::RequestFinished {
                request: RequestId(id),
            }
        } else {
            Event::RequestFailed {
                request: RequestId(id),
                error: RequestError::Timeout,
            }
        };
        // A CON still being retransmitted keeps its own schedule (§4.2) unless the
        // request's timeout ends it first.
        self.finish_client(now, id);
        self.events.push_back(event);
    }

    fn server_retransmit(&mut self, now: Instant, id: u64) {
        let max = self.config.transmission.max_retransmit;
        let Some(ex) = self.incoming.get_mut(&id) else {
            return;
        };
        let Some(r) = &mut ex.separate else {
            return;
        };
        if r.sent > max {
            let peer = ex.peer.clone();
            self.finish_incoming(id);
            self.events.push_back(Event::ResponseNotDelivered {
                request: IncomingId(id),
                peer,
                error: DeliveryError::NoAcknowledgement,
            });
            return;
        }
        let payload = r.again(now, &mut self.timers, TimerKind::ServerRetransmit(id));
        self.transmits.push_back(Transmit {
            peer: ex.peer.clone(),
            payload,
        });
    }

    /// Keeps one coalesced timer (whole seconds) for expiring the deduplication cache, so
    /// an idle endpoint frees its memory without waking for every entry.
    fn arm_dedup_timer(&mut self, now: Instant) {
        let Some(expiry) = [
            self.dedup.next_expiry(),
            self.block1.next_expiry(),
            self.response_cache.next_expiry(),
        ]
        .into_iter()
        .flatten()
        .min() else {
            return;
        };
        let at = expiry.max(now) + Duration::from_secs(1);
        if let Some(current) = self.dedup_timer {
            // Entries of different lifetimes interleave, so a new entry can expire
            // before the one the timer was set for; one second of slack coalesces.
            if current.deadline() <= at {
                return;
            }
            self.timers.remove(current);
        }
        self.dedup_timer = Some(self.timers.insert(at, TimerKind::DedupExpiry));
    }

    // ----------------------------------------------------------------------------------
    // Shared helpers
    // ----------------------------------------------------------------------------------

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// RFC 7252 §4.2: the initial timeout is random between ACK_TIMEOUT and
    /// ACK_TIMEOUT * ACK_RANDOM_FACTOR.
    fn initial_timeout(&mut self) -> Duration {
        let t = &self.config.transmission;
        let (lo, hi) = (t.ack_timeout, t.max_initial_timeout());
        self.random_duration(lo, hi)
    }

    /// A uniformly random duration in `[lo, hi]`.
    fn random_duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = u64::try_from((hi.saturating_sub(lo)).as_nanos()).unwrap_or(u64::MAX);
        if span == 0 {
            return lo;
        }
        lo + Duration::from_nanos(self.rng.next_u64() % span.saturating_add(1))
    }

    /// The state of `peer`, created if needed; `None` when the peer table is full of
    /// peers that are all busy.
    fn peer_state(&mut self, now: Instant, peer: &P) -> Option<&mut PeerState> {
        // Only a full table needs the membership test first; otherwise one look-up
        // finds or adds the peer (this runs for every message).
        if self.peers.len() >= self.config.max_peers
            && !self.peers.contains_key(peer)
            && !self.evict_idle_peer(now)
        {
            return None;
        }
        let rng = &mut self.rng;
        let state = self.peers.entry(peer.clone()).or_insert_with(|| PeerState {
            message_ids: MessageIdTracker::new(rng.next_u32() as u16),
            outstanding: 0,
            queue: VecDeque::new(),
            incoming: 0,
            last_active: now,
        });
        state.last_active = now;
        Some(state)
    }

    /// Evicts the least recently active peer with nothing in flight. Linear, but only
    /// runs when the table is full.
    fn evict_idle_peer(&mut self, now: Instant) -> bool {
        let lifetime = self.config.message_id_lifetime();
        let victim = self
            .peers
            .iter()
            .filter(|(p, s)| {
                s.outstanding == 0
                    && s.queue.is_empty()
                    && s.incoming == 0
                    && !self.observations.has_peer(p)
            })
            // Only peers whose message IDs have all aged out: evicting another would lose
            // the §4.4 guarantee (a new tracker starts at a random ID). When none is
            // old enough, the caller refuses the new peer instead.
            .filter(|(_, s)| {
                s.message_ids
                    .last_used()
                    .is_none_or(|t| now >= t + lifetime)
            })
            .min_by_key(|(_, s)| s.last_active)
            .map(|(p, _)| p.clone());
        match victim {
            Some(p) => {
                self.peers.remove(&p);
                true
            }
            None => false,
        }
    }

    fn allocate_message_id(&mut self, now: Instant, peer: &P) -> Option<u16> {
        if self.framing.is_some() {
            // RFC 8323 §3.2: stream messages have no message ID.
            self.peer_state(now, peer)?;
            return Some(0);
        }
        let lifetime = self.config.message_id_lifetime();
        self.peer_state(now, peer)?
            .message_ids
            .allocate(now, lifetime)
    }
}
