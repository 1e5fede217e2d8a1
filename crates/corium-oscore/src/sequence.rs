//! Sender Sequence Number persistence (RFC 8613 §7.2, §7.5, Appendix B.1.1).
//!
//! A sender that may lose its RAM (reboot) must never reuse a sequence number with the
//! same key (§7.2). With a [`SequenceStore`] installed, the context writes an upper bound
//! to non-volatile memory before it uses the first number at or above the previous
//! bound, in steps of K numbers: it persists `n + K` before using `n`, so every number it
//! will use before the next write lies below the stored value. After a reboot the
//! context resumes at the stored value plus a margin F for writes that may not have
//! completed (Appendix B.1.1: SSN2 = SSN1 + K + F, here the stored value already
//! includes K).

use core::fmt;

/// Non-volatile storage for the Sender Sequence Number bound (RFC 8613 Appendix B.1.1).
pub trait SequenceStore {
    /// Durably records that no sequence number at or above `next_unused_upper_bound` has
    /// been used. Must not return `Ok` before the value is stored; an error stops the
    /// context from protecting (the sequence number is not used).
    fn persist(&mut self, next_unused_upper_bound: u64) -> Result<(), PersistError>;
}

/// A [`SequenceStore`] could not store the bound.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PersistError;

impl fmt::Display for PersistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("could not persist the sender sequence number")
    }
}

impl core::error::Error for PersistError {}

/// The default persistence step K.
pub const DEFAULT_PERSIST_STEP: u64 = 64;
