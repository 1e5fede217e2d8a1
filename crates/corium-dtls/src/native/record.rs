//! The DTLS 1.2 record layer of the native engine (RFC 6347 §4.1): record framing, epochs
//! and 48-bit sequence numbers, AES-128-CCM-8 protection (RFC 6655 §3, RFC 5246
//! §6.2.3.3) and the anti-replay window (RFC 6347 §4.1.2.6).
//!
//! Keys are kept raw (16 bytes each) and the AES key schedule is expanded per record: an
//! expanded AES-128 (bitsliced software fallback included) is several hundred bytes,
//! which an idle session should not hold.

use aead::{AeadInOut, KeyInit};
use aes::Aes128;
use ccm::consts::{U12, U8};
use ccm::Ccm;

use crate::record::RECORD_HEADER_LEN;

/// AES-128-CCM with an 8-byte tag and the 12-byte TLS nonce (RFC 6655 §3).
type Aes128Ccm8 = Ccm<Aes128, U8, U12>;

/// `ProtocolVersion` of DTLS 1.2 (RFC 6347 §4.1).
pub(crate) const DTLS_1_2: [u8; 2] = [0xfe, 0xfd];
/// Explicit nonce bytes in front of each protected fragment (RFC 6655 §3).
pub(crate) const EXPLICIT_NONCE_LEN: usize = 8;
/// CCM_8 tag bytes.
pub(crate) const TAG_LEN: usize = 8;
/// Bytes a protected record adds to its plaintext.
pub(crate) const OVERHEAD: usize = RECORD_HEADER_LEN + EXPLICIT_NONCE_LEN + TAG_LEN;
/// Largest sequence number (RFC 6347 §4.1: 48 bits).
pub(crate) const MAX_SEQUENCE: u64 = (1 << 48) - 1;

/// One direction's key and implicit IV ("salt", RFC 6655 §3).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct DirectionKey {
    pub(crate) key: [u8; 16],
    pub(crate) iv: [u8; 4],
}

impl std::fmt::Debug for DirectionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectionKey(..)")
    }
}

fn nonce(iv: &[u8; 4], epoch_seq: &[u8; 8]) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(iv);
    n[4..].copy_from_slice(epoch_seq);
    n
}

fn epoch_seq(epoch: u16, seq: u64) -> [u8; 8] {
    ((u64::from(epoch) << 48) | (seq & MAX_SEQUENCE)).to_be_bytes()
}

/// `additional_data = seq_num ‖ type ‖ version ‖ length` (RFC 5246 §6.2.3.3; DTLS's
/// `seq_num` is epoch ‖ sequence, RFC 6347 §4.1.2.1).
fn aad(es: &[u8; 8], content_type: u8, plain_len: usize) -> [u8; 13] {
    let mut a = [0u8; 13];
    a[..8].copy_from_slice(es);
    a[8] = content_type;
    a[9..11].copy_from_slice(&DTLS_1_2);
    a[11..13].copy_from_slice(&(plain_len as u16).to_be_bytes());
    a
}

/// Appends a plaintext record (epoch 0) to `out`.
pub(crate) fn write_plain(out: &mut Vec<u8>, content_type: u8, seq: u64, fragment: &[u8]) {
    out.push(content_type);
    out.extend_from_slice(&DTLS_1_2);
    out.extend_from_slice(&epoch_seq(0, seq));
    out.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
    out.extend_from_slice(fragment);
}

/// Appends a protected record to `out` (RFC 6655 §3: explicit nonce = epoch ‖ sequence).
pub(crate) fn write_protected(
    out: &mut Vec<u8>,
    key: &DirectionKey,
    content_type: u8,
    epoch: u16,
    seq: u64,
    plaintext: &[u8],
) {
    let es = epoch_seq(epoch, seq);
    let start = out.len();
    out.push(content_type);
    out.extend_from_slice(&DTLS_1_2);
    out.extend_from_slice(&es);
    let len = plaintext.len() + EXPLICIT_NONCE_LEN + TAG_LEN;
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&es);
    let body = out.len();
    out.extend_from_slice(plaintext);
    let cipher = Aes128Ccm8::new(&key.key.into());
    let n = nonce(&key.iv, &es);
    let a = aad(&es, content_type, plaintext.len());
    match cipher.encrypt_inout_detached(&n.into(), &a, (&mut out[body..]).into()) {
        Ok(tag) => out.extend_from_slice(&tag),
        // CCM only fails on lengths beyond 2^24 with this nonce size: never for records.
        Err(_) => out.truncate(start),
    }
}

/// Verifies and decrypts a protected fragment (the bytes after the record header).
/// Returns the plaintext, or `None` if the record does not authenticate.
pub(crate) fn open(
    key: &DirectionKey,
    content_type: u8,
    epoch: u16,
    seq: u64,
    fragment: &[u8],
) -> Option<Vec<u8>> {
    let explicit = fragment.get(..EXPLICIT_NONCE_LEN)?;
    let plain_len = fragment.len().checked_sub(EXPLICIT_NONCE_LEN + TAG_LEN)?;
    let es = epoch_seq(epoch, seq);
    // RFC 6655 §3: the explicit nonce is the record's epoch and sequence number. A peer
    // may choose otherwise (RFC 5246 §6.2.3.3 leaves it to the sender), so the nonce is
    // taken from the record.
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&key.iv);
    n[4..].copy_from_slice(explicit);
    let (ct, tag) = fragment[EXPLICIT_NONCE_LEN..].split_at(plain_len);
    let mut buf = ct.to_vec();
    let cipher = Aes128Ccm8::new(&key.key.into());
    let a = aad(&es, content_type, plain_len);
    let tag = aead::Tag::<Aes128Ccm8>::try_from(tag).ok()?;
    cipher
        .decrypt_inout_detached(&n.into(), &a, buf.as_mut_slice().into(), &tag)
        .ok()?;
    Some(buf)
}

/// The anti-replay window of one epoch (RFC 6347 §4.1.2.6, the RFC 4303 §3.4.3 bitmap):
/// the highest sequence number seen and 64 below it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReplayWindow {
    /// Highest authenticated sequence number + 1 (0: none yet).
    top: u64,
    /// Bit `i` set: `top - 1 - i` was seen.
    bits: u64,
}

impl ReplayWindow {
    /// Whether `seq` is new (checked before decryption; [`accept`](Self::accept) only
    /// after the record authenticates).
    pub(crate) fn check(&self, seq: u64) -> bool {
        if seq >= self.top {
            return true;
        }
        let behind = self.top - 1 - seq;
        behind < 64 && self.bits & (1 << behind) == 0
    }

    /// Marks `seq` (which passed [`check`](Self::check) and authenticated) as seen.
    pub(crate) fn accept(&mut self, seq: u64) {
        if seq >= self.top {
            let shift = seq + 1 - self.top;
            self.bits = if shift >= 64 { 0 } else { self.bits << shift };
            self.bits |= 1;
            self.top = seq + 1;
        } else {
            let behind = self.top - 1 - seq;
            if behind < 64 {
                self.bits |= 1 << behind;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::records;

    fn key() -> DirectionKey {
        DirectionKey {
            key: [7; 16],
            iv: [1, 2, 3, 4],
        }
    }

    #[test]
    fn protect_and_open_round_trip() {
        let mut out = Vec::new();
        write_protected(&mut out, &key(), 23, 1, 5, b"hello coap");
        assert_eq!(out.len(), b"hello coap".len() + OVERHEAD);
        let r = records(&out).next().unwrap();
        assert_eq!((r.content_type, r.epoch, r.sequence), (23, 1, 5));
        assert_eq!(&r.fragment[..8], &[0, 1, 0, 0, 0, 0, 0, 5]);
        let plain = open(&key(), 23, 1, 5, r.fragment).unwrap();
        assert_eq!(plain, b"hello coap");
        // Any change to the header (AAD), nonce, ciphertext or tag fails.
        assert!(open(&key(), 22, 1, 5, r.fragment).is_none());
        assert!(open(&key(), 23, 1, 6, r.fragment).is_none());
        for i in 0..r.fragment.len() {
            let mut bad = r.fragment.to_vec();
            bad[i] ^= 1;
            assert!(open(&key(), 23, 1, 5, &bad).is_none(), "byte {i}");
        }
        let other = DirectionKey {
            key: [8; 16],
            iv: [1, 2, 3, 4],
        };
        assert!(open(&other, 23, 1, 5, r.fragment).is_none());
        for n in 0..r.fragment.len() {
            assert!(open(&key(), 23, 1, 5, &r.fragment[..n]).is_none());
        }
    }

    #[test]
    fn replay_window() {
        let mut w = ReplayWindow::default();
        assert!(w.check(0));
        w.accept(0);
        assert!(!w.check(0));
        w.accept(5);
        assert!(w.check(3) && !w.check(5));
        w.accept(3);
        assert!(!w.check(3));
        w.accept(100);
        assert!(!w.check(5), "fell out of the window");
        assert!(w.check(99) && w.check(37) && !w.check(36));
        w.accept(37);
        assert!(!w.check(37));
        w.accept(MAX_SEQUENCE);
        assert!(!w.check(MAX_SEQUENCE) && !w.check(100));
    }
}
