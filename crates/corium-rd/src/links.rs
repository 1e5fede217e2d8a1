//! Registered links as the RD keeps them: target, attributes in submitted order with
//! their original quoting, and their rendering with resolved target and anchor
//! (RFC 9176 §6.1, Appendix B).

use corium::wire::{parse_links, LinkFormatError};

use crate::uri;

/// The value of a link attribute as it was submitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AttrValue {
    /// A bare name (`;obs`).
    Flag,
    /// An unquoted value (`;ct=40`).
    Token(String),
    /// A quoted value, backslash escapes kept as written (`;title="a \"b\""`).
    Quoted(String),
}

/// One link attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LinkAttr {
    pub(crate) name: String,
    pub(crate) value: AttrValue,
}

/// One registered link (RFC 6690 §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredLink {
    /// The target URI-reference as submitted.
    pub(crate) target: String,
    /// The attributes in submitted order.
    pub(crate) attrs: Vec<LinkAttr>,
}

/// Why a registration payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PayloadError {
    /// Not valid link format (RFC 6690 §2).
    Syntax(LinkFormatError),
    /// More links than the configured limit.
    TooManyLinks,
}

/// Whether the value slice `value` of `doc` was written between quotes: the parser
/// strips them, and a quoted value is the only kind preceded by `"`.
fn was_quoted(doc: &str, value: &str) -> bool {
    let offset = (value.as_ptr() as usize).wrapping_sub(doc.as_ptr() as usize);
    offset > 0 && offset <= doc.len() && doc.as_bytes()[offset - 1] == b'"'
}

/// Parses a registration payload (RFC 6690 link format) into links, keeping each
/// attribute's quoting. Refuses malformed documents and more than `max_links` links.
pub(crate) fn parse_payload(doc: &str, max_links: usize) -> Result<Vec<StoredLink>, PayloadError> {
    let mut links = Vec::new();
    for link in parse_links(doc) {
        let link = link.map_err(PayloadError::Syntax)?;
        if links.len() >= max_links {
            return Err(PayloadError::TooManyLinks);
        }
        let attrs = link
            .attributes()
            .map(|a| LinkAttr {
                name: a.name.to_owned(),
                value: match a.value {
                    None => AttrValue::Flag,
                    Some(v) if was_quoted(doc, v) => AttrValue::Quoted(v.to_owned()),
                    Some(v) => AttrValue::Token(v.to_owned()),
                },
            })
            .collect();
        links.push(StoredLink {
            target: link.target.to_owned(),
            attrs,
        });
    }
    Ok(links)
}

/// Writes `value` as a quoted-string, escaping `"` and `\` (RFC 2616 §2.2).
pub(crate) fn write_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Writes an attribute value that came from a query parameter (already unescaped):
/// bare when it is a simple token, quoted otherwise.
pub(crate) fn write_value(out: &mut String, value: &str) {
    let bare = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if bare {
        out.push_str(value);
    } else {
        write_quoted(out, value);
    }
}

impl StoredLink {
    /// Renders the link for lookup: the target resolved against `base`, an `anchor`
    /// resolved against `base` too (RFC 9176 §6.1, Appendix B.4: "resolved against the
    /// relevant base URI ... independent of each other"), every other attribute as
    /// submitted.
    pub(crate) fn render_resolved(&self, base: &str, out: &mut String) {
        out.push('<');
        out.push_str(&uri::resolve(base, &self.target));
        out.push('>');
        for attr in &self.attrs {
            out.push(';');
            out.push_str(&attr.name);
            match &attr.value {
                AttrValue::Flag => {}
                AttrValue::Token(v) | AttrValue::Quoted(v)
                    if attr.name.eq_ignore_ascii_case("anchor") =>
                {
                    // The stored value keeps escapes; resolve its unescaped form.
                    let unescaped: Vec<u8> = corium::wire::unescape(v).collect();
                    let anchor = String::from_utf8_lossy(&unescaped);
                    out.push('=');
                    write_quoted(out, &uri::resolve(base, &anchor));
                }
                AttrValue::Token(v) => {
                    out.push('=');
                    out.push_str(v);
                }
                AttrValue::Quoted(v) => {
                    out.push_str("=\"");
                    out.push_str(v);
                    out.push('"');
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_is_kept() {
        let doc = "</a>;rt=\"x y\";ct=40;obs;title=\"say \\\"hi\\\"\",\n  </b>";
        let links = parse_payload(doc, 10).unwrap();
        assert_eq!(links.len(), 2);
        assert_eq!(
            links[0].attrs,
            [
                LinkAttr {
                    name: "rt".into(),
                    value: AttrValue::Quoted("x y".into())
                },
                LinkAttr {
                    name: "ct".into(),
                    value: AttrValue::Token("40".into())
                },
                LinkAttr {
                    name: "obs".into(),
                    value: AttrValue::Flag
                },
                LinkAttr {
                    name: "title".into(),
                    value: AttrValue::Quoted("say \\\"hi\\\"".into())
                },
            ]
        );
        let mut out = String::new();
        links[0].render_resolved("coap://h", &mut out);
        assert_eq!(
            out,
            "<coap://h/a>;rt=\"x y\";ct=40;obs;title=\"say \\\"hi\\\"\""
        );
        // An empty quoted value stays quoted.
        let links = parse_payload("</a>;x=\"\";y=", 10).unwrap();
        let mut out = String::new();
        links[0].render_resolved("coap://h", &mut out);
        assert_eq!(out, "<coap://h/a>;x=\"\";y=");
    }

    #[test]
    fn anchors_resolve_and_limits_hold() {
        let doc = "<http://www.example.com/sensors/temp>;anchor=\"/sensors/temp\";rel=describedby,</e>;anchor=\"\"";
        let links = parse_payload(doc, 10).unwrap();
        let mut out = String::new();
        links[0].render_resolved("coap://h:1", &mut out);
        assert_eq!(
            out,
            "<http://www.example.com/sensors/temp>;anchor=\"coap://h:1/sensors/temp\";rel=describedby"
        );
        out.clear();
        links[1].render_resolved("coap://h:1", &mut out);
        assert_eq!(out, "<coap://h:1/e>;anchor=\"coap://h:1\"");
        assert_eq!(parse_payload(doc, 1), Err(PayloadError::TooManyLinks));
        assert!(matches!(
            parse_payload("</a", 10),
            Err(PayloadError::Syntax(_))
        ));
        assert_eq!(parse_payload("", 0), Ok(Vec::new()));
    }

    #[test]
    fn values_from_queries() {
        let mut out = String::new();
        write_value(&mut out, "node5");
        out.push(' ');
        write_value(&mut out, "tag:example.com,2020:platform");
        out.push(' ');
        write_value(&mut out, "a\"b");
        out.push(' ');
        write_value(&mut out, "");
        assert_eq!(
            out,
            "node5 \"tag:example.com,2020:platform\" \"a\\\"b\" \"\""
        );
    }
}
