//! Option numbers, the option registry and option value helpers.
//!
//! [`OptionNumber`] is an open newtype over the 16-bit option number (RFC 7252 §5.4.6,
//! §12.2): its properties (critical, unsafe, NoCacheKey) follow from the number alone, so
//! they are known for unregistered options too. [`OPTION_REGISTRY`] holds the format,
//! length range, repeatability and default of the registered options (RFC 7252 §5.10
//! Table 4, and the tables of RFC 7641, RFC 7959, RFC 7967, RFC 8613, RFC 8768, RFC 9175,
//! RFC 9177, RFC 9668).

use core::fmt;

/// A CoAP option number (RFC 7252 §3.1, §5.4.6, §12.2).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OptionNumber(pub u16);

impl OptionNumber {
    /// 1 If-Match (RFC 7252 §5.10.8.1).
    pub const IF_MATCH: OptionNumber = OptionNumber(1);
    /// 3 Uri-Host (RFC 7252 §5.10.1).
    pub const URI_HOST: OptionNumber = OptionNumber(3);
    /// 4 ETag (RFC 7252 §5.10.6).
    pub const ETAG: OptionNumber = OptionNumber(4);
    /// 5 If-None-Match (RFC 7252 §5.10.8.2).
    pub const IF_NONE_MATCH: OptionNumber = OptionNumber(5);
    /// 6 Observe (RFC 7641 §2).
    pub const OBSERVE: OptionNumber = OptionNumber(6);
    /// 7 Uri-Port (RFC 7252 §5.10.1).
    pub const URI_PORT: OptionNumber = OptionNumber(7);
    /// 8 Location-Path (RFC 7252 §5.10.7).
    pub const LOCATION_PATH: OptionNumber = OptionNumber(8);
    /// 9 OSCORE (RFC 8613 §2).
    pub const OSCORE: OptionNumber = OptionNumber(9);
    /// 11 Uri-Path (RFC 7252 §5.10.1).
    pub const URI_PATH: OptionNumber = OptionNumber(11);
    /// 12 Content-Format (RFC 7252 §5.10.3).
    pub const CONTENT_FORMAT: OptionNumber = OptionNumber(12);
    /// 14 Max-Age (RFC 7252 §5.10.5).
    pub const MAX_AGE: OptionNumber = OptionNumber(14);
    /// 15 Uri-Query (RFC 7252 §5.10.1).
    pub const URI_QUERY: OptionNumber = OptionNumber(15);
    /// 16 Hop-Limit (RFC 8768 §3).
    pub const HOP_LIMIT: OptionNumber = OptionNumber(16);
    /// 17 Accept (RFC 7252 §5.10.4).
    pub const ACCEPT: OptionNumber = OptionNumber(17);
    /// 19 Q-Block1 (RFC 9177 §4).
    pub const Q_BLOCK1: OptionNumber = OptionNumber(19);
    /// 20 Location-Query (RFC 7252 §5.10.7).
    pub const LOCATION_QUERY: OptionNumber = OptionNumber(20);
    /// 21 EDHOC (RFC 9668 §3.1).
    pub const EDHOC: OptionNumber = OptionNumber(21);
    /// 23 Block2 (RFC 7959 §2.1).
    pub const BLOCK2: OptionNumber = OptionNumber(23);
    /// 27 Block1 (RFC 7959 §2.1).
    pub const BLOCK1: OptionNumber = OptionNumber(27);
    /// 28 Size2 (RFC 7959 §4).
    pub const SIZE2: OptionNumber = OptionNumber(28);
    /// 31 Q-Block2 (RFC 9177 §4).
    pub const Q_BLOCK2: OptionNumber = OptionNumber(31);
    /// 35 Proxy-Uri (RFC 7252 §5.10.2).
    pub const PROXY_URI: OptionNumber = OptionNumber(35);
    /// 39 Proxy-Scheme (RFC 7252 §5.10.2).
    pub const PROXY_SCHEME: OptionNumber = OptionNumber(39);
    /// 60 Size1 (RFC 7252 §5.10.9, RFC 7959 §4).
    pub const SIZE1: OptionNumber = OptionNumber(60);
    /// 252 Echo (RFC 9175 §2.2.1).
    pub const ECHO: OptionNumber = OptionNumber(252);
    /// 258 No-Response (RFC 7967 §2).
    pub const NO_RESPONSE: OptionNumber = OptionNumber(258);
    /// 292 Request-Tag (RFC 9175 §3.2.1).
    pub const REQUEST_TAG: OptionNumber = OptionNumber(292);
    /// 2049 OCF-Accept-Content-Format-Version (OCF Core Specification).
    pub const OCF_ACCEPT_CONTENT_FORMAT_VERSION: OptionNumber = OptionNumber(2049);
    /// 2053 OCF-Content-Format-Version (OCF Core Specification).
    pub const OCF_CONTENT_FORMAT_VERSION: OptionNumber = OptionNumber(2053);

    /// Critical (odd number): an unrecognised critical option makes the message fail
    /// (RFC 7252 §5.4.1, §5.4.6).
    pub const fn is_critical(self) -> bool {
        self.0 & 0x01 != 0
    }

    /// Elective (even number): an unrecognised elective option is ignored (RFC 7252 §5.4.1).
    pub const fn is_elective(self) -> bool {
        !self.is_critical()
    }

    /// Unsafe to forward by a proxy that does not understand it (RFC 7252 §5.4.2, §5.4.6).
    pub const fn is_unsafe(self) -> bool {
        self.0 & 0x02 != 0
    }

    /// Safe to forward (the complement of [`is_unsafe`](Self::is_unsafe)).
    pub const fn is_safe_to_forward(self) -> bool {
        !self.is_unsafe()
    }

    /// NoCacheKey: `(n & 0x1e) == 0x1c` (RFC 7252 §5.4.6 Figure 11). Only meaningful for
    /// Safe-to-Forward options.
    pub const fn is_no_cache_key(self) -> bool {
        (self.0 & 0x1e) == 0x1c
    }

    /// Part of the Cache-Key: Unsafe options, and Safe-to-Forward options without the
    /// NoCacheKey pattern (RFC 7252 §5.4.2, §5.6).
    pub const fn is_cache_key(self) -> bool {
        self.is_unsafe() || !self.is_no_cache_key()
    }

    /// The registered name, e.g. "Uri-Path".
    pub fn name(self) -> Option<&'static str> {
        self.info().map(|i| i.name)
    }

    /// Looks up a registered option by name (ASCII case-insensitive), e.g. "uri-path".
    /// A decimal number ("2048") is also accepted and gives that number.
    pub fn from_name(name: &str) -> Option<OptionNumber> {
        if let Some(info) = OPTION_REGISTRY
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(name))
        {
            return Some(info.number);
        }
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
            return name.parse().ok().map(OptionNumber);
        }
        None
    }

    /// The registry entry of this option, if registered.
    pub fn info(self) -> Option<&'static OptionInfo> {
        OPTION_REGISTRY.iter().find(|i| i.number == self)
    }

    /// Whether a value of `len` bytes is within the registered length range
    /// (RFC 7252 §5.4.3). Always true for unregistered options.
    pub fn check_length(self, len: usize) -> bool {
        match self.info() {
            Some(i) => len >= usize::from(i.min_len) && len <= usize::from(i.max_len),
            None => true,
        }
    }

    /// Whether the option may occur more than once (RFC 7252 §5.4.5). Unregistered options
    /// are reported as not repeatable.
    pub fn is_repeatable(self) -> bool {
        self.info().is_some_and(|i| i.repeatable)
    }
}

impl From<u16> for OptionNumber {
    fn from(value: u16) -> Self {
        OptionNumber(value)
    }
}

impl From<OptionNumber> for u16 {
    fn from(value: OptionNumber) -> Self {
        value.0
    }
}

/// Prints `Name(number)`, e.g. `Uri-Path(11)`, or `Option(number)` when unregistered.
impl fmt::Debug for OptionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}({})", self.0),
            None => write!(f, "Option({})", self.0),
        }
    }
}

/// Prints the registered name, or the decimal number when unregistered.
impl fmt::Display for OptionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// The value format of an option (RFC 7252 §3.2).
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum OptionFormat {
    /// A zero-length value.
    Empty,
    /// An opaque byte sequence.
    Opaque,
    /// A non-negative integer in network byte order, minimal length (RFC 7252 §3.2).
    Uint,
    /// A UTF-8 string in Net-Unicode form (RFC 7252 §3.2).
    String,
}

/// One entry of the option registry (RFC 7252 §5.10 Table 4 and later RFCs).
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct OptionInfo {
    /// The option number.
    pub number: OptionNumber,
    /// The registered name, e.g. "Uri-Path".
    pub name: &'static str,
    /// The value format.
    pub format: OptionFormat,
    /// The minimum value length in bytes.
    pub min_len: u16,
    /// The maximum value length in bytes.
    pub max_len: u16,
    /// Whether the option may occur more than once (RFC 7252 §5.4.5).
    pub repeatable: bool,
    /// The default value of a uint option, assumed when the option is absent
    /// (RFC 7252 §5.4.4). Options whose default depends on context (Uri-Host, Uri-Port)
    /// have `None`.
    pub default: Option<u32>,
}

const fn entry(
    number: u16,
    name: &'static str,
    format: OptionFormat,
    min_len: u16,
    max_len: u16,
    repeatable: bool,
    default: Option<u32>,
) -> OptionInfo {
    OptionInfo {
        number: OptionNumber(number),
        name,
        format,
        min_len,
        max_len,
        repeatable,
        default,
    }
}

use OptionFormat::{Empty, Opaque, String as Str, Uint};

/// The registered CoAP options, sorted by number.
///
/// Sources: RFC 7252 §5.10 Table 4; RFC 7641 §2 (Observe); RFC 7959 §2.1, §4 (Block1,
/// Block2, Size2); RFC 7967 §2 (No-Response); RFC 8613 §2 (OSCORE); RFC 8768 §3
/// (Hop-Limit); RFC 9175 §2.2.1, §3.2.1 (Echo, Request-Tag); RFC 9177 §4 (Q-Block1,
/// Q-Block2); RFC 9668 §3.1 (EDHOC); the OCF Core Specification (OCF versions).
pub static OPTION_REGISTRY: &[OptionInfo] = &[
    entry(1, "If-Match", Opaque, 0, 8, true, None),
    entry(3, "Uri-Host", Str, 1, 255, false, None),
    entry(4, "ETag", Opaque, 1, 8, true, None),
    entry(5, "If-None-Match", Empty, 0, 0, false, None),
    entry(6, "Observe", Uint, 0, 3, false, None),
    entry(7, "Uri-Port", Uint, 0, 2, false, None),
    entry(8, "Location-Path", Str, 0, 255, true, None),
    entry(9, "OSCORE", Opaque, 0, 255, false, None),
    entry(11, "Uri-Path", Str, 0, 255, true, None),
    entry(12, "Content-Format", Uint, 0, 2, false, None),
    entry(14, "Max-Age", Uint, 0, 4, false, Some(60)),
    entry(15, "Uri-Query", Str, 0, 255, true, None),
    entry(16, "Hop-Limit", Uint, 1, 1, false, Some(16)),
    entry(17, "Accept", Uint, 0, 2, false, None),
    entry(19, "Q-Block1", Uint, 0, 3, false, None),
    entry(20, "Location-Query", Str, 0, 255, true, None),
    entry(21, "EDHOC", Empty, 0, 0, false, None),
    entry(23, "Block2", Uint, 0, 3, false, None),
    entry(27, "Block1", Uint, 0, 3, false, None),
    entry(28, "Size2", Uint, 0, 4, false, None),
    entry(31, "Q-Block2", Uint, 0, 3, true, None),
    entry(35, "Proxy-Uri", Str, 1, 1034, false, None),
    entry(39, "Proxy-Scheme", Str, 1, 255, false, None),
    entry(60, "Size1", Uint, 0, 4, false, None),
    entry(252, "Echo", Opaque, 1, 40, false, None),
    entry(258, "No-Response", Uint, 0, 1, false, Some(0)),
    entry(292, "Request-Tag", Opaque, 0, 8, true, None),
    entry(
        2049,
        "OCF-Accept-Content-Format-Version",
        Uint,
        0,
        2,
        false,
        None,
    ),
    entry(2053, "OCF-Content-Format-Version", Uint, 0, 2, false, None),
];

/// Decodes a uint option value (RFC 7252 §3.2): big-endian, the empty value is 0, leading
/// zero bytes are accepted. `None` if longer than 4 bytes.
pub fn decode_uint(bytes: &[u8]) -> Option<u32> {
    if bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}

/// Encodes `value` as a minimal uint option value into `buf` and returns the used tail
/// of it (RFC 7252 §3.2): 0 is the empty slice, 1 is `[1]`, 256 is `[1, 0]`.
pub fn encode_uint(value: u32, buf: &mut [u8; 4]) -> &[u8] {
    *buf = value.to_be_bytes();
    &buf[4 - uint_len(value)..]
}

/// The length of the minimal uint encoding of `value` (0 to 4 bytes, RFC 7252 §3.2).
pub const fn uint_len(value: u32) -> usize {
    4 - (value.leading_zeros() / 8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn properties_from_number() {
        // RFC 7252 §5.10 Table 4: C, U, N columns.
        let table: &[(u16, bool, bool, bool)] = &[
            (1, true, false, false),
            (3, true, true, false),
            (4, false, false, false),
            (5, true, false, false),
            (7, true, true, false),
            (8, false, false, false),
            (11, true, true, false),
            (12, false, false, false),
            (14, false, true, false),
            (15, true, true, false),
            (17, true, false, false),
            (20, false, false, false),
            (35, true, true, false),
            (39, true, true, false),
            (60, false, false, true),
        ];
        for &(n, c, u, nck) in table {
            let o = OptionNumber(n);
            assert_eq!(o.is_critical(), c, "{n}");
            assert_eq!(o.is_elective(), !c, "{n}");
            assert_eq!(o.is_unsafe(), u, "{n}");
            if !u {
                assert_eq!(o.is_no_cache_key(), nck, "{n}");
                assert_eq!(o.is_cache_key(), !nck, "{n}");
            }
        }
        assert!(OptionNumber::SIZE2.is_no_cache_key());
        assert!(OptionNumber::ECHO.is_no_cache_key()); // RFC 9175 §2.2.1: N
        assert!(OptionNumber::REQUEST_TAG.is_cache_key()); // RFC 9175 §3.2.1: no N
        assert!(OptionNumber::EDHOC.is_critical() && OptionNumber::EDHOC.is_safe_to_forward());
        assert!(OptionNumber::OBSERVE.is_unsafe() && OptionNumber::OBSERVE.is_elective());
        assert!(OptionNumber::BLOCK2.is_critical() && OptionNumber::BLOCK2.is_unsafe());
        assert!(OptionNumber::NO_RESPONSE.is_unsafe() && !OptionNumber::NO_RESPONSE.is_critical());
    }

    #[test]
    fn registry_is_sorted_and_consistent() {
        for w in OPTION_REGISTRY.windows(2) {
            assert!(w[0].number < w[1].number);
        }
        for i in OPTION_REGISTRY {
            assert!(i.min_len <= i.max_len);
            assert_eq!(OptionNumber::from_name(i.name), Some(i.number));
            assert_eq!(i.number.info(), Some(i));
            if i.format == OptionFormat::Uint {
                assert!(i.max_len <= 4);
            }
        }
    }

    #[test]
    fn names() {
        assert_eq!(OptionNumber::URI_PATH.name(), Some("Uri-Path"));
        assert_eq!(
            OptionNumber::from_name("uri-path"),
            Some(OptionNumber::URI_PATH)
        );
        assert_eq!(
            OptionNumber::from_name("CONTENT-FORMAT"),
            Some(OptionNumber(12))
        );
        assert_eq!(OptionNumber::from_name("65000"), Some(OptionNumber(65000)));
        assert_eq!(OptionNumber::from_name("65536"), None);
        assert_eq!(OptionNumber::from_name("Uri Path"), None);
        assert_eq!(OptionNumber::from_name(""), None);
        assert_eq!(OptionNumber(2).name(), None);
        assert_eq!(format!("{:?}", OptionNumber::URI_PATH), "Uri-Path(11)");
        assert_eq!(format!("{:?}", OptionNumber(65000)), "Option(65000)");
        assert_eq!(format!("{}", OptionNumber::ETAG), "ETag");
        assert_eq!(format!("{}", OptionNumber(65001)), "65001");
    }

    #[test]
    fn lengths_and_defaults() {
        assert!(OptionNumber::URI_HOST.check_length(1));
        assert!(!OptionNumber::URI_HOST.check_length(0));
        assert!(!OptionNumber::URI_HOST.check_length(256));
        assert!(OptionNumber::PROXY_URI.check_length(1034));
        assert!(!OptionNumber::PROXY_URI.check_length(1035));
        assert!(!OptionNumber::ETAG.check_length(9));
        assert!(OptionNumber::IF_NONE_MATCH.check_length(0));
        assert!(!OptionNumber::IF_NONE_MATCH.check_length(1));
        assert!(!OptionNumber::ECHO.check_length(41));
        assert!(OptionNumber(65000).check_length(100_000));
        assert_eq!(OptionNumber::MAX_AGE.info().unwrap().default, Some(60));
        assert_eq!(OptionNumber::URI_PORT.info().unwrap().default, None);
        assert!(OptionNumber::URI_PATH.is_repeatable());
        assert!(!OptionNumber::URI_HOST.is_repeatable());
        assert!(!OptionNumber(65000).is_repeatable());
    }

    #[test]
    fn uint_codec() {
        let mut buf = [0u8; 4];
        assert_eq!(encode_uint(0, &mut buf), &[] as &[u8]);
        assert_eq!(encode_uint(1, &mut buf), &[1]);
        assert_eq!(encode_uint(255, &mut buf), &[255]);
        assert_eq!(encode_uint(256, &mut buf), &[1, 0]);
        assert_eq!(encode_uint(0x0001_0000, &mut buf), &[1, 0, 0]);
        assert_eq!(encode_uint(u32::MAX, &mut buf), &[255; 4]);
        for v in [
            0u32,
            1,
            12,
            255,
            256,
            65535,
            65536,
            0xff_ffff,
            0x100_0000,
            u32::MAX,
        ] {
            let mut b = [0u8; 4];
            let e = encode_uint(v, &mut b);
            assert_eq!(e.len(), uint_len(v));
            assert_eq!(decode_uint(e), Some(v));
        }
        assert_eq!(decode_uint(&[]), Some(0));
        assert_eq!(decode_uint(&[0, 0, 1]), Some(1)); // leading zeros accepted
        assert_eq!(decode_uint(&[0, 0, 0, 0, 1]), None);
    }
}
