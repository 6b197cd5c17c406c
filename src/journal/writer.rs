//! The journal writer: one thread that owns the [`Store`], appends events in
//! the order the hub numbered them, and group-commits them.
//!
//! The hub hands events over with a non-blocking `try_send`, so fan-out never
//! waits for the disk. At most every `flush_interval_ms` the writer commits
//! (sled flush plus fsync, see `store`), extends the seq reservation, answers
//! the publishes that are now durable and trims old events. While the disk
//! fails (full, read-only, gone) the writer drops events, says so in
//! [`JournalStatus`] (so `/healthz` answers 503), logs at most once a minute
//! and tries to reopen the journal every few seconds; the seqs it could not
//! store are recorded as a gap once it can write again.
//!
//! This thread never touches a socket except to push ack frames into a
//! client's [`Outbox`], which never blocks.
//!
//! The writer comes round at least every [`MAX_QUIET`] even when idle, and
//! beats its [`Heartbeat`] each time, so the service watchdog can tell an
//! idle writer from one stuck in the disk. An idle round writes nothing: a
//! commit happens only when something changed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Utf8Bytes;
use serde_json::{Value, json};
use smol::Timer;
use smol::channel::{Receiver, Sender, TrySendError, bounded};
use smol::future::or;

use crate::clock::wall_ms;
use crate::heartbeat::{Heartbeat, MAX_QUIET};
use crate::journal::forward::{OutboxStats, Outboxes};
use crate::journal::store::{Record, Retention, Store, StoreError};
use crate::logger::RateLimited;
use crate::metrics::Histogram;
use crate::outbox::{Frame, Outbox};
use crate::protocol::{ErrorCode, ProtoError};

/// Capacity of the writer's inbox. ~16 s of a busy 1,000 events/s: when it
/// is full the disk is stuck, and the hub drops events from the journal
/// (never from fan-out) instead of waiting; the writer records them as a gap.
pub const INBOX: usize = 16 * 1024;

/// Seqs reserved ahead of the last stored event. A crash loses at most this
/// many seqs to the recorded gap; the reservation is extended at every commit
/// that finds less than half of it left, so the hub never catches up with it
/// unless the disk has been failing for a long time.
pub const RESERVE_BLOCK: u64 = 100_000;

/// Events per journal read during a replay: big enough to amortise the
/// round trip to this thread, small enough that one client's backlog does not
/// hold up commits.
pub const REPLAY_PAGE: usize = 256;

/// Publishes waiting for their commit; past this, the hub refuses publishes.
pub const MAX_PENDING_ACKS: usize = 10_000;

/// How often to try to reopen a journal whose disk failed.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// A failing disk is logged at most this often.
pub const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Events trimmed per commit at most, so retention never stalls appends.
pub const TRIM_BATCH: usize = 2_000;

/// What the writer is told.
#[derive(Debug)]
pub enum JournalMsg {
    /// Store a numbered event (and update the snapshot tree).
    Append {
        /// Its seq.
        seq: u64,
        /// Its ts.
        ts: u64,
        /// The exact bytes sent to clients.
        json: Utf8Bytes,
        /// Snapshot key this event becomes the latest value of.
        put: Option<Box<str>>,
        /// Snapshot key that falls out (e.g. the 21st-newest news item).
        remove: Option<Box<str>>,
    },
    /// Push `{"type":"ack","id":..,"seq":..}` to `outbox` once `seq` is
    /// durable.
    Ack {
        /// The published event's seq.
        seq: u64,
        /// The client's request id.
        id: Option<Value>,
        /// Where the ack goes.
        outbox: Arc<Outbox>,
    },
    /// Read up to `limit` records after `after`.
    Read {
        /// Start after this seq.
        after: u64,
        /// At most this many records.
        limit: usize,
        /// Where the records go (empty if the journal is unavailable).
        reply: Sender<Vec<Record>>,
    },
    /// The newest `n` records.
    Tail {
        /// How many.
        n: usize,
        /// Where they go.
        reply: Sender<Vec<Record>>,
    },
    /// The hub is stopping; `last_seq` is the last seq it handed out (some
    /// may never have reached the writer). Sent last.
    Close {
        /// The hub's last seq.
        last_seq: u64,
    },
    /// Persist a small named value with the next commit.
    PutMeta {
        /// Name.
        key: String,
        /// Value.
        value: Vec<u8>,
    },
}

/// Upper bounds of the commit-time histogram in µs (0.5 ms to 2.5 s): a
/// flush and fsync takes about a millisecond on an SSD, tens of them on an SD
/// card, and past a second on a card that is wearing out.
pub const COMMIT_BUCKETS_US: [u64; 12] = [
    500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000,
];

/// Group-commit durations in buckets of [`COMMIT_BUCKETS_US`].
#[derive(Debug)]
pub struct CommitTimes(pub Histogram);

impl Default for CommitTimes {
    fn default() -> CommitTimes {
        CommitTimes(Histogram::new(&COMMIT_BUCKETS_US))
    }
}

/// The writer's health and counters, written only by the writer thread and
/// read by the hub for stats, `/healthz` and `/metrics`.
#[derive(Debug, Default)]
pub struct JournalStatus {
    /// Highest seq known to be on stable storage.
    pub durable_seq: AtomicU64,
    /// The durable "reserved up to" mark.
    pub reserved: AtomicU64,
    /// Oldest retained seq (0: none).
    pub first_seq: AtomicU64,
    /// Seqs below this were trimmed by retention (0: nothing trimmed).
    pub trimmed_below: AtomicU64,
    /// After a reopen, the hub numbers from here on (the seqs before it are
    /// the recorded lost range); 0 when there is nothing to skip.
    pub resume_at: AtomicU64,
    /// Newest stored seq (0: none).
    pub last_seq: AtomicU64,
    /// Events held.
    pub events: AtomicU64,
    /// Bytes of event JSON held.
    pub bytes: AtomicU64,
    /// sled's size on disk.
    pub disk_bytes: AtomicU64,
    /// Whether the last write or commit worked.
    pub healthy: AtomicBool,
    /// Why not, when not.
    pub error: Mutex<Option<String>>,
    /// Group commits done.
    pub commits: AtomicU64,
    /// Duration of the last commit, µs.
    pub last_commit_us: AtomicU64,
    /// Every commit's duration, for the `/metrics` histogram.
    pub commit_times: CommitTimes,
    /// Events the journal could not store (disk failure or full inbox).
    pub dropped: AtomicU64,
    /// Publishes waiting for their commit.
    pub pending_acks: AtomicU64,
    /// Each `[[forward]]` rule's outbox counters, in config order.
    pub forward: Vec<Arc<OutboxStats>>,
}

impl JournalStatus {
    /// Why the journal cannot be written, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.healthy.load(Ordering::Acquire) {
            None
        } else {
            let error = self.error.lock().unwrap_or_else(|e| e.into_inner());
            Some(
                error
                    .clone()
                    .unwrap_or_else(|| "journal not writable".into()),
            )
        }
    }

    /// `{"events","bytes","first_seq","last_seq",..}` for stats and healthz.
    pub fn to_json(&self) -> Value {
        let opt = |v: u64| if v == 0 { Value::Null } else { json!(v) };
        json!({
            "events": self.events.load(Ordering::Relaxed),
            "bytes": self.bytes.load(Ordering::Relaxed),
            "first_seq": opt(self.first_seq.load(Ordering::Relaxed)),
            "trimmed_below": self.trimmed_below.load(Ordering::Relaxed),
            "last_seq": opt(self.last_seq.load(Ordering::Relaxed)),
            "durable_seq": self.durable_seq.load(Ordering::Relaxed),
            "disk_bytes": self.disk_bytes.load(Ordering::Relaxed),
            "writable": self.healthy.load(Ordering::Relaxed),
            "error": self.problem(),
        })
    }
}

/// Where the journal lives and how it is run.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Journal directory (for reopening after a failure).
    pub dir: PathBuf,
    /// sled cache bound.
    pub cache_bytes: u64,
    /// Group-commit interval.
    pub flush_interval: Duration,
    /// Retention limits.
    pub retention: Retention,
    /// The outboxes of `[[forward]]`, filled with the events they forward
    /// before the commit that holds them (`journal::forward`).
    pub forward: Option<Outboxes>,
}

/// What the hub and sessions hold of the writer: its inbox and its status.
#[derive(Clone, Debug)]
pub struct JournalHandle {
    /// The writer's inbox.
    pub tx: Sender<JournalMsg>,
    /// Its health and counters.
    pub status: Arc<JournalStatus>,
}

impl JournalHandle {
    /// Hands an event to the writer without waiting; false if the inbox is
    /// full (the event is then missing from the journal, recorded as a gap).
    pub fn try_append(&self, msg: JournalMsg) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                self.status.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// The running writer thread. Dropping the last [`JournalHandle`] and
/// calling [`Journal::close`] stops it cleanly.
pub struct Journal {
    handle: JournalHandle,
    thread: Option<JoinHandle<()>>,
    heart: Arc<Heartbeat>,
}

impl Journal {
    /// Starts the writer thread on an open store. `last_seq` is the last seq
    /// handed out before this run (next_seq - 1). The reservation is made
    /// durable before this returns, so the hub may number at once.
    pub fn start(
        mut store: Store,
        epoch: String,
        last_seq: u64,
        config: WriterConfig,
    ) -> Result<Journal, StoreError> {
        store.reserve(last_seq + RESERVE_BLOCK)?;
        store.commit()?;
        let status = Arc::new(JournalStatus {
            forward: config
                .forward
                .as_ref()
                .map(Outboxes::stats)
                .unwrap_or_default(),
            ..JournalStatus::default()
        });
        let (tx, rx) = bounded(INBOX);
        let heart = Heartbeat::new("journal");
        let mut writer = Writer {
            heart: heart.clone(),
            store: Some(store),
            status: status.clone(),
            config,
            last_appended: last_seq,
            reserved: last_seq + RESERVE_BLOCK,
            dirty: false,
            forwarded: false,
            acks: Vec::new(),
            skip_through: 0,
            error_log: RateLimited::new(ERROR_LOG_INTERVAL),
            next_retry: Instant::now(),
            final_seq: None,
            epoch,
        };
        writer.publish_stats();
        status.durable_seq.store(last_seq, Ordering::Release);
        status.healthy.store(true, Ordering::Release);
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || smol::block_on(writer.run(rx)))
            .map_err(|source| StoreError::Io {
                path: PathBuf::from("<journal thread>"),
                source,
            })?;
        Ok(Journal {
            handle: JournalHandle { tx, status },
            thread: Some(thread),
            heart,
        })
    }

    /// The writer thread's liveness, for the service watchdog.
    pub fn heartbeat(&self) -> Arc<Heartbeat> {
        self.heart.clone()
    }

    /// A handle for the hub and the sessions.
    pub fn handle(&self) -> JournalHandle {
        self.handle.clone()
    }

    /// Stops the writer after a final commit and a clean close. Waits for
    /// the thread.
    pub fn close(mut self) {
        self.handle.tx.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Writer {
    heart: Arc<Heartbeat>,
    store: Option<Store>,
    status: Arc<JournalStatus>,
    config: WriterConfig,
    last_appended: u64,
    reserved: u64,
    dirty: bool,
    /// Whether a forward outbox got something since the last commit.
    forwarded: bool,
    acks: Vec<(u64, Option<Value>, Arc<Outbox>)>,
    /// After a reopen, seqs up to this are inside the recorded lost range.
    skip_through: u64,
    error_log: RateLimited,
    next_retry: Instant,
    /// The hub's last seq at shutdown.
    final_seq: Option<u64>,
    /// The journal's epoch (a reopen must find the same one).
    epoch: String,
}

/// What woke the writer.
enum WriterWake {
    Msg(JournalMsg),
    /// The commit deadline, or [`MAX_QUIET`] since the last round.
    Timer,
    Closed,
}

impl Writer {
    async fn run(&mut self, rx: Receiver<JournalMsg>) {
        if self.heart.injected_stall() {
            // A writer stuck in the disk, as a test of the watchdog sees it.
            loop {
                std::thread::park();
            }
        }
        let mut now = Instant::now();
        let mut deadline = now + self.config.flush_interval;
        loop {
            // A flush interval longer than MAX_QUIET still wakes the writer
            // in time to beat.
            let wake_at = deadline.min(now + MAX_QUIET);
            let wake = or(
                async {
                    match rx.recv().await {
                        Ok(msg) => WriterWake::Msg(msg),
                        Err(_) => WriterWake::Closed,
                    }
                },
                async {
                    Timer::at(wake_at).await;
                    WriterWake::Timer
                },
            )
            .await;
            match wake {
                WriterWake::Msg(msg) => self.handle(msg),
                WriterWake::Timer => {}
                WriterWake::Closed => break,
            }
            now = Instant::now();
            self.heart.beat_at(now);
            if now >= deadline {
                self.tick(now);
                deadline = now + self.config.flush_interval;
            }
        }
        if let Some(last) = self.final_seq
            && last > self.last_appended
        {
            // Seqs the hub handed out that never reached the journal: a gap,
            // and the next run must continue after them.
            let from = self.last_appended + 1;
            if self.with_store(|s| s.record_gap(from, last)).is_some() {
                self.last_appended = last;
                self.dirty = true;
            }
        }
        self.commit();
        if let Some(store) = self.store.take() {
            match store.close_clean(self.last_appended) {
                Ok(()) => log::info!("journal closed cleanly at seq {}", self.last_appended),
                Err(e) => log::error!("journal close failed: {e}"),
            }
        }
    }

    fn handle(&mut self, msg: JournalMsg) {
        match msg {
            JournalMsg::Append {
                seq,
                ts,
                json,
                put,
                remove,
            } => self.append(seq, ts, json.as_bytes(), put.as_deref(), remove.as_deref()),
            JournalMsg::Ack { seq, id, outbox } => {
                if self.store.is_none() || seq <= self.skip_through {
                    outbox.push(ack_failed(id));
                } else if seq <= self.status.durable_seq.load(Ordering::Acquire) {
                    outbox.push(ack_frame(seq, id));
                } else {
                    self.acks.push((seq, id, outbox));
                    self.status
                        .pending_acks
                        .store(self.acks.len() as u64, Ordering::Relaxed);
                }
            }
            JournalMsg::Read {
                after,
                limit,
                reply,
            } => {
                let records = self
                    .with_store(|s| s.read(after, limit))
                    .unwrap_or_default();
                let _ = reply.try_send(records);
            }
            JournalMsg::Tail { n, reply } => {
                let records = self.with_store(|s| s.tail(n)).unwrap_or_default();
                let _ = reply.try_send(records);
            }
            JournalMsg::Close { last_seq } => self.final_seq = Some(last_seq),
            JournalMsg::PutMeta { key, value } => {
                if self.with_store(|s| s.put_meta(&key, &value)).is_some() {
                    self.dirty = true;
                }
            }
        }
    }

    fn append(&mut self, seq: u64, ts: u64, json: &[u8], put: Option<&str>, remove: Option<&str>) {
        if seq <= self.skip_through || seq <= self.last_appended {
            // Inside the range already recorded as lost by a reopen.
            return;
        }
        let expected = self.last_appended + 1;
        let stored = self.with_store(|s| {
            if seq > expected {
                s.record_gap(expected, seq - 1)?;
            }
            s.append(seq, ts, json)?;
            if let Some(key) = put {
                s.put_snapshot(key, seq, json)?;
            }
            if let Some(key) = remove {
                s.remove_snapshot(key)?;
            }
            Ok(())
        });
        if stored.is_some() {
            self.last_appended = seq;
            self.dirty = true;
            if let Some(forward) = self.config.forward.clone() {
                let epoch = self.epoch.clone();
                let put = self.with_store(|s| {
                    forward
                        .put(json, &epoch, wall_ms())
                        .map_err(|e| s.sled_error(e))
                });
                self.forwarded |= put.unwrap_or(false);
            }
        } else {
            self.status.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Commit (if anything changed), answer durable publishes, trim, and
    /// retry a failed journal.
    fn tick(&mut self, now: Instant) {
        if self.store.is_none() && now >= self.next_retry {
            self.reopen(now);
        }
        if self.reserved.saturating_sub(self.last_appended) < RESERVE_BLOCK / 2 {
            let up_to = self.last_appended + RESERVE_BLOCK;
            if self.with_store(|s| s.reserve(up_to)).is_some() {
                self.reserved = up_to;
                self.dirty = true;
            }
        }
        if self.dirty {
            self.commit();
            let retention = self.config.retention;
            if self
                .with_store(|s| s.trim(&retention, wall_ms(), TRIM_BATCH))
                .is_some_and(|n| n > 0)
            {
                self.dirty = true;
                // The hub decides `reset` from first_seq: publish it now,
                // not at the next commit.
                self.publish_stats();
            }
        }
    }

    fn commit(&mut self) {
        if !self.dirty {
            return;
        }
        let Some(took) = self.with_store(Store::commit) else {
            return;
        };
        self.dirty = false;
        if let Some(forward) = &self.config.forward {
            // Durable now: the broker feeds may send it.
            if std::mem::take(&mut self.forwarded) {
                forward.wake();
            }
            if let Err(e) = forward.trim_age(wall_ms()) {
                log::warn!("forward: trimming old messages failed: {e}");
            }
        }
        let us = took.as_micros() as u64;
        self.status.commits.fetch_add(1, Ordering::Relaxed);
        self.status.last_commit_us.store(us, Ordering::Relaxed);
        self.status.commit_times.0.record(took);
        self.status.reserved.store(self.reserved, Ordering::Release);
        self.status
            .durable_seq
            .store(self.last_appended, Ordering::Release);
        let durable = self.last_appended;
        self.acks.retain(|(seq, id, outbox)| {
            if *seq <= durable {
                outbox.push(ack_frame(*seq, id.clone()));
                false
            } else {
                true
            }
        });
        self.status
            .pending_acks
            .store(self.acks.len() as u64, Ordering::Relaxed);
        self.publish_stats();
    }

    fn publish_stats(&self) {
        let Some(store) = &self.store else { return };
        let stats = store.stats();
        let s = &self.status;
        s.events.store(stats.events, Ordering::Relaxed);
        s.bytes.store(stats.bytes, Ordering::Relaxed);
        s.first_seq
            .store(stats.first_seq.unwrap_or(0), Ordering::Relaxed);
        s.last_seq
            .store(stats.last_seq.unwrap_or(0), Ordering::Relaxed);
        s.disk_bytes.store(stats.disk_bytes, Ordering::Relaxed);
        s.trimmed_below
            .store(store.trimmed_below(), Ordering::Release);
    }

    /// Runs `f` on the store; on failure marks the journal unhealthy, drops
    /// the store (releasing its lock) and schedules a reopen.
    fn with_store<T>(&mut self, f: impl FnOnce(&mut Store) -> Result<T, StoreError>) -> Option<T> {
        let store = self.store.as_mut()?;
        match f(store) {
            Ok(value) => Some(value),
            Err(e) => {
                self.fail(&e);
                None
            }
        }
    }

    fn fail(&mut self, e: &StoreError) {
        let message = format!("journal write failed: {e}");
        if self.error_log.should_log(Instant::now()).is_some() {
            log::error!(
                "{message}; relaying continues without the journal, retrying every {} s",
                RETRY_INTERVAL.as_secs()
            );
        }
        *self.status.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
        self.status.healthy.store(false, Ordering::Release);
        self.store = None;
        self.dirty = false;
        self.next_retry = Instant::now() + RETRY_INTERVAL;
        // Their events may never reach the disk: tell the publishers.
        for (_, id, outbox) in self.acks.drain(..) {
            outbox.push(ack_failed(id));
        }
        self.status.pending_acks.store(0, Ordering::Relaxed);
    }

    fn reopen(&mut self, now: Instant) {
        self.next_retry = now + RETRY_INTERVAL;
        let opened = match Store::open(&self.config.dir, self.config.cache_bytes) {
            Ok(opened) => opened,
            Err(e) => {
                if self.error_log.should_log(now).is_some() {
                    log::error!("journal still not writable: {e}");
                }
                return;
            }
        };
        if opened.epoch != self.epoch {
            // The old journal was unreadable and a new one was started: the
            // seqs clients hold belong to the old epoch. Only a restart can
            // make the whole daemon agree on the new one.
            if self.error_log.should_log(now).is_some() {
                log::error!(
                    "the journal had to be replaced while running (new epoch {}); restart tablo so clients get a reset",
                    opened.epoch
                );
            }
            return;
        }
        let mut store = opened.store;
        // Everything up to the old reservation is either stored or now in
        // the recorded lost range: the hub jumps past it.
        self.skip_through = opened.next_seq - 1;
        self.status
            .resume_at
            .store(opened.next_seq, Ordering::Release);
        let base = self.skip_through.max(self.last_appended);
        let up_to = base + RESERVE_BLOCK;
        if let Err(e) = store
            .reserve(up_to)
            .and_then(|()| store.commit().map(|_| ()))
        {
            if self.error_log.should_log(now).is_some() {
                log::error!("journal reopened but still not writable: {e}");
            }
            return;
        }
        log::warn!("journal writable again; seqs missed meanwhile are recorded as a gap");
        self.last_appended = base;
        self.reserved = up_to;
        self.store = Some(store);
        self.status.healthy.store(true, Ordering::Release);
        *self.status.error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.publish_stats();
    }
}

/// The error a publisher gets instead of an ack when its event could not be
/// made durable.
pub fn ack_failed(id: Option<Value>) -> Frame {
    let error = ProtoError::new(
        ErrorCode::BadRequest,
        "the journal could not store this publish (disk failing or full); it was relayed live but not acknowledged; publish again later",
        id,
    );
    Frame {
        text: Utf8Bytes::from(error.to_json()),
        key: None,
    }
}

fn ack_frame(seq: u64, id: Option<Value>) -> Frame {
    let mut ack = json!({"type": "ack", "seq": seq});
    if let (Some(id), Some(obj)) = (id, ack.as_object_mut()) {
        obj.insert("id".into(), id);
    }
    Frame {
        text: Utf8Bytes::from(ack.to_string()),
        key: None,
    }
}
