//! Error types, one per operation.

use alloc::boxed::Box;
use core::fmt;

use corium_proto::wire::{Code, OptionNumber};
use corium_proto::Response;

use crate::message::PendingRequest;
use crate::option::OptionError;
use crate::sequence::PersistError;

/// Why a [`SecurityContext`](crate::SecurityContext) could not be established
/// (RFC 8613 §3.2, §3.3).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContextError {
    /// The Master Secret is empty.
    EmptyMasterSecret,
    /// The Sender ID is longer than the AEAD nonce length minus 6 (§3.3).
    SenderIdTooLong,
    /// The Recipient ID is longer than the AEAD nonce length minus 6 (§3.3).
    RecipientIdTooLong,
    /// Sender ID and Recipient ID are equal, so both directions would use the same key
    /// and nonces (§3.3 requires unique Sender IDs per Master Secret, Salt and ID Context).
    IdenticalIds,
    /// The ID Context is to be sent as 'kid context' but makes the OSCORE option longer
    /// than 255 bytes (§2, §6.1).
    IdContextTooLong,
    /// The replay window size is outside 1 to [`MAX_REPLAY_WINDOW`](crate::MAX_REPLAY_WINDOW).
    InvalidReplayWindow,
    /// The initial Sender Sequence Number is above 2^40 - 1 (§7.2.1).
    SequenceNumberOutOfRange,
    /// The persistence step K is zero (Appendix B.1.1 needs a positive K).
    InvalidPersistStep,
    /// The AEAD implementation rejected the derived key (not expected for the supported
    /// algorithms).
    Crypto,
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContextError::EmptyMasterSecret => "empty master secret",
            ContextError::SenderIdTooLong => "sender ID too long for the AEAD nonce",
            ContextError::RecipientIdTooLong => "recipient ID too long for the AEAD nonce",
            ContextError::IdenticalIds => "sender ID and recipient ID are equal",
            ContextError::IdContextTooLong => "ID context too long for the OSCORE option",
            ContextError::InvalidReplayWindow => "replay window size out of range",
            ContextError::SequenceNumberOutOfRange => "sequence number above 2^40 - 1",
            ContextError::InvalidPersistStep => "persistence step is zero",
            ContextError::Crypto => "AEAD rejected the derived key",
        })
    }
}

impl core::error::Error for ContextError {}

/// Why a request or response could not be protected (RFC 8613 §8.1, §8.3).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtectError {
    /// The code is not a request method (for requests) or a response code (for
    /// responses).
    InvalidCode,
    /// The message already carries an OSCORE option; nested OSCORE is not supported
    /// (§4.1.3.7).
    NestedOscore,
    /// The request's Proxy-Uri cannot be decomposed (§4.1.3.3): it is not an absolute
    /// URI with an authority, has a fragment, or comes with Uri-Path or Uri-Query.
    ProxyUriUnsupported,
    /// The Sender Sequence Number passed 2^40 - 1: the context must not protect any more
    /// messages and needs replacing (§7.2.1).
    SequenceNumberExhausted,
    /// The [`SequenceStore`](crate::SequenceStore) failed to persist the next bound
    /// (Appendix B.1.1); the sequence number was not used.
    Persist(PersistError),
    /// A response without its own Partial IV would reuse the request's nonce a second
    /// time (§5.2, §8.3.1: only the first response to a request may do so).
    NonceReuse,
    /// The binding belongs to another security context, or to the other role.
    BindingMismatch,
    /// A response carries Observe but the request was not an Observe registration.
    UnexpectedObserve,
    /// The plaintext is too long for the AEAD (AES-CCM-16-64-128: 65535 bytes).
    PlaintextTooLong,
    /// The OSCORE option would be longer than 255 bytes (§2).
    OscoreOptionTooLong,
}

impl fmt::Display for ProtectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtectError::InvalidCode => "code not valid for this message kind",
            ProtectError::NestedOscore => "message already has an OSCORE option",
            ProtectError::ProxyUriUnsupported => "Proxy-Uri cannot be decomposed for OSCORE",
            ProtectError::SequenceNumberExhausted => "sender sequence number exhausted",
            ProtectError::Persist(_) => "could not persist the sender sequence number",
            ProtectError::NonceReuse => "request nonce already used by a response",
            ProtectError::BindingMismatch => "request binding from another context",
            ProtectError::UnexpectedObserve => "Observe in a response to a non-Observe request",
            ProtectError::PlaintextTooLong => "plaintext too long for the AEAD",
            ProtectError::OscoreOptionTooLong => "OSCORE option longer than 255 bytes",
        })
    }
}

impl core::error::Error for ProtectError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ProtectError::Persist(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a received OSCORE message could not be verified (RFC 8613 §8.2, §8.4).
///
/// For a request, [`error_response`](Self::error_response) gives the unprotected error
/// response of §8.2 (§8.3: OSCORE errors are not themselves protected).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnprotectError {
    /// The message has no OSCORE option.
    MissingOscoreOption,
    /// The OSCORE option is repeated or its value does not decode (§6.1).
    MalformedOscoreOption(OptionError),
    /// A request's OSCORE option lacks the 'kid' or the 'Partial IV' (§5: both SHALL be
    /// present in requests).
    MissingKidOrPartialIv,
    /// The message carries an OSCORE option but no payload (§2: malformed).
    MissingPayload,
    /// No security context for this 'kid' (and 'kid context') (§8.2 step 2).
    UnknownContext,
    /// The Partial IV was received before or is below the replay window (§7.4), or, for
    /// a notification, was received before (§7.4.1).
    Replay,
    /// The request verified, but the replay window was lost in a reboot and its freshness
    /// is unknown (Appendix B.1.2). The request must not be acted upon: answer with
    /// [`SecurityContext::echo_challenge`](crate::SecurityContext::echo_challenge), and once
    /// a request proves fresh with the Echo value, pass it to
    /// [`SecurityContext::confirm_freshness`](crate::SecurityContext::confirm_freshness).
    FreshnessUnverified(Box<PendingRequest>),
    /// The AEAD tag did not verify (§8.2 step 6, §8.4 step 5).
    DecryptionFailed,
    /// The plaintext decrypted but is not a well-formed inner message (bad code, bad
    /// options, or a nested OSCORE option, §4.1.3.7).
    MalformedPlaintext,
    /// Response: the binding belongs to another security context or role.
    BindingMismatch,
    /// Response: a response without Partial IV, but the request nonce was already used by
    /// an earlier response (§8.4.2).
    NonceReuse,
    /// Response: inner Observe in a response to a request that was not an Observe
    /// registration (§4.1.3.5.2).
    UnexpectedObserve,
    /// Response: the request already got its final response; only one is accepted (§7.4).
    ResponseAlreadyReceived,
}

impl UnprotectError {
    /// The response code a server answers a failed request with (RFC 8613 §8.2): 4.02
    /// (Bad Option) when the COSE object cannot be decoded, 4.01 (Unauthorized) for an
    /// unknown security context or a replay (§7.4), 4.00 (Bad Request) when decryption
    /// fails (§8.2 step 6) and for everything else.
    pub fn response_code(&self) -> Code {
        match self {
            UnprotectError::MissingOscoreOption
            | UnprotectError::MalformedOscoreOption(_)
            | UnprotectError::MissingKidOrPartialIv
            | UnprotectError::MissingPayload => Code::BAD_OPTION,
            UnprotectError::UnknownContext
            | UnprotectError::Replay
            | UnprotectError::FreshnessUnverified(_) => Code::UNAUTHORIZED,
            _ => Code::BAD_REQUEST,
        }
    }

    /// The diagnostic payload suggested by RFC 8613 §7.4 and §8.2; it names the failed
    /// step only, never key material, identifiers or offsets.
    pub fn diagnostic(&self) -> &'static str {
        match self {
            UnprotectError::MissingOscoreOption
            | UnprotectError::MalformedOscoreOption(_)
            | UnprotectError::MissingKidOrPartialIv
            | UnprotectError::MissingPayload => "Failed to decode COSE",
            UnprotectError::UnknownContext => "Security context not found",
            UnprotectError::Replay | UnprotectError::FreshnessUnverified(_) => "Replay detected",
            UnprotectError::DecryptionFailed => "Decryption failed",
            _ => "Bad Request",
        }
    }

    /// The unprotected error response for a failed request (RFC 8613 §8.2): the code of
    /// [`response_code`](Self::response_code), an Outer Max-Age of 0 so that proxies do
    /// not cache it (§4.1.3.1), and the [`diagnostic`](Self::diagnostic) payload.
    ///
    /// For [`FreshnessUnverified`](Self::FreshnessUnverified) prefer the protected Echo
    /// challenge of [`SecurityContext::echo_challenge`](crate::SecurityContext::echo_challenge).
    pub fn error_response(&self) -> Response {
        let mut r = Response::with_payload(self.response_code(), self.diagnostic());
        r.options.push_uint(OptionNumber::MAX_AGE, 0);
        r
    }
}

impl fmt::Display for UnprotectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnprotectError::MissingOscoreOption => f.write_str("no OSCORE option"),
            UnprotectError::MalformedOscoreOption(e) => write!(f, "malformed OSCORE option: {e}"),
            UnprotectError::MissingKidOrPartialIv => {
                f.write_str("request without kid or Partial IV")
            }
            UnprotectError::MissingPayload => f.write_str("OSCORE message without payload"),
            UnprotectError::UnknownContext => f.write_str("security context not found"),
            UnprotectError::Replay => f.write_str("replay detected"),
            UnprotectError::FreshnessUnverified(_) => {
                f.write_str("replay window not initialised; freshness must be verified")
            }
            UnprotectError::DecryptionFailed => f.write_str("decryption failed"),
            UnprotectError::MalformedPlaintext => f.write_str("malformed plaintext"),
            UnprotectError::BindingMismatch => f.write_str("request binding from another context"),
            UnprotectError::NonceReuse => f.write_str("request nonce reused by a response"),
            UnprotectError::UnexpectedObserve => {
                f.write_str("Observe in a response to a non-Observe request")
            }
            UnprotectError::ResponseAlreadyReceived => f.write_str("response already received"),
        }
    }
}

impl core::error::Error for UnprotectError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            UnprotectError::MalformedOscoreOption(e) => Some(e),
            _ => None,
        }
    }
}
