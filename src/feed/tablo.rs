//! Another Tablo as an upstream (the `tablo` format, docs/config.md §11):
//! reads its downstream protocol (docs/protocol.md).
//!
//! `tick`, `news` and `alert` events are passed on with the upstream's own
//! `ts` and `source` (falling back to the receive time and the feed's name),
//! so a chain of Tablos shows where a price came from and when. The
//! upstream's `status` events describe its own feeds, not ours, and are
//! skipped; so are `hello`, `subscribed`, `unsubscribed`, `pong`, `stats`,
//! `ack` and `gap`. A `snapshot` (asked for on a first link, when there is
//! no position to resume from, and sent by the upstream after a `reset`)
//! gives its ticks, news and alerts as events: the upstream's last-known
//! state, including what it sent before our subscribe took effect (an event
//! in that window may arrive twice, live and in the snapshot). `{"type":"error",…}` is
//! [`DecodeError::Upstream`]; anything else is [`DecodeError::Unexpected`].
//!
//! Prices must be decimal strings, as Tablo sends them; a JSON number is
//! rejected. The decoder remembers the highest event `seq` seen (including
//! skipped `status` events and the end of a `gap`), so a reconnect can
//! resume with `since`; a `reset` forgets it.
//!
//! This module does no I/O and reads no clock: the receive time is passed in.

use serde_json::Value;

use crate::config::FeedConfig;
use crate::decimal;
use crate::event::{Alert, Body, Fired, Incoming, Level, News, Position, Tick};
use crate::feed::DecodeError;
use crate::feed::fields::{self, Object, unexpected};

/// How much of an unknown message type an error message quotes, in characters.
const QUOTE_CHARS: usize = 40;

/// Decoder state for one upstream Tablo.
#[derive(Debug)]
pub struct Tablo {
    /// The feed's name: `source` of events that do not name one.
    source: String,
    /// Channels to subscribe to.
    channels: Vec<String>,
    /// Raw frames that replace our own subscribe frame when not empty.
    subscribe: Vec<String>,
    /// Highest event `seq` seen since the last `reset`.
    last_seq: Option<u64>,
    /// The upstream journal's epoch, from its `hello`.
    epoch: Option<String>,
}

impl Tablo {
    /// A decoder for the feed `feed` (format `tablo`).
    pub fn new(feed: &FeedConfig) -> Self {
        Tablo {
            source: feed.name.clone(),
            channels: feed.channels.clone(),
            subscribe: feed.subscribe.clone(),
            last_seq: None,
            epoch: None,
        }
    }

    /// Frames to send after each (re)connect: the feed's `subscribe` frames
    /// as configured when there are any; else
    /// `{"op":"subscribe","channels":[…]}` with the feed's `channels`, or
    /// `["*"]` when none are configured, plus `since` and `epoch` once an
    /// event has been seen, so a reconnect resumes exactly where the last
    /// link stopped and a chain of Tablos loses nothing.
    pub fn subscribe_frames(&self) -> Vec<String> {
        if !self.subscribe.is_empty() {
            return self.subscribe.clone();
        }
        let channels = if self.channels.is_empty() {
            r#"["*"]"#.to_owned()
        } else {
            // Serializing a list of strings cannot fail.
            serde_json::to_string(&self.channels).unwrap_or_default()
        };
        match (self.last_seq, &self.epoch) {
            (Some(since), Some(epoch)) => {
                let epoch = serde_json::to_string(epoch).unwrap_or_default();
                vec![format!(
                    r#"{{"op":"subscribe","channels":{channels},"since":{since},"epoch":{epoch}}}"#
                )]
            }
            // A first link: subscribe, then ask for the last-known state,
            // which covers what the upstream had before we joined and what
            // it sent while our subscribe was on its way.
            _ => vec![
                format!(r#"{{"op":"subscribe","channels":{channels}}}"#),
                format!(r#"{{"op":"snapshot","channels":{channels}}}"#),
            ],
        }
    }

    /// The highest event `seq` seen since the decoder was made or the
    /// upstream last sent `reset`; `None` before any.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Where a reconnect resumes: the last seen seq and the upstream's
    /// epoch, once both are known.
    pub fn position(&self) -> Option<Position> {
        Some(Position {
            since: self.last_seq?,
            epoch: self.epoch.clone()?,
        })
    }

    /// Starts from a position saved by an earlier run, so a restart of this
    /// Tablo also resumes exactly where it left off.
    pub fn resume_from(&mut self, position: Position) {
        self.last_seq = Some(position.since);
        self.epoch = Some(position.epoch);
    }

    /// Turns one text message into zero or one event appended to `out`. On
    /// an error, `out` is left as it was.
    pub fn decode(
        &mut self,
        text: &str,
        now_ms: u64,
        out: &mut Vec<Incoming>,
    ) -> Result<(), DecodeError> {
        let value = fields::parse(text)?;
        let (obj, kind) = fields::typed(&value, "Tablo")?;
        let body = match kind {
            "hello" => {
                let epoch = obj.get("epoch").and_then(Value::as_str);
                if epoch != self.epoch.as_deref() {
                    // A new upstream journal: our old position means nothing.
                    self.epoch = epoch.map(str::to_owned);
                    self.last_seq = None;
                }
                return Ok(());
            }
            "snapshot" => {
                // The last-known state (asked for on a first link, or sent
                // after a reset): its events become ours; resume after it.
                let events = obj.get("events").and_then(Value::as_array);
                for event in events.into_iter().flatten() {
                    let Some(event) = event.as_object() else {
                        continue;
                    };
                    let kind = event
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if !matches!(kind, "tick" | "news" | "alert") {
                        continue;
                    }
                    let source = match event.get("source") {
                        Some(Value::String(source)) if !source.is_empty() => source.clone(),
                        _ => self.source.clone(),
                    };
                    // A malformed entry is skipped; the others still count.
                    if let Ok(body) = body_of(kind, event, source) {
                        let ts = event.get("ts").and_then(Value::as_u64).unwrap_or(now_ms);
                        out.push(Incoming { ts, body });
                    }
                }
                self.saw(obj.get("seq"));
                return Ok(());
            }
            "subscribed" | "unsubscribed" | "pong" | "stats" | "ack" => {
                return Ok(());
            }
            "reset" => {
                // A new epoch or a trimmed journal: old seqs mean nothing now.
                self.last_seq = None;
                return Ok(());
            }
            "gap" => {
                // Those seqs are lost for good; resume after them.
                self.saw(obj.get("to"));
                return Ok(());
            }
            "error" => return Err(DecodeError::Upstream(error_message(obj))),
            "status" => {
                self.saw(obj.get("seq"));
                return Ok(());
            }
            "tick" | "news" | "alert" => {
                // Counted as seen even if it turns out malformed: asking for
                // it again would give the same event.
                self.saw(obj.get("seq"));
                let source = match obj.get("source") {
                    Some(Value::String(source)) if !source.is_empty() => source.clone(),
                    _ => self.source.clone(),
                };
                body_of(kind, obj, source)?
            }
            kind => {
                return Err(unexpected(format!(
                    "unknown Tablo message type {}",
                    fields::quote(kind, QUOTE_CHARS)
                )));
            }
        };
        let ts = obj.get("ts").and_then(Value::as_u64).unwrap_or(now_ms);
        out.push(Incoming { ts, body });
        Ok(())
    }

    /// Raises [`Tablo::last_seq`] to `seq` if that is a larger integer.
    fn saw(&mut self, seq: Option<&Value>) {
        if let Some(seq) = seq.and_then(Value::as_u64) {
            self.last_seq = Some(self.last_seq.map_or(seq, |last| last.max(seq)));
        }
    }
}

/// The body of a `tick`, `news` or `alert` from its wire fields, checked the
/// way every event from outside is checked (also used for `publish`).
pub(crate) fn body_of(kind: &str, obj: &Object, source: String) -> Result<Body, DecodeError> {
    Ok(match kind {
        "tick" => Body::Tick(tick(obj, source)?),
        "news" => Body::News(news(obj, source)?),
        "alert" => Body::Alert(alert(obj, source)?),
        other => {
            return Err(unexpected(format!(
                "events of type {} cannot be built from fields",
                fields::quote(other, QUOTE_CHARS)
            )));
        }
    })
}

/// A `tick` event: `symbol` and `price` required, the rest optional.
fn tick(obj: &Object, source: String) -> Result<Tick, DecodeError> {
    Ok(Tick {
        symbol: fields::text(obj, "symbol")?,
        price: price(obj, "price")?.ok_or_else(|| fields::missing("price"))?,
        open: price(obj, "open")?,
        change_pct: price(obj, "change_pct")?,
        bid: price(obj, "bid")?,
        ask: price(obj, "ask")?,
        volume: price(obj, "volume")?,
        source,
    })
}

/// A `news` event: `title` required, `url` optional.
fn news(obj: &Object, source: String) -> Result<News, DecodeError> {
    let url = fields::optional(
        obj.get("url"),
        |url| url.as_str().map(str::to_owned),
        || unexpected("`url` is not a string"),
    )?;
    Ok(News {
        title: fields::text(obj, "title")?,
        url,
        source,
    })
}

/// An `alert` event: `level` and `text` required.
fn alert(obj: &Object, source: String) -> Result<Alert, DecodeError> {
    let level = obj
        .get("level")
        .and_then(Value::as_str)
        .and_then(Level::parse)
        .ok_or_else(|| unexpected("`level` is not info, warning or critical"))?;
    Ok(Alert {
        level,
        text: fields::text(obj, "text")?,
        source,
        fired: fired(obj),
    })
}

/// The fields an upstream's `[[alert]]` rule put on its alert
/// (docs/protocol.md §6), passed on down the chain; `None` when there is no
/// `rule` string. A field of the wrong type is left out.
fn fired(obj: &Object) -> Option<Box<Fired>> {
    let rule = obj.get("rule")?.as_str()?.to_owned();
    let text = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_owned);
    let price = |key: &str| text(key).filter(|s| decimal::is_decimal(s));
    Some(Box::new(Fired {
        rule,
        kind: text("kind").unwrap_or_default(),
        trigger_seq: obj.get("trigger_seq").and_then(Value::as_u64),
        symbol: text("symbol"),
        feed: text("feed"),
        old_price: price("old_price"),
        new_price: price("new_price"),
        percent: price("percent"),
        expires: obj.get("expires").and_then(Value::as_u64),
    }))
}

/// An optional price field: `None` when missing or null, an error unless a
/// decimal string (Tablo never sends a price as a JSON number).
fn price(obj: &Object, key: &str) -> Result<Option<String>, DecodeError> {
    let read = |value: &Value| {
        value
            .as_str()
            .filter(|s| decimal::is_decimal(s))
            .map(str::to_owned)
    };
    fields::optional(obj.get(key), read, || {
        unexpected(format!("`{key}` is not a decimal string"))
    })
}

/// `code: message` of an error reply, as much of it as is there.
fn error_message(obj: &Object) -> String {
    fields::joined(obj, "code", "message")
        .unwrap_or_else(|| "the upstream Tablo sent an error without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FeedFormat;
    use crate::feed::testing;

    const NOW: u64 = 1_700_000_009_999;

    fn feed(channels: &[&str], subscribe: &[&str]) -> FeedConfig {
        let url = "ws://10.0.0.2:7070/ws?client=relay";
        FeedConfig {
            channels: testing::strings(channels),
            ..testing::feed("upstream", FeedFormat::Tablo, url, &[], subscribe)
        }
    }

    /// An event with its `ts` and `source`.
    fn show(event: &Incoming) -> String {
        match &event.body {
            Body::Tick(t) => format!(
                "tick {} @{} from {}",
                testing::tick_line(t),
                event.ts,
                t.source
            ),
            Body::News(n) => format!(
                "news {:?} url={:?} @{} from {}",
                n.title, n.url, event.ts, n.source
            ),
            Body::Alert(a) => format!(
                "alert {} {:?} @{} from {}",
                a.level.name(),
                a.text,
                event.ts,
                a.source
            ),
            Body::Status(s) => format!("status {} {}", s.feed, s.state),
            Body::Clock(c) => format!("clock {}", c.name()),
        }
    }

    #[track_caller]
    fn check(frame: &str, expected: &str) {
        testing::check_with(&feed(&[], &[]), NOW, show, frame, expected);
    }

    #[test]
    fn ticks_keep_the_upstream_ts_and_source() {
        check(
            r#"{"type":"tick","seq":7,"channel":"prices","symbol":"BTCUSDT","price":"67012.50000000","open":"66000.00","change_pct":"1.53","bid":"67012.49","ask":"67012.51","volume":"12345.678","ts":1700000000000,"source":"binance"}"#,
            "tick BTCUSDT 67012.50000000 open=66000.00 pct=1.53 bid=67012.49 ask=67012.51 vol=12345.678 @1700000000000 from binance",
        );
    }

    #[test]
    fn missing_ts_and_source_fall_back() {
        check(
            r#"{"type":"tick","seq":8,"channel":"prices","symbol":"EURUSD","price":"1.08512"}"#,
            "tick EURUSD 1.08512 @1700000009999 from upstream",
        );
        check(
            r#"{"type":"tick","symbol":"EURUSD","price":"1.08512","ts":"soon","source":42,"open":null}"#,
            "tick EURUSD 1.08512 @1700000009999 from upstream",
        );
        check(
            r#"{"type":"tick","symbol":"EURUSD","price":"1.08512","ts":-5,"source":""}"#,
            "tick EURUSD 1.08512 @1700000009999 from upstream",
        );
    }

    #[test]
    fn news_and_alerts() {
        check(
            r#"{"type":"news","seq":9,"channel":"news","title":"Gold \"up\"","url":"https://news.example/1","ts":5,"source":"demo"}"#,
            r#"news "Gold \"up\"" url=Some("https://news.example/1") @5 from demo"#,
        );
        check(
            r#"{"type":"news","seq":10,"channel":"news","title":"No link","ts":6,"source":"demo"}"#,
            r#"news "No link" url=None @6 from demo"#,
        );
        check(
            r#"{"type":"alert","seq":11,"channel":"alerts","level":"critical","text":"Closed at 18:00","ts":7,"source":"publish"}"#,
            r#"alert critical "Closed at 18:00" @7 from publish"#,
        );
        // Tablo always sends an alert's `source` (docs/protocol.md §6); one
        // without it still decodes, with the feed's name (docs/config.md §11).
        check(
            r#"{"type":"alert","seq":12,"channel":"alerts","level":"info","text":"Hi","ts":8}"#,
            r#"alert info "Hi" @8 from upstream"#,
        );
    }

    #[test]
    fn a_rules_alert_keeps_its_rule_fields_down_the_chain() {
        let mut decoder = Tablo::new(&feed(&[], &[]));
        let mut out = Vec::new();
        let text = r#"{"type":"alert","seq":42,"channel":"alerts","level":"critical","text":"USD dropped","rule":"usd-drop","kind":"drop","trigger_seq":41,"symbol":"USD","old_price":"60000","new_price":"57000","percent":5,"expires":61000,"ts":1000,"source":"rules"}"#;
        decoder.decode(text, NOW, &mut out).expect("an alert");
        let Some(Body::Alert(alert)) = out.first().map(|i| &i.body) else {
            panic!("{out:?}");
        };
        let fired = alert.fired.as_deref().expect("rule fields");
        assert_eq!(
            (fired.rule.as_str(), fired.kind.as_str()),
            ("usd-drop", "drop")
        );
        assert_eq!(fired.trigger_seq, Some(41));
        assert_eq!(fired.old_price.as_deref(), Some("60000"));
        assert_eq!(fired.percent, None, "a number is not a decimal string");
        assert_eq!(fired.expires, Some(61000));
    }

    #[test]
    fn a_snapshot_gives_its_events_and_moves_the_resume_point() {
        let mut decoder = Tablo::new(&feed(&[], &[]));
        let mut out = Vec::new();
        let hello = r#"{"type":"hello","session":"s","epoch":"e1","seq":41,"server":"tablo/0"}"#;
        decoder.decode(hello, NOW, &mut out).expect("hello");
        let snapshot = r#"{"type":"snapshot","seq":41,"events":[
            {"type":"status","seq":30,"channel":"status","feed":"binance","state":"up","ts":1},
            {"type":"tick","seq":40,"channel":"prices","symbol":"A","price":"1.50","ts":5,"source":"x"},
            {"type":"tick","seq":38,"channel":"prices","symbol":"B","price":"not a price","ts":5},
            {"type":"news","seq":39,"channel":"news","title":"Hi","ts":6}]}"#;
        decoder.decode(snapshot, NOW, &mut out).expect("snapshot");
        let shown: Vec<String> = out.iter().map(show).collect();
        assert_eq!(
            shown,
            [
                "tick A 1.50 @5 from x",
                "news \"Hi\" url=None @6 from upstream"
            ],
            "the status and the malformed tick are skipped"
        );
        assert_eq!(
            decoder.subscribe_frames(),
            [r#"{"op":"subscribe","channels":["*"],"since":41,"epoch":"e1"}"#]
        );
    }

    #[test]
    fn control_frames_and_status_are_skipped() {
        for frame in [
            r#"{"type":"hello","session":"s1","epoch":"e1","seq":41,"server":"tablo/0.1.0"}"#,
            r#"{"type":"subscribed","channels":["*"],"seq":41}"#,
            r#"{"type":"unsubscribed","channels":["news"]}"#,
            r#"{"type":"pong","id":3}"#,
            r#"{"type":"status","seq":42,"channel":"status","feed":"binance","state":"up","ts":9}"#,
            r#"{"type":"gap","from":43,"to":50}"#,
            r#"{"type":"reset","reason":"epoch changed"}"#,
            r#"{"type":"ack","id":1,"seq":51}"#,
        ] {
            check(frame, "");
        }
    }

    #[test]
    fn errors_are_upstream_errors() {
        check(
            r#"{"type":"error","code":"unknown_channel","message":"no channel \"pricez\"","id":1}"#,
            r#"Upstream: unknown_channel: no channel "pricez""#,
        );
        check(
            r#"{"type":"error","code":"rate_limited"}"#,
            "Upstream: rate_limited",
        );
        check(
            r#"{"type":"error"}"#,
            "Upstream: the upstream Tablo sent an error without a message",
        );
    }

    #[test]
    fn garbage_is_not_json() {
        for frame in ["", "hello", "{\"type\":\"tick\"", "{type:tick}"] {
            check(frame, "NotJson");
        }
    }

    #[test]
    fn wrong_shapes_and_types_are_unexpected() {
        for frame in [
            "null",
            "[]",
            r#"[{"type":"tick","symbol":"A","price":"1"}]"#,
            "{}",
            r#"{"type":null}"#,
            r#"{"type":"ticks"}"#,
            r#"{"type":"tick","price":"1"}"#,
            r#"{"type":"tick","symbol":"","price":"1"}"#,
            r#"{"type":"tick","symbol":"A"}"#,
            r#"{"type":"tick","symbol":"A","price":null}"#,
            // Tablo always sends prices as strings.
            r#"{"type":"tick","symbol":"A","price":1.5}"#,
            r#"{"type":"tick","symbol":"A","price":"abc"}"#,
            r#"{"type":"tick","symbol":"A","price":""}"#,
            r#"{"type":"tick","symbol":"A","price":"1","bid":"-"}"#,
            r#"{"type":"tick","symbol":"A","price":"1","volume":[]}"#,
            r#"{"type":"news"}"#,
            r#"{"type":"news","title":7}"#,
            r#"{"type":"news","title":"T","url":{}}"#,
            r#"{"type":"alert","text":"x"}"#,
            r#"{"type":"alert","level":"loud","text":"x"}"#,
            r#"{"type":"alert","level":"info"}"#,
        ] {
            check(frame, "Unexpected");
        }
    }

    #[test]
    fn last_seq_tracks_the_highest_event_seq() {
        let mut decoder = Tablo::new(&feed(&[], &[]));
        let mut out = Vec::new();
        let mut feed_in = |decoder: &mut Tablo, frame: &str| {
            let _ = decoder.decode(frame, NOW, &mut out);
            decoder.last_seq()
        };
        assert_eq!(decoder.last_seq(), None);
        // The server's own position is not an event we have received.
        let hello =
            r#"{"type":"hello","session":"s","epoch":"e","seq":100,"server":"tablo/0.1.0"}"#;
        assert_eq!(feed_in(&mut decoder, hello), None);
        let subscribed = r#"{"type":"subscribed","channels":["*"],"seq":100}"#;
        assert_eq!(feed_in(&mut decoder, subscribed), None);
        let tick = r#"{"type":"tick","seq":5,"symbol":"A","price":"1","ts":1}"#;
        assert_eq!(feed_in(&mut decoder, tick), Some(5));
        let status = r#"{"type":"status","seq":6,"feed":"f","state":"up","ts":1}"#;
        assert_eq!(feed_in(&mut decoder, status), Some(6));
        let gap = r#"{"type":"gap","from":7,"to":9}"#;
        assert_eq!(feed_in(&mut decoder, gap), Some(9));
        // Malformed, but seen: asking again would not fix it.
        let bad = r#"{"type":"tick","seq":10,"symbol":"A","price":"x"}"#;
        assert_eq!(feed_in(&mut decoder, bad), Some(10));
        // Never goes backwards.
        let old = r#"{"type":"news","seq":3,"title":"late","ts":1}"#;
        assert_eq!(feed_in(&mut decoder, old), Some(10));
        let odd = r#"{"type":"news","seq":"11","title":"odd","ts":1}"#;
        assert_eq!(feed_in(&mut decoder, odd), Some(10));
        let reset = r#"{"type":"reset","reason":"epoch changed"}"#;
        assert_eq!(feed_in(&mut decoder, reset), None);
        let after = r#"{"type":"alert","seq":2,"level":"info","text":"t","ts":1}"#;
        assert_eq!(feed_in(&mut decoder, after), Some(2));
    }

    #[test]
    fn reconnect_resumes_after_the_last_seen_seq_in_the_same_epoch() {
        let mut decoder = Tablo::new(&feed(&["prices"], &[]));
        let mut out = Vec::new();
        let hello = r#"{"type":"hello","session":"s","epoch":"e1","seq":4,"server":"tablo/0"}"#;
        let tick = r#"{"type":"tick","seq":7,"channel":"prices","symbol":"A","price":"1","ts":1,"source":"x"}"#;
        decoder.decode(hello, NOW, &mut out).expect("hello");
        decoder.decode(tick, NOW, &mut out).expect("tick");
        assert_eq!(
            decoder.subscribe_frames(),
            [r#"{"op":"subscribe","channels":["prices"],"since":7,"epoch":"e1"}"#]
        );
        // The upstream's journal was replaced: start over.
        let other = r#"{"type":"hello","session":"s","epoch":"e2","seq":0,"server":"tablo/0"}"#;
        decoder.decode(other, NOW, &mut out).expect("hello");
        assert_eq!(
            decoder.subscribe_frames(),
            [
                r#"{"op":"subscribe","channels":["prices"]}"#,
                r#"{"op":"snapshot","channels":["prices"]}"#
            ]
        );
    }

    #[test]
    fn a_saved_position_round_trips_and_resumes() {
        let position = Position {
            since: 42,
            epoch: "00ff00ff00ff00ff".into(),
        };
        assert_eq!(Position::decode(&position.encode()), Some(position.clone()));
        assert_eq!(Position::decode(b"{}"), None);
        let mut decoder = Tablo::new(&feed(&[], &[]));
        decoder.resume_from(position);
        assert_eq!(
            decoder.subscribe_frames(),
            [r#"{"op":"subscribe","channels":["*"],"since":42,"epoch":"00ff00ff00ff00ff"}"#]
        );
    }

    #[test]
    fn subscribe_frames_follow_the_config() {
        let frames = |channels: &[&str], subscribe: &[&str]| {
            Tablo::new(&feed(channels, subscribe)).subscribe_frames()
        };
        assert_eq!(
            frames(&[], &[]),
            vec![
                r#"{"op":"subscribe","channels":["*"]}"#,
                r#"{"op":"snapshot","channels":["*"]}"#
            ]
        );
        assert_eq!(
            frames(&["prices.BTCUSDT", "news"], &[]),
            vec![
                r#"{"op":"subscribe","channels":["prices.BTCUSDT","news"]}"#,
                r#"{"op":"snapshot","channels":["prices.BTCUSDT","news"]}"#
            ]
        );
        let custom = r#"{"op":"subscribe","channels":["alerts"],"since":5}"#;
        assert_eq!(frames(&["news"], &[custom]), vec![custom]);
    }
}
