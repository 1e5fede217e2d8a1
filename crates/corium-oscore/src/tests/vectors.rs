//! RFC 8613 Appendix C: every test vector, compared byte for byte.

use super::*;
use crate::context::{aad, aad_array, hkdf_info};
use crate::{AeadAlgorithm, OscoreOption, PartialIv, SecurityContext};

const MASTER_SECRET: &str = "0102030405060708090a0b0c0d0e0f10";
const MASTER_SALT: &str = "9e7ca92223786340";
const ID_CONTEXT: &str = "37cbf3210017a2d3";

/// The expected values of one side of a key derivation test vector.
struct Derivation {
    sender_id: &'static str,
    recipient_id: &'static str,
    salt: Option<&'static str>,
    id_context: Option<&'static str>,
    info_sender_key: &'static str,
    info_recipient_key: &'static str,
    info_common_iv: &'static str,
    sender_key: &'static str,
    recipient_key: &'static str,
    common_iv: &'static str,
    sender_nonce: &'static str,
    recipient_nonce: &'static str,
}

fn context(d: &Derivation) -> SecurityContext {
    let mut b =
        SecurityContext::builder(&hex(MASTER_SECRET), &hex(d.sender_id), &hex(d.recipient_id));
    if let Some(s) = d.salt {
        b = b.master_salt(&hex(s));
    }
    if let Some(c) = d.id_context {
        b = b.id_context(&hex(c));
    }
    b.build().unwrap()
}

fn check(d: &Derivation) {
    let ctx = context(d);
    let id_context = d.id_context.map(hex);
    let idc = id_context.as_deref();
    assert_eq!(
        hkdf_info(&hex(d.sender_id), idc, 10, "Key", 16),
        hex(d.info_sender_key)
    );
    assert_eq!(
        hkdf_info(&hex(d.recipient_id), idc, 10, "Key", 16),
        hex(d.info_recipient_key)
    );
    assert_eq!(hkdf_info(&[], idc, 10, "IV", 13), hex(d.info_common_iv));
    assert_eq!(ctx.sender_key(), hex(d.sender_key));
    assert_eq!(ctx.recipient_key(), hex(d.recipient_key));
    assert_eq!(ctx.common_iv(), hex(d.common_iv));
    let piv0 = PartialIv::from_u64(0).unwrap();
    assert_eq!(
        ctx.nonce(&hex(d.sender_id), &piv0)[..13],
        hex(d.sender_nonce)
    );
    assert_eq!(
        ctx.nonce(&hex(d.recipient_id), &piv0)[..13],
        hex(d.recipient_nonce)
    );
}

const C1_CLIENT: Derivation = Derivation {
    sender_id: "",
    recipient_id: "01",
    salt: Some(MASTER_SALT),
    id_context: None,
    info_sender_key: "8540f60a634b657910",
    info_recipient_key: "854101f60a634b657910",
    info_common_iv: "8540f60a6249560d",
    sender_key: "f0910ed7295e6ad4b54fc793154302ff",
    recipient_key: "ffb14e093c94c9cac9471648b4f98710",
    common_iv: "4622d4dd6d944168eefb54987c",
    sender_nonce: "4622d4dd6d944168eefb54987c",
    recipient_nonce: "4722d4dd6d944169eefb54987c",
};

const C1_SERVER: Derivation = Derivation {
    sender_id: "01",
    recipient_id: "",
    salt: Some(MASTER_SALT),
    id_context: None,
    info_sender_key: "854101f60a634b657910",
    info_recipient_key: "8540f60a634b657910",
    info_common_iv: "8540f60a6249560d",
    sender_key: "ffb14e093c94c9cac9471648b4f98710",
    recipient_key: "f0910ed7295e6ad4b54fc793154302ff",
    common_iv: "4622d4dd6d944168eefb54987c",
    sender_nonce: "4722d4dd6d944169eefb54987c",
    recipient_nonce: "4622d4dd6d944168eefb54987c",
};

const C2_CLIENT: Derivation = Derivation {
    sender_id: "00",
    recipient_id: "01",
    salt: None,
    id_context: None,
    info_sender_key: "854100f60a634b657910",
    info_recipient_key: "854101f60a634b657910",
    info_common_iv: "8540f60a6249560d",
    sender_key: "321b26943253c7ffb6003b0b64d74041",
    recipient_key: "e57b5635815177cd679ab4bcec9d7dda",
    common_iv: "be35ae297d2dace910c52e99f9",
    sender_nonce: "bf35ae297d2dace910c52e99f9",
    recipient_nonce: "bf35ae297d2dace810c52e99f9",
};

const C2_SERVER: Derivation = Derivation {
    sender_id: "01",
    recipient_id: "00",
    salt: None,
    id_context: None,
    info_sender_key: "854101f60a634b657910",
    info_recipient_key: "854100f60a634b657910",
    info_common_iv: "8540f60a6249560d",
    sender_key: "e57b5635815177cd679ab4bcec9d7dda",
    recipient_key: "321b26943253c7ffb6003b0b64d74041",
    common_iv: "be35ae297d2dace910c52e99f9",
    sender_nonce: "bf35ae297d2dace810c52e99f9",
    recipient_nonce: "bf35ae297d2dace910c52e99f9",
};

const C3_CLIENT: Derivation = Derivation {
    sender_id: "",
    recipient_id: "01",
    salt: Some(MASTER_SALT),
    id_context: Some(ID_CONTEXT),
    info_sender_key: "85404837cbf3210017a2d30a634b657910",
    info_recipient_key: "8541014837cbf3210017a2d30a634b657910",
    info_common_iv: "85404837cbf3210017a2d30a6249560d",
    sender_key: "af2a1300a5e95788b356336eeecd2b92",
    recipient_key: "e39a0c7c77b43f03b4b39ab9a268699f",
    common_iv: "2ca58fb85ff1b81c0b7181b85e",
    sender_nonce: "2ca58fb85ff1b81c0b7181b85e",
    recipient_nonce: "2da58fb85ff1b81d0b7181b85e",
};

const C3_SERVER: Derivation = Derivation {
    sender_id: "01",
    recipient_id: "",
    salt: Some(MASTER_SALT),
    id_context: Some(ID_CONTEXT),
    info_sender_key: "8541014837cbf3210017a2d30a634b657910",
    info_recipient_key: "85404837cbf3210017a2d30a634b657910",
    info_common_iv: "85404837cbf3210017a2d30a6249560d",
    sender_key: "e39a0c7c77b43f03b4b39ab9a268699f",
    recipient_key: "af2a1300a5e95788b356336eeecd2b92",
    common_iv: "2ca58fb85ff1b81c0b7181b85e",
    sender_nonce: "2da58fb85ff1b81d0b7181b85e",
    recipient_nonce: "2ca58fb85ff1b81c0b7181b85e",
};

#[test]
fn c1_1_client_key_derivation_with_master_salt() {
    check(&C1_CLIENT);
}

#[test]
fn c1_2_server_key_derivation_with_master_salt() {
    check(&C1_SERVER);
}

#[test]
fn c2_1_client_key_derivation_without_master_salt() {
    check(&C2_CLIENT);
}

#[test]
fn c2_2_server_key_derivation_without_master_salt() {
    check(&C2_SERVER);
}

#[test]
fn c3_1_client_key_derivation_with_id_context() {
    check(&C3_CLIENT);
}

#[test]
fn c3_2_server_key_derivation_with_id_context() {
    check(&C3_SERVER);
}

#[test]
fn section_5_4_aad_example() {
    // AEAD 10, request_kid 0x00, request_piv 0x25, no Class I options.
    assert_eq!(
        aad_array(AeadAlgorithm::AesCcm16_64_128, &[0x00], &[0x25]),
        hex("8501810a4100412540")
    );
    assert_eq!(
        aad(AeadAlgorithm::AesCcm16_64_128, &[0x00], &[0x25]),
        hex("8368456e63727970743040498501810a4100412540")
    );
}

/// One request test vector (C.4, C.5, C.6).
struct RequestVector {
    client: &'static Derivation,
    server: &'static Derivation,
    unprotected: &'static str,
    aad_array: &'static str,
    aad: &'static str,
    plaintext: &'static str,
    nonce: &'static str,
    option: &'static str,
    ciphertext: &'static str,
    protected: &'static str,
}

fn check_request(v: &RequestVector) {
    let mut client = {
        let d = v.client;
        let mut b =
            SecurityContext::builder(&hex(MASTER_SECRET), &hex(d.sender_id), &hex(d.recipient_id))
                .sender_sequence_number(20);
        if let Some(s) = d.salt {
            b = b.master_salt(&hex(s));
        }
        if let Some(c) = d.id_context {
            b = b.id_context(&hex(c));
        }
        b.build().unwrap()
    };
    let (env, request) = parse_request(&hex(v.unprotected));
    // The intermediate values.
    let piv = PartialIv::from_u64(20).unwrap();
    let kid = hex(v.client.sender_id);
    assert_eq!(piv.as_bytes(), [0x14]);
    assert_eq!(
        aad_array(AeadAlgorithm::AesCcm16_64_128, &kid, piv.as_bytes()),
        hex(v.aad_array)
    );
    assert_eq!(client.aad(&kid, &piv), hex(v.aad));
    assert_eq!(client.nonce(&kid, &piv)[..13], hex(v.nonce));
    assert_eq!(client.sender_key(), hex(v.client.sender_key));

    let (outer, binding) = client.protect_request(&request).unwrap();
    assert_eq!(client.sender_sequence_number(), 21);
    assert_eq!(
        outer
            .options
            .get(corium_proto::wire::OptionNumber::OSCORE)
            .unwrap(),
        hex(v.option)
    );
    assert_eq!(outer.payload, hex(v.ciphertext));
    // The whole OSCORE message, byte for byte (token and message ID as in the
    // unprotected request, Appendix C).
    assert_eq!(encode_request(&env, &outer), hex(v.protected));
    assert_eq!(binding.partial_iv(), piv);
    assert_eq!(binding.kid(), kid);

    // The plaintext is what the server decrypts: open the ciphertext directly.
    let server = context(v.server);
    let mut buf = outer.payload.clone();
    server
        .recipient_cipher
        .open(&hex(v.nonce), &hex(v.aad), &mut buf)
        .unwrap();
    assert_eq!(buf, hex(v.plaintext));

    // And the server verifies the protected request from its bytes.
    let mut server = context(v.server);
    let (_, received) = parse_request(&hex(v.protected));
    let (inner, sb) = server.unprotect_request(&received).unwrap();
    assert_eq!(inner, request);
    assert_eq!(sb.partial_iv(), piv);
    assert_eq!(sb.kid(), kid);
    let option_bytes = hex(v.option);
    let option = OscoreOption::decode(&option_bytes).unwrap();
    assert_eq!(sb.kid_context(), option.kid_context);
}

const C4: RequestVector = RequestVector {
    client: &C1_CLIENT,
    server: &C1_SERVER,
    unprotected: "44015d1f00003974396c6f63616c686f737483747631",
    aad_array: "8501810a40411440",
    aad: "8368456e63727970743040488501810a40411440",
    plaintext: "01b3747631",
    nonce: "4622d4dd6d944168eefb549868",
    option: "0914",
    ciphertext: "612f1092f1776f1c1668b3825e",
    protected: "44025d1f00003974396c6f63616c686f7374620914ff612f1092f1776f1c1668b3825e",
};

#[test]
fn c4_request_protection() {
    check_request(&C4);
}

#[test]
fn c5_request_protection() {
    check_request(&RequestVector {
        client: &C2_CLIENT,
        server: &C2_SERVER,
        unprotected: "440171c30000b932396c6f63616c686f737483747631",
        aad_array: "8501810a4100411440",
        aad: "8368456e63727970743040498501810a4100411440",
        plaintext: "01b3747631",
        nonce: "bf35ae297d2dace910c52e99ed",
        option: "091400",
        ciphertext: "4ed339a5a379b0b8bc731fffb0",
        protected: "440271c30000b932396c6f63616c686f737463091400ff4ed339a5a379b0b8bc731fffb0",
    });
}

#[test]
fn c6_request_protection_with_kid_context() {
    check_request(&RequestVector {
        client: &C3_CLIENT,
        server: &C3_SERVER,
        unprotected: "44012f8eef9bbf7a396c6f63616c686f737483747631",
        aad_array: "8501810a40411440",
        aad: "8368456e63727970743040488501810a40411440",
        plaintext: "01b3747631",
        nonce: "2ca58fb85ff1b81c0b7181b84a",
        option: "19140837cbf3210017a2d3",
        ciphertext: "72cd7273fd331ac45cffbe55c3",
        protected: "44022f8eef9bbf7a396c6f63616c686f73746b19140837cbf3210017a2d3ff72cd7273fd331ac45cffbe55c3",
    });
}

const C7_C8_UNPROTECTED: &str = "64455d1f00003974ff48656c6c6f20576f726c6421";

/// The server of C.7/C.8 has received the request of C.4; returns its binding.
fn server_after_c4() -> (SecurityContext, crate::RequestBinding, Envelope) {
    let mut server = context(&C1_SERVER);
    assert_eq!(server.sender_sequence_number(), 0);
    let (_, received) = parse_request(&hex(C4.protected));
    let (_, binding) = server.unprotect_request(&received).unwrap();
    let (env, _) = parse_response(&hex(C7_C8_UNPROTECTED));
    (server, binding, env)
}

/// The client of C.4 after sending its request; returns its binding.
fn client_after_c4() -> (SecurityContext, crate::RequestBinding) {
    let mut client = SecurityContext::builder(&hex(MASTER_SECRET), &[], &[0x01])
        .master_salt(&hex(MASTER_SALT))
        .sender_sequence_number(20)
        .build()
        .unwrap();
    let (_, request) = parse_request(&hex(C4.unprotected));
    let (outer, binding) = client.protect_request(&request).unwrap();
    assert_eq!(outer.payload, hex(C4.ciphertext));
    (client, binding)
}

#[test]
fn c7_response_protection() {
    let (mut server, mut binding, env) = server_after_c4();
    let (_, response) = parse_response(&hex(C7_C8_UNPROTECTED));
    assert_eq!(response.payload, b"Hello World!");
    // Intermediate values.
    let piv = binding.partial_iv();
    assert_eq!(
        server.aad(binding.kid(), &piv),
        hex("8368456e63727970743040488501810a40411440")
    );
    assert_eq!(
        server.nonce(binding.kid(), &piv)[..13],
        hex("4622d4dd6d944168eefb549868")
    );

    let outer = server
        .protect_response(&mut binding, &response, false)
        .unwrap();
    assert_eq!(
        outer
            .options
            .get(corium_proto::wire::OptionNumber::OSCORE)
            .unwrap(),
        [0u8; 0]
    );
    assert_eq!(
        outer.payload,
        hex("dbaad1e9a7e7b2a813d3c31524378303cdafae119106")
    );
    let protected = hex("64445d1f0000397490ffdbaad1e9a7e7b2a813d3c31524378303cdafae119106");
    assert_eq!(encode_response(&env, &outer), protected);
    assert_eq!(server.sender_sequence_number(), 0, "no Partial IV used");
    // Plaintext check.
    let client = context(&C1_CLIENT);
    let mut buf = outer.payload.clone();
    client
        .recipient_cipher
        .open(
            &hex("4622d4dd6d944168eefb549868"),
            &hex("8368456e63727970743040488501810a40411440"),
            &mut buf,
        )
        .unwrap();
    assert_eq!(buf, hex("45ff48656c6c6f20576f726c6421"));

    // The client verifies it.
    let (mut client, mut cb) = client_after_c4();
    let (_, received) = parse_response(&protected);
    assert_eq!(
        client.unprotect_response(&mut cb, &received).unwrap(),
        response
    );
}

#[test]
fn c8_response_protection_with_partial_iv() {
    let (mut server, mut binding, env) = server_after_c4();
    let (_, response) = parse_response(&hex(C7_C8_UNPROTECTED));
    let piv0 = PartialIv::from_u64(0).unwrap();
    assert_eq!(
        server.nonce(&[0x01], &piv0)[..13],
        hex("4722d4dd6d944169eefb54987c")
    );

    let outer = server
        .protect_response(&mut binding, &response, true)
        .unwrap();
    assert_eq!(server.sender_sequence_number(), 1);
    assert_eq!(
        outer
            .options
            .get(corium_proto::wire::OptionNumber::OSCORE)
            .unwrap(),
        hex("0100")
    );
    assert_eq!(
        outer.payload,
        hex("4d4c13669384b67354b2b6175ff4b8658c666a6cf88e")
    );
    let protected = hex("64445d1f00003974920100ff4d4c13669384b67354b2b6175ff4b8658c666a6cf88e");
    assert_eq!(encode_response(&env, &outer), protected);
    let client = context(&C1_CLIENT);
    let mut buf = outer.payload.clone();
    client
        .recipient_cipher
        .open(
            &hex("4722d4dd6d944169eefb54987c"),
            &hex("8368456e63727970743040488501810a40411440"),
            &mut buf,
        )
        .unwrap();
    assert_eq!(buf, hex("45ff48656c6c6f20576f726c6421"));

    let (mut client, mut cb) = client_after_c4();
    let (_, received) = parse_response(&protected);
    assert_eq!(
        client.unprotect_response(&mut cb, &received).unwrap(),
        response
    );
}
