//! Reconnect delays: exponential backoff with full jitter (docs/config.md §12).
//!
//! The delay before attempt n is uniform in [0, min(MAX, BASE × 2ⁿ)]; after a
//! link stayed up for [`RESET_AFTER`] the schedule starts again from the base.
//! [`Outage`] decides when a feed that stays down is reported again.
//! Pure: randomness and time are passed in.

use std::time::{Duration, Instant};

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

/// After the first warning, a feed that stays down is reported again once
/// it has been down this long, then [`STILL_DOWN_EVERY`] after the last of
/// these: often early, when an operator may be watching, rarely later.
pub const STILL_DOWN_AFTER: [Duration; 5] = [
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(15 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
];

/// Past the last of [`STILL_DOWN_AFTER`], a feed still down is reported
/// this often.
pub const STILL_DOWN_EVERY: Duration = Duration::from_secs(60 * 60);

/// One feed's outage: since when it is down, how many connect attempts have
/// failed, and when to say so again.
#[derive(Clone, Debug, Default)]
pub struct Outage {
    /// When the outage began; `None` while the feed is up.
    since: Option<Instant>,
    /// Connect attempts failed since then.
    attempts: u64,
    /// Reports made after the first warning.
    reports: u32,
}

/// What a failed connect attempt should log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// The outage begins: warn with the reason.
    First,
    /// Still down after `down_for`, `attempts` failed attempts: warn again.
    StillDown {
        /// How long the feed has been down.
        down_for: Duration,
        /// Connect attempts failed in that time.
        attempts: u64,
    },
    /// Nothing worth a warning (a debug line at most).
    Quiet,
}

impl Outage {
    /// No outage.
    pub fn new() -> Outage {
        Outage::default()
    }

    /// The link was up and is lost at `now`: an outage begins, and its
    /// warning is the one that says the link was lost.
    pub fn lost(&mut self, now: Instant) {
        *self = Outage {
            since: Some(now),
            ..Outage::default()
        };
    }

    /// The feed connected: the outage, if any, is over.
    pub fn connected(&mut self) {
        *self = Outage::default();
    }

    /// A connect attempt failed at `now`.
    pub fn failed(&mut self, now: Instant) -> Report {
        let Some(since) = self.since else {
            self.since = Some(now);
            self.attempts = 1;
            return Report::First;
        };
        self.attempts += 1;
        let down_for = now.saturating_duration_since(since);
        if down_for < Outage::due(self.reports) {
            return Report::Quiet;
        }
        // One report, however many steps a long gap between attempts passed.
        while Outage::due(self.reports) <= down_for {
            self.reports += 1;
        }
        Report::StillDown {
            down_for,
            attempts: self.attempts,
        }
    }

    /// When report number `n` (0: the first after the warning) falls due.
    fn due(n: u32) -> Duration {
        match STILL_DOWN_AFTER.get(n as usize) {
            Some(&after) => after,
            None => {
                let past = n - STILL_DOWN_AFTER.len() as u32 + 1;
                STILL_DOWN_AFTER[STILL_DOWN_AFTER.len() - 1] + STILL_DOWN_EVERY * past
            }
        }
    }
}

/// `down_for` as a log line says it: `5 min`, `1 h`, `2 h 30 min`
/// (whole minutes, rounded down).
pub fn minutes(down_for: Duration) -> String {
    let total = down_for.as_secs() / 60;
    match (total / 60, total % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `every` from `start` for `until`, a failed attempt: the
    /// reports made, as (minutes down, attempts).
    fn reports(
        outage: &mut Outage,
        start: Instant,
        every: Duration,
        until: Duration,
    ) -> Vec<(u64, u64)> {
        let mut made = Vec::new();
        let mut t = Duration::ZERO;
        while t <= until {
            match outage.failed(start + t) {
                Report::First => made.push((0, 0)),
                Report::StillDown { down_for, attempts } => {
                    made.push((down_for.as_secs() / 60, attempts));
                }
                Report::Quiet => {}
            }
            t += every;
        }
        made
    }

    #[test]
    fn a_long_outage_is_reported_on_a_widening_schedule() {
        let start = Instant::now();
        let mut outage = Outage::new();
        // An attempt every 30 s for three hours.
        let made = reports(
            &mut outage,
            start,
            Duration::from_secs(30),
            Duration::from_secs(3 * 3600),
        );
        assert_eq!(
            made,
            [
                (0, 0),
                (1, 3),
                (5, 11),
                (15, 31),
                (30, 61),
                (60, 121),
                (120, 241),
                (180, 361)
            ]
        );
    }

    #[test]
    fn a_gap_past_several_steps_gives_one_report() {
        let start = Instant::now();
        let mut outage = Outage::new();
        assert_eq!(outage.failed(start), Report::First);
        let at = Duration::from_secs(20 * 60);
        assert_eq!(
            outage.failed(start + at),
            Report::StillDown {
                down_for: at,
                attempts: 2
            }
        );
        // The next step is 30 min, not the 5 and 15 passed over.
        assert_eq!(
            outage.failed(start + Duration::from_secs(29 * 60)),
            Report::Quiet
        );
        assert!(matches!(
            outage.failed(start + Duration::from_secs(30 * 60)),
            Report::StillDown { attempts: 4, .. }
        ));
    }

    #[test]
    fn connecting_ends_the_outage_and_a_lost_link_starts_one() {
        let start = Instant::now();
        let mut outage = Outage::new();
        assert_eq!(outage.failed(start), Report::First);
        outage.connected();
        assert_eq!(
            outage.failed(start + Duration::from_secs(600)),
            Report::First
        );
        // A lost link's own warning is the first; attempts count from it.
        outage.lost(start + Duration::from_secs(1000));
        assert_eq!(
            outage.failed(start + Duration::from_secs(1001)),
            Report::Quiet
        );
        assert_eq!(
            outage.failed(start + Duration::from_secs(1060)),
            Report::StillDown {
                down_for: Duration::from_secs(60),
                attempts: 2
            }
        );
    }

    #[test]
    fn minutes_read_as_minutes_and_hours() {
        assert_eq!(minutes(Duration::from_secs(5 * 60 + 59)), "5 min");
        assert_eq!(minutes(Duration::from_secs(3600)), "1 h");
        assert_eq!(minutes(Duration::from_secs(9000)), "2 h 30 min");
    }

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
