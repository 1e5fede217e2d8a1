//! Heap allocations per request on the server's plain GET path (issue 8, "Hot path").
//!
//! Starts the real runtime server ([`corium::Server`], a `/test` resource whose async
//! handler answers 2.05 with a short payload, and `/sync`, the same with a synchronous
//! handler, [`corium::Resource::get_sync`]) on loopback in a thread of its own, warms it up, then sends
//! GET requests one at a time from a plain `std::net::UdpSocket` in the main thread and
//! counts, with a counting global allocator ([`stats_alloc`]), the allocations made in
//! the whole process while the measured loop runs. The client loop itself allocates
//! nothing (stack buffers, `send_to`/`recv_from`); this is checked first by running the
//! same loop against a plain echo thread, whose figure is printed as `baseline`.
//!
//! ```sh
//! cargo run --release -p corium --example alloc_count -- [REQUESTS] [WARMUP]
//! ```
//!
//! Prints one `RESULT` line per case (`baseline`, `con`, `non`, `con-sync`, `non-sync`)
//! with allocations,
//! reallocations and bytes allocated per request.

use std::alloc::System;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use corium::{Code, RequestContext, Resource, Response, Router, Server};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The payload of `/test`.
const PAYLOAD: &str = "hello";

/// A GET datagram (RFC 7252 §3) for the 4-byte path `path` with a 4-byte token, CON or
/// NON.
fn request(path: &[u8; 4], confirmable: bool, mid: u16, token: u32) -> [u8; 13] {
    let ty: u8 = if confirmable { 0 } else { 1 };
    let [m0, m1] = mid.to_be_bytes();
    let [t0, t1, t2, t3] = token.to_be_bytes();
    [
        0x40 | (ty << 4) | 4,
        0x01, // GET
        m0,
        m1,
        t0,
        t1,
        t2,
        t3,
        0xB4, // Uri-Path (11), length 4
        path[0],
        path[1],
        path[2],
        path[3],
    ]
}

/// Sends `count` requests one at a time and checks each answer: a 2.05 with the same
/// token (piggybacked ACK for CON, NON for NON). Allocation-free.
fn drive(
    path: &[u8; 4],
    socket: &UdpSocket,
    server: SocketAddr,
    confirmable: bool,
    first_mid: u16,
    count: u32,
    echo: bool,
) -> u32 {
    let mut buf = [0u8; 1500];
    let mut ok = 0;
    for i in 0..count {
        let mid = first_mid.wrapping_add(i as u16);
        let req = request(path, confirmable, mid, i ^ 0x5a5a_0000);
        socket.send_to(&req, server).expect("send");
        loop {
            let (len, _) = match socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(err) => panic!("no answer to request {i}: {err}"),
            };
            let msg = &buf[..len];
            if echo {
                ok += u32::from(msg == req);
                break;
            }
            if len < 8 || msg[4..8] != req[4..8] {
                continue; // A late answer to an earlier request.
            }
            let ty = (msg[0] >> 4) & 3;
            let expected_ty = if confirmable { 2 } else { 1 };
            if msg[1] == Code::CONTENT.0 && ty == expected_ty {
                ok += 1;
            }
            break;
        }
    }
    ok
}

/// Runs `count` measured requests after `warmup` unmeasured ones and prints the counts.
#[allow(clippy::too_many_arguments)]
fn measure(
    name: &str,
    path: &[u8; 4],
    socket: &UdpSocket,
    server: SocketAddr,
    confirmable: bool,
    mid: &mut u16,
    warmup: u32,
    count: u32,
    echo: bool,
) {
    let warm = drive(path, socket, server, confirmable, *mid, warmup, echo);
    assert_eq!(warm, warmup, "{name}: warm-up answers");
    *mid = mid.wrapping_add(warmup as u16);
    let region = Region::new(GLOBAL);
    let ok = drive(path, socket, server, confirmable, *mid, count, echo);
    let stats = region.change();
    *mid = mid.wrapping_add(count as u16);
    assert_eq!(ok, count, "{name}: answers");
    let n = f64::from(count);
    println!(
        "RESULT case={name} requests={count} allocs={} reallocs={} deallocs={} bytes={} \
         allocs_per_req={:.4} reallocs_per_req={:.4} bytes_per_req={:.1}",
        stats.allocations,
        stats.reallocations,
        stats.deallocations,
        stats.bytes_allocated,
        stats.allocations as f64 / n,
        stats.reallocations as f64 / n,
        stats.bytes_allocated as f64 / n,
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: u32 = args.next().map_or(20_000, |a| a.parse().expect("REQUESTS"));
    let warmup: u32 = args.next().map_or(2_000, |a| a.parse().expect("WARMUP"));
    assert!(
        u64::from(count) + u64::from(warmup) < 30_000,
        "REQUESTS + WARMUP must stay below 30000 (message IDs of one client stay distinct)"
    );

    // Baseline: the client loop against a plain echo thread (no CoAP, no allocation).
    let echo = UdpSocket::bind("127.0.0.1:0").expect("bind echo");
    let echo_addr = echo.local_addr().expect("echo addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((len, from)) = echo.recv_from(&mut buf) {
            let _ = echo.send_to(&buf[..len], from);
        }
    });
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut mid = 1u16;
    measure(
        "baseline", b"test", &client, echo_addr, true, &mut mid, warmup, count, true,
    );

    // The server, on a current-thread runtime in a thread of its own.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let router = Router::new()
                .route(
                    "/test",
                    Resource::new().get(|_ctx: RequestContext| async {
                        Response::with_payload(Code::CONTENT, PAYLOAD)
                    }),
                )
                .route(
                    "/sync",
                    Resource::new().get_sync(|_ctx: RequestContext| {
                        Response::with_payload(Code::CONTENT, PAYLOAD)
                    }),
                );
            let server = Server::builder()
                .bind(&["127.0.0.1:0".parse().expect("addr")], router)
                .await
                .expect("bind server");
            addr_tx.send(server.local_addrs()[0]).expect("addr");
            server
                .run_until(async {
                    let _ = stop_rx.await;
                })
                .await
                .expect("server");
        });
    });
    let server = addr_rx.recv().expect("server address");

    // CON and NON from client sockets of their own, so that message IDs never collide
    // in the server's deduplication cache. `con`/`non` go to the async handler of
    // `/test`, `con-sync`/`non-sync` to the synchronous one of `/sync`.
    for (name, path, confirmable) in [
        ("con", b"test", true),
        ("non", b"test", false),
        ("con-sync", b"sync", true),
        ("non-sync", b"sync", false),
    ] {
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind client");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut mid = 1u16;
        measure(
            name,
            path,
            &client,
            server,
            confirmable,
            &mut mid,
            warmup,
            count,
            false,
        );
    }

    let _ = stop_tx.send(());
    server_thread.join().expect("server thread");
}
