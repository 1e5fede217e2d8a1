//! Group requests (RFC 7252 §8): three servers on one host join 224.0.1.187 on the
//! loopback interface; one request to the group gathers all their answers, each from
//! the server's own unicast address; error responses are not sent to group requests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use corium::multicast::{MulticastGroup, MulticastInterface, ALL_COAP_NODES_V4};
use corium::{Client, Code, EndpointConfig, RequestContext, Resource, Response, Router, Server};
use tokio::sync::oneshot;

mod common;
use common::LIMIT;

/// A port free for UDP on the group address (checked by binding it once).
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config() -> EndpointConfig {
    let mut config = EndpointConfig::default();
    // Answers to group requests are spread over DEFAULT_LEISURE (§8.2); a short one
    // keeps the test quick without changing what is checked.
    config.transmission.default_leisure = Duration::from_millis(200);
    config
}

async fn member(
    name: &'static str,
    port: u16,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let router = Router::new().route(
        "/who",
        Resource::new().get(move |_ctx: RequestContext| async move {
            Response::with_payload(Code::CONTENT, name)
        }),
    );
    let group = MulticastGroup::on(
        IpAddr::V4(ALL_COAP_NODES_V4),
        MulticastInterface::V4(Ipv4Addr::LOCALHOST),
    );
    let server = Server::builder()
        .config(config())
        .multicast(&[group], port)
        .bind(&["127.0.0.1:0".parse().unwrap()], router)
        .await
        .expect("bind and join");
    let addr = server.local_addrs()[0];
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

#[tokio::test]
async fn one_group_request_gathers_every_member() {
    let port = free_port();
    let mut members = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        members.push((name, member(name, port).await));
    }
    let client = Client::builder()
        .multicast_interface(Ipv4Addr::LOCALHOST)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let uri = format!("coap://{ALL_COAP_NODES_V4}:{port}/who");
    let responses = tokio::time::timeout(
        LIMIT,
        client
            .request(Code::GET, &uri)
            .multicast(Duration::from_secs(2)),
    )
    .await
    .expect("in time")
    .expect("sent");
    let mut got: Vec<(SocketAddr, String)> = responses
        .iter()
        .map(|(peer, r)| (*peer, r.payload_str().unwrap_or_default().to_owned()))
        .collect();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    let expected: Vec<(SocketAddr, String)> = members
        .iter()
        .map(|(name, (addr, _, _))| (*addr, (*name).to_owned()))
        .collect();
    assert_eq!(
        got, expected,
        "one answer per member, from its unicast address"
    );

    // §8.2: no error responses to a group request (4.04 here).
    let missing = format!("coap://{ALL_COAP_NODES_V4}:{port}/nothing-here");
    let none = client
        .request(Code::GET, &missing)
        .multicast(Duration::from_millis(800))
        .await
        .expect("sent");
    assert!(none.is_empty(), "{none:?}");

    for (_, (_, stop, task)) in members {
        let _ = stop.send(());
        tokio::time::timeout(LIMIT, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn unicast_addresses_are_not_group_requests() {
    let client = Client::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let err = client
        .request(Code::GET, "coap://127.0.0.1:5683/x")
        .multicast(Duration::from_millis(10))
        .await
        .unwrap_err();
    assert!(err.is_uri(), "{err}");
}

/// RFC 9175 §2.4 item 3, RFC 7252 §11.3: a member with the amplification limit answers
/// a group request within the budget (the first block of a large representation, with
/// an Echo value), and the client fetches the rest by unicast (RFC 7959 §2.8), echoing
/// the value, so it still gets the whole body.
#[tokio::test]
async fn group_responses_stay_within_the_amplification_limit() {
    let port = free_port();
    let body: Vec<u8> = (0..1500u32).map(|i| b'a' + (i % 26) as u8).collect();
    let served = body.clone();
    let router = Router::new().route(
        "/big",
        Resource::new().get(move |_ctx: RequestContext| {
            let served = served.clone();
            async move { Response::with_payload(Code::CONTENT, served) }
        }),
    );
    let group = MulticastGroup::on(
        IpAddr::V4(ALL_COAP_NODES_V4),
        MulticastInterface::V4(Ipv4Addr::LOCALHOST),
    );
    let server = Server::builder()
        .config(config())
        .amplification_limit(Some(corium::AmplificationLimit::default()))
        .multicast(&[group], port)
        .bind(&["127.0.0.1:0".parse().unwrap()], router)
        .await
        .expect("bind and join");
    let addr = server.local_addrs()[0];
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));

    // By hand: a NON GET /big to the group (4 + 1 token + 4 Uri-Path bytes).
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&sock)
        .set_multicast_if_v4(&Ipv4Addr::LOCALHOST)
        .unwrap();
    let sock = tokio::net::UdpSocket::from_std({
        sock.set_nonblocking(true).unwrap();
        sock
    })
    .unwrap();
    let request = [0x51, 0x01, 0x12, 0x34, 0x77, 0xb3, b'b', b'i', b'g'];
    sock.send_to(&request, (ALL_COAP_NODES_V4, port))
        .await
        .unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(LIMIT, sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(from, addr, "from the member's unicast address");
    let limit = corium::AmplificationLimit::default();
    let budget = limit.factor * (request.len() + 62) - 62;
    assert!(
        n <= budget,
        "{n} bytes for a {}-byte request",
        request.len()
    );
    let msg = corium::wire::Message::parse(&buf[..n]).unwrap();
    assert_eq!(msg.code(), Code::CONTENT);
    assert!(
        msg.option(corium::OptionNumber::ECHO).is_some(),
        "Echo value"
    );
    let block = msg
        .option(corium::OptionNumber::BLOCK2)
        .and_then(corium::wire::BlockValue::decode)
        .expect("Block2");
    assert!(block.num == 0 && block.more);

    // The client completes the body by unicast.
    let client = Client::builder()
        .multicast_interface(Ipv4Addr::LOCALHOST)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let uri = format!("coap://{ALL_COAP_NODES_V4}:{port}/big");
    let responses = tokio::time::timeout(
        LIMIT,
        client
            .request(Code::GET, &uri)
            .multicast(Duration::from_millis(800)),
    )
    .await
    .expect("in time")
    .expect("sent");
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(responses[0].0, addr);
    assert_eq!(responses[0].1.code, Code::CONTENT);
    assert_eq!(responses[0].1.payload, body, "whole body");

    let _ = stop.send(());
    tokio::time::timeout(LIMIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
