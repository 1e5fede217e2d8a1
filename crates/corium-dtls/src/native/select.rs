//! [`SelectEngine`]: the engine [`DtlsEndpoint::new`](crate::DtlsEndpoint::new) builds,
//! which hands PSK work to the native engine or to dimpl as
//! [`DtlsConfig::engine`](crate::DtlsConfig::engine) says.

use std::net::SocketAddr;

use corium_proto::rand_core::RngCore;
use corium_proto::Instant;

use super::engine::NativePskEngine;
use super::session::NativePskSession;
use crate::config::{ClientConfig, ClientCredentials, DtlsConfig, ServerConfig};
use crate::dimpl_engine::{DimplEngine, DimplSession};
use crate::engine::{Accept, DtlsEngine, EngineSession, SessionOutput};
use crate::error::{CloseReason, ConfigError, DtlsError};

/// Which engine runs which sessions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EngineChoice {
    /// [`DimplEngine`] for every session.
    Dimpl,
    /// [`NativePskEngine`] for PSK: server sessions of a server configured for PSK only,
    /// and client sessions with PSK credentials. Certificate mode (and servers that offer
    /// both modes) stay on [`DimplEngine`]. The default: it passes every DTLS test and
    /// libcoap interop test (OpenSSL and GnuTLS builds, both directions) and keeps idle
    /// sessions small.
    #[default]
    NativePsk,
}

/// A [`DimplEngine`] and, per [`EngineChoice`], a [`NativePskEngine`] beside it.
#[derive(Debug)]
pub struct SelectEngine {
    dimpl: DimplEngine,
    native: Option<NativePskEngine>,
    /// The native engine answers ClientHellos.
    native_server: bool,
}

impl SelectEngine {
    /// Engines for `config.engine`, serving `server` if given.
    pub fn new(
        config: &DtlsConfig,
        server: Option<ServerConfig>,
        rng: &mut dyn RngCore,
    ) -> Result<Self, ConfigError> {
        let native_server = config.engine == EngineChoice::NativePsk
            && server
                .as_ref()
                .is_some_and(|s| s.has_psk() && !s.has_certificate());
        let native = match config.engine {
            EngineChoice::NativePsk => Some(NativePskEngine::new(
                config,
                server.clone().filter(|_| native_server),
                rng,
            )?),
            EngineChoice::Dimpl => None,
        };
        let dimpl = DimplEngine::new(config, server, rng)?;
        Ok(SelectEngine {
            dimpl,
            native,
            native_server,
        })
    }
}

/// A session of either engine (dimpl's boxed: it is kilobytes; the native one inline,
/// which is what the size difference is about).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum SelectSession {
    /// A [`DimplEngine`] session.
    Dimpl(Box<DimplSession>),
    /// A [`NativePskEngine`] session.
    Native(NativePskSession),
}

impl DtlsEngine for SelectEngine {
    type Session = SelectSession;

    fn accept(&mut self, now: Instant, addr: SocketAddr, datagram: &[u8]) -> Accept<SelectSession> {
        match (&mut self.native, self.native_server) {
            (Some(native), true) => match native.accept(now, addr, datagram) {
                Accept::Session(s) => Accept::Session(SelectSession::Native(s)),
                Accept::Reply(r) => Accept::Reply(r),
                Accept::Drop(d) => Accept::Drop(d),
            },
            _ => match self.dimpl.accept(now, addr, datagram) {
                Accept::Session(s) => Accept::Session(SelectSession::Dimpl(Box::new(s))),
                Accept::Reply(r) => Accept::Reply(r),
                Accept::Drop(d) => Accept::Drop(d),
            },
        }
    }

    fn connect(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        config: &ClientConfig,
    ) -> Result<SelectSession, DtlsError> {
        match (&mut self.native, &config.credentials) {
            (Some(native), ClientCredentials::Psk { .. }) => {
                native.connect(now, addr, config).map(SelectSession::Native)
            }
            _ => self
                .dimpl
                .connect(now, addr, config)
                .map(|s| SelectSession::Dimpl(Box::new(s))),
        }
    }
}

macro_rules! both {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            SelectSession::Dimpl($s) => $e,
            SelectSession::Native($s) => $e,
        }
    };
}

impl EngineSession for SelectSession {
    fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        both!(self, s => s.handle_datagram(now, datagram))
    }
    fn handle_timeout(&mut self, now: Instant) {
        both!(self, s => s.handle_timeout(now))
    }
    fn poll_timeout(&self) -> Option<Instant> {
        both!(self, s => s.poll_timeout())
    }
    fn poll_output(&mut self) -> Option<SessionOutput> {
        both!(self, s => s.poll_output())
    }
    fn send(&mut self, now: Instant, data: &[u8]) -> Result<(), DtlsError> {
        both!(self, s => s.send(now, data))
    }
    fn close(&mut self, now: Instant, reason: CloseReason) {
        both!(self, s => s.close(now, reason))
    }
    fn client_random(&self) -> Option<[u8; 32]> {
        both!(self, s => s.client_random())
    }
}
