//! Tests: the RFC 8613 Appendix C test vectors (`vectors`) and behaviour (`roundtrip`).

mod roundtrip;
mod vectors;

use alloc::vec::Vec;

use corium_proto::wire::{Code, Message, MessageType, MessageWriter};
use corium_proto::{Options, Request, Response};

/// Decodes hex, ignoring whitespace.
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex length");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(core::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// The header fields that OSCORE leaves to the endpoint (§4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub ty: MessageType,
    pub message_id: u16,
    pub token: Vec<u8>,
}

/// Splits a CoAP datagram into the endpoint's envelope, code, options and payload.
pub(crate) fn parse(bytes: &[u8]) -> (Envelope, Code, Options, Vec<u8>) {
    let msg = Message::parse(bytes).expect("valid CoAP message");
    let mut options = Options::new();
    for o in msg.options() {
        options.push(o.number, o.value);
    }
    let env = Envelope {
        ty: msg.ty(),
        message_id: msg.message_id(),
        token: msg.token().to_vec(),
    };
    (env, msg.code(), options, msg.payload().to_vec())
}

pub(crate) fn parse_request(bytes: &[u8]) -> (Envelope, Request) {
    let (env, method, options, payload) = parse(bytes);
    (
        env,
        Request {
            method,
            options,
            payload,
        },
    )
}

pub(crate) fn parse_response(bytes: &[u8]) -> (Envelope, Response) {
    let (env, code, options, payload) = parse(bytes);
    (
        env,
        Response {
            code,
            options,
            payload,
        },
    )
}

/// Serialises a message with `corium-wire`'s writer.
pub(crate) fn encode(env: &Envelope, code: Code, options: &Options, payload: &[u8]) -> Vec<u8> {
    let mut buf = alloc::vec![0u8; 2048 + payload.len()];
    let mut w = MessageWriter::new(&mut buf, env.ty, code, env.message_id, &env.token).unwrap();
    for (n, v) in options.iter() {
        w.option(n, v).unwrap();
    }
    let len = w.payload(payload).unwrap();
    buf.truncate(len);
    buf
}

pub(crate) fn encode_request(env: &Envelope, r: &Request) -> Vec<u8> {
    encode(env, r.method, &r.options, &r.payload)
}

pub(crate) fn encode_response(env: &Envelope, r: &Response) -> Vec<u8> {
    encode(env, r.code, &r.options, &r.payload)
}
