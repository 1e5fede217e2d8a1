//! Errors of the endpoint's operations, one enum per operation (the rustls lesson).

use core::fmt;

/// Why [`Endpoint::send_request`](crate::Endpoint::send_request) refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The method code is not a request code (0.01–0.31).
    NotARequest,
    /// `max_client_exchanges` requests are already in flight.
    TooManyExchanges,
    /// `max_queued_per_peer` requests already wait for an NSTART slot towards this peer.
    QueueFull,
    /// Every message ID towards this peer was used within the message-ID lifetime
    /// (RFC 7252 §4.4).
    MessageIdsExhausted,
    /// `max_peers` peers have state and none is idle enough to evict.
    TooManyPeers,
    /// No unused token could be drawn for this peer (`token_len` too short for the
    /// requests in flight).
    TokensExhausted,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::NotARequest => "the code is not a request method",
            SendError::TooManyExchanges => "too many requests in flight",
            SendError::QueueFull => "too many requests queued for this peer",
            SendError::MessageIdsExhausted => "all message IDs towards this peer are in use",
            SendError::TooManyPeers => "too many peers with state",
            SendError::TokensExhausted => "no unused token left for this peer",
        })
    }
}

impl core::error::Error for SendError {}

/// Why [`Endpoint::respond`](crate::Endpoint::respond) refused a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RespondError {
    /// No request with this ID awaits a response (already answered, or never existed).
    UnknownRequest,
    /// The code is not a response code (2.xx–5.xx).
    NotAResponse,
    /// [`Endpoint::respond_observe`](crate::Endpoint::respond_observe): the request was
    /// answered, but not registered as an observation because the response is not 2.xx
    /// or the request was multicast (RFC 7641 §4.1).
    NotObservable,
    /// [`Endpoint::respond_observe`](crate::Endpoint::respond_observe): the request was
    /// answered without Observe, not registered, because `max_observations` or
    /// `max_observations_per_peer` is reached (RFC 7641 §4.1 allows this).
    TooManyObservations,
    /// The response was too large for a peer whose address is not verified; a 4.01 with
    /// an Echo option went out instead (RFC 9175 §2.4 item 3), and a registration was not
    /// kept. The client repeats the request with the Echo value.
    AddressUnverified,
}

impl fmt::Display for RespondError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RespondError::UnknownRequest => "no request with this id awaits a response",
            RespondError::NotAResponse => "the code is not a response code",
            RespondError::NotObservable => {
                "answered, but the response does not start an observation"
            }
            RespondError::TooManyObservations => "answered without Observe: too many observations",
            RespondError::AddressUnverified => {
                "answered with 4.01 and Echo: the peer's address is not verified yet"
            }
        })
    }
}

impl core::error::Error for RespondError {}

/// Why a request sent with [`Endpoint::send_request`](crate::Endpoint::send_request) ended
/// without a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// A Confirmable request was sent MAX_RETRANSMIT + 1 times and never acknowledged
    /// (RFC 7252 §4.2).
    NoAcknowledgement,
    /// No response came within the request's timeout.
    Timeout,
    /// The peer answered with a Reset message (RFC 7252 §4.2, §4.3).
    Reset,
    /// The response carried an unrecognised critical option (RFC 7252 §5.4.1), so it was
    /// rejected.
    BadResponse,
    /// The connection of a reliable transport closed or was aborted before the response
    /// came (RFC 8323 §5.6).
    ConnectionClosed,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestError::NoAcknowledgement => "no acknowledgement after all retransmissions",
            RequestError::Timeout => "timed out waiting for a response",
            RequestError::Reset => "the peer reset the exchange",
            RequestError::BadResponse => "the response had an unrecognised critical option",
            RequestError::ConnectionClosed => "the connection closed before the response",
        })
    }
}

impl core::error::Error for RequestError {}

/// Why a separate Confirmable response was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryError {
    /// Never acknowledged after all retransmissions.
    NoAcknowledgement,
    /// The client answered with a Reset message.
    Reset,
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeliveryError::NoAcknowledgement => "response never acknowledged",
            DeliveryError::Reset => "the client reset the response",
        })
    }
}

impl core::error::Error for DeliveryError {}

/// Why [`Endpoint::notify`](crate::Endpoint::notify) refused a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyError {
    /// No observation with this ID is on the list (it ended, or never existed).
    UnknownObservation,
    /// The code is not a response code (2.xx–5.xx).
    NotAResponse,
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotifyError::UnknownObservation => "no observation with this id",
            NotifyError::NotAResponse => "the code is not a response code",
        })
    }
}

impl core::error::Error for NotifyError {}
