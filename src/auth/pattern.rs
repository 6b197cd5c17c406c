//! Channel patterns: what a JWT's `channels` and `publish` claims list
//! (docs/protocol.md §3.1).
//!
//! A pattern is a channel name (`news`, `prices.BTCUSDT`) or a prefix
//! followed by `*` (`prices.*`, `prices.BTC*`, `*`). A pattern grants a
//! channel when every event that channel carries is one it matches: `*`
//! grants everything, `prices.*` grants every `prices.<SYMBOL>` and so also
//! `prices` (which is all of them), `prices` grants `prices` and every
//! `prices.<SYMBOL>`. Nothing else grants `*`. Pure; no I/O.

use std::fmt;

/// A pattern is at most this many bytes: `prices.`, a symbol of the longest
/// kind (64 bytes) and a `*`.
pub const MAX_PATTERN_LEN: usize = 72;

/// A claim lists at most this many patterns: a board's symbols fit, and
/// matching a channel stays a short walk.
pub const MAX_PATTERNS: usize = 64;

/// The family channel whose sub-channels are `prices.<SYMBOL>`.
const PRICES: &str = "prices";

/// One entry of a `channels` or `publish` claim.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern(Box<str>);

impl Pattern {
    /// Parses a pattern: 1 to [`MAX_PATTERN_LEN`] bytes, no whitespace or
    /// control characters, and `*` only as the last character.
    pub fn parse(text: &str) -> Option<Pattern> {
        let body = text.strip_suffix('*').unwrap_or(text);
        let fine = !text.is_empty()
            && text.len() <= MAX_PATTERN_LEN
            && !body.contains('*')
            && !text.chars().any(|c| c.is_whitespace() || c.is_control());
        fine.then(|| Pattern(text.into()))
    }

    /// Parses a claim's list; the error names the first bad entry.
    pub fn parse_list<'a>(
        items: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Pattern>, String> {
        let mut out = Vec::new();
        for item in items {
            if out.len() == MAX_PATTERNS {
                return Err(format!("more than {MAX_PATTERNS} patterns"));
            }
            let pattern = Pattern::parse(item).ok_or_else(|| {
                let shown: String = item.chars().take(40).collect();
                format!(
                    "{shown:?} is not a channel pattern (a channel name, or a prefix and *, such as prices.*)"
                )
            })?;
            out.push(pattern);
        }
        Ok(out)
    }

    /// Whether this pattern grants `channel` (a channel name as a client
    /// writes it).
    pub fn grants(&self, channel: &str) -> bool {
        match self.0.strip_suffix('*') {
            // `prices.*` grants `prices`: the family is exactly its symbols.
            Some(prefix) => {
                (channel.starts_with(prefix) && (channel != "*" || prefix.is_empty()))
                    || (channel == PRICES && prefix == "prices.")
            }
            None => {
                *self.0 == *channel
                    || (*self.0 == *PRICES
                        && channel
                            .strip_prefix(PRICES)
                            .is_some_and(|rest| rest.starts_with('.')))
            }
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Whether any of `patterns` grants `channel`.
pub fn any_grants(patterns: &[Pattern], channel: &str) -> bool {
    patterns.iter().any(|p| p.grants(channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(pattern: &str, granted: &[&str], refused: &[&str]) {
        let p = Pattern::parse(pattern).expect("a valid pattern");
        for c in granted {
            assert!(p.grants(c), "{pattern} should grant {c}");
        }
        for c in refused {
            assert!(!p.grants(c), "{pattern} should not grant {c}");
        }
    }

    #[test]
    fn patterns_grant_what_they_cover() {
        check(
            "prices.*",
            &["prices", "prices.BTCUSDT", "prices.دلار"],
            &["*", "news", "alerts", "pricesX"],
        );
        check(
            "prices.BTC*",
            &["prices.BTCUSDT", "prices.BTC-USD"],
            &["prices", "prices.ETHUSDT", "*"],
        );
        check(
            "prices",
            &["prices", "prices.BTCUSDT"],
            &["*", "news", "pricesX"],
        );
        check("news", &["news"], &["*", "news.x", "alerts", "prices"]);
        check("*", &["*", "news", "prices", "prices.X", "status"], &[]);
        check(
            "prices.ETHUSDT",
            &["prices.ETHUSDT"],
            &["prices", "prices.ETH"],
        );
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "a b", "pri*ces", "**", "x\u{7}", &"p".repeat(73)] {
            assert!(Pattern::parse(bad).is_none(), "{bad:?}");
        }
        let many: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("prices.S{i}")).collect();
        assert!(Pattern::parse_list(many.iter().map(String::as_str)).is_err());
        assert!(
            Pattern::parse_list(["news", "pri ces"])
                .unwrap_err()
                .contains("pri ces")
        );
    }
}
