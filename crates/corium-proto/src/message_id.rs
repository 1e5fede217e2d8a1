//! Message-ID allocation per peer (RFC 7252 §4.4).
//!
//! IDs are handed out sequentially from a random start. An ID must not be reused towards
//! the same peer within EXCHANGE_LIFETIME, so the ID space is split into groups (as
//! Californium's grouped tracker does) and each group remembers when an ID of it was last
//! handed out: a group is entered again only once that is a full lifetime ago. This costs
//! one timestamp per group instead of one per ID, and is conservative: an ID is never
//! reused early.

use crate::time::Instant;
use core::time::Duration;

/// IDs per group; 64 groups cover the 16-bit space.
const GROUP_SIZE: u32 = 1024;
const GROUPS: usize = (65_536 / GROUP_SIZE) as usize;

/// The message-ID allocator towards one peer.
#[derive(Debug, Clone)]
pub(crate) struct MessageIdTracker {
    next: u16,
    /// When each group last handed out an ID; `None` if never.
    group_last_used: [Option<Instant>; GROUPS],
}

impl MessageIdTracker {
    /// A tracker starting at `start` (random, so a restarted endpoint does not collide
    /// with IDs it used before the restart).
    pub(crate) fn new(start: u16) -> Self {
        MessageIdTracker {
            next: start,
            group_last_used: [None; GROUPS],
        }
    }

    /// The next free message ID, or `None` if every ID was used within `lifetime`.
    pub(crate) fn allocate(&mut self, now: Instant, lifetime: Duration) -> Option<u16> {
        let id = self.next;
        let group = usize::from(id) / GROUP_SIZE as usize;
        let first_of_group = u32::from(id) % GROUP_SIZE == 0;
        if first_of_group {
            if let Some(last) = self.group_last_used[group] {
                if now < last + lifetime {
                    return None;
                }
            }
        }
        self.group_last_used[group] = Some(now);
        self.next = id.wrapping_add(1);
        Some(id)
    }

    /// When the tracker last handed out an ID.
    pub(crate) fn last_used(&self) -> Option<Instant> {
        let group = usize::from(self.next.wrapping_sub(1)) / GROUP_SIZE as usize;
        self.group_last_used[group]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_then_exhausted_until_lifetime_passes() {
        let lifetime = Duration::from_secs(247);
        let mut t = MessageIdTracker::new(0);
        let now = Instant::ZERO;
        for expected in 0..=u16::MAX {
            assert_eq!(t.allocate(now, lifetime), Some(expected));
        }
        // The whole space was used just now: the first group may not be re-entered.
        assert_eq!(t.allocate(now + Duration::from_secs(246), lifetime), None);
        assert_eq!(t.allocate(now + lifetime, lifetime), Some(0));
    }

    #[test]
    fn never_reuses_within_lifetime_from_a_mid_group_start() {
        let lifetime = Duration::from_secs(10);
        let mut t = MessageIdTracker::new(1000);
        let mut seen = std::collections::HashMap::new();
        let mut now = Instant::ZERO;
        for i in 0..300_000u32 {
            if i % 50 == 0 {
                now += Duration::from_millis(3);
            }
            if let Some(id) = t.allocate(now, lifetime) {
                if let Some(prev) = seen.insert(id, now) {
                    assert!(now - prev >= lifetime, "id {id} reused early");
                }
            }
        }
    }
}
