//! Observe (RFC 7641) fan-out benchmark.
//!
//! Subcommands (driven by `bench/observe-fanout.sh`; results in `BENCHMARKS.md`):
//!
//! - `memory [--relations N] [--peers P] [--dedup-cap C] [--rounds R]`: in-process and sans-IO. One
//!   server [`Endpoint`] registers N relations (RFC 7641 §4.1) from P fake peers, fed as
//!   raw CON GET Observe=0 datagrams and answered with [`Endpoint::respond_observe`];
//!   prints the growth of `VmRSS` per relation at three points: right after registering
//!   (deduplication entries of the registrations still held, RFC 7252 §4.5), after one
//!   NON notification to every relation, and after the virtual clock has passed
//!   EXCHANGE_LIFETIME (deduplication entries expired).
//! - `server --bind ADDR --control ADDR ...`: a `corium` runtime server with one
//!   observable resource `/obs`; once the load process says `START`, notifies all
//!   observers as fast as the driver sends them (one `Observable::notify` outstanding),
//!   limited to `--window` notifications not yet reported received by the clients.
//!   Counts sent NON notifications through the server's datagram trace hook. Reads its
//!   `VmRSS` / `RssAnon` idle (no relation), with every observer registered, after
//!   notifying, and with `--settle S`, S seconds later (past EXCHANGE_LIFETIME, 247 s, the
//!   registrations' deduplication entries have expired, RFC 7252 §4.5).
//! - `clients --server ADDR --control ADDR --sockets K --per-socket M`: K UDP sockets
//!   register M observations each (distinct tokens), then count the notifications they
//!   receive and report progress to the server's control socket.
//!
//! Each process prints one `RESULT key=value ...` line at the end.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use corium::{Code, Direction, Observable, RequestContext, Resource, Router, Server};
use corium_proto::{
    Endpoint, EndpointConfig, Event, Instant, NotifyOptions, ObservationId, Response,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The observable resource's path (one Uri-Path segment).
const PATH: &[u8] = b"obs";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        usage();
    };
    let opts = Opts::parse(&args[1..]);
    let result = match cmd.as_str() {
        "memory" => memory(&opts),
        "server" => runtime().block_on(server(&opts)),
        "clients" => runtime().block_on(clients(&opts)),
        _ => usage(),
    };
    if let Err(err) = result {
        eprintln!("observe-fanout: {err}");
        std::process::exit(1);
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: observe-fanout memory [--relations N] [--peers P] [--dedup-cap C] [--rounds R]\n\
         \x20      observe-fanout server --bind ADDR --control ADDR [--warmup S] [--duration S] [--window N] [--settle S]\n\
         \x20      observe-fanout clients --server ADDR --control ADDR [--sockets K] [--per-socket M] [--report N] [--timeout S]"
    );
    std::process::exit(2);
}

fn runtime() -> tokio::runtime::Runtime {
    // One thread: each side is pinned to one core by the script anyway.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `--key value` pairs.
struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let Some(key) = k.strip_prefix("--") else {
                usage();
            };
            let Some(v) = it.next() else {
                usage();
            };
            map.insert(key.to_owned(), v.clone());
        }
        Opts(map)
    }

    fn num(&self, key: &str, default: u64) -> u64 {
        self.0
            .get(key)
            .map_or(default, |v| v.parse().unwrap_or_else(|_| usage()))
    }

    fn addr(&self, key: &str) -> SocketAddr {
        self.0
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage())
    }
}

/// A CON GET /obs with Observe = 0 (RFC 7641 §3.1): header, 8-byte token, Observe
/// (option 6, empty = 0), Uri-Path (option 11, delta 5).
fn registration(buf: &mut Vec<u8>, mid: u16, token: u64) {
    buf.clear();
    buf.extend_from_slice(&[0x48, 0x01]);
    buf.extend_from_slice(&mid.to_be_bytes());
    buf.extend_from_slice(&token.to_be_bytes());
    buf.push(0x60);
    buf.push(0x50 | PATH.len() as u8);
    buf.extend_from_slice(PATH);
}

/// `VmRSS` of this process in bytes.
fn rss_bytes() -> u64 {
    status_bytes("VmRSS:")
}

/// A `/proc/self/status` field given in kB (`VmRSS:`, `RssAnon:`, ...), in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

// ---------------------------------------------------------------------------------------
// memory
// ---------------------------------------------------------------------------------------

/// Answers every registration (keeping the relation ids in `ids`) and discards the
/// datagrams to send.
fn drain(
    ep: &mut Endpoint<SocketAddr>,
    now: Instant,
    ids: &mut [ObservationId],
    next: &mut usize,
) -> (u64, u64) {
    let (mut registered, mut refused) = (0, 0);
    while let Some(ev) = ep.poll_event() {
        if let Event::Request(req) = ev {
            let response = Response::with_payload(Code::CONTENT, "0");
            match ep.respond_observe(now, req.id, response) {
                Ok(id) => {
                    if let Some(slot) = ids.get_mut(*next) {
                        *slot = id;
                        *next += 1;
                    }
                    registered += 1;
                }
                Err(_) => refused += 1,
            }
        }
    }
    while ep.poll_transmit().is_some() {}
    (registered, refused)
}

fn memory(opts: &Opts) -> Result<(), BoxError> {
    let rounds = opts.num("rounds", 8);
    let n = opts.num("relations", 100_000) as usize;
    let peers = opts.num("peers", n as u64).max(1) as usize;
    let per_peer = n.div_ceil(peers);
    if per_peer > 65_536 {
        return Err("more than 65 536 relations per peer (message IDs)".into());
    }
    let default = EndpointConfig::default();
    let config = EndpointConfig {
        max_observations: n,
        max_observations_per_peer: per_peer,
        max_peers: default.max_peers.max(peers),
        max_dedup_entries: opts.num("dedup-cap", default.max_dedup_entries.max(n) as u64) as usize,
        ..default
    };
    let lifetime = config.transmission.exchange_lifetime();
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(config, Box::new(StdRng::seed_from_u64(7)));
    let peer = |i: usize| {
        let i = i as u32;
        // 10.x.y.z:port, distinct for up to 2^24 * 60 000 peers.
        SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(0x0a00_0000 | (i % 0x00ff_ffff)),
            5683 + (i / 0x00ff_ffff) as u16,
        ))
    };
    let mut buf = Vec::with_capacity(64);
    // Written before the first RSS reading, so its pages do not count.
    let mut ids = vec![ObservationId(u64::MAX); n];
    let mut next = 0;
    let t0 = Instant::from_duration(Duration::from_secs(1));
    let before = rss_bytes();
    let (mut registered, mut refused) = (0, 0);
    let mut now = t0;
    for i in 0..n {
        // A microsecond of virtual time per registration: all within EXCHANGE_LIFETIME.
        now = t0 + Duration::from_micros(i as u64);
        registration(&mut buf, (i / peers) as u16, i as u64);
        ep.handle_datagram(now, peer(i % peers), &buf);
        let (r, f) = drain(&mut ep, now, &mut ids, &mut next);
        registered += r;
        refused += f;
    }
    let after_register = rss_bytes();
    let stats_register = ep.stats();

    // One NON notification to every relation (RFC 7641 §4.2): per-peer message-ID
    // state and each relation's last message ID are now in use, as in steady state.
    // `rounds` notifications per relation: the endpoint remembers the message IDs of a
    // relation's recent notifications (to match a RST to any of them), so steady state
    // is reached only after several rounds.
    let mut notify_failed = 0u64;
    for _ in 0..rounds {
        now += Duration::from_millis(1);
        for (i, id) in ids[..next].iter().enumerate() {
            let response = Response::with_payload(Code::CONTENT, "1");
            if ep
                .notify(now, *id, response, NotifyOptions { confirmable: false })
                .is_err()
            {
                notify_failed += 1;
            }
            if i % 64 == 63 {
                while ep.poll_transmit().is_some() {}
            }
        }
    }
    drain(&mut ep, now, &mut [], &mut 0);
    let after_notify = rss_bytes();
    let stats_notify = ep.stats();

    now += lifetime + Duration::from_secs(1);
    while ep.poll_timeout().is_some_and(|t| t <= now) {
        ep.handle_timeout(now);
    }
    drain(&mut ep, now, &mut [], &mut 0);
    let after_expiry = rss_bytes();
    let stats_expiry = ep.stats();

    let per = |after: u64| after.saturating_sub(before) as f64 / registered.max(1) as f64;
    println!(
        "memory: {n} registrations from {peers} peers: {registered} registered, {refused} refused"
    );
    println!("  RSS before {before} B; {notify_failed} notifications refused");
    println!(
        "  after registering: RSS {after_register} B, {:.0} B/relation; {stats_register:?}",
        per(after_register)
    );
    println!(
        "  after {rounds} notifications each: RSS {after_notify} B, {:.0} B/relation; {stats_notify:?}",
        per(after_notify)
    );
    println!(
        "  after EXCHANGE_LIFETIME ({} s): RSS {after_expiry} B, {:.0} B/relation; {stats_expiry:?}",
        lifetime.as_secs(),
        per(after_expiry)
    );
    println!(
        "RESULT relations={registered} peers={peers} rss_before={before} rss_registered={after_register} \
         rss_notified={after_notify} rss_expired={after_expiry} per_rel_registered={:.0} \
         per_rel_notified={:.0} per_rel_expired={:.0} dedup_registered={} dedup_expired={}",
        per(after_register),
        per(after_notify),
        per(after_expiry),
        stats_register.dedup_entries,
        stats_expiry.dedup_entries,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// fan-out: server
// ---------------------------------------------------------------------------------------

/// Bytes 0..: CoAP type of a datagram (0 CON, 1 NON, 2 ACK, 3 RST).
fn coap_type(data: &[u8]) -> Option<u8> {
    data.first().map(|b| (b >> 4) & 3)
}

async fn server(opts: &Opts) -> Result<(), BoxError> {
    let bind = opts.addr("bind");
    let control = opts.addr("control");
    let warmup = Duration::from_secs(opts.num("warmup", 1));
    let duration = Duration::from_secs(opts.num("duration", 10));
    let window = opts.num("window", 0);
    let settle = Duration::from_secs(opts.num("settle", 0));

    let obs = Observable::new();
    let runs = Arc::new(AtomicU64::new(0));
    let ran = Arc::new(Notify::new());
    let (r, n) = (runs.clone(), ran.clone());
    let resource = Resource::new()
        .get(move |_ctx: RequestContext| {
            let v = r.fetch_add(1, Ordering::Relaxed);
            n.notify_one();
            async move { Response::with_payload(Code::CONTENT, v.to_string()) }
        })
        .observable(&obs);
    let router = Router::new().route("/obs", resource);

    let sent = Arc::new(AtomicU64::new(0));
    let s = sent.clone();
    let config = EndpointConfig {
        max_observations: 1_000_000,
        max_observations_per_peer: 100_000,
        ..EndpointConfig::default()
    };
    let server = Server::builder()
        .config(config)
        .trace(move |dir, _peer, data| {
            if dir == Direction::Sent && coap_type(data) == Some(1) {
                s.fetch_add(1, Ordering::Relaxed);
            }
        })
        .bind(&[bind], router)
        .await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async {
        let _ = stop_rx.await;
    }));

    // Control: START from the load process, RECV n progress reports.
    let ctrl = Arc::new(UdpSocket::bind(control).await?);
    let received = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    // Settle, then the idle RSS (no relations) for the runtime's per-relation figure.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_idle = rss_bytes();
    let anon_idle = status_bytes("RssAnon:");
    println!("READY {bind} control {control}");
    let mut buf = [0u8; 256];
    let (len, client) = loop {
        let (len, from) = ctrl.recv_from(&mut buf).await?;
        if buf[..len].starts_with(b"START") {
            break (len, from);
        }
    };
    let relations: u64 = std::str::from_utf8(&buf[5..len])?.trim().parse()?;
    {
        let (ctrl, received, progress) = (ctrl.clone(), received.clone(), progress.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 256];
            while let Ok((len, _)) = ctrl.recv_from(&mut buf).await {
                let text = std::str::from_utf8(&buf[..len]).unwrap_or("");
                if let Some(v) = text
                    .strip_prefix("RECV ")
                    .and_then(|v| v.trim().parse().ok())
                {
                    received.fetch_max(v, Ordering::Relaxed);
                    progress.notify_one();
                }
            }
        });
    }
    let observers = obs.observer_count() as u64;
    let rss_observed = rss_bytes();
    let anon_observed = status_bytes("RssAnon:");
    eprintln!("server: {observers} observers registered (load process: {relations})");

    let mut n = Notifier {
        sent_before: sent.load(Ordering::Relaxed),
        sent: sent.clone(),
        received,
        progress,
        obs,
        runs,
        ran,
        window,
        slack: 0,
        stalls: 0,
    };
    let mut rounds = 0u64;
    let start = StdInstant::now();
    while start.elapsed() < warmup {
        n.round().await?;
    }
    ctrl.send_to(b"MARK", client).await?;
    let (t0, sent0) = (StdInstant::now(), sent.load(Ordering::Relaxed));
    while t0.elapsed() < duration {
        n.round().await?;
        rounds += 1;
    }
    // Let the driver flush the last round before counting.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (secs, sent1) = (t0.elapsed().as_secs_f64(), sent.load(Ordering::Relaxed));
    // After notifying: each relation has sent notifications (steady state), and the
    // buffers of a round have been used once.
    let (rss_notified, anon_notified) = (rss_bytes(), status_bytes("RssAnon:"));
    // After EXCHANGE_LIFETIME the registrations' deduplication entries have expired
    // (RFC 7252 §4.5): what is left is the relations' own state.
    let (mut rss_settled, mut anon_settled) = (0, 0);
    if !settle.is_zero() {
        eprintln!(
            "server: waiting {} s for the deduplication entries to expire",
            settle.as_secs()
        );
        tokio::time::sleep(settle).await;
        (rss_settled, anon_settled) = (rss_bytes(), status_bytes("RssAnon:"));
    }
    ctrl.send_to(b"STOP", client).await?;
    let (total, stalls) = (sent1 - n.sent_before, n.stalls);
    let per = |rss: u64, idle: u64| rss.saturating_sub(idle) as f64 / observers.max(1) as f64;
    println!(
        "RESULT role=server observers={observers} rounds={rounds} sent={} secs={secs:.3} rate={:.0} \
         total_sent={total} stalls={stalls} window={window} rss_idle={rss_idle} \
         rss_observed={rss_observed} rss_per_relation={:.0} anon_idle={anon_idle} \
         anon_observed={anon_observed} anon_per_relation={:.0} rss_notified={rss_notified} \
         anon_notified={anon_notified} rss_per_relation_notified={:.0} rss_settled={rss_settled} \
         anon_settled={anon_settled} rss_per_relation_settled={:.0} settle={}",
        sent1 - sent0,
        (sent1 - sent0) as f64 / secs,
        per(rss_observed, rss_idle),
        per(anon_observed, anon_idle),
        per(rss_notified, rss_idle),
        per(rss_settled, rss_idle),
        settle.as_secs(),
    );
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
    Ok(())
}

/// Issues `Observable::notify` rounds, one at a time, under the clients' flow control.
struct Notifier {
    sent_before: u64,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    progress: Arc<Notify>,
    obs: Observable,
    runs: Arc<AtomicU64>,
    ran: Arc<Notify>,
    window: u64,
    slack: u64,
    stalls: u64,
}

impl Notifier {
    /// One notification to every observer.
    async fn round(&mut self) -> Result<(), BoxError> {
        // Flow control: at most `window` notifications not yet reported received.
        while self.window > 0 {
            let out = self.sent.load(Ordering::Relaxed) - self.sent_before;
            let received = self.received.load(Ordering::Relaxed);
            if out.saturating_sub(received + self.slack) <= self.window {
                break;
            }
            let wait = tokio::time::timeout(Duration::from_millis(20), self.progress.notified());
            if wait.await.is_err() {
                // Lost datagrams are never reported: stop waiting for them.
                self.slack = out.saturating_sub(self.received.load(Ordering::Relaxed));
                self.stalls += 1;
            }
        }
        let target = self.runs.load(Ordering::Relaxed) + 1;
        self.obs.notify();
        // One notify outstanding: wait until the driver ran the handler (and so queued
        // every notification; it flushes them before taking the next command).
        while self.runs.load(Ordering::Relaxed) < target {
            let wait = tokio::time::timeout(Duration::from_secs(5), self.ran.notified());
            if wait.await.is_err() {
                return Err("handler not run within 5 s".into());
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// fan-out: clients (the load process)
// ---------------------------------------------------------------------------------------

fn client_socket() -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Capped by net.core.rmem_max; absorbs a round's burst while this process is busy.
    let _ = socket.set_recv_buffer_size(corium::SOCKET_BUFFER_SIZE);
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    UdpSocket::from_std(socket.into())
}

async fn clients(opts: &Opts) -> Result<(), BoxError> {
    let server = opts.addr("server");
    let control = opts.addr("control");
    let sockets = opts.num("sockets", 100) as usize;
    let per_socket = opts.num("per-socket", 100) as usize;
    let report = opts.num("report", 500).max(1);
    if per_socket > 65_536 {
        return Err("--per-socket at most 65 536".into());
    }

    // Register every observation (CON GET Observe=0), resending the unanswered ones
    // every second; a resend has the same message ID, so the server's deduplication
    // answers it again without a second registration.
    let mut socks = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        socks.push(Arc::new(client_socket()?));
    }
    let mut buf = Vec::with_capacity(64);
    let mut rbuf = vec![0u8; 2048];
    let started = StdInstant::now();
    for (s, sock) in socks.iter().enumerate() {
        let mut acked = vec![false; per_socket];
        let mut left = per_socket;
        while left > 0 {
            if started.elapsed() > Duration::from_secs(30) {
                return Err("registration did not finish within 30 s".into());
            }
            for (j, _) in acked.iter().enumerate().filter(|(_, a)| !**a) {
                registration(&mut buf, j as u16, ((s as u64) << 32) | j as u64);
                sock.send_to(&buf, server).await?;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            while left > 0 {
                let Ok(r) = tokio::time::timeout_at(deadline, sock.recv(&mut rbuf)).await else {
                    break;
                };
                let len = r?;
                // ACK 2.05 carrying our token: the relation stands.
                if len >= 12 && coap_type(&rbuf[..len]) == Some(2) && rbuf[1] == 0x45 {
                    let j = u32::from_be_bytes(rbuf[8..12].try_into()?) as usize;
                    if j < per_socket && !acked[j] {
                        acked[j] = true;
                        left -= 1;
                    }
                }
            }
        }
    }
    let relations = sockets * per_socket;
    eprintln!(
        "clients: {relations} observations registered on {sockets} sockets in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let ctrl = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?);
    let received = Arc::new(AtomicU64::new(0));
    for sock in &socks {
        let (sock, ctrl, received) = (sock.clone(), ctrl.clone(), received.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok(len) = sock.recv(&mut buf).await {
                // A NON 2.05 notification.
                if coap_type(&buf[..len]) == Some(1) && len > 1 && buf[1] == 0x45 {
                    let total = received.fetch_add(1, Ordering::Relaxed) + 1;
                    if total % report == 0 {
                        let _ = ctrl.try_send_to(format!("RECV {total}").as_bytes(), control);
                    }
                }
            }
        });
    }
    ctrl.send_to(format!("START {relations}").as_bytes(), control)
        .await?;

    let mut mark = None;
    let mut cbuf = [0u8; 64];
    let limit = Duration::from_secs(opts.num("timeout", 300));
    loop {
        let (len, _) = tokio::time::timeout(limit, ctrl.recv_from(&mut cbuf))
            .await
            .map_err(|_| "no STOP from the server")??;
        let at = (StdInstant::now(), received.load(Ordering::Relaxed));
        match &cbuf[..len] {
            b"MARK" => mark = Some(at),
            b"STOP" => {
                let (t0, r0) = mark.ok_or("STOP before MARK")?;
                let (t1, r1) = at;
                // Whatever is still in the socket buffers.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let secs = (t1 - t0).as_secs_f64();
                println!(
                    "RESULT role=clients relations={relations} sockets={sockets} received={} secs={secs:.3} \
                     rate={:.0} total_received={}",
                    r1 - r0,
                    (r1 - r0) as f64 / secs,
                    received.load(Ordering::Relaxed),
                );
                return Ok(());
            }
            _ => {}
        }
    }
}
