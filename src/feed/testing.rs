//! Scaffolding for the decoders' tests: feed configs, and one `check_ticks` that
//! feeds a frame in and compares what came out, as text, with what was
//! expected.
//!
//! Test-only; it knows no format, and each decoder's tests keep their own
//! frames and expectations.

use std::fmt::Write as _;

use crate::config::{FeedConfig, FeedFormat, JsonPointers};
use crate::event::{Body, Incoming, Tick};
use crate::feed::{DecodeError, Decoder};

/// The receive time the decoders' tests pass in.
pub(crate) const NOW: u64 = 1_700_000_000_000;

/// A feed `name` of `format` at `url`, with `symbols` and `subscribe`
/// frames, and no channels or pointers.
pub(crate) fn feed(
    name: &str,
    format: FeedFormat,
    url: &str,
    symbols: &[&str],
    subscribe: &[&str],
) -> FeedConfig {
    FeedConfig {
        name: name.into(),
        format,
        url: url.into(),
        symbols: strings(symbols),
        subscribe: strings(subscribe),
        channels: Vec::new(),
        pointers: JsonPointers::default(),
        mqtt: Default::default(),
    }
}

/// Owned copies of `items`.
pub(crate) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Decodes `frame` with a fresh decoder for `feed`, received at `now`, and
/// checks that what came out is `expected`: an error as its variant (and an
/// upstream's message), else one `line` per event, joined by newlines. An
/// error must leave the output empty.
#[track_caller]
pub(crate) fn check_with(
    feed: &FeedConfig,
    now: u64,
    line: impl Fn(&Incoming) -> String,
    frame: &str,
    expected: &str,
) {
    let mut decoder = Decoder::new(feed).expect("a network feed");
    let mut out = Vec::new();
    let result = decoder.decode(frame, now, &mut out);
    let failed = result.is_err();
    let shown = match result {
        Err(DecodeError::NotJson(_)) => "NotJson".into(),
        Err(DecodeError::Unexpected(_)) => "Unexpected".into(),
        Err(DecodeError::Upstream(why)) => format!("Upstream: {why}"),
        Ok(()) => out.iter().map(line).collect::<Vec<_>>().join("\n"),
    };
    assert_eq!(shown, expected, "frame: {frame}");
    if failed {
        assert!(out.is_empty(), "an error must leave `out` as it was");
    }
}

/// [`check_with`] for a feed of ticks: every event must be a tick stamped
/// [`NOW`] from the feed's name, shown as its [`tick_line`].
#[track_caller]
pub(crate) fn check_ticks(feed: &FeedConfig, frame: &str, expected: &str) {
    let line = |event: &Incoming| {
        assert_eq!(event.ts, NOW);
        let Body::Tick(t) = &event.body else {
            panic!("not a tick: {event:?}");
        };
        assert_eq!(t.source, feed.name);
        tick_line(t)
    };
    check_with(feed, NOW, line, frame, expected);
}

/// A tick as `SYMBOL PRICE` and the optional fields that are set:
/// `open=…`, `pct=…`, `bid=…`, `ask=…`, `vol=…`.
pub(crate) fn tick_line(t: &Tick) -> String {
    let mut line = format!("{} {}", t.symbol, t.price);
    for (key, value) in [
        ("open", &t.open),
        ("pct", &t.change_pct),
        ("bid", &t.bid),
        ("ask", &t.ask),
        ("vol", &t.volume),
    ] {
        if let Some(value) = value {
            let _ = write!(line, " {key}={value}");
        }
    }
    line
}
