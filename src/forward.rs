//! `[[forward]]` rules (docs/config.md §16): which events go to a broker,
//! under which topic, with which payload.
//!
//! A rule matches an event by its channels (as a client subscribes:
//! `prices`, `prices.SYMBOL`, `prices.*`, `news`, `alerts`, `status`, `*`),
//! names the topic from its template (`{site}`, `{channel}`, `{symbol}`) and
//! makes the payload: the event's JSON exactly as clients get it, with
//! `"epoch"` added, so a consumer can drop duplicates by `(epoch, seq)`.
//! An event that came in from the rule's own broker feed (its `source` is
//! that feed's name) is never sent back to it, so Tablos that forward to
//! a broker they also read cannot pass an event round in a loop.
//! Pure: no I/O, no clock. The durable outbox the messages wait in is
//! `journal::forward`'s; sending them is the broker feed's task's.

use crate::config::ForwardConfig;
use crate::event::{Body, Channel};
use crate::protocol::Sub;

/// One `[[forward]]` rule, ready to match events.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The rule as configured.
    pub config: ForwardConfig,
    /// Its channels, parsed.
    subs: Vec<Sub>,
    /// This Tablo's `site`, for `{site}`.
    site: String,
}

impl Rule {
    /// The rule `config` of the Tablo named `site`.
    pub fn new(config: &ForwardConfig, site: &str) -> Rule {
        let subs = config
            .channels
            .iter()
            .filter_map(|c| match c.as_str() {
                "prices.*" => Some(Sub::Family(Channel::Prices)),
                c => Sub::parse(c),
            })
            .collect();
        Rule {
            config: config.clone(),
            subs,
            site: site.to_owned(),
        }
    }

    /// A name for this rule's outbox that stays the same while the rule
    /// does: its broker, topic template and channels.
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.config.to,
            self.config.topic,
            self.config.channels.join(",")
        )
    }

    /// The topic an event with `body` goes to, if this rule forwards it.
    pub fn topic_for(&self, body: &Body) -> Option<String> {
        if !self.subs.iter().any(|s| s.matches(body)) {
            return None;
        }
        let source = match body {
            Body::Tick(t) => Some(&t.source),
            Body::News(n) => Some(&n.source),
            Body::Alert(a) => Some(&a.source),
            Body::Status(_) | Body::Clock(_) => None,
        };
        if source == Some(&self.config.to) {
            return None;
        }
        let channel = body.channel().name();
        let symbol = match body {
            Body::Tick(t) => t.symbol.as_str(),
            _ => channel,
        };
        Some(
            self.config
                .topic
                .replace("{site}", &self.site)
                .replace("{channel}", channel)
                .replace("{symbol}", symbol),
        )
    }
}

/// The payload of a forwarded event: `json` (an event as clients get it, a
/// JSON object) with `"epoch":"<epoch>"` added at its end.
pub fn payload(json: &[u8], epoch: &str) -> Vec<u8> {
    let epoch = serde_json::to_string(epoch).unwrap_or_else(|_| "\"\"".into());
    let body = json.strip_suffix(b"}").unwrap_or(json);
    let mut out = Vec::with_capacity(json.len() + epoch.len() + 10);
    out.extend_from_slice(body);
    if body.len() > 1 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"epoch\":");
    out.extend_from_slice(epoch.as_bytes());
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Alert, Level, Tick};

    fn rule(channels: &[&str], topic: &str) -> Rule {
        let config = ForwardConfig {
            channels: channels.iter().map(|c| c.to_string()).collect(),
            to: "hq".into(),
            topic: topic.into(),
            ..ForwardConfig::default()
        };
        Rule::new(&config, "office-7")
    }

    fn tick(symbol: &str) -> Body {
        Body::Tick(Tick {
            symbol: symbol.into(),
            price: "1".into(),
            ..Tick::default()
        })
    }

    fn alert() -> Body {
        Body::Alert(Alert {
            level: Level::Critical,
            text: "x".into(),
            source: "s".into(),
            fired: None,
        })
    }

    #[test]
    fn topics_from_the_template() {
        let r = rule(&["alerts", "prices.*"], "tablo/{site}/{channel}/{symbol}");
        assert_eq!(
            r.topic_for(&tick("USD")).as_deref(),
            Some("tablo/office-7/prices/USD")
        );
        assert_eq!(
            r.topic_for(&alert()).as_deref(),
            Some("tablo/office-7/alerts/alerts")
        );
        let only_usd = rule(&["prices.USD"], "t/{symbol}");
        assert_eq!(only_usd.topic_for(&tick("USD")).as_deref(), Some("t/USD"));
        assert_eq!(only_usd.topic_for(&tick("EUR")), None);
        assert_eq!(only_usd.topic_for(&alert()), None);
    }

    #[test]
    fn what_came_from_the_broker_does_not_go_back_to_it() {
        let r = rule(&["*"], "t/{channel}");
        let from_hq = Body::Alert(Alert {
            level: Level::Info,
            text: "x".into(),
            source: "hq".into(),
            fired: None,
        });
        assert_eq!(r.topic_for(&from_hq), None);
        assert_eq!(r.topic_for(&alert()).as_deref(), Some("t/alerts"));
    }

    #[test]
    fn the_payload_is_the_event_with_its_epoch() {
        assert_eq!(
            payload(br#"{"type":"alert","seq":7}"#, "e1"),
            br#"{"type":"alert","seq":7,"epoch":"e1"}"#
        );
        assert_eq!(payload(b"{}", "e\"1"), br#"{"epoch":"e\"1"}"#);
    }
}
