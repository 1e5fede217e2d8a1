//! Amplification mitigation (RFC 9175 §2.4 item 3, §2.6), driven through the Pair
//! harness: what an unverified address gets, the Echo round trip that verifies it, and
//! the limits of the verified-address table.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use corium_wire::{BlockValue, Code, Message, MessageType, OptionNumber};

use super::pair::{Addr, Pair, CLIENT, SERVER};
use crate::{
    AmplificationLimit, EndpointConfig, Event, IncomingRequest, Request, RequestOptions, Response,
};

fn limited() -> EndpointConfig {
    EndpointConfig {
        amplification_limit: Some(AmplificationLimit::default()),
        ..EndpointConfig::default()
    }
}

fn pair_with(body_len: usize) -> Pair {
    let mut pair = Pair::new(11, EndpointConfig::default(), limited());
    pair.responder = Box::new(move |_: &IncomingRequest<Addr>| {
        Some((
            Duration::ZERO,
            Response::with_payload(Code::CONTENT, vec![b'x'; body_len]),
        ))
    });
    pair
}

fn get(path: &str) -> Request {
    let mut r = Request::new(Code::GET);
    r.set_path(path);
    r
}

fn parse(bytes: &[u8]) -> Message<'_> {
    Message::parse(bytes).expect("valid message")
}

fn response_to(pair: &Pair, id: crate::RequestId) -> Response {
    match pair.outcome(id) {
        Some(Event::Response { response, .. }) => response.clone(),
        other => panic!("no response: {other:?}"),
    }
}

/// A response within three times the request (lower layers counted, RFC 9175 §2.4)
/// goes out as it is, verified or not.
#[test]
fn small_response_to_unverified_address_is_sent() {
    let mut pair = pair_with(60);
    let id = pair.send(get("/small"), RequestOptions::default());
    pair.run_for(Duration::from_secs(1));
    let response = response_to(&pair, id);
    assert_eq!(response.code, Code::CONTENT);
    assert_eq!(response.payload.len(), 60);
    assert!(response.options.get(OptionNumber::ECHO).is_none());
}

fn block2(response: &Response) -> BlockValue {
    response
        .options
        .get(OptionNumber::BLOCK2)
        .and_then(BlockValue::decode)
        .expect("Block2")
}

fn block_request(method: Code, num: u32, szx: u8, echo: Option<Vec<u8>>) -> Request {
    let mut r = Request::new(method);
    r.set_path("/big");
    let mut buf = [0u8; 4];
    let b = BlockValue::new(num, false, szx).expect("block");
    r.options
        .set(OptionNumber::BLOCK2, b.encode(&mut buf).to_vec());
    if let Some(echo) = echo {
        r.options.set(OptionNumber::ECHO, echo);
    }
    r
}

/// A large response to an unverified address goes out in blocks that fit three times
/// the request (RFC 9175 §2.4 item 3, RFC 7959 §2.4), the first with an Echo value; the
/// next request echoing it verifies the address, and responses are whole from then on.
#[test]
fn large_response_comes_in_small_blocks_until_the_address_is_verified() {
    let mut pair = pair_with(800);
    let first = pair.send(get("/big"), RequestOptions::default());
    pair.run_for(Duration::from_secs(1));
    let block0 = response_to(&pair, first);
    assert_eq!(block0.code, Code::CONTENT);
    let b0 = block2(&block0);
    assert_eq!((b0.num, b0.more), (0, true));
    assert!(b0.szx < 6, "smaller than the default 1024-byte block");
    assert_eq!(block0.payload.len(), 16 << b0.szx);
    let echo = block0
        .options
        .get(OptionNumber::ECHO)
        .expect("a preemptive Echo")
        .to_vec();
    assert!((1..=40).contains(&echo.len()), "RFC 9175 §2.2.1 length");
    let request_len = pair.sent_by(CLIENT)[0].1.len();
    let sent = pair.sent_by(SERVER);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].1.len() <= 3 * (request_len + 62) - 62);
    assert_eq!(parse(&sent[0].1).ty(), MessageType::Acknowledgement);

    let next = pair.send(
        block_request(Code::GET, 1, b0.szx, Some(echo)),
        RequestOptions::default(),
    );
    pair.run_for(Duration::from_secs(1));
    let block1 = response_to(&pair, next);
    assert_eq!(block2(&block1).num, 1);
    assert!(!pair.server.address_unverified(pair.now, &CLIENT));

    let again = pair.send(get("/big"), RequestOptions::default());
    pair.run_for(Duration::from_secs(1));
    let whole = response_to(&pair, again);
    assert_eq!(whole.payload.len(), 800);
    assert!(whole.options.get(OptionNumber::ECHO).is_none());
}

/// A large response that cannot be cut (the application did its own block-wise
/// transfer) to a safe request becomes a short, piggybacked 4.01 with Echo (RFC 9175
/// §2.4 item 3); the request repeated with the value gets the response.
#[test]
fn uncuttable_large_response_is_replaced_by_an_echo_challenge() {
    let mut pair = Pair::new(14, EndpointConfig::default(), limited());
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| {
        let mut r = Response::with_payload(Code::CONTENT, vec![b'y'; 512]);
        let mut buf = [0u8; 4];
        let b = BlockValue::new(0, true, 5).expect("block");
        r.options
            .set(OptionNumber::BLOCK2, b.encode(&mut buf).to_vec());
        Some((Duration::ZERO, r))
    });
    let first = pair.send(get("/own-blocks"), RequestOptions::default());
    pair.run_for(Duration::from_secs(1));
    let challenge = response_to(&pair, first);
    assert_eq!(challenge.code, Code::UNAUTHORIZED);
    assert!(challenge.payload.is_empty());
    let echo = challenge
        .options
        .get(OptionNumber::ECHO)
        .expect("Echo in the 4.01")
        .to_vec();
    let mut again = get("/own-blocks");
    again.options.set(OptionNumber::ECHO, echo);
    let second = pair.send(again, RequestOptions::default());
    pair.run_for(Duration::from_secs(1));
    assert_eq!(response_to(&pair, second).payload.len(), 512);
    assert_eq!(pair.server_requests.len(), 2);
}

/// An Echo value is bound to the address it was made for, and to its time.
#[test]
fn echo_value_of_another_address_or_expired_does_not_verify() {
    let mut pair = pair_with(800);
    let first = pair.send(get("/big"), RequestOptions::default());
    pair.run_for(Duration::from_secs(1));
    let echo = response_to(&pair, first)
        .options
        .get(OptionNumber::ECHO)
        .expect("Echo")
        .to_vec();

    // The same value from another address: limited still (a small first block).
    let mut request = vec![0x40, 0x01, 0x12, 0x34];
    request.push(0xb3);
    request.extend_from_slice(b"big");
    // Echo (252): delta 241 and length 13, both in one extended byte (RFC 7252 §3.1).
    assert_eq!(echo.len(), 13);
    request.extend_from_slice(&[0xdd, 241 - 13, 0]);
    request.extend_from_slice(&echo);
    pair.inject(7, SERVER, &request);
    let to_other: Vec<_> = pair
        .wire
        .iter()
        .filter(|(_, from, to, _)| *from == SERVER && *to == 7)
        .collect();
    assert_eq!(to_other.len(), 1);
    let other = parse(&to_other[0].3);
    assert!(other.option(OptionNumber::BLOCK2).is_some());
    assert!(to_other[0].3.len() <= 3 * (request.len() + 62) - 62);
    assert!(pair.server.address_unverified(pair.now, &7));

    // The right address, but after the value's lifetime: still unverified.
    pair.run_for(Duration::from_secs(120));
    let mut late = get("/big");
    late.options.set(OptionNumber::ECHO, echo);
    let id = pair.send(late, RequestOptions::default());
    pair.run_for(Duration::from_secs(1));
    assert!(response_to(&pair, id)
        .options
        .get(OptionNumber::BLOCK2)
        .is_some());
    assert!(pair.server.address_unverified(pair.now, &CLIENT));
}

/// An unsafe request has taken effect when its response turns out too large: the
/// response is delivered in blocks that fit the limit, the first with an Echo value;
/// the follow-up that echoes it verifies the address (RFC 9175 §2.3, RFC 7959 §2.4).
#[test]
fn large_response_to_unsafe_request_comes_in_small_blocks() {
    let mut pair = pair_with(600);
    let mut post = Request::new(Code::POST);
    post.set_path("/create");
    post.payload = b"go".to_vec();
    let id = pair.send(post, RequestOptions::default());
    pair.run_for(Duration::from_secs(1));
    let first = response_to(&pair, id);
    assert_eq!(first.code, Code::CONTENT);
    let block = first
        .options
        .get(OptionNumber::BLOCK2)
        .and_then(BlockValue::decode)
        .expect("Block2");
    assert_eq!(block.num, 0);
    assert!(block.more);
    assert!(block.szx < 6, "a smaller block than the default 1024");
    let request_len = pair.sent_by(CLIENT)[0].1.len();
    let sent = pair.sent_by(SERVER);
    assert!(sent[0].1.len() <= 3 * (request_len + 62) - 62);
    let echo = first
        .options
        .get(OptionNumber::ECHO)
        .expect("a preemptive Echo")
        .to_vec();
    assert_eq!(pair.server_requests.len(), 1);

    // The next block, echoing the value: served from the kept response, whole-sized
    // blocks are allowed from now on.
    let mut next = Request::new(Code::POST);
    next.set_path("/create");
    let mut buf = [0u8; 4];
    let b1 = BlockValue::new(1, false, block.szx).expect("block");
    next.options
        .set(OptionNumber::BLOCK2, b1.encode(&mut buf).to_vec());
    next.options.set(OptionNumber::ECHO, echo);
    let id = pair.send(next, RequestOptions::default());
    pair.run_for(Duration::from_secs(1));
    let second = response_to(&pair, id);
    assert_eq!(second.code, Code::CONTENT);
    assert_eq!(second.payload.len(), 16 << block.szx);
    assert_eq!(pair.server_requests.len(), 1, "the POST ran once");
    assert!(!pair.server.address_unverified(pair.now, &CLIENT));
}

/// The limit is off by default, and a layer above can vouch for an address.
#[test]
fn off_by_default_and_confirm_address_lifts_it() {
    let mut plain = Pair::new(12, EndpointConfig::default(), EndpointConfig::default());
    plain.responder = Box::new(|_: &IncomingRequest<Addr>| {
        Some((
            Duration::ZERO,
            Response::with_payload(Code::CONTENT, vec![0; 900]),
        ))
    });
    let id = plain.send(get("/big"), RequestOptions::default());
    plain.run_for(Duration::from_secs(1));
    assert_eq!(response_to(&plain, id).payload.len(), 900);

    let mut pair = pair_with(900);
    assert!(pair.server.address_unverified(pair.now, &CLIENT));
    let now = pair.now;
    pair.server.confirm_address(now, &CLIENT);
    let id = pair.send(get("/big"), RequestOptions::default());
    pair.run_for(Duration::from_secs(1));
    assert_eq!(response_to(&pair, id).payload.len(), 900);
}

/// A separate response (RFC 7252 §5.2.2) to an unverified address goes out
/// Non-confirmable and within the limit: retransmitting it would amplify (RFC 9175 §2.4).
#[test]
fn separate_response_to_unverified_address_is_non_confirmable() {
    let mut pair = Pair::new(13, EndpointConfig::default(), limited());
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| {
        Some((
            Duration::from_secs(3),
            Response::with_payload(Code::CONTENT, vec![0; 700]),
        ))
    });
    let id = pair.send(get("/slow"), RequestOptions::default());
    pair.run_for(Duration::from_secs(60));
    let response = response_to(&pair, id);
    assert_eq!(response.code, Code::CONTENT);
    assert!(response.options.get(OptionNumber::ECHO).is_some());
    let sent = pair.sent_by(SERVER);
    assert_eq!(sent.len(), 2, "empty ACK, then the response once");
    assert_eq!(parse(&sent[0].1).ty(), MessageType::Acknowledgement);
    assert_eq!(parse(&sent[1].1).ty(), MessageType::NonConfirmable);
}
