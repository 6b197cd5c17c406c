//! Any JSON feed, its fields picked with RFC 6901 JSON pointers from the
//! config (`[feed.pointers]`, see [`JsonPointers`]).
//!
//! A message holds records. With an `items` pointer, the value there is an
//! array of records or one record (`null` there means no records); without
//! one, the message itself is the record, or a list of records when it is a
//! top-level array. In each record:
//!
//! - the symbol is the string at `symbol`, or, without that pointer, the one
//!   entry of the feed's `symbols`; when `symbols` is set, records for other
//!   symbols are skipped silently;
//! - the price is required; `open`, `change_pct`, `bid`, `ask` and `volume`
//!   are optional: missing or `null` is `None`, any other non-decimal is an
//!   error;
//! - values are kept byte for byte: a JSON string that is a plain decimal as
//!   is, a JSON number by its exact text (serde_json's `arbitrary_precision`)
//!   when that is a plain decimal, so `1e5`, `"1,5"` and `""` are rejected;
//! - without a `change_pct` value, the change is computed from the price and
//!   the open when there is an open.
//!
//! A message is decoded whole or not at all: on an error nothing is appended
//! to `out`. This module does no I/O and reads no clock.

use serde_json::Value;

use crate::config::{FeedConfig, JsonPointers};
use crate::decimal;
use crate::event::{Body, Incoming, Tick};
use crate::feed::DecodeError;
use crate::feed::fields::{self, unexpected};

/// How much of a pointer an error message quotes, in characters.
const QUOTE_CHARS: usize = 60;

/// Decoder state for one `json` feed.
#[derive(Debug)]
pub struct Json {
    /// The feed's name: every tick's `source`.
    source: String,
    /// Symbols to keep; empty keeps every symbol.
    symbols: Vec<String>,
    /// Frames to send after connecting, as configured.
    subscribe: Vec<String>,
    /// Where the fields are.
    pointers: JsonPointers,
}

impl Json {
    /// A decoder for the feed `feed` (format `json`).
    pub fn new(feed: &FeedConfig) -> Self {
        Json {
            source: feed.name.clone(),
            symbols: feed.symbols.clone(),
            subscribe: feed.subscribe.clone(),
            pointers: feed.pointers.clone(),
        }
    }

    /// Frames to send after each (re)connect: the feed's `subscribe` frames,
    /// as configured.
    pub fn subscribe_frames(&self) -> Vec<String> {
        self.subscribe.clone()
    }

    /// Turns one text message into zero or more ticks appended to `out`, each
    /// stamped `now_ms`. On an error, `out` is left as it was.
    pub fn decode(
        &mut self,
        text: &str,
        now_ms: u64,
        out: &mut Vec<Incoming>,
    ) -> Result<(), DecodeError> {
        self.decode_as(text, None, now_ms, out)
    }

    /// Like [`Json::decode`], with `symbol` (when given) as every record's
    /// symbol in place of the `symbol` pointer: an `mqtt` feed's
    /// `symbol = "topic:N"` takes it from the message's topic.
    pub fn decode_as(
        &mut self,
        text: &str,
        symbol: Option<&str>,
        now_ms: u64,
        out: &mut Vec<Incoming>,
    ) -> Result<(), DecodeError> {
        let value = fields::parse(text)?;
        fields::whole(out, |out| self.records(&value, symbol, now_ms, out))
    }

    /// Every record of one message.
    fn records(
        &self,
        value: &Value,
        symbol: Option<&str>,
        now_ms: u64,
        out: &mut Vec<Incoming>,
    ) -> Result<(), DecodeError> {
        let records = match &self.pointers.items {
            Some(items) => match value.pointer(items) {
                Some(Value::Null) => return Ok(()),
                Some(records) => records,
                None => {
                    return Err(unexpected(format!(
                        "nothing at the items pointer {}",
                        quote(items)
                    )));
                }
            },
            None => value,
        };
        match records {
            Value::Array(records) => {
                for record in records {
                    self.record(record, symbol, now_ms, out)?;
                }
                Ok(())
            }
            record => self.record(record, symbol, now_ms, out),
        }
    }

    /// One record: a tick, or nothing when its symbol is not kept.
    fn record(
        &self,
        record: &Value,
        given: Option<&str>,
        now_ms: u64,
        out: &mut Vec<Incoming>,
    ) -> Result<(), DecodeError> {
        let symbol = match (given, &self.pointers.symbol, self.symbols.as_slice()) {
            (Some(given), _, _) => given.to_owned(),
            (None, Some(pointer), _) => match record.pointer(pointer) {
                Some(Value::String(symbol)) if !symbol.is_empty() => symbol.clone(),
                Some(_) => {
                    return Err(unexpected(format!(
                        "the symbol at {} is not a non-empty string",
                        quote(pointer)
                    )));
                }
                None => return Err(unexpected(format!("no symbol at {}", quote(pointer)))),
            },
            (None, None, [only]) => only.clone(),
            (None, None, _) => {
                return Err(unexpected(
                    "no symbol pointer configured, and `symbols` does not name exactly one symbol",
                ));
            }
        };
        if !self.symbols.is_empty() && !self.symbols.contains(&symbol) {
            return Ok(());
        }
        let p = &self.pointers;
        let Some(price_pointer) = &p.price else {
            return Err(unexpected("no price pointer configured"));
        };
        let price = field(record, "price", Some(price_pointer.as_str()))?
            .ok_or_else(|| unexpected(format!("no price at {}", quote(price_pointer))))?;
        let open = field(record, "open", p.open.as_deref())?;
        let change_pct = match field(record, "change_pct", p.change_pct.as_deref())? {
            Some(pct) => Some(pct),
            None => open
                .as_deref()
                .and_then(|open| decimal::change_pct(&price, open)),
        };
        let tick = Tick {
            symbol,
            change_pct,
            open,
            bid: field(record, "bid", p.bid.as_deref())?,
            ask: field(record, "ask", p.ask.as_deref())?,
            volume: field(record, "volume", p.volume.as_deref())?,
            price,
            source: self.source.clone(),
        };
        out.push(Incoming {
            ts: now_ms,
            body: Body::Tick(tick),
        });
        Ok(())
    }
}

/// The decimal text at `pointer` in `record`: `None` when there is no
/// pointer, or nothing or `null` at it; an error when the value there is not
/// a decimal string or number.
fn field(record: &Value, name: &str, pointer: Option<&str>) -> Result<Option<String>, DecodeError> {
    let Some(pointer) = pointer else {
        return Ok(None);
    };
    fields::optional(record.pointer(pointer), decimal::from_json, || {
        unexpected(format!("the {name} at {} is not a decimal", quote(pointer)))
    })
}

/// A pointer for an error message, cut short if it is long.
fn quote(pointer: &str) -> String {
    fields::quote(pointer, QUOTE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FeedFormat;
    use crate::feed::testing;
    use crate::feed::testing::check_ticks as check;

    /// A feed from `symbols` and `pointers` given as `key=pointer` pairs.
    fn feed(symbols: &[&str], pointers: &[(&str, &str)]) -> FeedConfig {
        let mut p = JsonPointers::default();
        for &(key, pointer) in pointers {
            let slot = match key {
                "items" => &mut p.items,
                "symbol" => &mut p.symbol,
                "price" => &mut p.price,
                "open" => &mut p.open,
                "change_pct" => &mut p.change_pct,
                "bid" => &mut p.bid,
                "ask" => &mut p.ask,
                "volume" => &mut p.volume,
                other => panic!("no pointer {other}"),
            };
            *slot = Some(pointer.to_owned());
        }
        let url = "wss://rates.example/ws";
        let subscribe = [r#"{"action":"subscribe"}"#];
        FeedConfig {
            pointers: p,
            ..testing::feed("rates", FeedFormat::Json, url, symbols, &subscribe)
        }
    }

    /// An exchange office's rate list: an array under `/data/rates`, buy and
    /// sell as strings, numbers, or missing.
    fn office() -> FeedConfig {
        feed(
            &[],
            &[
                ("items", "/data/rates"),
                ("symbol", "/code"),
                ("price", "/mid"),
                ("bid", "/buy"),
                ("ask", "/sell"),
            ],
        )
    }

    #[test]
    fn records_under_an_items_pointer() {
        check(
            &office(),
            r#"{"data":{"rates":[{"code":"USD","mid":"61250.5","buy":"61000","sell":"61500"},{"code":"EUR","mid":66500.25,"buy":66000,"sell":67000.50}]}}"#,
            "USD 61250.5 bid=61000 ask=61500\nEUR 66500.25 bid=66000 ask=67000.50",
        );
        // One object at the items pointer is one record.
        check(
            &office(),
            r#"{"data":{"rates":{"code":"GBP","mid":"77000"}}}"#,
            "GBP 77000",
        );
        check(&office(), r#"{"data":{"rates":[]}}"#, "");
        check(&office(), r#"{"data":{"rates":null}}"#, "");
    }

    #[test]
    fn the_message_itself_or_a_top_level_array() {
        let feed = feed(
            &[],
            &[
                ("symbol", "/s"),
                ("price", "/p"),
                ("open", "/o"),
                ("volume", "/v"),
            ],
        );
        check(
            &feed,
            r#"{"s":"XAUUSD","p":"2351.20","o":"2350.00","v":"1200"}"#,
            "XAUUSD 2351.20 open=2350.00 pct=0.05 vol=1200",
        );
        check(
            &feed,
            r#"[{"s":"XAUUSD","p":"2351.20"},{"s":"XAGUSD","p":"28.015","o":"28.000"}]"#,
            "XAUUSD 2351.20\nXAGUSD 28.015 open=28.000 pct=0.05",
        );
    }

    #[test]
    fn records_may_be_arrays_addressed_by_index() {
        let feed = feed(
            &[],
            &[("items", "/rows"), ("symbol", "/0"), ("price", "/1")],
        );
        check(
            &feed,
            r#"{"rows":[["EURUSD","1.08512"],["USDJPY",151.503]]}"#,
            "EURUSD 1.08512\nUSDJPY 151.503",
        );
    }

    #[test]
    fn one_configured_symbol_needs_no_symbol_pointer() {
        let feed = feed(&["XAUUSD"], &[("price", "/last"), ("change_pct", "/chg")]);
        check(
            &feed,
            r#"{"last":"2351.20","chg":"0.05"}"#,
            "XAUUSD 2351.20 pct=0.05",
        );
    }

    #[test]
    fn only_configured_symbols_are_kept() {
        let mut feed = office();
        feed.symbols = vec!["USD".into(), "EUR".into()];
        check(
            &feed,
            // The skipped record would be an error if it were kept.
            r#"{"data":{"rates":[{"code":"TRY","mid":"bad"},{"code":"EUR","mid":"66500"},{"code":"USD","mid":"61250"}]}}"#,
            "EUR 66500\nUSD 61250",
        );
    }

    #[test]
    fn change_pct_from_its_pointer_or_computed() {
        let feed = feed(
            &[],
            &[
                ("symbol", "/s"),
                ("price", "/p"),
                ("open", "/o"),
                ("change_pct", "/pct"),
            ],
        );
        check(
            &feed,
            r#"{"s":"A","p":"101","o":"100","pct":"1.000"}"#,
            "A 101 open=100 pct=1.000",
        );
        check(
            &feed,
            r#"{"s":"A","p":"101","o":"100","pct":null}"#,
            "A 101 open=100 pct=1.00",
        );
        check(&feed, r#"{"s":"A","p":"101"}"#, "A 101");
        check(&feed, r#"{"s":"A","p":"101","o":"0"}"#, "A 101 open=0");
    }

    #[test]
    fn values_are_kept_byte_for_byte() {
        let feed = feed(&[], &[("symbol", "/s"), ("price", "/p")]);
        check(
            &feed,
            r#"{"s":"BTC","p":"67012.500000000000000000000001"}"#,
            "BTC 67012.500000000000000000000001",
        );
        check(
            &feed,
            r#"{"s":"BTC","p":67012.500000000000000000000001}"#,
            "BTC 67012.500000000000000000000001",
        );
        check(&feed, r#"{"s":"BTC","p":-0.000}"#, "BTC -0.000");
    }

    #[test]
    fn pointers_with_escapes() {
        let feed = feed(&[], &[("symbol", "/a~1b"), ("price", "/m~0n")]);
        check(&feed, r#"{"a/b":"X","m~n":"1.5"}"#, "X 1.5");
    }

    #[test]
    fn garbage_is_not_json() {
        for frame in ["", "rates", "{", "[1,", r#"{"s":"X","p":1.5,}"#, "NaN"] {
            check(&office(), frame, "NotJson");
        }
    }

    #[test]
    fn wrong_shapes_and_types_are_unexpected() {
        let o = office();
        for frame in [
            "null",
            "42",
            "{}",
            r#"{"data":{}}"#,
            r#"{"data":{"rates":"none"}}"#,
            r#"{"data":{"rates":[{"mid":"1"}]}}"#,
            r#"{"data":{"rates":[{"code":"","mid":"1"}]}}"#,
            r#"{"data":{"rates":[{"code":840,"mid":"1"}]}}"#,
            r#"{"data":{"rates":[{"code":"USD"}]}}"#,
            r#"{"data":{"rates":[{"code":"USD","mid":null}]}}"#,
            r#"{"data":{"rates":[{"code":"USD","mid":""}]}}"#,
            r#"{"data":{"rates":[{"code":"USD","mid":"abc"}]}}"#,
            r#"{"data":{"rates":[{"code":"USD","mid":"1e5"}]}}"#,
            r#"{"data":{"rates":[{"code":"USD","mid":1e5}]}}"#,
            r#"{"data":{"rates":[{"code":"USD","mid":"+1"}]}}"#,
            r#"{"data":{"rates":[{"code":"USD","mid":"1 000"}]}}"#,
            r#"{"data":{"rates":[{"code":"USD","mid":[1]}]}}"#,
            r#"{"data":{"rates":[{"code":"USD","mid":{"v":1}}]}}"#,
            r#"{"data":{"rates":[{"code":"USD","mid":true}]}}"#,
            r#"{"data":{"rates":[{"code":"USD","mid":"1","buy":"n/a"}]}}"#,
            r#"{"data":{"rates":[{"code":"USD","mid":"1","sell":false}]}}"#,
            r#"{"data":{"rates":[{"code":"USD","mid":"1"},{"code":"EUR","mid":"x"}]}}"#,
            r#"{"data":{"rates":[1,2]}}"#,
        ] {
            check(&o, frame, "Unexpected");
        }
    }

    #[test]
    fn missing_configuration_is_unexpected_not_a_panic() {
        check(&feed(&[], &[("price", "/p")]), r#"{"p":"1"}"#, "Unexpected");
        check(
            &feed(&["A", "B"], &[("price", "/p")]),
            r#"{"p":"1"}"#,
            "Unexpected",
        );
        check(
            &feed(&[], &[("symbol", "/s")]),
            r#"{"s":"A"}"#,
            "Unexpected",
        );
        // Not a valid pointer (no leading slash) matches nothing.
        check(
            &feed(&[], &[("symbol", "s"), ("price", "/p")]),
            r#"{"s":"A","p":"1"}"#,
            "Unexpected",
        );
    }

    #[test]
    fn subscribe_frames_are_the_configured_ones() {
        assert_eq!(
            Json::new(&office()).subscribe_frames(),
            vec![r#"{"action":"subscribe"}"#]
        );
    }
}
