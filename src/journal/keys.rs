//! Idempotency keys of publishes (docs/durability.md §17): which seq a
//! `publish` with a `key` got, so that a repeat (a client that resends
//! after a lost ack) is answered with the first seq instead of becoming a
//! second event.
//!
//! Two halves of one window. [`RecentKeys`] is the hub's: the newest
//! [`KEY_WINDOW`] keys in memory, looked up on every keyed publish. The
//! journal writer keeps the same window in the sled tree [`TREE`] (seq →
//! key), written only once the event's own commit is durable, so a
//! remembered key never points at an event a crash lost; [`load`] reads it
//! back at start-up. A key the window has dropped is new again.
//!
//! This module does no I/O of its own: the tree is the store's.

use std::collections::{HashMap, VecDeque};

/// Keyed publishes remembered, newest first. A phone's offline queue
/// (tablo.js) holds at most 256 publishes, so this covers the queues of a
/// dozen clients that come back at once, and days of a kiosk's keyed
/// publishes; at ≤ 128-byte keys it costs well under 1 MiB.
pub const KEY_WINDOW: usize = 4096;

/// The sled tree that keeps the window: big-endian seq → key bytes.
pub const TREE: &str = "publish_keys";

/// The hub's window of keys: key → the seq its first publish got.
#[derive(Debug, Default)]
pub struct RecentKeys {
    by_key: HashMap<Box<str>, u64>,
    order: VecDeque<(u64, Box<str>)>,
}

impl RecentKeys {
    /// An empty window.
    pub fn new() -> RecentKeys {
        RecentKeys::default()
    }

    /// The window as [`load`] read it (oldest first).
    pub fn from_loaded(loaded: Vec<(u64, String)>) -> RecentKeys {
        let mut keys = RecentKeys::new();
        for (seq, key) in loaded {
            keys.insert(&key, seq);
        }
        keys
    }

    /// The seq the first publish with `key` got, if it is in the window.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    /// Remembers that `key` got `seq`; returns the seq of the key that fell
    /// out of the window, if one did.
    pub fn insert(&mut self, key: &str, seq: u64) -> Option<u64> {
        if self.by_key.contains_key(key) {
            return None;
        }
        let key: Box<str> = key.into();
        self.by_key.insert(key.clone(), seq);
        self.order.push_back((seq, key));
        if self.order.len() <= KEY_WINDOW {
            return None;
        }
        let (old_seq, old_key) = self.order.pop_front()?;
        self.by_key.remove(&old_key);
        Some(old_seq)
    }

    /// Keys remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.order.len()
    }
}

/// Stores `key` for `seq` in `tree`, and forgets `evicted` (the seq whose
/// key fell out of the window).
pub fn put(tree: &sled::Tree, seq: u64, key: &str, evicted: Option<u64>) -> sled::Result<()> {
    tree.insert(seq.to_be_bytes(), key.as_bytes())?;
    if let Some(old) = evicted {
        tree.remove(old.to_be_bytes())?;
    }
    Ok(())
}

/// Forgets `seq`'s key (it fell out of the window before its commit).
pub fn forget(tree: &sled::Tree, seq: u64) -> sled::Result<()> {
    tree.remove(seq.to_be_bytes()).map(drop)
}

/// The window in `tree`, oldest first; entries past [`KEY_WINDOW`] (left by
/// a crash between a write and its eviction) are removed.
pub fn load(tree: &sled::Tree) -> sled::Result<Vec<(u64, String)>> {
    let mut newest = Vec::new();
    let mut extra = Vec::new();
    for entry in tree.iter().rev() {
        let (seq, key) = entry?;
        if newest.len() >= KEY_WINDOW {
            extra.push(seq);
            continue;
        }
        let (Ok(seq), Ok(key)) = (<[u8; 8]>::try_from(seq.as_ref()), std::str::from_utf8(&key))
        else {
            extra.push(seq);
            continue;
        };
        newest.push((u64::from_be_bytes(seq), key.to_owned()));
    }
    for seq in extra {
        tree.remove(seq)?;
    }
    newest.reverse();
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_keeps_the_newest_keys() {
        let mut keys = RecentKeys::new();
        assert_eq!(keys.insert("a", 10), None);
        assert_eq!(keys.insert("a", 11), None, "a repeat keeps its first seq");
        assert_eq!(keys.get("a"), Some(10));
        for i in 1..KEY_WINDOW as u64 {
            assert_eq!(keys.insert(&format!("k{i}"), 10 + i), None);
        }
        assert_eq!(keys.len(), KEY_WINDOW);
        assert_eq!(keys.insert("newest", 99_999), Some(10));
        assert_eq!(keys.get("a"), None);
        assert_eq!(keys.get("newest"), Some(99_999));
        assert_eq!(keys.len(), KEY_WINDOW);
    }

    #[test]
    fn the_tree_round_trips_and_drops_what_is_past_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree(TREE).unwrap();
        put(&tree, 5, "five", None).unwrap();
        put(&tree, 7, "seven", None).unwrap();
        put(&tree, 9, "nine", Some(5)).unwrap();
        assert_eq!(
            load(&tree).unwrap(),
            vec![(7, "seven".to_owned()), (9, "nine".to_owned())]
        );
        forget(&tree, 7).unwrap();
        for seq in 100..100 + KEY_WINDOW as u64 + 3 {
            put(&tree, seq, &format!("k{seq}"), None).unwrap();
        }
        let loaded = load(&tree).unwrap();
        assert_eq!(loaded.len(), KEY_WINDOW);
        assert_eq!(loaded[0].0, 103);
        assert_eq!(tree.len(), KEY_WINDOW);
        let keys = RecentKeys::from_loaded(loaded);
        assert_eq!(keys.get("k103"), Some(103));
        assert_eq!(keys.get("nine"), None);
    }
}
