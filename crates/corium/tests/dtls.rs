//! CoAP over DTLS (`coaps://`, RFC 7252 §9) over loopback, PSK mode: a GET, a
//! block-wise GET (RFC 7959), an observation (RFC 7641), the PSK identity reaching the
//! handler, and a wrong key giving the client a clear error.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use corium::corium_dtls::{ClientConfig, PskMap, ServerConfig};
use corium::{Client, Code, Observable, RequestContext, Resource, Response, Router, Server};
use tokio::sync::oneshot;

mod common;
use common::LIMIT;

const IDENTITY: &str = "device-17";
const KEY: &str = "secretPSK";

fn large() -> Vec<u8> {
    (0..5000u32).map(|i| (i % 251) as u8).collect()
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    obs: Observable,
    identities: Arc<Mutex<Vec<Option<Arc<str>>>>>,
}

impl Running {
    fn uri(&self, path: &str) -> String {
        format!("coaps://{}{}", self.addr, path)
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        within(self.task).await.unwrap().unwrap();
    }
}

async fn start() -> Running {
    let mut keys = PskMap::new();
    keys.insert(IDENTITY, KEY).unwrap();
    start_with(ServerConfig::psk(keys)).await
}

async fn start_with(config: ServerConfig) -> Running {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let obs = Observable::new();
    let identities = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&identities);
    let router = Router::new()
        .route(
            "/hello",
            Resource::new().get(move |ctx: RequestContext| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock().unwrap().push(ctx.security.clone());
                    Response::with_payload(Code::CONTENT, "world")
                }
            }),
        )
        .route(
            "/large",
            Resource::new().get(|_ctx: RequestContext| async {
                Response::with_payload(Code::CONTENT, large())
            }),
        )
        .route(
            "/obs",
            Resource::new()
                .observable(&obs)
                .get(|_ctx: RequestContext| async {
                    Response::with_payload(Code::CONTENT, "state")
                }),
        );
    let server = Server::builder()
        .dtls(config, &[any])
        .bind(&[any], router)
        .await
        .expect("bind");
    let addr = server.dtls_addrs()[0];
    assert_ne!(addr.port(), 0);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
        obs,
        identities,
    }
}

async fn client(key: &str) -> Client {
    Client::builder()
        .dtls(ClientConfig::psk(IDENTITY, key.to_owned()).unwrap())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.expect("in time")
}

/// RFC 7252 §9.1: GET, block-wise GET and Observe over one PSK session.
#[tokio::test]
async fn psk_get_blockwise_observe() {
    let server = start().await;
    let client = client(KEY).await;

    let hello = within(client.get(&server.uri("/hello"))).await.unwrap();
    assert_eq!(hello.code, Code::CONTENT);
    assert_eq!(hello.payload, b"world");
    // The handler saw the PSK identity the client proved.
    assert_eq!(
        server.identities.lock().unwrap().as_slice(),
        [Some(Arc::<str>::from(IDENTITY))]
    );

    // RFC 7959: 5000 bytes in 1024-byte blocks, each in its own DTLS record.
    let body = within(client.get(&server.uri("/large"))).await.unwrap();
    assert_eq!(body.code, Code::CONTENT);
    assert_eq!(body.payload, large());

    // RFC 7641: registration and one notification.
    let mut observation = within(client.observe(&server.uri("/obs"))).await.unwrap();
    let first = within(observation.next()).await.unwrap().unwrap();
    assert_eq!(first.payload, b"state");
    server.obs.notify();
    let next = within(observation.next()).await.unwrap().unwrap();
    assert_eq!(next.payload, b"state");
    let seq = |r: &Response| r.options.get_uint(corium::OptionNumber::OBSERVE);
    assert!(seq(&next) > seq(&first), "fresher notification");
    drop(observation);

    server.shutdown().await;
}

/// A wrong PSK fails the handshake; the request fails with the DTLS reason, not a
/// CoAP timeout.
#[tokio::test]
async fn wrong_key_is_a_clear_error() {
    let server = start().await;
    let client = client("not-the-key").await;
    let err = within(client.get(&server.uri("/hello")))
        .await
        .expect_err("the handshake must fail");
    let text = err.to_string();
    assert!(text.contains("DTLS handshake failed"), "{text}");
    assert!(server.identities.lock().unwrap().is_empty());
    server.shutdown().await;
}

/// RFC 7252 §9.1.3.3: certificate mode (ECDHE_ECDSA); the client checks the server's
/// chain against its CA and, with a server name, the name.
#[tokio::test]
async fn certificate_mode_get() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let server = start_with(
        ServerConfig::certificate(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap(),
    )
    .await;
    let client = Client::builder()
        .dtls(
            ClientConfig::certificate(ca.pem().as_bytes())
                .unwrap()
                .with_server_name("localhost"),
        )
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let hello = within(client.get(&server.uri("/hello"))).await.unwrap();
    assert_eq!(hello.payload, b"world");
    let body = within(client.get(&server.uri("/large"))).await.unwrap();
    assert_eq!(body.payload, large());

    // A client trusting another CA fails the handshake with a clear error.
    let other_key = KeyPair::generate().unwrap();
    let mut other_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    other_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other = other_params.self_signed(&other_key).unwrap();
    let stranger = Client::builder()
        .dtls(ClientConfig::certificate(other.pem().as_bytes()).unwrap())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let err = within(stranger.get(&server.uri("/hello")))
        .await
        .expect_err("an untrusted server certificate");
    assert!(err.to_string().contains("DTLS"), "{err}");
    server.shutdown().await;
}

/// Without credentials, `coaps://` is refused up front.
#[tokio::test]
async fn coaps_needs_credentials() {
    let client = Client::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let err = client.get("coaps://127.0.0.1:5684/x").await.unwrap_err();
    assert!(err.is_uri(), "{err}");
}
