//! Message-layer behaviour (RFC 7252 §4, §5.2, §5.4, §8), driven through the Pair harness
//! and RFC 7252 Appendix A example messages.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use corium_wire::{Code, Message, MessageType, OptionNumber};

use super::pair::{Addr, Faults, Pair, CLIENT, SERVER};
use crate::{
    EndpointConfig, Event, IncomingRequest, Instant, Request, RequestError, RequestOptions,
    Response, TransmissionParameters,
};

fn get(path: &str) -> Request {
    let mut r = Request::new(Code::GET);
    r.set_path(path);
    r
}

fn con() -> RequestOptions {
    RequestOptions::default()
}

fn non() -> RequestOptions {
    RequestOptions {
        non_confirmable: true,
        ..Default::default()
    }
}

fn parse(bytes: &[u8]) -> Message<'_> {
    Message::parse(bytes).expect("valid message")
}

fn fixed_text(text: &'static str) -> super::pair::Responder {
    Box::new(move |_: &IncomingRequest<Addr>| {
        Some((
            Duration::ZERO,
            Response::with_payload(Code::CONTENT, text.as_bytes().to_vec()),
        ))
    })
}

/// RFC 7252 Appendix A, Figure 16: CON GET /temperature with MID 0x7d34 and no token is
/// answered by a piggybacked ACK 2.05 with the same MID and payload "22.3 C".
#[test]
fn rfc7252_figure16_piggybacked_response_bytes() {
    let mut pair = Pair::default_pair(1);
    pair.responder = fixed_text("22.3 C");
    let mut request = vec![0x40, 0x01, 0x7d, 0x34, 0xbb];
    request.extend_from_slice(b"temperature");
    pair.inject(CLIENT, SERVER, &request);
    let sent = pair.sent_by(SERVER);
    assert_eq!(sent.len(), 1);
    let mut expected = vec![0x60, 0x45, 0x7d, 0x34, 0xff];
    expected.extend_from_slice(b"22.3 C");
    assert_eq!(&sent[0].1[..], &expected[..]);
    assert_eq!(pair.server_requests.len(), 1);
    let segments: Vec<_> = pair.server_requests[0].request.path_segments().collect();
    assert_eq!(segments, vec![&b"temperature"[..]]);
}

#[test]
fn con_request_gets_piggybacked_response() {
    let mut pair = Pair::default_pair(2);
    let mut req = get("/echo");
    req.payload = b"hello".to_vec();
    let id = pair.send(req, con());
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.response(id).payload, b"hello");
    let server_sent = pair.sent_by(SERVER);
    assert_eq!(server_sent.len(), 1, "one piggybacked ACK, nothing else");
    assert_eq!(parse(&server_sent[0].1).ty(), MessageType::Acknowledgement);
    // The token of the response is the token of the request (RFC 7252 §5.3.2).
    let client_sent = pair.sent_by(CLIENT);
    assert_eq!(
        parse(&client_sent[0].1).token(),
        parse(&server_sent[0].1).token()
    );
    assert_eq!(parse(&client_sent[0].1).token().len(), 8);
}

#[test]
fn non_request_gets_non_response() {
    let mut pair = Pair::default_pair(3);
    let id = pair.send(get("/x"), non());
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.response(id).code, Code::CONTENT);
    let server_sent = pair.sent_by(SERVER);
    assert_eq!(server_sent.len(), 1);
    assert_eq!(parse(&server_sent[0].1).ty(), MessageType::NonConfirmable);
    assert_eq!(
        parse(&pair.sent_by(CLIENT)[0].1).ty(),
        MessageType::NonConfirmable
    );
}

/// RFC 7252 §4.2: a CON that is lost is retransmitted after a timeout drawn from
/// [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR], doubling each time.
#[test]
fn lost_con_is_retransmitted_with_doubling_timeouts() {
    let mut pair = Pair::default_pair(4);
    pair.faults.loss = 1.0; // Nothing gets through.
    let id = pair.send(get("/x"), con());
    pair.run_for(Duration::from_secs(200));
    let sent = pair.sent_by(CLIENT);
    assert_eq!(sent.len(), 5, "MAX_RETRANSMIT = 4 retransmissions");
    let params = TransmissionParameters::default();
    let first = sent[1].0 - sent[0].0;
    assert!(first >= params.ack_timeout && first <= params.max_initial_timeout());
    for w in sent.windows(3) {
        assert_eq!(w[2].0 - w[1].0, (w[1].0 - w[0].0) * 2);
    }
    // All copies are the same message, same MID.
    assert!(sent.iter().all(|(_, b)| b == &sent[0].1));
    match pair.outcome(id) {
        Some(Event::RequestFailed { error, .. }) => {
            assert_eq!(*error, RequestError::NoAcknowledgement)
        }
        other => panic!("unexpected {other:?}"),
    }
    let gave_up = pair
        .client_events
        .iter()
        .position(|e| matches!(e, Event::RequestFailed { .. }));
    assert!(gave_up.is_some());
}

/// A retransmitted CON is processed once by the server application; the duplicate gets
/// the cached response (RFC 7252 §4.5).
#[test]
fn duplicate_con_gets_cached_response_and_reaches_app_once() {
    let mut pair = Pair::default_pair(5);
    pair.responder = fixed_text("once");
    let mut bytes = vec![0x42, 0x01, 0x12, 0x34, 0xaa, 0xbb, 0xb1, b'a'];
    pair.inject(CLIENT, SERVER, &bytes);
    pair.inject(CLIENT, SERVER, &bytes);
    assert_eq!(pair.server_requests.len(), 1);
    let sent = pair.sent_by(SERVER);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].1, sent[1].1);
    // A NON duplicate is dropped silently.
    bytes[0] = 0x52;
    bytes[3] = 0x35;
    pair.inject(CLIENT, SERVER, &bytes);
    pair.inject(CLIENT, SERVER, &bytes);
    assert_eq!(pair.server_requests.len(), 2);
    assert_eq!(pair.sent_by(SERVER).len(), 3);
}

/// RFC 7252 §5.2.2: when the application is slow, the server sends an empty ACK, then
/// the response as a CON, which the client acknowledges.
#[test]
fn slow_handler_gives_separate_response() {
    let mut pair = Pair::default_pair(6);
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| {
        Some((
            Duration::from_secs(5),
            Response::with_payload(Code::CONTENT, b"late".to_vec()),
        ))
    });
    let id = pair.send(get("/separate"), con());
    pair.run_for(Duration::from_secs(20));
    assert_eq!(pair.response(id).payload, b"late");
    let server: Vec<_> = pair.sent_by(SERVER);
    assert_eq!(server.len(), 2);
    let ack = parse(&server[0].1);
    assert_eq!(ack.ty(), MessageType::Acknowledgement);
    assert!(ack.code().is_empty());
    let response = parse(&server[1].1);
    assert_eq!(response.ty(), MessageType::Confirmable);
    assert_eq!(response.code(), Code::CONTENT);
    // The client never retransmitted (the empty ACK came in time) and acknowledged the
    // separate response with an empty ACK of the same MID.
    let client = pair.sent_by(CLIENT);
    assert_eq!(client.len(), 2);
    let client_ack = parse(&client[1].1);
    assert_eq!(client_ack.ty(), MessageType::Acknowledgement);
    assert_eq!(client_ack.message_id(), response.message_id());
    assert_eq!(pair.server.stats().server_exchanges, 0);
}

/// A separate response whose ACKs are all lost is retransmitted and finally reported.
#[test]
fn separate_response_never_acked_is_reported() {
    let mut pair = Pair::default_pair(7);
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| {
        Some((Duration::from_secs(3), Response::new(Code::CONTENT)))
    });
    let id = pair.send(get("/s"), con());
    pair.run_for(Duration::from_secs(4));
    assert_eq!(pair.response(id).code, Code::CONTENT);
    // Now the client goes away: everything the server sends is lost.
    pair.faults.loss = 1.0;
    let id2 = pair.send(get("/s"), con());
    pair.run_for(Duration::from_secs(300));
    assert!(matches!(
        pair.outcome(id2),
        Some(Event::RequestFailed {
            error: RequestError::NoAcknowledgement,
            ..
        })
    ));
    assert_eq!(pair.server.stats().server_exchanges, 0);
}

/// RFC 7252 §4.3: an empty CON (CoAP ping) is answered with a RST.
#[test]
fn ping_gets_pong() {
    let mut pair = Pair::default_pair(8);
    let id = pair.client.ping(pair.now, SERVER).unwrap();
    pair.run_for(Duration::from_secs(1));
    assert!(matches!(pair.outcome(id), Some(Event::Pong { .. })));
    let rst = pair.sent_by(SERVER);
    assert_eq!(&rst[0].1[..1], &[0x70]);
    assert!(pair.server_requests.is_empty());
}

/// A response nobody waits for is rejected with RST (RFC 7252 §4.2).
#[test]
fn unexpected_con_response_is_reset() {
    let mut pair = Pair::default_pair(9);
    // CON 2.05, MID 0x0101, token 0x77.
    pair.inject(SERVER, CLIENT, &[0x41, 0x45, 0x01, 0x01, 0x77, 0xff, b'x']);
    let sent = pair.sent_by(CLIENT);
    assert_eq!(&sent[0].1[..], &[0x70, 0x00, 0x01, 0x01]);
}

/// RFC 7252 §4.2/§4.3: a malformed CON is rejected with RST; a malformed NON dropped.
#[test]
fn format_errors_reject_con_ignore_non() {
    let mut pair = Pair::default_pair(10);
    // Payload marker with an empty payload is a format error (§3).
    pair.inject(CLIENT, SERVER, &[0x40, 0x01, 0x00, 0x07, 0xff]);
    assert_eq!(&pair.sent_by(SERVER)[0].1[..], &[0x70, 0x00, 0x00, 0x07]);
    pair.inject(CLIENT, SERVER, &[0x50, 0x01, 0x00, 0x08, 0xff]);
    // An option delta nibble of 15 without a payload marker is a format error.
    pair.inject(CLIENT, SERVER, &[0x50, 0x01, 0x00, 0x09, 0xf0]);
    assert_eq!(pair.sent_by(SERVER).len(), 1);
    // Version 2 is silently ignored, even as CON.
    pair.inject(CLIENT, SERVER, &[0x80, 0x01, 0x00, 0x0a]);
    assert_eq!(pair.sent_by(SERVER).len(), 1);
    // An empty message with a token is a format error: RST for a CON.
    pair.inject(CLIENT, SERVER, &[0x41, 0x00, 0x00, 0x0b, 0x01]);
    assert_eq!(&pair.sent_by(SERVER)[1].1[..], &[0x70, 0x00, 0x00, 0x0b]);
    assert!(pair.server_requests.is_empty());
}

/// RFC 7252 §5.4.1: an unrecognised critical option in a CON request gives 4.02, an
/// unrecognised elective one is ignored.
#[test]
fn unrecognized_critical_option_gives_bad_option() {
    let mut pair = Pair::default_pair(11);
    let mut req = get("/x");
    req.options
        .push(crate::wire::OptionNumber(65001), b"x".to_vec());
    let id = pair.send(req, con());
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.response(id).code, Code::BAD_OPTION);
    assert!(pair.server_requests.is_empty());

    let mut req = get("/x");
    req.options
        .push(crate::wire::OptionNumber(65000), b"x".to_vec());
    let id = pair.send(req, con());
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.response(id).code, Code::CONTENT);

    // NON gets the 4.02 too, as a NON (draft-ietf-core-corr-clar, RFC 7252-5.4.1).
    let mut req = get("/x");
    req.options
        .push(crate::wire::OptionNumber(65001), b"x".to_vec());
    let id = pair.send(req, non());
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.response(id).code, Code::BAD_OPTION);
}

/// RFC 7252 §5.8 as corrected: an unknown method gets 4.05.
#[test]
fn unknown_method_gets_method_not_allowed() {
    let mut pair = Pair::default_pair(12);
    pair.inject(CLIENT, SERVER, &[0x40, 0x1f, 0x00, 0x01]);
    let sent = pair.sent_by(SERVER);
    assert_eq!(&sent[0].1[..], &[0x60, 0x85, 0x00, 0x01]);
}

/// RFC 7252 §5.4.1: a response with an unrecognised critical option is rejected.
#[test]
fn response_with_unknown_critical_option_fails_request() {
    let mut pair = Pair::default_pair(13);
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| {
        let mut r = Response::new(Code::CONTENT);
        r.options
            .push(crate::wire::OptionNumber(65001), b"?".to_vec());
        Some((Duration::ZERO, r))
    });
    let id = pair.send(get("/x"), con());
    pair.run_for(Duration::from_secs(1));
    assert!(matches!(
        pair.outcome(id),
        Some(Event::RequestFailed {
            error: RequestError::BadResponse,
            ..
        })
    ));
}

/// RFC 7252 §4.7: with NSTART = 1 the second request waits for the first to be
/// acknowledged.
#[test]
fn nstart_limits_outstanding_requests() {
    let mut pair = Pair::default_pair(14);
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| None); // never answers
    let a = pair.send(get("/a"), con());
    let b = pair.send(get("/b"), con());
    assert_eq!(pair.sent_by(CLIENT).len(), 1, "b waits for a");
    pair.run_for(Duration::from_millis(1500));
    // The server's empty ACK (after separate_ack_delay) frees the slot; b goes out.
    let sent = pair.sent_by(CLIENT);
    assert_eq!(sent.len(), 2);
    let b_msg = parse(&sent[1].1);
    assert_eq!(b_msg.options().next().map(|o| o.value), Some(&b"b"[..]));
    assert_ne!(parse(&sent[0].1).message_id(), b_msg.message_id());
    assert!(pair.outcome(a).is_none() && pair.outcome(b).is_none());
}

/// No-Response (RFC 7967): suppressed classes are not sent; a CON still gets its ACK.
#[test]
fn no_response_suppresses_success() {
    let mut pair = Pair::default_pair(15);
    let mut req = get("/x");
    req.options.push_uint(OptionNumber::NO_RESPONSE, 2);
    let id = pair.send(
        req,
        RequestOptions {
            timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        },
    );
    pair.run_for(Duration::from_secs(10));
    let sent = pair.sent_by(SERVER);
    assert_eq!(sent.len(), 1);
    assert!(parse(&sent[0].1).code().is_empty());
    assert!(matches!(
        pair.outcome(id),
        Some(Event::RequestFailed {
            error: RequestError::Timeout,
            ..
        })
    ));
}

/// RFC 7252 §8.2: multicast requests are answered after a random leisure, never with
/// an error, never with RST.
#[test]
fn multicast_requests_leisure_and_no_errors() {
    let mut pair = Pair::default_pair(16);
    // NON GET /x, token 0x01, MID 0x0a0a.
    let ok = [0x51, 0x01, 0x0a, 0x0a, 0x01, 0xb1, b'x'];
    pair.server.handle_multicast_datagram(pair.now, CLIENT, &ok);
    let start = pair.now;
    let id = match pair.server.poll_event() {
        Some(Event::Request(r)) => {
            assert!(r.multicast);
            r.id
        }
        other => panic!("{other:?}"),
    };
    pair.server
        .respond(pair.now, id, Response::new(Code::CONTENT))
        .unwrap();
    assert!(pair.server.poll_transmit().is_none(), "held for leisure");
    let due = pair.server.poll_timeout().expect("leisure timer");
    assert!(due - start <= TransmissionParameters::default().default_leisure);
    pair.server.handle_timeout(due);
    let t = pair.server.poll_transmit().expect("sent after leisure");
    assert_eq!(parse(&t.payload).ty(), MessageType::NonConfirmable);

    // An error response to a multicast request is suppressed.
    let bad = [0x51, 0x01, 0x0a, 0x0b, 0x02, 0xb1, b'y'];
    pair.server
        .handle_multicast_datagram(pair.now, CLIENT, &bad);
    let Some(Event::Request(r)) = pair.server.poll_event() else {
        panic!()
    };
    pair.server
        .respond(pair.now, r.id, Response::new(Code::NOT_FOUND))
        .unwrap();
    pair.server
        .handle_timeout(pair.now + Duration::from_secs(10));
    assert!(pair.server.poll_transmit().is_none());
    // A malformed multicast CON is not answered with RST.
    pair.server
        .handle_multicast_datagram(pair.now, CLIENT, &[0x40, 0x01, 0x00, 0x01, 0xff]);
    assert!(pair.server.poll_transmit().is_none());
}

/// Hard limits: a server full of unanswered requests answers 5.03 with Max-Age; one
/// peer beyond its share gets 4.29 (RFC 8516).
#[test]
fn server_exchange_limits() {
    let cfg = EndpointConfig {
        max_server_exchanges: 4,
        max_server_exchanges_per_peer: 2,
        ..Default::default()
    };
    let mut pair = Pair::new(17, EndpointConfig::default(), cfg);
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| None);
    for mid in 0..3u8 {
        pair.inject(CLIENT, SERVER, &[0x40, 0x01, 0x00, mid]);
    }
    let sent = pair.sent_by(SERVER);
    assert_eq!(sent.len(), 1);
    let m = parse(&sent[0].1);
    assert_eq!(m.code(), Code::TOO_MANY_REQUESTS);
    assert!(m.option(OptionNumber::MAX_AGE).is_some());
    for (peer, mid) in [(3u8, 10u8), (4, 11), (5, 12)] {
        pair.server
            .handle_datagram(pair.now, peer, &[0x40, 0x01, 0x00, mid]);
    }
    let mut codes = Vec::new();
    while let Some(t) = pair.server.poll_transmit() {
        codes.push(parse(&t.payload).code());
    }
    assert_eq!(codes, vec![Code::SERVICE_UNAVAILABLE]);
    assert_eq!(pair.server.stats().server_exchanges, 4);
}

/// The deduplication cache never exceeds its limit.
#[test]
fn dedup_cache_is_bounded() {
    let cfg = EndpointConfig {
        max_dedup_entries: 100,
        ..Default::default()
    };
    let mut pair = Pair::new(18, EndpointConfig::default(), cfg);
    for mid in 0..1000u16 {
        let [hi, lo] = mid.to_be_bytes();
        pair.inject(CLIENT, SERVER, &[0x50, 0x01, hi, lo]);
        assert!(pair.server.stats().dedup_entries <= 100);
    }
    assert_eq!(pair.server_requests.len(), 1000);
}

/// Entries expire after their lifetime, so an idle endpoint frees its memory.
#[test]
fn dedup_entries_expire() {
    let mut pair = Pair::default_pair(19);
    pair.inject(CLIENT, SERVER, &[0x40, 0x01, 0x00, 0x01]);
    pair.inject(CLIENT, SERVER, &[0x50, 0x01, 0x00, 0x02]);
    assert_eq!(pair.server.stats().dedup_entries, 2);
    pair.run_for(Duration::from_secs(150));
    assert_eq!(
        pair.server.stats().dedup_entries,
        1,
        "NON_LIFETIME is 145 s"
    );
    pair.run_for(Duration::from_secs(100));
    assert_eq!(
        pair.server.stats().dedup_entries,
        0,
        "EXCHANGE_LIFETIME is 247 s"
    );
    assert_eq!(pair.server.poll_timeout(), None, "nothing left to wake for");
}

/// The client's exchange table has a hard limit.
#[test]
fn client_exchange_limit() {
    let cfg = EndpointConfig {
        max_client_exchanges: 3,
        ..Default::default()
    };
    let mut pair = Pair::new(20, cfg, EndpointConfig::default());
    for _ in 0..3 {
        pair.client
            .send_request(pair.now, SERVER, &get("/"), con())
            .unwrap();
    }
    assert_eq!(
        pair.client.send_request(pair.now, SERVER, &get("/"), con()),
        Err(crate::SendError::TooManyExchanges)
    );
}

/// Under loss, duplication and reordering every request completes or fails cleanly,
/// the server application sees no request twice, and the tables drain.
#[test]
fn lossy_network_soak() {
    for seed in 0..8u64 {
        let cfg = EndpointConfig {
            transmission: TransmissionParameters {
                nstart: 8,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut pair = Pair::new(100 + seed, cfg, EndpointConfig::default());
        pair.faults = Faults {
            loss: 0.2,
            duplicate: 0.2,
            jitter: Duration::from_millis(300),
        };
        let mut ids = Vec::new();
        for i in 0..200u32 {
            let mut req = get("/soak");
            req.payload = i.to_be_bytes().to_vec();
            let options = if i % 3 == 0 { non() } else { con() };
            let options = RequestOptions {
                timeout: Some(Duration::from_secs(120)),
                ..options
            };
            ids.push((i, pair.send(req, options)));
            pair.run_for(Duration::from_millis(50));
        }
        pair.run_for(Duration::from_secs(400));
        let mut seen = std::collections::HashSet::new();
        for r in &pair.server_requests {
            assert!(
                seen.insert(r.request.payload.clone()),
                "request processed twice"
            );
        }
        let mut answered = 0;
        for (i, id) in &ids {
            match pair.outcome(*id) {
                Some(Event::Response { response, .. }) => {
                    assert_eq!(response.payload, i.to_be_bytes());
                    answered += 1;
                }
                Some(Event::RequestFailed { .. }) => {}
                other => panic!("request {i} has no outcome: {other:?}"),
            }
        }
        assert!(answered > 100, "seed {seed}: only {answered} answered");
        let c = pair.client.stats();
        let s = pair.server.stats();
        assert_eq!((c.client_exchanges, s.server_exchanges), (0, 0));
        assert_eq!((c.dedup_entries, s.dedup_entries), (0, 0));
        assert_eq!(pair.client.poll_timeout(), None);
    }
}

/// Message IDs towards one peer are not reused within EXCHANGE_LIFETIME (RFC 7252 §4.4).
#[test]
fn message_ids_are_not_reused_within_lifetime() {
    let cfg = EndpointConfig {
        transmission: TransmissionParameters {
            nstart: 100_000,
            ..Default::default()
        },
        max_client_exchanges: 100_000,
        ..Default::default()
    };
    let mut pair = Pair::new(21, cfg, EndpointConfig::default());
    let mut used = std::collections::HashSet::new();
    let now = Instant::ZERO;
    let mut exhausted = false;
    for _ in 0..70_000 {
        match pair.client.send_request(now, SERVER, &get("/"), non()) {
            Ok(_) => {
                let t = pair.client.poll_transmit().unwrap();
                assert!(used.insert(parse(&t.payload).message_id()), "reused");
            }
            Err(crate::SendError::MessageIdsExhausted) => {
                exhausted = true;
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(exhausted);
    let lifetime = TransmissionParameters::default().exchange_lifetime();
    let later = now + lifetime;
    pair.client.handle_timeout(later);
    assert!(pair
        .client
        .send_request(later, SERVER, &get("/"), non())
        .is_ok());
}

/// The derived parameters of RFC 7252 §4.8.2 with the default values.
#[test]
fn derived_transmission_parameters() {
    let p = TransmissionParameters::default();
    assert_eq!(p.max_transmit_span(), Duration::from_secs(45));
    assert_eq!(p.max_transmit_wait(), Duration::from_secs(93));
    assert_eq!(p.exchange_lifetime(), Duration::from_secs(247));
    assert_eq!(p.non_lifetime(), Duration::from_secs(145));
}

/// A request the application never answers is forgotten after its lifetime, so it cannot
/// hold a slot of `max_server_exchanges` forever.
#[test]
fn unanswered_requests_expire() {
    let mut pair = Pair::default_pair(22);
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| None);
    pair.inject(CLIENT, SERVER, &[0x40, 0x01, 0x00, 0x01]);
    pair.inject(CLIENT, SERVER, &[0x50, 0x01, 0x00, 0x02]);
    assert_eq!(pair.server.stats().server_exchanges, 2);
    pair.run_for(Duration::from_secs(400));
    assert_eq!(pair.server.stats().server_exchanges, 0);
    assert_eq!(pair.server.stats().timers, 0);
    // The CON got its empty ACK on the way.
    let sent = pair.sent_by(SERVER);
    assert_eq!(&sent[0].1[..], &[0x60, 0x00, 0x00, 0x01]);
}

/// RFC 7959 §2.2/§2.4: a response larger than a block leaves block by block, and a
/// request carrying Block2 is served (not rejected as an unknown critical option).
#[test]
fn large_response_goes_out_block_wise() {
    let mut pair = Pair::default_pair(23);
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| {
        Some((
            Duration::ZERO,
            Response::with_payload(Code::CONTENT, vec![b'x'; 1500]),
        ))
    });
    let id = pair.send(get("/large"), con());
    pair.run_for(Duration::from_secs(1));
    let first = pair.response(id).clone();
    assert_eq!(first.payload.len(), 1024);
    assert_eq!(first.options.get(OptionNumber::BLOCK2), Some(&[0x0e][..]));
    for (_, datagram) in pair.sent_by(SERVER) {
        assert!(datagram.len() <= 1152, "RFC 7252 §4.6 message size");
    }
    let mut next = get("/large");
    next.options.push(OptionNumber::BLOCK2, vec![0x16]); // NUM 1, SZX 6
    let id = pair.send(next, con());
    pair.run_for(Duration::from_secs(1));
    let second = pair.response(id);
    assert_eq!(second.payload.len(), 1500 - 1024);
    assert_eq!(second.options.get(OptionNumber::BLOCK2), Some(&[0x16][..]));
    assert_eq!(
        second.options.get(OptionNumber::ETAG),
        first.options.get(OptionNumber::ETAG)
    );
}

/// RFC 7959 §2.3: an upload in blocks gets 2.31 Continue per block from the endpoint;
/// the application sees one request with the whole body, and the final response echoes
/// Block1.
#[test]
fn block1_upload_is_reassembled() {
    let mut pair = Pair::default_pair(24);
    let body: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
    let mut codes = Vec::new();
    for (num, chunk) in body.chunks(1024).enumerate() {
        let more = (num + 1) * 1024 < body.len();
        let mut req = Request::new(Code::POST);
        req.set_path("/upload");
        let mut buf = [0u8; 4];
        let block = corium_wire::BlockValue::new(num as u32, more, 6).unwrap();
        req.options
            .push(OptionNumber::BLOCK1, block.encode(&mut buf).to_vec());
        req.payload = chunk.to_vec();
        let id = pair.send(req, con());
        pair.run_for(Duration::from_secs(1));
        let response = pair.response(id);
        codes.push(response.code);
        let echoed = corium_wire::BlockValue::decode(
            response
                .options
                .get(OptionNumber::BLOCK1)
                .expect("Block1 echoed"),
        );
        assert_eq!(echoed.map(|b| (b.num, b.more)), Some((num as u32, more)));
    }
    assert_eq!(codes, vec![Code::CONTINUE, Code::CONTINUE, Code::CONTENT]);
    assert_eq!(pair.server_requests.len(), 1);
    assert_eq!(pair.server_requests[0].request.payload, body);
    assert_eq!(pair.server.stats().block1_transfers, 0);
}

/// RFC 7959 §2.5, non-atomic: uploads the passthrough filter picks reach the
/// application block by block, Block1 and all; the endpoint keeps no upload state.
#[test]
fn block1_passthrough_delivers_each_block() {
    let server = EndpointConfig {
        block1_passthrough: Some(crate::Block1Passthrough(alloc::sync::Arc::new(
            |req: &Request| req.path_segments().any(|s| s == b"stream"),
        ))),
        ..EndpointConfig::default()
    };
    let mut pair = Pair::new(27, EndpointConfig::default(), server);
    for (num, more) in [(0u32, true), (1, false)] {
        let mut req = Request::new(Code::PUT);
        req.set_path("/stream");
        let mut buf = [0u8; 4];
        let block = corium_wire::BlockValue::new(num, more, 6).unwrap();
        req.options
            .push(OptionNumber::BLOCK1, block.encode(&mut buf).to_vec());
        req.payload = vec![num as u8; if more { 1024 } else { 10 }];
        pair.send(req, con());
        pair.run_for(Duration::from_secs(1));
    }
    assert_eq!(pair.server_requests.len(), 2, "one request per block");
    for (i, incoming) in pair.server_requests.iter().enumerate() {
        let block = corium_wire::BlockValue::decode(
            incoming.request.options.get(OptionNumber::BLOCK1).unwrap(),
        )
        .unwrap();
        assert_eq!(block.num, i as u32);
    }
    assert_eq!(pair.server.stats().block1_transfers, 0);
}

/// RFC 7959 §2.7: a large response to a POST is kept; the client's follow-up requests for
/// blocks 1, 2, … (no payload) are served from it, and the application runs the POST
/// once.
#[test]
fn large_post_response_blocks_come_from_the_kept_response() {
    let mut pair = Pair::default_pair(25);
    pair.responder = Box::new(|req: &IncomingRequest<Addr>| {
        let mut body = b"created:".to_vec();
        body.extend(core::iter::repeat_n(b'z', 2500));
        body.extend_from_slice(&req.request.payload);
        Some((Duration::ZERO, Response::with_payload(Code::CREATED, body)))
    });
    let mut post = Request::new(Code::POST);
    post.set_path("/large-post");
    post.payload = b"hello".to_vec();
    let id = pair.send(post, con());
    pair.run_for(Duration::from_secs(1));
    let first = pair.response(id).clone();
    assert_eq!(first.code, Code::CREATED);
    assert_eq!(first.payload.len(), 1024);
    let mut whole = first.payload.clone();
    for num in 1..=2u32 {
        let mut next = Request::new(Code::POST);
        next.set_path("/large-post");
        let mut buf = [0u8; 4];
        let b = corium_wire::BlockValue::new(num, false, 6).unwrap();
        next.options
            .push(OptionNumber::BLOCK2, b.encode(&mut buf).to_vec());
        let id = pair.send(next, con());
        pair.run_for(Duration::from_secs(1));
        let part = pair.response(id);
        assert_eq!(part.code, Code::CREATED);
        assert_eq!(
            part.options.get(OptionNumber::ETAG),
            first.options.get(OptionNumber::ETAG)
        );
        whole.extend_from_slice(&part.payload);
    }
    assert_eq!(whole.len(), 8 + 2500 + 5);
    assert!(whole.ends_with(b"hello"));
    assert_eq!(pair.server_requests.len(), 1, "the POST ran once");
    assert_eq!(
        pair.server.stats().cached_responses,
        0,
        "forgotten once the last block went out"
    );
    // A transfer the client abandons after block 0 is forgotten when it expires.
    let mut post = Request::new(Code::POST);
    post.set_path("/large-post");
    let id = pair.send(post, con());
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.response(id).payload.len(), 1024);
    assert_eq!(pair.server.stats().cached_responses, 1);
    pair.run_for(Duration::from_secs(120));
    assert_eq!(
        pair.server.stats().cached_responses,
        0,
        "kept responses expire"
    );
}

/// A large GET runs its handler once per transfer, not once per block (the whole
/// response is kept for the transfer, so sending N bytes costs O(N)).
#[test]
fn large_get_runs_the_handler_once_per_transfer() {
    let mut pair = Pair::default_pair(30);
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| {
        Some((
            Duration::ZERO,
            Response::with_payload(Code::CONTENT, vec![b'g'; 5000]),
        ))
    });
    let id = pair.send(get("/big"), con());
    pair.run_for(Duration::from_secs(1));
    let mut whole = pair.response(id).payload.clone();
    for num in 1..5u32 {
        let mut next = get("/big");
        let mut buf = [0u8; 4];
        let b = corium_wire::BlockValue::new(num, false, 6).unwrap();
        next.options
            .push(OptionNumber::BLOCK2, b.encode(&mut buf).to_vec());
        let id = pair.send(next, con());
        pair.run_for(Duration::from_secs(1));
        whole.extend_from_slice(&pair.response(id).payload);
    }
    assert_eq!(whole, vec![b'g'; 5000]);
    assert_eq!(pair.server_requests.len(), 1);
    assert_eq!(pair.server.stats().cached_responses, 0);
}

/// RFC 7959 §4: a request with Size2 (0) gets the representation's size, block-wise or
/// not.
#[test]
fn size2_in_request_is_answered_with_the_size() {
    let mut pair = Pair::default_pair(26);
    pair.responder = fixed_text("twelve bytes");
    let mut req = get("/x");
    req.options.push_uint(OptionNumber::SIZE2, 0);
    let id = pair.send(req, con());
    pair.run_for(Duration::from_secs(1));
    assert_eq!(
        pair.response(id).options.get_uint(OptionNumber::SIZE2),
        Some(12)
    );
    // Without Size2 in the request, a small response carries none.
    let id = pair.send(get("/x"), con());
    pair.run_for(Duration::from_secs(1));
    assert!(!pair.response(id).options.contains(OptionNumber::SIZE2));
}

/// Review regression: a POST asking for 64-byte blocks up front (early negotiation) gets
/// its later blocks from the kept response, not 4.08.
#[test]
fn small_early_block2_of_a_post_is_kept() {
    let mut pair = Pair::default_pair(27);
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| {
        Some((
            Duration::ZERO,
            Response::with_payload(Code::CHANGED, vec![b'p'; 500]),
        ))
    });
    let mut first = Request::new(Code::POST);
    first.set_path("/p");
    first.options.push(OptionNumber::BLOCK2, vec![0x02]); // NUM 0, SZX 2 (64 bytes)
    let id = pair.send(first, con());
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.response(id).payload.len(), 64);
    let mut next = Request::new(Code::POST);
    next.set_path("/p");
    next.options.push(OptionNumber::BLOCK2, vec![0x12]); // NUM 1, SZX 2
    let id = pair.send(next, con());
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.response(id).code, Code::CHANGED);
    assert_eq!(pair.response(id).payload.len(), 64);
    assert_eq!(pair.server_requests.len(), 1);
}

/// Review regression: cancelling one request must not unhook another that reuses its
/// token (as RFC 7641 §3.3.1 re-registration does).
#[test]
fn reused_token_survives_cancel_of_the_first() {
    let cfg = EndpointConfig {
        transmission: TransmissionParameters {
            nstart: 4,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut pair = Pair::new(28, cfg, EndpointConfig::default());
    let with_token = || RequestOptions {
        token: Some(crate::Token::new(b"same")),
        ..Default::default()
    };
    let a = pair.send(get("/a"), with_token());
    let b = pair.send(get("/b"), with_token());
    pair.client.cancel_request(pair.now, a);
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.response(b).code, Code::CONTENT);
}

/// Review regression: a response to a request that is still queued behind NSTART (never
/// sent) is not taken for its answer.
#[test]
fn response_to_a_queued_request_is_rejected() {
    let mut pair = Pair::default_pair(29);
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| None);
    let _a = pair.send(get("/a"), con());
    let b = pair.send(
        get("/b"),
        RequestOptions {
            token: Some(crate::Token::new(b"qq")),
            ..Default::default()
        },
    );
    assert_eq!(pair.sent_by(CLIENT).len(), 1, "b is queued");
    // A CON 2.05 with b's token arrives from the server.
    pair.inject(SERVER, CLIENT, &[0x42, 0x45, 0x33, 0x33, b'q', b'q']);
    assert!(pair.outcome(b).is_none());
    let sent = pair.sent_by(CLIENT);
    assert_eq!(
        &sent[1].1[..],
        &[0x70, 0x00, 0x33, 0x33],
        "rejected with RST"
    );
}

/// Bad block options over UDP: SZX 7 (BERT, RFC 8323 only) is treated as the largest UDP
/// size, a block number past the end gets 4.02, a Block1 with M=1 that never continues is
/// dropped after its timeout; nothing panics or stays behind.
#[test]
fn bad_block_options_are_answered_and_bounded() {
    let mut pair = Pair::default_pair(31);
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| {
        Some((
            Duration::ZERO,
            Response::with_payload(Code::CONTENT, vec![b'b'; 3000]),
        ))
    });
    // GET with Block2 NUM 1 SZX 7: offset 1024, served in 1024-byte blocks.
    let mut req = get("/b");
    req.options.push(OptionNumber::BLOCK2, vec![0x1f]);
    let id = pair.send(req, con());
    pair.run_for(Duration::from_secs(1));
    let r = pair.response(id);
    assert_eq!(r.payload.len(), 1024);
    assert_eq!(r.options.get(OptionNumber::BLOCK2), Some(&[0x1e][..]));
    // Block2 NUM 200: past the end.
    let mut req = get("/b");
    req.options.push(OptionNumber::BLOCK2, vec![0xc8, 0x06]);
    let id = pair.send(req, con());
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.response(id).code, Code::BAD_OPTION);
    // A Block1 upload that never finishes.
    let mut req = Request::new(Code::PUT);
    req.set_path("/b");
    req.options.push(OptionNumber::BLOCK1, vec![0x0e]); // NUM 0, M, SZX 6
    req.payload = vec![0; 1024];
    let id = pair.send(req, con());
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.response(id).code, Code::CONTINUE);
    assert_eq!(pair.server.stats().block1_transfers, 1);
    pair.run_for(Duration::from_secs(300));
    let stats = pair.server.stats();
    assert_eq!((stats.block1_transfers, stats.cached_responses), (0, 0));
    assert_eq!(stats.timers, 0);
}

/// Clients that only send Confirmable requests, answered piggybacked, leave no per-peer
/// state behind: a server with many clients keeps state only for those with work in
/// progress or message IDs of its own to protect (RFC 7252 §4.4). A NON response takes
/// a message ID of the server's, so that client's state stays. Deduplication still holds:
/// the dedup cache, not the peer table, remembers the clients' message IDs.
#[test]
fn request_only_peers_leave_no_peer_state() {
    let mut pair = Pair::default_pair(7);
    pair.responder = fixed_text("ok");
    let clients = 10u8..=250;
    for from in clients.clone() {
        // CON GET /a with MID 0x12xx.
        pair.inject(from, SERVER, &[0x40, 0x01, 0x12, from, 0xb1, b'a']);
    }
    let answered = pair.sent_by(SERVER).len();
    assert_eq!(answered, clients.len());
    assert_eq!(pair.server.stats().peers, 0);
    // A duplicate of a CON request is still recognised and answered from the cache.
    pair.inject(10, SERVER, &[0x40, 0x01, 0x12, 10, 0xb1, b'a']);
    assert_eq!(pair.server_requests.len(), clients.len());
    assert_eq!(pair.sent_by(SERVER).len(), answered + 1);
    // NON GET /a: the NON response's message ID is remembered for its peer.
    pair.inject(11, SERVER, &[0x50, 0x01, 0x13, 11, 0xb1, b'a']);
    assert_eq!(pair.sent_by(SERVER).len(), answered + 2);
    assert_eq!(pair.server.stats().peers, 1);
}
