//! Whether the screen is on, and why: the schedule, a live critical alert
//! that wakes it, or a wall clock that cannot be trusted with opening
//! hours (docs/board.md §9).
//!
//! [`decide`] is pure: the wall time, the zone and the facts are passed
//! in. The renderer asks again at the next change, when the wall clock
//! steps, and when a fact changes.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::Schedule;

/// Why the screen is on or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// There is no schedule: always on.
    NoSchedule,
    /// The schedule: on in its hours, off outside them.
    Schedule,
    /// Outside the hours, but a critical alert is on the band
    /// (`wake_on = "critical"`).
    Alert,
    /// The wall clock is not synchronized, so the hours cannot be told:
    /// on, rather than dark in the middle of a working day.
    ClockUnsynchronized,
}

impl Reason {
    /// Every reason, in [`Reason::index`] order.
    pub const ALL: [Reason; 4] = [
        Reason::NoSchedule,
        Reason::Schedule,
        Reason::Alert,
        Reason::ClockUnsynchronized,
    ];

    /// The name in `/healthz` and `stats`.
    pub fn name(self) -> &'static str {
        match self {
            Reason::NoSchedule => "no_schedule",
            Reason::Schedule => "schedule",
            Reason::Alert => "alert",
            Reason::ClockUnsynchronized => "clock_unsynchronized",
        }
    }

    /// A small number for an atomic, the position in [`Reason::ALL`].
    pub fn index(self) -> u8 {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0) as u8
    }

    /// The reason at `index` (see [`Reason::index`]).
    pub fn from_index(index: u8) -> Reason {
        Reason::ALL
            .get(usize::from(index))
            .copied()
            .unwrap_or(Reason::NoSchedule)
    }
}

/// What the screen should be now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// On (drawing) or off (dark).
    pub on: bool,
    /// Why.
    pub reason: Reason,
    /// When the schedule changes next (wall time), if it ever does and the
    /// clock can be trusted.
    pub next_change: Option<Timestamp>,
}

/// What else decides the screen, besides the schedule and the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The wall clock is known not to be synchronized.
    pub clock_unsynchronized: bool,
    /// A critical alert is on the band and `wake_on = "critical"`.
    pub waking_alert: bool,
}

/// The screen's verdict at wall time `now` in `zone`.
///
/// No schedule: on. An unsynchronized clock: on (the hours cannot be told,
/// and a dark screen in opening hours is worse than a lit one at night).
/// Else the schedule, except that outside its hours a waking alert keeps
/// the screen on while it is live.
pub fn decide(schedule: &Schedule, zone: &TimeZone, now: Timestamp, facts: Facts) -> Verdict {
    if schedule.is_empty() {
        return Verdict {
            on: true,
            reason: Reason::NoSchedule,
            next_change: None,
        };
    }
    if facts.clock_unsynchronized {
        return Verdict {
            on: true,
            reason: Reason::ClockUnsynchronized,
            next_change: None,
        };
    }
    let next_change = schedule.next_change(now, zone);
    let open = schedule.open(now, zone);
    let (on, reason) = match (open, facts.waking_alert) {
        (true, _) => (true, Reason::Schedule),
        (false, true) => (true, Reason::Alert),
        (false, false) => (false, Reason::Schedule),
    };
    Verdict {
        on,
        reason,
        next_change,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::tests::{at, berlin};

    fn schedule() -> Schedule {
        Schedule::parse(["Mon-Fri 08:00-20:00"]).unwrap()
    }

    const CALM: Facts = Facts {
        clock_unsynchronized: false,
        waking_alert: false,
    };

    #[test]
    fn no_schedule_is_always_on_with_nothing_to_wait_for() {
        let v = decide(
            &Schedule::default(),
            &berlin(),
            at("2026-12-05T23:00"),
            CALM,
        );
        assert_eq!(
            (v.on, v.reason, v.next_change),
            (true, Reason::NoSchedule, None)
        );
    }

    #[test]
    fn an_unsynchronized_clock_keeps_the_screen_on_at_night() {
        let facts = Facts {
            clock_unsynchronized: true,
            ..CALM
        };
        let v = decide(&schedule(), &berlin(), at("2026-12-07T23:00"), facts);
        assert_eq!(
            (v.on, v.reason, v.next_change),
            (true, Reason::ClockUnsynchronized, None)
        );
    }

    #[test]
    fn a_critical_alert_wakes_the_screen_only_outside_the_hours() {
        let zone = berlin();
        let waking = Facts {
            waking_alert: true,
            ..CALM
        };
        let night = decide(&schedule(), &zone, at("2026-12-07T23:00"), waking);
        assert_eq!((night.on, night.reason), (true, Reason::Alert));
        assert_eq!(night.next_change, Some(at("2026-12-08T08:00")));
        let day = decide(&schedule(), &zone, at("2026-12-07T12:00"), waking);
        assert_eq!((day.on, day.reason), (true, Reason::Schedule));
        let dark = decide(&schedule(), &zone, at("2026-12-07T23:00"), CALM);
        assert_eq!((dark.on, dark.reason), (false, Reason::Schedule));
    }

    #[test]
    fn reasons_round_trip_through_their_index() {
        for reason in Reason::ALL {
            assert_eq!(Reason::from_index(reason.index()), reason);
        }
    }
}
