//! The system time zone, read in Rust by `jiff`: `TZ` when it is set (a
//! zone name, a path or a POSIX rule such as `CET-1CEST,M3.5.0,M10.5.0/3`),
//! else `/etc/localtime`, with the rules from `/usr/share/zoneinfo`. No C
//! library's `localtime` is involved.
//!
//! `jiff` keeps the zone it found for five minutes, so asking again is
//! cheap and a changed `/etc/localtime` is seen within minutes.

use std::sync::atomic::{AtomicBool, Ordering};

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Set once the failure to find the zone has been logged.
static WARNED: AtomicBool = AtomicBool::new(false);

/// The system's time zone; UTC (with one warning in the log) when it
/// cannot be found.
pub fn local() -> TimeZone {
    match TimeZone::try_system() {
        Ok(zone) => zone,
        Err(e) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "cannot tell the local time zone ({e}); using UTC for the clock and \
                     [display] schedule: set TZ or /etc/localtime (timedatectl set-timezone)"
                );
            }
            TimeZone::UTC
        }
    }
}

/// The wall time `ms` (since the Unix epoch) as a timestamp.
pub fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or(Timestamp::MAX)
}

/// A timestamp as ms since the Unix epoch (0 before it).
pub fn millis(at: Timestamp) -> u64 {
    u64::try_from(at.as_millisecond()).unwrap_or(0)
}

/// Minutes east of UTC in `zone` at wall time `ms` (daylight saving
/// included).
pub fn offset_minutes(zone: &TimeZone, ms: u64) -> i32 {
    zone.to_offset(timestamp(ms)).seconds() / 60
}

/// Wall time `at` as a local label with its offset, to the second:
/// `2026-12-07T20:00:00+01:00`.
pub fn label(zone: &TimeZone, at: Timestamp) -> String {
    label_at_offset(at, zone.to_offset(at).seconds())
}

/// Wall time `at` as a label at `offset_s` seconds east of UTC; pure (no
/// zone to look up), for a reader that must not touch files.
pub fn label_at_offset(at: Timestamp, offset_s: i32) -> String {
    let offset = jiff::tz::Offset::from_seconds(offset_s).unwrap_or(jiff::tz::Offset::UTC);
    let local = offset.to_datetime(at);
    let sign = if offset_s < 0 { '-' } else { '+' };
    let minutes = offset_s.unsigned_abs() / 60;
    // By hand rather than `strftime`, which would bring jiff's whole
    // formatting engine into the binary for one label.
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        local.year(),
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        local.second(),
        minutes / 60,
        minutes % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_offsets_follow_the_zone_and_its_daylight_saving() {
        let zone = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        // 2026-07-01T10:00:00Z is summer time in Berlin, December winter.
        let summer = 1_782_900_000_000;
        assert_eq!(offset_minutes(&zone, summer), 120);
        assert_eq!(label(&zone, timestamp(summer)), "2026-07-01T12:00:00+02:00");
        let winter = 1_796_601_600_000; // 2026-12-07T00:00:00Z
        assert_eq!(offset_minutes(&zone, winter), 60);
        assert_eq!(label(&zone, timestamp(winter)), "2026-12-07T01:00:00+01:00");
        let tehran = TimeZone::posix("<+0330>-3:30").unwrap();
        assert_eq!(
            label(&tehran, timestamp(winter)),
            "2026-12-07T03:30:00+03:30"
        );
        let west = TimeZone::posix("<-0230>2:30").unwrap();
        assert_eq!(label(&west, timestamp(winter)), "2026-12-06T21:30:00-02:30");
        assert_eq!(millis(timestamp(winter)), winter);
    }

    #[test]
    fn the_system_zone_is_found_or_utc() {
        // Whatever this machine's zone is, asking for it works.
        let zone = local();
        let _ = offset_minutes(&zone, 1_796_601_600_000);
    }
}
