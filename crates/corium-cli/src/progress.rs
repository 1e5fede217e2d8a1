//! A progress bar on stderr for block-wise transfers (RFC 7959), shown only when stderr
//! is a terminal: bytes so far, rate and time left.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use corium::{Direction, Progress};

/// Width of the bar in characters.
const BAR: usize = 24;

/// Returns a progress callback for `corium::ClientBuilder::progress` when stderr is a
/// terminal, `None` otherwise (pipes and files get no control characters).
pub(crate) fn for_stderr() -> Option<impl Fn(Progress) + Send + Sync + 'static> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let start = Mutex::new(None::<Instant>);
    Some(move |p: Progress| {
        let elapsed = {
            let mut start = start
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            start.get_or_insert_with(Instant::now).elapsed()
        };
        let finished = p.total.is_some_and(|t| p.done >= t);
        let mut err = std::io::stderr().lock();
        // `\x1b[K` erases what a longer previous line left behind.
        let _ = write!(err, "\r{}\x1b[K", line(&p, elapsed));
        if finished {
            let _ = writeln!(err);
        }
    })
}

/// One status line: `↓ [#####·······] 45%  450.0 kB / 1.0 MB  120.0 kB/s  ETA 5s`.
pub(crate) fn line(p: &Progress, elapsed: Duration) -> String {
    let arrow = match p.direction {
        Direction::Sent => '↑',
        Direction::Received => '↓',
    };
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        p.done as f64 / secs
    } else {
        0.0
    };
    match p.total.filter(|&t| t > 0) {
        Some(total) => {
            let fraction = (p.done as f64 / total as f64).min(1.0);
            let filled = (fraction * BAR as f64).round() as usize;
            let eta = if rate > 0.0 {
                format!(
                    "ETA {}s",
                    ((total.saturating_sub(p.done)) as f64 / rate).ceil()
                )
            } else {
                "ETA ?".to_owned()
            };
            format!(
                "{arrow} [{}{}] {:>3}%  {} / {}  {}/s  {eta}",
                "#".repeat(filled),
                "·".repeat(BAR - filled),
                (fraction * 100.0).floor(),
                bytes(p.done as f64),
                bytes(total as f64),
                bytes(rate),
            )
        }
        None => format!("{arrow} {}  {}/s", bytes(p.done as f64), bytes(rate)),
    }
}

/// Bytes in SI units with one decimal.
fn bytes(n: f64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut n = n;
    let mut unit = 0;
    while n >= 1000.0 && unit < UNITS.len() - 1 {
        n /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n:.0} {}", UNITS[unit])
    } else {
        format!("{n:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_total_shows_bar_rate_and_eta() {
        let p = Progress {
            direction: Direction::Received,
            done: 450_000,
            total: Some(1_000_000),
        };
        assert_eq!(
            line(&p, Duration::from_secs(2)),
            "↓ [###########·············]  45%  450.0 kB / 1.0 MB  225.0 kB/s  ETA 3s"
        );
    }

    #[test]
    fn unknown_total_shows_bytes_and_rate() {
        let p = Progress {
            direction: Direction::Sent,
            done: 2048,
            total: None,
        };
        assert_eq!(line(&p, Duration::from_secs(1)), "↑ 2.0 kB  2.0 kB/s");
    }

    #[test]
    fn finished_and_instant_transfers() {
        let p = Progress {
            direction: Direction::Sent,
            done: 10,
            total: Some(10),
        };
        let l = line(&p, Duration::ZERO);
        assert!(l.contains("100%") && l.contains("ETA ?"), "{l}");
    }
}
