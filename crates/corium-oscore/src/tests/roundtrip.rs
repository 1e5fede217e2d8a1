//! Behaviour: mirrored client and server contexts protecting and verifying each other's
//! messages, and every way verification must fail.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use std::sync::{Arc, Mutex};

use corium_proto::wire::{Code, OptionNumber};
use corium_proto::{Request, Response};

use crate::{
    unprotect_request, AeadAlgorithm, BlockwiseMode, ContextError, ContextSetError, OptionError,
    PersistError, ProtectError, RequestBinding, Role, SecurityContext, SecurityContextSet,
    SequenceStore, UnprotectError, WindowState, MAX_PARTIAL_IV,
};

const SECRET: &[u8] = &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
const SALT: &[u8] = &[0x9e, 0x7c, 0xa9, 0x22, 0x23, 0x78, 0x63, 0x40];
const CLIENT_ID: &[u8] = &[0x0c];
const SERVER_ID: &[u8] = &[0x5e, 0x77];

fn pair_with(aead: AeadAlgorithm) -> (SecurityContext, SecurityContext) {
    let client = SecurityContext::builder(SECRET, CLIENT_ID, SERVER_ID)
        .master_salt(SALT)
        .aead(aead)
        .build()
        .unwrap();
    let server = SecurityContext::builder(SECRET, SERVER_ID, CLIENT_ID)
        .master_salt(SALT)
        .aead(aead)
        .build()
        .unwrap();
    (client, server)
}

fn pair() -> (SecurityContext, SecurityContext) {
    pair_with(AeadAlgorithm::default())
}

fn get(path: &str) -> Request {
    let mut r = Request::new(Code::GET);
    r.options
        .push(OptionNumber::URI_HOST, b"example.com".to_vec());
    r.options.push_uint(OptionNumber::URI_PORT, 5684);
    r.set_path(path);
    r
}

fn observe_request() -> Request {
    let mut r = get("/obs");
    r.options.push_uint(OptionNumber::OBSERVE, 0);
    r
}

fn notification(seq: u32, body: &str) -> Response {
    let mut r = Response::with_payload(Code::CONTENT, body);
    r.options.push_uint(OptionNumber::OBSERVE, seq);
    r.options.push_uint(OptionNumber::MAX_AGE, 30);
    r
}

/// Protect at the client, verify at the server; returns everything for the response leg.
fn exchange(
    client: &mut SecurityContext,
    server: &mut SecurityContext,
    request: &Request,
) -> (Request, RequestBinding, RequestBinding) {
    let (outer, cb) = client.protect_request(request).unwrap();
    let (inner, sb) = server.unprotect_request(&outer).unwrap();
    assert_eq!(&inner, request);
    (outer, cb, sb)
}

#[test]
fn roundtrip_every_aead() {
    for aead in [
        AeadAlgorithm::AesCcm16_64_128,
        AeadAlgorithm::A128Gcm,
        AeadAlgorithm::ChaCha20Poly1305,
    ] {
        let (mut client, mut server) = pair_with(aead);
        let mut request = Request::new(Code::POST);
        request.set_path("/a/b");
        request
            .options
            .push(OptionNumber::URI_QUERY, b"x=1".to_vec());
        request.options.push(OptionNumber::ETAG, vec![1, 2]);
        request.options.push(OptionNumber::IF_MATCH, vec![3]);
        request.options.push_uint(OptionNumber::CONTENT_FORMAT, 50);
        request.options.push_uint(OptionNumber::ACCEPT, 60);
        request.options.push_uint(OptionNumber::NO_RESPONSE, 2);
        request.options.push(OptionNumber(65000), vec![9; 300]);
        request.payload = b"{\"a\":1}".to_vec();
        let (outer, mut cb, mut sb) = exchange(&mut client, &mut server, &request);
        assert_eq!(outer.method, Code::POST);
        // Code, If-Match, ETag, 2 × Uri-Path, Content-Format, Uri-Query, Accept, No-Response
        // (1-byte delta extension), option 65000 (2-byte delta and length extensions),
        // payload marker and payload, then the tag.
        assert_eq!(
            outer.payload.len(),
            1 + 2 + 3 + 2 + 2 + 2 + 4 + 2 + 3 + 305 + 1 + 7 + aead.tag_len()
        );

        let mut response = Response::with_payload(Code::CREATED, "done");
        response
            .options
            .push(OptionNumber::LOCATION_PATH, b"new".to_vec());
        response.options.push_uint(OptionNumber::MAX_AGE, 10);
        let outer = server.protect_response(&mut sb, &response, false).unwrap();
        assert_eq!(outer.code, Code::CHANGED);
        // Only the OSCORE option is visible; Max-Age and Location-Path are Inner.
        assert_eq!(outer.options.len(), 1);
        assert_eq!(outer.options.get(OptionNumber::OSCORE), Some(&[][..]));
        assert_eq!(
            client.unprotect_response(&mut cb, &outer).unwrap(),
            response
        );
        assert!(cb.is_finished());
    }
}

#[test]
fn outer_message_hides_inner_fields() {
    let (mut client, mut server) = pair();
    let mut request = get("/secret/path");
    request.method = Code::DELETE;
    request
        .options
        .push(OptionNumber::URI_QUERY, b"q=1".to_vec());
    request
        .options
        .push(OptionNumber::PROXY_SCHEME, b"coap".to_vec());
    request.options.push_uint(OptionNumber::HOP_LIMIT, 5);
    request.options.push(OptionNumber::ECHO, vec![0xec; 8]);
    let (outer, _cb, _sb) = exchange(&mut client, &mut server, &request);
    assert_eq!(outer.method, Code::POST);
    let visible: Vec<OptionNumber> = outer.options.iter().map(|(n, _)| n).collect();
    assert_eq!(
        visible,
        [
            OptionNumber::URI_HOST,
            OptionNumber::URI_PORT,
            OptionNumber::OSCORE,
            OptionNumber::HOP_LIMIT,
            OptionNumber::PROXY_SCHEME
        ]
    );
    assert!(!outer.payload.windows(6).any(|w| w == b"secret"));
    // The OSCORE option carries kid and Partial IV 0.
    assert_eq!(
        outer.options.get(OptionNumber::OSCORE).unwrap(),
        [0x09, 0x00, 0x0c]
    );
}

#[test]
fn outer_code_and_class_e_outer_options_are_discarded() {
    let (mut client, mut server) = pair();
    let request = get("/x");
    let (mut outer, _) = client.protect_request(&request).unwrap();
    // A proxy rewrites the Outer Code and adds Class E options: they are discarded (§8.2 step 1).
    outer.method = Code::PUT;
    outer.options.push(OptionNumber::URI_PATH, b"evil".to_vec());
    outer.options.push_uint(OptionNumber::MAX_AGE, 0);
    outer.options.push(OptionNumber::ETAG, vec![1]);
    let (inner, _) = server.unprotect_request(&outer).unwrap();
    assert_eq!(inner, request);
}

#[test]
fn replay_is_rejected_with_4_01() {
    let (mut client, mut server) = pair();
    let (outer, _) = client.protect_request(&get("/x")).unwrap();
    server.unprotect_request(&outer).unwrap();
    let err = server.unprotect_request(&outer).unwrap_err();
    assert_eq!(err, UnprotectError::Replay);
    let resp = err.error_response();
    assert_eq!(resp.code, Code::UNAUTHORIZED);
    assert_eq!(resp.payload, b"Replay detected");
    assert_eq!(resp.options.get_uint(OptionNumber::MAX_AGE), Some(0));
}

#[test]
fn tampering_is_detected() {
    let (mut client, mut server) = pair();
    let (outer, _) = client.protect_request(&get("/x")).unwrap();
    // Every single-bit flip of the ciphertext fails to decrypt.
    for i in 0..outer.payload.len() * 8 {
        let mut t = outer.clone();
        t.payload[i / 8] ^= 1 << (i % 8);
        let err = server.unprotect_request(&t).unwrap_err();
        assert_eq!(err, UnprotectError::DecryptionFailed, "bit {i}");
        assert_eq!(err.response_code(), Code::BAD_REQUEST); // RFC 8613 §8.2 step 6
        assert_eq!(err.error_response().payload, b"Decryption failed");
    }
    // A changed Partial IV (integrity protected through the nonce and the AAD).
    let mut t = outer.clone();
    t.options.set(OptionNumber::OSCORE, vec![0x09, 0x01, 0x0c]);
    assert_eq!(
        server.unprotect_request(&t).unwrap_err(),
        UnprotectError::DecryptionFailed
    );
    // A truncated ciphertext.
    let mut t = outer.clone();
    t.payload.truncate(3);
    assert_eq!(
        server.unprotect_request(&t).unwrap_err(),
        UnprotectError::DecryptionFailed
    );
    // None of these moved the replay window: the genuine request still verifies.
    server.unprotect_request(&outer).unwrap();
}

#[test]
fn unknown_kid_or_kid_context_is_4_01() {
    let (mut client, mut server) = pair();
    let (outer, _) = client.protect_request(&get("/x")).unwrap();
    for option in [
        vec![0x09, 0x00, 0x0d],
        vec![0x09, 0x00],
        vec![0x19, 0x00, 0x01, 0xaa, 0x0c],
    ] {
        let mut t = outer.clone();
        t.options.set(OptionNumber::OSCORE, option);
        let err = server.unprotect_request(&t).unwrap_err();
        assert_eq!(err, UnprotectError::UnknownContext);
        assert_eq!(err.response_code(), Code::UNAUTHORIZED);
        assert_eq!(err.error_response().payload, b"Security context not found");
    }
    // A context of another pair does not verify it either.
    let mut other = SecurityContext::builder(b"another secret", SERVER_ID, CLIENT_ID)
        .build()
        .unwrap();
    assert_eq!(
        other.unprotect_request(&outer).unwrap_err(),
        UnprotectError::DecryptionFailed
    );
}

#[test]
fn malformed_or_missing_oscore_option_is_4_02() {
    let (mut client, mut server) = pair();
    let (outer, _) = client.protect_request(&get("/x")).unwrap();
    let cases: Vec<(Option<Vec<u8>>, UnprotectError)> = vec![
        (None, UnprotectError::MissingOscoreOption),
        (
            Some(vec![0x09]),
            UnprotectError::MalformedOscoreOption(OptionError::Truncated),
        ),
        (
            Some(vec![0x0d, 0, 0]),
            UnprotectError::MalformedOscoreOption(OptionError::Truncated),
        ),
        (
            Some(vec![0x19, 0x00, 0x05]),
            UnprotectError::MalformedOscoreOption(OptionError::Truncated),
        ),
        (
            Some(vec![0x29, 0x00, 0x0c]),
            UnprotectError::MalformedOscoreOption(OptionError::ReservedFlagBits),
        ),
        (
            Some(vec![0x0e, 0x00, 0x0c]),
            UnprotectError::MalformedOscoreOption(OptionError::ReservedPartialIvLength),
        ),
        (
            Some(vec![0x00]),
            UnprotectError::MalformedOscoreOption(OptionError::ZeroFlagsNotEmpty),
        ),
        // Requests need both kid and Partial IV (§5).
        (Some(vec![]), UnprotectError::MissingKidOrPartialIv),
        (
            Some(vec![0x01, 0x00]),
            UnprotectError::MissingKidOrPartialIv,
        ),
        (
            Some(vec![0x08, 0x0c]),
            UnprotectError::MissingKidOrPartialIv,
        ),
    ];
    for (option, expected) in cases {
        let mut t = outer.clone();
        t.options.remove(OptionNumber::OSCORE);
        if let Some(v) = &option {
            t.options.push(OptionNumber::OSCORE, v.clone());
        }
        let err = server.unprotect_request(&t).unwrap_err();
        assert_eq!(err, expected, "{option:02x?}");
        assert_eq!(err.response_code(), Code::BAD_OPTION);
        assert_eq!(err.error_response().payload, b"Failed to decode COSE");
    }
    // A repeated OSCORE option.
    let mut t = outer.clone();
    t.options.push(OptionNumber::OSCORE, vec![0x09, 0x00, 0x0c]);
    assert!(matches!(
        server.unprotect_request(&t),
        Err(UnprotectError::MalformedOscoreOption(_))
    ));
    // OSCORE option without payload (§2).
    let mut t = outer.clone();
    t.payload.clear();
    let err = server.unprotect_request(&t).unwrap_err();
    assert_eq!(err, UnprotectError::MissingPayload);
    assert_eq!(err.response_code(), Code::BAD_OPTION);
    // The genuine request was never consumed.
    server.unprotect_request(&outer).unwrap();
}

#[test]
fn replay_window_edges_over_the_wire() {
    let (mut client, mut server) = pair();
    let outers: Vec<Request> = (0..40)
        .map(|i| {
            client
                .protect_request(&get(&std::format!("/r{i}")))
                .unwrap()
                .0
        })
        .collect();
    // Deliver number 39 first, then the oldest ones.
    server.unprotect_request(&outers[39]).unwrap();
    assert_eq!(server.replay_window().highest(), Some(39));
    // 39 - 31 = 8 is the oldest number still inside the default window of 32.
    assert_eq!(
        server.unprotect_request(&outers[7]).unwrap_err(),
        UnprotectError::Replay
    );
    assert_eq!(
        server.unprotect_request(&outers[0]).unwrap_err(),
        UnprotectError::Replay
    );
    let (inner, _) = server.unprotect_request(&outers[8]).unwrap();
    assert_eq!(inner.path_segments().next(), Some(&b"r8"[..]));
    assert_eq!(
        server.unprotect_request(&outers[8]).unwrap_err(),
        UnprotectError::Replay
    );
    for o in &outers[9..39] {
        server.unprotect_request(o).unwrap();
    }
    for o in &outers[8..40] {
        assert_eq!(
            server.unprotect_request(o).unwrap_err(),
            UnprotectError::Replay
        );
    }
}

#[test]
fn custom_window_size() {
    let mut client = SecurityContext::builder(SECRET, CLIENT_ID, SERVER_ID)
        .build()
        .unwrap();
    let mut server = SecurityContext::builder(SECRET, SERVER_ID, CLIENT_ID)
        .replay_window(4)
        .build()
        .unwrap();
    let outers: Vec<Request> = (0..6)
        .map(|_| client.protect_request(&get("/")).unwrap().0)
        .collect();
    server.unprotect_request(&outers[5]).unwrap();
    assert_eq!(
        server.unprotect_request(&outers[1]).unwrap_err(),
        UnprotectError::Replay
    );
    server.unprotect_request(&outers[2]).unwrap();
}

#[test]
fn observe_registration_and_notifications() {
    let (mut client, mut server) = pair();
    let request = observe_request();
    let (outer, mut cb, mut sb) = exchange(&mut client, &mut server, &request);
    // §4.1.3.5: Outer Code FETCH, Outer Observe with the original value (and the
    // Inner Observe too, which the server recovered above).
    assert_eq!(outer.method, Code::FETCH);
    assert_eq!(outer.options.get_uint(OptionNumber::OBSERVE), Some(0));
    assert!(cb.is_observe() && sb.is_observe());

    // The first notification may reuse the request nonce (no Partial IV).
    let first = server
        .protect_response(&mut sb, &notification(7, "n0"), false)
        .unwrap();
    assert_eq!(first.code, Code::CONTENT);
    assert_eq!(first.options.get_uint(OptionNumber::OBSERVE), Some(7));
    assert_eq!(first.options.get(OptionNumber::OSCORE), Some(&[][..]));
    assert!(!first.options.contains(OptionNumber::MAX_AGE));
    // Later notifications need their own Partial IV (§4.1.3.5.2).
    assert_eq!(
        server.protect_response(&mut sb, &notification(8, "bad"), false),
        Err(ProtectError::NonceReuse)
    );
    let n1 = server
        .protect_response(&mut sb, &notification(8, "n1"), true)
        .unwrap();
    let n2 = server
        .protect_response(&mut sb, &notification(9, "n2"), true)
        .unwrap();
    let n3 = server
        .protect_response(&mut sb, &notification(10, "n3"), true)
        .unwrap();
    assert_eq!(
        n1.options.get(OptionNumber::OSCORE),
        Some(&[0x01, 0x00][..])
    );
    assert_eq!(
        n3.options.get(OptionNumber::OSCORE),
        Some(&[0x01, 0x02][..])
    );

    // The client: Observe values follow the Partial IVs (no PIV = oldest = 0).
    let got = client.unprotect_response(&mut cb, &first).unwrap();
    assert_eq!(got.payload, b"n0");
    assert_eq!(got.options.get_uint(OptionNumber::OBSERVE), Some(0));
    assert_eq!(got.options.get_uint(OptionNumber::MAX_AGE), Some(30));
    assert_eq!(cb.notification_number(), None);
    let got = client.unprotect_response(&mut cb, &n2).unwrap();
    assert_eq!(got.options.get_uint(OptionNumber::OBSERVE), Some(2));
    assert_eq!(cb.notification_number(), Some(1));
    // Reordered: an older notification still verifies once, with a lower Observe value.
    let got = client.unprotect_response(&mut cb, &n1).unwrap();
    assert_eq!(got.options.get_uint(OptionNumber::OBSERVE), Some(1));
    assert_eq!(cb.notification_number(), Some(1));
    // Replays are refused (§7.4.1), as is a second notification without Partial IV.
    assert_eq!(
        client.unprotect_response(&mut cb, &n2),
        Err(UnprotectError::Replay)
    );
    assert_eq!(
        client.unprotect_response(&mut cb, &first),
        Err(UnprotectError::NonceReuse)
    );
    let got = client.unprotect_response(&mut cb, &n3).unwrap();
    assert_eq!(got.payload, b"n3");
    assert_eq!(cb.notification_number(), Some(2));
    assert!(!cb.is_finished());

    // A final response without Observe ends the observation.
    let last = server
        .protect_response(&mut sb, &Response::new(Code::NOT_FOUND), true)
        .unwrap();
    assert_eq!(last.code, Code::CHANGED);
    assert_eq!(
        client.unprotect_response(&mut cb, &last).unwrap().code,
        Code::NOT_FOUND
    );
    assert!(cb.is_finished());
    let late = server
        .protect_response(&mut sb, &notification(11, "n4"), true)
        .unwrap();
    assert_eq!(
        client.unprotect_response(&mut cb, &late),
        Err(UnprotectError::ResponseAlreadyReceived)
    );
}

#[test]
fn notification_piv_order_beyond_the_window() {
    let (mut client, mut server) = pair();
    let (_, mut cb, mut sb) = exchange(&mut client, &mut server, &observe_request());
    let ns: Vec<Response> = (0..40)
        .map(|i| {
            server
                .protect_response(&mut sb, &notification(i, "x"), true)
                .unwrap()
        })
        .collect();
    client.unprotect_response(&mut cb, &ns[39]).unwrap();
    // Partial IV 39 - 32 = 7 is older than the window: treated as a replay.
    assert_eq!(
        client.unprotect_response(&mut cb, &ns[7]),
        Err(UnprotectError::Replay)
    );
    client.unprotect_response(&mut cb, &ns[8]).unwrap();
}

#[test]
fn observe_cancellation_is_a_normal_exchange() {
    let (mut client, mut server) = pair();
    let mut cancel = get("/obs");
    cancel.options.push_uint(OptionNumber::OBSERVE, 1);
    let (outer, mut cb, mut sb) = exchange(&mut client, &mut server, &cancel);
    assert_eq!(outer.method, Code::FETCH);
    assert_eq!(outer.options.get_uint(OptionNumber::OBSERVE), Some(1));
    assert!(!cb.is_observe() && !sb.is_observe());
    let resp = server
        .protect_response(
            &mut sb,
            &Response::with_payload(Code::CONTENT, "bye"),
            false,
        )
        .unwrap();
    assert_eq!(
        client.unprotect_response(&mut cb, &resp).unwrap().payload,
        b"bye"
    );
}

#[test]
fn inner_observe_in_a_non_observe_response_is_refused() {
    let (mut client, mut server) = pair();
    let (_, mut cb, mut sb) = exchange(&mut client, &mut server, &get("/x"));
    assert_eq!(
        server.protect_response(&mut sb, &notification(1, "x"), false),
        Err(ProtectError::UnexpectedObserve)
    );
    // A misbehaving server (simulated) sends one anyway: the client stops processing.
    sb.force_observe();
    let resp = server
        .protect_response(&mut sb, &notification(1, "x"), false)
        .unwrap();
    assert_eq!(
        client.unprotect_response(&mut cb, &resp),
        Err(UnprotectError::UnexpectedObserve)
    );
}

#[test]
fn one_response_per_non_observe_request() {
    let (mut client, mut server) = pair();
    let (_, mut cb, mut sb) = exchange(&mut client, &mut server, &get("/x"));
    let r1 = server
        .protect_response(&mut sb, &Response::new(Code::CONTENT), true)
        .unwrap();
    let r2 = server
        .protect_response(&mut sb, &Response::new(Code::VALID), false)
        .unwrap();
    assert_eq!(
        server.protect_response(&mut sb, &Response::new(Code::VALID), false),
        Err(ProtectError::NonceReuse)
    );
    client.unprotect_response(&mut cb, &r1).unwrap();
    assert_eq!(
        client.unprotect_response(&mut cb, &r2),
        Err(UnprotectError::ResponseAlreadyReceived)
    );
}

#[test]
fn response_verification_failures() {
    let (mut client, mut server) = pair();
    let (_, mut cb, mut sb) = exchange(&mut client, &mut server, &get("/x"));
    let resp = server
        .protect_response(&mut sb, &Response::with_payload(Code::CONTENT, "v"), false)
        .unwrap();
    let mut t = resp.clone();
    t.payload[0] ^= 0x80;
    assert_eq!(
        client.unprotect_response(&mut cb, &t),
        Err(UnprotectError::DecryptionFailed)
    );
    let mut t = resp.clone();
    t.options.set(OptionNumber::OSCORE, vec![0x02, 0x00]);
    assert_eq!(
        client.unprotect_response(&mut cb, &t),
        Err(UnprotectError::MalformedOscoreOption(
            OptionError::Truncated
        ))
    );
    let mut t = resp.clone();
    t.options.remove(OptionNumber::OSCORE);
    assert_eq!(
        client.unprotect_response(&mut cb, &t),
        Err(UnprotectError::MissingOscoreOption)
    );
    let mut t = resp.clone();
    t.payload.clear();
    assert_eq!(
        client.unprotect_response(&mut cb, &t),
        Err(UnprotectError::MissingPayload)
    );
    // A response bound to another request of the same context does not verify (§7.1).
    let (_, mut cb2, _) = exchange(&mut client, &mut server, &get("/y"));
    assert_eq!(
        client.unprotect_response(&mut cb2, &resp),
        Err(UnprotectError::DecryptionFailed)
    );
    // The failures above did not consume the binding.
    assert_eq!(
        client.unprotect_response(&mut cb, &resp).unwrap().payload,
        b"v"
    );
    // Bindings are not interchangeable between roles or contexts.
    assert_eq!(cb.role(), Role::Client);
    assert_eq!(sb.role(), Role::Server);
    assert_eq!(
        server.protect_response(&mut cb, &Response::new(Code::CONTENT), true),
        Err(ProtectError::BindingMismatch)
    );
    assert_eq!(
        client.unprotect_response(&mut sb, &resp),
        Err(UnprotectError::BindingMismatch)
    );
    let (mut other_client, _) = pair_with(AeadAlgorithm::A128Gcm);
    let mut other_binding = SecurityContext::builder(SECRET, &[0x77], &[0x78])
        .build()
        .unwrap()
        .protect_request(&get("/"))
        .unwrap()
        .1;
    assert_eq!(
        other_client.unprotect_response(&mut other_binding, &resp),
        Err(UnprotectError::BindingMismatch)
    );
}

#[test]
fn protect_refuses_invalid_messages() {
    let (mut client, mut server) = pair();
    let mut r = get("/x");
    r.method = Code::CONTENT;
    assert_eq!(
        client.protect_request(&r).unwrap_err(),
        ProtectError::InvalidCode
    );
    let mut r = get("/x");
    r.options.push(OptionNumber::OSCORE, vec![]);
    assert_eq!(
        client.protect_request(&r).unwrap_err(),
        ProtectError::NestedOscore
    );
    let mut r = Request::new(Code::GET);
    r.options
        .push(OptionNumber::PROXY_URI, b"coap://h/p#fragment".to_vec());
    assert_eq!(
        client.protect_request(&r).unwrap_err(),
        ProtectError::ProxyUriUnsupported
    );
    assert_eq!(
        client.sender_sequence_number(),
        0,
        "no sequence number consumed"
    );

    let (_, _, mut sb) = exchange(&mut client, &mut server, &get("/x"));
    assert_eq!(
        server.protect_response(&mut sb, &Response::new(Code::GET), false),
        Err(ProtectError::InvalidCode)
    );
    let mut resp = Response::new(Code::CONTENT);
    resp.options.push(OptionNumber::OSCORE, vec![]);
    assert_eq!(
        server.protect_response(&mut sb, &resp, false),
        Err(ProtectError::NestedOscore)
    );

    // AES-CCM-16-64-128 carries at most 65535 bytes of plaintext.
    let mut big = Request::new(Code::PUT);
    big.payload = vec![0; 70_000];
    let before = client.sender_sequence_number();
    assert_eq!(
        client.protect_request(&big).unwrap_err(),
        ProtectError::PlaintextTooLong
    );
    assert_eq!(
        client.sender_sequence_number(),
        before,
        "no number consumed"
    );
    // 1 code byte + marker + 65533 = 65535 bytes: the largest CCM plaintext.
    big.payload = vec![0; 65533];
    let (outer, _) = client.protect_request(&big).unwrap();
    assert_eq!(server.unprotect_request(&outer).unwrap().0, big);
    big.payload.push(0);
    assert_eq!(
        client.protect_request(&big).unwrap_err(),
        ProtectError::PlaintextTooLong
    );
    let (mut gcm_client, mut gcm_server) = pair_with(AeadAlgorithm::A128Gcm);
    let (outer, _) = gcm_client.protect_request(&big).unwrap();
    assert_eq!(gcm_server.unprotect_request(&outer).unwrap().0, big);
}

#[test]
fn malformed_plaintext_from_a_key_holder() {
    // Only someone with the key can produce this; it still must not panic or be accepted.
    let (mut client, mut server) = pair();
    let (outer, _) = client.protect_request(&get("/x")).unwrap();
    let piv = crate::PartialIv::from_u64(0).unwrap();
    for plaintext in [
        vec![],                 // no code
        vec![0x45],             // a response code in a request
        vec![0x01, 0xff],       // payload marker without payload
        vec![0x01, 0xdd],       // truncated option
        vec![0x01, 0x90],       // nested OSCORE option
        vec![0x00, 0xb1, b'x'], // Empty code
    ] {
        let mut ct = plaintext.clone();
        let nonce = client.nonce(CLIENT_ID, &piv);
        let aad = client.aad(CLIENT_ID, &piv);
        client
            .sender_cipher
            .seal(&nonce[..13], &aad, &mut ct)
            .unwrap();
        let mut t = outer.clone();
        t.payload = ct;
        let mut fresh = SecurityContext::builder(SECRET, SERVER_ID, CLIENT_ID)
            .master_salt(SALT)
            .build()
            .unwrap();
        let err = fresh.unprotect_request(&t).unwrap_err();
        assert_eq!(err, UnprotectError::MalformedPlaintext, "{plaintext:02x?}");
        assert_eq!(err.response_code(), Code::BAD_REQUEST);
    }
    let _ = &mut server;
}

#[test]
fn block_options_follow_the_blockwise_mode() {
    let (mut client, mut server) = pair();
    let mut request = get("/large");
    request.options.push(OptionNumber::BLOCK2, vec![0x16]);
    request.options.push(OptionNumber::REQUEST_TAG, vec![0x01]);
    // Outer (default): visible to the block-wise layer below.
    let (outer, _) = client.protect_request(&request).unwrap();
    assert_eq!(outer.options.get(OptionNumber::BLOCK2), Some(&[0x16][..]));
    assert_eq!(
        outer.options.get(OptionNumber::REQUEST_TAG),
        Some(&[0x01][..])
    );
    // The receiver discards Outer Block options (the layer below consumed them, §8.2.1).
    let (inner, _) = server.unprotect_request(&outer).unwrap();
    assert!(!inner.options.contains(OptionNumber::BLOCK2));
    assert!(!inner.options.contains(OptionNumber::REQUEST_TAG));

    // Inner: encrypted, and delivered to the receiver.
    let mut client = SecurityContext::builder(SECRET, CLIENT_ID, SERVER_ID)
        .master_salt(SALT)
        .blockwise(BlockwiseMode::Inner)
        .sender_sequence_number(100)
        .build()
        .unwrap();
    assert_eq!(client.blockwise_mode(), BlockwiseMode::Inner);
    let (outer, _) = client.protect_request(&request).unwrap();
    assert!(!outer.options.contains(OptionNumber::BLOCK2));
    let (inner, _) = server.unprotect_request(&outer).unwrap();
    assert_eq!(inner, request);
}

#[test]
fn sequence_number_exhaustion() {
    let mut client = SecurityContext::builder(SECRET, CLIENT_ID, SERVER_ID)
        .sender_sequence_number(MAX_PARTIAL_IV)
        .build()
        .unwrap();
    let mut server = SecurityContext::builder(SECRET, SERVER_ID, CLIENT_ID)
        .build()
        .unwrap();
    let (outer, _) = client.protect_request(&get("/")).unwrap();
    assert_eq!(
        outer.options.get(OptionNumber::OSCORE).unwrap(),
        [0x0d, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0c]
    );
    let (_, mut sb) = server.unprotect_request(&outer).unwrap();
    assert_eq!(sb.partial_iv().value(), MAX_PARTIAL_IV);
    assert_eq!(
        client.protect_request(&get("/")).unwrap_err(),
        ProtectError::SequenceNumberExhausted
    );
    assert_eq!(
        client.protect_request(&get("/")).unwrap_err(),
        ProtectError::SequenceNumberExhausted
    );
    // Responses reusing the request nonce need no sequence number; fresh ones do.
    let mut exhausted_server = SecurityContext::builder(SECRET, SERVER_ID, CLIENT_ID)
        .sender_sequence_number(MAX_PARTIAL_IV)
        .build()
        .unwrap();
    exhausted_server
        .protect_response(&mut sb.clone(), &Response::new(Code::CONTENT), true)
        .unwrap();
    assert_eq!(
        exhausted_server.protect_response(&mut sb.clone(), &Response::new(Code::CONTENT), true),
        Err(ProtectError::SequenceNumberExhausted)
    );
    exhausted_server
        .protect_response(&mut sb, &Response::new(Code::CONTENT), false)
        .unwrap();
    assert_eq!(
        SecurityContext::builder(SECRET, CLIENT_ID, SERVER_ID)
            .sender_sequence_number(MAX_PARTIAL_IV + 1)
            .build()
            .unwrap_err(),
        ContextError::SequenceNumberOutOfRange
    );
}

#[derive(Clone, Default)]
struct MemoryStore {
    writes: Arc<Mutex<Vec<u64>>>,
    fail: Arc<Mutex<bool>>,
}

impl SequenceStore for MemoryStore {
    fn persist(&mut self, bound: u64) -> Result<(), PersistError> {
        if *self.fail.lock().unwrap() {
            return Err(PersistError);
        }
        self.writes.lock().unwrap().push(bound);
        Ok(())
    }
}

#[test]
fn sequence_numbers_persist_in_steps_and_resume_above_them() {
    let store = MemoryStore::default();
    let mut client = SecurityContext::builder(SECRET, CLIENT_ID, SERVER_ID)
        .sequence_store(Box::new(store.clone()), 10)
        .build()
        .unwrap();
    let mut server = SecurityContext::builder(SECRET, SERVER_ID, CLIENT_ID)
        .build()
        .unwrap();
    let mut outers = Vec::new();
    for _ in 0..10 {
        outers.push(client.protect_request(&get("/")).unwrap().0);
    }
    // Persisted once, before using 0: numbers below 10 are covered.
    assert_eq!(*store.writes.lock().unwrap(), [10]);
    outers.push(client.protect_request(&get("/")).unwrap().0);
    assert_eq!(*store.writes.lock().unwrap(), [10, 20]);
    // A failing store stops protection without consuming the number.
    *store.fail.lock().unwrap() = true;
    for _ in 11..20 {
        outers.push(client.protect_request(&get("/")).unwrap().0);
    }
    assert_eq!(
        client.protect_request(&get("/")).unwrap_err(),
        ProtectError::Persist(PersistError)
    );
    assert_eq!(client.sender_sequence_number(), 20);
    *store.fail.lock().unwrap() = false;
    outers.push(client.protect_request(&get("/")).unwrap().0);
    assert_eq!(*store.writes.lock().unwrap(), [10, 20, 30]);
    for o in &outers {
        server.unprotect_request(o).unwrap();
    }

    // Reboot: the client lost its RAM; it resumes at the stored bound plus F.
    let stored = *store.writes.lock().unwrap().last().unwrap();
    let mut rebooted = SecurityContext::builder(SECRET, CLIENT_ID, SERVER_ID)
        .sequence_store(Box::new(store.clone()), 10)
        .resume_after_reboot(stored, 5)
        .build()
        .unwrap();
    assert_eq!(rebooted.sender_sequence_number(), 35);
    let (outer, _) = rebooted.protect_request(&get("/")).unwrap();
    assert_eq!(*store.writes.lock().unwrap(), [10, 20, 30, 45]);
    // Never a number the server has seen: it verifies.
    let (_, b) = server.unprotect_request(&outer).unwrap();
    assert_eq!(b.partial_iv().value(), 35);
    assert!(SecurityContext::builder(SECRET, CLIENT_ID, SERVER_ID)
        .sequence_store(Box::new(MemoryStore::default()), 0)
        .build()
        .is_err());
}

#[test]
fn rebooted_server_verifies_freshness_with_echo() {
    let (mut client, mut server) = pair();
    // Before the reboot: requests 0..3 were received.
    let old: Vec<Request> = (0..3)
        .map(|_| client.protect_request(&get("/")).unwrap().0)
        .collect();
    for o in &old {
        server.unprotect_request(o).unwrap();
    }
    let mut server = SecurityContext::builder(SECRET, SERVER_ID, CLIENT_ID)
        .master_salt(SALT)
        .resume_after_reboot(64, 0)
        .build()
        .unwrap();
    assert_eq!(server.replay_window_state(), WindowState::Uninitialised);
    // A replayed old request decrypts but is not released.
    let err = server.unprotect_request(&old[1]).unwrap_err();
    assert_eq!(err.response_code(), Code::UNAUTHORIZED);
    let UnprotectError::FreshnessUnverified(mut pending) = err else {
        panic!("expected FreshnessUnverified, got {err:?}");
    };
    // The server challenges with a protected 4.01 + Echo carrying its own Partial IV.
    let echo = b"echo-1234".to_vec();
    let challenge = server.echo_challenge(&mut pending, &echo).unwrap();
    assert_eq!(challenge.code, Code::CHANGED);
    assert_eq!(
        challenge.options.get(OptionNumber::OSCORE),
        Some(&[0x01, 64][..])
    );
    assert_eq!(server.sender_sequence_number(), 65);
    // That request was a replay: no client binding matches. A genuine new request gets
    // the same treatment, and the client sees the challenge.
    let (outer, mut cb) = client.protect_request(&get("/act")).unwrap();
    let UnprotectError::FreshnessUnverified(mut pending) =
        server.unprotect_request(&outer).unwrap_err()
    else {
        panic!()
    };
    let challenge = server.echo_challenge(&mut pending, &echo).unwrap();
    let seen = client.unprotect_response(&mut cb, &challenge).unwrap();
    assert_eq!(seen.code, Code::UNAUTHORIZED);
    assert_eq!(seen.options.get(OptionNumber::ECHO), Some(&echo[..]));
    assert!(seen.payload.is_empty());
    // The client repeats the request with the Echo value.
    let mut retry = get("/act");
    retry.options.push(OptionNumber::ECHO, echo.clone());
    let (outer2, _) = client.protect_request(&retry).unwrap();
    let UnprotectError::FreshnessUnverified(pending) =
        server.unprotect_request(&outer2).unwrap_err()
    else {
        panic!()
    };
    assert_eq!(
        pending.request().options.get(OptionNumber::ECHO),
        Some(&echo[..])
    );
    let piv2 = client.sender_sequence_number() - 1;
    let (inner, mut sb) = server.confirm_freshness(pending).unwrap();
    assert_eq!(inner, retry);
    assert_eq!(server.replay_window_state(), WindowState::Ready);
    assert_eq!(server.replay_window().highest(), Some(piv2));
    // From now on: old requests and the confirmed one are replays, newer ones pass.
    for o in old.iter().chain([&outer, &outer2]) {
        assert_eq!(
            server.unprotect_request(o).unwrap_err(),
            UnprotectError::Replay
        );
    }
    let (outer3, _) = client.protect_request(&get("/next")).unwrap();
    server.unprotect_request(&outer3).unwrap();
    server
        .protect_response(&mut sb, &Response::new(Code::CHANGED), false)
        .unwrap();
}

#[test]
fn context_parameter_checks() {
    let b = |s: &[u8], r: &[u8]| SecurityContext::builder(SECRET, s, r);
    assert_eq!(
        b(&[1], &[1]).build().unwrap_err(),
        ContextError::IdenticalIds
    );
    assert_eq!(b(&[], &[]).build().unwrap_err(), ContextError::IdenticalIds);
    assert_eq!(
        b(&[0; 8], &[1]).build().unwrap_err(),
        ContextError::SenderIdTooLong
    );
    assert_eq!(
        b(&[1], &[0; 8]).build().unwrap_err(),
        ContextError::RecipientIdTooLong
    );
    assert!(b(&[0; 7], &[1; 7]).build().is_ok());
    assert_eq!(
        b(&[0; 7], &[1])
            .aead(AeadAlgorithm::A128Gcm)
            .build()
            .unwrap_err(),
        ContextError::SenderIdTooLong
    );
    assert!(b(&[0; 6], &[1])
        .aead(AeadAlgorithm::ChaCha20Poly1305)
        .build()
        .is_ok());
    assert_eq!(
        SecurityContext::builder(&[], &[1], &[2])
            .build()
            .unwrap_err(),
        ContextError::EmptyMasterSecret
    );
    assert_eq!(
        b(&[1], &[2]).replay_window(0).build().unwrap_err(),
        ContextError::InvalidReplayWindow
    );
    assert_eq!(
        b(&[1], &[2]).replay_window(129).build().unwrap_err(),
        ContextError::InvalidReplayWindow
    );
    assert_eq!(
        b(&[1], &[2]).id_context(&[0; 256]).build().unwrap_err(),
        ContextError::IdContextTooLong
    );
    assert!(b(&[1], &[2])
        .id_context(&[0; 256])
        .send_kid_context(false)
        .build()
        .is_ok());
    // 1 flag byte + 5 PIV bytes + 1 length byte + 247 + 1-byte kid = 255.
    assert!(b(&[1], &[2]).id_context(&[0; 247]).build().is_ok());
    assert_eq!(
        b(&[1], &[2]).id_context(&[0; 248]).build().unwrap_err(),
        ContextError::IdContextTooLong
    );
    // Debug output never shows key material.
    let ctx = b(&[1], &[2]).build().unwrap();
    let dbg = std::format!("{ctx:?}");
    assert!(dbg.contains("sender_id: 0x01"));
    assert!(!dbg.contains("key"));
}

#[test]
fn context_set_routes_by_kid_and_kid_context() {
    let mut set = SecurityContextSet::new(3);
    let server_ctx = |peer: &[u8], idc: Option<&[u8]>| {
        let mut b = SecurityContext::builder(SECRET, SERVER_ID, peer);
        if let Some(c) = idc {
            b = b.id_context(c);
        }
        b.build().unwrap()
    };
    let client_ctx = |peer: &[u8], idc: Option<&[u8]>| {
        let mut b = SecurityContext::builder(SECRET, peer, SERVER_ID);
        if let Some(c) = idc {
            b = b.id_context(c);
        }
        b.build().unwrap()
    };
    set.insert(server_ctx(&[0xa1], None)).unwrap();
    set.insert(server_ctx(&[0xa2], Some(b"g1"))).unwrap();
    set.insert(server_ctx(&[0xa2], Some(b"g2"))).unwrap();
    assert_eq!(
        set.insert(server_ctx(&[0xa3], None)),
        Err(ContextSetError::Full)
    );
    assert_eq!(
        set.insert(server_ctx(&[0xa1], None)),
        Err(ContextSetError::Duplicate)
    );
    assert_eq!(set.len(), 3);

    for (peer, idc) in [
        (&[0xa1][..], None),
        (&[0xa2][..], Some(&b"g1"[..])),
        (&[0xa2][..], Some(&b"g2"[..])),
    ] {
        let mut client = client_ctx(peer, idc);
        let (outer, mut cb) = client.protect_request(&get("/")).unwrap();
        assert_eq!(OptionKidContext::of(&outer), idc.map(<[u8]>::to_vec));
        let (_, mut sb) = unprotect_request(&mut set, &outer).unwrap();
        assert_eq!(sb.id_context(), idc);
        let ctx = set.for_binding(&sb).unwrap();
        let resp = ctx
            .protect_response(&mut sb, &Response::with_payload(Code::CONTENT, "ok"), false)
            .unwrap();
        assert_eq!(
            client.unprotect_response(&mut cb, &resp).unwrap().payload,
            b"ok"
        );
    }
    // Unknown peer, and a known peer with an unknown kid context.
    let mut stranger = client_ctx(&[0xa9], None);
    let (outer, _) = stranger.protect_request(&get("/")).unwrap();
    assert_eq!(
        unprotect_request(&mut set, &outer).unwrap_err(),
        UnprotectError::UnknownContext
    );
    let mut stranger = client_ctx(&[0xa2], Some(b"g3"));
    let (outer, _) = stranger.protect_request(&get("/")).unwrap();
    assert_eq!(
        unprotect_request(&mut set, &outer).unwrap_err(),
        UnprotectError::UnknownContext
    );
    assert!(set.remove(&[0xa1], None).is_some());
    assert!(set.get(&[0xa1], None).is_none());
    assert_eq!(set.iter().count(), 2);
}

struct OptionKidContext;

impl OptionKidContext {
    fn of(outer: &Request) -> Option<Vec<u8>> {
        let v = outer.options.get(OptionNumber::OSCORE).unwrap();
        crate::OscoreOption::decode(v)
            .unwrap()
            .kid_context
            .map(<[u8]>::to_vec)
    }
}

#[test]
fn appendix_b2_rederivation_primitive() {
    let (client, server) = pair();
    let mut client2 = client.derive_with_id_context(b"R2R3").unwrap();
    let mut server2 = server.derive_with_id_context(b"R2R3").unwrap();
    assert_eq!(client2.id_context(), Some(&b"R2R3"[..]));
    assert_eq!(client2.sender_sequence_number(), 0);
    let (outer, mut cb) = client2.protect_request(&get("/")).unwrap();
    assert_eq!(OptionKidContext::of(&outer), Some(b"R2R3".to_vec()));
    let (_, mut sb) = server2.unprotect_request(&outer).unwrap();
    let resp = server2
        .protect_response(&mut sb, &Response::new(Code::CONTENT), true)
        .unwrap();
    client2.unprotect_response(&mut cb, &resp).unwrap();
    // Keys differ from the original context.
    let mut server_old = server;
    assert_eq!(
        server_old.unprotect_request(&outer).unwrap_err(),
        UnprotectError::UnknownContext
    );
}

#[test]
fn appendix_b2_figure_14_flow() {
    // Preestablished input parameters, no ID Context yet.
    let client_base = SecurityContext::builder(SECRET, CLIENT_ID, SERVER_ID)
        .master_salt(SALT)
        .build()
        .unwrap();
    let server_base = SecurityContext::builder(SECRET, SERVER_ID, CLIENT_ID)
        .master_salt(SALT)
        .build()
        .unwrap();
    let r1: &[u8] = b"R1-rand1";
    let r2: &[u8] = b"R2-rand2";
    let r3: &[u8] = b"R3-rand3";
    let cat = |a: &[u8], b: &[u8]| [a, b].concat();

    // 1. The client protects request #1 with ID Context ID1 = R1, sent as kid context.
    let mut c1 = client_base.derive_with_id_context(r1).unwrap();
    let (req1, cb1) = c1.protect_request(&get("/")).unwrap();
    assert_eq!(OptionKidContext::of(&req1), Some(r1.to_vec()));

    // 2. The server has no context for it; it derives one from the kid context.
    let kid_context = OptionKidContext::of(&req1).unwrap();
    let mut s1 = server_base.derive_with_id_context(&kid_context).unwrap();
    let (_, sb1) = s1.unprotect_request(&req1).unwrap();
    // It answers 4.01 protected with ID2 = R2 || ID1, carrying R2 as kid context.
    let mut s2 = server_base.derive_with_id_context(&cat(r2, r1)).unwrap();
    let mut sb1_2 = sb1.for_context(&s2).unwrap();
    assert!(sb1.for_context(&client_base).is_none());
    let resp1 = s2
        .protect_response_with_kid_context(
            &mut sb1_2,
            &Response::new(Code::UNAUTHORIZED),
            false,
            r2,
        )
        .unwrap();
    let option = resp1.options.get(OptionNumber::OSCORE).unwrap();
    assert_eq!(
        crate::OscoreOption::decode(option).unwrap().kid_context,
        Some(r2)
    );

    // 3. The client derives ID2 from the kid context and verifies response #1 with it.
    let got_r2 = crate::OscoreOption::decode(option)
        .unwrap()
        .kid_context
        .unwrap()
        .to_vec();
    let mut c2 = client_base
        .derive_with_id_context(&cat(&got_r2, r1))
        .unwrap();
    let mut cb1_2 = cb1.for_context(&c2).unwrap();
    // The first context cannot verify it.
    assert_eq!(
        c1.unprotect_response(&mut cb1.clone(), &resp1),
        Err(UnprotectError::DecryptionFailed)
    );
    assert_eq!(
        c2.unprotect_response(&mut cb1_2, &resp1).unwrap().code,
        Code::UNAUTHORIZED
    );
    // ... then protects request #2 with ID3 = R2 || R3.
    let mut c3 = client_base
        .derive_with_id_context(&cat(&got_r2, r3))
        .unwrap();
    let (req2, mut cb2) = c3.protect_request(&get("/work")).unwrap();

    // 4. The server sees a kid context starting with its R2 and derives ID3.
    let kid_context = OptionKidContext::of(&req2).unwrap();
    assert!(kid_context.starts_with(r2));
    let mut s3 = server_base.derive_with_id_context(&kid_context).unwrap();
    let (inner, mut sb2) = s3.unprotect_request(&req2).unwrap();
    assert_eq!(inner, get("/work"));
    let resp2 = s3
        .protect_response(
            &mut sb2,
            &Response::with_payload(Code::CONTENT, "ok"),
            false,
        )
        .unwrap();

    // 5. The client verifies response #2 with the third context.
    assert_eq!(
        c3.unprotect_response(&mut cb2, &resp2).unwrap().payload,
        b"ok"
    );
    let _ = (&mut c1, &mut s1, &mut s2);
}

/// RFC 8613 §4.1.3.3, with its example: Proxy-Uri "coap://example.com/resource?q=1" is
/// split; Uri-Path and Uri-Query travel encrypted, the outer Proxy-Uri is
/// "coap://example.com"; the server composes the client's Proxy-Uri again.
#[test]
fn proxy_uri_is_decomposed() {
    let (mut client, mut server) = pair();
    let mut request = Request::new(Code::GET);
    request.options.push(
        OptionNumber::PROXY_URI,
        b"coap://example.com/resource?q=1".to_vec(),
    );
    let (outer, _) = client.protect_request(&request).unwrap();
    assert_eq!(
        outer.options.get(OptionNumber::PROXY_URI),
        Some(&b"coap://example.com"[..]),
        "Class U: scheme and authority only"
    );
    assert!(!outer.options.contains(OptionNumber::URI_PATH));
    assert!(!outer.options.contains(OptionNumber::URI_QUERY));
    for secret in [&b"resource"[..], b"q=1"] {
        assert!(
            !outer.payload.windows(secret.len()).any(|w| w == secret),
            "{secret:?} is encrypted"
        );
    }
    let (inner, _) = server.unprotect_request(&outer).unwrap();
    assert_eq!(inner, request, "the original Proxy-Uri, composed again");

    // Percent-encoded segments, several query arguments, a port, an HTTP target.
    let mut request = Request::new(Code::POST);
    request.options.push(
        OptionNumber::PROXY_URI,
        b"http://[2001:db8::1]:8080/a%20b/c?x=1&y=%26".to_vec(),
    );
    let (outer, _) = client.protect_request(&request).unwrap();
    assert_eq!(
        outer.options.get(OptionNumber::PROXY_URI),
        Some(&b"http://[2001:db8::1]:8080"[..])
    );
    let (inner, _) = server.unprotect_request(&outer).unwrap();
    assert_eq!(
        inner.options.get(OptionNumber::PROXY_URI),
        Some(&b"http://[2001:db8::1]:8080/a%20b/c?x=1&y=%26"[..])
    );

    // No path at all.
    let mut request = Request::new(Code::GET);
    request
        .options
        .push(OptionNumber::PROXY_URI, b"coap://h".to_vec());
    let (outer, _) = client.protect_request(&request).unwrap();
    assert_eq!(
        outer.options.get(OptionNumber::PROXY_URI),
        Some(&b"coap://h"[..])
    );
    let (inner, _) = server.unprotect_request(&outer).unwrap();
    assert_eq!(inner, request);

    for bad in [&b"no-scheme"[..], b"coap:///path", b"coap://h/p#f", b"\xff"] {
        let mut request = Request::new(Code::GET);
        request.options.push(OptionNumber::PROXY_URI, bad.to_vec());
        assert_eq!(
            client.protect_request(&request).unwrap_err(),
            ProtectError::ProxyUriUnsupported,
            "{bad:?}"
        );
    }
}
