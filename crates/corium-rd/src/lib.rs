//! A CoRE Resource Directory (RFC 9176) for Corium.
//!
//! The directory has three layers:
//!
//! - [`RdState`]: the registrations and every rule of RFC 9176 that does not need I/O:
//!   registration with (ep, d) collision handling under the "First Come First
//!   Remembered" policy (§5, §7.5), registration update and removal (§5.3), lifetimes
//!   against a `now` the caller passes in, and lookup (§6) with filtering on any
//!   attribute (trailing `*` for prefixes, RFC 6690 §4.1), `page` / `count`, and links
//!   resolved against the registration's base URI as §6.1 and Appendix B describe.
//!   Changes are planned ([`Mutation`]) and applied in two steps so they can be made
//!   durable in between.
//!   Filtered lookups use an index of attribute values (every attribute but `href` and
//!   `anchor`; trailing-`*` prefixes as ordered ranges), so they touch only the
//!   registrations that can match, then filter those exactly as a full scan would.
//! - [`RegistrationStore`]: where registrations are kept: [`RedbStore`] (an embedded
//!   database file; every acknowledged change is fsync'ed before the answer) or
//!   [`MemoryStore`]. Changes that arrive while a commit is running are committed
//!   together in the next one (group commit, one fsync for all of them); each is
//!   answered only once its commit is durable. Expiry times are stored as wall-clock seconds and turned back into
//!   remaining lifetimes when the RD starts again.
//! - [`ResourceDirectory`]: the RD on a corium [`Server`](corium::Server): discovery
//!   through `/.well-known/core?rt=core.rd*` (§4.3), `/rd` (§5), `/rd/{id}` (§5.3),
//!   `/.well-known/rd` simple registration (§5.1, fetching the endpoint's
//!   `/.well-known/core` with a corium [`Client`](corium::Client)), and the observable
//!   lookups `/rd-lookup/ep` and `/rd-lookup/res` (§6, RFC 7641).
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use corium::{Client, Code, Server};
//! use corium_rd::{RdConfig, RedbStore, ResourceDirectory};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(RedbStore::open_dir("./corium-rd-data")?);
//! let rd = ResourceDirectory::open(RdConfig::default(), store).await?;
//! let server = Server::builder().bind(&["127.0.0.1:5683".parse()?], rd.router()).await?;
//! tokio::spawn(server.run_until(std::future::pending()));
//!
//! let client = Client::bind("127.0.0.1:0".parse()?).await?;
//! let created = client
//!     .post("coap://127.0.0.1/rd?ep=node1&base=coap://[2001:db8::1]", "</temp>;rt=temperature")
//!     .await?;
//! assert_eq!(created.code, Code::CREATED);
//! let found = client.get("coap://127.0.0.1/rd-lookup/res?rt=temp*").await?;
//! assert_eq!(found.payload, b"<coap://[2001:db8::1]/temp>;rt=temperature");
//! # Ok(()) }
//! ```
//!
//! # Security
//!
//! The access policy ([`AccessPolicy`]) is RFC 9176 §7.5 "First Come First
//! Remembered": a registration can be updated, removed or replaced, while it is
//! active, only by the identity that made it. An OSCORE-protected request is
//! identified by the security context that verified it ([`corium::RequestContext::oscore`]:
//! the client's Sender ID and ID Context, [`SecurityKind::Oscore`]), a request over DTLS
//! by the PSK identity its peer proved ([`corium::RequestContext::security`],
//! [`Requester::secured`]), both whatever the address; a plain-CoAP request by its
//! transport address (and, by default, port). Echo freshness of registration updates (§5.3.4) is
//! available with [`RdConfig::fresh_updates`].
//!
//! # Limits
//!
//! Every table a peer can grow is bounded ([`RdConfig`], documented constants in
//! [`config`]): registrations, links per registration, payload bytes, link bytes in
//! all, extra attributes, lookup result links and bytes, tracked observed queries,
//! simple registrations in flight and cached documents.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
mod error;
mod formats;
mod index;
mod links;
mod params;
mod redb_store;
mod service;
mod state;
mod store;
mod uri;

pub use config::{AccessPolicy, RdConfig};
pub use error::{RdError, FULL_RETRY_AFTER_SECS};
pub use params::{LookupQuery, RegistrationParams};
pub use redb_store::{RedbStore, CACHE_SIZE as REDB_CACHE_SIZE, DATABASE_FILE};
pub use service::{
    ResourceDirectory, ENDPOINT_LOOKUP_PATH, RESOURCE_LOOKUP_PATH, SIMPLE_REGISTRATION_PATH,
};
pub use state::{
    Identity, LookupKind, Mutation, RdState, Registration, Requester, SecurityKind, ENDPOINT_RT,
    REGISTRATION_PATH,
};
pub use store::{
    Loaded, MemoryStore, RegistrationStore, StoreError, StoreFuture, StoreOp, StoredRegistration,
};
pub use uri::{check_base_uri, default_base, resolve as resolve_reference};
