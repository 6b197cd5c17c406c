//! The screen's opening hours: `[display] schedule = ["Mon-Fri
//! 08:00-20:00", "Sat 09:00-14:00"]`, in local time (docs/config.md §7.1).
//!
//! A [`Schedule`] is a set of weekly windows. It answers two questions,
//! both pure, for a wall-clock time and a time zone that are passed in:
//! is the screen open now ([`Schedule::open_at`]), and when does that
//! change next ([`Schedule::next_change`]), exactly, across midnight, the
//! end of the week and daylight-saving days. [`verdict`] adds what else
//! decides the screen (an unsynchronized clock, a live critical alert);
//! [`zone`] reads the system time zone.
//!
//! Opening hours are wall time, so they are evaluated from the wall clock;
//! the caller (the renderer) turns the next change into a monotonic
//! deadline and asks again when the wall clock steps. Nothing here reads a
//! clock, sleeps or does I/O, except [`zone::local`], which reads the
//! system's time zone files.

pub mod verdict;
pub mod zone;

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};

/// Minutes in a day.
const DAY: u16 = 24 * 60;

/// Minutes in a week.
const WEEK: u32 = 7 * DAY as u32;

/// How far ahead [`Schedule::next_change`] looks: a week and a day, since a
/// weekly schedule that changes at all changes within a week (a day more
/// covers windows that cross midnight and daylight-saving shifts).
const HORIZON_DAYS: i64 = 8;

/// The day names, Monday first, as written and as printed.
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The full English day names, also accepted.
const FULL_DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// One entry: on these days, from `start` to `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Bit 0 is Monday … bit 6 Sunday: the days a window starts on.
    days: u8,
    /// Minutes after midnight, 0 to 1439.
    start: u16,
    /// Minutes after midnight, 1 to 1440; at or before `start`, the window
    /// ends on the next day (it crosses midnight).
    end: u16,
}

impl Entry {
    /// The window's length in minutes (it may end on the next day).
    fn minutes(&self) -> u16 {
        if self.end > self.start {
            self.end - self.start
        } else {
            self.end + DAY - self.start
        }
    }

    /// Whether the window contains minute `m` of the week (Monday 00:00 is
    /// 0).
    fn contains(&self, m: u32) -> bool {
        (0..7u32).filter(|d| self.days & (1 << d) != 0).any(|d| {
            let from = d * u32::from(DAY) + u32::from(self.start);
            let to = from + u32::from(self.minutes());
            // A window that starts on Sunday and crosses midnight ends on
            // Monday of the next week.
            (from..to).contains(&m) || (from..to).contains(&(m + WEEK))
        })
    }
}

impl fmt::Display for Entry {
    /// The canonical text: `Mon-Fri 08:00-20:00`, `Mon,Wed 20:00-02:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut d = 0;
        while d < 7 {
            if self.days & (1 << d) == 0 {
                d += 1;
                continue;
            }
            let mut last = d;
            while last + 1 < 7 && self.days & (1 << (last + 1)) != 0 {
                last += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            match last - d {
                0 => f.write_str(DAYS[d])?,
                1 => write!(f, "{},{}", DAYS[d], DAYS[last])?,
                _ => write!(f, "{}-{}", DAYS[d], DAYS[last])?,
            }
            d = last + 1;
        }
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, " {}-{}", hm(self.start), hm(self.end))
    }
}

/// A malformed schedule entry, in words that say how to write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleError(String);

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScheduleError {}

/// The example every error message ends with.
const EXAMPLE: &str = "write days and hours such as \"Mon-Fri 08:00-20:00\", \"Sat,Sun 10:00-14:00\" or \"Fri 20:00-02:00\"";

/// Parses one entry: days (`Mon`, `Mon-Fri`, `Mon,Wed,Fri`, `Fri-Mon`, or
/// the full names), a space, and hours `HH:MM-HH:MM` (the end may be
/// `24:00`; an end at or before the start crosses midnight). Hours alone
/// mean every day.
pub fn parse_entry(text: &str) -> Result<Entry, ScheduleError> {
    let text = text.trim();
    let fail = |why: String| Err(ScheduleError(format!("{why}; {EXAMPLE}")));
    if text.is_empty() {
        return fail("the entry is empty".into());
    }
    let (days_text, hours_text) = match text.rsplit_once(char::is_whitespace) {
        Some((days, hours)) => (days.trim(), hours),
        None if text.contains(':') => ("Mon-Sun", text),
        None => return fail(format!("{text:?} has no hours")),
    };
    let days_text: String = days_text.split_whitespace().collect();
    let mut days = 0u8;
    for part in days_text.split(',') {
        let (from, to) = match part.split_once('-') {
            Some((from, to)) => (day(from)?, day(to)?),
            None => {
                let d = day(part)?;
                (d, d)
            }
        };
        // A range may wrap past Sunday: Fri-Mon is Fri, Sat, Sun, Mon.
        let mut d = from;
        loop {
            days |= 1 << d;
            if d == to {
                break;
            }
            d = (d + 1) % 7;
        }
    }
    let range = hours_text
        .split_once('-')
        .filter(|_| hours_text.contains(':'));
    let Some((start_text, end_text)) = range else {
        return fail(format!(
            "{hours_text:?} is not a range of hours such as 08:00-20:00"
        ));
    };
    let (start, end) = (time(start_text)?, time(end_text)?);
    if start == DAY {
        return fail(format!(
            "{hours_text:?} starts at 24:00; a window starts at 00:00 to 23:59"
        ));
    }
    if start == end {
        return fail(format!(
            "{hours_text:?} is empty; for a whole day write 00:00-24:00"
        ));
    }
    Ok(Entry { days, start, end })
}

/// A day name, Monday 0.
fn day(word: &str) -> Result<usize, ScheduleError> {
    DAYS.iter()
        .position(|d| d.eq_ignore_ascii_case(word))
        .or_else(|| FULL_DAYS.iter().position(|d| d.eq_ignore_ascii_case(word)))
        .ok_or_else(|| {
            ScheduleError(format!(
                "{word:?} is not a day: use {} (or the full names); {EXAMPLE}",
                DAYS.join(", ")
            ))
        })
}

/// `HH:MM` (or `H:MM`) as minutes after midnight, `24:00` included.
fn time(text: &str) -> Result<u16, ScheduleError> {
    let parsed = text.split_once(':').and_then(|(h, m)| {
        let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
            n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(h, 1..=2) || !digits(m, 2..=2) {
            return None;
        }
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        match (h, m) {
            (24, 0) => Some(DAY),
            (0..=23, 0..=59) => Some(h * 60 + m),
            _ => None,
        }
    });
    parsed.ok_or_else(|| {
        ScheduleError(format!(
            "{text:?} is not a time: write HH:MM, from 00:00 to 24:00; {EXAMPLE}"
        ))
    })
}

/// The screen's weekly opening hours. Empty: always open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    entries: Vec<Entry>,
}

impl Schedule {
    /// A schedule of these entries (their union).
    pub fn new(entries: Vec<Entry>) -> Schedule {
        Schedule { entries }
    }

    /// Parses each entry; the error carries the index of the first bad one.
    pub fn parse<'a>(
        entries: impl IntoIterator<Item = &'a str>,
    ) -> Result<Schedule, (usize, ScheduleError)> {
        let entries = entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| parse_entry(e).map_err(|err| (i, err)))
            .collect::<Result<_, _>>()?;
        Ok(Schedule { entries })
    }

    /// The entries, as parsed.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Whether there is no schedule: the screen is always on.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the local time `local` lies in a window. An empty schedule
    /// is always open.
    pub fn open_at(&self, local: DateTime) -> bool {
        if self.entries.is_empty() {
            return true;
        }
        let weekday = u32::from(local.weekday().to_monday_zero_offset() as u8);
        let minute = weekday * u32::from(DAY) + local.hour() as u32 * 60 + local.minute() as u32;
        self.entries.iter().any(|e| e.contains(minute))
    }

    /// Whether the schedule is open at wall time `now` in `zone`.
    pub fn open(&self, now: Timestamp, zone: &TimeZone) -> bool {
        self.open_at(zone.to_datetime(now))
    }

    /// The first instant after `now` at which [`Self::open`] changes, or
    /// `None` when it never does (no schedule, or windows that cover the
    /// whole week).
    ///
    /// Exact across daylight-saving days: a window's edge is taken at each
    /// instant the local clock shows it (twice in a repeated hour, never
    /// in a skipped one), and the zone's own transitions are candidates
    /// too (a skipped hour that holds an edge changes the state at the
    /// jump).
    pub fn next_change(&self, now: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        if self.entries.is_empty() {
            return None;
        }
        let open_now = self.open(now, zone);
        let horizon = now
            .checked_add(jiff::SignedDuration::from_hours(24 * HORIZON_DAYS))
            .ok()?;
        // From yesterday (a window of yesterday's may run past midnight)
        // to the horizon, a day at a time (`tomorrow` rather than calendar
        // spans keeps jiff's span arithmetic out of the binary).
        let mut date = zone.to_datetime(now).date();
        date = date.yesterday().unwrap_or(date);
        let mut candidates: Vec<Timestamp> = Vec::with_capacity(64);
        for _ in -1..=HORIZON_DAYS {
            let weekday = date.weekday().to_monday_zero_offset() as u8;
            for entry in self.entries.iter().filter(|e| e.days & (1 << weekday) != 0) {
                for minutes in [entry.start, entry.start + entry.minutes()] {
                    edge_instants(date, minutes, zone, &mut candidates);
                }
            }
            let Ok(next) = date.tomorrow() else { break };
            date = next;
        }
        candidates.extend(
            zone.following(now)
                .map(|t| t.timestamp())
                .take_while(|t| *t <= horizon),
        );
        candidates.retain(|t| *t > now && *t <= horizon);
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .find(|t| self.open(*t, zone) != open_now)
    }
}

/// Every instant at which the local clock in `zone` shows `minutes` after
/// midnight of `date` (minutes may run into the next day): none in a
/// skipped hour, two in a repeated one.
fn edge_instants(date: Date, minutes: u16, zone: &TimeZone, out: &mut Vec<Timestamp>) {
    let (days, rest) = (minutes / DAY, minutes % DAY);
    let date = match days {
        0 => date,
        _ => match date.tomorrow() {
            Ok(next) => next,
            Err(_) => return,
        },
    };
    let local = date.at((rest / 60) as i8, (rest % 60) as i8, 0, 0);
    let offsets = match zone.to_ambiguous_timestamp(local).offset() {
        AmbiguousOffset::Unambiguous { offset } => [Some(offset), None],
        AmbiguousOffset::Fold { before, after } => [Some(before), Some(after)],
        AmbiguousOffset::Gap { .. } => [None, None],
    };
    out.extend(
        offsets
            .into_iter()
            .flatten()
            .filter_map(|o| o.to_timestamp(local).ok()),
    );
}

#[cfg(test)]
mod tests;
