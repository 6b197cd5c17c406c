//! The events Tablo relays: ticks, news, alerts and feed status.
//!
//! An [`Event`] is what clients receive and what the journal stores: a
//! sequence number, a timestamp and a [`Body`]. Its JSON form is the wire
//! format of docs/protocol.md §6, written by hand here so that field order is
//! stable and optional fields are left out rather than sent as `null`.
//!
//! Prices are decimal strings from the feed to the client; nothing in this
//! module parses them into numbers. This module does no I/O.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

pub use crate::clock::ClockState;

/// One relayed event: what a feed or a publisher said, numbered by the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Position in the journal, strictly increasing, never reused.
    pub seq: u64,
    /// When Tablo received it (or the upstream Tablo did), ms since the epoch.
    pub ts: u64,
    /// What happened.
    pub body: Body,
}

/// An event before the hub has given it a sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// Milliseconds since the epoch: receive time, or the upstream's for a chain.
    pub ts: u64,
    /// What happened.
    pub body: Body,
}

/// The four kinds of event, one per channel family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// A price update on channel `prices`.
    Tick(Tick),
    /// A headline on channel `news`.
    News(News),
    /// An operator alert on channel `alerts`.
    Alert(Alert),
    /// A feed's connection state on channel `status`.
    Status(Status),
    /// The wall clock's state on channel `status` (a `status` event with a
    /// `clock` field instead of `feed` and `state`).
    Clock(ClockState),
}

/// A price update. Every price field is a decimal string exactly as the feed
/// sent it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Tick {
    /// Instrument name as the feed spells it, e.g. `BTCUSDT` or `BTC-USD`.
    pub symbol: String,
    /// Last price.
    pub price: String,
    /// Opening price of the feed's period (24 h for exchanges).
    pub open: Option<String>,
    /// Change against the open in percent, e.g. `"1.53"`.
    pub change_pct: Option<String>,
    /// Best bid (an exchange office's "buy").
    pub bid: Option<String>,
    /// Best ask (an exchange office's "sell").
    pub ask: Option<String>,
    /// Traded volume over the feed's period.
    pub volume: Option<String>,
    /// Name of the feed (or `publish`) it came from.
    pub source: String,
}

/// A news headline.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct News {
    /// The headline.
    pub title: String,
    /// Link to the story, when the source has one.
    pub url: Option<String>,
    /// Name of the feed (or `publish`) it came from.
    pub source: String,
}

/// An operator alert; `critical` ones are shown as a band on the board.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// How loud.
    pub level: Level,
    /// What to tell people.
    pub text: String,
    /// Name of the feed (or `publish`, or `rules`) it came from.
    pub source: String,
    /// What an `[[alert]]` rule adds to an alert it fired; `None` for
    /// every other alert. Boxed: most alerts have none.
    pub fired: Option<Box<Fired>>,
}

/// The fields of an alert an `[[alert]]` rule fired (docs/protocol.md §6):
/// which rule, why, and until when it is news. Prices are decimal strings
/// in the feed's own digits, whatever digits the text uses.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Fired {
    /// The rule's name.
    pub rule: String,
    /// The rule's kind (`above`, `below`, `move`, `drop`, `stale`), or
    /// `back` when a stale symbol or feed recovered.
    pub kind: String,
    /// The seq of the event that fired it: the tick, or for a stale rule
    /// the status event or last event seen, when there is one.
    pub trigger_seq: Option<u64>,
    /// The symbol it is about.
    pub symbol: Option<String>,
    /// The feed it is about (a stale rule on a feed).
    pub feed: Option<String>,
    /// The price compared with: the previous price, or the window's.
    pub old_price: Option<String>,
    /// The price that fired it.
    pub new_price: Option<String>,
    /// How far the price moved from `old_price`, in percent, two decimals,
    /// without a sign.
    pub percent: Option<String>,
    /// When it leaves the snapshot and the board, ms since the epoch.
    pub expires: Option<u64>,
}

/// How long an alert stamped `ts` stays in the snapshot and on the board:
/// until its own `expires` when a rule set one, else [`ALERT_TTL`].
pub fn alert_ttl(alert: &Alert, ts: u64) -> Duration {
    match alert.fired.as_ref().and_then(|f| f.expires) {
        Some(expires) => Duration::from_millis(expires.saturating_sub(ts)),
        None => ALERT_TTL,
    }
}

/// Severity of an [`Alert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// For information.
    Info,
    /// Something to watch.
    Warning,
    /// Shown as a band across the board.
    Critical,
}

/// A feed changed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The feed's configured name.
    pub feed: String,
    /// Its new state.
    pub state: FeedState,
}

/// Connection state of an upstream feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedState {
    /// Dialing or handshaking.
    Connecting,
    /// Connected and subscribed.
    Up,
    /// Disconnected; waiting to retry.
    Down,
}

/// The channel families of docs/protocol.md §5, one per [`Body`] variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// `prices` and `prices.<SYMBOL>`.
    Prices,
    /// `news`.
    News,
    /// `alerts`.
    Alerts,
    /// `status`.
    Status,
}

impl Channel {
    /// Every channel family, in a fixed order (used for per-channel counters).
    pub const ALL: [Channel; 4] = [
        Channel::Prices,
        Channel::News,
        Channel::Alerts,
        Channel::Status,
    ];

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Prices => "prices",
            Channel::News => "news",
            Channel::Alerts => "alerts",
            Channel::Status => "status",
        }
    }

    /// Index into [`Channel::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl Body {
    /// The channel family this body is sent on.
    pub fn channel(&self) -> Channel {
        match self {
            Body::Tick(_) => Channel::Prices,
            Body::News(_) => Channel::News,
            Body::Alert(_) => Channel::Alerts,
            Body::Status(_) | Body::Clock(_) => Channel::Status,
        }
    }

    /// The wire `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Body::Tick(_) => "tick",
            Body::News(_) => "news",
            Body::Alert(_) => "alert",
            Body::Status(_) | Body::Clock(_) => "status",
        }
    }

    /// Strips [`is_hidden`] characters from a news title or an alert text
    /// (docs/protocol.md §6), as [`strip_hidden`] does. False if nothing is
    /// left of the text: such an event has no text and is refused.
    pub fn strip_hidden(&mut self) -> bool {
        let text = match self {
            Body::News(news) => &mut news.title,
            Body::Alert(alert) => &mut alert.text,
            Body::Tick(_) | Body::Status(_) | Body::Clock(_) => return true,
        };
        strip_hidden(text);
        !text.is_empty()
    }
}

/// Whether `c` is a control or format character that symbols may not hold
/// and that news titles and alert texts are stripped of (docs/protocol.md
/// §6). They are invisible, and the bidi controls among them reorder the
/// text around them, so on a public board one symbol or headline could pass
/// for another (`USD\u{202E}RRI` shows as `USDIRR`).
///
/// - Control characters (Cc): U+0000–U+001F, U+007F–U+009F.
/// - Format characters (Cf): U+00AD soft hyphen; U+0600–U+0605, U+06DD,
///   U+070F and U+180E (Arabic, Syriac and Mongolian marks drawn apart from
///   the text); U+061C Arabic letter mark; U+200B zero width space; U+200E
///   and U+200F left-to-right and right-to-left marks; U+202A–U+202E bidi
///   embeddings and overrides; U+2060–U+2064 word joiner and invisible
///   operators; U+2066–U+2069 bidi isolates and U+206A–U+206F deprecated
///   format characters; U+FEFF byte order mark; U+FFF9–U+FFFB interlinear
///   annotation.
///
/// U+200C ZERO WIDTH NON-JOINER and U+200D ZERO WIDTH JOINER are Cf too, but
/// they are kept: Persian writes ZWNJ inside words (`می\u{200C}خواهم`), and
/// both joiners steer the shaping of Arabic-script text (and emoji); without
/// them the words would be misspelled. Listed by hand rather than taken from
/// a Unicode table crate: the list is short and changes rarely.
pub fn is_hidden(c: char) -> bool {
    matches!(c,
        '\u{0000}'..='\u{001F}'
        | '\u{007F}'..='\u{009F}'
        | '\u{00AD}'
        | '\u{0600}'..='\u{0605}'
        | '\u{061C}'
        | '\u{06DD}'
        | '\u{070F}'
        | '\u{180E}'
        | '\u{200B}'
        | '\u{200E}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}')
}

/// Removes the [`is_hidden`] characters from `text`, keeping the rest; a
/// line break, tab or other control that is whitespace becomes a space, so
/// the words on either side stay apart. Allocates only when there is
/// something to remove.
pub fn strip_hidden(text: &mut String) {
    if !text.chars().any(is_hidden) {
        return;
    }
    *text = text
        .chars()
        .filter_map(|c| match c {
            c if !is_hidden(c) => Some(c),
            c if c.is_whitespace() => Some(' '),
            _ => None,
        })
        .collect();
}

impl Level {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "info" => Some(Level::Info),
            "warning" => Some(Level::Warning),
            "critical" => Some(Level::Critical),
            _ => None,
        }
    }
}

impl FeedState {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            FeedState::Connecting => "connecting",
            FeedState::Up => "up",
            FeedState::Down => "down",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<FeedState> {
        match s {
            "connecting" => Some(FeedState::Connecting),
            "up" => Some(FeedState::Up),
            "down" => Some(FeedState::Down),
            _ => None,
        }
    }
}

impl fmt::Display for FeedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Event {
    /// The JSON text of this event as sent to clients.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and integers into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The fields an event may have on the wire, for reading events back.
#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "type")]
    kind: String,
    seq: u64,
    ts: u64,
    symbol: Option<String>,
    price: Option<String>,
    open: Option<String>,
    change_pct: Option<String>,
    bid: Option<String>,
    ask: Option<String>,
    volume: Option<String>,
    source: Option<String>,
    title: Option<String>,
    url: Option<String>,
    level: Option<String>,
    text: Option<String>,
    feed: Option<String>,
    state: Option<String>,
    rule: Option<String>,
    #[serde(rename = "kind")]
    rule_kind: Option<String>,
    trigger_seq: Option<u64>,
    old_price: Option<String>,
    new_price: Option<String>,
    percent: Option<String>,
    expires: Option<u64>,
    clock: Option<String>,
}

impl Event {
    /// Reads back an event this module wrote (from the journal or another
    /// Tablo). `None` if it is not one.
    pub fn from_json(text: &[u8]) -> Option<Event> {
        let w: Wire = serde_json::from_slice(text).ok()?;
        let source = w.source.unwrap_or_default();
        let body = match w.kind.as_str() {
            "tick" => Body::Tick(Tick {
                symbol: w.symbol?,
                price: w.price?,
                open: w.open,
                change_pct: w.change_pct,
                bid: w.bid,
                ask: w.ask,
                volume: w.volume,
                source,
            }),
            "news" => Body::News(News {
                title: w.title?,
                url: w.url,
                source,
            }),
            "alert" => Body::Alert(Alert {
                level: Level::parse(&w.level?)?,
                text: w.text?,
                source,
                fired: w.rule.map(|rule| {
                    Box::new(Fired {
                        rule,
                        kind: w.rule_kind.unwrap_or_default(),
                        trigger_seq: w.trigger_seq,
                        symbol: w.symbol,
                        feed: w.feed,
                        old_price: w.old_price,
                        new_price: w.new_price,
                        percent: w.percent,
                        expires: w.expires,
                    })
                }),
            }),
            "status" => match w.clock {
                Some(clock) => Body::Clock(ClockState::parse(&clock)?),
                None => Body::Status(Status {
                    feed: w.feed?,
                    state: FeedState::parse(&w.state?)?,
                }),
            },
            _ => return None,
        };
        Some(Event {
            seq: w.seq,
            ts: w.ts,
            body,
        })
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", self.body.type_name())?;
        map.serialize_entry("seq", &self.seq)?;
        map.serialize_entry("channel", self.body.channel().name())?;
        match &self.body {
            Body::Tick(t) => {
                map.serialize_entry("symbol", &t.symbol)?;
                map.serialize_entry("price", &t.price)?;
                let optional = [
                    ("open", &t.open),
                    ("change_pct", &t.change_pct),
                    ("bid", &t.bid),
                    ("ask", &t.ask),
                    ("volume", &t.volume),
                ];
                for (key, value) in optional {
                    if let Some(value) = value {
                        map.serialize_entry(key, value)?;
                    }
                }
                map.serialize_entry("ts", &self.ts)?;
                map.serialize_entry("source", &t.source)?;
            }
            Body::News(n) => {
                map.serialize_entry("title", &n.title)?;
                if let Some(url) = &n.url {
                    map.serialize_entry("url", url)?;
                }
                map.serialize_entry("ts", &self.ts)?;
                map.serialize_entry("source", &n.source)?;
            }
            Body::Alert(a) => {
                map.serialize_entry("level", a.level.name())?;
                map.serialize_entry("text", &a.text)?;
                if let Some(f) = &a.fired {
                    map.serialize_entry("rule", &f.rule)?;
                    map.serialize_entry("kind", &f.kind)?;
                    if let Some(seq) = f.trigger_seq {
                        map.serialize_entry("trigger_seq", &seq)?;
                    }
                    let optional = [
                        ("symbol", &f.symbol),
                        ("feed", &f.feed),
                        ("old_price", &f.old_price),
                        ("new_price", &f.new_price),
                        ("percent", &f.percent),
                    ];
                    for (key, value) in optional {
                        if let Some(value) = value {
                            map.serialize_entry(key, value)?;
                        }
                    }
                    if let Some(expires) = f.expires {
                        map.serialize_entry("expires", &expires)?;
                    }
                }
                map.serialize_entry("ts", &self.ts)?;
                map.serialize_entry("source", &a.source)?;
            }
            Body::Status(s) => {
                map.serialize_entry("feed", &s.feed)?;
                map.serialize_entry("state", s.state.name())?;
                map.serialize_entry("ts", &self.ts)?;
            }
            Body::Clock(state) => {
                map.serialize_entry("clock", state.name())?;
                map.serialize_entry("ts", &self.ts)?;
            }
        }
        map.end()
    }
}

/// An alert leaves the snapshot, and the board's alert band, after this
/// long unless the rule that fired it set its own `expires`
/// ([`alert_ttl`]): an hour-old alert is history, not news.
pub const ALERT_TTL: Duration = Duration::from_secs(3600);

/// How far a chained feed (`format = "tablo"`) has read its upstream: kept
/// in the journal's meta tree with the events it produced, so both are
/// durable together, and handed back to the feed at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The upstream's last seq we have.
    pub since: u64,
    /// The upstream's epoch.
    pub epoch: String,
}

impl Position {
    /// The journal meta key for feed `name`.
    pub fn key(name: &str) -> String {
        format!("feed:{name}:position")
    }

    /// `{"since":N,"epoch":"…"}`.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::json!({"since": self.since, "epoch": self.epoch})
            .to_string()
            .into_bytes()
    }

    /// Reads [`Position::encode`]'s output; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Position> {
        let value: Value = serde_json::from_slice(bytes).ok()?;
        Some(Position {
            since: value.get("since")?.as_u64()?,
            epoch: value.get("epoch")?.as_str()?.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_are_stripped_and_joiners_kept() {
        #[track_caller]
        fn check(text: &str, expected: &str) {
            let mut text = text.to_owned();
            strip_hidden(&mut text);
            assert_eq!(text, expected);
        }
        // Bidi embeddings, overrides and isolates, marks, invisible spaces.
        check("USD\u{202E}RRI", "USDRRI");
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{2066}', '\u{2067}', '\u{2068}',
            '\u{2069}', '\u{200B}', '\u{200E}', '\u{200F}', '\u{FEFF}', '\u{00AD}', '\u{061C}',
            '\u{2060}', '\u{0000}', '\u{001B}', '\u{007F}', '\u{009F}',
        ] {
            check(&format!("a{c}b"), "ab");
            assert!(is_hidden(c), "{c:?}");
        }
        // Line breaks and tabs part words.
        check("Gold\nsteady\tahead\r\n", "Gold steady ahead  ");
        // Persian with ZWNJ, Arabic, emoji with ZWJ: untouched.
        for kept in [
            "نرخ\u{200C}های جدید ارز",
            "أسعار الذهب اليوم",
            "\u{1F468}\u{200D}\u{1F469}",
            "Gold steady ahead of the fix",
        ] {
            check(kept, kept);
        }
        assert!(!is_hidden('\u{200C}') && !is_hidden('\u{200D}'));
        assert!(!is_hidden(' ') && !is_hidden('\u{00A0}') && !is_hidden('\u{2028}'));
    }

    #[test]
    fn news_and_alert_texts_are_stripped_and_an_empty_one_refused() {
        let news = |title: &str| {
            Body::News(News {
                title: title.into(),
                url: Some("https://example.net/\u{202E}".into()),
                source: "demo".into(),
            })
        };
        let mut body = news("\u{202E}Gold steady");
        assert!(body.strip_hidden());
        // The url is not a text on the board; it is left as sent.
        assert_eq!(body, news("Gold steady"));
        assert!(!news("\u{202E}\u{2066}").strip_hidden());
        let mut alert = Body::Alert(Alert {
            level: Level::Critical,
            text: "Market\u{2067} closed".into(),
            source: "publish".into(),
            fired: None,
        });
        assert!(alert.strip_hidden());
        assert!(matches!(&alert, Body::Alert(a) if a.text == "Market closed"));
    }

    #[track_caller]
    fn check(event: Event, expected: &str) {
        assert_eq!(event.to_json(), expected);
    }

    #[test]
    fn tick_keeps_price_strings_and_omits_missing_fields() {
        check(
            Event {
                seq: 7,
                ts: 1_700_000_000_000,
                body: Body::Tick(Tick {
                    symbol: "BTCUSDT".into(),
                    price: "67012.50000000".into(),
                    open: Some("66000.00".into()),
                    change_pct: Some("1.53".into()),
                    source: "binance".into(),
                    ..Tick::default()
                }),
            },
            r#"{"type":"tick","seq":7,"channel":"prices","symbol":"BTCUSDT","price":"67012.50000000","open":"66000.00","change_pct":"1.53","ts":1700000000000,"source":"binance"}"#,
        );
    }

    #[test]
    fn events_read_back_as_written() {
        let events = [
            Event {
                seq: 9,
                ts: 10,
                body: Body::Tick(Tick {
                    symbol: "EURUSD".into(),
                    price: "1.08345000".into(),
                    bid: Some("1.0834".into()),
                    source: "fx".into(),
                    ..Tick::default()
                }),
            },
            Event {
                seq: 10,
                ts: 11,
                body: Body::Status(Status {
                    feed: "fx".into(),
                    state: FeedState::Up,
                }),
            },
            Event {
                seq: 11,
                ts: 12,
                body: Body::Alert(Alert {
                    level: Level::Warning,
                    text: "Rates delayed".into(),
                    source: "publish".into(),
                    fired: None,
                }),
            },
        ];
        for event in events {
            assert_eq!(Event::from_json(event.to_json().as_bytes()), Some(event));
        }
        assert_eq!(
            Event::from_json(br#"{"type":"tick","seq":1,"ts":2,"symbol":"X"}"#),
            None
        );
        assert_eq!(Event::from_json(b"garbage"), None);
    }

    #[test]
    fn a_rule_alert_carries_its_rule_prices_and_expiry_and_reads_back() {
        let event = Event {
            seq: 42,
            ts: 1_000,
            body: Body::Alert(Alert {
                level: Level::Critical,
                text: "USD dropped 5.00%".into(),
                source: "rules".into(),
                fired: Some(Box::new(Fired {
                    rule: "usd-drop".into(),
                    kind: "drop".into(),
                    trigger_seq: Some(41),
                    symbol: Some("USD".into()),
                    old_price: Some("60000".into()),
                    new_price: Some("57000".into()),
                    percent: Some("5.00".into()),
                    expires: Some(61_000),
                    ..Fired::default()
                })),
            }),
        };
        check(
            event.clone(),
            r#"{"type":"alert","seq":42,"channel":"alerts","level":"critical","text":"USD dropped 5.00%","rule":"usd-drop","kind":"drop","trigger_seq":41,"symbol":"USD","old_price":"60000","new_price":"57000","percent":"5.00","expires":61000,"ts":1000,"source":"rules"}"#,
        );
        assert_eq!(
            Event::from_json(event.to_json().as_bytes()),
            Some(event.clone())
        );
        let Body::Alert(alert) = &event.body else {
            unreachable!()
        };
        assert_eq!(alert_ttl(alert, 1_000), Duration::from_secs(60));
        let plain = Alert {
            fired: None,
            ..alert.clone()
        };
        assert_eq!(alert_ttl(&plain, 1_000), ALERT_TTL);
    }

    #[test]
    fn news_alert_and_status_shapes() {
        check(
            Event {
                seq: 1,
                ts: 5,
                body: Body::News(News {
                    title: "Gold \"up\"".into(),
                    url: None,
                    source: "demo".into(),
                }),
            },
            r#"{"type":"news","seq":1,"channel":"news","title":"Gold \"up\"","ts":5,"source":"demo"}"#,
        );
        check(
            Event {
                seq: 2,
                ts: 6,
                body: Body::Alert(Alert {
                    level: Level::Critical,
                    text: "Closed".into(),
                    source: "publish".into(),
                    fired: None,
                }),
            },
            r#"{"type":"alert","seq":2,"channel":"alerts","level":"critical","text":"Closed","ts":6,"source":"publish"}"#,
        );
        check(
            Event {
                seq: 3,
                ts: 7,
                body: Body::Status(Status {
                    feed: "binance".into(),
                    state: FeedState::Down,
                }),
            },
            r#"{"type":"status","seq":3,"channel":"status","feed":"binance","state":"down","ts":7}"#,
        );
    }
}
