//! The few CBOR items OSCORE needs (RFC 8949 §3, deterministic encoding of §4.2.1): the
//! HKDF `info` array (RFC 8613 §3.2.1), the `aad_array` and its `external_aad` byte
//! string (§5.4), and the COSE `Enc_structure` (RFC 8152 §5.3). Encoding only; OSCORE
//! never has to decode CBOR because the COSE header is compressed (§6).

use alloc::vec::Vec;

/// Major types (RFC 8949 §3.1).
const UINT: u8 = 0;
const NINT: u8 = 1;
const BSTR: u8 = 2;
const TSTR: u8 = 3;
const ARRAY: u8 = 4;
/// Simple value `null` (RFC 8949 §3.3).
const NULL: u8 = 0xf6;

/// Writes a head: major type and argument in the shortest form (RFC 8949 §3, §4.2.1).
fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let mt = major << 5;
    if arg < 24 {
        out.push(mt | arg as u8);
    } else if let Ok(v) = u8::try_from(arg) {
        out.extend_from_slice(&[mt | 24, v]);
    } else if let Ok(v) = u16::try_from(arg) {
        out.push(mt | 25);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = u32::try_from(arg) {
        out.push(mt | 26);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(mt | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

/// An array header announcing `len` items.
pub(crate) fn array(out: &mut Vec<u8>, len: usize) {
    head(out, ARRAY, len as u64);
}

/// An unsigned integer.
pub(crate) fn uint(out: &mut Vec<u8>, v: u64) {
    head(out, UINT, v);
}

/// A signed integer (COSE algorithm identifiers may be negative).
pub(crate) fn int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        head(out, UINT, v.unsigned_abs());
    } else {
        // -1 - n encodes as n (RFC 8949 §3.1, major type 1).
        head(out, NINT, (-1 - v).unsigned_abs());
    }
}

/// A byte string.
pub(crate) fn bstr(out: &mut Vec<u8>, bytes: &[u8]) {
    head(out, BSTR, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A text string.
pub(crate) fn tstr(out: &mut Vec<u8>, text: &str) {
    head(out, TSTR, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// The simple value `null`.
pub(crate) fn null(out: &mut Vec<u8>) {
    out.push(NULL);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = Vec::new();
        f(&mut v);
        v
    }

    #[test]
    fn heads_are_minimal() {
        // RFC 8949 Appendix A examples.
        assert_eq!(enc(|o| uint(o, 0)), [0x00]);
        assert_eq!(enc(|o| uint(o, 23)), [0x17]);
        assert_eq!(enc(|o| uint(o, 24)), [0x18, 0x18]);
        assert_eq!(enc(|o| uint(o, 100)), [0x18, 0x64]);
        assert_eq!(enc(|o| uint(o, 1000)), [0x19, 0x03, 0xe8]);
        assert_eq!(enc(|o| uint(o, 1_000_000)), [0x1a, 0x00, 0x0f, 0x42, 0x40]);
        assert_eq!(
            enc(|o| uint(o, 1_000_000_000_000)),
            [0x1b, 0x00, 0x00, 0x00, 0xe8, 0xd4, 0xa5, 0x10, 0x00]
        );
        assert_eq!(enc(|o| int(o, -1)), [0x20]);
        assert_eq!(enc(|o| int(o, -10)), [0x29]);
        assert_eq!(enc(|o| int(o, -100)), [0x38, 0x63]);
        assert_eq!(enc(|o| int(o, -1000)), [0x39, 0x03, 0xe7]);
        assert_eq!(enc(|o| int(o, i64::MIN)).len(), 9);
        assert_eq!(enc(|o| bstr(o, &[])), [0x40]);
        assert_eq!(enc(|o| bstr(o, &[1, 2, 3, 4])), [0x44, 1, 2, 3, 4]);
        assert_eq!(enc(|o| tstr(o, "IETF")), [0x64, b'I', b'E', b'T', b'F']);
        assert_eq!(enc(|o| array(o, 3)), [0x83]);
        assert_eq!(enc(|o| array(o, 25)), [0x98, 0x19]);
        assert_eq!(enc(null), [0xf6]);
        let long = [0u8; 300];
        assert_eq!(enc(|o| bstr(o, &long))[..3], [0x59, 0x01, 0x2c]);
    }
}
