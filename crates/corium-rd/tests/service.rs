//! Loopback tests of the RD served by a corium `Server`, driven by the corium `Client`
//! (and, for simple registration, by a hand-written endpoint that serves
//! `/.well-known/core` from the socket it registers from).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corium::wire::{Message, MessageType, MessageWriter};
use corium::{Client, Code, ContentFormat, OptionNumber, Response, Router, Server};
use corium_rd::{
    LookupKind, LookupQuery, MemoryStore, RdConfig, RedbStore, RegistrationStore, ResourceDirectory,
};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound for anything to happen, so that a hang fails instead of blocking.
const LIMIT: Duration = Duration::from_secs(30);

struct Running {
    addr: SocketAddr,
    rd: ResourceDirectory,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
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

async fn start(config: RdConfig, store: Arc<dyn RegistrationStore>) -> Running {
    let rd = ResourceDirectory::open(config, store)
        .await
        .expect("open RD");
    let server = Server::builder()
        .bind(&["127.0.0.1:0".parse().unwrap()], rd.router())
        .await
        .expect("bind");
    let addr = server.local_addrs()[0];
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        rd,
        stop: Some(stop),
        task,
    }
}

async fn start_memory() -> Running {
    start(RdConfig::default(), Arc::new(MemoryStore::new())).await
}

async fn client() -> Client {
    Client::bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind client")
}

fn location(response: &Response) -> String {
    response
        .options
        .get_all(OptionNumber::LOCATION_PATH)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn text(response: &Response) -> &str {
    response.payload_str().expect("UTF-8 payload")
}

async fn get(c: &Client, uri: &str) -> Response {
    tokio::time::timeout(LIMIT, c.get(uri))
        .await
        .expect("in time")
        .expect("response")
}

async fn post(c: &Client, uri: &str, payload: &str) -> Response {
    tokio::time::timeout(
        LIMIT,
        c.request(Code::POST, uri)
            .payload(payload)
            .content_format(ContentFormat::LINK_FORMAT)
            .send(),
    )
    .await
    .expect("in time")
    .expect("response")
}

async fn delete(c: &Client, uri: &str) -> Response {
    tokio::time::timeout(LIMIT, c.delete(uri))
        .await
        .expect("in time")
        .expect("response")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "corium-rd-it-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// RFC 9176 §4.3 discovery, §5 registration, §6 lookup, §5.3 update and removal.
#[tokio::test]
async fn discovery_registration_lookup_update_removal() {
    let rd = start_memory().await;
    let c = client().await;
    let me = c.local_addr().unwrap();

    // Figure 5.
    let found = get(&c, &rd.uri("/.well-known/core?rt=core.rd*")).await;
    assert_eq!(found.code, Code::CONTENT);
    assert_eq!(
        text(&found),
        "</rd>;rt=\"core.rd\";ct=40,\
         </rd-lookup/ep>;rt=\"core.rd-lookup-ep\";ct=40;obs,\
         </rd-lookup/res>;rt=\"core.rd-lookup-res\";ct=40;obs"
    );
    assert_eq!(
        text(&get(&c, &rd.uri("/.well-known/core?rt=core.rd")).await),
        "</rd>;rt=\"core.rd\";ct=40"
    );
    assert_eq!(
        text(&get(&c, &rd.uri("/.well-known/core?rt=core.rd-lookup*")).await),
        "</rd-lookup/ep>;rt=\"core.rd-lookup-ep\";ct=40;obs,\
         </rd-lookup/res>;rt=\"core.rd-lookup-res\";ct=40;obs"
    );

    // Figure 8, without base: the requester's address is the base.
    let figure_8 = "</sensors/temp>;rt=temperature-c;if=sensor,\n\
                    <http://www.example.com/sensors/temp>;\n  anchor=\"/sensors/temp\";rel=describedby";
    let created = post(&c, &rd.uri("/rd?ep=node1&lt=300"), figure_8).await;
    assert_eq!(created.code, Code::CREATED);
    assert_eq!(location(&created), "rd/1");
    assert!(created.options.get(OptionNumber::LOCATION_QUERY).is_none());
    let base = format!("coap://{me}");
    let res = get(&c, &rd.uri("/rd-lookup/res?ep=node1")).await;
    assert_eq!(res.code, Code::CONTENT);
    assert_eq!(res.content_format(), Some(ContentFormat::LINK_FORMAT));
    assert_eq!(
        text(&res),
        format!(
            "<{base}/sensors/temp>;rt=temperature-c;if=sensor,\
             <http://www.example.com/sensors/temp>;anchor=\"{base}/sensors/temp\";rel=describedby"
        )
    );
    assert_eq!(
        text(&get(&c, &rd.uri("/rd-lookup/ep")).await),
        format!("</rd/1>;ep=node1;base=\"{base}\";rt=core.rd-ep")
    );
    // The registration resource reads back its links.
    assert_eq!(
        text(&get(&c, &rd.uri("/rd/1")).await),
        text(&get(&c, &rd.uri("/rd-lookup/res")).await)
    );

    // Registering again with the same ep: same location, links replaced.
    let again = post(&c, &rd.uri("/rd?ep=node1"), "</x>").await;
    assert_eq!(
        (again.code, location(&again)),
        (Code::CREATED, "rd/1".into())
    );
    assert_eq!(
        text(&get(&c, &rd.uri("/rd-lookup/res")).await),
        format!("<{base}/x>")
    );

    // Update (Figure 15) and removal (Figure 17).
    let changed = post(
        &c,
        &rd.uri("/rd/1?base=coaps://new.example.com&et=oven"),
        "",
    )
    .await;
    assert_eq!(changed.code, Code::CHANGED);
    assert_eq!(
        text(&get(&c, &rd.uri("/rd-lookup/res?et=oven")).await),
        "<coaps://new.example.com/x>"
    );
    assert_eq!(post(&c, &rd.uri("/rd/99"), "").await.code, Code::NOT_FOUND);
    assert_eq!(post(&c, &rd.uri("/rd/abc"), "").await.code, Code::NOT_FOUND);
    assert_eq!(delete(&c, &rd.uri("/rd/1")).await.code, Code::DELETED);
    assert_eq!(delete(&c, &rd.uri("/rd/1")).await.code, Code::NOT_FOUND);
    assert_eq!(post(&c, &rd.uri("/rd/1"), "").await.code, Code::NOT_FOUND);
    assert_eq!(text(&get(&c, &rd.uri("/rd-lookup/ep")).await), "");
    // New registrations never reuse a removed location.
    let next = post(&c, &rd.uri("/rd?ep=node2"), "").await;
    assert_eq!(location(&next), "rd/2");

    // Errors.
    let bad = post(&c, &rd.uri("/rd?lt=5"), "").await;
    assert_eq!(bad.code, Code::BAD_REQUEST);
    assert_eq!(text(&bad), "ep is required");
    let wrong_cf = tokio::time::timeout(
        LIMIT,
        c.request(Code::POST, &rd.uri("/rd?ep=z"))
            .payload("{}")
            .content_format(ContentFormat(50))
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(wrong_cf.code, Code::UNSUPPORTED_CONTENT_FORMAT);
    assert_eq!(
        post(&c, &rd.uri("/rd?ep=z"), "</a").await.code,
        Code::BAD_REQUEST
    );
    let not_acceptable = tokio::time::timeout(
        LIMIT,
        c.request(Code::GET, &rd.uri("/rd-lookup/res"))
            .accept(ContentFormat(50))
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(not_acceptable.code, Code::NOT_ACCEPTABLE);
    assert_eq!(
        get(&c, &rd.uri("/rd-lookup/res?page=1")).await.code,
        Code::BAD_REQUEST
    );
    rd.shutdown().await;
}

/// RFC 9176 §7.5: only the registering endpoint changes its registration.
#[tokio::test]
async fn only_the_registrant_changes_a_registration() {
    let rd = start_memory().await;
    let owner = client().await;
    let other = client().await;
    let created = post(&owner, &rd.uri("/rd?ep=mine"), "</a>").await;
    assert_eq!(location(&created), "rd/1");
    assert_eq!(
        post(&other, &rd.uri("/rd/1?lt=5"), "").await.code,
        Code::FORBIDDEN
    );
    assert_eq!(delete(&other, &rd.uri("/rd/1")).await.code, Code::FORBIDDEN);
    let squat = post(&other, &rd.uri("/rd?ep=mine"), "</evil>").await;
    assert_eq!(squat.code, Code::FORBIDDEN);
    // Another sector is another name.
    assert_eq!(
        post(&other, &rd.uri("/rd?ep=mine&d=elsewhere"), "</b>")
            .await
            .code,
        Code::CREATED
    );
    assert_eq!(
        post(&owner, &rd.uri("/rd/1?lt=5"), "").await.code,
        Code::CHANGED
    );
    assert_eq!(delete(&owner, &rd.uri("/rd/1")).await.code, Code::DELETED);
    rd.shutdown().await;
}

/// A hand-written endpoint (RFC 9176 §5.1): one UDP socket that sends the simple
/// registration and serves `/.well-known/core` to the RD. Returns the code of the
/// RD's answer and how many GETs of `/.well-known/core` the RD made.
async fn simple_register(
    sock: &UdpSocket,
    rd: SocketAddr,
    query: &[&str],
    payload: &[u8],
    well_known: &str,
    mid: u16,
) -> (Code, usize) {
    let (code, gets, _) =
        simple_register_echo(sock, rd, query, payload, well_known, mid, None).await;
    (code, gets)
}

/// [`simple_register`] with an Echo option (RFC 9175) in the request; also returns the
/// Echo value of the RD's answer.
async fn simple_register_echo(
    sock: &UdpSocket,
    rd: SocketAddr,
    query: &[&str],
    payload: &[u8],
    well_known: &str,
    mid: u16,
    echo: Option<&[u8]>,
) -> (Code, usize, Option<Vec<u8>>) {
    let token = mid.to_be_bytes();
    let mut buf = [0u8; 1500];
    let mut w =
        MessageWriter::new(&mut buf, MessageType::Confirmable, Code::POST, mid, &token).unwrap();
    w.option(OptionNumber::URI_PATH, b".well-known").unwrap();
    w.option(OptionNumber::URI_PATH, b"rd").unwrap();
    for q in query {
        w.option(OptionNumber::URI_QUERY, q.as_bytes()).unwrap();
    }
    if let Some(echo) = echo {
        w.option(OptionNumber::ECHO, echo).unwrap();
    }
    let n = if payload.is_empty() {
        w.finish()
    } else {
        w.payload(payload).unwrap()
    };
    sock.send_to(&buf[..n], rd).await.unwrap();
    let mut gets = 0;
    let deadline = Instant::now() + LIMIT;
    loop {
        let mut rx = [0u8; 1500];
        let (len, from) = tokio::time::timeout_at(deadline.into(), sock.recv_from(&mut rx))
            .await
            .expect("the RD answers in time")
            .unwrap();
        let msg = Message::parse(&rx[..len]).expect("well-formed message");
        if msg.code().is_request() {
            // The RD's GET of /.well-known/core (Figure 11).
            let path: Vec<&[u8]> = msg.option_values(OptionNumber::URI_PATH).collect();
            assert_eq!(path, [&b".well-known"[..], b"core"]);
            assert_eq!(msg.code(), Code::GET);
            assert_eq!(msg.option_uint(OptionNumber::ACCEPT), Some(40));
            gets += 1;
            let mut out = [0u8; 1500];
            let mut w = MessageWriter::new(
                &mut out,
                if msg.ty() == MessageType::Confirmable {
                    MessageType::Acknowledgement
                } else {
                    MessageType::NonConfirmable
                },
                Code::CONTENT,
                msg.message_id(),
                msg.token(),
            )
            .unwrap();
            w.option_uint(OptionNumber::CONTENT_FORMAT, 40).unwrap();
            let n = w.payload(well_known.as_bytes()).unwrap();
            sock.send_to(&out[..n], from).await.unwrap();
            continue;
        }
        if msg.ty() == MessageType::Acknowledgement && msg.code() == Code::EMPTY {
            continue; // A separate response follows.
        }
        if msg.token() == token {
            if msg.ty() == MessageType::Confirmable {
                let mut out = [0u8; 4];
                let n = MessageWriter::new(
                    &mut out,
                    MessageType::Acknowledgement,
                    Code::EMPTY,
                    msg.message_id(),
                    &[],
                )
                .unwrap()
                .finish();
                sock.send_to(&out[..n], from).await.unwrap();
            }
            let echo = msg.option(OptionNumber::ECHO).map(<[u8]>::to_vec);
            return (msg.code(), gets, echo);
        }
    }
}

/// RFC 9176 §5.1 and Appendix B.3: simple registration, with the RD fetching the
/// endpoint's `/.well-known/core` and caching it while fresh.
#[tokio::test]
async fn simple_registration() {
    let rd = start_memory().await;
    let ep = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ep_addr = ep.local_addr().unwrap();
    let figure_31 = "</sensors/temp>;rt=temperature;ct=0,</sensors/light>;rt=light-lux;ct=0,\
                     </t>;anchor=\"/sensors/temp\";rel=alternate,\
                     <http://www.example.com/sensors/t123>;anchor=\"/sensors/temp\";rel=describedby";
    let (code, gets) = simple_register(
        &ep,
        rd.addr,
        &["ep=simple-host1", "lt=6000"],
        b"",
        figure_31,
        0x100,
    )
    .await;
    assert_eq!((code, gets), (Code::CHANGED, 1));
    let c = client().await;
    let base = format!("coap://{ep_addr}");
    assert_eq!(
        text(&get(&c, &rd.uri("/rd-lookup/res?rt=temperature")).await),
        format!("<{base}/sensors/temp>;rt=temperature;ct=0")
    );
    assert_eq!(
        text(&get(&c, &rd.uri("/rd-lookup/res?ep=simple-host1")).await),
        format!(
            "<{base}/sensors/temp>;rt=temperature;ct=0,<{base}/sensors/light>;rt=light-lux;ct=0,\
             <{base}/t>;anchor=\"{base}/sensors/temp\";rel=alternate,\
             <http://www.example.com/sensors/t123>;anchor=\"{base}/sensors/temp\";rel=describedby"
        )
    );
    rd.rd.with_state(|s| {
        let r = s.find(None, "simple-host1").unwrap();
        assert!(r.is_simple());
        assert_eq!(r.lifetime(), 6000);
    });
    // Refreshing within the document's Max-Age (60 s by default) uses the cache.
    let (code, gets) =
        simple_register(&ep, rd.addr, &["ep=simple-host1"], b"", "</other>", 0x101).await;
    assert_eq!((code, gets), (Code::CHANGED, 0));
    assert_eq!(rd.rd.registration_count(), 1);

    // `base` is not accepted, nor a payload; another endpoint cannot take the name.
    let (code, gets) =
        simple_register(&ep, rd.addr, &["ep=x", "base=coap://h"], b"", "", 0x102).await;
    assert_eq!((code, gets), (Code::BAD_REQUEST, 0));
    let (code, _) = simple_register(&ep, rd.addr, &["ep=x"], b"</a>", "", 0x103).await;
    assert_eq!(code, Code::BAD_REQUEST);
    let squatter = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (code, gets) = simple_register(
        &squatter,
        rd.addr,
        &["ep=simple-host1"],
        b"",
        "</evil>",
        0x104,
    )
    .await;
    assert_eq!((code, gets), (Code::FORBIDDEN, 0));

    // An endpoint that does not serve /.well-known/core (a client-only corium socket
    // answers 4.04): the RD reports a bad gateway and registers nothing.
    let failed = tokio::time::timeout(LIMIT, c.post(&rd.uri("/.well-known/rd?ep=client"), ""))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.code, Code::BAD_GATEWAY);
    assert!(rd.rd.with_state(|s| s.find(None, "client").is_none()));
    rd.shutdown().await;
}

async fn next(obs: &mut corium::Observation) -> Response {
    tokio::time::timeout(LIMIT, obs.next())
        .await
        .expect("a notification in time")
        .expect("still observing")
        .expect("no error")
}

/// RFC 9176 §6.2 with RFC 7641: observers are notified when the matching set changes,
/// including by expiry, and not for unrelated changes.
#[tokio::test]
async fn lookups_are_observable() {
    let rd = start_memory().await;
    let c = client().await;
    let registrant = client().await;
    let base = format!("coap://{}", registrant.local_addr().unwrap());
    let mut obs = tokio::time::timeout(LIMIT, c.observe(&rd.uri("/rd-lookup/res?rt=temp*")))
        .await
        .unwrap()
        .unwrap();
    let first = next(&mut obs).await;
    assert_eq!(first.code, Code::CONTENT);
    assert!(first.options.get(OptionNumber::OBSERVE).is_some());
    assert_eq!(text(&first), "");

    post(&registrant, &rd.uri("/rd?ep=a"), "</t1>;rt=temperature").await;
    assert_eq!(
        text(&next(&mut obs).await),
        format!("<{base}/t1>;rt=temperature")
    );
    // Not matching: no notification. The next one must already show the third
    // registration, not repeat the last payload.
    post(&registrant, &rd.uri("/rd?ep=b"), "</l>;rt=light").await;
    post(
        &registrant,
        &rd.uri("/rd?ep=c&lt=1"),
        "</t2>;rt=temperature",
    )
    .await;
    assert_eq!(
        text(&next(&mut obs).await),
        format!("<{base}/t1>;rt=temperature,<{base}/t2>;rt=temperature")
    );
    // ep=c expires after a second: its link leaves the result.
    assert_eq!(
        text(&next(&mut obs).await),
        format!("<{base}/t1>;rt=temperature")
    );
    // Removal.
    delete(&registrant, &rd.uri("/rd/1")).await;
    assert_eq!(text(&next(&mut obs).await), "");
    drop(obs);
    rd.shutdown().await;
}

/// Registrations survive a restart on the same redb file, with their remaining
/// lifetime; removed ids are not reused.
#[tokio::test]
async fn registrations_persist_across_restarts() {
    let dir = temp_dir("persist");
    let c = client().await;
    {
        let store = Arc::new(RedbStore::open_dir(&dir).unwrap());
        let rd = start(RdConfig::default(), store).await;
        for (i, ep) in ["a", "b", "c"].iter().enumerate() {
            let r = post(
                &c,
                &rd.uri(&format!("/rd?ep={ep}&lt=100&et=t{i}")),
                "</x>;rt=y",
            )
            .await;
            assert_eq!(r.code, Code::CREATED);
        }
        assert_eq!(delete(&c, &rd.uri("/rd/3")).await.code, Code::DELETED);
        assert_eq!(
            post(&c, &rd.uri("/rd/2?base=coap://b.example"), "")
                .await
                .code,
            Code::CHANGED
        );
        rd.shutdown().await;
    }
    let store = Arc::new(RedbStore::open_dir(&dir).unwrap());
    let rd = start(RdConfig::default(), store).await;
    let me = c.local_addr().unwrap();
    assert_eq!(
        text(&get(&c, &rd.uri("/rd-lookup/ep")).await),
        format!(
            "</rd/1>;ep=a;et=t0;base=\"coap://{me}\";rt=core.rd-ep,\
             </rd/2>;ep=b;et=t1;base=\"coap://b.example\";rt=core.rd-ep"
        )
    );
    rd.rd.with_state(|s| {
        let left = s.get(1).unwrap().expires() - Instant::now();
        assert!(
            left <= Duration::from_secs(101) && left > Duration::from_secs(60),
            "{left:?}"
        );
    });
    // The owner is remembered: the same client may update, removal works.
    assert_eq!(post(&c, &rd.uri("/rd/1"), "").await.code, Code::CHANGED);
    assert_eq!(location(&post(&c, &rd.uri("/rd?ep=d"), "").await), "rd/4");
    rd.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A change the store could not make durable is not acknowledged (5.00) and not
/// visible.
#[tokio::test]
async fn failed_commits_are_not_acknowledged() {
    let store = Arc::new(MemoryStore::new());
    let rd = start(RdConfig::default(), store.clone()).await;
    let c = client().await;
    store.fail_commits(true);
    let r = post(&c, &rd.uri("/rd?ep=a"), "</x>").await;
    assert_eq!(r.code, Code::INTERNAL_SERVER_ERROR);
    assert_eq!(text(&get(&c, &rd.uri("/rd-lookup/res")).await), "");
    store.fail_commits(false);
    assert_eq!(
        post(&c, &rd.uri("/rd?ep=a"), "</x>").await.code,
        Code::CREATED
    );
    store.fail_commits(true);
    assert_eq!(
        delete(&c, &rd.uri("/rd/1")).await.code,
        Code::INTERNAL_SERVER_ERROR
    );
    assert_eq!(store.snapshot().len(), 1);
    assert_eq!(rd.rd.registration_count(), 1);
    rd.shutdown().await;
}

/// Payloads larger than a block go up in Block1, results larger than a block come back
/// in Block2 (RFC 7959); the configured limits answer 4.13 and 4.00.
#[tokio::test]
async fn large_payloads_and_limits() {
    let config = RdConfig {
        max_payload: 8 * 1024,
        max_lookup_links: 150,
        ..RdConfig::default()
    };
    let rd = start(config, Arc::new(MemoryStore::new())).await;
    let c = client().await;
    let links: Vec<String> = (0..100)
        .map(|i| format!("</sensor/{i}>;rt=\"t{i}\""))
        .collect();
    let payload = links.join(",");
    assert!(payload.len() > 2048);
    let r = post(&c, &rd.uri("/rd?ep=big&base=coap://big.example"), &payload).await;
    assert_eq!(r.code, Code::CREATED);
    let all = get(&c, &rd.uri("/rd-lookup/res")).await;
    assert_eq!(all.code, Code::CONTENT);
    assert_eq!(
        text(&all).matches("coap://big.example/sensor/").count(),
        100
    );
    assert_eq!(
        text(&get(&c, &rd.uri("/rd-lookup/res?rt=t42")).await),
        "<coap://big.example/sensor/42>;rt=\"t42\""
    );
    let too_big = post(&c, &rd.uri("/rd?ep=huge"), &"</x>,".repeat(2000)).await;
    assert_eq!(too_big.code, Code::REQUEST_ENTITY_TOO_LARGE);
    assert_eq!(
        too_big.options.get_uint(OptionNumber::SIZE1),
        Some(8 * 1024)
    );
    post(&c, &rd.uri("/rd?ep=big2"), &payload).await;
    let refused = get(&c, &rd.uri("/rd-lookup/res")).await;
    assert_eq!(refused.code, Code::BAD_REQUEST);
    assert!(
        text(&refused).contains("page and count"),
        "{}",
        text(&refused)
    );
    let page = get(&c, &rd.uri("/rd-lookup/res?count=150&page=1")).await;
    assert_eq!(text(&page).split(",<").count(), 50);
    // The library lookup is the same as the lookup interface.
    let q = LookupQuery::from_query([&b"rt=t7"[..]]).unwrap();
    assert_eq!(
        rd.rd.lookup(LookupKind::Resource, &q, None).unwrap(),
        format!(
            "<coap://big.example/sensor/7>;rt=\"t7\",<coap://{}/sensor/7>;rt=\"t7\"",
            c.local_addr().unwrap()
        )
    );
    rd.shutdown().await;
}

/// The RD's routes can join an application's router.
#[tokio::test]
async fn routes_join_an_application_router() {
    let rd = ResourceDirectory::in_memory(RdConfig::default())
        .await
        .unwrap();
    let router = rd.routes(
        Router::new().route(
            "/hello",
            corium::Resource::new()
                .get(|_ctx: corium::RequestContext| async {
                    Response::with_payload(Code::CONTENT, "hi")
                })
                .rt("greeting"),
        ),
    );
    let server = Server::builder()
        .bind(&["127.0.0.1:0".parse().unwrap()], router)
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let task = tokio::spawn(server.run_until(std::future::pending()));
    let c = client().await;
    let wk = get(&c, &format!("coap://{addr}/.well-known/core")).await;
    assert!(
        text(&wk).starts_with("</hello>;rt=\"greeting\",</rd>"),
        "{}",
        text(&wk)
    );
    task.abort();
}

/// RFC 9176 §5.1 with `verify_simple_registrants`: the RD verifies the registrant's
/// address with an Echo round trip (RFC 9175 §2.4) before it sends anything there; the
/// POST repeated with the value registers.
#[tokio::test]
async fn simple_registration_verifies_the_address_first() {
    let config = RdConfig {
        verify_simple_registrants: true,
        ..RdConfig::default()
    };
    let rd = start(config, Arc::new(MemoryStore::new())).await;
    let ep = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (code, gets, echo) =
        simple_register_echo(&ep, rd.addr, &["ep=checked"], b"", "</x>", 0x200, None).await;
    assert_eq!(
        (code, gets),
        (Code::UNAUTHORIZED, 0),
        "nothing sent to the address"
    );
    let echo = echo.expect("an Echo value in the 4.01");
    assert_eq!(rd.rd.registration_count(), 0);
    let (code, gets, _) = simple_register_echo(
        &ep,
        rd.addr,
        &["ep=checked"],
        b"",
        "</x>",
        0x201,
        Some(&echo),
    )
    .await;
    assert_eq!((code, gets), (Code::CHANGED, 1));
    assert_eq!(rd.rd.registration_count(), 1);
    // A value made for another address does not verify this one.
    let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (code, gets, _) = simple_register_echo(
        &other,
        rd.addr,
        &["ep=other"],
        b"",
        "</y>",
        0x202,
        Some(&echo),
    )
    .await;
    assert_eq!((code, gets), (Code::UNAUTHORIZED, 0));
    rd.shutdown().await;
}

/// A store that counts commits and makes each one slow (like an fsync), and can fail.
#[derive(Default)]
struct SlowStore {
    inner: MemoryStore,
    commits: std::sync::atomic::AtomicUsize,
}

impl RegistrationStore for SlowStore {
    fn load(&self) -> corium_rd::StoreFuture<'_, corium_rd::Loaded> {
        self.inner.load()
    }

    fn commit(&self, ops: Vec<corium_rd::StoreOp>) -> corium_rd::StoreFuture<'_, ()> {
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.inner.commit(ops).await
        })
    }
}

/// Group commit: registrations arriving while a commit runs are committed together,
/// every one is durable when acknowledged, and a failed group commit rolls back all of
/// its changes (and those planned on top of them).
#[tokio::test]
async fn concurrent_changes_share_commits() {
    let store = Arc::new(SlowStore::default());
    let rd = ResourceDirectory::open(RdConfig::default(), store.clone())
        .await
        .unwrap();
    let register = |i: usize| {
        let rd = rd.clone();
        let store = store.clone();
        tokio::spawn(async move {
            let params = corium_rd::RegistrationParams::from_query(
                [format!("ep=n{i}").into_bytes()].iter().map(Vec::as_slice),
                8,
            )
            .unwrap();
            let who = corium_rd::Requester::new(
                SocketAddr::from(([192, 0, 2, 1], 5000 + i as u16)),
                corium_rd::AccessPolicy::SameEndpoint,
            );
            let result = rd.register(&params, "</t>;rt=x", &who).await;
            // Acknowledged means stored.
            if let Ok(id) = result {
                assert!(store.inner.snapshot().iter().any(|r| r.id == id));
            }
            result
        })
    };
    let tasks: Vec<_> = (0..50).map(register).collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let commits = store.commits.load(std::sync::atomic::Ordering::SeqCst);
    assert!(commits < 50, "{commits} commits for 50 registrations");
    assert_eq!(store.inner.snapshot().len(), 50);
    assert_eq!(rd.registration_count(), 50);

    store.inner.fail_commits(true);
    let tasks: Vec<_> = (50..70).map(register).collect();
    for t in tasks {
        assert!(t.await.unwrap().is_err());
    }
    assert_eq!(rd.registration_count(), 50);
    let q = LookupQuery::default();
    let found = rd.lookup(LookupKind::Endpoint, &q, None).unwrap();
    assert_eq!(found.matches("core.rd-ep").count(), 50);
    store.inner.fail_commits(false);
    let id = register(70).await.unwrap().unwrap();
    assert_eq!(id, 51, "rolled-back ids are given out again");
    assert_eq!(store.inner.snapshot().len(), 51);
}

/// RFC 9176 §5.3.4 with `fresh_updates`: an update or removal without a fresh Echo
/// value is answered 4.01 with one (Figure 18) and changes nothing; repeated with the
/// value it runs. Registration and lookups are not affected.
#[tokio::test]
async fn updates_require_freshness_when_configured() {
    let config = RdConfig {
        fresh_updates: Some(Duration::from_secs(60)),
        ..RdConfig::default()
    };
    let rd = start(config, Arc::new(MemoryStore::new())).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let send = |mid: u16, code: Code, path: &[&str], query: &[&str], echo: Option<Vec<u8>>| {
        let token = mid.to_be_bytes();
        let mut buf = [0u8; 1500];
        let mut w =
            MessageWriter::new(&mut buf, MessageType::Confirmable, code, mid, &token).unwrap();
        for p in path {
            w.option(OptionNumber::URI_PATH, p.as_bytes()).unwrap();
        }
        for q in query {
            w.option(OptionNumber::URI_QUERY, q.as_bytes()).unwrap();
        }
        if let Some(e) = &echo {
            w.option(OptionNumber::ECHO, e).unwrap();
        }
        let n = w.finish();
        buf[..n].to_vec()
    };
    let exchange = |bytes: Vec<u8>| {
        let sock = &sock;
        async move {
            sock.send_to(&bytes, rd.addr).await.unwrap();
            let mut rx = [0u8; 1500];
            let len = tokio::time::timeout(LIMIT, sock.recv(&mut rx))
                .await
                .expect("answer")
                .unwrap();
            let msg = Message::parse(&rx[..len]).expect("well-formed message");
            (
                msg.code(),
                msg.option(OptionNumber::ECHO).map(<[u8]>::to_vec),
            )
        }
    };
    let (code, _) = exchange(send(1, Code::POST, &["rd"], &["ep=fresh"], None)).await;
    assert_eq!(code, Code::CREATED, "registration needs no Echo");
    let (code, echo) = exchange(send(2, Code::POST, &["rd", "1"], &["lt=7200"], None)).await;
    assert_eq!(code, Code::UNAUTHORIZED);
    let echo = echo.expect("an Echo value in the 4.01");
    assert_eq!(rd.rd.with_state(|s| s.get(1).unwrap().lifetime()), 90_000);
    let (code, _) = exchange(send(
        3,
        Code::POST,
        &["rd", "1"],
        &["lt=7200"],
        Some(echo.clone()),
    ))
    .await;
    assert_eq!(code, Code::CHANGED);
    assert_eq!(rd.rd.with_state(|s| s.get(1).unwrap().lifetime()), 7200);
    let (code, _) = exchange(send(4, Code::DELETE, &["rd", "1"], &[], None)).await;
    assert_eq!(code, Code::UNAUTHORIZED);
    let (code, _) = exchange(send(5, Code::DELETE, &["rd", "1"], &[], Some(echo))).await;
    assert_eq!(code, Code::DELETED);
    assert_eq!(rd.rd.registration_count(), 0);
    rd.shutdown().await;
}

/// The JSON and CBOR link formats (draft-ietf-core-links-json): registrations in
/// either, lookups answered in the format the Accept option asks for, and other
/// formats refused with 4.15 / 4.06.
#[tokio::test]
async fn json_and_cbor_link_formats() {
    let rd = start_memory().await;
    let c = client().await;
    let send = |code: Code, uri: String, cf: Option<u16>, accept: Option<u16>, body: Vec<u8>| {
        let mut req = c.request(code, &uri).payload(body);
        if let Some(cf) = cf {
            req = req.content_format(ContentFormat(cf));
        }
        if let Some(a) = accept {
            req = req.accept(ContentFormat(a));
        }
        async move {
            tokio::time::timeout(LIMIT, req.send())
                .await
                .expect("in time")
                .expect("response")
        }
    };
    let json = br#"[{"href":"/t","rt":"temperature","obs":true},{"href":"/h","rt":["a","b"]}]"#;
    let r = send(
        Code::POST,
        rd.uri("/rd?ep=j&base=coap://h"),
        Some(504),
        None,
        json.to_vec(),
    )
    .await;
    assert_eq!(r.code, Code::CREATED);
    // [{1: "/x", 9: "cold"}]
    let cbor = b"\x81\xa2\x01\x62/x\x09\x64cold".to_vec();
    let r = send(
        Code::POST,
        rd.uri("/rd?ep=c&base=coap://c"),
        Some(64),
        None,
        cbor,
    )
    .await;
    assert_eq!(r.code, Code::CREATED);
    let r = get(&c, &rd.uri("/rd-lookup/res")).await;
    assert_eq!(
        text(&r),
        "<coap://h/t>;rt=temperature;obs,<coap://h/h>;rt=a;rt=b,<coap://c/x>;rt=cold"
    );
    let r = send(
        Code::GET,
        rd.uri("/rd-lookup/res?rt=temperature"),
        None,
        Some(504),
        Vec::new(),
    )
    .await;
    assert_eq!(r.content_format(), Some(ContentFormat(504)));
    assert_eq!(
        text(&r),
        r#"[{"href":"coap://h/t","rt":"temperature","obs":true}]"#
    );
    let r = send(
        Code::GET,
        rd.uri("/rd-lookup/res?rt=cold"),
        None,
        Some(64),
        Vec::new(),
    )
    .await;
    assert_eq!(r.content_format(), Some(ContentFormat(64)));
    let expected = b"\x81\xa2\x01\x6acoap://c/x\x09\x64cold".to_vec();
    assert_eq!(r.payload, expected);
    let r = send(
        Code::GET,
        rd.uri("/rd-lookup/res"),
        None,
        Some(50),
        Vec::new(),
    )
    .await;
    assert_eq!(r.code, Code::NOT_ACCEPTABLE);
    let r = send(
        Code::POST,
        rd.uri("/rd?ep=x"),
        Some(50),
        None,
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(r.code, Code::UNSUPPORTED_CONTENT_FORMAT);
    let r = send(
        Code::POST,
        rd.uri("/rd?ep=x"),
        Some(504),
        None,
        b"[{}]".to_vec(),
    )
    .await;
    assert_eq!(r.code, Code::BAD_REQUEST);
    rd.shutdown().await;
}

/// RFC 9176 §7.5 with OSCORE (RFC 8613): a registration made under a security context is
/// bound to that context, not to the address. The same context from another address
/// (its sequence numbers continued) may update it; another context, or a plain request
/// from the registrant's own address, may not.
#[tokio::test]
async fn oscore_registrations_are_bound_to_the_security_context() {
    use corium::corium_oscore::{SecurityContext, SecurityContextSet};
    use corium::{OscoreClient, OscoreServer};
    const SECRET: [u8; 16] = *b"rd-oscore-secret";
    const RD_ID: &[u8] = &[0x01];
    let context = |sender: &[u8], recipient: &[u8]| {
        SecurityContext::builder(&SECRET, sender, recipient)
            .build()
            .expect("context")
    };
    let mut set = SecurityContextSet::new(4);
    for client_id in [&[0xa1][..], &[0xb2][..]] {
        set.insert(context(RD_ID, client_id)).expect("insert");
    }
    let rd = ResourceDirectory::open(RdConfig::default(), Arc::new(MemoryStore::new()))
        .await
        .expect("open RD");
    let server = Server::builder()
        .oscore(OscoreServer::new(set))
        .bind(&["127.0.0.1:0".parse().unwrap()], rd.router())
        .await
        .expect("bind");
    let addr = server.local_addrs()[0];
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let running = Running {
        addr,
        rd,
        stop: Some(stop),
        task,
    };
    let pattern = running.uri("/rd*");
    let protected = |ctx: SecurityContext| {
        let pattern = pattern.clone();
        async move {
            Client::builder()
                .oscore(OscoreClient::new().context(&pattern, ctx))
                .bind("127.0.0.1:0".parse().unwrap())
                .await
                .expect("bind client")
        }
    };

    let owner = protected(context(&[0xa1], RD_ID)).await;
    let created = post(&owner, &running.uri("/rd?ep=sensor"), "</t>").await;
    assert_eq!(created.code, Code::CREATED);
    let reg = format!("/{}", location(&created));

    // Another context: refused, and a plain request from another socket too.
    let other = protected(context(&[0xb2], RD_ID)).await;
    assert_eq!(
        post(&other, &running.uri(&reg), "").await.code,
        Code::FORBIDDEN
    );
    let plain = client().await;
    assert_eq!(
        post(&plain, &running.uri(&reg), "").await.code,
        Code::FORBIDDEN
    );
    assert_eq!(
        delete(&plain, &running.uri(&reg)).await.code,
        Code::FORBIDDEN
    );

    // The owner's context from a new address (a restarted device, a NAT rebinding).
    let moved_ctx = SecurityContext::builder(&SECRET, &[0xa1], RD_ID)
        .sender_sequence_number(1_000)
        .build()
        .expect("context");
    let moved = protected(moved_ctx).await;
    assert_ne!(moved.local_addr().unwrap(), owner.local_addr().unwrap());
    assert_eq!(
        post(&moved, &running.uri(&reg), "").await.code,
        Code::CHANGED
    );
    assert_eq!(delete(&moved, &running.uri(&reg)).await.code, Code::DELETED);
    running.shutdown().await;
}
