//! Shared helpers for the interop tests (`interop_libcoap.rs`,
//! `interop_aiocoap.rs`): locating the real peers, running them with hard
//! time limits, and starting servers (the `corium` plugtest server,
//! libcoap's example server, `interop/aiocoap_server.py`) on free loopback
//! ports, each owned by a guard that kills it on drop.
//!
//! A missing peer is a test failure (with the install hint), never a skip:
//! see `interop/README.md` and `scripts/install-peers.sh`.
// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How to get the peers installed; part of every "peer missing" failure.
pub const INSTALL_HINT: &str = "install the interop peers with `scripts/install-peers.sh` \
     (from the repository root: Debian libcoap3-bin for coap-client-notls/coap-server-notls, \
     aiocoap 0.4.17 in <repo>/.venv); see interop/README.md";

/// `-B` wall-clock limit given to every libcoap client run (seconds).
pub const LIBCOAP_LIMIT_SECS: u64 = 5;

/// The `timeout` wrapped around every `aiocoap-client` run (seconds).
pub const AIOCOAP_LIMIT_SECS: u64 = 20;

/// `--timeout` given to every `corium` request (seconds).
pub const CORIUM_TIMEOUT_SECS: u64 = 10;

/// How long a server may take to come up.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

/// Extra slack of the Rust-side hard limit over a peer's own limit.
const SLACK: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Locations
// ---------------------------------------------------------------------------

/// The repository root (two levels above this crate's manifest).
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// The `corium` binary built by cargo for these tests.
pub fn corium_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_corium"))
}

/// Whether `path` is an executable regular file.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Finds `name` on `PATH`, or fails the test with the install hint.
pub fn find_on_path(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .unwrap_or_else(|| panic!("interop peer `{name}` not found on PATH: {INSTALL_HINT}"))
}

/// libcoap's client, `coap-client-notls`.
pub fn libcoap_client() -> PathBuf {
    find_on_path("coap-client-notls")
}

/// libcoap's example server, `coap-server-notls`.
pub fn libcoap_server() -> PathBuf {
    find_on_path("coap-server-notls")
}

/// The virtualenv python with aiocoap: `$CORIUM_AIOCOAP_PY`, else
/// `<repo>/.venv/bin/python`.
pub fn aiocoap_python() -> PathBuf {
    let py = std::env::var_os("CORIUM_AIOCOAP_PY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(
        is_executable(&py),
        "aiocoap python {} not found (set CORIUM_AIOCOAP_PY or create the venv): {INSTALL_HINT}",
        py.display()
    );
    py
}

/// `aiocoap-client`, next to [`aiocoap_python`] in the venv's `bin`.
pub fn aiocoap_client() -> PathBuf {
    let py = aiocoap_python();
    let client = py
        .parent()
        .map(|dir| dir.join("aiocoap-client"))
        .unwrap_or_else(|| PathBuf::from("aiocoap-client"));
    assert!(
        is_executable(&client),
        "aiocoap-client not found at {}: {INSTALL_HINT}",
        client.display()
    );
    client
}

/// `interop/aiocoap_server.py` (or `$CORIUM_AIOCOAP_SERVER`).
pub fn aiocoap_server_script() -> PathBuf {
    let script = std::env::var_os("CORIUM_AIOCOAP_SERVER")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("interop/aiocoap_server.py"));
    assert!(
        script.is_file(),
        "aiocoap server script {} not found (set CORIUM_AIOCOAP_SERVER)",
        script.display()
    );
    script
}

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/// Ports already handed out by this process (never handed out twice).
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A loopback port that is free for UDP and TCP right now (libcoap's server
/// binds both) and that no other test of this process got.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket on 127.0.0.1:0");
        let port = udp.local_addr().expect("local_addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut ports = handed_out().lock().unwrap_or_else(PoisonError::into_inner);
        if ports.insert(port) {
            return port;
        }
    }
    panic!("no free loopback port found after 100 attempts");
}

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

/// The result of one finished command.
#[derive(Debug)]
pub struct Outcome {
    /// The command line, for messages.
    pub cmdline: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
    /// Standard output as bytes.
    pub stdout_bytes: Vec<u8>,
    /// Wall-clock run time.
    pub elapsed: Duration,
}

impl Outcome {
    /// Everything about the run, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {} (after {:.2?})\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.cmdline, self.status, self.elapsed, self.stdout, self.stderr
        )
    }

    /// The exit code (`None` when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts exit code 0.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "expected exit status 0\n{}",
            self.describe()
        );
        self
    }

    /// Asserts a specific exit code.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "unexpected exit status\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that stdout contains `needle`.
    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout does not contain {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that stdout does not contain `needle`.
    pub fn assert_stdout_lacks(&self, needle: &str) -> &Self {
        assert!(
            !self.stdout.contains(needle),
            "stdout unexpectedly contains {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that stdout, without trailing newlines, is exactly `expected`.
    pub fn assert_stdout_is(&self, expected: &str) -> &Self {
        assert_eq!(
            self.stdout.trim_end_matches(['\n', '\r']),
            expected,
            "unexpected stdout\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that stderr contains `needle`.
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr does not contain {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that stderr does not contain `needle`.
    pub fn assert_stderr_lacks(&self, needle: &str) -> &Self {
        assert!(
            !self.stderr.contains(needle),
            "stderr unexpectedly contains {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// The libcoap `-v 6` message trace: the `v:1 ...` lines, which libcoap
    /// prints on stdout (stderr is searched as well), consecutive duplicates
    /// removed (libcoap logs some lines twice).
    pub fn libcoap_trace(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .stdout
            .lines()
            .chain(self.stderr.lines())
            .filter_map(|l| l.find(TRACE_MARK).map(|i| l[i..].trim_end().to_owned()))
            .collect();
        lines.dedup();
        lines
    }

    /// The payload libcoap printed on stdout, with the `-v 6` trace lines
    /// taken out (the payload has no trailing newline, so a trace line may
    /// follow it on the same line).
    pub fn libcoap_payload(&self) -> String {
        let mut kept = Vec::new();
        for line in self.stdout.split('\n') {
            match line.find(TRACE_MARK) {
                Some(0) => {}
                Some(i) => kept.push(&line[..i]),
                None => kept.push(line),
            }
        }
        kept.join("\n").trim_end_matches(['\n', '\r']).to_owned()
    }

    /// Asserts that the libcoap payload is exactly `expected`.
    pub fn assert_libcoap_payload_is(&self, expected: &str) -> &Self {
        assert_eq!(
            self.libcoap_payload(),
            expected,
            "unexpected payload\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that the libcoap payload contains `needle`.
    pub fn assert_libcoap_payload_contains(&self, needle: &str) -> &Self {
        assert!(
            self.libcoap_payload().contains(needle),
            "payload does not contain {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that the libcoap payload does not contain `needle`.
    pub fn assert_libcoap_payload_lacks(&self, needle: &str) -> &Self {
        assert!(
            !self.libcoap_payload().contains(needle),
            "payload unexpectedly contains {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// Index of the first libcoap trace line containing all of `parts`.
    pub fn libcoap_trace_position(&self, parts: &[&str]) -> Option<usize> {
        self.libcoap_trace()
            .iter()
            .position(|l| parts.iter().all(|p| l.contains(p)))
    }

    /// Asserts that some libcoap trace line contains all of `parts`; returns
    /// its index.
    pub fn assert_libcoap_trace(&self, parts: &[&str]) -> usize {
        self.libcoap_trace_position(parts).unwrap_or_else(|| {
            panic!(
                "no libcoap -v 6 trace line contains all of {parts:?}\n{}",
                self.describe()
            )
        })
    }
}

/// How libcoap's message trace lines start (`v:1 t:CON c:GET i:97c9 ...`).
const TRACE_MARK: &str = "v:1 t:";

/// Shell-like rendering of a command line.
fn render_cmdline(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let s = a.to_string_lossy();
            if s.is_empty() || s.contains([' ', '&', '?', '"', '\'']) {
                format!("'{s}'")
            } else {
                s.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads a pipe to its end on a thread; the bytes arrive on the channel.
fn drain<R: std::io::Read + Send + 'static>(pipe: Option<R>) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// The drained bytes, waiting at most `limit` (a grandchild may hold the
/// pipe open after its parent was killed).
fn collect(rx: &Receiver<Vec<u8>>, limit: Duration) -> Vec<u8> {
    rx.recv_timeout(limit).unwrap_or_default()
}

/// Runs `cmd` (stdin closed, output captured) and waits at most `limit`;
/// past it the process is killed and the test fails.
pub fn run(cmd: &mut Command, limit: Duration) -> Outcome {
    let cmdline = render_cmdline(cmd);
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{cmdline}`: {e}\n{INSTALL_HINT}"));
    let mut guard = ChildGuard::new(child, cmdline.clone());
    let out = drain(guard.child.stdout.take());
    let err = drain(guard.child.stderr.take());
    let status = loop {
        match guard.child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > limit => {
                drop(guard);
                let stdout =
                    String::from_utf8_lossy(&collect(&out, Duration::from_secs(1))).into_owned();
                let stderr =
                    String::from_utf8_lossy(&collect(&err, Duration::from_secs(1))).into_owned();
                panic!(
                    "`{cmdline}` did not finish within {limit:?}; killed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for `{cmdline}`: {e}"),
        }
    };
    let elapsed = start.elapsed();
    guard.finished = true;
    let stdout_bytes = collect(&out, SLACK);
    let stderr_bytes = collect(&err, SLACK);
    Outcome {
        cmdline,
        status,
        stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
        stderr: String::from_utf8_lossy(&stderr_bytes).into_owned(),
        stdout_bytes,
        elapsed,
    }
}

/// Runs `coap-client-notls -B limit_secs ARGS...`.
pub fn coap_client_with_limit<S: AsRef<OsStr>>(limit_secs: u64, args: &[S]) -> Outcome {
    let mut cmd = Command::new(libcoap_client());
    cmd.arg("-B").arg(limit_secs.to_string()).args(args);
    run(&mut cmd, Duration::from_secs(limit_secs) + SLACK)
}

/// Runs `coap-client-notls -B 5 ARGS...`.
pub fn coap_client<S: AsRef<OsStr>>(args: &[S]) -> Outcome {
    coap_client_with_limit(LIBCOAP_LIMIT_SECS, args)
}

/// Runs `timeout 20 aiocoap-client ARGS...`.
pub fn aiocoap_client_run<S: AsRef<OsStr>>(args: &[S]) -> Outcome {
    let mut cmd = Command::new("timeout");
    cmd.arg(AIOCOAP_LIMIT_SECS.to_string())
        .arg(aiocoap_client())
        .args(args);
    run(&mut cmd, Duration::from_secs(AIOCOAP_LIMIT_SECS) + SLACK)
}

/// Runs `corium ARGS... --timeout 10` (for the request verbs and
/// `discover`).
pub fn corium<S: AsRef<OsStr>>(args: &[S]) -> Outcome {
    let mut cmd = Command::new(corium_bin());
    cmd.args(args)
        .arg("--timeout")
        .arg(CORIUM_TIMEOUT_SECS.to_string())
        .env_remove("RUST_LOG");
    run(&mut cmd, Duration::from_secs(CORIUM_TIMEOUT_SECS) + SLACK)
}

/// Runs closures on parallel threads and returns their results in order
/// (independent peer invocations of one test; a panic propagates).
pub fn parallel<T: Send>(jobs: Vec<Box<dyn FnOnce() -> T + Send + '_>>) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs.into_iter().map(|job| s.spawn(job)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// Owns a child process; kills and reaps it on drop.
pub struct ChildGuard {
    /// The process.
    pub child: Child,
    /// What it is, for messages.
    pub name: String,
    /// Set once the process has exited and been reaped.
    finished: bool,
}

impl ChildGuard {
    /// Takes ownership of `child`.
    pub fn new(child: Child, name: impl Into<String>) -> ChildGuard {
        ChildGuard {
            child,
            name: name.into(),
            finished: false,
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A server process: its guard, its stdout lines (as a channel) and its
/// stderr (collected), which is printed when the test fails.
pub struct ServerProcess {
    guard: ChildGuard,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl ServerProcess {
    /// Starts `cmd` with piped stdout/stderr.
    fn spawn(cmd: &mut Command) -> ServerProcess {
        let cmdline = render_cmdline(cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{cmdline}`: {e}\n{INSTALL_HINT}"));
        let (tx, lines) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut err) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend_from_slice(&buf[..n]);
                }
            });
        }
        ServerProcess {
            guard: ChildGuard::new(child, cmdline),
            lines,
            stderr,
        }
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }

    /// Waits for a stdout line satisfying `pred`; fails the test after
    /// `limit` or when the server exits first.
    fn wait_for_line(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        self.try_wait_for_line(what, limit, pred)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits for a stdout line satisfying `pred`; the error describes why
    /// none came (time limit, or the server exited).
    fn try_wait_for_line(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) if pred(&line) => return Ok(line),
                Ok(line) => seen.push(line),
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(e) => {
                    // Give an exiting process a moment to be reaped.
                    std::thread::sleep(Duration::from_millis(50));
                    let status = self.guard.child.try_wait().ok().flatten();
                    return Err(format!(
                        "`{}` did not print {what} within {limit:?} ({e:?}, exit status {status:?})\n\
                         --- stdout ---\n{}\n--- stderr ---\n{}",
                        self.guard.name,
                        seen.join("\n"),
                        self.log()
                    ));
                }
            }
        }
    }

    /// Fails the test if the process has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.guard.child.try_wait() {
            panic!(
                "`{}` exited early with {status}\n--- stderr ---\n{}",
                self.guard.name,
                self.log()
            );
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- log of `{}` (test failed) ---\n{}\n--- end of log ---",
                self.guard.name,
                self.log()
            );
        }
    }
}

/// Sends CoAP pings (empty CON, RFC 7252 §4.2) until `addr` answers with
/// RST or `limit` passes.
pub fn coap_ping(addr: SocketAddr, limit: Duration) -> bool {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let deadline = Instant::now() + limit;
    let mut mid: u16 = 0x7a00;
    while Instant::now() < deadline {
        mid = mid.wrapping_add(1);
        let [hi, lo] = mid.to_be_bytes();
        let ping = [0x40, 0x00, hi, lo];
        if sock.send_to(&ping, addr).is_ok() {
            let mut buf = [0u8; 64];
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                // Version 1, type RST (3), no token, code 0.00, same MID.
                if from == addr && n >= 4 && buf[0] == 0x70 && buf[1] == 0 && buf[2..4] == [hi, lo]
                {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

// ---------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------

/// `corium serve --bind 127.0.0.1:0`: the plugtest server on a port picked
/// by the OS (learned from its first stdout line).
pub struct CoriumServer {
    /// The bound address.
    pub addr: SocketAddr,
    process: ServerProcess,
}

impl CoriumServer {
    /// Starts the server and waits for `corium serving coap on ...`.
    pub fn start() -> CoriumServer {
        CoriumServer::start_with(&[])
    }

    /// [`start`](Self::start) with more `corium serve` arguments.
    pub fn start_with(extra: &[&str]) -> CoriumServer {
        let mut cmd = Command::new(corium_bin());
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .args(extra)
            .env_remove("RUST_LOG");
        let mut process = ServerProcess::spawn(&mut cmd);
        const PREFIX: &str = "corium serving coap on ";
        let line = process.wait_for_line(
            "its `corium serving coap on ADDR` line",
            STARTUP_LIMIT,
            |l| l.starts_with(PREFIX),
        );
        let first = line[PREFIX.len()..].split(", ").next().unwrap_or_default();
        let addr: SocketAddr = first
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("cannot parse the bound address in {line:?}: {e}"));
        assert_ne!(addr.port(), 0, "port 0 not resolved in {line:?}");
        CoriumServer { addr, process }
    }

    /// `coap://127.0.0.1:PORT` + `path_and_query`.
    pub fn uri(&self, path_and_query: &str) -> String {
        format!("coap://{}{path_and_query}", self.addr)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Fails the test if the server died.
    pub fn assert_running(&mut self) {
        self.process.assert_running();
    }
}

/// libcoap's `coap-server-notls -A 127.0.0.1 -p PORT`.
pub struct LibcoapServer {
    /// The bound address.
    pub addr: SocketAddr,
    process: ServerProcess,
}

impl LibcoapServer {
    /// Starts the server on a free port and waits until it answers a ping.
    pub fn start() -> LibcoapServer {
        let bin = libcoap_server();
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(&bin);
            cmd.args(["-A", "127.0.0.1", "-p", &port.to_string()]);
            let mut process = ServerProcess::spawn(&mut cmd);
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if coap_ping(addr, Duration::from_secs(10)) {
                process.assert_running();
                return LibcoapServer { addr, process };
            }
            // Possibly lost a race for the port: try another one.
            last_log = process.log();
        }
        panic!("coap-server-notls did not answer a CoAP ping on three ports\n--- stderr ---\n{last_log}");
    }

    /// `coap://127.0.0.1:PORT` + `path_and_query`.
    pub fn uri(&self, path_and_query: &str) -> String {
        format!("coap://{}{path_and_query}", self.addr)
    }
}

/// `interop/aiocoap_server.py --bind 127.0.0.1 --port PORT` run with the venv
/// python.
pub struct AiocoapServer {
    /// The bound address.
    pub addr: SocketAddr,
    process: ServerProcess,
}

impl AiocoapServer {
    /// Seconds `/separate` waits before its separate response.
    pub const SEPARATE_DELAY_SECS: u64 = 2;

    /// Starts the server on a free port and waits for `READY` (another
    /// port is tried if the server exits first, e.g. having lost a race for
    /// the port).
    pub fn start() -> AiocoapServer {
        let py = aiocoap_python();
        let script = aiocoap_server_script();
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(&py);
            cmd.arg(&script)
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--separate-delay", &Self::SEPARATE_DELAY_SECS.to_string()])
                .env("PYTHONUNBUFFERED", "1");
            let mut process = ServerProcess::spawn(&mut cmd);
            match process.try_wait_for_line("READY", STARTUP_LIMIT, |l| l.trim() == "READY") {
                Ok(_) => {
                    return AiocoapServer {
                        addr: SocketAddr::from(([127, 0, 0, 1], port)),
                        process,
                    }
                }
                Err(e) => last_error = e,
            }
        }
        panic!("the aiocoap server did not start (3 attempts): {last_error}\n{INSTALL_HINT}");
    }

    /// `coap://127.0.0.1:PORT` + `path_and_query`.
    pub fn uri(&self, path_and_query: &str) -> String {
        format!("coap://{}{path_and_query}", self.addr)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// aiocoap_server.py's `/large` body: 2000 bytes of numbered text lines.
pub fn aiocoap_large_body() -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..30 {
        body.extend_from_slice(
            format!(
                "{i:04} abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 ....\n"
            )
            .as_bytes(),
        );
    }
    body.truncate(2000);
    assert_eq!(body.len(), 2000);
    body
}

/// A 3000-byte text body (three Block1/Block2 blocks of 1024) written to a fresh file;
/// returns the body and the file's path. The file lives in a directory unique to `name`.
pub fn big_body_file(name: &str) -> (Vec<u8>, PathBuf) {
    let body: Vec<u8> = (0..3000u32).map(|i| b'A' + (i % 26) as u8).collect();
    let dir = std::env::temp_dir().join(format!("corium-interop-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    let file = dir.join("body.txt");
    std::fs::write(&file, &body).expect("write the body");
    (body, file)
}

/// `aiocoap-fileserver --write` (from the aiocoap venv) serving `root` on a free port.
pub struct AiocoapFileServer {
    /// The bound address.
    pub addr: SocketAddr,
    process: ServerProcess,
}

impl AiocoapFileServer {
    /// Starts the file server and waits until it answers a CoAP ping.
    pub fn start(root: &std::path::Path) -> AiocoapFileServer {
        let bin = aiocoap_python()
            .parent()
            .map(|dir| dir.join("aiocoap-fileserver"))
            .unwrap_or_else(|| PathBuf::from("aiocoap-fileserver"));
        assert!(
            is_executable(&bin),
            "aiocoap-fileserver not found at {}: {INSTALL_HINT}",
            bin.display()
        );
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(&bin);
            cmd.args(["--write", "--bind", &format!("127.0.0.1:{port}")])
                .arg(root)
                .env("PYTHONUNBUFFERED", "1");
            let mut process = ServerProcess::spawn(&mut cmd);
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if coap_ping(addr, Duration::from_secs(20)) {
                process.assert_running();
                return AiocoapFileServer { addr, process };
            }
            last_log = process.log();
        }
        panic!("aiocoap-fileserver did not answer a CoAP ping on three ports\n--- stderr ---\n{last_log}");
    }

    /// `coap://127.0.0.1:PORT` + `path`.
    pub fn uri(&self, path: &str) -> String {
        format!("coap://{}{path}", self.addr)
    }
}

// ---------------------------------------------------------------------------
// CoAP over TCP (RFC 8323), for interop_tcp.rs
// ---------------------------------------------------------------------------

/// `corium serve --bind 127.0.0.1:0` with both of its addresses: UDP from the
/// `corium serving coap on ADDR` line and TCP from the
/// `corium serving coap+tcp on ADDR` line that follows it.
pub struct CoriumTcpServer {
    /// The bound UDP address.
    pub udp: SocketAddr,
    /// The bound TCP address (RFC 8323 `coap+tcp`).
    pub tcp: SocketAddr,
    process: ServerProcess,
}

impl CoriumTcpServer {
    /// Starts the server and waits for both of its `corium serving` lines.
    pub fn start() -> CoriumTcpServer {
        let mut cmd = Command::new(corium_bin());
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .env_remove("RUST_LOG");
        let mut process = ServerProcess::spawn(&mut cmd);
        let mut addr_after = |prefix: &str| -> SocketAddr {
            let line =
                process.wait_for_line(&format!("its `{prefix}ADDR` line"), STARTUP_LIMIT, |l| {
                    l.starts_with(prefix)
                });
            let first = line[prefix.len()..].split(", ").next().unwrap_or_default();
            let addr: SocketAddr = first
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("cannot parse the bound address in {line:?}: {e}"));
            assert_ne!(addr.port(), 0, "port 0 not resolved in {line:?}");
            addr
        };
        let udp = addr_after("corium serving coap on ");
        let tcp = addr_after("corium serving coap+tcp on ");
        CoriumTcpServer { udp, tcp, process }
    }

    /// `coap://127.0.0.1:PORT` + `path_and_query` (UDP).
    pub fn uri(&self, path_and_query: &str) -> String {
        format!("coap://{}{path_and_query}", self.udp)
    }

    /// `coap+tcp://127.0.0.1:PORT` + `path_and_query`.
    pub fn tcp_uri(&self, path_and_query: &str) -> String {
        format!("coap+tcp://{}{path_and_query}", self.tcp)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Fails the test if the server died.
    pub fn assert_running(&mut self) {
        self.process.assert_running();
    }
}

impl AiocoapServer {
    /// Starts `interop/aiocoap_server.py --transports udp6:tcpserver`: the same
    /// resources over UDP and over TCP (RFC 8323), both on the port in
    /// [`AiocoapServer::addr`]; waits for `READY` (printed once both are bound).
    pub fn start_tcp() -> AiocoapServer {
        let py = aiocoap_python();
        let script = aiocoap_server_script();
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(&py);
            cmd.arg(&script)
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--separate-delay", &Self::SEPARATE_DELAY_SECS.to_string()])
                .args(["--transports", "udp6:tcpserver"])
                .env("PYTHONUNBUFFERED", "1");
            let mut process = ServerProcess::spawn(&mut cmd);
            match process.try_wait_for_line("READY", STARTUP_LIMIT, |l| l.trim() == "READY") {
                Ok(_) => {
                    return AiocoapServer {
                        addr: SocketAddr::from(([127, 0, 0, 1], port)),
                        process,
                    }
                }
                Err(e) => last_error = e,
            }
        }
        panic!("the aiocoap TCP server did not start (3 attempts): {last_error}\n{INSTALL_HINT}");
    }
}

// ---------------------------------------------------------------------------
// TLS and WebSockets (RFC 8323 coaps+tcp, coap+ws, coaps+ws), for interop_tls_ws.rs
// ---------------------------------------------------------------------------

/// libcoap's client of one TLS build: `coap-client-openssl` or `coap-client-gnutls`.
pub fn libcoap_tls_client(build: &str) -> PathBuf {
    find_on_path(&format!("coap-client-{build}"))
}

/// Runs `coap-client-{build} -B 5 ARGS...` (`build`: `openssl` or `gnutls`).
pub fn coap_tls_client<S: AsRef<OsStr>>(build: &str, args: &[S]) -> Outcome {
    let mut cmd = Command::new(libcoap_tls_client(build));
    cmd.arg("-B").arg(LIBCOAP_LIMIT_SECS.to_string()).args(args);
    run(&mut cmd, Duration::from_secs(LIBCOAP_LIMIT_SECS) + SLACK)
}

/// Runs `timeout 20 aiocoap-client ARGS...` with `SSL_CERT_FILE=ca` (Python's
/// default SSL context, which aiocoap uses for coaps+tcp and coaps+ws, then trusts
/// exactly that CA).
pub fn aiocoap_client_trusting<S: AsRef<OsStr>>(ca: &Path, args: &[S]) -> Outcome {
    let mut cmd = Command::new("timeout");
    cmd.arg(AIOCOAP_LIMIT_SECS.to_string())
        .arg(aiocoap_client())
        .args(args)
        .env("SSL_CERT_FILE", ca)
        .env_remove("SSL_CERT_DIR");
    run(&mut cmd, Duration::from_secs(AIOCOAP_LIMIT_SECS) + SLACK)
}

/// Whether `port` is free for TCP on 127.0.0.1 right now (and, with `udp`, for
/// UDP too); marks it handed out when it is.
fn claim_port(port: u16, udp: bool) -> bool {
    if TcpListener::bind(("127.0.0.1", port)).is_err()
        || (udp && UdpSocket::bind(("127.0.0.1", port)).is_err())
    {
        return false;
    }
    handed_out()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(port)
}

/// `corium serve` with every RFC 8323 listener: `--bind 127.0.0.1:0` (coap and
/// coap+tcp), `--secure-bind`, `--ws-bind` and `--wss-bind` on `127.0.0.1:0`, each
/// address learned from its `corium serving SCHEME on ADDR` line.
pub struct CoriumSecureServer {
    /// coap (UDP).
    pub udp: SocketAddr,
    /// coap+tcp.
    pub tcp: SocketAddr,
    /// coaps+tcp (TLS, ALPN `coap`).
    pub tls: SocketAddr,
    /// coap+ws (`/.well-known/coap`, subprotocol `coap`).
    pub ws: SocketAddr,
    /// coaps+ws.
    pub wss: SocketAddr,
    process: ServerProcess,
}

impl CoriumSecureServer {
    /// Starts `corium serve --cert CERT --key KEY [--ca CLIENT_CA] [-v]` and waits
    /// for its five `corium serving` lines. With `client_ca`, TLS clients must
    /// present a certificate issued by it; `verbose` logs connections (stderr,
    /// see [`CoriumSecureServer::log`]).
    pub fn start(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        verbose: bool,
    ) -> CoriumSecureServer {
        let mut cmd = Command::new(corium_bin());
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args(["--secure-bind", "127.0.0.1:0"])
            .args(["--ws-bind", "127.0.0.1:0"])
            .args(["--wss-bind", "127.0.0.1:0"])
            .env_remove("RUST_LOG");
        if let Some(ca) = client_ca {
            cmd.arg("--ca").arg(ca);
        }
        if verbose {
            cmd.arg("-v");
        }
        let mut process = ServerProcess::spawn(&mut cmd);
        let mut found: Vec<(String, SocketAddr)> = Vec::new();
        const SCHEMES: [&str; 5] = ["coap", "coap+tcp", "coaps+tcp", "coap+ws", "coaps+ws"];
        while found.len() < SCHEMES.len() {
            let line = process.wait_for_line(
                "all five `corium serving SCHEME on ADDR` lines",
                STARTUP_LIMIT,
                |l| l.starts_with("corium serving "),
            );
            let mut words = line["corium serving ".len()..].splitn(3, ' ');
            let (Some(scheme), Some("on"), Some(rest)) = (words.next(), words.next(), words.next())
            else {
                panic!("unexpected line {line:?}");
            };
            let first = rest.split(", ").next().unwrap_or_default();
            let addr: SocketAddr = first
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("cannot parse the bound address in {line:?}: {e}"));
            assert_ne!(addr.port(), 0, "port 0 not resolved in {line:?}");
            found.push((scheme.to_owned(), addr));
        }
        let addr = |scheme: &str| {
            found
                .iter()
                .find(|(s, _)| s == scheme)
                .unwrap_or_else(|| panic!("no `corium serving {scheme}` line in {found:?}"))
                .1
        };
        CoriumSecureServer {
            udp: addr("coap"),
            tcp: addr("coap+tcp"),
            tls: addr("coaps+tcp"),
            ws: addr("coap+ws"),
            wss: addr("coaps+ws"),
            process,
        }
    }

    /// The address serving `scheme`.
    pub fn addr(&self, scheme: &str) -> SocketAddr {
        match scheme {
            "coap" => self.udp,
            "coap+tcp" => self.tcp,
            "coaps+tcp" => self.tls,
            "coap+ws" => self.ws,
            "coaps+ws" => self.wss,
            other => panic!("corium serve has no {other} listener"),
        }
    }

    /// `SCHEME://HOST:PORT` + `path_and_query`, with the port of `scheme`'s listener.
    pub fn url(&self, scheme: &str, host: &str, path_and_query: &str) -> String {
        format!(
            "{scheme}://{host}:{}{path_and_query}",
            self.addr(scheme).port()
        )
    }

    /// The server's log (stderr) so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Waits until the log contains `needle`; `false` after `limit` (a hang
    /// guard for log lines written after a client has already finished).
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fails the test if the server died.
    pub fn assert_running(&mut self) {
        self.process.assert_running();
    }
}

/// libcoap's example server of one TLS build (`coap-server-openssl` or
/// `coap-server-gnutls`) in PKI mode: `-A 127.0.0.1 -p PORT ARGS...`; it serves
/// coap and coap+tcp on PORT, coaps (DTLS) and coaps+tcp on PORT+1.
pub struct LibcoapTlsServer {
    /// coap (UDP) and coap+tcp.
    pub addr: SocketAddr,
    /// coaps+tcp (and DTLS): PORT+1.
    pub tls: SocketAddr,
    process: ServerProcess,
}

impl LibcoapTlsServer {
    /// Starts `coap-server-{build} -A 127.0.0.1 -p PORT ARGS...` on a port whose
    /// successor is free too, and waits until it answers a CoAP ping on PORT.
    pub fn start<S: AsRef<OsStr>>(build: &str, args: &[S]) -> LibcoapTlsServer {
        let bin = find_on_path(&format!("coap-server-{build}"));
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            if port == u16::MAX || !claim_port(port + 1, true) {
                continue;
            }
            let mut cmd = Command::new(&bin);
            cmd.args(["-A", "127.0.0.1", "-p", &port.to_string()])
                .args(args);
            let mut process = ServerProcess::spawn(&mut cmd);
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if coap_ping(addr, Duration::from_secs(10)) {
                process.assert_running();
                return LibcoapTlsServer {
                    addr,
                    tls: SocketAddr::from(([127, 0, 0, 1], port + 1)),
                    process,
                };
            }
            last_log = process.log();
        }
        panic!("coap-server-{build} did not answer a CoAP ping on five ports\n--- stderr ---\n{last_log}");
    }

    /// `coaps+tcp://HOST:PORT+1` + `path_and_query`.
    pub fn tls_url(&self, host: &str, path_and_query: &str) -> String {
        format!("coaps+tcp://{host}:{}{path_and_query}", self.tls.port())
    }

    /// `coap://127.0.0.1:PORT` + `path_and_query`.
    pub fn uri(&self, path_and_query: &str) -> String {
        format!("coap://{}{path_and_query}", self.addr)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// `interop/aiocoap_secure_server.py` (or `$CORIUM_AIOCOAP_SECURE_SERVER`).
pub fn aiocoap_secure_server_script() -> PathBuf {
    let script = std::env::var_os("CORIUM_AIOCOAP_SECURE_SERVER")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("interop/aiocoap_secure_server.py"));
    assert!(
        script.is_file(),
        "aiocoap secure server script {} not found (set CORIUM_AIOCOAP_SECURE_SERVER)",
        script.display()
    );
    script
}

/// `interop/aiocoap_secure_server.py`: aiocoap_server.py's resources over coap and
/// coap+tcp (PORT), coaps+tcp (PORT+1), coap+ws (PORT+3000) and coaps+ws
/// (PORT+3001), aiocoap 0.4.17's port rules; addresses from its `LISTEN` lines.
pub struct AiocoapSecureServer {
    listeners: Vec<(String, SocketAddr)>,
    process: ServerProcess,
}

impl AiocoapSecureServer {
    /// Starts the script with `--cert CERT --key KEY [--client-ca CA]` on a base
    /// port whose companions are free, and waits for `READY`.
    pub fn start(cert: &Path, key: &Path, client_ca: Option<&Path>) -> AiocoapSecureServer {
        let py = aiocoap_python();
        let script = aiocoap_secure_server_script();
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            if port > u16::MAX - 3001
                || !claim_port(port + 1, false)
                || !claim_port(port + 3000, false)
                || !claim_port(port + 3001, false)
            {
                continue;
            }
            let mut cmd = Command::new(&py);
            cmd.arg(&script)
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .arg("--cert")
                .arg(cert)
                .arg("--key")
                .arg(key)
                .env("PYTHONUNBUFFERED", "1");
            if let Some(ca) = client_ca {
                cmd.arg("--client-ca").arg(ca);
            }
            let mut process = ServerProcess::spawn(&mut cmd);
            let mut listeners = Vec::new();
            let outcome = loop {
                match process.try_wait_for_line("READY", STARTUP_LIMIT, |l| {
                    l.trim() == "READY" || l.starts_with("LISTEN ")
                }) {
                    Ok(line) if line.trim() == "READY" => break Ok(()),
                    Ok(line) => {
                        let mut words = line.split_whitespace().skip(1);
                        let (Some(scheme), Some(addr)) = (words.next(), words.next()) else {
                            panic!("unexpected line {line:?}");
                        };
                        let addr: SocketAddr = addr
                            .parse()
                            .unwrap_or_else(|e| panic!("cannot parse {line:?}: {e}"));
                        listeners.push((scheme.to_owned(), addr));
                    }
                    Err(e) => break Err(e),
                }
            };
            match outcome {
                Ok(()) => return AiocoapSecureServer { listeners, process },
                Err(e) => last_error = e,
            }
        }
        panic!(
            "the aiocoap secure server did not start (5 attempts): {last_error}\n{INSTALL_HINT}"
        );
    }

    /// The address serving `scheme`.
    pub fn addr(&self, scheme: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(s, _)| s == scheme)
            .unwrap_or_else(|| panic!("no {scheme} listener in {:?}", self.listeners))
            .1
    }

    /// `SCHEME://HOST:PORT` + `path_and_query`, with the port of `scheme`'s listener.
    pub fn url(&self, scheme: &str, host: &str, path_and_query: &str) -> String {
        format!(
            "{scheme}://{host}:{}{path_and_query}",
            self.addr(scheme).port()
        )
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// A server process that prints a line when it is ready; stderr goes to a file.
pub struct ReadyProcess {
    _guard: ChildGuard,
    log: PathBuf,
}

impl ReadyProcess {
    /// Starts `cmd` (stderr into `log`) and waits up to 30 s for a stdout line that
    /// `ready` accepts; returns the process and that line.
    pub fn spawn(
        mut cmd: Command,
        log: PathBuf,
        ready: impl Fn(&str) -> bool,
    ) -> Result<(ReadyProcess, String), String> {
        let err = std::fs::File::create(&log).expect("create a server log");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}\n{INSTALL_HINT}"))?;
        let out = child.stdout.take().expect("stdout");
        let guard = ChildGuard::new(child, format!("{cmd:?}"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if ready(&line) => return Ok((ReadyProcess { _guard: guard, log }, line)),
                Ok(_) => {}
                Err(e) => {
                    return Err(format!(
                        "{cmd:?} did not get ready ({e:?}):\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    ))
                }
            }
        }
    }

    /// The stderr written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
