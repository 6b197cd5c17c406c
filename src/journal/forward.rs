//! The durable outbox of `[[forward]]` (docs/durability.md §19): what waits
//! to be published to a broker, in a sled tree of the journal's database.
//!
//! The journal writer puts a forwarded event into its rule's tree in the
//! same batch as the event itself, so one commit makes both durable; only
//! then is the broker's feed task woken to send it. The task removes a
//! message when the broker acknowledges it (PUBACK); whatever is still in a
//! tree after a broker outage, a lost network, a restart or a kill -9 is
//! sent again, oldest first. Delivery is at least once: a message sent but
//! not yet acknowledged when the link dropped goes out again.
//!
//! Each rule's tree is bounded by the rule's `max_bytes` (the oldest
//! messages go first) and `max_age`, measured in journal time like the
//! journal's own retention (it only goes forward, across restarts and wall
//! clock steps, since a message outlives the process).
//! What is dropped is counted and logged once per outage.
//!
//! Keys are one counter across every tree, so the task can send the
//! messages of several rules in the order they were made. A value is
//! `journal ms (8) | qos (1) | retain (1) | topic length (2) | topic | payload`.
//! This module never touches a socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use smol::channel::{Receiver, Sender, bounded};

use crate::forward::Rule;
use crate::journal::store::{Store, StoreError};
use crate::metrics::{Kind, MetricsText};

/// The prefix of an outbox tree's name; the rest is `Rule::key`.
pub const TREE_PREFIX: &str = "forward:";

/// Bytes of a value before the topic.
const HEADER: usize = 12;

/// One message waiting for its broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Its place in the outbox: sent in key order.
    pub key: u64,
    /// Where it goes.
    pub topic: String,
    /// 0 or 1.
    pub qos: u8,
    /// Whether the broker keeps it as the topic's last message.
    pub retain: bool,
    /// The event's JSON with its epoch.
    pub payload: Vec<u8>,
}

/// One rule's counters, for `/healthz` and `/metrics`.
#[derive(Debug, Default)]
pub struct OutboxStats {
    /// The rule's broker feed and topic, as `/metrics` labels them.
    pub to: String,
    /// The rule's topic template.
    pub topic: String,
    /// Messages waiting.
    pub queued: AtomicU64,
    /// Bytes of messages waiting.
    pub bytes: AtomicU64,
    /// Messages put in.
    pub added: AtomicU64,
    /// Messages acknowledged by the broker (or sent, at QoS 0).
    pub sent: AtomicU64,
    /// Messages dropped unsent by `max_bytes` or `max_age`.
    pub dropped: AtomicU64,
    /// Whether a drop was logged since the outbox was last empty.
    logged: AtomicBool,
}

/// One rule's tree.
#[derive(Debug)]
struct Queue {
    rule: Rule,
    tree: sled::Tree,
    stats: Arc<OutboxStats>,
}

/// The outboxes of every rule, as the journal writer and the feed tasks
/// share them.
#[derive(Clone, Debug)]
pub struct Outboxes {
    queues: Arc<Vec<Queue>>,
    /// The next key.
    next_key: Arc<AtomicU64>,
    /// One wake-up channel per broker feed name.
    wakes: Arc<Vec<Wake>>,
}

/// A broker feed's name and the channel that wakes its task.
type Wake = (String, Sender<()>, Receiver<()>);

/// What the feed task of one broker holds: the trees of the rules that
/// forward to it.
#[derive(Clone, Debug)]
pub struct Outbox {
    all: Outboxes,
    /// Indexes into `all.queues`.
    mine: Vec<usize>,
    wake: Receiver<()>,
}

impl Outboxes {
    /// Opens the tree of each rule in `store`'s database, and drops the
    /// trees of rules no longer configured (logging what they held).
    pub fn open(store: &Store, rules: Vec<Rule>) -> Result<Outboxes, StoreError> {
        let mut queues = Vec::new();
        let mut next_key = 0;
        let names: Vec<String> = rules
            .iter()
            .map(|r| format!("{TREE_PREFIX}{}", r.key()))
            .collect();
        for old in store.tree_names() {
            if old.starts_with(TREE_PREFIX) && !names.contains(&old) {
                let held = store.tree(&old)?.len();
                if held > 0 {
                    log::warn!(
                        "forward: the outbox of a rule no longer configured ({}) held {held} unsent messages; they are dropped",
                        &old[TREE_PREFIX.len()..]
                    );
                }
                store.drop_tree(&old)?;
            }
        }
        for (rule, name) in rules.into_iter().zip(names) {
            let tree = store.tree(&name)?;
            let stats = OutboxStats {
                to: rule.config.to.clone(),
                topic: rule.config.topic.clone(),
                ..OutboxStats::default()
            };
            let (mut count, mut bytes) = (0u64, 0u64);
            for item in tree.iter() {
                let (key, value) = item.map_err(|e| store.sled_error(e))?;
                count += 1;
                bytes += value.len() as u64;
                next_key = next_key.max(decode_key(&key) + 1);
            }
            stats.queued.store(count, Ordering::Relaxed);
            stats.bytes.store(bytes, Ordering::Relaxed);
            if count > 0 {
                log::info!(
                    "forward to {} ({}): {count} messages from before the restart are waiting",
                    rule.config.to,
                    rule.config.topic
                );
            }
            queues.push(Queue {
                rule,
                tree,
                stats: Arc::new(stats),
            });
        }
        let mut wakes = Vec::new();
        for q in &queues {
            if !wakes.iter().any(|(to, _, _)| *to == q.rule.config.to) {
                let (tx, rx) = bounded(1);
                wakes.push((q.rule.config.to.clone(), tx, rx));
            }
        }
        Ok(Outboxes {
            queues: Arc::new(queues),
            next_key: Arc::new(AtomicU64::new(next_key)),
            wakes: Arc::new(wakes),
        })
    }

    /// Whether there is any rule.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Every rule's counters, in config order.
    pub fn stats(&self) -> Vec<Arc<OutboxStats>> {
        self.queues.iter().map(|q| q.stats.clone()).collect()
    }

    /// The outbox of the broker feed `to`, if a rule forwards to it.
    pub fn for_feed(&self, to: &str) -> Option<Outbox> {
        let mine: Vec<usize> = (0..self.queues.len())
            .filter(|&i| self.queues[i].rule.config.to == to)
            .collect();
        let wake = self.wakes.iter().find(|(t, _, _)| t == to)?.2.clone();
        (!mine.is_empty()).then(|| Outbox {
            all: self.clone(),
            mine,
            wake,
        })
    }

    /// Puts the event `json` (seq'd, as clients get it) into the tree of
    /// every rule that forwards it, at journal time `now_ms`. Called by the journal
    /// writer before the commit that holds the event; true if anything was
    /// put in (then [`Outboxes::wake`] after the commit).
    pub fn put(&self, json: &[u8], epoch: &str, now_ms: u64) -> Result<bool, sled::Error> {
        let Some(event) = crate::event::Event::from_json(json) else {
            return Ok(false);
        };
        let mut put = false;
        for q in self.queues.iter() {
            let Some(topic) = q.rule.topic_for(&event.body) else {
                continue;
            };
            let payload = crate::forward::payload(json, epoch);
            let mut value = Vec::with_capacity(HEADER + topic.len() + payload.len());
            value.extend_from_slice(&now_ms.to_be_bytes());
            value.push(q.rule.config.qos);
            value.push(u8::from(q.rule.config.retain));
            value.extend_from_slice(&(topic.len().min(u16::MAX as usize) as u16).to_be_bytes());
            value.extend_from_slice(topic.as_bytes());
            value.extend_from_slice(&payload);
            let key = self.next_key.fetch_add(1, Ordering::Relaxed);
            q.tree.insert(key.to_be_bytes(), value.as_slice())?;
            q.stats.added.fetch_add(1, Ordering::Relaxed);
            q.stats.queued.fetch_add(1, Ordering::Relaxed);
            let bytes = q
                .stats
                .bytes
                .fetch_add(value.len() as u64, Ordering::Relaxed)
                + value.len() as u64;
            if bytes > q.rule.config.max_bytes {
                self.trim_bytes(q)?;
            }
            put = true;
        }
        Ok(put)
    }

    /// Drops the oldest messages of `q` until it is within its `max_bytes`.
    fn trim_bytes(&self, q: &Queue) -> Result<(), sled::Error> {
        let mut dropped = 0;
        while q.stats.bytes.load(Ordering::Relaxed) > q.rule.config.max_bytes {
            let Some((_, value)) = q.tree.pop_min()? else {
                break;
            };
            sub(&q.stats, value.len() as u64);
            dropped += 1;
        }
        self.dropped(q, dropped, "max_bytes");
        Ok(())
    }

    /// Drops the messages older than their rule's `max_age` at journal time `now_ms`.
    /// Called by the journal writer at its commits.
    pub fn trim_age(&self, now_ms: u64) -> Result<(), sled::Error> {
        for q in self.queues.iter() {
            let max_age = q.rule.config.max_age.as_millis() as u64;
            let mut dropped = 0;
            while let Some((key, value)) = q.tree.first()? {
                let made = value
                    .get(..8)
                    .map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap_or_default()));
                if now_ms.saturating_sub(made) <= max_age {
                    break;
                }
                if q.tree.remove(&key)?.is_some() {
                    sub(&q.stats, value.len() as u64);
                    dropped += 1;
                }
            }
            self.dropped(q, dropped, "max_age");
        }
        Ok(())
    }

    /// Counts `n` dropped messages of `q`, and logs the first drop since the
    /// outbox was last empty.
    fn dropped(&self, q: &Queue, n: u64, bound: &str) {
        if n == 0 {
            return;
        }
        q.stats.dropped.fetch_add(n, Ordering::Relaxed);
        if !q.stats.logged.swap(true, Ordering::Relaxed) {
            let c = &q.rule.config;
            let limit = match bound {
                "max_bytes" => format!("{} bytes", c.max_bytes),
                _ => format!("{} s", c.max_age.as_secs()),
            };
            log::warn!(
                "forward to {} ({}): the broker has not taken messages for a while and the outbox reached its {bound} of {limit}; \
                 the oldest are being dropped unsent (counted in tablo_forward_dropped_total; logged once until the outbox empties)",
                c.to,
                c.topic
            );
        }
    }

    /// Wakes the feed tasks: something new is durable in their outboxes.
    pub fn wake(&self) {
        for (_, tx, _) in self.wakes.iter() {
            let _ = tx.try_send(());
        }
    }
}

impl Outbox {
    /// The oldest message after key `after` (from the start for `None`),
    /// across this broker's rules.
    pub fn next_after(&self, after: Option<u64>) -> Option<Pending> {
        let from = after.map_or(0, |k| k.saturating_add(1));
        let mut best: Option<Pending> = None;
        for &i in &self.mine {
            let tree = &self.all.queues[i].tree;
            let Ok(Some((key, value))) = tree.range(from.to_be_bytes()..).next().transpose() else {
                continue;
            };
            let key = decode_key(&key);
            if best.as_ref().is_some_and(|b| b.key < key) {
                continue;
            }
            if let Some(pending) = decode(key, &value) {
                best = Some(pending);
            }
        }
        best
    }

    /// The broker acknowledged the message `key` (or it was sent at QoS 0):
    /// it leaves the outbox.
    pub fn acked(&self, key: u64) {
        for &i in &self.mine {
            let q = &self.all.queues[i];
            if let Ok(Some(value)) = q.tree.remove(key.to_be_bytes()) {
                sub(&q.stats, value.len() as u64);
                q.stats.sent.fetch_add(1, Ordering::Relaxed);
                if q.stats.queued.load(Ordering::Relaxed) == 0 {
                    q.stats.logged.store(false, Ordering::Relaxed);
                }
                return;
            }
        }
    }

    /// Waits until something new is durable in the outbox.
    pub async fn changed(&self) {
        if self.wake.recv().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Each rule's outbox for `/healthz`: `[{"to","topic","queued","bytes",
/// "sent","dropped"}]`.
pub fn to_json(stats: &[Arc<OutboxStats>]) -> serde_json::Value {
    let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
    stats
        .iter()
        .map(|s| {
            serde_json::json!({
                "to": s.to,
                "topic": s.topic,
                "queued": load(&s.queued),
                "bytes": load(&s.bytes),
                "sent": load(&s.sent),
                "dropped": load(&s.dropped),
            })
        })
        .collect()
}

/// The `tablo_forward_*` families, one row per rule (labels `to`, `topic`).
pub fn write_metrics(stats: &[Arc<OutboxStats>], text: &mut MetricsText<'_>) {
    if stats.is_empty() {
        return;
    }
    type Field = fn(&OutboxStats) -> &AtomicU64;
    let families: [(&str, Kind, &str, Field); 5] = [
        (
            "forward_queued",
            Kind::Gauge,
            "Messages waiting in a forward outbox.",
            |s| &s.queued,
        ),
        (
            "forward_queued_bytes",
            Kind::Gauge,
            "Bytes waiting in a forward outbox.",
            |s| &s.bytes,
        ),
        (
            "forward_added_total",
            Kind::Counter,
            "Events put into a forward outbox.",
            |s| &s.added,
        ),
        (
            "forward_sent_total",
            Kind::Counter,
            "Forwarded messages the broker acknowledged (PUBACK; sent, at QoS 0).",
            |s| &s.sent,
        ),
        (
            "forward_dropped_total",
            Kind::Counter,
            "Forwarded messages dropped unsent by the outbox's max_bytes or max_age.",
            |s| &s.dropped,
        ),
    ];
    for (name, kind, help, field) in families {
        let mut family = text.family(name, kind, help);
        for s in stats {
            family.row(
                &[("to", &s.to), ("topic", &s.topic)],
                field(s).load(Ordering::Relaxed),
            );
        }
    }
}

/// Takes one message of `len` bytes off the counters.
fn sub(stats: &OutboxStats, len: u64) {
    let _ = stats
        .queued
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            Some(n.saturating_sub(1))
        });
    let _ = stats
        .bytes
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            Some(n.saturating_sub(len))
        });
}

fn decode_key(key: &[u8]) -> u64 {
    key.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// A stored value; `None` if it is not one this module wrote.
fn decode(key: u64, value: &[u8]) -> Option<Pending> {
    let qos = *value.get(8)?;
    let retain = *value.get(9)? != 0;
    let topic_len = u16::from_be_bytes(value.get(10..12)?.try_into().ok()?) as usize;
    let topic = std::str::from_utf8(value.get(HEADER..HEADER + topic_len)?).ok()?;
    Some(Pending {
        key,
        topic: topic.to_owned(),
        qos,
        retain,
        payload: value.get(HEADER + topic_len..)?.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ForwardConfig;

    fn rule(to: &str, channels: &[&str], max_bytes: u64) -> Rule {
        let config = ForwardConfig {
            channels: channels.iter().map(|c| c.to_string()).collect(),
            to: to.into(),
            topic: "t/{site}/{channel}".into(),
            max_bytes,
            ..ForwardConfig::default()
        };
        Rule::new(&config, "s")
    }

    fn alert(seq: u64) -> Vec<u8> {
        format!(
            r#"{{"type":"alert","seq":{seq},"ts":1,"level":"info","text":"a{seq}","source":"x"}}"#
        )
        .into_bytes()
    }

    fn tick(seq: u64) -> Vec<u8> {
        format!(r#"{{"type":"tick","seq":{seq},"ts":1,"symbol":"USD","price":"1.5","source":"x"}}"#)
            .into_bytes()
    }

    fn seqs(outbox: &Outbox) -> Vec<u64> {
        let mut out = Vec::new();
        let mut cursor = None;
        while let Some(p) = outbox.next_after(cursor) {
            cursor = Some(p.key);
            let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
            out.push(v["seq"].as_u64().unwrap());
        }
        out
    }

    #[test]
    fn messages_survive_a_reopen_in_order_until_acked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let opened = Store::open(dir.path(), 1 << 20).unwrap();
            let mut store = opened.store;
            let rules = vec![
                rule("hq", &["alerts"], 1 << 20),
                rule("hq", &["prices"], 1 << 20),
            ];
            let boxes = Outboxes::open(&store, rules).unwrap();
            for seq in 1..=6 {
                let json = if seq % 2 == 0 { tick(seq) } else { alert(seq) };
                boxes.put(&json, "e1", 10).unwrap();
            }
            store.commit().unwrap();
            let outbox = boxes.for_feed("hq").unwrap();
            assert_eq!(seqs(&outbox), [1, 2, 3, 4, 5, 6]);
            let first = outbox.next_after(None).unwrap();
            assert_eq!(first.topic, "t/s/alerts");
            assert!(first.payload.ends_with(br#","epoch":"e1"}"#));
            outbox.acked(first.key);
            store.commit().unwrap();
        }
        let opened = Store::open(dir.path(), 1 << 20).unwrap();
        let rules = vec![
            rule("hq", &["alerts"], 1 << 20),
            rule("hq", &["prices"], 1 << 20),
        ];
        let boxes = Outboxes::open(&opened.store, rules).unwrap();
        let outbox = boxes.for_feed("hq").unwrap();
        assert_eq!(seqs(&outbox), [2, 3, 4, 5, 6]);
        boxes.put(&alert(7), "e1", 10).unwrap();
        assert_eq!(seqs(&outbox), [2, 3, 4, 5, 6, 7]);
        assert_eq!(boxes.stats()[0].queued.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn bounds_drop_the_oldest_and_count_them() {
        let dir = tempfile::tempdir().unwrap();
        let opened = Store::open(dir.path(), 1 << 20).unwrap();
        let boxes = Outboxes::open(&opened.store, vec![rule("hq", &["*"], 4096)]).unwrap();
        for seq in 1..=100 {
            boxes.put(&alert(seq), "e1", 1_000 + seq).unwrap();
        }
        let outbox = boxes.for_feed("hq").unwrap();
        let left = seqs(&outbox);
        let stats = &boxes.stats()[0];
        assert!(stats.bytes.load(Ordering::Relaxed) <= 4096);
        assert_eq!(*left.last().unwrap(), 100);
        assert_eq!(
            left.len() as u64 + stats.dropped.load(Ordering::Relaxed),
            100
        );
        // Three days and a bit later, everything is past max_age.
        boxes.trim_age(1_000 + 3 * 86_400_000 + 200).unwrap();
        assert!(seqs(&outbox).is_empty());
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 100);
        assert!(boxes.for_feed("other").is_none());
    }
}
