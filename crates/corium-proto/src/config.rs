//! Transmission parameters (RFC 7252 §4.8) and the endpoint's table limits.
//!
//! Every limit a peer can push against is a named, documented field here, so a deployment
//! can size the endpoint for its memory budget.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::amplification::AmplificationLimit;
use crate::message::Request;

use corium_wire::{Framing, OptionNumber};

/// The transmission parameters of RFC 7252 §4.8, and the values derived from them (§4.8.2).
#[derive(Clone, Debug, PartialEq)]
pub struct TransmissionParameters {
    /// ACK_TIMEOUT: the initial retransmission timeout before randomisation (default 2 s).
    pub ack_timeout: Duration,
    /// ACK_RANDOM_FACTOR: the initial timeout is drawn from
    /// `[ack_timeout, ack_timeout * ack_random_factor]` (default 1.5, must be ≥ 1).
    pub ack_random_factor: f32,
    /// MAX_RETRANSMIT: retransmissions of a Confirmable message before giving up (default 4).
    pub max_retransmit: u32,
    /// NSTART: outstanding interactions per peer (RFC 7252 §4.7, default 1).
    pub nstart: usize,
    /// DEFAULT_LEISURE: the window in which a multicast response is sent (§8.2, default 5 s).
    pub default_leisure: Duration,
    /// PROBING_RATE in bytes per second towards a peer that does not answer (default 1).
    pub probing_rate: u32,
    /// MAX_LATENCY: the longest a datagram is expected to travel (default 100 s).
    pub max_latency: Duration,
    /// PROCESSING_DELAY: time a node takes to turn a CON around into its ACK (default
    /// ACK_TIMEOUT).
    pub processing_delay: Duration,
}

impl Default for TransmissionParameters {
    fn default() -> Self {
        TransmissionParameters {
            ack_timeout: Duration::from_secs(2),
            ack_random_factor: 1.5,
            max_retransmit: 4,
            nstart: 1,
            default_leisure: Duration::from_secs(5),
            probing_rate: 1,
            max_latency: Duration::from_secs(100),
            processing_delay: Duration::from_secs(2),
        }
    }
}

impl TransmissionParameters {
    /// The largest initial timeout, `ack_timeout * ack_random_factor`.
    pub fn max_initial_timeout(&self) -> Duration {
        self.ack_timeout.mul_f32(self.ack_random_factor.max(1.0))
    }

    /// MAX_TRANSMIT_SPAN (§4.8.2): from the first transmission of a CON to its last
    /// retransmission. 45 s with the defaults.
    pub fn max_transmit_span(&self) -> Duration {
        self.max_initial_timeout() * ((1u32 << self.max_retransmit.min(31)) - 1)
    }

    /// MAX_TRANSMIT_WAIT (§4.8.2): from the first transmission of a CON until the sender
    /// gives up waiting for an ACK or RST. 93 s with the defaults.
    pub fn max_transmit_wait(&self) -> Duration {
        self.max_initial_timeout() * ((1u32 << (self.max_retransmit.min(30) + 1)) - 1)
    }

    /// EXCHANGE_LIFETIME (§4.8.2): how long a message ID of a CON stays in use. 247 s with
    /// the defaults.
    pub fn exchange_lifetime(&self) -> Duration {
        self.max_transmit_span() + self.max_latency * 2 + self.processing_delay
    }

    /// NON_LIFETIME (§4.8.2): how long a message ID of a NON stays in use. 145 s with the
    /// defaults.
    pub fn non_lifetime(&self) -> Duration {
        self.max_transmit_span() + self.max_latency
    }
}

/// Which Block1 uploads the application takes block by block (RFC 7959 §2.5,
/// non-atomic): the filter sees the first request of each block and says yes for
/// those the endpoint should pass through, Block1 option and all, instead of
/// reassembling them.
#[derive(Clone)]
pub struct Block1Passthrough(pub Arc<dyn Fn(&Request) -> bool + Send + Sync>);

impl fmt::Debug for Block1Passthrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Block1Passthrough(..)")
    }
}

/// Configuration of an [`Endpoint`](crate::Endpoint).
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// The RFC 7252 §4.8 transmission parameters.
    pub transmission: TransmissionParameters,
    /// How long the server waits for the application's response to a Confirmable request
    /// before it sends an empty ACK and turns the response into a separate one (§5.2.2).
    /// Below ACK_TIMEOUT so that the client does not retransmit. Default 1 s.
    pub separate_ack_delay: Duration,
    /// Send separate responses as Confirmable (the default) or Non-confirmable (§5.2.2).
    pub separate_response_confirmable: bool,
    /// Length of the tokens this endpoint generates for its requests, 0..=8 (default 8).
    /// Longer tokens are harder to guess off-path (RFC 7252 §5.3.1, RFC 9175 §4).
    pub token_len: usize,
    /// The longest token accepted in an incoming message (RFC 8974). Messages with longer
    /// tokens are rejected as format errors. Default 32.
    pub max_incoming_token_len: usize,
    /// How long the client waits for a response when the request does not say otherwise.
    /// Default MAX_TRANSMIT_WAIT (93 s).
    pub default_request_timeout: Option<Duration>,
    /// How long a message ID stays reserved after it was used for a message to a peer.
    /// RFC 7252 §4.4 requires EXCHANGE_LIFETIME (the default, `None`). A load generator
    /// talking to a server with a bounded deduplication cache may lower it.
    pub message_id_lifetime: Option<Duration>,
    /// Hard limit on requests this endpoint has sent and not finished (client exchanges).
    /// `send_request` fails with [`SendError::TooManyExchanges`](crate::SendError) beyond it.
    pub max_client_exchanges: usize,
    /// Hard limit on requests received and not yet answered by the application. A new
    /// Confirmable request beyond it is answered 5.03 with Max-Age, a Non-confirmable one
    /// is dropped (RFC 8516 §3 suggests 4.29 for a single client; 5.03 is the overload code).
    pub max_server_exchanges: usize,
    /// Hard limit on requests received from one peer and not yet answered; beyond it the
    /// peer gets 4.29 Too Many Requests (RFC 8516) with Max-Age.
    pub max_server_exchanges_per_peer: usize,
    /// Hard limit on the deduplication cache (RFC 7252 §4.5). When full, the oldest entry
    /// is evicted: a very late duplicate may then be processed twice, which RFC 7252 §4.5
    /// accepts for idempotent requests.
    pub max_dedup_entries: usize,
    /// Hard limit on per-peer state (message-ID allocation, NSTART accounting). Idle
    /// peers are evicted, oldest first.
    pub max_peers: usize,
    /// Hard limit on requests waiting for an NSTART slot towards one peer.
    pub max_queued_per_peer: usize,
    /// The largest Block2 size a response is cut into, as SZX (block size 2^(SZX+4);
    /// default 6 = 1024 bytes, the most UDP allows, RFC 7959 §2.2). Responses with a
    /// larger payload go out block-wise so that no datagram exceeds the 1152 bytes of
    /// RFC 7252 §4.6.
    pub max_block_szx: u8,
    /// Largest body reassembled from a Block1 upload; beyond it the client gets 4.13
    /// with Size1 (RFC 7959 §2.9.3). Default 1 MiB.
    pub max_block1_body: usize,
    /// Hard limit on Block1 uploads in progress; the oldest is dropped for a new one.
    pub max_block1_transfers: usize,
    /// Hard limit on the bytes held by all Block1 uploads in progress. Default 16 MiB.
    pub max_block1_total: usize,
    /// An upload whose next block does not come within this is dropped, and a large
    /// response to an unsafe request is kept this long for its later blocks. Default 60 s.
    pub blockwise_timeout: Duration,
    /// Hard limit on large responses to unsafe requests (POST, PUT, …) kept for their
    /// later Block2 blocks (RFC 7959 §2.7); the oldest is dropped.
    pub max_cached_responses: usize,
    /// Hard limit on the bytes of those kept responses. Default 16 MiB.
    pub max_cached_response_bytes: usize,
    /// Max-Age in seconds put on 5.03 / 4.29 answers given because a table is full.
    pub overload_max_age: u32,
    /// Hard limit on observation relations this endpoint serves (RFC 7641 §4.1). Beyond
    /// it a registration is answered as a plain GET, without Observe. Default 4096.
    pub max_observations: usize,
    /// Hard limit on observation relations of one peer. Default 64.
    pub max_observations_per_peer: usize,
    /// Critical options that a layer above the endpoint processes (block-wise, OSCORE,
    /// a proxy), beyond those the endpoint handles itself. A request with any other
    /// critical option is answered 4.02 Bad Option (RFC 7252 §5.4.1).
    pub recognized_critical_options: Vec<OptionNumber>,
    /// `None` (the default) for datagram transports (UDP, DTLS): the RFC 7252 message
    /// layer. `Some` for a reliable transport (RFC 8323: TCP, TLS, WebSockets): peers are
    /// connections, messages carry no type and no message ID, nothing is acknowledged,
    /// retransmitted or deduplicated, and each connection starts with a CSM (§3.3).
    pub framing: Option<Framing>,
    /// Reliable transports: the largest message this endpoint accepts, announced as
    /// Max-Message-Size in its CSM (RFC 8323 §5.3.1). The runtime refuses a larger
    /// message from its length shim, before buffering it. Default 1152, the base value,
    /// so block-wise transfers use 1024-byte blocks and no BERT is announced (§5.3.2).
    pub max_message_size: usize,
    /// Block1 uploads handled block by block by the application (RFC 7959 §2.5,
    /// non-atomic); every other upload is reassembled by the endpoint (atomic). `None`
    /// (the default): all atomic.
    pub block1_passthrough: Option<Block1Passthrough>,
    /// Reliable transports: after this long without receiving anything on a
    /// connection, send a Ping (RFC 8323 §5.4); if nothing arrives within the same time
    /// again, the peer is gone: Abort and close. `None` (the default): never.
    pub keepalive_ping: Option<Duration>,
    /// Amplification mitigation (RFC 9175 §2.4 item 3): how much a server sends to a
    /// peer whose address is not verified yet. `None` (the default) sends whatever the
    /// application answers. Only datagram transports use it (`framing` is `None`); set
    /// it for plain UDP, not for DTLS, whose cookie exchange verifies addresses.
    pub amplification_limit: Option<AmplificationLimit>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            transmission: TransmissionParameters::default(),
            separate_ack_delay: Duration::from_secs(1),
            separate_response_confirmable: true,
            token_len: 8,
            max_incoming_token_len: 32,
            default_request_timeout: None,
            message_id_lifetime: None,
            max_client_exchanges: 65_536,
            max_server_exchanges: 16_384,
            max_server_exchanges_per_peer: 1_024,
            max_dedup_entries: 262_144,
            max_peers: 65_536,
            max_queued_per_peer: 4_096,
            max_block_szx: 6,
            max_block1_body: 1 << 20,
            max_block1_transfers: 256,
            max_block1_total: 16 << 20,
            blockwise_timeout: Duration::from_secs(60),
            max_cached_responses: 256,
            max_cached_response_bytes: 16 << 20,
            overload_max_age: 2,
            max_observations: 4_096,
            max_observations_per_peer: 64,
            recognized_critical_options: Vec::new(),
            framing: None,
            max_message_size: corium_wire::DEFAULT_MAX_MESSAGE_SIZE,
            block1_passthrough: None,
            keepalive_ping: None,
            amplification_limit: None,
        }
    }
}

impl EndpointConfig {
    /// The request timeout in effect when a request names none.
    pub fn request_timeout(&self) -> Duration {
        self.default_request_timeout
            .unwrap_or_else(|| self.transmission.max_transmit_wait())
    }

    /// How long a message ID stays reserved.
    pub fn message_id_lifetime(&self) -> Duration {
        self.message_id_lifetime
            .unwrap_or_else(|| self.transmission.exchange_lifetime())
    }
}
