//! CoAP over DTLS (`coaps://`, RFC 7252 §9): the glue between a UDP socket, a sans-IO
//! [`corium_dtls::DtlsEndpoint`] and the driver's CoAP endpoint.
//!
//! The CoAP endpoint stays keyed by the peer's address: one DTLS session per address
//! (RFC 9146 Connection IDs are not available in the engine). Received datagrams go to
//! the DTLS endpoint; each decrypted record is one CoAP message in the UDP format
//! (RFC 7252 §9.1) for [`Endpoint::handle_datagram`]. Each CoAP transmit becomes one
//! record of the peer's session; a client opens the session on the first message to an
//! address, and the DTLS endpoint holds messages until the handshake completes.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use corium_dtls::{
    ClientConfig, CloseReason, DtlsConfig, DtlsEndpoint, Event, PeerIdentity, SessionId,
};
use corium_proto::{Endpoint, Instant};
use tokio::net::UdpSocket;

use crate::driver::{Direction, TraceFn};
use crate::udp::{canonical, BoundSocket, Family, MAX_DATAGRAM_SIZE};

/// Failures remembered per address (for the requests' errors); beyond it, the oldest
/// entries are forgotten.
const MAX_FAILURES: usize = 4096;

/// One UDP socket carrying DTLS sessions.
pub(crate) struct DtlsLink {
    pub(crate) socket: UdpSocket,
    pub(crate) family: Family,
    buf: Vec<u8>,
    pub(crate) dtls: DtlsEndpoint,
    /// Set for a client: sessions are opened on demand.
    client: Option<ClientConfig>,
    /// The verified identity of each established session's peer (RFC 7252 §9.1.1).
    identities: HashMap<SocketAddr, Arc<str>>,
    /// Why the last handshake with an address failed (client side).
    pub(crate) failures: HashMap<SocketAddr, (io::ErrorKind, String)>,
}

impl DtlsLink {
    /// A DTLS link over a bound socket: a server if `server` is given, a client if
    /// `client` is; `limits` bounds its sessions and handshakes.
    pub(crate) fn new(
        bound: BoundSocket,
        server: Option<corium_dtls::ServerConfig>,
        client: Option<ClientConfig>,
        limits: DtlsConfig,
    ) -> io::Result<(DtlsLink, SocketAddr)> {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::from_entropy();
        let dtls = DtlsEndpoint::new(limits, server, &mut rng)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))?;
        Ok((
            DtlsLink {
                socket: bound.socket,
                family: bound.family,
                buf: vec![0; MAX_DATAGRAM_SIZE],
                dtls,
                client,
                identities: HashMap::new(),
                failures: HashMap::new(),
            },
            bound.local,
        ))
    }

    /// The verified identity of `peer` (the PSK identity, or `cert:` and the certificate's
    /// size for certificate mode), if its session is established.
    pub(crate) fn identity(&self, peer: SocketAddr) -> Option<Arc<str>> {
        self.identities.get(&peer).cloned()
    }

    /// If a client handshake with `peer` is still running: why its request got no
    /// answer.
    pub(crate) fn pending_handshake(&self, peer: SocketAddr) -> Option<String> {
        self.client.as_ref()?;
        let session = self.dtls.session_by_addr(peer)?;
        (!self.dtls.is_established(session)).then(|| {
            format!(
                "DTLS handshake with {peer} did not complete (wrong PSK identity or key, or no DTLS server there)"
            )
        })
    }

    /// Reads up to `batch` datagrams without blocking and hands them to the DTLS
    /// endpoint.
    pub(crate) fn receive(&mut self, now: Instant, batch: usize) {
        for _ in 0..batch {
            match self.socket.try_recv_from(&mut self.buf) {
                Ok((len, from)) => {
                    let peer = canonical(from);
                    self.dtls.handle_datagram(now, peer, &self.buf[..len]);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => tracing::debug!(%err, "DTLS receive failed"),
            }
        }
    }

    /// Routes the DTLS endpoint's events: application data to the CoAP endpoint.
    /// Returns the addresses whose client handshake failed (their requests fail).
    pub(crate) fn events(
        &mut self,
        now: Instant,
        endpoint: &mut Endpoint<SocketAddr>,
        trace: Option<&TraceFn>,
    ) -> Vec<SocketAddr> {
        let mut failed = Vec::new();
        while let Some(event) = self.dtls.poll_event() {
            match event {
                Event::HandshakeComplete {
                    addr,
                    identity,
                    session,
                    ..
                } => {
                    tracing::debug!(%addr, %session, "DTLS handshake complete");
                    self.failures.remove(&addr);
                    let name: Arc<str> = match identity {
                        PeerIdentity::Psk { identity } => String::from_utf8_lossy(&identity).into(),
                        PeerIdentity::Certificate { end_entity } => {
                            format!("certificate ({} bytes DER)", end_entity.len()).into()
                        }
                        other => format!("{other:?}").into(),
                    };
                    self.identities.insert(addr, name);
                }
                Event::ApplicationData { session, bytes } => {
                    let Some(addr) = self.dtls.session_addr(session) else {
                        continue;
                    };
                    if let Some(trace) = trace {
                        trace(Direction::Received, addr, None, &bytes);
                    }
                    endpoint.handle_datagram(now, addr, &bytes);
                }
                Event::Closed {
                    addr,
                    reason,
                    session,
                } => {
                    tracing::debug!(%addr, %session, %reason, "DTLS session closed");
                    let was_established = self.identities.remove(&addr).is_some();
                    let clean = matches!(
                        reason,
                        CloseReason::Local | CloseReason::PeerClosed | CloseReason::IdleTimeout
                    );
                    if self.client.is_some() && !was_established && !clean {
                        if self.failures.len() >= MAX_FAILURES {
                            self.failures.clear();
                        }
                        let kind = match reason {
                            CloseReason::HandshakeTimeout => io::ErrorKind::TimedOut,
                            _ => io::ErrorKind::PermissionDenied,
                        };
                        self.failures
                            .insert(addr, (kind, format!("DTLS handshake failed: {reason}")));
                        failed.push(addr);
                    }
                }
            }
        }
        failed
    }

    /// Encrypts one CoAP message for `peer` (opening a client session if needed).
    /// Returns `false` if no session to `peer` can be opened (the reason is in
    /// `failures`).
    pub(crate) fn send(&mut self, now: Instant, peer: SocketAddr, payload: &[u8]) -> bool {
        let session: SessionId = match self.dtls.session_by_addr(peer) {
            Some(session) => session,
            None => {
                let Some(config) = &self.client else {
                    tracing::debug!(%peer, "no DTLS session; dropped");
                    return true;
                };
                match self.dtls.connect(now, peer, config) {
                    Ok(session) => session,
                    Err(err) => {
                        tracing::debug!(%peer, %err, "DTLS connect refused");
                        if self.failures.len() >= MAX_FAILURES {
                            self.failures.clear();
                        }
                        self.failures.insert(
                            peer,
                            (io::ErrorKind::Other, format!("DTLS connect refused: {err}")),
                        );
                        return false;
                    }
                }
            }
        };
        if let Err(err) = self.dtls.send(now, session, payload) {
            tracing::debug!(%peer, %err, "DTLS send failed");
        }
        true
    }

    /// Sends every datagram the DTLS endpoint has queued.
    pub(crate) async fn flush(&mut self) {
        while let Some((addr, datagram)) = self.dtls.poll_transmit() {
            let Some(to) = self.family.to_socket(addr) else {
                tracing::debug!(%addr, "unreachable address family; dropped");
                continue;
            };
            let result = match self.socket.try_send_to(&datagram, to) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.socket.send_to(&datagram, to).await
                }
                other => other,
            };
            if let Err(err) = result {
                tracing::debug!(%addr, %err, "DTLS send failed");
            }
        }
    }
}
