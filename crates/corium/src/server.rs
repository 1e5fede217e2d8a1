//! The server: sockets, one driver task per socket, and the tasks that run handlers.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use corium_proto::wire::Code;
use corium_proto::{AmplificationLimit, EndpointConfig, IncomingId, Request, Response};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::driver::{Command, Direction, Driver, Link, ServerSide, TraceFn};
use crate::multicast::MulticastGroup;
use crate::resource::{Handler, HandlerFuture};
use crate::router::{Params, Router};
use crate::tcp::{self, StreamLimits};
use crate::tls::TlsServer;
use crate::udp::{self, BoundSocket, V6Mode};
use corium_proto::wire::{Framing, Scheme};

/// How long [`Server::run_until`] waits, by default, for in-flight handlers after the
/// shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What a handler gets: the request and where it came from.
pub struct RequestContext {
    /// The client's address (IPv4 peers of a dual-stack socket appear as IPv4).
    pub peer: SocketAddr,
    /// The request. Uri-Path and Uri-Query are in its options, already decoded.
    pub request: Request,
    /// Whether the request was sent to a multicast group (RFC 7252 §8.2).
    pub multicast: bool,
    /// Whether the request came as a Confirmable message.
    pub confirmable: bool,
    /// The identity the peer proved in the DTLS handshake (`coaps://`, RFC 7252 §9):
    /// its PSK identity (text, lossily decoded); `None` for unsecured transports.
    pub security: Option<Arc<str>>,
    /// The security context that verified the request when it came protected with OSCORE
    /// (RFC 8613); `None` for unprotected requests.
    pub oscore: Option<OscoreIdentity>,
    pub(crate) params: Params,
}

/// Who protected a request with OSCORE: the security context the server verified it
/// with, named as RFC 8613 §3.3 names it (the client's Sender ID, which the request
/// carries as 'kid', and the ID Context). Only a holder of that context's keys can
/// produce a request that verifies, so this identifies the client end to end, whatever
/// its address or the proxies on the way.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OscoreIdentity {
    /// The client's Sender ID (our Recipient ID).
    pub sender_id: Arc<[u8]>,
    /// The context's ID Context, if it has one.
    pub id_context: Option<Arc<[u8]>>,
}

/// `SENDER-ID` or `SENDER-ID/ID-CONTEXT`, both in lowercase hex: a stable name for the
/// context (e.g. an access-control key).
impl fmt::Display for OscoreIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.sender_id
            .iter()
            .try_for_each(|b| write!(f, "{b:02x}"))?;
        if let Some(c) = &self.id_context {
            f.write_str("/")?;
            c.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestContext")
            .field("peer", &self.peer)
            .field("request", &self.request)
            .field("multicast", &self.multicast)
            .field("confirmable", &self.confirmable)
            .field("security", &self.security)
            .field("oscore", &self.oscore)
            .field("params", &self.params)
            .finish()
    }
}

impl RequestContext {
    /// A context for calling a handler directly (tests, composition).
    pub fn new(peer: SocketAddr, request: Request) -> RequestContext {
        RequestContext {
            peer,
            request,
            multicast: false,
            confirmable: true,
            security: None,
            oscore: None,
            params: Vec::new(),
        }
    }

    /// Sets a path parameter, as the router does for `{name}` patterns.
    pub fn with_param(mut self, name: &str, value: &str) -> RequestContext {
        self.params.push((name.into(), value.to_owned()));
        self
    }

    /// The value of the path parameter `name` of the matched route (`{id}` in
    /// `"/things/{id}"`, `{*rest}` for the tail), decoded as lossy UTF-8.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path as `/a/b` from the decoded Uri-Path options (lossy UTF-8; `/` when there
    /// are none). Segments are not re-encoded: a segment containing `/` is ambiguous here.
    pub fn path(&self) -> String {
        let mut path = String::new();
        for segment in self.request.path_segments() {
            path.push('/');
            path.push_str(&String::from_utf8_lossy(segment));
        }
        if path.is_empty() {
            path.push('/');
        }
        path
    }

    /// The Uri-Query arguments as strings (lossy UTF-8).
    pub fn query(&self) -> Vec<String> {
        self.request
            .query_args()
            .map(|q| String::from_utf8_lossy(q).into_owned())
            .collect()
    }

    /// The Block1 option of a request to a resource that takes uploads block by block
    /// ([`Resource::non_atomic_upload`](crate::Resource::non_atomic_upload), RFC 7959
    /// §2.5); `None` for a request without one.
    pub fn block1(&self) -> Option<corium_proto::wire::BlockValue> {
        self.request
            .options
            .get(corium_proto::wire::OptionNumber::BLOCK1)
            .and_then(corium_proto::wire::BlockValue::decode)
    }

    /// The value of the first query argument `name=value`; `Some("")` for a bare
    /// `name`.
    pub fn query_value(&self, name: &str) -> Option<String> {
        self.request.query_args().find_map(|arg| {
            let rest = arg.strip_prefix(name.as_bytes())?;
            match rest {
                [] => Some(String::new()),
                [b'=', value @ ..] => Some(String::from_utf8_lossy(value).into_owned()),
                _ => None,
            }
        })
    }
}

/// Runs the handler, catching a panic in it (the future is polled inside
/// `catch_unwind`, so no second task is needed).
pub(crate) enum CatchUnwind {
    /// Not polled yet.
    Start(Arc<dyn Handler>, Option<RequestContext>),
    /// Polled, pending.
    Running(HandlerFuture),
    /// Finished.
    Done,
}

impl Future for CatchUnwind {
    /// `None` when the handler panicked.
    type Output = Option<Response>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Response>> {
        let this = self.get_mut();
        let polled = catch_unwind(AssertUnwindSafe(|| {
            if let CatchUnwind::Start(handler, ctx) = this {
                let ctx = ctx.take()?;
                *this = CatchUnwind::Running(handler.call(ctx));
            }
            match this {
                CatchUnwind::Running(fut) => Some(fut.as_mut().poll(cx)),
                _ => None,
            }
        }));
        match polled {
            Ok(Some(Poll::Pending)) => Poll::Pending,
            Ok(Some(Poll::Ready(response))) => {
                *this = CatchUnwind::Done;
                Poll::Ready(Some(response))
            }
            Ok(None) | Err(_) => {
                *this = CatchUnwind::Done;
                Poll::Ready(None)
            }
        }
    }
}

/// Sends the response back to the driver; if the task is dropped before the handler
/// finished (runtime shutting down), answers 5.03 so the exchange does not linger.
struct Responder {
    tx: mpsc::UnboundedSender<Command>,
    id: IncomingId,
    done: bool,
}

impl Responder {
    fn send(mut self, response: Response) {
        self.done = true;
        let _ = self.tx.send(Command::Respond {
            id: self.id,
            response,
        });
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.tx.send(Command::Respond {
                id: self.id,
                response: Response::new(Code::SERVICE_UNAVAILABLE),
            });
        }
    }
}

/// Starts a handler: polls it once on the driver's own task, and answers on the spot
/// when it is ready (most handlers are: a piggybacked response without a task spawn or a
/// channel hop). A handler that is still pending continues in a task of its own.
#[allow(clippy::result_large_err)] // `Handler::call_now` hands the context back.
pub(crate) fn start_handler(
    handler: Arc<dyn Handler>,
    ctx: RequestContext,
    id: IncomingId,
    tx: &mpsc::UnboundedSender<Command>,
) -> Option<Response> {
    let (peer, method) = (ctx.peer, ctx.request.method);
    // A synchronous handler answers without a future (no allocation).
    let ctx = match catch_unwind(AssertUnwindSafe(|| handler.call_now(ctx))) {
        Ok(Ok(response)) => return Some(response),
        Ok(Err(ctx)) => ctx,
        Err(_) => return Some(response_or_500(None, peer, method)),
    };
    let mut fut = CatchUnwind::Start(handler, Some(ctx));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match Pin::new(&mut fut).poll(&mut cx) {
        Poll::Ready(response) => Some(response_or_500(response, peer, method)),
        Poll::Pending => {
            let responder = Responder {
                tx: tx.clone(),
                id,
                done: false,
            };
            // The first poll registered a no-op waker; the task polls again at once
            // with its own, as every future must allow.
            tokio::spawn(async move {
                let response = fut.await;
                responder.send(response_or_500(response, peer, method));
            });
            None
        }
    }
}

fn response_or_500(response: Option<Response>, peer: SocketAddr, method: Code) -> Response {
    response.unwrap_or_else(|| {
        tracing::error!(%peer, %method, "request handler panicked; answering 5.00");
        Response::new(Code::INTERNAL_SERVER_ERROR)
    })
}

/// Configures and binds a [`Server`].
#[derive(Clone)]
pub struct ServerBuilder {
    config: EndpointConfig,
    shutdown_grace: Duration,
    reuse_address: bool,
    /// UDP sockets per address (SO_REUSEPORT when more than one).
    shards: usize,
    trace: Option<TraceFn>,
    tcp: bool,
    stream_limits: StreamLimits,
    /// TLS and WebSocket listeners: address, setup, scheme.
    secure_and_ws: Vec<(SocketAddr, tcp::Accept, Scheme)>,
    /// RFC 8613: the security contexts and the resources that require OSCORE.
    oscore: Option<Arc<crate::oscore::ServerShared>>,
    /// Multicast groups to join (RFC 7252 §8), and their port.
    groups: Vec<(MulticastGroup, u16)>,
    /// DTLS listeners (`coaps://`, RFC 7252 §9): address and configuration.
    dtls: Vec<(SocketAddr, corium_dtls::ServerConfig)>,
    /// Limits of the DTLS listeners (sessions, handshake rate per address, timers).
    dtls_limits: corium_dtls::DtlsConfig,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("reuse_address", &self.reuse_address)
            .field("shards", &self.shards)
            .field("trace", &self.trace.is_some())
            .finish()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            // RFC 9175 §2.6: a server SHOULD mitigate amplification; on by default.
            config: EndpointConfig {
                amplification_limit: Some(AmplificationLimit::default()),
                ..EndpointConfig::default()
            },
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            reuse_address: false,
            shards: 1,
            trace: None,
            tcp: false,
            stream_limits: StreamLimits::default(),
            secure_and_ws: Vec::new(),
            groups: Vec::new(),
            oscore: None,
            dtls: Vec::new(),
            dtls_limits: corium_dtls::DtlsConfig::default(),
        }
    }
}

impl ServerBuilder {
    /// The endpoint configuration (transmission parameters, separate-response delay,
    /// table limits) for every socket. Its `amplification_limit` applies to plain UDP
    /// only (see [`amplification_limit`](Self::amplification_limit)).
    pub fn config(mut self, config: EndpointConfig) -> Self {
        self.config = config;
        self
    }

    /// Amplification mitigation on plain UDP (RFC 9175 §2.4 item 3, §2.6): until a
    /// client has shown that it receives what is sent to its address, it gets at most
    /// `factor` (3 by default) times the bytes of its request; a larger response to a
    /// safe request becomes a 4.01 with an Echo option, which a client answers by
    /// repeating the request with that value (libcoap's and Corium's clients do so
    /// automatically). A larger response to an unsafe request, which has taken effect,
    /// is sent in blocks small enough for the limit, the first with an Echo value. On
    /// by default; `None` turns it off. OSCORE requests that verify, DTLS (whose cookie
    /// exchange verifies addresses) and the RFC 8323 transports are not limited.
    /// Multicast requests are (RFC 7252 §11.3): a large response to one goes out as a
    /// first block with an Echo value, the rest by unicast (RFC 7959 §2.8).
    ///
    /// Call it after [`config`](Self::config), which replaces the whole configuration.
    pub fn amplification_limit(mut self, limit: Option<AmplificationLimit>) -> Self {
        self.config.amplification_limit = limit;
        self
    }

    /// How long [`Server::run_until`] waits for in-flight handlers after the shutdown
    /// signal (default [`DEFAULT_SHUTDOWN_GRACE`]).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Also serve CoAP over TCP (RFC 8323 `coap+tcp`) on every address given to
    /// [`bind`](Self::bind), beside UDP and on the same port (default off).
    pub fn tcp(mut self, yes: bool) -> Self {
        self.tcp = yes;
        self
    }

    /// Also listen to multicast `groups` on `port` (RFC 7252 §8; 5683 for the
    /// All-CoAP-Nodes groups of [`MulticastGroup::all_coap_nodes`]): requests sent to a
    /// group get no error responses and no RST, and their answers come after a random
    /// leisure, from the server's unicast socket of the same address family.
    pub fn multicast(mut self, groups: &[MulticastGroup], port: u16) -> Self {
        self.groups.extend(groups.iter().map(|&g| (g, port)));
        self
    }

    /// Also serve `coaps+tcp` (CoAP over TLS, RFC 8323 §3, §8.2, ALPN `coap`) on `addrs`
    /// with these credentials.
    pub fn tls(mut self, tls: &TlsServer, addrs: &[SocketAddr]) -> Self {
        let accept = tcp::Accept {
            tls: Some(tls.acceptor(false)),
            websocket: false,
        };
        for &addr in addrs {
            self.secure_and_ws
                .push((addr, accept.clone(), Scheme::CoapsTcp));
        }
        self
    }

    /// Also serve `coap+ws` (CoAP over WebSockets, RFC 8323 §4, at `/.well-known/coap`)
    /// on `addrs`.
    pub fn websocket(mut self, addrs: &[SocketAddr]) -> Self {
        let accept = tcp::Accept {
            tls: None,
            websocket: true,
        };
        for &addr in addrs {
            self.secure_and_ws
                .push((addr, accept.clone(), Scheme::CoapWs));
        }
        self
    }

    /// Also serve `coaps+ws` (CoAP over WebSockets over TLS, RFC 8323 §4, §8.4) on
    /// `addrs` with these credentials.
    pub fn secure_websocket(mut self, tls: &TlsServer, addrs: &[SocketAddr]) -> Self {
        let accept = tcp::Accept {
            tls: Some(tls.acceptor(true)),
            websocket: true,
        };
        for &addr in addrs {
            self.secure_and_ws
                .push((addr, accept.clone(), Scheme::CoapsWs));
        }
        self
    }

    /// Limits of TCP connections: Max-Message-Size (announced in the CSM, RFC 8323
    /// §5.3.1, and enforced from the length shim), idle and half-received-message
    /// timeouts, maximum connections.
    pub fn stream_limits(mut self, limits: StreamLimits) -> Self {
        self.stream_limits = limits;
        self
    }

    /// Verifies OSCORE-protected requests (RFC 8613) and protects their responses, on
    /// every socket and listener; unprotected requests to the resources `oscore`
    /// requires it on are answered 4.01. See [`OscoreServer`](crate::OscoreServer).
    pub fn oscore(mut self, oscore: crate::oscore::OscoreServer) -> Self {
        self.oscore = Some(oscore.into_shared());
        self
    }

    /// Answers EDHOC (RFC 9528) with `edhoc`, installing the OSCORE contexts of
    /// completed exchanges among the server's (after [`oscore`](Self::oscore), or in a
    /// set of [`DEFAULT_CONTEXT_LIMIT`](crate::edhoc::DEFAULT_CONTEXT_LIMIT) contexts),
    /// and accepts the combined request (RFC 9668). Call it after `oscore`; route
    /// [`EdhocServer::resource`](crate::edhoc::EdhocServer::resource) at
    /// `/.well-known/edhoc`.
    pub fn edhoc(mut self, edhoc: &crate::edhoc::EdhocServer) -> Self {
        let shared = self.oscore.get_or_insert_with(|| {
            crate::oscore::OscoreServer::new(corium_oscore::SecurityContextSet::new(
                crate::edhoc::DEFAULT_CONTEXT_LIMIT,
            ))
            .into_shared()
        });
        edhoc.attach(shared);
        shared.set_edhoc(edhoc.clone());
        self
    }

    /// Sets SO_REUSEADDR on the sockets (default off: on Linux it would let a second
    /// server bind the same UDP port and silently take its traffic).
    pub fn reuse_address(mut self, yes: bool) -> Self {
        self.reuse_address = yes;
        self
    }

    /// Binds `n` UDP sockets to each address instead of one, with SO_REUSEPORT (Linux,
    /// BSDs): each gets a driver task and endpoint of its own, so the work spreads over
    /// the runtime's worker threads. The kernel picks the socket by a hash of the
    /// 4-tuple, so a peer's datagrams always reach the same endpoint and its
    /// deduplication (RFC 7252 §4.5) and Observe (RFC 7641) state stays in one place;
    /// a peer whose address or port changes (NAT rebinding) is a new peer anyway. The
    /// TCP, TLS, WebSocket and DTLS listeners and multicast groups are not sharded.
    /// 0 counts as 1 (the default).
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n.max(1);
        self
    }

    /// Called for every datagram sent or received, on every socket (for
    /// `corium serve -v`). Runs on the driver task: keep it short.
    pub fn trace(
        mut self,
        f: impl Fn(Direction, SocketAddr, &[u8]) + Send + Sync + 'static,
    ) -> Self {
        self.trace = Some(Arc::new(move |d, p, _framing, b: &[u8]| f(d, p, b)));
        self
    }

    /// Like `trace`, but also told how the message is framed: `None` for a datagram
    /// (RFC 7252 §3), `Some` for a message of a reliable transport (RFC 8323 §3.2).
    pub fn trace_framed(
        mut self,
        f: impl Fn(Direction, SocketAddr, Option<corium_proto::wire::Framing>, &[u8])
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.trace = Some(Arc::new(f));
        self
    }

    /// Also serve CoAP over DTLS (`coaps://`, RFC 7252 §9) on a UDP socket bound to each
    /// of `addrs` (5684 is the default port; port 0 lets the system choose), with
    /// `config`'s credentials (PSK and/or certificate).
    pub fn dtls(mut self, config: corium_dtls::ServerConfig, addrs: &[SocketAddr]) -> Self {
        self.dtls
            .extend(addrs.iter().map(|&addr| (addr, config.clone())));
        self
    }

    /// The limits of the DTLS listeners: sessions, handshakes per address and second,
    /// timers (see [`corium_dtls::DtlsConfig`]; its defaults otherwise).
    pub fn dtls_limits(mut self, limits: corium_dtls::DtlsConfig) -> Self {
        self.dtls_limits = limits;
        self
    }

    /// Binds one UDP socket per address, plus the TCP, TLS and WebSocket listeners asked
    /// for (TCP on the UDP port of each address). IPv6 sockets are IPv6-only
    /// (IPV6_V6ONLY), so `[::]:5683` and `0.0.0.0:5683` can be bound together. Nothing
    /// is read until [`Server::run_until`].
    pub async fn bind(self, addrs: &[SocketAddr], router: Router) -> io::Result<Server> {
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no address to bind the server to",
            ));
        }
        let (sockets, mut listeners) = self.bind_udp_and_tcp(addrs)?;
        let mut rest = Vec::new();
        for (addr, accept, scheme) in self.secure_and_ws {
            let listener = tcp::bind_listener(addr).map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("cannot listen for {scheme} on {addr}: {err}"),
                )
            })?;
            rest.push((listener, accept, scheme));
        }
        listeners.extend(rest);
        let mut dtls = Vec::with_capacity(self.dtls.len());
        for (addr, config) in self.dtls {
            let bound = udp::bind(addr, V6Mode::Only, self.reuse_address).map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("cannot bind coaps (DTLS) {addr}: {err}"),
                )
            })?;
            tracing::debug!(local = %bound.local, "DTLS socket bound");
            dtls.push((bound, config));
        }
        let mut groups = Vec::with_capacity(self.groups.len());
        for (group, port) in self.groups {
            // The answers leave from a unicast socket that can reach the group's family.
            let reply = sockets
                .iter()
                .position(|b| {
                    b.family
                        .to_socket(SocketAddr::new(group.group, 1))
                        .is_some()
                })
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "no UDP socket of the address family of group {}",
                            group.group
                        ),
                    )
                })?;
            let socket = crate::multicast::bind_group(group, port).map_err(|err| {
                io::Error::new(err.kind(), format!("cannot join {}: {err}", group.group))
            })?;
            tracing::debug!(group = %group.group, port, "joined multicast group");
            groups.push((socket, SocketAddr::new(group.group, port), reply));
        }
        let mut config = self.config;
        if self.oscore.is_some()
            && !config
                .recognized_critical_options
                .contains(&corium_proto::wire::OptionNumber::OSCORE)
        {
            // RFC 8613 §2: the OSCORE option (critical) is processed by the driver.
            config
                .recognized_critical_options
                .push(corium_proto::wire::OptionNumber::OSCORE);
            // RFC 9668 §3.1: the EDHOC option (critical) too; refused without EDHOC.
            config
                .recognized_critical_options
                .push(corium_proto::wire::OptionNumber::EDHOC);
        }
        Ok(Server {
            sockets,
            groups,
            listeners,
            stream_limits: self.stream_limits,
            router: Arc::new(router),
            config,
            shutdown_grace: self.shutdown_grace,
            trace: self.trace,
            oscore: self.oscore,
            dtls,
            dtls_limits: self.dtls_limits,
        })
    }

    /// Binds the UDP sockets and, with [`tcp`](Self::tcp), a TCP listener on each one's
    /// address and port. With port 0 the system picks a UDP port that TCP may already
    /// use (another process's connection): then both are tried again on a new port.
    #[allow(clippy::type_complexity)]
    fn bind_udp_and_tcp(
        &self,
        addrs: &[SocketAddr],
    ) -> io::Result<(
        Vec<BoundSocket>,
        Vec<(tokio::net::TcpListener, tcp::Accept, Scheme)>,
    )> {
        const ATTEMPTS: usize = 16;
        let mut attempt = 0;
        'retry: loop {
            attempt += 1;
            let mut sockets = Vec::with_capacity(addrs.len() * self.shards);
            let sharded = self.shards > 1;
            for &addr in addrs {
                let bound = udp::bind_shared(addr, V6Mode::Only, self.reuse_address, sharded)
                    .map_err(|err| {
                        io::Error::new(err.kind(), format!("cannot bind UDP {addr}: {err}"))
                    })?;
                tracing::debug!(local = %bound.local, "server socket bound");
                sockets.push(bound);
            }
            // The other shards of each address, after the first ones (whose indices the
            // multicast groups and the TCP listeners below refer to), on the port the
            // first one got.
            for i in 0..addrs.len() {
                for _ in 1..self.shards {
                    let local = sockets[i].local;
                    let bound = udp::bind_shared(local, V6Mode::Only, self.reuse_address, true)
                        .map_err(|err| {
                            io::Error::new(err.kind(), format!("cannot bind UDP {local}: {err}"))
                        })?;
                    sockets.push(bound);
                }
            }
            let mut listeners = Vec::new();
            if self.tcp {
                // The same address and port as UDP (the UDP socket resolved port 0).
                let plain = tcp::Accept {
                    tls: None,
                    websocket: false,
                };
                for (asked, bound) in addrs.iter().zip(&sockets) {
                    let addr = bound.local;
                    match tcp::bind_listener(addr) {
                        Ok(listener) => listeners.push((listener, plain.clone(), Scheme::CoapTcp)),
                        Err(err)
                            if err.kind() == io::ErrorKind::AddrInUse
                                && asked.port() == 0
                                && attempt < ATTEMPTS =>
                        {
                            continue 'retry;
                        }
                        Err(err) => {
                            return Err(io::Error::new(
                                err.kind(),
                                format!("cannot listen for coap+tcp on {addr}: {err}"),
                            ))
                        }
                    }
                }
            }
            return Ok((sockets, listeners));
        }
    }
}

/// A CoAP server over UDP: bound sockets and a [`Router`].
///
/// Each socket gets its own driver task; handlers run in tasks of their own, so a slow
/// handler delays nobody else (a Confirmable request whose handler takes longer than
/// `separate_ack_delay` is acknowledged at once and answered separately, RFC 7252
/// §5.2.2).
///
/// ```no_run
/// use corium::{Code, RequestContext, Resource, Response, Router, Server};
///
/// # async fn run() -> std::io::Result<()> {
/// let router = Router::new().route(
///     "/hello",
///     Resource::new().get(|_ctx: RequestContext| async { Response::with_payload(Code::CONTENT, "world") }),
/// );
/// let server = Server::builder()
///     .bind(&["[::]:5683".parse().unwrap(), "0.0.0.0:5683".parse().unwrap()], router)
///     .await?;
/// server.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await
/// # }
/// ```
pub struct Server {
    sockets: Vec<BoundSocket>,
    /// Sockets joined to multicast groups: the socket, the group, and the index in
    /// `sockets` of the unicast socket their answers leave from.
    groups: Vec<(tokio::net::UdpSocket, SocketAddr, usize)>,
    listeners: Vec<(tokio::net::TcpListener, tcp::Accept, Scheme)>,
    stream_limits: StreamLimits,
    router: Arc<Router>,
    config: EndpointConfig,
    shutdown_grace: Duration,
    trace: Option<TraceFn>,
    oscore: Option<Arc<crate::oscore::ServerShared>>,
    /// DTLS sockets (`coaps://`) and their configuration.
    dtls: Vec<(BoundSocket, corium_dtls::ServerConfig)>,
    dtls_limits: corium_dtls::DtlsConfig,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addrs", &self.local_addrs())
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A builder with the default configuration.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The bound UDP addresses (with the ports the system chose for port 0), each once
    /// even with [`ServerBuilder::shards`].
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = Vec::with_capacity(self.sockets.len());
        for s in &self.sockets {
            if !addrs.contains(&s.local) {
                addrs.push(s.local);
            }
        }
        addrs
    }

    /// The `coap+tcp` listening addresses (empty unless [`ServerBuilder::tcp`]).
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.stream_addrs()
            .into_iter()
            .filter(|(scheme, _)| *scheme == Scheme::CoapTcp)
            .map(|(_, addr)| addr)
            .collect()
    }

    /// The bound `coaps://` (DTLS) addresses (empty unless [`ServerBuilder::dtls`]).
    pub fn dtls_addrs(&self) -> Vec<SocketAddr> {
        self.dtls.iter().map(|(bound, _)| bound.local).collect()
    }

    /// Every connection-oriented listener (RFC 8323): its scheme and address.
    pub fn stream_addrs(&self) -> Vec<(Scheme, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(l, _, scheme)| Some((*scheme, l.local_addr().ok()?)))
            .collect()
    }

    /// Serves until `shutdown` resolves; then stops reading, waits up to the shutdown
    /// grace (2 s by default) for in-flight handlers and sends their responses, and
    /// returns. Returns early with the error if a socket fails.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        // RFC 7959 §2.5: uploads to resources that take blocks one by one are passed
        // through; all others are reassembled by the endpoint.
        if self.router.has_non_atomic_uploads() {
            let router = Arc::clone(&self.router);
            self.config.block1_passthrough = Some(corium_proto::Block1Passthrough(Arc::new(
                move |request: &Request| router.takes_blocks(request),
            )));
        }
        let mut drivers = JoinSet::new();
        let mut accepting = JoinSet::new();
        let mut controls = Vec::with_capacity(self.sockets.len());
        let mut links: Vec<((Link, SocketAddr), EndpointConfig)> = self
            .sockets
            .into_iter()
            .map(|bound| (Link::udp(bound), self.config.clone()))
            .collect();
        for (socket, group, reply) in self.groups {
            let Some((unicast, family)) = links.get(reply).and_then(|l| l.0 .0.udp_socket()) else {
                continue;
            };
            links.push((
                Link::group(socket, group, unicast, family),
                self.config.clone(),
            ));
        }
        for (bound, config) in self.dtls {
            let (link, local) =
                crate::dtls::DtlsLink::new(bound, Some(config), None, self.dtls_limits.clone())?;
            // The DTLS cookie exchange has verified the address (RFC 6347 §4.2.1).
            let config = EndpointConfig {
                amplification_limit: None,
                ..self.config.clone()
            };
            links.push(((Link::Dtls(Box::new(link)), local), config));
        }
        for (listener, accept, scheme) in self.listeners {
            let local = listener.local_addr()?;
            let framing = if accept.websocket {
                Framing::WebSocket
            } else {
                Framing::Tcp
            };
            tracing::debug!(%local, %scheme, "listening");
            // One endpoint per listener; its peers are the connections (RFC 8323).
            let config = EndpointConfig {
                framing: Some(framing),
                max_message_size: self.stream_limits.max_message_size,
                keepalive_ping: self.stream_limits.ping_after,
                ..self.config.clone()
            };
            let limits = StreamLimits {
                max_token_len: config.max_incoming_token_len,
                ..self.stream_limits.clone()
            };
            let (events_tx, events) = mpsc::channel(1024);
            accepting.spawn(tcp::accept_loop(listener, events_tx, limits, accept));
            let link = Link::Stream {
                events,
                conns: Default::default(),
                dialer: None,
            };
            links.push(((link, local), config));
        }
        for ((link, local), config) in links {
            let (tx, rx) = mpsc::unbounded_channel();
            let server = ServerSide {
                router: Arc::clone(&self.router),
                tx: tx.clone(),
                in_flight: 0,
                observers: Default::default(),
                oscore: self.oscore.as_ref().map(|shared| {
                    crate::oscore::ServerOscore::new(
                        Arc::clone(shared),
                        config.recognized_critical_options.clone(),
                        config.max_block1_body,
                        config.max_block1_total,
                    )
                }),
            };
            let driver = Driver::new((link, local), config, rx, self.trace.clone(), Some(server));
            drivers.spawn(async move { (local, driver.run().await) });
            controls.push(tx);
        }
        let mut failure = None;
        tokio::select! {
            () = shutdown => {}
            Some(done) = drivers.join_next() => {
                failure = Some(done);
            }
        }
        for tx in &controls {
            let _ = tx.send(Command::Shutdown {
                grace: self.shutdown_grace,
            });
        }
        let mut result = Ok(());
        if let Some(done) = failure {
            result = outcome(done);
        }
        while let Some(done) = drivers.join_next().await {
            if result.is_ok() {
                result = outcome(done);
            }
        }
        accepting.abort_all();
        result
    }

    /// Serves until the process is interrupted (Ctrl-C), then shuts down as
    /// [`run_until`](Self::run_until) does.
    pub async fn run(self) -> io::Result<()> {
        self.run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    }
}

fn outcome(done: Result<(SocketAddr, io::Result<()>), tokio::task::JoinError>) -> io::Result<()> {
    match done {
        Ok((_, Ok(()))) => Ok(()),
        Ok((local, Err(err))) => Err(io::Error::new(
            err.kind(),
            format!("server socket {local} failed: {err}"),
        )),
        Err(err) => Err(io::Error::other(format!(
            "server driver task failed: {err}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corium_proto::wire::OptionNumber;

    fn ctx(path: &str, query: &[&str]) -> RequestContext {
        let mut request = Request::new(Code::GET);
        request.set_path(path);
        for q in query {
            request
                .options
                .push(OptionNumber::URI_QUERY, q.as_bytes().to_vec());
        }
        RequestContext::new("127.0.0.1:1".parse().unwrap(), request)
    }

    #[test]
    fn context_accessors() {
        let c = ctx("/a/b", &["x=1", "flag", "y=a=b"]).with_param("id", "7");
        assert_eq!(c.path(), "/a/b");
        assert_eq!(c.query(), ["x=1", "flag", "y=a=b"]);
        assert_eq!(c.query_value("x").as_deref(), Some("1"));
        assert_eq!(c.query_value("flag").as_deref(), Some(""));
        assert_eq!(c.query_value("y").as_deref(), Some("a=b"));
        assert_eq!(c.query_value("fla"), None);
        assert_eq!(c.param("id"), Some("7"));
        assert_eq!(c.param("nope"), None);
        assert_eq!(ctx("/", &[]).path(), "/");
    }

    #[test]
    fn sync_handlers_answer_at_once() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let resource = crate::Resource::new()
            .get_sync(|_ctx: RequestContext| Response::with_payload(Code::CONTENT, "hi"))
            .method_sync(Code::PUT, |_ctx: RequestContext| panic!("boom"));
        let get = Arc::clone(resource.handler(Code::GET).unwrap());
        let r = start_handler(get, ctx("/", &[]), IncomingId(1), &tx);
        assert_eq!(
            r.map(|r| (r.code, r.payload)),
            Some((Code::CONTENT, b"hi".to_vec()))
        );
        let put = Arc::clone(resource.handler(Code::PUT).unwrap());
        let r = start_handler(put, ctx("/", &[]), IncomingId(2), &tx);
        assert_eq!(r.map(|r| r.code), Some(Code::INTERNAL_SERVER_ERROR));
        assert!(
            rx.try_recv().is_err(),
            "answered on the spot, not through the channel"
        );
    }

    #[tokio::test]
    async fn panics_are_caught() {
        let handler: Arc<dyn Handler> = Arc::new(|_ctx: RequestContext| async {
            panic!("boom");
        });
        assert!(CatchUnwind::Start(handler, Some(ctx("/", &[])))
            .await
            .is_none());
        let handler: Arc<dyn Handler> =
            Arc::new(|_ctx: RequestContext| async { Response::new(Code::CONTENT) });
        let r = CatchUnwind::Start(handler, Some(ctx("/", &[]))).await;
        assert_eq!(r.map(|r| r.code), Some(Code::CONTENT));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn shards_share_the_port_and_all_answer() {
        let router = Router::new().route(
            "/x",
            crate::Resource::new()
                .get(|_ctx: RequestContext| async { Response::new(Code::CONTENT) }),
        );
        let server = Server::builder()
            .shards(2)
            .bind(&["127.0.0.1:0".parse().unwrap()], router)
            .await
            .unwrap();
        // Two sockets, one address (SO_REUSEPORT, issue 8).
        assert_eq!(server.sockets.len(), 2);
        let addrs = server.local_addrs();
        assert_eq!(addrs.len(), 1);
        let addr = addrs[0];
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        // CON GET /x from 16 client ports (spread over both shards by the kernel's
        // 4-tuple hash): every one is answered with a piggybacked 2.05 (RFC 7252 §5.2.1).
        for i in 0..16u8 {
            let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let request = [0x41, 0x01, 0x00, i, 0xAA, 0xB1, b'x'];
            let mut buf = [0u8; 64];
            let mut answered = false;
            for _ in 0..5 {
                client.send_to(&request, addr).await.unwrap();
                if let Ok(Ok((n, _))) =
                    tokio::time::timeout(Duration::from_millis(500), client.recv_from(&mut buf))
                        .await
                {
                    assert!(n >= 5);
                    assert_eq!(&buf[..5], &[0x61, 0x45, 0x00, i, 0xAA]);
                    answered = true;
                    break;
                }
            }
            assert!(answered, "client {i} got no answer");
        }
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}
