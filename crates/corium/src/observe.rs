//! Observe (RFC 7641) in the runtime: [`Observable`] resources on the server side, and
//! [`Observation`] streams on the client side.
//!
//! Server: a resource made observable with
//! [`Resource::observable`](crate::Resource::observable) answers a GET with Observe = 0 by
//! registering the client (the endpoint keeps the list, RFC 7641 §4.1). When the
//! application calls [`Observable::notify`], each driver that serves observers of the
//! resource runs the GET handler once per distinct request (same options, so the same
//! representation) and sends the result to every observer of that request: the handler
//! runs once, not once per observer. Sequence numbers, the Confirmable-every-24-hours
//! rule and newest-state-wins under a slow client (§4.4, §4.5) live in the endpoint.
//!
//! Client: [`Client::observe`](crate::Client::observe) returns an [`Observation`] whose
//! [`next`](Observation::next) yields the first response and then every notification
//! (stale ones are dropped by the endpoint, §3.4). Dropping it forgets the relation, so
//! the next notification is answered with a Reset (passive cancel, §3.6);
//! [`Observation::cancel`] deregisters actively with a GET carrying Observe = 1.
//! When the latest notification's Max-Age (default 60 s) passes without a newer one, the
//! endpoint registers again with the same token and options (§3.3.1, 5 to 15 s later);
//! its answer continues the stream, and a timeout or Reset ends it with an error from
//! [`next`](Observation::next).
//!
//! Conditional attributes (draft-ietf-core-conditional-attributes-12) in the query of a
//! registration shape what each observer gets: `c.pmin` / `c.pmax` (least / most time
//! between notifications), `c.gt` / `c.lt` (crossing a threshold), `c.st` (a change of
//! at least this step), `c.band` (notify while inside, or outside, the gt/lt band),
//! `c.edge` (a boolean's rising or falling edge), `c.con` (Confirmable notifications),
//! `c.epmax` (evaluate at least this often); `c.epmin` is validated and otherwise
//! advisory. Invalid values are answered 4.00 (§3). Value conditions apply to payloads
//! that are a plain-text number or `true` / `false`; for other payloads every change
//! notifies.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use corium_proto::wire::{BlockValue, Code, OptionNumber};
use corium_proto::{
    Endpoint, IncomingId, NotifyOptions, ObservationId, Request, RequestOptions, Response, Token,
};
use tokio::sync::mpsc;
use tokio::time::Instant as TokioInstant;

use crate::client::Client;
use crate::driver::{Command, Outcome};
use crate::error::Error;
use crate::resource::Handler;
use crate::router::Params;
use crate::server::{CatchUnwind, RequestContext};

static NEXT_OBSERVABLE: AtomicU64 = AtomicU64::new(1);

struct ObservableInner {
    id: u64,
    /// The drivers that serve observers of this resource.
    drivers: Mutex<Vec<mpsc::UnboundedSender<Command>>>,
    observers: AtomicUsize,
}

/// The notifier of an observable resource (RFC 7641 §4.2).
///
/// Attach it to a resource with [`Resource::observable`](crate::Resource::observable);
/// call [`notify`](Self::notify) whenever the resource's state changes. Cheap to clone.
///
/// ```
/// use corium::{Code, Observable, RequestContext, Resource, Response, Router};
///
/// let obs = Observable::new();
/// let router = Router::new().route(
///     "/temp",
///     Resource::new()
///         .get(|_ctx: RequestContext| async { Response::with_payload(Code::CONTENT, "21.5") })
///         .observable(&obs),
/// );
/// // Later, when the temperature changed:
/// obs.notify();
/// ```
#[derive(Clone)]
pub struct Observable {
    inner: Arc<ObservableInner>,
}

impl Default for Observable {
    fn default() -> Self {
        Observable::new()
    }
}

impl fmt::Debug for Observable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observable")
            .field("id", &self.inner.id)
            .field("observers", &self.observer_count())
            .finish()
    }
}

impl Observable {
    /// A notifier with no observers yet.
    pub fn new() -> Observable {
        Observable {
            inner: Arc::new(ObservableInner {
                id: NEXT_OBSERVABLE.fetch_add(1, Ordering::Relaxed),
                drivers: Mutex::new(Vec::new()),
                observers: AtomicUsize::new(0),
            }),
        }
    }

    /// The resource changed: every observer gets a Non-confirmable notification with
    /// the GET handler's new response (the endpoint still makes one Confirmable every
    /// 24 hours, RFC 7641 §4.5).
    pub fn notify(&self) {
        self.notify_with(NotifyOptions::default());
    }

    /// The resource changed: every observer gets a Confirmable notification.
    pub fn notify_confirmable(&self) {
        self.notify_with(NotifyOptions { confirmable: true });
    }

    /// The resource changed; notifications go out as `options` says.
    pub fn notify_with(&self, options: NotifyOptions) {
        let mut drivers = self.inner.drivers.lock().unwrap_or_else(|e| e.into_inner());
        drivers.retain(|tx| {
            tx.send(Command::Notify {
                observable: self.inner.id,
                options,
            })
            .is_ok()
        });
    }

    /// How many clients observe the resource right now.
    pub fn observer_count(&self) -> usize {
        self.inner.observers.load(Ordering::Relaxed)
    }

    fn subscribe(&self, tx: &mpsc::UnboundedSender<Command>) {
        let mut drivers = self.inner.drivers.lock().unwrap_or_else(|e| e.into_inner());
        if !drivers.iter().any(|d| d.same_channel(tx)) {
            drivers.push(tx.clone());
        }
    }
}

/// What the observers that registered with the same request share: the resource, its
/// handler, the request and its conditional attributes. Kept once, not once per
/// observer, so a relation costs the runtime only its peer and condition state.
struct Registration {
    observable: Observable,
    handler: Arc<dyn Handler>,
    request: Request,
    params: Params,
    conditions: Conditions,
    /// Its key in [`Observers::shared`].
    key: Vec<u8>,
}

/// One observer being registered (the handler has not answered yet).
///
/// Once registered, a relation is kept as its shared registration alone (one word in
/// [`Observers::relations`]), plus an entry in [`Observers::extras`] for the few that
/// need more: a relation's size bounds how many observers fit in memory (the issue's
/// budget is 256 bytes per relation for the whole server). The peer is not kept either:
/// the endpoint has it ([`Endpoint::observation_peer`]).
struct Relation {
    shared: Arc<Registration>,
    extra: Option<Box<RelationExtra>>,
}

/// The rarely needed part of a [`Relation`].
#[derive(Default)]
struct RelationExtra {
    /// Per-observer state of the conditional attributes; `None` when the registration
    /// has none that depend on it (every change then notifies).
    state: Option<ConditionState>,
    /// RFC 8613 §4.1.3.5.2: the registration was OSCORE-protected; every notification
    /// to this observer is protected with its binding.
    sealer: Option<crate::oscore::Sealer>,
}

/// The server-side observe state of one driver.
#[derive(Default)]
pub(crate) struct Observers {
    /// Registrations whose handler has not answered yet.
    registering: HashMap<IncomingId, Relation>,
    /// The registered observers.
    relations: HashMap<ObservationId, Arc<Registration>>,
    /// Condition state and OSCORE sealers of the registered observers that have them.
    extras: HashMap<ObservationId, Box<RelationExtra>>,
    /// The registrations in use, by resource and request.
    shared: HashMap<Vec<u8>, Weak<Registration>>,
}

/// The key of a registration: the resource and everything of the request the handler
/// sees (method, options, payload, path parameters).
fn registration_key(observable: &Observable, request: &Request, params: &Params) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    key.extend_from_slice(&observable.inner.id.to_be_bytes());
    key.push(request.method.0);
    for (number, value) in request.options.iter() {
        key.extend_from_slice(&number.0.to_be_bytes());
        key.extend_from_slice(&(value.len() as u32).to_be_bytes());
        key.extend_from_slice(value);
    }
    key.extend_from_slice(&(request.payload.len() as u32).to_be_bytes());
    key.extend_from_slice(&request.payload);
    for (name, value) in params {
        for part in [name.as_bytes(), value.as_bytes()] {
            key.extend_from_slice(&(part.len() as u32).to_be_bytes());
            key.extend_from_slice(part);
        }
    }
    key
}

impl Observers {
    /// A GET with Observe = 0 for an observable resource: answer it with
    /// `respond_observe` once the handler is done. Returns the 4.00 answer to give
    /// instead when its conditional attributes are invalid (draft-ietf-core-conditional-
    /// attributes §3).
    pub(crate) fn registration(
        &mut self,
        id: IncomingId,
        observable: Observable,
        handler: Arc<dyn Handler>,
        request: Request,
        params: Params,
    ) -> Option<Response> {
        let key = registration_key(&observable, &request, &params);
        let shared = match self.shared.get(&key).and_then(Weak::upgrade) {
            Some(shared) => shared,
            None => {
                let conditions = match Conditions::parse(&request) {
                    Ok(c) => c,
                    Err(why) => return Some(Response::with_payload(Code::BAD_REQUEST, why)),
                };
                let shared = Arc::new(Registration {
                    observable,
                    handler,
                    request,
                    params,
                    conditions,
                    key: key.clone(),
                });
                self.shared.insert(key, Arc::downgrade(&shared));
                shared
            }
        };
        let extra = shared.conditions.needs_state().then(|| {
            Box::new(RelationExtra {
                state: Some(ConditionState::default()),
                sealer: None,
            })
        });
        self.registering.insert(id, Relation { shared, extra });
        None
    }

    /// The registration `id` came OSCORE-protected: its answer and notifications are
    /// protected with `sealer` (RFC 8613 §4.1.3.5.2).
    pub(crate) fn seal_with(&mut self, id: IncomingId, sealer: crate::oscore::Sealer) {
        if let Some(r) = self.registering.get_mut(&id) {
            r.extra.get_or_insert_default().sealer = Some(sealer);
        }
    }

    /// Drops a relation, and its shared registration with the last one.
    fn release(&mut self, relation: Relation) {
        if Arc::strong_count(&relation.shared) == 1 {
            self.shared.remove(&relation.shared.key);
        }
    }

    /// Answers a request; registers the observer when it asked to be one. Gives the
    /// response back when the request was not a registration.
    pub(crate) fn respond(
        &mut self,
        endpoint: &mut Endpoint<SocketAddr>,
        now: corium_proto::Instant,
        id: IncomingId,
        response: Response,
        tx: &mpsc::UnboundedSender<Command>,
    ) -> Option<Response> {
        let Some(mut relation) = self.registering.remove(&id) else {
            return Some(response);
        };
        let sample = Sample::of(&response);
        let response = match relation.sealer() {
            None => response,
            // The outer code of a protected answer is always 2.xx (RFC 8613 §4.2): an
            // inner error must not register, so it is answered as a plain response.
            Some(sealer) if !response.code.is_success() => {
                let sealed = sealer.seal(response);
                self.release(relation);
                return Some(sealed);
            }
            Some(sealer) => match sealer.seal_notification(&response) {
                Some(sealed) => sealed,
                None => {
                    self.release(relation);
                    return Some(Response::new(Code::INTERNAL_SERVER_ERROR));
                }
            },
        };
        match endpoint.respond_observe(now, id, response) {
            Ok(obs) => {
                let observable = &relation.shared.observable;
                observable.subscribe(tx);
                observable.inner.observers.fetch_add(1, Ordering::Relaxed);
                relation.reported(TokioInstant::now(), sample);
                relation.schedule(obs, tx);
                if let Some(extra) = relation.extra {
                    self.extras.insert(obs, extra);
                }
                self.relations.insert(obs, relation.shared);
            }
            Err(err) => {
                tracing::debug!(?id, %err, "observe registration not kept");
                self.release(relation);
            }
        }
        None
    }

    /// The endpoint ended a relation (RST, timeout, deregistration, replacement).
    pub(crate) fn ended(&mut self, obs: ObservationId) {
        if let Some(shared) = self.relations.remove(&obs) {
            shared
                .observable
                .inner
                .observers
                .fetch_sub(1, Ordering::Relaxed);
            let extra = self.extras.remove(&obs);
            self.release(Relation { shared, extra });
        }
    }

    /// The resource changed: runs the GET handler once per distinct request among its
    /// observers and sends the result to each of them.
    pub(crate) fn notify(
        &mut self,
        endpoint: &mut Endpoint<SocketAddr>,
        now: corium_proto::Instant,
        observable: u64,
        options: NotifyOptions,
        tx: &mpsc::UnboundedSender<Command>,
    ) {
        // Observers of one registration share its handler run (grouped by the shared
        // registration itself, so this is linear in the observers).
        let mut groups: HashMap<*const Registration, (Vec<ObservationId>, &Registration)> =
            HashMap::new();
        for (obs, r) in &self.relations {
            if r.observable.inner.id != observable {
                continue;
            }
            groups
                .entry(Arc::as_ptr(r))
                .or_insert_with(|| (Vec::new(), r))
                .0
                .push(*obs);
        }
        let mut ready = Vec::new();
        for (ids, r) in groups.into_values() {
            let Some(peer) = ids.first().and_then(|id| endpoint.observation_peer(*id)) else {
                continue;
            };
            if let Some(ready_now) = r.run(*peer, ids, options, true, tx) {
                ready.push(ready_now);
            }
        }
        for (ids, response) in ready {
            self.deliver(endpoint, now, ids, response, options, true, tx);
        }
    }

    /// A timer of one relation's conditional attributes (c.pmin deferral, c.pmax,
    /// c.epmax): evaluates the resource again for it.
    pub(crate) fn timer(
        &mut self,
        endpoint: &mut Endpoint<SocketAddr>,
        now: corium_proto::Instant,
        obs: ObservationId,
        tx: &mpsc::UnboundedSender<Command>,
    ) {
        let Some(r) = self.relations.get(&obs) else {
            return;
        };
        let Some(peer) = endpoint.observation_peer(obs) else {
            return;
        };
        let options = NotifyOptions::default();
        if let Some((ids, response)) = r.run(*peer, vec![obs], options, false, tx) {
            self.deliver(endpoint, now, ids, response, options, false, tx);
        }
    }

    /// Sends one notification to several observers, each as its conditional attributes
    /// allow. `change` says whether the resource changed (or a timer fired).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn deliver(
        &mut self,
        endpoint: &mut Endpoint<SocketAddr>,
        now: corium_proto::Instant,
        ids: Vec<ObservationId>,
        response: Response,
        options: NotifyOptions,
        change: bool,
        tx: &mpsc::UnboundedSender<Command>,
    ) {
        let last = !response.code.is_success();
        let sample = Sample::of(&response);
        let at = TokioInstant::now();
        for obs in ids {
            let Some(shared) = self.relations.get(&obs) else {
                continue;
            };
            let conditions = &shared.conditions;
            let mut extra = if self.extras.is_empty() {
                None
            } else {
                self.extras.remove(&obs)
            };
            if !last && !should_send(conditions, extra.as_deref_mut(), at, sample, change) {
                schedule(conditions, extra.as_deref_mut(), obs, tx);
                if let Some(extra) = extra {
                    self.extras.insert(obs, extra);
                }
                continue;
            }
            let options = NotifyOptions {
                confirmable: options.confirmable || conditions.con,
            };
            let sealer = extra.as_deref_mut().and_then(|e| e.sealer.as_mut());
            let sealed = sealer.is_some();
            let outgoing = match sealer {
                None => Some(response.clone()),
                Some(sealer) => sealer.seal_notification(&response),
            };
            let result = match outgoing {
                Some(outgoing) => endpoint.notify(now, obs, outgoing, options),
                None => Err(corium_proto::NotifyError::UnknownObservation),
            };
            if sealed && (last || result.is_err()) {
                // The protected final notification has a 2.xx outer code (RFC 8613 §4.2),
                // so the endpoint would keep the relation listed.
                endpoint.end_observation(obs);
            }
            if last || result.is_err() {
                // An error notification ends the relation (RFC 7641 §3.2).
                if let Some(extra) = extra {
                    self.extras.insert(obs, extra);
                }
                self.ended(obs);
                continue;
            }
            reported(extra.as_deref_mut(), at, sample);
            schedule(conditions, extra.as_deref_mut(), obs, tx);
            if let Some(extra) = extra {
                self.extras.insert(obs, extra);
            }
        }
    }
}

impl Relation {
    /// The OSCORE sealer of a protected registration.
    fn sealer(&mut self) -> Option<&mut crate::oscore::Sealer> {
        self.extra.as_deref_mut()?.sealer.as_mut()
    }

    /// A notification (or the first response) with `sample` went out at `at`.
    fn reported(&mut self, at: TokioInstant, sample: Option<Sample>) {
        reported(self.extra.as_deref_mut(), at, sample);
    }

    #[cfg(test)]
    fn should_send(&mut self, now: TokioInstant, sample: Option<Sample>, change: bool) -> bool {
        should_send(
            &self.shared.conditions,
            self.extra.as_deref_mut(),
            now,
            sample,
            change,
        )
    }

    fn schedule(&mut self, obs: ObservationId, tx: &mpsc::UnboundedSender<Command>) {
        schedule(&self.shared.conditions, self.extra.as_deref_mut(), obs, tx);
    }
}

impl Registration {
    /// Runs the GET handler for the observers `ids` (who share this relation's
    /// request): the response now when the handler is ready at once, otherwise later as
    /// [`Command::Notifications`].
    fn run(
        &self,
        peer: SocketAddr,
        ids: Vec<ObservationId>,
        options: NotifyOptions,
        change: bool,
        tx: &mpsc::UnboundedSender<Command>,
    ) -> Option<(Vec<ObservationId>, Response)> {
        let shared = self;
        let mut ctx = RequestContext::new(peer, shared.request.clone());
        ctx.params = shared.params.clone();
        let mut fut = CatchUnwind::Start(shared.handler.clone(), Some(ctx));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(&mut fut).poll(&mut cx) {
            Poll::Ready(response) => Some((ids, response_or_500(response))),
            Poll::Pending => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let response = response_or_500(fut.await);
                    let _ = tx.send(Command::Notifications {
                        ids,
                        response,
                        options,
                        change,
                    });
                });
                None
            }
        }
    }
}

/// A notification (or the first response) with `sample` went out at `at`.
fn reported(extra: Option<&mut RelationExtra>, at: TokioInstant, sample: Option<Sample>) {
    if let Some(st) = extra.and_then(|e| e.state.as_mut()) {
        st.reported(at, sample);
    }
}

/// Whether a notification with `sample` goes out now (the draft's Appendix A logic);
/// defers it to the end of c.pmin when that is what holds it back.
fn should_send(
    c: &Conditions,
    extra: Option<&mut RelationExtra>,
    now: TokioInstant,
    sample: Option<Sample>,
    change: bool,
) -> bool {
    // No condition that needs per-observer state: every change notifies.
    let Some(st) = extra.and_then(|e| e.state.as_mut()) else {
        return change;
    };
    let elapsed = st.last_sent.map_or(Duration::MAX, |t| now - t);
    let pmax_due = c.pmax.is_some_and(|p| elapsed >= p);
    let changed = change || st.pending;
    let triggered = match (sample, st.last_value) {
        _ if !c.has_value_conditions() => changed,
        (Some(Sample::Number(v)), prev) => {
            let prev = match prev {
                Some(Sample::Number(p)) => Some(p),
                _ => None,
            };
            c.number_triggers(v, prev, changed)
        }
        (Some(Sample::Bool(b)), prev) => match (c.edge, prev) {
            // c.edge: only the named transition notifies.
            (Some(edge), Some(Sample::Bool(p))) => p != b && b == edge,
            (Some(_), _) => false,
            (None, _) => changed,
        },
        // Not a scalar: the value conditions cannot apply; every change notifies.
        (None, _) => changed,
    };
    if !pmax_due && !triggered {
        st.pending = false;
        return false;
    }
    if !pmax_due && c.pmin.is_some_and(|p| elapsed < p) {
        st.pending = true;
        return false;
    }
    true
}

/// Arms a relation's one timer at the earliest of: the end of c.pmin when a
/// notification waits for it, c.pmax after the last notification, c.epmax from now.
fn schedule(
    c: &Conditions,
    extra: Option<&mut RelationExtra>,
    obs: ObservationId,
    tx: &mpsc::UnboundedSender<Command>,
) {
    let Some(st) = extra.and_then(|e| e.state.as_mut()) else {
        return;
    };
    if let Some(t) = st.timer.take() {
        t.abort();
    }
    let now = TokioInstant::now();
    let last = st.last_sent.unwrap_or(now);
    let at = [
        c.pmin.filter(|_| st.pending).map(|p| last + p),
        c.pmax.map(|p| last + p),
        c.epmax.map(|p| now + p),
    ]
    .into_iter()
    .flatten()
    .min();
    let Some(at) = at else {
        return;
    };
    let tx = tx.clone();
    st.timer = Some(tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        let _ = tx.send(Command::ObserverTimer { obs });
    }));
}

/// A scalar resource value, for the conditional attributes.
#[derive(Copy, Clone, Debug, PartialEq)]
enum Sample {
    Number(f64),
    Bool(bool),
}

impl Sample {
    /// The payload as a number or a boolean, if it is one (text).
    fn of(response: &Response) -> Option<Sample> {
        let text = std::str::from_utf8(&response.payload).ok()?.trim();
        match text {
            "true" => Some(Sample::Bool(true)),
            "false" => Some(Sample::Bool(false)),
            _ => text
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Sample::Number),
        }
    }
}

/// Per-observer state of the conditional attributes.
#[derive(Debug, Default)]
struct ConditionState {
    /// When the last notification (or the first response) went out.
    last_sent: Option<TokioInstant>,
    /// The value it carried.
    last_value: Option<Sample>,
    /// A notification waits for c.pmin to pass.
    pending: bool,
    /// The one timer of this relation.
    timer: Option<tokio::task::JoinHandle<()>>,
}

impl ConditionState {
    fn reported(&mut self, at: TokioInstant, sample: Option<Sample>) {
        self.last_sent = Some(at);
        self.last_value = sample;
        self.pending = false;
    }
}

impl Drop for ConditionState {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
    }
}

/// The conditional attributes of one registration (draft-ietf-core-conditional-
/// attributes-12 §3), from its Uri-Query: `c.pmin`, `c.pmax`, `c.epmin`, `c.epmax`,
/// `c.gt`, `c.lt`, `c.st`, `c.band`, `c.edge`, `c.con`. Unknown `c.*` names and other
/// query arguments are left to the handler.
#[derive(Clone, Debug, Default, PartialEq)]
struct Conditions {
    pmin: Option<Duration>,
    pmax: Option<Duration>,
    epmax: Option<Duration>,
    gt: Option<f64>,
    lt: Option<f64>,
    st: Option<f64>,
    band: bool,
    edge: Option<bool>,
    con: bool,
}

/// The longest period accepted (a year): longer values are treated as invalid.
const MAX_PERIOD_SECS: f64 = 366.0 * 24.0 * 3600.0;

fn decimal(value: Option<&str>) -> Option<f64> {
    let v = value?;
    // xs:decimal: digits with an optional sign and point, no exponent.
    if v.is_empty()
        || !v
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+'))
    {
        return None;
    }
    v.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn period(value: Option<&str>) -> Option<Duration> {
    decimal(value)
        .filter(|v| *v > 0.0 && *v <= MAX_PERIOD_SECS)
        .map(Duration::from_secs_f64)
}

fn boolean(value: Option<&str>) -> Option<bool> {
    match value? {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

impl Conditions {
    fn parse(request: &Request) -> Result<Conditions, &'static str> {
        let mut c = Conditions::default();
        let mut epmin = None;
        for arg in request.query_args() {
            let Ok(arg) = std::str::from_utf8(arg) else {
                continue;
            };
            let (name, value) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (arg, None),
            };
            match name {
                "c.pmin" => c.pmin = Some(period(value).ok_or("c.pmin must be > 0")?),
                "c.pmax" => c.pmax = Some(period(value).ok_or("c.pmax must be > 0")?),
                "c.epmin" => epmin = Some(period(value).ok_or("c.epmin must be > 0")?),
                "c.epmax" => c.epmax = Some(period(value).ok_or("c.epmax must be > 0")?),
                "c.gt" => c.gt = Some(decimal(value).ok_or("c.gt must be a decimal")?),
                "c.lt" => c.lt = Some(decimal(value).ok_or("c.lt must be a decimal")?),
                "c.st" => {
                    c.st = Some(
                        decimal(value)
                            .filter(|v| *v > 0.0)
                            .ok_or("c.st must be > 0")?,
                    );
                }
                "c.band" => c.band = true,
                "c.edge" => c.edge = Some(boolean(value).ok_or("c.edge must be 0 or 1")?),
                "c.con" => c.con = boolean(value).ok_or("c.con must be 0 or 1")?,
                _ => {}
            }
        }
        if let (Some(min), Some(max)) = (c.pmin, c.pmax) {
            if max < min {
                return Err("c.pmax must be >= c.pmin");
            }
        }
        if let (Some(min), Some(max)) = (epmin, c.epmax) {
            if max <= min {
                return Err("c.epmax must be > c.epmin");
            }
        }
        if c.band && c.gt.is_none() && c.lt.is_none() {
            return Err("c.band needs c.gt or c.lt");
        }
        Ok(c)
    }

    /// Whether an observer needs [`ConditionState`]: periods, timers or value
    /// conditions (`c.con` alone does not).
    fn needs_state(&self) -> bool {
        self.pmin.is_some()
            || self.pmax.is_some()
            || self.epmax.is_some()
            || self.has_value_conditions()
    }

    fn has_value_conditions(&self) -> bool {
        self.gt.is_some() || self.lt.is_some() || self.st.is_some() || self.edge.is_some()
    }

    /// c.gt / c.lt crossings, c.st steps, or the c.band ranges, for a numeric value `v`
    /// against the last reported `prev`.
    fn number_triggers(&self, v: f64, prev: Option<f64>, changed: bool) -> bool {
        if self.band {
            let in_band = match (self.gt, self.lt) {
                (Some(gt), None) => v <= gt,
                (None, Some(lt)) => lt <= v,
                (Some(gt), Some(lt)) if gt < lt => gt <= v && v <= lt,
                (Some(gt), Some(lt)) => gt < v || v < lt,
                (None, None) => false,
            };
            let step = match (self.st, prev) {
                (Some(s), Some(p)) => (v - p).abs() >= s,
                _ => false,
            };
            return in_band || step;
        }
        let Some(p) = prev else {
            return changed;
        };
        self.gt.is_some_and(|g| (v > g) != (p > g))
            || self.lt.is_some_and(|l| (v < l) != (p < l))
            || self.st.is_some_and(|s| (v - p).abs() >= s)
    }
}

fn response_or_500(response: Option<Response>) -> Response {
    response.unwrap_or_else(|| {
        tracing::error!("observe handler panicked; notifying 5.00");
        Response::new(Code::INTERNAL_SERVER_ERROR)
    })
}

/// Whether a response is block 0 of several (RFC 7959 §2.6 for notifications).
fn starts_blockwise(response: &Response) -> bool {
    response
        .options
        .get(OptionNumber::BLOCK2)
        .and_then(BlockValue::decode)
        .is_some_and(|b| b.more && b.num == 0)
}

/// An observation of a resource (RFC 7641 §3): the first response, then every
/// notification, from [`Client::observe`](crate::Client::observe).
///
/// Dropping it forgets the relation; the server learns at its next notification, which
/// is answered with a Reset (passive cancel, RFC 7641 §3.6). [`cancel`](Self::cancel)
/// deregisters explicitly.
pub struct Observation {
    client: Client,
    key: u64,
    peer: SocketAddr,
    request: Request,
    token: Token,
    timeout: Duration,
    first: Option<Response>,
    rx: mpsc::UnboundedReceiver<Outcome>,
    done: bool,
    /// RFC 8613: the registration was protected; `request` is the inner one.
    security: Option<crate::oscore::ObserveSecurity>,
}

impl fmt::Debug for Observation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observation")
            .field("peer", &self.peer)
            .field("token", &self.token)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.client.command(Command::Cancel { key: self.key });
        }
    }
}

impl Observation {
    /// Sends the registration and waits for the first response. With `security`,
    /// `request` is the protected registration and every response is verified.
    pub(crate) async fn start(
        client: Client,
        peer: SocketAddr,
        request: Request,
        mut options: RequestOptions,
        timeout: Duration,
        security: Option<crate::oscore::ObserveSecurity>,
    ) -> Result<Observation, Error> {
        let token = options
            .token
            .clone()
            .unwrap_or_else(|| Token::new(&rand::random::<[u8; 8]>()));
        options.token = Some(token.clone());
        options.observe = true;
        // RFC 8613 §7.4: the protected registration cannot be sent again as it is.
        options.no_reregistration |= security.is_some();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let key = client.next_key();
        client.command(Command::Observe {
            key,
            peer,
            request: request.clone(),
            options,
            tx,
        })?;
        let request = match &security {
            Some(s) => s.inner.clone(),
            None => request,
        };
        let mut observation = Observation {
            client,
            key,
            peer,
            request,
            token,
            timeout,
            first: None,
            rx: mpsc::unbounded_channel().1,
            done: false,
            security,
        };
        match rx.recv().await {
            // The first answer must verify (RFC 8613 §8.4); if not, the Drop cancels.
            Some(Outcome::Response(r)) => observation.first = Some(observation.verify(r)?),
            Some(Outcome::Failed(err)) => {
                observation.done = true;
                return Err(Error::from_request_error(err, peer, timeout));
            }
            Some(Outcome::Rejected(err)) => {
                observation.done = true;
                return Err(err.into());
            }
            Some(Outcome::ConnectFailed(kind, text)) => {
                observation.done = true;
                return Err(Error::connect_failed(kind, &text, peer));
            }
            Some(Outcome::Pong) | None => {
                observation.done = true;
                return Err(Error::closed());
            }
        }
        observation.rx = rx;
        Ok(observation)
    }

    /// RFC 8613 §8.4: the verified inner response of a protected observation (the
    /// response itself otherwise). A verified response without inner Observe ends the
    /// observation, which the endpoint (seeing the outer Observe) would keep.
    fn verify(&mut self, outer: Response) -> Result<Response, Error> {
        let Some(security) = &mut self.security else {
            return Ok(outer);
        };
        if starts_blockwise(&outer) {
            // The first outer block of a large protected notification cannot be
            // verified alone; `complete_blocks` replaces it with a protected GET.
            return Ok(outer);
        }
        let inner = security.open(&outer)?;
        if !inner.options.contains(OptionNumber::OBSERVE)
            && outer.options.contains(OptionNumber::OBSERVE)
        {
            self.done = true;
            let _ = self.client.command(Command::Cancel { key: self.key });
        }
        Ok(inner)
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The first response, until [`next`](Self::next) takes it.
    pub(crate) fn first_response(&self) -> Option<&Response> {
        self.first.as_ref()
    }

    /// The next response: the first one, then each notification in order (older ones
    /// are dropped, RFC 7641 §3.4). `None` once the observation is over: the resource was
    /// not observable, the server sent an error or ended it, or it was cancelled. A
    /// notification carrying the first block of a larger representation (RFC 7959 §2.6)
    /// is completed with a GET of the whole representation.
    pub async fn next(&mut self) -> Option<Result<Response, Error>> {
        let response = match self.first.take() {
            Some(r) => r,
            None => loop {
                if self.done {
                    return None;
                }
                match self.rx.recv().await {
                    Some(Outcome::Response(r)) => {
                        let notification = r.options.contains(OptionNumber::OBSERVE);
                        match self.verify(r) {
                            Ok(inner) => break inner,
                            // A notification that does not verify is dropped (a forged or
                            // replayed one must not end the observation); a final answer
                            // that does not verify ends it with the error.
                            Err(e) if notification => {
                                tracing::debug!(peer = %self.peer, %e, "notification dropped");
                            }
                            Err(e) => {
                                self.done = true;
                                return Some(Err(e));
                            }
                        }
                    }
                    Some(Outcome::Failed(err)) => {
                        self.done = true;
                        return Some(Err(Error::from_request_error(err, self.peer, self.timeout)));
                    }
                    Some(Outcome::Rejected(err)) => {
                        self.done = true;
                        return Some(Err(err.into()));
                    }
                    Some(Outcome::ConnectFailed(kind, text)) => {
                        self.done = true;
                        return Some(Err(Error::connect_failed(kind, &text, self.peer)));
                    }
                    Some(Outcome::Pong) | None => {
                        self.done = true;
                        return None;
                    }
                }
            },
        };
        Some(self.complete_blocks(response).await)
    }

    /// RFC 7959 §2.6: a notification with Block2 0 and more blocks to come is completed
    /// with a plain GET (no Observe) of the whole representation.
    async fn complete_blocks(&self, response: Response) -> Result<Response, Error> {
        if !starts_blockwise(&response) {
            return Ok(response);
        }
        let mut whole = match &self.security {
            // RFC 8613: a new protected request (the outer blocks of a notification
            // cannot be verified piecewise).
            Some(security) => {
                security
                    .send(
                        &self.client,
                        self.peer,
                        self.request.clone(),
                        RequestOptions::default(),
                    )
                    .await?
            }
            None => {
                self.client
                    .send(self.peer, self.request.clone(), RequestOptions::default())
                    .await?
            }
        };
        if let Some(seq) = response.options.get_uint(OptionNumber::OBSERVE) {
            whole.options.set_uint(OptionNumber::OBSERVE, seq);
        }
        Ok(whole)
    }

    /// Deregisters actively (RFC 7641 §3.6): forgets the relation and sends a GET with
    /// Observe = 1 and the same token; returns the server's answer to it.
    pub async fn cancel(mut self) -> Result<Response, Error> {
        self.done = true;
        self.client.command(Command::Cancel { key: self.key })?;
        let mut request = self.request.clone();
        request.options.set_uint(OptionNumber::OBSERVE, 1);
        let options = RequestOptions {
            token: Some(self.token.clone()),
            timeout: Some(self.timeout),
            ..Default::default()
        };
        match self.security.take() {
            // RFC 8613 §4.1.3.5.1: the deregistration is a new protected request.
            Some(security) => {
                security
                    .send(&self.client, self.peer, request, options)
                    .await
            }
            None => self.client.send(self.peer, request, options).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conditions(query: &str) -> Result<Conditions, &'static str> {
        let mut r = Request::new(Code::GET);
        for arg in query.split('&') {
            r.options
                .push(OptionNumber::URI_QUERY, arg.as_bytes().to_vec());
        }
        Conditions::parse(&r)
    }

    fn relation(query: &str) -> Relation {
        Relation {
            shared: Arc::new(Registration {
                observable: Observable::new(),
                handler: Arc::new(|_ctx: RequestContext| async { Response::new(Code::CONTENT) }),
                request: Request::new(Code::GET),
                params: Vec::new(),
                conditions: conditions(query).unwrap(),
                key: Vec::new(),
            }),
            extra: Some(Box::new(RelationExtra {
                state: Some(ConditionState::default()),
                sealer: None,
            })),
        }
    }

    /// Observers registering with the same request share one registration; it goes
    /// with the last of them.
    #[test]
    fn identical_registrations_are_shared() {
        let mut observers = Observers::default();
        let observable = Observable::new();
        let handler: Arc<dyn Handler> =
            Arc::new(|_ctx: RequestContext| async { Response::new(Code::CONTENT) });
        let mut request = Request::new(Code::GET);
        request.set_path("/obs");
        for id in [1, 2] {
            let refused = observers.registration(
                IncomingId(id),
                observable.clone(),
                handler.clone(),
                request.clone(),
                Vec::new(),
            );
            assert!(refused.is_none());
        }
        let a = &observers.registering[&IncomingId(1)].shared;
        let b = &observers.registering[&IncomingId(2)].shared;
        assert!(Arc::ptr_eq(a, b));
        assert_eq!(observers.shared.len(), 1);
        for id in [1, 2] {
            let r = observers.registering.remove(&IncomingId(id)).unwrap();
            observers.release(r);
        }
        assert!(observers.shared.is_empty());
    }

    #[test]
    fn parsing() {
        let c = conditions("c.pmin=0.5&c.pmax=10&c.gt=-1.5&c.con=1&other=x").unwrap();
        assert_eq!(c.pmin, Some(Duration::from_millis(500)));
        assert_eq!(c.pmax, Some(Duration::from_secs(10)));
        assert_eq!(c.gt, Some(-1.5));
        assert!(c.con);
        assert_eq!(conditions("x=1").unwrap(), Conditions::default());
        assert!(
            conditions("c.gt=1e3").is_err(),
            "xs:decimal has no exponent"
        );
        assert!(conditions("c.pmin").is_err());
        assert!(conditions("c.band&c.lt=3").unwrap().band);
    }

    /// c.band with gt < lt: in-band; with gt > lt: out-of-band (draft §3.1.4).
    #[test]
    fn bands() {
        let inband = conditions("c.band&c.gt=10&c.lt=20").unwrap();
        assert!(inband.number_triggers(15.0, Some(14.0), true));
        assert!(inband.number_triggers(10.0, Some(14.0), true));
        assert!(!inband.number_triggers(25.0, Some(14.0), true));
        let outband = conditions("c.band&c.gt=20&c.lt=10").unwrap();
        assert!(outband.number_triggers(25.0, Some(14.0), true));
        assert!(outband.number_triggers(5.0, Some(14.0), true));
        assert!(!outband.number_triggers(15.0, Some(14.0), true));
        assert!(!outband.number_triggers(20.0, Some(14.0), true));
        let min_only = conditions("c.band&c.lt=10").unwrap();
        assert!(min_only.number_triggers(10.0, None, true));
        assert!(!min_only.number_triggers(9.0, None, true));
    }

    /// c.edge=1: only false → true notifies.
    #[tokio::test]
    async fn rising_edge() {
        let mut r = relation("c.edge=1");
        let now = TokioInstant::now();
        r.reported(now, Some(Sample::Bool(false)));
        assert!(!r.should_send(now, Some(Sample::Bool(false)), true));
        assert!(r.should_send(now, Some(Sample::Bool(true)), true));
        r.reported(now, Some(Sample::Bool(true)));
        assert!(!r.should_send(now, Some(Sample::Bool(false)), true));
    }

    /// c.pmin holds a change back and marks it pending; c.pmax forces one.
    #[tokio::test]
    async fn periods() {
        let mut r = relation("c.pmin=10&c.pmax=20");
        let t0 = TokioInstant::now();
        r.reported(t0, Some(Sample::Number(1.0)));
        assert!(!r.should_send(t0 + Duration::from_secs(1), None, true));
        assert!(r.extra.as_ref().unwrap().state.as_ref().unwrap().pending);
        assert!(r.should_send(t0 + Duration::from_secs(11), None, false));
        r.reported(t0 + Duration::from_secs(11), None);
        assert!(!r.should_send(t0 + Duration::from_secs(20), None, false));
        assert!(r.should_send(t0 + Duration::from_secs(31), None, false));
    }
}
