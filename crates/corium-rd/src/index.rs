//! The attribute index of lookups (RFC 9176 §6): which registrations have a link (or
//! endpoint link) with a given attribute value, so that a filtered lookup touches only
//! the registrations that can match instead of scanning all of them.
//!
//! The index is a superset filter: a registration is a candidate for the criterion
//! `name=pattern` if one of its links has an attribute `name` (ASCII case-insensitive)
//! whose value, or one of whose space-separated tokens, equals `pattern` (or starts
//! with it, for a trailing `*`; RFC 6690 §4.1), escapes resolved, exactly the values
//! [`corium::wire::matches_filter`] compares. The lookup then applies the exact
//! filtering of RFC 9176 §6.2 to the candidates only, so results are the same as a
//! full scan's, in the same order (ascending registration id).
//!
//! `href` (compared with link targets, which are mostly unique) and `anchor` are not
//! indexed: a criterion on them alone scans, like a lookup without criteria.

use std::collections::BTreeMap;

use corium::wire::{parse_links, unescape};

/// Attribute names not indexed (see the module documentation).
const NOT_INDEXED: [&str; 2] = ["href", "anchor"];

/// Whether criteria on `name` can use the index.
pub(crate) fn is_indexed(name: &str) -> bool {
    !NOT_INDEXED.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// One index key: the lower-cased attribute name and a value (escapes resolved).
type Key = (Box<str>, Box<str>);

/// `(name, value)` → ascending ids of the registrations that have it.
#[derive(Debug, Default)]
pub(crate) struct AttrIndex {
    postings: BTreeMap<Key, Vec<u64>>,
}

fn unescaped(raw: &str) -> Box<str> {
    let bytes: Vec<u8> = unescape(raw).collect();
    match String::from_utf8(bytes) {
        Ok(s) => s.into_boxed_str(),
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into(),
    }
}

/// The index keys of the links in `texts` (each text one link), sorted and without
/// duplicates.
pub(crate) fn keys_of<'a>(texts: impl Iterator<Item = &'a str>) -> Vec<Key> {
    let mut keys = Vec::new();
    for text in texts {
        let Some(Ok(link)) = parse_links(text).next() else {
            continue;
        };
        for attr in link.attributes() {
            if !is_indexed(attr.name) {
                continue;
            }
            let name: Box<str> = attr.name.to_ascii_lowercase().into_boxed_str();
            let raw = attr.value.unwrap_or("");
            if raw.contains(' ') {
                for token in raw.split(' ').filter(|t| !t.is_empty()) {
                    keys.push((name.clone(), unescaped(token)));
                }
            }
            keys.push((name, unescaped(raw)));
        }
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

impl AttrIndex {
    /// Records that registration `id` has `keys`.
    pub(crate) fn insert(&mut self, id: u64, keys: Vec<Key>) {
        for key in keys {
            let ids = self.postings.entry(key).or_default();
            match ids.last() {
                // New ids are the highest: the common case appends.
                Some(&last) if last < id => ids.push(id),
                None => ids.push(id),
                _ => {
                    if let Err(at) = ids.binary_search(&id) {
                        ids.insert(at, id);
                    }
                }
            }
        }
    }

    /// Forgets that registration `id` has `keys`.
    pub(crate) fn remove(&mut self, id: u64, keys: &[Key]) {
        for key in keys {
            if let Some(ids) = self.postings.get_mut(key) {
                if let Ok(at) = ids.binary_search(&id) {
                    ids.remove(at);
                }
                if ids.is_empty() {
                    self.postings.remove(key);
                }
            }
        }
    }

    /// The ascending ids of the registrations that may match `name=pattern`, or `None`
    /// when the index cannot narrow it down (`name` not indexed, or more than `limit`
    /// candidates: scanning is then as cheap).
    pub(crate) fn candidates(&self, name: &str, pattern: &str, limit: usize) -> Option<Vec<u64>> {
        if !is_indexed(name) {
            return None;
        }
        let name = name.to_ascii_lowercase();
        match pattern.strip_suffix('*') {
            None => {
                let key: Key = (name.into_boxed_str(), pattern.into());
                let ids = self.postings.get(&key).map_or(&[][..], Vec::as_slice);
                (ids.len() <= limit).then(|| ids.to_vec())
            }
            Some(stem) => {
                let from: Key = (name.clone().into_boxed_str(), stem.into());
                let mut out: Vec<u64> = Vec::new();
                let mut lists = 0usize;
                for ((n, v), ids) in self.postings.range(from..) {
                    if **n != *name || !v.starts_with(stem) {
                        break;
                    }
                    out.extend_from_slice(ids);
                    lists += 1;
                    if out.len() > limit.saturating_mul(2) {
                        return None;
                    }
                }
                if lists > 1 {
                    out.sort_unstable();
                    out.dedup();
                }
                (out.len() <= limit).then_some(out)
            }
        }
    }

    /// Keys held (for tests and statistics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.postings.len()
    }
}

/// The ids in both ascending lists.
pub(crate) fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_mirror_filter_values() {
        let keys = keys_of(
            [
                "<coap://h/a>;rt=\"temp hum\";Title=\"a \\\"q\\\"\";obs;anchor=\"coap://h\"",
                "<coap://h/b>;rt=temp",
            ]
            .into_iter(),
        );
        let names: Vec<(&str, &str)> = keys.iter().map(|(n, v)| (&**n, &**v)).collect();
        assert_eq!(
            names,
            [
                ("obs", ""),
                ("rt", "hum"),
                ("rt", "temp"),
                ("rt", "temp hum"),
                ("title", "\"q\""),
                ("title", "a"),
                ("title", "a \"q\""),
            ]
        );
    }

    #[test]
    fn candidates_exact_prefix_and_limits() {
        let mut index = AttrIndex::default();
        index.insert(3, keys_of(["</a>;rt=temp;if=x"].into_iter()));
        index.insert(1, keys_of(["</a>;rt=temperature"].into_iter()));
        index.insert(7, keys_of(["</a>;RT=hum"].into_iter()));
        assert_eq!(index.candidates("rt", "temp", 10), Some(vec![3]));
        assert_eq!(index.candidates("RT", "temp*", 10), Some(vec![1, 3]));
        assert_eq!(index.candidates("rt", "*", 10), Some(vec![1, 3, 7]));
        assert_eq!(index.candidates("rt", "*", 2), None);
        assert_eq!(index.candidates("rt", "cold", 10), Some(vec![]));
        assert_eq!(index.candidates("href", "/a", 10), None);
        index.remove(3, &keys_of(["</a>;rt=temp;if=x"].into_iter()));
        assert_eq!(index.candidates("rt", "temp*", 10), Some(vec![1]));
        assert_eq!(index.candidates("if", "x", 10), Some(vec![]));
        assert_eq!(index.len(), 2);
        assert_eq!(intersect(&[1, 3, 5, 9], &[2, 3, 9, 10]), [3, 9]);
    }
}
