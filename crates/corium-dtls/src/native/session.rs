//! The per-peer state machine of the native engine: the PSK handshake of RFC 4279 §2 over
//! DTLS 1.2 (RFC 6347 §4.2), flight retransmission (§4.2.4), then the established session.
//!
//! Everything the handshake needs (transcript hash, randoms, master secret, the flight for
//! retransmission, reassembly buffers, the PSK store) lives in a boxed [`Handshake`] that
//! is dropped when the handshake completes. An established session keeps the two
//! direction keys, epochs and sequence numbers, the replay window, the peer identity, and
//! (server) the 12-byte `verify_data` needed to answer a retransmitted client flight.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corium_proto::Instant;
use sha2::{Digest, Sha256};

use super::messages::{self, msg_type, Fragment, Reassembly, PSK_AES128_CCM_8};
use super::prf::{self, constant_time_eq};
use super::record::{self as rl, DirectionKey, ReplayWindow, MAX_SEQUENCE};
use crate::config::PskStore;
use crate::engine::{EngineSession, PeerIdentity, Role, SessionOutput};
use crate::error::{AlertDescription, CloseReason, DtlsError};
use crate::record::{content_type, records, HANDSHAKE_HEADER_LEN, RECORD_HEADER_LEN};

/// Record content type `application_data` (RFC 5246 §6.2.1).
const APPLICATION_DATA: u8 = 23;
/// `no_renegotiation` warning alert (RFC 5246 §7.2.2).
const NO_RENEGOTIATION: u8 = 100;
/// Longest retransmission timeout (RFC 6347 §4.2.4.1: at least 60 s is allowed).
const MAX_RTO: Duration = Duration::from_secs(60);
/// Length of a protected record fragment that carries a whole Finished message:
/// explicit nonce, handshake header, 12-byte `verify_data` (RFC 5246 §7.4.9), CCM_8 tag.
const FINISHED_RECORD_LEN: usize = rl::EXPLICIT_NONCE_LEN + HANDSHAKE_HEADER_LEN + 12 + rl::TAG_LEN;

/// Handshake timers and sizes from [`DtlsConfig`](crate::DtlsConfig).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timings {
    pub(crate) rto: Duration,
    pub(crate) retries: usize,
    pub(crate) mtu: usize,
}

/// Where the handshake is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Client: ClientHello sent; HelloVerifyRequest or ServerHello expected.
    ClientWaitHello,
    /// Client: ServerHello received; ServerKeyExchange or ServerHelloDone expected.
    ClientWaitHelloDone,
    /// Client: final flight sent; the server's ChangeCipherSpec and Finished expected.
    ClientWaitFinished,
    /// Server: ServerHello flight sent; ClientKeyExchange expected.
    ServerWaitKeyExchange,
    /// Server: ClientKeyExchange received; ChangeCipherSpec and Finished expected.
    ServerWaitFinished,
}

/// One element of a flight, kept to be re-recorded (with fresh sequence numbers) on
/// retransmission.
#[derive(Debug)]
enum FlightItem {
    /// A whole handshake message (header and body) in the given epoch.
    Handshake { epoch: u16, message: Vec<u8> },
    /// A ChangeCipherSpec record (epoch 0).
    ChangeCipherSpec,
}

/// Where the pre-shared key comes from.
enum Credentials {
    /// Client: the configured identity and key.
    Client { key: Bytes },
    /// Server: the store, and the hint sent in ServerKeyExchange.
    Server { store: Arc<dyn PskStore> },
}

/// Handshake-only state, dropped once the session is established.
struct Handshake {
    step: Step,
    transcript: Sha256,
    client_random: [u8; 32],
    server_random: [u8; 32],
    /// `message_seq` of our next handshake message.
    send_seq: u16,
    /// `message_seq` of the next message expected from the peer.
    recv_seq: u16,
    reassembly: Option<Reassembly>,
    flight: Vec<FlightItem>,
    timings: Timings,
    rto: Duration,
    retransmits: usize,
    master: Option<[u8; 48]>,
    ems: bool,
    /// The peer's write key, used once its ChangeCipherSpec arrives.
    pending_read: Option<DirectionKey>,
    credentials: Credentials,
    /// Server: whether the store knew the client's identity.
    identity_known: bool,
    /// HelloVerifyRequests answered (client), bounded.
    hello_verifies: u8,
    /// `message_seq` that starts the peer's flight we are waiting for: a message below it
    /// is a retransmission of an older flight (ours was lost, RFC 6347 §4.2.4), one at or
    /// above it a duplicate within the current flight.
    peer_flight_start: u16,
    /// An epoch-1 record failed to authenticate (RFC 6347 §4.1.2.7: dropped): if the
    /// handshake then times out, the keys most likely differ.
    decrypt_failed: bool,
    /// Record sequence number of the first Finished-sized epoch-1 record that failed
    /// to authenticate; a second one with another number ends the handshake.
    bad_finished_seq: Option<u64>,
    /// When the flight was last resent because of a peer's packet (rate limit).
    last_resend: Option<Instant>,
}

impl Handshake {
    fn hash_message(&mut self, msg_type: u8, message_seq: u16, body: &[u8]) {
        self.transcript
            .update(messages::header(msg_type, body.len(), message_seq));
        self.transcript.update(body);
    }

    fn transcript_hash(&self) -> [u8; 32] {
        self.transcript.clone().finalize().into()
    }

    /// Builds our next message, hashes it and returns it whole.
    fn next_message(&mut self, msg_type: u8, body: &[u8]) -> Vec<u8> {
        let seq = self.send_seq;
        self.send_seq = self.send_seq.wrapping_add(1);
        self.hash_message(msg_type, seq, body);
        messages::message(msg_type, seq, body)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Handshaking,
    Connected,
    Done,
}

/// A session of [`NativePskEngine`](super::NativePskEngine).
pub struct NativePskSession {
    role: Role,
    state: State,
    hs: Option<Box<Handshake>>,
    read_epoch: u16,
    write_epoch: u16,
    /// Next record sequence number in epoch 0 and in epoch 1.
    write_seq: [u64; 2],
    read_key: Option<DirectionKey>,
    write_key: Option<DirectionKey>,
    replay: ReplayWindow,
    identity: Bytes,
    client_random: Option<[u8; 32]>,
    /// Server: our Finished `verify_data` and its `message_seq`, to resend our last
    /// flight while the client may not have it (RFC 6347 §4.2.4); cleared by the first
    /// authenticated application data from the client.
    final_flight: Option<([u8; 12], u16)>,
    outputs: VecDeque<SessionOutput>,
    timeout: Option<Instant>,
    /// The final flight was resent for the datagram being handled.
    resent_in_datagram: bool,
}

impl std::fmt::Debug for NativePskSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativePskSession")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("step", &self.hs.as_ref().map(|h| h.step))
            .field("write_seq", &self.write_seq)
            .finish_non_exhaustive()
    }
}

impl NativePskSession {
    fn new(role: Role, hs: Handshake, identity: Bytes) -> Self {
        NativePskSession {
            role,
            state: State::Handshaking,
            hs: Some(Box::new(hs)),
            read_epoch: 0,
            write_epoch: 0,
            write_seq: [0, 0],
            read_key: None,
            write_key: None,
            replay: ReplayWindow::default(),
            identity,
            client_random: None,
            final_flight: None,
            outputs: VecDeque::new(),
            timeout: None,
            resent_in_datagram: false,
        }
    }

    /// A client session; its ClientHello is queued.
    pub(crate) fn client(
        now: Instant,
        timings: Timings,
        identity: Bytes,
        key: Bytes,
        random: [u8; 32],
    ) -> Self {
        let hs = Handshake {
            step: Step::ClientWaitHello,
            transcript: Sha256::new(),
            client_random: random,
            server_random: [0; 32],
            send_seq: 0,
            recv_seq: 0,
            reassembly: None,
            flight: Vec::new(),
            timings,
            rto: timings.rto,
            retransmits: 0,
            master: None,
            ems: false,
            pending_read: None,
            credentials: Credentials::Client { key },
            identity_known: true,
            hello_verifies: 0,
            peer_flight_start: 0,
            decrypt_failed: false,
            bad_finished_seq: None,
            last_resend: None,
        };
        let mut s = NativePskSession::new(Role::Client, hs, identity);
        s.send_client_hello(now, &[]);
        s
    }

    /// A server session for a cookie-verified ClientHello (the transcript starts with it,
    /// RFC 6347 §4.2.1); its ServerHello flight is queued.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn server(
        now: Instant,
        timings: Timings,
        store: Arc<dyn PskStore>,
        hint: Option<&[u8]>,
        client_hello: (&messages::ClientHelloInfo<'_>, u16, &[u8]),
        record_seq: u64,
        server_random: [u8; 32],
    ) -> Self {
        let (ch, message_seq, body) = client_hello;
        let mut hs = Handshake {
            step: Step::ServerWaitKeyExchange,
            transcript: Sha256::new(),
            client_random: ch.random,
            server_random,
            // RFC 6347 §4.2.2: after a stateless HelloVerifyRequest the ServerHello
            // carries the message_seq of the ClientHello it answers.
            send_seq: message_seq,
            recv_seq: message_seq.wrapping_add(1),
            reassembly: None,
            flight: Vec::new(),
            timings,
            rto: timings.rto,
            retransmits: 0,
            master: None,
            ems: ch.ems,
            pending_read: None,
            credentials: Credentials::Server { store },
            identity_known: false,
            hello_verifies: 0,
            peer_flight_start: 0,
            decrypt_failed: false,
            bad_finished_seq: None,
            last_resend: None,
        };
        hs.hash_message(msg_type::CLIENT_HELLO, message_seq, body);
        hs.peer_flight_start = hs.recv_seq;
        let mut flight = Vec::with_capacity(3);
        let sh = messages::server_hello(&server_random, ch.ems, ch.secure_renegotiation);
        flight.push(hs.next_message(msg_type::SERVER_HELLO, &sh));
        if let Some(hint) = hint {
            let ske = messages::psk_identity_field(hint);
            flight.push(hs.next_message(msg_type::SERVER_KEY_EXCHANGE, &ske));
        }
        flight.push(hs.next_message(msg_type::SERVER_HELLO_DONE, &[]));
        hs.flight = flight
            .into_iter()
            .map(|message| FlightItem::Handshake { epoch: 0, message })
            .collect();
        let mut s = NativePskSession::new(Role::Server, hs, Bytes::new());
        s.client_random = Some(ch.random);
        // RFC 6347 §4.2.1: a stateless server continues from the ClientHello's record
        // sequence number.
        s.write_seq[0] = record_seq;
        s.transmit_flight();
        s.arm_timer(now);
        s
    }

    fn send_client_hello(&mut self, now: Instant, cookie: &[u8]) {
        let Some(hs) = self.hs.as_mut() else { return };
        // RFC 6347 §4.2.1: the transcript starts with the ClientHello that carries the
        // cookie; the first ClientHello and the HelloVerifyRequest are left out.
        hs.transcript = Sha256::new();
        let body = messages::client_hello(&hs.client_random, cookie);
        let ch = hs.next_message(msg_type::CLIENT_HELLO, &body);
        hs.flight = vec![FlightItem::Handshake {
            epoch: 0,
            message: ch,
        }];
        hs.retransmits = 0;
        hs.rto = hs.timings.rto;
        hs.peer_flight_start = hs.recv_seq;
        self.transmit_flight();
        self.arm_timer(now);
    }

    fn arm_timer(&mut self, now: Instant) {
        self.timeout = self.hs.as_ref().map(|hs| now + hs.rto);
    }

    /// Records and queues the current flight (RFC 6347 §4.2.4), fragmenting messages and
    /// packing records into datagrams of at most the MTU.
    fn transmit_flight(&mut self) {
        let Some(hs) = self.hs.take() else { return };
        let mtu = hs.timings.mtu;
        let mut datagram = Vec::new();
        for item in &hs.flight {
            match item {
                FlightItem::ChangeCipherSpec => {
                    let mut rec = Vec::new();
                    self.record(&mut rec, 0, content_type::CHANGE_CIPHER_SPEC, &[1]);
                    self.pack(&mut datagram, rec, mtu);
                }
                FlightItem::Handshake { epoch, message } => {
                    let overhead = RECORD_HEADER_LEN
                        + HANDSHAKE_HEADER_LEN
                        + if *epoch == 0 {
                            0
                        } else {
                            rl::EXPLICIT_NONCE_LEN + rl::TAG_LEN
                        };
                    for frag in messages::fragment_message(message, mtu.saturating_sub(overhead)) {
                        let mut rec = Vec::new();
                        self.record(&mut rec, *epoch, content_type::HANDSHAKE, &frag);
                        self.pack(&mut datagram, rec, mtu);
                    }
                }
            }
        }
        if !datagram.is_empty() {
            self.outputs
                .push_back(SessionOutput::Transmit(Bytes::from(datagram)));
        }
        self.hs = Some(hs);
    }

    fn pack(&mut self, datagram: &mut Vec<u8>, rec: Vec<u8>, mtu: usize) {
        if !datagram.is_empty() && datagram.len() + rec.len() > mtu {
            let full = std::mem::take(datagram);
            self.outputs
                .push_back(SessionOutput::Transmit(Bytes::from(full)));
        }
        datagram.extend_from_slice(&rec);
    }

    /// Appends one record in `epoch` (0: plaintext, 1: protected) with the next sequence
    /// number of that epoch.
    fn record(&mut self, out: &mut Vec<u8>, epoch: u16, ty: u8, payload: &[u8]) -> bool {
        let i = usize::from(epoch != 0);
        let seq = self.write_seq[i];
        if seq > MAX_SEQUENCE {
            return false; // RFC 6347 §4.1: never wrap; the session must be renegotiated
        }
        self.write_seq[i] += 1;
        if epoch == 0 {
            rl::write_plain(out, ty, seq, payload);
            true
        } else if let Some(key) = &self.write_key {
            rl::write_protected(out, key, ty, 1, seq, payload);
            true
        } else {
            false
        }
    }

    fn transmit_record(&mut self, epoch: u16, ty: u8, payload: &[u8]) -> bool {
        let mut out = Vec::with_capacity(payload.len() + rl::OVERHEAD);
        let ok = self.record(&mut out, epoch, ty, payload);
        if ok && !out.is_empty() {
            self.outputs
                .push_back(SessionOutput::Transmit(Bytes::from(out)));
        }
        ok
    }

    fn alert(&mut self, level: u8, description: u8) {
        let epoch = self.write_epoch;
        self.transmit_record(epoch, content_type::ALERT, &[level, description]);
    }

    fn finish(&mut self, reason: CloseReason) {
        self.state = State::Done;
        self.hs = None;
        self.final_flight = None;
        self.timeout = None;
        self.outputs.push_back(SessionOutput::Closed(reason));
    }

    /// A local failure: a fatal alert (RFC 5246 §7.2.2), then the end.
    fn fail(&mut self, error: DtlsError) {
        if self.state == State::Done {
            return;
        }
        self.alert(2, error.alert().0);
        self.finish(CloseReason::Failed(error));
    }

    fn established(&mut self) {
        self.hs = None;
        self.timeout = None;
        self.state = State::Connected;
        self.outputs
            .push_back(SessionOutput::Connected(PeerIdentity::Psk {
                identity: self.identity.clone(),
            }));
    }

    /// Server: resends CCS and Finished after the handshake (the client's final flight
    /// came again, so ours was lost).
    fn resend_final_flight(&mut self) {
        let Some((verify, seq)) = self.final_flight else {
            return;
        };
        let mut dg = Vec::new();
        self.record(&mut dg, 0, content_type::CHANGE_CIPHER_SPEC, &[1]);
        let fin = messages::message(msg_type::FINISHED, seq, &verify);
        self.record(&mut dg, 1, content_type::HANDSHAKE, &fin);
        self.outputs
            .push_back(SessionOutput::Transmit(Bytes::from(dg)));
    }

    fn on_record(&mut self, epoch: u16, ty: u8, plain: &[u8], retransmit: &mut bool) {
        match ty {
            content_type::CHANGE_CIPHER_SPEC => {
                if plain != [1] || epoch != 0 {
                    return;
                }
                let Some(hs) = self.hs.as_mut() else { return };
                // Only when the peer's Finished is the next message expected.
                if !matches!(hs.step, Step::ClientWaitFinished | Step::ServerWaitFinished) {
                    return;
                }
                if let Some(key) = hs.pending_read.take() {
                    self.read_key = Some(key);
                    self.read_epoch = 1;
                }
            }
            content_type::ALERT => {
                let [level, description] = plain else { return };
                // Plaintext alerts are not authenticated: once the peer's records are
                // protected, only protected alerts count.
                if epoch != self.read_epoch {
                    return;
                }
                if *description == AlertDescription::CLOSE_NOTIFY.0 {
                    if self.state == State::Connected {
                        // RFC 5246 §7.2.1: answer close_notify with close_notify.
                        self.alert(1, 0);
                    }
                    self.finish(CloseReason::PeerClosed);
                } else if *level == 2 {
                    self.finish(CloseReason::PeerAlert(AlertDescription(*description)));
                }
            }
            content_type::HANDSHAKE => {
                if self.state == State::Connected {
                    self.handshake_after_connected(epoch, plain);
                    return;
                }
                let Some(frags) = messages::fragments(plain) else {
                    // Unauthenticated garbage is dropped (RFC 6347 §4.1.2.7).
                    if epoch != 0 {
                        self.fail(DtlsError::Engine("malformed handshake record".into()));
                    }
                    return;
                };
                for f in frags {
                    if self.state != State::Handshaking {
                        return;
                    }
                    self.on_fragment(epoch, &f, retransmit);
                }
            }
            APPLICATION_DATA if self.state == State::Connected && epoch == 1 => {
                self.final_flight = None;
                self.outputs
                    .push_back(SessionOutput::ApplicationData(Bytes::copy_from_slice(
                        plain,
                    )));
            }
            _ => {}
        }
    }

    fn handshake_after_connected(&mut self, epoch: u16, plain: &[u8]) {
        let Some(frags) = messages::fragments(plain) else {
            return;
        };
        for f in frags {
            match (self.role, f.msg_type) {
                // RFC 5246 §7.4.1.1 / §7.4.1.2: renegotiation is refused with a warning.
                (Role::Client, msg_type::HELLO_REQUEST)
                | (Role::Server, msg_type::CLIENT_HELLO)
                    if epoch == 1 =>
                {
                    self.alert(1, NO_RENEGOTIATION);
                    return;
                }
                // The client's final flight again: ours was lost. Only for its
                // authenticated Finished, so spoofed plaintext cannot trigger it.
                (Role::Server, msg_type::FINISHED) if epoch == 1 => {
                    if !std::mem::replace(&mut self.resent_in_datagram, true) {
                        self.resend_final_flight();
                    }
                    return;
                }
                _ => {}
            }
        }
    }

    fn on_fragment(&mut self, epoch: u16, f: &Fragment<'_>, retransmit: &mut bool) {
        let Some(hs) = self.hs.as_mut() else { return };
        // RFC 5246 §7.4.1.1: a HelloRequest during the handshake is ignored.
        if f.msg_type == msg_type::HELLO_REQUEST {
            return;
        }
        // The peer's Finished is the only protected handshake message, and always is.
        let expected_epoch = u16::from(matches!(
            hs.step,
            Step::ClientWaitFinished | Step::ServerWaitFinished
        ));
        // Before the ServerHello the client takes the server's numbering: the expected
        // value, or after a cookie exchange the one before it (servers use 0 or 1). It is
        // adopted only once the ServerHello parses (`on_message`).
        let hello = hs.step == Step::ClientWaitHello
            && f.msg_type == msg_type::SERVER_HELLO
            && epoch == 0
            && (f.message_seq == hs.recv_seq
                || (hs.hello_verifies > 0 && f.message_seq == hs.recv_seq.wrapping_sub(1)));
        if !hello {
            if f.message_seq < hs.peer_flight_start {
                // RFC 6347 §4.2.4: the peer retransmitted an older flight; ours was lost.
                *retransmit = true;
                return;
            }
            if f.message_seq != hs.recv_seq {
                // Below: a duplicate within the flight being received; above: a later
                // message out of order, dropped (the peer retransmits).
                return;
            }
            if epoch != expected_epoch {
                return;
            }
        }
        let added = hs
            .reassembly
            .as_mut()
            .map(|r| (r.add_in(f, epoch), r.epoch));
        match added {
            Some((true, _)) => {}
            // RFC 6347 §4.1.2.7: an unauthenticated fragment that contradicts the
            // reassembly restarts it (a spoofed first fragment cannot block the
            // peer's retransmissions); an authenticated one replaces an unauthenticated
            // reassembly and is otherwise a protocol error.
            Some((false, r_epoch)) if epoch != 0 && r_epoch == epoch => {
                self.fail(DtlsError::Engine("inconsistent handshake fragments".into()));
                return;
            }
            _ => match Reassembly::new_in(f, epoch) {
                Some(r) => hs.reassembly = Some(r),
                None if epoch == 0 => return,
                None => {
                    self.fail(DtlsError::Engine("handshake message too long".into()));
                    return;
                }
            },
        }
        let Some(r) = hs.reassembly.take_if(|r| r.complete().is_some()) else {
            return;
        };
        let before = hs.recv_seq;
        hs.recv_seq = r.message_seq.wrapping_add(1);
        let body = r.complete().unwrap_or_default().to_vec();
        if !self.on_message(epoch, r.msg_type, r.message_seq, &body) {
            // Ignored: the message number is still expected.
            if let Some(hs) = self.hs.as_mut() {
                hs.recv_seq = before;
            }
        }
    }

    /// Handles one whole handshake message; `false` if it was ignored (unauthenticated
    /// and malformed or unexpected: RFC 6347 §4.1.2.7), leaving the state unchanged.
    fn on_message(&mut self, epoch: u16, ty: u8, seq: u16, body: &[u8]) -> bool {
        let Some(step) = self.hs.as_ref().map(|h| h.step) else {
            return false;
        };
        match (step, ty) {
            (Step::ClientWaitHello, msg_type::HELLO_VERIFY_REQUEST) if epoch == 0 => {
                let Some(cookie) = messages::parse_hello_verify_request(body) else {
                    return false;
                };
                let Some(hs) = self.hs.as_mut() else {
                    return false;
                };
                hs.hello_verifies += 1;
                if hs.hello_verifies > 4 {
                    self.fail(DtlsError::Engine("too many HelloVerifyRequests".into()));
                    return true;
                }
                let cookie = cookie.to_vec();
                // The flight timer is re-armed by `handle_datagram`, which knows `now`.
                self.send_client_hello(Instant::ZERO, &cookie);
            }
            (Step::ClientWaitHello, msg_type::SERVER_HELLO) if epoch == 0 => {
                let Some(sh) = messages::parse_server_hello(body) else {
                    return false;
                };
                if sh.version != 0xfefd {
                    self.fail(DtlsError::ProtocolVersion);
                    return true;
                }
                if sh.cipher_suite != PSK_AES128_CCM_8 || sh.compression != 0 {
                    self.fail(DtlsError::NoCommonCipherSuite);
                    return true;
                }
                if sh.bad_extension {
                    self.fail(DtlsError::Engine("unsolicited extension".into()));
                    return true;
                }
                let Some(hs) = self.hs.as_mut() else {
                    return false;
                };
                hs.hash_message(ty, seq, body);
                hs.server_random = sh.random;
                hs.ems = sh.ems;
                hs.step = Step::ClientWaitHelloDone;
                // The server's numbering, adopted now that the ServerHello parsed.
                hs.peer_flight_start = seq;
            }
            (Step::ClientWaitHelloDone, msg_type::SERVER_KEY_EXCHANGE) if epoch == 0 => {
                // The identity hint (RFC 4279 §2); RFC 7925 §4.2: not relied upon.
                if messages::parse_psk_identity_field(body).is_none() {
                    return false;
                }
                if let Some(hs) = self.hs.as_mut() {
                    hs.hash_message(ty, seq, body);
                }
            }
            (Step::ClientWaitHelloDone, msg_type::SERVER_HELLO_DONE) if epoch == 0 => {
                if !body.is_empty() {
                    return false;
                }
                self.client_final_flight(ty, seq, body);
            }
            (Step::ClientWaitFinished, msg_type::FINISHED) if epoch == 1 => {
                let Some(hs) = self.hs.as_ref() else {
                    return false;
                };
                let Some(master) = hs.master else {
                    return false;
                };
                let expected = prf::verify_data(&master, false, &hs.transcript_hash());
                if constant_time_eq(&expected, body) {
                    self.established();
                } else {
                    self.fail(DtlsError::AuthenticationFailed);
                }
            }
            (Step::ServerWaitKeyExchange, msg_type::CLIENT_KEY_EXCHANGE) if epoch == 0 => {
                if messages::parse_psk_identity_field(body).is_none() {
                    return false;
                }
                self.server_key_exchange(ty, seq, body);
            }
            (Step::ServerWaitFinished, msg_type::FINISHED) if epoch == 1 => {
                self.server_finished(ty, seq, body);
            }
            // Unauthenticated and unexpected: dropped (RFC 6347 §4.1.2.7).
            _ if epoch == 0 => return false,
            _ => self.fail(DtlsError::Engine(format!(
                "unexpected handshake message {ty}"
            ))),
        }
        true
    }

    /// Client: ServerHelloDone received; ClientKeyExchange, ChangeCipherSpec, Finished.
    fn client_final_flight(&mut self, ty: u8, seq: u16, body: &[u8]) {
        let identity = self.identity.clone();
        let Some(hs) = self.hs.as_mut() else { return };
        hs.hash_message(ty, seq, body);
        let Credentials::Client { key } = &hs.credentials else {
            return;
        };
        let premaster = prf::psk_premaster(key);
        let cke = hs.next_message(
            msg_type::CLIENT_KEY_EXCHANGE,
            &messages::psk_identity_field(&identity),
        );
        let session_hash = hs.transcript_hash();
        let master = prf::master_secret(
            &premaster,
            &hs.client_random,
            &hs.server_random,
            hs.ems.then_some(&session_hash),
        );
        let keys = prf::key_block(&master, &hs.client_random, &hs.server_random);
        hs.master = Some(master);
        hs.pending_read = Some(DirectionKey {
            key: keys.server_key,
            iv: keys.server_iv,
        });
        let verify = prf::verify_data(&master, true, &hs.transcript_hash());
        let fin = hs.next_message(msg_type::FINISHED, &verify);
        hs.flight = vec![
            FlightItem::Handshake {
                epoch: 0,
                message: cke,
            },
            FlightItem::ChangeCipherSpec,
            FlightItem::Handshake {
                epoch: 1,
                message: fin,
            },
        ];
        hs.step = Step::ClientWaitFinished;
        hs.retransmits = 0;
        hs.rto = hs.timings.rto;
        hs.peer_flight_start = hs.recv_seq;
        self.write_key = Some(DirectionKey {
            key: keys.client_key,
            iv: keys.client_iv,
        });
        self.write_epoch = 1;
        self.transmit_flight();
    }

    /// Server: ClientKeyExchange received (RFC 4279 §2).
    fn server_key_exchange(&mut self, ty: u8, seq: u16, body: &[u8]) {
        let Some(identity) = messages::parse_psk_identity_field(body) else {
            return self.fail(DtlsError::Engine("malformed ClientKeyExchange".into()));
        };
        let identity = Bytes::copy_from_slice(identity);
        let Some(hs) = self.hs.as_mut() else { return };
        hs.hash_message(ty, seq, body);
        let Credentials::Server { store } = &hs.credentials else {
            return;
        };
        // An unknown identity goes on with an unusable key and fails at the Finished
        // check, so the client cannot tell it from a wrong key (RFC 4279 §2 allows
        // decrypt_error for it; RFC 7925 §4.2).
        let key = if identity.len() <= 128 {
            store.lookup(&identity)
        } else {
            None
        };
        hs.identity_known = key.is_some();
        let premaster = prf::psk_premaster(key.as_deref().unwrap_or(&[0u8; 16]));
        let session_hash = hs.transcript_hash();
        let master = prf::master_secret(
            &premaster,
            &hs.client_random,
            &hs.server_random,
            hs.ems.then_some(&session_hash),
        );
        let keys = prf::key_block(&master, &hs.client_random, &hs.server_random);
        hs.master = Some(master);
        hs.pending_read = Some(DirectionKey {
            key: keys.client_key,
            iv: keys.client_iv,
        });
        hs.step = Step::ServerWaitFinished;
        self.write_key = Some(DirectionKey {
            key: keys.server_key,
            iv: keys.server_iv,
        });
        self.identity = identity;
    }

    /// Server: the client's Finished; ours goes out and the session is established.
    fn server_finished(&mut self, ty: u8, seq: u16, body: &[u8]) {
        let Some(hs) = self.hs.as_mut() else { return };
        let Some(master) = hs.master else { return };
        let expected = prf::verify_data(&master, true, &hs.transcript_hash());
        if !constant_time_eq(&expected, body) || !hs.identity_known {
            let error = if hs.identity_known {
                DtlsError::AuthenticationFailed
            } else {
                DtlsError::UnknownPskIdentity
            };
            return self.fail(error);
        }
        hs.hash_message(ty, seq, body);
        let verify = prf::verify_data(&master, false, &hs.transcript_hash());
        let fin_seq = hs.send_seq;
        self.write_epoch = 1;
        self.final_flight = Some((verify, fin_seq));
        self.resend_final_flight();
        self.established();
    }

    /// The error for a handshake that failed on the peer's Finished: with a PSK that is
    /// a wrong key (or, server, an unknown identity).
    fn key_mismatch(&self) -> DtlsError {
        if self.hs.as_ref().is_none_or(|h| h.identity_known) {
            DtlsError::AuthenticationFailed
        } else {
            DtlsError::UnknownPskIdentity
        }
    }

    /// An epoch-1 record failed to authenticate during the handshake. RFC 6347 §4.1.2.7:
    /// it is dropped, since anyone can forge one. It is remembered: a handshake that then
    /// times out reports the key mismatch, and a second Finished-sized record that fails
    /// under another sequence number (the peer's retransmitted Finished) ends it at once.
    /// So does one in the same datagram as the message that made us wait for the
    /// Finished (`same_datagram`): whoever can forge that one can spoil the handshake
    /// anyway, so failing there gives nothing new to an attacker.
    fn handshake_decrypt_failure(
        &mut self,
        ty: u8,
        sequence: u64,
        len: usize,
        same_datagram: bool,
    ) {
        let Some(hs) = self.hs.as_mut() else { return };
        hs.decrypt_failed = true;
        if ty != content_type::HANDSHAKE || len != FINISHED_RECORD_LEN {
            return;
        }
        if same_datagram {
            let error = self.key_mismatch();
            return self.fail(error);
        }
        match hs.bad_finished_seq {
            Some(first) if first != sequence => {
                let error = self.key_mismatch();
                self.fail(error);
            }
            Some(_) => {}
            None => hs.bad_finished_seq = Some(sequence),
        }
    }
}

impl EngineSession for NativePskSession {
    fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if self.state == State::Done {
            return;
        }
        let mut retransmit = false;
        self.resent_in_datagram = false;
        let step_before = self.hs.as_ref().map(|h| (h.step, h.send_seq));
        for rec in records(datagram) {
            if self.state == State::Done {
                break;
            }
            // OpenSSL sends its HelloVerifyRequest with the DTLS 1.0 record version.
            if rec.version != 0xfefd && rec.version != 0xfeff {
                continue;
            }
            match rec.epoch {
                0 => self.on_record(0, rec.content_type, rec.fragment, &mut retransmit),
                1 if self.read_epoch == 1 => {
                    let Some(key) = &self.read_key else { continue };
                    if !self.replay.check(rec.sequence) {
                        continue; // RFC 6347 §4.1.2.6
                    }
                    match rl::open(key, rec.content_type, 1, rec.sequence, rec.fragment) {
                        Some(plain) => {
                            self.replay.accept(rec.sequence);
                            self.on_record(1, rec.content_type, &plain, &mut retransmit);
                        }
                        // RFC 6347 §4.1.2.7: invalid records are dropped (during the
                        // handshake they are remembered: different keys).
                        None if self.state == State::Handshaking => {
                            let step = self.hs.as_ref().map(|h| h.step);
                            let same_datagram = step != step_before.map(|(s, _)| s);
                            self.handshake_decrypt_failure(
                                rec.content_type,
                                rec.sequence,
                                rec.fragment.len(),
                                same_datagram,
                            );
                        }
                        None => {}
                    }
                }
                _ => {}
            }
        }
        if self.state != State::Handshaking {
            return;
        }
        let step_after = self.hs.as_ref().map(|h| (h.step, h.send_seq));
        if step_after != step_before {
            // A new flight went out.
            self.arm_timer(now);
        } else if retransmit {
            // At most one resend per half retransmission timeout: the trigger is an
            // unauthenticated packet, which anyone can send (RFC 6347 §4.2.4).
            let Some(hs) = self.hs.as_mut() else { return };
            if hs.last_resend.is_some_and(|t| now < t + hs.rto / 2) {
                return;
            }
            hs.last_resend = Some(now);
            self.transmit_flight();
            self.arm_timer(now);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.state != State::Handshaking || self.timeout.is_none_or(|t| t > now) {
            return;
        }
        let Some(hs) = self.hs.as_mut() else { return };
        // The server's last flight is only resent when the client's comes again.
        if hs.retransmits >= hs.timings.retries {
            if hs.decrypt_failed {
                let error = self.key_mismatch();
                self.fail(error);
            } else {
                self.finish(CloseReason::HandshakeTimeout);
            }
            return;
        }
        hs.retransmits += 1;
        hs.rto = (hs.rto * 2).min(MAX_RTO);
        hs.last_resend = Some(now);
        self.transmit_flight();
        self.arm_timer(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timeout
    }

    fn poll_output(&mut self) -> Option<SessionOutput> {
        let output = self.outputs.pop_front();
        if output.is_none() && self.state != State::Handshaking && self.outputs.capacity() != 0 {
            // An idle established session holds no queue memory.
            self.outputs = VecDeque::new();
        }
        output
    }

    fn send(&mut self, _now: Instant, data: &[u8]) -> Result<(), DtlsError> {
        if self.state != State::Connected {
            return Err(DtlsError::Engine("session not established".into()));
        }
        if data.len() > 16_384 {
            return Err(DtlsError::Engine("record too large".into()));
        }
        if self.transmit_record(1, APPLICATION_DATA, data) {
            Ok(())
        } else {
            let error = DtlsError::Engine("sequence numbers exhausted".into());
            self.finish(CloseReason::Failed(error.clone()));
            Err(error)
        }
    }

    fn close(&mut self, _now: Instant, reason: CloseReason) {
        match self.state {
            State::Done => {}
            State::Connected => {
                self.alert(1, AlertDescription::CLOSE_NOTIFY.0);
                self.finish(reason);
            }
            // A handshake timing out after a Finished failed to authenticate: the keys
            // differ (see `handshake_decrypt_failure`).
            State::Handshaking
                if matches!(reason, CloseReason::HandshakeTimeout)
                    && self.hs.as_ref().is_some_and(|h| h.decrypt_failed) =>
            {
                let error = self.key_mismatch();
                self.fail(error);
            }
            State::Handshaking => self.finish(reason),
        }
    }

    fn client_random(&self) -> Option<[u8; 32]> {
        self.client_random
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::records;

    /// Client and server sessions wired directly (no cookie exchange), with an MTU so
    /// small that every handshake message is fragmented (RFC 6347 §4.2.3), and datagrams
    /// delivered in reverse order within each burst.
    #[test]
    fn fragmented_handshake_in_reverse_order() {
        let timings = Timings {
            rto: Duration::from_secs(1),
            retries: 4,
            mtu: 60,
        };
        let now = Instant::ZERO;
        let identity = Bytes::from_static(b"a-rather-long-psk-identity-to-fragment");
        let key = Bytes::from_static(b"secretPSK");
        let mut client =
            NativePskSession::client(now, timings, identity.clone(), key.clone(), [1; 32]);
        // The ClientHello comes in fragments too: reassemble it as the engine's caller
        // would not (the engine takes unfragmented ClientHellos only).
        let mut reassembly: Option<Reassembly> = None;
        let mut first_seq = None;
        while let Some(SessionOutput::Transmit(d)) = client.poll_output() {
            assert!(d.len() <= 60);
            for rec in records(&d) {
                first_seq.get_or_insert(rec.sequence);
                for f in messages::fragments(rec.fragment).unwrap() {
                    match &mut reassembly {
                        Some(r) => assert!(r.add(&f)),
                        None => reassembly = Reassembly::new(&f),
                    }
                }
            }
        }
        let reassembly = reassembly.unwrap();
        let body = reassembly.complete().unwrap().to_vec();
        let ch = messages::parse_client_hello(&body).unwrap();
        let frag_seq = reassembly.message_seq;
        let store: Arc<dyn PskStore> =
            Arc::new(move |id: &[u8]| (id == &identity[..]).then(|| key.to_vec()));
        let mut server = NativePskSession::server(
            now,
            timings,
            store,
            Some(&[b'h'; 100]),
            (&ch, frag_seq, &body),
            first_seq.unwrap(),
            [2; 32],
        );
        let mut connected = [false; 2];
        for _ in 0..10 {
            let mut burst = Vec::new();
            while let Some(o) = server.poll_output() {
                match o {
                    SessionOutput::Transmit(d) => {
                        // The final ChangeCipherSpec + Finished (67 bytes) always go
                        // together: the smallest configurable MTU is 256.
                        assert!(d.len() <= 60 || d[0] == 20, "{} bytes", d.len());
                        burst.push(d);
                    }
                    SessionOutput::Connected(_) => connected[0] = true,
                    other => panic!("server: {other:?}"),
                }
            }
            for d in burst.iter().rev() {
                client.handle_datagram(now, d);
            }
            let mut burst = Vec::new();
            while let Some(o) = client.poll_output() {
                match o {
                    SessionOutput::Transmit(d) => burst.push(d),
                    SessionOutput::Connected(_) => connected[1] = true,
                    other => panic!("client: {other:?}"),
                }
            }
            for d in burst.iter().rev() {
                server.handle_datagram(now, d);
            }
            if connected == [true, true] {
                break;
            }
            // Out-of-order later messages are dropped: the retransmission timer recovers.
            let t = [client.poll_timeout(), server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            if let Some(t) = t {
                client.handle_timeout(t);
                server.handle_timeout(t);
            }
        }
        assert_eq!(connected, [true, true]);
        assert!(
            client.hs.is_none() && server.hs.is_none(),
            "handshake state freed"
        );
        client.send(now, b"ping").unwrap();
        let Some(SessionOutput::Transmit(d)) = client.poll_output() else {
            panic!()
        };
        while server.poll_output().is_some() {}
        server.handle_datagram(now, &d);
        assert_eq!(
            server.poll_output(),
            Some(SessionOutput::ApplicationData(Bytes::from_static(b"ping")))
        );
    }
}
