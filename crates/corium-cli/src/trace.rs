//! One-line dissections of CoAP datagrams for `-v`:
//!
//! ```text
//! → 127.0.0.1:5683 CON GET mid=0x1234 token=0x5f1a Uri-Path: "test"
//! ← 127.0.0.1:5683 ACK 2.05 Content mid=0x1234 token=0x5f1a Content-Format: 0 (text/plain; charset=utf-8) | 11 bytes "hello world"
//! ```
//!
//! The datagram is parsed with `corium_wire`'s checked [`Message`] view
//! (RFC 7252 §3); options are shown by their registered name and value
//! format (RFC 7252 §3.2, §5.10).

use std::fmt::Write as _;
use std::net::SocketAddr;

use corium::wire::{
    Code, Framing, Message, OptionFormat, OptionNumber, StreamMessage, MAX_EXTENDED_TOKEN_LEN,
};

/// Payload bytes shown in a dissection before it is cut short.
const PAYLOAD_PREVIEW: usize = 64;

/// Renders one datagram as a single line; `sent` selects the arrow
/// (`→` sent to `peer`, `←` received from it).
pub(crate) fn dissect(
    sent: bool,
    peer: SocketAddr,
    framing: Option<Framing>,
    bytes: &[u8],
) -> String {
    let arrow = if sent { '→' } else { '←' };
    let mut out = format!("{arrow} {peer} ");
    if let Some(framing) = framing {
        return dissect_stream(out, framing, bytes);
    }
    let msg = match Message::parse(bytes) {
        Ok(msg) => msg,
        Err(e) => {
            let _ = write!(out, "malformed datagram ({} bytes): {e}", bytes.len());
            return out;
        }
    };
    let code = msg.code();
    let _ = write!(out, "{} ", msg.ty());
    if code == Code::EMPTY {
        out.push_str("Empty");
    } else if code.is_request() {
        match code.name() {
            Some(name) => out.push_str(name),
            None => {
                let _ = write!(out, "{code}");
            }
        }
    } else {
        let _ = write!(out, "{code:?}");
    }
    let _ = write!(out, " mid={:#06x}", msg.message_id());
    if !msg.token().is_empty() {
        out.push_str(" token=0x");
        push_hex(&mut out, msg.token());
    }
    let mut first = true;
    for opt in msg.options() {
        out.push_str(if first { " " } else { ", " });
        first = false;
        push_option(&mut out, opt.number, opt.value);
    }
    let payload = msg.payload();
    if !payload.is_empty() {
        out.push_str(" | ");
        push_payload(&mut out, payload);
    }
    out
}

/// A message of a reliable transport (RFC 8323 §3.2): no type, no message ID;
/// signaling options (7.xx) are numbered per signal and shown by number.
fn dissect_stream(mut out: String, framing: Framing, bytes: &[u8]) -> String {
    let msg = match StreamMessage::parse(framing, bytes, MAX_EXTENDED_TOKEN_LEN) {
        Ok(msg) => msg,
        Err(e) => {
            let _ = write!(out, "malformed message ({} bytes): {e}", bytes.len());
            return out;
        }
    };
    let code = msg.code();
    match code.name() {
        Some(name) if code.is_request() || code.class() == 7 => out.push_str(name),
        _ => {
            let _ = write!(out, "{code:?}");
        }
    }
    if !msg.token().is_empty() {
        out.push_str(" token=0x");
        push_hex(&mut out, msg.token());
    }
    let mut first = true;
    for opt in msg.options() {
        out.push_str(if first { " " } else { ", " });
        first = false;
        if code.class() == 7 {
            let _ = write!(out, "#{}", opt.number.0);
            if !opt.value.is_empty() {
                out.push_str(": 0x");
                push_hex(&mut out, opt.value);
            }
        } else {
            push_option(&mut out, opt.number, opt.value);
        }
    }
    let payload = msg.payload();
    if !payload.is_empty() {
        out.push_str(" | ");
        push_payload(&mut out, payload);
    }
    out
}

/// `Name: value` by the option's registered value format.
fn push_option(out: &mut String, number: OptionNumber, value: &[u8]) {
    let _ = write!(out, "{number}");
    let format = number.info().map(|i| i.format);
    match format {
        Some(OptionFormat::Empty) if value.is_empty() => {}
        Some(OptionFormat::Uint) if value.len() <= 4 => {
            let v = value.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
            if number == OptionNumber::CONTENT_FORMAT || number == OptionNumber::ACCEPT {
                let cf = corium::ContentFormat(u16::try_from(v).unwrap_or(u16::MAX));
                match cf.media_type() {
                    Some(mt) => {
                        let _ = write!(out, ": {v} ({mt})");
                    }
                    None => {
                        let _ = write!(out, ": {v}");
                    }
                }
            } else if number.0 == 23 || number.0 == 27 {
                // Block2 / Block1 (RFC 7959 §2.2): NUM/M/SZX shown as num/more/size.
                // SZX 7 is BERT on reliable transports (RFC 8323 §6).
                let (num, more) = (v >> 4, (v >> 3) & 1);
                if v & 7 == 7 {
                    let _ = write!(out, ": {num}/{more}/BERT");
                } else {
                    let _ = write!(out, ": {num}/{more}/{}", 1u32 << ((v & 7) + 4));
                }
            } else {
                let _ = write!(out, ": {v}");
            }
        }
        Some(OptionFormat::String) => match std::str::from_utf8(value) {
            Ok(s) => {
                let _ = write!(out, ": {s:?}");
            }
            Err(_) => {
                out.push_str(": 0x");
                push_hex(out, value);
            }
        },
        _ if value.is_empty() => out.push_str(": (empty)"),
        _ => {
            out.push_str(": 0x");
            push_hex(out, value);
        }
    }
}

/// `N bytes "text"` (cut after [`PAYLOAD_PREVIEW`] bytes) or `N bytes 0x...`.
fn push_payload(out: &mut String, payload: &[u8]) {
    let _ = write!(out, "{} bytes ", payload.len());
    let shown = &payload[..payload.len().min(PAYLOAD_PREVIEW)];
    let cut = shown.len() < payload.len();
    // A preview may end inside a UTF-8 sequence: show the valid prefix.
    let text = match std::str::from_utf8(shown) {
        Ok(s) => Some(s),
        Err(e) if cut && e.error_len().is_none() => {
            std::str::from_utf8(&shown[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    match text {
        Some(s) => {
            let _ = write!(out, "{s:?}");
        }
        None => {
            out.push_str("0x");
            push_hex(out, shown);
        }
    }
    if cut {
        out.push('…');
    }
}

/// Appends lowercase hex.
fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:5683".parse().unwrap()
    }

    #[test]
    fn rfc7252_figure_16_get() {
        // RFC 7252 Appendix A, Figure 16: CON GET /temperature, MID 0x7d34, no token.
        let mut bytes = vec![0x40, 0x01, 0x7d, 0x34, 0xbb];
        bytes.extend_from_slice(b"temperature");
        assert_eq!(
            dissect(true, peer(), None, &bytes),
            "→ 127.0.0.1:5683 CON GET mid=0x7d34 Uri-Path: \"temperature\""
        );
    }

    #[test]
    fn piggybacked_response_with_payload() {
        // ACK 2.05, MID 0x7d34, token 0x71, Content-Format 0, payload "22.3 C".
        let mut bytes = vec![0x61, 0x45, 0x7d, 0x34, 0x71, 0xc0, 0xff];
        bytes.extend_from_slice(b"22.3 C");
        assert_eq!(
            dissect(false, peer(), None, &bytes),
            "← 127.0.0.1:5683 ACK 2.05 Content mid=0x7d34 token=0x71 \
             Content-Format: 0 (text/plain; charset=utf-8) | 6 bytes \"22.3 C\""
        );
    }

    #[test]
    fn empty_ack_and_options() {
        assert_eq!(
            dissect(false, peer(), None, &[0x60, 0x00, 0x12, 0x34]),
            "← 127.0.0.1:5683 ACK Empty mid=0x1234"
        );
        // CON PUT, If-None-Match (5, empty), ETag (4) 0xabcd, Block1 (27) 0x0a.
        let bytes = [
            0x42, 0x03, 0x00, 0x01, 0xde, 0xad, 0x42, 0xab, 0xcd, 0x10, 0xd1, 0x09, 0x0a,
        ];
        assert_eq!(
            dissect(true, peer(), None, &bytes),
            "→ 127.0.0.1:5683 CON PUT mid=0x0001 token=0xdead ETag: 0xabcd, \
             If-None-Match, Block1: 0/1/64"
        );
    }

    #[test]
    fn binary_and_long_payloads_and_garbage() {
        let mut bytes = vec![0x50, 0x45, 0x00, 0x02, 0xff];
        bytes.extend_from_slice(&[0xff, 0x00]);
        assert!(dissect(false, peer(), None, &bytes).ends_with("| 2 bytes 0xff00"));
        let mut bytes = vec![0x50, 0x45, 0x00, 0x02, 0xff];
        bytes.extend(std::iter::repeat_n(b'a', 100));
        let line = dissect(false, peer(), None, &bytes);
        assert!(
            line.ends_with(&format!("| 100 bytes \"{}\"…", "a".repeat(64))),
            "{line}"
        );
        let line = dissect(false, peer(), None, &[0x01]);
        assert!(
            line.starts_with("← 127.0.0.1:5683 malformed datagram (1 bytes): "),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn stream_messages() {
        // RFC 8323 Figure 11 (Ping) and a CSM with Max-Message-Size 1152.
        let ping = dissect(true, peer(), Some(Framing::Tcp), &[0x01, 0xe2, 0x42]);
        assert!(ping.ends_with("Ping token=0x42"), "{ping}");
        let csm = dissect(
            false,
            peer(),
            Some(Framing::Tcp),
            &[0x30, 0xe1, 0x22, 0x04, 0x80],
        );
        assert!(csm.ends_with("CSM #2: 0x0480"), "{csm}");
        let bad = dissect(false, peer(), Some(Framing::Tcp), &[0x0f, 0x01]);
        assert!(bad.contains("malformed message"), "{bad}");
    }
}
