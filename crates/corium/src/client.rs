//! The client: a handle to one UDP socket and its driver task (plus, once a
//! `coap+tcp://` URI is used, a second driver for TCP connections, RFC 8323), and the
//! request builder that turns a URI into options (RFC 7252 §6.4).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corium_proto::wire::{
    percent_decode, BlockValue, Code, ContentFormat, Host, OptionNumber, Scheme, Uri,
};
use corium_proto::{EndpointConfig, Request, RequestOptions, Response};
use tokio::sync::{mpsc, oneshot};

use crate::driver::{Command, Dialer, Direction, Driver, Link, Outcome, TraceFn};
use crate::error::{Error, Kind};
use crate::tcp::StreamLimits;
use crate::tls::TlsClient;
use crate::udp::{self, canonical, Family, V6Mode};

/// Configures and binds a [`Client`].
#[derive(Clone, Default)]
pub struct ClientBuilder {
    config: EndpointConfig,
    trace: Option<TraceFn>,
    progress: Option<ProgressFn>,
    stream_limits: StreamLimits,
    tls: Option<TlsClient>,
    /// RFC 8613: the contexts that protect requests to matching URIs.
    oscore: Option<Arc<crate::oscore::OscoreClient>>,
    /// IP_MULTICAST_IF of the UDP socket.
    multicast_if: Option<std::net::Ipv4Addr>,
    /// Credentials for `coaps://` (DTLS, RFC 7252 §9).
    dtls: Option<corium_dtls::ClientConfig>,
}

/// How far a block-wise transfer (RFC 7959) has come, for progress displays.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Whether the request body goes up (Block1) or the response comes down (Block2).
    pub direction: Direction,
    /// Bytes transferred so far.
    pub done: usize,
    /// The total, when known (the body being uploaded, or the server's Size2).
    pub total: Option<usize>,
}

type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .field("trace", &self.trace.is_some())
            .finish()
    }
}

impl ClientBuilder {
    /// The endpoint configuration: transmission parameters (NSTART, ACK_TIMEOUT, …),
    /// default request timeout, table limits. The default keeps RFC 7252's NSTART = 1:
    /// one outstanding request per server at a time, the others queue.
    pub fn config(mut self, config: EndpointConfig) -> Self {
        self.config = config;
        self
    }

    /// Called for every datagram sent or received (for `corium get -v`). Runs on the
    /// driver task: keep it short.
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

    /// Called after every block of a block-wise transfer (uploads report
    /// [`Direction::Sent`], downloads [`Direction::Received`]), for a progress display.
    pub fn progress(mut self, f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Limits of the TCP connections `coap+tcp://` requests open (RFC 8323): the
    /// Max-Message-Size announced in the CSM, idle and half-received-message timeouts.
    pub fn stream_limits(mut self, limits: StreamLimits) -> Self {
        self.stream_limits = limits;
        self
    }

    /// The interface IPv4 multicast requests leave from, by one of its addresses
    /// (IP_MULTICAST_IF; e.g. 127.0.0.1 for groups joined on the loopback interface).
    /// IPv6 groups take the interface from the URI's zone (`coap://[ff02::fd%eth0]`).
    pub fn multicast_interface(mut self, addr: std::net::Ipv4Addr) -> Self {
        self.multicast_if = Some(addr);
        self
    }

    /// Trust anchors and an optional client certificate for `coaps+tcp://` and
    /// `coaps+ws://` (RFC 8323 §9.2). Without it, secure schemes are refused.
    pub fn tls(mut self, tls: TlsClient) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Credentials (PSK identity and key, or trust anchors) for `coaps://` (CoAP over
    /// DTLS, RFC 7252 §9). Without them, `coaps://` URIs are refused.
    pub fn dtls(mut self, config: corium_dtls::ClientConfig) -> Self {
        self.dtls = Some(config);
        self
    }

    /// Protects requests whose URI matches one of `oscore`'s patterns with OSCORE
    /// (RFC 8613), over any scheme; see [`OscoreClient`](crate::OscoreClient).
    pub fn oscore(mut self, oscore: crate::oscore::OscoreClient) -> Self {
        self.oscore = Some(Arc::new(oscore));
        self
    }

    /// Starts the driver for connections of one scheme (no socket yet: each peer's
    /// connection is opened by the first request to it and reused after).
    fn start_stream(self, scheme: Scheme) -> Result<Client, Error> {
        let websocket = matches!(scheme, Scheme::CoapWs | Scheme::CoapsWs);
        let tls = match scheme {
            Scheme::CoapsTcp | Scheme::CoapsWs => match &self.tls {
                Some(tls) => Some(tls.connector(websocket)),
                None => {
                    return Err(Error::uri(format!(
                        "scheme {scheme} needs TLS trust anchors (a CA file, or insecure mode for tests)"
                    )))
                }
            },
            _ => None,
        };
        let framing = if websocket {
            corium_proto::wire::Framing::WebSocket
        } else {
            corium_proto::wire::Framing::Tcp
        };
        let (events_tx, events) = mpsc::channel(1024);
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
        let default_timeout = config.request_timeout();
        let names = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let dialer = Dialer {
            events: events_tx,
            limits,
            connect_timeout: default_timeout,
            dial: crate::tcp::Dial { tls, websocket },
            names: Arc::clone(&names),
            waiting: Default::default(),
            failures: Default::default(),
        };
        let link = Link::Stream {
            events,
            conns: Default::default(),
            dialer: Some(Box::new(dialer)),
        };
        let local = SocketAddr::from(([0, 0, 0, 0], 0));
        let ping_timeout = config.request_timeout();
        Ok(self.launch(
            config,
            (link, local),
            Family::Dual,
            ping_timeout,
            Role::Stream(names),
        ))
    }

    /// Starts the `coaps://` companion: its own UDP socket carrying DTLS sessions, one
    /// per server, each opened by the first request to it (RFC 7252 §9).
    fn start_dtls(self) -> Result<Client, Error> {
        let Some(config) = self.dtls.clone() else {
            return Err(Error::uri(
                "scheme coaps needs DTLS credentials (a PSK identity and key)",
            ));
        };
        let bound = udp::bind(SocketAddr::from(([0u16; 8], 0)), V6Mode::Dual, false)
            .or_else(|_| udp::bind(SocketAddr::from(([0, 0, 0, 0], 0)), V6Mode::Dual, false))
            .map_err(|err| Error::uri(format!("cannot bind a DTLS socket: {err}")))?;
        let (link, local) =
            crate::dtls::DtlsLink::new(bound, None, Some(config), Default::default())
                .map_err(|err| Error::uri(format!("DTLS configuration: {err}")))?;
        let family = link.family;
        let config = self.config.clone();
        let ping_timeout = config.transmission.max_transmit_wait();
        Ok(self.launch(
            config,
            (Link::Dtls(Box::new(link)), local),
            family,
            ping_timeout,
            Role::Dtls,
        ))
    }

    /// Binds to `addr` (e.g. `[::]:0`, dual-stack where the system allows it, or
    /// `0.0.0.0:0`) and starts the driver task. Must be called within a tokio runtime.
    pub async fn bind(self, addr: SocketAddr) -> io::Result<Client> {
        let bound = udp::bind(addr, V6Mode::Dual, false)?;
        if let Some(interface) = self.multicast_if {
            socket2::SockRef::from(&bound.socket).set_multicast_if_v4(&interface)?;
        }
        let family = bound.family;
        let config = self.config.clone();
        let ping_timeout = config.transmission.max_transmit_wait();
        let companions = Box::new(Companions {
            builder: self.clone(),
            by_scheme: Default::default(),
        });
        Ok(self.launch(
            config,
            Link::udp(bound),
            family,
            ping_timeout,
            Role::Udp(companions),
        ))
    }

    /// Starts the driver task of `link` under `config` and returns the client that
    /// commands it. The UDP client, its connection companions and its DTLS companion
    /// differ only in what they pass here.
    fn launch(
        self,
        config: EndpointConfig,
        (link, local): (Link, SocketAddr),
        family: Family,
        ping_timeout: Duration,
        role: Role,
    ) -> Client {
        let (tx, rx) = mpsc::unbounded_channel();
        let default_timeout = config.request_timeout();
        let block_szx = config.max_block_szx.min(UPLOAD_SZX);
        let driver = Driver::new((link, local), config, rx, self.trace, None);
        tokio::spawn(async move {
            if let Err(err) = driver.run().await {
                tracing::error!(%local, %err, "client driver stopped");
            }
        });
        let (companions, names) = match role {
            Role::Udp(companions) => (Some(companions), None),
            Role::Stream(names) => (None, Some(names)),
            Role::Dtls => (None, None),
        };
        Client {
            inner: Arc::new(Inner {
                tx,
                local,
                family,
                default_timeout,
                ping_timeout,
                block_szx,
                progress: self.progress,
                next_key: AtomicU64::new(0),
                companions,
                names,
                oscore: self.oscore,
            }),
        }
    }
}

/// The host names a connection companion addressed each peer by.
type HostNames = Arc<std::sync::Mutex<std::collections::HashMap<SocketAddr, String>>>;

/// What kind of client [`ClientBuilder::launch`] starts.
enum Role {
    /// The UDP client the application holds, with its companions.
    Udp(Box<Companions>),
    /// A companion for an RFC 8323 scheme.
    Stream(HostNames),
    /// The `coaps://` companion.
    Dtls,
}

struct Inner {
    tx: mpsc::UnboundedSender<Command>,
    local: SocketAddr,
    family: Family,
    default_timeout: Duration,
    /// The endpoint gives a ping MAX_TRANSMIT_WAIT (RFC 7252 §4.8.2).
    ping_timeout: Duration,
    /// Block size (as SZX) of uploads and of downloads this client asks for: the
    /// configuration's `max_block_szx`, at most 6 (1024 bytes) over UDP.
    block_szx: u8,
    /// The progress callback, if any.
    progress: Option<ProgressFn>,
    next_key: AtomicU64,
    /// The UDP client's companions for the RFC 8323 schemes, each started by the first
    /// request of its scheme; `None` in a companion itself.
    companions: Option<Box<Companions>>,
    /// In a companion: the host names requests addressed each peer by.
    names: Option<HostNames>,
    /// RFC 8613: the contexts that protect requests to matching URIs.
    oscore: Option<Arc<crate::oscore::OscoreClient>>,
}

/// The connection-oriented clients of a UDP client, one per scheme (RFC 8323 §8).
struct Companions {
    builder: ClientBuilder,
    /// `coap+tcp`, `coaps+tcp`, `coap+ws`, `coaps+ws`, `coaps` (DTLS).
    by_scheme: [tokio::sync::OnceCell<Client>; 5],
}

/// A CoAP client over one UDP socket.
///
/// Cheap to clone: clones share the socket and its driver task, which stops when the
/// last clone is dropped. Requests from all clones run concurrently, within the
/// configured NSTART per server (RFC 7252 §4.7).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = corium::Client::bind("[::]:0".parse()?).await?;
/// let response = client.get("coap://127.0.0.1/test").await?;
/// println!("{} {:?}", response.code, response.payload_str());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("local", &self.inner.local)
            .finish_non_exhaustive()
    }
}

/// Cancels the request in the driver if the awaiting future is dropped first.
struct CancelGuard<'a> {
    tx: &'a mpsc::UnboundedSender<Command>,
    key: u64,
    armed: bool,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.tx.send(Command::Cancel { key: self.key });
        }
    }
}

impl Client {
    /// A builder, for a configuration or a trace callback.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Binds to `addr` with the default configuration (see [`ClientBuilder::bind`]).
    pub async fn bind(addr: SocketAddr) -> io::Result<Client> {
        ClientBuilder::default().bind(addr).await
    }

    /// The local address of the socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.inner.local)
    }

    /// Starts a request to `uri`; the URI is parsed when it is sent.
    pub fn request(&self, method: Code, uri: &str) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            uri: uri.to_owned(),
            request: Request::new(method),
            options: RequestOptions::default(),
        }
    }

    /// GET `uri` (RFC 7252 §5.8.1).
    pub async fn get(&self, uri: &str) -> Result<Response, Error> {
        self.request(Code::GET, uri).send().await
    }

    /// POST `payload` to `uri` (RFC 7252 §5.8.2).
    pub async fn post(&self, uri: &str, payload: impl Into<Vec<u8>>) -> Result<Response, Error> {
        self.request(Code::POST, uri).payload(payload).send().await
    }

    /// PUT `payload` to `uri` (RFC 7252 §5.8.3).
    pub async fn put(&self, uri: &str, payload: impl Into<Vec<u8>>) -> Result<Response, Error> {
        self.request(Code::PUT, uri).payload(payload).send().await
    }

    /// DELETE `uri` (RFC 7252 §5.8.4).
    pub async fn delete(&self, uri: &str) -> Result<Response, Error> {
        self.request(Code::DELETE, uri).send().await
    }

    /// Observes `uri` (RFC 7641): sends a GET with Observe = 0 and waits for the first
    /// response; the [`Observation`](crate::Observation) yields it and every
    /// notification after it.
    pub async fn observe(&self, uri: &str) -> Result<crate::Observation, Error> {
        self.request(Code::GET, uri).observe().await
    }

    /// The client for a URI scheme: this one for `coap`, its TCP companion for
    /// `coap+tcp` (RFC 8323 §8.1).
    async fn for_scheme(&self, scheme: Scheme) -> Result<Client, Error> {
        let slot = match scheme {
            Scheme::Coap => return Ok(self.clone()),
            Scheme::CoapTcp => 0,
            Scheme::CoapsTcp => 1,
            Scheme::CoapWs => 2,
            Scheme::CoapsWs => 3,
            Scheme::Coaps => 4,
        };
        let Some(companions) = &self.inner.companions else {
            return Ok(self.clone()); // Already the companion of its scheme.
        };
        companions.by_scheme[slot]
            .get_or_try_init(|| async {
                if scheme == Scheme::Coaps {
                    companions.builder.clone().start_dtls()
                } else {
                    companions.builder.clone().start_stream(scheme)
                }
            })
            .await
            .cloned()
    }

    /// Remembers the host name `peer` was addressed by, for TLS and WebSockets.
    fn remember_host(&self, peer: SocketAddr, request: &Request) {
        let (Some(names), Some(host)) = (
            &self.inner.names,
            request
                .options
                .get(OptionNumber::URI_HOST)
                .and_then(|h| std::str::from_utf8(h).ok()),
        ) else {
            return;
        };
        if let Ok(mut names) = names.lock() {
            if names.len() < 4096 || names.contains_key(&peer) {
                names.insert(peer, host.to_owned());
            }
        }
    }

    /// The block size (SZX) of uploads and of downloads this client asks for.
    pub(crate) fn block_szx(&self) -> u8 {
        self.inner.block_szx
    }

    /// Whether this client sends datagrams (UDP) rather than over connections.
    pub(crate) fn is_datagram(&self) -> bool {
        self.inner.names.is_none()
    }

    /// The OSCORE context for requests to `uri`, if any (RFC 8613 §3.1).
    fn oscore_context(&self, uri: &str) -> Option<crate::oscore::ClientContext> {
        self.inner.oscore.as_ref()?.context_for(uri)
    }

    pub(crate) fn next_key(&self) -> u64 {
        self.inner.next_key.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn command(&self, cmd: Command) -> Result<(), Error> {
        self.inner.tx.send(cmd).map_err(|_| Error::closed())
    }

    /// Sends an already built request to a resolved address (no URI handling: the
    /// request's options are sent as they are).
    pub async fn send(
        &self,
        peer: SocketAddr,
        request: Request,
        options: RequestOptions,
    ) -> Result<Response, Error> {
        self.send_to(peer, request, options)
            .await
            .map_err(|e| e.with_target(peer))
    }

    /// Sends a request: a payload larger than one block goes as a Block1 upload, and a
    /// response that arrives block-wise is completed block by block (RFC 7959 §2.4,
    /// §2.7), so the caller always gets the whole representation. A request that
    /// already carries Block2 asks for one block on purpose and is sent as it is.
    pub(crate) async fn send_to(
        &self,
        peer: SocketAddr,
        request: Request,
        options: RequestOptions,
    ) -> Result<Response, Error> {
        if request.options.contains(OptionNumber::BLOCK2) {
            return self.send_one(peer, request, options).await;
        }
        let szx = self.inner.block_szx;
        let plan = if request.options.contains(OptionNumber::BLOCK1) {
            None // The caller does its own block-wise upload.
        } else {
            self.upload_plan(peer, request.payload.len()).await
        };
        let upload = plan.is_some();
        // RFC 7959 §2.4, early negotiation: a client that wants blocks smaller than the
        // largest asks for block 0 in its size with the first request.
        let mut first_request = request.clone();
        if szx < UPLOAD_SZX && !upload && matches!(request.method, Code::GET | Code::FETCH) {
            let block = BlockValue::new(0, false, szx).expect("SZX below 7");
            let mut buf = [0u8; 4];
            first_request
                .options
                .push(OptionNumber::BLOCK2, block.encode(&mut buf).to_vec());
        }
        let mut restarts = 0;
        loop {
            let first = if let Some((szx, chunk)) = plan {
                self.upload(peer, request.clone(), options.clone(), szx, chunk)
                    .await?
            } else {
                self.send_one(peer, first_request.clone(), options.clone())
                    .await?
            };
            match self
                .remaining_blocks(peer, &request, first, &options)
                .await?
            {
                Blocks::Complete(response) => return Ok(response),
                // RFC 7959 §2.4: the representation changed while it was being fetched.
                // A safe request can start over; an unsafe one must not run twice.
                Blocks::Changed if !response_cache_needed(request.method) => {
                    restarts += 1;
                    if restarts > MAX_BLOCKWISE_RESTARTS {
                        return Err(Error::new(Kind::Blockwise(
                            "the representation kept changing during a block-wise transfer",
                        )));
                    }
                }
                Blocks::Changed => {
                    return Err(Error::new(Kind::Blockwise(
                        "the response changed between its blocks",
                    )))
                }
            }
        }
    }

    /// Sends a request in one message, however large its payload (no Block1), and
    /// completes a block-wise response (RFC 7959 §2.4): for OSCORE messages that fit a
    /// datagram although their payload exceeds a block (RFC 8613 §4.1.3.4.1).
    pub(crate) async fn send_whole(
        &self,
        peer: SocketAddr,
        request: Request,
        options: RequestOptions,
    ) -> Result<Response, Error> {
        let first = self
            .send_one(peer, request.clone(), options.clone())
            .await?;
        match self
            .remaining_blocks(peer, &request, first, &options)
            .await?
        {
            Blocks::Complete(response) => Ok(response),
            Blocks::Changed => Err(Error::new(Kind::Blockwise(
                "the response changed between its blocks",
            ))),
        }
    }

    /// Fetches the blocks after `first`, if it is block 0 of several. Follow-ups repeat
    /// the request with Block2 N; for unsafe methods without a payload, since the server
    /// serves them from the response it kept (RFC 7959 §2.7).
    async fn remaining_blocks(
        &self,
        peer: SocketAddr,
        request: &Request,
        first: Response,
        options: &RequestOptions,
    ) -> Result<Blocks, Error> {
        let Some(block) = block2_of(&first) else {
            return Ok(Blocks::Complete(first));
        };
        if !block.more || block.num != 0 || !first.code.is_success() {
            return Ok(Blocks::Complete(first));
        }
        let etag = first.options.get(OptionNumber::ETAG).map(<[u8]>::to_vec);
        let mut template = request.clone();
        for n in [
            OptionNumber::BLOCK1,
            OptionNumber::SIZE1,
            OptionNumber::REQUEST_TAG,
        ] {
            template.options.remove(n);
        }
        if response_cache_needed(request.method) {
            template.payload.clear();
            template.options.remove(OptionNumber::CONTENT_FORMAT);
        }
        let mut whole = first;
        whole.options.remove(OptionNumber::BLOCK2);
        let mut szx = block.szx;
        // RFC 9175 §2.3: an Echo value in a response goes back in the next request (a
        // server limiting what it sends to an unverified address puts one there).
        let mut echo = whole.options.get(OptionNumber::ECHO).map(<[u8]>::to_vec);
        whole.options.remove(OptionNumber::ECHO);
        // RFC 7959 §4: Size2 in the first block announces the total.
        let total = whole
            .options
            .get_uint(OptionNumber::SIZE2)
            .map(|n| n as usize);
        self.report(Direction::Received, whole.payload.len(), total);
        loop {
            if whole.payload.len() > MAX_REASSEMBLED_BODY {
                return Err(Error::new(Kind::Blockwise(
                    "the block-wise response exceeds the 16 MiB reassembly limit",
                )));
            }
            // The server may lower the block size at any block (late negotiation): ask
            // for the block that starts where the body ends, in its latest size (block
            // numbers of BERT count 1024-byte units, RFC 8323 §6).
            let size = block_unit(szx);
            let Some(next) = u32::try_from(whole.payload.len() / size)
                .ok()
                .and_then(|num| BlockValue::new(num, false, szx))
            else {
                return Err(Error::new(Kind::Blockwise("block number out of range")));
            };
            let mut buf = [0u8; 4];
            let mut req = template.clone();
            req.options
                .set(OptionNumber::BLOCK2, next.encode(&mut buf).to_vec());
            if let Some(value) = echo.take() {
                req.options.set(OptionNumber::ECHO, value);
            }
            let part = self.send_one(peer, req, options.clone()).await?;
            echo = part.options.get(OptionNumber::ECHO).map(<[u8]>::to_vec);
            if !part.code.is_success() {
                return Ok(Blocks::Complete(part));
            }
            let Some(got) = block2_of(&part) else {
                return Err(Error::new(Kind::Blockwise(
                    "a block of the response came without a Block2 option",
                )));
            };
            if part.options.get(OptionNumber::ETAG) != etag.as_deref()
                || got.offset() != whole.payload.len()
            {
                return Ok(Blocks::Changed);
            }
            whole.payload.extend_from_slice(&part.payload);
            self.report(Direction::Received, whole.payload.len(), total);
            if !got.more {
                return Ok(Blocks::Complete(whole));
            }
            szx = got.szx.min(szx);
        }
    }

    /// Sends a payload larger than one block as a Block1 upload (RFC 7959 §2.3): one
    /// request per block, each answered 2.31 Continue, the last one with the final
    /// response. The server may ask for smaller blocks in its 2.31 (§2.5); the upload
    /// continues at the same byte offset in that size. Size1 announces the total (§4),
    /// and a random Request-Tag keeps concurrent uploads to one resource apart (RFC 9175
    /// §3.4).
    /// How a body of `len` bytes goes up: `None` in one message, else block-wise with
    /// this SZX and this many bytes per message. Over UDP, or with a configured block size
    /// below 1024, blocks of that size once the body exceeds one. Over a connection
    /// (RFC 8323) the peer's CSM decides otherwise: in
    /// one message when it fits its Max-Message-Size, else BERT blocks (§6) when it
    /// announced them, else 1024-byte blocks.
    async fn upload_plan(&self, peer: SocketAddr, len: usize) -> Option<(u8, usize)> {
        let szx = self.inner.block_szx;
        let size = 1usize << (szx + 4);
        if len <= size {
            return None;
        }
        // Over UDP, and when smaller blocks were asked for, blocks of that size.
        if self.inner.names.is_none() || szx < UPLOAD_SZX {
            return Some((szx, size));
        }
        let caps = self.capabilities(peer).await?;
        if len + UPLOAD_HEADROOM <= caps.max_message_size {
            return None;
        }
        if caps.block_wise && caps.max_message_size > 1152 && szx == UPLOAD_SZX {
            let units =
                (caps.max_message_size.saturating_sub(UPLOAD_HEADROOM) / 1024).clamp(1, 1024);
            return Some((BlockValue::BERT_SZX, units * 1024));
        }
        Some((szx, size))
    }

    /// What the server's CSM announced (RFC 8323 §5.3); opens the connection if needed.
    /// `None` over UDP, or when the connection fails.
    async fn capabilities(&self, peer: SocketAddr) -> Option<corium_proto::PeerCapabilities> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Capabilities { peer, reply: tx })
            .ok()?;
        rx.await.ok().flatten()
    }

    async fn upload(
        &self,
        peer: SocketAddr,
        request: Request,
        options: RequestOptions,
        first_szx: u8,
        chunk: usize,
    ) -> Result<Response, Error> {
        let body = &request.payload;
        let mut szx = first_szx;
        let mut offset = 0usize;
        let tag: [u8; 4] = rand::random();
        loop {
            // A BERT block carries `chunk` bytes; its number counts 1024-byte units.
            let unit = block_unit(szx);
            let size = if szx == BlockValue::BERT_SZX {
                chunk
            } else {
                unit
            };
            let end = (offset + size).min(body.len());
            let more = end < body.len();
            let Some(block) = u32::try_from(offset / unit)
                .ok()
                .and_then(|num| BlockValue::new(num, more, szx))
            else {
                return Err(Error::new(Kind::Blockwise("block number out of range")));
            };
            let mut part = Request {
                method: request.method,
                options: request.options.clone(),
                payload: body[offset..end].to_vec(),
            };
            let mut buf = [0u8; 4];
            part.options
                .push(OptionNumber::BLOCK1, block.encode(&mut buf).to_vec());
            part.options.push(OptionNumber::REQUEST_TAG, tag.to_vec());
            if offset == 0 {
                part.options.push_uint(
                    OptionNumber::SIZE1,
                    u32::try_from(body.len()).unwrap_or(u32::MAX),
                );
            }
            let response = self.send_one(peer, part, options.clone()).await?;
            self.report(Direction::Sent, end, Some(body.len()));
            if !more || response.code != Code::CONTINUE {
                // The final response, or an error (4.08, 4.13, ...) that ends the upload.
                return Ok(response);
            }
            let acked = response
                .options
                .get(OptionNumber::BLOCK1)
                .and_then(BlockValue::decode);
            match acked {
                // Late negotiation: continue after what the server took, in its size.
                Some(ack) if ack.szx < szx => {
                    szx = ack.szx;
                    offset = (ack.num as usize + 1) * block_unit(szx);
                }
                _ => offset = end,
            }
            if offset == 0 || offset > body.len() {
                return Err(Error::new(Kind::Blockwise(
                    "the server acknowledged a block that was not sent",
                )));
            }
        }
    }

    fn report(&self, direction: Direction, done: usize, total: Option<usize>) {
        if let Some(progress) = &self.inner.progress {
            progress(Progress {
                direction,
                done,
                total,
            });
        }
    }

    /// Sends one request and waits for its response. A 4.01 (Unauthorized) with an
    /// Echo option the request did not carry is a challenge (RFC 9175 §2.3: the server
    /// wants the request fresh, or its address verified, §2.4 item 3): the request is
    /// sent once more with the Echo value, and that answer is the response.
    async fn send_one(
        &self,
        peer: SocketAddr,
        request: Request,
        options: RequestOptions,
    ) -> Result<Response, Error> {
        let retry = request.clone();
        let response = self.send_once(peer, request, options.clone()).await?;
        let echo = match response.options.get(OptionNumber::ECHO) {
            Some(echo)
                if response.code == Code::UNAUTHORIZED
                    && retry.options.get(OptionNumber::ECHO) != Some(echo) =>
            {
                echo.to_vec()
            }
            _ => return Ok(response),
        };
        let mut retry = retry;
        retry.options.set(OptionNumber::ECHO, echo);
        self.send_once(peer, retry, options).await
    }

    async fn send_once(
        &self,
        peer: SocketAddr,
        request: Request,
        options: RequestOptions,
    ) -> Result<Response, Error> {
        let peer = self.reachable(peer)?;
        let timeout = options.timeout.unwrap_or(self.inner.default_timeout);
        let (key, reply) = self.submit(|key, reply| Command::Request {
            key,
            peer,
            request,
            options,
            reply,
        })?;
        match self.wait(key, reply).await? {
            Outcome::Response(response) => Ok(response),
            Outcome::Failed(err) => Err(Error::from_request_error(err, peer, timeout)),
            Outcome::ConnectFailed(kind, text) => Err(Error::connect_failed(kind, &text, peer)),
            Outcome::Rejected(err) => Err(err.into()),
            Outcome::Pong => Err(Error::new(Kind::Io(io::Error::other(
                "unexpected pong for a request",
            )))),
        }
    }

    /// Sends a CoAP ping (an empty Confirmable message, RFC 7252 §4.3); succeeds when the
    /// peer answers with a Reset.
    pub async fn ping(&self, peer: SocketAddr) -> Result<(), Error> {
        let target = peer;
        let result = async {
            let peer = self.reachable(peer)?;
            let (key, reply) = self.submit(|key, reply| Command::Ping { key, peer, reply })?;
            match self.wait(key, reply).await? {
                Outcome::Pong | Outcome::Response(_) => Ok(()),
                Outcome::Failed(err) => Err(Error::from_request_error(
                    err,
                    peer,
                    self.inner.ping_timeout,
                )),
                Outcome::ConnectFailed(kind, text) => Err(Error::connect_failed(kind, &text, peer)),
                Outcome::Rejected(err) => Err(err.into()),
            }
        }
        .await;
        result.map_err(|e| e.with_target(target))
    }

    /// The canonical form of `peer`, if this socket can reach it.
    fn reachable(&self, peer: SocketAddr) -> Result<SocketAddr, Error> {
        let peer = canonical(peer);
        match self.inner.family.to_socket(peer) {
            Some(_) => Ok(peer),
            None => Err(Error::new(Kind::AddressFamily {
                local: self.inner.local,
                peer,
            })),
        }
    }

    fn submit(
        &self,
        make: impl FnOnce(u64, oneshot::Sender<Outcome>) -> Command,
    ) -> Result<(u64, oneshot::Receiver<Outcome>), Error> {
        let key = self.inner.next_key.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(make(key, tx))
            .map_err(|_| Error::closed())?;
        Ok((key, rx))
    }

    async fn wait(&self, key: u64, reply: oneshot::Receiver<Outcome>) -> Result<Outcome, Error> {
        let mut guard = CancelGuard {
            tx: &self.inner.tx,
            key,
            armed: true,
        };
        let outcome = reply.await;
        guard.armed = false;
        outcome.map_err(|_| Error::closed())
    }
}

/// A request being built; sent with [`send`](Self::send).
#[derive(Debug)]
pub struct RequestBuilder {
    client: Client,
    uri: String,
    request: Request,
    options: RequestOptions,
}

impl RequestBuilder {
    /// Sets the payload.
    pub fn payload(mut self, p: impl Into<Vec<u8>>) -> Self {
        self.request.payload = p.into();
        self
    }

    /// Sets the Content-Format option (RFC 7252 §5.10.3).
    pub fn content_format(mut self, cf: ContentFormat) -> Self {
        self.request
            .options
            .set_uint(OptionNumber::CONTENT_FORMAT, u32::from(cf.0));
        self
    }

    /// Sets the Accept option (RFC 7252 §5.10.4).
    pub fn accept(mut self, cf: ContentFormat) -> Self {
        self.request
            .options
            .set_uint(OptionNumber::ACCEPT, u32::from(cf.0));
        self
    }

    /// Adds an option; options with the same number keep the order they were added in,
    /// after those the URI produces.
    pub fn option(mut self, number: OptionNumber, value: impl Into<Vec<u8>>) -> Self {
        self.request.options.push(number, value);
        self
    }

    /// Sends the request Non-confirmable (RFC 7252 §4.3) instead of Confirmable.
    pub fn non_confirmable(mut self, yes: bool) -> Self {
        self.options.non_confirmable = yes;
        self
    }

    /// How long to wait for the response; the configured default (MAX_TRANSMIT_WAIT,
    /// 93 s, unless changed) otherwise.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.options.timeout = Some(d);
        self
    }

    /// Observes the resource (RFC 7641 §3.1): sends the request (a GET or FETCH) with
    /// Observe = 0 and waits for the first response. See [`crate::Observation`].
    pub async fn observe(self) -> Result<crate::Observation, Error> {
        let RequestBuilder {
            client,
            uri,
            request,
            options,
        } = self;
        let result = async {
            let (scheme, peer, request) = prepare(&client, &uri, request).await?;
            let oscore = client.oscore_context(&uri);
            let client = client.for_scheme(scheme).await?;
            let peer = client.reachable(peer)?;
            client.remember_host(peer, &request);
            let timeout = options.timeout.unwrap_or(client.inner.default_timeout);
            // RFC 8613 §4.1.3.5: the registration is protected, each notification verified.
            let (request, security) = match oscore {
                Some(ctx) => {
                    let (outer, security) = crate::oscore::ObserveSecurity::register(ctx, request)?;
                    (outer, Some(security))
                }
                None => (request, None),
            };
            let plain = security.is_none();
            let observation = crate::observe::Observation::start(
                client.clone(),
                peer,
                request.clone(),
                options.clone(),
                timeout,
                security,
            )
            .await?;
            // RFC 9175 §2.3: a 4.01 with an Echo value the registration did not carry
            // asks for it again with the value (a server verifying the address before
            // it sends a large representation, §2.4 item 3).
            let echo = match observation.first_response() {
                Some(first)
                    if plain
                        && first.code == Code::UNAUTHORIZED
                        && first.options.get(OptionNumber::ECHO).is_some()
                        && first.options.get(OptionNumber::ECHO)
                            != request.options.get(OptionNumber::ECHO) =>
                {
                    first.options.get(OptionNumber::ECHO).map(<[u8]>::to_vec)
                }
                _ => None,
            };
            let Some(echo) = echo else {
                return Ok(observation);
            };
            drop(observation);
            let mut request = request;
            request.options.set(OptionNumber::ECHO, echo);
            crate::observe::Observation::start(client, peer, request, options, timeout, None).await
        }
        .await;
        result.map_err(|e| e.with_target(&uri))
    }

    /// Sends the request to the multicast group of a `coap://` URI (RFC 7252 §8.1: as a
    /// Non-confirmable message) and collects every response for `wait`, each with the
    /// unicast address of the server that sent it. Servers give no error responses to
    /// group requests and answer after a random leisure (§8.2), so `wait` should cover
    /// it (DEFAULT_LEISURE is 5 s; servers may use less). A No-Response option
    /// (RFC 7967) added with [`option`](Self::option) is passed on.
    pub async fn multicast(self, wait: Duration) -> Result<Vec<(SocketAddr, Response)>, Error> {
        let RequestBuilder {
            client,
            uri,
            request,
            options,
        } = self;
        let result = async {
            let (scheme, group, request) = prepare(&client, &uri, request).await?;
            if scheme != Scheme::Coap {
                return Err(Error::uri("group requests need a coap:// URI"));
            }
            if !group.ip().is_multicast() {
                return Err(Error::uri(format!(
                    "{} is not a multicast address",
                    group.ip()
                )));
            }
            let group = client.reachable(group)?;
            let (request_copy, unicast) = (request.clone(), options.clone());
            let key = client.next_key();
            let (tx, mut rx) = mpsc::unbounded_channel();
            client.command(Command::Multicast {
                key,
                group,
                request,
                options: RequestOptions {
                    timeout: Some(wait),
                    ..options
                },
                tx,
            })?;
            let mut guard = CancelGuard {
                tx: &client.inner.tx,
                key,
                armed: true,
            };
            let mut responses = Vec::new();
            while let Some(response) = rx.recv().await {
                responses.push(response);
            }
            guard.armed = false;
            // RFC 7959 §2.8: a server answers a group request with the first block of a
            // large response (one limiting amplification always does, RFC 9175 §2.4
            // item 3, with an Echo value that the unicast follow-ups carry back); the
            // rest comes by unicast from each server.
            for (peer, response) in &mut responses {
                if block2_of(response).is_some_and(|b| b.num == 0 && b.more) {
                    let first = std::mem::replace(response, Response::new(response.code));
                    match client
                        .remaining_blocks(*peer, &request_copy, first.clone(), &unicast)
                        .await
                    {
                        Ok(Blocks::Complete(whole)) => *response = whole,
                        _ => *response = first,
                    }
                }
            }
            Ok(responses)
        }
        .await;
        result.map_err(|e| e.with_target(&uri))
    }

    /// Resolves the URI, sends the request and waits for the response.
    pub async fn send(self) -> Result<Response, Error> {
        let RequestBuilder {
            client,
            uri,
            request,
            options,
        } = self;
        let result = async {
            let (scheme, peer, request) = prepare(&client, &uri, request).await?;
            let oscore = client.oscore_context(&uri);
            let client = client.for_scheme(scheme).await?;
            client.remember_host(peer, &request);
            match oscore {
                // RFC 8613: protected end to end, the outer message takes the usual path.
                Some(ctx) => crate::oscore::send(&client, peer, request, options, &ctx).await,
                None => client.send_to(peer, request, options).await,
            }
        }
        .await;
        result.map_err(|e| e.with_target(&uri))
    }
}

/// The largest block size exponent over UDP: SZX 6 = 1024 bytes (RFC 7959 §2.2), which
/// keeps every datagram within RFC 7252 §4.6's 1152 bytes.
const UPLOAD_SZX: u8 = 6;

/// Bytes left beside an upload for the header and options when deciding whether a body
/// fits the peer's Max-Message-Size (RFC 8323 §5.3.1, and the headroom of BERT blocks).
const UPLOAD_HEADROOM: usize = 512;

/// The unit a block number counts: the block size, or 1024 bytes for BERT (RFC 8323 §6).
fn block_unit(szx: u8) -> usize {
    if szx >= UPLOAD_SZX {
        1024
    } else {
        1 << (szx + 4)
    }
}

/// Largest representation the client reassembles from Block2 blocks.
pub const MAX_REASSEMBLED_BODY: usize = 16 * 1024 * 1024;

/// How often a block-wise transfer starts over because the ETag changed.
const MAX_BLOCKWISE_RESTARTS: u32 = 3;

/// How fetching the rest of a block-wise response ended.
enum Blocks {
    /// The whole representation (or an error response that ended the transfer).
    Complete(Response),
    /// The ETag changed between blocks.
    Changed,
}

/// Whether a request must not be repeated to get later blocks of its response.
fn response_cache_needed(method: Code) -> bool {
    !matches!(method, Code::GET | Code::FETCH)
}

fn block2_of(response: &Response) -> Option<BlockValue> {
    response
        .options
        .get(OptionNumber::BLOCK2)
        .and_then(BlockValue::decode)
}

/// Longest Uri-Host option value (RFC 7252 §5.10).
const MAX_URI_HOST: usize = 255;

/// Parses `uri`, resolves its host and puts the URI options in front of the request's
/// own (RFC 7252 §6.4).
async fn prepare(
    client: &Client,
    uri: &str,
    mut request: Request,
) -> Result<(Scheme, SocketAddr, Request), Error> {
    let parsed = Uri::parse(uri).map_err(|e| Error::uri(e.to_string()))?;
    let port = parsed.port_or_default();
    let family = client.inner.family;
    let mut host_buf = [0u8; MAX_URI_HOST];
    let peer = match parsed.host {
        Host::Ipv4(ip) => SocketAddr::new(IpAddr::V4(ip), port),
        Host::Ipv6(ip, None) => SocketAddr::new(IpAddr::V6(ip), port),
        Host::Ipv6(ip, Some(zone)) => {
            let zone: Vec<u8> = percent_decode(zone).collect();
            let zone =
                String::from_utf8(zone).map_err(|_| Error::uri("invalid zone identifier"))?;
            match zone.parse::<u32>() {
                Ok(scope) => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope)),
                // An interface name: the system resolver maps it to a scope ID.
                Err(_) => resolve(&format!("{ip}%{zone}"), port, family).await?,
            }
        }
        Host::Name(_) => {
            let name = parsed
                .uri_host_option_into(&mut host_buf)
                .map_err(|e| Error::uri(format!("host: {e}")))?
                .unwrap_or_default();
            let name =
                std::str::from_utf8(name).map_err(|_| Error::uri("host name is not UTF-8"))?;
            resolve(name, port, family).await?
        }
    };

    // RFC 7252 §6.4 steps 5–9. Uri-Host only for a reg-name (an IP literal equals the
    // destination address); Uri-Port never, since the request goes to the URI's port
    // (step 7: only a port different from the destination port is sent).
    let own = std::mem::take(&mut request.options);
    if let Host::Name(_) = parsed.host {
        if let Ok(Some(host)) = parsed.uri_host_option_into(&mut host_buf) {
            request.options.push(OptionNumber::URI_HOST, host.to_vec());
        }
    }
    for segment in parsed.path_segments() {
        request.options.push(
            OptionNumber::URI_PATH,
            percent_decode(segment).collect::<Vec<u8>>(),
        );
    }
    for arg in parsed.query_args() {
        request.options.push(
            OptionNumber::URI_QUERY,
            percent_decode(arg).collect::<Vec<u8>>(),
        );
    }
    for (number, value) in own.iter() {
        request.options.push(number, value.to_vec());
    }
    Ok((parsed.scheme, peer, request))
}

/// Resolves a host name, preferring an address the socket can reach.
async fn resolve(name: &str, port: u16, family: Family) -> Result<SocketAddr, Error> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
        .await
        .map_err(|e| Error::uri(format!("cannot resolve host {name}: {e}")))?
        .map(canonical)
        .collect();
    addrs
        .iter()
        .copied()
        .find(|a| family.to_socket(*a).is_some())
        .or_else(|| addrs.first().copied())
        .ok_or_else(|| Error::uri(format!("host {name} has no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn prepared(uri: &str) -> Result<(SocketAddr, Request), Error> {
        let client = Client::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        prepare(&client, uri, Request::new(Code::GET))
            .await
            .map(|(_, peer, request)| (peer, request))
    }

    fn values(r: &Request, n: OptionNumber) -> Vec<Vec<u8>> {
        r.options.get_all(n).map(<[u8]>::to_vec).collect()
    }

    #[tokio::test]
    async fn uri_to_options() {
        let (peer, r) = prepared("coap://127.0.0.1:61616/a%20b/c?x=1&y=%262")
            .await
            .unwrap();
        assert_eq!(peer, "127.0.0.1:61616".parse().unwrap());
        assert!(!r.options.contains(OptionNumber::URI_HOST));
        assert!(!r.options.contains(OptionNumber::URI_PORT));
        assert_eq!(
            values(&r, OptionNumber::URI_PATH),
            [b"a b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(
            values(&r, OptionNumber::URI_QUERY),
            [b"x=1".to_vec(), b"y=&2".to_vec()]
        );
    }

    /// RFC 7252 §6.4 step 8: a trailing slash is an empty last segment.
    #[tokio::test]
    async fn trailing_slash() {
        let (_, r) = prepared("coap://127.0.0.1/a/").await.unwrap();
        assert_eq!(
            values(&r, OptionNumber::URI_PATH),
            [b"a".to_vec(), Vec::new()]
        );
        let (peer, r) = prepared("coap://127.0.0.1/").await.unwrap();
        assert_eq!(peer.port(), 5683);
        assert!(!r.options.contains(OptionNumber::URI_PATH));
    }

    /// RFC 7252 §6.4 step 5: Uri-Host for a reg-name, lowercased.
    #[tokio::test]
    async fn reg_name_gets_uri_host() {
        let (peer, r) = prepared("coap://LocalHost:5700/x").await.unwrap();
        assert!(peer.ip().is_loopback());
        assert_eq!(peer.port(), 5700);
        assert_eq!(values(&r, OptionNumber::URI_HOST), [b"localhost".to_vec()]);
    }

    #[tokio::test]
    async fn unsupported_and_bad_uris() {
        // RFC 7252 §9: coaps needs DTLS credentials.
        let client = Client::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let err = client.get("coaps://127.0.0.1/x").await.unwrap_err();
        assert!(err.is_uri());
        assert!(err.to_string().contains("DTLS credentials"), "{err}");
        assert!(prepared("http://127.0.0.1/").await.unwrap_err().is_uri());
        assert!(prepared("coap://127.0.0.1/#frag")
            .await
            .unwrap_err()
            .is_uri());
        assert!(prepared("coap://no-such-host.invalid/")
            .await
            .unwrap_err()
            .is_uri());
    }

    #[tokio::test]
    async fn address_family_mismatch() {
        let client = Client::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let err = client
            .request(Code::GET, "coap://[::1]/x")
            .send()
            .await
            .unwrap_err();
        assert!(err.is_io(), "{err}");
        assert!(err.to_string().contains("IPv6"), "{err}");
    }
}
