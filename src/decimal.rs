//! Decimal strings, handled without floating point.
//!
//! Prices travel from the feed to the client and the screen as the feed's own
//! text (docs/protocol.md §1, docs/board.md §2). This module checks that a
//! string is a plain decimal, compares two of them, and computes the change in
//! percent against an open, all in integer arithmetic on an `i128` mantissa and
//! a power-of-ten scale.
//!
//! It must never round through `f64`, never panic on any input (overflow is
//! `None`, not a wrap or a panic), and never do I/O.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

/// The longest decimal string accepted, in bytes. Real prices and volumes are
/// far shorter; the cap keeps hostile input from costing anything.
pub const MAX_LEN: usize = 40;

/// The most digits accepted, integer and fraction together. 38 digits always
/// fit an `i128` mantissa (`i128::MAX` ≈ 1.7 × 10³⁸), so every string that
/// [`is_decimal`] accepts also parses as a [`Decimal`].
const MAX_DIGITS: usize = 38;

/// Whether `s` is a plain decimal: an optional `-`, one or more ASCII digits,
/// and optionally a `.` followed by one or more digits; at most [`MAX_LEN`]
/// bytes and 38 digits.
///
/// Rejected: the empty string, `1.`, `.5`, `+1`, `1e5`, spaces, and anything
/// else. Leading zeros (`007`) and a negative zero (`-0.0`) are accepted.
pub fn is_decimal(s: &str) -> bool {
    split(s).is_some()
}

/// `(price − open) / open × 100`, rounded half away from zero to exactly two
/// decimals: `"1.53"`, `"-0.40"`, `"0.00"`.
///
/// `None` when either string is not a decimal, `open` is zero, or the
/// arithmetic would overflow an `i128`.
pub fn change_pct(price: &str, open: &str) -> Option<String> {
    let change = Decimal::parse(price)?.change_pct(Decimal::parse(open)?)?;
    Some(change.to_string())
}

/// Numeric comparison of two decimal strings (`"1.50"` equals `"1.5"`, `"-0"`
/// equals `"0"`); `None` when either is not a decimal.
///
/// Exact for every accepted string: digits are compared as text, so no
/// rescaling can overflow.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (split(a)?, split(b)?);
    let (a_neg, b_neg) = (a.negative && !a.is_zero(), b.negative && !b.is_zero());
    Some(match (a_neg, b_neg) {
        (false, false) => a.cmp_magnitude(&b),
        (true, true) => a.cmp_magnitude(&b).reverse(),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    })
}

/// The decimal text of a JSON value, byte for byte: a string that is a
/// decimal, or a number whose exact text (serde_json's `arbitrary_precision`
/// keeps it) is one. `None` for anything else, including `1e5`, `"abc"`,
/// `""`, `true`, `null`, arrays and objects.
pub fn from_json(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if is_decimal(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()).filter(|s| is_decimal(s)),
        _ => None,
    }
}

/// A decimal number: `mantissa × 10^-scale`, so `12.50` is `1250` at scale 2.
///
/// Only what Tablo needs: parsing, printing, adding, subtracting,
/// multiplying, ordering, and the change in percent. [`Display`](fmt::Display) prints exactly `scale` decimals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    /// The digits as an integer, with the sign.
    pub mantissa: i128,
    /// How many of the digits are decimals.
    pub scale: u32,
}

impl Decimal {
    /// `mantissa × 10^-scale`.
    pub const fn new(mantissa: i128, scale: u32) -> Decimal {
        Decimal { mantissa, scale }
    }

    /// Parses a string that [`is_decimal`] accepts, keeping its scale
    /// (`"1.50"` has scale 2). A negative zero parses as zero.
    pub fn parse(s: &str) -> Option<Decimal> {
        let parts = split(s)?;
        let mut mantissa: i128 = 0;
        for digit in parts.int.bytes().chain(parts.frac.bytes()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(i128::from(digit - b'0'))?;
        }
        let scale = u32::try_from(parts.frac.len()).ok()?;
        Some(Decimal::new(
            if parts.negative { -mantissa } else { mantissa },
            scale,
        ))
    }

    /// The sum, at the larger of the two scales; `None` on overflow.
    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let scale = self.scale.max(other.scale);
        let sum = self.rescaled(scale)?.checked_add(other.rescaled(scale)?)?;
        Some(Decimal::new(sum, scale))
    }

    /// The difference `self − other`, at the larger of the two scales;
    /// `None` on overflow.
    pub fn checked_sub(self, other: Decimal) -> Option<Decimal> {
        let scale = self.scale.max(other.scale);
        let diff = self.rescaled(scale)?.checked_sub(other.rescaled(scale)?)?;
        Some(Decimal::new(diff, scale))
    }

    /// The exact product, at the sum of the two scales; `None` on overflow.
    pub fn checked_mul(self, other: Decimal) -> Option<Decimal> {
        Some(Decimal::new(
            self.mantissa.checked_mul(other.mantissa)?,
            self.scale.checked_add(other.scale)?,
        ))
    }

    /// `self` percent of `base` (`base × self / 100`), exactly: the scale
    /// grows by two instead of rounding. `None` on overflow.
    pub fn percent_of(self, base: Decimal) -> Option<Decimal> {
        let product = self.checked_mul(base)?;
        Some(Decimal::new(
            product.mantissa,
            product.scale.checked_add(2)?,
        ))
    }

    /// The absolute value; `None` only for the one mantissa that has none
    /// (`i128::MIN`).
    pub fn checked_abs(self) -> Option<Decimal> {
        Some(Decimal::new(self.mantissa.checked_abs()?, self.scale))
    }

    /// Numeric order of two decimals (`1.50` equals `1.5`); `None` when
    /// bringing them to one scale would overflow.
    pub fn try_cmp(self, other: Decimal) -> Option<Ordering> {
        let scale = self.scale.max(other.scale);
        Some(self.rescaled(scale)?.cmp(&other.rescaled(scale)?))
    }

    /// Whether this is more than zero.
    pub fn is_positive(self) -> bool {
        self.mantissa > 0
    }

    /// `(self − open) / open × 100` at scale 2, rounded half away from zero;
    /// `None` when `open` is zero or on overflow.
    pub fn change_pct(self, open: Decimal) -> Option<Decimal> {
        let scale = self.scale.max(open.scale);
        let price = self.rescaled(scale)?;
        let open = open.rescaled(scale)?;
        // Percent (× 100) at two decimals (× 100 again).
        let numerator = price.checked_sub(open)?.checked_mul(10_000)?;
        Some(Decimal::new(div_round(numerator, open)?, 2))
    }

    /// The mantissa at a scale at least as large as this one.
    fn rescaled(self, scale: u32) -> Option<i128> {
        if scale == self.scale {
            return Some(self.mantissa);
        }
        let factor = 10_i128.checked_pow(scale.checked_sub(self.scale)?)?;
        self.mantissa.checked_mul(factor)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.unsigned_abs().to_string();
        if self.mantissa < 0 {
            f.write_str("-")?;
        }
        let scale = usize::try_from(self.scale).unwrap_or(usize::MAX);
        if scale == 0 {
            f.write_str(&digits)
        } else if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            write!(f, "{int}.{frac}")
        } else {
            write!(f, "0.{digits:0>scale$}")
        }
    }
}

/// `n / d` rounded half away from zero; `None` when `d` is zero or the
/// quotient does not fit.
fn div_round(n: i128, d: i128) -> Option<i128> {
    if d == 0 {
        return None;
    }
    let negative = (n < 0) != (d < 0);
    let (n, d) = (n.unsigned_abs(), d.unsigned_abs());
    let (mut quotient, remainder) = (n / d, n % d);
    // `remainder * 2 >= d`, written so that it cannot overflow.
    if remainder >= d - remainder {
        quotient += 1;
    }
    let quotient = i128::try_from(quotient).ok()?;
    Some(if negative { -quotient } else { quotient })
}

/// A decimal string taken apart, borrowing from it.
struct Parts<'a> {
    negative: bool,
    /// Integer digits, at least one.
    int: &'a str,
    /// Fraction digits, possibly none.
    frac: &'a str,
}

impl Parts<'_> {
    fn is_zero(&self) -> bool {
        self.int.bytes().chain(self.frac.bytes()).all(|b| b == b'0')
    }

    /// Compares absolute values.
    fn cmp_magnitude(&self, other: &Parts<'_>) -> Ordering {
        let (a_int, b_int) = (
            self.int.trim_start_matches('0'),
            other.int.trim_start_matches('0'),
        );
        let (a_frac, b_frac) = (
            self.frac.trim_end_matches('0'),
            other.frac.trim_end_matches('0'),
        );
        // Without leading zeros, a longer integer part is a larger number; at
        // equal length, and for fractions without trailing zeros, digit text
        // orders like the numbers.
        a_int
            .len()
            .cmp(&b_int.len())
            .then_with(|| a_int.cmp(b_int))
            .then_with(|| a_frac.cmp(b_frac))
    }
}

/// Takes a decimal string apart; `None` if it is not one.
fn split(s: &str) -> Option<Parts<'_>> {
    if s.len() > MAX_LEN {
        return None;
    }
    let (negative, rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    let (int, frac) = match rest.split_once('.') {
        Some((int, frac)) if digits(frac) => (int, frac),
        Some(_) => return None,
        None => (rest, ""),
    };
    if !digits(int) || int.len() + frac.len() > MAX_DIGITS {
        return None;
    }
    Some(Parts {
        negative,
        int,
        frac,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_is_decimal(input: &str, expected: bool) {
        assert_eq!(is_decimal(input), expected, "is_decimal({input:?})");
        // Everything accepted parses, and nothing rejected does.
        assert_eq!(
            Decimal::parse(input).is_some(),
            expected,
            "parse({input:?})"
        );
    }

    #[test]
    fn is_decimal_accepts_plain_decimals_only() {
        for ok in [
            "0",
            "7",
            "-7",
            "1.5",
            "67012.50000000",
            "0.00000001",
            "-0.40",
            "-0",
            "007",
            "12345678901234567890.123456789012345678",
            "-1234567890123456789.0123456789012345678",
        ] {
            check_is_decimal(ok, true);
        }
        for bad in [
            "",
            "-",
            ".",
            "1.",
            ".5",
            "-.5",
            "+1",
            "1e5",
            "1E5",
            "1.5e-3",
            " 1",
            "1 ",
            "1 000",
            "1,5",
            "1.2.3",
            "--1",
            "0x10",
            "NaN",
            "inf",
            "١٢",
            "abc",
            // 39 digits: would not fit an i128.
            "123456789012345678901234567890123456789",
            // 41 bytes.
            "0.000000000000000000000000000000000000001",
        ] {
            check_is_decimal(bad, false);
        }
    }

    #[track_caller]
    fn check_change_pct(price: &str, open: &str, expected: Option<&str>) {
        assert_eq!(
            change_pct(price, open).as_deref(),
            expected,
            "change_pct({price:?}, {open:?})"
        );
    }

    #[test]
    fn change_pct_rounds_half_away_from_zero_to_two_decimals() {
        check_change_pct("67012.50", "66000.00", Some("1.53"));
        check_change_pct("67012.50000000", "66000", Some("1.53"));
        check_change_pct("99.6", "100", Some("-0.40"));
        check_change_pct("100", "100.000", Some("0.00"));
        check_change_pct("0", "5", Some("-100.00"));
        check_change_pct("300", "100", Some("200.00"));
        // Exactly half a hundredth goes away from zero, both ways.
        check_change_pct("100.005", "100", Some("0.01"));
        check_change_pct("99.995", "100", Some("-0.01"));
        check_change_pct("100.00499", "100", Some("0.00"));
        check_change_pct("99.99501", "100", Some("0.00"));
        check_change_pct("2", "3", Some("-33.33"));
        check_change_pct("1", "3", Some("-66.67"));
        check_change_pct("0.00000003", "0.00000002", Some("50.00"));
        // The formula as written, even for a negative open.
        check_change_pct("-50", "-100", Some("-50.00"));
    }

    #[test]
    fn change_pct_is_none_for_bad_input_zero_open_and_overflow() {
        check_change_pct("1", "0", None);
        check_change_pct("1", "-0.000", None);
        check_change_pct("abc", "1", None);
        check_change_pct("1", "", None);
        check_change_pct("1e3", "1", None);
        check_change_pct(
            "99999999999999999999999999999999999999",
            "0.0000000000000000000000000000000000001",
            None,
        );
        check_change_pct("99999999999999999999999999999999999", "1", None);
    }

    #[track_caller]
    fn check_compare(a: &str, b: &str, expected: Option<Ordering>) {
        assert_eq!(compare(a, b), expected, "compare({a:?}, {b:?})");
        assert_eq!(
            compare(b, a),
            expected.map(Ordering::reverse),
            "compare({b:?}, {a:?})"
        );
    }

    #[test]
    fn compare_is_numeric() {
        use Ordering::{Equal, Greater, Less};
        check_compare("1.50", "1.5", Some(Equal));
        check_compare("007", "7.000", Some(Equal));
        check_compare("-0", "0.00", Some(Equal));
        check_compare("10", "9.99", Some(Greater));
        check_compare("0.001", "0.0009", Some(Greater));
        check_compare("0.05", "0.5", Some(Less));
        check_compare("-2", "-10", Some(Greater));
        check_compare("-0.01", "0", Some(Less));
        check_compare("-1", "1", Some(Less));
        check_compare(
            "99999999999999999999999999999999999999",
            "0.0000000000000000000000000000000000001",
            Some(Greater),
        );
        check_compare("abc", "1", None);
        check_compare("1", "", None);
    }

    #[track_caller]
    fn check_display(decimal: Decimal, expected: &str) {
        assert_eq!(decimal.to_string(), expected);
    }

    #[test]
    fn display_prints_exactly_scale_decimals() {
        check_display(Decimal::new(1250, 2), "12.50");
        check_display(Decimal::new(-5, 2), "-0.05");
        check_display(Decimal::new(0, 2), "0.00");
        check_display(Decimal::new(42, 0), "42");
        check_display(Decimal::new(-42, 0), "-42");
        check_display(Decimal::new(1, 8), "0.00000001");
        check_display(Decimal::new(i128::MIN, 0), &i128::MIN.to_string());
    }

    #[test]
    fn parse_then_display_round_trips() {
        for s in ["67012.50000000", "0.00000001", "-0.40", "42", "0.0"] {
            assert_eq!(Decimal::parse(s).map(|d| d.to_string()).as_deref(), Some(s));
        }
        // A negative zero has no sign once parsed.
        assert_eq!(Decimal::parse("-0.00"), Some(Decimal::new(0, 2)));
    }

    #[test]
    fn checked_add_aligns_scales() {
        let sum = |a: &str, b: Decimal| {
            Decimal::parse(a)
                .and_then(|a| a.checked_add(b))
                .map(|d| d.to_string())
        };
        assert_eq!(sum("1.05", Decimal::new(3, 4)).as_deref(), Some("1.0503"));
        assert_eq!(
            sum("1.0500", Decimal::new(-106, 2)).as_deref(),
            Some("-0.0100")
        );
        assert_eq!(sum("1", Decimal::new(1, 200)), None);
        assert_eq!(
            Decimal::new(i128::MAX, 0).checked_add(Decimal::new(1, 0)),
            None
        );
    }

    #[test]
    fn sub_mul_percent_and_order_are_exact() {
        let d = |s: &str| Decimal::parse(s).unwrap();
        let show = |x: Option<Decimal>| x.map(|x| x.to_string());
        assert_eq!(
            show(d("60000").checked_sub(d("0.5"))).as_deref(),
            Some("59999.5")
        );
        assert_eq!(
            show(d("1.5").checked_mul(d("-0.25"))).as_deref(),
            Some("-0.375")
        );
        // 0.5 % of 60000 is 300, at a scale that rounds nothing away.
        assert_eq!(
            show(d("0.5").percent_of(d("60000"))).as_deref(),
            Some("300.000")
        );
        assert_eq!(show(d("-2.5").checked_abs()).as_deref(), Some("2.5"));
        assert_eq!(Decimal::new(i128::MIN, 0).checked_abs(), None);
        assert_eq!(d("1.50").try_cmp(d("1.5")), Some(Ordering::Equal));
        assert_eq!(d("0.001").try_cmp(d("0.0009")), Some(Ordering::Greater));
        assert_eq!(d("-2").try_cmp(d("-10")), Some(Ordering::Greater));
        assert_eq!(Decimal::new(1, 0).try_cmp(Decimal::new(1, 200)), None);
        assert_eq!(Decimal::new(i128::MAX, 0).checked_mul(d("2")), None);
        assert!(d("0.01").is_positive() && !d("-0.0").is_positive());
    }

    #[test]
    fn from_json_keeps_exact_text_of_decimal_strings_and_numbers() {
        let value = |text: &str| serde_json::from_str::<Value>(text).ok();
        let check = |text: &str, expected: Option<&str>| {
            let got = value(text).and_then(|v| from_json(&v));
            assert_eq!(got.as_deref(), expected, "{text}");
        };
        check(r#""67012.50000000""#, Some("67012.50000000"));
        check("67012.50000000", Some("67012.50000000"));
        check(
            "0.100000000000000000000000001",
            Some("0.100000000000000000000000001"),
        );
        check("-3", Some("-3"));
        check("1e5", None);
        check("1.5E-3", None);
        check(r#""1e5""#, None);
        check(r#""""#, None);
        check(r#"" 1""#, None);
        check("true", None);
        check("null", None);
        check("[1]", None);
        check(r#"{"p":"1"}"#, None);
    }
}
