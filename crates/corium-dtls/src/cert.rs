//! Certificates: PEM loading, trust anchors, and RFC 5280 path validation with webpki
//! (the engine only checks that the peer's handshake signatures match its leaf
//! certificate; the chain, validity period, purpose and name are checked here).

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, TrustAnchor, UnixTime};

use crate::error::{CertificateError, ConfigError};

/// A certificate (leaf first, then any chain) and its private key, both DER.
#[derive(Clone)]
pub(crate) struct CertifiedKey {
    /// DER certificates, leaf first.
    pub(crate) chain: Vec<Bytes>,
    /// DER private key (PKCS#8 or SEC1).
    pub(crate) key: Bytes,
}

impl fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl CertifiedKey {
    /// Loads a PEM certificate chain (leaf first) and a PEM private key (`PRIVATE KEY` or
    /// `EC PRIVATE KEY`).
    pub(crate) fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, ConfigError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .map(|c| c.map(|c| Bytes::copy_from_slice(c.as_ref())))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::PemInvalid(e.to_string()))?;
        if chain.is_empty() {
            return Err(ConfigError::PemMissing("CERTIFICATE"));
        }
        let key = match PrivateKeyDer::from_pem_slice(key_pem) {
            Ok(PrivateKeyDer::Pkcs8(k)) => Bytes::copy_from_slice(k.secret_pkcs8_der()),
            Ok(PrivateKeyDer::Sec1(k)) => Bytes::copy_from_slice(k.secret_sec1_der()),
            Ok(_) => return Err(ConfigError::UnsupportedPrivateKey),
            Err(rustls_pki_types::pem::Error::NoItemsFound) => {
                return Err(ConfigError::PemMissing("PRIVATE KEY"))
            }
            Err(e) => return Err(ConfigError::PemInvalid(e.to_string())),
        };
        Ok(CertifiedKey { chain, key })
    }
}

/// CA certificates that anchor certificate paths.
#[derive(Clone)]
pub(crate) struct TrustAnchors {
    anchors: Arc<Vec<TrustAnchor<'static>>>,
}

impl fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustAnchors")
            .field("anchors", &self.anchors.len())
            .finish()
    }
}

impl TrustAnchors {
    /// Every `CERTIFICATE` in `pem` becomes a trust anchor.
    pub(crate) fn from_pem(pem: &[u8]) -> Result<Self, ConfigError> {
        let mut anchors = Vec::new();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ConfigError::PemInvalid(e.to_string()))?;
            let anchor = webpki::anchor_from_trusted_cert(&cert)
                .map_err(|e| ConfigError::InvalidTrustAnchor(e.to_string()))?;
            anchors.push(anchor.to_owned());
        }
        if anchors.is_empty() {
            return Err(ConfigError::PemMissing("CERTIFICATE"));
        }
        Ok(TrustAnchors {
            anchors: Arc::new(anchors),
        })
    }

    /// Validates `end_entity` (DER) with `intermediates` up to one of the anchors at the
    /// current wall-clock time (certificate validity is calendar time, the one clock this
    /// crate reads), for client or server authentication, and against `server_name` if
    /// given (RFC 6125: DNS name or IP address in the subjectAltName).
    pub(crate) fn verify(
        &self,
        end_entity: &[u8],
        intermediates: &[Bytes],
        purpose: Purpose,
        server_name: Option<&str>,
    ) -> Result<(), CertificateError> {
        let der = CertificateDer::from(end_entity);
        let cert =
            webpki::EndEntityCert::try_from(&der).map_err(|_| CertificateError::BadEncoding)?;
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_ref()))
            .collect();
        let now = UnixTime::since_unix_epoch(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let usage = match purpose {
            Purpose::ServerAuth => webpki::KeyUsage::server_auth(),
            Purpose::ClientAuth => webpki::KeyUsage::client_auth(),
        };
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            &intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(map_webpki)?;
        if let Some(name) = server_name {
            let name = ServerName::try_from(name)
                .map_err(|_| CertificateError::NameMismatch)?
                .to_owned();
            cert.verify_is_valid_for_subject_name(&name)
                .map_err(map_webpki)?;
        }
        Ok(())
    }
}

/// What a certificate is checked for (its extended key usage, RFC 5280 §4.2.1.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    ServerAuth,
    ClientAuth,
}

fn map_webpki(e: webpki::Error) -> CertificateError {
    use webpki::Error as E;
    match e {
        E::CertExpired { .. } | E::CertNotValidYet { .. } | E::InvalidCertValidity => {
            CertificateError::Expired
        }
        E::UnknownIssuer | E::InvalidSignatureForPublicKey => CertificateError::UnknownIssuer,
        E::CertNotValidForName(_) => CertificateError::NameMismatch,
        #[allow(deprecated)]
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
            CertificateError::InvalidPurpose
        }
        E::BadDer | E::BadDerTime => CertificateError::BadEncoding,
        other => CertificateError::Other(other.to_string()),
    }
}
