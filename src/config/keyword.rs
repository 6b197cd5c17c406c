//! The words of the enum-valued settings: `mode = "png"`,
//! `digits = "persian"`, `--feed binance=URL`.
//!
//! Each enum lists its words once, in its `Keyword::ALL`: reading the file,
//! `--feed`, the `FromStr` impls and the errors that list the accepted words
//! all go through that list. Nothing here knows which key a word is for: the
//! caller names the key in its error.

use std::fmt;
use std::str::FromStr;

use super::{Column, Digits, Direction, DisplayMode, FeedFormat, ScreenOff, WakeOn};

/// A setting whose value is one of a few words.
pub(super) trait Keyword: Copy + PartialEq + 'static {
    /// Each accepted word with its value, in the order error messages list
    /// them.
    const ALL: &'static [(&'static str, Self)];

    /// The word for this value.
    fn keyword(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("?", |(name, _)| name)
    }

    /// The value `word` stands for, if it is one of the words.
    fn from_keyword(word: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == word)
            .map(|(_, v)| *v)
    }

    /// `a, b, c` for error messages.
    fn list() -> String {
        Self::ALL
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Keyword for DisplayMode {
    const ALL: &'static [(&'static str, Self)] = &[
        ("auto", DisplayMode::Auto),
        ("window", DisplayMode::Window),
        ("fbdev", DisplayMode::Fbdev),
        ("png", DisplayMode::Png),
        ("none", DisplayMode::None),
    ];
}

impl Keyword for ScreenOff {
    const ALL: &'static [(&'static str, Self)] = &[
        ("blank", ScreenOff::Blank),
        ("dpms", ScreenOff::Dpms),
        ("cec", ScreenOff::Cec),
    ];
}

impl Keyword for WakeOn {
    const ALL: &'static [(&'static str, Self)] =
        &[("critical", WakeOn::Critical), ("none", WakeOn::None)];
}

impl ScreenOff {
    /// The config name: `blank`, `dpms`, `cec`.
    pub fn name(self) -> &'static str {
        self.keyword()
    }
}

impl WakeOn {
    /// The config name: `critical`, `none`.
    pub fn name(self) -> &'static str {
        self.keyword()
    }
}

impl Keyword for Column {
    const ALL: &'static [(&'static str, Self)] = &[
        ("price", Column::Price),
        ("change", Column::Change),
        ("sparkline", Column::Sparkline),
        ("bid", Column::Bid),
        ("ask", Column::Ask),
        ("volume", Column::Volume),
    ];
}

impl Keyword for Digits {
    const ALL: &'static [(&'static str, Self)] = &[
        ("latin", Digits::Latin),
        ("persian", Digits::Persian),
        ("arabic", Digits::Arabic),
    ];
}

impl Keyword for Direction {
    const ALL: &'static [(&'static str, Self)] = &[
        ("auto", Direction::Auto),
        ("ltr", Direction::Ltr),
        ("rtl", Direction::Rtl),
    ];
}

impl Keyword for FeedFormat {
    const ALL: &'static [(&'static str, Self)] = &[
        ("binance", FeedFormat::Binance),
        ("coinbase", FeedFormat::Coinbase),
        ("tablo", FeedFormat::Tablo),
        ("json", FeedFormat::Json),
        ("mqtt", FeedFormat::Mqtt),
        ("demo", FeedFormat::Demo),
    ];
}

impl DisplayMode {
    /// The config and CLI name.
    pub(super) fn name(self) -> &'static str {
        self.keyword()
    }
}

impl fmt::Display for DisplayMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DisplayMode {
    type Err = String;

    /// Parses `--display MODE`; the error lists the accepted modes.
    fn from_str(s: &str) -> Result<Self, String> {
        DisplayMode::from_keyword(s).ok_or_else(|| {
            format!(
                "unknown display mode {s:?}: use one of {}",
                DisplayMode::list()
            )
        })
    }
}

impl fmt::Display for FeedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FeedFormat {
    type Err = String;

    /// Parses a feed format name; the error lists the accepted formats.
    fn from_str(s: &str) -> Result<Self, String> {
        FeedFormat::from_keyword(s).ok_or_else(|| {
            format!(
                "unknown feed format {s:?}: use one of {}",
                FeedFormat::list()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_mode_and_feed_format_parse_from_the_command_line() {
        assert_eq!("fbdev".parse::<DisplayMode>(), Ok(DisplayMode::Fbdev));
        assert!(
            "tv".parse::<DisplayMode>()
                .unwrap_err()
                .contains("auto, window, fbdev, png, none")
        );
        assert_eq!("coinbase".parse::<FeedFormat>(), Ok(FeedFormat::Coinbase));
        assert_eq!(DisplayMode::Png.to_string(), "png");
    }
}
