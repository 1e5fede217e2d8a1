//! `corium bench --peers N`: many distinct client endpoints, each sending a request now
//! and then (issue 8, "many peers").
//!
//! Each peer is a UDP socket of its own bound to `--local-ip` (ephemeral port), so the
//! server sees N distinct endpoints (RFC 7252 §4.5: deduplication is per endpoint).
//! Every `--interval` seconds each peer sends one Confirmable GET with a fresh
//! Message ID and waits up to `--timeout` for the piggybacked answer (a late answer
//! counts as lost, retransmissions are not sent). The peers' first requests are
//! spread evenly over the first interval. The run lasts `--duration` seconds after all
//! peers have been opened; the summary counts the peers that were answered at least
//! once, and the last line is machine-readable:
//!
//! ```text
//! RESULT rps=<f64> p50_us=<u64> p99_us=<u64> sent=<u64> ok=<u64> lost=<u64> peers=<n> served=<n>
//! ```
//!
//! Each socket is a file descriptor: beyond the process's limit (`ulimit -n`), run
//! several processes with different `--local-ip` (`bench/many-peers.sh` does).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corium::wire::{Message, MessageType, MessageWriter, OptionNumber};
use tokio::net::UdpSocket;

use crate::{Failure, EXIT_NO_RESPONSE, EXIT_OK};

/// What the peers counted, shared by their tasks.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    lost: AtomicU64,
    /// Peers answered at least once.
    served: AtomicU64,
}

/// What one run is made of.
#[derive(Debug, Clone)]
pub(crate) struct PeersPlan {
    /// The server.
    pub(crate) server: SocketAddr,
    /// Uri-Path segments of the request.
    pub(crate) path: Vec<Vec<u8>>,
    /// Number of peers.
    pub(crate) peers: u32,
    /// Time between two requests of one peer.
    pub(crate) interval: Duration,
    /// Measured time, after every peer is open.
    pub(crate) duration: Duration,
    /// How long a peer waits for its answer.
    pub(crate) timeout: Duration,
    /// Where the peers' sockets bind.
    pub(crate) local_ip: IpAddr,
}

/// One peer's loop: a request every `interval` from `start`, until `end`. Returns its
/// latencies in µs.
async fn peer(
    plan: Arc<PeersPlan>,
    sock: UdpSocket,
    index: u32,
    start: tokio::time::Instant,
    end: tokio::time::Instant,
    counters: Arc<Counters>,
) -> Vec<u32> {
    let mut latencies = Vec::new();
    let mut out = [0u8; 256];
    let mut buf = [0u8; 1500];
    // Distinct Message IDs and tokens per peer (RFC 7252 §4.4, §5.3.1); the server
    // deduplicates on (peer, Message ID) for EXCHANGE_LIFETIME.
    let mut mid = (index as u16).wrapping_mul(7919);
    let mut served = false;
    let mut next = start;
    while next < end {
        tokio::time::sleep_until(next).await;
        next += plan.interval;
        mid = mid.wrapping_add(1);
        let token = mid.to_be_bytes();
        let Ok(mut w) = MessageWriter::new(
            &mut out,
            MessageType::Confirmable,
            corium::Code::GET,
            mid,
            &token,
        ) else {
            return latencies;
        };
        for seg in &plan.path {
            if w.option(OptionNumber::URI_PATH, seg).is_err() {
                return latencies;
            }
        }
        let len = w.finish();
        let sent_at = Instant::now();
        counters.sent.fetch_add(1, Ordering::Relaxed);
        if sock.send(&out[..len]).await.is_err() {
            counters.lost.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let deadline = tokio::time::Instant::now() + plan.timeout;
        let answered = loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    let Ok(msg) = Message::parse(&buf[..n]) else {
                        continue;
                    };
                    if msg.ty() == MessageType::Acknowledgement
                        && msg.message_id() == mid
                        && msg.token() == token
                    {
                        break msg.code().class() == 2;
                    }
                }
                Ok(Err(_)) | Err(_) => break false,
            }
        };
        if answered {
            counters.ok.fetch_add(1, Ordering::Relaxed);
            let us = sent_at.elapsed().as_micros();
            latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
            if !served {
                served = true;
                counters.served.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            counters.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
    latencies
}

/// Runs the peers on `runtime` and prints the summary and the `RESULT` line.
pub(crate) fn run(plan: PeersPlan, runtime: &tokio::runtime::Runtime) -> Result<u8, Failure> {
    let (counters, mut lat) = drive(&plan, runtime)?;
    lat.sort_unstable();
    let ok = counters.ok.load(Ordering::Relaxed);
    let sent = counters.sent.load(Ordering::Relaxed);
    let lost = counters.lost.load(Ordering::Relaxed);
    let served = counters.served.load(Ordering::Relaxed);
    let rps = ok as f64 / plan.duration.as_secs_f64();
    let p50 = super::percentile(&lat, 50.0);
    let p99 = super::percentile(&lat, 99.0);
    println!("  requests: sent {sent}  ok {ok}  lost {lost}");
    println!("  peers answered at least once: {served} of {}", plan.peers);
    println!("  throughput: {rps:.1} responses/s");
    println!(
        "  latency (µs): p50 {p50}  p99 {p99}  max {}",
        lat.last().copied().unwrap_or(0)
    );
    println!(
        "RESULT rps={rps:.1} p50_us={p50} p99_us={p99} sent={sent} ok={ok} lost={lost} peers={} served={served}",
        plan.peers
    );
    if ok == 0 {
        eprintln!("error: no successful response from {}", plan.server);
        return Ok(EXIT_NO_RESPONSE);
    }
    Ok(EXIT_OK)
}

/// Opens the peers' sockets, runs them, and returns the counters and latencies (µs).
fn drive(
    plan: &PeersPlan,
    runtime: &tokio::runtime::Runtime,
) -> Result<(Arc<Counters>, Vec<u32>), Failure> {
    println!(
        "corium bench --peers {} ({}): one CON GET per peer every {:.1} s from {}, \
         measuring {:.1} s",
        plan.peers,
        plan.server,
        plan.interval.as_secs_f64(),
        plan.local_ip,
        plan.duration.as_secs_f64()
    );
    let plan = Arc::new(plan.clone());
    let counters = Arc::new(Counters::default());
    let opened = Instant::now();
    let latencies = runtime.block_on(async {
        // Open every socket first, so that the measured time has them all.
        let mut sockets = Vec::with_capacity(plan.peers as usize);
        for _ in 0..plan.peers {
            let sock = UdpSocket::bind(SocketAddr::new(plan.local_ip, 0))
                .await
                .map_err(|e| {
                    Failure::other(format!(
                        "cannot open socket {} on {} (ulimit -n?): {e}",
                        sockets.len() + 1,
                        plan.local_ip
                    ))
                })?;
            sock.connect(plan.server)
                .await
                .map_err(|e| Failure::other(format!("cannot connect to {}: {e}", plan.server)))?;
            sockets.push(sock);
        }
        println!(
            "  {} sockets open in {:.1} s",
            sockets.len(),
            opened.elapsed().as_secs_f64()
        );
        let start = tokio::time::Instant::now();
        let end = start + plan.duration;
        let n = plan.peers.max(1);
        let tasks: Vec<_> = sockets
            .into_iter()
            .enumerate()
            .map(|(i, sock)| {
                // Spread the first requests evenly over the first interval.
                let i = i as u32;
                let offset = plan.interval.mul_f64(f64::from(i) / f64::from(n));
                tokio::spawn(peer(
                    Arc::clone(&plan),
                    sock,
                    i,
                    start + offset,
                    end,
                    Arc::clone(&counters),
                ))
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            if let Ok(l) = t.await {
                all.extend(l);
            }
        }
        Ok::<_, Failure>(all)
    })?;
    Ok((counters, latencies))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server answering every CON request with a piggybacked 2.05 (RFC 7252 §5.2.1).
    async fn responder(sock: UdpSocket) {
        let mut buf = [0u8; 1500];
        let mut out = [0u8; 64];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(msg) = Message::parse(&buf[..n]) else {
                continue;
            };
            let Ok(w) = MessageWriter::new(
                &mut out,
                MessageType::Acknowledgement,
                corium::Code::CONTENT,
                msg.message_id(),
                msg.token(),
            ) else {
                continue;
            };
            let len = w.finish();
            let _ = sock.send_to(&out[..len], from).await;
        }
    }

    #[test]
    fn every_peer_is_served() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(async {
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = sock.local_addr().unwrap();
            tokio::spawn(responder(sock));
            addr
        });
        let plan = PeersPlan {
            server,
            path: vec![b"x".to_vec()],
            peers: 50,
            interval: Duration::from_millis(100),
            duration: Duration::from_millis(350),
            timeout: Duration::from_secs(2),
            local_ip: "127.0.0.1".parse().unwrap(),
        };
        let (counters, latencies) = drive(&plan, &runtime).unwrap();
        // 50 peers, each a request at once and one 100 ms later (or more, timing allowing).
        assert_eq!(counters.served.load(Ordering::Relaxed), 50);
        assert_eq!(counters.lost.load(Ordering::Relaxed), 0);
        let ok = counters.ok.load(Ordering::Relaxed);
        assert_eq!(ok, counters.sent.load(Ordering::Relaxed));
        assert_eq!(latencies.len() as u64, ok);
        assert_eq!(run(plan, &runtime).unwrap(), EXIT_OK);
    }
}
