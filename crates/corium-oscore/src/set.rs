//! A bounded set of security contexts for a server (RFC 8613 §3.1: "Clients and servers
//! need to be able to retrieve the correct security context to use").

use alloc::vec::Vec;
use core::fmt;

use crate::context::SecurityContext;
use crate::message::{ContextLookup, RequestBinding};

/// Why a context could not be added to a [`SecurityContextSet`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContextSetError {
    /// The set holds its maximum number of contexts.
    Full,
    /// A context with the same Recipient ID and ID Context is already present; requests
    /// could not be told apart (RFC 8613 §3.3).
    Duplicate,
}

impl fmt::Display for ContextSetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContextSetError::Full => "security context set is full",
            ContextSetError::Duplicate => "duplicate recipient ID and ID context",
        })
    }
}

impl core::error::Error for ContextSetError {}

/// Security contexts looked up by Recipient ID and ID Context, with a hard size limit.
///
/// Lookup is a linear scan, meant for the handful of peers a constrained server has.
/// When a request carries no 'kid context', the first context with a matching Recipient
/// ID is used (RFC 8613 §3.3 recommends unique Recipient IDs for this reason).
#[derive(Debug)]
pub struct SecurityContextSet {
    contexts: Vec<SecurityContext>,
    limit: usize,
}

impl SecurityContextSet {
    /// An empty set holding at most `limit` contexts.
    pub fn new(limit: usize) -> SecurityContextSet {
        SecurityContextSet {
            contexts: Vec::new(),
            limit,
        }
    }

    /// Adds a context.
    pub fn insert(&mut self, ctx: SecurityContext) -> Result<(), ContextSetError> {
        if self.get(ctx.recipient_id(), ctx.id_context()).is_some() {
            return Err(ContextSetError::Duplicate);
        }
        if self.contexts.len() >= self.limit {
            return Err(ContextSetError::Full);
        }
        self.contexts.push(ctx);
        Ok(())
    }

    /// The context with exactly this Recipient ID and ID Context.
    pub fn get(&self, recipient_id: &[u8], id_context: Option<&[u8]>) -> Option<&SecurityContext> {
        self.contexts
            .iter()
            .find(|c| c.recipient_id() == recipient_id && c.id_context() == id_context)
    }

    /// The context with exactly this Recipient ID and ID Context, mutably.
    pub fn get_mut(
        &mut self,
        recipient_id: &[u8],
        id_context: Option<&[u8]>,
    ) -> Option<&mut SecurityContext> {
        self.contexts
            .iter_mut()
            .find(|c| c.recipient_id() == recipient_id && c.id_context() == id_context)
    }

    /// The context a request binding was made with, to protect its responses.
    pub fn for_binding(&mut self, binding: &RequestBinding) -> Option<&mut SecurityContext> {
        self.get_mut(binding.kid(), binding.id_context())
    }

    /// Removes and returns a context.
    pub fn remove(
        &mut self,
        recipient_id: &[u8],
        id_context: Option<&[u8]>,
    ) -> Option<SecurityContext> {
        let at = self
            .contexts
            .iter()
            .position(|c| c.recipient_id() == recipient_id && c.id_context() == id_context)?;
        Some(self.contexts.swap_remove(at))
    }

    /// The number of contexts.
    pub fn len(&self) -> usize {
        self.contexts.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }

    /// Every context.
    pub fn iter(&self) -> impl Iterator<Item = &SecurityContext> + '_ {
        self.contexts.iter()
    }
}

impl ContextLookup for SecurityContextSet {
    fn find_context(
        &mut self,
        kid: &[u8],
        kid_context: Option<&[u8]>,
    ) -> Option<&mut SecurityContext> {
        self.contexts
            .iter_mut()
            .find(|c| c.matches(kid, kid_context))
    }
}
