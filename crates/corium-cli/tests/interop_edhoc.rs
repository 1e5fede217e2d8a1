//! EDHOC (RFC 9528) + OSCORE interop with aiocoap 0.4.17 / lakers-python 0.6.2 in both
//! directions, with credentials from `corium edhoc keygen` on both sides:
//!
//! - `aiocoap-client --credentials FILE.diag` against `corium serve --credentials
//!   FILE.toml`: aiocoap sends message_3 with its first OSCORE request (the combined
//!   request of RFC 9668, its default), or in a second POST with
//!   `use_combined_edhoc: false` (message_4 in the response);
//! - `corium get --credentials FILE.toml` against `interop/aiocoap_edhoc_server.py`
//!   (aiocoap's `OscoreSiteWrapper` answering `/.well-known/edhoc`): two POSTs, then
//!   OSCORE with the derived context;
//! - and Corium against itself.
//!
//! A missing peer fails the test (see `interop/README.md`).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    aiocoap_client_run, aiocoap_python, corium, corium_bin, free_port, repo_root, run, ReadyProcess,
};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "corium-interop-edhoc-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// One party's credential, from `corium edhoc keygen`.
struct Cred {
    /// `private_key = "…"` / `own_cred = "…"` (TOML lines).
    private_key: String,
    own_cred: String,
    /// aiocoap's EDN of the same.
    edn_key: String,
    edn_cred: String,
}

fn keygen(kid: &str, subject: &str) -> Cred {
    let mut cmd = Command::new(corium_bin());
    cmd.args(["edhoc", "keygen", "--kid", kid, "--subject", subject]);
    let out = run(&mut cmd, Duration::from_secs(10));
    out.assert_success();
    let field = |prefix: &str| -> String {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in keygen output:\n{}", out.stdout))
            .trim()
            .trim_end_matches(',')
            .trim_matches('"')
            .to_owned()
    };
    Cred {
        private_key: field("private_key = "),
        own_cred: field("own_cred = "),
        edn_key: field("#   \"private_key\": "),
        edn_cred: field("#   \"own_cred\": "),
    }
}

fn corium_toml(path: &Path, uris: &[&str], own: &Cred, peer: &Cred) {
    corium_toml_with(path, uris, own, peer, true)
}

fn corium_toml_with(path: &Path, uris: &[&str], own: &Cred, peer: &Cred, combined: bool) {
    let uris: Vec<String> = uris.iter().map(|u| format!("{u:?}")).collect();
    let text = format!(
        "[[edhoc]]\nuri = [{}]\nprivate_key = {:?}\nown_cred = {:?}\npeer_cred = {:?}\n\
         use_combined_edhoc = {combined}\n",
        uris.join(", "),
        own.private_key,
        own.own_cred,
        peer.own_cred
    );
    std::fs::write(path, text).expect("write the Corium credentials");
}

fn aiocoap_diag(path: &Path, uri: &str, own: &Cred, peer: &Cred, combined: Option<bool>) {
    let combined = match combined {
        Some(c) => format!(", \"use_combined_edhoc\": {c}"),
        None => String::new(),
    };
    let text = format!(
        "{{{uri:?}: {{\"edhoc-oscore\": {{\"suite\": 2, \"method\": 3, \
         \"own_cred_style\": \"by-key-id\", \"private_key\": {}, \"own_cred\": {}, \
         \"peer_cred\": {}{combined}}}}}}}",
        own.edn_key, own.edn_cred, peer.edn_cred
    );
    std::fs::write(path, text).expect("write the aiocoap credentials");
}

fn corium_server(credentials: &Path) -> Result<(ReadyProcess, SocketAddr), String> {
    let mut cmd = Command::new(corium_bin());
    cmd.args(["serve", "--bind", "127.0.0.1:0", "-v", "--credentials"])
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

fn aiocoap_server(credentials: &Path, port: u16) -> Result<ReadyProcess, String> {
    let script = repo_root().join("interop/aiocoap_edhoc_server.py");
    assert!(script.is_file(), "{} is missing", script.display());
    let mut cmd = Command::new(aiocoap_python());
    cmd.arg(&script)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "-v"])
        .arg("--credentials")
        .arg(credentials)
        .env("PYTHONUNBUFFERED", "1");
    ReadyProcess::spawn(cmd, credentials.with_extension("log"), |l| {
        l.trim() == "READY"
    })
    .map(|(p, _)| p)
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// aiocoap-client (combined request, and the two-POST flow) against `corium serve`.
#[test]
fn aiocoap_client_against_corium_server() {
    let dir = scratch("a");
    let client = keygen("49", "client");
    let server = keygen("52", "server");
    let toml = dir.join("server.toml");
    corium_toml(&toml, &["/test", "/large"], &server, &client);
    let (process, addr) = corium_server(&toml).expect("corium serve starts");

    for (name, combined) in [("combined", None), ("two-posts", Some(false))] {
        let diag = dir.join(format!("client-{name}.diag"));
        aiocoap_diag(
            &diag,
            &format!("coap://{addr}/*"),
            &client,
            &server,
            combined,
        );
        let out = aiocoap_client_run(&[
            "--credentials".to_owned(),
            s(&diag),
            format!("coap://{addr}/test"),
        ]);
        assert!(
            out.code() == Some(0) && out.stdout.contains("Code: 1 (GET)"),
            "{name}: {}\n--- corium serve log ---\n{}",
            out.describe(),
            process.log()
        );
    }
    // Both exchanges completed on Corium's side (combined: message_3 with the OSCORE
    // request; two POSTs: message_3 to /.well-known/edhoc).
    let log = process.log();
    assert_eq!(
        log.matches("EDHOC: OSCORE context installed").count(),
        2,
        "{log}"
    );
    assert!(log.contains("EDHOC"), "{log}");
    // Without credentials the resource stays closed.
    aiocoap_client_run(&[format!("coap://{addr}/test")])
        .assert_code(1)
        .assert_stderr_contains("4.01 Unauthorized");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `corium get` (EDHOC in two POSTs, then OSCORE) against aiocoap's server.
#[test]
fn corium_client_against_aiocoap_server() {
    let dir = scratch("b");
    let client = keygen("43", "corium");
    let server = keygen("53", "aiocoap");
    let port = free_port();
    let origin = format!("coap://127.0.0.1:{port}");
    let diag = dir.join("server.diag");
    aiocoap_diag(&diag, &format!("{origin}/*"), &server, &client, None);
    let process = aiocoap_server(&diag, port).expect("aiocoap server starts");
    for combined in [true, false] {
        let toml = dir.join(format!("client-{combined}.toml"));
        corium_toml_with(&toml, &[&format!("{origin}/*")], &client, &server, combined);
        let out = corium(&[
            "get",
            "--credentials",
            &s(&toml),
            &format!("{origin}/oscore/hello"),
        ]);
        assert!(
            out.code() == Some(0) && out.stdout.contains("Hello World!"),
            "combined {combined}: {}\n--- aiocoap server log ---\n{}",
            out.describe(),
            process.log()
        );
    }
    // Without EDHOC: 4.01 from aiocoap's resource.
    let out = corium(&["get", &format!("{origin}/oscore/hello")]);
    assert!(out.stdout.contains("OSCORE required") || out.stderr.contains("4.01"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Corium against itself: `corium get --credentials` with an [[edhoc]] table against
/// `corium serve --credentials`.
#[test]
fn corium_client_against_corium_server() {
    let dir = scratch("c");
    let client = keygen("01", "c");
    let server = keygen("02", "s");
    let server_toml = dir.join("server.toml");
    corium_toml(&server_toml, &["/test", "/obs"], &server, &client);
    let (process, addr) = corium_server(&server_toml).expect("corium serve starts");
    let client_toml = dir.join("client.toml");
    for combined in [true, false] {
        corium_toml_with(
            &client_toml,
            &[&format!("coap://{addr}/*")],
            &client,
            &server,
            combined,
        );
        let out = corium(&[
            "get",
            "--credentials",
            &s(&client_toml),
            &format!("coap://{addr}/test"),
        ]);
        assert!(
            out.code() == Some(0) && out.stdout.contains("Code: 1 (GET)"),
            "combined {combined}: {}\n--- corium serve log ---\n{}",
            out.describe(),
            process.log()
        );
    }
    // Observe (RFC 7641) through an EDHOC-derived context: the protected registration
    // carries message_3 (RFC 9668), every notification verifies.
    corium_toml(
        &client_toml,
        &[&format!("coap://{addr}/*")],
        &client,
        &server,
    );
    let mut cmd = Command::new(corium_bin());
    cmd.args([
        "observe",
        "--count",
        "2",
        "--duration",
        "15",
        "--credentials",
    ])
    .arg(&client_toml)
    .arg(format!("coap://{addr}/obs"))
    .env_remove("RUST_LOG");
    let out = run(&mut cmd, Duration::from_secs(20));
    assert!(
        out.code() == Some(0) && out.stdout.lines().filter(|l| !l.is_empty()).count() >= 2,
        "{}\n--- corium serve log ---\n{}",
        out.describe(),
        process.log()
    );
    // A client with an unknown key is refused during EDHOC: with two POSTs the server's
    // EDHOC error (unknown credential) is reported; with the combined request the
    // OSCORE request is answered with an unprotected 4.00.
    let stranger = keygen("03", "x");
    for combined in [false, true] {
        corium_toml_with(
            &client_toml,
            &[&format!("coap://{addr}/*")],
            &stranger,
            &server,
            combined,
        );
        let out = corium(&[
            "get",
            "--credentials",
            &s(&client_toml),
            &format!("coap://{addr}/test"),
        ]);
        assert_ne!(out.code(), Some(0), "{}", out.describe());
        let expected = if combined {
            "4.00"
        } else {
            "unknown credential"
        };
        assert!(out.stderr.contains(expected), "{}", out.describe());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
