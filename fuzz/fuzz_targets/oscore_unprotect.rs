//! OSCORE verification (RFC 8613 §8.2, §8.4) of untrusted messages against fixed
//! security contexts, plus protect → unprotect round trips of arbitrary messages.
//!
//! Input: `ctrl (1) | code (1) | options ‖ [0xFF ‖ payload]` (the part after the token of
//! a CoAP message, RFC 7252 §3; if it does not parse, the whole rest is the payload and
//! there are no options).
//!
//! * The message is verified as a request against a server `SecurityContextSet` (two
//!   contexts, one with an ID Context) and as a response against a fresh client binding;
//!   neither may panic, and a failed request maps to a 4.xx error response.
//! * `ctrl` bit 0: the message is also protected by the client as an application request
//!   (with Block options Inner on both sides when bit 1 is set, Outer otherwise; there is
//!   no block-wise layer here, so Outer Block options are simply dropped) and verified by the
//!   server: the result must equal the input (minus the Outer Block options, which the
//!   receiver discards). Bit 2 then sends a response with the same options back the same
//!   way, with a fresh Partial IV when bit 3 is set.
#![no_main]

use corium_oscore::{
    unprotect_request, BlockwiseMode, ProtectError, SecurityContext, SecurityContextSet,
};
use corium_proto::wire::{Code, OptionIter, OptionNumber};
use corium_proto::{Options, Request, Response};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
const SALT: &[u8] = &[0x9e, 0x7c, 0xa9, 0x22, 0x23, 0x78, 0x63, 0x40];
const CLIENT_ID: &[u8] = &[];
const SERVER_ID: &[u8] = &[0x01];

fn client(mode: BlockwiseMode) -> SecurityContext {
    SecurityContext::builder(SECRET, CLIENT_ID, SERVER_ID)
        .master_salt(SALT)
        .blockwise(mode)
        .build()
        .expect("valid parameters")
}

fn server_set(mode: BlockwiseMode) -> SecurityContextSet {
    let mut set = SecurityContextSet::new(2);
    set.insert(
        SecurityContext::builder(SECRET, SERVER_ID, CLIENT_ID)
            .master_salt(SALT)
            .blockwise(mode)
            .build()
            .expect("valid parameters"),
    )
    .expect("room");
    set.insert(
        SecurityContext::builder(SECRET, SERVER_ID, &[0x02])
            .id_context(&[0x37, 0xcb, 0xf3, 0x21])
            .blockwise(mode)
            .build()
            .expect("valid parameters"),
    )
    .expect("room");
    set
}

fn is_blockwise(n: OptionNumber) -> bool {
    matches!(
        n,
        OptionNumber::BLOCK1
            | OptionNumber::BLOCK2
            | OptionNumber::SIZE1
            | OptionNumber::SIZE2
            | OptionNumber::Q_BLOCK1
            | OptionNumber::Q_BLOCK2
            | OptionNumber::REQUEST_TAG
    )
}

fn without(options: &Options, drop: impl Fn(OptionNumber) -> bool) -> Options {
    let mut out = Options::new();
    for (n, v) in options.iter().filter(|(n, _)| !drop(*n)) {
        out.push(n, v);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [ctrl, code, rest @ ..] = data else {
        return;
    };
    let (options, payload) = match OptionIter::new_checked(rest) {
        Ok((iter, payload)) => {
            let mut options = Options::new();
            for o in iter {
                options.push(o.number, o.value);
            }
            (options, payload.to_vec())
        }
        Err(_) => (Options::new(), rest.to_vec()),
    };
    let message = Request {
        method: Code(*code),
        options,
        payload,
    };

    // Untrusted request against the server's contexts.
    let mut set = server_set(BlockwiseMode::Outer);
    match unprotect_request(&mut set, &message) {
        Ok((_, mut binding)) => {
            // Only reachable with a valid tag; the response leg must then work.
            let ctx = set.for_binding(&binding).expect("context of the binding");
            ctx.protect_response(&mut binding, &Response::new(Code::CONTENT), false)
                .expect("first response may reuse the nonce");
        }
        Err(err) => {
            let response = err.error_response();
            assert!(response.code.is_client_error(), "{err:?}");
            assert_eq!(response.options.get_uint(OptionNumber::MAX_AGE), Some(0));
            let _ = format!("{err} {err:?}");
        }
    }

    // Untrusted response to a genuine request.
    let mut c = client(BlockwiseMode::Outer);
    let (_, mut binding) = c
        .protect_request(&Request::new(Code::GET))
        .expect("protects");
    let response = Response {
        code: Code(*code),
        options: message.options.clone(),
        payload: message.payload.clone(),
    };
    if let Err(err) = c.unprotect_response(&mut binding, &response) {
        let _ = format!("{err} {err:?}");
    }

    if ctrl & 1 == 0 {
        return;
    }
    // Round trip of the message as an application request.
    let mode = if ctrl & 2 != 0 {
        BlockwiseMode::Inner
    } else {
        BlockwiseMode::Outer
    };
    let mut c = client(mode);
    let (outer, mut cb) = match c.protect_request(&message) {
        Ok(v) => v,
        Err(ProtectError::InvalidCode) => {
            assert!(message.method.class() != 0 || message.method.detail() == 0);
            return;
        }
        Err(ProtectError::NestedOscore) => {
            assert!(message.options.contains(OptionNumber::OSCORE));
            return;
        }
        Err(ProtectError::ProxyUriUnsupported) => {
            assert!(message.options.contains(OptionNumber::PROXY_URI));
            return;
        }
        Err(e) => panic!("protect_request: {e:?}"),
    };
    assert!(outer.method == Code::POST || outer.method == Code::FETCH);
    let mut set = server_set(mode);
    let (inner, mut sb) = unprotect_request(&mut set, &outer).expect("own request verifies");
    let expected = match mode {
        BlockwiseMode::Inner => message.options.clone(),
        _ => without(&message.options, is_blockwise),
    };
    assert_eq!(inner.method, message.method);
    assert_eq!(inner.payload, message.payload);
    assert_eq!(inner.options, expected);
    // A replay of it is refused.
    assert!(unprotect_request(&mut set, &outer).is_err());

    if ctrl & 4 == 0 {
        return;
    }
    let response = Response {
        code: Code::CONTENT,
        options: without(&message.options, |n| n == OptionNumber::OBSERVE),
        payload: message.payload.clone(),
    };
    let ctx = set.for_binding(&sb).expect("context of the binding");
    let protected = ctx
        .protect_response(&mut sb, &response, ctrl & 8 != 0)
        .expect("protect_response");
    let got = c
        .unprotect_response(&mut cb, &protected)
        .expect("own response verifies");
    let expected = match mode {
        BlockwiseMode::Inner => response.options.clone(),
        _ => without(&response.options, is_blockwise),
    };
    assert_eq!(got.code, response.code);
    assert_eq!(got.payload, response.payload);
    assert_eq!(got.options, expected);
});
