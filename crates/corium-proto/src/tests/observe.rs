//! Observe (RFC 7641), server and client side, through the Pair harness.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use corium_wire::{Code, Message, MessageType, OptionNumber};

use super::pair::{Addr, Pair, CLIENT, SERVER};
use crate::codec;
use crate::endpoint::observe::is_fresh;
use crate::{
    EndpointConfig, Event, IncomingRequest, Instant, NotifyError, NotifyOptions,
    ObservationEndReason, ObservationId, Options, Request, RequestId, RequestOptions, RespondError,
    Response,
};

fn get(path: &str) -> Request {
    let mut r = Request::new(Code::GET);
    r.set_path(path);
    r
}

fn observe() -> RequestOptions {
    RequestOptions {
        observe: true,
        ..Default::default()
    }
}

fn text(s: &str) -> Response {
    Response::with_payload(Code::CONTENT, s.as_bytes().to_vec())
}

const NON: NotifyOptions = NotifyOptions { confirmable: false };
const CON: NotifyOptions = NotifyOptions { confirmable: true };

fn short() -> Duration {
    Duration::from_millis(100)
}

/// A pair whose server application answers nothing by itself: the tests answer.
fn manual_pair(seed: u64, server: EndpointConfig) -> Pair {
    let mut pair = Pair::new(seed, EndpointConfig::default(), server);
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| None);
    pair
}

/// Registers an observation of `/obs` and answers it with "v0".
fn registered(seed: u64) -> (Pair, RequestId, ObservationId) {
    let mut pair = manual_pair(seed, EndpointConfig::default());
    let req = pair.send(get("/obs"), observe());
    pair.run_for(short());
    let incoming = pair
        .server_requests
        .last()
        .expect("request arrived")
        .clone();
    assert_eq!(incoming.observe, Some(0));
    let obs = pair
        .server
        .respond_observe(pair.now, incoming.id, text("v0"))
        .expect("registered");
    pair.run_for(short());
    (pair, req, obs)
}

/// The responses the client application got for `req`, in order.
fn responses(pair: &Pair, req: RequestId) -> Vec<Response> {
    pair.client_events
        .iter()
        .filter_map(|e| match e {
            Event::Response {
                request, response, ..
            } if *request == req => Some(response.clone()),
            _ => None,
        })
        .collect()
}

fn payloads(pair: &Pair, req: RequestId) -> Vec<Vec<u8>> {
    responses(pair, req)
        .into_iter()
        .map(|r| r.payload)
        .collect()
}

fn seq(r: &Response) -> u32 {
    r.options
        .get_uint(OptionNumber::OBSERVE)
        .expect("Observe option")
}

fn finished(pair: &Pair, req: RequestId) -> bool {
    pair.client_events
        .iter()
        .any(|e| matches!(e, Event::RequestFinished { request } if *request == req))
}

fn ended(pair: &Pair) -> Vec<(ObservationId, ObservationEndReason)> {
    pair.server_events
        .iter()
        .filter_map(|e| match e {
            Event::ObservationEnded { obs, reason, .. } => Some((*obs, *reason)),
            _ => None,
        })
        .collect()
}

/// Notification datagrams the server sent (responses with a payload), parsed as
/// (type, message ID, payload).
fn server_notifications(pair: &Pair) -> Vec<(MessageType, u16, Vec<u8>)> {
    pair.sent_by(SERVER)
        .iter()
        .filter_map(|(_, b)| {
            let m = Message::parse(b).ok()?;
            (m.code().is_response() && m.ty() != MessageType::Acknowledgement)
                .then(|| (m.ty(), m.message_id(), m.payload().to_vec()))
        })
        .collect()
}

/// RFC 7641 §3.1, §4.1: GET with Observe = 0 registers; the response carries Observe.
#[test]
fn registration_and_first_response() {
    let (pair, req, _obs) = registered(1);
    let sent = pair.sent_by(CLIENT);
    let first = Message::parse(&sent[0].1).unwrap();
    assert_eq!(
        first.option(OptionNumber::OBSERVE),
        Some(&[][..]),
        "Observe = 0"
    );
    let got = responses(&pair, req);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, b"v0");
    assert!(got[0].options.contains(OptionNumber::OBSERVE));
    assert!(!finished(&pair, req));
    assert_eq!(pair.server.stats().observations, 1);
    // The relation holds no NSTART slot and no deadline: a later request goes out.
    assert_eq!(pair.client.stats().client_exchanges, 1);
}

/// RFC 7641 §4.4: sequence numbers increase; NON by default (§4.5).
#[test]
fn non_notifications_with_increasing_sequence_numbers() {
    let (mut pair, req, obs) = registered(2);
    for i in 1..=5 {
        let payload = alloc::format!("v{i}");
        pair.server
            .notify(pair.now, obs, text(&payload), NON)
            .unwrap();
        pair.run_for(Duration::from_secs(1));
    }
    let got = responses(&pair, req);
    assert_eq!(got.len(), 6);
    assert_eq!(got[5].payload, b"v5");
    for w in got.windows(2) {
        assert!(
            seq(&w[1]) > seq(&w[0]),
            "{} then {}",
            seq(&w[0]),
            seq(&w[1])
        );
    }
    let sent = server_notifications(&pair);
    assert_eq!(sent.len(), 5);
    assert!(sent
        .iter()
        .all(|(ty, _, _)| *ty == MessageType::NonConfirmable));
    // A fresh message ID per notification.
    let mut mids: Vec<u16> = sent.iter().map(|(_, m, _)| *m).collect();
    mids.dedup();
    assert_eq!(mids.len(), 5);
    // Max-Age is kept as given.
    let mut r = text("aged");
    r.options.set_uint(OptionNumber::MAX_AGE, 7);
    pair.server.notify(pair.now, obs, r, NON).unwrap();
    pair.run_for(Duration::from_secs(1));
    assert_eq!(responses(&pair, req).last().unwrap().max_age(), 7);
}

/// RFC 7641 §4.5: a CON notification is acknowledged by the client with an empty ACK.
#[test]
fn con_notification_is_acknowledged() {
    let (mut pair, req, obs) = registered(3);
    pair.server.notify(pair.now, obs, text("c1"), CON).unwrap();
    pair.run_for(Duration::from_secs(1));
    let sent = server_notifications(&pair);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, MessageType::Confirmable);
    let acks: Vec<_> = pair
        .sent_by(CLIENT)
        .iter()
        .filter_map(|(_, b)| {
            let m = Message::parse(b).ok()?;
            (m.ty() == MessageType::Acknowledgement && m.code().is_empty()).then(|| m.message_id())
        })
        .collect();
    assert_eq!(acks, vec![sent[0].1]);
    assert_eq!(payloads(&pair, req).last().unwrap(), b"c1");
    // Acknowledged: nothing is retransmitted, and the next goes out at once.
    pair.run_for(Duration::from_secs(60));
    assert_eq!(server_notifications(&pair).len(), 1);
    pair.server.notify(pair.now, obs, text("c2"), CON).unwrap();
    pair.run_for(Duration::from_secs(1));
    assert_eq!(payloads(&pair, req).last().unwrap(), b"c2");
    assert!(ended(&pair).is_empty());
}

/// RFC 7641 §3.6: a client that forgot the relation (passive cancel) answers the next
/// notification with RST, which ends the relation on the server.
#[test]
fn passive_cancel_rst_ends_relation() {
    let (mut pair, req, obs) = registered(4);
    pair.client.cancel_request(pair.now, req);
    pair.server.notify(pair.now, obs, text("v1"), NON).unwrap();
    pair.run_for(Duration::from_secs(1));
    assert_eq!(responses(&pair, req).len(), 1, "only the first response");
    assert_eq!(ended(&pair), vec![(obs, ObservationEndReason::Reset)]);
    assert_eq!(pair.server.stats().observations, 0);
    assert_eq!(
        pair.server.notify(pair.now, obs, text("v2"), NON),
        Err(NotifyError::UnknownObservation)
    );
}

/// A RST to a CON notification ends the relation too.
#[test]
fn rst_to_con_notification_ends_relation() {
    let (mut pair, req, obs) = registered(5);
    pair.client.cancel_request(pair.now, req);
    pair.server.notify(pair.now, obs, text("v1"), CON).unwrap();
    pair.run_for(Duration::from_secs(1));
    assert_eq!(ended(&pair), vec![(obs, ObservationEndReason::Reset)]);
    // No retransmission after the RST.
    pair.run_for(Duration::from_secs(100));
    assert_eq!(server_notifications(&pair).len(), 1);
}

/// RFC 7641 §4.5: a CON notification never acknowledged ends the relation.
#[test]
fn con_timeout_ends_relation() {
    let (mut pair, _req, obs) = registered(6);
    pair.faults.loss = 1.0;
    pair.server
        .notify(pair.now, obs, text("lost"), CON)
        .unwrap();
    pair.run_for(Duration::from_secs(300));
    assert_eq!(server_notifications(&pair).len(), 5, "1 + MAX_RETRANSMIT");
    assert_eq!(ended(&pair), vec![(obs, ObservationEndReason::Timeout)]);
    assert_eq!(pair.server.stats().observations, 0);
}

/// RFC 7641 §4.5.2: while a CON notification is unacknowledged, newer states replace
/// each other; the newest goes out when the attempt times out (with a new message ID,
/// the retransmission counter and timeout carried on), intermediate ones never.
#[test]
fn newest_state_wins_under_a_lossy_client() {
    let (mut pair, req, obs) = registered(7);
    pair.faults.loss = 1.0;
    pair.server.notify(pair.now, obs, text("s1"), CON).unwrap();
    for i in 2..=50 {
        pair.server
            .notify(pair.now, obs, text(&alloc::format!("s{i}")), NON)
            .unwrap();
    }
    pair.run_for(short());
    let sent = server_notifications(&pair);
    assert_eq!(sent.len(), 1, "nothing queues behind the CON on the wire");
    // The network heals before the first retransmission.
    pair.faults.loss = 0.0;
    pair.run_for(Duration::from_secs(10));
    let sent = server_notifications(&pair);
    let payloads_sent: Vec<_> = sent.iter().map(|(_, _, p)| p.clone()).collect();
    assert_eq!(payloads_sent, vec![b"s1".to_vec(), b"s50".to_vec()]);
    assert_eq!(sent[1].0, MessageType::Confirmable, "carries on as CON");
    assert_ne!(sent[0].1, sent[1].1, "new message ID");
    assert_eq!(payloads(&pair, req), vec![b"v0".to_vec(), b"s50".to_vec()]);
    assert!(ended(&pair).is_empty());
}

/// A slow client that acknowledges late: the queued newest state goes out on the ACK.
#[test]
fn newest_state_goes_out_on_ack() {
    let (mut pair, req, obs) = registered(8);
    pair.latency = Duration::from_millis(500);
    pair.server.notify(pair.now, obs, text("a"), CON).unwrap();
    pair.server.notify(pair.now, obs, text("b"), NON).unwrap();
    pair.server.notify(pair.now, obs, text("c"), NON).unwrap();
    pair.run_for(Duration::from_millis(1500));
    let got = payloads(&pair, req);
    assert_eq!(got, vec![b"v0".to_vec(), b"a".to_vec(), b"c".to_vec()]);
    let sent = server_notifications(&pair);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].0, MessageType::NonConfirmable);
}

/// RFC 7641 §4.1: a registration with the same (peer, token) replaces the earlier one.
#[test]
fn reregistration_replaces() {
    let mut pair = manual_pair(9, EndpointConfig::default());
    let register = |mid: u8| vec![0x41, 0x01, 0x00, mid, 0xaa, 0x60, 0x53, b'o', b'b', b's'];
    pair.inject(CLIENT, SERVER, &register(1));
    let first = pair.server_requests[0].clone();
    assert_eq!(first.observe, Some(0));
    let obs1 = pair
        .server
        .respond_observe(pair.now, first.id, text("x"))
        .unwrap();
    pair.inject(CLIENT, SERVER, &register(2));
    let second = pair.server_requests[1].clone();
    let obs2 = pair
        .server
        .respond_observe(pair.now, second.id, text("y"))
        .unwrap();
    pair.run_for(short());
    assert_ne!(obs1, obs2);
    assert_eq!(ended(&pair), vec![(obs1, ObservationEndReason::Replaced)]);
    assert_eq!(pair.server.stats().observations, 1);
    assert_eq!(
        pair.server.notify(pair.now, obs1, text("z"), NON),
        Err(NotifyError::UnknownObservation)
    );
    // The replacement keeps counting upwards.
    let seqs: Vec<u32> = pair
        .sent_by(SERVER)
        .iter()
        .filter_map(|(_, b)| {
            Message::parse(b)
                .ok()?
                .option(OptionNumber::OBSERVE)
                .and_then(corium_wire::decode_uint)
        })
        .collect();
    assert_eq!(seqs.len(), 2);
    assert!(seqs[1] > seqs[0]);
}

/// RFC 7641 §3.6: GET with Observe = 1 and the same token deregisters; the application
/// answers it as a plain GET.
#[test]
fn deregistration() {
    let mut pair = manual_pair(10, EndpointConfig::default());
    pair.inject(
        CLIENT,
        SERVER,
        &[0x41, 0x01, 0x00, 0x01, 0xaa, 0x60, 0x53, b'o', b'b', b's'],
    );
    let obs = pair
        .server
        .respond_observe(pair.now, pair.server_requests[0].id, text("x"))
        .unwrap();
    pair.inject(
        CLIENT,
        SERVER,
        &[
            0x41, 0x01, 0x00, 0x02, 0xaa, 0x61, 0x01, 0x53, b'o', b'b', b's',
        ],
    );
    let dereg = pair.server_requests[1].clone();
    assert_eq!(dereg.observe, Some(1));
    assert_eq!(
        ended(&pair),
        vec![(obs, ObservationEndReason::Deregistered)]
    );
    assert_eq!(pair.server.observation_count(), 0);
    pair.server
        .respond(pair.now, dereg.id, text("bye"))
        .unwrap();
    // Observe = 1 from another token changes nothing.
    assert_eq!(ended(&pair).len(), 1);
}

/// RFC 7641 §3.4: a notification older than the newest seen is dropped; the 24-bit
/// space wraps; after 128 s any notification is fresh.
#[test]
fn reordered_notifications_are_discarded() {
    let (mut pair, req, _obs) = registered(11);
    let token = Message::parse(&pair.sent_by(CLIENT)[0].1)
        .unwrap()
        .token()
        .to_vec();
    let base = seq(&responses(&pair, req)[0]);
    let mut mid = 0x7000u16;
    let mut notify = |pair: &mut Pair, seq: u32, payload: &str| {
        let mut options = Options::new();
        options.set_uint(OptionNumber::OBSERVE, seq & 0xff_ffff);
        mid += 1;
        let wire = codec::encode(
            None,
            MessageType::NonConfirmable,
            Code::CONTENT,
            mid,
            &token,
            &options,
            payload.as_bytes(),
        );
        pair.inject(SERVER, CLIENT, &wire);
    };
    notify(&mut pair, base + 5, "five");
    notify(&mut pair, base + 3, "three (stale)");
    notify(&mut pair, base + 6, "six");
    assert_eq!(
        payloads(&pair, req)[1..],
        [b"five".to_vec(), b"six".to_vec()]
    );
    // 128 s later, a smaller number is fresh again (a server restart, say).
    pair.run_for(Duration::from_secs(129));
    notify(&mut pair, base + 1, "after restart");
    assert_eq!(payloads(&pair, req).last().unwrap(), b"after restart");
    assert!(!finished(&pair, req));
}

#[test]
fn freshness_rule() {
    let t = Instant::ZERO;
    assert!(is_fresh(1, t, 2, t));
    assert!(!is_fresh(2, t, 1, t));
    assert!(!is_fresh(2, t, 2, t));
    assert!(is_fresh(0xff_fff0, t, 3, t), "wraps around");
    assert!(!is_fresh(3, t, 0xff_fff0, t));
    assert!(!is_fresh(0, t, 1 << 23, t), "exactly half is not fresh");
    assert!(is_fresh(5, t, 1, t + Duration::from_secs(129)));
}

/// RFC 7641 §3.1: a first response without Observe means the resource is not
/// observable; the exchange ends normally.
#[test]
fn not_observable_response_ends_exchange() {
    let mut pair = manual_pair(12, EndpointConfig::default());
    let req = pair.send(get("/plain"), observe());
    pair.run_for(short());
    let id = pair.server_requests[0].id;
    pair.server.respond(pair.now, id, text("plain")).unwrap();
    pair.run_for(short());
    assert_eq!(payloads(&pair, req), vec![b"plain".to_vec()]);
    assert!(finished(&pair, req));
    assert_eq!(pair.client.stats().client_exchanges, 0);
}

/// RFC 7641 §3.2, §4.2: an error notification is sent without Observe and ends the
/// relation on both sides.
#[test]
fn error_notification_ends_relation() {
    let (mut pair, req, obs) = registered(13);
    pair.server
        .notify(pair.now, obs, Response::new(Code::NOT_FOUND), CON)
        .unwrap();
    assert_eq!(pair.server.observation_count(), 0);
    assert_eq!(
        pair.server.notify(pair.now, obs, text("late"), NON),
        Err(NotifyError::UnknownObservation)
    );
    pair.run_for(Duration::from_secs(1));
    let got = responses(&pair, req);
    assert_eq!(got.last().unwrap().code, Code::NOT_FOUND);
    assert!(!got.last().unwrap().options.contains(OptionNumber::OBSERVE));
    assert!(finished(&pair, req));
    assert_eq!(pair.client.stats().client_exchanges, 0);
    // Acknowledged: nothing is left on the server.
    pair.run_for(Duration::from_secs(100));
    assert_eq!(server_notifications(&pair).len(), 1);
    assert!(ended(&pair).is_empty(), "the application ended it itself");
}

/// The hard limits: beyond them the request is answered without Observe.
#[test]
fn observation_limits() {
    let config = EndpointConfig {
        max_observations_per_peer: 2,
        max_observations: 3,
        ..Default::default()
    };
    let mut pair = manual_pair(14, config);
    let mut results = Vec::new();
    for i in 0..3u8 {
        let req = pair.send(get("/obs"), observe());
        pair.run_for(short());
        let id = pair.server_requests[usize::from(i)].id;
        results.push((
            req,
            pair.server
                .respond_observe(pair.now, id, text("x"))
                .map(|_| ()),
        ));
        pair.run_for(short());
    }
    assert!(results[0].1.is_ok() && results[1].1.is_ok());
    assert_eq!(results[2].1, Err(RespondError::TooManyObservations));
    assert_eq!(pair.server.observation_count(), 2);
    // The client saw a plain answer: not observable, finished.
    let rejected = results[2].0;
    assert!(!responses(&pair, rejected)[0]
        .options
        .contains(OptionNumber::OBSERVE));
    assert!(finished(&pair, rejected));
    // Another peer hits the global limit after one more.
    for (mid, token) in [(1u8, 0xb1u8), (2, 0xb2)] {
        pair.inject(
            3,
            SERVER,
            &[0x41, 0x01, 0x00, mid, token, 0x60, 0x53, b'o', b'b', b's'],
        );
    }
    let n = pair.server_requests.len();
    let a = pair.server_requests[n - 2].id;
    let b = pair.server_requests[n - 1].id;
    assert!(pair.server.respond_observe(pair.now, a, text("x")).is_ok());
    assert_eq!(
        pair.server.respond_observe(pair.now, b, text("x")),
        Err(RespondError::TooManyObservations)
    );
    assert_eq!(pair.server.observation_count(), 3);
    // An error response does not register.
    pair.inject(
        3,
        SERVER,
        &[0x41, 0x01, 0x00, 9, 0xb9, 0x60, 0x53, b'o', b'b', b's'],
    );
    let c = pair.server_requests.last().unwrap().id;
    assert_eq!(
        pair.server
            .respond_observe(pair.now, c, Response::new(Code::NOT_FOUND)),
        Err(RespondError::NotObservable)
    );
}

/// `end_observation` forgets silently; the client's next message is not affected.
#[test]
fn end_observation_is_silent() {
    let (mut pair, _req, obs) = registered(15);
    pair.server.end_observation(obs);
    assert_eq!(pair.server.observation_count(), 0);
    assert!(ended(&pair).is_empty());
    assert_eq!(
        pair.server.notify(pair.now, obs, text("x"), NON),
        Err(NotifyError::UnknownObservation)
    );
}

/// RFC 7959 §2.6: a large notification carries block 0 and Observe.
#[test]
fn large_notification_is_block_zero() {
    let (mut pair, req, obs) = registered(16);
    pair.server
        .notify(pair.now, obs, text(&"x".repeat(3000)), NON)
        .unwrap();
    pair.run_for(short());
    let last = responses(&pair, req).pop().unwrap();
    assert_eq!(last.payload.len(), 1024);
    assert!(last.options.contains(OptionNumber::BLOCK2));
    assert!(last.options.contains(OptionNumber::OBSERVE));
}

/// A lossy, duplicating, reordering network: the client only ever moves forward.
#[test]
fn lossy_soak_sequence_only_moves_forward() {
    let (mut pair, req, obs) = registered(17);
    pair.faults.loss = 0.2;
    pair.faults.duplicate = 0.2;
    pair.faults.jitter = Duration::from_millis(800);
    for i in 0..200 {
        let options = if i % 10 == 0 { CON } else { NON };
        let _ = pair
            .server
            .notify(pair.now, obs, text(&alloc::format!("{i}")), options);
        pair.run_for(Duration::from_millis(300));
    }
    pair.faults = Default::default();
    pair.run_for(Duration::from_secs(200));
    let got = responses(&pair, req);
    assert!(got.len() > 20);
    for w in got.windows(2) {
        assert!(seq(&w[1]) > seq(&w[0]));
    }
}

/// RFC 7641 §4.5: a notification is Confirmable at least once every 24 hours, even when
/// the application asks for Non-confirmable ones.
#[test]
fn confirmable_at_least_daily() {
    let (mut pair, req, obs) = registered(18);
    // Fresh for two days, so the client does not re-register in between (§3.3.1).
    let text = |s: &str| {
        let mut r = text(s);
        r.options.set_uint(OptionNumber::MAX_AGE, 2 * 24 * 3600);
        r
    };
    pair.server.notify(pair.now, obs, text("n1"), NON).unwrap();
    pair.run_for(Duration::from_secs(3600));
    pair.server.notify(pair.now, obs, text("n2"), NON).unwrap();
    pair.run_for(Duration::from_secs(24 * 3600));
    pair.server.notify(pair.now, obs, text("n3"), NON).unwrap();
    pair.run_for(Duration::from_secs(1));
    pair.server.notify(pair.now, obs, text("n4"), NON).unwrap();
    pair.run_for(Duration::from_secs(1));
    let types: Vec<MessageType> = server_notifications(&pair)
        .into_iter()
        .map(|(ty, _, _)| ty)
        .collect();
    assert_eq!(
        types,
        [
            MessageType::NonConfirmable,
            MessageType::NonConfirmable,
            MessageType::Confirmable,
            MessageType::NonConfirmable
        ]
    );
    assert_eq!(payloads(&pair, req).last().unwrap(), b"n4");
}

/// RFC 7641 §3.6, §4.2: a RST to an older NON notification still ends the relation. With
/// a notification every 5 ms and 10 ms latency, the RST for one arrives after several
/// newer notifications went out.
#[test]
fn rst_to_older_non_notification_ends_relation() {
    let (mut pair, req, obs) = registered(21);
    pair.latency = Duration::from_millis(10);
    // The client forgets the relation: it answers every notification with RST.
    pair.client.cancel_request(pair.now, req);
    let mut stopped = false;
    for i in 0..200 {
        let n = text(&alloc::format!("v{i}"));
        if pair.server.notify(pair.now, obs, n, NON).is_err() {
            stopped = true;
            break;
        }
        pair.run_for(Duration::from_millis(5));
    }
    assert!(stopped, "the server kept notifying a client that RSTs");
    assert_eq!(ended(&pair), vec![(obs, ObservationEndReason::Reset)]);
    assert_eq!(pair.server.stats().observations, 0);
}

/// The tokens of the GET requests the client sent (each message ID once).
fn client_get_tokens(pair: &Pair) -> Vec<Vec<u8>> {
    let mut seen = Vec::new();
    let mut tokens = Vec::new();
    for (_, b) in pair.sent_by(CLIENT) {
        let Ok(m) = Message::parse(&b) else { continue };
        if m.code() == Code::GET && !seen.contains(&m.message_id()) {
            seen.push(m.message_id());
            tokens.push(m.token().to_vec());
        }
    }
    tokens
}

/// RFC 7641 §3.3.1: when the latest notification's Max-Age (here the default 60 s)
/// passes without a newer one, the client registers again with the same token and
/// options, and the relation goes on with the answer.
#[test]
fn client_reregisters_after_max_age() {
    let (mut pair, req, _obs) = registered(22);
    let first = pair.server_requests[0].clone();
    // 60 s of Max-Age plus at most 15 s of random wait (§3.3.1).
    pair.run_for(Duration::from_secs(59));
    assert_eq!(
        pair.server_requests.len(),
        1,
        "no re-registration while fresh"
    );
    pair.run_for(Duration::from_secs(17));
    let again = pair
        .server_requests
        .get(1)
        .expect("the client registered again")
        .clone();
    let tokens = client_get_tokens(&pair);
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0], tokens[1], "same token");
    assert_eq!(again.observe, Some(0));
    assert_eq!(again.request.options, first.request.options, "same options");
    let obs2 = pair
        .server
        .respond_observe(pair.now, again.id, text("v1"))
        .expect("registered again");
    pair.run_for(short());
    assert_eq!(payloads(&pair, req), vec![b"v0".to_vec(), b"v1".to_vec()]);
    // The relation goes on: a notification arrives, nothing failed or finished.
    pair.server.notify(pair.now, obs2, text("v2"), NON).unwrap();
    pair.run_for(short());
    assert_eq!(payloads(&pair, req).last().unwrap(), b"v2");
    assert!(pair.outcome(req).is_some());
    assert!(!finished(&pair, req));
    assert!(!pair
        .client_events
        .iter()
        .any(|e| matches!(e, Event::RequestFailed { .. })));
}

/// `no_reregistration` (for registrations that cannot be repeated as they are, such as
/// OSCORE-protected ones): Max-Age passes and nothing is sent again; the relation stays
/// open and later notifications still arrive.
#[test]
fn no_reregistration_option_keeps_quiet_after_max_age() {
    let mut pair = manual_pair(27, EndpointConfig::default());
    let options = RequestOptions {
        no_reregistration: true,
        ..observe()
    };
    let req = pair.send(get("/obs"), options);
    pair.run_for(short());
    let incoming = pair.server_requests[0].clone();
    let obs = pair
        .server
        .respond_observe(pair.now, incoming.id, text("v0"))
        .expect("registered");
    pair.run_for(Duration::from_secs(300));
    assert_eq!(client_get_tokens(&pair).len(), 1, "registered once only");
    pair.server.notify(pair.now, obs, text("v1"), NON).unwrap();
    pair.run_for(short());
    assert_eq!(payloads(&pair, req), vec![b"v0".to_vec(), b"v1".to_vec()]);
    assert!(!finished(&pair, req));
}

/// A notification with a Max-Age pushes the re-registration back (§3.3.1): no request
/// while notifications keep coming.
#[test]
fn no_reregistration_while_notifications_arrive() {
    let (mut pair, req, obs) = registered(23);
    for i in 0..10 {
        let mut n = text(&alloc::format!("v{i}"));
        n.options.set_uint(OptionNumber::MAX_AGE, 30);
        pair.server.notify(pair.now, obs, n, NON).unwrap();
        pair.run_for(Duration::from_secs(30));
    }
    assert_eq!(pair.server_requests.len(), 1);
    assert_eq!(responses(&pair, req).len(), 11);
}

/// A re-registration nobody answers ends the observation with an error (§3.3.1).
#[test]
fn failed_reregistration_ends_observation_with_error() {
    let (mut pair, req, _obs) = registered(24);
    // The server forgets everything: a fresh endpoint that never answers.
    pair.server = crate::Endpoint::new(
        EndpointConfig::default(),
        Box::new(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(99)),
    );
    pair.run_for(Duration::from_secs(76 + 300));
    assert_eq!(pair.server_requests.len(), 2, "one re-registration");
    assert!(
        pair.client_events.iter().any(|e| matches!(
            e,
            Event::RequestFailed { request, error: crate::RequestError::Timeout } if *request == req
        )),
        "{:?}",
        pair.client_events
    );
    assert_eq!(pair.client.stats().client_exchanges, 0);
}

/// A re-registration answered without Observe ends the observation: the answer is the
/// last response (§3.2).
#[test]
fn reregistration_answered_without_observe_ends_observation() {
    let (mut pair, req, obs) = registered(25);
    pair.server.end_observation(obs);
    pair.run_for(Duration::from_secs(76));
    let again = pair
        .server_requests
        .get(1)
        .expect("re-registration")
        .clone();
    pair.server
        .respond(pair.now, again.id, Response::new(Code::NOT_FOUND))
        .unwrap();
    pair.run_for(short());
    assert!(finished(&pair, req));
    assert_eq!(responses(&pair, req).last().unwrap().code, Code::NOT_FOUND);
}

/// A RST to the re-registration ends the observation with an error.
#[test]
fn reregistration_reset_ends_observation_with_error() {
    let (mut pair, req, _obs) = registered(26);
    pair.run_for(Duration::from_secs(76));
    assert_eq!(client_get_tokens(&pair).len(), 2, "re-registration sent");
    let (_, _, _, bytes) = pair
        .wire
        .iter()
        .rev()
        .find(|(_, from, _, _)| *from == CLIENT)
        .expect("re-registration sent")
        .clone();
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.code(), Code::GET);
    let rst = codec::empty(MessageType::Reset, m.message_id());
    pair.inject(SERVER, CLIENT, &rst);
    assert!(pair.client_events.iter().any(|e| matches!(
        e,
        Event::RequestFailed { request, error: crate::RequestError::Reset } if *request == req
    )));
}
