//! End-to-end tests of `corium rd` (RFC 9176): the directory as a process with its
//! redb data directory, `corium rd register` / `corium rd lookup` against it, a
//! `kill -9` in the middle of a burst of registrations, and interop both ways:
//! `aiocoap-rd` as the directory for the corium client side, and `coap-client-notls`,
//! `aiocoap-client` and an aiocoap endpoint (simple registration) registering with
//! `corium rd`. A missing peer fails the test (see `interop/README.md`).

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::{
    aiocoap_client_run, aiocoap_python, coap_client, corium_bin, free_port, run, Outcome,
};

/// How long anything may take before the test fails.
const LIMIT: Duration = Duration::from_secs(30);

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "corium-rd-cli-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A long-running process (the directory or a registrant): stdout as lines, stderr
/// collected and shown when the test fails. Killed on drop.
struct Proc {
    name: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}\n{}", common::INSTALL_HINT));
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err = child.stderr.take().expect("piped stderr");
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
        Proc {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }

    /// Waits for a stdout line that satisfies `pred`.
    fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(e) => {
                    std::thread::sleep(Duration::from_millis(50));
                    let status = self.child.try_wait().ok().flatten();
                    panic!(
                        "{} did not print {what} ({e:?}, exit status {status:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                        self.name,
                        self.seen.join("\n"),
                        self.log()
                    );
                }
            }
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code.
    fn terminate(&mut self) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.child.id());
        self.wait_exit()
    }

    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit\n--- stderr ---\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (`kill -9`), and reap.
    fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {} (test failed) ---\nstdout:\n{}\nstderr:\n{}",
                self.name,
                self.seen.join("\n"),
                self.log()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `corium rd`.
struct Rd {
    proc: Proc,
    addr: SocketAddr,
}

impl Rd {
    /// Starts `corium rd --bind BIND --data DATA` and reads the bound address from its
    /// ready line.
    fn start(data: &Path, bind: &str) -> Rd {
        Rd::start_with(data, bind, &[])
    }

    /// [`start`](Self::start) with more arguments.
    fn start_with(data: &Path, bind: &str, extra: &[&str]) -> Rd {
        let mut proc = Proc::spawn(
            "corium rd",
            Command::new(corium_bin())
                .args(["rd", "--bind", bind, "--data"])
                .arg(data)
                .args(extra),
        );
        let line = proc.wait_line("its ready line", |l| {
            l.starts_with("corium rd serving coap on ")
        });
        let addr = line
            .trim_start_matches("corium rd serving coap on ")
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        Rd { proc, addr }
    }

    fn uri(&self) -> String {
        format!("coap://{}", self.addr)
    }
}

/// Runs `corium ARGS...` to completion.
fn corium(args: &[&str]) -> Outcome {
    let mut cmd = Command::new(corium_bin());
    cmd.args(args).env_remove("RUST_LOG");
    run(&mut cmd, LIMIT)
}

/// `corium rd lookup URI ARGS... --timeout 10`, checked for success; the stdout lines.
fn lookup(uri: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["rd", "lookup", uri];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--timeout", "10"]);
    let out = corium(&all);
    out.assert_success();
    out.stdout.lines().map(str::to_owned).collect()
}

fn write_links(dir: &Path, doc: &str) -> PathBuf {
    let path = dir.join("links.txt");
    std::fs::write(&path, doc).expect("write links");
    path
}

/// RFC 9176 §5 and §6 through the CLI on both sides: register (with discovery of
/// `/rd`), resource and endpoint lookup with filters, and one-line errors.
#[test]
fn register_and_lookup_through_the_cli() {
    let dir = scratch("basic");
    let rd = Rd::start(&dir.join("data"), "127.0.0.1:0");
    let links = write_links(
        &dir,
        "</sensors/temp>;rt=\"temperature-c\";if=\"sensor\",\n\
         </sensors/light>;rt=\"light-lux\";if=\"sensor\",\n\
         <http://www.example.com/sensors/t123>;anchor=\"/sensors/temp\"\n  ;rel=\"describedby\"\n",
    );
    let out = corium(&[
        "rd",
        "register",
        &rd.uri(),
        "--ep",
        "node1",
        "--d",
        "floor-3",
        "--et",
        "tag:example.com,2020:platform",
        "--base",
        "coap://[2001:db8::1]",
        "--links-from",
        links.to_str().unwrap(),
        "--once",
        "--timeout",
        "10",
    ]);
    out.assert_success();
    assert_eq!(
        out.stdout,
        format!("registered ep=node1 at {}/rd/1 (lt 90000 s)\n", rd.uri())
    );
    assert_eq!(
        lookup(&rd.uri(), &[]),
        [
            "<coap://[2001:db8::1]/sensors/temp>;rt=\"temperature-c\";if=\"sensor\"",
            "<coap://[2001:db8::1]/sensors/light>;rt=\"light-lux\";if=\"sensor\"",
            "<http://www.example.com/sensors/t123>;anchor=\"coap://[2001:db8::1]/sensors/temp\";rel=\"describedby\"",
        ]
    );
    assert_eq!(
        lookup(&rd.uri(), &["res", "rt=light*"]),
        ["<coap://[2001:db8::1]/sensors/light>;rt=\"light-lux\";if=\"sensor\""]
    );
    assert_eq!(
        lookup(&rd.uri(), &["ep", "et=tag:example.com,2020:platform"]),
        ["</rd/1>;ep=node1;d=floor-3;et=\"tag:example.com,2020:platform\";base=\"coap://[2001:db8::1]\";rt=core.rd-ep"]
    );
    assert!(lookup(&rd.uri(), &["ep", "d=elsewhere"]).is_empty());
    // The lookup resource named directly, and the raw payload.
    let raw = lookup(
        &format!("{}/rd-lookup/res", rd.uri()),
        &["href=coap://[2001:db8::1]/sensors/temp", "--raw"],
    );
    assert_eq!(
        raw,
        ["<coap://[2001:db8::1]/sensors/temp>;rt=\"temperature-c\";if=\"sensor\""]
    );
    // An error response is one line and exit code 1.
    let bad = corium(&["rd", "lookup", &rd.uri(), "page=1", "--timeout", "10"]);
    bad.assert_code(1);
    assert_eq!(
        bad.stderr,
        "error: lookup failed: 4.00 Bad Request: page cannot be used without count\n"
    );
    // Registering the same name from another process (another port) is refused.
    let squat = corium(&[
        "rd",
        "register",
        &rd.uri(),
        "--ep",
        "node1",
        "--d",
        "floor-3",
        "--once",
        "--timeout",
        "10",
    ]);
    squat.assert_code(1);
    assert!(
        squat.stderr.contains("4.03 Forbidden"),
        "{}",
        squat.describe()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad arguments: one line on stderr, exit code 2, nothing sent.
#[test]
fn bad_arguments_are_one_line_errors() {
    let dir = scratch("badargs");
    let missing = dir.join("missing.txt");
    let malformed = write_links(&dir, "</a>;rt=\"unterminated");
    let cases: Vec<Vec<&str>> = vec![
        vec!["rd", "--bind", "nonsense"],
        vec!["rd", "--policy", "whatever"],
        vec!["rd", "register", "coap://127.0.0.1:9"],
        vec!["rd", "register", "http://127.0.0.1/", "--ep", "x"],
        vec![
            "rd",
            "register",
            "coap://127.0.0.1:9",
            "--ep",
            "x",
            "--lt",
            "0",
        ],
        vec!["rd", "register", "coap://127.0.0.1:9", "--ep", ""],
        vec![
            "rd",
            "register",
            "coap://127.0.0.1:9",
            "--ep",
            "x",
            "--base",
            "/relative",
        ],
        vec![
            "rd",
            "register",
            "coap://127.0.0.1:9",
            "--ep",
            "x",
            "--links-from",
            missing.to_str().unwrap(),
        ],
        vec![
            "rd",
            "register",
            "coap://127.0.0.1:9",
            "--ep",
            "x",
            "--links-from",
            malformed.to_str().unwrap(),
        ],
        vec!["rd", "lookup"],
        vec!["rd", "lookup", "coap://127.0.0.1:9", "eps"],
        vec!["rd", "lookup", "not a uri"],
        vec!["rd", "frobnicate"],
    ];
    for args in cases {
        let out = corium(&args);
        out.assert_code(2);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.describe());
        assert!(out.stdout.is_empty(), "{}", out.describe());
    }
    // A data directory that cannot be used, or is in use: one line, exit code 4.
    let file = dir.join("file");
    std::fs::write(&file, "x").unwrap();
    let out = corium(&[
        "rd",
        "--bind",
        "127.0.0.1:0",
        "--data",
        file.to_str().unwrap(),
    ]);
    out.assert_code(4);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.describe());
    let data = dir.join("data");
    let _first = Rd::start(&data, "127.0.0.1:0");
    let out = corium(&[
        "rd",
        "--bind",
        "127.0.0.1:0",
        "--data",
        data.to_str().unwrap(),
    ]);
    out.assert_code(4);
    assert!(
        out.stderr.contains("in use by another process"),
        "{}",
        out.describe()
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.describe());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `corium rd register` keeps the registration alive (RFC 9176 §5.3.1), registers
/// again when the RD lost it, and removes it on SIGTERM (§5.3.2).
#[test]
fn registrant_keeps_alive_recovers_and_removes() {
    let dir = scratch("keepalive");
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut rd = Rd::start(&dir.join("data-a"), &bind);
    let links = write_links(&dir, "</alive>;rt=\"heartbeat\"");
    let mut registrant = Proc::spawn(
        "corium rd register",
        Command::new(corium_bin()).args([
            "rd",
            "register",
            &rd.uri(),
            "--ep",
            "keeper",
            "--lt",
            "2",
            "--links-from",
            links.to_str().unwrap(),
            "--timeout",
            "5",
        ]),
    );
    let first = registrant.wait_line("the registration", |l| l.starts_with("registered "));
    assert_eq!(
        first,
        format!("registered ep=keeper at {}/rd/1 (lt 2 s)", rd.uri())
    );
    // Two updates, each before the 2 s lifetime ends: the registration stays visible.
    registrant.wait_line("an update", |l| l.starts_with("updated "));
    registrant.wait_line("a second update", |l| l.starts_with("updated "));
    assert_eq!(lookup(&rd.uri(), &["ep=keeper"]).len(), 1);

    // The RD loses everything: a new one on the same port with an empty data
    // directory. The next update gets 4.04 (or times out), and the registrant
    // registers again.
    rd.proc.kill_9();
    let rd = Rd::start(&dir.join("data-b"), &bind);
    let again = registrant.wait_line("the re-registration", |l| l.starts_with("re-registered "));
    assert_eq!(
        again,
        format!("re-registered ep=keeper at {}/rd/1", rd.uri())
    );
    let found = lookup(&rd.uri(), &["ep=keeper"]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with("/alive>;rt=\"heartbeat\""), "{found:?}");

    // SIGTERM: the registration is removed before the registrant exits.
    assert_eq!(registrant.terminate(), Some(0));
    let removed = registrant.wait_line("the removal", |l| l.starts_with("removed "));
    assert_eq!(removed, format!("removed {}/rd/1", rd.uri()));
    assert!(lookup(&rd.uri(), &["ep", "ep=keeper"]).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Durability: `kill -9` right after the last acknowledged registration of a burst
/// (with more requests still in flight); after a restart on the same data directory
/// every acknowledged registration is there.
#[test]
fn kill_9_keeps_every_acknowledged_registration() {
    use corium::{Client, Code, ContentFormat};

    let dir = scratch("kill9");
    let data = dir.join("data");
    let mut rd = Rd::start(&data, "127.0.0.1:0");
    let base = rd.uri();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    const BURST: usize = 120;
    const IN_FLIGHT_AT_KILL: usize = 20;
    let acked: Vec<String> = runtime.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(Client::bind("127.0.0.1:0".parse().unwrap()).await.unwrap());
        }
        let post = |c: &Client, i: usize| {
            let c = c.clone();
            let uri = format!("{base}/rd?ep=burst-{i}&lt=3600&et=burst");
            async move {
                let r = c
                    .request(Code::POST, &uri)
                    .payload(format!("</s/{i}>;rt=\"burst\""))
                    .content_format(ContentFormat::LINK_FORMAT)
                    .timeout(Duration::from_secs(20))
                    .send()
                    .await;
                (i, r)
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..BURST {
            tasks.spawn(post(&clients[i % clients.len()], i));
        }
        let mut acked = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (i, r) = done.unwrap();
            let r = r.unwrap_or_else(|e| panic!("registration {i}: {e}"));
            assert_eq!(r.code, Code::CREATED, "registration {i}");
            acked.push(format!("burst-{i}"));
        }
        // More registrations on their way when the process dies: they may or may not
        // have been acknowledged; none is checked.
        for i in BURST..BURST + IN_FLIGHT_AT_KILL {
            let (c, uri) = (
                clients[i % clients.len()].clone(),
                format!("{base}/rd?ep=late-{i}"),
            );
            tokio::spawn(async move {
                let _ = c.request(Code::POST, &uri).payload("</late>").send().await;
            });
        }
        tokio::task::yield_now().await;
        acked
    });
    rd.proc.kill_9();
    drop(runtime);
    assert_eq!(acked.len(), BURST);

    let rd = Rd::start(&data, "127.0.0.1:0");
    let endpoints = lookup(&rd.uri(), &["ep", "et=burst", "count=100000"]);
    let found: std::collections::HashSet<String> = endpoints
        .iter()
        .filter_map(|l| l.split(";ep=").nth(1))
        .filter_map(|rest| rest.split(';').next())
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|ep| !found.contains(*ep)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but lost after kill -9: {missing:?}"
    );
    assert_eq!(found.len(), BURST);
    assert_eq!(
        lookup(&rd.uri(), &["rt=burst", "count=100000"]).len(),
        BURST
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `aiocoap-rd` as the directory: `corium rd register` discovers its registration
/// resource, keeps the registration alive, and `corium rd lookup` finds the links.
#[test]
fn interop_aiocoap_rd_is_the_directory() {
    let dir = scratch("aiocoap-rd");
    let py = aiocoap_python();
    let aiocoap_rd = py.parent().expect("venv bin").join("aiocoap-rd");
    assert!(
        aiocoap_rd.is_file(),
        "aiocoap-rd not found at {}: {}",
        aiocoap_rd.display(),
        common::INSTALL_HINT
    );
    let port = free_port();
    let _server = Proc::spawn(
        "aiocoap-rd",
        Command::new(&aiocoap_rd).args(["--bind", &format!("127.0.0.1:{port}")]),
    );
    let uri = format!("coap://127.0.0.1:{port}");
    // Wait until it answers discovery.
    let deadline = Instant::now() + LIMIT;
    loop {
        let out = corium(&[
            "get",
            &format!("{uri}/.well-known/core?rt=core.rd"),
            "--timeout",
            "2",
        ]);
        if out.code() == Some(0) && out.stdout.contains("core.rd") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "aiocoap-rd did not come up\n{}",
            out.describe()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let links = write_links(
        &dir,
        "</sensors/temp>;rt=\"temperature\";ct=0,\n</t>;anchor=\"/sensors/temp\";rel=\"alternate\"\n",
    );
    let mut registrant = Proc::spawn(
        "corium rd register",
        Command::new(corium_bin()).args([
            "rd",
            "register",
            &uri,
            "--ep",
            "corium-ep",
            "--lt",
            "3",
            "--links-from",
            links.to_str().unwrap(),
            "--timeout",
            "5",
        ]),
    );
    let registered = registrant.wait_line("the registration", |l| l.starts_with("registered "));
    assert!(
        registered.starts_with(&format!("registered ep=corium-ep at {uri}/")),
        "{registered}"
    );
    registrant.wait_line("an update", |l| l.starts_with("updated "));
    let found = lookup(&uri, &["rt=temperature"]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("<coap://127.0.0.1:"), "{found:?}");
    assert!(found[0].contains("/sensors/temp>"), "{found:?}");
    let eps = lookup(&uri, &["ep", "ep=corium-ep"]);
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert_eq!(registrant.terminate(), Some(0));
    registrant.wait_line("the removal", |l| l.starts_with("removed "));
    assert!(lookup(&uri, &["ep", "ep=corium-ep"]).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// An aiocoap endpoint that does simple registration (RFC 9176 §5.1) from the socket
/// that serves its `/.well-known/core`.
const AIOCOAP_SIMPLE_REGISTRANT: &str = r#"
import asyncio, sys
import aiocoap
import aiocoap.resource as resource

class Temp(resource.Resource):
    rt = "temperature"
    async def render_get(self, request):
        return aiocoap.Message(payload=b"21.5")

async def main():
    rd = sys.argv[1]
    site = resource.Site()
    site.add_resource([".well-known", "core"],
                      resource.WKCResource(site.get_resources_as_linkheader, impl_info=None))
    site.add_resource(["sensors", "temp"], Temp())
    ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", 0), transports=["udp6"])
    request = aiocoap.Message(code=aiocoap.POST, uri=f"coap://{rd}/.well-known/rd?ep=aiocoap-simple&lt=600")
    response = await asyncio.wait_for(ctx.request(request).response, 20)
    print(response.code, flush=True)
    await ctx.shutdown()

asyncio.run(main())
"#;

/// `coap-client-notls`, `aiocoap-client` and an aiocoap endpoint (simple
/// registration) register with `corium rd`; lookups with libcoap, aiocoap and corium
/// see them.
#[test]
fn interop_peers_register_with_corium_rd() {
    let dir = scratch("peers");
    let rd = Rd::start(&dir.join("data"), "127.0.0.1:0");
    let uri = rd.uri();

    let libcoap = coap_client(&[
        "-m",
        "post",
        "-t",
        "40",
        "-e",
        "</lc>;rt=\"libcoap\"",
        &format!("{uri}/rd?ep=libcoap-ep&lt=600"),
    ]);
    assert!(libcoap.stderr.is_empty(), "{}", libcoap.describe());
    let aio = aiocoap_client_run(&[
        "-m",
        "POST",
        "--content-format",
        "application/link-format",
        "--payload",
        "</aio>;rt=\"aiocoap\"",
        &format!("{uri}/rd?ep=aiocoap-ep&et=client"),
    ]);
    aio.assert_success();
    assert!(aio.stderr.contains("/rd/2"), "{}", aio.describe());

    let script = dir.join("simple.py");
    std::fs::write(&script, AIOCOAP_SIMPLE_REGISTRANT).unwrap();
    let mut cmd = Command::new(aiocoap_python());
    cmd.arg(&script).arg(rd.addr.to_string());
    let simple = run(&mut cmd, LIMIT);
    simple.assert_success();
    assert_eq!(
        simple.stdout.trim(),
        "2.04 Changed",
        "{}",
        simple.describe()
    );

    let resources = lookup(&uri, &[]);
    assert_eq!(resources.len(), 4, "{resources:?}");
    let with = |suffix: &str| resources.iter().filter(|l| l.ends_with(suffix)).count();
    assert_eq!(with("/lc>;rt=\"libcoap\""), 1, "{resources:?}");
    assert_eq!(with("/aio>;rt=\"aiocoap\""), 1, "{resources:?}");
    assert_eq!(
        with("/sensors/temp>;rt=\"temperature\""),
        1,
        "{resources:?}"
    );
    assert_eq!(with("/.well-known/core>;ct=\"40\""), 1, "{resources:?}");
    let eps = lookup(&uri, &["ep"]);
    assert_eq!(eps.len(), 3, "{eps:?}");
    assert!(
        eps[2].starts_with("</rd/3>;ep=aiocoap-simple;base=\"coap://127.0.0.1:"),
        "{eps:?}"
    );

    // The peers' clients use the lookup interface too.
    let libcoap_lookup = coap_client(&[&format!("{uri}/rd-lookup/res?rt=aio*")]);
    assert!(
        libcoap_lookup
            .stdout
            .trim_end()
            .ends_with("/aio>;rt=\"aiocoap\""),
        "{}",
        libcoap_lookup.describe()
    );
    let aio_lookup = aiocoap_client_run(&[&format!("{uri}/rd-lookup/ep?et=client")]);
    aio_lookup.assert_success();
    assert!(
        aio_lookup
            .stdout
            .starts_with("</rd/2>;ep=aiocoap-ep;et=client;base="),
        "{}",
        aio_lookup.describe()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--max-registrations N`: the directory holds N registrations and answers the next
/// one 5.03 (RFC 9176 §8 lets a directory bound what it stores).
#[test]
fn registration_limit_is_configurable() {
    let dir = scratch("limit");
    let rd = Rd::start_with(
        &dir.join("data"),
        "127.0.0.1:0",
        &["--max-registrations", "1"],
    );
    let register = |ep: &str| {
        corium(&[
            "rd",
            "register",
            &rd.uri(),
            "--ep",
            ep,
            "--once",
            "--timeout",
            "10",
        ])
    };
    register("first").assert_success();
    let second = register("second");
    second.assert_code(1);
    assert!(second.stderr.contains("5.03"), "{}", second.describe());
    let zero = corium(&["rd", "--max-registrations", "0"]);
    zero.assert_code(2);
    assert_eq!(zero.stderr.lines().count(), 1, "{}", zero.describe());
}
