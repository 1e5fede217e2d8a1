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

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use corium_proto::wire::{BlockValue, Code, OptionNumber};
use corium_proto::{
    Endpoint, IncomingId, NotifyOptions, ObservationId, Request, RequestOptions, Response, Token,
};
use tokio::sync::mpsc;

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
        let mut drivers = self
            .inner
            .drivers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
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
        let mut drivers = self
            .inner
            .drivers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !drivers.iter().any(|d| d.same_channel(tx)) {
            drivers.push(tx.clone());
        }
    }
}

/// One registered observer, as the driver keeps it to run the handler again.
struct Relation {
    observable: Observable,
    handler: Arc<dyn Handler>,
    peer: SocketAddr,
    request: Request,
    params: Params,
}

/// The server-side observe state of one driver.
#[derive(Default)]
pub(crate) struct Observers {
    /// Registrations whose handler has not answered yet.
    registering: HashMap<IncomingId, Relation>,
    relations: HashMap<ObservationId, Relation>,
}

impl Observers {
    /// A GET with Observe = 0 for an observable resource: answer it with
    /// `respond_observe` once the handler is done.
    pub(crate) fn registration(
        &mut self,
        id: IncomingId,
        observable: Observable,
        handler: Arc<dyn Handler>,
        peer: SocketAddr,
        request: Request,
        params: Params,
    ) {
        self.registering.insert(
            id,
            Relation {
                observable,
                handler,
                peer,
                request,
                params,
            },
        );
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
        let Some(relation) = self.registering.remove(&id) else {
            return Some(response);
        };
        match endpoint.respond_observe(now, id, response) {
            Ok(obs) => {
                relation.observable.subscribe(tx);
                relation
                    .observable
                    .inner
                    .observers
                    .fetch_add(1, Ordering::Relaxed);
                self.relations.insert(obs, relation);
            }
            Err(err) => tracing::debug!(?id, %err, "observe registration not kept"),
        }
        None
    }

    /// The endpoint ended a relation (RST, timeout, deregistration, replacement).
    pub(crate) fn ended(&mut self, obs: ObservationId) {
        if let Some(r) = self.relations.remove(&obs) {
            r.observable
                .inner
                .observers
                .fetch_sub(1, Ordering::Relaxed);
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
        let mut groups: Vec<(Vec<ObservationId>, &Relation)> = Vec::new();
        for (obs, r) in &self.relations {
            if r.observable.inner.id != observable {
                continue;
            }
            match groups
                .iter_mut()
                .find(|(_, g)| g.request == r.request && g.params == r.params)
            {
                Some((ids, _)) => ids.push(*obs),
                None => groups.push((vec![*obs], r)),
            }
        }
        let mut ready = Vec::new();
        for (ids, r) in groups {
            let mut ctx = RequestContext::new(r.peer, r.request.clone());
            ctx.params = r.params.clone();
            let mut fut = CatchUnwind::Start(r.handler.clone(), Some(ctx));
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match Pin::new(&mut fut).poll(&mut cx) {
                Poll::Ready(response) => ready.push((ids, response_or_500(response))),
                Poll::Pending => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let response = response_or_500(fut.await);
                        let _ = tx.send(Command::Notifications {
                            ids,
                            response,
                            options,
                        });
                    });
                }
            }
        }
        for (ids, response) in ready {
            self.deliver(endpoint, now, ids, response, options);
        }
    }

    /// Sends one notification to several observers.
    pub(crate) fn deliver(
        &mut self,
        endpoint: &mut Endpoint<SocketAddr>,
        now: corium_proto::Instant,
        ids: Vec<ObservationId>,
        response: Response,
        options: NotifyOptions,
    ) {
        let last = !response.code.is_success();
        for obs in ids {
            let result = endpoint.notify(now, obs, response.clone(), options);
            if last || result.is_err() {
                // An error notification ends the relation (RFC 7641 §3.2).
                self.ended(obs);
            }
        }
    }
}

fn response_or_500(response: Option<Response>) -> Response {
    response.unwrap_or_else(|| {
        tracing::error!("observe handler panicked; notifying 5.00");
        Response::new(Code::INTERNAL_SERVER_ERROR)
    })
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
    /// Sends the registration and waits for the first response.
    pub(crate) async fn start(
        client: Client,
        peer: SocketAddr,
        request: Request,
        mut options: RequestOptions,
        timeout: Duration,
    ) -> Result<Observation, Error> {
        let token = options
            .token
            .clone()
            .unwrap_or_else(|| Token::new(&rand::random::<[u8; 8]>()));
        options.token = Some(token.clone());
        options.observe = true;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let key = client.next_key();
        client.command(Command::Observe {
            key,
            peer,
            request: request.clone(),
            options,
            tx,
        })?;
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
        };
        match rx.recv().await {
            Some(Outcome::Response(r)) => observation.first = Some(r),
            Some(Outcome::Failed(err)) => {
                observation.done = true;
                return Err(Error::from_request_error(err, peer, timeout));
            }
            Some(Outcome::Rejected(err)) => {
                observation.done = true;
                return Err(err.into());
            }
            Some(Outcome::Pong) | None => {
                observation.done = true;
                return Err(Error::closed());
            }
        }
        observation.rx = rx;
        Ok(observation)
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The next response: the first one, then each notification in order (older ones
    /// are dropped, RFC 7641 §3.4). `None` once the observation is over: the resource was
    /// not observable, the server sent an error or ended it, or it was cancelled. A
    /// notification carrying the first block of a larger representation (RFC 7959 §2.6)
    /// is completed with a GET of the whole representation.
    pub async fn next(&mut self) -> Option<Result<Response, Error>> {
        let response = match self.first.take() {
            Some(r) => r,
            None => {
                if self.done {
                    return None;
                }
                match self.rx.recv().await {
                    Some(Outcome::Response(r)) => r,
                    Some(Outcome::Failed(err)) => {
                        self.done = true;
                        return Some(Err(Error::from_request_error(
                            err,
                            self.peer,
                            self.timeout,
                        )));
                    }
                    Some(Outcome::Rejected(err)) => {
                        self.done = true;
                        return Some(Err(err.into()));
                    }
                    Some(Outcome::Pong) | None => {
                        self.done = true;
                        return None;
                    }
                }
            }
        };
        Some(self.complete_blocks(response).await)
    }

    /// RFC 7959 §2.6: a notification with Block2 0 and more blocks to come is completed
    /// with a plain GET (no Observe) of the whole representation.
    async fn complete_blocks(&self, response: Response) -> Result<Response, Error> {
        let starts_blockwise = response
            .options
            .get(OptionNumber::BLOCK2)
            .and_then(BlockValue::decode)
            .is_some_and(|b| b.more && b.num == 0);
        if !starts_blockwise {
            return Ok(response);
        }
        let mut whole = self
            .client
            .send(self.peer, self.request.clone(), RequestOptions::default())
            .await?;
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
        self.client.send(self.peer, request, options).await
    }
}
