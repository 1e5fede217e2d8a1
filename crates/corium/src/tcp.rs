//! CoAP over TCP, TLS and WebSockets (RFC 8323 §3, §4): the listener, the connection
//! setup (TLS handshake, WebSocket upgrade) and the per-connection tasks of byte streams
//! (the WebSocket ones are in [`crate::ws`]).
//!
//! Every connection gets a reader task and a writer task. The reader cuts the byte
//! stream into messages with [`frame_len`] (refusing a message larger than the
//! endpoint's Max-Message-Size from its length shim, before buffering it) and hands them
//! to the driver through one bounded channel, so a driver that falls behind slows the
//! readers down rather than buffering without bound. The writer writes what the driver
//! queues; while more than [`WRITE_BACKLOG`] bytes wait for a peer that reads slowly,
//! that connection's reader stops reading (back-pressure through TCP flow control).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use corium_proto::wire::{frame_len, StreamError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

use crate::udp::canonical;

/// What an accepted TCP connection goes through before it carries CoAP.
#[derive(Clone)]
pub(crate) struct Accept {
    /// A TLS handshake first (`coaps+tcp`, `coaps+ws`).
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// A WebSocket upgrade (`coap+ws`, `coaps+ws`).
    pub(crate) websocket: bool,
}

/// What a connection this side opens goes through before it carries CoAP.
#[derive(Clone)]
pub(crate) struct Dial {
    /// A TLS handshake first.
    pub(crate) tls: Option<tokio_rustls::TlsConnector>,
    /// A WebSocket upgrade.
    pub(crate) websocket: bool,
}

/// The read buffer a connection starts with, and the least it grows by.
const READ_CHUNK: usize = 1024;

/// Bytes gathered into one write by a connection's writer.
const WRITE_BATCH: usize = 64 * 1024;

/// Bytes queued for one connection above which its reader pauses.
pub const WRITE_BACKLOG: usize = 1 << 20;

/// Limits of the connections of one listener or client.
#[derive(Clone, Debug)]
pub struct StreamLimits {
    /// The largest message accepted (the endpoint's Max-Message-Size, RFC 8323 §5.3.1);
    /// default [`DEFAULT_STREAM_MESSAGE_SIZE`].
    pub max_message_size: usize,
    /// The longest token accepted (RFC 8974).
    pub max_token_len: usize,
    /// A connection with no complete message for this long is closed.
    pub idle_timeout: Duration,
    /// A message whose first bytes arrived but whose rest does not come within this is
    /// abandoned and the connection closed (slow senders, "slowloris").
    pub frame_timeout: Duration,
    /// Hard limit on open connections; beyond it new ones are closed at once.
    pub max_connections: usize,
    /// After this long without sending anything, an Empty message goes out (RFC 8323
    /// §5.4: "can always be sent and MUST be ignored by the recipient"), so that NAT
    /// mappings and the peer's idle timeout see a live connection. `None`: never.
    pub keepalive: Option<Duration>,
    /// After this long without receiving anything, a Ping goes out (RFC 8323 §5.4); a
    /// peer that stays silent as long again is taken for dead: Abort and close.
    /// `None`: never.
    pub ping_after: Option<Duration>,
}

/// The Max-Message-Size a connection announces by default: 64 KiB BERT blocks plus room
/// for the header and options (RFC 8323 §5.3.2 implementation note). Above 1152 it also
/// announces BERT (§6).
pub const DEFAULT_STREAM_MESSAGE_SIZE: usize = 64 * 1024 + 512;

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_message_size: DEFAULT_STREAM_MESSAGE_SIZE,
            max_token_len: 32,
            idle_timeout: Duration::from_secs(300),
            frame_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            keepalive: Some(Duration::from_secs(120)),
            ping_after: Some(Duration::from_secs(120)),
        }
    }
}

/// What the connection tasks tell the driver.
pub(crate) enum ConnEvent {
    /// A connection is up; the driver writes to it through `writer`.
    Opened {
        peer: SocketAddr,
        writer: ConnWriter,
    },
    /// One complete message (a WebSocket frame's).
    Message { peer: SocketAddr, data: Bytes },
    /// One or more complete messages of a byte stream that arrived together, back to
    /// back in one buffer, in order (cut again with [`frames`]).
    Frames { peer: SocketAddr, data: Bytes },
    /// The byte stream could not be framed; nothing more is read.
    FramingError { peer: SocketAddr, err: StreamError },
    /// The connection closed (end of stream, timeout), or failed with `err` (a TLS
    /// alert, a reset), which a client reports to its requests.
    Closed {
        peer: SocketAddr,
        err: Option<io::Error>,
    },
    /// A connection this side opened could not be established.
    ConnectFailed { peer: SocketAddr, err: io::Error },
}

pub(crate) enum WriteCmd {
    Data(Bytes),
    /// Nothing was sent for [`StreamLimits::keepalive`]: an Empty message goes out.
    KeepAlive,
    Close,
}

/// The driver's handle on a connection's writer task.
#[derive(Debug, Clone)]
pub(crate) struct ConnWriter {
    pub(crate) tx: mpsc::UnboundedSender<WriteCmd>,
    pub(crate) backlog: Arc<Backlog>,
}

impl std::fmt::Debug for WriteCmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteCmd::Data(b) => write!(f, "Data({} bytes)", b.len()),
            WriteCmd::KeepAlive => f.write_str("KeepAlive"),
            WriteCmd::Close => f.write_str("Close"),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Backlog {
    pub(crate) bytes: AtomicUsize,
    pub(crate) drained: Notify,
}

impl Backlog {
    /// A message of `len` bytes was written (or dropped).
    pub(crate) fn written(&self, len: usize) {
        self.bytes.fetch_sub(len, Ordering::Relaxed);
        self.drained.notify_waiters();
    }

    /// Waits while more than [`WRITE_BACKLOG`] bytes wait for the peer: a peer that does
    /// not read its responses gets nothing more read. `false` if that lasted `limit`.
    pub(crate) async fn wait_below_limit(&self, limit: Duration) -> bool {
        while self.bytes.load(Ordering::Relaxed) > WRITE_BACKLOG {
            let drained = self.drained.notified();
            if self.bytes.load(Ordering::Relaxed) <= WRITE_BACKLOG {
                break;
            }
            if tokio::time::timeout(limit, drained).await.is_err() {
                return false;
            }
        }
        true
    }
}

impl ConnWriter {
    /// Queues one message.
    pub(crate) fn send(&self, data: Bytes) {
        self.backlog.bytes.fetch_add(data.len(), Ordering::Relaxed);
        let _ = self.tx.send(WriteCmd::Data(data));
    }

    /// Closes the connection after what is queued.
    pub(crate) fn close(&self) {
        let _ = self.tx.send(WriteCmd::Close);
    }
}

/// The messages of [`ConnEvent::Frames`], in order. The reader framed them already (so
/// every length is within the limits); a buffer that does not end on a message boundary
/// cannot come from it, and its tail would be skipped.
pub(crate) fn frames(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || match frame_len(rest, usize::MAX, usize::MAX) {
        Ok(Some(n)) if n <= rest.len() => {
            let (message, tail) = rest.split_at(n);
            rest = tail;
            Some(message)
        }
        _ => None,
    })
}

/// Counts open connections against [`StreamLimits::max_connections`].
#[derive(Debug, Default)]
pub(crate) struct ConnectionCount(AtomicUsize);

/// One open connection, counted until dropped.
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<ConnectionCount>);

impl OpenConnection {
    fn new(count: &Arc<ConnectionCount>) -> OpenConnection {
        count.0.fetch_add(1, Ordering::Relaxed);
        OpenConnection(Arc::clone(count))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Binds a TCP listener (SO_REUSEADDR, as servers do, so a restart does not wait for
/// TIME_WAIT; IPv6 listeners are IPv6-only so that `[::]:P` and `0.0.0.0:P` coexist).
pub(crate) fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = canonical(addr);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Accepts connections until the listener fails or the driver goes away. Each one is
/// set up (TLS handshake, WebSocket upgrade) in a task of its own, within
/// [`StreamLimits::frame_timeout`], so a stalled handshake holds nothing but itself.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    events: mpsc::Sender<ConnEvent>,
    limits: StreamLimits,
    accept: Accept,
) {
    let open = Arc::new(ConnectionCount::default());
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::debug!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if events.is_closed() {
            return;
        }
        if open.0.load(Ordering::Relaxed) >= limits.max_connections {
            tracing::debug!(%from, "connection limit reached; closed");
            drop(stream);
            continue;
        }
        let counted = OpenConnection::new(&open);
        let (events, limits, accept) = (events.clone(), limits.clone(), accept.clone());
        tokio::spawn(async move {
            let peer = canonical(from);
            let _ = stream.set_nodelay(true);
            let setup = tokio::time::timeout(limits.frame_timeout, async {
                match (accept.tls, accept.websocket) {
                    (None, false) => {
                        spawn_connection(stream, peer, events, limits.clone(), counted);
                        Ok(())
                    }
                    (Some(tls), false) => {
                        let stream = tls.accept(stream).await?;
                        spawn_connection(stream, peer, events, limits.clone(), counted);
                        Ok(())
                    }
                    (None, true) => {
                        let ws = crate::ws::accept(stream, &limits).await?;
                        crate::ws::spawn_connection(ws, peer, events, limits.clone(), counted);
                        Ok(())
                    }
                    (Some(tls), true) => {
                        let stream = tls.accept(stream).await?;
                        let ws = crate::ws::accept(stream, &limits).await?;
                        crate::ws::spawn_connection(ws, peer, events, limits.clone(), counted);
                        Ok(())
                    }
                }
            })
            .await;
            match setup {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    let err: io::Error = err;
                    tracing::debug!(%peer, %err, "connection setup failed");
                }
                Err(_) => tracing::debug!(%peer, "connection setup timed out"),
            }
        });
    }
}

/// Opens a connection to `peer` (the client side), with TLS and the WebSocket upgrade
/// as `dial` says (`host` names the server for certificate checks, SNI and the
/// WebSocket request); the outcome arrives as [`ConnEvent::Opened`] or
/// [`ConnEvent::ConnectFailed`].
pub(crate) fn spawn_connect(
    peer: SocketAddr,
    host: String,
    events: mpsc::Sender<ConnEvent>,
    limits: StreamLimits,
    connect_timeout: Duration,
    dial: Dial,
) {
    tokio::spawn(async move {
        let opened = tokio::time::timeout(connect_timeout, async {
            let stream = TcpStream::connect(peer).await?;
            let _ = stream.set_nodelay(true);
            let counted = OpenConnection::new(&Arc::new(ConnectionCount::default()));
            match (dial.tls, dial.websocket) {
                (None, false) => spawn_connection(stream, peer, events.clone(), limits, counted),
                (Some(tls), false) => {
                    let name = crate::tls::server_name(&host)?;
                    let stream = tls.connect(name, stream).await?;
                    spawn_connection(stream, peer, events.clone(), limits, counted);
                }
                (None, true) => {
                    let ws = crate::ws::connect(stream, &host, peer, false, &limits).await?;
                    crate::ws::spawn_connection(ws, peer, events.clone(), limits, counted);
                }
                (Some(tls), true) => {
                    let name = crate::tls::server_name(&host)?;
                    let stream = tls.connect(name, stream).await?;
                    let ws = crate::ws::connect(stream, &host, peer, true, &limits).await?;
                    crate::ws::spawn_connection(ws, peer, events.clone(), limits, counted);
                }
            }
            Ok::<(), io::Error>(())
        })
        .await;
        let err = match opened {
            Ok(Ok(())) => return,
            Ok(Err(err)) => err,
            Err(_) => io::Error::new(io::ErrorKind::TimedOut, "connection timed out"),
        };
        let _ = events.send(ConnEvent::ConnectFailed { peer, err }).await;
    });
}

/// Starts the reader and writer tasks of one connection and announces it.
pub(crate) fn spawn_connection<S>(
    stream: S,
    peer: SocketAddr,
    events: mpsc::Sender<ConnEvent>,
    limits: StreamLimits,
    counted: OpenConnection,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut read, mut write) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<WriteCmd>();
    let backlog = Arc::new(Backlog::default());
    let writer = ConnWriter {
        tx,
        backlog: Arc::clone(&backlog),
    };
    let writer_backlog = Arc::clone(&backlog);
    let keepalive = limits.keepalive;
    tokio::spawn(async move {
        // Everything queued goes out in one write: pipelined responses cost one
        // system call per batch, not one each. A lone buffer (the driver queues one per
        // connection and round) is written as it is, without copying it into `batch`.
        let mut batch: Vec<u8> = Vec::new();
        let mut closing = false;
        loop {
            let cmd = match keepalive {
                Some(every) => match tokio::time::timeout(every, rx.recv()).await {
                    Ok(cmd) => cmd,
                    Err(_) => Some(WriteCmd::KeepAlive),
                },
                None => rx.recv().await,
            };
            let Some(cmd) = cmd else {
                break;
            };
            let mut queued = 0;
            let mut lone: Option<Bytes> = None;
            let mut next = Some(cmd);
            while let Some(cmd) = next.take() {
                match cmd {
                    WriteCmd::Data(data) => {
                        queued += data.len();
                        if batch.is_empty() && lone.is_none() {
                            lone = Some(data);
                        } else {
                            if let Some(first) = lone.take() {
                                batch.extend_from_slice(&first);
                            }
                            batch.extend_from_slice(&data);
                        }
                    }
                    // Idle: an Empty message, Len 0 / TKL 0 and code 0.00.
                    WriteCmd::KeepAlive => {
                        if let Some(first) = lone.take() {
                            batch.extend_from_slice(&first);
                        }
                        batch.extend_from_slice(&[0x00, 0x00]);
                    }
                    WriteCmd::Close => {
                        closing = true;
                        break;
                    }
                }
                if batch.len() + lone.as_ref().map_or(0, Bytes::len) < WRITE_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            let out: &[u8] = match &lone {
                Some(data) => data,
                None => &batch,
            };
            if !out.is_empty() {
                let result = write.write_all(out).await;
                writer_backlog.written(queued);
                batch.clear();
                if batch.capacity() > 4 * WRITE_BATCH {
                    batch.shrink_to(WRITE_BATCH);
                }
                if result.is_err() {
                    break;
                }
            }
            if closing {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
    tokio::spawn(async move {
        if events
            .send(ConnEvent::Opened {
                peer,
                writer: writer.clone(),
            })
            .await
            .is_err()
        {
            return;
        }
        let end = read_messages(&mut read, peer, &events, &limits, &backlog).await;
        match end {
            Err(ReadEnd::Io(err)) => {
                tracing::debug!(%peer, %err, "connection failed");
                let err = Some(err);
                let _ = events.send(ConnEvent::Closed { peer, err }).await;
            }
            Ok(()) | Err(ReadEnd::Timeout) => {
                let _ = events.send(ConnEvent::Closed { peer, err: None }).await;
            }
            Err(ReadEnd::Framing(err)) => {
                // The driver answers with Abort and closes (RFC 8323 §5.6).
                let _ = events.send(ConnEvent::FramingError { peer, err }).await;
            }
            Err(ReadEnd::DriverGone) => {}
        }
        // The writer stays open for an Abort until the driver lets go of it too.
        drop((writer, counted));
    });
}

enum ReadEnd {
    Io(io::Error),
    Timeout,
    Framing(StreamError),
    DriverGone,
}

async fn read_messages(
    read: &mut (impl AsyncRead + Unpin),
    peer: SocketAddr,
    events: &mpsc::Sender<ConnEvent>,
    limits: &StreamLimits,
    backlog: &Backlog,
) -> Result<(), ReadEnd> {
    // Small to start with: an idle connection holds only this; it grows to what the
    // peer's messages need (up to Max-Message-Size).
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        // Deliver every complete message already buffered, as one buffer: no
        // allocation and no reference count per message.
        let mut complete = 0;
        let mut wanted = None;
        let end = loop {
            let rest = &buf[complete..];
            match frame_len(rest, limits.max_message_size, limits.max_token_len) {
                Ok(Some(n)) if rest.len() >= n => complete += n,
                Ok(Some(n)) => {
                    wanted = Some(n - rest.len());
                    break None;
                }
                Ok(None) => break None,
                Err(err) => break Some(err),
            }
        };
        if complete > 0 {
            let data = buf.split_to(complete).freeze();
            events
                .send(ConnEvent::Frames { peer, data })
                .await
                .map_err(|_| ReadEnd::DriverGone)?;
        }
        if let Some(more) = wanted {
            buf.reserve(more);
        }
        if let Some(err) = end {
            return Err(ReadEnd::Framing(err));
        }
        // Back-pressure: a peer that does not read its responses gets no more read.
        if !backlog.wait_below_limit(limits.idle_timeout).await {
            return Err(ReadEnd::Timeout);
        }
        let wait = if buf.is_empty() {
            limits.idle_timeout
        } else {
            limits.frame_timeout
        };
        if buf.capacity() == buf.len() {
            buf.reserve(READ_CHUNK.max(buf.len()));
        }
        match tokio::time::timeout(wait, read.read_buf(&mut buf)).await {
            Err(_) => return Err(ReadEnd::Timeout),
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return Err(ReadEnd::Io(err)),
        }
    }
}
