//! Cold start: how long the release daemon takes from its spawn to the
//! first board frame on the screen, starting from a journal of 1,000,000
//! events (issue 14's target: ≤ 300 ms).
//!
//! The journal is built once with `tablo::journal::store::Store`, the way
//! the journal writer fills it (each event a tick of one of 20 symbols,
//! with its snapshot entry, a commit every 50,000 events; then a clean
//! close). Then the real binary starts on it again and again, with
//! `--display fbdev` drawing into a plain file of 1920×1080 XRGB8888 and a
//! feed whose upstream refuses connections (so the board shows the
//! journal's last-known prices, as after a power cut with the network
//! down). The observable is the frame itself: the file is zeroed before
//! each start and polled (`pread` of its last row every 100 µs) until the
//! bottom row holds pixels, i.e. the first frame has been copied out. The
//! daemon's log lines, stamped when they arrive, split the time into
//! stages: process start and config (spawn → the journal's line, less the
//! open time the line states), the journal's open and snapshot read (as
//! the daemon measures it), the journal writer's start (its reservation
//! commit, an fsync) and opening the screen (→ `board: fbdev at`), and
//! the renderer's fonts, first draw and copy (→ the frame). An in-process
//! split of that last stage (font set-up, a first draw with a cold glyph
//! cache, a warm draw) says which part of it dominates.
//!
//! Runs: the first start after the journal was written (sled then replays
//! its log since its last snapshot, as after a daemon that ran for hours),
//! then warm starts, then starts with the page cache dropped (root only;
//! otherwise reported as not measured).
//!
//! Run with `cargo bench --bench coldstart`; `TABLO_BENCH_QUICK=1` builds
//! 100,000 events and starts fewer times. `TABLO_COLDSTART_EVENTS`,
//! `TABLO_COLDSTART_RUNS` (warm starts) and `TABLO_COLDSTART_COLD_RUNS`
//! change the plan.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tablo::board::{BoardState, Canvas, Painter, draw};
use tablo::config::{Config, DEFAULT_CACHE_BYTES};
use tablo::display::{Choice, Damage};
use tablo::event::Event;
use tablo::journal::RESERVE_BLOCK;
use tablo::journal::store::Store;

mod support;

/// Issue 14's target: spawn → first board frame.
const TARGET: Duration = Duration::from_millis(300);

/// The board's rows, and the symbols the journal's ticks are spread over.
const SYMBOLS: usize = 20;

/// The screen: a 1080p TV.
const SIZE: (u32, u32) = (1920, 1080);

/// Building the journal commits this often (events), to be quick.
const BUILD_COMMIT_EVERY: u64 = 50_000;

/// How often the frame file is looked at while waiting for the frame.
const POLL: Duration = Duration::from_micros(100);

/// Times the in-process split of the first frame is measured.
const SPLIT_RUNS: usize = 7;

/// How long a start may take before the bench gives up on it.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The plan.
struct Plan {
    events: u64,
    warm: usize,
    cold: usize,
}

fn main() {
    let quick = std::env::var("TABLO_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let num = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    };
    let plan = Plan {
        events: num(
            "TABLO_COLDSTART_EVENTS",
            if quick { 100_000 } else { 1_000_000 },
        ),
        warm: num("TABLO_COLDSTART_RUNS", if quick { 2 } else { 7 }) as usize,
        cold: num("TABLO_COLDSTART_COLD_RUNS", if quick { 1 } else { 3 }) as usize,
    };
    let bin = support::release_binary();
    let root = bench_root();
    println!(
        "tablo cold-start bench{}",
        if quick { " (quick)" } else { "" }
    );
    println!("  machine: {}", support::machine());
    println!(
        "  the release daemon on a journal of {} events, board on fbdev at {}×{} ({SYMBOLS} rows), feed down",
        plan.events, SIZE.0, SIZE.1
    );
    let journal = root.path().join("journal");
    build_journal(&journal, plan.events);
    let setup = Setup::new(root.path(), &journal);
    println!();
    println!(
        "| start | spawn → first frame | process start + config | journal open + snapshot | reservation commit + screen open | fonts + first draw + copy | spawn → listening |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut runs: Vec<(&str, Start)> = Vec::new();
    let mut row = |label: &'static str, start: Start| {
        println!("{}", start.row(label));
        runs.push((label, start));
    };
    row("first after writing", setup.start(&bin));
    for _ in 0..plan.warm {
        row("warm", setup.start(&bin));
    }
    let mut cold_note = None;
    for _ in 0..plan.cold {
        match drop_page_cache() {
            Ok(()) => row("cold (page cache dropped)", setup.start(&bin)),
            Err(why) => {
                cold_note = Some(why);
                break;
            }
        }
    }
    if let Some(why) = &cold_note {
        println!("| cold | not measured: cannot drop the page cache ({why}) |");
    }
    println!();
    summary(&runs);
    println!();
    journal_split(&journal);
    renderer_split(root.path());
    println!();
    let all: Vec<f64> = runs.iter().map(|(_, s)| s.total_ms()).collect();
    let worst = all.iter().copied().fold(0.0, f64::max);
    support::targets::print(
        "targets (issue 14), cold start:",
        &[support::targets::at_most(
            &format!(
                "spawn → first board frame, {} events in the journal, fbdev {}×{}, the slowest of {} starts",
                plan.events,
                SIZE.0,
                SIZE.1,
                all.len()
            ),
            support::targets::Unit::Ms,
            TARGET.as_secs_f64() * 1e3,
            Some(worst),
            None,
        )],
    );
}

/// Fills a new journal in `dir` with `events` ticks and closes it cleanly.
fn build_journal(dir: &Path, events: u64) {
    let started = Instant::now();
    let opened = Store::open(dir, DEFAULT_CACHE_BYTES).expect("open a new journal");
    let mut store = opened.store;
    let first = opened.next_seq;
    let last = first + events - 1;
    store.reserve(last + RESERVE_BLOCK).expect("reserve");
    store.commit().expect("commit the reservation");
    let now = wall_ms();
    let mut json = String::with_capacity(256);
    let mut key = String::with_capacity(32);
    for seq in first..=last {
        // One event every 10 ms up to now, as a busy feed leaves it.
        let ts = now - (last - seq) * 10;
        let symbol = seq % SYMBOLS as u64;
        let cents = 6_700_000 + (seq * 7_919) % 100_000;
        json.clear();
        let _ = write!(
            json,
            r#"{{"type":"tick","seq":{seq},"channel":"prices","symbol":"S{symbol:02}USDT","price":"{}.{:02}","open":"66000.00","change_pct":"1.53","volume":"12345.678","ts":{ts},"source":"binance"}}"#,
            cents / 100,
            cents % 100,
        );
        key.clear();
        let _ = write!(key, "tick:S{symbol:02}USDT");
        store
            .append(seq, seq - first, json.as_bytes())
            .expect("append");
        store
            .put_snapshot(&key, seq, json.as_bytes())
            .expect("put_snapshot");
        if (seq - first + 1) % BUILD_COMMIT_EVERY == 0 {
            store.commit().expect("commit");
        }
    }
    store.close_clean(last).expect("close the journal");
    println!(
        "  journal built in {:.1} s: {events} events, {:.0} MiB on disk",
        started.elapsed().as_secs_f64(),
        allocated_bytes(dir) as f64 / f64::from(1 << 20)
    );
}

/// The daemon's files: its config, data dir and frame file.
struct Setup {
    config: PathBuf,
    data: PathBuf,
    fb: PathBuf,
}

impl Setup {
    fn new(root: &Path, journal: &Path) -> Setup {
        let fb = root.join("fb0");
        let data = root.join("data");
        fs::create_dir_all(&data).expect("the data dir");
        // An upstream that refuses: a port bound and let go.
        let closed = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let mut config = format!(
            "[journal]\ndir = \"{}\"\n\n[display]\nwidth = {}\nheight = {}\ndevice = \"{}\"\n\n",
            journal.display(),
            SIZE.0,
            SIZE.1,
            fb.display()
        );
        for s in 0..SYMBOLS {
            let _ = write!(config, "[[board.rows]]\nsymbol = \"S{s:02}USDT\"\n\n");
        }
        let _ = write!(
            config,
            "[[feed]]\nname = \"binance\"\nformat = \"binance\"\nurl = \"ws://{closed}/ws\"\n"
        );
        let path = root.join("tablo.toml");
        fs::write(&path, config).expect("write the config");
        Setup {
            config: path,
            data,
            fb,
        }
    }

    /// One start: spawn, wait for the frame, stop.
    fn start(&self, bin: &Path) -> Start {
        let (w, h) = SIZE;
        let row_bytes = w as usize * 4;
        let fb = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.fb)
            .expect("create the frame file");
        fb.set_len(row_bytes as u64 * u64::from(h))
            .expect("size the frame file");
        let mut cmd = Command::new(bin);
        cmd.args(["run", "--listen", "127.0.0.1:0", "--display", "fbdev"])
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data)
            .env("TABLO_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = cmd.spawn().expect("start tablo");
        let lines = log_lines(&mut child);
        let mut last_row = vec![0u8; row_bytes];
        let offset = row_bytes as u64 * u64::from(h - 1);
        let frame = loop {
            fb.read_exact_at(&mut last_row, offset)
                .expect("read the frame file");
            if last_row.iter().any(|&b| b != 0) {
                break Instant::now();
            }
            if spawned.elapsed() > START_TIMEOUT {
                stop(&mut child);
                let log: Vec<String> = lines.try_iter().map(|(_, l)| l).collect();
                panic!(
                    "no frame within {START_TIMEOUT:?}; the daemon's log:\n{}",
                    log.join("\n")
                );
            }
            std::thread::sleep(POLL);
        };
        let mut start = Start {
            frame: frame - spawned,
            ..Start::default()
        };
        // Its lines up to "listening on" (which may come after the frame).
        let deadline = Instant::now() + START_TIMEOUT;
        while start.listening.is_none() {
            let Ok((at, line)) =
                lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                break;
            };
            let at = at - spawned;
            if let Some(ms) = journal_open_ms(&line) {
                start.journal_line = Some(at);
                start.journal_open = Some(Duration::from_millis(ms));
            } else if line.contains("board: fbdev at") {
                start.screen = Some(at);
            } else if line.contains("listening on") {
                start.listening = Some(at);
            }
        }
        stop(&mut child);
        start
    }
}

/// What one start measured, from the spawn.
#[derive(Default)]
struct Start {
    /// The bottom row of the first frame was in the file.
    frame: Duration,
    /// The journal's "opened in N ms" line arrived.
    journal_line: Option<Duration>,
    /// N of that line.
    journal_open: Option<Duration>,
    /// `board: fbdev at` arrived: the writer has committed its reservation
    /// and the screen is open.
    screen: Option<Duration>,
    /// `listening on` arrived.
    listening: Option<Duration>,
}

impl Start {
    fn total_ms(&self) -> f64 {
        ms(self.frame)
    }

    /// Stage lengths in ms: process start + config, journal open +
    /// snapshot, reservation commit + screen open, fonts + first draw +
    /// copy.
    fn stages(&self) -> Option<[f64; 4]> {
        let (line, open, screen) = (self.journal_line?, self.journal_open?, self.screen?);
        let before = line.saturating_sub(open);
        Some([
            ms(before),
            ms(open),
            ms(screen.saturating_sub(line)),
            ms(self.frame.saturating_sub(screen)),
        ])
    }

    fn row(&self, label: &str) -> String {
        let stages = self.stages().map_or_else(
            || "– | – | – | –".to_owned(),
            |s| {
                format!(
                    "{:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms",
                    s[0], s[1], s[2], s[3]
                )
            },
        );
        format!(
            "| {label} | {:.1} ms | {stages} | {} |",
            self.total_ms(),
            self.listening
                .map_or("–".to_owned(), |l| format!("{:.1} ms", ms(l)))
        )
    }
}

/// p50 and max per kind of start, and which stage dominates.
fn summary(runs: &[(&str, Start)]) {
    const STAGES: [&str; 4] = [
        "process start + config",
        "journal open + snapshot",
        "reservation commit + screen open",
        "fonts + first draw + copy",
    ];
    let mut kinds: Vec<&str> = runs.iter().map(|(k, _)| *k).collect();
    kinds.dedup();
    for kind in kinds {
        let of_kind: Vec<&Start> = runs
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, s)| s)
            .collect();
        let totals: Vec<f64> = of_kind.iter().map(|s| s.total_ms()).collect();
        let mut line = format!(
            "  {kind}: spawn → first frame p50 {:.1} ms, max {:.1} ms over {} start(s)",
            median(&totals),
            totals.iter().copied().fold(0.0, f64::max),
            totals.len()
        );
        let stages: Vec<[f64; 4]> = of_kind.iter().filter_map(|s| s.stages()).collect();
        if !stages.is_empty() {
            let medians: Vec<f64> = (0..4)
                .map(|i| median(&stages.iter().map(|s| s[i]).collect::<Vec<_>>()))
                .collect();
            let sum: f64 = medians.iter().sum();
            let (top, top_ms) =
                medians.iter().enumerate().fold(
                    (0, 0.0),
                    |best, (i, &v)| if v > best.1 { (i, v) } else { best },
                );
            let _ = write!(
                line,
                "; dominated by {} ({top_ms:.1} ms, {:.0} % of the stages' p50s)",
                STAGES[top],
                top_ms / sum.max(1e-9) * 100.0
            );
        }
        println!("{line}");
    }
}

/// The journal's part in process, warm, split: sled's open (with the
/// store's own checks) and reading the snapshot tree.
fn journal_split(dir: &Path) {
    let started = Instant::now();
    let opened = Store::open(dir, DEFAULT_CACHE_BYTES).expect("open the journal");
    let open = started.elapsed();
    let started = Instant::now();
    let entries = opened.store.snapshot().expect("read the snapshot").len();
    let snapshot = started.elapsed();
    opened
        .store
        .close_clean(opened.next_seq - 1)
        .expect("close the journal");
    println!(
        "  the journal's part in process, warm: open {:.1} ms, snapshot read {:.1} ms ({entries} entries)",
        ms(open),
        ms(snapshot)
    );
}

/// The renderer's first frame in process, split: opening the screen (a
/// plain file as fbdev: grow, map), font set-up, a first draw with a cold
/// glyph cache, the first copy into the mapping (every page faulted in),
/// and a warm draw and copy for comparison. Medians of [`SPLIT_RUNS`],
/// each from nothing (release build, one thread).
fn renderer_split(root: &Path) {
    let mut config = Config::defaults_in(Path::new("/nonexistent"));
    config.board.rows = (0..SYMBOLS)
        .map(|s| tablo::config::RowConfig {
            symbol: format!("S{s:02}USDT"),
            label: None,
            decimals: None,
        })
        .collect();
    config.display.width = Some(SIZE.0);
    config.display.height = Some(SIZE.1);
    let now = wall_ms();
    let mut state = BoardState::new(&config.board, &["binance"]);
    for s in 0..SYMBOLS {
        let json = format!(
            r#"{{"type":"tick","seq":{},"channel":"prices","symbol":"S{s:02}USDT","price":"67012.50","open":"66000.00","ts":{},"source":"binance"}}"#,
            s + 1,
            now - 1_000
        );
        state.restore(&Event::from_json(json.as_bytes()).expect("a tick"));
    }
    let mut stages: [Vec<f64>; 6] = Default::default();
    for run in 0..SPLIT_RUNS {
        let fb = root.join(format!("split-fb{run}"));
        let _ = fs::remove_file(&fb);
        File::create(&fb).expect("create the frame file");
        let choice = Choice::Fbdev(fb.clone());
        let mut timed = |i: usize, t: Instant| stages[i].push(ms(t.elapsed()));
        let t = Instant::now();
        let mut screen = tablo::display::open(&choice, &config.display)
            .expect("open the frame file")
            .expect("a screen");
        timed(0, t);
        let t = Instant::now();
        let mut painter = Painter::new();
        timed(1, t);
        let mut frame = Canvas::new(SIZE.0, SIZE.1);
        let t = Instant::now();
        draw(&state, now, &mut painter, &mut frame).expect("draw");
        timed(2, t);
        let t = Instant::now();
        screen.present(&frame, Damage::All).expect("copy the frame");
        timed(3, t);
        let t = Instant::now();
        draw(&state, now, &mut painter, &mut frame).expect("draw");
        timed(4, t);
        let t = Instant::now();
        screen.present(&frame, Damage::All).expect("copy the frame");
        timed(5, t);
        drop(screen);
        let _ = fs::remove_file(&fb);
    }
    let m: Vec<f64> = stages.iter().map(|v| median(v)).collect();
    println!(
        "  the renderer's first frame in process ({}×{}, {SYMBOLS} rows, median of {SPLIT_RUNS}): open the screen {:.1} ms, fonts {:.1} ms, first draw (cold glyph cache) {:.1} ms, first copy to the mapping {:.1} ms; then a warm draw {:.1} ms, a warm copy {:.1} ms",
        SIZE.0, SIZE.1, m[0], m[1], m[2], m[3], m[4], m[5]
    );
}

/// Forwards the child's stderr lines, stamped when they arrive.
fn log_lines(child: &mut Child) -> mpsc::Receiver<(Instant, String)> {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                // Nobody listens any more; keep draining the pipe.
                continue;
            }
        }
    });
    rx
}

/// N from the daemon's `journal DIR opened in N ms: …` line.
fn journal_open_ms(line: &str) -> Option<u64> {
    let rest = line.split(" opened in ").nth(1)?;
    if !line.contains("journal ") {
        return None;
    }
    rest.split(" ms").next()?.trim().parse().ok()
}

fn stop(child: &mut Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes dirty pages back and drops the page cache (root only).
fn drop_page_cache() -> Result<(), String> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    fs::write("/proc/sys/vm/drop_caches", "3\n").map_err(|e| e.to_string())
}

/// Bytes allocated on disk to the files under `dir` (like `du`).
fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => allocated_bytes(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// A temp dir under `target/`: on the project's disk, never a tmpfs.
fn bench_root() -> tempfile::TempDir {
    let target = support::target_dir();
    fs::create_dir_all(&target).expect("create the target dir");
    tempfile::Builder::new()
        .prefix("bench-coldstart-")
        .tempdir_in(&target)
        .expect("create the bench dir under target/")
}
