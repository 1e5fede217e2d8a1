//! Observe (RFC 7641) interop, both directions:
//!
//! * `coap-client-notls -s` → `corium serve` `/obs` (a notification every 5 s);
//! * an aiocoap observer (a small script: `aiocoap-client --observe` prints no
//!   notifications in 0.4.17, see `interop/README.md`) → `corium serve` `/obs`;
//! * `corium observe` → `coap-server-notls` `/time` (libcoap's example server
//!   notifies it every second);
//! * `corium observe` → `interop/aiocoap_server.py` `/obs` (a counter notified
//!   every second).
//!
//! A missing peer fails the test with the install hint
//! (`scripts/install-peers.sh`).

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{
    aiocoap_python, coap_client_with_limit, corium_bin, run, AiocoapServer, ChildGuard,
    CoriumServer, LibcoapServer,
};

/// Observes `argv[1]` with aiocoap until `argv[2]` notifications arrived after the
/// first response, printing `CODE OBSERVE PAYLOAD` per response, then cancels.
const AIOCOAP_OBSERVER: &str = r#"
import asyncio, sys
from aiocoap import Context, Message, GET

async def main(uri, count):
    ctx = await Context.create_client_context()
    r = ctx.request(Message(code=GET, uri=uri, observe=0))
    first = await r.response
    print(first.code, first.opt.observe, first.payload.decode(), flush=True)
    n = 0
    async for note in r.observation:
        print(note.code, note.opt.observe, note.payload.decode(), flush=True)
        n += 1
        if n >= count:
            break
    r.observation.cancel()
    await ctx.shutdown()

asyncio.run(asyncio.wait_for(main(sys.argv[1], int(sys.argv[2])), 30))
"#;

/// The Observe values of the 2.05 responses in a libcoap `-v 6` trace.
fn libcoap_observe_values(trace: &[String]) -> Vec<u32> {
    trace
        .iter()
        .filter(|l| l.contains("c:2.05"))
        .filter_map(|l| {
            let rest = &l[l.find("Observe:")? + "Observe:".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// The `Observe: N` values `corium observe` printed on stderr, in order.
fn corium_observe_values(stderr: &str) -> Vec<u32> {
    stderr
        .lines()
        .filter_map(|l| l.split_once(", Observe: ")?.1.trim().parse().ok())
        .collect()
}

/// Runs `corium observe ARGS...` with a hard limit.
fn corium_observe(args: &[&str], limit: Duration) -> common::Outcome {
    let mut cmd = Command::new(corium_bin());
    cmd.arg("observe")
        .args(args)
        .arg("--timeout")
        .arg("10")
        .env_remove("RUST_LOG");
    run(&mut cmd, limit)
}

fn assert_increasing(values: &[u32], what: &str) {
    assert!(
        values.windows(2).all(|w| w[1] > w[0]),
        "{what}: Observe values do not increase: {values:?}"
    );
}

/// libcoap observes `/obs` for 12 s: the registration's answer and at least
/// two notifications (every 5 s), with increasing Observe values.
#[test]
fn libcoap_client_observes_corium_obs() {
    let server = CoriumServer::start();
    let out = coap_client_with_limit(16, &["-s", "12", "-v", "6", &server.uri("/obs")]);
    let trace = out.libcoap_trace();
    out.assert_libcoap_trace(&["t:CON", "c:GET", "Observe:0", "Uri-Path:obs"]);
    let values = libcoap_observe_values(&trace);
    assert!(
        values.len() >= 3,
        "expected the first response and >= 2 notifications, got {values:?}\n{}",
        out.describe()
    );
    assert_increasing(&values, &out.describe());
    out.assert_libcoap_payload_contains(" UTC");
}

/// `corium observe --count 2` against libcoap's `/time`.
#[test]
fn corium_observes_libcoap_time() {
    let server = LibcoapServer::start();
    let out = corium_observe(
        &[&server.uri("/time"), "--count", "2"],
        Duration::from_secs(30),
    );
    out.assert_success();
    let values = corium_observe_values(&out.stderr);
    assert_eq!(values.len(), 2, "{}", out.describe());
    assert_increasing(&values, &out.describe());
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.describe());
}

/// `corium observe --count 3` against aiocoap's `/obs` (a counter notified
/// every second), then an explicit deregistration.
#[test]
fn corium_observes_aiocoap_obs() {
    let server = AiocoapServer::start();
    let out = corium_observe(
        &[&server.uri("/obs"), "--count", "3"],
        Duration::from_secs(30),
    );
    out.assert_success();
    let values = corium_observe_values(&out.stderr);
    assert_eq!(values.len(), 3, "{}\n{}", out.describe(), server.log());
    assert_increasing(&values, &out.describe());
    // The payloads are the counter: increasing integers.
    let counts: Vec<u64> = out
        .stdout
        .lines()
        .map(|l| l.trim().parse().expect("a counter value"))
        .collect();
    assert_eq!(counts.len(), 3, "{}", out.describe());
    assert!(counts.windows(2).all(|w| w[1] > w[0]), "{counts:?}");
}

/// `--duration` stops observing a resource that changes rarely; a
/// resource that is not observable is reported and ends at once.
#[test]
fn corium_observe_duration_and_not_observable() {
    let server = CoriumServer::start();
    let out = corium_observe(
        &[&server.uri("/obs"), "--duration", "1"],
        Duration::from_secs(20),
    );
    out.assert_success();
    // The first response, and a notification if a 5-s boundary fell inside.
    let values = corium_observe_values(&out.stderr);
    assert!(
        (1..=2).contains(&values.len()),
        "{values:?}\n{}",
        out.describe()
    );
    let out = corium_observe(&[&server.uri("/test")], Duration::from_secs(20));
    out.assert_success();
    out.assert_stderr_contains("not observing");
}

/// aiocoap observes `/obs` on `corium serve`: the first response and two
/// notifications, in order, each with an Observe value.
#[test]
fn aiocoap_observes_corium_obs() {
    let server = CoriumServer::start();
    let mut cmd = Command::new(aiocoap_python());
    cmd.arg("-c")
        .arg(AIOCOAP_OBSERVER)
        .arg(server.uri("/obs"))
        .arg("2")
        .env("PYTHONUNBUFFERED", "1");
    let out = run(&mut cmd, Duration::from_secs(40));
    out.assert_success();
    let values: Vec<u32> = out
        .stdout
        .lines()
        .filter_map(|l| {
            l.strip_prefix("2.05 Content ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(values.len(), 3, "{}\n{}", out.describe(), server.log());
    assert_increasing(&values, &out.describe());
    assert!(out.stdout.contains(" UTC"), "{}", out.describe());
}

/// Whether `line` starts with an RFC 3339 UTC timestamp with milliseconds,
/// `YYYY-MM-DDTHH:MM:SS.mmmZ `.
fn has_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 25
        && b[..24].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
        && b[24] == b' '
}

/// The token of a `-v` trace line (`token=0x...`).
fn trace_token(line: &str) -> Option<&str> {
    line.split(' ').find_map(|w| w.strip_prefix("token=0x"))
}

/// `corium observe -v` prints each notification with a timestamp, and Ctrl-C
/// (SIGINT) deregisters actively: a GET with Observe = 1 and the registration's
/// token (RFC 7641 §3.6), then a clean exit.
#[test]
fn corium_observe_timestamps_and_ctrl_c_deregisters() {
    let server = CoriumServer::start();
    let mut child = Command::new(corium_bin())
        .args(["observe", "-v", &server.uri("/obs"), "--timeout", "10"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start corium observe");
    let stderr = child.stderr.take().expect("stderr");
    let mut guard = ChildGuard::new(child, "corium observe");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let start = Instant::now();
    // Wait for the first response's line, then press Ctrl-C.
    while !lines
        .iter()
        .any(|l: &String| l.contains(", Observe: ") && has_timestamp(l))
    {
        let left = Duration::from_secs(15).saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("no notification line:\n{}", lines.join("\n")),
        }
    }
    let pid = guard.child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -INT {pid}");
    let status = loop {
        if let Some(status) = guard.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "corium observe did not exit after SIGINT:\n{}",
            lines.join("\n")
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
        lines.push(line);
    }
    let all = lines.join("\n");
    assert!(
        status.success(),
        "exit status {status:?}\n{all}\n{}",
        server.log()
    );
    let sent_gets: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with('→') && l.contains(" GET"))
        .collect();
    let register = sent_gets
        .iter()
        .find(|l| l.contains("Observe: 0"))
        .unwrap_or_else(|| panic!("no registration sent:\n{all}"));
    let deregister = sent_gets
        .iter()
        .find(|l| l.contains("Observe: 1"))
        .unwrap_or_else(|| panic!("Ctrl-C sent no GET with Observe = 1:\n{all}"));
    assert_eq!(trace_token(register), trace_token(deregister), "{all}");
    assert!(trace_token(register).is_some(), "{all}");
    // Every notification line carries its timestamp.
    for line in lines
        .iter()
        .filter(|l| l.contains(", Observe: ") && !l.starts_with(['→', '←']))
    {
        assert!(has_timestamp(line), "{line:?}\n{all}");
    }
}
