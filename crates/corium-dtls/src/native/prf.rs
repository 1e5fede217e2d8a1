//! The TLS 1.2 PRF with SHA-256 (RFC 5246 §5) and the PSK key schedule: premaster secret
//! (RFC 4279 §2), master secret (RFC 5246 §8.1, or the extended master secret of RFC 7627
//! §4), key block (RFC 5246 §6.3) and Finished `verify_data` (RFC 5246 §7.4.9).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length")
}

/// `PRF(secret, label, seed)` = `P_SHA256(secret, label ‖ seed)`, filling `out`
/// (RFC 5246 §5). `seed` is given in parts, concatenated.
pub(crate) fn prf(secret: &[u8], label: &[u8], seed: &[&[u8]], out: &mut [u8]) {
    let keyed = hmac(secret);
    // A(1) = HMAC(secret, label ‖ seed)
    let mut a = {
        let mut m = keyed.clone();
        m.update(label);
        for s in seed {
            m.update(s);
        }
        m.finalize().into_bytes()
    };
    for chunk in out.chunks_mut(32) {
        let mut m = keyed.clone();
        m.update(&a);
        m.update(label);
        for s in seed {
            m.update(s);
        }
        let block = m.finalize().into_bytes();
        chunk.copy_from_slice(&block[..chunk.len()]);
        let mut m = keyed.clone();
        m.update(&a);
        a = m.finalize().into_bytes();
    }
}

/// The PSK premaster secret (RFC 4279 §2): `uint16 N ‖ N zero octets ‖ uint16 N ‖ psk`.
pub(crate) fn psk_premaster(psk: &[u8]) -> Vec<u8> {
    let n = u16::try_from(psk.len()).unwrap_or(u16::MAX);
    let len = usize::from(n);
    let mut pms = Vec::with_capacity(4 + 2 * len);
    pms.extend_from_slice(&n.to_be_bytes());
    pms.resize(2 + len, 0);
    pms.extend_from_slice(&n.to_be_bytes());
    pms.extend_from_slice(&psk[..len]);
    pms
}

/// The 48-byte master secret: RFC 5246 §8.1, or with `session_hash` (the transcript hash
/// through ClientKeyExchange) the extended master secret of RFC 7627 §4.
pub(crate) fn master_secret(
    premaster: &[u8],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
    session_hash: Option<&[u8; 32]>,
) -> [u8; 48] {
    let mut ms = [0u8; 48];
    match session_hash {
        Some(h) => prf(premaster, b"extended master secret", &[h], &mut ms),
        None => prf(
            premaster,
            b"master secret",
            &[client_random, server_random],
            &mut ms,
        ),
    }
    ms
}

/// The traffic keys of TLS_PSK_WITH_AES_128_CCM_8 (RFC 6655 §3: no MAC keys, 16-byte
/// write keys, 4-byte implicit IVs).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KeyBlock {
    pub(crate) client_key: [u8; 16],
    pub(crate) server_key: [u8; 16],
    pub(crate) client_iv: [u8; 4],
    pub(crate) server_iv: [u8; 4],
}

impl std::fmt::Debug for KeyBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyBlock(..)")
    }
}

/// `key_block = PRF(master, "key expansion", server_random ‖ client_random)` (RFC 5246
/// §6.3), split as RFC 6655 §3 says.
pub(crate) fn key_block(
    master: &[u8; 48],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
) -> KeyBlock {
    let mut kb = [0u8; 40];
    prf(
        master,
        b"key expansion",
        &[server_random, client_random],
        &mut kb,
    );
    let mut k = KeyBlock {
        client_key: [0; 16],
        server_key: [0; 16],
        client_iv: [0; 4],
        server_iv: [0; 4],
    };
    k.client_key.copy_from_slice(&kb[..16]);
    k.server_key.copy_from_slice(&kb[16..32]);
    k.client_iv.copy_from_slice(&kb[32..36]);
    k.server_iv.copy_from_slice(&kb[36..40]);
    k
}

/// Finished `verify_data` (RFC 5246 §7.4.9): 12 bytes of
/// `PRF(master, "client finished" | "server finished", Hash(handshake_messages))`.
pub(crate) fn verify_data(master: &[u8; 48], client: bool, transcript: &[u8; 32]) -> [u8; 12] {
    let label: &[u8] = if client {
        b"client finished"
    } else {
        b"server finished"
    };
    let mut out = [0u8; 12];
    prf(master, label, &[transcript], &mut out);
    out
}

/// Compares without an early exit (Finished values, cookies).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The TLS 1.2 PRF SHA-256 vector posted by Joseph Birr-Pixton to the IETF TLS list
    /// (2009), also in Go's `crypto/tls` and Python `tlslite` test suites.
    #[test]
    fn prf_sha256_vector() {
        let secret = hex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35");
        let seed = hex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c");
        let mut out = [0u8; 100];
        prf(&secret, b"test label", &[&seed], &mut out);
        let expected = hex(
            "e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4
             e6 1e db 5a 6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af 0f a0 22 f7 07 7d ef 17
             ab fd 37 97 c0 56 4b ab 4f bc 91 66 6e 9d ef 9b 97 fc e3 4f 79 67 89 ba a4 80 82 d1
             22 ee 42 c5 a7 2e 5a 51 10 ff f7 01 87 34 7b 66",
        );
        assert_eq!(out.to_vec(), expected);
        // A seed split in parts is the same seed.
        let mut split = [0u8; 100];
        prf(
            &secret,
            b"test label",
            &[&seed[..5], &seed[5..]],
            &mut split,
        );
        assert_eq!(split, out);
    }

    #[test]
    fn psk_premaster_layout() {
        assert_eq!(psk_premaster(b"ab"), vec![0, 2, 0, 0, 0, 2, b'a', b'b']);
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
