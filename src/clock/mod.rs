//! The two clocks, and the one rule for using them.
//!
//! A Pi has no real-time clock: it boots with an old wall time and NTP steps
//! it by months, forwards or back. So ages, staleness, timeouts and rates are
//! measured on the monotonic clock ([`std::time::Instant`]), and the wall
//! clock only labels things: an event's `ts`, a log line, a file name.
//!
//! This module reads the wall clock for events and files; the only other
//! reader is `logger`, for its line timestamps (both sit on the bottom layer,
//! so neither can use the other). Code below the edges takes `now`
//! as a parameter instead of reading either clock.
//!
//! [`Stamps`] turns wall-clock readings into event `ts` labels that never go
//! back within an epoch; [`sync`] tells whether the wall clock is set.

pub mod sync;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use self::sync::ClockState;

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is set
/// before 1970). A label, never a measure of elapsed time.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Wall-clock whole seconds since the Unix epoch (0 before 1970).
pub fn wall_secs() -> u64 {
    wall_ms() / 1000
}

/// How long ago `then` was at `now`, on the monotonic clock; zero when
/// `then` is later (an instant handed over from another thread).
pub fn age(then: Instant, now: Instant) -> Duration {
    now.saturating_duration_since(then)
}

/// [`age`] in whole milliseconds, as stats and metrics report it.
pub fn age_ms(then: Instant, now: Instant) -> u64 {
    age(then, now).as_millis() as u64
}

/// The `ts` labels of one epoch's events: never lower than the last one
/// handed out (docs/protocol.md §6.2).
///
/// An event whose own `ts` (the wall clock when it was received, or a chained
/// upstream's) is at or above the last label keeps it. One below it — the
/// wall clock stepped back, or an upstream replays old events — gets the last
/// label advanced by the monotonic time since that label was handed out, so
/// labels go on at the pace of real time until the wall clock catches up.
/// A forward step is taken as it comes: the labels jump with the clock.
/// Pure: `now` is passed in.
#[derive(Clone, Debug)]
pub struct Stamps {
    /// The last label handed out.
    last: u64,
    /// When it was handed out.
    last_at: Instant,
    /// While labels run ahead of the sources: the label they continue from,
    /// and when that label was handed out.
    ahead: Option<(u64, Instant)>,
}

impl Stamps {
    /// Labels that continue from `last` (the newest `ts` of the epoch so
    /// far, 0 for a new one) at `now`.
    pub fn new(last: u64, now: Instant) -> Stamps {
        Stamps {
            last,
            last_at: now,
            ahead: None,
        }
    }

    /// The label for an event its source stamped `ts`, at `now`.
    pub fn stamp(&mut self, ts: u64, now: Instant) -> u64 {
        let label = if ts >= self.last {
            self.ahead = None;
            ts
        } else {
            let (base, since) = *self.ahead.get_or_insert((self.last, self.last_at));
            base.saturating_add(age_ms(since, now)).max(self.last)
        };
        self.last = label;
        self.last_at = now;
        label
    }

    /// How far the labels run ahead of `wall_ms` (the wall clock now): 0
    /// unless the clock stepped back below the last label and has not caught
    /// up yet.
    pub fn ahead_of(&self, wall_ms: u64, now: Instant) -> u64 {
        match self.ahead {
            Some((base, since)) => base
                .saturating_add(age_ms(since, now))
                .saturating_sub(wall_ms),
            None => self.last.saturating_sub(wall_ms),
        }
    }

    /// The last label handed out.
    pub fn last(&self) -> u64 {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 86_400_000;

    #[test]
    fn labels_never_go_back_and_keep_real_time_after_a_backward_step() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let wall0 = 1_780_000_000_000;
        let mut stamps = Stamps::new(0, t0);
        assert_eq!(stamps.stamp(wall0, at(0)), wall0);
        assert_eq!(stamps.stamp(wall0 + 100, at(100)), wall0 + 100);
        // The clock steps back 90 days: labels go on from the last one at
        // the monotonic pace.
        let back = wall0 - 90 * DAY_MS;
        assert_eq!(stamps.stamp(back + 200, at(200)), wall0 + 200);
        assert_eq!(stamps.stamp(back + 1_200, at(1_200)), wall0 + 1_200);
        assert_eq!(stamps.ahead_of(back + 1_200, at(1_200)), 90 * DAY_MS);
        // Jitter between two feeds never lowers a label either.
        let mut jitter = Stamps::new(0, t0);
        jitter.stamp(wall0 + 5, at(5));
        assert_eq!(jitter.stamp(wall0 + 3, at(5)), wall0 + 5);
        assert_eq!(jitter.stamp(wall0 + 7, at(7)), wall0 + 7);
        assert_eq!(jitter.ahead_of(wall0 + 7, at(7)), 0);
        // A forward step of 90 days is taken as it is.
        let fwd = back + 90 * DAY_MS * 2;
        assert_eq!(stamps.stamp(fwd, at(2_000)), fwd);
        assert_eq!(stamps.ahead_of(fwd, at(2_000)), 0);
    }

    #[test]
    fn a_restart_under_a_clock_behind_the_journal_continues_from_its_newest_ts() {
        let t0 = Instant::now();
        let newest = 1_780_000_000_000;
        let mut stamps = Stamps::new(newest, t0);
        // Booted at 1970: every label continues from the journal's newest.
        assert_eq!(
            stamps.stamp(5_000, t0 + Duration::from_secs(3)),
            newest + 3_000
        );
        assert_eq!(stamps.last(), newest + 3_000);
    }

    #[test]
    fn an_instant_from_the_future_has_no_age() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(250);
        assert_eq!(age_ms(t0, later), 250);
        assert_eq!(age(later, t0), Duration::ZERO);
    }

    #[test]
    fn wall_seconds_are_wall_milliseconds_cut_to_seconds() {
        let (ms, secs) = (wall_ms(), wall_secs());
        assert!(secs >= ms / 1000 && secs <= ms / 1000 + 1, "{ms} {secs}");
    }
}
