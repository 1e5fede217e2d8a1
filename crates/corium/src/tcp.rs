//! CoAP over TCP (RFC 8323 §3): the listener and per-connection tasks.
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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

use crate::udp::canonical;

/// Bytes queued for one connection above which its reader pauses.
pub const WRITE_BACKLOG: usize = 1 << 20;

/// Limits of the connections of one listener or client.
#[derive(Clone, Debug)]
pub struct StreamLimits {
    /// The largest message accepted (the endpoint's Max-Message-Size, RFC 8323 §5.3.1).
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
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_message_size: corium_proto::wire::DEFAULT_MAX_MESSAGE_SIZE,
            max_token_len: 32,
            idle_timeout: Duration::from_secs(300),
            frame_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

/// What the connection tasks tell the driver.
#[derive(Debug)]
pub(crate) enum ConnEvent {
    /// A connection is up; the driver writes to it through `writer`.
    Opened {
        peer: SocketAddr,
        writer: ConnWriter,
    },
    /// One complete message.
    Message { peer: SocketAddr, data: Bytes },
    /// The byte stream could not be framed; nothing more is read.
    FramingError { peer: SocketAddr, err: StreamError },
    /// The connection closed (end of stream, error, timeout).
    Closed { peer: SocketAddr },
    /// A connection this side opened could not be established.
    ConnectFailed { peer: SocketAddr, err: io::Error },
}

enum WriteCmd {
    Data(Bytes),
    Close,
}

/// The driver's handle on a connection's writer task.
#[derive(Debug, Clone)]
pub(crate) struct ConnWriter {
    tx: mpsc::UnboundedSender<WriteCmd>,
    backlog: Arc<Backlog>,
}

impl std::fmt::Debug for WriteCmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteCmd::Data(b) => write!(f, "Data({} bytes)", b.len()),
            WriteCmd::Close => f.write_str("Close"),
        }
    }
}

#[derive(Debug, Default)]
struct Backlog {
    bytes: AtomicUsize,
    drained: Notify,
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

/// Counts open connections against [`StreamLimits::max_connections`].
#[derive(Debug, Default)]
pub(crate) struct ConnectionCount(AtomicUsize);

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

/// Accepts connections until the listener fails or the driver goes away.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    events: mpsc::Sender<ConnEvent>,
    limits: StreamLimits,
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
        open.0.fetch_add(1, Ordering::Relaxed);
        spawn_connection(
            stream,
            canonical(from),
            events.clone(),
            limits.clone(),
            Arc::clone(&open),
        );
    }
}

/// Opens a connection to `peer` (the client side); the outcome arrives as
/// [`ConnEvent::Opened`] or [`ConnEvent::ConnectFailed`].
pub(crate) fn spawn_connect(
    peer: SocketAddr,
    events: mpsc::Sender<ConnEvent>,
    limits: StreamLimits,
    connect_timeout: Duration,
) {
    tokio::spawn(async move {
        let connected = tokio::time::timeout(connect_timeout, TcpStream::connect(peer)).await;
        let stream = match connected {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                let _ = events.send(ConnEvent::ConnectFailed { peer, err }).await;
                return;
            }
            Err(_) => {
                let err = io::Error::new(io::ErrorKind::TimedOut, "connection timed out");
                let _ = events.send(ConnEvent::ConnectFailed { peer, err }).await;
                return;
            }
        };
        let open = Arc::new(ConnectionCount::default());
        open.0.fetch_add(1, Ordering::Relaxed);
        spawn_connection(stream, peer, events, limits, open);
    });
}

/// Starts the reader and writer tasks of one connection and announces it.
pub(crate) fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    events: mpsc::Sender<ConnEvent>,
    limits: StreamLimits,
    open: Arc<ConnectionCount>,
) {
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<WriteCmd>();
    let backlog = Arc::new(Backlog::default());
    let writer = ConnWriter {
        tx,
        backlog: Arc::clone(&backlog),
    };
    let writer_backlog = Arc::clone(&backlog);
    tokio::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                WriteCmd::Data(data) => {
                    let result = write.write_all(&data).await;
                    writer_backlog
                        .bytes
                        .fetch_sub(data.len(), Ordering::Relaxed);
                    writer_backlog.drained.notify_waiters();
                    if result.is_err() {
                        break;
                    }
                }
                WriteCmd::Close => break,
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
                let _ = events.send(ConnEvent::Closed { peer }).await;
            }
            Ok(()) | Err(ReadEnd::Timeout) => {
                let _ = events.send(ConnEvent::Closed { peer }).await;
            }
            Err(ReadEnd::Framing(err)) => {
                // The driver answers with Abort and closes (RFC 8323 §5.6).
                let _ = events.send(ConnEvent::FramingError { peer, err }).await;
            }
            Err(ReadEnd::DriverGone) => {}
        }
        // Close the writer if the driver did not (it stays open for the Abort).
        let _ = writer;
        open.0.fetch_sub(1, Ordering::Relaxed);
    });
}

enum ReadEnd {
    Io(io::Error),
    Timeout,
    Framing(StreamError),
    DriverGone,
}

async fn read_messages(
    read: &mut tokio::net::tcp::OwnedReadHalf,
    peer: SocketAddr,
    events: &mpsc::Sender<ConnEvent>,
    limits: &StreamLimits,
    backlog: &Backlog,
) -> Result<(), ReadEnd> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        // Deliver every complete message already buffered.
        loop {
            match frame_len(&buf, limits.max_message_size, limits.max_token_len) {
                Ok(Some(n)) if buf.len() >= n => {
                    let data = buf.split_to(n).freeze();
                    events
                        .send(ConnEvent::Message { peer, data })
                        .await
                        .map_err(|_| ReadEnd::DriverGone)?;
                }
                Ok(Some(n)) => {
                    buf.reserve(n - buf.len());
                    break;
                }
                Ok(None) => break,
                Err(err) => return Err(ReadEnd::Framing(err)),
            }
        }
        // Back-pressure: a peer that does not read its responses gets no more read.
        while backlog.bytes.load(Ordering::Relaxed) > WRITE_BACKLOG {
            let drained = backlog.drained.notified();
            if backlog.bytes.load(Ordering::Relaxed) <= WRITE_BACKLOG {
                break;
            }
            if tokio::time::timeout(limits.idle_timeout, drained)
                .await
                .is_err()
            {
                return Err(ReadEnd::Timeout);
            }
        }
        let wait = if buf.is_empty() {
            limits.idle_timeout
        } else {
            limits.frame_timeout
        };
        if buf.capacity() == buf.len() {
            buf.reserve(4096);
        }
        match tokio::time::timeout(wait, read.read_buf(&mut buf)).await {
            Err(_) => return Err(ReadEnd::Timeout),
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return Err(ReadEnd::Io(err)),
        }
    }
}
