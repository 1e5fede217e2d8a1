//! Message codes (RFC 7252 §3, §12.1) and message types (RFC 7252 §3, §4).
//!
//! [`Code`] is an open newtype over the 8-bit Code field: unknown values round-trip, and
//! the registered values have named constants. Registries covered: CoAP Method Codes
//! (RFC 7252, RFC 8132), CoAP Response Codes (RFC 7252, RFC 7959, RFC 8132, RFC 8516,
//! RFC 8768) and CoAP Signaling Codes (RFC 8323 §5).

use core::fmt;
use core::str::FromStr;

/// A CoAP message code: 3-bit class and 5-bit detail, written `c.dd` (RFC 7252 §3).
///
/// `0.00` is the Empty message, `0.01`–`0.31` are request methods, `2.00`–`5.31`
/// responses and `7.00`–`7.31` signaling codes of reliable transports (RFC 8323 §5).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u8);

impl Code {
    /// Builds a code from its class (0–7) and detail (0–31); extra bits are masked off.
    pub const fn new(class: u8, detail: u8) -> Code {
        Code(((class & 0x07) << 5) | (detail & 0x1f))
    }

    /// The class: the three most significant bits (RFC 7252 §3).
    pub const fn class(self) -> u8 {
        self.0 >> 5
    }

    /// The detail: the five least significant bits (RFC 7252 §3).
    pub const fn detail(self) -> u8 {
        self.0 & 0x1f
    }

    /// `0.00`, the code of an Empty message (RFC 7252 §4.1).
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// A request method: class 0 with a non-zero detail (RFC 7252 §12.1).
    pub const fn is_request(self) -> bool {
        self.class() == 0 && self.detail() != 0
    }

    /// A response: class 2 to 5 (RFC 7252 §12.1; class 3 is reserved).
    pub const fn is_response(self) -> bool {
        matches!(self.class(), 2..=5)
    }

    /// A success response (class 2).
    pub const fn is_success(self) -> bool {
        self.class() == 2
    }

    /// A client error response (class 4).
    pub const fn is_client_error(self) -> bool {
        self.class() == 4
    }

    /// A server error response (class 5).
    pub const fn is_server_error(self) -> bool {
        self.class() == 5
    }

    /// A signaling code of reliable transports: class 7 (RFC 8323 §5).
    pub const fn is_signaling(self) -> bool {
        self.class() == 7
    }

    /// The registered name: the method name for requests ("GET"), the description for
    /// responses ("Not Found"), the signal name for signaling codes ("CSM").
    pub const fn name(self) -> Option<&'static str> {
        Some(match self {
            Code::EMPTY => "Empty",
            Code::GET => "GET",
            Code::POST => "POST",
            Code::PUT => "PUT",
            Code::DELETE => "DELETE",
            Code::FETCH => "FETCH",
            Code::PATCH => "PATCH",
            Code::IPATCH => "iPATCH",
            Code::CREATED => "Created",
            Code::DELETED => "Deleted",
            Code::VALID => "Valid",
            Code::CHANGED => "Changed",
            Code::CONTENT => "Content",
            Code::CONTINUE => "Continue",
            Code::BAD_REQUEST => "Bad Request",
            Code::UNAUTHORIZED => "Unauthorized",
            Code::BAD_OPTION => "Bad Option",
            Code::FORBIDDEN => "Forbidden",
            Code::NOT_FOUND => "Not Found",
            Code::METHOD_NOT_ALLOWED => "Method Not Allowed",
            Code::NOT_ACCEPTABLE => "Not Acceptable",
            Code::REQUEST_ENTITY_INCOMPLETE => "Request Entity Incomplete",
            Code::CONFLICT => "Conflict",
            Code::PRECONDITION_FAILED => "Precondition Failed",
            Code::REQUEST_ENTITY_TOO_LARGE => "Request Entity Too Large",
            Code::UNSUPPORTED_CONTENT_FORMAT => "Unsupported Content-Format",
            Code::UNPROCESSABLE_ENTITY => "Unprocessable Entity",
            Code::TOO_MANY_REQUESTS => "Too Many Requests",
            Code::INTERNAL_SERVER_ERROR => "Internal Server Error",
            Code::NOT_IMPLEMENTED => "Not Implemented",
            Code::BAD_GATEWAY => "Bad Gateway",
            Code::SERVICE_UNAVAILABLE => "Service Unavailable",
            Code::GATEWAY_TIMEOUT => "Gateway Timeout",
            Code::PROXYING_NOT_SUPPORTED => "Proxying Not Supported",
            Code::HOP_LIMIT_REACHED => "Hop Limit Reached",
            Code::CSM => "CSM",
            Code::PING => "Ping",
            Code::PONG => "Pong",
            Code::RELEASE => "Release",
            Code::ABORT => "Abort",
            _ => return None,
        })
    }

    /// Every code with a registered name, in numeric order.
    pub const KNOWN: &'static [Code] = &[
        Code::EMPTY,
        Code::GET,
        Code::POST,
        Code::PUT,
        Code::DELETE,
        Code::FETCH,
        Code::PATCH,
        Code::IPATCH,
        Code::CREATED,
        Code::DELETED,
        Code::VALID,
        Code::CHANGED,
        Code::CONTENT,
        Code::CONTINUE,
        Code::BAD_REQUEST,
        Code::UNAUTHORIZED,
        Code::BAD_OPTION,
        Code::FORBIDDEN,
        Code::NOT_FOUND,
        Code::METHOD_NOT_ALLOWED,
        Code::NOT_ACCEPTABLE,
        Code::REQUEST_ENTITY_INCOMPLETE,
        Code::CONFLICT,
        Code::PRECONDITION_FAILED,
        Code::REQUEST_ENTITY_TOO_LARGE,
        Code::UNSUPPORTED_CONTENT_FORMAT,
        Code::UNPROCESSABLE_ENTITY,
        Code::TOO_MANY_REQUESTS,
        Code::INTERNAL_SERVER_ERROR,
        Code::NOT_IMPLEMENTED,
        Code::BAD_GATEWAY,
        Code::SERVICE_UNAVAILABLE,
        Code::GATEWAY_TIMEOUT,
        Code::PROXYING_NOT_SUPPORTED,
        Code::HOP_LIMIT_REACHED,
        Code::CSM,
        Code::PING,
        Code::PONG,
        Code::RELEASE,
        Code::ABORT,
    ];

    /// 0.00 Empty message (RFC 7252 §4.1).
    pub const EMPTY: Code = Code::new(0, 0);
    /// 0.01 GET (RFC 7252 §5.8.1).
    pub const GET: Code = Code::new(0, 1);
    /// 0.02 POST (RFC 7252 §5.8.2).
    pub const POST: Code = Code::new(0, 2);
    /// 0.03 PUT (RFC 7252 §5.8.3).
    pub const PUT: Code = Code::new(0, 3);
    /// 0.04 DELETE (RFC 7252 §5.8.4).
    pub const DELETE: Code = Code::new(0, 4);
    /// 0.05 FETCH (RFC 8132 §2).
    pub const FETCH: Code = Code::new(0, 5);
    /// 0.06 PATCH (RFC 8132 §3).
    pub const PATCH: Code = Code::new(0, 6);
    /// 0.07 iPATCH (RFC 8132 §3).
    pub const IPATCH: Code = Code::new(0, 7);

    /// 2.01 Created (RFC 7252 §5.9.1.1).
    pub const CREATED: Code = Code::new(2, 1);
    /// 2.02 Deleted (RFC 7252 §5.9.1.2).
    pub const DELETED: Code = Code::new(2, 2);
    /// 2.03 Valid (RFC 7252 §5.9.1.3).
    pub const VALID: Code = Code::new(2, 3);
    /// 2.04 Changed (RFC 7252 §5.9.1.4).
    pub const CHANGED: Code = Code::new(2, 4);
    /// 2.05 Content (RFC 7252 §5.9.1.5).
    pub const CONTENT: Code = Code::new(2, 5);
    /// 2.31 Continue (RFC 7959 §2.9.1).
    pub const CONTINUE: Code = Code::new(2, 31);

    /// 4.00 Bad Request (RFC 7252 §5.9.2.1).
    pub const BAD_REQUEST: Code = Code::new(4, 0);
    /// 4.01 Unauthorized (RFC 7252 §5.9.2.2).
    pub const UNAUTHORIZED: Code = Code::new(4, 1);
    /// 4.02 Bad Option (RFC 7252 §5.9.2.3).
    pub const BAD_OPTION: Code = Code::new(4, 2);
    /// 4.03 Forbidden (RFC 7252 §5.9.2.4).
    pub const FORBIDDEN: Code = Code::new(4, 3);
    /// 4.04 Not Found (RFC 7252 §5.9.2.5).
    pub const NOT_FOUND: Code = Code::new(4, 4);
    /// 4.05 Method Not Allowed (RFC 7252 §5.9.2.6).
    pub const METHOD_NOT_ALLOWED: Code = Code::new(4, 5);
    /// 4.06 Not Acceptable (RFC 7252 §5.9.2.7).
    pub const NOT_ACCEPTABLE: Code = Code::new(4, 6);
    /// 4.08 Request Entity Incomplete (RFC 7959 §2.9.2).
    pub const REQUEST_ENTITY_INCOMPLETE: Code = Code::new(4, 8);
    /// 4.09 Conflict (RFC 8132 §3.4).
    pub const CONFLICT: Code = Code::new(4, 9);
    /// 4.12 Precondition Failed (RFC 7252 §5.9.2.8).
    pub const PRECONDITION_FAILED: Code = Code::new(4, 12);
    /// 4.13 Request Entity Too Large (RFC 7252 §5.9.2.9, RFC 7959 §2.9.3).
    pub const REQUEST_ENTITY_TOO_LARGE: Code = Code::new(4, 13);
    /// 4.15 Unsupported Content-Format (RFC 7252 §5.9.2.10).
    pub const UNSUPPORTED_CONTENT_FORMAT: Code = Code::new(4, 15);
    /// 4.22 Unprocessable Entity (RFC 8132 §3.4).
    pub const UNPROCESSABLE_ENTITY: Code = Code::new(4, 22);
    /// 4.29 Too Many Requests (RFC 8516 §3).
    pub const TOO_MANY_REQUESTS: Code = Code::new(4, 29);

    /// 5.00 Internal Server Error (RFC 7252 §5.9.3.1).
    pub const INTERNAL_SERVER_ERROR: Code = Code::new(5, 0);
    /// 5.01 Not Implemented (RFC 7252 §5.9.3.2).
    pub const NOT_IMPLEMENTED: Code = Code::new(5, 1);
    /// 5.02 Bad Gateway (RFC 7252 §5.9.3.3).
    pub const BAD_GATEWAY: Code = Code::new(5, 2);
    /// 5.03 Service Unavailable (RFC 7252 §5.9.3.4).
    pub const SERVICE_UNAVAILABLE: Code = Code::new(5, 3);
    /// 5.04 Gateway Timeout (RFC 7252 §5.9.3.5).
    pub const GATEWAY_TIMEOUT: Code = Code::new(5, 4);
    /// 5.05 Proxying Not Supported (RFC 7252 §5.9.3.6).
    pub const PROXYING_NOT_SUPPORTED: Code = Code::new(5, 5);
    /// 5.08 Hop Limit Reached (RFC 8768 §3).
    pub const HOP_LIMIT_REACHED: Code = Code::new(5, 8);

    /// 7.01 CSM, Capabilities and Settings Message (RFC 8323 §5.3).
    pub const CSM: Code = Code::new(7, 1);
    /// 7.02 Ping (RFC 8323 §5.4).
    pub const PING: Code = Code::new(7, 2);
    /// 7.03 Pong (RFC 8323 §5.4).
    pub const PONG: Code = Code::new(7, 3);
    /// 7.04 Release (RFC 8323 §5.5).
    pub const RELEASE: Code = Code::new(7, 4);
    /// 7.05 Abort (RFC 8323 §5.6).
    pub const ABORT: Code = Code::new(7, 5);
}

impl From<u8> for Code {
    fn from(value: u8) -> Self {
        Code(value)
    }
}

impl From<Code> for u8 {
    fn from(value: Code) -> Self {
        value.0
    }
}

/// Prints `c.dd`, e.g. `2.05` (RFC 7252 §3).
impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.class(), self.detail())
    }
}

/// Prints `c.dd Name`, e.g. `2.05 Content`, or just `c.dd` for unregistered codes.
impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{self} {name}"),
            None => write!(f, "{self}"),
        }
    }
}

/// The error of [`Code::from_str`]: neither `c.dd` nor a registered name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeParseError;

impl fmt::Display for CodeParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid CoAP code: expected c.dd (class 0-7, detail 00-31) or a code name")
    }
}

impl core::error::Error for CodeParseError {}

impl FromStr for Code {
    type Err = CodeParseError;

    /// Parses `c.dd` (exactly one class digit 0–7, a dot, two detail digits 00–31), or a
    /// registered name compared case-insensitively: a method ("GET", "ipatch"), a
    /// response description ("Not Found") or a signal ("Ping").
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() == 4 && b[1] == b'.' {
            let digit = |c: u8| {
                if c.is_ascii_digit() {
                    Some(c - b'0')
                } else {
                    None
                }
            };
            if let (Some(c), Some(d1), Some(d2)) = (digit(b[0]), digit(b[2]), digit(b[3])) {
                let detail = d1 * 10 + d2;
                if c <= 7 && detail <= 31 {
                    return Ok(Code::new(c, detail));
                }
            }
            return Err(CodeParseError);
        }
        Code::KNOWN
            .iter()
            .copied()
            .find(|c| c.name().is_some_and(|n| n.eq_ignore_ascii_case(s)))
            .ok_or(CodeParseError)
    }
}

/// The message type, the 2-bit T field of the header (RFC 7252 §3, §4).
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum MessageType {
    /// CON: requires an acknowledgement (RFC 7252 §4.2).
    Confirmable = 0,
    /// NON: needs no acknowledgement (RFC 7252 §4.3).
    NonConfirmable = 1,
    /// ACK: acknowledges a Confirmable message (RFC 7252 §4.2).
    Acknowledgement = 2,
    /// RST: rejects a message that cannot be processed (RFC 7252 §4.2, §4.3).
    Reset = 3,
}

impl MessageType {
    /// The type encoded in the two least significant bits of `bits` (higher bits ignored).
    pub const fn from_bits(bits: u8) -> MessageType {
        match bits & 0b11 {
            0 => MessageType::Confirmable,
            1 => MessageType::NonConfirmable,
            2 => MessageType::Acknowledgement,
            _ => MessageType::Reset,
        }
    }

    /// The 2-bit wire value.
    pub const fn bits(self) -> u8 {
        self as u8
    }

    /// The usual abbreviation: "CON", "NON", "ACK" or "RST".
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageType::Confirmable => "CON",
            MessageType::NonConfirmable => "NON",
            MessageType::Acknowledgement => "ACK",
            MessageType::Reset => "RST",
        }
    }
}

/// Prints the abbreviation ("CON", "NON", "ACK", "RST").
impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn class_and_detail() {
        assert_eq!(Code::CONTENT.0, 69); // RFC 7252 Appendix A: "2.05=69"
        assert_eq!(Code::GET.0, 1);
        assert_eq!(Code::NOT_FOUND.class(), 4);
        assert_eq!(Code::NOT_FOUND.detail(), 4);
        assert_eq!(Code::new(7, 31).0, 0xff);
        assert_eq!(Code::CSM.0, 0xe1);
    }

    #[test]
    fn predicates() {
        assert!(Code::EMPTY.is_empty() && !Code::EMPTY.is_request());
        assert!(Code::GET.is_request() && Code::IPATCH.is_request());
        assert!(Code::CONTENT.is_response() && Code::CONTENT.is_success());
        assert!(Code::NOT_FOUND.is_client_error() && Code::NOT_FOUND.is_response());
        assert!(Code::BAD_GATEWAY.is_server_error());
        assert!(Code::PING.is_signaling() && !Code::PING.is_response());
        assert!(!Code::new(1, 0).is_response() && !Code::new(6, 0).is_response());
        assert!(Code::new(3, 0).is_response());
    }

    #[test]
    fn display_debug() {
        assert_eq!(format!("{}", Code::CONTENT), "2.05");
        assert_eq!(format!("{:?}", Code::CONTENT), "2.05 Content");
        assert_eq!(format!("{:?}", Code::GET), "0.01 GET");
        assert_eq!(format!("{:?}", Code::new(2, 7)), "2.07");
        assert_eq!(format!("{}", Code::CONTINUE), "2.31");
        assert_eq!(Code::NOT_FOUND.name(), Some("Not Found"));
        assert_eq!(Code::new(6, 1).name(), None);
    }

    #[test]
    fn from_str() {
        assert_eq!("2.05".parse(), Ok(Code::CONTENT));
        assert_eq!("0.00".parse(), Ok(Code::EMPTY));
        assert_eq!("7.31".parse(), Ok(Code::new(7, 31)));
        assert_eq!("get".parse(), Ok(Code::GET));
        assert_eq!("iPATCH".parse(), Ok(Code::IPATCH));
        assert_eq!("not found".parse(), Ok(Code::NOT_FOUND));
        assert_eq!("8.00".parse::<Code>(), Err(CodeParseError));
        assert_eq!("2.32".parse::<Code>(), Err(CodeParseError));
        assert_eq!("2.5".parse::<Code>(), Err(CodeParseError));
        assert_eq!("a.bc".parse::<Code>(), Err(CodeParseError));
        assert_eq!("".parse::<Code>(), Err(CodeParseError));
        assert_eq!("GETS".parse::<Code>(), Err(CodeParseError));
        for c in 0..=255u8 {
            let code = Code(c);
            assert_eq!(format!("{code}").parse(), Ok(code));
        }
        for &code in Code::KNOWN {
            assert_eq!(code.name().unwrap().parse(), Ok(code));
        }
    }

    #[test]
    fn message_type() {
        for bits in 0..4u8 {
            assert_eq!(MessageType::from_bits(bits).bits(), bits);
        }
        assert_eq!(MessageType::from_bits(0b110), MessageType::Acknowledgement);
        assert_eq!(MessageType::Confirmable.as_str(), "CON");
        assert_eq!(format!("{}", MessageType::Reset), "RST");
    }
}
