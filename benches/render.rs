//! What the board costs: frame draw times in process, then the whole
//! daemon's CPU and memory with the board on, idle and at 100 updates/s.
//!
//! Part 1 draws frames with `tablo::board::draw` (no I/O): a whole frame at
//! 1920×1080 and 800×480; what the renderer draws when one row changed
//! (its band, through `tablo::board::Shown`) and when every row did (20
//! ticks in one frame, as at 100 updates/s); and the header and news strips
//! the renderer redraws alone when only the clock or the marquee moved.
//! p50/p99/max over many frames.
//!
//! Part 2 runs the release daemon with a fake Binance upstream (a real
//! WebSocket server on 127.0.0.1) filling 20 rows, on the `fbdev` backend
//! drawing into a plain file at 1920×1080 (XRGB8888; on /dev/shm when
//! there is one, as a framebuffer is memory), and on the `window`
//! backend in an Xvfb server when Xvfb is installed. It measures the
//! daemon's CPU (all threads, from /proc schedstat) over 10 s with no
//! updates (only the clock ticks: the clock is taken as set, with
//! `TABLO_TEST_CLOCK_STATE`) and over 10 s at 100 updates/s, its peak
//! RSS and its anonymous RSS (the plain file standing in for /dev/fb0 is
//! mapped and counts as file RSS; a real framebuffer's memory does not),
//! and for the window the X server's CPU too; under each phase, every
//! thread's share and its context switches a second (from
//! `/proc/PID/task`), which say who wakes up and how often. The same load with
//! `--display none` gives the relay's own share. Then issue 14's targets
//! for the whole kiosk on fbdev as PASS/FAIL lines
//! (`benches/support/targets.rs`): ≤ 3 % of a core at 100 updates/s,
//! ≤ 0.2 % idle, peak RSS ≤ 16 MiB not counting the pages of the plain
//! file that stands in for /dev/fb0 (a real framebuffer's mapping is device
//! memory, which RSS does not count).
//!
//! Run with `cargo bench --bench render`; `TABLO_BENCH_QUICK=1` shortens
//! every phase (for a smoke run, not for figures); `TABLO_BENCH_PART=draw`
//! runs part 1 only.
//!
//! `TABLO_BENCH_PART=count` draws `TABLO_BENCH_FRAMES` frames (default 50)
//! of one kind, `TABLO_BENCH_KIND` (`whole`, `header`, `news`, `persian`;
//! `strips`: header and news through `Shown`, a second apart; `row` and
//! `rows`: those strips, then one tick of a row of the page at the price it
//! shows (no flash to fade later) or 20 moving ticks, and the bands they
//! change),
//! at `TABLO_BENCH_SIZE` (default `1920x1080`), and prints nothing: run it
//! under `valgrind --tool=callgrind` with 0 and with N frames, and the
//! difference over N is the instructions a frame costs, a figure that does
//! not move with the machine's load (a band alone: `row` less `strips`).

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::{Message, accept};
use hdrhistogram::Histogram;
use tablo::board::draw::{draw_header, draw_news};
use tablo::board::{BoardState, Canvas, Painter, Redrawn, Scope, Shown, draw};
use tablo::config::{BoardQr, Config, Digits, RowConfig};
use tablo::event::Event;

mod support;

/// Symbols on the board (rows), as in the issue's Chromium comparison.
const SYMBOLS: usize = 20;

/// Updates a second in the loaded phase.
const RATE: u64 = 100;

/// Frames drawn per in-process measurement.
const FRAMES: u64 = 400;

/// Set to shorten every phase.
const QUICK_ENV: &str = "TABLO_BENCH_QUICK";

/// `draw`: only the in-process draw times (no daemon).
const PART_ENV: &str = "TABLO_BENCH_PART";

fn quick() -> bool {
    std::env::var_os(QUICK_ENV).is_some()
}

fn main() {
    if std::env::var(PART_ENV).is_ok_and(|p| p == "count") {
        count_frames();
        return;
    }
    println!("tablo render bench ({})", support::machine());
    println!();
    draw_times();
    if std::env::var(PART_ENV).is_ok_and(|p| p == "draw") {
        return;
    }
    println!();
    let bin = support::release_binary().display().to_string();
    let phase = if quick() {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(10)
    };
    println!(
        "whole daemon with the board on, {SYMBOLS} rows at 1920×1080 ({} s a phase)",
        phase.as_secs()
    );
    println!(
        "  {:<28} {:>9} {:>9} {:>10} {:>10} {:>11} {:>10}",
        "backend / load", "CPU %", "frames/s", "peak RSS", "anon RSS", "peak w/o fb", "X server %"
    );
    daemon_cpu(&bin, Backend::None, phase);
    let fbdev = daemon_cpu(&bin, Backend::Fbdev, phase);
    match Xvfb::start() {
        Some(x) => {
            daemon_cpu(&bin, Backend::Window(x), phase);
        }
        None => println!("  window: skipped (Xvfb is not installed)"),
    }
    println!(
        "  for comparison (docs/notes.md §6): a Chromium kiosk page with the same board: 432 MiB PSS, 81 % of a core at 100 updates/s"
    );
    println!();
    use support::targets::{Unit, at_most, print};
    let kiosk = "whole daemon, board on fbdev at 1920×1080, 20 rows";
    print(
        "targets (issue 14), the whole kiosk:",
        &[
            at_most(
                &format!("{kiosk}, 100 updates/s: CPU ≤ 3 % of a core"),
                Unit::Pct,
                3.0,
                Some(fbdev.loaded_pct),
                None,
            ),
            at_most(
                &format!("{kiosk}, idle (clock only): CPU ≤ 0.2 % of a core"),
                Unit::Pct,
                0.2,
                Some(fbdev.idle_pct),
                None,
            ),
            at_most(
                &format!("{kiosk}: peak RSS ≤ 16 MiB (less the fb file's pages)"),
                Unit::Mib,
                16.0,
                Some(fbdev.peak_mib),
                None,
            ),
        ],
    );
}

/// What [`daemon_cpu`] measured for one backend.
struct Whole {
    /// CPU, percent of one core, with only the clock ticking.
    idle_pct: f64,
    /// CPU, percent of one core, at [`RATE`] updates/s.
    loaded_pct: f64,
    /// Peak RSS (`VmHWM`) less the pages of the fb file, MiB.
    peak_mib: f64,
}

// ---------------------------------------------------------------- part 1

fn event(seq: u64, ts: u64, json_body: &str) -> Event {
    let json = format!(r#"{{"seq":{seq},"ts":{ts},{json_body}}}"#);
    Event::from_json(json.as_bytes()).expect("a valid event")
}

fn tick(seq: u64, ts: u64, symbol: usize, cents: u64) -> Event {
    event(
        seq,
        ts,
        &format!(
            r#""type":"tick","symbol":"S{symbol:02}USDT","price":"{}.{:02}","open":"1000.00","volume":"12345.6""#,
            cents / 100,
            cents % 100
        ),
    )
}

/// A full board: 20 rows with history, a news line. At 1920×1080 the rows
/// take pages; a page stays for a day here, so that every measurement
/// sees the same rows.
fn board(now: u64) -> (BoardState, u64) {
    let mut config = Config::defaults_in(Path::new("/nonexistent"));
    config.board.page_seconds = Duration::from_secs(86_400);
    filled(BoardState::new(&config.board, &["binance"]), now)
}

/// The same board in Persian: right to left, Persian digits, shaped
/// Persian labels and headline.
fn persian_board(now: u64) -> (BoardState, u64) {
    let mut board = Config::defaults_in(Path::new("/nonexistent")).board;
    board.locale = "fa".into();
    board.digits = Digits::Persian;
    const LABELS: [&str; 5] = ["دلار آمریکا", "یورو", "درهم امارات", "نیم‌سکه", "طلای ۱۸ عیار"];
    board.rows = (0..SYMBOLS)
        .map(|s| RowConfig {
            symbol: format!("S{s:02}USDT"),
            label: Some(format!("{} {s}", LABELS[s % LABELS.len()])),
            decimals: None,
        })
        .collect();
    let (mut state, seq) = filled(BoardState::new(&board, &["binance"]), now);
    let news = event(
        seq + 1,
        now - 4_000,
        r#""type":"news","title":"بانک مرکزی نرخ حواله را ثابت نگه داشت؛ سکهٔ تمام‌بهار ۴۵٬۲۰۰٬۰۰۰ تومان","source":"bench""#,
    );
    state.apply(&news, now - 4_000);
    (state, seq + 1)
}

fn filled(mut state: BoardState, now: u64) -> (BoardState, u64) {
    let mut seq = 0;
    for round in 0..60u64 {
        for s in 0..SYMBOLS {
            seq += 1;
            let cents = 100_000 + (round * 37 + s as u64 * 101) % 5_000;
            state.apply(
                &tick(seq, now - 60_000 + round * 1_000, s, cents),
                now - 60_000 + round * 1_000,
            );
        }
    }
    seq += 1;
    let news = event(
        seq,
        now - 5_000,
        r#""type":"news","title":"Central bank holds rates; gold steady near record as traders await jobs data","source":"bench""#,
    );
    state.apply(&news, now - 5_000);
    (state, seq)
}

struct Stats(Histogram<u64>);

impl Stats {
    fn new() -> Stats {
        Stats(Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("histogram"))
    }

    fn time(&mut self, f: impl FnOnce()) {
        let t = Instant::now();
        f();
        self.0.record(t.elapsed().as_nanos().max(1) as u64).ok();
    }

    fn line(&self, what: &str) {
        let ms = |q: f64| self.0.value_at_quantile(q) as f64 / 1e6;
        println!(
            "  {what:<40} p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
            ms(0.5),
            ms(0.99),
            self.0.max() as f64 / 1e6
        );
    }
}

fn draw_times() {
    let frames = if quick() { 50 } else { FRAMES };
    println!("draw time in process ({frames} frames each, one thread, no I/O)");
    let now = 1_700_000_000_000;
    for (w, h) in [(1920, 1080), (800, 480)] {
        let (mut state, mut seq) = board(now);
        let mut painter = Painter::new();
        let mut frame = Canvas::new(w, h);
        // Warm the glyph cache, as a running board has.
        draw(&state, now, &mut painter, &mut frame).unwrap();
        let mut whole = Stats::new();
        for i in 0..frames {
            whole.time(|| draw(&state, now + i * 33, &mut painter, &mut frame).unwrap());
        }
        whole.line(&format!("{w}×{h} whole frame"));
        // What the renderer draws after one tick: that row's band. The
        // frame is brought up to the moment first, untimed (the header's
        // second, the marquee, the end of the last tick's flash), as the
        // renderer's frames between two ticks keep it.
        let mut shown = Shown::new();
        let mut one_row = Stats::new();
        let start = now + 1_000;
        shown
            .redraw(&state, start, &mut painter, &mut frame, Scope::Everything)
            .unwrap();
        let page = shown.rows_on_screen().expect("a frame on screen");
        for i in 0..frames {
            seq += 1;
            let at = start + 1_000 + i * 1_000;
            shown
                .redraw(&state, at, &mut painter, &mut frame, Scope::Everything)
                .unwrap();
            let row = page.start + i as usize % page.len();
            state.apply(&tick(seq, at, row, 100_000 + i), at);
            one_row.time(|| {
                let redrawn = shown
                    .redraw(&state, at, &mut painter, &mut frame, Scope::Everything)
                    .unwrap();
                assert!(matches!(redrawn, Redrawn::Areas([_])), "{redrawn:?}");
            });
        }
        one_row.line(&format!("{w}×{h} one row changed: its band"));
        // 100 updates/s at 5 frames a second: 20 ticks, every row, a frame:
        // a band for each row of the page (and the strips when due).
        let mut all_rows = Stats::new();
        let start = start + 1_000 + frames * 1_000;
        for i in 0..frames {
            let at = start + i * 200;
            for s in 0..SYMBOLS {
                seq += 1;
                state.apply(&tick(seq, at, s, 100_000 + (i * 7 + s as u64) % 500), at);
            }
            all_rows.time(|| {
                let redrawn = shown
                    .redraw(&state, at, &mut painter, &mut frame, Scope::Everything)
                    .unwrap();
                assert!(matches!(redrawn, Redrawn::Areas(_)), "{redrawn:?}");
            });
        }
        all_rows.line(&format!(
            "{w}×{h} 20 ticks (100 updates/s): {} bands",
            page.len()
        ));
        let mut header = Stats::new();
        let mut news = Stats::new();
        for i in 0..frames {
            let at = now + 100_000 + i * 33;
            header.time(|| {
                draw_header(&state, at, &mut painter, &mut frame).unwrap();
            });
            news.time(|| {
                draw_news(&state, at, &mut painter, &mut frame).unwrap();
            });
        }
        header.line(&format!("{w}×{h} header strip (clock second)"));
        news.line(&format!("{w}×{h} news strip (marquee step)"));
    }
    let (state, _) = persian_board(now);
    let mut painter = Painter::new();
    let mut frame = Canvas::new(1920, 1080);
    draw(&state, now, &mut painter, &mut frame).unwrap();
    let mut whole = Stats::new();
    for i in 0..frames {
        whole.time(|| draw(&state, now + i * 33, &mut painter, &mut frame).unwrap());
    }
    whole.line("1920×1080 whole frame, Persian (rtl, ۰–۹)");
    let mut config = Config::defaults_in(Path::new("/nonexistent"));
    config.board.qr = BoardQr::Url("http://192.168.1.23:7070/".into());
    let (state, _) = filled(BoardState::new(&config.board, &["binance"]), now);
    let mut painter = Painter::new();
    draw(&state, now, &mut painter, &mut frame).unwrap();
    let mut whole = Stats::new();
    for i in 0..frames {
        whole.time(|| draw(&state, now + i * 33, &mut painter, &mut frame).unwrap());
    }
    whole.line("1920×1080 whole frame with the QR code");
}

/// `TABLO_BENCH_PART=count`: frames of one kind, for an instruction
/// count (see the module docs).
fn count_frames() {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let kind = var("TABLO_BENCH_KIND", "whole");
    let frames: u64 = var("TABLO_BENCH_FRAMES", "50")
        .parse()
        .expect("a frame count");
    let size = var("TABLO_BENCH_SIZE", "1920x1080");
    let (w, h) = size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .expect("TABLO_BENCH_SIZE is WIDTHxHEIGHT");
    let now = 1_700_000_000_000;
    let (mut state, mut seq) = if kind == "persian" {
        persian_board(now)
    } else {
        board(now)
    };
    let mut painter = Painter::new();
    let mut frame = Canvas::new(w, h);
    let mut shown = Shown::new();
    // Warm the glyph cache and put a whole frame on screen.
    shown
        .redraw(&state, now, &mut painter, &mut frame, Scope::Everything)
        .unwrap();
    let page = shown.rows_on_screen().expect("a frame on screen");
    for i in 0..frames {
        let at = now + 1_000 + i * 1_000;
        match kind.as_str() {
            "whole" | "persian" => draw(&state, at, &mut painter, &mut frame).unwrap(),
            "header" => {
                draw_header(&state, at, &mut painter, &mut frame).unwrap();
            }
            "news" => {
                draw_news(&state, at, &mut painter, &mut frame).unwrap();
            }
            "strips" => {
                shown
                    .redraw(&state, at, &mut painter, &mut frame, Scope::Strips)
                    .unwrap();
            }
            "row" | "rows" => {
                // The header and news strips first, as the renderer keeps
                // them (`strips` counts just that part), then the ticks.
                shown
                    .redraw(&state, at, &mut painter, &mut frame, Scope::Strips)
                    .unwrap();
                if kind == "row" {
                    // One row of the page, at the price it shows: no
                    // flash, so the band of the tick before is not due
                    // again as its flash ends.
                    let row = page.start + i as usize % page.len();
                    let price = state.rows()[row].price.clone().expect("a price");
                    let (units, decimals) = price.split_once('.').expect("a decimal");
                    let cents =
                        units.parse::<u64>().unwrap() * 100 + decimals.parse::<u64>().unwrap();
                    seq += 1;
                    state.apply(&tick(seq, at, row, cents), at);
                } else {
                    for row in 0..SYMBOLS {
                        seq += 1;
                        let cents = 100_000 + (i * 7 + row as u64) % 500;
                        state.apply(&tick(seq, at, row, cents), at);
                    }
                }
                shown
                    .redraw(&state, at, &mut painter, &mut frame, Scope::Everything)
                    .unwrap();
            }
            other => panic!("unknown TABLO_BENCH_KIND {other:?}"),
        }
    }
}

// ---------------------------------------------------------------- part 2

enum Backend {
    /// No board: the relay alone, for the board's share of the rest.
    None,
    Fbdev,
    Window(Xvfb),
}

/// A fake Binance upstream: fills every row at once, then sends ticks at
/// the rate set in `rate` (0: none), round-robin over the symbols.
struct Upstream {
    addr: SocketAddr,
    rate: Arc<AtomicU64>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake upstream");
        let addr = listener.local_addr().unwrap();
        let rate = Arc::new(AtomicU64::new(0));
        let shared = rate.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let rate = shared.clone();
                std::thread::spawn(move || serve(stream, &rate));
            }
        });
        Upstream { addr, rate }
    }
}

fn serve(stream: std::net::TcpStream, rate: &AtomicU64) {
    let Ok(mut ws) = accept(stream) else { return };
    let mut n: u64 = 0;
    let frame = |n: u64| {
        let s = n as usize % SYMBOLS;
        let cents = 100_000 + (n * 7919) % 9_000;
        format!(
            r#"{{"e":"24hrTicker","E":1,"s":"S{s:02}USDT","c":"{}.{:02}","o":"1000.00","v":"12345.6"}}"#,
            cents / 100,
            cents % 100
        )
    };
    for _ in 0..SYMBOLS {
        if ws.send(Message::text(frame(n))).is_err() {
            return;
        }
        n += 1;
    }
    let started = Instant::now();
    let mut sent_at_rate = 0u64;
    let mut rate_since = (0u64, started);
    loop {
        let r = rate.load(Ordering::Relaxed);
        if r != rate_since.0 {
            rate_since = (r, Instant::now());
            sent_at_rate = 0;
        }
        if r == 0 {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let due = (rate_since.1.elapsed().as_secs_f64() * r as f64) as u64;
        while sent_at_rate < due {
            if ws.send(Message::text(frame(n))).is_err() {
                return;
            }
            n += 1;
            sent_at_rate += 1;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn daemon_cpu(bin: &str, backend: Backend, phase: Duration) -> Whole {
    let dir = tempfile::tempdir().expect("temp dir");
    let upstream = Upstream::start();
    // The stand-in for /dev/fb0 lives in memory where it can (/dev/shm): a
    // framebuffer is memory, and a file on disk would add the page cache's
    // writeback faults that no framebuffer has.
    let shm = tempfile::tempdir_in("/dev/shm").ok();
    let fb = shm.as_ref().map_or(dir.path(), |d| d.path()).join("fb0");
    std::fs::write(&fb, b"").unwrap();
    let config = format!(
        "[display]\nwidth = 1920\nheight = 1080\ndevice = \"{}\"\n\n[[feed]]\nname = \"binance\"\nformat = \"binance\"\nurl = \"ws://{}/ws\"\n",
        fb.display(),
        upstream.addr
    );
    let config_path = dir.path().join("tablo.toml");
    std::fs::write(&config_path, config).unwrap();
    let (mode, display, x_pid) = match &backend {
        Backend::None => ("none", None, None),
        Backend::Fbdev => ("fbdev", None, None),
        Backend::Window(x) => ("window", Some(x.display.clone()), Some(x.child.id())),
    };
    let mut cmd = Command::new(bin);
    cmd.args([
        "run",
        "--listen",
        "127.0.0.1:0",
        "--display",
        mode,
        "--config",
    ])
    .arg(&config_path)
    .arg("--data-dir")
    .arg(dir.path().join("data"))
    .env("TABLO_LOG", "warn,tablo::renderer=info,tablo::app=info")
    // As on a kiosk whose clock NTP has set: the header's clock ticks
    // every second (a clock known not to be set shows words, which stay
    // as they are, and would flatter the idle figure).
    .env("TABLO_TEST_CLOCK_STATE", "synchronized")
    .env_remove("JOURNAL_STREAM")
    .env_remove("WAYLAND_DISPLAY")
    .stderr(Stdio::piped());
    match &display {
        Some(d) => cmd.env("DISPLAY", d),
        None => cmd.env_remove("DISPLAY"),
    };
    let mut child = cmd.spawn().expect("start tablo");
    wait_for(
        &mut child,
        if mode == "none" {
            "listening on"
        } else {
            " at 1920×1080"
        },
    );
    let pid = child.id();
    // Rows filled, flashes over.
    std::thread::sleep(Duration::from_secs(3));
    let mut whole = Whole {
        idle_pct: 0.0,
        loaded_pct: 0.0,
        peak_mib: 0.0,
    };
    for (label, rate) in [("idle (clock only)", 0), ("100 updates/s", RATE)] {
        upstream.rate.store(rate, Ordering::Relaxed);
        if rate > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        let frames0 = frames(&dir.path().join("data"));
        let (cpu0, x0) = (cpu_ns(pid), x_pid.map(cpu_ns));
        let threads0 = threads(pid);
        let t0 = Instant::now();
        std::thread::sleep(phase);
        let wall = t0.elapsed().as_secs_f64();
        let (cpu1, x1) = (cpu_ns(pid), x_pid.map(cpu_ns));
        let threads1 = threads(pid);
        let frames1 = frames(&dir.path().join("data"));
        let pct = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / 1e9 / wall * 100.0;
        let hwm_kib = status_kib(pid, "VmHWM");
        // The fb file is wholly mapped and touched by the first frame, so
        // its pages are in the peak too.
        let peak_mib = hwm_kib.saturating_sub(mapped_rss_kib(pid, &fb)) as f64 / 1024.0;
        if rate == 0 {
            whole.idle_pct = pct(cpu0, cpu1);
        } else {
            whole.loaded_pct = pct(cpu0, cpu1);
        }
        whole.peak_mib = whole.peak_mib.max(peak_mib);
        println!(
            "  {:<28} {:>9.2} {:>9.1} {:>6.1} MiB {:>6.1} MiB {:>7.1} MiB {:>10}",
            format!("{mode}: {label}"),
            pct(cpu0, cpu1),
            (frames1 - frames0) as f64 / wall,
            hwm_kib as f64 / 1024.0,
            status_kib(pid, "RssAnon") as f64 / 1024.0,
            peak_mib,
            match (x0, x1) {
                (Some(a), Some(b)) => format!("{:.2}", pct(a, b)),
                _ => "-".to_owned(),
            }
        );
        println!("    {}", per_thread(&threads0, &threads1, wall));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    whole
}

/// The resident pages of `pid`'s mappings of `path`, in KiB (from
/// `/proc/PID/smaps`).
fn mapped_rss_kib(pid: u32, path: &Path) -> u64 {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let path = path.to_string_lossy();
    let mut inside = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let head = line.split_whitespace().next().unwrap_or("");
        if head.contains('-') && !head.ends_with(':') {
            // A mapping's first line: `start-end perms offset dev inode path`.
            inside = line.split_whitespace().nth(5) == Some(&path[..]);
        } else if inside && let Some(rest) = line.strip_prefix("Rss:") {
            kib += rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    kib
}

/// Frames drawn so far, whole and strips, from the daemon's `/metrics`.
fn frames(data_dir: &Path) -> u64 {
    let Ok(addr) = std::fs::read_to_string(data_dir.join("tablo.listen")) else {
        return 0;
    };
    let Ok(mut stream) = std::net::TcpStream::connect(addr.trim()) else {
        return 0;
    };
    use std::io::Write;
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.lines()
        .filter(|l| l.starts_with("tablo_render_frames_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn wait_for(child: &mut Child, needle: &str) {
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.expect("read stderr");
        if line.contains(needle) {
            break;
        }
        assert!(!line.contains("ERROR"), "{line}");
    }
    // Keep draining so the daemon never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
}

/// One thread's counters: its name, CPU time in ns (schedstat), and its
/// context switches, voluntary and not (each voluntary one is a wake-up).
type ThreadCounters = (String, u64, u64);

/// The counters of every thread of `pid`, by thread id.
fn threads(pid: u32) -> Vec<(u32, ThreadCounters)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(t.path().join("comm")).ok()?;
            let cpu = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            let switches = status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            let cpu = cpu.split_whitespace().next()?.parse().ok()?;
            Some((tid, (name.trim().to_owned(), cpu, switches)))
        })
        .collect()
}

/// `threads: renderer 0.39 % 2/s, …`: each thread's share of a core and
/// its context switches a second over the phase, busiest first (sled's
/// I/O threads as one), then the process's switches a second.
fn per_thread(
    before: &[(u32, ThreadCounters)],
    after: &[(u32, ThreadCounters)],
    wall: f64,
) -> String {
    let mut named: Vec<(String, f64, f64)> = Vec::new();
    for (tid, (name, cpu, switches)) in after {
        let (cpu0, switches0) = before
            .iter()
            .find(|(t, _)| t == tid)
            .map_or((0, 0), |(_, c)| (c.1, c.2));
        let name = if name.starts_with("sled-io") {
            "sled-io".to_owned()
        } else {
            name.clone()
        };
        let pct = cpu.saturating_sub(cpu0) as f64 / 1e9 / wall * 100.0;
        let rate = switches.saturating_sub(switches0) as f64 / wall;
        match named.iter_mut().find(|n| n.0 == name) {
            Some(n) => {
                n.1 += pct;
                n.2 += rate;
            }
            None => named.push((name, pct, rate)),
        }
    }
    named.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = named.iter().map(|n| n.2).sum();
    let list: Vec<String> = named
        .iter()
        .filter(|n| n.1 >= 0.005 || n.2 >= 1.0)
        .map(|(name, pct, rate)| format!("{name} {pct:.2} % {rate:.0}/s"))
        .collect();
    format!(
        "threads (CPU, context switches a second): {}; {total:.0} switches/s in all",
        list.join(", ")
    )
}

/// CPU time of every thread of `pid`, in nanoseconds.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// An Xvfb server for the window backend, stopped on drop.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Option<Xvfb> {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "1920x1080x24",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut out = child.stdout.take()?;
        let mut number = String::new();
        let mut byte = [0u8; 1];
        while out.read(&mut byte).ok()? == 1 && byte[0] != b'\n' {
            number.push(byte[0] as char);
        }
        Some(Xvfb {
            child,
            display: format!(":{}", number.trim()),
        })
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
