//! Today's date for the header, in the board's calendar and language:
//! Gregorian, Solar Hijri (the Persian calendar, `persian`) or Hijri
//! (`hijri`, the Umm al-Qura calendar), as `[board] calendar` chooses
//! (docs/board.md §2, docs/config.md §8).
//!
//! The calendar arithmetic is ICU4X's `icu_calendar`, and the month names,
//! eras and the order of day, month and year are CLDR's, through
//! `icu_datetime`'s long year-month-day format: "16 آذر 1405", "27 جمادى
//! الآخرة 1448 هـ", "7 Aralık 2026", "December 7, 2026". This module only
//! picks the calendar, turns a local day number into an ICU date, and hands
//! the text on with ASCII digits, so that `board::numbers` writes them in
//! the board's digits like every other number.
//!
//! Hijri means Umm al-Qura: the calendar of Saudi Arabia, computed by
//! KACST and published in advance, which phones and printed calendars in
//! the Gulf show, and what ICU4X recommends over its unofficial
//! astronomical simulation. The tabular ("civil") calendar is arithmetic
//! and often a day or two off the dates people keep.
//!
//! No I/O and no clock: the local day comes in from the header's time.

use std::fmt::{self, Write};

use icu_calendar::cal::{Hijri, Persian, hijri::UmmAlQura};
use icu_calendar::{Date, Gregorian, Iso};
use icu_datetime::FixedCalendarDateTimeFormatter;
use icu_datetime::fieldsets::YMD;

use super::numbers::Line;
use super::plural::identifier;
use super::words::Language;
use crate::config::CalendarChoice;

/// Milliseconds in a day of the local clock.
const DAY_MS: i64 = 86_400_000;

/// The last day a date is drawn for: 9999-12-31, days since 1970-01-01.
/// A wall clock past it is broken, not the future, and the header then
/// shows no date rather than feed a huge number to the calendars.
pub const LAST_DAY: i64 = 2_932_896;

/// A calendar the header can show, `[board] calendar` with `auto`
/// resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Calendar {
    /// The Gregorian calendar.
    Gregorian,
    /// The Solar Hijri calendar of Iran and Afghanistan.
    Persian,
    /// The Hijri calendar, Umm al-Qura.
    Hijri,
}

impl Calendar {
    /// `choice` for a board in `language`: `auto` is the Solar Hijri
    /// calendar in Persian, the Hijri in Arabic, else the Gregorian.
    pub fn resolve(choice: CalendarChoice, language: Language) -> Calendar {
        match choice {
            CalendarChoice::Gregorian => Calendar::Gregorian,
            CalendarChoice::Persian => Calendar::Persian,
            CalendarChoice::Hijri => Calendar::Hijri,
            CalendarChoice::Auto => match language {
                Language::Persian => Calendar::Persian,
                Language::Arabic => Calendar::Hijri,
                Language::English | Language::Turkish => Calendar::Gregorian,
            },
        }
    }
}

/// The local day (days since 1970-01-01 on the local clock) at `wall_ms`
/// for a clock `offset_min` minutes east of UTC.
pub fn local_day(wall_ms: u64, offset_min: i32) -> i64 {
    let wall = i64::try_from(wall_ms).unwrap_or(i64::MAX);
    wall.saturating_add(i64::from(offset_min) * 60_000)
        .div_euclid(DAY_MS)
}

/// One board's date format: a calendar, a language, and ICU's formatter
/// for them, made once with the board's state.
#[derive(Clone, Debug)]
pub struct LocalDate {
    calendar: Calendar,
    language: Language,
    format: Option<Format>,
}

/// ICU's long year-month-day format for one calendar.
#[derive(Clone, Debug)]
enum Format {
    Gregorian(FixedCalendarDateTimeFormatter<Gregorian, YMD>),
    Persian(FixedCalendarDateTimeFormatter<Persian, YMD>),
    Hijri(FixedCalendarDateTimeFormatter<Hijri<UmmAlQura>, YMD>),
}

impl LocalDate {
    /// The date format of a board in `language` with `[board] calendar =
    /// choice`. Without ICU data for it (the tests rule that out for every
    /// shipped language) the header shows no date.
    pub fn new(choice: CalendarChoice, language: Language) -> LocalDate {
        let calendar = Calendar::resolve(choice, language);
        let prefs = identifier(language).into();
        let format = match calendar {
            Calendar::Gregorian => {
                FixedCalendarDateTimeFormatter::try_new(prefs, YMD::long()).map(Format::Gregorian)
            }
            Calendar::Persian => {
                FixedCalendarDateTimeFormatter::try_new(prefs, YMD::long()).map(Format::Persian)
            }
            Calendar::Hijri => {
                FixedCalendarDateTimeFormatter::try_new(prefs, YMD::long()).map(Format::Hijri)
            }
        }
        .ok();
        LocalDate {
            calendar,
            language,
            format,
        }
    }

    /// Writes local day `day` (see [`local_day`]) as the header shows it,
    /// with ASCII digits; writes nothing for a day before 1970 or after
    /// [`LAST_DAY`].
    pub fn write(&self, out: &mut impl fmt::Write, day: i64) -> fmt::Result {
        let (Some(format), Some(iso)) = (&self.format, iso_date(day)) else {
            return Ok(());
        };
        let mut out = AsciiDigits(out);
        match format {
            Format::Gregorian(f) => write!(out, "{}", f.format(&iso.to_calendar(Gregorian))),
            Format::Persian(f) => write!(out, "{}", f.format(&iso.to_calendar(Persian))),
            Format::Hijri(f) => write!(
                out,
                "{}",
                f.format(&iso.to_calendar(Hijri::new_umm_al_qura()))
            ),
        }
    }

    /// Local day `day` in this calendar as (year, month, day of month), the
    /// year of the current era (AP, AH, CE).
    pub fn ymd(&self, day: i64) -> Option<(i32, u8, u8)> {
        let iso = iso_date(day)?;
        Some(match self.calendar {
            Calendar::Gregorian => parts(&iso.to_calendar(Gregorian)),
            Calendar::Persian => parts(&iso.to_calendar(Persian)),
            Calendar::Hijri => parts(&iso.to_calendar(Hijri::new_umm_al_qura())),
        })
    }
}

/// The ISO date of local day `day`, if it is in range.
fn iso_date(day: i64) -> Option<Date<Iso>> {
    if !(0..=LAST_DAY).contains(&day) {
        return None;
    }
    let epoch = Date::try_new_iso(1970, 1, 1).ok()?.to_rata_die();
    Some(Date::from_rata_die(epoch + day, Iso))
}

fn parts<C: icu_calendar::AsCalendar>(date: &Date<C>) -> (i32, u8, u8) {
    (
        date.year().era_year_or_related_iso(),
        date.month().ordinal,
        date.day_of_month().0,
    )
}

/// Passes text on with Persian (۰–۹) and Arabic-Indic (٠–٩) digits turned
/// into ASCII ones, which `board::numbers` then writes in the board's own
/// digits (CLDR writes Persian dates in Persian digits).
struct AsciiDigits<'a, W>(&'a mut W);

impl<W: fmt::Write> fmt::Write for AsciiDigits<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            self.write_char(c)?;
        }
        Ok(())
    }

    fn write_char(&mut self, c: char) -> fmt::Result {
        let ascii = match c {
            '\u{06F0}'..='\u{06F9}' => char::from(b'0' + (c as u32 - 0x06F0) as u8),
            '\u{0660}'..='\u{0669}' => char::from(b'0' + (c as u32 - 0x0660) as u8),
            _ => c,
        };
        self.0.write_char(ascii)
    }
}

/// The header's date text, kept between frames: formatted again only when
/// the local day (or the board's format) changes, at most once a day in a
/// steady state, so a frame allocates and formats nothing for it.
#[derive(Default)]
pub struct DateCache {
    key: Option<(i64, Calendar, Language)>,
    text: Line,
}

impl fmt::Debug for DateCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DateCache")
            .field("key", &self.key)
            .field("text", &self.text.as_str())
            .finish()
    }
}

impl DateCache {
    /// The text of local day `day` in `date`'s format, with ASCII digits.
    pub fn get(&mut self, date: &LocalDate, day: i64) -> &str {
        let key = (day, date.calendar, date.language);
        if self.key != Some(key) {
            self.text.clear();
            let _ = date.write(&mut self.text, day);
            self.key = Some(key);
        }
        self.text.as_str()
    }
}

/// Days since 1970-01-01 of an ISO date, through the library, for tests.
#[cfg(test)]
pub(crate) fn day_of(year: i32, month: u8, day: u8) -> i64 {
    let epoch = Date::try_new_iso(1970, 1, 1).unwrap().to_rata_die();
    Date::try_new_iso(year, month, day).unwrap().to_rata_die() - epoch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(choice: CalendarChoice, language: Language, day: i64) -> String {
        let mut out = String::new();
        LocalDate::new(choice, language)
            .write(&mut out, day)
            .unwrap();
        out
    }

    #[test]
    fn nowruz_falls_on_the_known_days() {
        // 1 Farvardin, from the Iranian calendar (Institute of Geophysics,
        // University of Tehran): the equinox moves it between the 20th
        // and the 21st of March.
        let nowruz = [
            (1396, (2017, 3, 21)),
            (1397, (2018, 3, 21)),
            (1398, (2019, 3, 21)),
            (1399, (2020, 3, 20)),
            (1400, (2021, 3, 21)),
            (1401, (2022, 3, 21)),
            (1402, (2023, 3, 21)),
            (1403, (2024, 3, 20)),
            (1404, (2025, 3, 21)),
            (1405, (2026, 3, 21)),
        ];
        let persian = LocalDate::new(CalendarChoice::Persian, Language::Persian);
        for (year, (y, m, d)) in nowruz {
            let day = day_of(y, m, d);
            assert_eq!(persian.ymd(day), Some((year, 1, 1)), "{y}-{m}-{d}");
            // The day before is the last of Esfand.
            let (before, month, _) = persian.ymd(day - 1).unwrap();
            assert_eq!((before, month), (year - 1, 12), "{y}-{m}-{d}");
        }
        // Yalda, the last night of autumn: 30 Azar 1403 = 2024-12-20.
        assert_eq!(persian.ymd(day_of(2024, 12, 20)), Some((1403, 9, 30)));
    }

    #[test]
    fn hijri_dates_are_umm_al_qura() {
        // Umm al-Qura calendar (KACST) as published: Ramadan, Shawwal and
        // Muharram starts.
        let hijri = LocalDate::new(CalendarChoice::Hijri, Language::Arabic);
        let known = [
            ((2025, 3, 1), (1446, 9, 1)),
            ((2025, 3, 30), (1446, 10, 1)),
            ((2024, 3, 11), (1445, 9, 1)),
            ((2024, 7, 7), (1446, 1, 1)),
            ((2025, 6, 26), (1447, 1, 1)),
        ];
        for ((y, m, d), expected) in known {
            assert_eq!(hijri.ymd(day_of(y, m, d)), Some(expected), "{y}-{m}-{d}");
        }
    }

    #[test]
    fn auto_picks_the_calendar_of_the_language() {
        let auto = |language| Calendar::resolve(CalendarChoice::Auto, language);
        assert_eq!(auto(Language::Persian), Calendar::Persian);
        assert_eq!(auto(Language::Arabic), Calendar::Hijri);
        assert_eq!(auto(Language::Turkish), Calendar::Gregorian);
        assert_eq!(auto(Language::English), Calendar::Gregorian);
        assert_eq!(
            Calendar::resolve(CalendarChoice::Gregorian, Language::Arabic),
            Calendar::Gregorian
        );
    }

    #[test]
    fn dates_read_in_each_language_with_ascii_digits() {
        let day = day_of(2026, 12, 7);
        let check = |choice, language, expected: &str| {
            assert_eq!(
                text(choice, language, day),
                expected,
                "{choice:?} {language:?}"
            );
        };
        use CalendarChoice::*;
        check(Auto, Language::Persian, "16 آذر 1405");
        check(Auto, Language::Arabic, "27 جمادى الآخرة 1448 هـ");
        check(Auto, Language::Turkish, "7 Aralık 2026");
        check(Auto, Language::English, "December 7, 2026");
        check(Gregorian, Language::Arabic, "7 ديسمبر 2026");
        check(Gregorian, Language::Persian, "7 دسامبر 2026");
        check(Persian, Language::English, "Azar 16, 1405 AP");
        // Every calendar has its data in every language.
        for language in Language::ALL {
            for choice in [Gregorian, Persian, Hijri] {
                assert!(
                    !text(choice, language, day).is_empty(),
                    "{choice:?} {language:?}"
                );
            }
        }
    }

    #[test]
    fn the_local_day_turns_at_local_midnight() {
        let midnight_tehran = day_of(2025, 3, 21) * DAY_MS - 210 * 60_000;
        let at = |ms: i64| local_day(ms as u64, 210);
        assert_eq!(at(midnight_tehran - 1), day_of(2025, 3, 20));
        assert_eq!(at(midnight_tehran), day_of(2025, 3, 21));
        // West of UTC the local day is behind.
        assert_eq!(
            local_day(day_of(2025, 1, 1) as u64 * 86_400_000, -300),
            day_of(2024, 12, 31)
        );
        assert_eq!(local_day(0, -60), -1);
    }

    #[test]
    fn a_clock_out_of_range_shows_no_date() {
        let date = LocalDate::new(CalendarChoice::Auto, Language::English);
        assert_eq!(text(CalendarChoice::Auto, Language::English, -1), "");
        assert_eq!(
            text(CalendarChoice::Auto, Language::English, LAST_DAY + 1),
            ""
        );
        assert_eq!(date.ymd(LAST_DAY), Some((9999, 12, 31)));
        assert!(local_day(u64::MAX, 0) > LAST_DAY);
        for choice in [
            CalendarChoice::Gregorian,
            CalendarChoice::Persian,
            CalendarChoice::Hijri,
        ] {
            assert!(!text(choice, Language::Arabic, LAST_DAY).is_empty());
            assert!(!text(choice, Language::Persian, 0).is_empty());
        }
        assert_eq!(
            text(CalendarChoice::Persian, Language::Persian, 0),
            "11 دی 1348"
        );
    }

    #[test]
    fn the_cache_formats_once_a_day() {
        let date = LocalDate::new(CalendarChoice::Auto, Language::Persian);
        let mut cache = DateCache::default();
        let day = day_of(2025, 3, 20);
        assert_eq!(cache.get(&date, day), "30 اسفند 1403");
        let before = crate::board::testing::allocations::count();
        assert_eq!(cache.get(&date, day), "30 اسفند 1403");
        assert_eq!(crate::board::testing::allocations::count(), before);
        assert_eq!(cache.get(&date, day + 1), "1 فروردین 1404");
        let arabic = LocalDate::new(CalendarChoice::Auto, Language::Arabic);
        assert_eq!(cache.get(&arabic, day + 1), "21 رمضان 1446 هـ");
    }
}
