//! What the hub tells about itself: `stats` replies, `/healthz` and
//! `/metrics`, all read from the hub's own state and counters at the moment
//! they are asked for.
//!
//! Nothing here changes the hub's state or waits; it only formats.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use super::{Hub, MAX_USERS_LISTED};
use crate::clock;
use crate::event::{Channel, FeedState};
use crate::journal::forward;
use crate::metrics::{Kind, MetricsText};

/// What `/healthz` reports.
#[derive(Clone, Debug)]
pub struct HealthReport {
    /// Whether the journal can be written (always true until the journal
    /// lands; then false makes `/healthz` answer 503).
    pub journal_ok: bool,
    /// The JSON body.
    pub body: String,
    /// Each feed's name and state, in config order (for systemd's
    /// `STATUS=`).
    pub feeds: Vec<(String, FeedState)>,
}

impl Hub {
    /// Each feed as `stats` and `/healthz` list it.
    fn upstreams_json(&self, now: Instant) -> Value {
        self.upstreams
            .iter()
            .map(|u| {
                json!({
                    "name": u.name,
                    "format": u.format,
                    "state": u.state.name(),
                    "last_event_ms_ago": u.last_event.map(|t| clock::age_ms(t, now)),
                    "reconnects": u.reconnects,
                    "problem": u.problem,
                })
            })
            .collect()
    }

    /// The journal's figures; without a journal (unit tests, benches), what
    /// this run numbered.
    fn journal_json(&self) -> Value {
        if let Some(journal) = &self.journal {
            return journal.status.to_json();
        }
        json!({
            "events": self.last_seq().saturating_sub(self.first_seq.unwrap_or(1).saturating_sub(1)),
            "bytes": self.event_bytes,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq(),
        })
    }

    /// `{"state","wall_ms","ts_ahead_ms"}`: the wall clock's state as last
    /// checked (`null` before the first check), the wall clock as of the
    /// last message, and how far event `ts` labels run ahead of it because
    /// the clock stepped back (docs/protocol.md §6.2).
    fn clock_json(&self, now: Instant) -> Value {
        json!({
            "state": self.clock.map(|c| c.name()),
            "wall_ms": self.now_ms,
            "ts_ahead_ms": self.stamps.ahead_of(self.now_ms, now),
        })
    }

    /// The `stats` reply, without its `id`.
    pub(super) fn stats_json(&self, now: Instant) -> Value {
        let kinds: serde_json::Map<String, Value> = self
            .kinds
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (k.to_string(), json!(n)))
            .collect();
        let users: serde_json::Map<String, Value> = self
            .users
            .iter()
            .take(MAX_USERS_LISTED)
            .map(|(u, n)| (u.to_string(), json!(n)))
            .collect();
        json!({
            "type": "stats",
            "connections": self.clients.len(),
            "sessions_total": self.counters.sessions_total,
            "client_types": kinds,
            "users": self.users.len(),
            "user_connections": users,
            "upstreams": self.upstreams_json(now),
            "journal": self.journal_json(),
            "clock": self.clock_json(now),
            "screen": self.board.as_ref().map(|b| b.screen().to_json(now)),
            "uptime_s": clock::age(self.started, now).as_secs(),
        })
    }

    /// `/healthz`: degraded while a feed is not up or the journal has a
    /// problem.
    pub(super) fn health(&self, now: Instant) -> HealthReport {
        let all_up = self.upstreams.iter().all(|u| u.state == FeedState::Up);
        let problem = self.journal.as_ref().and_then(|j| j.status.problem());
        let body = json!({
            "status": if all_up && problem.is_none() { "ok" } else { "degraded" },
            "reason": problem,
            "feeds": self.upstreams_json(now),
            "journal": self.journal_json(),
            "forward": self.journal.as_ref().map(|j| forward::to_json(&j.status.forward)),
            "clock": self.clock_json(now),
            "screen": self.board.as_ref().map(|b| b.screen().to_json(now)),
            "clients": self.clients.len(),
        });
        HealthReport {
            journal_ok: problem.is_none(),
            body: body.to_string(),
            feeds: self
                .upstreams
                .iter()
                .map(|u| (u.name.clone(), u.state))
                .collect(),
        }
    }

    /// `/metrics`: the relay's, the journal's and the board's (the server
    /// adds the process's, which come from `/proc`).
    pub(super) fn metrics(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut text = MetricsText::new(&mut out);
        let c = &self.counters;
        text.family(
            "build_info",
            Kind::Gauge,
            "Always 1; labelled with the version of tablo that runs.",
        )
        .row(&[("version", env!("CARGO_PKG_VERSION"))], 1);
        text.single(
            "clients",
            Kind::Gauge,
            "Connected WebSocket clients.",
            self.clients.len(),
        );
        text.single(
            "users",
            Kind::Gauge,
            "Distinct JWT subs with a connection open.",
            self.users.len(),
        );
        text.single(
            "sessions_total",
            Kind::Counter,
            "WebSocket sessions since start.",
            c.sessions_total,
        );
        let per_channel = [
            (
                "events_in_total",
                "Events numbered by the hub, per channel.",
                &c.events_in,
            ),
            (
                "frames_out_total",
                "Event frames queued to clients, per channel.",
                &c.frames_out,
            ),
        ];
        for (name, help, values) in per_channel {
            let mut family = text.family(name, Kind::Counter, help);
            for channel in Channel::ALL {
                family.row(&[("channel", channel.name())], values[channel.index()]);
            }
        }
        let relay = [
            (
                "conflations_total",
                "Queued ticks replaced by a newer tick for a slow client.",
                c.conflations,
            ),
            (
                "drops_total",
                "Frames dropped because their client was closing or overflowed.",
                c.dropped_frames,
            ),
            (
                "slow_client_closes_total",
                "Clients closed with 1013 for falling behind.",
                c.overflow_closes,
            ),
        ];
        for (name, help, value) in relay {
            text.single(name, Kind::Counter, help, value);
        }
        if let Some(state) = self.clock {
            text.single(
                "clock_synchronized",
                Kind::Gauge,
                "1 when the wall clock is synchronized, 0 when it is not known to be.",
                u64::from(state == crate::clock::ClockState::Synchronized),
            );
        }
        type PerFeed = fn(&super::FeedEntry) -> u64;
        let per_feed: [(&str, Kind, &str, PerFeed); 4] = [
            (
                "feed_up",
                Kind::Gauge,
                "1 when the feed is connected.",
                |u| u64::from(u.state == FeedState::Up),
            ),
            (
                "feed_reconnects_total",
                Kind::Counter,
                "Reconnect attempts per feed.",
                |u| u.reconnects,
            ),
            (
                "feed_events_total",
                Kind::Counter,
                "Events decoded per feed.",
                |u| u.events,
            ),
            (
                "feed_bad_messages_total",
                Kind::Counter,
                "Upstream messages that could not be decoded, per feed.",
                |u| u.bad_messages,
            ),
        ];
        for (name, kind, help, value) in per_feed {
            let mut family = text.family(name, kind, help);
            for feed in &self.upstreams {
                family.row(&[("feed", &feed.name)], value(feed));
            }
        }
        text.single(
            "refused_symbols_total",
            Kind::Counter,
            "Ticks refused for a malformed symbol or past MAX_SYMBOLS.",
            c.refused_symbols,
        );
        if let Some(journal) = &self.journal {
            let j = &journal.status;
            let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
            let rows = [
                (
                    "journal_events",
                    Kind::Gauge,
                    "Events held in the journal.",
                    load(&j.events),
                ),
                (
                    "journal_bytes",
                    Kind::Gauge,
                    "Bytes of event JSON held in the journal.",
                    load(&j.bytes),
                ),
                (
                    "journal_disk_bytes",
                    Kind::Gauge,
                    "The journal's size on disk.",
                    load(&j.disk_bytes),
                ),
                (
                    "journal_durable_seq",
                    Kind::Gauge,
                    "Highest seq on stable storage.",
                    load(&j.durable_seq),
                ),
                (
                    "journal_commits_total",
                    Kind::Counter,
                    "Group commits (flush + fsync).",
                    load(&j.commits),
                ),
                (
                    "journal_dropped_total",
                    Kind::Counter,
                    "Events the journal could not store.",
                    load(&j.dropped),
                ),
                (
                    "journal_writable",
                    Kind::Gauge,
                    "1 while the journal can be written.",
                    u64::from(j.problem().is_none()),
                ),
            ];
            for (name, kind, help, value) in rows {
                text.single(name, kind, help, value);
            }
            text.histogram(
                "journal_commit_seconds",
                "Time to write, flush and fsync a group commit (the flush latency).",
                &j.commit_times.0,
            );
            text.single(
                "journal_last_commit_seconds",
                Kind::Gauge,
                "Duration of the last group commit.",
                load(&j.last_commit_us) as f64 / 1e6,
            );
            forward::write_metrics(&j.forward, &mut text);
        }
        text.single(
            "last_seq",
            Kind::Gauge,
            "Sequence number of the newest event.",
            self.last_seq(),
        );
        if let Some(board) = &self.board {
            board.write_metrics(&mut text);
            board.screen().write_metrics(Instant::now(), &mut text);
        }
        out
    }
}
