//! Load generator for the Resource Directory benchmark (`bench/rd.sh`, BENCHMARKS.md "RD").
//!
//! Two modes:
//!
//! * `rd_load run --rd coap://HOST:PORT [--endpoints N] [--links L] [--concurrency C]
//!   [--sockets S] [--lookups M] [--lt SECS] [--skip-registration 1]` talks CoAP over UDP to a running RD. It
//!   registers N endpoints (RFC 9176 §5: `POST /rd?ep=NAME&d=bench&lt=SECS` with L links
//!   in link format each), C registrations in flight spread over S client sockets (each
//!   its own source port, hence its own registrant under the RD's default access
//!   policy, RFC 9176 §7.5), and reports registrations per second. It then runs M
//!   filtered resource lookups (`GET /rd-lookup/res?rt=tJ-gG`, §6.1: 10 matching links
//!   out of N × L) and M endpoint lookups (`GET /rd-lookup/ep?ep=NAME`, §6.4: one
//!   endpoint) one at a time and reports their latency (p50, p99). The last stdout line
//!   is machine-readable: `RESULT key=value …`.
//! * `rd_load serve --bind ADDR:PORT --data DIR [--max-registrations N]
//!   [--max-total-payload BYTES]` runs the same directory `corium rd` runs
//!   ([`ResourceDirectory`] on a [`RedbStore`] in `DIR`, a multi-threaded tokio runtime,
//!   the default server configuration) with the two limits a 100 000-endpoint run
//!   exceeds raised: `RdConfig::max_registrations` (default 10 000) and
//!   `RdConfig::max_total_payload` (default 64 MiB), which `corium rd` does not expose
//!   as options. It prints `rd_load serving coap on ADDR` once bound, like `corium rd`.
//!
//! Link `j` of endpoint `e` is `</s/j>;rt="tJ-gG";if="ifK";ct=0` with `G = e mod
//! groups` (`groups` = N / 10, at least 1) and `K = j mod 3`: a lookup `rt=tJ-gG`
//! selects the `j`-th link of the 10 endpoints of group `G`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corium::{Client, Code, ContentFormat, EndpointConfig, OptionNumber, Server};
use corium_rd::{RdConfig, RedbStore, ResourceDirectory};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Endpoints per lookup group: a resource lookup by `rt` matches this many links.
const GROUP_SIZE: usize = 10;

fn usage() -> ! {
    eprintln!(
        "usage: rd_load run --rd coap://HOST:PORT [--endpoints N] [--links L] [--concurrency C] \
         [--sockets S] [--lookups M] [--lt SECS] [--skip-registration 1]\n       \
         rd_load serve --bind ADDR:PORT --data DIR [--max-registrations N] \
         [--max-total-payload BYTES]"
    );
    std::process::exit(2);
}

/// `--name value` pairs after the mode.
struct Args(Vec<(String, String)>);

impl Args {
    fn parse(args: impl Iterator<Item = String>) -> Args {
        let args: Vec<String> = args.collect();
        if !args.len().is_multiple_of(2) {
            usage();
        }
        Args(
            args.chunks(2)
                .map(|p| match p[0].strip_prefix("--") {
                    Some(name) => (name.to_owned(), p[1].clone()),
                    None => usage(),
                })
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("rd_load: --{name} {v:?} is not a number");
                std::process::exit(2)
            }),
        }
    }
}

fn main() -> Result<(), BoxError> {
    let mut argv = std::env::args().skip(1);
    let mode = argv.next().unwrap_or_default();
    let args = Args::parse(argv);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match mode.as_str() {
        "run" => runtime.block_on(run(&args)),
        "serve" => runtime.block_on(serve(&args)),
        _ => usage(),
    }
}

// ---------------------------------------------------------------------------------
// serve

async fn serve(args: &Args) -> Result<(), BoxError> {
    let bind: SocketAddr = args.get("bind").unwrap_or("127.0.0.1:0").parse()?;
    let data = PathBuf::from(args.get("data").unwrap_or_else(|| usage()));
    let defaults = RdConfig::default();
    let config = RdConfig {
        max_registrations: args.num("max-registrations", defaults.max_registrations),
        max_total_payload: args.num("max-total-payload", defaults.max_total_payload),
        ..defaults
    };
    eprintln!(
        "rd_load serve: max_registrations={} max_total_payload={}",
        config.max_registrations, config.max_total_payload
    );
    let store = Arc::new(RedbStore::open_dir(&data)?);
    let rd = ResourceDirectory::open(config, store).await?;
    eprintln!("rd_load serve: {} registrations", rd.registration_count());
    let server = Server::builder().bind(&[bind], rd.router()).await?;
    let bound: Vec<String> = server
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    println!("rd_load serving coap on {}", bound.join(", "));
    let shutdown = async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    server.run_until(shutdown).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------
// run

/// The link-format document of endpoint `e`.
fn links_of(e: usize, links: usize, groups: usize) -> String {
    let g = e % groups;
    (0..links)
        .map(|j| format!("</s/{j}>;rt=\"t{j}-g{g}\";if=\"if{}\";ct=0", j % 3))
        .collect::<Vec<_>>()
        .join(",")
}

fn endpoint_name(e: usize) -> String {
    format!("node-{e:07}")
}

/// Latencies in microseconds, sorted.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Top-level links in a link-format payload (commas outside `<…>` and quotes).
fn count_links(payload: &[u8]) -> usize {
    if payload.is_empty() {
        return 0;
    }
    let (mut n, mut quoted, mut angle) = (1, false, false);
    let mut escaped = false;
    for &b in payload {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' if !angle => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => n += 1,
            _ => {}
        }
    }
    n
}

/// A tiny deterministic generator (xorshift) for picking lookup targets.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Counts of registration outcomes.
#[derive(Default)]
struct Outcomes {
    created: AtomicUsize,
    other_code: AtomicUsize,
    failed: AtomicUsize,
    last_error: std::sync::Mutex<Option<String>>,
}

async fn run(args: &Args) -> Result<(), BoxError> {
    let rd = args
        .get("rd")
        .unwrap_or_else(|| usage())
        .trim_end_matches('/');
    let endpoints: usize = args.num("endpoints", 100_000);
    let links: usize = args.num("links", 10);
    let concurrency: usize = args.num("concurrency", 64).max(1);
    let sockets: usize = args.num("sockets", 8).clamp(1, concurrency);
    let lookups: usize = args.num("lookups", 200);
    let lt: u32 = args.num("lt", 86_400);
    // With `--skip-registration 1`, the endpoints are taken to be registered already
    // (by an earlier run against the same data): only the lookups run.
    let skip_registration = args.num("skip-registration", 0u8) != 0;
    let groups = (endpoints / GROUP_SIZE).max(1);
    let rd_addr: SocketAddr = rd
        .strip_prefix("coap://")
        .unwrap_or_else(|| usage())
        .parse()?;
    let local: SocketAddr = if rd_addr.is_ipv4() {
        "127.0.0.1:0".parse()?
    } else {
        "[::1]:0".parse()?
    };

    // NSTART (RFC 7252 §4.7) raised so that each socket keeps its share of the
    // requests in flight; message IDs: each socket uses endpoints / sockets of its
    // 65 536 per EXCHANGE_LIFETIME.
    let per_socket = concurrency.div_ceil(sockets);
    let mut config = EndpointConfig::default();
    config.transmission.nstart = per_socket;
    config.default_request_timeout = Some(Duration::from_secs(60));
    let mut clients = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        clients.push(Client::builder().config(config.clone()).bind(local).await?);
    }
    eprintln!(
        "rd_load: registering {endpoints} endpoints x {links} links at {rd}/rd, \
         {concurrency} in flight over {sockets} sockets"
    );

    let next = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Outcomes::default());
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let client = clients[worker % sockets].clone();
        let (next, outcomes, done) = (next.clone(), outcomes.clone(), done.clone());
        let rd = rd.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let e = next.fetch_add(1, Ordering::Relaxed);
                if e >= endpoints || skip_registration {
                    break;
                }
                let uri = format!("{rd}/rd?ep={}&d=bench&lt={lt}", endpoint_name(e));
                let t = Instant::now();
                let result = client
                    .request(Code::POST, &uri)
                    .content_format(ContentFormat::LINK_FORMAT)
                    .payload(links_of(e, links, groups))
                    .send()
                    .await;
                latencies.push(t.elapsed().as_micros() as u64);
                match result {
                    Ok(r)
                        if r.code == Code::CREATED
                            && r.options.get(OptionNumber::LOCATION_PATH).is_some() =>
                    {
                        outcomes.created.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        outcomes.other_code.fetch_add(1, Ordering::Relaxed);
                        *outcomes.last_error.lock().expect("lock") = Some(format!(
                            "{} {}",
                            r.code,
                            String::from_utf8_lossy(&r.payload)
                        ));
                    }
                    Err(err) => {
                        outcomes.failed.fetch_add(1, Ordering::Relaxed);
                        *outcomes.last_error.lock().expect("lock") = Some(err.to_string());
                    }
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of(10_000) {
                    let secs = started.elapsed().as_secs_f64();
                    eprintln!(
                        "rd_load: {n} registrations in {secs:.1} s ({:.0}/s)",
                        n as f64 / secs
                    );
                }
            }
            latencies
        }));
    }
    let mut reg_lat = Vec::with_capacity(endpoints);
    for t in tasks {
        reg_lat.extend(t.await?);
    }
    let reg_secs = started.elapsed().as_secs_f64();
    reg_lat.sort_unstable();
    let created = outcomes.created.load(Ordering::Relaxed);
    let other = outcomes.other_code.load(Ordering::Relaxed);
    let failed = outcomes.failed.load(Ordering::Relaxed);
    let reg_rate = created as f64 / reg_secs;
    println!(
        "registration: {created} created, {other} other responses, {failed} failed in {reg_secs:.1} s \
         = {reg_rate:.0} registrations/s; latency p50 {} us, p99 {} us",
        percentile(&reg_lat, 50.0),
        percentile(&reg_lat, 99.0)
    );
    if let Some(err) = outcomes.last_error.lock().expect("lock").as_ref() {
        println!("registration: last error: {err}");
    }

    // Lookups, one at a time from a socket of their own.
    let client = Client::builder().config(config).bind(local).await?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut res = Lookups::default();
    let mut ep = Lookups::default();
    let registered_groups = groups.min(endpoints);
    for _ in 0..lookups {
        let g = rng.below(registered_groups);
        let j = rng.below(links.max(1));
        let expect = (0..endpoints).skip(g).step_by(groups).count();
        res.one(&client, &format!("{rd}/rd-lookup/res?rt=t{j}-g{g}"), expect)
            .await;
        let e = rng.below(endpoints.max(1));
        ep.one(
            &client,
            &format!("{rd}/rd-lookup/ep?ep={}", endpoint_name(e)),
            1,
        )
        .await;
    }
    res.report("resource lookup (rt=tJ-gG)");
    ep.report("endpoint lookup (ep=NAME)");
    println!(
        "RESULT endpoints={endpoints} links={links} concurrency={concurrency} sockets={sockets} \
         created={created} other={other} failed={failed} reg_secs={reg_secs:.2} \
         reg_per_s={reg_rate:.0} reg_p50_us={} reg_p99_us={} lookups={lookups} \
         res_p50_us={} res_p99_us={} res_bad={} ep_p50_us={} ep_p99_us={} ep_bad={}",
        percentile(&reg_lat, 50.0),
        percentile(&reg_lat, 99.0),
        res.p(50.0),
        res.p(99.0),
        res.bad,
        ep.p(50.0),
        ep.p(99.0),
        ep.bad,
    );
    Ok(())
}

/// Latencies of one kind of lookup, and how many answers were not as expected.
#[derive(Default)]
struct Lookups {
    latencies: Vec<u64>,
    bad: usize,
    last_bad: Option<String>,
}

impl Lookups {
    async fn one(&mut self, client: &Client, uri: &str, expect: usize) {
        let t = Instant::now();
        let result = client.get(uri).await;
        self.latencies.push(t.elapsed().as_micros() as u64);
        match result {
            Ok(r) if r.code == Code::CONTENT && count_links(&r.payload) == expect => {}
            Ok(r) => {
                self.bad += 1;
                self.last_bad = Some(format!(
                    "{uri}: {} with {} links, expected {expect}",
                    r.code,
                    count_links(&r.payload)
                ));
            }
            Err(err) => {
                self.bad += 1;
                self.last_bad = Some(format!("{uri}: {err}"));
            }
        }
    }

    fn p(&mut self, p: f64) -> u64 {
        self.latencies.sort_unstable();
        percentile(&self.latencies, p)
    }

    fn report(&mut self, what: &str) {
        println!(
            "{what}: {} lookups, p50 {} us, p99 {} us, {} unexpected answers",
            self.latencies.len(),
            self.p(50.0),
            self.p(99.0),
            self.bad
        );
        if let Some(bad) = &self.last_bad {
            println!("{what}: last unexpected: {bad}");
        }
    }
}
