//! The CoRE link format in JSON and CBOR (`application/link-format+json`, Content-Format
//! 504, and `application/link-format+cbor`, 64; draft-ietf-core-links-json-10, which
//! RFC 9176 §6 and §9 mention as alternatives to RFC 6690 link format).
//!
//! The draft's information model, as its CDDL states it (checked against the CDDL and
//! examples of -06/-07 as quoted by third parties; the -10 text itself could not be
//! consulted, see the `draft_example_*` tests):
//!
//! ```text
//! links = [* link]
//! link = { href: tstr, * label => tstr / true }
//! label = tstr / &(href: 1, rel: 2, anchor: 3, rev: 4, hreflang: 5, media: 6,
//!                  title: 7, type: 8, rt: 9, if: 10, sz: 11, ct: 12, obs: 13)
//! ```
//!
//! A document is an array of links; a link is a map whose `href` member is the target
//! and whose other members are the target attributes in document order: a text value
//! (also for numeric attributes: the draft's example carries `ct=40` as `"ct":"40"`),
//! or `true` for an attribute without value (`obs`). In CBOR the names in the table
//! above are replaced by their integers; other names stay text.
//!
//! Beyond that CDDL, and only because a map cannot repeat a key: an attribute that
//! occurs several times in link format is carried as an array of its values. On
//! input, unsigned integers are accepted in place of text values and converted to
//! their decimal form.
//!
//! The RD keeps link format: a JSON or CBOR registration payload is converted to link
//! format on arrival, and a lookup result is converted from link format when the
//! request's Accept asks for JSON or CBOR.

use corium::wire::{parse_links, unescape};
use serde_json::{Map, Value};

use crate::error::RdError;
use crate::links;

/// `application/link-format+cbor`.
pub(crate) const LINK_FORMAT_CBOR: u16 = 64;
/// `application/link-format+json`.
pub(crate) const LINK_FORMAT_JSON: u16 = 504;

/// The CBOR keys of draft-ietf-core-links-json-10 (the `label` choice of its CDDL),
/// index + 1.
const CBOR_KEYS: [&str; 13] = [
    "href", "rel", "anchor", "rev", "hreflang", "media", "title", "type", "rt", "if", "sz", "ct",
    "obs",
];

/// Nesting a peer's document may not exceed (array of maps of arrays).
const MAX_LINKS: usize = 1 << 16;

fn bad(why: impl Into<String>) -> RdError {
    RdError::bad(format!("malformed link format document: {}", why.into()))
}

/// An attribute value in the neutral form.
enum AttrValue {
    Flag,
    Text(String),
}

/// One link: target and attributes in order.
struct Link {
    href: String,
    attrs: Vec<(String, AttrValue)>,
}

fn check_name(name: &str) -> Result<(), RdError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~*".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(bad(format!("{name:?} is not an attribute name")))
    }
}

/// Renders links as RFC 6690 link format.
fn to_link_format(links: &[Link]) -> Result<String, RdError> {
    let mut out = String::new();
    for (i, link) in links.iter().enumerate() {
        if link.href.contains(['<', '>']) || link.href.chars().any(char::is_control) {
            return Err(bad("href is not a URI reference"));
        }
        if i > 0 {
            out.push(',');
        }
        out.push('<');
        out.push_str(&link.href);
        out.push('>');
        for (name, value) in &link.attrs {
            check_name(name)?;
            out.push(';');
            out.push_str(name);
            if let AttrValue::Text(v) = value {
                out.push('=');
                links::write_value(&mut out, v);
            }
        }
    }
    Ok(out)
}

/// Parses an RFC 6690 document into the neutral form (values unescaped).
fn from_link_format(doc: &str) -> Vec<Link> {
    parse_links(doc)
        .filter_map(Result::ok)
        .map(|l| Link {
            href: l.target.to_owned(),
            attrs: l
                .attributes()
                .map(|a| {
                    let value = match a.value {
                        None => AttrValue::Flag,
                        Some(v) => {
                            let bytes: Vec<u8> = unescape(v).collect();
                            AttrValue::Text(String::from_utf8_lossy(&bytes).into_owned())
                        }
                    };
                    (a.name.to_owned(), value)
                })
                .collect(),
        })
        .collect()
}

/// Converts a JSON link document to link format.
pub(crate) fn json_to_link_format(payload: &[u8]) -> Result<String, RdError> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let Value::Array(items) = value else {
        return Err(bad("not an array of links"));
    };
    let mut links = Vec::with_capacity(items.len().min(MAX_LINKS));
    for item in items {
        let Value::Object(map) = item else {
            return Err(bad("a link is not an object"));
        };
        let mut href = None;
        let mut attrs = Vec::new();
        for (name, value) in map {
            match (name.as_str(), value) {
                ("href", Value::String(s)) => href = Some(s),
                ("href", _) => return Err(bad("href is not a string")),
                (_, Value::String(s)) => attrs.push((name, AttrValue::Text(s))),
                (_, Value::Bool(true)) => attrs.push((name, AttrValue::Flag)),
                (_, Value::Array(values)) => {
                    for v in values {
                        let Value::String(s) = v else {
                            return Err(bad(format!("a value of {name} is not a string")));
                        };
                        attrs.push((name.clone(), AttrValue::Text(s)));
                    }
                }
                (_, Value::Number(n)) => attrs.push((name, AttrValue::Text(n.to_string()))),
                _ => return Err(bad(format!("unexpected value of {name}"))),
            }
        }
        links.push(Link {
            href: href.ok_or_else(|| bad("a link without href"))?,
            attrs,
        });
    }
    to_link_format(&links)
}

/// Converts link format to a JSON link document.
pub(crate) fn link_format_to_json(doc: &str) -> Vec<u8> {
    let items: Vec<Value> = from_link_format(doc)
        .into_iter()
        .map(|link| {
            let mut map = Map::new();
            map.insert("href".into(), Value::String(link.href));
            for (name, value) in link.attrs {
                let value = match value {
                    AttrValue::Flag => Value::Bool(true),
                    AttrValue::Text(s) => Value::String(s),
                };
                match map.get_mut(&name) {
                    Some(Value::Array(values)) => values.push(value),
                    Some(first) => {
                        let first = std::mem::replace(first, Value::Null);
                        map.insert(name, Value::Array(vec![first, value]));
                    }
                    None => {
                        map.insert(name, value);
                    }
                }
            }
            Value::Object(map)
        })
        .collect();
    serde_json::to_vec(&Value::Array(items)).unwrap_or_default()
}

fn cbor_text(d: &mut minicbor::Decoder<'_>) -> Result<String, minicbor::decode::Error> {
    use minicbor::data::Type;
    Ok(match d.datatype()? {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => d.u64()?.to_string(),
        _ => d.str()?.to_owned(),
    })
}

fn decode_cbor(payload: &[u8]) -> Result<Vec<Link>, minicbor::decode::Error> {
    use minicbor::data::Type;
    use minicbor::decode::Error;
    let mut d = minicbor::Decoder::new(payload);
    let n = d
        .array()?
        .ok_or_else(|| Error::message("indefinite array"))?;
    let mut links = Vec::new();
    for _ in 0..n {
        let m = d.map()?.ok_or_else(|| Error::message("indefinite map"))?;
        let mut href = None;
        let mut attrs = Vec::new();
        for _ in 0..m {
            let name = match d.datatype()? {
                Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
                    let k = d.u64()?;
                    let index = usize::try_from(k).unwrap_or(usize::MAX);
                    CBOR_KEYS
                        .get(index.wrapping_sub(1))
                        .ok_or_else(|| Error::message("unknown attribute key"))?
                        .to_string()
                }
                _ => d.str()?.to_owned(),
            };
            if name == "href" {
                href = Some(d.str()?.to_owned());
                continue;
            }
            match d.datatype()? {
                Type::Bool => {
                    if !d.bool()? {
                        return Err(Error::message("false as attribute value"));
                    }
                    attrs.push((name, AttrValue::Flag));
                }
                Type::Array => {
                    let k = d
                        .array()?
                        .ok_or_else(|| Error::message("indefinite array"))?;
                    for _ in 0..k {
                        attrs.push((name.clone(), AttrValue::Text(cbor_text(&mut d)?)));
                    }
                }
                _ => attrs.push((name, AttrValue::Text(cbor_text(&mut d)?))),
            }
        }
        links.push(Link {
            href: href.ok_or_else(|| Error::message("a link without href"))?,
            attrs,
        });
    }
    if d.position() != payload.len() {
        return Err(Error::message("trailing bytes"));
    }
    Ok(links)
}

/// Converts a CBOR link document to link format.
pub(crate) fn cbor_to_link_format(payload: &[u8]) -> Result<String, RdError> {
    let links = decode_cbor(payload).map_err(|e| bad(format!("invalid CBOR: {e}")))?;
    to_link_format(&links)
}

/// Converts link format to a CBOR link document (with the integer keys).
pub(crate) fn link_format_to_cbor(doc: &str) -> Vec<u8> {
    let links = from_link_format(doc);
    let mut out = Vec::new();
    let mut e = minicbor::Encoder::new(&mut out);
    // Writing to a Vec cannot fail.
    let _ = (|| -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
        e.array(links.len() as u64)?;
        for link in &links {
            // Group repeated attributes, keeping first-occurrence order.
            let mut groups: Vec<(&str, Vec<&AttrValue>)> = Vec::new();
            for (name, value) in &link.attrs {
                match groups.iter_mut().find(|(n, _)| n == name) {
                    Some((_, values)) => values.push(value),
                    None => groups.push((name, vec![value])),
                }
            }
            e.map(1 + groups.len() as u64)?;
            e.u8(1)?.str(&link.href)?;
            for (name, values) in &groups {
                match CBOR_KEYS.iter().position(|k| k == name) {
                    Some(i) => e.u8((i + 1) as u8)?,
                    None => e.str(name)?,
                };
                let one = |e: &mut minicbor::Encoder<&mut Vec<u8>>, v: &AttrValue| match v {
                    AttrValue::Flag => e.bool(true).map(drop),
                    AttrValue::Text(s) => e.str(s).map(drop),
                };
                if values.len() == 1 {
                    one(&mut e, values[0])?;
                } else {
                    e.array(values.len() as u64)?;
                    for v in values {
                        one(&mut e, v)?;
                    }
                }
            }
        }
        Ok(())
    })();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "</sensors/temp>;rt=\"temperature-c sensor\";if=sensor;obs,\
                       <http://www.example.com/t>;anchor=\"/sensors/temp\";rel=describedby;rel=alternate";

    #[test]
    fn json_round_trip() {
        let json = link_format_to_json(DOC);
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            "[{\"href\":\"/sensors/temp\",\"rt\":\"temperature-c sensor\",\"if\":\"sensor\",\"obs\":true},\
             {\"href\":\"http://www.example.com/t\",\"anchor\":\"/sensors/temp\",\"rel\":[\"describedby\",\"alternate\"]}]"
        );
        let back = json_to_link_format(&json).unwrap();
        assert_eq!(
            back,
            "</sensors/temp>;rt=\"temperature-c sensor\";if=sensor;obs,\
             <http://www.example.com/t>;anchor=\"/sensors/temp\";rel=describedby;rel=alternate"
        );
        assert_eq!(link_format_to_json(&back), json);
    }

    #[test]
    fn cbor_round_trip_uses_integer_keys() {
        let cbor = link_format_to_cbor("</a>;rt=x;ct=40;obs;foo=\"b\\\"c\"");
        // [{1: "/a", 9: "x", 12: "40", 13: true, "foo": "b\"c"}]
        let mut expected = vec![
            0x81, 0xa5, 0x01, 0x62, b'/', b'a', 0x09, 0x61, b'x', 0x0c, 0x62,
        ];
        expected.extend_from_slice(b"40");
        expected.extend_from_slice(&[0x0d, 0xf5, 0x63]);
        expected.extend_from_slice(b"foo");
        expected.extend_from_slice(&[0x63, b'b', b'"', b'c']);
        assert_eq!(cbor, expected);
        assert_eq!(
            cbor_to_link_format(&cbor).unwrap(),
            "</a>;rt=x;ct=40;obs;foo=\"b\\\"c\""
        );
        let doc = link_format_to_cbor(DOC);
        assert_eq!(
            link_format_to_cbor(&cbor_to_link_format(&doc).unwrap()),
            doc
        );
    }

    /// The draft's example: a `/.well-known/core` response in link format (the draft
    /// breaks it over lines for presentation only).
    const DRAFT_LF: &str = "</sensors>;ct=40;title=\"Sensor Index\",\
                            </sensors/temp>;rt=\"temperature-c\";if=\"sensor\",\
                            </sensors/light>;rt=\"light-lux\";if=\"sensor\",\
                            <http://www.example.com/sensors/t123>;anchor=\"/sensors/temp\";rel=\"describedby\",\
                            </t>;anchor=\"/sensors/temp\";rel=\"alternate\"";

    /// The same in the draft's JSON example (line breaks removed).
    const DRAFT_JSON: &str = "[{\"href\":\"/sensors\",\"ct\":\"40\",\"title\":\"Sensor Index\"},\
                              {\"href\":\"/sensors/temp\",\"rt\":\"temperature-c\",\"if\":\"sensor\"},\
                              {\"href\":\"/sensors/light\",\"rt\":\"light-lux\",\"if\":\"sensor\"},\
                              {\"href\":\"http://www.example.com/sensors/t123\",\"anchor\":\"/sensors/temp\",\"rel\":\"describedby\"},\
                              {\"href\":\"/t\",\"anchor\":\"/sensors/temp\",\"rel\":\"alternate\"}]";

    /// The draft's CBOR example, encoded from its diagnostic notation
    /// `[{1: "/sensors", 12: "40", 7: "Sensor Index"},
    ///   {1: "/sensors/temp", 9: "temperature-c", 10: "sensor"},
    ///   {1: "/sensors/light", 9: "light-lux", 10: "sensor"},
    ///   {1: "http://www.example.com/sensors/t123", 3: "/sensors/temp", 2: "describedby"},
    ///   {1: "/t", 3: "/sensors/temp", 2: "alternate"}]`
    /// with definite lengths and shortest heads; the draft gives its size as 203 bytes.
    fn draft_cbor() -> Vec<u8> {
        let mut b = vec![0x85];
        b.extend_from_slice(b"\xa3\x01\x68/sensors\x0c\x6240\x07\x6cSensor Index");
        b.extend_from_slice(b"\xa3\x01\x6d/sensors/temp\x09\x6dtemperature-c\x0a\x66sensor");
        b.extend_from_slice(b"\xa3\x01\x6e/sensors/light\x09\x69light-lux\x0a\x66sensor");
        b.extend_from_slice(b"\xa3\x01\x78\x23http://www.example.com/sensors/t123");
        b.extend_from_slice(b"\x03\x6d/sensors/temp\x02\x6bdescribedby");
        b.extend_from_slice(b"\xa3\x01\x62/t\x03\x6d/sensors/temp\x02\x69alternate");
        b
    }

    /// What the draft's example reads as once converted back (values re-quoted only
    /// where RFC 6690 needs it).
    const DRAFT_LF_BACK: &str = "</sensors>;ct=40;title=\"Sensor Index\",\
                                 </sensors/temp>;rt=temperature-c;if=sensor,\
                                 </sensors/light>;rt=light-lux;if=sensor,\
                                 <http://www.example.com/sensors/t123>;anchor=\"/sensors/temp\";rel=describedby,\
                                 </t>;anchor=\"/sensors/temp\";rel=alternate";

    #[test]
    fn draft_example_json() {
        assert_eq!(
            String::from_utf8(link_format_to_json(DRAFT_LF)).unwrap(),
            DRAFT_JSON
        );
        assert_eq!(
            json_to_link_format(DRAFT_JSON.as_bytes()).unwrap(),
            DRAFT_LF_BACK
        );
    }

    #[test]
    fn draft_example_cbor() {
        let expected = draft_cbor();
        assert_eq!(expected.len(), 203);
        assert_eq!(link_format_to_cbor(DRAFT_LF), expected);
        assert_eq!(cbor_to_link_format(&expected).unwrap(), DRAFT_LF_BACK);
    }

    #[test]
    fn draft_example_json_and_cbor_agree() {
        let via_json = json_to_link_format(DRAFT_JSON.as_bytes()).unwrap();
        assert_eq!(link_format_to_cbor(&via_json), draft_cbor());
        let via_cbor = cbor_to_link_format(&draft_cbor()).unwrap();
        assert_eq!(
            String::from_utf8(link_format_to_json(&via_cbor)).unwrap(),
            DRAFT_JSON
        );
    }

    #[test]
    fn bad_documents_are_refused() {
        for json in [
            &b"{}"[..],
            b"[1]",
            b"[{\"rt\":\"x\"}]",
            b"[{\"href\":\"/a>\"}]",
            b"[{\"href\":\"/a\",\"r t\":\"x\"}]",
            b"[{\"href\":\"/a\",\"x\":false}]",
            b"[{\"href\":\"/a\"",
        ] {
            assert!(json_to_link_format(json).is_err(), "{json:?}");
        }
        for cbor in [
            &b"\xa0"[..],
            b"\x81\xa1\x0e\x61x",
            b"\x81\xa0",
            b"\x80\x00",
            b"\x81",
        ] {
            assert!(cbor_to_link_format(cbor).is_err(), "{cbor:?}");
        }
        assert_eq!(json_to_link_format(b"[]").unwrap(), "");
    }
}
