//! The lakers crypto backend: RustCrypto with the OS RNG, and (in tests) fixed
//! ephemeral keys to reproduce the RFC 9529 traces.

use lakers::{
    BufferCiphertext3, BufferPlaintext3, BytesCcmIvLen, BytesCcmKeyLen, BytesHashLen,
    BytesMaxBuffer, BytesMaxInfoBuffer, BytesP256ElemLen, CryptoTrait, EDHOCError,
};
use lakers_crypto_rustcrypto::Crypto;
use rand_core::OsRng;

/// RustCrypto, optionally with the next ephemeral key pair fixed.
#[derive(Debug)]
pub(crate) struct Backend {
    inner: Crypto<OsRng>,
    fixed_ephemeral: Option<(BytesP256ElemLen, BytesP256ElemLen)>,
}

impl Backend {
    pub(crate) fn new() -> Backend {
        Backend {
            inner: Crypto::new(OsRng),
            fixed_ephemeral: None,
        }
    }

    /// The next ephemeral key pair is `(private, public x)` (test vectors only).
    #[cfg(test)]
    pub(crate) fn with_ephemeral(private: BytesP256ElemLen, public_x: BytesP256ElemLen) -> Backend {
        Backend {
            inner: Crypto::new(OsRng),
            fixed_ephemeral: Some((private, public_x)),
        }
    }
}

impl CryptoTrait for Backend {
    fn sha256_digest(&mut self, message: &BytesMaxBuffer, message_len: usize) -> BytesHashLen {
        self.inner.sha256_digest(message, message_len)
    }

    fn hkdf_expand(
        &mut self,
        prk: &BytesHashLen,
        info: &BytesMaxInfoBuffer,
        info_len: usize,
        length: usize,
    ) -> BytesMaxBuffer {
        self.inner.hkdf_expand(prk, info, info_len, length)
    }

    fn hkdf_extract(&mut self, salt: &BytesHashLen, ikm: &BytesP256ElemLen) -> BytesHashLen {
        self.inner.hkdf_extract(salt, ikm)
    }

    fn aes_ccm_encrypt_tag_8(
        &mut self,
        key: &BytesCcmKeyLen,
        iv: &BytesCcmIvLen,
        ad: &[u8],
        plaintext: &BufferPlaintext3,
    ) -> BufferCiphertext3 {
        self.inner.aes_ccm_encrypt_tag_8(key, iv, ad, plaintext)
    }

    fn aes_ccm_decrypt_tag_8(
        &mut self,
        key: &BytesCcmKeyLen,
        iv: &BytesCcmIvLen,
        ad: &[u8],
        ciphertext: &BufferCiphertext3,
    ) -> Result<BufferPlaintext3, EDHOCError> {
        // lakers-crypto-rustcrypto subtracts the tag length unchecked: a ciphertext
        // shorter than the tag (an empty message_3 or message_4) would underflow.
        if ciphertext.len < lakers::AES_CCM_TAG_LEN {
            return Err(EDHOCError::MacVerificationFailed);
        }
        self.inner.aes_ccm_decrypt_tag_8(key, iv, ad, ciphertext)
    }

    fn p256_ecdh(
        &mut self,
        private_key: &BytesP256ElemLen,
        public_key: &BytesP256ElemLen,
    ) -> BytesP256ElemLen {
        // lakers-crypto-rustcrypto panics on an x-coordinate off the curve; the callers
        // check peer keys first, and anything left gets an unpredictable secret, so the
        // exchange fails at the next MAC instead of panicking.
        if !crate::is_valid_x(public_key) {
            let mut out = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut OsRng, &mut out);
            return out;
        }
        self.inner.p256_ecdh(private_key, public_key)
    }

    fn get_random_byte(&mut self) -> u8 {
        self.inner.get_random_byte()
    }

    fn p256_generate_key_pair(&mut self) -> (BytesP256ElemLen, BytesP256ElemLen) {
        match self.fixed_ephemeral.take() {
            Some(pair) => pair,
            None => self.inner.p256_generate_key_pair(),
        }
    }
}
