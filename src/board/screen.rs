//! The screen's state as the renderer last set it, for `/healthz`, `stats`
//! and `/metrics`: on or off, why, how it goes dark, and when the schedule
//! changes next (docs/protocol.md §19.1).
//!
//! The renderer writes it with atomics on each switch and each new
//! verdict; the hub reads it when asked, never waiting on the board. No
//! I/O, no clock, no time zone lookup (the renderer hands over the local
//! offset with the time): `now` is passed in.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use crate::metrics::{Kind, MetricsText};
use crate::schedule::verdict::{Reason, Verdict};
use crate::schedule::zone;

/// "No next change" in the atomics below.
const NONE: u64 = u64::MAX;

/// How the screen goes dark, as reported: the configured `off`, after the
/// renderer found what this backend and machine can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Darkness {
    /// A black frame (or nothing drawn) only.
    Black,
    /// The framebuffer's `FBIOBLANK`.
    Fbioblank,
    /// `xset dpms force off`, and a black frame.
    Dpms,
    /// `cec-ctl --standby`, and a black frame.
    Cec,
}

impl Darkness {
    /// Every value, in index order.
    const ALL: [Darkness; 4] = [
        Darkness::Black,
        Darkness::Fbioblank,
        Darkness::Dpms,
        Darkness::Cec,
    ];

    /// The name in `/healthz`.
    pub fn name(self) -> &'static str {
        match self {
            Darkness::Black => "black_frame",
            Darkness::Fbioblank => "fbioblank",
            Darkness::Dpms => "dpms",
            Darkness::Cec => "cec",
        }
    }

    fn index(self) -> u8 {
        Darkness::ALL.iter().position(|d| *d == self).unwrap_or(0) as u8
    }

    fn from_index(i: u8) -> Darkness {
        Darkness::ALL
            .get(usize::from(i))
            .copied()
            .unwrap_or(Darkness::Black)
    }
}

/// The screen's state, shared by the renderer (writer) and the hub
/// (reader).
#[derive(Debug)]
pub struct ScreenStatus {
    /// Monotonic base of `next_at_ms`.
    base: Instant,
    /// A schedule is configured.
    scheduled: AtomicBool,
    on: AtomicBool,
    reason: AtomicU8,
    darkness: AtomicU8,
    /// Wall ms of the schedule's next change, or [`NONE`].
    next_ms: AtomicU64,
    /// The local offset then, in seconds east of UTC, for its label.
    next_offset_s: AtomicI32,
    /// The same change as ms after `base` on the monotonic clock, or
    /// [`NONE`].
    next_at_ms: AtomicU64,
    /// Switches off and on since start.
    switches: AtomicU64,
}

impl Default for ScreenStatus {
    fn default() -> ScreenStatus {
        ScreenStatus {
            base: Instant::now(),
            scheduled: AtomicBool::new(false),
            on: AtomicBool::new(true),
            reason: AtomicU8::new(Reason::NoSchedule.index()),
            darkness: AtomicU8::new(Darkness::Black.index()),
            next_ms: AtomicU64::new(NONE),
            next_offset_s: AtomicI32::new(0),
            next_at_ms: AtomicU64::new(NONE),
            switches: AtomicU64::new(0),
        }
    }
}

impl ScreenStatus {
    /// Says whether a schedule is configured and how the screen goes dark.
    pub fn configure(&self, scheduled: bool, darkness: Darkness) {
        self.scheduled.store(scheduled, Ordering::Relaxed);
        self.darkness.store(darkness.index(), Ordering::Relaxed);
    }

    /// Records `verdict`; its next change is due at `next_at` on the
    /// monotonic clock, when the local offset is `offset_s` seconds east
    /// of UTC.
    pub fn set(&self, verdict: &Verdict, next_at: Option<Instant>, offset_s: i32) {
        self.next_offset_s.store(offset_s, Ordering::Relaxed);
        if self.on.swap(verdict.on, Ordering::Relaxed) != verdict.on {
            self.switches.fetch_add(1, Ordering::Relaxed);
        }
        self.reason.store(verdict.reason.index(), Ordering::Relaxed);
        self.next_ms.store(
            verdict.next_change.map_or(NONE, zone::millis),
            Ordering::Relaxed,
        );
        let at = next_at.map_or(NONE, |t| {
            t.saturating_duration_since(self.base).as_millis() as u64
        });
        self.next_at_ms.store(at, Ordering::Relaxed);
    }

    /// Whether the screen is on.
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Seconds from `now` to the next change on the monotonic clock.
    fn next_in_s(&self, now: Instant) -> Option<u64> {
        let at = self.next_at_ms.load(Ordering::Relaxed);
        (at != NONE).then(|| {
            let elapsed = now.saturating_duration_since(self.base).as_millis() as u64;
            at.saturating_sub(elapsed).div_ceil(1000)
        })
    }

    /// `{"on","reason","off","schedule","next_change_ms","next_change",
    /// "next_change_in_s","switches"}` for `/healthz` and `stats`.
    pub fn to_json(&self, now: Instant) -> Value {
        let next_ms = self.next_ms.load(Ordering::Relaxed);
        let next = (next_ms != NONE).then_some(next_ms);
        json!({
            "on": self.is_on(),
            "reason": Reason::from_index(self.reason.load(Ordering::Relaxed)).name(),
            "off": Darkness::from_index(self.darkness.load(Ordering::Relaxed)).name(),
            "schedule": self.scheduled.load(Ordering::Relaxed),
            "next_change_ms": next,
            "next_change": next.map(|ms| {
                let offset = self.next_offset_s.load(Ordering::Relaxed);
                zone::label_at_offset(zone::timestamp(ms), offset)
            }),
            "next_change_in_s": self.next_in_s(now),
            "switches": self.switches.load(Ordering::Relaxed),
        })
    }

    /// Appends `tablo_screen_on`, `tablo_screen_switches_total` and
    /// `tablo_screen_next_change_seconds`.
    pub fn write_metrics(&self, now: Instant, text: &mut MetricsText<'_>) {
        text.single(
            "screen_on",
            Kind::Gauge,
            "1 while the board's screen is on, 0 while the schedule has it dark.",
            u64::from(self.is_on()),
        );
        text.single(
            "screen_switches_total",
            Kind::Counter,
            "Times the screen went off or on.",
            self.switches.load(Ordering::Relaxed),
        );
        if let Some(s) = self.next_in_s(now) {
            text.single(
                "screen_next_change_seconds",
                Kind::Gauge,
                "Seconds until the schedule switches the screen next (monotonic).",
                s,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_state_reads_back_with_its_next_change_in_both_clocks() {
        let status = ScreenStatus::default();
        let now = Instant::now();
        assert_eq!(status.to_json(now)["reason"], "no_schedule");
        status.configure(true, Darkness::Fbioblank);
        let at = zone::timestamp(1_796_601_600_000);
        let verdict = Verdict {
            on: false,
            reason: Reason::Schedule,
            next_change: Some(at),
        };
        status.set(&verdict, Some(now + Duration::from_secs(90)), 12_600);
        let json = status.to_json(now);
        assert_eq!(json["on"], false);
        assert_eq!(json["reason"], "schedule");
        assert_eq!(json["off"], "fbioblank");
        assert_eq!(json["next_change_ms"], 1_796_601_600_000u64);
        assert_eq!(json["next_change"], "2026-12-07T03:30:00+03:30");
        assert_eq!(json["next_change_in_s"], 90);
        assert_eq!(json["switches"], 1);
        let mut out = String::new();
        status.write_metrics(now, &mut MetricsText::new(&mut out));
        assert!(out.contains("tablo_screen_on 0"), "{out}");
        assert!(out.contains("tablo_screen_next_change_seconds 90"), "{out}");
    }
}
