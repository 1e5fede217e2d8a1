//! `corium-proto`: the sans-IO CoAP endpoint.
//!
//! This crate is the protocol core of Corium, modelled on `quinn-proto`: it performs no
//! I/O, spawns nothing and never reads a clock. The caller feeds it datagrams and the
//! current time, and takes datagrams, events and the next deadline out:
//!
//! ```text
//!  handle_datagram(now, peer, bytes) ─┐                 ┌─> poll_transmit()  → socket
//!  handle_timeout(now)               ─┼─> [Endpoint] ───┼─> poll_event()     → application
//!  send_request / respond / ping     ─┘                 └─> poll_timeout()   → sleep until
//! ```
//!
//! Inside, a datagram goes: checked parse (`corium-wire`) → deduplication (RFC 7252
//! §4.5) → message layer (CON/NON/ACK/RST, §4) → exchange matching by message ID and by
//! (peer, token) (§5.3) → event. Responses go back the same way: piggybacked in the ACK
//! when the application answers within `separate_ack_delay`, separate otherwise (§5.2).
//!
//! # RFCs covered
//! - RFC 7252 §4 (message layer: retransmission with randomised, doubling timeouts;
//!   deduplication; message-ID lifetime; NSTART), §5 (requests and responses; option
//!   processing, critical options → 4.02; unknown methods → 4.05), §8 (multicast:
//!   leisure, no error responses, no RST).
//! - RFC 7641 (Observe): observers, notifications with 24-bit sequence numbers, newest
//!   state wins under a slow client, client-side reordering (`endpoint::observe`).
//! - RFC 7967 (No-Response), RFC 8516 (4.29 when a peer exceeds its share), RFC 8974
//!   (extended tokens accepted up to a configured length).
//!
//! Every table a peer can grow has a hard limit in [`EndpointConfig`].
//!
//! # Determinism
//! Randomness (tokens, initial message IDs, timeouts, leisure) comes from the
//! [`rand_core::RngCore`] passed to [`Endpoint::new`]; with a seeded generator and a
//! virtual clock, a run is exactly reproducible. The tests in `src/tests/` drive a client
//! and a server endpoint through a simulated network with loss, duplication and
//! reordering.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod amplification;
mod block1;
mod blockwise;
mod codec;
mod config;
mod dedup;
mod endpoint;
mod error;
mod message;
mod message_id;
mod response_cache;
mod time;
mod timer;

#[cfg(test)]
mod tests;

pub use amplification::AmplificationLimit;
pub use config::{Block1Passthrough, EndpointConfig, TransmissionParameters};
pub use endpoint::observe::{NotifyOptions, ObservationEndReason, ObservationId};
pub use endpoint::signaling::{
    AbortReason, ConnectionEnd, PeerCapabilities, MIN_PEER_MAX_MESSAGE_SIZE,
};
pub use endpoint::{
    Endpoint, EndpointStats, Event, IncomingId, IncomingRequest, Peer, RequestId, RequestOptions,
    Transmit,
};
pub use error::{DeliveryError, NotifyError, RequestError, RespondError, SendError};
pub use message::{Options, Request, Response, Token};
pub use time::Instant;

pub use bytes::Bytes;
/// The wire crate this endpoint speaks, re-exported so users need one dependency.
pub use corium_wire as wire;
pub use rand_core;
