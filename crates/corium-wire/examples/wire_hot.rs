//! Instruction-count driver for the wire codec (issue 8, "Hot path"): parses a CON GET
//! `/test` datagram (RFC 7252 §3) and encodes its piggybacked 2.05 answer, `N` times.
//! `bench/callgrind.sh` runs it under `valgrind --tool=callgrind` with two values of
//! `N` and divides the difference in instructions by the difference in `N`.
//!
//! ```sh
//! cargo run --release -p corium-wire --example wire_hot -- 100000
//! ```

use std::hint::black_box;

use corium_wire::{Code, Message, MessageType, MessageWriter, OptionNumber};

/// CON GET `/test`, message ID 0x1234, token `0xcafe0001`.
const REQUEST: [u8; 13] = [
    0x44, 0x01, 0x12, 0x34, 0xca, 0xfe, 0x00, 0x01, 0xB4, b't', b'e', b's', b't',
];

/// One request: parse, walk the options, encode the answer. Returns its length.
fn once(request: &[u8], out: &mut [u8]) -> usize {
    let Ok(msg) = Message::parse(request) else {
        return 0;
    };
    let mut path_len = 0;
    for opt in msg.options() {
        if opt.number == OptionNumber::URI_PATH {
            path_len += opt.value.len();
        }
    }
    let Ok(mut w) = MessageWriter::new(
        out,
        MessageType::Acknowledgement,
        Code::CONTENT,
        msg.message_id(),
        msg.token(),
    ) else {
        return 0;
    };
    if w.option(OptionNumber::CONTENT_FORMAT, &[]).is_err() {
        return 0;
    }
    w.payload(b"hello").unwrap_or(0) + path_len
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(100_000, |a| a.parse().expect("N"));
    let mut out = [0u8; 64];
    let mut total = 0;
    for _ in 0..n {
        total += once(black_box(&REQUEST), black_box(&mut out));
    }
    println!("wire_hot n={n} bytes={total}");
}
