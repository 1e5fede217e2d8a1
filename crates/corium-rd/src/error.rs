//! Why an RD operation failed, and the CoAP response each failure becomes.

use std::fmt;

use corium::{Code, OptionNumber, Response};

use crate::store::StoreError;

/// Why a registration, update, removal or lookup was refused (RFC 9176 §5, §6).
#[derive(Debug)]
#[non_exhaustive]
pub enum RdError {
    /// A malformed or missing parameter, or a malformed payload: 4.00 with the reason as
    /// diagnostic payload.
    BadRequest(String),
    /// The requester is not the one that registered (RFC 9176 §7.5): 4.03.
    Forbidden,
    /// No such registration resource (RFC 9176 §5.3.1, §5.3.2): 4.04.
    NotFound,
    /// The payload is not link format (RFC 9176 §4.2): 4.15.
    UnsupportedContentFormat,
    /// The client asked for a format other than link format: 4.06.
    NotAcceptable,
    /// The payload is larger than the configured limit: 4.13 with Size1.
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The registration table (or the memory budget for links) is full: 5.03 with
    /// Max-Age.
    Full,
    /// A lookup result larger than the configured limit: 4.00 asking for `page` and
    /// `count` (RFC 9176 §6.2 forbids truncating a result without `count`).
    ResultTooLarge {
        /// The limit that was exceeded (links or bytes).
        limit: usize,
        /// What the limit counts: `"links"` or `"bytes"`.
        unit: &'static str,
    },
    /// The change could not be made durable: 5.00, nothing acknowledged.
    Store(StoreError),
}

/// Max-Age of a 5.03 answer when the RD is full (RFC 9176 §4: clients "SHOULD retry
/// the request upon 5.03 according to the Max-Age").
pub const FULL_RETRY_AFTER_SECS: u32 = 60;

impl RdError {
    /// The response code (RFC 7252 §5.9).
    pub fn code(&self) -> Code {
        match self {
            RdError::BadRequest(_) | RdError::ResultTooLarge { .. } => Code::BAD_REQUEST,
            RdError::Forbidden => Code::FORBIDDEN,
            RdError::NotFound => Code::NOT_FOUND,
            RdError::UnsupportedContentFormat => Code::UNSUPPORTED_CONTENT_FORMAT,
            RdError::NotAcceptable => Code::NOT_ACCEPTABLE,
            RdError::PayloadTooLarge { .. } => Code::REQUEST_ENTITY_TOO_LARGE,
            RdError::Full => Code::SERVICE_UNAVAILABLE,
            RdError::Store(_) => Code::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error response: code, diagnostic payload (RFC 7252 §5.5.2) and the options
    /// the code calls for (Size1 for 4.13, Max-Age for 5.03).
    pub fn to_response(&self) -> Response {
        let mut response = Response::with_payload(self.code(), self.to_string());
        match self {
            RdError::PayloadTooLarge { limit } => response.options.set_uint(
                OptionNumber::SIZE1,
                u32::try_from(*limit).unwrap_or(u32::MAX),
            ),
            RdError::Full => response
                .options
                .set_uint(OptionNumber::MAX_AGE, FULL_RETRY_AFTER_SECS),
            _ => {}
        }
        response
    }

    pub(crate) fn bad(message: impl Into<String>) -> RdError {
        RdError::BadRequest(message.into())
    }
}

impl fmt::Display for RdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RdError::BadRequest(why) => f.write_str(why),
            RdError::Forbidden => f.write_str("registration belongs to another endpoint"),
            RdError::NotFound => f.write_str("no such registration"),
            RdError::UnsupportedContentFormat => {
                f.write_str("registrations are accepted in application/link-format (40)")
            }
            RdError::NotAcceptable => {
                f.write_str("lookups are served in application/link-format (40)")
            }
            RdError::PayloadTooLarge { limit } => {
                write!(f, "registration payload larger than {limit} bytes")
            }
            RdError::Full => f.write_str("resource directory full"),
            RdError::ResultTooLarge { limit, unit } => write!(
                f,
                "lookup result exceeds {limit} {unit}; narrow the search or use page and count"
            ),
            RdError::Store(err) => write!(f, "storage failed: {err}"),
        }
    }
}

impl std::error::Error for RdError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RdError::Store(err) => Some(err),
            _ => None,
        }
    }
}

impl From<StoreError> for RdError {
    fn from(err: StoreError) -> RdError {
        RdError::Store(err)
    }
}
