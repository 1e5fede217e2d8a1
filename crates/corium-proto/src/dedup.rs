//! Duplicate detection for received messages (RFC 7252 §4.5).
//!
//! Keyed by (peer, message ID). A Confirmable request is remembered for EXCHANGE_LIFETIME
//! together with what was answered, so a duplicate gets the same answer again; a
//! Non-confirmable one for NON_LIFETIME, and its duplicates are dropped. Entries expire in
//! arrival order, which two FIFO queues track (one per lifetime) without per-entry timers.
//! The table has a hard size limit; when full the oldest entry is evicted.
//!
//! Memory: a burst of requests (100 000 observe registrations, say) leaves one entry per
//! request for EXCHANGE_LIFETIME (247 s), so an entry is kept small. The FIFOs hold the
//! entries themselves (peer, message ID, expiry, state); the hash index holds only a
//! 4-byte position into them. An answer of up to [`INLINE_ANSWER`] bytes (an empty ACK,
//! a RST, a small piggybacked response) is stored inline, a longer one in an allocation
//! of its exact size. Once most entries have expired, the FIFOs and the index shrink,
//! so the memory of a burst goes back to the allocator.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use core::hash::{BuildHasher, Hash};

use bytes::Bytes;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

use crate::time::Instant;

/// What has been done with a received message so far.
#[derive(Clone, Debug)]
pub(crate) enum DedupState {
    /// Handed to the application; no answer yet. Carries the incoming-request key.
    Pending(u64),
    /// Answered with these bytes (ACK, piggybacked response, or RST); resent on duplicates.
    Answered(Bytes),
    /// Seen; duplicates are ignored (NON requests, or CON answered separately whose
    /// ACK was already sent and cached in `Answered`).
    Seen,
}

/// Answers up to this many bytes are kept inside their entry (no allocation). With the
/// other fields of [`Stored`] that makes it 22 bytes without alignment, so an entry
/// (socket-address peer, expiry, message ID, state) is 64 bytes.
const INLINE_ANSWER: usize = 20;

/// `Stored::kind` values.
const PENDING: u8 = 0;
const SEEN: u8 = 1;
/// The answer is `bytes[..len]`.
const INLINE: u8 = 2;
/// The answer is in [`DedupCache::long_answers`], under the entry's position.
const LONG: u8 = 3;
/// Superseded by a newer entry with the same key; only waits to leave its FIFO.
const DEAD: u8 = 4;

/// An entry's state as stored: a [`DedupState`] in bytes (the incoming-request key of
/// `Pending` little-endian in `bytes`).
#[derive(Debug)]
struct Stored {
    kind: u8,
    len: u8,
    bytes: [u8; INLINE_ANSWER],
}

impl Stored {
    const fn of_kind(kind: u8) -> Stored {
        Stored {
            kind,
            len: 0,
            bytes: [0; INLINE_ANSWER],
        }
    }

    /// The stored form of `state`; a long answer is handed back to keep elsewhere.
    fn of(state: DedupState) -> (Stored, Option<Box<[u8]>>) {
        match state {
            DedupState::Pending(id) => {
                let mut s = Stored::of_kind(PENDING);
                s.bytes[..8].copy_from_slice(&id.to_le_bytes());
                (s, None)
            }
            DedupState::Seen => (Stored::of_kind(SEEN), None),
            DedupState::Answered(wire) => Stored::answer(&wire),
        }
    }

    /// The stored form of an answer; a long one is handed back to keep elsewhere.
    fn answer(wire: &[u8]) -> (Stored, Option<Box<[u8]>>) {
        match s_inline(wire) {
            Some(s) => (s, None),
            None => (Stored::of_kind(LONG), Some(Box::from(wire))),
        }
    }

    fn state(&self, long: Option<&[u8]>) -> Option<DedupState> {
        match self.kind {
            PENDING => {
                let mut id = [0; 8];
                id.copy_from_slice(&self.bytes[..8]);
                Some(DedupState::Pending(u64::from_le_bytes(id)))
            }
            SEEN => Some(DedupState::Seen),
            INLINE => Some(DedupState::Answered(Bytes::copy_from_slice(
                &self.bytes[..usize::from(self.len)],
            ))),
            LONG => long.map(|wire| DedupState::Answered(Bytes::copy_from_slice(wire))),
            _ => None,
        }
    }
}

/// Bit 31 of a position: the entry is in the NON FIFO (else the CON one).
const NON_BIT: u32 = 1 << 31;
/// Positions count modulo 2^31 in each FIFO.
const POS_MASK: u32 = NON_BIT - 1;
/// The most entries the FIFOs may hold together (positions must stay unambiguous).
const MAX_CAPACITY: usize = 1 << 30;
/// FIFOs and index smaller than this are never shrunk.
const SHRINK_MIN: usize = 1024;

/// `wire` stored inline, if it fits.
fn s_inline(wire: &[u8]) -> Option<Stored> {
    let mut s = Stored::of_kind(INLINE);
    s.bytes.get_mut(..wire.len())?.copy_from_slice(wire);
    s.len = wire.len() as u8;
    Some(s)
}

#[derive(Debug)]
struct Entry<P> {
    peer: P,
    expires: Instant,
    message_id: u16,
    state: Stored,
}

/// Entries in arrival order; `head` is the position of the front one.
#[derive(Debug)]
struct Fifo<P> {
    entries: VecDeque<Entry<P>>,
    head: u32,
}

impl<P> Fifo<P> {
    fn new() -> Self {
        Fifo {
            entries: VecDeque::new(),
            head: 0,
        }
    }
}

/// The deduplication cache.
#[derive(Debug)]
pub(crate) struct DedupCache<P> {
    /// Positions (`NON_BIT` | position in that FIFO) of the live entries, hashed on
    /// (peer, message ID).
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// `[CON, NON]`.
    fifos: [Fifo<P>; 2],
    /// Answers longer than [`INLINE_ANSWER`], by the position of their entry.
    long_answers: HashMap<u32, Box<[u8]>>,
    capacity: usize,
}

fn key_hash<P: Hash>(hasher: &DefaultHashBuilder, peer: &P, message_id: u16) -> u64 {
    hasher.hash_one((peer, message_id))
}

/// The entry at position `pos`, if it is still in its FIFO.
fn entry_at<P>(fifos: &[Fifo<P>; 2], pos: u32) -> Option<&Entry<P>> {
    let fifo = &fifos[usize::from(pos & NON_BIT != 0)];
    let offset = (pos & POS_MASK).wrapping_sub(fifo.head) & POS_MASK;
    fifo.entries.get(offset as usize)
}

fn entry_at_mut<P>(fifos: &mut [Fifo<P>; 2], pos: u32) -> Option<&mut Entry<P>> {
    let fifo = &mut fifos[usize::from(pos & NON_BIT != 0)];
    let offset = (pos & POS_MASK).wrapping_sub(fifo.head) & POS_MASK;
    fifo.entries.get_mut(offset as usize)
}

impl<P: Clone + Eq + Hash> DedupCache<P> {
    pub(crate) fn new(capacity: usize) -> Self {
        DedupCache {
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            fifos: [Fifo::new(), Fifo::new()],
            long_answers: HashMap::new(),
            capacity: capacity.clamp(1, MAX_CAPACITY),
        }
    }

    /// The position of the live entry for (peer, message ID).
    fn find(&self, peer: &P, message_id: u16) -> Option<u32> {
        let hash = key_hash(&self.hasher, peer, message_id);
        self.index
            .find(hash, |pos| {
                entry_at(&self.fifos, *pos)
                    .is_some_and(|e| e.message_id == message_id && e.peer == *peer)
            })
            .copied()
    }

    /// The state of a message already seen, if it is still remembered.
    pub(crate) fn get(&self, peer: &P, message_id: u16) -> Option<DedupState> {
        let pos = self.find(peer, message_id)?;
        entry_at(&self.fifos, pos)?
            .state
            .state(self.long_answers.get(&pos).map(|b| &b[..]))
    }

    /// Remembers a new message until `expires`. `confirmable` picks the FIFO.
    pub(crate) fn insert(
        &mut self,
        peer: P,
        message_id: u16,
        state: DedupState,
        expires: Instant,
        confirmable: bool,
    ) {
        self.insert_stored(peer, message_id, Stored::of(state), expires, confirmable);
    }

    /// [`insert`](Self::insert) with `DedupState::Answered(wire)`, copying `wire` (no
    /// allocation for a short answer).
    pub(crate) fn insert_answer(
        &mut self,
        peer: P,
        message_id: u16,
        wire: &[u8],
        expires: Instant,
        confirmable: bool,
    ) {
        self.insert_stored(peer, message_id, Stored::answer(wire), expires, confirmable);
    }

    fn insert_stored(
        &mut self,
        peer: P,
        message_id: u16,
        (stored, long): (Stored, Option<Box<[u8]>>),
        expires: Instant,
        confirmable: bool,
    ) {
        while self.fifos[0].entries.len() + self.fifos[1].entries.len() >= self.capacity {
            if !self.evict_oldest() {
                break;
            }
        }
        let hash = key_hash(&self.hasher, &peer, message_id);
        if let Some(old) = self.find(&peer, message_id) {
            if let Ok(found) = self.index.find_entry(hash, |p| *p == old) {
                found.remove();
            }
            self.set(old, Stored::of_kind(DEAD), None);
        }
        let which = usize::from(!confirmable);
        let fifo = &mut self.fifos[which];
        let pos = (fifo.head.wrapping_add(fifo.entries.len() as u32) & POS_MASK)
            | if confirmable { 0 } else { NON_BIT };
        fifo.entries.push_back(Entry {
            peer,
            expires,
            message_id,
            state: stored,
        });
        if let Some(long) = long {
            self.long_answers.insert(pos, long);
        }
        let DedupCache {
            index,
            hasher,
            fifos,
            ..
        } = self;
        index.insert_unique(hash, pos, |p| {
            entry_at(fifos, *p).map_or(0, |e| key_hash(hasher, &e.peer, e.message_id))
        });
    }

    /// Changes the state of a remembered message.
    pub(crate) fn update(&mut self, peer: &P, message_id: u16, state: DedupState) {
        if let Some(pos) = self.find(peer, message_id) {
            let (stored, long) = Stored::of(state);
            self.set(pos, stored, long);
        }
    }

    /// [`update`](Self::update) to `DedupState::Answered(wire)`, copying `wire` (no
    /// allocation for a short answer).
    pub(crate) fn update_answer(&mut self, peer: &P, message_id: u16, wire: &[u8]) {
        if let Some(pos) = self.find(peer, message_id) {
            let (stored, long) = Stored::answer(wire);
            self.set(pos, stored, long);
        }
    }

    /// Whether the message is remembered as [`DedupState::Pending`] (without copying an
    /// answer out, as [`get`](Self::get) would).
    pub(crate) fn is_pending(&self, peer: &P, message_id: u16) -> bool {
        self.find(peer, message_id)
            .and_then(|pos| entry_at(&self.fifos, pos))
            .is_some_and(|e| e.state.kind == PENDING)
    }

    /// Sets the state of the entry at `pos`, keeping `long_answers` in step.
    fn set(&mut self, pos: u32, stored: Stored, long: Option<Box<[u8]>>) {
        let Some(e) = entry_at_mut(&mut self.fifos, pos) else {
            return;
        };
        if e.state.kind == LONG {
            self.long_answers.remove(&pos);
        }
        e.state = stored;
        if let Some(long) = long {
            self.long_answers.insert(pos, long);
        }
    }

    /// Removes the front entry of FIFO `which` (and its index entry).
    fn pop_front(&mut self, which: usize) -> bool {
        let fifo = &mut self.fifos[which];
        let Some(e) = fifo.entries.pop_front() else {
            return false;
        };
        let pos = fifo.head | if which == 1 { NON_BIT } else { 0 };
        fifo.head = fifo.head.wrapping_add(1) & POS_MASK;
        if e.state.kind == LONG {
            self.long_answers.remove(&pos);
        }
        if e.state.kind != DEAD {
            let hash = key_hash(&self.hasher, &e.peer, e.message_id);
            if let Ok(found) = self.index.find_entry(hash, |p| *p == pos) {
                found.remove();
            }
        }
        true
    }

    /// Forgets entries whose lifetime is over.
    pub(crate) fn expire(&mut self, now: Instant) {
        for which in 0..2 {
            while self.fifos[which]
                .entries
                .front()
                .is_some_and(|e| e.expires <= now)
            {
                self.pop_front(which);
            }
        }
        self.shrink();
    }

    /// Gives memory back once most of it is unused (after a burst has expired): the
    /// FIFOs and the index keep at most twice what they hold.
    fn shrink(&mut self) {
        for fifo in &mut self.fifos {
            let (len, cap) = (fifo.entries.len(), fifo.entries.capacity());
            if cap > SHRINK_MIN && len * 4 < cap {
                fifo.entries.shrink_to((len * 2).max(SHRINK_MIN));
            }
        }
        let (len, cap) = (self.index.len(), self.index.capacity());
        if cap > SHRINK_MIN && len * 4 < cap {
            let DedupCache {
                index,
                hasher,
                fifos,
                ..
            } = self;
            index.shrink_to((len * 2).max(SHRINK_MIN), |p| {
                entry_at(fifos, *p).map_or(0, |e| key_hash(hasher, &e.peer, e.message_id))
            });
        }
    }

    /// The earliest expiry.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        let con = self.fifos[0].entries.front().map(|e| e.expires);
        let non = self.fifos[1].entries.front().map(|e| e.expires);
        match (con, non) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn evict_oldest(&mut self) -> bool {
        // The FIFOs are ordered by expiry, and NON entries live shorter, so compare the
        // two fronts by expiry and evict the earlier one.
        let take_con = match (self.fifos[0].entries.front(), self.fifos[1].entries.front()) {
            (Some(c), Some(n)) => c.expires <= n.expires,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return false,
        };
        self.pop_front(usize::from(!take_con))
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    fn at(secs: u64) -> Instant {
        Instant::from_duration(Duration::from_secs(secs))
    }

    fn answered(state: Option<DedupState>) -> Option<Bytes> {
        match state {
            Some(DedupState::Answered(b)) => Some(b),
            _ => None,
        }
    }

    /// Short answers are kept inline, long ones on the heap; both come back intact.
    #[test]
    fn answers_round_trip() {
        let mut c: DedupCache<u32> = DedupCache::new(16);
        let short = Bytes::from_static(b"0123456789");
        let long = Bytes::from(alloc::vec![7u8; 100]);
        c.insert(1, 1, DedupState::Answered(short.clone()), at(10), true);
        c.insert(1, 2, DedupState::Pending(9), at(10), true);
        c.update(&1, 2, DedupState::Answered(long.clone()));
        assert_eq!(answered(c.get(&1, 1)), Some(short));
        assert_eq!(answered(c.get(&1, 2)), Some(long));
        assert!(c.get(&2, 1).is_none());
        assert_eq!(c.len(), 2);
    }

    /// Entries expire in order, per FIFO; a re-inserted key keeps only its newest entry.
    #[test]
    fn expiry_and_replacement() {
        let mut c: DedupCache<u32> = DedupCache::new(16);
        c.insert(1, 1, DedupState::Seen, at(5), false);
        c.insert(1, 2, DedupState::Seen, at(10), true);
        c.insert(1, 1, DedupState::Pending(3), at(20), true);
        assert_eq!(c.len(), 2);
        assert_eq!(c.next_expiry(), Some(at(5)));
        c.expire(at(6));
        // The NON entry of key 1 was superseded: the CON one stays.
        assert!(matches!(c.get(&1, 1), Some(DedupState::Pending(3))));
        c.expire(at(10));
        assert!(c.get(&1, 2).is_none());
        assert_eq!(c.len(), 1);
        c.expire(at(20));
        assert_eq!(c.len(), 0);
        assert_eq!(c.next_expiry(), None);
    }

    /// The capacity is a hard limit: the oldest entry goes first.
    #[test]
    fn eviction() {
        let mut c: DedupCache<u32> = DedupCache::new(3);
        for mid in 0..10u16 {
            c.insert(
                7,
                mid,
                DedupState::Seen,
                at(100 + u64::from(mid)),
                mid % 2 == 0,
            );
            assert!(c.len() <= 3);
        }
        assert!(c.get(&7, 6).is_none());
        for mid in 7..10 {
            assert!(c.get(&7, mid).is_some());
        }
    }

    /// An entry stays at 64 bytes with a socket-address peer: a burst of requests costs
    /// that per request for EXCHANGE_LIFETIME.
    #[test]
    fn entry_size() {
        extern crate std;
        assert_eq!(core::mem::size_of::<Entry<std::net::SocketAddr>>(), 64);
    }

    /// A burst that expired leaves a small cache behind, and it still works.
    #[test]
    fn shrinks_after_a_burst() {
        let mut c: DedupCache<u32> = DedupCache::new(1 << 20);
        for i in 0..50_000u32 {
            c.insert(i, 1, DedupState::Seen, at(10), true);
        }
        c.insert(1, 2, DedupState::Seen, at(30), true);
        c.expire(at(20));
        assert_eq!(c.len(), 1);
        assert!(c.fifos[0].entries.capacity() < 4096);
        assert!(c.index.capacity() < 4096);
        assert!(c.get(&1, 2).is_some());
        for i in 0..5_000u32 {
            c.insert(i, 3, DedupState::Seen, at(40), false);
        }
        assert!(c.get(&4_999, 3).is_some());
        assert!(c.get(&1, 2).is_some());
    }
}
