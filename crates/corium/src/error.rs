//! The one error type at the surface of the crate (the hyper lesson): opaque, with `is_*`
//! predicates, and a `Display` that says in one line what went wrong and with whom.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use corium_proto::{RequestError, SendError};

/// What went wrong with a request.
///
/// The kind is hidden; ask with the `is_*` predicates. `Display` gives one clear line,
/// for example `request to coap://127.0.0.1:5683/test timed out after 93s` or
/// `no acknowledgement from 127.0.0.1:5683`.
pub struct Error {
    kind: Kind,
    /// The request's target: the URI as given, or the peer address.
    target: Option<Box<str>>,
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// No response within the request's timeout.
    Timeout(Duration),
    /// A Confirmable message was never acknowledged (RFC 7252 §4.2).
    NoAcknowledgement(SocketAddr),
    /// The peer answered with a Reset (RFC 7252 §4.2).
    Reset(SocketAddr),
    /// The response carried an unrecognised critical option (RFC 7252 §5.4.1).
    BadResponse(SocketAddr),
    /// The URI could not be parsed, names an unsupported scheme, or its host does not
    /// resolve.
    Uri(String),
    /// The endpoint refused the request (a table limit was reached).
    Overloaded(SendError),
    /// The local socket cannot reach the target's address family.
    AddressFamily {
        /// The socket's local address.
        local: SocketAddr,
        /// The target.
        peer: SocketAddr,
    },
    /// A block-wise transfer could not be completed (RFC 7959).
    Blockwise(&'static str),
    /// The connection (RFC 8323) closed or was aborted before the response came.
    ConnectionClosed(SocketAddr),
    /// A socket error, or the endpoint's driver task has stopped.
    Io(io::Error),
    /// OSCORE (RFC 8613): the request could not be protected, or the response did not
    /// verify (§8.4); the text says which.
    Oscore(String),
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Error {
        Error { kind, target: None }
    }

    pub(crate) fn uri(message: impl Into<String>) -> Error {
        Error::new(Kind::Uri(message.into()))
    }

    pub(crate) fn closed() -> Error {
        Error::new(Kind::Io(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the endpoint's driver task has stopped",
        )))
    }

    pub(crate) fn from_request_error(
        err: RequestError,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Error {
        Error::new(match err {
            RequestError::NoAcknowledgement => Kind::NoAcknowledgement(peer),
            RequestError::Reset => Kind::Reset(peer),
            RequestError::BadResponse => Kind::BadResponse(peer),
            RequestError::ConnectionClosed => Kind::ConnectionClosed(peer),
            // `RequestError::Timeout` and any variant added later.
            _ => Kind::Timeout(timeout),
        })
    }

    /// A connection (RFC 8323 transports) to `peer` could not be opened.
    pub(crate) fn connect_failed(kind: io::ErrorKind, text: &str, peer: SocketAddr) -> Error {
        Error::new(Kind::Io(io::Error::new(
            kind,
            format!("cannot connect to {peer}: {text}"),
        )))
    }

    /// Attaches the request's target (URI or address) for the message.
    pub(crate) fn with_target(mut self, target: impl fmt::Display) -> Error {
        if self.target.is_none() {
            self.target = Some(target.to_string().into_boxed_str());
        }
        self
    }

    /// No response came in time: the request's timeout expired, or a Confirmable message
    /// was retransmitted MAX_RETRANSMIT times without an acknowledgement (RFC 7252 §4.2).
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout(_) | Kind::NoAcknowledgement(_))
    }

    /// The peer rejected the request with a Reset message (RFC 7252 §4.2, §4.3).
    pub fn is_reset(&self) -> bool {
        matches!(self.kind, Kind::Reset(_))
    }

    /// The URI was malformed, named an unsupported scheme, or its host did not resolve.
    pub fn is_uri(&self) -> bool {
        matches!(self.kind, Kind::Uri(_))
    }

    /// A socket error, an address the socket cannot reach (IPv4 socket, IPv6 target or
    /// the reverse), or the endpoint's driver task has stopped.
    pub fn is_io(&self) -> bool {
        matches!(self.kind, Kind::Io(_) | Kind::AddressFamily { .. })
    }

    /// The response was rejected because it carried an unrecognised critical option
    /// (RFC 7252 §5.4.1).
    pub fn is_bad_response(&self) -> bool {
        matches!(self.kind, Kind::BadResponse(_) | Kind::Blockwise(_))
    }

    /// OSCORE (RFC 8613) failed: the request could not be protected, or the response
    /// did not verify (§8.4: an unprotected error answer from the server, a wrong key,
    /// a replayed or tampered response). The response is never returned in that case.
    pub fn is_oscore(&self) -> bool {
        matches!(self.kind, Kind::Oscore(_))
    }

    /// The local endpoint refused the request because one of its limits was reached (too
    /// many requests in flight or queued for the peer, see `EndpointConfig`).
    pub fn is_overloaded(&self) -> bool {
        matches!(self.kind, Kind::Overloaded(_))
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Error {
        Error::new(Kind::Io(err))
    }
}

impl From<SendError> for Error {
    fn from(err: SendError) -> Error {
        Error::new(Kind::Overloaded(err))
    }
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self.target.as_deref();
        match (&self.kind, target) {
            (Kind::Timeout(d), Some(t)) => write!(f, "request to {t} timed out after {}", secs(*d)),
            (Kind::Timeout(d), None) => write!(f, "request timed out after {}", secs(*d)),
            (Kind::NoAcknowledgement(peer), _) => write!(f, "no acknowledgement from {peer}"),
            (Kind::Reset(peer), Some(t)) => write!(f, "{peer} reset the request to {t}"),
            (Kind::Reset(peer), None) => write!(f, "{peer} reset the request"),
            (Kind::BadResponse(peer), _) => write!(
                f,
                "response from {peer} rejected: unrecognised critical option"
            ),
            (Kind::Uri(msg), Some(t)) => write!(f, "invalid URI {t:?}: {msg}"),
            (Kind::Uri(msg), None) => write!(f, "invalid URI: {msg}"),
            (Kind::Overloaded(err), Some(t)) => write!(f, "request to {t} not sent: {err}"),
            (Kind::Overloaded(err), None) => write!(f, "request not sent: {err}"),
            (Kind::AddressFamily { local, peer }, _) => {
                let (want, have) = if peer.is_ipv6() {
                    ("IPv6", "IPv4")
                } else {
                    ("IPv4", "IPv6-only")
                };
                write!(
                    f,
                    "cannot reach {want} address {peer} from the {have} socket bound to {local}"
                )
            }
            (Kind::Blockwise(msg), Some(t)) => write!(f, "request to {t} failed: {msg}"),
            (Kind::Blockwise(msg), None) => write!(f, "block-wise transfer failed: {msg}"),
            (Kind::ConnectionClosed(peer), Some(t)) => {
                write!(f, "request to {t} failed: the connection to {peer} closed")
            }
            (Kind::ConnectionClosed(peer), None) => {
                write!(f, "the connection to {peer} closed before the response")
            }
            (Kind::Oscore(msg), Some(t)) => write!(f, "request to {t} failed: OSCORE: {msg}"),
            (Kind::Oscore(msg), None) => write!(f, "OSCORE: {msg}"),
            (Kind::Io(err), Some(t)) => write!(f, "request to {t} failed: {err}"),
            (Kind::Io(err), None) => write!(f, "I/O error: {err}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("target", &self.target)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Io(err) => Some(err),
            Kind::Overloaded(err) => Some(err),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_message_names_the_uri() {
        let err = Error::new(Kind::Timeout(Duration::from_secs(93)))
            .with_target("coap://127.0.0.1:5683/test");
        assert!(err.is_timeout());
        assert_eq!(
            err.to_string(),
            "request to coap://127.0.0.1:5683/test timed out after 93s"
        );
    }

    #[test]
    fn no_ack_message_names_the_peer() {
        let peer: SocketAddr = "127.0.0.1:5683".parse().unwrap();
        let err = Error::from_request_error(
            RequestError::NoAcknowledgement,
            peer,
            Duration::from_secs(93),
        );
        assert!(err.is_timeout());
        assert!(!err.is_reset());
        assert_eq!(err.to_string(), "no acknowledgement from 127.0.0.1:5683");
    }

    #[test]
    fn predicates_are_exclusive() {
        let peer: SocketAddr = "127.0.0.1:5683".parse().unwrap();
        let reset = Error::from_request_error(RequestError::Reset, peer, Duration::ZERO);
        assert!(reset.is_reset() && !reset.is_timeout() && !reset.is_io());
        let bad = Error::from_request_error(RequestError::BadResponse, peer, Duration::ZERO);
        assert!(bad.is_bad_response() && !bad.is_reset());
        let uri = Error::uri("scheme coaps is not supported yet");
        assert!(uri.is_uri() && !uri.is_io());
        let over = Error::from(SendError::QueueFull);
        assert!(over.is_overloaded() && !over.is_timeout());
        assert!(Error::closed().is_io());
        assert_eq!(secs(Duration::from_millis(250)), "250ms");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5s");
    }
}
