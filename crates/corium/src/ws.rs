//! CoAP over WebSockets (RFC 8323 §4): the upgrade at `/.well-known/coap` with the
//! `coap` subprotocol, and the connection tasks that carry one CoAP message per binary
//! frame (§4.2, [`Framing::WebSocket`](corium_proto::wire::Framing)).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use corium_proto::wire::StreamError;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::tcp::{Backlog, ConnEvent, ConnWriter, OpenConnection, StreamLimits, WriteCmd};

/// The resource a CoAP WebSocket endpoint is reached at (RFC 8323 §4.1, §8.3).
pub const WELL_KNOWN_COAP: &str = "/.well-known/coap";
/// The WebSocket subprotocol of CoAP (RFC 8323 §4.1, §11.6).
pub const SUBPROTOCOL: &str = "coap";

fn config(limits: &StreamLimits) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(limits.max_message_size))
        .max_frame_size(Some(limits.max_message_size))
}

fn ws_err(err: WsError) -> io::Error {
    match err {
        WsError::Io(err) => err,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

/// The server's side of the upgrade: the request must target `/.well-known/coap` and
/// offer the `coap` subprotocol, which the response then names (RFC 8323 §4.1).
pub(crate) async fn accept<S>(stream: S, limits: &StreamLimits) -> io::Result<WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The callback's signature is tungstenite's; its error is an HTTP response.
    #[allow(clippy::result_large_err)]
    let check = |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        let refuse = |status: StatusCode, why: &str| {
            let mut r = ErrorResponse::new(Some(why.to_owned()));
            *r.status_mut() = status;
            r
        };
        if request.uri().path() != WELL_KNOWN_COAP {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "CoAP is at /.well-known/coap",
            ));
        }
        let offered = request
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == SUBPROTOCOL);
        if !offered {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "the coap subprotocol is required",
            ));
        }
        response.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        Ok(response)
    };
    tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config(limits)))
        .await
        .map_err(ws_err)
}

/// The client's side of the upgrade to `ws(s)://host:port/.well-known/coap`.
pub(crate) async fn connect<S>(
    stream: S,
    host: &str,
    peer: SocketAddr,
    secure: bool,
    limits: &StreamLimits,
) -> io::Result<WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let scheme = if secure { "wss" } else { "ws" };
    let authority = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{}", peer.port())
    } else {
        format!("{host}:{}", peer.port())
    };
    let url = format!("{scheme}://{authority}{WELL_KNOWN_COAP}");
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .map_err(ws_err)?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let (ws, response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config(limits)))
            .await
            .map_err(ws_err)?;
    let agreed = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == SUBPROTOCOL);
    if !agreed {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the server did not accept the coap WebSocket subprotocol",
        ));
    }
    Ok(ws)
}

/// Starts the reader and writer tasks of a WebSocket connection and announces it.
pub(crate) fn spawn_connection<S>(
    ws: WebSocketStream<S>,
    peer: SocketAddr,
    events: mpsc::Sender<ConnEvent>,
    limits: StreamLimits,
    counted: OpenConnection,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<WriteCmd>();
    let backlog = Arc::new(Backlog::default());
    let writer = ConnWriter {
        tx,
        backlog: Arc::clone(&backlog),
    };
    let writer_backlog = Arc::clone(&backlog);
    let limits_keepalive = limits.keepalive;
    tokio::spawn(async move {
        let mut closing = false;
        loop {
            let cmd = match limits_keepalive {
                Some(every) => match tokio::time::timeout(every, rx.recv()).await {
                    Ok(cmd) => cmd,
                    Err(_) => Some(WriteCmd::KeepAlive),
                },
                None => rx.recv().await,
            };
            let Some(cmd) = cmd else {
                break;
            };
            match cmd {
                // RFC 8323 §5.4: an Empty message (here, Len 0 / TKL 0, code 0.00).
                WriteCmd::KeepAlive => {
                    if sink
                        .send(Message::Binary(Bytes::from_static(&[0x00, 0x00])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                WriteCmd::Data(data) => {
                    // Every message queued now goes out as its own frame, flushed once.
                    let mut len = data.len();
                    let mut result = sink.feed(Message::Binary(data)).await;
                    while result.is_ok() {
                        match rx.try_recv() {
                            Ok(WriteCmd::Data(more)) => {
                                len += more.len();
                                result = sink.feed(Message::Binary(more)).await;
                            }
                            Ok(WriteCmd::KeepAlive) => {}
                            Ok(WriteCmd::Close) => {
                                closing = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if result.is_ok() {
                        result = sink.flush().await;
                    }
                    writer_backlog.written(len);
                    if result.is_err() || closing {
                        break;
                    }
                }
                WriteCmd::Close => break,
            }
        }
        let _ = sink.close().await;
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
        let end = loop {
            if !backlog.wait_below_limit(limits.idle_timeout).await {
                break ConnEvent::Closed { peer, err: None };
            }
            let next = tokio::time::timeout(limits.idle_timeout, stream.next()).await;
            let message = match next {
                Err(_) | Ok(None) => break ConnEvent::Closed { peer, err: None },
                Ok(Some(Err(WsError::Capacity(_)))) => {
                    let err = StreamError::TooLarge {
                        len: limits.max_message_size as u64 + 1,
                        max: limits.max_message_size,
                    };
                    break ConnEvent::FramingError { peer, err };
                }
                Ok(Some(Err(err))) => {
                    tracing::debug!(%peer, %err, "WebSocket failed");
                    let err = Some(ws_err(err));
                    break ConnEvent::Closed { peer, err };
                }
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Binary(data) => {
                    let data: Bytes = data;
                    if events
                        .send(ConnEvent::Message { peer, data })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                // §4.2: CoAP messages travel in binary frames only.
                Message::Text(_) => {
                    let err = StreamError::WebSocketTextFrame;
                    break ConnEvent::FramingError { peer, err };
                }
                Message::Close(_) => break ConnEvent::Closed { peer, err: None },
                // Ping, Pong and raw frames: the WebSocket layer's own business.
                _ => {}
            }
        };
        let _ = events.send(end).await;
        drop((writer, counted));
    });
}
