//! OSCORE (RFC 8613) over loopback: a `Client` with an `OscoreClient` against a
//! `Server` with an `OscoreServer`, with mirrored security contexts.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use corium::corium_oscore::{BlockwiseMode, SecurityContext, SecurityContextSet};
use corium::{
    Client, Code, Observable, OptionNumber, OscoreClient, OscoreServer, Request, RequestContext,
    RequestOptions, Resource, Response, Router, SequenceFile, Server,
};
use tokio::sync::oneshot;

mod common;
use common::LIMIT;

/// RFC 8613 Appendix C.1.1's Master Secret and Salt; the client's Sender ID is empty,
/// the server's 0x01.
const SECRET: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
const SALT: [u8; 8] = [0x9e, 0x7c, 0xa9, 0x22, 0x23, 0x78, 0x63, 0x40];
const CLIENT_ID: &[u8] = &[];
const SERVER_ID: &[u8] = &[0x01];

fn client_context(secret: &[u8]) -> SecurityContext {
    SecurityContext::builder(secret, CLIENT_ID, SERVER_ID)
        .master_salt(&SALT)
        .blockwise(BlockwiseMode::Inner)
        .build()
        .expect("client context")
}

fn server_contexts() -> SecurityContextSet {
    let mut set = SecurityContextSet::new(4);
    set.insert(
        SecurityContext::builder(&SECRET, SERVER_ID, CLIENT_ID)
            .master_salt(&SALT)
            .build()
            .expect("server context"),
    )
    .expect("insert");
    set
}

/// 5000 bytes: five outer Block2 blocks of the protected response.
fn large_body() -> Vec<u8> {
    (0..5000u32).map(|i| b'a' + (i % 26) as u8).collect()
}

struct Fixture {
    obs: Observable,
    state: Arc<AtomicU32>,
}

/// Answers with the OSCORE context that verified the request, as
/// `SENDER-ID-HEX/ID-CONTEXT-HEX`, or `none` for an unprotected request.
async fn whoami(ctx: RequestContext) -> Response {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let body = match &ctx.oscore {
        Some(o) => format!(
            "kid={}/{}",
            hex(&o.sender_id),
            o.id_context.as_deref().map_or("-".to_owned(), hex)
        ),
        None => "none".to_owned(),
    };
    Response::with_payload(Code::CONTENT, body)
}

fn router(fixture: &Fixture) -> Router {
    let state = fixture.state.clone();
    Router::new()
        .route(
            "/oscore/hello",
            Resource::new().get(|_ctx: RequestContext| async {
                let mut r = Response::with_payload(Code::CONTENT, "Hello World!");
                r.options.set_uint(OptionNumber::CONTENT_FORMAT, 0);
                r
            }),
        )
        .route("/oscore/whoami", Resource::new().get(whoami))
        .route("/whoami", Resource::new().get(whoami))
        .route(
            "/oscore/echo",
            Resource::new().post(|ctx: RequestContext| async move {
                Response::with_payload(Code::CHANGED, ctx.request.payload.clone())
            }),
        )
        .route(
            "/oscore/large",
            Resource::new().get(|_ctx: RequestContext| async {
                Response::with_payload(Code::CONTENT, large_body())
            }),
        )
        .route(
            "/oscore/obs",
            Resource::new()
                .get(move |_ctx: RequestContext| {
                    let state = state.clone();
                    async move {
                        match state.load(Ordering::SeqCst) {
                            99 => Response::new(Code::NOT_FOUND),
                            n => Response::with_payload(Code::CONTENT, n.to_string()),
                        }
                    }
                })
                .observable(&fixture.obs),
        )
        .route(
            "/oscore/obs-large",
            Resource::new()
                .get(|_ctx: RequestContext| async {
                    Response::with_payload(Code::CONTENT, large_body())
                })
                .observable(&fixture.obs),
        )
        .route(
            "/public",
            Resource::new().get(|_ctx: RequestContext| async {
                Response::with_payload(Code::CONTENT, "public")
            }),
        )
}

struct Running {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    fixture: Fixture,
}

impl Running {
    fn uri(&self, path: &str) -> String {
        format!("coap://{}{}", self.addr, path)
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("shutdown in time")
            .expect("server task")
            .expect("server result");
    }
}

async fn start_server(contexts: SecurityContextSet) -> Running {
    start_server_with(OscoreServer::new(contexts).require("/oscore/*")).await
}

async fn start_server_with(oscore: OscoreServer) -> Running {
    let fixture = Fixture {
        obs: Observable::new(),
        state: Arc::new(AtomicU32::new(1)),
    };
    let server = Server::builder()
        .oscore(oscore)
        .bind(&["127.0.0.1:0".parse().unwrap()], router(&fixture))
        .await
        .expect("bind server");
    let addr = server.local_addrs()[0];
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
        fixture,
    }
}

async fn oscore_client(server: &Running, ctx: SecurityContext) -> Client {
    Client::builder()
        .oscore(OscoreClient::new().context(&server.uri("/oscore/*"), ctx))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind client")
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.expect("in time")
}

#[tokio::test]
async fn get_and_post_are_protected() {
    let server = start_server(server_contexts()).await;
    let client = oscore_client(&server, client_context(&SECRET)).await;

    let r = within(client.get(&server.uri("/oscore/hello")))
        .await
        .expect("GET");
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.payload, b"Hello World!");
    // The inner options come back (Content-Format is Class E).
    assert_eq!(r.options.get_uint(OptionNumber::CONTENT_FORMAT), Some(0));
    assert!(!r.options.contains(OptionNumber::OSCORE));

    let r = within(client.post(&server.uri("/oscore/echo"), "some payload"))
        .await
        .expect("POST");
    assert_eq!(r.code, Code::CHANGED);
    assert_eq!(r.payload, b"some payload");

    // A URI outside the pattern goes unprotected, and the server serves it.
    let r = within(client.get(&server.uri("/public")))
        .await
        .expect("GET");
    assert_eq!(r.payload, b"public");
    // Errors of the inner exchange are protected and verified like any response.
    let r = within(client.get(&server.uri("/oscore/nothing")))
        .await
        .expect("GET");
    assert_eq!(r.code, Code::NOT_FOUND);
    server.shutdown().await;
}

/// Which Block options the datagrams a client sent and received carried outside the
/// ciphertext.
#[derive(Default)]
struct OuterBlocks {
    sent_block1: AtomicU32,
    received_block2: AtomicU32,
    sent: AtomicU32,
}

async fn traced_client(server: &Running, ctx: SecurityContext, seen: Arc<OuterBlocks>) -> Client {
    Client::builder()
        .oscore(OscoreClient::new().context(&server.uri("/oscore/*"), ctx))
        .trace(move |direction, _peer, bytes| {
            let Ok(msg) = corium::wire::Message::parse(bytes) else {
                return;
            };
            match direction {
                corium::Direction::Sent => {
                    seen.sent.fetch_add(1, Ordering::SeqCst);
                    if msg.option(OptionNumber::BLOCK1).is_some() {
                        seen.sent_block1.fetch_add(1, Ordering::SeqCst);
                    }
                }
                corium::Direction::Received => {
                    if msg.option(OptionNumber::BLOCK2).is_some() {
                        seen.received_block2.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind client")
}

/// RFC 8613 §4.1.3.4: the protected response is cut into outer Block2 blocks by the
/// server's endpoint (the follow-ups are served from its response cache); a large body
/// goes in inner Block1 blocks (§4.1.3.4.1, a context in `BlockwiseMode::Inner`), each
/// block its own protected request, reassembled by the server before the handler.
#[tokio::test]
async fn blockwise_over_oscore() {
    let server = start_server(server_contexts()).await;
    let seen = Arc::new(OuterBlocks::default());
    let client = traced_client(&server, client_context(&SECRET), seen.clone()).await;
    let r = within(client.get(&server.uri("/oscore/large")))
        .await
        .expect("GET");
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.payload, large_body());
    assert!(!r.options.contains(OptionNumber::BLOCK2));
    assert_eq!(
        seen.received_block2.load(Ordering::SeqCst),
        5,
        "outer Block2"
    );

    let body: Vec<u8> = (0..3000u32).map(|i| b'A' + (i % 26) as u8).collect();
    let before = seen.sent.load(Ordering::SeqCst);
    let r = within(client.post(&server.uri("/oscore/echo"), body.clone()))
        .await
        .expect("POST");
    assert_eq!(r.code, Code::CHANGED);
    assert_eq!(r.payload, body);
    // Three protected requests with inner Block1, none with an outer one; the echoed
    // body comes back in three outer Block2 blocks (two more requests).
    assert_eq!(seen.sent_block1.load(Ordering::SeqCst), 0);
    assert_eq!(seen.sent.load(Ordering::SeqCst) - before, 5);
    server.shutdown().await;
}

/// With a context in `BlockwiseMode::Outer` the whole body is protected and the
/// protected message goes up in outer Block1 blocks (§4.1.3.4.2), reassembled by the
/// server's endpoint before it is verified.
#[tokio::test]
async fn outer_block1_upload() {
    let server = start_server(server_contexts()).await;
    let ctx = SecurityContext::builder(&SECRET, CLIENT_ID, SERVER_ID)
        .master_salt(&SALT)
        .blockwise(BlockwiseMode::Outer)
        .build()
        .unwrap();
    let seen = Arc::new(OuterBlocks::default());
    let client = traced_client(&server, ctx, seen.clone()).await;
    let body: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let r = within(client.post(&server.uri("/oscore/echo"), body.clone()))
        .await
        .expect("POST");
    assert_eq!(r.payload, body);
    assert_eq!(seen.sent_block1.load(Ordering::SeqCst), 3, "outer Block1");
    server.shutdown().await;
}

#[tokio::test]
async fn unprotected_request_to_protected_resource_is_401() {
    let server = start_server(server_contexts()).await;
    let plain = common::client().await;
    let r = within(plain.get(&server.uri("/oscore/hello")))
        .await
        .expect("GET");
    assert_eq!(r.code, Code::UNAUTHORIZED);
    assert_eq!(r.payload, b"OSCORE required");
    let r = within(plain.get(&server.uri("/public")))
        .await
        .expect("GET");
    assert_eq!(r.code, Code::CONTENT);
    server.shutdown().await;
}

/// RFC 8613 §7.4: the same protected request twice; the second is a replay, answered
/// with an unprotected 4.01.
#[tokio::test]
async fn replayed_request_is_rejected() {
    let server = start_server(server_contexts()).await;
    let plain = common::client().await;
    let mut ctx = client_context(&SECRET);
    let mut request = Request::new(Code::GET);
    request.set_path("/oscore/hello");
    let (outer, mut binding) = ctx.protect_request(&request).unwrap();

    let first = within(plain.send(server.addr, outer.clone(), RequestOptions::default()))
        .await
        .expect("first");
    let inner = ctx
        .unprotect_response(&mut binding, &first)
        .expect("verifies");
    assert_eq!(inner.payload, b"Hello World!");

    let second = within(plain.send(server.addr, outer, RequestOptions::default()))
        .await
        .expect("second");
    assert_eq!(second.code, Code::UNAUTHORIZED);
    assert_eq!(second.payload, b"Replay detected");
    assert!(!second.options.contains(OptionNumber::OSCORE));
    server.shutdown().await;
}

/// A client with the wrong Master Secret: the server cannot decrypt (4.00, §8.2) and the
/// client reports an OSCORE error instead of a response.
#[tokio::test]
async fn wrong_key_is_an_error() {
    let server = start_server(server_contexts()).await;
    let mut wrong = SECRET;
    wrong[0] ^= 0xff;
    let client = oscore_client(&server, client_context(&wrong)).await;
    let err = within(client.get(&server.uri("/oscore/hello")))
        .await
        .expect_err("must not verify");
    assert!(err.is_oscore(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("4.00") && text.contains("without OSCORE protection"),
        "{text}"
    );

    // An unknown Sender ID: 4.01 Security context not found.
    let stranger = SecurityContext::builder(&SECRET, &[0x42], SERVER_ID)
        .master_salt(&SALT)
        .build()
        .unwrap();
    let client = oscore_client(&server, stranger).await;
    let err = within(client.get(&server.uri("/oscore/hello")))
        .await
        .expect_err("unknown context");
    assert!(err.is_oscore());
    assert!(err.to_string().contains("4.01"), "{err}");
    server.shutdown().await;
}

/// A UDP relay between one client and `server` that flips the last byte of every
/// datagram coming back: the ciphertext of a protected response, so its tag fails.
async fn tampering_relay(server: std::net::SocketAddr) -> std::net::SocketAddr {
    let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        let mut client = None;
        let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
        loop {
            tokio::select! {
                Ok((n, from)) = front.recv_from(&mut a) => {
                    client = Some(from);
                    let _ = back.send_to(&a[..n], server).await;
                }
                Ok((n, _)) = back.recv_from(&mut b) => {
                    if let Some(c) = client {
                        // Empty ACKs have no payload; leave them alone.
                        if n > 4 + (b[0] & 0x0f) as usize {
                            b[n - 1] ^= 0x01;
                        }
                        let _ = front.send_to(&b[..n], c).await;
                    }
                }
            }
        }
    });
    addr
}

/// A response whose ciphertext was tampered with on the way (§8.4 step 5) is an error,
/// never returned as the server's response.
#[tokio::test]
async fn tampered_response_is_an_error() {
    let server = start_server(server_contexts()).await;
    let relay = tampering_relay(server.addr).await;
    let uri = format!("coap://{relay}/oscore/hello");
    let client = Client::builder()
        .oscore(OscoreClient::new().context(&format!("coap://{relay}/*"), client_context(&SECRET)))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let err = within(client.get(&uri)).await.expect_err("must not verify");
    assert!(err.is_oscore(), "{err}");
    assert!(err.to_string().contains("decryption failed"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn observe_over_oscore() {
    let server = start_server(server_contexts()).await;
    let client = oscore_client(&server, client_context(&SECRET)).await;
    let mut o = within(client.observe(&server.uri("/oscore/obs")))
        .await
        .expect("observe");
    let first = within(o.next()).await.expect("first").expect("ok");
    assert_eq!(first.code, Code::CONTENT);
    assert_eq!(first.payload, b"1");
    assert!(first.options.contains(OptionNumber::OBSERVE));
    for n in 2..5u32 {
        server.fixture.state.store(n, Ordering::SeqCst);
        server.fixture.obs.notify();
        let r = within(o.next()).await.expect("notification").expect("ok");
        assert_eq!(r.payload, n.to_string().as_bytes());
        assert!(r.options.contains(OptionNumber::OBSERVE));
    }
    assert_eq!(server.fixture.obs.observer_count(), 1);
    // An error ends the observation: protected, without Observe inside.
    server.fixture.state.store(99, Ordering::SeqCst);
    server.fixture.obs.notify();
    let r = within(o.next()).await.expect("final").expect("ok");
    assert_eq!(r.code, Code::NOT_FOUND);
    assert!(within(o.next()).await.is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn observe_cancel_over_oscore() {
    let server = start_server(server_contexts()).await;
    let client = oscore_client(&server, client_context(&SECRET)).await;
    let mut o = within(client.observe(&server.uri("/oscore/obs")))
        .await
        .expect("observe");
    within(o.next()).await.expect("first").expect("ok");
    let r = within(o.cancel()).await.expect("deregistration answered");
    assert_eq!(r.code, Code::CONTENT);
    assert!(!r.options.contains(OptionNumber::OBSERVE));
    // The deregistration (a new protected request, Observe = 1) ended the relation.
    for _ in 0..100 {
        if server.fixture.obs.observer_count() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(server.fixture.obs.observer_count(), 0);
    server.shutdown().await;
}

/// RFC 8613 Appendix B.1.2: a server that lost its replay window (restarted with
/// `resume_after_reboot`) challenges the first request with a protected 4.01 + Echo;
/// the client repeats it with the Echo value and gets the answer.
#[tokio::test]
async fn echo_recovers_the_replay_window_after_a_reboot() {
    let mut set = SecurityContextSet::new(4);
    set.insert(
        SecurityContext::builder(&SECRET, SERVER_ID, CLIENT_ID)
            .master_salt(&SALT)
            .resume_after_reboot(1000, 0)
            .build()
            .unwrap(),
    )
    .unwrap();
    let server = start_server(set).await;

    // Without help, the first request gets the challenge.
    let plain = common::client().await;
    let mut ctx = client_context(&SECRET);
    let mut request = Request::new(Code::GET);
    request.set_path("/oscore/hello");
    let (outer, mut binding) = ctx.protect_request(&request).unwrap();
    let reply = within(plain.send(server.addr, outer, RequestOptions::default()))
        .await
        .expect("reply");
    let challenge = ctx.unprotect_response(&mut binding, &reply).unwrap();
    assert_eq!(challenge.code, Code::UNAUTHORIZED);
    assert!(challenge.options.contains(OptionNumber::ECHO));

    // The runtime answers the challenge by itself.
    let client = oscore_client(&server, ctx).await;
    let r = within(client.get(&server.uri("/oscore/hello")))
        .await
        .expect("GET");
    assert_eq!(r.payload, b"Hello World!");
    let r = within(client.get(&server.uri("/oscore/hello")))
        .await
        .expect("GET");
    assert_eq!(r.code, Code::CONTENT);
    server.shutdown().await;
}

/// Appendix B.1.1: a client whose sequence numbers live in a `SequenceFile` continues
/// after a restart above every number it used, so the server accepts it.
#[tokio::test]
async fn sequence_numbers_survive_a_client_restart() {
    let server = start_server(server_contexts()).await;
    let dir = std::env::temp_dir().join(format!("corium-oscore-seq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("client.seq");
    let _ = std::fs::remove_file(&path);
    let key = SequenceFile::key(CLIENT_ID, SERVER_ID, None);
    for round in 0..3 {
        let file = SequenceFile::open(&path).expect("sequence file");
        let builder = SecurityContext::builder(&SECRET, CLIENT_ID, SERVER_ID).master_salt(&SALT);
        let ctx = file.apply(builder, &key).unwrap().build().unwrap();
        let client = oscore_client(&server, ctx).await;
        for _ in 0..2 {
            let r = within(client.get(&server.uri("/oscore/hello")))
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(r.code, Code::CONTENT);
        }
        assert_eq!(
            file.bound(&key),
            Some(corium::PERSIST_STEP * (round + 1)),
            "round {round}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    server.shutdown().await;
}

/// Inner Block1 blocks must come in order from block 0 (RFC 7959 §2.3): a stray block
/// gets a protected 4.08, and nothing reaches the handler.
#[tokio::test]
async fn inner_block_out_of_order_is_408() {
    let server = start_server(server_contexts()).await;
    let plain = common::client().await;
    let mut ctx = client_context(&SECRET);
    let mut request = Request::new(Code::POST);
    request.set_path("/oscore/echo");
    request.payload = vec![b'x'; 64];
    // Block 1 of 64-byte blocks, more to come.
    request.options.push(OptionNumber::BLOCK1, vec![0x1a]);
    let (outer, mut binding) = ctx.protect_request(&request).unwrap();
    assert!(!outer.options.contains(OptionNumber::BLOCK1), "inner only");
    let reply = within(plain.send(server.addr, outer, RequestOptions::default()))
        .await
        .expect("reply");
    let inner = ctx
        .unprotect_response(&mut binding, &reply)
        .expect("verifies");
    assert_eq!(inner.code, Code::REQUEST_ENTITY_INCOMPLETE);
    server.shutdown().await;
}

/// A notification larger than one block: its first outer block cannot be verified
/// alone, so the client completes it with a new protected GET (RFC 7959 §2.6).
#[tokio::test]
async fn large_notifications_over_oscore() {
    let server = start_server(server_contexts()).await;
    let client = oscore_client(&server, client_context(&SECRET)).await;
    let mut o = within(client.observe(&server.uri("/oscore/obs-large")))
        .await
        .expect("observe");
    let first = within(o.next()).await.expect("first").expect("ok");
    assert_eq!(first.payload, large_body());
    assert!(first.options.contains(OptionNumber::OBSERVE));
    server.fixture.obs.notify();
    let r = within(o.next()).await.expect("notification").expect("ok");
    assert_eq!(r.payload, large_body());
    assert!(!r.options.contains(OptionNumber::BLOCK2));
    server.shutdown().await;
}

/// Authorization per context: a context granted `/oscore/hello` gets a protected 4.03
/// for the other protected resources, while a context without grants and the open
/// resources are unaffected.
#[tokio::test]
async fn contexts_reach_only_what_they_are_authorized_for() {
    const OTHER_CLIENT_ID: &[u8] = &[0x02];
    let mut set = server_contexts();
    set.insert(
        SecurityContext::builder(&SECRET, SERVER_ID, OTHER_CLIENT_ID)
            .master_salt(&SALT)
            .build()
            .expect("second server context"),
    )
    .expect("insert");
    let oscore =
        OscoreServer::new(set)
            .require("/oscore/*")
            .authorize(CLIENT_ID, None, "/oscore/hello");
    let server = start_server_with(oscore).await;
    let limited = oscore_client(&server, client_context(&SECRET)).await;

    let r = within(limited.get(&server.uri("/oscore/hello")))
        .await
        .expect("GET");
    assert_eq!(r.code, Code::CONTENT);
    let r = within(limited.post(&server.uri("/oscore/echo"), "x"))
        .await
        .expect("a verified answer");
    assert_eq!(r.code, Code::FORBIDDEN);
    let r = within(limited.get(&server.uri("/public")))
        .await
        .expect("GET");
    assert_eq!(r.payload, b"public");

    let other = SecurityContext::builder(&SECRET, OTHER_CLIENT_ID, SERVER_ID)
        .master_salt(&SALT)
        .blockwise(BlockwiseMode::Inner)
        .build()
        .expect("other client context");
    let unrestricted = oscore_client(&server, other).await;
    let r = within(unrestricted.post(&server.uri("/oscore/echo"), "x"))
        .await
        .expect("POST");
    assert_eq!(r.code, Code::CHANGED);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Request freshness with Echo (RFC 9175 §2.4 item 1)
// ---------------------------------------------------------------------------------------

/// A router whose `/act` runs PUT and POST only on fresh requests, counting the runs.
fn fresh_router(runs: Arc<AtomicU32>) -> Router {
    let (put_runs, post_runs) = (runs.clone(), runs);
    Router::new().route(
        "/act",
        Resource::new()
            .put(move |ctx: RequestContext| {
                let runs = put_runs.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Response::with_payload(Code::CHANGED, ctx.request.payload.clone())
                }
            })
            .post(move |_ctx: RequestContext| {
                let runs = post_runs.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Response::new(Code::CHANGED)
                }
            })
            .get(|_ctx: RequestContext| async { Response::with_payload(Code::CONTENT, "state") })
            .require_fresh(std::time::Duration::from_secs(10)),
    )
}

/// A Confirmable PUT to `/act` with token 0x42, payload `on`, and `echo` if given.
fn raw_put(mid: u16, echo: Option<&[u8]>) -> Vec<u8> {
    let mut m = vec![0x41, 0x03, (mid >> 8) as u8, mid as u8, 0x42];
    m.extend_from_slice(&[0xb3, b'a', b'c', b't']); // Uri-Path (11)
    if let Some(echo) = echo {
        // Echo (252): delta 241 = 13 + 228, length as given (< 13 here or 13 + ext).
        assert!(echo.len() <= 40);
        if echo.len() < 13 {
            m.push(0xd0 | echo.len() as u8);
            m.push(228);
        } else {
            m.push(0xdd);
            m.push(228);
            m.push(echo.len() as u8 - 13);
        }
        m.extend_from_slice(echo);
    }
    m.extend_from_slice(&[0xff, b'o', b'n']);
    m
}

async fn raw_exchange(
    sock: &tokio::net::UdpSocket,
    to: std::net::SocketAddr,
    msg: &[u8],
) -> Vec<u8> {
    sock.send_to(msg, to).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, _) = within(sock.recv_from(&mut buf)).await.unwrap();
    buf.truncate(n);
    buf
}

/// RFC 9175 §2.4 item 1 over plain UDP: a PUT without Echo is not run but answered 4.01
/// with an Echo value; the same PUT with that value runs; a made-up value does not.
#[tokio::test]
async fn unsafe_request_without_fresh_echo_is_challenged_and_not_run() {
    let runs = Arc::new(AtomicU32::new(0));
    let server = common::start_with(
        corium::EndpointConfig::default(),
        fresh_router(runs.clone()),
    )
    .await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();

    let reply = raw_exchange(&sock, server.addr, &raw_put(1, None)).await;
    let msg = corium::wire::Message::parse(&reply).unwrap();
    assert_eq!(msg.code(), Code::UNAUTHORIZED);
    let echo = msg
        .option(OptionNumber::ECHO)
        .expect("Echo option")
        .to_vec();
    assert!(
        !echo.is_empty() && echo.len() <= 40,
        "RFC 9175 §2.2.1: 1 to 40 bytes"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0, "not run without Echo");

    let forged = vec![0x01; echo.len()];
    let reply = raw_exchange(&sock, server.addr, &raw_put(2, Some(&forged))).await;
    let msg = corium::wire::Message::parse(&reply).unwrap();
    assert_eq!(
        msg.code(),
        Code::UNAUTHORIZED,
        "a value the server did not make"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    let reply = raw_exchange(&sock, server.addr, &raw_put(3, Some(&echo))).await;
    let msg = corium::wire::Message::parse(&reply).unwrap();
    assert_eq!(msg.code(), Code::CHANGED);
    assert_eq!(msg.payload(), b"on");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // §2.4 item 1: the value serves further requests while it is young enough.
    let reply = raw_exchange(&sock, server.addr, &raw_put(4, Some(&echo))).await;
    assert_eq!(
        corium::wire::Message::parse(&reply).unwrap().code(),
        Code::CHANGED
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // A value made for another address does not make that address's requests fresh.
    let other = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let reply = raw_exchange(&other, server.addr, &raw_put(5, Some(&echo))).await;
    assert_eq!(
        corium::wire::Message::parse(&reply).unwrap().code(),
        Code::UNAUTHORIZED
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    server.shutdown().await;
}

/// The Corium client answers the challenge by itself (RFC 9175 §2.3), for PUT and POST;
/// safe methods are not challenged.
#[tokio::test]
async fn client_repeats_unsafe_requests_with_the_echo_value() {
    let runs = Arc::new(AtomicU32::new(0));
    let server = common::start_with(
        corium::EndpointConfig::default(),
        fresh_router(runs.clone()),
    )
    .await;
    let client = common::client().await;
    let r = within(
        client
            .request(Code::PUT, &server.uri("/act"))
            .payload("on")
            .send(),
    )
    .await
    .expect("PUT");
    assert_eq!(r.code, Code::CHANGED);
    assert_eq!(r.payload, b"on");
    let r = within(client.request(Code::POST, &server.uri("/act")).send())
        .await
        .expect("POST");
    assert_eq!(r.code, Code::CHANGED);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "each ran once");
    let r = within(client.get(&server.uri("/act"))).await.expect("GET");
    assert_eq!(r.code, Code::CONTENT);
    server.shutdown().await;
}

/// Under OSCORE the Echo option is class E (RFC 8613 §4.1, RFC 9175 §2.3): the check
/// runs on the verified inner request and the 4.01 with the Echo value is protected.
#[tokio::test]
async fn freshness_under_oscore_is_checked_inside_the_protection() {
    let runs = Arc::new(AtomicU32::new(0));
    let server = Server::builder()
        .oscore(OscoreServer::new(server_contexts()).require("/act"))
        .bind(
            &["127.0.0.1:0".parse().unwrap()],
            fresh_router(runs.clone()),
        )
        .await
        .expect("bind server");
    let addr = server.local_addrs()[0];
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));

    // By hand: the protected PUT without Echo gets a protected 4.01 carrying Echo.
    let plain = common::client().await;
    let mut ctx = client_context(&SECRET);
    let mut request = Request::new(Code::PUT);
    request.set_path("/act");
    request.payload = b"on".to_vec();
    let (outer, mut binding) = ctx.protect_request(&request).unwrap();
    let reply = within(plain.send(addr, outer, RequestOptions::default()))
        .await
        .expect("reply");
    assert!(reply.options.contains(OptionNumber::OSCORE), "protected");
    assert!(!reply.options.contains(OptionNumber::ECHO), "no outer Echo");
    let inner = ctx.unprotect_response(&mut binding, &reply).unwrap();
    assert_eq!(inner.code, Code::UNAUTHORIZED);
    let echo = inner
        .options
        .get(OptionNumber::ECHO)
        .expect("inner Echo")
        .to_vec();
    assert_eq!(runs.load(Ordering::SeqCst), 0, "not run");

    // The repetition with the value (inner) runs.
    request.options.set(OptionNumber::ECHO, echo);
    let (outer, mut binding) = ctx.protect_request(&request).unwrap();
    let reply = within(plain.send(addr, outer, RequestOptions::default()))
        .await
        .expect("reply");
    let inner = ctx.unprotect_response(&mut binding, &reply).unwrap();
    assert_eq!(inner.code, Code::CHANGED);
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // The runtime's OSCORE client answers the challenge by itself.
    let client = Client::builder()
        .oscore(OscoreClient::new().context(&format!("coap://{addr}/*"), ctx))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind client");
    let r = within(
        client
            .request(Code::POST, &format!("coap://{addr}/act"))
            .send(),
    )
    .await
    .expect("POST");
    assert_eq!(r.code, Code::CHANGED);
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    let _ = stop.send(());
    within(task).await.unwrap().unwrap();
}

/// A handler learns which security context verified a request
/// (`RequestContext::oscore`: the client's Sender ID and the ID Context), so that it can
/// authorize by it (e.g. the RD's access policy, RFC 9176 §7.5); unprotected requests
/// carry none.
#[tokio::test]
async fn handlers_see_the_verifying_context() {
    const ID: &[u8] = &[0x0c, 0x11];
    const ID_CONTEXT: &[u8] = &[0x37, 0xcb, 0xf3, 0x21, 0x00, 0x17, 0xa2, 0xd3];
    let mut set = SecurityContextSet::new(4);
    set.insert(
        SecurityContext::builder(&SECRET, SERVER_ID, ID)
            .master_salt(&SALT)
            .id_context(ID_CONTEXT)
            .build()
            .expect("server context"),
    )
    .expect("insert");
    let server = start_server(set).await;
    let ctx = SecurityContext::builder(&SECRET, ID, SERVER_ID)
        .master_salt(&SALT)
        .id_context(ID_CONTEXT)
        .build()
        .expect("client context");
    let client = oscore_client(&server, ctx).await;

    let r = within(client.get(&server.uri("/oscore/whoami")))
        .await
        .expect("GET");
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.payload, b"kid=0c11/37cbf3210017a2d3");
    let r = within(client.get(&server.uri("/whoami")))
        .await
        .expect("GET");
    assert_eq!(r.payload, b"none");
    server.shutdown().await;
}
