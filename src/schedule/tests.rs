//! The schedule against a fixed zone (Berlin's rules as a POSIX TZ string,
//! so no tzdata is needed): parsing, the week's edges, midnight, daylight
//! saving and clock steps.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use super::*;

/// Central European time with its daylight saving (last Sunday of March
/// 02:00 to last Sunday of October 03:00).
pub(crate) fn berlin() -> TimeZone {
    TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
}

/// Berlin local time `text` (`2026-12-07T08:00`) as an instant.
pub(crate) fn at(text: &str) -> Timestamp {
    let local: DateTime = text.parse().unwrap();
    berlin().to_ambiguous_timestamp(local).compatible().unwrap()
}

/// A UTC instant (`2026-10-25T00:30Z`).
fn utc(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn schedule(entries: &[&str]) -> Schedule {
    Schedule::parse(entries.iter().copied()).unwrap()
}

/// The next change after Berlin local time `from`, as Berlin local time.
#[track_caller]
fn next(s: &Schedule, from: &str) -> Option<String> {
    let zone = berlin();
    s.next_change(at(from), &zone).map(|t| {
        zone.to_datetime(t)
            .strftime("%a %Y-%m-%dT%H:%M")
            .to_string()
    })
}

#[track_caller]
fn check_parse(text: &str, canonical: &str) {
    let entry = parse_entry(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(entry.to_string(), canonical, "{text:?}");
    assert_eq!(
        parse_entry(canonical),
        Ok(entry),
        "round trip of {canonical:?}"
    );
}

#[track_caller]
fn check_error(text: &str, needle: &str) {
    let err = parse_entry(text).expect_err(text).to_string();
    assert!(
        err.contains(needle),
        "{text:?}: {err:?} should contain {needle:?}"
    );
    assert!(err.contains("Mon-Fri 08:00-20:00"), "{err}");
}

#[test]
fn entries_parse_to_one_canonical_text() {
    check_parse("Mon-Fri 08:00-20:00", "Mon-Fri 08:00-20:00");
    check_parse("  mon,wed , FRI   8:00-20:00 ", "Mon,Wed,Fri 08:00-20:00");
    check_parse("Sat 09:00-14:00", "Sat 09:00-14:00");
    check_parse("Fri-Mon 20:00-02:00", "Mon,Fri-Sun 20:00-02:00");
    check_parse("Saturday,Sunday 10:00-24:00", "Sat,Sun 10:00-24:00");
    check_parse("Mon,Tue 00:00-24:00", "Mon,Tue 00:00-24:00");
    check_parse("06:30-22:00", "Mon-Sun 06:30-22:00");
    check_parse("Fri 20:00-00:00", "Fri 20:00-00:00");
}

#[test]
fn bad_entries_say_what_is_wrong_and_how_to_write_it() {
    check_error("", "empty");
    check_error("Mon-Fri", "\"Mon-Fri\" has no hours");
    check_error("Mun 08:00-20:00", "\"Mun\" is not a day");
    check_error("Mon-Fro 08:00-20:00", "\"Fro\" is not a day");
    check_error("Mon 8-20", "\"8-20\" is not a range of hours");
    check_error("Mon 08:00", "\"08:00\" is not a range of hours");
    check_error("Mon 25:00-26:00", "\"25:00\" is not a time");
    check_error("Mon 08:60-09:00", "\"08:60\" is not a time");
    check_error("Mon 08:00-24:30", "\"24:30\" is not a time");
    check_error("Mon 8h-9h", "\"8h-9h\" is not a range of hours");
    check_error("Mon 8h00-9:00", "\"8h00\" is not a time");
    check_error("Mon 24:00-02:00", "starts at 24:00");
    check_error("Mon 08:00-08:00", "for a whole day write 00:00-24:00");
    let (index, _) = Schedule::parse(["Mon 08:00-20:00", "Tue 8"]).unwrap_err();
    assert_eq!(index, 1);
}

#[test]
fn opening_hours_close_and_open_across_the_week() {
    let s = schedule(&["Mon-Fri 08:00-20:00", "Sat 09:00-14:00"]);
    let zone = berlin();
    // 2026-12-04 is a Friday.
    assert!(s.open(at("2026-12-04T19:59:59"), &zone));
    assert!(!s.open(at("2026-12-04T20:00"), &zone));
    assert!(!s.open(at("2026-12-07T07:59:59"), &zone));
    assert!(s.open(at("2026-12-07T08:00"), &zone));
    assert_eq!(
        next(&s, "2026-12-04T19:00").as_deref(),
        Some("Fri 2026-12-04T20:00")
    );
    assert_eq!(
        next(&s, "2026-12-04T20:00").as_deref(),
        Some("Sat 2026-12-05T09:00")
    );
    assert_eq!(
        next(&s, "2026-12-05T10:00").as_deref(),
        Some("Sat 2026-12-05T14:00")
    );
    // Over the weekend to Monday morning.
    assert_eq!(
        next(&s, "2026-12-05T14:00").as_deref(),
        Some("Mon 2026-12-07T08:00")
    );
    assert_eq!(
        next(&s, "2026-12-06T23:59:59").as_deref(),
        Some("Mon 2026-12-07T08:00")
    );
}

#[test]
fn a_window_that_crosses_midnight_and_the_end_of_the_week() {
    let s = schedule(&["Fri 20:00-02:00", "Sun 22:00-01:00"]);
    let zone = berlin();
    assert!(s.open(at("2026-12-05T01:59"), &zone), "Saturday early");
    assert!(!s.open(at("2026-12-05T02:00"), &zone));
    assert_eq!(
        next(&s, "2026-12-04T21:00").as_deref(),
        Some("Sat 2026-12-05T02:00")
    );
    // Sunday night into Monday: the week's end is no edge.
    assert!(s.open(at("2026-12-07T00:30"), &zone), "Monday 00:30");
    assert_eq!(
        next(&s, "2026-12-06T12:00").as_deref(),
        Some("Sun 2026-12-06T22:00")
    );
    assert_eq!(
        next(&s, "2026-12-06T23:00").as_deref(),
        Some("Mon 2026-12-07T01:00")
    );
    assert_eq!(
        next(&s, "2026-12-07T01:00").as_deref(),
        Some("Fri 2026-12-11T20:00")
    );
}

#[test]
fn windows_that_touch_at_midnight_are_one_and_a_full_week_never_changes() {
    let s = schedule(&["Mon 20:00-24:00", "Tue 00:00-06:00"]);
    assert_eq!(
        next(&s, "2026-12-07T21:00").as_deref(),
        Some("Tue 2026-12-08T06:00")
    );
    let always = schedule(&["00:00-24:00"]);
    assert_eq!(next(&always, "2026-12-07T21:00"), None);
    assert!(always.open(at("2026-12-07T21:00"), &berlin()));
    let empty = Schedule::default();
    assert!(empty.open(at("2026-12-07T03:00"), &berlin()));
    assert_eq!(next(&empty, "2026-12-07T21:00"), None);
}

#[test]
fn daylight_saving_days_shift_the_edges_in_utc_but_not_in_local_time() {
    let s = schedule(&["08:00-20:00"]);
    let zone = berlin();
    // Spring forward on Sunday 2026-03-29: 08:00 local is 06:00Z that day,
    // 07:00Z the day before.
    assert_eq!(
        s.next_change(at("2026-03-28T21:00"), &zone),
        Some(utc("2026-03-29T06:00Z"))
    );
    assert_eq!(
        s.next_change(at("2026-03-27T21:00"), &zone),
        Some(utc("2026-03-28T07:00Z"))
    );
    // Back on Sunday 2026-10-25: 20:00 local is 19:00Z.
    assert_eq!(
        s.next_change(at("2026-10-25T12:00"), &zone),
        Some(utc("2026-10-25T19:00Z"))
    );
}

#[test]
fn an_edge_in_the_skipped_hour_takes_effect_at_the_jump() {
    // 02:30 does not exist on 2026-03-29 in Berlin: at 01:00Z the clock
    // jumps from 02:00 to 03:00, past the edge.
    let s = schedule(&["Sun 02:30-10:00"]);
    let zone = berlin();
    assert_eq!(
        s.next_change(at("2026-03-28T23:00"), &zone),
        Some(utc("2026-03-29T01:00Z"))
    );
    assert!(s.open(utc("2026-03-29T01:00Z"), &zone));
    assert!(!s.open(utc("2026-03-29T00:59:59Z"), &zone));
}

#[test]
fn an_edge_in_the_repeated_hour_is_taken_each_time_the_clock_shows_it() {
    // 02:00 to 03:00 happens twice on 2026-10-25 (00:00Z–01:00Z in summer
    // time, 01:00Z–02:00Z in winter time): wall time closes the screen at
    // 02:30 each time, and the jump back to 02:00 opens it again.
    let s = schedule(&["Sun 00:00-02:30"]);
    let zone = berlin();
    let change = |from: &str| s.next_change(utc(from), &zone);
    assert_eq!(change("2026-10-25T00:10Z"), Some(utc("2026-10-25T00:30Z")));
    assert_eq!(change("2026-10-25T00:40Z"), Some(utc("2026-10-25T01:00Z")));
    assert_eq!(change("2026-10-25T01:10Z"), Some(utc("2026-10-25T01:30Z")));
    assert_eq!(change("2026-10-25T01:30Z"), Some(utc("2026-10-31T23:00Z")));
}

#[test]
fn a_clock_stepped_90_days_either_way_gets_the_schedule_of_its_new_day() {
    // The schedule keeps no state: a step is a fresh question, and a Pi
    // that booted three months early and was stepped by NTP gets the
    // right answer at once.
    let s = schedule(&["Mon-Fri 08:00-20:00"]);
    let zone = berlin();
    let monday_noon = at("2026-12-07T12:00");
    let day = jiff::SignedDuration::from_hours(24);
    assert_eq!(
        next(&s, "2026-12-07T12:00").as_deref(),
        Some("Mon 2026-12-07T20:00")
    );
    // +90 days: Sunday 2027-03-07, closed until Monday.
    let ahead = monday_noon.checked_add(day * 90).unwrap();
    assert!(!s.open(ahead, &zone));
    assert_eq!(s.next_change(ahead, &zone), Some(at("2027-03-08T08:00")));
    // −90 days: Tuesday 2026-09-08, in summer time, open until 20:00 CEST.
    let behind = monday_noon.checked_sub(day * 90).unwrap();
    assert!(s.open(behind, &zone));
    assert_eq!(s.next_change(behind, &zone), Some(utc("2026-09-08T18:00Z")));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Any text is an entry or an error that shows how to write one; never
    /// a panic.
    #[test]
    fn any_text_parses_or_says_how_to_write_it(text in "[ -~]{0,40}") {
        match parse_entry(&text) {
            Ok(entry) => proptest::prop_assert_eq!(parse_entry(&entry.to_string()), Ok(entry)),
            Err(e) => proptest::prop_assert!(e.to_string().contains(EXAMPLE)),
        }
    }

    /// Every well-formed entry prints in a form that reads back the same,
    /// and its window is open at its start and closed at its end.
    #[test]
    fn well_formed_entries_round_trip_and_open_at_their_start(
        days in 1u8..128,
        start in 0u16..1440,
        length in 1u16..1440,
    ) {
        let entry = Entry { days, start, end: (start + length - 1) % 1440 + 1 };
        let text = entry.to_string();
        proptest::prop_assert_eq!(parse_entry(&text), Ok(entry), "{}", text);
        let first = (0..7u32).find(|d| days & (1 << d) != 0).unwrap_or(0);
        let m = first * u32::from(DAY) + u32::from(start);
        proptest::prop_assert!(entry.contains(m), "{} at minute {}", text, m);
    }
}
