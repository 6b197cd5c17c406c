//! Coinbase Exchange WebSocket feed: the only place that knows Coinbase's
//! JSON.
//!
//! Reads the `ticker` channel (and `ticker_batch`, which has the same
//! fields): `product_id` is the symbol as sent (`BTC-USD`), `price` the last
//! price, `open_24h`, `volume_24h`, `best_bid` and `best_ask` the optional
//! fields; the change percent is computed from `price` and `open_24h`. The
//! message's own `time` is not used: an event's `ts` is the receive time.
//!
//! `heartbeat`, `subscriptions` replies and the other channels' messages are
//! skipped without error; `{"type":"error",…}` is [`DecodeError::Upstream`];
//! anything else is [`DecodeError::Unexpected`]. Prices are kept byte for
//! byte: Coinbase sends strings, and a JSON number is accepted by its exact
//! text when that is a plain decimal.
//!
//! This module does no I/O and reads no clock: the receive time is passed in.

use crate::config::FeedConfig;
use crate::decimal;
use crate::event::{Body, Incoming, Tick};
use crate::feed::fields::{self, Object, unexpected};
use crate::feed::{self, DecodeError};

/// Coinbase message types that carry no ticker: skipped without counting as
/// errors.
const SKIPPED_TYPES: &[&str] = &[
    "subscriptions",
    "heartbeat",
    "status",
    "snapshot",
    "l2update",
    "match",
    "last_match",
    "received",
    "open",
    "done",
    "change",
    "activate",
    "auction",
    "rfq_match",
];

/// How much of an unknown message type an error message quotes, in characters.
const QUOTE_CHARS: usize = 40;

/// Decoder state for one Coinbase feed.
#[derive(Debug)]
pub struct Coinbase {
    /// The feed's name: every tick's `source`.
    source: String,
    /// Product ids to subscribe to (`BTC-USD`).
    symbols: Vec<String>,
    /// Raw frames that replace our own subscribe frame when not empty.
    subscribe: Vec<String>,
}

impl Coinbase {
    /// A decoder for the feed `feed` (format `coinbase`).
    pub fn new(feed: &FeedConfig) -> Self {
        Coinbase {
            source: feed.name.clone(),
            symbols: feed.symbols.clone(),
            subscribe: feed.subscribe.clone(),
        }
    }

    /// Frames to send after each (re)connect: the feed's `subscribe` frames
    /// as configured when there are any; else, when `symbols` is set,
    /// `{"type":"subscribe","product_ids":[…],"channels":["ticker","heartbeat"]}`;
    /// else none.
    pub fn subscribe_frames(&self) -> Vec<String> {
        feed::subscribe_by_symbol(&self.subscribe, &self.symbols, |symbols| {
            // Serializing a list of strings cannot fail.
            let ids = serde_json::to_string(symbols).unwrap_or_default();
            format!(
                r#"{{"type":"subscribe","product_ids":{ids},"channels":["ticker","heartbeat"]}}"#
            )
        })
    }

    /// Turns one text message into zero or one tick appended to `out`,
    /// stamped `now_ms`. On an error, `out` is left as it was.
    pub fn decode(
        &mut self,
        text: &str,
        now_ms: u64,
        out: &mut Vec<Incoming>,
    ) -> Result<(), DecodeError> {
        let value = fields::parse(text)?;
        let (obj, kind) = fields::typed(&value, "Coinbase")?;
        match kind {
            "ticker" | "ticker_batch" => {
                let tick = self.ticker(obj)?;
                out.push(Incoming {
                    ts: now_ms,
                    body: Body::Tick(tick),
                });
                Ok(())
            }
            "error" => Err(DecodeError::Upstream(error_message(obj))),
            kind if SKIPPED_TYPES.contains(&kind) => Ok(()),
            kind => Err(unexpected(format!(
                "unknown Coinbase message type {}",
                fields::quote(kind, QUOTE_CHARS)
            ))),
        }
    }

    /// The tick of a `ticker` message.
    fn ticker(&self, obj: &Object) -> Result<Tick, DecodeError> {
        let symbol = fields::text(obj, "product_id")?;
        let price = fields::required_decimal(obj, "price")?;
        let open = fields::decimal(obj, "open_24h")?;
        let change_pct = open
            .as_deref()
            .and_then(|open| decimal::change_pct(&price, open));
        Ok(Tick {
            symbol,
            change_pct,
            open,
            bid: fields::decimal(obj, "best_bid")?,
            ask: fields::decimal(obj, "best_ask")?,
            volume: fields::decimal(obj, "volume_24h")?,
            price,
            source: self.source.clone(),
        })
    }
}

/// `message: reason` of an error message, as much of it as is there.
fn error_message(obj: &Object) -> String {
    fields::joined(obj, "message", "reason")
        .unwrap_or_else(|| "Coinbase sent an error without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FeedFormat;
    use crate::feed::testing;

    fn feed(symbols: &[&str], subscribe: &[&str]) -> FeedConfig {
        let url = "wss://ws-feed.exchange.coinbase.com";
        testing::feed("coinbase", FeedFormat::Coinbase, url, symbols, subscribe)
    }

    #[track_caller]
    fn check(frame: &str, expected: &str) {
        testing::check_ticks(&feed(&[], &[]), frame, expected);
    }

    #[test]
    fn ticker_with_every_field() {
        check(
            r#"{"type":"ticker","sequence":37475248783,"product_id":"BTC-USD","price":"67012.50","open_24h":"66000.00","volume_24h":"12345.67812345","low_24h":"65800.01","high_24h":"67500.00","volume_30d":"400000.1","best_bid":"67012.49","best_bid_size":"0.1","best_ask":"67012.51","best_ask_size":"0.2","side":"buy","time":"2024-05-01T12:00:00.123456Z","trade_id":1,"last_size":"0.001"}"#,
            "BTC-USD 67012.50 open=66000.00 pct=1.53 bid=67012.49 ask=67012.51 vol=12345.67812345",
        );
    }

    #[test]
    fn ticker_keeps_many_decimals_byte_for_byte() {
        check(
            r#"{"type":"ticker","product_id":"SHIB-USD","price":"0.00002345000000000001","open_24h":"0.00002300"}"#,
            "SHIB-USD 0.00002345000000000001 open=0.00002300 pct=1.96",
        );
    }

    #[test]
    fn missing_optional_fields_are_none() {
        check(
            r#"{"type":"ticker","product_id":"ETH-EUR","price":"3200.1"}"#,
            "ETH-EUR 3200.1",
        );
        check(
            r#"{"type":"ticker","product_id":"ETH-EUR","price":"3200.1","open_24h":null,"best_bid":null}"#,
            "ETH-EUR 3200.1",
        );
        check(
            r#"{"type":"ticker_batch","product_id":"ETH-EUR","price":"3200.1","open_24h":"0"}"#,
            "ETH-EUR 3200.1 open=0",
        );
    }

    #[test]
    fn numbers_are_kept_by_their_exact_text() {
        check(
            r#"{"type":"ticker","product_id":"BTC-USD","price":67012.50,"open_24h":66000}"#,
            "BTC-USD 67012.50 open=66000 pct=1.53",
        );
        check(
            r#"{"type":"ticker","product_id":"BTC-USD","price":6.7e4}"#,
            "Unexpected",
        );
    }

    #[test]
    fn control_messages_are_skipped() {
        check(
            r#"{"type":"subscriptions","channels":[{"name":"ticker","product_ids":["BTC-USD"]}]}"#,
            "",
        );
        check(
            r#"{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2024-05-01T12:00:00.000000Z"}"#,
            "",
        );
        check(
            r#"{"type":"match","product_id":"BTC-USD","price":"1","size":"1"}"#,
            "",
        );
        check(
            r#"{"type":"l2update","product_id":"BTC-USD","changes":[]}"#,
            "",
        );
    }

    #[test]
    fn errors_are_upstream_errors() {
        check(
            r#"{"type":"error","message":"Failed to subscribe","reason":"BTC-XYZ is not a valid product"}"#,
            "Upstream: Failed to subscribe: BTC-XYZ is not a valid product",
        );
        check(
            r#"{"type":"error","message":"Malformed JSON"}"#,
            "Upstream: Malformed JSON",
        );
        check(
            r#"{"type":"error"}"#,
            "Upstream: Coinbase sent an error without a message",
        );
    }

    #[test]
    fn garbage_is_not_json() {
        for frame in [
            "",
            "ticker",
            "{\"type\":",
            "{'type':'ticker'}",
            "\u{feff}{}",
        ] {
            check(frame, "NotJson");
        }
    }

    #[test]
    fn wrong_shapes_and_types_are_unexpected() {
        for frame in [
            "null",
            "[]",
            r#"[{"type":"ticker","product_id":"BTC-USD","price":"1"}]"#,
            "{}",
            r#"{"type":7}"#,
            r#"{"type":"tickers"}"#,
            r#"{"channel":"ticker","events":[{"type":"update","tickers":[]}]}"#,
            r#"{"type":"ticker","price":"1"}"#,
            r#"{"type":"ticker","product_id":"","price":"1"}"#,
            r#"{"type":"ticker","product_id":["BTC-USD"],"price":"1"}"#,
            r#"{"type":"ticker","product_id":"BTC-USD"}"#,
            r#"{"type":"ticker","product_id":"BTC-USD","price":""}"#,
            r#"{"type":"ticker","product_id":"BTC-USD","price":"1,5"}"#,
            r#"{"type":"ticker","product_id":"BTC-USD","price":true}"#,
            r#"{"type":"ticker","product_id":"BTC-USD","price":"1","best_ask":"n/a"}"#,
            r#"{"type":"ticker","product_id":"BTC-USD","price":"1","volume_24h":{"v":"1"}}"#,
        ] {
            check(frame, "Unexpected");
        }
    }

    #[test]
    fn subscribe_frames_follow_the_config() {
        let frames = |symbols: &[&str], subscribe: &[&str]| {
            Coinbase::new(&feed(symbols, subscribe)).subscribe_frames()
        };
        assert_eq!(frames(&[], &[]), Vec::<String>::new());
        assert_eq!(
            frames(&["BTC-USD", "ETH-EUR"], &[]),
            vec![
                r#"{"type":"subscribe","product_ids":["BTC-USD","ETH-EUR"],"channels":["ticker","heartbeat"]}"#
            ]
        );
        let custom = r#"{"type":"subscribe","product_ids":["BTC-USD"],"channels":["ticker"]}"#;
        assert_eq!(frames(&["ETH-EUR"], &[custom]), vec![custom]);
    }
}
