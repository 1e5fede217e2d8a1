//! Server-side Block2 fragmentation (RFC 7959 §2.2–2.4).
//!
//! A response whose payload does not fit one block is cut on the way out. The whole
//! response is kept by the endpoint (`response_cache`) for the rest of the transfer, so
//! later blocks are slices of it: the application runs once per transfer, and a large
//! representation costs O(size) to send, not O(size²). When nothing is kept (expired, or
//! evicted), a GET is simply answered again and cut anew. The ETag added to every block
//! (derived from the payload once, unless the application set one) lets the client notice
//! a representation that changed between blocks.

use corium_wire::{BlockValue, Code, OptionNumber};

use crate::message::Response;

/// The largest block size exponent over UDP: SZX 6 = 1024 bytes (RFC 7959 §2.2; SZX 7 is
/// BERT, reliable transports only).
pub(crate) const MAX_UDP_SZX: u8 = 6;

/// The block sizes a response may use towards one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockLimit {
    /// The largest SZX of a plain block (at most 6, 1024 bytes).
    pub(crate) max_szx: u8,
    /// BERT (RFC 8323 §6): 1024-byte units a block may carry; 0 when the peer did not
    /// announce BERT (Block-Wise-Transfer with a Max-Message-Size above 1152).
    pub(crate) bert_units: usize,
}

impl BlockLimit {
    /// Plain blocks of at most `max_szx` (datagram transports).
    pub(crate) const fn plain(max_szx: u8) -> BlockLimit {
        BlockLimit {
            max_szx: if max_szx > MAX_UDP_SZX {
                MAX_UDP_SZX
            } else {
                max_szx
            },
            bert_units: 0,
        }
    }
}

/// The unit a block number counts: the block size, or 1024 bytes for BERT (SZX 7).
const fn unit(szx: u8) -> usize {
    if szx >= MAX_UDP_SZX {
        1024
    } else {
        1 << (szx + 4)
    }
}

/// What to send for a response.
#[derive(Debug)]
pub(crate) enum Cut {
    /// The response as it is (it fits, or the application did its own block-wise).
    Whole,
    /// This block of it; the whole response (now with an ETag) should be kept.
    Block(Response),
}

/// The SZX and the payload bytes per message for a request that asked for `requested`
/// (or for nothing): a client's SZX is a ceiling (late negotiation, RFC 7959 §2.4); BERT
/// (RFC 8323 §6) when the peer can take it and the request did not ask for a smaller
/// size. A BERT request to a peer without BERT is served in 1024-byte blocks.
fn choose(requested: Option<BlockValue>, limit: BlockLimit) -> (u8, usize) {
    let asked = requested.map_or(BlockValue::BERT_SZX, |b| b.szx);
    if limit.bert_units > 0 && asked == BlockValue::BERT_SZX {
        return (BlockValue::BERT_SZX, limit.bert_units.saturating_mul(1024));
    }
    let szx = asked.min(limit.max_szx.min(MAX_UDP_SZX));
    (szx, unit(szx))
}

/// Decides how `whole` goes out for a request that asked for block `requested` (or for
/// nothing): whole, or one block within `limit`. Adds an ETag to `whole` when it is cut.
/// Returns the error code to answer instead when the requested block does not exist.
pub(crate) fn cut_block(
    whole: &mut Response,
    requested: Option<BlockValue>,
    limit: BlockLimit,
) -> Result<Cut, Code> {
    if whole.options.contains(OptionNumber::BLOCK2) {
        return Ok(Cut::Whole); // The application does its own block-wise transfer.
    }
    let (szx, capacity) = choose(requested, limit);
    let total = whole.payload.len();
    let num = match requested {
        None if total <= capacity => return Ok(Cut::Whole),
        None => 0,
        Some(request) => {
            // The client's block number counts blocks of *its* size; with a smaller size
            // of ours the same byte offset starts a later block (§2.4).
            let offset = request.offset();
            if offset >= total && !(offset == 0 && total == 0) {
                return Err(Code::BAD_OPTION);
            }
            let num = u32::try_from(offset / unit(szx)).map_err(|_| Code::BAD_OPTION)?;
            if num == 0 && total <= capacity && request.szx <= szx {
                // Everything fits: Block2 0 without more blocks tells the client so.
                let block = BlockValue::new(0, false, szx).expect("valid block");
                whole.options.push(OptionNumber::BLOCK2, encode(block));
                return Ok(Cut::Whole);
            }
            num
        }
    };
    if !whole.options.contains(OptionNumber::ETAG) {
        let tag = etag_of(&whole.payload);
        whole.options.push(OptionNumber::ETAG, tag.to_vec());
    }
    Ok(Cut::Block(block_of(whole, num, szx, capacity).0))
}

/// Block `requested` of a kept response (which has its ETag already), and whether it is
/// the last one.
pub(crate) fn block_from_kept(
    whole: &Response,
    requested: BlockValue,
    limit: BlockLimit,
) -> Result<(Response, bool), Code> {
    let (szx, capacity) = choose(Some(requested), limit);
    let offset = requested.offset();
    if offset >= whole.payload.len() {
        return Err(Code::BAD_OPTION);
    }
    let num = u32::try_from(offset / unit(szx)).map_err(|_| Code::BAD_OPTION)?;
    let (block, more) = block_of(whole, num, szx, capacity);
    Ok((block, !more))
}

/// Cuts `response` in place to the block the request asked for; see [`cut_block`].
pub(crate) fn fragment_response(
    response: &mut Response,
    requested: Option<BlockValue>,
    limit: BlockLimit,
) -> Result<(), Code> {
    if let Cut::Block(block) = cut_block(response, requested, limit)? {
        *response = block;
    }
    Ok(())
}

/// Block `num` of `whole`: `capacity` bytes from `num` units of SZX `szx` (a copy of that
/// slice only), with the options of `whole` plus Block2 and Size2 (RFC 7959 §4). Also
/// says whether more follow.
fn block_of(whole: &Response, num: u32, szx: u8, capacity: usize) -> (Response, bool) {
    let total = whole.payload.len();
    let start = (num as usize).saturating_mul(unit(szx)).min(total);
    let end = start.saturating_add(capacity).min(total);
    let more = end < total;
    let mut block = Response {
        code: whole.code,
        options: whole.options.clone(),
        payload: whole.payload[start..end].to_vec(),
    };
    if let Some(value) = BlockValue::new(num, more, szx) {
        block.options.push(OptionNumber::BLOCK2, encode(value));
    }
    block.options.set_uint(
        OptionNumber::SIZE2,
        u32::try_from(total).unwrap_or(u32::MAX),
    );
    (block, more)
}

fn encode(block: BlockValue) -> alloc::vec::Vec<u8> {
    let mut buf = [0u8; 4];
    block.encode(&mut buf).to_vec()
}

/// A strong validator for a representation: 64-bit FNV-1a of its bytes (RFC 7252 §5.10.6
/// allows any opaque value up to 8 bytes).
pub(crate) fn etag_of(payload: &[u8]) -> [u8; 8] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in payload {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn response(len: usize) -> Response {
        Response::with_payload(Code::CONTENT, (0..len).map(|i| i as u8).collect::<Vec<_>>())
    }

    fn block2(r: &Response) -> BlockValue {
        BlockValue::decode(r.options.get(OptionNumber::BLOCK2).unwrap()).unwrap()
    }

    #[test]
    fn small_responses_are_untouched() {
        let mut r = response(1024);
        fragment_response(&mut r, None, BlockLimit::plain(6)).unwrap();
        assert_eq!(r.payload.len(), 1024);
        assert!(r.options.is_empty());
    }

    #[test]
    fn large_response_gets_first_block_with_size2_and_etag() {
        let mut r = response(1500);
        fragment_response(&mut r, None, BlockLimit::plain(6)).unwrap();
        assert_eq!(r.payload.len(), 1024);
        assert_eq!(block2(&r), BlockValue::new(0, true, 6).unwrap());
        assert_eq!(r.options.get_uint(OptionNumber::SIZE2), Some(1500));
        assert_eq!(r.options.get(OptionNumber::ETAG).unwrap().len(), 8);
    }

    #[test]
    fn requested_block_and_late_negotiation() {
        // Block 1 of 512 bytes: bytes 512..1024.
        let mut r = response(1500);
        fragment_response(&mut r, BlockValue::new(1, false, 5), BlockLimit::plain(6)).unwrap();
        assert_eq!(r.payload[0], (512 % 256) as u8);
        assert_eq!(block2(&r), BlockValue::new(1, true, 5).unwrap());
        // The last block has M=0.
        let mut r = response(1500);
        fragment_response(&mut r, BlockValue::new(2, false, 5), BlockLimit::plain(6)).unwrap();
        assert_eq!(r.payload.len(), 1500 - 1024);
        assert!(!block2(&r).more);
        // Our maximum is smaller than the client's: block 1 of 1024 = block 2 of 512.
        let mut r = response(1500);
        fragment_response(&mut r, BlockValue::new(1, false, 6), BlockLimit::plain(5)).unwrap();
        assert_eq!(block2(&r), BlockValue::new(2, false, 5).unwrap());
    }

    #[test]
    fn block_beyond_the_end_is_bad_option() {
        let mut r = response(100);
        assert_eq!(
            fragment_response(&mut r, BlockValue::new(3, false, 6), BlockLimit::plain(6)),
            Err(Code::BAD_OPTION)
        );
    }

    #[test]
    fn same_payload_same_etag() {
        assert_eq!(etag_of(b"abc"), etag_of(b"abc"));
        assert_ne!(etag_of(b"abc"), etag_of(b"abd"));
    }

    /// RFC 8323 Figure 13: a peer that takes 3072-byte BERT blocks gets block 0 of
    /// 3072 bytes (2:0/1/BERT); asking 2:3/0/BERT continues at byte 3072.
    #[test]
    fn rfc8323_figure13_bert_blocks() {
        let bert = BlockLimit {
            max_szx: 6,
            bert_units: 3,
        };
        let total = 3072 + 5120 + 4711;
        let mut r = response(total);
        fragment_response(&mut r, None, bert).unwrap();
        assert_eq!(r.payload.len(), 3072);
        assert_eq!(block2(&r), BlockValue::new(0, true, 7).unwrap());
        let mut r = response(total);
        fragment_response(&mut r, BlockValue::new(3, false, 7), bert).unwrap();
        assert_eq!(block2(&r), BlockValue::new(3, true, 7).unwrap());
        assert_eq!(r.payload[0], (3072 % 256) as u8);
        // This server's BERT blocks are all 3 units; the last one is a partial unit.
        let mut r = response(total);
        fragment_response(&mut r, BlockValue::new(9, false, 7), bert).unwrap();
        assert_eq!(block2(&r), BlockValue::new(9, true, 7).unwrap());
        let mut r = response(total);
        fragment_response(&mut r, BlockValue::new(12, false, 7), bert).unwrap();
        assert_eq!(block2(&r), BlockValue::new(12, false, 7).unwrap());
        assert_eq!(r.payload.len(), total - 12 * 1024);
        // A response that fits a BERT message goes whole; a client asking for 512-byte
        // blocks gets them even from a BERT-capable server.
        let mut r = response(3000);
        fragment_response(&mut r, None, bert).unwrap();
        assert!(r.options.is_empty());
        let mut r = response(3000);
        fragment_response(&mut r, BlockValue::new(0, false, 5), bert).unwrap();
        assert_eq!(block2(&r), BlockValue::new(0, true, 5).unwrap());
        // Without BERT, a BERT request is served in 1024-byte blocks.
        let mut r = response(3000);
        fragment_response(&mut r, BlockValue::new(0, false, 7), BlockLimit::plain(6)).unwrap();
        assert_eq!(block2(&r), BlockValue::new(0, true, 6).unwrap());
    }
}
