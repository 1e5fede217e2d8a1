//! Interop with libcoap 4.3.1 (Debian `libcoap3-bin`), both directions:
//!
//! * `coap-client-notls` → `corium serve` (the plugtest resources);
//! * `corium` CLI → `coap-server-notls` (libcoap's example server).
//!
//! Every test starts its own server on its own loopback port. libcoap's
//! client exits 0 even on errors and timeouts, so its runs are judged by
//! their output and the `-v 6` message trace (see `interop/README.md`).
//! A missing peer fails the test with the install hint
//! (`scripts/install-peers.sh`).

mod common;

use std::time::Duration;

use common::{
    big_body_file, coap_client, coap_client_with_limit, corium, CoriumServer, LibcoapServer,
};

// ---------------------------------------------------------------------------
// coap-client-notls → corium serve
// ---------------------------------------------------------------------------

/// TD_COAP_CORE_01: CON GET, piggybacked 2.05 (RFC 7252 §5.2.1).
#[test]
fn libcoap_client_get_test_con() {
    let server = CoriumServer::start();
    let out = coap_client(&["-v", "6", &server.uri("/test")]);
    out.assert_libcoap_payload_is("Type: 0 (CON)\nCode: 1 (GET)");
    let req = out.assert_libcoap_trace(&["t:CON", "c:GET", "Uri-Path:test"]);
    let resp = out.assert_libcoap_trace(&["t:ACK", "c:2.05", "Content-Format:text/plain"]);
    assert!(req < resp, "{}", out.describe());
}

/// TD_COAP_CORE_05: NON GET gets a NON 2.05 (RFC 7252 §5.2.3).
#[test]
fn libcoap_client_get_test_non() {
    let server = CoriumServer::start();
    let out = coap_client(&["-N", "-v", "6", &server.uri("/test")]);
    out.assert_libcoap_payload_is("Type: 1 (NON)\nCode: 1 (GET)");
    out.assert_libcoap_trace(&["t:NON", "c:GET", "Uri-Path:test"]);
    out.assert_libcoap_trace(&["t:NON", "c:2.05"]);
    assert!(
        out.libcoap_trace_position(&["t:ACK"]).is_none(),
        "a NON request must not be acknowledged\n{}",
        out.describe()
    );
}

/// TD_COAP_CORE_02: POST → 2.01 Created with Location-Path (RFC 7252 §5.8.2).
#[test]
fn libcoap_client_post_test_location_path() {
    let server = CoriumServer::start();
    let out = coap_client(&[
        "-m",
        "post",
        "-e",
        "new",
        "-t",
        "0",
        "-v",
        "6",
        &server.uri("/test"),
    ]);
    out.assert_libcoap_trace(&[
        "t:ACK",
        "c:2.01",
        "Location-Path:location1, Location-Path:location2, Location-Path:location3",
    ]);
}

/// TD_COAP_CORE_03/04: PUT → 2.04 Changed, DELETE → 2.02 Deleted.
#[test]
fn libcoap_client_put_and_delete_test() {
    let server = CoriumServer::start();
    let put = coap_client(&[
        "-m",
        "put",
        "-e",
        "value",
        "-t",
        "0",
        "-v",
        "6",
        &server.uri("/test"),
    ]);
    put.assert_libcoap_trace(&["t:CON", "c:PUT", "Uri-Path:test", ":: 'value'"]);
    put.assert_libcoap_trace(&["t:ACK", "c:2.04"]);
    let delete = coap_client(&["-m", "delete", "-v", "6", &server.uri("/test")]);
    delete.assert_libcoap_trace(&["t:CON", "c:DELETE", "Uri-Path:test"]);
    delete.assert_libcoap_trace(&["t:ACK", "c:2.02"]);
}

/// RFC 8132 FETCH (2.05), PATCH and iPATCH (2.04) on /echo: payload and
/// Content-Format come back.
#[test]
fn libcoap_client_fetch_patch_ipatch_echo() {
    let server = CoriumServer::start();
    let uri = server.uri("/echo");
    for (method, code, payload) in [
        ("fetch", "c:2.05", "fetch body"),
        ("patch", "c:2.04", "patch body"),
        ("ipatch", "c:2.04", "ipatch body"),
    ] {
        let out = coap_client(&["-m", method, "-e", payload, "-t", "0", "-v", "6", &uri]);
        out.assert_libcoap_payload_is(payload);
        out.assert_libcoap_trace(&["t:ACK", code, "Content-Format:text/plain"]);
    }
    // application/json (50) is echoed as such.
    let out = coap_client(&[
        "-m",
        "fetch",
        "-e",
        "{\"a\":1}",
        "-t",
        "50",
        "-v",
        "6",
        &uri,
    ]);
    out.assert_libcoap_payload_is("{\"a\":1}");
    out.assert_libcoap_trace(&["t:ACK", "c:2.05", "Content-Format:application/json"]);
}

/// TD_COAP_CORE_09: /separate answers with an empty ACK, then a separate
/// CON 2.05, which libcoap acknowledges (RFC 7252 §5.2.2).
#[test]
fn libcoap_client_separate_response() {
    let server = CoriumServer::start();
    // Empty messages are only traced at debug level (-v 7).
    let out = coap_client_with_limit(10, &["-v", "7", &server.uri("/separate")]);
    out.assert_libcoap_payload_contains("separate response");
    let empty_ack = out.assert_libcoap_trace(&["t:ACK", "c:0.00", "{}"]);
    let separate = out.assert_libcoap_trace(&["t:CON", "c:2.05"]);
    assert!(
        empty_ack < separate,
        "empty ACK must precede the separate response\n{}",
        out.describe()
    );
    assert!(
        out.elapsed >= Duration::from_millis(2500),
        "the response came before the 3 s delay\n{}",
        out.describe()
    );
}

/// TD_COAP_CORE_13: a three-segment Uri-Path.
#[test]
fn libcoap_client_long_path() {
    let server = CoriumServer::start();
    let out = coap_client(&["-v", "6", &server.uri("/seg1/seg2/seg3")]);
    out.assert_libcoap_payload_is("Long path resource");
    out.assert_libcoap_trace(&["Uri-Path:seg1, Uri-Path:seg2, Uri-Path:seg3"]);
}

/// TD_COAP_CORE_14: Uri-Query options are echoed.
#[test]
fn libcoap_client_query_echo() {
    let server = CoriumServer::start();
    let out = coap_client(&["-v", "6", &server.uri("/query?a=1&b=2")]);
    out.assert_libcoap_payload_is("a=1&b=2");
    out.assert_libcoap_trace(&["Uri-Query:a=1, Uri-Query:b=2"]);
}

/// TD_COAP_CORE_19/20: Accept application/xml (41) selects the XML
/// representation (RFC 7252 §5.10.4).
#[test]
fn libcoap_client_multi_format_accept_xml() {
    let server = CoriumServer::start();
    let out = coap_client(&["-A", "41", "-v", "6", &server.uri("/multi-format")]);
    out.assert_libcoap_payload_is("<msg type=\"CON\" code=\"1\"/>");
    out.assert_libcoap_trace(&["t:ACK", "c:2.05", "Content-Format:application/xml"]);
    // Without Accept: text/plain.
    let out = coap_client(&["-v", "6", &server.uri("/multi-format")]);
    out.assert_libcoap_payload_contains("Status type: \"CON\"");
    out.assert_libcoap_trace(&["t:ACK", "c:2.05", "Content-Format:text/plain"]);
}

/// TD_COAP_LINK_02 / RFC 6690 §4.1: `?rt=Type1` lists only /link1 and /link3.
#[test]
fn libcoap_client_discovery_filter_rt() {
    let server = CoriumServer::start();
    let out = coap_client(&["-v", "6", &server.uri("/.well-known/core?rt=Type1")]);
    out.assert_libcoap_trace(&["t:ACK", "c:2.05", "Content-Format:application/link-format"]);
    out.assert_libcoap_payload_contains("</link1>");
    out.assert_libcoap_payload_contains("</link3>");
    for absent in ["</link2>", "</test>", "</separate>", "</.well-known/core>"] {
        out.assert_libcoap_payload_lacks(absent);
    }
    // Filtering on `if` and on `href` with a trailing `*`.
    coap_client(&[&server.uri("/.well-known/core?if=If2")])
        .assert_libcoap_payload_contains("</link2>")
        .assert_libcoap_payload_lacks("</link1>")
        .assert_libcoap_payload_lacks("</link3>");
    let seg = coap_client(&[&server.uri("/.well-known/core?href=/path*")]);
    for present in ["</path>", "</path/sub1>", "</path/sub2>", "</path/sub3>"] {
        seg.assert_libcoap_payload_contains(present);
    }
    seg.assert_libcoap_payload_lacks("</link1>");
}

/// The unfiltered /.well-known/core is larger than one block: corium sends it
/// block-wise (RFC 7959 §2.2, no datagram above RFC 7252 §4.6's 1152 bytes) and libcoap
/// reassembles the whole document.
#[test]
fn libcoap_client_discovery_unfiltered_blockwise() {
    let server = CoriumServer::start_with(&["--amplification-factor", "0"]);
    let out = coap_client(&["-v", "6", &server.uri("/.well-known/core")]);
    out.assert_libcoap_trace(&["t:ACK", "c:2.05", "Block2:0/M/1024"]);
    for present in ["</test>", "</link1>", "</path/sub3>", "</obs>", "</echo>"] {
        out.assert_libcoap_payload_contains(present);
    }
}

/// RFC 9175 §2.4 item 3 with `corium serve`'s default amplification limit: libcoap's
/// first request from a fresh port gets the listing in blocks within three times its
/// size, the first with an Echo value; libcoap follows the smaller blocks and the
/// listing arrives whole.
#[test]
fn libcoap_client_discovery_within_amplification_limit() {
    let server = CoriumServer::start();
    // -v 7: libcoap logs the follow-up requests too.
    let out = coap_client(&["-v", "7", &server.uri("/.well-known/core")]);
    out.assert_libcoap_trace(&["t:ACK", "c:2.05", "Block2:0/M/", "Echo:"]);
    let first = out
        .stdout
        .lines()
        .find(|l| l.contains("t:ACK") && l.contains("Block2:0/M/"))
        .unwrap_or_default()
        .to_owned();
    assert!(!first.contains("/1024"), "a smaller first block: {first}");
    // libcoap echoes the value with the next block (RFC 9175 §2.3).
    out.assert_libcoap_trace(&["t:CON", "Block2:1/_/", "Echo:"]);
    // (With -v, libcoap interleaves its trace with the payload: fetch it again quietly,
    // from a fresh port, so again within the limit.)
    let quiet = coap_client(&[&server.uri("/.well-known/core")]);
    for present in ["</test>", "</link1>", "</path/sub3>", "</obs>", "</echo>"] {
        quiet.assert_libcoap_payload_contains(present);
    }
}

/// An unknown path gets 4.04 (printed on stderr by libcoap).
#[test]
fn libcoap_client_unknown_path_404() {
    let server = CoriumServer::start();
    let out = coap_client(&["-v", "6", &server.uri("/no/such/resource")]);
    out.assert_stderr_contains("4.04");
    out.assert_libcoap_trace(&["t:ACK", "c:4.04"]);
    out.assert_libcoap_payload_is("");
}

/// Atomic create (RFC 7252 §5.10.8.2): PUT /create1 with
/// If-None-Match gives 2.01 the first time, 4.12 the second.
#[test]
fn libcoap_client_create1_if_none_match() {
    let server = CoriumServer::start();
    let uri = server.uri("/create1");
    let first = coap_client(&[
        "-m", "put", "-O", "5,", "-e", "created", "-t", "0", "-v", "6", &uri,
    ]);
    first.assert_libcoap_trace(&["t:CON", "c:PUT", "If-None-Match:"]);
    first.assert_libcoap_trace(&["t:ACK", "c:2.01"]);
    let second = coap_client(&[
        "-m", "put", "-O", "5,", "-e", "again", "-t", "0", "-v", "6", &uri,
    ]);
    second.assert_libcoap_trace(&["t:ACK", "c:4.12"]);
    second.assert_stderr_contains("4.12");
    // The first representation is still there.
    coap_client(&[&uri]).assert_libcoap_payload_is("created");
}

/// A NON request to /separate gets a NON response once the handler is done
/// (RFC 7252 §5.2.3), no ACK.
#[test]
fn libcoap_client_separate_non() {
    let server = CoriumServer::start();
    let out = coap_client_with_limit(10, &["-N", "-v", "6", &server.uri("/separate")]);
    out.assert_libcoap_payload_contains("Type: 1 (NON)");
    out.assert_libcoap_payload_contains("separate response");
    out.assert_libcoap_trace(&["t:NON", "c:2.05"]);
    assert!(
        out.libcoap_trace_position(&["t:ACK"]).is_none(),
        "{}",
        out.describe()
    );
}

/// A host name in the URI makes libcoap send Uri-Host (and Uri-Port); the
/// server accepts both (RFC 7252 §5.10.1).
#[test]
fn libcoap_client_uri_host() {
    let server = CoriumServer::start();
    let uri = format!("coap://localhost:{}/test", server.addr.port());
    let out = coap_client(&["-v", "6", &uri]);
    out.assert_libcoap_trace(&["t:CON", "Uri-Host:localhost", "Uri-Port:"]);
    out.assert_libcoap_payload_is("Type: 0 (CON)\nCode: 1 (GET)");
}

/// /location-query: POST → 2.01 with two Location-Query
/// options (RFC 7252 §5.10.7).
#[test]
fn libcoap_client_location_query() {
    let server = CoriumServer::start();
    let out = coap_client(&["-m", "post", "-v", "6", &server.uri("/location-query")]);
    out.assert_libcoap_trace(&[
        "t:ACK",
        "c:2.01",
        "Location-Query:first=1, Location-Query:second=2",
    ]);
}

/// /validate: GET returns an ETag; a GET carrying it gets 2.03 Valid
/// without payload (RFC 7252 §5.10.6.2).
#[test]
fn libcoap_client_validate_etag() {
    let server = CoriumServer::start();
    let uri = server.uri("/validate");
    let first = coap_client(&["-v", "6", &uri]);
    first.assert_libcoap_payload_is("validate");
    let line =
        first.libcoap_trace()[first.assert_libcoap_trace(&["t:ACK", "c:2.05", "ETag:0x"])].clone();
    let etag = line
        .split("ETag:")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ']).next())
        .unwrap_or_else(|| panic!("no ETag in {line:?}"))
        .to_owned();
    let second = coap_client(&["-O", &format!("4,{etag}"), "-v", "6", &uri]);
    second.assert_libcoap_trace(&["t:ACK", "c:2.03", &format!("ETag:{etag}")]);
    second.assert_libcoap_payload_is("");
}

// ---------------------------------------------------------------------------
// corium CLI → coap-server-notls
// ---------------------------------------------------------------------------

/// GET / → 2.05 with libcoap's banner.
#[test]
fn corium_get_libcoap_root() {
    let server = LibcoapServer::start();
    let out = corium(&["get", &server.uri("/")]);
    out.assert_success();
    out.assert_stdout_contains("This is a test server made with libcoap");
    out.assert_stderr_contains("2.05 Content");
}

/// GET /time → 2.05 piggybacked, with Max-Age 1 visible in the `-v` trace.
#[test]
fn corium_get_libcoap_time() {
    let server = LibcoapServer::start();
    let out = corium(&["get", "-v", &server.uri("/time")]);
    out.assert_success();
    out.assert_stderr_contains("ACK 2.05 Content");
    out.assert_stderr_contains("Max-Age: 1");
    assert!(
        !out.stdout.trim().is_empty(),
        "empty time\n{}",
        out.describe()
    );
}

/// GET /async?1: empty ACK first, then a separate CON 2.05 `done` after
/// about a second, which corium acknowledges (RFC 7252 §5.2.2).
#[test]
fn corium_get_libcoap_async_separate() {
    let server = LibcoapServer::start();
    let out = corium(&["get", "-v", &server.uri("/async?1")]);
    out.assert_success();
    out.assert_stdout_is("done");
    let lines: Vec<&str> = out.stderr.lines().collect();
    let find = |parts: &[&str]| {
        lines
            .iter()
            .position(|l| parts.iter().all(|p| l.contains(p)))
            .unwrap_or_else(|| panic!("no -v line with {parts:?}\n{}", out.describe()))
    };
    let request = find(&["→", "CON GET", "Uri-Query: \"1\""]);
    let empty_ack = find(&["←", "ACK Empty"]);
    let separate = find(&["←", "CON 2.05 Content", "done"]);
    let ack = find(&["→", "ACK Empty"]);
    assert!(
        request < empty_ack && empty_ack < separate && separate < ack,
        "{}",
        out.describe()
    );
    assert!(
        out.elapsed >= Duration::from_millis(800),
        "{}",
        out.describe()
    );
}

/// PUT /example_data then GET returns the new representation and its
/// Content-Format (libcoap leaves out Content-Format 0, so JSON is used).
#[test]
fn corium_put_then_get_libcoap_example_data() {
    let server = LibcoapServer::start();
    let uri = server.uri("/example_data");
    // libcoap answers the first PUT with 2.01 Created, later ones with 2.04.
    corium(&["put", "-e", "first", "-t", "text/plain", &uri])
        .assert_success()
        .assert_stderr_contains("2.01 Created");
    let json = r#"{"msg":"hello from corium"}"#;
    corium(&["put", "-e", json, "-t", "application/json", &uri])
        .assert_success()
        .assert_stderr_contains("2.04 Changed");
    corium(&["get", "-v", &uri])
        .assert_success()
        .assert_stdout_contains("hello from corium")
        .assert_stderr_contains("Content-Format: 50");
    // The raw bytes are unchanged.
    let dir = std::env::temp_dir().join(format!("corium-interop-libcoap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    let file = dir.join("example_data");
    let out = corium(&["get", "-o", &file.to_string_lossy(), &uri]);
    let got = std::fs::read(&file).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    out.assert_success();
    assert_eq!(got, json.as_bytes(), "{}", out.describe());
}

/// NON GET /time: libcoap answers NON, reusing the request's Message ID,
/// which must not be mistaken for a duplicate.
#[test]
fn corium_non_get_libcoap_time() {
    let server = LibcoapServer::start();
    let out = corium(&["get", "--non", "-v", &server.uri("/time")]);
    out.assert_success();
    out.assert_stderr_contains("NON GET");
    out.assert_stderr_contains("NON 2.05 Content");
    assert!(!out.stdout.trim().is_empty(), "{}", out.describe());
}

/// `corium discover` lists libcoap's resources with their attributes.
#[test]
fn corium_discover_libcoap() {
    let server = LibcoapServer::start();
    let out = corium(&["discover", &server.uri("")]);
    out.assert_success();
    let time = out
        .stdout
        .lines()
        .find(|l| l.starts_with("/time "))
        .unwrap_or_else(|| panic!("no /time row\n{}", out.describe()));
    for cell in ["ticks", "clock", "Internal Clock", "yes"] {
        assert!(
            time.contains(cell),
            "/time row lacks {cell:?}\n{}",
            out.describe()
        );
    }
    for path in ["/async", "/example_data"] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(path)),
            "no {path} row\n{}",
            out.describe()
        );
    }
    assert!(
        out.stdout.lines().any(|l| l.starts_with("/ ")),
        "no / row\n{}",
        out.describe()
    );
}

/// An unknown path: exit status 1 and `4.04` on stderr.
#[test]
fn corium_unknown_path_on_libcoap() {
    let server = LibcoapServer::start();
    let out = corium(&["get", &server.uri("/no/such/thing")]);
    out.assert_code(1);
    out.assert_stderr_contains("4.04 Not Found");
    assert_eq!(out.stdout, "", "{}", out.describe());
    // A method the resource does not allow: 4.05, exit status 1.
    let out = corium(&["delete", &server.uri("/example_data")]);
    out.assert_code(1);
    out.assert_stderr_contains("4.05 Method Not Allowed");
}

/// NON GET /async?1: libcoap answers with a NON 2.05 after about a second.
#[test]
fn corium_non_get_libcoap_async() {
    let server = LibcoapServer::start();
    let out = corium(&["get", "--non", "-v", &server.uri("/async?1")]);
    out.assert_success()
        .assert_stdout_is("done")
        .assert_stderr_contains("NON 2.05 Content")
        .assert_stderr_lacks("ACK");
    assert!(
        out.elapsed >= Duration::from_millis(800),
        "{}",
        out.describe()
    );
}

/// /example_data is 1500 bytes served block-wise (Block2 1024, ETag,
/// Size2): the first block arrives intact.
#[test]
fn corium_get_libcoap_example_data_blockwise() {
    let server = LibcoapServer::start();
    let dir =
        std::env::temp_dir().join(format!("corium-interop-libcoap-b2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    let file = dir.join("example_data");
    let out = corium(&[
        "get",
        "-v",
        "-o",
        &file.to_string_lossy(),
        &server.uri("/example_data"),
    ]);
    let got = std::fs::read(&file).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    out.assert_success()
        .assert_stderr_contains("Block2: 0/1/1024")
        .assert_stderr_contains("Size2: 1500");
    // libcoap's example data: "a123456789b123456789...", 10-byte groups, 1500 bytes,
    // fetched in two blocks and reassembled (RFC 7959 §2.4).
    let expected: Vec<u8> = (0..1500)
        .map(|i| {
            if i % 10 == 0 {
                b'a' + (i / 10 % 26) as u8
            } else {
                b'0' + (i % 10) as u8
            }
        })
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected),
        "{}",
        out.describe()
    );
    out.assert_stderr_contains("Block2: 1/0/1024");
}

/// RFC 7959 both ways: libcoap uploads 3000 bytes to corium with Block1 (corium answers
/// 2.31 per block and reassembles), then reads them back with Block2.
#[test]
fn libcoap_client_block1_upload_then_block2_download() {
    let server = CoriumServer::start();
    let uri = server.uri("/large-update");
    let (body, file) = big_body_file("libcoap-b1");
    let file_arg = file.to_string_lossy().into_owned();
    let put = coap_client(&["-m", "put", "-t", "0", "-f", &file_arg, "-v", "6", &uri]);
    put.assert_libcoap_trace(&["t:CON", "c:PUT", "Block1:0/M/1024"]);
    // (libcoap's -v 6 trace shows the first request and the final response only.)
    put.assert_libcoap_trace(&["t:ACK", "c:2.04", "Block1:2/_/1024"]);
    let get = coap_client(&[&uri]);
    assert_eq!(
        get.libcoap_payload().trim_end_matches('\n').as_bytes(),
        &body[..],
        "{}",
        get.describe()
    );
}

/// corium uploads 3000 bytes to libcoap's /example_data with Block1 and reads them back.
#[test]
fn corium_block1_upload_to_libcoap() {
    let server = LibcoapServer::start();
    let uri = server.uri("/example_data");
    let (body, file) = big_body_file("corium-b1-libcoap");
    let file_arg = file.to_string_lossy().into_owned();
    corium(&["put", "-v", "-t", "text/plain", "-f", &file_arg, &uri])
        .assert_success()
        .assert_stderr_contains("Block1: 0/1/1024")
        .assert_stderr_contains("Block1: 2/0/1024");
    let back = file.with_file_name("back.txt");
    let out = corium(&["get", "-o", &back.to_string_lossy(), &uri]);
    let got = std::fs::read(&back).unwrap_or_default();
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
    out.assert_success();
    assert_eq!(got, body, "{}", out.describe());
}

/// RFC 7959 §2.7 two-way block-wise: libcoap posts 3000 bytes in 512-byte blocks to
/// /large-post and gets the upper-cased body back in Block2 blocks, which corium serves
/// from the response it kept (the POST runs once).
#[test]
fn libcoap_client_large_post_two_way_blockwise() {
    let server = CoriumServer::start();
    let (body, file) = big_body_file("libcoap-large-post");
    let lower: Vec<u8> = body.to_ascii_lowercase();
    std::fs::write(&file, &lower).expect("write the body");
    let file_arg = file.to_string_lossy().into_owned();
    let out = coap_client(&[
        "-m",
        "post",
        "-b",
        "512",
        "-f",
        &file_arg,
        &server.uri("/large-post"),
    ]);
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
    assert_eq!(
        out.libcoap_payload().trim_end_matches('\n').as_bytes(),
        &body[..],
        "{}",
        out.describe()
    );
}

/// `coap-client-notls -b 256`: libcoap asks corium for 256-byte blocks (early
/// negotiation, RFC 7959 §2.4) and uploads in 256-byte blocks; the bytes round-trip.
#[test]
fn libcoap_client_small_blocks_both_ways() {
    // The block sizes libcoap asks for, not those of the amplification limit.
    let server = CoriumServer::start_with(&["--amplification-factor", "0"]);
    let uri = server.uri("/large-update");
    let (body, file) = big_body_file("libcoap-b256");
    let file_arg = file.to_string_lossy().into_owned();
    let put = coap_client(&[
        "-m", "put", "-b", "256", "-t", "0", "-f", &file_arg, "-v", "6", &uri,
    ]);
    put.assert_libcoap_trace(&["t:CON", "c:PUT", "Block1:0/M/256"]);
    put.assert_libcoap_trace(&["t:ACK", "c:2.04", "Block1:11/_/256"]);
    coap_client(&["-b", "256", "-v", "6", &uri]).assert_libcoap_trace(&[
        "t:ACK",
        "c:2.05",
        "Block2:0/M/256",
    ]);
    // (With -v, libcoap interleaves its trace with the payload: fetch it again quietly.)
    let get = coap_client(&["-b", "256", &uri]);
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
    assert_eq!(
        get.libcoap_payload().trim_end_matches('\n').as_bytes(),
        &body[..],
        "{}",
        get.describe()
    );
}

/// RFC 9175 §2.4 item 1 with `corium serve --fresh`: libcoap's PUT without Echo is not
/// run but answered 4.01 with an Echo value; libcoap repeats it with the value (§2.3)
/// and that one runs, as the GET afterwards shows.
#[test]
fn libcoap_client_put_answers_the_freshness_echo() {
    let server = CoriumServer::start_with(&["--fresh", "/large-update"]);
    let uri = server.uri("/large-update");
    // (-v 7: at -v 6 libcoap logs only the first request and the final response.)
    let put = coap_client(&["-m", "put", "-e", "fresh-put", "-v", "7", &uri]);
    let challenge = put.assert_libcoap_trace(&["t:ACK", "c:4.01", "Echo:"]);
    let retry = put.assert_libcoap_trace(&["t:CON", "c:PUT", "Echo:"]);
    let done = put.assert_libcoap_trace(&["t:ACK", "c:2.04"]);
    assert!(challenge < retry && retry < done, "{}", put.describe());
    let get = coap_client(&[&uri]);
    assert_eq!(
        get.libcoap_payload().trim_end_matches('\n'),
        "fresh-put",
        "{}",
        get.describe()
    );
}
