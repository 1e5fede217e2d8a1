//! DTLS options of the command line (`coaps://`, CoAP over DTLS, RFC 7252 §9).
//!
//! PSK mode (RFC 7925 §4.2): `--psk-identity`/`--psk-key` for the client verbs,
//! `--psk ID:KEY` and `--psk-file FILE` for `corium serve`. A key is text, `0x`-hex, or
//! `@FILE` (the file's bytes, one trailing newline removed).
//!
//! Certificate mode (RFC 7925 §4.4, ECDHE_ECDSA) reuses the TLS options: a client verb
//! with `--ca` (and optionally `--cert`/`--key`) and no PSK checks the server's chain
//! and name; `corium serve --cert/--key` (an ECDSA key) also serves certificate mode
//! over DTLS, `--ca` then requiring client certificates.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::Args;
use std::sync::Arc;

use corium::corium_dtls::{parse_key, ClientConfig, ConfigError, DtlsConfig, PskMap, ServerConfig};

use crate::Failure;

/// DTLS options of the client verbs.
#[derive(Debug, Args, Default, Clone)]
pub(crate) struct DtlsArgs {
    /// PSK identity for coaps:// (DTLS, RFC 7252 §9.1.3.1).
    #[arg(long = "psk-identity", value_name = "ID", requires = "psk_key")]
    pub(crate) psk_identity: Option<String>,
    /// PSK for coaps://: text, 0x-hex, or @FILE.
    #[arg(long = "psk-key", value_name = "KEY", requires = "psk_identity")]
    pub(crate) psk_key: Option<String>,
}

impl DtlsArgs {
    /// The client's DTLS credentials; `None` when none were given (`coaps://` is then
    /// refused with a clear message).
    pub(crate) fn client(&self) -> Result<Option<ClientConfig>, Failure> {
        let (Some(identity), Some(key)) = (&self.psk_identity, &self.psk_key) else {
            return Ok(None);
        };
        let key = key_bytes(key, "--psk-key")?;
        ClientConfig::psk(identity.clone().into_bytes(), key)
            .map(Some)
            .map_err(|e| Failure::usage(format!("--psk-identity/--psk-key: {e}")))
    }
}

/// Limits of `corium serve`'s DTLS endpoint (every table a peer can grow is bounded,
/// ARCHITECTURE.md); each flag overrides one field of [`DtlsConfig`], whose defaults
/// (and reasons) apply otherwise.
#[derive(Debug, Args, Default, Clone)]
pub(crate) struct DtlsLimitsArgs {
    /// coaps: DTLS sessions (handshaking and established) held at once; a ClientHello
    /// beyond it is dropped. Default 16384.
    #[arg(long = "dtls-max-sessions", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub(crate) max_sessions: Option<u32>,
    /// coaps: handshakes in progress at once. Default 1024.
    #[arg(long = "dtls-max-handshakes", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) max_handshakes: Option<u32>,
    /// coaps: handshakes one client address (IPv6: /64) may start per second, after the
    /// cookie exchange (RFC 6347 §4.2.1). Default 32.
    #[arg(long = "dtls-handshake-rate", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) handshake_rate: Option<u32>,
    /// coaps: an established session idle this many seconds is closed with close_notify.
    /// Default 300.
    #[arg(long = "dtls-idle-timeout", value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=31_536_000))]
    pub(crate) idle_timeout: Option<u32>,
    /// coaps: a handshake not finished after this many seconds is abandoned. Default 30.
    #[arg(long = "dtls-handshake-timeout", value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=3_600))]
    pub(crate) handshake_timeout: Option<u32>,
}

impl DtlsLimitsArgs {
    /// [`DtlsConfig::default`] with the given flags applied.
    pub(crate) fn config(&self) -> DtlsConfig {
        let mut c = DtlsConfig::default();
        if let Some(n) = self.max_sessions {
            c.max_sessions = n as usize;
        }
        if let Some(n) = self.max_handshakes {
            c.max_handshakes = n as usize;
        }
        if let Some(n) = self.handshake_rate {
            c.max_handshakes_per_addr = n;
        }
        if let Some(s) = self.idle_timeout {
            c.idle_timeout = Duration::from_secs(s.into());
        }
        if let Some(s) = self.handshake_timeout {
            c.handshake_timeout = Duration::from_secs(s.into());
        }
        c
    }

    /// Whether any flag was given (they need a DTLS listener).
    pub(crate) fn any(&self) -> bool {
        self.max_sessions.is_some()
            || self.max_handshakes.is_some()
            || self.handshake_rate.is_some()
            || self.idle_timeout.is_some()
            || self.handshake_timeout.is_some()
    }
}

/// A key as text, `0x`-hex, or `@FILE`.
fn key_bytes(text: &str, what: &str) -> Result<Vec<u8>, Failure> {
    if let Some(path) = text.strip_prefix('@') {
        let mut bytes = std::fs::read(path)
            .map_err(|e| Failure::usage(format!("{what}: cannot read {path}: {e}")))?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        return Ok(bytes);
    }
    parse_key(text).ok_or_else(|| Failure::usage(format!("{what}: invalid key {text:?}")))
}

/// Reads a file for a DTLS option.
fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))
}

/// Certificate mode for a client verb without a PSK: `--ca` (trust anchors), the
/// server's `host` as the name to check, `--cert`/`--key` when given.
pub(crate) fn client_certificate(
    tls: &crate::tls::TlsArgs,
    host: &str,
) -> Result<Option<ClientConfig>, Failure> {
    let Some(ca) = &tls.ca else {
        return Ok(None);
    };
    let bad = |e: ConfigError| Failure::usage(format!("DTLS certificates: {e}"));
    let mut config = ClientConfig::certificate(&read(ca)?)
        .map_err(bad)?
        .with_server_name(host);
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        config = config
            .with_client_certificate(&read(cert)?, &read(key)?)
            .map_err(bad)?;
    }
    Ok(Some(config))
}

/// The server's DTLS configuration: PSKs from `--psk ID:KEY` (repeatable) and
/// `--psk-file`, certificate mode from `--cert`/`--key` (client certificates required
/// with `--ca`); `None` when none was given. A certificate the DTLS engine cannot use
/// (e.g. an RSA key: DTLS here is ECDSA only) is skipped with a warning, since TLS may
/// still serve it.
pub(crate) fn server(
    psk: &[String],
    psk_file: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
    ca: Option<&Path>,
) -> Result<Option<ServerConfig>, Failure> {
    let keys = psk_map(psk, psk_file)?;
    let (Some(cert), Some(key)) = (cert, key) else {
        return Ok(keys.map(ServerConfig::psk));
    };
    let built = ServerConfig::certificate(&read(cert)?, &read(key)?);
    let built = match (built, ca) {
        (Ok(c), Some(ca)) => c.with_client_ca(&read(ca)?),
        (other, _) => other,
    };
    match built {
        Ok(config) => Ok(Some(match keys {
            Some(keys) => config.with_psk(Arc::new(keys)),
            None => config,
        })),
        Err(e) => {
            tracing::warn!("coaps (DTLS) certificate mode not served: {e}");
            Ok(keys.map(ServerConfig::psk))
        }
    }
}

/// The PSKs of `--psk` and `--psk-file`; `None` when neither was given.
fn psk_map(psk: &[String], psk_file: Option<&Path>) -> Result<Option<PskMap>, Failure> {
    if psk.is_empty() && psk_file.is_none() {
        return Ok(None);
    }
    let mut keys = match psk_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::usage(format!("--psk-file: cannot read {}: {e}", path.display()))
            })?;
            PskMap::parse(&text)
                .map_err(|e| Failure::usage(format!("--psk-file {}: {e}", path.display())))?
        }
        None => PskMap::new(),
    };
    for spec in psk {
        // The identity is everything before the last ':' (as in the PSK file).
        let (identity, key) = spec
            .rsplit_once(':')
            .ok_or_else(|| Failure::usage(format!("--psk {spec:?}: expected ID:KEY")))?;
        let key = key_bytes(key, "--psk")?;
        keys.insert(identity.as_bytes(), key)
            .map_err(|e| Failure::usage(format!("--psk {identity:?}: {e}")))?;
    }
    Ok(Some(keys))
}

/// Where DTLS listens: `--dtls-bind` if given, else `--secure-bind` (shared with TLS,
/// which is TCP) if given, else PORT+1 of each UDP address (5684 for the default 5683,
/// as libcoap does; port 0 stays 0).
pub(crate) fn server_addrs(
    udp: &[SocketAddr],
    dtls_bind: &[SocketAddr],
    secure_bind: &[SocketAddr],
) -> Vec<SocketAddr> {
    if !dtls_bind.is_empty() {
        return dtls_bind.to_vec();
    }
    if !secure_bind.is_empty() {
        return secure_bind.to_vec();
    }
    udp.iter()
        .map(|a| match a.port() {
            0 => *a,
            p => SocketAddr::new(a.ip(), p.saturating_add(1)),
        })
        .collect()
}

/// `coaps://` needs credentials: one clear line instead of a failed handshake.
pub(crate) fn check_scheme(
    uri: &str,
    scheme: corium::wire::Scheme,
    have_dtls: bool,
) -> Result<(), Failure> {
    if scheme == corium::wire::Scheme::Coaps && !have_dtls {
        return Err(Failure::usage(format!(
            "{uri}: coaps needs --psk-identity ID and --psk-key KEY (or --ca FILE for certificates)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_addresses() {
        assert_eq!(key_bytes("0x7365", "k").unwrap(), b"se");
        assert_eq!(key_bytes("secret", "k").unwrap(), b"secret");
        assert!(key_bytes("0x7", "k").is_err());
        let path = std::env::temp_dir().join(format!("corium-psk-{}", std::process::id()));
        std::fs::write(&path, "filekey\n").unwrap();
        let at = format!("@{}", path.display());
        assert_eq!(key_bytes(&at, "k").unwrap(), b"filekey");
        std::fs::write(&path, "# comment\ndev:a:0x6b6579\n").unwrap();
        assert!(server(&["x:y".to_owned()], Some(&path), None, None, None)
            .unwrap()
            .is_some());
        let _ = std::fs::remove_file(&path);
        assert!(server(&[], None, None, None, None).unwrap().is_none());
        assert!(server(&["nocolon".to_owned()], None, None, None, None).is_err());
        let udp: Vec<SocketAddr> =
            vec!["[::]:5683".parse().unwrap(), "127.0.0.1:0".parse().unwrap()];
        assert_eq!(
            server_addrs(&udp, &[], &[]),
            [
                "[::]:5684".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:0".parse().unwrap()
            ]
        );
        let secure: Vec<SocketAddr> = vec!["127.0.0.1:6000".parse().unwrap()];
        let explicit: Vec<SocketAddr> = vec!["127.0.0.1:7000".parse().unwrap()];
        assert_eq!(server_addrs(&udp, &[], &secure), secure);
        assert_eq!(server_addrs(&udp, &explicit, &secure), explicit);
    }

    #[test]
    fn limits_override_only_what_is_given() {
        let none = DtlsLimitsArgs::default();
        assert!(!none.any());
        let defaults = DtlsConfig::default();
        assert_eq!(none.config().max_sessions, defaults.max_sessions);
        let some = DtlsLimitsArgs {
            max_sessions: Some(10),
            handshake_rate: Some(2),
            idle_timeout: Some(60),
            ..DtlsLimitsArgs::default()
        };
        assert!(some.any());
        let c = some.config();
        assert_eq!(c.max_sessions, 10);
        assert_eq!(c.max_handshakes_per_addr, 2);
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.max_handshakes, defaults.max_handshakes);
        assert_eq!(c.handshake_timeout, defaults.handshake_timeout);
        c.validate().unwrap();
    }
}
