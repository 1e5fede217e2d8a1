//! `--credentials FILE` (OSCORE, RFC 8613) end to end through the `corium` binary:
//! `corium get/post/observe --credentials` against `corium serve --credentials`.

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{corium, corium_bin, ChildGuard};

/// The Master Secret and Salt of RFC 8613 Appendix C.1.1.
const SECRET: &str = "0102030405060708090a0b0c0d0e0f10";
const SALT: &str = "9e7ca92223786340";

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corium-oscore-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// One `[[oscore]]` table.
fn table(uri: &[&str], sender: &str, recipient: &str, secret: &str) -> String {
    let uris: Vec<String> = uri.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[[oscore]]\nuri = [{}]\nsender_id = {sender:?}\nrecipient_id = {recipient:?}\n\
         master_secret = {secret:?}\nmaster_salt = {SALT:?}\n\n",
        uris.join(", ")
    )
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).expect("write a credentials file");
    path.to_owned()
}

/// The server's credentials: OSCORE required on the plugtest's `/test`, `/large`,
/// `/large-post` and `/obs`; the client's Sender ID is empty, the server's 0x01.
fn server_credentials(dir: &Path) -> PathBuf {
    write(
        &dir.join("server.toml"),
        &table(
            &["/test", "/large", "/large-post", "coap://any/obs"],
            "01",
            "",
            SECRET,
        ),
    )
}

/// The mirrored client credentials for a server at `addr`, with `secret`.
fn client_credentials(dir: &Path, addr: SocketAddr, secret: &str) -> PathBuf {
    write(
        &dir.join("client.toml"),
        &table(&[&format!("coap://{addr}/*")], "", "01", secret),
    )
}

/// `corium serve --bind 127.0.0.1:0 --credentials FILE`.
struct Server {
    addr: SocketAddr,
    _guard: ChildGuard,
    log: PathBuf,
}

impl Server {
    fn start(credentials: &Path, port: u16) -> Server {
        Server::try_start(credentials, port).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start(credentials: &Path, port: u16) -> Result<Server, String> {
        let log = credentials.with_extension("log");
        let err = std::fs::File::create(&log).expect("create the server log");
        let mut child = Command::new(corium_bin())
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--credentials",
            ])
            .arg(credentials)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start corium serve");
        let out = child.stdout.take().expect("stdout");
        let guard = ChildGuard::new(child, "corium serve --credentials");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        const PREFIX: &str = "corium serving coap on ";
        let line = loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.starts_with(PREFIX) => break line,
                Ok(_) => {}
                Err(e) => {
                    return Err(format!(
                        "corium serve did not start ({e:?}):\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    ))
                }
            }
        };
        let addr = line[PREFIX.len()..]
            .split(", ")
            .next()
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| format!("no address in {line:?}"))?;
        Ok(Server {
            addr,
            _guard: guard,
            log,
        })
    }

    fn uri(&self, path: &str) -> String {
        format!("coap://{}{path}", self.addr)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn creds(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[test]
fn get_post_and_unprotected_access() {
    let dir = scratch("basic");
    let server = Server::start(&server_credentials(&dir), 0);
    let client = creds(&client_credentials(&dir, server.addr, SECRET));

    corium(&["get", "--credentials", &client, &server.uri("/test")])
        .assert_success()
        .assert_stdout_contains("Code: 1 (GET)")
        .assert_stderr_contains("2.05 Content");
    // The resource requires OSCORE: without credentials, 4.01.
    corium(&["get", &server.uri("/test")])
        .assert_code(1)
        .assert_stderr_contains("4.01 Unauthorized: OSCORE required");
    // A resource the file does not name stays open.
    corium(&["get", &server.uri("/seg1/seg2/seg3")]).assert_success();

    // Outer Block2 of the protected response; inner Block1 of the request.
    let large = corium(&["get", "--credentials", &client, &server.uri("/large")]);
    large.assert_success();
    assert_eq!(large.stdout.len(), 1280, "{}", large.describe());
    let body: String = (0..3000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    corium(&[
        "post",
        "--credentials",
        &client,
        "-e",
        &body,
        &server.uri("/large-post"),
    ])
    .assert_success()
    .assert_stdout_is(&body.to_ascii_uppercase())
    .assert_stderr_contains("2.04 Changed");

    // The client's sequence numbers are kept next to its file (Appendix B.1.1); the
    // server used none of its own yet (its responses reuse the request nonces).
    let seq = std::fs::read_to_string(dir.join("client.toml.seq")).expect("client .seq");
    assert!(seq.contains("s=,r=01,c=- "), "{seq}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn observe_with_credentials() {
    let dir = scratch("observe");
    let server = Server::start(&server_credentials(&dir), 0);
    let client = creds(&client_credentials(&dir, server.addr, SECRET));
    let out = corium(&[
        "observe",
        "--credentials",
        &client,
        "--count",
        "2",
        &server.uri("/obs"),
    ]);
    out.assert_success();
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("2.05 Content, Observe:"))
        .collect();
    assert_eq!(lines.len(), 2, "{}\n{}", out.describe(), server.log());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wrong_key_fails_with_an_oscore_error() {
    let dir = scratch("wrong");
    let server = Server::start(&server_credentials(&dir), 0);
    let client = creds(&client_credentials(
        &dir,
        server.addr,
        "ff02030405060708090a0b0c0d0e0f10",
    ));
    corium(&["get", "--credentials", &client, &server.uri("/test")])
        .assert_code(4)
        .assert_stderr_contains(
            "OSCORE: the server answered 4.00 Bad Request without OSCORE protection",
        )
        .assert_stdout_is("");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Appendix B.1: after a restart the server resumes its sequence numbers from
/// `FILE.seq` and re-establishes the replay window with an Echo exchange, which the
/// client answers; the client's own numbers continue from its `.seq` across runs.
#[test]
fn server_restart_uses_echo() {
    let dir = scratch("restart");
    let server_file = server_credentials(&dir);
    let server = Server::start(&server_file, 0);
    let addr = server.addr;
    let client = creds(&client_credentials(&dir, addr, SECRET));
    corium(&["get", "--credentials", &client, &server.uri("/test")]).assert_success();
    drop(server);
    let server = (0..20)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            Server::try_start(&server_file, addr.port()).ok()
        })
        .expect("restart on the same port");
    let seq = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    // Before the restart the server used none of its own sequence numbers.
    assert!(
        seq("server.toml.seq").contains("s=01,r=,c=- 0\n"),
        "{}",
        seq("server.toml.seq")
    );
    for _ in 0..2 {
        corium(&["get", "--credentials", &client, &server.uri("/test")])
            .assert_success()
            .assert_stdout_contains("Code: 1 (GET)");
    }
    // The Echo challenge (a protected 4.01 with a Partial IV of its own, B.1.2) took the
    // server's first sequence number, and with it a persisted bound.
    assert!(
        seq("server.toml.seq").contains(&format!("s=01,r=,c=- {}\n", corium::PERSIST_STEP)),
        "{}\n{}",
        seq("server.toml.seq"),
        server.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_credentials_files_are_usage_errors() {
    let dir = scratch("bad");
    let missing = creds(&dir.join("nope.toml"));
    corium(&["get", "--credentials", &missing, "coap://127.0.0.1:9/x"])
        .assert_code(2)
        .assert_stderr_contains("cannot read credentials file");
    let bad = creds(&write(
        &dir.join("bad.toml"),
        "[[oscore]]\nuri = \"coap://h/*\"\nsender_id = \"zz\"\nrecipient_id = \"\"\nmaster_secret = \"00\"\n",
    ));
    corium(&["get", "--credentials", &bad, "coap://127.0.0.1:9/x"])
        .assert_code(2)
        .assert_stderr_contains("[[oscore]] #1: `sender_id` is not hex");
    let out = Command::new(corium_bin())
        .args(["serve", "--bind", "127.0.0.1:0", "--credentials", &bad])
        .output()
        .expect("run corium serve");
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A URI no pattern of the file matches goes unprotected, with a warning.
#[test]
fn unmatched_uri_warns() {
    let dir = scratch("unmatched");
    let server = Server::start(&server_credentials(&dir), 0);
    let client = creds(&write(
        &dir.join("other.toml"),
        &table(&["coap://192.0.2.1/*"], "", "01", SECRET),
    ));
    corium(&[
        "get",
        "--credentials",
        &client,
        &server.uri("/seg1/seg2/seg3"),
    ])
    .assert_success()
    .assert_stderr_contains("warning: no [[oscore]] uri in")
    .assert_stderr_contains("the request is not protected");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `corium serve --credentials` authorizes per context: each `[[oscore]]` table reaches
/// only the protected resources its own `uri` patterns name (a protected 4.03
/// Forbidden elsewhere, verified by the client), while unnamed resources stay open.
#[test]
fn each_context_reaches_only_its_own_resources() {
    let dir = scratch("authz");
    // Client 0x0a may use /test; client 0x0b may use /large.
    let server_file = write(
        &dir.join("server.toml"),
        &format!(
            "{}{}",
            table(&["/test"], "01", "0a", SECRET),
            table(&["/large"], "01", "0b", "f0e0d0c0b0a090807060504030201000")
        ),
    );
    let server = Server::start(&server_file, 0);
    let client_a = write(
        &dir.join("a.toml"),
        &table(&[&format!("coap://{}/*", server.addr)], "0a", "01", SECRET),
    );
    let a = creds(&client_a);
    corium(&["get", "--credentials", &a, &server.uri("/test")])
        .assert_success()
        .assert_stderr_contains("2.05 Content");
    corium(&["get", "--credentials", &a, &server.uri("/large")])
        .assert_code(1)
        .assert_stderr_contains("4.03 Forbidden");
    // A resource no table names: open, protected or not.
    corium(&["get", "--credentials", &a, &server.uri("/seg1/seg2/seg3")]).assert_success();
    let _ = std::fs::remove_dir_all(&dir);
}
