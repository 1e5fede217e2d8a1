//! Error and close-reason types (one enum per operation, as in `corium-proto`).

use core::fmt;

use crate::SessionId;

/// A TLS alert description (RFC 5246 §7.2), an open registry: unknown values round-trip.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertDescription(pub u8);

impl AlertDescription {
    /// `close_notify` (RFC 5246 §7.2.1).
    pub const CLOSE_NOTIFY: Self = Self(0);
    /// `unexpected_message` (RFC 5246 §7.2.2).
    pub const UNEXPECTED_MESSAGE: Self = Self(10);
    /// `bad_record_mac`.
    pub const BAD_RECORD_MAC: Self = Self(20);
    /// `handshake_failure`: no acceptable set of security parameters.
    pub const HANDSHAKE_FAILURE: Self = Self(40);
    /// `bad_certificate`.
    pub const BAD_CERTIFICATE: Self = Self(42);
    /// `unsupported_certificate`.
    pub const UNSUPPORTED_CERTIFICATE: Self = Self(43);
    /// `certificate_expired`.
    pub const CERTIFICATE_EXPIRED: Self = Self(45);
    /// `certificate_unknown`.
    pub const CERTIFICATE_UNKNOWN: Self = Self(46);
    /// `illegal_parameter`.
    pub const ILLEGAL_PARAMETER: Self = Self(47);
    /// `unknown_ca`.
    pub const UNKNOWN_CA: Self = Self(48);
    /// `access_denied`.
    pub const ACCESS_DENIED: Self = Self(49);
    /// `decode_error`.
    pub const DECODE_ERROR: Self = Self(50);
    /// `decrypt_error`: a handshake cryptographic operation failed, e.g. the Finished check
    /// (what a wrong pre-shared key produces, RFC 4279 §2).
    pub const DECRYPT_ERROR: Self = Self(51);
    /// `protocol_version`.
    pub const PROTOCOL_VERSION: Self = Self(70);
    /// `insufficient_security`.
    pub const INSUFFICIENT_SECURITY: Self = Self(71);
    /// `internal_error`.
    pub const INTERNAL_ERROR: Self = Self(80);
    /// `unsupported_extension`.
    pub const UNSUPPORTED_EXTENSION: Self = Self(110);
    /// `unknown_psk_identity` (RFC 4279 §2).
    pub const UNKNOWN_PSK_IDENTITY: Self = Self(115);

    /// The registered name, if this crate knows it.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "close_notify",
            10 => "unexpected_message",
            20 => "bad_record_mac",
            40 => "handshake_failure",
            42 => "bad_certificate",
            43 => "unsupported_certificate",
            45 => "certificate_expired",
            46 => "certificate_unknown",
            47 => "illegal_parameter",
            48 => "unknown_ca",
            49 => "access_denied",
            50 => "decode_error",
            51 => "decrypt_error",
            70 => "protocol_version",
            71 => "insufficient_security",
            80 => "internal_error",
            110 => "unsupported_extension",
            115 => "unknown_psk_identity",
            _ => return None,
        })
    }
}

impl fmt::Debug for AlertDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}({})", self.0),
            None => write!(f, "AlertDescription({})", self.0),
        }
    }
}

impl fmt::Display for AlertDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "alert {}", self.0),
        }
    }
}

/// Why a certificate presented by the peer was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateError {
    /// The peer sent no certificate where one is required.
    Missing,
    /// The certificate could not be parsed.
    BadEncoding,
    /// The certificate is outside its validity period.
    Expired,
    /// No chain to a configured trust anchor (RFC 5280 path validation failed).
    UnknownIssuer,
    /// The certificate does not name the expected server (RFC 6125).
    NameMismatch,
    /// The certificate may not be used for this purpose (extended key usage).
    InvalidPurpose,
    /// Any other validation failure, with the verifier's description.
    Other(String),
}

impl CertificateError {
    /// The alert a peer is told about this failure (RFC 5246 §7.2.2).
    pub fn alert(&self) -> AlertDescription {
        match self {
            CertificateError::Missing => AlertDescription::HANDSHAKE_FAILURE,
            CertificateError::BadEncoding => AlertDescription::BAD_CERTIFICATE,
            CertificateError::Expired => AlertDescription::CERTIFICATE_EXPIRED,
            CertificateError::UnknownIssuer => AlertDescription::UNKNOWN_CA,
            CertificateError::NameMismatch | CertificateError::InvalidPurpose => {
                AlertDescription::BAD_CERTIFICATE
            }
            CertificateError::Other(_) => AlertDescription::CERTIFICATE_UNKNOWN,
        }
    }
}

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertificateError::Missing => f.write_str("no certificate presented"),
            CertificateError::BadEncoding => f.write_str("certificate could not be parsed"),
            CertificateError::Expired => f.write_str("certificate expired or not yet valid"),
            CertificateError::UnknownIssuer => {
                f.write_str("certificate not issued by a trusted CA")
            }
            CertificateError::NameMismatch => {
                f.write_str("certificate does not match the server name")
            }
            CertificateError::InvalidPurpose => {
                f.write_str("certificate not valid for this purpose")
            }
            CertificateError::Other(s) => write!(f, "certificate rejected: {s}"),
        }
    }
}

impl std::error::Error for CertificateError {}

/// Why a handshake or an established session failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DtlsError {
    /// The Finished check failed: the two sides derived different keys. With PSK this is
    /// what a wrong key looks like (RFC 5246 §7.4.9, RFC 4279 §2).
    AuthenticationFailed,
    /// Server side: the client's PSK identity is not in the store (the client is told
    /// `decrypt_error`, as RFC 4279 §2 allows, so identities are not probed).
    UnknownPskIdentity,
    /// No cipher suite both sides accept (RFC 5246 §7.4.1.2).
    NoCommonCipherSuite,
    /// The peer's certificate was refused.
    Certificate(CertificateError),
    /// The peer does not speak DTLS 1.2.
    ProtocolVersion,
    /// Any other engine failure, with the engine's description.
    Engine(String),
}

impl DtlsError {
    /// The fatal alert sent to the peer for this failure, when one is sent.
    pub fn alert(&self) -> AlertDescription {
        match self {
            DtlsError::AuthenticationFailed | DtlsError::UnknownPskIdentity => {
                AlertDescription::DECRYPT_ERROR
            }
            DtlsError::NoCommonCipherSuite => AlertDescription::HANDSHAKE_FAILURE,
            DtlsError::Certificate(e) => e.alert(),
            DtlsError::ProtocolVersion => AlertDescription::PROTOCOL_VERSION,
            DtlsError::Engine(_) => AlertDescription::HANDSHAKE_FAILURE,
        }
    }
}

impl fmt::Display for DtlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtlsError::AuthenticationFailed => {
                f.write_str("handshake authentication failed (wrong pre-shared key?)")
            }
            DtlsError::UnknownPskIdentity => f.write_str("unknown PSK identity"),
            DtlsError::NoCommonCipherSuite => f.write_str("no common cipher suite"),
            DtlsError::Certificate(e) => fmt::Display::fmt(e, f),
            DtlsError::ProtocolVersion => f.write_str("peer does not speak DTLS 1.2"),
            DtlsError::Engine(s) => write!(f, "DTLS failure: {s}"),
        }
    }
}

impl std::error::Error for DtlsError {}

/// Why a session ended (reported in [`Event::Closed`](crate::Event::Closed)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// [`DtlsEndpoint::close`](crate::DtlsEndpoint::close) was called; a `close_notify`
    /// was sent if the session was established (RFC 5246 §7.2.1).
    Local,
    /// The peer sent `close_notify`; one was sent back.
    PeerClosed,
    /// The peer sent a fatal alert.
    PeerAlert(AlertDescription),
    /// The handshake or the session failed locally (a fatal alert was sent where the
    /// record layer allowed one).
    Failed(DtlsError),
    /// The handshake did not complete within
    /// [`DtlsConfig::handshake_timeout`](crate::DtlsConfig::handshake_timeout), or the
    /// engine gave up retransmitting a flight (RFC 6347 §4.2.4).
    HandshakeTimeout,
    /// No application data for [`DtlsConfig::idle_timeout`](crate::DtlsConfig::idle_timeout);
    /// a `close_notify` was sent.
    IdleTimeout,
    /// The same address completed a cookie exchange for a new handshake while this session
    /// existed: the client restarted (RFC 6347 §4.2.8).
    Replaced,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::PeerClosed => f.write_str("closed by the peer"),
            CloseReason::PeerAlert(a) => write!(f, "peer sent fatal alert {a}"),
            CloseReason::Failed(e) => fmt::Display::fmt(e, f),
            CloseReason::HandshakeTimeout => f.write_str("handshake timed out"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::Replaced => {
                f.write_str("replaced by a new handshake from the same address")
            }
        }
    }
}

/// A configuration value was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No PEM section of the expected kind (`CERTIFICATE`, `PRIVATE KEY`, ...) was found.
    PemMissing(&'static str),
    /// The PEM text could not be decoded.
    PemInvalid(String),
    /// The private key is not an ECDSA P-256/P-384 key in PKCS#8 or SEC1 form (the only
    /// kind the engine signs with).
    UnsupportedPrivateKey,
    /// A CA certificate cannot serve as a trust anchor.
    InvalidTrustAnchor(String),
    /// A pre-shared key is empty or longer than 64 bytes (RFC 4279 §5.3 allows 64).
    InvalidPsk,
    /// A PSK identity is empty or longer than 128 bytes (RFC 4279 §5.3).
    InvalidPskIdentity,
    /// A line of a PSK credentials file could not be parsed (1-based line number).
    PskFileLine(usize),
    /// A limit or duration is zero or out of range (the field name).
    InvalidValue(&'static str),
    /// The engine refused the configuration, with its description.
    Engine(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::PemMissing(kind) => write!(f, "no PEM {kind} found"),
            ConfigError::PemInvalid(s) => write!(f, "invalid PEM: {s}"),
            ConfigError::UnsupportedPrivateKey => {
                f.write_str("private key is not an ECDSA P-256/P-384 key")
            }
            ConfigError::InvalidTrustAnchor(s) => write!(f, "invalid CA certificate: {s}"),
            ConfigError::InvalidPsk => f.write_str("pre-shared key must be 1..=64 bytes"),
            ConfigError::InvalidPskIdentity => f.write_str("PSK identity must be 1..=128 bytes"),
            ConfigError::PskFileLine(n) => {
                write!(f, "line {n}: expected `identity:key` (key as text, 0x-hex)")
            }
            ConfigError::InvalidValue(field) => write!(f, "invalid value for {field}"),
            ConfigError::Engine(s) => write!(f, "DTLS engine refused the configuration: {s}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// [`DtlsEndpoint::connect`](crate::DtlsEndpoint::connect) failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// A session with this address already exists (use it, or close it first): one UDP
    /// 5-tuple carries one DTLS association.
    SessionExists(SessionId),
    /// [`DtlsConfig::max_sessions`](crate::DtlsConfig::max_sessions) reached.
    TooManySessions,
    /// [`DtlsConfig::max_handshakes`](crate::DtlsConfig::max_handshakes) reached.
    TooManyHandshakes,
    /// The engine could not start the handshake.
    Engine(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::SessionExists(id) => {
                write!(f, "a session to this address exists ({id:?})")
            }
            ConnectError::TooManySessions => f.write_str("too many DTLS sessions"),
            ConnectError::TooManyHandshakes => f.write_str("too many DTLS handshakes in progress"),
            ConnectError::Engine(s) => write!(f, "cannot start DTLS handshake: {s}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// [`DtlsEndpoint::send`](crate::DtlsEndpoint::send) failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No such session (never existed, or closed).
    UnknownSession,
    /// The message is larger than
    /// [`DtlsConfig::max_application_data`](crate::DtlsConfig::max_application_data): a
    /// CoAP message travels in one record, one datagram (RFC 7252 §9.1).
    TooLarge,
    /// The handshake is still running and
    /// [`DtlsConfig::max_pending_sends`](crate::DtlsConfig::max_pending_sends) messages
    /// already wait for it.
    QueueFull,
    /// The engine failed while encrypting; the session is closed (an
    /// [`Event::Closed`](crate::Event::Closed) follows).
    Failed(DtlsError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::UnknownSession => f.write_str("unknown DTLS session"),
            SendError::TooLarge => f.write_str("message too large for one DTLS record"),
            SendError::QueueFull => f.write_str("too many messages waiting for the handshake"),
            SendError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for SendError {}

/// [`DtlsEndpoint::close`](crate::DtlsEndpoint::close) was given an unknown session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownSession;

impl fmt::Display for UnknownSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown DTLS session")
    }
}

impl std::error::Error for UnknownSession {}
