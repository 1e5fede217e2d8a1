//! The security context (RFC 8613 §3): derivation of Sender Key, Recipient Key and
//! Common IV (§3.2.1), AEAD nonces (§5.2), the AAD (§5.4), the Sender Sequence Number
//! (§7.2, Appendix B.1.1) and the replay window (§7.4, Appendix B.1.2).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use crate::cbor;
use crate::class::BlockwiseMode;
use crate::crypto::{
    hkdf_sha256, AeadAlgorithm, Cipher, HkdfAlgorithm, MAX_KEY_LEN, MAX_NONCE_LEN,
};
use crate::error::{ContextError, ProtectError};
use crate::option::{PartialIv, MAX_PARTIAL_IV};
use crate::replay::{ReplayWindow, WindowState, DEFAULT_REPLAY_WINDOW};
use crate::sequence::SequenceStore;

/// The OSCORE version of the AAD (RFC 8613 §5.4).
const OSCORE_VERSION: u64 = 1;

/// Builds a [`SecurityContext`] from the input parameters of RFC 8613 §3.2. Obtained from
/// [`SecurityContext::builder`]; every optional parameter has the RFC's default.
pub struct SecurityContextBuilder {
    master_secret: Vec<u8>,
    master_salt: Vec<u8>,
    sender_id: Vec<u8>,
    recipient_id: Vec<u8>,
    id_context: Option<Vec<u8>>,
    aead: AeadAlgorithm,
    hkdf: HkdfAlgorithm,
    replay_window: u32,
    send_kid_context: Option<bool>,
    blockwise: BlockwiseMode,
    sequence_number: u64,
    window_lost: bool,
    store: Option<(Box<dyn SequenceStore + Send>, u64)>,
}

impl SecurityContextBuilder {
    /// The Master Salt (default: the empty byte string, §3.2).
    pub fn master_salt(mut self, salt: &[u8]) -> Self {
        self.master_salt = salt.to_vec();
        self
    }

    /// The ID Context (default: none, §3.1, §5.1).
    pub fn id_context(mut self, id_context: &[u8]) -> Self {
        self.id_context = Some(id_context.to_vec());
        self
    }

    /// The AEAD Algorithm (default: AES-CCM-16-64-128, §3.2).
    pub fn aead(mut self, aead: AeadAlgorithm) -> Self {
        self.aead = aead;
        self
    }

    /// The HKDF Algorithm (default and only choice: HKDF SHA-256, §3.2).
    pub fn hkdf(mut self, hkdf: HkdfAlgorithm) -> Self {
        self.hkdf = hkdf;
        self
    }

    /// The replay window size (default 32, §3.2.2).
    pub fn replay_window(mut self, size: u32) -> Self {
        self.replay_window = size;
        self
    }

    /// Whether requests carry the ID Context as 'kid context' (§5.1). Defaults to true
    /// when an ID Context is set, which lets the server find the context without trying
    /// several.
    pub fn send_kid_context(mut self, send: bool) -> Self {
        self.send_kid_context = Some(send);
        self
    }

    /// Where Block options of protected messages go (default: Outer, see
    /// [`BlockwiseMode`]).
    pub fn blockwise(mut self, mode: BlockwiseMode) -> Self {
        self.blockwise = mode;
        self
    }

    /// The next Sender Sequence Number to use (default 0, §3.2.2). Only for restoring a
    /// sender whose used numbers are known; a number must never be used twice with the
    /// same key (§7.2). After a reboot, use [`resume_after_reboot`](Self::resume_after_reboot).
    pub fn sender_sequence_number(mut self, next: u64) -> Self {
        self.sequence_number = next;
        self
    }

    /// Installs non-volatile storage for the Sender Sequence Number (Appendix B.1.1):
    /// before using a number at or above the stored bound `b`, the context persists
    /// `n + step` (K = `step`).
    pub fn sequence_store(mut self, store: Box<dyn SequenceStore + Send>, step: u64) -> Self {
        self.store = Some((store, step));
        self
    }

    /// Restores a context after losing its mutable state (RFC 8613 §7.5 item 1,
    /// Appendix B.1): the Sender Sequence Number continues at `stored_bound + margin`,
    /// where `stored_bound` is the last value a [`SequenceStore`] persisted and `margin`
    /// is F, covering writes that may not have completed; the replay window starts
    /// [uninitialised](WindowState::Uninitialised) (Appendix B.1.2).
    pub fn resume_after_reboot(mut self, stored_bound: u64, margin: u64) -> Self {
        self.sequence_number = stored_bound.saturating_add(margin);
        self.window_lost = true;
        self
    }

    /// Derives the context (§3.2.1).
    pub fn build(self) -> Result<SecurityContext, ContextError> {
        let aead = self.aead;
        if self.master_secret.is_empty() {
            return Err(ContextError::EmptyMasterSecret);
        }
        if self.sender_id.len() > aead.max_id_len() {
            return Err(ContextError::SenderIdTooLong);
        }
        if self.recipient_id.len() > aead.max_id_len() {
            return Err(ContextError::RecipientIdTooLong);
        }
        if self.sender_id == self.recipient_id {
            return Err(ContextError::IdenticalIds);
        }
        let send_kid_context =
            self.send_kid_context.unwrap_or(self.id_context.is_some()) && self.id_context.is_some();
        // The OSCORE option (at most 255 bytes, §2) of a request: flags, a Partial IV of
        // up to 5 bytes, the kid context with its length byte, the kid.
        let option_len = |c: &Vec<u8>| 1 + 5 + 1 + c.len() + self.sender_id.len();
        if send_kid_context
            && self
                .id_context
                .as_ref()
                .is_some_and(|c| option_len(c) > 255)
        {
            return Err(ContextError::IdContextTooLong);
        }
        let window = if self.window_lost {
            ReplayWindow::uninitialised(self.replay_window)
        } else {
            ReplayWindow::new(self.replay_window)
        }
        .ok_or(ContextError::InvalidReplayWindow)?;
        if self.sequence_number > MAX_PARTIAL_IV {
            return Err(ContextError::SequenceNumberOutOfRange);
        }
        let persist = match self.store {
            Some((_, 0)) => return Err(ContextError::InvalidPersistStep),
            Some((store, step)) => Some(Persistence {
                store,
                step,
                // Nothing at or above the starting number is covered by a stored bound yet.
                bound: self.sequence_number,
            }),
            None => None,
        };

        let id_context = self.id_context.as_deref();
        let mut sender_key = [0u8; MAX_KEY_LEN];
        let mut recipient_key = [0u8; MAX_KEY_LEN];
        let mut common_iv = [0u8; MAX_NONCE_LEN];
        let secret = &self.master_secret;
        let salt = &self.master_salt;
        let kl = aead.key_len();
        derive(
            aead,
            secret,
            salt,
            &self.sender_id,
            id_context,
            "Key",
            &mut sender_key[..kl],
        );
        derive(
            aead,
            secret,
            salt,
            &self.recipient_id,
            id_context,
            "Key",
            &mut recipient_key[..kl],
        );
        derive(
            aead,
            secret,
            salt,
            &[],
            id_context,
            "IV",
            &mut common_iv[..aead.nonce_len()],
        );
        let sender_cipher =
            Cipher::new(aead, &sender_key[..kl]).map_err(|_| ContextError::Crypto)?;
        let recipient_cipher =
            Cipher::new(aead, &recipient_key[..kl]).map_err(|_| ContextError::Crypto)?;

        Ok(SecurityContext {
            aead,
            hkdf: self.hkdf,
            master_secret: self.master_secret,
            master_salt: self.master_salt,
            id_context: self.id_context,
            common_iv,
            sender_id: self.sender_id,
            sender_key,
            sender_cipher,
            recipient_id: self.recipient_id,
            recipient_key,
            recipient_cipher,
            next_sequence_number: self.sequence_number,
            persist,
            window,
            send_kid_context,
            blockwise: self.blockwise,
        })
    }
}

impl fmt::Debug for SecurityContextBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityContextBuilder")
            .field("sender_id", &Hex(&self.sender_id))
            .field("recipient_id", &Hex(&self.recipient_id))
            .field("id_context", &self.id_context.as_deref().map(Hex))
            .field("aead", &self.aead)
            .finish_non_exhaustive()
    }
}

struct Persistence {
    store: Box<dyn SequenceStore + Send>,
    step: u64,
    /// Every number below this was covered by a persisted bound.
    bound: u64,
}

/// An OSCORE security context (RFC 8613 §3.1): the Common Context, this endpoint's Sender
/// Context and its Recipient Context.
///
/// Both endpoints hold mirrored contexts: the client's Sender ID is the server's
/// Recipient ID and vice versa (§3.1, Figure 4). The same context serves both roles of an
/// endpoint (§3.1). The context is deliberately not `Clone`: two copies would reuse
/// sequence numbers and hence nonces (§7.2).
///
/// Protect and verify messages with the methods in [the crate docs](crate#data-flow):
/// [`protect_request`](Self::protect_request), [`unprotect_request`](Self::unprotect_request),
/// [`protect_response`](Self::protect_response), [`unprotect_response`](Self::unprotect_response).
pub struct SecurityContext {
    pub(crate) aead: AeadAlgorithm,
    hkdf: HkdfAlgorithm,
    master_secret: Vec<u8>,
    master_salt: Vec<u8>,
    pub(crate) id_context: Option<Vec<u8>>,
    common_iv: [u8; MAX_NONCE_LEN],
    pub(crate) sender_id: Vec<u8>,
    sender_key: [u8; MAX_KEY_LEN],
    pub(crate) sender_cipher: Cipher,
    pub(crate) recipient_id: Vec<u8>,
    recipient_key: [u8; MAX_KEY_LEN],
    pub(crate) recipient_cipher: Cipher,
    next_sequence_number: u64,
    persist: Option<Persistence>,
    pub(crate) window: ReplayWindow,
    pub(crate) send_kid_context: bool,
    pub(crate) blockwise: BlockwiseMode,
}

impl SecurityContext {
    /// Starts building a context from the three parameters that SHALL be preestablished
    /// (RFC 8613 §3.2): Master Secret, Sender ID and Recipient ID.
    pub fn builder(
        master_secret: &[u8],
        sender_id: &[u8],
        recipient_id: &[u8],
    ) -> SecurityContextBuilder {
        SecurityContextBuilder {
            master_secret: master_secret.to_vec(),
            master_salt: Vec::new(),
            sender_id: sender_id.to_vec(),
            recipient_id: recipient_id.to_vec(),
            id_context: None,
            aead: AeadAlgorithm::default(),
            hkdf: HkdfAlgorithm::default(),
            replay_window: DEFAULT_REPLAY_WINDOW,
            send_kid_context: None,
            blockwise: BlockwiseMode::default(),
            sequence_number: 0,
            window_lost: false,
            store: None,
        }
    }

    /// A new context with the same Master Secret, Master Salt, IDs and settings but this
    /// ID Context (RFC 8613 Appendix B.2: contexts derived multiple times with random ID
    /// Contexts). It starts with Sender Sequence Number 0, a fresh replay window and no
    /// sequence store; keys never seen before make both safe.
    pub fn derive_with_id_context(
        &self,
        id_context: &[u8],
    ) -> Result<SecurityContext, ContextError> {
        SecurityContext::builder(&self.master_secret, &self.sender_id, &self.recipient_id)
            .master_salt(&self.master_salt)
            .id_context(id_context)
            .aead(self.aead)
            .hkdf(self.hkdf)
            .replay_window(self.window.size())
            .send_kid_context(self.send_kid_context || self.id_context.is_none())
            .blockwise(self.blockwise)
            .build()
    }

    /// The AEAD Algorithm.
    pub fn aead(&self) -> AeadAlgorithm {
        self.aead
    }

    /// The Sender ID (sent as 'kid' in requests).
    pub fn sender_id(&self) -> &[u8] {
        &self.sender_id
    }

    /// The Recipient ID (the 'kid' of the requests this context verifies).
    pub fn recipient_id(&self) -> &[u8] {
        &self.recipient_id
    }

    /// The ID Context, if any.
    pub fn id_context(&self) -> Option<&[u8]> {
        self.id_context.as_deref()
    }

    /// The next Sender Sequence Number.
    pub fn sender_sequence_number(&self) -> u64 {
        self.next_sequence_number
    }

    /// The replay window of the Recipient Context.
    pub fn replay_window(&self) -> &ReplayWindow {
        &self.window
    }

    /// Whether the replay window can judge freshness (Appendix B.1.2).
    pub fn replay_window_state(&self) -> WindowState {
        self.window.state()
    }

    /// Sets the lower limit of the replay window once the caller verified a request with
    /// Partial IV `lower_limit` as fresh (Appendix B.1.2), e.g. with an Echo round trip.
    /// [`confirm_freshness`](Self::confirm_freshness) does this for a pending request.
    pub fn initialise_replay_window(&mut self, lower_limit: u64) {
        self.window.initialise(lower_limit);
    }

    /// Where Block options go when protecting.
    pub fn blockwise_mode(&self) -> BlockwiseMode {
        self.blockwise
    }

    /// Whether a request's 'kid' and 'kid context' select this context (§8.2 step 2):
    /// the kid equals the Recipient ID, and a kid context, when present, equals the ID
    /// Context.
    pub fn matches(&self, kid: &[u8], kid_context: Option<&[u8]>) -> bool {
        kid == self.recipient_id.as_slice()
            && kid_context.is_none_or(|c| self.id_context.as_deref() == Some(c))
    }

    /// Takes the next Sender Sequence Number (§8.1 step 3), persisting a new bound first
    /// when needed (Appendix B.1.1).
    pub(crate) fn next_partial_iv(&mut self) -> Result<PartialIv, ProtectError> {
        let seq = self.next_sequence_number;
        let piv = PartialIv::from_u64(seq).ok_or(ProtectError::SequenceNumberExhausted)?;
        if let Some(p) = &mut self.persist {
            if seq >= p.bound {
                let bound = seq.saturating_add(p.step).min(MAX_PARTIAL_IV + 1);
                p.store.persist(bound).map_err(ProtectError::Persist)?;
                p.bound = bound;
            }
        }
        self.next_sequence_number = seq + 1;
        Ok(piv)
    }

    /// The AEAD nonce for a Partial IV generated by the endpoint with ID `id_piv`
    /// (§5.2, Figure 8). `id_piv` is at most nonce length - 6 bytes (checked at context
    /// creation, or by the caller for received kids).
    pub(crate) fn nonce(&self, id_piv: &[u8], piv: &PartialIv) -> [u8; MAX_NONCE_LEN] {
        let n = self.aead.nonce_len();
        let mut nonce = [0u8; MAX_NONCE_LEN];
        let id_len = id_piv.len().min(n - 6);
        nonce[0] = id_len as u8;
        nonce[1 + (n - 6 - id_len)..n - 5].copy_from_slice(&id_piv[..id_len]);
        let p = piv.as_bytes();
        nonce[n - p.len()..n].copy_from_slice(p);
        for (b, iv) in nonce[..n].iter_mut().zip(&self.common_iv[..n]) {
            *b ^= iv;
        }
        nonce
    }

    /// The AAD, i.e. the `Enc_structure` with the `external_aad` (§5.4).
    pub(crate) fn aad(&self, request_kid: &[u8], request_piv: &PartialIv) -> Vec<u8> {
        aad(self.aead, request_kid, request_piv.as_bytes())
    }

    #[cfg(test)]
    pub(crate) fn sender_key(&self) -> &[u8] {
        &self.sender_key[..self.aead.key_len()]
    }

    #[cfg(test)]
    pub(crate) fn recipient_key(&self) -> &[u8] {
        &self.recipient_key[..self.aead.key_len()]
    }

    #[cfg(test)]
    pub(crate) fn common_iv(&self) -> &[u8] {
        &self.common_iv[..self.aead.nonce_len()]
    }
}

/// Debug output names the identifiers and counters, never keys or secrets.
impl fmt::Debug for SecurityContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityContext")
            .field("aead", &self.aead)
            .field("sender_id", &Hex(&self.sender_id))
            .field("recipient_id", &Hex(&self.recipient_id))
            .field("id_context", &self.id_context.as_deref().map(Hex))
            .field("sender_sequence_number", &self.next_sequence_number)
            .field("replay_window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Drop for SecurityContext {
    /// Overwrites the key material (best effort: without volatile writes the compiler may
    /// elide this).
    fn drop(&mut self) {
        self.sender_key = [0; MAX_KEY_LEN];
        self.recipient_key = [0; MAX_KEY_LEN];
        self.master_secret.iter_mut().for_each(|b| *b = 0);
    }
}

struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The HKDF `info` (§3.2.1): `[id, id_context / nil, alg_aead, type, L]`.
pub(crate) fn hkdf_info(
    id: &[u8],
    id_context: Option<&[u8]>,
    alg: i64,
    ty: &str,
    len: usize,
) -> Vec<u8> {
    let mut info = Vec::with_capacity(16 + id.len() + id_context.map_or(0, <[u8]>::len));
    cbor::array(&mut info, 5);
    cbor::bstr(&mut info, id);
    match id_context {
        Some(c) => cbor::bstr(&mut info, c),
        None => cbor::null(&mut info),
    }
    cbor::int(&mut info, alg);
    cbor::tstr(&mut info, ty);
    cbor::uint(&mut info, len as u64);
    info
}

fn derive(
    aead: AeadAlgorithm,
    secret: &[u8],
    salt: &[u8],
    id: &[u8],
    id_context: Option<&[u8]>,
    ty: &str,
    out: &mut [u8],
) {
    let info = hkdf_info(id, id_context, aead.cose_id(), ty, out.len());
    hkdf_sha256(salt, secret, &info, out);
}

/// The `aad_array` (§5.4): `[1, [alg_aead], request_kid, request_piv, options]`, with no
/// Class I options.
pub(crate) fn aad_array(alg: AeadAlgorithm, request_kid: &[u8], request_piv: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(16 + request_kid.len());
    cbor::array(&mut a, 5);
    cbor::uint(&mut a, OSCORE_VERSION);
    cbor::array(&mut a, 1);
    cbor::int(&mut a, alg.cose_id());
    cbor::bstr(&mut a, request_kid);
    cbor::bstr(&mut a, request_piv);
    cbor::bstr(&mut a, &[]);
    a
}

/// `Enc_structure = ["Encrypt0", h'', external_aad]` with `external_aad = bstr .cbor
/// aad_array` (§5.4, RFC 8152 §5.3).
pub(crate) fn aad(alg: AeadAlgorithm, request_kid: &[u8], request_piv: &[u8]) -> Vec<u8> {
    let array = aad_array(alg, request_kid, request_piv);
    let mut out = Vec::with_capacity(14 + array.len());
    cbor::array(&mut out, 3);
    cbor::tstr(&mut out, "Encrypt0");
    cbor::bstr(&mut out, &[]);
    cbor::bstr(&mut out, &array);
    out
}
