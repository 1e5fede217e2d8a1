//! Instruction-count driver for the whole runtime server path (issue 8, "Hot path"):
//! the real [`corium::Server`] (a `/test` resource answering 2.05 "hello") on a
//! current-thread runtime in a thread of its own, and a plain `std::net::UdpSocket`
//! client in the main thread sending `N` GET requests one at a time. With `echo`, the
//! same client loop runs against a plain echo thread instead: its instructions (the
//! client's, and the echo thread's two system-call wrappers per request) are what the
//! server figure includes beyond the server itself. `bench/callgrind.sh` runs it under
//! `valgrind --tool=callgrind` with two values of `N` and divides the difference in
//! instructions by the difference in `N`.
//!
//! ```sh
//! cargo run --release -p corium --example server_hot -- con|non|echo 10000
//! ```

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use corium::{Code, RequestContext, Resource, Response, Router, Server};

/// GET `/test`, CON or NON, with a 4-byte token.
fn request(confirmable: bool, mid: u16, token: u32) -> [u8; 13] {
    let ty: u8 = if confirmable { 0 } else { 1 };
    let [m0, m1] = mid.to_be_bytes();
    let [t0, t1, t2, t3] = token.to_be_bytes();
    [
        0x40 | (ty << 4) | 4,
        0x01,
        m0,
        m1,
        t0,
        t1,
        t2,
        t3,
        0xB4,
        b't',
        b'e',
        b's',
        b't',
    ]
}

/// Sends `n` requests one at a time, each answered before the next.
fn drive(socket: &UdpSocket, server: SocketAddr, confirmable: bool, n: u32) {
    let mut buf = [0u8; 1500];
    for i in 0..n {
        let req = request(confirmable, i as u16, i);
        socket.send_to(&req, server).expect("send");
        loop {
            let (len, _) = socket.recv_from(&mut buf).expect("answer");
            if len >= 8 && buf[4..8] == req[4..8] {
                break;
            }
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "con".into());
    let n: u32 = args.next().map_or(10_000, |a| a.parse().expect("N"));
    assert!(n < 60_000, "N must stay below 60000 (distinct message IDs)");
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    if mode == "echo" {
        let echo = UdpSocket::bind("127.0.0.1:0").expect("bind echo");
        let addr = echo.local_addr().expect("echo addr");
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((len, from)) = echo.recv_from(&mut buf) {
                let _ = echo.send_to(&buf[..len], from);
            }
        });
        drive(&client, addr, true, n);
        println!("server_hot mode=echo n={n}");
        return;
    }
    let confirmable = mode != "non";
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let router = Router::new().route(
                "/test",
                Resource::new().get(|_ctx: RequestContext| async {
                    Response::with_payload(Code::CONTENT, "hello")
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
    drive(&client, server, confirmable, n);
    let _ = stop_tx.send(());
    server_thread.join().expect("server thread");
    println!("server_hot mode={mode} n={n}");
}
