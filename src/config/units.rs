//! Durations and sizes as the config file writes them: `"30s"`, `"1h30m"`,
//! `"8MiB"`, `"10MB"`.
//!
//! Each `format_*` writes a value so that its `parse_*` reads it back
//! unchanged, which lets `tablo check` print settings that load again. These
//! are pure functions of their text: nothing here knows which key a value
//! belongs to (the caller names the key in its error) or checks a value
//! against a limit.

use std::time::Duration;

/// A kibibyte, `"1KiB"`.
pub(super) const KIB: u64 = 1024;
/// A mebibyte, `"1MiB"`.
pub(super) const MIB: u64 = 1024 * KIB;
/// A gibibyte, `"1GiB"`.
const GIB: u64 = 1024 * MIB;
/// A tebibyte, `"1TiB"`.
const TIB: u64 = 1024 * GIB;

/// Parses a duration such as `"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"7d"` or a
/// combination such as `"1h30m"`. Units: `ms`, `s`, `m`, `h`, `d`. The error
/// says what is wrong, for a config message.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const HINT: &str =
        "use a number and a unit (ms, s, m, h or d), e.g. \"30s\", \"5m\", \"1h30m\"";
    let s = text.trim();
    if s.is_empty() {
        return Err(format!("an empty duration: {HINT}"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{text:?} is not a duration: {HINT}"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?} is too long a duration"))?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u64 = match &rest[..letters] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60 * 1000,
            "h" => 60 * 60 * 1000,
            "d" => 24 * 60 * 60 * 1000,
            "" => {
                let spaced = rest.trim_start();
                let word: String = spaced
                    .chars()
                    .take_while(char::is_ascii_alphabetic)
                    .collect();
                return Err(if spaced.len() < rest.len() && !word.is_empty() {
                    format!(
                        "{text:?} has a space between {number} and its unit {word:?}: {}",
                        unit_fix(number, &word)
                    )
                } else {
                    format!(
                        "{text:?} has a number without a unit: {}",
                        unit_fix(number, "")
                    )
                });
            }
            unit => {
                return Err(format!(
                    "{text:?} has an unknown unit {unit:?}: {}",
                    unit_fix(number, unit)
                ));
            }
        };
        rest = &rest[letters..];
        let ms = number
            .checked_mul(unit_ms)
            .ok_or_else(|| format!("{text:?} is too long a duration"))?;
        total = total
            .checked_add(Duration::from_millis(ms))
            .ok_or_else(|| format!("{text:?} is too long a duration"))?;
    }
    Ok(total)
}

/// How to write `number` with a duration unit, for an error: the units,
/// and `number` with the one that `word` (such as `days`, `min`) means, or
/// with `s`.
fn unit_fix(number: u64, word: &str) -> String {
    let unit = match word.to_ascii_lowercase().as_str() {
        "d" | "day" | "days" => "d",
        "h" | "hr" | "hrs" | "hour" | "hours" => "h",
        "m" | "min" | "mins" | "minute" | "minutes" => "m",
        "ms" | "msec" | "millisecond" | "milliseconds" => "ms",
        _ => "s",
    };
    format!(
        "the units are ms, s, m, h and d, written right after the number, \
         as in \"{number}{unit}\" or \"1h30m\""
    )
}

/// Writes a duration the way [`parse_duration`] reads it, in the largest unit
/// that divides it exactly: 60 s is `"1m"`, 90 s is `"90s"`.
pub(super) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Parses a size such as `"256MiB"`, `"64KiB"`, `"1GiB"`, `"512B"`, `"10MB"`
/// (SI units are powers of 1000, IEC units powers of 1024) or a plain number
/// of bytes. Units are case-insensitive; a space before the unit is allowed.
pub(super) fn parse_size(text: &str) -> Result<u64, String> {
    const HINT: &str = "use a number of bytes or a number and a unit (B, KiB, MiB, GiB, TiB, kB, MB, GB, TB), e.g. \"8MiB\"";
    let s = text.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!("{text:?} is not a size: {HINT}"));
    }
    let number: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("{text:?} is too large a size"))?;
    let unit = s[digits..].trim_start();
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => KIB,
        "mib" => MIB,
        "gib" => GIB,
        "tib" => TIB,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "tb" => 1000 * 1000 * 1000 * 1000,
        _ => return Err(format!("{text:?} has an unknown unit {unit:?}: {HINT}")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large a size"))
}

/// Writes a size the way [`parse_size`] reads it: in the largest IEC unit
/// that divides it exactly (`"8MiB"`), else an exact SI unit (`"10MB"`), else
/// in bytes (`"1000001B"`).
pub(super) fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0B".to_owned();
    }
    let units = [
        ("TiB", TIB),
        ("GiB", GIB),
        ("MiB", MIB),
        ("KiB", KIB),
        ("TB", 1000 * 1000 * 1000 * 1000),
        ("GB", 1000 * 1000 * 1000),
        ("MB", 1000 * 1000),
        ("kB", 1000),
    ];
    for (unit, size) in units {
        if bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok =
            |s: &str, ms: u64| assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        ok("500ms", 500);
        ok("30s", 30_000);
        ok("5m", 300_000);
        ok("2h", 7_200_000);
        ok("7d", 604_800_000);
        ok("1h30m", 5_400_000);
        ok("1m30s250ms", 90_250);
        ok(" 0s ", 0);
        for bad in [
            "",
            "30",
            "s",
            "5 m",
            "1.5s",
            "-1s",
            "3w",
            "10sec",
            "1h30",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(
            parse_duration("18446744073709551615d")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn a_duration_without_a_unit_lists_the_units() {
        let units = "the units are ms, s, m, h and d, written right after the number";
        assert_eq!(
            parse_duration("7 days").unwrap_err(),
            format!(
                "\"7 days\" has a space between 7 and its unit \"days\": {units}, as in \"7d\" or \"1h30m\""
            )
        );
        assert_eq!(
            parse_duration("60").unwrap_err(),
            format!("\"60\" has a number without a unit: {units}, as in \"60s\" or \"1h30m\"")
        );
        assert_eq!(
            parse_duration("10min").unwrap_err(),
            format!("\"10min\" has an unknown unit \"min\": {units}, as in \"10m\" or \"1h30m\"")
        );
        assert_eq!(
            parse_duration("5 ").unwrap_err(),
            format!("\"5 \" has a number without a unit: {units}, as in \"5s\" or \"1h30m\"")
        );
    }

    #[test]
    fn sizes() {
        let ok = |s: &str, n: u64| assert_eq!(parse_size(s), Ok(n), "{s}");
        ok("512B", 512);
        ok("512", 512);
        ok("64KiB", 65_536);
        ok("8MiB", 8 << 20);
        ok("256MiB", 256 << 20);
        ok("1GiB", 1 << 30);
        ok("2TiB", 2 << 40);
        ok("10MB", 10_000_000);
        ok("3kB", 3000);
        ok("1GB", 1_000_000_000);
        ok("8 mib", 8 << 20);
        for bad in [
            "",
            "MiB",
            "1.5GiB",
            "-1",
            "12 parsecs",
            "5M",
            "99999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(
            parse_size("17179869184GiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn durations_and_sizes_format_back() {
        for (ms, text) in [
            (0, "0s"),
            (500, "500ms"),
            (1500, "1500ms"),
            (60_000, "1m"),
            (90_000, "90s"),
            (86_400_000, "1d"),
            (5_400_000, "90m"),
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
        for (n, text) in [
            (0, "0B"),
            (512, "512B"),
            (65_536, "64KiB"),
            (8 << 20, "8MiB"),
            (10_000_000, "10MB"),
            (1 << 30, "1GiB"),
            (1_000_001, "1000001B"),
        ] {
            assert_eq!(format_size(n), text);
            assert_eq!(parse_size(text), Ok(n));
        }
    }
}
