//! Duplicate detection for received messages (RFC 7252 §4.5).
//!
//! Keyed by (peer, message ID). A Confirmable request is remembered for EXCHANGE_LIFETIME
//! together with what was answered, so a duplicate gets the same answer again; a
//! Non-confirmable one for NON_LIFETIME, and its duplicates are dropped. Entries expire in
//! arrival order, which two FIFO queues track (one per lifetime) without per-entry timers.
//! The table has a hard size limit; when full the oldest entry is evicted.

use alloc::collections::VecDeque;
use core::hash::Hash;

use bytes::Bytes;
use hashbrown::HashMap;

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

#[derive(Debug)]
struct Entry {
    state: DedupState,
    /// Distinguishes this entry from an older one with the same key in the FIFO.
    generation: u64,
}

/// The deduplication cache.
#[derive(Debug)]
pub(crate) struct DedupCache<P> {
    entries: HashMap<(P, u16), Entry>,
    con_fifo: VecDeque<(Instant, u64, (P, u16))>,
    non_fifo: VecDeque<(Instant, u64, (P, u16))>,
    next_generation: u64,
    capacity: usize,
}

impl<P: Clone + Eq + Hash> DedupCache<P> {
    pub(crate) fn new(capacity: usize) -> Self {
        DedupCache {
            entries: HashMap::new(),
            con_fifo: VecDeque::new(),
            non_fifo: VecDeque::new(),
            next_generation: 0,
            capacity: capacity.max(1),
        }
    }

    /// The state of a message already seen, if it is still remembered.
    pub(crate) fn get(&self, peer: &P, message_id: u16) -> Option<&DedupState> {
        // A borrowed tuple key would need a clone of P; peers are small (addresses).
        self.entries
            .get(&(peer.clone(), message_id))
            .map(|e| &e.state)
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
        while self.entries.len() >= self.capacity {
            if !self.evict_oldest() {
                break;
            }
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let key = (peer, message_id);
        let fifo = if confirmable {
            &mut self.con_fifo
        } else {
            &mut self.non_fifo
        };
        fifo.push_back((expires, generation, key.clone()));
        self.entries.insert(key, Entry { state, generation });
    }

    /// Changes the state of a remembered message.
    pub(crate) fn update(&mut self, peer: &P, message_id: u16, state: DedupState) {
        if let Some(e) = self.entries.get_mut(&(peer.clone(), message_id)) {
            e.state = state;
        }
    }

    /// Forgets entries whose lifetime is over.
    pub(crate) fn expire(&mut self, now: Instant) {
        for fifo in [&mut self.con_fifo, &mut self.non_fifo] {
            while let Some((expires, _, _)) = fifo.front() {
                if *expires > now {
                    break;
                }
                let (_, generation, key) = fifo.pop_front().expect("front exists");
                remove_if_current(&mut self.entries, &key, generation);
            }
        }
    }

    /// The earliest expiry.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        let con = self.con_fifo.front().map(|e| e.0);
        let non = self.non_fifo.front().map(|e| e.0);
        match (con, non) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn evict_oldest(&mut self) -> bool {
        // The FIFOs are ordered by expiry, and NON entries live shorter, so compare the
        // two fronts by expiry and evict the earlier one.
        let take_con = match (self.con_fifo.front(), self.non_fifo.front()) {
            (Some(c), Some(n)) => c.0 <= n.0,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return false,
        };
        let fifo = if take_con {
            &mut self.con_fifo
        } else {
            &mut self.non_fifo
        };
        if let Some((_, generation, key)) = fifo.pop_front() {
            remove_if_current(&mut self.entries, &key, generation);
        }
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

fn remove_if_current<P: Eq + Hash>(
    entries: &mut HashMap<(P, u16), Entry>,
    key: &(P, u16),
    generation: u64,
) {
    if entries.get(key).is_some_and(|e| e.generation == generation) {
        entries.remove(key);
    }
}
