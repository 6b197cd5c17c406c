//! What an `mqtt` feed makes of one message: its topic and payload in,
//! events out (docs/config.md §11). The MQTT session itself (packets,
//! acks, reconnects) is `feed::task::mqtt`'s; this module knows only
//! payloads.
//!
//! A message is read as the first of these that fits:
//!
//! 1. a JSON object whose `type` is `tick`, `news` or `alert`: a Tablo
//!    event, as `[[forward]]` publishes it, with its own `ts` (`status`
//!    events describe another Tablo's feeds and are skipped);
//! 2. a message on a topic with a level `news` or `alerts`: a headline or
//!    an alert, the payload plain text (the title, or the alert's text at
//!    level `info`) or a JSON object with the fields of Tablo's `news`
//!    (`title`, `url`) or `alert` (`level`, `text`);
//! 3. a JSON payload mapped with the feed's `[feed.pointers]`, as for a
//!    `json` feed, the symbol taken from topic level N when
//!    `symbol = "topic:N"`.
//!
//! Every event's `source` is the feed's name, also for a Tablo event (whose
//! own `source` is dropped): `[[forward]]` never sends an event back to the
//! broker feed it came from, and that is how it knows. Retained messages
//! are read the same way: they are the broker's last-known values. A message is decoded whole or not at all. This
//! module does no I/O and reads no clock.

use serde_json::Value;

use crate::config::{FeedConfig, topic_level};
use crate::event::{Alert, Body, Incoming, Level, News};
use crate::feed::DecodeError;
use crate::feed::fields::{self, unexpected};
use crate::feed::json::Json;
use crate::feed::tablo::body_of;

/// How much of a topic an error message quotes, in characters.
const QUOTE_CHARS: usize = 60;

/// Decoder state for one `mqtt` feed.
#[derive(Debug)]
pub struct Mqtt {
    /// The feed's name: `source` of events that do not name one.
    source: String,
    /// The pointer mapping, when the feed has `[feed.pointers]`.
    json: Option<Json>,
    /// `symbol = "topic:N"`: the level (from 1) that holds the symbol.
    topic_level: Option<usize>,
}

impl Mqtt {
    /// A decoder for the feed `feed` (format `mqtt`).
    pub fn new(feed: &FeedConfig) -> Self {
        let topic_level = feed
            .pointers
            .symbol
            .as_deref()
            .and_then(topic_level)
            .and_then(Result::ok);
        let mut mapped = feed.clone();
        if topic_level.is_some() {
            mapped.pointers.symbol = None;
        }
        Mqtt {
            source: feed.name.clone(),
            json: feed.pointers.price.is_some().then(|| Json::new(&mapped)),
            topic_level,
        }
    }

    /// Turns one message on `topic` into zero or more events appended to
    /// `out`, stamped `now_ms` unless they carry their own `ts`. On an
    /// error, `out` is left as it was.
    pub fn decode(
        &mut self,
        topic: &str,
        payload: &[u8],
        now_ms: u64,
        out: &mut Vec<Incoming>,
    ) -> Result<(), DecodeError> {
        let text = std::str::from_utf8(payload)
            .map_err(|_| DecodeError::NotJson("the payload is not UTF-8 text".into()))?;
        let value = fields::parse(text).ok();
        if let Some(Value::Object(obj)) = &value
            && let Some(Value::String(kind)) = obj.get("type")
        {
            match kind.as_str() {
                "tick" | "news" | "alert" => {
                    let body = body_of(kind, obj, self.source.clone())?;
                    let ts = obj.get("ts").and_then(Value::as_u64).unwrap_or(now_ms);
                    out.push(Incoming { ts, body });
                    return Ok(());
                }
                "status" => return Ok(()),
                _ => {}
            }
        }
        let levels = || topic.split('/');
        if levels().any(|l| l == "news") {
            return self.text_event("news", value.as_ref(), text, now_ms, out);
        }
        if levels().any(|l| l == "alerts") {
            return self.text_event("alert", value.as_ref(), text, now_ms, out);
        }
        let Some(json) = &mut self.json else {
            return Err(unexpected(format!(
                "a message on {} is not a Tablo event, and the feed has no [feed.pointers] to map it",
                fields::quote(topic, QUOTE_CHARS)
            )));
        };
        let symbol = match self.topic_level {
            Some(n) => match levels().nth(n - 1) {
                Some(level) if !level.is_empty() => Some(level),
                _ => {
                    return Err(unexpected(format!(
                        "the topic {} has no level {n} to take the symbol from",
                        fields::quote(topic, QUOTE_CHARS)
                    )));
                }
            },
            None => None,
        };
        json.decode_as(text, symbol, now_ms, out)
    }

    /// A `news` or `alert` event from a plain-text payload or an object
    /// with that event's fields.
    fn text_event(
        &self,
        kind: &str,
        value: Option<&Value>,
        text: &str,
        now_ms: u64,
        out: &mut Vec<Incoming>,
    ) -> Result<(), DecodeError> {
        let source = self.source.clone();
        let body = match value {
            Some(Value::Object(obj)) => body_of(kind, obj, source)?,
            _ => {
                let text = text.trim();
                if text.is_empty() {
                    return Err(unexpected(format!("an empty {kind} message")));
                }
                match kind {
                    "news" => Body::News(News {
                        title: text.to_owned(),
                        url: None,
                        source,
                    }),
                    _ => Body::Alert(Alert {
                        level: Level::Info,
                        text: text.to_owned(),
                        source,
                        fired: None,
                    }),
                }
            }
        };
        out.push(Incoming { ts: now_ms, body });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FeedFormat, JsonPointers};
    use crate::feed::testing::{self, tick_line};

    fn feed(pointers: &[(&str, &str)]) -> FeedConfig {
        let mut p = JsonPointers::default();
        for &(key, value) in pointers {
            let slot = match key {
                "symbol" => &mut p.symbol,
                "price" => &mut p.price,
                "bid" => &mut p.bid,
                "ask" => &mut p.ask,
                other => panic!("no pointer {other}"),
            };
            *slot = Some(value.to_owned());
        }
        FeedConfig {
            pointers: p,
            ..testing::feed("hq", FeedFormat::Mqtt, "mqtt://b", &[], &[])
        }
    }

    /// Decodes `payload` on `topic`; one line per event, or the error kind.
    #[track_caller]
    fn check(feed: &FeedConfig, topic: &str, payload: &str, expected: &str) {
        let mut out = Vec::new();
        let got = match Mqtt::new(feed).decode(topic, payload.as_bytes(), 7, &mut out) {
            Ok(()) => out
                .iter()
                .map(|e| match &e.body {
                    Body::Tick(t) => format!("{} ts={}", tick_line(t), e.ts),
                    Body::News(n) => format!("news {} ({})", n.title, n.source),
                    Body::Alert(a) => format!("alert {} {} ({})", a.level.name(), a.text, a.source),
                    Body::Status(_) | Body::Clock(_) => "status".into(),
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Err(DecodeError::NotJson(_)) => "NotJson".into(),
            Err(DecodeError::Unexpected(_)) => "Unexpected".into(),
            Err(DecodeError::Upstream(_)) => "Upstream".into(),
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn the_symbol_from_a_topic_level() {
        let f = feed(&[("symbol", "topic:2"), ("price", "/p"), ("bid", "/b")]);
        check(
            &f,
            "rates/USD",
            r#"{"p":"61250.50","b":61000.000000000000001}"#,
            "USD 61250.50 bid=61000.000000000000001 ts=7",
        );
        check(&f, "rates", r#"{"p":"1"}"#, "Unexpected");
        check(&f, "rates/", r#"{"p":"1"}"#, "Unexpected");
    }

    #[test]
    fn the_symbol_from_a_pointer() {
        let f = feed(&[("symbol", "/s"), ("price", "/p")]);
        check(
            &f,
            "any/thing",
            r#"[{"s":"A","p":"1.5"},{"s":"B","p":"2"}]"#,
            "A 1.5 ts=7\nB 2 ts=7",
        );
    }

    #[test]
    fn tablo_events_as_forwarded() {
        let f = feed(&[]);
        check(
            &f,
            "tablo/hq/prices",
            r#"{"type":"tick","seq":9,"epoch":"e1","ts":5,"symbol":"XAU","price":"2351.20","source":"gold"}"#,
            "XAU 2351.20 ts=5",
        );
        check(
            &f,
            "tablo/hq/alerts",
            r#"{"type":"alert","seq":10,"ts":6,"level":"critical","text":"Closed","source":"hq"}"#,
            "alert critical Closed (hq)",
        );
        check(
            &f,
            "tablo/office-7/alerts",
            r#"{"type":"alert","level":"info","text":"Open","source":"publish"}"#,
            "alert info Open (hq)",
        );
        check(
            &f,
            "tablo/hq/status",
            r#"{"type":"status","feed":"x","state":"up"}"#,
            "",
        );
        check(
            &f,
            "tablo/hq/prices",
            r#"{"type":"tick","symbol":"X","price":1.5}"#,
            "Unexpected",
        );
    }

    #[test]
    fn news_and_alerts_topics() {
        let f = feed(&[]);
        check(
            &f,
            "news/world",
            " Markets open \n",
            "news Markets open (hq)",
        );
        check(
            &f,
            "site/news",
            r#"{"title":"Rates up","url":"https://x"}"#,
            "news Rates up (hq)",
        );
        check(
            &f,
            "alerts",
            "Back at 14:00",
            "alert info Back at 14:00 (hq)",
        );
        check(
            &f,
            "alerts",
            r#"{"level":"warning","text":"Low cash"}"#,
            "alert warning Low cash (hq)",
        );
        check(&f, "alerts", "  ", "Unexpected");
        check(&f, "alerts", r#"{"level":"loud","text":"x"}"#, "Unexpected");
    }

    #[test]
    fn garbage_is_skipped_with_its_kind() {
        let f = feed(&[("symbol", "topic:2"), ("price", "/p")]);
        check(&f, "rates/USD", "not json", "NotJson");
        check(&f, "rates/USD", r#"{"p":"1,5"}"#, "Unexpected");
        let mut out = Vec::new();
        let e = Mqtt::new(&f).decode("rates/USD", &[0xff, 0xfe], 7, &mut out);
        assert!(matches!(e, Err(DecodeError::NotJson(_))), "{e:?}");
        // Without pointers, only Tablo events, news and alerts are understood.
        check(&feed(&[]), "rates/USD", r#"{"p":"1"}"#, "Unexpected");
    }
}
