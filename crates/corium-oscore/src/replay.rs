//! Replay protection on the recipient side (RFC 8613 §7.4): the anti-replay sliding
//! window of RFC 6347 §4.1.2.6, 32 entries by default (RFC 8613 §3.2.2), plus the
//! "uninitialised" state of a window lost in a reboot (RFC 8613 Appendix B.1.2).

use core::fmt;

/// The default window size (RFC 8613 §3.2, §3.2.2).
pub const DEFAULT_REPLAY_WINDOW: u32 = 32;
/// The largest supported window size.
pub const MAX_REPLAY_WINDOW: u32 = 128;

/// Whether a window can judge freshness (RFC 8613 Appendix B.1.2).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum WindowState {
    /// The window was lost (e.g. in a reboot) and has no lower limit yet: every request
    /// may be a replay. A request must first be verified as fresh with an Echo round trip
    /// (RFC 9175 §2, RFC 8613 Appendix B.1.2), which then sets the lower limit.
    Uninitialised,
    /// The window rejects every sequence number already accepted or older than the window.
    Ready,
}

/// Why a sequence number was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplayError {
    /// This sequence number was already accepted.
    Duplicate,
    /// The sequence number lies below the window: it cannot be told apart from a replay.
    TooOld,
    /// The window is [`WindowState::Uninitialised`].
    Uninitialised,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplayError::Duplicate => "sequence number already received",
            ReplayError::TooOld => "sequence number below the replay window",
            ReplayError::Uninitialised => "replay window not initialised",
        })
    }
}

impl core::error::Error for ReplayError {}

/// An anti-replay sliding window over received sequence numbers (RFC 6347 §4.1.2.6).
///
/// Checking and updating are separate so that the window only moves once a message has
/// been authenticated (RFC 8613 §8.2 steps 3 and 6); both take `&self`/`&mut self` of one
/// owner, so the pair is atomic (§7.4).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ReplayWindow {
    size: u32,
    state: State,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum State {
    Uninitialised,
    /// Nothing received yet: every sequence number is new.
    Empty,
    /// `seen` bit `i` is set when `top - i` was received.
    Active {
        top: u64,
        seen: u128,
    },
}

impl ReplayWindow {
    /// An empty window of `size` entries (1 to [`MAX_REPLAY_WINDOW`]), as for a newly
    /// established security context; `None` for other sizes.
    pub fn new(size: u32) -> Option<ReplayWindow> {
        (1..=MAX_REPLAY_WINDOW)
            .contains(&size)
            .then_some(ReplayWindow {
                size,
                state: State::Empty,
            })
    }

    /// A window lost in a reboot (RFC 8613 Appendix B.1.2): it refuses everything until
    /// [`initialise`](Self::initialise) sets its lower limit.
    pub fn uninitialised(size: u32) -> Option<ReplayWindow> {
        let mut w = ReplayWindow::new(size)?;
        w.state = State::Uninitialised;
        Some(w)
    }

    /// The number of sequence numbers the window tracks.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Whether the window can judge freshness.
    pub fn state(&self) -> WindowState {
        match self.state {
            State::Uninitialised => WindowState::Uninitialised,
            _ => WindowState::Ready,
        }
    }

    /// The highest sequence number accepted so far.
    pub fn highest(&self) -> Option<u64> {
        match self.state {
            State::Active { top, .. } => Some(top),
            _ => None,
        }
    }

    fn mask(&self) -> u128 {
        if self.size >= 128 {
            u128::MAX
        } else {
            (1u128 << self.size) - 1
        }
    }

    /// Whether `seq` would be accepted, without recording it.
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        match self.state {
            State::Uninitialised => Err(ReplayError::Uninitialised),
            State::Empty => Ok(()),
            State::Active { top, seen } => {
                if seq > top {
                    return Ok(());
                }
                let diff = top - seq;
                if diff >= u64::from(self.size) {
                    return Err(ReplayError::TooOld);
                }
                if seen & (1u128 << diff) != 0 {
                    Err(ReplayError::Duplicate)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Checks `seq` and records it as received.
    pub fn accept(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check(seq)?;
        let mask = self.mask();
        self.state = match self.state {
            State::Active { top, seen } if seq <= top => State::Active {
                top,
                seen: seen | (1u128 << (top - seq)),
            },
            State::Active { top, seen } => {
                let shift = seq - top;
                let moved = if shift >= 128 { 0 } else { seen << shift };
                State::Active {
                    top: seq,
                    seen: (moved | 1) & mask,
                }
            }
            _ => State::Active { top: seq, seen: 1 },
        };
        Ok(())
    }

    /// Sets the lower limit of the window (RFC 8613 Appendix B.1.2): `lower_limit` and
    /// every sequence number below it count as received from now on, higher ones are new.
    /// Used once the freshness of the request carrying `lower_limit` was verified; also
    /// valid on a window that is already ready (it then only ever forgets less).
    pub fn initialise(&mut self, lower_limit: u64) {
        let mask = self.mask();
        self.state = match self.state {
            State::Active { top, seen } if top > lower_limit => {
                let diff = top - lower_limit;
                let at_or_below = if diff >= 128 { 0 } else { u128::MAX << diff };
                State::Active {
                    top,
                    seen: (seen | at_or_below) & mask,
                }
            }
            _ => State::Active {
                top: lower_limit,
                seen: mask,
            },
        };
    }
}

/// An empty window of the default size (32, RFC 8613 §3.2.2).
impl Default for ReplayWindow {
    fn default() -> ReplayWindow {
        ReplayWindow {
            size: DEFAULT_REPLAY_WINDOW,
            state: State::Empty,
        }
    }
}

impl fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ReplayWindow");
        d.field("size", &self.size);
        match self.state {
            State::Uninitialised => d.field("state", &"uninitialised"),
            State::Empty => d.field("state", &"empty"),
            State::Active { top, seen } => d
                .field("highest", &top)
                .field("seen", &format_args!("{seen:#b}")),
        };
        d.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert!(ReplayWindow::new(0).is_none());
        assert!(ReplayWindow::new(129).is_none());
        assert_eq!(ReplayWindow::new(1).unwrap().size(), 1);
        assert_eq!(ReplayWindow::new(128).unwrap().size(), 128);
        assert_eq!(
            ReplayWindow::new(DEFAULT_REPLAY_WINDOW).unwrap().state(),
            WindowState::Ready
        );
    }

    #[test]
    fn default_window_edges() {
        let mut w = ReplayWindow::new(32).unwrap();
        assert_eq!(w.highest(), None);
        w.accept(0).unwrap();
        assert_eq!(w.accept(0), Err(ReplayError::Duplicate));
        w.accept(100).unwrap();
        assert_eq!(w.highest(), Some(100));
        // 100 - 31 = 69 is the oldest number inside the window, 68 is outside.
        w.accept(69).unwrap();
        assert_eq!(w.accept(69), Err(ReplayError::Duplicate));
        assert_eq!(w.check(68), Err(ReplayError::TooOld));
        assert_eq!(w.check(0), Err(ReplayError::TooOld));
        // Out-of-order arrivals inside the window are fine, once each.
        for s in (70..100).rev() {
            w.accept(s).unwrap();
        }
        for s in 69..=100 {
            assert_eq!(w.check(s), Err(ReplayError::Duplicate), "{s}");
        }
        // Moving by one drops 69 out of the window.
        w.accept(101).unwrap();
        assert_eq!(w.check(69), Err(ReplayError::TooOld));
        assert_eq!(w.check(70), Err(ReplayError::Duplicate));
        // A jump larger than the bitmap clears it.
        w.accept(10_000).unwrap();
        assert_eq!(w.check(9_999), Ok(()));
        assert_eq!(w.check(9_968), Err(ReplayError::TooOld));
        assert_eq!(w.check(9_969), Ok(()));
        // The largest sequence number.
        w.accept(crate::MAX_PARTIAL_IV).unwrap();
        assert_eq!(w.accept(crate::MAX_PARTIAL_IV), Err(ReplayError::Duplicate));
    }

    #[test]
    fn window_of_one_and_of_128() {
        let mut w = ReplayWindow::new(1).unwrap();
        w.accept(5).unwrap();
        assert_eq!(w.check(4), Err(ReplayError::TooOld));
        assert_eq!(w.check(5), Err(ReplayError::Duplicate));
        w.accept(6).unwrap();
        let mut w = ReplayWindow::new(128).unwrap();
        w.accept(200).unwrap();
        w.accept(73).unwrap();
        assert_eq!(w.check(72), Err(ReplayError::TooOld));
        w.accept(201).unwrap();
        assert_eq!(w.check(73), Err(ReplayError::TooOld));
        assert_eq!(w.check(200), Err(ReplayError::Duplicate));
        assert_eq!(w.check(74), Ok(()));
    }

    #[test]
    fn uninitialised_then_lower_limit() {
        let mut w = ReplayWindow::uninitialised(32).unwrap();
        assert_eq!(w.state(), WindowState::Uninitialised);
        assert_eq!(w.check(0), Err(ReplayError::Uninitialised));
        assert_eq!(w.accept(7), Err(ReplayError::Uninitialised));
        w.initialise(50);
        assert_eq!(w.state(), WindowState::Ready);
        // B.1.2: the verified Partial IV is the lower limit; nothing at or below it passes.
        for s in [0, 18, 19, 40, 49, 50] {
            assert!(w.check(s).is_err(), "{s}");
        }
        w.accept(51).unwrap();
        w.accept(60).unwrap();
        assert_eq!(w.check(55), Ok(()));
        assert_eq!(w.check(50), Err(ReplayError::Duplicate));
    }

    #[test]
    fn initialise_on_ready_window_keeps_newer_state() {
        let mut w = ReplayWindow::new(32).unwrap();
        w.accept(10).unwrap();
        w.accept(14).unwrap();
        w.initialise(12);
        assert_eq!(w.check(11), Err(ReplayError::Duplicate));
        assert_eq!(w.check(12), Err(ReplayError::Duplicate));
        assert_eq!(w.check(13), Ok(()));
        assert_eq!(w.check(14), Err(ReplayError::Duplicate));
        assert_eq!(w.highest(), Some(14));
        w.initialise(20);
        assert_eq!(w.highest(), Some(20));
        assert_eq!(w.check(20), Err(ReplayError::Duplicate));
        assert_eq!(w.check(21), Ok(()));
    }
}
