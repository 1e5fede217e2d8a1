//! Handshake messages of the PSK handshake (RFC 5246 §7.4, RFC 6347 §4.2, RFC 4279 §2):
//! parsing, building, and reassembly of fragments (RFC 6347 §4.2.3). Every parser takes
//! untrusted bytes and returns `None` instead of panicking.

use crate::record::HANDSHAKE_HEADER_LEN;

/// Handshake message types (RFC 5246 §7.4, RFC 6347 §4.3.2).
pub(crate) mod msg_type {
    pub(crate) const HELLO_REQUEST: u8 = 0;
    pub(crate) const CLIENT_HELLO: u8 = 1;
    pub(crate) const SERVER_HELLO: u8 = 2;
    pub(crate) const HELLO_VERIFY_REQUEST: u8 = 3;
    pub(crate) const SERVER_KEY_EXCHANGE: u8 = 12;
    pub(crate) const SERVER_HELLO_DONE: u8 = 14;
    pub(crate) const CLIENT_KEY_EXCHANGE: u8 = 16;
    pub(crate) const FINISHED: u8 = 20;
}

/// TLS_PSK_WITH_AES_128_CCM_8 (RFC 6655).
pub(crate) const PSK_AES128_CCM_8: u16 = 0xC0A8;
/// TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3).
pub(crate) const EMPTY_RENEGOTIATION_INFO_SCSV: u16 = 0x00FF;
/// `extended_master_secret` extension (RFC 7627 §5.1).
pub(crate) const EXT_EXTENDED_MASTER_SECRET: u16 = 23;
/// `renegotiation_info` extension (RFC 5746 §3.2).
pub(crate) const EXT_RENEGOTIATION_INFO: u16 = 0xff01;
/// Largest handshake message this engine reassembles. PSK handshake messages are small:
/// the biggest is a ClientKeyExchange with a 65 535-byte identity, which RFC 4279 §5.3
/// lets implementations refuse beyond 128 bytes.
pub(crate) const MAX_MESSAGE_LEN: usize = 2048;

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// One handshake fragment of a record (RFC 6347 §4.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fragment<'a> {
    pub(crate) msg_type: u8,
    pub(crate) length: usize,
    pub(crate) message_seq: u16,
    pub(crate) offset: usize,
    pub(crate) body: &'a [u8],
}

/// The handshake fragments of a record's plaintext; `None` if malformed.
pub(crate) fn fragments(mut plain: &[u8]) -> Option<Vec<Fragment<'_>>> {
    let mut out = Vec::new();
    while !plain.is_empty() {
        let h = plain.get(..HANDSHAKE_HEADER_LEN)?;
        let length = u24(&h[1..4]);
        let offset = u24(&h[6..9]);
        let frag_len = u24(&h[9..12]);
        if offset.checked_add(frag_len)? > length {
            return None;
        }
        let body = plain.get(HANDSHAKE_HEADER_LEN..HANDSHAKE_HEADER_LEN + frag_len)?;
        out.push(Fragment {
            msg_type: h[0],
            length,
            message_seq: u16::from_be_bytes([h[4], h[5]]),
            offset,
            body,
        });
        plain = &plain[HANDSHAKE_HEADER_LEN + frag_len..];
    }
    Some(out)
}

/// The 12-byte header of an unfragmented message (the form the transcript hashes,
/// RFC 6347 §4.2.6).
pub(crate) fn header(msg_type: u8, length: usize, message_seq: u16) -> [u8; 12] {
    let l = (length as u32).to_be_bytes();
    let mut h = [0u8; 12];
    h[0] = msg_type;
    h[1..4].copy_from_slice(&l[1..]);
    h[4..6].copy_from_slice(&message_seq.to_be_bytes());
    h[9..12].copy_from_slice(&l[1..]);
    h
}

/// A whole message: header and body.
pub(crate) fn message(msg_type: u8, message_seq: u16, body: &[u8]) -> Vec<u8> {
    let mut m = header(msg_type, body.len(), message_seq).to_vec();
    m.extend_from_slice(body);
    m
}

/// Splits a whole message into fragments of at most `max_body` body bytes each
/// (RFC 6347 §4.2.3).
pub(crate) fn fragment_message(message: &[u8], max_body: usize) -> Vec<Vec<u8>> {
    let Some((h, body)) = message.split_at_checked(HANDSHAKE_HEADER_LEN) else {
        return Vec::new();
    };
    if body.len() <= max_body {
        return vec![message.to_vec()];
    }
    let max_body = max_body.max(1);
    body.chunks(max_body)
        .enumerate()
        .map(|(i, chunk)| {
            let offset = ((i * max_body) as u32).to_be_bytes();
            let len = (chunk.len() as u32).to_be_bytes();
            let mut f = h.to_vec();
            f[6..9].copy_from_slice(&offset[1..]);
            f[9..12].copy_from_slice(&len[1..]);
            f.extend_from_slice(chunk);
            f
        })
        .collect()
}

/// Reassembles one message from fragments in any order (RFC 6347 §4.2.3).
#[derive(Debug)]
pub(crate) struct Reassembly {
    pub(crate) msg_type: u8,
    pub(crate) message_seq: u16,
    /// The record epoch of the first fragment: fragments of another epoch are not mixed
    /// in (RFC 6347 §4.1: epoch-0 records are unauthenticated).
    pub(crate) epoch: u16,
    body: Vec<u8>,
    /// One flag per body byte (messages are at most [`MAX_MESSAGE_LEN`]).
    have: Vec<bool>,
    missing: usize,
}

impl Reassembly {
    /// Starts with the first fragment seen (of an epoch-0 record); `None` if the message
    /// is too long.
    pub(crate) fn new(f: &Fragment<'_>) -> Option<Self> {
        Self::new_in(f, 0)
    }

    /// Starts with the first fragment seen, from a record of `epoch`; `None` if the
    /// message is too long.
    pub(crate) fn new_in(f: &Fragment<'_>, epoch: u16) -> Option<Self> {
        if f.length > MAX_MESSAGE_LEN {
            return None;
        }
        let mut r = Reassembly {
            msg_type: f.msg_type,
            message_seq: f.message_seq,
            epoch,
            body: vec![0; f.length],
            have: vec![false; f.length],
            missing: f.length,
        };
        r.add_in(f, epoch);
        Some(r)
    }

    /// Adds a fragment of the same message (from an epoch-0 record); `false` if it
    /// contradicts the first one.
    pub(crate) fn add(&mut self, f: &Fragment<'_>) -> bool {
        self.add_in(f, 0)
    }

    /// Adds a fragment of the same message from a record of `epoch`; `false` if it
    /// contradicts the first one or comes from another epoch (RFC 6347 §4.2.3).
    pub(crate) fn add_in(&mut self, f: &Fragment<'_>, epoch: u16) -> bool {
        if epoch != self.epoch
            || f.msg_type != self.msg_type
            || f.length != self.body.len()
            || f.message_seq != self.message_seq
        {
            return false;
        }
        for (i, &b) in f.body.iter().enumerate() {
            let at = f.offset + i;
            if !self.have[at] {
                self.have[at] = true;
                self.body[at] = b;
                self.missing -= 1;
            }
        }
        true
    }

    /// The body, once complete.
    pub(crate) fn complete(&self) -> Option<&[u8]> {
        (self.missing == 0).then_some(&self.body[..])
    }
}

/// The fields of a ClientHello body this engine uses (RFC 5246 §7.4.1.2, RFC 6347
/// §4.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientHelloInfo<'a> {
    pub(crate) version: u16,
    pub(crate) random: [u8; 32],
    pub(crate) cookie: &'a [u8],
    /// TLS_PSK_WITH_AES_128_CCM_8 is offered.
    pub(crate) offers_psk_ccm8: bool,
    /// The null compression method is offered.
    pub(crate) null_compression: bool,
    /// `extended_master_secret` (RFC 7627) is offered.
    pub(crate) ems: bool,
    /// Secure renegotiation is signalled (SCSV or an empty `renegotiation_info`,
    /// RFC 5746 §3.4).
    pub(crate) secure_renegotiation: bool,
    /// A non-empty `renegotiation_info` (a renegotiation, refused).
    pub(crate) renegotiating: bool,
    /// The body with the cookie left out (what the cookie is computed over).
    pub(crate) without_cookie: (&'a [u8], &'a [u8]),
}

/// Parses a ClientHello body.
pub(crate) fn parse_client_hello(body: &[u8]) -> Option<ClientHelloInfo<'_>> {
    let version = u16_at(body, 0)?;
    let random: [u8; 32] = body.get(2..34)?.try_into().ok()?;
    let mut pos = 34;
    let sid_len = usize::from(*body.get(pos)?);
    if sid_len > 32 {
        return None;
    }
    pos += 1 + sid_len;
    let cookie_len = usize::from(*body.get(pos)?);
    let cookie_start = pos + 1;
    let cookie = body.get(cookie_start..cookie_start + cookie_len)?;
    let without_cookie = (&body[..pos], &body[cookie_start + cookie_len..]);
    pos = cookie_start + cookie_len;
    let suites_len = usize::from(u16_at(body, pos)?);
    if suites_len == 0 || suites_len % 2 != 0 {
        return None;
    }
    let suites = body.get(pos + 2..pos + 2 + suites_len)?;
    pos += 2 + suites_len;
    let suite = |s: u16| suites.chunks_exact(2).any(|c| c == s.to_be_bytes());
    let comp_len = usize::from(*body.get(pos)?);
    let comps = body.get(pos + 1..pos + 1 + comp_len)?;
    pos += 1 + comp_len;
    let mut info = ClientHelloInfo {
        version,
        random,
        cookie,
        offers_psk_ccm8: suite(PSK_AES128_CCM_8),
        null_compression: comps.contains(&0),
        ems: false,
        secure_renegotiation: suite(EMPTY_RENEGOTIATION_INFO_SCSV),
        renegotiating: false,
        without_cookie,
    };
    if pos < body.len() {
        for (ty, data) in extensions(&body[pos..])? {
            match ty {
                EXT_EXTENDED_MASTER_SECRET => info.ems = true,
                EXT_RENEGOTIATION_INFO => {
                    if data == [0] {
                        info.secure_renegotiation = true;
                    } else {
                        info.renegotiating = true;
                    }
                }
                _ => {}
            }
        }
    }
    Some(info)
}

/// The extensions block (`uint16` length, then type/length/data triples).
fn extensions(b: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let len = usize::from(u16_at(b, 0)?);
    let mut rest = b.get(2..2 + len)?;
    if b.len() != 2 + len {
        return None;
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let ty = u16_at(rest, 0)?;
        let l = usize::from(u16_at(rest, 2)?);
        out.push((ty, rest.get(4..4 + l)?));
        rest = &rest[4 + l..];
    }
    Some(out)
}

/// A ClientHello body offering only TLS_PSK_WITH_AES_128_CCM_8, with the empty
/// `renegotiation_info` and `extended_master_secret` extensions.
pub(crate) fn client_hello(random: &[u8; 32], cookie: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + cookie.len());
    b.extend_from_slice(&super::record::DTLS_1_2);
    b.extend_from_slice(random);
    b.push(0); // session_id
    b.push(cookie.len() as u8);
    b.extend_from_slice(cookie);
    b.extend_from_slice(&2u16.to_be_bytes());
    b.extend_from_slice(&PSK_AES128_CCM_8.to_be_bytes());
    b.extend_from_slice(&[1, 0]); // null compression
    let ext = [
        0xff, 0x01, 0, 1, 0, // renegotiation_info, empty
        0, 23, 0, 0, // extended_master_secret
    ];
    b.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    b.extend_from_slice(&ext);
    b
}

/// A HelloVerifyRequest body (RFC 6347 §4.2.1).
pub(crate) fn hello_verify_request(cookie: &[u8]) -> Vec<u8> {
    let mut b = super::record::DTLS_1_2.to_vec();
    b.push(cookie.len() as u8);
    b.extend_from_slice(cookie);
    b
}

/// The cookie of a HelloVerifyRequest body.
pub(crate) fn parse_hello_verify_request(body: &[u8]) -> Option<&[u8]> {
    let len = usize::from(*body.get(2)?);
    let cookie = body.get(3..3 + len)?;
    (body.len() == 3 + len).then_some(cookie)
}

/// A ServerHello body: empty session id (sessions are not resumed), the PSK suite, null
/// compression, and the extensions the client offered that this engine implements.
pub(crate) fn server_hello(random: &[u8; 32], ems: bool, renegotiation_info: bool) -> Vec<u8> {
    let mut b = super::record::DTLS_1_2.to_vec();
    b.extend_from_slice(random);
    b.push(0);
    b.extend_from_slice(&PSK_AES128_CCM_8.to_be_bytes());
    b.push(0);
    let mut ext = Vec::new();
    if renegotiation_info {
        ext.extend_from_slice(&[0xff, 0x01, 0, 1, 0]);
    }
    if ems {
        ext.extend_from_slice(&[0, 23, 0, 0]);
    }
    if !ext.is_empty() {
        b.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        b.extend_from_slice(&ext);
    }
    b
}

/// What a client takes from a ServerHello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerHelloInfo {
    pub(crate) version: u16,
    pub(crate) random: [u8; 32],
    pub(crate) cipher_suite: u16,
    pub(crate) compression: u8,
    pub(crate) ems: bool,
    /// An extension we did not offer, or a non-empty `renegotiation_info`.
    pub(crate) bad_extension: bool,
}

/// Parses a ServerHello body.
pub(crate) fn parse_server_hello(body: &[u8]) -> Option<ServerHelloInfo> {
    let version = u16_at(body, 0)?;
    let random: [u8; 32] = body.get(2..34)?.try_into().ok()?;
    let sid_len = usize::from(*body.get(34)?);
    if sid_len > 32 {
        return None;
    }
    let pos = 35 + sid_len;
    let cipher_suite = u16_at(body, pos)?;
    let compression = *body.get(pos + 2)?;
    let mut info = ServerHelloInfo {
        version,
        random,
        cipher_suite,
        compression,
        ems: false,
        bad_extension: false,
    };
    if pos + 3 < body.len() {
        for (ty, data) in extensions(&body[pos + 3..])? {
            match ty {
                EXT_EXTENDED_MASTER_SECRET if data.is_empty() => info.ems = true,
                EXT_RENEGOTIATION_INFO if data == [0] => {}
                _ => info.bad_extension = true,
            }
        }
    }
    Some(info)
}

/// ServerKeyExchange for PSK: the identity hint (RFC 4279 §2).
pub(crate) fn psk_identity_field(identity: &[u8]) -> Vec<u8> {
    let mut b = (identity.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(identity);
    b
}

/// Parses `opaque psk_identity<0..2^16-1>` filling a whole body (ClientKeyExchange,
/// ServerKeyExchange).
pub(crate) fn parse_psk_identity_field(body: &[u8]) -> Option<&[u8]> {
    let len = usize::from(u16_at(body, 0)?);
    (body.len() == 2 + len).then(|| &body[2..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_hello_round_trip() {
        let body = client_hello(&[9; 32], b"cookie");
        let ch = parse_client_hello(&body).unwrap();
        assert_eq!(ch.version, 0xfefd);
        assert_eq!(ch.random, [9; 32]);
        assert_eq!(ch.cookie, b"cookie");
        assert!(ch.offers_psk_ccm8 && ch.null_compression && ch.ems);
        assert!(ch.secure_renegotiation && !ch.renegotiating);
        let (a, b) = ch.without_cookie;
        let plain = client_hello(&[9; 32], b"");
        let ch0 = parse_client_hello(&plain).unwrap();
        assert_eq!(ch0.without_cookie, (a, b));
        for n in 0..body.len() {
            let _ = parse_client_hello(&body[..n]);
        }
    }

    #[test]
    fn server_hello_round_trip() {
        let body = server_hello(&[3; 32], true, true);
        let sh = parse_server_hello(&body).unwrap();
        assert_eq!(sh.cipher_suite, PSK_AES128_CCM_8);
        assert!(sh.ems && !sh.bad_extension);
        let body = server_hello(&[3; 32], false, false);
        let sh = parse_server_hello(&body).unwrap();
        assert!(!sh.ems && !sh.bad_extension);
        for n in 0..body.len() {
            let _ = parse_server_hello(&body[..n]);
        }
    }

    #[test]
    fn fragments_reassemble_in_any_order() {
        let body: Vec<u8> = (0..100u8).collect();
        let m = message(msg_type::CLIENT_KEY_EXCHANGE, 3, &body);
        let parts = fragment_message(&m, 30);
        assert_eq!(parts.len(), 4);
        let frags: Vec<Vec<Fragment<'_>>> = parts.iter().map(|p| fragments(p).unwrap()).collect();
        let mut r = Reassembly::new(&frags[3][0]).unwrap();
        for i in [1, 0, 1, 2] {
            assert!(r.complete().is_none());
            assert!(r.add(&frags[i][0]));
        }
        assert_eq!(r.complete().unwrap(), &body[..]);
        // Lying lengths are refused.
        let mut bad = parts[0].clone();
        bad[11] = 200;
        assert!(fragments(&bad).is_none());
    }

    #[test]
    fn psk_identity_field_round_trip() {
        let f = psk_identity_field(b"dev");
        assert_eq!(parse_psk_identity_field(&f), Some(&b"dev"[..]));
        assert_eq!(parse_psk_identity_field(&f[..3]), None);
    }
}
