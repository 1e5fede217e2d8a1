//! Large responses kept for their later Block2 blocks (RFC 7959 §2.7).
//!
//! A POST, PUT, DELETE, PATCH or iPATCH must not run again for each block: that would
//! repeat its effect, and the follow-up requests for blocks 1, 2, … carry no payload. A
//! GET or FETCH could be answered again, but that costs a handler run and a copy of the
//! whole representation per block (quadratic for large ones). So the whole response is
//! kept here once block 0 went out, the follow-ups are served from it without the
//! application, and the entry goes when the last block went out. Entries also expire,
//! and the table has a hard limit on entries and bytes; a GET whose entry is gone is
//! answered again.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::hash::Hash;
use core::time::Duration;

use corium_wire::{BlockValue, Code, OptionNumber};
use hashbrown::HashMap;

use crate::blockwise;
use crate::message::{Options, Response};
use crate::time::Instant;

/// Options that differ between the blocks of one transfer, or only describe it.
pub(crate) const NOT_PART_OF_THE_KEY: &[OptionNumber] = &[
    OptionNumber::BLOCK1,
    OptionNumber::BLOCK2,
    OptionNumber::SIZE1,
    OptionNumber::SIZE2,
    OptionNumber::NO_RESPONSE,
    OptionNumber::ECHO,
    OptionNumber::REQUEST_TAG,
    OptionNumber::CONTENT_FORMAT,
];

/// Whether responses to this method are kept for Block2 follow-ups.
pub(crate) fn is_unsafe_method(method: Code) -> bool {
    !matches!(method, Code::GET | Code::FETCH)
}

/// The key of a block-wise transfer: the request's method and its options except those in
/// `skip`, serialized so it can key a hash map.
pub(crate) fn request_key(method: Code, options: &Options, skip: &[OptionNumber]) -> Vec<u8> {
    request_key_inline(method, options, skip).into_vec()
}

/// [`request_key`] kept inline when it is short (the key of a GET with a path or two):
/// every request computes one, and this keeps the plain GET path free of allocations.
pub(crate) fn request_key_inline(
    method: Code,
    options: &Options,
    skip: &[OptionNumber],
) -> RequestKey {
    let mut key = RequestKey::Inline(0, [0; KEY_INLINE]);
    key.extend(&[method.0]);
    for (number, value) in options.iter() {
        if skip.contains(&number) {
            continue;
        }
        key.extend(&number.0.to_be_bytes());
        key.extend(&(value.len() as u32).to_be_bytes());
        key.extend(value);
    }
    key
}

/// Request keys up to this many bytes stay inline in a [`RequestKey`].
const KEY_INLINE: usize = 40;

/// A request key ([`request_key`]): inline when short, on the heap otherwise.
#[derive(Clone, Debug)]
pub(crate) enum RequestKey {
    /// `bytes[..len]`.
    Inline(u8, [u8; KEY_INLINE]),
    Heap(Vec<u8>),
}

impl RequestKey {
    fn extend(&mut self, data: &[u8]) {
        match self {
            RequestKey::Inline(len, bytes) => {
                let at = usize::from(*len);
                if let Some(room) = bytes.get_mut(at..at + data.len()) {
                    room.copy_from_slice(data);
                    // At most KEY_INLINE (< 256).
                    *len += data.len() as u8;
                } else {
                    let mut heap = Vec::with_capacity(2 * (at + data.len()));
                    heap.extend_from_slice(&bytes[..at]);
                    heap.extend_from_slice(data);
                    *self = RequestKey::Heap(heap);
                }
            }
            RequestKey::Heap(heap) => heap.extend_from_slice(data),
        }
    }

    /// The key's bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            RequestKey::Inline(len, bytes) => &bytes[..usize::from(*len)],
            RequestKey::Heap(heap) => heap,
        }
    }

    /// The key's bytes, owned.
    pub(crate) fn into_vec(self) -> Vec<u8> {
        match self {
            RequestKey::Inline(len, bytes) => bytes[..usize::from(len)].to_vec(),
            RequestKey::Heap(heap) => heap,
        }
    }
}

#[derive(Debug)]
struct Entry {
    response: Response,
    expires: Instant,
}

/// Large responses to unsafe requests, by peer and request key.
#[derive(Debug)]
pub(crate) struct ResponseCache<P> {
    entries: HashMap<(P, Vec<u8>), Entry>,
    order: VecDeque<(Instant, (P, Vec<u8>))>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    lifetime: Duration,
}

impl<P: Clone + Eq + Hash> ResponseCache<P> {
    pub(crate) fn new(max_entries: usize, max_bytes: usize, lifetime: Duration) -> Self {
        ResponseCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_entries,
            max_bytes,
            lifetime,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keeps `response` (whole, before cutting) for the blocks that follow.
    pub(crate) fn insert(&mut self, now: Instant, peer: P, key: Vec<u8>, response: Response) {
        let size = response.payload.len();
        if size > self.max_bytes || self.max_entries == 0 {
            return;
        }
        self.expire(now);
        let key = (peer, key);
        self.remove(&key);
        while self.entries.len() >= self.max_entries || self.bytes + size > self.max_bytes {
            let Some((at, old)) = self.order.pop_front() else {
                break;
            };
            // A key kept again has a newer entry; the old queue entry is stale.
            if self.entries.get(&old).is_some_and(|e| e.expires == at) {
                self.remove(&old);
            }
        }
        let expires = now + self.lifetime;
        self.bytes += size;
        self.order.push_back((expires, key.clone()));
        self.entries.insert(key, Entry { response, expires });
    }

    /// Block `requested` of the response kept for this request, if one is kept: the
    /// block (or the error code for a block beyond the end). The entry is forgotten once
    /// its last block went out: the transfer is complete.
    pub(crate) fn serve_block(
        &mut self,
        now: Instant,
        peer: &P,
        key: &[u8],
        requested: BlockValue,
        limit: blockwise::BlockLimit,
    ) -> Option<Result<Response, Code>> {
        self.expire(now);
        let k = (peer.clone(), key.to_vec());
        let entry = self.entries.get(&k)?;
        let result = blockwise::block_from_kept(&entry.response, requested, limit);
        if matches!(result, Ok((_, true))) {
            self.remove(&k);
        }
        Some(result.map(|(block, _)| block))
    }

    /// The options of a kept response, if there is one (to size its blocks).
    pub(crate) fn kept_options(&self, peer: &P, key: &[u8]) -> Option<&crate::message::Options> {
        self.entries
            .get(&(peer.clone(), key.to_vec()))
            .map(|e| &e.response.options)
    }

    #[cfg(test)]
    fn get(&mut self, now: Instant, peer: &P, key: Vec<u8>) -> Option<Response> {
        self.expire(now);
        self.entries
            .get(&(peer.clone(), key))
            .map(|e| e.response.clone())
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((expires, _)) = self.order.front() {
            if *expires > now {
                break;
            }
            let (_, key) = self.order.pop_front().expect("front exists");
            if self.entries.get(&key).is_some_and(|e| e.expires <= now) {
                self.remove(&key);
            }
        }
    }

    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.order.front().map(|(at, _)| *at)
    }

    fn remove(&mut self, key: &(P, Vec<u8>)) {
        if let Some(e) = self.entries.remove(key) {
            self.bytes -= e.response.payload.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn resp(n: usize) -> Response {
        Response::with_payload(Code::CHANGED, vec![0u8; n])
    }

    #[test]
    fn kept_until_expiry_and_bounded() {
        let mut c = ResponseCache::new(2, 10_000, Duration::from_secs(10));
        let now = Instant::ZERO;
        c.insert(now, 1u8, vec![1], resp(4000));
        c.insert(now, 1u8, vec![2], resp(4000));
        assert!(c.get(now, &1, vec![1]).is_some());
        // A third entry evicts the oldest (entries) ...
        c.insert(now, 1u8, vec![3], resp(100));
        assert!(c.get(now, &1, vec![1]).is_none());
        // ... and bytes are bounded too.
        c.insert(now, 1u8, vec![4], resp(9000));
        assert!(c.bytes <= 10_000);
        assert!(c.len() <= 2);
        c.expire(now + Duration::from_secs(11));
        assert_eq!((c.len(), c.bytes), (0, 0));
    }

    #[test]
    fn key_ignores_block_options_and_payload_format() {
        let mut a = Options::new();
        a.push(OptionNumber::URI_PATH, b"x".to_vec());
        let mut b = a.clone();
        b.push(OptionNumber::BLOCK2, vec![0x16]);
        b.push(OptionNumber::REQUEST_TAG, vec![1]);
        let key = |m, o| request_key(m, o, NOT_PART_OF_THE_KEY);
        assert_eq!(key(Code::POST, &a), key(Code::POST, &b));
        assert_ne!(key(Code::POST, &a), key(Code::PUT, &a));
    }
}
