//! Protecting and verifying requests and responses (RFC 8613 §4, §5, §8).

use alloc::boxed::Box;
use alloc::vec::Vec;

use corium_proto::wire::{encode_option_header, Code, OptionIter, OptionNumber};
use corium_proto::{Options, Request, Response};

use crate::class::{goes_outer, keep_outer};
use crate::context::SecurityContext;
use crate::error::{ProtectError, UnprotectError};
use crate::option::{OscoreOption, PartialIv};
use crate::replay::{ReplayWindow, WindowState};

/// The CoAP payload marker (RFC 7252 §3).
const PAYLOAD_MARKER: u8 = 0xff;
/// The largest value of a 24-bit Observe sequence number (RFC 7641 §4.4).
const OBSERVE_MASK: u64 = 0x00ff_ffff;

/// Which side of an exchange a [`RequestBinding`] belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The binding was made by protecting a request; it verifies the responses.
    Client,
    /// The binding was made by verifying a request; it protects the responses.
    Server,
}

/// The association of a request with its security context and Partial IV that protects
/// and verifies its responses (RFC 8613 §7.1, §8: "(Token, {Security Context, Partial IV
/// of the request})").
///
/// Keep it with the exchange (by token) until the final response; for an Observe
/// registration keep it while the observation is active (§8). It also carries the state
/// that makes nonces single-use: whether the request nonce was already used by a
/// response (§5.2, §8.3.1, §8.4.2) and, for notifications, the Partial IVs received so
/// far (the Notification Number of §4.1.3.5.2 and §7.4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestBinding {
    role: Role,
    request_kid: Vec<u8>,
    request_piv: PartialIv,
    request_kid_context: Option<Vec<u8>>,
    id_context: Option<Vec<u8>>,
    observe: bool,
    nonce_used: bool,
    finished: bool,
    notifications: ReplayWindow,
}

impl RequestBinding {
    /// Client or server side.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The request's 'kid' (the client's Sender ID), used as `request_kid` (§5.4).
    pub fn kid(&self) -> &[u8] {
        &self.request_kid
    }

    /// The request's Partial IV, used as `request_piv` (§5.4).
    pub fn partial_iv(&self) -> PartialIv {
        self.request_piv
    }

    /// The 'kid context' the request carried, if any.
    pub fn kid_context(&self) -> Option<&[u8]> {
        self.request_kid_context.as_deref()
    }

    /// The ID Context of the security context the request was protected with; with
    /// [`kid`](Self::kid) it identifies the context to protect or verify responses with.
    pub fn id_context(&self) -> Option<&[u8]> {
        self.id_context.as_deref()
    }

    /// Whether the request was an Observe registration (Observe = 0), so several
    /// responses (notifications) may follow (§4.1.3.5).
    pub fn is_observe(&self) -> bool {
        self.observe
    }

    /// The Notification Number (§4.1.3.5.2): the largest Partial IV of the notifications
    /// verified so far.
    pub fn notification_number(&self) -> Option<u64> {
        self.notifications.highest()
    }

    /// Whether a response already used the request's nonce.
    pub fn request_nonce_used(&self) -> bool {
        self.nonce_used
    }

    /// Whether the final response was received (client side): further responses are
    /// refused.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The same exchange bound to another security context with the same Sender and
    /// Recipient IDs, e.g. one re-derived with a new ID Context (RFC 8613 Appendix B.2:
    /// response #1 is protected with, and verified by, the second context although the
    /// request used the first). `None` if `ctx` does not have this binding's kid in the
    /// binding's role.
    ///
    /// The copy starts with the request nonce unused and no notifications seen: under the
    /// new context's keys, the request's (kid, Partial IV) pair has never produced a nonce.
    /// For a context with the same ID Context the binding is returned unchanged.
    pub fn for_context(&self, ctx: &SecurityContext) -> Option<RequestBinding> {
        let own = match self.role {
            Role::Client => ctx.sender_id(),
            Role::Server => ctx.recipient_id(),
        };
        if own != self.request_kid.as_slice() {
            return None;
        }
        if ctx.id_context() == self.id_context.as_deref() {
            return Some(self.clone());
        }
        Some(RequestBinding {
            id_context: ctx.id_context.clone(),
            nonce_used: false,
            finished: false,
            notifications: ReplayWindow::default(),
            ..self.clone()
        })
    }

    /// Test hook: pretend the request was an Observe registration.
    #[cfg(test)]
    pub(crate) fn force_observe(&mut self) {
        self.observe = true;
    }

    fn new(
        role: Role,
        kid: &[u8],
        piv: PartialIv,
        kid_context: Option<&[u8]>,
        ctx: &SecurityContext,
        observe: bool,
    ) -> Self {
        RequestBinding {
            role,
            request_kid: kid.to_vec(),
            request_piv: piv,
            request_kid_context: kid_context.map(<[u8]>::to_vec),
            id_context: ctx.id_context.clone(),
            observe,
            nonce_used: false,
            finished: false,
            notifications: ReplayWindow::default(),
        }
    }
}

/// A request that verified while the replay window was uninitialised (RFC 8613
/// Appendix B.1.2), returned inside [`UnprotectError::FreshnessUnverified`]. It must not
/// be acted upon until its freshness is established.
///
/// Typical server flow: answer the first such request with
/// [`SecurityContext::echo_challenge`] (a protected 4.01 with an Echo option, RFC 9175
/// §2.4); when a later request comes back carrying that Echo value (read it with
/// [`request`](Self::request)), pass it to [`SecurityContext::confirm_freshness`], which
/// sets the window's lower limit to its Partial IV and hands out the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    request: Request,
    binding: RequestBinding,
}

impl PendingRequest {
    /// The decrypted request, to be inspected (e.g. for the Echo option) but not executed.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The binding, e.g. to protect a different response than the Echo challenge.
    pub fn binding_mut(&mut self) -> &mut RequestBinding {
        &mut self.binding
    }
}

/// Finds the security context for a received request by its 'kid' and 'kid context'
/// (RFC 8613 §8.2 step 2; §3.1 Figure 4: "Retrieve context with RID = kid").
///
/// An implementation may derive the context on the fly (Appendix B.2). A `kid_context` of
/// `None` means the request carried none, so any ID Context may match (§5.1).
pub trait ContextLookup {
    /// The context whose Recipient ID is `kid` and, if given, whose ID Context is
    /// `kid_context`.
    fn find_context(
        &mut self,
        kid: &[u8],
        kid_context: Option<&[u8]>,
    ) -> Option<&mut SecurityContext>;
}

impl ContextLookup for SecurityContext {
    fn find_context(
        &mut self,
        kid: &[u8],
        kid_context: Option<&[u8]>,
    ) -> Option<&mut SecurityContext> {
        self.matches(kid, kid_context).then_some(self)
    }
}

/// Verifies an OSCORE request against the context that `contexts` finds for its 'kid'
/// and 'kid context' (RFC 8613 §8.2). See [`SecurityContext::unprotect_request`].
pub fn unprotect_request<L: ContextLookup + ?Sized>(
    contexts: &mut L,
    outer: &Request,
) -> Result<(Request, RequestBinding), UnprotectError> {
    let value = oscore_option(&outer.options)?;
    let option = OscoreOption::decode(value).map_err(UnprotectError::MalformedOscoreOption)?;
    let (Some(kid), Some(piv)) = (option.kid, option.partial_iv) else {
        return Err(UnprotectError::MissingKidOrPartialIv);
    };
    if outer.payload.is_empty() {
        return Err(UnprotectError::MissingPayload);
    }
    let ctx = contexts
        .find_context(kid, option.kid_context)
        .filter(|c| c.matches(kid, option.kid_context))
        .ok_or(UnprotectError::UnknownContext)?;
    ctx.verify_request(outer, kid, piv, option.kid_context)
}

/// The value of the single OSCORE option.
fn oscore_option(options: &Options) -> Result<&[u8], UnprotectError> {
    let mut values = options.get_all(OptionNumber::OSCORE);
    let value = values.next().ok_or(UnprotectError::MissingOscoreOption)?;
    if values.next().is_some() {
        // §2: not repeatable.
        return Err(UnprotectError::MalformedOscoreOption(
            crate::option::OptionError::TrailingBytes,
        ));
    }
    Ok(value)
}

/// The plaintext (§5.3, Figure 9): Code, the Inner options, and the payload behind the
/// payload marker when there is one.
fn encode_plaintext<'a>(
    code: Code,
    options: impl Iterator<Item = (OptionNumber, &'a [u8])>,
    payload: &[u8],
) -> Result<Vec<u8>, ProtectError> {
    let mut out = Vec::with_capacity(64 + payload.len());
    out.push(code.0);
    let mut previous = 0u16;
    for (number, value) in options {
        let mut header = [0u8; 5];
        let len = encode_option_header(number.0 - previous, value.len(), &mut header)
            .map_err(|_| ProtectError::PlaintextTooLong)?;
        out.extend_from_slice(&header[..len]);
        out.extend_from_slice(value);
        previous = number.0;
    }
    if !payload.is_empty() {
        out.push(PAYLOAD_MARKER);
        out.extend_from_slice(payload);
    }
    Ok(out)
}

/// A decoded plaintext: Code, Inner options in order, payload.
type Plaintext<'a> = (Code, Vec<(OptionNumber, &'a [u8])>, &'a [u8]);

/// Parses a decrypted plaintext into Code, Inner options and payload; `None` if it is not
/// a well-formed message body or nests OSCORE (§4.1.3.7).
fn decode_plaintext(plaintext: &[u8]) -> Option<Plaintext<'_>> {
    let (&code, rest) = plaintext.split_first()?;
    let (iter, payload) = OptionIter::new_checked(rest).ok()?;
    let options: Vec<_> = iter.map(|o| (o.number, o.value)).collect();
    if options.iter().any(|(n, _)| *n == OptionNumber::OSCORE) {
        return None;
    }
    Some((Code(code), options, payload))
}

/// A request method: class 0, detail 1–31 (RFC 7252 §12.1.1).
fn is_method(code: Code) -> bool {
    code.class() == 0 && code.detail() != 0
}

/// A response code: classes 2–5 (RFC 7252 §12.1.2).
fn is_response_code(code: Code) -> bool {
    (2..=5).contains(&code.class())
}

impl SecurityContext {
    /// Protects a request (RFC 8613 §8.1) and returns the OSCORE request to send with the
    /// binding that verifies its responses.
    ///
    /// - The Code and every Inner option go into the plaintext (§4.1.1, §4.2, §5.3); Outer
    ///   options stay (§4.1.2): Uri-Host, Uri-Port, Proxy-Scheme, Hop-Limit, and the
    ///   Block options in [`BlockwiseMode::Outer`](crate::BlockwiseMode::Outer).
    /// - The Outer Code is POST, or FETCH when the request has Observe (§4.1.3.5, §4.2);
    ///   Observe is then both Inner and Outer with the original value (§4.1.3.5.1).
    /// - The Partial IV is the next Sender Sequence Number, the kid the Sender ID, and the
    ///   ID Context travels as 'kid context' if so configured (§5, §6.1).
    ///
    /// Token, type and message ID are not part of [`Request`]: they are the endpoint's.
    pub fn protect_request(
        &mut self,
        request: &Request,
    ) -> Result<(Request, RequestBinding), ProtectError> {
        if !is_method(request.method) {
            return Err(ProtectError::InvalidCode);
        }
        if request.options.contains(OptionNumber::OSCORE) {
            return Err(ProtectError::NestedOscore);
        }
        // §4.1.3.3: Proxy-Uri is decomposed; its path and query are protected.
        let decomposed;
        let request = match request.options.get(OptionNumber::PROXY_URI) {
            Some(uri) => {
                decomposed = decompose_proxy_uri(request, uri)?;
                &decomposed
            }
            None => request,
        };
        let observe = request.options.get(OptionNumber::OBSERVE);
        let mode = self.blockwise;
        let inner = request
            .options
            .iter()
            .filter(|(n, _)| *n == OptionNumber::OBSERVE || !goes_outer(*n, mode));
        let mut ciphertext = encode_plaintext(request.method, inner, &request.payload)?;
        if ciphertext.len() > self.aead.max_plaintext_len() {
            return Err(ProtectError::PlaintextTooLong);
        }

        let piv = self.next_partial_iv()?;
        let kid_context = if self.send_kid_context {
            self.id_context.as_deref()
        } else {
            None
        };
        let option = OscoreOption {
            partial_iv: Some(piv),
            kid_context,
            kid: Some(&self.sender_id),
        };
        let option_value = option
            .to_vec()
            .map_err(|_| ProtectError::OscoreOptionTooLong)?;
        if option_value.len() > 255 {
            return Err(ProtectError::OscoreOptionTooLong);
        }
        let nonce = self.nonce(&self.sender_id, &piv);
        let aad = self.aad(&self.sender_id, &piv);
        self.sender_cipher
            .seal(&nonce[..self.aead.nonce_len()], &aad, &mut ciphertext)
            .map_err(|_| ProtectError::PlaintextTooLong)?;

        let mut options = Options::new();
        for (n, v) in request.options.iter().filter(|(n, _)| goes_outer(*n, mode)) {
            options.push(n, v);
        }
        if let Some(value) = observe {
            options.push(OptionNumber::OBSERVE, value);
        }
        options.push(OptionNumber::OSCORE, option_value);
        let outer = Request {
            method: if observe.is_some() {
                Code::FETCH
            } else {
                Code::POST
            },
            options,
            payload: ciphertext,
        };
        let is_registration =
            observe.is_some_and(|v| corium_proto::wire::decode_uint(v) == Some(0));
        let binding = RequestBinding::new(
            crate::Role::Client,
            &self.sender_id,
            piv,
            kid_context,
            self,
            is_registration,
        );
        Ok((outer, binding))
    }

    /// Verifies an OSCORE request with this context (RFC 8613 §8.2) and returns the
    /// decrypted request with the binding for its responses.
    ///
    /// The request's kid must be this context's Recipient ID and a 'kid context', when
    /// present, its ID Context; otherwise [`UnprotectError::UnknownContext`]. Servers with
    /// several contexts use the free function [`unprotect_request`](crate::unprotect_request).
    ///
    /// Steps: decompress (§6), replay check (§7.4), decrypt (§5), update the replay window
    /// only after successful decryption, then rebuild the request from the Inner Code,
    /// the Class U Outer options and the Inner options; Outer options of Class E
    /// (including Outer Observe, Max-Age and Block options) are discarded (§8.2 step 1).
    pub fn unprotect_request(
        &mut self,
        outer: &Request,
    ) -> Result<(Request, RequestBinding), UnprotectError> {
        unprotect_request(self, outer)
    }

    fn verify_request(
        &mut self,
        outer: &Request,
        kid: &[u8],
        piv: PartialIv,
        kid_context: Option<&[u8]>,
    ) -> Result<(Request, RequestBinding), UnprotectError> {
        let seq = piv.value();
        let window_ready = match self.window.check(seq) {
            Ok(()) => true,
            Err(crate::ReplayError::Uninitialised) => false,
            Err(_) => return Err(UnprotectError::Replay),
        };
        let nonce = self.nonce(&self.recipient_id, &piv);
        let aad = self.aad(kid, &piv);
        let mut plaintext = outer.payload.clone();
        self.recipient_cipher
            .open(&nonce[..self.aead.nonce_len()], &aad, &mut plaintext)
            .map_err(|_| UnprotectError::DecryptionFailed)?;
        if window_ready {
            // Checked above; the pair is atomic because `self` is borrowed mutably (§7.4).
            self.window
                .accept(seq)
                .map_err(|_| UnprotectError::Replay)?;
        }

        let (code, inner, payload) =
            decode_plaintext(&plaintext).ok_or(UnprotectError::MalformedPlaintext)?;
        if !is_method(code) {
            return Err(UnprotectError::MalformedPlaintext);
        }
        let mut options = Options::new();
        for (n, v) in outer.options.iter().filter(|(n, _)| keep_outer(*n)) {
            options.push(n, v);
        }
        let mut observe = None;
        for (n, v) in inner {
            if n == OptionNumber::OBSERVE {
                observe = Some(corium_proto::wire::decode_uint(v));
            }
            options.push(n, v);
        }
        if options.contains(OptionNumber::PROXY_URI) {
            // §4.1.3.3: the client split Proxy-Uri; the original one is composed again.
            options = compose_proxy_uri(options);
        }
        let request = Request {
            method: code,
            options,
            payload: payload.to_vec(),
        };
        let binding = RequestBinding::new(
            crate::Role::Server,
            kid,
            piv,
            kid_context,
            self,
            observe == Some(Some(0)),
        );
        if window_ready {
            Ok((request, binding))
        } else {
            Err(UnprotectError::FreshnessUnverified(Box::new(
                PendingRequest { request, binding },
            )))
        }
    }

    /// Releases a request that verified while the replay window was uninitialised, once
    /// the caller established its freshness (typically: it carries the Echo value of an
    /// [`echo_challenge`](Self::echo_challenge)). Its Partial IV becomes the lower limit
    /// of the replay window (RFC 8613 Appendix B.1.2). If the window was initialised in
    /// the meantime, the request goes through the normal replay check instead.
    ///
    /// Calling this without having verified freshness defeats replay protection.
    pub fn confirm_freshness(
        &mut self,
        pending: Box<PendingRequest>,
    ) -> Result<(Request, RequestBinding), UnprotectError> {
        let PendingRequest { request, binding } = *pending;
        if !self.owns(&binding, crate::Role::Server) {
            return Err(UnprotectError::BindingMismatch);
        }
        let seq = binding.request_piv.value();
        match self.window.state() {
            WindowState::Uninitialised => self.window.initialise(seq),
            WindowState::Ready => self
                .window
                .accept(seq)
                .map_err(|_| UnprotectError::Replay)?,
        }
        Ok((request, binding))
    }

    /// Protects the 4.01 (Unauthorized) response with an Echo option (RFC 9175 §2.2.1,
    /// as an Inner option) and no payload that asks the client of a pending request to
    /// prove freshness (RFC 8613 Appendix B.1.2). It always carries a fresh Partial IV, as
    /// B.1.2 requires. The caller generates and remembers the Echo value (1 to 40 bytes,
    /// RFC 9175 §2.2.1).
    pub fn echo_challenge(
        &mut self,
        pending: &mut PendingRequest,
        echo: &[u8],
    ) -> Result<Response, ProtectError> {
        let mut challenge = Response::new(Code::UNAUTHORIZED);
        challenge.options.push(OptionNumber::ECHO, echo);
        self.protect_response(&mut pending.binding, &challenge, true)
    }

    /// Protects a response to a verified request (RFC 8613 §8.3).
    ///
    /// With `fresh_piv == false` the response reuses the request's nonce and carries no
    /// Partial IV (§5.2); this is allowed once per request, a second time fails with
    /// [`ProtectError::NonceReuse`]. With `fresh_piv == true` it takes the next Sender
    /// Sequence Number as its own Partial IV. Notifications after the first MUST use a
    /// fresh Partial IV (§4.1.3.5.2, §8.3.1), which the nonce rule enforces.
    ///
    /// The Outer Code is 2.04 (Changed), or 2.05 (Content) for a notification (a response
    /// with Observe), whose Inner Observe is empty and Outer Observe keeps the value
    /// (§4.1.3.5.2). Max-Age is Inner (§4.1.3.1).
    pub fn protect_response(
        &mut self,
        binding: &mut RequestBinding,
        response: &Response,
        fresh_piv: bool,
    ) -> Result<Response, ProtectError> {
        self.protect_response_inner(binding, response, fresh_piv, None)
    }

    /// [`protect_response`](Self::protect_response) with a 'kid context' in the OSCORE
    /// option: response #1 of the context re-derivation of RFC 8613 Appendix B.2 carries
    /// the server's random R2 this way (step 2). The binding is typically one moved to
    /// the new context with [`RequestBinding::for_context`].
    pub fn protect_response_with_kid_context(
        &mut self,
        binding: &mut RequestBinding,
        response: &Response,
        fresh_piv: bool,
        kid_context: &[u8],
    ) -> Result<Response, ProtectError> {
        self.protect_response_inner(binding, response, fresh_piv, Some(kid_context))
    }

    fn protect_response_inner(
        &mut self,
        binding: &mut RequestBinding,
        response: &Response,
        fresh_piv: bool,
        kid_context: Option<&[u8]>,
    ) -> Result<Response, ProtectError> {
        if kid_context.is_some_and(|c| c.len() > 255) {
            return Err(ProtectError::OscoreOptionTooLong);
        }
        if !self.owns(binding, crate::Role::Server) {
            return Err(ProtectError::BindingMismatch);
        }
        if !is_response_code(response.code) {
            return Err(ProtectError::InvalidCode);
        }
        if response.options.contains(OptionNumber::OSCORE) {
            return Err(ProtectError::NestedOscore);
        }
        let observe = response.options.get(OptionNumber::OBSERVE);
        if observe.is_some() && !binding.observe {
            return Err(ProtectError::UnexpectedObserve);
        }
        if !fresh_piv && binding.nonce_used {
            return Err(ProtectError::NonceReuse);
        }
        let mode = self.blockwise;
        let inner = response
            .options
            .iter()
            .filter(|(n, _)| *n == OptionNumber::OBSERVE || !goes_outer(*n, mode))
            .map(|(n, v)| {
                if n == OptionNumber::OBSERVE {
                    (n, &[][..])
                } else {
                    (n, v)
                }
            });
        let mut ciphertext = encode_plaintext(response.code, inner, &response.payload)?;
        if ciphertext.len() > self.aead.max_plaintext_len() {
            return Err(ProtectError::PlaintextTooLong);
        }

        let piv = if fresh_piv {
            Some(self.next_partial_iv()?)
        } else {
            None
        };
        let nonce = match &piv {
            Some(p) => self.nonce(&self.sender_id, p),
            None => self.nonce(&binding.request_kid, &binding.request_piv),
        };
        let aad = self.aad(&binding.request_kid, &binding.request_piv);
        self.sender_cipher
            .seal(&nonce[..self.aead.nonce_len()], &aad, &mut ciphertext)
            .map_err(|_| ProtectError::PlaintextTooLong)?;
        if piv.is_none() {
            binding.nonce_used = true;
        }

        let mut options = Options::new();
        for (n, v) in response
            .options
            .iter()
            .filter(|(n, _)| goes_outer(*n, mode))
        {
            options.push(n, v);
        }
        if let Some(value) = observe {
            options.push(OptionNumber::OBSERVE, value);
        }
        let option = OscoreOption {
            partial_iv: piv,
            kid_context,
            kid: None,
        };
        options.push(
            OptionNumber::OSCORE,
            option
                .to_vec()
                .map_err(|_| ProtectError::OscoreOptionTooLong)?,
        );
        Ok(Response {
            code: if observe.is_some() {
                Code::CONTENT
            } else {
                Code::CHANGED
            },
            options,
            payload: ciphertext,
        })
    }

    /// Verifies a response to a request protected with this context (RFC 8613 §8.4).
    ///
    /// Without a Partial IV the request's nonce is used, at most once per request
    /// (§8.4.2). A request that was not an Observe registration accepts exactly one
    /// response (§7.4); a registration accepts notifications (responses with Inner
    /// Observe) with distinct Partial IVs, checked against a 32-entry window (§7.4.1),
    /// until a response without Observe ends it. An Inner Observe in a response to
    /// anything else is refused (§4.1.3.5.2).
    ///
    /// The Observe value of a decrypted notification is derived from its Partial IV,
    /// `(piv + 1) mod 2^24`, and 0 for a notification without Partial IV, so the RFC 7641
    /// reordering of the layer above follows the Partial IVs (§4.1.3.5.2 lets the client
    /// set Observe from the Partial IV; the offset makes the notification without
    /// Partial IV the oldest). The Outer Observe value is ignored as the RFC requires.
    ///
    /// A response without OSCORE option (e.g. the unprotected 4.01/4.02/4.00 a server
    /// sends when it cannot verify the request, §8.2) fails with
    /// [`UnprotectError::MissingOscoreOption`] and leaves the binding untouched; its code
    /// is unauthenticated and may only serve as a hint.
    pub fn unprotect_response(
        &mut self,
        binding: &mut RequestBinding,
        outer: &Response,
    ) -> Result<Response, UnprotectError> {
        if !self.owns(binding, crate::Role::Client) {
            return Err(UnprotectError::BindingMismatch);
        }
        if binding.finished {
            return Err(UnprotectError::ResponseAlreadyReceived);
        }
        let value = oscore_option(&outer.options)?;
        let option = OscoreOption::decode(value).map_err(UnprotectError::MalformedOscoreOption)?;
        if outer.payload.is_empty() {
            return Err(UnprotectError::MissingPayload);
        }
        let nonce = match &option.partial_iv {
            Some(piv) => {
                if binding.observe && binding.notifications.check(piv.value()).is_err() {
                    return Err(UnprotectError::Replay);
                }
                self.nonce(&self.recipient_id, piv)
            }
            None if binding.nonce_used => return Err(UnprotectError::NonceReuse),
            None => self.nonce(&binding.request_kid, &binding.request_piv),
        };
        let aad = self.aad(&binding.request_kid, &binding.request_piv);
        let mut plaintext = outer.payload.clone();
        self.recipient_cipher
            .open(&nonce[..self.aead.nonce_len()], &aad, &mut plaintext)
            .map_err(|_| UnprotectError::DecryptionFailed)?;
        let (code, inner, payload) =
            decode_plaintext(&plaintext).ok_or(UnprotectError::MalformedPlaintext)?;
        if !is_response_code(code) {
            return Err(UnprotectError::MalformedPlaintext);
        }
        let notification = inner.iter().any(|(n, _)| *n == OptionNumber::OBSERVE);
        if notification && !binding.observe {
            return Err(UnprotectError::UnexpectedObserve);
        }

        // Verified: update the binding.
        match &option.partial_iv {
            Some(piv) if notification => {
                binding
                    .notifications
                    .accept(piv.value())
                    .map_err(|_| UnprotectError::Replay)?;
            }
            Some(_) => {}
            None => binding.nonce_used = true,
        }
        if !notification {
            binding.finished = true;
        }

        let mut options = Options::new();
        for (n, v) in outer.options.iter().filter(|(n, _)| keep_outer(*n)) {
            options.push(n, v);
        }
        for (n, v) in inner {
            if n == OptionNumber::OBSERVE {
                let seq = option
                    .partial_iv
                    .map_or(0, |p| (p.value() + 1) & OBSERVE_MASK);
                options.push_uint(n, seq as u32);
            } else {
                options.push(n, v);
            }
        }
        Ok(Response {
            code,
            options,
            payload: payload.to_vec(),
        })
    }

    /// Whether `binding` was made by this context in `role`.
    fn owns(&self, binding: &RequestBinding, role: crate::Role) -> bool {
        let own_kid = match role {
            crate::Role::Client => &self.sender_id,
            crate::Role::Server => &self.recipient_id,
        };
        binding.role == role
            && binding.request_kid == *own_kid
            && binding.id_context == self.id_context
    }
}

/// RFC 8613 §4.1.3.3 with RFC 7252 §6.4: `request` with its Proxy-Uri `uri` split. The
/// path becomes Uri-Path options and the query Uri-Query options (Class E, protected);
/// Proxy-Uri keeps the scheme and authority only (`coap://example.com`, the
/// composition of Proxy-Scheme, Uri-Host and Uri-Port of RFC 7252 §6.5), an Outer
/// option. Any scheme is accepted (a CoAP-to-HTTP proxy's target, say); a value that is
/// not an absolute URI with an authority, or that has a fragment, is refused with
/// [`ProtectError::ProxyUriUnsupported`].
fn decompose_proxy_uri(request: &Request, uri: &[u8]) -> Result<Request, ProtectError> {
    let bad = ProtectError::ProxyUriUnsupported;
    let uri = core::str::from_utf8(uri).map_err(|_| bad)?;
    if uri.contains('#')
        || request.options.contains(OptionNumber::URI_PATH)
        || request.options.contains(OptionNumber::URI_QUERY)
    {
        return Err(bad);
    }
    let sep = uri.find("://").ok_or(bad)?;
    let scheme = &uri[..sep];
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(bad);
    }
    let after = sep + 3;
    let end = uri[after..]
        .find(['/', '?'])
        .map_or(uri.len(), |i| after + i);
    if end == after {
        return Err(bad); // No host.
    }
    let (path, query) = match uri[end..].split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (&uri[end..], None),
    };
    let mut options = Options::new();
    for (n, v) in request.options.iter() {
        if n != OptionNumber::PROXY_URI {
            options.push(n, v);
        }
    }
    options.push(OptionNumber::PROXY_URI, &uri.as_bytes()[..end]);
    // RFC 7252 §6.4 step 8: "/" or empty means no Uri-Path; otherwise every segment.
    if !path.is_empty() && path != "/" {
        for segment in path[1..].split('/') {
            let value: Vec<u8> = corium_proto::wire::percent_decode(segment).collect();
            options.push(OptionNumber::URI_PATH, value);
        }
    }
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        for arg in query.split('&') {
            let value: Vec<u8> = corium_proto::wire::percent_decode(arg).collect();
            options.push(OptionNumber::URI_QUERY, value);
        }
    }
    Ok(Request {
        method: request.method,
        options,
        payload: request.payload.clone(),
    })
}

/// The inverse of [`decompose_proxy_uri`] on the receiving side: Proxy-Uri (scheme and
/// authority) with the decrypted Uri-Path and Uri-Query appended, percent-encoded, as
/// the client's original Proxy-Uri (RFC 8613 §4.1.3.3, RFC 7252 §6.5).
fn compose_proxy_uri(options: Options) -> Options {
    use core::fmt::Write as _;
    use corium_proto::wire::{PercentEncoded, UriComponent};
    let Some(base) = options
        .get(OptionNumber::PROXY_URI)
        .and_then(|v| core::str::from_utf8(v).ok())
    else {
        return options;
    };
    let mut uri = alloc::string::String::from(base);
    for segment in options.get_all(OptionNumber::URI_PATH) {
        uri.push('/');
        let _ = write!(
            uri,
            "{}",
            PercentEncoded {
                bytes: segment,
                component: UriComponent::PathSegment,
            }
        );
    }
    for (i, arg) in options.get_all(OptionNumber::URI_QUERY).enumerate() {
        uri.push(if i == 0 { '?' } else { '&' });
        let _ = write!(
            uri,
            "{}",
            PercentEncoded {
                bytes: arg,
                component: UriComponent::QueryArg,
            }
        );
    }
    let mut out = Options::new();
    for (n, v) in options.iter() {
        if !matches!(
            n,
            OptionNumber::PROXY_URI | OptionNumber::URI_PATH | OptionNumber::URI_QUERY
        ) {
            out.push(n, v);
        }
    }
    out.push(OptionNumber::PROXY_URI, uri.into_bytes());
    out
}
