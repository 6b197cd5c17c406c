//! Upstream feeds: one decoder per format, and `task`, the loop per feed
//! that connects, subscribes, decodes and hands events to the hub.
//!
//! Each format has its own module that knows that format's JSON and nothing
//! else (`binance` is the only place that knows Binance's field names). The
//! decoders are pure: text in, events out, no I/O and no clock reads. Only
//! `task` does I/O and knows the hub; it sits above the hub in the layering
//! (ARCHITECTURE.md, Layers), while the rest of `feed` sits below it.

pub(crate) mod backoff;
pub(crate) mod binance;
pub(crate) mod coinbase;
pub(crate) mod demo;
pub(crate) mod fields;
pub(crate) mod json;
pub(crate) mod keepalive;
pub(crate) mod mqtt;
pub(crate) mod tablo;
pub(crate) mod task;
#[cfg(test)]
pub(crate) mod testing;

use std::fmt;

use crate::config::{FeedConfig, FeedFormat};
use crate::event::Incoming;

/// Why one upstream message could not be turned into events. The feed stays
/// up; the message is counted and skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The text is not JSON at all.
    NotJson(String),
    /// Valid JSON, but not a shape this format knows or a required field is
    /// missing or of the wrong type.
    Unexpected(String),
    /// The upstream itself reported an error (e.g. a rejected subscription).
    Upstream(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotJson(why) => write!(f, "not JSON: {why}"),
            DecodeError::Unexpected(why) => write!(f, "unexpected message: {why}"),
            DecodeError::Upstream(why) => write!(f, "upstream reported an error: {why}"),
        }
    }
}

/// A network feed's decoder, one variant per format.
#[derive(Debug)]
pub enum Decoder {
    /// Binance spot streams.
    Binance(binance::Binance),
    /// Coinbase Exchange ticker channel.
    Coinbase(coinbase::Coinbase),
    /// Another Tablo.
    Tablo(tablo::Tablo),
    /// Any JSON feed.
    Json(json::Json),
}

impl Decoder {
    /// The decoder for a WebSocket feed; `None` for `demo`, which has no
    /// network, and `mqtt`, whose messages come with a topic
    /// (`mqtt::Mqtt`).
    pub fn new(feed: &FeedConfig) -> Option<Decoder> {
        Some(match feed.format {
            FeedFormat::Binance => Decoder::Binance(binance::Binance::new(feed)),
            FeedFormat::Coinbase => Decoder::Coinbase(coinbase::Coinbase::new(feed)),
            FeedFormat::Tablo => Decoder::Tablo(tablo::Tablo::new(feed)),
            FeedFormat::Json => Decoder::Json(json::Json::new(feed)),
            FeedFormat::Demo | FeedFormat::Mqtt => return None,
        })
    }

    /// A chained feed's resume position, when it has one.
    pub fn position(&self) -> Option<crate::event::Position> {
        match self {
            Decoder::Tablo(d) => d.position(),
            _ => None,
        }
    }

    /// Text frames to send right after each (re)connect.
    pub fn subscribe_frames(&self) -> Vec<String> {
        match self {
            Decoder::Binance(d) => d.subscribe_frames(),
            Decoder::Coinbase(d) => d.subscribe_frames(),
            Decoder::Tablo(d) => d.subscribe_frames(),
            Decoder::Json(d) => d.subscribe_frames(),
        }
    }

    /// Turns one text message into zero or more events appended to `out`.
    /// `now_ms` is the receive time, used as the events' `ts`.
    pub fn decode(
        &mut self,
        text: &str,
        now_ms: u64,
        out: &mut Vec<Incoming>,
    ) -> Result<(), DecodeError> {
        match self {
            Decoder::Binance(d) => d.decode(text, now_ms, out),
            Decoder::Coinbase(d) => d.decode(text, now_ms, out),
            Decoder::Tablo(d) => d.decode(text, now_ms, out),
            Decoder::Json(d) => d.decode(text, now_ms, out),
        }
    }
}

/// The frames a feed that subscribes by symbol sends after each (re)connect:
/// its `subscribe` frames as configured when there are any; else, when it
/// names `symbols`, the one frame `ours` makes of them; else none.
pub(crate) fn subscribe_by_symbol(
    subscribe: &[String],
    symbols: &[String],
    ours: impl FnOnce(&[String]) -> String,
) -> Vec<String> {
    if !subscribe.is_empty() {
        return subscribe.to_vec();
    }
    if symbols.is_empty() {
        return Vec::new();
    }
    vec![ours(symbols)]
}
