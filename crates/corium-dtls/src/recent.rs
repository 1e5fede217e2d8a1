//! The guard both engines share against replays of a client's first flight: the
//! cookie-verified ClientHellos of the last two cookie periods (RFC 6347 §4.2.1: a
//! cookie stays valid that long, so an exact copy of a verified ClientHello could start a
//! second handshake within it).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use corium_proto::Instant;

use crate::engine::DropReason;

/// Fingerprints of recently verified ClientHellos, bounded by
/// [`DtlsConfig::max_recent_handshakes`](crate::DtlsConfig::max_recent_handshakes).
#[derive(Debug)]
pub(crate) struct RecentHandshakes {
    set: HashSet<u128>,
    order: VecDeque<(Instant, u128)>,
    capacity: usize,
}

impl RecentHandshakes {
    /// An empty table holding at most `capacity` fingerprints.
    pub(crate) fn new(capacity: usize) -> Self {
        RecentHandshakes {
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Fingerprints held.
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }

    /// Records `fp` for `retention`; refuses a fingerprint already there (a replay) and
    /// any new one while the table is full (which also caps the handshake rate).
    pub(crate) fn insert(
        &mut self,
        now: Instant,
        retention: Duration,
        fp: u128,
    ) -> Result<(), DropReason> {
        while let Some(&(expires, old)) = self.order.front() {
            if expires > now {
                break;
            }
            self.order.pop_front();
            self.set.remove(&old);
        }
        if self.set.contains(&fp) {
            return Err(DropReason::Replay);
        }
        if self.set.len() >= self.capacity {
            return Err(DropReason::HandshakeRateLimit);
        }
        self.set.insert(fp);
        self.order.push_back((now + retention, fp));
        Ok(())
    }
}
