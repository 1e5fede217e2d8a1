//! Option sequences (RFC 7252 §3.1), uint values (§3.2) and Block values (RFC 7959 §2.2).
//!
//! `OptionIter::new_checked` validates an option sequence plus optional payload; every
//! option it yields is re-encoded with `encode_option_header` and the bytes must match the
//! input exactly (the encoding is canonical). uint and Block values must round-trip.
#![no_main]

use corium_wire::{
    decode_uint, encode_option_header, encode_uint, uint_len, BlockValue, OptionIter, OptionNumber,
    PAYLOAD_MARKER,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (iter, payload) = match OptionIter::new_checked(data) {
        Ok(v) => v,
        Err(err) => {
            let _ = format!("{err} {err:?}");
            return;
        }
    };
    let _ = format!("{iter:?}");
    let options_bytes = iter.as_bytes();
    if payload.is_empty() {
        assert_eq!(options_bytes, data);
    } else {
        // options ‖ 0xFF ‖ payload
        assert_eq!(options_bytes.len() + 1 + payload.len(), data.len());
        assert_eq!(data[options_bytes.len()], PAYLOAD_MARKER);
        assert_eq!(&data[options_bytes.len() + 1..], payload);
    }

    let mut rebuilt = Vec::with_capacity(options_bytes.len());
    let mut last = 0u16;
    let mut it = iter.clone();
    while let Some(opt) = it.next() {
        assert!(opt.number.0 >= last, "numbers must not decrease");
        let delta = opt.number.0 - last;
        last = opt.number.0;

        let mut hdr = [0u8; 5];
        let n = encode_option_header(delta, opt.value.len(), &mut hdr).unwrap_or_else(|e| {
            panic!("encode_option_header({delta}, {}): {e:?}", opt.value.len())
        });
        assert_eq!(n, corium_wire::option_header_len(delta, opt.value.len()));
        rebuilt.extend_from_slice(&hdr[..n]);
        rebuilt.extend_from_slice(opt.value);
        // The iterator has consumed exactly the bytes of the options it yielded.
        assert_eq!(it.as_bytes().len(), options_bytes.len() - rebuilt.len());

        // Registry lookups.
        let number = opt.number;
        assert_eq!(number.is_critical(), !number.is_elective());
        assert_eq!(number.is_unsafe(), !number.is_safe_to_forward());
        assert_eq!(number.is_cache_key(), !number.is_no_cache_key());
        assert_eq!(number.is_critical(), number.0 & 1 == 1, "RFC 7252 §5.4.6");
        let _ = number.check_length(opt.value.len());
        let _ = number.is_repeatable();
        let _ = format!("{number} {number:?}");
        if let Some(name) = number.name() {
            assert_eq!(
                OptionNumber::from_name(name),
                Some(number),
                "from_name({name})"
            );
            let info = number.info().expect("named option has info");
            assert_eq!(info.number, number);
        }
        let _ = opt.value_str();

        // uint (RFC 7252 §3.2).
        match decode_uint(opt.value) {
            Some(v) => {
                assert!(opt.value.len() <= 4);
                assert_eq!(opt.value_uint(), Some(v));
                let mut b = [0u8; 4];
                let enc = encode_uint(v, &mut b);
                assert_eq!(enc.len(), uint_len(v));
                let first_nonzero = opt
                    .value
                    .iter()
                    .position(|&b| b != 0)
                    .unwrap_or(opt.value.len());
                assert_eq!(enc, &opt.value[first_nonzero..], "minimal uint encoding");
                assert_eq!(decode_uint(enc), Some(v));
            }
            None => assert!(opt.value.len() > 4),
        }

        // Block1/Block2 (RFC 7959 §2.2).
        match BlockValue::decode(opt.value) {
            Some(block) => {
                assert!(opt.value.len() <= 3);
                assert_eq!(
                    BlockValue::new(block.num, block.more, block.szx),
                    Some(block)
                );
                let mut b = [0u8; 4];
                let enc = block.encode(&mut b);
                assert!(enc.len() <= 3);
                assert_eq!(BlockValue::decode(enc), Some(block));
                let size = block.size();
                assert!((16..=1024).contains(&size) && size.is_power_of_two());
                assert_eq!(block.offset(), block.num as usize * size);
                if !block.is_bert() {
                    assert_eq!(BlockValue::szx_for_size(size), Some(block.szx));
                }
            }
            None => assert!(opt.value.len() > 3),
        }
    }
    assert!(
        it.as_bytes().is_empty(),
        "validated options not fully iterated"
    );
    assert_eq!(rebuilt, options_bytes, "option re-encoding differs");
});
