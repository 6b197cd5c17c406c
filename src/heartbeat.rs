//! Liveness of the long-lived loops, for the service watchdog.
//!
//! Each loop that must not get stuck (the hub, the journal writer, the
//! renderer) holds a [`Heartbeat`] and calls [`Heartbeat::beat`] every time
//! it comes round, which it does at least every [`MAX_QUIET`] even when
//! there is nothing to do. The watchdog asks [`Heartbeat::silent_for`] and
//! stops pinging systemd when a loop has been silent for too long, so a
//! stuck loop ends in a restart instead of a frozen board.
//!
//! A beat is one relaxed atomic store: cheap enough for every iteration of
//! a hot loop. Nothing here sleeps, spawns or does I/O.
//!
//! For the watchdog's own tests, `TABLO_TEST_STALL=<name>` (read once, when
//! the heartbeat is made at start-up) marks the loop of that name as one
//! that must get stuck on purpose: the loop asks
//! [`Heartbeat::injected_stall`] before it starts and, if asked to, blocks
//! forever without beating. Names: `hub`, `journal` (and `renderer`). It is
//! a test hook, not a setting: nothing else reads it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a healthy loop may go without a beat: every loop that holds a
/// heartbeat wakes at least this often on its own.
pub const MAX_QUIET: Duration = Duration::from_secs(1);

/// The environment variable that makes one loop stall, for tests.
pub const TEST_STALL_VAR: &str = "TABLO_TEST_STALL";

/// The last time a loop came round, as milliseconds since a shared start.
#[derive(Debug)]
pub struct Heartbeat {
    /// The loop's name, for the log line that says which one is stuck.
    name: &'static str,
    started: Instant,
    last_ms: AtomicU64,
    /// `TABLO_TEST_STALL` named this loop.
    stall: bool,
}

impl Heartbeat {
    /// A heartbeat that has just beaten.
    pub fn new(name: &'static str) -> Arc<Heartbeat> {
        let stall = std::env::var_os(TEST_STALL_VAR).is_some_and(|v| v == name);
        Arc::new(Heartbeat {
            name,
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            stall,
        })
    }

    /// Whether a test asked this loop to get stuck (`TABLO_TEST_STALL`
    /// names it). Also logs that it will, so a stuck daemon in a test log
    /// is never a mystery.
    pub fn injected_stall(&self) -> bool {
        if self.stall {
            log::warn!(
                "{TEST_STALL_VAR}={}: the {} loop stops here on purpose (a watchdog test)",
                self.name,
                self.name
            );
        }
        self.stall
    }

    /// The loop's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Records that the loop came round now.
    pub fn beat(&self) {
        self.beat_at(Instant::now());
    }

    /// Records that the loop came round at `now`.
    pub fn beat_at(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.started).as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long before `now` the last beat was.
    pub fn silent_for(&self, now: Instant) -> Duration {
        let last = self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_grows_until_the_next_beat() {
        let heart = Heartbeat::new("test");
        let t0 = Instant::now();
        heart.beat_at(t0);
        let later = t0 + Duration::from_secs(5);
        assert!(heart.silent_for(later) >= Duration::from_millis(4_999));
        heart.beat_at(later);
        assert!(heart.silent_for(later) <= Duration::from_millis(1));
        assert_eq!(heart.name(), "test");
    }

    #[test]
    fn a_late_beat_from_an_earlier_instant_does_not_move_time_back() {
        let heart = Heartbeat::new("test");
        let t0 = Instant::now();
        heart.beat_at(t0 + Duration::from_secs(3));
        heart.beat_at(t0 + Duration::from_secs(1));
        assert!(heart.silent_for(t0 + Duration::from_secs(3)) <= Duration::from_millis(1));
    }
}
