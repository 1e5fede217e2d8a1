//! `corium bench coap+tcp://…`, `coaps+tcp://…`, `coap+ws://…` and `coaps+ws://…`: the
//! load generator over reliable transports (RFC 8323).
//!
//! A child module of `bench`: it reuses the plan, tallies and outcome bookkeeping of the
//! `coap://` load generator. Each of `--sockets` workers opens one connection (TCP,
//! then a TLS handshake for the `coaps+` schemes, then a WebSocket upgrade for the `+ws`
//! ones; none of it measured), runs one sans-IO [`Endpoint`] in stream mode over it (no
//! message IDs to budget, no retransmission) and keeps `--window` GETs pipelined on it.
//! A byte stream is cut into messages with `frame_len` (RFC 8323 §3.2); a WebSocket
//! carries one message per binary frame (§4.2).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use corium::tls::TlsClient;
use corium::wire::{Framing, Scheme};
use corium_proto::{Endpoint, EndpointConfig, RequestId, RequestOptions};
use rand::SeedableRng as _;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{clock, endpoint_config, record_outcomes, Plan, Tally};
use crate::Failure;

/// The largest message the load generator announces and accepts on a connection.
const STREAM_MAX_MESSAGE: usize = 64 * 1024;

/// A byte stream the load generator talks over: a TCP connection, or a TLS session on
/// one.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How every connection of a run is opened (from the URI's scheme and the TLS options).
#[derive(Clone)]
pub(super) struct Transport {
    /// One message per WebSocket frame (`coap+ws`, `coaps+ws`) instead of the length
    /// shim (`coap+tcp`, `coaps+tcp`).
    websocket: bool,
    /// TLS first (`coaps+tcp`, `coaps+ws`): the client settings and the host name the
    /// server's certificate is checked against.
    tls: Option<(TlsClient, String)>,
}

impl Transport {
    /// The transport of `scheme`; `None` for the datagram schemes. The secure schemes
    /// need `tls` (`--ca FILE` or `--insecure`).
    pub(super) fn of(
        uri: &str,
        scheme: Scheme,
        host: &str,
        tls: Option<TlsClient>,
    ) -> Result<Option<Transport>, Failure> {
        let (websocket, secure) = match scheme {
            Scheme::CoapTcp => (false, false),
            Scheme::CoapWs => (true, false),
            Scheme::CoapsTcp => (false, true),
            Scheme::CoapsWs => (true, true),
            _ => return Ok(None),
        };
        crate::tls::check_secure_scheme(uri, scheme, tls.is_some())?;
        let tls = match (secure, tls) {
            (true, Some(tls)) => Some((tls, host.to_owned())),
            _ => None,
        };
        Ok(Some(Transport { websocket, tls }))
    }

    /// What `corium bench` prints as the mode of the run.
    pub(super) fn mode(&self) -> &'static str {
        match (self.websocket, self.tls.is_some()) {
            (false, false) => "TCP",
            (false, true) => "TLS",
            (true, false) => "WebSocket",
            (true, true) => "WebSocket over TLS",
        }
    }
}

/// One connection of the load generator.
enum StreamConn {
    /// A byte stream (TCP, or TLS on TCP) with what was read of it and not yet framed.
    Bytes { io: Box<dyn Io>, inbuf: Vec<u8> },
    /// A WebSocket (over TCP or TLS).
    Ws(Box<tokio_tungstenite::WebSocketStream<Box<dyn Io>>>),
}

impl StreamConn {
    async fn open(peer: SocketAddr, transport: &Transport) -> std::io::Result<StreamConn> {
        let stream = tokio::net::TcpStream::connect(peer).await?;
        stream.set_nodelay(true)?;
        let io: Box<dyn Io> = match &transport.tls {
            Some((tls, host)) => Box::new(tls.connect(stream, host, transport.websocket).await?),
            None => Box::new(stream),
        };
        if !transport.websocket {
            return Ok(StreamConn::Bytes {
                io,
                inbuf: Vec::with_capacity(STREAM_MAX_MESSAGE),
            });
        }
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let scheme = if transport.tls.is_some() { "wss" } else { "ws" };
        let authority = match &transport.tls {
            Some((_, host)) if host.parse::<std::net::IpAddr>().is_err() => {
                format!("{host}:{}", peer.port())
            }
            _ => peer.to_string(),
        };
        let mut request = format!("{scheme}://{authority}/.well-known/coap")
            .into_client_request()
            .map_err(std::io::Error::other)?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            tokio_tungstenite::tungstenite::http::HeaderValue::from_static("coap"),
        );
        let (ws, _) = tokio_tungstenite::client_async(request, io)
            .await
            .map_err(std::io::Error::other)?;
        Ok(StreamConn::Ws(Box::new(ws)))
    }

    fn framing(&self) -> Framing {
        match self {
            StreamConn::Bytes { .. } => Framing::Tcp,
            StreamConn::Ws(_) => Framing::WebSocket,
        }
    }

    /// Writes every message `ep` has queued: one write on a byte stream, one flush of
    /// frames on a WebSocket.
    async fn send_all(
        &mut self,
        ep: &mut Endpoint<SocketAddr>,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        use futures_util::SinkExt as _;
        use tokio::io::AsyncWriteExt as _;
        match self {
            StreamConn::Bytes { io, .. } => {
                out.clear();
                while let Some(transmit) = ep.poll_transmit() {
                    out.extend_from_slice(&transmit.payload);
                }
                if !out.is_empty() {
                    io.write_all(out).await?;
                    // A TLS session buffers records until flushed; TCP's flush is a no-op.
                    io.flush().await?;
                }
            }
            StreamConn::Ws(ws) => {
                let mut any = false;
                while let Some(transmit) = ep.poll_transmit() {
                    ws.feed(tokio_tungstenite::tungstenite::Message::Binary(
                        transmit.payload,
                    ))
                    .await
                    .map_err(std::io::Error::other)?;
                    any = true;
                }
                if any {
                    ws.flush().await.map_err(std::io::Error::other)?;
                }
            }
        }
        Ok(())
    }

    /// Waits for what the server sent and hands every complete message to `ep`.
    async fn receive(
        &mut self,
        ep: &mut Endpoint<SocketAddr>,
        t: impl Fn() -> corium_proto::Instant,
        peer: SocketAddr,
    ) -> std::io::Result<()> {
        use futures_util::StreamExt as _;
        use tokio::io::AsyncReadExt as _;
        let closed = || std::io::Error::other("the server closed the connection");
        match self {
            StreamConn::Bytes { io, inbuf } => {
                if io.read_buf(inbuf).await? == 0 {
                    return Err(closed());
                }
                let now = t();
                let mut pos = 0;
                loop {
                    let rest = &inbuf[pos..];
                    match corium::wire::frame_len(rest, STREAM_MAX_MESSAGE, 32) {
                        Ok(Some(n)) if rest.len() >= n => {
                            ep.handle_stream_message(now, peer, &rest[..n]);
                            pos += n;
                        }
                        Ok(_) => break,
                        Err(e) => return Err(std::io::Error::other(format!("bad message: {e}"))),
                    }
                }
                inbuf.drain(..pos);
                if inbuf.capacity() - inbuf.len() < 4096 {
                    inbuf.reserve(STREAM_MAX_MESSAGE);
                }
            }
            StreamConn::Ws(ws) => match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(data))) => {
                    ep.handle_stream_message(t(), peer, &data);
                }
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) | None => {
                    return Err(closed())
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            },
        }
        Ok(())
    }
}

/// One worker's closed loop over one connection (RFC 8323): the endpoint runs in stream
/// mode, requests are pipelined up to the window.
pub(super) async fn worker(plan: Arc<Plan>, transport: Transport) -> std::io::Result<Tally> {
    let now = || clock(&plan);
    let deadline = |since_epoch: Duration| tokio::time::Instant::from_std(plan.epoch + since_epoch);
    let options = RequestOptions {
        timeout: Some(plan.timeout),
        ..RequestOptions::default()
    };
    let warmup_end = corium_proto::Instant::from_duration(plan.warmup_end);
    let end = corium_proto::Instant::from_duration(plan.end);
    let grace_end = corium_proto::Instant::from_duration(plan.grace_end);
    let mut conn = StreamConn::open(plan.peer, &transport).await?;
    let config = EndpointConfig {
        framing: Some(conn.framing()),
        max_message_size: STREAM_MAX_MESSAGE,
        ..endpoint_config(plan.window, plan.timeout)
    };
    let mut ep: Endpoint<SocketAddr> =
        Endpoint::new(config, Box::new(rand::rngs::StdRng::from_entropy()));
    ep.handle_connected(now(), plan.peer);
    let mut outstanding = 0usize;
    let mut in_flight: HashMap<(u64, RequestId), (corium_proto::Instant, bool)> =
        HashMap::with_capacity(plan.window * 2);
    let mut tally = Tally::default();
    let mut out = Vec::with_capacity(STREAM_MAX_MESSAGE);
    loop {
        let t = now();
        record_outcomes(&mut ep, 0, &mut outstanding, t, &mut in_flight, &mut tally);
        let sending = t < end;
        if !sending && (in_flight.is_empty() || t >= grace_end) {
            break;
        }
        while sending && in_flight.len() < plan.window {
            match ep.send_request(t, plan.peer, &plan.request, options.clone()) {
                Ok(id) => {
                    let measured = t >= warmup_end;
                    if measured {
                        tally.sent += 1;
                    }
                    in_flight.insert((0, id), (t, measured));
                    outstanding += 1;
                }
                Err(_) => {
                    tally.refused += 1;
                    break;
                }
            }
        }
        conn.send_all(&mut ep, &mut out).await?;
        if ep.poll_close().is_some() {
            return Err(std::io::Error::other("the server aborted the connection"));
        }
        let mut wake = deadline(if sending { plan.end } else { plan.grace_end });
        if let Some(timer) = ep.poll_timeout() {
            wake = wake.min(deadline(Duration::from_nanos(timer.as_nanos())));
        }
        tokio::select! {
            r = conn.receive(&mut ep, now, plan.peer) => r?,
            () = tokio::time::sleep_until(wake) => {}
        }
        let t = now();
        if ep.poll_timeout().is_some_and(|due| due <= t) {
            ep.handle_timeout(t);
        }
    }
    tally.lost += in_flight.values().filter(|(_, measured)| *measured).count() as u64;
    Ok(tally)
}
