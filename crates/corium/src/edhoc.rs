//! EDHOC (RFC 9528) in the runtime: a server answers EDHOC at `/.well-known/edhoc` and
//! turns every completed exchange into an OSCORE security context (Appendix A.1, A.2);
//! a client runs the initiator against a server with two POSTs.
//!
//! The protocol steps are [`corium_edhoc`] (lakers: cipher suite 2, method 3).
//!
//! # Server
//!
//! ```text
//!  POST /.well-known/edhoc  payload 0xf5 || message_1
//!    │ pending table full (max_pending)? → 5.03 Service Unavailable + Max-Age
//!    │ pick C_R: unused by pending exchanges and by the server's OSCORE contexts,
//!    │ different from C_I; process message_1, prepare message_2
//!    ▼ 2.04 message_2        (the state waits in the table under C_R, pending_timeout)
//!  POST /.well-known/edhoc  payload C_R || message_3
//!    │ the state of C_R (taken out: a replayed message_3 finds nothing)
//!    │ verify message_3 against the configured initiator credentials
//!    │ install the OSCORE context (Recipient ID C_R, Sender ID C_I) in the server's
//!    │ contexts; beyond max_sessions the oldest EDHOC-derived context goes
//!    ▼ 2.04 message_4
//!  or (RFC 9668 §3.3.1) the first OSCORE request with the EDHOC option: payload
//!  message_3 || OSCORE ciphertext, kid = C_R → the same verification and
//!  installation, then the request is verified with the new context as usual.
//! ```
//!
//! Every failure is answered 4.00 with an EDHOC error message (RFC 9528 §6, Appendix
//! A.2), Content-Format `application/edhoc+cbor-seq`.
//!
//! ```
//! use corium::edhoc::EdhocServer;
//! use corium_edhoc::{OwnCredential, PeerCredentials, Responder};
//!
//! let (key, ccs) = OwnCredential::generate(b"R", "server")?;
//! let (_, client_ccs) = OwnCredential::generate(b"I", "client")?;
//! let responder = Responder::new(
//!     OwnCredential::new(&key, &ccs)?,
//!     PeerCredentials::new().with_ccs(&client_ccs)?,
//! );
//! let edhoc = EdhocServer::new(responder);
//! let builder = corium::Server::builder().edhoc(&edhoc);
//! let router = corium::Router::new().route("/.well-known/edhoc", edhoc.resource());
//! # let _ = (builder, router);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Client
//!
//! [`establish`] POSTs message_1 and message_3 to `<base>/.well-known/edhoc` and returns
//! the [`Session`]; build a client with its OSCORE context
//! ([`Session::oscore_context`], [`OscoreClient`](crate::OscoreClient)) for the URIs of
//! that server. Or, for the combined request (RFC 9668), [`establish_combined`] POSTs
//! message_1 only and returns message_3 with the session;
//! [`OscoreClient::edhoc_context`](crate::OscoreClient::edhoc_context) sends it with the
//! first protected request.
//!
//! # Restarts
//!
//! EDHOC-derived OSCORE contexts live in memory only, on both sides, and that is what
//! keeps them safe across restarts without the sequence-number persistence of RFC 8613
//! Appendix B.1.1 (which [`SequenceFile`](crate::SequenceFile) does for configured
//! contexts): their Master Secret and Salt come from the exchange's ephemeral
//! Diffie-Hellman keys (RFC 9528 §4.1, Appendix A.1), which are never stored, so no
//! process can ever build the same context again, and a fresh context after a restart
//! has fresh keys, under which sequence number 0 is a new nonce. A restarted server has
//! no EDHOC contexts: a client still holding one gets an unprotected 4.01 (kid unknown)
//! or 4.00 (the kid now names a newer context it cannot decrypt for, RFC 8613 §8.2),
//! never a resource, and has to run EDHOC again; a restarted client runs EDHOC anew
//! anyway. (aiocoap does not persist them either.)

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use corium_edhoc::coap::{self as framing, RequestPayload};
use corium_edhoc::{Initiator, Responder, ResponderWaitM3, Session};
use corium_oscore::{OscoreOption, SecurityContextSet};
use corium_proto::wire::{Code, OptionNumber};
use corium_proto::{Request, Response};

use crate::error::{Error, Kind};
use crate::oscore::ServerShared;
use crate::resource::Resource;

pub use corium_edhoc;

/// Default for [`EdhocServer::max_pending`]: exchanges between message_1 and
/// message_3 at a time. A message_1 flood fills it and is then answered 5.03.
pub const DEFAULT_MAX_PENDING: usize = 32;

/// Default for [`EdhocServer::pending_timeout`]: how long a responder waits for
/// message_3.
pub const DEFAULT_PENDING_TIMEOUT: Duration = Duration::from_secs(60);

/// Default for [`EdhocServer::max_sessions`]: OSCORE contexts derived with EDHOC kept
/// at a time (the oldest is dropped for a new one).
pub const DEFAULT_MAX_SESSIONS: usize = 64;

/// Limit of the OSCORE context set a server gets when EDHOC is configured without
/// [`ServerBuilder::oscore`](crate::ServerBuilder::oscore).
pub const DEFAULT_CONTEXT_LIMIT: usize = DEFAULT_MAX_SESSIONS + 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The EDHOC responder of a server: install it with
/// [`ServerBuilder::edhoc`](crate::ServerBuilder::edhoc) and route its
/// [`resource`](Self::resource) at `/.well-known/edhoc`. Cloning shares the state; set
/// the limits ([`max_pending`](Self::max_pending) etc.) before cloning it, since a
/// limit set on a shared value applies to a fresh copy only.
///
/// message_1 is processed while holding the table's lock (a few P-256 operations), so
/// concurrent message_1s are handled one at a time; the table never holds more than
/// `max_pending` exchanges.
#[derive(Clone)]
pub struct EdhocServer {
    inner: Arc<Inner>,
}

struct Inner {
    responder: Responder,
    max_pending: usize,
    pending_timeout: Duration,
    max_sessions: usize,
    state: Mutex<State>,
    oscore: OnceLock<Arc<ServerShared>>,
}

#[derive(Default)]
struct State {
    /// Exchanges waiting for message_3, by C_R; at most `max_pending`.
    pending: HashMap<Vec<u8>, Pending>,
    /// The Recipient IDs (C_R) of the installed contexts, oldest first; at most
    /// `max_sessions`.
    installed: VecDeque<Vec<u8>>,
}

struct Pending {
    wait: ResponderWaitM3,
    expires: Instant,
}

impl fmt::Debug for EdhocServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.inner.state);
        f.debug_struct("EdhocServer")
            .field("pending", &state.pending.len())
            .field("installed", &state.installed.len())
            .finish_non_exhaustive()
    }
}

/// Why a request to `/.well-known/edhoc` or a combined request failed: the response.
fn edhoc_error(e: &corium_edhoc::Error) -> Response {
    let mut r = Response::new(Code::BAD_REQUEST);
    r.options.push_uint(
        OptionNumber::CONTENT_FORMAT,
        u32::from(framing::CONTENT_FORMAT_EDHOC),
    );
    r.payload = e.edhoc_error_message();
    r
}

fn edhoc_response(payload: Vec<u8>) -> Response {
    let mut r = Response::new(Code::CHANGED);
    r.options.push_uint(
        OptionNumber::CONTENT_FORMAT,
        u32::from(framing::CONTENT_FORMAT_EDHOC),
    );
    r.payload = payload;
    r
}

impl EdhocServer {
    /// A server side answering with `responder` (its credential and the initiators it
    /// accepts), with the default limits.
    pub fn new(responder: Responder) -> EdhocServer {
        EdhocServer {
            inner: Arc::new(Inner {
                responder,
                max_pending: DEFAULT_MAX_PENDING,
                pending_timeout: DEFAULT_PENDING_TIMEOUT,
                max_sessions: DEFAULT_MAX_SESSIONS,
                state: Mutex::new(State::default()),
                oscore: OnceLock::new(),
            }),
        }
    }

    fn with(self, f: impl FnOnce(&mut Inner)) -> EdhocServer {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            responder: shared.responder.clone(),
            max_pending: shared.max_pending,
            pending_timeout: shared.pending_timeout,
            max_sessions: shared.max_sessions,
            state: Mutex::new(State::default()),
            oscore: OnceLock::new(),
        });
        f(&mut inner);
        EdhocServer {
            inner: Arc::new(inner),
        }
    }

    /// Exchanges waiting for message_3 at most (default [`DEFAULT_MAX_PENDING`]).
    pub fn max_pending(self, n: usize) -> EdhocServer {
        self.with(|i| i.max_pending = n.max(1))
    }

    /// How long an exchange waits for message_3 (default
    /// [`DEFAULT_PENDING_TIMEOUT`]).
    pub fn pending_timeout(self, d: Duration) -> EdhocServer {
        self.with(|i| i.pending_timeout = d)
    }

    /// EDHOC-derived OSCORE contexts kept at most (default [`DEFAULT_MAX_SESSIONS`]).
    pub fn max_sessions(self, n: usize) -> EdhocServer {
        self.with(|i| i.max_sessions = n.max(1))
    }

    /// Exchanges waiting for message_3 now.
    pub fn pending(&self) -> usize {
        lock(&self.inner.state).pending.len()
    }

    /// OSCORE contexts derived with EDHOC and still installed.
    pub fn sessions(&self) -> usize {
        lock(&self.inner.state).installed.len()
    }

    /// The resource to route at `/.well-known/edhoc` (POST only, not listed in
    /// `/.well-known/core`).
    pub fn resource(&self) -> Resource {
        let this = self.clone();
        Resource::new()
            .post(move |ctx: crate::RequestContext| {
                let this = this.clone();
                async move { this.handle(&ctx.request) }
            })
            .hidden()
    }

    /// Connects to the server's OSCORE contexts (once; later calls are ignored).
    pub(crate) fn attach(&self, shared: &Arc<ServerShared>) {
        let _ = self.inner.oscore.set(Arc::clone(shared));
    }

    /// Answers one POST to `/.well-known/edhoc` (RFC 9528 Appendix A.2).
    fn handle(&self, request: &Request) -> Response {
        match framing::parse_request(&request.payload) {
            Err(e) => edhoc_error(&e),
            Ok(RequestPayload::Message1(m1)) => self.message_1(m1),
            Ok(RequestPayload::Message3 { c_r, message_3 }) => {
                match self.message_3(&c_r, message_3) {
                    Ok(message_4) => edhoc_response(message_4),
                    Err(e) => edhoc_error(&e),
                }
            }
        }
    }

    fn message_1(&self, m1: &[u8]) -> Response {
        let Some(c_i) = corium_edhoc::message_1_c_i(m1) else {
            return edhoc_error(&corium_edhoc::Error::Malformed);
        };
        let now = Instant::now();
        let mut state = lock(&self.inner.state);
        state.pending.retain(|_, p| p.expires > now);
        if state.pending.len() >= self.inner.max_pending {
            let wait = state
                .pending
                .values()
                .map(|p| p.expires.saturating_duration_since(now))
                .min()
                .unwrap_or(self.inner.pending_timeout);
            let mut r = Response::new(Code::SERVICE_UNAVAILABLE);
            r.options.push_uint(
                OptionNumber::MAX_AGE,
                u32::try_from(wait.as_secs() + 1).unwrap_or(u32::MAX),
            );
            tracing::debug!("EDHOC: too many pending exchanges, message_1 refused");
            return r;
        }
        let Some(c_r) = self.pick_c_r(&state, &c_i) else {
            return Response::new(Code::SERVICE_UNAVAILABLE);
        };
        match self.inner.responder.process_message_1(m1, &c_r) {
            Ok((wait, message_2)) => {
                state.pending.insert(
                    c_r,
                    Pending {
                        wait,
                        expires: now + self.inner.pending_timeout,
                    },
                );
                edhoc_response(message_2)
            }
            Err(e) => {
                tracing::debug!(%e, "EDHOC: message_1 refused");
                edhoc_error(&e)
            }
        }
    }

    /// A C_R not used by a pending exchange nor as Recipient ID of an OSCORE context,
    /// different from C_I: one of the 48 compact one-byte identifiers if one is free,
    /// else two random bytes (RFC 9528 §3.3.2).
    fn pick_c_r(&self, state: &State, c_i: &[u8]) -> Option<Vec<u8>> {
        let in_use = |id: &[u8]| {
            id == c_i
                || state.pending.contains_key(id)
                || self
                    .inner
                    .oscore
                    .get()
                    .is_some_and(|s| s.with_contexts(|set| has_recipient(set, id)))
        };
        let start: u8 = rand::random::<u8>() % 48;
        for k in 0..48u8 {
            let n = (start + k) % 48;
            let b = if n < 24 { n } else { 0x20 + (n - 24) };
            if !in_use(&[b]) {
                return Some(vec![b]);
            }
        }
        (0..16)
            .map(|_| rand::random::<[u8; 2]>().to_vec())
            .find(|id| !in_use(id))
    }

    /// Verifies message_3 for the exchange of `c_r` and installs the OSCORE context;
    /// returns message_4.
    fn message_3(&self, c_r: &[u8], m3: &[u8]) -> Result<Vec<u8>, corium_edhoc::Error> {
        let now = Instant::now();
        let pending = {
            let mut state = lock(&self.inner.state);
            state.pending.retain(|_, p| p.expires > now);
            state.pending.remove(c_r)
        };
        let Some(pending) = pending else {
            tracing::debug!(?c_r, "EDHOC: message_3 for no pending exchange");
            return Err(corium_edhoc::Error::Protocol("no pending exchange for C_R"));
        };
        let (session, message_4) = pending.wait.process_message_3(m3).inspect_err(|e| {
            tracing::debug!(%e, "EDHOC: message_3 refused");
        })?;
        self.install(&session)?;
        Ok(message_4)
    }

    /// Puts the session's OSCORE context into the server's contexts (RFC 9528
    /// Appendix A.1), dropping the oldest EDHOC-derived one beyond `max_sessions` or
    /// when the set is full.
    fn install(&self, session: &Session) -> Result<(), corium_edhoc::Error> {
        let Some(shared) = self.inner.oscore.get() else {
            return Err(corium_edhoc::Error::Protocol("EDHOC server not attached"));
        };
        let ctx = session
            .oscore_context()
            .build()
            .map_err(|_| corium_edhoc::Error::Protocol("cannot derive the OSCORE context"))?;
        let rid = session.recipient_id().to_vec();
        let mut state = lock(&self.inner.state);
        shared.with_contexts(|set| {
            set.remove(&rid, None);
            state.installed.retain(|r| *r != rid);
            while state.installed.len() >= self.inner.max_sessions {
                if let Some(old) = state.installed.pop_front() {
                    set.remove(&old, None);
                }
            }
            let mut ctx = Some(ctx);
            loop {
                let Some(c) = ctx.take() else { break };
                match set.insert(c) {
                    Ok(()) => break,
                    Err(_) => {
                        // Full: make room by dropping the oldest EDHOC context.
                        let Some(old) = state.installed.pop_front() else {
                            return Err(corium_edhoc::Error::Protocol(
                                "no room for another OSCORE context",
                            ));
                        };
                        set.remove(&old, None);
                        ctx = Some(
                            session
                                .oscore_context()
                                .build()
                                .map_err(|_| corium_edhoc::Error::Protocol("derivation"))?,
                        );
                    }
                }
            }
            state.installed.push_back(rid.clone());
            tracing::debug!(recipient_id = ?rid, "EDHOC: OSCORE context installed");
            Ok(())
        })
    }
}

fn has_recipient(set: &SecurityContextSet, id: &[u8]) -> bool {
    set.iter().any(|c| c.recipient_id() == id)
}

/// The combined EDHOC + OSCORE request (RFC 9668 §3.3.1): completes the exchange of the
/// OSCORE kid (C_R) with the message_3 at the start of the payload and returns the
/// OSCORE request without the EDHOC option and message_3, for the usual verification.
pub(crate) fn combined(shared: &ServerShared, mut request: Request) -> Result<Request, Response> {
    let Some(edhoc) = shared.edhoc() else {
        // RFC 7252 §5.4.1: an unrecognised critical option.
        return Err(Response::with_payload(
            Code::BAD_OPTION,
            "EDHOC option not supported",
        ));
    };
    let kid = request
        .options
        .get(OptionNumber::OSCORE)
        .and_then(|v| OscoreOption::decode(v).ok())
        .and_then(|o| o.kid.map(<[u8]>::to_vec));
    let Some(c_r) = kid else {
        return Err(edhoc_error(&corium_edhoc::Error::InvalidConnectionId));
    };
    let (message_3, ciphertext) =
        framing::split_combined_payload(&request.payload).map_err(|e| edhoc_error(&e))?;
    let ciphertext = ciphertext.to_vec();
    // RFC 9668 §3.3.1 step 3: message_4 is not sent.
    edhoc
        .message_3(&c_r, message_3)
        .map_err(|e| edhoc_error(&e))?;
    request.options.remove(OptionNumber::EDHOC);
    request.payload = ciphertext;
    Ok(request)
}

/// Runs the initiator against the server at `base` (`coap://host:port`, without a
/// path) over `client`: message_1 and message_3 in two POSTs to
/// `<base>/.well-known/edhoc` (RFC 9528 Appendix A.2), message_4 verified when the
/// server sends one. Returns the session to derive the OSCORE context from.
pub async fn establish(
    client: &crate::Client,
    base: &str,
    initiator: &Initiator,
) -> Result<Session, Error> {
    let uri = format!("{}/.well-known/edhoc", base.trim_end_matches('/'));
    let (wait_m4, message_3) = first_round_trip(client, &uri, initiator).await?;
    let payload =
        framing::message_3_request(wait_m4.c_r(), &message_3).map_err(|e| fail("C_R", &e))?;
    let response = client.post(&uri, payload).await?;
    check_response(&response, "message_3")?;
    if response.payload.is_empty() {
        wait_m4.session().map_err(|e| fail("completion", &e))
    } else {
        wait_m4
            .process_message_4(&response.payload)
            .map_err(|e| fail("message_4", &e))
    }
}

fn fail(what: &str, e: &dyn fmt::Display) -> Error {
    Error::new(Kind::Oscore(format!("EDHOC {what}: {e}")))
}

/// message_1 out, message_2 in and verified: the initiator's state and message_3.
async fn first_round_trip(
    client: &crate::Client,
    uri: &str,
    initiator: &Initiator,
) -> Result<(corium_edhoc::InitiatorWaitM4, Vec<u8>), Error> {
    let (wait_m2, message_1) = initiator
        .message_1(None)
        .map_err(|e| fail("message_1", &e))?;
    let response = client
        .post(uri, framing::message_1_request(&message_1))
        .await?;
    check_response(&response, "message_1")?;
    wait_m2
        .process_message_2(&response.payload)
        .map_err(|e| fail("message_2", &e))
}

/// The first half of EDHOC for the combined request (RFC 9668 §3.2.1): message_1 in
/// one POST to `<base>/.well-known/edhoc`, message_2 verified. Returns the session
/// (complete on the initiator's side, RFC 9528 §5.4.2; the server is authenticated
/// once its first protected response verifies) and message_3, which
/// [`OscoreClient::edhoc_context`](crate::OscoreClient::edhoc_context) sends with the
/// first OSCORE request.
pub async fn establish_combined(
    client: &crate::Client,
    base: &str,
    initiator: &Initiator,
) -> Result<(Session, Vec<u8>), Error> {
    let uri = format!("{}/.well-known/edhoc", base.trim_end_matches('/'));
    let (wait_m4, message_3) = first_round_trip(client, &uri, initiator).await?;
    let session = wait_m4.session().map_err(|e| fail("completion", &e))?;
    Ok((session, message_3))
}

fn check_response(response: &Response, step: &str) -> Result<(), Error> {
    if response.code.is_success() {
        return Ok(());
    }
    let detail = match response.payload.as_slice() {
        [0x03, ..] => " (EDHOC error: unknown credential referenced)".to_owned(),
        [0x01, rest @ ..] => format!(
            " (EDHOC error: {})",
            String::from_utf8_lossy(rest.get(1..).unwrap_or_default())
        ),
        [0x02, ..] => " (EDHOC error: wrong selected cipher suite)".to_owned(),
        _ => String::new(),
    };
    Err(Error::new(Kind::Oscore(format!(
        "EDHOC: the server answered {step} with {:?}{detail}",
        response.code
    ))))
}
