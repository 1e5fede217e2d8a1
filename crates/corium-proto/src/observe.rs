//! Observing resources (RFC 7641): the server's list of observers and its notifications,
//! and the client's freshness check for the notifications it receives.
//!
//! This module is a child of the endpoint module (declared there with `#[path]`), so it
//! shares the endpoint's message-ID allocation, timer queue and retransmission state
//! instead of duplicating them.
//!
//! Server side: [`Endpoint::respond_observe`] answers a GET with Observe = 0 and adds the
//! client to the list of observers, keyed by (peer, token) (RFC 7641 §4.1);
//! [`Endpoint::notify`] sends a notification with an increasing 24-bit sequence number
//! (§4.4), Non-confirmable unless asked, and Confirmable at least once every 24 hours
//! (§4.5). While a Confirmable notification waits for its ACK, newer states replace each
//! other in a one-slot queue: the newest goes out when the ACK arrives or the current
//! attempt times out, and retransmissions carry it (§4.5.2). A RST, a Confirmable
//! notification that is never acknowledged, a GET with Observe = 1 (§3.6) or a
//! notification with an error code (§3.2, §4.2) end the relation.
//!
//! Client side: a request sent with [`RequestOptions::observe`](super::RequestOptions)
//! carries Observe = 0 and stays open for notifications; one older than the newest seen
//! (§3.4: the 24-bit comparison, or 128 seconds) is dropped inside the endpoint.
//!
//! Client re-registration (§3.3.1) lives here too, not in the async runtime: it needs
//! the exchange's token, message-ID index, retransmission and deadline machinery, all of
//! which the endpoint owns, and as a timer of the sans-IO core it is testable with the
//! virtual clock. When the latest notification's Max-Age (default 60 s) has passed
//! without a newer one, plus the random 5 to 15 s §3.3.1 asks for, the endpoint sends
//! the registration again (same token, same options, a new message ID). The answer
//! continues the relation; a timeout or RST ends the request with
//! [`Event::RequestFailed`], and an answer without Observe (or with an error code) is
//! its last response, followed by [`Event::RequestFinished`] (§3.2). The re-registration
//! takes no NSTART slot: it continues an interaction the relation already stands for.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::time::Duration;

use bytes::Bytes;
use core::hash::BuildHasher;
use corium_wire::{Code, MessageType, OptionNumber};
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

use super::{
    ClientState, Endpoint, Event, IncomingId, Owner, Peer, RequestId, Retransmission, TimerKind,
    Transmit,
};
use crate::blockwise;
use crate::codec;
use crate::error::{NotifyError, RespondError};
use crate::message::{Request, Response, Token};
use crate::time::Instant;
use crate::timer::TimerHandle;

/// RFC 7641 §4.4: sequence numbers are 24 bits.
const SEQ_MASK: u32 = 0x00ff_ffff;
/// RFC 7641 §3.4: half the sequence-number space.
const SEQ_HALF: u32 = 1 << 23;
/// RFC 7641 §3.4: a notification more than 128 seconds after the last is always fresh.
const FRESHNESS_WINDOW: Duration = Duration::from_secs(128);
/// RFC 7641 §4.5: a notification is Confirmable at least once every 24 hours.
const CON_AT_LEAST_EVERY: Duration = Duration::from_secs(24 * 3600);
/// How many recent notification message IDs a relation remembers, so that a RST to an
/// older Non-confirmable notification (one overtaken by newer ones while the RST was
/// under way) still ends the relation (RFC 7641 §3.6, §4.2). They are kept inline, 2
/// bytes each, and searched among the peer's relations when a RST matches nothing in the
/// endpoint's message-ID index, which holds only the Confirmable notification awaiting
/// its ACK: a relation costs no index entry most of the time.
const RECENT_MIDS: usize = 8;
/// RFC 7252 §5.10.5: the Max-Age of a response without the option.
const DEFAULT_MAX_AGE: u32 = 60;
/// RFC 7641 §3.3.1: a client re-registers no sooner than 5 to 15 s (random) after the
/// latest notification's Max-Age expired.
const REREGISTER_WAIT_MIN: Duration = Duration::from_secs(5);
/// See [`REREGISTER_WAIT_MIN`].
const REREGISTER_WAIT_MAX: Duration = Duration::from_secs(15);

/// Identifies an observation relation this endpoint serves (one observer of one
/// resource), returned by [`Endpoint::respond_observe`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObservationId(pub u64);

/// How to send one notification.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyOptions {
    /// Send it Confirmable (RFC 7641 §4.5). Non-confirmable by default; the endpoint
    /// still makes one Confirmable at least every 24 hours.
    pub confirmable: bool,
}

/// Why an observation relation ended, in [`Event::ObservationEnded`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObservationEndReason {
    /// The client answered a notification with a Reset (RFC 7641 §3.6, §4.2).
    Reset,
    /// A Confirmable notification was never acknowledged (RFC 7641 §4.5).
    Timeout,
    /// The client sent a GET with Observe = 1 (RFC 7641 §3.6).
    Deregistered,
    /// The client registered again with the same token (RFC 7641 §4.1).
    Replaced,
    /// The connection of a reliable transport closed (RFC 8323 §7.1: a connection's
    /// relations end with it).
    ConnectionClosed,
}

/// A notification waiting for the Confirmable one in flight (RFC 7641 §4.5.2).
#[derive(Debug)]
struct Queued {
    response: Response,
    confirmable: bool,
}

/// The Confirmable notification awaiting its ACK, and the newest state waiting for it.
#[derive(Debug)]
struct Pending {
    in_flight: Retransmission,
    /// One slot: newest wins (RFC 7641 §4.5.2).
    queued: Option<Queued>,
}

/// Tokens up to this length are kept inside the relation (every token of CoAP over UDP,
/// RFC 7252 §5.3.1); longer ones (RFC 8974) in [`Observations::long_tokens`].
const INLINE_TOKEN: usize = 8;
/// `Observation::flags`: the number of recent message IDs (low bits).
const RECENT_LEN_MASK: u8 = 0x0f;
/// `Observation::flags`: a final (error) notification is in flight; the relation is
/// already off the list.
const CLOSING: u8 = 0x80;

/// One relation. Kept to 56 bytes: with many observers the relations are most of the
/// server's memory (the peer address is kept once per peer, in [`Observations::peers`]).
#[derive(Debug)]
pub(super) struct Observation {
    /// The peer's slot in [`Observations::peers`].
    peer: u32,
    /// When the last Confirmable notification went out.
    last_con: Instant,
    /// The Confirmable notification awaiting its ACK, and the state queued behind it.
    /// Boxed: most relations have none most of the time.
    pending: Option<Box<Pending>>,
    /// The last sequence number sent.
    seq: u32,
    /// The message IDs of the latest notifications, oldest first; only a Confirmable
    /// one awaiting its ACK is mapped in `by_message_id`.
    recent_mids: [u16; RECENT_MIDS],
    /// The token when at most [`INLINE_TOKEN`] bytes long.
    token: [u8; INLINE_TOKEN],
    /// The token's length; above [`INLINE_TOKEN`], the token is in `long_tokens`.
    token_len: u8,
    /// How many of `recent_mids` are in use, and [`CLOSING`].
    flags: u8,
}

/// A peer with relations (listed, or finishing a final notification).
#[derive(Debug)]
struct PeerRelations<P> {
    peer: P,
    /// Its listed relations (at most `max_observations_per_peer`).
    ids: Vec<u64>,
    /// Relations in `map` that name this slot.
    refs: u32,
}

/// The server's observers.
#[derive(Debug)]
pub(super) struct Observations<P> {
    map: HashMap<u64, Observation>,
    /// The listed relations by (peer, token) (RFC 7641 §4.1): only their ids, hashed on
    /// (peer, token) and compared through `map`, so the key is not stored twice (8 bytes
    /// an entry instead of a copy of the peer address and the token).
    by_key: HashTable<u64>,
    hasher: DefaultHashBuilder,
    /// The peers with relations (a slab: `Observation::peer` indexes it).
    peers: Vec<Option<PeerRelations<P>>>,
    /// Free slots of `peers`.
    free_peers: Vec<u32>,
    /// The slot of each peer in `peers`.
    peer_slots: HashMap<P, u32>,
    /// Tokens longer than [`INLINE_TOKEN`] bytes, by relation.
    long_tokens: HashMap<u64, Token>,
}

impl<P: Peer> Observations<P> {
    pub(super) fn new() -> Self {
        Observations {
            map: HashMap::new(),
            by_key: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            peers: Vec::new(),
            free_peers: Vec::new(),
            peer_slots: HashMap::new(),
            long_tokens: HashMap::new(),
        }
    }

    /// The token of relation `id`.
    fn token<'a>(long_tokens: &'a HashMap<u64, Token>, id: u64, o: &'a Observation) -> &'a [u8] {
        match o.token.get(..usize::from(o.token_len)) {
            Some(inline) => inline,
            None => long_tokens.get(&id).map_or(&[], Token::as_bytes),
        }
    }

    /// The peer of a relation.
    fn peer_of<'a>(peers: &'a [Option<PeerRelations<P>>], o: &Observation) -> Option<&'a P> {
        peers
            .get(o.peer as usize)
            .and_then(Option::as_ref)
            .map(|p| &p.peer)
    }

    /// The slot of `peer`, created if needed, with one more relation naming it.
    fn acquire_peer(&mut self, peer: &P) -> u32 {
        if let Some(&slot) = self.peer_slots.get(peer) {
            if let Some(p) = self.peers.get_mut(slot as usize).and_then(Option::as_mut) {
                p.refs += 1;
            }
            return slot;
        }
        let entry = PeerRelations {
            peer: peer.clone(),
            ids: Vec::new(),
            refs: 1,
        };
        let slot = match self.free_peers.pop() {
            Some(slot) => {
                self.peers[slot as usize] = Some(entry);
                slot
            }
            None => {
                self.peers.push(Some(entry));
                (self.peers.len() - 1) as u32
            }
        };
        self.peer_slots.insert(peer.clone(), slot);
        slot
    }

    /// A relation naming peer slot `slot` is gone; frees the slot with the last one.
    fn release_peer(&mut self, slot: u32) {
        let Some(p) = self.peers.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        p.refs -= 1;
        if p.refs == 0 {
            self.peer_slots.remove(&p.peer);
            self.peers[slot as usize] = None;
            self.free_peers.push(slot);
        }
    }

    /// The listed relations of `peer`.
    fn listed_of(&self, peer: &P) -> &[u64] {
        self.peer_slots
            .get(peer)
            .and_then(|slot| self.peers.get(*slot as usize))
            .and_then(Option::as_ref)
            .map_or(&[], |p| &p.ids)
    }

    /// The `by_key` hash of (peer, token).
    fn key_hash(hasher: &DefaultHashBuilder, peer: &P, token: &[u8]) -> u64 {
        hasher.hash_one((peer, token))
    }

    /// The listed relation of (`peer`, `token`).
    fn listed(&self, peer: &P, token: &[u8]) -> Option<u64> {
        let hash = Self::key_hash(&self.hasher, peer, token);
        self.by_key
            .find(hash, |id| {
                self.map.get(id).is_some_and(|o| {
                    Self::peer_of(&self.peers, o) == Some(peer)
                        && Self::token(&self.long_tokens, *id, o) == token
                })
            })
            .copied()
    }

    /// Lists relation `id` (already in `map`) under its (peer, token).
    fn list(&mut self, id: u64) {
        let Observations {
            map,
            by_key,
            hasher,
            peers,
            long_tokens,
            ..
        } = self;
        let Some(o) = map.get(&id) else {
            return;
        };
        let Some(peer) = Self::peer_of(peers, o) else {
            return;
        };
        let hash = Self::key_hash(hasher, peer, Self::token(long_tokens, id, o));
        by_key.insert_unique(hash, id, |other| {
            map.get(other).map_or(0, |o| match Self::peer_of(peers, o) {
                Some(peer) => Self::key_hash(hasher, peer, Self::token(long_tokens, *other, o)),
                None => 0,
            })
        });
        if let Some(p) = peers.get_mut(o.peer as usize).and_then(Option::as_mut) {
            p.ids.push(id);
        }
    }

    /// Relations on the list (not counting final notifications still in flight).
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether `peer` has observations (its message-ID state must not be evicted).
    pub(super) fn has_peer(&self, peer: &P) -> bool {
        !self.listed_of(peer).is_empty()
    }

    /// The relations of `peer` on the list.
    pub(super) fn peer_relations(&self, peer: &P) -> alloc::vec::Vec<u64> {
        self.listed_of(peer).to_vec()
    }

    /// Takes a relation off the list of observers (it may still finish a transmission).
    fn unlist(&mut self, id: u64) {
        let Some(o) = self.map.get(&id) else {
            return;
        };
        let Some(peer) = Self::peer_of(&self.peers, o) else {
            return;
        };
        let hash = Self::key_hash(&self.hasher, peer, Self::token(&self.long_tokens, id, o));
        if let Ok(entry) = self.by_key.find_entry(hash, |i| *i == id) {
            entry.remove();
            if let Some(p) = self.peers.get_mut(o.peer as usize).and_then(Option::as_mut) {
                p.ids.retain(|i| *i != id);
                if p.ids.is_empty() {
                    // Give the memory of a peer that had many relations back.
                    p.ids = Vec::new();
                }
            }
        }
    }

    /// The relation of `peer` that recently sent a notification with `mid`.
    pub(super) fn by_recent_mid(&self, peer: &P, mid: u16) -> Option<u64> {
        self.listed_of(peer).iter().copied().find(|id| {
            self.map
                .get(id)
                .is_some_and(|o| o.recent_mids[..o.recent_len()].contains(&mid))
        })
    }
}

impl Observation {
    /// How many of `recent_mids` are in use.
    fn recent_len(&self) -> usize {
        usize::from(self.flags & RECENT_LEN_MASK)
    }

    /// Whether a final notification is in flight (the relation is off the list).
    fn closing(&self) -> bool {
        self.flags & CLOSING != 0
    }

    fn set_closing(&mut self, closing: bool) {
        if closing {
            self.flags |= CLOSING;
        } else {
            self.flags &= !CLOSING;
        }
    }

    /// The newest notification's message ID.
    fn newest_mid(&self) -> Option<u16> {
        self.recent_len()
            .checked_sub(1)
            .map(|i| self.recent_mids[i])
    }

    /// Remembers a notification's message ID, forgetting the oldest beyond
    /// [`RECENT_MIDS`].
    fn remember_mid(&mut self, mid: u16) {
        let len = self.recent_len();
        if len == RECENT_MIDS {
            self.recent_mids.rotate_left(1);
            self.recent_mids[RECENT_MIDS - 1] = mid;
        } else {
            self.recent_mids[len] = mid;
            self.flags += 1;
        }
    }
}

/// Client-side state of an observe request (RFC 7641 §3.3.1, §3.4).
#[derive(Debug)]
pub(super) struct ClientObserve {
    /// The newest sequence number seen and when it arrived.
    newest: Option<(u32, Instant)>,
    /// The registration as sent (Observe = 0), sent again to re-register (§3.3.1);
    /// `None` when it must not be ([`RequestOptions::no_reregistration`](
    /// crate::RequestOptions::no_reregistration)).
    request: Option<Request>,
    /// How long a re-registration may wait for its answer.
    timeout: Duration,
    /// Fires when the latest notification is no longer fresh (§3.3.1).
    refresh: Option<TimerHandle>,
    /// A re-registration is in flight: its answer is accepted whatever its sequence
    /// number (the server may have restarted its count).
    reregistering: bool,
}

impl ClientObserve {
    /// The state of a registration `request` (carrying Observe = 0), or of one that is
    /// never sent again.
    pub(super) fn new(request: Option<Request>, timeout: Duration) -> Self {
        ClientObserve {
            newest: None,
            request,
            timeout,
            refresh: None,
            reregistering: false,
        }
    }

    /// The re-registration timer, to remove when the exchange ends.
    pub(super) fn refresh_timer(&self) -> Option<TimerHandle> {
        self.refresh
    }
}

/// What to do with a response to a client exchange.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not an observe exchange: the usual handling.
    Plain,
    /// A notification: deliver it, keep the exchange open.
    Notification,
    /// The last response of an observe exchange (not observable, or an error): deliver
    /// it and finish.
    Last,
    /// Older than the newest notification seen (§3.4): drop it.
    Stale,
}

/// RFC 7641 §3.4: whether notification `v2` received at `t2` is newer than `v1` at `t1`.
pub(crate) fn is_fresh(v1: u32, t1: Instant, v2: u32, t2: Instant) -> bool {
    (v1 < v2 && v2 - v1 < SEQ_HALF) || (v1 > v2 && v1 - v2 > SEQ_HALF) || t2 > t1 + FRESHNESS_WINDOW
}

impl<P: Peer> Endpoint<P> {
    // ----------------------------------------------------------------------------------
    // Server side
    // ----------------------------------------------------------------------------------

    /// Answers a GET (or FETCH) with Observe = 0 (see [`IncomingRequest::observe`](
    /// crate::IncomingRequest::observe); the endpoint does not check it) and adds the
    /// client to the list of observers (RFC 7641 §4.1): the response goes out as
    /// [`respond`](Self::respond) sends it, with an Observe sequence number. A registration with the same (peer,
    /// token) replaces the earlier one, which ends with
    /// [`ObservationEndReason::Replaced`].
    ///
    /// The request is answered in every case; it is not registered (and an error tells
    /// why) when the response code is not 2.xx or the request was multicast
    /// ([`RespondError::NotObservable`]), or when `max_observations` or
    /// `max_observations_per_peer` is reached ([`RespondError::TooManyObservations`];
    /// §4.1 lets a server answer without Observe).
    pub fn respond_observe(
        &mut self,
        now: Instant,
        id: IncomingId,
        response: Response,
    ) -> Result<ObservationId, RespondError> {
        if !response.code.is_response() {
            return Err(RespondError::NotAResponse);
        }
        let Some(ex) = self.incoming.get(&id.0) else {
            return Err(RespondError::UnknownRequest);
        };
        let (peer, token, multicast) = (ex.peer.clone(), ex.token.clone(), ex.multicast);
        if !response.code.is_success() || multicast {
            self.respond(now, id, response)?;
            return Err(RespondError::NotObservable);
        }
        let replaced = self.observations.listed(&peer, token.as_bytes());
        let (total, mine) = (
            self.observations.len() - usize::from(replaced.is_some()),
            self.observations.listed_of(&peer).len() - usize::from(replaced.is_some()),
        );
        if total >= self.config.max_observations || mine >= self.config.max_observations_per_peer {
            let mut response = response;
            response.options.remove(OptionNumber::OBSERVE);
            self.respond(now, id, response)?;
            return Err(RespondError::TooManyObservations);
        }
        // A re-registration keeps counting from the sequence number it had (§4.4).
        let seq = replaced
            .and_then(|old| self.observations.map.get(&old))
            .map_or(1, |o| o.seq);
        let seq = (seq + 1) & SEQ_MASK;
        let mut response = response;
        response.options.set_uint(OptionNumber::OBSERVE, seq);
        self.respond(now, id, response)?;
        if let Some(old) = replaced {
            self.drop_observation(old);
            self.events.push_back(Event::ObservationEnded {
                obs: ObservationId(old),
                peer: peer.clone(),
                reason: ObservationEndReason::Replaced,
            });
        }
        let obs = self.alloc_id();
        let mut inline = [0; INLINE_TOKEN];
        let token_len = match inline.get_mut(..token.len()) {
            Some(slot) => {
                slot.copy_from_slice(token.as_bytes());
                token.len() as u8
            }
            None => {
                self.observations.long_tokens.insert(obs, token);
                u8::MAX
            }
        };
        let slot = self.observations.acquire_peer(&peer);
        self.observations.map.insert(
            obs,
            Observation {
                peer: slot,
                last_con: now,
                pending: None,
                seq,
                recent_mids: [0; RECENT_MIDS],
                token: inline,
                token_len,
                flags: 0,
            },
        );
        self.observations.list(obs);
        Ok(ObservationId(obs))
    }

    /// Sends a notification to one observer (RFC 7641 §4.2): the response gets the next
    /// 24-bit sequence number in its Observe option (§4.4); Max-Age stays as given. A
    /// payload larger than one block goes out as its first Block2 block (RFC 7959 §2.6).
    ///
    /// While a Confirmable notification is unacknowledged, this one waits in its place
    /// and replaces any older one waiting (§4.5.2). A response with a code other than
    /// 2.xx is sent without Observe and ends the relation (§3.2).
    pub fn notify(
        &mut self,
        now: Instant,
        obs: ObservationId,
        response: Response,
        options: NotifyOptions,
    ) -> Result<(), NotifyError> {
        if !response.code.is_response() {
            return Err(NotifyError::NotAResponse);
        }
        let limit = match self.observations.map.get(&obs.0) {
            Some(o) => match Observations::peer_of(&self.observations.peers, o) {
                Some(peer) => self.block_limit_for(peer),
                None => return Err(NotifyError::UnknownObservation),
            },
            None => return Err(NotifyError::UnknownObservation),
        };
        let Some(o) = self.observations.map.get_mut(&obs.0) else {
            return Err(NotifyError::UnknownObservation);
        };
        if o.closing() {
            return Err(NotifyError::UnknownObservation);
        }
        let mut response = response;
        if blockwise::fragment_response(&mut response, None, limit).is_err() {
            response = Response::new(Code::INTERNAL_SERVER_ERROR);
        }
        let last = !response.code.is_success();
        let queued = Queued {
            response,
            confirmable: options.confirmable,
        };
        o.set_closing(last);
        let send_now = match o.pending.as_mut() {
            Some(pending) => {
                pending.queued = Some(queued);
                None
            }
            None => Some(queued),
        };
        if last {
            self.observations.unlist(obs.0);
        }
        if let Some(queued) = send_now {
            self.transmit_notification(now, obs.0, queued, None);
        }
        Ok(())
    }

    /// Ends a relation without telling the client: the next notification it would have
    /// got is simply never sent (a client that still observes will time out or
    /// re-register).
    pub fn end_observation(&mut self, obs: ObservationId) {
        self.drop_observation(obs.0);
    }

    /// The peer of relation `obs` (while the endpoint keeps it), e.g. for the request
    /// context of the handler that produces its notifications.
    pub fn observation_peer(&self, obs: ObservationId) -> Option<&P> {
        let o = self.observations.map.get(&obs.0)?;
        Observations::peer_of(&self.observations.peers, o)
    }

    /// The number of observers on the list.
    pub fn observation_count(&self) -> usize {
        self.observations.len()
    }

    /// The token of a request this endpoint sent, while it is in progress (for a
    /// deregistration with the same token, RFC 7641 §3.6).
    pub fn request_token(&self, id: RequestId) -> Option<Token> {
        self.clients.get(&id.0).map(|c| c.token.clone())
    }

    /// Forgets a relation entirely: list, timers, message-ID mapping.
    fn drop_observation(&mut self, id: u64) {
        self.observations.unlist(id);
        let Some(o) = self.observations.map.remove(&id) else {
            return;
        };
        if usize::from(o.token_len) > INLINE_TOKEN {
            self.observations.long_tokens.remove(&id);
        }
        if let Some(p) = &o.pending {
            self.timers.remove(p.in_flight.timer);
        }
        let peer = Observations::peer_of(&self.observations.peers, &o).cloned();
        self.observations.release_peer(o.peer);
        if let (Some(mid), Some(peer)) = (o.newest_mid(), peer) {
            self.forget_message_id(&peer, mid, Owner::Observation(id));
        }
    }

    /// The peer of relation `id`.
    fn relation_peer(&self, id: u64) -> Option<P> {
        let o = self.observations.map.get(&id)?;
        Observations::peer_of(&self.observations.peers, o).cloned()
    }

    /// Ends a relation and reports it.
    pub(super) fn end_relation(&mut self, id: u64, reason: ObservationEndReason) {
        let (Some(o), Some(peer)) = (self.observations.map.get(&id), self.relation_peer(id)) else {
            return;
        };
        let closing = o.closing();
        self.drop_observation(id);
        if !closing {
            self.events.push_back(Event::ObservationEnded {
                obs: ObservationId(id),
                peer,
                reason,
            });
        }
    }

    /// Puts a notification on the wire with a fresh message ID. `carry` holds the
    /// (transmissions, timeout) of an attempt that timed out (RFC 7641 §4.5.2 step 4).
    fn transmit_notification(
        &mut self,
        now: Instant,
        id: u64,
        n: Queued,
        carry: Option<(u32, Duration)>,
    ) {
        let (Some(o), Some(peer)) = (self.observations.map.get(&id), self.relation_peer(id)) else {
            return;
        };
        let closing = o.closing();
        let Some(mid) = self.allocate_message_id(now, &peer) else {
            // No message ID free towards this peer: the state is skipped (§4.5.2 allows
            // skipping intermediate states); a final one ends the relation here.
            if closing {
                self.drop_observation(id);
            }
            return;
        };
        let timeout = if carry.is_none() {
            self.initial_timeout()
        } else {
            Duration::ZERO
        };
        let observations = &mut self.observations;
        let Some(o) = observations.map.get_mut(&id) else {
            return;
        };
        // RFC 8323 §7: a reliable transport has no Confirmable notifications.
        let confirmable = self.framing.is_none()
            && (n.confirmable || carry.is_some() || now >= o.last_con + CON_AT_LEAST_EVERY);
        let mut response = n.response;
        if o.closing() {
            response.options.remove(OptionNumber::OBSERVE);
        } else {
            o.seq = (o.seq + 1) & SEQ_MASK;
            response.options.set_uint(OptionNumber::OBSERVE, o.seq);
        }
        let ty = if confirmable {
            MessageType::Confirmable
        } else {
            MessageType::NonConfirmable
        };
        let wire: Bytes = codec::encode(
            self.framing,
            ty,
            response.code,
            mid,
            Observations::<P>::token(&observations.long_tokens, id, o),
            &response.options,
            &response.payload,
        );
        let previous = o.newest_mid();
        o.remember_mid(mid);
        if let Some(old) = previous {
            self.forget_message_id(&peer, old, Owner::Observation(id));
        }
        // Only a Confirmable notification is indexed: its ACK must find the relation.
        // A RST to any recent notification is found through the peer's relations.
        if confirmable {
            self.by_message_id
                .insert((peer.clone(), mid), Owner::Observation(id));
        }
        // Only a Confirmable notification keeps its bytes (for retransmission); a NON
        // one is not copied.
        let kept = confirmable.then(|| wire.clone());
        self.transmits.push_back(Transmit {
            peer: peer.clone(),
            payload: wire,
        });
        let Some(o) = self.observations.map.get_mut(&id) else {
            return;
        };
        if let Some(wire) = kept {
            o.last_con = now;
            let (sent, timeout) = match carry {
                Some((sent, t)) => (sent + 1, t * 2),
                None => (1, timeout),
            };
            let timer = self
                .timers
                .insert(now + timeout, TimerKind::NotifyRetransmit(id));
            let queued = o.pending.take().and_then(|p| p.queued);
            o.pending = Some(Box::new(Pending {
                in_flight: Retransmission {
                    message_id: mid,
                    wire,
                    sent,
                    timeout,
                    timer,
                },
                queued,
            }));
        } else if o.closing() {
            self.drop_observation(id);
        }
    }

    /// An ACK for a notification (RFC 7641 §4.5): the newest queued state goes out.
    pub(super) fn notification_acknowledged(&mut self, now: Instant, id: u64, mid: u16) {
        let Some(o) = self.observations.map.get_mut(&id) else {
            return;
        };
        let Some(p) = o.pending.take_if(|p| p.in_flight.message_id == mid) else {
            return;
        };
        let closing = o.closing();
        self.timers.remove(p.in_flight.timer);
        if let Some(peer) = Observations::peer_of(&self.observations.peers, o).cloned() {
            self.forget_message_id(&peer, mid, Owner::Observation(id));
        }
        if !self.observations.map.contains_key(&id) {
            return;
        }
        if let Some(next) = p.queued {
            self.transmit_notification(now, id, next, None);
        } else if closing {
            self.drop_observation(id);
        }
    }

    /// A RST for a notification ends the relation (RFC 7641 §3.6, §4.2).
    pub(super) fn notification_reset(&mut self, id: u64) {
        self.end_relation(id, ObservationEndReason::Reset);
    }

    /// The retransmission timer of a Confirmable notification (RFC 7641 §4.5.2): give
    /// up after MAX_RETRANSMIT, otherwise send the newest state (a new message ID if it
    /// changed) with the doubled timeout.
    pub(super) fn notification_retransmit(&mut self, now: Instant, id: u64) {
        let max = self.config.transmission.max_retransmit;
        let Some(o) = self.observations.map.get_mut(&id) else {
            return;
        };
        let Some(p) = o.pending.as_mut() else {
            return;
        };
        if p.in_flight.sent > max {
            self.end_relation(id, ObservationEndReason::Timeout);
            return;
        }
        if let Some(next) = p.queued.take() {
            let (sent, timeout) = (p.in_flight.sent, p.in_flight.timeout);
            o.pending = None;
            self.transmit_notification(now, id, next, Some((sent, timeout)));
            return;
        }
        let r = &mut p.in_flight;
        let payload = r.again(now, &mut self.timers, TimerKind::NotifyRetransmit(id));
        if let Some(peer) = Observations::peer_of(&self.observations.peers, o) {
            self.transmits.push_back(Transmit {
                peer: peer.clone(),
                payload,
            });
        }
    }

    /// A request arrived: reads its Observe option and, for a GET or FETCH with
    /// Observe = 1, takes the relation with the same (peer, token) off the list
    /// (RFC 7641 §3.6). Returns the Observe value of a GET or FETCH.
    pub(super) fn observe_request(
        &mut self,
        peer: &P,
        method: Code,
        token: &[u8],
        observe: Option<u32>,
    ) -> Option<u32> {
        if !matches!(method, Code::GET | Code::FETCH) {
            return None;
        }
        if observe == Some(1) {
            if let Some(id) = self.observations.listed(peer, token) {
                self.end_relation(id, ObservationEndReason::Deregistered);
            }
        }
        observe
    }

    // ----------------------------------------------------------------------------------
    // Client side
    // ----------------------------------------------------------------------------------

    /// Decides what a response to client exchange `id` is, for observe exchanges
    /// (RFC 7641 §3.3, §3.4).
    pub(super) fn observe_verdict(
        &mut self,
        now: Instant,
        id: u64,
        response: &Response,
    ) -> Verdict {
        // RFC 8323 §7.1: over a reliable transport notifications arrive in order and
        // the Observe value "MUST be ignored on reception".
        let reliable = self.framing.is_some();
        let Some(ex) = self.clients.get_mut(&id) else {
            return Verdict::Plain;
        };
        let Some(state) = ex.observe.as_mut() else {
            return Verdict::Plain;
        };
        let seq = response
            .options
            .get_uint(OptionNumber::OBSERVE)
            .map(|v| v & SEQ_MASK);
        let Some(seq) = seq.filter(|_| response.code.is_success()) else {
            return Verdict::Last;
        };
        if let Some((v1, t1)) = state.newest.filter(|_| !state.reregistering && !reliable) {
            if !is_fresh(v1, t1, seq, now) {
                return Verdict::Stale;
            }
        }
        let first = state.newest.is_none() || state.reregistering;
        state.newest = Some((seq, now));
        state.reregistering = false;
        let old_refresh = state.refresh.take();
        let multicast = ex.multicast;
        if let Some(t) = old_refresh {
            self.timers.remove(t);
        }
        if first {
            // The relation stands: it has no deadline, and holds no NSTART slot (§4.7
            // counts outstanding interactions, not relations).
            if let Some(t) = self.clients.get_mut(&id).and_then(|ex| ex.deadline.take()) {
                self.timers.remove(t);
            }
            self.release_slot(now, id);
        }
        let reregisters = self
            .clients
            .get(&id)
            .and_then(|ex| ex.observe.as_ref())
            .is_some_and(|o| o.request.is_some());
        if !multicast && reregisters {
            // RFC 7641 §3.3.1: re-register once this notification is no longer fresh.
            let max_age = response
                .options
                .get_uint(OptionNumber::MAX_AGE)
                .unwrap_or(DEFAULT_MAX_AGE);
            let wait = self.random_duration(REREGISTER_WAIT_MIN, REREGISTER_WAIT_MAX);
            let at = now + Duration::from_secs(u64::from(max_age)) + wait;
            let timer = self.timers.insert(at, TimerKind::ObserveRefresh(id));
            if let Some(state) = self.clients.get_mut(&id).and_then(|ex| ex.observe.as_mut()) {
                state.refresh = Some(timer);
            }
        }
        Verdict::Notification
    }

    /// The re-registration timer of client exchange `id` (RFC 7641 §3.3.1): the latest
    /// notification is stale, so the registration goes out again with the same token and
    /// options and a new message ID, under the request's timeout.
    pub(super) fn observe_refresh(&mut self, now: Instant, id: u64) {
        let Some(ex) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(state) = ex.observe.as_mut() else {
            return;
        };
        state.refresh = None;
        let old_mid = match &ex.state {
            ClientState::AwaitingResponse { message_id } => *message_id,
            // Still retransmitting or not even sent: nothing to refresh yet.
            ClientState::AwaitingAck(_) | ClientState::Queued(_) => return,
        };
        if ex.multicast || state.reregistering || state.request.is_none() {
            return;
        }
        let (peer, confirmable, timeout) = (ex.peer.clone(), ex.confirmable, state.timeout);
        let Some(mid) = self.allocate_message_id(now, &peer) else {
            // No message ID free towards this peer: try again after another wait.
            let wait = self.random_duration(REREGISTER_WAIT_MIN, REREGISTER_WAIT_MAX);
            let timer = self
                .timers
                .insert(now + wait, TimerKind::ObserveRefresh(id));
            if let Some(state) = self.clients.get_mut(&id).and_then(|ex| ex.observe.as_mut()) {
                state.refresh = Some(timer);
            }
            return;
        };
        self.forget_message_id(&peer, old_mid, Owner::Client(id));
        let Some(ex) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(state) = ex.observe.as_mut() else {
            return;
        };
        let Some(request) = &state.request else {
            return;
        };
        let ty = if confirmable {
            MessageType::Confirmable
        } else {
            MessageType::NonConfirmable
        };
        let wire = codec::encode(
            self.framing,
            ty,
            request.method,
            mid,
            ex.token.as_bytes(),
            &request.options,
            &request.payload,
        );
        state.reregistering = true;
        let client_state = self.transmit_request(now, id, &peer, mid, confirmable, wire);
        let deadline = self
            .timers
            .insert(now + timeout, TimerKind::ClientDeadline(id));
        if let Some(ex) = self.clients.get_mut(&id) {
            ex.state = client_state;
            if let Some(old) = ex.deadline.replace(deadline) {
                self.timers.remove(old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// A relation stays at 56 bytes: with many observers the relations are most of the
    /// server's memory.
    #[test]
    fn relation_size() {
        assert_eq!(core::mem::size_of::<super::Observation>(), 56);
    }
}
