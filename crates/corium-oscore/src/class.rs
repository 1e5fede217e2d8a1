//! Option classes (RFC 8613 §4.1, Figure 5, and the OSCORE rules of later option RFCs):
//! which options are encrypted into the COSE plaintext (Inner, Class E) and which stay
//! visible in the OSCORE message (Outer, Class U). There are no Class I options yet
//! (§4.1.2), so the `options` field of the AAD is always empty (§5.4).

use corium_proto::wire::OptionNumber;

/// How OSCORE protects an option (RFC 8613 §4.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum OptionClass {
    /// Class E only: encrypted and integrity protected end to end (§4.1.1). Every option
    /// that is unknown or without defined OSCORE processing is Class E (§4.1).
    Inner,
    /// Class U only: left in the OSCORE message for proxies (§4.1.2).
    Outer,
    /// Both an Inner and an independent Outer instance may exist (Observe, Max-Age, the
    /// Block options, No-Response, Echo, Request-Tag); §4.1.3 says how each is handled.
    Both,
}

/// The class of an option.
///
/// Sources: RFC 8613 Figure 5; RFC 8768 §3 (Hop-Limit: U); RFC 9175 §2.2.1, §3.2.1 (Echo
/// and Request-Tag: E and U); RFC 9177 §4 (Q-Block1/Q-Block2: E and U, like Block);
/// RFC 9668 §3.1 (EDHOC: U).
pub fn option_class(number: OptionNumber) -> OptionClass {
    match number {
        OptionNumber::URI_HOST
        | OptionNumber::URI_PORT
        | OptionNumber::OSCORE
        | OptionNumber::HOP_LIMIT
        | OptionNumber::EDHOC
        | OptionNumber::PROXY_URI
        | OptionNumber::PROXY_SCHEME => OptionClass::Outer,
        OptionNumber::OBSERVE
        | OptionNumber::MAX_AGE
        | OptionNumber::Q_BLOCK1
        | OptionNumber::BLOCK2
        | OptionNumber::BLOCK1
        | OptionNumber::SIZE2
        | OptionNumber::Q_BLOCK2
        | OptionNumber::SIZE1
        | OptionNumber::ECHO
        | OptionNumber::NO_RESPONSE
        | OptionNumber::REQUEST_TAG => OptionClass::Both,
        _ => OptionClass::Inner,
    }
}

/// Where the Block options of a message being protected go (RFC 8613 §4.1.3.4).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum BlockwiseMode {
    /// Block1, Block2, Size1, Size2, Q-Block1, Q-Block2 and Request-Tag of the message
    /// being protected are written as Outer options: the block-wise transfer
    /// (RFC 7959) happens below OSCORE, on the protected message (§4.1.3.4.2). This is
    /// how Corium's endpoint works: it fragments and reassembles OSCORE messages.
    #[default]
    Outer,
    /// They are encrypted as Inner options: the application fragmented the message
    /// before OSCORE (§4.1.3.4.1), and every block is its own OSCORE message.
    Inner,
}

/// Whether an option takes part in block-wise transfer (RFC 7959, RFC 9175 §3, RFC 9177).
pub(crate) fn is_blockwise(number: OptionNumber) -> bool {
    matches!(
        number,
        OptionNumber::BLOCK1
            | OptionNumber::BLOCK2
            | OptionNumber::SIZE1
            | OptionNumber::SIZE2
            | OptionNumber::Q_BLOCK1
            | OptionNumber::Q_BLOCK2
            | OptionNumber::REQUEST_TAG
    )
}

/// Where the sender puts an option of the original message (Observe is placed by the
/// caller, RFC 8613 §4.1.3.5).
pub(crate) fn goes_outer(number: OptionNumber, mode: BlockwiseMode) -> bool {
    match option_class(number) {
        OptionClass::Outer => true,
        OptionClass::Inner => false,
        // Max-Age (§4.1.3.1), No-Response (§4.1.3.6) and Echo (RFC 9175 §2.2.1: servers
        // only produce Inner Echo) go inside; the Block family follows the mode.
        OptionClass::Both => is_blockwise(number) && mode == BlockwiseMode::Outer,
    }
}

/// Whether the receiver keeps an Outer option of a received OSCORE message in the
/// decrypted message. Everything in column E of Figure 5 is discarded (RFC 8613 §8.2
/// step 1, §8.4 step 1): Outer Block options were already consumed by the block-wise
/// layer below (§8.2.1, §8.4.1) and Outer Max-Age and Observe are for proxies.
pub(crate) fn keep_outer(number: OptionNumber) -> bool {
    number != OptionNumber::OSCORE && option_class(number) == OptionClass::Outer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure_5() {
        // (number, E, U) rows of RFC 8613 Figure 5.
        let rows: &[(u16, bool, bool)] = &[
            (1, true, false),
            (3, false, true),
            (4, true, false),
            (5, true, false),
            (6, true, true),
            (7, false, true),
            (8, true, false),
            (9, false, true),
            (11, true, false),
            (12, true, false),
            (14, true, true),
            (15, true, false),
            (17, true, false),
            (20, true, false),
            (23, true, true),
            (27, true, true),
            (28, true, true),
            (35, false, true),
            (39, false, true),
            (60, true, true),
            (258, true, true),
        ];
        for &(n, e, u) in rows {
            let expected = match (e, u) {
                (true, false) => OptionClass::Inner,
                (false, true) => OptionClass::Outer,
                _ => OptionClass::Both,
            };
            assert_eq!(option_class(OptionNumber(n)), expected, "{n}");
        }
        // Unknown options are Class E (§4.1).
        assert_eq!(option_class(OptionNumber(65000)), OptionClass::Inner);
        assert_eq!(option_class(OptionNumber(2)), OptionClass::Inner);
    }

    #[test]
    fn placement() {
        use BlockwiseMode::*;
        assert!(goes_outer(OptionNumber::URI_HOST, Outer));
        assert!(!goes_outer(OptionNumber::URI_PATH, Outer));
        assert!(!goes_outer(OptionNumber::MAX_AGE, Outer));
        assert!(!goes_outer(OptionNumber::ECHO, Outer));
        assert!(!goes_outer(OptionNumber::NO_RESPONSE, Outer));
        assert!(goes_outer(OptionNumber::BLOCK2, Outer));
        assert!(goes_outer(OptionNumber::REQUEST_TAG, Outer));
        assert!(!goes_outer(OptionNumber::BLOCK2, Inner));
        assert!(!goes_outer(OptionNumber::SIZE1, Inner));
        assert!(keep_outer(OptionNumber::URI_HOST));
        assert!(keep_outer(OptionNumber::PROXY_SCHEME));
        assert!(!keep_outer(OptionNumber::OSCORE));
        assert!(!keep_outer(OptionNumber::BLOCK1));
        assert!(!keep_outer(OptionNumber::MAX_AGE));
        assert!(!keep_outer(OptionNumber::OBSERVE));
        assert!(!keep_outer(OptionNumber::URI_PATH));
    }
}
