//! CoAP over TLS and WebSockets (RFC 8323 `coaps+tcp`, `coap+ws`, `coaps+ws`)
//! interop, both directions, with the real peers:
//!
//! * `coap-client-openssl` / `coap-client-gnutls` → `corium serve` over
//!   coaps+tcp: GET, Block2, Block1, a wrong trust anchor, and mutual TLS (the
//!   server with `--ca`: a client certificate is required);
//! * `corium` → `coap-server-openssl` / `coap-server-gnutls` in PKI mode
//!   (coaps+tcp on the `-p` port + 1), with and without client certificates, and
//!   a wrong `--ca`;
//! * `aiocoap-client` → `corium serve` over coap+ws, coaps+ws and coaps+tcp, and
//!   `corium` → `interop/aiocoap_secure_server.py` (aiocoap's `tlsserver` and
//!   `ws` transports) over the same three, mutual TLS included;
//! * bad input on raw sockets: a WebSocket text frame and a non-zero Len nibble
//!   (RFC 8323 §4.2), upgrades to a wrong path or without the `coap`
//!   subprotocol (§4.1), and TLS/WebSocket handshakes that never finish while
//!   other clients are served.
//!
//! Every test makes its own PKI with rcgen (a CA; a server certificate for
//! `localhost` with SANs DNS:localhost and IP:127.0.0.1; a client certificate;
//! an unrelated CA with a certificate of its own) and starts its own servers on
//! loopback ports. Raw socket reads have a hang guard that fails the test, never
//! a timing assertion. A missing peer fails the test with the install hint
//! (`scripts/install-peers.sh`); see `interop/README.md` ("TLS and WebSockets")
//! for the peer quirks met here.

mod common;

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use common::{
    aiocoap_client_run, aiocoap_client_trusting, aiocoap_large_body, coap_client, coap_ping,
    coap_tls_client, corium, corium_bin, parallel, run, AiocoapSecureServer, CoriumSecureServer,
    LibcoapTlsServer, Outcome,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A fresh temporary directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corium-tlsws-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// The test PKI, written as PEM files into a temporary directory:
///
/// | file | what |
/// |---|---|
/// | `ca.pem` | the CA (trust anchor of both sides) |
/// | `server.pem`, `server.key` | CN localhost, SAN DNS:localhost + IP:127.0.0.1, serverAuth, issued by the CA |
/// | `client.pem`, `client.key` | CN corium-interop-client, clientAuth, issued by the CA |
/// | `other-ca.pem` | an unrelated CA (a wrong trust anchor) |
/// | `stranger.pem`, `stranger.key` | a client certificate issued by the unrelated CA |
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = temp_dir(&format!("pki-{tag}"));
        let ca = Self::ca(&dir, "ca", "Corium interop test CA");
        Self::leaf(
            &dir,
            "server",
            &ca,
            "localhost",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        Self::leaf(
            &dir,
            "client",
            &ca,
            "corium-interop-client",
            &["client.example"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let other = Self::ca(&dir, "other-ca", "Unrelated test CA");
        Self::leaf(
            &dir,
            "stranger",
            &other,
            "stranger",
            &["stranger.example"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Pki { dir }
    }

    /// A self-signed CA written to `NAME.pem`; returns its issuer.
    fn ca(dir: &Path, name: &str, cn: &str) -> Issuer<'static, KeyPair> {
        let key = KeyPair::generate().expect("generate a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign the CA");
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write the CA");
        Issuer::new(params, key)
    }

    /// An end-entity certificate and its key (PKCS#8 PEM), issued by `issuer`.
    fn leaf(
        dir: &Path,
        name: &str,
        issuer: &Issuer<'static, KeyPair>,
        cn: &str,
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) {
        let key = KeyPair::generate().expect("generate a key");
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, issuer).expect("issue a certificate");
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write a certificate");
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write a key");
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The path of `file` as a command-line argument.
    fn arg(&self, file: &str) -> String {
        self.path(file).to_string_lossy().into_owned()
    }

    /// `corium serve` with every listener and this PKI's server certificate.
    fn corium_server(&self, require_client_cert: bool, verbose: bool) -> CoriumSecureServer {
        let ca = self.path("ca.pem");
        CoriumSecureServer::start(
            &self.path("server.pem"),
            &self.path("server.key"),
            require_client_cert.then_some(ca.as_path()),
            verbose,
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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

/// `corium get ARGS... -o FILE URI`: the outcome and the bytes written.
fn corium_get_bytes(args: &[&str], uri: &str, dir: &Path, name: &str) -> (Outcome, Vec<u8>) {
    let file = dir.join(name);
    let _ = std::fs::remove_file(&file);
    let file_arg = file.to_string_lossy().into_owned();
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", &file_arg, uri]);
    let out = corium(&all);
    let bytes = std::fs::read(&file).unwrap_or_default();
    (out, bytes)
}

/// Asserts that `out` is a failed `corium` run: a non-zero exit, nothing on stdout.
fn assert_corium_failed(out: &Outcome) {
    assert!(
        !out.status.success(),
        "expected a failure\n{}",
        out.describe()
    );
    assert!(
        out.stdout.trim().is_empty(),
        "a failed request printed a body\n{}",
        out.describe()
    );
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

/// Runs closures returning outcomes in parallel (python start-up dominates the
/// run time of aiocoap-client).
fn all_parallel<'a>(jobs: Vec<Box<dyn FnOnce() -> Outcome + Send + 'a>>) -> Vec<Outcome> {
    parallel(jobs)
}

/// The body of `corium serve`'s `/large` over UDP, fetched with `corium get -o`.
fn corium_udp_large(server: &CoriumSecureServer, dir: &Path) -> Vec<u8> {
    let (out, bytes) = corium_get_bytes(
        &[],
        &server.url("coap", "127.0.0.1", "/large"),
        dir,
        "udp-large",
    );
    out.assert_success();
    assert!(
        bytes.len() > 1024,
        "/large is not block-wise\n{}",
        out.describe()
    );
    bytes
}

/// The payload text the libcoap plugtest `/test` answer of `corium serve` contains.
const TEST_BODY: &str = "Code: 1 (GET)";

// ---------------------------------------------------------------------------
// libcoap clients → corium serve, over coaps+tcp
// ---------------------------------------------------------------------------

/// `coap-client-openssl -C ca.pem coaps+tcp://localhost:PORT/test`: TLS with ALPN
/// `coap` (RFC 8323 §9.1), the CSM exchange, and the GET; libcoap sends
/// Uri-Host `localhost`. `/large` over TLS with `-b 512` is block-wise (Block2
/// early negotiation, RFC 7959 §2.4), and without `-b` it is byte for byte what
/// UDP gives (libcoap and corium clients). (Whether a stream needs blocks at all
/// depends on the Max-Message-Size of corium's CSM, RFC 8323 §5.3.1: not asserted.)
#[test]
fn libcoap_openssl_tls_get_test_and_large_match_udp() {
    let pki = Pki::new("openssl-get");
    let server = pki.corium_server(false, false);
    let dir = temp_dir("openssl-get");
    let ca = pki.arg("ca.pem");
    let test = coap_tls_client(
        "openssl",
        &[
            "-C",
            &ca,
            "-v",
            "6",
            &server.url("coaps+tcp", "localhost", "/test"),
        ],
    );
    let req = test.assert_libcoap_trace(&["c:GET", "Uri-Host:localhost", "Uri-Path:test"]);
    let resp = test.assert_libcoap_trace(&["c:2.05", "Content-Format:text/plain"]);
    assert!(req < resp, "{}", test.describe());
    test.assert_libcoap_payload_contains(TEST_BODY);

    let traced = coap_tls_client(
        "openssl",
        &[
            "-C",
            &ca,
            "-b",
            "512",
            "-v",
            "6",
            &server.url("coaps+tcp", "localhost", "/large"),
        ],
    );
    traced.assert_libcoap_trace(&["c:GET", "Block2:0/_/512"]);
    traced.assert_libcoap_trace(&["c:2.05", "Block2:0/M/512", "Size2:"]);
    traced.assert_libcoap_trace(&["c:2.05", "/_/512"]);
    // Quietly (with -v libcoap mixes its log into stdout): TLS vs UDP.
    let tls = coap_tls_client(
        "openssl",
        &["-C", &ca, &server.url("coaps+tcp", "localhost", "/large")],
    );
    let udp = coap_client(&[&server.url("coap", "127.0.0.1", "/large")]);
    let udp_bytes = corium_udp_large(&server, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        tls.libcoap_payload(),
        String::from_utf8_lossy(&udp_bytes).trim_end_matches(['\n', '\r']),
        "libcoap over TLS vs corium over UDP\n{}",
        tls.describe()
    );
    assert_eq!(
        tls.libcoap_payload(),
        udp.libcoap_payload(),
        "libcoap over TLS vs libcoap over UDP\n{}\n{}",
        tls.describe(),
        udp.describe()
    );
}

/// `-m put -b 1024 -f FILE` of 20 000 bytes to /large-update over TLS: twenty
/// Block1 blocks of 1024 (RFC 7959 §2.5, with Size1); read back equal over TLS
/// (libcoap), over coaps+tcp with `corium get --ca`, and over UDP.
#[test]
fn libcoap_openssl_tls_block1_put_then_read_back() {
    let pki = Pki::new("openssl-put");
    let server = pki.corium_server(false, false);
    let dir = temp_dir("openssl-put");
    let ca = pki.arg("ca.pem");
    let body = printable_bytes(20_000, 0x7153_0001);
    let file = dir.join("body.txt");
    std::fs::write(&file, &body).expect("write the body");
    let uri = server.url("coaps+tcp", "localhost", "/large-update");
    let put = coap_tls_client(
        "openssl",
        &[
            "-C",
            &ca,
            "-m",
            "put",
            "-b",
            "1024",
            "-t",
            "0",
            "-f",
            &file.to_string_lossy(),
            "-v",
            "6",
            &uri,
        ],
    );
    put.assert_libcoap_trace(&["c:PUT", "Block1:0/M/1024", "Size1:20000"]);
    put.assert_libcoap_trace(&["c:2.04", "Block1:19/_/1024"]);

    let back = coap_tls_client("openssl", &["-C", &ca, &uri]);
    let (tls_out, tls_bytes) = corium_get_bytes(&["--ca", &ca], &uri, &dir, "back-tls");
    let (udp_out, udp_bytes) = corium_get_bytes(
        &[],
        &server.url("coap", "127.0.0.1", "/large-update"),
        &dir,
        "back-udp",
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        back.libcoap_payload().as_bytes() == body,
        "libcoap read back {} bytes over TLS, differ\n{}",
        back.libcoap_payload().len(),
        put.describe()
    );
    tls_out.assert_success();
    assert!(
        tls_bytes == body,
        "corium read back {} bytes over TLS, differ\n{}",
        tls_bytes.len(),
        tls_out.describe()
    );
    udp_out.assert_success();
    assert!(
        udp_bytes == body,
        "corium read back {} bytes over UDP, differ\n{}",
        udp_bytes.len(),
        udp_out.describe()
    );
}

/// The GnuTLS build of libcoap's client: GET /test and /large (equal to UDP) over
/// coaps+tcp.
#[test]
fn libcoap_gnutls_tls_get_test_and_large() {
    let pki = Pki::new("gnutls-get");
    let server = pki.corium_server(false, false);
    let dir = temp_dir("gnutls-get");
    let ca = pki.arg("ca.pem");
    let test = coap_tls_client(
        "gnutls",
        &[
            "-C",
            &ca,
            "-v",
            "6",
            &server.url("coaps+tcp", "localhost", "/test"),
        ],
    );
    test.assert_libcoap_trace(&["c:GET", "Uri-Path:test"]);
    test.assert_libcoap_trace(&["c:2.05"]);
    test.assert_libcoap_payload_contains(TEST_BODY);
    let large = coap_tls_client(
        "gnutls",
        &["-C", &ca, &server.url("coaps+tcp", "localhost", "/large")],
    );
    let udp_bytes = corium_udp_large(&server, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        large.libcoap_payload(),
        String::from_utf8_lossy(&udp_bytes).trim_end_matches(['\n', '\r']),
        "libcoap-gnutls over TLS vs corium over UDP\n{}",
        large.describe()
    );
}

/// A libcoap client trusting an unrelated CA refuses corium's certificate: no
/// request goes out (libcoap exits 0 anyway; its TLS warnings are on stdout),
/// and the server goes on serving a client that trusts the right CA.
#[test]
fn libcoap_clients_with_a_wrong_trust_anchor_are_refused() {
    let pki = Pki::new("libcoap-wrong-ca");
    let mut server = pki.corium_server(false, false);
    let uri = server.url("coaps+tcp", "localhost", "/test");
    let other = pki.arg("other-ca.pem");
    for build in ["openssl", "gnutls"] {
        let out = coap_tls_client(build, &["-C", &other, &uri]);
        out.assert_libcoap_payload_lacks(TEST_BODY);
        assert!(
            out.stdout.contains("TLS") || out.stderr.contains("TLS"),
            "coap-client-{build}: no TLS complaint\n{}",
            out.describe()
        );
    }
    server.assert_running();
    coap_tls_client("openssl", &["-C", &pki.arg("ca.pem"), &uri])
        .assert_libcoap_payload_contains(TEST_BODY);
}

/// `corium serve --ca ca.pem` requires a client certificate issued by that CA
/// (mutual TLS). libcoap clients (both builds) with `-c client.pem -j client.key`
/// get their answer; without a certificate, or with one from an unrelated CA,
/// the handshake fails: nothing is printed, and corium's log (`-v`) shows the
/// failed connection setup and no request. The same with corium's own client
/// (`--cert/--key`) over coaps+tcp and coaps+ws.
#[test]
fn mutual_tls_requires_a_client_certificate() {
    let pki = Pki::new("mutual");
    let mut server = pki.corium_server(true, true);
    let guard = Duration::from_secs(10);
    let uri = server.url("coaps+tcp", "localhost", "/test");
    let (ca, cert, key) = (
        pki.arg("ca.pem"),
        pki.arg("client.pem"),
        pki.arg("client.key"),
    );

    // Refused first, while the log holds nothing else.
    for build in ["openssl", "gnutls"] {
        let out = coap_tls_client(build, &["-C", &ca, &uri]);
        out.assert_libcoap_payload_lacks(TEST_BODY);
    }
    let stranger = coap_tls_client(
        "openssl",
        &[
            "-C",
            &ca,
            "-c",
            &pki.arg("stranger.pem"),
            "-j",
            &pki.arg("stranger.key"),
            &uri,
        ],
    );
    stranger.assert_libcoap_payload_lacks(TEST_BODY);
    assert!(
        server.wait_for_log("connection setup failed", guard),
        "corium did not log the refused TLS connections\n{}",
        server.log()
    );
    let log = server.log();
    assert!(
        !log.contains("GET token") && !log.contains("2.05 Content"),
        "a request got through without a valid client certificate\n{log}"
    );

    // Accepted with the client certificate.
    for build in ["openssl", "gnutls"] {
        coap_tls_client(build, &["-C", &ca, "-c", &cert, "-j", &key, &uri])
            .assert_libcoap_payload_contains(TEST_BODY);
    }
    assert!(
        server.wait_for_log("2.05 Content", guard),
        "no 2.05 in corium's log\n{}",
        server.log()
    );

    // corium's own client over both TLS schemes.
    for scheme in ["coaps+tcp", "coaps+ws"] {
        let url = server.url(scheme, "localhost", "/test");
        corium(&["get", "--ca", &ca, "--cert", &cert, "--key", &key, &url])
            .assert_success()
            .assert_stdout_contains(TEST_BODY);
        let refused = corium(&["get", "--ca", &ca, &url]);
        assert_corium_failed(&refused);
        eprintln!(
            "{scheme} without a client certificate: {}",
            refused.stderr.trim()
        );
    }
    server.assert_running();
}

// ---------------------------------------------------------------------------
// corium → libcoap servers, over coaps+tcp
// ---------------------------------------------------------------------------

/// `coap-server-openssl -c server.pem -j server.key -C ca.pem`: libcoap 4.3.1 in
/// PKI mode listens for coaps+tcp on its `-p` port + 1 and, with `-C`, requires
/// a client certificate from that CA. corium with `--ca --cert --key`: GET `/`,
/// `/example_data` (1500 bytes, equal to UDP), and a 20 000-byte PUT read back
/// equal. (How the upload goes — one message or blocks — is corium's choice for
/// libcoap's CSM, Max-Message-Size 8388864 + Block-Wise-Transfer: not asserted.)
/// Without a client certificate: a failure (non-zero exit, no body).
#[test]
fn corium_tls_to_libcoap_openssl_server_with_client_certificate() {
    let pki = Pki::new("libcoap-openssl-server");
    let server = LibcoapTlsServer::start(
        "openssl",
        &[
            "-c",
            &pki.arg("server.pem"),
            "-j",
            &pki.arg("server.key"),
            "-C",
            &pki.arg("ca.pem"),
        ],
    );
    let dir = temp_dir("libcoap-openssl-server");
    let (ca, cert, key) = (
        pki.arg("ca.pem"),
        pki.arg("client.pem"),
        pki.arg("client.key"),
    );
    let auth = [
        "--ca",
        ca.as_str(),
        "--cert",
        cert.as_str(),
        "--key",
        key.as_str(),
    ];
    let root = corium(
        &[
            &["get", "-v"][..],
            &auth,
            &[&server.tls_url("localhost", "/")],
        ]
        .concat(),
    );
    root.assert_success()
        .assert_stdout_contains("This is a test server made with libcoap")
        .assert_stderr_contains("2.05 Content");

    let uri = server.tls_url("localhost", "/example_data");
    let (tls_out, tls_bytes) = corium_get_bytes(&auth, &uri, &dir, "tls.bin");
    let (udp_out, udp_bytes) = corium_get_bytes(&[], &server.uri("/example_data"), &dir, "udp.bin");
    tls_out.assert_success();
    udp_out.assert_success();
    assert_eq!(tls_bytes.len(), 1500, "{}", tls_out.describe());
    assert!(tls_bytes == udp_bytes, "TLS and UDP bodies differ");

    let body = printable_bytes(20_000, 0x7153_0200);
    let file = dir.join("upload.txt");
    std::fs::write(&file, &body).expect("write the body");
    let file_arg = file.to_string_lossy().into_owned();
    let put = corium(
        &[
            &["put", "-v", "-t", "text/plain", "-f", &file_arg][..],
            &auth,
            &[&uri],
        ]
        .concat(),
    );
    put.assert_success().assert_stderr_contains("2.04 Changed");
    let (back_out, back) = corium_get_bytes(&auth, &uri, &dir, "back.bin");
    back_out.assert_success();
    assert!(
        back == body,
        "read back {} bytes, differ\n{}\n{}",
        back.len(),
        put.describe(),
        back_out.describe()
    );
    let _ = std::fs::remove_dir_all(&dir);

    let refused = corium(&["get", "--ca", &ca, &server.tls_url("localhost", "/")]);
    assert_corium_failed(&refused);
    eprintln!("without a client certificate: {}", refused.stderr.trim());
}

/// The GnuTLS build of libcoap's server, same PKI mode: GET `/` and `/example_data`
/// with a client certificate; refused without one.
#[test]
fn corium_tls_to_libcoap_gnutls_server_with_client_certificate() {
    let pki = Pki::new("libcoap-gnutls-server");
    let server = LibcoapTlsServer::start(
        "gnutls",
        &[
            "-c",
            &pki.arg("server.pem"),
            "-j",
            &pki.arg("server.key"),
            "-C",
            &pki.arg("ca.pem"),
        ],
    );
    let dir = temp_dir("libcoap-gnutls-server");
    let (ca, cert, key) = (
        pki.arg("ca.pem"),
        pki.arg("client.pem"),
        pki.arg("client.key"),
    );
    let auth = [
        "--ca",
        ca.as_str(),
        "--cert",
        cert.as_str(),
        "--key",
        key.as_str(),
    ];
    corium(&[&["get"][..], &auth, &[&server.tls_url("localhost", "/")]].concat())
        .assert_success()
        .assert_stdout_contains("This is a test server made with libcoap");
    let (out, bytes) = corium_get_bytes(
        &auth,
        &server.tls_url("localhost", "/example_data"),
        &dir,
        "data.bin",
    );
    let _ = std::fs::remove_dir_all(&dir);
    out.assert_success();
    assert_eq!(bytes.len(), 1500, "{}", out.describe());
    let refused = corium(&["get", "--ca", &ca, &server.tls_url("localhost", "/")]);
    assert_corium_failed(&refused);
}

/// `coap-server-openssl ... -n` (no client certificate checking): `corium get --ca
/// ca.pem` without a client certificate works for `localhost` and for
/// `127.0.0.1` (the IP SAN); `--ca other-ca.pem` fails with one error line that
/// names the certificate problem and exit status 4; `--insecure` works; and a
/// secure scheme without `--ca` is a usage error (exit 2) naming `--ca`.
#[test]
fn corium_tls_to_libcoap_server_trust_anchors() {
    let pki = Pki::new("libcoap-trust");
    let server = LibcoapTlsServer::start(
        "openssl",
        &[
            "-c",
            &pki.arg("server.pem"),
            "-j",
            &pki.arg("server.key"),
            "-n",
        ],
    );
    let ca = pki.arg("ca.pem");
    for host in ["localhost", "127.0.0.1"] {
        corium(&["get", "--ca", &ca, &server.tls_url(host, "/")])
            .assert_success()
            .assert_stdout_contains("This is a test server made with libcoap");
    }
    let wrong = corium(&[
        "get",
        "--ca",
        &pki.arg("other-ca.pem"),
        &server.tls_url("localhost", "/"),
    ]);
    assert_corium_failed(&wrong);
    wrong.assert_code(4);
    let lines: Vec<&str> = wrong
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one error line\n{}",
        wrong.describe()
    );
    assert!(
        lines[0].starts_with("error:") && lines[0].to_lowercase().contains("certificate"),
        "the error line does not name the certificate\n{}",
        wrong.describe()
    );
    corium(&["get", "--insecure", &server.tls_url("localhost", "/")])
        .assert_success()
        .assert_stdout_contains("This is a test server made with libcoap");
    corium(&["get", &server.tls_url("localhost", "/")])
        .assert_code(2)
        .assert_stderr_contains("--ca");
}

// ---------------------------------------------------------------------------
// aiocoap-client → corium serve, over coap+ws, coaps+ws and coaps+tcp
// ---------------------------------------------------------------------------

/// `aiocoap-client coap+ws://...`: GET /test (`-vv` names the scheme) and /large,
/// byte for byte what `corium get` gives over UDP (block-wise there).
#[test]
fn aiocoap_client_ws_get_test_and_large() {
    let pki = Pki::new("aiocoap-ws");
    let server = pki.corium_server(false, false);
    let dir = temp_dir("aiocoap-ws");
    let test_uri = server.url("coap+ws", "127.0.0.1", "/test");
    let large_uri = server.url("coap+ws", "127.0.0.1", "/large");
    let outs = all_parallel(vec![
        Box::new(|| aiocoap_client_run(&["-vv", &test_uri])),
        Box::new(|| aiocoap_client_run(&[&large_uri])),
    ]);
    let udp_bytes = corium_udp_large(&server, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    outs[0]
        .assert_success()
        .assert_stdout_contains(TEST_BODY)
        .assert_stderr_contains("2.05 Content from coap+ws://");
    outs[1].assert_success();
    assert!(
        outs[1].stdout_bytes == udp_bytes,
        "aiocoap over coap+ws got {} bytes, corium over UDP {}\n{}",
        outs[1].stdout_bytes.len(),
        udp_bytes.len(),
        outs[1].describe()
    );
}

/// `SSL_CERT_FILE=ca.pem aiocoap-client coaps+ws://localhost:...` and
/// `coaps+tcp://localhost:...`: GET /test and /large (equal to UDP). Trusting an
/// unrelated CA instead, aiocoap fails (exit status non-zero) on both.
#[test]
fn aiocoap_client_wss_and_tls_get_test_and_large() {
    let pki = Pki::new("aiocoap-tls");
    let server = pki.corium_server(false, false);
    let dir = temp_dir("aiocoap-tls");
    let (ca, other) = (pki.path("ca.pem"), pki.path("other-ca.pem"));
    let uris: Vec<String> = ["coaps+ws", "coaps+tcp"]
        .iter()
        .flat_map(|s| {
            [
                server.url(s, "localhost", "/test"),
                server.url(s, "localhost", "/large"),
            ]
        })
        .collect();
    let outs = all_parallel(vec![
        Box::new(|| aiocoap_client_trusting(&ca, &["-vv", &uris[0]])),
        Box::new(|| aiocoap_client_trusting(&ca, &[&uris[1]])),
        Box::new(|| aiocoap_client_trusting(&ca, &["-vv", &uris[2]])),
        Box::new(|| aiocoap_client_trusting(&ca, &[&uris[3]])),
        Box::new(|| aiocoap_client_trusting(&other, &[&uris[0]])),
        Box::new(|| aiocoap_client_trusting(&other, &[&uris[2]])),
    ]);
    let udp_bytes = corium_udp_large(&server, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    outs[0]
        .assert_success()
        .assert_stdout_contains(TEST_BODY)
        .assert_stderr_contains("2.05 Content from coaps+ws://");
    outs[2]
        .assert_success()
        .assert_stdout_contains(TEST_BODY)
        .assert_stderr_contains("2.05 Content from coaps+tcp://");
    for out in [&outs[1], &outs[3]] {
        out.assert_success();
        assert!(
            out.stdout_bytes == udp_bytes,
            "aiocoap over TLS got {} bytes, corium over UDP {}\n{}",
            out.stdout_bytes.len(),
            udp_bytes.len(),
            out.describe()
        );
    }
    for out in &outs[4..] {
        assert!(
            !out.status.success(),
            "trusting the wrong CA succeeded\n{}",
            out.describe()
        );
        out.assert_stdout_lacks(TEST_BODY);
    }
}

/// aiocoap-client PUTs 1000 bytes (one message: aiocoap 0.4.17 cannot upload
/// more to a server without BERT over a stream, see interop/README.md) to
/// /large-update over coap+ws and over coaps+ws; each reads back equal.
#[test]
fn aiocoap_client_ws_and_wss_put_read_back() {
    let pki = Pki::new("aiocoap-put");
    let server = pki.corium_server(false, false);
    let dir = temp_dir("aiocoap-put");
    let ca = pki.path("ca.pem");
    for (i, (scheme, host)) in [("coap+ws", "127.0.0.1"), ("coaps+ws", "localhost")]
        .into_iter()
        .enumerate()
    {
        let body = printable_bytes(1000, 0x7153_0010 + i as u32);
        let file = dir.join(format!("body-{i}.txt"));
        std::fs::write(&file, &body).expect("write the body");
        let payload = format!("@{}", file.to_string_lossy());
        let uri = server.url(scheme, host, "/large-update");
        aiocoap_client_trusting(
            &ca,
            &[
                "-vv",
                "-m",
                "PUT",
                "--payload",
                &payload,
                "--content-format",
                "0",
                &uri,
            ],
        )
        .assert_success()
        .assert_stderr_contains(&format!("2.04 Changed from {scheme}://"));
        let get = aiocoap_client_trusting(&ca, &[&uri]);
        get.assert_success();
        assert!(
            get.stdout_bytes == body,
            "{scheme}: read back {} bytes, differ\n{}",
            get.stdout_bytes.len(),
            get.describe()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// corium → interop/aiocoap_secure_server.py
// ---------------------------------------------------------------------------

/// corium against aiocoap's `ws` (coap+ws, and coaps+ws with the TLS context) and
/// `tlsserver` (coaps+tcp) transports, on each scheme: GET /test, /large (equal to
/// aiocoap_server.py's body), a long path and a query, PUT then
/// GET back, and a 20 000-byte PUT read back equal (one message or blocks: corium's
/// choice for aiocoap's CSM, Max-Message-Size 1 MiB + Block-Wise-Transfer; not
/// asserted).
#[test]
fn corium_ws_wss_tls_to_aiocoap_server() {
    let pki = Pki::new("aiocoap-server");
    let server = AiocoapSecureServer::start(&pki.path("server.pem"), &pki.path("server.key"), None);
    let dir = temp_dir("aiocoap-server");
    let ca = pki.arg("ca.pem");
    // /test keeps the last PUT body across schemes (one aiocoap site).
    let mut expected = "Type: test resource".to_owned();
    for (i, (scheme, host)) in [
        ("coap+ws", "127.0.0.1"),
        ("coaps+ws", "localhost"),
        ("coaps+tcp", "localhost"),
    ]
    .into_iter()
    .enumerate()
    {
        let url = |path: &str| server.url(scheme, host, path);
        corium(&["get", "--ca", &ca, &url("/test")])
            .assert_success()
            .assert_stdout_is(&expected);
        let (out, large) = corium_get_bytes(&["--ca", &ca], &url("/large"), &dir, "large");
        out.assert_success();
        assert!(
            large == aiocoap_large_body(),
            "{scheme} /large: {} bytes, differ\n{}\n{}",
            large.len(),
            out.describe(),
            server.log()
        );
        corium(&["get", "--ca", &ca, &url("/seg1/seg2/seg3")])
            .assert_success()
            .assert_stdout_is("seg1/seg2/seg3");
        corium(&["get", "--ca", &ca, &url("/query?a=1&b=2")])
            .assert_success()
            .assert_stdout_is("a=1&b=2");
        let value = format!("value over {scheme}");
        corium(&[
            "put",
            "--ca",
            &ca,
            "-t",
            "text/plain",
            "-e",
            &value,
            &url("/test"),
        ])
        .assert_success()
        .assert_stderr_contains("2.04 Changed");
        corium(&["get", "--ca", &ca, &url("/test")])
            .assert_success()
            .assert_stdout_is(&value);

        let body = printable_bytes(20_000, 0x7153_0100 + i as u32);
        let file = dir.join("upload.txt");
        std::fs::write(&file, &body).expect("write the body");
        let file_arg = file.to_string_lossy().into_owned();
        let test = url("/test");
        let put = corium(&[
            "put",
            "-v",
            "--ca",
            &ca,
            "-t",
            "text/plain",
            "-f",
            &file_arg,
            &test,
        ]);
        put.assert_success().assert_stderr_contains("2.04 Changed");
        let (back_out, back) = corium_get_bytes(&["--ca", &ca], &test, &dir, "back.txt");
        back_out.assert_success();
        assert!(
            back == body,
            "{scheme}: read back {} bytes, differ\n{}\n{}",
            back.len(),
            put.describe(),
            back_out.describe()
        );
        expected = String::from_utf8(body).expect("printable");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `corium observe` over coap+ws and coaps+ws against aiocoap's /obs (a counter
/// notified every second): two reports each.
#[test]
fn corium_observe_aiocoap_over_ws_and_wss() {
    let pki = Pki::new("aiocoap-observe");
    let server = AiocoapSecureServer::start(&pki.path("server.pem"), &pki.path("server.key"), None);
    let ca = pki.arg("ca.pem");
    for (scheme, host) in [("coap+ws", "127.0.0.1"), ("coaps+ws", "localhost")] {
        let out = corium_observe(&[
            "--ca",
            &ca,
            &server.url(scheme, host, "/obs"),
            "--count",
            "2",
        ]);
        out.assert_success();
        let reports = out
            .stderr
            .lines()
            .filter(|l| !l.starts_with(['→', '←']) && l.contains(" 2.05 Content, Observe: "))
            .count();
        assert_eq!(reports, 2, "{scheme}\n{}\n{}", out.describe(), server.log());
        let counts: Vec<u64> = out
            .stdout
            .lines()
            .map(|l| l.trim().parse().expect("a counter value"))
            .collect();
        assert_eq!(counts.len(), 2, "{}", out.describe());
    }
}

/// aiocoap's TLS listeners with a required client certificate (`--client-ca`):
/// corium with `--cert/--key` is served over coaps+tcp and coaps+ws; without a
/// certificate, or with one from an unrelated CA, the request fails.
#[test]
fn corium_mutual_tls_to_aiocoap_server() {
    let pki = Pki::new("aiocoap-mutual");
    let server = AiocoapSecureServer::start(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        Some(&pki.path("ca.pem")),
    );
    let ca = pki.arg("ca.pem");
    for scheme in ["coaps+tcp", "coaps+ws"] {
        let url = server.url(scheme, "localhost", "/test");
        corium(&[
            "get",
            "--ca",
            &ca,
            "--cert",
            &pki.arg("client.pem"),
            "--key",
            &pki.arg("client.key"),
            &url,
        ])
        .assert_success()
        .assert_stdout_contains("Type: test resource");
        assert_corium_failed(&corium(&["get", "--ca", &ca, &url]));
        assert_corium_failed(&corium(&[
            "get",
            "--ca",
            &ca,
            "--cert",
            &pki.arg("stranger.pem"),
            "--key",
            &pki.arg("stranger.key"),
            &url,
        ]));
    }
}

// ---------------------------------------------------------------------------
// Raw sockets → corium serve: WebSocket framing and upgrades, stalled handshakes
// ---------------------------------------------------------------------------

/// Hang guard for raw socket reads: a read that gets nothing for this long fails
/// the test (a correct server answers at once; this is not a timing assertion).
const RAW_LIMIT: Duration = Duration::from_secs(10);

/// The sample key of RFC 6455 §1.3 and its Sec-WebSocket-Accept.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// WebSocket opcodes (RFC 6455 §5.2).
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;

/// CoAP signaling codes (RFC 8323 §5): CSM 7.01, Abort 7.05; 2.05 Content.
const CSM: u8 = 0xe1;
const ABORT: u8 = 0xe5;
const CONTENT: u8 = 0x45;

/// A CoAP message in a WebSocket frame (RFC 8323 §4.2): Len nibble 0, TKL, code,
/// token, options (Uri-Path segments only here), payload.
fn ws_message(code: u8, token: &[u8], path: &[&str]) -> Vec<u8> {
    assert!(token.len() <= 8);
    let mut out = vec![token.len() as u8, code];
    out.extend_from_slice(token);
    let mut last = 0u16;
    for seg in path {
        assert!(seg.len() < 13);
        out.push(((11 - last) as u8) << 4 | seg.len() as u8);
        out.extend_from_slice(seg.as_bytes());
        last = 11;
    }
    out
}

/// A CoAP message received in a binary frame.
#[derive(Debug)]
struct WsCoap {
    code: u8,
    token: Vec<u8>,
    payload: Vec<u8>,
}

/// Decodes a CoAP-over-WebSockets message (RFC 8323 §4.2); panics on malformed input.
fn parse_ws_coap(data: &[u8]) -> WsCoap {
    assert!(data.len() >= 2, "short CoAP message {data:02x?}");
    assert_eq!(
        data[0] >> 4,
        0,
        "non-zero Len nibble from the server: {data:02x?}"
    );
    let tkl = usize::from(data[0] & 0x0f);
    assert!(tkl <= 8 && data.len() >= 2 + tkl, "bad TKL: {data:02x?}");
    let token = data[2..2 + tkl].to_vec();
    let mut rest = &data[2 + tkl..];
    let mut payload = Vec::new();
    while let Some((&first, tail)) = rest.split_first() {
        if first == 0xff {
            payload = tail.to_vec();
            break;
        }
        rest = tail;
        let mut skip_ext = |nibble: u8| -> usize {
            match nibble {
                13 => {
                    let v = usize::from(rest[0]) + 13;
                    rest = &rest[1..];
                    v
                }
                14 => {
                    let v = usize::from(u16::from_be_bytes([rest[0], rest[1]])) + 269;
                    rest = &rest[2..];
                    v
                }
                15 => panic!("option nibble 15 in {data:02x?}"),
                n => usize::from(n),
            }
        };
        let _delta = skip_ext(first >> 4);
        let len = skip_ext(first & 0x0f);
        rest = &rest[len..];
    }
    WsCoap {
        code: data[1],
        token,
        payload,
    }
}

/// The value of header `name` (case-insensitive) in an HTTP response head.
fn http_header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// A raw WebSocket client connection (RFC 6455), no TLS.
struct RawWs {
    stream: TcpStream,
    addr: SocketAddr,
    buf: Vec<u8>,
    closed: bool,
    seen: Vec<(u8, Vec<u8>)>,
}

impl RawWs {
    fn connect(addr: SocketAddr) -> RawWs {
        let stream =
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        stream
            .set_read_timeout(Some(RAW_LIMIT))
            .expect("set_read_timeout");
        stream.set_nodelay(true).expect("set_nodelay");
        RawWs {
            stream,
            addr,
            buf: Vec::new(),
            closed: false,
            seen: Vec::new(),
        }
    }

    /// Reads more bytes into the buffer; `false` at the end of the stream.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.closed = true;
                    return false;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    self.closed = true;
                    return false;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!(
                    "nothing from {} for {RAW_LIMIT:?} (hang guard); frames so far {:?}, pending {:02x?}",
                    self.addr, self.seen, self.buf
                ),
                Err(e) => panic!("reading from {}: {e}", self.addr),
            }
        }
    }

    /// Sends the upgrade request for `path` (offering `protocol`, if any) and
    /// returns the response's status code and head.
    fn upgrade(&mut self, path: &str, protocol: Option<&str>) -> (u16, String) {
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n",
            self.addr
        );
        if let Some(p) = protocol {
            request.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
        }
        request.push_str("\r\n");
        self.stream
            .write_all(request.as_bytes())
            .expect("send the upgrade request");
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                self.fill(),
                "the connection closed before the HTTP response ended: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in {head:?}"));
        (status, head)
    }

    /// A completed upgrade to `/.well-known/coap` with the `coap` subprotocol.
    fn open(addr: SocketAddr) -> RawWs {
        let mut ws = RawWs::connect(addr);
        let (status, head) = ws.upgrade("/.well-known/coap", Some("coap"));
        assert_eq!(status, 101, "{head}");
        assert_eq!(
            http_header(&head, "Sec-WebSocket-Accept").as_deref(),
            Some(WS_ACCEPT),
            "{head}"
        );
        assert_eq!(
            http_header(&head, "Sec-WebSocket-Protocol").as_deref(),
            Some("coap"),
            "{head}"
        );
        ws
    }

    /// Sends one final, masked frame (clients mask, RFC 6455 §5.3).
    fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream
            .write_all(&frame)
            .unwrap_or_else(|e| panic!("sending a frame: {e}"));
    }

    /// The next frame (opcode, payload), or `None` once the server closed the TCP
    /// connection (a Close frame is answered with a Close, RFC 6455 §5.5.1).
    fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((frame, used)) = Self::parse_frame(&self.buf) {
                self.buf.drain(..used);
                self.seen.push(frame.clone());
                if frame.0 == OP_CLOSE {
                    // Best effort: the server may already have gone.
                    let _ = self.try_send_close();
                }
                return Some(frame);
            }
            if self.closed || !self.fill() {
                assert!(
                    self.buf.is_empty(),
                    "the connection closed inside a frame: {:02x?}; before it {:?}",
                    self.buf,
                    self.seen
                );
                return None;
            }
        }
    }

    fn try_send_close(&mut self) -> std::io::Result<()> {
        let mask = [1u8, 2, 3, 4];
        self.stream.write_all(&[0x80 | OP_CLOSE, 0x80])?;
        self.stream.write_all(&mask)
    }

    fn parse_frame(buf: &[u8]) -> Option<((u8, Vec<u8>), usize)> {
        if buf.len() < 2 {
            return None;
        }
        let opcode = buf[0] & 0x0f;
        let masked = buf[1] & 0x80 != 0;
        let (len, mut at) = match buf[1] & 0x7f {
            126 => (
                usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
                4,
            ),
            127 => {
                let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (usize::from(n), 2),
        };
        let mask = if masked {
            let m: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
            at += 4;
            Some(m)
        } else {
            None
        };
        let data = buf.get(at..at + len)?;
        let payload = match mask {
            Some(m) => data.iter().enumerate().map(|(i, b)| b ^ m[i % 4]).collect(),
            None => data.to_vec(),
        };
        Some(((opcode, payload), at + len))
    }

    /// The next binary frame as a CoAP message; fails on anything else.
    fn expect_coap(&mut self, what: &str) -> WsCoap {
        match self.next_frame() {
            Some((OP_BINARY, data)) => parse_ws_coap(&data),
            other => panic!(
                "expected {what} in a binary frame, got {other:?}; before it {:?}",
                self.seen
            ),
        }
    }

    /// Reads to the end of the connection: after bad input the server may send
    /// an Abort (7.05, RFC 8323 §5.6) and a Close frame, nothing else. Returns
    /// whether an Abort came.
    fn expect_abort_or_close(&mut self) -> bool {
        let mut aborted = false;
        while let Some((opcode, data)) = self.next_frame() {
            match opcode {
                OP_BINARY => {
                    let msg = parse_ws_coap(&data);
                    assert_eq!(
                        msg.code, ABORT,
                        "expected only an Abort after bad input, got {msg:?}"
                    );
                    eprintln!(
                        "Abort diagnostic: {:?}",
                        String::from_utf8_lossy(&msg.payload)
                    );
                    aborted = true;
                }
                OP_CLOSE => {}
                other => panic!("unexpected frame {other:#x} {data:02x?} after bad input"),
            }
        }
        aborted
    }
}

/// The CSM exchange and GET /test on a fresh coap+ws connection (RFC 8323 §4.2).
fn ws_get_test(addr: SocketAddr, token: &[u8]) -> RawWs {
    let mut ws = RawWs::open(addr);
    ws.send_frame(OP_BINARY, &[0x00, CSM]);
    ws.send_frame(OP_BINARY, &ws_message(0x01, token, &["test"]));
    let csm = ws.expect_coap("the server's CSM");
    assert_eq!(csm.code, CSM, "the first message is not a CSM: {csm:?}");
    let resp = ws.expect_coap("the 2.05 to GET /test");
    assert_eq!((resp.code, &resp.token[..]), (CONTENT, token), "{resp:?}");
    assert!(
        String::from_utf8_lossy(&resp.payload).contains(TEST_BODY),
        "{resp:?}"
    );
    ws
}

/// After bad input: the server lives, answers a UDP ping, serves a fresh raw
/// coap+ws connection, and `corium get` over coap+ws and coaps+ws.
fn assert_still_serving(server: &mut CoriumSecureServer, pki: &Pki) {
    server.assert_running();
    assert!(
        coap_ping(server.udp, RAW_LIMIT),
        "no UDP ping answer\n{}",
        server.log()
    );
    drop(ws_get_test(server.ws, &[0x5a, 0xa5]));
    corium(&["get", &server.url("coap+ws", "127.0.0.1", "/test")])
        .assert_success()
        .assert_stdout_contains(TEST_BODY);
    corium(&[
        "get",
        "--ca",
        &pki.arg("ca.pem"),
        &server.url("coaps+ws", "localhost", "/test"),
    ])
    .assert_success()
    .assert_stdout_contains(TEST_BODY);
}

/// Binary frames carry CoAP (the CSM, then GET /test → 2.05 with the token); a
/// text frame on that connection is a connection error (RFC 8323 §4.2: binary
/// frames only): no response, at most an Abort and a Close, then the TCP
/// connection ends; the server goes on serving.
#[test]
fn raw_ws_text_frame_aborts_the_connection() {
    let pki = Pki::new("ws-text");
    let mut server = pki.corium_server(false, false);
    let mut ws = ws_get_test(server.ws, &[0x42]);
    ws.send_frame(OP_TEXT, b"GET /test");
    let aborted = ws.expect_abort_or_close();
    eprintln!("text frame: Abort sent: {aborted}; frames {:?}", ws.seen);
    assert_still_serving(&mut server, &pki);
}

/// A binary frame whose CoAP Len nibble is not 0 (RFC 8323 §4.2: it MUST be 0)
/// also ends the connection, without a response.
#[test]
fn raw_ws_nonzero_length_nibble_aborts_the_connection() {
    let pki = Pki::new("ws-len");
    let mut server = pki.corium_server(false, false);
    let mut ws = ws_get_test(server.ws, &[0x43]);
    let mut bad = ws_message(0x01, &[0x44], &["test"]);
    bad[0] |= 0x50;
    ws.send_frame(OP_BINARY, &bad);
    let aborted = ws.expect_abort_or_close();
    eprintln!("Len nibble 5: Abort sent: {aborted}; frames {:?}", ws.seen);
    assert_still_serving(&mut server, &pki);
}

/// The upgrade must target `/.well-known/coap` (RFC 8323 §4.1): another path gets
/// HTTP 404; without the `coap` subprotocol (none, or another one) HTTP 400.
#[test]
fn raw_ws_upgrade_wrong_path_404_missing_subprotocol_400() {
    let pki = Pki::new("ws-upgrade");
    let mut server = pki.corium_server(false, false);
    for (path, protocol, want) in [
        ("/", Some("coap"), 404),
        ("/.well-known/core", Some("coap"), 404),
        ("/.well-known/coap/x", Some("coap"), 404),
        ("/.well-known/coap", None, 400),
        ("/.well-known/coap", Some("mqtt"), 400),
    ] {
        let mut ws = RawWs::connect(server.ws);
        let (status, head) = ws.upgrade(path, protocol);
        assert_eq!(
            status, want,
            "upgrade to {path} offering {protocol:?}\n{head}"
        );
    }
    // Several subprotocols, `coap` among them: accepted, and only `coap` named.
    let mut ws = RawWs::connect(server.ws);
    let (status, head) = ws.upgrade("/.well-known/coap", Some("mqtt, coap"));
    assert_eq!(status, 101, "{head}");
    assert_eq!(
        http_header(&head, "Sec-WebSocket-Protocol").as_deref(),
        Some("coap"),
        "{head}"
    );
    drop(ws);
    assert_still_serving(&mut server, &pki);
}

/// Connections that never finish their handshake — plain TCP to the coaps+tcp,
/// coaps+ws and coap+ws listeners with nothing sent, and a TLS record header
/// promising a ClientHello that never comes — do not stop the server: while they
/// stay open, libcoap (openssl) over coaps+tcp, aiocoap over coaps+ws and corium
/// over all three are served. A peer that speaks something else than TLS on the
/// coaps+tcp port gets its connection closed.
#[test]
fn stalled_handshakes_do_not_block_other_clients() {
    let pki = Pki::new("stalled");
    let mut server = pki.corium_server(false, false);
    let connect = |addr: SocketAddr| {
        TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
    };
    let mut stalled: Vec<TcpStream> = [server.tls, server.wss, server.ws, server.tls]
        .into_iter()
        .map(connect)
        .collect();
    // TLS record header: handshake (22), TLS 1.0 record version, 512 bytes to come.
    stalled[3]
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .expect("send a partial ClientHello");

    let ca = pki.arg("ca.pem");
    let ca_path = pki.path("ca.pem");
    let tls_uri = server.url("coaps+tcp", "localhost", "/test");
    let wss_uri = server.url("coaps+ws", "localhost", "/test");
    let ws_uri = server.url("coap+ws", "127.0.0.1", "/test");
    let outs = all_parallel(vec![
        Box::new(|| coap_tls_client("openssl", &["-C", &ca, &tls_uri])),
        Box::new(|| aiocoap_client_trusting(&ca_path, &[&wss_uri])),
        Box::new(|| corium(&["get", "--ca", &ca, &tls_uri])),
        Box::new(|| corium(&["get", "--ca", &ca, &wss_uri])),
        Box::new(|| corium(&["get", &ws_uri])),
    ]);
    outs[0].assert_libcoap_payload_contains(TEST_BODY);
    for out in &outs[1..] {
        out.assert_success().assert_stdout_contains(TEST_BODY);
    }

    // Not TLS at all: the server ends that connection (perhaps after an alert).
    let mut plain = connect(server.tls);
    plain
        .set_read_timeout(Some(RAW_LIMIT))
        .expect("set_read_timeout");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send plain HTTP");
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match plain.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("the server did not close a non-TLS connection ({e}); got {got:02x?}"),
        }
    }
    assert!(
        got.len() < 64,
        "a non-TLS peer got {} bytes: {got:02x?}",
        got.len()
    );
    if let Some(&first) = got.first() {
        assert_eq!(
            first, 0x15,
            "expected at most a TLS alert record: {got:02x?}"
        );
    }

    // The stalled connections are still there (or were dropped): either way, the
    // server keeps serving.
    drop(stalled);
    assert_still_serving(&mut server, &pki);
}
