//! The driver task: one per socket, owning a sans-IO [`Endpoint`] (the quinn pattern).
//!
//! The loop waits on three things with `tokio::select!`: the socket becoming readable
//! (datagrams are drained in batches into [`Endpoint::handle_datagram`]), the command
//! channel (requests, cancellations and pings from [`Client`](crate::Client) handles,
//! responses from handler tasks) and the endpoint's next deadline
//! ([`Endpoint::poll_timeout`] → [`Endpoint::handle_timeout`]). After each wake-up it
//! drains [`Endpoint::poll_transmit`] to the socket and [`Endpoint::poll_event`] to the
//! waiting client futures or, for requests, to handler tasks.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use corium_proto::wire::Code;
use corium_proto::{
    Endpoint, EndpointConfig, Event, IncomingId, IncomingRequest, NotifyOptions, ObservationId,
    Request, RequestError, RequestId, RequestOptions, Response, SendError,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant as TokioInstant;

use crate::observe::Observers;
use crate::router::{Resolution, Router};
use crate::server::start_handler;
use crate::udp::{canonical, BoundSocket, Family, MAX_DATAGRAM_SIZE};

/// Datagrams read, or commands taken, per wake-up before the driver flushes its output.
pub(crate) const BATCH: usize = 64;

/// Direction of a traced datagram.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The datagram was sent to the peer.
    Sent,
    /// The datagram was received from the peer.
    Received,
}

/// A callback that sees every datagram (for `corium get -v`).
pub(crate) type TraceFn = Arc<dyn Fn(Direction, SocketAddr, &[u8]) + Send + Sync>;

/// What a client future learns about its request.
#[derive(Debug)]
pub(crate) enum Outcome {
    Response(Response),
    Failed(RequestError),
    Rejected(SendError),
    Pong,
}

/// Work for the driver.
pub(crate) enum Command {
    /// Send a request; `key` names it for [`Command::Cancel`].
    Request {
        key: u64,
        peer: SocketAddr,
        request: Request,
        options: RequestOptions,
        reply: oneshot::Sender<Outcome>,
    },
    /// Send a CoAP ping (RFC 7252 §4.3).
    Ping {
        key: u64,
        peer: SocketAddr,
        reply: oneshot::Sender<Outcome>,
    },
    /// The client future was dropped: stop retransmitting.
    Cancel { key: u64 },
    /// A handler's answer to a request.
    Respond { id: IncomingId, response: Response },
    /// Stop reading; finish in-flight handlers (bounded), then return.
    Shutdown { grace: Duration },
    /// Observe a resource (RFC 7641): every response goes to `tx` until the relation
    /// ends; `key` names it for [`Command::Cancel`].
    Observe {
        key: u64,
        peer: SocketAddr,
        request: Request,
        options: RequestOptions,
        tx: mpsc::UnboundedSender<Outcome>,
    },
    /// An observable resource changed (RFC 7641 §4.2).
    Notify {
        observable: u64,
        options: NotifyOptions,
    },
    /// A handler's answer for the observers `ids`; `change` when the resource changed
    /// (rather than a timer of the conditional attributes firing).
    Notifications {
        ids: Vec<ObservationId>,
        response: Response,
        options: NotifyOptions,
        change: bool,
    },
    /// A timer of an observer's conditional attributes fired.
    ObserverTimer { obs: ObservationId },
}

struct Pending {
    key: u64,
    reply: oneshot::Sender<Outcome>,
}

/// Server-side state of a driver.
pub(crate) struct ServerSide {
    pub(crate) router: Arc<Router>,
    /// Cloned into handler tasks so that they can send [`Command::Respond`].
    pub(crate) tx: mpsc::UnboundedSender<Command>,
    /// Handlers spawned and not answered yet.
    pub(crate) in_flight: usize,
    /// Observers of observable resources (RFC 7641).
    pub(crate) observers: Observers,
}

/// One socket, one endpoint, one task.
pub(crate) struct Driver {
    socket: UdpSocket,
    family: Family,
    local: SocketAddr,
    endpoint: Endpoint<SocketAddr>,
    start: TokioInstant,
    rx: mpsc::UnboundedReceiver<Command>,
    pending: HashMap<RequestId, Pending>,
    keys: HashMap<u64, RequestId>,
    /// Observe requests (RFC 7641): every response goes to the channel.
    observing: HashMap<RequestId, (u64, mpsc::UnboundedSender<Outcome>)>,
    trace: Option<TraceFn>,
    server: Option<ServerSide>,
    buf: Vec<u8>,
    /// Set by [`Command::Shutdown`]: the moment to give up waiting for handlers.
    shutdown_deadline: Option<TokioInstant>,
}

impl Driver {
    pub(crate) fn new(
        bound: BoundSocket,
        config: EndpointConfig,
        rx: mpsc::UnboundedReceiver<Command>,
        trace: Option<TraceFn>,
        server: Option<ServerSide>,
    ) -> Driver {
        let rng = Box::new(StdRng::from_entropy());
        Driver {
            socket: bound.socket,
            family: bound.family,
            local: bound.local,
            endpoint: Endpoint::new(config, rng),
            start: TokioInstant::now(),
            rx,
            pending: HashMap::new(),
            keys: HashMap::new(),
            observing: HashMap::new(),
            trace,
            server,
            buf: vec![0; MAX_DATAGRAM_SIZE],
            shutdown_deadline: None,
        }
    }

    fn now(&self) -> corium_proto::Instant {
        corium_proto::Instant::from_duration(self.start.elapsed())
    }

    fn to_tokio(&self, at: corium_proto::Instant) -> TokioInstant {
        self.start + Duration::from_nanos(at.as_nanos())
    }

    /// The moment the loop must wake up even without input.
    fn next_wake(&self) -> Option<TokioInstant> {
        let timer = self.endpoint.poll_timeout().map(|t| self.to_tokio(t));
        match (timer, self.shutdown_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn finished(&self) -> bool {
        match self.shutdown_deadline {
            None => false,
            Some(deadline) => {
                self.server.as_ref().is_none_or(|s| s.in_flight == 0)
                    || TokioInstant::now() >= deadline
            }
        }
    }

    /// Runs until every command sender is gone (clients) or until shutdown completes
    /// (servers).
    pub(crate) async fn run(mut self) -> io::Result<()> {
        let mut result = Ok(());
        let sleep = tokio::time::sleep_until(self.start);
        tokio::pin!(sleep);
        let mut armed: Option<TokioInstant> = None;
        loop {
            let wake = self.next_wake();
            if wake != armed {
                if let Some(at) = wake {
                    sleep.as_mut().reset(at);
                }
                armed = wake;
            }
            let reading = self.shutdown_deadline.is_none();
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => {
                        self.command(cmd);
                        for _ in 1..BATCH {
                            match self.rx.try_recv() {
                                Ok(cmd) => self.command(cmd),
                                Err(_) => break,
                            }
                        }
                    }
                    // Every `Client` handle is gone: nobody can wait for anything.
                    None => break,
                },
                ready = self.socket.readable(), if reading => match ready {
                    Ok(()) => self.receive(),
                    Err(err) => {
                        tracing::error!(local = %self.local, %err, "socket failed");
                        result = Err(err);
                        break;
                    }
                },
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                }
            }
            let now = self.now();
            if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                self.endpoint.handle_timeout(now);
            }
            self.flush().await;
            if self.events() {
                self.flush().await;
            }
            if self.finished() {
                break;
            }
        }
        // Whatever still waits learns that the driver stopped (its reply channel closes).
        self.pending.clear();
        tracing::debug!(local = %self.local, "driver stopped");
        result
    }

    fn command(&mut self, cmd: Command) {
        let now = self.now();
        match cmd {
            Command::Request {
                key,
                peer,
                request,
                options,
                reply,
            } => match self.endpoint.send_request(now, peer, &request, options) {
                Ok(id) => {
                    self.pending.insert(id, Pending { key, reply });
                    self.keys.insert(key, id);
                }
                Err(err) => {
                    let _ = reply.send(Outcome::Rejected(err));
                }
            },
            Command::Ping { key, peer, reply } => match self.endpoint.ping(now, peer) {
                Ok(id) => {
                    self.pending.insert(id, Pending { key, reply });
                    self.keys.insert(key, id);
                }
                Err(err) => {
                    let _ = reply.send(Outcome::Rejected(err));
                }
            },
            Command::Cancel { key } => {
                if let Some(id) = self.keys.remove(&key) {
                    self.pending.remove(&id);
                    self.observing.remove(&id);
                    self.endpoint.cancel_request(now, id);
                }
            }
            Command::Respond { id, response } => {
                if let Some(server) = &mut self.server {
                    server.in_flight = server.in_flight.saturating_sub(1);
                }
                self.respond(id, response);
            }
            Command::Shutdown { grace } => {
                self.shutdown_deadline = Some(TokioInstant::now() + grace);
            }
            Command::Observe {
                key,
                peer,
                request,
                options,
                tx,
            } => match self.endpoint.send_request(now, peer, &request, options) {
                Ok(id) => {
                    self.observing.insert(id, (key, tx));
                    self.keys.insert(key, id);
                }
                Err(err) => {
                    let _ = tx.send(Outcome::Rejected(err));
                }
            },
            Command::Notify {
                observable,
                options,
            } => {
                if let Some(server) = &mut self.server {
                    server.observers.notify(
                        &mut self.endpoint,
                        now,
                        observable,
                        options,
                        &server.tx,
                    );
                }
            }
            Command::Notifications {
                ids,
                response,
                options,
                change,
            } => {
                if let Some(server) = &mut self.server {
                    server.observers.deliver(
                        &mut self.endpoint,
                        now,
                        ids,
                        response,
                        options,
                        change,
                        &server.tx,
                    );
                }
            }
            Command::ObserverTimer { obs } => {
                if let Some(server) = &mut self.server {
                    server
                        .observers
                        .timer(&mut self.endpoint, now, obs, &server.tx);
                }
            }
        }
    }

    fn respond(&mut self, id: IncomingId, response: Response) {
        let now = self.now();
        let response = if response.code.is_response() {
            response
        } else {
            tracing::error!(code = %response.code, "handler returned a non-response code; answering 5.00");
            Response::new(Code::INTERNAL_SERVER_ERROR)
        };
        // RFC 7641 §4.1: the answer to a registration registers the observer.
        let response = match &mut self.server {
            Some(server) => {
                match server
                    .observers
                    .respond(&mut self.endpoint, now, id, response, &server.tx)
                {
                    Some(response) => response,
                    None => return,
                }
            }
            None => response,
        };
        if let Err(err) = self.endpoint.respond(now, id, response) {
            tracing::debug!(?id, %err, "response not sent");
        }
    }

    /// Reads up to [`BATCH`] datagrams without blocking.
    fn receive(&mut self) {
        let now = self.now();
        for _ in 0..BATCH {
            match self.socket.try_recv_from(&mut self.buf) {
                Ok((len, from)) => {
                    let peer = canonical(from);
                    let data = &self.buf[..len];
                    if let Some(trace) = &self.trace {
                        trace(Direction::Received, peer, data);
                    }
                    self.endpoint.handle_datagram(now, peer, data);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => {
                    // E.g. ICMP errors reported on some platforms: not fatal for a
                    // connectionless socket, and consumed by the failed call.
                    tracing::debug!(local = %self.local, %err, "receive failed");
                }
            }
        }
    }

    /// Sends every datagram the endpoint has queued.
    async fn flush(&mut self) {
        while let Some(transmit) = self.endpoint.poll_transmit() {
            let Some(to) = self.family.to_socket(transmit.peer) else {
                tracing::debug!(peer = %transmit.peer, local = %self.local, "unreachable address family; dropped");
                continue;
            };
            if let Some(trace) = &self.trace {
                trace(Direction::Sent, transmit.peer, &transmit.payload);
            }
            let result = match self.socket.try_send_to(&transmit.payload, to) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.socket.send_to(&transmit.payload, to).await
                }
                other => other,
            };
            if let Err(err) = result {
                tracing::debug!(peer = %transmit.peer, %err, "send failed");
            }
        }
    }

    /// Routes every pending event; returns whether anything may have been transmitted.
    fn events(&mut self) -> bool {
        let mut responded = false;
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                Event::Response {
                    request, response, ..
                } => self.complete(request, Outcome::Response(response)),
                Event::RequestFailed { request, error } => {
                    self.complete(request, Outcome::Failed(error));
                }
                Event::RequestFinished { request } => {
                    if let Some((key, _)) = self.observing.remove(&request) {
                        // The observation is over: the channel closes.
                        self.keys.remove(&key);
                    } else {
                        self.complete(request, Outcome::Failed(RequestError::Timeout));
                    }
                }
                Event::ObservationEnded { obs, peer, reason } => {
                    tracing::debug!(?obs, %peer, ?reason, "observation ended");
                    if let Some(server) = &mut self.server {
                        server.observers.ended(obs);
                    }
                }
                Event::Pong { request } => self.complete(request, Outcome::Pong),
                Event::Request(incoming) => responded |= self.dispatch(incoming),
                Event::ResponseNotDelivered {
                    request,
                    peer,
                    error,
                } => {
                    tracing::debug!(?request, %peer, %error, "separate response not delivered");
                }
                _ => {}
            }
        }
        responded
    }

    fn complete(&mut self, id: RequestId, outcome: Outcome) {
        if let Some((key, tx)) = self.observing.get(&id) {
            let (key, last) = (*key, !matches!(outcome, Outcome::Response(_)));
            let gone = tx.send(outcome).is_err();
            if gone {
                // The Observation was dropped and its cancel is still queued.
                self.endpoint.cancel_request(self.now(), id);
            }
            if last || gone {
                self.observing.remove(&id);
                self.keys.remove(&key);
            }
            return;
        }
        if let Some(pending) = self.pending.remove(&id) {
            self.keys.remove(&pending.key);
            // The receiver may be gone (future dropped, cancel still queued): fine.
            let _ = pending.reply.send(outcome);
        }
    }

    /// Hands a request to the router: answers on the spot when no handler runs (4.04,
    /// 4.05, `/.well-known/core`), spawns the handler otherwise. Returns whether a
    /// response was given on the spot.
    fn dispatch(&mut self, incoming: IncomingRequest<SocketAddr>) -> bool {
        let IncomingRequest {
            id,
            peer,
            request,
            confirmable,
            multicast,
            observe,
        } = incoming;
        let Some(server) = &mut self.server else {
            // A client-only endpoint serves nothing (RFC 7252 §5.9.2.5).
            self.respond(id, Response::new(Code::NOT_FOUND));
            return true;
        };
        match server.router.resolve(&request, multicast) {
            Resolution::Respond(response) => {
                self.respond(id, response);
                true
            }
            Resolution::Handler(handler, params, observable) => {
                if let (Some(observable), Some(0), Code::GET | Code::FETCH) =
                    (observable, observe, request.method)
                {
                    let rejected = server.observers.registration(
                        id,
                        observable,
                        handler.clone(),
                        peer,
                        request.clone(),
                        params.clone(),
                    );
                    if let Some(response) = rejected {
                        self.respond(id, response);
                        return true;
                    }
                }
                let ctx = crate::server::RequestContext {
                    peer,
                    request,
                    multicast,
                    confirmable,
                    params,
                };
                match start_handler(handler, ctx, id, &server.tx) {
                    Some(response) => {
                        self.respond(id, response);
                        true
                    }
                    None => {
                        server.in_flight += 1;
                        false
                    }
                }
            }
        }
    }
}
