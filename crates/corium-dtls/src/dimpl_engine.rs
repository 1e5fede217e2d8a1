//! [`DtlsEngine`] over [dimpl](https://crates.io/crates/dimpl) 0.9 (sans-IO DTLS 1.2,
//! `forbid(unsafe_code)`, RustCrypto backend).
//!
//! See [`DimplEngine`] for how cookies stay stateless.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use corium_proto::rand_core::RngCore;
use corium_proto::Instant;
use dimpl::crypto::{CryptoProvider, Dtls12CipherSuite, NamedGroup};
use dimpl::{Config, Dtls, DtlsCertificate, Output, PskResolver};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::cert::{CertifiedKey, Purpose, TrustAnchors};
use crate::config::{ClientConfig, ClientCredentials, DtlsConfig, PskStore, ServerConfig};
use crate::engine::{
    Accept, DropReason, DtlsEngine, EngineSession, PeerIdentity, Role, SessionOutput,
};
use crate::error::{AlertDescription, CertificateError, CloseReason, ConfigError, DtlsError};
use crate::native::constant_time_eq;
use crate::recent::RecentHandshakes;
use crate::record::{hello_verify_cookie, ClientHello, Epoch0};

/// `ProtocolVersion` of DTLS 1.2 on the wire (RFC 6347 §4.1).
const DTLS_1_2: u16 = 0xfefd;

/// TLS_PSK_WITH_AES_128_CCM_8 (RFC 6655), mandatory for CoAP in PSK mode (RFC 7252 §9.1.3.1).
const PSK_AES128_CCM_8: u16 = 0xC0A8;

/// The certificate-mode suites dimpl implements (it has no ECDHE_ECDSA_AES_128_CCM_8,
/// RFC 7252 §9.1.3.3's mandatory suite; these are what OpenSSL and GnuTLS negotiate).
const CERT_SUITES: [Dtls12CipherSuite; 2] = [
    Dtls12CipherSuite::ECDHE_ECDSA_AES128_GCM_SHA256,
    Dtls12CipherSuite::ECDHE_ECDSA_CHACHA20_POLY1305_SHA256,
];

/// Crypto provider with only the PSK suite. dimpl validates a provider with test vectors on
/// every `Config::build`, once per session here, so the provider is kept minimal: this one
/// costs about 4 µs in a release build (the full provider runs P-384 key exchanges: about
/// 9 ms).
fn psk_provider() -> &'static CryptoProvider {
    static P: OnceLock<CryptoProvider> = OnceLock::new();
    P.get_or_init(|| {
        let mut p = dimpl::crypto::rust_crypto::default_provider();
        let suites: Vec<_> = p
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| s.suite().as_u16() == PSK_AES128_CCM_8)
            .collect();
        p.cipher_suites = Box::leak(suites.into_boxed_slice());
        p.kx_groups = &[];
        // `build` insists on a DTLS 1.3 suite in the provider; the config disables it.
        p.dtls13_cipher_suites = &p.dtls13_cipher_suites[..1];
        p
    })
}

/// Crypto provider for certificate mode: ECDHE with X25519 and P-256 (RFC 7925 §4.4.1
/// mandates secp256r1), ECDSA with SHA-256 suites.
fn cert_provider() -> &'static CryptoProvider {
    static P: OnceLock<CryptoProvider> = OnceLock::new();
    P.get_or_init(|| {
        let mut p = dimpl::crypto::rust_crypto::default_provider();
        let suites: Vec<_> = p
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| CERT_SUITES.contains(&s.suite()))
            .collect();
        p.cipher_suites = Box::leak(suites.into_boxed_slice());
        let groups: Vec<_> = p
            .kx_groups
            .iter()
            .copied()
            .filter(|g| g.name() == NamedGroup::X25519 || g.name() == NamedGroup::Secp256r1)
            .collect();
        p.kx_groups = Box::leak(groups.into_boxed_slice());
        p.dtls13_cipher_suites = &p.dtls13_cipher_suites[..1];
        p
    })
}

/// Engine timings taken from [`DtlsConfig`].
#[derive(Clone, Copy, Debug)]
struct Timings {
    rto: Duration,
    retries: usize,
    handshake_timeout: Duration,
    mtu: usize,
}

impl Timings {
    fn builder(&self, provider: &CryptoProvider) -> dimpl::ConfigBuilder {
        Config::builder()
            .with_crypto_provider(provider.clone())
            .mtu(self.mtu)
            .flight_start_rto(self.rto)
            .flight_retries(self.retries)
            .handshake_timeout(self.handshake_timeout)
            .dtls13_cipher_suites(&[])
    }
}

/// Which credentials a server session uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerMode {
    Psk,
    Certificate,
}

/// The [dimpl](https://crates.io/crates/dimpl) engine.
///
/// # Stateless cookies over an engine that wants one instance per peer
///
/// A dimpl server instance serves one peer and answers the first ClientHello itself with a
/// HelloVerifyRequest whose cookie is `HMAC(cookie_secret, ClientHello.random)`, the secret
/// drawn from the instance's random generator. Creating an instance per ClientHello would
/// keep state for spoofed addresses, and a fresh instance cannot take the second
/// ClientHello (`message_seq` 1) directly. So the instance's generator is seeded with
/// `HMAC(K, epoch ‖ address ‖ ClientHello.random)`, `K` a secret of this engine and `epoch`
/// the current [`cookie_lifetime`](crate::DtlsConfig::cookie_lifetime) period:
///
/// 1. First ClientHello (no cookie): a throw-away instance with that seed answers it; its
///    HelloVerifyRequest is sent and the instance dropped. Nothing is kept.
/// 2. ClientHello with a cookie: a throw-away instance recomputes the cookie for this and
///    the previous epoch; on a match the session instance is built with the same seed, fed
///    the ClientHello as if it were the first one (cookie removed, `message_seq` 0; its
///    HelloVerifyRequest is discarded) and then the real one, whose cookie it now accepts.
///    The handshake transcript starts at the second ClientHello (RFC 6347 §4.2.1), so both
///    sides agree on it.
///
/// The seed also drives dimpl's non-key randomness (the 28 random bytes of
/// `ServerHello.random`, explicit nonces, retransmission jitter); key exchange uses the
/// system generator. The seed is secret (keyed by `K`) and unique per ClientHello; an exact
/// replay of a client's first flight would reproduce the ServerHello.random of that second,
/// so cookie-verified ClientHellos are remembered for two cookie periods and replays are
/// refused ([`DropReason::Replay`]).
///
/// This leans on dimpl 0.9 internals (the cookie secret is the seeded generator's draw,
/// taken in the same order for PSK and certificate instances); every handshake test in
/// `tests/memory.rs` and `tests/interop_libcoap.rs` fails if an upgrade changes it. The
/// clean fix is upstream: a server-side cookie hook in dimpl's `Config` (or a way to hand a
/// fresh instance an already verified ClientHello), which would also let the per-session
/// `Config::build` go.
pub struct DimplEngine {
    /// Arbitrary origin that maps [`Instant`] onto `std::time::Instant` (dimpl's clock type).
    /// Only differences of the `now` values passed in move time.
    origin: std::time::Instant,
    /// `K`: keys the per-ClientHello seeds (type docs).
    cookie_key: [u8; 32],
    cookie_lifetime: Duration,
    server: Option<ServerConfig>,
    timings: Timings,
    recent: RecentHandshakes,
    /// Self-signed certificate presented by certificate-mode clients without their own
    /// (dimpl needs one to build a client; it is only sent if the server asks).
    ephemeral_client_cert: Option<DtlsCertificate>,
}

impl std::fmt::Debug for DimplEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DimplEngine")
            .field("server", &self.server)
            .field("timings", &self.timings)
            .field("recent_handshakes", &self.recent.len())
            .finish_non_exhaustive()
    }
}

impl DimplEngine {
    /// An engine with the timers of `config`, serving `server` if given, its cookie secret
    /// drawn from `rng`.
    pub fn new(
        config: &DtlsConfig,
        server: Option<ServerConfig>,
        rng: &mut dyn RngCore,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if let Some(cert) = server.as_ref().and_then(|s| s.cert.as_ref()) {
            check_key(&cert.key)?;
        }
        let mut cookie_key = [0u8; 32];
        rng.fill_bytes(&mut cookie_key);
        Ok(DimplEngine {
            origin: std::time::Instant::now(),
            cookie_key,
            cookie_lifetime: config.cookie_lifetime,
            server,
            timings: Timings {
                rto: config.initial_retransmit_timeout,
                retries: config.max_retransmits,
                handshake_timeout: config.handshake_timeout,
                mtu: config.mtu,
            },
            recent: RecentHandshakes::new(config.max_recent_handshakes),
            ephemeral_client_cert: None,
        })
    }

    fn std_now(&self, now: Instant) -> std::time::Instant {
        self.origin + Duration::from_nanos(now.as_nanos())
    }

    /// `HMAC(K, epoch ‖ address ‖ random)`: the first 8 bytes seed the dimpl instance, the
    /// next 16 identify the ClientHello in the replay set.
    fn seed(&self, epoch: u64, addr: SocketAddr, random: &[u8; 32]) -> (u64, u128) {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.cookie_key)
            .expect("HMAC takes any key length");
        mac.update(b"corium-dtls cookie v1");
        mac.update(&epoch.to_be_bytes());
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
        mac.update(random);
        let out = mac.finalize().into_bytes();
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&out[..8]);
        let mut fp = [0u8; 16];
        fp.copy_from_slice(&out[8..24]);
        (u64::from_be_bytes(seed), u128::from_be_bytes(fp))
    }

    /// The HelloVerifyRequest a seeded instance sends for `initial` (a first ClientHello).
    fn hello_verify(&self, now: Instant, seed: u64, initial: &[u8]) -> Option<Bytes> {
        struct NoKeys;
        impl PskResolver for NoKeys {
            fn resolve(&self, _identity: &[u8]) -> Option<Vec<u8>> {
                None
            }
        }
        let config = self
            .timings
            .builder(psk_provider())
            .with_psk_server(None, Arc::new(NoKeys))
            .dtls12_cipher_suites(&[Dtls12CipherSuite::from_u16(PSK_AES128_CCM_8)])
            .dangerously_set_rng_seed(seed)
            .build()
            .ok()?;
        let std_now = self.std_now(now);
        let mut dtls = Dtls::new_12_psk(Arc::new(config), std_now);
        // dimpl's server needs a first handle_timeout before any packet.
        dtls.handle_timeout(std_now).ok()?;
        dtls.handle_packet(initial).ok()?;
        let mut buf = [0u8; 512];
        loop {
            match dtls.poll_output(&mut buf) {
                Output::Packet(p) => return Some(Bytes::copy_from_slice(p)),
                Output::Timeout(_) | Output::BufferTooSmall { .. } => return None,
                _ => {}
            }
        }
    }

    /// Picks PSK or certificate mode by the client's first suite that the server takes.
    fn server_mode(server: &ServerConfig, ch: &ClientHello<'_>) -> Option<ServerMode> {
        ch.suites().find_map(|s| {
            if s == PSK_AES128_CCM_8 && server.psk.is_some() {
                Some(ServerMode::Psk)
            } else if server.cert.is_some() && CERT_SUITES.contains(&Dtls12CipherSuite::from_u16(s))
            {
                Some(ServerMode::Certificate)
            } else {
                None
            }
        })
    }

    fn server_session(
        &self,
        now: Instant,
        mode: ServerMode,
        seed: u64,
        ch: &ClientHello<'_>,
        initial: &[u8],
        datagram: &[u8],
    ) -> Option<DimplSession> {
        let server = self.server.as_ref()?;
        let std_now = self.std_now(now);
        let (dtls, auth) = match mode {
            ServerMode::Psk => {
                let psk = server.psk.as_ref()?;
                let seen = Arc::new(Mutex::new(None));
                let resolver = CapturingResolver {
                    store: std::panic::AssertUnwindSafe(Arc::clone(&psk.store)),
                    seen: Arc::clone(&seen),
                };
                let config = self
                    .timings
                    .builder(psk_provider())
                    .with_psk_server(psk.hint.as_ref().map(|h| h.to_vec()), Arc::new(resolver))
                    .dtls12_cipher_suites(&[Dtls12CipherSuite::from_u16(PSK_AES128_CCM_8)])
                    .dangerously_set_rng_seed(seed)
                    .build()
                    .ok()?;
                (
                    Dtls::new_12_psk(Arc::new(config), std_now),
                    Auth::ServerPsk { seen },
                )
            }
            ServerMode::Certificate => {
                let cert = server.cert.as_ref()?;
                let config = self
                    .timings
                    .builder(cert_provider())
                    .dtls12_cipher_suites(&CERT_SUITES)
                    .require_client_certificate(cert.client_trust.is_some())
                    .dangerously_set_rng_seed(seed)
                    .build()
                    .ok()?;
                let certificate = DtlsCertificate {
                    certificate: cert.key.chain.first()?.to_vec(),
                    private_key: cert.key.key.to_vec(),
                };
                (
                    Dtls::new_12(Arc::new(config), certificate, std_now),
                    Auth::Certificate {
                        trust: cert.client_trust.clone(),
                        purpose: Purpose::ClientAuth,
                        server_name: None,
                    },
                )
            }
        };
        let mut session = DimplSession::new(dtls, self.origin, Role::Server, auth);
        session.client_random = Some(ch.random);
        // Replay the first ClientHello (the instance answers it with the HelloVerifyRequest
        // the client already has, which is dropped), then the real one.
        if session.dtls.handle_timeout(std_now).is_err()
            || session.dtls.handle_packet(initial).is_err()
        {
            return None;
        }
        session.discard_output();
        session.handle_datagram(now, datagram);
        Some(session)
    }

    fn ephemeral_certificate(&mut self) -> Result<DtlsCertificate, DtlsError> {
        if let Some(c) = &self.ephemeral_client_cert {
            return Ok(c.clone());
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| DtlsError::Engine(e.to_string()))?;
        let cert = rcgen::CertificateParams::new(vec!["corium-dtls-client".to_owned()])
            .and_then(|p| p.self_signed(&key))
            .map_err(|e| DtlsError::Engine(e.to_string()))?;
        let c = DtlsCertificate {
            certificate: cert.der().to_vec(),
            private_key: key.serialize_der(),
        };
        self.ephemeral_client_cert = Some(c.clone());
        Ok(c)
    }
}

impl DtlsEngine for DimplEngine {
    type Session = DimplSession;

    fn accept(&mut self, now: Instant, addr: SocketAddr, datagram: &[u8]) -> Accept<DimplSession> {
        let Some(server) = &self.server else {
            return Accept::Drop(DropReason::NotServer);
        };
        // DTLS 1.2 only (DTLS 1.3 ClientHellos carry 1.2 as legacy_version too).
        let Some(ch) = ClientHello::parse(datagram).filter(|ch| ch.version == DTLS_1_2) else {
            return Accept::Drop(DropReason::NotClientHello);
        };
        let Some(mode) = Self::server_mode(server, &ch) else {
            return Accept::Drop(DropReason::NoCommonCipherSuite);
        };
        let lifetime = u64::try_from(self.cookie_lifetime.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let epoch = now.as_nanos() / lifetime;
        let initial = ch.as_initial();
        let cookie = ch.cookie();
        let mut reply = None;
        if !cookie.is_empty() {
            let epochs = [Some(epoch), epoch.checked_sub(1)];
            for e in epochs.into_iter().flatten() {
                let (seed, fingerprint) = self.seed(e, addr, &ch.random);
                let Some(hvr) = self.hello_verify(now, seed, &initial) else {
                    return Accept::Drop(DropReason::NotClientHello);
                };
                if hello_verify_cookie(&hvr).is_some_and(|c| constant_time_eq(c, cookie)) {
                    let retention = self.cookie_lifetime.saturating_mul(2);
                    if let Err(reason) = self.recent.insert(now, retention, fingerprint) {
                        return Accept::Drop(reason);
                    }
                    return match self.server_session(now, mode, seed, &ch, &initial, datagram) {
                        Some(s) => Accept::Session(s),
                        None => Accept::Drop(DropReason::EngineFailure),
                    };
                }
                if e == epoch {
                    reply = Some(hvr);
                }
            }
        }
        // No cookie, or a stale one: a fresh HelloVerifyRequest (RFC 6347 §4.2.1).
        let reply = match reply {
            Some(r) => Some(r),
            None => {
                let (seed, _) = self.seed(epoch, addr, &ch.random);
                self.hello_verify(now, seed, &initial)
            }
        };
        match reply {
            Some(r) => Accept::Reply(r),
            None => Accept::Drop(DropReason::NotClientHello),
        }
    }

    fn connect(
        &mut self,
        now: Instant,
        _addr: SocketAddr,
        config: &ClientConfig,
    ) -> Result<DimplSession, DtlsError> {
        let std_now = self.std_now(now);
        let engine_err = |e: dimpl::Error| DtlsError::Engine(e.to_string());
        let (mut dtls, auth) = match &config.credentials {
            ClientCredentials::Psk { identity, key } => {
                let cfg = self
                    .timings
                    .builder(psk_provider())
                    .with_psk_client(identity.to_vec(), Arc::new(FixedKey(key.to_vec())))
                    .dtls12_cipher_suites(&[Dtls12CipherSuite::from_u16(PSK_AES128_CCM_8)])
                    .build()
                    .map_err(engine_err)?;
                (
                    Dtls::new_12_psk(Arc::new(cfg), std_now),
                    Auth::ClientPsk {
                        identity: identity.clone(),
                    },
                )
            }
            ClientCredentials::Certificate {
                trust,
                own,
                server_name,
            } => {
                let certificate = match own {
                    Some(k) => {
                        check_key(k).map_err(|e| DtlsError::Engine(e.to_string()))?;
                        DtlsCertificate {
                            certificate: k.chain.first().map(|c| c.to_vec()).unwrap_or_default(),
                            private_key: k.key.to_vec(),
                        }
                    }
                    None => self.ephemeral_certificate()?,
                };
                let cfg = self
                    .timings
                    .builder(cert_provider())
                    .dtls12_cipher_suites(&CERT_SUITES)
                    .build()
                    .map_err(engine_err)?;
                (
                    Dtls::new_12(Arc::new(cfg), certificate, std_now),
                    Auth::Certificate {
                        trust: Some(trust.clone()),
                        purpose: Purpose::ServerAuth,
                        server_name: server_name.clone(),
                    },
                )
            }
        };
        dtls.set_active(true);
        let mut session = DimplSession::new(dtls, self.origin, Role::Client, auth);
        session.handle_timeout(now);
        Ok(session)
    }
}

fn check_key(key: &CertifiedKey) -> Result<(), ConfigError> {
    dimpl::crypto::rust_crypto::default_provider()
        .key_provider
        .load_private_key(&key.key)
        .map(|_| ())
        .map_err(|_| ConfigError::UnsupportedPrivateKey)
}

/// The PSK identity a client presented, and whether the store knew it.
type SeenIdentity = Arc<Mutex<Option<(Vec<u8>, bool)>>>;

/// Server-side resolver that remembers which identity the client presented.
struct CapturingResolver {
    store: std::panic::AssertUnwindSafe<Arc<dyn PskStore>>,
    /// (identity, whether the store knew it)
    seen: SeenIdentity,
}

impl PskResolver for CapturingResolver {
    fn resolve(&self, identity: &[u8]) -> Option<Vec<u8>> {
        let key = self.store.lookup(identity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some((identity.to_vec(), key.is_some()));
        }
        key
    }
}

/// Client-side resolver: one key whatever the identity.
struct FixedKey(Vec<u8>);

impl PskResolver for FixedKey {
    fn resolve(&self, _identity: &[u8]) -> Option<Vec<u8>> {
        Some(self.0.clone())
    }
}

/// How a session authenticates its peer.
enum Auth {
    ServerPsk {
        seen: SeenIdentity,
    },
    ClientPsk {
        identity: Bytes,
    },
    Certificate {
        /// `None`: the server did not ask for a client certificate.
        trust: Option<TrustAnchors>,
        purpose: Purpose,
        server_name: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Handshaking,
    Connected,
    Done,
}

/// One dimpl instance and what the endpoint needs around it.
pub struct DimplSession {
    dtls: Dtls,
    origin: std::time::Instant,
    role: Role,
    auth: Auth,
    state: State,
    outputs: VecDeque<SessionOutput>,
    timeout: Option<Instant>,
    epoch0: Epoch0,
    peer_cert: Option<Bytes>,
    client_random: Option<[u8; 32]>,
    /// Set while draining when the session must end once the pending records are out.
    closing: Option<CloseReason>,
}

impl std::fmt::Debug for DimplSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DimplSession")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("dtls", &self.dtls)
            .finish_non_exhaustive()
    }
}

impl DimplSession {
    fn new(dtls: Dtls, origin: std::time::Instant, role: Role, auth: Auth) -> Self {
        DimplSession {
            dtls,
            origin,
            role,
            auth,
            state: State::Handshaking,
            outputs: VecDeque::new(),
            timeout: None,
            epoch0: Epoch0::default(),
            peer_cert: None,
            client_random: None,
            closing: None,
        }
    }

    fn std_now(&self, now: Instant) -> std::time::Instant {
        self.origin + Duration::from_nanos(now.as_nanos())
    }

    /// Drops pending output (the replayed HelloVerifyRequest), noting its sequence numbers.
    fn discard_output(&mut self) {
        let mut buf = [0u8; 512];
        loop {
            match self.dtls.poll_output(&mut buf) {
                Output::Packet(p) => self.epoch0.observe(p),
                Output::Timeout(_) | Output::BufferTooSmall { .. } => break,
                _ => {}
            }
        }
    }

    /// Moves everything dimpl has to say into `outputs`.
    fn drain(&mut self) {
        let mut stack = [0u8; 2048];
        let mut heap: Vec<u8> = Vec::new();
        while self.state != State::Done {
            let buf: &mut [u8] = if heap.is_empty() {
                &mut stack
            } else {
                &mut heap
            };
            match self.dtls.poll_output(buf) {
                Output::Packet(p) => {
                    self.epoch0.observe(p);
                    self.outputs
                        .push_back(SessionOutput::Transmit(Bytes::copy_from_slice(p)));
                }
                Output::BufferTooSmall { needed } => {
                    if needed <= heap.len() || needed > 1 << 20 {
                        self.fail(DtlsError::Engine("oversized output".into()));
                        return;
                    }
                    heap.resize(needed, 0);
                }
                Output::Timeout(t) => {
                    self.timeout = Some(Instant::from_duration(
                        t.saturating_duration_since(self.origin),
                    ));
                    break;
                }
                Output::Connected if self.state == State::Handshaking => match self.identity() {
                    Ok(identity) => {
                        self.state = State::Connected;
                        self.outputs.push_back(SessionOutput::Connected(identity));
                    }
                    Err(e) => {
                        self.fail(e);
                        return;
                    }
                },
                Output::PeerCert(der) => {
                    let der = Bytes::copy_from_slice(der);
                    if let Err(e) = self.check_certificate(&der) {
                        self.fail(DtlsError::Certificate(e));
                        return;
                    }
                    self.peer_cert = Some(der);
                }
                Output::ApplicationData(d) => {
                    self.outputs
                        .push_back(SessionOutput::ApplicationData(Bytes::copy_from_slice(d)));
                }
                // RFC 5246 §7.2.1: answer close_notify with close_notify.
                Output::CloseNotify if self.closing.is_none() => {
                    let _ = self.dtls.close();
                    self.closing = Some(CloseReason::PeerClosed);
                }
                _ => {}
            }
        }
        if let Some(reason) = self.closing.take() {
            self.finish(reason);
        }
    }

    fn check_certificate(&self, der: &[u8]) -> Result<(), CertificateError> {
        match &self.auth {
            Auth::Certificate {
                trust: Some(trust),
                purpose,
                server_name,
            } => trust.verify(der, &[], *purpose, server_name.as_deref()),
            _ => Ok(()),
        }
    }

    fn identity(&self) -> Result<PeerIdentity, DtlsError> {
        match &self.auth {
            Auth::ServerPsk { seen } => match seen.lock().ok().and_then(|s| s.clone()) {
                Some((identity, true)) => Ok(PeerIdentity::Psk {
                    identity: identity.into(),
                }),
                _ => Err(DtlsError::UnknownPskIdentity),
            },
            Auth::ClientPsk { identity } => Ok(PeerIdentity::Psk {
                identity: identity.clone(),
            }),
            Auth::Certificate { trust, .. } => match (&self.peer_cert, trust) {
                (Some(der), _) => Ok(PeerIdentity::Certificate {
                    end_entity: der.clone(),
                }),
                (None, None) => Ok(PeerIdentity::Anonymous),
                (None, Some(_)) => Err(DtlsError::Certificate(CertificateError::Missing)),
            },
        }
    }

    /// A local failure: a plaintext fatal alert while our writes are still unencrypted
    /// (RFC 5246 §7.2.2), then the end.
    fn fail(&mut self, error: DtlsError) {
        if self.state == State::Handshaking {
            if let Some(alert) = self.epoch0.fatal_alert(error.alert().0) {
                self.outputs
                    .push_back(SessionOutput::Transmit(Bytes::copy_from_slice(&alert)));
            }
        }
        // Aborts a handshake without output; the engine is not polled again.
        let _ = self.dtls.close();
        self.finish(CloseReason::Failed(error));
    }

    fn finish(&mut self, reason: CloseReason) {
        self.state = State::Done;
        self.timeout = None;
        self.outputs.push_back(SessionOutput::Closed(reason));
    }

    /// Maps an engine error (always fatal in dimpl) to the end of the session.
    fn on_error(&mut self, e: dimpl::Error) {
        use dimpl::{CertificateError as CE, Error as E, SecurityError as SE};
        let error = match e {
            E::SecurityError(SE::FatalAlert { description }) => {
                let _ = self.dtls.close();
                self.finish(CloseReason::PeerAlert(AlertDescription(description)));
                return;
            }
            E::Timeout(_) => {
                let _ = self.dtls.close();
                self.finish(CloseReason::HandshakeTimeout);
                return;
            }
            // With different keys the peer's Finished either fails to decrypt (dimpl treats
            // that as fatal during the handshake) or fails its check.
            E::SecurityError(SE::ClientFinishedVerificationFailed)
            | E::SecurityError(SE::ServerFinishedVerificationFailed)
            | E::CryptoError(dimpl::CryptoError::OperationFailed(
                dimpl::CryptoOperation::Decrypt,
            )) if self.state == State::Handshaking => match &self.auth {
                Auth::ServerPsk { seen } => match seen.lock().ok().and_then(|s| s.clone()) {
                    Some((_, false)) => DtlsError::UnknownPskIdentity,
                    _ => DtlsError::AuthenticationFailed,
                },
                _ => DtlsError::AuthenticationFailed,
            },
            E::SecurityError(SE::NoMutuallyAcceptableCipherSuite) => DtlsError::NoCommonCipherSuite,
            E::SecurityError(SE::UnsupportedClientVersion(_))
            | E::SecurityError(SE::UnsupportedServerVersion(_)) => DtlsError::ProtocolVersion,
            E::CertificateError(CE::NoClientCertificateReceived)
            | E::CertificateError(CE::NoServerCertificateReceived) => {
                DtlsError::Certificate(CertificateError::Missing)
            }
            other => DtlsError::Engine(other.to_string()),
        };
        self.fail(error);
    }

    fn tick(&mut self, now: Instant) -> bool {
        let std_now = self.std_now(now);
        match self.dtls.handle_timeout(std_now) {
            Ok(()) => true,
            Err(e) => {
                self.on_error(e);
                false
            }
        }
    }
}

impl EngineSession for DimplSession {
    fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if self.state == State::Done || !self.tick(now) {
            return;
        }
        match self.dtls.handle_packet(datagram) {
            Ok(()) => self.drain(),
            Err(e) => self.on_error(e),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Done {
            return;
        }
        if self.tick(now) {
            self.drain();
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Done {
            None
        } else {
            self.timeout
        }
    }

    fn poll_output(&mut self) -> Option<SessionOutput> {
        let output = self.outputs.pop_front();
        if output.is_none() && self.state != State::Handshaking && self.outputs.capacity() != 0 {
            // An established session is idle most of the time: give the queue's memory
            // (about 160 bytes after a handshake) back once it is drained. One allocation
            // per burst of records is the price.
            self.outputs = VecDeque::new();
        }
        output
    }

    fn send(&mut self, now: Instant, data: &[u8]) -> Result<(), DtlsError> {
        if self.state != State::Connected {
            return Err(DtlsError::Engine("session not established".into()));
        }
        if !self.tick(now) {
            return Err(DtlsError::Engine("session failed".into()));
        }
        match self.dtls.send_application_data(data) {
            Ok(_) => {
                self.drain();
                Ok(())
            }
            Err(e) => {
                let err = DtlsError::Engine(e.to_string());
                self.on_error(e);
                Err(err)
            }
        }
    }

    fn close(&mut self, _now: Instant, reason: CloseReason) {
        if self.state == State::Done {
            return;
        }
        let connected = self.state == State::Connected;
        let _ = self.dtls.close();
        if connected {
            // The close_notify.
            self.closing = Some(reason);
            self.drain();
        } else {
            self.finish(reason);
        }
    }

    fn client_random(&self) -> Option<[u8; 32]> {
        self.client_random
    }
}
