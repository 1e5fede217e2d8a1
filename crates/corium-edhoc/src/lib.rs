//! EDHOC (RFC 9528) for Corium: credentials, the initiator and responder state
//! machines, and the OSCORE security context an exchange yields (Appendix A.1).
//!
//! The protocol itself is [`lakers`] (cipher suite 2, method 3: static Diffie-Hellman
//! keys on both sides, the only combination it offers); this crate is sans-IO and adds
//! what a CoAP stack needs around it:
//!
//! - [`OwnCredential`]: a static P-256 private key with its CCS (CWT Claims Set)
//!   credential, sent by reference (`kid`) or by value (RFC 9528 §3.5.3);
//! - [`PeerCredentials`]: the credentials of the peers one accepts, found by the
//!   `ID_CRED_x` they send (by `kid` or by value);
//! - [`Initiator`] → [`InitiatorWaitM2`] → [`InitiatorWaitM4`] → [`Session`], and
//!   [`Responder`] → [`ResponderWaitM3`] → [`Session`], each step consuming the previous
//!   state so no message can be processed twice;
//! - [`Session::oscore_context`]: Master Secret and Master Salt from `EDHOC_Exporter`
//!   labels 0 and 1, Sender ID = the peer's connection identifier, Recipient ID = one's
//!   own (RFC 9528 Appendix A.1);
//! - the CoAP transport framing of Appendix A.2 ([`coap`]): message_1 prefixed with CBOR
//!   `true`, message_3 prefixed with `C_R`, and the EDHOC option payload split of RFC
//!   9668 §3.
//!
//! ```
//! use corium_edhoc::{message_1_c_i, Initiator, OwnCredential, PeerCredentials, Responder};
//!
//! let (i_key, i_ccs) = OwnCredential::generate(b"\x2b", "initiator")?;
//! let (r_key, r_ccs) = OwnCredential::generate(b"\x32", "responder")?;
//! let initiator = Initiator::new(
//!     OwnCredential::new(&i_key, &i_ccs)?,
//!     PeerCredentials::new().with_ccs(&r_ccs)?,
//! );
//! let responder = Responder::new(
//!     OwnCredential::new(&r_key, &r_ccs)?,
//!     PeerCredentials::new().with_ccs(&i_ccs)?,
//! );
//!
//! let (wait_m2, message_1) = initiator.message_1(None)?;
//! // C_R must differ from the C_I the initiator picked at random (RFC 9528 §3.3.2).
//! let c_r: &[u8] = if message_1_c_i(&message_1).as_deref() == Some(&[0x27]) {
//!     &[0x28]
//! } else {
//!     &[0x27]
//! };
//! let (wait_m3, message_2) = responder.process_message_1(&message_1, c_r)?;
//! let (wait_m4, message_3) = wait_m2.process_message_2(&message_2)?;
//! let (r_session, message_4) = wait_m3.process_message_3(&message_3)?;
//! let i_session = wait_m4.process_message_4(&message_4)?;
//!
//! let client = i_session.oscore_context().build()?;
//! let server = r_session.oscore_context().build()?;
//! assert_eq!(client.sender_id(), server.recipient_id());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

use core::fmt;

use lakers::{
    credential_check_or_fetch, ConnId, CredentialTransfer, EDHOCError, EDHOCMethod, EDHOCSuite,
    EdhocInitiator, EdhocInitiatorWaitM2, EdhocInitiatorWaitM4, EdhocMessageBuffer, EdhocResponder,
    EdhocResponderDone, EdhocResponderWaitM3, IdCred,
};
use rand_core::OsRng;

pub mod coap;
mod crypto;

use crypto::Backend;

pub use corium_oscore;

/// The only cipher suite lakers implements (RFC 9528 §10.2: AES-CCM-16-64-128, SHA-256,
/// 8-byte MACs, P-256, ES256, AES-CCM-16-64-128 and SHA-256 for the application).
pub const CIPHER_SUITE: u8 = 2;

/// The only method lakers implements: static DH keys on both sides (RFC 9528 §3.2).
pub const METHOD: u8 = 3;

/// Length of the OSCORE Master Secret exported for cipher suite 2 (RFC 9528 Appendix A.1:
/// the key length of the application AEAD, AES-CCM-16-64-128).
pub const OSCORE_MASTER_SECRET_LEN: usize = 16;

/// Length of the OSCORE Master Salt (RFC 9528 Appendix A.1: 8 bytes by default).
pub const OSCORE_MASTER_SALT_LEN: usize = 8;

/// Longest connection identifier (the byte string; lakers keeps its CBOR encoding in 8
/// bytes).
pub const MAX_CONNECTION_ID_LEN: usize = 7;

/// Longest EDHOC message lakers handles (its default buffer size).
pub const MAX_MESSAGE_LEN: usize = lakers::MAX_MESSAGE_SIZE_LEN;

/// Longest CCS sent by value (`ID_CRED_x = {14: CCS}`): the credential then appears
/// twice in lakers' 256-byte KDF context of MAC_2 / MAC_3 (ID_CRED_x and CRED_x), which
/// lakers 0.8 overruns with a panic beyond about 106 bytes.
pub const MAX_CREDENTIAL_BY_VALUE_LEN: usize = 100;

/// `EDHOC_Exporter` label of the OSCORE Master Secret (RFC 9528 Appendix A.1).
const EXPORTER_LABEL_SECRET: u8 = 0;
/// `EDHOC_Exporter` label of the OSCORE Master Salt (RFC 9528 Appendix A.1).
const EXPORTER_LABEL_SALT: u8 = 1;

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why an EDHOC step or a credential failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The private key is not a P-256 scalar of 32 bytes.
    InvalidPrivateKey,
    /// The credential is not a CCS with a P-256 COSE_Key lakers understands (RFC 9528
    /// §3.5.2), or is too long.
    InvalidCredential,
    /// The private key does not belong to the credential's public key.
    KeyMismatch,
    /// The credential has no `kid`, so it cannot be sent by reference.
    CredentialWithoutKid,
    /// A `kid` longer than 16 bytes (lakers' limit), a subject over 255 bytes, or a
    /// credential over [`MAX_CREDENTIAL_BY_VALUE_LEN`] sent by value.
    TooLong,
    /// The peer's `ID_CRED_x` names no configured peer credential (RFC 9528 §5.3.3 /
    /// §5.4.3: EDHOC error code 3, unknown credential referenced).
    UnknownPeer,
    /// A message longer than [`MAX_MESSAGE_LEN`].
    MessageTooLong,
    /// A message that does not parse (RFC 9528 §5.2.3, §5.3.3, §5.4.3).
    Malformed,
    /// message_1 selects a cipher suite other than [`CIPHER_SUITE`] (RFC 9528 §6.3).
    UnsupportedCipherSuite,
    /// message_1 uses a method other than [`METHOD`].
    UnsupportedMethod,
    /// MAC_2 or MAC_3 does not verify: wrong credentials or tampering (RFC 9528 §5.3.3,
    /// §5.4.3), or message_4 did not decrypt (§5.5.3).
    VerificationFailed,
    /// A critical EAD item this implementation does not process (RFC 9528 §3.8).
    CriticalEad,
    /// A public key (G_X, G_Y or a credential's) that is not a P-256 x-coordinate
    /// (RFC 9528 §9.2: public keys must be validated).
    InvalidPublicKey,
    /// A connection identifier longer than [`MAX_CONNECTION_ID_LEN`] or empty.
    InvalidConnectionId,
    /// C_I and C_R are equal, so the OSCORE Sender and Recipient IDs would be too
    /// (RFC 9528 §3.3.3, Appendix A.1).
    IdenticalConnectionIds,
    /// Any other error lakers reports.
    Protocol(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::InvalidPrivateKey => "invalid P-256 private key",
            Error::InvalidCredential => "invalid CCS credential",
            Error::KeyMismatch => "the private key does not match the credential",
            Error::CredentialWithoutKid => "the credential has no kid",
            Error::TooLong => "kid or subject too long",
            Error::UnknownPeer => "unknown peer credential",
            Error::MessageTooLong => "EDHOC message too long",
            Error::Malformed => "malformed EDHOC message",
            Error::UnsupportedCipherSuite => "unsupported cipher suite",
            Error::UnsupportedMethod => "unsupported EDHOC method",
            Error::VerificationFailed => "EDHOC verification failed",
            Error::CriticalEad => "unsupported critical EAD item",
            Error::InvalidPublicKey => "invalid P-256 public key",
            Error::InvalidConnectionId => "invalid connection identifier",
            Error::IdenticalConnectionIds => "C_I and C_R are identical",
            Error::Protocol(s) => s,
        })
    }
}

impl std::error::Error for Error {}

impl From<EDHOCError> for Error {
    fn from(e: EDHOCError) -> Error {
        match e {
            EDHOCError::UnexpectedCredential => Error::UnknownPeer,
            EDHOCError::MacVerificationFailed => Error::VerificationFailed,
            EDHOCError::UnsupportedMethod => Error::UnsupportedMethod,
            EDHOCError::UnsupportedCipherSuite => Error::UnsupportedCipherSuite,
            EDHOCError::ParsingError => Error::Malformed,
            EDHOCError::CredentialTooLongError => Error::InvalidCredential,
            EDHOCError::EADUnprocessable => Error::CriticalEad,
            EDHOCError::MissingIdentity => Error::Protocol("missing identity"),
            EDHOCError::IdentityAlreadySet => Error::Protocol("identity already set"),
            EDHOCError::EncodingError => Error::Protocol("encoding error"),
            EDHOCError::EadLabelTooLongError | EDHOCError::EadTooLongError => {
                Error::Protocol("EAD too long")
            }
            EDHOCError::AccessDenied => Error::Protocol("access denied"),
            _ => Error::Protocol("EDHOC error"),
        }
    }
}

impl Error {
    /// The EDHOC error message (RFC 9528 §6) a responder may send for this error:
    /// `ERR_CODE` 1 (unspecified, with ERR_INFO a text string) or 3 (unknown credential
    /// referenced, RFC 9528 §6.4 — ERR_INFO `true`), CBOR-encoded.
    pub fn edhoc_error_message(&self) -> Vec<u8> {
        match self {
            Error::UnknownPeer => vec![0x03, 0xf5],
            other => {
                let text = other.to_string();
                let mut out = vec![0x01];
                cbor_head(&mut out, 3, text.len());
                out.extend_from_slice(text.as_bytes());
                out
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------

/// One's own static DH key and CCS credential (RFC 9528 §3.5.2, method 3).
#[derive(Clone)]
pub struct OwnCredential {
    private_key: [u8; 32],
    credential: lakers::Credential,
    transfer: CredentialTransfer,
}

impl fmt::Debug for OwnCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnCredential")
            .field("kid", &self.kid())
            .field("by_value", &(self.transfer == CredentialTransfer::ByValue))
            .finish_non_exhaustive()
    }
}

impl OwnCredential {
    /// A 32-byte P-256 private key (the COSE_Key `d`) and the CBOR bytes of its CCS
    /// credential: `{? 2: subject, 8: {1: COSE_Key}}` with a P-256 EC2 key. Sent by
    /// reference (its `kid`) when it has one, otherwise by value.
    pub fn new(private_key: &[u8], ccs: &[u8]) -> Result<OwnCredential, Error> {
        let private_key: [u8; 32] = private_key
            .try_into()
            .map_err(|_| Error::InvalidPrivateKey)?;
        let secret =
            p256::SecretKey::from_slice(&private_key).map_err(|_| Error::InvalidPrivateKey)?;
        let credential = parse_ccs(ccs)?;
        let public = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            &secret.public_key(),
            false,
        );
        if public.x().map(|x| &x[..]) != credential.public_key().as_ref().map(|k| &k[..]) {
            return Err(Error::KeyMismatch);
        }
        let transfer = if credential.kid.is_some() {
            CredentialTransfer::ByReference
        } else if ccs.len() <= MAX_CREDENTIAL_BY_VALUE_LEN {
            CredentialTransfer::ByValue
        } else {
            return Err(Error::TooLong);
        };
        Ok(OwnCredential {
            private_key,
            credential,
            transfer,
        })
    }

    /// Sends the credential by value (`ID_CRED_x = {14: CCS}`) rather than by `kid`.
    pub fn by_value(mut self, by_value: bool) -> Result<OwnCredential, Error> {
        self.transfer = if by_value {
            if self.credential.bytes.len() > MAX_CREDENTIAL_BY_VALUE_LEN {
                return Err(Error::TooLong);
            }
            CredentialTransfer::ByValue
        } else if self.credential.kid.is_some() {
            CredentialTransfer::ByReference
        } else {
            return Err(Error::CredentialWithoutKid);
        };
        Ok(self)
    }

    /// The credential's `kid`, if it has one.
    pub fn kid(&self) -> Option<&[u8]> {
        self.credential.kid.as_ref().map(|k| k.as_slice())
    }

    /// The CCS bytes.
    pub fn ccs(&self) -> &[u8] {
        self.credential.bytes.as_slice()
    }

    /// A fresh P-256 key pair and its CCS credential
    /// `{2: subject, 8: {1: {1: 2, 2: kid, -1: 1, -2: x, -3: y}}}` (the layout of the RFC
    /// 9529 credentials and of aiocoap's `as_ccs`, deterministic CBOR): returns the
    /// 32-byte private key and the CCS bytes.
    pub fn generate(kid: &[u8], subject: &str) -> Result<([u8; 32], Vec<u8>), Error> {
        let secret = p256::SecretKey::random(&mut OsRng);
        let ccs = ccs_for_key(&secret.to_bytes(), kid, subject)?;
        Ok((secret.to_bytes().into(), ccs))
    }
}

/// The CCS credential of a private key (see [`OwnCredential::generate`]).
pub fn ccs_for_key(private_key: &[u8], kid: &[u8], subject: &str) -> Result<Vec<u8>, Error> {
    if kid.len() > 16 || subject.len() > 255 {
        return Err(Error::TooLong);
    }
    let secret = p256::SecretKey::from_slice(private_key).map_err(|_| Error::InvalidPrivateKey)?;
    let point =
        p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(Error::InvalidPrivateKey);
    };
    let mut out = Vec::with_capacity(128);
    out.push(0xa2); // map(2)
    out.push(0x02); // sub
    cbor_head(&mut out, 3, subject.len());
    out.extend_from_slice(subject.as_bytes());
    out.extend_from_slice(&[0x08, 0xa1, 0x01]); // cnf: {COSE_Key: ...}
    out.push(0xa5); // map(5)
    out.extend_from_slice(&[0x01, 0x02]); // kty: EC2
    out.push(0x02); // kid
    cbor_head(&mut out, 2, kid.len());
    out.extend_from_slice(kid);
    out.extend_from_slice(&[0x20, 0x01]); // crv: P-256
    out.extend_from_slice(&[0x21, 0x58, 0x20]); // x
    out.extend_from_slice(x);
    out.extend_from_slice(&[0x22, 0x58, 0x20]); // y
    out.extend_from_slice(y);
    Ok(out)
}

fn parse_ccs(ccs: &[u8]) -> Result<lakers::Credential, Error> {
    let cred = lakers::Credential::parse_ccs(ccs).map_err(|_| Error::InvalidCredential)?;
    match cred.public_key() {
        Some(x) if is_valid_x(&x) => Ok(cred),
        Some(_) => Err(Error::InvalidPublicKey),
        None => Err(Error::InvalidCredential),
    }
}

/// Whether `x` is the x-coordinate of a point on P-256 (RFC 9528 §9.2).
pub(crate) fn is_valid_x(x: &[u8; 32]) -> bool {
    use p256::elliptic_curve::point::DecompressPoint;
    let fb = p256::FieldBytes::from(*x);
    bool::from(p256::AffinePoint::decompress(&fb, 0u8.into()).is_some())
}

/// The 32 bytes after a `0x58 len` byte-string head (G_X, or the start of
/// G_Y_CIPHERTEXT_2).
fn leading_key(bstr: &[u8]) -> Option<[u8; 32]> {
    let body = match bstr {
        [0x58, _, rest @ ..] => rest,
        [h, rest @ ..] if (0x40..=0x57).contains(h) => rest,
        _ => return None,
    };
    body.get(..32)?.try_into().ok()
}

/// CBOR head of major type `major` with argument `len` (RFC 8949 §3).
fn cbor_head(out: &mut Vec<u8>, major: u8, len: usize) {
    let m = major << 5;
    match len {
        0..=23 => out.push(m | len as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, len as u8]),
        _ => {
            let len = u16::try_from(len).unwrap_or(u16::MAX);
            out.push(m | 25);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
}

/// The CCS credentials of the peers one accepts, looked up by the `ID_CRED_x` a peer
/// sends: `{4: kid}` (by reference) or `{14: CCS}` (by value, which must equal a
/// configured credential byte for byte).
#[derive(Clone, Debug, Default)]
pub struct PeerCredentials {
    creds: Vec<lakers::Credential>,
}

impl PeerCredentials {
    /// None yet: every peer is unknown.
    pub fn new() -> PeerCredentials {
        PeerCredentials::default()
    }

    /// Adds a peer's CCS credential.
    pub fn with_ccs(mut self, ccs: &[u8]) -> Result<PeerCredentials, Error> {
        self.add_ccs(ccs)?;
        Ok(self)
    }

    /// Adds a peer's CCS credential.
    pub fn add_ccs(&mut self, ccs: &[u8]) -> Result<(), Error> {
        self.creds.push(parse_ccs(ccs)?);
        Ok(())
    }

    /// The CCS bytes of each credential.
    pub fn ccs(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.creds.iter().map(|c| c.bytes.as_slice())
    }

    /// The number of credentials.
    pub fn len(&self) -> usize {
        self.creds.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.creds.is_empty()
    }

    /// The credential `id_cred` designates (RFC 9528 §3.5.3).
    fn find(&self, id_cred: &IdCred) -> Result<lakers::Credential, Error> {
        let cred = self
            .creds
            .iter()
            .find_map(|c| credential_check_or_fetch(Some(*c), *id_cred).ok())
            .ok_or(Error::UnknownPeer)?;
        // See MAX_CREDENTIAL_BY_VALUE_LEN: lakers would overrun its MAC context.
        if !id_cred.reference_only() && cred.bytes.len() > MAX_CREDENTIAL_BY_VALUE_LEN {
            return Err(Error::TooLong);
        }
        Ok(cred)
    }
}

// ---------------------------------------------------------------------------------------
// Connection identifiers
// ---------------------------------------------------------------------------------------

fn conn_id(bytes: &[u8]) -> Result<ConnId, Error> {
    if bytes.is_empty() || bytes.len() > MAX_CONNECTION_ID_LEN {
        return Err(Error::InvalidConnectionId);
    }
    ConnId::from_slice(bytes).ok_or(Error::InvalidConnectionId)
}

/// Whether a one-byte connection identifier is encoded as itself, a CBOR integer in
/// -24..=23 (RFC 9528 §3.3.2).
pub fn is_compact_connection_id(bytes: &[u8]) -> bool {
    matches!(bytes, [b] if *b <= 0x17 || (0x20..=0x37).contains(b))
}

/// The CBOR encoding of a connection identifier on the wire (RFC 9528 §3.3.2): a
/// compact one-byte identifier as the integer it encodes, others as a byte string.
pub fn encode_connection_id(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(conn_id(bytes)?.as_cbor().to_vec())
}

fn buffer(bytes: &[u8]) -> Result<EdhocMessageBuffer, Error> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(Error::MessageTooLong);
    }
    EdhocMessageBuffer::new_from_slice(bytes).map_err(|_| Error::MessageTooLong)
}

/// message_3 and message_4 are one CBOR byte string (CIPHERTEXT_3 / CIPHERTEXT_4, RFC
/// 9528 §5.4.2, §5.5.2) holding at least the 8-byte tag. lakers 0.8 reads the length
/// from the first bytes without checking it against the message, and panics on a
/// length beyond the buffer: check before handing the message over.
fn check_single_bstr(message: &[u8]) -> Result<(), Error> {
    let (len, head) = match message {
        [h @ 0x40..=0x57, ..] => (usize::from(h - 0x40), 1),
        [0x58, l, ..] => (usize::from(*l), 2),
        _ => return Err(Error::Malformed),
    };
    if head + len != message.len() || len < lakers::AES_CCM_TAG_LEN {
        return Err(Error::Malformed);
    }
    Ok(())
}

/// Runs a lakers step that reads peer input. lakers 0.8 panics on some malformed input
/// it cannot be shielded from beforehand (a C_R byte string longer than its buffer in
/// the unauthenticated PLAINTEXT_2, for one): such a panic is contained here and
/// reported as [`Error::Malformed`] (the panic hook still runs). The checks before
/// each call (sizes, public keys, connection identifiers, CBOR framing of message_3 /
/// message_4) keep this path for what cannot be checked outside lakers.
fn guarded<T>(step: impl FnOnce() -> Result<T, EDHOCError>) -> Result<T, Error> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)) {
        Ok(result) => result.map_err(Error::from),
        Err(_) => Err(Error::Malformed),
    }
}

fn reject_critical(ead: &Option<lakers::EADItem>) -> Result<(), Error> {
    match ead {
        Some(item) if item.is_critical => Err(Error::CriticalEad),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// Initiator
// ---------------------------------------------------------------------------------------

/// The initiator's configuration: its credential and the responders it accepts.
#[derive(Clone, Debug)]
pub struct Initiator {
    own: OwnCredential,
    peers: PeerCredentials,
}

/// The initiator after message_1: waiting for message_2.
pub struct InitiatorWaitM2 {
    state: EdhocInitiatorWaitM2<Backend>,
    own: OwnCredential,
    peers: PeerCredentials,
    c_i: Vec<u8>,
}

impl fmt::Debug for InitiatorWaitM2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitiatorWaitM2")
            .field("c_i", &self.c_i)
            .finish_non_exhaustive()
    }
}

impl Initiator {
    /// An initiator with credential `own` that accepts the responders in `peers`.
    pub fn new(own: OwnCredential, peers: PeerCredentials) -> Initiator {
        Initiator { own, peers }
    }

    /// Starts an exchange: message_1 (RFC 9528 §5.2.1) with connection identifier `c_i`
    /// (random among the compact ones when `None`).
    pub fn message_1(&self, c_i: Option<&[u8]>) -> Result<(InitiatorWaitM2, Vec<u8>), Error> {
        self.message_1_with(Backend::new(), c_i)
    }

    fn message_1_with(
        &self,
        backend: Backend,
        c_i: Option<&[u8]>,
    ) -> Result<(InitiatorWaitM2, Vec<u8>), Error> {
        let c_i = match c_i {
            Some(c) => conn_id(c)?,
            None => random_compact_id(&[]),
        };
        let mut initiator =
            EdhocInitiator::new(backend, EDHOCMethod::StatStat, EDHOCSuite::CipherSuite2);
        initiator.set_identity(self.own.private_key, self.own.credential);
        let (state, message_1) = initiator.prepare_message_1(Some(c_i), &None)?;
        Ok((
            InitiatorWaitM2 {
                state,
                own: self.own.clone(),
                peers: self.peers.clone(),
                c_i: c_i.as_slice().to_vec(),
            },
            message_1.as_slice().to_vec(),
        ))
    }
}

impl InitiatorWaitM2 {
    /// C_I.
    pub fn c_i(&self) -> &[u8] {
        &self.c_i
    }

    /// Verifies message_2 (RFC 9528 §5.3.3) against the configured responder credentials
    /// and prepares message_3 (§5.4.2). The OSCORE context is available at once from the
    /// returned state ([`InitiatorWaitM4::session`]).
    pub fn process_message_2(self, message_2: &[u8]) -> Result<(InitiatorWaitM4, Vec<u8>), Error> {
        let buffer_2 = buffer(message_2)?;
        // RFC 9528 §9.2: G_Y must be a point on the curve.
        let g_y = leading_key(message_2).ok_or(Error::Malformed)?;
        if !is_valid_x(&g_y) {
            return Err(Error::InvalidPublicKey);
        }
        let (state, c_r, id_cred_r, ead_2) = guarded(|| self.state.parse_message_2(&buffer_2))?;
        reject_critical(&ead_2)?;
        let c_r = c_r.as_slice().to_vec();
        if c_r == self.c_i {
            return Err(Error::IdenticalConnectionIds);
        }
        let cred_r = self.peers.find(&id_cred_r)?;
        let state = guarded(|| state.verify_message_2(cred_r))?;
        let (state, message_3, _prk_out) =
            guarded(|| state.prepare_message_3(self.own.transfer, &None))?;
        Ok((
            InitiatorWaitM4 {
                state,
                c_i: self.c_i,
                c_r,
                peer_kid: cred_r.kid.map(|k| k.as_slice().to_vec()),
            },
            message_3.as_slice().to_vec(),
        ))
    }
}

/// The initiator after message_3: complete once message_4 arrives, or once the
/// responder's first OSCORE-protected message verifies (RFC 9528 §5.4.2, Appendix A.1).
pub struct InitiatorWaitM4 {
    state: EdhocInitiatorWaitM4<Backend>,
    c_i: Vec<u8>,
    c_r: Vec<u8>,
    peer_kid: Option<Vec<u8>>,
}

impl fmt::Debug for InitiatorWaitM4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitiatorWaitM4")
            .field("c_i", &self.c_i)
            .field("c_r", &self.c_r)
            .finish_non_exhaustive()
    }
}

impl InitiatorWaitM4 {
    /// C_R, the responder's connection identifier (the OSCORE Sender ID).
    pub fn c_r(&self) -> &[u8] {
        &self.c_r
    }

    /// Verifies message_4 (RFC 9528 §5.5.3).
    pub fn process_message_4(self, message_4: &[u8]) -> Result<Session, Error> {
        check_single_bstr(message_4)?;
        let buffer_4 = buffer(message_4)?;
        let (mut done, ead_4) = guarded(|| self.state.process_message_4(&buffer_4))?;
        reject_critical(&ead_4)?;
        let secret = done.edhoc_exporter(EXPORTER_LABEL_SECRET, &[], OSCORE_MASTER_SECRET_LEN);
        let salt = done.edhoc_exporter(EXPORTER_LABEL_SALT, &[], OSCORE_MASTER_SALT_LEN);
        Ok(Session::new(
            &secret,
            &salt,
            self.c_i,
            self.c_r,
            self.peer_kid,
        ))
    }

    /// Completes without message_4: the responder is authenticated once its first
    /// OSCORE-protected response verifies (RFC 9528 §5.4.2; the flow of RFC 9668 and
    /// of two POSTs answered without message_4).
    pub fn session(self) -> Result<Session, Error> {
        let done = self.state.completed_without_message_4()?;
        Ok(session_of(done, self.c_i, self.c_r, self.peer_kid))
    }
}

fn session_of(
    mut done: EdhocResponderDone<Backend>,
    own: Vec<u8>,
    peer: Vec<u8>,
    peer_kid: Option<Vec<u8>>,
) -> Session {
    let secret = done.edhoc_exporter(EXPORTER_LABEL_SECRET, &[], OSCORE_MASTER_SECRET_LEN);
    let salt = done.edhoc_exporter(EXPORTER_LABEL_SALT, &[], OSCORE_MASTER_SALT_LEN);
    Session::new(&secret, &salt, own, peer, peer_kid)
}

fn random_compact_id(avoid: &[u8]) -> ConnId {
    loop {
        let b = (rand_core::RngCore::next_u32(&mut OsRng) % 48) as u8;
        let b = if b < 24 { b } else { 0x20 + (b - 24) };
        if avoid != [b] {
            if let Some(c) = ConnId::from_slice(&[b]) {
                return c;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Responder
// ---------------------------------------------------------------------------------------

/// The responder's configuration: its credential and the initiators it accepts. One
/// value serves any number of exchanges.
#[derive(Clone, Debug)]
pub struct Responder {
    own: OwnCredential,
    peers: PeerCredentials,
}

/// The responder after message_2: waiting for message_3.
pub struct ResponderWaitM3 {
    state: EdhocResponderWaitM3<Backend>,
    peers: PeerCredentials,
    c_i: Vec<u8>,
    c_r: Vec<u8>,
}

impl fmt::Debug for ResponderWaitM3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponderWaitM3")
            .field("c_i", &self.c_i)
            .field("c_r", &self.c_r)
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// A responder with credential `own` that accepts the initiators in `peers`.
    pub fn new(own: OwnCredential, peers: PeerCredentials) -> Responder {
        Responder { own, peers }
    }

    /// Processes message_1 (RFC 9528 §5.2.3) and answers message_2 (§5.3.2) with
    /// connection identifier `c_r`, which must differ from the initiator's C_I (pick
    /// another one if [`Error::IdenticalConnectionIds`] comes back).
    pub fn process_message_1(
        &self,
        message_1: &[u8],
        c_r: &[u8],
    ) -> Result<(ResponderWaitM3, Vec<u8>), Error> {
        self.process_message_1_with(Backend::new(), message_1, c_r)
    }

    fn process_message_1_with(
        &self,
        backend: Backend,
        message_1: &[u8],
        c_r: &[u8],
    ) -> Result<(ResponderWaitM3, Vec<u8>), Error> {
        let c_r = conn_id(c_r)?;
        let buffer_1 = buffer(message_1)?;
        // RFC 9528 §9.2: G_X must be a point on the curve.
        let g_x = skip_cbor_item(message_1)
            .and_then(skip_cbor_item)
            .and_then(leading_key)
            .ok_or(Error::Malformed)?;
        if !is_valid_x(&g_x) {
            return Err(Error::InvalidPublicKey);
        }
        // lakers 0.8 panics on a byte-string C_I longer than its 7-byte buffer.
        let c_i = message_1_c_i(message_1).ok_or(Error::Malformed)?;
        conn_id(&c_i)?;
        let responder = EdhocResponder::new(
            backend,
            EDHOCMethod::StatStat,
            self.own.private_key,
            self.own.credential,
        );
        let (state, c_i, ead_1) = guarded(|| responder.process_message_1(&buffer_1))?;
        reject_critical(&ead_1)?;
        if c_i.as_slice() == c_r.as_slice() {
            return Err(Error::IdenticalConnectionIds);
        }
        let (state, message_2) =
            guarded(|| state.prepare_message_2(self.own.transfer, Some(c_r), &None))?;
        Ok((
            ResponderWaitM3 {
                state,
                peers: self.peers.clone(),
                c_i: c_i.as_slice().to_vec(),
                c_r: c_r.as_slice().to_vec(),
            },
            message_2.as_slice().to_vec(),
        ))
    }
}

/// The C_I of a message_1 without processing it (the third item, after METHOD,
/// SUITES_I and G_X): for a responder that must pick a C_R different from it.
pub fn message_1_c_i(message_1: &[u8]) -> Option<Vec<u8>> {
    let mut rest = message_1;
    rest = skip_cbor_item(rest)?; // METHOD
    rest = skip_cbor_item(rest)?; // SUITES_I
    rest = skip_cbor_item(rest)?; // G_X
    let len = cbor_item_len(rest)?;
    coap::decode_connection_id(&rest[..len]).ok()
}

/// Length of the first CBOR item of `data` for the shapes EDHOC messages use (ints,
/// byte/text strings and arrays of ints, definite lengths up to 2-byte arguments).
fn cbor_item_len(data: &[u8]) -> Option<usize> {
    let first = *data.first()?;
    let major = first >> 5;
    let info = first & 0x1f;
    let (arg, head): (usize, usize) = match info {
        0..=23 => (usize::from(info), 1),
        24 => (usize::from(*data.get(1)?), 2),
        25 => (
            usize::from(u16::from_be_bytes([*data.get(1)?, *data.get(2)?])),
            3,
        ),
        _ => return None,
    };
    let len = match major {
        0 | 1 | 7 => head,
        2 | 3 => head.checked_add(arg)?,
        4 => {
            let mut total = head;
            for _ in 0..arg {
                total = total.checked_add(cbor_item_len(data.get(total..)?)?)?;
            }
            total
        }
        _ => return None,
    };
    (len <= data.len()).then_some(len)
}

fn skip_cbor_item(data: &[u8]) -> Option<&[u8]> {
    data.get(cbor_item_len(data)?..)
}

impl ResponderWaitM3 {
    /// C_I, the initiator's connection identifier (the OSCORE Sender ID).
    pub fn c_i(&self) -> &[u8] {
        &self.c_i
    }

    /// C_R, one's own connection identifier (the OSCORE Recipient ID).
    pub fn c_r(&self) -> &[u8] {
        &self.c_r
    }

    /// Verifies message_3 (RFC 9528 §5.4.3) against the configured initiator
    /// credentials and prepares message_4 (§5.5.2): the session and message_4, which
    /// the CoAP transport of Appendix A.2 returns in the response (RFC 9668 §3.3.1 drops
    /// it in the combined request).
    pub fn process_message_3(self, message_3: &[u8]) -> Result<(Session, Vec<u8>), Error> {
        check_single_bstr(message_3)?;
        let buffer_3 = buffer(message_3)?;
        let (state, id_cred_i, ead_3) = guarded(|| self.state.parse_message_3(&buffer_3))?;
        reject_critical(&ead_3)?;
        let cred_i = self.peers.find(&id_cred_i)?;
        let (state, _prk_out) = guarded(|| state.verify_message_3(cred_i))?;
        let (done, message_4) = guarded(|| state.prepare_message_4(&None))?;
        let peer_kid = cred_i.kid.map(|k| k.as_slice().to_vec());
        Ok((
            session_of(done, self.c_r, self.c_i, peer_kid),
            message_4.as_slice().to_vec(),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Session → OSCORE
// ---------------------------------------------------------------------------------------

/// A completed EDHOC exchange: what RFC 9528 Appendix A.1 derives the OSCORE Security
/// Context from.
#[derive(Clone)]
pub struct Session {
    master_secret: [u8; OSCORE_MASTER_SECRET_LEN],
    master_salt: [u8; OSCORE_MASTER_SALT_LEN],
    own_id: Vec<u8>,
    peer_id: Vec<u8>,
    peer_kid: Option<Vec<u8>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("sender_id", &self.peer_id)
            .field("recipient_id", &self.own_id)
            .field("peer_kid", &self.peer_kid)
            .finish_non_exhaustive()
    }
}

impl Session {
    fn new(
        secret: &[u8],
        salt: &[u8],
        own_id: Vec<u8>,
        peer_id: Vec<u8>,
        peer_kid: Option<Vec<u8>>,
    ) -> Session {
        let mut master_secret = [0; OSCORE_MASTER_SECRET_LEN];
        master_secret.copy_from_slice(&secret[..OSCORE_MASTER_SECRET_LEN]);
        let mut master_salt = [0; OSCORE_MASTER_SALT_LEN];
        master_salt.copy_from_slice(&salt[..OSCORE_MASTER_SALT_LEN]);
        Session {
            master_secret,
            master_salt,
            own_id,
            peer_id,
            peer_kid,
        }
    }

    /// The OSCORE Master Secret: `EDHOC_Exporter(0, h'', 16)`.
    pub fn master_secret(&self) -> &[u8; OSCORE_MASTER_SECRET_LEN] {
        &self.master_secret
    }

    /// The OSCORE Master Salt: `EDHOC_Exporter(1, h'', 8)`.
    pub fn master_salt(&self) -> &[u8; OSCORE_MASTER_SALT_LEN] {
        &self.master_salt
    }

    /// The OSCORE Sender ID: the peer's connection identifier.
    pub fn sender_id(&self) -> &[u8] {
        &self.peer_id
    }

    /// The OSCORE Recipient ID: one's own connection identifier.
    pub fn recipient_id(&self) -> &[u8] {
        &self.own_id
    }

    /// The `kid` of the peer's credential, if it has one: who was authenticated.
    pub fn peer_kid(&self) -> Option<&[u8]> {
        self.peer_kid.as_deref()
    }

    /// The OSCORE Security Context of RFC 9528 Appendix A.1: AES-CCM-16-64-128 and
    /// HKDF-SHA-256 (the application algorithms of cipher suite 2, the builder's
    /// defaults), no ID Context. Add settings (replay window, block-wise mode) before
    /// `build()`.
    pub fn oscore_context(&self) -> corium_oscore::SecurityContextBuilder {
        corium_oscore::SecurityContext::builder(&self.master_secret, &self.peer_id, &self.own_id)
            .master_salt(&self.master_salt)
    }
}

#[cfg(test)]
mod tests;
