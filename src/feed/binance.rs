//! Binance spot WebSocket streams: the only place that knows Binance's JSON.
//!
//! Turns the ticker and trade streams into ticks:
//!
//! - `24hrTicker` (`<symbol>@ticker`, `!ticker@arr`) and the rolling-window
//!   tickers `1hTicker`, `4hTicker`, `1dTicker`: `s` symbol, `c` last price,
//!   `o` open, `P` change percent, `b` best bid, `a` best ask, `v` base volume;
//! - `24hrMiniTicker` (`<symbol>@miniTicker`, `!miniTicker@arr`): `s`, `c`,
//!   `o`, `v`, with the change percent computed from `c` and `o`;
//! - `trade` and `aggTrade`: `s` and `p` (the trade's price) only.
//!
//! A message may be a raw payload (`/ws/<stream>`), a combined-stream
//! envelope `{"stream":"btcusdt@ticker","data":…}` (`/stream?streams=…`), or
//! a JSON array of payloads (the `!…@arr` streams), and an envelope's `data`
//! may itself be such an array. Replies to `SUBSCRIBE` (`{"result":…,"id":N}`)
//! and Binance events that carry no price for the board (`depthUpdate`,
//! `kline`, `bookTicker`, …) are skipped without error; `{"code":…,"msg":…}`
//! is [`DecodeError::Upstream`]; JSON of any other shape is
//! [`DecodeError::Unexpected`].
//!
//! Prices are kept byte for byte. Binance sends them as JSON strings; a JSON
//! number is accepted too, by its exact text, when that text is a plain
//! decimal. A message is decoded whole or not at all: on an error nothing is
//! appended to `out`.
//!
//! This module does no I/O and reads no clock: the receive time is passed in.

use serde_json::Value;

use crate::config::FeedConfig;
use crate::decimal;
use crate::event::{Body, Incoming, Tick};
use crate::feed::fields::{self, Object, unexpected};
use crate::feed::{self, DecodeError};

/// Binance event types (`e`) that are valid but carry no price for the board:
/// skipped without counting as errors.
const SKIPPED_EVENTS: &[&str] = &[
    "depthUpdate",
    "kline",
    "avgPrice",
    "serverShutdown",
    "outboundAccountPosition",
    "balanceUpdate",
    "executionReport",
    "listStatus",
    "listenKeyExpired",
    "eventStreamTerminated",
    "externalLockUpdate",
];

/// How much of an unknown event type an error message quotes, in characters.
const QUOTE_CHARS: usize = 40;

/// Decoder state for one Binance feed.
#[derive(Debug)]
pub struct Binance {
    /// The feed's name: every tick's `source`.
    source: String,
    /// Symbols to subscribe to, as configured (`BTCUSDT`).
    symbols: Vec<String>,
    /// Raw frames that replace our own subscribe frame when not empty.
    subscribe: Vec<String>,
}

impl Binance {
    /// A decoder for the feed `feed` (format `binance`).
    pub fn new(feed: &FeedConfig) -> Self {
        Binance {
            source: feed.name.clone(),
            symbols: feed.symbols.clone(),
            subscribe: feed.subscribe.clone(),
        }
    }

    /// Frames to send after each (re)connect: the feed's `subscribe` frames
    /// as configured when there are any; else, when `symbols` is set, one
    /// `{"method":"SUBSCRIBE","params":["btcusdt@ticker",…],"id":1}`; else
    /// none, because the URL already names the streams.
    ///
    /// The id is always 1: ids only pair replies with requests on one
    /// connection, and this is the only request Tablo sends.
    pub fn subscribe_frames(&self) -> Vec<String> {
        feed::subscribe_by_symbol(&self.subscribe, &self.symbols, |symbols| {
            let params: Vec<String> = symbols
                .iter()
                .map(|symbol| format!("{}@ticker", symbol.to_lowercase()))
                .collect();
            // Serializing a list of strings cannot fail.
            let params = serde_json::to_string(&params).unwrap_or_default();
            format!(r#"{{"method":"SUBSCRIBE","params":{params},"id":1}}"#)
        })
    }

    /// Turns one text message into zero or more ticks appended to `out`, each
    /// stamped `now_ms`. On an error, `out` is left as it was.
    pub fn decode(
        &mut self,
        text: &str,
        now_ms: u64,
        out: &mut Vec<Incoming>,
    ) -> Result<(), DecodeError> {
        let value = fields::parse(text)?;
        fields::whole(out, |out| self.message(&value, now_ms, out))
    }

    /// One whole message: a payload, an array of them, an envelope, or a reply.
    fn message(
        &self,
        value: &Value,
        now_ms: u64,
        out: &mut Vec<Incoming>,
    ) -> Result<(), DecodeError> {
        let obj = match value {
            Value::Array(items) => return self.payloads(items, now_ms, out),
            Value::Object(obj) => obj,
            _ => return Err(unexpected("expected a JSON object or array")),
        };
        if obj.contains_key("e") {
            return self.payload(value, now_ms, out);
        }
        if let (Some(Value::String(_)), Some(data)) = (obj.get("stream"), obj.get("data")) {
            return match data {
                Value::Array(items) => self.payloads(items, now_ms, out),
                data => self.payload(data, now_ms, out),
            };
        }
        if let Some(why) = error_reply(obj) {
            return Err(DecodeError::Upstream(why));
        }
        if obj.contains_key("result") && obj.contains_key("id") {
            // The reply to SUBSCRIBE (`"result":null`) or another request.
            return Ok(());
        }
        self.payload(value, now_ms, out)
    }

    /// The elements of an array stream such as `!ticker@arr`.
    fn payloads(
        &self,
        items: &[Value],
        now_ms: u64,
        out: &mut Vec<Incoming>,
    ) -> Result<(), DecodeError> {
        for item in items {
            self.payload(item, now_ms, out)?;
        }
        Ok(())
    }

    /// One raw stream payload.
    fn payload(
        &self,
        value: &Value,
        now_ms: u64,
        out: &mut Vec<Incoming>,
    ) -> Result<(), DecodeError> {
        let Value::Object(obj) = value else {
            return Err(unexpected("a Binance payload must be a JSON object"));
        };
        let event = match obj.get("e") {
            Some(Value::String(event)) => event.as_str(),
            Some(_) => return Err(unexpected("the event type `e` is not a string")),
            // `bookTicker` and partial-depth payloads have no `e`.
            None if is_book_ticker(obj) || obj.contains_key("lastUpdateId") => return Ok(()),
            None => return Err(unexpected("not a Binance payload: no event type `e`")),
        };
        let tick = match event {
            "24hrTicker" | "1hTicker" | "4hTicker" | "1dTicker" => {
                let price = fields::required_decimal(obj, "c")?;
                let open = fields::decimal(obj, "o")?;
                let change_pct = match fields::decimal(obj, "P")? {
                    Some(pct) => Some(pct),
                    None => computed_change(&price, open.as_deref()),
                };
                Tick {
                    symbol: symbol(obj)?,
                    change_pct,
                    open,
                    bid: fields::decimal(obj, "b")?,
                    ask: fields::decimal(obj, "a")?,
                    volume: fields::decimal(obj, "v")?,
                    price,
                    source: self.source.clone(),
                }
            }
            "24hrMiniTicker" => {
                let price = fields::required_decimal(obj, "c")?;
                let open = fields::decimal(obj, "o")?;
                Tick {
                    symbol: symbol(obj)?,
                    change_pct: computed_change(&price, open.as_deref()),
                    open,
                    volume: fields::decimal(obj, "v")?,
                    price,
                    source: self.source.clone(),
                    ..Tick::default()
                }
            }
            "trade" | "aggTrade" => Tick {
                symbol: symbol(obj)?,
                price: fields::required_decimal(obj, "p")?,
                source: self.source.clone(),
                ..Tick::default()
            },
            event if SKIPPED_EVENTS.contains(&event) => return Ok(()),
            event => {
                return Err(unexpected(format!(
                    "unknown Binance event type {}",
                    fields::quote(event, QUOTE_CHARS)
                )));
            }
        };
        out.push(Incoming {
            ts: now_ms,
            body: Body::Tick(tick),
        });
        Ok(())
    }
}

/// The change percent from a price and an open, when there is an open and
/// the arithmetic works out.
fn computed_change(price: &str, open: Option<&str>) -> Option<String> {
    decimal::change_pct(price, open?)
}

/// A `bookTicker` payload: `{"u":…,"s":…,"b":…,"B":…,"a":…,"A":…}`.
fn is_book_ticker(obj: &Object) -> bool {
    ["u", "s", "b", "a"]
        .iter()
        .all(|key| obj.contains_key(*key))
}

/// The message of an error reply, `{"code":2,"msg":"…","id":1}` or
/// `{"error":{"code":2,"msg":"…"},"id":1}`, if this is one.
fn error_reply(obj: &Object) -> Option<String> {
    let error = match obj.get("error") {
        Some(Value::Object(error)) => error,
        _ => obj,
    };
    let code = error.get("code")?;
    let msg = match error.get("msg")? {
        Value::String(msg) => msg.clone(),
        other => other.to_string(),
    };
    Some(format!("Binance error {code}: {msg}"))
}

/// The symbol `s`: a non-empty string.
fn symbol(obj: &Object) -> Result<String, DecodeError> {
    fields::named_text(obj.get("s"), "the symbol `s`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FeedFormat;
    use crate::feed::testing;

    fn feed(symbols: &[&str], subscribe: &[&str]) -> FeedConfig {
        let url = "wss://stream.binance.com:9443/ws";
        testing::feed("binance", FeedFormat::Binance, url, symbols, subscribe)
    }

    #[track_caller]
    fn check(frame: &str, expected: &str) {
        testing::check_ticks(&feed(&[], &[]), frame, expected);
    }

    const TICKER: &str = r#"{"e":"24hrTicker","E":1700000000123,"s":"BTCUSDT","p":"1012.50000000","P":"1.534","w":"66500.12","x":"65999.99","c":"67012.50000000","Q":"0.012","b":"67012.49000000","B":"1.2","a":"67012.50000000","A":"0.3","o":"66000.00000000","h":"67500.00","l":"65800.00","v":"12345.67800000","q":"820000000.00","O":1699913600000,"C":1700000000000,"F":1,"L":2,"n":2}"#;

    #[test]
    fn ticker_raw_payload() {
        check(
            TICKER,
            "BTCUSDT 67012.50000000 open=66000.00000000 pct=1.534 bid=67012.49000000 ask=67012.50000000 vol=12345.67800000",
        );
    }

    #[test]
    fn ticker_in_combined_stream_envelope() {
        check(
            &format!(r#"{{"stream":"btcusdt@ticker","data":{TICKER}}}"#),
            "BTCUSDT 67012.50000000 open=66000.00000000 pct=1.534 bid=67012.49000000 ask=67012.50000000 vol=12345.67800000",
        );
    }

    #[test]
    fn ticker_without_change_percent_computes_it() {
        check(
            r#"{"e":"24hrTicker","s":"ETHUSDT","c":"3512.34","o":"3500.00"}"#,
            "ETHUSDT 3512.34 open=3500.00 pct=0.35",
        );
        check(
            r#"{"e":"1hTicker","s":"ETHUSDT","c":"3500.00","o":"3512.34","P":"-0.351"}"#,
            "ETHUSDT 3500.00 open=3512.34 pct=-0.351",
        );
    }

    #[test]
    fn mini_ticker_computes_change_percent() {
        check(
            r#"{"e":"24hrMiniTicker","E":1700000000123,"s":"BNBUSDT","c":"578.10","o":"580.40","h":"590.0","l":"570.0","v":"95000.123","q":"55000000.0"}"#,
            "BNBUSDT 578.10 open=580.40 pct=-0.40 vol=95000.123",
        );
        // A zero open gives no percent rather than a division by zero.
        check(
            r#"{"e":"24hrMiniTicker","s":"NEWUSDT","c":"1.00","o":"0.00","v":"0"}"#,
            "NEWUSDT 1.00 open=0.00 vol=0",
        );
    }

    #[test]
    fn array_streams_give_one_tick_per_element() {
        check(
            r#"[{"e":"24hrMiniTicker","s":"BTCUSDT","c":"67000.01","o":"66000.00","v":"1"},{"e":"24hrMiniTicker","s":"ETHUSDT","c":"3500.00","o":"3500.00","v":"2"}]"#,
            "BTCUSDT 67000.01 open=66000.00 pct=1.52 vol=1\nETHUSDT 3500.00 open=3500.00 pct=0.00 vol=2",
        );
        check(
            r#"{"stream":"!miniTicker@arr","data":[{"e":"24hrMiniTicker","s":"SOLUSDT","c":"150.5","o":"150","v":"9"}]}"#,
            "SOLUSDT 150.5 open=150 pct=0.33 vol=9",
        );
        check("[]", "");
    }

    #[test]
    fn trades_have_a_price_only() {
        check(
            r#"{"e":"trade","E":1700000000123,"s":"BTCUSDT","t":12345,"p":"67012.51000000","q":"0.00100000","T":1700000000120,"m":true,"M":true}"#,
            "BTCUSDT 67012.51000000",
        );
        check(
            r#"{"stream":"ethusdt@aggTrade","data":{"e":"aggTrade","s":"ETHUSDT","a":1,"p":"3500.10","q":"2.0","f":1,"l":2,"T":1,"m":false}}"#,
            "ETHUSDT 3500.10",
        );
    }

    #[test]
    fn numbers_are_kept_by_their_exact_text() {
        check(
            r#"{"e":"trade","s":"BTCUSDT","p":67012.50000000000000000001}"#,
            "BTCUSDT 67012.50000000000000000001",
        );
        check(
            r#"{"e":"24hrMiniTicker","s":"X","c":1.10,"o":1,"v":100}"#,
            "X 1.10 open=1 pct=10.00 vol=100",
        );
        check(r#"{"e":"trade","s":"BTCUSDT","p":1e5}"#, "Unexpected");
        check(r#"{"e":"trade","s":"BTCUSDT","p":-1.5E-3}"#, "Unexpected");
    }

    #[test]
    fn missing_optional_fields_are_none() {
        check(
            r#"{"e":"24hrTicker","s":"BTCUSDT","c":"1.5"}"#,
            "BTCUSDT 1.5",
        );
        check(
            r#"{"e":"24hrTicker","s":"BTCUSDT","c":"1.5","b":null,"a":null,"o":null}"#,
            "BTCUSDT 1.5",
        );
    }

    #[test]
    fn replies_and_unhandled_events_are_skipped() {
        check(r#"{"result":null,"id":1}"#, "");
        check(r#"{"result":["btcusdt@ticker"],"id":3}"#, "");
        check(
            r#"{"e":"depthUpdate","E":1,"s":"BNBBTC","U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}"#,
            "",
        );
        check(
            r#"{"e":"kline","E":1,"s":"BNBBTC","k":{"t":1,"T":2,"s":"BNBBTC","i":"1m","o":"0.0010","c":"0.0020"}}"#,
            "",
        );
        check(
            r#"{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#,
            "",
        );
        check(
            r#"{"stream":"bnbbtc@depth5","data":{"lastUpdateId":160,"bids":[],"asks":[]}}"#,
            "",
        );
        check(r#"{"e":"serverShutdown","E":1}"#, "");
    }

    #[test]
    fn error_replies_are_upstream_errors() {
        check(
            r#"{"code":2,"msg":"Invalid request: unknown variant SUBSCRIB","id":1}"#,
            "Upstream: Binance error 2: Invalid request: unknown variant SUBSCRIB",
        );
        check(
            r#"{"error":{"code":0,"msg":"Unknown property"},"id":5}"#,
            "Upstream: Binance error 0: Unknown property",
        );
    }

    #[test]
    fn garbage_is_not_json() {
        for frame in ["", "   ", "hello", "{", r#"{"e":"trade""#, "\u{0}", "[1,]"] {
            check(frame, "NotJson");
        }
    }

    #[test]
    fn wrong_shapes_and_types_are_unexpected() {
        for frame in [
            "null",
            "42",
            r#""24hrTicker""#,
            "true",
            "{}",
            r#"{"id":1}"#,
            r#"{"e":"somethingNew","s":"BTCUSDT"}"#,
            r#"{"e":42}"#,
            r#"{"e":"trade","p":"1.0"}"#,
            r#"{"e":"trade","s":"","p":"1.0"}"#,
            r#"{"e":"trade","s":7,"p":"1.0"}"#,
            r#"{"e":"trade","s":"BTCUSDT"}"#,
            r#"{"e":"trade","s":"BTCUSDT","p":null}"#,
            r#"{"e":"trade","s":"BTCUSDT","p":"abc"}"#,
            r#"{"e":"trade","s":"BTCUSDT","p":""}"#,
            r#"{"e":"trade","s":"BTCUSDT","p":" 1.0"}"#,
            r#"{"e":"trade","s":"BTCUSDT","p":"1."}"#,
            r#"{"e":"trade","s":"BTCUSDT","p":["1.0"]}"#,
            r#"{"e":"trade","s":"BTCUSDT","p":{"value":"1.0"}}"#,
            r#"{"e":"24hrTicker","s":"BTCUSDT","c":"1.0","b":true}"#,
            r#"{"e":"24hrTicker","s":"BTCUSDT","c":"1.0","v":"lots"}"#,
            r#"[1,2,3]"#,
            r#"[[{"e":"trade","s":"BTCUSDT","p":"1.0"}]]"#,
            r#"{"stream":"btcusdt@trade","data":"oops"}"#,
            r#"{"stream":"btcusdt@trade","data":null}"#,
        ] {
            check(frame, "Unexpected");
        }
    }

    #[test]
    fn one_bad_element_fails_the_whole_array() {
        check(
            r#"[{"e":"trade","s":"BTCUSDT","p":"1.0"},{"e":"trade","s":"ETHUSDT","p":"x"}]"#,
            "Unexpected",
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        check(&deep, "NotJson");
    }

    #[test]
    fn subscribe_frames_follow_the_config() {
        let frames = |symbols: &[&str], subscribe: &[&str]| {
            Binance::new(&feed(symbols, subscribe)).subscribe_frames()
        };
        assert_eq!(frames(&[], &[]), Vec::<String>::new());
        assert_eq!(
            frames(&["BTCUSDT", "EthUsdt"], &[]),
            vec![r#"{"method":"SUBSCRIBE","params":["btcusdt@ticker","ethusdt@ticker"],"id":1}"#]
        );
        let custom = r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":7}"#;
        assert_eq!(frames(&["BTCUSDT"], &[custom]), vec![custom]);
    }

    #[test]
    fn source_is_the_feed_name() {
        let mut config = feed(&[], &[]);
        config.name = "binance-2".into();
        let mut decoder = Binance::new(&config);
        let mut out = Vec::new();
        assert_eq!(decoder.decode(TICKER, 5, &mut out), Ok(()));
        assert!(
            matches!(&out[..], [Incoming { ts: 5, body: Body::Tick(t) }] if t.source == "binance-2")
        );
    }
}
