//! Parse/emit agreement for the CoAP message format (RFC 7252 §3, §3.1; RFC 8974 §2.1).
//!
//! Any input that `Message::parse` accepts is re-encoded with `MessageWriter` and parsed
//! again. Both parses must agree on every field, and because the option and token length
//! encodings of RFC 7252 §3.1 / RFC 8974 §2.1 are canonical (the nibble ranges 0–12,
//! 13–268 and 269–65804 do not overlap), the re-encoding must reproduce the input bytes.
#![no_main]

use corium_wire::{CoapOption, Header, Message, MessageWriter, ParseError, MAX_TOKEN_LEN};
use libfuzzer_sys::fuzz_target;

/// How many distinct option numbers get the (linear) by-number lookups checked.
const MAX_LOOKUPS: usize = 16;

fn options_of<'a>(msg: &Message<'a>) -> Vec<CoapOption<'a>> {
    msg.options().collect()
}

fuzz_target!(|data: &[u8]| {
    // The raw header view reads any 4 bytes and writes them back unchanged.
    if let Some(header) = Header::parse(data) {
        assert_eq!(header.to_bytes(), data[..4], "Header::parse/to_bytes");
    } else {
        assert!(data.len() < 4);
    }

    let msg = match Message::parse(data) {
        Ok(msg) => msg,
        Err(err) => {
            // Rendering the error must not panic either.
            let _ = format!("{err} {err:?}");
            // The RFC 7252 token limit can only reject more, never accept more.
            assert!(Message::parse_with_max_token(data, MAX_TOKEN_LEN).is_err());
            return;
        }
    };
    let _ = format!("{msg:?}");

    // Accessors: exercise them all and check they are consistent with each other.
    let options = options_of(&msg);
    let token = msg.token();
    let payload = msg.payload();
    assert_eq!(msg.as_bytes(), data);
    assert!(msg.options_bytes().len() + token.len() + payload.len() + 4 <= data.len());
    assert!(
        options.windows(2).all(|w| w[0].number <= w[1].number),
        "options out of order: {options:?}"
    );
    if msg.is_empty_message() {
        assert_eq!(
            data.len(),
            4,
            "RFC 7252 §4.1: an Empty message is exactly 4 bytes"
        );
    }
    for opt in &options {
        let _ = opt.value_uint();
        let _ = opt.value_str();
    }
    // The by-number lookups scan from the start, so check them for the first few distinct
    // numbers only (a 4 KiB input can hold thousands of one-byte options).
    let mut distinct: Vec<&CoapOption<'_>> = Vec::new();
    for opt in &options {
        if distinct.last().is_none_or(|o| o.number != opt.number) {
            distinct.push(opt);
        }
    }
    for first in distinct.iter().take(MAX_LOOKUPS) {
        assert_eq!(msg.option(first.number), Some(first.value));
        let all: Vec<&[u8]> = msg.option_values(first.number).collect();
        let expected: Vec<&[u8]> = options
            .iter()
            .filter(|o| o.number == first.number)
            .map(|o| o.value)
            .collect();
        assert_eq!(all, expected, "option_values({:?})", first.number);
        assert_eq!(
            msg.option_uint(first.number),
            corium_wire::decode_uint(first.value)
        );
    }
    let _ = msg.content_format();

    // The plain RFC 7252 limit (TKL 0–8) accepts exactly the messages with short tokens.
    match Message::parse_with_max_token(data, MAX_TOKEN_LEN) {
        Ok(m) => {
            assert!(token.len() <= MAX_TOKEN_LEN);
            assert_eq!(m.token(), token);
            assert_eq!(m.payload(), payload);
        }
        Err(ParseError::TokenTooLong { len, max }) => {
            assert_eq!((len, max), (token.len(), MAX_TOKEN_LEN));
        }
        Err(e) => panic!("parse Ok but parse_with_max_token(8) = {e:?}"),
    }

    // Re-encode.
    let mut buf = vec![0u8; data.len() + 16];
    let mut w = MessageWriter::new(&mut buf, msg.ty(), msg.code(), msg.message_id(), token)
        .expect("MessageWriter::new on a parsed header and token");
    for opt in &options {
        w.option(opt.number, opt.value)
            .unwrap_or_else(|e| panic!("re-encoding option {opt:?}: {e:?}"));
    }
    assert_eq!(
        w.last_option(),
        options
            .last()
            .map_or(corium_wire::OptionNumber(0), |o| o.number)
    );
    let len = w.payload(payload).expect("re-encoding payload");
    let out = &buf[..len];

    let again = Message::parse(out).unwrap_or_else(|e| panic!("re-parse failed: {e:?}"));
    assert_eq!(again.ty(), msg.ty());
    assert_eq!(again.code(), msg.code());
    assert_eq!(again.message_id(), msg.message_id());
    assert_eq!(again.token(), token);
    assert_eq!(options_of(&again), options);
    assert_eq!(again.payload(), payload);
    assert_eq!(
        out, data,
        "canonical encoding: re-encoding differs from the input"
    );
});
