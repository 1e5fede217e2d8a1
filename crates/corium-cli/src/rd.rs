//! `corium rd`: a CoRE Resource Directory (RFC 9176) and its client side.
//!
//! * `corium rd [--bind ADDR:PORT]... [--data DIR]` runs the directory (crate
//!   `corium-rd`) with its registrations in `DIR/registrations.redb`. Once the sockets
//!   are bound, one line goes to stdout, `corium rd serving coap on ADDR[, ADDR…]`, so
//!   that scripts and tests can learn the port. Ctrl-C or SIGTERM stops it.
//! * `corium rd register RD-URI --ep NAME [--lt SECS] [--base URI] [--links-from
//!   URI-or-FILE]` registers (RFC 9176 §5) and keeps the registration alive: it updates
//!   before the lifetime ends (§5.3.1) and registers again when an update fails (the RD
//!   lost the registration: 4.04, or any other failure, as §5.3.1 says). Ctrl-C or
//!   SIGTERM removes the registration (§5.3.2) and exits. Each event is one stdout
//!   line: `registered ep=NAME at URI (lt N s)`, `updated URI`,
//!   `re-registered ep=NAME at URI`, `removed URI`.
//! * `corium rd lookup RD-URI [ep|res] [NAME=VALUE]...` looks up endpoints or resources
//!   (RFC 9176 §6, resources by default) and prints the links, one per line.
//!
//! An RD-URI without a path (`coap://host[:port]`) is discovered through
//! `/.well-known/core?rt=core.rd` (or `core.rd-lookup-res` / `-ep`, RFC 9176 §4.3),
//! falling back to `/rd`, `/rd-lookup/res` and `/rd-lookup/ep`; an RD-URI with a path
//! names the resource directly.

use std::io::IsTerminal as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use corium::wire::{parse_links, PercentEncoded, UriComponent};
use corium::{Client, Code, ContentFormat, OptionNumber, Response, Server};
use corium_rd::{AccessPolicy, RdConfig, RedbStore, ResourceDirectory};
use tracing_subscriber::EnvFilter;

use crate::{Failure, EXIT_ERROR_RESPONSE, EXIT_FAILURE, EXIT_NO_RESPONSE, EXIT_OK, EXIT_USAGE};

/// The CoAP default port (RFC 7252 §6.1).
const DEFAULT_PORT: u16 = 5683;

/// Where `corium rd` keeps its registrations unless `--data` says otherwise.
const DEFAULT_DATA_DIR: &str = "./corium-rd-data";

/// The longest wait between attempts while the RD cannot be reached.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Arguments of `corium rd`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct RdArgs {
    /// Client side (register, lookup); without one, run the directory.
    #[command(subcommand)]
    pub(crate) command: Option<RdCommand>,
    /// Options of the directory itself.
    #[command(flatten)]
    pub(crate) serve: RdServeArgs,
}

/// Who may change a registration (RFC 9176 §7.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum PolicyArg {
    /// Only the address and port that registered.
    Endpoint,
    /// Only the address that registered, any port.
    Host,
    /// Anybody (no protection).
    Open,
}

/// Options of the directory (`corium rd` without a subcommand).
#[derive(Debug, Args)]
pub(crate) struct RdServeArgs {
    /// Address to listen on (repeatable). Default: `[::]:5683` and `0.0.0.0:5683`.
    /// Port 0 picks a free port; the first line on stdout names the bound addresses.
    #[arg(long = "bind", value_name = "ADDR:PORT", value_parser = crate::parse_socket_addr)]
    pub(crate) bind: Vec<SocketAddr>,
    /// Directory of the registration database (created if missing).
    #[arg(long = "data", value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub(crate) data: PathBuf,
    /// Who may update or remove a registration: the registering address and port
    /// (endpoint), its address (host), or anybody (open).
    #[arg(long = "policy", value_enum, default_value = "endpoint")]
    pub(crate) policy: PolicyArg,
    /// Log at debug level (RUST_LOG, when set, takes precedence).
    #[arg(short = 'v', long = "verbose")]
    pub(crate) verbose: bool,
    /// Hard limit on registrations held (RFC 9176 §8: a directory bounds what clients
    /// can make it store); beyond it a registration gets 5.03. Default 10000.
    #[arg(long = "max-registrations", value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub(crate) max_registrations: Option<u64>,
    /// Hard limit on the link-format bytes of all registrations together. Default
    /// 67108864 (64 MiB; the memory it costs is several times that, see BENCHMARKS.md).
    #[arg(long = "max-total-payload", value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1024..=1 << 40))]
    pub(crate) max_total_payload: Option<u64>,
    /// Verify simple registrants' addresses with an Echo round trip (RFC 9175 §2.4)
    /// before fetching their /.well-known/core (RFC 9176 §5.1); clients must repeat
    /// the POST with the Echo value of the 4.01 (libcoap and corium do).
    #[arg(long = "verify-simple")]
    pub(crate) verify_simple: bool,
    /// Require fresh updates and removals of registrations (RFC 9176 §5.3.4): without
    /// an Echo value (RFC 9175) the RD made at most SECS ago they are answered 4.01
    /// with one, to be repeated with it (libcoap, aiocoap and corium do).
    #[arg(long = "fresh-updates", value_name = "SECS", value_parser = crate::parse_seconds)]
    pub(crate) fresh_updates: Option<Duration>,
}

/// The client side of `corium rd`.
#[derive(Debug, Subcommand)]
pub(crate) enum RdCommand {
    /// Register with a resource directory and keep the registration alive.
    Register(RegisterArgs),
    /// Look up endpoints or resources in a resource directory.
    Lookup(LookupArgs),
}

/// Arguments of `corium rd register`.
#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// The directory: `coap://host[:port]` (discovered) or its registration resource
    /// (`coap://host/rd`).
    #[arg(value_name = "RD-URI")]
    pub(crate) rd: String,
    /// Endpoint name (at most 63 bytes).
    #[arg(long = "ep", value_name = "NAME")]
    pub(crate) ep: String,
    /// Sector.
    #[arg(long = "d", value_name = "SECTOR")]
    pub(crate) sector: Option<String>,
    /// Lifetime in seconds (default 90000, the RD's default).
    #[arg(long = "lt", value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) lt: Option<u32>,
    /// Base URI of the registration (default: the address the registration comes
    /// from).
    #[arg(long = "base", value_name = "URI")]
    pub(crate) base: Option<String>,
    /// Endpoint type (repeatable).
    #[arg(long = "et", value_name = "TYPE")]
    pub(crate) et: Vec<String>,
    /// The links to register: a `coap://` URI to GET (typically a
    /// `/.well-known/core`) or a file in link format (`-` for stdin). Default: none.
    #[arg(long = "links-from", value_name = "URI-or-FILE")]
    pub(crate) links_from: Option<String>,
    /// Register once and exit (the registration stays until its lifetime ends).
    #[arg(long = "once")]
    pub(crate) once: bool,
    /// Give up waiting for one response after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = crate::parse_seconds)]
    pub(crate) timeout: Option<Duration>,
}

/// Arguments of `corium rd lookup`.
#[derive(Debug, Args)]
pub(crate) struct LookupArgs {
    /// The directory: `coap://host[:port]` (discovered) or a lookup resource
    /// (`coap://host/rd-lookup/res`).
    #[arg(value_name = "RD-URI")]
    pub(crate) rd: String,
    /// `ep` or `res` (default `res`), then search criteria NAME=VALUE (a trailing `*`
    /// matches a prefix), `page=N`, `count=N`.
    #[arg(value_name = "[ep|res] [NAME=VALUE]...")]
    pub(crate) args: Vec<String>,
    /// Print the payload exactly as received instead of one link per line.
    #[arg(long = "raw")]
    pub(crate) raw: bool,
    /// Give up waiting for the response after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = crate::parse_seconds)]
    pub(crate) timeout: Option<Duration>,
}

/// Runs `corium rd` and its subcommands.
pub(crate) fn run(args: RdArgs) -> Result<u8, Failure> {
    match args.command {
        None => serve(args.serve),
        Some(RdCommand::Register(a)) => {
            let prepared = prepare_register(a)?;
            crate::runtime(false)?.block_on(register(prepared))
        }
        Some(RdCommand::Lookup(a)) => {
            let prepared = prepare_lookup(a)?;
            crate::runtime(false)?.block_on(lookup(prepared))
        }
    }
}

// ---------------------------------------------------------------------------------
// The directory.

fn init_logging(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// A future that resolves on Ctrl-C or SIGTERM, with the handlers installed now (a
/// signal right after the ready line is not missed).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(int) => {}
                () = wait(term) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn serve(args: RdServeArgs) -> Result<u8, Failure> {
    init_logging(if args.verbose { "debug" } else { "info" });
    let defaulted = args.bind.is_empty();
    let addrs: Vec<SocketAddr> = if defaulted {
        vec![
            (Ipv6Addr::UNSPECIFIED, DEFAULT_PORT).into(),
            (Ipv4Addr::UNSPECIFIED, DEFAULT_PORT).into(),
        ]
    } else {
        args.bind.clone()
    };
    let store = RedbStore::open_dir(&args.data).map_err(|e| Failure::other(e.to_string()))?;
    let mut config = RdConfig {
        access_policy: match args.policy {
            PolicyArg::Endpoint => AccessPolicy::SameEndpoint,
            PolicyArg::Host => AccessPolicy::SameHost,
            PolicyArg::Open => AccessPolicy::Open,
        },
        ..RdConfig::default()
    };
    config.verify_simple_registrants = args.verify_simple;
    config.fresh_updates = args.fresh_updates;
    if let Some(n) = args.max_registrations {
        config.max_registrations = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = args.max_total_payload {
        config.max_total_payload = usize::try_from(n).unwrap_or(usize::MAX);
    }
    let data = args.data.display().to_string();
    crate::runtime(true)?.block_on(async move {
        let rd = ResourceDirectory::open(config, Arc::new(store))
            .await
            .map_err(|e| Failure::other(e.to_string()))?;
        let server = match Server::builder().bind(&addrs, rd.router()).await {
            Ok(s) => s,
            Err(e) if defaulted && e.kind() != std::io::ErrorKind::AddrInUse => {
                let v4: SocketAddr = (Ipv4Addr::UNSPECIFIED, DEFAULT_PORT).into();
                tracing::warn!("{e}; trying {v4} alone");
                Server::builder()
                    .bind(&[v4], rd.router())
                    .await
                    .map_err(|e| Failure::other(e.to_string()))?
            }
            Err(e) => return Err(Failure::other(e.to_string())),
        };
        let bound = server
            .local_addrs()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let shutdown = shutdown_signal();
        println!("corium rd serving coap on {bound}");
        tracing::info!(
            "resource directory on {bound}, data in {data}, {} registrations",
            rd.registration_count()
        );
        server
            .run_until(shutdown)
            .await
            .map_err(|e| Failure::other(format!("server failed: {e}")))?;
        tracing::info!("stopped");
        Ok(EXIT_OK)
    })
}

// ---------------------------------------------------------------------------------
// Client side.

/// Where the links of a registration come from.
#[derive(Debug)]
enum LinksSource {
    None,
    Uri(String),
    Document(String),
}

/// `corium rd register`, checked.
#[derive(Debug)]
struct Register {
    rd: String,
    query: Vec<String>,
    ep: String,
    lt: u32,
    links: LinksSource,
    once: bool,
    timeout: Option<Duration>,
}

/// Checks an RD-URI: a `coap://` URI the client can use.
fn check_uri(what: &str, uri: &str) -> Result<(), Failure> {
    crate::uri::parse(uri).map_err(|e| Failure::usage(format!("{what}: {e}")))?;
    Ok(())
}

/// Whether a checked URI has a path of its own (beyond `/`).
fn has_path(uri: &str) -> bool {
    crate::uri::parse(uri).is_ok_and(|t| t.path.iter().any(|s| !s.is_empty()))
}

fn check_link_format(what: &str, doc: &str) -> Result<(), Failure> {
    if let Some(Err(e)) = parse_links(doc).find(Result::is_err) {
        return Err(Failure::usage(format!("{what} is not link format: {e}")));
    }
    Ok(())
}

fn prepare_register(a: RegisterArgs) -> Result<Register, Failure> {
    check_uri("RD-URI", &a.rd)?;
    if a.ep.is_empty() || a.ep.len() > 63 || a.ep.chars().any(char::is_control) {
        return Err(Failure::usage(
            "--ep must be 1 to 63 bytes without control characters",
        ));
    }
    if let Some(base) = &a.base {
        corium_rd::check_base_uri(base).map_err(|e| Failure::usage(format!("--base: {e}")))?;
    }
    let links = match a.links_from {
        None => LinksSource::None,
        Some(src) if src.contains("://") => {
            check_uri("--links-from", &src)?;
            LinksSource::Uri(src)
        }
        Some(path) => {
            let doc = if path == "-" {
                std::io::read_to_string(std::io::stdin())
                    .map_err(|e| Failure::usage(format!("cannot read links from stdin: {e}")))?
            } else {
                std::fs::read_to_string(&path).map_err(|e| {
                    Failure::usage(format!("cannot read --links-from {path:?}: {e}"))
                })?
            };
            check_link_format(&format!("--links-from {path:?}"), &doc)?;
            LinksSource::Document(compact_links(&doc))
        }
    };
    let mut query = vec![format!("ep={}", a.ep)];
    if let Some(d) = &a.sector {
        query.push(format!("d={d}"));
    }
    if let Some(lt) = a.lt {
        query.push(format!("lt={lt}"));
    }
    if let Some(base) = &a.base {
        query.push(format!("base={base}"));
    }
    for et in &a.et {
        query.push(format!("et={et}"));
    }
    Ok(Register {
        rd: a.rd,
        query,
        ep: a.ep,
        lt: a.lt.unwrap_or(corium_rd::config::DEFAULT_LIFETIME),
        links,
        once: a.once,
        timeout: a.timeout,
    })
}

/// A client whose socket can reach `uri`'s host: IPv4 for IPv4 hosts, IPv6 otherwise.
async fn bind_client(uri: &str) -> Result<Client, Failure> {
    let target = crate::uri::parse(uri).map_err(Failure::usage)?;
    let first = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| Failure::usage(format!("cannot resolve host {:?}: {e}", target.host)))?
        .next()
        .ok_or_else(|| Failure::usage(format!("host {:?} has no address", target.host)))?;
    let local: SocketAddr = if first.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    Client::bind(local)
        .await
        .map_err(|e| Failure::other(format!("cannot open a UDP socket on {local}: {e}")))
}

/// A request error as a failure with the CLI's exit codes.
fn request_failure(e: corium::Error) -> Failure {
    let exit_code = if e.is_uri() {
        EXIT_USAGE
    } else if e.is_timeout() || e.is_reset() {
        EXIT_NO_RESPONSE
    } else {
        EXIT_FAILURE
    };
    Failure {
        exit_code,
        message: e.to_string(),
    }
}

/// An error response as a failure: `4.00 Bad Request: diagnostic`, exit code 1.
fn response_failure(what: &str, r: &Response) -> Failure {
    let mut message = format!("{what}: {:?}", r.code);
    if let Some(diag) = r.payload_str().filter(|d| !d.is_empty()) {
        message.push_str(": ");
        message.push_str(&crate::one_line(diag));
    }
    Failure {
        exit_code: EXIT_ERROR_RESPONSE,
        message,
    }
}

async fn send(
    client: &Client,
    method: Code,
    uri: &str,
    query: &[String],
    payload: Option<&str>,
    timeout: Option<Duration>,
) -> Result<Response, Failure> {
    let mut req = client.request(method, uri);
    for q in query {
        req = req.option(OptionNumber::URI_QUERY, q.as_bytes().to_vec());
    }
    if let Some(p) = payload {
        req = req
            .payload(p.as_bytes().to_vec())
            .content_format(ContentFormat::LINK_FORMAT);
    }
    if let Some(t) = timeout {
        req = req.timeout(t);
    }
    req.send().await.map_err(request_failure)
}

/// Finds the resource of type `rt` (RFC 9176 §4.3): the RD-URI itself when it has a
/// path, else the first link of `/.well-known/core?rt=RT`, else `fallback`.
async fn discover(
    client: &Client,
    rd: &str,
    rt: &str,
    fallback: &str,
    timeout: Option<Duration>,
) -> Result<String, Failure> {
    if has_path(rd) {
        return Ok(rd.to_owned());
    }
    let wkc = corium_rd::resolve_reference(rd, "/.well-known/core");
    let r = send(
        client,
        Code::GET,
        &wkc,
        &[format!("rt={rt}")],
        None,
        timeout,
    )
    .await?;
    if r.code == Code::CONTENT {
        if let Some(target) = r.payload_str().and_then(|doc| {
            parse_links(doc)
                .find_map(Result::ok)
                .map(|l| l.target.to_owned())
        }) {
            return Ok(corium_rd::resolve_reference(&wkc, &target));
        }
    }
    Ok(corium_rd::resolve_reference(rd, fallback))
}

/// The registration resource's URI from a 2.01's Location-Path.
fn registration_uri(registration: &str, r: &Response) -> Option<String> {
    let mut path = String::new();
    for segment in r.options.get_all(OptionNumber::LOCATION_PATH) {
        path.push('/');
        path.push_str(
            &PercentEncoded {
                bytes: segment,
                component: UriComponent::PathSegment,
            }
            .to_string(),
        );
    }
    (!path.is_empty()).then(|| corium_rd::resolve_reference(registration, &path))
}

/// The links to register, read now (a URI is fetched each time).
async fn links(
    client: &Client,
    source: &LinksSource,
    timeout: Option<Duration>,
) -> Result<String, Failure> {
    match source {
        LinksSource::None => Ok(String::new()),
        LinksSource::Document(doc) => Ok(doc.clone()),
        LinksSource::Uri(uri) => {
            let mut req = client
                .request(Code::GET, uri)
                .accept(ContentFormat::LINK_FORMAT);
            if let Some(t) = timeout {
                req = req.timeout(t);
            }
            let r = req.send().await.map_err(request_failure)?;
            if r.code != Code::CONTENT {
                return Err(response_failure(&format!("GET {uri}"), &r));
            }
            let doc = String::from_utf8(r.payload)
                .map_err(|_| Failure::other(format!("{uri}: the links are not UTF-8")))?;
            check_link_format(uri, &doc).map_err(|f| Failure::other(f.message))?;
            Ok(compact_links(&doc))
        }
    }
}

/// Why a registration did not succeed.
enum RegisterError {
    /// The RD answered with an error.
    Refused {
        code: Code,
        /// Max-Age of the answer (RFC 9176 §4: retry a 5.03 after it).
        max_age: u32,
        failure: Failure,
    },
    /// No answer, or a local failure.
    Failed(Failure),
}

impl RegisterError {
    fn into_failure(self) -> Failure {
        match self {
            RegisterError::Refused { failure, .. } | RegisterError::Failed(failure) => failure,
        }
    }

    fn message(&self) -> &str {
        match self {
            RegisterError::Refused { failure, .. } | RegisterError::Failed(failure) => {
                &failure.message
            }
        }
    }
}

/// One registration (RFC 9176 §5): returns the registration resource's URI.
async fn register_once(
    client: &Client,
    p: &Register,
    registration: &str,
) -> Result<String, RegisterError> {
    let doc = links(client, &p.links, p.timeout)
        .await
        .map_err(RegisterError::Failed)?;
    let r = send(
        client,
        Code::POST,
        registration,
        &p.query,
        Some(&doc),
        p.timeout,
    )
    .await
    .map_err(RegisterError::Failed)?;
    if r.code != Code::CREATED && r.code != Code::CHANGED {
        return Err(RegisterError::Refused {
            code: r.code,
            max_age: r.max_age(),
            failure: response_failure("registration refused", &r),
        });
    }
    registration_uri(registration, &r).ok_or_else(|| {
        RegisterError::Failed(Failure::other("the RD answered without a Location-Path"))
    })
}

/// When to refresh a registration of lifetime `lt`: three quarters into a short one, a
/// minute before the end of a long one.
fn refresh_after(lt: u32) -> Duration {
    let lt = Duration::from_secs(u64::from(lt));
    if lt <= Duration::from_secs(240) {
        lt.mul_f64(0.75)
    } else {
        lt - Duration::from_secs(60)
    }
}

async fn register(p: Register) -> Result<u8, Failure> {
    let client = bind_client(&p.rd).await?;
    let registration = discover(&client, &p.rd, "core.rd", "/rd", p.timeout).await?;
    let mut location = register_once(&client, &p, &registration)
        .await
        .map_err(RegisterError::into_failure)?;
    println!("registered ep={} at {location} (lt {} s)", p.ep, p.lt);
    if p.once {
        return Ok(EXIT_OK);
    }
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut wait = refresh_after(p.lt);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(wait) => {}
        }
        // RFC 9176 §5.3.1: an update with no parameters resets the lifetime.
        let update = send(&client, Code::POST, &location, &[], None, p.timeout).await;
        match update {
            Ok(r) if r.code == Code::CHANGED => {
                println!("updated {location}");
                failures = 0;
                wait = refresh_after(p.lt);
                continue;
            }
            Ok(r) => eprintln!("{}", response_failure("update failed", &r).message),
            Err(f) => eprintln!("update failed: {}", f.message),
        }
        // "If the registration update fails in any way, including "Not Found" and
        // request timeouts, ... the registering endpoint SHOULD attempt registration
        // again."
        match register_once(&client, &p, &registration).await {
            Ok(l) => {
                location = l;
                println!("re-registered ep={} at {location}", p.ep);
                failures = 0;
                wait = refresh_after(p.lt);
            }
            // A client error other than 4.29 will not go away by retrying.
            Err(RegisterError::Refused { code, failure, .. })
                if code.is_client_error() && code != Code::TOO_MANY_REQUESTS =>
            {
                return Err(failure);
            }
            Err(e) => {
                eprintln!("registration failed: {}", e.message());
                failures = failures.saturating_add(1);
                wait = match e {
                    RegisterError::Refused { code, max_age, .. }
                        if code == Code::SERVICE_UNAVAILABLE =>
                    {
                        Duration::from_secs(u64::from(max_age.max(1)))
                    }
                    _ => Duration::from_secs(1u64 << failures.min(6)).min(MAX_RETRY),
                };
            }
        }
    }
    // RFC 9176 §5.3.2: remove the registration on shutdown.
    let removal = send(
        &client,
        Code::DELETE,
        &location,
        &[],
        None,
        Some(p.timeout.unwrap_or(Duration::from_secs(5))),
    )
    .await;
    match removal {
        Ok(r) if r.code == Code::DELETED => {
            println!("removed {location}");
            Ok(EXIT_OK)
        }
        Ok(r) => Err(response_failure("removal failed", &r)),
        Err(f) => Err(f),
    }
}

/// `corium rd lookup`, checked.
#[derive(Debug)]
struct Lookup {
    rd: String,
    endpoints: bool,
    query: Vec<String>,
    raw: bool,
    timeout: Option<Duration>,
}

fn prepare_lookup(a: LookupArgs) -> Result<Lookup, Failure> {
    check_uri("RD-URI", &a.rd)?;
    let mut args = a.args.into_iter().peekable();
    let endpoints = match args.peek().map(String::as_str) {
        Some("ep") => {
            args.next();
            true
        }
        Some("res") => {
            args.next();
            false
        }
        _ => false,
    };
    let query: Vec<String> = args.collect();
    for q in &query {
        match q.split_once('=') {
            Some((name, _)) if !name.is_empty() => {}
            _ => {
                return Err(Failure::usage(format!(
                    "invalid lookup argument {q:?} (expected ep, res or NAME=VALUE)"
                )))
            }
        }
    }
    Ok(Lookup {
        rd: a.rd,
        endpoints,
        query,
        raw: a.raw,
        timeout: a.timeout,
    })
}

/// Removes the whitespace outside targets and quoted strings (line breaks between links
/// and around `;` are common in files, and some RDs refuse them, RFC 6690 §2).
fn compact_links(doc: &str) -> String {
    let mut out = String::with_capacity(doc.len());
    let (mut angle, mut quoted, mut escaped) = (false, false, false);
    for c in doc.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' if !angle => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            c if c.is_whitespace() && !angle && !quoted => continue,
            _ => {}
        }
        out.push(c);
    }
    out
}

/// Splits a link-format document into its links (at commas outside `<>` and quotes).
fn split_links(doc: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut angle, mut quoted, mut escaped) = (0, false, false, false);
    for (i, c) in doc.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' if !angle => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !angle && !quoted => {
                out.push(doc[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(doc[start..].trim());
    out.retain(|l| !l.is_empty());
    out
}

async fn lookup(p: Lookup) -> Result<u8, Failure> {
    let client = bind_client(&p.rd).await?;
    let (rt, fallback) = if p.endpoints {
        ("core.rd-lookup-ep", "/rd-lookup/ep")
    } else {
        ("core.rd-lookup-res", "/rd-lookup/res")
    };
    let uri = discover(&client, &p.rd, rt, fallback, p.timeout).await?;
    let r = send(&client, Code::GET, &uri, &p.query, None, p.timeout).await?;
    if r.code != Code::CONTENT {
        return Err(response_failure("lookup failed", &r));
    }
    let doc = String::from_utf8_lossy(&r.payload);
    let mut out = String::new();
    if p.raw {
        out.push_str(&doc);
        if !out.is_empty() {
            out.push('\n');
        }
    } else {
        for link in split_links(&doc) {
            out.push_str(link);
            out.push('\n');
        }
    }
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(EXIT_OK),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(EXIT_OK),
        Err(e) => Err(Failure::other(format!("cannot write to stdout: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_compact() {
        assert_eq!(
            compact_links("</a b>;\n  t=\"x \\\" y\",\n</c>;rt=z\n"),
            "</a b>;t=\"x \\\" y\",</c>;rt=z"
        );
    }

    #[test]
    fn links_split_at_top_level_commas() {
        assert_eq!(
            split_links("<a,b>;t=\"x,\\\"y\",\n <c>;rt=z,<d>"),
            ["<a,b>;t=\"x,\\\"y\"", "<c>;rt=z", "<d>"]
        );
        assert!(split_links("").is_empty());
    }

    #[test]
    fn refresh_before_expiry() {
        assert_eq!(refresh_after(2), Duration::from_millis(1500));
        assert_eq!(refresh_after(90_000), Duration::from_secs(89_940));
        assert!(refresh_after(1) < Duration::from_secs(1));
    }
}
