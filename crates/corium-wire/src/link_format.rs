//! The CoRE Link Format (RFC 6690 §2) and its query filtering (RFC 6690 §4.1).
//!
//! [`parse_links`] iterates over the links of an `application/link-format` document
//! without allocating. Each [`Link`] borrows its target and hands out its attributes
//! through [`Link::attributes`]. The parser is lenient where RFC 6690 §5 examples need it
//! (whitespace and line breaks between links and around `;`), and strict about structure
//! (targets in `<>`, terminated quotes, named attributes).
//!
//! ```
//! use corium_wire::{matches_filter, parse_links};
//!
//! let doc = "</sensors/temp>;rt=\"temperature-c\";if=\"sensor\",\n</sensors/light>;rt=\"light-lux\";if=\"sensor\"";
//! let lux: Vec<_> = parse_links(doc)
//!     .filter_map(Result::ok)
//!     .filter(|l| matches_filter(l, "rt", "light-*"))
//!     .map(|l| l.target)
//!     .collect();
//! assert_eq!(lux, ["/sensors/light"]);
//! ```

use core::fmt;

/// Why a link-format document could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkFormatError {
    /// A link does not start with `<`.
    ExpectedTarget,
    /// A `<` without a matching `>`.
    UnterminatedTarget,
    /// A quoted attribute value without its closing `"`.
    UnterminatedQuote,
    /// A malformed attribute: empty name, or unexpected text after a target or value.
    InvalidAttribute,
}

impl fmt::Display for LinkFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkFormatError::ExpectedTarget => "expected '<' starting a link target",
            LinkFormatError::UnterminatedTarget => "link target without closing '>'",
            LinkFormatError::UnterminatedQuote => "quoted string without closing '\"'",
            LinkFormatError::InvalidAttribute => "invalid link attribute",
        })
    }
}

impl core::error::Error for LinkFormatError {}

/// Whitespace tolerated between links and around attributes.
const fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 5987 attr-char, plus `*` for ext-name-star (RFC 6690 §2).
const fn is_parmname_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'&'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
                | b'*'
        )
}

fn skip_ws(b: &[u8], mut p: usize) -> usize {
    while p < b.len() && is_ws(b[p]) {
        p += 1;
    }
    p
}

/// Parses one attribute starting at `p` (just after the `;`). Returns it and the
/// position after it.
fn parse_attr(s: &str, p: usize) -> Result<(Attr<'_>, usize), LinkFormatError> {
    let b = s.as_bytes();
    let mut p = skip_ws(b, p);
    let start = p;
    while p < b.len() && is_parmname_char(b[p]) {
        p += 1;
    }
    if p == start {
        return Err(LinkFormatError::InvalidAttribute);
    }
    let name = &s[start..p];
    let q = skip_ws(b, p);
    if b.get(q) != Some(&b'=') {
        return Ok((Attr { name, value: None }, p));
    }
    p = skip_ws(b, q + 1);
    if b.get(p) == Some(&b'"') {
        let mut q = p + 1;
        loop {
            match b.get(q) {
                None => return Err(LinkFormatError::UnterminatedQuote),
                Some(b'\\') => q += 2,
                Some(b'"') => break,
                Some(_) => q += 1,
            }
        }
        let value = &s[p + 1..q];
        Ok((
            Attr {
                name,
                value: Some(value),
            },
            q + 1,
        ))
    } else {
        let start = p;
        while p < b.len() && !matches!(b[p], b';' | b',') && !is_ws(b[p]) {
            p += 1;
        }
        Ok((
            Attr {
                name,
                value: Some(&s[start..p]),
            },
            p,
        ))
    }
}

/// Parses the link starting at `p`; returns it and the position of the `,` or end.
fn parse_link(s: &str, p: usize) -> Result<(Link<'_>, usize), LinkFormatError> {
    let b = s.as_bytes();
    if b.get(p) != Some(&b'<') {
        return Err(LinkFormatError::ExpectedTarget);
    }
    let close = s[p + 1..]
        .find('>')
        .ok_or(LinkFormatError::UnterminatedTarget)?
        + p
        + 1;
    let target = &s[p + 1..close];
    let params_start = close + 1;
    let mut p = params_start;
    let mut params_end = p;
    loop {
        p = skip_ws(b, p);
        match b.get(p) {
            None | Some(b',') => break,
            Some(b';') => {
                let (_, next) = parse_attr(s, p + 1)?;
                p = next;
                params_end = p;
            }
            Some(_) => return Err(LinkFormatError::InvalidAttribute),
        }
    }
    Ok((
        Link {
            target,
            params: &s[params_start..params_end],
        },
        p,
    ))
}

/// Parses a CoRE Link Format document (RFC 6690 §2) lazily.
///
/// Links are separated by `,`; whitespace and line breaks between links and around `;`
/// are skipped; `,` and `;` inside quoted strings and escaped quotes (`\"`) are handled.
/// An empty document has no links. After an error the iterator ends.
pub fn parse_links(s: &str) -> LinkIter<'_> {
    LinkIter { s, pos: 0 }
}

/// Iterator over the links of a document; see [`parse_links`].
#[derive(Clone, Debug)]
pub struct LinkIter<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Iterator for LinkIter<'a> {
    type Item = Result<Link<'a>, LinkFormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.s.as_bytes();
        let p = skip_ws(b, self.pos);
        if p >= b.len() {
            self.pos = b.len();
            return None;
        }
        match parse_link(self.s, p) {
            Ok((link, next)) => {
                // `next` is at a ',' (consumed here) or at the end.
                self.pos = (next + 1).min(b.len());
                Some(Ok(link))
            }
            Err(e) => {
                self.pos = b.len();
                Some(Err(e))
            }
        }
    }
}

impl core::iter::FusedIterator for LinkIter<'_> {}

/// One link of a link-format document (RFC 6690 §2).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Link<'a> {
    /// The target URI-reference, without the angle brackets.
    pub target: &'a str,
    /// The validated attribute text after `>`.
    params: &'a str,
}

impl<'a> Link<'a> {
    /// The attributes (link-params) in document order.
    pub fn attributes(&self) -> AttrIter<'a> {
        AttrIter { rest: self.params }
    }

    /// The first attribute named `name` (ASCII case-insensitive, RFC 8288 §3):
    /// `None` if absent, `Some(None)` if present without a value, `Some(Some(v))`
    /// otherwise (quotes stripped, escapes left raw).
    pub fn attr(&self, name: &str) -> Option<Option<&'a str>> {
        self.attributes()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .map(|a| a.value)
    }

    /// The space-separated values of every attribute named `name`, e.g. each relation
    /// type of `rt="a b"` (RFC 6690 §3.1, §3.2).
    pub fn attr_values<'n>(&self, name: &'n str) -> AttrValues<'a, 'n> {
        AttrValues {
            attrs: self.attributes(),
            name,
            current: None,
        }
    }
}

impl fmt::Debug for Link<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("target", &self.target)
            .field("attributes", &DebugAttrs(*self))
            .finish()
    }
}

struct DebugAttrs<'a>(Link<'a>);

impl fmt::Debug for DebugAttrs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.attributes()).finish()
    }
}

/// One link-param: a name and an optional value (RFC 6690 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr<'a> {
    /// The parameter name as written.
    pub name: &'a str,
    /// The value: quotes stripped, backslash escapes left in place; `None` for a bare name.
    pub value: Option<&'a str>,
}

impl<'a> Attr<'a> {
    /// The value with quoted-string escapes (`\x` → `x`) resolved (RFC 2616 §2.2).
    pub fn value_unescaped(&self) -> Option<Unescaped<'a>> {
        self.value.map(unescape)
    }
}

/// Iterator over the attributes of a [`Link`].
#[derive(Clone, Debug)]
pub struct AttrIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = Attr<'a>;

    fn next(&mut self) -> Option<Attr<'a>> {
        let b = self.rest.as_bytes();
        let p = skip_ws(b, 0);
        if b.get(p) != Some(&b';') {
            self.rest = "";
            return None;
        }
        // The text was validated by `parse_link`; on any surprise simply stop.
        match parse_attr(self.rest, p + 1) {
            Ok((attr, next)) => {
                self.rest = &self.rest[next..];
                Some(attr)
            }
            Err(_) => {
                self.rest = "";
                None
            }
        }
    }
}

impl core::iter::FusedIterator for AttrIter<'_> {}

/// Iterator over the space-separated values of the attributes with one name; see
/// [`Link::attr_values`].
#[derive(Clone, Debug)]
pub struct AttrValues<'a, 'n> {
    attrs: AttrIter<'a>,
    name: &'n str,
    current: Option<core::str::Split<'a, char>>,
}

impl<'a> Iterator for AttrValues<'a, '_> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            if let Some(split) = &mut self.current {
                for v in split.by_ref() {
                    if !v.is_empty() {
                        return Some(v);
                    }
                }
                self.current = None;
            }
            let attr = self.attrs.next()?;
            if attr.name.eq_ignore_ascii_case(self.name) {
                self.current = attr.value.map(|v| v.split(' '));
            }
        }
    }
}

/// Iterator over the bytes of a quoted-string body with `\x` escapes resolved.
#[derive(Clone, Debug)]
pub struct Unescaped<'a> {
    bytes: &'a [u8],
}

impl Iterator for Unescaped<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        match (first, rest) {
            (b'\\', [escaped, tail @ ..]) => {
                self.bytes = tail;
                Some(*escaped)
            }
            _ => {
                self.bytes = rest;
                Some(first)
            }
        }
    }
}

/// Resolves quoted-string escapes (`\x` → `x`) lazily.
pub fn unescape(raw: &str) -> Unescaped<'_> {
    Unescaped {
        bytes: raw.as_bytes(),
    }
}

/// Compares an attribute value (escapes resolved) with a pattern.
fn value_matches(value: &str, pattern: &str, prefix: bool) -> bool {
    let mut v = unescape(value);
    for p in pattern.bytes() {
        if v.next() != Some(p) {
            return false;
        }
    }
    prefix || v.next().is_none()
}

/// RFC 6690 §4.1 query filtering: whether `link` matches the filter `name=pattern`.
///
/// `pattern` is the already percent-decoded value (as carried in a Uri-Query option).
/// A pattern ending in `*` matches as a prefix (`"*"` alone matches any existing
/// attribute); otherwise the match must be exact. `href` matches the link target;
/// other names match any attribute of that name (ASCII case-insensitive), comparing the
/// whole value and each of its space-separated values (RFC 6690 §4.1: relation types
/// are matched individually). An attribute without a value counts as the empty value.
pub fn matches_filter(link: &Link<'_>, name: &str, pattern: &str) -> bool {
    let (pattern, prefix) = match pattern.strip_suffix('*') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    if name.eq_ignore_ascii_case("href") {
        let t = link.target;
        return if prefix {
            t.starts_with(pattern)
        } else {
            t == pattern
        };
    }
    link.attributes()
        .filter(|a| a.name.eq_ignore_ascii_case(name))
        .any(|a| {
            let v = a.value.unwrap_or("");
            value_matches(v, pattern, prefix)
                || (is_space_separated(name)
                    && v.contains(' ')
                    && v.split(' ')
                        .filter(|t| !t.is_empty())
                        .any(|t| value_matches(t, pattern, prefix)))
        })
}

/// RFC 6690 §3.1–3.3 and RFC 7252 §7.2.1: the attributes whose values are
/// space-separated lists, matched token by token in a filter (§4.1). Other values, such as
/// `title`, match only as a whole.
fn is_space_separated(name: &str) -> bool {
    ["rt", "if", "rel", "rev", "ct"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn title_is_not_split_on_spaces() {
        let s = r#"</a>;title="Sensor Index";rt="x y""#;
        assert!(filter(s, "title", "Index").is_empty());
        assert_eq!(filter(s, "title", "Sensor*"), ["/a"]);
        assert_eq!(filter(s, "rt", "y"), ["/a"]);
    }

    fn links(s: &str) -> Vec<Link<'_>> {
        parse_links(s).map(Result::unwrap).collect()
    }

    fn targets<'a>(ls: &[Link<'a>]) -> Vec<&'a str> {
        ls.iter().map(|l| l.target).collect()
    }

    fn filter<'a>(s: &'a str, name: &str, pattern: &str) -> Vec<&'a str> {
        let ls: Vec<_> = links(s)
            .into_iter()
            .filter(|l| matches_filter(l, name, pattern))
            .collect();
        targets(&ls)
    }

    const SENSORS: &str = "</sensors/temp>;if=\"sensor\",\n</sensors/light>;if=\"sensor\"";
    const SENSORS_RT: &str =
        "</sensors/temp>;rt=\"temperature-c\";if=\"sensor\",\n</sensors/light>;rt=\"light-lux\";if=\"sensor\"";
    const ANCHORS: &str = "</sensors>;ct=40;title=\"Sensor Index\",\n\
        </sensors/temp>;rt=\"temperature-c\";if=\"sensor\",\n\
        </sensors/light>;rt=\"light-lux\";if=\"sensor\",\n\
        <http://www.example.com/sensors/t123>;anchor=\"/sensors/temp\"\n\
        ;rel=\"describedby\",\n\
        </t>;anchor=\"/sensors/temp\";rel=\"alternate\"";

    /// RFC 6690 §5, first example, with and without line breaks.
    #[test]
    fn rfc6690_sensors() {
        for doc in [
            SENSORS,
            "</sensors/temp>;if=\"sensor\",</sensors/light>;if=\"sensor\"",
        ] {
            let ls = links(doc);
            assert_eq!(targets(&ls), ["/sensors/temp", "/sensors/light"]);
            for l in &ls {
                let attrs: Vec<_> = l.attributes().collect();
                assert_eq!(
                    attrs,
                    [Attr {
                        name: "if",
                        value: Some("sensor")
                    }]
                );
                assert_eq!(l.attr("if"), Some(Some("sensor")));
                assert_eq!(l.attr("rt"), None);
            }
        }
    }

    /// RFC 6690 §5, hierarchical example and its query filter.
    #[test]
    fn rfc6690_hierarchy_and_filter() {
        let ls = links("</sensors>;ct=40");
        assert_eq!(ls[0].attr("ct"), Some(Some("40")));
        assert_eq!(filter(SENSORS_RT, "rt", "light-lux"), ["/sensors/light"]);
        assert_eq!(
            filter(SENSORS_RT, "if", "sensor"),
            ["/sensors/temp", "/sensors/light"]
        );
        assert!(filter(SENSORS_RT, "rt", "light").is_empty());
        // Multiple relation types: a filter matches any one of them.
        let multi = "</sensors/light>;rt=\"light-lux core.sen-light\";if=\"sensor\"";
        assert_eq!(filter(multi, "rt", "light-lux"), ["/sensors/light"]);
        assert_eq!(filter(multi, "rt", "core.sen-light"), ["/sensors/light"]);
        assert_eq!(filter(multi, "rt", "core.sen*"), ["/sensors/light"]);
        let values: Vec<_> = links(multi)[0].attr_values("rt").collect();
        assert_eq!(values, ["light-lux", "core.sen-light"]);
    }

    /// RFC 6690 §5, anchors (with a line break before ";rel") and the anchor query.
    #[test]
    fn rfc6690_anchors() {
        let ls = links(ANCHORS);
        assert_eq!(
            targets(&ls),
            [
                "/sensors",
                "/sensors/temp",
                "/sensors/light",
                "http://www.example.com/sensors/t123",
                "/t"
            ]
        );
        assert_eq!(ls[0].attr("title"), Some(Some("Sensor Index")));
        assert_eq!(ls[3].attr("rel"), Some(Some("describedby")));
        assert_eq!(ls[3].attr("anchor"), Some(Some("/sensors/temp")));
        assert_eq!(
            filter(ANCHORS, "anchor", "/sensors/temp"),
            ["http://www.example.com/sensors/t123", "/t"]
        );
        let firmware = "</firmware/v2.1>;rt=\"firmware\";sz=262144";
        assert_eq!(filter(firmware, "rt", "firmware"), ["/firmware/v2.1"]);
        assert_eq!(links(firmware)[0].attr("sz"), Some(Some("262144")));
    }

    /// RFC 6690 §4.1 filter examples.
    #[test]
    fn rfc6690_filter_rules() {
        let doc = "</foo>;foo=bar,</foo/x>;foo=barley,</food>;foo=baz,</nofoo>;other,</flag>;foo";
        assert_eq!(filter(doc, "href", "/foo"), ["/foo"]);
        assert_eq!(filter(doc, "href", "/foo*"), ["/foo", "/foo/x", "/food"]);
        assert_eq!(filter(doc, "foo", "bar"), ["/foo"]);
        assert_eq!(filter(doc, "foo", "bar*"), ["/foo", "/foo/x"]);
        assert_eq!(
            filter(doc, "foo", "*"),
            ["/foo", "/foo/x", "/food", "/flag"]
        );
        assert_eq!(filter(doc, "FOO", "baz"), ["/food"]);
        assert!(filter(doc, "missing", "*").is_empty());
        // Escapes are resolved before matching.
        let esc = "</q>;title=\"say \\\"hi\\\"\"";
        assert_eq!(filter(esc, "title", "say \"hi\""), ["/q"]);
        assert_eq!(filter(esc, "title", "say \"h*"), ["/q"]);
        let a = links(esc)[0].attributes().next().unwrap();
        assert_eq!(a.value, Some("say \\\"hi\\\""));
        let unescaped: Vec<u8> = a.value_unescaped().unwrap().collect();
        assert_eq!(unescaped, b"say \"hi\"");
    }

    #[test]
    fn quoting_and_whitespace() {
        let doc = " \r\n</a>;title=\"x\\\";,y\" ; rt=z ,\n\t</b>;flag;ct=\"0 40\",</c>,";
        let ls = links(doc);
        assert_eq!(targets(&ls), ["/a", "/b", "/c"]);
        assert_eq!(ls[0].attr("title"), Some(Some("x\\\";,y")));
        assert_eq!(ls[0].attr("rt"), Some(Some("z")));
        assert_eq!(ls[1].attr("flag"), Some(None));
        assert_eq!(ls[1].attr_values("ct").collect::<Vec<_>>(), ["0", "40"]);
        assert_eq!(ls[2].attributes().count(), 0);
        assert!(links("").is_empty());
        assert!(links(" \n ").is_empty());
        // Commas inside the target do not split links.
        assert_eq!(targets(&links("<a,b>;x=1,<c>")), ["a,b", "c"]);
        let dbg = std::format!("{:?}", ls[1]);
        assert!(
            dbg.contains("target: \"/b\"") && dbg.contains("name: \"flag\""),
            "{dbg}"
        );
    }

    #[test]
    fn errors_end_iteration() {
        use LinkFormatError::*;
        let cases: &[(&str, usize, LinkFormatError)] = &[
            ("sensors", 0, ExpectedTarget),
            ("</a>,,</b>", 1, ExpectedTarget),
            ("</a", 0, UnterminatedTarget),
            ("</a>;title=\"x", 0, UnterminatedQuote),
            ("</a>;title=\"x\\\"", 0, UnterminatedQuote),
            ("</a>;=x", 0, InvalidAttribute),
            ("</a>;", 0, InvalidAttribute),
            ("</a>x", 0, InvalidAttribute),
            ("</a>;rt=x y", 0, InvalidAttribute),
            ("</a>;rt=\"x\"y", 0, InvalidAttribute),
            ("</ok>,</a>;\"q\"", 1, InvalidAttribute),
        ];
        for &(doc, good, err) in cases {
            let mut it = parse_links(doc);
            for _ in 0..good {
                assert!(it.next().unwrap().is_ok(), "{doc}");
            }
            assert_eq!(it.next(), Some(Err(err)), "{doc}");
            assert_eq!(it.next(), None, "{doc}");
            assert!(!std::format!("{err}").is_empty());
        }
    }

    #[test]
    fn robustness() {
        // Every prefix of a rich document parses or fails cleanly.
        let doc =
            "</a>;title=\"x\\\";,y\";rt=\"b c\",<http://h/p?q>;anchor=\"/a\";ct=40;sz,</é>;x=é";
        for end in 0..=doc.len() {
            if let Some(prefix) = doc.get(..end) {
                for l in parse_links(prefix).flatten() {
                    let _ = l.attributes().count();
                    let _ = matches_filter(&l, "rt", "b*");
                }
            }
        }
    }
}
