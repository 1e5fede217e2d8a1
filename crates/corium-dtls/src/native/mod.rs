//! The native DTLS 1.2 engine for PSK mode: TLS_PSK_WITH_AES_128_CCM_8 (RFC 6655), the
//! CoAP mandatory PSK suite (RFC 7252 §9.1.3.1, RFC 7925 §4.2), server and client roles,
//! written for small idle sessions.
//!
//! | Module | Job |
//! |---|---|
//! | `record` | record framing, epochs, 48-bit sequence numbers, AES-128-CCM-8, anti-replay window (RFC 6347 §4.1, RFC 6655 §3) |
//! | `messages` | handshake messages, fragmentation and reassembly (RFC 6347 §4.2.3, RFC 4279 §2) |
//! | `prf` | TLS 1.2 PRF, PSK premaster, (extended) master secret, key block, Finished (RFC 5246 §5, §8.1, RFC 7627) |
//! | `session` | the per-peer state machine, flight retransmission (RFC 6347 §4.2.4), alerts |
//! | `engine` | stateless HelloVerifyRequest cookies, session factory |
//! | `select` | [`SelectEngine`]: native for PSK, dimpl for certificates |
//!
//! An established session keeps the two direction keys (raw, 2 × 20 bytes), epochs and
//! sequence numbers, the replay window, the peer identity and (server) 12 bytes to resend
//! its Finished; the handshake's state is freed when it completes.
//!
//! What it negotiates: DTLS 1.2 only, no session resumption (empty session id), no
//! compression, `extended_master_secret` (RFC 7627) when the client offers it (this
//! client always does), an empty `renegotiation_info` (RFC 5746) when the client signals
//! it; renegotiation is refused with a `no_renegotiation` warning. No Connection ID
//! (RFC 9146) yet.

mod engine;
mod messages;
mod prf;
mod record;
mod select;
mod session;

pub use engine::NativePskEngine;
pub use select::{EngineChoice, SelectEngine, SelectSession};
pub use session::NativePskSession;

pub(crate) use prf::constant_time_eq;

/// Entry points for the fuzz target: parse untrusted bytes the way the engine does.
#[doc(hidden)]
pub mod fuzzing {
    /// Runs the handshake-message parsers and the reassembler over `data`.
    pub fn parse_handshake(data: &[u8]) {
        if let Some(frags) = super::messages::fragments(data) {
            let mut r: Option<super::messages::Reassembly> = None;
            for f in &frags {
                match &mut r {
                    Some(r) => {
                        let _ = r.add(f);
                    }
                    None => r = super::messages::Reassembly::new(f),
                }
                let _ = super::messages::parse_client_hello(f.body);
                let _ = super::messages::parse_server_hello(f.body);
                let _ = super::messages::parse_hello_verify_request(f.body);
                let _ = super::messages::parse_psk_identity_field(f.body);
            }
        }
        let _ = super::messages::parse_client_hello(data);
        let _ = super::messages::parse_server_hello(data);
    }
}

#[cfg(test)]
mod tests;
