//! One client's bounded outgoing queue, with tick conflation.
//!
//! The hub pushes frames without ever waiting; the client's writer task takes
//! everything queued in one go and writes it as one batch. When a client falls
//! behind, a new tick replaces the queued tick for the same symbol instead of
//! growing the queue; other events are kept until [`MAX_QUEUED_BYTES`], after
//! which the client is closed with 1013 and can resume with `since`.
//!
//! The writer waits on a waker kept in the outbox itself: a push wakes it
//! only if it is waiting, so a burst of pushes costs one wake-up, and the
//! hub can push quietly ([`Outbox::push_quiet`]) and deal with the client
//! once for all the events of a fan-out batch: wake its writer
//! ([`Outbox::ring`]), or, while the writer is idle, take the frames and
//! write them itself ([`Outbox::begin_flush`], [`Outbox::end_flush`]).
//! Waiting allocates nothing.
//! Control bytes (pongs, pings, close frames) that the WebSocket protocol
//! layer writes for this client are queued here too, so that only one writer
//! at a time (the hub's flush or the writer task) touches the socket.
//!
//! The lock here is held only to push one frame or to swap the whole queue
//! out; it never spans I/O, and the hub and the writer run on one executor
//! thread, so it is never contended in practice. This module does no I/O
//! and reads no clock.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use async_tungstenite::tungstenite::Utf8Bytes;

/// Once this many frames wait for one client, ticks conflate: a tick replaces
/// the queued tick for its symbol. 64 frames is about 0.6 s of a busy 100
/// msg/s feed, long enough to ride out a short stall without losing a tick.
/// Finding the queued tick is a hash lookup, so a stalled client with
/// thousands of symbols queued costs the hub no more than a live one.
pub const CONFLATE_AFTER: usize = 64;

/// A client with more than this many bytes waiting is closed with 1013. At
/// ~250 bytes a frame this is ~2,000 events: news and alerts, which are never
/// conflated, and at most one tick per symbol past [`CONFLATE_AFTER`]. 512
/// KiB × 1000 stalled clients would still fit a Pi's memory.
pub const MAX_QUEUED_BYTES: usize = 512 * 1024;

/// WebSocket close code: the server is going away (shutdown).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code: invalid frame payload data (a text frame that is
/// not valid UTF-8; RFC 6455 §7.4.1).
pub const CLOSE_INVALID_DATA: u16 = 1007;
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
}

/// What the writer takes in one go: the queued items in order. A tick that
/// was conflated away leaves an empty slot behind, skipped by
/// [`Batch::iter`].
#[derive(Debug, Default)]
pub struct Batch {
    slots: VecDeque<Option<Item>>,
}

impl Batch {
    /// Whether there is nothing to send.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }

    /// The items, in order.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &Item> {
        self.slots.iter().flatten()
    }

    /// The item in slot `i`, if that slot holds one. Slots run from 0 to
    /// [`Batch::slots`].
    pub fn get(&self, i: usize) -> Option<&Item> {
        self.slots.get(i).and_then(Option::as_ref)
    }

    /// How many slots (items and empty ones) there are.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Empties the batch, keeping its capacity.
    pub fn clear(&mut self) {
        self.slots.clear();
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

/// What [`Outbox::take`] found besides the frames.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Taken {
    /// A close was requested: send what was taken, then close with this.
    pub close: Option<Close>,
    /// The outbox was aborted or overflowed: stop at once.
    pub killed: bool,
}

/// A client's queue. Shared by the hub (pushes), the client's session task
/// (pushes replies and control bytes) and its writer task (takes).
#[derive(Debug, Default)]
pub struct Outbox {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    frames: VecDeque<Option<Item>>,
    /// Frames (and replay markers) in `frames`, not counting empty slots.
    live: usize,
    /// Slot index in `frames` of each symbol's queued tick, kept only while
    /// the queue is past [`CONFLATE_AFTER`].
    ticks: HashMap<Arc<str>, usize>,
    /// Whether `ticks` indexes every queued tick.
    indexed: bool,
    /// Encoded WebSocket frames (pong, ping, close) to send before the next
    /// batch.
    control: Vec<u8>,
    bytes: usize,
    close: Option<Close>,
    /// Aborted or overflowed: the writer must stop, even mid-write.
    killed: bool,
    /// The writer's waker, while it waits.
    waker: Option<Waker>,
    /// What the writer waits for.
    waiting: Waiting,
    /// A quiet push found the writer waiting and owes it a [`Outbox::ring`].
    ring_owed: bool,
    /// Replay markers queued.
    replays: usize,
    /// Someone else is writing taken frames (see [`Outbox::begin_flush`]):
    /// the writer must not write until [`Outbox::end_flush`].
    flushing: bool,
}

/// What the writer task is waiting for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Waiting {
    /// Nothing: it is running.
    #[default]
    No,
    /// Anything to send, a close or a kill.
    Work,
    /// Only a kill (it is in the middle of a write).
    Kill,
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

    /// Queues a frame, conflating ticks when the client is behind, and wakes
    /// the writer. Never waits.
    pub fn push(&self, frame: Frame) -> Push {
        let mut inner = self.lock();
        let pushed = inner.push(frame);
        match pushed {
            Push::Queued | Push::Conflated => inner.wake_for_work(),
            Push::Overflow => inner.wake_for_kill(),
            Push::Closed => {}
        }
        pushed
    }

    /// Queues a frame like [`Outbox::push`] but does not wake the writer.
    /// The second value is true when the writer is waiting and this is the
    /// first quiet push since: the caller then owes the outbox one
    /// [`Outbox::ring`], after the rest of its batch. An overflow wakes the
    /// writer at once.
    pub fn push_quiet(&self, frame: Frame) -> (Push, bool) {
        let mut inner = self.lock();
        let pushed = inner.push(frame);
        let owe = match pushed {
            Push::Queued | Push::Conflated => {
                let owe = inner.waiting == Waiting::Work && !inner.ring_owed;
                inner.ring_owed |= owe;
                owe
            }
            Push::Overflow => {
                inner.wake_for_kill();
                false
            }
            Push::Closed => false,
        };
        (pushed, owe)
    }

    /// Wakes the writer if it waits for work: what [`Outbox::push_quiet`]
    /// left owed.
    pub fn ring(&self) {
        let mut inner = self.lock();
        inner.ring_owed = false;
        inner.wake_for_work();
    }

    /// Queues a replay instruction (see [`Item::Replay`]).
    pub fn push_replay(&self, replay: Replay) -> Push {
        let mut inner = self.lock();
        if inner.close.is_some() {
            return Push::Closed;
        }
        inner.frames.push_back(Some(Item::Replay(replay)));
        inner.live += 1;
        inner.replays += 1;
        inner.wake_for_work();
        Push::Queued
    }

    /// Queues encoded control frames (written by the WebSocket layer: pongs,
    /// pings, close frames) to go out before the next batch. They count
    /// towards [`MAX_QUEUED_BYTES`]; past it (a client that floods pings
    /// and never reads) the outbox is killed with 1013 and this returns
    /// false. After a close or a kill they are still queued: the close
    /// frame itself is one of them.
    pub fn push_control(&self, bytes: &[u8]) -> bool {
        let mut inner = self.lock();
        if inner.bytes + bytes.len() > MAX_QUEUED_BYTES {
            inner.kill(CLOSE_TRY_AGAIN, TOO_SLOW);
            inner.wake_for_kill();
            return false;
        }
        inner.bytes += bytes.len();
        inner.control.extend_from_slice(bytes);
        inner.wake_for_work();
        true
    }

    /// Asks the writer to send what is queued, then close with `code`. The
    /// first close wins; later ones are ignored.
    pub fn close(&self, code: u16, reason: &'static str) {
        let mut inner = self.lock();
        if inner.close.is_none() {
            inner.close = Some(Close { code, reason });
        }
        inner.wake_for_work();
    }

    /// Closes at once, dropping what is queued and interrupting a write in
    /// progress.
    pub fn abort(&self, code: u16, reason: &'static str) {
        let mut inner = self.lock();
        inner.kill(code, reason);
        inner.wake_for_kill();
    }

    /// Takes the queued frames into `batch` so that the caller writes them
    /// itself, at once, without waking the writer task: only when that task
    /// is idle and nothing but frames is queued (no control bytes, replay,
    /// close or kill). Until [`Outbox::end_flush`] the writer does not
    /// write. Otherwise this rings the writer, like [`Outbox::ring`], and
    /// returns false.
    pub fn begin_flush(&self, batch: &mut Batch) -> bool {
        let mut inner = self.lock();
        inner.ring_owed = false;
        let idle = inner.waiting == Waiting::Work && !inner.flushing;
        if idle
            && inner.live > 0
            && inner.replays == 0
            && inner.control.is_empty()
            && inner.close.is_none()
            && !inner.killed
        {
            std::mem::swap(&mut inner.frames, &mut batch.slots);
            inner.reset_queue();
            inner.flushing = true;
            return true;
        }
        inner.wake_for_work();
        false
    }

    /// Ends what [`Outbox::begin_flush`] began. `rest`, the bytes the socket
    /// did not take, goes out first, through the writer task, which is
    /// woken if there is anything for it.
    pub fn end_flush(&self, rest: &[u8]) {
        let mut inner = self.lock();
        inner.flushing = false;
        if !rest.is_empty() {
            inner.control.splice(0..0, rest.iter().copied());
            inner.bytes += rest.len();
        }
        if inner.has_work() {
            inner.wake_for_work();
        }
    }

    /// Moves every queued item into `batch` and every control byte into
    /// `control` (both should be empty; their capacity is reused) and says
    /// whether a close is pending or the outbox was killed.
    pub fn take(&self, batch: &mut Batch, control: &mut Vec<u8>) -> Taken {
        let mut inner = self.lock();
        std::mem::swap(&mut inner.frames, &mut batch.slots);
        std::mem::swap(&mut inner.control, control);
        inner.reset_queue();
        inner.ring_owed = false;
        Taken {
            close: inner.close.clone(),
            killed: inner.killed,
        }
    }

    /// Ready when there is something to take, a close or a kill; otherwise
    /// the writer's waker is kept until there is.
    pub fn poll_work(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.lock();
        if inner.has_work() && !inner.flushing {
            inner.waiting = Waiting::No;
            return Poll::Ready(());
        }
        inner.wait(Waiting::Work, cx);
        Poll::Pending
    }

    /// Ready once the outbox is aborted or overflows.
    pub fn poll_killed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.lock();
        if inner.killed {
            inner.waiting = Waiting::No;
            return Poll::Ready(());
        }
        inner.wait(Waiting::Kill, cx);
        Poll::Pending
    }

    /// Waits until the outbox is aborted or overflows (completes at once
    /// after).
    pub async fn interrupted(&self) {
        poll_fn(|cx| self.poll_killed(cx)).await;
    }
}

/// The reason sent with 1013.
const TOO_SLOW: &str = "client too slow; reconnect and resume with since";

impl Inner {
    fn push(&mut self, frame: Frame) -> Push {
        if self.close.is_some() {
            return Push::Closed;
        }
        let len = frame.text.len();
        if self.live >= CONFLATE_AFTER
            && let Some(key) = &frame.key
        {
            if !self.indexed {
                self.index_ticks();
            }
            if let Some(at) = self.ticks.get(key).copied() {
                // The older tick leaves its place and the newer one goes to
                // the back, so the queue stays in seq order.
                if let Some(old) = self.frames.get_mut(at).and_then(Option::take) {
                    self.bytes -= old.len();
                }
                self.bytes += len;
                self.ticks.insert(key.clone(), self.frames.len());
                self.frames.push_back(Some(Item::Frame(frame)));
                self.compact_if_sparse();
                return Push::Conflated;
            }
        }
        if self.bytes + len > MAX_QUEUED_BYTES {
            self.kill(CLOSE_TRY_AGAIN, TOO_SLOW);
            return Push::Overflow;
        }
        self.bytes += len;
        if self.indexed
            && let Some(key) = &frame.key
        {
            self.ticks.insert(key.clone(), self.frames.len());
        }
        self.frames.push_back(Some(Item::Frame(frame)));
        self.live += 1;
        Push::Queued
    }

    /// Indexes every queued tick by symbol (the newest wins), once the queue
    /// has become long enough to conflate.
    fn index_ticks(&mut self) {
        self.ticks.clear();
        for (i, slot) in self.frames.iter().enumerate() {
            if let Some(Item::Frame(Frame { key: Some(key), .. })) = slot {
                self.ticks.insert(key.clone(), i);
            }
        }
        self.indexed = true;
    }

    /// Drops the empty slots conflation left once they outnumber the items,
    /// so a client that never reads costs memory for its items only.
    fn compact_if_sparse(&mut self) {
        if self.frames.len() > 2 * self.live + CONFLATE_AFTER {
            self.frames.retain(Option::is_some);
            self.index_ticks();
        }
    }

    /// Forgets the queue's bookkeeping once its frames were taken or dropped.
    fn reset_queue(&mut self) {
        self.live = 0;
        self.replays = 0;
        self.bytes = self.control.len();
        self.ticks.clear();
        self.indexed = false;
    }

    fn has_work(&self) -> bool {
        self.live > 0 || !self.control.is_empty() || self.close.is_some() || self.killed
    }

    fn kill(&mut self, code: u16, reason: &'static str) {
        self.frames.clear();
        self.control.clear();
        self.reset_queue();
        self.killed = true;
        if self.close.is_none() {
            self.close = Some(Close { code, reason });
        }
    }

    fn wait(&mut self, what: Waiting, cx: &mut Context<'_>) {
        self.waiting = what;
        match &self.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => self.waker = Some(cx.waker().clone()),
        }
    }

    /// Wakes the writer if it waits for work. Under the lock, by reference:
    /// waking only schedules the task, and the waker stays for next time.
    fn wake_for_work(&mut self) {
        if self.waiting == Waiting::Work {
            self.waiting = Waiting::No;
            if let Some(waker) = &self.waker {
                waker.wake_by_ref();
            }
        }
    }

    /// Wakes the writer if it waits at all.
    fn wake_for_kill(&mut self) {
        if self.waiting != Waiting::No {
            self.waiting = Waiting::No;
            if let Some(waker) = &self.waker {
                waker.wake_by_ref();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

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
        let mut batch = Batch::default();
        let taken = outbox.take(&mut batch, &mut Vec::new());
        let texts = batch
            .iter()
            .map(|item| match item {
                Item::Frame(f) => f.text.to_string(),
                Item::Replay(r) => format!("replay {}..={}", r.after + 1, r.upto),
            })
            .collect();
        (texts, taken.close)
    }

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// An outbox whose writer waits for work with a counting waker.
    fn waiting() -> (Arc<Outbox>, Arc<Count>) {
        let outbox = Outbox::new();
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(outbox.poll_work(&mut cx).is_pending());
        (outbox, count)
    }

    fn wakes(count: &Count) -> usize {
        count.0.load(Ordering::SeqCst)
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
    fn ticks_queued_before_the_queue_grew_long_conflate_too() {
        let outbox = Outbox::new();
        outbox.push(tick("BTC", "btc1"));
        for i in 0..CONFLATE_AFTER {
            outbox.push(news(&format!("n{i}")));
        }
        assert_eq!(outbox.push(tick("BTC", "btc2")), Push::Conflated);
        let (frames, _) = drain(&outbox);
        assert_eq!(frames.len(), CONFLATE_AFTER + 1);
        assert_eq!(frames[0], "n0");
        assert_eq!(frames[CONFLATE_AFTER], "btc2");
    }

    #[test]
    fn a_stalled_client_with_many_symbols_stays_bounded_and_in_seq_order() {
        // Regression: finding the queued tick was a scan of the whole queue
        // per push; now it is a lookup, and the empty slots conflation
        // leaves are compacted away.
        let outbox = Outbox::new();
        let symbols = 2000;
        for round in 0..5 {
            for s in 0..symbols {
                outbox.push(tick(&format!("S{s}"), &format!("S{s}-{round}")));
            }
        }
        let inner = outbox.lock();
        assert_eq!(inner.live, symbols);
        assert!(inner.frames.len() <= 2 * symbols + CONFLATE_AFTER);
        drop(inner);
        let (frames, _) = drain(&outbox);
        assert_eq!(frames.len(), symbols);
        // The first CONFLATE_AFTER ticks of round 0 were queued before the
        // queue was long; every one has since been replaced by round 4's,
        // in the order round 4 sent them.
        let expected: Vec<String> = (0..symbols).map(|s| format!("S{s}-4")).collect();
        assert_eq!(frames, expected);
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
        let mut batch = Batch::default();
        let taken = outbox.take(&mut batch, &mut Vec::new());
        assert!(batch.is_empty(), "an overflow drops what was queued");
        assert!(taken.killed);
        assert_eq!(taken.close.map(|c| c.code), Some(CLOSE_TRY_AGAIN));
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

    #[test]
    fn a_burst_of_pushes_wakes_a_waiting_writer_once() {
        let (outbox, count) = waiting();
        for i in 0..10 {
            outbox.push(news(&format!("n{i}")));
        }
        assert_eq!(wakes(&count), 1);
    }

    #[test]
    fn quiet_pushes_owe_one_ring_and_wake_nobody() {
        let (outbox, count) = waiting();
        assert_eq!(outbox.push_quiet(news("a")), (Push::Queued, true));
        assert_eq!(outbox.push_quiet(news("b")), (Push::Queued, false));
        assert_eq!(wakes(&count), 0);
        outbox.ring();
        assert_eq!(wakes(&count), 1);
        outbox.ring();
        assert_eq!(wakes(&count), 1, "a second ring finds the writer awake");
        assert_eq!(drain(&outbox).0, ["a", "b"]);
    }

    #[test]
    fn a_writing_writer_is_woken_by_a_kill_not_by_frames() {
        let outbox = Outbox::new();
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(outbox.poll_killed(&mut cx).is_pending());
        outbox.push(news("a"));
        assert_eq!(wakes(&count), 0);
        outbox.abort(CLOSE_NORMAL, "idle");
        assert_eq!(wakes(&count), 1);
        assert!(outbox.poll_killed(&mut cx).is_ready());
    }

    #[test]
    fn control_bytes_count_towards_the_cap() {
        let outbox = Outbox::new();
        assert!(outbox.push_control(&[0x8a, 0]));
        let mut control = Vec::new();
        outbox.take(&mut Batch::default(), &mut control);
        assert_eq!(control, [0x8a, 0]);
        let big = vec![0u8; MAX_QUEUED_BYTES];
        assert!(outbox.push_control(&big));
        assert!(!outbox.push_control(&[0x8a, 0]));
        assert!(outbox.take(&mut Batch::default(), &mut control).killed);
    }
}
