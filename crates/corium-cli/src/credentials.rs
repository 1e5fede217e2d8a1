//! `--credentials FILE`: OSCORE security contexts (RFC 8613) in TOML.
//!
//! One `[[oscore]]` table per security context, its keys named after the input
//! parameters of RFC 8613 §3.2 (byte strings in hex, `""` for an empty one):
//!
//! ```toml
//! [[oscore]]
//! uri = "coap://127.0.0.1:5683/*"       # or a list: ["coap://h/a/*", "coap://h/b"]
//! sender_id = "01"
//! recipient_id = ""
//! master_secret = "0102030405060708090a0b0c0d0e0f10"
//! master_salt = "9e7ca92223786340"       # optional, default empty
//! id_context = "37cbf3210017a2d3"        # optional, default none
//! aead = "AES-CCM-16-64-128"             # optional: A128GCM, ChaCha20/Poly1305, or the COSE number
//! ```
//!
//! `uri` says where a context applies: a pattern matched against the request URI as
//! typed (`:5683` in a `coap://` URI is the same as no port), exactly or, with a
//! trailing `*`, as a prefix (the longest match wins). For
//! `corium get/put/post/…/observe` it selects the requests that are protected. For
//! `corium serve` it names the resources that require OSCORE (unprotected requests to
//! them get 4.01): a path pattern (`/oscore/*`), or a full URI whose path is used
//! (`coap://[::]/oscore/*` → `/oscore/*`); and it authorizes: a context reaches only
//! the resources that require OSCORE which its own patterns name (a protected 4.03
//! Forbidden for the others). Resources no pattern names stay open to everybody;
//! contexts set up by EDHOC reach every resource the file protects.
//!
//! Sender Sequence Numbers are persisted next to the file, in `FILE.seq` (RFC 8613
//! Appendix B.1.1, written atomically); a restarted server re-establishes its replay
//! windows with an Echo exchange (Appendix B.1.2). Use one credentials file per
//! process: two processes sharing it would reuse sequence numbers.
//!
//! # From aiocoap
//!
//! aiocoap's credentials JSON maps URI patterns to security context directories:
//!
//! ```json
//! {"coap://localhost/*": {"oscore": {"basedir": "client-ctx/"}}}
//! ```
//!
//! with `client-ctx/settings.json` (or `secret.json`) holding
//!
//! ```json
//! {"sender-id_hex": "01", "recipient-id_hex": "", "secret_hex": "0102…10",
//!  "salt_hex": "9e7ca92223786340", "id-context_hex": "…", "algorithm": "AES-CCM-16-64-128"}
//! ```
//!
//! The same context in Corium's file: `uri` = the JSON key, `sender_id` = `sender-id_hex`,
//! `recipient_id` = `recipient-id_hex`, `master_secret` = `secret_hex`, `master_salt` =
//! `salt_hex`, `id_context` = `id-context_hex`, `aead` = `algorithm` (the `_ascii`
//! variants of aiocoap's keys become their hex encoding). aiocoap's `window` (replay
//! window size) and `kdf-hashfun` have no counterpart: Corium uses 32 and SHA-256, the
//! RFC's defaults. aiocoap's `sequence.json` corresponds to `FILE.seq`; neither can be
//! copied to the other side. The peer of a context has the IDs swapped.

use std::fmt;
use std::path::{Path, PathBuf};

use corium::corium_oscore::{
    AeadAlgorithm, BlockwiseMode, SecurityContext, SecurityContextBuilder, SecurityContextSet,
};
use corium::{OscoreClient, OscoreServer, SequenceFile};

use crate::Failure;

/// The keys an `[[oscore]]` table may have.
const KEYS: &[&str] = &[
    "uri",
    "sender_id",
    "recipient_id",
    "master_secret",
    "master_salt",
    "id_context",
    "aead",
];

/// Most contexts a server keeps (the file's contexts, at least this many slots).
const MIN_SERVER_CONTEXTS: usize = 16;

/// One `[[oscore]]` table.
struct Context {
    uris: Vec<String>,
    sender_id: Vec<u8>,
    recipient_id: Vec<u8>,
    master_secret: Vec<u8>,
    master_salt: Vec<u8>,
    id_context: Option<Vec<u8>>,
    aead: AeadAlgorithm,
}

/// A loaded credentials file.
pub(crate) struct Credentials {
    path: PathBuf,
    oscore: Vec<Context>,
    /// `[[edhoc]]` tables (see `edhoc.rs`).
    edhoc: Vec<crate::edhoc::Entry>,
}

/// Names the file and the contexts, never the secrets.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("path", &self.path)
            .field(
                "oscore",
                &self.oscore.iter().map(|c| &c.uris).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Parses a hex string (`""` is the empty byte string).
fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// An AEAD by its COSE name (as aiocoap's `algorithm`) or number.
fn aead(name: &str) -> Option<AeadAlgorithm> {
    [
        AeadAlgorithm::AesCcm16_64_128,
        AeadAlgorithm::A128Gcm,
        AeadAlgorithm::ChaCha20Poly1305,
    ]
    .into_iter()
    .find(|a| a.to_string().eq_ignore_ascii_case(name))
    .or_else(|| name.parse().ok().and_then(AeadAlgorithm::from_cose_id))
}

/// Reads and checks a credentials file.
pub(crate) fn load(path: &Path) -> Result<Credentials, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::usage(format!(
            "cannot read credentials file {}: {e}",
            path.display()
        ))
    })?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<Credentials, Failure> {
    let bad = |msg: String| Failure::usage(format!("credentials file {}: {msg}", path.display()));
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad(e.message().to_owned()))?;
    if let Some(other) = table.keys().find(|k| *k != "oscore" && *k != "edhoc") {
        return Err(bad(format!(
            "unknown section {other:?} (expected [[oscore]] or [[edhoc]])"
        )));
    }
    let edhoc = match table.get("edhoc") {
        Some(v) => crate::edhoc::parse(v, &bad)?,
        None => Vec::new(),
    };
    let no_tables = Vec::new();
    let tables = match table.get("oscore") {
        None if !edhoc.is_empty() => &no_tables,
        None => return Err(bad("no [[oscore]] or [[edhoc]] table".to_owned())),
        Some(toml::Value::Array(a)) => a,
        Some(_) => {
            return Err(bad(
                "`oscore` must be an array of tables ([[oscore]])".to_owned()
            ))
        }
    };
    let mut oscore = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let which = format!("[[oscore]] #{}", i + 1);
        let Some(t) = t.as_table() else {
            return Err(bad(format!("{which} is not a table")));
        };
        if let Some(k) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(bad(format!(
                "{which}: unknown key {k:?} (known: {})",
                KEYS.join(", ")
            )));
        }
        let string = |key: &str| -> Result<Option<&str>, Failure> {
            match t.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(bad(format!("{which}: `{key}` must be a string"))),
            }
        };
        let bytes = |key: &str, required: bool| -> Result<Option<Vec<u8>>, Failure> {
            match string(key)? {
                Some(s) => hex(s.trim())
                    .map(Some)
                    .ok_or_else(|| bad(format!("{which}: `{key}` is not hex: {s:?}"))),
                None if required => Err(bad(format!("{which}: `{key}` is missing"))),
                None => Ok(None),
            }
        };
        let uris = match t.get("uri") {
            Some(toml::Value::String(s)) => vec![s.clone()],
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(format!("{which}: `uri` must be strings")))?,
            Some(_) => return Err(bad(format!("{which}: `uri` must be a string or a list"))),
            None => return Err(bad(format!("{which}: `uri` is missing"))),
        };
        if uris.is_empty() || uris.iter().any(String::is_empty) {
            return Err(bad(format!("{which}: `uri` is empty")));
        }
        let master_secret = bytes("master_secret", true)?.unwrap_or_default();
        if master_secret.is_empty() {
            return Err(bad(format!("{which}: `master_secret` is empty")));
        }
        let aead = match string("aead")? {
            None => AeadAlgorithm::default(),
            Some(name) => aead(name).ok_or_else(|| {
                bad(format!(
                    "{which}: unsupported aead {name:?} (AES-CCM-16-64-128, A128GCM, ChaCha20/Poly1305)"
                ))
            })?,
        };
        let ctx = Context {
            uris,
            sender_id: bytes("sender_id", true)?.unwrap_or_default(),
            recipient_id: bytes("recipient_id", true)?.unwrap_or_default(),
            master_secret,
            master_salt: bytes("master_salt", false)?.unwrap_or_default(),
            id_context: bytes("id_context", false)?,
            aead,
        };
        // The parameters are checked once here (ID lengths, equal IDs, …).
        ctx.builder()
            .build()
            .map_err(|e| bad(format!("{which}: {e}")))?;
        // RFC 8613 §3.3: a Sender ID is unique per Master Secret, Salt and ID Context;
        // two such contexts derive the same Sender Key and would repeat nonces.
        if let Some(j) = oscore.iter().position(|o: &Context| {
            o.master_secret == ctx.master_secret
                && o.master_salt == ctx.master_salt
                && o.id_context == ctx.id_context
                && o.sender_id == ctx.sender_id
        }) {
            return Err(bad(format!(
                "{which} has the Sender ID, Master Secret, Salt and ID Context of [[oscore]] #{}: \
                 both would derive the same Sender Key (RFC 8613 §3.3); list several `uri` \
                 patterns in one table instead",
                j + 1
            )));
        }
        oscore.push(ctx);
    }
    Ok(Credentials {
        path: path.to_owned(),
        oscore,
        edhoc,
    })
}

impl Context {
    /// The context's builder. Block options a peer puts in a message it protects are
    /// Inner (RFC 8613 §4.1.3.4.1, aiocoap's way); Corium's endpoint fragments the
    /// protected messages (outer block-wise) in either mode.
    fn builder(&self) -> SecurityContextBuilder {
        let mut b =
            SecurityContext::builder(&self.master_secret, &self.sender_id, &self.recipient_id)
                .master_salt(&self.master_salt)
                .aead(self.aead)
                .blockwise(BlockwiseMode::Inner);
        if let Some(c) = &self.id_context {
            b = b.id_context(c);
        }
        b
    }

    fn key(&self) -> String {
        SequenceFile::key(
            &self.sender_id,
            &self.recipient_id,
            self.id_context.as_deref(),
        )
    }
}

/// The path pattern of a server-side `uri`: the path of a full URI, or the value itself.
fn path_pattern(uri: &str) -> String {
    let Some((_, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    match rest.find('/') {
        Some(i) => rest[i..].to_owned(),
        // `coap://host*` or `coap://*`: every resource; `coap://host`: the root.
        None if rest.ends_with('*') => "*".to_owned(),
        None => "/".to_owned(),
    }
}

impl Credentials {
    /// `FILE.seq`.
    fn sequence_file(&self) -> Result<SequenceFile, Failure> {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".seq");
        SequenceFile::open(PathBuf::from(name)).map_err(|e| {
            Failure::other(format!(
                "cannot read the sequence number file of {}: {e}",
                self.path.display()
            ))
        })
    }

    fn build(&self, ctx: &Context, file: &SequenceFile) -> Result<SecurityContext, Failure> {
        file.apply(ctx.builder(), &ctx.key())
            .map_err(|e| {
                Failure::other(format!(
                    "cannot write the sequence number file {}: {e}",
                    file.path().display()
                ))
            })?
            .build()
            .map_err(|e| Failure::usage(format!("credentials file {}: {e}", self.path.display())))
    }

    /// The context of the first `[[oscore]]` table whose `uri` patterns match `uri`,
    /// for a caller that protects messages itself (`corium bench --credentials`). Its
    /// sequence numbers persist in `FILE.seq` like those of [`client`](Self::client).
    pub(crate) fn context_for(&self, uri: &str) -> Result<Option<SecurityContext>, Failure> {
        let file = self.sequence_file()?;
        for ctx in &self.oscore {
            // A throw-away context only to ask whether the patterns match.
            let Ok(probe) = ctx.builder().build() else {
                continue;
            };
            if OscoreClient::new()
                .context_patterns(&ctx.uris, probe)
                .protects(uri)
            {
                return self.build(ctx, &file).map(Some);
            }
        }
        Ok(None)
    }

    /// The client side: each context protects the requests its `uri` patterns match
    /// (one context, shared by all of its patterns).
    pub(crate) fn client(&self, uri: &str) -> Result<OscoreClient, Failure> {
        let file = self.sequence_file()?;
        let mut client = OscoreClient::new();
        for ctx in &self.oscore {
            client = client.context_patterns(&ctx.uris, self.build(ctx, &file)?);
        }
        if !client.protects(uri) && crate::edhoc::entry_for(&self.edhoc, uri).is_none() {
            eprintln!(
                "warning: no [[oscore]] uri in {} matches {uri}; the request is not protected",
                self.path.display()
            );
        }
        Ok(client)
    }

    /// The `[[edhoc]]` tables.
    pub(crate) fn edhoc(&self) -> &[crate::edhoc::Entry] {
        &self.edhoc
    }

    /// The server side: every context, and the resources that require OSCORE.
    pub(crate) fn server(&self) -> Result<(OscoreServer, Vec<String>), Failure> {
        let file = self.sequence_file()?;
        let mut set = SecurityContextSet::new(
            self.oscore.len().max(MIN_SERVER_CONTEXTS)
                + if self.edhoc.is_empty() {
                    0
                } else {
                    corium::edhoc::DEFAULT_MAX_SESSIONS
                },
        );
        let mut patterns = Vec::new();
        // EDHOC-derived contexts (RFC 9528 Appendix A.1) protect these resources too.
        for uri in self.edhoc.iter().flat_map(|e| &e.uris) {
            let p = path_pattern(uri);
            if !patterns.contains(&p) {
                patterns.push(p);
            }
        }
        for ctx in &self.oscore {
            set.insert(self.build(ctx, &file)?).map_err(|e| {
                Failure::usage(format!(
                    "credentials file {}: {e} (sender {}, recipient {})",
                    self.path.display(),
                    ctx.key(),
                    ctx.uris.join(", ")
                ))
            })?;
            for uri in &ctx.uris {
                let p = path_pattern(uri);
                if !patterns.contains(&p) {
                    patterns.push(p);
                }
            }
        }
        let mut server = OscoreServer::new(set);
        for p in &patterns {
            server = server.require(p);
        }
        // Each context reaches what its own patterns name.
        for ctx in &self.oscore {
            for uri in &ctx.uris {
                server = server.authorize(
                    &ctx.recipient_id,
                    ctx.id_context.as_deref(),
                    &path_pattern(uri),
                );
            }
        }
        Ok((server, patterns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Credentials, String> {
        parse(Path::new("test.toml"), text).map_err(|f| f.message)
    }

    const GOOD: &str = r#"
[[oscore]]
uri = "coap://127.0.0.1:5683/*"
sender_id = ""
recipient_id = "01"
master_secret = "0102030405060708090a0b0c0d0e0f10"
master_salt = "9e7ca92223786340"

[[oscore]]
uri = ["coap://h/a/*", "coap://h/b"]
sender_id = "02"
recipient_id = "03"
master_secret = "AABB"
id_context = "37cbf3210017a2d3"
aead = "A128GCM"
"#;

    #[test]
    fn parses_the_documented_format() {
        let c = parsed(GOOD).unwrap();
        assert_eq!(c.oscore.len(), 2);
        assert_eq!(c.oscore[0].recipient_id, [1]);
        assert_eq!(c.oscore[0].master_salt.len(), 8);
        assert_eq!(c.oscore[0].aead, AeadAlgorithm::AesCcm16_64_128);
        assert_eq!(c.oscore[1].uris.len(), 2);
        assert_eq!(c.oscore[1].aead, AeadAlgorithm::A128Gcm);
        assert_eq!(
            c.oscore[1].id_context.as_deref(),
            Some(&[0x37, 0xcb, 0xf3, 0x21, 0x00, 0x17, 0xa2, 0xd3][..])
        );
        assert!(!format!("{c:?}").contains("0102"), "no secrets in Debug");
    }

    #[test]
    fn errors_name_the_table_and_key() {
        let base = "[[oscore]]\nuri = \"coap://h/*\"\nsender_id = \"01\"\nrecipient_id = \"02\"\nmaster_secret = \"00\"\n";
        assert!(parsed(base).is_ok());
        let e = parsed(&format!("{base}typo = 1\n")).unwrap_err();
        assert!(e.contains("#1") && e.contains("\"typo\""), "{e}");
        let e = parsed(&base.replace("\"01\"", "\"0g\"")).unwrap_err();
        assert!(e.contains("sender_id") && e.contains("not hex"), "{e}");
        let e = parsed(&base.replace("recipient_id = \"02\"\n", "")).unwrap_err();
        assert!(e.contains("recipient_id") && e.contains("missing"), "{e}");
        let e = parsed(&base.replace("\"02\"", "\"01\"")).unwrap_err();
        assert!(e.contains("equal"), "{e}");
        let e = parsed(&format!("{base}aead = \"AES-CCM-16-64-256\"\n")).unwrap_err();
        assert!(e.contains("unsupported aead"), "{e}");
        assert!(parsed(&format!("{base}aead = \"24\"\n")).is_ok());
        assert!(parsed(&format!("{base}aead = \"chacha20/poly1305\"\n")).is_ok());
        let e = parsed(&format!("{base}{}", base.replace("\"02\"", "\"03\""))).unwrap_err();
        assert!(e.contains("same Sender Key") && e.contains("#2"), "{e}");
        let e = parsed("[other]\n").unwrap_err();
        assert!(e.contains("unknown section"), "{e}");
        let e = parsed("oscore = 1\n").unwrap_err();
        assert!(e.contains("array of tables"), "{e}");
        let e = parsed("[[oscore]\n").unwrap_err();
        assert!(e.starts_with("credentials file test.toml: "), "{e}");
    }

    #[test]
    fn server_paths() {
        assert_eq!(path_pattern("coap://127.0.0.1:5683/oscore/*"), "/oscore/*");
        assert_eq!(path_pattern("coap://[::1]/x"), "/x");
        assert_eq!(path_pattern("coap://host*"), "*");
        assert_eq!(path_pattern("coap://host"), "/");
        assert_eq!(path_pattern("/a/*"), "/a/*");
        assert_eq!(hex(""), Some(vec![]));
        assert_eq!(hex("0aFF"), Some(vec![10, 255]));
        assert_eq!(hex("abc"), None);
    }
}
