//! OSCORE (RFC 8613) interop with aiocoap 0.4.17 in both directions, with the same
//! security context on both sides:
//!
//! - `aiocoap-client --credentials FILE.json` (and aiocoap's client API for Observe)
//!   against `corium serve --credentials FILE.toml`;
//! - `corium get/post/observe --credentials FILE.toml` against
//!   `interop/aiocoap_oscore_server.py` (aiocoap's `OscoreSiteWrapper`).
//!
//! Besides plain requests this covers block-wise in both directions (aiocoap fragments
//! before protecting, inner Block1/Block2, §4.1.3.4.1; Corium's server fragments the
//! protected response, outer Block2, §4.1.3.4.2), Observe (§4.1.3.5), the §8.2 errors,
//! and replay-window recovery with Echo after a restart of either server (Appendix
//! B.1.2). A missing peer fails the test (see `interop/README.md`).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    aiocoap_client_run, aiocoap_large_body, aiocoap_python, corium, corium_bin, free_port,
    repo_root, run, Outcome, ReadyProcess, AIOCOAP_LIMIT_SECS,
};

/// The Master Secret and Salt of RFC 8613 Appendix C.1.1.
const SECRET: &str = "0102030405060708090a0b0c0d0e0f10";
const SALT: &str = "9e7ca92223786340";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "corium-interop-oscore-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// A Corium credentials file with one context.
fn corium_credentials(path: &Path, uris: &[&str], sender: &str, recipient: &str, secret: &str) {
    let uris: Vec<String> = uris.iter().map(|u| format!("{u:?}")).collect();
    let text = format!(
        "[[oscore]]\nuri = [{}]\nsender_id = {sender:?}\nrecipient_id = {recipient:?}\n\
         master_secret = {secret:?}\nmaster_salt = {SALT:?}\naead = \"AES-CCM-16-64-128\"\n",
        uris.join(", ")
    );
    std::fs::write(path, text).expect("write the Corium credentials");
}

/// The same context for aiocoap: a credentials map `json` naming the directory
/// `basedir` with its `settings.json` (see `crates/corium-cli/src/credentials.rs`).
fn aiocoap_credentials(json: &Path, uri: &str, basedir: &Path, sender: &str, recipient: &str) {
    std::fs::create_dir_all(basedir).expect("create the aiocoap context directory");
    let settings = format!(
        "{{\"sender-id_hex\": {sender:?}, \"recipient-id_hex\": {recipient:?}, \
         \"secret_hex\": {SECRET:?}, \"salt_hex\": {SALT:?}, \"algorithm\": \"AES-CCM-16-64-128\"}}"
    );
    std::fs::write(basedir.join("settings.json"), settings).expect("write settings.json");
    let map = format!(
        "{{{uri:?}: {{\"oscore\": {{\"basedir\": {:?}}}}}}}",
        format!("{}/", basedir.display())
    );
    std::fs::write(json, map).expect("write the aiocoap credentials map");
}

/// `corium serve --bind 127.0.0.1:PORT --credentials FILE`.
fn corium_server(credentials: &Path, port: u16) -> Result<(ReadyProcess, SocketAddr), String> {
    let mut cmd = Command::new(corium_bin());
    cmd.args([
        "serve",
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--credentials",
    ])
    .arg(credentials)
    .env_remove("RUST_LOG");
    const PREFIX: &str = "corium serving coap on ";
    let (process, line) = ReadyProcess::spawn(cmd, credentials.with_extension("log"), |l| {
        l.starts_with(PREFIX)
    })?;
    let addr = line[PREFIX.len()..]
        .split(", ")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .ok_or_else(|| format!("no address in {line:?}"))?;
    Ok((process, addr))
}

/// `interop/aiocoap_oscore_server.py --port PORT --credentials FILE.json`.
fn aiocoap_server(credentials: &Path, port: u16) -> Result<ReadyProcess, String> {
    let script = repo_root().join("interop/aiocoap_oscore_server.py");
    assert!(script.is_file(), "{} is missing", script.display());
    let mut cmd = Command::new(aiocoap_python());
    cmd.arg(&script)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--obs-interval", "0.5", "--credentials"])
        .arg(credentials)
        .env("PYTHONUNBUFFERED", "1");
    ReadyProcess::spawn(cmd, credentials.with_extension("log"), |l| {
        l.trim() == "READY"
    })
    .map(|(p, _)| p)
}

/// Retries a server start (a lost race for a free port, or a port still held).
fn retry<T>(mut start: impl FnMut() -> Result<T, String>) -> T {
    let mut last = String::new();
    for _ in 0..5 {
        match start() {
            Ok(t) => return t,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("server did not start: {last}");
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------
// aiocoap as the client, Corium as the server
// ---------------------------------------------------------------------------------------

/// `corium serve` requiring OSCORE on the plugtest's `/test`, `/large`, `/large-post`,
/// `/obs`, and aiocoap's credentials for it (aiocoap's Sender ID empty, Corium's 0x01).
struct CoriumSide {
    dir: PathBuf,
    server_toml: PathBuf,
    client_json: PathBuf,
    process: ReadyProcess,
    addr: SocketAddr,
}

impl CoriumSide {
    fn start(name: &str) -> CoriumSide {
        let dir = scratch(name);
        let server_toml = dir.join("server.toml");
        corium_credentials(
            &server_toml,
            &["/test", "/large", "/large-post", "/obs"],
            "01",
            "",
            SECRET,
        );
        let (process, addr) = retry(|| corium_server(&server_toml, 0));
        let client_json = dir.join("client.json");
        aiocoap_credentials(
            &client_json,
            &format!("coap://{addr}/*"),
            &dir.join("aiocoap-client-ctx"),
            "",
            "01",
        );
        CoriumSide {
            dir,
            server_toml,
            client_json,
            process,
            addr,
        }
    }

    fn uri(&self, path: &str) -> String {
        format!("coap://{}{path}", self.addr)
    }

    fn aiocoap(&self, args: &[&str]) -> Outcome {
        let mut all = vec!["--credentials".to_owned(), s(&self.client_json)];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        aiocoap_client_run(&all)
    }
}

#[test]
fn aiocoap_client_against_corium_server() {
    let side = CoriumSide::start("a-basic");
    let out = side.aiocoap(&[&side.uri("/test")]);
    out.assert_success().assert_stdout_contains("Code: 1 (GET)");

    // Corium's endpoint cuts the protected response into outer Block2 blocks; aiocoap
    // reassembles them below OSCORE.
    let out = side.aiocoap(&[&side.uri("/large")]);
    out.assert_success();
    assert_eq!(out.stdout_bytes.len(), 1280, "{}", out.describe());

    // aiocoap fragments the request before protecting it (inner Block1): Corium
    // reassembles it after verifying each block.
    let body: String = (0..3000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let out = side.aiocoap(&["-m", "POST", "--payload", &body, &side.uri("/large-post")]);
    out.assert_success();
    assert_eq!(
        out.stdout.trim_end(),
        body.to_ascii_uppercase(),
        "{}\n{}",
        out.describe(),
        side.process.log()
    );

    // Without credentials: 4.01 from Corium.
    aiocoap_client_run(&[side.uri("/test")])
        .assert_code(1)
        .assert_stderr_contains("4.01 Unauthorized");
    let _ = std::fs::remove_dir_all(&side.dir);
}

/// aiocoap-client 0.4.17's `--observe` shows only the first response of a protected
/// observation (it reads notifications through a deprecated callback that the OSCORE
/// transport does not feed; aiocoap's own OSCORE server shows the same), so aiocoap's
/// client API observes here, as an application would.
#[test]
fn aiocoap_observes_corium_server() {
    let side = CoriumSide::start("a-observe");
    const OBSERVE: &str = r#"
import asyncio, json, sys
import aiocoap
async def main(uri, creds, count):
    ctx = await aiocoap.Context.create_client_context()
    ctx.client_credentials.load_from_dict(json.load(open(creds)))
    request = ctx.request(aiocoap.Message(code=aiocoap.GET, uri=uri, observe=0))
    first = await request.response
    print("response", first.code, first.opt.observe is not None, first.payload.decode(), flush=True)
    seen = 0
    async for n in request.observation:
        print("notification", n.code, n.payload.decode(), flush=True)
        seen += 1
        if seen >= count:
            break
    await ctx.shutdown()
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"#;
    let mut cmd = Command::new("timeout");
    cmd.arg(AIOCOAP_LIMIT_SECS.to_string())
        .arg(aiocoap_python())
        .args(["-c", OBSERVE, &side.uri("/obs"), &s(&side.client_json), "2"]);
    let out = run(&mut cmd, Duration::from_secs(AIOCOAP_LIMIT_SECS + 10));
    out.assert_success();
    assert!(
        out.stdout.contains("response 2.05 Content True"),
        "{}\n{}",
        out.describe(),
        side.process.log()
    );
    assert_eq!(
        out.stdout.matches("notification 2.05 Content").count(),
        2,
        "{}\n{}",
        out.describe(),
        side.process.log()
    );
    let _ = std::fs::remove_dir_all(&side.dir);
}

/// Appendix B.1.2: a restarted `corium serve` challenges aiocoap's first request with
/// a protected 4.01 + Echo; aiocoap repeats it with the Echo value and gets the answer.
#[test]
fn corium_server_restart_echo_with_aiocoap() {
    let side = CoriumSide::start("a-restart");
    side.aiocoap(&[&side.uri("/test")]).assert_success();
    let CoriumSide {
        dir,
        server_toml,
        client_json,
        process,
        addr,
    } = side;
    drop(process);
    let (process, _) = retry(|| corium_server(&server_toml, addr.port()));
    let side = CoriumSide {
        dir,
        server_toml,
        client_json,
        process,
        addr,
    };
    let out = side.aiocoap(&[&side.uri("/test")]);
    out.assert_success().assert_stdout_contains("Code: 1 (GET)");
    // The challenge carried the server's first own Partial IV, which it persisted.
    let seq = std::fs::read_to_string(side.dir.join("server.toml.seq")).unwrap_or_default();
    assert!(
        seq.contains(&format!("s=01,r=,c=- {}\n", corium::PERSIST_STEP)),
        "{seq}\n{}",
        side.process.log()
    );
    let _ = std::fs::remove_dir_all(&side.dir);
}

// ---------------------------------------------------------------------------------------
// Corium as the client, aiocoap as the server
// ---------------------------------------------------------------------------------------

/// `interop/aiocoap_oscore_server.py` with one context (its Sender ID 0x01, Corium's
/// empty), and Corium's credentials for it.
struct AiocoapSide {
    dir: PathBuf,
    server_json: PathBuf,
    client_toml: PathBuf,
    process: Option<ReadyProcess>,
    port: u16,
}

impl AiocoapSide {
    fn start(name: &str, client_secret: &str) -> AiocoapSide {
        let dir = scratch(name);
        let server_json = dir.join("server.json");
        let (process, port) = retry(|| {
            let port = free_port();
            aiocoap_credentials(
                &server_json,
                &format!("coap://127.0.0.1:{port}/*"),
                &dir.join("aiocoap-server-ctx"),
                "01",
                "",
            );
            aiocoap_server(&server_json, port).map(|p| (p, port))
        });
        let client_toml = dir.join("client.toml");
        corium_credentials(
            &client_toml,
            &[&format!("coap://127.0.0.1:{port}/*")],
            "",
            "01",
            client_secret,
        );
        AiocoapSide {
            dir,
            server_json,
            client_toml,
            process: Some(process),
            port,
        }
    }

    fn uri(&self, path: &str) -> String {
        format!("coap://127.0.0.1:{}{path}", self.port)
    }

    fn corium(&self, args: &[&str]) -> Outcome {
        let mut all = vec![
            args[0].to_owned(),
            "--credentials".to_owned(),
            s(&self.client_toml),
        ];
        all.extend(args[1..].iter().map(|a| (*a).to_owned()));
        corium(&all)
    }

    fn log(&self) -> String {
        self.process
            .as_ref()
            .map(ReadyProcess::log)
            .unwrap_or_default()
    }
}

#[test]
fn corium_client_against_aiocoap_server() {
    let side = AiocoapSide::start("b-basic", SECRET);
    side.corium(&["get", &side.uri("/oscore/hello")])
        .assert_success()
        .assert_stdout_is("Hello World!")
        .assert_stderr_contains("2.05 Content");

    // aiocoap fragments the response before protecting it (inner Block2): Corium asks
    // for the following blocks with new protected requests.
    let large = String::from_utf8(aiocoap_large_body()).expect("text");
    side.corium(&["get", &side.uri("/oscore/large")])
        .assert_success()
        .assert_stdout_is(&large);

    // A body over one block goes in inner Block1 blocks, which aiocoap reassembles
    // (it does not reassemble outer Block1 of a protected request).
    let body: String = (0..3000).map(|i| (b'A' + (i % 26) as u8) as char).collect();
    side.corium(&["post", "-e", &body, &side.uri("/oscore/echo")])
        .assert_success()
        .assert_stdout_is(&body)
        .assert_stderr_contains("2.04 Changed");

    // Unprotected: aiocoap's resource answers 4.01 itself.
    corium(&["get", &side.uri("/oscore/hello")])
        .assert_code(1)
        .assert_stderr_contains("4.01 Unauthorized: OSCORE required");
    corium(&["get", &side.uri("/public")]).assert_stdout_is("public");
    let _ = std::fs::remove_dir_all(&side.dir);
}

#[test]
fn corium_observes_aiocoap_server() {
    let side = AiocoapSide::start("b-observe", SECRET);
    let out = side.corium(&["observe", "--count", "3", &side.uri("/oscore/obs")]);
    out.assert_success();
    let lines = out
        .stderr
        .lines()
        .filter(|l| l.contains("2.05 Content, Observe:"))
        .count();
    assert_eq!(lines, 3, "{}\n{}", out.describe(), side.log());
    let values: Vec<u64> = out
        .stdout
        .lines()
        .map(|l| l.trim().parse().expect("a counter value"))
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "notifications in order: {values:?}"
    );
    let _ = std::fs::remove_dir_all(&side.dir);
}

#[test]
fn corium_with_the_wrong_key_gets_an_oscore_error() {
    let side = AiocoapSide::start("b-wrong", "ff02030405060708090a0b0c0d0e0f10");
    side.corium(&["get", &side.uri("/oscore/hello")])
        .assert_code(4)
        .assert_stderr_contains(
            "without OSCORE protection (\"Decryption failed\", unauthenticated)",
        )
        .assert_stdout_is("");
    let _ = std::fs::remove_dir_all(&side.dir);
}

/// Appendix B.1.2 the other way: aiocoap killed (its replay window is then "unknown")
/// and restarted challenges Corium with a protected 4.01 + Echo, which Corium answers.
#[test]
fn aiocoap_server_restart_echo_with_corium() {
    let mut side = AiocoapSide::start("b-restart", SECRET);
    side.corium(&["get", &side.uri("/oscore/hello")])
        .assert_success()
        .assert_stdout_is("Hello World!");
    // SIGKILL: an abnormal end, as a power loss would be.
    side.process = None;
    let state = std::fs::read_to_string(side.dir.join("aiocoap-server-ctx/sequence.json"))
        .unwrap_or_default();
    assert!(state.contains("unknown"), "aiocoap's replay state: {state}");
    let process = retry(|| aiocoap_server(&side.server_json, side.port));
    side.process = Some(process);
    // The first request is challenged and sent again with the Echo value; the second
    // goes through at once.
    for expected in [2, 1] {
        let out = side.corium(&["get", "-v", &side.uri("/oscore/hello")]);
        out.assert_success().assert_stdout_is("Hello World!");
        let sent = out
            .stderr
            .lines()
            .filter(|l| l.starts_with('→') && l.contains("CON POST"))
            .count();
        assert_eq!(sent, expected, "{}\n{}", out.describe(), side.log());
    }
    let _ = std::fs::remove_dir_all(&side.dir);
}

/// RFC 9175 §2.4 item 1 under OSCORE with aiocoap as the client: `corium serve --fresh`
/// answers aiocoap's protected PUT with a protected 4.01 carrying an inner Echo value;
/// aiocoap repeats the request with it (a second protected request), which runs, as the
/// GET afterwards shows.
#[test]
fn aiocoap_put_answers_the_freshness_echo_under_oscore() {
    let dir = scratch("fresh");
    let server_toml = dir.join("server.toml");
    corium_credentials(&server_toml, &["/large-update"], "01", "", SECRET);
    let (process, addr) = retry(|| {
        let mut cmd = Command::new(corium_bin());
        cmd.args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "-v",
            "--fresh",
            "/large-update",
        ])
        .arg("--credentials")
        .arg(&server_toml)
        .env_remove("RUST_LOG");
        const PREFIX: &str = "corium serving coap on ";
        let (process, line) = ReadyProcess::spawn(cmd, server_toml.with_extension("log"), |l| {
            l.starts_with(PREFIX)
        })?;
        let addr: SocketAddr = line[PREFIX.len()..]
            .split(", ")
            .next()
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| format!("no address in {line:?}"))?;
        Ok((process, addr))
    });
    let client_json = dir.join("client.json");
    aiocoap_credentials(
        &client_json,
        &format!("coap://{addr}/*"),
        &dir.join("aiocoap-client-ctx"),
        "",
        "01",
    );
    let uri = format!("coap://{addr}/large-update");
    let json = s(&client_json);
    aiocoap_client_run(&[
        "--credentials",
        &json,
        "-m",
        "PUT",
        "--payload",
        "fresh-aio",
        &uri,
    ])
    .assert_success();
    // The -v dissection shows the outer messages: the PUT took two protected requests.
    let log = process.log();
    let requests = log
        .lines()
        .filter(|l| l.contains("POST") && l.contains("OSCORE") && !l.contains("2.04"))
        .count();
    assert!(requests >= 2, "one challenged, one repeated:\n{log}");
    let out = aiocoap_client_run(&["--credentials", &json, &uri]);
    out.assert_success();
    assert_eq!(out.stdout.trim_end(), "fresh-aio", "{}", out.describe());
    let _ = std::fs::remove_dir_all(&dir);
}
