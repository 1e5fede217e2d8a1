//! URI references as the RD needs them: resolution against a registration's base URI
//! (RFC 3986 §5.2, as RFC 9176 §5 and Appendix B require), validation of `base` values
//! (RFC 9176 §5), and the default base built from a requester's address (RFC 9176 §5,
//! RFC 7252 §6.5).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// The default CoAP port (RFC 7252 §6.1), left out of default base URIs.
const COAP_DEFAULT_PORT: u16 = 5683;

/// The components of a URI reference (RFC 3986 Appendix B).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Parts<'a> {
    /// The scheme, without `:`.
    pub scheme: Option<&'a str>,
    /// The authority, without `//`.
    pub authority: Option<&'a str>,
    /// The path (possibly empty).
    pub path: &'a str,
    /// The query, without `?`.
    pub query: Option<&'a str>,
    /// The fragment, without `#`.
    pub fragment: Option<&'a str>,
}

/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )` (RFC 3986 §3.1).
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Splits a URI reference into its components, like the regular expression of RFC 3986
/// Appendix B (a scheme is only recognised when it is syntactically one, so that a
/// relative path such as `1:x` is not mistaken for a URI).
pub(crate) fn split(reference: &str) -> Parts<'_> {
    let mut rest = reference;
    let mut scheme = None;
    if let Some(colon) = rest.find(':') {
        let candidate = &rest[..colon];
        if !candidate.contains(['/', '?', '#']) && is_scheme(candidate) {
            scheme = Some(candidate);
            rest = &rest[colon + 1..];
        }
    }
    let mut fragment = None;
    if let Some(hash) = rest.find('#') {
        fragment = Some(&rest[hash + 1..]);
        rest = &rest[..hash];
    }
    let mut query = None;
    if let Some(q) = rest.find('?') {
        query = Some(&rest[q + 1..]);
        rest = &rest[..q];
    }
    let mut authority = None;
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find('/').unwrap_or(after.len());
        authority = Some(&after[..end]);
        rest = &after[end..];
    }
    Parts {
        scheme,
        authority,
        path: rest,
        query,
        fragment,
    }
}

/// RFC 3986 §5.2.4: removes `.` and `..` segments.
pub(crate) fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut output = String::with_capacity(path.len());
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") || input == "/.." {
            input = if input == "/.." { "/" } else { &input[3..] };
            match output.rfind('/') {
                Some(i) => output.truncate(i),
                None => output.clear(),
            }
        } else if input == "." || input == ".." {
            input = "";
        } else {
            // Move the first segment (with its leading "/", if any) to the output.
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    output
}

/// RFC 3986 §5.2.3: merges a relative path with the base's path.
fn merge(base: &Parts<'_>, reference_path: &str) -> String {
    if base.authority.is_some() && base.path.is_empty() {
        return format!("/{reference_path}");
    }
    match base.path.rfind('/') {
        Some(i) => format!("{}{}", &base.path[..=i], reference_path),
        None => reference_path.to_owned(),
    }
}

/// RFC 3986 §5.3: recomposes components into a URI.
fn recompose(
    scheme: Option<&str>,
    authority: Option<&str>,
    path: &str,
    query: Option<&str>,
    fragment: Option<&str>,
) -> String {
    let mut out = String::new();
    if let Some(s) = scheme {
        out.push_str(s);
        out.push(':');
    }
    if let Some(a) = authority {
        out.push_str("//");
        out.push_str(a);
    }
    out.push_str(path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Resolves the URI reference `reference` against the absolute URI `base` (RFC 3986
/// §5.2.2, strict), as the RD resolves registered links (RFC 9176 §5, Appendix B) and a
/// client resolves discovered links and Location-Paths.
///
/// RFC 9176 §6.1: a reference that already is a URI (it has a scheme) is returned
/// unmodified, not normalised.
///
/// ```
/// assert_eq!(
///     corium_rd::resolve_reference("coap://[2001:db8:f0::1]", "/sensors/temp"),
///     "coap://[2001:db8:f0::1]/sensors/temp"
/// );
/// ```
pub fn resolve(base: &str, reference: &str) -> String {
    let r = split(reference);
    if r.scheme.is_some() {
        return reference.to_owned();
    }
    let b = split(base);
    let (authority, path, query) = if r.authority.is_some() {
        (r.authority, remove_dot_segments(r.path), r.query)
    } else if r.path.is_empty() {
        (b.authority, b.path.to_owned(), r.query.or(b.query))
    } else if r.path.starts_with('/') {
        (b.authority, remove_dot_segments(r.path), r.query)
    } else {
        (
            b.authority,
            remove_dot_segments(&merge(&b, r.path)),
            r.query,
        )
    };
    recompose(b.scheme, authority, &path, query, r.fragment)
}

/// Why a `base` parameter was refused (RFC 9176 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BaseError {
    /// Not an absolute URI with a scheme and an authority.
    NotAbsolute,
    /// It has a fragment component.
    Fragment,
    /// It contains whitespace, control characters or characters outside URIs.
    InvalidCharacter,
    /// An IPv6 literal with a zone identifier (RFC 9176 §5: "MUST NOT contain a Zone
    /// Identifier").
    ZoneIdentifier,
}

impl BaseError {
    /// A one-line diagnostic.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BaseError::NotAbsolute => "base must be an absolute URI (scheme://authority)",
            BaseError::Fragment => "base must not have a fragment",
            BaseError::InvalidCharacter => "base contains a character not allowed in a URI",
            BaseError::ZoneIdentifier => "base must not contain a zone identifier",
        }
    }
}

/// Checks a `base` parameter (RFC 9176 §5): an absolute URI with scheme and authority,
/// no fragment, no zone identifier in an IPv6 literal.
pub(crate) fn validate_base(base: &str) -> Result<(), BaseError> {
    check_base(base)
}

/// Checks a `base` parameter as the RD does (RFC 9176 §5): an absolute URI with scheme
/// and authority, no fragment, no zone identifier in an IPv6 literal. The error is a
/// one-line reason.
pub fn check_base_uri(base: &str) -> Result<(), &'static str> {
    check_base(base).map_err(BaseError::as_str)
}

fn check_base(base: &str) -> Result<(), BaseError> {
    if base
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>' | '\\'))
    {
        return Err(BaseError::InvalidCharacter);
    }
    let parts = split(base);
    let (Some(_), Some(authority)) = (parts.scheme, parts.authority) else {
        return Err(BaseError::NotAbsolute);
    };
    if authority.is_empty() {
        return Err(BaseError::NotAbsolute);
    }
    if parts.fragment.is_some() {
        return Err(BaseError::Fragment);
    }
    if host_of(authority).starts_with('[') && authority.contains('%') {
        return Err(BaseError::ZoneIdentifier);
    }
    Ok(())
}

/// The host of an authority (`userinfo@host:port`), brackets kept for IP literals.
fn host_of(authority: &str) -> &str {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return host_port.find(']').map_or(host_port, |i| &host_port[..=i]);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

/// Whether the host of the absolute URI `uri` is a link-local IP literal (`fe80::/10`
/// or `169.254.0.0/16`), for RFC 9176 §6.1 / §6.4 visibility.
pub(crate) fn is_link_local_base(uri: &str) -> bool {
    let Some(authority) = split(uri).authority else {
        return false;
    };
    let host = host_of(authority);
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match literal.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        Ok(IpAddr::V4(v4)) => v4.is_link_local(),
        Err(_) => false,
    }
}

/// The base URI RFC 9176 §5 assumes without a `base` parameter: `coap://` and the
/// requester's address literal, with `:port` unless it is 5683. Zone identifiers are
/// never included (RFC 9176 §6.1), v4-mapped addresses are written as IPv4.
pub fn default_base(peer: SocketAddr) -> String {
    let peer = corium::canonical_addr(peer);
    let mut out = String::from("coap://");
    match peer.ip() {
        IpAddr::V4(v4) => {
            let _ = write!(out, "{v4}");
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "[{v6}]");
        }
    }
    if peer.port() != COAP_DEFAULT_PORT {
        let _ = write!(out, ":{}", peer.port());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "http://a/b/c/d;p?q";

    /// RFC 3986 §5.4.1, normal examples.
    #[test]
    fn rfc3986_normal_examples() {
        let cases = [
            ("g:h", "g:h"),
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q#s"),
            ("g#s", "http://a/b/c/g#s"),
            ("g?y#s", "http://a/b/c/g?y#s"),
            (";x", "http://a/b/c/;x"),
            ("g;x", "http://a/b/c/g;x"),
            ("g;x?y#s", "http://a/b/c/g;x?y#s"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
        ];
        for (reference, expected) in cases {
            assert_eq!(resolve(BASE, reference), expected, "{reference}");
        }
    }

    /// RFC 3986 §5.4.2, abnormal examples (strict parser; references with a scheme
    /// are kept as they are, RFC 9176 §6.1).
    #[test]
    fn rfc3986_abnormal_examples() {
        let cases = [
            ("../../../g", "http://a/g"),
            ("../../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            (".g", "http://a/b/c/.g"),
            ("g..", "http://a/b/c/g.."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("./g/.", "http://a/b/c/g/"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("g?y/./x", "http://a/b/c/g?y/./x"),
            ("g?y/../x", "http://a/b/c/g?y/../x"),
            ("g#s/./x", "http://a/b/c/g#s/./x"),
            ("g#s/../x", "http://a/b/c/g#s/../x"),
            ("http:g", "http:g"),
        ];
        for (reference, expected) in cases {
            assert_eq!(resolve(BASE, reference), expected, "{reference}");
        }
    }

    /// RFC 9176 Appendix B and §5.3.1: bases without a path.
    #[test]
    fn rd_bases() {
        let base = "coap://[2001:db8:f0::1]";
        assert_eq!(
            resolve(base, "/sensors/temp"),
            "coap://[2001:db8:f0::1]/sensors/temp"
        );
        assert_eq!(resolve(base, "t"), "coap://[2001:db8:f0::1]/t");
        assert_eq!(resolve(base, ""), "coap://[2001:db8:f0::1]");
        assert_eq!(
            resolve("coap+tcp://sh1.example.com", "/sensors/temp"),
            "coap+tcp://sh1.example.com/sensors/temp"
        );
        // A URI is kept verbatim, dot segments and all.
        assert_eq!(
            resolve(base, "http://www.example.com/a/../b"),
            "http://www.example.com/a/../b"
        );
    }

    #[test]
    fn base_validation() {
        assert_eq!(validate_base("coap://[2001:db8::1]:61616"), Ok(()));
        assert_eq!(validate_base("coaps://new.example.com"), Ok(()));
        assert_eq!(validate_base("coap+tcp://h/p"), Ok(()));
        assert_eq!(validate_base("/rd"), Err(BaseError::NotAbsolute));
        assert_eq!(validate_base("coap:x"), Err(BaseError::NotAbsolute));
        assert_eq!(validate_base("coap://"), Err(BaseError::NotAbsolute));
        assert_eq!(validate_base("coap://h#f"), Err(BaseError::Fragment));
        assert_eq!(
            validate_base("coap://h x"),
            Err(BaseError::InvalidCharacter)
        );
        assert_eq!(
            validate_base("coap://[fe80::1%25eth0]"),
            Err(BaseError::ZoneIdentifier)
        );
        assert!(!BaseError::Fragment.as_str().is_empty());
    }

    #[test]
    fn link_local_and_default_base() {
        assert!(is_link_local_base("coap://[fe80::1]:5683"));
        assert!(is_link_local_base("coap://169.254.1.2"));
        assert!(!is_link_local_base("coap://[2001:db8::1]"));
        assert!(!is_link_local_base("coap://example.com"));
        assert_eq!(
            default_base("[2001:db8:f0::1]:5683".parse().unwrap()),
            "coap://[2001:db8:f0::1]"
        );
        assert_eq!(
            default_base("[2001:db8:3::123]:61616".parse().unwrap()),
            "coap://[2001:db8:3::123]:61616"
        );
        assert_eq!(
            default_base("[::ffff:10.0.0.1]:1234".parse().unwrap()),
            "coap://10.0.0.1:1234"
        );
        let scoped: SocketAddr = "[fe80::1%7]:5683".parse().unwrap();
        assert_eq!(default_base(scoped), "coap://[fe80::1]");
    }
}
