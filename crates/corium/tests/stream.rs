//! CoAP over TCP, TLS and WebSockets (RFC 8323) over loopback: every scheme carries
//! requests, block-wise bodies and observations; TLS verifies names and client
//! certificates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use corium::tls::{TlsClient, TlsServer};
use corium::wire::Scheme;
use corium::{Client, Code, Observable, RequestContext, Resource, Response, Router, Server};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::sync::oneshot;

mod common;
use common::LIMIT;

/// A CA, a server certificate for `localhost` (and 127.0.0.1), and a client
/// certificate, as PEM files in a fresh directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("corium-pki-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        for (name, sans) in [
            ("server", vec!["localhost".to_owned()]),
            ("client", vec!["client.example".to_owned()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(sans)
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn server(&self, require_client_cert: bool) -> TlsServer {
        let ca = self.path("ca.pem");
        TlsServer::from_pem_files(
            &self.path("server.pem"),
            &self.path("server.key"),
            require_client_cert.then_some(ca.as_path()),
        )
        .unwrap()
    }

    fn client(&self, with_cert: bool) -> TlsClient {
        let cert = self.path("client.pem");
        let key = self.path("client.key");
        let identity = with_cert.then_some((cert.as_path(), key.as_path()));
        TlsClient::from_pem_files(&self.path("ca.pem"), identity).unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the test server's handlers saw.
#[derive(Default)]
struct Seen {
    peers: Vec<SocketAddr>,
}

fn big() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 253) as u8).collect()
}

fn router(seen: Arc<Mutex<Seen>>, obs: &Observable) -> Router {
    let large: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    Router::new()
        .route(
            "/hello",
            Resource::new()
                .get(move |ctx: RequestContext| {
                    let seen = Arc::clone(&seen);
                    async move {
                        seen.lock().unwrap().peers.push(ctx.peer);
                        Response::with_payload(Code::CONTENT, "world")
                    }
                })
                .put(|ctx: RequestContext| async move {
                    // Echo the length and a checksum of a (block-wise) upload.
                    let sum: u32 = ctx.request.payload.iter().map(|&b| u32::from(b)).sum();
                    Response::with_payload(
                        Code::CHANGED,
                        format!("{} {sum}", ctx.request.payload.len()),
                    )
                }),
        )
        .route(
            "/large",
            Resource::new().get(move |_ctx: RequestContext| {
                let large = large.clone();
                async move { Response::with_payload(Code::CONTENT, large) }
            }),
        )
        .route(
            "/big",
            Resource::new()
                .get(|_ctx: RequestContext| async { Response::with_payload(Code::CONTENT, big()) }),
        )
        .route(
            "/obs",
            Resource::new()
                .observable(obs)
                .get(|_ctx: RequestContext| async {
                    Response::with_payload(Code::CONTENT, "state")
                }),
        )
}

struct Running {
    addrs: Vec<(Scheme, SocketAddr)>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    seen: Arc<Mutex<Seen>>,
    obs: Observable,
}

impl Running {
    fn uri(&self, scheme: Scheme, host: &str, path: &str) -> String {
        let addr = self
            .addrs
            .iter()
            .find(|(s, _)| *s == scheme)
            .unwrap_or_else(|| panic!("no {scheme} listener"))
            .1;
        format!("{scheme}://{host}:{}{path}", addr.port())
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("shutdown in time")
            .unwrap()
            .unwrap();
    }
}

async fn start(tls: Option<TlsServer>) -> Running {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let obs = Observable::new();
    let mut builder = Server::builder().tcp(true).websocket(&[any]);
    if let Some(tls) = &tls {
        builder = builder.tls(tls, &[any]).secure_websocket(tls, &[any]);
    }
    let server = builder
        .bind(&[any], router(Arc::clone(&seen), &obs))
        .await
        .expect("bind");
    let addrs = server.stream_addrs();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    Running {
        addrs,
        stop: Some(stop),
        task,
        seen,
        obs,
    }
}

async fn client(tls: Option<TlsClient>) -> Client {
    client_with(tls, corium::StreamLimits::default()).await
}

async fn client_with(tls: Option<TlsClient>, limits: corium::StreamLimits) -> Client {
    let mut builder = Client::builder().stream_limits(limits);
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    builder.bind("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.expect("in time")
}

/// GET, block-wise GET, block-wise PUT and an observation over `scheme`.
async fn exercise(client: &Client, server: &Running, scheme: Scheme, host: &str) {
    let hello = within(client.get(&server.uri(scheme, host, "/hello")))
        .await
        .unwrap_or_else(|e| panic!("{scheme}: {e}"));
    assert_eq!(hello.code, Code::CONTENT);
    assert_eq!(hello.payload, b"world");

    // 5000 bytes: more than one 1024-byte block at the base Max-Message-Size (1152).
    let large = within(client.get(&server.uri(scheme, host, "/large")))
        .await
        .unwrap();
    let expected: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(large.payload, expected, "{scheme}: reassembled body");

    let body: Vec<u8> = (0..3000u32).map(|i| (i % 7) as u8).collect();
    let sum: u32 = body.iter().map(|&b| u32::from(b)).sum();
    let put = within(client.put(&server.uri(scheme, host, "/hello"), body))
        .await
        .unwrap();
    assert_eq!(put.code, Code::CHANGED);
    assert_eq!(put.payload_str(), Some(format!("3000 {sum}").as_str()));

    let mut observation = within(client.observe(&server.uri(scheme, host, "/obs")))
        .await
        .unwrap();
    let first = within(observation.next()).await.unwrap().unwrap();
    assert_eq!(first.payload, b"state");
    server.obs.notify();
    let next = within(observation.next()).await.unwrap().unwrap();
    assert_eq!(next.payload, b"state");
    let seq = |r: &Response| r.options.get_uint(corium::OptionNumber::OBSERVE);
    assert!(seq(&next) > seq(&first), "{scheme}: fresher notification");
}

#[tokio::test]
async fn every_scheme_carries_requests_blocks_and_observations() {
    let pki = Pki::new("schemes");
    let server = start(Some(pki.server(false))).await;
    let client = client(Some(pki.client(false))).await;
    for scheme in [
        Scheme::CoapTcp,
        Scheme::CoapWs,
        Scheme::CoapsTcp,
        Scheme::CoapsWs,
    ] {
        exercise(&client, &server, scheme, "localhost").await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn one_connection_per_server_is_reused() {
    let server = start(None).await;
    let client = client(None).await;
    for _ in 0..5 {
        within(client.get(&server.uri(Scheme::CoapTcp, "127.0.0.1", "/hello")))
            .await
            .unwrap();
    }
    let peers = server.seen.lock().unwrap().peers.clone();
    assert_eq!(peers.len(), 5);
    assert!(
        peers.iter().all(|p| *p == peers[0]),
        "one connection: {peers:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn tls_verifies_the_server_name_and_the_ca() {
    let pki = Pki::new("names");
    let server = start(Some(pki.server(false))).await;
    // The certificate names localhost, not 127.0.0.1.
    let client_ = client(Some(pki.client(false))).await;
    let err = within(client_.get(&server.uri(Scheme::CoapsTcp, "127.0.0.1", "/hello")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    // A client trusting another CA refuses the server.
    let other = Pki::new("other");
    let stranger = client(Some(other.client(false))).await;
    let err = within(stranger.get(&server.uri(Scheme::CoapsTcp, "localhost", "/hello")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    // Without trust anchors, a secure scheme is refused before any connection.
    let plain = client(None).await;
    let err = within(plain.get(&server.uri(Scheme::CoapsTcp, "localhost", "/hello")))
        .await
        .unwrap_err();
    assert!(err.is_uri(), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    let pki = Pki::new("mutual");
    let server = start(Some(pki.server(true))).await;
    let anonymous = client(Some(pki.client(false))).await;
    let refused = within(anonymous.get(&server.uri(Scheme::CoapsTcp, "localhost", "/hello"))).await;
    assert!(refused.is_err(), "{refused:?}");
    let known = client(Some(pki.client(true))).await;
    let ok = within(known.get(&server.uri(Scheme::CoapsTcp, "localhost", "/hello")))
        .await
        .unwrap();
    assert_eq!(ok.payload, b"world");
    server.shutdown().await;
}

#[tokio::test]
async fn refused_connections_fail_with_a_clear_error() {
    // A port nobody listens on: bind and drop a listener to get one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = client(None).await;
    let err = within(client.get(&format!("coap+tcp://127.0.0.1:{port}/x")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

/// Large bodies over TCP: BERT blocks (RFC 8323 §6) when both sides announce a
/// Max-Message-Size above 1152 with Block-Wise-Transfer (the default), 1024-byte
/// blocks when the client announces the base size; the same bytes either way.
#[tokio::test]
async fn large_bodies_with_and_without_bert() {
    let server = start(None).await;
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
    let sum: u32 = body.iter().map(|&b| u32::from(b)).sum();
    for limits in [
        corium::StreamLimits::default(),
        corium::StreamLimits {
            max_message_size: 1152,
            ..Default::default()
        },
    ] {
        let client = client_with(None, limits).await;
        let got = within(client.get(&server.uri(Scheme::CoapTcp, "127.0.0.1", "/big")))
            .await
            .unwrap();
        assert_eq!(got.payload, big());
        let put = within(client.put(
            &server.uri(Scheme::CoapTcp, "127.0.0.1", "/hello"),
            body.clone(),
        ))
        .await
        .unwrap();
        assert_eq!(put.payload_str(), Some(format!("200000 {sum}").as_str()));
    }
    server.shutdown().await;
}

/// `StreamLimits::max_connections`: connections beyond the limit are closed at once;
/// the ones within it are served.
#[tokio::test]
async fn connections_beyond_the_limit_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = Server::builder()
        .tcp(true)
        .stream_limits(corium::StreamLimits {
            max_connections: 2,
            ..Default::default()
        })
        .bind(&[any], Router::new())
        .await
        .unwrap();
    let addr = server.tcp_addrs()[0];
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    // Each accepted connection answers a CSM with the server's CSM (RFC 8323 §3.3).
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(&[0x00, 0xe1]).await.unwrap();
        let mut first = [0u8; 2];
        within(c.read_exact(&mut first)).await.unwrap();
        assert_eq!(first[1], 0xe1, "the server's CSM");
        open.push(c);
    }
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = extra.write_all(&[0x00, 0xe1]).await;
    let mut buf = [0u8; 16];
    let n = within(extra.read(&mut buf)).await.unwrap_or(0);
    assert_eq!(n, 0, "closed without a CSM: {:x?}", &buf[..n]);
    drop(open);
    let _ = stop.send(());
    within(task).await.unwrap().unwrap();
}

/// `StreamLimits::keepalive`: an idle connection gets Empty messages (RFC 8323 §5.4).
#[tokio::test]
async fn idle_connections_get_keepalive_empty_messages() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = Server::builder()
        .tcp(true)
        .stream_limits(corium::StreamLimits {
            keepalive: Some(std::time::Duration::from_millis(20)),
            ..Default::default()
        })
        .bind(&[any], Router::new())
        .await
        .unwrap();
    let addr = server.tcp_addrs()[0];
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(&[0x00, 0xe1]).await.unwrap();
    // The server's CSM: Len, code 7.01, then its options.
    let mut head = [0u8; 2];
    within(c.read_exact(&mut head)).await.unwrap();
    assert_eq!(head[1], 0xe1);
    let mut options = vec![0u8; usize::from(head[0] >> 4)];
    within(c.read_exact(&mut options)).await.unwrap();
    let mut empty = [0xffu8; 2];
    within(c.read_exact(&mut empty)).await.unwrap();
    assert_eq!(empty, [0x00, 0x00], "an Empty message");
    let _ = stop.send(());
    within(task).await.unwrap().unwrap();
}

/// Many requests in flight on one connection at once (no NSTART over RFC 8323): every
/// response arrives intact on every scheme, also when the server answers in runs (one
/// WebSocket frame per message, §4.2; one write for many on TCP).
#[tokio::test]
async fn pipelined_requests_on_every_scheme() {
    let pki = Pki::new("pipelined");
    let server = start(Some(pki.server(false))).await;
    let client = client(Some(pki.client(false))).await;
    for scheme in [
        Scheme::CoapTcp,
        Scheme::CoapWs,
        Scheme::CoapsTcp,
        Scheme::CoapsWs,
    ] {
        let uri = server.uri(scheme, "localhost", "/hello");
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let (client, uri) = (client.clone(), uri.clone());
            requests.spawn(async move { client.get(&uri).await });
        }
        while let Some(response) = within(requests.join_next()).await {
            let response = response
                .unwrap()
                .unwrap_or_else(|e| panic!("{scheme}: {e}"));
            assert_eq!(response.payload, b"world", "{scheme}");
        }
    }
    server.shutdown().await;
}
