//! The hub's last-known state: the latest tick per symbol, the latest news
//! and alerts, the latest status per feed and of the clock, each with the
//! bytes it was sent as.
//!
//! It answers `snapshot` (and the snapshot after a `reset`) from those
//! cached frames, resyncs a board that lost events, and tells the journal
//! which snapshot-tree keys an event replaces, so the journal's snapshot
//! matches it. Bounded: [`MAX_SYMBOLS`] ticks, [`SNAPSHOT_NEWS`] news,
//! [`SNAPSHOT_ALERTS`] alerts. It does no I/O and reads no clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use async_tungstenite::tungstenite::Utf8Bytes;
use serde_json::Value;

use crate::clock;
use crate::event::{Body, Event, alert_ttl};
use crate::protocol::Sub;

/// The snapshot keeps this many recent news items (docs/protocol.md §11).
pub const SNAPSHOT_NEWS: usize = 20;

/// The snapshot keeps at most this many recent alerts.
pub const SNAPSHOT_ALERTS: usize = 20;

/// The last-known state holds at most this many symbols. A real board has
/// dozens; Binance's `!ticker@arr` has ~2,000. Ticks for further symbols are
/// refused (counted as bad messages), so an upstream inventing symbols cannot
/// grow the hub without bound.
pub const MAX_SYMBOLS: usize = 4096;

/// The latest events per key, as serialized frames.
#[derive(Default)]
pub(super) struct LastKnown {
    /// Latest tick per symbol, in first-seen order.
    ticks: Vec<(Arc<str>, Event, Utf8Bytes)>,
    tick_index: HashMap<Arc<str>, usize>,
    news: VecDeque<(Event, Utf8Bytes)>,
    alerts: VecDeque<(Event, Utf8Bytes, Instant)>,
    /// Latest status event per feed index.
    status: Vec<Option<(Event, Utf8Bytes)>>,
    /// Latest clock status event.
    clock: Option<(Event, Utf8Bytes)>,
}

impl LastKnown {
    /// An empty state for `feeds` feeds.
    pub(super) fn new(feeds: usize) -> LastKnown {
        LastKnown {
            status: vec![None; feeds],
            ..LastKnown::default()
        }
    }

    /// Whether a tick for `symbol` fits: it is known, or there is room for
    /// one more symbol.
    pub(super) fn has_room_for(&self, symbol: &str) -> bool {
        self.ticks.len() < MAX_SYMBOLS || self.tick_index.contains_key(symbol)
    }

    /// The shared key for a symbol, reusing the last-known map's allocation.
    pub(super) fn symbol_key(&self, symbol: &str) -> Arc<str> {
        match self.tick_index.get_key_value(symbol) {
            Some((key, _)) => key.clone(),
            None => Arc::from(symbol),
        }
    }

    /// Remembers `event` (`status_slot` is its feed's index for a status
    /// event); returns the journal snapshot key this
    /// event becomes the value of, and the key that fell out, if any.
    pub(super) fn remember(
        &mut self,
        event: Event,
        text: Utf8Bytes,
        key: Option<Arc<str>>,
        status_slot: Option<usize>,
        now: Instant,
    ) -> (Option<Box<str>>, Option<Box<str>>) {
        let last = self;
        let seq = event.seq;
        match &event.body {
            Body::Tick(_) => {
                let Some(key) = key else {
                    return (None, None);
                };
                let put = format!("tick:{key}").into();
                match last.tick_index.get(&key) {
                    Some(&i) => last.ticks[i] = (key, event, text),
                    None => {
                        last.tick_index.insert(key.clone(), last.ticks.len());
                        last.ticks.push((key, event, text));
                    }
                }
                (Some(put), None)
            }
            Body::News(_) => {
                let mut removed = None;
                if last.news.len() == SNAPSHOT_NEWS {
                    removed = last
                        .news
                        .pop_front()
                        .map(|(old, _)| snapshot_key("news", old.seq));
                }
                last.news.push_back((event, text));
                (Some(snapshot_key("news", seq)), removed)
            }
            Body::Alert(_) => {
                let mut removed = None;
                if last.alerts.len() == SNAPSHOT_ALERTS {
                    removed = last
                        .alerts
                        .pop_front()
                        .map(|(old, _, _)| snapshot_key("alert", old.seq));
                }
                last.alerts.push_back((event, text, now));
                (Some(snapshot_key("alert", seq)), removed)
            }
            Body::Status(s) => {
                let put = format!("status:{}", s.feed).into();
                if let Some(i) = status_slot
                    && let Some(slot) = last.status.get_mut(i)
                {
                    *slot = Some((event, text));
                }
                (Some(put), None)
            }
            Body::Clock(_) => {
                // Not `status:…`: a feed may be called `clock`.
                last.clock = Some((event, text));
                (Some("clock".into()), None)
            }
        }
    }

    /// `{"type":"snapshot","seq":N,"events":[..]}` built from the cached
    /// frames, in seq order within each family, leaving out the events
    /// `hidden` names by seq (publishes not yet durable).
    pub(super) fn snapshot_json(
        &self,
        channels: &[Sub],
        last_seq: u64,
        id: &Option<Value>,
        now: Instant,
        hidden: &dyn Fn(u64) -> bool,
    ) -> String {
        let wanted = |event: &Event| {
            (channels.is_empty() || channels.iter().any(|s| s.matches(&event.body)))
                && !hidden(event.seq)
        };
        let mut out = format!("{{\"type\":\"snapshot\",\"seq\":{},\"events\":[", last_seq);
        let mut first = true;
        let mut add = |event: &Event, text: &Utf8Bytes| {
            if wanted(event) {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(text);
            }
        };
        for (_, event, text) in &self.ticks {
            add(event, text);
        }
        for (event, text) in &self.news {
            add(event, text);
        }
        for (event, text, at) in &self.alerts {
            if let Body::Alert(alert) = &event.body
                && clock::age(*at, now) < alert_ttl(alert, event.ts)
            {
                add(event, text);
            }
        }
        for (event, text) in self.status.iter().flatten().chain(&self.clock) {
            add(event, text);
        }
        out.push(']');
        if let Some(id) = id {
            out.push_str(",\"id\":");
            out.push_str(&id.to_string());
        }
        out.push('}');
        out
    }

    /// Every remembered event, for a board that lost some: statuses, then
    /// ticks, news and alerts, each family oldest first.
    pub(super) fn events(&self) -> Vec<Event> {
        let status = self
            .status
            .iter()
            .flatten()
            .chain(&self.clock)
            .map(|(e, _)| e);
        let ticks = self.ticks.iter().map(|(_, e, _)| e);
        let news = self.news.iter().map(|(e, _)| e);
        let alerts = self.alerts.iter().map(|(e, _, _)| e);
        status
            .chain(ticks)
            .chain(news)
            .chain(alerts)
            .cloned()
            .collect()
    }
}

/// Snapshot-tree key of a news item or alert: zero-padded so keys sort by seq.
fn snapshot_key(kind: &str, seq: u64) -> Box<str> {
    format!("{kind}:{seq:020}").into()
}
