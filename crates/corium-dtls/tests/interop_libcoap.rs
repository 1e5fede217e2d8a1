//! `corium-dtls` against libcoap 4.3.1's OpenSSL and GnuTLS builds, in both directions, on
//! real UDP sockets. The peers must be installed (`scripts/install-peers.sh`): a missing
//! binary fails the test.

mod support;

use std::time::Duration;

use corium_dtls::{
    ClientConfig, CloseReason, DtlsConfig, Event, PeerIdentity, PskMap, Role, ServerConfig,
};
use support::{
    fixed_response, free_port_pair, get_request, negotiated_suite, parse_response, spawn, Driver,
    TestPki, FIXED_PAYLOAD,
};

const IDENTITY: &str = "corium-client";
const KEY: &str = "secretPSK";
/// TLS_PSK_WITH_AES_128_CCM_8 (RFC 7252 §9.1.3.1).
const PSK_AES_128_CCM_8: u16 = 0xc0a8;
/// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256.
const ECDHE_ECDSA_SUITES: [u16; 2] = [0xc02b, 0xcca9];

fn psk_server_config() -> ServerConfig {
    let mut keys = PskMap::new();
    keys.insert(IDENTITY, KEY).unwrap();
    ServerConfig::psk(keys).with_identity_hint("CoAP")
}

/// Corium serves; the libcoap client `bin` GETs `coaps://127.0.0.1:PORT/x` with `args`.
/// Returns the client's stdout and what the server saw.
async fn serve_one_client(
    server: ServerConfig,
    bin: &str,
    args: &[&str],
) -> (String, Vec<Event>, Option<u16>) {
    let mut driver = Driver::bind(Some(server)).await;
    let uri = format!("coaps://127.0.0.1:{}/x", driver.addr().port());
    let mut all_args: Vec<&str> = vec!["-B", "15"];
    all_args.extend_from_slice(args);
    all_args.push(&uri);
    let client = spawn(bin, &all_args).wait_in_thread();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    while !client.is_finished() && tokio::time::Instant::now() < deadline {
        if let Some(event) = driver.next_event(Duration::from_millis(50)).await {
            if let Event::ApplicationData { session, bytes } = &event {
                if let Some(response) = fixed_response(bytes) {
                    let now = driver.now();
                    driver.endpoint.send(now, *session, &response).unwrap();
                }
            }
            events.push(event);
        }
    }
    // Let a close_notify from the client arrive.
    while let Some(event) = driver.next_event(Duration::from_millis(300)).await {
        events.push(event);
    }
    let output = client.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{bin} stdout: {stdout:?}\n{bin} stderr: {stderr}");
    (stdout, events, negotiated_suite(&driver.wire))
}

fn assert_served(stdout: &str, events: &[Event], identity: PeerIdentity) {
    // libcoap ends the payload with a newline when stdout is not a terminal.
    assert_eq!(
        stdout.trim_end_matches('\n').as_bytes(),
        FIXED_PAYLOAD,
        "events: {events:?}"
    );
    let done: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::HandshakeComplete { role, identity, .. } => Some((*role, identity.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(done, [(Role::Server, identity)]);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::ApplicationData { .. })));
}

#[tokio::test(flavor = "current_thread")]
async fn openssl_client_psk_against_corium_server() {
    let (stdout, events, suite) = serve_one_client(
        psk_server_config(),
        "coap-client-openssl",
        &["-u", IDENTITY, "-k", KEY],
    )
    .await;
    assert_served(
        &stdout,
        &events,
        PeerIdentity::Psk {
            identity: IDENTITY.into(),
        },
    );
    assert_eq!(suite, Some(PSK_AES_128_CCM_8));
}

#[tokio::test(flavor = "current_thread")]
async fn gnutls_client_psk_against_corium_server() {
    let (stdout, events, suite) = serve_one_client(
        psk_server_config(),
        "coap-client-gnutls",
        &["-u", IDENTITY, "-k", KEY],
    )
    .await;
    assert_served(
        &stdout,
        &events,
        PeerIdentity::Psk {
            identity: IDENTITY.into(),
        },
    );
    assert_eq!(suite, Some(PSK_AES_128_CCM_8));
}

#[tokio::test(flavor = "current_thread")]
async fn openssl_client_with_wrong_key_is_refused() {
    let (stdout, events, _) = serve_one_client(
        psk_server_config(),
        "coap-client-openssl",
        &["-u", IDENTITY, "-k", "not-the-key"],
    )
    .await;
    // libcoap logs the alert it received (on stdout) and sends nothing.
    assert!(stdout.contains("decrypt error"), "{stdout}");
    assert!(!stdout.contains("hello from corium"));
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::HandshakeComplete { .. })));
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Closed {
                reason: CloseReason::Failed(_),
                ..
            }
        )),
        "{events:?}"
    );
}

/// libcoap's server (`bin`) with `args` on port P; Corium connects to DTLS on P+1 and GETs
/// `/`. Returns the response's (code, payload) and the client's events.
async fn get_from_libcoap_server(
    bin: &str,
    args: &[&str],
    config: ClientConfig,
) -> (Option<(u8, Vec<u8>)>, Vec<Event>, Option<u16>) {
    get_from_libcoap_server_with(DtlsConfig::default(), bin, args, config).await
}

async fn get_from_libcoap_server_with(
    dtls: DtlsConfig,
    bin: &str,
    args: &[&str],
    config: ClientConfig,
) -> (Option<(u8, Vec<u8>)>, Vec<Event>, Option<u16>) {
    let port = free_port_pair();
    let port_arg = port.to_string();
    let mut all_args = vec!["-A", "127.0.0.1", "-p", &port_arg];
    all_args.extend_from_slice(args);
    let _server = spawn(bin, &all_args);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut driver = Driver::bind_with(dtls, None).await;
    let server_addr = format!("127.0.0.1:{}", port + 1).parse().unwrap();
    let now = driver.now();
    let session = driver.endpoint.connect(now, server_addr, &config).unwrap();
    // Queued until the handshake completes.
    let request = get_request(0x1234, [0xca, 0xfe], "");
    driver.endpoint.send(now, session, &request).unwrap();
    let mut events = Vec::new();
    let mut response = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while response.is_none() && tokio::time::Instant::now() < deadline {
        let Some(event) = driver.next_event(Duration::from_millis(100)).await else {
            continue;
        };
        match &event {
            Event::ApplicationData { bytes, .. } => {
                let (ty, code, token, payload) = parse_response(bytes).unwrap();
                if token == [0xca, 0xfe] {
                    assert_eq!(ty, 2, "piggybacked ACK");
                    response = Some((code, payload));
                }
            }
            Event::Closed { .. } => {
                events.push(event);
                break;
            }
            _ => {}
        }
        events.push(event);
    }
    if response.is_some() {
        let now = driver.now();
        driver.endpoint.close(now, session).unwrap();
        driver.flush().await;
    }
    (response, events, negotiated_suite(&driver.wire))
}

fn assert_content(response: Option<(u8, Vec<u8>)>, events: &[Event]) {
    let (code, payload) = response.unwrap_or_else(|| panic!("no response; events: {events:?}"));
    assert_eq!(code, 0x45, "2.05 Content");
    assert!(
        String::from_utf8_lossy(&payload).starts_with("This is a test server"),
        "{payload:?}"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::HandshakeComplete {
            role: Role::Client,
            ..
        }
    )));
}

#[tokio::test(flavor = "current_thread")]
async fn corium_client_psk_against_openssl_server() {
    let (response, events, suite) = get_from_libcoap_server(
        "coap-server-openssl",
        &["-k", KEY],
        ClientConfig::psk(IDENTITY, KEY).unwrap(),
    )
    .await;
    assert_content(response, &events);
    assert_eq!(suite, Some(PSK_AES_128_CCM_8));
}

#[tokio::test(flavor = "current_thread")]
async fn corium_client_psk_against_gnutls_server() {
    let (response, events, suite) = get_from_libcoap_server(
        "coap-server-gnutls",
        &["-k", KEY],
        ClientConfig::psk(IDENTITY, KEY).unwrap(),
    )
    .await;
    assert_content(response, &events);
    assert_eq!(suite, Some(PSK_AES_128_CCM_8));
}

#[tokio::test(flavor = "current_thread")]
async fn corium_client_with_wrong_key_fails_against_openssl_server() {
    // OpenSSL drops the undecryptable Finished without an alert (RFC 6347 §4.1.2.7), so
    // the client's handshake runs out of time.
    let dtls = DtlsConfig {
        handshake_timeout: Duration::from_secs(6),
        ..DtlsConfig::default()
    };
    let (response, events, _) = get_from_libcoap_server_with(
        dtls,
        "coap-server-openssl",
        &["-k", KEY],
        ClientConfig::psk(IDENTITY, "not-the-key").unwrap(),
    )
    .await;
    assert!(response.is_none());
    assert!(
        matches!(
            events.last(),
            Some(Event::Closed {
                reason: CloseReason::HandshakeTimeout,
                ..
            })
        ),
        "a clean, reported failure: {events:?}"
    );
}

// ---- certificate mode (ECDHE_ECDSA), certificates generated per test ---------------------

fn pem_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

async fn libcoap_client_with_certificate(bin: &str) {
    let pki = TestPki::generate();
    let server = ServerConfig::certificate(pki.server_cert.as_bytes(), pki.server_key.as_bytes())
        .unwrap()
        .with_client_ca(pki.ca_pem.as_bytes())
        .unwrap();
    let (cert, key, ca) = (
        pki.path("client.pem"),
        pki.path("client.key"),
        pki.path("ca.pem"),
    );
    let (stdout, events, suite) = serve_one_client(
        server,
        bin,
        &["-c", &cert, "-j", &key, "-C", &ca, "-R", &ca],
    )
    .await;
    assert!(ECDHE_ECDSA_SUITES.contains(&suite.unwrap()), "{suite:x?}");
    assert_served(
        &stdout,
        &events,
        PeerIdentity::Certificate {
            end_entity: pem_der(&pki.client_cert).into(),
        },
    );
}

#[tokio::test(flavor = "current_thread")]
async fn openssl_client_certificate_against_corium_server() {
    libcoap_client_with_certificate("coap-client-openssl").await;
}

#[tokio::test(flavor = "current_thread")]
async fn gnutls_client_certificate_against_corium_server() {
    libcoap_client_with_certificate("coap-client-gnutls").await;
}

async fn corium_client_with_certificate(bin: &str) {
    let pki = TestPki::generate();
    let (cert, key, ca) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    );
    let config = ClientConfig::certificate(pki.ca_pem.as_bytes())
        .unwrap()
        .with_client_certificate(pki.client_cert.as_bytes(), pki.client_key.as_bytes())
        .unwrap()
        .with_server_name("localhost");
    let (response, events, suite) = get_from_libcoap_server(
        bin,
        &["-c", &cert, "-j", &key, "-C", &ca, "-R", &ca],
        config,
    )
    .await;
    assert!(ECDHE_ECDSA_SUITES.contains(&suite.unwrap()), "{suite:x?}");
    assert_content(response, &events);
    let identity = events.iter().find_map(|e| match e {
        Event::HandshakeComplete { identity, .. } => Some(identity.clone()),
        _ => None,
    });
    assert_eq!(
        identity,
        Some(PeerIdentity::Certificate {
            end_entity: pem_der(&pki.server_cert).into()
        })
    );
}

#[tokio::test(flavor = "current_thread")]
async fn corium_client_certificate_against_openssl_server() {
    corium_client_with_certificate("coap-server-openssl").await;
}

#[tokio::test(flavor = "current_thread")]
async fn corium_client_certificate_against_gnutls_server() {
    corium_client_with_certificate("coap-server-gnutls").await;
}
