//! A minimal tokio driver for a `DtlsEndpoint` on a real UDP socket, CoAP byte helpers, and
//! process helpers for the libcoap peers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use corium_dtls::{DtlsConfig, DtlsEndpoint, Event, Instant, ServerConfig};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::UdpSocket;

/// One UDP socket and the DTLS endpoint on it.
pub struct Driver {
    pub socket: UdpSocket,
    pub endpoint: DtlsEndpoint,
    start: std::time::Instant,
    /// Every datagram sent and received, for inspection.
    pub wire: Vec<Vec<u8>>,
}

impl Driver {
    pub async fn bind(server: Option<ServerConfig>) -> Driver {
        Self::bind_with(DtlsConfig::default(), server).await
    }

    pub async fn bind_with(config: DtlsConfig, server: Option<ServerConfig>) -> Driver {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let endpoint = DtlsEndpoint::new(config, server, &mut StdRng::from_entropy()).unwrap();
        Driver {
            socket,
            endpoint,
            start: std::time::Instant::now(),
            wire: Vec::new(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    pub fn now(&self) -> Instant {
        Instant::from_duration(self.start.elapsed())
    }

    pub async fn flush(&mut self) {
        while let Some((to, bytes)) = self.endpoint.poll_transmit() {
            self.socket.send_to(&bytes, to).await.unwrap();
            self.wire.push(bytes.to_vec());
        }
    }

    /// Runs the endpoint until it reports an event, or until `budget` has passed.
    pub async fn next_event(&mut self, budget: Duration) -> Option<Event> {
        let until = tokio::time::Instant::now() + budget;
        let mut buf = vec![0u8; 65_536];
        loop {
            self.flush().await;
            if let Some(e) = self.endpoint.poll_event() {
                return Some(e);
            }
            if tokio::time::Instant::now() >= until {
                return None;
            }
            let wake = match self.endpoint.poll_timeout() {
                Some(t) => {
                    let at = tokio::time::Instant::from_std(
                        self.start + Duration::from_nanos(t.as_nanos()),
                    );
                    at.min(until)
                }
                None => until,
            };
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    let (n, from) = r.unwrap();
                    self.wire.push(buf[..n].to_vec());
                    let now = self.now();
                    self.endpoint.handle_datagram(now, from, &buf[..n]);
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = self.now();
                    self.endpoint.handle_timeout(now);
                }
            }
        }
    }
}

/// The payload Corium's test server answers every GET with.
pub const FIXED_PAYLOAD: &[u8] = b"hello from corium-dtls";

/// A 2.05 response to a CoAP request (RFC 7252 §3): piggybacked in an ACK for CON,
/// NON for NON; same token. `None` if `request` is not a request.
pub fn fixed_response(request: &[u8]) -> Option<Vec<u8>> {
    let (&b0, rest) = request.split_first()?;
    if b0 >> 6 != 1 {
        return None;
    }
    let ty = (b0 >> 4) & 3;
    let tkl = usize::from(b0 & 0x0f);
    let code = *rest.first()?;
    if code == 0 || code >> 5 != 0 || tkl > 8 {
        return None;
    }
    let mid = u16::from_be_bytes([*request.get(2)?, *request.get(3)?]);
    let token = request.get(4..4 + tkl)?;
    let (ty, mid) = match ty {
        0 => (2, mid),                    // CON → ACK
        1 => (1, mid.wrapping_add(0x77)), // NON → NON
        _ => return None,
    };
    let mut out = vec![0x40 | (ty << 4) | tkl as u8, 0x45];
    out.extend_from_slice(&mid.to_be_bytes());
    out.extend_from_slice(token);
    out.push(0xff);
    out.extend_from_slice(FIXED_PAYLOAD);
    Some(out)
}

/// A CON GET for `path` (one segment or empty) with a 2-byte token.
pub fn get_request(mid: u16, token: [u8; 2], path: &str) -> Vec<u8> {
    let mut out = vec![0x42, 0x01];
    out.extend_from_slice(&mid.to_be_bytes());
    out.extend_from_slice(&token);
    if !path.is_empty() {
        assert!(path.len() < 13);
        out.push((11 << 4) | path.len() as u8); // Uri-Path
        out.extend_from_slice(path.as_bytes());
    }
    out
}

/// (type, code, token, payload) of a CoAP message, parsed with `corium-wire`.
pub fn parse_response(msg: &[u8]) -> Option<(u8, u8, Vec<u8>, Vec<u8>)> {
    let m = corium_proto::wire::Message::parse(msg).ok()?;
    Some((
        m.ty() as u8,
        m.code().0,
        m.token().to_vec(),
        m.payload().to_vec(),
    ))
}

/// Runs `bin` with `args`; panics (the test fails loudly) if the binary is missing.
pub fn spawn(bin: &str, args: &[&str]) -> ChildGuard {
    match Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => ChildGuard(Some(child)),
        Err(e) => panic!(
            "cannot run the interop peer `{bin}`: {e} (install libcoap3-bin: \
             scripts/install-peers.sh)"
        ),
    }
}

/// Kills the child when dropped (only the process this test started).
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// Waits for the child on a thread, so the async driver keeps running.
    pub fn wait_in_thread(mut self) -> std::thread::JoinHandle<Output> {
        let child = self.0.take().unwrap();
        std::thread::spawn(move || child.wait_with_output().unwrap())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port P with P and P+1 free on 127.0.0.1 (libcoap's server puts DTLS on P+1).
pub fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p == u16::MAX {
            continue;
        }
        if std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free UDP port pair");
}

/// A test CA with a server certificate (localhost, 127.0.0.1) and a client certificate,
/// as PEM strings and as files in a fresh temporary directory.
pub struct TestPki {
    pub dir: std::path::PathBuf,
    pub ca_pem: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

impl TestPki {
    pub fn generate() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
        };
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "corium-dtls test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |names: Vec<String>, cn: &str, purpose: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let mut p = CertificateParams::new(names).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![purpose];
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            let cert = p.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            vec!["device-7".into()],
            "device-7",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "corium-dtls-pki-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = TestPki {
            dir,
            ca_pem: ca_cert.pem(),
            server_cert,
            server_key,
            client_cert,
            client_key,
        };
        for (name, text) in [
            ("ca.pem", &pki.ca_pem),
            ("server.pem", &pki.server_cert),
            ("server.key", &pki.server_key),
            ("client.pem", &pki.client_cert),
            ("client.key", &pki.client_key),
        ] {
            std::fs::write(pki.dir.join(name), text).unwrap();
        }
        pki
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cipher suite of the first ServerHello among `datagrams` (RFC 5246 §7.4.1.3).
pub fn negotiated_suite(datagrams: &[Vec<u8>]) -> Option<u16> {
    datagrams.iter().find_map(|d| {
        // record header 13, handshake header 12, then version 2 + random 32 + session id.
        if d.len() < 13 + 12 + 35 || d[0] != 22 || d[13] != 2 {
            return None;
        }
        let body = &d[13 + 12..];
        let sid = usize::from(body[34]);
        let at = 35 + sid;
        Some(u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]))
    })
}
