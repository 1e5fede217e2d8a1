//! Owned CoAP messages as the application sees them: [`Request`] and [`Response`] carry a
//! code, options and a payload; message type, message ID and token stay in the endpoint
//! (the lesson of `coap-message`: transport detail is not the application's business).

use alloc::vec::Vec;
use core::fmt;

use corium_wire::{decode_uint, encode_uint, Code, ContentFormat, OptionNumber};

/// A token (RFC 7252 §5.3.1), up to 8 bytes inline; longer extended tokens (RFC 8974) are
/// kept on the heap.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(TokenRepr);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TokenRepr {
    Inline { len: u8, bytes: [u8; 8] },
    Heap(alloc::boxed::Box<[u8]>),
}

impl Token {
    /// The empty token.
    pub const EMPTY: Token = Token(TokenRepr::Inline {
        len: 0,
        bytes: [0; 8],
    });

    /// A token with these bytes.
    pub fn new(bytes: &[u8]) -> Token {
        if bytes.len() <= 8 {
            let mut inline = [0u8; 8];
            inline[..bytes.len()].copy_from_slice(bytes);
            Token(TokenRepr::Inline {
                len: bytes.len() as u8,
                bytes: inline,
            })
        } else {
            Token(TokenRepr::Heap(bytes.into()))
        }
    }

    /// The token's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            TokenRepr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            TokenRepr::Heap(b) => b,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the token is empty.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The options of a message, kept sorted by option number; options with the same number
/// keep the order they were added in (RFC 7252 §5.4.5: repeated options are ordered).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Options {
    entries: Vec<(OptionNumber, Vec<u8>)>,
}

impl Options {
    /// No options.
    pub const fn new() -> Options {
        Options {
            entries: Vec::new(),
        }
    }

    /// Adds an option after any others with the same number.
    pub fn push(&mut self, number: OptionNumber, value: impl Into<Vec<u8>>) {
        let at = self.entries.partition_point(|(n, _)| *n <= number);
        self.entries.insert(at, (number, value.into()));
    }

    /// Adds an option whose value is a uint (RFC 7252 §3.2, minimal length).
    pub fn push_uint(&mut self, number: OptionNumber, value: u32) {
        let mut buf = [0u8; 4];
        let bytes = encode_uint(value, &mut buf).to_vec();
        self.push(number, bytes);
    }

    /// Replaces every option with this number by one with `value`.
    pub fn set(&mut self, number: OptionNumber, value: impl Into<Vec<u8>>) {
        self.remove(number);
        self.push(number, value);
    }

    /// Replaces every option with this number by one with the uint `value`.
    pub fn set_uint(&mut self, number: OptionNumber, value: u32) {
        self.remove(number);
        self.push_uint(number, value);
    }

    /// Removes every option with this number.
    pub fn remove(&mut self, number: OptionNumber) {
        self.entries.retain(|(n, _)| *n != number);
    }

    /// The value of the first option with this number.
    pub fn get(&self, number: OptionNumber) -> Option<&[u8]> {
        self.get_all(number).next()
    }

    /// The value of the first option with this number, read as a uint.
    pub fn get_uint(&self, number: OptionNumber) -> Option<u32> {
        self.get(number).and_then(decode_uint)
    }

    /// The values of every option with this number, in order.
    pub fn get_all(&self, number: OptionNumber) -> impl Iterator<Item = &[u8]> + '_ {
        let start = self.entries.partition_point(|(n, _)| *n < number);
        self.entries[start..]
            .iter()
            .take_while(move |(n, _)| *n == number)
            .map(|(_, v)| v.as_slice())
    }

    /// Whether an option with this number is present.
    pub fn contains(&self, number: OptionNumber) -> bool {
        self.get(number).is_some()
    }

    /// Every option in order.
    pub fn iter(&self) -> impl Iterator<Item = (OptionNumber, &[u8])> + '_ {
        self.entries.iter().map(|(n, v)| (*n, v.as_slice()))
    }

    /// Number of options.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no options.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends an option known to sort after every option present (used by the decoder,
    /// whose input is already ordered).
    pub(crate) fn push_ordered(&mut self, number: OptionNumber, value: &[u8]) {
        debug_assert!(self.entries.last().is_none_or(|(n, _)| *n <= number));
        self.entries.push((number, value.to_vec()));
    }

    /// Bytes these options take on the wire (RFC 7252 §3.1).
    pub(crate) fn encoded_len(&self) -> usize {
        let mut prev = 0u16;
        let mut total = 0;
        for (n, v) in &self.entries {
            total += corium_wire::option_header_len(n.0 - prev, v.len()) + v.len();
            prev = n.0;
        }
        total
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (n, v) in self.iter() {
            list.entry(&(n, BytesDebug(v)));
        }
        list.finish()
    }
}

struct BytesDebug<'a>(&'a [u8]);

impl fmt::Debug for BytesDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(self.0) {
            Ok(s) if !s.chars().any(char::is_control) => write!(f, "{s:?}"),
            _ => {
                f.write_str("0x")?;
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// Accessors shared by requests and responses, over their options.
macro_rules! common_accessors {
    () => {
        /// The Content-Format option (RFC 7252 §5.10.3).
        pub fn content_format(&self) -> Option<ContentFormat> {
            self.options
                .get_uint(OptionNumber::CONTENT_FORMAT)
                .and_then(|v| u16::try_from(v).ok())
                .map(ContentFormat)
        }

        /// Sets the Content-Format option.
        pub fn set_content_format(&mut self, format: ContentFormat) {
            self.options
                .set_uint(OptionNumber::CONTENT_FORMAT, u32::from(format.0));
        }

        /// The payload as UTF-8 text, if it is.
        pub fn payload_str(&self) -> Option<&str> {
            core::str::from_utf8(&self.payload).ok()
        }
    };
}

/// A request as the application sends or receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method code (0.01–0.31).
    pub method: Code,
    /// The options, including Uri-Path and Uri-Query.
    pub options: Options,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Request {
    /// A request with this method, no options and no payload.
    pub fn new(method: Code) -> Request {
        Request {
            method,
            options: Options::new(),
            payload: Vec::new(),
        }
    }

    common_accessors!();

    /// The Uri-Path segments (RFC 7252 §5.10.1), decoded.
    pub fn path_segments(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.options.get_all(OptionNumber::URI_PATH)
    }

    /// The Uri-Query arguments, decoded.
    pub fn query_args(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.options.get_all(OptionNumber::URI_QUERY)
    }

    /// The Accept option (RFC 7252 §5.10.4).
    pub fn accept(&self) -> Option<ContentFormat> {
        self.options
            .get_uint(OptionNumber::ACCEPT)
            .and_then(|v| u16::try_from(v).ok())
            .map(ContentFormat)
    }

    /// Sets the Uri-Path options from a `/`-separated path; a leading `/` is ignored and
    /// `"/"` or `""` yields no option (RFC 7252 §6.4 step 8).
    pub fn set_path(&mut self, path: &str) {
        self.options.remove(OptionNumber::URI_PATH);
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        if trimmed.is_empty() {
            return;
        }
        for segment in trimmed.split('/') {
            self.options
                .push(OptionNumber::URI_PATH, segment.as_bytes().to_vec());
        }
    }
}

/// A response as the application sends or receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The response code (2.xx–5.xx).
    pub code: Code,
    /// The options.
    pub options: Options,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Response {
    /// A response with this code, no options and no payload.
    pub fn new(code: Code) -> Response {
        Response {
            code,
            options: Options::new(),
            payload: Vec::new(),
        }
    }

    /// A response with this code and payload.
    pub fn with_payload(code: Code, payload: impl Into<Vec<u8>>) -> Response {
        Response {
            code,
            options: Options::new(),
            payload: payload.into(),
        }
    }

    common_accessors!();

    /// The Max-Age option (RFC 7252 §5.10.5), defaulting to 60 s when absent.
    pub fn max_age(&self) -> u32 {
        self.options.get_uint(OptionNumber::MAX_AGE).unwrap_or(60)
    }
}
