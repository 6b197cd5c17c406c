//! A rule's state as stored beside the journal (docs/durability.md §18):
//! per symbol or feed, whether it is disarmed, whether a stale alert is
//! out, and when it last fired (for the cooldown).
//!
//! The hub writes it to the journal's meta tree under [`key`] in the same
//! commit as the alert that changed it, so after any stop the two agree: an
//! alert that survived has its state beside it, and one that was lost (the
//! last flush window of a crash) did not change the state either, so it
//! fires again. Prices and windows are not stored: the journal's
//! last-known ticks give the previous price at start. Pure: bytes in,
//! bytes out.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::watch::{KeyState, MAX_KEYS, Watch};

/// The meta key of rule `name`'s state.
pub fn key(name: &str) -> String {
    format!("rule:{name}")
}

/// `{"keys":{"USD":{"armed":false,"stale":false,"fired_ms":…}}}`, with only
/// the keys whose state differs from a fresh one.
pub(super) fn encode(watch: &Watch, now_ms: u64) -> Vec<u8> {
    let cooldown_ms = u64::try_from(watch.rule.cooldown.as_millis()).unwrap_or(u64::MAX);
    let mut keys = Map::new();
    for (name, state) in &watch.keys {
        let cooling = state
            .fired_ms
            .filter(|&at| now_ms.saturating_sub(at) < cooldown_ms);
        if state.armed && !state.stale && cooling.is_none() {
            continue;
        }
        let mut entry = Map::new();
        entry.insert("armed".into(), Value::Bool(state.armed));
        entry.insert("stale".into(), Value::Bool(state.stale));
        if let Some(at) = cooling {
            entry.insert("fired_ms".into(), json!(at));
        }
        keys.insert(name.clone(), Value::Object(entry));
    }
    json!({ "keys": keys }).to_string().into_bytes()
}

/// Applies a state [`encode`] wrote to `watch`, at `now` (`now_ms` in wall
/// time): disarmed and stale flags as saved, and what is left of a
/// cooldown. Anything unreadable is ignored: the rule starts fresh.
pub(super) fn apply(watch: &mut Watch, bytes: &[u8], now: Instant, now_ms: u64) {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let Some(keys) = value.get("keys").and_then(Value::as_object) else {
        return;
    };
    for (name, entry) in keys {
        if !watch.keys.contains_key(name) {
            let symbol_rule = watch.wants(name);
            if !symbol_rule || watch.keys.len() >= MAX_KEYS {
                continue;
            }
            watch.keys.insert(name.clone(), KeyState::new(now));
        }
        let Some(state) = watch.keys.get_mut(name) else {
            continue;
        };
        state.armed = entry.get("armed").and_then(Value::as_bool).unwrap_or(true);
        state.stale = entry.get("stale").and_then(Value::as_bool).unwrap_or(false);
        if let Some(at) = entry.get("fired_ms").and_then(Value::as_u64) {
            let elapsed = Duration::from_millis(now_ms.saturating_sub(at));
            if let Some(left) = watch.rule.cooldown.checked_sub(elapsed) {
                state.cooldown_until = Some(now + left);
                state.fired_ms = Some(at);
            }
        }
    }
}
