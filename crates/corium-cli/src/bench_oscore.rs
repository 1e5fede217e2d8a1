//! `corium bench --credentials FILE`: the load generator's requests protected with
//! OSCORE (RFC 8613), so that protected and plain throughput can be measured side by
//! side against the same server (`bench/oscore.sh`).
//!
//! Every request is protected anew (its own Partial IV, §7.2.1) just before it goes to
//! the endpoint, and every response is verified with the request's binding (§8.4); only
//! a verified 2.xx inner response counts as `ok`. The security context comes from the
//! credentials file like for `corium get --credentials` (its `[[oscore]]` table whose
//! `uri` matches the target), so the Sender Sequence Number persists in `FILE.seq` and
//! consecutive runs against one server are never replays.
//!
//! The workers share the context behind a mutex: the sequence numbers must stay unique,
//! and the server's replay window (32 by default) accepts requests that arrive out of
//! order only within it. Keep `--sockets × --window` at or below the window.

use std::collections::HashMap;
use std::sync::Mutex;

use corium::corium_oscore::{RequestBinding, SecurityContext};
use corium::{Code, Request, Response};
use corium_proto::RequestId;

use crate::Failure;

/// The shared context of one `corium bench` run.
pub(crate) struct OscoreLoad {
    ctx: Mutex<SecurityContext>,
}

impl std::fmt::Debug for OscoreLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OscoreLoad(..)")
    }
}

impl OscoreLoad {
    /// The context of `credentials` that protects `uri`.
    pub(crate) fn load(credentials: &std::path::Path, uri: &str) -> Result<OscoreLoad, Failure> {
        let file = crate::credentials::load(credentials)?;
        let ctx = file.context_for(uri)?.ok_or_else(|| {
            Failure::usage(format!(
                "no [[oscore]] uri in {} matches {uri}",
                credentials.display()
            ))
        })?;
        Ok(OscoreLoad {
            ctx: Mutex::new(ctx),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SecurityContext> {
        self.ctx.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The protected (outer) request for `inner`, and what verifies its response.
    pub(crate) fn protect(&self, inner: &Request) -> Result<(Request, RequestBinding), Failure> {
        self.lock()
            .protect_request(inner)
            .map_err(|e| Failure::other(format!("cannot protect the request: {e}")))
    }

    /// The code of the verified inner response; `None` when it does not verify (an
    /// unprotected 4.01 from a server that rejected the request, say).
    pub(crate) fn open(&self, binding: &mut RequestBinding, outer: &Response) -> Option<Code> {
        self.lock()
            .unprotect_response(binding, outer)
            .ok()
            .map(|inner| inner.code)
    }
}

/// The bindings of one worker's requests in flight: (socket generation, request) →
/// binding. A request that fails leaves its binding behind, which only a run with many
/// losses would notice (a load generator, not a long-lived client).
#[derive(Default)]
pub(crate) struct Bindings(HashMap<(u64, RequestId), RequestBinding>);

impl Bindings {
    pub(crate) fn insert(&mut self, key: (u64, RequestId), binding: RequestBinding) {
        self.0.insert(key, binding);
    }

    /// The code to count for the response to `key`: its verified inner code, or a
    /// 4.01-class failure (`Code::UNAUTHORIZED`) when it does not verify.
    pub(crate) fn verify(
        &mut self,
        load: &OscoreLoad,
        key: (u64, RequestId),
        outer: &Response,
    ) -> Code {
        match self.0.remove(&key) {
            Some(mut binding) => load.open(&mut binding, outer).unwrap_or(Code::UNAUTHORIZED),
            None => Code::UNAUTHORIZED,
        }
    }
}
