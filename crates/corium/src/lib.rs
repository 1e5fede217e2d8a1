//! `corium`: an async CoAP (RFC 7252) client and server on tokio.
//!
//! This crate is the runtime layer of Corium, a thin driver over the sans-IO endpoint of
//! [`corium_proto`] in the way `quinn` drives `quinn-proto`. Each UDP socket gets one
//! driver task that owns an [`proto::Endpoint`]; client handles and request handlers talk
//! to it through a channel.
//!
//! # Data flow
//!
//! ```text
//!  socket ──datagram──► driver task ──handle_datagram(now, peer, bytes)──► Endpoint
//!                                                                             │
//!   wire:    corium-wire parses a checked view (header, token, options, payload)
//!   proto:   dedup (§4.5) → message layer (CON/NON/ACK/RST, §4) → token match (§5.3)
//!                                                                             │
//!            ┌──────────────────────── poll_event() ◄───────────────────────┘
//!            ├─ Event::Response / RequestFailed ──► the awaiting Client future
//!            └─ Event::Request ──► Router ──► handler task ──Respond──► driver
//!                                                                    │
//!  socket ◄──poll_transmit()── Endpoint ◄──respond / send_request────┘
//!  timers:   the driver sleeps until poll_timeout(), then calls handle_timeout(now)
//! ```
//!
//! The application sees [`Request`] and [`Response`] (code, options, payload); message
//! types, message IDs, tokens, retransmission and deduplication stay in the endpoint.
//!
//! # RFCs covered
//! - RFC 7252: the message layer and request/response semantics via [`corium_proto`];
//!   here, URI → options (§6.4), method dispatch (§5.8, 4.04 and 4.05 in §5.9.2),
//!   separate responses for slow handlers (§5.2.2), `/.well-known/core` (§7.2).
//! - RFC 6690: link format and query filtering for `/.well-known/core` (§4.1).
//! - RFC 8132: FETCH, PATCH and iPATCH handlers.
//! - RFC 7641: observable resources ([`Observable`]) and observations
//!   ([`Client::observe`], [`Observation`]).
//! - RFC 8613 (OSCORE): protected requests for matching URIs ([`OscoreClient`]),
//!   resources that require OSCORE ([`OscoreServer`]), sequence numbers persisted
//!   across restarts ([`SequenceFile`]); see [`oscore`] for the data flow. The protocol
//!   itself is [`corium_oscore`].
//!
//! # Example
//!
//! ```no_run
//! use corium::{Client, Code, RequestContext, Resource, Response, Router, Server};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let router = Router::new()
//!         .route("/hello", Resource::new()
//!             .get(|_ctx: RequestContext| async { Response::with_payload(Code::CONTENT, "world") })
//!             .rt("greeting"))
//!         .route("/things/{id}", Resource::new()
//!             .get(|ctx: RequestContext| async move {
//!                 Response::with_payload(Code::CONTENT, format!("thing {}", ctx.param("id").unwrap_or("?")))
//!             }));
//!     let server = Server::builder().bind(&["127.0.0.1:5683".parse()?], router).await?;
//!     tokio::spawn(server.run_until(std::future::pending()));
//!
//!     let client = Client::bind("[::]:0".parse()?).await?;
//!     let response = client.get("coap://127.0.0.1/hello").await?;
//!     assert_eq!(response.code, Code::CONTENT);
//!     assert_eq!(response.payload, b"world");
//!     Ok(())
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod driver;
mod dtls;
pub mod edhoc;
mod error;
pub mod multicast;
mod observe;
pub mod oscore;
mod resource;
mod router;
mod server;
mod tcp;
pub mod tls;
mod udp;
mod well_known;
mod ws;

pub use client::{Client, ClientBuilder, Progress, RequestBuilder};
pub use driver::Direction;
pub use error::Error;
pub use observe::{Observable, Observation};
pub use oscore::{OscoreClient, OscoreServer, SequenceFile, PERSIST_STEP, REBOOT_MARGIN};
pub use resource::{continue_block1, Handler, HandlerFuture, Resource, ResourceAttrs};
pub use router::Router;
pub use server::{OscoreIdentity, RequestContext, Server, ServerBuilder, DEFAULT_SHUTDOWN_GRACE};
pub use tcp::{StreamLimits, DEFAULT_STREAM_MESSAGE_SIZE, WRITE_BACKLOG};
pub use udp::{canonical as canonical_addr, MAX_DATAGRAM_SIZE, SOCKET_BUFFER_SIZE};

pub use corium_dtls;
pub use corium_oscore;
pub use corium_proto::wire::{self, Code, ContentFormat, OptionNumber};
pub use corium_proto::{
    self as proto, AmplificationLimit, EndpointConfig, NotifyOptions, Options, Request,
    RequestOptions, Response, TransmissionParameters,
};
