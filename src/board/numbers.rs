//! Numbers as a locale writes them: digit glyphs and separators.
//!
//! [`Numbers`] turns a decimal string such as `"-67012.50"` into what the
//! board shows (`"-67,012.50"`, `"-67.012,50"`, `"-۶۷٬۰۱۲٫۵۰"`) by mapping
//! characters only: the string's digits and precision are kept exactly, and
//! nothing goes through floating point.
//!
//! Thousands grouping: the integer part of a plain decimal (an optional sign,
//! ASCII digits, optionally `.` and more digits) is grouped by threes with
//! the locale's separator, as exchange offices and gold shops write prices
//! (`۶۷٬۰۱۲`, `2.450,00`). Any other text (a clock, `"5m ago"`) only has
//! its digits mapped.
//!
//! Separators: with Persian or Arabic-Indic digits they are always `٬`
//! (U+066C) and `٫` (U+066B), whatever the locale; with Latin digits they
//! come from the locale's language: `.` and `,` for `tr`, `de`, `es`, `it`,
//! `pt`, `nl`, `id`, `da`; a no-break space and `,` for `fr`, `ru`, `uk`,
//! `pl`, `cs`, `sv`, `nb`, `fi`; otherwise (`en`, `fa` and `ar` with Latin
//! digits, …) `,` and `.`.
//!
//! This module never allocates: it writes into any [`fmt::Write`], such as
//! a [`Line`] on the stack.

use std::fmt::{self, Write};

use crate::config::{Digits, Direction};

/// How one locale writes numbers. Small and `Copy`; built once from the
/// `[board]` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Numbers {
    /// The glyph for 0; the other nine follow it in Unicode.
    zero: char,
    /// Between groups of three integer digits.
    group: char,
    /// Between the integer and the fraction.
    decimal: char,
    /// The percent sign that goes with the digits.
    percent: char,
}

impl Default for Numbers {
    fn default() -> Self {
        Numbers::new("en", Digits::Latin)
    }
}

impl Numbers {
    /// The numbers of `locale` (such as `"fa"`, `"tr-TR"`, `"en_US"`)
    /// written in `digits`.
    pub fn new(locale: &str, digits: Digits) -> Numbers {
        let (zero, percent) = match digits {
            Digits::Latin => ('0', '%'),
            Digits::Persian => ('\u{06F0}', '\u{066A}'),
            Digits::Arabic => ('\u{0660}', '\u{066A}'),
        };
        let (group, decimal) = if digits != Digits::Latin {
            ('\u{066C}', '\u{066B}')
        } else {
            match language(locale) {
                "tr" | "de" | "es" | "it" | "pt" | "nl" | "id" | "da" => ('.', ','),
                "fr" | "ru" | "uk" | "pl" | "cs" | "sv" | "nb" | "fi" => ('\u{00A0}', ','),
                _ => (',', '.'),
            }
        };
        Numbers {
            zero,
            group,
            decimal,
            percent,
        }
    }

    /// The percent sign to write after a number.
    pub fn percent(&self) -> char {
        self.percent
    }

    /// The glyph for 0; the other nine digits follow it in Unicode.
    pub fn zero(&self) -> char {
        self.zero
    }

    /// The separator between groups of three integer digits.
    pub fn group(&self) -> char {
        self.group
    }

    /// The separator between the integer and the fraction.
    pub fn decimal(&self) -> char {
        self.decimal
    }

    /// Writes `s` as this locale shows it: a plain decimal grouped by
    /// thousands with the locale's separators, anything else with only its
    /// digits mapped. See the module docs.
    pub fn write(&self, out: &mut impl fmt::Write, s: &str) -> fmt::Result {
        let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
        let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let plain = !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b.is_ascii_digit())
            && !unsigned.ends_with('.');
        if !plain {
            for c in s.chars() {
                out.write_char(self.digit(c))?;
            }
            return Ok(());
        }
        out.write_str(&s[..s.len() - unsigned.len()])?;
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                out.write_char(self.group)?;
            }
            out.write_char(self.digit(c))?;
        }
        if unsigned.len() > int.len() {
            out.write_char(self.decimal)?;
            for c in frac.chars() {
                out.write_char(self.digit(c))?;
            }
        }
        Ok(())
    }

    /// Writes a signed number, with a percent sign after it when `percent`,
    /// in the order the Unicode bidi algorithm shows it inside right-to-left
    /// text (as pango draws `+۰٫۱۲٪` in a Persian sentence): left to right,
    /// the percent sign, the number, then the sign. In Arabic-script text
    /// digits are Arabic numbers (rule W2), so the sign and the percent sign
    /// are neutrals that take the text's direction: read from the right,
    /// "plus, 0.12, percent".
    pub fn write_rtl(&self, out: &mut impl fmt::Write, s: &str, percent: bool) -> fmt::Result {
        let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
        if percent {
            out.write_char(self.percent)?;
        }
        self.write(out, unsigned)?;
        out.write_str(&s[..s.len() - unsigned.len()])
    }

    /// `c` in this locale's digits when it is an ASCII digit.
    fn digit(&self, c: char) -> char {
        match c.to_digit(10) {
            Some(d) if c.is_ascii_digit() => char::from_u32(self.zero as u32 + d).unwrap_or(c),
            _ => c,
        }
    }
}

/// Whether a board in `locale` with `direction` is laid out right to left:
/// `auto` means right to left for Persian, Arabic, Hebrew and Urdu.
pub fn is_rtl(locale: &str, direction: Direction) -> bool {
    match direction {
        Direction::Rtl => true,
        Direction::Ltr => false,
        Direction::Auto => matches!(language(locale), "fa" | "ar" | "he" | "ur"),
    }
}

/// The language part of a locale name, as written (it is not lowercased):
/// `"tr"` of `"tr-TR"`, `"TR"` of `"TR-tr"`. Locale names are ASCII (the
/// config checks them); anything longer than a language code is not one.
pub fn language(locale: &str) -> &str {
    let end = locale.find(['-', '_', '.']).unwrap_or(locale.len());
    &locale[..end]
}

/// Bytes in a [`Line`]: a 38-digit price with separators in Persian digits
/// (two bytes each in UTF-8) fits.
pub const LINE_BYTES: usize = 128;

/// A short line of text built without allocating: clock, counts, ages, a
/// localized price. Longer text is cut.
#[derive(Clone, Copy)]
pub struct Line {
    bytes: [u8; LINE_BYTES],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Line {
    /// An empty line.
    pub fn new() -> Line {
        Line {
            bytes: [0; LINE_BYTES],
            len: 0,
        }
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the line.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `s`, cut to fit.
    pub fn push_str(&mut self, s: &str) {
        let _ = self.write_str(s);
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut end = s.len().min(self.bytes.len() - self.len);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes[self.len..self.len + end].copy_from_slice(&s.as_bytes()[..end]);
        self.len += end;
        if end < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// `s` as `numbers` writes it, in a [`Line`].
pub fn localized(numbers: &Numbers, s: &str) -> Line {
    let mut line = Line::new();
    let _ = numbers.write(&mut line, s);
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(locale: &str, digits: Digits, input: &str, expected: &str) {
        let mut out = String::new();
        Numbers::new(locale, digits).write(&mut out, input).unwrap();
        assert_eq!(out, expected, "{locale} {digits:?} {input:?}");
    }

    #[test]
    fn digits_and_separators_over_the_three_digit_sets() {
        use Digits::{Arabic, Latin, Persian};
        check("en", Latin, "2450.00", "2,450.00");
        check("en", Latin, "67012.5", "67,012.5");
        check("en", Latin, "-1234567.0001", "-1,234,567.0001");
        check("en", Latin, "+12.30", "+12.30");
        check("en", Latin, "999", "999");
        check("en", Latin, "0.00000123", "0.00000123");
        check("tr", Latin, "2450.00", "2.450,00");
        check("tr-TR", Latin, "1234567", "1.234.567");
        check("fr", Latin, "2450.00", "2\u{a0}450,00");
        check("fa", Persian, "67012", "۶۷٬۰۱۲");
        check("fa", Persian, "2450.00", "۲٬۴۵۰٫۰۰");
        check("fa", Persian, "-0.5", "-۰٫۵");
        check("fa-IR", Persian, "1234567890", "۱٬۲۳۴٬۵۶۷٬۸۹۰");
        check("ar", Arabic, "2450.00", "٢٬٤٥٠٫٠٠");
        check("ar", Arabic, "+3.75", "+٣٫٧٥");
        check("ar", Latin, "2450.00", "2,450.00");
        // Persian digits keep Persian separators in any locale.
        check("en", Persian, "2450.5", "۲٬۴۵۰٫۵");
    }

    #[test]
    fn precision_is_kept_digit_for_digit() {
        // More digits than an f64 holds, and trailing zeros.
        check(
            "fa",
            Digits::Persian,
            "12345678901234567890.123456789000",
            "۱۲٬۳۴۵٬۶۷۸٬۹۰۱٬۲۳۴٬۵۶۷٬۸۹۰٫۱۲۳۴۵۶۷۸۹۰۰۰",
        );
        check("en", Digits::Latin, "0.10", "0.10");
    }

    #[test]
    fn other_text_only_has_its_digits_mapped() {
        check("fa", Digits::Persian, "22:13:20", "۲۲:۱۳:۲۰");
        check("ar", Digits::Arabic, "5m ago", "٥m ago");
        check("en", Digits::Latin, "12345 BTC", "12345 BTC");
        check("tr", Digits::Latin, "1.2.3", "1.2.3");
        check("fa", Digits::Persian, "—", "—");
        check("fa", Digits::Persian, "", "");
        check("en", Digits::Latin, "-", "-");
        check("en", Digits::Latin, "12.", "12.");
    }

    #[test]
    fn signed_numbers_in_right_to_left_order() {
        #[track_caller]
        fn check_rtl(digits: Digits, input: &str, percent: bool, expected: &str) {
            let mut out = String::new();
            Numbers::new("fa", digits)
                .write_rtl(&mut out, input, percent)
                .unwrap();
            assert_eq!(out, expected, "{input:?}");
        }
        check_rtl(Digits::Persian, "+0.12", true, "٪۰٫۱۲+");
        check_rtl(Digits::Persian, "-1250", false, "۱٬۲۵۰-");
        check_rtl(Digits::Arabic, "0.00", true, "٪٠٫٠٠");
        check_rtl(Digits::Latin, "-0.35", true, "%0.35-");
    }

    #[test]
    fn rtl_follows_the_locale_when_auto() {
        assert!(is_rtl("fa", Direction::Auto));
        assert!(is_rtl("ar-SA", Direction::Auto));
        assert!(!is_rtl("tr", Direction::Auto));
        assert!(!is_rtl("en", Direction::Auto));
        assert!(is_rtl("en", Direction::Rtl));
        assert!(!is_rtl("fa", Direction::Ltr));
        assert_eq!(language("fa_IR.UTF-8"), "fa");
    }
}
