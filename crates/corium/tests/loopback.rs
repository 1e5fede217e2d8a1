//! A real server and client over loopback UDP.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corium::wire::{Message, MessageType};
use corium::{
    Client, Code, ContentFormat, Direction, EndpointConfig, OptionNumber, RequestContext,
    RequestOptions, Resource, Response, Router, Server, TransmissionParameters,
};
use tokio::sync::oneshot;

mod common;
use common::{client, start, start_with, LIMIT};

fn text(code: Code, s: impl Into<String>) -> Response {
    let mut r = Response::with_payload(code, s.into().into_bytes());
    r.set_content_format(ContentFormat::TEXT_PLAIN);
    r
}

/// Echoes the method and payload; codes per RFC 7252 §5.8 and RFC 8132.
fn echo_resource() -> Resource {
    let echo = |code: Code| {
        move |ctx: RequestContext| async move {
            let body = format!(
                "{} {}",
                ctx.request.method,
                String::from_utf8_lossy(&ctx.request.payload)
            );
            text(code, body)
        }
    };
    Resource::new()
        .get(echo(Code::CONTENT))
        .post(echo(Code::CREATED))
        .put(echo(Code::CHANGED))
        .delete(echo(Code::DELETED))
        .fetch(echo(Code::CONTENT))
        .patch(echo(Code::CHANGED))
        .ipatch(echo(Code::CHANGED))
}

#[tokio::test]
async fn every_method_round_trips() {
    let server = start(Router::new().route("/echo", echo_resource())).await;
    let client = client().await;
    let uri = server.uri("/echo");

    let r = client.get(&uri).await.unwrap();
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.payload_str(), Some("0.01 "));
    assert_eq!(r.content_format(), Some(ContentFormat::TEXT_PLAIN));

    let r = client.post(&uri, "p").await.unwrap();
    assert_eq!((r.code, r.payload_str()), (Code::CREATED, Some("0.02 p")));
    let r = client.put(&uri, "u").await.unwrap();
    assert_eq!((r.code, r.payload_str()), (Code::CHANGED, Some("0.03 u")));
    let r = client.delete(&uri).await.unwrap();
    assert_eq!((r.code, r.payload_str()), (Code::DELETED, Some("0.04 ")));
    for (method, code) in [
        (Code::FETCH, Code::CONTENT),
        (Code::PATCH, Code::CHANGED),
        (Code::IPATCH, Code::CHANGED),
    ] {
        let r = client
            .request(method, &uri)
            .payload("body")
            .content_format(ContentFormat::TEXT_PLAIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.code, code, "{method}");
        assert_eq!(r.payload_str(), Some(format!("{method} body").as_str()));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn non_request_gets_non_response() {
    let server = start(Router::new().route("/echo", echo_resource())).await;
    let seen: Arc<Mutex<Vec<(Direction, MessageType, u8)>>> = Arc::default();
    let log = seen.clone();
    let client = Client::builder()
        .trace(move |dir, _peer, bytes| {
            let msg = Message::parse(bytes).expect("valid CoAP");
            log.lock().unwrap().push((dir, msg.ty(), msg.code().0));
        })
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let r = client
        .request(Code::GET, &server.uri("/echo"))
        .non_confirmable(true)
        .send()
        .await
        .unwrap();
    assert_eq!(r.code, Code::CONTENT);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (Direction::Sent, MessageType::NonConfirmable, Code::GET.0),
            (
                Direction::Received,
                MessageType::NonConfirmable,
                Code::CONTENT.0
            ),
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn path_params_and_query() {
    let router = Router::new()
        .route(
            "/things/{id}",
            Resource::new().get(|ctx: RequestContext| async move {
                let id = ctx.param("id").unwrap_or("-").to_owned();
                let q = ctx.query_value("q").unwrap_or_default();
                text(Code::CONTENT, format!("{id}|{q}|{}", ctx.path()))
            }),
        )
        .route(
            "/files/{*rest}",
            Resource::new().get(|ctx: RequestContext| async move {
                text(Code::CONTENT, ctx.param("rest").unwrap_or("-").to_owned())
            }),
        )
        .route(
            "/seg1/seg2/seg3",
            Resource::new().get(|_ctx: RequestContext| async { text(Code::CONTENT, "deep") }),
        );
    let server = start(router).await;
    let client = client().await;
    let r = client
        .get(&server.uri("/things/a%20b?q=1&x=2"))
        .await
        .unwrap();
    assert_eq!(r.payload_str(), Some("a b|1|/things/a b"));
    let r = client.get(&server.uri("/files/x/y/z.txt")).await.unwrap();
    assert_eq!(r.payload_str(), Some("x/y/z.txt"));
    let r = client.get(&server.uri("/seg1/seg2/seg3")).await.unwrap();
    assert_eq!(r.payload_str(), Some("deep"));
    server.shutdown().await;
}

#[tokio::test]
async fn not_found_and_method_not_allowed() {
    let router = Router::new().route(
        "/test",
        Resource::new().get(|_ctx: RequestContext| async { text(Code::CONTENT, "ok") }),
    );
    let server = start(router).await;
    let client = client().await;
    assert_eq!(
        client.get(&server.uri("/missing")).await.unwrap().code,
        Code::NOT_FOUND
    );
    assert_eq!(
        client.get(&server.uri("/test/")).await.unwrap().code,
        Code::NOT_FOUND,
        "a trailing slash is another resource (RFC 7252 §6.4 step 8)"
    );
    assert_eq!(
        client.post(&server.uri("/test"), "x").await.unwrap().code,
        Code::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        client.get(&server.uri("/test")).await.unwrap().code,
        Code::CONTENT
    );
    server.shutdown().await;
}

#[tokio::test]
async fn well_known_core_with_filters() {
    let ok = |_ctx: RequestContext| async { Response::new(Code::CONTENT) };
    let router = Router::new()
        .route(
            "/sensors/temp",
            Resource::new()
                .get(ok)
                .rt("temperature-c")
                .if_("sensor")
                .ct(0)
                .obs(),
        )
        .route(
            "/sensors/light",
            Resource::new()
                .get(ok)
                .rt("light-lux")
                .if_("sensor")
                .title("Light"),
        )
        .route("/seg1/seg2", Resource::new().get(ok).sz(12))
        .route("/secret", Resource::new().get(ok).hidden());
    let server = start(router).await;
    let client = client().await;

    let all = client.get(&server.uri("/.well-known/core")).await.unwrap();
    assert_eq!(all.code, Code::CONTENT);
    assert_eq!(all.content_format(), Some(ContentFormat::LINK_FORMAT));
    assert_eq!(
        all.payload_str(),
        Some(
            "</sensors/temp>;rt=\"temperature-c\";if=\"sensor\";ct=0;obs,\
             </sensors/light>;rt=\"light-lux\";if=\"sensor\";title=\"Light\",\
             </seg1/seg2>;sz=12"
        )
    );

    let temp = client
        .get(&server.uri("/.well-known/core?rt=temp*"))
        .await
        .unwrap();
    assert_eq!(
        temp.payload_str(),
        Some("</sensors/temp>;rt=\"temperature-c\";if=\"sensor\";ct=0;obs")
    );
    let seg = client
        .get(&server.uri("/.well-known/core?href=/seg*"))
        .await
        .unwrap();
    assert_eq!(seg.payload_str(), Some("</seg1/seg2>;sz=12"));
    let sensors = client
        .get(&server.uri("/.well-known/core?if=sensor"))
        .await
        .unwrap();
    assert_eq!(
        sensors
            .payload_str()
            .map(|s| s.matches("</sensors/").count()),
        Some(2)
    );
    let none = client
        .get(&server.uri("/.well-known/core?rt=nothing"))
        .await
        .unwrap();
    assert_eq!((none.code, none.payload.len()), (Code::CONTENT, 0));
    assert_eq!(
        client
            .post(&server.uri("/.well-known/core"), "x")
            .await
            .unwrap()
            .code,
        Code::METHOD_NOT_ALLOWED
    );
    server.shutdown().await;
}

#[tokio::test]
async fn slow_handler_gets_a_separate_response() {
    let config = EndpointConfig {
        separate_ack_delay: Duration::from_millis(100),
        ..EndpointConfig::default()
    };
    let router = Router::new().route(
        "/slow",
        Resource::new().get(|_ctx: RequestContext| async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            text(Code::CONTENT, "finally")
        }),
    );
    let server = start_with(config, router).await;
    let received: Arc<Mutex<Vec<(MessageType, Code)>>> = Arc::default();
    let log = received.clone();
    let client = Client::builder()
        .trace(move |dir, _peer, bytes| {
            if dir == Direction::Received {
                let msg = Message::parse(bytes).expect("valid CoAP");
                log.lock().unwrap().push((msg.ty(), msg.code()));
            }
        })
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let r = tokio::time::timeout(LIMIT, client.get(&server.uri("/slow")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.payload_str(), Some("finally"));
    // RFC 7252 §5.2.2: an empty ACK first, then the response in a CON of its own.
    let received = received.lock().unwrap().clone();
    assert_eq!(received[0], (MessageType::Acknowledgement, Code::EMPTY));
    assert_eq!(received[1], (MessageType::Confirmable, Code::CONTENT));
    server.shutdown().await;
}

#[tokio::test]
async fn panicking_handler_gets_500_and_the_server_survives() {
    let router = Router::new()
        .route(
            "/panic",
            Resource::new().get(|_ctx: RequestContext| async {
                if true {
                    panic!("handler bug");
                }
                Response::new(Code::CONTENT)
            }),
        )
        .route(
            "/ok",
            Resource::new().get(|_ctx: RequestContext| async { text(Code::CONTENT, "fine") }),
        );
    let server = start(router).await;
    let client = client().await;
    let r = client.get(&server.uri("/panic")).await.unwrap();
    assert_eq!(r.code, Code::INTERNAL_SERVER_ERROR);
    let r = client.get(&server.uri("/ok")).await.unwrap();
    assert_eq!(r.payload_str(), Some("fine"));
    let r = client.get(&server.uri("/panic")).await.unwrap();
    assert_eq!(r.code, Code::INTERNAL_SERVER_ERROR);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests() {
    let router = Router::new().route(
        "/n/{i}",
        Resource::new().get(|ctx: RequestContext| async move {
            text(Code::CONTENT, ctx.param("i").unwrap_or("").to_owned())
        }),
    );
    let server = start(router).await;
    let config = EndpointConfig {
        transmission: TransmissionParameters {
            nstart: 256,
            ..TransmissionParameters::default()
        },
        ..EndpointConfig::default()
    };
    let client = Client::builder()
        .config(config)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000u32 {
        let client = client.clone();
        let uri = server.uri(&format!("/n/{i}"));
        tasks.spawn(async move { (i, client.get(&uri).await) });
    }
    let mut done = 0;
    while let Some(joined) = tokio::time::timeout(LIMIT, tasks.join_next())
        .await
        .expect("all requests finished in time")
    {
        let (i, result) = joined.unwrap();
        let response = result.unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(response.payload_str(), Some(i.to_string().as_str()));
        done += 1;
    }
    assert_eq!(done, 1000);
    server.shutdown().await;
}

#[tokio::test]
async fn nobody_listening_times_out() {
    // A port that was free a moment ago.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = EndpointConfig {
        transmission: TransmissionParameters {
            ack_timeout: Duration::from_millis(20),
            max_retransmit: 2,
            ..TransmissionParameters::default()
        },
        ..EndpointConfig::default()
    };
    let client = Client::builder()
        .config(config)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let uri = format!("coap://127.0.0.1:{port}/test");
    // Retransmissions run out first: no acknowledgement.
    let err = client.get(&uri).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(!err.is_reset() && !err.is_uri());
    // A short request timeout ends it first.
    let err = client
        .request(Code::GET, &uri)
        .timeout(Duration::from_millis(30))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains(&uri), "{err}");
    // Ping too.
    let err = client
        .ping(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn ping_and_send() {
    let server = start(Router::new().route("/echo", echo_resource())).await;
    let client = client().await;
    client.ping(server.addr).await.unwrap();
    let mut request = corium::Request::new(Code::PUT);
    request.set_path("/echo");
    request.payload = b"raw".to_vec();
    let r = client
        .send(server.addr, request, RequestOptions::default())
        .await
        .unwrap();
    assert_eq!(r.payload_str(), Some("0.03 raw"));
    server.shutdown().await;
}

#[tokio::test]
async fn uri_host_is_sent_for_names_only() {
    let router = Router::new().route(
        "/host",
        Resource::new().get(|ctx: RequestContext| async move {
            let host = ctx
                .request
                .options
                .get(OptionNumber::URI_HOST)
                .map(|h| String::from_utf8_lossy(h).into_owned())
                .unwrap_or_else(|| "-".into());
            let port = ctx.request.options.contains(OptionNumber::URI_PORT);
            text(Code::CONTENT, format!("{host} {port}"))
        }),
    );
    let server = start(router).await;
    let client = client().await;
    let port = server.addr.port();
    let r = client
        .get(&format!("coap://127.0.0.1:{port}/host"))
        .await
        .unwrap();
    assert_eq!(r.payload_str(), Some("- false"));
    // "localhost" may resolve to ::1 first; the IPv4 client socket picks 127.0.0.1.
    let r = client
        .get(&format!("coap://LOCALHOST:{port}/host"))
        .await
        .unwrap();
    assert_eq!(r.payload_str(), Some("localhost false"));
    server.shutdown().await;
}

#[tokio::test]
async fn dual_stack_client_reaches_ipv4_and_ipv6() {
    let Ok(client) = Client::bind("[::]:0".parse().unwrap()).await else {
        return; // No IPv6 on this host.
    };
    let server = start(Router::new().route("/echo", echo_resource())).await;
    let seen: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
    let r = client.get(&server.uri("/echo")).await.unwrap();
    assert_eq!(r.code, Code::CONTENT);
    server.shutdown().await;

    // An IPv6 server, if the host has ::1.
    let Ok(v6) = Server::builder()
        .bind(
            &["[::1]:0".parse().unwrap()],
            Router::new().route("/echo", echo_resource()),
        )
        .await
    else {
        return;
    };
    let addr = v6.local_addrs()[0];
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(v6.run_until(async {
        let _ = stopped.await;
    }));
    let log = seen.clone();
    let traced = Client::builder()
        .trace(move |_, peer, _| log.lock().unwrap().push(peer))
        .bind("[::]:0".parse().unwrap())
        .await
        .unwrap();
    let r = traced
        .get(&format!("coap://[::1]:{}/echo", addr.port()))
        .await
        .unwrap();
    assert_eq!(r.code, Code::CONTENT);
    assert!(seen.lock().unwrap().iter().all(|p| *p == addr));
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn ipv4_client_cannot_reach_ipv6() {
    let client = client().await;
    let err = client
        .ping("[::1]:5683".parse().unwrap())
        .await
        .unwrap_err();
    assert!(err.is_io(), "{err}");
}

#[tokio::test]
async fn server_binds_v4_and_v6_on_one_port() {
    let v4 = Server::builder()
        .bind(&["127.0.0.1:0".parse().unwrap()], Router::new())
        .await
        .unwrap();
    let port = v4.local_addrs()[0].port();
    drop(v4);
    let both = [
        format!("0.0.0.0:{port}").parse().unwrap(),
        format!("[::]:{port}").parse().unwrap(),
    ];
    match Server::builder().bind(&both, Router::new()).await {
        Ok(server) => assert_eq!(server.local_addrs().len(), 2),
        Err(err) => {
            // Hosts without IPv6 cannot bind [::]; anything else is a failure.
            let msg = err.to_string();
            assert!(msg.contains("[::]"), "{msg}");
        }
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_handlers() {
    let (entered_tx, entered_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let router = Router::new().route(
        "/slow",
        Resource::new().get(move |_ctx: RequestContext| {
            let entered = entered_tx.clone();
            async move {
                let _ = entered.send(());
                tokio::time::sleep(Duration::from_millis(300)).await;
                text(Code::CONTENT, "done")
            }
        }),
    );
    let server = start(router).await;
    let client = client().await;
    let uri = server.uri("/slow");
    let request = tokio::spawn(async move { client.get(&uri).await });
    let mut entered_rx = entered_rx;
    entered_rx.recv().await.unwrap();
    // Shut down while the handler is still sleeping: its response still goes out.
    server.shutdown().await;
    let r = tokio::time::timeout(LIMIT, request)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r.payload_str(), Some("done"));
}

#[tokio::test]
async fn shutdown_with_nothing_in_flight_returns() {
    let server = start(Router::new()).await;
    server.shutdown().await;
}

#[tokio::test]
async fn dropped_request_future_stops_retransmitting() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sent = Arc::new(Mutex::new(0usize));
    let counter = sent.clone();
    let config = EndpointConfig {
        transmission: TransmissionParameters {
            ack_timeout: Duration::from_millis(200),
            ack_random_factor: 1.0,
            ..TransmissionParameters::default()
        },
        ..EndpointConfig::default()
    };
    let client = Client::builder()
        .config(config)
        .trace(move |dir, _, _| {
            if dir == Direction::Sent {
                *counter.lock().unwrap() += 1;
            }
        })
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let uri = format!("coap://127.0.0.1:{port}/x");
    // Give up long before the first retransmission (200 ms; then 600 ms).
    let gave_up = tokio::time::timeout(Duration::from_millis(10), client.get(&uri)).await;
    assert!(gave_up.is_err());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        *sent.lock().unwrap(),
        1,
        "the cancelled CON was never retransmitted"
    );
}

#[tokio::test]
async fn shutdown_gives_up_on_stuck_handlers() {
    let router = Router::new().route(
        "/stuck",
        Resource::new().get(|_ctx: RequestContext| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::new(Code::CONTENT)
        }),
    );
    let (entered_tx, mut entered_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let router = router.route(
        "/enter",
        Resource::new().get(move |_ctx: RequestContext| {
            let entered = entered_tx.clone();
            async move {
                let _ = entered.send(());
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Response::new(Code::CONTENT)
            }
        }),
    );
    let server = Server::builder()
        .shutdown_grace(Duration::from_millis(200))
        .bind(&["127.0.0.1:0".parse().unwrap()], router)
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let client = client().await;
    let uri = format!("coap://{addr}/enter");
    let _pending = tokio::spawn(async move { client.get(&uri).await });
    entered_rx.recv().await.unwrap();
    let _ = stop.send(());
    tokio::time::timeout(LIMIT, task)
        .await
        .expect("run_until returned after the grace period")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn server_serves_every_bound_socket() {
    let server = Server::builder()
        .bind(
            &[
                "127.0.0.1:0".parse().unwrap(),
                "127.0.0.1:0".parse().unwrap(),
            ],
            Router::new().route("/echo", echo_resource()),
        )
        .await
        .unwrap();
    let addrs = server.local_addrs();
    assert_eq!(addrs.len(), 2);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let client = client().await;
    for addr in &addrs {
        let r = client.get(&format!("coap://{addr}/echo")).await.unwrap();
        assert_eq!(r.code, Code::CONTENT, "{addr}");
    }
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// RFC 7959 §2.4: a representation larger than one block leaves the server in 1024-byte
/// blocks (no datagram above RFC 7252 §4.6's 1152 bytes) and the client reassembles it.
#[tokio::test]
async fn large_response_is_reassembled_from_blocks() {
    let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let served = body.clone();
    let router = Router::new().route(
        "/big",
        Resource::new().get(move |_ctx: RequestContext| {
            let served = served.clone();
            async move { Response::with_payload(Code::CONTENT, served) }
        }),
    );
    let running = start(router).await;
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let seen = sizes.clone();
    let client = Client::builder()
        .trace(move |dir, _peer, bytes| {
            if dir == Direction::Received {
                seen.lock().unwrap().push(bytes.len());
            }
        })
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let response = tokio::time::timeout(LIMIT, client.get(&running.uri("/big")))
        .await
        .expect("in time")
        .expect("response");
    assert_eq!(response.code, Code::CONTENT);
    assert_eq!(response.payload, body);
    assert!(!response.options.contains(OptionNumber::BLOCK2));
    let sizes = sizes.lock().unwrap().clone();
    assert_eq!(sizes.len(), 5, "five blocks of 1024 bytes");
    assert!(sizes.iter().all(|&n| n <= 1152));
    running.shutdown().await;
}

/// RFC 7959 §2.3: a payload larger than one block is uploaded in blocks; the handler sees
/// the whole body once, and every datagram stays within 1152 bytes.
#[tokio::test]
async fn large_upload_goes_block_wise() {
    let router = Router::new().route(
        "/upload",
        Resource::new().post(|ctx: RequestContext| async move {
            Response::with_payload(Code::CHANGED, ctx.request.payload.len().to_string())
        }),
    );
    let running = start(router).await;
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let seen = sizes.clone();
    let client = Client::builder()
        .trace(move |dir, _peer, bytes| {
            if dir == Direction::Sent {
                seen.lock().unwrap().push(bytes.len());
            }
        })
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    let response = tokio::time::timeout(LIMIT, client.post(&running.uri("/upload"), body))
        .await
        .expect("in time")
        .expect("response");
    assert_eq!(response.code, Code::CHANGED);
    assert_eq!(response.payload, b"10000");
    let sizes = sizes.lock().unwrap().clone();
    assert_eq!(sizes.len(), 10, "ten blocks of at most 1024 bytes");
    assert!(sizes.iter().all(|&n| n <= 1152));
    running.shutdown().await;
}
