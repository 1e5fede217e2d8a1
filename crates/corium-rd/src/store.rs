//! Persistence of registrations: the [`RegistrationStore`] trait, the record it stores
//! ([`StoredRegistration`]) and an in-memory implementation ([`MemoryStore`]). The
//! embedded persistent implementation is [`crate::RedbStore`].
//!
//! The RD calls [`RegistrationStore::commit`] with every change and answers the
//! request only after the returned future resolved `Ok`: an acknowledged registration,
//! update or removal is durable (as durable as the store makes it). Commits are
//! serialised by the RD, one at a time, in the order the changes were made; one commit
//! carries every change queued while the previous one ran (group commit), its
//! operations in order.
//!
//! The trait is asynchronous and object-safe so that a networked store (a replicated
//! log, a SQL server) can implement it; its records carry absolute wall-clock expiry
//! times so that any process can load them.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The future a [`RegistrationStore`] returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why the store failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be opened (path, permissions, already in use by another
    /// process).
    Open(String),
    /// Reading or writing failed; the change was not made.
    Backend(String),
    /// A stored record could not be decoded.
    Corrupt {
        /// The registration it belongs to, when known.
        id: Option<u64>,
        /// What was wrong.
        reason: String,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Open(why) => write!(f, "cannot open the registration store: {why}"),
            StoreError::Backend(why) => write!(f, "registration store error: {why}"),
            StoreError::Corrupt {
                id: Some(id),
                reason,
            } => {
                write!(f, "stored registration {id} is corrupt: {reason}")
            }
            StoreError::Corrupt { id: None, reason } => {
                write!(f, "stored registration is corrupt: {reason}")
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// One registration as it is stored: everything needed to restore it in another
/// process. Times are absolute Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRegistration {
    /// The registration resource's id (`/rd/<id>`).
    pub id: u64,
    /// Endpoint name, `ep`.
    pub ep: String,
    /// Sector, `d`.
    pub sector: Option<String>,
    /// Lifetime in seconds, `lt`.
    pub lifetime: u32,
    /// The explicit `base` parameter, if one was given.
    pub base: Option<String>,
    /// The base built from the requester's address (RFC 9176 §5), used without `base`.
    pub implicit_base: String,
    /// Extra endpoint attributes (`et` and others) in submitted order; `None` for a
    /// parameter without value.
    pub extra_attrs: Vec<(String, Option<String>)>,
    /// The registered links, as the link-format document that was submitted.
    pub links: String,
    /// When the registration expires, in Unix seconds.
    pub expires_at: u64,
    /// Who registered it ([`crate::Identity`] as text).
    pub owner: String,
    /// Created by simple registration (RFC 9176 §5.1): deleted at expiry.
    pub simple: bool,
    /// The interface (IPv6 scope id) of a registrant whose base is link-local
    /// (RFC 9176 §6.1); `None` for other bases.
    pub link_local_scope: Option<u32>,
}

/// Version tag of the encoded record.
const RECORD_VERSION: u64 = 1;

type EncodeResult = Result<(), minicbor::encode::Error<std::convert::Infallible>>;

fn opt_str(e: &mut minicbor::Encoder<&mut Vec<u8>>, v: Option<&str>) -> EncodeResult {
    match v {
        Some(s) => e.str(s)?,
        None => e.null()?,
    };
    Ok(())
}

impl StoredRegistration {
    /// Encodes the record (a versioned CBOR array) for byte-oriented stores.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.links.len());
        // Writing to a Vec cannot fail.
        let _ = self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> EncodeResult {
        let mut e = minicbor::Encoder::new(out);
        e.array(13)?
            .u64(RECORD_VERSION)?
            .u64(self.id)?
            .str(&self.ep)?;
        opt_str(&mut e, self.sector.as_deref())?;
        e.u32(self.lifetime)?;
        opt_str(&mut e, self.base.as_deref())?;
        e.str(&self.implicit_base)?;
        e.array(self.extra_attrs.len() as u64)?;
        for (name, value) in &self.extra_attrs {
            e.array(2)?.str(name)?;
            opt_str(&mut e, value.as_deref())?;
        }
        e.str(&self.links)?
            .u64(self.expires_at)?
            .str(&self.owner)?
            .bool(self.simple)?;
        match self.link_local_scope {
            Some(scope) => e.u32(scope)?,
            None => e.null()?,
        };
        Ok(())
    }

    /// Decodes a record made by [`encode`](Self::encode).
    pub fn decode(bytes: &[u8]) -> Result<StoredRegistration, StoreError> {
        decode(bytes).map_err(|e| StoreError::Corrupt {
            id: None,
            reason: e.to_string(),
        })
    }
}

fn decode_opt_str(
    d: &mut minicbor::Decoder<'_>,
) -> Result<Option<String>, minicbor::decode::Error> {
    if d.datatype()? == minicbor::data::Type::Null {
        d.null()?;
        Ok(None)
    } else {
        Ok(Some(d.str()?.to_owned()))
    }
}

fn decode(bytes: &[u8]) -> Result<StoredRegistration, minicbor::decode::Error> {
    use minicbor::decode::Error;
    let mut d = minicbor::Decoder::new(bytes);
    if d.array()? != Some(13) {
        return Err(Error::message("unexpected record length"));
    }
    if d.u64()? != RECORD_VERSION {
        return Err(Error::message("unknown record version"));
    }
    let id = d.u64()?;
    let ep = d.str()?.to_owned();
    let sector = decode_opt_str(&mut d)?;
    let lifetime = d.u32()?;
    let base = decode_opt_str(&mut d)?;
    let implicit_base = d.str()?.to_owned();
    let n = d
        .array()?
        .ok_or_else(|| Error::message("indefinite attribute list"))?;
    let mut extra_attrs = Vec::new();
    for _ in 0..n {
        if d.array()? != Some(2) {
            return Err(Error::message("malformed attribute"));
        }
        let name = d.str()?.to_owned();
        let value = decode_opt_str(&mut d)?;
        extra_attrs.push((name, value));
    }
    let links = d.str()?.to_owned();
    let expires_at = d.u64()?;
    let owner = d.str()?.to_owned();
    let simple = d.bool()?;
    let link_local_scope = if d.datatype()? == minicbor::data::Type::Null {
        d.null()?;
        None
    } else {
        Some(d.u32()?)
    };
    if d.position() != bytes.len() {
        return Err(Error::message("trailing bytes"));
    }
    Ok(StoredRegistration {
        id,
        ep,
        sector,
        lifetime,
        base,
        implicit_base,
        extra_attrs,
        links,
        expires_at,
        owner,
        simple,
        link_local_scope,
    })
}

/// One change in a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Insert or replace the registration with this id.
    Put(StoredRegistration),
    /// Remove the registration with this id (absent ids are ignored).
    Remove(u64),
}

/// What a store holds at start-up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Every stored registration, by ascending id.
    pub registrations: Vec<StoredRegistration>,
    /// Records that could not be decoded, skipped (the RD logs them).
    pub corrupt: Vec<StoreError>,
    /// The lowest id never used: above every id ever stored, removed ones included, so
    /// a registration resource's location is never reused.
    pub next_id: u64,
}

/// Where the RD keeps its registrations.
///
/// Implementations must apply each [`commit`](Self::commit) atomically (all of its
/// operations or none) and durably before resolving `Ok`, and must remember the highest
/// id ever put (for [`Loaded::next_id`]).
pub trait RegistrationStore: Send + Sync + 'static {
    /// Reads every registration (at start-up).
    fn load(&self) -> StoreFuture<'_, Loaded>;

    /// Applies `ops` atomically and durably.
    fn commit(&self, ops: Vec<StoreOp>) -> StoreFuture<'_, ()>;
}

/// A store in memory: nothing survives the process. For tests, and for deployments
/// that do not want persistence. Shared through `Arc`, it survives a
/// [`crate::ResourceDirectory`] being dropped and opened again.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
    fail: AtomicBool,
}

#[derive(Debug, Default)]
struct MemoryInner {
    records: BTreeMap<u64, StoredRegistration>,
    next_id: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Makes every following commit fail (for testing that failed commits are not
    /// acknowledged), or succeed again.
    pub fn fail_commits(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// The stored registrations, by id.
    pub fn snapshot(&self) -> Vec<StoredRegistration> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.records.values().cloned().collect()
    }
}

impl RegistrationStore for MemoryStore {
    fn load(&self) -> StoreFuture<'_, Loaded> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let loaded = Loaded {
            registrations: inner.records.values().cloned().collect(),
            corrupt: Vec::new(),
            next_id: inner.next_id,
        };
        Box::pin(std::future::ready(Ok(loaded)))
    }

    fn commit(&self, ops: Vec<StoreOp>) -> StoreFuture<'_, ()> {
        if self.fail.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(StoreError::Backend(
                "commits disabled (MemoryStore::fail_commits)".into(),
            ))));
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for op in ops {
            match op {
                StoreOp::Put(r) => {
                    inner.next_id = inner.next_id.max(r.id.saturating_add(1));
                    inner.records.insert(r.id, r);
                }
                StoreOp::Remove(id) => {
                    inner.records.remove(&id);
                }
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(id: u64) -> StoredRegistration {
        StoredRegistration {
            id,
            ep: "node1".into(),
            sector: Some("floor-3".into()),
            lifetime: 500,
            base: None,
            implicit_base: "coap://[2001:db8::1]:61616".into(),
            extra_attrs: vec![("et".into(), Some("tag:x".into())), ("flag".into(), None)],
            links: "</sensors/temp>;rt=temperature-c;if=sensor".into(),
            expires_at: 1_700_000_000,
            owner: "coap:[2001:db8::1]:61616".into(),
            simple: false,
            link_local_scope: Some(3),
        }
    }

    #[test]
    fn record_round_trip() {
        let r = sample(7);
        let bytes = r.encode();
        assert_eq!(StoredRegistration::decode(&bytes), Ok(r.clone()));
        let other = StoredRegistration {
            sector: None,
            base: Some("coap://h".into()),
            extra_attrs: vec![],
            link_local_scope: None,
            simple: true,
            ..r
        };
        assert_eq!(StoredRegistration::decode(&other.encode()), Ok(other));
        // Every truncation fails cleanly.
        for end in 0..bytes.len() {
            assert!(StoredRegistration::decode(&bytes[..end]).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(StoredRegistration::decode(&long).is_err());
    }

    #[tokio::test]
    async fn memory_store() {
        let store = MemoryStore::new();
        store
            .commit(vec![StoreOp::Put(sample(3)), StoreOp::Put(sample(5))])
            .await
            .unwrap();
        store.commit(vec![StoreOp::Remove(5)]).await.unwrap();
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.registrations, vec![sample(3)]);
        assert_eq!(loaded.next_id, 6);
        store.fail_commits(true);
        assert!(store.commit(vec![StoreOp::Remove(3)]).await.is_err());
        assert_eq!(store.snapshot(), vec![sample(3)]);
    }
}
