//! CoAP over DTLS (`coaps://`, RFC 7252 §9) interop in PSK mode
//! (TLS_PSK_WITH_AES_128_CCM_8, RFC 7925 §4.2), both directions, with libcoap 4.3.1:
//!
//! * `coap-client-openssl` / `coap-client-gnutls -u ID -k KEY coaps://…` →
//!   `corium serve --psk ID:KEY`: GET and a block-wise GET (RFC 7959);
//! * `corium get coaps://… --psk-identity ID --psk-key KEY` → `coap-server-openssl` /
//!   `coap-server-gnutls -k KEY` (DTLS on the `-p` port + 1);
//! * a wrong key gives `corium get` a clear DTLS error, not a CoAP timeout;
//! * certificate mode (ECDHE_ECDSA, RFC 7925 §4.4): `corium get --ca` → `corium serve
//!   --cert/--key`, and `corium get --ca --cert --key` → `coap-server-openssl` (PKI).
//!
//! A missing peer fails the test (see `scripts/install-peers.sh`). No timing asserts:
//! limits are hang guards only.

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{coap_tls_client, corium, corium_bin, LibcoapTlsServer};

const IDENTITY: &str = "corium-interop";
const KEY: &str = "secretPSK";
const TEST_BODY: &str = "Code: 1 (GET)";

/// `corium serve --bind 127.0.0.1:0 --dtls-bind 127.0.0.1:0 --psk ID:KEY`, the
/// coaps address learned from its `corium serving coaps on ADDR` line.
struct CoriumDtlsServer {
    child: Child,
    coaps: SocketAddr,
}

impl CoriumDtlsServer {
    fn start() -> CoriumDtlsServer {
        Self::start_with(&["--psk", &format!("{IDENTITY}:{KEY}")])
    }

    /// With `args` giving the credentials.
    fn start_with(args: &[&str]) -> CoriumDtlsServer {
        let mut all = vec!["--bind", "127.0.0.1:0", "--dtls-bind", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::start_args(&all)
    }

    /// `corium serve ARGS` (the binds included).
    fn start_args(args: &[&str]) -> CoriumDtlsServer {
        let mut child = Command::new(corium_bin())
            .arg("serve")
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn corium serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let coaps = loop {
            // A hang guard, not a timing assertion.
            let line = match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => line,
                Err(e) => {
                    let _ = child.kill();
                    panic!("no `corium serving coaps on` line ({e}); stdout: {seen:?}");
                }
            };
            if let Some(rest) = line.strip_prefix("corium serving coaps on ") {
                let first = rest.split(", ").next().unwrap_or_default();
                break first
                    .parse::<SocketAddr>()
                    .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
            }
            seen.push(line);
        };
        assert_ne!(coaps.port(), 0, "port 0 not resolved");
        assert!(
            seen.iter()
                .any(|l| l.starts_with("corium serving coap on ")),
            "the coap line comes first: {seen:?}"
        );
        CoriumDtlsServer { child, coaps }
    }

    fn uri(&self, path: &str) -> String {
        format!("coaps://{}{path}", self.coaps)
    }
}

impl Drop for CoriumDtlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn libcoap_client_against_corium(build: &str) {
    let server = CoriumDtlsServer::start();
    let get = coap_tls_client(build, &["-u", IDENTITY, "-k", KEY, &server.uri("/test")]);
    get.assert_success()
        .assert_libcoap_payload_contains(TEST_BODY);

    // RFC 7959: the plugtest's /large comes in blocks, each its own DTLS record.
    let large = coap_tls_client(build, &["-u", IDENTITY, "-k", KEY, &server.uri("/large")]);
    large.assert_success();
    assert!(
        large.libcoap_payload().len() > 1024,
        "block-wise body: {}",
        large.describe()
    );
}

/// `coap-client-openssl` → `corium serve --psk` (RFC 7252 §9.1.3.1).
#[test]
fn openssl_client_psk() {
    libcoap_client_against_corium("openssl");
}

/// `coap-client-gnutls` → `corium serve --psk`.
#[test]
fn gnutls_client_psk() {
    libcoap_client_against_corium("gnutls");
}

fn corium_against_libcoap_server(build: &str) {
    let server = LibcoapTlsServer::start(build, &["-k", KEY]);
    let uri = format!("coaps://127.0.0.1:{}/", server.tls.port());
    let get = corium(&["get", &uri, "--psk-identity", IDENTITY, "--psk-key", KEY]);
    get.assert_success()
        .assert_stdout_contains("This is a test server made with libcoap");

    // The same key in 0x-hex form.
    let hex: String = KEY.bytes().map(|b| format!("{b:02x}")).collect();
    let get = corium(&[
        "get",
        &uri,
        "--psk-identity",
        IDENTITY,
        "--psk-key",
        &format!("0x{hex}"),
    ]);
    get.assert_success()
        .assert_stdout_contains("This is a test server made with libcoap");

    // A wrong key: a clear DTLS error, not a CoAP timeout.
    let wrong = corium(&[
        "get",
        &uri,
        "--psk-identity",
        IDENTITY,
        "--psk-key",
        "not-the-key",
    ]);
    assert_ne!(wrong.code(), Some(0), "{}", wrong.describe());
    wrong.assert_stderr_contains("DTLS");
}

/// `corium get` → `coap-server-openssl -k KEY` (DTLS on PORT+1).
#[test]
fn corium_client_openssl_server_psk() {
    corium_against_libcoap_server("openssl");
}

/// `corium get` → `coap-server-gnutls -k KEY`.
#[test]
fn corium_client_gnutls_server_psk() {
    corium_against_libcoap_server("gnutls");
}

/// A UDP port that was free a moment ago on 127.0.0.1.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind a UDP socket")
}

/// `corium serve --secure-bind ADDR` moves DTLS there too (not only TLS), `--dtls-bind`
/// still overrides it for DTLS, and `--secure-bind` without TLS or DTLS credentials is a
/// usage error.
#[test]
fn secure_bind_moves_dtls() {
    let psk = format!("{IDENTITY}:{KEY}");
    let secure = format!("127.0.0.1:{}", free_udp_port());
    let server = CoriumDtlsServer::start_args(&[
        "--bind",
        "127.0.0.1:0",
        "--secure-bind",
        &secure,
        "--psk",
        &psk,
    ]);
    assert_eq!(server.coaps.to_string(), secure);
    let get = corium(&[
        "get",
        &server.uri("/test"),
        "--psk-identity",
        IDENTITY,
        "--psk-key",
        KEY,
    ]);
    get.assert_success().assert_stdout_contains(TEST_BODY);
    drop(server);

    let explicit = format!("127.0.0.1:{}", free_udp_port());
    let server = CoriumDtlsServer::start_args(&[
        "--bind",
        "127.0.0.1:0",
        "--secure-bind",
        "127.0.0.1:0",
        "--dtls-bind",
        &explicit,
        "--psk",
        &psk,
    ]);
    assert_eq!(server.coaps.to_string(), explicit);
    drop(server);

    let out = Command::new(corium_bin())
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--secure-bind",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run corium serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--secure-bind"), "{stderr}");
}

/// The `RESULT` line (the last of stdout) of a `corium bench` run, as key/value pairs.
fn bench_result(out: &common::Outcome) -> std::collections::HashMap<String, f64> {
    let last = out.stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("RESULT "), "{}", out.describe());
    last.split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(f64::NAN)))
        .collect()
}

/// `corium bench coaps://` (PSK) in its three modes against `corium serve --psk`, and GETs
/// against `coap-server-openssl -k KEY`: every request answered, handshakes completed.
#[test]
fn bench_coaps() {
    let psk = ["--psk-identity", IDENTITY, "--psk-key", KEY];
    let short = ["--duration", "0.5", "--warmup", "0.1"];
    let server = CoriumDtlsServer::start();
    let uri = server.uri("/test");
    let get = corium(&[&["bench", &uri][..], &psk, &short, &["--window", "4"]].concat());
    get.assert_success();
    let r = bench_result(&get);
    assert!(
        r["ok"] > 0.0 && r["ok"] == r["sent"] && r["lost"] == 0.0,
        "{}",
        get.describe()
    );

    let hs = corium(
        &[
            &["bench", &uri, "--handshakes"][..],
            &psk,
            &short,
            &["--window", "4"],
        ]
        .concat(),
    );
    hs.assert_success();
    let r = bench_result(&hs);
    assert!(r["ok"] > 0.0 && r["failed"] == 0.0, "{}", hs.describe());

    let idle = corium(&[&["bench", &uri, "--idle-sessions", "20"][..], &psk, &short].concat());
    idle.assert_success();
    let r = bench_result(&idle);
    assert_eq!(
        (r["sessions"], r["failed"]),
        (20.0, 0.0),
        "{}",
        idle.describe()
    );

    let wrong = corium(&[
        "bench",
        &uri,
        "--psk-identity",
        IDENTITY,
        "--psk-key",
        "wrong",
        "--duration",
        "0.5",
    ]);
    assert_ne!(wrong.code(), Some(0), "{}", wrong.describe());
    wrong.assert_stderr_contains("DTLS");
    drop(server);

    let libcoap = LibcoapTlsServer::start("openssl", &["-k", KEY]);
    let uri = format!("coaps://127.0.0.1:{}/time", libcoap.tls.port());
    let get = corium(&[&["bench", &uri][..], &psk, &short, &["--window", "4"]].concat());
    get.assert_success();
    let r = bench_result(&get);
    assert!(r["ok"] > 0.0 && r["lost"] == 0.0, "{}", get.describe());
}

/// `coaps://` without credentials is a usage error naming the options.
#[test]
fn coaps_without_credentials() {
    let out = corium(&["get", "coaps://127.0.0.1:5684/"]);
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    out.assert_stderr_contains("--psk-identity");
}

/// A CA, a server certificate for `localhost`/127.0.0.1 and a client certificate (all
/// ECDSA P-256, as DTLS certificate mode needs), as PEM files in a fresh directory.
fn pki(tag: &str) -> std::path::PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = std::env::temp_dir().join(format!("corium-dtls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    for (name, sans) in [
        (
            "server",
            vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
        ),
        ("client", vec!["client.example".to_owned()]),
    ] {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(sans)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
    dir
}

/// Certificate mode (RFC 7925 §4.4) through the CLI: `corium get --ca` against
/// `corium serve --cert/--key`, and a wrong trust anchor is a DTLS error.
#[test]
fn corium_certificate_mode() {
    let dir = pki("cli");
    let arg = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let server =
        CoriumDtlsServer::start_with(&["--cert", &arg("server.pem"), "--key", &arg("server.key")]);
    let uri = format!("coaps://127.0.0.1:{}/test", server.coaps.port());
    let get = corium(&["get", &uri, "--ca", &arg("ca.pem")]);
    get.assert_success().assert_stdout_contains(TEST_BODY);

    let wrong = corium(&["get", &uri, "--ca", &arg("client.pem")]);
    assert_ne!(wrong.code(), Some(0), "{}", wrong.describe());
    wrong.assert_stderr_contains("DTLS");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Certificate mode: `corium get --ca --cert --key` → `coap-server-openssl` in PKI mode
/// (DTLS on PORT+1).
#[test]
fn corium_client_openssl_server_certificate() {
    let dir = pki("openssl");
    let arg = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let server = LibcoapTlsServer::start(
        "openssl",
        &[
            "-c",
            &arg("server.pem"),
            "-j",
            &arg("server.key"),
            "-C",
            &arg("ca.pem"),
            // libcoap 4.3.1 checks client certificates against -R (root CAs).
            "-R",
            &arg("ca.pem"),
        ],
    );
    let uri = format!("coaps://127.0.0.1:{}/", server.tls.port());
    let get = corium(&[
        "get",
        &uri,
        "--ca",
        &arg("ca.pem"),
        "--cert",
        &arg("client.pem"),
        "--key",
        &arg("client.key"),
    ]);
    get.assert_success()
        .assert_stdout_contains("This is a test server made with libcoap");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `corium serve --dtls-max-sessions 1` (RFC 7925 §11 asks servers to bound their
/// sessions): while one idle session holds the only slot, a second client's handshake is
/// refused (its ClientHello dropped, so `corium get` gives up); once that session ends
/// with close_notify, the same request gets through. Bad limit values and limits
/// without DTLS credentials are one-line usage errors.
#[test]
fn dtls_session_limit_from_the_command_line() {
    let psk = format!("{IDENTITY}:{KEY}");
    let server = CoriumDtlsServer::start_with(&["--psk", &psk, "--dtls-max-sessions", "1"]);
    let uri = server.uri("/test");
    // `common::corium` adds `--timeout 10`; the refused request should give up sooner.
    let get = || {
        let mut cmd = Command::new(corium_bin());
        cmd.args(["get", &uri, "--psk-identity", IDENTITY, "--psk-key", KEY])
            .args(["--timeout", "2"])
            .env_remove("RUST_LOG");
        common::run(&mut cmd, Duration::from_secs(30))
    };

    // One session, held idle for 15 s (the refused request below gives up after 2 s),
    // then closed with close_notify.
    let mut holder = Command::new(corium_bin())
        .args([
            "bench",
            &uri,
            "--psk-identity",
            IDENTITY,
            "--psk-key",
            KEY,
            "--idle-sessions",
            "1",
            "--window",
            "1",
            "--duration",
            "15",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn corium bench");
    let mut lines = BufReader::new(holder.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok);
    let established = lines.by_ref().find(|l| l.starts_with("ESTABLISHED "));
    assert_eq!(
        established.as_deref(),
        Some("ESTABLISHED n=1 failed=0"),
        "the first session gets the only slot"
    );

    let refused = get();
    assert_ne!(refused.code(), Some(0), "{}", refused.describe());
    assert!(
        !refused.stdout.contains(TEST_BODY),
        "no answer beyond the session limit: {}",
        refused.describe()
    );

    let result = lines.find(|l| l.starts_with("RESULT "));
    let _ = holder.wait();
    assert_eq!(result.as_deref(), Some("RESULT sessions=1 failed=0"));
    get().assert_success().assert_stdout_contains(TEST_BODY);
    drop(server);

    for args in [
        &["serve", "--bind", "127.0.0.1:0", "--dtls-max-sessions", "0"][..],
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--dtls-idle-timeout",
            "soon",
        ],
        &["serve", "--bind", "127.0.0.1:0", "--dtls-max-sessions", "5"],
    ] {
        let out = common::run(
            Command::new(corium_bin()).args(args).stdin(Stdio::null()),
            Duration::from_secs(30),
        );
        assert_eq!(out.code(), Some(2), "{args:?}: {}", out.describe());
        assert_eq!(
            out.stderr.lines().count(),
            1,
            "{args:?}: {}",
            out.describe()
        );
        assert!(
            out.stderr.contains("--dtls-"),
            "{args:?}: {}",
            out.describe()
        );
    }
}
