//! Reliable transports (RFC 8323) through the Pair harness: CSM, signaling, requests
//! without a message layer, Observe and Block-wise over a connection, and aborts.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::time::Duration;

use corium_wire::{
    signal_option, BlockValue, Code, Framing, OptionNumber, StreamError, StreamMessage,
};

use super::pair::{Addr, Pair, CLIENT, SERVER};
use crate::{
    AbortReason, ConnectionEnd, EndpointConfig, Event, IncomingRequest, NotifyOptions,
    ObservationEndReason, Request, RequestError, RequestOptions, Response,
};

fn get(path: &str) -> Request {
    let mut r = Request::new(Code::GET);
    r.set_path(path);
    r
}

fn tcp_pair(seed: u64) -> Pair {
    Pair::connected(
        seed,
        Framing::Tcp,
        EndpointConfig::default(),
        EndpointConfig::default(),
    )
}

fn short() -> Duration {
    Duration::from_millis(100)
}

/// The messages `from` put on the connection, parsed.
fn messages(pair: &Pair, from: Addr, framing: Framing) -> Vec<(Code, Vec<u8>, Vec<u8>)> {
    pair.sent_by(from)
        .iter()
        .map(|(_, b)| {
            let m = StreamMessage::parse(framing, b, 64).expect("well-formed");
            (m.code(), m.token().to_vec(), m.payload().to_vec())
        })
        .collect()
}

fn server_ended(pair: &Pair) -> Vec<ConnectionEnd> {
    pair.server_events
        .iter()
        .filter_map(|e| match e {
            Event::ConnectionEnded { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn each_side_sends_its_csm_first() {
    for framing in [Framing::Tcp, Framing::WebSocket] {
        let mut pair = Pair::connected(
            1,
            framing,
            EndpointConfig::default(),
            EndpointConfig::default(),
        );
        let id = pair.send(get("/hello"), RequestOptions::default());
        pair.run_for(short());
        assert_eq!(pair.response(id).code, Code::CONTENT);
        for side in [CLIENT, SERVER] {
            let sent = pair.sent_by(side);
            let csm = StreamMessage::parse(framing, &sent[0].1, 8).unwrap();
            assert_eq!(csm.code(), Code::CSM, "first message of {side}");
            assert_eq!(csm.option_uint(signal_option::MAX_MESSAGE_SIZE), Some(1152));
            assert!(csm.option(signal_option::BLOCK_WISE_TRANSFER).is_some());
        }
        // RFC 8323 §3.2: no type and no message ID; the request is code + token + path.
        let request = &pair.sent_by(CLIENT)[1].1;
        let m = StreamMessage::parse(framing, request, 8).unwrap();
        assert_eq!(m.code(), Code::GET);
        assert_eq!(m.option(OptionNumber::URI_PATH), Some(&b"hello"[..]));
        assert_eq!(
            pair.server
                .peer_capabilities(&CLIENT)
                .unwrap()
                .max_message_size,
            1152
        );
        assert!(pair.client.peer_capabilities(&SERVER).unwrap().csm_received);
    }
}

#[test]
fn identical_requests_are_not_deduplicated() {
    // Without message IDs there is nothing to deduplicate (RFC 8323 §3.2): two equal
    // requests are two requests.
    let mut pair = tcp_pair(2);
    let a = pair.send(get("/x"), RequestOptions::default());
    let b = pair.send(get("/x"), RequestOptions::default());
    pair.run_for(short());
    assert_eq!(pair.server_requests.len(), 2);
    assert_eq!(pair.response(a).code, Code::CONTENT);
    assert_eq!(pair.response(b).code, Code::CONTENT);
    // No NSTART queueing either: both were on the wire at once.
    assert_eq!(pair.sent_by(CLIENT).len(), 3);
    assert_eq!(pair.server.stats().dedup_entries, 0);
}

#[test]
fn nothing_is_retransmitted() {
    let mut pair = tcp_pair(3);
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| None);
    let id = pair.send(
        get("/slow"),
        RequestOptions {
            timeout: Some(Duration::from_secs(30)),
            ..Default::default()
        },
    );
    pair.run_for(Duration::from_secs(60));
    assert_eq!(pair.sent_by(CLIENT).len(), 2, "CSM and the request, once");
    assert_eq!(pair.sent_by(SERVER).len(), 1, "CSM only: no empty ACK");
    assert!(matches!(
        pair.outcome(id),
        Some(Event::RequestFailed {
            error: RequestError::Timeout,
            ..
        })
    ));
}

#[test]
fn ping_and_pong_match_rfc8323_figures() {
    let mut pair = tcp_pair(4);
    // Figure 11 → Figure 12: the Pong echoes the Ping's token.
    let before = pair.sent_by(SERVER).len();
    pair.inject(CLIENT, SERVER, &[0x01, 0xe2, 0x42]);
    let sent = pair.sent_by(SERVER);
    assert_eq!(sent.len(), before + 1);
    assert_eq!(&sent[before].1[..], &[0x01, 0xe3, 0x42]);
    // Custody asked, Custody given (§5.4.1).
    pair.inject(CLIENT, SERVER, &[0x11, 0xe2, 0x43, 0x20]);
    assert_eq!(
        &pair.sent_by(SERVER).last().unwrap().1[..],
        &[0x11, 0xe3, 0x43, 0x20]
    );
    // The client's own ping completes with the Pong.
    let ping = pair.client.ping(pair.now, SERVER).unwrap();
    pair.run_for(short());
    assert!(matches!(pair.outcome(ping), Some(Event::Pong { .. })));
    // Empty messages are keep-alives, ignored (§5.4).
    let before = pair.sent_by(SERVER).len();
    pair.inject(CLIENT, SERVER, &[0x00, 0x00]);
    assert_eq!(pair.sent_by(SERVER).len(), before);
    assert!(server_ended(&pair).is_empty());
}

/// A server connection that has received nothing yet.
fn fresh_server(seed: u64) -> Pair {
    let mut pair = Pair::new(
        seed,
        EndpointConfig::default(),
        EndpointConfig {
            framing: Some(Framing::Tcp),
            ..EndpointConfig::default()
        },
    );
    pair.server.handle_connected(pair.now, CLIENT);
    pair
}

fn last_abort(pair: &Pair) -> StreamMessage<'static> {
    let bytes = pair.sent_by(SERVER).last().unwrap().1.clone();
    let leaked: &'static [u8] = Box::leak(bytes.to_vec().into_boxed_slice());
    let m = StreamMessage::parse(Framing::Tcp, leaked, 8).unwrap();
    assert_eq!(m.code(), Code::ABORT);
    m
}

#[test]
fn a_request_before_the_csm_aborts() {
    let mut pair = fresh_server(5);
    // GET /x without a CSM first (RFC 8323 §3.3).
    pair.inject(CLIENT, SERVER, &[0x20, 0x01, 0xb1, b'x']);
    let abort = last_abort(&pair);
    assert_eq!(abort.payload(), b"CSM expected as the first message");
    assert_eq!(pair.closed, [(SERVER, CLIENT)]);
    assert!(pair.server_requests.is_empty());
    assert_eq!(
        server_ended(&pair),
        [ConnectionEnd::Aborted(AbortReason::MissingCsm)]
    );
    assert_eq!(pair.server.connection_count(), 0);
}

#[test]
fn bad_csm_options_abort_with_bad_csm_option() {
    // An unknown critical CSM option (9), and a Max-Message-Size of 0.
    for (csm, option) in [
        (&[0x10u8, 0xe1, 0x90][..], 9u32),
        (&[0x10, 0xe1, 0x20][..], 2),
    ] {
        let mut pair = fresh_server(6);
        pair.inject(CLIENT, SERVER, csm);
        let abort = last_abort(&pair);
        assert_eq!(
            abort.option_uint(signal_option::BAD_CSM_OPTION),
            Some(option)
        );
        assert_eq!(pair.closed, [(SERVER, CLIENT)]);
    }
    // An unknown elective CSM option (8) is ignored.
    let mut pair = fresh_server(7);
    pair.inject(CLIENT, SERVER, &[0x10, 0xe1, 0x80]);
    assert!(pair.closed.is_empty());
    assert!(pair.server.peer_capabilities(&CLIENT).unwrap().csm_received);
}

#[test]
fn malformed_messages_and_oversized_frames_abort() {
    let mut pair = tcp_pair(8);
    // Payload marker without payload: a syntax violation (§5.6).
    pair.inject(CLIENT, SERVER, &[0x10, 0x01, 0xff]);
    assert_eq!(
        last_abort(&pair).payload(),
        b"payload marker followed by no payload"
    );
    let mut pair = tcp_pair(9);
    pair.server.handle_stream_error(
        pair.now,
        CLIENT,
        StreamError::TooLarge {
            len: 4_295_033_100,
            max: 1152,
        },
    );
    pair.run_for(short());
    assert!(core::str::from_utf8(last_abort(&pair).payload())
        .unwrap()
        .contains("exceeds the limit of 1152"));
    assert_eq!(pair.server.connection_count(), 0);
}

#[test]
fn closing_fails_requests_and_ends_observations() {
    let mut pair = tcp_pair(10);
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| None);
    let obs_req = pair.send(
        get("/obs"),
        RequestOptions {
            observe: true,
            ..Default::default()
        },
    );
    pair.run_for(short());
    let incoming = pair.server_requests[0].clone();
    let obs = pair
        .server
        .respond_observe(
            pair.now,
            incoming.id,
            Response::with_payload(Code::CONTENT, b"0".to_vec()),
        )
        .unwrap();
    pair.run_for(short());
    // Notifications over a connection: never Confirmable, so also none every 24 h.
    for i in 1..=3u8 {
        pair.server
            .notify(
                pair.now,
                obs,
                Response::with_payload(Code::CONTENT, alloc::vec![b'0' + i]),
                NotifyOptions { confirmable: true },
            )
            .unwrap();
        pair.run_for(short());
    }
    let got: Vec<_> = pair
        .client_events
        .iter()
        .filter_map(|e| match e {
            Event::Response {
                request, response, ..
            } if *request == obs_req => Some(response.payload.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        [b"0".to_vec(), b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]
    );
    let pending = pair.send(get("/never"), RequestOptions::default());
    pair.run_for(short());
    // The server goes away: the client's requests fail, the relation ends.
    pair.server.abort(pair.now, CLIENT, AbortReason::Local);
    pair.run_for(short());
    for id in [obs_req, pending] {
        assert!(pair.client_events.iter().any(|e| matches!(
            e,
            Event::RequestFailed {
                request,
                error: RequestError::ConnectionClosed,
            } if *request == id
        )));
    }
    assert!(pair.server_events.iter().any(|e| matches!(
        e,
        Event::ObservationEnded {
            reason: ObservationEndReason::ConnectionClosed,
            ..
        }
    )));
    assert_eq!(pair.server.observation_count(), 0);
    assert_eq!(pair.server.stats().server_exchanges, 0);
    assert_eq!(pair.client.stats().client_exchanges, 0);
    assert!(pair.client_events.iter().any(|e| matches!(
        e,
        Event::ConnectionEnded {
            reason: ConnectionEnd::AbortedByPeer { .. },
            ..
        }
    )));
}

#[test]
fn blocks_fit_the_peer_max_message_size() {
    let client = EndpointConfig {
        max_message_size: 600,
        ..EndpointConfig::default()
    };
    let mut pair = Pair::connected(11, Framing::Tcp, client, EndpointConfig::default());
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| {
        Some((
            Duration::ZERO,
            Response::with_payload(Code::CONTENT, alloc::vec![7u8; 3000]),
        ))
    });
    let id = pair.send(get("/large"), RequestOptions::default());
    pair.run_for(short());
    let response = pair.response(id);
    // 512-byte blocks with 128 bytes of headroom exceed 600: 256-byte blocks (SZX 4).
    let block = response
        .options
        .get(OptionNumber::BLOCK2)
        .and_then(BlockValue::decode)
        .unwrap();
    assert_eq!((block.num, block.more, block.szx), (0, true, 4));
    assert_eq!(response.payload.len(), 256);
    assert!(pair.sent_by(SERVER).iter().all(|(_, b)| b.len() <= 600));
}

#[test]
fn release_closes_after_outstanding_requests_are_answered() {
    let mut pair = tcp_pair(12);
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| None);
    pair.send(get("/pending"), RequestOptions::default());
    pair.run_for(short());
    // Release with Hold-Off 30 (option 4, one byte).
    pair.inject(CLIENT, SERVER, &[0x20, 0xe4, 0x41, 30]);
    assert!(pair.closed.is_empty(), "a request is still unanswered");
    assert!(pair.server_events.iter().any(|e| matches!(
        e,
        Event::Released {
            hold_off: Some(30),
            ..
        }
    )));
    let id = pair.server_requests[0].id;
    pair.server
        .respond(pair.now, id, Response::new(Code::CONTENT))
        .unwrap();
    pair.run_for(short());
    assert_eq!(pair.closed.first(), Some(&(SERVER, CLIENT)));
    // The response went out before the close.
    let sent = messages(&pair, SERVER, Framing::Tcp);
    assert_eq!(sent.last().unwrap().0, Code::CONTENT);
}

#[test]
fn observe_values_are_ignored_on_reception() {
    // RFC 8323 §7.1: the Observe value of a notification over a reliable transport
    // carries no order; 9, 4, 1 are three fresh notifications, not two stale ones.
    let mut pair = tcp_pair(13);
    pair.responder = Box::new(|_: &IncomingRequest<Addr>| None);
    let req = pair.send(
        get("/obs"),
        RequestOptions {
            observe: true,
            ..Default::default()
        },
    );
    pair.run_for(short());
    let token = pair.client.request_token(req).unwrap();
    for (value, body) in [(9u8, b'a'), (4, b'b'), (1, b'c')] {
        // 2.05, Observe (6) = value, payload.
        let mut msg = alloc::vec![0u8; 0];
        let body_len = 2 + 2;
        msg.push(((body_len as u8) << 4) | token.as_bytes().len() as u8);
        msg.push(Code::CONTENT.0);
        msg.extend_from_slice(token.as_bytes());
        msg.extend_from_slice(&[0x61, value, 0xff, body]);
        pair.inject(SERVER, CLIENT, &msg);
    }
    let got: Vec<Vec<u8>> = pair
        .client_events
        .iter()
        .filter_map(|e| match e {
            Event::Response {
                request, response, ..
            } if *request == req => Some(response.payload.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(got, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
}

#[test]
fn keepalive_ping_detects_a_silent_peer() {
    // RFC 8323 §5.4: a connection silent for the keep-alive period gets a Ping; the
    // peer's Pong keeps it; a peer that stays silent is aborted.
    let server = EndpointConfig {
        keepalive_ping: Some(Duration::from_secs(10)),
        ..EndpointConfig::default()
    };
    let mut pair = Pair::connected(14, Framing::Tcp, EndpointConfig::default(), server);
    pair.run_for(Duration::from_secs(35));
    let sent = messages(&pair, SERVER, Framing::Tcp);
    assert!(
        sent.iter().any(|(c, _, _)| *c == Code::PING),
        "a Ping went out"
    );
    let answered = messages(&pair, CLIENT, Framing::Tcp);
    assert!(
        answered.iter().any(|(c, _, _)| *c == Code::PONG),
        "the client answered"
    );
    assert!(pair.closed.is_empty(), "an answering peer is kept");
    // The client goes silent (everything it sends is lost).
    pair.faults.loss = 1.0;
    pair.run_for(Duration::from_secs(40));
    assert_eq!(pair.closed.first(), Some(&(SERVER, CLIENT)));
    assert_eq!(
        server_ended(&pair),
        [ConnectionEnd::Aborted(AbortReason::PeerUnresponsive)]
    );
}
