//! Block1/Block2 option values (RFC 7959 §2.2; BERT from RFC 8323 §6).
//!
//! ```text
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 NUM                   |M| SZX |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The value is a uint of 0–3 bytes: NUM in the high bits, then M, then the 3-bit SZX.

use crate::option::{decode_uint, encode_uint};

/// A decoded Block1/Block2 (or Q-Block1/Q-Block2) option value (RFC 7959 §2.2).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BlockValue {
    /// The block number (at most [`BlockValue::MAX_NUM`]).
    pub num: u32,
    /// The "more" flag: further blocks follow.
    pub more: bool,
    /// The size exponent: blocks are `2^(szx + 4)` bytes; 7 is reserved on UDP and means
    /// BERT on reliable transports (RFC 8323 §6).
    pub szx: u8,
}

impl BlockValue {
    /// The largest block number that fits the 3-byte value: 2^20 − 1.
    pub const MAX_NUM: u32 = (1 << 20) - 1;

    /// The SZX value of BERT (RFC 8323 §6).
    pub const BERT_SZX: u8 = 7;

    /// A validated value: `None` if `num > MAX_NUM` or `szx > 7`.
    pub const fn new(num: u32, more: bool, szx: u8) -> Option<BlockValue> {
        if num > Self::MAX_NUM || szx > 7 {
            None
        } else {
            Some(BlockValue { num, more, szx })
        }
    }

    /// Decodes an option value; `None` if it is longer than 3 bytes (RFC 7959 §2.2).
    /// SZX 7 is decoded as is; check [`is_bert`](Self::is_bert) (reserved on UDP).
    pub fn decode(bytes: &[u8]) -> Option<BlockValue> {
        if bytes.len() > 3 {
            return None;
        }
        let v = decode_uint(bytes)?;
        Some(BlockValue {
            num: v >> 4,
            more: v & 0x08 != 0,
            szx: (v & 0x07) as u8,
        })
    }

    /// Encodes the value minimally into `buf` and returns the used tail. `num` is masked
    /// to 20 bits and `szx` to 3 bits, so the result always decodes (use
    /// [`new`](Self::new) to validate beforehand).
    pub fn encode<'b>(&self, buf: &'b mut [u8; 4]) -> &'b [u8] {
        let v = ((self.num & Self::MAX_NUM) << 4)
            | (u32::from(self.more) << 3)
            | u32::from(self.szx & 0x07);
        encode_uint(v, buf)
    }

    /// SZX 7: BERT on reliable transports (RFC 8323 §6), reserved on UDP (RFC 7959 §2.2).
    pub const fn is_bert(&self) -> bool {
        self.szx == Self::BERT_SZX
    }

    /// The block size in bytes: `2^(szx + 4)`, 16 to 1024. For BERT (SZX 7) this is 1024,
    /// the unit in which BERT counts blocks (RFC 8323 §6).
    pub const fn size(&self) -> usize {
        if self.szx >= 6 {
            1024
        } else {
            1 << (self.szx + 4)
        }
    }

    /// The byte offset of this block: `num * size()` (RFC 7959 §2.2).
    pub const fn offset(&self) -> usize {
        (self.num as usize).saturating_mul(self.size())
    }

    /// The SZX for a block size (16, 32, …, 1024); `None` for other sizes.
    pub const fn szx_for_size(size: usize) -> Option<u8> {
        match size {
            16 => Some(0),
            32 => Some(1),
            64 => Some(2),
            128 => Some(3),
            256 => Some(4),
            512 => Some(5),
            1024 => Some(6),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_examples() {
        // RFC 7959 §2.2: empty value is NUM 0, M 0, SZX 0.
        assert_eq!(
            BlockValue::decode(&[]),
            Some(BlockValue {
                num: 0,
                more: false,
                szx: 0
            })
        );
        // 0x0a: NUM 0, M 1, SZX 2 (64 bytes).
        let b = BlockValue::decode(&[0x0a]).unwrap();
        assert_eq!(
            (b.num, b.more, b.szx, b.size(), b.offset()),
            (0, true, 2, 64, 0)
        );
        // 0x12: NUM 1, M 0, SZX 2 → offset 64.
        let b = BlockValue::decode(&[0x12]).unwrap();
        assert_eq!((b.num, b.more, b.szx, b.offset()), (1, false, 2, 64));
        // 3 bytes: the largest NUM.
        let b = BlockValue::decode(&[0xff, 0xff, 0xf6]).unwrap();
        assert_eq!((b.num, b.more, b.szx), (BlockValue::MAX_NUM, false, 6));
        assert_eq!(BlockValue::decode(&[0, 0, 0, 0]), None);
        let bert = BlockValue::decode(&[0x17]).unwrap();
        assert!(bert.is_bert());
        assert_eq!(bert.size(), 1024);
        assert_eq!(bert.offset(), 1024);
    }

    #[test]
    fn encode_round_trip() {
        for num in [0u32, 1, 15, 16, 4095, 4096, BlockValue::MAX_NUM] {
            for more in [false, true] {
                for szx in 0..=7u8 {
                    let b = BlockValue::new(num, more, szx).unwrap();
                    let mut buf = [0u8; 4];
                    let e = b.encode(&mut buf);
                    assert!(e.len() <= 3);
                    assert_eq!(BlockValue::decode(e), Some(b));
                }
            }
        }
        let mut buf = [0u8; 4];
        assert_eq!(
            BlockValue::new(0, false, 0).unwrap().encode(&mut buf),
            &[] as &[u8]
        );
        assert_eq!(
            BlockValue::new(1, true, 6).unwrap().encode(&mut buf),
            &[0x1e]
        );
        assert_eq!(BlockValue::new(BlockValue::MAX_NUM + 1, false, 0), None);
        assert_eq!(BlockValue::new(0, false, 8), None);
        for szx in 0..=6u8 {
            let size = BlockValue::new(0, false, szx).unwrap().size();
            assert_eq!(BlockValue::szx_for_size(size), Some(szx));
        }
        assert_eq!(BlockValue::szx_for_size(2048), None);
    }
}
