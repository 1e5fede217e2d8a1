//! TLS for `coaps+tcp` and `coaps+ws` (RFC 8323 §3, §4, §9.2) with rustls and its
//! `ring` provider.
//!
//! [`TlsServer`] carries a certificate chain and key (PEM files) and, for mutual TLS, the
//! CAs that client certificates must chain to; [`TlsClient`] carries the trust anchors
//! and an optional client certificate. ALPN is `coap` for `coaps+tcp` (RFC 8323 §8.2,
//! registered in §11.7); `coaps+ws` runs over HTTPS, so it negotiates `http/1.1`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The ALPN protocol ID of CoAP over TLS (RFC 8323 §8.2).
pub const ALPN_COAP: &[u8] = b"coap";
/// The ALPN protocol ID that WebSockets over TLS run on.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why TLS credentials could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// A PEM file holds no certificate.
    NoCertificate(PathBuf),
    /// A PEM file holds no private key (PKCS#8, PKCS#1 or SEC1).
    NoPrivateKey(PathBuf),
    /// rustls refused the credentials (e.g. a key that does not match the certificate).
    Rustls(rustls::Error),
    /// The trust anchors could not be used for verification.
    Verifier(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            TlsError::NoCertificate(path) => {
                write!(f, "no PEM certificate in {}", path.display())
            }
            TlsError::NoPrivateKey(path) => write!(f, "no PEM private key in {}", path.display()),
            TlsError::Rustls(err) => write!(f, "TLS configuration rejected: {err}"),
            TlsError::Verifier(msg) => write!(f, "cannot verify with these CAs: {msg}"),
        }
    }
}

impl std::error::Error for TlsError {}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_err(path: &Path, error: impl Into<io::Error>) -> TlsError {
    TlsError::Read {
        path: path.to_owned(),
        error: error.into(),
    }
}

/// Every certificate of a PEM file.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(path, io::Error::other(e.to_string())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(path, io::Error::other(e.to_string())))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// The first private key of a PEM file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey(path.to_owned()),
        other => read_err(path, io::Error::other(other.to_string())),
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    }
    Ok(roots)
}

/// A server's TLS credentials.
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer").finish_non_exhaustive()
    }
}

impl TlsServer {
    /// The certificate chain in `cert` and the key in `key` (PEM); with `client_ca`,
    /// clients must present a certificate that chains to one of its CAs (mutual TLS).
    pub fn from_pem_files(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> Result<TlsServer, TlsError> {
        let chain = load_certificates(cert)?;
        let key = load_private_key(key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?;
        let builder = match client_ca {
            Some(ca) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                        .build()
                        .map_err(|e| TlsError::Verifier(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(TlsError::Rustls)?;
        Ok(TlsServer::from_config(config))
    }

    /// A rustls configuration built by the application; ALPN is set per transport.
    pub fn from_config(config: rustls::ServerConfig) -> TlsServer {
        TlsServer {
            config: Arc::new(config),
        }
    }

    /// The acceptor for `coaps+tcp` (ALPN `coap`) or `coaps+ws` (ALPN `http/1.1`).
    pub(crate) fn acceptor(&self, websocket: bool) -> tokio_rustls::TlsAcceptor {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![if websocket { ALPN_HTTP11 } else { ALPN_COAP }.to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// A client's TLS settings: whom to trust, and what to present.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient").finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Trusts the CAs in `ca` (PEM); with `identity` (certificate chain, key), presents
    /// a client certificate. Server names are verified against the URI's host.
    pub fn from_pem_files(
        ca: &Path,
        identity: Option<(&Path, &Path)>,
    ) -> Result<TlsClient, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?
            .with_root_certificates(roots(ca)?);
        Self::finish(builder, identity)
    }

    /// Accepts any server certificate: for tests against self-signed servers only. The
    /// connection is encrypted but not authenticated.
    pub fn insecure(identity: Option<(&Path, &Path)>) -> Result<TlsClient, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider())));
        Self::finish(builder, identity)
    }

    /// A rustls configuration built by the application; ALPN is set per transport.
    pub fn from_config(config: rustls::ClientConfig) -> TlsClient {
        TlsClient {
            config: Arc::new(config),
        }
    }

    fn finish(
        builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<TlsClient, TlsError> {
        let config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(load_certificates(cert)?, load_private_key(key)?)
                .map_err(TlsError::Rustls)?,
            None => builder.with_no_client_auth(),
        };
        Ok(TlsClient::from_config(config))
    }

    /// Runs the client side of a TLS handshake over `stream` for a `coaps+tcp` (ALPN
    /// `coap`, RFC 8323 §8.2) or, with `websocket`, a `coaps+ws` connection (ALPN
    /// `http/1.1`), verifying the server as `host` (a DNS name or an IP literal). For
    /// tools that drive their own connections, such as a load generator; a
    /// [`crate::Client`] does this itself.
    pub async fn connect<S>(
        &self,
        stream: S,
        host: &str,
        websocket: bool,
    ) -> io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let name = server_name(host)?;
        self.connector(websocket).connect(name, stream).await
    }

    /// The connector for `coaps+tcp` (ALPN `coap`) or `coaps+ws` (ALPN `http/1.1`).
    pub(crate) fn connector(&self, websocket: bool) -> tokio_rustls::TlsConnector {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![if websocket { ALPN_HTTP11 } else { ALPN_COAP }.to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

/// The server name to verify for `host` (a DNS name or an IP literal).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, io::Error> {
    ServerName::try_from(host.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("server name {host:?}: {e}"),
        )
    })
}

/// [`TlsClient::insecure`]'s verifier: signatures are checked (so the handshake is
/// sound), the certificate's chain and name are not.
#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
