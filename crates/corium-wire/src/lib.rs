//! CoAP wire formats for Corium: `no_std`, no `alloc`, no dependencies.
//!
//! This crate is the bottom layer of the Corium stack. It turns untrusted bytes into
//! checked views and writes messages into caller-owned buffers; it keeps no state and
//! never allocates. Parsing never panics: every malformed input yields a precise error.
//!
//! # Data flow
//!
//! ```text
//! datagram ──► Message::parse ──► Message<'a> (validated view)
//!                                  ├─ ty() / code() / message_id() / token()
//!                                  ├─ options()  ──► OptionIter ──► CoapOption { number, value }
//!                                  └─ payload()
//! response ◄── MessageWriter::new(buf, ty, code, mid, token)
//!                 .option(n, v)…   (non-decreasing option numbers)
//!                 .payload(p) ──► length written
//! ```
//!
//! # Modules
//!
//! | module | content | RFCs |
//! |---|---|---|
//! | [`code`](mod@code) | [`Code`], [`MessageType`] | RFC 7252 §3, §12.1; RFC 8132; RFC 7959; RFC 8323 §5; RFC 8516; RFC 8768 |
//! | [`option`](mod@option) | [`OptionNumber`], [`OptionInfo`] registry, uint helpers | RFC 7252 §3.2, §5.4, §5.10, §12.2 and later option RFCs |
//! | [`content_format`](mod@content_format) | [`ContentFormat`] registry | RFC 7252 §12.3 and later registrations |
//! | [`message`](mod@message) | [`Message`] view, [`OptionIter`], [`MessageWriter`] | RFC 7252 §3, §4.1; RFC 8974 §2.1 |
//! | [`uri`](mod@uri) | [`Uri`] parsing, percent-encoding, URI composition | RFC 7252 §6; RFC 3986; RFC 8323 §8 |
//! | [`link_format`](mod@link_format) | CoRE Link Format parser and query filter | RFC 6690 §2, §4.1, §5 |
//! | [`block`](mod@block) | Block1/Block2 option values | RFC 7959 §2.2; RFC 8323 §6 |
//!
//! Every item is also re-exported at the crate root.
//!
//! # Example
//!
//! ```
//! use corium_wire::{Code, Message, MessageType, MessageWriter, OptionNumber};
//!
//! // RFC 7252 Appendix A, Figure 16: CON GET coap://server/temperature.
//! let mut buf = [0u8; 64];
//! let mut w = MessageWriter::new(&mut buf, MessageType::Confirmable, Code::GET, 0x7d34, &[])?;
//! w.option(OptionNumber::URI_PATH, b"temperature")?;
//! let len = w.finish();
//! assert_eq!(len, 16);
//!
//! let msg = Message::parse(&buf[..len]).unwrap();
//! assert_eq!(msg.code(), Code::GET);
//! assert_eq!(msg.option(OptionNumber::URI_PATH), Some(&b"temperature"[..]));
//! # Ok::<(), corium_wire::EncodeError>(())
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod block;
pub mod code;
pub mod content_format;
pub mod link_format;
pub mod message;
pub mod option;
pub mod stream;
pub mod uri;

pub use block::*;
pub use code::*;
pub use content_format::*;
pub use link_format::*;
pub use message::*;
pub use option::*;
pub use stream::{
    frame_len, signal_option, stream_header_len, write_stream_header, Framing, StreamError,
    StreamMessage, DEFAULT_MAX_MESSAGE_SIZE,
};
pub use uri::*;

/// Writes `bytes` as lowercase hex (used by several `Debug` impls).
pub(crate) fn write_hex(f: &mut core::fmt::Formatter<'_>, bytes: &[u8]) -> core::fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}
