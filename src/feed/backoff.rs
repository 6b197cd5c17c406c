//! Reconnect delays: exponential backoff with full jitter (docs/config.md §12).
//!
//! The delay before attempt n is uniform in [0, min(MAX, BASE × 2ⁿ)]; after a
//! link stayed up for [`RESET_AFTER`] the schedule starts again from the base.
//! Pure: randomness and time are passed in.

use std::time::Duration;

/// First retry ceiling.
pub const BASE: Duration = Duration::from_millis(500);
/// Retry ceiling cap: an upstream that is down for hours is still retried
/// every 30 s at worst, without hammering it.
pub const MAX: Duration = Duration::from_secs(30);
/// A link that stayed up this long was healthy: its next failure starts the
/// schedule from [`BASE`] again.
pub const RESET_AFTER: Duration = Duration::from_secs(30);

/// Backoff state of one feed.
#[derive(Clone, Debug, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// A fresh schedule.
    pub fn new() -> Backoff {
        Backoff::default()
    }

    /// The ceiling of the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(16)).unwrap_or(u32::MAX);
        BASE.saturating_mul(factor).min(MAX)
    }

    /// The delay before the next attempt; `unit` is a uniform random number
    /// in [0, 1) (full jitter). Advances the schedule.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let delay = self.ceiling().mul_f64(unit.clamp(0.0, 1.0));
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Reports how long the last link stayed up; a long one resets the
    /// schedule.
    pub fn link_lasted(&mut self, up_for: Duration) {
        if up_for >= RESET_AFTER {
            self.attempt = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_from_half_a_second_to_thirty() {
        let mut backoff = Backoff::new();
        let ceilings: Vec<u64> = (0..10)
            .map(|_| {
                let c = backoff.ceiling().as_millis() as u64;
                backoff.next_delay(0.5);
                c
            })
            .collect();
        assert_eq!(
            ceilings,
            [
                500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000
            ]
        );
    }

    #[test]
    fn full_jitter_spans_zero_to_ceiling() {
        let mut backoff = Backoff::new();
        for _ in 0..3 {
            backoff.next_delay(0.0);
        }
        let mut at_zero = backoff.clone();
        assert_eq!(at_zero.next_delay(0.0), Duration::ZERO);
        assert_eq!(backoff.next_delay(0.999_999).as_millis(), 3999);
    }

    #[test]
    fn long_link_resets_short_link_does_not() {
        let mut backoff = Backoff::new();
        for _ in 0..5 {
            backoff.next_delay(0.5);
        }
        backoff.link_lasted(Duration::from_secs(5));
        assert_eq!(backoff.ceiling(), Duration::from_secs(16));
        backoff.link_lasted(RESET_AFTER);
        assert_eq!(backoff.ceiling(), BASE);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut backoff = Backoff {
            attempt: u32::MAX - 1,
        };
        assert_eq!(backoff.ceiling(), MAX);
        backoff.next_delay(1.0);
        backoff.next_delay(1.0);
        assert_eq!(backoff.ceiling(), MAX);
    }
}
