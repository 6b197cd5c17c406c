//! `cargo bench --bench killloop`: 100 SIGKILLs of the release daemon under
//! a publisher that waits for each ack, then the journal checked against
//! what was acked, with `tablo journal export` (docs/durability.md).
//!
//! Each round starts the daemon on the same data dir (the demo feed runs
//! too, so the journal moves between publishes) and connects
//! `TABLO_KILL_PUBLISHERS` publishers (default 4); each sends `alerts` one
//! at a time and waits for each `ack`, for a random 200–1000 ms; then each
//! sends one more and the daemon is killed at once, with those publishes
//! in flight. At the end
//! `tablo journal export` must show:
//!
//! - every acked publish at its acked seq, with its text: 0 acked events
//!   lost;
//! - seqs strictly increasing, each lost range a `gap` record that covers
//!   no acked seq, and at most one gap per kill (gaps only where a kill was);
//! - the epoch of the first `hello` in every later `hello` and in
//!   `tablo journal stats`: unchanged by any kill.
//!
//! It prints the restart time (spawn to the first client's `hello`) p50 and
//! max, and the gaps' sizes. Settings: `TABLO_KILLS` (default 100;
//! `TABLO_BENCH_QUICK=1` makes it 10), `TABLO_KILL_PUBLISHERS`,
//! `TABLO_KILL_SEED`. Exits 1 when a
//! check fails.

#[allow(
    dead_code,
    reason = "the bench uses the harness's daemon and sandbox only"
)]
#[path = "../tests/it/harness.rs"]
mod harness;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use serde_json::{Value, json};
use smol::Timer;
use smol::net::TcpStream;

use harness::{Daemon, Sandbox};

/// The daemon's config: a token that may publish.
const CONFIG: &str = "[server]\ntokens = [{ token = \"pub\", publish = true }]\n";

/// How long the daemon may take to answer its first client after a start.
const HELLO_WITHIN: Duration = Duration::from_secs(10);

/// How long a publish may wait for its ack.
const ACK_WITHIN: Duration = Duration::from_secs(5);

/// How long a killed daemon may take to be reaped.
const KILL_WITHIN: Duration = Duration::from_secs(5);

fn main() {
    let quick = std::env::var_os("TABLO_BENCH_QUICK").is_some();
    let kills: usize = env_num("TABLO_KILLS", if quick { 10 } else { 100 });
    let seed: u64 = env_num("TABLO_KILL_SEED", 16);
    let publishers: usize = env_num("TABLO_KILL_PUBLISHERS", 4).max(1);
    println!(
        "kill loop: {kills} SIGKILLs under {publishers} publishers, each waiting for its acks (seed {seed})"
    );
    println!("machine: {}", support::machine());
    let mut rng = fastrand::Rng::with_seed(seed);

    let mut sandbox = Sandbox::new();
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut in_flight = Vec::new();
    let mut restart_ms = Vec::new();
    let mut epoch: Option<String> = None;
    let mut failures = Vec::new();
    for round in 0..kills {
        let started = Instant::now();
        let daemon = Daemon::start_in(sandbox, Some(CONFIG), &[]);
        let listening_ms = started.elapsed().as_secs_f64() * 1000.0;
        let deadline = Instant::now() + Duration::from_millis(rng.u64(200..=1000));
        let run = smol::block_on(async {
            let (ws, hello) = connect(&daemon).await?;
            let hello_ms = started.elapsed().as_secs_f64() * 1000.0;
            let mut sessions = vec![ws];
            for _ in 1..publishers {
                sessions.push(connect(&daemon).await?.0);
            }
            // Each publisher its own ids: round, publisher, count.
            let runs = sessions.into_iter().enumerate().map(|(p, ws)| {
                let base = (round as u64 * 100 + p as u64) * 1_000_000;
                smol::spawn(publisher(ws, base, deadline))
            });
            let mut acks = Vec::new();
            let mut flying = Vec::new();
            let mut open = Vec::new();
            for task in runs.collect::<Vec<_>>() {
                let (mut got, text, ws) = task.await?;
                acks.append(&mut got);
                flying.push(text);
                open.push(ws);
            }
            Ok::<_, String>((hello, hello_ms, acks, flying, open))
        });
        daemon.sigkill();
        let stopped = daemon.into_stopped(KILL_WITHIN);
        sandbox = stopped.sandbox;
        match run {
            Ok((hello, hello_ms, acks, flying, open)) => {
                // The publishers' sockets, open until the kill.
                drop(open);
                restart_ms.push((listening_ms, hello_ms));
                let this = hello["epoch"].as_str().unwrap_or_default().to_owned();
                match &epoch {
                    None => epoch = Some(this),
                    Some(first) if *first != this => failures.push(format!(
                        "round {round}: the epoch changed from {first} to {this}"
                    )),
                    Some(_) => {}
                }
                for (seq, text) in acks {
                    if let Some(old) = acked.insert(seq, text.clone()) {
                        failures.push(format!("seq {seq} acked twice: {old:?} and {text:?}"));
                    }
                }
                in_flight.extend(flying);
            }
            Err(why) => failures.push(format!("round {round}: {why}")),
        }
        if (round + 1) % 10 == 0 {
            println!("  {} kills, {} acks so far", round + 1, acked.len());
        }
    }

    // What survived, as `tablo journal export` tells it.
    let data_dir = sandbox.data_dir();
    let data_dir = data_dir.to_string_lossy();
    let export = sandbox.tablo(&["journal", "export", "--data-dir", &data_dir]);
    let stats = sandbox.tablo(&["journal", "stats", "--data-dir", &data_dir]);
    if !export.status.success() || !stats.status.success() {
        println!("tablo journal failed:\n{export}\n{stats}");
        std::process::exit(1);
    }
    let stats: Value = serde_json::from_str(stats.stdout.trim()).unwrap_or(Value::Null);
    if stats["epoch"].as_str() != epoch.as_deref() {
        failures.push(format!(
            "journal stats has epoch {}, the first hello had {epoch:?}",
            stats["epoch"]
        ));
    }
    let report = check_export(&export.stdout, &acked, &in_flight, kills);
    failures.extend(report.failures);

    let mut listening: Vec<f64> = restart_ms.iter().map(|r| r.0).collect();
    let mut hello: Vec<f64> = restart_ms.iter().map(|r| r.1).collect();
    println!();
    println!(
        "kills: {kills}, acked publishes: {}, records exported: {}",
        acked.len(),
        report.records
    );
    println!(
        "acked events lost: {} (every acked seq checked against the export)",
        report.lost
    );
    println!(
        "in-flight publishes at a kill found in the journal anyway: {} of {}",
        report.flying_kept,
        in_flight.len()
    );
    println!(
        "gaps: {} (at most one per kill allowed), {} seqs in all, largest {}; at most handed out to clients (handed_out_max): {} in all, largest {}",
        report.gaps,
        report.gap_seqs,
        report.largest_gap,
        report.handed_out,
        report.handed_out_largest
    );
    println!(
        "epoch: {} in every hello and in journal stats: {}",
        epoch.as_deref().unwrap_or("?"),
        if failures.iter().any(|f| f.contains("epoch")) {
            "NO"
        } else {
            "yes"
        }
    );
    println!(
        "restart, spawn to listening: p50 {:.1} ms, max {:.1} ms; spawn to the first client's hello: p50 {:.1} ms, max {:.1} ms",
        percentile(&mut listening, 0.5),
        percentile(&mut listening, 1.0),
        percentile(&mut hello, 0.5),
        percentile(&mut hello, 1.0)
    );
    if failures.is_empty() {
        println!("kill loop: PASS");
    } else {
        for f in failures.iter().take(20) {
            println!("FAIL: {f}");
        }
        println!("kill loop: FAIL ({} problems)", failures.len());
        std::process::exit(1);
    }
}

/// What the export shows.
struct Report {
    records: usize,
    lost: usize,
    flying_kept: usize,
    gaps: usize,
    gap_seqs: u64,
    largest_gap: u64,
    /// The gaps' `handed_out_max`, added up.
    handed_out: u64,
    /// The largest `handed_out_max`.
    handed_out_largest: u64,
    failures: Vec<String>,
}

/// Checks `tablo journal export`'s lines against what was acked.
fn check_export(
    export: &str,
    acked: &BTreeMap<u64, String>,
    in_flight: &[String],
    kills: usize,
) -> Report {
    let mut failures = Vec::new();
    let mut alerts: BTreeMap<u64, String> = BTreeMap::new();
    let mut gaps: Vec<(u64, u64)> = Vec::new();
    let mut handed_out_max = Vec::new();
    let mut last: Option<u64> = None;
    let mut records = 0;
    for line in export.lines() {
        records += 1;
        let Ok(record) = serde_json::from_str::<Value>(line) else {
            failures.push(format!("an export line is not JSON: {line}"));
            continue;
        };
        let (first, end) = if record["type"] == "gap" {
            let (Some(from), Some(to)) = (record["from"].as_u64(), record["to"].as_u64()) else {
                failures.push(format!("a gap without from and to: {line}"));
                continue;
            };
            // How many of its seqs can at most have reached a client.
            let handed_out = record["handed_out_max"].as_u64().unwrap_or(to - from + 1);
            if handed_out > to - from + 1 {
                failures.push(format!(
                    "a gap says more were handed out than it holds: {line}"
                ));
            }
            handed_out_max.push(handed_out);
            gaps.push((from, to));
            (from, to)
        } else {
            let Some(seq) = record["seq"].as_u64() else {
                failures.push(format!("a record without a seq: {line}"));
                continue;
            };
            if record["type"] == "alert" {
                alerts.insert(seq, record["text"].as_str().unwrap_or_default().to_owned());
            }
            (seq, seq)
        };
        if last.is_some_and(|last| first <= last) || end < first {
            failures.push(format!("seq order broken at {line} (after {last:?})"));
        }
        last = Some(end);
    }
    let mut lost = 0;
    for (seq, text) in acked {
        if alerts.get(seq) != Some(text) {
            lost += 1;
            if lost <= 5 {
                failures.push(format!(
                    "acked seq {seq} ({text:?}) is {:?} in the export",
                    alerts.get(seq)
                ));
            }
        }
        if gaps.iter().any(|&(from, to)| (from..=to).contains(seq)) {
            failures.push(format!("acked seq {seq} lies in a gap"));
        }
    }
    if gaps.len() > kills {
        failures.push(format!("{} gaps after {kills} kills", gaps.len()));
    }
    let texts: std::collections::HashSet<&String> = alerts.values().collect();
    Report {
        records,
        lost,
        flying_kept: in_flight.iter().filter(|t| texts.contains(t)).count(),
        gaps: gaps.len(),
        gap_seqs: gaps.iter().map(|(from, to)| to - from + 1).sum(),
        largest_gap: gaps
            .iter()
            .map(|(from, to)| to - from + 1)
            .max()
            .unwrap_or(0),
        handed_out: handed_out_max.iter().sum(),
        handed_out_largest: handed_out_max.iter().copied().max().unwrap_or(0),
        failures,
    }
}

/// One publisher's part of a round: alerts one at a time, each waiting for
/// its ack, until `deadline`; then one more that is in flight when the kill
/// comes. Its acks as (seq, text), the in-flight text, and the connection,
/// which stays open until the kill.
async fn publisher(
    mut ws: WebSocketStream<TcpStream>,
    base: u64,
    deadline: Instant,
) -> Result<(Vec<(u64, String)>, String, WebSocketStream<TcpStream>), String> {
    let mut acks = Vec::new();
    let mut id = base;
    while Instant::now() < deadline {
        id += 1;
        let text = format!("kill-loop alert {id}");
        let seq = publish(&mut ws, id, &text).await?;
        acks.push((seq, text));
    }
    id += 1;
    let text = format!("kill-loop alert {id} (in flight)");
    send_publish(&mut ws, id, &text).await?;
    Ok((acks, text, ws))
}

/// Connects a publisher, retrying until the daemon answers with a hello.
async fn connect(daemon: &Daemon) -> Result<(WebSocketStream<TcpStream>, Value), String> {
    let deadline = Instant::now() + HELLO_WITHIN;
    let url = format!("ws://{}/ws?client=bot&token=pub", daemon.addr());
    loop {
        let attempt = async {
            let stream = TcpStream::connect(daemon.addr())
                .await
                .map_err(|e| e.to_string())?;
            let (mut ws, _) = async_tungstenite::client_async(url.as_str(), stream)
                .await
                .map_err(|e| e.to_string())?;
            let hello = next_json(&mut ws).await.ok_or("closed before the hello")?;
            Ok::<_, String>((ws, hello))
        };
        match attempt.await {
            Ok((ws, hello)) if hello["type"] == "hello" => return Ok((ws, hello)),
            Ok((_, other)) => return Err(format!("the first frame is not a hello: {other}")),
            Err(why) if Instant::now() > deadline => {
                return Err(format!("no hello within {HELLO_WITHIN:?}: {why}"));
            }
            Err(_) => {
                Timer::after(Duration::from_millis(2)).await;
            }
        }
    }
}

/// Sends a publish of an alert with `text` and request `id`.
async fn send_publish(
    ws: &mut WebSocketStream<TcpStream>,
    id: u64,
    text: &str,
) -> Result<(), String> {
    let frame = json!({
        "op": "publish",
        "channel": "alerts",
        "data": {"level": "info", "text": text},
        "id": id,
    });
    ws.send(Message::text(frame.to_string()))
        .await
        .map_err(|e| format!("send publish {id}: {e}"))
}

/// Publishes and waits for the ack; its seq.
async fn publish(ws: &mut WebSocketStream<TcpStream>, id: u64, text: &str) -> Result<u64, String> {
    send_publish(ws, id, text).await?;
    let wait = async {
        loop {
            let frame = next_json(ws)
                .await
                .ok_or("the connection ended before the ack")?;
            match frame["type"].as_str() {
                Some("ack") if frame["id"] == id => {
                    return frame["seq"]
                        .as_u64()
                        .ok_or(format!("an ack without a seq: {frame}"));
                }
                Some("error") => return Err(format!("publish {id} refused: {frame}")),
                _ => {}
            }
        }
    };
    smol::future::or(wait, async {
        Timer::after(ACK_WITHIN).await;
        Err(format!("no ack for publish {id} within {ACK_WITHIN:?}"))
    })
    .await
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

/// The `q` quantile (0 to 1) of `values`, nearest rank.
fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value.parse().unwrap_or_else(|_| {
            eprintln!("{name}={value:?} is not a number");
            std::process::exit(64);
        }),
        Err(_) => default,
    }
}
