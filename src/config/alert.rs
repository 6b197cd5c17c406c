//! `[[alert]]` tables: the rules the daemon evaluates itself (docs/config.md
//! §15), as written and resolved.
//!
//! A rule is checked here as far as the file can tell: its kind and the
//! keys that kind takes, each decimal (`price`, `hysteresis`, `percent`), each
//! duration (`window`, `after`, `cooldown`, `expires`), the placeholders of
//! its `text`, and a unique name. A symbol that no `[[board.rows]]` shows, or
//! a feed that is not configured, is a warning (a note), not an error: the
//! rule is kept, it just has nothing to watch yet. Nothing here evaluates a
//! rule; that is the `rules` room's job.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Source};
use super::keyword::Keyword;
use super::raw::{At, Dur, Kw};
use super::units::format_duration;
use super::{BoardConfig, FeedConfig};
use crate::decimal::is_decimal;

/// At most this many `[[alert]]` tables: each is evaluated on every tick, so
/// the count bounds the hub's work per event; a board has a handful.
pub const MAX_RULES: usize = 64;

/// Longest rule name, in bytes: it is sent in every alert the rule fires
/// and keys the rule's saved state.
pub const MAX_NAME: usize = 64;

/// Longest `text`, in bytes: a line on the board holds far less, and the
/// alert is sent to every client.
pub const MAX_TEXT: usize = 300;

/// Longest accepted `window`: a move over more than a day is the daily
/// change the feed's `change_pct` already shows, and the window's points are
/// kept in memory.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Longest accepted `after`, `cooldown` and `expires`: a week, like the
/// journal's default retention.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Default `cooldown`: after a rule fires for a symbol it stays quiet for a
/// minute, so a price that jitters across a line (or keeps moving) gives one
/// alert, not one per tick.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(60);

/// The placeholders a `text` may hold, in the order messages list them.
pub const PLACEHOLDERS: [&str; 6] = ["symbol", "label", "price", "old_price", "percent", "window"];

/// The symbol that stands for every symbol (`move`, `drop` and `stale`).
pub const ANY_SYMBOL: &str = "*";

/// One `[[alert]]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRule {
    /// Unique name: the `rule` field of each alert it fires, and the key of
    /// its saved state. Default: made from the kind, target and threshold.
    pub name: String,
    /// What it watches for, with that kind's settings.
    pub kind: AlertKind,
    /// The symbol watched, or [`ANY_SYMBOL`]; `None` for a stale rule on a
    /// feed.
    pub symbol: Option<String>,
    /// The feed watched by a stale rule (`feed = "gold"`).
    pub feed: Option<String>,
    /// How loud the alerts are; default critical (shown on the board's band).
    pub level: AlertLevel,
    /// The alert's text, with placeholders; default per kind.
    pub text: String,
    /// A stale rule's text when the symbol or feed is back; default per kind.
    pub back_text: Option<String>,
    /// After firing for a symbol, the rule is quiet this long for it.
    pub cooldown: Duration,
    /// The alert leaves the snapshot (and the board) this long after it
    /// fired; default the snapshot's own alert lifetime (1 h).
    pub expires: Option<Duration>,
}

/// `kind` with the settings that kind takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertKind {
    /// The price went above `price`.
    Above {
        /// The line, a decimal string.
        price: String,
        /// How far back past the line the price must go to re-arm.
        hysteresis: Option<Hysteresis>,
    },
    /// The price went below `price`.
    Below {
        /// The line, a decimal string.
        price: String,
        /// How far back past the line the price must go to re-arm.
        hysteresis: Option<Hysteresis>,
    },
    /// The price moved `percent` or more within `window`.
    Move {
        /// A decimal string, more than zero, without the `%`.
        percent: String,
        /// How far back to look.
        window: Duration,
        /// Which way counts.
        direction: MoveDirection,
    },
    /// The price fell `percent` or more from the previous price, or from the
    /// window's high when `window` is set.
    Drop {
        /// A decimal string, more than zero, without the `%`.
        percent: String,
        /// Compare with the high of this window instead of the previous price.
        window: Option<Duration>,
    },
    /// No update from the symbol or feed for `after`.
    Stale {
        /// How long a silence counts as stale.
        after: Duration,
    },
}

impl AlertKind {
    /// The `kind` word.
    pub fn name(&self) -> &'static str {
        match self {
            AlertKind::Above { .. } => "above",
            AlertKind::Below { .. } => "below",
            AlertKind::Move { .. } => "move",
            AlertKind::Drop { .. } => "drop",
            AlertKind::Stale { .. } => "stale",
        }
    }
}

/// `hysteresis`: an amount in the price's unit, or a percent of the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hysteresis {
    /// `hysteresis = "250"`.
    Amount(String),
    /// `hysteresis = "0.5%"` (the decimal without the `%`).
    Percent(String),
}

/// `direction` of a move rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveDirection {
    /// Only rises.
    Up,
    /// Only falls.
    Down,
    /// Either way (the default).
    Both,
}

/// `level` of a rule's alerts (the wire's `info`, `warning`, `critical`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertLevel {
    /// For information.
    Info,
    /// Something to watch.
    Warning,
    /// Shown as a band across the board.
    Critical,
}

/// The words of `kind` (parameters are checked apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KindWord {
    Above,
    Below,
    Move,
    Drop,
    Stale,
}

impl Keyword for KindWord {
    const ALL: &'static [(&'static str, Self)] = &[
        ("above", KindWord::Above),
        ("below", KindWord::Below),
        ("move", KindWord::Move),
        ("drop", KindWord::Drop),
        ("stale", KindWord::Stale),
    ];
}

impl Keyword for MoveDirection {
    const ALL: &'static [(&'static str, Self)] = &[
        ("up", MoveDirection::Up),
        ("down", MoveDirection::Down),
        ("both", MoveDirection::Both),
    ];
}

impl Keyword for AlertLevel {
    const ALL: &'static [(&'static str, Self)] = &[
        ("info", AlertLevel::Info),
        ("warning", AlertLevel::Warning),
        ("critical", AlertLevel::Critical),
    ];
}

impl AlertLevel {
    /// The wire word.
    pub fn name(self) -> &'static str {
        self.keyword()
    }
}

impl MoveDirection {
    /// The config word.
    pub fn name(self) -> &'static str {
        self.keyword()
    }
}

/// One `[[alert]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAlert {
    name: At<String>,
    kind: At<Kw<KindWord>>,
    symbol: At<String>,
    feed: At<String>,
    price: At<toml::Value>,
    hysteresis: At<toml::Value>,
    percent: At<toml::Value>,
    window: At<Dur>,
    direction: At<Kw<MoveDirection>>,
    after: At<Dur>,
    level: Option<Kw<AlertLevel>>,
    text: At<String>,
    back_text: At<String>,
    cooldown: At<Dur>,
    expires: At<Dur>,
}

/// The `[[alert]]` tables, checked, in file order. `board` and `feeds` are
/// the resolved sections, for the warnings pushed onto `notes`.
pub(super) fn resolve_alerts(
    raw: Vec<Spanned<RawAlert>>,
    src: &Source<'_>,
    board: &BoardConfig,
    feeds: &[FeedConfig],
    notes: &mut Vec<String>,
) -> Result<Vec<AlertRule>, ConfigError> {
    if let Some(extra) = raw.get(MAX_RULES) {
        return Err(src.at(
            extra.span(),
            format!("[[alert]]: at most {MAX_RULES} rules; merge or remove some"),
        ));
    }
    let mut rules: Vec<AlertRule> = Vec::new();
    let mut names: Vec<(String, bool)> = Vec::new();
    for table in raw {
        let span = table.span();
        let raw = table.into_inner();
        let explicit = raw.name.is_some();
        let rule = resolve_one(raw, span.clone(), src)?;
        let mut name = rule.0;
        if explicit {
            if names.iter().any(|(n, _)| *n == name) {
                return Err(src.at(
                    span,
                    format!("[[alert]] name: {name:?} is already the name of another rule; rule names must be unique"),
                ));
            }
        } else {
            let base = name.clone();
            let mut n = 2;
            while names.iter().any(|(taken, _)| *taken == name) {
                name = format!("{base} ({n})");
                n += 1;
            }
        }
        names.push((name.clone(), explicit));
        let rule = AlertRule { name, ..rule.1 };
        warn_about_targets(&rule, board, feeds, notes);
        rules.push(rule);
    }
    Ok(rules)
}

/// Warns about a symbol the board does not show and a feed that is not
/// configured.
fn warn_about_targets(
    rule: &AlertRule,
    board: &BoardConfig,
    feeds: &[FeedConfig],
    notes: &mut Vec<String>,
) {
    if let Some(symbol) = &rule.symbol
        && symbol != ANY_SYMBOL
        && !board.rows.is_empty()
        && !board.rows.iter().any(|r| r.symbol == *symbol)
    {
        notes.push(format!(
            "warning: [[alert]] {:?}: symbol {symbol:?} has no [[board.rows]] entry; the rule still watches it, but check the spelling",
            rule.name
        ));
    }
    if let Some(feed) = &rule.feed
        && !feeds.iter().any(|f| f.name == *feed)
    {
        let known: Vec<&str> = feeds.iter().map(|f| f.name.as_str()).collect();
        notes.push(format!(
            "warning: [[alert]] {:?}: no feed is named {feed:?} (the feeds are {}); the rule will fire once it has been silent for its `after`",
            rule.name,
            known.join(", ")
        ));
    }
}

/// Keys that only some kinds take: the key, and the kinds that take it.
const KIND_KEYS: [(&str, &[KindWord]); 8] = [
    ("price", &[KindWord::Above, KindWord::Below]),
    ("hysteresis", &[KindWord::Above, KindWord::Below]),
    ("percent", &[KindWord::Move, KindWord::Drop]),
    ("window", &[KindWord::Move, KindWord::Drop]),
    ("direction", &[KindWord::Move]),
    ("after", &[KindWord::Stale]),
    ("feed", &[KindWord::Stale]),
    ("back_text", &[KindWord::Stale]),
];

/// One table: its default name and the rule.
fn resolve_one(
    raw: RawAlert,
    span: Range<usize>,
    src: &Source<'_>,
) -> Result<(String, AlertRule), ConfigError> {
    let Some(kind) = &raw.kind else {
        return Err(src.at(
            span,
            format!(
                "[[alert]]: kind is missing; write kind = \"above\" (one of {})",
                KindWord::list()
            ),
        ));
    };
    let word = kind.get_ref().0;
    let kind_span = kind.span();
    let present: [(&str, Option<Range<usize>>); 8] = [
        ("price", raw.price.as_ref().map(Spanned::span)),
        ("hysteresis", raw.hysteresis.as_ref().map(Spanned::span)),
        ("percent", raw.percent.as_ref().map(Spanned::span)),
        ("window", raw.window.as_ref().map(Spanned::span)),
        ("direction", raw.direction.as_ref().map(Spanned::span)),
        ("after", raw.after.as_ref().map(Spanned::span)),
        ("feed", raw.feed.as_ref().map(Spanned::span)),
        ("back_text", raw.back_text.as_ref().map(Spanned::span)),
    ];
    for ((key, at), (_, kinds)) in present.iter().zip(KIND_KEYS) {
        if let Some(at) = at
            && !kinds.contains(&word)
        {
            let takers: Vec<&str> = kinds.iter().map(|k| k.keyword()).collect();
            return Err(src.at(
                at.clone(),
                format!(
                    "[[alert]] {key}: a {} rule has no {key} (only {} rules do)",
                    word.keyword(),
                    takers.join(" and ")
                ),
            ));
        }
    }
    let missing = |key: &str, example: &str| {
        src.at(
            kind_span.clone(),
            format!(
                "[[alert]]: a {} rule needs {key}; write {key} = {example}",
                word.keyword()
            ),
        )
    };

    // The target.
    let symbol = match raw.symbol {
        Some(symbol) => Some(check_symbol(src, symbol, word)?),
        None => None,
    };
    let feed = match raw.feed {
        Some(feed) => {
            let at = feed.span();
            let text = feed.into_inner();
            if text.trim().is_empty() || text.chars().any(char::is_control) {
                return Err(src.at(at, "[[alert]] feed: not a feed name"));
            }
            Some(text)
        }
        None => None,
    };
    match (word, &symbol, &feed) {
        (KindWord::Stale, Some(_), Some(_)) => {
            return Err(src.at(
                kind_span,
                "[[alert]]: a stale rule watches a symbol or a feed, not both; keep symbol or feed",
            ));
        }
        (KindWord::Stale, None, None) => {
            return Err(missing("symbol or feed", "\"USD\" (or feed = \"gold\")"));
        }
        (KindWord::Stale, _, _) => {}
        (_, None, _) => return Err(missing("symbol", "\"BTCUSDT\"")),
        _ => {}
    }

    let kind = match word {
        KindWord::Above | KindWord::Below => {
            let Some(price) = raw.price else {
                return Err(missing("price", "\"60000\""));
            };
            let price = decimal_value(src, &price, "price", false)?;
            let hysteresis = match &raw.hysteresis {
                Some(h) => Some(hysteresis_value(src, h)?),
                None => None,
            };
            if word == KindWord::Above {
                AlertKind::Above { price, hysteresis }
            } else {
                AlertKind::Below { price, hysteresis }
            }
        }
        KindWord::Move | KindWord::Drop => {
            let Some(percent) = raw.percent else {
                return Err(missing("percent", "\"2.5\""));
            };
            let percent = percent_value(src, &percent, "percent")?;
            let window = match raw.window {
                Some(w) => Some(bounded(src, &w, "window", Duration::ZERO, MAX_WINDOW)?),
                None => None,
            };
            if word == KindWord::Move {
                let Some(window) = window else {
                    return Err(missing("window", "\"5m\""));
                };
                AlertKind::Move {
                    percent,
                    window,
                    direction: raw
                        .direction
                        .map_or(MoveDirection::Both, |d| d.into_inner().0),
                }
            } else {
                AlertKind::Drop { percent, window }
            }
        }
        KindWord::Stale => {
            let Some(after) = raw.after else {
                return Err(missing("after", "\"2m\""));
            };
            AlertKind::Stale {
                after: bounded(src, &after, "after", Duration::ZERO, MAX_DURATION)?,
            }
        }
    };

    let text = match raw.text {
        Some(text) => check_text(src, text, "text")?,
        None => default_text(&kind, feed.is_some()).to_owned(),
    };
    let back_text = match raw.back_text {
        Some(text) => Some(check_text(src, text, "back_text")?),
        None if word == KindWord::Stale => Some(default_back_text(feed.is_some()).to_owned()),
        None => None,
    };
    let cooldown = match raw.cooldown {
        Some(c) => {
            let d = c.get_ref().0;
            if d > MAX_DURATION {
                return Err(src.at(
                    c.span(),
                    format!(
                        "[[alert]] cooldown: {} is too long; use at most {}",
                        format_duration(d),
                        format_duration(MAX_DURATION)
                    ),
                ));
            }
            d
        }
        None => DEFAULT_COOLDOWN,
    };
    let expires = match raw.expires {
        Some(e) => Some(bounded(src, &e, "expires", Duration::ZERO, MAX_DURATION)?),
        None => None,
    };
    let name = match raw.name {
        Some(name) => {
            let at = name.span();
            let text = name.into_inner();
            if text.trim().is_empty() || text.len() > MAX_NAME || text.chars().any(char::is_control)
            {
                return Err(src.at(
                    at,
                    format!("[[alert]] name: {text:?} is not a usable name; use 1 to {MAX_NAME} bytes without control characters, or leave name out"),
                ));
            }
            text
        }
        None => default_name(&kind, symbol.as_deref(), feed.as_deref()),
    };
    let rule = AlertRule {
        name: name.clone(),
        kind,
        symbol,
        feed,
        level: raw.level.map_or(AlertLevel::Critical, |l| l.0),
        text,
        back_text,
        cooldown,
        expires,
    };
    Ok((name, rule))
}

/// A rule's name when the file gives none: `above USD 60000`,
/// `move * 2% 5m`, `stale gold 2m`.
fn default_name(kind: &AlertKind, symbol: Option<&str>, feed: Option<&str>) -> String {
    let target = symbol.or(feed).unwrap_or("?");
    let what = match kind {
        AlertKind::Above { price, .. } | AlertKind::Below { price, .. } => price.clone(),
        AlertKind::Move {
            percent, window, ..
        } => format!("{percent}% {}", format_duration(*window)),
        AlertKind::Drop { percent, window } => match window {
            Some(w) => format!("{percent}% {}", format_duration(*w)),
            None => format!("{percent}%"),
        },
        AlertKind::Stale { after } => format_duration(*after),
    };
    let mut name = format!("{} {target} {what}", kind.name());
    if name.len() > MAX_NAME {
        let mut end = MAX_NAME;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// The text of a rule that gives none.
fn default_text(kind: &AlertKind, feed: bool) -> &'static str {
    match kind {
        AlertKind::Above { .. } => "{label} is above the line: {price}",
        AlertKind::Below { .. } => "{label} is below the line: {price}",
        AlertKind::Move { .. } => "{label} moved {percent}% in {window}: {old_price} to {price}",
        AlertKind::Drop { .. } => "{label} dropped {percent}%: {old_price} to {price}",
        AlertKind::Stale { .. } if feed => "{label}: no data for {window}",
        AlertKind::Stale { .. } => "{label}: no update for {window}",
    }
}

/// The back text of a stale rule that gives none.
fn default_back_text(feed: bool) -> &'static str {
    if feed {
        "{label}: data is flowing again"
    } else {
        "{label} is updating again"
    }
}

/// A symbol: no spaces or control characters; `*` only where it means
/// something.
fn check_symbol(
    src: &Source<'_>,
    symbol: Spanned<String>,
    word: KindWord,
) -> Result<String, ConfigError> {
    let at = symbol.span();
    let text = symbol.into_inner();
    if text == ANY_SYMBOL {
        if matches!(word, KindWord::Above | KindWord::Below) {
            return Err(src.at(
                at,
                format!(
                    "[[alert]] symbol: an {} rule has one price line, so it needs one symbol, not \"*\"",
                    word.keyword()
                ),
            ));
        }
        return Ok(text);
    }
    if text.is_empty()
        || text.len() > MAX_NAME
        || text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '*')
    {
        return Err(src.at(
            at,
            format!("[[alert]] symbol: {text:?} is not a symbol; write it as the feed spells it, such as \"BTCUSDT\", or \"*\" for every symbol"),
        ));
    }
    Ok(text)
}

/// A `text`: not empty, not too long, and only known placeholders.
fn check_text(src: &Source<'_>, text: Spanned<String>, key: &str) -> Result<String, ConfigError> {
    let at = text.span();
    let text = text.into_inner();
    if text.trim().is_empty() {
        return Err(src.at(at, format!("[[alert]] {key}: must not be empty")));
    }
    if text.len() > MAX_TEXT {
        return Err(src.at(
            at,
            format!(
                "[[alert]] {key}: {} bytes is too long; use at most {MAX_TEXT}",
                text.len()
            ),
        ));
    }
    let mut rest = text.as_str();
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            break;
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            let list: Vec<String> = PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect();
            return Err(src.at(
                at,
                format!(
                    "[[alert]] {key}: {{{name}}} is not a placeholder; use {}",
                    list.join(", ")
                ),
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(text)
}

/// The text of a decimal value: a string, or a TOML number read from the
/// file as written (never through `f64`). `signed` allows a minus.
fn decimal_text(src: &Source<'_>, value: &Spanned<toml::Value>) -> Option<String> {
    match value.get_ref() {
        toml::Value::String(s) => Some(s.trim().to_owned()),
        toml::Value::Integer(_) | toml::Value::Float(_) => src
            .text
            .get(value.span())
            .map(|s| s.trim().replace('_', "")),
        _ => None,
    }
}

/// A decimal setting such as `price`.
fn decimal_value(
    src: &Source<'_>,
    value: &Spanned<toml::Value>,
    key: &str,
    percent: bool,
) -> Result<String, ConfigError> {
    let bad = |shown: &str| {
        src.at(
            value.span(),
            format!(
                "[[alert]] {key}: {shown} is not a decimal; write digits with an optional point, such as \"{}\"",
                if percent { "2.5" } else { "60000" }
            ),
        )
    };
    let Some(text) = decimal_text(src, value) else {
        return Err(bad(&value.get_ref().to_string()));
    };
    let digits = if percent {
        text.strip_suffix('%').unwrap_or(&text).trim_end()
    } else {
        &text
    };
    if !is_decimal(digits) {
        return Err(bad(&format!("{text:?}")));
    }
    Ok(digits.to_owned())
}

/// A `percent`: a decimal above zero, with or without a `%`.
fn percent_value(
    src: &Source<'_>,
    value: &Spanned<toml::Value>,
    key: &str,
) -> Result<String, ConfigError> {
    let text = decimal_value(src, value, key, true)?;
    if text.starts_with('-') || text.bytes().all(|b| b == b'0' || b == b'.') {
        return Err(src.at(
            value.span(),
            format!("[[alert]] {key}: {text} must be more than zero"),
        ));
    }
    Ok(text)
}

/// `hysteresis`: `"250"` (an amount) or `"0.5%"` (of the line), not negative.
fn hysteresis_value(
    src: &Source<'_>,
    value: &Spanned<toml::Value>,
) -> Result<Hysteresis, ConfigError> {
    let is_percent = decimal_text(src, value).is_some_and(|t| t.ends_with('%'));
    let text = decimal_value(src, value, "hysteresis", is_percent)?;
    if text.starts_with('-') {
        return Err(src.at(
            value.span(),
            format!("[[alert]] hysteresis: {text} is negative; use an amount such as \"250\" or a percent such as \"0.5%\""),
        ));
    }
    Ok(if is_percent {
        Hysteresis::Percent(text)
    } else {
        Hysteresis::Amount(text)
    })
}

/// A duration longer than `min` and at most `max`.
fn bounded(
    src: &Source<'_>,
    value: &Spanned<Dur>,
    key: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let d = value.get_ref().0;
    if d <= min {
        return Err(src.at(
            value.span(),
            format!(
                "[[alert]] {key}: must be longer than {}",
                format_duration(min)
            ),
        ));
    }
    if d > max {
        return Err(src.at(
            value.span(),
            format!(
                "[[alert]] {key}: {} is too long; use at most {}",
                format_duration(d),
                format_duration(max)
            ),
        ));
    }
    Ok(d)
}

/// Writes the rules as `[[alert]]` tables, for `tablo check`; `key` and `q`
/// are the printer's.
pub(super) fn print_alerts(
    rules: &[AlertRule],
    out: &mut String,
    key: fn(&mut String, &str, String),
    q: fn(&str) -> String,
) {
    for rule in rules {
        out.push_str("\n[[alert]]\n");
        key(out, "name", q(&rule.name));
        key(out, "kind", q(rule.kind.name()));
        if let Some(symbol) = &rule.symbol {
            key(out, "symbol", q(symbol));
        }
        if let Some(feed) = &rule.feed {
            key(out, "feed", q(feed));
        }
        match &rule.kind {
            AlertKind::Above { price, hysteresis } | AlertKind::Below { price, hysteresis } => {
                key(out, "price", q(price));
                match hysteresis {
                    Some(Hysteresis::Amount(h)) => key(out, "hysteresis", q(h)),
                    Some(Hysteresis::Percent(h)) => key(out, "hysteresis", q(&format!("{h}%"))),
                    None => {}
                }
            }
            AlertKind::Move {
                percent,
                window,
                direction,
            } => {
                key(out, "percent", q(percent));
                key(out, "window", q(&format_duration(*window)));
                key(out, "direction", q(direction.name()));
            }
            AlertKind::Drop { percent, window } => {
                key(out, "percent", q(percent));
                if let Some(window) = window {
                    key(out, "window", q(&format_duration(*window)));
                }
            }
            AlertKind::Stale { after } => key(out, "after", q(&format_duration(*after))),
        }
        key(out, "level", q(rule.level.name()));
        key(out, "text", q(&rule.text));
        if let Some(back) = &rule.back_text {
            key(out, "back_text", q(back));
        }
        key(out, "cooldown", q(&format_duration(rule.cooldown)));
        match rule.expires {
            Some(e) => key(out, "expires", q(&format_duration(e))),
            None => out.push_str("# expires: after an hour, like every alert\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use crate::config::testing::{FULL, check_err, load, load_notes};

    #[test]
    fn every_kind_resolves_with_its_defaults() {
        let c = load(
            r#"
[[board.rows]]
symbol = "USD"
label = "دلار"

[[feed]]
name = "gold"
format = "demo"

[[alert]]
kind = "above"
symbol = "USD"
price = 60000
hysteresis = "0.5%"
text = "دلار از {price} گذشت"

[[alert]]
name = "usd-low"
kind = "below"
symbol = "USD"
price = "58000.50"
hysteresis = 250
level = "warning"

[[alert]]
kind = "move"
symbol = "*"
percent = 2.5
window = "5m"
direction = "down"
cooldown = "0s"

[[alert]]
kind = "drop"
symbol = "USD"
percent = "3%"
window = "10m"
expires = "15m"

[[alert]]
kind = "stale"
feed = "gold"
after = "2m"
"#,
        )
        .unwrap();
        let rules = &c.alerts;
        assert_eq!(rules.len(), 5);
        assert_eq!(rules[0].name, "above USD 60000");
        assert_eq!(
            rules[0].kind,
            AlertKind::Above {
                price: "60000".into(),
                hysteresis: Some(Hysteresis::Percent("0.5".into()))
            }
        );
        assert_eq!(rules[0].level, AlertLevel::Critical);
        assert_eq!(rules[0].cooldown, DEFAULT_COOLDOWN);
        assert_eq!(rules[0].text, "دلار از {price} گذشت");
        assert_eq!(rules[1].name, "usd-low");
        assert_eq!(
            rules[1].kind,
            AlertKind::Below {
                price: "58000.50".into(),
                hysteresis: Some(Hysteresis::Amount("250".into()))
            }
        );
        assert_eq!(
            rules[2].kind,
            AlertKind::Move {
                percent: "2.5".into(),
                window: Duration::from_secs(300),
                direction: MoveDirection::Down
            }
        );
        assert_eq!(rules[2].cooldown, Duration::ZERO);
        assert_eq!(rules[2].name, "move * 2.5% 5m");
        assert_eq!(
            rules[3].kind,
            AlertKind::Drop {
                percent: "3".into(),
                window: Some(Duration::from_secs(600))
            }
        );
        assert_eq!(rules[3].expires, Some(Duration::from_secs(900)));
        assert_eq!(rules[4].feed.as_deref(), Some("gold"));
        assert_eq!(rules[4].symbol, None);
        assert_eq!(
            rules[4].kind,
            AlertKind::Stale {
                after: Duration::from_secs(120)
            }
        );
        assert!(rules[4].back_text.is_some());
    }

    #[test]
    fn bad_rules_are_errors_at_their_line() {
        check_err(
            "[[alert]]\nkind = \"above\"\nsymbol = \"USD\"\nprice = \"60,000\"\n",
            4,
            "[[alert]] price: \"60,000\" is not a decimal",
        );
        check_err(
            "[[alert]]\nkind = \"above\"\nsymbol = \"USD\"\nprice = 1e5\n",
            4,
            "[[alert]] price: \"1e5\" is not a decimal",
        );
        check_err(
            "[[alert]]\nkind = \"move\"\nsymbol = \"USD\"\npercent = \"2\"\nwindow = \"5 m\"\n",
            5,
            "[[alert]] window: \"5 m\"",
        );
        check_err(
            "[[alert]]\nkind = \"move\"\nsymbol = \"USD\"\npercent = \"2\"\nwindow = \"0s\"\n",
            5,
            "[[alert]] window: must be longer than 0s",
        );
        check_err(
            "[[alert]]\nkind = \"move\"\nsymbol = \"USD\"\npercent = \"2\"\nwindow = \"2d\"\n",
            5,
            "[[alert]] window: 2d is too long; use at most 1d",
        );
        check_err(
            "[[alert]]\nkind = \"move\"\nsymbol = \"USD\"\npercent = \"2\"\n",
            2,
            "a move rule needs window",
        );
        check_err(
            "[[alert]]\nkind = \"drop\"\nsymbol = \"USD\"\npercent = \"0\"\n",
            4,
            "[[alert]] percent: 0 must be more than zero",
        );
        check_err(
            "[[alert]]\nkind = \"above\"\nsymbol = \"USD\"\nprice = \"1\"\nhysteresis = \"-1\"\n",
            5,
            "[[alert]] hysteresis: -1 is negative",
        );
        check_err(
            "[[alert]]\nkind = \"above\"\nsymbol = \"USD\"\nprice = \"1\"\nwindow = \"5m\"\n",
            5,
            "[[alert]] window: a above rule has no window (only move and drop rules do)",
        );
        check_err(
            "\n[[alert]]\nsymbol = \"USD\"\n",
            2,
            "[[alert]]: kind is missing",
        );
        check_err(
            "[[alert]]\nkind = \"rise\"\n",
            2,
            "\"rise\" is not one of above, below, move, drop, stale",
        );
        check_err(
            "[[alert]]\nkind = \"above\"\nsymbol = \"*\"\nprice = \"1\"\n",
            3,
            "needs one symbol, not \"*\"",
        );
        check_err(
            "[[alert]]\nkind = \"stale\"\nafter = \"1m\"\n",
            2,
            "a stale rule needs symbol or feed",
        );
        check_err(
            "[[alert]]\nkind = \"above\"\nsymbol = \"USD\"\nprice = \"1\"\ntext = \"{prise}\"\n",
            5,
            "[[alert]] text: {prise} is not a placeholder; use {symbol}, {label}",
        );
        check_err(
            "[[alert]]\nkind = \"above\"\nsymbol = \"USD\"\nprice = \"1\"\ncolour = \"red\"\n",
            5,
            "unknown key `colour`",
        );
        check_err(
            "[[alert]]\nname = \"a\"\nkind = \"stale\"\nsymbol = \"X\"\nafter = \"1m\"\n[[alert]]\nname = \"a\"\nkind = \"stale\"\nsymbol = \"Y\"\nafter = \"1m\"\n",
            6,
            "\"a\" is already the name of another rule",
        );
    }

    #[test]
    fn check_prints_the_rules_and_they_load_back() {
        let full = load(FULL).unwrap();
        assert_eq!(full.alerts.len(), 3);
        let text = full.to_toml();
        assert_eq!(text.matches("\n[[alert]]\n").count(), 3, "{text}");
        assert!(text.contains("hysteresis = \"0.5%\"\n"), "{text}");
        assert!(text.contains("name = \"office quiet\"\n"), "{text}");
        // The round trip itself is print.rs's test over FULL.
    }

    #[test]
    fn unknown_symbols_and_feeds_are_warnings() {
        let (c, notes) = load_notes(
            "[[board.rows]]\nsymbol = \"USD\"\n[[alert]]\nkind = \"above\"\nsymbol = \"EUR\"\nprice = \"1\"\n[[alert]]\nkind = \"stale\"\nfeed = \"gold\"\nafter = \"1m\"\n[[alert]]\nkind = \"above\"\nsymbol = \"EUR\"\nprice = \"1\"\n",
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.alerts.len(), 3);
        assert_eq!(c.alerts[2].name, "above EUR 1 (2)");
        let warnings: Vec<&String> = notes.iter().filter(|n| n.starts_with("warning:")).collect();
        assert_eq!(warnings.len(), 3, "{notes:?}");
        assert!(warnings[0].contains("\"EUR\" has no [[board.rows]] entry"));
        assert!(warnings[1].contains("no feed is named \"gold\""));
    }
}
