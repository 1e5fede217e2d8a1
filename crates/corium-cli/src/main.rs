//! `corium`: a command-line CoAP (RFC 7252) client, the ETSI plugtest server
//! and a load generator.
//!
//! * `corium get|post|put|delete|fetch|patch|ipatch URI`: one request, the
//!   payload rendered on stdout, the response code on stderr.
//! * `corium observe URI`: observe a resource (RFC 7641), one line per
//!   notification.
//! * `corium discover URI`: `GET /.well-known/core` (RFC 6690 §4) as a table.
//! * `corium serve`: the plugtest resource set (see `plugtest.rs`).
//! * `--credentials FILE` (request verbs, `observe`, `serve`): OSCORE
//!   security contexts in TOML (see `credentials.rs`).
//! * `corium bench URI`: a closed-loop load generator driving the sans-IO
//!   endpoint directly.
//!
//! Exit codes are documented in [`EXIT_CODES_HELP`] (shown by `--help`).
#![forbid(unsafe_code)]

mod bench;
mod bench_edhoc;
mod bench_oscore;
mod client;
mod credentials;
mod dtls;
mod edhoc;
mod format;
mod observe;
mod plugtest;
mod progress;
mod rd;
mod serve;
mod tls;
mod trace;
mod uri;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// The command ended as intended (a 2.xx response, a clean shutdown).
pub(crate) const EXIT_OK: u8 = 0;
/// The server answered with an error response (4.xx or 5.xx).
pub(crate) const EXIT_ERROR_RESPONSE: u8 = 1;
/// Bad command-line arguments (clap's usual code).
pub(crate) const EXIT_USAGE: u8 = 2;
/// No response: the request timed out, was never acknowledged, or was reset.
pub(crate) const EXIT_NO_RESPONSE: u8 = 3;
/// Any other failure: local I/O, a malformed response, an overloaded endpoint.
pub(crate) const EXIT_FAILURE: u8 = 4;

/// The exit-code table appended to `--help`.
const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success (a 2.xx response; server stopped cleanly)
  1  the server answered 4.xx or 5.xx (the code is printed on stderr)
  2  bad arguments (invalid URI, unknown content format, bad option, ...)
  3  no response: timed out (see --timeout), never acknowledged, or reset
  4  other failure: local I/O error, malformed response, endpoint overloaded";

/// Why a command failed: a one-line message for stderr and an exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    /// Process exit code (one of the `EXIT_*` constants).
    pub(crate) exit_code: u8,
    /// Shown as `error: <message>`; a single line.
    pub(crate) message: String,
}

impl Failure {
    /// A bad-argument failure (exit code 2).
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure {
            exit_code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// A local failure (exit code 4).
    pub(crate) fn other(message: impl Into<String>) -> Failure {
        Failure {
            exit_code: EXIT_FAILURE,
            message: message.into(),
        }
    }
}

/// CoAP (RFC 7252) client, plugtest server and load generator.
#[derive(Debug, Parser)]
#[command(name = "corium", version, after_help = EXIT_CODES_HELP)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Send a GET request and print the response payload.
    #[command(after_help = EXIT_CODES_HELP)]
    Get(RequestArgs),
    /// Send a POST request.
    #[command(after_help = EXIT_CODES_HELP)]
    Post(RequestArgs),
    /// Send a PUT request.
    #[command(after_help = EXIT_CODES_HELP)]
    Put(RequestArgs),
    /// Send a DELETE request.
    #[command(after_help = EXIT_CODES_HELP)]
    Delete(RequestArgs),
    /// Send a FETCH request (RFC 8132).
    #[command(after_help = EXIT_CODES_HELP)]
    Fetch(RequestArgs),
    /// Send a PATCH request (RFC 8132).
    #[command(after_help = EXIT_CODES_HELP)]
    Patch(RequestArgs),
    /// Send an iPATCH request (RFC 8132).
    #[command(name = "ipatch", after_help = EXIT_CODES_HELP)]
    Ipatch(RequestArgs),
    /// Observe a resource (RFC 7641) and print every notification.
    #[command(after_help = EXIT_CODES_HELP)]
    Observe(observe::ObserveArgs),
    /// List a server's resources (GET /.well-known/core, RFC 6690).
    #[command(after_help = EXIT_CODES_HELP)]
    Discover(DiscoverArgs),
    /// Serve the ETSI CoAP plugtest resources (plus /echo).
    Serve(ServeArgs),
    /// Run a CoRE Resource Directory (RFC 9176), or register with / look up in one.
    Rd(rd::RdArgs),
    /// Load-test a server with GET requests and print latency and throughput.
    Bench(BenchArgs),
    /// EDHOC (RFC 9528) credential helpers: `corium edhoc keygen`.
    Edhoc(edhoc::EdhocArgs),
}

/// Arguments shared by the request verbs.
#[derive(Debug, Args)]
pub(crate) struct RequestArgs {
    /// The resource, e.g. `coap://127.0.0.1/test` or `coap://[::1]:5683/query?a=1`.
    #[arg(value_name = "URI")]
    pub(crate) uri: String,
    /// Payload given as text.
    #[arg(
        short = 'e',
        long = "payload",
        value_name = "TEXT",
        conflicts_with = "payload_file"
    )]
    pub(crate) payload: Option<String>,
    /// Payload read from a file (`-` for stdin).
    #[arg(short = 'f', long = "payload-file", value_name = "FILE")]
    pub(crate) payload_file: Option<PathBuf>,
    /// Content-Format of the payload: a name (text/plain, application/json,
    /// application/cbor, application/link-format, application/senml+json, json,
    /// cbor, ...) or a number.
    #[arg(short = 't', long = "content-format", value_name = "FORMAT")]
    pub(crate) content_format: Option<String>,
    /// Accept option: a content format name or number.
    #[arg(short = 'A', long = "accept", value_name = "FORMAT")]
    pub(crate) accept: Option<String>,
    /// Any option as NUM,VALUE (repeatable). NUM is a number or a name
    /// (Uri-Query, If-None-Match, ...); VALUE is text, 0x-prefixed hex, a
    /// decimal for uint options, or empty.
    #[arg(short = 'O', long = "option", value_name = "NUM,VALUE")]
    pub(crate) options: Vec<String>,
    /// Send the request Non-confirmable (RFC 7252 §4.3).
    #[arg(long = "non")]
    pub(crate) non: bool,
    /// Give up waiting for a response after this many seconds (default:
    /// MAX_TRANSMIT_WAIT, 93 s).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub(crate) timeout: Option<Duration>,
    /// Print every message exchanged (a one-line dissection on stderr).
    #[arg(short = 'v', long = "verbose")]
    pub(crate) verbose: bool,
    /// Write the raw response payload to this file instead of rendering it
    /// on stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Block size for block-wise transfers (RFC 7959): 16, 32, 64, 128, 256,
    /// 512 or 1024 bytes (default 1024). Uploads larger than one block go in
    /// blocks of this size, and downloads ask for it (early negotiation). Over
    /// coap+tcp/ws connections a body travels whole when the server's
    /// Max-Message-Size allows, and 1024 means BERT blocks when it announces
    /// them (RFC 8323 §6); smaller sizes are used as given.
    #[arg(short = 'b', long = "block-size", value_name = "SIZE", value_parser = parse_block_size)]
    pub(crate) block_szx: Option<u8>,
    /// Max-Message-Size announced on coap+tcp/coaps+tcp/ws connections (RFC 8323
    /// §5.3.1; default 66048). Above 1152 it also announces BERT blocks (§6); 1152
    /// keeps transfers to 1024-byte blocks.
    #[arg(long = "max-message-size", value_name = "BYTES", value_parser = clap::value_parser!(u32).range(64..=16_777_216))]
    pub(crate) max_message_size: Option<u32>,
    /// TLS for coaps+tcp:// and coaps+ws://.
    #[command(flatten)]
    pub(crate) tls: tls::TlsArgs,
    /// DTLS (PSK) for coaps://.
    #[command(flatten)]
    pub(crate) dtls: dtls::DtlsArgs,
    /// OSCORE credentials (TOML, one [[oscore]] table per security context):
    /// requests whose URI matches a context's `uri` pattern are protected
    /// (RFC 8613); sequence numbers are kept in FILE.seq. An [[edhoc]] table whose
    /// `uri` matches runs EDHOC (RFC 9528) first and protects with its context.
    #[arg(long = "credentials", value_name = "FILE")]
    pub(crate) credentials: Option<PathBuf>,
}

/// Arguments of `corium discover`.
#[derive(Debug, Args)]
pub(crate) struct DiscoverArgs {
    /// The server, e.g. `coap://host[:port]`: /.well-known/core is appended
    /// to the path unless it ends with it already. A query is kept as an
    /// RFC 6690 filter (`?rt=temp*`).
    #[arg(value_name = "URI")]
    pub(crate) uri: String,
    /// Query filter as NAME=VALUE (RFC 6690 §4.1), e.g. rt=temp* or if=sensor.
    #[arg(long, value_name = "NAME=VALUE")]
    pub(crate) filter: Option<String>,
    /// Send the request Non-confirmable.
    #[arg(long = "non")]
    pub(crate) non: bool,
    /// Give up waiting for a response after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub(crate) timeout: Option<Duration>,
    /// Print every message exchanged on stderr.
    #[arg(short = 'v', long = "verbose")]
    pub(crate) verbose: bool,
    /// Send to a multicast group (RFC 7252 §8.1, e.g. coap://224.0.1.187 or
    /// coap://[ff02::fd%eth0]) and list every server that answers within SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub(crate) wait: Option<Duration>,
    /// The interface IPv4 group requests leave from, by one of its addresses.
    #[arg(long = "multicast-if", value_name = "ADDR")]
    pub(crate) multicast_if: Option<std::net::Ipv4Addr>,
}

/// Arguments of `corium serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (repeatable). Default: `[::]:5683` and `0.0.0.0:5683`.
    /// Port 0 picks a free port; the first line on stdout names the bound
    /// addresses.
    #[arg(long = "bind", value_name = "ADDR:PORT", value_parser = parse_socket_addr)]
    pub(crate) bind: Vec<SocketAddr>,
    /// Log at debug level (RUST_LOG, when set, takes precedence).
    #[arg(short = 'v', long = "verbose")]
    pub(crate) verbose: bool,
    /// Largest request body accepted as a Block1 upload, in bytes (RFC 7959
    /// §2.9.3: larger uploads get 4.13 with Size1). Default 1048576.
    #[arg(long = "max-body", value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1024..=1 << 32))]
    pub(crate) max_body: Option<u64>,
    /// Server certificate chain (PEM): with --key, also serve coaps+tcp (TLS,
    /// RFC 8323) on PORT+1 of each --bind address (5684 by default), and, with an
    /// ECDSA key, coaps (DTLS certificate mode, RFC 7252 §9) on PORT+1 over UDP.
    #[arg(long = "cert", value_name = "FILE", requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long = "key", value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// Require TLS clients to present a certificate issued by these CAs (PEM).
    #[arg(long = "ca", value_name = "FILE", requires = "cert")]
    pub(crate) ca: Option<PathBuf>,
    /// Where to serve coaps+tcp (TLS, with --cert) and coaps (DTLS, with --psk,
    /// --psk-file or an ECDSA --cert) instead of PORT+1 (repeatable; --dtls-bind, when
    /// given, overrides it for DTLS).
    #[arg(long = "secure-bind", value_name = "ADDR:PORT", value_parser = parse_socket_addr)]
    pub(crate) secure_bind: Vec<SocketAddr>,
    /// Serve coap+ws (CoAP over WebSockets at /.well-known/coap) here (repeatable).
    #[arg(long = "ws-bind", value_name = "ADDR:PORT", value_parser = parse_socket_addr)]
    pub(crate) ws_bind: Vec<SocketAddr>,
    /// Join a multicast group (RFC 7252 §8; repeatable): `all` for the All-CoAP-Nodes
    /// groups 224.0.1.187, ff05::fd and ff02::fd (on each multicast interface), or GROUP[@IFACE] with IFACE an IPv4
    /// address of the interface (IPv4 groups) or an interface index (IPv6 groups).
    /// The group port is that of the first --bind (5683 by default).
    #[arg(long = "join", value_name = "GROUP")]
    pub(crate) join: Vec<String>,
    /// Serve coaps+ws (WebSockets over TLS) here (repeatable; needs --cert).
    #[arg(long = "wss-bind", value_name = "ADDR:PORT", value_parser = parse_socket_addr, requires = "cert")]
    pub(crate) wss_bind: Vec<SocketAddr>,
    /// OSCORE credentials (TOML, one [[oscore]] table per security context):
    /// protected requests are verified (RFC 8613), and the resources named by
    /// the contexts' `uri` patterns require OSCORE (4.01 otherwise).
    #[arg(long = "credentials", value_name = "FILE")]
    pub(crate) credentials: Option<PathBuf>,
    /// Serve coaps (CoAP over DTLS, RFC 7252 §9) with this PSK, as ID:KEY (repeatable;
    /// KEY as text, 0x-hex or @FILE), on PORT+1 of each --bind (5684 by default).
    #[arg(long = "psk", value_name = "ID:KEY")]
    pub(crate) psk: Vec<String>,
    /// Serve coaps with the PSKs of FILE (one identity:key per line; key as text or
    /// 0x-hex; `#` comments).
    #[arg(long = "psk-file", value_name = "FILE")]
    pub(crate) psk_file: Option<PathBuf>,
    /// Where to serve coaps instead of PORT+1 (repeatable; needs --psk or --psk-file).
    #[arg(long = "dtls-bind", value_name = "ADDR:PORT", value_parser = parse_socket_addr)]
    pub(crate) dtls_bind: Vec<SocketAddr>,
    /// Limits of the coaps (DTLS) listener.
    #[command(flatten)]
    pub(crate) dtls_limits: dtls::DtlsLimitsArgs,
    /// Amplification mitigation on plain UDP (RFC 9175 §2.4): until a client has
    /// echoed an Echo value, it gets at most FACTOR times the bytes of its request; a
    /// larger response to GET/FETCH becomes 4.01 with Echo (clients that follow RFC
    /// 9175 repeat the request with it). 0 turns it off. Default 3.
    #[arg(
        long = "amplification-factor",
        value_name = "FACTOR",
        default_value_t = 3
    )]
    pub(crate) amplification_factor: usize,
    /// Require fresh requests on the resource at PATH (repeatable; `*` for all): an
    /// unsafe request (POST, PUT, DELETE, PATCH, iPATCH) without a recent Echo value is
    /// not run but answered 4.01 with one, and its repetition with it runs (RFC 9175
    /// §2.4 item 1; under OSCORE inside the protection).
    #[arg(long = "fresh", value_name = "PATH")]
    pub(crate) fresh: Vec<String>,
    /// How old an Echo value may be for --fresh, in seconds. Default 30.
    #[arg(long = "fresh-max-age", value_name = "SECONDS", default_value_t = 30)]
    pub(crate) fresh_max_age: u64,
    /// Worker threads, and UDP sockets per --bind address sharing its port with
    /// SO_REUSEPORT (one driver and endpoint each; a peer always reaches the same one).
    /// Default: one socket per address, one thread per CPU.
    #[arg(long = "workers", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) workers: Option<u16>,
}

/// Arguments of `corium bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// The resource to GET, e.g. coap://127.0.0.1:5683/test.
    #[arg(value_name = "URI")]
    pub(crate) uri: String,
    /// Number of client sockets (each its own endpoint and message-ID space).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub(crate) sockets: u32,
    /// Requests kept in flight per socket.
    #[arg(long, value_name = "W", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub(crate) window: u32,
    /// Length of the measurement in seconds (after the warm-up).
    #[arg(long, value_name = "S", default_value = "10", value_parser = parse_seconds)]
    pub(crate) duration: Duration,
    /// Warm-up in seconds before measuring (requests are sent but not counted).
    #[arg(long, value_name = "S", default_value = "1", value_parser = parse_seconds_or_zero)]
    pub(crate) warmup: Duration,
    /// Send Non-confirmable requests.
    #[arg(long = "non")]
    pub(crate) non: bool,
    /// A request without a response after this many seconds counts as lost.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    pub(crate) timeout: Duration,
    /// TLS for coaps+tcp:// and coaps+ws:// (--ca FILE or --insecure); for coaps:// without
    /// a PSK, DTLS certificate mode (--ca, and --cert/--key for a client certificate).
    #[command(flatten)]
    pub(crate) tls: tls::TlsArgs,
    /// PSK credentials for coaps:// (DTLS, RFC 7252 §9.1.3.1).
    #[command(flatten)]
    pub(crate) dtls: dtls::DtlsArgs,
    /// coaps://: measure full DTLS handshakes per second instead of requests
    /// (--sockets x --window clients, each handshaking on a fresh socket, then closing).
    /// coap:// with --credentials: EDHOC handshakes per second (RFC 9528, two POSTs to
    /// /.well-known/edhoc each) with the [[edhoc]] table matching the URI; --window
    /// handshakes at a time on each of --sockets sockets.
    #[arg(long = "handshakes", conflicts_with = "idle_sessions")]
    pub(crate) handshakes: bool,
    /// With --handshakes on coap:// (EDHOC): stop after N handshakes (no warm-up) and
    /// divide by the time they took, for responders that keep every session (aiocoap
    /// 0.4.17 has room for 47).
    #[arg(long = "handshake-count", value_name = "N", requires = "handshakes", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) handshake_count: Option<u64>,
    /// coaps:// only: establish N DTLS sessions, hold them idle for --duration seconds,
    /// close them (for measuring a server's memory per idle session).
    #[arg(long = "idle-sessions", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) idle_sessions: Option<u32>,
    /// coap:// only: protect every request with OSCORE (RFC 8613), with the context of
    /// this credentials file whose `uri` matches the target (as `get --credentials`);
    /// only verified 2.xx responses count. Keep --sockets × --window within the
    /// server's replay window (32).
    #[arg(long = "credentials", value_name = "FILE")]
    pub(crate) credentials: Option<PathBuf>,
    /// coap:// only: N distinct client endpoints (a socket each, on --local-ip), each
    /// sending one CON GET every --interval seconds for --duration seconds (a server's
    /// behaviour and memory with many peers; mind `ulimit -n`).
    #[arg(long = "peers", value_name = "N", conflicts_with_all = ["handshakes", "idle_sessions", "credentials", "non"], value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) peers: Option<u32>,
    /// With --peers: seconds between two requests of one peer.
    #[arg(long = "interval", value_name = "SECS", default_value = "5", requires = "peers", value_parser = parse_seconds)]
    pub(crate) interval: Duration,
    /// With --peers: the address the peers' sockets bind to (default: loopback).
    #[arg(long = "local-ip", value_name = "IP", requires = "peers")]
    pub(crate) local_ip: Option<std::net::IpAddr>,
}

/// Parses a positive number of seconds (fractions allowed).
fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() && x < 1e9 => Ok(Duration::from_secs_f64(x)),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

/// Parses a block size (a power of two from 16 to 1024) into its SZX (RFC 7959 §2.2).
fn parse_block_size(s: &str) -> Result<u8, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (16..=1024).contains(&n) && n.is_power_of_two() => {
            Ok(n.trailing_zeros() as u8 - 4)
        }
        _ => Err(format!(
            "{s:?} is not a block size (16, 32, 64, 128, 256, 512 or 1024)"
        )),
    }
}

/// Parses a non-negative number of seconds.
fn parse_seconds_or_zero(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x >= 0.0 && x.is_finite() && x < 1e9 => Ok(Duration::from_secs_f64(x)),
        _ => Err(format!("{s:?} is not a non-negative number of seconds")),
    }
}

/// Parses `ADDR:PORT` (`[::]:5683`, `0.0.0.0:0`).
fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("{s:?} is not an ADDR:PORT socket address (e.g. 0.0.0.0:5683 or [::]:5683)")
    })
}

/// Parses the command line; clap errors become one line and exit code 2
/// (`--help` and `--version` print as usual).
fn parse_cli(args: impl IntoIterator<Item = OsString>) -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse_from(args) {
        Ok(cli) => Ok(cli),
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                let _ = e.print();
                Err(ExitCode::from(if e.use_stderr() {
                    EXIT_USAGE
                } else {
                    EXIT_OK
                }))
            }
            _ => {
                // The first paragraph of clap's message, on one line.
                let rendered = e.render().to_string();
                let line = rendered
                    .lines()
                    .skip_while(|l| l.trim().is_empty())
                    .take_while(|l| !l.trim().is_empty())
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ");
                if line.is_empty() {
                    eprintln!("error: invalid arguments");
                } else {
                    eprintln!("{line}");
                }
                Err(ExitCode::from(EXIT_USAGE))
            }
        },
    }
}

/// Builds the tokio runtime: one thread for client verbs, a multi-threaded
/// one for the server and the load generator.
fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, Failure> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| Failure::other(format!("cannot start the async runtime: {e}")))
}

/// Runs the parsed command; `Ok` carries the exit code.
fn run(cli: Cli) -> Result<u8, Failure> {
    use corium::Code;
    let (method, args) = match cli.command {
        Command::Get(a) => (Code::GET, a),
        Command::Post(a) => (Code::POST, a),
        Command::Put(a) => (Code::PUT, a),
        Command::Delete(a) => (Code::DELETE, a),
        Command::Fetch(a) => (Code::FETCH, a),
        Command::Patch(a) => (Code::PATCH, a),
        Command::Ipatch(a) => (Code::IPATCH, a),
        Command::Discover(a) => {
            let prepared = client::prepare_discover(&a)?;
            return runtime(false)?.block_on(client::discover(prepared));
        }
        Command::Observe(a) => return observe::run(a),
        Command::Serve(a) => return serve::run(a),
        Command::Rd(a) => return rd::run(a),
        Command::Bench(a) => return bench::run(a),
        Command::Edhoc(a) => return edhoc::run(a),
    };
    // Arguments are checked before any socket is opened.
    let prepared = client::prepare_request(method, args)?;
    runtime(false)?.block_on(client::request(prepared))
}

fn main() -> ExitCode {
    let cli = match parse_cli(std::env::args_os()) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {}", one_line(&failure.message));
            ExitCode::from(failure.exit_code)
        }
    }
}

/// Collapses a message onto one line (control characters become spaces).
pub(crate) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, ExitCode> {
        parse_cli(args.iter().map(OsString::from))
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn request_flags() {
        let cli = parse(&[
            "corium",
            "post",
            "coap://h/x",
            "-e",
            "hi",
            "-t",
            "json",
            "-A",
            "60",
            "-O",
            "Uri-Query,a=1",
            "-O",
            "5,",
            "--non",
            "--timeout",
            "1.5",
            "-v",
            "-o",
            "out",
        ])
        .unwrap();
        let Command::Post(a) = cli.command else {
            panic!("expected post")
        };
        assert_eq!(a.uri, "coap://h/x");
        assert_eq!(a.payload.as_deref(), Some("hi"));
        assert_eq!(a.content_format.as_deref(), Some("json"));
        assert_eq!(a.accept.as_deref(), Some("60"));
        assert_eq!(a.options, ["Uri-Query,a=1", "5,"]);
        assert!(a.non && a.verbose);
        assert_eq!(a.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(a.output, Some(PathBuf::from("out")));
    }

    #[test]
    fn payload_text_and_file_conflict() {
        assert!(parse(&["corium", "put", "coap://h/x", "-e", "a", "-f", "b"]).is_err());
    }

    #[test]
    fn bad_timeout_is_rejected() {
        assert!(parse(&["corium", "get", "coap://h/x", "--timeout", "0"]).is_err());
        assert!(parse(&["corium", "get", "coap://h/x", "--timeout", "x"]).is_err());
    }

    #[test]
    fn serve_and_bench_defaults() {
        let cli = parse(&[
            "corium",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--bind",
            "[::1]:5683",
        ])
        .unwrap();
        let Command::Serve(s) = cli.command else {
            panic!("expected serve")
        };
        assert_eq!(s.bind.len(), 2);
        let cli = parse(&["corium", "bench", "coap://h/x"]).unwrap();
        let Command::Bench(b) = cli.command else {
            panic!("expected bench")
        };
        assert_eq!((b.sockets, b.window), (1, 16));
        assert_eq!(b.duration, Duration::from_secs(10));
        assert_eq!(b.warmup, Duration::from_secs(1));
        assert!(parse(&["corium", "bench", "coap://h/x", "--sockets", "0"]).is_err());
    }

    #[test]
    fn observe_flags() {
        let cli = parse(&[
            "corium",
            "observe",
            "coap://h/obs",
            "--count",
            "2",
            "--duration",
            "1.5",
            "-v",
        ])
        .unwrap();
        let Command::Observe(o) = cli.command else {
            panic!("expected observe")
        };
        assert_eq!(o.uri, "coap://h/obs");
        assert_eq!(o.count, Some(2));
        assert_eq!(o.duration, Some(Duration::from_millis(1500)));
        assert!(o.verbose);
        assert!(parse(&["corium", "observe", "coap://h/x", "--count", "0"]).is_err());
    }

    #[test]
    fn one_line_flattens() {
        assert_eq!(one_line(" a\nb\r\tc "), "a b  c");
    }
}
