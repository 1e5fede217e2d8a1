//! `corium serve`: the plugtest resources on one or more UDP sockets, and over
//! TCP (RFC 8323 `coap+tcp`) on the same addresses and ports.
//!
//! Logging goes through `tracing` to stderr: the level comes from `RUST_LOG`
//! when it is set, else `info` (`debug` with `-v`). Once every socket is
//! bound, two lines go to stdout, `corium serving coap on ADDR[, ADDR…]` and
//! `corium serving coap+tcp on ADDR[, ADDR…]`, naming the actual addresses
//! (port 0 resolved), so that scripts and tests can learn the port. With `-v`, every datagram is also logged (at debug
//! level) as a one-line dissection. Ctrl-C or SIGTERM stops the server
//! cleanly.

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
async fn bind(
    addrs: &[SocketAddr],
    defaulted: bool,
    verbose: bool,
    max_body: Option<u64>,
) -> Result<Server, Failure> {
    let mut config = corium::EndpointConfig::default();
    if let Some(max) = max_body {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        config.max_block1_body = max;
        config.max_block1_total = config.max_block1_total.max(max);
        config.max_cached_response_bytes = config.max_cached_response_bytes.max(max);
    }
    let builder = || {
        let b = Server::builder().config(config.clone()).tcp(true);
        if verbose {
            // `-v`: every datagram dissected at debug level.
            b.trace_framed(|direction, peer, framing, bytes| {
                let sent = matches!(direction, corium::Direction::Sent);
                tracing::debug!("{}", crate::trace::dissect(sent, peer, framing, bytes));
            })
        } else {
            b
        }
    };
    match builder().bind(addrs, crate::plugtest::router()).await {
        Ok(server) => Ok(server),
        Err(e) if defaulted && e.kind() != std::io::ErrorKind::AddrInUse => {
            let v4: SocketAddr = (Ipv4Addr::UNSPECIFIED, DEFAULT_PORT).into();
            tracing::warn!("{e}; trying {v4} alone");
            builder()
                .bind(&[v4], crate::plugtest::router())
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
    crate::runtime(true)?.block_on(async move {
        let server = bind(&addrs, defaulted, args.verbose, args.max_body).await?;
        let bound = server
            .local_addrs()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let tcp = server
            .tcp_addrs()
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
            let lines =
                format!("corium serving coap on {bound}\ncorium serving coap+tcp on {tcp}\n");
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
