//! Query parameters of the registration interface (RFC 9176 §5, §5.3.1, §9.3) and of
//! the lookup interface (RFC 9176 §6.2).

use crate::config::{MAX_ATTR_NAME_LEN, MAX_ATTR_VALUE_LEN, MAX_NAME_LEN};
use crate::error::RdError;
use crate::uri;

/// Names that cannot be stored as endpoint attributes: they are lookup parameters
/// (`page`, `count`, RFC 9176 §6.2) or would make the endpoint link ambiguous (`href`,
/// `anchor`, `rel`, and `rt`, which is always `core.rd-ep`, RFC 9176 §6.4).
const RESERVED: &[&str] = &["page", "count", "href", "anchor", "rel", "rt"];

/// The parameters of a registration (RFC 9176 §5) or registration update (§5.3.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistrationParams {
    /// `ep`, the endpoint name.
    pub ep: Option<String>,
    /// `d`, the sector.
    pub sector: Option<String>,
    /// `lt`, the lifetime in seconds (1–4294967295).
    pub lifetime: Option<u32>,
    /// `base`, the base URI of the registration.
    pub base: Option<String>,
    /// Any other parameter (`et`, and unknown ones, which RFC 9176 §5 says "MUST" be
    /// stored): name and value (`None` for a parameter without `=`), in order.
    pub extra_attrs: Vec<(String, Option<String>)>,
}

/// RFC 9176 §5: an endpoint name or sector is a non-empty Unicode string of at most
/// 63 bytes without characters in 0-31 or 127-159.
fn check_name(what: &str, value: &str) -> Result<(), RdError> {
    if value.is_empty() {
        return Err(RdError::bad(format!("{what} must not be empty")));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(RdError::bad(format!(
            "{what} is longer than {MAX_NAME_LEN} bytes"
        )));
    }
    if value
        .chars()
        .any(|c| matches!(u32::from(c), 0..=31 | 127..=159))
    {
        return Err(RdError::bad(format!("{what} contains a control character")));
    }
    Ok(())
}

/// RFC 7230 `tchar`: RFC 9176 §9.3 requires parameter names to be tokens.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

fn set_once(slot: &mut Option<String>, name: &str, value: String) -> Result<(), RdError> {
    if slot.is_some() {
        return Err(RdError::bad(format!("{name} given twice")));
    }
    *slot = Some(value);
    Ok(())
}

impl RegistrationParams {
    /// Parses the Uri-Query arguments (already percent-decoded) of a registration or an
    /// update, validating each parameter. At most `max_extra_attrs` extra attributes.
    pub fn from_query<'a>(
        args: impl IntoIterator<Item = &'a [u8]>,
        max_extra_attrs: usize,
    ) -> Result<RegistrationParams, RdError> {
        let mut params = RegistrationParams::default();
        for arg in args {
            let arg = std::str::from_utf8(arg)
                .map_err(|_| RdError::bad("query parameters must be UTF-8"))?;
            let (name, value) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (arg, None),
            };
            match (name, value) {
                ("ep", Some(v)) => {
                    check_name("ep", v)?;
                    set_once(&mut params.ep, "ep", v.to_owned())?;
                }
                ("d", Some(v)) => {
                    check_name("d", v)?;
                    set_once(&mut params.sector, "d", v.to_owned())?;
                }
                ("lt", Some(v)) => {
                    if params.lifetime.is_some() {
                        return Err(RdError::bad("lt given twice"));
                    }
                    let lt = v
                        .parse::<u32>()
                        .ok()
                        .filter(|lt| *lt >= 1 && v.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| {
                            RdError::bad("lt must be an integer from 1 to 4294967295")
                        })?;
                    params.lifetime = Some(lt);
                }
                ("base", Some(v)) => {
                    uri::validate_base(v).map_err(|e| RdError::bad(e.as_str()))?;
                    set_once(&mut params.base, "base", v.to_owned())?;
                }
                ("ep" | "d" | "lt" | "base", None) => {
                    return Err(RdError::bad(format!("{name} needs a value")));
                }
                _ => {
                    if RESERVED.iter().any(|r| name.eq_ignore_ascii_case(r)) {
                        return Err(RdError::bad(format!(
                            "{name} cannot be an endpoint attribute"
                        )));
                    }
                    if !is_token(name) || name.len() > MAX_ATTR_NAME_LEN {
                        return Err(RdError::bad(format!("invalid parameter name {name:?}")));
                    }
                    if let Some(v) = value {
                        if v.len() > MAX_ATTR_VALUE_LEN || v.chars().any(char::is_control) {
                            return Err(RdError::bad(format!("invalid value for {name}")));
                        }
                    }
                    if params.extra_attrs.len() >= max_extra_attrs {
                        return Err(RdError::bad(format!(
                            "more than {max_extra_attrs} endpoint attributes"
                        )));
                    }
                    params
                        .extra_attrs
                        .push((name.to_owned(), value.map(str::to_owned)));
                }
            }
        }
        Ok(params)
    }
}

/// The parameters of a lookup (RFC 9176 §6.2): search criteria, `page` and `count`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LookupQuery {
    /// Search criteria `name=value` (a trailing `*` matches by prefix, RFC 6690 §4.1); a
    /// parameter without `=` matches links that have the attribute (`value` `*`).
    pub criteria: Vec<(String, String)>,
    /// `page`: which page of `count` links (needs `count`).
    pub page: Option<u64>,
    /// `count`: how many links at most.
    pub count: Option<u64>,
}

impl LookupQuery {
    /// Parses the Uri-Query arguments (already percent-decoded) of a lookup.
    pub fn from_query<'a>(
        args: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<LookupQuery, RdError> {
        let mut query = LookupQuery::default();
        for arg in args {
            let arg = std::str::from_utf8(arg)
                .map_err(|_| RdError::bad("query parameters must be UTF-8"))?;
            let (name, value) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (arg, None),
            };
            let number = |slot: &mut Option<u64>| -> Result<(), RdError> {
                let n = value
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| {
                        RdError::bad(format!("{name} must be a non-negative integer"))
                    })?;
                if slot.replace(n).is_some() {
                    return Err(RdError::bad(format!("{name} given twice")));
                }
                Ok(())
            };
            match name {
                "page" => number(&mut query.page)?,
                "count" => number(&mut query.count)?,
                "" => return Err(RdError::bad("empty search criterion")),
                _ => query
                    .criteria
                    .push((name.to_owned(), value.unwrap_or("*").to_owned())),
            }
        }
        if query.page.is_some() && query.count.is_none() {
            return Err(RdError::bad("page cannot be used without count"));
        }
        Ok(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(q: &[&str]) -> Result<RegistrationParams, RdError> {
        RegistrationParams::from_query(q.iter().map(|s| s.as_bytes()), 4)
    }

    fn look(q: &[&str]) -> Result<LookupQuery, RdError> {
        LookupQuery::from_query(q.iter().map(|s| s.as_bytes()))
    }

    #[test]
    fn registration_parameters() {
        let p = reg(&[
            "ep=node1",
            "d=floor-3",
            "lt=500",
            "base=coap://[2001:db8::1]",
            "et=tag:example.com,2020:platform",
            "flag",
        ])
        .unwrap();
        assert_eq!(p.ep.as_deref(), Some("node1"));
        assert_eq!(p.sector.as_deref(), Some("floor-3"));
        assert_eq!(p.lifetime, Some(500));
        assert_eq!(p.base.as_deref(), Some("coap://[2001:db8::1]"));
        assert_eq!(
            p.extra_attrs,
            [
                ("et".into(), Some("tag:example.com,2020:platform".into())),
                ("flag".into(), None)
            ]
        );
        assert_eq!(reg(&["lt=4294967295"]).unwrap().lifetime, Some(u32::MAX));
        let bad: &[&[&str]] = &[
            &["ep="],
            &["ep"],
            &["ep=a", "ep=b"],
            &["ep=a\u{7}"],
            &["ep=a\u{85}"],
            &["d=0123456789012345678901234567890123456789012345678901234567890123"],
            &["lt=0"],
            &["lt=4294967296"],
            &["lt=+5"],
            &["lt=x"],
            &["base=/rel"],
            &["base=coap://[fe80::1%25eth0]"],
            &["page=1"],
            &["rt=x"],
            &["bad name=1"],
            &["a=1", "b=2", "c=3", "d1=4", "e=5"],
        ];
        for q in bad {
            let err = reg(q).unwrap_err();
            assert_eq!(err.code(), corium::Code::BAD_REQUEST, "{q:?}");
        }
        // 63 bytes of UTF-8 are fine.
        let name = "é".repeat(31) + "x";
        assert_eq!(name.len(), 63);
        assert!(reg(&[&format!("ep={name}")]).is_ok());
        assert!(RegistrationParams::from_query([&b"ep=\xff"[..]], 4).is_err());
    }

    #[test]
    fn lookup_parameters() {
        let q = look(&["rt=temp*", "page=2", "count=5", "obs"]).unwrap();
        assert_eq!(
            q.criteria,
            [("rt".into(), "temp*".into()), ("obs".into(), "*".into())]
        );
        assert_eq!((q.page, q.count), (Some(2), Some(5)));
        assert!(look(&["page=1"]).is_err());
        assert!(look(&["count=-1"]).is_err());
        assert!(look(&["count="]).is_err());
        assert!(look(&["count=1", "count=2"]).is_err());
        assert!(look(&["=x"]).is_err());
        assert_eq!(look(&[]).unwrap(), LookupQuery::default());
    }
}
