//! CoAP over reliable transports (RFC 8323) under untrusted bytes: the TCP framing and
//! a server `Endpoint` in stream mode.
//!
//! The first input byte picks the framing (bit 0: WebSocket) and whether a valid CSM is
//! sent first (bit 1); the rest is the peer's byte stream. For TCP it is cut into
//! messages with `frame_len` exactly as the runtime does (a limit of 1152 bytes); for
//! WebSockets it is cut into frames by a leading length byte. Every message goes to the
//! endpoint with `handle_stream_message`, a framing error with `handle_stream_error`.
//!
//! Asserted: `frame_len` never announces fewer bytes than the header it read, and never
//! more than the limit; every message the endpoint transmits parses with the endpoint's
//! framing; once the endpoint asks to close the connection (`poll_close`, after an
//! Abort or a Release) and the close is reported back, nothing of it is left; tables
//! stay within the configured limits.
#![no_main]

use corium_proto::wire::{frame_len, Code, Framing, StreamMessage};
use corium_proto::{Endpoint, EndpointConfig, Event, Instant, Response};
use libfuzzer_sys::fuzz_target;
use rand::rngs::SmallRng;
use rand::SeedableRng;

const MAX_MESSAGE: usize = 1152;
const PEER: u8 = 7;

fn config(framing: Framing) -> EndpointConfig {
    EndpointConfig {
        framing: Some(framing),
        max_message_size: MAX_MESSAGE,
        max_server_exchanges: 16,
        max_server_exchanges_per_peer: 8,
        max_observations: 8,
        ..EndpointConfig::default()
    }
}

fn drain(ep: &mut Endpoint<u8>, now: Instant, framing: Framing, closed: &mut bool) {
    while let Some(event) = ep.poll_event() {
        if let Event::Request(req) = event {
            let mut response = Response::new(Code::CONTENT);
            response.payload = vec![0x61; 3000]; // Cut into blocks for the peer.
            let _ = if req.observe == Some(0) {
                ep.respond_observe(now, req.id, response).map(|_| ())
            } else {
                ep.respond(now, req.id, response)
            };
        }
    }
    while let Some(t) = ep.poll_transmit() {
        let msg = StreamMessage::parse(framing, &t.payload, 1 << 17)
            .unwrap_or_else(|e| panic!("endpoint sent a malformed message ({e}): {:x?}", t.payload));
        let _ = msg.code();
    }
    while ep.poll_close().is_some() {
        *closed = true;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let framing = if mode & 1 == 0 {
        Framing::Tcp
    } else {
        Framing::WebSocket
    };
    let mut ep = Endpoint::new(config(framing), Box::new(SmallRng::seed_from_u64(1)));
    let mut now = Instant::ZERO;
    let mut closed = false;
    ep.handle_connected(now, PEER);
    if mode & 2 != 0 {
        ep.handle_stream_message(now, PEER, &[0x00, 0xe1]);
    }
    drain(&mut ep, now, framing, &mut closed);
    let mut steps = 0;
    while !rest.is_empty() && !closed && steps < 256 {
        steps += 1;
        now = now + std::time::Duration::from_millis(50);
        ep.handle_timeout(now);
        match framing {
            Framing::Tcp => match frame_len(rest, MAX_MESSAGE, 32) {
                Ok(Some(n)) => {
                    assert!(n >= 2 && n <= MAX_MESSAGE, "frame_len {n}");
                    if n > rest.len() {
                        break; // Truncated: the runtime would wait for more.
                    }
                    let (msg, tail) = rest.split_at(n);
                    ep.handle_stream_message(now, PEER, msg);
                    rest = tail;
                }
                Ok(None) => break,
                Err(err) => {
                    ep.handle_stream_error(now, PEER, err);
                    rest = &[];
                }
            },
            Framing::WebSocket => {
                let len = usize::from(rest[0]).min(rest.len() - 1);
                ep.handle_stream_message(now, PEER, &rest[1..1 + len]);
                rest = &rest[1 + len..];
            }
        }
        drain(&mut ep, now, framing, &mut closed);
        let s = ep.stats();
        assert!(s.server_exchanges <= 16, "{s:?}");
        assert!(s.observations <= 8, "{s:?}");
    }
    if closed {
        // The runtime closes the socket and reports it; then nothing of the
        // connection is left.
        ep.handle_disconnected(now, PEER);
        let mut again = false;
        drain(&mut ep, now, framing, &mut again);
        assert_eq!(ep.connection_count(), 0, "a closed connection is forgotten");
        assert_eq!(ep.stats().server_exchanges, 0);
        assert_eq!(ep.stats().observations, 0);
    }
});
