//! The per-address handshake rate limit ([`DtlsConfig::max_handshakes_per_addr`]).
//!
//! A generic cell rate algorithm (GCRA): each address has a theoretical arrival time
//! (TAT); a handshake at `now` is allowed if `TAT ≤ now + τ`, and moves the TAT to
//! `max(TAT, now) + T`, with `T` = 1 s / rate and `τ` = 1 s − `T`: a steady `rate`
//! handshakes per second, in bursts of at most `rate`. An address whose TAT has passed
//! has its whole allowance again and is the same as one never seen, so it can leave the
//! table: the table only holds addresses that handshook within the last second.
//!
//! [`DtlsConfig::max_handshakes_per_addr`]: crate::DtlsConfig::max_handshakes_per_addr

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use corium_proto::Instant;

/// Full-table scans happen at most this often.
const PURGE_INTERVAL: Duration = Duration::from_millis(10);

/// What one allowance is counted for: an IPv4 address, or an IPv6 /64 prefix (IPv4-mapped
/// IPv6 addresses count as IPv4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RateKey {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl RateKey {
    /// The key of a client address.
    pub(crate) fn of(ip: IpAddr) -> RateKey {
        match ip {
            IpAddr::V4(a) => RateKey::V4(a.octets()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => RateKey::V4(v4.octets()),
                None => {
                    let o = a.octets();
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&o[..8]);
                    RateKey::V6(prefix)
                }
            },
        }
    }
}

/// Handshake allowances of the client addresses seen within the last second.
#[derive(Debug)]
pub(crate) struct HandshakeRate {
    /// `T`: the time one handshake uses up.
    interval: Duration,
    /// `τ`: how far ahead of `now` the TAT may be for a handshake to pass.
    tolerance: Duration,
    capacity: usize,
    tat: HashMap<RateKey, Instant>,
    next_purge: Instant,
}

impl HandshakeRate {
    /// `per_second` handshakes per address (at least 1), `capacity` addresses tracked.
    pub(crate) fn new(per_second: u32, capacity: usize) -> HandshakeRate {
        let second = Duration::from_secs(1);
        let interval = second / per_second.max(1);
        HandshakeRate {
            interval,
            tolerance: second.saturating_sub(interval),
            capacity: capacity.max(1),
            tat: HashMap::new(),
            next_purge: Instant::ZERO,
        }
    }

    /// Whether `key` may start a handshake at `now` (nothing is used up).
    pub(crate) fn allows(&mut self, now: Instant, key: RateKey) -> bool {
        match self.tat.get(&key) {
            Some(&tat) => tat <= now + self.tolerance,
            None => self.has_room(now),
        }
    }

    /// Uses up one handshake of `key`'s allowance.
    pub(crate) fn take(&mut self, now: Instant, key: RateKey) {
        if !self.tat.contains_key(&key) && !self.has_room(now) {
            return;
        }
        let tat = self.tat.entry(key).or_insert(now);
        *tat = (*tat).max(now) + self.interval;
    }

    /// Addresses tracked now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tat.len()
    }

    /// Whether a new address fits, after forgetting those whose allowance is full again.
    fn has_room(&mut self, now: Instant) -> bool {
        if self.tat.len() >= self.capacity && now >= self.next_purge {
            self.tat.retain(|_, tat| *tat > now);
            self.next_purge = now + PURGE_INTERVAL;
        }
        self.tat.len() < self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn bursts_then_steady_rate() {
        let mut rate = HandshakeRate::new(4, 16);
        let a = RateKey::of("192.0.2.1".parse().unwrap());
        let b = RateKey::of("192.0.2.2".parse().unwrap());
        for _ in 0..4 {
            assert!(rate.allows(at(1000), a));
            rate.take(at(1000), a);
        }
        assert!(!rate.allows(at(1000), a));
        assert!(rate.allows(at(1000), b), "other addresses are not affected");
        assert!(!rate.allows(at(1249), a));
        assert!(rate.allows(at(1250), a), "one more per 1/rate s");
        rate.take(at(1250), a);
        assert!(!rate.allows(at(1250), a));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let k1 = RateKey::of("2001:db8:1:2::1".parse().unwrap());
        let k2 = RateKey::of("2001:db8:1:2:ffff::9".parse().unwrap());
        let k3 = RateKey::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(k1, k2);
        assert_ne!(k1, k3);
        assert_eq!(
            RateKey::of("::ffff:192.0.2.1".parse().unwrap()),
            RateKey::of("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn table_is_bounded_and_recovers() {
        let mut rate = HandshakeRate::new(1, 2);
        let key = |i: u8| RateKey::V4([10, 0, 0, i]);
        rate.take(at(0), key(1));
        rate.take(at(0), key(2));
        assert!(!rate.allows(at(500), key(3)), "full of recent addresses");
        rate.take(at(500), key(3));
        assert_eq!(rate.len(), 2);
        assert!(rate.allows(at(1000), key(3)), "the first two have aged out");
        rate.take(at(1000), key(3));
        assert_eq!(rate.len(), 1);
    }
}
