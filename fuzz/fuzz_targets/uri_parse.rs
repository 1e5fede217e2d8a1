//! CoAP URI parsing and composition (RFC 7252 §6.4, §6.5; RFC 3986).
//!
//! Any string `Uri::parse` accepts is decomposed into option values (percent-decoded
//! path segments and query arguments), composed again with `write_uri` and re-parsed:
//! the option values, host and effective port must survive the round trip. The `Display`
//! form of a parsed URI must parse back to the same `Uri`.
#![no_main]

use corium_wire::{
    is_valid_percent_encoding, percent_decode, percent_decode_into, write_uri, Host,
    PercentEncoded, Uri, UriComponent,
};
use libfuzzer_sys::fuzz_target;

/// Decoded option values, checked against both decoders.
fn decode_all<'a>(raw: impl Iterator<Item = &'a str>) -> Vec<Vec<u8>> {
    raw.map(|seg| {
        assert!(is_valid_percent_encoding(seg), "validated segment {seg:?}");
        let mut buf = vec![0u8; seg.len()];
        let decoded = percent_decode_into(seg, &mut buf)
            .unwrap_or_else(|e| panic!("percent_decode_into({seg:?}): {e:?}"))
            .to_vec();
        let lazy: Vec<u8> = percent_decode(seg).collect();
        assert_eq!(decoded, lazy);
        decoded
    })
    .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let uri = match Uri::parse(s) {
        Ok(uri) => uri,
        Err(e) => {
            let _ = format!("{e} {e:?}");
            return;
        }
    };

    // Display → parse is the identity.
    let shown = uri.to_string();
    assert_eq!(Uri::parse(&shown), Ok(uri), "Display of {s:?} is {shown:?}");

    // Option values (RFC 7252 §6.4 steps 5-9).
    let segments = decode_all(uri.path_segments());
    let args = decode_all(uri.query_args());
    let _ = uri.uri_port_option();
    let mut hostbuf = vec![0u8; s.len()];
    let host_opt = uri
        .uri_host_option_into(&mut hostbuf)
        .unwrap_or_else(|e| panic!("uri_host_option_into: {e:?}"))
        .map(<[u8]>::to_vec);
    assert_eq!(host_opt.is_some(), matches!(uri.host, Host::Name(_)));

    // Each decoded value re-encodes to something that decodes to it again.
    for (values, component) in [
        (&segments, UriComponent::PathSegment),
        (&args, UriComponent::QueryArg),
    ] {
        for v in values {
            let enc = PercentEncoded {
                bytes: v,
                component,
            }
            .to_string();
            assert!(
                enc.bytes().all(|b| b == b'%' || component.keeps(b)),
                "{enc:?}"
            );
            assert_eq!(&percent_decode(&enc).collect::<Vec<u8>>(), v);
        }
    }

    // Compose (RFC 7252 §6.5) and re-parse.
    let host = uri.host.to_string();
    let mut composed = String::new();
    write_uri(
        &mut composed,
        uri.scheme,
        &host,
        uri.port,
        segments.iter().map(Vec::as_slice),
        args.iter().map(Vec::as_slice),
    )
    .expect("write_uri into a String");
    let again = Uri::parse(&composed)
        .unwrap_or_else(|e| panic!("composed URI {composed:?} (from {s:?}) does not parse: {e:?}"));
    assert_eq!(again.scheme, uri.scheme);
    assert_eq!(again.host, uri.host, "host of {composed:?} from {s:?}");
    assert_eq!(again.port_or_default(), uri.port_or_default());
    assert_eq!(
        decode_all(again.path_segments()),
        segments,
        "{s:?} -> {composed:?}"
    );
    assert_eq!(
        decode_all(again.query_args()),
        args,
        "{s:?} -> {composed:?}"
    );
});
