//! Amplification mitigation with the Echo option (RFC 9175 §2.4 item 3, §2.6; RFC 7252
//! §11.3).
//!
//! A request over UDP can carry a forged source address; a server that answers it with
//! many more bytes than it received turns into an amplifier against that address. Until
//! a peer has shown that it receives what is sent to its address, a server sends it no
//! more than `factor` times the bytes it received (3, as RFC 9175 §2.4 suggests after
//! RFC 9000 §8). A larger answer to a safe request is replaced by a short 4.01
//! (Unauthorized) carrying an Echo value; a client that repeats the request with that
//! value has proven its address, and gets the full answer, as do its later requests for
//! [`AmplificationLimit::verified_lifetime`].
//!
//! The Echo value is stateless for the server (RFC 9175 Appendix A, item 2: an
//! integrity-protected timestamp): a version byte, the time it was made (seconds on the
//! endpoint's clock) and a MAC over both and the peer's address, HMAC-SHA-256 under a
//! key drawn once per endpoint, truncated to 8 bytes. A spoofer cannot forge it for an
//! address whose traffic it does not see, and a value made for one address does not
//! verify another. Only the verified addresses are kept, in a bounded table.
//!
//! Requests to a multicast group are limited the same way (RFC 7252 §11.3: a spoofed
//! group request makes every member answer the victim): a response too large is cut
//! to its first block with an Echo value, which the client's unicast requests for the
//! other blocks carry back (RFC 7959 §2.8); one that cannot be cut is dropped, since the
//! 4.01 challenge is an error response and error responses to group requests are not
//! sent (RFC 7252 §8.2).
//!
//! The bytes counted are those of the CoAP messages; the comparison adds the lower-layer
//! headers RFC 9175 §2.4 assumes (Ethernet, IPv6, UDP: 62 bytes) to both sides, which is
//! how it arrives at its safe default of 136 bytes for an answer to a 4-byte request.

use alloc::collections::VecDeque;
use core::hash::{Hash, Hasher};
use core::time::Duration;

use hashbrown::HashMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::time::Instant;

/// Lower-layer bytes per datagram assumed by RFC 9175 §2.4 item 3: Ethernet (14), IPv6
/// (40), UDP (8).
pub(crate) const LOWER_LAYER_OVERHEAD: usize = 62;

/// Version byte of the Echo values this module makes.
const ECHO_VERSION: u8 = 1;

/// Length of the truncated MAC in an Echo value.
const MAC_LEN: usize = 8;

/// Length of an Echo value: version, 4-byte timestamp, MAC.
pub(crate) const ECHO_LEN: usize = 1 + 4 + MAC_LEN;

/// How an endpoint limits what it sends to peers whose address is not verified (RFC 9175
/// §2.4 item 3). Set [`EndpointConfig::amplification_limit`](crate::EndpointConfig) to
/// turn it on; it applies to datagram transports without a security layer that already
/// verifies addresses (plain UDP: a DTLS handshake's cookie exchange does, and reliable
/// transports have a handshake of their own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmplificationLimit {
    /// The most an unverified peer gets per request, as a multiple of the request's size
    /// (lower-layer headers counted on both sides). Default 3 (RFC 9175 §2.4, RFC 9000
    /// §8).
    pub factor: usize,
    /// How long an Echo value handed out is accepted. It only has to outlive a round
    /// trip and the client's retry. Default 60 s.
    pub echo_lifetime: Duration,
    /// How long an address stays verified after it echoed a value. Default 1 hour.
    pub verified_lifetime: Duration,
    /// Hard limit on verified addresses remembered; the oldest is forgotten first (it
    /// then has to echo a value again). Default 65 536.
    pub max_verified_peers: usize,
}

impl Default for AmplificationLimit {
    fn default() -> Self {
        AmplificationLimit {
            factor: 3,
            echo_lifetime: Duration::from_secs(60),
            verified_lifetime: Duration::from_secs(3600),
            max_verified_peers: 65_536,
        }
    }
}

impl AmplificationLimit {
    /// The largest CoAP message allowed in answer to a request of `request_len` bytes.
    pub(crate) fn budget(&self, request_len: usize) -> usize {
        self.factor
            .saturating_mul(request_len.saturating_add(LOWER_LAYER_OVERHEAD))
            .saturating_sub(LOWER_LAYER_OVERHEAD)
    }
}

/// Feeds a value's [`Hash`] into the MAC, so any peer type can be bound to an Echo value.
struct MacHasher(Hmac<Sha256>);

impl Hasher for MacHasher {
    fn finish(&self) -> u64 {
        0 // Unused: the MAC is read with `finalize`.
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The key of an endpoint's Echo values and the stateless values it makes (RFC 9175
/// Appendix A item 2: an integrity-protected timestamp bound to the peer). One key per
/// endpoint serves both the amplification limit (§2.4 item 3) and request freshness
/// (§2.4 item 1): a value made for either proves the peer's address, and its age tells
/// how fresh a request that carries it is.
pub(crate) struct EchoKey {
    key: [u8; 32],
}

impl EchoKey {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        EchoKey { key }
    }

    fn mac<P: Hash>(&self, stamp: [u8; 4], peer: &P) -> [u8; MAC_LEN] {
        let mut h = MacHasher(
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
                .expect("HMAC takes keys of any length"),
        );
        h.write(&[ECHO_VERSION]);
        h.write(&stamp);
        peer.hash(&mut h);
        let full = h.0.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// A fresh Echo value for `peer` (RFC 9175 Appendix A item 2).
    pub(crate) fn make<P: Hash>(&self, now: Instant, peer: &P) -> [u8; ECHO_LEN] {
        let secs = u32::try_from(now.as_nanos() / 1_000_000_000).unwrap_or(u32::MAX);
        let stamp = secs.to_be_bytes();
        let mut out = [0u8; ECHO_LEN];
        out[0] = ECHO_VERSION;
        out[1..5].copy_from_slice(&stamp);
        out[5..].copy_from_slice(&self.mac(stamp, peer));
        out
    }

    /// How long ago `value` was made for `peer` (whole seconds), or `None` when it is
    /// not a value this key made for `peer` (or claims to be from the future). The MAC
    /// is compared in constant time.
    pub(crate) fn age<P: Hash>(&self, now: Instant, peer: &P, value: &[u8]) -> Option<Duration> {
        if value.len() != ECHO_LEN || value[0] != ECHO_VERSION {
            return None;
        }
        let stamp = [value[1], value[2], value[3], value[4]];
        let expected = self.mac(stamp, peer);
        let diff = expected
            .iter()
            .zip(&value[5..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return None;
        }
        let made = u64::from(u32::from_be_bytes(stamp));
        let now_secs = now.as_nanos() / 1_000_000_000;
        now_secs.checked_sub(made).map(Duration::from_secs)
    }
}

/// The verified addresses and the key of the Echo values (one per endpoint).
pub(crate) struct AddressValidation<P> {
    limit: AmplificationLimit,
    key: EchoKey,
    /// Peer → when its verification runs out.
    verified: HashMap<P, Instant>,
    /// The same entries in the order they were made, for expiry and eviction.
    order: VecDeque<(P, Instant)>,
}

impl<P: Clone + Eq + Hash> AddressValidation<P> {
    pub(crate) fn new(limit: AmplificationLimit, key: [u8; 32]) -> Self {
        AddressValidation {
            limit,
            key: EchoKey::new(key),
            verified: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(crate) fn limit(&self) -> &AmplificationLimit {
        &self.limit
    }

    /// The key the Echo values are made with.
    pub(crate) fn key(&self) -> &EchoKey {
        &self.key
    }

    /// A fresh Echo value for `peer` (RFC 9175 Appendix A item 2).
    pub(crate) fn make_echo(&self, now: Instant, peer: &P) -> [u8; ECHO_LEN] {
        self.key.make(now, peer)
    }

    /// Whether `value` is an Echo value this endpoint made for `peer` within
    /// `echo_lifetime`.
    pub(crate) fn echo_is_valid(&self, now: Instant, peer: &P, value: &[u8]) -> bool {
        self.key
            .age(now, peer, value)
            .is_some_and(|age| age.as_secs() <= self.limit.echo_lifetime.as_secs())
    }

    /// Whether `peer` echoed a value recently enough.
    pub(crate) fn is_verified(&self, now: Instant, peer: &P) -> bool {
        self.verified.get(peer).is_some_and(|until| now < *until)
    }

    /// Remembers `peer` as verified for `verified_lifetime` from `now`.
    pub(crate) fn confirm(&mut self, now: Instant, peer: &P) {
        self.expire(now);
        if self.limit.max_verified_peers == 0 {
            return;
        }
        let until = now + self.limit.verified_lifetime;
        if self.verified.insert(peer.clone(), until).is_none() {
            while self.verified.len() > self.limit.max_verified_peers {
                self.evict_oldest();
            }
        }
        self.order.push_back((peer.clone(), until));
        // Refreshed entries leave stale records behind; keep the queue bounded too.
        if self.order.len() > self.limit.max_verified_peers.saturating_mul(2) {
            self.compact();
        }
    }

    /// Forgets verifications that ran out.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((_, until)) = self.order.front() {
            if *until > now {
                break;
            }
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((peer, until)) = self.order.pop_front() {
            // A record superseded by a later confirmation leaves the entry alone.
            if self.verified.get(&peer) == Some(&until) {
                self.verified.remove(&peer);
            }
        }
    }

    fn compact(&mut self) {
        let verified = &self.verified;
        self.order
            .retain(|(peer, until)| verified.get(peer) == Some(until));
    }

    /// Verified addresses remembered.
    pub(crate) fn len(&self) -> usize {
        self.verified.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Instant {
        Instant::from_nanos(secs * 1_000_000_000)
    }

    fn validation() -> AddressValidation<u32> {
        AddressValidation::new(AmplificationLimit::default(), [7; 32])
    }

    #[test]
    fn rfc9175_safe_default_is_136_bytes_for_a_4_byte_request() {
        let limit = AmplificationLimit::default();
        assert_eq!(limit.budget(4), 136);
        assert_eq!(limit.budget(20), 184);
        let off = AmplificationLimit {
            factor: 1,
            ..AmplificationLimit::default()
        };
        assert_eq!(off.budget(20), 20, "factor 1: no more than was received");
    }

    #[test]
    fn echo_value_verifies_for_its_peer_only_and_only_while_fresh() {
        let v = validation();
        let echo = v.make_echo(at(100), &1);
        assert_eq!(echo.len(), ECHO_LEN);
        assert!(v.echo_is_valid(at(100), &1, &echo));
        assert!(v.echo_is_valid(at(160), &1, &echo));
        assert!(!v.echo_is_valid(at(161), &1, &echo), "expired");
        assert!(!v.echo_is_valid(at(100), &2, &echo), "other peer");
        let mut tampered = echo;
        tampered[2] ^= 1; // a later timestamp without the key
        assert!(!v.echo_is_valid(at(100), &1, &tampered));
        assert!(!v.echo_is_valid(at(100), &1, &echo[..ECHO_LEN - 1]));
        let other_key = AddressValidation::<u32>::new(AmplificationLimit::default(), [8; 32]);
        assert!(!other_key.echo_is_valid(at(100), &1, &echo));
    }

    #[test]
    fn verification_expires_and_the_table_is_bounded() {
        let mut v = AddressValidation::new(
            AmplificationLimit {
                max_verified_peers: 3,
                ..AmplificationLimit::default()
            },
            [1; 32],
        );
        for peer in 0..10u32 {
            v.confirm(at(u64::from(peer)), &peer);
            assert!(v.len() <= 3);
        }
        assert!(v.is_verified(at(10), &9));
        assert!(!v.is_verified(at(10), &0), "evicted, oldest first");
        assert!(!v.is_verified(at(9 + 3600), &9), "ran out");
        // Re-confirming refreshes without leaking queue records.
        for t in 0..100 {
            v.confirm(at(20 + t), &5);
        }
        assert!(v.order.len() <= 6);
        assert!(v.is_verified(at(3700), &5));
    }

    #[test]
    fn echo_age_is_measured_from_the_value_for_freshness() {
        // RFC 9175 §2.4 item 1: the age of an echoed value bounds the request's age.
        let key = EchoKey::new([3; 32]);
        let echo = key.make(at(50), &7u32);
        assert_eq!(key.age(at(50), &7u32, &echo), Some(Duration::ZERO));
        assert_eq!(key.age(at(65), &7u32, &echo), Some(Duration::from_secs(15)));
        assert_eq!(key.age(at(49), &7u32, &echo), None, "from the future");
        assert_eq!(key.age(at(60), &8u32, &echo), None, "other peer");
        assert_eq!(key.age(at(60), &7u32, b"1234"), None, "not ours");
    }
}
