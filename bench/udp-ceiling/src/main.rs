//! `udp-ceiling`: the machine's throughput ceiling for CoAP-over-UDP benchmarks.
//!
//! A single-threaded `recv_from`/`send_to` loop that answers every
//! Confirmable CoAP request with a piggybacked `2.05 Content` ACK
//! (RFC 7252 §5.2.1) carrying the request's Message ID and Token, a
//! `Content-Format: text/plain;charset=utf-8` (0) option and the payload
//! `ceiling`. It parses nothing beyond the 4-byte header and the token
//! (RFC 7252 §3), keeps no state and does no deduplication, so it
//! measures what the kernel's loopback UDP path allows and nothing else.
//! `bench/peers.sh` compares real servers against it.
//!
//! Usage: `udp-ceiling [--bind ADDR:PORT]` (default `127.0.0.1:5690`).
//! It prints `READY <addr>` once bound and runs until killed.

use std::io::{self, Write};
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

/// Builds the response to `req` into `out` and returns its length, or
/// `None` when `req` must be ignored.
///
/// A datagram is answered only if it has a valid CoAP header: version 1,
/// type CON, token length 0..=8 with the whole token present
/// (RFC 7252 §3: lengths 9-15 "MUST be processed as a message format
/// error"), and a request code (class 0, detail 1..=31, RFC 7252 §12.1).
/// Empty CON messages (pings, code 0.00) and everything else are ignored.
fn respond(req: &[u8], out: &mut [u8; SEND_BUF]) -> Option<usize> {
    let (&first, rest) = req.split_first()?;
    let (&code, rest) = rest.split_first()?;
    let mid = rest.get(..2)?;
    let version = first >> 6;
    let mtype = (first >> 4) & 0b11;
    let tkl = usize::from(first & 0x0F);
    if version != VERSION || mtype != TYPE_CON || tkl > 8 {
        return None;
    }
    if code >> 5 != 0 || code & 0x1F == 0 {
        return None;
    }
    let token = rest.get(2..2 + tkl)?;

    let len = 4 + tkl + 2 + PAYLOAD.len();
    let (header, tail) = out.split_at_mut(4);
    // Ver 1, type ACK, and the request's TKL nibble (checked <= 8 above).
    header[0] = (VERSION << 6) | (TYPE_ACK << 4) | (first & 0x0F);
    header[1] = CODE_CONTENT;
    header[2..4].copy_from_slice(mid);
    let (tok, tail) = tail.split_at_mut(tkl);
    tok.copy_from_slice(token);
    tail[0] = OPT_CONTENT_FORMAT_TEXT;
    tail[1] = PAYLOAD_MARKER;
    tail[2..2 + PAYLOAD.len()].copy_from_slice(PAYLOAD);
    Some(len)
}

/// Serves requests on `sock`: forever when `limit` is `None`, otherwise
/// until `limit` responses have been sent. Returns the number sent.
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

/// Parses the command line: `[--bind ADDR:PORT]` or `--help`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<SocketAddr>, String> {
    let mut bind = DEFAULT_BIND.to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bind" | "-b" => {
                bind = args
                    .next()
                    .ok_or_else(|| "--bind needs ADDR:PORT".to_owned())?;
            }
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    bind.parse()
        .map(Some)
        .map_err(|e| format!("invalid --bind {bind:?}: {e}"))
}

/// Entry point.
fn main() -> ExitCode {
    let addr = match parse_args(std::env::args().skip(1)) {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            println!("usage: udp-ceiling [--bind ADDR:PORT]   (default {DEFAULT_BIND})");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("udp-ceiling: {e}");
            return ExitCode::from(2);
        }
    };
    let sock = match UdpSocket::bind(addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("udp-ceiling: cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = sock.local_addr().unwrap_or(addr);
    let mut stdout = io::stdout();
    // Readiness line for scripts; a closed stdout must not stop the server.
    let _ = writeln!(stdout, "READY {local}").and_then(|()| stdout.flush());
    serve(&sock, None);
    ExitCode::SUCCESS
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
    fn ignores_non_con_and_non_requests() {
        // NON, ACK, RST
        assert_eq!(answer(&[0x50, 0x01, 0, 1]), None);
        assert_eq!(answer(&[0x60, 0x45, 0, 1]), None);
        assert_eq!(answer(&[0x70, 0x00, 0, 1]), None);
        // CON empty message (ping) and CON carrying a response code
        assert_eq!(answer(&[0x40, 0x00, 0, 1]), None);
        assert_eq!(answer(&[0x40, 0x45, 0, 1]), None);
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
        assert_eq!(parse(&[]), Ok(Some(DEFAULT_BIND.parse().unwrap())));
        assert_eq!(
            parse(&["--bind", "127.0.0.1:7"]),
            Ok(Some("127.0.0.1:7".parse().unwrap()))
        );
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
        // A NON request is ignored, the CON one answered.
        client.send_to(&[0x50, 0x01, 0, 9], addr).unwrap();
        client.send_to(GET_WITH_TOKEN, addr).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(from, addr);
        assert_eq!(&buf[..5], &[0x61, 0x45, 0x7d, 0x34, 0x20]);
        assert_eq!(&buf[7..n], b"ceiling");
        assert_eq!(handle.join().unwrap(), 1);
    }
}
