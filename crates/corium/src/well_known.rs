//! `/.well-known/core` (RFC 6690 §4, RFC 7252 §7.2): the server's resources in CoRE Link
//! Format, with the query filtering of RFC 6690 §4.1.

use std::fmt::Write as _;

use corium_proto::wire::{matches_filter, parse_links, Code, ContentFormat, OptionNumber};
use corium_proto::{Request, Response};

use crate::resource::ResourceAttrs;

/// The Uri-Path of the discovery resource (RFC 6690 §4).
pub(crate) const WELL_KNOWN_CORE: [&[u8]; 2] = [b".well-known", b"core"];

/// The link-format document of a server, rendered once when the router is built.
#[derive(Clone, Debug, Default)]
pub(crate) struct WellKnown {
    /// One serialised link per listed resource.
    links: Vec<String>,
    /// Every link, comma-separated: the unfiltered answer.
    full: Vec<u8>,
}

impl WellKnown {
    /// Renders the links of `(href, attributes)` pairs.
    pub(crate) fn new<'a>(entries: impl IntoIterator<Item = (&'a str, &'a ResourceAttrs)>) -> Self {
        let links: Vec<String> = entries
            .into_iter()
            .map(|(href, attrs)| {
                let mut s = String::new();
                write_link(&mut s, href, attrs);
                s
            })
            .collect();
        let full = links.join(",").into_bytes();
        WellKnown { links, full }
    }

    /// Answers a GET of `/.well-known/core`.
    ///
    /// Every Uri-Query argument `name=value` is a filter (RFC 6690 §4.1; `value*` matches
    /// by prefix, `href` matches the link target); all must match. An argument without
    /// `=` matches links that have the attribute at all. A multicast request whose
    /// filter matches nothing gets no answer (RFC 6690 §4.1: the 4.04 given here is
    /// suppressed by the endpoint, RFC 7252 §8.2).
    pub(crate) fn respond(&self, request: &Request, multicast: bool) -> Response {
        if request
            .accept()
            .is_some_and(|cf| cf != ContentFormat::LINK_FORMAT)
        {
            // RFC 7252 §5.10.4: only link-format is offered.
            return Response::new(Code::NOT_ACCEPTABLE);
        }
        let filters: Vec<(&str, &str)> = match request
            .query_args()
            .map(|arg| {
                let arg = std::str::from_utf8(arg).ok()?;
                Some(match arg.split_once('=') {
                    Some((name, value)) => (name, value),
                    None => (arg, "*"),
                })
            })
            .collect::<Option<Vec<_>>>()
        {
            Some(filters) => filters,
            // A query that is not UTF-8 cannot match any attribute.
            None if multicast => return Response::new(Code::NOT_FOUND),
            None => return link_format_response(Vec::new()),
        };
        if filters.is_empty() {
            return link_format_response(self.full.clone());
        }
        let mut payload = Vec::new();
        for text in &self.links {
            let matched = parse_links(text).filter_map(Result::ok).any(|link| {
                filters
                    .iter()
                    .all(|(name, pattern)| matches_filter(&link, name, pattern))
            });
            if matched {
                if !payload.is_empty() {
                    payload.push(b',');
                }
                payload.extend_from_slice(text.as_bytes());
            }
        }
        if payload.is_empty() && multicast {
            return Response::new(Code::NOT_FOUND);
        }
        link_format_response(payload)
    }
}

fn link_format_response(payload: Vec<u8>) -> Response {
    let mut response = Response::with_payload(Code::CONTENT, payload);
    response.options.push_uint(
        OptionNumber::CONTENT_FORMAT,
        u32::from(ContentFormat::LINK_FORMAT.0),
    );
    response
}

/// Writes `value` as an RFC 2616 §2.2 quoted-string (RFC 6690 §2).
fn write_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Writes one link: `<href>;rt="…";if="…";ct=…;sz=…;title="…";obs;…` (RFC 6690 §2,
/// RFC 7252 §7.2.1 for `ct`, RFC 7641 §6 for `obs`).
pub(crate) fn write_link(out: &mut String, href: &str, attrs: &ResourceAttrs) {
    out.push('<');
    out.push_str(href);
    out.push('>');
    if !attrs.rt.is_empty() {
        out.push_str(";rt=");
        write_quoted(out, &attrs.rt.join(" "));
    }
    if !attrs.if_.is_empty() {
        out.push_str(";if=");
        write_quoted(out, &attrs.if_.join(" "));
    }
    match attrs.ct.as_slice() {
        [] => {}
        [one] => {
            let _ = write!(out, ";ct={one}");
        }
        many => {
            let list: Vec<String> = many.iter().map(u16::to_string).collect();
            out.push_str(";ct=");
            write_quoted(out, &list.join(" "));
        }
    }
    if let Some(sz) = attrs.sz {
        let _ = write!(out, ";sz={sz}");
    }
    if let Some(title) = &attrs.title {
        out.push_str(";title=");
        write_quoted(out, title);
    }
    if attrs.obs {
        out.push_str(";obs");
    }
    for (name, value) in &attrs.other {
        out.push(';');
        out.push_str(name);
        if let Some(value) = value {
            out.push('=');
            write_quoted(out, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> ResourceAttrs {
        ResourceAttrs {
            rt: vec!["temperature-c".into(), "sensor-x".into()],
            if_: vec!["sensor".into()],
            ct: vec![0],
            sz: Some(42),
            title: Some("Outside \"north\"".into()),
            obs: true,
            other: vec![("foo".into(), Some("bar".into())), ("flag".into(), None)],
        }
    }

    #[test]
    fn link_serialisation() {
        let mut s = String::new();
        write_link(&mut s, "/sensors/temp", &attrs());
        assert_eq!(
            s,
            "</sensors/temp>;rt=\"temperature-c sensor-x\";if=\"sensor\";ct=0;sz=42;\
             title=\"Outside \\\"north\\\"\";obs;foo=\"bar\";flag"
        );
        let mut s = String::new();
        let many = ResourceAttrs {
            ct: vec![0, 50],
            ..ResourceAttrs::default()
        };
        write_link(&mut s, "/x", &many);
        assert_eq!(s, "</x>;ct=\"0 50\"");
    }

    fn get(query: &[&str]) -> Request {
        let mut r = Request::new(Code::GET);
        r.set_path("/.well-known/core");
        for q in query {
            r.options
                .push(OptionNumber::URI_QUERY, q.as_bytes().to_vec());
        }
        r
    }

    /// RFC 6690 §5 example resources and filters.
    #[test]
    fn filtering() {
        let temp = ResourceAttrs {
            rt: vec!["temperature-c".into()],
            if_: vec!["sensor".into()],
            ..ResourceAttrs::default()
        };
        let light = ResourceAttrs {
            rt: vec!["light-lux".into()],
            if_: vec!["sensor".into()],
            ..ResourceAttrs::default()
        };
        let index = ResourceAttrs {
            ct: vec![40],
            title: Some("Sensor Index".into()),
            ..ResourceAttrs::default()
        };
        let wk = WellKnown::new([
            ("/sensors", &index),
            ("/sensors/temp", &temp),
            ("/sensors/light", &light),
        ]);
        let body = |q: &[&str]| {
            let r = wk.respond(&get(q), false);
            assert_eq!(r.code, Code::CONTENT);
            assert_eq!(r.content_format(), Some(ContentFormat::LINK_FORMAT));
            String::from_utf8(r.payload).unwrap()
        };
        assert_eq!(
            body(&[]),
            "</sensors>;ct=40;title=\"Sensor Index\",</sensors/temp>;rt=\"temperature-c\";if=\"sensor\",</sensors/light>;rt=\"light-lux\";if=\"sensor\""
        );
        assert_eq!(
            body(&["rt=temperature-c"]),
            "</sensors/temp>;rt=\"temperature-c\";if=\"sensor\""
        );
        assert_eq!(
            body(&["rt=temp*"]),
            "</sensors/temp>;rt=\"temperature-c\";if=\"sensor\""
        );
        assert_eq!(
            body(&["href=/sensors/l*"]),
            "</sensors/light>;rt=\"light-lux\";if=\"sensor\""
        );
        assert_eq!(body(&["ct=40"]), "</sensors>;ct=40;title=\"Sensor Index\"");
        assert_eq!(
            body(&["if=sensor", "rt=light*"]),
            "</sensors/light>;rt=\"light-lux\";if=\"sensor\""
        );
        assert_eq!(body(&["rt=nothing"]), "");
        assert_eq!(body(&["title"]), "</sensors>;ct=40;title=\"Sensor Index\"");
        // Multicast: no match, no answer.
        assert_eq!(
            wk.respond(&get(&["rt=nothing"]), true).code,
            Code::NOT_FOUND
        );
        // Accept other than link-format.
        let mut r = get(&[]);
        r.options.push_uint(OptionNumber::ACCEPT, 50);
        assert_eq!(wk.respond(&r, false).code, Code::NOT_ACCEPTABLE);
    }
}
