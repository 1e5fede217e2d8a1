//! The RD's state, without I/O: registrations, the (ep, d) index, the First Come First
//! Remembered policy (RFC 9176 §7.5), lifetimes against a `now` passed in, and lookup
//! (RFC 9176 §6) with resolved links (RFC 9176 §6.1, Appendix B).
//!
//! Changes are made in two steps so that the caller can make them durable first: a
//! `plan_*` method checks a request against the state and returns a [`Mutation`]
//! without changing anything; [`RdState::apply`] then applies it. The service commits
//! [`Mutation::store_ops`] to its store between the two, one mutation at a time.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Bound;
use std::time::{Duration, Instant};

use corium::wire::{matches_filter, parse_links, Link};

use crate::config::{AccessPolicy, RdConfig};
use crate::error::RdError;
use crate::formats;
use crate::index::{self, AttrIndex};
use crate::links::{self, PayloadError, StoredLink};
use crate::params::{LookupQuery, RegistrationParams};
use crate::store::{StoreOp, StoredRegistration};
use crate::uri;

/// The Uri-Path of the registration interface and the prefix of registration
/// resources (`/rd/<id>`).
pub const REGISTRATION_PATH: &str = "rd";

/// The resource type of endpoint links in endpoint lookups (RFC 9176 §6.4).
pub const ENDPOINT_RT: &str = "core.rd-ep";

/// The Content-Format of link format (RFC 6690 §7.3).
pub(crate) const LINK_FORMAT: u16 = 40;

/// Who makes a request, as the access policy sees it (RFC 9176 §7.5: "the RD MUST
/// determine the client's subject name or public key", or else its security session;
/// over plain CoAP, its transport address).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Identity(String);

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.0)
    }
}

impl Identity {
    /// The identity of a plain-CoAP requester under `policy`: its address and port
    /// ([`AccessPolicy::SameEndpoint`]), its address ([`AccessPolicy::SameHost`]), or
    /// one identity shared by everybody ([`AccessPolicy::Open`]).
    pub fn of_peer(policy: AccessPolicy, peer: SocketAddr) -> Identity {
        let peer = corium::canonical_addr(peer);
        Identity(match policy {
            AccessPolicy::SameEndpoint => format!("coap:{peer}"),
            AccessPolicy::SameHost => format!("coap-host:{}", peer.ip()),
            AccessPolicy::Open => "any".to_owned(),
        })
    }

    /// The identity of a requester that proved `identity` with a security protocol
    /// (RFC 9176 §7.5: "the RD MUST determine the client's subject name or public key"
    /// or its security association): the identity alone, whatever the address, unless
    /// `policy` is [`AccessPolicy::Open`].
    pub fn of_security(policy: AccessPolicy, kind: SecurityKind, identity: &str) -> Identity {
        if policy == AccessPolicy::Open {
            return Identity("any".to_owned());
        }
        let prefix = match kind {
            SecurityKind::DtlsPsk => "dtls-psk",
            SecurityKind::Oscore => "oscore",
        };
        let mut text = format!("{prefix}:");
        // Escape nothing but keep the identity unambiguous: its length comes first.
        text.push_str(&identity.len().to_string());
        text.push(':');
        text.push_str(identity);
        Identity(text)
    }

    /// An identity restored from its text form ([`Identity::as_str`]).
    pub fn from_text(text: impl Into<String>) -> Identity {
        Identity(text.into())
    }

    /// The text form, as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The security protocol that authenticated a requester ([`Identity::of_security`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecurityKind {
    /// DTLS with a pre-shared key: the PSK identity (RFC 7252 §9.1.3.1).
    DtlsPsk,
    /// OSCORE (RFC 8613): the security context, as its ID Context and Sender ID.
    Oscore,
}

/// A request's origin: its address (for the default base, RFC 9176 §5, and link-local
/// scoping, §6.1) and its identity (for the access policy, §7.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requester {
    /// The transport address the request came from.
    pub addr: SocketAddr,
    /// Who it is.
    pub identity: Identity,
}

impl Requester {
    /// A plain-CoAP requester under `policy`.
    pub fn new(addr: SocketAddr, policy: AccessPolicy) -> Requester {
        Requester {
            addr,
            identity: Identity::of_peer(policy, addr),
        }
    }

    /// A requester authenticated by `kind` as `identity`: the access policy binds its
    /// registrations to that identity, not to its address (RFC 9176 §7.5).
    pub fn secured(
        addr: SocketAddr,
        policy: AccessPolicy,
        kind: SecurityKind,
        identity: &str,
    ) -> Requester {
        Requester {
            addr,
            identity: Identity::of_security(policy, kind, identity),
        }
    }
}

/// One registration (RFC 9176 §3.3, Figure 3).
#[derive(Clone, Debug)]
pub struct Registration {
    id: u64,
    ep: String,
    sector: Option<String>,
    lifetime: u32,
    base: Option<String>,
    implicit_base: String,
    extra_attrs: Vec<(String, Option<String>)>,
    links_doc: Box<str>,
    expires: Instant,
    owner: Identity,
    simple: bool,
    link_local_scope: Option<u32>,
    /// The links rendered with target and anchor resolved (RFC 9176 §6.1), one after
    /// the other (no separator); link `i` ends at `resolved_ends[i]`. One allocation
    /// instead of one per link.
    resolved: Box<str>,
    resolved_ends: Box<[u32]>,
    /// The endpoint link of endpoint lookups (RFC 9176 §6.4), ending in
    /// `;rt=core.rd-ep`.
    endpoint_link: Box<str>,
    /// The length of `endpoint_link` without `;rt=core.rd-ep`: the endpoint's own
    /// attributes, which resource links inherit for matching (RFC 9176 §6.2).
    endpoint_attrs_len: usize,
    /// Whether `endpoint_link` and its attribute part parse as link format (checked
    /// once when rendered, so that lookups parse them only when a filter may match).
    endpoint_parses: [bool; 2],
}

impl Registration {
    /// The registration resource's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The registration resource's path, `/rd/<id>`.
    pub fn href(&self) -> String {
        format!("/{REGISTRATION_PATH}/{}", self.id)
    }

    /// The endpoint name, `ep`.
    pub fn ep(&self) -> &str {
        &self.ep
    }

    /// The sector, `d`.
    pub fn sector(&self) -> Option<&str> {
        self.sector.as_deref()
    }

    /// The lifetime in seconds, `lt`.
    pub fn lifetime(&self) -> u32 {
        self.lifetime
    }

    /// The base URI links are resolved against: the `base` parameter, or the one built
    /// from the requester's address (RFC 9176 §5).
    pub fn base(&self) -> &str {
        self.base.as_deref().unwrap_or(&self.implicit_base)
    }

    /// Whether `base` was given explicitly.
    pub fn has_explicit_base(&self) -> bool {
        self.base.is_some()
    }

    /// The extra endpoint attributes (`et`, unknown ones).
    pub fn extra_attrs(&self) -> &[(String, Option<String>)] {
        &self.extra_attrs
    }

    /// The registered link-format document, as submitted.
    pub fn links_document(&self) -> &str {
        &self.links_doc
    }

    /// The links with target and anchor resolved (RFC 9176 §6.1).
    pub fn resolved_links(&self) -> impl Iterator<Item = &str> + '_ {
        let mut start = 0;
        self.resolved_ends.iter().map(move |&end| {
            let end = end as usize;
            let link = &self.resolved[start..end];
            start = end;
            link
        })
    }

    /// The endpoint link as endpoint lookup shows it (RFC 9176 §6.4).
    pub fn endpoint_link(&self) -> &str {
        &self.endpoint_link
    }

    /// When the registration expires.
    pub fn expires(&self) -> Instant {
        self.expires
    }

    /// Whether it is active (not expired) at `now`.
    pub fn is_active(&self, now: Instant) -> bool {
        self.expires > now
    }

    /// Who registered it.
    pub fn owner(&self) -> &Identity {
        &self.owner
    }

    /// Whether it was made by simple registration (RFC 9176 §5.1).
    pub fn is_simple(&self) -> bool {
        self.simple
    }

    /// The memory it is charged for against [`RdConfig::max_total_payload`].
    fn cost(&self) -> usize {
        self.links_doc.len() + self.resolved.len() + self.endpoint_link.len()
    }

    /// Renders the resolved links and the endpoint link after a change.
    fn render(&mut self, links: &[StoredLink]) {
        let base = self.base().to_owned();
        let mut resolved = String::new();
        let mut ends = Vec::with_capacity(links.len());
        for l in links {
            l.render_resolved(&base, &mut resolved);
            // Payloads are bounded far below 4 GiB (RdConfig::max_payload).
            ends.push(u32::try_from(resolved.len()).unwrap_or(u32::MAX));
        }
        self.resolved = resolved.into_boxed_str();
        self.resolved_ends = ends.into_boxed_slice();
        let mut e = String::new();
        e.push('<');
        e.push_str(&self.href());
        e.push_str(">;ep=");
        links::write_value(&mut e, &self.ep);
        if let Some(d) = &self.sector {
            e.push_str(";d=");
            links::write_value(&mut e, d);
        }
        for (name, value) in &self.extra_attrs {
            e.push(';');
            e.push_str(name);
            if let Some(v) = value {
                e.push('=');
                links::write_value(&mut e, v);
            }
        }
        e.push_str(";base=");
        links::write_quoted(&mut e, &base);
        self.endpoint_attrs_len = e.len();
        e.push_str(";rt=");
        e.push_str(ENDPOINT_RT);
        self.endpoint_parses = [
            first_link(&e).is_some(),
            first_link(&e[..self.endpoint_attrs_len]).is_some(),
        ];
        self.endpoint_link = e.into_boxed_str();
    }

    /// The keys of the attribute index (its endpoint link and resolved links).
    fn index_keys(&self) -> Vec<(Box<str>, Box<str>)> {
        index::keys_of(std::iter::once(&*self.endpoint_link).chain(self.resolved_links()))
    }

    fn endpoint_attrs(&self) -> &str {
        &self.endpoint_link[..self.endpoint_attrs_len]
    }

    /// The record for the store, with the expiry converted by `to_wall` to Unix
    /// seconds.
    pub fn to_stored(&self, expires_at: u64) -> StoredRegistration {
        StoredRegistration {
            id: self.id,
            ep: self.ep.clone(),
            sector: self.sector.clone(),
            lifetime: self.lifetime,
            base: self.base.clone(),
            implicit_base: self.implicit_base.clone(),
            extra_attrs: self.extra_attrs.clone(),
            links: self.links_doc.to_string(),
            expires_at,
            owner: self.owner.0.clone(),
            simple: self.simple,
            link_local_scope: self.link_local_scope,
        }
    }

    /// Whether a lookup from `requester` may see it: registrations whose base is
    /// link-local only from the same link (RFC 9176 §6.1, §6.4).
    fn visible_to(&self, requester: Option<SocketAddr>) -> bool {
        let Some(scope) = self.link_local_scope else {
            return true;
        };
        match requester.map(corium::canonical_addr) {
            Some(SocketAddr::V6(v6)) => {
                (v6.ip().segments()[0] & 0xffc0) == 0xfe80 && v6.scope_id() == scope
            }
            Some(SocketAddr::V4(v4)) => v4.ip().is_link_local() && scope == 0,
            None => false,
        }
    }
}

/// A checked change, made by a `plan_*` method and applied by [`RdState::apply`] once
/// it is durable.
#[derive(Clone, Debug, Default)]
pub struct Mutation {
    puts: Vec<Registration>,
    removes: Vec<u64>,
    id: Option<u64>,
    created: bool,
    /// For an undo ([`RdState::undo_of`]): the first id to give out again.
    reset_next_id: Option<u64>,
}

impl Mutation {
    /// The registration the request was about (for the Location-Path of a
    /// registration).
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// Whether a new registration resource is created.
    pub fn is_created(&self) -> bool {
        self.created
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.removes.is_empty()
    }

    /// The ids removed.
    pub fn removed(&self) -> &[u64] {
        &self.removes
    }

    /// The operations to commit to a store; `to_wall` converts an expiry into Unix
    /// seconds.
    pub fn store_ops(&self, to_wall: impl Fn(Instant) -> u64) -> Vec<StoreOp> {
        self.removes
            .iter()
            .map(|&id| StoreOp::Remove(id))
            .chain(
                self.puts
                    .iter()
                    .map(|r| StoreOp::Put(r.to_stored(to_wall(r.expires)))),
            )
            .collect()
    }
}

/// Which lookup (RFC 9176 §6, Table 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LookupKind {
    /// Endpoint lookup, `rt=core.rd-lookup-ep` (§6.4).
    Endpoint,
    /// Resource lookup, `rt=core.rd-lookup-res` (§6.1).
    Resource,
}

/// The registrations of an RD.
#[derive(Debug)]
pub struct RdState {
    config: RdConfig,
    registrations: BTreeMap<u64, Registration>,
    /// (sector, ep) → id.
    by_name: HashMap<(Option<String>, String), u64>,
    next_id: u64,
    total_cost: usize,
    /// Attribute values → registrations, for filtered lookups.
    index: AttrIndex,
    /// Whether lookups use `index` (tests compare with full scans).
    use_index: bool,
    /// (expiry, id) of every registration, for expiry without scanning.
    expiry: BTreeSet<(Instant, u64)>,
    /// (expiry, id) of the simple registrations (removed at expiry, RFC 9176 §5.1).
    simple_expiry: BTreeSet<(Instant, u64)>,
}

fn lifetime_duration(lt: u32) -> Duration {
    Duration::from_secs(u64::from(lt))
}

/// The registration payload as RFC 6690 link format: as it is, or converted from the
/// JSON or CBOR link format (draft-ietf-core-links-json).
fn payload_text<'p>(
    payload: &'p [u8],
    content_format: Option<u16>,
    config: &RdConfig,
) -> Result<Cow<'p, str>, RdError> {
    if payload.len() > config.max_payload {
        return Err(RdError::PayloadTooLarge {
            limit: config.max_payload,
        });
    }
    let doc = match content_format {
        None | Some(LINK_FORMAT) => Cow::Borrowed(
            std::str::from_utf8(payload).map_err(|_| RdError::bad("link format must be UTF-8"))?,
        ),
        Some(formats::LINK_FORMAT_JSON) => Cow::Owned(formats::json_to_link_format(payload)?),
        Some(formats::LINK_FORMAT_CBOR) => Cow::Owned(formats::cbor_to_link_format(payload)?),
        Some(_) => return Err(RdError::UnsupportedContentFormat),
    };
    if doc.len() > config.max_payload {
        return Err(RdError::PayloadTooLarge {
            limit: config.max_payload,
        });
    }
    Ok(doc)
}

fn parse_links_checked(doc: &str, max_links: usize) -> Result<Vec<StoredLink>, RdError> {
    links::parse_payload(doc, max_links).map_err(|e| match e {
        PayloadError::Syntax(e) => RdError::bad(format!("malformed link format: {e}")),
        PayloadError::TooManyLinks => RdError::bad(format!("more than {max_links} links")),
    })
}

/// RFC 9176 §5: a link-local base "MUST be local to the link on which the
/// registration request is received": the scope (interface) the request came from.
fn link_local_scope(base: &str, requester: SocketAddr) -> Result<Option<u32>, RdError> {
    if !uri::is_link_local_base(base) {
        return Ok(None);
    }
    match corium::canonical_addr(requester) {
        SocketAddr::V6(v6) if (v6.ip().segments()[0] & 0xffc0) == 0xfe80 => Ok(Some(v6.scope_id())),
        SocketAddr::V4(v4) if v4.ip().is_link_local() => Ok(Some(0)),
        _ => Err(RdError::bad(
            "a link-local base must be registered from that link",
        )),
    }
}

/// Whether every criterion matches `link`, or is already satisfied (`done`).
fn all_match(link: &Link<'_>, criteria: &[(String, String)], done: &[bool]) -> bool {
    criteria
        .iter()
        .zip(done)
        .all(|((name, pattern), done)| *done || matches_filter(link, name, pattern))
}

fn first_link(text: &str) -> Option<Link<'_>> {
    parse_links(text).next().and_then(Result::ok)
}

/// Whether a link in `text` can match a criterion whose pattern, without its trailing
/// `*`, is `stem`: without quoted-string escapes (`\`), every value a filter compares
/// (the target, an attribute value, one of its space-separated tokens; RFC 6690 §4.1)
/// is a slice of `text`, so a match needs `stem` inside `text`. This spares parsing the
/// links a filter cannot select, which is most of them in a lookup over many
/// registrations.
fn may_match(text: &str, stem: &str) -> bool {
    text.contains(stem) || text.contains('\\')
}

/// The `(name, pattern)` criteria with `may_match`'s stem of each pattern.
fn stems(criteria: &[(String, String)]) -> Vec<&str> {
    criteria
        .iter()
        .map(|(_, pattern)| pattern.strip_suffix('*').unwrap_or(pattern))
        .collect()
}

impl RdState {
    /// An empty directory.
    pub fn new(config: RdConfig) -> RdState {
        RdState {
            config,
            registrations: BTreeMap::new(),
            by_name: HashMap::new(),
            next_id: 1,
            total_cost: 0,
            index: AttrIndex::default(),
            use_index: true,
            expiry: BTreeSet::new(),
            simple_expiry: BTreeSet::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RdConfig {
        &self.config
    }

    /// How many registrations are kept (active or expired but retained).
    pub fn len(&self) -> usize {
        self.registrations.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.registrations.is_empty()
    }

    /// The registration with this id.
    pub fn get(&self, id: u64) -> Option<&Registration> {
        self.registrations.get(&id)
    }

    /// The registration of (sector, ep).
    pub fn find(&self, sector: Option<&str>, ep: &str) -> Option<&Registration> {
        let id = self
            .by_name
            .get(&(sector.map(str::to_owned), ep.to_owned()))?;
        self.registrations.get(id)
    }

    /// Every registration, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Registration> + '_ {
        self.registrations.values()
    }

    /// Whether `requester` may act on `reg` (RFC 9176 §7.5: "MUST be rejected by the RD
    /// unless all the stored information is found in the new request's credentials").
    fn allowed(&self, reg: &Registration, requester: &Requester) -> bool {
        self.config.access_policy == AccessPolicy::Open || reg.owner == requester.identity
    }

    /// Plans a registration (RFC 9176 §5) or, with `simple`, the registration step of a
    /// simple registration (§5.1, the links being the endpoint's `/.well-known/core`).
    ///
    /// A registration with the (ep, d) of an existing one from the same requester
    /// replaces it under the same id; from another requester it is refused while the
    /// existing one is active (§7.5) and replaces it under a new id once it expired.
    pub fn plan_register(
        &self,
        params: &RegistrationParams,
        payload: &[u8],
        content_format: Option<u16>,
        requester: &Requester,
        simple: bool,
        now: Instant,
    ) -> Result<Mutation, RdError> {
        let doc = payload_text(payload, content_format, &self.config)?;
        let ep = params
            .ep
            .clone()
            .ok_or_else(|| RdError::bad("ep is required"))?;
        if simple && params.base.is_some() {
            return Err(RdError::bad("base is not accepted in simple registration"));
        }
        let links = parse_links_checked(&doc, self.config.max_links_per_registration)?;
        let sector = params
            .sector
            .clone()
            .or_else(|| self.config.default_sector.clone());
        let implicit_base = uri::default_base(requester.addr);
        let scope = link_local_scope(
            params.base.as_deref().unwrap_or(&implicit_base),
            requester.addr,
        )?;
        let lifetime = params.lifetime.unwrap_or(self.config.default_lifetime);

        let mut mutation = Mutation::default();
        let existing = self
            .by_name
            .get(&(sector.clone(), ep.clone()))
            .and_then(|id| self.registrations.get(id));
        let id = match existing {
            Some(old) if self.allowed(old, requester) => old.id,
            Some(old) if old.is_active(now) => return Err(RdError::Forbidden),
            Some(old) => {
                // The name is free again (§7.5: only active registrations are
                // protected); the old registration resource goes.
                mutation.removes.push(old.id);
                mutation.created = true;
                self.next_id
            }
            None => {
                mutation.created = true;
                self.next_id
            }
        };
        let mut reg = Registration {
            id,
            ep,
            sector,
            lifetime,
            base: params.base.clone(),
            implicit_base,
            extra_attrs: params.extra_attrs.clone(),
            links_doc: doc.as_ref().into(),
            expires: now + lifetime_duration(lifetime),
            owner: requester.identity.clone(),
            simple,
            link_local_scope: scope,
            resolved: Box::default(),
            resolved_ends: Box::default(),
            endpoint_link: Box::default(),
            endpoint_attrs_len: 0,
            endpoint_parses: [false; 2],
        };
        reg.render(&links);
        mutation.id = Some(id);
        self.make_room(&mut mutation, &reg, now)?;
        mutation.puts.push(reg);
        Ok(mutation)
    }

    /// Adds evictions of expired registrations to `mutation` until `new` fits the
    /// registration and memory limits; [`RdError::Full`] if it cannot.
    fn make_room(
        &self,
        mutation: &mut Mutation,
        new: &Registration,
        now: Instant,
    ) -> Result<(), RdError> {
        let replaced = self.registrations.get(&new.id);
        let removed_cost = |m: &Mutation| -> usize {
            m.removes
                .iter()
                .filter_map(|id| self.registrations.get(id))
                .map(Registration::cost)
                .sum::<usize>()
                + replaced.map_or(0, Registration::cost)
        };
        let count_after = |m: &Mutation| {
            self.registrations.len() - m.removes.len() + usize::from(replaced.is_none())
        };
        let fits = |m: &Mutation| {
            count_after(m) <= self.config.max_registrations
                && self.total_cost - removed_cost(m) + new.cost() <= self.config.max_total_payload
        };
        if fits(mutation) {
            return Ok(());
        }
        // Evict expired registrations, longest expired first.
        let mut expired: Vec<&Registration> = self
            .registrations
            .values()
            .filter(|r| !r.is_active(now) && r.id != new.id && !mutation.removes.contains(&r.id))
            .collect();
        expired.sort_by_key(|r| r.expires);
        for r in expired {
            mutation.removes.push(r.id);
            if fits(mutation) {
                return Ok(());
            }
        }
        Err(RdError::Full)
    }

    /// Plans a registration update (RFC 9176 §5.3.1): resets the lifetime (to `lt` if
    /// given), sets `base` if given (else keeps an explicit one, else takes the
    /// requester's address), overrides extra attributes by name, and replaces the links
    /// when a payload is given.
    pub fn plan_update(
        &self,
        id: u64,
        params: &RegistrationParams,
        payload: &[u8],
        content_format: Option<u16>,
        requester: &Requester,
        now: Instant,
    ) -> Result<Mutation, RdError> {
        let old = self.registrations.get(&id).ok_or(RdError::NotFound)?;
        if !self.allowed(old, requester) {
            return Err(RdError::Forbidden);
        }
        if params.ep.as_ref().is_some_and(|ep| *ep != old.ep)
            || params.sector.is_some() && params.sector != old.sector
        {
            return Err(RdError::bad("ep and d cannot be changed by an update"));
        }
        let mut reg = old.clone();
        if let Some(lt) = params.lifetime {
            reg.lifetime = lt;
        }
        reg.expires = now + lifetime_duration(reg.lifetime);
        if let Some(base) = &params.base {
            if reg.simple {
                return Err(RdError::bad("base is not accepted in simple registration"));
            }
            reg.base = Some(base.clone());
        } else if reg.base.is_none() {
            reg.implicit_base = uri::default_base(requester.addr);
        }
        for (name, _) in &params.extra_attrs {
            reg.extra_attrs.retain(|(n, _)| n != name);
        }
        reg.extra_attrs.extend(params.extra_attrs.iter().cloned());
        if reg.extra_attrs.len() > self.config.max_extra_attrs {
            return Err(RdError::bad(format!(
                "more than {} endpoint attributes",
                self.config.max_extra_attrs
            )));
        }
        let links = if payload.is_empty() {
            parse_links_checked(&reg.links_doc, usize::MAX)?
        } else {
            let doc = payload_text(payload, content_format, &self.config)?;
            let links = parse_links_checked(&doc, self.config.max_links_per_registration)?;
            reg.links_doc = doc.as_ref().into();
            links
        };
        reg.link_local_scope = link_local_scope(reg.base(), requester.addr)?;
        reg.render(&links);
        let mut mutation = Mutation {
            id: Some(id),
            ..Mutation::default()
        };
        self.make_room(&mut mutation, &reg, now)?;
        mutation.puts.push(reg);
        Ok(mutation)
    }

    /// Plans a registration removal (RFC 9176 §5.3.2).
    pub fn plan_remove(&self, id: u64, requester: &Requester) -> Result<Mutation, RdError> {
        let reg = self.registrations.get(&id).ok_or(RdError::NotFound)?;
        if !self.allowed(reg, requester) {
            return Err(RdError::Forbidden);
        }
        Ok(Mutation {
            removes: vec![id],
            id: Some(id),
            ..Mutation::default()
        })
    }

    /// Plans the removal of what expired by `now`: simple registrations at once
    /// (RFC 9176 §5.1: "MUST delete registrations created by simple registration after
    /// the expiration of their lifetime"), others once they have been expired for
    /// [`RdConfig::expired_retention`] (§5.3: "MAY eventually remove the registration
    /// resource for the purpose of garbage collection").
    pub fn plan_expire(&self, now: Instant) -> Mutation {
        let retention = self.config.expired_retention;
        let mut removes: Vec<u64> = self
            .simple_expiry
            .iter()
            .take_while(|(expires, _)| *expires <= now)
            .map(|&(_, id)| id)
            .collect();
        removes.extend(
            self.expiry
                .iter()
                .take_while(|(expires, _)| *expires + retention <= now)
                .filter(|(_, id)| self.registrations.get(id).is_some_and(|r| !r.simple))
                .map(|&(_, id)| id),
        );
        Mutation {
            removes,
            ..Mutation::default()
        }
    }

    /// When something next changes by itself: the earliest expiry still ahead, or the
    /// earliest removal [`plan_expire`](Self::plan_expire) would make (possibly a bit
    /// earlier: waking up early is harmless). Cheap: it reads the ends of the expiry
    /// indexes.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let retention = self.config.expired_retention;
        let ahead = self
            .expiry
            .range((Bound::Excluded((now, u64::MAX)), Bound::Unbounded))
            .next()
            .map(|&(expires, _)| expires);
        let simple_due = self
            .simple_expiry
            .first()
            .filter(|(expires, _)| *expires <= now)
            .map(|_| now);
        let retained = self.expiry.first().map(|&(expires, _)| expires + retention);
        [ahead, simple_due, retained].into_iter().flatten().min()
    }

    /// Whether some registration's lifetime ended in `(from, to]` (its lookups changed
    /// then).
    pub fn expired_between(&self, from: Instant, to: Instant) -> bool {
        self.expiry
            .range((Bound::Excluded((from, u64::MAX)), Bound::Unbounded))
            .next()
            .is_some_and(|(expires, _)| *expires <= to)
    }

    /// The mutation that undoes `mutation` once applied: what it replaces or removes
    /// is put back, what it creates is removed. Made before applying `mutation`, so
    /// that a change whose commit failed can be rolled back (group commit applies
    /// changes before they are durable, see [`crate::ResourceDirectory`]).
    pub fn undo_of(&self, mutation: &Mutation) -> Mutation {
        let mut undo = Mutation {
            reset_next_id: Some(self.next_id),
            ..Mutation::default()
        };
        let ids = mutation
            .removes
            .iter()
            .chain(mutation.puts.iter().map(|r| &r.id));
        for &id in ids {
            match self.registrations.get(&id) {
                Some(old) => {
                    if !undo.puts.iter().any(|r| r.id == id) {
                        undo.puts.push(old.clone());
                    }
                }
                None => {
                    if !undo.removes.contains(&id) {
                        undo.removes.push(id);
                    }
                }
            }
        }
        undo
    }

    /// Applies a planned mutation.
    pub fn apply(&mut self, mutation: Mutation) {
        for id in mutation.removes {
            self.remove_entry(id);
        }
        for reg in mutation.puts {
            self.remove_entry(reg.id);
            self.insert_entry(reg);
        }
        if let Some(next_id) = mutation.reset_next_id {
            // Ids of a rolled-back change were never acknowledged nor stored.
            self.next_id = next_id;
        }
    }

    fn remove_entry(&mut self, id: u64) {
        if let Some(old) = self.registrations.remove(&id) {
            self.total_cost -= old.cost();
            self.index.remove(id, &old.index_keys());
            self.expiry.remove(&(old.expires, id));
            self.simple_expiry.remove(&(old.expires, id));
            let key = (old.sector, old.ep);
            if self.by_name.get(&key) == Some(&id) {
                self.by_name.remove(&key);
            }
        }
    }

    fn insert_entry(&mut self, reg: Registration) {
        self.next_id = self.next_id.max(reg.id.saturating_add(1));
        self.total_cost += reg.cost();
        if let Some(previous) = self
            .by_name
            .insert((reg.sector.clone(), reg.ep.clone()), reg.id)
        {
            // Two records for one name (only from a damaged store): keep the newer id.
            if previous != reg.id {
                self.remove_entry(previous);
                self.by_name
                    .insert((reg.sector.clone(), reg.ep.clone()), reg.id);
            }
        }
        self.index.insert(reg.id, reg.index_keys());
        self.expiry.insert((reg.expires, reg.id));
        if reg.simple {
            self.simple_expiry.insert((reg.expires, reg.id));
        }
        self.registrations.insert(reg.id, reg);
    }

    /// Restores a stored registration at start-up, with its expiry converted to an
    /// `Instant` by the caller. Limits on new registrations do not apply: what was
    /// accepted once is kept.
    pub fn restore(&mut self, stored: StoredRegistration, expires: Instant) -> Result<(), RdError> {
        let links = parse_links_checked(&stored.links, usize::MAX)?;
        let mut reg = Registration {
            id: stored.id,
            ep: stored.ep,
            sector: stored.sector,
            lifetime: stored.lifetime,
            base: stored.base,
            implicit_base: stored.implicit_base,
            extra_attrs: stored.extra_attrs,
            links_doc: stored.links.into_boxed_str(),
            expires,
            owner: Identity(stored.owner),
            simple: stored.simple,
            link_local_scope: stored.link_local_scope,
            resolved: Box::default(),
            resolved_ends: Box::default(),
            endpoint_link: Box::default(),
            endpoint_attrs_len: 0,
            endpoint_parses: [false; 2],
        };
        reg.render(&links);
        self.remove_entry(reg.id);
        self.insert_entry(reg);
        Ok(())
    }

    /// Makes sure new ids start at `next_id` or above (ids of removed registrations are
    /// never reused).
    pub fn reserve_ids(&mut self, next_id: u64) {
        self.next_id = self.next_id.max(next_id);
    }

    /// The ascending ids of the registrations that may match every criterion, from
    /// the attribute index; `None` to scan them all (no criterion the index can
    /// narrow down).
    fn candidates(&self, criteria: &[(String, String)]) -> Option<Vec<u64>> {
        // Past this many candidates, intersecting costs about what scanning does.
        let limit = self.registrations.len() / 2 + 16;
        let mut best: Option<Vec<u64>> = None;
        for (name, pattern) in criteria {
            if let Some(ids) = self.index.candidates(name, pattern, limit) {
                best = Some(match best {
                    Some(prev) => index::intersect(&prev, &ids),
                    None => ids,
                });
                if best.as_ref().is_some_and(Vec::is_empty) {
                    break;
                }
            }
        }
        best
    }

    /// A lookup (RFC 9176 §6): the link-format payload of the matching links, resolved,
    /// paginated by `page` and `count`.
    ///
    /// A resource link matches a criterion if it has a matching attribute (or, for
    /// `href`, its resolved target matches), or if its endpoint does; an endpoint
    /// matches if its endpoint link does (`ep`, `d`, `base`, `et` and other endpoint
    /// attributes, `href` its registration resource, `rt` `core.rd-ep`) or if any of
    /// its resource links does (§6.2). All criteria must match. Expired registrations,
    /// and registrations with a link-local base unless `requester` is on that link, are
    /// left out.
    pub fn lookup(
        &self,
        kind: LookupKind,
        query: &LookupQuery,
        requester: Option<SocketAddr>,
        now: Instant,
    ) -> Result<String, RdError> {
        let start = match (query.page, query.count) {
            (Some(page), Some(count)) => page.saturating_mul(count),
            _ => 0,
        };
        let mut out = Output {
            text: String::new(),
            start,
            count: query.count,
            index: 0,
            emitted: 0,
            max_links: self.config.max_lookup_links,
            max_bytes: self.config.max_lookup_bytes,
        };
        let criteria = &query.criteria;
        let stems = stems(criteria);
        let mut done = vec![false; criteria.len()];
        let candidates = if self.use_index {
            self.candidates(criteria)
        } else {
            None
        };
        let regs: Box<dyn Iterator<Item = &Registration>> = match &candidates {
            Some(ids) => Box::new(ids.iter().filter_map(|id| self.registrations.get(id))),
            None => Box::new(self.registrations.values()),
        };
        for reg in regs {
            if !reg.is_active(now) || !reg.visible_to(requester) {
                continue;
            }
            match kind {
                LookupKind::Endpoint => {
                    if !reg.endpoint_parses[0] {
                        continue;
                    }
                    let matched = criteria.iter().zip(&stems).all(|((name, pattern), stem)| {
                        let one = |text: &str| {
                            may_match(text, stem)
                                && first_link(text)
                                    .is_some_and(|l| matches_filter(&l, name, pattern))
                        };
                        one(&reg.endpoint_link) || reg.resolved_links().any(one)
                    });
                    if matched && !out.push(&reg.endpoint_link)? {
                        break;
                    }
                }
                LookupKind::Resource => {
                    if !reg.endpoint_parses[1] {
                        continue;
                    }
                    let attrs = reg.endpoint_attrs();
                    if stems.iter().any(|stem| may_match(attrs, stem)) {
                        let Some(ep_link) = first_link(attrs) else {
                            continue;
                        };
                        for ((name, pattern), d) in criteria.iter().zip(done.iter_mut()) {
                            *d = matches_filter(&ep_link, name, pattern);
                        }
                    } else {
                        done.fill(false);
                    }
                    let mut more = true;
                    for text in reg.resolved_links() {
                        let matched = done.iter().all(|d| *d)
                            || (done
                                .iter()
                                .zip(&stems)
                                .all(|(d, stem)| *d || may_match(text, stem))
                                && first_link(text)
                                    .is_some_and(|l| all_match(&l, criteria, &done)));
                        if matched && !out.push(text)? {
                            more = false;
                            break;
                        }
                    }
                    if !more {
                        break;
                    }
                }
            }
        }
        Ok(out.text)
    }
}

/// The lookup result being built: pagination and the result limits.
struct Output {
    text: String,
    start: u64,
    count: Option<u64>,
    index: u64,
    emitted: usize,
    max_links: usize,
    max_bytes: usize,
}

impl Output {
    /// Takes the next matching link; `Ok(false)` once the page is full.
    fn push(&mut self, link: &str) -> Result<bool, RdError> {
        let index = self.index;
        self.index += 1;
        if index < self.start {
            return Ok(true);
        }
        if self.count.is_some_and(|c| index - self.start >= c) {
            return Ok(false);
        }
        if self.emitted == self.max_links {
            return Err(RdError::ResultTooLarge {
                limit: self.max_links,
                unit: "links",
            });
        }
        let extra = link.len() + usize::from(!self.text.is_empty());
        if self.text.len() + extra > self.max_bytes {
            return Err(RdError::ResultTooLarge {
                limit: self.max_bytes,
                unit: "bytes",
            });
        }
        if !self.text.is_empty() {
            self.text.push(',');
        }
        self.text.push_str(link);
        self.emitted += 1;
        Ok(true)
    }
}

/// Whether an address is a link-local one (for the RD's own checks).
pub(crate) fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        IpAddr::V4(v4) => v4.is_link_local(),
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
