//! `corium bench coaps://…`: the load generator over DTLS (RFC 7252 §9): PSK mode
//! (TLS_PSK_WITH_AES_128_CCM_8) with `--psk-identity`/`--psk-key`, certificate mode
//! (ECDHE_ECDSA, RFC 7925 §4.4) with `--ca` (and `--cert`/`--key` for a client
//! certificate).
//!
//! A child module of `bench`: it reuses the plan, tallies and outcome bookkeeping of the
//! `coap://` load generator and puts a client [`DtlsEndpoint`] between each sans-IO
//! CoAP [`Endpoint`] and its UDP socket: every CoAP datagram becomes one DTLS record
//! (RFC 7252 §9.1), every decrypted record one CoAP datagram. Three modes:
//!
//! * **requests** (default): like `coap://`, each of `--sockets` workers keeps
//!   `--window` GETs in flight, over a session established before the warm-up (the
//!   handshake is not measured). A worker moves to a fresh socket (a new session, so a
//!   new handshake) before the message IDs of the session wrap, as for `coap://`.
//!   `RESULT rps=… p50_us=… p99_us=… sent=… ok=… lost=…`.
//! * **`--handshakes`**: `--sockets` × `--window` clients, each in a loop: a fresh UDP
//!   socket (a new client address), a full handshake (ClientHello, HelloVerifyRequest,
//!   ClientHello with cookie, the PSK or ECDHE_ECDSA flights, RFC 6347 §4.2), `close_notify` (so the
//!   server frees the session), repeat. Against an IPv4 loopback server the sockets
//!   are spread over 1 000 source addresses (127.0.0–3.2–251), so that the server
//!   sees many clients rather than one address (whose handshakes a per-address rate
//!   limit would throttle). `RESULT hps=… p50_us=… p99_us=… started=… ok=… failed=…`
//!   (latency of a whole handshake).
//! * **`--idle-sessions N`**: establishes N sessions (each on its own socket, `--window`
//!   handshakes at a time), prints `ESTABLISHED n=…`, holds them idle for `--duration`
//!   seconds (no traffic, for measuring the server's memory per idle session), then
//!   closes them with `close_notify`. `RESULT sessions=… failed=…`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corium::corium_dtls::{ClientConfig, DtlsConfig, DtlsEndpoint, Event as DtlsEvent, SessionId};
use corium_proto::{Endpoint, RequestId, RequestOptions};
use rand::SeedableRng as _;
use tokio::net::UdpSocket;

use super::{clock, is_transient, percentile, record_outcomes, recv_on, Plan, Tally, RECV_BUFFER};
use crate::{BenchArgs, Failure, EXIT_NO_RESPONSE, EXIT_OK};

/// A request on a session-carrying socket with this many requests moves to a fresh
/// socket (and session): below the 65 536 message IDs (see `bench::ROTATE_AFTER`).
const DTLS_ROTATE_AFTER: u64 = super::ROTATE_AFTER;

/// Source addresses used for handshakes against an IPv4 loopback server:
/// 127.0.{0..3}.{2..251}. With a server's default per-address handshake rate (32/s in
/// Corium) that allows 32 000 handshakes/s, far above what one core can do.
const LOOPBACK_SOURCES: u64 = 1_000;

/// The client side of one DTLS endpoint: DTLS 1.2 defaults, a fresh random cookie key.
fn client_endpoint() -> std::io::Result<DtlsEndpoint> {
    let mut rng = rand::rngs::StdRng::from_entropy();
    DtlsEndpoint::new(DtlsConfig::default(), None, &mut rng)
        .map_err(|e| std::io::Error::other(format!("DTLS configuration: {e}")))
}

/// Where a client socket binds: an address of the server's family on an ephemeral port;
/// against an IPv4 loopback server, one of [`LOOPBACK_SOURCES`] loopback addresses chosen
/// by `k`.
fn source_addr(peer: SocketAddr, k: u64) -> SocketAddr {
    match peer.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let i = k % LOOPBACK_SOURCES;
            (
                Ipv4Addr::new(127, 0, (i / 250) as u8, 2 + (i % 250) as u8),
                0,
            )
                .into()
        }
        _ => super::any_local(peer),
    }
}

/// A UDP socket connected to the server and a DTLS session on it, established.
struct Session {
    sock: UdpSocket,
    dtls: DtlsEndpoint,
    session: SessionId,
}

impl Session {
    /// Binds `local`, runs a full handshake with `peer` and returns once it completes
    /// (or fails, or `limit` has passed).
    async fn establish(
        plan: &Plan,
        local: SocketAddr,
        credentials: &ClientConfig,
        limit: Duration,
    ) -> std::io::Result<Session> {
        let sock = UdpSocket::bind(local).await?;
        sock.connect(plan.peer).await?;
        let mut dtls = client_endpoint()?;
        let session = dtls
            .connect(clock(plan), plan.peer, credentials)
            .map_err(|e| std::io::Error::other(format!("DTLS connect: {e}")))?;
        let mut s = Session {
            sock,
            dtls,
            session,
        };
        let give_up = tokio::time::Instant::now() + limit;
        let mut buf = vec![0u8; RECV_BUFFER];
        loop {
            s.flush_dtls().await?;
            while let Some(event) = s.dtls.poll_event() {
                match event {
                    DtlsEvent::HandshakeComplete { .. } => return Ok(s),
                    DtlsEvent::Closed { reason, .. } => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::PermissionDenied,
                            format!("DTLS handshake failed: {reason}"),
                        ))
                    }
                    DtlsEvent::ApplicationData { .. } => {}
                }
            }
            let mut wake = give_up;
            if let Some(t) = s.dtls.poll_timeout() {
                wake = wake.min(tokio::time::Instant::from_std(
                    plan.epoch + Duration::from_nanos(t.as_nanos()),
                ));
            }
            tokio::select! {
                r = s.sock.recv(&mut buf) => match r {
                    Ok(n) => s.dtls.handle_datagram(clock(plan), plan.peer, &buf[..n]),
                    Err(e) if is_transient(&e) => {}
                    Err(e) => return Err(e),
                },
                () = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= give_up {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "DTLS handshake timed out",
                        ));
                    }
                }
            }
            let now = clock(plan);
            if s.dtls.poll_timeout().is_some_and(|t| t <= now) {
                s.dtls.handle_timeout(now);
            }
        }
    }

    /// Sends every record the DTLS endpoint has queued.
    async fn flush_dtls(&mut self) -> std::io::Result<()> {
        while let Some((_, datagram)) = self.dtls.poll_transmit() {
            if let Err(e) = self.sock.send(&datagram).await {
                if !is_transient(&e) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Ends the session with `close_notify` (RFC 5246 §7.2.1), so that the server frees it.
    async fn close(mut self, plan: &Plan) {
        self.dtls.close_all(clock(plan));
        let _ = self.flush_dtls().await;
    }
}

/// One session and the CoAP endpoint speaking through it.
struct DtlsConn {
    generation: u64,
    link: Session,
    ep: Endpoint<SocketAddr>,
    requests: u64,
    in_flight: usize,
}

impl DtlsConn {
    async fn open(
        plan: &Plan,
        credentials: &ClientConfig,
        generation: u64,
    ) -> std::io::Result<Self> {
        let local = super::any_local(plan.peer);
        let link = Session::establish(plan, local, credentials, plan.timeout).await?;
        let ep = super::worker_endpoint(plan);
        Ok(DtlsConn {
            generation,
            link,
            ep,
            requests: 0,
            in_flight: 0,
        })
    }

    /// Decrypts a received datagram and up to [`RECV_BATCH`](super::RECV_BATCH) - 1 more already queued,
    /// handing each record's CoAP message to the endpoint.
    fn handle_batch(
        &mut self,
        plan: &Plan,
        first: std::io::Result<usize>,
        buf: &mut [u8],
    ) -> std::io::Result<()> {
        let Session { sock, dtls, .. } = &mut self.link;
        super::receive_batch(sock, first, buf, |datagram| {
            dtls.handle_datagram(clock(plan), plan.peer, datagram);
        })?;
        self.route(plan)
    }

    /// Moves decrypted CoAP messages to the endpoint.
    fn route(&mut self, plan: &Plan) -> std::io::Result<()> {
        let now = clock(plan);
        while let Some(event) = self.link.dtls.poll_event() {
            match event {
                DtlsEvent::ApplicationData { bytes, .. } => {
                    self.ep.handle_datagram(now, plan.peer, &bytes);
                }
                DtlsEvent::Closed { reason, .. } => {
                    return Err(std::io::Error::other(format!(
                        "the server ended the DTLS session: {reason}"
                    )))
                }
                DtlsEvent::HandshakeComplete { .. } => {}
            }
        }
        Ok(())
    }

    /// Encrypts every CoAP message the endpoint has queued and sends the records.
    async fn flush(&mut self, plan: &Plan) -> std::io::Result<()> {
        let now = clock(plan);
        while let Some(tx) = self.ep.poll_transmit() {
            // A refused send (too large) is a lost request, reported by its timeout.
            let _ = self.link.dtls.send(now, self.link.session, &tx.payload);
        }
        self.link.flush_dtls().await
    }

    /// Fires the timers of both layers that are due.
    fn timers(&mut self, plan: &Plan) -> std::io::Result<()> {
        let t = clock(plan);
        if self.ep.poll_timeout().is_some_and(|due| due <= t) {
            self.ep.handle_timeout(t);
        }
        if self.link.dtls.poll_timeout().is_some_and(|due| due <= t) {
            self.link.dtls.handle_timeout(t);
            self.route(plan)?;
        }
        Ok(())
    }

    /// The earliest timer of both layers.
    fn poll_timeout(&self) -> Option<corium_proto::Instant> {
        match (self.ep.poll_timeout(), self.link.dtls.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Records the outcomes `conn`'s endpoint reports.
fn drain_events(
    conn: &mut DtlsConn,
    t: corium_proto::Instant,
    in_flight: &mut HashMap<(u64, RequestId), (corium_proto::Instant, bool)>,
    tally: &mut Tally,
) {
    record_outcomes(
        &mut conn.ep,
        conn.generation,
        &mut conn.in_flight,
        t,
        in_flight,
        tally,
    );
}

/// One worker's closed loop of GETs over DTLS (the `coap://` worker's structure).
async fn request_worker(plan: Arc<Plan>, credentials: Arc<ClientConfig>) -> std::io::Result<Tally> {
    let deadline = |since_epoch: Duration| tokio::time::Instant::from_std(plan.epoch + since_epoch);
    let options = RequestOptions {
        non_confirmable: plan.non,
        timeout: Some(plan.timeout),
        ..RequestOptions::default()
    };
    let warmup_end = corium_proto::Instant::from_duration(plan.warmup_end);
    let end = corium_proto::Instant::from_duration(plan.end);
    let grace_end = corium_proto::Instant::from_duration(plan.grace_end);

    let mut current = DtlsConn::open(&plan, &credentials, 0).await?;
    let mut draining: Option<DtlsConn> = None;
    let mut in_flight: HashMap<(u64, RequestId), (corium_proto::Instant, bool)> =
        HashMap::with_capacity(plan.window * 2);
    let mut tally = Tally::default();
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut old_buf = vec![0u8; RECV_BUFFER];

    loop {
        let t = clock(&plan);
        drain_events(&mut current, t, &mut in_flight, &mut tally);
        if let Some(old) = draining.as_mut() {
            drain_events(old, t, &mut in_flight, &mut tally);
        }
        let sending = t < end;
        if !sending && (in_flight.is_empty() || t >= grace_end) {
            break;
        }
        if sending && current.requests >= plan.rotate_after && draining.is_none() {
            let fresh = DtlsConn::open(&plan, &credentials, current.generation + 1).await?;
            draining = Some(std::mem::replace(&mut current, fresh));
        }
        let t = clock(&plan);
        while sending && in_flight.len() < plan.window && current.requests < plan.max_per_socket {
            match current
                .ep
                .send_request(t, plan.peer, &plan.request, options.clone())
            {
                Ok(id) => {
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
        current.flush(&plan).await?;
        if let Some(old) = draining.as_mut() {
            old.flush(&plan).await?;
            if old.in_flight == 0 {
                if let Some(old) = draining.take() {
                    old.link.close(&plan).await;
                }
            }
        }
        let mut wake = deadline(if sending { plan.end } else { plan.grace_end });
        let timers = [
            current.poll_timeout(),
            draining.as_ref().and_then(DtlsConn::poll_timeout),
        ];
        for timer in timers.into_iter().flatten() {
            wake = wake.min(deadline(Duration::from_nanos(timer.as_nanos())));
        }
        tokio::select! {
            r = current.link.sock.recv(&mut buf) => current.handle_batch(&plan, r, &mut buf)?,
            r = recv_on(draining.as_ref().map(|c| &c.link.sock), &mut old_buf) => {
                if let Some(old) = draining.as_mut() {
                    old.handle_batch(&plan, r, &mut old_buf)?;
                }
            }
            () = tokio::time::sleep_until(wake) => {}
        }
        current.timers(&plan)?;
        if let Some(old) = draining.as_mut() {
            old.timers(&plan)?;
        }
    }
    tally.lost += in_flight.values().filter(|(_, measured)| *measured).count() as u64;
    if let Some(old) = draining.take() {
        old.link.close(&plan).await;
    }
    current.link.close(&plan).await;
    Ok(tally)
}

/// What the handshake loops counted.
#[derive(Debug, Default)]
struct HandshakeTally {
    /// Handshakes started during the measurement.
    started: u64,
    /// Of those, completed.
    ok: u64,
    /// Of those, failed or timed out.
    failed: u64,
    /// Durations of the completed ones, µs.
    latencies_us: Vec<u32>,
    /// The first failure seen, for the summary.
    first_error: Option<String>,
}

impl HandshakeTally {
    fn merge(&mut self, other: HandshakeTally) {
        self.started += other.started;
        self.ok += other.ok;
        self.failed += other.failed;
        self.latencies_us.extend(other.latencies_us);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// One client's loop of full handshakes, each on a fresh socket, until the measurement
/// ends.
async fn handshake_loop(
    plan: Arc<Plan>,
    credentials: Arc<ClientConfig>,
    counter: Arc<AtomicU64>,
) -> HandshakeTally {
    let end = plan.end;
    let mut tally = HandshakeTally::default();
    loop {
        let started = plan.epoch.elapsed();
        if started >= end {
            return tally;
        }
        let measured = started >= plan.warmup_end;
        let k = counter.fetch_add(1, Ordering::Relaxed);
        let local = source_addr(plan.peer, k);
        let result = Session::establish(&plan, local, &credentials, plan.timeout).await;
        let took = plan.epoch.elapsed().saturating_sub(started);
        match result {
            Ok(session) => {
                session.close(&plan).await;
                if measured {
                    tally.started += 1;
                    tally.ok += 1;
                    tally
                        .latencies_us
                        .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                }
            }
            Err(e) => {
                if measured {
                    tally.started += 1;
                    tally.failed += 1;
                }
                if tally.first_error.is_none() {
                    tally.first_error = Some(e.to_string());
                }
                // A socket error (e.g. out of ports) must not spin.
                if e.kind() != std::io::ErrorKind::TimedOut
                    && e.kind() != std::io::ErrorKind::PermissionDenied
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

/// Establishes `count` sessions, `window` at a time, holds them idle for `hold`, closes
/// them. Returns (established, failed, first error).
async fn idle_sessions(
    plan: Arc<Plan>,
    credentials: Arc<ClientConfig>,
    count: usize,
    hold: Duration,
) -> (Vec<Session>, u64, Option<String>) {
    let counter = Arc::new(AtomicU64::new(0));
    let mut sessions = Vec::with_capacity(count);
    let mut failed = 0u64;
    let mut first_error = None;
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0usize;
    while next < count || !tasks.is_empty() {
        while next < count && tasks.len() < plan.window.max(1) {
            let (plan, credentials, counter) = (
                Arc::clone(&plan),
                Arc::clone(&credentials),
                Arc::clone(&counter),
            );
            tasks.spawn(async move {
                let k = counter.fetch_add(1, Ordering::Relaxed);
                Session::establish(&plan, source_addr(plan.peer, k), &credentials, plan.timeout)
                    .await
            });
            next += 1;
        }
        match tasks.join_next().await {
            Some(Ok(Ok(s))) => sessions.push(s),
            Some(Ok(Err(e))) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            Some(Err(e)) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            None => break,
        }
    }
    println!("ESTABLISHED n={} failed={failed}", sessions.len());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    tokio::time::sleep(hold).await;
    (sessions, failed, first_error)
}

/// Runs `corium bench coaps://…` (see the module docs).
pub(super) fn run(
    args: &BenchArgs,
    target: &crate::uri::Target,
    peer: SocketAddr,
    runtime: &tokio::runtime::Runtime,
) -> Result<u8, Failure> {
    // PSK mode when a PSK is given, else certificate mode (RFC 7925 §4.4) with --ca and
    // optionally --cert/--key, as for `corium get`.
    let credentials = match args.dtls.client()? {
        Some(c) => Arc::new(c),
        None => match crate::dtls::client_certificate(&args.tls, &target.host)? {
            Some(c) => Arc::new(c),
            None => {
                return Err(Failure::usage(format!(
                    "{}: coaps needs --psk-identity ID and --psk-key KEY, or --ca FILE",
                    args.uri
                )))
            }
        },
    };
    let mode = if args.dtls.psk_identity.is_some() {
        "PSK"
    } else {
        "certificate"
    };
    let sockets = args.sockets as usize;
    let window = args.window as usize;
    let grace = args.timeout.min(super::MAX_GRACE);
    let plan = Arc::new(Plan {
        peer,
        request: super::build_request(target),
        window,
        non: args.non,
        timeout: args.timeout,
        epoch: std::time::Instant::now(),
        warmup_end: args.warmup,
        end: args.warmup + args.duration,
        grace_end: args.warmup + args.duration + grace,
        rotate_after: DTLS_ROTATE_AFTER,
        max_per_socket: super::MAX_PER_SOCKET,
    });

    if let Some(count) = args.idle_sessions {
        println!(
            "corium bench {} ({peer}): {count} idle DTLS sessions ({window} handshakes at a time), \
             held {:.1} s",
            args.uri,
            args.duration.as_secs_f64()
        );
        let (sessions, failed, first_error) = runtime.block_on(idle_sessions(
            Arc::clone(&plan),
            Arc::clone(&credentials),
            count as usize,
            args.duration,
        ));
        let n = sessions.len();
        runtime.block_on(async {
            for s in sessions {
                s.close(&plan).await;
            }
        });
        if let Some(e) = &first_error {
            println!("  first failure: {e}");
        }
        println!("RESULT sessions={n} failed={failed}");
        return Ok(if n == 0 { EXIT_NO_RESPONSE } else { EXIT_OK });
    }

    if args.handshakes {
        println!(
            "corium bench {} ({peer}): {} concurrent DTLS {mode} handshakes ({sockets} x {window}), \
             warm-up {:.1} s, measuring {:.1} s",
            args.uri,
            sockets * window,
            args.warmup.as_secs_f64(),
            args.duration.as_secs_f64()
        );
        let counter = Arc::new(AtomicU64::new(0));
        let results = runtime.block_on(async {
            let tasks: Vec<_> = (0..sockets * window)
                .map(|_| {
                    tokio::spawn(handshake_loop(
                        Arc::clone(&plan),
                        Arc::clone(&credentials),
                        Arc::clone(&counter),
                    ))
                })
                .collect();
            let mut out = Vec::with_capacity(tasks.len());
            for task in tasks {
                out.push(task.await);
            }
            out
        });
        let mut total = HandshakeTally::default();
        for r in results {
            total.merge(r.map_err(|e| Failure::other(format!("worker failed: {e}")))?);
        }
        total.latencies_us.sort_unstable();
        let lat = &total.latencies_us;
        let hps = total.ok as f64 / args.duration.as_secs_f64();
        let (p50, p99) = (percentile(lat, 50.0), percentile(lat, 99.0));
        println!(
            "  handshakes: started {}  ok {}  failed {}",
            total.started, total.ok, total.failed
        );
        if let Some(e) = &total.first_error {
            println!("  first failure: {e}");
        }
        println!("  throughput: {hps:.1} handshakes/s");
        println!(
            "  handshake time (µs): min {}  p50 {p50}  p90 {}  p99 {p99}  max {}",
            lat.first().copied().unwrap_or(0),
            percentile(lat, 90.0),
            lat.last().copied().unwrap_or(0)
        );
        println!(
            "RESULT hps={hps:.1} p50_us={p50} p99_us={p99} started={} ok={} failed={}",
            total.started, total.ok, total.failed
        );
        if total.ok == 0 {
            eprintln!("error: no DTLS handshake with {peer} completed");
            return Ok(EXIT_NO_RESPONSE);
        }
        return Ok(EXIT_OK);
    }

    println!(
        "corium bench {} ({peer}): {sockets} DTLS session(s) x window {window}, {}, \
         warm-up {:.1} s, measuring {:.1} s",
        args.uri,
        if args.non { "NON" } else { "CON" },
        args.warmup.as_secs_f64(),
        args.duration.as_secs_f64()
    );
    let results = runtime.block_on(async {
        let tasks: Vec<_> = (0..sockets)
            .map(|_| tokio::spawn(request_worker(Arc::clone(&plan), Arc::clone(&credentials))))
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(task.await);
        }
        out
    });
    let mut total = Tally::default();
    for result in results {
        match result {
            Ok(Ok(tally)) => total.merge(tally),
            Ok(Err(e)) => return Err(Failure::other(format!("{e}"))),
            Err(e) => return Err(Failure::other(format!("worker failed: {e}"))),
        }
    }
    super::report(&mut total, args.duration, peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_sources_spread() {
        let peer: SocketAddr = "127.0.0.1:5684".parse().unwrap();
        assert_eq!(
            source_addr(peer, 0),
            "127.0.0.2:0".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            source_addr(peer, 249),
            "127.0.0.251:0".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            source_addr(peer, 999),
            "127.0.3.251:0".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(source_addr(peer, 1_000), source_addr(peer, 0));
        let v6: SocketAddr = "[::1]:5684".parse().unwrap();
        assert_eq!(source_addr(v6, 7), "[::]:0".parse::<SocketAddr>().unwrap());
    }

    /// A plan against `peer`: warm-up 0.1 s, 0.6 s measured.
    fn plan(peer: SocketAddr) -> Arc<Plan> {
        let target = crate::uri::parse(&format!("coaps://{peer}/test")).unwrap();
        Arc::new(Plan {
            peer,
            request: super::super::build_request(&target),
            window: 4,
            non: false,
            timeout: Duration::from_secs(5),
            epoch: std::time::Instant::now(),
            warmup_end: Duration::from_millis(100),
            end: Duration::from_millis(700),
            grace_end: Duration::from_millis(1_200),
            rotate_after: 40,
            max_per_socket: 50,
        })
    }

    /// The three modes against a Corium DTLS server in the same process: every request
    /// answered (over several sessions, as the worker rotates), handshakes completed,
    /// idle sessions established; a wrong key fails cleanly.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn modes_against_a_corium_server() {
        use corium::corium_dtls::{PskMap, ServerConfig};
        let mut keys = PskMap::new();
        keys.insert("bench", "secretPSK").unwrap();
        let server = corium::Server::builder()
            .dtls(ServerConfig::psk(keys), &["127.0.0.1:0".parse().unwrap()])
            .bind(&["127.0.0.1:0".parse().unwrap()], crate::plugtest::router())
            .await
            .unwrap();
        let peer = server.dtls_addrs()[0];
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async move {
            let _ = stopped.await;
        }));
        let credentials = Arc::new(ClientConfig::psk("bench", "secretPSK").unwrap());

        let tally = request_worker(plan(peer), Arc::clone(&credentials))
            .await
            .unwrap();
        assert!(tally.ok > 50, "{tally:?}");
        assert_eq!(tally.sent, tally.ok, "{tally:?}");
        assert_eq!((tally.lost, tally.error_responses), (0, 0), "{tally:?}");

        let counter = Arc::new(AtomicU64::new(0));
        let hs = handshake_loop(plan(peer), Arc::clone(&credentials), counter).await;
        assert!(hs.ok > 0, "{hs:?}");
        assert_eq!(hs.failed, 0, "{hs:?}");

        let (sessions, failed, _) =
            idle_sessions(plan(peer), Arc::clone(&credentials), 10, Duration::ZERO).await;
        assert_eq!((sessions.len(), failed), (10, 0));
        let p = plan(peer);
        for s in sessions {
            s.close(&p).await;
        }

        let wrong = ClientConfig::psk("bench", "wrong").unwrap();
        let err = Session::establish(&p, source_addr(peer, 0), &wrong, Duration::from_secs(5))
            .await
            .err()
            .expect("a wrong key fails");
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");

        let _ = stop.send(());
        let _ = task.await;
    }
}
