//! `corium-dtls`: DTLS 1.2 for CoAP over UDP (`coaps://`, RFC 7252 §9), sans-IO.
//!
//! One [`DtlsEndpoint`] serves one UDP socket: it answers many clients (server sessions) and
//! connects to many servers (client sessions), each session keyed by the peer's address and
//! named by a [`SessionId`]. It does no I/O and protocol time comes only from the `now`
//! passed in: datagrams and `now` go in, records to send and events come out, like
//! `corium_proto::Endpoint`. (The engine takes one `std::time::Instant` reading at
//! construction as the origin of its clock type, and certificate validity periods are
//! checked against the calendar clock.)
//!
//! # Data flow
//!
//! ```text
//!  UDP socket                 DtlsEndpoint                          corium_proto::Endpoint
//!  ──────────                 ────────────                          ──────────────────────
//!  datagram ─► handle_datagram(now, addr, bytes)
//!                ├ address has a session ─► engine session ─► records decrypted
//!                │                             └─► Event::ApplicationData { session, bytes } ─► handle_datagram(now, session, bytes)
//!                └ ClientHello, no session ─► DtlsEngine::accept (stateless)
//!                      ├ no/stale cookie ─► HelloVerifyRequest (poll_transmit), nothing kept
//!                      └ valid cookie ─► new session ─► ServerHello flight ...
//!                                            └─► Event::HandshakeComplete { session, identity }
//!  poll_transmit() ◄── records ◄── send(now, session, coap bytes) ◄──────────── poll_transmit() for peer `session`
//! ```
//!
//! The CoAP endpoint's peers are [`SessionId`]s (or `(SocketAddr, SessionId)` pairs): a
//! session is the security association RFC 7252 §9.1.1 ties messages to, and
//! [`Event::Closed`] tells the runtime when to forget the peer.
//!
//! # Example
//!
//! A PSK server and a client in memory (a runtime moves the datagrams over a UDP socket
//! instead, see `examples/coaps_hello.rs`):
//!
//! ```
//! use corium_dtls::{ClientConfig, DtlsConfig, DtlsEndpoint, Event, Instant, PskMap, ServerConfig};
//! # use rand::SeedableRng;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut keys = PskMap::new();
//! keys.insert("device-17", "secretPSK")?;
//! let server_addr = "192.0.2.1:5684".parse()?;
//! let client_addr = "192.0.2.2:40000".parse()?;
//! let mut rng = rand::rngs::StdRng::from_entropy();
//! let mut server = DtlsEndpoint::new(DtlsConfig::default(), Some(ServerConfig::psk(keys)), &mut rng)?;
//! let mut client = DtlsEndpoint::new(DtlsConfig::default(), None, &mut rng)?;
//!
//! let now = Instant::ZERO;
//! let session = client.connect(now, server_addr, &ClientConfig::psk("device-17", "secretPSK")?)?;
//! client.send(now, session, b"\x40\x01\x00\x01")?; // a CoAP GET, sent once the handshake is done
//! loop {
//!     let mut quiet = true;
//!     while let Some((_, datagram)) = client.poll_transmit() {
//!         server.handle_datagram(now, client_addr, &datagram);
//!         quiet = false;
//!     }
//!     while let Some((_, datagram)) = server.poll_transmit() {
//!         client.handle_datagram(now, server_addr, &datagram);
//!         quiet = false;
//!     }
//!     if quiet {
//!         break;
//!     }
//! }
//! assert!(matches!(server.poll_event(), Some(Event::HandshakeComplete { .. })));
//! assert!(matches!(server.poll_event(), Some(Event::ApplicationData { bytes, .. }) if bytes[..] == b"\x40\x01\x00\x01"[..]));
//! # Ok(()) }
//! ```
//!
//! # What is covered
//!
//! | Spec | What | Where |
//! |---|---|---|
//! | RFC 6347 §4.2.1 | HelloVerifyRequest cookies; no per-peer state before the cookie round trip | [`NativePskEngine`] and [`DimplEngine`] docs, [`DtlsEngine::accept`] |
//! | RFC 6347 §4.2.4 | Handshake retransmission with doubling timeout | engine, [`DtlsConfig::initial_retransmit_timeout`] |
//! | RFC 6347 §4.2.1, §4.2.4 | Handshakes per second per client address (IPv6: per /64), counted after the cookie check, checked before any cookie or handshake work; the held-back client retransmits | [`DtlsConfig::max_handshakes_per_addr`] |
//! | RFC 6347 §4.1.2.7 | Records that fail authentication are dropped, the session lives on | engine |
//! | RFC 6347 §4.2.8 | A new handshake from a known address replaces the session after its cookie exchange | [`CloseReason::Replaced`] |
//! | RFC 7252 §9.1.3.1, RFC 7925 §4.2 | PSK mode, TLS_PSK_WITH_AES_128_CCM_8, identity hint, keys from a [`PskStore`] | [`ServerConfig::psk`], [`ClientConfig::psk`] |
//! | RFC 7252 §9.1.3.3, RFC 7925 §4.4 | Certificate mode, ECDHE_ECDSA (AES-128-GCM / ChaCha20-Poly1305: the engine has no CCM_8 for ECDSA), client certificates against a CA | [`ServerConfig::certificate`], [`ClientConfig::certificate`] |
//! | RFC 5246 §7.2, RFC 7925 §6 | `close_notify` on close and in answer to one; fatal alerts on handshake failure (`decrypt_error`, never `unknown_psk_identity`, for PSK; certificate alerts only in certificate mode) | [`CloseReason`], [`DtlsError::alert`] |
//! | RFC 7250, RFC 9146 | Raw public keys, Connection ID | not available: see below |
//!
//! # Two engines: native for PSK, dimpl for certificates
//!
//! [`DtlsEndpoint::new`] builds a [`SelectEngine`] that runs sessions as
//! [`DtlsConfig::engine`] says. The default, [`EngineChoice::NativePsk`], puts PSK-only
//! servers and PSK clients on [`NativePskEngine`], this crate's own DTLS 1.2 engine for
//! TLS_PSK_WITH_AES_128_CCM_8 (module `native`: record layer, handshake messages, PRF and
//! key schedule, state machine; extended master secret, stateless cookies, fragmentation,
//! retransmission, anti-replay window), and everything with certificates (including
//! servers that offer both modes) on [`DimplEngine`]. [`EngineChoice::Dimpl`] puts every
//! session on dimpl. The native engine frees its handshake state when the handshake
//! completes: an established session is 224 bytes inline, and an idle established server
//! session costs about 0.7 KB of resident memory against about 8.4 KB with dimpl
//! (`examples/dtls_engine_memory.rs`, 20 000 sessions, endpoint tables included). It
//! passes the same endpoint tests (`tests/memory.rs`) and libcoap interop tests
//! (`tests/interop_libcoap.rs`: `coap-client-openssl`, `coap-client-gnutls`,
//! `coap-server-openssl`, `coap-server-gnutls`) as dimpl, and interoperates with dimpl in
//! both roles.
//!
//! Limits (all in [`DtlsConfig`]): sessions, handshakes in progress, handshakes per second
//! per client address (after the cookie check), handshake duration, idle time, messages
//! queued behind a handshake, recent handshakes (replay guard).
//!
//! # The engine: dimpl 0.9
//!
//! The cryptographic state machine is behind [`DtlsEngine`] / [`EngineSession`];
//! [`DimplEngine`] implements them with [dimpl](https://crates.io/crates/dimpl) 0.9.0
//! (sans-IO, `forbid(unsafe_code)`, pure-Rust RustCrypto backend, feature `rust-crypto`;
//! dimpl 0.9 needs Rust 1.89, hence this crate's `rust-version`). Chosen after trying the
//! candidates of issue 5 on this machine:
//!
//! - **dimpl 0.9** (tried, adopted). Measured here against libcoap 4.3.1
//!   (`tests/interop_libcoap.rs`, all passing): TLS_PSK_WITH_AES_128_CCM_8 (0xC0A8) is
//!   negotiated with `coap-client-openssl`, `coap-client-gnutls`, `coap-server-openssl` and
//!   `coap-server-gnutls`; certificate mode (ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 or
//!   CHACHA20_POLY1305) with client certificates against the OpenSSL and GnuTLS builds in
//!   both directions; a wrong key gives `decrypt_error` at libcoap's OpenSSL client. Its
//!   sessions take the caller's `Instant`, so the endpoint runs under a virtual clock
//!   (`tests/memory.rs`). In memory, release build, one core
//!   (`examples/dtls_measure.rs`): about 100 000 stateless HelloVerifyRequests/s, about
//!   9 000 complete PSK handshakes/s (client and server work together), about 300 000
//!   CoAP-sized records/s (encrypt and decrypt), about 8–9 KB of resident memory per idle
//!   established server session. Of the about 7.6 KB of heap per session (heaptrack), dimpl
//!   holds about 6.3 KB: its `Dtls` value (3 360 B inline, an enum as large as its largest
//!   DTLS 1.2/1.3 client/server variant), the AES-CCM-8 cipher state (about 700 B), and
//!   about 2.2 KB of handshake-time buffers it keeps after the handshake (the saved last
//!   flight, its buffer pool, defragmentation, PRF scratch and queue buffers), none of
//!   which its API can release. This crate's share is about 1.0 KB: the session wrapper
//!   (232 B), the per-session dimpl `Config` that the stateless-cookie seeding needs
//!   (about 450 B), the session's entry and tables (about 230 B). Gaps: no
//!   ECDHE_ECDSA_WITH_AES_128_CCM_8 (RFC 7252 §9.1.3.3's mandatory certificate suite; the
//!   key-exchange mapping of `Dtls12CipherSuite` knows only its four built-in suites, so a
//!   custom provider cannot add it), no SNI, only the leaf certificate is sent, no alerts are
//!   sent on failure (this crate sends the plaintext ones itself), a record that fails to
//!   decrypt after the peer's ChangeCipherSpec ends the handshake (how a wrong key shows), the
//!   server wants one instance per peer before the cookie (handled statelessly, see
//!   [`DimplEngine`]), `Config::build` runs the provider's self-tests each time (providers are
//!   trimmed here: a PSK session's config builds in about 4 µs), no raw public keys, no
//!   Connection ID.
//! - **rtc-dtls 0.21** (webrtc-rs; code read, not adopted): PSK-CCM8 and
//!   ECDHE_ECDSA_AES_128_CCM_8 are there, but `Endpoint::read` creates a `DTLSConn` for
//!   *any* datagram from a new address and its flight 0 generates an ECDHE key pair and a
//!   random cookie stored in that state before the HelloVerifyRequest goes out: state and
//!   public-key work per spoofed ClientHello, with the same second-ClientHello obstacle for a
//!   stateless front. It also pulls in `ring`, `rustls`, `rcgen`, `x509-parser` and `rkyv`.
//! - **openssl** (system OpenSSL 3.0; per the issue's trial, not retried): both CCM_8
//!   suites and `DTLSv1_listen`, but PSK hints and DTLS timers need FFI outside the safe
//!   crate API, which `unsafe_code = "forbid"` rules out, and it is C.
//!
//! # Raw public keys (RFC 7250) and Connection ID (RFC 9146)
//!
//! Neither is in dimpl 0.9, nor in any other Rust DTLS crate.
//!
//! *Raw public keys.* dimpl does not send or parse the `client_certificate_type` /
//! `server_certificate_type` extensions (RFC 7250 §3; its registry has the numbers, 19 and
//! 20, nothing uses them); its Certificate message only knows the X.509 `certificate_list`
//! form, not the bare `ASN.1_subjectPublicKeyInfo` of §3; a local identity is a
//! `DtlsCertificate` (certificate + key) and `SignatureVerifier::verify_signature` takes a
//! DER *certificate*, so there is no way to sign with or verify against a bare key; the peer
//! is surfaced only as `Output::PeerCert`. Without forking, Corium can (1) contribute it
//! upstream (the maintainer welcomes extensions, README "Regarding DTLS 1.3 and the future
//! of this crate"): negotiate the two extensions, add the SPKI Certificate variant, a
//! `ConfigBuilder` option for a raw key pair, SPKI-based verification (RustCrypto
//! `p256::ecdsa::VerifyingKey::from_public_key_der`; webpki's `RawPublicKeyEntity` does the
//! same for rustls, which added RFC 7250 in rustls PR #2062), and an `Output::PeerPublicKey`;
//! Corium would then add `PeerIdentity::RawPublicKey { spki }` checked against a key store,
//! as for PSK; (2) meanwhile, pin self-signed certificates by SPKI hash in certificate mode
//! (works with peers that speak X.509, not with devices configured for RPK only). A C
//! engine with RPK (tinydtls, or OpenSSL ≥ 3.2) would need FFI, i.e. another crate with
//! `unsafe`.
//!
//! *Connection ID.* dimpl has no `connection_id` extension (54), no `tls12_cid` record type
//! (25) with its inner content type and padding, no RFC 9146 §5 AAD, and no way to tell a
//! caller which CID a datagram carries (its DTLS 1.3 side discards records with the CID
//! bit). Upstream: dimpl issue #93 (open; the maintainer: "I don't mind if we support it")
//! and pull request #104 "Implement and harden DTLS 1.2 Connection ID (RFC 9146)" (open).
//! Once that lands, Corium needs no fork: [`DimplEngine`] asks each server session for a
//! CID it chooses, [`EngineSession`] reports it, and [`DtlsEndpoint`] looks up
//! `tls12_cid` records by CID before the address (the `record` module already parses
//! headers), moving the session to the new address only after a record from it
//! authenticates with a newer sequence number (RFC 9146 §6).

mod cert;
mod config;
mod dimpl_engine;
mod endpoint;
mod engine;
mod error;
mod native;
mod rate;
mod recent;
mod record;

pub use config::{parse_key, ClientConfig, DtlsConfig, PskMap, PskStore, ServerConfig};
pub use dimpl_engine::{DimplEngine, DimplSession};
pub use endpoint::{DtlsEndpoint, DtlsStats, Event, SessionId};
pub use engine::{
    Accept, DropReason, DtlsEngine, EngineSession, PeerIdentity, Role, SessionOutput,
};
pub use error::{
    AlertDescription, CertificateError, CloseReason, ConfigError, ConnectError, DtlsError,
    SendError, UnknownSession,
};
#[doc(hidden)]
pub use native::fuzzing as native_fuzzing;
pub use native::{EngineChoice, NativePskEngine, NativePskSession, SelectEngine, SelectSession};

pub use bytes::Bytes;
pub use corium_proto::Instant;
