//! The CoAP message format over reliable transports: TCP and TLS (RFC 8323 §3.2) and
//! WebSockets (RFC 8323 §4.2), with the signaling options of §5 and RFC 8974.
//!
//! Messages on a stream have no type and no message ID; a length shim in front of the
//! code tells where the next message starts:
//!
//! ```text
//!   0   1   2   3   4   5   6   7
//! +---------------+---------------+
//! |      Len      |      TKL      |   1 byte
//! +---------------+---------------+
//! /  Extended Len (0, 1, 2 or 4)  /   Len 13, 14, 15: length - 13, - 269, - 65805
//! +-------------------------------+
//! |             Code              |   1 byte
//! +-------------------------------+
//! /  Extended TKL (0-2, RFC 8974) /
//! /  Token                        /
//! /  Options                      /   Len counts the options,
//! /  0xFF Payload                 /   the payload marker and the payload
//! ```
//!
//! Over WebSockets every message is one binary frame, so the Len nibble is 0 and there is
//! no extended length (RFC 8323 §4.2). [`frame_len`] finds message boundaries in a TCP
//! byte stream before the whole message is buffered, so a receiver can refuse a message
//! larger than its Max-Message-Size without reading it.

use core::fmt;

use crate::code::Code;
use crate::message::{OptionIter, ParseError, MAX_EXTENDED_TOKEN_LEN};
use crate::option::{decode_uint, OptionNumber};

/// The framing of a reliable transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Framing {
    /// The length shim of RFC 8323 §3.2 (`coap+tcp`, `coaps+tcp`).
    Tcp,
    /// One message per WebSocket binary frame, Len = 0 (RFC 8323 §4.2; `coap+ws`,
    /// `coaps+ws`).
    WebSocket,
}

/// The Max-Message-Size every connection starts with, until the peer's CSM says otherwise
/// (RFC 8323 §5.3.1: "the default value ... is 1152").
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1152;

/// The longest body (options and payload) the 4-byte extended length can express
/// (a `u64`: it exceeds `usize` on 32-bit targets).
pub const MAX_STREAM_BODY_LEN: u64 = u32::MAX as u64 + 65805;

/// Signaling option numbers (RFC 8323 §5.3–§5.6). Their meaning depends on the signaling
/// code, so they reuse small numbers; even numbers are elective, odd ones critical
/// (§5.2).
pub mod signal_option {
    use crate::option::OptionNumber;

    /// CSM: the largest message the sender can receive, uint 0–4 bytes (§5.3.1).
    pub const MAX_MESSAGE_SIZE: OptionNumber = OptionNumber(2);
    /// CSM: the sender supports block-wise transfer, empty (§5.3.2); with it BERT
    /// (§6) may be used.
    pub const BLOCK_WISE_TRANSFER: OptionNumber = OptionNumber(4);
    /// CSM: the longest token the sender accepts, uint 0–3 bytes, base value 8
    /// (RFC 8974 §2.2.1).
    pub const EXTENDED_TOKEN_LENGTH: OptionNumber = OptionNumber(6);
    /// Ping and Pong: delay the Pong until everything before the Ping was processed,
    /// empty (§5.4.1).
    pub const CUSTODY: OptionNumber = OptionNumber(2);
    /// Release: where the peer may reconnect, string 1–255, repeatable (§5.5.1).
    pub const ALTERNATIVE_ADDRESS: OptionNumber = OptionNumber(2);
    /// Release: seconds to wait before reconnecting, uint 0–3 bytes (§5.5.2).
    pub const HOLD_OFF: OptionNumber = OptionNumber(4);
    /// Abort: the CSM option that could not be processed, uint 0–2 bytes (§5.6.1).
    pub const BAD_CSM_OPTION: OptionNumber = OptionNumber(2);
}

/// Why stream bytes are not a well-formed message, or not an acceptable one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    /// The message itself is malformed (token, options, payload marker).
    Message(ParseError),
    /// The message announces more bytes than the receiver accepts: the connection is to
    /// be aborted (RFC 8323 §5.3.1: a message larger than the announced
    /// Max-Message-Size).
    TooLarge {
        /// The announced message size (header included).
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// The length shim does not match the bytes given (a complete message was expected).
    LengthMismatch,
    /// A WebSocket message with a non-zero Len nibble (RFC 8323 §4.2).
    NonZeroWebSocketLength,
    /// A WebSocket text frame: CoAP messages travel in binary frames (RFC 8323 §4.2).
    WebSocketTextFrame,
}

impl From<ParseError> for StreamError {
    fn from(err: ParseError) -> Self {
        StreamError::Message(err)
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Message(err) => err.fmt(f),
            StreamError::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the limit of {max}")
            }
            StreamError::LengthMismatch => f.write_str("length shim does not match the message"),
            StreamError::NonZeroWebSocketLength => {
                f.write_str("WebSocket message with a non-zero length nibble")
            }
            StreamError::WebSocketTextFrame => {
                f.write_str("WebSocket text frame (CoAP messages travel in binary frames)")
            }
        }
    }
}

impl core::error::Error for StreamError {}

/// The fields before the token, as decoded from the first bytes of a message.
#[derive(Clone, Copy, Debug)]
struct Prefix {
    code: Code,
    token_start: usize,
    token_len: usize,
    /// Options, marker and payload; `None` for WebSocket framing (the frame says).
    body_len: Option<u64>,
}

/// Decodes the shim, code and token length; `Ok(None)` if `buf` is too short to tell.
fn prefix(framing: Framing, buf: &[u8]) -> Result<Option<Prefix>, StreamError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let (len_nibble, tkl) = (first >> 4, first & 0x0f);
    let (body_len, mut pos) = match framing {
        Framing::WebSocket if len_nibble != 0 => return Err(StreamError::NonZeroWebSocketLength),
        Framing::WebSocket => (None, 1),
        Framing::Tcp => {
            let ext = match len_nibble {
                0..=12 => 0,
                13 => 1,
                14 => 2,
                _ => 4,
            };
            let Some(bytes) = buf.get(1..1 + ext) else {
                return Ok(None);
            };
            let len = match len_nibble {
                n @ 0..=12 => u64::from(n),
                13 => u64::from(bytes[0]) + 13,
                14 => u64::from(u16::from_be_bytes([bytes[0], bytes[1]])) + 269,
                _ => {
                    u64::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])) + 65805
                }
            };
            (Some(len), 1 + ext)
        }
    };
    let Some(&code) = buf.get(pos) else {
        return Ok(None);
    };
    pos += 1;
    let token_len = match tkl {
        n @ 0..=12 => usize::from(n),
        13 => match buf.get(pos) {
            Some(&b) => {
                pos += 1;
                usize::from(b) + 13
            }
            None => return Ok(None),
        },
        14 => match buf.get(pos..pos + 2) {
            Some(b) => {
                pos += 2;
                usize::from(u16::from_be_bytes([b[0], b[1]])) + 269
            }
            None => return Ok(None),
        },
        _ => return Err(ParseError::InvalidTokenLength.into()),
    };
    Ok(Some(Prefix {
        code: Code(code),
        token_start: pos,
        token_len,
        body_len,
    }))
}

/// The length of the first message in a TCP byte stream, once enough of it has arrived
/// to tell (at most 8 bytes): `Ok(Some(n))` means the message is `buf[..n]` when
/// `buf.len() >= n`; `Ok(None)` asks for more bytes. A message longer than
/// `max_message_size` is [`StreamError::TooLarge`] before its body is read, and so is a
/// token longer than `max_token_len`.
pub fn frame_len(
    buf: &[u8],
    max_message_size: usize,
    max_token_len: usize,
) -> Result<Option<usize>, StreamError> {
    let Some(p) = prefix(Framing::Tcp, buf)? else {
        return Ok(None);
    };
    if p.token_len > max_token_len.min(MAX_EXTENDED_TOKEN_LEN) {
        return Err(ParseError::TokenTooLong {
            len: p.token_len,
            max: max_token_len,
        }
        .into());
    }
    let total = p.token_start as u64 + p.token_len as u64 + p.body_len.unwrap_or(0);
    if total > max_message_size as u64 {
        return Err(StreamError::TooLarge {
            len: total,
            max: max_message_size,
        });
    }
    Ok(Some(total as usize))
}

/// A validated message from a reliable transport (RFC 8323 §3.2, §4.2), borrowed from
/// the bytes of exactly one message.
#[derive(Clone, Copy)]
pub struct StreamMessage<'a> {
    buf: &'a [u8],
    code: Code,
    token_start: usize,
    token_end: usize,
    options_end: usize,
    payload_start: usize,
}

impl<'a> StreamMessage<'a> {
    /// Parses and validates one whole message. With [`Framing::Tcp`], `buf` must be
    /// exactly the message ([`frame_len`] finds it in a stream); with
    /// [`Framing::WebSocket`], it is the binary frame's payload.
    pub fn parse(
        framing: Framing,
        buf: &'a [u8],
        max_token_len: usize,
    ) -> Result<StreamMessage<'a>, StreamError> {
        let p = prefix(framing, buf)?.ok_or(ParseError::Truncated)?;
        if p.token_len > max_token_len {
            return Err(ParseError::TokenTooLong {
                len: p.token_len,
                max: max_token_len,
            }
            .into());
        }
        let token_end = p.token_start + p.token_len;
        if token_end > buf.len() {
            return Err(ParseError::Truncated.into());
        }
        if let Some(len) = p.body_len {
            if (buf.len() - token_end) as u64 != len {
                return Err(StreamError::LengthMismatch);
            }
        }
        let (options, payload) = OptionIter::new_checked(&buf[token_end..])?;
        let options_end = token_end + options.as_bytes().len();
        Ok(StreamMessage {
            buf,
            code: p.code,
            token_start: p.token_start,
            token_end,
            options_end,
            payload_start: buf.len() - payload.len(),
        })
    }

    /// The code: a method, a response code, or a signaling code (7.xx, §5).
    pub fn code(&self) -> Code {
        self.code
    }

    /// The token.
    pub fn token(&self) -> &'a [u8] {
        &self.buf[self.token_start..self.token_end]
    }

    /// The options in order of their numbers.
    pub fn options(&self) -> OptionIter<'a> {
        OptionIter::from_validated(&self.buf[self.token_end..self.options_end])
    }

    /// The value of the first occurrence of option `number`.
    pub fn option(&self, number: OptionNumber) -> Option<&'a [u8]> {
        self.options()
            .skip_while(|o| o.number < number)
            .take_while(|o| o.number == number)
            .map(|o| o.value)
            .next()
    }

    /// The first occurrence of option `number` as a uint; `None` if absent or longer
    /// than 4 bytes.
    pub fn option_uint(&self, number: OptionNumber) -> Option<u32> {
        self.option(number).and_then(decode_uint)
    }

    /// The payload (empty without a payload marker).
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.payload_start..]
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
}

impl fmt::Debug for StreamMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamMessage")
            .field("code", &self.code)
            .field("token", &self.token())
            .field("options", &self.options())
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

/// The size of the header (shim, code, extended token length) for a message with a
/// `token_len`-byte token and a `body_len`-byte body (options, marker, payload).
pub const fn stream_header_len(framing: Framing, token_len: usize, body_len: usize) -> usize {
    let shim = match framing {
        Framing::WebSocket => 0,
        Framing::Tcp => {
            if body_len < 13 {
                0
            } else if body_len < 269 {
                1
            } else if body_len < 65805 {
                2
            } else {
                4
            }
        }
    };
    let tkl = if token_len < 13 {
        0
    } else if token_len < 269 {
        1
    } else {
        2
    };
    2 + shim + tkl
}

/// Writes the header and token of a stream message whose body (options, payload
/// marker, payload) will be `body_len` bytes, and returns the bytes written; the body
/// follows with [`MessageWriter`](crate::MessageWriter)-style encoding (see
/// [`crate::MessageWriter::new_stream`]).
pub fn write_stream_header(
    out: &mut [u8],
    framing: Framing,
    code: Code,
    token: &[u8],
    body_len: usize,
) -> Result<usize, crate::EncodeError> {
    if token.len() > MAX_EXTENDED_TOKEN_LEN {
        return Err(crate::EncodeError::TokenTooLong);
    }
    if framing == Framing::Tcp && body_len as u64 > MAX_STREAM_BODY_LEN {
        return Err(crate::EncodeError::BufferTooSmall);
    }
    let total = stream_header_len(framing, token.len(), body_len) + token.len();
    let out = out
        .get_mut(..total)
        .ok_or(crate::EncodeError::BufferTooSmall)?;
    let (tkl, tkl_ext, tkl_n): (u8, [u8; 2], usize) = if token.len() < 13 {
        (token.len() as u8, [0; 2], 0)
    } else if token.len() < 269 {
        (13, [(token.len() - 13) as u8, 0], 1)
    } else {
        (14, ((token.len() - 269) as u16).to_be_bytes(), 2)
    };
    let mut pos = 1;
    let len_nibble = match framing {
        Framing::WebSocket => 0,
        Framing::Tcp if body_len < 13 => body_len as u8,
        Framing::Tcp if body_len < 269 => {
            out[pos] = (body_len - 13) as u8;
            pos += 1;
            13
        }
        Framing::Tcp if body_len < 65805 => {
            out[pos..pos + 2].copy_from_slice(&((body_len - 269) as u16).to_be_bytes());
            pos += 2;
            14
        }
        Framing::Tcp => {
            out[pos..pos + 4].copy_from_slice(&((body_len - 65805) as u32).to_be_bytes());
            pos += 4;
            15
        }
    };
    out[0] = (len_nibble << 4) | tkl;
    out[pos] = code.0;
    pos += 1;
    out[pos..pos + tkl_n].copy_from_slice(&tkl_ext[..tkl_n]);
    pos += tkl_n;
    out[pos..].copy_from_slice(token);
    debug_assert_eq!(pos + token.len(), total);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MessageWriter;

    fn encode(
        framing: Framing,
        code: Code,
        token: &[u8],
        opts: &[(u16, &[u8])],
        payload: &[u8],
    ) -> std::vec::Vec<u8> {
        let mut body_len = 0;
        let mut last = 0u16;
        for (n, v) in opts {
            body_len += crate::option_header_len(n - last, v.len()) + v.len();
            last = *n;
        }
        if !payload.is_empty() {
            body_len += 1 + payload.len();
        }
        let mut buf = std::vec![0u8; stream_header_len(framing, token.len(), body_len) + token.len() + body_len];
        let mut w = MessageWriter::new_stream(&mut buf, framing, code, token, body_len).unwrap();
        for (n, v) in opts {
            w.option(OptionNumber(*n), v).unwrap();
        }
        let n = w.payload(payload).unwrap();
        assert_eq!(n, buf.len());
        buf
    }

    #[test]
    fn rfc8323_minimal_messages() {
        // A CSM without options: Len 0, TKL 0, code 7.01 (RFC 8323 §5.3).
        assert_eq!(encode(Framing::Tcp, Code::CSM, &[], &[], &[]), [0x00, 0xe1]);
        // A Ping with a 2-byte token.
        assert_eq!(
            encode(Framing::Tcp, Code::PING, &[1, 2], &[], &[]),
            [0x02, 0xe2, 1, 2]
        );
        // CSM with Max-Message-Size 1152 (0x0480) and Block-Wise-Transfer.
        let csm = encode(
            Framing::Tcp,
            Code::CSM,
            &[],
            &[(2, &[0x04, 0x80]), (4, &[])],
            &[],
        );
        assert_eq!(csm, [0x40, 0xe1, 0x22, 0x04, 0x80, 0x20]);
        let m = StreamMessage::parse(Framing::Tcp, &csm, 8).unwrap();
        assert_eq!(m.code(), Code::CSM);
        assert_eq!(m.option_uint(signal_option::MAX_MESSAGE_SIZE), Some(1152));
        assert!(m.option(signal_option::BLOCK_WISE_TRANSFER).is_some());
    }

    #[test]
    fn length_shim_boundaries_round_trip() {
        for framing in [Framing::Tcp, Framing::WebSocket] {
            for payload_len in [
                0usize, 1, 11, 12, 13, 267, 268, 269, 65803, 65804, 65805, 70000,
            ] {
                let payload = std::vec![0xa5u8; payload_len];
                for token in [&[][..], &[7u8; 8][..], &[9u8; 13][..], &[3u8; 300][..]] {
                    let bytes = encode(framing, Code::CONTENT, token, &[(11, b"x")], &payload);
                    if framing == Framing::Tcp {
                        assert_eq!(
                            frame_len(&bytes, usize::MAX, 1 << 17).unwrap(),
                            Some(bytes.len())
                        );
                        // One byte never tells the length: the code is missing.
                        assert_eq!(frame_len(&bytes[..1], usize::MAX, 1 << 17), Ok(None));
                    }
                    let m = StreamMessage::parse(framing, &bytes, 1 << 17).unwrap();
                    assert_eq!(m.token(), token);
                    assert_eq!(m.payload(), &payload[..]);
                    assert_eq!(m.option(OptionNumber::URI_PATH), Some(&b"x"[..]));
                }
            }
        }
    }

    #[test]
    fn oversized_message_refused_from_its_header() {
        // Len 15 with an extended length of 0xffff_ffff: about 4 GB announced.
        let shim = [0xf0, 0xff, 0xff, 0xff, 0xff, 0x45];
        assert!(matches!(
            frame_len(&shim, 1152, 8),
            Err(StreamError::TooLarge { max: 1152, .. })
        ));
        assert_eq!(frame_len(&shim[..3], 1152, 8), Ok(None));
        assert_eq!(frame_len(&[], 1152, 8), Ok(None));
    }

    #[test]
    fn malformed_messages() {
        // Length shim says 3 body bytes, 2 present.
        assert_eq!(
            StreamMessage::parse(Framing::Tcp, &[0x30, 0x45, 0xb1, b'a'], 8).unwrap_err(),
            StreamError::LengthMismatch
        );
        assert_eq!(
            StreamMessage::parse(Framing::WebSocket, &[0x10, 0x45, 0xff], 8).unwrap_err(),
            StreamError::NonZeroWebSocketLength
        );
        assert_eq!(
            StreamMessage::parse(Framing::Tcp, &[0x0f, 0x45], 8).unwrap_err(),
            StreamError::Message(ParseError::InvalidTokenLength)
        );
        assert_eq!(
            StreamMessage::parse(Framing::Tcp, &[0x10, 0x45, 0xff], 8).unwrap_err(),
            StreamError::Message(ParseError::EmptyPayload)
        );
        assert!(matches!(
            frame_len(&[0x09, 0x45], 1152, 8),
            Err(StreamError::Message(ParseError::TokenTooLong {
                len: 9,
                max: 8
            }))
        ));
        assert_eq!(
            StreamMessage::parse(Framing::Tcp, &[], 8).unwrap_err(),
            StreamError::Message(ParseError::Truncated)
        );
    }

    #[test]
    fn every_short_input_is_handled() {
        for len in 0..4usize {
            for n in 0..(1u32 << (8 * len)) {
                let bytes = &n.to_be_bytes()[4 - len..];
                for framing in [Framing::Tcp, Framing::WebSocket] {
                    if let Ok(m) = StreamMessage::parse(framing, bytes, 8) {
                        let _ = (m.code(), m.token(), m.options().count(), m.payload());
                    }
                }
                let _ = frame_len(bytes, 1152, 8);
            }
        }
    }
}
