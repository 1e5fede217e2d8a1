//! Handshakes in-process, the RFC 9529 trace 2 where lakers lets us inject keys, and
//! every way a step must fail.

use corium_proto::wire::Code;
use corium_proto::{Request, Response};

use super::*;
use crate::coap::{self, RequestPayload};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn arr(s: &str) -> [u8; 32] {
    hex(s).try_into().unwrap()
}

// RFC 9529 §3 (trace 2: method 3, cipher suite 2, CCS identified by kid).
const T2_MESSAGE_1: &str =
    "0382060258208af6f430ebe18d34184017a9a11bf511c8dff8f834730b96c1b7c8dbca2fc3b637";
const T2_Y: &str = "e2f4126777205e853b437d6eaca1e1f753cdcc3e2c69fa884b0a1a640977e418";
const T2_G_Y: &str = "419701d7f00a26c2dc587a36dd752549f33763c893422c8ea0f955a13a4ff5d5";
const T2_SK_R: &str = "72cc4761dbd4c78f758931aa589d348d1ef874a7e303ede2f140dcf3e6aa4aac";
const T2_CRED_R: &str = "a2026b6578616d706c652e65647508a101a501020241322001215820bbc34960526ea4d32e940cad2a234148ddc21791a12afbcbac93622046dd44f02258204519e257236b2a0ce2023f0931f1f386ca7afda64fcde0108c224c51eabf6072";
const T2_SK_I: &str = "fb13adeb6518cee5f88417660841142e830a81fe334380a953406a1305e8706b";
const T2_CRED_I: &str = "a2027734322d35302d33312d46462d45462d33372d33322d333908a101a5010202412b2001215820ac75e9ece3e50bfc8ed60399889522405c47bf16df96660a41298cb4307f7eb62258206e5de611388a4b8a8211334ac7d37ecb52a387d257e6db3c2a93df21ff3affc8";
const T2_MESSAGE_2: &str =
    "582b419701d7f00a26c2dc587a36dd752549f33763c893422c8ea0f955a13a4ff5d59862a1eef9e0e7e1886fcd";
const T2_MESSAGE_3: &str = "52e562097bc417dd5919485ac7891ffd90a9fc";
const T2_MESSAGE_4: &str = "4828c966b7ca304f83";
const T2_MASTER_SECRET: &str = "f9868f6a3aca78a05d1485b35030b162";
const T2_MASTER_SALT: &str = "ada24c7dbfc85eeb";

fn t2_responder() -> Responder {
    Responder::new(
        OwnCredential::new(&hex(T2_SK_R), &hex(T2_CRED_R)).unwrap(),
        PeerCredentials::new().with_ccs(&hex(T2_CRED_I)).unwrap(),
    )
}

/// RFC 9529 §3.4–§3.8 from the responder's side: message_2 byte for byte from the
/// trace's message_1, ephemeral key Y and C_R; message_3 of the trace verifies;
/// message_4 and the OSCORE Master Secret / Salt / IDs match.
#[test]
fn rfc9529_trace_2_responder() {
    let responder = t2_responder();
    let backend = crypto::Backend::with_ephemeral(arr(T2_Y), arr(T2_G_Y));
    let (wait_m3, message_2) = responder
        .process_message_1_with(backend, &hex(T2_MESSAGE_1), &[0x27])
        .unwrap();
    assert_eq!(message_2, hex(T2_MESSAGE_2));
    assert_eq!(wait_m3.c_i(), [0x37]);
    assert_eq!(message_1_c_i(&hex(T2_MESSAGE_1)), Some(vec![0x37]));

    let (session, message_4) = wait_m3.process_message_3(&hex(T2_MESSAGE_3)).unwrap();
    assert_eq!(message_4, hex(T2_MESSAGE_4));
    assert_eq!(&session.master_secret()[..], hex(T2_MASTER_SECRET));
    assert_eq!(&session.master_salt()[..], hex(T2_MASTER_SALT));
    // RFC 9529 §3.8: the server's (responder's) Sender ID is C_I = 0x37.
    assert_eq!(session.sender_id(), [0x37]);
    assert_eq!(session.recipient_id(), [0x27]);
    assert_eq!(session.peer_kid(), Some(&[0x2b][..]));
}

/// The initiator cannot replay trace 2: lakers sends SUITES_I = 2, the trace [6, 2]
/// (so TH_2 differs). What it does reproduce: message_1 with the trace's G_X and C_I
/// apart from SUITES_I.
#[test]
fn rfc9529_trace_2_initiator_message_1() {
    let initiator = Initiator::new(
        OwnCredential::new(&hex(T2_SK_I), &hex(T2_CRED_I)).unwrap(),
        PeerCredentials::new().with_ccs(&hex(T2_CRED_R)).unwrap(),
    );
    let x = arr("368ec1f69aeb659ba37d5a8d45b21bdc0299dceaa8ef235f3ca42ce3530f9525");
    let g_x = arr("8af6f430ebe18d34184017a9a11bf511c8dff8f834730b96c1b7c8dbca2fc3b6");
    let (_, message_1) = initiator
        .message_1_with(crypto::Backend::with_ephemeral(x, g_x), Some(&[0x37]))
        .unwrap();
    let mut expected = hex(T2_MESSAGE_1);
    expected.splice(1..4, [0x02]); // [6, 2] → 2
    assert_eq!(message_1, expected);
}

fn pair(i_by_value: bool, r_by_value: bool) -> (Initiator, Responder) {
    let (i_key, i_ccs) = OwnCredential::generate(b"I", "initiator").unwrap();
    let (r_key, r_ccs) = OwnCredential::generate(b"R", "responder").unwrap();
    (
        Initiator::new(
            OwnCredential::new(&i_key, &i_ccs)
                .unwrap()
                .by_value(i_by_value)
                .unwrap(),
            PeerCredentials::new().with_ccs(&r_ccs).unwrap(),
        ),
        Responder::new(
            OwnCredential::new(&r_key, &r_ccs)
                .unwrap()
                .by_value(r_by_value)
                .unwrap(),
            PeerCredentials::new().with_ccs(&i_ccs).unwrap(),
        ),
    )
}

fn handshake(initiator: &Initiator, responder: &Responder, with_m4: bool) -> (Session, Session) {
    let (wait_m2, m1) = initiator.message_1(Some(&[0x0e])).unwrap();
    let (wait_m3, m2) = responder.process_message_1(&m1, &[0x27]).unwrap();
    let (wait_m4, m3) = wait_m2.process_message_2(&m2).unwrap();
    assert_eq!(wait_m4.c_r(), [0x27]);
    let (r, m4) = wait_m3.process_message_3(&m3).unwrap();
    let i = if with_m4 {
        wait_m4.process_message_4(&m4).unwrap()
    } else {
        wait_m4.session().unwrap()
    };
    (i, r)
}

#[test]
fn handshake_yields_matching_oscore_contexts() {
    for (i_val, r_val, m4) in [
        (false, false, true),
        (true, false, false),
        (false, true, true),
        (true, true, false),
    ] {
        let (initiator, responder) = pair(i_val, r_val);
        let (i, r) = handshake(&initiator, &responder, m4);
        assert_eq!(i.master_secret(), r.master_secret());
        assert_eq!(i.master_salt(), r.master_salt());
        assert_eq!(i.sender_id(), [0x27]);
        assert_eq!(i.recipient_id(), [0x0e]);
        assert_eq!(r.sender_id(), [0x0e]);
        assert_eq!(i.peer_kid(), Some(&b"R"[..]));
        assert_eq!(r.peer_kid(), Some(&b"I"[..]));

        let mut client = i.oscore_context().build().unwrap();
        let mut server = r.oscore_context().build().unwrap();
        let mut request = Request::new(Code::GET);
        request.set_path("/hello");
        let (outer, mut cb) = client.protect_request(&request).unwrap();
        let (inner, mut sb) = server.unprotect_request(&outer).unwrap();
        assert_eq!(inner, request);
        let response = Response::with_payload(Code::CONTENT, "hi");
        let outer = server.protect_response(&mut sb, &response, false).unwrap();
        assert_eq!(
            client.unprotect_response(&mut cb, &outer).unwrap(),
            response
        );
    }
}

#[test]
fn unknown_peer_is_refused() {
    let (initiator, _) = pair(false, false);
    // A responder whose credential the initiator does not have (another kid).
    let (key, ccs) = OwnCredential::generate(b"S", "stranger").unwrap();
    let stranger = Responder::new(
        OwnCredential::new(&key, &ccs).unwrap(),
        PeerCredentials::new(),
    );
    let (wait_m2, m1) = initiator.message_1(Some(&[1])).unwrap();
    let (_, m2) = stranger.process_message_1(&m1, &[2]).unwrap();
    assert_eq!(
        wait_m2.process_message_2(&m2).unwrap_err(),
        Error::UnknownPeer
    );

    // The same kid with another key: the MAC does not verify.
    let (_, impostor) = pair(false, false);
    let (wait_m2, m1) = initiator.message_1(Some(&[1])).unwrap();
    let (_, m2) = impostor.process_message_1(&m1, &[2]).unwrap();
    assert_eq!(
        wait_m2.process_message_2(&m2).unwrap_err(),
        Error::VerificationFailed
    );
}

#[test]
fn invalid_public_keys_are_refused() {
    let (initiator, responder) = pair(false, false);
    let (_, mut m1) = initiator.message_1(Some(&[1])).unwrap();
    // G_X starts at byte 4 (METHOD, SUITES_I, 0x58 0x20); x = 2^256 - 1 is not a field element.
    m1[4..36].fill(0xff);
    assert_eq!(
        responder.process_message_1(&m1, &[2]).unwrap_err(),
        Error::InvalidPublicKey
    );
    let (wait_m2, m1) = initiator.message_1(Some(&[1])).unwrap();
    let (_, mut m2) = responder.process_message_1(&m1, &[2]).unwrap();
    m2[2..34].fill(0xff);
    assert_eq!(
        wait_m2.process_message_2(&m2).unwrap_err(),
        Error::InvalidPublicKey
    );
}

#[test]
fn responder_rejects_unknown_initiator_at_message_3() {
    let (initiator, responder) = pair(false, false);
    let picky = Responder::new(responder.own.clone(), PeerCredentials::new());
    let (wait_m2, m1) = initiator.message_1(Some(&[1])).unwrap();
    let (wait_m3, m2) = picky.process_message_1(&m1, &[2]).unwrap();
    let (_, m3) = wait_m2.process_message_2(&m2).unwrap();
    assert_eq!(
        wait_m3.process_message_3(&m3).unwrap_err(),
        Error::UnknownPeer
    );
}

#[test]
fn tampering_is_detected() {
    let (initiator, responder) = pair(false, false);
    let (wait_m2, m1) = initiator.message_1(Some(&[1])).unwrap();
    let (wait_m3, mut m2) = responder.process_message_1(&m1, &[2]).unwrap();
    let last = m2.len() - 1;
    m2[last] ^= 1;
    assert!(wait_m2.process_message_2(&m2).is_err());

    let (wait_m2, m1) = initiator.message_1(Some(&[1])).unwrap();
    let (wait_m3b, m2) = responder.process_message_1(&m1, &[2]).unwrap();
    let (_, mut m3) = wait_m2.process_message_2(&m2).unwrap();
    let last = m3.len() - 1;
    m3[last] ^= 1;
    assert_eq!(
        wait_m3b.process_message_3(&m3).unwrap_err(),
        Error::VerificationFailed
    );
    drop(wait_m3);
}

#[test]
fn bad_message_1_and_ids() {
    let (initiator, responder) = pair(false, false);
    assert!(responder.process_message_1(&[], &[2]).is_err());
    assert!(responder
        .process_message_1(&[0x03, 0x02, 0x41], &[2])
        .is_err());
    assert_eq!(
        responder.process_message_1(&[0; 600], &[2]).unwrap_err(),
        Error::MessageTooLong
    );
    let (_, m1) = initiator.message_1(Some(&[5])).unwrap();
    assert_eq!(
        responder.process_message_1(&m1, &[5]).unwrap_err(),
        Error::IdenticalConnectionIds
    );
    assert_eq!(
        responder.process_message_1(&m1, &[]).unwrap_err(),
        Error::InvalidConnectionId
    );
    assert_eq!(
        responder.process_message_1(&m1, &[0; 8]).unwrap_err(),
        Error::InvalidConnectionId
    );
    // Method 0 (signatures) is not supported.
    let mut m1_method0 = m1.clone();
    m1_method0[0] = 0x00;
    assert!(responder.process_message_1(&m1_method0, &[2]).is_err());
    // Two-byte connection identifiers work end to end.
    let (wait_m2, m1) = initiator.message_1(Some(&[0xaa, 0xbb])).unwrap();
    assert_eq!(message_1_c_i(&m1), Some(vec![0xaa, 0xbb]));
    let (wait_m3, m2) = responder.process_message_1(&m1, &[0x99, 0x01]).unwrap();
    let (_, m3) = wait_m2.process_message_2(&m2).unwrap();
    let (session, _) = wait_m3.process_message_3(&m3).unwrap();
    assert_eq!(session.sender_id(), [0xaa, 0xbb]);
}

/// Inputs lakers 0.8 panics on (found by the fuzzer): a long byte-string C_I in
/// message_1 is refused before lakers sees it; a C_R turned into a long byte string
/// by flipping bits of CIPHERTEXT_2 (PLAINTEXT_2 is not authenticated before it is
/// parsed) makes lakers panic inside, which is contained.
#[test]
fn lakers_panics_are_kept_out() {
    let (initiator, responder) = pair(false, false);
    let (_, m1) = initiator.message_1(Some(&[1])).unwrap();
    // C_I is the last byte (0x01): replace it with h'000102030405060708090a'.
    let mut long = m1[..m1.len() - 1].to_vec();
    long.push(0x4b);
    long.extend(0..11u8);
    assert_eq!(message_1_c_i(&long), None);
    assert!(responder.process_message_1(&long, &[2]).is_err());

    let (wait_m2, m1) = initiator.message_1(Some(&[1])).unwrap();
    let (_, mut m2) = responder.process_message_1(&m1, &[0x27]).unwrap();
    // PLAINTEXT_2 starts with C_R = 0x27; make it 0x57 (a 23-byte string header).
    m2[2 + 32] ^= 0x27 ^ 0x57;
    assert_eq!(
        wait_m2.process_message_2(&m2).unwrap_err(),
        Error::Malformed
    );
}

#[test]
fn credentials() {
    let (key, ccs) = OwnCredential::generate(b"k", "me").unwrap();
    let own = OwnCredential::new(&key, &ccs).unwrap();
    assert_eq!(own.kid(), Some(&b"k"[..]));
    assert_eq!(own.ccs(), &ccs[..]);
    assert_eq!(ccs_for_key(&key, b"k", "me").unwrap(), ccs);
    let (other_key, _) = OwnCredential::generate(b"k", "me").unwrap();
    assert_eq!(
        OwnCredential::new(&other_key, &ccs).unwrap_err(),
        Error::KeyMismatch
    );
    assert_eq!(
        OwnCredential::new(&key[..31], &ccs).unwrap_err(),
        Error::InvalidPrivateKey
    );
    assert_eq!(
        OwnCredential::new(&[0; 32], &ccs).unwrap_err(),
        Error::InvalidPrivateKey
    );
    assert_eq!(
        OwnCredential::new(&key, &ccs[1..]).unwrap_err(),
        Error::InvalidCredential
    );
    // The trace's credentials parse, with the trace's kid.
    let r = OwnCredential::new(&hex(T2_SK_R), &hex(T2_CRED_R)).unwrap();
    assert_eq!(r.kid(), Some(&[0x32][..]));
    // The generated CCS has the RFC 9529 layout: same length as CRED_R for the same
    // subject length.
    let (_, ccs) = OwnCredential::generate(&[0x32], "example.edu").unwrap();
    assert_eq!(ccs.len(), hex(T2_CRED_R).len());
    assert_eq!(ccs[..28], hex(T2_CRED_R)[..28]);
    assert_eq!(Error::UnknownPeer.edhoc_error_message(), [0x03, 0xf5]);
}

#[test]
fn coap_framing() {
    let m1 = hex(T2_MESSAGE_1);
    let payload = coap::message_1_request(&m1);
    assert_eq!(payload[0], 0xf5);
    assert_eq!(
        coap::parse_request(&payload),
        Ok(RequestPayload::Message1(&m1[..]))
    );
    let m3 = hex(T2_MESSAGE_3);
    let payload = coap::message_3_request(&[0x27], &m3).unwrap();
    assert_eq!(payload[0], 0x27);
    assert_eq!(
        coap::parse_request(&payload),
        Ok(RequestPayload::Message3 {
            c_r: vec![0x27],
            message_3: &m3[..]
        })
    );
    let payload = coap::message_3_request(&[0xaa, 0xbb], &m3).unwrap();
    assert_eq!(payload[..3], [0x42, 0xaa, 0xbb]);
    assert_eq!(
        coap::parse_request(&payload),
        Ok(RequestPayload::Message3 {
            c_r: vec![0xaa, 0xbb],
            message_3: &m3[..]
        })
    );
    assert_eq!(coap::parse_request(&[]), Err(Error::Malformed));
    assert!(coap::parse_request(&[0xf5]).is_err());
    assert_eq!(coap::parse_request(&[0x27]), Err(Error::Malformed));
    assert!(coap::parse_request(&[0x18, 0x30, 1]).is_err());
    assert!(coap::parse_request(&[0x58]).is_err());

    let combined = coap::combined_payload(&m3, b"\x01\x02\x03");
    assert_eq!(
        coap::split_combined_payload(&combined),
        Ok((&m3[..], &b"\x01\x02\x03"[..]))
    );
    assert!(coap::split_combined_payload(&m3).is_err());
    assert!(coap::split_combined_payload(&[0x01, 0x02]).is_err());
    assert!(coap::split_combined_payload(&[0x5f, 0x02]).is_err());
}

/// Every truncation and single-byte change of valid messages fails cleanly (no panic).
#[test]
fn truncations_and_flips_do_not_panic() {
    let (initiator, responder) = pair(true, true);
    let (_, m1) = initiator.message_1(Some(&[1])).unwrap();
    for n in 0..m1.len() {
        let _ = responder.process_message_1(&m1[..n], &[2]);
        let _ = message_1_c_i(&m1[..n]);
        let mut flipped = m1.clone();
        flipped[n] ^= 0xff;
        let _ = responder.process_message_1(&flipped, &[2]);
        let _ = message_1_c_i(&flipped);
    }
    let (wait_m2, m1) = initiator.message_1(Some(&[1])).unwrap();
    let (_, m2) = responder.process_message_1(&m1, &[2]).unwrap();
    drop(wait_m2);
    for n in 0..m2.len() {
        let (w, _) = initiator.message_1(Some(&[1])).unwrap();
        let _ = w.process_message_2(&m2[..n]);
    }
    // message_3 and message_4 cut short (an empty one included: lakers' backend would
    // underflow on a ciphertext shorter than the tag).
    let (wait_m2, m1) = initiator.message_1(Some(&[1])).unwrap();
    let (wait_m3, m2) = responder.process_message_1(&m1, &[2]).unwrap();
    let (wait_m4, m3) = wait_m2.process_message_2(&m2).unwrap();
    drop(wait_m3);
    for n in 0..m3.len() {
        let (w2, m1) = initiator.message_1(Some(&[1])).unwrap();
        let (w3, m2) = responder.process_message_1(&m1, &[2]).unwrap();
        drop(w2.process_message_2(&m2));
        assert!(w3.process_message_3(&m3[..n]).is_err());
        let _ = m1;
    }
    drop(wait_m4);
    // Headers that announce more bytes than there are (found by the fuzzer: lakers
    // trusted them).
    for bad in [
        &[0xfe, 0xe5][..],
        &[0x58, 0xff, 0x00],
        &[0x52, 0x00],
        &[0x44, 1, 2, 3, 4],
    ] {
        let (w2, m1) = initiator.message_1(Some(&[1])).unwrap();
        let (w3, m2) = responder.process_message_1(&m1, &[2]).unwrap();
        let (w4, _) = w2.process_message_2(&m2).unwrap();
        assert_eq!(w3.process_message_3(bad).unwrap_err(), Error::Malformed);
        assert_eq!(w4.process_message_4(bad).unwrap_err(), Error::Malformed);
    }
    for n in 0..9 {
        let (w2, m1) = initiator.message_1(Some(&[1])).unwrap();
        let (w3, m2) = responder.process_message_1(&m1, &[2]).unwrap();
        let (w4, m3) = w2.process_message_2(&m2).unwrap();
        let (_, m4) = w3.process_message_3(&m3).unwrap();
        assert!(w4.process_message_4(&m4[..n.min(m4.len() - 1)]).is_err());
    }
}

/// A credential too long for lakers' message buffers, sent by value, fails with an
/// error rather than a panic.
#[test]
fn oversized_credential_by_value_fails_cleanly() {
    for len in (40..=130).step_by(5) {
        let subject = "s".repeat(len);
        let (i_key, i_ccs) = OwnCredential::generate(b"I", &subject).unwrap();
        let (r_key, r_ccs) = OwnCredential::generate(b"R", "responder").unwrap();
        let Ok(own) = OwnCredential::new(&i_key, &i_ccs) else {
            // Longer than lakers' credential buffer: refused up front.
            assert!(i_ccs.len() > 150);
            continue;
        };
        let own = match own.by_value(true) {
            Ok(own) => own,
            Err(e) => {
                assert_eq!(e, Error::TooLong);
                assert!(i_ccs.len() > MAX_CREDENTIAL_BY_VALUE_LEN);
                continue;
            }
        };
        let initiator = Initiator::new(own, PeerCredentials::new().with_ccs(&r_ccs).unwrap());
        let responder = Responder::new(
            OwnCredential::new(&r_key, &r_ccs).unwrap(),
            PeerCredentials::new().with_ccs(&i_ccs).unwrap(),
        );
        let (wait_m2, m1) = initiator.message_1(Some(&[1])).unwrap();
        let (wait_m3, m2) = responder.process_message_1(&m1, &[2]).unwrap();
        let (_, m3) = wait_m2.process_message_2(&m2).unwrap();
        wait_m3.process_message_3(&m3).unwrap();
    }
    // By reference, long credentials work.
    let (i_key, i_ccs) = OwnCredential::generate(b"I", &"s".repeat(100)).unwrap();
    let (r_key, r_ccs) = OwnCredential::generate(b"R", &"r".repeat(100)).unwrap();
    let initiator = Initiator::new(
        OwnCredential::new(&i_key, &i_ccs).unwrap(),
        PeerCredentials::new().with_ccs(&r_ccs).unwrap(),
    );
    let responder = Responder::new(
        OwnCredential::new(&r_key, &r_ccs).unwrap(),
        PeerCredentials::new().with_ccs(&i_ccs).unwrap(),
    );
    let (i, r) = handshake(&initiator, &responder, true);
    assert_eq!(i.master_secret(), r.master_secret());
}
