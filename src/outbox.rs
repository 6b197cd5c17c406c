//! One client's bounded outgoing queue, with tick conflation.
//!
//! The hub pushes frames without ever waiting; the client's writer task takes
//! everything queued in one go and writes it as one batch. When a client falls
//! behind, a new tick replaces the queued tick for the same symbol instead of
//! growing the queue; other events are kept until [`MAX_QUEUED_BYTES`], after
//! which the client is closed with 1013 and can resume with `since`.
//!
//! The lock here is held only to push one frame or to swap the whole queue
//! out; it never spans I/O. This module does no I/O and reads no clock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use async_tungstenite::tungstenite::Utf8Bytes;
use smol::channel::{Receiver, Sender, bounded};

/// Once this many frames wait for one client, ticks conflate: a tick replaces
/// the queued tick for its symbol. 64 frames is about 0.6 s of a busy 100
/// msg/s feed, long enough to ride out a short stall without losing a tick,
/// short enough that the scan for a same-symbol tick stays cheap.
pub const CONFLATE_AFTER: usize = 64;

/// A client with more than this many bytes waiting is closed with 1013. At
/// ~250 bytes a frame this is ~2,000 events: news and alerts, which are never
/// conflated, and at most one tick per symbol past [`CONFLATE_AFTER`]. 512
/// KiB × 1000 stalled clients would still fit a Pi's memory.
pub const MAX_QUEUED_BYTES: usize = 512 * 1024;

/// WebSocket close code: the server is going away (shutdown).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code: policy violation (op flood).
pub const CLOSE_POLICY: u16 = 1008;
/// WebSocket close code: message too big.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// WebSocket close code: try again later (the client fell too far behind).
pub const CLOSE_TRY_AGAIN: u16 = 1013;
/// WebSocket close code: normal closure.
pub const CLOSE_NORMAL: u16 = 1000;

/// One serialized frame, shared by every client it is sent to.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The JSON text; cloning shares the bytes.
    pub text: Utf8Bytes,
    /// The symbol, for ticks: the conflation key. `None` never conflates.
    pub key: Option<Arc<str>>,
}

/// A queued item: a frame, or an instruction to replay from the journal
/// at this point in the stream.
#[derive(Clone, Debug)]
pub enum Item {
    /// Send this frame.
    Frame(Frame),
    /// Send the journaled events in `after+1..=upto` on these channels
    /// first. Queued by the hub for a `subscribe` with `since`; live events
    /// queued after it have seqs above `upto`, so the seam has no gap and no
    /// duplicate.
    Replay(Replay),
}

/// A replay request, carried out by the client's writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replay {
    /// The client's `since`.
    pub after: u64,
    /// The last seq numbered before the subscription took effect.
    pub upto: u64,
    /// The channels of that subscribe.
    pub subs: crate::protocol::Subscriptions,
}

impl Item {
    fn len(&self) -> usize {
        match self {
            Item::Frame(f) => f.text.len(),
            Item::Replay(_) => 0,
        }
    }

    fn key(&self) -> Option<&str> {
        match self {
            Item::Frame(f) => f.key.as_deref(),
            Item::Replay(_) => None,
        }
    }
}

/// What happened to a pushed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// Appended to the queue.
    Queued,
    /// Replaced an older queued tick for the same symbol.
    Conflated,
    /// The queue went over [`MAX_QUEUED_BYTES`]: the outbox is now closing
    /// with 1013 and the frame was dropped.
    Overflow,
    /// The outbox was already closing; the frame was dropped.
    Closed,
}

/// Why and how the connection is to be closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    /// WebSocket close code.
    pub code: u16,
    /// Human-readable reason sent in the close frame.
    pub reason: &'static str,
}

/// A client's queue. Shared by the hub (pushes), the client's session task
/// (pushes replies) and its writer task (takes).
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    /// Rung after a push; capacity 1, so a ring while one is pending is free.
    doorbell: (Sender<()>, Receiver<()>),
    /// Closed (never sent on) to interrupt a writer stuck on a full socket.
    kill: (Sender<()>, Receiver<()>),
}

#[derive(Debug, Default)]
struct Inner {
    frames: VecDeque<Item>,
    bytes: usize,
    close: Option<Close>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            inner: Mutex::default(),
            doorbell: bounded(1),
            kill: bounded(1),
        }
    }
}

impl Outbox {
    /// A new, empty outbox.
    pub fn new() -> Arc<Outbox> {
        Arc::new(Outbox::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves only a queue of frames
        // behind, which is still consistent: keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame, conflating ticks when the client is behind. Never waits.
    pub fn push(&self, frame: Frame) -> Push {
        let mut inner = self.lock();
        if inner.close.is_some() {
            return Push::Closed;
        }
        let len = frame.text.len();
        if inner.frames.len() >= CONFLATE_AFTER
            && let Some(key) = &frame.key
            && let Some(at) = inner
                .frames
                .iter()
                .rposition(|queued| queued.key() == Some(&**key))
        {
            // The older tick leaves its place and the newer one goes to the
            // back, so the queue stays in seq order.
            if let Some(old) = inner.frames.remove(at) {
                inner.bytes -= old.len();
            }
            inner.bytes += len;
            inner.frames.push_back(Item::Frame(frame));
            drop(inner);
            self.ring();
            return Push::Conflated;
        }
        if inner.bytes + len > MAX_QUEUED_BYTES {
            inner.close = Some(Close {
                code: CLOSE_TRY_AGAIN,
                reason: "client too slow; reconnect and resume with since",
            });
            drop(inner);
            self.interrupt();
            return Push::Overflow;
        }
        inner.bytes += len;
        inner.frames.push_back(Item::Frame(frame));
        drop(inner);
        self.ring();
        Push::Queued
    }

    /// Queues a replay instruction (see [`Item::Replay`]).
    pub fn push_replay(&self, replay: Replay) -> Push {
        let mut inner = self.lock();
        if inner.close.is_some() {
            return Push::Closed;
        }
        inner.frames.push_back(Item::Replay(replay));
        drop(inner);
        self.ring();
        Push::Queued
    }

    /// Asks the writer to send what is queued, then close with `code`. The
    /// first close wins; later ones are ignored.
    pub fn close(&self, code: u16, reason: &'static str) {
        let mut inner = self.lock();
        if inner.close.is_none() {
            inner.close = Some(Close { code, reason });
        }
        drop(inner);
        self.ring();
    }

    /// Closes at once, dropping what is queued and interrupting a write in
    /// progress.
    pub fn abort(&self, code: u16, reason: &'static str) {
        let mut inner = self.lock();
        inner.frames.clear();
        inner.bytes = 0;
        if inner.close.is_none() {
            inner.close = Some(Close { code, reason });
        }
        drop(inner);
        self.interrupt();
    }

    /// Whether a close has been requested.
    pub fn is_closing(&self) -> bool {
        self.lock().close.is_some()
    }

    /// Moves every queued frame into `batch` (which should be empty; its
    /// capacity is reused) and returns the pending close, if any.
    pub fn take(&self, batch: &mut VecDeque<Item>) -> Option<Close> {
        let mut inner = self.lock();
        std::mem::swap(&mut inner.frames, batch);
        inner.bytes = 0;
        inner.close.clone()
    }

    /// Waits until something was pushed or a close was requested.
    pub async fn ready(&self) {
        // The sender lives in `self`, so this only fails if the kill switch
        // closed both channels; either way there is something to look at.
        let _ = self.doorbell.1.recv().await;
    }

    /// Waits until the outbox is aborted or overflows (completes at once after).
    pub async fn interrupted(&self) {
        let _ = self.kill.1.recv().await;
    }

    fn ring(&self) {
        let _ = self.doorbell.0.try_send(());
    }

    fn interrupt(&self) {
        self.kill.0.close();
        self.ring();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(symbol: &str, text: &str) -> Frame {
        Frame {
            text: Utf8Bytes::from(text.to_string()),
            key: Some(Arc::from(symbol)),
        }
    }

    fn news(text: &str) -> Frame {
        Frame {
            text: Utf8Bytes::from(text.to_string()),
            key: None,
        }
    }

    fn drain(outbox: &Outbox) -> (Vec<String>, Option<Close>) {
        let mut batch = VecDeque::new();
        let close = outbox.take(&mut batch);
        let texts = batch
            .iter()
            .map(|item| match item {
                Item::Frame(f) => f.text.to_string(),
                Item::Replay(r) => format!("replay {}..={}", r.after + 1, r.upto),
            })
            .collect();
        (texts, close)
    }

    #[test]
    fn replay_marker_keeps_its_place_and_never_conflates() {
        let outbox = Outbox::new();
        outbox.push(news("before"));
        outbox.push_replay(Replay {
            after: 3,
            upto: 9,
            subs: Default::default(),
        });
        outbox.push(tick("A", "a10"));
        assert_eq!(
            drain(&outbox),
            (
                vec!["before".into(), "replay 4..=9".into(), "a10".into()],
                None
            )
        );
    }

    #[test]
    fn frames_come_out_in_push_order() {
        let outbox = Outbox::new();
        assert_eq!(outbox.push(tick("A", "a1")), Push::Queued);
        assert_eq!(outbox.push(news("n1")), Push::Queued);
        assert_eq!(outbox.push(tick("A", "a2")), Push::Queued);
        assert_eq!(
            drain(&outbox),
            (vec!["a1".into(), "n1".into(), "a2".into()], None)
        );
        assert_eq!(drain(&outbox), (vec![], None));
    }

    #[test]
    fn ticks_conflate_per_symbol_once_the_client_is_behind() {
        let outbox = Outbox::new();
        for i in 0..CONFLATE_AFTER {
            outbox.push(news(&format!("n{i}")));
        }
        assert_eq!(outbox.push(tick("BTC", "btc1")), Push::Queued);
        assert_eq!(outbox.push(tick("ETH", "eth1")), Push::Queued);
        assert_eq!(outbox.push(tick("BTC", "btc2")), Push::Conflated);
        assert_eq!(outbox.push(news("late")), Push::Queued);
        let (frames, close) = drain(&outbox);
        assert_eq!(close, None);
        assert_eq!(frames.len(), CONFLATE_AFTER + 3);
        assert_eq!(&frames[CONFLATE_AFTER..], ["eth1", "btc2", "late"]);
    }

    #[test]
    fn news_past_the_byte_cap_closes_with_1013() {
        let outbox = Outbox::new();
        let big = "x".repeat(1024);
        let mut pushes = 0;
        loop {
            match outbox.push(news(&big)) {
                Push::Queued => pushes += 1,
                Push::Overflow => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(pushes, MAX_QUEUED_BYTES / 1024);
        assert_eq!(outbox.push(news("after")), Push::Closed);
        let (_, close) = drain(&outbox);
        assert_eq!(close.map(|c| c.code), Some(CLOSE_TRY_AGAIN));
    }

    #[test]
    fn overflow_interrupts_a_stuck_writer() {
        let outbox = Outbox::new();
        let big = "x".repeat(MAX_QUEUED_BYTES);
        outbox.push(news(&big));
        assert_eq!(outbox.push(news("y")), Push::Overflow);
        smol::block_on(outbox.interrupted());
    }

    #[test]
    fn first_close_wins() {
        let outbox = Outbox::new();
        outbox.close(CLOSE_GOING_AWAY, "shutdown");
        outbox.close(CLOSE_NORMAL, "bye");
        let (_, close) = drain(&outbox);
        assert_eq!(close.map(|c| c.code), Some(CLOSE_GOING_AWAY));
    }
}
