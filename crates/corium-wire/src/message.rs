//! The CoAP message format over UDP: a checked view and an encoder (RFC 7252 §3, §3.1,
//! §4.1; extended token lengths from RFC 8974 §2.1).
//!
//! [`Message::parse`] validates the whole datagram once (header, token, every option, the
//! payload marker), so the accessors of [`Message`] and the [`OptionIter`] it hands out
//! never fail. [`MessageWriter`] writes a message into a caller-owned buffer;
//! [`option_header_len`] and [`token_header_extra_len`] give the exact sizes so callers
//! can compute buffer lengths in advance.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Ver| T |  TKL  |      Code     |          Message ID           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Extended TKL (0-2 bytes, RFC 8974) | Token (if any) ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Options (if any) ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |1 1 1 1 1 1 1 1|    Payload (if any) ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use core::fmt;

use crate::code::{Code, MessageType};
use crate::content_format::ContentFormat;
use crate::option::{decode_uint, encode_uint, OptionFormat, OptionNumber};

/// The only CoAP version (RFC 7252 §3: "Implementations of this specification MUST set
/// this field to 1").
pub const VERSION: u8 = 1;

/// The byte that separates options from the payload (RFC 7252 §3).
pub const PAYLOAD_MARKER: u8 = 0xFF;

/// The longest token of RFC 7252 §3 (TKL 0–8), for peers without RFC 8974 support.
pub const MAX_TOKEN_LEN: usize = 8;

/// The longest token expressible with extended token lengths: TKL 14 plus a 16-bit
/// length, `65535 + 269` (RFC 8974 §2.1).
pub const MAX_EXTENDED_TOKEN_LEN: usize = 65804;

/// The longest option value expressible: length nibble 14 plus a 16-bit extension,
/// `65535 + 269` (RFC 7252 §3.1).
pub const MAX_OPTION_VALUE_LEN: usize = 65804;

/// Why a datagram is not a well-formed CoAP message (a "message format error",
/// RFC 7252 §3, §4.2, §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// Fewer than 4 bytes, or the token (or its extended length) runs past the end.
    Truncated,
    /// The version field is not 1; such messages MUST be silently ignored (RFC 7252 §3).
    UnsupportedVersion(u8),
    /// TKL is 15, which is reserved (RFC 8974 §2.1).
    InvalidTokenLength,
    /// The token is longer than the limit given to the parser (e.g. TKL 9–14 with a
    /// limit of 8 for plain RFC 7252 behaviour).
    TokenTooLong {
        /// The token length announced by the message.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// An option delta nibble is 15 but the byte is not the payload marker (RFC 7252 §3.1).
    InvalidOptionDelta,
    /// An option length nibble is 15 (RFC 7252 §3.1).
    InvalidOptionLength,
    /// The option number exceeds 65535.
    OptionNumberOverflow,
    /// An option's extended delta, extended length or value runs past the end.
    TruncatedOption,
    /// A payload marker followed by no payload (RFC 7252 §3).
    EmptyPayload,
    /// Code 0.00 with a token or with bytes after the header (RFC 7252 §4.1).
    EmptyMessageNotEmpty,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated => f.write_str("message truncated"),
            ParseError::UnsupportedVersion(v) => write!(f, "unsupported CoAP version {v}"),
            ParseError::InvalidTokenLength => f.write_str("reserved token length 15"),
            ParseError::TokenTooLong { len, max } => {
                write!(f, "token of {len} bytes exceeds the limit of {max}")
            }
            ParseError::InvalidOptionDelta => f.write_str("reserved option delta 15"),
            ParseError::InvalidOptionLength => f.write_str("reserved option length 15"),
            ParseError::OptionNumberOverflow => f.write_str("option number exceeds 65535"),
            ParseError::TruncatedOption => f.write_str("option truncated"),
            ParseError::EmptyPayload => f.write_str("payload marker followed by no payload"),
            ParseError::EmptyMessageNotEmpty => {
                f.write_str("empty message (0.00) with token, options or payload")
            }
        }
    }
}

impl core::error::Error for ParseError {}

/// The fixed 4-byte header (RFC 7252 §3), readable even when the rest of the message is
/// malformed, e.g. to reject a malformed Confirmable message with a Reset (RFC 7252 §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The version field (1 for RFC 7252).
    pub version: u8,
    /// The message type.
    pub ty: MessageType,
    /// The raw 4-bit TKL field (0–12 direct, 13/14 extended, 15 reserved; RFC 8974 §2.1).
    pub token_len_nibble: u8,
    /// The code.
    pub code: Code,
    /// The message ID.
    pub message_id: u16,
}

impl Header {
    /// Reads the first 4 bytes without any validation; `None` if `buf` is shorter.
    pub fn parse(buf: &[u8]) -> Option<Header> {
        let &[b0, code, m0, m1, ..] = buf else {
            return None;
        };
        Some(Header {
            version: b0 >> 6,
            ty: MessageType::from_bits(b0 >> 4),
            token_len_nibble: b0 & 0x0f,
            code: Code(code),
            message_id: u16::from_be_bytes([m0, m1]),
        })
    }

    /// The 4 header bytes (fields are masked to their widths).
    pub fn to_bytes(&self) -> [u8; 4] {
        let [m0, m1] = self.message_id.to_be_bytes();
        [
            ((self.version & 0x03) << 6) | (self.ty.bits() << 4) | (self.token_len_nibble & 0x0f),
            self.code.0,
            m0,
            m1,
        ]
    }
}

/// One option instance: its number and raw value (RFC 7252 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoapOption<'a> {
    /// The option number (sum of the deltas so far).
    pub number: OptionNumber,
    /// The value bytes.
    pub value: &'a [u8],
}

impl<'a> CoapOption<'a> {
    /// The value as a uint (RFC 7252 §3.2); `None` if longer than 4 bytes.
    pub fn value_uint(&self) -> Option<u32> {
        decode_uint(self.value)
    }

    /// The value as UTF-8 text, if valid.
    pub fn value_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.value).ok()
    }
}

/// Decodes one option header at the start of `bytes`, after checking it is not the
/// payload marker. Returns (delta, value length, header length).
fn decode_option_header(bytes: &[u8]) -> Result<(u32, usize, usize), ParseError> {
    let first = *bytes.first().ok_or(ParseError::TruncatedOption)?;
    let mut pos = 1;
    let mut ext = |nibble: u8, err: ParseError| -> Result<u32, ParseError> {
        match nibble {
            0..=12 => Ok(u32::from(nibble)),
            13 => {
                let b = *bytes.get(pos).ok_or(ParseError::TruncatedOption)?;
                pos += 1;
                Ok(u32::from(b) + 13)
            }
            14 => {
                let b = bytes.get(pos..pos + 2).ok_or(ParseError::TruncatedOption)?;
                pos += 2;
                Ok(u32::from(u16::from_be_bytes([b[0], b[1]])) + 269)
            }
            _ => Err(err),
        }
    };
    let delta = ext(first >> 4, ParseError::InvalidOptionDelta)?;
    let len = ext(first & 0x0f, ParseError::InvalidOptionLength)?;
    Ok((delta, len as usize, pos))
}

/// Iterator over the options of a validated option sequence (RFC 7252 §3.1).
///
/// Obtained from [`Message::options`] or [`OptionIter::new_checked`]; because the bytes
/// were validated up front, iteration cannot fail.
#[derive(Clone)]
pub struct OptionIter<'a> {
    rest: &'a [u8],
    number: u16,
}

impl<'a> OptionIter<'a> {
    /// An iterator over no options.
    pub const fn empty() -> OptionIter<'a> {
        OptionIter {
            rest: &[],
            number: 0,
        }
    }

    /// Validates `bytes` as a sequence of options, optionally followed by the payload
    /// marker and a non-empty payload (RFC 7252 §3, §3.1), and returns an iterator over
    /// the options together with the payload (empty if there is no marker).
    ///
    /// This is the part of a message after the token; it is shared with the framing of
    /// reliable transports (RFC 8323 §3.2), which uses the same option encoding.
    pub fn new_checked(bytes: &'a [u8]) -> Result<(OptionIter<'a>, &'a [u8]), ParseError> {
        let mut pos = 0;
        let mut number: u32 = 0;
        while pos < bytes.len() {
            if bytes[pos] == PAYLOAD_MARKER {
                let payload = &bytes[pos + 1..];
                if payload.is_empty() {
                    return Err(ParseError::EmptyPayload);
                }
                let iter = OptionIter {
                    rest: &bytes[..pos],
                    number: 0,
                };
                return Ok((iter, payload));
            }
            let (delta, len, hdr) = decode_option_header(&bytes[pos..])?;
            number += delta;
            if number > u32::from(u16::MAX) {
                return Err(ParseError::OptionNumberOverflow);
            }
            let end = pos + hdr + len;
            if end > bytes.len() {
                return Err(ParseError::TruncatedOption);
            }
            pos = end;
        }
        Ok((
            OptionIter {
                rest: bytes,
                number: 0,
            },
            &[],
        ))
    }

    /// The still unread option bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.rest
    }

    /// An iterator over options already validated by [`OptionIter::new_checked`].
    pub(crate) fn from_validated(rest: &'a [u8]) -> Self {
        OptionIter { rest, number: 0 }
    }
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = CoapOption<'a>;

    fn next(&mut self) -> Option<CoapOption<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        // The bytes were validated by `new_checked`; the fallbacks below only keep this
        // function panic-free.
        let decoded = decode_option_header(self.rest)
            .ok()
            .and_then(|(delta, len, hdr)| {
                let number = u16::try_from(u32::from(self.number) + delta).ok()?;
                let value = self.rest.get(hdr..hdr + len)?;
                Some((number, value, hdr + len))
            });
        match decoded {
            Some((number, value, used)) => {
                self.number = number;
                self.rest = &self.rest[used..];
                Some(CoapOption {
                    number: OptionNumber(number),
                    value,
                })
            }
            None => {
                self.rest = &[];
                None
            }
        }
    }
}

impl core::iter::FusedIterator for OptionIter<'_> {}

impl fmt::Debug for OptionIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.clone().map(OptionDebug))
            .finish()
    }
}

/// Formats an option as `Name: value` with the value rendered by its registered format.
struct OptionDebug<'a>(CoapOption<'a>);

impl fmt::Debug for OptionDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let CoapOption { number, value } = self.0;
        write!(f, "{number:?}: ")?;
        let format = number.info().map(|i| i.format);
        match format {
            Some(OptionFormat::Uint) if value.len() <= 4 => {
                let v = decode_uint(value).unwrap_or(0);
                if number == OptionNumber::CONTENT_FORMAT || number == OptionNumber::ACCEPT {
                    write!(f, "{:?}", ContentFormat(v as u16))
                } else {
                    write!(f, "{v}")
                }
            }
            Some(OptionFormat::String) => match core::str::from_utf8(value) {
                Ok(s) => write!(f, "{s:?}"),
                Err(_) => write_hex_value(f, value),
            },
            Some(OptionFormat::Empty) if value.is_empty() => f.write_str("(empty)"),
            _ => write_hex_value(f, value),
        }
    }
}

fn write_hex_value(f: &mut fmt::Formatter<'_>, value: &[u8]) -> fmt::Result {
    if value.is_empty() {
        return f.write_str("(empty)");
    }
    f.write_str("0x")?;
    crate::write_hex(f, value)
}

/// A validated CoAP message borrowed from a datagram (RFC 7252 §3).
///
/// Construct it with [`Message::parse`]; every accessor is infallible afterwards.
#[derive(Clone, Copy)]
pub struct Message<'a> {
    buf: &'a [u8],
    header: Header,
    token_start: usize,
    token_end: usize,
    options_end: usize,
    payload_start: usize,
}

impl<'a> Message<'a> {
    /// Parses and validates a whole message, accepting tokens up to
    /// [`MAX_EXTENDED_TOKEN_LEN`] bytes (RFC 8974 §2.1).
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, ParseError> {
        Self::parse_with_max_token(buf, MAX_EXTENDED_TOKEN_LEN)
    }

    /// Parses and validates a whole message, rejecting tokens longer than
    /// `max_token_len` with [`ParseError::TokenTooLong`]. Pass [`MAX_TOKEN_LEN`] for plain
    /// RFC 7252 behaviour (TKL 9–15 is a message format error).
    ///
    /// Checks, in order: length ≥ 4 ([`Truncated`](ParseError::Truncated)); version 1;
    /// for code 0.00, TKL 0 and nothing after the header (RFC 7252 §4.1); TKL ≠ 15; the
    /// extended token length; the token limit; the token bytes; the options and payload
    /// ([`OptionIter::new_checked`]).
    pub fn parse_with_max_token(
        buf: &'a [u8],
        max_token_len: usize,
    ) -> Result<Message<'a>, ParseError> {
        let header = Header::parse(buf).ok_or(ParseError::Truncated)?;
        if header.version != VERSION {
            return Err(ParseError::UnsupportedVersion(header.version));
        }
        if header.code.is_empty() && (header.token_len_nibble != 0 || buf.len() > 4) {
            return Err(ParseError::EmptyMessageNotEmpty);
        }
        let (token_len, token_start) = match header.token_len_nibble {
            n @ 0..=12 => (usize::from(n), 4),
            13 => {
                let b = *buf.get(4).ok_or(ParseError::Truncated)?;
                (usize::from(b) + 13, 5)
            }
            14 => {
                let b = buf.get(4..6).ok_or(ParseError::Truncated)?;
                (usize::from(u16::from_be_bytes([b[0], b[1]])) + 269, 6)
            }
            _ => return Err(ParseError::InvalidTokenLength),
        };
        if token_len > max_token_len {
            return Err(ParseError::TokenTooLong {
                len: token_len,
                max: max_token_len,
            });
        }
        let token_end = token_start + token_len;
        if token_end > buf.len() {
            return Err(ParseError::Truncated);
        }
        let (options, payload) = OptionIter::new_checked(&buf[token_end..])?;
        let options_end = token_end + options.rest.len();
        Ok(Message {
            buf,
            header,
            token_start,
            token_end,
            options_end,
            payload_start: buf.len() - payload.len(),
        })
    }

    /// The fixed header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The message type.
    pub fn ty(&self) -> MessageType {
        self.header.ty
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.header.code
    }

    /// The message ID.
    pub fn message_id(&self) -> u16 {
        self.header.message_id
    }

    /// The token (0 to [`MAX_EXTENDED_TOKEN_LEN`] bytes).
    pub fn token(&self) -> &'a [u8] {
        &self.buf[self.token_start..self.token_end]
    }

    /// The options in order of their numbers.
    pub fn options(&self) -> OptionIter<'a> {
        OptionIter {
            rest: &self.buf[self.token_end..self.options_end],
            number: 0,
        }
    }

    /// The encoded options (without the payload marker).
    pub fn options_bytes(&self) -> &'a [u8] {
        &self.buf[self.token_end..self.options_end]
    }

    /// The value of the first occurrence of option `number`.
    pub fn option(&self, number: OptionNumber) -> Option<&'a [u8]> {
        self.option_values(number).next()
    }

    /// The values of every occurrence of option `number`, in message order.
    pub fn option_values(&self, number: OptionNumber) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.options()
            .skip_while(move |o| o.number < number)
            .take_while(move |o| o.number == number)
            .map(|o| o.value)
    }

    /// The first occurrence of option `number` decoded as a uint (RFC 7252 §3.2);
    /// `None` if absent or longer than 4 bytes.
    pub fn option_uint(&self, number: OptionNumber) -> Option<u32> {
        self.option(number).and_then(decode_uint)
    }

    /// The Content-Format option, if present and at most 2 bytes (RFC 7252 §5.10.3).
    pub fn content_format(&self) -> Option<ContentFormat> {
        self.option(OptionNumber::CONTENT_FORMAT)
            .filter(|v| v.len() <= 2)
            .and_then(decode_uint)
            .map(|v| ContentFormat(v as u16))
    }

    /// The payload (empty if there is no payload marker).
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.payload_start..]
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// An Empty message: code 0.00, which parse only accepts as exactly 4 bytes
    /// (RFC 7252 §4.1).
    pub fn is_empty_message(&self) -> bool {
        self.header.code.is_empty()
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Hex<'a>(&'a [u8]);
        impl fmt::Debug for Hex<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex_value(f, self.0)
            }
        }
        struct Payload<'a>(&'a [u8]);
        impl fmt::Debug for Payload<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match core::str::from_utf8(self.0) {
                    Ok(s) => write!(f, "{} bytes {s:?}", self.0.len()),
                    Err(_) => {
                        write!(f, "{} bytes ", self.0.len())?;
                        write_hex_value(f, self.0)
                    }
                }
            }
        }
        struct Mid(u16);
        impl fmt::Debug for Mid {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#06x}", self.0)
            }
        }
        f.debug_struct("Message")
            .field("ty", &self.ty())
            .field("code", &self.code())
            .field("mid", &Mid(self.message_id()))
            .field("token", &Hex(self.token()))
            .field("options", &self.options())
            .field("payload", &Payload(self.payload()))
            .finish()
    }
}

/// Why a message could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is too small; nothing of the failed step was written.
    BufferTooSmall,
    /// The token is longer than [`MAX_EXTENDED_TOKEN_LEN`].
    TokenTooLong,
    /// An option number is lower than the previous one (RFC 7252 §3.1).
    OptionsOutOfOrder,
    /// An option value is longer than [`MAX_OPTION_VALUE_LEN`].
    OptionTooLong,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodeError::BufferTooSmall => "output buffer too small",
            EncodeError::TokenTooLong => "token longer than 65804 bytes",
            EncodeError::OptionsOutOfOrder => "options not in ascending order of numbers",
            EncodeError::OptionTooLong => "option value longer than 65804 bytes",
        })
    }
}

impl core::error::Error for EncodeError {}

/// Bytes used by the extended part of a nibble-encoded value (RFC 7252 §3.1).
const fn ext_len(value: usize) -> usize {
    if value < 13 {
        0
    } else if value < 269 {
        1
    } else {
        2
    }
}

/// The encoded size of an option header (without its value) for an option `delta` and
/// value length `len`: 1 to 5 bytes (RFC 7252 §3.1). Lengths above
/// [`MAX_OPTION_VALUE_LEN`] are not encodable and are counted as 2 extension bytes.
pub const fn option_header_len(delta: u16, len: usize) -> usize {
    1 + ext_len(delta as usize) + ext_len(len)
}

/// The number of extended token length bytes after the header for a token of
/// `token_len` bytes: 0 (≤ 12), 1 (≤ 268) or 2 (RFC 8974 §2.1).
pub const fn token_header_extra_len(token_len: usize) -> usize {
    ext_len(token_len)
}

/// Splits a value into its 4-bit nibble and extension bytes (RFC 7252 §3.1).
fn nibble(value: usize) -> (u8, [u8; 2], usize) {
    if value < 13 {
        (value as u8, [0; 2], 0)
    } else if value < 269 {
        (13, [(value - 13) as u8, 0], 1)
    } else {
        (14, ((value - 269) as u16).to_be_bytes(), 2)
    }
}

/// Writes an option header for `delta` and value length `len` into `out` and returns its
/// size (RFC 7252 §3.1). Also usable for the option encoding of RFC 8323 framing.
pub fn encode_option_header(delta: u16, len: usize, out: &mut [u8]) -> Result<usize, EncodeError> {
    if len > MAX_OPTION_VALUE_LEN {
        return Err(EncodeError::OptionTooLong);
    }
    let size = option_header_len(delta, len);
    let out = out.get_mut(..size).ok_or(EncodeError::BufferTooSmall)?;
    let (dn, dext, dl) = nibble(usize::from(delta));
    let (ln, lext, ll) = nibble(len);
    out[0] = (dn << 4) | ln;
    out[1..1 + dl].copy_from_slice(&dext[..dl]);
    out[1 + dl..1 + dl + ll].copy_from_slice(&lext[..ll]);
    Ok(size)
}

/// Writes a message into a caller-owned buffer (RFC 7252 §3).
///
/// Create it with the header and token, add options in non-decreasing number order, then
/// end with [`payload`](Self::payload) or [`finish`](Self::finish). Each step either
/// writes completely or fails without writing.
///
/// The writer does not enforce message-level rules such as "an Empty message has no
/// token" (RFC 7252 §4.1); [`Message::parse`] does.
pub struct MessageWriter<'b> {
    buf: &'b mut [u8],
    pos: usize,
    last_option: u16,
}

impl<'b> MessageWriter<'b> {
    /// Writes the header and the token (extended token lengths per RFC 8974 §2.1 for
    /// tokens longer than 12 bytes).
    pub fn new(
        buf: &'b mut [u8],
        ty: MessageType,
        code: Code,
        message_id: u16,
        token: &[u8],
    ) -> Result<Self, EncodeError> {
        if token.len() > MAX_EXTENDED_TOKEN_LEN {
            return Err(EncodeError::TokenTooLong);
        }
        let (tkl, ext, ext_n) = nibble(token.len());
        let total = 4 + ext_n + token.len();
        let out = buf.get_mut(..total).ok_or(EncodeError::BufferTooSmall)?;
        let header = Header {
            version: VERSION,
            ty,
            token_len_nibble: tkl,
            code,
            message_id,
        };
        out[..4].copy_from_slice(&header.to_bytes());
        out[4..4 + ext_n].copy_from_slice(&ext[..ext_n]);
        out[4 + ext_n..].copy_from_slice(token);
        Ok(MessageWriter {
            buf,
            pos: total,
            last_option: 0,
        })
    }

    /// Writes the header and token of a message for a reliable transport (RFC 8323 §3.2,
    /// §4.2) whose body (options, payload marker and payload) will be exactly `body_len`
    /// bytes; options and payload follow as for a datagram. The length shim is only
    /// right if the body written matches `body_len`.
    pub fn new_stream(
        buf: &'b mut [u8],
        framing: crate::stream::Framing,
        code: Code,
        token: &[u8],
        body_len: usize,
    ) -> Result<Self, EncodeError> {
        let pos = crate::stream::write_stream_header(buf, framing, code, token, body_len)?;
        Ok(MessageWriter {
            buf,
            pos,
            last_option: 0,
        })
    }

    /// Appends an option. `number` must not be lower than the previous option's number.
    pub fn option(&mut self, number: OptionNumber, value: &[u8]) -> Result<(), EncodeError> {
        if number.0 < self.last_option {
            return Err(EncodeError::OptionsOutOfOrder);
        }
        if value.len() > MAX_OPTION_VALUE_LEN {
            return Err(EncodeError::OptionTooLong);
        }
        let delta = number.0 - self.last_option;
        let total = option_header_len(delta, value.len()) + value.len();
        let out = self
            .buf
            .get_mut(self.pos..self.pos + total)
            .ok_or(EncodeError::BufferTooSmall)?;
        let hdr = encode_option_header(delta, value.len(), out)?;
        out[hdr..].copy_from_slice(value);
        self.pos += total;
        self.last_option = number.0;
        Ok(())
    }

    /// Appends a uint option in its minimal encoding (RFC 7252 §3.2).
    pub fn option_uint(&mut self, number: OptionNumber, value: u32) -> Result<(), EncodeError> {
        let mut tmp = [0u8; 4];
        self.option(number, encode_uint(value, &mut tmp))
    }

    /// Appends the payload marker and `payload` if it is non-empty (RFC 7252 §3) and
    /// returns the total message length.
    pub fn payload(self, payload: &[u8]) -> Result<usize, EncodeError> {
        if payload.is_empty() {
            return Ok(self.pos);
        }
        let end = self.pos + 1 + payload.len();
        let out = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(EncodeError::BufferTooSmall)?;
        out[0] = PAYLOAD_MARKER;
        out[1..].copy_from_slice(payload);
        Ok(end)
    }

    /// Ends the message without payload and returns its length.
    pub fn finish(self) -> usize {
        self.pos
    }

    /// The number of bytes written so far.
    pub fn written_len(&self) -> usize {
        self.pos
    }

    /// The number of the last option written (0 before any).
    pub fn last_option(&self) -> OptionNumber {
        OptionNumber(self.last_option)
    }
}

impl fmt::Debug for MessageWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageWriter")
            .field("written", &self.pos)
            .field("capacity", &self.buf.len())
            .field("last_option", &self.last_option)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;
    use std::{format, vec};

    const TEMPERATURE: &[u8] = b"temperature";
    const PAYLOAD: &[u8] = b"22.3 C";

    /// Encodes with the writer; options are `(number, value)` pairs.
    fn encode(
        ty: MessageType,
        code: Code,
        mid: u16,
        token: &[u8],
        options: &[(u16, &[u8])],
        payload: &[u8],
    ) -> Vec<u8> {
        let mut buf = vec![0u8; 70_000 + 2 * token.len()];
        let mut w = MessageWriter::new(&mut buf, ty, code, mid, token).unwrap();
        for &(n, v) in options {
            w.option(OptionNumber(n), v).unwrap();
        }
        let len = w.payload(payload).unwrap();
        buf.truncate(len);
        buf
    }

    fn get_request(mid: u16, token: &[u8], ty: MessageType) -> Vec<u8> {
        encode(ty, Code::GET, mid, token, &[(11, TEMPERATURE)], &[])
    }

    fn response(ty: MessageType, code: Code, mid: u16, token: &[u8], payload: &[u8]) -> Vec<u8> {
        encode(ty, code, mid, token, &[], payload)
    }

    fn hex(bytes: &[u8]) -> std::string::String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // RFC 7252 Appendix A, Figure 16. Header: Ver=1 (01), T=CON (00), TKL=0 → 0x40;
    // Code GET = 0x01; MID 0x7d34. Option: delta 11, length 11 → 0xbb, "temperature".
    // 4 + 1 + 11 = 16 bytes, as the figure's text says.
    const FIG16_REQ: &[u8] = b"\x40\x01\x7d\x34\xbbtemperature";
    // Response: Ver=1, T=ACK (10), TKL=0 → 0x60; Code 2.05 = 0x45; marker; "22.3 C":
    // 4 + 1 + 6 = 11 bytes.
    const FIG16_RES: &[u8] = b"\x60\x45\x7d\x34\xff22.3 C";
    // Figure 17: TKL=1 → 0x41 / 0x61, token 0x20: 17 and 12 bytes.
    const FIG17_REQ: &[u8] = b"\x41\x01\x7d\x35\x20\xbbtemperature";
    const FIG17_RES: &[u8] = b"\x61\x45\x7d\x35\x20\xff22.3 C";

    #[test]
    fn rfc7252_figure16_byte_exact() {
        assert_eq!(FIG16_REQ.len(), 16);
        assert_eq!(FIG16_RES.len(), 11);
        assert_eq!(
            get_request(0x7d34, &[], MessageType::Confirmable),
            FIG16_REQ
        );
        assert_eq!(
            response(
                MessageType::Acknowledgement,
                Code::CONTENT,
                0x7d34,
                &[],
                PAYLOAD
            ),
            FIG16_RES
        );

        let req = Message::parse(FIG16_REQ).unwrap();
        assert_eq!(req.ty(), MessageType::Confirmable);
        assert_eq!(req.code(), Code::GET);
        assert_eq!(req.message_id(), 0x7d34);
        assert_eq!(req.token(), b"");
        let opts: Vec<_> = req.options().collect();
        assert_eq!(
            opts,
            [CoapOption {
                number: OptionNumber::URI_PATH,
                value: TEMPERATURE
            }]
        );
        assert_eq!(req.payload(), b"");
        assert_eq!(req.as_bytes(), FIG16_REQ);
        assert!(!req.is_empty_message());

        let res = Message::parse(FIG16_RES).unwrap();
        assert_eq!(res.ty(), MessageType::Acknowledgement);
        assert_eq!(res.code(), Code::CONTENT);
        assert_eq!(res.code().0, 69);
        assert_eq!(res.options().count(), 0);
        assert_eq!(res.payload(), PAYLOAD);
    }

    #[test]
    fn rfc7252_figure17_byte_exact() {
        assert_eq!(FIG17_REQ.len(), 17);
        assert_eq!(FIG17_RES.len(), 12);
        assert_eq!(
            get_request(0x7d35, &[0x20], MessageType::Confirmable),
            FIG17_REQ
        );
        assert_eq!(
            response(
                MessageType::Acknowledgement,
                Code::CONTENT,
                0x7d35,
                &[0x20],
                PAYLOAD
            ),
            FIG17_RES
        );
        let req = Message::parse(FIG17_REQ).unwrap();
        assert_eq!(req.token(), &[0x20]);
        assert_eq!(req.option(OptionNumber::URI_PATH), Some(TEMPERATURE));
        let res = Message::parse(FIG17_RES).unwrap();
        assert_eq!(res.token(), &[0x20]);
        assert_eq!(res.payload(), PAYLOAD);
    }

    #[test]
    fn rfc7252_appendix_a_flows() {
        use MessageType::*;
        // Figures 18–23, hand-derived: first byte = 0x40 | type << 4 | TKL.
        let cases: &[(Vec<u8>, &[u8])] = &[
            // Figure 18/19: CON GET with token 0x31 / 0x42 and their ACK 2.05 responses.
            (
                get_request(0x7d36, &[0x31], Confirmable),
                b"\x41\x01\x7d\x36\x31\xbbtemperature",
            ),
            (
                response(Acknowledgement, Code::CONTENT, 0x7d37, &[0x42], PAYLOAD),
                b"\x61\x45\x7d\x37\x42\xff22.3 C",
            ),
            // Figure 20: empty ACK, separate CON 2.05, empty ACK from the client.
            (
                response(Acknowledgement, Code::EMPTY, 0x7d38, &[], &[]),
                b"\x60\x00\x7d\x38",
            ),
            (
                response(Confirmable, Code::CONTENT, 0xad7b, &[0x53], PAYLOAD),
                b"\x41\x45\xad\x7b\x53\xff22.3 C",
            ),
            (
                response(Acknowledgement, Code::EMPTY, 0xad7b, &[], &[]),
                b"\x60\x00\xad\x7b",
            ),
            // Figure 21: RST for the unexpected response.
            (
                response(Reset, Code::EMPTY, 0xad7c, &[], &[]),
                b"\x70\x00\xad\x7c",
            ),
            // Figure 22: NON GET and NON 2.05.
            (
                get_request(0x7d40, &[0x75], NonConfirmable),
                b"\x51\x01\x7d\x40\x75\xbbtemperature",
            ),
            (
                response(NonConfirmable, Code::CONTENT, 0xad7d, &[0x75], PAYLOAD),
                b"\x51\x45\xad\x7d\x75\xff22.3 C",
            ),
            // Figure 23: multicast NON GET, 2.05 from A and B, 4.04 from C (no payload).
            (
                get_request(0x7d41, &[0x86], NonConfirmable),
                b"\x51\x01\x7d\x41\x86\xbbtemperature",
            ),
            (
                response(NonConfirmable, Code::CONTENT, 0x01a0, &[0x86], b"20.9 C"),
                b"\x51\x45\x01\xa0\x86\xff20.9 C",
            ),
            (
                response(NonConfirmable, Code::NOT_FOUND, 0x952a, &[0x86], &[]),
                b"\x51\x84\x95\x2a\x86",
            ),
        ];
        for (encoded, expected) in cases {
            assert_eq!(hex(encoded), hex(expected));
            let m = Message::parse(expected).unwrap();
            assert_eq!(
                reencode(&m),
                *expected,
                "parse/encode round trip of {}",
                hex(expected)
            );
        }
        let rst = Message::parse(b"\x70\x00\xad\x7c").unwrap();
        assert!(rst.is_empty_message());
        assert_eq!(rst.ty(), MessageType::Reset);
    }

    /// Re-encodes a parsed message with the writer.
    fn reencode(m: &Message<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; m.as_bytes().len() + 16];
        let mut w =
            MessageWriter::new(&mut buf, m.ty(), m.code(), m.message_id(), m.token()).unwrap();
        for o in m.options() {
            w.option(o.number, o.value).unwrap();
        }
        let len = w.payload(m.payload()).unwrap();
        buf.truncate(len);
        buf
    }

    #[test]
    fn header_parse_without_body() {
        // A CON with a reserved TKL: the message fails, but the header is readable for RST.
        let bad = b"\x4f\x01\x12\x34";
        assert_eq!(
            Message::parse(bad).unwrap_err(),
            ParseError::InvalidTokenLength
        );
        let h = Header::parse(bad).unwrap();
        assert_eq!(h.version, 1);
        assert_eq!(h.ty, MessageType::Confirmable);
        assert_eq!(h.token_len_nibble, 15);
        assert_eq!(h.code, Code::GET);
        assert_eq!(h.message_id, 0x1234);
        assert_eq!(h.to_bytes(), *bad);
        assert_eq!(Header::parse(b"\x40\x01\x12"), None);
    }

    #[test]
    fn option_extended_delta_and_length_edges() {
        // Deltas/lengths 12 (nibble), 13 (1 ext byte, 0), 268 (1 ext byte, 255),
        // 269 (2 ext bytes, 0), 65804 (2 ext bytes, 0xffff; length only).
        let edge_lens = [0usize, 12, 13, 268, 269, 1000, 65804];
        for &len in &edge_lens {
            let value = vec![0xabu8; len];
            // Option 2048 (delta 2048 from 0) with this length.
            let msg = encode(
                MessageType::NonConfirmable,
                Code::POST,
                1,
                &[],
                &[(2048, &value)],
                b"x",
            );
            let expected_hdr = option_header_len(2048, len);
            assert_eq!(msg.len(), 4 + expected_hdr + len + 2);
            let m = Message::parse(&msg).unwrap();
            let o: Vec<_> = m.options().collect();
            assert_eq!(o.len(), 1);
            assert_eq!(o[0].number, OptionNumber(2048));
            assert_eq!(o[0].value.len(), len);
            assert_eq!(m.payload(), b"x");
        }
        // Exact header bytes for the edge values of the delta.
        let cases: &[(u16, usize, &[u8])] = &[
            (12, 12, &[0xcc]),
            (13, 13, &[0xdd, 0x00, 0x00]),
            (268, 268, &[0xdd, 0xff, 0xff]),
            (269, 269, &[0xee, 0x00, 0x00, 0x00, 0x00]),
            (65535, 65804, &[0xee, 0xfe, 0xf2, 0xff, 0xff]),
            (14, 0, &[0xd0, 0x01]),
            (0, 300, &[0x0e, 0x00, 0x1f]),
        ];
        for &(delta, len, bytes) in cases {
            let mut out = [0u8; 5];
            let n = encode_option_header(delta, len, &mut out).unwrap();
            assert_eq!(&out[..n], bytes, "delta {delta} len {len}");
            assert_eq!(option_header_len(delta, len), n);
        }
        assert_eq!(
            encode_option_header(0, 65805, &mut [0u8; 5]),
            Err(EncodeError::OptionTooLong)
        );
        assert_eq!(
            encode_option_header(269, 0, &mut [0u8; 2]),
            Err(EncodeError::BufferTooSmall)
        );
        // Highest option number, reached via a 14-nibble delta.
        let msg = encode(
            MessageType::Confirmable,
            Code::GET,
            1,
            &[],
            &[(65535, b"z")],
            &[],
        );
        assert_eq!(&msg[4..], &[0xe1, 0xfe, 0xf2, b'z']);
        let m = Message::parse(&msg).unwrap();
        assert_eq!(m.option(OptionNumber(65535)), Some(&b"z"[..]));
    }

    #[test]
    fn extended_tokens() {
        // RFC 8974 §2.1: TKL 13 → 1 byte (len - 13), TKL 14 → 2 bytes (len - 269).
        for (len, first, ext) in [
            (8usize, 0x48u8, &[][..]),
            (12, 0x4c, &[][..]),
            (13, 0x4d, &[0x00][..]),
            (268, 0x4d, &[0xff][..]),
            (269, 0x4e, &[0x00, 0x00][..]),
            (MAX_EXTENDED_TOKEN_LEN, 0x4e, &[0xff, 0xff][..]),
        ] {
            let token: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let msg = encode(
                MessageType::Confirmable,
                Code::GET,
                7,
                &token,
                &[(11, b"a")],
                b"p",
            );
            assert_eq!(msg[0], first);
            assert_eq!(&msg[4..4 + ext.len()], ext);
            assert_eq!(msg.len(), 4 + token_header_extra_len(len) + len + 2 + 2);
            let m = Message::parse(&msg).unwrap();
            assert_eq!(m.token(), &token[..]);
            assert_eq!(m.option(OptionNumber::URI_PATH), Some(&b"a"[..]));
            assert_eq!(m.payload(), b"p");
            if len > MAX_TOKEN_LEN {
                assert_eq!(
                    Message::parse_with_max_token(&msg, MAX_TOKEN_LEN).unwrap_err(),
                    ParseError::TokenTooLong {
                        len,
                        max: MAX_TOKEN_LEN
                    }
                );
            } else {
                assert!(Message::parse_with_max_token(&msg, MAX_TOKEN_LEN).is_ok());
            }
        }
        let long = vec![0u8; MAX_EXTENDED_TOKEN_LEN + 1];
        let mut buf = vec![0u8; long.len() + 16];
        assert_eq!(
            MessageWriter::new(&mut buf, MessageType::Confirmable, Code::GET, 0, &long).err(),
            Some(EncodeError::TokenTooLong)
        );
    }

    #[test]
    fn every_parse_error_is_reachable() {
        use ParseError::*;
        let cases: &[(&[u8], ParseError)] = &[
            (b"", Truncated),
            (b"\x40\x01\x00", Truncated),
            (b"\x42\x01\x00\x00\x01", Truncated), // TKL 2, one token byte
            (b"\x4d\x01\x00\x00", Truncated),     // TKL 13 without its extension byte
            (b"\x4e\x01\x00\x00\x00", Truncated), // TKL 14 with half its extension
            (b"\x4d\x01\x00\x00\x00", Truncated), // TKL 13 → 13 bytes, none present
            (b"\x00\x01\x00\x00", UnsupportedVersion(0)),
            (b"\x80\x01\x00\x00", UnsupportedVersion(2)),
            (b"\xc0\x01\x00\x00", UnsupportedVersion(3)),
            (b"\x4f\x01\x00\x00", InvalidTokenLength),
            (b"\x40\x01\x00\x00\xf0", InvalidOptionDelta),
            (b"\x40\x01\x00\x00\x0f", InvalidOptionLength),
            (b"\x40\x01\x00\x00\xdd", TruncatedOption), // delta 13 without extension
            (b"\x40\x01\x00\x00\x0e\x00", TruncatedOption), // length 14, half extension
            (b"\x40\x01\x00\x00\x03ab", TruncatedOption), // value runs past the end
            (b"\x40\x01\x00\x00\xe0\xfe\xf2\x10", OptionNumberOverflow), // 65535 + 1
            (b"\x40\x01\x00\x00\xff", EmptyPayload),
            (b"\x40\x01\x00\x00\x11a\xff", EmptyPayload),
            (b"\x41\x00\x00\x00\x01", EmptyMessageNotEmpty), // empty with token
            (b"\x60\x00\x00\x00\xff\x01", EmptyMessageNotEmpty), // empty with payload
            (b"\x60\x00\x00\x00\x11a", EmptyMessageNotEmpty), // empty with option
        ];
        for &(bytes, err) in cases {
            assert_eq!(Message::parse(bytes).unwrap_err(), err, "{}", hex(bytes));
            // Every error has a message.
            assert!(!format!("{err}").is_empty());
        }
        let token9 = b"\x49\x01\x00\x00123456789";
        assert_eq!(
            Message::parse_with_max_token(token9, 8).unwrap_err(),
            TokenTooLong { len: 9, max: 8 }
        );
        assert!(Message::parse(token9).is_ok()); // RFC 8974: TKL 9–12 are plain lengths
                                                 // 0xff inside an option value is not a payload marker (RFC 7252 §3 note).
        let m = Message::parse(b"\x40\x01\x00\x00\x02\xff\xff").unwrap();
        assert_eq!(m.option(OptionNumber(0)), Some(&[0xff, 0xff][..]));
        assert_eq!(m.payload(), b"");
    }

    #[test]
    fn round_trips() {
        use MessageType::*;
        let token = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let long_value = [b'q'; 300];
        type Case<'a> = (
            MessageType,
            Code,
            u16,
            &'a [u8],
            &'a [(u16, &'a [u8])],
            &'a [u8],
        );
        let messages: &[Case<'_>] = &[
            (Confirmable, Code::GET, 0, &[], &[], &[]),
            (
                Confirmable,
                Code::GET,
                0xffff,
                &token,
                &[
                    (3, b"example.net"),
                    (6, b""),
                    (11, b".well-known"),
                    (11, b"core"),
                    (15, b"rt=temp"),
                    (15, b"if=sensor"),
                    (23, b"\x02"),
                    (292, b"tag"),
                ],
                &[],
            ),
            (
                NonConfirmable,
                Code::PUT,
                42,
                &token[..3],
                &[(12, b"\x32"), (60, b"\x01\x00")],
                b"{}",
            ),
            (
                Acknowledgement,
                Code::CONTENT,
                1,
                &[9],
                &[(35, &long_value)],
                &[0xff, 0x00, 0xff],
            ),
            (Reset, Code::EMPTY, 77, &[], &[], &[]),
            (
                Confirmable,
                Code::new(7, 1),
                5,
                &[],
                &[(2, b"\x04\x00"), (4, b"")],
                &[],
            ),
        ];
        for &(ty, code, mid, token, options, payload) in messages {
            let bytes = encode(ty, code, mid, token, options, payload);
            let m = Message::parse(&bytes).unwrap();
            assert_eq!(m.ty(), ty);
            assert_eq!(m.code(), code);
            assert_eq!(m.message_id(), mid);
            assert_eq!(m.token(), token);
            let got: Vec<(u16, &[u8])> = m.options().map(|o| (o.number.0, o.value)).collect();
            assert_eq!(got, options);
            assert_eq!(m.payload(), payload);
            assert_eq!(reencode(&m), bytes);
        }
    }

    #[test]
    fn accessors() {
        let bytes = encode(
            MessageType::Confirmable,
            Code::GET,
            9,
            &[],
            &[
                (11, b"a"),
                (11, b"b"),
                (12, b"\x28"),
                (14, b"\x00\x00\x00\x3c"),
                (15, b"x"),
            ],
            &[],
        );
        let m = Message::parse(&bytes).unwrap();
        let paths: Vec<_> = m.option_values(OptionNumber::URI_PATH).collect();
        assert_eq!(paths, [&b"a"[..], &b"b"[..]]);
        assert_eq!(m.option(OptionNumber::URI_HOST), None);
        assert_eq!(m.content_format(), Some(ContentFormat::LINK_FORMAT));
        assert_eq!(m.option_uint(OptionNumber::MAX_AGE), Some(60));
        assert_eq!(m.options_bytes().len(), bytes.len() - 4);
        let first = m.options().next().unwrap();
        assert_eq!(first.value_str(), Some("a"));
        assert_eq!(m.header().message_id, 9);
    }

    #[test]
    fn writer_errors_do_not_write() {
        let mut buf = [0u8; 9];
        assert_eq!(
            MessageWriter::new(&mut buf, MessageType::Confirmable, Code::GET, 0, &[0; 6]).err(),
            Some(EncodeError::BufferTooSmall)
        );
        let mut w =
            MessageWriter::new(&mut buf, MessageType::Confirmable, Code::GET, 0, &[]).unwrap();
        w.option(OptionNumber(11), b"ab").unwrap();
        assert_eq!(w.written_len(), 7);
        assert_eq!(
            w.option(OptionNumber(3), b""),
            Err(EncodeError::OptionsOutOfOrder)
        );
        assert_eq!(
            w.option(OptionNumber(11), b"ab"),
            Err(EncodeError::BufferTooSmall)
        );
        assert_eq!(w.written_len(), 7);
        assert_eq!(w.last_option(), OptionNumber(11));
        w.option(OptionNumber(11), b"").unwrap();
        assert_eq!(w.option_uint(OptionNumber(12), 0), Ok(()));
        assert!(format!("{w:?}").contains("written: 9"));
        assert_eq!(w.payload(b"x"), Err(EncodeError::BufferTooSmall));

        let mut big = vec![0u8; 70_000];
        let mut w =
            MessageWriter::new(&mut big, MessageType::Confirmable, Code::GET, 0, &[]).unwrap();
        assert_eq!(
            w.option(OptionNumber(1), &vec![0; MAX_OPTION_VALUE_LEN + 1]),
            Err(EncodeError::OptionTooLong)
        );
        assert_eq!(w.payload(b""), Ok(4));
    }

    #[test]
    fn option_iter_new_checked_standalone() {
        let (iter, payload) = OptionIter::new_checked(b"\xb3foo\x03bar\xffdata").unwrap();
        let opts: Vec<_> = iter.clone().collect();
        assert_eq!(opts.len(), 2);
        assert_eq!(opts[0].number, OptionNumber(11));
        assert_eq!(opts[1].number, OptionNumber(11));
        assert_eq!(opts[1].value, b"bar");
        assert_eq!(payload, b"data");
        assert_eq!(iter.as_bytes(), b"\xb3foo\x03bar");
        let (iter, payload) = OptionIter::new_checked(b"").unwrap();
        assert_eq!(iter.count(), 0);
        assert_eq!(payload, b"");
        assert_eq!(OptionIter::empty().count(), 0);
        assert_eq!(
            OptionIter::new_checked(b"\xff").unwrap_err(),
            ParseError::EmptyPayload
        );
    }

    #[test]
    fn debug_dissection() {
        let m = Message::parse(FIG17_REQ).unwrap();
        let s = format!("{m:?}");
        assert!(s.contains("ty: Confirmable"), "{s}");
        assert!(s.contains("code: 0.01 GET"), "{s}");
        assert!(s.contains("mid: 0x7d35"), "{s}");
        assert!(s.contains("token: 0x20"), "{s}");
        assert!(s.contains("Uri-Path(11): \"temperature\""), "{s}");
        let bytes = encode(
            MessageType::Acknowledgement,
            Code::CONTENT,
            1,
            &[],
            &[(12, b"\x28"), (65000, b"\x01\x02")],
            &[0xff, 0xfe],
        );
        let s = format!("{:?}", Message::parse(&bytes).unwrap());
        assert!(
            s.contains("Content-Format(12): ContentFormat(40 application/link-format)"),
            "{s}"
        );
        assert!(s.contains("Option(65000): 0x0102"), "{s}");
        assert!(s.contains("payload: 2 bytes 0xfffe"), "{s}");
    }

    /// Tiny xorshift PRNG for deterministic fuzzing without dependencies.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    /// Checks the invariants of a successful parse; must never panic.
    fn check(bytes: &[u8]) {
        if let Ok(m) = Message::parse(bytes) {
            let _ = format!("{m:?}");
            let mut last = 0u16;
            for o in m.options() {
                assert!(o.number.0 >= last);
                last = o.number.0;
            }
            // The encoding has no redundancy (nibble/extension forms are unique and an
            // empty payload has no marker), so re-encoding gives the input back.
            assert_eq!(reencode(&m), bytes);
        }
        check_no_alloc(bytes);
    }

    /// The allocation-free part of [`check`], fast enough for exhaustive runs.
    fn check_no_alloc(bytes: &[u8]) {
        if let Ok(m) = Message::parse(bytes) {
            assert!(m.token().len() + m.options_bytes().len() + m.payload().len() <= bytes.len());
            for o in m.options() {
                assert!(o.value.len() <= bytes.len());
            }
        }
        let _ = Header::parse(bytes);
        if let Ok((iter, payload)) = OptionIter::new_checked(bytes) {
            let n = iter.count();
            assert!(n <= bytes.len() && payload.len() <= bytes.len());
        }
    }

    #[test]
    fn robustness_exhaustive_short_inputs() {
        // Every input of 0 to 3 bytes.
        check_no_alloc(&[]);
        for a in 0..=255u8 {
            check_no_alloc(&[a]);
            for b in 0..=255u8 {
                check_no_alloc(&[a, b]);
                for c in 0..=255u8 {
                    check_no_alloc(&[a, b, c]);
                }
            }
        }
    }

    #[test]
    fn robustness_exhaustive_headers_and_short_options() {
        // Every header followed by no bytes, and every 2-byte option area after a GET
        // header combined with option-relevant third bytes.
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                check(&[a, b, 0x12, 0x34]);
                for c in [0x00u8, 0x01, 0x0d, 0x0e, 0x0f, 0x10, 0xd0, 0xe0, 0xf0, 0xff] {
                    check(&[0x40, 0x01, 0x00, 0x00, a, b, c]);
                    check(&[0x41, 0x01, 0x00, 0x00, a, b, c]);
                }
            }
        }
    }

    #[test]
    fn robustness_mutations() {
        let seeds: Vec<Vec<u8>> = vec![
            FIG16_REQ.to_vec(),
            FIG17_RES.to_vec(),
            encode(
                MessageType::Confirmable,
                Code::POST,
                3,
                &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
                &[
                    (3, b"host"),
                    (11, b"p"),
                    (60, &[1; 20]),
                    (300, &[2; 280]),
                    (2053, b"\x08\x00"),
                ],
                b"payload",
            ),
        ];
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for i in 0..6000 {
            let mut m = seeds[i % seeds.len()].clone();
            let edits = 1 + rng.next() % 4;
            for _ in 0..edits {
                let r = rng.next();
                let pos = (r >> 8) as usize % (m.len() + 1);
                match r % 4 {
                    0 if pos < m.len() => m[pos] = (r >> 32) as u8,
                    1 if pos < m.len() => m[pos] ^= 1 << ((r >> 40) % 8),
                    2 => m.insert(pos, (r >> 24) as u8),
                    _ => m.truncate(pos),
                }
            }
            check(&m);
        }
    }
}
