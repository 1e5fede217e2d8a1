//! The seam between [`DtlsEndpoint`](crate::DtlsEndpoint) and a DTLS implementation.
//!
//! The endpoint owns the address → session table, limits, timers and events; an engine owns
//! the cryptography. An engine answers first datagrams statelessly ([`DtlsEngine::accept`])
//! and runs one sans-IO state machine per session ([`EngineSession`]): datagrams and time
//! in, records, timers and events out. This crate ships two:
//! [`DimplEngine`](crate::DimplEngine) (PSK and certificates) and
//! [`NativePskEngine`](crate::NativePskEngine) (PSK only, small sessions), combined by
//! [`SelectEngine`](crate::SelectEngine); another one implements these two traits and
//! plugs in with [`DtlsEndpoint::with_engine`](crate::DtlsEndpoint::with_engine).

use std::net::SocketAddr;

use bytes::Bytes;
use corium_proto::Instant;

use crate::config::ClientConfig;
use crate::error::{CloseReason, DtlsError};

/// Who the peer of an established session proved to be.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerIdentity {
    /// PSK mode: the PSK identity (RFC 4279 §2). On the server, the identity the client
    /// presented and whose key the store returned; on the client, the identity it used.
    Psk {
        /// The identity.
        identity: Bytes,
    },
    /// Certificate mode: the peer's end-entity certificate (DER), already validated against
    /// the configured CAs (RFC 7925 §4.4.2).
    Certificate {
        /// The DER certificate.
        end_entity: Bytes,
    },
    /// Certificate mode without client authentication: the server did not ask the client
    /// for a certificate.
    Anonymous,
}

/// Which side of the handshake a session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// We sent the ClientHello ([`DtlsEndpoint::connect`](crate::DtlsEndpoint::connect)).
    Client,
    /// The peer sent the ClientHello.
    Server,
}

/// What an engine makes of a datagram from an address that has no session.
#[derive(Debug)]
pub enum Accept<S> {
    /// Send these bytes back (a HelloVerifyRequest, RFC 6347 §4.2.1) and keep no state.
    Reply(Bytes),
    /// The ClientHello carried a valid cookie: a new server session, already fed with it.
    Session(S),
    /// Nothing to do with it.
    Drop(DropReason),
}

/// Why a datagram was dropped without reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Not an unfragmented DTLS 1.2 ClientHello.
    NotClientHello,
    /// This endpoint has no [`ServerConfig`](crate::ServerConfig).
    NotServer,
    /// The ClientHello offers no cipher suite the server is configured for.
    NoCommonCipherSuite,
    /// A cookie-verified ClientHello identical to a recent one (a replay).
    Replay,
    /// [`DtlsConfig::max_recent_handshakes`](crate::DtlsConfig::max_recent_handshakes) is
    /// full.
    HandshakeRateLimit,
    /// Session limits ([`DtlsConfig::max_sessions`](crate::DtlsConfig::max_sessions),
    /// [`DtlsConfig::max_handshakes`](crate::DtlsConfig::max_handshakes)) reached.
    Limit,
    /// The datagram belongs to no session and starts none.
    NoSession,
    /// The engine failed to build the session.
    EngineFailure,
}

/// Output of an [`EngineSession`], drained by the endpoint after every input.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionOutput {
    /// A datagram for the peer.
    Transmit(Bytes),
    /// The handshake completed; the peer proved this identity.
    Connected(PeerIdentity),
    /// Decrypted application data (one record).
    ApplicationData(Bytes),
    /// The session is over; nothing follows.
    Closed(CloseReason),
}

/// A DTLS implementation: stateless first contact, and session factory.
pub trait DtlsEngine: Send {
    /// The per-peer state machine.
    type Session: EngineSession;

    /// A datagram from `addr`, which has no session. Must keep no per-peer state unless it
    /// returns [`Accept::Session`], i.e. only after a cookie round trip proved that `addr`
    /// receives our datagrams (RFC 6347 §4.2.1).
    fn accept(&mut self, now: Instant, addr: SocketAddr, datagram: &[u8]) -> Accept<Self::Session>;

    /// Starts a client handshake to `addr`. The ClientHello is among the session's first
    /// outputs.
    fn connect(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        config: &ClientConfig,
    ) -> Result<Self::Session, DtlsError>;
}

/// One DTLS association. Inputs never fail: failures surface as
/// [`SessionOutput::Closed`].
pub trait EngineSession: Send {
    /// A datagram from the peer.
    fn handle_datagram(&mut self, now: Instant, datagram: &[u8]);
    /// Time passed; retransmit or give up as needed.
    fn handle_timeout(&mut self, now: Instant);
    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next output.
    fn poll_output(&mut self) -> Option<SessionOutput>;
    /// Encrypts application data into one record (only once connected).
    fn send(&mut self, now: Instant, data: &[u8]) -> Result<(), DtlsError>;
    /// Ends the session: `close_notify` if established, silent abort during the handshake.
    /// A [`SessionOutput::Closed`] with `reason` follows the last transmit.
    fn close(&mut self, now: Instant, reason: CloseReason);
    /// The `ClientHello.random` that created this server session (to tell a retransmitted
    /// ClientHello from a new handshake, RFC 6347 §4.2.8).
    fn client_random(&self) -> Option<[u8; 32]>;
}
