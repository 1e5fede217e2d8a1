//! Pure formatting helpers for the `corium` CLI: payload rendering, hex
//! dumps, the `discover` link table and `-O NUM,VALUE` option parsing.
//!
//! Everything here is a pure function over bytes/strings (no I/O) and never
//! panics on untrusted input: response payloads and link-format documents
//! come straight from the network.

use std::fmt::Write as _;

use minicbor::data::Token;
use minicbor::Decoder;

// ---------------------------------------------------------------------------
// Payload rendering
// ---------------------------------------------------------------------------

/// How a response payload should be shown on stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rendered {
    /// Human-readable text, ready to print (no trailing newline added).
    Text(String),
    /// Not displayable as text: the caller prints a hex dump or writes the
    /// raw bytes to a file.
    Binary,
}

/// Rendering strategy chosen from the Content-Format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// JSON (`application/json` and `+json` media types).
    Json,
    /// A single CBOR data item (`application/cbor` and `+cbor` media types).
    Cbor,
    /// A CBOR sequence (RFC 8742; `application/cbor-seq`, `+cbor-seq`).
    CborSeq,
    /// `application/link-format` (RFC 6690).
    Link,
    /// UTF-8 text (`text/plain`, XML).
    Text,
    /// Anything else: shown as binary.
    Other,
}

/// Maps a CoAP Content-Format number (RFC 7252 §12.3, IANA "CoAP
/// Content-Formats" registry) to a rendering strategy.
fn kind_of(content_format: u16) -> Kind {
    match content_format {
        // text/plain;charset=utf-8 (RFC 7252 §12.3), application/xml,
        // application/senml+xml, application/sensml+xml (RFC 8428 §12.3).
        0 | 41 | 310 | 311 => Kind::Text,
        // application/link-format (RFC 6690 §7.2).
        40 => Kind::Link,
        // application/json (RFC 7252 §12.3), json-patch+json,
        // merge-patch+json (RFC 8132 §6), senml+json, sensml+json
        // (RFC 8428), coap-group+json (RFC 7390), aif+json (RFC 9237),
        // senml-etch+json (RFC 8790), td+json, tm+json (WoT),
        // vnd.oma.lwm2m+json.
        50 | 51 | 52 | 110 | 111 | 256 | 291 | 320 | 432 | 433 | 11543 => Kind::Json,
        // application/cbor-seq (RFC 8742), edhoc+cbor-seq,
        // cid-edhoc+cbor-seq (RFC 9528 §10.9), missing-blocks+cbor-seq
        // (RFC 9177 §12.3).
        63 | 64 | 65 | 272 => Kind::CborSeq,
        // COSE (16-18, 96-98, 101-102), ace+cbor (19), application/cbor
        // (60), cwt (61), multipart-core (62), senml+cbor, sensml+cbor
        // (RFC 8428), yang-data+cbor;id=sid (140), concise-problem-details
        // +cbor (257), swid+cbor (258), dots+cbor (271), aif+cbor (290),
        // senml-etch+cbor (322), yang-data+cbor (340, 341),
        // vnd.ocf+cbor (10000), vnd.oma.lwm2m+cbor (11544).
        16..=19
        | 60..=62
        | 96..=98
        | 101
        | 102
        | 112
        | 113
        | 140
        | 257
        | 258
        | 271
        | 290
        | 322
        | 340
        | 341
        | 10000
        | 11544 => Kind::Cbor,
        _ => Kind::Other,
    }
}

/// Renders a response payload for `corium get` according to its
/// Content-Format option (RFC 7252 §5.10.3).
///
/// * JSON formats: pretty-printed with a 2-space indent; invalid JSON falls
///   back to the raw text when it is UTF-8, else [`Rendered::Binary`].
/// * CBOR formats: RFC 8949 §8 diagnostic notation, containers broken over
///   indented lines when they do not fit in 70 columns; CBOR sequences
///   (RFC 8742) print one item per line. Invalid CBOR is binary.
/// * `application/link-format`: one link per line.
/// * Text formats, and no Content-Format when the payload is UTF-8 without
///   control characters other than `\n`, `\r`, `\t`: the text as is.
/// * Everything else: [`Rendered::Binary`].
///
/// An empty payload is always `Text("")`.
pub(crate) fn render_payload(payload: &[u8], content_format: Option<u16>) -> Rendered {
    if payload.is_empty() {
        return Rendered::Text(String::new());
    }
    let kind = match content_format {
        Some(cf) => kind_of(cf),
        None => {
            return match std::str::from_utf8(payload) {
                Ok(s) if is_plain_text(s) => Rendered::Text(s.to_owned()),
                _ => Rendered::Binary,
            }
        }
    };
    match kind {
        Kind::Json => match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(value) => match serde_json::to_string_pretty(&value) {
                Ok(s) => Rendered::Text(s),
                Err(_) => utf8_or_binary(payload),
            },
            Err(_) => utf8_or_binary(payload),
        },
        Kind::Cbor => match cbor_diag(payload, false) {
            Some(s) => Rendered::Text(s),
            None => Rendered::Binary,
        },
        Kind::CborSeq => match cbor_diag(payload, true) {
            Some(s) => Rendered::Text(s),
            None => Rendered::Binary,
        },
        Kind::Link => match std::str::from_utf8(payload) {
            Ok(s) => Rendered::Text(split_links(s).join("\n")),
            Err(_) => Rendered::Binary,
        },
        Kind::Text => utf8_or_binary(payload),
        Kind::Other => Rendered::Binary,
    }
}

/// `Text` when the bytes are UTF-8, else `Binary`.
fn utf8_or_binary(payload: &[u8]) -> Rendered {
    match std::str::from_utf8(payload) {
        Ok(s) => Rendered::Text(s.to_owned()),
        Err(_) => Rendered::Binary,
    }
}

/// True when `s` has no control characters other than `\n`, `\r`, `\t`.
fn is_plain_text(s: &str) -> bool {
    s.chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}

// ---------------------------------------------------------------------------
// CBOR diagnostic notation (RFC 8949 §8, RFC 8610 Appendix G)
// ---------------------------------------------------------------------------

/// Maximum nesting depth accepted when rendering CBOR; deeper input is
/// treated as undisplayable (protects the stack against hostile payloads).
const MAX_CBOR_DEPTH: usize = 128;

/// Lines whose compact rendering is shorter than this stay on one line.
const DIAG_WIDTH: usize = 70;

/// A decoded CBOR data item, ready for layout.
#[derive(Debug)]
enum Diag {
    /// A scalar (or indefinite-length string) already in diagnostic notation.
    Atom(String),
    /// An array; `indef` for indefinite length (`[_ ...]`).
    Array { items: Vec<Diag>, indef: bool },
    /// A map; `indef` for indefinite length (`{_ ...}`).
    Map {
        entries: Vec<(Diag, Diag)>,
        indef: bool,
    },
    /// A tagged item (`tag(item)`, RFC 8949 §8).
    Tagged(u64, Box<Diag>),
}

/// Decodes `payload` as one CBOR item (or, with `seq`, a CBOR sequence per
/// RFC 8742) and renders it in diagnostic notation. `None` when the input is
/// not well-formed (or, for a single item, has trailing bytes).
fn cbor_diag(payload: &[u8], seq: bool) -> Option<String> {
    let mut dec = Decoder::new(payload);
    let mut lines = Vec::new();
    while dec.position() < payload.len() {
        let item = parse_cbor_item(&mut dec, 0)?;
        let mut out = String::new();
        layout(&item, 0, 0, &mut out);
        lines.push(out);
        if !seq {
            break;
        }
    }
    if dec.position() != payload.len() {
        return None;
    }
    Some(lines.join("\n"))
}

/// Reads the next token and parses the data item it starts.
fn parse_cbor_item(dec: &mut Decoder<'_>, depth: usize) -> Option<Diag> {
    let tok = dec.decode::<Token<'_>>().ok()?;
    parse_cbor_from(tok, dec, depth)
}

/// Parses the data item starting with `tok` (already consumed).
fn parse_cbor_from(tok: Token<'_>, dec: &mut Decoder<'_>, depth: usize) -> Option<Diag> {
    if depth >= MAX_CBOR_DEPTH {
        return None;
    }
    let atom = |s: String| Some(Diag::Atom(s));
    match tok {
        Token::Bool(b) => atom(b.to_string()),
        Token::U8(n) => atom(n.to_string()),
        Token::U16(n) => atom(n.to_string()),
        Token::U32(n) => atom(n.to_string()),
        Token::U64(n) => atom(n.to_string()),
        Token::I8(n) => atom(n.to_string()),
        Token::I16(n) => atom(n.to_string()),
        Token::I32(n) => atom(n.to_string()),
        Token::I64(n) => atom(n.to_string()),
        Token::Int(n) => atom(n.to_string()),
        // Half and single precision both arrive as f32 (exactly).
        Token::F16(x) | Token::F32(x) => atom(diag_float(&format!("{x:?}"))),
        Token::F64(x) => atom(diag_float(&format!("{x:?}"))),
        Token::Bytes(b) => atom(diag_bytes(b)),
        Token::String(s) => atom(diag_text(s)),
        Token::Simple(n) => atom(format!("simple({n})")),
        Token::Null => atom("null".to_owned()),
        Token::Undefined => atom("undefined".to_owned()),
        Token::Tag(t) => {
            let inner = parse_cbor_item(dec, depth + 1)?;
            Some(Diag::Tagged(u64::from(t), Box::new(inner)))
        }
        Token::Array(n) => {
            // No pre-allocation from the untrusted length: each iteration
            // consumes input, so the loop is bounded by the payload size.
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(parse_cbor_item(dec, depth + 1)?);
            }
            Some(Diag::Array {
                items,
                indef: false,
            })
        }
        Token::Map(n) => {
            let mut entries = Vec::new();
            for _ in 0..n {
                let k = parse_cbor_item(dec, depth + 1)?;
                let v = parse_cbor_item(dec, depth + 1)?;
                entries.push((k, v));
            }
            Some(Diag::Map {
                entries,
                indef: false,
            })
        }
        Token::BeginArray => {
            let mut items = Vec::new();
            loop {
                match dec.decode::<Token<'_>>().ok()? {
                    Token::Break => break,
                    t => items.push(parse_cbor_from(t, dec, depth + 1)?),
                }
            }
            Some(Diag::Array { items, indef: true })
        }
        Token::BeginMap => {
            let mut entries = Vec::new();
            loop {
                match dec.decode::<Token<'_>>().ok()? {
                    Token::Break => break,
                    t => {
                        let k = parse_cbor_from(t, dec, depth + 1)?;
                        let v = parse_cbor_item(dec, depth + 1)?;
                        entries.push((k, v));
                    }
                }
            }
            Some(Diag::Map {
                entries,
                indef: true,
            })
        }
        // RFC 8949 §3.2.3: chunks of an indefinite-length string must be
        // definite-length strings of the same major type.
        Token::BeginBytes => {
            let mut chunks = Vec::new();
            loop {
                match dec.decode::<Token<'_>>().ok()? {
                    Token::Break => break,
                    Token::Bytes(b) => chunks.push(diag_bytes(b)),
                    _ => return None,
                }
            }
            atom(diag_chunks(&chunks, "''_"))
        }
        Token::BeginString => {
            let mut chunks = Vec::new();
            loop {
                match dec.decode::<Token<'_>>().ok()? {
                    Token::Break => break,
                    Token::String(s) => chunks.push(diag_text(s)),
                    _ => return None,
                }
            }
            atom(diag_chunks(&chunks, "\"\"_"))
        }
        // A stray "break" outside an indefinite-length item.
        Token::Break => None,
    }
}

/// Diagnostic notation of a float (RFC 8949 §8: `1.5`, `1.0e+300`,
/// `Infinity`, `-Infinity`, `NaN`) from Rust's shortest round-trip `{:?}`
/// rendering of the value (`1e300`, `NaN`, `inf`, ...).
fn diag_float(debug: &str) -> String {
    match debug {
        "NaN" => "NaN".to_owned(),
        "inf" => "Infinity".to_owned(),
        "-inf" => "-Infinity".to_owned(),
        _ => match debug.split_once('e') {
            Some((mantissa, exp)) => {
                let dot = if mantissa.contains('.') { "" } else { ".0" };
                let sign = if exp.starts_with('-') { "" } else { "+" };
                format!("{mantissa}{dot}e{sign}{exp}")
            }
            None => debug.to_owned(),
        },
    }
}

/// `h'0102ff'` (RFC 8949 §8).
fn diag_bytes(b: &[u8]) -> String {
    let mut s = String::with_capacity(3 + 2 * b.len());
    s.push_str("h'");
    for byte in b {
        let _ = write!(s, "{byte:02x}");
    }
    s.push('\'');
    s
}

/// A text string with JSON escaping (RFC 8949 §8 uses JSON string syntax).
fn diag_text(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// `(_ chunk, chunk)` for indefinite-length strings; `empty` when there are
/// no chunks (RFC 8949 §8.1: `''_` / `""_`).
fn diag_chunks(chunks: &[String], empty: &str) -> String {
    if chunks.is_empty() {
        empty.to_owned()
    } else {
        format!("(_ {})", chunks.join(", "))
    }
}

/// Single-line rendering of `d`.
fn compact(d: &Diag, out: &mut String) {
    match d {
        Diag::Atom(s) => out.push_str(s),
        Diag::Array { items, indef } => {
            out.push_str(if *indef { "[_ " } else { "[" });
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                compact(item, out);
            }
            out.push(']');
        }
        Diag::Map { entries, indef } => {
            out.push_str(if *indef { "{_ " } else { "{" });
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                compact(k, out);
                out.push_str(": ");
                compact(v, out);
            }
            out.push('}');
        }
        Diag::Tagged(tag, inner) => {
            let _ = write!(out, "{tag}(");
            compact(inner, out);
            out.push(')');
        }
    }
}

/// Renders `d` into `out`, where `indent` is the nesting level (2 spaces
/// each) of the current line and `col` the columns already used on it.
/// Containers whose compact form would reach [`DIAG_WIDTH`] are broken into
/// one element per line.
fn layout(d: &Diag, indent: usize, col: usize, out: &mut String) {
    let mut flat = String::new();
    compact(d, &mut flat);
    if col + flat.chars().count() < DIAG_WIDTH {
        out.push_str(&flat);
        return;
    }
    let pad = |n: usize, out: &mut String| out.extend(std::iter::repeat_n(' ', 2 * n));
    match d {
        Diag::Atom(_) => out.push_str(&flat),
        Diag::Array { items, indef } => {
            if items.is_empty() {
                out.push_str(&flat);
                return;
            }
            out.push_str(if *indef { "[_\n" } else { "[\n" });
            for (i, item) in items.iter().enumerate() {
                pad(indent + 1, out);
                layout(item, indent + 1, 2 * (indent + 1), out);
                if i + 1 < items.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            pad(indent, out);
            out.push(']');
        }
        Diag::Map { entries, indef } => {
            if entries.is_empty() {
                out.push_str(&flat);
                return;
            }
            out.push_str(if *indef { "{_\n" } else { "{\n" });
            for (i, (k, v)) in entries.iter().enumerate() {
                pad(indent + 1, out);
                let line_start = out.len();
                layout(k, indent + 1, 2 * (indent + 1), out);
                out.push_str(": ");
                // Columns used so far on this line (key may have wrapped).
                let used = match out[line_start..].rfind('\n') {
                    Some(nl) => out[line_start + nl + 1..].chars().count(),
                    None => 2 * (indent + 1) + out[line_start..].chars().count(),
                };
                layout(v, indent + 1, used, out);
                if i + 1 < entries.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            pad(indent, out);
            out.push('}');
        }
        Diag::Tagged(tag, inner) => {
            let head = format!("{tag}(");
            out.push_str(&head);
            layout(inner, indent, col + head.len(), out);
            out.push(')');
        }
    }
}

// ---------------------------------------------------------------------------
// Hex dump
// ---------------------------------------------------------------------------

/// Classic `hexdump -C` style dump: per line an 8-digit hex offset, 16 bytes
/// in hex (extra space after the 8th) and the printable-ASCII column between
/// `|`s (`.` for other bytes). Every line ends with `\n`; empty input gives
/// an empty string.
pub(crate) fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (line, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}  ", line * 16);
        for i in 0..16 {
            match chunk.get(i) {
                Some(b) => {
                    let _ = write!(out, "{b:02x} ");
                }
                None => out.push_str("   "),
            }
            if i == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    out
}

// ---------------------------------------------------------------------------
// Link format (RFC 6690)
// ---------------------------------------------------------------------------

/// Splits a link-format document into its links at top-level commas only
/// (RFC 6690 §2: `Link = link-value-list`, `link-value-list = [ link-value
/// *[ "," link-value ]]`). Commas inside `<...>` or double-quoted strings
/// (with `\` escapes) do not split. Pieces are trimmed; empty ones dropped.
fn split_links(doc: &str) -> Vec<&str> {
    let mut links = Vec::new();
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in doc.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            '"' if !in_angle => in_quotes = true,
            '<' => in_angle = true,
            '>' => in_angle = false,
            ',' if !in_angle => {
                links.push(&doc[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    links.push(&doc[start..]);
    links
        .into_iter()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Splits `s` at `sep` outside double-quoted strings.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + sep.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Strips surrounding double quotes and resolves `\x` quoted-pairs
/// (RFC 6690 §2 uses the RFC 2616 `quoted-string`). Unquoted values are
/// returned trimmed.
fn unquote(v: &str) -> String {
    let v = v.trim();
    let Some(inner) = v.strip_prefix('"') else {
        return v.to_owned();
    };
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One parsed link: target and attributes in document order (`None` value
/// for a valueless attribute such as `;obs`).
#[derive(Debug, PartialEq, Eq)]
struct Link {
    target: String,
    attrs: Vec<(String, Option<String>)>,
}

/// Parses one link-value (`<target>;attr;attr=value;...`); `None` if it has
/// no `<...>` target. Attributes with empty names are skipped.
fn parse_link(link: &str) -> Option<Link> {
    let rest = link.trim().strip_prefix('<')?;
    let end = rest.find('>')?;
    let target = rest[..end].trim().to_owned();
    let mut attrs = Vec::new();
    for param in split_unquoted(&rest[end + 1..], ';') {
        let param = param.trim();
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v))),
            None => (param, None),
        };
        if name.is_empty() {
            continue;
        }
        attrs.push((name.to_ascii_lowercase(), value));
    }
    Some(Link { target, attrs })
}

/// Makes a cell printable on one line: control characters are escaped so
/// they cannot break the table (or drive the terminal).
fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Renders a link-format document (RFC 6690) as an aligned table for
/// `corium discover`.
///
/// Columns: `path`, `rt`, `if`, `ct`, `sz`, `title`, `obs` (`yes` when the
/// attribute is present) and `other` (remaining attributes as
/// `name=value`/`name`, joined by `; `). Quoted values are unquoted; repeated
/// attributes are joined with a space, so space-separated multi-values stay
/// as they are. Empty cells show `-`. One row per link after a header row;
/// columns are separated by two spaces and lines have no trailing spaces.
/// Links without a `<...>` target are skipped; malformed input never panics.
pub(crate) fn link_table(links_payload: &str) -> String {
    const HEADERS: [&str; 8] = ["path", "rt", "if", "ct", "sz", "title", "obs", "other"];
    let mut rows: Vec<[String; 8]> = Vec::new();
    for link in split_links(links_payload)
        .into_iter()
        .filter_map(parse_link)
    {
        let mut row: [String; 8] = Default::default();
        row[0] = link.target;
        let mut other: Vec<String> = Vec::new();
        for (name, value) in link.attrs {
            let col = match name.as_str() {
                "rt" => Some(1),
                "if" => Some(2),
                "ct" => Some(3),
                "sz" => Some(4),
                "title" => Some(5),
                "obs" => {
                    row[6] = "yes".to_owned();
                    continue;
                }
                _ => None,
            };
            match (col, value) {
                (Some(c), Some(v)) => {
                    if !row[c].is_empty() {
                        row[c].push(' ');
                    }
                    row[c].push_str(&v);
                }
                // A known attribute without a value carries nothing to show.
                (Some(_), None) => {}
                (None, Some(v)) => other.push(format!("{name}={v}")),
                (None, None) => other.push(name),
            }
        }
        row[7] = other.join("; ");
        rows.push(row.map(|c| {
            if c.is_empty() {
                "-".to_owned()
            } else {
                cell(&c)
            }
        }));
    }

    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADERS.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (i, (c, w)) in row.iter().zip(widths.iter()).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            line.extend(std::iter::repeat_n(' ', w - c.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------
// `-O NUM,VALUE` option specs
// ---------------------------------------------------------------------------

/// Option names accepted by `-O` (RFC 7252 §5.10, RFC 7641, RFC 7959,
/// RFC 8613, RFC 8768, RFC 7967, RFC 9175), with whether the option's value
/// format is `uint` (RFC 7252 §3.2).
const OPTION_NAMES: [(&str, u16, bool); 24] = [
    ("if-match", 1, false),
    ("uri-host", 3, false),
    ("etag", 4, false),
    ("if-none-match", 5, false),
    ("observe", 6, true),
    ("uri-port", 7, true),
    ("location-path", 8, false),
    ("oscore", 9, false),
    ("uri-path", 11, false),
    ("content-format", 12, true),
    ("max-age", 14, true),
    ("uri-query", 15, false),
    ("hop-limit", 16, true),
    ("accept", 17, true),
    ("location-query", 20, false),
    ("block2", 23, true),
    ("block1", 27, true),
    ("size2", 28, true),
    ("proxy-uri", 35, false),
    ("proxy-scheme", 39, false),
    ("size1", 60, true),
    ("echo", 252, false),
    ("no-response", 258, true),
    ("request-tag", 292, false),
];

/// True when option `number` has the `uint` value format (RFC 7252 §3.2).
fn is_uint_option(number: u16) -> bool {
    OPTION_NAMES.iter().any(|&(_, n, uint)| n == number && uint)
}

/// Parses a `-O NUM,VALUE` spec into an option number and its encoded value.
///
/// `NUM` is a decimal option number (0-65535) or a case-insensitive option
/// name (`Uri-Query`, `uri_query`, ...). `VALUE` (everything after the first
/// comma) is:
/// * `0x...`: hex bytes (even number of digits; `0x` alone is empty);
/// * a decimal number, for `uint` options only: minimal big-endian,
///   1 to 4 bytes, with 0 as the empty value (RFC 7252 §3.2);
/// * empty, `""` or missing (no comma): the empty value;
/// * `"..."`: the quoted text (forces text, e.g. `"0x12"`);
/// * anything else: its UTF-8 bytes.
///
/// Errors are one line: `invalid option "SPEC": REASON`.
pub(crate) fn parse_hex_or_text_option_value(spec: &str) -> Result<(u16, Vec<u8>), String> {
    let fail = |reason: String| format!("invalid option {spec:?}: {reason}");
    let (num, value) = match spec.split_once(',') {
        Some((n, v)) => (n.trim(), v),
        None => (spec.trim(), ""),
    };
    if num.is_empty() {
        return Err(fail("missing option number or name".to_owned()));
    }
    let number = if num.bytes().all(|b| b.is_ascii_digit()) {
        num.parse::<u16>()
            .map_err(|_| fail(format!("option number {num} out of range (0-65535)")))?
    } else {
        let wanted = num.to_ascii_lowercase().replace('_', "-");
        OPTION_NAMES
            .iter()
            .find(|&&(name, _, _)| name == wanted)
            .map(|&(_, n, _)| n)
            .ok_or_else(|| fail(format!("unknown option name {num:?}")))?
    };

    // Quoted: literal text (possibly empty).
    if let Some(quoted) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        return Ok((number, quoted.as_bytes().to_vec()));
    }
    if let Some(hex) = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        return parse_hex(hex)
            .map(|bytes| (number, bytes))
            .map_err(|reason| fail(format!("{reason} in hex value {value:?}")));
    }
    if is_uint_option(number) && !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let n: u32 = value.parse().map_err(|_| {
            fail(format!(
                "value {value} too large for a uint option (max {})",
                u32::MAX
            ))
        })?;
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        return Ok((number, bytes[skip..].to_vec()));
    }
    Ok((number, value.as_bytes().to_vec()))
}

/// Decodes an even-length string of hex digits.
fn parse_hex(hex: &str) -> Result<Vec<u8>, &'static str> {
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("non-hex digit");
    }
    if !hex.len().is_multiple_of(2) {
        return Err("odd number of digits");
    }
    hex.as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or("non-hex digit")
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: Rendered) -> String {
        match r {
            Rendered::Text(s) => s,
            Rendered::Binary => panic!("expected text, got binary"),
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        parse_hex(&s).expect("test fixture hex")
    }

    fn diag(h: &str) -> String {
        text(render_payload(&hex(h), Some(60)))
    }

    // -- JSON ---------------------------------------------------------------

    #[test]
    fn json_pretty_printed_with_two_spaces_in_document_order() {
        let body = br#"{"z":1,"a":[true,null],"s":"x"}"#;
        let expected = "{\n  \"z\": 1,\n  \"a\": [\n    true,\n    null\n  ],\n  \"s\": \"x\"\n}";
        assert_eq!(text(render_payload(body, Some(50))), expected);
    }

    #[test]
    fn senml_json_is_pretty_printed() {
        // RFC 8428 §5.1.1 style record.
        let body = br#"[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]"#;
        let expected = "[\n  {\n    \"n\": \"urn:dev:ow:10e2073a01080063\",\n    \"u\": \"Cel\",\n    \"v\": 23.1\n  }\n]";
        assert_eq!(text(render_payload(body, Some(110))), expected);
        for cf in [51, 52, 111, 320, 432, 433] {
            assert_eq!(text(render_payload(b"[1]", Some(cf))), "[\n  1\n]");
        }
    }

    #[test]
    fn invalid_json_falls_back_to_text_or_binary() {
        assert_eq!(
            render_payload(b"{not json", Some(50)),
            Rendered::Text("{not json".to_owned())
        );
        assert_eq!(render_payload(&[0xff, 0xfe], Some(50)), Rendered::Binary);
    }

    // -- CBOR ---------------------------------------------------------------

    #[test]
    fn cbor_diag_known_encodings() {
        // RFC 8949 Appendix A examples.
        assert_eq!(
            diag("a2 61 61 01 61 62 82 02 03"),
            r#"{"a": 1, "b": [2, 3]}"#
        );
        assert_eq!(diag("00"), "0");
        assert_eq!(diag("17"), "23");
        assert_eq!(diag("1b ffffffffffffffff"), "18446744073709551615");
        assert_eq!(diag("3b ffffffffffffffff"), "-18446744073709551616");
        assert_eq!(diag("20"), "-1");
        assert_eq!(diag("39 03e7"), "-1000");
        assert_eq!(diag("f9 3e00"), "1.5");
        assert_eq!(diag("f9 0000"), "0.0");
        assert_eq!(diag("f9 8000"), "-0.0");
        assert_eq!(diag("fb 3ff199999999999a"), "1.1");
        assert_eq!(diag("fb 7e37e43c8800759c"), "1.0e+300");
        assert_eq!(diag("fb c010666666666666"), "-4.1");
        assert_eq!(diag("f9 7c00"), "Infinity");
        assert_eq!(diag("f9 fc00"), "-Infinity");
        assert_eq!(diag("f9 7e00"), "NaN");
        assert_eq!(diag("fb 7ff8000000000000"), "NaN");
        assert_eq!(diag("fa 7f800000"), "Infinity");
        assert_eq!(diag("f4"), "false");
        assert_eq!(diag("f5"), "true");
        assert_eq!(diag("f6"), "null");
        assert_eq!(diag("f7"), "undefined");
        assert_eq!(diag("f0"), "simple(16)");
        assert_eq!(diag("f8 ff"), "simple(255)");
        assert_eq!(
            diag("c0 74 323031332d30332d32315432303a30343a30305a"),
            r#"0("2013-03-21T20:04:00Z")"#
        );
        assert_eq!(diag("c1 1a 514b67b0"), "1(1363896240)");
        assert_eq!(
            diag("d8 20 76 687474703a2f2f7777772e6578616d706c652e636f6d"),
            r#"32("http://www.example.com")"#
        );
        assert_eq!(diag("40"), "h''");
        assert_eq!(diag("44 01020304"), "h'01020304'");
        assert_eq!(diag("60"), r#""""#);
        assert_eq!(diag("62 225c"), r#""\"\\""#);
        assert_eq!(diag("63 e6b0b4"), "\"\u{6c34}\"");
        assert_eq!(diag("80"), "[]");
        assert_eq!(diag("a0"), "{}");
        assert_eq!(diag("a2 01 02 03 04"), "{1: 2, 3: 4}");
        assert_eq!(diag("82 61 61 a1 61 62 61 63"), r#"["a", {"b": "c"}]"#);
    }

    #[test]
    fn cbor_diag_indefinite_lengths() {
        // RFC 8949 Appendix A / §8.1.
        assert_eq!(diag("5f 42 0102 43 030405 ff"), "(_ h'0102', h'030405')");
        assert_eq!(
            diag("7f 65 7374726561 64 6d696e67 ff"),
            r#"(_ "strea", "ming")"#
        );
        assert_eq!(diag("5f ff"), "''_");
        assert_eq!(diag("7f ff"), r#"""_"#);
        assert_eq!(diag("9f ff"), "[_ ]");
        assert_eq!(
            diag("9f 01 82 02 03 9f 04 05 ff ff"),
            "[_ 1, [2, 3], [_ 4, 5]]"
        );
        assert_eq!(
            diag("bf 61 61 01 61 62 9f 02 03 ff ff"),
            r#"{_ "a": 1, "b": [_ 2, 3]}"#
        );
        // A non-string chunk inside an indefinite byte string is invalid.
        assert_eq!(render_payload(&hex("5f 01 ff"), Some(60)), Rendered::Binary);
    }

    #[test]
    fn cbor_large_containers_are_indented() {
        // ["aaaaaaaaaa", ... x 6] is longer than 70 characters on one line.
        let mut bytes = vec![0x86];
        for _ in 0..6 {
            bytes.push(0x6a);
            bytes.extend_from_slice(b"aaaaaaaaaa");
        }
        let got = text(render_payload(&bytes, Some(60)));
        let item = "  \"aaaaaaaaaa\"";
        let expected = format!("[\n{item},\n{item},\n{item},\n{item},\n{item},\n{item}\n]");
        assert_eq!(got, expected);

        // Nested: a map whose value is too long; the short key/values stay flat.
        let mut bytes = vec![0xa2, 0x61, b'k', 0x01, 0x64];
        bytes.extend_from_slice(b"list");
        bytes.push(0x86);
        for _ in 0..6 {
            bytes.push(0x6a);
            bytes.extend_from_slice(b"bbbbbbbbbb");
        }
        let got = text(render_payload(&bytes, Some(112)));
        let item = "    \"bbbbbbbbbb\"";
        let expected = format!(
            "{{\n  \"k\": 1,\n  \"list\": [\n{item},\n{item},\n{item},\n{item},\n{item},\n{item}\n  ]\n}}"
        );
        assert_eq!(got, expected);

        // Tagged large array: the tag wraps the broken-up container.
        let mut tagged = vec![0xd8, 0x62];
        tagged.extend_from_slice(&bytes);
        let got = text(render_payload(&tagged, Some(60)));
        assert!(got.starts_with("98({\n  \"k\": 1,\n"), "{got}");
        assert!(got.ends_with("\n  ]\n})"), "{got}");
    }

    #[test]
    fn cbor_seq_items_each_on_own_line() {
        // RFC 8742 sequence: 1, "a", [2, 3]
        let bytes = hex("01 61 61 82 02 03");
        assert_eq!(text(render_payload(&bytes, Some(63))), "1\n\"a\"\n[2, 3]");
        assert_eq!(text(render_payload(&bytes, Some(272))), "1\n\"a\"\n[2, 3]");
        // As plain application/cbor the trailing items make it invalid.
        assert_eq!(render_payload(&bytes, Some(60)), Rendered::Binary);
    }

    #[test]
    fn invalid_cbor_is_binary() {
        for h in [
            "ff",                  // stray break
            "82 01",               // truncated array
            "62 61",               // truncated text
            "62 c3 28",            // invalid UTF-8 in text
            "1c",                  // reserved additional information
            "9f 01",               // unterminated indefinite array
            "bf 01 ff",            // indefinite map with a key and no value
            "01 62 61",            // trailing truncated item
            "9b ffffffffffffffff", // huge declared length, no content
        ] {
            assert_eq!(render_payload(&hex(h), Some(60)), Rendered::Binary, "{h}");
            assert_eq!(render_payload(&hex(h), Some(63)), Rendered::Binary, "{h}");
        }
    }

    #[test]
    fn deeply_nested_cbor_does_not_overflow() {
        let deep = vec![0x81u8; 100_000];
        assert_eq!(render_payload(&deep, Some(60)), Rendered::Binary);
        let mut ok = vec![0x81u8; 10];
        ok.push(0x00);
        assert_eq!(text(render_payload(&ok, Some(60))), "[[[[[[[[[[0]]]]]]]]]]");
    }

    #[test]
    fn float_formatting() {
        assert_eq!(diag_float(&format!("{:?}", 1e300f64)), "1.0e+300");
        assert_eq!(diag_float(&format!("{:?}", 1.5e-7f64)), "1.5e-7");
        assert_eq!(diag_float(&format!("{:?}", 100000.0f64)), "100000.0");
        assert_eq!(diag_float(&format!("{:?}", f64::NEG_INFINITY)), "-Infinity");
        assert_eq!(diag("fa 47c35000"), "100000.0");
        assert_eq!(diag("fa 7f7fffff"), "3.4028235e+38");
    }

    // -- Link format and text -----------------------------------------------

    #[test]
    fn link_format_one_link_per_line() {
        // RFC 6690 §5 example plus quoted commas and an angle-bracket comma.
        let body = br#"</sensors/temp>;rt="temperature-c";if="sensor",</sensors/light>;rt="light-lux";title="Light, ambient",</a,b>;ct=0"#;
        assert_eq!(
            text(render_payload(body, Some(40))),
            "</sensors/temp>;rt=\"temperature-c\";if=\"sensor\"\n\
             </sensors/light>;rt=\"light-lux\";title=\"Light, ambient\"\n\
             </a,b>;ct=0"
        );
    }

    #[test]
    fn split_links_handles_whitespace_escapes_and_empties() {
        let doc = "</a>;title=\"x\\\",y\",\n  </b>, ,</c>";
        assert_eq!(
            split_links(doc),
            vec!["</a>;title=\"x\\\",y\"", "</b>", "</c>"]
        );
        assert!(split_links("").is_empty());
        // Unterminated quote: the rest is one link; no panic.
        assert_eq!(split_links("</a>;t=\"x,y"), vec!["</a>;t=\"x,y"]);
    }

    #[test]
    fn text_formats_and_unknown() {
        assert_eq!(text(render_payload(b"hello\n", Some(0))), "hello\n");
        assert_eq!(text(render_payload(b"<a/>", Some(41))), "<a/>");
        assert_eq!(render_payload(&[0xff], Some(0)), Rendered::Binary);
        assert_eq!(
            text(render_payload(b"line1\r\n\tline2", None)),
            "line1\r\n\tline2"
        );
        assert_eq!(render_payload(b"bell\x07", None), Rendered::Binary);
        assert_eq!(render_payload(&[0xc3, 0x28], None), Rendered::Binary);
        assert_eq!(render_payload(b"text", Some(42)), Rendered::Binary);
        assert_eq!(render_payload(b"GIF89a", Some(21)), Rendered::Binary);
        assert_eq!(render_payload(b"", Some(42)), Rendered::Text(String::new()));
    }

    // -- Hex dump -----------------------------------------------------------

    #[test]
    fn hex_dump_matches_hexdump_c() {
        assert_eq!(
            hex_dump(b"Hello world\n"),
            "00000000  48 65 6c 6c 6f 20 77 6f  72 6c 64 0a              |Hello world.|\n"
        );
        let bytes: Vec<u8> = (0x3c..0x3c + 20).collect();
        assert_eq!(
            hex_dump(&bytes),
            "00000000  3c 3d 3e 3f 40 41 42 43  44 45 46 47 48 49 4a 4b  |<=>?@ABCDEFGHIJK|\n\
             00000010  4c 4d 4e 4f                                       |LMNO|\n"
        );
        assert_eq!(hex_dump(&[]), "");
        assert_eq!(
            hex_dump(&[0x00, 0x7f, 0x80, 0xff]),
            "00000000  00 7f 80 ff                                       |....|\n"
        );
    }

    // -- Link table ---------------------------------------------------------

    #[test]
    fn link_table_aligns_columns() {
        let doc = r#"</sensors/temp>;rt="temperature-c";if="sensor";obs,</sensors/light>;rt="light-lux core.s";if=sensor;ct=0;sz=1234;title="Light, ambient",</.well-known/x>;anchor="/a";rel=alternate;foo"#;
        let expected = "\
path            rt                if      ct  sz    title           obs  other
/sensors/temp   temperature-c     sensor  -   -     -               yes  -
/sensors/light  light-lux core.s  sensor  0   1234  Light, ambient  -    -
/.well-known/x  -                 -       -   -     -               -    anchor=/a; rel=alternate; foo
";
        assert_eq!(link_table(doc), expected);
    }

    #[test]
    fn link_table_repeated_and_escaped_values() {
        let doc = "</r>;rt=a;RT=\"b c\";title=\"say \\\"hi\\\"\";ct=\"0 50\"";
        let expected = "\
path  rt     if  ct    sz  title     obs  other
/r    a b c  -   0 50  -   say \"hi\"  -    -
";
        assert_eq!(link_table(doc), expected);
    }

    #[test]
    fn link_table_is_robust_against_malformed_input() {
        let header = "path  rt  if  ct  sz  title  obs  other\n";
        assert_eq!(link_table(""), header);
        assert_eq!(link_table("garbage, more garbage"), header);
        assert_eq!(link_table("<unterminated;rt=x"), header);
        // Good links survive next to bad pieces; junk params are skipped.
        let got = link_table("junk,</ok>;;=x;rt=\"a\tb\",</q>;rt=\"open,</x>\n");
        assert_eq!(
            got,
            "path  rt         if  ct  sz  title  obs  other\n\
             /ok   a\\tb       -   -   -   -      -    -\n\
             /q    open,</x>  -   -   -   -      -    -\n"
        );
        for weird in [
            "<",
            ">",
            "<>",
            "<>;",
            ";;;",
            "\"",
            "<\u{e9}>;t\u{e9}=\"\u{fc}",
            ",,,",
        ] {
            let _ = link_table(weird);
            let _ = render_payload(weird.as_bytes(), Some(40));
        }
    }

    // -- Option specs -------------------------------------------------------

    #[test]
    fn option_spec_numbers_and_names() {
        assert_eq!(
            parse_hex_or_text_option_value("11,temp"),
            Ok((11, b"temp".to_vec()))
        );
        assert_eq!(
            parse_hex_or_text_option_value("Uri-Query,a=1"),
            Ok((15, b"a=1".to_vec()))
        );
        assert_eq!(
            parse_hex_or_text_option_value("uri-query,x,y"),
            Ok((15, b"x,y".to_vec()))
        );
        assert_eq!(
            parse_hex_or_text_option_value("URI_PATH,p"),
            Ok((11, b"p".to_vec()))
        );
        assert_eq!(
            parse_hex_or_text_option_value("no-response,26"),
            Ok((258, vec![26]))
        );
        assert_eq!(
            parse_hex_or_text_option_value("65535,"),
            Ok((65535, vec![]))
        );
        for (name, n) in OPTION_NAMES.iter().map(|&(name, n, _)| (name, n)) {
            assert_eq!(parse_hex_or_text_option_value(name).map(|(o, _)| o), Ok(n));
        }
    }

    #[test]
    fn option_spec_values() {
        // Hex.
        assert_eq!(
            parse_hex_or_text_option_value("4,0xDEADbeef"),
            Ok((4, vec![0xde, 0xad, 0xbe, 0xef]))
        );
        assert_eq!(parse_hex_or_text_option_value("4,0x"), Ok((4, vec![])));
        // uint options: minimal big-endian (RFC 7252 §3.2).
        assert_eq!(parse_hex_or_text_option_value("Observe,0"), Ok((6, vec![])));
        assert_eq!(parse_hex_or_text_option_value("12,50"), Ok((12, vec![50])));
        assert_eq!(
            parse_hex_or_text_option_value("Accept,11544"),
            Ok((17, vec![0x2d, 0x18]))
        );
        assert_eq!(
            parse_hex_or_text_option_value("Size1,65536"),
            Ok((60, vec![1, 0, 0]))
        );
        assert_eq!(
            parse_hex_or_text_option_value("Max-Age,4294967295"),
            Ok((14, vec![0xff; 4]))
        );
        // Digits for a non-uint option are text.
        assert_eq!(
            parse_hex_or_text_option_value("Uri-Path,123"),
            Ok((11, b"123".to_vec()))
        );
        assert_eq!(
            parse_hex_or_text_option_value("2049,5"),
            Ok((2049, b"5".to_vec()))
        );
        // Empty values.
        assert_eq!(
            parse_hex_or_text_option_value("If-None-Match"),
            Ok((5, vec![]))
        );
        assert_eq!(parse_hex_or_text_option_value("5,"), Ok((5, vec![])));
        assert_eq!(parse_hex_or_text_option_value("5,\"\""), Ok((5, vec![])));
        // Quotes force text.
        assert_eq!(
            parse_hex_or_text_option_value("Accept,\"50\""),
            Ok((17, b"50".to_vec()))
        );
        assert_eq!(
            parse_hex_or_text_option_value("11,\"0x12\""),
            Ok((11, b"0x12".to_vec()))
        );
        // UTF-8 text.
        assert_eq!(
            parse_hex_or_text_option_value("Uri-Path,caf\u{e9}"),
            Ok((11, "caf\u{e9}".as_bytes().to_vec()))
        );
    }

    #[test]
    fn option_spec_errors() {
        assert_eq!(
            parse_hex_or_text_option_value("abc,1"),
            Err(r#"invalid option "abc,1": unknown option name "abc""#.to_owned())
        );
        assert_eq!(
            parse_hex_or_text_option_value(",x"),
            Err(r#"invalid option ",x": missing option number or name"#.to_owned())
        );
        assert_eq!(
            parse_hex_or_text_option_value(""),
            Err(r#"invalid option "": missing option number or name"#.to_owned())
        );
        assert_eq!(
            parse_hex_or_text_option_value("70000,1"),
            Err(
                r#"invalid option "70000,1": option number 70000 out of range (0-65535)"#
                    .to_owned()
            )
        );
        assert_eq!(
            parse_hex_or_text_option_value("-1,1"),
            Err(r#"invalid option "-1,1": unknown option name "-1""#.to_owned())
        );
        assert_eq!(
            parse_hex_or_text_option_value("4,0x123"),
            Err(
                r#"invalid option "4,0x123": odd number of digits in hex value "0x123""#.to_owned()
            )
        );
        assert_eq!(
            parse_hex_or_text_option_value("4,0xzz"),
            Err(r#"invalid option "4,0xzz": non-hex digit in hex value "0xzz""#.to_owned())
        );
        assert_eq!(
            parse_hex_or_text_option_value("Uri-Port,4294967296"),
            Err(
                r#"invalid option "Uri-Port,4294967296": value 4294967296 too large for a uint option (max 4294967295)"#
                    .to_owned()
            )
        );
        // Every error is a single line.
        let err = parse_hex_or_text_option_value("bad\nname,1").unwrap_err();
        assert!(!err.contains('\n'), "{err}");
    }
}
