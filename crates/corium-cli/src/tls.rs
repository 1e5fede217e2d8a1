//! TLS options of the command line (`coaps+tcp`, `coaps+ws`, RFC 8323 §9.2): trust
//! anchors and client certificates for the client verbs, certificate and key (and
//! optionally client CAs) for `corium serve`.

use std::path::PathBuf;

use clap::Args;
use corium::tls::{TlsClient, TlsServer};

use crate::Failure;

/// TLS options of the client verbs.
#[derive(Debug, Args, Default, Clone)]
pub(crate) struct TlsArgs {
    /// Trust anchors (PEM) for coaps+tcp:// and coaps+ws:// servers, and for
    /// coaps:// (DTLS certificate mode) when no PSK is given.
    #[arg(long = "ca", value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// Client certificate chain (PEM), for servers that require one.
    #[arg(long = "cert", value_name = "FILE", requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long = "key", value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// Accept any server certificate (testing only: encrypted, not authenticated).
    #[arg(long = "insecure", conflicts_with = "ca")]
    pub(crate) insecure: bool,
}

impl TlsArgs {
    /// The client's TLS settings; `None` when no option was given (secure schemes are
    /// then refused with a clear message).
    pub(crate) fn client(&self) -> Result<Option<TlsClient>, Failure> {
        let identity = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            _ => None,
        };
        let tls = match (&self.ca, self.insecure) {
            (Some(ca), _) => TlsClient::from_pem_files(ca, identity),
            (None, true) => TlsClient::insecure(identity),
            (None, false) if identity.is_some() => {
                return Err(Failure::usage(
                    "--cert needs --ca (or --insecure) to check the server".to_owned(),
                ))
            }
            (None, false) => return Ok(None),
        };
        tls.map(Some).map_err(|e| Failure::usage(e.to_string()))
    }
}

/// The server's TLS credentials from `--cert`, `--key` and `--ca`.
pub(crate) fn server(
    cert: Option<&PathBuf>,
    key: Option<&PathBuf>,
    ca: Option<&PathBuf>,
) -> Result<Option<TlsServer>, Failure> {
    match (cert, key) {
        (Some(cert), Some(key)) => TlsServer::from_pem_files(cert, key, ca.map(PathBuf::as_path))
            .map(Some)
            .map_err(|e| Failure::usage(e.to_string())),
        (None, None) if ca.is_some() => Err(Failure::usage(
            "--ca needs --cert and --key: client certificates are checked over TLS".to_owned(),
        )),
        (None, None) => Ok(None),
        _ => Err(Failure::usage("--cert and --key go together".to_owned())),
    }
}

/// A secure scheme needs trust anchors: one clear line instead of a failed handshake.
pub(crate) fn check_secure_scheme(
    uri: &str,
    scheme: corium::wire::Scheme,
    have_tls: bool,
) -> Result<(), Failure> {
    use corium::wire::Scheme;
    if matches!(scheme, Scheme::CoapsTcp | Scheme::CoapsWs) && !have_tls {
        return Err(Failure::usage(format!(
            "{uri}: {scheme} needs --ca FILE to verify the server (or --insecure for testing)"
        )));
    }
    Ok(())
}
