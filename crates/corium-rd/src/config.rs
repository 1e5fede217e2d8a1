//! Configuration and hard limits of the resource directory.
//!
//! Every table a peer can grow has a limit here (ARCHITECTURE.md: "every table a peer
//! can grow has a hard limit"): registrations, links per registration, bytes of links
//! in all, the size of one registration payload, attributes per registration, lookup
//! results, observed lookup queries, cached simple-registration fetches.

use std::time::Duration;

/// Default lifetime of a registration without `lt`, in seconds (RFC 9176 §5: "a
/// default value of 90000 (25 hours) SHOULD be assumed").
pub const DEFAULT_LIFETIME: u32 = 90_000;

/// Default limit on the number of registrations kept (active or expired but retained).
pub const DEFAULT_MAX_REGISTRATIONS: usize = 10_000;

/// Default limit on the links of one registration.
pub const DEFAULT_MAX_LINKS_PER_REGISTRATION: usize = 1_024;

/// Default limit on one registration payload (link format), in bytes. Larger payloads
/// are answered 4.13 Request Entity Too Large.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;

/// Default limit on the bytes of link payloads held in all (the RD's memory bound for
/// links: each registration costs about twice its payload, submitted and resolved).
pub const DEFAULT_MAX_TOTAL_PAYLOAD: usize = 64 * 1024 * 1024;

/// Default limit on extra endpoint attributes (`et` and unknown `extra-attrs`) of one
/// registration (RFC 9176 §5).
pub const DEFAULT_MAX_EXTRA_ATTRS: usize = 32;

/// Longest `ep` and `d` value in bytes (RFC 9176 §5: "The maximum length of this
/// parameter is 63 bytes encoded in UTF-8").
pub const MAX_NAME_LEN: usize = 63;

/// Longest extra attribute name, in bytes.
pub const MAX_ATTR_NAME_LEN: usize = 63;

/// Longest extra attribute value, in bytes (a Uri-Query option holds at most 255).
pub const MAX_ATTR_VALUE_LEN: usize = 255;

/// Default limit on the links of one lookup response (RFC 9176 §6.2 `count` can ask
/// for fewer; a result with more is refused with 4.00 and a diagnostic asking for
/// `page`/`count`, never silently truncated).
pub const DEFAULT_MAX_LOOKUP_LINKS: usize = 10_000;

/// Default limit on one lookup response payload, in bytes (sent block-wise,
/// RFC 7959).
pub const DEFAULT_MAX_LOOKUP_BYTES: usize = 1024 * 1024;

/// Default time an expired registration resource stays available to its owner's
/// updates (RFC 9176 §5.3: "The RD SHOULD continue to provide access to the
/// registration resource after a registration timeout"); it is garbage-collected after.
pub const DEFAULT_EXPIRED_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Default limit on the distinct lookup queries tracked for observation (RFC 9176
/// §6.2); past it every change notifies every observer.
pub const DEFAULT_MAX_OBSERVED_QUERIES: usize = 256;

/// Default limit on simple registrations (RFC 9176 §5.1) fetching at once; more are
/// answered 5.03 with Max-Age.
pub const DEFAULT_MAX_SIMPLE_IN_FLIGHT: usize = 16;

/// Default limit on cached `/.well-known/core` documents of simple registrants.
pub const DEFAULT_MAX_SIMPLE_CACHE: usize = 1_024;

/// Default time the RD waits for a simple registrant's `/.well-known/core`.
pub const DEFAULT_SIMPLE_FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Who may change a registration once it exists: the "First Come First Remembered"
/// policy of RFC 9176 §7.5 with the requester identity this transport offers.
///
/// A requester that proved a security identity (DTLS PSK identity) is that identity,
/// whatever its address ([`crate::Requester::secured`]); the variants below say what
/// identifies a plain-CoAP requester.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessPolicy {
    /// Registration updates, removals and re-registrations of an active (ep, d) only
    /// from the IP address and port that registered (default).
    #[default]
    SameEndpoint,
    /// Only from the IP address that registered (any port).
    SameHost,
    /// From anyone: no protection (test beds, commissioning networks).
    Open,
}

/// Configuration of a [`crate::ResourceDirectory`] and of [`crate::RdState`].
#[derive(Clone, Debug)]
pub struct RdConfig {
    /// Registrations kept at most ([`DEFAULT_MAX_REGISTRATIONS`]).
    pub max_registrations: usize,
    /// Links per registration at most ([`DEFAULT_MAX_LINKS_PER_REGISTRATION`]).
    pub max_links_per_registration: usize,
    /// Bytes of one registration payload at most ([`DEFAULT_MAX_PAYLOAD`]).
    pub max_payload: usize,
    /// Bytes of link payloads in all at most ([`DEFAULT_MAX_TOTAL_PAYLOAD`]).
    pub max_total_payload: usize,
    /// Extra endpoint attributes per registration at most
    /// ([`DEFAULT_MAX_EXTRA_ATTRS`]).
    pub max_extra_attrs: usize,
    /// Links in one lookup response at most ([`DEFAULT_MAX_LOOKUP_LINKS`]).
    pub max_lookup_links: usize,
    /// Bytes of one lookup response at most ([`DEFAULT_MAX_LOOKUP_BYTES`]).
    pub max_lookup_bytes: usize,
    /// How long expired registration resources are kept for their owners
    /// ([`DEFAULT_EXPIRED_RETENTION`]).
    pub expired_retention: Duration,
    /// Lifetime assumed without `lt` ([`DEFAULT_LIFETIME`]).
    pub default_lifetime: u32,
    /// Sector given to registrations without `d` (RFC 9176 §5: "the RD MAY associate
    /// the endpoint with a configured default sector").
    pub default_sector: Option<String>,
    /// Who may change a registration ([`AccessPolicy::SameEndpoint`]).
    pub access_policy: AccessPolicy,
    /// Serve simple registration at `/.well-known/rd` (RFC 9176 §5.1; default on).
    pub simple_registration: bool,
    /// Verify a simple registrant's address with an Echo round trip before fetching
    /// its `/.well-known/core` (RFC 9176 §5.1 SHOULD where third parties can reach the
    /// RD but not the endpoint; RFC 9175 §2.4 item 3). Off by default: clients without
    /// Echo support (aiocoap 0.4's plain requests) could not register then.
    pub verify_simple_registrants: bool,
    /// Simple registrations fetching at once ([`DEFAULT_MAX_SIMPLE_IN_FLIGHT`]).
    pub max_simple_in_flight: usize,
    /// Cached simple-registrant documents ([`DEFAULT_MAX_SIMPLE_CACHE`]).
    pub max_simple_cache: usize,
    /// Wait for a simple registrant's document ([`DEFAULT_SIMPLE_FETCH_TIMEOUT`]).
    pub simple_fetch_timeout: Duration,
    /// Distinct observed lookup queries tracked ([`DEFAULT_MAX_OBSERVED_QUERIES`]).
    pub max_observed_queries: usize,
    /// Require fresh requests to change a registration resource (RFC 9176 §5.3.4): an
    /// update or removal of `/rd/{id}` without an Echo value (RFC 9175) the RD made at
    /// most this long ago is answered 4.01 Unauthorized with a new Echo value, and runs
    /// when repeated with it. Needed when a security mechanism lets requests be
    /// processed out of order (OSCORE's replay window, DTLS record reordering): §5.3.4
    /// "MUST use the Echo option if it requires request freshness and cannot determine
    /// it in any other way". `None` (default): plain CoAP has no security policy whose
    /// order freshness would protect, and endpoints without Echo support keep working.
    pub fresh_updates: Option<Duration>,
}

impl Default for RdConfig {
    fn default() -> Self {
        RdConfig {
            max_registrations: DEFAULT_MAX_REGISTRATIONS,
            max_links_per_registration: DEFAULT_MAX_LINKS_PER_REGISTRATION,
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_total_payload: DEFAULT_MAX_TOTAL_PAYLOAD,
            max_extra_attrs: DEFAULT_MAX_EXTRA_ATTRS,
            max_lookup_links: DEFAULT_MAX_LOOKUP_LINKS,
            max_lookup_bytes: DEFAULT_MAX_LOOKUP_BYTES,
            expired_retention: DEFAULT_EXPIRED_RETENTION,
            default_lifetime: DEFAULT_LIFETIME,
            default_sector: None,
            access_policy: AccessPolicy::SameEndpoint,
            simple_registration: true,
            verify_simple_registrants: false,
            max_simple_in_flight: DEFAULT_MAX_SIMPLE_IN_FLIGHT,
            max_simple_cache: DEFAULT_MAX_SIMPLE_CACHE,
            simple_fetch_timeout: DEFAULT_SIMPLE_FETCH_TIMEOUT,
            max_observed_queries: DEFAULT_MAX_OBSERVED_QUERIES,
            fresh_updates: None,
        }
    }
}
