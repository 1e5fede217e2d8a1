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

use corium_proto::wire::{Code, Framing};
use corium_proto::{
    Endpoint, EndpointConfig, Event, IncomingId, IncomingRequest, NotifyOptions, ObservationId,
    PeerCapabilities, Request, RequestError, RequestId, RequestOptions, Response, SendError,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant as TokioInstant;

use crate::observe::Observers;
use crate::router::{Resolution, Router};
use crate::server::start_handler;
use crate::tcp::{ConnEvent, ConnWriter};
use crate::udp::{canonical, BoundSocket, Family, MAX_DATAGRAM_SIZE};

/// What a driver reads from and writes to.
pub(crate) enum Link {
    /// One UDP socket (RFC 7252).
    Udp {
        socket: Arc<UdpSocket>,
        family: Family,
        buf: Vec<u8>,
        /// Set for a socket bound to a multicast group ([`crate::multicast`]): what it
        /// receives was sent to the group (RFC 7252 §8.2), and the answers leave from
        /// this unicast socket of the server.
        group_reply: Option<Arc<UdpSocket>>,
    },
    /// The connections of a TCP listener (RFC 8323): messages arrive from the connection
    /// tasks of [`crate::tcp`], and go out through their writers.
    Stream {
        events: mpsc::Receiver<ConnEvent>,
        conns: HashMap<SocketAddr, ConnWriter>,
        /// Set for a client: connections are opened on demand (boxed: servers have none).
        dialer: Option<Box<Dialer>>,
    },
    /// One UDP socket carrying DTLS sessions (`coaps://`, RFC 7252 §9).
    Dtls(Box<crate::dtls::DtlsLink>),
}

/// The client side of a stream link: opens a connection the first time a peer is
/// addressed; messages wait until it is up.
pub(crate) struct Dialer {
    /// Cloned into connection tasks.
    pub(crate) events: mpsc::Sender<ConnEvent>,
    pub(crate) limits: crate::tcp::StreamLimits,
    pub(crate) connect_timeout: Duration,
    /// TLS and WebSocket steps of a new connection.
    pub(crate) dial: crate::tcp::Dial,
    /// The host names the client addressed each peer by (for TLS server names and
    /// the WebSocket request); an IP literal when absent.
    pub(crate) names: Arc<std::sync::Mutex<HashMap<SocketAddr, String>>>,
    /// Messages for connections being opened, in order (the CSM first).
    pub(crate) waiting: HashMap<SocketAddr, Vec<bytes::Bytes>>,
    /// Why the last connection attempt to a peer failed, for its requests' errors.
    pub(crate) failures: HashMap<SocketAddr, (io::ErrorKind, String)>,
}

/// Messages held for one connection being opened; beyond it the connection is given up.
const MAX_WAITING_MESSAGES: usize = 4096;

impl Link {
    /// A link over a bound UDP socket.
    pub(crate) fn udp(bound: BoundSocket) -> (Link, SocketAddr) {
        (
            Link::Udp {
                socket: Arc::new(bound.socket),
                family: bound.family,
                buf: vec![0; MAX_DATAGRAM_SIZE],
                group_reply: None,
            },
            bound.local,
        )
    }

    /// A link over a socket joined to a multicast group, answering from `reply`.
    pub(crate) fn group(
        socket: UdpSocket,
        group: SocketAddr,
        reply: Arc<UdpSocket>,
        family: Family,
    ) -> (Link, SocketAddr) {
        (
            Link::Udp {
                socket: Arc::new(socket),
                family,
                buf: vec![0; MAX_DATAGRAM_SIZE],
                group_reply: Some(reply),
            },
            group,
        )
    }

    /// The UDP socket, for sharing with the multicast links of the same server.
    pub(crate) fn udp_socket(&self) -> Option<(Arc<UdpSocket>, Family)> {
        match self {
            Link::Udp { socket, family, .. } => Some((Arc::clone(socket), *family)),
            Link::Stream { .. } | Link::Dtls(_) => None,
        }
    }
}

/// Something the link has for the driver.
enum LinkInput {
    Readable(io::Result<()>),
    Conn(Option<ConnEvent>),
}

impl Link {
    async fn ready(&mut self) -> LinkInput {
        match self {
            Link::Udp { socket, .. } => LinkInput::Readable(socket.readable().await),
            Link::Stream { events, .. } => LinkInput::Conn(events.recv().await),
            Link::Dtls(link) => LinkInput::Readable(link.socket.readable().await),
        }
    }
}

/// Datagrams read, or commands taken, per wake-up before the driver flushes its output.
pub(crate) const BATCH: usize = 64;

/// Observers notified per round of the driver: a notification to more observers is
/// cut into parts of this many, each flushed to the socket before the next is
/// encoded, so that the datagrams of a resource with 100 000 observers are never all in
/// memory at once (RFC 7641 §4.5 leaves the pace to the server).
const NOTIFY_CHUNK: usize = 1024;

/// Direction of a traced datagram.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The datagram was sent to the peer.
    Sent,
    /// The datagram was received from the peer.
    Received,
}

/// A callback that sees every datagram (for `corium get -v`).
/// The framing is `None` for datagrams, the stream framing for RFC 8323 messages.
pub(crate) type TraceFn =
    Arc<dyn Fn(Direction, SocketAddr, Option<corium_proto::wire::Framing>, &[u8]) + Send + Sync>;

/// What a client future learns about its request.
#[derive(Debug)]
pub(crate) enum Outcome {
    Response(Response),
    Failed(RequestError),
    /// A connection could not be opened (RFC 8323 transports): the error's kind and text.
    ConnectFailed(io::ErrorKind, String),
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
    /// Send a request to a multicast group (RFC 7252 §8.1): every response, with who
    /// sent it, goes to `tx` until the request's timeout ends the collection.
    Multicast {
        key: u64,
        group: SocketAddr,
        request: Request,
        options: RequestOptions,
        tx: mpsc::UnboundedSender<(SocketAddr, Response)>,
    },
    /// What the peer's CSM announced (RFC 8323 §5.3), once it has arrived; opens the
    /// connection if needed. `None` when the connection fails first.
    Capabilities {
        peer: SocketAddr,
        reply: oneshot::Sender<Option<PeerCapabilities>>,
    },
}

struct Pending {
    key: u64,
    peer: SocketAddr,
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
    /// RFC 8613: verifies protected requests, protects their responses.
    pub(crate) oscore: Option<crate::oscore::ServerOscore>,
}

/// One socket, one endpoint, one task.
pub(crate) struct Driver {
    link: Link,
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
    /// Set by [`Command::Shutdown`]: the moment to give up waiting for handlers.
    shutdown_deadline: Option<TokioInstant>,
    /// Multicast requests (RFC 7252 §8.1): every response and its sender go to the
    /// channel.
    multicasting: HashMap<RequestId, (u64, mpsc::UnboundedSender<(SocketAddr, Response)>)>,
    /// [`Command::Capabilities`] waiting for a peer's CSM.
    csm_waiters: HashMap<SocketAddr, Vec<oneshot::Sender<Option<PeerCapabilities>>>>,
    /// A command queued work that should reach the socket before more commands run
    /// (the next part of a large notification round).
    flush_first: bool,
}

impl Driver {
    pub(crate) fn new(
        (link, local): (Link, SocketAddr),
        config: EndpointConfig,
        rx: mpsc::UnboundedReceiver<Command>,
        trace: Option<TraceFn>,
        server: Option<ServerSide>,
    ) -> Driver {
        let rng = Box::new(StdRng::from_entropy());
        Driver {
            link,
            local,
            endpoint: Endpoint::new(config, rng),
            start: TokioInstant::now(),
            rx,
            pending: HashMap::new(),
            keys: HashMap::new(),
            observing: HashMap::new(),
            trace,
            server,
            shutdown_deadline: None,
            csm_waiters: HashMap::new(),
            multicasting: HashMap::new(),
            flush_first: false,
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
        let mut timer = self.endpoint.poll_timeout().map(|t| self.to_tokio(t));
        if let Link::Dtls(link) = &self.link {
            if let Some(t) = link.dtls.poll_timeout().map(|t| self.to_tokio(t)) {
                timer = Some(timer.map_or(t, |a| a.min(t)));
            }
        }
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
                        self.flush_first = false;
                        self.command(cmd);
                        for _ in 1..BATCH {
                            if self.flush_first {
                                break;
                            }
                            match self.rx.try_recv() {
                                Ok(cmd) => self.command(cmd),
                                Err(_) => break,
                            }
                        }
                    }
                    // Every `Client` handle is gone: nobody can wait for anything.
                    None => break,
                },
                input = self.link.ready(), if reading => match input {
                    LinkInput::Readable(Ok(())) => self.receive(),
                    LinkInput::Readable(Err(err)) => {
                        tracing::error!(local = %self.local, %err, "socket failed");
                        result = Err(err);
                        break;
                    }
                    LinkInput::Conn(Some(event)) => {
                        self.connection_event(event);
                        for _ in 1..BATCH {
                            let Link::Stream { events, .. } = &mut self.link else {
                                break;
                            };
                            match events.try_recv() {
                                Ok(event) => self.connection_event(event),
                                Err(_) => break,
                            }
                        }
                    }
                    // The listener and every connection task are gone.
                    LinkInput::Conn(None) => break,
                },
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                }
            }
            let now = self.now();
            if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                self.endpoint.handle_timeout(now);
            }
            if let Link::Dtls(link) = &mut self.link {
                if link.dtls.poll_timeout().is_some_and(|t| t <= now) {
                    link.dtls.handle_timeout(now);
                }
            }
            self.dtls_events();
            self.flush().await;
            if self.events() {
                self.flush().await;
            }
            if self.finished() {
                break;
            }
        }
        // RFC 8323 §5.5: connections are released, not dropped, on shutdown.
        if let Link::Stream { conns, .. } = &self.link {
            let now = self.now();
            let peers: Vec<SocketAddr> = conns.keys().copied().collect();
            for peer in peers {
                self.endpoint.release(now, peer, None);
            }
            self.flush().await;
            if let Link::Stream { conns, .. } = &mut self.link {
                for (_, writer) in conns.drain() {
                    writer.close();
                }
            }
        }
        // RFC 7252 §9.1, RFC 5246 §7.2.1: DTLS sessions end with close_notify.
        let now = self.now();
        if let Link::Dtls(link) = &mut self.link {
            link.dtls.close_all(now);
            link.flush().await;
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
            } => match self
                .open(now, peer)
                .send_request(now, peer, &request, options)
            {
                Ok(id) => {
                    self.pending.insert(id, Pending { key, peer, reply });
                    self.keys.insert(key, id);
                }
                Err(err) => {
                    let _ = reply.send(Outcome::Rejected(err));
                }
            },
            Command::Ping { key, peer, reply } => match self.open(now, peer).ping(now, peer) {
                Ok(id) => {
                    self.pending.insert(id, Pending { key, peer, reply });
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
                    self.multicasting.remove(&id);
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
            } => match self
                .open(now, peer)
                .send_request(now, peer, &request, options)
            {
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
                mut ids,
                response,
                options,
                change,
            } => {
                if let Some(server) = &mut self.server {
                    if ids.len() > NOTIFY_CHUNK {
                        let rest = ids.split_off(NOTIFY_CHUNK);
                        let _ = server.tx.send(Command::Notifications {
                            ids: rest,
                            response: response.clone(),
                            options,
                            change,
                        });
                        self.flush_first = true;
                    }
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
            Command::Multicast {
                key,
                group,
                request,
                options,
                tx,
            } => {
                let options = RequestOptions {
                    multicast: true,
                    ..options
                };
                match self.endpoint.send_request(now, group, &request, options) {
                    Ok(id) => {
                        self.multicasting.insert(id, (key, tx));
                        self.keys.insert(key, id);
                    }
                    // Dropping `tx` ends the collection; the client reports why.
                    Err(err) => tracing::debug!(%group, %err, "multicast request refused"),
                }
            }
            Command::Capabilities { peer, reply } => {
                match self.open(now, peer).peer_capabilities(&peer) {
                    Some(caps) if caps.csm_received => {
                        let _ = reply.send(Some(caps));
                    }
                    Some(_) if self.csm_waiters.len() < 4096 => {
                        self.csm_waiters.entry(peer).or_default().push(reply);
                    }
                    _ => {
                        let _ = reply.send(None);
                    }
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

    /// The endpoint, told first that a client's connection to `peer` is to be opened
    /// (so that its CSM goes out before anything else, RFC 8323 §3.3).
    fn open(&mut self, now: corium_proto::Instant, peer: SocketAddr) -> &mut Endpoint<SocketAddr> {
        if let Link::Stream {
            dialer: Some(_), ..
        } = &self.link
        {
            self.endpoint.handle_connected(now, peer);
        }
        &mut self.endpoint
    }

    fn respond(&mut self, id: IncomingId, response: Response) {
        let now = self.now();
        let response = if response.code.is_response() {
            response
        } else {
            tracing::error!(code = %response.code, "handler returned a non-response code; answering 5.00");
            Response::new(Code::INTERNAL_SERVER_ERROR)
        };
        // RFC 8613 §8.3: the answer to a protected request is protected.
        let sealer = self
            .server
            .as_mut()
            .and_then(|s| s.oscore.as_mut())
            .and_then(|o| o.pending.remove(&id));
        let response = match sealer {
            Some(mut sealer) => sealer.seal(response),
            None => response,
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

    /// What a connection task reports (RFC 8323).
    fn connection_event(&mut self, event: ConnEvent) {
        let now = self.now();
        let Link::Stream { conns, dialer, .. } = &mut self.link else {
            return;
        };
        match event {
            ConnEvent::Opened { peer, writer } => {
                // A client's messages waited for the connection, its CSM first.
                if let Some(waiting) = dialer.as_mut().and_then(|d| d.waiting.remove(&peer)) {
                    for data in waiting {
                        writer.send(data);
                    }
                }
                if let Some(dialer) = dialer {
                    dialer.failures.remove(&peer);
                }
                conns.insert(peer, writer);
                self.endpoint.handle_connected(now, peer);
            }
            ConnEvent::Message { peer, data } => self.stream_message(now, peer, &data),
            ConnEvent::Frames { peer, data } => {
                for message in crate::tcp::frames(&data) {
                    self.stream_message(now, peer, message);
                }
            }
            ConnEvent::FramingError { peer, err } => {
                tracing::debug!(%peer, %err, "connection aborted");
                self.endpoint.handle_stream_error(now, peer, err);
            }
            ConnEvent::Closed { peer, err } => {
                conns.remove(&peer);
                // A failure right after the handshake (e.g. the TLS alert of a server
                // that wanted a client certificate) is what the requests learn.
                if let (Some(dialer), Some(err)) = (dialer.as_mut(), err) {
                    dialer.failures.insert(peer, (err.kind(), err.to_string()));
                }
                self.endpoint.handle_disconnected(now, peer);
            }
            ConnEvent::ConnectFailed { peer, err } => {
                tracing::debug!(%peer, %err, "connection failed");
                if let Some(dialer) = dialer {
                    dialer.waiting.remove(&peer);
                    dialer.failures.insert(peer, (err.kind(), err.to_string()));
                }
                self.endpoint.handle_disconnected(now, peer);
            }
        }
    }

    /// One message from a connection (RFC 8323).
    fn stream_message(&mut self, now: corium_proto::Instant, peer: SocketAddr, data: &[u8]) {
        if let Some(trace) = &self.trace {
            trace(
                Direction::Received,
                peer,
                self.endpoint.config().framing,
                data,
            );
        }
        self.endpoint.handle_stream_message(now, peer, data);
    }

    /// Routes the DTLS endpoint's events (decrypted messages to the CoAP endpoint);
    /// the requests to a peer whose handshake failed fail with its reason.
    fn dtls_events(&mut self) {
        let now = self.now();
        let Link::Dtls(link) = &mut self.link else {
            return;
        };
        let failed = link.events(now, &mut self.endpoint, self.trace.as_ref());
        for peer in failed {
            self.fail_peer(peer);
        }
    }

    /// Fails every request and observation to `peer` with the recorded DTLS failure.
    fn fail_peer(&mut self, peer: SocketAddr) {
        let now = self.now();
        let Link::Dtls(link) = &self.link else {
            return;
        };
        let Some((kind, text)) = link.failures.get(&peer).cloned() else {
            return;
        };
        let ids: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(pending) = self.pending.remove(&id) {
                self.keys.remove(&pending.key);
                self.endpoint.cancel_request(now, id);
                let _ = pending
                    .reply
                    .send(Outcome::ConnectFailed(kind, text.clone()));
            }
        }
    }

    /// Reads up to [`BATCH`] datagrams without blocking.
    fn receive(&mut self) {
        let now = self.now();
        if let Link::Dtls(link) = &mut self.link {
            link.receive(now, BATCH);
            self.dtls_events();
            return;
        }
        let Link::Udp {
            socket,
            buf,
            group_reply,
            ..
        } = &mut self.link
        else {
            return;
        };
        let to_group = group_reply.is_some();
        for _ in 0..BATCH {
            match socket.try_recv_from(buf) {
                Ok((len, from)) => {
                    let peer = canonical(from);
                    let data = &buf[..len];
                    if let Some(trace) = &self.trace {
                        trace(Direction::Received, peer, None, data);
                    }
                    if to_group {
                        self.endpoint.handle_multicast_datagram(now, peer, data);
                    } else {
                        self.endpoint.handle_datagram(now, peer, data);
                    }
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
        let (socket, family) = match &mut self.link {
            Link::Udp {
                socket,
                family,
                group_reply,
                ..
            } => (&**group_reply.as_ref().unwrap_or(socket), *family),
            Link::Dtls(_) => {
                let now = self.now();
                let mut failed = Vec::new();
                while let Some(transmit) = self.endpoint.poll_transmit() {
                    if let Some(trace) = &self.trace {
                        trace(Direction::Sent, transmit.peer, None, &transmit.payload);
                    }
                    let Link::Dtls(link) = &mut self.link else {
                        break;
                    };
                    if !link.send(now, transmit.peer, &transmit.payload) {
                        failed.push(transmit.peer);
                    }
                }
                for peer in failed {
                    self.fail_peer(peer);
                }
                if let Link::Dtls(link) = &mut self.link {
                    link.flush().await;
                }
                return;
            }
            Link::Stream { conns, dialer, .. } => {
                let now = self.start.elapsed();
                let mut given_up = Vec::new();
                // Consecutive messages to one TCP connection go to its writer as one
                // buffer (pipelined requests are answered in runs); order per peer is
                // kept. A WebSocket frame carries exactly one message (RFC 8323 §4.2).
                let byte_stream = self.endpoint.config().framing == Some(Framing::Tcp);
                let mut run: Option<(SocketAddr, bytes::BytesMut)> = None;
                while let Some(transmit) = self.endpoint.poll_transmit() {
                    if let Some(trace) = &self.trace {
                        let framing = self.endpoint.config().framing;
                        trace(Direction::Sent, transmit.peer, framing, &transmit.payload);
                    }
                    let peer = transmit.peer;
                    if !byte_stream {
                        if let Some(writer) = conns.get(&peer) {
                            writer.send(transmit.payload);
                            continue;
                        }
                    }
                    if let Some((p, buf)) = run.as_mut() {
                        if *p == peer {
                            buf.extend_from_slice(&transmit.payload);
                            continue;
                        }
                        let (p, buf) = run.take().expect("a run");
                        if let Some(writer) = conns.get(&p) {
                            writer.send(buf.freeze());
                        }
                    }
                    match (conns.get(&peer), dialer.as_mut()) {
                        (Some(_), _) => {
                            run = Some((peer, bytes::BytesMut::from(&transmit.payload[..])));
                        }
                        (None, Some(dialer)) => {
                            let first = !dialer.waiting.contains_key(&peer);
                            let waiting = dialer.waiting.entry(peer).or_default();
                            if waiting.len() >= MAX_WAITING_MESSAGES {
                                given_up.push(peer);
                                continue;
                            }
                            waiting.push(transmit.payload);
                            if first {
                                let host = dialer
                                    .names
                                    .lock()
                                    .ok()
                                    .and_then(|names| names.get(&peer).cloned())
                                    .unwrap_or_else(|| peer.ip().to_string());
                                crate::tcp::spawn_connect(
                                    peer,
                                    host,
                                    dialer.events.clone(),
                                    dialer.limits.clone(),
                                    dialer.connect_timeout,
                                    dialer.dial.clone(),
                                );
                            }
                        }
                        (None, None) => {
                            tracing::debug!(%peer, "no connection; dropped");
                        }
                    }
                }
                if let Some((p, buf)) = run.take() {
                    if let Some(writer) = conns.get(&p) {
                        writer.send(buf.freeze());
                    }
                }
                for peer in given_up {
                    if let Some(dialer) = dialer.as_mut() {
                        dialer.waiting.remove(&peer);
                    }
                    let now = corium_proto::Instant::from_duration(now);
                    self.endpoint.handle_disconnected(now, peer);
                }
                while let Some(peer) = self.endpoint.poll_close() {
                    if let Some(writer) = conns.remove(&peer) {
                        writer.close();
                    }
                }
                return;
            }
        };
        while let Some(transmit) = self.endpoint.poll_transmit() {
            let Some(to) = family.to_socket(transmit.peer) else {
                tracing::debug!(peer = %transmit.peer, local = %self.local, "unreachable address family; dropped");
                continue;
            };
            if let Some(trace) = &self.trace {
                trace(Direction::Sent, transmit.peer, None, &transmit.payload);
            }
            let result = match socket.try_send_to(&transmit.payload, to) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    socket.send_to(&transmit.payload, to).await
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
                    request,
                    peer,
                    response,
                } => match self.multicasting.get(&request) {
                    Some((_, tx)) => {
                        let _ = tx.send((peer, response));
                    }
                    None => self.complete(request, Outcome::Response(response)),
                },
                Event::RequestFailed { request, error } => {
                    if let Some((key, _)) = self.multicasting.remove(&request) {
                        self.keys.remove(&key);
                    }
                    self.complete(request, Outcome::Failed(error));
                }
                Event::RequestFinished { request } => {
                    if let Some((key, _)) = self.multicasting.remove(&request) {
                        // The collection window is over: the channel closes.
                        self.keys.remove(&key);
                    } else if let Some((key, _)) = self.observing.remove(&request) {
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
                Event::Capabilities { peer, capabilities } => {
                    for waiter in self.csm_waiters.remove(&peer).unwrap_or_default() {
                        let _ = waiter.send(Some(capabilities));
                    }
                }
                Event::ConnectionEnded { peer, .. } => {
                    // Dropping the senders tells the waiters: no capabilities.
                    self.csm_waiters.remove(&peer);
                }
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
            let outcome = match (&outcome, &self.link) {
                (
                    Outcome::Failed(RequestError::ConnectionClosed),
                    Link::Stream {
                        dialer: Some(dialer),
                        ..
                    },
                ) => match dialer.failures.get(&pending.peer) {
                    Some((kind, text)) => Outcome::ConnectFailed(*kind, text.clone()),
                    None => outcome,
                },
                // A request that ends while its DTLS handshake is still running (a peer
                // that drops what it cannot decrypt, e.g. after a wrong PSK) says so.
                (Outcome::Failed(_), Link::Dtls(link)) => {
                    match link.pending_handshake(pending.peer) {
                        Some(text) => Outcome::ConnectFailed(io::ErrorKind::TimedOut, text),
                        None => outcome,
                    }
                }
                _ => outcome,
            };
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
        // The clock is read only on the paths that need it, not for every request.
        let start = self.start;
        let now = move || corium_proto::Instant::from_duration(start.elapsed());
        let Some(server) = &mut self.server else {
            // A client-only endpoint serves nothing (RFC 7252 §5.9.2.5).
            self.respond(id, Response::new(Code::NOT_FOUND));
            return true;
        };
        // RFC 8613 §8.2: a protected request is verified and its inner request routed.
        let accepted = match server.oscore.as_mut() {
            Some(oscore) => oscore.accept(request),
            None => crate::oscore::Accepted::Plain(request),
        };
        let (request, observe) = match accepted {
            crate::oscore::Accepted::Plain(request) => (request, observe),
            crate::oscore::Accepted::Respond(response) => {
                self.respond(id, response);
                return true;
            }
            crate::oscore::Accepted::Protected(inner, sealer) => {
                let observe = inner
                    .options
                    .get_uint(corium_proto::wire::OptionNumber::OBSERVE);
                if let Some(oscore) = server.oscore.as_mut() {
                    oscore.pending.insert(id, sealer);
                }
                // A request that verified comes from the holder of the context: its
                // response needs no amplification limit (RFC 9175 §2.4 item 3 limits
                // what goes to unauthenticated peers).
                self.endpoint.confirm_address(now(), &peer);
                (inner, observe)
            }
        };
        // RFC 9175 §2.4 item 3: resources that act on the requester's address first
        // have it verified with an Echo round trip.
        if !multicast
            && server.router.wants_verified_address(&request)
            && self.endpoint.address_unverified(now(), &peer)
        {
            if let Err(err) = self.endpoint.challenge(now(), id) {
                tracing::debug!(?id, %err, "Echo challenge not sent");
            }
            return true;
        }
        // RFC 9175 §2.4 item 1: an unsafe request to a resource that wants fresh requests
        // runs only with an Echo value made recently for this client; else 4.01 with a
        // new one (protected under OSCORE by `respond`: Echo is class E, §2.3).
        if !matches!(request.method, Code::GET | Code::FETCH) {
            if let Some(max_age) = server.router.freshness_for(&request) {
                let echo = request.options.get(corium_proto::wire::OptionNumber::ECHO);
                let fresh =
                    echo.is_some_and(|v| self.endpoint.echo_is_fresh(now(), &peer, v, max_age));
                if !fresh {
                    let mut challenge = Response::new(Code::UNAUTHORIZED);
                    challenge.options.set(
                        corium_proto::wire::OptionNumber::ECHO,
                        self.endpoint.echo_value(now(), &peer),
                    );
                    self.respond(id, challenge);
                    return true;
                }
            }
        }
        match server.router.resolve(&request, multicast) {
            Resolution::Respond(response) => {
                self.respond(id, response);
                true
            }
            Resolution::Handler(handler, params, observable) => {
                // RFC 8613: who protected it (the sealer is there only if it was).
                let oscore_identity = server
                    .oscore
                    .as_ref()
                    .and_then(|o| o.pending.get(&id))
                    .map(crate::oscore::Sealer::identity);
                if let (Some(observable), Some(0), Code::GET | Code::FETCH) =
                    (observable, observe, request.method)
                {
                    let rejected = server.observers.registration(
                        id,
                        observable,
                        handler.clone(),
                        request.clone(),
                        params.clone(),
                    );
                    if let Some(response) = rejected {
                        self.respond(id, response);
                        return true;
                    }
                    // RFC 8613 §4.1.3.5.2: the relation protects its notifications.
                    if let Some(sealer) = server.oscore.as_mut().and_then(|o| o.pending.remove(&id))
                    {
                        server.observers.seal_with(id, sealer);
                    }
                }
                let security = match &self.link {
                    Link::Dtls(link) => link.identity(peer),
                    _ => None,
                };
                let ctx = crate::server::RequestContext {
                    peer,
                    security,
                    oscore: oscore_identity,
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
