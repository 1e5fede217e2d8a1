//! Turning owned messages into datagrams and checked views into owned messages.

use alloc::vec::Vec;

use bytes::Bytes;
use corium_wire::{token_header_extra_len, Code, Message, MessageType, MessageWriter};

use crate::message::Options;

/// Encodes one message. The length is computed first so the buffer is allocated once and
/// `MessageWriter` cannot run out of room.
pub(crate) fn encode(
    ty: MessageType,
    code: Code,
    message_id: u16,
    token: &[u8],
    options: &Options,
    payload: &[u8],
) -> Bytes {
    let len = 4
        + token_header_extra_len(token.len())
        + token.len()
        + options.encoded_len()
        + if payload.is_empty() {
            0
        } else {
            1 + payload.len()
        };
    let mut buf = alloc::vec![0u8; len];
    let written = write(&mut buf, ty, code, message_id, token, options, payload);
    debug_assert_eq!(written, Some(len));
    buf.truncate(written.unwrap_or(0));
    Bytes::from(buf)
}

fn write(
    buf: &mut [u8],
    ty: MessageType,
    code: Code,
    message_id: u16,
    token: &[u8],
    options: &Options,
    payload: &[u8],
) -> Option<usize> {
    let mut w = MessageWriter::new(buf, ty, code, message_id, token).ok()?;
    for (number, value) in options.iter() {
        w.option(number, value).ok()?;
    }
    w.payload(payload).ok()
}

/// An empty message (ACK or RST) for `message_id` (RFC 7252 §4.1).
pub(crate) fn empty(ty: MessageType, message_id: u16) -> Bytes {
    let [hi, lo] = message_id.to_be_bytes();
    Bytes::from(alloc::vec![0x40 | ((ty as u8) << 4), 0, hi, lo])
}

/// Copies the options of a checked view.
pub(crate) fn options_of(msg: &Message<'_>) -> Options {
    let mut options = Options::new();
    for opt in msg.options() {
        options.push_ordered(opt.number, opt.value);
    }
    options
}

/// Copies a payload.
pub(crate) fn payload_of(msg: &Message<'_>) -> Vec<u8> {
    msg.payload().to_vec()
}
