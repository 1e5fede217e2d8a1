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

/// Options kept inside [`Options`] itself, without an allocation: up to this many…
const INLINE_OPTIONS: usize = 4;
/// …whose values take up to this many bytes together (Uri-Path `test`, a
/// Content-Format, an Observe, a short ETag: the options of a typical small request or
/// response).
const INLINE_OPTION_BYTES: usize = 32;

/// The options of a message, kept sorted by option number; options with the same number
/// keep the order they were added in (RFC 7252 §5.4.5: repeated options are ordered).
///
/// A few short options are stored inline (no heap allocation, so the server's plain GET
/// path allocates nothing for them); more, or longer ones, move to the heap.
#[derive(Clone)]
pub struct Options {
    repr: OptionsRepr,
}

#[derive(Clone)]
enum OptionsRepr {
    /// `slots[..count]` in order; each names `(number, start, len)` of its value in
    /// `bytes[..used]`. Values of removed options stay behind in `bytes` until it is
    /// full, when everything moves to the heap.
    Inline {
        count: u8,
        used: u8,
        slots: [(OptionNumber, u8, u8); INLINE_OPTIONS],
        bytes: [u8; INLINE_OPTION_BYTES],
    },
    Heap(Vec<(OptionNumber, Vec<u8>)>),
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

impl PartialEq for Options {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Options {}

impl Options {
    /// No options.
    pub const fn new() -> Options {
        Options {
            repr: OptionsRepr::Inline {
                count: 0,
                used: 0,
                slots: [(OptionNumber(0), 0, 0); INLINE_OPTIONS],
                bytes: [0; INLINE_OPTION_BYTES],
            },
        }
    }

    /// The options as `(number, value)` pairs on the heap, leaving the inline form.
    fn spill(&mut self) -> &mut Vec<(OptionNumber, Vec<u8>)> {
        if let OptionsRepr::Inline { .. } = self.repr {
            let heap: Vec<(OptionNumber, Vec<u8>)> =
                self.iter().map(|(n, v)| (n, v.to_vec())).collect();
            self.repr = OptionsRepr::Heap(heap);
        }
        match &mut self.repr {
            OptionsRepr::Heap(entries) => entries,
            OptionsRepr::Inline { .. } => unreachable!("spilled above"),
        }
    }

    /// Inserts `(number, value)` at index `at` of the ordered options.
    fn insert_at(&mut self, at: usize, number: OptionNumber, value: &[u8]) {
        if let OptionsRepr::Inline {
            count,
            used,
            slots,
            bytes,
        } = &mut self.repr
        {
            let n = usize::from(*count);
            let start = usize::from(*used);
            if n < INLINE_OPTIONS && value.len() <= INLINE_OPTION_BYTES - start {
                bytes[start..start + value.len()].copy_from_slice(value);
                slots.copy_within(at..n, at + 1);
                // Both fit in a u8: INLINE_OPTION_BYTES < 256.
                slots[at] = (number, start as u8, value.len() as u8);
                *count += 1;
                *used += value.len() as u8;
                return;
            }
        }
        self.spill().insert(at, (number, value.to_vec()));
    }

    /// Adds an option after any others with the same number.
    pub fn push(&mut self, number: OptionNumber, value: impl Into<Vec<u8>>) {
        let at = self.numbers().take_while(|n| *n <= number).count();
        match &mut self.repr {
            OptionsRepr::Heap(entries) => entries.insert(at, (number, value.into())),
            OptionsRepr::Inline { .. } => self.insert_at(at, number, &value.into()),
        }
    }

    /// Adds an option after any others with the same number, copying `value` (no
    /// allocation while the options fit inline).
    pub fn push_slice(&mut self, number: OptionNumber, value: &[u8]) {
        let at = self.numbers().take_while(|n| *n <= number).count();
        self.insert_at(at, number, value);
    }

    /// Adds an option whose value is a uint (RFC 7252 §3.2, minimal length).
    pub fn push_uint(&mut self, number: OptionNumber, value: u32) {
        let mut buf = [0u8; 4];
        let bytes = encode_uint(value, &mut buf);
        self.push_slice(number, bytes);
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
        match &mut self.repr {
            OptionsRepr::Inline { count, slots, .. } => {
                let mut kept = 0;
                for i in 0..usize::from(*count) {
                    if slots[i].0 != number {
                        slots[kept] = slots[i];
                        kept += 1;
                    }
                }
                *count = kept as u8;
            }
            OptionsRepr::Heap(entries) => entries.retain(|(n, _)| *n != number),
        }
    }

    /// The option numbers in order.
    fn numbers(&self) -> impl Iterator<Item = OptionNumber> + '_ {
        self.iter().map(|(n, _)| n)
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
        self.iter()
            .skip_while(move |(n, _)| *n < number)
            .take_while(move |(n, _)| *n == number)
            .map(|(_, v)| v)
    }

    /// Whether an option with this number is present.
    pub fn contains(&self, number: OptionNumber) -> bool {
        self.get(number).is_some()
    }

    /// Every option in order.
    pub fn iter(&self) -> impl Iterator<Item = (OptionNumber, &[u8])> + '_ {
        let (inline, heap) = match &self.repr {
            OptionsRepr::Inline {
                count,
                slots,
                bytes,
                ..
            } => (
                Some(slots[..usize::from(*count)].iter().map(|&(n, start, len)| {
                    let start = usize::from(start);
                    (n, &bytes[start..start + usize::from(len)])
                })),
                None,
            ),
            OptionsRepr::Heap(entries) => {
                (None, Some(entries.iter().map(|(n, v)| (*n, v.as_slice()))))
            }
        };
        inline
            .into_iter()
            .flatten()
            .chain(heap.into_iter().flatten())
    }

    /// Number of options.
    pub fn len(&self) -> usize {
        match &self.repr {
            OptionsRepr::Inline { count, .. } => usize::from(*count),
            OptionsRepr::Heap(entries) => entries.len(),
        }
    }

    /// Whether there are no options.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends an option known to sort after every option present (used by the decoder,
    /// whose input is already ordered).
    pub(crate) fn push_ordered(&mut self, number: OptionNumber, value: &[u8]) {
        debug_assert!(self.numbers().last().is_none_or(|n| n <= number));
        let at = self.len();
        self.insert_at(at, number, value);
    }

    /// Bytes these options take on the wire (RFC 7252 §3.1).
    pub(crate) fn encoded_len(&self) -> usize {
        let mut prev = 0u16;
        let mut total = 0;
        for (n, v) in self.iter() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn all(o: &Options) -> Vec<(u16, Vec<u8>)> {
        o.iter().map(|(n, v)| (n.0, v.to_vec())).collect()
    }

    #[test]
    fn options_stay_ordered_inline_and_on_the_heap() {
        let mut o = Options::new();
        o.push(OptionNumber::URI_PATH, b"b".to_vec());
        o.push_slice(OptionNumber::URI_HOST, b"h");
        o.push(OptionNumber::URI_PATH, b"c".to_vec());
        o.push_uint(OptionNumber::CONTENT_FORMAT, 0);
        assert!(matches!(o.repr, OptionsRepr::Inline { .. }));
        let inline = all(&o);
        assert_eq!(
            inline,
            vec![
                (3, b"h".to_vec()),
                (11, b"b".to_vec()),
                (11, b"c".to_vec()),
                (12, vec![]),
            ]
        );
        // A fifth option, or a long value, moves everything to the heap in order.
        o.push(OptionNumber::URI_PATH, b"d".to_vec());
        assert!(matches!(o.repr, OptionsRepr::Heap(_)));
        assert_eq!(
            o.get_all(OptionNumber::URI_PATH).collect::<Vec<_>>(),
            [b"b", b"c", b"d"]
        );
        let mut long = Options::new();
        long.push_slice(OptionNumber::URI_PATH, &[7; INLINE_OPTION_BYTES + 1]);
        assert!(matches!(long.repr, OptionsRepr::Heap(_)));
        assert_eq!(long.get(OptionNumber::URI_PATH), Some(&[7; 33][..]));
    }

    #[test]
    fn options_remove_set_and_compare_across_forms() {
        let mut a = Options::new();
        a.push_uint(OptionNumber::OBSERVE, 5);
        a.push_slice(OptionNumber::URI_PATH, b"x");
        a.set_uint(OptionNumber::OBSERVE, 7);
        a.remove(OptionNumber::URI_PATH);
        assert_eq!(all(&a), vec![(6, vec![7])]);
        assert_eq!(a.len(), 1);
        // Removed values keep their room until the inline bytes run out.
        for _ in 0..40 {
            a.set(OptionNumber::ETAG, b"12345678".to_vec());
        }
        assert_eq!(a.get(OptionNumber::ETAG), Some(&b"12345678"[..]));
        assert_eq!(a.len(), 2);
        let mut b = Options::new();
        b.push(OptionNumber::ETAG, b"12345678".to_vec());
        b.push_uint(OptionNumber::OBSERVE, 7);
        assert_eq!(a, b);
        b.remove(OptionNumber::ETAG);
        assert_ne!(a, b);
        assert!(Options::default().is_empty());
        assert_eq!(Options::new(), Options::default());
    }
}
