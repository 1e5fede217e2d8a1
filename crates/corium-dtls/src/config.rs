//! Endpoint limits, credentials and the PSK store.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::cert::{CertifiedKey, TrustAnchors};
use crate::error::ConfigError;

/// Limits and timers of a [`DtlsEndpoint`](crate::DtlsEndpoint). Every table a peer can
/// grow has a hard limit here (ARCHITECTURE.md).
#[derive(Clone, Debug)]
pub struct DtlsConfig {
    /// Sessions (handshaking and established, both roles) held at once. A new ClientHello
    /// beyond this is dropped before any cookie work. Default 16 384.
    pub max_sessions: usize,
    /// Handshakes in progress at once. Default 1 024.
    pub max_handshakes: usize,
    /// A handshake not finished after this is abandoned. Default 30 s.
    pub handshake_timeout: Duration,
    /// An established session without application data in either direction for this long is
    /// closed with `close_notify`. Default 300 s.
    pub idle_timeout: Duration,
    /// First handshake retransmission timeout, doubled on each retry (RFC 6347 §4.2.4.1:
    /// 1 s). Default 1 s; RFC 7925 §11 recommends 9 s on slow constrained links.
    pub initial_retransmit_timeout: Duration,
    /// Retransmissions of one flight before the handshake fails. Default 4.
    pub max_retransmits: usize,
    /// Largest datagram the engine produces (handshake flights are fragmented to fit).
    /// Default 1 232: the IPv6 minimum MTU of 1 280 less the IPv6 and UDP headers.
    pub mtu: usize,
    /// Largest application-data payload (one CoAP message) accepted by
    /// [`send`](crate::DtlsEndpoint::send). Default 1 152 (RFC 7252 §4.6).
    pub max_application_data: usize,
    /// Messages [`send`](crate::DtlsEndpoint::send) may queue on a session whose handshake
    /// is still running. Default 16.
    pub max_pending_sends: usize,
    /// How long a HelloVerifyRequest cookie stays valid: cookies are keyed by a secret that
    /// rotates every `cookie_lifetime`, and the previous one is still accepted (RFC 6347
    /// §4.2.1). Default 10 s.
    pub cookie_lifetime: Duration,
    /// Cookie-verified ClientHellos remembered (for `2 × cookie_lifetime`) so an exact
    /// replay of a client's first flight cannot start a second handshake. When full, new
    /// handshakes are refused until entries expire, which also caps the sustained handshake
    /// rate at `max_recent_handshakes / (2 × cookie_lifetime)`: 13 107/s with the defaults
    /// (a one-core server completes about 8 000 PSK handshakes/s). Default 262 144 (about
    /// 13 MiB when full, only under such a rate).
    pub max_recent_handshakes: usize,
    /// Handshakes one client address may start per second, with bursts of as many: a
    /// ClientHello that carries a cookie (so, if the cookie is valid, an address that
    /// receives our datagrams, RFC 6347 §4.2.1) from an address over its rate is dropped
    /// before any cookie check or handshake work, and the client retransmits it later
    /// (RFC 6347 §4.2.4). Only ClientHellos that pass the cookie check count, so a spoofer
    /// cannot spend another address's allowance. IPv4 addresses count one by one, IPv6
    /// addresses per /64 prefix (one host's usual allocation). Default 32 (a thousand
    /// devices behind one NAT address all reconnect within about 30 s).
    pub max_handshakes_per_addr: u32,
    /// Client addresses (IPv6: /64 prefixes) the per-address handshake rate is tracked
    /// for at once. An address leaves the table once its allowance is full again (at most
    /// one second after its last handshake); while the table is full of addresses that
    /// handshook within the last second, handshakes from new addresses are dropped.
    /// Default 16 384.
    pub max_rate_limited_addrs: usize,
    /// Which engine [`DtlsEndpoint::new`](crate::DtlsEndpoint::new) runs sessions on.
    /// Default [`EngineChoice::NativePsk`](crate::EngineChoice::NativePsk): the native
    /// engine for PSK-only servers and PSK clients, dimpl for certificates.
    pub engine: crate::native::EngineChoice,
}

impl Default for DtlsConfig {
    fn default() -> Self {
        DtlsConfig {
            max_sessions: 16_384,
            max_handshakes: 1_024,
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            initial_retransmit_timeout: Duration::from_secs(1),
            max_retransmits: 4,
            mtu: 1_232,
            max_application_data: 1_152,
            max_pending_sends: 16,
            cookie_lifetime: Duration::from_secs(10),
            max_recent_handshakes: 262_144,
            max_handshakes_per_addr: 32,
            max_rate_limited_addrs: 16_384,
            engine: crate::native::EngineChoice::default(),
        }
    }
}

impl DtlsConfig {
    /// Checks every value for range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let nonzero = [
            (self.max_sessions, "max_sessions"),
            (self.max_handshakes, "max_handshakes"),
            (self.max_application_data, "max_application_data"),
            (self.max_recent_handshakes, "max_recent_handshakes"),
            (
                self.max_handshakes_per_addr as usize,
                "max_handshakes_per_addr",
            ),
            (self.max_rate_limited_addrs, "max_rate_limited_addrs"),
        ];
        for (v, name) in nonzero {
            if v == 0 {
                return Err(ConfigError::InvalidValue(name));
            }
        }
        let durations = [
            (self.handshake_timeout, "handshake_timeout"),
            (self.idle_timeout, "idle_timeout"),
            (
                self.initial_retransmit_timeout,
                "initial_retransmit_timeout",
            ),
            (self.cookie_lifetime, "cookie_lifetime"),
        ];
        for (d, name) in durations {
            if d.is_zero() || d > Duration::from_secs(10 * 365 * 86_400) {
                return Err(ConfigError::InvalidValue(name));
            }
        }
        if !(256..=16_384).contains(&self.mtu) {
            return Err(ConfigError::InvalidValue("mtu"));
        }
        // RFC 5246 §6.2.1: a record's plaintext is at most 2^14 bytes.
        if self.max_application_data > 16_384 {
            return Err(ConfigError::InvalidValue("max_application_data"));
        }
        Ok(())
    }
}

/// Looks up the pre-shared key of a PSK identity (RFC 4279 §2), so that a server can keep
/// its keys in its own store.
///
/// Called once per handshake, from inside
/// [`DtlsEndpoint::handle_datagram`](crate::DtlsEndpoint::handle_datagram): keep it fast
/// and non-blocking.
pub trait PskStore: Send + Sync {
    /// The key for `identity`, or `None` if the identity is unknown (the handshake then
    /// fails with `decrypt_error`, indistinguishable from a wrong key to the client).
    fn lookup(&self, identity: &[u8]) -> Option<Vec<u8>>;
}

impl<F> PskStore for F
where
    F: Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync,
{
    fn lookup(&self, identity: &[u8]) -> Option<Vec<u8>> {
        self(identity)
    }
}

/// A [`PskStore`] in memory: identity → key.
#[derive(Clone, Default)]
pub struct PskMap {
    keys: HashMap<Vec<u8>, Vec<u8>>,
}

impl fmt::Debug for PskMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are secret: show identities only.
        f.debug_struct("PskMap")
            .field("identities", &self.keys.len())
            .finish()
    }
}

impl PskMap {
    /// An empty map.
    pub fn new() -> Self {
        PskMap::default()
    }

    /// Adds (or replaces) `identity` with `key`. Identities are 1..=128 bytes and keys
    /// 1..=64 bytes (RFC 4279 §5.3).
    pub fn insert(
        &mut self,
        identity: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Result<(), ConfigError> {
        let identity = identity.into();
        let key = key.into();
        check_psk(&identity, &key)?;
        self.keys.insert(identity, key);
        Ok(())
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parses a credentials file: one `identity:key` per line, the key as text or as
    /// `0x`-prefixed hex; blank lines and lines starting with `#` are skipped. The identity
    /// is everything before the last `:`, so identities may contain colons.
    pub fn parse(text: &str) -> Result<PskMap, ConfigError> {
        let mut map = PskMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (identity, key) = line
                .rsplit_once(':')
                .ok_or(ConfigError::PskFileLine(i + 1))?;
            let key = parse_key(key).ok_or(ConfigError::PskFileLine(i + 1))?;
            map.insert(identity.as_bytes(), key)
                .map_err(|_| ConfigError::PskFileLine(i + 1))?;
        }
        Ok(map)
    }
}

/// A key given as text or `0x`-hex (the form of libcoap's `-k` and of Corium's CLI).
pub fn parse_key(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        if hex.len() % 2 != 0 || hex.is_empty() {
            return None;
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect()
    } else if text.is_empty() {
        None
    } else {
        Some(text.as_bytes().to_vec())
    }
}

impl PskStore for PskMap {
    fn lookup(&self, identity: &[u8]) -> Option<Vec<u8>> {
        self.keys.get(identity).cloned()
    }
}

fn check_psk(identity: &[u8], key: &[u8]) -> Result<(), ConfigError> {
    if identity.is_empty() || identity.len() > 128 {
        return Err(ConfigError::InvalidPskIdentity);
    }
    if key.is_empty() || key.len() > 64 {
        return Err(ConfigError::InvalidPsk);
    }
    Ok(())
}

/// The server side of PSK mode (TLS_PSK_WITH_AES_128_CCM_8, RFC 7925 §4.2).
#[derive(Clone)]
pub(crate) struct PskServer {
    pub(crate) store: Arc<dyn PskStore>,
    pub(crate) hint: Option<Bytes>,
}

/// The server side of certificate mode (TLS_ECDHE_ECDSA, RFC 7925 §4.4).
#[derive(Clone, Debug)]
pub(crate) struct CertServer {
    pub(crate) key: CertifiedKey,
    /// Request and verify client certificates against these CAs.
    pub(crate) client_trust: Option<TrustAnchors>,
}

/// What a DTLS server accepts: PSK, certificates, or both (the client's cipher-suite
/// preference picks one per handshake).
#[derive(Clone, Default)]
pub struct ServerConfig {
    pub(crate) psk: Option<PskServer>,
    pub(crate) cert: Option<CertServer>,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("psk", &self.psk.is_some())
            .field("psk_hint", &self.psk.as_ref().and_then(|p| p.hint.as_ref()))
            .field("cert", &self.cert)
            .finish()
    }
}

impl ServerConfig {
    /// PSK mode with keys from `store` (a [`PskMap`], a closure, or the application's own
    /// [`PskStore`]).
    pub fn psk(store: impl PskStore + 'static) -> Self {
        ServerConfig {
            psk: Some(PskServer {
                store: Arc::new(store),
                hint: None,
            }),
            cert: None,
        }
    }

    /// PSK mode with a shared store.
    pub fn psk_shared(store: Arc<dyn PskStore>) -> Self {
        ServerConfig {
            psk: Some(PskServer { store, hint: None }),
            cert: None,
        }
    }

    /// Certificate mode: the server's certificate and ECDSA private key, as PEM.
    pub fn certificate(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, ConfigError> {
        Ok(ServerConfig {
            psk: None,
            cert: Some(CertServer {
                key: CertifiedKey::from_pem(cert_pem, key_pem)?,
                client_trust: None,
            }),
        })
    }

    /// Adds PSK mode to a configuration (e.g. one with a certificate).
    pub fn with_psk(mut self, store: Arc<dyn PskStore>) -> Self {
        let hint = self.psk.take().and_then(|p| p.hint);
        self.psk = Some(PskServer { store, hint });
        self
    }

    /// Adds certificate mode to a configuration (e.g. a PSK one).
    pub fn with_certificate(
        mut self,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, ConfigError> {
        let client_trust = self.cert.take().and_then(|c| c.client_trust);
        self.cert = Some(CertServer {
            key: CertifiedKey::from_pem(cert_pem, key_pem)?,
            client_trust,
        });
        Ok(self)
    }

    /// The PSK identity hint sent in ServerKeyExchange (RFC 4279 §2; RFC 7925 §4.2 says
    /// clients should not rely on it). Ignored without PSK mode.
    pub fn with_identity_hint(mut self, hint: impl Into<Bytes>) -> Self {
        if let Some(psk) = &mut self.psk {
            psk.hint = Some(hint.into());
        }
        self
    }

    /// Requires client certificates in certificate mode, verified against the CAs in
    /// `ca_pem` (RFC 7925 §4.4.2); the verified certificate becomes the peer's identity.
    /// Without it the server does not ask for a client certificate. Ignored without
    /// certificate mode.
    pub fn with_client_ca(mut self, ca_pem: &[u8]) -> Result<Self, ConfigError> {
        let trust = TrustAnchors::from_pem(ca_pem)?;
        if let Some(cert) = &mut self.cert {
            cert.client_trust = Some(trust);
        }
        Ok(self)
    }

    /// Whether PSK mode is configured.
    pub fn has_psk(&self) -> bool {
        self.psk.is_some()
    }

    /// Whether certificate mode is configured.
    pub fn has_certificate(&self) -> bool {
        self.cert.is_some()
    }
}

/// Credentials of one client session.
#[derive(Clone)]
pub(crate) enum ClientCredentials {
    Psk {
        identity: Bytes,
        key: Bytes,
    },
    Certificate {
        trust: TrustAnchors,
        own: Option<CertifiedKey>,
        server_name: Option<String>,
    },
}

/// How [`DtlsEndpoint::connect`](crate::DtlsEndpoint::connect) authenticates.
#[derive(Clone)]
pub struct ClientConfig {
    pub(crate) credentials: ClientCredentials,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.credentials {
            ClientCredentials::Psk { identity, .. } => f
                .debug_struct("ClientConfig::Psk")
                .field("identity", identity)
                .finish(),
            ClientCredentials::Certificate {
                own, server_name, ..
            } => f
                .debug_struct("ClientConfig::Certificate")
                .field("client_certificate", &own.is_some())
                .field("server_name", server_name)
                .finish(),
        }
    }
}

impl ClientConfig {
    /// PSK mode (TLS_PSK_WITH_AES_128_CCM_8): identity 1..=128 bytes, key 1..=64 bytes.
    pub fn psk(identity: impl Into<Bytes>, key: impl Into<Bytes>) -> Result<Self, ConfigError> {
        let identity = identity.into();
        let key = key.into();
        check_psk(&identity, &key)?;
        Ok(ClientConfig {
            credentials: ClientCredentials::Psk { identity, key },
        })
    }

    /// Certificate mode: the server's certificate must chain to a CA in `ca_pem`.
    pub fn certificate(ca_pem: &[u8]) -> Result<Self, ConfigError> {
        Ok(ClientConfig {
            credentials: ClientCredentials::Certificate {
                trust: TrustAnchors::from_pem(ca_pem)?,
                own: None,
                server_name: None,
            },
        })
    }

    /// Presents this certificate and ECDSA key when the server asks for one. Ignored in
    /// PSK mode.
    pub fn with_client_certificate(
        mut self,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, ConfigError> {
        if let ClientCredentials::Certificate { own, .. } = &mut self.credentials {
            *own = Some(CertifiedKey::from_pem(cert_pem, key_pem)?);
        }
        Ok(self)
    }

    /// Also checks that the server certificate names `name` (a DNS name or an IP address,
    /// RFC 6125). Ignored in PSK mode.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        if let ClientCredentials::Certificate { server_name, .. } = &mut self.credentials {
            *server_name = Some(name.into());
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psk_file_forms() {
        let map = PskMap::parse("# comment\n\nCoAP:secretPSK\nhex:0x0102ff\na:b:c\r\n").unwrap();
        assert_eq!(map.len(), 3);
        assert_eq!(map.lookup(b"CoAP").unwrap(), b"secretPSK");
        assert_eq!(map.lookup(b"hex").unwrap(), [1, 2, 0xff]);
        assert_eq!(map.lookup(b"a:b").unwrap(), b"c");
        assert_eq!(
            PskMap::parse("nocolon").err(),
            Some(ConfigError::PskFileLine(1))
        );
        assert_eq!(
            PskMap::parse("x:0x1").err(),
            Some(ConfigError::PskFileLine(1))
        );
    }

    #[test]
    fn key_forms() {
        assert_eq!(parse_key("0x0a0B"), Some(vec![10, 11]));
        assert_eq!(parse_key("0x0"), None);
        assert_eq!(parse_key("0xzz"), None);
        assert_eq!(parse_key(""), None);
        assert_eq!(parse_key("abc"), Some(b"abc".to_vec()));
    }

    #[test]
    fn psk_limits() {
        assert_eq!(
            ClientConfig::psk("", "k").err(),
            Some(ConfigError::InvalidPskIdentity)
        );
        assert_eq!(
            ClientConfig::psk("i", vec![0u8; 65]).err(),
            Some(ConfigError::InvalidPsk)
        );
        assert!(ClientConfig::psk("i", vec![0u8; 64]).is_ok());
    }

    #[test]
    fn defaults_validate() {
        DtlsConfig::default().validate().unwrap();
        let bad = DtlsConfig {
            mtu: 10,
            ..DtlsConfig::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::InvalidValue("mtu")));
    }
}
