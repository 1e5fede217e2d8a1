//! OSCORE (RFC 8613) in the runtime: which requests a [`Client`] protects,
//! which resources a [`Server`](crate::Server) requires it on, and where the Sender
//! Sequence Numbers survive a restart (Appendix B.1.1).
//!
//! The cryptography and the per-context state live in [`corium_oscore`]; this module
//! decides when to call it and moves the protected ("outer") messages through the same
//! endpoint as every other message, so retransmission, deduplication and block-wise
//! transfer of the protected message stay where they are (outer block-wise, RFC 8613
//! §4.1.3.4.2).
//!
//! # Client
//!
//! ```text
//!  RequestBuilder::send(uri)
//!    │ OscoreClient: the longest URI pattern matching `uri` → its SecurityContext
//!    ▼
//!  inner Request ─ protect_request ─► outer POST/FETCH + OSCORE option      (§8.1)
//!    │ a body over one block (BlockwiseMode::Inner contexts): inner Block1, one
//!    │ protected request per block, each answered 2.31 until the last (§4.1.3.4.1)
//!    │ the endpoint: retransmission; Block2 download of the OUTER response, and
//!    │ outer Block1 for an outer message beyond one datagram      (§4.1.3.4.2)
//!    ▼
//!  outer Response ─ unprotect_response ─► inner Response                   (§8.4)
//!    ├ 4.01 + Echo (server lost its replay window, App. B.1.2): the request is
//!    │   protected again with the Echo value, once
//!    └ inner Block2 (server fragmented before protecting, §4.1.3.4.1): further
//!        protected requests with inner Block2 N until the body is complete
//! ```
//!
//! A response that does not verify is an error ([`Error::is_oscore`](crate::Error::is_oscore)),
//! never returned as if it were the server's. That includes the unprotected 4.01 / 4.02
//! / 4.00 a server answers when it cannot verify the request (§8.2): their codes are
//! unauthenticated and only appear in the error message as a hint.
//!
//! Observations ([`RequestBuilder::observe`](crate::RequestBuilder::observe)) register
//! with a protected FETCH (§4.1.3.5); every notification is verified with the
//! registration's binding, a notification that does not verify is dropped (logged), and
//! a verified response without inner Observe ends the observation.
//!
//! # Server
//!
//! ```text
//!  Endpoint (dedup, outer Block1 reassembly, outer Block2 from the response cache)
//!    │ Event::Request(outer)
//!    ▼
//!  driver dispatch ── no OSCORE option ── path requires OSCORE? → 4.01 Unauthorized
//!    │ OSCORE option                      otherwise routed as it is
//!    ▼
//!  unprotect_request(SecurityContextSet)  error → unprotected 4.02/4.01/4.00 (§8.2)
//!    │ replay window lost (App. B.1.2) → protected 4.01 + Echo; the retry with
//!    │ that Echo value initialises the window
//!    │ inner Block1: blocks reassembled here, 2.31 Continue for all but the last
//!    ▼
//!  inner Request → Router → handler → Response ─ protect_response ─► outer 2.04
//!    └ Observe: the registration answer and every notification are protected
//!      per observer with its own binding (fresh Partial IV after the first, §4.1.3.5.2)
//!    ▼
//!  Endpoint::respond (a large outer response is cut into Block2 blocks and kept
//!  in the response cache; the follow-ups never reach the application)
//! ```
//!
//! The security contexts of a server are shared by its drivers (one per socket or
//! listener) behind a mutex; only driver tasks touch them, handlers never do.
//!
//! # Sequence numbers across restarts
//!
//! [`SequenceFile`] implements [`SequenceStore`] on a small text file: before a context
//! uses the first sequence number at or above the stored bound it writes a new bound
//! (K = [`PERSIST_STEP`] numbers ahead) to a temporary file, syncs it, renames it over
//! the old one and syncs the directory (Appendix B.1.1). On start,
//! [`SequenceFile::apply`] resumes a context at its stored bound with
//! [`SecurityContextBuilder::resume_after_reboot`]; its replay window then starts
//! uninitialised and a server re-establishes it with the Echo exchange above
//! (Appendix B.1.2). The file is meant for one process at a time.
//!
//! # Limits
//!
//! - Block-wise: a server protects whole responses and its endpoint cuts them into outer
//!   Block2 blocks; it reassembles both outer and inner Block1 uploads, and answers an
//!   inner Block2 request beyond block 0 with a protected 4.02. A client follows inner
//!   Block2 and sends inner Block1 only with contexts built with [`BlockwiseMode::Inner`]
//!   (with [`BlockwiseMode::Outer`] the Block options would leave the ciphertext).
//! - A client observation that the endpoint re-registers (RFC 7641 §3.3.1, after the
//!   latest notification's Max-Age) repeats the protected registration, which the
//!   server refuses as a replay: the observation then ends with an error.
//! - A notification larger than one block is completed with a new protected GET
//!   (RFC 7959 §2.6), not from the notification's own blocks.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use corium_oscore::{
    unprotect_request, BlockwiseMode, PersistError, RequestBinding, SecurityContext,
    SecurityContextBuilder, SecurityContextSet, SequenceStore, UnprotectError,
};
use corium_proto::wire::{BlockValue, Code, OptionNumber};
use corium_proto::{IncomingId, Request, RequestOptions, Response};

use crate::client::{Client, MAX_REASSEMBLED_BODY};
use crate::error::{Error, Kind};

/// The persistence step K of [`SequenceFile`] (RFC 8613 Appendix B.1.1): a bound is
/// written once every this many sequence numbers. Each write is synced before the first
/// number it covers is used, so K sets how often a busy client waits for the disk: at
/// 30 000 protected requests per second, 7 times a second with 4096 (the 64 of
/// [`DEFAULT_PERSIST_STEP`](corium_oscore::DEFAULT_PERSIST_STEP), meant for constrained devices, would be 470 times and
/// cost most of the throughput). A restart skips at most K numbers of the 2^40.
pub const PERSIST_STEP: u64 = 4096;

/// The margin F added to a stored bound after a restart (Appendix B.1.1). Zero: a
/// [`SequenceFile`] returns from `persist` only once the bound is durable (file and
/// directory synced), so no number at or above a stored bound was ever used.
pub const REBOOT_MARGIN: u64 = 0;

/// Length of the Echo values a server sends to re-establish a replay window (RFC 9175
/// §2.2.1 allows 1 to 40 bytes; 8 random bytes cannot be guessed).
const ECHO_LEN: usize = 8;

/// A pattern of the credentials: an exact string, or a prefix followed by `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern(String);

impl Pattern {
    fn matches(&self, s: &str) -> bool {
        let s = without_default_port(s);
        match self.0.strip_suffix('*') {
            Some(prefix) => s.starts_with(&*without_default_port(prefix)),
            None => *s == *without_default_port(&self.0),
        }
    }
}

/// `coap://h:5683/x` as `coap://h/x` (RFC 7252 §6.3: the default port is equivalent
/// to none); other URIs as they are.
fn without_default_port(uri: &str) -> std::borrow::Cow<'_, str> {
    let Some(rest) = uri
        .strip_prefix("coap://")
        .or_else(|| uri.strip_prefix("coap+tcp://"))
    else {
        return uri.into();
    };
    let scheme_len = uri.len() - rest.len();
    let authority_end = scheme_len + rest.find(['/', '?', '*']).unwrap_or(rest.len());
    match uri[..authority_end].strip_suffix(":5683") {
        Some(head) => format!("{head}{}", &uri[authority_end..]).into(),
        None => uri.into(),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------

/// The security contexts of a client, each for the request URIs that match its pattern
/// (RFC 8613 §3.1: the client selects the context by the target resource). Install it
/// with [`ClientBuilder::oscore`](crate::ClientBuilder::oscore).
///
/// A pattern is matched against the URI as given to
/// [`Client::request`](crate::Client::request), either exactly or, with a trailing `*`,
/// as a prefix: `coap://192.0.2.1/*`. The only normalisation: an explicit default port
/// 5683 of `coap://` and `coap+tcp://` equals none (RFC 7252 §6.3). The longest
/// matching pattern wins, as in aiocoap's credentials map. A request no pattern matches
/// goes unprotected.
///
/// Build the contexts with [`BlockwiseMode::Inner`] to follow servers that fragment
/// responses before protecting them (aiocoap does, RFC 8613 §4.1.3.4.1); Corium's own
/// outer block-wise works with either mode, since the endpoint fragments the protected
/// message after protection.
///
/// ```
/// use corium::corium_oscore::{BlockwiseMode, SecurityContext};
/// use corium::OscoreClient;
///
/// let ctx = SecurityContext::builder(b"0123456789abcdef", &[0x01], &[])
///     .blockwise(BlockwiseMode::Inner)
///     .build()?;
/// let oscore = OscoreClient::new().context("coap://127.0.0.1:5683/*", ctx);
/// let builder = corium::Client::builder().oscore(oscore);
/// # let _ = builder;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct OscoreClient {
    entries: Vec<(Pattern, ClientContext)>,
}

impl fmt::Debug for OscoreClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(p, _)| &p.0))
            .finish()
    }
}

impl OscoreClient {
    /// No contexts yet: nothing is protected.
    pub fn new() -> OscoreClient {
        OscoreClient::default()
    }

    /// Protects requests whose URI matches `uri_pattern` with `ctx`.
    pub fn context(mut self, uri_pattern: &str, ctx: SecurityContext) -> OscoreClient {
        self.entries.push((
            Pattern(uri_pattern.to_owned()),
            ClientContext(Arc::new(Mutex::new(ctx)), Arc::default()),
        ));
        self
    }

    /// Like [`context_patterns`](Self::context_patterns) for a context derived with
    /// EDHOC whose message_3 has not been sent: the first request protected with it
    /// carries message_3 and the EDHOC option (the combined request, RFC 9668 §3.2.1).
    pub fn edhoc_context<S: AsRef<str>>(
        mut self,
        uri_patterns: impl IntoIterator<Item = S>,
        ctx: SecurityContext,
        message_3: Vec<u8>,
    ) -> OscoreClient {
        let shared = ClientContext(
            Arc::new(Mutex::new(ctx)),
            Arc::new(Mutex::new(Some(message_3))),
        );
        for p in uri_patterns {
            self.entries
                .push((Pattern(p.as_ref().to_owned()), shared.clone()));
        }
        self
    }

    /// Protects requests whose URI matches any of `uri_patterns` with `ctx` (one context,
    /// one sequence of Partial IVs, for all of them).
    pub fn context_patterns<S: AsRef<str>>(
        mut self,
        uri_patterns: impl IntoIterator<Item = S>,
        ctx: SecurityContext,
    ) -> OscoreClient {
        let shared = ClientContext(Arc::new(Mutex::new(ctx)), Arc::default());
        for p in uri_patterns {
            self.entries
                .push((Pattern(p.as_ref().to_owned()), shared.clone()));
        }
        self
    }

    /// Whether requests to `uri` are protected (a pattern matches it).
    pub fn protects(&self, uri: &str) -> bool {
        self.context_for(uri).is_some()
    }

    /// The number of URI patterns.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no patterns: nothing is protected.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The context for a request URI: the longest matching pattern.
    pub(crate) fn context_for(&self, uri: &str) -> Option<ClientContext> {
        self.entries
            .iter()
            .filter(|(p, _)| p.matches(uri))
            .max_by_key(|(p, _)| p.0.len())
            .map(|(_, c)| c.clone())
    }
}

/// One client context, shared by the requests that use it, and the EDHOC message_3 its
/// first request carries (RFC 9668), if any.
#[derive(Clone)]
pub(crate) struct ClientContext(Arc<Mutex<SecurityContext>>, Arc<Mutex<Option<Vec<u8>>>>);

impl ClientContext {
    fn protect(&self, request: &Request) -> Result<(Request, RequestBinding), Error> {
        let (mut outer, binding) = lock(&self.0)
            .protect_request(request)
            .map_err(|e| Error::new(Kind::Oscore(format!("cannot protect the request: {e}"))))?;
        if let Some(message_3) = lock(&self.1).take() {
            // RFC 9668 §3.2.1: EDHOC option, payload message_3 || OSCORE ciphertext.
            outer.options.push(OptionNumber::EDHOC, Vec::new());
            let mut payload = message_3;
            payload.extend_from_slice(&outer.payload);
            outer.payload = payload;
        }
        Ok((outer, binding))
    }

    fn unprotect(&self, binding: &mut RequestBinding, outer: &Response) -> Result<Response, Error> {
        lock(&self.0)
            .unprotect_response(binding, outer)
            .map_err(|e| verification_error(&e, outer))
    }

    fn blockwise_mode(&self) -> BlockwiseMode {
        lock(&self.0).blockwise_mode()
    }
}

/// The error for a response that did not verify (RFC 8613 §8.4). An unprotected error
/// response's code and diagnostic are named as what they are: an unauthenticated hint.
fn verification_error(err: &UnprotectError, outer: &Response) -> Error {
    let msg = match err {
        UnprotectError::MissingOscoreOption => {
            let mut m = format!(
                "the server answered {:?} without OSCORE protection",
                outer.code
            );
            if let Some(text) = outer.payload_str().filter(|t| !t.is_empty()) {
                let text: String = text.chars().take(80).collect();
                m.push_str(&format!(" ({text:?}, unauthenticated)"));
            }
            m
        }
        other => format!("the response failed OSCORE verification: {other}"),
    };
    Error::new(Kind::Oscore(msg))
}

/// Sends `request` protected with `ctx` and returns the verified inner response: the
/// client half of the [module's data flow](self).
pub(crate) async fn send(
    client: &Client,
    peer: SocketAddr,
    request: Request,
    options: RequestOptions,
    ctx: &ClientContext,
) -> Result<Response, Error> {
    let szx = client.block_szx().min(6);
    let first = if request.payload.len() > 1 << (szx + 4)
        && !request.options.contains(OptionNumber::BLOCK1)
        && ctx.blockwise_mode() == BlockwiseMode::Inner
    {
        inner_upload(client, peer, &request, &options, ctx, szx).await?
    } else {
        exchange(client, peer, &request, &options, ctx).await?
    };
    inner_blocks(client, peer, &request, first, &options, ctx).await
}

/// RFC 8613 §4.1.3.4.1 with RFC 7959 §2.3: a body larger than one block is fragmented
/// before protection ("messages exceeding [MAX_UNFRAGMENTED_SIZE] SHOULD be fragmented
/// by the sending endpoint using Inner Block options", §4.1.3.4.2); every block is its own
/// protected request, answered 2.31 Continue until the last one. The server may ask for
/// smaller blocks (RFC 7959 §2.5).
async fn inner_upload(
    client: &Client,
    peer: SocketAddr,
    request: &Request,
    options: &RequestOptions,
    ctx: &ClientContext,
    mut szx: u8,
) -> Result<Response, Error> {
    let body = &request.payload;
    let mut offset = 0usize;
    loop {
        let size = 1usize << (szx + 4);
        let end = (offset + size).min(body.len());
        let more = end < body.len();
        let Some(block) = u32::try_from(offset / size)
            .ok()
            .and_then(|num| BlockValue::new(num, more, szx))
        else {
            return Err(Error::new(Kind::Blockwise("block number out of range")));
        };
        let mut part = Request {
            method: request.method,
            options: request.options.clone(),
            payload: body[offset..end].to_vec(),
        };
        let mut buf = [0u8; 4];
        part.options
            .push(OptionNumber::BLOCK1, block.encode(&mut buf).to_vec());
        if offset == 0 {
            part.options.push_uint(
                OptionNumber::SIZE1,
                u32::try_from(body.len()).unwrap_or(u32::MAX),
            );
        }
        let response = exchange(client, peer, &part, options, ctx).await?;
        if !more || response.code != Code::CONTINUE {
            return Ok(response);
        }
        match response
            .options
            .get(OptionNumber::BLOCK1)
            .and_then(BlockValue::decode)
        {
            // Late negotiation: continue after what the server took, in its size.
            Some(ack) if ack.szx < szx => {
                szx = ack.szx;
                offset = (ack.num as usize + 1) << (szx + 4);
            }
            _ => offset = end,
        }
        if offset == 0 || offset > body.len() {
            return Err(Error::new(Kind::Blockwise(
                "the server acknowledged a block that was not sent",
            )));
        }
    }
}

/// One protected request and its verified response, answering a 4.01 + Echo challenge
/// (RFC 8613 Appendix B.1.2, RFC 9175 §2.3): at most twice, each time with a new value,
/// since a server that just re-established its replay window with one Echo value may
/// still want the request fresh for the resource (RFC 9175 §2.4 item 1) with another.
async fn exchange(
    client: &Client,
    peer: SocketAddr,
    request: &Request,
    options: &RequestOptions,
    ctx: &ClientContext,
) -> Result<Response, Error> {
    let mut attempt = request.clone();
    let mut challenges = 0;
    loop {
        let (outer, mut binding) = ctx.protect(&attempt)?;
        let reply = send_outer(client, peer, outer, options).await?;
        let response = ctx.unprotect(&mut binding, &reply)?;
        let echo = match response.options.get(OptionNumber::ECHO) {
            Some(echo)
                if response.code == Code::UNAUTHORIZED
                    && challenges < 2
                    && attempt.options.get(OptionNumber::ECHO) != Some(echo) =>
            {
                echo.to_vec()
            }
            _ => return Ok(response),
        };
        challenges += 1;
        tracing::debug!(%peer, "OSCORE: answering the server's Echo challenge (RFC 9175 §2.3)");
        attempt.options.set(OptionNumber::ECHO, echo);
    }
}

/// The largest CoAP message sent in one datagram without outer Block1 (RFC 7252 §4.6:
/// 1152 bytes fit any path; a 1024-byte inner block with OSCORE's overhead does).
const MAX_UNFRAGMENTED_MESSAGE: usize = 1152;

/// Sends an outer request: in one message when it fits a datagram, so that an inner
/// block is not fragmented a second time; else with outer Block1 (§4.1.3.4.2). Over
/// RFC 8323 connections the client decides by the peer's Max-Message-Size.
async fn send_outer(
    client: &Client,
    peer: SocketAddr,
    outer: Request,
    options: &RequestOptions,
) -> Result<Response, Error> {
    let options_len: usize = outer.options.iter().map(|(_, v)| v.len() + 3).sum();
    // Header, the longest token, options, payload marker, payload.
    let size = 4 + 8 + options_len + 1 + outer.payload.len();
    if size <= MAX_UNFRAGMENTED_MESSAGE && client.is_datagram() {
        client.send_whole(peer, outer, options.clone()).await
    } else {
        client.send_to(peer, outer, options.clone()).await
    }
}

/// RFC 8613 §4.1.3.4.1 with RFC 7959 §2.4: the server fragmented the response before
/// protecting it; the following blocks are asked for with inner Block2 in new protected
/// requests.
async fn inner_blocks(
    client: &Client,
    peer: SocketAddr,
    request: &Request,
    first: Response,
    options: &RequestOptions,
    ctx: &ClientContext,
) -> Result<Response, Error> {
    let Some(block) = block2_of(&first) else {
        return Ok(first);
    };
    if !block.more || block.num != 0 || !first.code.is_success() {
        return Ok(first);
    }
    if ctx.blockwise_mode() != BlockwiseMode::Inner {
        return Err(Error::new(Kind::Oscore(
            "the server fragmented the response before protecting it (inner Block2, \
             RFC 8613 §4.1.3.4.1); following it needs a context built with BlockwiseMode::Inner"
                .to_owned(),
        )));
    }
    let etag = first.options.get(OptionNumber::ETAG).map(<[u8]>::to_vec);
    let mut template = request.clone();
    for n in [
        OptionNumber::BLOCK1,
        OptionNumber::SIZE1,
        OptionNumber::REQUEST_TAG,
        OptionNumber::ECHO,
    ] {
        template.options.remove(n);
    }
    if !matches!(request.method, Code::GET | Code::FETCH) {
        // RFC 7959 §2.7: the follow-ups of an unsafe request carry no payload.
        template.payload.clear();
        template.options.remove(OptionNumber::CONTENT_FORMAT);
    }
    let mut whole = first;
    whole.options.remove(OptionNumber::BLOCK2);
    let mut szx = block.szx;
    loop {
        if whole.payload.len() > MAX_REASSEMBLED_BODY {
            return Err(Error::new(Kind::Blockwise(
                "the block-wise response exceeds the 16 MiB reassembly limit",
            )));
        }
        let size = 1usize << (szx.min(6) + 4);
        let Some(next) = u32::try_from(whole.payload.len() / size)
            .ok()
            .and_then(|num| BlockValue::new(num, false, szx.min(6)))
        else {
            return Err(Error::new(Kind::Blockwise("block number out of range")));
        };
        let mut buf = [0u8; 4];
        let mut req = template.clone();
        req.options
            .set(OptionNumber::BLOCK2, next.encode(&mut buf).to_vec());
        let part = exchange(client, peer, &req, options, ctx).await?;
        if !part.code.is_success() {
            return Ok(part);
        }
        let Some(got) = block2_of(&part) else {
            return Err(Error::new(Kind::Blockwise(
                "a block of the response came without a Block2 option",
            )));
        };
        if part.options.get(OptionNumber::ETAG) != etag.as_deref()
            || got.offset() != whole.payload.len()
        {
            return Err(Error::new(Kind::Blockwise(
                "the response changed between its blocks",
            )));
        }
        whole.payload.extend_from_slice(&part.payload);
        if !got.more {
            return Ok(whole);
        }
        szx = got.szx.min(szx);
    }
}

fn block2_of(response: &Response) -> Option<BlockValue> {
    response
        .options
        .get(OptionNumber::BLOCK2)
        .and_then(BlockValue::decode)
}

/// The OSCORE side of an [`Observation`](crate::Observation): the registration's
/// context and binding, which verify every notification (RFC 8613 §8.4, §7.4.1), and the
/// inner request (for the deregistration and for completing large notifications).
pub(crate) struct ObserveSecurity {
    ctx: ClientContext,
    binding: RequestBinding,
    /// The inner registration request, without Observe.
    pub(crate) inner: Request,
}

impl ObserveSecurity {
    /// Protects an observe registration (`request` without Observe; Observe = 0 is added
    /// here, inner and outer, §4.1.3.5.1). Returns the outer request to send.
    pub(crate) fn register(
        ctx: ClientContext,
        request: Request,
    ) -> Result<(Request, ObserveSecurity), Error> {
        let mut registration = request.clone();
        registration.options.set_uint(OptionNumber::OBSERVE, 0);
        let (outer, binding) = ctx.protect(&registration)?;
        Ok((
            outer,
            ObserveSecurity {
                ctx,
                binding,
                inner: request,
            },
        ))
    }

    /// Verifies one response of the observation.
    pub(crate) fn open(&mut self, outer: &Response) -> Result<Response, Error> {
        self.ctx.unprotect(&mut self.binding, outer)
    }

    /// Sends `request` (derived from the inner registration) protected with the
    /// observation's context.
    pub(crate) async fn send(
        &self,
        client: &Client,
        peer: SocketAddr,
        request: Request,
        options: RequestOptions,
    ) -> Result<Response, Error> {
        send(client, peer, request, options, &self.ctx).await
    }
}

// ---------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------

/// The OSCORE configuration of a server: its security contexts and the resources that
/// require OSCORE. Install it with [`ServerBuilder::oscore`](crate::ServerBuilder::oscore).
///
/// A request with an OSCORE option is verified against the contexts whatever its target
/// (RFC 8613 §8.2); an unprotected request to a path matching one of the
/// [`require`](Self::require) patterns is answered 4.01 Unauthorized. Patterns are paths
/// (`/a/b`, decoded Uri-Path segments joined with `/`), exact or, with a trailing `*`,
/// as a prefix: `/oscore/*`, or `*` for every resource.
///
/// Authorization per context: a context given patterns with
/// [`authorize`](Self::authorize) reaches the resources that require OSCORE only where
/// one of its patterns matches; elsewhere its verified request is answered with a
/// protected 4.03 Forbidden (RFC 7252 §5.9.2.4: authenticated, not allowed). Resources
/// that do not require OSCORE stay open to it, as they are to everybody. A context
/// without patterns (one added by EDHOC, say) is not restricted.
///
/// ```
/// use corium::corium_oscore::{SecurityContext, SecurityContextSet};
/// use corium::OscoreServer;
///
/// let mut contexts = SecurityContextSet::new(16);
/// contexts.insert(SecurityContext::builder(b"0123456789abcdef", &[], &[0x01]).build()?)?;
/// let oscore = OscoreServer::new(contexts).require("/oscore/*");
/// let builder = corium::Server::builder().oscore(oscore);
/// # let _ = builder;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct OscoreServer {
    contexts: SecurityContextSet,
    required: Vec<Pattern>,
    grants: HashMap<ContextKey, Vec<Pattern>>,
}

impl fmt::Debug for OscoreServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OscoreServer")
            .field("contexts", &self.contexts.len())
            .field("required", &self.required)
            .finish()
    }
}

impl OscoreServer {
    /// Verifies protected requests against `contexts`; no resource requires OSCORE yet.
    pub fn new(contexts: SecurityContextSet) -> OscoreServer {
        OscoreServer {
            contexts,
            required: Vec::new(),
            grants: HashMap::new(),
        }
    }

    /// Requires OSCORE on the resources whose path matches `path_pattern`.
    pub fn require(mut self, path_pattern: &str) -> OscoreServer {
        self.required.push(Pattern(path_pattern.to_owned()));
        self
    }

    /// Lets the context with this Recipient ID and ID Context reach the resources that
    /// require OSCORE and match `path_pattern`; once a context has a pattern, it reaches
    /// no other such resource (a protected 4.03 Forbidden).
    pub fn authorize(
        mut self,
        recipient_id: &[u8],
        id_context: Option<&[u8]>,
        path_pattern: &str,
    ) -> OscoreServer {
        self.grants
            .entry((recipient_id.to_vec(), id_context.map(<[u8]>::to_vec)))
            .or_default()
            .push(Pattern(path_pattern.to_owned()));
        self
    }

    pub(crate) fn into_shared(self) -> Arc<ServerShared> {
        Arc::new(ServerShared {
            state: Mutex::new(ServerContexts {
                set: self.contexts,
                echo: HashMap::new(),
            }),
            required: self.required,
            grants: self.grants,
            edhoc: std::sync::OnceLock::new(),
        })
    }
}

/// The path of a request as the patterns see it: decoded Uri-Path segments, each after
/// a `/`; `/` for none.
fn path_of(request: &Request) -> String {
    let mut path = String::new();
    for segment in request.path_segments() {
        path.push('/');
        path.push_str(&String::from_utf8_lossy(segment));
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

/// What every driver of one server shares.
pub(crate) struct ServerShared {
    state: Mutex<ServerContexts>,
    required: Vec<Pattern>,
    /// The resources each context may reach among the required ones.
    grants: HashMap<ContextKey, Vec<Pattern>>,
    /// The EDHOC responder whose exchanges install contexts here, for the combined
    /// request (RFC 9668 §3.3.1).
    edhoc: std::sync::OnceLock<crate::edhoc::EdhocServer>,
}

impl ServerShared {
    /// Runs `f` on the server's security contexts (for EDHOC, RFC 9528 Appendix A.1).
    pub(crate) fn with_contexts<R>(&self, f: impl FnOnce(&mut SecurityContextSet) -> R) -> R {
        f(&mut lock(&self.state).set)
    }

    /// The EDHOC responder, if one is attached.
    pub(crate) fn edhoc(&self) -> Option<&crate::edhoc::EdhocServer> {
        self.edhoc.get()
    }

    /// Attaches the EDHOC responder (once).
    pub(crate) fn set_edhoc(&self, edhoc: crate::edhoc::EdhocServer) {
        let _ = self.edhoc.set(edhoc);
    }
}

/// A context's Recipient ID and ID Context.
type ContextKey = (Vec<u8>, Option<Vec<u8>>);

struct ServerContexts {
    set: SecurityContextSet,
    /// The Echo value last sent per context (Recipient ID, ID Context) whose replay
    /// window is uninitialised (Appendix B.1.2); at most one per context.
    echo: HashMap<ContextKey, [u8; ECHO_LEN]>,
}

impl ServerShared {
    fn requires(&self, request: &Request) -> bool {
        if self.required.is_empty() {
            return false;
        }
        let path = path_of(request);
        // RFC 9528 Appendix A.2: EDHOC itself runs unprotected.
        if self.edhoc.get().is_some() && path == "/.well-known/edhoc" {
            return false;
        }
        self.required.iter().any(|p| p.matches(&path))
    }

    /// Whether the context of `binding` may have `inner` (see
    /// [`OscoreServer::authorize`]).
    fn authorized(&self, binding: &RequestBinding, inner: &Request) -> bool {
        if self.grants.is_empty() || !self.requires(inner) {
            return true;
        }
        let key = (
            binding.kid().to_vec(),
            binding.id_context().map(<[u8]>::to_vec),
        );
        match self.grants.get(&key) {
            None => true,
            Some(patterns) => {
                let path = path_of(inner);
                patterns.iter().any(|p| p.matches(&path))
            }
        }
    }
}

/// A driver's OSCORE state: the shared contexts and the bindings of the protected
/// requests whose handlers have not answered yet.
pub(crate) struct ServerOscore {
    shared: Arc<ServerShared>,
    /// Critical options the layers above the endpoint process (from the endpoint
    /// configuration), also accepted in inner requests.
    recognized: Vec<OptionNumber>,
    /// Bound by the endpoint's limit of open exchanges: one entry per handler in flight.
    pub(crate) pending: HashMap<IncomingId, Sealer>,
    /// Inner Block1 uploads being reassembled (RFC 8613 §4.1.3.4.1), by context and
    /// request; at most [`MAX_INNER_UPLOADS`].
    uploads: HashMap<Vec<u8>, Upload>,
    /// Largest reassembled body (the endpoint's `max_block1_body`).
    max_body: usize,
    /// Most bytes held by all uploads together (the endpoint's `max_block1_total`).
    max_total: usize,
}

/// Inner uploads one driver reassembles at a time.
const MAX_INNER_UPLOADS: usize = 64;

/// How long an inner upload waits for its next block (RFC 7959 §2.5 leaves it to the
/// server; the endpoint keeps outer uploads as long).
const UPLOAD_LIFETIME: std::time::Duration = std::time::Duration::from_secs(120);

struct Upload {
    body: Vec<u8>,
    expires: std::time::Instant,
}

/// What an inner Block1 block leads to.
enum UploadStep {
    /// Answer this (2.31 Continue, or an error); the upload goes on or is over.
    Respond(Response),
    /// The last block: the request now has the whole body; the final response echoes
    /// this Block1 value.
    Complete(Vec<u8>),
}

/// What the driver does with a request.
pub(crate) enum Accepted {
    /// Not protected and not required to be: route it as it is.
    Plain(Request),
    /// Verified: route the inner request; protect its response with the sealer.
    Protected(Request, Sealer),
    /// Answer this at once (an error, protected or not).
    Respond(Response),
}

/// Critical options of an inner request the runtime processes (RFC 7252 §5.4.1; the
/// endpoint's own list for outer messages).
const INNER_CRITICAL: &[OptionNumber] = &[
    OptionNumber::IF_MATCH,
    OptionNumber::URI_HOST,
    OptionNumber::IF_NONE_MATCH,
    OptionNumber::URI_PORT,
    OptionNumber::URI_PATH,
    OptionNumber::URI_QUERY,
    OptionNumber::ACCEPT,
];

impl ServerOscore {
    pub(crate) fn new(
        shared: Arc<ServerShared>,
        recognized: Vec<OptionNumber>,
        max_body: usize,
        max_total: usize,
    ) -> ServerOscore {
        ServerOscore {
            shared,
            recognized,
            pending: HashMap::new(),
            uploads: HashMap::new(),
            max_body,
            max_total,
        }
    }

    /// One block of an inner Block1 upload (RFC 7959 §2.3, inside OSCORE: RFC 8613
    /// §4.1.3.4.1): blocks must come in order, from block 0.
    fn upload(
        &mut self,
        binding: &RequestBinding,
        inner: &mut Request,
        block: BlockValue,
    ) -> UploadStep {
        let now = std::time::Instant::now();
        self.uploads.retain(|_, u| u.expires > now);
        let mut key = binding.kid().to_vec();
        key.push(0xff);
        if let Some(c) = binding.id_context() {
            key.extend_from_slice(c);
        }
        key.push(0xff);
        key.push(inner.method.0);
        for (n, v) in inner.options.iter() {
            if matches!(
                n,
                OptionNumber::BLOCK1
                    | OptionNumber::SIZE1
                    | OptionNumber::BLOCK2
                    | OptionNumber::ECHO
            ) {
                continue;
            }
            key.extend_from_slice(&n.0.to_be_bytes());
            key.extend_from_slice(&(v.len() as u32).to_be_bytes());
            key.extend_from_slice(v);
        }
        let offset = block.offset();
        let chunk = std::mem::take(&mut inner.payload);
        let body = if offset == 0 {
            self.uploads.remove(&key);
            chunk
        } else {
            match self.uploads.remove(&key) {
                Some(u) if u.body.len() == offset => {
                    let mut body = u.body;
                    body.extend_from_slice(&chunk);
                    body
                }
                _ => {
                    return UploadStep::Respond(Response::with_payload(
                        Code::REQUEST_ENTITY_INCOMPLETE,
                        "Block out of order",
                    ))
                }
            }
        };
        if body.len() > self.max_body {
            let mut r = Response::new(Code::REQUEST_ENTITY_TOO_LARGE);
            r.options.push_uint(
                OptionNumber::SIZE1,
                u32::try_from(self.max_body).unwrap_or(u32::MAX),
            );
            return UploadStep::Respond(r);
        }
        let mut buf = [0u8; 4];
        if block.more {
            let held: usize = self.uploads.values().map(|u| u.body.len()).sum();
            if self.uploads.len() >= MAX_INNER_UPLOADS || held + body.len() > self.max_total {
                return UploadStep::Respond(Response::new(Code::SERVICE_UNAVAILABLE));
            }
            self.uploads.insert(
                key,
                Upload {
                    body,
                    expires: now + UPLOAD_LIFETIME,
                },
            );
            let mut r = Response::new(Code::CONTINUE);
            r.options
                .push(OptionNumber::BLOCK1, block.encode(&mut buf).to_vec());
            return UploadStep::Respond(r);
        }
        inner.payload = body;
        inner.options.remove(OptionNumber::BLOCK1);
        inner.options.remove(OptionNumber::SIZE1);
        UploadStep::Complete(block.encode(&mut buf).to_vec())
    }

    /// Verifies a request that carries the OSCORE option, or checks that an unprotected
    /// one may go where it goes.
    pub(crate) fn accept(&mut self, mut request: Request) -> Accepted {
        if request.options.contains(OptionNumber::EDHOC) {
            // RFC 9668 §3.3.1: complete EDHOC with the message_3 the request carries.
            if !request.options.contains(OptionNumber::OSCORE) {
                return Accepted::Respond(Response::with_payload(
                    Code::BAD_REQUEST,
                    "EDHOC option without OSCORE",
                ));
            }
            request = match crate::edhoc::combined(&self.shared, request) {
                Ok(request) => request,
                Err(response) => return Accepted::Respond(response),
            };
        }
        if !request.options.contains(OptionNumber::OSCORE) {
            if self.shared.requires(&request) {
                return Accepted::Respond(Response::with_payload(
                    Code::UNAUTHORIZED,
                    "OSCORE required",
                ));
            }
            return Accepted::Plain(request);
        }
        let mut state = lock(&self.shared.state);
        let ServerContexts { set, echo } = &mut *state;
        let (mut inner, binding) = match unprotect_request(set, &request) {
            Ok(verified) => verified,
            Err(UnprotectError::FreshnessUnverified(mut pending)) => {
                // Appendix B.1.2: the window was lost; the request is fresh once it
                // returns the Echo value sent to this context.
                let b = pending.binding_mut();
                let key = (b.kid().to_vec(), b.id_context().map(<[u8]>::to_vec));
                let Some(ctx) = set.for_binding(b) else {
                    return Accepted::Respond(UnprotectError::UnknownContext.error_response());
                };
                let answered = pending.request().options.get(OptionNumber::ECHO);
                if answered.is_some() && answered == echo.get(&key).map(|e| &e[..]) {
                    echo.remove(&key);
                    match ctx.confirm_freshness(pending) {
                        Ok(verified) => verified,
                        Err(e) => return Accepted::Respond(e.error_response()),
                    }
                } else {
                    let value: [u8; ECHO_LEN] = rand::random();
                    echo.insert(key, value);
                    return Accepted::Respond(match ctx.echo_challenge(&mut pending, &value) {
                        Ok(challenge) => challenge,
                        Err(e) => {
                            tracing::error!(%e, "OSCORE: cannot protect the Echo challenge");
                            Response::new(Code::INTERNAL_SERVER_ERROR)
                        }
                    });
                }
            }
            Err(e) => {
                tracing::debug!(%e, "OSCORE: request not verified");
                return Accepted::Respond(e.error_response());
            }
        };
        drop(state);
        let mut sealer = Sealer {
            shared: Arc::clone(&self.shared),
            binding,
            block1: None,
        };
        if !self.shared.authorized(&sealer.binding, &inner) {
            let r = Response::with_payload(Code::FORBIDDEN, "Not allowed for this context");
            return Accepted::Respond(sealer.seal(r));
        }
        if inner.options.contains(OptionNumber::BLOCK1) {
            let Some(block) = inner
                .options
                .get(OptionNumber::BLOCK1)
                .and_then(BlockValue::decode)
            else {
                let r = Response::with_payload(Code::BAD_REQUEST, "Invalid Block1");
                return Accepted::Respond(sealer.seal(r));
            };
            match self.upload(&sealer.binding, &mut inner, block) {
                UploadStep::Respond(r) => return Accepted::Respond(sealer.seal(r)),
                UploadStep::Complete(value) => sealer.block1 = Some(value),
            }
        }
        // RFC 7252 §5.4.1 for the inner message: the endpoint only checked the outer one.
        // Inner Block2 0 (early size negotiation) is ignored: the whole response is
        // protected and the endpoint cuts the protected message into outer blocks.
        if block2_of_request(&inner).is_some_and(|b| b.num == 0) {
            inner.options.remove(OptionNumber::BLOCK2);
        }
        let unsupported = inner.options.iter().map(|(n, _)| n).find(|n| {
            n.is_critical() && !INNER_CRITICAL.contains(n) && !self.recognized.contains(n)
        });
        if let Some(n) = unsupported {
            let (code, text) = if n == OptionNumber::PROXY_URI || n == OptionNumber::PROXY_SCHEME {
                (Code::PROXYING_NOT_SUPPORTED, "Proxying not supported")
            } else if n == OptionNumber::BLOCK2 {
                (Code::BAD_OPTION, "Inner Block2 not supported")
            } else {
                (Code::BAD_OPTION, "Unrecognized critical option")
            };
            return Accepted::Respond(sealer.seal(Response::with_payload(code, text)));
        }
        Accepted::Protected(inner, sealer)
    }
}

fn block2_of_request(request: &Request) -> Option<BlockValue> {
    request
        .options
        .get(OptionNumber::BLOCK2)
        .and_then(BlockValue::decode)
}

/// Protects the responses to one verified request (RFC 8613 §8.3) with the context it
/// was verified with.
pub(crate) struct Sealer {
    shared: Arc<ServerShared>,
    binding: RequestBinding,
    /// The Block1 value the final response of an inner upload echoes (RFC 7959 §2.3).
    block1: Option<Vec<u8>>,
}

impl Sealer {
    /// The context that verified the request ([`RequestContext::oscore`](crate::RequestContext::oscore)).
    pub(crate) fn identity(&self) -> crate::OscoreIdentity {
        crate::OscoreIdentity {
            sender_id: self.binding.kid().into(),
            id_context: self.binding.id_context().map(Into::into),
        }
    }

    fn protect(&mut self, response: &Response) -> Option<Response> {
        let mut state = lock(&self.shared.state);
        let Some(ctx) = state.set.for_binding(&self.binding) else {
            tracing::error!("OSCORE: the request's security context is gone");
            return None;
        };
        // The request's nonce serves the first response only (§5.2, §8.3.1).
        let fresh = self.binding.request_nonce_used();
        match ctx.protect_response(&mut self.binding, response, fresh) {
            Ok(outer) => Some(outer),
            Err(e) => {
                tracing::error!(%e, "OSCORE: cannot protect the response");
                None
            }
        }
    }

    /// Protects a response that ends the exchange (no Observe); an unprotected 5.00 if
    /// that fails (sequence numbers exhausted, persistence failed).
    pub(crate) fn seal(&mut self, mut response: Response) -> Response {
        response.options.remove(OptionNumber::OBSERVE);
        if let Some(block1) = self.block1.take() {
            response.options.set(OptionNumber::BLOCK1, block1);
        }
        self.protect(&response)
            .unwrap_or_else(|| Response::new(Code::INTERNAL_SERVER_ERROR))
    }

    /// Protects a notification (or the answer to a registration) of an observation
    /// (§4.1.3.5.2): a 2.xx gets Observe (the endpoint sets the outer value), anything
    /// else ends the observation and goes without Observe. `None` when it cannot be
    /// protected: the relation must end.
    pub(crate) fn seal_notification(&mut self, response: &Response) -> Option<Response> {
        let mut r = response.clone();
        if r.code.is_success() {
            r.options.set_uint(OptionNumber::OBSERVE, 0);
        } else {
            r.options.remove(OptionNumber::OBSERVE);
        }
        self.protect(&r)
    }
}

// ---------------------------------------------------------------------------------------
// Sequence number persistence (Appendix B.1.1)
// ---------------------------------------------------------------------------------------

/// A file of Sender Sequence Number bounds, one per security context (RFC 8613
/// Appendix B.1.1), written atomically: a temporary file next to it is written and
/// synced, renamed over it, and the directory synced.
///
/// The format is one line per context, `s=<sender ID hex>,r=<recipient ID hex>,c=<ID
/// Context hex or ->` followed by a space and the bound (every number below it may have
/// been used). Clones share the file.
#[derive(Clone)]
pub struct SequenceFile {
    inner: Arc<SequenceFileInner>,
}

struct SequenceFileInner {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, u64>>,
}

impl fmt::Debug for SequenceFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SequenceFile")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SequenceFile {
    /// Reads the file at `path`; a missing file is an empty one (every context starts
    /// at 0). Nothing is written until a context needs a new bound.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<SequenceFile> {
        let path = path.into();
        let mut entries = BTreeMap::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for (i, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let parsed = line
                        .split_once(' ')
                        .and_then(|(k, v)| Some((k.to_owned(), v.trim().parse::<u64>().ok()?)));
                    let Some((key, bound)) = parsed else {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{}: line {}: not `KEY BOUND`", path.display(), i + 1),
                        ));
                    };
                    entries.insert(key, bound);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(SequenceFile {
            inner: Arc::new(SequenceFileInner {
                path,
                entries: Mutex::new(entries),
            }),
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The key of a context in the file.
    pub fn key(sender_id: &[u8], recipient_id: &[u8], id_context: Option<&[u8]>) -> String {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        format!(
            "s={},r={},c={}",
            hex(sender_id),
            hex(recipient_id),
            id_context.map_or_else(|| "-".to_owned(), hex)
        )
    }

    /// The stored bound of a context, if it ever stored one.
    pub fn bound(&self, key: &str) -> Option<u64> {
        lock(&self.inner.entries).get(key).copied()
    }

    /// Makes `builder`'s context persist its sequence numbers here under `key` (see
    /// [`key`](Self::key)).
    ///
    /// A context with an entry was used before: it resumes after its stored bound
    /// ([`SecurityContextBuilder::resume_after_reboot`] with [`REBOOT_MARGIN`]), and its
    /// replay window starts uninitialised (Appendix B.1.2: the requests it accepted
    /// before are unknown, so freshness is established with Echo). A context without
    /// one is taken as new and gets an entry (bound 0) at once, so that the next start
    /// treats it as used even if it never sent a Partial IV of its own. Fails when that
    /// entry cannot be written.
    pub fn apply(
        &self,
        builder: SecurityContextBuilder,
        key: &str,
    ) -> io::Result<SecurityContextBuilder> {
        let builder = match self.bound(key) {
            Some(bound) => builder.resume_after_reboot(bound, REBOOT_MARGIN),
            None => {
                self.store(key, 0)?;
                builder
            }
        };
        Ok(builder.sequence_store(
            Box::new(FileStore {
                file: self.clone(),
                key: key.to_owned(),
            }),
            PERSIST_STEP,
        ))
    }

    fn store(&self, key: &str, bound: u64) -> io::Result<()> {
        let mut entries = lock(&self.inner.entries);
        let previous = entries.insert(key.to_owned(), bound);
        let mut text = String::from(
            "# corium OSCORE sender sequence number bounds (RFC 8613 Appendix B.1.1); do not edit\n",
        );
        for (k, v) in entries.iter() {
            text.push_str(&format!("{k} {v}\n"));
        }
        let result = write_atomically(&self.inner.path, text.as_bytes());
        if result.is_err() {
            match previous {
                Some(p) => entries.insert(key.to_owned(), p),
                None => entries.remove(key),
            };
        }
        result
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, renames it to `path` and
/// syncs the directory, so that `path` holds either the old or the new content.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Directories cannot be opened for syncing everywhere; where they can, the rename
    // is made durable.
    if let Ok(d) = std::fs::File::open(dir) {
        d.sync_all()?;
    }
    Ok(())
}

struct FileStore {
    file: SequenceFile,
    key: String,
}

impl SequenceStore for FileStore {
    fn persist(&mut self, next_unused_upper_bound: u64) -> Result<(), PersistError> {
        self.file
            .store(&self.key, next_unused_upper_bound)
            .map_err(|e| {
                tracing::error!(path = %self.file.path().display(), %e, "OSCORE: cannot persist the sequence number");
                PersistError
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = Pattern("coap://h/oscore/*".into());
        assert!(p.matches("coap://h/oscore/x"));
        assert!(p.matches("coap://h/oscore/"));
        assert!(!p.matches("coap://h/oscore"));
        let exact = Pattern("/x".into());
        assert!(exact.matches("/x") && !exact.matches("/xy"));
        assert!(Pattern("*".into()).matches("anything"));
        // The default port is the same as none (RFC 7252 §6.3).
        let p = Pattern("coap://h/*".into());
        assert!(p.matches("coap://h:5683/x") && p.matches("coap://h/x"));
        assert!(!p.matches("coap://h:5684/x"));
        let p = Pattern("coap://h:5683/x".into());
        assert!(p.matches("coap://h/x"));
        assert!(Pattern("coap://h:5683*".into()).matches("coap://h/y"));
        assert_eq!(
            without_default_port("coap://[::1]:5683?q"),
            "coap://[::1]?q"
        );
        assert_eq!(without_default_port("coaps://h:5683/"), "coaps://h:5683/");
    }

    #[test]
    fn longest_pattern_wins() {
        let ctx = |s: u8| {
            SecurityContext::builder(b"secret", &[s], &[0xff])
                .build()
                .unwrap()
        };
        let client = OscoreClient::new()
            .context("coap://h/*", ctx(1))
            .context("coap://h/a/*", ctx(2));
        let pick = |uri: &str| {
            client
                .context_for(uri)
                .map(|c| lock(&c.0).sender_id().to_vec())
        };
        assert_eq!(pick("coap://h/a/b"), Some(vec![2]));
        assert_eq!(pick("coap://h/b"), Some(vec![1]));
        assert_eq!(pick("coap://other/b"), None);
    }

    #[test]
    fn sequence_file_round_trip() {
        let dir = std::env::temp_dir().join(format!("corium-seq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("creds.toml.seq");
        let _ = std::fs::remove_file(&path);
        let key = SequenceFile::key(&[1], &[], None);
        assert_eq!(key, "s=01,r=,c=-");
        {
            let file = SequenceFile::open(&path).unwrap();
            assert_eq!(file.bound(&key), None);
            let mut ctx = file
                .apply(SecurityContext::builder(b"secret", &[1], &[]), &key)
                .unwrap()
                .build()
                .unwrap();
            assert_eq!(
                file.bound(&key),
                Some(0),
                "a new context is recorded at once"
            );
            assert_eq!(ctx.replay_window_state(), corium_oscore::WindowState::Ready);
            let mut r = Request::new(Code::GET);
            r.set_path("/x");
            ctx.protect_request(&r).unwrap();
            assert_eq!(file.bound(&key), Some(PERSIST_STEP));
        }
        // A restart resumes after the bound.
        let file = SequenceFile::open(&path).unwrap();
        assert_eq!(file.bound(&key), Some(PERSIST_STEP));
        let ctx = file
            .apply(SecurityContext::builder(b"secret", &[1], &[]), &key)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(ctx.sender_sequence_number(), PERSIST_STEP + REBOOT_MARGIN);
        assert_eq!(
            ctx.replay_window_state(),
            corium_oscore::WindowState::Uninitialised
        );
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(SequenceFile::open(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
