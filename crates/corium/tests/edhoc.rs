//! EDHOC (RFC 9528) over loopback: a `Server` with an `EdhocServer` at
//! `/.well-known/edhoc`, a client running `edhoc::establish` and then OSCORE with the
//! derived context; the combined request (RFC 9668); a message_1 flood.

use std::time::Duration;

use corium::corium_oscore::{BlockwiseMode, SecurityContextSet};
use corium::edhoc::corium_edhoc::{coap, Initiator, OwnCredential, PeerCredentials, Responder};
use corium::edhoc::{establish, establish_combined, EdhocServer};
use corium::{
    Client, Code, OptionNumber, OscoreClient, OscoreServer, Request, RequestContext,
    RequestOptions, Resource, Response, Router, Server,
};
use tokio::sync::oneshot;

mod common;
use common::LIMIT;

struct Keys {
    initiator: Initiator,
    responder: Responder,
    r_ccs: Vec<u8>,
}

fn keys() -> Keys {
    let (i_key, i_ccs) = OwnCredential::generate(b"I", "client").unwrap();
    let (r_key, r_ccs) = OwnCredential::generate(b"R", "server").unwrap();
    Keys {
        initiator: Initiator::new(
            OwnCredential::new(&i_key, &i_ccs).unwrap(),
            PeerCredentials::new().with_ccs(&r_ccs).unwrap(),
        ),
        responder: Responder::new(
            OwnCredential::new(&r_key, &r_ccs).unwrap(),
            PeerCredentials::new().with_ccs(&i_ccs).unwrap(),
        ),
        r_ccs,
    }
}

struct Running {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    fn base(&self) -> String {
        format!("coap://{}", self.addr)
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

async fn start(edhoc: &EdhocServer) -> Running {
    let router = Router::new()
        .route("/.well-known/edhoc", edhoc.resource())
        .route(
            "/secret",
            Resource::new().get(|_ctx: RequestContext| async {
                Response::with_payload(Code::CONTENT, "only with OSCORE")
            }),
        );
    let server = Server::builder()
        .oscore(OscoreServer::new(SecurityContextSet::new(8)).require("/secret"))
        .edhoc(edhoc)
        .bind(&["127.0.0.1:0".parse().unwrap()], router)
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
    }
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.expect("in time")
}

#[tokio::test]
async fn establish_then_oscore() {
    let k = keys();
    let edhoc = EdhocServer::new(k.responder);
    let server = start(&edhoc).await;
    let plain = common::client().await;

    let denied = within(plain.get(&format!("{}/secret", server.base())))
        .await
        .unwrap();
    assert_eq!(denied.code, Code::UNAUTHORIZED);

    let session = within(establish(&plain, &server.base(), &k.initiator))
        .await
        .expect("EDHOC completes");
    assert_eq!(edhoc.sessions(), 1);
    assert_eq!(edhoc.pending(), 0);
    assert_eq!(session.peer_kid(), Some(&b"R"[..]));

    let ctx = session
        .oscore_context()
        .blockwise(BlockwiseMode::Inner)
        .build()
        .unwrap();
    let client = Client::builder()
        .oscore(OscoreClient::new().context(&format!("{}/*", server.base()), ctx))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    for _ in 0..3 {
        let r = within(client.get(&format!("{}/secret", server.base())))
            .await
            .expect("protected GET");
        assert_eq!(r.code, Code::CONTENT);
        assert_eq!(r.payload, b"only with OSCORE");
    }

    // A second exchange gets its own context (another C_R).
    let again = within(establish(&plain, &server.base(), &k.initiator))
        .await
        .unwrap();
    assert_ne!(again.sender_id(), session.sender_id());
    assert_eq!(edhoc.sessions(), 2);
    server.shutdown().await;
}

/// RFC 9668: message_3 rides with the first OSCORE request (EDHOC option, payload
/// message_3 || ciphertext); the response is protected with the new context.
#[tokio::test]
async fn combined_request() {
    let k = keys();
    let edhoc = EdhocServer::new(k.responder);
    let server = start(&edhoc).await;
    let plain = Client::builder()
        .config(corium::EndpointConfig {
            recognized_critical_options: vec![OptionNumber::OSCORE],
            ..Default::default()
        })
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let uri = format!("{}/.well-known/edhoc", server.base());

    let (wait_m2, m1) = k.initiator.message_1(None).unwrap();
    let m2 = within(plain.post(&uri, coap::message_1_request(&m1)))
        .await
        .unwrap();
    assert_eq!(m2.code, Code::CHANGED);
    let (wait_m4, m3) = wait_m2.process_message_2(&m2.payload).unwrap();
    let session = wait_m4.session().unwrap();
    let mut ctx = session.oscore_context().build().unwrap();

    let mut request = Request::new(Code::GET);
    request.set_path("/secret");
    let (mut outer, mut binding) = ctx.protect_request(&request).unwrap();
    outer.options.push(OptionNumber::EDHOC, Vec::new());
    outer.payload = coap::combined_payload(&m3, &outer.payload);
    let response = within(plain.send(server.addr, outer.clone(), RequestOptions::default()))
        .await
        .unwrap();
    assert!(response.options.contains(OptionNumber::OSCORE));
    let inner = ctx.unprotect_response(&mut binding, &response).unwrap();
    assert_eq!(inner.code, Code::CONTENT);
    assert_eq!(inner.payload, b"only with OSCORE");
    assert_eq!(edhoc.sessions(), 1);

    // The same combined request again: the exchange is over, message_3 finds nothing.
    let replay = within(plain.send(server.addr, outer, RequestOptions::default()))
        .await
        .unwrap();
    assert_eq!(replay.code, Code::BAD_REQUEST);

    // A combined request whose message_3 is an empty byte string, for a pending
    // exchange: refused with 4.00, and the server keeps serving (the combined request
    // is processed in the driver, where a panic would stop the socket).
    let (wait_m2, m1) = k.initiator.message_1(None).unwrap();
    let m2 = within(plain.post(&uri, coap::message_1_request(&m1)))
        .await
        .unwrap();
    let (wait_m4, _) = wait_m2.process_message_2(&m2.payload).unwrap();
    let mut ctx = wait_m4.session().unwrap().oscore_context().build().unwrap();
    let (mut outer, _) = ctx.protect_request(&request).unwrap();
    outer.options.push(OptionNumber::EDHOC, Vec::new());
    outer.payload = coap::combined_payload(&[0x40], &outer.payload);
    let r = within(plain.send(server.addr, outer, RequestOptions::default()))
        .await
        .unwrap();
    assert_eq!(r.code, Code::BAD_REQUEST);
    let again = within(establish(&plain, &server.base(), &k.initiator)).await;
    assert!(again.is_ok(), "{again:?}");
    server.shutdown().await;
}

/// A message_1 flood fills the bounded table; further message_1 get 5.03 with Max-Age,
/// and the server keeps serving.
#[tokio::test]
async fn message_1_flood_is_bounded() {
    let k = keys();
    let edhoc = EdhocServer::new(k.responder)
        .max_pending(4)
        .pending_timeout(Duration::from_secs(600));
    let server = start(&edhoc).await;
    let plain = common::client().await;
    let uri = format!("{}/.well-known/edhoc", server.base());
    for n in 0..8 {
        let (_, m1) = k.initiator.message_1(None).unwrap();
        let r = within(plain.post(&uri, coap::message_1_request(&m1)))
            .await
            .unwrap();
        if n < 4 {
            assert_eq!(r.code, Code::CHANGED);
        } else {
            assert_eq!(r.code, Code::SERVICE_UNAVAILABLE);
            assert!(r.options.contains(OptionNumber::MAX_AGE));
        }
    }
    assert_eq!(edhoc.pending(), 4);
    // Garbage and unknown C_R are refused with EDHOC error messages.
    let r = within(plain.post(&uri, vec![0xf5, 0x00])).await.unwrap();
    assert_eq!(r.code, Code::BAD_REQUEST);
    assert_eq!(r.payload.first(), Some(&0x01));
    let r = within(plain.post(&uri, vec![0x41, 0x99, 0x42, 0x00]))
        .await
        .unwrap();
    assert_eq!(r.code, Code::BAD_REQUEST);
    // Everything else is still served.
    let r = within(plain.get(&format!("{}/secret", server.base())))
        .await
        .unwrap();
    assert_eq!(r.code, Code::UNAUTHORIZED);
    assert_eq!(edhoc.pending(), 4);
    server.shutdown().await;
}

/// Pending exchanges expire: with a zero timeout every message_1 finds room (the
/// previous one expired at once) and message_3 finds no exchange.
#[tokio::test]
async fn pending_exchanges_expire() {
    let k = keys();
    let edhoc = EdhocServer::new(k.responder)
        .max_pending(1)
        .pending_timeout(Duration::ZERO);
    let server = start(&edhoc).await;
    let plain = common::client().await;
    let uri = format!("{}/.well-known/edhoc", server.base());
    for _ in 0..3 {
        let (_, m1) = k.initiator.message_1(None).unwrap();
        let r = within(plain.post(&uri, coap::message_1_request(&m1)))
            .await
            .unwrap();
        assert_eq!(r.code, Code::CHANGED);
    }
    let err = within(establish(&plain, &server.base(), &k.initiator))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("message_3"), "{err}");
    assert_eq!(edhoc.sessions(), 0);
    server.shutdown().await;
}

/// A client the server does not know: message_3 is refused with an EDHOC error, no
/// context is installed.
#[tokio::test]
async fn unknown_initiator_is_refused() {
    let k = keys();
    let (key, ccs) = OwnCredential::generate(b"X", "stranger").unwrap();
    let stranger = Initiator::new(
        OwnCredential::new(&key, &ccs).unwrap(),
        PeerCredentials::new().with_ccs(&k.r_ccs).unwrap(),
    );
    let edhoc = EdhocServer::new(k.responder.clone());
    let server = start(&edhoc).await;
    let plain = common::client().await;
    let err = within(establish(&plain, &server.base(), &stranger))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown credential"), "{err}");
    assert_eq!(edhoc.sessions(), 0);
    server.shutdown().await;
}

/// The client side of RFC 9668: `establish_combined` + `OscoreClient::edhoc_context`
/// send message_3 with the first protected request; later requests go without it.
#[tokio::test]
async fn client_sends_the_combined_request() {
    let k = keys();
    let edhoc = EdhocServer::new(k.responder);
    let server = start(&edhoc).await;
    let plain = common::client().await;
    let (session, message_3) = within(establish_combined(&plain, &server.base(), &k.initiator))
        .await
        .expect("message_1/message_2");
    assert_eq!(edhoc.pending(), 1);
    assert_eq!(edhoc.sessions(), 0);
    let ctx = session.oscore_context().build().unwrap();
    let client = Client::builder()
        .oscore(OscoreClient::new().edhoc_context([format!("{}/*", server.base())], ctx, message_3))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    for _ in 0..3 {
        let r = within(client.get(&format!("{}/secret", server.base())))
            .await
            .expect("protected GET");
        assert_eq!(r.payload, b"only with OSCORE");
        assert_eq!(edhoc.sessions(), 1);
        assert_eq!(edhoc.pending(), 0);
    }
    server.shutdown().await;
}

/// EDHOC-derived OSCORE contexts are not persisted (their keys come from ephemeral
/// Diffie-Hellman, so a context can never be resumed, and no nonce can repeat with
/// it): a restarted server has none of them, so a client still holding one is refused
/// (its kid is unknown, or names a new context it cannot decrypt for, RFC 8613 §8.2)
/// and never reaches a resource, until it runs EDHOC again.
#[tokio::test]
async fn edhoc_contexts_do_not_survive_a_server_restart() {
    let (i_key, i_ccs) = OwnCredential::generate(b"I", "client").unwrap();
    let (r_key, r_ccs) = OwnCredential::generate(b"R", "server").unwrap();
    let responder = || {
        Responder::new(
            OwnCredential::new(&r_key, &r_ccs).unwrap(),
            PeerCredentials::new().with_ccs(&i_ccs).unwrap(),
        )
    };
    let initiator = Initiator::new(
        OwnCredential::new(&i_key, &i_ccs).unwrap(),
        PeerCredentials::new().with_ccs(&r_ccs).unwrap(),
    );
    let first = EdhocServer::new(responder());
    let server = start(&first).await;
    let addr = server.addr;
    let plain = common::client().await;
    let session = within(establish(&plain, &server.base(), &initiator))
        .await
        .expect("EDHOC completes");
    let ctx = session.oscore_context().build().unwrap();
    let client = Client::builder()
        .oscore(OscoreClient::new().context(&format!("coap://{addr}/*"), ctx))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let r = within(client.get(&format!("coap://{addr}/secret")))
        .await
        .expect("protected GET");
    assert_eq!(r.code, Code::CONTENT);
    server.shutdown().await;

    // The same server, restarted on the same address: no EDHOC sessions.
    let second = EdhocServer::new(responder());
    let router = Router::new()
        .route("/.well-known/edhoc", second.resource())
        .route(
            "/secret",
            Resource::new().get(|_ctx: RequestContext| async {
                Response::with_payload(Code::CONTENT, "only with OSCORE")
            }),
        );
    let restarted = Server::builder()
        .oscore(OscoreServer::new(SecurityContextSet::new(8)).require("/secret"))
        .edhoc(&second)
        .bind(&[addr], router)
        .await
        .expect("bind the restarted server");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(restarted.run_until(async {
        let _ = stopped.await;
    }));
    assert_eq!(second.sessions(), 0);
    let err = within(client.get(&format!("coap://{addr}/secret")))
        .await
        .expect_err("the old context is gone");
    assert!(err.is_oscore(), "{err}");

    // A new EDHOC run gives a working context again.
    let session = within(establish(&plain, &format!("coap://{addr}"), &initiator))
        .await
        .expect("EDHOC again");
    let client = Client::builder()
        .oscore(OscoreClient::new().context(
            &format!("coap://{addr}/*"),
            session.oscore_context().build().unwrap(),
        ))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let r = within(client.get(&format!("coap://{addr}/secret")))
        .await
        .expect("protected GET");
    assert_eq!(r.payload, b"only with OSCORE");
    let _ = stop.send(());
    within(task).await.unwrap().unwrap();
}
