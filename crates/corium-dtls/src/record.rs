//! Just enough of the DTLS 1.2 record and handshake layers (RFC 6347 §4.1, §4.2.2) to route
//! datagrams, answer ClientHellos statelessly and send plaintext alerts. Every function
//! takes untrusted bytes and returns `None` instead of panicking.

use core::ops::Range;

/// Record content types (RFC 5246 §6.2.1, RFC 9146 §4).
pub(crate) mod content_type {
    /// `change_cipher_spec`.
    pub(crate) const CHANGE_CIPHER_SPEC: u8 = 20;
    /// `alert`.
    pub(crate) const ALERT: u8 = 21;
    /// `handshake`.
    pub(crate) const HANDSHAKE: u8 = 22;
}

/// Handshake message types (RFC 5246 §7.4, RFC 6347 §4.3.2).
pub(crate) mod handshake_type {
    /// `client_hello`.
    pub(crate) const CLIENT_HELLO: u8 = 1;
    /// `hello_verify_request`.
    pub(crate) const HELLO_VERIFY_REQUEST: u8 = 3;
}

/// DTLS record header length: type, version, epoch, 48-bit sequence number, length.
pub(crate) const RECORD_HEADER_LEN: usize = 13;
/// DTLS handshake header length: type, length, message_seq, fragment offset and length.
pub(crate) const HANDSHAKE_HEADER_LEN: usize = 12;

/// One record of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub(crate) content_type: u8,
    pub(crate) version: u16,
    pub(crate) epoch: u16,
    pub(crate) sequence: u64,
    /// The record as a whole, header included.
    pub(crate) bytes: &'a [u8],
    /// The fragment (after the header).
    pub(crate) fragment: &'a [u8],
}

/// Iterates over the records of a datagram; stops at the first truncated one.
pub(crate) fn records(datagram: &[u8]) -> impl Iterator<Item = Record<'_>> {
    let mut rest = datagram;
    core::iter::from_fn(move || {
        let header = rest.get(..RECORD_HEADER_LEN)?;
        let len = usize::from(u16::from_be_bytes([header[11], header[12]]));
        let total = RECORD_HEADER_LEN.checked_add(len)?;
        let bytes = rest.get(..total)?;
        rest = &rest[total..];
        let mut seq = [0u8; 8];
        seq[2..].copy_from_slice(&header[5..11]);
        Some(Record {
            content_type: header[0],
            version: u16::from_be_bytes([header[1], header[2]]),
            epoch: u16::from_be_bytes([header[3], header[4]]),
            sequence: u64::from_be_bytes(seq),
            bytes,
            fragment: &bytes[RECORD_HEADER_LEN..],
        })
    })
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// An unfragmented ClientHello in the first record of a datagram (RFC 6347 §4.2.1).
#[derive(Clone, Debug)]
pub(crate) struct ClientHello<'a> {
    /// The first record, which carries the ClientHello.
    pub(crate) record: &'a [u8],
    /// `client_version`.
    pub(crate) version: u16,
    /// `ClientHello.random`.
    pub(crate) random: [u8; 32],
    /// Where the cookie (without its length byte) lies within `record`.
    cookie: Range<usize>,
    /// `cipher_suites`, as raw big-endian pairs.
    pub(crate) cipher_suites: &'a [u8],
}

impl<'a> ClientHello<'a> {
    /// Parses the first record of `datagram` as an epoch-0 handshake record holding one
    /// complete ClientHello. Fragmented ClientHellos are not recognised (ClientHellos of
    /// CoAP clients are a few hundred bytes).
    pub(crate) fn parse(datagram: &'a [u8]) -> Option<Self> {
        let record = records(datagram).next()?;
        if record.content_type != content_type::HANDSHAKE || record.epoch != 0 {
            return None;
        }
        let hs = record.fragment;
        let header = hs.get(..HANDSHAKE_HEADER_LEN)?;
        if header[0] != handshake_type::CLIENT_HELLO {
            return None;
        }
        let length = u24(&header[1..4]);
        let fragment_offset = u24(&header[6..9]);
        let fragment_length = u24(&header[9..12]);
        if fragment_offset != 0 || fragment_length != length {
            return None;
        }
        let body = hs.get(HANDSHAKE_HEADER_LEN..HANDSHAKE_HEADER_LEN.checked_add(length)?)?;
        let version = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
        let random: [u8; 32] = body.get(2..34)?.try_into().ok()?;
        let mut pos = 34;
        let sid_len = usize::from(*body.get(pos)?);
        if sid_len > 32 {
            return None;
        }
        pos += 1 + sid_len;
        let cookie_len = usize::from(*body.get(pos)?);
        let cookie_start = pos + 1;
        body.get(cookie_start..cookie_start + cookie_len)?;
        pos = cookie_start + cookie_len;
        let suites_len = usize::from(u16::from_be_bytes([*body.get(pos)?, *body.get(pos + 1)?]));
        if suites_len == 0 || suites_len % 2 != 0 {
            return None;
        }
        let cipher_suites = body.get(pos + 2..pos + 2 + suites_len)?;
        let body_offset = RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN;
        Some(ClientHello {
            record: record.bytes,
            version,
            random,
            cookie: body_offset + cookie_start..body_offset + cookie_start + cookie_len,
            cipher_suites,
        })
    }

    /// The cookie (empty in a first ClientHello).
    pub(crate) fn cookie(&self) -> &'a [u8] {
        &self.record[self.cookie.clone()]
    }

    /// The offered cipher suites, in the client's order of preference.
    pub(crate) fn suites(&self) -> impl Iterator<Item = u16> + 'a {
        self.cipher_suites
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    }

    /// This ClientHello as the client's *first* one: cookie removed and `message_seq` 0
    /// (RFC 6347 §4.2.2). Lengths in the record and handshake headers are rewritten.
    pub(crate) fn as_initial(&self) -> Vec<u8> {
        let cookie_len = self.cookie.len();
        let mut out = Vec::with_capacity(self.record.len() - cookie_len);
        out.extend_from_slice(&self.record[..self.cookie.start - 1]);
        out.push(0);
        out.extend_from_slice(&self.record[self.cookie.end..]);
        let record_len = out.len() - RECORD_HEADER_LEN;
        out[11..13].copy_from_slice(&(record_len as u16).to_be_bytes());
        let hs_len = (record_len - HANDSHAKE_HEADER_LEN) as u32;
        let h = RECORD_HEADER_LEN;
        out[h + 1..h + 4].copy_from_slice(&hs_len.to_be_bytes()[1..]);
        out[h + 4..h + 6].copy_from_slice(&[0, 0]);
        out[h + 9..h + 12].copy_from_slice(&hs_len.to_be_bytes()[1..]);
        out
    }
}

/// Whether the first record of `datagram` looks like a ClientHello at epoch 0 (the only
/// thing that may start a session).
pub(crate) fn is_client_hello(datagram: &[u8]) -> bool {
    matches!(
        records(datagram).next(),
        Some(Record { content_type: content_type::HANDSHAKE, epoch: 0, fragment, .. })
            if fragment.first() == Some(&handshake_type::CLIENT_HELLO)
    )
}

/// The cookie of the HelloVerifyRequest in `datagram` (RFC 6347 §4.2.1).
pub(crate) fn hello_verify_cookie(datagram: &[u8]) -> Option<&[u8]> {
    records(datagram).find_map(|r| {
        if r.content_type != content_type::HANDSHAKE || r.epoch != 0 {
            return None;
        }
        let hs = r.fragment;
        if *hs.first()? != handshake_type::HELLO_VERIFY_REQUEST {
            return None;
        }
        // server_version(2), cookie<0..2^8-1>
        let body = hs.get(HANDSHAKE_HEADER_LEN..)?;
        let len = usize::from(*body.get(2)?);
        body.get(3..3 + len)
    })
}

/// Tracks what a session has put on the wire in epoch 0, so that a plaintext alert can be
/// sent with a fresh sequence number (RFC 6347 §4.1: sequence numbers are never reused in
/// an epoch).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Epoch0 {
    /// Highest epoch-0 record sequence number sent, if any.
    max_sequence: Option<u64>,
    /// A ChangeCipherSpec was sent: our writes are encrypted from now on.
    changed_cipher: bool,
}

impl Epoch0 {
    /// Notes the records of an outgoing datagram.
    pub(crate) fn observe(&mut self, datagram: &[u8]) {
        for r in records(datagram) {
            if r.epoch == 0 {
                self.max_sequence =
                    Some(self.max_sequence.map_or(r.sequence, |m| m.max(r.sequence)));
                if r.content_type == content_type::CHANGE_CIPHER_SPEC {
                    self.changed_cipher = true;
                }
            } else {
                self.changed_cipher = true;
            }
        }
    }

    /// A fatal alert in a plaintext epoch-0 record, if our writes are still plaintext (after
    /// our ChangeCipherSpec an alert would have to be encrypted by the engine).
    pub(crate) fn fatal_alert(&mut self, description: u8) -> Option<[u8; 15]> {
        if self.changed_cipher {
            return None;
        }
        let seq = self.max_sequence.map_or(0, |m| m + 1);
        if seq >= 1 << 48 {
            return None;
        }
        self.max_sequence = Some(seq);
        let mut rec = [0u8; 15];
        rec[0] = content_type::ALERT;
        rec[1..3].copy_from_slice(&[0xfe, 0xfd]); // DTLS 1.2
        rec[3..5].copy_from_slice(&[0, 0]);
        rec[5..11].copy_from_slice(&seq.to_be_bytes()[2..]);
        rec[11..13].copy_from_slice(&2u16.to_be_bytes());
        rec[13] = 2; // fatal
        rec[14] = description;
        Some(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello with a 3-byte cookie and two suites.
    fn client_hello(cookie: &[u8], message_seq: u16) -> Vec<u8> {
        let mut body = vec![0xfe, 0xfd];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0); // session id
        body.push(cookie.len() as u8);
        body.extend_from_slice(cookie);
        body.extend_from_slice(&[0, 4, 0xc0, 0xa8, 0xc0, 0xae]);
        body.extend_from_slice(&[1, 0]); // compression
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&message_seq.to_be_bytes());
        hs.extend_from_slice(&[0, 0, 0]);
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn parses_client_hello() {
        let dg = client_hello(b"abc", 1);
        assert!(is_client_hello(&dg));
        let ch = ClientHello::parse(&dg).unwrap();
        assert_eq!(ch.cookie(), b"abc");
        assert_eq!(ch.random, [7u8; 32]);
        assert_eq!(ch.version, 0xfefd);
        assert_eq!(ch.suites().collect::<Vec<_>>(), [0xc0a8, 0xc0ae]);
        let initial = ch.as_initial();
        assert_eq!(initial, client_hello(b"", 0));
        let again = ClientHello::parse(&initial).unwrap();
        assert_eq!(again.cookie(), b"");
    }

    #[test]
    fn truncations_never_panic() {
        let dg = client_hello(b"abcdef", 1);
        for n in 0..dg.len() {
            let _ = ClientHello::parse(&dg[..n]);
            let _ = is_client_hello(&dg[..n]);
            let _ = hello_verify_cookie(&dg[..n]);
            let mut e = Epoch0::default();
            e.observe(&dg[..n]);
        }
        // Lying lengths.
        let mut bad = dg.clone();
        bad[11] = 0xff;
        assert!(ClientHello::parse(&bad).is_none());
        let mut bad = dg.clone();
        bad[14] = 0xff;
        assert!(ClientHello::parse(&bad).is_none());
    }

    #[test]
    fn alert_sequence_follows_sent_records() {
        let mut e = Epoch0::default();
        e.observe(&client_hello(b"", 0)); // sequence 1
        let a = e.fatal_alert(51).unwrap();
        assert_eq!(
            &a[..],
            &[21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2, 2, 51]
        );
        let r = records(&a).next().unwrap();
        assert_eq!((r.content_type, r.epoch, r.sequence), (21, 0, 2));
        e.observe(&[20, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 3, 0, 1, 1]);
        assert!(e.fatal_alert(51).is_none());
    }
}
