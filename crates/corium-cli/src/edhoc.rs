//! EDHOC (RFC 9528) in the CLI: `[[edhoc]]` tables of the credentials file,
//! `corium serve` answering EDHOC at `/.well-known/edhoc`, `corium get` running EDHOC
//! before its first protected request, and `corium edhoc keygen`.
//!
//! ```toml
//! [[edhoc]]
//! uri = "coap://127.0.0.1:5683/*"     # or a list, as in [[oscore]]
//! private_key = "…"                   # 32-byte P-256 private key (hex)
//! own_cred = "a2026b…"                # own CCS credential (hex CBOR)
//! own_cred_style = "by-key-id"        # optional: or "by-value" (ID_CRED_x = {14: CCS})
//! peer_cred = "a2026b…"               # the peer's CCS (hex CBOR), or a list of them
//! use_combined_edhoc = true           # optional (client): message_3 with the first
//!                                     # OSCORE request (RFC 9668), as aiocoap; false:
//!                                     # a second POST, message_4 in the response
//! ```
//!
//! Client (`corium get --credentials FILE URI`): when an `[[edhoc]]` `uri` matches the
//! request URI (longest match, like `[[oscore]]`), EDHOC runs first against the
//! request's origin (two POSTs to `/.well-known/edhoc`, RFC 9528 Appendix A.2), and
//! the request is protected with the derived OSCORE context (Appendix A.1).
//!
//! Server (`corium serve --credentials FILE`): EDHOC is answered with the first table's
//! key and credential, accepting the `peer_cred` of every table; the resources the
//! `uri` patterns name require OSCORE, with a static or an EDHOC-derived context. The
//! combined request (RFC 9668, aiocoap's default) is accepted.
//!
//! # From aiocoap
//!
//! aiocoap's `edhoc-oscore` credentials (EDN, `aiocoap-client --credentials x.diag`):
//!
//! ```text
//! {"coap://host/*": {"edhoc-oscore": {"suite": 2, "method": 3,
//!     "own_cred_style": "by-key-id",
//!     "private_key": {1: 2, -1: 1, -4: h'<private_key>'},
//!     "own_cred": {14: <own_cred as a map>},
//!     "peer_cred": {14: <peer_cred as a map>}}}}
//! ```
//!
//! The CCS bytes must be the same on both sides (they enter the transcript): aiocoap
//! encodes the maps deterministically (cbor2 `canonical=True`), which is the layout
//! `corium edhoc keygen` produces and prints in EDN next to the hex.

use std::time::Duration;

use corium::edhoc::corium_edhoc::{Initiator, OwnCredential, PeerCredentials, Responder};
use corium::edhoc::EdhocServer;
use corium::OscoreClient;

use crate::Failure;

/// The keys an `[[edhoc]]` table may have.
const KEYS: &[&str] = &[
    "uri",
    "private_key",
    "own_cred",
    "own_cred_style",
    "peer_cred",
    "use_combined_edhoc",
];

/// One `[[edhoc]]` table.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) uris: Vec<String>,
    own: OwnCredential,
    peers: PeerCredentials,
    /// Send message_3 with the first OSCORE request (RFC 9668).
    combined: bool,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("uris", &self.uris)
            .finish_non_exhaustive()
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses the `edhoc` array of a credentials file; `bad` wraps a message into the
/// file's error.
pub(crate) fn parse(
    value: &toml::Value,
    bad: &dyn Fn(String) -> Failure,
) -> Result<Vec<Entry>, Failure> {
    let Some(tables) = value.as_array() else {
        return Err(bad(
            "`edhoc` must be an array of tables ([[edhoc]])".to_owned()
        ));
    };
    let mut out = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let which = format!("[[edhoc]] #{}", i + 1);
        let Some(t) = t.as_table() else {
            return Err(bad(format!("{which} is not a table")));
        };
        if let Some(k) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(bad(format!(
                "{which}: unknown key {k:?} (known: {})",
                KEYS.join(", ")
            )));
        }
        let strings = |key: &str| -> Result<Vec<String>, Failure> {
            match t.get(key) {
                Some(toml::Value::String(s)) => Ok(vec![s.clone()]),
                Some(toml::Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad(format!("{which}: `{key}` must be strings"))),
                Some(_) => Err(bad(format!("{which}: `{key}` must be a string or a list"))),
                None => Err(bad(format!("{which}: `{key}` is missing"))),
            }
        };
        let one_hex = |key: &str| -> Result<Vec<u8>, Failure> {
            match t.get(key) {
                Some(toml::Value::String(s)) => {
                    hex(s).ok_or_else(|| bad(format!("{which}: `{key}` is not hex")))
                }
                Some(_) => Err(bad(format!("{which}: `{key}` must be a hex string"))),
                None => Err(bad(format!("{which}: `{key}` is missing"))),
            }
        };
        let uris = strings("uri")?;
        if uris.is_empty() || uris.iter().any(String::is_empty) {
            return Err(bad(format!("{which}: `uri` is empty")));
        }
        let key = one_hex("private_key")?;
        let ccs = one_hex("own_cred")?;
        let mut own = OwnCredential::new(&key, &ccs)
            .map_err(|e| bad(format!("{which}: private_key / own_cred: {e}")))?;
        match t.get("own_cred_style").map(|v| v.as_str()) {
            None | Some(Some("by-key-id")) => {
                if own.kid().is_none() {
                    own = own
                        .by_value(true)
                        .map_err(|e| bad(format!("{which}: {e}")))?;
                }
            }
            Some(Some("by-value")) => {
                own = own
                    .by_value(true)
                    .map_err(|e| bad(format!("{which}: {e}")))?;
            }
            Some(_) => {
                return Err(bad(format!(
                    "{which}: `own_cred_style` must be \"by-key-id\" or \"by-value\""
                )))
            }
        }
        let mut peers = PeerCredentials::new();
        for (j, p) in strings("peer_cred")?.iter().enumerate() {
            let bytes =
                hex(p).ok_or_else(|| bad(format!("{which}: peer_cred #{} is not hex", j + 1)))?;
            peers
                .add_ccs(&bytes)
                .map_err(|e| bad(format!("{which}: peer_cred #{}: {e}", j + 1)))?;
        }
        let combined = match t.get("use_combined_edhoc") {
            None => true,
            Some(toml::Value::Boolean(b)) => *b,
            Some(_) => {
                return Err(bad(format!(
                    "{which}: `use_combined_edhoc` must be true or false"
                )))
            }
        };
        out.push(Entry {
            uris,
            own,
            peers,
            combined,
        });
    }
    Ok(out)
}

/// Whether `pattern` (exact, or a prefix with a trailing `*`) matches `uri`, with the
/// default port 5683 of `coap://` equal to none (as the `[[oscore]]` patterns).
fn matches(pattern: &str, uri: &str) -> bool {
    let norm = |s: &str| s.replacen(":5683/", "/", 1).replacen(":5683*", "*", 1);
    let (pattern, uri) = (norm(pattern), norm(uri));
    match pattern.strip_suffix('*') {
        Some(prefix) => uri.starts_with(prefix),
        None => pattern == uri,
    }
}

/// The entry whose pattern matches `uri` best (longest), and that pattern.
pub(crate) fn entry_for<'a>(entries: &'a [Entry], uri: &str) -> Option<(&'a Entry, &'a str)> {
    entries
        .iter()
        .flat_map(|e| e.uris.iter().map(move |u| (e, u.as_str())))
        .filter(|(_, u)| matches(u, uri))
        .max_by_key(|(_, u)| u.len())
}

/// The initiator of the `[[edhoc]]` entry whose pattern matches `uri` best.
pub(crate) fn initiator_for(entries: &[Entry], uri: &str) -> Option<Initiator> {
    let (entry, _) = entry_for(entries, uri)?;
    Some(Initiator::new(entry.own.clone(), entry.peers.clone()))
}

/// The origin (`scheme://authority`) of a URI.
pub(crate) fn origin(uri: &str) -> &str {
    let Some(i) = uri.find("://") else {
        return uri;
    };
    let rest = &uri[i + 3..];
    let end = rest.find(['/', '?', '#']).map_or(uri.len(), |j| i + 3 + j);
    &uri[..end]
}

/// The client side: runs EDHOC over `plain` against the origin of `uri` when an
/// `[[edhoc]]` entry matches it, and adds the derived OSCORE context to `oscore` for
/// the entry's patterns. Returns `oscore` unchanged when no entry matches.
pub(crate) async fn client(
    entries: &[Entry],
    plain: &corium::Client,
    uri: &str,
    oscore: OscoreClient,
) -> Result<OscoreClient, Failure> {
    let Some((entry, _)) = entry_for(entries, uri) else {
        return Ok(oscore);
    };
    let initiator = Initiator::new(entry.own.clone(), entry.peers.clone());
    let failed = |e: corium::Error| Failure::other(format!("EDHOC with {}: {e}", origin(uri)));
    let limit = Duration::from_secs(60);
    let timed_out = |_| Failure::other("EDHOC timed out".to_owned());
    let (session, message_3) = if entry.combined {
        let (session, m3) = tokio::time::timeout(
            limit,
            corium::edhoc::establish_combined(plain, origin(uri), &initiator),
        )
        .await
        .map_err(timed_out)?
        .map_err(failed)?;
        (session, Some(m3))
    } else {
        let session = tokio::time::timeout(
            limit,
            corium::edhoc::establish(plain, origin(uri), &initiator),
        )
        .await
        .map_err(timed_out)?
        .map_err(failed)?;
        (session, None)
    };
    tracing::debug!(?session, "EDHOC completed");
    let ctx = session
        .oscore_context()
        .blockwise(corium::corium_oscore::BlockwiseMode::Inner)
        .build()
        .map_err(|e| Failure::other(format!("OSCORE context from EDHOC: {e}")))?;
    Ok(match message_3 {
        Some(m3) => oscore.edhoc_context(&entry.uris, ctx, m3),
        None => oscore.context_patterns(&entry.uris, ctx),
    })
}

/// The server side: the responder of the first entry, accepting every entry's peers.
pub(crate) fn server(entries: &[Entry]) -> Result<Option<EdhocServer>, Failure> {
    let Some(first) = entries.first() else {
        return Ok(None);
    };
    if entries.iter().any(|e| e.own.ccs() != first.own.ccs()) {
        return Err(Failure::usage(
            "[[edhoc]] tables with different own_cred: a server answers with one".to_owned(),
        ));
    }
    let mut peers = PeerCredentials::new();
    for e in entries {
        peers = merge(peers, &e.peers);
    }
    Ok(Some(EdhocServer::new(Responder::new(
        first.own.clone(),
        peers,
    ))))
}

fn merge(mut into: PeerCredentials, from: &PeerCredentials) -> PeerCredentials {
    for ccs in from.ccs() {
        // Already validated when the file was parsed.
        let _ = into.add_ccs(ccs);
    }
    into
}

/// `corium edhoc`: credential helpers.
#[derive(Debug, clap::Args)]
pub(crate) struct EdhocArgs {
    #[command(subcommand)]
    command: EdhocCommand,
}

#[derive(Debug, clap::Subcommand)]
enum EdhocCommand {
    /// Print a fresh P-256 key and its CCS credential as `[[edhoc]]` keys (TOML), with
    /// the same credential in aiocoap's EDN.
    Keygen {
        /// The credential's kid (hex), 1 to 16 bytes.
        #[arg(long, default_value = "01")]
        kid: String,
        /// The credential's subject name.
        #[arg(long, default_value = "")]
        subject: String,
    },
}

/// Runs `corium edhoc …`.
pub(crate) fn run(args: EdhocArgs) -> Result<u8, Failure> {
    match args.command {
        EdhocCommand::Keygen { kid, subject } => {
            let kid = hex(&kid)
                .filter(|k| !k.is_empty() && k.len() <= 16)
                .ok_or_else(|| Failure::usage("--kid must be 1 to 16 bytes of hex".to_owned()))?;
            let (key, ccs) = OwnCredential::generate(&kid, &subject)
                .map_err(|e| Failure::usage(e.to_string()))?;
            print!("{}", keygen_text(&key, &ccs, &kid, &subject));
            Ok(crate::EXIT_OK)
        }
    }
}

fn keygen_text(key: &[u8], ccs: &[u8], kid: &[u8], subject: &str) -> String {
    // The CCS layout of `OwnCredential::generate`: x and y are its last 2 × 32 bytes
    // after their 3-byte heads.
    let y = &ccs[ccs.len() - 32..];
    let x = &ccs[ccs.len() - 67..ccs.len() - 35];
    let edn_cred = format!(
        "{{14: {{2: {subject:?}, 8: {{1: {{1: 2, 2: h'{}', -1: 1, -2: h'{}', -3: h'{}'}}}}}}}}",
        to_hex(kid),
        to_hex(x),
        to_hex(y)
    );
    format!(
        "# EDHOC credential (RFC 9528; cipher suite 2, method 3), kid h'{kid}'\n\
         # own side ([[edhoc]] of this key's owner):\n\
         private_key = \"{key}\"\n\
         own_cred = \"{ccs}\"\n\
         # the peer's [[edhoc]]: peer_cred = \"{ccs}\"\n\
         # aiocoap (edhoc-oscore, EDN):\n\
         #   \"private_key\": {{1: 2, -1: 1, -4: h'{key}'}},\n\
         #   \"own_cred\": {edn_cred},\n",
        kid = to_hex(kid),
        key = to_hex(key),
        ccs = to_hex(ccs),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(msg: String) -> Failure {
        Failure::usage(msg)
    }

    #[test]
    fn parses_and_matches() {
        let (key, ccs) = OwnCredential::generate(b"\x01", "me").unwrap();
        let (_, peer) = OwnCredential::generate(b"\x02", "you").unwrap();
        let text = format!(
            "[[edhoc]]\nuri = \"coap://127.0.0.1/*\"\nprivate_key = \"{}\"\nown_cred = \"{}\"\npeer_cred = \"{}\"\n",
            to_hex(&key),
            to_hex(&ccs),
            to_hex(&peer)
        );
        let table: toml::Table = text.parse().unwrap();
        let entries = parse(&table["edhoc"], &bad).unwrap();
        assert_eq!(entries.len(), 1);
        assert!(entry_for(&entries, "coap://127.0.0.1:5683/x").is_some());
        assert!(entry_for(&entries, "coap://127.0.0.2/x").is_none());
        assert!(server(&entries).unwrap().is_some());
        assert_eq!(
            origin("coap://127.0.0.1:5683/a/b?c"),
            "coap://127.0.0.1:5683"
        );
        assert_eq!(origin("coap://[::1]"), "coap://[::1]");

        let broken = text.replace("own_cred = \"a2", "own_cred = \"a3");
        let table: toml::Table = broken.parse().unwrap();
        let err = parse(&table["edhoc"], &bad).unwrap_err();
        assert!(err.message.contains("own_cred"), "{}", err.message);
        let table: toml::Table = text
            .replace("peer_cred", "peer_credential")
            .parse()
            .unwrap();
        assert!(parse(&table["edhoc"], &bad)
            .unwrap_err()
            .message
            .contains("unknown key"));
    }

    #[test]
    fn keygen_prints_a_usable_credential() {
        let (key, ccs) = OwnCredential::generate(b"\x2b", "dev").unwrap();
        let text = keygen_text(&key, &ccs, b"\x2b", "dev");
        assert!(text.contains(&format!("private_key = \"{}\"", to_hex(&key))));
        assert!(text.contains("2: h'2b'"));
        assert!(text.contains("{2: \"dev\", 8: {1: {1: 2,"));
        let x = &ccs[20..52];
        assert_eq!(ccs[17..20], [0x21, 0x58, 0x20]);
        assert!(text.contains(&format!("-2: h'{}'", to_hex(x))));
    }
}
