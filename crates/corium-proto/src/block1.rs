//! Server-side reassembly of Block1 uploads (RFC 7959 §2.3, §2.5) with Request-Tag
//! (RFC 9175 §3).
//!
//! Each block of an upload is its own request, possibly with its own token. Blocks belong
//! to the same upload when they come from the same peer with the same method and the
//! same options other than the block-wise ones; the Request-Tag option is one of those
//! options, so a client can run several uploads to one resource at once by giving them
//! different tags (RFC 9175 §3.3). Uploads are atomic: the application sees one request
//! with the whole body once the last block arrived. Intermediate blocks are answered
//! 2.31 Continue by the endpoint itself.
//!
//! Hard limits: the body of one upload, the number of uploads in progress, and their
//! total memory; an upload nobody continues is dropped after `blockwise_timeout`.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::hash::Hash;
use core::time::Duration;

use corium_wire::{BlockValue, Code, OptionNumber};
use hashbrown::HashMap;

use crate::message::{Request, Response};
use crate::response_cache::request_key;
use crate::time::Instant;

/// Options that do not identify an upload: they differ from block to block or describe
/// the transfer rather than the request (RFC 7959 §2.3). Request-Tag is *not* among them:
/// it tells concurrent uploads apart (RFC 9175 §3.3).
const NOT_PART_OF_THE_KEY: &[OptionNumber] = &[
    OptionNumber::BLOCK1,
    OptionNumber::BLOCK2,
    OptionNumber::SIZE1,
    OptionNumber::SIZE2,
    OptionNumber::NO_RESPONSE,
    OptionNumber::ECHO,
];

/// Limits of the reassembly table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Block1Limits {
    pub max_body: usize,
    pub max_transfers: usize,
    pub max_total: usize,
    pub timeout: Duration,
    pub max_szx: u8,
}

/// What to do with one Block1 request.
#[derive(Debug)]
pub(crate) enum Block1Outcome {
    /// Answer on the spot (2.31 Continue, 4.08, 4.13), without the application.
    Respond(Response),
    /// The upload is complete: deliver this request (whole body, Block1 removed); the
    /// final response must carry `Block1` with this value (RFC 7959 §2.3).
    Deliver(Request, BlockValue),
}

#[derive(Debug)]
struct Upload {
    body: Vec<u8>,
    expires: Instant,
    /// The time of this upload's entry in `order`; an entry with another time is stale
    /// (left by an earlier upload with the same key).
    queued: Instant,
}

/// Uploads in progress, keyed by peer and the request's identifying options.
#[derive(Debug)]
pub(crate) struct Block1Table<P> {
    uploads: HashMap<(P, Vec<u8>), Upload>,
    /// Creation order, for expiry and eviction: (expiry, key).
    order: VecDeque<(Instant, (P, Vec<u8>))>,
    total: usize,
    limits: Block1Limits,
}

impl<P: Clone + Eq + Hash> Block1Table<P> {
    pub(crate) fn new(limits: Block1Limits) -> Self {
        Block1Table {
            uploads: HashMap::new(),
            order: VecDeque::new(),
            total: 0,
            limits,
        }
    }

    /// Number of uploads in progress.
    pub(crate) fn len(&self) -> usize {
        self.uploads.len()
    }

    /// Drops uploads whose timeout passed.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((expires, _)) = self.order.front() {
            if *expires > now {
                break;
            }
            let (popped, key) = self.order.pop_front().expect("front exists");
            // An upload that was continued has a later expiry than its queue entry: it
            // goes back in the queue once, at its real expiry, so the queue holds one
            // entry per upload.
            match self.uploads.get_mut(&key) {
                Some(u) if u.queued != popped => {} // stale entry
                Some(u) if u.expires > now => {
                    u.queued = u.expires;
                    self.order.push_back((u.expires, key));
                }
                Some(_) => self.remove(&key),
                None => {}
            }
        }
    }

    /// The earliest moment an upload may expire.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.order.front().map(|(at, _)| *at)
    }

    fn remove(&mut self, key: &(P, Vec<u8>)) {
        if let Some(u) = self.uploads.remove(key) {
            self.total -= u.body.len();
        }
    }

    /// Handles one request carrying Block1 `block`.
    pub(crate) fn handle(
        &mut self,
        now: Instant,
        peer: &P,
        mut request: Request,
        block: BlockValue,
        accept_bert: bool,
    ) -> Block1Outcome {
        self.expire(now);
        let limits = self.limits;
        // Late negotiation (RFC 7959 §2.5): we take blocks of at most our size; a client
        // sending larger ones is told our size in the 2.31 and continues with it. With
        // `accept_bert`, BERT blocks (RFC 8323 §6) are taken as they come.
        let bert = accept_bert && block.is_bert();
        let our_szx = if bert {
            BlockValue::BERT_SZX
        } else {
            block.szx.min(limits.max_szx).min(6)
        };
        let key = (
            peer.clone(),
            request_key(request.method, &request.options, NOT_PART_OF_THE_KEY),
        );
        let offset = block.offset();
        let declared = request.options.get_uint(OptionNumber::SIZE1);
        request.options.remove(OptionNumber::BLOCK1);
        request.options.remove(OptionNumber::SIZE1);

        if offset == 0 {
            // A first block always starts the upload afresh (a client may restart); the
            // entry and its queue position stay.
            if let Some(u) = self.uploads.get_mut(&key) {
                self.total -= u.body.len();
                u.body.clear();
            }
            if declared.is_some_and(|s| s as usize > limits.max_body) {
                self.remove(&key);
                return too_large(limits.max_body);
            }
        }
        let received = self.uploads.get(&key).map_or(0, |u| u.body.len());
        if offset != received || (offset > 0 && !self.uploads.contains_key(&key)) {
            // RFC 7959 §2.3: a block that does not continue what we have → 4.08.
            self.remove(&key);
            return Block1Outcome::Respond(Response::with_payload(
                Code::REQUEST_ENTITY_INCOMPLETE,
                b"Block1 out of sequence".to_vec(),
            ));
        }
        // RFC 7959 §2.5 (Figure 9): a block larger than ours is kept whole when its
        // length is a multiple of our size; the 2.31 then names the last block taken, in
        // our size, and the client continues from there in our size.
        let ours = if bert { 1024 } else { 1usize << (our_szx + 4) };
        let chunk = core::mem::take(&mut request.payload);
        if block.more && !chunk.len().is_multiple_of(ours) {
            self.remove(&key);
            return Block1Outcome::Respond(Response::with_payload(
                Code::BAD_REQUEST,
                b"Block1 payload is not a whole number of blocks".to_vec(),
            ));
        }
        if received + chunk.len() > limits.max_body {
            self.remove(&key);
            return too_large(limits.max_body);
        }
        if !block.more {
            let mut body = self
                .uploads
                .remove(&key)
                .map(|u| u.body)
                .unwrap_or_default();
            self.total -= body.len();
            body.extend_from_slice(&chunk);
            request.payload = body;
            return Block1Outcome::Deliver(request, block);
        }
        if !self.uploads.contains_key(&key) {
            while self.uploads.len() >= limits.max_transfers
                || self.total + chunk.len() > limits.max_total
            {
                // Evict the oldest upload to make room (its client gets 4.08 later).
                let Some((at, old)) = self.order.pop_front() else {
                    return too_large(limits.max_body);
                };
                // The oldest live upload goes; stale entries are skipped.
                if self.uploads.get(&old).is_some_and(|u| u.queued == at) {
                    self.remove(&old);
                }
            }
        } else if self.total + chunk.len() > limits.max_total {
            self.remove(&key);
            return Block1Outcome::Respond(Response::new(Code::SERVICE_UNAVAILABLE));
        }
        let expires = now + limits.timeout;
        if !self.uploads.contains_key(&key) {
            self.order.push_back((expires, key.clone()));
        }
        let upload = self.uploads.entry(key).or_insert_with(|| Upload {
            body: Vec::new(),
            expires,
            queued: expires,
        });
        upload.body.extend_from_slice(&chunk);
        upload.expires = expires;
        self.total += chunk.len();
        // RFC 7959 §2.3: 2.31 Continue acknowledges the block (in our size, §2.5); a
        // BERT block is acknowledged with its own number (RFC 8323 Figure 14).
        let num = if bert {
            block.num
        } else {
            u32::try_from((received + chunk.len()) / ours)
                .unwrap_or(u32::MAX)
                .saturating_sub(1)
        };
        let mut response = Response::new(Code::CONTINUE);
        let ack = BlockValue::new(num, true, our_szx).unwrap_or(block);
        let mut buf = [0u8; 4];
        response
            .options
            .push(OptionNumber::BLOCK1, ack.encode(&mut buf).to_vec());
        Block1Outcome::Respond(response)
    }
}

fn too_large(max: usize) -> Block1Outcome {
    // RFC 7959 §2.9.3: 4.13 with Size1 telling the largest body we take.
    let mut response = Response::new(Code::REQUEST_ENTITY_TOO_LARGE);
    response
        .options
        .push_uint(OptionNumber::SIZE1, u32::try_from(max).unwrap_or(u32::MAX));
    Block1Outcome::Respond(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn limits() -> Block1Limits {
        Block1Limits {
            max_body: 4096,
            max_transfers: 2,
            max_total: 8192,
            timeout: Duration::from_secs(60),
            max_szx: 6,
        }
    }

    fn block_request(num: u32, more: bool, szx: u8, payload: &[u8], tag: &[u8]) -> Request {
        let mut r = Request::new(Code::POST);
        r.set_path("/upload");
        let mut buf = [0u8; 4];
        let b = BlockValue::new(num, more, szx).unwrap();
        r.options
            .push(OptionNumber::BLOCK1, b.encode(&mut buf).to_vec());
        if !tag.is_empty() {
            r.options.push(OptionNumber::REQUEST_TAG, tag.to_vec());
        }
        r.payload = payload.to_vec();
        r
    }

    fn run(t: &mut Block1Table<u8>, now: Instant, r: Request) -> Block1Outcome {
        let b = BlockValue::decode(r.options.get(OptionNumber::BLOCK1).unwrap()).unwrap();
        t.handle(now, &1, r, b, true)
    }

    fn code(o: &Block1Outcome) -> Code {
        match o {
            Block1Outcome::Respond(r) => r.code,
            Block1Outcome::Deliver(..) => Code::EMPTY,
        }
    }

    #[test]
    fn blocks_in_order_are_reassembled() {
        let mut t = Block1Table::new(limits());
        let now = Instant::ZERO;
        let a = vec![b'a'; 64];
        assert_eq!(
            code(&run(&mut t, now, block_request(0, true, 2, &a, b""))),
            Code::CONTINUE
        );
        assert_eq!(
            code(&run(&mut t, now, block_request(1, true, 2, &a, b""))),
            Code::CONTINUE
        );
        match run(&mut t, now, block_request(2, false, 2, b"end", b"")) {
            Block1Outcome::Deliver(req, last) => {
                assert_eq!(req.payload.len(), 131);
                assert!(!req.options.contains(OptionNumber::BLOCK1));
                assert_eq!(last.num, 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.len(), 0);
        assert_eq!(t.total, 0);
    }

    #[test]
    fn out_of_sequence_block_is_incomplete() {
        let mut t = Block1Table::new(limits());
        let a = vec![0u8; 64];
        let now = Instant::ZERO;
        run(&mut t, now, block_request(0, true, 2, &a, b""));
        let o = run(&mut t, now, block_request(2, true, 2, &a, b""));
        assert_eq!(code(&o), Code::REQUEST_ENTITY_INCOMPLETE);
        // A block 1 without block 0 is incomplete too.
        let o = run(&mut t, now, block_request(1, false, 2, &a, b"x"));
        assert_eq!(code(&o), Code::REQUEST_ENTITY_INCOMPLETE);
    }

    #[test]
    fn request_tags_keep_concurrent_uploads_apart() {
        let mut t = Block1Table::new(limits());
        let now = Instant::ZERO;
        run(&mut t, now, block_request(0, true, 2, &[1; 64], b"A"));
        run(&mut t, now, block_request(0, true, 2, &[2; 64], b"B"));
        let Block1Outcome::Deliver(a, _) = run(&mut t, now, block_request(1, false, 2, &[1], b"A"))
        else {
            panic!()
        };
        let Block1Outcome::Deliver(b, _) = run(&mut t, now, block_request(1, false, 2, &[2], b"B"))
        else {
            panic!()
        };
        assert!(a.payload.iter().all(|&x| x == 1) && a.payload.len() == 65);
        assert!(b.payload.iter().all(|&x| x == 2) && b.payload.len() == 65);
    }

    #[test]
    fn too_large_is_413_with_size1() {
        let mut t = Block1Table::new(limits());
        let now = Instant::ZERO;
        let mut r = block_request(0, true, 6, &[0; 1024], b"");
        r.options.push_uint(OptionNumber::SIZE1, 100_000);
        match run(&mut t, now, r) {
            Block1Outcome::Respond(resp) => {
                assert_eq!(resp.code, Code::REQUEST_ENTITY_TOO_LARGE);
                assert_eq!(resp.options.get_uint(OptionNumber::SIZE1), Some(4096));
            }
            other => panic!("{other:?}"),
        }
        // Without Size1, the limit bites when the body grows past it.
        for num in 0..4 {
            assert_eq!(
                code(&run(
                    &mut t,
                    now,
                    block_request(num, true, 6, &[0; 1024], b"")
                )),
                Code::CONTINUE
            );
        }
        assert_eq!(
            code(&run(
                &mut t,
                now,
                block_request(4, true, 6, &[0; 1024], b"")
            )),
            Code::REQUEST_ENTITY_TOO_LARGE
        );
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn transfers_are_bounded_and_expire() {
        let mut t = Block1Table::new(limits());
        let now = Instant::ZERO;
        for tag in [b"1", b"2", b"3"] {
            run(&mut t, now, block_request(0, true, 2, &[0; 64], tag));
            assert!(t.len() <= 2);
        }
        t.expire(now + Duration::from_secs(61));
        assert_eq!(t.len(), 0);
        assert_eq!(t.total, 0);
    }

    /// RFC 7959 Figure 9: the client sends 128-byte blocks, the server wants 32: it
    /// keeps the 128 bytes and answers 2.31 with Block1 3/1/32; the client continues
    /// with block 4 of 32 bytes.
    #[test]
    fn rfc7959_figure9_slow_down() {
        let mut l = limits();
        l.max_szx = 1; // 32 bytes
        let mut t = Block1Table::new(l);
        let now = Instant::ZERO;
        match run(&mut t, now, block_request(0, true, 3, &[1; 128], b"")) {
            Block1Outcome::Respond(resp) => {
                assert_eq!(resp.code, Code::CONTINUE);
                let ack = BlockValue::decode(resp.options.get(OptionNumber::BLOCK1).unwrap());
                assert_eq!(ack, BlockValue::new(3, true, 1));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            code(&run(&mut t, now, block_request(4, true, 1, &[2; 32], b""))),
            Code::CONTINUE
        );
        match run(&mut t, now, block_request(5, false, 1, &[3; 10], b"")) {
            Block1Outcome::Deliver(req, _) => assert_eq!(req.payload.len(), 170),
            other => panic!("{other:?}"),
        }
    }

    /// Repeating block 0 of one upload keeps one queue entry, not one per block.
    #[test]
    fn queue_holds_one_entry_per_upload() {
        let mut t = Block1Table::new(limits());
        let now = Instant::ZERO;
        for _ in 0..1000 {
            run(&mut t, now, block_request(0, true, 2, &[0; 64], b""));
        }
        assert_eq!(t.len(), 1);
        assert!(t.order.len() <= 2, "{}", t.order.len());
    }

    #[test]
    fn late_negotiation_lowers_the_block_size() {
        let mut l = limits();
        l.max_szx = 4; // 256 bytes
        let mut t = Block1Table::new(l);
        let now = Instant::ZERO;
        match run(&mut t, now, block_request(0, true, 6, &[7; 1024], b"")) {
            Block1Outcome::Respond(resp) => {
                assert_eq!(resp.code, Code::CONTINUE);
                let ack = BlockValue::decode(resp.options.get(OptionNumber::BLOCK1).unwrap());
                // 1024 bytes kept = blocks 0..=3 of 256.
                assert_eq!(ack, BlockValue::new(3, true, 4));
            }
            other => panic!("{other:?}"),
        }
        // The client continues at offset 1024 with our size.
        assert_eq!(
            code(&run(&mut t, now, block_request(4, true, 4, &[7; 256], b""))),
            Code::CONTINUE
        );
    }

    /// RFC 8323 Figure 14: BERT blocks of 8192 and 16384 bytes, acknowledged with their
    /// own numbers, then a final one.
    #[test]
    fn rfc8323_figure14_bert_upload() {
        let mut l = limits();
        l.max_body = 1 << 20;
        l.max_total = 1 << 20;
        let mut t = Block1Table::new(l);
        let now = Instant::ZERO;
        for (num, len) in [(0u32, 8192usize), (8, 16384)] {
            match run(&mut t, now, block_request(num, true, 7, &vec![1; len], b"")) {
                Block1Outcome::Respond(resp) => {
                    assert_eq!(resp.code, Code::CONTINUE);
                    let ack = BlockValue::decode(resp.options.get(OptionNumber::BLOCK1).unwrap());
                    assert_eq!(ack, BlockValue::new(num, true, 7));
                }
                other => panic!("{other:?}"),
            }
        }
        match run(
            &mut t,
            now,
            block_request(24, false, 7, &vec![2; 5683], b""),
        ) {
            Block1Outcome::Deliver(req, last) => {
                assert_eq!(req.payload.len(), 8192 + 16384 + 5683);
                assert_eq!(last, BlockValue::new(24, false, 7).unwrap());
            }
            other => panic!("{other:?}"),
        }
        // A non-final BERT block that is not a whole number of 1024-byte units: 4.00.
        let r = run(&mut t, now, block_request(0, true, 7, &[1; 1500], b""));
        assert_eq!(code(&r), Code::BAD_REQUEST);
    }
}
