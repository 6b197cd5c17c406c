//! The `[[alert]]` rules at work: a pure engine over events and a given
//! `now` that says which alerts to fire (docs/config.md §15,
//! docs/protocol.md §6).
//!
//! [`Rules`] is owned by the hub. The hub hands it every event it numbers
//! ([`Rules::on_event`]) and, whenever [`Rules::due`] says so, lets it
//! check the stale rules ([`Rules::check`]); both return the alert bodies
//! to fire, which the hub numbers, journals and fans out like any other
//! event. A rule's state that must survive a restart (disarmed, stale,
//! cooling down) comes out of [`Rules::take_saves`] and goes into the
//! journal's meta tree beside the alert (`saved`); at start it is read back
//! ([`Rules::load`]) and the journal's last-known ticks prime the previous
//! prices ([`Rules::restore`]), so a restart fires nothing whose condition
//! merely still holds.
//!
//! Prices are compared as decimals (`crate::decimal`), never through
//! floating point. Texts are written with the board's digits
//! (`crate::board::numbers`, see `text`). This room does no I/O and never
//! reads the clock: `now` (monotonic, for windows, cooldowns and silences)
//! and `now_ms` (wall time, only to stamp alerts) are passed in.
//!
//! Files: `watch` (one rule and its state per symbol), `window` (a window's
//! low and high), `text` (placeholders), `saved` (the stored state).

mod saved;
mod text;
mod watch;
mod window;

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use self::saved::key as state_key;
use self::text::{Style, Values, fill};
use self::watch::{Target, Trigger, Watch};
use crate::board::numbers::Numbers;
use crate::config::{AlertKind, AlertLevel, Config};
use crate::decimal::Decimal;
use crate::event::{ALERT_TTL, Alert, Body, Event, FeedState, Fired, Level};

/// The `source` of every alert a rule fires.
pub const SOURCE: &str = "rules";

/// The rules of one daemon and their state.
pub struct Rules {
    watches: Vec<Watch>,
    /// Row labels and decimals by symbol, for texts.
    rows: HashMap<String, (Option<String>, Option<u8>)>,
    /// How the board writes numbers.
    numbers: Numbers,
    /// When a stale rule may next be due; `None` when none can be.
    next_check: Option<Instant>,
    /// Scratch space for what fires.
    triggers: Vec<(usize, Trigger)>,
    /// Whether some rule's state changed since [`Rules::take_saves`].
    dirty: bool,
}

impl Rules {
    /// The rules of `config`, watching from `now`. A rule whose numbers do
    /// not fit the decimal arithmetic is left out with a warning (the config
    /// has checked that they are decimals).
    pub fn new(config: &Config, now: Instant) -> Rules {
        let watches = config
            .alerts
            .iter()
            .filter_map(|rule| {
                let watch = Watch::new(rule, now);
                if watch.is_none() {
                    log::warn!(
                        "alert rule {:?} is left out: its numbers are too large to compare exactly",
                        rule.name
                    );
                }
                watch
            })
            .collect();
        Rules {
            watches,
            rows: config
                .board
                .rows
                .iter()
                .map(|r| (r.symbol.clone(), (r.label.clone(), r.decimals)))
                .collect(),
            numbers: Numbers::new(&config.board.locale, config.board.digits),
            next_check: Some(now),
            triggers: Vec::new(),
            dirty: false,
        }
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.watches.is_empty()
    }

    /// The journal meta keys that hold the rules' saved state.
    pub fn state_keys(&self) -> Vec<String> {
        self.watches
            .iter()
            .map(|w| state_key(&w.rule.name))
            .collect()
    }

    /// Takes up the saved state: `saved` gives the bytes stored under a
    /// meta key, if any. Call before [`Rules::restore`].
    pub fn load(&mut self, saved: impl Fn(&str) -> Option<Vec<u8>>, now: Instant, now_ms: u64) {
        for watch in &mut self.watches {
            if let Some(bytes) = saved(&state_key(&watch.rule.name)) {
                saved::apply(watch, &bytes, now, now_ms);
            }
        }
    }

    /// Primes the previous prices and windows from the journal's
    /// last-known events, without firing anything. An event's age counts
    /// from its own `ts`.
    pub fn restore(&mut self, events: &[Event], now: Instant, now_ms: u64) {
        for event in events {
            let Body::Tick(tick) = &event.body else {
                continue;
            };
            let Some(price) = Decimal::parse(&tick.price) else {
                continue;
            };
            let age = Duration::from_millis(now_ms.saturating_sub(event.ts));
            let at = now.checked_sub(age).unwrap_or(now);
            for watch in &mut self.watches {
                watch.prime(&tick.symbol, price, event.seq, at, now);
            }
        }
    }

    /// Evaluates `event` (just numbered; `feed` is the name of the feed it
    /// came from, `None` for a client's publish) at `now`. Returns the
    /// alerts to fire, usually none (and then nothing is allocated).
    pub fn on_event(
        &mut self,
        event: &Event,
        feed: Option<&str>,
        now: Instant,
        now_ms: u64,
    ) -> Vec<Alert> {
        let mut triggers = std::mem::take(&mut self.triggers);
        let mut soonest = None;
        match &event.body {
            Body::Tick(tick) => {
                let price = Decimal::parse(&tick.price);
                let from = feed.unwrap_or(&tick.source);
                for (i, watch) in self.watches.iter_mut().enumerate() {
                    let mut out = Vec::new();
                    let due = match (&watch.target, price) {
                        (Target::Feed(name), _) if name == from => {
                            watch.on_life(from, event.seq, now, &mut out)
                        }
                        (Target::Feed(_), _) => None,
                        (_, Some(price)) => {
                            watch.on_tick(&tick.symbol, price, event.seq, now, now_ms, &mut out)
                        }
                        (_, None) => None,
                    };
                    triggers.extend(out.into_iter().map(|t| (i, t)));
                    soonest = earliest(soonest, due);
                }
            }
            Body::Status(status) if status.state == FeedState::Up => {
                soonest = self.life(&status.feed, event.seq, now, &mut triggers);
            }
            Body::Status(_) | Body::Clock(_) => {}
            // A rule's own alert is not a sign of life of anything (one
            // relayed from an upstream Tablo's rules is, of that feed).
            Body::Alert(alert) if alert.fired.is_some() && feed.is_none() => {}
            Body::News(_) | Body::Alert(_) => {
                let source = match &event.body {
                    Body::News(n) => &n.source,
                    Body::Alert(a) => &a.source,
                    _ => unreachable!("matched above"),
                };
                let from = feed.unwrap_or(source);
                soonest = self.life(from, event.seq, now, &mut triggers);
            }
        }
        self.next_check = earliest(self.next_check, soonest);
        self.dirty |= self.watches.iter().any(|w| w.dirty);
        let alerts = self.alerts(&triggers, now_ms);
        triggers.clear();
        self.triggers = triggers;
        alerts
    }

    /// A sign of life from feed `name`.
    fn life(
        &mut self,
        name: &str,
        seq: u64,
        now: Instant,
        triggers: &mut Vec<(usize, Trigger)>,
    ) -> Option<Instant> {
        let mut soonest = None;
        for (i, watch) in self.watches.iter_mut().enumerate() {
            if !matches!(&watch.target, Target::Feed(f) if f == name) {
                continue;
            }
            let mut out = Vec::new();
            soonest = earliest(soonest, watch.on_life(name, seq, now, &mut out));
            triggers.extend(out.into_iter().map(|t| (i, t)));
        }
        soonest
    }

    /// Whether a stale rule may be due at `now`: cheap, for every turn of
    /// the hub's loop.
    pub fn due(&self, now: Instant) -> bool {
        self.next_check.is_some_and(|at| now >= at)
    }

    /// Fires the stale alerts due at `now`.
    pub fn check(&mut self, now: Instant, now_ms: u64) -> Vec<Alert> {
        let mut triggers = std::mem::take(&mut self.triggers);
        let mut next = None;
        for (i, watch) in self.watches.iter_mut().enumerate() {
            if watch.stale_after().is_none() {
                continue;
            }
            let mut out = Vec::new();
            next = earliest(next, watch.check(now, now_ms, &mut out));
            triggers.extend(out.into_iter().map(|t| (i, t)));
        }
        self.next_check = next;
        self.dirty |= !triggers.is_empty();
        let alerts = self.alerts(&triggers, now_ms);
        triggers.clear();
        self.triggers = triggers;
        alerts
    }

    /// Whether [`Rules::take_saves`] has something.
    pub fn has_saves(&self) -> bool {
        self.dirty
    }

    /// The state of every rule that changed since the last call, as
    /// (journal meta key, value) pairs. Empty, and cheap, when nothing did.
    pub fn take_saves(&mut self, now_ms: u64) -> Vec<(String, Vec<u8>)> {
        if !std::mem::take(&mut self.dirty) {
            return Vec::new();
        }
        self.watches
            .iter_mut()
            .filter(|w| w.dirty)
            .map(|w| {
                w.dirty = false;
                (state_key(&w.rule.name), saved::encode(w, now_ms))
            })
            .collect()
    }

    /// The alert bodies for `triggers`, stamped `now_ms`.
    fn alerts(&self, triggers: &[(usize, Trigger)], now_ms: u64) -> Vec<Alert> {
        triggers
            .iter()
            .filter_map(|(i, t)| Some(self.alert(self.watches.get(*i)?, t, now_ms)))
            .collect()
    }

    /// One alert: the rule's text filled in, and its fields.
    fn alert(&self, watch: &Watch, trigger: &Trigger, now_ms: u64) -> Alert {
        let rule = &watch.rule;
        let (label, decimals) = match self.rows.get(&trigger.key) {
            Some((label, decimals)) => (label.as_deref().unwrap_or(&trigger.key), *decimals),
            None => (trigger.key.as_str(), None),
        };
        let new = trigger.new.map(|d| d.to_string());
        let old = trigger.old.map(|d| d.to_string());
        let percent = match (trigger.new, trigger.old) {
            (Some(new), Some(old)) => new
                .change_pct(old)
                .and_then(Decimal::checked_abs)
                .map(|p| p.to_string()),
            _ => None,
        };
        let window = match &rule.kind {
            AlertKind::Move { window, .. } => Some(*window),
            AlertKind::Drop { window, .. } => *window,
            AlertKind::Stale { after } => Some(*after),
            _ => None,
        }
        .map(format_span)
        .unwrap_or_default();
        let values = Values {
            symbol: &trigger.key,
            label,
            price: new.as_deref(),
            old_price: old.as_deref(),
            percent: percent.as_deref(),
            window: &window,
        };
        let style = Style {
            numbers: self.numbers,
            decimals,
        };
        let template = match (trigger.kind, &rule.back_text) {
            ("back", Some(back)) => back,
            _ => &rule.text,
        };
        let mut text = fill(template, &values, style);
        crate::event::strip_hidden(&mut text);
        if text.trim().is_empty() {
            // Every placeholder of the text was empty: say which rule.
            text = rule.name.clone();
        }
        let ttl = rule.expires.unwrap_or(ALERT_TTL);
        let feed = matches!(watch.target, Target::Feed(_));
        Alert {
            level: match (trigger.kind, rule.level) {
                ("back", _) | (_, AlertLevel::Info) => Level::Info,
                (_, AlertLevel::Warning) => Level::Warning,
                (_, AlertLevel::Critical) => Level::Critical,
            },
            text,
            source: SOURCE.to_owned(),
            fired: Some(Box::new(Fired {
                rule: rule.name.clone(),
                kind: trigger.kind.to_owned(),
                trigger_seq: trigger.seq,
                symbol: (!feed).then(|| trigger.key.clone()),
                feed: feed.then(|| trigger.key.clone()),
                old_price: old,
                new_price: new,
                percent,
                expires: Some(
                    now_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
                ),
            })),
        }
    }
}

/// A window or `after` as the config writes it (`5m`, `90s`).
fn format_span(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms > 0 && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// The earlier of two optional instants.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
