//! The journal's storage layer: one sled database in one directory, with four
//! trees — `events` (batches of events, each under its first seq), `snapshot`
//! (caller's key → the latest event for it), `gaps` (seq ranges that will
//! never exist) and `meta` (epoch, schema version, the "reserved up to" mark,
//! the counters, and the caller's own small values).
//!
//! [`Store`] is blocking and has one owner, the journal writer thread. What it
//! guarantees (docs/durability.md §3, §5, §6, §11, §12):
//!
//! - **Durable commits.** [`Store::commit`] flushes sled and then fsyncs
//!   sled's data file, every other file of the directory that is new or
//!   changed, and every directory whose entries changed, because sled 0.34's
//!   own flush (`sync_file_range`) survives a process crash but not a power
//!   cut (sled#1452).
//! - **Seqs are never reused.** The caller [`reserve`](Store::reserve)s seqs
//!   ahead and commits before handing them out; [`Store::open`] continues past
//!   the durable mark and records the seqs between the last stored event (or
//!   gap) and the mark as a lost range, which [`Store::read`] returns as a
//!   [`Record::Gap`] in its place. The caller's durable
//!   [`lease`](Store::lease) says how many of those can have been handed out
//!   (`handed_out_max`).
//! - **A journal that will not open is moved aside, never deleted**, and a new
//!   one with a new epoch is created; a panic inside sled while opening is
//!   contained. A journal locked by another process is never moved.
//! - **O(1) statistics.** Event and byte counters live in memory and in `meta`
//!   (written at every commit and before every trim batch), so an open after a
//!   crash only rescans the events written after the last counter write.
//! - **Few bytes written per event** (SD-card wear). sled 0.34 rewrites a
//!   whole tree node every ten changes to it and logs every insert with its
//!   own headers: with one key per event it sent ~1.6–2.3 KB to the disk per
//!   216-byte event; batched, ~1.0 KB at 1,000 events/s and more (at 100/s
//!   the pages each commit must write dominate either way). So nothing
//!   reaches sled before [`Store::commit`] (unless a commit's worth grows
//!   past `MAX_PENDING_BYTES` or `MAX_PENDING_EVENTS`): appends are encoded
//!   into memory and written at the commit as a few `events` values (of up
//!   to `MAX_VALUE_BYTES`), snapshot changes are coalesced per key, and the
//!   caller's meta values per name. Reads, stats and the snapshot see the
//!   pending changes as if they were stored. A crash loses what was not
//!   committed — the contract: only committed events are durable, and the
//!   reservation turns the lost seqs into a gap at the next open. (Dropping
//!   a `Store` writes its pending changes, and sled flushes on close, but
//!   only [`Store::commit`] makes anything durable.)
//!
//! What it must not do: spawn threads, flush on its own (the caller decides
//! when to commit), read the wall clock (retention gets the caller's journal
//! time; the only read names a quarantined journal), interpret the event
//! JSON (values are opaque bytes), or trim the snapshot tree.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::mem::ManuallyDrop;
use std::ops::{Deref, Range};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sled::IVec;

/// The layout version this code writes and reads, kept in `meta` under
/// `schema`. A journal with another version is treated as unreadable (moved
/// aside, see [`Store::open`]). Version 1 stored one event per key; version 2
/// stores batches (see `EVENTS`).
pub const SCHEMA_VERSION: u64 = 2;

/// Tree of event batches: key the batch's first seq (u64 big-endian); value
/// [`BATCH_FORMAT`] followed by the batch's events in ascending seq order,
/// each `seq` (u64 big-endian), `at` (u64 big-endian: the caller's journal
/// time of the append), `len` (u32 big-endian) and `len` bytes of JSON. Every seq of a batch is below the
/// next batch's key. Written once per commit (see the module docs).
const EVENTS: &str = "events";
/// Tree of the latest event per caller key: value seq (u64 big-endian) + JSON.
const SNAPSHOT: &str = "snapshot";
/// Tree of seq ranges that will never exist: key `from`, value `to` (both
/// big-endian, inclusive). Ranges never overlap or touch: they are merged.
const GAPS: &str = "gaps";
/// Tree of small named values.
const META: &str = "meta";

/// `meta` key of the journal's epoch (16 lowercase hex characters).
const META_EPOCH: &[u8] = b"epoch";
/// `meta` key of the schema version (u64 big-endian).
const META_SCHEMA: &[u8] = b"schema";
/// `meta` key of the "reserved up to" mark (u64 big-endian).
const META_RESERVED: &[u8] = b"reserved";
/// `meta` key of the lease (u64 big-endian): no seq above it has been handed
/// out to a client (docs/durability.md §3). Absent in journals written before
/// it was kept: then every reserved seq may have been.
const META_LEASE: &[u8] = b"lease";
/// `meta` key of the [`StoreTotals`] (four u64 big-endian).
const META_COUNTERS: &[u8] = b"counters";
/// Prefix of the caller's `meta` keys, so they can never clash with ours.
const META_USER_PREFIX: &str = "user:";

/// The first byte of every `events` value: its encoding. Format 2 keeps the
/// caller's journal time in each entry's second field.
const BATCH_FORMAT: u8 = 2;

/// The format before journal time: the same layout, with the event's wall
/// clock `ts` in the second field. Read with `at` 0 (docs/durability.md §10):
/// a wall-clock time says nothing about an event's age once the clock has
/// jumped.
const BATCH_FORMAT_WALL_TS: u8 = 1;

/// Bytes before each event's JSON in a batch: seq, at and length.
const ENTRY_HEADER: usize = 8 + 8 + 4;

/// A batch value is split before it grows past this (a single bigger event
/// gets a value of its own), so that sled's tree nodes stay small: a leaf
/// holds up to 17 values and is rewritten whole. A node over ~128 KiB is
/// logged as a file in `blobs/`, and sled 0.34's cache counts such a node by
/// the size of its pointer, so it is never evicted: with 64 KiB values RSS
/// grew with the journal (79 MB after 300,000 events). The cache is also
/// split into 256 shards that each keep at least their newest page, so RSS
/// has a floor of ~256 nodes: with 2 KiB values it stays as with one key per
/// event (22 MB at 10,000 events/s, flat from 300,000 to 900,000 events).
/// Bytes written per event measured the same for 2, 4 and 7 KiB.
const MAX_VALUE_BYTES: usize = 2048;

/// Pending events are written to sled (not flushed) before a commit when
/// their encoding grows past this…
const MAX_PENDING_BYTES: usize = 4 << 20;

/// …or when there are more than this many of them…
const MAX_PENDING_EVENTS: usize = 50_000;

/// …or when more than this many snapshot keys or meta values are pending.
const MAX_PENDING_KEYS: usize = 10_000;

/// sled's config file, written when it creates a database.
const SLED_CONF_FILE: &str = "conf";

/// The name of sled's data file inside the journal directory; sled also takes
/// its exclusive lock on this file.
const SLED_DATA_FILE: &str = "db";

/// How long dropping a [`Store`] waits for sled's background threads to close
/// the files. They normally do within a millisecond; this bounds a stuck one.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long [`Store::open`] retries a locked journal before it reports
/// [`StoreError::Locked`]. Long enough to ride out a lock that is about to go:
/// one a child process inherited for the moment between its fork and its
/// exec (flock locks are shared by inherited descriptors); short enough that
/// `tablo journal` soon falls back to asking the running daemon.
pub const OPEN_LOCK_WAIT: Duration = Duration::from_millis(500);

/// What [`Store::open`] hands back: the store and what the caller must know
/// before numbering events.
#[derive(Debug)]
pub struct Opened {
    /// The opened journal.
    pub store: Store,
    /// The journal's epoch: 16 lowercase hex characters, created with the
    /// journal and kept until it is wiped or found corrupt.
    pub epoch: String,
    /// The first seq this run may hand out: past the durable "reserved up to"
    /// mark and past everything stored (1 for a new journal).
    pub next_seq: u64,
    /// The seqs recorded as lost at this open (inclusive): those between the
    /// last stored event or gap and the reserved mark, after an unclean stop.
    pub lost: Option<(u64, u64)>,
    /// How many seqs of `lost` can at most have been handed out: those up to
    /// the durable lease (0 when nothing was lost).
    pub lost_handed_out_max: u64,
    /// Where an unreadable journal was moved before a new one was created.
    pub quarantined: Option<PathBuf>,
    /// Whether a new journal (with a new epoch) was created by this open.
    pub created: bool,
}

/// Why a journal operation failed.
#[derive(Debug)]
pub enum StoreError {
    /// Another process (or another `Store` in this one) holds the journal's
    /// lock. The journal is left exactly where it is.
    Locked(PathBuf),
    /// Reading or writing the journal's files failed; this includes a full
    /// disk (ENOSPC, EDQUOT) and a read-only one (EROFS), see
    /// [`StoreError::is_no_space`]. sled remembers a write error: after one,
    /// drop the store and open it again.
    Io {
        /// The journal directory or the file that failed.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The journal's data is unreadable or inconsistent, or the caller broke a
    /// rule of this API (such as appending a seq that is not above the last
    /// one). [`Store::open`] answers it by moving the journal aside.
    Corrupt(String),
}

impl StoreError {
    /// Whether this is a full or read-only disk (ENOSPC, EDQUOT, EROFS):
    /// something an operator fixes by freeing space, after which journaling
    /// can resume.
    pub fn is_no_space(&self) -> bool {
        let StoreError::Io { source, .. } = self else {
            return false;
        };
        if let Some(code) = source.raw_os_error() {
            return [libc::ENOSPC, libc::EDQUOT, libc::EROFS].contains(&code);
        }
        // sled re-creates some errors from their text, which keeps the kind
        // but not the OS code.
        matches!(
            source.kind(),
            io::ErrorKind::StorageFull
                | io::ErrorKind::QuotaExceeded
                | io::ErrorKind::ReadOnlyFilesystem
        )
    }

    fn io(path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Maps a sled error for the journal in `dir`.
    fn sled(dir: &Path, e: sled::Error) -> StoreError {
        match e {
            sled::Error::Io(source) if is_sled_lock_error(&source) => {
                StoreError::Locked(dir.to_path_buf())
            }
            sled::Error::Io(source)
                if matches!(
                    source.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ) =>
            {
                StoreError::Corrupt(format!("sled could not decode its files: {source}"))
            }
            sled::Error::Io(source) => StoreError::io(dir, source),
            sled::Error::Corruption { at, .. } => match at {
                Some(at) => StoreError::Corrupt(format!("sled found corrupt data at {at:?}")),
                None => StoreError::Corrupt("sled found corrupt data".to_string()),
            },
            sled::Error::ReportableBug(what) => {
                StoreError::Corrupt(format!("sled hit an internal error: {what}"))
            }
            sled::Error::Unsupported(what) => StoreError::Corrupt(format!("sled refused: {what}")),
            sled::Error::CollectionNotFound(name) => {
                StoreError::Corrupt(format!("sled lost the tree {name:?}"))
            }
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Locked(dir) => write!(
                f,
                "the journal at {} is locked by another process (is another tablo running \
                 with this data dir?): stop it or give this one another --data-dir; \
                 `tablo journal` reads through the running daemon instead",
                dir.display()
            ),
            StoreError::Io { path, source } if self.is_no_space() => write!(
                f,
                "cannot write the journal at {}: {}: the disk is full or read-only; \
                 free some space (or lower [journal] max_bytes) and journaling resumes",
                path.display(),
                IoText(source)
            ),
            StoreError::Io { path, source } => write!(
                f,
                "journal I/O error at {}: {}: check that the directory is writable \
                 by tablo's user and that the disk is healthy",
                path.display(),
                IoText(source)
            ),
            StoreError::Corrupt(what) => write!(f, "journal: {what}"),
        }
    }
}

/// An I/O error as a sentence. sled hands some errors back re-created from
/// their `Debug` text (`Os { code: 28, kind: StorageFull, … }`): those are
/// shown by their kind instead.
struct IoText<'a>(&'a io::Error);

impl fmt::Display for IoText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        if e.raw_os_error().is_none() && e.to_string().starts_with("Os {") {
            write!(f, "{}", e.kind())
        } else {
            write!(f, "{e}")
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// One entry of the journal in seq order: an event, or a range of seqs that
/// will never exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A stored event: its seq, its journal time and the exact JSON bytes
    /// that were sent to clients.
    Event {
        /// The event's seq.
        seq: u64,
        /// When it was appended, in the caller's journal time (ms; see
        /// [`Store::append`]); 0 for an event stored before journal time was
        /// kept (batch format 1).
        at: u64,
        /// The event as sent.
        json: Vec<u8>,
    },
    /// Seqs `from..=to` will never exist (lost at a crash, or not stored).
    Gap {
        /// First seq of the range.
        from: u64,
        /// Last seq of the range (inclusive).
        to: u64,
        /// At most this many seqs of the range were ever handed out (sent to
        /// a client); the others were only reserved. The range's length when
        /// every seq of it may have been (docs/durability.md §3).
        handed_out_max: u64,
    },
}

impl Record {
    /// Where the record sits in seq order: the event's seq, the gap's start.
    fn start(&self) -> u64 {
        match *self {
            Record::Event { seq, .. } => seq,
            Record::Gap { from, .. } => from,
        }
    }
}

/// Totals of the journal, for `stats` and `/healthz`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Events stored.
    pub events: u64,
    /// Bytes of event JSON stored (the payload; the files take about twice
    /// that, see `disk_bytes`).
    pub bytes: u64,
    /// The oldest stored seq.
    pub first_seq: Option<u64>,
    /// The newest stored seq.
    pub last_seq: Option<u64>,
    /// Total length of the journal's files, as of the last open or commit.
    pub disk_bytes: u64,
}

/// Retention limits: events beyond any of them are trimmed, oldest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many events.
    pub max_events: Option<u64>,
    /// Keep at most this many bytes of event JSON (payload, not disk use).
    pub max_bytes: Option<u64>,
    /// Trim events whose ts is more than this many ms before `now_ms`.
    pub max_age_ms: Option<u64>,
}

/// The counters kept in memory and in `meta`, with what they cover: every
/// stored event with `floor <= seq <= high` is counted (in memory, pending
/// events too). Written at every commit, after the pending events, and before
/// each trim batch already minus that batch (so an open after a crash
/// finishes the batch and still trusts the counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct StoreTotals {
    /// Events stored.
    events: u64,
    /// Bytes of JSON stored.
    bytes: u64,
    /// Every seq below this was removed by retention (0: none ever was).
    /// The oldest batch may still hold some of them on disk, until all of its
    /// events are below the floor: they are invisible.
    floor: u64,
    /// The highest seq ever appended (0: none).
    high: u64,
}

impl StoreTotals {
    fn encode(&self) -> [u8; 32] {
        let mut out = [0; 32];
        for (chunk, n) in
            out.chunks_exact_mut(8)
                .zip([self.events, self.bytes, self.floor, self.high])
        {
            chunk.copy_from_slice(&n.to_be_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<StoreTotals> {
        if bytes.len() != 32 {
            return None;
        }
        let n = |i: usize| u64_be(&bytes[i * 8..i * 8 + 8]);
        Some(StoreTotals {
            events: n(0)?,
            bytes: n(1)?,
            floor: n(2)?,
            high: n(3)?,
        })
    }
}

// The journal writer moves the store onto its own thread.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Store>();
};

/// The durable journal: a sled database with the trees `events`, `snapshot`,
/// `gaps` and `meta`. See the module docs for what it guarantees.
pub struct Store {
    dir: PathBuf,
    /// Dropped first in `Drop`, which then waits for sled to let go of the
    /// files (see there).
    sled: ManuallyDrop<Sled>,
    /// sled's data file, opened once to fdatasync it at every commit.
    data_file: File,
    /// The "reserved up to" mark as last written (durable at the next commit).
    reserved: u64,
    /// The lease as last written (durable at the next commit); `None` while
    /// the journal has never had one, when every reserved seq counts as
    /// handed out.
    lease: Option<u64>,
    counters: StoreTotals,
    /// The end of the last recorded gap (0: none).
    gap_high: u64,
    /// Whether `counters` changed since they were last written to `meta`.
    counters_dirty: bool,
    first: Option<u64>,
    last: Option<u64>,
    disk_bytes: u64,
    /// What was changed since the last write to sled.
    pending: Pending,
    /// What `commit` has synced besides `db`.
    synced: Synced,
}

/// Changes not yet written to sled: they are written at the next commit (see
/// the module docs), and seen by every read meanwhile.
#[derive(Default)]
struct Pending {
    /// Appended events, encoded as `events` values, oldest first; the last
    /// one is being filled.
    batches: Vec<PendingBatch>,
    /// How many events `batches` hold.
    events: usize,
    /// Total length of `batches`.
    bytes: usize,
    /// A cleared buffer kept for the next batch, so appends do not allocate.
    spare: Vec<u8>,
    /// Snapshot changes by key: the latest (seq, JSON), or `None` to remove.
    snapshot: HashMap<String, Option<(u64, Vec<u8>)>>,
    /// The caller's meta values by their `meta` key.
    meta: HashMap<Vec<u8>, Vec<u8>>,
}

/// One `events` value being built.
struct PendingBatch {
    /// The seq of its first event: its key.
    first: u64,
    /// The value: [`BATCH_FORMAT`] and the encoded events.
    value: Vec<u8>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.batches.is_empty() && self.snapshot.is_empty() && self.meta.is_empty()
    }

    /// Whether it is time to write to sled before the commit.
    fn is_full(&self) -> bool {
        self.bytes > MAX_PENDING_BYTES
            || self.events >= MAX_PENDING_EVENTS
            || self.snapshot.len() + self.meta.len() >= MAX_PENDING_KEYS
    }

    /// Encodes one event at the end of the last batch, or of a new one.
    fn push(&mut self, seq: u64, at: u64, json: &[u8], json_len: u32) {
        let need = ENTRY_HEADER + json.len();
        let start_new = match self.batches.last() {
            None => true,
            Some(b) => b.value.len() > 1 && b.value.len() + need > MAX_VALUE_BYTES,
        };
        if start_new {
            let mut value = std::mem::take(&mut self.spare);
            value.clear();
            value.push(BATCH_FORMAT);
            self.bytes += 1;
            self.batches.push(PendingBatch { first: seq, value });
        }
        let Some(batch) = self.batches.last_mut() else {
            unreachable!("a batch was just made");
        };
        batch.value.extend_from_slice(&seq.to_be_bytes());
        batch.value.extend_from_slice(&at.to_be_bytes());
        batch.value.extend_from_slice(&json_len.to_be_bytes());
        batch.value.extend_from_slice(json);
        self.events += 1;
        self.bytes += need;
    }
}

/// The sled database and its trees.
struct Sled {
    db: sled::Db,
    events: sled::Tree,
    snapshot: sled::Tree,
    gaps: sled::Tree,
    meta: sled::Tree,
}

impl Drop for Store {
    /// Closes sled and waits until its lock is released, so that the journal
    /// can be opened again as soon as this returns. (sled's shared background
    /// threads may hold the files a little longer than the `Db`; reopening
    /// at once would then see [`StoreError::Locked`].) sled flushes on close.
    fn drop(&mut self) {
        // Like sled's own pending writes: on their way, not durable.
        if let Err(e) = self.write_pending() {
            log::debug!("journal: writing pending changes while closing failed: {e}");
        }
        // SAFETY: `self.sled` is dropped exactly once, here, and never used
        // again: the store itself is being dropped.
        unsafe { ManuallyDrop::drop(&mut self.sled) };
        if let Err(StoreError::Locked(_)) = wait_for_lock(&self.dir) {
            log::warn!(
                "the journal at {} is still locked {RELEASE_TIMEOUT:?} after closing it",
                self.dir.display()
            );
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("reserved", &self.reserved)
            .field("counters", &self.counters)
            .field("first", &self.first)
            .field("last", &self.last)
            .field("pending_events", &self.pending.events)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the journal in `dir` with sled's cache bounded to
    /// `cache_bytes`.
    ///
    /// A journal that fails to open — a sled error other than the lock or an
    /// I/O error, a panic inside sled, a wrong schema version, a missing
    /// epoch, or data files sled reads as empty — is renamed to
    /// `<dir>.corrupt-<unix seconds>` (then `-1`, `-2`, … if that exists),
    /// logged with `log::error!`, and a new journal with a new epoch is
    /// created in its place. (sled may already have written over a data file
    /// it could not read by then: the copy is for a bug report, not for
    /// recovery.) A journal locked by another process
    /// ([`StoreError::Locked`]) and plain I/O errors (a full or read-only
    /// disk, a permission problem) are returned as they are and never move
    /// anything.
    ///
    /// After an unclean stop, the seqs between the last stored event or gap
    /// and the durable reserved mark are recorded as a gap and returned as
    /// [`Opened::lost`]; [`Opened::next_seq`] is past the mark.
    ///
    /// [`StoreError::Locked`] comes back after [`OPEN_LOCK_WAIT`] of retries.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Opened, StoreError> {
        let started = Instant::now();
        loop {
            match Store::open_once(dir, cache_bytes) {
                Err(StoreError::Corrupt(reason)) => {
                    let moved_to = quarantine(dir, &reason)?;
                    let mut opened = Store::open_once(dir, cache_bytes)?;
                    opened.quarantined = Some(moved_to);
                    return Ok(opened);
                }
                Err(StoreError::Locked(_)) if started.elapsed() < OPEN_LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => return other,
            }
        }
    }

    /// One attempt at opening `dir`, with a panic inside sled turned into
    /// [`StoreError::Corrupt`].
    fn open_once(dir: &Path, cache_bytes: u64) -> Result<Opened, StoreError> {
        let data_path = dir.join(SLED_DATA_FILE);
        // sled writes `conf` when it creates a journal, so a `conf` beside an
        // empty `db` means a journal lost its data (e.g. a truncated file):
        // that is moved aside, never silently replaced. At worst this moves
        // aside a journal that crashed before it held anything.
        let had_data = match fs::metadata(&data_path) {
            Ok(m) => m.len() > 0 || dir.join(SLED_CONF_FILE).exists(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(StoreError::io(&data_path, e)),
        };
        // sled checks its `conf` file (and may rewrite it) before it takes
        // its lock: make sure nobody holds the journal before sled touches it.
        drop(try_lock(dir)?);
        match panic::catch_unwind(AssertUnwindSafe(|| {
            Store::open_sled(dir, cache_bytes, had_data)
        })) {
            Ok(result) => result,
            Err(payload) => {
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_string());
                Err(StoreError::Corrupt(format!(
                    "sled panicked while opening it: {what}"
                )))
            }
        }
    }

    fn open_sled(dir: &Path, cache_bytes: u64, had_data: bool) -> Result<Opened, StoreError> {
        let sled_err = |e| StoreError::sled(dir, e);
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // The caller commits; no background flusher thread.
            .flush_every_ms(None)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(sled_err)?;
        let events = db.open_tree(EVENTS).map_err(sled_err)?;
        let snapshot = db.open_tree(SNAPSHOT).map_err(sled_err)?;
        let gaps = db.open_tree(GAPS).map_err(sled_err)?;
        let meta = db.open_tree(META).map_err(sled_err)?;
        let data_path = dir.join(SLED_DATA_FILE);
        let data_file = File::open(&data_path).map_err(|e| StoreError::io(&data_path, e))?;
        let mut store = Store {
            dir: dir.to_path_buf(),
            sled: ManuallyDrop::new(Sled {
                db,
                events,
                snapshot,
                gaps,
                meta,
            }),
            data_file,
            reserved: 0,
            lease: None,
            counters: StoreTotals::default(),
            gap_high: 0,
            counters_dirty: false,
            first: None,
            last: None,
            disk_bytes: 0,
            pending: Pending::default(),
            synced: Synced::default(),
        };

        let epoch = store.sled.meta.get(META_EPOCH).map_err(sled_err)?;
        let Some(epoch) = epoch else {
            let empty = [
                &store.sled.events,
                &store.sled.snapshot,
                &store.sled.gaps,
                &store.sled.meta,
            ]
            .iter()
            .all(|tree| tree.is_empty());
            if !empty || had_data {
                return Err(StoreError::Corrupt(
                    "its files hold no epoch (not a tablo journal, or unreadable)".to_string(),
                ));
            }
            return store.create();
        };
        let epoch = String::from_utf8(epoch.to_vec())
            .ok()
            .filter(|e| is_epoch(e))
            .ok_or_else(|| StoreError::Corrupt(format!("its epoch {epoch:?} is malformed")))?;
        let schema = store.sled.meta.get(META_SCHEMA).map_err(sled_err)?;
        let schema = schema.as_deref().and_then(u64_be);
        if schema != Some(SCHEMA_VERSION) {
            return Err(StoreError::Corrupt(format!(
                "its schema version is {schema:?}, this tablo reads {SCHEMA_VERSION}"
            )));
        }
        store.reserved = match store.sled.meta.get(META_RESERVED).map_err(sled_err)? {
            Some(v) => u64_be(&v)
                .ok_or_else(|| StoreError::Corrupt("its reserved mark is malformed".into()))?,
            None => 0,
        };
        store.lease = match store.sled.meta.get(META_LEASE).map_err(sled_err)? {
            Some(v) => Some(
                u64_be(&v).ok_or_else(|| StoreError::Corrupt("its lease is malformed".into()))?,
            ),
            None => None,
        };
        store.load_counters()?;
        store.first = store.first_stored()?;
        store.last = match store.first {
            Some(_) => store.events_back().next().transpose()?.map(|e| e.seq),
            None => None,
        };

        store.gap_high = store.last_gap_to()?;
        let accounted = store.accounted();
        let lost = (store.reserved > accounted).then(|| (accounted + 1, store.reserved));
        let mut lost_handed_out_max = 0;
        if let Some((from, to)) = lost {
            // Without a lease (a journal from before it was kept, or a caller
            // that keeps none), any reserved seq may have been handed out.
            lost_handed_out_max = store.lease.unwrap_or(to).min(to).saturating_sub(accounted);
            store.record_gap_handed(from, to, lost_handed_out_max)?;
        }
        let next_seq = store.reserved.max(accounted) + 1;
        if lost.is_some() || store.counters_dirty {
            // Make the repair durable now: the next open then finds the same
            // state even if this run never commits.
            store.commit()?;
        } else {
            store.disk_bytes = walk(&store.dir, None, Path::new(""))?;
        }
        Ok(Opened {
            store,
            epoch,
            next_seq,
            lost,
            lost_handed_out_max,
            quarantined: None,
            created: false,
        })
    }

    /// Initialises a new, empty journal and makes it durable.
    fn create(mut self) -> Result<Opened, StoreError> {
        let epoch = format!("{:016x}", fastrand::u64(..));
        let sled_err = |e| StoreError::sled(&self.dir, e);
        self.sled
            .meta
            .insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())
            .map_err(sled_err)?;
        self.sled
            .meta
            .insert(META_RESERVED, &0u64.to_be_bytes())
            .map_err(sled_err)?;
        self.sled
            .meta
            .insert(META_EPOCH, epoch.as_bytes())
            .map_err(sled_err)?;
        self.counters_dirty = true;
        self.commit()?;
        // The journal directory's own entry must survive a power cut too.
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_path(parent)?;
        }
        Ok(Opened {
            store: self,
            epoch,
            next_seq: 1,
            lost: None,
            lost_handed_out_max: 0,
            quarantined: None,
            created: true,
        })
    }

    /// Loads the counters from `meta` and brings them up to date with the
    /// events tree: finishes a trim batch that a crash interrupted, and counts
    /// the events written after the counters were last written. Without
    /// counters it counts everything.
    fn load_counters(&mut self) -> Result<(), StoreError> {
        let sled_err = |e| StoreError::sled(&self.dir, e);
        let stored = self.sled.meta.get(META_COUNTERS).map_err(sled_err)?;
        let mut counters = match &stored {
            Some(v) => StoreTotals::decode(v)
                .ok_or_else(|| StoreError::Corrupt("its counters are malformed".into()))?,
            None => {
                self.counters_dirty = true;
                let first = self.sled.events.first().map_err(sled_err)?;
                // Unknown history: treat everything below the first event as
                // trimmed, so no resume from before it counts as complete.
                let floor = first.map(|(k, _)| key_u64(&k)).transpose()?.unwrap_or(0);
                StoreTotals {
                    floor,
                    ..StoreTotals::default()
                }
            }
        };
        if counters.floor > 0 && self.remove_batches_below(counters.floor)? {
            self.counters_dirty = true;
        }
        let start = if stored.is_some() {
            counters.high.saturating_add(1)
        } else {
            0
        };
        let mut counted = false;
        for event in self.events_from(start.max(counters.floor))? {
            let event = event?;
            counters.events += 1;
            counters.bytes += event.json().len() as u64;
            counters.high = counters.high.max(event.seq);
            counted = true;
        }
        self.counters_dirty |= counted;
        self.counters = counters;
        Ok(())
    }

    /// Removes the `events` values whose events are all below `floor`;
    /// whether there were any.
    fn remove_batches_below(&mut self, floor: u64) -> Result<bool, StoreError> {
        let sled_err = |e| StoreError::sled(&self.dir, e);
        let mut doomed = Vec::new();
        let mut entries = Vec::new();
        for item in self.sled.events.range(..be(floor)) {
            let (k, v) = item.map_err(sled_err)?;
            parse_batch(key_u64(&k)?, &v, &mut entries)?;
            if entries.last().is_some_and(|e| e.seq >= floor) {
                // The oldest batch left holds events to keep: the ones below
                // the floor stay on disk, invisible, until the floor passes
                // all of them.
                break;
            }
            doomed.push(k);
        }
        // One by one (see write_pending): if a crash stops this half-way,
        // the next open finishes it.
        for k in &doomed {
            self.sled.events.remove(k).map_err(sled_err)?;
        }
        Ok(!doomed.is_empty())
    }

    /// The oldest event at or above the floor, stored or pending.
    fn first_stored(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .events_from(self.counters.floor)?
            .next()
            .transpose()?
            .map(|e| e.seq))
    }

    /// The highest seq that is accounted for: appended (even if trimmed since)
    /// or recorded as a gap.
    fn accounted(&self) -> u64 {
        self.counters.high.max(self.gap_high)
    }

    /// Adds one event (durable at the next commit). `seq` must be above every
    /// seq ever appended or recorded as a gap (and so above 0); otherwise
    /// nothing is stored and [`StoreError::Corrupt`] says so. `at` is when,
    /// in the caller's journal time (ms that only go forward, whatever the
    /// wall clock does), it was appended: [`Store::trim`] measures ages with
    /// it.
    ///
    /// The event is kept in memory until the next commit (it is visible to
    /// every read at once); only when a commit's worth grows past
    /// `MAX_PENDING_BYTES` or `MAX_PENDING_EVENTS` are the pending events
    /// written to sled (not flushed) first.
    pub fn append(&mut self, seq: u64, at: u64, json: &[u8]) -> Result<(), StoreError> {
        if seq <= self.accounted() {
            return Err(StoreError::Corrupt(format!(
                "append out of order: seq {seq} is not above {}, the last seq appended \
                 or recorded as a gap (a bug in the caller; the event was not stored)",
                self.accounted()
            )));
        }
        let json_len = u32::try_from(json.len()).map_err(|_| {
            StoreError::Corrupt(format!(
                "event {seq} is {} bytes, more than the journal stores (4 GiB)",
                json.len()
            ))
        })?;
        if self.pending.is_full() {
            self.write_pending()?;
        }
        self.pending.push(seq, at, json, json_len);
        self.counters.events += 1;
        self.counters.bytes += json.len() as u64;
        self.counters.high = seq;
        self.counters_dirty = true;
        self.first.get_or_insert(seq);
        self.last = Some(seq);
        Ok(())
    }

    /// Writes the pending changes to sled (not flushed): the events first,
    /// so that whatever sled recovers after a crash (a prefix of its writes)
    /// never holds a snapshot entry, a caller's meta value, a gap or counters
    /// without the events that came before them.
    fn write_pending(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let dir = &self.dir;
        let sled_err = |e| StoreError::sled(dir, e);
        let pending = &mut self.pending;
        // Plain inserts, not sled batches: each `apply_batch` writes out
        // sled's log buffer before and after itself (and syncs it), which
        // costs pages at every commit. Atomicity is not needed: any prefix
        // of these writes is a consistent journal.
        if !pending.batches.is_empty() {
            for b in &pending.batches {
                self.sled
                    .events
                    .insert(be(b.first), b.value.as_slice())
                    .map_err(sled_err)?;
            }
            if let Some(b) = pending.batches.drain(..).next() {
                pending.spare = b.value;
            }
            pending.events = 0;
            pending.bytes = 0;
        }
        if !pending.snapshot.is_empty() {
            let mut value = Vec::new();
            for (key, entry) in &pending.snapshot {
                match entry {
                    Some((seq, json)) => {
                        value.clear();
                        value.extend_from_slice(&seq.to_be_bytes());
                        value.extend_from_slice(json);
                        self.sled.snapshot.insert(key.as_bytes(), value.as_slice())
                    }
                    None => self.sled.snapshot.remove(key.as_bytes()),
                }
                .map_err(sled_err)?;
            }
            pending.snapshot.clear();
        }
        for (key, value) in &pending.meta {
            self.sled
                .meta
                .insert(key.as_slice(), value.as_slice())
                .map_err(sled_err)?;
        }
        pending.meta.clear();
        Ok(())
    }

    /// Records that seqs `from..=to` will never exist (e.g. events the writer
    /// could not store), every one of which may have been handed out. Ranges
    /// that overlap or touch recorded ones are merged into one (whose
    /// `handed_out_max` is the sum of theirs, at most its length). `from >
    /// to` is an error. Writes the pending changes to sled first (a gap is
    /// rare).
    pub fn record_gap(&mut self, from: u64, to: u64) -> Result<(), StoreError> {
        self.record_gap_handed(from, to, to.saturating_sub(from).saturating_add(1))
    }

    /// [`record_gap`](Store::record_gap) of a range of which at most `handed`
    /// seqs were handed out.
    fn record_gap_handed(&mut self, from: u64, to: u64, handed: u64) -> Result<(), StoreError> {
        if from > to {
            return Err(StoreError::Corrupt(format!(
                "record_gap({from}, {to}): the range is empty (a bug in the caller)"
            )));
        }
        // A gap on disk above pending events that a crash then loses would
        // hide them from the lost range computed at the next open.
        self.write_pending()?;
        let sled_err = |e| StoreError::sled(&self.dir, e);
        let (mut lo, mut hi, mut handed) = (from, to, handed);
        let mut batch = sled::Batch::default();
        let mut merged_before = None;
        if let Some(item) = self.sled.gaps.range(..=be(lo)).next_back() {
            let (k, v) = item.map_err(sled_err)?;
            let (start, end, h) = gap_value(&k, &v)?;
            if end.saturating_add(1) >= lo {
                lo = start;
                hi = hi.max(end);
                handed = handed.saturating_add(h);
                merged_before = Some(start);
                batch.remove(k);
            }
        }
        for item in self.sled.gaps.range(be(lo)..) {
            let (k, v) = item.map_err(sled_err)?;
            let (start, end, h) = gap_value(&k, &v)?;
            if merged_before == Some(start) {
                continue;
            }
            if start > hi.saturating_add(1) {
                break;
            }
            hi = hi.max(end);
            handed = handed.saturating_add(h);
            batch.remove(k);
        }
        let handed = handed.min(hi - lo + 1);
        let mut value = [0; 16];
        value[..8].copy_from_slice(&be(hi));
        value[8..].copy_from_slice(&be(handed));
        batch.insert(&be(lo), &value);
        self.sled.gaps.apply_batch(batch).map_err(sled_err)?;
        self.gap_high = self.gap_high.max(hi);
        Ok(())
    }

    /// Writes the "reserved up to" mark (durable at the next commit). Never
    /// lowers it.
    pub fn reserve(&mut self, up_to: u64) -> Result<(), StoreError> {
        if up_to > self.reserved {
            self.write_reserved(up_to)?;
        }
        Ok(())
    }

    fn write_reserved(&mut self, mark: u64) -> Result<(), StoreError> {
        self.sled
            .meta
            .insert(META_RESERVED, &mark.to_be_bytes())
            .map_err(|e| StoreError::sled(&self.dir, e))?;
        self.reserved = mark;
        Ok(())
    }

    /// The "reserved up to" mark as last written.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Writes the lease (durable at the next commit): the caller promises to
    /// hand no seq above it to a client before a later lease is durable, so
    /// an open after a crash can tell how many of the lost seqs were ever
    /// handed out ([`Opened::lost_handed_out_max`]). Never lowers it, and
    /// never raises it past the reserved mark.
    pub fn lease(&mut self, up_to: u64) -> Result<(), StoreError> {
        let up_to = up_to.min(self.reserved);
        if self.lease.is_none_or(|lease| up_to > lease) {
            self.write_lease(up_to)?;
        }
        Ok(())
    }

    fn write_lease(&mut self, mark: u64) -> Result<(), StoreError> {
        self.sled
            .meta
            .insert(META_LEASE, &mark.to_be_bytes())
            .map_err(|e| StoreError::sled(&self.dir, e))?;
        self.lease = Some(mark);
        Ok(())
    }

    /// The lease as last written (`None`: never).
    pub fn leased(&self) -> Option<u64> {
        self.lease
    }

    /// Sets a snapshot entry: the latest event for `key` (keys are the
    /// caller's, e.g. `tick:BTCUSDT`, `news:<seq>`, `status:binance`).
    /// Durable at the next commit, which writes only the latest entry of
    /// each key changed since the last one.
    pub fn put_snapshot(&mut self, key: &str, seq: u64, json: &[u8]) -> Result<(), StoreError> {
        match self.pending.snapshot.get_mut(key) {
            Some(Some((s, v))) => {
                *s = seq;
                v.clear();
                v.extend_from_slice(json);
            }
            Some(entry) => *entry = Some((seq, json.to_vec())),
            None => {
                if self.pending.is_full() {
                    self.write_pending()?;
                }
                self.pending
                    .snapshot
                    .insert(key.to_owned(), Some((seq, json.to_vec())));
            }
        }
        Ok(())
    }

    /// Removes a snapshot entry (nothing happens if there is none). Durable
    /// at the next commit.
    pub fn remove_snapshot(&mut self, key: &str) -> Result<(), StoreError> {
        match self.pending.snapshot.get_mut(key) {
            Some(entry) => *entry = None,
            None => {
                if self.pending.is_full() {
                    self.write_pending()?;
                }
                self.pending.snapshot.insert(key.to_owned(), None);
            }
        }
        Ok(())
    }

    /// All snapshot entries as (key, seq, json), by seq ascending (by key
    /// among equal seqs), pending changes included.
    pub fn snapshot(&self) -> Result<Vec<(String, u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.sled.snapshot.iter() {
            let (k, v) = item.map_err(|e| StoreError::sled(&self.dir, e))?;
            let key = String::from_utf8(k.to_vec())
                .map_err(|_| StoreError::Corrupt(format!("snapshot key {k:?} is not UTF-8")))?;
            if self.pending.snapshot.contains_key(&key) {
                continue;
            }
            let seq = v.get(..8).and_then(u64_be).ok_or_else(|| {
                StoreError::Corrupt(format!("snapshot entry {key:?} is too short"))
            })?;
            out.push((key, seq, v[8..].to_vec()));
        }
        for (key, entry) in &self.pending.snapshot {
            if let Some((seq, json)) = entry {
                out.push((key.clone(), *seq, json.clone()));
            }
        }
        out.sort_unstable_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        Ok(out)
    }

    /// Stores a small named value with the journal (e.g.
    /// `feed:<name>:upstream`, a chained feed's resume position); durable at
    /// the next commit, and never on disk before the events appended before
    /// it.
    pub fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let key = user_key(key);
        match self.pending.meta.get_mut(&key) {
            Some(v) => {
                v.clear();
                v.extend_from_slice(value);
            }
            None => {
                if self.pending.is_full() {
                    self.write_pending()?;
                }
                self.pending.meta.insert(key, value.to_vec());
            }
        }
        Ok(())
    }

    /// Reads a value stored with [`put_meta`](Store::put_meta).
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = user_key(key);
        if let Some(v) = self.pending.meta.get(&key) {
            return Ok(Some(v.clone()));
        }
        self.sled
            .meta
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StoreError::sled(&self.dir, e))
    }

    /// Runs `f` on the sled tree `name`, for the trees other journal
    /// modules keep (`journal::keys`): they are flushed with every commit,
    /// and their errors fail the journal like any other.
    pub(crate) fn with_tree<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&sled::Tree) -> sled::Result<T>,
    ) -> Result<T, StoreError> {
        let tree = self
            .sled
            .db
            .open_tree(name)
            .map_err(|e| StoreError::sled(&self.dir, e))?;
        f(&tree).map_err(|e| StoreError::sled(&self.dir, e))
    }

    /// Group commit: writes the pending changes (an `events` value per
    /// `MAX_VALUE_BYTES` of events, one snapshot value per changed key) and
    /// the counters, flushes sled, then fsyncs `db` and every other file of
    /// the journal directory (recursively: `conf`, `snap.*`, `blobs/*`) that
    /// is new or changed since the last commit, and each directory whose
    /// entries changed, because sled 0.34's flush uses `sync_file_range`,
    /// which does not survive a power cut (sled#1452). Returns how long it
    /// took.
    pub fn commit(&mut self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        self.write_pending()?;
        if self.counters_dirty {
            self.write_counters()?;
        }
        self.sled
            .db
            .flush()
            .map_err(|e| StoreError::sled(&self.dir, e))?;
        // sled writes `db` through its own descriptor; fdatasync on ours
        // flushes the same inode.
        self.data_file
            .sync_data()
            .map_err(|e| StoreError::io(&self.dir.join(SLED_DATA_FILE), e))?;
        let data_path = self.dir.join(SLED_DATA_FILE);
        match walk(&self.dir, Some(&mut self.synced), &data_path) {
            Ok(total) => self.disk_bytes = total,
            // Out of file descriptors (a flood of clients): the log itself
            // is synced through the handle held above; the other files
            // (`conf`, `snap.*`, blobs) are synced at the next commit that
            // can open them, instead of failing the whole journal.
            Err(StoreError::Io { source, .. })
                if matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) =>
            {
                log::debug!(
                    "journal commit: no file descriptor free to sync sled's side files; retrying next commit"
                );
            }
            Err(e) => return Err(e),
        }
        Ok(started.elapsed())
    }

    fn write_counters(&mut self) -> Result<(), StoreError> {
        self.sled
            .meta
            .insert(META_COUNTERS, &self.counters.encode())
            .map_err(|e| StoreError::sled(&self.dir, e))?;
        self.counters_dirty = false;
        Ok(())
    }

    /// The tree `name` of the journal's database, made if it is new: for
    /// `journal::forward`'s outboxes, which a commit makes durable with the
    /// events.
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        self.sled
            .db
            .open_tree(name)
            .map_err(|e| StoreError::sled(&self.dir, e))
    }

    /// The names of the database's trees.
    pub fn tree_names(&self) -> Vec<String> {
        self.sled
            .db
            .tree_names()
            .iter()
            .filter_map(|n| std::str::from_utf8(n).ok().map(str::to_owned))
            .collect()
    }

    /// Removes the tree `name` and what it holds.
    pub fn drop_tree(&self, name: &str) -> Result<bool, StoreError> {
        self.sled
            .db
            .drop_tree(name)
            .map_err(|e| StoreError::sled(&self.dir, e))
    }

    /// A sled error of this journal as a [`StoreError`].
    pub fn sled_error(&self, e: sled::Error) -> StoreError {
        StoreError::sled(&self.dir, e)
    }

    /// Up to `limit` records with seq > `after`, in seq order, each gap in its
    /// place. A gap that holds `after + 1` (starts at or before it and ends
    /// after `after`) comes first, **as stored**, not clipped: its `from` may
    /// be ≤ `after`. Events removed by retention are simply absent: a read is
    /// complete only if `after + 1 >= trimmed_below()`. Pending (not yet
    /// committed) events are included.
    pub fn read(&self, after: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        if limit == 0 || after == u64::MAX {
            return Ok(Vec::new());
        }
        let start = after + 1;
        let straddling = match self.sled.gaps.range(..be(start)).next_back() {
            Some(item) => {
                Some(self.gap(item)?).filter(|g| matches!(*g, Record::Gap { to, .. } if to > after))
            }
            None => None,
        };
        let gaps = straddling
            .map(Ok)
            .into_iter()
            .chain(self.sled.gaps.range(be(start)..).map(|item| self.gap(item)));
        let events = self
            .events_from(start)?
            .map(|e| e.map(RawEvent::into_record));
        merge(events, gaps, limit, true)
    }

    /// The newest `n` records (events and gaps), in ascending order.
    pub fn tail(&self, n: usize) -> Result<Vec<Record>, StoreError> {
        let events = self.events_back().map(|e| e.map(RawEvent::into_record));
        let gaps = self.sled.gaps.iter().rev().map(|item| self.gap(item));
        let mut out = merge(events, gaps, n, false)?;
        out.reverse();
        Ok(out)
    }

    /// The events with seq ≥ `min` (and ≥ the floor), stored then pending,
    /// in ascending order. The stored ones start at the batch that holds
    /// `min`, found by a reverse lookup.
    fn events_from(&self, min: u64) -> Result<Events<'_>, StoreError> {
        let min = min.max(self.counters.floor);
        let from = match self.sled.events.range(..=be(min)).next_back() {
            Some(item) => item.map_err(|e| StoreError::sled(&self.dir, e))?.0,
            None => IVec::from(&be(min)),
        };
        Ok(Events {
            dir: &self.dir,
            stored: Some(self.sled.events.range(from..)),
            pending: &self.pending.batches,
            pending_next: 0,
            ascending: true,
            min,
            value: None,
            entries: Vec::new(),
            pos: 0,
        })
    }

    /// The events at or above the floor, pending then stored, in descending
    /// order.
    fn events_back(&self) -> Events<'_> {
        Events {
            dir: &self.dir,
            stored: Some(self.sled.events.iter()),
            pending: &self.pending.batches,
            pending_next: self.pending.batches.len(),
            ascending: false,
            min: self.counters.floor,
            value: None,
            entries: Vec::new(),
            pos: 0,
        }
    }

    fn gap(&self, item: sled::Result<(IVec, IVec)>) -> Result<Record, StoreError> {
        let (k, v) = item.map_err(|e| StoreError::sled(&self.dir, e))?;
        let (from, to, handed_out_max) = gap_value(&k, &v)?;
        Ok(Record::Gap {
            from,
            to,
            handed_out_max,
        })
    }

    fn last_gap_to(&self) -> Result<u64, StoreError> {
        match self
            .sled
            .gaps
            .last()
            .map_err(|e| StoreError::sled(&self.dir, e))?
        {
            Some((k, v)) => Ok(gap_value(&k, &v)?.1),
            None => Ok(0),
        }
    }

    /// The journal's counters. O(1): kept in memory; `disk_bytes` is as of
    /// the last open or commit.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            events: self.counters.events,
            bytes: self.counters.bytes,
            first_seq: self.first,
            last_seq: self.last,
            disk_bytes: self.disk_bytes,
        }
    }

    /// The oldest stored seq.
    pub fn first_seq(&self) -> Option<u64> {
        self.first
    }

    /// The newest stored seq.
    pub fn last_seq(&self) -> Option<u64> {
        self.last
    }

    /// Every seq below this was removed by retention (0 if none ever was).
    /// A resume from `after` misses nothing iff `after + 1 >= trimmed_below()`
    /// — unlike a comparison with [`first_seq`](Store::first_seq), this stays
    /// right when the oldest records are gaps or when every event was trimmed.
    pub fn trimmed_below(&self) -> u64 {
        self.counters.floor
    }

    /// Removes the oldest events while any limit is exceeded (events are
    /// visited in seq order and trimming stops at the first one within every
    /// limit; an event is too old when `now - at > max_age_ms`, `now` being
    /// the caller's journal time, see [`append`](Store::append)), then the
    /// gaps that lie entirely below the trimmed seqs. Never touches the
    /// snapshot tree. Removes at most `max_batch` events per call, so the
    /// caller can interleave trimming with appends; returns how many it
    /// removed.
    ///
    /// Retention is exact per event: the counters, [`first_seq`](Store::first_seq),
    /// [`trimmed_below`](Store::trimmed_below) and every read move past each
    /// trimmed event at once. On disk, an `events` value is deleted when all
    /// of its events are trimmed, so up to one batch (`MAX_VALUE_BYTES`) of
    /// trimmed events may stay in the files, unseen, until then. Writes the
    /// pending changes to sled first when it removes anything.
    pub fn trim(
        &mut self,
        retention: &Retention,
        now: u64,
        max_batch: usize,
    ) -> Result<u64, StoreError> {
        let (mut removed, mut removed_bytes, mut last_removed) = (0u64, 0u64, None);
        if max_batch > 0 && *retention != Retention::default() {
            for event in self.events_from(self.counters.floor)? {
                if removed as usize >= max_batch {
                    break;
                }
                let event = event?;
                let events = self.counters.events - removed;
                let bytes = self.counters.bytes - removed_bytes;
                let over = retention.max_events.is_some_and(|max| events > max)
                    || retention.max_bytes.is_some_and(|max| bytes > max)
                    || retention
                        .max_age_ms
                        .is_some_and(|max| now.saturating_sub(event.at) > max);
                if !over {
                    break;
                }
                last_removed = Some(event.seq);
                removed += 1;
                removed_bytes += event.json().len() as u64;
            }
        }
        if let Some(last_removed) = last_removed {
            // The counters go to disk next: the events they count first.
            self.write_pending()?;
            self.counters.events -= removed;
            self.counters.bytes -= removed_bytes;
            self.counters.floor = last_removed + 1;
            // Written before the removals: an open after a crash in between
            // finishes the batch instead of miscounting (see load_counters).
            self.write_counters()?;
            self.remove_batches_below(self.counters.floor)?;
            self.first = self.first_stored()?;
            if self.first.is_none() {
                self.last = None;
            }
        }
        let sled_err = |e| StoreError::sled(&self.dir, e);
        let mut gaps = sled::Batch::default();
        let mut any = false;
        for item in self.sled.gaps.iter() {
            let (k, v) = item.map_err(sled_err)?;
            if gap_value(&k, &v)?.1 >= self.counters.floor {
                break;
            }
            gaps.remove(k);
            any = true;
        }
        if any {
            self.sled.gaps.apply_batch(gaps).map_err(sled_err)?;
        }
        Ok(removed)
    }

    /// Clean close: moves the reserved mark and the lease to `last_seq` (the
    /// last seq handed out; or to the last stored event or gap if that is
    /// higher), so the next open continues at `last_seq + 1` with no lost
    /// range, then commits. Unlike [`reserve`](Store::reserve), this may
    /// lower the mark: the seqs above `last_seq` were never handed out.
    pub fn close_clean(mut self, last_seq: u64) -> Result<(), StoreError> {
        let mark = last_seq.max(self.accounted());
        if mark != self.reserved {
            self.write_reserved(mark)?;
        }
        if self.lease.is_some_and(|lease| lease != mark) {
            self.write_lease(mark)?;
        }
        self.commit()?;
        Ok(())
    }
}

/// Merges events and gaps (each already in order) into at most `limit`
/// records; at an equal position the gap comes first in seq order.
fn merge(
    events: impl Iterator<Item = Result<Record, StoreError>>,
    gaps: impl Iterator<Item = Result<Record, StoreError>>,
    limit: usize,
    ascending: bool,
) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::with_capacity(limit.min(1024));
    let mut events = events.peekable();
    let mut gaps = gaps.peekable();
    while out.len() < limit {
        let take_gap = match (events.peek(), gaps.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(Err(_)), _) => false,
            (_, Some(Err(_))) => true,
            (Some(Ok(e)), Some(Ok(g))) => {
                if ascending {
                    g.start() <= e.start()
                } else {
                    g.start() > e.start()
                }
            }
        };
        let next = if take_gap { gaps.next() } else { events.next() };
        if let Some(record) = next {
            out.push(record?);
        }
    }
    Ok(out)
}

/// Big-endian bytes of a seq: the key order is the seq order.
fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn u64_be(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

fn key_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    u64_be(bytes).ok_or_else(|| StoreError::Corrupt(format!("malformed seq key {bytes:?}")))
}

/// A `gaps` entry as (from, to, handed_out_max). The value is `to`, then
/// `handed_out_max` (both u64 big-endian); a value of `to` alone (written
/// before the count was kept) counts every seq of the range as handed out.
fn gap_value(key: &[u8], value: &[u8]) -> Result<(u64, u64, u64), StoreError> {
    let from = key_u64(key)?;
    let (to, handed) = match value.len() {
        8 => (key_u64(value)?, None),
        16 => (key_u64(&value[..8])?, Some(key_u64(&value[8..])?)),
        _ => return Err(StoreError::Corrupt(format!("malformed gap {value:?}"))),
    };
    if to < from {
        return Err(StoreError::Corrupt(format!(
            "the gap at {from} ends at {to}"
        )));
    }
    let len = to - from + 1;
    Ok((from, to, handed.map_or(len, |h| h.min(len))))
}

/// One event inside an `events` value: its seq, its journal time and where
/// its JSON is.
struct Entry {
    seq: u64,
    at: u64,
    json: Range<usize>,
}

/// Decodes the `events` value stored under `key` into `out` (cleared first),
/// checking everything: the format byte, the lengths, and that the seqs go
/// up from `key`.
fn parse_batch(key: u64, value: &[u8], out: &mut Vec<Entry>) -> Result<(), StoreError> {
    out.clear();
    let bad = |what: &str| StoreError::Corrupt(format!("the event batch at seq {key} {what}"));
    let wall_ts = match value.first() {
        Some(&BATCH_FORMAT) => false,
        Some(&BATCH_FORMAT_WALL_TS) => true,
        Some(other) => return Err(bad(&format!("has the unknown format {other}"))),
        None => return Err(bad("is empty")),
    };
    let mut pos = 1;
    let mut prev = None;
    while pos < value.len() {
        let header = value
            .get(pos..pos + ENTRY_HEADER)
            .ok_or_else(|| bad("ends inside an event header"))?;
        let seq = u64_be(&header[..8]).unwrap_or_default();
        let at = if wall_ts {
            0
        } else {
            u64_be(&header[8..16]).unwrap_or_default()
        };
        let len = u32::from_be_bytes([header[16], header[17], header[18], header[19]]) as usize;
        let start = pos + ENTRY_HEADER;
        let end = start
            .checked_add(len)
            .filter(|&end| end <= value.len())
            .ok_or_else(|| bad("ends inside an event"))?;
        let in_order = match prev {
            None => seq == key,
            Some(prev) => seq > prev,
        };
        if !in_order {
            return Err(bad(&format!("holds seq {seq} out of order")));
        }
        prev = Some(seq);
        out.push(Entry {
            seq,
            at,
            json: start..end,
        });
        pos = end;
    }
    if out.is_empty() {
        return Err(bad("holds no event"));
    }
    Ok(())
}

/// An `events` value: from sled, or a pending batch.
#[derive(Clone)]
enum EventsValue<'a> {
    Stored(IVec),
    Pending(&'a [u8]),
}

impl Deref for EventsValue<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            EventsValue::Stored(v) => v,
            EventsValue::Pending(v) => v,
        }
    }
}

/// An event as read, still inside its batch value (cloning an [`IVec`] only
/// counts a reference).
struct RawEvent<'a> {
    seq: u64,
    at: u64,
    value: EventsValue<'a>,
    json: Range<usize>,
}

impl RawEvent<'_> {
    fn json(&self) -> &[u8] {
        &self.value[self.json.clone()]
    }

    fn into_record(self) -> Record {
        Record::Event {
            seq: self.seq,
            at: self.at,
            json: self.json().to_vec(),
        }
    }
}

/// The events of the stored batches and then of the pending ones (or the
/// other way round, newest first), skipping those below `min`.
struct Events<'a> {
    dir: &'a Path,
    /// The stored batches still to visit (`None` once done).
    stored: Option<sled::Iter>,
    pending: &'a [PendingBatch],
    /// Ascending: the next pending batch to visit. Descending: one past it.
    pending_next: usize,
    ascending: bool,
    min: u64,
    /// The batch being read, and its events.
    value: Option<EventsValue<'a>>,
    entries: Vec<Entry>,
    /// Ascending: the next entry. Descending: one past it.
    pos: usize,
}

impl<'a> Events<'a> {
    fn next_batch(&mut self) -> Option<Result<(u64, EventsValue<'a>), StoreError>> {
        let dir = self.dir;
        let stored = |item: sled::Result<(IVec, IVec)>| {
            let (k, v) = item.map_err(|e| StoreError::sled(dir, e))?;
            Ok((key_u64(&k)?, EventsValue::Stored(v)))
        };
        let pending = |b: &'a PendingBatch| Ok((b.first, EventsValue::Pending(&b.value)));
        if self.ascending {
            if let Some(iter) = &mut self.stored {
                match iter.next() {
                    Some(item) => return Some(stored(item)),
                    None => self.stored = None,
                }
            }
            let batch = self.pending.get(self.pending_next)?;
            self.pending_next += 1;
            Some(pending(batch))
        } else {
            if self.pending_next > 0 {
                self.pending_next -= 1;
                return Some(pending(&self.pending[self.pending_next]));
            }
            self.stored.as_mut()?.next_back().map(stored)
        }
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<RawEvent<'a>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(value) = &self.value {
                if self.ascending {
                    while let Some(e) = self.entries.get(self.pos) {
                        self.pos += 1;
                        if e.seq >= self.min {
                            return Some(Ok(RawEvent {
                                seq: e.seq,
                                at: e.at,
                                value: value.clone(),
                                json: e.json.clone(),
                            }));
                        }
                    }
                } else if self.pos > 0 {
                    self.pos -= 1;
                    let e = &self.entries[self.pos];
                    if e.seq < self.min {
                        // Everything older is below it too.
                        self.stop();
                        return None;
                    }
                    return Some(Ok(RawEvent {
                        seq: e.seq,
                        at: e.at,
                        value: value.clone(),
                        json: e.json.clone(),
                    }));
                }
            }
            let next = match self.next_batch()? {
                Ok((key, value)) => parse_batch(key, &value, &mut self.entries).map(|()| value),
                Err(e) => Err(e),
            };
            match next {
                Ok(value) => {
                    self.pos = if self.ascending {
                        0
                    } else {
                        self.entries.len()
                    };
                    self.value = Some(value);
                }
                Err(e) => {
                    self.stop();
                    return Some(Err(e));
                }
            }
        }
    }
}

impl Events<'_> {
    fn stop(&mut self) {
        self.stored = None;
        self.pending = &[];
        self.pending_next = 0;
        self.value = None;
        self.entries.clear();
    }
}

fn user_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(META_USER_PREFIX.len() + key.len());
    k.extend_from_slice(META_USER_PREFIX.as_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

fn is_epoch(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// How sled reports that its `try_lock_exclusive` on `db` failed: an `Other`
/// I/O error "could not acquire lock on …: … WouldBlock …".
fn is_sled_lock_error(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Other && e.to_string().contains("could not acquire lock")
}

/// Takes the same exclusive lock sled takes (`flock` on `<dir>/db`) without
/// blocking; the lock lasts as long as the returned file. `None`: there is no
/// `db` file, so there is nothing to lock.
fn try_lock(dir: &Path) -> Result<Option<File>, StoreError> {
    let path = dir.join(SLED_DATA_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    // SAFETY: flock only acts on the descriptor, which `file` keeps open.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(file));
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::WouldBlock {
        Err(StoreError::Locked(dir.to_path_buf()))
    } else {
        Err(StoreError::io(&path, e))
    }
}

/// [`try_lock`], retried for up to [`RELEASE_TIMEOUT`] while the journal is
/// locked: for a lock this process is about to release (a `Store` or a failed
/// open being torn down by sled's background threads).
fn wait_for_lock(dir: &Path) -> Result<Option<File>, StoreError> {
    let started = Instant::now();
    loop {
        match try_lock(dir) {
            Err(StoreError::Locked(_)) if started.elapsed() < RELEASE_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(1));
            }
            other => return other,
        }
    }
}

/// Moves an unreadable journal to `<dir>.corrupt-<unix seconds>[-N]` while
/// holding its lock, and logs it loudly.
fn quarantine(dir: &Path, reason: &str) -> Result<PathBuf, StoreError> {
    // The failed open may still be letting go of the files.
    let _lock = wait_for_lock(dir)?;
    // Normalises a trailing slash away, so the suffix lands on the name.
    let dir: PathBuf = dir.components().collect();
    let secs = crate::clock::wall_secs();
    let with_suffix = |suffix: String| {
        let mut name = dir.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    };
    let mut target = with_suffix(format!(".corrupt-{secs}"));
    let mut n = 1;
    while fs::symlink_metadata(&target).is_ok() {
        target = with_suffix(format!(".corrupt-{secs}-{n}"));
        n += 1;
    }
    fs::rename(&dir, &target).map_err(|e| StoreError::io(&dir, e))?;
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsync_path(parent)?;
    }
    log::error!(
        "the journal at {} could not be opened ({reason}); it was moved to {} and a new \
         journal with a new epoch is started in its place: clients resuming will get \
         `reset`. Keep the old one for a bug report, or delete it.",
        dir.display(),
        target.display()
    );
    Ok(target)
}

/// fsyncs one file or directory.
fn fsync_path(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io(path, e))
}

/// What [`walk`] has synced of the files and directories beside `db`. sled
/// writes each of those files once (`conf`, `snap.*`, `blobs/*`), so each
/// is synced once, not at every commit: on ext4 an fsync of a clean file
/// still flushes the device's write cache, and there can be hundreds of
/// blob files.
#[derive(Default)]
struct Synced {
    /// Each file synced, as it was then.
    files: HashMap<PathBuf, FileStamp>,
    /// Each directory's entry names (sorted) when it was last synced.
    dirs: HashMap<PathBuf, Vec<OsString>>,
}

/// What tells a file that changed since it was synced: length,
/// modification time (s, ns) and inode.
type FileStamp = (u64, i64, i64, u64);

/// Total length of the files under `dir`; with `sync`, also fsyncs each of
/// them but `skip` (sled's `db`, which `commit` syncs through its own handle)
/// unless it is unchanged since `sync` last saw it, and each directory whose
/// entries changed since. Files that vanish meanwhile (sled removes old
/// snapshots and blobs) are skipped.
fn walk(dir: &Path, mut sync: Option<&mut Synced>, skip: &Path) -> Result<u64, StoreError> {
    let mut seen = Vec::new();
    let total = walk_dir(dir, sync.as_deref_mut(), skip, &mut seen)?;
    if let Some(synced) = sync {
        let seen: std::collections::HashSet<PathBuf> = seen.into_iter().collect();
        synced.files.retain(|path, _| seen.contains(path));
        synced.dirs.retain(|path, _| seen.contains(path));
    }
    Ok(total)
}

fn walk_dir(
    dir: &Path,
    mut sync: Option<&mut Synced>,
    skip: &Path,
    seen: &mut Vec<PathBuf>,
) -> Result<u64, StoreError> {
    let mut total = 0;
    let mut names = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let path = entry.path();
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        names.push(entry.file_name());
        if meta.is_dir() {
            total += walk_dir(&path, sync.as_deref_mut(), skip, seen)?;
            seen.push(path);
            continue;
        }
        total += meta.len();
        let Some(synced) = sync.as_deref_mut() else {
            continue;
        };
        if path == skip {
            continue;
        }
        let stamp = (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino());
        if synced.files.get(&path) != Some(&stamp) {
            match File::open(&path).and_then(|f| f.sync_all()) {
                Ok(()) => {
                    synced.files.insert(path.clone(), stamp);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(&path, e)),
            }
        }
        seen.push(path);
    }
    if let Some(synced) = sync {
        names.sort_unstable();
        if synced.dirs.get(dir) != Some(&names) {
            fsync_path(dir)?;
            synced.dirs.insert(dir.to_path_buf(), names);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, VecDeque};
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Child, Command, Stdio};

    use super::*;

    /// sled's cache in tests: small, like on a Pi.
    const CACHE: u64 = 1 << 20;

    fn open(dir: &Path) -> Opened {
        Store::open(dir, CACHE).expect("open the journal")
    }

    fn event(seq: u64, at: u64, json: &[u8]) -> Record {
        Record::Event {
            seq,
            at,
            json: json.to_vec(),
        }
    }

    /// A gap of which every seq may have been handed out.
    fn gap_record(from: u64, to: u64) -> Record {
        Record::Gap {
            from,
            to,
            handed_out_max: to - from + 1,
        }
    }

    fn json_for(seq: u64) -> Vec<u8> {
        format!(r#"{{"type":"tick","seq":{seq},"price":"1.{seq}"}}"#).into_bytes()
    }

    /// The journal as a model: what every operation should leave behind.
    #[derive(Clone, Debug, Default)]
    struct Model {
        events: VecDeque<(u64, u64, Vec<u8>)>,
        /// Every seq recorded as never existing; gaps are its maximal runs.
        gap_seqs: BTreeSet<u64>,
        reserved: u64,
        floor: u64,
        high: u64,
        bytes: u64,
        snapshot: BTreeMap<String, (u64, Vec<u8>)>,
    }

    impl Model {
        fn gaps(&self) -> Vec<(u64, u64)> {
            let mut out: Vec<(u64, u64)> = Vec::new();
            for &s in &self.gap_seqs {
                match out.last_mut() {
                    Some((_, to)) if *to + 1 == s => *to = s,
                    _ => out.push((s, s)),
                }
            }
            out
        }

        /// Every record, gaps before events at an equal position.
        fn records(&self) -> Vec<Record> {
            let mut all: Vec<(u64, u8, Record)> = self
                .gaps()
                .into_iter()
                .map(|(from, to)| (from, 0, gap_record(from, to)))
                .collect();
            all.extend(
                self.events
                    .iter()
                    .map(|(seq, ts, json)| (*seq, 1, event(*seq, *ts, json))),
            );
            all.sort_by_key(|&(start, kind, _)| (start, kind));
            all.into_iter().map(|(_, _, r)| r).collect()
        }

        fn read(&self, after: u64, limit: usize) -> Vec<Record> {
            self.records()
                .into_iter()
                .filter(|r| match *r {
                    Record::Event { seq, .. } => seq > after,
                    Record::Gap { to, .. } => to > after,
                })
                .take(limit)
                .collect()
        }

        fn tail(&self, n: usize) -> Vec<Record> {
            let all = self.records();
            all[all.len().saturating_sub(n)..].to_vec()
        }

        fn append(&mut self, seq: u64, ts: u64, json: Vec<u8>) {
            self.bytes += json.len() as u64;
            self.high = seq;
            self.events.push_back((seq, ts, json));
        }

        fn trim(&mut self, r: &Retention, now: u64, max_batch: usize) -> u64 {
            let mut removed = 0;
            while removed < max_batch as u64 {
                let Some((seq, ts, json)) = self.events.front() else {
                    break;
                };
                let over = r.max_events.is_some_and(|m| self.events.len() as u64 > m)
                    || r.max_bytes.is_some_and(|m| self.bytes > m)
                    || r.max_age_ms.is_some_and(|m| now.saturating_sub(*ts) > m);
                if !over {
                    break;
                }
                self.floor = seq + 1;
                self.bytes -= json.len() as u64;
                self.events.pop_front();
                removed += 1;
            }
            for (from, to) in self.gaps() {
                if to < self.floor {
                    for s in from..=to {
                        self.gap_seqs.remove(&s);
                    }
                }
            }
            removed
        }

        fn accounted(&self) -> u64 {
            self.high.max(self.gap_seqs.last().copied().unwrap_or(0))
        }

        fn stats(&self) -> (u64, u64, Option<u64>, Option<u64>) {
            (
                self.events.len() as u64,
                self.bytes,
                self.events.front().map(|e| e.0),
                self.events.back().map(|e| e.0),
            )
        }

        fn snapshot(&self) -> Vec<(String, u64, Vec<u8>)> {
            let mut v: Vec<_> = self
                .snapshot
                .iter()
                .map(|(k, (seq, json))| (k.clone(), *seq, json.clone()))
                .collect();
            v.sort_by_key(|&(_, seq, _)| seq);
            v
        }
    }

    #[track_caller]
    fn check_same(store: &Store, model: &Model, context: &str) {
        let s = store.stats();
        assert_eq!(
            (s.events, s.bytes, s.first_seq, s.last_seq),
            model.stats(),
            "stats after {context}"
        );
        assert_eq!(store.trimmed_below(), model.floor, "floor after {context}");
        assert_eq!(store.reserved(), model.reserved, "reserved after {context}");
    }

    /// Random Append / RecordGap / ReadFrom / Tail / Trim / Reserve / Commit /
    /// Snapshot / Restart / CrashRestart sequences against [`Model`].
    fn run_model(seed: u64, ops: usize) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let opened = open(&dir);
        assert!(opened.created);
        assert_eq!((opened.next_seq, opened.lost), (1, None));
        let epoch = opened.epoch;
        let mut store = Some(opened.store);
        let mut model = Model::default();
        let mut next = 1u64;
        let mut clock = 1_000u64;
        let mut committed = model.clone();
        for op in 0..ops {
            let s = store.as_mut().unwrap();
            let context = format!("seed {seed} op {op}");
            match rng.u32(0..100) {
                0..=34 => {
                    clock += rng.u64(0..5);
                    let json: Vec<u8> = (0..rng.usize(0..60))
                        .map(|_| rng.alphanumeric() as u8)
                        .collect();
                    s.append(next, clock, &json).unwrap();
                    model.append(next, clock, json);
                    next += 1;
                }
                35..=37 => {
                    let seq = rng.u64(0..=model.accounted());
                    let err = s.append(seq, clock, b"{}").unwrap_err();
                    assert!(matches!(err, StoreError::Corrupt(_)), "{context}: {err}");
                }
                38..=41 => {
                    // Seqs the writer could not store, or a repeat of an
                    // already recorded range (merged, no change).
                    let (from, to) = if rng.bool() || model.gap_seqs.is_empty() {
                        let k = rng.u64(1..5);
                        next += k;
                        (next - k, next - 1)
                    } else {
                        let gaps = model.gaps();
                        let (from, to) = gaps[rng.usize(..gaps.len())];
                        (rng.u64(from..=to), to)
                    };
                    s.record_gap(from, to).unwrap();
                    model.gap_seqs.extend(from..=to);
                }
                42..=55 => {
                    let after = rng.u64(0..next + 3);
                    let limit = rng.usize(0..25);
                    assert_eq!(
                        s.read(after, limit).unwrap(),
                        model.read(after, limit),
                        "{context}: read({after}, {limit})"
                    );
                }
                56..=59 => {
                    let n = rng.usize(0..15);
                    assert_eq!(s.tail(n).unwrap(), model.tail(n), "{context}: tail({n})");
                }
                60..=67 => {
                    let r = Retention {
                        max_events: rng.bool().then(|| rng.u64(0..60)),
                        max_bytes: rng.bool().then(|| rng.u64(0..3_000)),
                        max_age_ms: rng.bool().then(|| rng.u64(0..300)),
                    };
                    let batch = rng.usize(0..20);
                    assert_eq!(
                        s.trim(&r, clock, batch).unwrap(),
                        model.trim(&r, clock, batch),
                        "{context}: trim({r:?}, {batch})"
                    );
                }
                68..=71 => {
                    let up_to = next - 1 + rng.u64(0..50);
                    s.reserve(up_to).unwrap();
                    model.reserved = model.reserved.max(up_to);
                }
                72..=79 => {
                    s.commit().unwrap();
                    committed = model.clone();
                }
                80..=85 => {
                    let key = format!("tick:S{}", rng.u32(0..6));
                    if rng.u32(0..4) == 0 {
                        s.remove_snapshot(&key).unwrap();
                        model.snapshot.remove(&key);
                    } else {
                        let seq = rng.u64(1..next + 1);
                        let json = json_for(seq);
                        s.put_snapshot(&key, seq, &json).unwrap();
                        model.snapshot.insert(key, (seq, json));
                    }
                }
                86..=92 => {
                    store.take().unwrap().close_clean(next - 1).unwrap();
                    model.reserved = next - 1;
                    let opened = open(&dir);
                    assert_eq!(opened.epoch, epoch, "{context}: epoch after a restart");
                    assert!(!opened.created && opened.quarantined.is_none(), "{context}");
                    assert_eq!(
                        (opened.next_seq, opened.lost),
                        (next, None),
                        "{context}: after a clean restart"
                    );
                    store = Some(opened.store);
                    committed = model.clone();
                }
                _ => {
                    // A crash after a commit: the process is gone, nothing is
                    // closed. (Dropping a sled Db flushes it, so the state is
                    // the committed one either way.)
                    let commit_first = rng.u32(0..3) != 0;
                    if commit_first {
                        s.commit().unwrap();
                    }
                    drop(store.take());
                    let accounted = model.accounted();
                    let lost =
                        (model.reserved > accounted).then(|| (accounted + 1, model.reserved));
                    if let Some((from, to)) = lost {
                        model.gap_seqs.extend(from..=to);
                    }
                    next = model.reserved.max(accounted) + 1;
                    let opened = open(&dir);
                    assert_eq!(opened.epoch, epoch, "{context}: epoch after a crash");
                    assert!(!opened.created && opened.quarantined.is_none(), "{context}");
                    assert_eq!(
                        (opened.next_seq, opened.lost),
                        (next, lost),
                        "{context}: after a crash"
                    );
                    store = Some(opened.store);
                    committed = model.clone();
                }
            }
            let s = store.as_ref().unwrap();
            check_same(s, &model, &context);
        }
        let s = store.as_ref().unwrap();
        assert_eq!(
            s.read(0, usize::MAX).unwrap(),
            model.read(0, usize::MAX),
            "seed {seed}: everything"
        );
        assert_eq!(
            s.snapshot().unwrap(),
            model.snapshot(),
            "seed {seed}: snapshot"
        );
        assert!(committed.high <= model.high);
    }

    #[test]
    fn model_random_operations_match_an_in_memory_journal() {
        for seed in 0..8 {
            run_model(seed, 400);
        }
    }

    #[test]
    fn new_journal_starts_at_one_with_a_fresh_epoch() {
        let tmp = tempfile::tempdir().unwrap();
        let a = open(&tmp.path().join("a"));
        let b = open(&tmp.path().join("b"));
        for o in [&a, &b] {
            assert!(o.created);
            assert_eq!(
                (o.next_seq, o.lost, o.quarantined.as_deref()),
                (1, None, None)
            );
            assert!(is_epoch(&o.epoch), "{}", o.epoch);
            assert_eq!(o.store.stats().events, 0);
            assert!(o.store.stats().disk_bytes > 0);
        }
        assert_ne!(a.epoch, b.epoch);
        // A journal that was created but never used reopens as it was.
        let epoch = a.epoch.clone();
        drop(a);
        let again = open(&tmp.path().join("a"));
        assert!(!again.created);
        assert_eq!((again.epoch, again.next_seq, again.lost), (epoch, 1, None));
    }

    #[test]
    fn garbage_files_are_quarantined_and_a_new_journal_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let epoch = open(&dir).epoch;
        let mut rng = fastrand::Rng::with_seed(3);
        for file in ["db", "conf"] {
            let garbage: Vec<u8> = (0..4096).map(|_| rng.u8(..)).collect();
            fs::write(dir.join(file), garbage).unwrap();
        }
        let opened = open(&dir);
        let moved = opened.quarantined.clone().expect("moved aside");
        assert!(opened.created);
        assert_ne!(opened.epoch, epoch);
        assert_eq!(opened.next_seq, 1);
        let name = moved.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("journal.corrupt-"), "{name}");
        assert!(moved.join("db").exists() && dir.join("db").exists());

        // The same again within the same second: a counter suffix.
        drop(opened);
        fs::write(dir.join("conf"), b"garbage garbage garbage").unwrap();
        fs::write(dir.join("db"), vec![0xff; 4096]).unwrap();
        let second = open(&dir).quarantined.unwrap();
        assert_ne!(second, moved);
        assert!(second.exists() && moved.exists());
    }

    #[test]
    fn a_journal_whose_data_file_was_truncated_to_nothing_is_quarantined() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let opened = open(&dir);
        let epoch = opened.epoch.clone();
        let mut store = opened.store;
        store.append(1, 1, &json_for(1)).unwrap();
        store.close_clean(1).unwrap();
        fs::write(dir.join("db"), b"").unwrap();
        let reopened = open(&dir);
        assert!(
            reopened.quarantined.is_some(),
            "moved aside, not replaced in place"
        );
        assert_ne!(reopened.epoch, epoch);
    }

    #[test]
    fn a_data_file_sled_reads_as_empty_is_quarantined() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("db"), vec![0xab; 10_000]).unwrap();
        let opened = open(&dir);
        let moved = opened.quarantined.expect("moved aside");
        assert!(opened.created);
        // (sled has already written over it by then: it reuses a file it
        // cannot read from offset 0.)
        assert!(moved.join("db").exists());
    }

    #[test]
    fn truncated_journals_never_panic_and_keep_their_epoch_or_are_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let original = tmp.path().join("original");
        let opened = open(&original);
        let epoch = opened.epoch;
        let mut store = opened.store;
        for seq in 1..=3_000 {
            store.append(seq, seq, &json_for(seq)).unwrap();
            if seq % 500 == 0 {
                store.commit().unwrap();
            }
        }
        store.close_clean(3_000).unwrap();
        let len = fs::metadata(original.join("db")).unwrap().len();
        let (mut kept, mut replaced) = (0, 0);
        for (i, fraction) in [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 0.999]
            .into_iter()
            .enumerate()
        {
            let dir = tmp.path().join(format!("cut{i}"));
            fs::create_dir_all(dir.join("blobs")).unwrap();
            fs::copy(original.join("conf"), dir.join("conf")).unwrap();
            fs::copy(original.join("db"), dir.join("db")).unwrap();
            let f = fs::OpenOptions::new()
                .write(true)
                .open(dir.join("db"))
                .unwrap();
            f.set_len((len as f64 * fraction) as u64).unwrap();
            drop(f);
            let opened = open(&dir);
            if opened.quarantined.is_some() {
                assert!(opened.created);
                assert_ne!(opened.epoch, epoch);
                replaced += 1;
                continue;
            }
            kept += 1;
            assert_eq!(opened.epoch, epoch, "cut at {fraction}");
            // What survived is a gap-free prefix.
            let records = opened.store.read(0, usize::MAX).unwrap();
            for (i, r) in records.iter().enumerate() {
                let seq = i as u64 + 1;
                assert_eq!(*r, event(seq, seq, &json_for(seq)), "cut at {fraction}");
            }
            assert!(opened.next_seq > records.len() as u64);
        }
        eprintln!("truncated journals: {kept} opened, {replaced} replaced");
    }

    #[test]
    fn a_locked_journal_is_reported_and_never_moved() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let first = open(&dir);
        let err = Store::open(&dir, CACHE).unwrap_err();
        assert!(
            matches!(&err, StoreError::Locked(p) if p == &dir),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("locked by another process"),
            "{err}"
        );
        assert!(!err.is_no_space());
        // Even with a `conf` sled cannot read (sled checks it before it
        // locks), a held journal stays where it is.
        fs::write(dir.join("conf"), vec![0x55; 100]).unwrap();
        let err = Store::open(&dir, CACHE).unwrap_err();
        assert!(matches!(err, StoreError::Locked(_)), "{err:?}");
        let siblings: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(siblings, ["journal"]);
        assert!(dir.join("db").exists());
        drop(first);
    }

    #[test]
    fn the_lock_error_sled_reports_is_recognised() {
        // What sled 0.34.7 returns when its try_lock_exclusive fails (found by
        // opening the same directory twice with sled itself).
        let tmp = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(tmp.path()).open().unwrap();
        let Err(sled::Error::Io(e)) = sled::Config::new().path(tmp.path()).open() else {
            panic!("sled opened a locked directory twice");
        };
        assert!(is_sled_lock_error(&e), "{e:?}");
        assert!(matches!(
            StoreError::sled(tmp.path(), sled::Error::Io(e)),
            StoreError::Locked(_)
        ));
        drop(db);
    }

    #[test]
    fn io_errors_are_returned_without_moving_anything() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plain-file");
        fs::write(&file, b"not a directory").unwrap();
        let err = Store::open(&file.join("journal"), CACHE).unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("writable"), "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"not a directory");
    }

    #[test]
    fn no_space_is_recognised_by_code_and_by_kind() {
        let io_err = |source| StoreError::Io {
            path: PathBuf::from("/j"),
            source,
        };
        for code in [libc::ENOSPC, libc::EDQUOT, libc::EROFS] {
            let e = io_err(io::Error::from_raw_os_error(code));
            assert!(e.is_no_space(), "{code}");
            assert!(e.to_string().contains("disk is full or read-only"), "{e}");
        }
        // What sled really returns on a full tmpfs: the OS error re-created
        // from its Debug text, with the kind but without the code.
        let cloned = io_err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!("{:?}", io::Error::from_raw_os_error(libc::ENOSPC)),
        ));
        assert!(cloned.is_no_space());
        assert!(!cloned.to_string().contains("Os {"), "{cloned}");
        assert!(!io_err(io::Error::from_raw_os_error(libc::EACCES)).is_no_space());
        assert!(!StoreError::Corrupt("x".into()).is_no_space());
        assert!(!StoreError::Locked(PathBuf::from("/j")).is_no_space());
    }

    #[test]
    fn wrong_schema_or_missing_epoch_is_quarantined() {
        for (key, value) in [
            (META_SCHEMA, &(SCHEMA_VERSION + 1).to_be_bytes()[..]),
            (META_EPOCH, &b"not-hex"[..]),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("journal");
            let opened = open(&dir);
            let epoch = opened.epoch;
            let mut store = opened.store;
            store.append(1, 1, b"{}").unwrap();
            store.sled.meta.insert(key, value).unwrap();
            store.close_clean(1).unwrap();
            let opened = open(&dir);
            assert!(opened.quarantined.is_some() && opened.created);
            assert_ne!(opened.epoch, epoch);
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let mut store = open(&dir).store;
        store.append(1, 1, b"{}").unwrap();
        store.sled.meta.remove(META_EPOCH).unwrap();
        store.close_clean(1).unwrap();
        assert!(open(&dir).quarantined.is_some());
    }

    #[test]
    fn snapshot_put_remove_and_order_by_seq() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let mut store = open(&dir).store;
        store.put_snapshot("tick:BTCUSDT", 7, b"btc7").unwrap();
        store.put_snapshot("status:binance", 3, b"up").unwrap();
        store.put_snapshot("news:5", 5, b"headline").unwrap();
        store.put_snapshot("tick:BTCUSDT", 9, b"btc9").unwrap();
        store.put_snapshot("tick:ETHUSDT", 9, b"eth9").unwrap();
        store.remove_snapshot("news:5").unwrap();
        store.remove_snapshot("news:never").unwrap();
        let want = vec![
            ("status:binance".to_string(), 3, b"up".to_vec()),
            ("tick:BTCUSDT".to_string(), 9, b"btc9".to_vec()),
            ("tick:ETHUSDT".to_string(), 9, b"eth9".to_vec()),
        ];
        assert_eq!(store.snapshot().unwrap(), want);
        store.close_clean(0).unwrap();
        assert_eq!(open(&dir).store.snapshot().unwrap(), want);
    }

    #[test]
    fn meta_values_persist_and_cannot_clash_with_internal_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let opened = open(&dir);
        let epoch = opened.epoch;
        let mut store = opened.store;
        assert_eq!(store.get_meta("feed:up:upstream").unwrap(), None);
        store.put_meta("feed:up:upstream", b"1234").unwrap();
        store.put_meta("epoch", b"mine").unwrap();
        store.put_meta("feed:up:upstream", b"1240").unwrap();
        store.close_clean(0).unwrap();
        let opened = open(&dir);
        assert_eq!(opened.epoch, epoch);
        assert_eq!(
            opened
                .store
                .get_meta("feed:up:upstream")
                .unwrap()
                .as_deref(),
            Some(&b"1240"[..])
        );
        assert_eq!(
            opened.store.get_meta("epoch").unwrap().as_deref(),
            Some(&b"mine"[..])
        );
    }

    #[test]
    fn counters_survive_clean_and_unclean_restarts_and_a_lost_meta_record() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let mut store = open(&dir).store;
        for seq in 1..=100 {
            store.append(seq, seq, &json_for(seq)).unwrap();
        }
        store.commit().unwrap();
        for seq in 101..=150 {
            store.append(seq, seq, &json_for(seq)).unwrap();
        }
        let want = store.stats();
        assert_eq!(
            (want.events, want.first_seq, want.last_seq),
            (150, Some(1), Some(150))
        );
        assert_eq!(
            want.bytes,
            (1..=150).map(|s| json_for(s).len() as u64).sum::<u64>()
        );
        // Unclean: the counters on disk cover 1..=100 only.
        drop(store);
        let store = open(&dir).store;
        let got = store.stats();
        assert_eq!(
            (got.events, got.bytes, got.first_seq, got.last_seq),
            (150, want.bytes, Some(1), Some(150))
        );
        // Without the counters record at all: one full count.
        store.sled.meta.remove(META_COUNTERS).unwrap();
        drop(store);
        let store = open(&dir).store;
        let got = store.stats();
        assert_eq!((got.events, got.bytes), (150, want.bytes));
        store.close_clean(150).unwrap();
        let opened = open(&dir);
        assert_eq!((opened.next_seq, opened.lost), (151, None));
        assert_eq!(opened.store.stats().events, 150);
    }

    #[test]
    fn an_interrupted_trim_batch_is_finished_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let mut store = open(&dir).store;
        for seq in 1..=20 {
            store.append(seq, seq, b"0123456789").unwrap();
        }
        store.commit().unwrap();
        // What a crash between trim's counter write and its removals leaves.
        store.counters = StoreTotals {
            events: 15,
            bytes: 150,
            floor: 6,
            high: 20,
        };
        store.write_counters().unwrap();
        drop(store);
        let store = open(&dir).store;
        let s = store.stats();
        assert_eq!(
            (s.events, s.bytes, s.first_seq, s.last_seq),
            (15, 150, Some(6), Some(20))
        );
        assert_eq!(store.trimmed_below(), 6);
    }

    #[test]
    fn appends_must_go_up() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = open(&tmp.path().join("journal")).store;
        assert!(matches!(
            store.append(0, 1, b"{}"),
            Err(StoreError::Corrupt(_))
        ));
        store.append(5, 1, b"five").unwrap();
        let err = store.append(5, 1, b"again").unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
        assert!(store.append(4, 1, b"{}").is_err());
        store.append(6, 1, b"six").unwrap();
        assert_eq!(
            store.read(0, 10).unwrap(),
            [event(5, 1, b"five"), event(6, 1, b"six")]
        );
        assert!(store.record_gap(9, 8).is_err());
        // Nor into a range recorded as never existing.
        store.record_gap(7, 9).unwrap();
        assert!(store.append(8, 1, b"{}").is_err());
        store.append(10, 1, b"ten").unwrap();
    }

    #[track_caller]
    fn trim_check(retention: Retention, now: u64, want_first: u64) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let mut store = open(&dir).store;
        store.put_snapshot("tick:A", 1, b"a1").unwrap();
        store.record_gap(1, 2).unwrap();
        for seq in 3..=12 {
            // ts 1003..=1012, 10 bytes each.
            store.append(seq, 1000 + seq, b"0123456789").unwrap();
        }
        store.record_gap(13, 14).unwrap();
        store.append(15, 1015, b"0123456789").unwrap();
        // One event per call: bounded work.
        let mut removed = 0;
        loop {
            match store.trim(&retention, now, 1).unwrap() {
                0 => break,
                n => removed += n,
            }
        }
        assert_eq!(removed, want_first - 3);
        assert_eq!(store.first_seq(), Some(want_first));
        let left = (want_first..=12).count() as u64 + 1;
        let s = store.stats();
        assert_eq!((s.events, s.bytes), (left, 10 * left));
        // The gap below the trimmed events went with them; later ones stay.
        let records = store.read(0, 100).unwrap();
        let oldest = if removed > 0 { want_first } else { 1 };
        assert_eq!(records[0].start(), oldest);
        assert!(records.contains(&gap_record(13, 14)));
        assert_eq!(
            store.snapshot().unwrap(),
            [("tick:A".to_string(), 1, b"a1".to_vec())]
        );
        store.close_clean(15).unwrap();
        let store = open(&dir).store;
        assert_eq!(store.first_seq(), Some(want_first));
        assert_eq!(
            store.trimmed_below(),
            if removed > 0 { want_first } else { 0 }
        );
        assert_eq!(store.snapshot().unwrap().len(), 1);
    }

    #[test]
    fn trim_by_each_limit() {
        // Events 3..=12 and 15 (ts 1000 + seq, 10 bytes each), gaps 1..=2 and
        // 13..=14.
        trim_check(
            Retention {
                max_events: Some(4),
                ..Retention::default()
            },
            0,
            10,
        );
        trim_check(
            Retention {
                max_bytes: Some(35),
                ..Retention::default()
            },
            0,
            11,
        );
        trim_check(
            Retention {
                max_age_ms: Some(5),
                ..Retention::default()
            },
            1012,
            7,
        );
        // The strictest limit wins.
        trim_check(
            Retention {
                max_events: Some(8),
                max_bytes: Some(1_000),
                max_age_ms: Some(2),
            },
            1012,
            10,
        );
        trim_check(Retention::default(), u64::MAX, 3);
    }

    #[test]
    fn trim_stops_at_max_batch_and_without_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = open(&tmp.path().join("journal")).store;
        for seq in 1..=10 {
            store.append(seq, seq, b"x").unwrap();
        }
        let all = Retention {
            max_events: Some(0),
            ..Retention::default()
        };
        assert_eq!(store.trim(&Retention::default(), u64::MAX, 100).unwrap(), 0);
        assert_eq!(store.trim(&all, 0, 0).unwrap(), 0);
        assert_eq!(store.trim(&all, 0, 3).unwrap(), 3);
        assert_eq!(store.first_seq(), Some(4));
        assert_eq!(store.trim(&all, 0, 100).unwrap(), 7);
        assert_eq!(
            (store.first_seq(), store.last_seq(), store.trimmed_below()),
            (None, None, 11)
        );
        // Appends continue above everything ever stored.
        assert!(store.append(10, 1, b"x").is_err());
        store.append(11, 1, b"x").unwrap();
        assert_eq!((store.first_seq(), store.last_seq()), (Some(11), Some(11)));
    }

    #[test]
    fn read_places_gaps_and_honours_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = open(&tmp.path().join("journal")).store;
        for seq in [1, 2, 3, 7, 8, 12] {
            store.append(seq, seq, &json_for(seq)).unwrap();
        }
        store.record_gap(4, 5).unwrap();
        store.record_gap(6, 6).unwrap(); // Merged with 4..=5.
        store.record_gap(9, 11).unwrap();
        store.record_gap(13, 20).unwrap(); // After the last event.
        let ev = |seq| event(seq, seq, &json_for(seq));
        let gap = gap_record;
        assert_eq!(store.read(0, 4).unwrap(), [ev(1), ev(2), ev(3), gap(4, 6)]);
        assert_eq!(store.read(3, 3).unwrap(), [gap(4, 6), ev(7), ev(8)]);
        // A gap holding after+1 comes first, as stored (not clipped).
        assert_eq!(store.read(4, 2).unwrap(), [gap(4, 6), ev(7)]);
        assert_eq!(store.read(5, 1).unwrap(), [gap(4, 6)]);
        assert_eq!(store.read(6, 1).unwrap(), [ev(7)]);
        assert_eq!(
            store.read(10, 10).unwrap(),
            [gap(9, 11), ev(12), gap(13, 20)]
        );
        assert_eq!(store.read(12, 10).unwrap(), [gap(13, 20)]);
        assert_eq!(store.read(20, 10).unwrap(), []);
        assert_eq!(store.read(0, 0).unwrap(), []);
        assert_eq!(store.read(u64::MAX, 10).unwrap(), []);
        assert_eq!(store.read(0, usize::MAX).unwrap().len(), 9);
        // Merging across a join and around an existing range.
        store.record_gap(21, 22).unwrap();
        store.record_gap(15, 30).unwrap();
        assert_eq!(store.read(12, 10).unwrap(), [gap(13, 30)]);
        assert_eq!(
            store.tail(3).unwrap(),
            [ev(8), gap(9, 11), ev(12)]
                .into_iter()
                .skip(1)
                .chain([gap(13, 30)])
                .collect::<Vec<_>>()
        );
        assert_eq!(store.tail(0).unwrap(), []);
        assert_eq!(store.tail(100).unwrap().len(), 9);
        assert_eq!(store.tail(1).unwrap(), [gap(13, 30)]);
    }

    #[test]
    fn a_crash_records_the_unused_reservation_as_lost_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let opened = open(&dir);
        let epoch = opened.epoch;
        let mut store = opened.store;
        store.reserve(100).unwrap();
        store.commit().unwrap();
        for seq in 1..=10 {
            store.append(seq, seq, &json_for(seq)).unwrap();
        }
        store.reserve(50).unwrap(); // Never lowers.
        store.commit().unwrap();
        drop(store);
        let opened = open(&dir);
        assert_eq!(opened.epoch, epoch);
        assert_eq!((opened.next_seq, opened.lost), (101, Some((11, 100))));
        assert_eq!(
            opened.store.read(9, 10).unwrap(),
            [event(10, 10, &json_for(10)), gap_record(11, 100)]
        );
        // A second crash with nothing new: nothing more is lost.
        drop(opened);
        let opened = open(&dir);
        assert_eq!((opened.next_seq, opened.lost), (101, None));
        let mut store = opened.store;
        store.reserve(200).unwrap();
        store.commit().unwrap();
        store.append(101, 101, b"{}").unwrap();
        drop(store);
        let opened = open(&dir);
        assert_eq!((opened.next_seq, opened.lost), (201, Some((102, 200))));
        // A clean close lowers the mark to what was handed out.
        let mut store = opened.store;
        store.reserve(300).unwrap();
        store.append(201, 201, b"{}").unwrap();
        store.close_clean(205).unwrap();
        let opened = open(&dir);
        assert_eq!((opened.next_seq, opened.lost), (206, Some((202, 205))));
        assert_eq!(opened.epoch, epoch);
    }

    #[test]
    fn commit_syncs_with_or_without_blobs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let mut store = open(&dir).store;
        store.append(1, 1, b"{}").unwrap();
        store.commit().unwrap();
        // sled keeps values bigger than a fraction of a segment in blobs/.
        let big = vec![b'x'; 1 << 20];
        store.append(2, 2, &big).unwrap();
        store.commit().unwrap();
        assert!(
            fs::read_dir(dir.join("blobs")).unwrap().count() > 0,
            "a blob file"
        );
        assert!(store.stats().disk_bytes > 1 << 20);
        store.close_clean(2).unwrap();
        let mut store = open(&dir).store;
        assert_eq!(store.read(1, 1).unwrap(), [event(2, 2, &big)]);
        let all = Retention {
            max_events: Some(0),
            ..Retention::default()
        };
        store.trim(&all, 0, 10).unwrap();
        store.commit().unwrap();
        // And with no blobs directory at all.
        let _ = fs::remove_dir_all(dir.join("blobs"));
        store.append(3, 3, b"{}").unwrap();
        store.commit().unwrap();
        store.close_clean(3).unwrap();
    }

    /// Set in the child of [`sigkill_leaves_a_gap_free_prefix_and_a_lost_range`].
    const CRASH_CHILD_DIR: &str = "TABLO_STORE_CRASH_CHILD_DIR";

    /// The child: reserves, appends and commits like the journal writer,
    /// printing `c <last committed seq> <durable mark>` after each commit,
    /// until it is killed.
    fn crash_child(dir: &Path) -> ! {
        let opened = open(dir);
        let mut store = opened.store;
        let mut next = opened.next_seq;
        let mut mark = next - 1;
        let mut rng = fastrand::Rng::new();
        let mut out = io::stdout().lock();
        loop {
            if next + 20 > mark {
                mark = next + 63;
                store.reserve(mark).unwrap();
                store.commit().unwrap();
            }
            for _ in 0..rng.usize(1..20) {
                store.append(next, next, &json_for(next)).unwrap();
                next += 1;
            }
            store.commit().unwrap();
            writeln!(out, "c {} {mark}", next - 1).unwrap();
            out.flush().unwrap();
        }
    }

    /// Kills the child if the test fails.
    struct KillOnDrop(Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn sigkill_leaves_a_gap_free_prefix_and_a_lost_range() {
        if let Some(dir) = std::env::var_os(CRASH_CHILD_DIR) {
            crash_child(Path::new(&dir));
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let epoch = open(&dir).epoch;
        let child_err = tmp.path().join("child.stderr");
        let mut rng = fastrand::Rng::with_seed(11);
        let mut committed = 0;
        for round in 0..12 {
            let child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "journal::store::tests::sigkill_leaves_a_gap_free_prefix_and_a_lost_range",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CRASH_CHILD_DIR, &dir)
                .stdout(Stdio::piped())
                .stderr(File::create(&child_err).unwrap())
                .spawn()
                .unwrap();
            let mut child = KillOnDrop(child);
            let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
            let (mut last_committed, mut mark) = (0, 0);
            let mut commits = rng.usize(1..40);
            while commits > 0 {
                let Some(Ok(line)) = lines.next() else {
                    let err = fs::read_to_string(&child_err).unwrap_or_default();
                    panic!("round {round}: the child stopped by itself: {err}");
                };
                let Some(rest) = line.strip_prefix("c ") else {
                    continue;
                };
                let (c, m) = rest.split_once(' ').unwrap();
                (last_committed, mark) = (c.parse::<u64>().unwrap(), m.parse::<u64>().unwrap());
                commits -= 1;
            }
            drop(child);
            assert!(
                last_committed > committed,
                "round {round}: the child made progress"
            );
            committed = last_committed;

            let opened = open(&dir);
            assert_eq!(opened.epoch, epoch, "round {round}");
            assert!(
                !opened.created && opened.quarantined.is_none(),
                "round {round}"
            );
            let records = opened.store.read(0, usize::MAX).unwrap();
            // Gap-free: every seq from 1 on is an event or inside a gap.
            let mut expect = 1;
            for r in &records {
                match r {
                    Record::Event { seq, at, json } => {
                        assert_eq!(
                            (*seq, *at, json),
                            (expect, expect, &json_for(expect)),
                            "round {round}"
                        );
                        expect += 1;
                    }
                    Record::Gap { from, to, .. } => {
                        assert_eq!(*from, expect, "round {round}");
                        expect = to + 1;
                    }
                }
            }
            let last = opened.store.last_seq().unwrap();
            assert!(
                last >= last_committed,
                "round {round}: committed {last_committed}, found {last}"
            );
            assert!(
                opened.next_seq > mark,
                "round {round}: seqs up to {mark} may have been handed out"
            );
            assert_eq!(
                expect, opened.next_seq,
                "round {round}: the gap ends at the mark"
            );
            match opened.lost {
                Some((from, to)) => {
                    assert_eq!((from, to + 1), (last + 1, opened.next_seq), "round {round}")
                }
                None => assert_eq!(last + 1, opened.next_seq, "round {round}"),
            }
        }
    }

    #[test]
    fn pending_changes_are_seen_at_once_and_written_once_per_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let mut store = open(&dir).store;
        let mut want = Vec::new();
        let mut bytes = 0;
        for seq in 1..=500 {
            let json = json_for(seq);
            store.append(seq, 1_000 + seq, &json).unwrap();
            store
                .put_snapshot(&format!("tick:S{}", seq % 20), seq, &json)
                .unwrap();
            store
                .put_meta("feed:up:upstream", &seq.to_be_bytes())
                .unwrap();
            bytes += json.len() as u64;
            want.push(event(seq, 1_000 + seq, &json));
        }
        store.remove_snapshot("tick:S0").unwrap();
        store.put_snapshot("tick:S1", 500, b"late").unwrap();
        let check = |store: &Store| {
            assert_eq!(store.read(0, usize::MAX).unwrap(), want);
            assert_eq!(store.read(250, 2).unwrap(), want[250..252]);
            assert_eq!(store.tail(3).unwrap(), want[497..]);
            let s = store.stats();
            assert_eq!(
                (s.events, s.bytes, s.first_seq, s.last_seq),
                (500, bytes, Some(1), Some(500))
            );
            let snapshot = store.snapshot().unwrap();
            assert_eq!(snapshot.len(), 19);
            assert_eq!(snapshot[0], ("tick:S2".to_string(), 482, json_for(482)));
            assert_eq!(snapshot[18], ("tick:S1".to_string(), 500, b"late".to_vec()));
            assert_eq!(
                store.get_meta("feed:up:upstream").unwrap(),
                Some(500u64.to_be_bytes().to_vec())
            );
        };
        // Nothing has reached sled yet, and everything is seen.
        assert!(store.sled.events.is_empty() && store.sled.snapshot.is_empty());
        assert_eq!(
            store.sled.meta.get(user_key("feed:up:upstream")).unwrap(),
            None
        );
        check(&store);
        let values = store.pending.batches.len();
        let encoded = want.len() * ENTRY_HEADER + bytes as usize;
        assert!(values <= encoded / (MAX_VALUE_BYTES - 100) + 1, "{values}");
        store.commit().unwrap();
        // A few values for the commit's events, one per snapshot key.
        assert_eq!(store.sled.events.len(), values);
        assert_eq!(store.sled.snapshot.len(), 19);
        check(&store);
        store.close_clean(500).unwrap();
        check(&open(&dir).store);
    }

    #[test]
    fn big_commits_are_split_and_read_across_their_batches() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let mut store = open(&dir).store;
        // Six events fill a value.
        let len = MAX_VALUE_BYTES / 6 - ENTRY_HEADER - 1;
        let json = |seq: u64| vec![b'a' + (seq % 26) as u8; len];
        let mut want = Vec::new();
        for seq in 1..=40 {
            store.append(seq, seq, &json(seq)).unwrap();
            want.push(event(seq, seq, &json(seq)));
            if seq == 33 {
                store.commit().unwrap();
            }
        }
        store.commit().unwrap();
        // 6 values for 1..=33, 2 for the rest.
        assert_eq!(store.sled.events.len(), 8);
        for after in 0..=41 {
            let from = (after as usize).min(40);
            let to = (from + 4).min(40);
            assert_eq!(
                store.read(after, 4).unwrap(),
                want[from..to],
                "after {after}"
            );
        }
        assert_eq!(store.tail(9).unwrap(), want[31..]);
        // Exact per event, while a batch holds trimmed and kept ones.
        let keep = |max_events| Retention {
            max_events: Some(max_events),
            ..Retention::default()
        };
        assert_eq!(store.trim(&keep(25), 0, 100).unwrap(), 15);
        assert_eq!((store.first_seq(), store.trimmed_below()), (Some(16), 16));
        assert_eq!(store.read(0, 2).unwrap(), want[15..17]);
        assert_eq!(store.tail(100).unwrap(), want[15..]);
        // Batches 1..=6 and 7..=12 are gone; 13..=18 holds kept events.
        assert_eq!(store.sled.events.len(), 6);
        store.close_clean(40).unwrap();
        let mut store = open(&dir).store;
        assert_eq!(store.read(0, usize::MAX).unwrap(), want[15..]);
        let s = store.stats();
        assert_eq!(
            (s.events, s.first_seq, s.last_seq),
            (25, Some(16), Some(40))
        );
        assert_eq!(store.trim(&keep(22), 0, 100).unwrap(), 3);
        assert_eq!(store.sled.events.len(), 5);
        assert_eq!(store.tail(100).unwrap(), want[18..]);
    }

    #[test]
    fn a_long_wait_for_a_commit_writes_pending_events_early() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let mut store = open(&dir).store;
        let n = MAX_PENDING_EVENTS as u64 + 10;
        for seq in 1..=n {
            store.append(seq, seq, b"{}").unwrap();
        }
        assert!(!store.sled.events.is_empty(), "written before the commit");
        assert!(store.pending.events < MAX_PENDING_EVENTS);
        let records = store.read(MAX_PENDING_EVENTS as u64 - 3, 6).unwrap();
        let seqs: Vec<u64> = records.iter().map(Record::start).collect();
        let first = MAX_PENDING_EVENTS as u64 - 2;
        assert_eq!(seqs, (first..first + 6).collect::<Vec<_>>());
        store.close_clean(n).unwrap();
        let store = open(&dir).store;
        assert_eq!(store.stats().events, n);
        assert_eq!(store.read(0, usize::MAX).unwrap().len() as u64, n);
    }

    #[test]
    fn a_journal_in_the_old_one_key_per_event_layout_is_moved_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        // What schema 1 wrote: one event per key, value ts + JSON.
        let db = sled::Config::new().path(&dir).open().unwrap();
        let meta = db.open_tree(META).unwrap();
        meta.insert(META_SCHEMA, &1u64.to_be_bytes()).unwrap();
        meta.insert(META_EPOCH, "0123456789abcdef").unwrap();
        meta.insert(META_RESERVED, &5u64.to_be_bytes()).unwrap();
        let events = db.open_tree(EVENTS).unwrap();
        for seq in 1..=5u64 {
            let mut value = seq.to_be_bytes().to_vec();
            value.extend_from_slice(&json_for(seq));
            events.insert(be(seq), value).unwrap();
        }
        db.flush().unwrap();
        drop((meta, events, db));
        let opened = open(&dir);
        let moved = opened.quarantined.expect("moved aside, not misread");
        assert!(opened.created && moved.join("db").exists());
        assert_ne!(opened.epoch, "0123456789abcdef");
        assert_eq!((opened.next_seq, opened.store.stats().events), (1, 0));
    }

    #[test]
    fn a_crash_reports_how_many_lost_seqs_the_lease_let_out() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let mut store = open(&dir).store;
        store.reserve(10).unwrap();
        store.lease(500).unwrap(); // Never past the reservation.
        assert_eq!(store.leased(), Some(10));
        store.reserve(100_000).unwrap();
        store.lease(30).unwrap();
        store.commit().unwrap();
        for seq in 1..=10 {
            store.append(seq, seq, &json_for(seq)).unwrap();
        }
        store.lease(20).unwrap(); // Never lowers.
        assert_eq!(store.leased(), Some(30));
        store.commit().unwrap();
        drop(store);
        // The lease on disk is 30: of 11..=100000, at most 20 were ever
        // handed out.
        let opened = open(&dir);
        assert_eq!(opened.lost, Some((11, 100_000)));
        assert_eq!(opened.lost_handed_out_max, 20);
        let gap = Record::Gap {
            from: 11,
            to: 100_000,
            handed_out_max: 20,
        };
        assert_eq!(
            opened.store.read(10, 5).unwrap(),
            std::slice::from_ref(&gap)
        );
        let mut out = Vec::new();
        crate::journal::export::push_line(&mut out, &gap, 0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"type\":\"gap\",\"from\":11,\"to\":100000,\"handed_out_max\":20}\n"
        );
        // A later gap that touches it merges, and adds its own count.
        let mut store = opened.store;
        store.record_gap(100_001, 100_004).unwrap();
        assert_eq!(
            store.read(10, 5).unwrap(),
            [Record::Gap {
                from: 11,
                to: 100_004,
                handed_out_max: 24,
            }]
        );
        // A clean close brings the lease down with the mark: nothing lost.
        store.close_clean(100_004).unwrap();
        let opened = open(&dir);
        assert_eq!((opened.lost, opened.lost_handed_out_max), (None, 0));
        assert_eq!(opened.store.leased(), Some(100_004));
    }

    #[test]
    fn without_a_lease_every_lost_seq_counts_as_handed_out() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let mut store = open(&dir).store;
        store.reserve(50).unwrap();
        store.append(1, 1, b"{}").unwrap();
        store.commit().unwrap();
        drop(store);
        let opened = open(&dir);
        assert_eq!(
            (opened.lost, opened.lost_handed_out_max),
            (Some((2, 50)), 49)
        );
        assert_eq!(opened.store.read(1, 5).unwrap(), [gap_record(2, 50)]);
    }

    #[test]
    fn events_of_the_wall_clock_batch_format_read_with_journal_time_zero() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let mut store = open(&dir).store;
        store.append(1, 5, b"{}").unwrap();
        store.commit().unwrap();
        // Rewrite the batch as format 1 wrote it: the same bytes, with a
        // wall-clock ts where journal time now goes.
        let mut value = store.sled.events.get(be(1)).unwrap().unwrap().to_vec();
        value[0] = BATCH_FORMAT_WALL_TS;
        value[9..17].copy_from_slice(&1_780_000_000_000u64.to_be_bytes());
        store.sled.events.insert(be(1), value).unwrap();
        store.append(2, 7, b"{}").unwrap();
        assert_eq!(
            store.read(0, 5).unwrap(),
            [event(1, 0, b"{}"), event(2, 7, b"{}")]
        );
        // So it ages from the start of journal time, not from a wall clock
        // that may be months off.
        let max_age = Retention {
            max_age_ms: Some(10),
            ..Retention::default()
        };
        assert_eq!(store.trim(&max_age, 9, 10).unwrap(), 0);
        assert_eq!(store.trim(&max_age, 11, 10).unwrap(), 1);
        assert_eq!(store.first_seq(), Some(2));
    }
}
