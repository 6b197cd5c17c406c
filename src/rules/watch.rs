//! One rule at work: its settings as decimals and durations, and what it
//! remembers per symbol (or feed): the previous price, whether it is armed,
//! its cooldown, its window, when it last heard from the symbol.
//!
//! Each tick or sign of life goes through [`Watch::on_tick`] or
//! [`Watch::on_life`], and stale rules through [`Watch::check`]; what
//! fires is pushed as a [`Trigger`], which [`super::Rules`] turns into an
//! alert. Every comparison is exact decimal arithmetic (`Decimal`); a
//! price whose arithmetic would overflow fires nothing. Pure: time comes
//! in as arguments.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::window::Window;
use crate::config::{ANY_SYMBOL, AlertKind, AlertRule, Hysteresis, MoveDirection};
use crate::decimal::Decimal;

/// A rule keeps state for at most this many symbols: the hub keeps at most
/// 4096 (`hub::last_known::MAX_SYMBOLS`), so a `"*"` rule never refuses one
/// the hub accepted.
pub(super) const MAX_KEYS: usize = 4096;

/// What a rule watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// One symbol.
    Symbol(String),
    /// Every symbol.
    Any,
    /// One feed (stale rules).
    Feed(String),
}

/// A rule's test, in numbers.
#[derive(Debug)]
enum Test {
    /// Fires when the price goes above `line`; re-arms at or below `rearm`.
    Above { line: Decimal, rearm: Decimal },
    /// Fires when the price goes below `line`; re-arms at or above `rearm`.
    Below { line: Decimal, rearm: Decimal },
    /// Fires on a move of `percent` within `span`.
    Move {
        percent: Decimal,
        span: Duration,
        up: bool,
        down: bool,
    },
    /// Fires on a fall of `percent` from the previous price or the high.
    Drop {
        percent: Decimal,
        span: Option<Duration>,
    },
    /// Fires after `after` without a sign of life.
    Stale { after: Duration },
}

/// What one rule remembers about one symbol or feed.
#[derive(Debug)]
pub(super) struct KeyState {
    /// The previous price and its seq.
    last: Option<(Decimal, u64)>,
    /// Whether an above/below rule may fire (false from firing until the
    /// price is back past the line by the hysteresis).
    pub(super) armed: bool,
    /// Whether a stale alert is out (and a back alert owed).
    pub(super) stale: bool,
    /// Quiet until then after firing.
    pub(super) cooldown_until: Option<Instant>,
    /// When it last fired, ms since the epoch (saved, for the cooldown).
    pub(super) fired_ms: Option<u64>,
    /// Lows and highs, for move and drop rules with a window.
    window: Window,
    /// The last sign of life (stale rules).
    last_seen: Instant,
    /// The seq of that sign of life.
    last_seq: Option<u64>,
}

impl KeyState {
    /// A symbol or feed first heard of at `now`.
    pub(super) fn new(now: Instant) -> KeyState {
        KeyState {
            last: None,
            armed: true,
            stale: false,
            cooldown_until: None,
            fired_ms: None,
            window: Window::default(),
            last_seen: now,
            last_seq: None,
        }
    }

    fn cooling(&self, now: Instant) -> bool {
        self.cooldown_until.is_some_and(|until| now < until)
    }
}

/// Something fired: which key, why, and the prices involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Trigger {
    /// The wire `kind`: the rule's kind, or `back`.
    pub(super) kind: &'static str,
    /// The symbol or feed.
    pub(super) key: String,
    /// The seq of the event that fired it (for a stale alert: the last one
    /// heard from the key, if any).
    pub(super) seq: Option<u64>,
    /// The price compared with.
    pub(super) old: Option<Decimal>,
    /// The price that fired it.
    pub(super) new: Option<Decimal>,
}

/// One configured rule and its state.
#[derive(Debug)]
pub(super) struct Watch {
    /// The rule as configured.
    pub(super) rule: AlertRule,
    /// What it watches.
    pub(super) target: Target,
    test: Test,
    /// State per symbol or feed.
    pub(super) keys: HashMap<String, KeyState>,
    /// Whether the state changed in a way worth saving (armed, stale,
    /// fired) since the last save.
    pub(super) dirty: bool,
}

impl Watch {
    /// A rule ready to watch, from `now` on; `None` when its numbers do not
    /// fit (the config has checked that they are decimals).
    pub(super) fn new(rule: &AlertRule, now: Instant) -> Option<Watch> {
        let test = match &rule.kind {
            AlertKind::Above { price, hysteresis } | AlertKind::Below { price, hysteresis } => {
                let line = Decimal::parse(price)?;
                let width = match hysteresis {
                    None => Decimal::new(0, 0),
                    Some(Hysteresis::Amount(h)) => Decimal::parse(h)?,
                    Some(Hysteresis::Percent(p)) => {
                        Decimal::parse(p)?.percent_of(line)?.checked_abs()?
                    }
                };
                if matches!(rule.kind, AlertKind::Above { .. }) {
                    Test::Above {
                        line,
                        rearm: line.checked_sub(width)?,
                    }
                } else {
                    Test::Below {
                        line,
                        rearm: line.checked_add(width)?,
                    }
                }
            }
            AlertKind::Move {
                percent,
                window,
                direction,
            } => Test::Move {
                percent: Decimal::parse(percent)?,
                span: *window,
                up: *direction != MoveDirection::Down,
                down: *direction != MoveDirection::Up,
            },
            AlertKind::Drop { percent, window } => Test::Drop {
                percent: Decimal::parse(percent)?,
                span: *window,
            },
            AlertKind::Stale { after } => Test::Stale { after: *after },
        };
        let target = match (&rule.symbol, &rule.feed) {
            (Some(s), _) if s == ANY_SYMBOL => Target::Any,
            (Some(s), _) => Target::Symbol(s.clone()),
            (None, Some(f)) => Target::Feed(f.clone()),
            (None, None) => return None,
        };
        let mut keys = HashMap::new();
        if let Target::Symbol(key) | Target::Feed(key) = &target {
            keys.insert(key.clone(), KeyState::new(now));
        }
        Some(Watch {
            rule: rule.clone(),
            target,
            test,
            keys,
            dirty: false,
        })
    }

    /// Whether this is a stale rule, and its `after`.
    pub(super) fn stale_after(&self) -> Option<Duration> {
        match self.test {
            Test::Stale { after } => Some(after),
            _ => None,
        }
    }

    /// Whether ticks for `symbol` concern this rule.
    pub(super) fn wants(&self, symbol: &str) -> bool {
        match &self.target {
            Target::Symbol(s) => s == symbol,
            Target::Any => true,
            Target::Feed(_) => false,
        }
    }

    /// The state for `key`, made at `now` if there is room for it.
    fn key_state(&mut self, key: &str, now: Instant) -> Option<&mut KeyState> {
        if !self.keys.contains_key(key) {
            if self.keys.len() >= MAX_KEYS {
                return None;
            }
            self.keys.insert(key.to_owned(), KeyState::new(now));
        }
        self.keys.get_mut(key)
    }

    /// Primes the state with a last-known tick from the journal, seen at
    /// `at`, without firing: the previous price and the window. A stale
    /// rule counts its silence from `now` (this start), not from the tick.
    pub(super) fn prime(
        &mut self,
        symbol: &str,
        price: Decimal,
        seq: u64,
        at: Instant,
        now: Instant,
    ) {
        if !self.wants(symbol) {
            return;
        }
        let span = match self.test {
            Test::Move { span, .. }
            | Test::Drop {
                span: Some(span), ..
            } => Some(span),
            _ => None,
        };
        let Some(state) = self.key_state(symbol, now) else {
            return;
        };
        state.last = Some((price, seq));
        state.last_seq = Some(seq);
        state.last_seen = now;
        if let Some(span) = span
            && now.saturating_duration_since(at) <= span
        {
            state.window.push(at, price, span);
        }
    }

    /// A tick for `symbol` at `price` (seq `seq`) at `now`. Pushes what
    /// fires onto `out`; `now_ms` stamps a firing for the saved cooldown.
    /// Returns the instant a stale check is next due for this key when a
    /// stale rule started or restarted counting.
    pub(super) fn on_tick(
        &mut self,
        symbol: &str,
        price: Decimal,
        seq: u64,
        now: Instant,
        now_ms: u64,
        out: &mut Vec<Trigger>,
    ) -> Option<Instant> {
        if !self.wants(symbol) {
            return None;
        }
        if let Test::Stale { .. } = self.test {
            return self.on_life(symbol, seq, now, out);
        }
        let cooldown = self.rule.cooldown;
        let kind = self.rule.kind.name();
        let test = &self.test;
        let dirty = &mut self.dirty;
        // One lookup for a known symbol; the key is copied only for a new one.
        let full = self.keys.len() >= MAX_KEYS;
        let state = match self.keys.get_mut(symbol) {
            Some(state) => state,
            None if full => return None,
            None => self
                .keys
                .entry(symbol.to_owned())
                .or_insert_with(|| KeyState::new(now)),
        };
        let previous = state.last.map(|(p, _)| p);
        let fired: Option<Option<Decimal>> = match *test {
            Test::Above { line, rearm } | Test::Below { line, rearm } => {
                let above = matches!(test, Test::Above { .. });
                let (beyond, back) = if above {
                    (Ordering::Greater, [Ordering::Less, Ordering::Equal])
                } else {
                    (Ordering::Less, [Ordering::Greater, Ordering::Equal])
                };
                if !state.armed && price.try_cmp(rearm).is_some_and(|o| back.contains(&o)) {
                    state.armed = true;
                    *dirty = true;
                }
                if state.armed && price.try_cmp(line) == Some(beyond) && !state.cooling(now) {
                    state.armed = false;
                    Some(previous)
                } else {
                    None
                }
            }
            Test::Move {
                percent,
                span,
                up,
                down,
            } => {
                state.window.push(now, price, span);
                let rise = state
                    .window
                    .low()
                    .filter(|&low| up && reached(low, price, percent));
                let fall = state
                    .window
                    .high()
                    .filter(|&high| down && reached(high, price, percent));
                match rise.or(fall) {
                    Some(from) if !state.cooling(now) => {
                        state.window.restart(now, price);
                        Some(Some(from))
                    }
                    _ => None,
                }
            }
            Test::Drop { percent, span } => {
                let from = match span {
                    Some(span) => {
                        state.window.push(now, price, span);
                        state.window.high()
                    }
                    None => previous,
                };
                match from {
                    Some(from)
                        if reached(from, price, percent)
                            && price.try_cmp(from) == Some(Ordering::Less)
                            && !state.cooling(now) =>
                    {
                        if span.is_some() {
                            state.window.restart(now, price);
                        }
                        Some(Some(from))
                    }
                    _ => None,
                }
            }
            Test::Stale { .. } => None,
        };
        state.last = Some((price, seq));
        if let Some(old) = fired {
            state.cooldown_until = Some(now + cooldown);
            state.fired_ms = Some(now_ms);
            *dirty = true;
            out.push(Trigger {
                kind,
                key: symbol.to_owned(),
                seq: Some(seq),
                old,
                new: Some(price),
            });
        }
        None
    }

    /// A sign of life from `key` (a tick for a stale symbol rule, any event
    /// or an `up` from a stale feed rule's feed) at `now`. Pushes a back
    /// alert when the key was stale. Returns when its next stale check is
    /// due.
    pub(super) fn on_life(
        &mut self,
        key: &str,
        seq: u64,
        now: Instant,
        out: &mut Vec<Trigger>,
    ) -> Option<Instant> {
        let Test::Stale { after } = self.test else {
            return None;
        };
        let state = self.key_state(key, now)?;
        let fresh = state.last_seq.is_none() || state.stale;
        state.last_seen = now;
        state.last_seq = Some(seq);
        if state.stale {
            state.stale = false;
            self.dirty = true;
            out.push(Trigger {
                kind: "back",
                key: key.to_owned(),
                seq: Some(seq),
                old: None,
                new: None,
            });
        }
        fresh.then(|| now + after)
    }

    /// Fires the stale alerts due at `now`. Returns when the next one may
    /// be due.
    pub(super) fn check(
        &mut self,
        now: Instant,
        now_ms: u64,
        out: &mut Vec<Trigger>,
    ) -> Option<Instant> {
        let Test::Stale { after } = self.test else {
            return None;
        };
        let mut next: Option<Instant> = None;
        let mut soonest = |at: Instant| next = Some(next.map_or(at, |n: Instant| n.min(at)));
        for (key, state) in &mut self.keys {
            if state.stale {
                continue;
            }
            let due = state.last_seen + after;
            if now < due {
                soonest(due);
                continue;
            }
            if let Some(until) = state.cooldown_until.filter(|&u| now < u) {
                soonest(until);
                continue;
            }
            state.stale = true;
            state.cooldown_until = Some(now + self.rule.cooldown);
            state.fired_ms = Some(now_ms);
            self.dirty = true;
            out.push(Trigger {
                kind: "stale",
                key: key.clone(),
                seq: state.last_seq,
                old: None,
                new: None,
            });
        }
        next
    }
}

/// Whether `to` is at least `percent` percent away from `from` (which must
/// be above zero): `|to − from| ≥ from × percent / 100`, exactly. False
/// when the arithmetic overflows.
fn reached(from: Decimal, to: Decimal, percent: Decimal) -> bool {
    if !from.is_positive() {
        return false;
    }
    let moved = to.checked_sub(from).and_then(Decimal::checked_abs);
    let needed = percent.percent_of(from);
    match (moved, needed) {
        (Some(moved), Some(needed)) => moved.try_cmp(needed).is_some_and(|o| o != Ordering::Less),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reached_is_exact_at_the_edge() {
        let d = |s: &str| Decimal::parse(s).unwrap();
        assert!(reached(d("100"), d("105"), d("5")));
        assert!(!reached(d("100"), d("104.999999"), d("5")));
        assert!(reached(d("100"), d("95"), d("5")));
        assert!(!reached(d("0"), d("95"), d("5")));
        assert!(reached(d("60000"), d("60300"), d("0.5")));
        assert!(!reached(d("60000"), d("60299.99"), d("0.5")));
    }
}
