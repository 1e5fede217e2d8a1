//! `corium-oscore`: Object Security for Constrained RESTful Environments (OSCORE,
//! RFC 8613) over the owned messages of `corium-proto`.
//!
//! OSCORE protects the request/response layer end to end: the Code, the payload and the
//! Class E options of a CoAP message are encrypted into a COSE_Encrypt0 object that
//! travels as the payload of an "outer" CoAP message, whose header fields and Class U
//! options stay visible to proxies. This crate is sans-IO and `no_std` (with `alloc`):
//! it turns [`Request`]s and [`Response`]s into their protected forms and back, and keeps
//! the per-context state (sequence numbers, replay window). Token, message ID and
//! message type are not part of these types and are untouched: they belong to the
//! endpoint (§4.2).
//!
//! # Data flow
//!
//! ```text
//!  client                                                       server
//!  ──────                                                       ──────
//!  Request ─► ctx.protect_request ─► (outer Request, binding)
//!             │ plaintext = Code ‖ Inner options ‖ 0xff ‖ payload          (§5.3)
//!             │ Partial IV = Sender Sequence Number++ (persisted, B.1.1)   (§8.1)
//!             │ nonce = (S ‖ ID_PIV ‖ PIV) ⊕ Common IV                     (§5.2)
//!             │ AAD = ["Encrypt0", h'', bstr([1, [alg], kid, piv, h''])]   (§5.4)
//!             │ OSCORE option = flags ‖ PIV ‖ kid context ‖ kid            (§6.1)
//!             └ Outer Code POST (FETCH with Observe)                       (§4.2)
//!        ───── outer Request (endpoint: token, MID, outer Block1) ─────►
//!                                        unprotect_request(&mut contexts, &outer)
//!                                          OSCORE option → kid [+ kid context]
//!                                          → ContextLookup → SecurityContext   (§8.2)
//!                                          replay window check → decrypt → update
//!                                          → (inner Request, binding)
//!                                        handler(inner Request) → Response
//!                                        ctx.protect_response(&mut binding, resp, fresh_piv)
//!        ◄──── outer Response (2.04, or 2.05 for notifications) ─────
//!  ctx.unprotect_response(&mut binding, &outer) ─► Response               (§8.4)
//! ```
//!
//! A failed request verification maps to the unprotected error response of §8.2 with
//! [`UnprotectError::error_response`] (4.02 for an undecodable OSCORE option, 4.01 for an
//! unknown context or a replay, 4.00 when decryption fails).
//!
//! # Example
//!
//! ```
//! use corium_oscore::{SecurityContext, SecurityContextSet, unprotect_request};
//! use corium_proto::{Request, Response, wire::Code};
//!
//! // RFC 8613 Appendix C.1: the client has Sender ID 0x, the server Sender ID 0x01.
//! let secret = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
//! let salt = [0x9e, 0x7c, 0xa9, 0x22, 0x23, 0x78, 0x63, 0x40];
//! let mut client = SecurityContext::builder(&secret, &[], &[0x01]).master_salt(&salt).build()?;
//! let mut server = SecurityContextSet::new(16);
//! server.insert(SecurityContext::builder(&secret, &[0x01], &[]).master_salt(&salt).build()?)?;
//!
//! let mut request = Request::new(Code::GET);
//! request.set_path("/temperature");
//! let (outer, mut client_binding) = client.protect_request(&request)?;
//! assert_eq!(outer.method, Code::POST); // the real method is encrypted
//!
//! let (inner, mut server_binding) = unprotect_request(&mut server, &outer)?;
//! assert_eq!(inner, request);
//! let ctx = server.for_binding(&server_binding).unwrap();
//! let response = Response::with_payload(Code::CONTENT, "22.5 C");
//! let outer_response = ctx.protect_response(&mut server_binding, &response, false)?;
//! assert_eq!(outer_response.code, Code::CHANGED);
//!
//! let verified = client.unprotect_response(&mut client_binding, &outer_response)?;
//! assert_eq!(verified, response);
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```
//!
//! # RFC 8613 coverage
//!
//! | Section | What | Where |
//! |---|---|---|
//! | §3.1, §3.2, §3.3 | Security context, HKDF-SHA-256 derivation of Sender Key, Recipient Key, Common IV; ID length limits | [`SecurityContext`], [`SecurityContextBuilder`] |
//! | §3.2.2, §7.4 | Sender Sequence Number from 0; sliding replay window (default 32) | [`ReplayWindow`] |
//! | §4.1 | Option classes E/U; unknown options are E | [`option_class`], [`BlockwiseMode`] |
//! | §4.1.3.1 | Max-Age Inner; Outer Max-Age 0 on OSCORE error responses | [`UnprotectError::error_response`] |
//! | §4.1.3.4 | Block options Outer (default; the endpoint does block-wise on the protected message) or Inner | [`BlockwiseMode`] |
//! | §4.1.3.5 | Observe: Outer Code FETCH/2.05; Inner and Outer Observe in requests; empty Inner Observe in notifications; Partial IV in every notification but the first | [`SecurityContext::protect_response`] |
//! | §4.1.3.7 | Nested OSCORE refused | [`ProtectError::NestedOscore`] |
//! | §4.2 | Outer Code POST / 2.04 | |
//! | §5, §5.2, §5.3, §5.4 | COSE_Encrypt0, nonce, plaintext, AAD | `context.rs`, `message.rs` |
//! | §6.1 | OSCORE option value, checked decoding | [`OscoreOption`] |
//! | §7.1 | Request/response binding | [`RequestBinding`] |
//! | §7.2.1 | Sequence numbers end at 2^40 - 1 | [`ProtectError::SequenceNumberExhausted`] |
//! | §7.4.1 | Notification replay protection and Notification Number | [`RequestBinding::notification_number`] |
//! | §8 | Processing steps and error codes | [`SecurityContext`] methods, [`UnprotectError::response_code`] |
//! | App. B.1.1 | Sequence number persistence in steps of K, resume at stored bound + F | [`SequenceStore`], [`SecurityContextBuilder::resume_after_reboot`] |
//! | App. B.1.2 | Replay window lost in a reboot: Echo challenge, lower limit | [`WindowState`], [`SecurityContext::echo_challenge`], [`SecurityContext::confirm_freshness`] |
//! | App. B.2 | Contexts derived again with random ID Contexts: derivation, moving a binding to the new context, 'kid context' in response #1 (the Figure 14 flow is a test) | [`SecurityContext::derive_with_id_context`], [`RequestBinding::for_context`], [`SecurityContext::protect_response_with_kid_context`] |
//! | App. C | Every test vector, byte-exact on the whole CoAP message | `src/tests/vectors.rs` |
//!
//! AEAD algorithms: AES-CCM-16-64-128 (COSE 10, the default), A128GCM (1) and
//! ChaCha20/Poly1305 (24), see [`AeadAlgorithm`]. HKDF: SHA-256 only.
//!
//! # Not implemented
//!
//! - The state machine of Appendix B.2 is the application's: generating and caching R2
//!   (or the HMAC construction of B.2.1), recognising request #2 by its R2 prefix, and
//!   replacing the old context; this crate provides the building blocks listed above.
//! - Signaling messages (§4.3), Class I options (none are defined), CoAP-to-HTTP
//!   mapping (§11), Group OSCORE, and the combined EDHOC + OSCORE request (RFC 9668).
//! - Key material is overwritten on drop on a best-effort basis (no `zeroize`).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod cbor;
mod class;
mod context;
mod crypto;
mod error;
mod message;
mod option;
mod replay;
mod sequence;
mod set;

#[cfg(test)]
mod tests;

pub use class::{option_class, BlockwiseMode, OptionClass};
pub use context::{SecurityContext, SecurityContextBuilder};
pub use crypto::{AeadAlgorithm, HkdfAlgorithm};
pub use error::{ContextError, ProtectError, UnprotectError};
pub use message::{unprotect_request, ContextLookup, PendingRequest, RequestBinding, Role};
pub use option::{OptionError, OscoreOption, PartialIv, MAX_PARTIAL_IV};
pub use replay::{
    ReplayError, ReplayWindow, WindowState, DEFAULT_REPLAY_WINDOW, MAX_REPLAY_WINDOW,
};
pub use sequence::{PersistError, SequenceStore, DEFAULT_PERSIST_STEP};
pub use set::{ContextSetError, SecurityContextSet};

pub use corium_proto::{Request, Response};
