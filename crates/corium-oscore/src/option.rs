//! The OSCORE option value: the compressed COSE header (RFC 8613 §6.1, Figure 10).
//!
//! ```text
//!  0 1 2 3 4 5 6 7 <----------- n bytes ----------->
//! +-+-+-+-+-+-+-+-+---------------------------------
//! |0 0 0|h|k|  n  |      Partial IV (if any) ...
//! +-+-+-+-+-+-+-+-+---------------------------------
//!  <- 1 byte -> <----- s bytes ------>
//! +------------+----------------------+------------------+
//! | s (if any) | kid context (if any) | kid (if any) ... |
//! +------------+----------------------+------------------+
//! ```
//!
//! Decoding is checked: every malformed value (reserved bits or lengths, truncation,
//! stray bytes) gives an [`OptionError`], never a panic.

use alloc::vec::Vec;
use core::fmt;

/// The largest Partial IV / Sender Sequence Number: 2^40 - 1 (RFC 8613 §7.2.1, §12.6).
pub const MAX_PARTIAL_IV: u64 = (1 << 40) - 1;

/// Flag bit `k`: a 'kid' is present (RFC 8613 §6.1).
const FLAG_KID: u8 = 0x08;
/// Flag bit `h`: a 'kid context' is present (RFC 8613 §6.1).
const FLAG_KID_CONTEXT: u8 = 0x10;
/// The three reserved flag bits (RFC 8613 §6.1, §13.7).
const FLAGS_RESERVED: u8 = 0xe0;
/// The Partial IV length `n` (RFC 8613 §6.1).
const PIV_LEN_MASK: u8 = 0x07;

/// A Partial IV (RFC 8613 §5): the Sender Sequence Number of the message's originator in
/// network byte order, 1 to 5 bytes, kept exactly as transmitted because the
/// `request_piv` of the AAD (§5.4) is the transmitted byte string.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct PartialIv {
    bytes: [u8; 5],
    len: u8,
}

impl PartialIv {
    /// The minimal encoding of `value` (leading zero bytes removed, 0 is `0x00`; RFC 8613
    /// §5), or `None` above [`MAX_PARTIAL_IV`].
    pub fn from_u64(value: u64) -> Option<PartialIv> {
        if value > MAX_PARTIAL_IV {
            return None;
        }
        let be = value.to_be_bytes();
        let significant = (8 - (value.leading_zeros() / 8) as usize).max(1);
        let mut bytes = [0u8; 5];
        bytes[..significant].copy_from_slice(&be[8 - significant..]);
        Some(PartialIv {
            bytes,
            len: significant as u8,
        })
    }

    /// A Partial IV with these bytes as received (1 to 5 bytes; leading zeros are kept).
    pub fn from_bytes(bytes: &[u8]) -> Option<PartialIv> {
        if bytes.is_empty() || bytes.len() > 5 {
            return None;
        }
        let mut b = [0u8; 5];
        b[..bytes.len()].copy_from_slice(bytes);
        Some(PartialIv {
            bytes: b,
            len: bytes.len() as u8,
        })
    }

    /// The bytes as transmitted.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The sequence number it encodes.
    pub fn value(&self) -> u64 {
        self.as_bytes()
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    }
}

impl fmt::Debug for PartialIv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartialIv({})", self.value())
    }
}

/// A decoded OSCORE option value (RFC 8613 §6.1), borrowing from the option bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OscoreOption<'a> {
    /// The 'Partial IV' (flag bits `n` > 0).
    pub partial_iv: Option<PartialIv>,
    /// The 'kid context' (flag bit `h`), at most 255 bytes.
    pub kid_context: Option<&'a [u8]>,
    /// The 'kid' (flag bit `k`); may be empty (RFC 8613 §3.3: the empty Sender ID is
    /// legitimate).
    pub kid: Option<&'a [u8]>,
}

/// Why an OSCORE option value could not be decoded or encoded (RFC 8613 §6.1). A
/// decoding failure makes the message fail with 4.02 Bad Option (RFC 8613 §8.2 step 2).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionError {
    /// One of the three reserved flag bits is set.
    ReservedFlagBits,
    /// The Partial IV length `n` is one of the reserved values 6 or 7.
    ReservedPartialIvLength,
    /// The value ends inside the Partial IV, the 'kid context' length or the 'kid context'.
    Truncated,
    /// Bytes follow the last field although the `k` flag is clear.
    TrailingBytes,
    /// The flag byte is zero but the value is not empty (all-zero flags SHALL be sent as
    /// the empty value).
    ZeroFlagsNotEmpty,
    /// Encoding: the 'kid context' is longer than 255 bytes.
    KidContextTooLong,
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OptionError::ReservedFlagBits => "reserved OSCORE flag bits set",
            OptionError::ReservedPartialIvLength => "reserved Partial IV length",
            OptionError::Truncated => "OSCORE option value truncated",
            OptionError::TrailingBytes => "unexpected bytes after the OSCORE option fields",
            OptionError::ZeroFlagsNotEmpty => "zero OSCORE flags in a non-empty value",
            OptionError::KidContextTooLong => "kid context longer than 255 bytes",
        })
    }
}

impl core::error::Error for OptionError {}

impl<'a> OscoreOption<'a> {
    /// Decodes an OSCORE option value (RFC 8613 §6.1). Never panics.
    pub fn decode(value: &'a [u8]) -> Result<OscoreOption<'a>, OptionError> {
        let Some((&flags, mut rest)) = value.split_first() else {
            return Ok(OscoreOption::default());
        };
        if flags == 0 {
            return Err(OptionError::ZeroFlagsNotEmpty);
        }
        if flags & FLAGS_RESERVED != 0 {
            return Err(OptionError::ReservedFlagBits);
        }
        let n = usize::from(flags & PIV_LEN_MASK);
        if n > 5 {
            return Err(OptionError::ReservedPartialIvLength);
        }
        let mut option = OscoreOption::default();
        if n > 0 {
            let (piv, tail) = rest.split_at_checked(n).ok_or(OptionError::Truncated)?;
            option.partial_iv = PartialIv::from_bytes(piv);
            rest = tail;
        }
        if flags & FLAG_KID_CONTEXT != 0 {
            let (&s, tail) = rest.split_first().ok_or(OptionError::Truncated)?;
            let (ctx, tail) = tail
                .split_at_checked(usize::from(s))
                .ok_or(OptionError::Truncated)?;
            option.kid_context = Some(ctx);
            rest = tail;
        }
        if flags & FLAG_KID != 0 {
            option.kid = Some(rest);
        } else if !rest.is_empty() {
            return Err(OptionError::TrailingBytes);
        }
        Ok(option)
    }

    /// The length of the encoded value.
    pub fn encoded_len(&self) -> usize {
        let flags = self.partial_iv.is_some() || self.kid_context.is_some() || self.kid.is_some();
        usize::from(flags)
            + self.partial_iv.map_or(0, |p| p.as_bytes().len())
            + self.kid_context.map_or(0, |c| 1 + c.len())
            + self.kid.map_or(0, <[u8]>::len)
    }

    /// Appends the encoded value to `out` (RFC 8613 §6.1); nothing at all when no field
    /// is present.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), OptionError> {
        let ctx_len = match self.kid_context {
            Some(c) => Some(u8::try_from(c.len()).map_err(|_| OptionError::KidContextTooLong)?),
            None => None,
        };
        let n = self.partial_iv.map_or(0, |p| p.len);
        let flags = n
            | if self.kid.is_some() { FLAG_KID } else { 0 }
            | if ctx_len.is_some() {
                FLAG_KID_CONTEXT
            } else {
                0
            };
        if flags == 0 {
            return Ok(());
        }
        out.reserve(self.encoded_len());
        out.push(flags);
        if let Some(piv) = &self.partial_iv {
            out.extend_from_slice(piv.as_bytes());
        }
        if let (Some(len), Some(ctx)) = (ctx_len, self.kid_context) {
            out.push(len);
            out.extend_from_slice(ctx);
        }
        if let Some(kid) = self.kid {
            out.extend_from_slice(kid);
        }
        Ok(())
    }

    /// The encoded value as a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, OptionError> {
        let mut v = Vec::new();
        self.encode(&mut v)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piv(v: u64) -> Option<PartialIv> {
        PartialIv::from_u64(v)
    }

    #[test]
    fn partial_iv_encoding() {
        // RFC 8613 §5: leading zero bytes removed, 0 encodes as 0x00.
        assert_eq!(piv(0).unwrap().as_bytes(), [0x00]);
        assert_eq!(piv(5).unwrap().as_bytes(), [0x05]);
        assert_eq!(piv(20).unwrap().as_bytes(), [0x14]);
        assert_eq!(piv(256).unwrap().as_bytes(), [0x01, 0x00]);
        assert_eq!(piv(MAX_PARTIAL_IV).unwrap().as_bytes(), [0xff; 5]);
        assert_eq!(piv(MAX_PARTIAL_IV + 1), None);
        assert_eq!(PartialIv::from_bytes(&[0, 0x14]).unwrap().value(), 20);
        assert_eq!(
            PartialIv::from_bytes(&[0, 0x14]).unwrap().as_bytes(),
            [0, 0x14]
        );
        assert_eq!(PartialIv::from_bytes(&[]), None);
        assert_eq!(PartialIv::from_bytes(&[1; 6]), None);
        for v in [0, 1, 255, 256, 65535, 65536, 1 << 32, MAX_PARTIAL_IV] {
            assert_eq!(piv(v).unwrap().value(), v);
        }
    }

    #[test]
    fn rfc8613_section_6_3_examples() {
        // 1. kid = 0x25, Partial IV = 0x05 → 0x090525.
        let o = OscoreOption {
            partial_iv: piv(5),
            kid_context: None,
            kid: Some(&[0x25]),
        };
        assert_eq!(o.to_vec().unwrap(), [0x09, 0x05, 0x25]);
        assert_eq!(OscoreOption::decode(&[0x09, 0x05, 0x25]).unwrap(), o);
        // 2. kid = empty, Partial IV = 0x00 → 0x0900.
        let o = OscoreOption {
            partial_iv: piv(0),
            kid_context: None,
            kid: Some(&[]),
        };
        assert_eq!(o.to_vec().unwrap(), [0x09, 0x00]);
        assert_eq!(OscoreOption::decode(&[0x09, 0x00]).unwrap(), o);
        // 3. kid = empty, Partial IV = 0x05, kid context = 0x44616c656b → 0x19050544616c656b.
        let enc = [0x19, 0x05, 0x05, 0x44, 0x61, 0x6c, 0x65, 0x6b];
        let o = OscoreOption {
            partial_iv: piv(5),
            kid_context: Some(b"Dalek"),
            kid: Some(&[]),
        };
        assert_eq!(o.to_vec().unwrap(), enc);
        assert_eq!(OscoreOption::decode(&enc).unwrap(), o);
        // 4. Response without Partial IV → empty value.
        assert_eq!(OscoreOption::default().to_vec().unwrap(), [0u8; 0]);
        assert_eq!(OscoreOption::decode(&[]).unwrap(), OscoreOption::default());
        // 5. Response with Partial IV = 0x07 → 0x0107.
        let o = OscoreOption {
            partial_iv: piv(7),
            ..Default::default()
        };
        assert_eq!(o.to_vec().unwrap(), [0x01, 0x07]);
        assert_eq!(OscoreOption::decode(&[0x01, 0x07]).unwrap(), o);
    }

    #[test]
    fn malformed_values() {
        use OptionError::*;
        let cases: &[(&[u8], OptionError)] = &[
            (&[0x00], ZeroFlagsNotEmpty),
            (&[0x00, 0x01], ZeroFlagsNotEmpty),
            (&[0x20], ReservedFlagBits),
            (&[0x40, 0x00], ReservedFlagBits),
            (&[0x89, 0x00], ReservedFlagBits),
            (&[0x06, 1, 2, 3, 4, 5, 6], ReservedPartialIvLength),
            (&[0x07, 1, 2, 3, 4, 5, 6, 7], ReservedPartialIvLength),
            (&[0x01], Truncated),
            (&[0x05, 1, 2, 3, 4], Truncated),
            (&[0x10], Truncated),
            (&[0x10, 0x03, 1, 2], Truncated),
            (&[0x19, 0x05], Truncated),
            (&[0x01, 0x05, 0x25], TrailingBytes),
            (&[0x10, 0x00, 0x25], TrailingBytes),
        ];
        for &(bytes, err) in cases {
            assert_eq!(OscoreOption::decode(bytes), Err(err), "{bytes:02x?}");
        }
        // Edge cases that are well-formed.
        let o = OscoreOption::decode(&[0x08]).unwrap();
        assert_eq!(o.kid, Some(&[][..]));
        assert_eq!(o.partial_iv, None);
        let o = OscoreOption::decode(&[0x10, 0x00]).unwrap();
        assert_eq!(o.kid_context, Some(&[][..]));
        let o = OscoreOption::decode(&[0x0d, 1, 2, 3, 4, 5, 9, 9]).unwrap();
        assert_eq!(o.partial_iv.unwrap().value(), 0x01_0203_0405);
        assert_eq!(o.kid, Some(&[9, 9][..]));
        let long = [0u8; 256];
        let o = OscoreOption {
            kid_context: Some(&long),
            ..Default::default()
        };
        assert_eq!(o.to_vec(), Err(KidContextTooLong));
    }

    #[test]
    fn roundtrip_all_shapes() {
        let kids: [Option<&[u8]>; 3] = [None, Some(&[]), Some(&[1, 2, 3, 4, 5, 6, 7])];
        let ctxs: [Option<&[u8]>; 3] = [None, Some(&[]), Some(&[0xaa; 255])];
        let pivs = [None, piv(0), piv(0x1234), piv(MAX_PARTIAL_IV)];
        for kid in kids {
            for kid_context in ctxs {
                for partial_iv in pivs {
                    let o = OscoreOption {
                        partial_iv,
                        kid_context,
                        kid,
                    };
                    let v = o.to_vec().unwrap();
                    assert_eq!(v.len(), o.encoded_len());
                    assert_eq!(OscoreOption::decode(&v).unwrap(), o);
                }
            }
        }
    }
}
