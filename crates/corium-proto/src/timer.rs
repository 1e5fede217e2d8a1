//! Timers as data (quinn's lesson): an ordered map from deadline to what is due, with
//! handles so a finished exchange removes its timers at once instead of leaving stale
//! entries behind.

use alloc::collections::BTreeMap;

use crate::time::Instant;

/// A handle to a scheduled timer, used to cancel it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TimerHandle(Instant, u64);

impl TimerHandle {
    pub(crate) fn deadline(self) -> Instant {
        self.0
    }
}

/// Deadlines and what happens at each.
#[derive(Debug)]
pub(crate) struct TimerQueue<K> {
    map: BTreeMap<(Instant, u64), K>,
    next_seq: u64,
}

impl<K: Copy> TimerQueue<K> {
    pub(crate) fn new() -> Self {
        TimerQueue {
            map: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// Schedules `kind` at `at`.
    pub(crate) fn insert(&mut self, at: Instant, kind: K) -> TimerHandle {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert((at, seq), kind);
        TimerHandle(at, seq)
    }

    /// Cancels a timer; cancelling one that already fired is harmless.
    pub(crate) fn remove(&mut self, handle: TimerHandle) {
        self.map.remove(&(handle.0, handle.1));
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.map.keys().next().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<K> {
        let entry = self.map.first_entry()?;
        if entry.key().0 <= now {
            Some(entry.remove())
        } else {
            None
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}
