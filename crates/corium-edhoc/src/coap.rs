//! EDHOC over CoAP (RFC 9528 Appendix A.2) and the combined request (RFC 9668 §3):
//! payload framing only, sans-IO.
//!
//! - message_1 travels in a POST to `/.well-known/edhoc` prefixed with CBOR `true`
//!   (0xf5): the initiator has no C_R yet;
//! - message_2 comes back in the 2.04 response;
//! - message_3 travels in a second POST prefixed with C_R (its CBOR encoding), so the
//!   responder finds its state; message_4, if any, in the response;
//! - or (RFC 9668) message_3 rides with the first OSCORE request: the EDHOC option
//!   (21, empty) is set, and the payload is message_3 (one CBOR byte string,
//!   CIPHERTEXT_3) followed by the OSCORE ciphertext; C_R is the OSCORE `kid`.

use crate::{cbor_item_len, conn_id, Error};

/// The resource EDHOC messages are POSTed to (RFC 9528 §9.10).
pub const WELL_KNOWN_PATH: [&str; 2] = [".well-known", "edhoc"];

/// The CBOR `true` prefixing message_1 in a request (RFC 9528 Appendix A.2).
pub const MESSAGE_1_PREFIX: u8 = 0xf5;

/// The EDHOC option of the combined request (RFC 9668 §3.1): critical, safe-to-forward,
/// empty.
pub const EDHOC_OPTION: u16 = 21;

/// Content-Format `application/edhoc+cbor-seq` (RFC 9528 §9.9): EDHOC messages without
/// a prepended C_x and EDHOC error messages.
pub const CONTENT_FORMAT_EDHOC: u16 = 64;

/// Content-Format `application/cid-edhoc+cbor-seq` (RFC 9528 §9.9): an EDHOC message
/// with a prepended connection identifier.
pub const CONTENT_FORMAT_CID_EDHOC: u16 = 65;

/// What a POST to `/.well-known/edhoc` carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestPayload<'a> {
    /// message_1 (after the `true` prefix).
    Message1(&'a [u8]),
    /// message_3 and the C_R it was sent to (the OSCORE Recipient ID of the responder).
    Message3 {
        /// C_R as a byte string.
        c_r: Vec<u8>,
        /// message_3.
        message_3: &'a [u8],
    },
}

/// Splits the payload of a request to `/.well-known/edhoc` (RFC 9528 Appendix A.2).
pub fn parse_request(payload: &[u8]) -> Result<RequestPayload<'_>, Error> {
    match payload.split_first() {
        None => Err(Error::Malformed),
        Some((&MESSAGE_1_PREFIX, rest)) if !rest.is_empty() => Ok(RequestPayload::Message1(rest)),
        Some(_) => {
            let len = cbor_item_len(payload).ok_or(Error::Malformed)?;
            let (encoded, message_3) = payload.split_at(len);
            let c_r = decode_connection_id(encoded)?;
            if message_3.is_empty() {
                return Err(Error::Malformed);
            }
            Ok(RequestPayload::Message3 { c_r, message_3 })
        }
    }
}

/// The C_x byte string of its CBOR encoding (RFC 9528 §3.3.2): a compact integer
/// -24..=23 stands for its one-byte encoding; a byte string for itself.
pub fn decode_connection_id(encoded: &[u8]) -> Result<Vec<u8>, Error> {
    let bytes = match encoded {
        [b] if crate::is_compact_connection_id(encoded) => vec![*b],
        [h, rest @ ..] if h & 0xe0 == 0x40 && usize::from(h & 0x1f) == rest.len() => rest.to_vec(),
        _ => return Err(Error::InvalidConnectionId),
    };
    conn_id(&bytes)?;
    Ok(bytes)
}

/// The payload of the request carrying message_1.
pub fn message_1_request(message_1: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + message_1.len());
    out.push(MESSAGE_1_PREFIX);
    out.extend_from_slice(message_1);
    out
}

/// The payload of the request carrying message_3 to the responder's `c_r`.
pub fn message_3_request(c_r: &[u8], message_3: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = crate::encode_connection_id(c_r)?;
    out.extend_from_slice(message_3);
    Ok(out)
}

/// Splits the payload of a combined request (RFC 9668 §3.2.1 step 2): message_3 (the
/// first CBOR item, a byte string) and the OSCORE ciphertext after it.
pub fn split_combined_payload(payload: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    if payload.first().is_none_or(|b| b & 0xe0 != 0x40) {
        return Err(Error::Malformed);
    }
    let len = cbor_item_len(payload).ok_or(Error::Malformed)?;
    let (message_3, ciphertext) = payload.split_at(len);
    if ciphertext.is_empty() {
        return Err(Error::Malformed);
    }
    Ok((message_3, ciphertext))
}

/// The payload of a combined request: message_3 followed by the OSCORE ciphertext (RFC
/// 9668 §3.2.1).
pub fn combined_payload(message_3: &[u8], oscore_ciphertext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message_3.len() + oscore_ciphertext.len());
    out.extend_from_slice(message_3);
    out.extend_from_slice(oscore_ciphertext);
    out
}
