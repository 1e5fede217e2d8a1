//! Turning owned messages into datagrams and checked views into owned messages.

use alloc::vec::Vec;

use bytes::{Bytes, BytesMut};
use corium_wire::{
    stream_header_len, token_header_extra_len, Code, Framing, Message, MessageType, MessageWriter,
    OptionIter, OptionNumber, StreamMessage,
};

use crate::message::Options;

/// A checked incoming message, from a datagram (RFC 7252 §3) or from a reliable
/// transport (RFC 8323 §3.2, §4.2). Stream messages have no type and no message ID; they
/// are presented as Non-confirmable with message ID 0, which is what the exchange layer
/// needs: no acknowledgement, no retransmission, no deduplication.
#[derive(Clone)]
pub(crate) struct Inbound<'a> {
    ty: MessageType,
    message_id: u16,
    code: Code,
    token: &'a [u8],
    options: OptionIter<'a>,
    payload: &'a [u8],
    /// Bytes of the whole message as received (0 for stream messages, where nobody
    /// counts them).
    len: usize,
}

impl<'a> Inbound<'a> {
    /// A view of a datagram message.
    pub(crate) fn datagram(msg: &Message<'a>) -> Self {
        Inbound {
            ty: msg.ty(),
            message_id: msg.message_id(),
            code: msg.code(),
            token: msg.token(),
            options: msg.options(),
            payload: msg.payload(),
            len: msg.as_bytes().len(),
        }
    }

    /// A view of a stream message.
    pub(crate) fn stream(msg: &StreamMessage<'a>) -> Self {
        Inbound {
            ty: MessageType::NonConfirmable,
            message_id: 0,
            code: msg.code(),
            token: msg.token(),
            options: msg.options(),
            payload: msg.payload(),
            len: 0,
        }
    }

    /// Bytes of the datagram it came in (amplification mitigation, RFC 9175 §2.4).
    pub(crate) fn wire_len(&self) -> usize {
        self.len
    }

    pub(crate) fn ty(&self) -> MessageType {
        self.ty
    }

    pub(crate) fn message_id(&self) -> u16 {
        self.message_id
    }

    pub(crate) fn code(&self) -> Code {
        self.code
    }

    pub(crate) fn token(&self) -> &'a [u8] {
        self.token
    }

    pub(crate) fn options(&self) -> OptionIter<'a> {
        self.options.clone()
    }

    /// The value of the first occurrence of option `number`.
    pub(crate) fn option(&self, number: OptionNumber) -> Option<&'a [u8]> {
        self.options()
            .skip_while(|o| o.number < number)
            .take_while(|o| o.number == number)
            .map(|o| o.value)
            .next()
    }

    pub(crate) fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

/// The length of a datagram carrying this message (RFC 7252 §3).
pub(crate) fn datagram_len(token: &[u8], options: &Options, payload: &[u8]) -> usize {
    4 + token_header_extra_len(token.len())
        + token.len()
        + options.encoded_len()
        + if payload.is_empty() {
            0
        } else {
            1 + payload.len()
        }
}

/// Encodes one message for the transport: a datagram when `framing` is `None`, else a
/// stream message without type and message ID (RFC 8323 §3.2, §4.2). The length is
/// computed first so the buffer is allocated once and `MessageWriter` cannot run out of
/// room.
pub(crate) fn encode(
    framing: Option<Framing>,
    ty: MessageType,
    code: Code,
    message_id: u16,
    token: &[u8],
    options: &Options,
    payload: &[u8],
) -> Bytes {
    let body = options.encoded_len()
        + if payload.is_empty() {
            0
        } else {
            1 + payload.len()
        };
    if let Some(framing) = framing {
        return encode_stream(framing, code, token, options, payload, body);
    }
    let len = 4 + token_header_extra_len(token.len()) + token.len() + body;
    let mut buf = alloc::vec![0u8; len];
    let written = write(&mut buf, ty, code, message_id, token, options, payload);
    debug_assert_eq!(written, Some(len));
    buf.truncate(written.unwrap_or(0));
    Bytes::from(buf)
}

/// Bytes the endpoint's output arena ([`encode_transient`]) takes at a time.
pub(crate) const ARENA_SIZE: usize = 16 * 1024;

/// [`encode`] for a message that is only transmitted, not kept (a piggybacked or NON
/// response, whose copy for duplicates the deduplication cache makes itself): a
/// datagram is written into `arena` and split off it, so the allocation is shared by
/// many datagrams and reclaimed once they are all sent and dropped, instead of one
/// allocation per datagram. Stream messages are encoded as by [`encode`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_transient(
    arena: &mut BytesMut,
    framing: Option<Framing>,
    ty: MessageType,
    code: Code,
    message_id: u16,
    token: &[u8],
    options: &Options,
    payload: &[u8],
) -> Bytes {
    if framing.is_some() {
        return encode(framing, ty, code, message_id, token, options, payload);
    }
    let len = datagram_len(token, options, payload);
    arena.clear();
    if arena.capacity() < len {
        // Reclaims the arena when every datagram split off it is gone; else a new one.
        arena.reserve(len.max(ARENA_SIZE));
    }
    arena.resize(len, 0);
    let written = write(arena, ty, code, message_id, token, options, payload);
    debug_assert_eq!(written, Some(len));
    arena.truncate(written.unwrap_or(0));
    arena.split().freeze()
}

fn encode_stream(
    framing: Framing,
    code: Code,
    token: &[u8],
    options: &Options,
    payload: &[u8],
    body: usize,
) -> Bytes {
    let len = stream_header_len(framing, token.len(), body) + token.len() + body;
    let mut buf = alloc::vec![0u8; len];
    let written = (|| {
        let mut w = MessageWriter::new_stream(&mut buf, framing, code, token, body).ok()?;
        for (number, value) in options.iter() {
            w.option(number, value).ok()?;
        }
        w.payload(payload).ok()
    })();
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
pub(crate) fn options_of(msg: &Inbound<'_>) -> Options {
    let mut options = Options::new();
    for opt in msg.options() {
        options.push_ordered(opt.number, opt.value);
    }
    options
}

/// Copies a payload.
pub(crate) fn payload_of(msg: &Inbound<'_>) -> Vec<u8> {
    msg.payload().to_vec()
}
