//! `corium bench coap://HOST/… --handshakes --credentials FILE`: EDHOC (RFC 9528)
//! handshakes per second over CoAP/UDP, Corium as the initiator (`bench/edhoc.sh`).
//!
//! Each handshake is a full run of method 3 with cipher suite 2 (what lakers, and so
//! aiocoap's lakers-python, offer): message_1 and message_3 in two POSTs to
//! `<origin>/.well-known/edhoc` (RFC 9528 Appendix A.2), message_2 verified, message_4
//! verified when the responder sends one, and the OSCORE key export of Appendix A.1
//! (the derived context is built, then dropped). The credentials come from the
//! `[[edhoc]]` table whose `uri` matches the target, as for `corium get`.
//!
//! `--sockets` clients (each its own socket) run `--window` handshakes at a time each;
//! one that fails or exceeds `--timeout` counts as failed. Only handshakes started after
//! the warm-up count. With `--handshake-count N` the run instead stops after N
//! handshakes (no warm-up), and the rate is N over the time they took: aiocoap 0.4.17's
//! responder keeps every EDHOC session and has C_R values for 47 of them (the compact
//! integers, `oscore_sitewrapper.py`), then answers 5.00.
//!
//! Output ends with `RESULT hps=… p50_us=… p99_us=… started=… ok=… failed=…`, the line
//! of `--handshakes` over DTLS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use corium::edhoc::corium_edhoc::Initiator;
use corium::Client;

use crate::{BenchArgs, Failure, EXIT_NO_RESPONSE, EXIT_OK};

/// What one handshake loop counted.
#[derive(Default)]
struct Tally {
    started: u64,
    ok: u64,
    failed: u64,
    latencies_us: Vec<u32>,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.started += other.started;
        self.ok += other.ok;
        self.failed += other.failed;
        self.latencies_us.extend(other.latencies_us);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// What every loop shares.
struct Plan {
    base: String,
    initiator: Initiator,
    epoch: Instant,
    warmup_end: Duration,
    end: Duration,
    timeout: Duration,
    /// `--handshake-count`: handshakes started so far, and the most to start.
    count: Option<(std::sync::atomic::AtomicU64, u64)>,
}

/// One handshake: EDHOC over two POSTs and the OSCORE context derived from it.
async fn handshake(client: &Client, plan: &Plan) -> Result<(), String> {
    let session = corium::edhoc::establish(client, &plan.base, &plan.initiator)
        .await
        .map_err(|e| e.to_string())?;
    session
        .oscore_context()
        .build()
        .map(drop)
        .map_err(|e| format!("OSCORE context from EDHOC: {e}"))
}

async fn handshake_loop(client: Arc<Client>, plan: Arc<Plan>) -> Tally {
    let mut tally = Tally::default();
    loop {
        let started = plan.epoch.elapsed();
        let done = match &plan.count {
            Some((n, max)) => n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= *max,
            None => started >= plan.end,
        };
        if done {
            return tally;
        }
        let measured = started >= plan.warmup_end;
        let result = match tokio::time::timeout(plan.timeout, handshake(&client, &plan)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no handshake within {:?}", plan.timeout)),
        };
        let took = plan.epoch.elapsed().saturating_sub(started);
        if !measured {
            continue;
        }
        tally.started += 1;
        match result {
            Ok(()) => {
                tally.ok += 1;
                tally
                    .latencies_us
                    .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
            }
            Err(e) => {
                tally.failed += 1;
                tally.first_error.get_or_insert(e);
            }
        }
    }
}

/// Runs the EDHOC handshake benchmark of `args` on `runtime`.
pub(crate) fn run(args: &BenchArgs, runtime: &tokio::runtime::Runtime) -> Result<u8, Failure> {
    let Some(file) = &args.credentials else {
        return Err(Failure::usage(
            "--handshakes on coap:// measures EDHOC: it needs --credentials FILE with an \
             [[edhoc]] table for the URI",
        ));
    };
    let credentials = crate::credentials::load(file)?;
    let initiator =
        crate::edhoc::initiator_for(credentials.edhoc(), &args.uri).ok_or_else(|| {
            Failure::usage(format!(
                "no [[edhoc]] uri in {} matches {}",
                file.display(),
                args.uri
            ))
        })?;
    let base = crate::edhoc::origin(&args.uri).to_owned();
    let (sockets, window) = (args.sockets as usize, args.window as usize);
    let how = match args.handshake_count {
        Some(n) => format!("{n} handshakes"),
        None => format!(
            "warm-up {:.1} s, measuring {:.1} s",
            args.warmup.as_secs_f64(),
            args.duration.as_secs_f64()
        ),
    };
    println!(
        "corium bench {}: {} concurrent EDHOC handshakes ({sockets} socket(s) x {window}), \
         method 3, suite 2, {how}",
        args.uri,
        sockets * window,
    );
    let plan = Arc::new(Plan {
        base,
        initiator,
        epoch: Instant::now(),
        warmup_end: if args.handshake_count.is_some() {
            Duration::ZERO
        } else {
            args.warmup
        },
        end: args.warmup + args.duration,
        timeout: args.timeout,
        count: args
            .handshake_count
            .map(|max| (std::sync::atomic::AtomicU64::new(0), max)),
    });
    let results = runtime.block_on(async {
        let bind: std::net::SocketAddr = if args.uri.contains('[') {
            "[::]:0".parse().expect("an address")
        } else {
            "0.0.0.0:0".parse().expect("an address")
        };
        let mut tasks = Vec::with_capacity(sockets * window);
        for _ in 0..sockets {
            let client = Arc::new(
                Client::bind(bind)
                    .await
                    .map_err(|e| Failure::other(format!("cannot bind a client socket: {e}")))?,
            );
            for _ in 0..window {
                tasks.push(tokio::spawn(handshake_loop(
                    Arc::clone(&client),
                    Arc::clone(&plan),
                )));
            }
        }
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(task.await);
        }
        Ok::<_, Failure>(out)
    })?;
    let mut total = Tally::default();
    for r in results {
        total.merge(r.map_err(|e| Failure::other(format!("worker failed: {e}")))?);
    }
    total.latencies_us.sort_unstable();
    let lat = &total.latencies_us;
    let measured = match args.handshake_count {
        Some(_) => plan.epoch.elapsed(),
        None => args.duration,
    };
    let hps = total.ok as f64 / measured.as_secs_f64();
    let (p50, p99) = (
        crate::bench::percentile(lat, 50.0),
        crate::bench::percentile(lat, 99.0),
    );
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
        crate::bench::percentile(lat, 90.0),
        lat.last().copied().unwrap_or(0)
    );
    println!(
        "RESULT hps={hps:.1} p50_us={p50} p99_us={p99} started={} ok={} failed={}",
        total.started, total.ok, total.failed
    );
    if total.ok == 0 {
        eprintln!("error: no EDHOC handshake with {} completed", args.uri);
        return Ok(EXIT_NO_RESPONSE);
    }
    Ok(EXIT_OK)
}
