//! `udp-ceiling`: the machine's throughput ceiling for CoAP-over-UDP benchmarks.
//!
//! A `recv_from`/`send_to` loop that answers every Confirmable CoAP request
//! with a piggybacked `2.05 Content` ACK (RFC 7252 §5.2.1) carrying the
//! request's Message ID and Token, and every Non-confirmable request with a
//! NON `2.05 Content` (RFC 7252 §5.2.3) reusing the request's Message ID (as
//! libcoap does: the two directions' IDs are independent, and the client keeps
//! its own unique for EXCHANGE_LIFETIME, so ours are too, without any state), both
//! with a `Content-Format: text/plain;charset=utf-8` (0) option and the
//! payload `ceiling`. It parses nothing beyond the 4-byte header and the
//! token (RFC 7252 §3), keeps no state and does no deduplication, so it
//! measures what the kernel's loopback UDP path allows and nothing else.
//! `bench/peers.sh` compares real servers against it.
//!
//! Two knobs try the multi-core designs of issue 8 at the I/O layer:
//!
//! - `--threads N`: N sockets bound to the same address with `SO_REUSEPORT`,
//!   one thread each (the kernel spreads peers over the sockets by a hash of
//!   the 4-tuple, so one peer always lands on the same socket);
//! - `--batch`: each socket is read with `recvmmsg` (up to 32 datagrams per
//!   call, GRO enabled) and answered with GSO sends (consecutive answers to one
//!   peer of the same size leave in one `sendmsg`, up to 64 segments), through
//!   the `quinn-udp` crate.
//!
//! Usage: `udp-ceiling [--bind ADDR:PORT] [--threads N] [--batch]` (default
//! `127.0.0.1:5690`, 1 thread, one datagram per system call). It prints
//! `READY <addr>` once bound and runs until killed.

use std::io::{self, IoSliceMut, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;

/// Default listening address.
const DEFAULT_BIND: &str = "127.0.0.1:5690";

/// Payload of every response.
const PAYLOAD: &[u8] = b"ceiling";

/// Largest datagram we read. Longer datagrams are truncated by the kernel,
/// which is harmless: only the header and token are looked at.
const RECV_BUF: usize = 2048;

/// Room for the largest response: 4-byte header, 8-byte token, one option
/// byte, payload marker and payload.
const SEND_BUF: usize = 4 + 8 + 1 + 1 + PAYLOAD.len();

/// CoAP version 1 (RFC 7252 §3: "Version (Ver): 2-bit unsigned integer ...
/// MUST be set to 1").
const VERSION: u8 = 1;

/// Message type Confirmable (RFC 7252 §3).
const TYPE_CON: u8 = 0;

/// Message type Non-confirmable (RFC 7252 §3).
const TYPE_NON: u8 = 1;

/// Message type Acknowledgement (RFC 7252 §3).
const TYPE_ACK: u8 = 2;

/// Code 2.05 Content, class 2 detail 5 (RFC 7252 §12.1.2).
const CODE_CONTENT: u8 = (2 << 5) | 5;

/// Content-Format option (number 12) with an empty value, i.e. format 0
/// text/plain;charset=utf-8, encoded as the first option: delta 12,
/// length 0 (RFC 7252 §3.1, §5.10.3, §12.3).
const OPT_CONTENT_FORMAT_TEXT: u8 = 12 << 4;

/// Payload marker (RFC 7252 §3).
const PAYLOAD_MARKER: u8 = 0xFF;

/// Kernel socket buffer size asked for (best effort), as `corium serve` does.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Datagrams (or GRO super-buffers) received per `recvmmsg` in `--batch` mode.
const RECV_BATCH: usize = 32;

/// Most segments per GSO send in `--batch` mode (the kernel's limit is 64).
const MAX_SEGMENTS: usize = 64;

/// Size of one receive slot in `--batch` mode: a GRO super-buffer of up to 64
/// coalesced datagrams fits.
const BATCH_SLOT: usize = 64 * 1024;

/// Builds the response to `req` into `out` and returns its length, or
/// `None` when `req` must be ignored.
///
/// A datagram is answered only if it has a valid CoAP header: version 1,
/// type CON or NON, token length 0..=8 with the whole token present
/// (RFC 7252 §3: lengths 9-15 "MUST be processed as a message format
/// error"), and a request code (class 0, detail 1..=31, RFC 7252 §12.1).
/// Empty messages (pings, code 0.00) and everything else are ignored.
fn respond(req: &[u8], out: &mut [u8; SEND_BUF]) -> Option<usize> {
    let (&first, rest) = req.split_first()?;
    let (&code, rest) = rest.split_first()?;
    let mid = rest.get(..2)?;
    let version = first >> 6;
    let mtype = (first >> 4) & 0b11;
    let tkl = usize::from(first & 0x0F);
    if version != VERSION || (mtype != TYPE_CON && mtype != TYPE_NON) || tkl > 8 {
        return None;
    }
    if code >> 5 != 0 || code & 0x1F == 0 {
        return None;
    }
    let token = rest.get(2..2 + tkl)?;

    let len = 4 + tkl + 2 + PAYLOAD.len();
    let (header, tail) = out.split_at_mut(4);
    // RFC 7252 §5.2.1: CON → piggybacked ACK with the request's Message ID;
    // §5.2.3: NON → NON, here with the request's Message ID too (a per-peer unique
    // ID without a per-peer counter). The request's TKL nibble (checked <= 8 above)
    // is kept.
    let reply_type = if mtype == TYPE_CON {
        TYPE_ACK
    } else {
        TYPE_NON
    };
    header[0] = (VERSION << 6) | (reply_type << 4) | (first & 0x0F);
    header[1] = CODE_CONTENT;
    header[2..4].copy_from_slice(mid);
    let (tok, tail) = tail.split_at_mut(tkl);
    tok.copy_from_slice(token);
    tail[0] = OPT_CONTENT_FORMAT_TEXT;
    tail[1] = PAYLOAD_MARKER;
    tail[2..2 + PAYLOAD.len()].copy_from_slice(PAYLOAD);
    Some(len)
}

/// Serves requests on `sock`, one `recv_from`/`send_to` pair per request:
/// forever when `limit` is `None`, otherwise until `limit` responses have been
/// sent. Returns the number sent.
///
/// Transient socket errors (e.g. an ICMP port-unreachable reported on a
/// later call, or a full send buffer) are ignored; the loop never panics.
fn serve(sock: &UdpSocket, limit: Option<u64>) -> u64 {
    let mut inbuf = [0u8; RECV_BUF];
    let mut outbuf = [0u8; SEND_BUF];
    let mut sent: u64 = 0;
    loop {
        if let Some(l) = limit {
            if sent >= l {
                break;
            }
        }
        let (n, peer) = match sock.recv_from(&mut inbuf) {
            Ok(r) => r,
            Err(_) => continue,
        };
        let Some(req) = inbuf.get(..n) else { continue };
        if let Some(len) = respond(req, &mut outbuf) {
            if let Some(resp) = outbuf.get(..len) {
                if sock.send_to(resp, peer).is_ok() {
                    sent = sent.wrapping_add(1);
                }
            }
        }
    }
    sent
}

/// Answers queued for one GSO send: consecutive responses to one peer, all of
/// one size (the last may be shorter, as GSO allows).
struct GsoBatch {
    /// The responses, back to back.
    bytes: Vec<u8>,
    /// Their peer.
    peer: Option<SocketAddr>,
    /// The size of each (but the last).
    segment: usize,
    /// How many.
    count: usize,
    /// At most this many per send.
    max: usize,
}

impl GsoBatch {
    /// Whether `resp` to `peer` can join the batch.
    fn fits(&self, peer: SocketAddr, len: usize) -> bool {
        self.peer == Some(peer) && self.count < self.max && len == self.segment
    }
}

/// Serves requests on `sock` with batched system calls (`--batch`): `recvmmsg`
/// of up to [`RECV_BATCH`] datagrams with GRO, and one GSO `sendmsg` per run of
/// answers to the same peer (up to [`MAX_SEGMENTS`]), through `quinn-udp`. Runs
/// forever when `limit` is `None`, else until `limit` responses have been sent;
/// returns the number sent.
fn serve_batched(sock: UdpSocket, limit: Option<u64>) -> io::Result<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async move {
        use tokio::io::Interest;
        let state = quinn_udp::UdpSocketState::new((&sock).into())?;
        let sock = tokio::net::UdpSocket::from_std(sock)?;
        let mut storage = vec![0u8; RECV_BATCH * BATCH_SLOT];
        let mut bufs: Vec<IoSliceMut<'_>> = storage
            .chunks_mut(BATCH_SLOT)
            .map(IoSliceMut::new)
            .collect();
        let mut meta = [quinn_udp::RecvMeta::default(); RECV_BATCH];
        let mut gso = GsoBatch {
            bytes: Vec::with_capacity(MAX_SEGMENTS * SEND_BUF),
            peer: None,
            segment: 0,
            count: 0,
            max: state.max_gso_segments().clamp(1, MAX_SEGMENTS),
        };
        let mut out = [0u8; SEND_BUF];
        let mut sent: u64 = 0;
        // Sends the batch (one sendmsg, GSO when it holds more than one answer).
        async fn flush(
            sock: &tokio::net::UdpSocket,
            state: &quinn_udp::UdpSocketState,
            gso: &mut GsoBatch,
            sent: &mut u64,
        ) {
            let Some(peer) = gso.peer.take() else { return };
            let transmit = quinn_udp::Transmit {
                destination: peer,
                ecn: None,
                contents: &gso.bytes,
                segment_size: (gso.count > 1).then_some(gso.segment),
                src_ip: None,
            };
            loop {
                match sock.try_io(Interest::WRITABLE, || {
                    state.try_send((&*sock).into(), &transmit)
                }) {
                    Ok(()) => {
                        *sent = sent.wrapping_add(gso.count as u64);
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if sock.writable().await.is_err() {
                            break;
                        }
                    }
                    // Dropped (e.g. an ICMP error reported late): the client times out.
                    Err(_) => break,
                }
            }
            gso.bytes.clear();
            gso.count = 0;
        }
        loop {
            if limit.is_some_and(|l| sent >= l) {
                return Ok(sent);
            }
            sock.readable().await?;
            let n = match sock.try_io(Interest::READABLE, || {
                state.recv((&sock).into(), &mut bufs, &mut meta)
            }) {
                Ok(n) => n,
                Err(_) => continue,
            };
            for (buf, m) in bufs.iter().zip(&meta).take(n) {
                let Some(data) = buf.get(..m.len) else {
                    continue;
                };
                // With GRO one buffer holds datagrams of `stride` bytes each.
                for req in data.chunks(m.stride.max(1)) {
                    let Some(len) = respond(req, &mut out) else {
                        continue;
                    };
                    if !gso.fits(m.addr, len) {
                        flush(&sock, &state, &mut gso, &mut sent).await;
                        gso.peer = Some(m.addr);
                        gso.segment = len;
                    }
                    gso.bytes.extend_from_slice(&out[..len]);
                    gso.count += 1;
                }
            }
            flush(&sock, &state, &mut gso, &mut sent).await;
        }
    })
}

/// Command-line options.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    /// Where to listen.
    bind: SocketAddr,
    /// Sockets (one thread each) sharing the address with `SO_REUSEPORT`.
    threads: usize,
    /// Batched system calls through `quinn-udp`.
    batch: bool,
}

/// Parses the command line: `[--bind ADDR:PORT] [--threads N] [--batch]` or `--help`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut bind = DEFAULT_BIND.to_owned();
    let mut threads = 1;
    let mut batch = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bind" | "-b" => {
                bind = args
                    .next()
                    .ok_or_else(|| "--bind needs ADDR:PORT".to_owned())?;
            }
            "--threads" | "-t" => {
                threads = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=1024).contains(n))
                    .ok_or_else(|| "--threads needs a number from 1 to 1024".to_owned())?;
            }
            "--batch" => batch = true,
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let bind = bind
        .parse()
        .map_err(|e| format!("invalid --bind {bind:?}: {e}"))?;
    Ok(Some(Options {
        bind,
        threads,
        batch,
    }))
}

/// Binds `count` UDP sockets to `addr`, with `SO_REUSEPORT` when more than one
/// (port 0: the later ones take the port the first one got).
fn bind_shards(addr: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut addr = addr;
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if count > 1 {
            socket.set_reuse_port(true)?;
        }
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        socket.bind(&addr.into())?;
        let socket: UdpSocket = socket.into();
        addr = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Entry point.
fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!(
                "usage: udp-ceiling [--bind ADDR:PORT] [--threads N] [--batch]   (default {DEFAULT_BIND}, 1 thread)"
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("udp-ceiling: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = options.bind;
    let sockets = match bind_shards(addr, options.threads) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("udp-ceiling: cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = sockets
        .first()
        .and_then(|s| s.local_addr().ok())
        .unwrap_or(addr);
    let mut stdout = io::stdout();
    // Readiness line for scripts; a closed stdout must not stop the server.
    let _ = writeln!(stdout, "READY {local}").and_then(|()| stdout.flush());
    let batch = options.batch;
    let threads: Vec<_> = sockets
        .into_iter()
        .map(|sock| {
            std::thread::spawn(move || {
                if batch {
                    if let Err(e) = serve_batched(sock, None) {
                        eprintln!("udp-ceiling: {e}");
                    }
                } else {
                    serve(&sock, None);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// RFC 7252 Appendix A, Figure 16 style: CON GET, MID 0x7d34, token 0x20.
    const GET_WITH_TOKEN: &[u8] = &[0x41, 0x01, 0x7d, 0x34, 0x20, 0xb4, b't', b'e', b'm', b'p'];

    fn answer(req: &[u8]) -> Option<Vec<u8>> {
        let mut out = [0u8; SEND_BUF];
        respond(req, &mut out).map(|n| out[..n].to_vec())
    }

    #[test]
    fn con_get_gets_piggybacked_content() {
        let resp = answer(GET_WITH_TOKEN).expect("answered");
        let mut expected = vec![0x61, 0x45, 0x7d, 0x34, 0x20, 0xC0, 0xFF];
        expected.extend_from_slice(b"ceiling");
        assert_eq!(resp, expected);
    }

    #[test]
    fn eight_byte_token_is_echoed() {
        let req = [0x48, 0x02, 0xAB, 0xCD, 1, 2, 3, 4, 5, 6, 7, 8];
        let resp = answer(&req).expect("answered");
        assert_eq!(&resp[..4], &[0x68, 0x45, 0xAB, 0xCD]);
        assert_eq!(&resp[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(resp.len(), SEND_BUF);
    }

    #[test]
    fn empty_token_request() {
        let resp = answer(&[0x40, 0x01, 0x00, 0x01]).expect("answered");
        assert_eq!(&resp[..5], &[0x60, 0x45, 0x00, 0x01, 0xC0]);
    }

    #[test]
    fn non_get_gets_non_content() {
        // RFC 7252 §5.2.3: NON request, NON response (with the request's Message ID).
        let resp = answer(&[0x51, 0x01, 0x7d, 0x34, 0x20]).expect("answered");
        assert_eq!(&resp[..7], &[0x51, 0x45, 0x7d, 0x34, 0x20, 0xC0, 0xFF]);
    }

    #[test]
    fn ignores_acks_resets_and_non_requests() {
        // ACK, RST
        assert_eq!(answer(&[0x60, 0x45, 0, 1]), None);
        assert_eq!(answer(&[0x70, 0x00, 0, 1]), None);
        // CON empty message (ping) and CON carrying a response code
        assert_eq!(answer(&[0x40, 0x00, 0, 1]), None);
        assert_eq!(answer(&[0x40, 0x45, 0, 1]), None);
        assert_eq!(answer(&[0x50, 0x00, 0, 1]), None);
    }

    #[test]
    fn ignores_malformed_headers() {
        assert_eq!(answer(&[]), None);
        assert_eq!(answer(&[0x40, 0x01, 0x00]), None);
        // version 2
        assert_eq!(answer(&[0x80, 0x01, 0, 1]), None);
        // reserved token lengths 9..=15 (RFC 7252 §3)
        for tkl in 9..=15u8 {
            let mut req = vec![0x40 | tkl, 0x01, 0, 1];
            req.extend_from_slice(&[0u8; 15]);
            assert_eq!(answer(&req), None, "tkl {tkl}");
        }
        // token announced but truncated
        assert_eq!(answer(&[0x44, 0x01, 0, 1, 0xAA, 0xBB]), None);
    }

    #[test]
    fn args() {
        let parse = |v: &[&str]| parse_args(v.iter().map(|s| (*s).to_owned()));
        let opts = |bind: &str, threads, batch| {
            Ok(Some(Options {
                bind: bind.parse().unwrap(),
                threads,
                batch,
            }))
        };
        assert_eq!(parse(&[]), opts(DEFAULT_BIND, 1, false));
        assert_eq!(
            parse(&["--bind", "127.0.0.1:7"]),
            opts("127.0.0.1:7", 1, false)
        );
        assert_eq!(
            parse(&["--threads", "2", "--batch"]),
            opts(DEFAULT_BIND, 2, true)
        );
        assert!(parse(&["--threads", "0"]).is_err());
        assert!(parse(&["--threads"]).is_err());
        assert_eq!(parse(&["--help"]), Ok(None));
        assert!(parse(&["--bind"]).is_err());
        assert!(parse(&["--bind", "nope"]).is_err());
        assert!(parse(&["extra"]).is_err());
    }

    #[test]
    fn loopback_round_trip() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let handle = std::thread::spawn(move || serve(&server, Some(1)));

        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // An ACK is ignored, the CON request answered.
        client.send_to(&[0x60, 0x45, 0, 9], addr).unwrap();
        client.send_to(GET_WITH_TOKEN, addr).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(from, addr);
        assert_eq!(&buf[..5], &[0x61, 0x45, 0x7d, 0x34, 0x20]);
        assert_eq!(&buf[7..n], b"ceiling");
        assert_eq!(handle.join().unwrap(), 1);
    }

    #[test]
    fn batched_round_trip_on_shared_port() {
        let shards = bind_shards("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = shards[0].local_addr().unwrap();
        assert_eq!(shards[1].local_addr().unwrap(), addr);
        let handles: Vec<_> = shards
            .into_iter()
            .map(|s| std::thread::spawn(move || serve_batched(s, Some(1))))
            .collect();
        // Each shard answers one request; which shard a client reaches is the kernel's
        // choice, so clients are added until both shards have answered.
        let mut answered = 0;
        let mut clients = Vec::new();
        for _ in 0..200 {
            if handles.iter().all(|h| h.is_finished()) {
                break;
            }
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            client.send_to(GET_WITH_TOKEN, addr).unwrap();
            let mut buf = [0u8; 64];
            if let Ok((n, _)) = client.recv_from(&mut buf) {
                assert_eq!(&buf[..5], &[0x61, 0x45, 0x7d, 0x34, 0x20]);
                assert_eq!(&buf[7..n], b"ceiling");
                answered += 1;
            }
            clients.push(client);
        }
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap(), 1);
        }
        assert!(answered >= 2);
    }
}
