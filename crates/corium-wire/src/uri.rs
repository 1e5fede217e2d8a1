//! CoAP URIs (RFC 7252 §6, RFC 3986; the reliable-transport schemes of RFC 8323 §8).
//!
//! [`Uri::parse`] performs the checks of RFC 7252 §6.4 (absolute URI, known scheme, no
//! fragment, non-empty host, valid port and percent-encoding) and borrows the raw
//! components; [`Uri::path_segments`], [`Uri::query_args`], [`Uri::uri_host_option`] and
//! [`Uri::uri_port_option`] give the option values of §6.4 steps 5–9 (still
//! percent-encoded: decode them with [`percent_decode`] or [`percent_decode_into`]).
//! [`write_uri`] composes a URI from option values (§6.5).

use core::fmt::{self, Write as _};
use core::net::{Ipv4Addr, Ipv6Addr};

/// A CoAP URI scheme (RFC 7252 §6.1–6.2, RFC 8323 §8).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `coap`: UDP (RFC 7252 §6.1).
    Coap,
    /// `coaps`: DTLS (RFC 7252 §6.2).
    Coaps,
    /// `coap+tcp`: TCP (RFC 8323 §8.1).
    CoapTcp,
    /// `coaps+tcp`: TLS (RFC 8323 §8.2).
    CoapsTcp,
    /// `coap+ws`: WebSocket (RFC 8323 §8.3).
    CoapWs,
    /// `coaps+ws`: secure WebSocket (RFC 8323 §8.4).
    CoapsWs,
}

impl Scheme {
    /// All schemes.
    pub const ALL: [Scheme; 6] = [
        Scheme::Coap,
        Scheme::Coaps,
        Scheme::CoapTcp,
        Scheme::CoapsTcp,
        Scheme::CoapWs,
        Scheme::CoapsWs,
    ];

    /// The scheme name in lowercase, e.g. `coap+tcp`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Coap => "coap",
            Scheme::Coaps => "coaps",
            Scheme::CoapTcp => "coap+tcp",
            Scheme::CoapsTcp => "coaps+tcp",
            Scheme::CoapWs => "coap+ws",
            Scheme::CoapsWs => "coaps+ws",
        }
    }

    /// Parses a scheme name, ASCII case-insensitively (RFC 3986 §3.1).
    pub fn parse(s: &str) -> Option<Scheme> {
        Scheme::ALL
            .into_iter()
            .find(|sch| sch.as_str().eq_ignore_ascii_case(s))
    }

    /// The default port: 5683 for `coap` and `coap+tcp`, 5684 for `coaps` and
    /// `coaps+tcp`, 80 for `coap+ws`, 443 for `coaps+ws` (RFC 7252 §6, RFC 8323 §8).
    pub const fn default_port(self) -> u16 {
        match self {
            Scheme::Coap | Scheme::CoapTcp => 5683,
            Scheme::Coaps | Scheme::CoapsTcp => 5684,
            Scheme::CoapWs => 80,
            Scheme::CoapsWs => 443,
        }
    }

    /// Secured by (D)TLS.
    pub const fn is_secure(self) -> bool {
        matches!(self, Scheme::Coaps | Scheme::CoapsTcp | Scheme::CoapsWs)
    }

    /// Carried over a reliable transport (TCP, TLS, WebSocket; RFC 8323).
    pub const fn is_reliable(self) -> bool {
        !matches!(self, Scheme::Coap | Scheme::Coaps)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host of a URI (RFC 3986 §3.2.2).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    /// An IPv4address.
    Ipv4(Ipv4Addr),
    /// An IP-literal with an IPv6 address and an optional zone identifier (RFC 6874; the
    /// raw zone after `%25`, still percent-encoded).
    Ipv6(Ipv6Addr, Option<&'a str>),
    /// A reg-name, raw: neither lowercased nor percent-decoded.
    Name(&'a str),
}

/// Prints the host as in a URI: `192.0.2.1`, `[2001:db8::1]`, `[fe80::1%25eth0]`, or
/// the raw reg-name.
impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a, None) => write!(f, "[{a}]"),
            Host::Ipv6(a, Some(zone)) => write!(f, "[{a}%25{zone}]"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// Why a string is not a usable CoAP URI (RFC 7252 §6.4 steps 1–4, RFC 3986).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UriError {
    /// No scheme: not an absolute URI (§6.4 step 1).
    NotAbsolute,
    /// A scheme other than the CoAP ones (§6.4 step 3).
    UnknownScheme,
    /// No authority, or an empty host (RFC 7252 §6.1).
    MissingHost,
    /// A malformed host: bad IP-literal, userinfo, or characters not allowed in a reg-name.
    InvalidHost,
    /// The port is not a decimal number up to 65535.
    InvalidPort,
    /// The URI has a fragment (§6.4 step 4).
    Fragment,
    /// A `%` not followed by two hexadecimal digits (RFC 3986 §2.1).
    InvalidPercentEncoding,
    /// A character not allowed in the path or query (RFC 3986 §3.3, §3.4).
    InvalidCharacter,
    /// The output buffer of [`percent_decode_into`] is too small.
    BufferTooSmall,
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UriError::NotAbsolute => "not an absolute URI",
            UriError::UnknownScheme => "not a CoAP URI scheme",
            UriError::MissingHost => "missing host",
            UriError::InvalidHost => "invalid host",
            UriError::InvalidPort => "invalid port",
            UriError::Fragment => "CoAP URIs must not have a fragment",
            UriError::InvalidPercentEncoding => "invalid percent-encoding",
            UriError::InvalidCharacter => "character not allowed in URI",
            UriError::BufferTooSmall => "output buffer too small",
        })
    }
}

impl core::error::Error for UriError {}

/// RFC 3986 §2.3 unreserved.
const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §2.2 sub-delims.
const fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// RFC 3986 §3.3 pchar (without pct-encoded).
const fn is_pchar(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || b == b':' || b == b'@'
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Checks that every byte is allowed or part of a valid percent-encoding.
fn validate(s: &str, allowed: impl Fn(u8) -> bool, bad: UriError) -> Result<(), UriError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            match (
                b.get(i + 1).copied().and_then(hex_val),
                b.get(i + 2).copied().and_then(hex_val),
            ) {
                (Some(_), Some(_)) => i += 3,
                _ => return Err(UriError::InvalidPercentEncoding),
            }
        } else if allowed(b[i]) {
            i += 1;
        } else {
            return Err(bad);
        }
    }
    Ok(())
}

/// RFC 3986 §3.2.2 IPv4address: four dec-octets without leading zeros.
fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for o in &mut octets {
        let p = parts.next()?.as_bytes();
        if p.is_empty() || p.len() > 3 || !p.iter().all(u8::is_ascii_digit) {
            return None;
        }
        if p.len() > 1 && p[0] == b'0' {
            return None;
        }
        let v = p.iter().fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'));
        *o = u8::try_from(v).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

fn parse_port(s: &str) -> Result<Option<u16>, UriError> {
    if s.is_empty() {
        // RFC 7252 §6.1: an empty port means the default port.
        return Ok(None);
    }
    let mut v: u32 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return Err(UriError::InvalidPort);
        }
        v = v * 10 + u32::from(b - b'0');
        if v > u32::from(u16::MAX) {
            return Err(UriError::InvalidPort);
        }
    }
    Ok(Some(v as u16))
}

fn parse_authority(authority: &str) -> Result<(Host<'_>, Option<u16>), UriError> {
    if authority.contains('@') {
        // CoAP URIs have no userinfo (RFC 7252 §6.1 ABNF).
        return Err(UriError::InvalidHost);
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let close = rest.find(']').ok_or(UriError::InvalidHost)?;
        let literal = &rest[..close];
        let after = &rest[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() => None,
            None => return Err(UriError::InvalidHost),
        };
        let (addr, zone) = match literal.find('%') {
            Some(i) => {
                // RFC 6874: ZoneID = 1*( unreserved / pct-encoded ), introduced by "%25".
                // A bare "%" (`[fe80::1%eth0]`, as people type it and RFC 6874 §4 lets
                // parsers accept) introduces it too.
                let raw = &literal[i..];
                let zone = match raw.strip_prefix("%25") {
                    Some(encoded) => encoded,
                    None => &raw[1..],
                };
                if zone.is_empty() {
                    return Err(UriError::InvalidHost);
                }
                validate(zone, is_unreserved, UriError::InvalidHost)?;
                (&literal[..i], Some(zone))
            }
            None => (literal, None),
        };
        // IPvFuture and anything that is not an IPv6 address is rejected here.
        let addr: Ipv6Addr = addr.parse().map_err(|_| UriError::InvalidHost)?;
        return Ok((Host::Ipv6(addr, zone), port));
    }
    let (host, port) = match authority.find(':') {
        Some(i) => (&authority[..i], parse_port(&authority[i + 1..])?),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(UriError::MissingHost);
    }
    if let Some(a) = parse_ipv4(host) {
        return Ok((Host::Ipv4(a), port));
    }
    validate(
        host,
        |b| is_unreserved(b) || is_sub_delim(b),
        UriError::InvalidHost,
    )?;
    Ok((Host::Name(host), port))
}

/// A parsed CoAP URI, borrowing its components from the input (RFC 7252 §6).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Uri<'a> {
    /// The scheme.
    pub scheme: Scheme,
    /// The host.
    pub host: Host<'a>,
    /// The port, if given and non-empty.
    pub port: Option<u16>,
    /// The raw (percent-encoded) path: empty or starting with `/`.
    pub path: &'a str,
    /// The raw (percent-encoded) query without the `?`, if there is a `?`.
    pub query: Option<&'a str>,
}

impl<'a> Uri<'a> {
    /// Parses an absolute CoAP URI, following RFC 7252 §6.4 steps 1–4 and the syntax of
    /// §6.1 (`scheme "://" host [":" port] path-abempty ["?" query]`).
    ///
    /// The checks, in order: a syntactically valid scheme ([`NotAbsolute`](UriError::NotAbsolute)),
    /// a CoAP scheme ([`UnknownScheme`](UriError::UnknownScheme)), no `#`
    /// ([`Fragment`](UriError::Fragment)), `//` and a non-empty host
    /// ([`MissingHost`](UriError::MissingHost)), the host and port, then the characters
    /// and percent-encodings of path and query.
    pub fn parse(s: &'a str) -> Result<Uri<'a>, UriError> {
        let colon = s.find(':').ok_or(UriError::NotAbsolute)?;
        let scheme_str = &s[..colon];
        let sb = scheme_str.as_bytes();
        // RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
        if sb.is_empty()
            || !sb[0].is_ascii_alphabetic()
            || !sb
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err(UriError::NotAbsolute);
        }
        let scheme = Scheme::parse(scheme_str).ok_or(UriError::UnknownScheme)?;
        let rest = &s[colon + 1..];
        if rest.contains('#') {
            return Err(UriError::Fragment);
        }
        let rest = rest.strip_prefix("//").ok_or(UriError::MissingHost)?;
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(auth_end);
        let (host, port) = parse_authority(authority)?;
        let (path, query) = match rest.find('?') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        validate(
            path,
            |b| is_pchar(b) || b == b'/',
            UriError::InvalidCharacter,
        )?;
        if let Some(q) = query {
            validate(
                q,
                |b| is_pchar(b) || b == b'/' || b == b'?',
                UriError::InvalidCharacter,
            )?;
        }
        Ok(Uri {
            scheme,
            host,
            port,
            path,
            query,
        })
    }

    /// The port, or the scheme's default port (RFC 7252 §6.4 step 6).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(self.scheme.default_port())
    }

    /// The raw Uri-Path option values (RFC 7252 §6.4 step 8): none for a path of `""` or
    /// `"/"`; otherwise each segment between slashes, so `/a/` gives `a` then `""`.
    /// Percent-decode each with [`percent_decode`] / [`percent_decode_into`].
    pub fn path_segments(&self) -> Segments<'a> {
        let rest = match self.path {
            "" | "/" => None,
            p => Some(p.strip_prefix('/').unwrap_or(p)),
        };
        Segments { rest, sep: '/' }
    }

    /// The raw Uri-Query option values (RFC 7252 §6.4 step 9): the query split on `&`.
    /// An empty query (`coap://h/?`) gives one empty argument; no `?` gives none.
    pub fn query_args(&self) -> Segments<'a> {
        Segments {
            rest: self.query,
            sep: '&',
        }
    }

    /// The raw reg-name for the Uri-Host option (RFC 7252 §6.4 step 5); `None` for IP
    /// literals and IPv4 addresses. The option value proper is this text lowercased and
    /// percent-decoded: use [`uri_host_option_into`](Self::uri_host_option_into), or this
    /// value directly when it has no uppercase letters and no `%`.
    pub fn uri_host_option(&self) -> Option<&'a str> {
        match self.host {
            Host::Name(n) => Some(n),
            _ => None,
        }
    }

    /// Writes the Uri-Host option value into `out`: the reg-name converted to ASCII
    /// lowercase, then percent-decoded (RFC 7252 §6.4 step 5). `Ok(None)` for IP hosts.
    pub fn uri_host_option_into<'b>(
        &self,
        out: &'b mut [u8],
    ) -> Result<Option<&'b [u8]>, UriError> {
        let Some(name) = self.uri_host_option() else {
            return Ok(None);
        };
        // Lowercase the literal characters first, then decode: decoded bytes are kept
        // as they are ("%41" stays "A").
        let raw = name.as_bytes();
        let (mut i, mut n) = (0, 0);
        while i < raw.len() {
            let escaped = match raw[i..] {
                [b'%', h, l, ..] => hex_val(h).zip(hex_val(l)).map(|(h, l)| (h << 4) | l),
                _ => None,
            };
            let byte = match escaped {
                Some(b) => {
                    i += 3;
                    b
                }
                None => {
                    i += 1;
                    raw[i - 1].to_ascii_lowercase()
                }
            };
            *out.get_mut(n).ok_or(UriError::BufferTooSmall)? = byte;
            n += 1;
        }
        Ok(Some(&out[..n]))
    }

    /// The Uri-Port option value (RFC 7252 §6.4 steps 6–7): the port when one is given
    /// and differs from the scheme's default. (Step 7 compares with the request's
    /// destination port; this assumes the destination is the URI's port.)
    pub fn uri_port_option(&self) -> Option<u16> {
        self.port.filter(|&p| p != self.scheme.default_port())
    }
}

/// Prints the URI from its components: `scheme://host[:port]path[?query]`.
impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        f.write_str(self.path)?;
        if let Some(q) = self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

/// Iterator over raw path segments or query arguments of a [`Uri`].
#[derive(Clone, Debug)]
pub struct Segments<'a> {
    rest: Option<&'a str>,
    sep: char,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match rest.find(self.sep) {
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                Some(&rest[..i])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

impl core::iter::FusedIterator for Segments<'_> {}

/// Iterator over the bytes of a percent-decoded string (RFC 3986 §2.1).
///
/// Meant for validated input; a `%` that does not start a valid escape is yielded as is.
#[derive(Clone, Debug)]
pub struct PercentDecode<'a> {
    bytes: &'a [u8],
}

impl Iterator for PercentDecode<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        if first == b'%' {
            if let [h, l, tail @ ..] = rest {
                if let (Some(h), Some(l)) = (hex_val(*h), hex_val(*l)) {
                    self.bytes = tail;
                    return Some((h << 4) | l);
                }
            }
        }
        self.bytes = rest;
        Some(first)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.bytes.len().div_ceil(3), Some(self.bytes.len()))
    }
}

impl core::iter::FusedIterator for PercentDecode<'_> {}

/// Percent-decodes `raw` lazily (RFC 3986 §2.1); see [`PercentDecode`].
pub fn percent_decode(raw: &str) -> PercentDecode<'_> {
    PercentDecode {
        bytes: raw.as_bytes(),
    }
}

/// Whether every `%` in `raw` is followed by two hexadecimal digits.
pub fn is_valid_percent_encoding(raw: &str) -> bool {
    validate(raw, |_| true, UriError::InvalidCharacter).is_ok()
}

/// Percent-decodes `raw` into `out` and returns the decoded bytes.
///
/// Errors: [`UriError::InvalidPercentEncoding`] for a malformed escape,
/// [`UriError::BufferTooSmall`] if `out` cannot hold the result.
pub fn percent_decode_into<'b>(raw: &str, out: &'b mut [u8]) -> Result<&'b [u8], UriError> {
    if !is_valid_percent_encoding(raw) {
        return Err(UriError::InvalidPercentEncoding);
    }
    let mut n = 0;
    for b in percent_decode(raw) {
        *out.get_mut(n).ok_or(UriError::BufferTooSmall)? = b;
        n += 1;
    }
    Ok(&out[..n])
}

/// The URI component a value is encoded for; decides which characters stay literal
/// (RFC 7252 §6.5).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum UriComponent {
    /// A reg-name: unreserved and sub-delims stay (RFC 3986 §3.2.2).
    Host,
    /// A path segment: unreserved, sub-delims, `:` and `@` stay (§6.5 step 6).
    PathSegment,
    /// A query argument: unreserved, sub-delims except `&`, `:`, `@`, `/` and `?` stay
    /// (§6.5 step 8).
    QueryArg,
}

impl UriComponent {
    /// Whether `b` may appear literally in this component.
    pub const fn keeps(self, b: u8) -> bool {
        match self {
            UriComponent::Host => is_unreserved(b) || is_sub_delim(b),
            UriComponent::PathSegment => is_pchar(b),
            UriComponent::QueryArg => (is_pchar(b) && b != b'&') || b == b'/' || b == b'?',
        }
    }
}

/// Displays `bytes` percent-encoded for `component`, with uppercase hex digits
/// (RFC 7252 §6.5).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PercentEncoded<'a> {
    /// The raw (decoded) bytes, e.g. an option value.
    pub bytes: &'a [u8],
    /// The component whose rules apply.
    pub component: UriComponent,
}

impl fmt::Display for PercentEncoded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut start = 0;
        for (i, &b) in self.bytes.iter().enumerate() {
            if !self.component.keeps(b) {
                // Kept bytes are ASCII, so the run before `i` is valid UTF-8.
                if let Ok(run) = core::str::from_utf8(&self.bytes[start..i]) {
                    f.write_str(run)?;
                }
                f.write_char('%')?;
                f.write_char(char::from(HEX[usize::from(b >> 4)]))?;
                f.write_char(char::from(HEX[usize::from(b & 0x0f)]))?;
                start = i + 1;
            }
        }
        if let Ok(run) = core::str::from_utf8(&self.bytes[start..]) {
            f.write_str(run)?;
        }
        Ok(())
    }
}

/// Composes a URI from option values (RFC 7252 §6.5).
///
/// `host` is written as given (already formatted: a lowercase reg-name, percent-encoded
/// with [`UriComponent::Host`] if needed, an IPv4 address or a bracketed IPv6 literal —
/// see [`Host`]'s `Display`). `port` is written unless it is the scheme's default.
/// Each path segment is prefixed with `/` (a lone `/` if there are none); query arguments
/// follow `?` and are separated by `&`. Segments and arguments are the decoded option
/// values and are percent-encoded here.
pub fn write_uri<'p, 'q, W, P, Q>(
    w: &mut W,
    scheme: Scheme,
    host: &str,
    port: Option<u16>,
    path_segments: P,
    query_args: Q,
) -> fmt::Result
where
    W: fmt::Write,
    P: IntoIterator<Item = &'p [u8]>,
    Q: IntoIterator<Item = &'q [u8]>,
{
    write!(w, "{scheme}://{host}")?;
    if let Some(p) = port.filter(|&p| p != scheme.default_port()) {
        write!(w, ":{p}")?;
    }
    let mut any = false;
    for seg in path_segments {
        any = true;
        let enc = PercentEncoded {
            bytes: seg,
            component: UriComponent::PathSegment,
        };
        write!(w, "/{enc}")?;
    }
    if !any {
        w.write_char('/')?;
    }
    for (i, arg) in query_args.into_iter().enumerate() {
        let enc = PercentEncoded {
            bytes: arg,
            component: UriComponent::QueryArg,
        };
        write!(w, "{}{enc}", if i == 0 { '?' } else { '&' })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn decoded(raw: &str) -> Vec<u8> {
        percent_decode(raw).collect()
    }

    fn compose(
        scheme: Scheme,
        host: &str,
        port: Option<u16>,
        path: &[&[u8]],
        query: &[&[u8]],
    ) -> String {
        let mut s = String::new();
        write_uri(
            &mut s,
            scheme,
            host,
            port,
            path.iter().copied(),
            query.iter().copied(),
        )
        .unwrap();
        s
    }

    #[test]
    fn schemes() {
        for s in Scheme::ALL {
            assert_eq!(Scheme::parse(s.as_str()), Some(s));
        }
        assert_eq!(Scheme::parse("COAPS+TCP"), Some(Scheme::CoapsTcp));
        assert_eq!(Scheme::parse("http"), None);
        assert_eq!(Scheme::Coap.default_port(), 5683);
        assert_eq!(Scheme::Coaps.default_port(), 5684);
        assert_eq!(Scheme::CoapTcp.default_port(), 5683);
        assert_eq!(Scheme::CoapsTcp.default_port(), 5684);
        assert_eq!(Scheme::CoapWs.default_port(), 80);
        assert_eq!(Scheme::CoapsWs.default_port(), 443);
        assert!(Scheme::Coaps.is_secure() && !Scheme::Coap.is_secure());
        assert!(Scheme::CoapWs.is_reliable() && !Scheme::Coaps.is_reliable());
    }

    /// RFC 7252 §6.3: three equivalent URIs produce the same options.
    #[test]
    fn rfc7252_equivalent_uris() {
        for s in [
            "coap://example.com:5683/~sensors/temp.xml",
            "coap://EXAMPLE.com/%7Esensors/temp.xml",
            "coap://EXAMPLE.com:/%7esensors/temp.xml",
        ] {
            let u = Uri::parse(s).unwrap();
            assert_eq!(u.scheme, Scheme::Coap);
            let mut buf = [0u8; 64];
            assert_eq!(
                u.uri_host_option_into(&mut buf).unwrap(),
                Some(&b"example.com"[..]),
                "{s}"
            );
            assert_eq!(u.uri_port_option(), None, "{s}");
            assert_eq!(u.port_or_default(), 5683);
            let segs: Vec<Vec<u8>> = u.path_segments().map(decoded).collect();
            assert_eq!(segs, [&b"~sensors"[..], &b"temp.xml"[..]], "{s}");
            assert_eq!(u.query_args().count(), 0);
            // And they compose back to the normal form (§6.3, §6.5).
            let seg_refs: Vec<&[u8]> = segs.iter().map(|s| &s[..]).collect();
            assert_eq!(
                compose(u.scheme, "example.com", u.port, &seg_refs, &[]),
                "coap://example.com/~sensors/temp.xml"
            );
        }
    }

    #[test]
    fn decomposition_steps() {
        let u = Uri::parse("coaps://h.example:61616/a/b%2Fc/?x=1&y=%26&&").unwrap();
        assert_eq!(u.scheme, Scheme::Coaps);
        assert_eq!(u.host, Host::Name("h.example"));
        assert_eq!(u.port, Some(61616));
        assert_eq!(u.uri_port_option(), Some(61616));
        let segs: Vec<_> = u.path_segments().collect();
        assert_eq!(segs, ["a", "b%2Fc", ""]);
        assert_eq!(decoded(segs[1]), b"b/c");
        let args: Vec<_> = u.query_args().collect();
        assert_eq!(args, ["x=1", "y=%26", "", ""]);
        assert_eq!(decoded(args[1]), b"y=&");

        // corr-clar on §6.4 step 8: "/" and "" give no Uri-Path; "//" gives two empty ones.
        let count = |s: &str| Uri::parse(s).unwrap().path_segments().count();
        assert_eq!(count("coap://h"), 0);
        assert_eq!(count("coap://h/"), 0);
        assert_eq!(count("coap://h//"), 2);
        assert_eq!(count("coap://h///"), 3);
        assert_eq!(count("coap://h/foo"), 1);
        assert_eq!(count("coap://h/foo/"), 2);
        fn q(s: &str) -> Vec<&str> {
            Uri::parse(s).unwrap().query_args().collect()
        }
        assert_eq!(q("coap://h/?"), [""]);
        assert_eq!(q("coap://h?"), [""]);
        assert!(q("coap://h/").is_empty());

        let u = Uri::parse("coap://[2001:db8::2:1]/").unwrap();
        assert_eq!(u.host, Host::Ipv6("2001:db8::2:1".parse().unwrap(), None));
        assert_eq!(u.uri_host_option(), None);
        assert_eq!(u.uri_host_option_into(&mut [0u8; 4]), Ok(None));
        let u = Uri::parse("coap://198.51.100.1:5684/x").unwrap();
        assert_eq!(u.host, Host::Ipv4(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!(u.uri_port_option(), Some(5684));
        let u = Uri::parse("coaps://198.51.100.1:5684/x").unwrap();
        assert_eq!(u.uri_port_option(), None);
        let u = Uri::parse("coap://[fe80::1%25eth0]:1234").unwrap();
        assert_eq!(u.host, Host::Ipv6("fe80::1".parse().unwrap(), Some("eth0")));
        assert_eq!(u.port, Some(1234));
        assert_eq!(u.path, "");
        assert_eq!(std::format!("{u}"), "coap://[fe80::1%25eth0]:1234");
        // RFC 6874 §4: a bare "%" is accepted too, and printed in the standard form.
        let u = Uri::parse("coap://[ff02::fd%2]/.well-known/core").unwrap();
        assert_eq!(u.host, Host::Ipv6("ff02::fd".parse().unwrap(), Some("2")));
        assert_eq!(
            std::format!("{u}"),
            "coap://[ff02::fd%252]/.well-known/core"
        );
        // Not dotted-quad by RFC 3986 rules: a reg-name.
        assert_eq!(
            Uri::parse("coap://01.2.3.4").unwrap().host,
            Host::Name("01.2.3.4")
        );
        assert_eq!(
            Uri::parse("coap://256.2.3.4").unwrap().host,
            Host::Name("256.2.3.4")
        );
        // Host lowercasing happens before decoding: %41 stays "A".
        let u = Uri::parse("coap://Ab%41.Example").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            u.uri_host_option_into(&mut buf).unwrap(),
            Some(&b"abA.example"[..])
        );
        assert_eq!(
            u.uri_host_option_into(&mut [0u8; 3]),
            Err(UriError::BufferTooSmall)
        );
        let u = Uri::parse("coap+ws://example.org/.well-known/coap?q").unwrap();
        assert_eq!(u.scheme, Scheme::CoapWs);
        assert_eq!(u.port_or_default(), 80);
        assert_eq!(u.query, Some("q"));
    }

    #[test]
    fn parse_errors() {
        use UriError::*;
        let cases: &[(&str, UriError)] = &[
            ("", NotAbsolute),
            ("/path", NotAbsolute),
            ("example.com/x", NotAbsolute),
            ("1coap://h/", NotAbsolute),
            ("://h", NotAbsolute),
            ("http://example.com/", UnknownScheme),
            ("coap://h/a#frag", Fragment),
            ("coap://h#", Fragment),
            ("coap:h/a", MissingHost),
            ("coap:///a", MissingHost),
            ("coap://:5683/a", MissingHost),
            ("coap://user@h/", InvalidHost),
            ("coap://[::1/", InvalidHost),
            ("coap://[::1]x/", InvalidHost),
            ("coap://[v1.x]/", InvalidHost),
            ("coap://[1.2.3.4]/", InvalidHost),
            ("coap://[fe80::1%]/", InvalidHost),
            ("coap://[fe80::1%25]/", InvalidHost),
            ("coap://h^st/", InvalidHost),
            ("coap://h:65536/", InvalidPort),
            ("coap://h:99999999999999999999/", InvalidPort),
            ("coap://h:80a/", InvalidPort),
            ("coap://h:-1/", InvalidPort),
            ("coap://h/%", InvalidPercentEncoding),
            ("coap://h/%4", InvalidPercentEncoding),
            ("coap://h/%zz", InvalidPercentEncoding),
            ("coap://h%2/", InvalidPercentEncoding),
            ("coap://h/?a=%g0", InvalidPercentEncoding),
            ("coap://h/a b", InvalidCharacter),
            ("coap://h/a\"b", InvalidCharacter),
            ("coap://h/ä", InvalidCharacter),
            ("coap://h/?a[0]=1", InvalidCharacter),
        ];
        for &(s, e) in cases {
            assert_eq!(Uri::parse(s), Err(e), "{s}");
            assert!(!std::format!("{e}").is_empty());
        }
        assert_eq!(Uri::parse("coap://h:/").unwrap().port, None);
        assert_eq!(Uri::parse("coap://h:00080/").unwrap().port, Some(80));
        assert_eq!(Uri::parse("coap://h:0").unwrap().port, Some(0));
    }

    #[test]
    fn percent_coding() {
        assert_eq!(decoded("%7e%7E%41b"), b"~~Ab");
        assert_eq!(decoded("100%"), b"100%"); // invalid escapes pass through
        assert_eq!(decoded("%e3%81%93"), "こ".as_bytes());
        assert!(is_valid_percent_encoding("a%20b%FF"));
        assert!(!is_valid_percent_encoding("a%2"));
        assert!(!is_valid_percent_encoding("%G0"));
        let mut out = [0u8; 8];
        assert_eq!(percent_decode_into("a%2Fb", &mut out), Ok(&b"a/b"[..]));
        assert_eq!(
            percent_decode_into("%2", &mut out),
            Err(UriError::InvalidPercentEncoding)
        );
        assert_eq!(
            percent_decode_into("abcdefghi", &mut out),
            Err(UriError::BufferTooSmall)
        );
        let enc = |b: &[u8], c| {
            std::format!(
                "{}",
                PercentEncoded {
                    bytes: b,
                    component: c
                }
            )
        };
        use UriComponent::*;
        assert_eq!(enc(b"a b/c:@&?", PathSegment), "a%20b%2Fc:@&%3F");
        assert_eq!(enc(b"a b/c:@&?", QueryArg), "a%20b/c:@%26?");
        assert_eq!(enc(b"Ex:ample", Host), "Ex%3Aample");
        assert_eq!(enc(&[0xe3, 0x81, 0x93, b'~'], PathSegment), "%E3%81%93~");
        assert_eq!(enc(b"", QueryArg), "");
        // Encoding then decoding is the identity for every byte.
        let all: Vec<u8> = (0..=255).collect();
        for c in [Host, PathSegment, QueryArg] {
            assert_eq!(decoded(&enc(&all, c)), all);
        }
    }

    /// RFC 7252 Appendix B: composing URIs from options.
    #[test]
    fn rfc7252_appendix_b() {
        let v6: Host<'_> = Host::Ipv6("2001:db8::2:1".parse().unwrap(), None);
        let v6 = std::format!("{v6}");
        assert_eq!(
            compose(Scheme::Coap, &v6, Some(5683), &[], &[]),
            "coap://[2001:db8::2:1]/"
        );
        assert_eq!(
            compose(Scheme::Coap, "example.net", Some(5683), &[], &[]),
            "coap://example.net/"
        );
        assert_eq!(
            compose(
                Scheme::Coap,
                "example.net",
                Some(5683),
                &[b".well-known", b"core"],
                &[]
            ),
            "coap://example.net/.well-known/core"
        );
        let konnichiwa = "こんにちは".as_bytes();
        assert_eq!(
            konnichiwa,
            b"\xE3\x81\x93\xE3\x82\x93\xE3\x81\xAB\xE3\x81\xA1\xE3\x81\xAF"
        );
        assert_eq!(
            compose(
                Scheme::Coap,
                "xn--18j4d.example",
                Some(5683),
                &[konnichiwa],
                &[]
            ),
            "coap://xn--18j4d.example/%E3%81%93%E3%82%93%E3%81%AB%E3%81%A1%E3%81%AF"
        );
        // The RFC prints "?%2F%2F&?%26" for the query, but §6.5 step 8 keeps "/" literal;
        // we follow the normative steps.
        let composed = compose(
            Scheme::Coap,
            "198.51.100.1",
            Some(61616),
            &[b"", b"/", b"", b""],
            &[b"//", b"?&"],
        );
        assert_eq!(composed, "coap://198.51.100.1:61616//%2F//?//&?%26");
        // Decomposing the result gives the options back (§6.4).
        let u = Uri::parse(&composed).unwrap();
        let segs: Vec<Vec<u8>> = u.path_segments().map(decoded).collect();
        assert_eq!(segs, [&b""[..], b"/", b"", b""]);
        let args: Vec<Vec<u8>> = u.query_args().map(decoded).collect();
        assert_eq!(args, [&b"//"[..], b"?&"]);
        assert_eq!(u.uri_port_option(), Some(61616));
        assert_eq!(u.uri_host_option(), None);
    }

    #[test]
    fn robustness_mutations() {
        // Mutated URIs never panic; accepted ones print back to an equal parse.
        let seeds = [
            "coap://example.com:5683/~sensors/temp.xml?a=1&b",
            "coaps+tcp://[fe80::1%25eth0]:1/%E3%81%93/?x",
            "coap://198.51.100.1:61616//%2F//?//&?%26",
        ];
        let alphabet = b":/?#[]@%25AaZz09.-_~!$&'()*+,;= \"\x7f";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..4000 {
            let mut s: Vec<u8> = seeds[i % seeds.len()].bytes().collect();
            for _ in 0..1 + rnd() % 3 {
                let r = rnd();
                let pos = (r >> 8) as usize % (s.len() + 1);
                let c = alphabet[(r >> 32) as usize % alphabet.len()];
                match r % 3 {
                    0 if pos < s.len() => s[pos] = c,
                    1 => s.insert(pos, c),
                    _ => s.truncate(pos),
                }
            }
            let Ok(text) = std::str::from_utf8(&s) else {
                continue;
            };
            if let Ok(u) = Uri::parse(text) {
                let printed = std::format!("{u}");
                assert_eq!(Uri::parse(&printed), Ok(u), "{text} -> {printed}");
                let _ = u
                    .path_segments()
                    .map(|p| percent_decode(p).count())
                    .sum::<usize>();
                let _ = u.query_args().count();
                let _ = u.uri_host_option_into(&mut [0u8; 8]);
            }
        }
    }
}
