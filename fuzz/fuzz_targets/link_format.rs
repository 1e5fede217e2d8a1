//! CoRE Link Format parsing and query filtering (RFC 6690 §2, §4.1).
//!
//! Every link and attribute of any UTF-8 input is iterated. Documents that parse without
//! error are serialised again and must parse to the same links; `matches_filter` is
//! checked against a few fixed filters and against properties that must hold for every
//! link (`*` matches exactly the links that have the attribute; every attribute value
//! matches itself).
#![no_main]

use corium_wire::{matches_filter, parse_links, Link};
use libfuzzer_sys::fuzz_target;

const FILTERS: &[(&str, &str)] = &[
    ("rt", "temperature-c"),
    ("if", "sensor*"),
    ("href", "/sensors*"),
    ("ct", "40"),
    ("title", "*"),
    ("RT", "light-lux"),
];

/// Whether `v` can be written between double quotes and read back unchanged.
fn is_quotable(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() => i += 2,
            b'\\' | b'"' => return false,
            _ => i += 1,
        }
    }
    true
}

type Owned = (String, Vec<(String, Option<String>)>);

fn owned(link: &Link<'_>) -> Owned {
    (
        link.target.to_owned(),
        link.attributes()
            .map(|a| (a.name.to_owned(), a.value.map(str::to_owned)))
            .collect(),
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut links = Vec::new();
    let mut failed = false;
    for item in parse_links(s) {
        match item {
            Ok(link) => links.push(link),
            Err(e) => {
                let _ = format!("{e} {e:?}");
                failed = true;
            }
        }
    }

    for link in &links {
        let _ = format!("{link:?}");
        assert!(!link.target.contains('>'), "{link:?}");
        for attr in link.attributes() {
            assert!(!attr.name.is_empty());
            assert!(link.attr(attr.name).is_some());
            if let Some(u) = attr.value_unescaped() {
                let bytes: Vec<u8> = u.collect();
                let text = String::from_utf8(bytes).expect("unescaping keeps UTF-8");
                if !attr.name.eq_ignore_ascii_case("href") {
                    // Every value matches itself (as an exact or, with a trailing `*`,
                    // as a prefix pattern).
                    assert!(
                        matches_filter(link, attr.name, &text),
                        "{link:?} does not match {}={text:?}",
                        attr.name
                    );
                    assert!(matches_filter(link, attr.name, &format!("{text}*")));
                }
            }
            for v in link.attr_values(attr.name) {
                assert!(!v.is_empty() && !v.contains(' '), "attr_values item {v:?}");
            }
        }
        assert!(matches_filter(link, "href", "*"));
        assert!(matches_filter(link, "href", link.target) || link.target.ends_with('*'));
        for &(name, pattern) in FILTERS {
            let m = matches_filter(link, name, pattern);
            if !name.eq_ignore_ascii_case("href") {
                if pattern == "*" {
                    assert_eq!(m, link.attr(name).is_some(), "{link:?} {name}=*");
                }
                if m {
                    assert!(link.attr(name).is_some());
                }
            }
        }
    }

    // Serialise a fully valid document and parse it again.
    if !failed {
        let mut doc = String::new();
        for (i, link) in links.iter().enumerate() {
            if i > 0 {
                doc.push(',');
            }
            doc.push('<');
            doc.push_str(link.target);
            doc.push('>');
            for attr in link.attributes() {
                doc.push(';');
                doc.push_str(attr.name);
                if let Some(v) = attr.value {
                    doc.push('=');
                    if is_quotable(v) {
                        doc.push('"');
                        doc.push_str(v);
                        doc.push('"');
                    } else {
                        doc.push_str(v);
                    }
                }
            }
        }
        let reparsed: Vec<Owned> = parse_links(&doc)
            .map(|l| l.unwrap_or_else(|e| panic!("re-serialised {doc:?} fails: {e:?}")))
            .map(|l| owned(&l))
            .collect();
        let original: Vec<Owned> = links.iter().map(owned).collect();
        assert_eq!(reparsed, original, "input {s:?}\nre-serialised {doc:?}");
    }
});
