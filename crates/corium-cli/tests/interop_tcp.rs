//! CoAP over TCP (RFC 8323, `coap+tcp://`) interop, both directions:
//!
//! * `coap-client-notls` and `aiocoap-client` → `corium serve` (the plugtest
//!   resources, which `corium serve` offers over UDP and TCP on one port);
//! * `corium` CLI → `coap-server-notls` (libcoap binds TCP on its `-p` port
//!   too), `interop/aiocoap_server.py --transports udp6:tcpserver` and
//!   `aiocoap-fileserver` (whose default transports include `tcpserver`);
//! * bad input on a raw TCP socket to `corium serve`: a first message that is
//!   not a CSM, a length shim announcing ~4 GB, an unknown critical CSM option
//!   (all answered with Abort, RFC 8323 §5.6, and a close), Ping/Pong (§5.4),
//!   Release (§5.5), and messages split across or packed into TCP segments.
//!
//! Every test starts its own server on its own loopback port. The raw socket
//! reads have a hang guard (a read timeout that fails the test), never a timing
//! assertion. A missing peer fails the test with the install hint
//! (`scripts/install-peers.sh`); see `interop/README.md` ("TCP") for the peer
//! quirks met here.

mod common;

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{
    aiocoap_client_run, aiocoap_large_body, coap_client, coap_client_with_limit, coap_ping, corium,
    corium_bin, parallel, run, AiocoapFileServer, AiocoapServer, CoriumTcpServer, LibcoapServer,
    Outcome,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `coap+tcp://ADDR` + `path_and_query`.
fn tcp_uri(addr: SocketAddr, path_and_query: &str) -> String {
    format!("coap+tcp://{addr}{path_and_query}")
}

/// A fresh temporary directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corium-tcp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// `n` deterministic pseudo-random printable bytes (xorshift32 from `seed`).
fn printable_bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            b' ' + (state % 95) as u8
        })
        .collect()
}

/// `n` deterministic pseudo-random bytes (xorshift32 from `seed`).
fn binary_bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

/// `corium get -o FILE URI`: the outcome and the bytes written.
fn corium_get_bytes(uri: &str, dir: &std::path::Path, name: &str) -> (Outcome, Vec<u8>) {
    let file = dir.join(name);
    let _ = std::fs::remove_file(&file);
    let out = corium(&["get", "-o", &file.to_string_lossy(), uri]);
    let bytes = std::fs::read(&file).unwrap_or_default();
    (out, bytes)
}

/// The 2.05 responses carrying an Observe option in a libcoap `-v 6` trace. (Over
/// TCP the option's value MAY be empty and MUST be ignored, RFC 8323 §7.1: only
/// its presence counts.)
fn libcoap_observe_responses(trace: &[String]) -> Vec<&String> {
    trace
        .iter()
        .filter(|l| l.contains("c:2.05") && l.contains("Observe:"))
        .collect()
}

/// The responses `corium observe` reported on stderr (`TIME 2.05 Content,
/// Observe: N` lines; the value itself is meaningless over TCP, RFC 8323 §7.1).
fn corium_observe_reports(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| !l.starts_with(['→', '←']) && l.contains(" 2.05 Content, Observe: "))
        .count()
}

/// Runs `corium observe ARGS... --timeout 10` with a hard limit of 30 s.
fn corium_observe(args: &[&str]) -> Outcome {
    let mut cmd = Command::new(corium_bin());
    cmd.arg("observe")
        .args(args)
        .arg("--timeout")
        .arg("10")
        .env_remove("RUST_LOG");
    run(&mut cmd, Duration::from_secs(30))
}

/// Runs several `aiocoap-client` invocations in parallel (python start-up
/// dominates their run time).
fn aiocoap_parallel(runs: &[&[&str]]) -> Vec<Outcome> {
    parallel(
        runs.iter()
            .map(|args| {
                Box::new(move || aiocoap_client_run(args))
                    as Box<dyn FnOnce() -> Outcome + Send + '_>
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------
// coap-client-notls → corium serve, over coap+tcp
// ---------------------------------------------------------------------------

/// GET /test over TCP: libcoap sends its CSM, the request, and prints the 2.05.
/// (Stream messages have no type, RFC 8323 §3.2; libcoap's trace shows them as
/// `t:CON i:0000`.)
#[test]
fn libcoap_client_tcp_get_test() {
    let server = CoriumTcpServer::start();
    let out = coap_client(&["-v", "6", &server.tcp_uri("/test")]);
    out.assert_libcoap_payload_contains("Code: 1 (GET)");
    let req = out.assert_libcoap_trace(&["c:GET", "Uri-Path:test"]);
    let resp = out.assert_libcoap_trace(&["c:2.05", "Content-Format:text/plain"]);
    assert!(req < resp, "{}", out.describe());
}

/// GET /large (1280 bytes) over TCP comes in one message: both CSMs announce more
/// than 1152 bytes (RFC 8323 §5.3.1), so no block-wise transfer is needed; the body
/// is byte for byte what the same GET over UDP gives in blocks (libcoap and corium's
/// own client).
#[test]
fn libcoap_client_tcp_get_large_block2_matches_udp() {
    let server = CoriumTcpServer::start();
    let dir = temp_dir("libcoap-large");
    let traced = coap_client(&["-v", "6", &server.tcp_uri("/large")]);
    traced.assert_libcoap_trace(&["c:2.05", "Content-Format:text/plain"]);
    assert!(
        !traced.libcoap_trace().iter().any(|l| l.contains("Block2:")),
        "one message expected\n{}",
        traced.describe()
    );
    // (With -v, libcoap interleaves its trace with the payload: fetch quietly.)
    let tcp = coap_client(&[&server.tcp_uri("/large")]);
    let udp = coap_client(&[&server.uri("/large")]);
    let (out, udp_bytes) = corium_get_bytes(&server.uri("/large"), &dir, "large-udp.txt");
    let _ = std::fs::remove_dir_all(&dir);
    out.assert_success();
    assert!(udp_bytes.len() > 1024, "{}", out.describe());
    let udp_text = String::from_utf8_lossy(&udp_bytes);
    assert_eq!(
        tcp.libcoap_payload(),
        udp_text.trim_end_matches(['\n', '\r']),
        "libcoap over TCP vs corium over UDP\n{}",
        tcp.describe()
    );
    assert_eq!(
        tcp.libcoap_payload(),
        udp.libcoap_payload(),
        "libcoap over TCP vs libcoap over UDP\n{}\n{}",
        tcp.describe(),
        udp.describe()
    );
}

/// `-m put -f FILE` of 200 000 bytes to /large-update over TCP goes in BERT
/// blocks (RFC 8323 §6: both CSMs announce Block-Wise-Transfer and a
/// Max-Message-Size above 1152); `corium get -o` reads the same bytes back over
/// TCP and over UDP (one resource, two transports).
#[test]
fn libcoap_client_tcp_block1_put_then_corium_get() {
    let server = CoriumTcpServer::start();
    let dir = temp_dir("libcoap-block1");
    let body = printable_bytes(200_000, 0x00c0_ffee);
    let file = dir.join("body.txt");
    std::fs::write(&file, &body).expect("write the body");
    let put = coap_client(&[
        "-m",
        "put",
        "-t",
        "0",
        "-f",
        &file.to_string_lossy(),
        "-v",
        "6",
        &server.tcp_uri("/large-update"),
    ]);
    put.assert_libcoap_trace(&["c:PUT", "Block1:0/M/BERT", "Size1:200000"]);
    put.assert_libcoap_trace(&["c:2.04", "/_/BERT"]);
    let (tcp_out, tcp_bytes) =
        corium_get_bytes(&server.tcp_uri("/large-update"), &dir, "back-tcp.txt");
    let (udp_out, udp_bytes) = corium_get_bytes(&server.uri("/large-update"), &dir, "back-udp.txt");
    let _ = std::fs::remove_dir_all(&dir);
    tcp_out.assert_success();
    udp_out.assert_success();
    assert!(
        tcp_bytes == body,
        "read back {} bytes over TCP, differ\n{}\n{}",
        tcp_bytes.len(),
        put.describe(),
        tcp_out.describe()
    );
    assert!(
        udp_bytes == body,
        "read back {} bytes over UDP, differ\n{}",
        udp_bytes.len(),
        udp_out.describe()
    );
}

/// `-s 7` observing /obs over TCP (RFC 8323 §7): the registration's answer and
/// at least one notification (the resource changes every 5 s).
#[test]
fn libcoap_client_tcp_observe_obs() {
    let server = CoriumTcpServer::start();
    let out = coap_client_with_limit(12, &["-s", "7", "-v", "6", &server.tcp_uri("/obs")]);
    out.assert_libcoap_trace(&["c:GET", "Observe:0", "Uri-Path:obs"]);
    let trace = out.libcoap_trace();
    let responses = libcoap_observe_responses(&trace);
    assert!(
        responses.len() >= 2,
        "expected the first response and >= 1 notification, got {responses:?}\n{}",
        out.describe()
    );
    out.assert_libcoap_payload_contains(" UTC");
}

/// A three-segment Uri-Path, two Uri-Query options and an unknown path over TCP.
#[test]
fn libcoap_client_tcp_long_path_query_and_not_found() {
    let server = CoriumTcpServer::start();
    let (seg, query, missing) = (
        server.tcp_uri("/seg1/seg2/seg3"),
        server.tcp_uri("/query?a=1&b=2"),
        server.tcp_uri("/no/such/thing"),
    );
    let jobs: Vec<Box<dyn FnOnce() -> Outcome + Send + '_>> = vec![
        Box::new(|| coap_client(&["-v", "6", &seg])),
        Box::new(|| coap_client(&["-v", "6", &query])),
        Box::new(|| coap_client(&[&missing])),
    ];
    let outs = parallel(jobs);
    outs[0]
        .assert_libcoap_payload_is("Long path resource")
        .assert_libcoap_trace(&["Uri-Path:seg1, Uri-Path:seg2, Uri-Path:seg3"]);
    outs[1]
        .assert_libcoap_payload_is("a=1&b=2")
        .assert_libcoap_trace(&["Uri-Query:a=1, Uri-Query:b=2"]);
    outs[2].assert_stderr_contains("4.04");
}

// ---------------------------------------------------------------------------
// aiocoap-client → corium serve, over coap+tcp
// ---------------------------------------------------------------------------

/// GET /test and GET /large (block-wise) over TCP; /large is byte for byte what
/// `corium get` gives over UDP.
#[test]
fn aiocoap_client_tcp_get_test_and_large() {
    let server = CoriumTcpServer::start();
    let dir = temp_dir("aiocoap-large");
    let test_uri = server.tcp_uri("/test");
    let large_uri = server.tcp_uri("/large");
    let outs = aiocoap_parallel(&[&["-vv", &test_uri], &[&large_uri]]);
    let (udp_out, udp_bytes) = corium_get_bytes(&server.uri("/large"), &dir, "large-udp.txt");
    let _ = std::fs::remove_dir_all(&dir);
    outs[0]
        .assert_success()
        .assert_stdout_contains("Code: 1 (GET)")
        .assert_stderr_contains("2.05 Content from coap+tcp://");
    outs[1].assert_success();
    udp_out.assert_success();
    assert!(udp_bytes.len() > 1024, "{}", udp_out.describe());
    assert!(
        outs[1].stdout_bytes == udp_bytes,
        "aiocoap over TCP got {} bytes, corium over UDP {}\n{}",
        outs[1].stdout_bytes.len(),
        udp_bytes.len(),
        outs[1].describe()
    );
}

/// PUT over TCP: a short text to /test (2.04), and 100 000 bytes to
/// /large-update (aiocoap sends BERT blocks, RFC 8323 §6, which corium takes since it
/// announces BERT) read back with a GET.
#[test]
fn aiocoap_client_tcp_put() {
    let server = CoriumTcpServer::start();
    let dir = temp_dir("aiocoap-put");
    let body = printable_bytes(100_000, 0x5eed);
    let file = dir.join("body.txt");
    std::fs::write(&file, &body).expect("write the body");
    let payload = format!("@{}", file.to_string_lossy());
    let test_uri = server.tcp_uri("/test");
    let update_uri = server.tcp_uri("/large-update");
    let outs = aiocoap_parallel(&[
        &[
            "-vv",
            "-m",
            "PUT",
            "--payload",
            "tcp value",
            "--content-format",
            "0",
            &test_uri,
        ],
        &[
            "-vv",
            "-m",
            "PUT",
            "--payload",
            &payload,
            "--content-format",
            "0",
            &update_uri,
        ],
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    outs[0]
        .assert_success()
        .assert_stderr_contains("2.04 Changed from coap+tcp://");
    outs[1]
        .assert_success()
        .assert_stderr_contains("2.04 Changed from coap+tcp://");
    let get = aiocoap_client_run(&[&update_uri]);
    get.assert_success();
    assert!(
        get.stdout_bytes == body,
        "read back {} bytes, differ\n{}",
        get.stdout_bytes.len(),
        get.describe()
    );
}

// ---------------------------------------------------------------------------
// corium → coap-server-notls, over coap+tcp
// ---------------------------------------------------------------------------

/// libcoap's example server listens on TCP on its `-p` port as well: GET `/`
/// and `/time` over TCP; `-v` shows both CSMs (libcoap's announces
/// Block-Wise-Transfer, option 4).
#[test]
fn corium_tcp_get_libcoap_root_and_time() {
    let server = LibcoapServer::start();
    let root = corium(&["get", "-v", &tcp_uri(server.addr, "/")]);
    root.assert_success()
        .assert_stdout_contains("This is a test server made with libcoap")
        .assert_stderr_contains("2.05 Content");
    let sent_csm = root
        .stderr
        .lines()
        .any(|l| l.starts_with('→') && l.contains(" CSM"));
    let got_csm = root
        .stderr
        .lines()
        .any(|l| l.starts_with('←') && l.contains(" CSM") && l.contains("#4"));
    assert!(
        sent_csm && got_csm,
        "CSMs not dissected\n{}",
        root.describe()
    );
    let time = corium(&["get", &tcp_uri(server.addr, "/time")]);
    time.assert_success().assert_stderr_contains("2.05 Content");
    assert!(
        !time.stdout.trim().is_empty(),
        "empty /time\n{}",
        time.describe()
    );
}

/// Large bodies both ways with libcoap over TCP: /example_data (1500 bytes) is
/// what UDP gives block-wise, and a 20 000-byte PUT reads back equal (in one
/// message or in blocks, as the CSMs allow).
#[test]
fn corium_tcp_blockwise_with_libcoap_example_data() {
    let server = LibcoapServer::start();
    let dir = temp_dir("libcoap-server-blocks");
    let uri = tcp_uri(server.addr, "/example_data");
    let (tcp_out, tcp_bytes) = corium_get_bytes(&uri, &dir, "tcp.bin");
    let (udp_out, udp_bytes) = corium_get_bytes(&server.uri("/example_data"), &dir, "udp.bin");
    tcp_out.assert_success();
    udp_out.assert_success();
    assert_eq!(tcp_bytes.len(), 1500, "{}", tcp_out.describe());
    assert!(tcp_bytes == udp_bytes, "TCP and UDP bodies differ");

    let body = printable_bytes(20_000, 0xfeed);
    let file = dir.join("upload.txt");
    std::fs::write(&file, &body).expect("write the body");
    corium(&[
        "put",
        "-v",
        "-t",
        "text/plain",
        "-f",
        &file.to_string_lossy(),
        &uri,
    ])
    .assert_success()
    .assert_stderr_contains("2.04 Changed");
    let (back_out, back) = corium_get_bytes(&uri, &dir, "back.bin");
    let _ = std::fs::remove_dir_all(&dir);
    back_out.assert_success();
    assert!(
        back == body,
        "read back {} bytes, differ\n{}",
        back.len(),
        back_out.describe()
    );
}

/// `corium observe coap+tcp://.../time --count 2` against libcoap (a
/// notification every second).
#[test]
fn corium_tcp_observe_libcoap_time() {
    let server = LibcoapServer::start();
    let out = corium_observe(&[&tcp_uri(server.addr, "/time"), "--count", "2"]);
    out.assert_success();
    assert_eq!(corium_observe_reports(&out.stderr), 2, "{}", out.describe());
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.describe());
}

// ---------------------------------------------------------------------------
// corium → aiocoap servers, over coap+tcp
// ---------------------------------------------------------------------------

/// `aiocoap_server.py --transports udp6:tcpserver`: GET /test, PUT then GET
/// back, the 2000-byte /large block-wise, a 20 000-byte block-wise PUT, a
/// long path and a query, all over TCP.
#[test]
fn corium_tcp_get_put_blockwise_aiocoap() {
    let server = AiocoapServer::start_tcp();
    let dir = temp_dir("aiocoap-server");
    let test = tcp_uri(server.addr, "/test");
    corium(&["get", &test])
        .assert_success()
        .assert_stdout_is("Type: test resource");
    corium(&["put", "-t", "text/plain", "-e", "tcp value", &test])
        .assert_success()
        .assert_stderr_contains("2.04 Changed");
    corium(&["get", &test])
        .assert_success()
        .assert_stdout_is("tcp value");

    let (large_out, large) = corium_get_bytes(&tcp_uri(server.addr, "/large"), &dir, "large");
    large_out.assert_success();
    assert!(
        large == aiocoap_large_body(),
        "/large: {} bytes, differ\n{}",
        large.len(),
        large_out.describe()
    );

    let body = printable_bytes(20_000, 0xabcd);
    let file = dir.join("upload.txt");
    std::fs::write(&file, &body).expect("write the body");
    corium(&[
        "put",
        "-v",
        "-t",
        "text/plain",
        "-f",
        &file.to_string_lossy(),
        &test,
    ])
    .assert_success()
    .assert_stderr_contains("2.04 Changed");
    let (back_out, back) = corium_get_bytes(&test, &dir, "back.txt");
    let _ = std::fs::remove_dir_all(&dir);
    back_out.assert_success();
    assert!(
        back == body,
        "read back {} bytes, differ\n{}",
        back.len(),
        back_out.describe()
    );

    corium(&["get", &tcp_uri(server.addr, "/seg1/seg2/seg3")])
        .assert_success()
        .assert_stdout_is("seg1/seg2/seg3");
    corium(&["get", &tcp_uri(server.addr, "/query?a=1&b=2")])
        .assert_success()
        .assert_stdout_is("a=1&b=2");
}

/// `corium observe coap+tcp://.../obs --count 2` against aiocoap (a counter
/// notified every second).
#[test]
fn corium_tcp_observe_aiocoap_obs() {
    let server = AiocoapServer::start_tcp();
    let out = corium_observe(&[&tcp_uri(server.addr, "/obs"), "--count", "2"]);
    out.assert_success();
    assert_eq!(
        corium_observe_reports(&out.stderr),
        2,
        "{}\n{}",
        out.describe(),
        server.log()
    );
    // The payloads are the counter: two integers.
    let counts: Vec<u64> = out
        .stdout
        .lines()
        .map(|l| l.trim().parse().expect("a counter value"))
        .collect();
    assert_eq!(counts.len(), 2, "{}", out.describe());
}

/// `aiocoap-fileserver` listens on TCP too (its default transports include
/// `tcpserver`): a 300 kB GET (Block2) and a 200 kB PUT (Block1) over TCP are
/// byte for byte the files.
#[test]
fn corium_tcp_large_files_with_aiocoap_fileserver() {
    let root = temp_dir("fileserver");
    let served = binary_bytes(300_000, 0x1234_5678);
    std::fs::write(root.join("big.bin"), &served).expect("write the served file");
    let upload = binary_bytes(200_000, 0x8765_4321);
    let upload_path = root.join("upload-source.bin");
    std::fs::write(&upload_path, &upload).expect("write the upload");
    let server = AiocoapFileServer::start(&root);

    let (out, got) = corium_get_bytes(&tcp_uri(server.addr, "/big.bin"), &root, "fetched.bin");
    out.assert_success().assert_stderr_contains("2.05 Content");
    assert!(
        got == served,
        "downloaded {} bytes, differ\n{}",
        got.len(),
        out.describe()
    );

    let out = corium(&[
        "put",
        "-f",
        &upload_path.to_string_lossy(),
        &tcp_uri(server.addr, "/uploaded.bin"),
    ]);
    out.assert_success();
    let written = std::fs::read(root.join("uploaded.bin")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&root);
    assert!(
        written == upload,
        "the server wrote {} bytes, differ\n{}",
        written.len(),
        out.describe()
    );
}

// ---------------------------------------------------------------------------
// Raw TCP socket → corium serve
// ---------------------------------------------------------------------------

/// Hang guard for raw socket reads: a read that gets nothing for this long fails
/// the test (a correct server answers at once; this is not a timing assertion).
const RAW_LIMIT: Duration = Duration::from_secs(10);

/// Signaling codes (RFC 8323 §5): CSM 7.01, Ping 7.02, Pong 7.03, Release 7.04,
/// Abort 7.05.
const CSM: u8 = 0xe1;
const PONG: u8 = 0xe3;
const ABORT: u8 = 0xe5;
/// 2.05 Content.
const CONTENT: u8 = 0x45;

/// An empty CSM: Len 0, TKL 0, code 7.01 (RFC 8323 §5.3).
const EMPTY_CSM: [u8; 2] = [0x00, CSM];

/// One message received on a stream (RFC 8323 §3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Frame {
    code: u8,
    token: Vec<u8>,
    options: Vec<(u16, Vec<u8>)>,
    payload: Vec<u8>,
}

impl Frame {
    /// The value of the first option `number`.
    fn option(&self, number: u16) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, v)| v.as_slice())
    }
}

/// Decodes one option delta or length nibble with its extension (RFC 7252 §3.1).
fn extended(nibble: u8, rest: &mut &[u8]) -> Result<usize, String> {
    let take = |rest: &mut &[u8], n: usize| -> Result<Vec<u8>, String> {
        if rest.len() < n {
            return Err("truncated option header".into());
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head.to_vec())
    };
    match nibble {
        0..=12 => Ok(usize::from(nibble)),
        13 => Ok(usize::from(take(rest, 1)?[0]) + 13),
        14 => {
            let b = take(rest, 2)?;
            Ok(usize::from(u16::from_be_bytes([b[0], b[1]])) + 269)
        }
        _ => Err("option nibble 15".into()),
    }
}

/// The options and payload after the token.
#[allow(clippy::type_complexity)]
fn parse_options(mut body: &[u8]) -> Result<(Vec<(u16, Vec<u8>)>, Vec<u8>), String> {
    let mut options = Vec::new();
    let mut number = 0usize;
    while let Some((&first, rest)) = body.split_first() {
        if first == 0xff {
            if rest.is_empty() {
                return Err("payload marker with an empty payload".into());
            }
            return Ok((options, rest.to_vec()));
        }
        body = rest;
        number += extended(first >> 4, &mut body)?;
        let len = extended(first & 0x0f, &mut body)?;
        if body.len() < len {
            return Err(format!("option {number} longer than the message"));
        }
        let n = u16::try_from(number).map_err(|_| "option number above 65535".to_string())?;
        options.push((n, body[..len].to_vec()));
        body = &body[len..];
    }
    Ok((options, Vec::new()))
}

/// The first complete message in `buf` and its length, `None` if incomplete.
fn parse_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let (len_nibble, tkl) = (first >> 4, usize::from(first & 0x0f));
    let ext = match len_nibble {
        13 => 1,
        14 => 2,
        15 => 4,
        _ => 0,
    };
    if buf.len() < 1 + ext {
        return Ok(None);
    }
    let len = match len_nibble {
        13 => usize::from(buf[1]) + 13,
        14 => usize::from(u16::from_be_bytes([buf[1], buf[2]])) + 269,
        15 => u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize + 65805,
        n => usize::from(n),
    };
    if tkl > 8 {
        return Err(format!("TKL {tkl} (no extended token was offered)"));
    }
    let total = 1 + ext + 1 + tkl + len;
    if buf.len() < total {
        return Ok(None);
    }
    let code = buf[1 + ext];
    let token = buf[2 + ext..2 + ext + tkl].to_vec();
    let (options, payload) = parse_options(&buf[2 + ext + tkl..total])?;
    Ok(Some((
        Frame {
            code,
            token,
            options,
            payload,
        },
        total,
    )))
}

/// Encodes a message with the TCP length shim (RFC 8323 §3.2); options sorted.
fn encode(code: u8, token: &[u8], options: &[(u16, &[u8])], payload: &[u8]) -> Vec<u8> {
    fn nibble(v: usize, ext: &mut Vec<u8>) -> u8 {
        match v {
            0..=12 => v as u8,
            13..=268 => {
                ext.push((v - 13) as u8);
                13
            }
            _ => {
                ext.extend_from_slice(&((v - 269) as u16).to_be_bytes());
                14
            }
        }
    }
    assert!(token.len() <= 8);
    let mut body = Vec::new();
    let mut last = 0usize;
    for &(number, value) in options {
        let mut ext = Vec::new();
        let d = nibble(usize::from(number) - last, &mut ext);
        let mut ext_len = Vec::new();
        let l = nibble(value.len(), &mut ext_len);
        body.push(d << 4 | l);
        body.extend_from_slice(&ext);
        body.extend_from_slice(&ext_len);
        body.extend_from_slice(value);
        last = usize::from(number);
    }
    if !payload.is_empty() {
        body.push(0xff);
        body.extend_from_slice(payload);
    }
    let mut out = Vec::new();
    let tkl = token.len() as u8;
    match body.len() {
        n @ 0..=12 => out.push((n as u8) << 4 | tkl),
        n @ 13..=268 => out.extend_from_slice(&[0xd0 | tkl, (n - 13) as u8]),
        n @ 269..=65804 => {
            out.push(0xe0 | tkl);
            out.extend_from_slice(&((n - 269) as u16).to_be_bytes());
        }
        n => {
            out.push(0xf0 | tkl);
            out.extend_from_slice(&((n - 65805) as u32).to_be_bytes());
        }
    }
    out.push(code);
    out.extend_from_slice(token);
    out.extend_from_slice(&body);
    out
}

/// GET /test (code 0.01, Uri-Path option 11) with `token`.
fn get_test(token: &[u8]) -> Vec<u8> {
    encode(0x01, token, &[(11, b"test")], &[])
}

/// A raw client connection to `corium serve`.
struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
    closed: bool,
    seen: Vec<Frame>,
}

impl RawConn {
    fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("cannot connect to {addr} over TCP: {e}"));
        RawConn::from_stream(stream)
    }

    /// Wraps a connected stream (either side), with the [`RAW_LIMIT`] read timeout.
    fn from_stream(stream: TcpStream) -> RawConn {
        stream
            .set_read_timeout(Some(RAW_LIMIT))
            .expect("set_read_timeout");
        stream.set_nodelay(true).expect("set_nodelay");
        RawConn {
            stream,
            buf: Vec::new(),
            closed: false,
            seen: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap_or_else(|e| {
            panic!("sending {bytes:02x?}: {e}; received so far {:?}", self.seen)
        });
    }

    /// The next complete message, `Ok(None)` once the peer closed the connection,
    /// or an error after [`RAW_LIMIT`] without a message (the hang guard).
    fn try_next_frame(&mut self) -> Result<Option<Frame>, String> {
        loop {
            match parse_frame(&self.buf) {
                Ok(Some((frame, n))) => {
                    self.buf.drain(..n);
                    self.seen.push(frame.clone());
                    return Ok(Some(frame));
                }
                Ok(None) => {}
                Err(e) => panic!(
                    "the peer sent a malformed message ({e}): {:02x?}; before it {:?}",
                    self.buf, self.seen
                ),
            }
            if self.closed {
                assert!(
                    self.buf.is_empty(),
                    "the connection closed inside a message: {:02x?}; before it {:?}",
                    self.buf,
                    self.seen
                );
                return Ok(None);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => self.closed = true,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(format!(
                        "nothing from the peer for {RAW_LIMIT:?} (hang guard); received {:?}, \
                         pending bytes {:02x?}",
                        self.seen, self.buf
                    ));
                }
                Err(e) => panic!("reading from the peer: {e}; received {:?}", self.seen),
            }
        }
    }

    /// The next complete message, or `None` once the peer closed the connection.
    fn next_frame(&mut self) -> Option<Frame> {
        self.try_next_frame().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The next message; fails the test if the server closed instead.
    fn expect_frame(&mut self, what: &str) -> Frame {
        self.next_frame().unwrap_or_else(|| {
            panic!(
                "the server closed the connection instead of sending {what}; received {:?}",
                self.seen
            )
        })
    }

    /// The server's CSM, which is its first message (RFC 8323 §3.3).
    fn expect_csm(&mut self) -> Frame {
        let csm = self.expect_frame("its CSM");
        assert_eq!(
            csm.code, CSM,
            "the server's first message is not a CSM: {csm:?}"
        );
        assert!(csm.token.is_empty(), "a CSM with a token: {csm:?}");
        csm
    }

    /// An Abort (RFC 8323 §5.6) and then the end of the connection.
    fn expect_abort_and_close(&mut self) -> Frame {
        let abort = self.expect_frame("an Abort");
        assert_eq!(abort.code, ABORT, "expected Abort (7.05), got {abort:?}");
        if let Some(after) = self.next_frame() {
            panic!("expected the connection to close after the Abort, got {after:?}");
        }
        abort
    }
}

/// After bad input: the server process lives, answers a UDP ping (RFC 7252
/// §4.2), serves a fresh TCP connection, and the CLI works over both transports.
fn assert_still_serving(server: &mut CoriumTcpServer) {
    server.assert_running();
    assert!(
        coap_ping(server.udp, RAW_LIMIT),
        "no UDP ping answer after the bad TCP input\n{}",
        server.log()
    );
    let mut conn = RawConn::connect(server.tcp);
    conn.send(&EMPTY_CSM);
    conn.send(&get_test(&[0x5a, 0xa5]));
    conn.expect_csm();
    let resp = conn.expect_frame("the 2.05 to GET /test");
    assert_eq!((resp.code, &resp.token[..]), (CONTENT, &[0x5a, 0xa5][..]));
    assert!(
        String::from_utf8_lossy(&resp.payload).contains("Code: 1 (GET)"),
        "{resp:?}"
    );
    corium(&["get", &server.uri("/test")]).assert_success();
    corium(&["get", &server.tcp_uri("/test")]).assert_success();
}

/// A first message that is not a CSM (here a GET) is a connection error
/// (RFC 8323 §3.3): the server sends its CSM, then Abort (code byte 0xe5 after
/// the shim), does not answer the GET, and closes.
#[test]
fn raw_tcp_first_message_not_csm_is_aborted() {
    let mut server = CoriumTcpServer::start();
    let mut conn = RawConn::connect(server.tcp);
    conn.send(&get_test(&[0x01]));
    conn.expect_csm();
    let abort = conn.expect_abort_and_close();
    assert!(abort.token.is_empty(), "{abort:?}");
    assert_still_serving(&mut server);
}

/// After a valid CSM, a length shim announcing ~4 GB (Len 15, extended length
/// 0xffffffff + 65805, RFC 8323 §3.2) is refused from the shim alone: the server
/// answers with Abort and closes although the body never comes (it neither waits
/// for nor buffers it), and keeps serving.
#[test]
fn raw_tcp_huge_length_shim_is_aborted_without_buffering() {
    let mut server = CoriumTcpServer::start();
    let mut conn = RawConn::connect(server.tcp);
    conn.send(&[0x00, 0xe1, 0xf0, 0xff, 0xff, 0xff, 0xff, 0x01]);
    let csm = conn.expect_csm();
    let abort = conn.expect_abort_and_close();
    eprintln!(
        "CSM {csm:?}; Abort diagnostic {:?}",
        String::from_utf8_lossy(&abort.payload)
    );
    assert_still_serving(&mut server);
}

/// An unknown critical option in a CSM (9, odd = critical) cannot be processed:
/// Abort with Bad-CSM-Option 9 (RFC 8323 §5.3, §5.6.1).
#[test]
fn raw_tcp_unknown_critical_csm_option_is_aborted() {
    let mut server = CoriumTcpServer::start();
    let mut conn = RawConn::connect(server.tcp);
    conn.send(&[0x10, 0xe1, 0x90]);
    conn.expect_csm();
    let abort = conn.expect_abort_and_close();
    assert_eq!(abort.option(2), Some(&[9u8][..]), "{abort:?}");
    assert_still_serving(&mut server);
}

/// RFC 8323 Figures 11/12: Ping `01 e2 42` after the CSM gets Pong `01 e3 42`.
/// Then: an Empty message (0.00) is ignored (§5.4), a Ping with Custody gets a
/// Pong with Custody (§5.4.1), a request on the same connection is answered, and
/// Release (§5.5) makes the server close the connection.
#[test]
fn raw_tcp_ping_pong_custody_and_release() {
    let mut server = CoriumTcpServer::start();
    let mut conn = RawConn::connect(server.tcp);
    conn.send(&EMPTY_CSM);
    conn.send(&[0x01, 0xe2, 0x42]);
    let csm = conn.expect_csm();
    // Max-Message-Size (option 2) is announced, at least the base value 1152.
    let mms = csm
        .option(2)
        .map(|v| v.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)));
    assert!(mms.is_some_and(|m| m >= 1152), "{csm:?}");
    let pong = conn.expect_frame("the Pong");
    assert_eq!(
        encode(pong.code, &pong.token, &[], &pong.payload),
        [0x01, 0xe3, 0x42],
        "{pong:?}"
    );
    assert!(pong.options.is_empty(), "{pong:?}");

    // Empty message, then Ping 0x43 with Custody (option 2, empty).
    conn.send(&[0x00, 0x00]);
    conn.send(&[0x11, 0xe2, 0x43, 0x20]);
    let pong = conn.expect_frame("the second Pong");
    assert_eq!(
        (pong.code, &pong.token[..]),
        (PONG, &[0x43][..]),
        "{pong:?}"
    );
    assert_eq!(pong.option(2), Some(&[][..]), "no Custody: {pong:?}");

    conn.send(&get_test(&[0x77, 0x88, 0x99]));
    let resp = conn.expect_frame("the 2.05");
    assert_eq!(
        (resp.code, &resp.token[..]),
        (CONTENT, &[0x77, 0x88, 0x99][..]),
        "{resp:?}"
    );

    // Release: the server closes its end (it has nothing outstanding).
    conn.send(&[0x00, 0xe4]);
    if let Some(f) = conn.next_frame() {
        panic!("expected the server to close after Release, got {f:?}");
    }
    assert_still_serving(&mut server);
}

/// Framing across segment boundaries: a CSM and a GET written one byte at a time
/// are reassembled; two GETs in one write are both answered, each with its token.
#[test]
fn raw_tcp_messages_split_and_packed() {
    let mut server = CoriumTcpServer::start();
    let mut conn = RawConn::connect(server.tcp);
    let mut first = EMPTY_CSM.to_vec();
    first.extend_from_slice(&get_test(&[0x61]));
    for b in &first {
        conn.send(std::slice::from_ref(b));
    }
    conn.expect_csm();
    let resp = conn.expect_frame("the response to the split GET");
    assert_eq!((resp.code, &resp.token[..]), (CONTENT, &[0x61][..]));

    let mut packed = get_test(&[0x62]);
    packed.extend_from_slice(&get_test(&[0x63, 0x63]));
    conn.send(&packed);
    let mut tokens = vec![
        conn.expect_frame("a response").token,
        conn.expect_frame("a response").token,
    ];
    tokens.sort();
    assert_eq!(tokens, vec![vec![0x62], vec![0x63, 0x63]]);
    assert_still_serving(&mut server);
}

// ---------------------------------------------------------------------------
// corium observe → a scripted CoAP-over-TCP server
// ---------------------------------------------------------------------------

/// Plays the server side of one observation on `listener`: reads corium's CSM and
/// its GET with Observe 0, sends a CSM and three 2.05 notifications `n0`..`n2` whose
/// Observe option is empty (RFC 8323 §7.1), answers a deregistration (GET with
/// Observe 1, §7.4) and returns every message corium sent once corium closes (or
/// after [`RAW_LIMIT`] of silence).
fn scripted_observe_server(listener: &std::net::TcpListener) -> Result<Vec<Frame>, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("set_nonblocking: {e}"))?;
    let deadline = std::time::Instant::now() + RAW_LIMIT;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if std::time::Instant::now() > deadline {
                    return Err(format!("corium did not connect within {RAW_LIMIT:?}"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    stream
        .set_nonblocking(false)
        .map_err(|e| format!("set_nonblocking: {e}"))?;
    let mut conn = RawConn::from_stream(stream);
    let csm = conn
        .try_next_frame()?
        .ok_or("corium closed before its CSM")?;
    if csm.code != CSM {
        return Err(format!("corium's first message is not a CSM: {csm:?}"));
    }
    let req = conn
        .try_next_frame()?
        .ok_or("corium closed before its request")?;
    if req.code != 0x01 || !matches!(req.option(6), Some([] | [0])) {
        return Err(format!("expected GET with Observe 0, got {req:?}"));
    }
    conn.send(&EMPTY_CSM);
    for i in 0..3 {
        let payload = format!("n{i}");
        // Observe (6) empty, Content-Format (12) empty = text/plain.
        conn.send(&encode(
            CONTENT,
            &req.token,
            &[(6, &[]), (12, &[])],
            payload.as_bytes(),
        ));
    }
    loop {
        match conn.try_next_frame() {
            Ok(Some(f)) if f.code == 0x01 && f.option(6) == Some(&[1][..]) => {
                conn.send(&encode(CONTENT, &f.token, &[(12, &[])], b"n3"));
            }
            Ok(Some(_)) => {}
            // Closed, or silent for RAW_LIMIT (corium still waiting): hang up.
            Ok(None) | Err(_) => break,
        }
    }
    Ok(conn.seen)
}

/// RFC 8323 §7.1: over a reliable transport, "the value of the Observe Option in
/// 2.xx notifications MAY be empty on transmission and MUST be ignored on
/// reception" (TCP does not reorder). A scripted server sends three notifications
/// with an empty Observe option; `corium observe --count 3` must deliver all three,
/// then deregister with a GET carrying Observe 1 (§7.4).
#[test]
fn corium_tcp_observe_ignores_observe_values() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a TCP listener");
    let addr = listener.local_addr().expect("local_addr");
    let server = std::thread::spawn(move || scripted_observe_server(&listener));
    let out = corium_observe(&["-v", &tcp_uri(addr, "/obs"), "--count", "3"]);
    let seen = match server.join() {
        Ok(Ok(seen)) => seen,
        Ok(Err(e)) => panic!("scripted server: {e}\n{}", out.describe()),
        Err(_) => panic!("the scripted server panicked\n{}", out.describe()),
    };
    assert!(
        out.status.success() && out.stdout.lines().collect::<Vec<_>>() == ["n0", "n1", "n2"],
        "expected all three notifications (their empty Observe values must be ignored, \
         RFC 8323 §7.1)\n{}",
        out.describe()
    );
    assert!(
        seen.iter()
            .any(|f| f.code == 0x01 && f.option(6) == Some(&[1][..])),
        "no deregistration (GET with Observe 1, RFC 8323 §7.4); corium sent {seen:?}\n{}",
        out.describe()
    );
}
