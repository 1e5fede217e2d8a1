//! URI checks for the command line, on top of `corium_wire`'s RFC 7252 §6.4
//! parser: the decomposition of a `coap://` URI into host, port, Uri-Path
//! and Uri-Query, with one-line errors
//! (`invalid URI "coap//x": not an absolute URI`).
//!
//! The client verbs check the URI here before opening a socket and then hand
//! the string to `corium`; `discover` rewrites it to `/.well-known/core`;
//! `bench` needs the decoded options to build its request itself.

use std::fmt::Write as _;

use corium::wire::{percent_decode, Host, Scheme, Uri};

/// The path of the discovery resource (RFC 6690 §4).
const WELL_KNOWN_CORE: &str = "/.well-known/core";

/// A checked `coap://` URI (RFC 7252 §6.4 steps 1-9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The scheme: `coap` or one of RFC 8323.
    pub(crate) scheme: Scheme,
    /// The host: an IP address without brackets, or a lowercase name.
    pub(crate) host: String,
    /// Whether the host is an IP literal (no Uri-Host option then, §6.4 step 5).
    pub(crate) host_is_ip: bool,
    /// The port, 5683 by default.
    pub(crate) port: u16,
    /// Uri-Path segments, percent-decoded.
    pub(crate) path: Vec<Vec<u8>>,
    /// Uri-Query arguments, percent-decoded.
    pub(crate) query: Vec<Vec<u8>>,
}

/// Formats the one-line error for `uri`.
fn invalid(uri: &str, reason: &str) -> String {
    format!("invalid URI {uri:?}: {reason}")
}

/// Parses `uri` with `corium_wire` and insists on a scheme the CLI speaks:
/// `coap` (UDP), `coaps` (DTLS, RFC 7252 §9) or one of RFC 8323 (`coap+tcp`,
/// `coaps+tcp`, `coap+ws`, `coaps+ws`).
fn parse_coap(uri: &str) -> Result<Uri<'_>, String> {
    if uri.is_empty() {
        return Err(invalid(uri, "empty"));
    }
    Uri::parse(uri).map_err(|e| invalid(uri, &e.to_string()))
}

/// Parses and checks a `coap://` URI (RFC 7252 §6.4).
pub(crate) fn parse(uri: &str) -> Result<Target, String> {
    let parsed = parse_coap(uri)?;
    let (host, host_is_ip) = match parsed.host {
        Host::Ipv4(a) => (a.to_string(), true),
        Host::Ipv6(a, None) => (a.to_string(), true),
        Host::Ipv6(a, Some(zone)) => {
            // RFC 6874: the zone (an interface name or index) after `%`, as the system's
            // resolver takes it (`fe80::1%eth0`), so the datagram leaves on that link.
            let decoded: Vec<u8> = percent_decode(zone).collect();
            let zone = String::from_utf8(decoded)
                .map_err(|_| invalid(uri, "IPv6 zone identifier is not UTF-8"))?;
            (format!("{a}%{zone}"), true)
        }
        Host::Name(name) => {
            // §6.4 step 5: lowercase, then percent-decode.
            let lower = name.to_ascii_lowercase();
            let decoded: Vec<u8> = percent_decode(&lower).collect();
            let name = String::from_utf8(decoded).map_err(|_| invalid(uri, "host is not UTF-8"))?;
            (name, false)
        }
    };
    let path = parsed
        .path_segments()
        .map(|s| percent_decode(s).collect())
        .collect();
    // §6.4 step 9: one Uri-Query per argument of a present query (as the
    // client does: `coap://h/?` gives one empty argument).
    let query = parsed
        .query_args()
        .map(|s| percent_decode(s).collect())
        .collect();
    Ok(Target {
        scheme: parsed.scheme,
        host,
        host_is_ip,
        port: parsed.port_or_default(),
        path,
        query,
    })
}

/// Percent-encodes a query argument for a URI: everything but unreserved
/// characters and the sub-delimiters that are harmless inside one argument
/// (`&`, which separates arguments, is encoded).
fn encode_query_arg(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    for b in arg.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$'()*+,;=:@/?".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The URI `corium discover` requests: `uri` itself when its path already
/// ends in `/.well-known/core`, else `/.well-known/core` appended to its path
/// (so `coap://host` gives the RFC 6690 §4 resource at the root), keeping
/// the query; `filter` (`rt=temp*`) is appended as one more query argument
/// (RFC 6690 §4.1).
pub(crate) fn discovery_uri(uri: &str, filter: Option<&str>) -> Result<String, String> {
    parse(uri)?;
    let parsed = parse_coap(uri)?;
    let mut args: Vec<String> = match parsed.query {
        Some(q) if !q.is_empty() => parsed.query_args().map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    if let Some(f) = filter {
        if !f.contains('=') || f.starts_with('=') {
            return Err(format!(
                "invalid filter {f:?}: expected NAME=VALUE, e.g. rt=temp*"
            ));
        }
        args.push(encode_query_arg(f));
    }
    let mut out = format!("{}://{}", parsed.scheme, parsed.host);
    if let Some(port) = parsed.port {
        let _ = write!(out, ":{port}");
    }
    if parsed.path.ends_with(WELL_KNOWN_CORE) {
        out.push_str(parsed.path);
    } else {
        out.push_str(parsed.path.trim_end_matches('/'));
        out.push_str(WELL_KNOWN_CORE);
    }
    if !args.is_empty() {
        out.push('?');
        out.push_str(&args.join("&"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7252_section_6_4_decomposition() {
        let t = parse("coap://example.net/.well-known/core").unwrap();
        assert_eq!(t.host, "example.net");
        assert!(!t.host_is_ip);
        assert_eq!(t.port, 5683);
        assert_eq!(t.path, [b".well-known".to_vec(), b"core".to_vec()]);
        assert!(t.query.is_empty());

        // RFC 7252 §6.3: equivalent URIs, percent-encoded and default port.
        let t = parse("coap://EXAMPLE.com:5683/~sensors/temp.xml").unwrap();
        assert_eq!(t.host, "example.com");
        let t2 = parse("coap://example.com/%7Esensors/temp.xml").unwrap();
        assert_eq!(t.path, t2.path);

        assert_eq!(parse("coap://h/?").unwrap().query, [Vec::<u8>::new()]);
        assert!(parse("coap://h/").unwrap().query.is_empty());
        let t = parse("coap://[2001:db8::2:1]:61616/a/b/?x=1&y=%20").unwrap();
        assert_eq!(t.host, "2001:db8::2:1");
        assert!(t.host_is_ip);
        assert_eq!(t.port, 61616);
        assert_eq!(t.path, [b"a".to_vec(), b"b".to_vec(), Vec::new()]);
        assert_eq!(t.query, [b"x=1".to_vec(), b"y= ".to_vec()]);

        let t = parse("coap://127.0.0.1").unwrap();
        assert!(t.host_is_ip && t.path.is_empty());
        assert!(parse("coap://127.0.0.1/").unwrap().path.is_empty());
    }

    #[test]
    fn errors_are_one_clear_line() {
        assert_eq!(
            parse("coap//x").unwrap_err(),
            r#"invalid URI "coap//x": not an absolute URI"#
        );
        // RFC 7252 §6.2: coaps defaults to 5684.
        assert_eq!(parse("coaps://x/").unwrap().port, 5684);
        assert_eq!(parse("").unwrap_err(), r#"invalid URI "": empty"#);
        for bad in [
            "http://x/",
            "coap://x/a#f",
            "coap:///a",
            "coap://x:99999/",
            "coap://x/%zz",
            "coap://[::1/",
            "coap://[zz]/",
            "coap://x/a b",
            "coap:x",
            "coap://x/%4",
            "coap://[fe80::1%25]/",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.starts_with(&format!("invalid URI {bad:?}: ")), "{err}");
            assert!(!err.contains('\n'));
        }
    }

    /// RFC 6874 zones: `%25ZONE` (or a bare `%ZONE`) becomes the resolver's `ADDR%ZONE`.
    #[test]
    fn ipv6_zones() {
        for uri in ["coap://[fe80::1%25eth0]/x", "coap://[fe80::1%eth0]/x"] {
            let t = parse(uri).unwrap();
            assert_eq!(t.host, "fe80::1%eth0");
            assert!(t.host_is_ip);
        }
        assert_eq!(parse("coap://[ff02::fd%252]/").unwrap().host, "ff02::fd%2");
    }

    #[test]
    fn discovery_uris() {
        assert_eq!(
            discovery_uri("coap://h", None).unwrap(),
            "coap://h/.well-known/core"
        );
        assert_eq!(
            discovery_uri("coap://h/", None).unwrap(),
            "coap://h/.well-known/core"
        );
        assert_eq!(
            discovery_uri("coap://h:1234/some/path/", None).unwrap(),
            "coap://h:1234/some/path/.well-known/core"
        );
        assert_eq!(
            discovery_uri("coap://h/gw/.well-known/core", None).unwrap(),
            "coap://h/gw/.well-known/core"
        );
        assert_eq!(
            discovery_uri("coap://h/.well-known/core?rt=Type1", None).unwrap(),
            "coap://h/.well-known/core?rt=Type1"
        );
        assert_eq!(
            discovery_uri("coap://h/?rt=a", Some("if=b c&d")).unwrap(),
            "coap://h/.well-known/core?rt=a&if=b%20c%26d"
        );
        assert_eq!(
            discovery_uri("coap://[::1]:5683", Some("rt=temp*")).unwrap(),
            "coap://[::1]:5683/.well-known/core?rt=temp*"
        );
        assert!(discovery_uri("coap://h", Some("rt")).is_err());
        assert!(discovery_uri("coap//h", None).is_err());
    }
}
