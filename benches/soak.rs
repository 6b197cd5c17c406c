//! `cargo bench --bench soak`: months on a wall, compressed. The release
//! daemon runs for 30 minutes under ten times the demo's event rate, with
//! clients connecting and leaving, a feed that drops and comes back, and
//! retention trimming all along; its RSS, open fds, threads and journal size
//! are sampled every minute and printed with their slope. Flat is the pass.
//!
//! The load: a fake Binance upstream (a real WebSocket server here) sends
//! `24hrTicker` frames over 20 symbols at `TABLO_SOAK_RATE` a second (default
//! 270, which with the built-in demo feed's ~30 is 10× the demo alone), and
//! drops every connection for a few seconds every `TABLO_SOAK_FLAP_SECS`
//! (default 60), so the daemon's feed goes down and reconnects. Ten clients
//! stay subscribed to `*` the whole time; another connects every 200 ms,
//! resumes `prices` with `since`, reads for half a second and leaves.
//! Retention is small (`max_events = 20000`, `max_age = "2m"`), so the
//! journal trims from the second minute on.
//!
//! The verdict: from the samples after a warm-up (the first third, at
//! least one sample), a least-squares line per figure; a figure is flat when
//! that line moves less than its tolerance over the measured span (RSS: 10 %
//! of its mean or 2 MiB; fds: 4; threads: 1; journal: 10 % or 4 MiB).
//! Exits 1 when one is not.
//!
//! Settings: `TABLO_SOAK_MINUTES` (default 30), `TABLO_SOAK_SAMPLE_SECS`
//! (default 60), `TABLO_SOAK_RATE`, `TABLO_SOAK_FLAP_SECS`,
//! `TABLO_SOAK_MAX_EVENTS`; `TABLO_BENCH_QUICK=1` is 2 minutes sampled
//! every 10 s, flapping every 20, with `max_events = 4000`.

#[allow(
    dead_code,
    reason = "the bench uses the harness's daemon and upstream only"
)]
#[path = "../tests/it/harness.rs"]
mod harness;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use serde_json::{Value, json};
use smol::Timer;
use smol::net::TcpStream;

use harness::{Daemon, FakeUpstream};

/// Symbols the fake upstream quotes.
const SYMBOLS: usize = 20;

/// Clients subscribed to `*` for the whole run.
const STEADY_CLIENTS: usize = 10;

/// How often a short-lived client connects.
const CHURN_EVERY: Duration = Duration::from_millis(200);

/// How long a short-lived client stays.
const CHURN_STAY: Duration = Duration::from_millis(500);

/// How long the upstream stays away when it drops.
const FLAP_DOWN: Duration = Duration::from_secs(3);

/// The journal's `max_events` in the soak (`TABLO_SOAK_MAX_EVENTS`): small,
/// so trimming runs from the second minute on.
const MAX_EVENTS: u64 = 20_000;

/// `max_events` in a quick run: reached within its first half minute.
const QUICK_MAX_EVENTS: u64 = 4_000;

/// The journal's `max_age` in the soak.
const MAX_AGE: &str = "2m";

/// One sample of the daemon.
#[derive(Clone, Copy)]
struct Sample {
    at_s: f64,
    rss_kib: f64,
    fds: f64,
    threads: f64,
    journal_bytes: f64,
    events: f64,
}

/// What the load did, counted by the load itself.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    churned: AtomicU64,
    churn_failed: AtomicU64,
    flaps: AtomicU64,
    steady_reconnects: AtomicU64,
}

fn main() {
    let quick = std::env::var_os("TABLO_BENCH_QUICK").is_some();
    let minutes = env_f64("TABLO_SOAK_MINUTES", if quick { 2.0 } else { 30.0 });
    let sample_every = env_f64("TABLO_SOAK_SAMPLE_SECS", if quick { 10.0 } else { 60.0 });
    let rate = env_f64("TABLO_SOAK_RATE", 270.0);
    let flap_every = env_f64("TABLO_SOAK_FLAP_SECS", if quick { 20.0 } else { 60.0 });
    let total = Duration::from_secs_f64(minutes * 60.0);
    let sample_every = Duration::from_secs_f64(sample_every.max(1.0));
    println!(
        "soak: {minutes} min, a sample every {sample_every:?}, upstream {rate}/s + demo, flap every {flap_every} s"
    );
    println!("machine: {}", support::machine());

    let max_events = env_f64(
        "TABLO_SOAK_MAX_EVENTS",
        (if quick { QUICK_MAX_EVENTS } else { MAX_EVENTS }) as f64,
    ) as u64;
    let retention = format!("max_events = {max_events}\nmax_age = \"{MAX_AGE}\"");
    println!("retention: {}", retention.replace('\n', ", "));
    let samples = smol::block_on(soak(total, sample_every, rate, flap_every, &retention));
    if !verdict(&samples) {
        std::process::exit(1);
    }
}

async fn soak(
    total: Duration,
    sample_every: Duration,
    rate: f64,
    flap_every: f64,
    retention: &str,
) -> Vec<Sample> {
    let mut upstream = FakeUpstream::start().await;
    let config = format!(
        "[journal]\n{retention}\n\n[[feed]]\nname = \"fake\"\nformat = \"binance\"\nurl = \"{}\"\n\n[[feed]]\nname = \"demo\"\nformat = \"demo\"\n",
        upstream.url("/ws")
    );
    let daemon = Daemon::start_with_config(&config, &[]);
    upstream.wait_connection().await;
    let addr = daemon.addr();
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));

    let mut tasks = Vec::new();
    for _ in 0..STEADY_CLIENTS {
        tasks.push(smol::spawn(steady_client(
            addr,
            counters.clone(),
            stop.clone(),
        )));
    }
    tasks.push(smol::spawn(churn(addr, counters.clone(), stop.clone())));

    let start = Instant::now();
    let mut samples = Vec::new();
    let mut next_sample = start;
    let mut next_flap = start + Duration::from_secs_f64(flap_every);
    let mut prices = [6_700_000_i64; SYMBOLS];
    let tick = Duration::from_millis(10);
    let mut k: u64 = 0;
    println!(
        "\n{:>6} {:>9} {:>5} {:>7} {:>11} {:>9} {:>10} {:>8}",
        "min", "RSS MiB", "fds", "threads", "journal MiB", "events", "delivered", "churned"
    );
    while start.elapsed() < total {
        let now = Instant::now();
        if now >= next_sample {
            let s = sample(&daemon, start);
            print_sample(&s, &counters);
            samples.push(s);
            next_sample += sample_every;
        }
        if now >= next_flap {
            upstream.shutdown().await;
            Timer::after(FLAP_DOWN).await;
            upstream.restart().await;
            counters.flaps.fetch_add(1, Ordering::Relaxed);
            next_flap = Instant::now() + Duration::from_secs_f64(flap_every);
            continue;
        }
        // Paced by the clock, not by the loop: a slow turn sends more.
        let due = (rate * start.elapsed().as_secs_f64()) as u64;
        while k < due {
            k += 1;
            let i = (k as usize * 7) % SYMBOLS;
            prices[i] += if fastrand::bool() { 1 } else { -1 } * fastrand::i64(0..50);
            prices[i] = prices[i].max(100);
            if upstream.try_send(&ticker(i, prices[i])) {
                counters.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        Timer::after(tick).await;
    }
    // The last sample, at the end of the span.
    let s = sample(&daemon, start);
    print_sample(&s, &counters);
    samples.push(s);
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.cancel().await;
    }
    let c = &counters;
    println!(
        "\nload: {} upstream frames sent, {} frames delivered to the steady clients ({} reconnects), {} short-lived clients ({} failed), {} upstream drops",
        c.sent.load(Ordering::Relaxed),
        c.received.load(Ordering::Relaxed),
        c.steady_reconnects.load(Ordering::Relaxed),
        c.churned.load(Ordering::Relaxed),
        c.churn_failed.load(Ordering::Relaxed),
        c.flaps.load(Ordering::Relaxed),
    );
    let (status, health) = daemon.http_get("/healthz");
    println!("/healthz at the end: {status} {}", health.trim());
    samples
}

/// One line of the samples table.
fn print_sample(s: &Sample, counters: &Counters) {
    println!(
        "{:>6.1} {:>9.2} {:>5} {:>7} {:>11.2} {:>9} {:>10} {:>8}",
        s.at_s / 60.0,
        s.rss_kib / 1024.0,
        s.fds,
        s.threads,
        s.journal_bytes / 1_048_576.0,
        s.events,
        counters.received.load(Ordering::Relaxed),
        counters.churned.load(Ordering::Relaxed),
    );
}

/// A `24hrTicker` for symbol `i` at `cents`.
fn ticker(i: usize, cents: i64) -> String {
    let price = format!("{}.{:02}", cents / 100, cents % 100);
    json!({"e": "24hrTicker", "s": format!("SYM{i:02}USDT"), "c": price, "o": "67000.00"})
        .to_string()
}

/// RSS, fds and threads from /proc, the journal's size on disk, and the
/// journal's event count from `/journal/stats`.
fn sample(daemon: &Daemon, start: Instant) -> Sample {
    let pid = daemon.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(f64::NAN, |d| d.count() as f64);
    let (code, body) = daemon.http_get("/journal/stats");
    let events = if code == 200 {
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["events"].as_f64())
            .unwrap_or(f64::NAN)
    } else {
        f64::NAN
    };
    Sample {
        at_s: start.elapsed().as_secs_f64(),
        rss_kib: field("VmRSS:"),
        fds,
        threads: field("Threads:"),
        journal_bytes: dir_bytes(&daemon.data_dir().join("journal")) as f64,
        events,
    }
}

/// The bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Connects to `/ws` and reads the hello.
async fn connect(
    addr: std::net::SocketAddr,
    query: &str,
) -> Option<(WebSocketStream<TcpStream>, Value)> {
    let url = format!("ws://{addr}/ws?{query}");
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut ws, _) = async_tungstenite::client_async(url.as_str(), stream)
        .await
        .ok()?;
    let hello = next_json(&mut ws).await?;
    (hello["type"] == "hello").then_some((ws, hello))
}

/// The next text frame as JSON; `None` when the connection ends.
async fn next_json(ws: &mut WebSocketStream<TcpStream>) -> Option<Value> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// A client subscribed to everything for the whole run, reconnecting if
/// it is ever cut off.
async fn steady_client(addr: std::net::SocketAddr, counters: Arc<Counters>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        if let Some((mut ws, _)) = connect(addr, "client=soak").await {
            let subscribe = json!({"op": "subscribe", "channels": ["*"]}).to_string();
            if ws.send(Message::text(subscribe)).await.is_ok() {
                while next_json(&mut ws).await.is_some() {
                    counters.received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        counters.steady_reconnects.fetch_add(1, Ordering::Relaxed);
        Timer::after(Duration::from_millis(100)).await;
    }
}

/// A client every [`CHURN_EVERY`] that resumes `prices` a little behind the
/// newest seq, reads for [`CHURN_STAY`] and leaves (half of them with a
/// close frame, half by dropping the socket).
async fn churn(addr: std::net::SocketAddr, counters: Arc<Counters>, stop: Arc<AtomicBool>) {
    let mut n: u64 = 0;
    let mut visits: Vec<smol::Task<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        Timer::after(CHURN_EVERY).await;
        n += 1;
        visits.retain(|v| !v.is_finished());
        visits.push(smol::spawn(visit(addr, counters.clone(), n)));
    }
}

/// One short-lived client.
async fn visit(addr: std::net::SocketAddr, counters: Arc<Counters>, n: u64) {
    let stay = async {
        let (mut ws, hello) = connect(addr, "client=churn").await?;
        let since = hello["seq"].as_u64().unwrap_or(0).saturating_sub(200);
        let subscribe = json!({"op": "subscribe", "channels": ["prices"], "since": since, "epoch": hello["epoch"]});
        ws.send(Message::text(subscribe.to_string())).await.ok()?;
        let read = async { while next_json(&mut ws).await.is_some() {} };
        smol::future::or(read, async {
            Timer::after(CHURN_STAY).await;
        })
        .await;
        if n % 2 == 0 {
            let _ = ws.close(None).await;
        }
        Some(())
    };
    match stay.await {
        Some(()) => counters.churned.fetch_add(1, Ordering::Relaxed),
        None => counters.churn_failed.fetch_add(1, Ordering::Relaxed),
    };
}

/// Prints each figure's slope and whether it is flat; true if all are.
fn verdict(samples: &[Sample]) -> bool {
    let warm = (samples.len() / 3).max(1);
    let measured = &samples[warm.min(samples.len().saturating_sub(2))..];
    if measured.len() < 2 {
        println!("too few samples for a slope: run longer or sample more often");
        return false;
    }
    let span_s = measured[measured.len() - 1].at_s - measured[0].at_s;
    println!(
        "\nslopes over the {} samples after warm-up ({:.1} min):",
        measured.len(),
        span_s / 60.0
    );
    println!(
        "{:<10} {:>12} {:>14} {:>16} {:>12}  verdict",
        "figure", "mean", "slope /hour", "change in span", "tolerance"
    );
    let mut all_flat = true;
    type Figure = (&'static str, fn(&Sample) -> f64, f64, f64, f64);
    let figures: [Figure; 5] = [
        ("RSS MiB", |s| s.rss_kib / 1024.0, 0.10, 2.0, 1.0),
        ("fds", |s| s.fds, 0.0, 4.0, 1.0),
        ("threads", |s| s.threads, 0.0, 1.0, 1.0),
        (
            "journal MiB",
            |s| s.journal_bytes / 1_048_576.0,
            0.10,
            4.0,
            1.0,
        ),
        // Events in the journal are capped by retention; reported, not judged.
        ("events", |s| s.events, 0.10, 2000.0, 0.0),
    ];
    for (name, get, relative, absolute, judged) in figures {
        let points: Vec<(f64, f64)> = measured.iter().map(|s| (s.at_s, get(s))).collect();
        let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
        let slope = slope(&points);
        let change = slope * span_s;
        let tolerance = (relative * mean.abs()).max(absolute);
        let flat = change.abs() <= tolerance && slope.is_finite();
        let verdict = match (judged > 0.0, flat) {
            (false, _) => "reported",
            (true, true) => "flat",
            (true, false) => "NOT FLAT",
        };
        if judged > 0.0 && !flat {
            all_flat = false;
        }
        println!(
            "{name:<10} {mean:>12.2} {:>14.3} {change:>16.3} {tolerance:>12.2}  {verdict}",
            slope * 3600.0
        );
    }
    println!(
        "soak verdict: {}",
        if all_flat {
            "PASS (flat)"
        } else {
            "FAIL (not flat)"
        }
    );
    all_flat
}

/// The least-squares slope of `points`, per second.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

fn env_f64(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Ok(value) => value.parse().unwrap_or_else(|_| {
            eprintln!("{name}={value:?} is not a number");
            std::process::exit(64);
        }),
        Err(_) => default,
    }
}
