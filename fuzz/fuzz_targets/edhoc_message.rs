//! EDHOC (RFC 9528) messages from the network: the responder's message_1 and message_3
//! processing, the initiator's message_2 processing, and the CoAP framing of Appendix
//! A.2 / RFC 9668, on any bytes.
//!
//! The first byte selects the step; the rest is the message. Credentials are the RFC
//! 9529 trace 2 keys. Nothing panics out of corium-edhoc (lakers 0.8 panics on a public
//! key off the curve, on message_3 / message_4 whose CBOR head lies about the length,
//! on a long C_I, and on a long C_R in the unauthenticated PLAINTEXT_2: corium-edhoc
//! checks the first three before lakers sees them and contains the last with
//! `catch_unwind`), and a message_1 that is accepted yields a message_2.
//!
//! libfuzzer-sys installs a panic hook that aborts, which would turn a contained panic
//! into a crash; the target replaces it with a silent hook. A panic that escapes
//! corium-edhoc still aborts: libfuzzer-sys's own `catch_unwind` around the target
//! aborts on it.
#![no_main]

use std::sync::OnceLock;

use corium_edhoc::{coap, Initiator, OwnCredential, PeerCredentials, Responder};
use libfuzzer_sys::fuzz_target;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const SK_R: &str = "72cc4761dbd4c78f758931aa589d348d1ef874a7e303ede2f140dcf3e6aa4aac";
const CRED_R: &str = "a2026b6578616d706c652e65647508a101a501020241322001215820bbc34960526ea4d32e940cad2a234148ddc21791a12afbcbac93622046dd44f02258204519e257236b2a0ce2023f0931f1f386ca7afda64fcde0108c224c51eabf6072";
const SK_I: &str = "fb13adeb6518cee5f88417660841142e830a81fe334380a953406a1305e8706b";
const CRED_I: &str = "a2027734322d35302d33312d46462d45462d33372d33322d333908a101a5010202412b2001215820ac75e9ece3e50bfc8ed60399889522405c47bf16df96660a41298cb4307f7eb62258206e5de611388a4b8a8211334ac7d37ecb52a387d257e6db3c2a93df21ff3affc8";

fn parties() -> &'static (Initiator, Responder) {
    static P: OnceLock<(Initiator, Responder)> = OnceLock::new();
    P.get_or_init(|| {
        std::panic::set_hook(Box::new(|_| {}));
        (
            Initiator::new(
                OwnCredential::new(&hex(SK_I), &hex(CRED_I)).unwrap(),
                PeerCredentials::new().with_ccs(&hex(CRED_R)).unwrap(),
            ),
            Responder::new(
                OwnCredential::new(&hex(SK_R), &hex(CRED_R)).unwrap(),
                PeerCredentials::new().with_ccs(&hex(CRED_I)).unwrap(),
            ),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, msg)) = data.split_first() else {
        return;
    };
    let (initiator, responder) = parties();
    match selector % 4 {
        0 => {
            let _ = corium_edhoc::message_1_c_i(msg);
            if let Ok((_, message_2)) = responder.process_message_1(msg, &[0x27]) {
                assert!(message_2.len() > 32);
            }
        }
        1 => {
            let _ = coap::parse_request(msg);
            let _ = coap::split_combined_payload(msg);
            let _ = coap::decode_connection_id(msg);
        }
        2 => {
            // message_3 after a genuine message_1 / message_2.
            let (wait_m2, m1) = initiator.message_1(Some(&[0x37])).unwrap();
            let (wait_m3, m2) = responder.process_message_1(&m1, &[0x27]).unwrap();
            drop(wait_m2);
            let _ = m2;
            let _ = wait_m3.process_message_3(msg);
        }
        _ => {
            let (wait_m2, _) = initiator.message_1(Some(&[0x37])).unwrap();
            let _ = wait_m2.process_message_2(msg);
        }
    }
});
