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
//! Retention by age measures journal time ([`JournalTime`]): milliseconds
//! of the monotonic clock while a daemon ran, carried across restarts in the
//! journal, plus the downtime between two runs when the wall clock was
//! synchronized at both ends. A wall-clock step, forward or back, moves no
//! event's age (docs/durability.md §10).
//!
//! The writer also keeps the lease (docs/durability.md §3): a durable bound,
//! a little ahead of the last stored seq and renewed at every commit, past
//! which the hub fans nothing out; so after a crash the lost range says how
//! many of its seqs a client can have seen.
//!
//! The writer comes round at least every [`MAX_QUIET`] even when idle, and
//! beats its [`Heartbeat`] each time, so the service watchdog can tell an
//! idle writer from one stuck in the disk. An idle round writes nothing: a
//! commit happens only when something changed. A writer that found a whole
//! flush interval with nothing to commit stops ticking until an append rings
//! it (`JournalStatus::asleep`), so an idle daemon's journal costs one
//! wake-up a second, not one per flush interval.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Utf8Bytes;
use serde_json::{Value, json};
use smol::Timer;
use smol::channel::{Receiver, Sender, TrySendError, bounded};
use smol::future::or;

use crate::clock::{ClockState, wall_ms};
use crate::heartbeat::{Heartbeat, MAX_QUIET};
use crate::journal::forward::{OutboxStats, Outboxes};
use crate::journal::keys;
use crate::journal::store::{Record, Retention, Store, StoreError};
use crate::logger::RateLimited;
use crate::metrics::Histogram;
use crate::outbox::{Frame, Outbox};
use crate::protocol::{ErrorCode, ProtoError};

/// Capacity of the writer's inbox of appends. ~16 s of a busy 1,000
/// events/s: when it is full the disk is stuck, and the hub drops events
/// from the journal (never from fan-out) instead of waiting; the writer
/// records them as a gap.
pub const INBOX: usize = 16 * 1024;

/// Capacity of the writer's inbox of requests (reads, acks, keys, the
/// close). The first one wakes the writer, which takes them all, so only
/// what comes during one commit waits here; a slot costs ~90 bytes whether
/// used or not, so this is a quarter of [`INBOX`].
pub const REQUESTS: usize = INBOX / 4;

/// Seqs reserved ahead of the last stored event. A crash loses at most this
/// many seqs to the recorded gap; the reservation is extended at every commit
/// that finds less than half of it left, so the hub never catches up with it
/// unless the disk has been failing for a long time. (Of a lost range, only
/// the seqs up to the lease can ever have reached a client: see
/// [`LEASE_MIN`].)
pub const RESERVE_BLOCK: u64 = 100_000;

/// The lease runs at least this many seqs ahead of the last stored event:
/// the hub fans out up to it without waiting for a commit. 64 covers a
/// default commit window (100 ms) of 640 events/s, twenty times the demo's,
/// and a feed's first burst of a few dozen symbols; a bigger burst waits for
/// the next commit (at most one window) while `LEASE_WINDOWS` catches up.
/// It is what a crash reports as possibly handed out to clients but not
/// stored (`handed_out_max` of the lost range) when events come slowly: a
/// truthful bound needs a small one.
pub const LEASE_MIN: u64 = 64;

/// The writer commits early, renewing the lease, when the stored events come
/// within this many seqs of it (see `Writer::lease_running_out`): half of
/// [`LEASE_MIN`], so a burst waits for a commit of its own, not for the
/// deadline, and each such commit at least doubles the headroom
/// ([`LEASE_WINDOWS`] times the events since the last one).
pub const LEASE_EARLY: u64 = LEASE_MIN / 2;

/// The lease runs this many commit windows' worth of events ahead (counted
/// at the last commit) when that is more than [`LEASE_MIN`], so a steady
/// stream never waits for the lease; only a sudden burst past it waits for
/// the next commit.
pub const LEASE_WINDOWS: u64 = 4;

/// The caller meta key of the journal-time mark (see [`TimeMark`]).
pub const TIME_MARK_KEY: &str = "journal_time";

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
        /// The exact bytes sent to clients (its `ts` among them; the journal
        /// stores it with its own journal time, see [`JournalTime`]).
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
    /// Remember that a publish with idempotency `key` got `seq`, once
    /// `seq` is durable (`journal::keys`); forget the key of `evicted`.
    Key {
        /// The published event's seq.
        seq: u64,
        /// The client's key.
        key: Box<str>,
        /// The seq whose key fell out of the hub's window.
        evicted: Option<u64>,
    },
    /// Persist a small named value with the next commit.
    PutMeta {
        /// Name.
        key: String,
        /// Value.
        value: Vec<u8>,
    },
    /// The wall clock's state changed.
    Clock {
        /// The new state.
        state: ClockState,
    },
}

/// Journal time: ms that only go forward, on the monotonic clock while a
/// daemon runs, continued from the journal's [`TimeMark`] at each start.
/// Events are stored with it, and retention's `max_age` compares it
/// (docs/durability.md §10).
#[derive(Clone, Copy, Debug)]
pub struct JournalTime {
    /// Journal time at `started`.
    base: u64,
    started: Instant,
}

impl JournalTime {
    /// Journal time that is `base` at `now`.
    pub fn new(base: u64, now: Instant) -> JournalTime {
        JournalTime { base, started: now }
    }

    /// Journal time at `now`.
    pub fn at(&self, now: Instant) -> u64 {
        self.base
            .saturating_add(crate::clock::age_ms(self.started, now))
    }
}

/// What the journal keeps of its time at every commit: the journal time,
/// the wall clock then, and whether the wall clock was synchronized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeMark {
    /// Journal time at the commit.
    pub at: u64,
    /// The wall clock then, ms since the Unix epoch.
    pub wall_ms: u64,
    /// Whether the wall clock was synchronized then.
    pub synced: bool,
}

impl TimeMark {
    /// 17 bytes: `at`, `wall_ms` (u64 big-endian), `synced` (0 or 1).
    pub fn encode(&self) -> [u8; 17] {
        let mut out = [0; 17];
        out[..8].copy_from_slice(&self.at.to_be_bytes());
        out[8..16].copy_from_slice(&self.wall_ms.to_be_bytes());
        out[16] = u8::from(self.synced);
        out
    }

    /// The mark of [`encode`](TimeMark::encode)'s bytes.
    pub fn decode(bytes: &[u8]) -> Option<TimeMark> {
        let bytes: &[u8; 17] = bytes.try_into().ok()?;
        let n = |r: std::ops::Range<usize>| bytes[r].try_into().ok().map(u64::from_be_bytes);
        Some(TimeMark {
            at: n(0..8)?,
            wall_ms: n(8..16)?,
            synced: bytes[16] == 1,
        })
    }

    /// Journal time for a run starting after this mark, at wall time
    /// `wall_ms` with the clock `synced` or not: the mark's time, plus the
    /// downtime the wall clock shows when it was synchronized at both ends
    /// (and did not go back). Otherwise the downtime counts as nothing: an
    /// unsynchronized clock's difference could be months, either way.
    pub fn resume(mark: Option<TimeMark>, wall_ms: u64, synced: bool) -> u64 {
        match mark {
            None => 0,
            Some(m) if m.synced && synced && wall_ms >= m.wall_ms => {
                m.at.saturating_add(wall_ms - m.wall_ms)
            }
            Some(m) => m.at,
        }
    }
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
    /// The durable lease: the hub fans out no seq above it while the
    /// journal is writable (docs/durability.md §3).
    pub lease: AtomicU64,
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
    /// Whether the writer sleeps past its commit tick, having found a
    /// whole flush interval with nothing to commit: the next append then
    /// rings it ([`JournalHandle::try_append`]).
    asleep: AtomicBool,
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
    /// The wall clock's state at start (later changes come as
    /// [`JournalMsg::Clock`]).
    pub clock: ClockState,
}

/// What the hub and sessions hold of the writer: its inboxes and its
/// status.
///
/// Two inboxes: what `tx` carries wakes the writer at once (reads, acks,
/// keys, the close: someone waits for them), while the hub's appends
/// ([`JournalHandle::try_append`]) wait in the second one for the writer's
/// commit tick, so a steady stream of events costs the writer thread one
/// wake-up per `flush_interval_ms`, not one per batch. The writer empties
/// the appends before it handles anything from `tx`, so the order the hub
/// sent them in holds (an append before its ack).
#[derive(Clone, Debug)]
pub struct JournalHandle {
    /// The writer's inbox for what must be handled at once.
    pub tx: Sender<JournalMsg>,
    /// Its health and counters.
    pub status: Arc<JournalStatus>,
    /// The appends, taken on the commit tick.
    appends: Sender<JournalMsg>,
    /// Rung when an append nears the lease: the writer then commits at once.
    bell: Sender<()>,
}

impl JournalHandle {
    /// A handle whose appends go to `appends` and whose rings go to `bell`
    /// (see [`JournalHandle`]); the writer's own come from
    /// [`Journal::handle`].
    pub fn new(
        tx: Sender<JournalMsg>,
        status: Arc<JournalStatus>,
        appends: Sender<JournalMsg>,
        bell: Sender<()>,
    ) -> JournalHandle {
        JournalHandle {
            tx,
            status,
            appends,
            bell,
        }
    }

    /// Hands an event to the writer without waiting, for its next commit
    /// tick; false if the inbox is full (the event is then missing from the
    /// journal, recorded as a gap). An append that nears the lease rings the
    /// writer, which renews the lease at once (see `lease_running_out`).
    pub fn try_append(&self, msg: JournalMsg) -> bool {
        let near_lease = match &msg {
            JournalMsg::Append { seq, .. } => {
                seq.saturating_add(LEASE_EARLY) > self.status.lease.load(Ordering::Acquire)
            }
            _ => true,
        };
        match self.appends.try_send(msg) {
            Ok(()) => {
                // Pairs with the fence in `Writer::fall_asleep`: either the
                // writer sees this append in its inbox, or this sees it
                // asleep.
                fence(Ordering::SeqCst);
                let asleep = self.status.asleep.load(Ordering::Relaxed)
                    && self.status.asleep.swap(false, Ordering::Relaxed);
                if near_lease || asleep {
                    // Full means a ring is already pending.
                    let _ = self.bell.try_send(());
                }
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                self.status.dropped.fetch_add(1, Ordering::Relaxed);
                let _ = self.bell.try_send(());
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
        let mark = store
            .get_meta(TIME_MARK_KEY)?
            .and_then(|bytes| TimeMark::decode(&bytes));
        let synced = config.clock == ClockState::Synchronized;
        let time = JournalTime::new(TimeMark::resume(mark, wall_ms(), synced), Instant::now());
        store.reserve(last_seq + RESERVE_BLOCK)?;
        store.lease(last_seq + LEASE_MIN)?;
        let lease = store.leased().unwrap_or(last_seq);
        store.put_meta(TIME_MARK_KEY, &time_mark(&time, synced).encode())?;
        store.commit()?;
        let status = Arc::new(JournalStatus {
            forward: config
                .forward
                .as_ref()
                .map(Outboxes::stats)
                .unwrap_or_default(),
            ..JournalStatus::default()
        });
        status.lease.store(lease, Ordering::Release);
        let (tx, rx) = bounded(REQUESTS);
        let (appends, appends_rx) = bounded(INBOX);
        let (bell, bell_rx) = bounded(1);
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
            keys: Vec::new(),
            skip_through: 0,
            error_log: RateLimited::new(ERROR_LOG_INTERVAL),
            next_retry: Instant::now(),
            final_seq: None,
            epoch,
            time,
            synced,
            lease,
            window_appends: 0,
        };
        writer.publish_stats();
        status.durable_seq.store(last_seq, Ordering::Release);
        status.healthy.store(true, Ordering::Release);
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || crate::exec::block_on(writer.run(rx, appends_rx, bell_rx)))
            .map_err(|source| StoreError::Io {
                path: PathBuf::from("<journal thread>"),
                source,
            })?;
        Ok(Journal {
            handle: JournalHandle::new(tx, status, appends, bell),
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
        self.handle.appends.close();
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
    /// Idempotency keys waiting for their event's commit (seq order).
    keys: Vec<(u64, Box<str>)>,
    /// After a reopen, seqs up to this are inside the recorded lost range.
    skip_through: u64,
    error_log: RateLimited,
    next_retry: Instant,
    /// The hub's last seq at shutdown.
    final_seq: Option<u64>,
    /// The journal's epoch (a reopen must find the same one).
    epoch: String,
    /// Journal time, for appends and retention.
    time: JournalTime,
    /// Whether the wall clock is synchronized, as last heard.
    synced: bool,
    /// The lease as last written.
    lease: u64,
    /// Events appended since the last commit, to size the next lease.
    window_appends: u64,
}

/// The time mark to store at a commit.
fn time_mark(time: &JournalTime, synced: bool) -> TimeMark {
    TimeMark {
        at: time.at(Instant::now()),
        wall_ms: wall_ms(),
        synced,
    }
}

/// What woke the writer.
enum WriterWake {
    Msg(JournalMsg),
    /// An append neared the lease.
    Bell,
    /// The commit deadline, or [`MAX_QUIET`] since the last round.
    Timer,
    Closed,
}

impl Writer {
    async fn run(
        &mut self,
        rx: Receiver<JournalMsg>,
        appends: Receiver<JournalMsg>,
        bell: Receiver<()>,
    ) {
        if self.heart.injected_stall() {
            // A writer stuck in the disk, as a test of the watchdog sees it.
            loop {
                std::thread::park();
            }
        }
        let mut now = Instant::now();
        let mut deadline = now + self.config.flush_interval;
        // Whether the last round found a whole flush interval with nothing
        // to commit: then the writer waits up to MAX_QUIET, not to its
        // deadline, and the next append rings it.
        let mut asleep = false;
        // Set again only when the time changes: arming a timer is a message
        // to the reactor's thread.
        let mut wake_at = deadline.min(now + MAX_QUIET);
        let mut timer = Timer::at(wake_at);
        loop {
            let wake = or(
                or(
                    async {
                        match rx.recv().await {
                            Ok(msg) => WriterWake::Msg(msg),
                            Err(_) => WriterWake::Closed,
                        }
                    },
                    async {
                        let _ = bell.recv().await;
                        WriterWake::Bell
                    },
                ),
                async {
                    (&mut timer).await;
                    WriterWake::Timer
                },
            )
            .await;
            // The appends first: they came before anything in `rx` that
            // refers to them.
            while let Ok(msg) = appends.try_recv() {
                self.handle(msg);
            }
            match wake {
                WriterWake::Msg(msg) => self.handle(msg),
                WriterWake::Bell | WriterWake::Timer => {}
                WriterWake::Closed => break,
            }
            now = Instant::now();
            self.heart.beat_at(now);
            if asleep {
                asleep = self.may_sleep() && self.fall_asleep(&appends);
                if !asleep {
                    // Woken by work: it commits one flush interval from
                    // now, the bound it has when awake.
                    self.status.asleep.store(false, Ordering::Relaxed);
                    deadline = now + self.config.flush_interval;
                }
            }
            if !asleep && (now >= deadline || self.lease_running_out()) {
                let quiet = self.may_sleep();
                self.tick(now);
                deadline = now + self.config.flush_interval;
                if quiet && self.may_sleep() {
                    asleep = self.fall_asleep(&appends);
                }
            }
            // A flush interval longer than MAX_QUIET still wakes the writer
            // in time to beat.
            let next = if asleep {
                now + MAX_QUIET
            } else {
                deadline.min(now + MAX_QUIET)
            };
            if now >= wake_at || next < wake_at {
                wake_at = next;
                timer.set_at(wake_at);
            }
        }
        while let Ok(msg) = appends.try_recv() {
            self.handle(msg);
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
        let mark = time_mark(&self.time, self.synced).encode();
        if self
            .with_store(|s| s.put_meta(TIME_MARK_KEY, &mark))
            .is_none()
        {
            log::debug!("journal: the time mark was not stored at close");
        }
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
                json,
                put,
                remove,
            } => self.append(seq, json.as_bytes(), put.as_deref(), remove.as_deref()),
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
            JournalMsg::Key { seq, key, evicted } => {
                if let Some(old) = evicted {
                    self.keys.retain(|(s, _)| *s != old);
                    if self
                        .with_store(|s| s.with_tree(keys::TREE, |t| keys::forget(t, old)))
                        .is_some()
                    {
                        self.dirty = true;
                    }
                }
                if self.store.is_some() && seq > self.skip_through {
                    self.keys.push((seq, key));
                    // Already durable (a commit came between the event and
                    // its key): stored now, flushed with the next commit.
                    self.store_durable_keys();
                }
            }
            JournalMsg::PutMeta { key, value } => {
                if self.with_store(|s| s.put_meta(&key, &value)).is_some() {
                    self.dirty = true;
                }
            }
            JournalMsg::Clock { state } => self.synced = state == ClockState::Synchronized,
        }
    }

    /// Stores one event, stamped with the journal time now (its wall-clock
    /// `ts` is in its JSON; retention does not use it).
    fn append(&mut self, seq: u64, json: &[u8], put: Option<&str>, remove: Option<&str>) {
        if seq <= self.skip_through || seq <= self.last_appended {
            // Inside the range already recorded as lost by a reopen.
            return;
        }
        let expected = self.last_appended + 1;
        let at = self.time.at(Instant::now());
        let stored = self.with_store(|s| {
            if seq > expected {
                s.record_gap(expected, seq - 1)?;
            }
            s.append(seq, at, json)?;
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
            self.window_appends += 1;
            self.dirty = true;
            if let Some(forward) = self.config.forward.clone() {
                let epoch = self.epoch.clone();
                let put =
                    self.with_store(|s| forward.put(json, &epoch, at).map_err(|e| s.sled_error(e)));
                self.forwarded |= put.unwrap_or(false);
            }
        } else {
            self.status.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether nothing waits for a commit or a retry: nothing dirty, no
    /// publish waiting for its ack, no key waiting for its event, and an
    /// open store.
    fn may_sleep(&self) -> bool {
        !self.dirty && self.acks.is_empty() && self.keys.is_empty() && self.store.is_some()
    }

    /// Marks the writer asleep unless an append came in meanwhile; true if
    /// it is. The flag is stored before the inbox is looked at, and an
    /// appender pushes before it looks at the flag, with a SeqCst fence
    /// between on both sides, so an append is never left waiting unrung.
    fn fall_asleep(&self, appends: &Receiver<JournalMsg>) -> bool {
        self.status.asleep.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if appends.is_empty() {
            return true;
        }
        self.status.asleep.store(false, Ordering::Relaxed);
        false
    }

    /// Whether the stored events have come within [`LEASE_EARLY`] of the
    /// lease: then the writer commits at once instead of at its deadline,
    /// renewing the lease, so the hub does not wait a whole commit window
    /// (up to 10 s with a long `flush_interval_ms`) to fan out a burst.
    fn lease_running_out(&self) -> bool {
        self.store.is_some() && self.last_appended.saturating_add(LEASE_EARLY) > self.lease
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
            let headroom = LEASE_MIN.max(LEASE_WINDOWS.saturating_mul(self.window_appends));
            let lease = self.last_appended.saturating_add(headroom);
            if lease > self.lease
                && let Some(leased) = self.with_store(|s| {
                    s.lease(lease)?;
                    Ok(s.leased())
                })
            {
                self.lease = leased.unwrap_or(lease);
            }
            self.commit();
            let retention = self.config.retention;
            let now = self.time.at(now);
            if self
                .with_store(|s| s.trim(&retention, now, TRIM_BATCH))
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
        let mark = time_mark(&self.time, self.synced).encode();
        let Some(took) = self.with_store(|s| {
            s.put_meta(TIME_MARK_KEY, &mark)?;
            s.commit()
        }) else {
            return;
        };
        self.dirty = false;
        self.window_appends = 0;
        self.status.lease.store(self.lease, Ordering::Release);
        if let Some(forward) = &self.config.forward {
            // Durable now: the broker feeds may send it.
            if std::mem::take(&mut self.forwarded) {
                forward.wake();
            }
            if let Err(e) = forward.trim_age(self.time.at(Instant::now())) {
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
        self.store_durable_keys();
        self.publish_stats();
    }

    /// Writes the keys whose events are durable, for the next commit: a
    /// key is never on disk before its event (a crash between the two
    /// loses the key, and a resend is then applied once more, never lost).
    fn store_durable_keys(&mut self) {
        let durable = self.status.durable_seq.load(Ordering::Acquire);
        let ready = self.keys.partition_point(|(seq, _)| *seq <= durable);
        if ready == 0 {
            return;
        }
        let batch: Vec<(u64, Box<str>)> = self.keys.drain(..ready).collect();
        let stored = self.with_store(|s| {
            s.with_tree(keys::TREE, |tree| {
                batch
                    .iter()
                    .try_for_each(|(seq, key)| keys::put(tree, *seq, key, None))
            })
        });
        if stored.is_some() {
            self.dirty = true;
        }
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
        // Their events may never reach the disk: tell the publishers, and
        // remember none of their keys.
        self.keys.clear();
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
        // While the journal failed the hub fanned out without a lease: any
        // seq of the lost range may have reached a client.
        let lost = opened.lost;
        if let Err(e) = lost
            .map_or(Ok(()), |(from, to)| store.record_gap(from, to))
            .and_then(|()| store.reserve(up_to))
            .and_then(|()| store.lease(base + LEASE_MIN))
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
        self.lease = store.leased().unwrap_or(base);
        self.status.lease.store(self.lease, Ordering::Release);
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

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 86_400_000;

    #[test]
    fn downtime_counts_only_when_the_clock_was_set_at_both_ends() {
        let mark = |wall_ms, synced| {
            Some(TimeMark {
                at: 5_000,
                wall_ms,
                synced,
            })
        };
        let wall = 1_780_000_000_000;
        assert_eq!(TimeMark::resume(None, wall, true), 0);
        // Off for an hour, the clock set before and after.
        assert_eq!(
            TimeMark::resume(mark(wall - 3_600_000, true), wall, true),
            5_000 + 3_600_000
        );
        // A clock that stepped back, or was not set at one end: no downtime.
        assert_eq!(
            TimeMark::resume(mark(wall + DAY_MS, true), wall, true),
            5_000
        );
        assert_eq!(
            TimeMark::resume(mark(wall - DAY_MS, false), wall, true),
            5_000
        );
        assert_eq!(
            TimeMark::resume(mark(wall - DAY_MS, true), wall, false),
            5_000
        );
        let encoded = mark(wall, true).unwrap().encode();
        assert_eq!(TimeMark::decode(&encoded), mark(wall, true));
        assert_eq!(TimeMark::decode(&encoded[1..]), None);
    }

    /// A journal of 5 events stored at journal time 1,000..=1,004 whose
    /// last run ended at journal time 2,000 with the wall clock at
    /// `wall_step` from now (synchronized or not), restarted now with the
    /// clock `clock` and `max_age` one hour; one more event goes in. How
    /// many events it keeps once the commit after it has trimmed.
    fn events_kept_after_a_step(wall_step: i64, synced: bool, clock: ClockState) -> u64 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let mut store = Store::open(&dir, 1 << 20).unwrap().store;
        for seq in 1..=5 {
            store.append(seq, 999 + seq, b"{}").unwrap();
        }
        let mark = TimeMark {
            at: 2_000,
            wall_ms: wall_ms().saturating_add_signed(wall_step),
            synced,
        };
        store.put_meta(TIME_MARK_KEY, &mark.encode()).unwrap();
        store.close_clean(5).unwrap();
        let store = Store::open(&dir, 1 << 20).unwrap().store;
        let config = WriterConfig {
            dir,
            cache_bytes: 1 << 20,
            flush_interval: Duration::from_millis(5),
            retention: Retention {
                max_age_ms: Some(3_600_000),
                ..Retention::default()
            },
            clock,
            forward: None,
        };
        let journal = Journal::start(store, "0123456789abcdef".into(), 5, config).unwrap();
        let handle = journal.handle();
        let append = JournalMsg::Append {
            seq: 6,
            json: Utf8Bytes::from_static("{}"),
            put: None,
            remove: None,
        };
        handle.tx.send_blocking(append).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        // The trim runs right after the commit that makes seq 6 durable,
        // in the same round; the next event's commit comes after it.
        while handle.status.durable_seq.load(Ordering::Acquire) < 6 {
            assert!(Instant::now() < deadline, "seq 6 was never committed");
            std::thread::sleep(Duration::from_millis(2));
        }
        let append = JournalMsg::Append {
            seq: 7,
            json: Utf8Bytes::from_static("{}"),
            put: None,
            remove: None,
        };
        handle.tx.send_blocking(append).unwrap();
        while handle.status.durable_seq.load(Ordering::Acquire) < 7 {
            assert!(Instant::now() < deadline, "seq 7 was never committed");
            std::thread::sleep(Duration::from_millis(2));
        }
        let kept = handle.status.events.load(Ordering::Acquire);
        drop(handle);
        journal.close();
        kept - 1
    }

    #[test]
    fn a_wall_clock_step_of_90_days_either_way_trims_nothing() {
        let ninety = 90 * DAY_MS as i64;
        use ClockState::*;
        // The clock jumped 90 days forward since the last run (NTP after a
        // boot at an old time): the events are seconds old, all kept.
        assert_eq!(events_kept_after_a_step(-ninety, false, Synchronized), 6);
        assert_eq!(events_kept_after_a_step(-ninety, true, Unsynchronized), 6);
        // It jumped back 90 days: nothing is older than before.
        assert_eq!(events_kept_after_a_step(ninety, true, Synchronized), 6);
        assert_eq!(events_kept_after_a_step(ninety, false, Unknown), 6);
        // Truly off for 90 days, the clock set at both ends: the old events
        // are 90 days old and go; the new one stays.
        assert_eq!(events_kept_after_a_step(-ninety, true, Synchronized), 1);
    }

    /// An idle writer sleeps past its commit tick, and the first append
    /// after it rings it: committed within a flush interval, not at the
    /// writer's next round a MAX_QUIET later; then it sleeps again.
    #[test]
    fn an_idle_writer_sleeps_and_the_next_append_wakes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let store = Store::open(&dir, 1 << 20).unwrap().store;
        let config = WriterConfig {
            dir,
            cache_bytes: 1 << 20,
            flush_interval: Duration::from_millis(5),
            retention: Retention::default(),
            clock: ClockState::Unknown,
            forward: None,
        };
        let journal = Journal::start(store, "0123456789abcdef".into(), 0, config).unwrap();
        let handle = journal.handle();
        let wait = |what: &str, done: &dyn Fn() -> bool| {
            let give_up = Instant::now() + Duration::from_secs(10);
            while !done() {
                assert!(Instant::now() < give_up, "{what}");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        let asleep = || handle.status.asleep.load(Ordering::Relaxed);
        for seq in 1..=3 {
            wait("the writer never fell asleep", &asleep);
            // It just fell asleep: its own next round is a MAX_QUIET away.
            let appended = Instant::now();
            assert!(handle.try_append(JournalMsg::Append {
                seq,
                json: Utf8Bytes::from_static("{}"),
                put: None,
                remove: None,
            }));
            assert!(!asleep(), "the append did not wake the writer");
            wait("the append was never committed", &|| {
                handle.status.durable_seq.load(Ordering::Acquire) >= seq
            });
            assert!(
                appended.elapsed() < MAX_QUIET / 2,
                "seq {seq} waited {:?} for its commit",
                appended.elapsed()
            );
        }
        drop(handle);
        journal.close();
    }
}
