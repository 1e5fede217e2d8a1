//! Content-Format identifiers (RFC 7252 §5.10.3, §12.3).
//!
//! [`ContentFormat`] is an open newtype over the 16-bit identifier carried in the
//! Content-Format and Accept options. The registered values below are those of the IANA
//! "CoAP Content-Formats" registry that this crate knows by name.

use core::fmt;
use core::str::FromStr;

/// A CoAP Content-Format identifier: a media type plus content coding (RFC 7252 §12.3).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentFormat(pub u16);

macro_rules! content_formats {
    ($( $(#[$doc:meta])* $name:ident = $id:literal, $mt:literal; )*) => {
        impl ContentFormat {
            $( $(#[$doc])* pub const $name: ContentFormat = ContentFormat($id); )*
        }
        /// Registered Content-Formats as `(identifier, media type)`, sorted by identifier.
        pub static CONTENT_FORMAT_REGISTRY: &[(ContentFormat, &str)] = &[
            $( (ContentFormat($id), $mt), )*
        ];
    };
}

content_formats! {
    /// 0: `text/plain; charset=utf-8` (RFC 7252 §12.3).
    TEXT_PLAIN = 0, "text/plain; charset=utf-8";
    /// 16: COSE_Encrypt0 (RFC 9052).
    COSE_ENCRYPT0 = 16, "application/cose; cose-type=\"cose-encrypt0\"";
    /// 17: COSE_Mac0 (RFC 9052).
    COSE_MAC0 = 17, "application/cose; cose-type=\"cose-mac0\"";
    /// 18: COSE_Sign1 (RFC 9052).
    COSE_SIGN1 = 18, "application/cose; cose-type=\"cose-sign1\"";
    /// 19: `application/ace+cbor` (RFC 9200).
    ACE_CBOR = 19, "application/ace+cbor";
    /// 21: `image/gif`.
    IMAGE_GIF = 21, "image/gif";
    /// 22: `image/jpeg`.
    IMAGE_JPEG = 22, "image/jpeg";
    /// 23: `image/png`.
    IMAGE_PNG = 23, "image/png";
    /// 40: `application/link-format` (RFC 6690).
    LINK_FORMAT = 40, "application/link-format";
    /// 41: `application/xml` (RFC 7252 §12.3).
    XML = 41, "application/xml";
    /// 42: `application/octet-stream` (RFC 7252 §12.3).
    OCTET_STREAM = 42, "application/octet-stream";
    /// 47: `application/exi` (RFC 7252 §12.3).
    EXI = 47, "application/exi";
    /// 50: `application/json` (RFC 7252 §12.3).
    JSON = 50, "application/json";
    /// 51: `application/json-patch+json` (RFC 8132 §6.2).
    JSON_PATCH_JSON = 51, "application/json-patch+json";
    /// 52: `application/merge-patch+json` (RFC 8132 §6.2).
    MERGE_PATCH_JSON = 52, "application/merge-patch+json";
    /// 60: `application/cbor` (RFC 8949).
    CBOR = 60, "application/cbor";
    /// 61: `application/cwt` (RFC 8392).
    CWT = 61, "application/cwt";
    /// 62: `application/multipart-core` (RFC 8710).
    MULTIPART_CORE = 62, "application/multipart-core";
    /// 63: `application/cbor-seq` (RFC 8742).
    CBOR_SEQ = 63, "application/cbor-seq";
    /// 64: `application/edhoc+cbor-seq` (RFC 9528 §10.9).
    EDHOC_CBOR_SEQ = 64, "application/edhoc+cbor-seq";
    /// 65: `application/cid-edhoc+cbor-seq` (RFC 9528 §10.9).
    CID_EDHOC_CBOR_SEQ = 65, "application/cid-edhoc+cbor-seq";
    /// 96: COSE_Encrypt (RFC 9052).
    COSE_ENCRYPT = 96, "application/cose; cose-type=\"cose-encrypt\"";
    /// 97: COSE_Mac (RFC 9052).
    COSE_MAC = 97, "application/cose; cose-type=\"cose-mac\"";
    /// 98: COSE_Sign (RFC 9052).
    COSE_SIGN = 98, "application/cose; cose-type=\"cose-sign\"";
    /// 101: `application/cose-key` (RFC 9052).
    COSE_KEY = 101, "application/cose-key";
    /// 102: `application/cose-key-set` (RFC 9052).
    COSE_KEY_SET = 102, "application/cose-key-set";
    /// 110: `application/senml+json` (RFC 8428 §12.3).
    SENML_JSON = 110, "application/senml+json";
    /// 111: `application/sensml+json` (RFC 8428 §12.3).
    SENSML_JSON = 111, "application/sensml+json";
    /// 112: `application/senml+cbor` (RFC 8428 §12.3).
    SENML_CBOR = 112, "application/senml+cbor";
    /// 113: `application/sensml+cbor` (RFC 8428 §12.3).
    SENSML_CBOR = 113, "application/sensml+cbor";
    /// 114: `application/senml-exi` (RFC 8428 §12.3).
    SENML_EXI = 114, "application/senml-exi";
    /// 115: `application/sensml-exi` (RFC 8428 §12.3).
    SENSML_EXI = 115, "application/sensml-exi";
    /// 256: `application/coap-group+json` (RFC 7390).
    COAP_GROUP_JSON = 256, "application/coap-group+json";
    /// 257: `application/concise-problem-details+cbor` (RFC 9290).
    CONCISE_PROBLEM_DETAILS_CBOR = 257, "application/concise-problem-details+cbor";
    /// 258: `application/swid+cbor` (RFC 9393).
    SWID_CBOR = 258, "application/swid+cbor";
    /// 271: `application/dots+cbor` (RFC 9132).
    DOTS_CBOR = 271, "application/dots+cbor";
    /// 272: `application/missing-blocks+cbor-seq` (RFC 9177 §12.3).
    MISSING_BLOCKS_CBOR_SEQ = 272, "application/missing-blocks+cbor-seq";
    /// 280: `application/pkcs7-mime; smime-type=server-generated-key` (RFC 9148).
    PKCS7_SERVER_GENERATED_KEY = 280, "application/pkcs7-mime; smime-type=server-generated-key";
    /// 281: `application/pkcs7-mime; smime-type=certs-only` (RFC 9148).
    PKCS7_CERTS_ONLY = 281, "application/pkcs7-mime; smime-type=certs-only";
    /// 284: `application/pkcs8` (RFC 9148).
    PKCS8 = 284, "application/pkcs8";
    /// 285: `application/csrattrs` (RFC 9148).
    CSRATTRS = 285, "application/csrattrs";
    /// 286: `application/pkcs10` (RFC 9148).
    PKCS10 = 286, "application/pkcs10";
    /// 287: `application/pkix-cert` (RFC 9148).
    PKIX_CERT = 287, "application/pkix-cert";
    /// 290: `application/aif+cbor` (RFC 9237).
    AIF_CBOR = 290, "application/aif+cbor";
    /// 291: `application/aif+json` (RFC 9237).
    AIF_JSON = 291, "application/aif+json";
    /// 310: `application/senml+xml` (RFC 8428 §12.3).
    SENML_XML = 310, "application/senml+xml";
    /// 311: `application/sensml+xml` (RFC 8428 §12.3).
    SENSML_XML = 311, "application/sensml+xml";
    /// 320: `application/senml-etch+json` (RFC 8790).
    SENML_ETCH_JSON = 320, "application/senml-etch+json";
    /// 322: `application/senml-etch+cbor` (RFC 8790).
    SENML_ETCH_CBOR = 322, "application/senml-etch+cbor";
    /// 432: `application/td+json` (W3C WoT Thing Description).
    TD_JSON = 432, "application/td+json";
    /// 433: `application/tm+json` (W3C WoT Thing Model).
    TM_JSON = 433, "application/tm+json";
    /// 10000: `application/vnd.ocf+cbor` (OCF).
    VND_OCF_CBOR = 10000, "application/vnd.ocf+cbor";
    /// 10001: `application/oscore` (RFC 8613 §13.5).
    OSCORE = 10001, "application/oscore";
    /// 10002: `application/javascript`.
    JAVASCRIPT = 10002, "application/javascript";
    /// 11542: `application/vnd.oma.lwm2m+tlv` (OMA LwM2M).
    LWM2M_TLV = 11542, "application/vnd.oma.lwm2m+tlv";
    /// 11543: `application/vnd.oma.lwm2m+json` (OMA LwM2M).
    LWM2M_JSON = 11543, "application/vnd.oma.lwm2m+json";
    /// 11544: `application/vnd.oma.lwm2m+cbor` (OMA LwM2M).
    LWM2M_CBOR = 11544, "application/vnd.oma.lwm2m+cbor";
    /// 20000: `text/css`.
    TEXT_CSS = 20000, "text/css";
    /// 30000: `image/svg+xml`.
    IMAGE_SVG_XML = 30000, "image/svg+xml";
}

/// Short names accepted by [`ContentFormat::from_name`] besides media types.
const ALIASES: &[(&str, ContentFormat)] = &[
    ("text", ContentFormat::TEXT_PLAIN),
    ("txt", ContentFormat::TEXT_PLAIN),
    ("link", ContentFormat::LINK_FORMAT),
    ("octet", ContentFormat::OCTET_STREAM),
    ("binary", ContentFormat::OCTET_STREAM),
    ("bin", ContentFormat::OCTET_STREAM),
    ("senml-json", ContentFormat::SENML_JSON),
    ("sensml-json", ContentFormat::SENSML_JSON),
    ("senml-cbor", ContentFormat::SENML_CBOR),
    ("sensml-cbor", ContentFormat::SENSML_CBOR),
    ("senml-xml", ContentFormat::SENML_XML),
    ("sensml-xml", ContentFormat::SENSML_XML),
    ("cose-encrypt0", ContentFormat::COSE_ENCRYPT0),
    ("cose-mac0", ContentFormat::COSE_MAC0),
    ("cose-sign1", ContentFormat::COSE_SIGN1),
    ("cose-encrypt", ContentFormat::COSE_ENCRYPT),
    ("cose-mac", ContentFormat::COSE_MAC),
    ("cose-sign", ContentFormat::COSE_SIGN),
    ("lwm2m-tlv", ContentFormat::LWM2M_TLV),
    ("lwm2m-json", ContentFormat::LWM2M_JSON),
    ("lwm2m-cbor", ContentFormat::LWM2M_CBOR),
    ("tlv", ContentFormat::LWM2M_TLV),
    ("jpg", ContentFormat::IMAGE_JPEG),
    ("svg", ContentFormat::IMAGE_SVG_XML),
    ("js", ContentFormat::JAVASCRIPT),
];

/// `type/subtype` of a registry media type (parameters removed).
fn base(mt: &str) -> &str {
    mt.split(';').next().unwrap_or(mt).trim()
}

/// The subtype of a registry media type (after `/`, parameters removed).
fn subtype(mt: &str) -> &str {
    let b = base(mt);
    b.split_once('/').map_or(b, |(_, s)| s)
}

/// Compares ignoring ASCII case, whitespace and double quotes.
fn loose_eq(a: &str, b: &str) -> bool {
    let skip = |c: &u8| !c.is_ascii_whitespace() && *c != b'"';
    let mut x = a.bytes().filter(skip);
    let mut y = b.bytes().filter(skip);
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p.eq_ignore_ascii_case(&q) => {}
            _ => return false,
        }
    }
}

/// The single registry entry for which `pred` holds, if exactly one does.
fn unique(pred: impl Fn(&str) -> bool) -> Option<ContentFormat> {
    let mut found = None;
    for &(cf, mt) in CONTENT_FORMAT_REGISTRY {
        if pred(mt) {
            if found.is_some() {
                return None;
            }
            found = Some(cf);
        }
    }
    found
}

impl ContentFormat {
    /// The registered media type with its parameters, e.g. `text/plain; charset=utf-8`.
    pub fn media_type(self) -> Option<&'static str> {
        CONTENT_FORMAT_REGISTRY
            .binary_search_by_key(&self, |&(cf, _)| cf)
            .ok()
            .map(|i| CONTENT_FORMAT_REGISTRY[i].1)
    }

    /// Looks up a Content-Format by name. Accepted, in this order (all ASCII
    /// case-insensitive):
    ///
    /// 1. a decimal identifier: `"60"`;
    /// 2. the full registered media type, whitespace and quotes ignored:
    ///    `"text/plain;charset=utf-8"`, `"application/cose; cose-type=cose-sign1"`;
    /// 3. a short alias: `"text"`, `"link"`, `"octet"`, `"senml-json"`, `"cose-sign1"`…;
    /// 4. a media type without parameters, if exactly one entry has it: `"text/plain"`
    ///    (but not `"application/cose"`);
    /// 5. a subtype, if exactly one entry has it: `"json"`, `"cbor"`, `"xml"`,
    ///    `"link-format"`, `"senml+json"`, `"oscore"`.
    pub fn from_name(name: &str) -> Option<ContentFormat> {
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        if name.bytes().all(|b| b.is_ascii_digit()) {
            return name.parse().ok().map(ContentFormat);
        }
        if let Some(&(cf, _)) = CONTENT_FORMAT_REGISTRY
            .iter()
            .find(|(_, mt)| loose_eq(mt, name))
        {
            return Some(cf);
        }
        if let Some(&(_, cf)) = ALIASES.iter().find(|(a, _)| a.eq_ignore_ascii_case(name)) {
            return Some(cf);
        }
        if name.contains('/') {
            unique(|mt| base(mt).eq_ignore_ascii_case(name))
        } else {
            unique(|mt| subtype(mt).eq_ignore_ascii_case(name))
        }
    }

    /// Textual (UTF-8) representations: `text/*`, JSON and `+json`, XML and `+xml`,
    /// `application/link-format`, `application/javascript`.
    pub fn is_text(self) -> bool {
        self.media_type().is_some_and(|mt| {
            let st = subtype(mt);
            mt.starts_with("text/")
                || st == "json"
                || st.ends_with("+json")
                || st == "xml"
                || st.ends_with("+xml")
                || st == "link-format"
                || st == "javascript"
        })
    }

    /// JSON representations: `application/json` and `+json` structured syntax suffixes.
    pub fn is_json(self) -> bool {
        self.media_type().is_some_and(|mt| {
            let st = subtype(mt);
            st == "json" || st.ends_with("+json")
        })
    }

    /// Representations that are a single CBOR data item: `application/cbor`, `+cbor`
    /// suffixes, COSE objects and keys, CWT and `application/multipart-core`.
    /// CBOR sequences are not included (see [`is_cbor_seq`](Self::is_cbor_seq)).
    pub fn is_cbor(self) -> bool {
        self.media_type().is_some_and(|mt| {
            let st = subtype(mt);
            st == "cbor"
                || st.ends_with("+cbor")
                || st == "cose"
                || st == "cose-key"
                || st == "cose-key-set"
                || st == "cwt"
                || st == "multipart-core"
        })
    }

    /// CBOR sequences (RFC 8742): `application/cbor-seq` and `+cbor-seq` suffixes.
    pub fn is_cbor_seq(self) -> bool {
        self.media_type().is_some_and(|mt| {
            let st = subtype(mt);
            st == "cbor-seq" || st.ends_with("+cbor-seq")
        })
    }
}

impl From<u16> for ContentFormat {
    fn from(value: u16) -> Self {
        ContentFormat(value)
    }
}

impl From<ContentFormat> for u16 {
    fn from(value: ContentFormat) -> Self {
        value.0
    }
}

/// Prints the registered media type, or the decimal identifier if unregistered.
impl fmt::Display for ContentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.media_type() {
            Some(mt) => f.write_str(mt),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Prints `ContentFormat(50 application/json)` or `ContentFormat(65000)`.
impl fmt::Debug for ContentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.media_type() {
            Some(mt) => write!(f, "ContentFormat({} {mt})", self.0),
            None => write!(f, "ContentFormat({})", self.0),
        }
    }
}

/// The error of [`ContentFormat::from_str`]: the name is not known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentFormatParseError;

impl fmt::Display for ContentFormatParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown CoAP Content-Format name")
    }
}

impl core::error::Error for ContentFormatParseError {}

impl FromStr for ContentFormat {
    type Err = ContentFormatParseError;

    /// Same as [`ContentFormat::from_name`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ContentFormat::from_name(s).ok_or(ContentFormatParseError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn registry_sorted_and_unique() {
        for w in CONTENT_FORMAT_REGISTRY.windows(2) {
            assert!(w[0].0 < w[1].0);
        }
        for &(cf, mt) in CONTENT_FORMAT_REGISTRY {
            assert_eq!(cf.media_type(), Some(mt));
            assert_eq!(ContentFormat::from_name(mt), Some(cf), "{mt}");
            assert_eq!(format!("{cf}").parse(), Ok(cf));
        }
    }

    #[test]
    fn rfc7252_table9() {
        assert_eq!(
            ContentFormat(0).media_type(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(
            ContentFormat(40).media_type(),
            Some("application/link-format")
        );
        assert_eq!(ContentFormat(41).media_type(), Some("application/xml"));
        assert_eq!(
            ContentFormat(42).media_type(),
            Some("application/octet-stream")
        );
        assert_eq!(ContentFormat(47).media_type(), Some("application/exi"));
        assert_eq!(ContentFormat(50).media_type(), Some("application/json"));
        assert_eq!(ContentFormat(1).media_type(), None);
    }

    #[test]
    fn from_name_variants() {
        use ContentFormat as C;
        let cases: &[(&str, ContentFormat)] = &[
            ("0", C::TEXT_PLAIN),
            ("65000", C(65000)),
            ("text/plain; charset=utf-8", C::TEXT_PLAIN),
            ("TEXT/PLAIN;charset=UTF-8", C::TEXT_PLAIN),
            ("text/plain", C::TEXT_PLAIN),
            ("text", C::TEXT_PLAIN),
            ("json", C::JSON),
            ("cbor", C::CBOR),
            ("link", C::LINK_FORMAT),
            ("link-format", C::LINK_FORMAT),
            ("xml", C::XML),
            ("octet", C::OCTET_STREAM),
            ("octet-stream", C::OCTET_STREAM),
            ("senml+json", C::SENML_JSON),
            ("senml-json", C::SENML_JSON),
            ("senml-exi", C::SENML_EXI),
            ("application/senml+cbor", C::SENML_CBOR),
            ("cbor-seq", C::CBOR_SEQ),
            ("oscore", C::OSCORE),
            ("application/cose; cose-type=cose-sign1", C::COSE_SIGN1),
            ("cose-encrypt0", C::COSE_ENCRYPT0),
            (" application/json ", C::JSON),
        ];
        for &(name, cf) in cases {
            assert_eq!(ContentFormat::from_name(name), Some(cf), "{name}");
        }
        for name in [
            "",
            "application/cose",
            "application/pkcs7-mime",
            "foo",
            "99999",
            "-1",
        ] {
            assert_eq!(ContentFormat::from_name(name), None, "{name}");
        }
        assert_eq!("json".parse(), Ok(C::JSON));
        assert_eq!(
            "nope".parse::<ContentFormat>(),
            Err(ContentFormatParseError)
        );
    }

    #[test]
    fn predicates() {
        use ContentFormat as C;
        assert!(C::TEXT_PLAIN.is_text() && C::LINK_FORMAT.is_text() && C::JSON.is_text());
        assert!(!C::CBOR.is_text() && !C::OCTET_STREAM.is_text() && !C(65000).is_text());
        for cf in [
            C::JSON,
            C::SENML_JSON,
            C::MERGE_PATCH_JSON,
            C::TD_JSON,
            C::LWM2M_JSON,
        ] {
            assert!(cf.is_json(), "{cf:?}");
            assert!(!cf.is_cbor());
        }
        for cf in [
            C::CBOR,
            C::SENML_CBOR,
            C::COSE_SIGN1,
            C::CWT,
            C::LWM2M_CBOR,
            C::ACE_CBOR,
        ] {
            assert!(cf.is_cbor(), "{cf:?}");
            assert!(!cf.is_json());
        }
        assert!(C::CBOR_SEQ.is_cbor_seq() && C::EDHOC_CBOR_SEQ.is_cbor_seq());
        assert!(!C::CBOR_SEQ.is_cbor() && !C::OSCORE.is_cbor());
    }

    #[test]
    fn display_debug() {
        assert_eq!(format!("{}", ContentFormat::JSON), "application/json");
        assert_eq!(format!("{}", ContentFormat(65000)), "65000");
        assert_eq!(
            format!("{:?}", ContentFormat::LINK_FORMAT),
            "ContentFormat(40 application/link-format)"
        );
        assert_eq!(format!("{:?}", ContentFormat(7)), "ContentFormat(7)");
    }
}
