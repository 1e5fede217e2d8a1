//! `corium serve`: the plugtest resources on one or more UDP sockets, and over
//! TCP (RFC 8323 `coap+tcp`) on the same addresses and ports.
//!
//! Logging goes through `tracing` to stderr: the level comes from `RUST_LOG`
//! when it is set, else `info` (`debug` with `-v`). Once every socket is
//! bound, lines go to stdout, `corium serving coap on ADDR[, ADDR…]` first,
//! then one per RFC 8323 scheme (`corium serving coap+tcp on ADDR[, ADDR…]`,
//! and `coaps+tcp`, `coap+ws`, `coaps+ws` when configured), naming the actual
//! addresses (port 0 resolved), so that scripts and tests can learn the port.
//! With `--cert`/`--key`, TLS listens on PORT+1 of each address (libcoap's
//! convention) unless `--secure-bind` says otherwise. With `-v`, every datagram is also logged (at debug
//! level) as a one-line dissection. Ctrl-C or SIGTERM stops the server
//! cleanly. With `--credentials FILE` (see `credentials.rs`), OSCORE-protected
//! requests (RFC 8613) are verified and answered protected, and the resources
//! the file's `uri` patterns name require OSCORE. With `--psk ID:KEY` or `--psk-file`,
//! CoAP over DTLS (`coaps`, RFC 7252 §9) listens on PORT+1 of each address (or
//! `--secure-bind`, or `--dtls-bind`, which takes precedence for DTLS), announced by a
//! last line `corium serving coaps on ADDR[, ADDR…]`. With `--workers N`, the
//! runtime has N worker threads and each UDP address N sockets sharing its port
//! with SO_REUSEPORT, each with its own driver and endpoint (see BENCHMARKS.md,
//! "Scaling with cores").

use std::io::IsTerminal as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use corium::Server;
use tracing_subscriber::EnvFilter;

use crate::{Failure, ServeArgs, EXIT_OK};

/// The CoAP default port (RFC 7252 §6.1).
const DEFAULT_PORT: u16 = 5683;

/// Installs the `tracing` subscriber (stderr, `RUST_LOG` or `default_level`).
fn init_logging(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Installs the Ctrl-C (SIGINT) and SIGTERM handlers now, and returns a future that
/// resolves when either signal arrives. Installing before the server announces itself
/// means a signal sent right after the "serving" line is never missed.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>, name: &'static str| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(e) => {
                        tracing::warn!("cannot listen for {name}: {e}");
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                () = wait(int, "Ctrl-C") => tracing::info!("Ctrl-C received, shutting down"),
                () = wait(term, "SIGTERM") => tracing::info!("SIGTERM received, shutting down"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    }
}

/// Binds the server; with the default addresses, falls back to IPv4 alone
/// when the IPv6 socket cannot be had (no IPv6 on the host). The errors of
/// `corium` name the address already.
/// Where the RFC 8323 transports other than plain TCP listen.
#[derive(Debug, Default, Clone)]
struct StreamBinds {
    tls: Option<corium::tls::TlsServer>,
    /// coaps+tcp addresses; PORT+1 of each UDP address when empty.
    secure: Vec<SocketAddr>,
    ws: Vec<SocketAddr>,
    wss: Vec<SocketAddr>,
    /// Multicast groups to join (RFC 7252 §8), on the port of the first address.
    groups: Vec<corium::multicast::MulticastGroup>,
    /// DTLS (`coaps://`, RFC 7252 §9) credentials, and where to listen instead of
    /// PORT+1 of each UDP address.
    dtls: Option<corium::corium_dtls::ServerConfig>,
    dtls_bind: Vec<SocketAddr>,
    /// `--dtls-max-sessions` and the other DTLS limits.
    dtls_limits: corium::corium_dtls::DtlsConfig,
    /// `--workers`: UDP sockets per address (SO_REUSEPORT shards).
    udp_shards: usize,
    /// `--fresh` paths and `--fresh-max-age` (RFC 9175 §2.4 item 1).
    fresh: Vec<String>,
    fresh_max_age: std::time::Duration,
}

/// Parses `--join`: `all`, or GROUP[@IFACE] (IFACE: an IPv4 address of the interface
/// for IPv4 groups, an interface index for IPv6 groups).
fn parse_join(spec: &str) -> Result<Vec<corium::multicast::MulticastGroup>, Failure> {
    use corium::multicast::{MulticastGroup, MulticastInterface};
    if spec == "all" {
        return Ok(MulticastGroup::all_coap_nodes_per_link());
    }
    let bad = |why: &str| Failure::usage(format!("--join {spec:?}: {why}"));
    let (group, iface) = match spec.split_once('@') {
        Some((g, i)) => (g, Some(i)),
        None => (spec, None),
    };
    let group: std::net::IpAddr = group
        .parse()
        .map_err(|_| bad("not an IP address (or `all`)"))?;
    if !group.is_multicast() {
        return Err(bad("not a multicast address"));
    }
    let interface = match (group, iface) {
        (_, None) => None,
        (std::net::IpAddr::V4(_), Some(i)) => Some(MulticastInterface::V4(
            i.parse()
                .map_err(|_| bad("IPv4 groups take an interface address"))?,
        )),
        (std::net::IpAddr::V6(_), Some(i)) => Some(MulticastInterface::Index(
            i.parse()
                .map_err(|_| bad("IPv6 groups take an interface index"))?,
        )),
    };
    Ok(vec![MulticastGroup { group, interface }])
}

async fn bind(
    addrs: &[SocketAddr],
    defaulted: bool,
    verbose: bool,
    max_body: Option<u64>,
    amplification_factor: usize,
    streams: &StreamBinds,
    credentials: Option<&crate::credentials::Credentials>,
) -> Result<Server, Failure> {
    let mut config = corium::EndpointConfig {
        // RFC 9175 §2.4 item 3; 0 turns the limit off.
        amplification_limit: (amplification_factor > 0).then(|| corium::AmplificationLimit {
            factor: amplification_factor,
            ..corium::AmplificationLimit::default()
        }),
        ..corium::EndpointConfig::default()
    };
    if let Some(max) = max_body {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        config.max_block1_body = max;
        config.max_block1_total = config.max_block1_total.max(max);
        config.max_cached_response_bytes = config.max_cached_response_bytes.max(max);
    }
    // RFC 9528 Appendix A.2: EDHOC at /.well-known/edhoc with the [[edhoc]] tables.
    let edhoc = match credentials {
        Some(c) => crate::edhoc::server(c.edhoc())?,
        None => None,
    };
    let router = || {
        let mut r = match &edhoc {
            Some(e) => crate::plugtest::router().route("/.well-known/edhoc", e.resource()),
            None => crate::plugtest::router(),
        };
        for path in &streams.fresh {
            r = r.require_fresh(path, streams.fresh_max_age);
        }
        r
    };
    if let Some(path) = streams
        .fresh
        .iter()
        .find(|p| *p != "*" && !router().has_route(p))
    {
        return Err(Failure::usage(format!("--fresh {path}: no such resource")));
    }
    let builder = |udp: &[SocketAddr]| -> Result<corium::ServerBuilder, Failure> {
        let port = udp.first().map_or(DEFAULT_PORT, SocketAddr::port);
        let mut b = Server::builder()
            .config(config.clone())
            .tcp(true)
            .shards(streams.udp_shards)
            .websocket(&streams.ws)
            .multicast(&streams.groups, port)
            // A group socket binds GROUP:PORT beside the unicast socket on the same port; a
            // unicast socket on the wildcard address (the default `[::]`/`0.0.0.0`) only
            // lets it with SO_REUSEADDR on both (the group sockets always set it).
            .reuse_address(!streams.groups.is_empty());
        if let Some(c) = credentials {
            // RFC 8613: protected requests are verified; these resources require it.
            let (oscore, required) = c.server()?;
            tracing::info!("OSCORE required on {}", required.join(", "));
            b = b.oscore(oscore);
            if let Some(e) = &edhoc {
                b = b.edhoc(e);
            }
        }
        if let Some(tls) = &streams.tls {
            // libcoap's convention: TLS on the UDP port + 1 (5684 by default).
            let secure: Vec<SocketAddr> = if streams.secure.is_empty() {
                // Port 0 (any free port) stays 0.
                udp.iter()
                    .map(|a| match a.port() {
                        0 => *a,
                        p => SocketAddr::new(a.ip(), p.saturating_add(1)),
                    })
                    .collect()
            } else {
                streams.secure.clone()
            };
            b = b.tls(tls, &secure).secure_websocket(tls, &streams.wss);
        }
        if let Some(dtls) = &streams.dtls {
            // RFC 7252 §9: coaps on 5684, i.e. PORT+1 of each UDP address by default.
            b = b
                .dtls(
                    dtls.clone(),
                    &crate::dtls::server_addrs(udp, &streams.dtls_bind, &streams.secure),
                )
                .dtls_limits(streams.dtls_limits.clone());
        }
        Ok(if verbose {
            // `-v`: every datagram dissected at debug level.
            b.trace_framed(|direction, peer, framing, bytes| {
                let sent = matches!(direction, corium::Direction::Sent);
                tracing::debug!("{}", crate::trace::dissect(sent, peer, framing, bytes));
            })
        } else {
            b
        })
    };
    match builder(addrs)?.bind(addrs, router()).await {
        Ok(server) => Ok(server),
        Err(e) if defaulted && e.kind() != std::io::ErrorKind::AddrInUse => {
            let v4: SocketAddr = (Ipv4Addr::UNSPECIFIED, DEFAULT_PORT).into();
            tracing::warn!("{e}; trying {v4} alone");
            builder(&[v4])?
                .bind(&[v4], router())
                .await
                .map_err(|e| Failure::other(e.to_string()))
        }
        Err(e) => Err(Failure::other(e.to_string())),
    }
}

/// Runs `corium serve` until Ctrl-C or SIGTERM.
pub(crate) fn run(args: ServeArgs) -> Result<u8, Failure> {
    init_logging(if args.verbose { "debug" } else { "info" });
    let defaulted = args.bind.is_empty();
    let addrs = if defaulted {
        vec![
            (Ipv6Addr::UNSPECIFIED, DEFAULT_PORT).into(),
            (Ipv4Addr::UNSPECIFIED, DEFAULT_PORT).into(),
        ]
    } else {
        args.bind
    };
    let mut groups = Vec::new();
    for spec in &args.join {
        groups.extend(parse_join(spec)?);
    }
    if !groups.is_empty() && addrs.first().is_some_and(|a| a.port() == 0) {
        return Err(Failure::usage(
            "--join needs a --bind with a fixed port: group members share the port".to_owned(),
        ));
    }
    let streams = StreamBinds {
        tls: crate::tls::server(args.cert.as_ref(), args.key.as_ref(), args.ca.as_ref())?,
        secure: args.secure_bind,
        ws: args.ws_bind,
        wss: args.wss_bind,
        groups,
        dtls: crate::dtls::server(
            &args.psk,
            args.psk_file.as_deref(),
            args.cert.as_deref(),
            args.key.as_deref(),
            args.ca.as_deref(),
        )?,
        dtls_bind: args.dtls_bind,
        dtls_limits: args.dtls_limits.config(),
        udp_shards: args.workers.map_or(1, usize::from),
        fresh: args.fresh,
        fresh_max_age: std::time::Duration::from_secs(args.fresh_max_age),
    };
    if streams.dtls.is_none() && args.dtls_limits.any() {
        return Err(Failure::usage(
            "--dtls-max-sessions and the other --dtls-* limits need --psk, --psk-file or an ECDSA --cert"
                .to_owned(),
        ));
    }
    if streams.dtls.is_none() && !streams.dtls_bind.is_empty() {
        return Err(Failure::usage(
            "--dtls-bind needs --psk or --psk-file".to_owned(),
        ));
    }
    if streams.tls.is_none() && streams.dtls.is_none() && !streams.secure.is_empty() {
        return Err(Failure::usage(
            "--secure-bind needs --cert/--key (TLS) or --psk/--psk-file (DTLS)".to_owned(),
        ));
    }
    let credentials = args
        .credentials
        .as_deref()
        .map(crate::credentials::load)
        .transpose()?;
    let runtime = match args.workers {
        // One worker thread per shard (issue 8: scaling with cores).
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(n))
            .enable_all()
            .build()
            .map_err(|e| Failure::other(format!("cannot start the async runtime: {e}")))?,
        None => crate::runtime(true)?,
    };
    runtime.block_on(async move {
        let server = bind(
            &addrs,
            defaulted,
            args.verbose,
            args.max_body,
            args.amplification_factor,
            &streams,
            credentials.as_ref(),
        )
        .await?;
        let bound = server
            .local_addrs()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let mut streams: Vec<(corium::wire::Scheme, Vec<String>)> = Vec::new();
        for (scheme, addr) in server.stream_addrs() {
            match streams.iter_mut().find(|(s, _)| *s == scheme) {
                Some((_, addrs)) => addrs.push(addr.to_string()),
                None => streams.push((scheme, vec![addr.to_string()])),
            }
        }
        let coaps = server
            .dtls_addrs()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let shutdown = shutdown_signal();
        // The first stdout lines, in one write so that a reader that stops after the
        // first line never leaves the second one to a closed pipe; a closed stdout is
        // no reason to stop serving.
        {
            use std::io::Write as _;
            let mut lines = format!("corium serving coap on {bound}\n");
            for (scheme, addrs) in &streams {
                lines.push_str(&format!(
                    "corium serving {scheme} on {}\n",
                    addrs.join(", ")
                ));
            }
            if !coaps.is_empty() {
                lines.push_str(&format!("corium serving coaps on {coaps}\n"));
            }
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(lines.as_bytes()).and_then(|()| out.flush());
        }
        tracing::info!("serving the plugtest resources on {bound}");
        server
            .run_until(shutdown)
            .await
            .map_err(|e| Failure::other(format!("server failed: {e}")))?;
        tracing::info!("stopped");
        Ok(EXIT_OK)
    })
}
