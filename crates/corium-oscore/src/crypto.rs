//! The cryptographic primitives: the AEAD algorithms of the Common Context (RFC 8613
//! §3.1, §5; COSE algorithms of RFC 8152 §10) and HKDF (RFC 5869, RFC 8613 §3.2.1).
//!
//! Everything cryptographic goes through [`Cipher`] (a closed enum over the RustCrypto
//! AEADs) and [`hkdf_sha256`]; the rest of the crate only sees byte slices.

use alloc::vec::Vec;
use core::fmt;

use aead::{AeadCore, AeadInOut, KeyInit};
use aes::Aes128;
use aes_gcm::Aes128Gcm;
use ccm::consts::{U13, U8};
use ccm::Ccm;
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use sha2::Sha256;

/// The longest key of a supported AEAD (ChaCha20/Poly1305: 32 bytes).
pub(crate) const MAX_KEY_LEN: usize = 32;
/// The longest nonce of a supported AEAD (AES-CCM-16-64-128: 13 bytes).
pub(crate) const MAX_NONCE_LEN: usize = 13;

/// The AEAD Algorithm of the Common Context (RFC 8613 §3.1), named by its COSE algorithm
/// identifier (RFC 8152 §10, IANA "COSE Algorithms").
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AeadAlgorithm {
    /// AES-CCM-16-64-128, COSE id 10: 128-bit key, 13-byte nonce, 8-byte tag (RFC 8152
    /// §10.2). Mandatory to implement and the default (RFC 8613 §3.2, §5).
    #[default]
    AesCcm16_64_128,
    /// A128GCM, COSE id 1: AES-GCM with a 128-bit key, 12-byte nonce, 16-byte tag
    /// (RFC 8152 §10.1).
    A128Gcm,
    /// ChaCha20/Poly1305, COSE id 24: 256-bit key, 12-byte nonce, 16-byte tag
    /// (RFC 8152 §10.3).
    ChaCha20Poly1305,
}

impl AeadAlgorithm {
    /// The COSE algorithm identifier, as it appears in the HKDF `info` (RFC 8613 §3.2.1)
    /// and the `external_aad` (§5.4).
    pub const fn cose_id(self) -> i64 {
        match self {
            AeadAlgorithm::AesCcm16_64_128 => 10,
            AeadAlgorithm::A128Gcm => 1,
            AeadAlgorithm::ChaCha20Poly1305 => 24,
        }
    }

    /// The algorithm with this COSE identifier, if supported.
    pub const fn from_cose_id(id: i64) -> Option<AeadAlgorithm> {
        match id {
            10 => Some(AeadAlgorithm::AesCcm16_64_128),
            1 => Some(AeadAlgorithm::A128Gcm),
            24 => Some(AeadAlgorithm::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// Key length in bytes (the `L` of the key derivation, RFC 8613 §3.2.1).
    pub const fn key_len(self) -> usize {
        match self {
            AeadAlgorithm::AesCcm16_64_128 | AeadAlgorithm::A128Gcm => 16,
            AeadAlgorithm::ChaCha20Poly1305 => 32,
        }
    }

    /// Nonce length in bytes, which is also the length of the Common IV (RFC 8613 §3.1).
    pub const fn nonce_len(self) -> usize {
        match self {
            AeadAlgorithm::AesCcm16_64_128 => 13,
            AeadAlgorithm::A128Gcm | AeadAlgorithm::ChaCha20Poly1305 => 12,
        }
    }

    /// Authentication tag length in bytes.
    pub const fn tag_len(self) -> usize {
        match self {
            AeadAlgorithm::AesCcm16_64_128 => 8,
            AeadAlgorithm::A128Gcm | AeadAlgorithm::ChaCha20Poly1305 => 16,
        }
    }

    /// The longest plaintext the AEAD accepts: 2^16 - 1 bytes for AES-CCM-16-64-128
    /// (its 2-byte length field, RFC 8152 §10.2); practically unlimited for the others.
    pub(crate) const fn max_plaintext_len(self) -> usize {
        match self {
            AeadAlgorithm::AesCcm16_64_128 => 0xffff,
            AeadAlgorithm::A128Gcm | AeadAlgorithm::ChaCha20Poly1305 => u32::MAX as usize,
        }
    }

    /// The longest Sender or Recipient ID: the nonce length minus 6 (RFC 8613 §3.3, §5.2);
    /// 7 bytes for AES-CCM-16-64-128.
    pub const fn max_id_len(self) -> usize {
        self.nonce_len() - 6
    }
}

impl fmt::Display for AeadAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AeadAlgorithm::AesCcm16_64_128 => "AES-CCM-16-64-128",
            AeadAlgorithm::A128Gcm => "A128GCM",
            AeadAlgorithm::ChaCha20Poly1305 => "ChaCha20/Poly1305",
        })
    }
}

/// The HKDF Algorithm of the Common Context (RFC 8613 §3.1, §3.2.1). Only HKDF SHA-256,
/// the mandatory-to-implement default, is supported.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HkdfAlgorithm {
    /// HKDF with SHA-256 (COSE id -10, RFC 8152 §11.1).
    #[default]
    Sha256,
}

/// HKDF-SHA-256 (RFC 5869): extract with `salt` (the empty salt stands for a string of
/// zeroes, RFC 5869 §2.2; RFC 8613 §3.2.1), then expand `info` into `okm`.
pub(crate) fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], okm: &mut [u8]) {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    // `okm` is at most 32 bytes, far below the 255 * 32 limit of RFC 5869 §2.3.
    let expanded = hk.expand(info, okm);
    debug_assert!(expanded.is_ok());
}

/// The AEAD failed: the tag did not verify, or the input was too long for the algorithm
/// (AES-CCM-16-64-128 carries at most 2^16 - 1 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct AeadFailure;

/// A keyed AEAD instance (the key schedule is computed once per context).
#[derive(Clone)]
pub(crate) enum Cipher {
    Ccm(Ccm<Aes128, U8, U13>),
    Gcm(Aes128Gcm),
    ChaCha(ChaCha20Poly1305),
}

impl Cipher {
    /// Keys `alg` with `key`, which has the algorithm's key length.
    pub(crate) fn new(alg: AeadAlgorithm, key: &[u8]) -> Result<Cipher, AeadFailure> {
        Ok(match alg {
            AeadAlgorithm::AesCcm16_64_128 => {
                Cipher::Ccm(Ccm::new_from_slice(key).map_err(|_| AeadFailure)?)
            }
            AeadAlgorithm::A128Gcm => {
                Cipher::Gcm(Aes128Gcm::new_from_slice(key).map_err(|_| AeadFailure)?)
            }
            AeadAlgorithm::ChaCha20Poly1305 => {
                Cipher::ChaCha(ChaCha20Poly1305::new_from_slice(key).map_err(|_| AeadFailure)?)
            }
        })
    }

    /// Encrypts `buf` in place and appends the tag (COSE puts the tag after the
    /// ciphertext, RFC 8152 §10).
    pub(crate) fn seal(
        &self,
        nonce: &[u8],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), AeadFailure> {
        match self {
            Cipher::Ccm(c) => seal_with(c, nonce, aad, buf),
            Cipher::Gcm(c) => seal_with(c, nonce, aad, buf),
            Cipher::ChaCha(c) => seal_with(c, nonce, aad, buf),
        }
    }

    /// Verifies the tag at the end of `buf` and decrypts the rest in place, leaving the
    /// plaintext in `buf`. On failure `buf` holds garbage and must be discarded.
    pub(crate) fn open(
        &self,
        nonce: &[u8],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), AeadFailure> {
        match self {
            Cipher::Ccm(c) => open_with(c, nonce, aad, buf),
            Cipher::Gcm(c) => open_with(c, nonce, aad, buf),
            Cipher::ChaCha(c) => open_with(c, nonce, aad, buf),
        }
    }
}

fn seal_with<A: AeadInOut>(
    cipher: &A,
    nonce: &[u8],
    aad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), AeadFailure> {
    let nonce = aead::Nonce::<A>::try_from(nonce).map_err(|_| AeadFailure)?;
    let tag = cipher
        .encrypt_inout_detached(&nonce, aad, buf.as_mut_slice().into())
        .map_err(|_| AeadFailure)?;
    buf.extend_from_slice(&tag);
    Ok(())
}

fn open_with<A: AeadInOut + AeadCore>(
    cipher: &A,
    nonce: &[u8],
    aad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), AeadFailure> {
    let nonce = aead::Nonce::<A>::try_from(nonce).map_err(|_| AeadFailure)?;
    let tag_len = core::mem::size_of::<aead::Tag<A>>();
    let split = buf.len().checked_sub(tag_len).ok_or(AeadFailure)?;
    let (msg, tag) = buf.split_at_mut(split);
    let tag = aead::Tag::<A>::try_from(&*tag).map_err(|_| AeadFailure)?;
    cipher
        .decrypt_inout_detached(&nonce, aad, msg.into(), &tag)
        .map_err(|_| AeadFailure)?;
    buf.truncate(split);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_parameters() {
        for alg in [
            AeadAlgorithm::AesCcm16_64_128,
            AeadAlgorithm::A128Gcm,
            AeadAlgorithm::ChaCha20Poly1305,
        ] {
            assert_eq!(AeadAlgorithm::from_cose_id(alg.cose_id()), Some(alg));
            assert!(alg.key_len() <= MAX_KEY_LEN);
            assert!(alg.nonce_len() <= MAX_NONCE_LEN);
            let key = [7u8; 32];
            let c = Cipher::new(alg, &key[..alg.key_len()]).unwrap();
            assert!(Cipher::new(alg, &key[..alg.key_len() - 1]).is_err());
            let nonce = [1u8; 13];
            let mut buf = b"hello".to_vec();
            c.seal(&nonce[..alg.nonce_len()], b"aad", &mut buf).unwrap();
            assert_eq!(buf.len(), 5 + alg.tag_len());
            let sealed = buf.clone();
            c.open(&nonce[..alg.nonce_len()], b"aad", &mut buf).unwrap();
            assert_eq!(buf, b"hello");
            let mut bad = sealed.clone();
            assert!(c.open(&nonce[..alg.nonce_len()], b"aaD", &mut bad).is_err());
            let mut short = sealed[..alg.tag_len() - 1].to_vec();
            assert!(c
                .open(&nonce[..alg.nonce_len()], b"aad", &mut short)
                .is_err());
            let mut wrong_nonce = sealed;
            assert!(c
                .open(&nonce[..alg.nonce_len() - 1], b"aad", &mut wrong_nonce)
                .is_err());
        }
        assert_eq!(AeadAlgorithm::from_cose_id(11), None);
        assert_eq!(AeadAlgorithm::default().cose_id(), 10);
        assert_eq!(AeadAlgorithm::AesCcm16_64_128.max_id_len(), 7);
    }

    #[test]
    fn ccm_length_limit() {
        // L = 2 (15 - 13): at most 65535 bytes of plaintext.
        let c = Cipher::new(AeadAlgorithm::AesCcm16_64_128, &[0; 16]).unwrap();
        let mut big = alloc::vec![0u8; 65536];
        assert_eq!(c.seal(&[0; 13], &[], &mut big), Err(AeadFailure));
    }
}
