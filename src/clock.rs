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

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

#[cfg(test)]
mod tests {
    use super::*;

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
