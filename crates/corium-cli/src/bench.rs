//! `corium bench`: a closed-loop load generator.
//!
//! For speed it skips the `corium::Client` futures: each of `--sockets`
//! tasks owns one UDP socket and one sans-IO [`Endpoint`] and drives them
//! directly — receive a batch of datagrams → `handle_datagram` → drain
//! `poll_event` (record latencies, send the next request) → drain
//! `poll_transmit` → sleep until the next datagram or `poll_timeout`. Each
//! task keeps `--window` GET requests in flight (NSTART is raised to the
//! window, RFC 7252 §4.7 allows a configured NSTART).
//!
//! The run is a warm-up (requests sent, nothing recorded) followed by the
//! measurement; requests sent during the measurement are counted. After it,
//! no more requests are sent and the answers still in flight get a short
//! grace period; whatever is still unanswered then is counted as lost.
//!
//! The last line on stdout is machine-readable (`bench/peers.sh` parses it):
//!
//! ```text
//! RESULT rps=<f64> p50_us=<u64> p99_us=<u64> sent=<u64> ok=<u64> lost=<u64>
//! ```
//!
//! `ok` counts 2.xx responses; `lost` counts requests that failed (timeout,
//! no acknowledgement, reset) or were unanswered at the end. Error responses
//! (4.xx/5.xx) are in neither and shown in the summary.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs as _};
use std::sync::Arc;
use std::time::Duration;

use corium::OptionNumber;
use corium_proto::{Endpoint, EndpointConfig, Event, Request, RequestId, RequestOptions};
use rand::SeedableRng as _;
use tokio::net::UdpSocket;

use crate::bench_oscore::{Bindings, OscoreLoad};
use crate::{BenchArgs, Failure, EXIT_NO_RESPONSE, EXIT_OK};

/// `coaps://` (DTLS, PSK): requests, handshakes and idle sessions.
#[path = "bench_dtls.rs"]
mod dtls;

/// `coap+tcp://`, `coaps+tcp://`, `coap+ws://`, `coaps+ws://` (RFC 8323).
#[path = "bench_stream.rs"]
mod stream;

/// `--peers N`: many distinct client endpoints, each a request every `--interval`.
#[path = "bench_peers.rs"]
mod peers;

/// How long a message ID stays reserved in the load generator's endpoint.
///
/// RFC 7252 §4.4 asks for EXCHANGE_LIFETIME (247 s), but one socket has only
/// 65 536 message IDs: at 10 000 requests per second they would run out after
/// 6.5 s, and the endpoint's table of reserved IDs would grow with the rate.
/// A load generator cannot honour it, so the endpoint may reuse IDs after
/// this short delay. The worker makes sure it never actually does so towards
/// the server: it moves to a fresh socket before the ID space wraps
/// ([`ROTATE_AFTER`]), because a server that remembers message IDs for
/// EXCHANGE_LIFETIME (RFC 7252 §4.5) would answer a reused one with a stale,
/// cached response.
const MESSAGE_ID_LIFETIME: Duration = Duration::from_millis(100);

/// Requests after which a worker moves to a fresh socket (see [`worker`]).
const ROTATE_AFTER: u64 = 60_000;

/// Requests a socket may start at most: below the 65 536 message IDs, so that
/// none is reused even when the previous socket is slow to drain.
const MAX_PER_SOCKET: u64 = 65_000;

/// Datagrams handled per wake-up before events and transmits are drained.
const RECV_BATCH: usize = 64;

/// The longest the load generator waits after the measurement for the
/// answers still in flight.
const MAX_GRACE: Duration = Duration::from_millis(500);

/// Largest datagram accepted.
const RECV_BUFFER: usize = 65_535;

/// The plan shared by every worker.
#[derive(Debug)]
struct Plan {
    /// The server.
    peer: SocketAddr,
    /// The request sent over and over.
    request: Request,
    /// Requests in flight per socket.
    window: usize,
    /// Non-confirmable requests.
    non: bool,
    /// Per-request timeout.
    timeout: Duration,
    /// The common clock origin.
    epoch: std::time::Instant,
    /// End of the warm-up, since `epoch`.
    warmup_end: Duration,
    /// End of the measurement, since `epoch`.
    end: Duration,
    /// End of the grace period, since `epoch`.
    grace_end: Duration,
    /// Requests after which a worker moves to a fresh socket.
    rotate_after: u64,
    /// Requests a socket may start at most.
    max_per_socket: u64,
}

/// What one worker counted.
#[derive(Debug, Default)]
struct Tally {
    /// Requests sent during the measurement.
    sent: u64,
    /// 2.xx responses to them.
    ok: u64,
    /// Other responses to them.
    error_responses: u64,
    /// Failed or unanswered.
    lost: u64,
    /// `send_request` refusals (the endpoint's tables were full).
    refused: u64,
    /// Latencies of the `ok` responses, in µs.
    latencies_us: Vec<u32>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.error_responses += other.error_responses;
        self.lost += other.lost;
        self.refused += other.refused;
        self.latencies_us.extend(other.latencies_us);
    }
}

/// The GET request for `target` (RFC 7252 §6.4: Uri-Host for names, Uri-Path,
/// Uri-Query; the port is the destination's, so no Uri-Port).
fn build_request(target: &crate::uri::Target) -> Request {
    let mut req = Request::new(corium::Code::GET);
    if !target.host_is_ip {
        req.options
            .push(OptionNumber::URI_HOST, target.host.as_bytes().to_vec());
    }
    for seg in &target.path {
        req.options.push(OptionNumber::URI_PATH, seg.clone());
    }
    for arg in &target.query {
        req.options.push(OptionNumber::URI_QUERY, arg.clone());
    }
    req
}

/// The endpoint configuration of one worker.
fn endpoint_config(window: usize, timeout: Duration) -> EndpointConfig {
    let mut config = EndpointConfig::default();
    config.transmission.nstart = window;
    config.message_id_lifetime = Some(MESSAGE_ID_LIFETIME);
    config.default_request_timeout = Some(timeout);
    config.max_client_exchanges = window.saturating_mul(2).max(16);
    config.max_queued_per_peer = window;
    config.max_peers = 16;
    config
}

/// The protocol clock of the run.
fn clock(plan: &Plan) -> corium_proto::Instant {
    corium_proto::Instant::from_duration(plan.epoch.elapsed())
}

/// Passes the datagram `first` received into `buf`, then up to [`RECV_BATCH`] - 1 more
/// already queued on `sock`, to `deliver`. Transient errors (an ICMP echo, nothing
/// queued) end the batch; others are returned.
fn receive_batch(
    sock: &UdpSocket,
    first: std::io::Result<usize>,
    buf: &mut [u8],
    mut deliver: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    match first {
        Ok(n) => deliver(&buf[..n]),
        Err(e) if is_transient(&e) => return Ok(()),
        Err(e) => return Err(e),
    }
    for _ in 1..RECV_BATCH {
        match sock.try_recv(buf) {
            Ok(n) => deliver(&buf[..n]),
            Err(e) if is_transient(&e) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The wildcard address of `peer`'s family, any port: where a worker's socket binds.
fn any_local(peer: SocketAddr) -> SocketAddr {
    if peer.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    }
}

/// A worker's sans-IO endpoint, configured for the plan's window and timeout.
fn worker_endpoint(plan: &Plan) -> Endpoint<SocketAddr> {
    let rng = rand::rngs::SmallRng::from_entropy();
    Endpoint::new(endpoint_config(plan.window, plan.timeout), Box::new(rng))
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub(crate) fn percentile(sorted: &[u32], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    u64::from(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Whether an I/O error is the echo of an ICMP port-unreachable on a
/// connected UDP socket (the server is not up yet or went away): those
/// requests simply go unanswered.
fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::Interrupted
    )
}

/// One client socket and the endpoint that speaks through it.
struct Conn {
    /// Distinguishes the sockets of one worker (request IDs restart at each).
    generation: u64,
    /// The socket, connected to the server.
    sock: UdpSocket,
    /// The sans-IO endpoint.
    ep: Endpoint<SocketAddr>,
    /// Requests started on this socket (each takes a fresh message ID).
    requests: u64,
    /// Requests on this socket without an outcome yet.
    in_flight: usize,
}

impl Conn {
    /// Opens a socket of the server's address family on an ephemeral port.
    async fn open(plan: &Plan, generation: u64) -> std::io::Result<Conn> {
        let sock = UdpSocket::bind(any_local(plan.peer)).await?;
        sock.connect(plan.peer).await?;
        let ep = worker_endpoint(plan);
        Ok(Conn {
            generation,
            sock,
            ep,
            requests: 0,
            in_flight: 0,
        })
    }

    /// Hands a received datagram, and up to [`RECV_BATCH`] - 1 more already
    /// queued, to the endpoint.
    fn handle_batch(
        &mut self,
        plan: &Plan,
        first: std::io::Result<usize>,
        buf: &mut [u8],
    ) -> std::io::Result<()> {
        let Conn { sock, ep, .. } = self;
        receive_batch(sock, first, buf, |datagram| {
            ep.handle_datagram(clock(plan), plan.peer, datagram);
        })
    }

    /// Sends every queued datagram.
    async fn flush(&mut self) -> std::io::Result<()> {
        while let Some(tx) = self.ep.poll_transmit() {
            if let Err(e) = self.sock.send(&tx.payload).await {
                if !is_transient(&e) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// Records the outcomes the endpoint of `conn` reports; with OSCORE, each response
/// counts with its verified inner code.
fn drain_events(
    conn: &mut Conn,
    t: corium_proto::Instant,
    in_flight: &mut HashMap<(u64, RequestId), (corium_proto::Instant, bool)>,
    tally: &mut Tally,
    oscore: Option<(&OscoreLoad, &mut Bindings)>,
) {
    let Conn {
        ep,
        generation,
        in_flight: conn_in_flight,
        ..
    } = conn;
    match oscore {
        Some((load, bindings)) => record_outcomes_with(
            ep,
            *generation,
            conn_in_flight,
            t,
            in_flight,
            tally,
            &mut |key, response| bindings.verify(load, key, response),
        ),
        None => record_outcomes(ep, *generation, conn_in_flight, t, in_flight, tally),
    }
}

/// Records the outcomes `ep` reports for requests of `generation`.
fn record_outcomes(
    ep: &mut Endpoint<SocketAddr>,
    generation: u64,
    conn_in_flight: &mut usize,
    t: corium_proto::Instant,
    in_flight: &mut HashMap<(u64, RequestId), (corium_proto::Instant, bool)>,
    tally: &mut Tally,
) {
    record_outcomes_with(
        ep,
        generation,
        conn_in_flight,
        t,
        in_flight,
        tally,
        &mut |_, response| response.code,
    );
}

/// [`record_outcomes`], counting each response with the code `code_of` gives it.
fn record_outcomes_with(
    ep: &mut Endpoint<SocketAddr>,
    generation: u64,
    conn_in_flight: &mut usize,
    t: corium_proto::Instant,
    in_flight: &mut HashMap<(u64, RequestId), (corium_proto::Instant, bool)>,
    tally: &mut Tally,
    code_of: &mut dyn FnMut((u64, RequestId), &corium::Response) -> corium::Code,
) {
    while let Some(event) = ep.poll_event() {
        let (request, code) = match event {
            Event::Response {
                request, response, ..
            } => (request, Some(code_of((generation, request), &response))),
            Event::RequestFailed { request, .. } => (request, None),
            _ => continue,
        };
        let Some((sent_at, measured)) = in_flight.remove(&(generation, request)) else {
            continue;
        };
        *conn_in_flight -= 1;
        if !measured {
            continue;
        }
        match code {
            Some(code) if code.class() == 2 => {
                tally.ok += 1;
                let us = (t - sent_at).as_micros();
                tally
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Some(_) => tally.error_responses += 1,
            None => tally.lost += 1,
        }
    }
}

/// Waits for a datagram on `sock` (forever when there is none).
async fn recv_on(sock: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<usize> {
    match sock {
        Some(sock) => sock.recv(buf).await,
        None => std::future::pending().await,
    }
}

/// One worker's closed loop.
///
/// A socket never uses more than [`ROTATE_AFTER`] message IDs: then the
/// worker opens a fresh socket (a new ephemeral port, so a new peer for the
/// server) and sends the next requests there while the old one drains. Thus
/// no message ID is ever reused towards the server, and its deduplication
/// cache (RFC 7252 §4.5, EXCHANGE_LIFETIME) cannot mistake a new request for
/// an old one, however fast the load.
async fn worker(plan: Arc<Plan>, oscore: Option<Arc<OscoreLoad>>) -> std::io::Result<Tally> {
    let now = || clock(&plan);
    let deadline = |since_epoch: Duration| tokio::time::Instant::from_std(plan.epoch + since_epoch);
    let options = RequestOptions {
        non_confirmable: plan.non,
        timeout: Some(plan.timeout),
        ..RequestOptions::default()
    };
    let warmup_end = corium_proto::Instant::from_duration(plan.warmup_end);
    let end = corium_proto::Instant::from_duration(plan.end);
    let grace_end = corium_proto::Instant::from_duration(plan.grace_end);

    let mut current = Conn::open(&plan, 0).await?;
    let mut draining: Option<Conn> = None;
    // (socket generation, request) → (send time, sent during the measurement).
    let mut in_flight: HashMap<(u64, RequestId), (corium_proto::Instant, bool)> =
        HashMap::with_capacity(plan.window * 2);
    let mut tally = Tally::default();
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut old_buf = vec![0u8; RECV_BUFFER];
    let mut bindings = Bindings::default();

    loop {
        let t = now();
        let load = oscore.as_deref();
        drain_events(
            &mut current,
            t,
            &mut in_flight,
            &mut tally,
            load.map(|l| (l, &mut bindings)),
        );
        if let Some(old) = draining.as_mut() {
            drain_events(
                old,
                t,
                &mut in_flight,
                &mut tally,
                load.map(|l| (l, &mut bindings)),
            );
        }
        let sending = t < end;
        if !sending && (in_flight.is_empty() || t >= grace_end) {
            break;
        }
        if sending && current.requests >= plan.rotate_after && draining.is_none() {
            let fresh = Conn::open(&plan, current.generation + 1).await?;
            draining = Some(std::mem::replace(&mut current, fresh));
        }
        // Keep the window full (a socket near its message-ID budget waits
        // for the previous one to drain).
        while sending && in_flight.len() < plan.window && current.requests < plan.max_per_socket {
            // RFC 8613 §8.1: every request protected anew, with its own Partial IV.
            let (protected, binding) = match &oscore {
                Some(load) => {
                    let (outer, binding) = load
                        .protect(&plan.request)
                        .map_err(|f| std::io::Error::other(f.message))?;
                    (Some(outer), Some(binding))
                }
                None => (None, None),
            };
            let request = protected.as_ref().unwrap_or(&plan.request);
            match current
                .ep
                .send_request(t, plan.peer, request, options.clone())
            {
                Ok(id) => {
                    if let Some(binding) = binding {
                        bindings.insert((current.generation, id), binding);
                    }
                    let measured = t >= warmup_end;
                    if measured {
                        tally.sent += 1;
                    }
                    in_flight.insert((current.generation, id), (t, measured));
                    current.requests += 1;
                    current.in_flight += 1;
                }
                Err(_) => {
                    tally.refused += 1;
                    break;
                }
            }
        }
        current.flush().await?;
        if let Some(old) = draining.as_mut() {
            old.flush().await?;
            if old.in_flight == 0 {
                draining = None;
            }
        }
        // Sleep until a datagram arrives, a timer is due or a phase ends.
        let mut wake = deadline(if sending { plan.end } else { plan.grace_end });
        let timers = [
            current.ep.poll_timeout(),
            draining.as_ref().and_then(|c| c.ep.poll_timeout()),
        ];
        for timer in timers.into_iter().flatten() {
            wake = wake.min(deadline(Duration::from_nanos(timer.as_nanos())));
        }
        tokio::select! {
            r = current.sock.recv(&mut buf) => current.handle_batch(&plan, r, &mut buf)?,
            r = recv_on(draining.as_ref().map(|c| &c.sock), &mut old_buf) => {
                if let Some(old) = draining.as_mut() {
                    old.handle_batch(&plan, r, &mut old_buf)?;
                }
            }
            () = tokio::time::sleep_until(wake) => {}
        }
        let t = now();
        for conn in std::iter::once(&mut current).chain(draining.as_mut()) {
            if conn.ep.poll_timeout().is_some_and(|due| due <= t) {
                conn.ep.handle_timeout(t);
            }
        }
    }
    // Still unanswered at the end.
    tally.lost += in_flight.values().filter(|(_, measured)| *measured).count() as u64;
    Ok(tally)
}

/// Runs `corium bench`.
pub(crate) fn run(args: BenchArgs) -> Result<u8, Failure> {
    let target = crate::uri::parse(&args.uri).map_err(Failure::usage)?;
    let peer = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| Failure::usage(format!("cannot resolve host {:?}: {e}", target.host)))?
        .next()
        .ok_or_else(|| Failure::usage(format!("host {:?} has no address", target.host)))?;
    let sockets = args.sockets as usize;
    let window = args.window as usize;
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .min(sockets)
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| Failure::other(format!("cannot start the async runtime: {e}")))?;

    if let Some(n) = args.peers {
        if target.scheme != corium::wire::Scheme::Coap {
            return Err(Failure::usage("--peers is for coap:// targets"));
        }
        let plan = peers::PeersPlan {
            server: peer,
            path: target.path.clone(),
            peers: n,
            interval: args.interval,
            duration: args.duration,
            timeout: args.timeout,
            local_ip: args.local_ip.unwrap_or(if peer.is_ipv4() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                Ipv6Addr::LOCALHOST.into()
            }),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::other(format!("cannot start the async runtime: {e}")))?;
        return peers::run(plan, &runtime);
    }
    if target.scheme == corium::wire::Scheme::Coaps {
        return dtls::run(&args, &target, peer, &runtime);
    }
    if args.handshakes && target.scheme == corium::wire::Scheme::Coap {
        // EDHOC (RFC 9528) handshakes per second.
        return crate::bench_edhoc::run(&args, &runtime);
    }
    let grace = args.timeout.min(MAX_GRACE);
    let plan = Arc::new(Plan {
        peer,
        request: build_request(&target),
        window,
        non: args.non,
        timeout: args.timeout,
        epoch: std::time::Instant::now(),
        warmup_end: args.warmup,
        end: args.warmup + args.duration,
        grace_end: args.warmup + args.duration + grace,
        rotate_after: ROTATE_AFTER,
        max_per_socket: MAX_PER_SOCKET,
    });
    let tls = args.tls.client()?;
    let stream = stream::Transport::of(&args.uri, target.scheme, &target.host, tls)?;
    let mode = match (&stream, args.non) {
        (Some(transport), _) => transport.mode(),
        (None, true) => "NON",
        (None, false) => "CON",
    };
    println!(
        "corium bench {} ({peer}): {sockets} socket(s) x window {window}, {mode}, \
         warm-up {:.1} s, measuring {:.1} s",
        args.uri,
        args.warmup.as_secs_f64(),
        args.duration.as_secs_f64()
    );

    use corium::wire::Scheme;
    if stream.is_none() && target.scheme != Scheme::Coap {
        return Err(Failure::usage(format!(
            "corium bench speaks coap://, coaps://, coap+tcp://, coaps+tcp://, coap+ws:// \
             and coaps+ws://, not {}",
            target.scheme
        )));
    }
    let oscore = match (&args.credentials, &stream) {
        (Some(file), None) => Some(Arc::new(OscoreLoad::load(file, &args.uri)?)),
        (Some(_), Some(_)) => {
            return Err(Failure::usage(
                "--credentials (OSCORE) is for coap:// targets in corium bench",
            ))
        }
        (None, _) => None,
    };
    let results = runtime.block_on(async {
        let tasks: Vec<_> = (0..sockets)
            .map(|_| match &stream {
                Some(transport) => {
                    tokio::spawn(stream::worker(Arc::clone(&plan), transport.clone()))
                }
                None => tokio::spawn(worker(Arc::clone(&plan), oscore.clone())),
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            results.push(task.await);
        }
        results
    });
    let mut total = Tally::default();
    for result in results {
        match result {
            Ok(Ok(tally)) => total.merge(tally),
            Ok(Err(e)) => return Err(Failure::other(format!("socket error: {e}"))),
            Err(e) => return Err(Failure::other(format!("worker failed: {e}"))),
        }
    }
    report(&mut total, args.duration, peer)
}

/// Prints the summary and the `RESULT` line of a request run.
fn report(total: &mut Tally, duration: Duration, peer: SocketAddr) -> Result<u8, Failure> {
    total.latencies_us.sort_unstable();
    let lat = &total.latencies_us;
    let rps = total.ok as f64 / duration.as_secs_f64();
    let p50 = percentile(lat, 50.0);
    let p99 = percentile(lat, 99.0);
    println!(
        "  requests: sent {}  ok {}  error responses {}  lost {}{}",
        total.sent,
        total.ok,
        total.error_responses,
        total.lost,
        if total.refused > 0 {
            format!("  (endpoint refused {} sends)", total.refused)
        } else {
            String::new()
        }
    );
    println!("  throughput: {rps:.1} responses/s");
    println!(
        "  latency (µs): min {}  p50 {p50}  p90 {}  p99 {p99}  p99.9 {}  max {}",
        lat.first().copied().unwrap_or(0),
        percentile(lat, 90.0),
        percentile(lat, 99.9),
        lat.last().copied().unwrap_or(0)
    );
    println!(
        "RESULT rps={rps:.1} p50_us={p50} p99_us={p99} sent={} ok={} lost={}",
        total.sent, total.ok, total.lost
    );
    if total.ok == 0 {
        eprintln!("error: no successful response from {peer}");
        return Ok(EXIT_NO_RESPONSE);
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[7], 99.9), 7);
    }

    #[test]
    fn request_from_uri() {
        let t = crate::uri::parse("coap://example.org:1234/a/b?x=1&y").unwrap();
        let r = build_request(&t);
        assert_eq!(r.method, corium::Code::GET);
        assert_eq!(
            r.options.get(OptionNumber::URI_HOST),
            Some(&b"example.org"[..])
        );
        let path: Vec<&[u8]> = r.options.get_all(OptionNumber::URI_PATH).collect();
        assert_eq!(path, [&b"a"[..], &b"b"[..]]);
        let query: Vec<&[u8]> = r.options.get_all(OptionNumber::URI_QUERY).collect();
        assert_eq!(query, [&b"x=1"[..], &b"y"[..]]);
        let t = crate::uri::parse("coap://127.0.0.1/test").unwrap();
        assert!(!build_request(&t).options.contains(OptionNumber::URI_HOST));
    }

    /// A minimal CoAP server: every CON or NON request gets a 2.05 (in an
    /// ACK, or as a NON); counts the requests and the client ports seen.
    async fn responder(
        sock: UdpSocket,
        ports: Arc<std::sync::Mutex<std::collections::HashSet<u16>>>,
    ) {
        use corium::wire::{Message, MessageType, MessageWriter};
        let mut buf = [0u8; 1500];
        let mut out = [0u8; 1500];
        let mut mid = 0u16;
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(msg) = Message::parse(&buf[..n]) else {
                continue;
            };
            if !msg.code().is_request() {
                continue;
            }
            ports.lock().unwrap().insert(from.port());
            let (ty, id) = if msg.ty() == MessageType::Confirmable {
                (MessageType::Acknowledgement, msg.message_id())
            } else {
                mid = mid.wrapping_add(1);
                (MessageType::NonConfirmable, mid)
            };
            let w =
                MessageWriter::new(&mut out, ty, corium::Code::CONTENT, id, msg.token()).unwrap();
            let len = w.payload(b"ok").unwrap();
            let _ = sock.send_to(&out[..len], from).await;
        }
    }

    #[tokio::test]
    async fn worker_rotates_sockets_before_message_ids_wrap() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer = server.local_addr().unwrap();
        let ports = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let task = tokio::spawn(responder(server, Arc::clone(&ports)));
        let target = crate::uri::parse(&format!("coap://{peer}/x")).unwrap();
        for non in [false, true] {
            ports.lock().unwrap().clear();
            let plan = Arc::new(Plan {
                peer,
                request: build_request(&target),
                window: 4,
                non,
                timeout: Duration::from_secs(2),
                epoch: std::time::Instant::now(),
                warmup_end: Duration::from_millis(50),
                end: Duration::from_millis(700),
                grace_end: Duration::from_millis(1200),
                rotate_after: 40,
                max_per_socket: 50,
            });
            let tally = worker(plan, None).await.unwrap();
            assert!(tally.ok > 100, "non={non}: {tally:?}");
            assert_eq!(tally.sent, tally.ok, "non={non}: {tally:?}");
            assert_eq!(
                (tally.lost, tally.error_responses, tally.refused),
                (0, 0, 0)
            );
            assert_eq!(tally.latencies_us.len() as u64, tally.ok);
            // Every socket carried at most `max_per_socket` requests.
            let sockets = ports.lock().unwrap().len() as u64;
            assert!(
                sockets * 50 >= tally.sent,
                "{sockets} sockets for {tally:?}"
            );
        }
        task.abort();
    }

    #[test]
    fn config_follows_window() {
        let c = endpoint_config(32, Duration::from_secs(5));
        assert_eq!(c.transmission.nstart, 32);
        assert_eq!(c.message_id_lifetime(), MESSAGE_ID_LIFETIME);
        assert_eq!(c.request_timeout(), Duration::from_secs(5));
        assert!(c.max_client_exchanges >= 32);
    }
}
