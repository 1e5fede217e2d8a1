//! [`NativePskEngine`]: stateless first contact (HelloVerifyRequest cookies, RFC 6347
//! §4.2.1) and the session factory of the native engine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use corium_proto::rand_core::RngCore;
use corium_proto::Instant;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::messages::{self, msg_type};
use super::prf::constant_time_eq;
use super::record as rl;
use super::session::{NativePskSession, Timings};
use crate::config::{ClientConfig, ClientCredentials, DtlsConfig, PskStore, ServerConfig};
use crate::engine::{Accept, DropReason, DtlsEngine};
use crate::error::{ConfigError, DtlsError};
use crate::recent::RecentHandshakes;
use crate::record::{content_type, records};

/// Cookie length (a full HMAC-SHA-256).
const COOKIE_LEN: usize = 32;

/// The native DTLS 1.2 engine for PSK mode: TLS_PSK_WITH_AES_128_CCM_8 only (RFC 6655,
/// RFC 7252 §9.1.3.1, RFC 7925 §4.2), server and client roles.
///
/// # Cookies
///
/// A ClientHello without a valid cookie is answered with a HelloVerifyRequest whose
/// cookie is `HMAC-SHA-256(K, period ‖ address ‖ ClientHello)`, the ClientHello taken
/// without its cookie field (version, random, session id, suites, compression methods,
/// extensions), `K` a secret drawn at construction and `period` the current
/// [`cookie_lifetime`](crate::DtlsConfig::cookie_lifetime) interval (the previous
/// interval's cookie is accepted too). The HelloVerifyRequest reuses the ClientHello's
/// record sequence number and `message_seq` (RFC 6347 §4.2.1, §4.2.2). Nothing is kept
/// until a ClientHello comes back with a valid cookie; the server session starts its
/// transcript with that ClientHello.
///
/// Randoms (ServerHello.random, ClientHello.random) are `HMAC-SHA-256(R, counter)` with a
/// second secret `R` drawn at construction.
pub struct NativePskEngine {
    cookie_key: [u8; 32],
    random_key: [u8; 32],
    counter: u64,
    cookie_lifetime: Duration,
    server: Option<(Arc<dyn PskStore>, Option<bytes::Bytes>)>,
    timings: Timings,
    recent: RecentHandshakes,
}

impl std::fmt::Debug for NativePskEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativePskEngine")
            .field("server", &self.server.is_some())
            .field("timings", &self.timings)
            .finish_non_exhaustive()
    }
}

impl NativePskEngine {
    /// An engine with the timers of `config`, serving the PSK side of `server` if given,
    /// its secrets drawn from `rng`. A certificate in `server` is refused
    /// ([`ConfigError::Engine`]): certificate mode needs the [`DimplEngine`](crate::DimplEngine).
    pub fn new(
        config: &DtlsConfig,
        server: Option<ServerConfig>,
        rng: &mut dyn RngCore,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let server = match server {
            Some(s) if s.cert.is_some() => {
                return Err(ConfigError::Engine(
                    "the native engine does PSK only; certificates need the dimpl engine".into(),
                ))
            }
            Some(s) => s.psk.map(|p| (p.store, p.hint)),
            None => None,
        };
        let mut cookie_key = [0u8; 32];
        rng.fill_bytes(&mut cookie_key);
        let mut random_key = [0u8; 32];
        rng.fill_bytes(&mut random_key);
        // Randoms must differ between engines even if their `rng`s were seeded alike
        // (tests, or a badly seeded generator): mix in the process's hash seed (drawn
        // from the OS) and the time.
        {
            use std::hash::{BuildHasher, Hasher};
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&random_key)
                .expect("HMAC takes any key length");
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0);
            mac.update(&h.finish().to_be_bytes());
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            mac.update(&t.to_be_bytes());
            random_key = mac.finalize().into_bytes().into();
        }
        Ok(NativePskEngine {
            cookie_key,
            random_key,
            counter: 0,
            cookie_lifetime: config.cookie_lifetime,
            server,
            timings: Timings {
                rto: config.initial_retransmit_timeout,
                retries: config.max_retransmits,
                mtu: config.mtu,
            },
            recent: RecentHandshakes::new(config.max_recent_handshakes),
        })
    }

    fn random(&mut self) -> [u8; 32] {
        self.counter += 1;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.random_key)
            .expect("HMAC takes any key length");
        mac.update(b"corium-dtls native random");
        mac.update(&self.counter.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    fn cookie(
        &self,
        period: u64,
        addr: SocketAddr,
        ch: &messages::ClientHelloInfo<'_>,
    ) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.cookie_key)
            .expect("HMAC takes any key length");
        mac.update(b"corium-dtls native cookie v1");
        mac.update(&period.to_be_bytes());
        match addr {
            SocketAddr::V4(a) => {
                mac.update(&[4]);
                mac.update(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                mac.update(&[6]);
                mac.update(&a.ip().octets());
            }
        }
        mac.update(&addr.port().to_be_bytes());
        mac.update(ch.without_cookie.0);
        mac.update(ch.without_cookie.1);
        mac.finalize().into_bytes().into()
    }
}

impl DtlsEngine for NativePskEngine {
    type Session = NativePskSession;

    fn accept(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        datagram: &[u8],
    ) -> Accept<NativePskSession> {
        if self.server.is_none() {
            return Accept::Drop(DropReason::NotServer);
        }
        // One unfragmented ClientHello in the first record, epoch 0 (RFC 6347 §4.2.1).
        let Some(rec) = records(datagram).next() else {
            return Accept::Drop(DropReason::NotClientHello);
        };
        if rec.content_type != content_type::HANDSHAKE || rec.epoch != 0 {
            return Accept::Drop(DropReason::NotClientHello);
        }
        let frag = match messages::fragments(rec.fragment).as_deref() {
            Some([f, ..]) => *f,
            _ => return Accept::Drop(DropReason::NotClientHello),
        };
        if frag.msg_type != msg_type::CLIENT_HELLO
            || frag.offset != 0
            || frag.body.len() != frag.length
        {
            return Accept::Drop(DropReason::NotClientHello);
        }
        let Some(ch) = messages::parse_client_hello(frag.body) else {
            return Accept::Drop(DropReason::NotClientHello);
        };
        // DTLS 1.2 only (DTLS 1.3 ClientHellos carry 1.2 as legacy_version too).
        if ch.version != 0xfefd || ch.renegotiating {
            return Accept::Drop(DropReason::NotClientHello);
        }
        if !ch.offers_psk_ccm8 || !ch.null_compression {
            return Accept::Drop(DropReason::NoCommonCipherSuite);
        }
        let lifetime = u64::try_from(self.cookie_lifetime.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let period = now.as_nanos() / lifetime;
        if ch.cookie.len() == COOKIE_LEN {
            let valid = [Some(period), period.checked_sub(1)]
                .into_iter()
                .flatten()
                .any(|p| constant_time_eq(&self.cookie(p, addr, &ch), ch.cookie));
            if valid {
                // A cookie-verified ClientHello seen in the last two cookie periods is
                // a replay of a client's first flight: refused.
                let fingerprint = self.cookie(u64::MAX, addr, &ch);
                let mut fp = [0u8; 16];
                fp.copy_from_slice(&fingerprint[..16]);
                let retention = self.cookie_lifetime.saturating_mul(2);
                if let Err(reason) = self.recent.insert(now, retention, u128::from_be_bytes(fp)) {
                    return Accept::Drop(reason);
                }
                let random = self.random();
                let Some((store, hint)) = &self.server else {
                    return Accept::Drop(DropReason::NotServer);
                };
                return Accept::Session(NativePskSession::server(
                    now,
                    self.timings,
                    Arc::clone(store),
                    hint.as_deref(),
                    (&ch, frag.message_seq, frag.body),
                    rec.sequence,
                    random,
                ));
            }
        }
        // No cookie, or a stale or forged one: a fresh HelloVerifyRequest with the
        // ClientHello's record sequence number and message_seq (RFC 6347 §4.2.1).
        let cookie = self.cookie(period, addr, &ch);
        let hvr = messages::message(
            msg_type::HELLO_VERIFY_REQUEST,
            frag.message_seq,
            &messages::hello_verify_request(&cookie),
        );
        let mut out = Vec::with_capacity(hvr.len() + 13);
        rl::write_plain(&mut out, content_type::HANDSHAKE, rec.sequence, &hvr);
        Accept::Reply(out.into())
    }

    fn connect(
        &mut self,
        now: Instant,
        _addr: SocketAddr,
        config: &ClientConfig,
    ) -> Result<NativePskSession, DtlsError> {
        match &config.credentials {
            ClientCredentials::Psk { identity, key } => {
                let random = self.random();
                Ok(NativePskSession::client(
                    now,
                    self.timings,
                    identity.clone(),
                    key.clone(),
                    random,
                ))
            }
            ClientCredentials::Certificate { .. } => Err(DtlsError::Engine(
                "the native engine does PSK only; certificates need the dimpl engine".into(),
            )),
        }
    }
}
