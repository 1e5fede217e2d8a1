//! Interop with aiocoap 0.4.17 (the `<repo>/.venv`), both directions:
//!
//! * `aiocoap-client` → `corium serve` (the plugtest resources);
//! * `corium` CLI → `interop/aiocoap_server.py`.
//!
//! Every test starts its own server on its own loopback port; every
//! `aiocoap-client` run is wrapped in `timeout 20`. The python comes from
//! `CORIUM_AIOCOAP_PY` (default `<repo>/.venv/bin/python`); a missing peer
//! fails the test with the install hint (`scripts/install-peers.sh`).

mod common;

use std::time::Duration;

use common::{
    aiocoap_client_run, aiocoap_large_body, big_body_file, corium, parallel, AiocoapFileServer,
    AiocoapServer, CoriumServer, Outcome,
};

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
// aiocoap-client → corium serve
// ---------------------------------------------------------------------------

/// TD_COAP_CORE_01/05: CON and NON GET /test.
#[test]
fn aiocoap_client_get_test_con_and_non() {
    let server = CoriumServer::start();
    let uri = server.uri("/test");
    let outs = aiocoap_parallel(&[&[&uri], &["--non", &uri]]);
    outs[0]
        .assert_success()
        .assert_stdout_is("Type: 0 (CON)\nCode: 1 (GET)");
    outs[1]
        .assert_success()
        .assert_stdout_is("Type: 1 (NON)\nCode: 1 (GET)");
}

/// TD_COAP_CORE_02..04: POST (2.01 + Location-Path), PUT (2.04), DELETE
/// (2.02); `-vv` makes aiocoap log the response code.
#[test]
fn aiocoap_client_post_put_delete() {
    let server = CoriumServer::start();
    let uri = server.uri("/test");
    let outs = aiocoap_parallel(&[
        &[
            "-vv",
            "-m",
            "POST",
            "--payload",
            "new",
            "--content-format",
            "0",
            &uri,
        ],
        &[
            "-vv",
            "-m",
            "PUT",
            "--payload",
            "value",
            "--content-format",
            "0",
            &uri,
        ],
        &["-vv", "-m", "DELETE", &uri],
    ]);
    outs[0]
        .assert_success()
        .assert_stderr_contains("2.01 Created")
        .assert_stderr_contains(
            "Location options indicate new resource: /location1/location2/location3",
        );
    outs[1]
        .assert_success()
        .assert_stderr_contains("2.04 Changed");
    outs[2]
        .assert_success()
        .assert_stderr_contains("2.02 Deleted");
}

/// RFC 8132 FETCH, PATCH and iPATCH on /echo echo the payload.
#[test]
fn aiocoap_client_fetch_patch_ipatch_echo() {
    let server = CoriumServer::start();
    let uri = server.uri("/echo");
    let outs = aiocoap_parallel(&[
        &[
            "-vv",
            "-m",
            "FETCH",
            "--payload",
            "fetch body",
            "--content-format",
            "0",
            &uri,
        ],
        &[
            "-vv",
            "-m",
            "PATCH",
            "--payload",
            "patch body",
            "--content-format",
            "0",
            &uri,
        ],
        &[
            "-vv",
            "-m",
            "iPATCH",
            "--payload",
            "ipatch body",
            "--content-format",
            "0",
            &uri,
        ],
    ]);
    outs[0]
        .assert_success()
        .assert_stdout_is("fetch body")
        .assert_stderr_contains("2.05 Content");
    outs[1]
        .assert_success()
        .assert_stdout_is("patch body")
        .assert_stderr_contains("2.04 Changed");
    outs[2]
        .assert_success()
        .assert_stdout_is("ipatch body")
        .assert_stderr_contains("2.04 Changed");
}

/// TD_COAP_CORE_09: the separate response from /separate arrives.
#[test]
fn aiocoap_client_separate_response() {
    let server = CoriumServer::start();
    let out = aiocoap_client_run(&[&server.uri("/separate")]);
    out.assert_success()
        .assert_stdout_contains("separate response");
    assert!(
        out.elapsed >= Duration::from_millis(2500),
        "{}",
        out.describe()
    );
}

/// TD_COAP_CORE_13/14: long path and query echo.
#[test]
fn aiocoap_client_long_path_and_query() {
    let server = CoriumServer::start();
    let seg = server.uri("/seg1/seg2/seg3");
    let query = server.uri("/query?a=1&b=2");
    let outs = aiocoap_parallel(&[&[&seg], &[&query]]);
    outs[0]
        .assert_success()
        .assert_stdout_is("Long path resource");
    outs[1].assert_success().assert_stdout_is("a=1&b=2");
}

/// RFC 6690 §4.1: `?rt=Type1` lists only /link1 and /link3.
#[test]
fn aiocoap_client_discovery_filter_rt() {
    let server = CoriumServer::start();
    let filtered = server.uri("/.well-known/core?rt=Type1");
    let all = server.uri("/.well-known/core");
    let outs = aiocoap_parallel(&[&[&filtered], &[&all]]);
    let out = &outs[0];
    out.assert_success()
        .assert_stdout_contains("</link1>")
        .assert_stdout_contains("</link3>");
    for absent in ["</link2>", "</test>", "</separate>"] {
        out.assert_stdout_lacks(absent);
    }
    for present in ["</test>", "</link1>", "</link2>", "</link3>", "</echo>"] {
        outs[1].assert_success().assert_stdout_contains(present);
    }
}

/// An unknown path: 4.04, exit status 1.
#[test]
fn aiocoap_client_unknown_path_404() {
    let server = CoriumServer::start();
    let out = aiocoap_client_run(&[&server.uri("/no/such/resource")]);
    out.assert_code(1).assert_stderr_contains("4.04 Not Found");
}

// ---------------------------------------------------------------------------
// corium CLI → interop/aiocoap_server.py
// ---------------------------------------------------------------------------

/// CON and NON GET /test.
#[test]
fn corium_get_aiocoap_test_con_and_non() {
    let server = AiocoapServer::start();
    let uri = server.uri("/test");
    let con = corium(&["get", "-v", &uri]);
    con.assert_success()
        .assert_stdout_is("Type: test resource")
        .assert_stderr_contains("ACK 2.05 Content");
    let non = corium(&["get", "--non", "-v", &uri]);
    non.assert_success()
        .assert_stdout_is("Type: test resource")
        .assert_stderr_contains("NON GET")
        .assert_stderr_contains("NON 2.05 Content");
}

/// POST (2.01 + Location), PUT (2.04, visible in a later GET), DELETE (2.02).
#[test]
fn corium_post_put_delete_aiocoap() {
    let server = AiocoapServer::start();
    let uri = server.uri("/test");
    corium(&["post", "-e", "x", "-t", "0", &uri])
        .assert_success()
        .assert_stderr_contains("2.01 Created")
        .assert_stderr_contains("Location: /location1/location2/location3");
    corium(&["put", "-e", "put by corium", "-t", "text/plain", &uri])
        .assert_success()
        .assert_stderr_contains("2.04 Changed");
    corium(&["get", &uri])
        .assert_success()
        .assert_stdout_is("put by corium");
    corium(&["delete", &uri])
        .assert_success()
        .assert_stderr_contains("2.02 Deleted");
}

/// /separate: aiocoap's empty ACK, then the separate CON 2.05, which corium
/// acknowledges (RFC 7252 §5.2.2).
#[test]
fn corium_separate_aiocoap() {
    let server = AiocoapServer::start();
    let out = corium(&["get", "-v", &server.uri("/separate")]);
    out.assert_success().assert_stdout_is("separate response");
    let lines: Vec<&str> = out.stderr.lines().collect();
    let find = |parts: &[&str]| {
        lines
            .iter()
            .position(|l| parts.iter().all(|p| l.contains(p)))
            .unwrap_or_else(|| panic!("no -v line with {parts:?}\n{}", out.describe()))
    };
    let empty_ack = find(&["←", "ACK Empty"]);
    let separate = find(&["←", "CON 2.05 Content"]);
    let ack = find(&["→", "ACK Empty"]);
    assert!(empty_ack < separate && separate < ack, "{}", out.describe());
    assert!(
        out.elapsed
            >= Duration::from_secs(AiocoapServer::SEPARATE_DELAY_SECS) - Duration::from_millis(300),
        "{}",
        out.describe()
    );
}

/// NON GET /separate: aiocoap answers with a NON 2.05 after the delay.
#[test]
fn corium_non_separate_aiocoap() {
    let server = AiocoapServer::start();
    let out = corium(&["get", "--non", "-v", &server.uri("/separate")]);
    out.assert_success()
        .assert_stdout_is("separate response")
        .assert_stderr_contains("NON 2.05 Content")
        .assert_stderr_lacks("ACK");
}

/// Query echo and a three-segment path.
#[test]
fn corium_query_and_long_path_aiocoap() {
    let server = AiocoapServer::start();
    corium(&["get", &server.uri("/query?a=1&b=2")])
        .assert_success()
        .assert_stdout_is("a=1&b=2");
    corium(&["get", &server.uri("/seg1/seg2/seg3")])
        .assert_success()
        .assert_stdout_is("seg1/seg2/seg3");
}

/// FETCH (2.05), PATCH and iPATCH (2.04) on /echo echo payload and
/// Content-Format.
#[test]
fn corium_fetch_patch_ipatch_aiocoap_echo() {
    let server = AiocoapServer::start();
    let uri = server.uri("/echo");
    for (verb, code) in [
        ("fetch", "2.05 Content"),
        ("patch", "2.04 Changed"),
        ("ipatch", "2.04 Changed"),
    ] {
        let body = format!("{verb} body");
        corium(&[verb, "-v", "-e", &body, "-t", "text/plain", &uri])
            .assert_success()
            .assert_stdout_is(&body)
            .assert_stderr_contains(code)
            .assert_stderr_contains("Content-Format: 0");
    }
    // GET is not allowed there.
    corium(&["get", &uri])
        .assert_code(1)
        .assert_stderr_contains("4.05 Method Not Allowed");
}

/// Accept application/xml (41) selects the XML representation; an
/// unsupported Accept gets 4.06.
#[test]
fn corium_multi_format_aiocoap() {
    let server = AiocoapServer::start();
    let uri = server.uri("/multi-format");
    corium(&["get", "-v", "-A", "application/xml", &uri])
        .assert_success()
        .assert_stdout_is("<msg>multi-format resource</msg>")
        .assert_stderr_contains("Content-Format: 41");
    corium(&["get", "-A", "application/json", &uri])
        .assert_code(1)
        .assert_stderr_contains("4.06 Not Acceptable");
}

/// `corium discover` with `?rt=Type1` (in the URI and via `--filter`).
#[test]
fn corium_discover_aiocoap_filter() {
    let server = AiocoapServer::start();
    for out in [
        corium(&["discover", &server.uri("/.well-known/core?rt=Type1")]),
        corium(&["discover", "--filter", "rt=Type1", &server.uri("")]),
    ] {
        out.assert_success();
        let rows: Vec<&str> = out.stdout.lines().skip(1).collect();
        assert_eq!(
            rows.len(),
            2,
            "expected /link1 and /link3 only\n{}",
            out.describe()
        );
        assert!(
            rows[0].starts_with("/link1 ") && rows[0].contains("Type1 Type2"),
            "{}",
            out.describe()
        );
        assert!(
            rows[1].starts_with("/link3 ") && rows[1].contains("Type1 Type3"),
            "{}",
            out.describe()
        );
    }
    // Unfiltered: the whole site.
    let all = corium(&["discover", &server.uri("")]);
    all.assert_success();
    for path in [
        "/test ",
        "/separate ",
        "/seg1/seg2/seg3 ",
        "/large ",
        "/obs ",
        "/link2 ",
    ] {
        assert!(
            all.stdout.lines().any(|l| l.starts_with(path)),
            "no {path} row\n{}",
            all.describe()
        );
    }
}

/// /large is 2000 bytes served block-wise (Block2, 1024-byte blocks): corium fetches
/// every block and writes the whole representation (RFC 7959 §2.4).
#[test]
fn corium_large_blockwise_aiocoap() {
    let server = AiocoapServer::start();
    let dir = std::env::temp_dir().join(format!("corium-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    let file = dir.join("large.bin");
    let file_arg = file.to_string_lossy().into_owned();
    let out = corium(&["get", "-o", &file_arg, &server.uri("/large")]);
    let got = std::fs::read(&file).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    out.assert_success().assert_stderr_contains("2.05 Content");
    assert_eq!(got, aiocoap_large_body(), "{}", out.describe());
}

/// An unknown path: exit status 1 and `4.04 Not Found` on stderr.
#[test]
fn corium_unknown_path_on_aiocoap() {
    let server = AiocoapServer::start();
    let out = corium(&["get", &server.uri("/no/such/thing")]);
    out.assert_code(1).assert_stderr_contains("4.04 Not Found");
    assert_eq!(out.stdout, "", "{}", out.describe());
}

/// RFC 7959 both ways: aiocoap-client uploads 3000 bytes to corium with Block1, then
/// reads them back block-wise.
#[test]
fn aiocoap_client_block1_upload_then_block2_download() {
    let server = CoriumServer::start();
    let uri = server.uri("/large-update");
    let (body, file) = big_body_file("aiocoap-b1");
    let payload = format!("@{}", file.to_string_lossy());
    aiocoap_client_run(&[
        "-m",
        "PUT",
        "--payload",
        &payload,
        "--content-format",
        "0",
        &uri,
    ])
    .assert_success();
    let get = aiocoap_client_run(&[&uri]);
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
    get.assert_success();
    assert_eq!(
        get.stdout.trim_end_matches('\n').as_bytes(),
        &body[..],
        "{}",
        get.describe()
    );
}

/// corium uploads 3000 bytes to the aiocoap server's /test with Block1 and reads them
/// back with Block2.
#[test]
fn corium_block1_upload_to_aiocoap() {
    let server = AiocoapServer::start();
    let uri = server.uri("/test");
    let (body, file) = big_body_file("corium-b1-aiocoap");
    let file_arg = file.to_string_lossy().into_owned();
    corium(&["put", "-v", "-t", "text/plain", "-f", &file_arg, &uri])
        .assert_success()
        .assert_stderr_contains("2.04 Changed")
        .assert_stderr_contains("Block1: 2/0/1024");
    let back = file.with_file_name("back.txt");
    let out = corium(&["get", "-o", &back.to_string_lossy(), &uri]);
    let got = std::fs::read(&back).unwrap_or_default();
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
    out.assert_success();
    assert_eq!(got, body, "{}", out.describe());
}

/// RFC 7959 §2.7 two-way block-wise: aiocoap-client posts 3000 bytes to /large-post and
/// gets the whole upper-cased body back.
#[test]
fn aiocoap_client_large_post_two_way_blockwise() {
    let server = CoriumServer::start();
    let (body, file) = big_body_file("aiocoap-large-post");
    std::fs::write(&file, body.to_ascii_lowercase()).expect("write the body");
    let payload = format!("@{}", file.to_string_lossy());
    let out = aiocoap_client_run(&[
        "-m",
        "POST",
        "--payload",
        &payload,
        &server.uri("/large-post"),
    ]);
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
    out.assert_success();
    assert_eq!(
        out.stdout.trim_end_matches('\n').as_bytes(),
        &body[..],
        "{}",
        out.describe()
    );
}

/// RFC 7959 against aiocoap's file server: `corium get` of a 300 kB file is byte for byte
/// the file (Block2, about 300 blocks), and `corium put` of a 200 kB file writes exactly
/// those bytes (Block1).
#[test]
fn corium_get_and_put_large_files_with_aiocoap_fileserver() {
    let root = std::env::temp_dir().join(format!("corium-fileserver-{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("create the served directory");
    // Not text, so nothing can be normalised on the way.
    let mut state = 0x1234_5678u32;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect()
    };
    let served = bytes(300_000);
    std::fs::write(root.join("big.bin"), &served).expect("write the served file");
    let upload = bytes(200_000);
    let upload_path = root.join("upload-source.bin");
    std::fs::write(&upload_path, &upload).expect("write the upload");
    let server = AiocoapFileServer::start(&root);

    let fetched = root.join("fetched.bin");
    let out = corium(&[
        "get",
        "-o",
        &fetched.to_string_lossy(),
        &server.uri("/big.bin"),
    ]);
    out.assert_success().assert_stderr_contains("2.05 Content");
    let got = std::fs::read(&fetched).unwrap_or_default();
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
        &server.uri("/uploaded.bin"),
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
