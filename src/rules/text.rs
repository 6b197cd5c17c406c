//! An alert's text: a rule's `text` with its placeholders filled in
//! (docs/config.md §15).
//!
//! `{price}`, `{old_price}` and `{percent}` are written as the board writes
//! numbers (the row's `decimals`, the locale's digits and separators, through
//! [`Numbers`]), so a Persian board gets `۶۰٬۰۰۰` inside a Persian
//! sentence; `{window}` has its digits mapped. `{symbol}` is the symbol (or
//! feed) as the feed spells it, `{label}` the row's label, else the symbol.
//! A placeholder without a value (no `{old_price}` before a second price)
//! is left empty. Pure: no I/O, no clock.

use crate::board::numbers::Numbers;
use crate::board::state::fit_decimals;

/// The values a text may use, each already as plain text (prices as the
/// feed's decimal strings); [`fill`] localizes the numbers.
#[derive(Debug, Default)]
pub(super) struct Values<'a> {
    /// `{symbol}`: the symbol or the feed's name.
    pub(super) symbol: &'a str,
    /// `{label}`: what the board calls it.
    pub(super) label: &'a str,
    /// `{price}`: the price that fired the rule.
    pub(super) price: Option<&'a str>,
    /// `{old_price}`: the price compared with.
    pub(super) old_price: Option<&'a str>,
    /// `{percent}`: the move, two decimals, no sign.
    pub(super) percent: Option<&'a str>,
    /// `{window}`: the window (or a stale rule's `after`), as the config
    /// writes it.
    pub(super) window: &'a str,
}

/// How a board writes the numbers in a text: its locale and a row's
/// decimals.
#[derive(Clone, Copy, Debug)]
pub(super) struct Style {
    /// The board's digits and separators.
    pub(super) numbers: Numbers,
    /// The row's `decimals`, for prices.
    pub(super) decimals: Option<u8>,
}

/// `template` with every known placeholder replaced; anything else (a brace
/// that is not a placeholder) is kept as written. The config has checked
/// that every `{name}` is a known one.
pub(super) fn fill(template: &str, values: &Values<'_>, style: Style) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        match name {
            "symbol" => out.push_str(values.symbol),
            "label" => out.push_str(values.label),
            "price" => price(&mut out, values.price, style),
            "old_price" => price(&mut out, values.old_price, style),
            "percent" => {
                if let Some(p) = values.percent {
                    let _ = style.numbers.write(&mut out, p);
                }
            }
            "window" => {
                let _ = style.numbers.write(&mut out, values.window);
            }
            _ => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// A price as the board's row shows it.
fn price(out: &mut String, value: Option<&str>, style: Style) {
    if let Some(value) = value {
        let cut = fit_decimals(value, style.decimals);
        let _ = style.numbers.write(out, &cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Digits;

    #[track_caller]
    fn check(template: &str, locale: &str, digits: Digits, decimals: Option<u8>, expected: &str) {
        let values = Values {
            symbol: "USD",
            label: "دلار",
            price: Some("60250.5"),
            old_price: Some("58000"),
            percent: Some("3.88"),
            window: "5m",
        };
        let style = Style {
            numbers: Numbers::new(locale, digits),
            decimals,
        };
        assert_eq!(fill(template, &values, style), expected);
    }

    #[test]
    fn placeholders_take_the_boards_digits_and_the_rows_decimals() {
        check(
            "{symbol} {price} {old_price} {percent}% {window}",
            "en",
            Digits::Latin,
            None,
            "USD 60,250.5 58,000 3.88% 5m",
        );
        check(
            "{label} از {price} گذشت ({percent}٪)",
            "fa",
            Digits::Persian,
            Some(0),
            "دلار از ۶۰٬۲۵۰ گذشت (۳٫۸۸٪)",
        );
        check("{price}", "tr", Digits::Latin, Some(2), "60.250,50");
        check("{x} {price", "en", Digits::Latin, None, "{x} {price");
        let empty = Values::default();
        let style = Style {
            numbers: Numbers::default(),
            decimals: None,
        };
        assert_eq!(fill("was {old_price}.", &empty, style), "was .");
    }
}
