//! The OSCORE option value (RFC 8613 §6.1): `OscoreOption::decode` on any bytes.
//!
//! Decoding never panics; a value that decodes re-encodes to exactly the input bytes
//! (the compressed COSE header has one encoding per field set), `encoded_len` agrees,
//! and the Partial IV stays within 5 bytes / 2^40 - 1.
#![no_main]

use corium_oscore::{OscoreOption, PartialIv, MAX_PARTIAL_IV};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let option = match OscoreOption::decode(data) {
        Ok(o) => o,
        Err(err) => {
            let _ = format!("{err} {err:?}");
            return;
        }
    };
    let _ = format!("{option:?}");
    if let Some(piv) = option.partial_iv {
        assert!((1..=5).contains(&piv.as_bytes().len()));
        assert!(piv.value() <= MAX_PARTIAL_IV);
        assert_eq!(PartialIv::from_bytes(piv.as_bytes()), Some(piv));
        let minimal = PartialIv::from_u64(piv.value()).expect("in range");
        assert_eq!(minimal.value(), piv.value());
        assert!(minimal.as_bytes().len() <= piv.as_bytes().len());
    }
    if let Some(ctx) = option.kid_context {
        assert!(ctx.len() <= 255);
    }
    let encoded = option.to_vec().expect("a decoded option re-encodes");
    assert_eq!(encoded, data, "re-encoding differs");
    assert_eq!(option.encoded_len(), data.len());
    assert_eq!(OscoreOption::decode(&encoded), Ok(option));
});
