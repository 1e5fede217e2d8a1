//! The RD on a corium [`Server`](corium::Server): the registration, simple registration,
//! registration resource and lookup interfaces of RFC 9176 as [`Router`] routes, durable
//! changes, observable lookups, and expiry.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corium::{
    Client, Code, ContentFormat, Observable, OptionNumber, Request, RequestContext, RequestOptions,
    Resource, Response, Router,
};
use tokio::sync::{oneshot, Notify, OnceCell, Semaphore};

use crate::config::RdConfig;
use crate::error::RdError;
use crate::formats::{self, LINK_FORMAT_CBOR, LINK_FORMAT_JSON};
use crate::params::{LookupQuery, RegistrationParams};
use crate::state::{
    LookupKind, Mutation, RdState, Requester, SecurityKind, LINK_FORMAT, REGISTRATION_PATH,
};
use crate::store::{MemoryStore, RegistrationStore, StoreError, StoreOp};

/// Path of the endpoint lookup resource (RFC 9176 §6.4).
pub const ENDPOINT_LOOKUP_PATH: &str = "/rd-lookup/ep";
/// Path of the resource lookup resource (RFC 9176 §6.1).
pub const RESOURCE_LOOKUP_PATH: &str = "/rd-lookup/res";
/// Path of simple registration (RFC 9176 §5.1, §9.6).
pub const SIMPLE_REGISTRATION_PATH: &str = "/.well-known/rd";

/// Max-Age of a 5.03 answer when too many simple registrations are fetching.
const SIMPLE_BUSY_RETRY_SECS: u32 = 5;

/// How long a tracked observed query is kept while its lookup has no observers (the
/// relation of an observer is set up just after its handler ran).
const TRACK_GRACE: Duration = Duration::from_secs(30);

/// How long the maintenance task waits after a failed commit before it retries.
const MAINTENANCE_RETRY: Duration = Duration::from_secs(5);

/// Converts between the monotonic clock the state uses and the wall clock the store
/// uses, at one moment (RFC 9176 lifetimes are in seconds; expiries are stored as
/// absolute Unix seconds).
#[derive(Clone, Copy, Debug)]
struct TimeBase {
    mono: Instant,
    wall: Duration,
}

impl TimeBase {
    fn now() -> TimeBase {
        TimeBase {
            mono: Instant::now(),
            wall: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    fn wall_secs(&self) -> u64 {
        self.wall.as_secs()
    }

    /// Unix seconds of `t`, rounded up (a registration never expires early after a
    /// restart).
    fn wall_of(&self, t: Instant) -> u64 {
        let wall = if t >= self.mono {
            self.wall + (t - self.mono)
        } else {
            self.wall.saturating_sub(self.mono - t)
        };
        wall.as_secs() + u64::from(wall.subsec_nanos() > 0)
    }

    /// The `Instant` of Unix seconds `secs` (the present if it cannot be represented).
    fn instant_of(&self, secs: u64) -> Instant {
        let target = Duration::from_secs(secs);
        if target >= self.wall {
            // A stored time beyond any lifetime (a damaged record) is capped.
            let ahead = (target - self.wall).min(Duration::from_secs(u64::from(u32::MAX)));
            self.mono.checked_add(ahead).unwrap_or(self.mono)
        } else {
            self.mono
                .checked_sub(self.wall - target)
                .unwrap_or(self.mono)
        }
    }
}

/// A lookup query some observer registered with, and the digest of its last result.
struct Tracked {
    kind: LookupKind,
    query: LookupQuery,
    requester: SocketAddr,
    digest: u64,
    seen: Instant,
}

#[derive(Default)]
struct Observed {
    entries: HashMap<Vec<u8>, Tracked>,
    /// Too many distinct queries to track: every change notifies (per lookup kind).
    overflow: [bool; 2],
}

fn kind_index(kind: LookupKind) -> usize {
    match kind {
        LookupKind::Endpoint => 0,
        LookupKind::Resource => 1,
    }
}

/// A simple registrant's `/.well-known/core`, kept while fresh (RFC 9176 §5.1: "It
/// SHOULD keep a cache of the discovery resource and not query it again as long as it
/// is fresh").
struct CachedDocument {
    fresh_until: Instant,
    payload: Vec<u8>,
}

/// A change applied to the state whose commit is pending (group commit).
struct Pending {
    /// What to commit.
    ops: Vec<StoreOp>,
    /// What rolls the change back if its commit fails ([`RdState::undo_of`]).
    undo: Mutation,
    /// Where the commit's outcome goes: the request is answered only after it.
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// Changes waiting for their commit, in the order they were applied.
#[derive(Default)]
struct CommitQueue {
    pending: Vec<Pending>,
    /// Whether a commit task is running (it takes everything pending, commits it as
    /// one transaction, and repeats until nothing is pending).
    committing: bool,
}

struct Inner {
    /// This `Inner`, for the commit task.
    me: Weak<Inner>,
    config: RdConfig,
    /// The registrations. Its write lock serialises changes: plan, apply, enqueue the
    /// commit.
    state: RwLock<RdState>,
    commits: Mutex<CommitQueue>,
    store: Arc<dyn RegistrationStore>,
    observe_ep: Observable,
    observe_res: Observable,
    observed: Mutex<Observed>,
    /// Wakes the maintenance task after a change (and when the RD goes away).
    wake: Arc<Notify>,
    client: OnceCell<Client>,
    simple_slots: Arc<Semaphore>,
    simple_cache: Mutex<HashMap<SocketAddr, CachedDocument>>,
    /// When the maintenance task last looked for expiries.
    last_expiry_check: Mutex<Instant>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

/// A CoRE Resource Directory (RFC 9176) served by a corium [`Server`](corium::Server).
///
/// ```no_run
/// use std::sync::Arc;
/// use corium_rd::{RdConfig, RedbStore, ResourceDirectory};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Arc::new(RedbStore::open_dir("./corium-rd-data")?);
/// let rd = ResourceDirectory::open(RdConfig::default(), store).await?;
/// let server = corium::Server::builder()
///     .bind(&["[::]:5683".parse()?], rd.router())
///     .await?;
/// server.run().await?;
/// # Ok(()) }
/// ```
///
/// Routes (RFC 9176 §4.3, Figure 5): `/rd` (`rt=core.rd`, registration, §5),
/// `/rd/{id}` (registration resources: POST update §5.3.1, DELETE removal §5.3.2,
/// GET the resolved links), `/rd-lookup/ep` and `/rd-lookup/res` (`rt=core.rd-lookup-ep`,
/// `rt=core.rd-lookup-res`, observable, §6) and `/.well-known/rd` (simple
/// registration, §5.1; not listed in `/.well-known/core`).
///
/// Every change is committed to the [`RegistrationStore`] before it is acknowledged;
/// changes arriving while a commit runs share the next commit (group commit). When a
/// commit fails its requests are answered 5.00 and their changes are rolled back
/// (lookups may have seen them for the duration of the commit).
///
/// Lookups and registrations speak RFC 6690 link format, and its JSON and CBOR forms
/// (`application/link-format+json` 504, `+cbor` 64, draft-ietf-core-links-json-10):
/// as registration payloads, and in lookups asked for with Accept.
#[derive(Clone)]
pub struct ResourceDirectory {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ResourceDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceDirectory")
            .field("registrations", &self.registration_count())
            .finish_non_exhaustive()
    }
}

fn read(lock: &RwLock<RdState>) -> std::sync::RwLockReadGuard<'_, RdState> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write(lock: &RwLock<RdState>) -> std::sync::RwLockWriteGuard<'_, RdState> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn link_format(code: Code, payload: impl Into<Vec<u8>>) -> Response {
    let mut response = Response::with_payload(code, payload);
    response.set_content_format(ContentFormat::LINK_FORMAT);
    response
}

/// The link format an Accept option asks for: RFC 6690 (40, also without Accept), or
/// its JSON (504) or CBOR (64) form (draft-ietf-core-links-json); `None` for others.
fn accepted_format(accept: Option<ContentFormat>) -> Option<u16> {
    match accept.map(|a| a.0) {
        None | Some(LINK_FORMAT) => Some(LINK_FORMAT),
        Some(cf @ (LINK_FORMAT_JSON | LINK_FORMAT_CBOR)) => Some(cf),
        Some(_) => None,
    }
}

/// A 2.05 with `doc` (link format) in the format `cf` chosen by [`accepted_format`].
fn links_response(cf: u16, doc: &str) -> Response {
    let payload = match cf {
        LINK_FORMAT_JSON => formats::link_format_to_json(doc),
        LINK_FORMAT_CBOR => formats::link_format_to_cbor(doc),
        _ => return link_format(Code::CONTENT, doc),
    };
    let mut response = Response::with_payload(Code::CONTENT, payload);
    response.set_content_format(ContentFormat(cf));
    response
}

impl ResourceDirectory {
    /// Opens the directory on `store`: loads the stored registrations with their
    /// remaining lifetimes, drops what expired while the RD was down (simple
    /// registrations, and others past the retention), and starts the maintenance task
    /// that expires registrations (it ends when the directory is dropped). Must be
    /// called within a tokio runtime.
    pub async fn open(
        config: RdConfig,
        store: Arc<dyn RegistrationStore>,
    ) -> Result<ResourceDirectory, StoreError> {
        let loaded = store.load().await?;
        for err in &loaded.corrupt {
            tracing::warn!(%err, "skipping a stored registration");
        }
        let time = TimeBase::now();
        let mut state = RdState::new(config.clone());
        let mut stale = Vec::new();
        let retention = config.expired_retention.as_secs();
        for stored in loaded.registrations {
            let expired_for = time.wall_secs().saturating_sub(stored.expires_at);
            let gone = stored.expires_at <= time.wall_secs()
                && (stored.simple || expired_for >= retention);
            if gone {
                stale.push(StoreOp::Remove(stored.id));
                continue;
            }
            let id = stored.id;
            let expires = time.instant_of(stored.expires_at);
            if let Err(err) = state.restore(stored, expires) {
                tracing::warn!(id, %err, "skipping a stored registration");
            }
        }
        state.reserve_ids(loaded.next_id);
        if !stale.is_empty() {
            tracing::info!(
                count = stale.len(),
                "removing registrations that expired while stopped"
            );
            store.commit(stale).await?;
        }
        tracing::debug!(registrations = state.len(), "resource directory loaded");
        let wake = Arc::new(Notify::new());
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            simple_slots: Arc::new(Semaphore::new(config.max_simple_in_flight)),
            config,
            state: RwLock::new(state),
            commits: Mutex::new(CommitQueue::default()),
            store,
            observe_ep: Observable::new(),
            observe_res: Observable::new(),
            observed: Mutex::new(Observed::default()),
            wake: Arc::clone(&wake),
            client: OnceCell::new(),
            simple_cache: Mutex::new(HashMap::new()),
            last_expiry_check: Mutex::new(Instant::now()),
        });
        tokio::spawn(maintenance(Arc::downgrade(&inner), wake));
        Ok(ResourceDirectory { inner })
    }

    /// A directory that keeps its registrations in memory only ([`MemoryStore`]).
    pub async fn in_memory(config: RdConfig) -> Result<ResourceDirectory, StoreError> {
        ResourceDirectory::open(config, Arc::new(MemoryStore::new())).await
    }

    /// How many registrations are kept (active, or expired and retained).
    pub fn registration_count(&self) -> usize {
        read(&self.inner.state).len()
    }

    /// Runs `f` on the current state (for inspection and tests).
    pub fn with_state<R>(&self, f: impl FnOnce(&RdState) -> R) -> R {
        f(&read(&self.inner.state))
    }

    /// A lookup as a client at `requester` would get it (RFC 9176 §6).
    pub fn lookup(
        &self,
        kind: LookupKind,
        query: &LookupQuery,
        requester: Option<SocketAddr>,
    ) -> Result<String, RdError> {
        read(&self.inner.state).lookup(kind, query, requester, Instant::now())
    }

    /// Registers as the registration interface does (RFC 9176 §5), for a
    /// commissioning tool built into the application; returns the registration id.
    pub async fn register(
        &self,
        params: &RegistrationParams,
        links: &str,
        requester: &Requester,
    ) -> Result<u64, RdError> {
        let m = self
            .inner
            .mutate(|s, now| s.plan_register(params, links.as_bytes(), None, requester, false, now))
            .await?;
        Ok(m.0.unwrap_or_default())
    }

    /// Removes a registration as the removal interface does (RFC 9176 §5.3.2).
    pub async fn remove(&self, id: u64, requester: &Requester) -> Result<(), RdError> {
        self.inner
            .mutate(|s, _| s.plan_remove(id, requester))
            .await
            .map(drop)
    }

    /// Adds the RD's routes to `router`.
    pub fn routes(&self, router: Router) -> Router {
        let rd = self.inner.clone();
        let register = Resource::new()
            .post(move |ctx: RequestContext| {
                let rd = rd.clone();
                async move { rd.handle_register(ctx).await }
            })
            .rt("core.rd")
            .ct(LINK_FORMAT);
        let (rd_u, rd_d, rd_g) = (self.inner.clone(), self.inner.clone(), self.inner.clone());
        let mut registration = Resource::new();
        if let Some(max_age) = self.inner.config.fresh_updates {
            // RFC 9176 §5.3.4: updates and removals must be fresh (Echo, RFC 9175).
            registration = registration.require_fresh(max_age);
        }
        let registration = registration
            .post(move |ctx: RequestContext| {
                let rd = rd_u.clone();
                async move { rd.handle_update(ctx).await }
            })
            .delete(move |ctx: RequestContext| {
                let rd = rd_d.clone();
                async move { rd.handle_remove(ctx).await }
            })
            .get(move |ctx: RequestContext| {
                let rd = rd_g.clone();
                async move { rd.handle_read(ctx) }
            });
        let lookup = |kind: LookupKind, rt: &str, obs: &Observable| {
            let rd = self.inner.clone();
            Resource::new()
                .get(move |ctx: RequestContext| {
                    let rd = rd.clone();
                    async move { rd.handle_lookup(kind, ctx) }
                })
                .rt(rt)
                .ct(LINK_FORMAT)
                .observable(obs)
        };
        let mut router = router
            .route(&format!("/{REGISTRATION_PATH}"), register)
            .route(&format!("/{REGISTRATION_PATH}/{{id}}"), registration)
            .route(
                ENDPOINT_LOOKUP_PATH,
                lookup(
                    LookupKind::Endpoint,
                    "core.rd-lookup-ep",
                    &self.inner.observe_ep,
                ),
            )
            .route(
                RESOURCE_LOOKUP_PATH,
                lookup(
                    LookupKind::Resource,
                    "core.rd-lookup-res",
                    &self.inner.observe_res,
                ),
            );
        if self.inner.config.simple_registration {
            let rd = self.inner.clone();
            let mut simple = Resource::new()
                .post(move |ctx: RequestContext| {
                    let rd = rd.clone();
                    async move { rd.handle_simple(ctx).await }
                })
                .hidden();
            if self.inner.config.verify_simple_registrants {
                // RFC 9176 §5.1: the RD is about to send a request to this address.
                simple = simple.verified_address();
            }
            router = router.route(SIMPLE_REGISTRATION_PATH, simple);
        }
        router
    }

    /// A router with only the RD's routes.
    pub fn router(&self) -> Router {
        self.routes(Router::new())
    }
}

/// Expires registrations when their time comes and notifies observers; ends when the
/// directory is dropped.
async fn maintenance(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let deadline = {
            let Some(rd) = inner.upgrade() else {
                return;
            };
            let retry = rd.expire().await;
            let next = read(&rd.state).next_deadline(Instant::now());
            match (retry, next) {
                (true, _) => Some(Instant::now() + MAINTENANCE_RETRY),
                (false, next) => next,
            }
        };
        match deadline {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

/// The commit task of group commit ([`Inner::change`]): commits everything queued as
/// one store transaction, answers the waiting changes, and repeats until the queue is
/// empty.
async fn commit_loop(rd: Arc<Inner>) {
    loop {
        let mut batch = {
            let mut queue = lock(&rd.commits);
            if queue.pending.is_empty() {
                queue.committing = false;
                return;
            }
            std::mem::take(&mut queue.pending)
        };
        let ops: Vec<StoreOp> = batch
            .iter_mut()
            .flat_map(|p| std::mem::take(&mut p.ops))
            .collect();
        let changes = batch.len();
        match rd.store.commit(ops).await {
            Ok(()) => {
                tracing::trace!(changes, "group commit");
                for p in batch {
                    let _ = p.done.send(Ok(()));
                }
            }
            Err(err) => {
                rd.roll_back(batch, &err);
                return;
            }
        }
    }
}

impl Inner {
    /// The requester of `ctx` under the access policy: bound to the security identity
    /// the peer proved when there is one, else to its address (RFC 9176 §7.5). OSCORE
    /// (end to end, RFC 8613) comes before DTLS (hop by hop): its context, named as
    /// [`corium::OscoreIdentity`] displays it.
    fn policy_requester(&self, ctx: &RequestContext) -> Requester {
        let policy = self.config.access_policy;
        if let Some(oscore) = &ctx.oscore {
            let name = oscore.to_string();
            return Requester::secured(ctx.peer, policy, SecurityKind::Oscore, &name);
        }
        match &ctx.security {
            Some(identity) => Requester::secured(ctx.peer, policy, SecurityKind::DtlsPsk, identity),
            None => Requester::new(ctx.peer, policy),
        }
    }

    /// Plans a change, makes it durable, notifies observers and the maintenance task.
    /// Returns the mutation's id and whether it created a registration resource.
    async fn mutate(
        &self,
        plan: impl FnOnce(&RdState, Instant) -> Result<Mutation, RdError>,
    ) -> Result<(Option<u64>, bool), RdError> {
        let outcome = self.change(plan).await?;
        self.wake.notify_one();
        self.lookups_changed();
        Ok(outcome)
    }

    /// Group commit: plans a change against the state and applies it at once, under
    /// the state's write lock (so the next plan sees it), queues its store operations,
    /// and waits until the commit task made them durable: changes made while a commit
    /// is running are committed together in the next one (one fsync for all of them).
    /// The caller answers only after this returned `Ok`, so an acknowledged change is
    /// durable. If a commit fails, its changes and every change queued after them
    /// (planned on top of them) are rolled back and fail.
    ///
    /// Lookups can see a change from when it is applied, up to one commit before it is
    /// acknowledged.
    async fn change(
        &self,
        plan: impl FnOnce(&RdState, Instant) -> Result<Mutation, RdError>,
    ) -> Result<(Option<u64>, bool), RdError> {
        let (outcome, waiting) = {
            let mut state = write(&self.state);
            let mutation = plan(&state, Instant::now())?;
            let outcome = (mutation.id(), mutation.is_created());
            if mutation.is_empty() {
                (outcome, None)
            } else {
                let time = TimeBase::now();
                let ops = mutation.store_ops(|t| time.wall_of(t));
                let undo = state.undo_of(&mutation);
                state.apply(mutation);
                let (done, rx) = oneshot::channel();
                let mut queue = lock(&self.commits);
                queue.pending.push(Pending { ops, undo, done });
                let start = !std::mem::replace(&mut queue.committing, true);
                (outcome, Some((rx, start)))
            }
        };
        if let Some((rx, start)) = waiting {
            if start {
                match self.me.upgrade() {
                    Some(me) => {
                        tokio::spawn(commit_loop(me));
                    }
                    // Unreachable while `self` is borrowed from its Arc.
                    None => self.roll_back(Vec::new(), &StoreError::Backend("RD closed".into())),
                }
            }
            let result = rx
                .await
                .unwrap_or_else(|_| Err(StoreError::Backend("commit abandoned".into())));
            result.map_err(|err| {
                tracing::error!(%err, "registration change not committed");
                RdError::Store(err)
            })?;
        }
        Ok(outcome)
    }

    /// Rolls back `failed` (taken from the queue, oldest first) and everything still
    /// queued after it, newest first, and fails them with `err`.
    fn roll_back(&self, failed: Vec<Pending>, err: &StoreError) {
        let mut state = write(&self.state);
        let later = {
            let mut queue = lock(&self.commits);
            queue.committing = false;
            std::mem::take(&mut queue.pending)
        };
        let mut all = failed;
        all.extend(later);
        for p in all.into_iter().rev() {
            state.apply(p.undo);
            let _ = p.done.send(Err(err.clone()));
        }
    }

    /// Removes what expired; returns whether a commit failed (retry later).
    async fn expire(&self) -> bool {
        let now = Instant::now();
        let since = std::mem::replace(&mut *lock(&self.last_expiry_check), now);
        let expired = read(&self.state).expired_between(since, now);
        let failed = match self.change(|s, now| Ok(s.plan_expire(now))).await {
            Ok(_) => false,
            Err(err) => {
                tracing::warn!(%err, "cannot remove expired registrations; retrying");
                true
            }
        };
        if expired {
            // Registrations that just expired left the lookup results.
            self.lookups_changed();
        }
        failed
    }

    fn observable(&self, kind: LookupKind) -> &Observable {
        match kind {
            LookupKind::Endpoint => &self.observe_ep,
            LookupKind::Resource => &self.observe_res,
        }
    }

    fn lookup_digest(&self, kind: LookupKind, query: &LookupQuery, requester: SocketAddr) -> u64 {
        let result = read(&self.state).lookup(kind, query, Some(requester), Instant::now());
        digest(&result)
    }

    /// Notifies the observers of a lookup whose result changed (RFC 9176 §6.2: "every
    /// time the set of matching links changes or the content of a matching link
    /// changes, the RD sends a notification").
    fn lookups_changed(&self) {
        let now = Instant::now();
        for kind in [LookupKind::Endpoint, LookupKind::Resource] {
            let observable = self.observable(kind);
            let mut changed = false;
            {
                let mut observed = lock(&self.observed);
                let k = kind_index(kind);
                if observable.observer_count() == 0 {
                    observed
                        .entries
                        .retain(|_, t| t.kind != kind || now.duration_since(t.seen) < TRACK_GRACE);
                    if !observed.entries.values().any(|t| t.kind == kind) {
                        observed.overflow[k] = false;
                    }
                }
                if observed.overflow[k] {
                    changed = true;
                }
                for t in observed.entries.values_mut().filter(|t| t.kind == kind) {
                    let d = self.lookup_digest(kind, &t.query, t.requester);
                    if d != t.digest {
                        t.digest = d;
                        changed = true;
                    }
                }
            }
            if changed {
                observable.notify();
            }
        }
    }

    /// Remembers the query of an observer's lookup and its result's digest.
    fn track(&self, kind: LookupKind, ctx: &RequestContext, query: &LookupQuery, d: u64) {
        let mut key = vec![kind_index(kind) as u8];
        for arg in ctx.request.query_args() {
            key.extend_from_slice(&(arg.len() as u32).to_be_bytes());
            key.extend_from_slice(arg);
        }
        // The link-local scope of the requester decides what it may see (§6.1).
        let peer = corium::canonical_addr(ctx.peer);
        match peer {
            SocketAddr::V6(v6) if crate::state::is_link_local(peer.ip()) => {
                key.push(6);
                key.extend_from_slice(&v6.scope_id().to_be_bytes());
            }
            SocketAddr::V4(_) if crate::state::is_link_local(peer.ip()) => key.push(4),
            _ => key.push(0),
        }
        let mut observed = lock(&self.observed);
        let limit = self.config.max_observed_queries;
        let len = observed.entries.len();
        match observed.entries.get_mut(&key) {
            Some(t) => {
                t.digest = d;
                t.seen = Instant::now();
            }
            None if len < limit => {
                observed.entries.insert(
                    key,
                    Tracked {
                        kind,
                        query: query.clone(),
                        requester: ctx.peer,
                        digest: d,
                        seen: Instant::now(),
                    },
                );
            }
            None => observed.overflow[kind_index(kind)] = true,
        }
    }

    async fn handle_register(&self, ctx: RequestContext) -> Response {
        let requester = self.policy_requester(&ctx);
        let result = async {
            let params = RegistrationParams::from_query(
                ctx.request.query_args(),
                self.config.max_extra_attrs,
            )?;
            let cf = ctx.request.content_format().map(|c| c.0);
            let payload = &ctx.request.payload;
            self.mutate(|s, now| s.plan_register(&params, payload, cf, &requester, false, now))
                .await
        }
        .await;
        match result {
            Ok((Some(id), created)) => {
                tracing::debug!(peer = %ctx.peer, id, created, "registered");
                let mut response = Response::new(Code::CREATED);
                response.options.push(
                    OptionNumber::LOCATION_PATH,
                    REGISTRATION_PATH.as_bytes().to_vec(),
                );
                response
                    .options
                    .push(OptionNumber::LOCATION_PATH, id.to_string().into_bytes());
                response
            }
            Ok((None, _)) => Response::new(Code::INTERNAL_SERVER_ERROR),
            Err(err) => err.to_response(),
        }
    }

    async fn handle_update(&self, ctx: RequestContext) -> Response {
        let Some(id) = registration_id(&ctx) else {
            return RdError::NotFound.to_response();
        };
        let requester = self.policy_requester(&ctx);
        let result = async {
            let params = RegistrationParams::from_query(
                ctx.request.query_args(),
                self.config.max_extra_attrs,
            )?;
            let cf = ctx.request.content_format().map(|c| c.0);
            let payload = &ctx.request.payload;
            self.mutate(|s, now| s.plan_update(id, &params, payload, cf, &requester, now))
                .await
        }
        .await;
        match result {
            Ok(_) => Response::new(Code::CHANGED),
            Err(err) => err.to_response(),
        }
    }

    async fn handle_remove(&self, ctx: RequestContext) -> Response {
        let Some(id) = registration_id(&ctx) else {
            return RdError::NotFound.to_response();
        };
        let requester = self.policy_requester(&ctx);
        match self.mutate(|s, _| s.plan_remove(id, &requester)).await {
            Ok(_) => Response::new(Code::DELETED),
            Err(err) => err.to_response(),
        }
    }

    /// GET of a registration resource: its links, resolved (RFC 9176 §5.3.3 leaves
    /// this to future documents; it is offered read-only here).
    fn handle_read(&self, ctx: RequestContext) -> Response {
        let Some(cf) = accepted_format(ctx.request.accept()) else {
            return RdError::NotAcceptable.to_response();
        };
        let state = read(&self.state);
        let Some(reg) = registration_id(&ctx).and_then(|id| state.get(id)) else {
            return RdError::NotFound.to_response();
        };
        let links: Vec<&str> = reg.resolved_links().collect();
        links_response(cf, &links.join(","))
    }

    fn handle_lookup(&self, kind: LookupKind, ctx: RequestContext) -> Response {
        let cf = accepted_format(ctx.request.accept());
        let result = (|| {
            if cf.is_none() {
                return Err(RdError::NotAcceptable);
            }
            let query = LookupQuery::from_query(ctx.request.query_args())?;
            let result = read(&self.state).lookup(kind, &query, Some(ctx.peer), Instant::now());
            if ctx.request.options.get_uint(OptionNumber::OBSERVE) == Some(0) {
                self.track(kind, &ctx, &query, digest(&result));
            }
            result
        })();
        match result {
            Ok(payload) => links_response(cf.unwrap_or(LINK_FORMAT), &payload),
            Err(err) => err.to_response(),
        }
    }

    /// The RD's client for simple registration, bound on first use (dual-stack, or
    /// IPv4 where the host has no IPv6).
    async fn client(&self) -> std::io::Result<&Client> {
        self.client
            .get_or_try_init(|| async {
                let v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
                let v4 = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0));
                match Client::bind(v6).await {
                    Ok(c) => Ok(c),
                    Err(_) => Client::bind(v4).await,
                }
            })
            .await
    }

    /// GETs `peer`'s `/.well-known/core` (RFC 9176 §5.1, Figure 11), or takes it from
    /// the cache while fresh.
    async fn fetch_links(&self, peer: SocketAddr) -> Result<Vec<u8>, Response> {
        let now = Instant::now();
        if let Some(doc) = lock(&self.simple_cache).get(&peer) {
            if doc.fresh_until > now {
                return Ok(doc.payload.clone());
            }
        }
        let client = self.client().await.map_err(|e| {
            Response::with_payload(
                Code::INTERNAL_SERVER_ERROR,
                format!("cannot bind the RD's client socket: {e}"),
            )
        })?;
        let mut request = Request::new(Code::GET);
        request.set_path("/.well-known/core");
        request
            .options
            .set_uint(OptionNumber::ACCEPT, u32::from(LINK_FORMAT));
        let options = RequestOptions {
            timeout: Some(self.config.simple_fetch_timeout),
            ..RequestOptions::default()
        };
        let response = match client.send(peer, request, options).await {
            Ok(r) => r,
            Err(err) if err.is_timeout() => {
                return Err(Response::with_payload(
                    Code::GATEWAY_TIMEOUT,
                    format!("no answer to GET /.well-known/core: {err}"),
                ))
            }
            Err(err) => {
                return Err(Response::with_payload(
                    Code::BAD_GATEWAY,
                    format!("GET /.well-known/core failed: {err}"),
                ))
            }
        };
        if response.code != Code::CONTENT
            || response
                .content_format()
                .is_some_and(|cf| cf != ContentFormat::LINK_FORMAT)
        {
            return Err(Response::with_payload(
                Code::BAD_GATEWAY,
                format!(
                    "GET /.well-known/core answered {} (expected 2.05 link format)",
                    response.code
                ),
            ));
        }
        let max_age = Duration::from_secs(u64::from(response.max_age()));
        let mut cache = lock(&self.simple_cache);
        if cache.len() >= self.config.max_simple_cache {
            cache.retain(|_, d| d.fresh_until > now);
            if cache.len() >= self.config.max_simple_cache {
                if let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, d)| d.fresh_until)
                    .map(|(a, _)| *a)
                {
                    cache.remove(&oldest);
                }
            }
        }
        if self.config.max_simple_cache > 0 {
            cache.insert(
                peer,
                CachedDocument {
                    fresh_until: now + max_age,
                    payload: response.payload.clone(),
                },
            );
        }
        Ok(response.payload)
    }

    /// Simple registration (RFC 9176 §5.1): checks the parameters, fetches the
    /// requester's `/.well-known/core`, registers it, answers 2.04.
    async fn handle_simple(&self, ctx: RequestContext) -> Response {
        let requester = self.policy_requester(&ctx);
        let params = match RegistrationParams::from_query(
            ctx.request.query_args(),
            self.config.max_extra_attrs,
        ) {
            Ok(p) => p,
            Err(err) => return err.to_response(),
        };
        if !ctx.request.payload.is_empty() {
            return RdError::bad("simple registration takes no payload").to_response();
        }
        // Everything but the links is checked before the endpoint is contacted.
        let dry_run =
            read(&self.state).plan_register(&params, b"", None, &requester, true, Instant::now());
        if let Err(err) = dry_run {
            return err.to_response();
        }
        let Ok(_slot) = Arc::clone(&self.simple_slots).try_acquire_owned() else {
            let mut busy = Response::with_payload(
                Code::SERVICE_UNAVAILABLE,
                "too many simple registrations in progress",
            );
            busy.options
                .set_uint(OptionNumber::MAX_AGE, SIMPLE_BUSY_RETRY_SECS);
            return busy;
        };
        let links = match self.fetch_links(ctx.peer).await {
            Ok(l) => l,
            Err(response) => return response,
        };
        match self
            .mutate(|s, now| {
                s.plan_register(&params, &links, Some(LINK_FORMAT), &requester, true, now)
            })
            .await
        {
            Ok(_) => {
                tracing::debug!(peer = %ctx.peer, "simple registration");
                Response::new(Code::CHANGED)
            }
            Err(err) => err.to_response(),
        }
    }
}

/// The `{id}` of a registration resource path.
fn registration_id(ctx: &RequestContext) -> Option<u64> {
    let id = ctx.param("id")?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

fn digest(result: &Result<String, RdError>) -> u64 {
    let mut h = DefaultHasher::new();
    match result {
        Ok(text) => {
            0u8.hash(&mut h);
            text.hash(&mut h);
        }
        Err(err) => {
            1u8.hash(&mut h);
            err.code().0.hash(&mut h);
            err.to_string().hash(&mut h);
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_base_round_trips() {
        let t = TimeBase::now();
        let later = t.mono + Duration::from_millis(90_000_500);
        let wall = t.wall_of(later);
        assert!(wall >= t.wall_secs() + 90_000);
        let back = t.instant_of(wall);
        assert!(back >= later && back - later < Duration::from_secs(2));
        let past = t.instant_of(t.wall_secs().saturating_sub(10));
        assert!(past <= t.mono);
        // A damaged record far in the future does not panic.
        let far = t.instant_of(u64::MAX);
        assert!(far > t.mono);
    }
}
