//! End-to-end tests of the `corium` binary: `corium serve --bind
//! 127.0.0.1:0` runs the plugtest resources, and the client verbs run
//! against it as separate processes.

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
const CORIUM: &str = env!("CARGO_BIN_EXE_corium");

/// Longest a client command may run before the test fails.
const COMMAND_DEADLINE: Duration = Duration::from_secs(30);

/// A running `corium serve`; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `corium serve --bind 127.0.0.1:0` and reads the bound address
    /// from its first stdout line.
    fn start() -> Server {
        Server::start_with(&[])
    }

    /// `corium serve --bind 127.0.0.1:0` with more arguments.
    fn start_with(extra: &[&str]) -> Server {
        let mut child = Command::new(CORIUM)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn corium serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the first line of corium serve");
        let addr = line
            .trim()
            .strip_prefix("corium serving coap on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        Server { child, addr }
    }

    /// `coap://127.0.0.1:PORT` + `path`.
    fn uri(&self, path: &str) -> String {
        format!("coap://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished command produced.
#[derive(Debug)]
struct Out {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Out {
    fn code(&self) -> i32 {
        self.status.code().expect("exited normally")
    }
}

/// Runs `corium ARGS` to completion (killed after [`COMMAND_DEADLINE`]).
fn corium(args: &[&str]) -> Out {
    corium_with_stdin(args, None)
}

/// Runs `corium ARGS` with `input` on stdin (or none).
fn corium_with_stdin(args: &[&str], input: Option<&[u8]>) -> Out {
    use std::io::Write as _;
    let started = Instant::now();
    let mut child = Command::new(CORIUM)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn corium");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(input).expect("write stdin");
    }
    // Drain the pipes on threads so a chatty child cannot block.
    let mut out_pipe = child.stdout.take().expect("stdout");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > COMMAND_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("corium {args:?} did not finish within {COMMAND_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Out {
        status,
        stdout: out_thread.join().expect("stdout thread"),
        stderr: err_thread.join().expect("stderr thread"),
        elapsed: started.elapsed(),
    }
}

#[test]
fn get_test_resource() {
    let server = Server::start();
    let out = corium(&["get", &server.uri("/test")]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "Type: 0 (CON)\nCode: 1 (GET)\n");
    assert_eq!(out.stderr, "2.05 Content\n");
}

#[test]
fn post_put_delete_codes() {
    let server = Server::start();
    let out = corium(&["post", &server.uri("/test"), "-e", "hello"]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(
        out.stderr,
        "2.01 Created\nLocation: /location1/location2/location3\n"
    );
    let out = corium(&["put", &server.uri("/test"), "-e", "x", "-t", "text/plain"]);
    assert_eq!((out.code(), out.stderr.as_str()), (0, "2.04 Changed\n"));
    let out = corium(&["delete", &server.uri("/test")]);
    assert_eq!((out.code(), out.stderr.as_str()), (0, "2.02 Deleted\n"));
    let out = corium(&["post", &server.uri("/location-query")]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stderr, "2.01 Created\nLocation: /?first=1&second=2\n");
}

#[test]
fn error_responses_exit_1() {
    let server = Server::start();
    let out = corium(&["get", &server.uri("/no/such/resource")]);
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.starts_with("4.04 Not Found"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    let out = corium(&["post", &server.uri("/seg1/seg2/seg3")]);
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.starts_with("4.05 Method Not Allowed"), "{out:?}");
}

#[test]
fn long_path_and_query_echo() {
    let server = Server::start();
    let out = corium(&["get", &server.uri("/seg1/seg2/seg3")]);
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (0, "Long path resource\n")
    );
    let out = corium(&["get", &server.uri("/query?first=1&second=2")]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "first=1&second=2\n");
    let out = corium(&[
        "get",
        &server.uri("/query?a=1"),
        "-O",
        "Uri-Query,b=%20",
        "-O",
        "15,c",
    ]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "a=1&b=%20&c\n");
}

#[test]
fn multi_format_by_accept() {
    let server = Server::start();
    let out = corium(&["get", &server.uri("/multi-format"), "-A", "application/xml"]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "<msg type=\"CON\" code=\"1\"/>\n");
    let out = corium(&["get", &server.uri("/multi-format"), "-A", "text/plain"]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.starts_with("Status type: \"CON\""), "{out:?}");
    let out = corium(&["get", &server.uri("/multi-format"), "-A", "50"]);
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.starts_with("4.06 Not Acceptable"), "{out:?}");
}

#[test]
fn create1_if_none_match() {
    let server = Server::start();
    let uri = server.uri("/create1");
    let first = corium(&["put", &uri, "-O", "If-None-Match,", "-e", "created"]);
    assert_eq!(first.code(), 0, "{first:?}");
    assert_eq!(first.stderr, "2.01 Created\n");
    let second = corium(&["put", &uri, "-O", "If-None-Match,", "-e", "again"]);
    assert_eq!(second.code(), 1, "{second:?}");
    assert!(second.stderr.contains("4.12"), "{second:?}");
    assert_eq!(second.stderr.lines().count(), 1, "{second:?}");
    let get = corium(&["get", &uri]);
    assert_eq!((get.code(), get.stdout.as_str()), (0, "created\n"));
    let delete = corium(&["delete", &uri]);
    assert_eq!(delete.code(), 0, "{delete:?}");
    let third = corium(&["put", &uri, "-O", "If-None-Match", "-e", "new"]);
    assert_eq!(third.code(), 0, "{third:?}");
}

#[test]
fn validate_etag() {
    let server = Server::start();
    let uri = server.uri("/validate");
    let out = corium(&["get", &uri, "-v"]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stderr.contains("ETag: 0x01"), "{out:?}");
    let out = corium(&["get", &uri, "-O", "ETag,0x01"]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stderr, "2.03 Valid\n");
    let out = corium(&["put", &uri, "-e", "changed", "-O", "If-Match,0x01"]);
    assert_eq!((out.code(), out.stderr.as_str()), (0, "2.04 Changed\n"));
    // The ETag changed: the old one no longer validates.
    let out = corium(&["get", &uri, "-O", "ETag,0x01"]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(
        (out.stderr.as_str(), out.stdout.as_str()),
        ("2.05 Content\n", "changed\n")
    );
    let out = corium(&["put", &uri, "-e", "stale", "-O", "If-Match,0x01"]);
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.starts_with("4.12"), "{out:?}");
}

#[test]
fn discover_with_filters() {
    let server = Server::start();
    let out = corium(&["discover", &server.uri("")]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.starts_with("path "), "{out:?}");
    for path in [
        "/test",
        "/separate",
        "/link1",
        "/path/sub2",
        "/large",
        "/obs",
        "/echo",
    ] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{path} "))),
            "{path} missing: {}",
            out.stdout
        );
    }
    let expect_type1 = |out: &Out| {
        assert_eq!(out.code(), 0, "{out:?}");
        let paths: Vec<&str> = out
            .stdout
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(paths, ["/link1", "/link3"], "{}", out.stdout);
    };
    expect_type1(&corium(&[
        "discover",
        &server.uri("/.well-known/core?rt=Type1"),
    ]));
    expect_type1(&corium(&[
        "discover",
        &server.uri("/"),
        "--filter",
        "rt=Type1",
    ]));
    let out = corium(&["discover", &server.uri(""), "--filter", "rt=Type1*"]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.stdout);
}

#[test]
fn verbose_prints_a_dissection() {
    let server = Server::start();
    let out = corium(&["get", "-v", &server.uri("/test")]);
    assert_eq!(out.code(), 0, "{out:?}");
    let peer = server.addr.to_string();
    let sent = out
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("→ {peer} CON GET mid=0x")))
        .unwrap_or_else(|| panic!("no sent CON GET: {}", out.stderr));
    assert!(sent.contains("token=0x"), "{sent}");
    assert!(sent.contains("Uri-Path: \"test\""), "{sent}");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with(&format!("← {peer} ACK 2.05 Content mid=0x"))),
        "no ACK 2.05: {}",
        out.stderr
    );
}

#[test]
fn non_confirmable_request() {
    let server = Server::start();
    let out = corium(&["get", "--non", "-v", &server.uri("/test")]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "Type: 1 (NON)\nCode: 1 (GET)\n");
    assert!(out.stderr.contains(" NON GET mid="), "{out:?}");
    assert!(out.stderr.contains(" NON 2.05 Content mid="), "{out:?}");
    assert!(!out.stderr.contains(" CON "), "{out:?}");
}

#[test]
fn separate_response_after_empty_ack() {
    let server = Server::start();
    let out = corium(&["get", "-v", &server.uri("/separate")]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.ends_with("separate response\n"), "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    let ack = lines
        .iter()
        .position(|l| l.starts_with('←') && l.contains(" ACK Empty "))
        .unwrap_or_else(|| panic!("no empty ACK: {}", out.stderr));
    let resp = lines
        .iter()
        .position(|l| l.starts_with('←') && l.contains(" CON 2.05 Content "))
        .unwrap_or_else(|| panic!("no separate CON response: {}", out.stderr));
    assert!(ack < resp, "{}", out.stderr);
    assert!(out.elapsed >= Duration::from_secs(3), "{out:?}");
}

#[test]
fn echo_payloads_and_formats() {
    let server = Server::start();
    let uri = server.uri("/echo");
    let out = corium(&[
        "post",
        &uri,
        "-t",
        "application/json",
        "-e",
        r#"{"a":[1,2]}"#,
    ]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n");
    // CBOR {"a": 1} rendered in diagnostic notation.
    let dir = std::env::temp_dir().join(format!("corium-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cbor = dir.join("payload.cbor");
    std::fs::write(&cbor, [0xa1, 0x61, 0x61, 0x01]).unwrap();
    let out = corium(&[
        "fetch",
        &uri,
        "-t",
        "application/cbor",
        "-f",
        cbor.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "{\"a\": 1}\n");
    let out = corium_with_stdin(&["put", &uri, "-f", "-"], Some(b"from stdin"));
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "from stdin\n");
    let out = corium(&["patch", &uri, "-t", "60", "-e", "x"]);
    assert_eq!((out.code(), out.stderr.as_str()), (0, "2.04 Changed\n"));
    let out = corium(&[
        "ipatch",
        &uri,
        "-e",
        "\u{1}\u{2}",
        "-t",
        "application/octet-stream",
    ]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.starts_with("00000000  01 02 "), "{out:?}");
    // -o writes the raw payload.
    let file = dir.join("large.txt");
    let out = corium(&["get", &server.uri("/large"), "-o", file.to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "");
    assert_eq!(std::fs::read(&file).unwrap().len(), 1280);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_uri_is_one_line_exit_2() {
    let out = corium(&["get", "coap//x"]);
    assert_eq!(out.code(), 2, "{out:?}");
    assert_eq!(
        out.stderr,
        "error: invalid URI \"coap//x\": not an absolute URI\n"
    );
    assert_eq!(out.stdout, "");
    let out = corium(&["discover", "http://x/"]);
    assert_eq!(out.code(), 2, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
}

#[test]
fn unknown_content_format_exit_2() {
    let out = corium(&["post", "coap://127.0.0.1/x", "-t", "foo", "-e", "x"]);
    assert_eq!(out.code(), 2, "{out:?}");
    assert_eq!(out.stderr, "error: unknown content format \"foo\"\n");
    let out = corium(&["get", "coap://127.0.0.1/x", "-A", "nope/nope"]);
    assert_eq!(out.code(), 2, "{out:?}");
    assert_eq!(out.stderr, "error: unknown content format \"nope/nope\"\n");
}

#[test]
fn bad_arguments_are_one_line() {
    for args in [
        &["get"][..],
        &["get", "coap://h/", "--timeout", "soon"],
        &["get", "coap://h/", "--bogus"],
        &["get", "coap://h/", "-O", "nosuchoption,1"],
        &["frobnicate"],
    ] {
        let out = corium(args);
        assert_eq!(out.code(), 2, "{args:?}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {out:?}");
        assert!(out.stderr.starts_with("error: "), "{args:?}: {out:?}");
    }
    let help = corium(&["get", "--help"]);
    assert_eq!(help.code(), 0);
    assert!(help.stdout.contains("Exit codes:"), "{help:?}");
}

#[test]
fn timeout_against_closed_port() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = corium(&[
        "get",
        &format!("coap://127.0.0.1:{port}/x"),
        "--timeout",
        "1",
    ]);
    assert_eq!(out.code(), 3, "{out:?}");
    assert!(out.stderr.starts_with("error: "), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.elapsed < Duration::from_secs(5), "{out:?}");
}

#[test]
fn bench_prints_result_line() {
    let server = Server::start();
    let out = corium(&[
        "bench",
        &server.uri("/test"),
        "--sockets",
        "2",
        "--window",
        "4",
        "--duration",
        "1",
        "--warmup",
        "0.2",
    ]);
    assert_eq!(out.code(), 0, "{out:?}");
    let result = out.stdout.lines().last().expect("a last line");
    let fields: Vec<(&str, &str)> = result
        .strip_prefix("RESULT ")
        .unwrap_or_else(|| panic!("no RESULT line: {}", out.stdout))
        .split(' ')
        .map(|kv| kv.split_once('=').expect("key=value"))
        .collect();
    let keys: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["rps", "p50_us", "p99_us", "sent", "ok", "lost"]);
    let value = |k: &str| fields.iter().find(|(n, _)| *n == k).unwrap().1;
    assert!(value("rps").parse::<f64>().unwrap() > 0.0, "{result}");
    let ok: u64 = value("ok").parse().unwrap();
    let sent: u64 = value("sent").parse().unwrap();
    assert!(ok > 0 && ok <= sent, "{result}");
    assert!(value("p99_us").parse::<u64>().unwrap() >= value("p50_us").parse::<u64>().unwrap());
    assert_eq!(value("lost"), "0", "{result}");
}

#[cfg(unix)]
#[test]
fn serve_stops_cleanly_on_sigterm() {
    let mut server = Server::start();
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "serve did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}

/// `-b SIZE`: downloads ask for that block size (RFC 7959 §2.4 early negotiation) and
/// still return the whole representation; uploads go in blocks of it; a size that is not
/// a power of two from 16 to 1024 is one clear line and exit 2.
#[test]
fn block_size_option() {
    // Without the amplification limit, which would cut the first block smaller still
    // (see `amplification_limit_cuts_first_blocks_until_echo`).
    let server = Server::start_with(&["--amplification-factor", "0"]);
    let out = corium(&["get", "-b", "256", "-v", &server.uri("/large")]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stderr.contains("Block2: 0/0/256"), "{out:?}");
    assert!(out.stderr.contains("Block2: 4/0/256"), "{out:?}");
    assert_eq!(out.stdout.trim_end().len(), 1280 - 1, "{out:?}");

    let body = "abcdefghij".repeat(300);
    let out = corium(&[
        "post",
        "-b",
        "512",
        "-v",
        "-e",
        &body,
        &server.uri("/large-post"),
    ]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stderr.contains("Block1: 5/0/512"), "{out:?}");
    assert!(out.stderr.contains("2.04 Changed"), "{out:?}");
    assert_eq!(out.stdout.trim_end(), body.to_ascii_uppercase(), "{out:?}");

    let out = corium(&["get", "-b", "100", &server.uri("/large")]);
    assert_eq!(out.code(), 2, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("is not a block size"), "{out:?}");
}

/// RFC 7959 §2.6: `/obs-large` notifications are larger than one block; `corium observe`
/// prints each whole representation (block 0 in the notification, the rest fetched).
#[test]
fn observe_large_notifications_are_whole() {
    let server = Server::start();
    let out = corium(&["observe", "--count", "2", &server.uri("/obs-large")]);
    assert_eq!(out.code(), 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.is_empty()).collect();
    // Two representations of 27 identical 60-byte lines each.
    assert_eq!(lines.len(), 54, "{out:?}");
    assert!(lines
        .iter()
        .all(|l| l.ends_with("observable and larger than one block")));
    assert!(
        lines[0] != lines[53],
        "the second is a newer state: {out:?}"
    );
}

/// RFC 9175 §2.4 item 3 (on by default in `corium serve`): a client whose address is
/// not verified gets a large representation in blocks within three times its request,
/// the first with an Echo value; `corium get` echoes it on the next block, after which
/// the blocks are as large as it asks; the body is whole either way.
#[test]
fn amplification_limit_cuts_first_blocks_until_echo() {
    let server = Server::start();
    let out = corium(&["get", "-v", &server.uri("/large")]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout.trim_end().len(), 1280 - 1, "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    let first = lines
        .iter()
        .find(|l| l.starts_with('←') && l.contains("2.05"))
        .unwrap_or_else(|| panic!("no response: {}", out.stderr));
    assert!(first.contains("Echo"), "{}", out.stderr);
    assert!(
        !first.contains("/1024"),
        "a block below 1024: {}",
        out.stderr
    );
    let echoed = lines
        .iter()
        .filter(|l| l.starts_with('→') && l.contains("Echo"))
        .count();
    assert_eq!(echoed, 1, "the value goes back once: {}", out.stderr);

    let off = Server::start_with(&["--amplification-factor", "0"]);
    let out = corium(&["get", "-v", &off.uri("/large")]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(!out.stderr.contains("Echo"), "{}", out.stderr);
}

/// `corium serve --fresh PATH` (RFC 9175 §2.4 item 1): `corium put` is answered 4.01
/// with an Echo value first, repeats the PUT with it and gets 2.04; the PUT ran once.
/// An unknown path is a usage error.
#[test]
fn serve_fresh_challenges_unsafe_requests_and_put_follows() {
    let server = Server::start_with(&["--fresh", "/large-update", "--amplification-factor", "0"]);
    let uri = server.uri("/large-update");
    let out = corium(&["put", "-v", &uri, "-e", "fresh"]);
    assert_eq!(out.code(), 0, "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    let challenge = lines
        .iter()
        .position(|l| l.starts_with('←') && l.contains("4.01") && l.contains("Echo"))
        .unwrap_or_else(|| panic!("no 4.01 with Echo: {}", out.stderr));
    let retry = lines
        .iter()
        .position(|l| l.starts_with('→') && l.contains("PUT") && l.contains("Echo"))
        .unwrap_or_else(|| panic!("no PUT with Echo: {}", out.stderr));
    assert!(challenge < retry, "{}", out.stderr);
    assert!(out.stderr.ends_with("2.04 Changed\n"), "{}", out.stderr);
    let out = corium(&["get", &uri]);
    assert_eq!((out.code(), out.stdout.trim_end()), (0, "fresh"), "{out:?}");
    // GET is safe: never challenged.
    let out = corium(&["get", "-v", &uri]);
    assert!(!out.stderr.contains("4.01"), "{}", out.stderr);

    let out = corium(&["serve", "--bind", "127.0.0.1:0", "--fresh", "/no-such-path"]);
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("--fresh /no-such-path"), "{out:?}");
}

/// `corium serve --workers N` (SO_REUSEPORT shards, issue 8) serves as usual, and
/// names its address once; bad values of the new `serve`/`bench` flags are usage errors.
#[test]
fn serve_workers_and_bench_peers_arguments() {
    let server = Server::start_with(&["--workers", "2"]);
    let out = corium(&["get", &server.uri("/test")]);
    assert_eq!(out.code(), 0, "{out:?}");
    for bad in [
        &["serve", "--workers", "0"][..],
        &["serve", "--workers", "x"],
        &["bench", "coap://127.0.0.1:9/x", "--peers", "0"],
        &["bench", "coap://127.0.0.1:9/x", "--interval", "1"],
        &[
            "bench",
            "coap://127.0.0.1:9/x",
            "--peers",
            "1",
            "--interval",
            "0",
        ],
        &["bench", "coap://127.0.0.1:9/x", "--peers", "1", "--non"],
        &["bench", "coap://127.0.0.1:9/x", "--local-ip", "127.0.0.2"],
    ] {
        let out = corium(bad);
        assert_eq!(out.code(), 2, "{bad:?}: {out:?}");
    }
}
