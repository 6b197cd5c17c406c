//! What the journal's durability costs (issue 3, "Benchmarks").
//!
//! Drives `tablo::journal::store::Store` directly, the way the journal
//! writer does: each event is a ~220-byte tick appended with its snapshot
//! entry, and every 100 ms a group commit (`Store::commit`: sled flush, then
//! fsync of every file) extends the reservation and runs retention. Measures,
//! on the real disk (a temp dir under `target/`, never a tmpfs), each load
//! in a fresh child process so that its RSS, CPU and writes are its own:
//!
//! - paced loads of 100, 1,000 and 10,000 events/s: achieved rate, commit
//!   latency p50/p99/max, CPU per 1,000 events, bytes that reached the block
//!   layer per event (`write_bytes` of `/proc/self/io`: SD-card wear), disk
//!   size per event, RSS;
//! - the same with no pacing: the most events/s with 100 ms commits;
//! - opening a journal of 1,000,000 events and reading its snapshot tree
//!   (what the board and `snapshot` need at start-up): first right after
//!   writing it (sled then replays its log since its last snapshot), then
//!   warm, then with the page cache dropped.
//!
//! Run with `cargo bench --bench journal`; `TABLO_BENCH_QUICK=1` shortens
//! every phase for a smoke run. Dropping the page cache needs root; without
//! it the cold open is reported as not measured.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tablo::config::{DEFAULT_CACHE_BYTES, DEFAULT_FLUSH_INTERVAL_MS};
use tablo::journal::store::{Retention, Store};
use tablo::journal::{RESERVE_BLOCK, TRIM_BATCH};

mod support;

/// The group-commit interval: the daemon's default.
const COMMIT_EVERY: Duration = Duration::from_millis(DEFAULT_FLUSH_INTERVAL_MS);

/// The paced loads, events per second.
const RATES: [u64; 3] = [100, 1_000, 10_000];

/// Distinct symbols: the snapshot tree holds one entry per symbol.
const SYMBOLS: u64 = 50;

/// The paced loop wakes at most this often, appending every event that is
/// due: the writer too takes events in batches when they come fast.
const MIN_SLEEP: Duration = Duration::from_millis(1);

/// Building the big journal commits this often (events), to be quick.
const BUILD_COMMIT_EVERY: u64 = 50_000;

/// Issue 3's goal for opening a 1M-event journal and reading its snapshot.
const OPEN_GOAL: Duration = Duration::from_millis(300);

/// Set in the child that measures an open: the journal directory.
const OPEN_CHILD_ENV: &str = "TABLO_BENCH_OPEN_CHILD";

/// Set in the child that runs one load: the journal directory; the load is
/// `RATE SECONDS LABEL` in [`LOAD_ENV`]. Each load runs in a fresh process,
/// so that its RSS, CPU time and bytes written are its own.
const RUN_CHILD_ENV: &str = "TABLO_BENCH_RUN_CHILD";

/// The load of a [`RUN_CHILD_ENV`] child (rate 0: as fast as possible).
const LOAD_ENV: &str = "TABLO_BENCH_LOAD";

/// Set (to anything but `0`) for a short smoke run.
const QUICK_ENV: &str = "TABLO_BENCH_QUICK";

/// How long each phase runs.
struct Plan {
    paced: Duration,
    unpaced: Duration,
    open_events: u64,
}

fn main() {
    if let Some(dir) = std::env::var_os(OPEN_CHILD_ENV) {
        open_child(Path::new(&dir));
        return;
    }
    if let Some(dir) = std::env::var_os(RUN_CHILD_ENV) {
        let load = std::env::var(LOAD_ENV).expect("the load");
        run_child(Path::new(&dir), &load);
        return;
    }
    let quick = std::env::var(QUICK_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
    let plan = if quick {
        Plan {
            paced: Duration::from_secs(1),
            unpaced: Duration::from_secs(1),
            open_events: 100_000,
        }
    } else {
        Plan {
            paced: Duration::from_secs(5),
            unpaced: Duration::from_secs(3),
            open_events: 1_000_000,
        }
    };
    let root = bench_root();
    let started = Instant::now();
    println!("tablo journal bench{}", if quick { " (quick)" } else { "" });
    println!("  machine: {}", support::machine());
    println!(
        "  bench dir: {} ({})",
        root.path().display(),
        filesystem_of(root.path())
    );
    println!(
        "  events: {} bytes of tick JSON each, {SYMBOLS} symbols, snapshot entry per event; \
         commit (sled flush + fsync) every {} ms; sled cache {} MiB",
        tick_json(1_000_000, 1_700_000_000_000).len(),
        COMMIT_EVERY.as_millis(),
        DEFAULT_CACHE_BYTES >> 20
    );
    println!();
    println!(
        "| load | events/s | commit p50 | commit p99 | commit max | CPU per 1k events | CPU (of one core) | written per event | disk per event | RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let loads = RATES
        .iter()
        .map(|&rate| (rate, plan.paced, format!("paced {rate}/s")))
        .chain([(0, plan.unpaced, "as fast as possible".to_owned())]);
    for (rate, length, label) in loads {
        let dir = root.path().join(format!("load-{rate}"));
        let load = format!("{rate} {} {label}", length.as_secs_f64());
        println!(
            "{}",
            child(&[(RUN_CHILD_ENV, dir.as_os_str()), (LOAD_ENV, load.as_ref())])
        );
        fs::remove_dir_all(&dir).expect("remove the run's journal");
    }

    println!();
    open_bench(&root.path().join("big"), plan.open_events);
    println!();
    println!("  whole bench: {:.0} s", started.elapsed().as_secs_f64());
}

/// A temp dir under `target/`: on the project's disk, never a tmpfs like
/// `/tmp` can be. Removed on drop.
fn bench_root() -> tempfile::TempDir {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    fs::create_dir_all(&target).expect("create the target dir");
    tempfile::Builder::new()
        .prefix("bench-journal-")
        .tempdir_in(&target)
        .expect("create the bench dir under target/")
}

/// Runs this bench again as a child with `envs` set; returns what it
/// printed.
fn child(envs: &[(&str, &OsStr)]) -> String {
    let out = Command::new(std::env::current_exe().expect("the bench's path"))
        .envs(envs.iter().copied())
        .output()
        .expect("run a bench child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the bench child failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.trim().to_owned()
}

/// The child of one load (see [`RUN_CHILD_ENV`]): prints its table row.
fn run_child(dir: &Path, load: &str) {
    let mut words = load.splitn(3, ' ');
    let mut next = || words.next().expect("RATE SECONDS LABEL");
    let rate: u64 = next().parse().expect("a rate");
    let secs: f64 = next().parse().expect("seconds");
    let label = next();
    let run = append_run(
        dir,
        (rate > 0).then_some(rate),
        Duration::from_secs_f64(secs),
    );
    println!("{}", run.row(label));
}

/// One measured run of appends and group commits.
struct Run {
    events: u64,
    elapsed: Duration,
    /// Commit durations, µs.
    commits: Histogram<u64>,
    cpu: Duration,
    written: u64,
    disk: u64,
    rss_kib: u64,
}

impl Run {
    fn row(&self, load: &str) -> String {
        let ms = |us: u64| us as f64 / 1e3;
        let per_event = |bytes: u64| bytes as f64 / self.events.max(1) as f64;
        format!(
            "| {load} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} ms | {:.1} % | {:.0} B | {:.0} B | {:.1} MiB |",
            self.events as f64 / self.elapsed.as_secs_f64(),
            ms(self.commits.value_at_quantile(0.5)),
            ms(self.commits.value_at_quantile(0.99)),
            ms(self.commits.max()),
            self.cpu.as_secs_f64() * 1e3 * 1_000.0 / self.events.max(1) as f64,
            self.cpu.as_secs_f64() * 100.0 / self.elapsed.as_secs_f64(),
            per_event(self.written),
            per_event(self.disk),
            self.rss_kib as f64 / 1024.0,
        )
    }
}

/// Appends for `length` at `rate` events/s (as fast as possible without
/// one) to a new journal in `dir`, committing every [`COMMIT_EVERY`] like
/// the writer, and measures it.
fn append_run(dir: &Path, rate: Option<u64>, length: Duration) -> Run {
    let opened = Store::open(dir, DEFAULT_CACHE_BYTES).expect("open a new journal");
    let mut store = opened.store;
    let mut journal = Journaling::new(opened.next_seq - 1);
    journal.start(&mut store);
    let mut commits = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");

    let cpu_before = cpu_time();
    let written_before = written_bytes();
    let started = Instant::now();
    let end = started + length;
    let mut next_commit = started + COMMIT_EVERY;
    let mut appended = 0u64;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        match rate {
            Some(rate) => {
                let due = (now - started).as_secs_f64() * rate as f64;
                while (appended as f64) < due {
                    journal.append(&mut store);
                    appended += 1;
                }
            }
            None => {
                // Look at the clock every few events only.
                for _ in 0..64 {
                    journal.append(&mut store);
                }
                appended += 64;
            }
        }
        let now = Instant::now();
        if now >= next_commit {
            let took = journal.tick(&mut store);
            commits
                .record(took.as_micros().max(1) as u64)
                .expect("record");
            // The writer's next deadline is a full interval after its tick.
            next_commit = now + COMMIT_EVERY;
        }
        if let Some(rate) = rate {
            let next_event = started + Duration::from_secs_f64((appended + 1) as f64 / rate as f64);
            let wake = next_event.max(now + MIN_SLEEP).min(next_commit).min(end);
            std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        }
    }
    let took = journal.tick(&mut store);
    commits
        .record(took.as_micros().max(1) as u64)
        .expect("record");
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let written = written_bytes().saturating_sub(written_before);
    let rss_kib = proc_status_kib("VmRSS");
    store.close_clean(journal.seq).expect("close the journal");
    Run {
        events: appended,
        elapsed,
        commits,
        cpu,
        written,
        disk: allocated_bytes(dir),
        rss_kib,
    }
}

/// What the journal writer does around the store: numbering, the snapshot
/// entry of each tick, the reservation, commits and retention.
struct Journaling {
    /// The last seq appended.
    seq: u64,
    reserved: u64,
    dirty: bool,
    json: String,
    key: String,
}

impl Journaling {
    fn new(last_seq: u64) -> Journaling {
        Journaling {
            seq: last_seq,
            reserved: 0,
            dirty: false,
            json: String::with_capacity(256),
            key: String::with_capacity(32),
        }
    }

    /// The writer's start: reserve a block and make it durable.
    fn start(&mut self, store: &mut Store) {
        self.reserved = self.seq + RESERVE_BLOCK;
        store.reserve(self.reserved).expect("reserve");
        store.commit().expect("commit");
    }

    fn append(&mut self, store: &mut Store) {
        self.seq += 1;
        let seq = self.seq;
        let ts = 1_700_000_000_000 + seq;
        self.json.clear();
        write_tick(&mut self.json, seq, ts);
        self.key.clear();
        let _ = write!(self.key, "tick:S{:02}USDT", seq % SYMBOLS);
        store.append(seq, ts, self.json.as_bytes()).expect("append");
        store
            .put_snapshot(&self.key, seq, self.json.as_bytes())
            .expect("put_snapshot");
        self.dirty = true;
    }

    /// The writer's tick: extend the reservation when half used, commit if
    /// anything changed, then run retention (no limits, as by default).
    /// Returns how long the commit took.
    fn tick(&mut self, store: &mut Store) -> Duration {
        if self.reserved.saturating_sub(self.seq) < RESERVE_BLOCK / 2 {
            self.reserved = self.seq + RESERVE_BLOCK;
            store.reserve(self.reserved).expect("reserve");
            self.dirty = true;
        }
        if !std::mem::take(&mut self.dirty) {
            return Duration::ZERO;
        }
        let took = store.commit().expect("commit");
        store
            .trim(&Retention::default(), 0, TRIM_BATCH)
            .expect("trim");
        took
    }
}

/// A tick as the hub sends it: realistic field names, lengths and digits.
fn write_tick(out: &mut String, seq: u64, ts: u64) {
    let cents = 6_700_000 + seq % 100_000;
    let _ = write!(
        out,
        r#"{{"type":"tick","seq":{seq},"channel":"prices","symbol":"S{:02}USDT","price":"{}.{:02}000000","open":"66000.00000000","high":"68000.00000000","change_pct":"1.53","volume":"12345.67800000","ts":{ts},"source":"binance"}}"#,
        seq % SYMBOLS,
        cents / 100,
        cents % 100,
    );
}

fn tick_json(seq: u64, ts: u64) -> String {
    let mut out = String::new();
    write_tick(&mut out, seq, ts);
    out
}

/// Builds a journal of `events` events in `dir`, closes it cleanly, and
/// measures open + snapshot in a fresh process, warm and cold.
fn open_bench(dir: &Path, events: u64) {
    println!(
        "open with {events} events in the journal (goal: ≤ {OPEN_GOAL:?} for open + snapshot)"
    );
    let started = Instant::now();
    let opened = Store::open(dir, DEFAULT_CACHE_BYTES).expect("open a new journal");
    let mut store = opened.store;
    let mut journal = Journaling::new(opened.next_seq - 1);
    store.reserve(events).expect("reserve");
    for n in 1..=events {
        journal.append(&mut store);
        if n % BUILD_COMMIT_EVERY == 0 {
            store.commit().expect("commit");
        }
    }
    store.close_clean(journal.seq).expect("close the journal");
    let took = started.elapsed();
    println!(
        "  built in {:.1} s ({:.0} events/s, a commit every {BUILD_COMMIT_EVERY}); {:.0} MiB on disk ({:.0} B per event)",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64(),
        allocated_bytes(dir) as f64 / (1 << 20) as f64,
        allocated_bytes(dir) as f64 / events as f64,
    );
    println!(
        "| cache | open | snapshot | open + snapshot | snapshot entries | RSS after | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|");
    // The first open after a long write replays sled's log since its last
    // snapshot (sled takes one every million operations) and writes a new
    // one; later opens start from that snapshot.
    println!("{}", open_in_child(dir, "first open after writing, warm"));
    println!("{}", open_in_child(dir, "warm"));
    match drop_page_cache() {
        Ok(()) => println!("{}", open_in_child(dir, "cold (page cache dropped)")),
        Err(why) => println!("| cold | not measured: cannot drop the page cache ({why}) |"),
    }
}

/// Runs this bench again as a child that opens `dir`, and formats its
/// report as a table row.
fn open_in_child(dir: &Path, label: &str) -> String {
    let stdout = child(&[(OPEN_CHILD_ENV, dir.as_os_str())]);
    let n: Vec<u64> = stdout
        .split_whitespace()
        .map(|w| w.parse().expect("the child prints numbers"))
        .collect();
    let [open_us, snapshot_us, entries, rss_kib, hwm_kib] = n[..] else {
        panic!("the open child printed {stdout:?}");
    };
    let ms = |us: u64| us as f64 / 1e3;
    let total = open_us + snapshot_us;
    let verdict = if Duration::from_micros(total) <= OPEN_GOAL {
        ""
    } else {
        " (over the goal)"
    };
    format!(
        "| {label} | {:.1} ms | {:.1} ms | {:.1} ms{verdict} | {entries} | {:.1} MiB | {:.1} MiB |",
        ms(open_us),
        ms(snapshot_us),
        ms(total),
        rss_kib as f64 / 1024.0,
        hwm_kib as f64 / 1024.0,
    )
}

/// The child: opens the journal as the daemon does at start-up, reads the
/// snapshot tree, and prints `open_us snapshot_us entries rss_kib hwm_kib`.
fn open_child(dir: &Path) {
    let started = Instant::now();
    let opened = Store::open(dir, DEFAULT_CACHE_BYTES).expect("open the journal");
    let open = started.elapsed();
    let started = Instant::now();
    let snapshot = opened.store.snapshot().expect("read the snapshot");
    let snapshot_took = started.elapsed();
    assert!(opened.quarantined.is_none() && opened.lost.is_none());
    println!(
        "{} {} {} {} {}",
        open.as_micros(),
        snapshot_took.as_micros(),
        snapshot.len(),
        proc_status_kib("VmRSS"),
        proc_status_kib("VmHWM"),
    );
}

/// Writes dirty pages back and drops the page cache (root only).
fn drop_page_cache() -> Result<(), String> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    fs::write("/proc/sys/vm/drop_caches", "3\n").map_err(|e| e.to_string())
}

/// User + system CPU time of this process, all threads (sled's included).
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one `rusage` into the pointer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: getrusage succeeded, so it filled the struct.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Bytes this process caused to be sent to the block layer so far
/// (`write_bytes` of `/proc/self/io`).
fn written_bytes() -> u64 {
    let io = fs::read_to_string("/proc/self/io").expect("read /proc/self/io");
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("write_bytes in /proc/self/io")
}

/// A `kB` line of `/proc/self/status`, such as `VmRSS`.
fn proc_status_kib(field: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// Bytes allocated on disk to the files under `dir` (like `du`).
fn allocated_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).expect("read the journal dir") {
        let entry = entry.expect("a dir entry");
        let meta = entry.metadata().expect("a file's metadata");
        total += if meta.is_dir() {
            allocated_bytes(&entry.path())
        } else {
            meta.blocks() * 512
        };
    }
    total
}

/// `TYPE on SOURCE` of the mount holding `path`, from `/proc/self/mountinfo`.
fn filesystem_of(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mount_point), Some(fs_type), Some(source)) =
            (fields.get(4), fields.get(dash + 1), fields.get(dash + 2))
        else {
            continue;
        };
        let len = mount_point.len();
        if path.starts_with(mount_point) && best.as_ref().is_none_or(|(l, _)| len >= *l) {
            best = Some((
                len,
                format!("{fs_type} on {source}, mounted at {mount_point}"),
            ));
        }
    }
    best.map_or_else(|| "unknown file system".to_owned(), |(_, fs)| fs)
}
