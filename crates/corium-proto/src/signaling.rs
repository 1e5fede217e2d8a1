//! Connections of reliable transports: CoAP over TCP, TLS and WebSockets (RFC 8323).
//!
//! With [`EndpointConfig::framing`](crate::EndpointConfig::framing) set, a peer is one
//! connection. The runtime reports the connection's life with
//! [`Endpoint::handle_connected`], [`Endpoint::handle_stream_message`] (one complete
//! message: for TCP the bytes [`corium_wire::frame_len`] delimits, for WebSockets one
//! binary frame) and [`Endpoint::handle_disconnected`], and closes a connection when
//! [`Endpoint::poll_close`] names it (after writing the transmits polled before).
//!
//! The exchange layer is the one of UDP, minus the message layer (§3.2: no types, no
//! message IDs, nothing to acknowledge, retransmit or deduplicate); this module adds the
//! signaling of §5: the CSM each side sends first (§3.3) and whose Max-Message-Size,
//! Block-Wise-Transfer and Extended-Token-Length (RFC 8974 §2.2.1) it honours, Ping and
//! Pong (§5.4), Release (§5.5) and Abort (§5.6).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use corium_wire::{
    decode_uint, signal_option, Code, Framing, MessageType, StreamError, StreamMessage,
    DEFAULT_MAX_MESSAGE_SIZE, MAX_TOKEN_LEN,
};

use super::{Endpoint, Event, Peer, RequestId, TimerKind, Transmit};
use crate::blockwise::BlockLimit;
use crate::codec::{self, Inbound};
use crate::error::{RequestError, SendError};
use crate::message::{Options, Token};
use crate::time::Instant;

/// The smallest Max-Message-Size this endpoint works with: a peer announcing less could
/// not receive a response with a 16-byte block and its options (§5.3.1). A CSM below it
/// is answered with Abort and Bad-CSM-Option 2 (§5.6.1).
pub const MIN_PEER_MAX_MESSAGE_SIZE: usize = 64;

/// What this endpoint knows about one connection.
#[derive(Debug)]
pub(crate) struct Connection {
    /// The peer's first CSM arrived (§3.3).
    csm_received: bool,
    /// The peer's Max-Message-Size (§5.3.1), base value 1152.
    max_message_size: usize,
    /// The peer announced Block-Wise-Transfer (§5.3.2).
    block_wise: bool,
    /// The longest token the peer accepts (RFC 8974 §2.2.1), base value 8.
    max_token_len: usize,
    /// The peer sent Release: close once its requests are answered (§5.5).
    released_by_peer: bool,
    /// The number the keep-alive timer names this connection by.
    id: u64,
    /// When the peer last sent anything.
    last_received: Instant,
    /// A keep-alive Ping went out and nothing has come since.
    pinged: bool,
}

impl Connection {
    fn new(id: u64, now: Instant) -> Self {
        Connection {
            id,
            last_received: now,
            pinged: false,
            csm_received: false,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            block_wise: false,
            max_token_len: MAX_TOKEN_LEN,
            released_by_peer: false,
        }
    }
}

/// What the peer's CSMs announced (RFC 8323 §5.3), for the runtime and the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCapabilities {
    /// Whether the peer's first CSM has arrived.
    pub csm_received: bool,
    /// The largest message the peer accepts (§5.3.1).
    pub max_message_size: usize,
    /// The peer supports block-wise transfer (§5.3.2); with a Max-Message-Size above
    /// 1152 this also announces BERT (§6).
    pub block_wise: bool,
    /// The longest token the peer accepts (RFC 8974 §2.2.1).
    pub max_token_len: usize,
}

/// Why a connection of a reliable transport ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEnd {
    /// The runtime reported it closed ([`Endpoint::handle_disconnected`]).
    Closed,
    /// The peer sent Abort (RFC 8323 §5.6).
    AbortedByPeer {
        /// The Bad-CSM-Option option, if any (§5.6.1).
        bad_csm_option: Option<u16>,
        /// The diagnostic payload.
        diagnostic: String,
    },
    /// This endpoint sent Abort.
    Aborted(AbortReason),
}

/// Why this endpoint aborted a connection (RFC 8323 §5.6).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AbortReason {
    /// The peer's first message was not a CSM (§3.3: "Endpoints MUST treat a missing or
    /// invalid CSM as a connection error").
    MissingCsm,
    /// A CSM option that cannot be processed: unknown and critical, or a bad value
    /// (§5.3, §5.6.1).
    BadCsmOption(u16),
    /// A critical option in a Ping, Pong, Release or Abort that is not understood (§5.2).
    UnknownCriticalSignalOption(u16),
    /// A message that is not well-formed, or larger than this endpoint's
    /// Max-Message-Size (§5.6: syntax violations are answered with Abort).
    Malformed(StreamError),
    /// The application asked ([`Endpoint::abort`]).
    Local,
    /// Nothing came back to a keep-alive Ping (`EndpointConfig::keepalive_ping`).
    PeerUnresponsive,
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbortReason::MissingCsm => f.write_str("CSM expected as the first message"),
            AbortReason::BadCsmOption(n) => write!(f, "cannot process CSM option {n}"),
            AbortReason::UnknownCriticalSignalOption(n) => {
                write!(f, "unknown critical signaling option {n}")
            }
            AbortReason::Malformed(err) => write!(f, "{err}"),
            AbortReason::Local => f.write_str("connection aborted"),
            AbortReason::PeerUnresponsive => f.write_str("no answer to a keep-alive Ping"),
        }
    }
}

/// Bytes of a peer's Max-Message-Size left for the header and options beside a BERT
/// block (the implementation note of RFC 8323 §5.3.2 suggests 256 or 512).
pub const BERT_HEADROOM: usize = 512;

/// The most 1024-byte units one BERT block carries (1 MiB), whatever the peer allows.
pub const MAX_BERT_UNITS: usize = 1024;

/// The largest SZX whose blocks, with room for header and options, fit a peer's
/// Max-Message-Size (RFC 8323 §5.3.1; RFC 7252 §4.6 allows 128 bytes beyond the block).
fn szx_for_message_size(max_message_size: usize, max_szx: u8) -> u8 {
    let mut szx = max_szx.min(6);
    while szx > 0 && (16usize << szx) + 128 > max_message_size {
        szx -= 1;
    }
    szx
}

impl<P: Peer> Endpoint<P> {
    /// A connection opened, by either side: this endpoint's CSM goes out first
    /// (RFC 8323 §3.3). Ignored on a datagram endpoint and for a known connection.
    pub fn handle_connected(&mut self, now: Instant, peer: P) {
        let Some(framing) = self.framing else {
            return;
        };
        if self.connections.contains_key(&peer) {
            return;
        }
        let id = self.alloc_id();
        self.connections
            .insert(peer.clone(), Connection::new(id, now));
        self.connection_ids.insert(id, peer.clone());
        if let Some(every) = self.config.keepalive_ping {
            self.timers.insert(now + every, TimerKind::KeepAlive(id));
        }
        let _ = self.peer_state(now, &peer);
        let mut options = Options::new();
        let size = u32::try_from(self.config.max_message_size).unwrap_or(u32::MAX);
        options.push_uint(signal_option::MAX_MESSAGE_SIZE, size);
        options.push(signal_option::BLOCK_WISE_TRANSFER, Vec::new());
        if self.config.max_incoming_token_len > MAX_TOKEN_LEN {
            let len = u32::try_from(self.config.max_incoming_token_len).unwrap_or(u32::MAX);
            options.push_uint(signal_option::EXTENDED_TOKEN_LENGTH, len);
        }
        self.send_signal(framing, peer, Code::CSM, &[], &options, &[]);
    }

    /// One complete message arrived on connection `peer` (RFC 8323 §3.2, §4.2). A
    /// malformed message, or a first message that is not a CSM, aborts the connection
    /// (§3.3, §5.6); Empty messages are ignored (§5.4).
    pub fn handle_stream_message(&mut self, now: Instant, peer: P, data: &[u8]) {
        let Some(framing) = self.framing else {
            return;
        };
        // One look-up of the connection per message: it is marked live (whatever the
        // message turns out to be: a bad one ends the connection anyway), or opened
        // (its CSM goes out first) if this is the first sign of it.
        let csm_received = match self.connections.get_mut(&peer) {
            Some(c) => {
                c.last_received = now;
                c.pinged = false;
                c.csm_received
            }
            None => {
                self.handle_connected(now, peer.clone());
                false
            }
        };
        self.block1.expire(now);
        self.response_cache.expire(now);
        let msg = match StreamMessage::parse(framing, data, self.config.max_incoming_token_len) {
            Ok(msg) => msg,
            Err(err) => return self.abort(now, peer, AbortReason::Malformed(err)),
        };
        let code = msg.code();
        if !csm_received && code != Code::CSM {
            return self.abort(now, peer, AbortReason::MissingCsm);
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_active = now;
        }
        if code.is_empty() {
            return; // §5.4: Empty messages are a keep-alive, always ignored.
        }
        match code.class() {
            7 => self.handle_signal(now, framing, peer, &msg),
            0 => self.handle_request(now, peer, &Inbound::stream(&msg), false),
            2..=5 => self.handle_separate_response(now, peer, &Inbound::stream(&msg)),
            _ => {} // Reserved classes 1 and 6: nothing to do with them.
        }
    }

    /// The runtime could not frame the byte stream of `peer` (a length shim beyond this
    /// endpoint's Max-Message-Size, a bad extended token length): Abort (§5.6).
    pub fn handle_stream_error(&mut self, now: Instant, peer: P, err: StreamError) {
        self.abort(now, peer, AbortReason::Malformed(err));
    }

    /// Connection `peer` closed (end of stream, reset, I/O error): its requests fail
    /// with [`RequestError::ConnectionClosed`], the requests it sent are forgotten, its
    /// observation relations end (RFC 8323 §7.1).
    pub fn handle_disconnected(&mut self, now: Instant, peer: P) {
        if self.connections.contains_key(&peer) {
            self.end_connection(now, peer, ConnectionEnd::Closed);
        }
    }

    /// Sends Abort with a diagnostic payload (and Bad-CSM-Option where it applies) and
    /// ends the connection: [`Endpoint::poll_close`] names it next (RFC 8323 §5.6).
    pub fn abort(&mut self, now: Instant, peer: P, reason: AbortReason) {
        let Some(framing) = self.framing else {
            return;
        };
        if !self.connections.contains_key(&peer) {
            return;
        }
        let mut options = Options::new();
        if let AbortReason::BadCsmOption(n) = reason {
            options.push_uint(signal_option::BAD_CSM_OPTION, u32::from(n));
        }
        let diagnostic = reason.to_string();
        self.send_signal(
            framing,
            peer.clone(),
            Code::ABORT,
            &[],
            &options,
            diagnostic.as_bytes(),
        );
        self.closes.push_back(peer.clone());
        self.end_connection(now, peer, ConnectionEnd::Aborted(reason));
    }

    /// Sends Release (RFC 8323 §5.5), e.g. on shutdown: the peer is asked to close the
    /// connection once it has its responses, and not to reconnect for `hold_off`
    /// seconds. The connection stays usable until it closes.
    pub fn release(&mut self, _now: Instant, peer: P, hold_off: Option<u32>) {
        let Some(framing) = self.framing else {
            return;
        };
        if !self.connections.contains_key(&peer) {
            return;
        }
        let mut options = Options::new();
        if let Some(secs) = hold_off {
            options.push_uint(signal_option::HOLD_OFF, secs);
        }
        self.send_signal(framing, peer, Code::RELEASE, &[], &options, &[]);
    }

    /// The next connection to close, once the transmits polled before it are written.
    pub fn poll_close(&mut self) -> Option<P> {
        self.closes.pop_front()
    }

    /// What the CSMs of connection `peer` announced; `None` for an unknown connection.
    pub fn peer_capabilities(&self, peer: &P) -> Option<PeerCapabilities> {
        self.connections.get(peer).map(|c| PeerCapabilities {
            csm_received: c.csm_received,
            max_message_size: c.max_message_size,
            block_wise: c.block_wise,
            max_token_len: c.max_token_len,
        })
    }

    /// The connections with state.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// The block sizes of responses to `peer`: the configured largest SZX, lowered on a
    /// reliable transport until a block fits the peer's Max-Message-Size; BERT blocks
    /// (RFC 8323 §6) as large as that size allows when the peer announced them.
    pub(crate) fn block_limit_for(&self, peer: &P) -> BlockLimit {
        let Some(c) = self.connections.get(peer) else {
            return BlockLimit::plain(self.config.max_block_szx);
        };
        let max_szx = szx_for_message_size(c.max_message_size, self.config.max_block_szx);
        // §5.3.2: Block-Wise-Transfer with a Max-Message-Size above 1152 announces BERT.
        let bert_units = if c.block_wise
            && c.max_message_size > DEFAULT_MAX_MESSAGE_SIZE
            && self.config.max_block_szx >= 6
        {
            ((c.max_message_size - BERT_HEADROOM) / 1024).clamp(1, MAX_BERT_UNITS)
        } else {
            0
        };
        BlockLimit {
            max_szx,
            bert_units,
        }
    }

    /// Whether BERT blocks are taken in uploads: on a reliable transport when this
    /// endpoint announced BERT in its CSM (RFC 8323 §5.3.2, §6).
    pub(crate) fn accepts_bert(&self) -> bool {
        self.framing.is_some() && self.config.max_message_size > DEFAULT_MAX_MESSAGE_SIZE
    }

    /// A 7.02 Ping with a fresh token (RFC 8323 §5.4); the Pong is [`Event::Pong`].
    pub(super) fn stream_ping(
        &mut self,
        now: Instant,
        peer: P,
        framing: Framing,
    ) -> Result<RequestId, SendError> {
        let token = self.fresh_token(&peer).ok_or(SendError::TokensExhausted)?;
        let bytes = token.clone();
        let wire = move |_| {
            codec::encode(
                Some(framing),
                MessageType::NonConfirmable,
                Code::PING,
                0,
                bytes.as_bytes(),
                &Options::new(),
                &[],
            )
        };
        let timeout = self.config.request_timeout();
        self.start_exchange(now, peer, token, false, false, true, timeout, wire)
    }

    fn send_signal(
        &mut self,
        framing: Framing,
        peer: P,
        code: Code,
        token: &[u8],
        options: &Options,
        payload: &[u8],
    ) {
        let wire = codec::encode(
            Some(framing),
            MessageType::NonConfirmable,
            code,
            0,
            token,
            options,
            payload,
        );
        self.transmits.push_back(Transmit {
            peer,
            payload: wire,
        });
    }

    fn handle_signal(&mut self, now: Instant, framing: Framing, peer: P, msg: &StreamMessage<'_>) {
        let code = msg.code();
        if code == Code::CSM {
            return self.handle_csm(now, peer, msg);
        }
        // §5.2: every option defined for Ping, Pong, Release and Abort is elective; a
        // critical one is not understood.
        if let Some(opt) = msg.options().find(|o| o.number.is_critical()) {
            return self.abort(
                now,
                peer,
                AbortReason::UnknownCriticalSignalOption(opt.number.0),
            );
        }
        match code {
            Code::PING => {
                // §5.4.1: messages are processed in order, so everything received before
                // the Ping has been handed on: Custody can be granted at once.
                let mut options = Options::new();
                if msg.option(signal_option::CUSTODY).is_some() {
                    options.push(signal_option::CUSTODY, Vec::new());
                }
                self.send_signal(framing, peer, Code::PONG, msg.token(), &options, &[]);
            }
            Code::PONG => {
                let key = (peer, Token::new(msg.token()));
                let Some(&id) = self.by_token.get(&key) else {
                    return;
                };
                if self.clients.get(&id).is_some_and(|c| c.ping) {
                    self.finish_client(now, id);
                    self.events.push_back(Event::Pong {
                        request: RequestId(id),
                    });
                }
            }
            Code::RELEASE => {
                let mut alternative_addresses = Vec::new();
                let mut hold_off = None;
                for opt in msg.options() {
                    if opt.number == signal_option::ALTERNATIVE_ADDRESS {
                        if let Some(addr) = opt.value_str() {
                            alternative_addresses.push(addr.to_string());
                        }
                    } else if opt.number == signal_option::HOLD_OFF {
                        hold_off = decode_uint(opt.value);
                    }
                }
                if let Some(c) = self.connections.get_mut(&peer) {
                    c.released_by_peer = true;
                }
                self.events.push_back(Event::Released {
                    peer: peer.clone(),
                    alternative_addresses,
                    hold_off,
                });
                self.close_if_released(peer);
            }
            Code::ABORT => {
                let bad_csm_option = msg
                    .option_uint(signal_option::BAD_CSM_OPTION)
                    .and_then(|n| u16::try_from(n).ok());
                let diagnostic = String::from_utf8_lossy(msg.payload()).into_owned();
                self.closes.push_back(peer.clone());
                self.end_connection(
                    now,
                    peer,
                    ConnectionEnd::AbortedByPeer {
                        bad_csm_option,
                        diagnostic,
                    },
                );
            }
            _ => {} // An unassigned signaling code: nothing is asked of the receiver.
        }
    }

    /// §5.3: capabilities and settings are cumulative; an unknown critical option, or a
    /// value this endpoint cannot work with, aborts with Bad-CSM-Option (§5.6.1).
    fn handle_csm(&mut self, now: Instant, peer: P, msg: &StreamMessage<'_>) {
        let Some(conn) = self.connections.get(&peer) else {
            return;
        };
        let (mut size, mut block_wise, mut token_len) =
            (conn.max_message_size, conn.block_wise, conn.max_token_len);
        for opt in msg.options() {
            let n = opt.number;
            if n == signal_option::MAX_MESSAGE_SIZE {
                match decode_uint(opt.value).map(|v| v as usize) {
                    Some(v) if opt.value.len() <= 4 && v >= MIN_PEER_MAX_MESSAGE_SIZE => size = v,
                    _ => return self.abort(now, peer, AbortReason::BadCsmOption(n.0)),
                }
            } else if n == signal_option::BLOCK_WISE_TRANSFER {
                block_wise = true;
            } else if n == signal_option::EXTENDED_TOKEN_LENGTH {
                match decode_uint(opt.value) {
                    Some(v) if opt.value.len() <= 3 => token_len = (v as usize).max(MAX_TOKEN_LEN),
                    _ => return self.abort(now, peer, AbortReason::BadCsmOption(n.0)),
                }
            } else if n.is_critical() {
                return self.abort(now, peer, AbortReason::BadCsmOption(n.0));
            }
        }
        if let Some(conn) = self.connections.get_mut(&peer) {
            conn.csm_received = true;
            conn.max_message_size = size;
            conn.block_wise = block_wise;
            conn.max_token_len = token_len;
        }
        if let Some(capabilities) = self.peer_capabilities(&peer) {
            self.events
                .push_back(Event::Capabilities { peer, capabilities });
        }
    }

    /// §5.5: a peer that sent Release gets its connection closed once every request it
    /// sent before is answered.
    pub(super) fn close_if_released(&mut self, peer: P) {
        let released = self
            .connections
            .get(&peer)
            .is_some_and(|c| c.released_by_peer);
        // The peer table is looked at only for a released connection (rare), not once
        // per answered request.
        if released && self.peers.get(&peer).is_none_or(|p| p.incoming == 0) {
            if let Some(c) = self.connections.get_mut(&peer) {
                c.released_by_peer = false;
            }
            self.closes.push_back(peer);
        }
    }

    /// The keep-alive timer of connection `id` (RFC 8323 §5.4): a connection silent for
    /// `keepalive_ping` gets a Ping; one still silent after another such period is
    /// aborted as dead.
    pub(super) fn keepalive(&mut self, now: Instant, id: u64) {
        let (Some(every), Some(framing)) = (self.config.keepalive_ping, self.framing) else {
            return;
        };
        let Some(peer) = self.connection_ids.get(&id).cloned() else {
            return;
        };
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        let quiet_until = conn.last_received + every;
        if now < quiet_until {
            self.timers.insert(quiet_until, TimerKind::KeepAlive(id));
            return;
        }
        if conn.pinged {
            return self.abort(now, peer, AbortReason::PeerUnresponsive);
        }
        conn.pinged = true;
        self.send_signal(framing, peer, Code::PING, &[], &Options::new(), &[]);
        self.timers.insert(now + every, TimerKind::KeepAlive(id));
    }

    /// Forgets everything about a connection and reports what it ends.
    fn end_connection(&mut self, now: Instant, peer: P, reason: ConnectionEnd) {
        let Some(conn) = self.connections.remove(&peer) else {
            return;
        };
        self.connection_ids.remove(&conn.id);
        let clients: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| c.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in clients {
            self.finish_client(now, id);
            self.events.push_back(Event::RequestFailed {
                request: RequestId(id),
                error: RequestError::ConnectionClosed,
            });
        }
        let incoming: Vec<u64> = self
            .incoming
            .iter()
            .filter(|(_, ex)| ex.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in incoming {
            self.finish_incoming(id);
        }
        for id in self.observations.peer_relations(&peer) {
            self.end_relation(id, super::ObservationEndReason::ConnectionClosed);
        }
        self.peers.remove(&peer);
        self.events
            .push_back(Event::ConnectionEnded { peer, reason });
    }
}

#[cfg(test)]
mod tests {
    use super::szx_for_message_size;

    #[test]
    fn block_size_fits_the_peer_message_size() {
        assert_eq!(szx_for_message_size(1152, 6), 6);
        assert_eq!(szx_for_message_size(1151, 6), 5);
        assert_eq!(szx_for_message_size(1 << 20, 6), 6);
        assert_eq!(szx_for_message_size(1 << 20, 4), 4);
        assert_eq!(szx_for_message_size(64, 6), 0);
    }
}
