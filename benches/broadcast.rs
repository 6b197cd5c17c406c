//! Broadcast latency and cost of the relay (issue 5).
//!
//! The real daemon (the release `tablo` binary, real sockets on 127.0.0.1)
//! between a fake upstream and N WebSocket clients subscribed to `prices`:
//!
//! - the upstream is a WebSocket server in this process that sends Binance
//!   `24hrTicker` frames at a set rate over a set of symbols, one frame per
//!   `write`, paced on a clock. Message k carries k in its bid (`b`) and the
//!   monotonic instant it was written, in ns, in its volume (`v`): Tablo
//!   passes both through as strings, so a client that receives the tick
//!   knows which message it is and when it left, on the same clock;
//! - the clients are raw non-blocking sockets on epoll, in one thread per
//!   CPU the load generator has. Latency is "upstream wrote message k" →
//!   "a client's `read` returned it", into an HDR histogram. Each client
//!   keeps a bitmap of the k it got: a missing k is lost (the relay
//!   conflates ticks per symbol for a client that falls behind, and says how
//!   many in `/metrics`), a second copy is a duplicate;
//! - the relay's CPU (utime + stime, as `/proc/<pid>/stat` has them, read in
//!   ns through the process's CPU clock) over the measured window, divided
//!   by the frames delivered in it, and its peak RSS (`VmHWM`);
//! - the floor: in the same run, a plain loop of `send()` of a 200-byte frame
//!   to each of N loopback TCP sockets per message, at the same message
//!   rate, pinned like the relay: what one write per delivered frame costs
//!   on this machine, wake-ups included (at 1 client a wake-up per send
//!   dominates; at 1000 clients it is the send itself). Relays are shown as
//!   a multiple of it.
//!
//! Configurations: Tablo with its journal (default flush), Tablo without a
//! journal, and (when `node` is installed, or with `TABLO_BENCH_PEER=node`)
//! a minimal Node.js relay on the `ws` package (`benches/peer/relay.js`),
//! so ratios come from one run; issue 14's targets are printed from it as
//! PASS/FAIL lines (`benches/support/targets.rs`). The
//! daemon has no switch to turn its journal off (docs/durability.md §2: every
//! event is journaled), so "journal off" is the same hub, server, sessions and
//! feed task from the library wired without a journal, in a child process of
//! this bench (built with the release profile, like the daemon).
//!
//! On a machine with 2 or more CPUs the relay is pinned to the last CPU and
//! the load generator (upstream and clients) to the others, as `taskset`
//! would (`sched_setaffinity`); the generator's own CPU use is printed so a
//! saturated harness shows. Every configuration runs `TABLO_BENCH_RUNS`
//! times (default 2), interleaved; the table shows medians.
//!
//! Run with `cargo bench --bench broadcast`. Settings (environment):
//! `TABLO_BENCH_CLIENTS` (default `1,100,1000`), `TABLO_BENCH_RATE` (msg/s,
//! default 100), `TABLO_BENCH_SYMBOLS` (20), `TABLO_BENCH_HIGH_RATE` and
//! `TABLO_BENCH_HIGH_CLIENTS` (an extra load, default 1000 msg/s to 100
//! clients; rate 0 skips it), `TABLO_BENCH_SECONDS` (measured seconds per
//! run, default 5), `TABLO_BENCH_RUNS` (2), `TABLO_BENCH_JOURNAL` (`on,off`),
//! `TABLO_BENCH_PEER` (`node`, the default when installed, or `none`),
//! `TABLO_BENCH_THREADS` (client threads; default one per generator CPU),
//! `TABLO_BENCH_WRAP` (a command the daemon is run
//! under, e.g. `valgrind --tool=callgrind`), `TABLO_BENCH_TABLO` (a `tablo`
//! binary to use instead of building the release one), `TABLO_BENCH_QUICK=1`
//! (a short smoke run).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use hdrhistogram::Histogram;

mod support;

/// The mission's bar: p99 broadcast latency under 50 ms at 1000 clients.
const BAR_P99_MS: f64 = 50.0;
/// The client count the bar is stated for.
const BAR_CLIENTS: usize = 1000;

/// Unmeasured time at the start of each run: buffers grow, caches warm.
const WARMUP: Duration = Duration::from_secs(1);
/// After the last measured message, how long clients may take to get it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the relay may take to start and reach the upstream.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long N clients may take to connect and subscribe.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the send() floor is measured per load.
const FLOOR_TIME: Duration = Duration::from_secs(2);
/// The floor's frame: what a small WebSocket text frame weighs.
const FLOOR_FRAME_BYTES: usize = 200;
/// Latencies are recorded in µs, from 1 µs to 60 s, 3 significant digits.
const HIST_MAX_US: u64 = 60_000_000;
/// A generator running above this share of its CPUs is flagged as saturated:
/// its latency figures are then partly its own.
const SATURATED: f64 = 0.9;

/// The journal-off relay: set in the child, to the upstream URL.
const RELAY_CHILD_ENV: &str = "TABLO_BENCH_RELAY_CHILD";
/// The journal-off relay's client limit.
const RELAY_CHILD_CLIENTS_ENV: &str = "TABLO_BENCH_RELAY_CLIENTS";

/// Real Binance symbols for the first 20; more are made up.
const SYMBOLS: [&str; 20] = [
    "BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "TRXUSDT",
    "AVAXUSDT", "LINKUSDT", "DOTUSDT", "POLUSDT", "LTCUSDT", "BCHUSDT", "UNIUSDT", "ATOMUSDT",
    "XLMUSDT", "ETCUSDT", "FILUSDT", "APTUSDT",
];

fn main() {
    raise_open_file_limit();
    if let Ok(url) = std::env::var(RELAY_CHILD_ENV) {
        relay_child(&url);
        return;
    }
    let plan = Plan::from_env();
    let bin = support::release_binary();
    let node = plan.relays.contains(&Relay::Node).then(prepare_node_peer);
    // From here on every thread this process starts is the load generator.
    if let Some(cpus) = &plan.cpus.generator {
        pin_current_thread(cpus);
    }
    let root = bench_root();
    let started = Instant::now();
    let load_before = loadavg();
    println!(
        "tablo broadcast bench{}",
        if plan.quick { " (quick)" } else { "" }
    );
    println!("  machine: {}", machine());
    println!("  pinning: {}", plan.cpus.note);
    println!(
        "  load: Binance 24hrTicker frames over {} symbols; {} s warm-up + {} s measured per run; {} run(s) per configuration, interleaved; figures are medians of the runs",
        plan.symbols,
        plan.warmup.as_secs_f64(),
        plan.measure.as_secs_f64(),
        plan.runs
    );
    println!(
        "  load generator: {} client thread(s) + the upstream thread; load average before: {load_before}",
        plan.threads
    );
    if !plan.wrap.is_empty() {
        println!("  tablo runs under: {}", plan.wrap.join(" "));
    }
    if let Some(version) = &node {
        println!("  peer: {version}");
    }
    println!();

    let mut results: Vec<Config> = Vec::new();
    for load in &plan.loads {
        results.push(Config {
            load: *load,
            relay: None,
            samples: Vec::new(),
        });
        for relay in &plan.relays {
            results.push(Config {
                load: *load,
                relay: Some(*relay),
                samples: Vec::new(),
            });
        }
    }
    for run in 0..plan.runs {
        for config in &mut results {
            let label = config.label(node.as_deref());
            eprint!(
                "run {}/{} · {} clients @ {}/s · {label} … ",
                run + 1,
                plan.runs,
                config.load.clients,
                config.load.rate
            );
            let sample = match config.relay {
                None => send_floor(&plan, config.load),
                Some(relay) => run_once(&plan, relay, config.load, &bin, root.path()),
            };
            eprintln!("{}", sample.brief());
            config.samples.push(sample);
        }
    }
    let load_after = loadavg();
    print_table(&plan, &results, node.as_deref());
    println!();
    let others: Vec<f64> = results
        .iter()
        .flat_map(|c| c.samples.iter().filter_map(|s| s.others_pct))
        .collect();
    if !others.is_empty() {
        println!(
            "  other processes on the machine during the runs: median {:.0} %, max {:.0} % of one core; load average after: {load_after}",
            median(&others),
            others.iter().copied().fold(0.0, f64::max)
        );
    }
    println!("  whole bench: {:.0} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------
// The plan.
// ---------------------------------------------------------------------------

/// What to run.
struct Plan {
    loads: Vec<Load>,
    relays: Vec<Relay>,
    symbols: usize,
    warmup: Duration,
    measure: Duration,
    floor_time: Duration,
    runs: usize,
    threads: usize,
    cpus: Cpus,
    wrap: Vec<String>,
    quick: bool,
}

/// One load: N clients, messages per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Load {
    clients: usize,
    rate: u32,
}

/// Which relay a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Relay {
    /// The daemon, journal on.
    Tablo,
    /// The library's relay core without a journal (see the module doc).
    TabloNoJournal,
    /// benches/peer/relay.js.
    Node,
}

/// Where the relay and the load generator run.
struct Cpus {
    relay: Option<Vec<usize>>,
    generator: Option<Vec<usize>>,
    note: String,
}

impl Plan {
    fn from_env() -> Plan {
        let quick = env_flag("TABLO_BENCH_QUICK");
        let default_clients = if quick { "1,100" } else { "1,100,1000" };
        let clients = env_list("TABLO_BENCH_CLIENTS", default_clients);
        let rate: u32 = env_num("TABLO_BENCH_RATE", 100);
        let high_rate: u32 = env_num("TABLO_BENCH_HIGH_RATE", 1000);
        let high_clients: usize = env_num("TABLO_BENCH_HIGH_CLIENTS", 100);
        let mut loads: Vec<Load> = clients
            .into_iter()
            .filter(|&clients| clients > 0 && rate > 0)
            .map(|clients| Load { clients, rate })
            .collect();
        if high_rate > 0 && high_clients > 0 {
            loads.push(Load {
                clients: high_clients,
                rate: high_rate,
            });
        }
        let mut relays = Vec::new();
        for journal in std::env::var("TABLO_BENCH_JOURNAL")
            .unwrap_or_else(|_| "on,off".into())
            .split(',')
        {
            match journal.trim() {
                "on" => relays.push(Relay::Tablo),
                "off" => relays.push(Relay::TabloNoJournal),
                "" => {}
                other => fail(&format!(
                    "TABLO_BENCH_JOURNAL: {other:?} is neither on nor off"
                )),
            }
        }
        // Node by default when it is installed, so one run has both sides.
        match std::env::var("TABLO_BENCH_PEER").as_deref() {
            Ok("node") => relays.push(Relay::Node),
            Err(_) if node_installed() => relays.push(Relay::Node),
            Ok("" | "none") | Err(_) => {}
            Ok(other) => fail(&format!(
                "TABLO_BENCH_PEER: {other:?} is not a known peer; use node or none"
            )),
        }
        let cpus = Cpus::split();
        let generator_cpus = cpus.generator.as_ref().map_or(1, Vec::len);
        let wrap = std::env::var("TABLO_BENCH_WRAP")
            .map(|w| w.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        Plan {
            loads,
            relays,
            symbols: env_num("TABLO_BENCH_SYMBOLS", SYMBOLS.len()).max(1),
            warmup: if quick {
                Duration::from_millis(500)
            } else {
                WARMUP
            },
            measure: Duration::from_secs_f64(env_num(
                "TABLO_BENCH_SECONDS",
                if quick { 1.0 } else { 5.0 },
            )),
            floor_time: if quick {
                Duration::from_millis(500)
            } else {
                FLOOR_TIME
            },
            runs: env_num("TABLO_BENCH_RUNS", if quick { 1 } else { 2 }).max(1),
            threads: env_num("TABLO_BENCH_THREADS", generator_cpus).max(1),
            cpus,
            wrap,
            quick,
        }
    }
}

impl Cpus {
    /// The relay gets the last allowed CPU, the generator the rest; with one
    /// CPU nothing is pinned.
    fn split() -> Cpus {
        let allowed = allowed_cpus();
        match allowed.split_last() {
            Some((&last, rest)) if !rest.is_empty() => Cpus {
                relay: Some(vec![last]),
                generator: Some(rest.to_vec()),
                note: format!(
                    "relay on CPU {last}, load generator on CPU {} (sched_setaffinity, as taskset -c does)",
                    list(rest)
                ),
            },
            _ => Cpus {
                relay: None,
                generator: None,
                note: format!(
                    "none: only {} CPU available, so relay and load generator share it and latency includes the generator's own work",
                    allowed.len()
                ),
            },
        }
    }
}

fn list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| fail(&format!("{name}: {v:?} is not a number"))),
        _ => default,
    }
}

fn env_list(name: &str, default: &str) -> Vec<usize> {
    let text = std::env::var(name).unwrap_or_else(|_| default.into());
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim().parse().unwrap_or_else(|_| {
                fail(&format!(
                    "{name}: {s:?} is not a number; use a list such as 1,100,1000"
                ))
            })
        })
        .collect()
}

fn fail(message: &str) -> ! {
    eprintln!("broadcast bench: {message}");
    std::process::exit(2);
}

// ---------------------------------------------------------------------------
// Results.
// ---------------------------------------------------------------------------

/// One configuration (a load with a relay, or the floor) and its runs.
struct Config {
    load: Load,
    /// `None` for the send() floor.
    relay: Option<Relay>,
    samples: Vec<Sample>,
}

impl Config {
    fn label(&self, node: Option<&str>) -> String {
        match self.relay {
            None => "send() floor".into(),
            Some(Relay::Tablo) => "tablo, journal on".into(),
            Some(Relay::TabloNoJournal) => "tablo, journal off".into(),
            Some(Relay::Node) => node
                .and_then(|v| v.split_whitespace().find(|w| w.starts_with("ws/")))
                .map_or("node ws".into(), |ws| {
                    format!("node {}", ws.replace('/', " "))
                }),
        }
    }

    fn median(&self, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        let values: Vec<f64> = self.samples.iter().filter_map(f).collect();
        (!values.is_empty()).then(|| median(&values))
    }
}

/// What one run measured.
#[derive(Default)]
struct Sample {
    /// Latency percentiles in ms: p50, p90, p99, p99.9, max.
    latency: Option<[f64; 5]>,
    /// Measured messages × clients.
    expected: u64,
    /// Distinct measured frames received.
    delivered: u64,
    lost: u64,
    duplicates: u64,
    /// Ticks the relay says it conflated (Tablo only).
    conflated: Option<u64>,
    /// Clients the relay closed.
    closed: u64,
    /// Relay CPU seconds per delivered frame, in µs (or the floor's per send).
    cpu_per_frame_us: Option<f64>,
    relay_peak_rss_kib: Option<u64>,
    /// Generator CPU, percent of one core, and of its CPUs.
    generator_pct: Option<(f64, f64)>,
    /// Other processes' CPU during the window, percent of one core.
    others_pct: Option<f64>,
    /// Messages per second the upstream achieved.
    achieved_rate: Option<f64>,
    /// Frames per client read() (batching seen from the client).
    frames_per_read: Option<f64>,
}

impl Sample {
    fn brief(&self) -> String {
        let mut out = String::new();
        if let Some(l) = self.latency {
            let _ = write!(out, "p50 {:.2} ms, p99 {:.2} ms, ", l[0], l[2]);
        }
        if let Some(cpu) = self.cpu_per_frame_us {
            let _ = write!(out, "{cpu:.2} µs CPU/frame");
        }
        if self.latency.is_some() {
            let _ = write!(out, ", lost {}", self.lost);
            if let Some(conflated) = self.conflated {
                let _ = write!(out, " ({conflated} conflated)");
            }
            let _ = write!(
                out,
                ", dup {}, {:.2} frames/read",
                self.duplicates,
                self.frames_per_read.unwrap_or(0.0)
            );
            if let Some(rate) = self.achieved_rate {
                let _ = write!(out, ", {rate:.0} msg/s sent");
            }
            if let Some((pct, _)) = self.generator_pct {
                let _ = write!(out, ", generator {pct:.0} %");
            }
        }
        out
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn print_table(plan: &Plan, results: &[Config], node: Option<&str>) {
    println!(
        "| clients | msg/s | relay | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | lost | dup | conflated | CPU µs/frame | × floor | peak RSS | generator CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let ms = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
    for config in results {
        let floor = results
            .iter()
            .find(|c| c.relay.is_none() && c.load == config.load)
            .and_then(|c| c.median(|s| s.cpu_per_frame_us));
        let lat = |i: usize| config.median(|s| s.latency.map(|l| l[i]));
        let cpu = config.median(|s| s.cpu_per_frame_us);
        let ratio = match (cpu, floor) {
            (Some(cpu), Some(floor)) if floor > 0.0 => format!("{:.2}", cpu / floor),
            _ => "–".into(),
        };
        let count = |f: &dyn Fn(&Sample) -> Option<u64>| {
            config
                .median(|s| f(s).map(|v| v as f64))
                .map_or("–".into(), |v| format!("{v:.0}"))
        };
        let generator =
            config
                .median(|s| s.generator_pct.map(|g| g.0))
                .map_or("–".into(), |pct| {
                    let share = config
                        .median(|s| s.generator_pct.map(|g| g.1))
                        .unwrap_or(0.0);
                    if share > SATURATED {
                        format!("{pct:.0} % (saturated)")
                    } else {
                        format!("{pct:.0} %")
                    }
                });
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            config.load.clients,
            config.load.rate,
            config.label(node),
            ms(lat(0)),
            ms(lat(1)),
            ms(lat(2)),
            ms(lat(3)),
            ms(lat(4)),
            count(&|s| s.latency.map(|_| s.lost)),
            count(&|s| s.latency.map(|_| s.duplicates)),
            count(&|s| s.conflated),
            cpu.map_or("–".into(), |v| format!("{v:.2}")),
            ratio,
            config
                .median(|s| s.relay_peak_rss_kib.map(|k| k as f64))
                .map_or("–".into(), |k| format!("{:.1} MiB", k / 1024.0)),
            generator,
        );
    }
    println!();
    let find = |relay: Relay, load: Load| {
        results
            .iter()
            .find(|c| c.relay == Some(relay) && c.load == load)
    };
    // Ratios against the peer, from the same run.
    if plan.relays.contains(&Relay::Node) {
        for load in &plan.loads {
            if let (Some(t), Some(n)) = (find(Relay::Tablo, *load), find(Relay::Node, *load)) {
                let p99 = t
                    .median(|s| s.latency.map(|l| l[2]))
                    .zip(n.median(|s| s.latency.map(|l| l[2])));
                let cpu = t
                    .median(|s| s.cpu_per_frame_us)
                    .zip(n.median(|s| s.cpu_per_frame_us));
                let rss = t
                    .median(|s| s.relay_peak_rss_kib.map(|k| k as f64))
                    .zip(n.median(|s| s.relay_peak_rss_kib.map(|k| k as f64)));
                let r = |v: Option<(f64, f64)>| {
                    v.map_or("–".into(), |(a, b)| format!("{:.2}×", a / b))
                };
                println!(
                    "  tablo (journal on) / node at {} clients, {} msg/s: p99 {}, CPU per frame {}, peak RSS {}",
                    load.clients,
                    load.rate,
                    r(p99),
                    r(cpu),
                    r(rss)
                );
            }
        }
        println!();
    }
    print_targets(results);
    // Issue 14's targets, from the one-core runs (benches/support/targets.rs).
    let relayed = |who, clients, rate| {
        use support::targets::{Relayed, Who};
        let relay = if who == Who::Tablo {
            Relay::Tablo
        } else {
            Relay::Node
        };
        let c = find(relay, Load { clients, rate })?;
        let lost = c.samples.iter().filter(|s| s.latency.is_some());
        Some(Relayed {
            p50_ms: c.median(|s| s.latency.map(|l| l[0])),
            p99_ms: c.median(|s| s.latency.map(|l| l[2])),
            cpu_us: c.median(|s| s.cpu_per_frame_us),
            lost: lost.map(|s| s.lost as f64).reduce(f64::max),
        })
    };
    let lines = support::targets::relay(relayed);
    support::targets::print(
        "targets (issue 14), Tablo against Node in this run:",
        &lines,
    );
    println!();
    // The mission's bar.
    let bar = plan
        .loads
        .iter()
        .find(|l| l.clients == BAR_CLIENTS)
        .and_then(|l| find(Relay::Tablo, *l).or_else(|| find(Relay::TabloNoJournal, *l)))
        .and_then(|c| {
            c.median(|s| s.latency.map(|l| l[2]))
                .map(|p99| (p99, c.label(node), c.load.rate))
        });
    match bar {
        Some((p99, label, rate)) if p99 < BAR_P99_MS => println!(
            "PASS: p99 {p99:.2} ms < {BAR_P99_MS} ms at {BAR_CLIENTS} clients, {rate} msg/s ({label})"
        ),
        Some((p99, label, rate)) => println!(
            "FAIL: p99 {p99:.2} ms ≥ {BAR_P99_MS} ms at {BAR_CLIENTS} clients, {rate} msg/s ({label})"
        ),
        None => println!(
            "PASS/FAIL not decided: the bar is p99 < {BAR_P99_MS} ms at {BAR_CLIENTS} clients, and no Tablo run had {BAR_CLIENTS} clients"
        ),
    }
}

/// Issue 5's targets for a 2-core machine, each said met or not when the
/// run has what it needs (the Node targets need `TABLO_BENCH_PEER=node`).
fn print_targets(results: &[Config]) {
    let get = |relay: Relay, clients: usize, rate: u32| {
        results
            .iter()
            .find(|c| c.relay == Some(relay) && c.load == Load { clients, rate })
    };
    let floor = |clients: usize, rate: u32| {
        results
            .iter()
            .find(|c| c.relay.is_none() && c.load == Load { clients, rate })
            .and_then(|c| c.median(|s| s.cpu_per_frame_us))
    };
    let cpu = |c: Option<&Config>| c.and_then(|c| c.median(|s| s.cpu_per_frame_us));
    let p99 = |c: Option<&Config>| c.and_then(|c| c.median(|s| s.latency.map(|l| l[2])));
    let rss = |c: Option<&Config>| {
        c.and_then(|c| c.median(|s| s.relay_peak_rss_kib.map(|k| k as f64 / 1024.0)))
    };
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let mut lines = Vec::new();
    if let (Some(t), Some(f)) = (cpu(get(Relay::Tablo, 1000, 100)), floor(1000, 100)) {
        lines.push(format!(
            "CPU per frame <= 1.2x the send() floor at 1000 clients, 100 msg/s: {:.2}x, {}",
            t / f,
            verdict(t <= 1.2 * f)
        ));
    }
    if let (Some(t), Some(f)) = (cpu(get(Relay::Tablo, 100, 1000)), floor(100, 1000)) {
        let node = cpu(get(Relay::Node, 100, 1000));
        let ok = t < f && node.is_none_or(|n| t < 0.5 * n);
        lines.push(format!(
            "at 1000 msg/s, 100 clients, CPU per frame below the floor{}: {:.2}x the floor{}, {}",
            if node.is_some() {
                " and below half of Node's"
            } else {
                ""
            },
            t / f,
            node.map_or(String::new(), |n| format!(", {:.2}x Node's", t / n)),
            verdict(ok)
        ));
    }
    if let (Some(t), Some(n)) = (
        p99(get(Relay::Tablo, 100, 100)),
        p99(get(Relay::Node, 100, 100)),
    ) {
        lines.push(format!(
            "p99 <= 0.5x Node's at 100 clients: {:.2}x, {}",
            t / n,
            verdict(t <= 0.5 * n)
        ));
    }
    if let Some(r) = rss(get(Relay::Tablo, 1000, 100)) {
        lines.push(format!(
            "peak RSS <= 20 MiB at 1000 clients, journal on: {r:.1} MiB, {}",
            verdict(r <= 20.0)
        ));
    }
    for line in &lines {
        println!("  target: {line}");
    }
    if !lines.is_empty() {
        println!();
    }
}

// ---------------------------------------------------------------------------
// One run.
// ---------------------------------------------------------------------------

/// State shared by the upstream, the client threads and the main thread
/// during one run.
struct RunState {
    /// Messages before this k are warm-up.
    warm: u64,
    /// Messages the upstream sends in all.
    total: u64,
    go: AtomicBool,
    stop: AtomicBool,
    subscribed: AtomicUsize,
    /// Distinct measured frames received, over all clients.
    received: AtomicU64,
}

/// What the upstream tells the main thread.
enum Phase {
    /// The relay connected and completed the handshake.
    Connected,
    /// Message `warm` is about to be written: the measured window opens.
    Measuring,
    /// The last message was written; the measured part took this long.
    Sent(Duration),
    /// The upstream failed.
    Failed(String),
}

fn run_once(plan: &Plan, relay: Relay, load: Load, bin: &Path, root: &Path) -> Sample {
    let rate = f64::from(load.rate);
    let warm = (plan.warmup.as_secs_f64() * rate).round() as u64;
    let measured = ((plan.measure.as_secs_f64() * rate).round() as u64).max(1);
    let state = Arc::new(RunState {
        warm,
        total: warm + measured,
        go: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        subscribed: AtomicUsize::new(0),
        received: AtomicU64::new(0),
    });
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake upstream");
    let url = format!(
        "ws://{}/ws",
        listener.local_addr().expect("upstream address")
    );
    let (phase_tx, phases) = mpsc::channel();
    let upstream = {
        let state = state.clone();
        let symbols = plan.symbols;
        thread::Builder::new()
            .name("upstream".into())
            .spawn(move || upstream(listener, &state, load.rate, symbols, &phase_tx))
            .expect("spawn the upstream")
    };
    let mut proc = RelayProcess::start(plan, relay, &url, load.clients, bin, root);
    match phases.recv_timeout(START_TIMEOUT) {
        Ok(Phase::Connected) => {}
        Ok(Phase::Failed(why)) => proc.fail(&format!("the fake upstream failed: {why}")),
        _ => proc.fail("the relay did not connect to the fake upstream"),
    }

    let clients: Vec<JoinHandle<ClientStats>> = shares(load.clients, plan.threads)
        .into_iter()
        .enumerate()
        .filter(|(_, n)| *n > 0)
        .map(|(i, n)| {
            let state = state.clone();
            let addr = proc.addr;
            thread::Builder::new()
                .name(format!("clients-{i}"))
                .spawn(move || client_thread(addr, n, &state))
                .expect("spawn a client thread")
        })
        .collect();
    let deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
    while state.subscribed.load(Ordering::Acquire) < load.clients {
        if Instant::now() > deadline || clients.iter().any(JoinHandle::is_finished) {
            state.stop.store(true, Ordering::Release);
            let why: Vec<String> = clients
                .into_iter()
                .filter_map(|c| c.join().err())
                .filter_map(|e| e.downcast_ref::<String>().cloned())
                .collect();
            proc.fail(&format!(
                "only {} of {} clients subscribed {}",
                state.subscribed.load(Ordering::Acquire),
                load.clients,
                why.join("; ")
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }

    state.go.store(true, Ordering::Release);
    let mut sample = Sample::default();
    match phases.recv_timeout(plan.warmup + START_TIMEOUT) {
        Ok(Phase::Measuring) => {}
        _ => proc.fail("the upstream did not start sending"),
    }
    let before = Usage::now(proc.pid);
    let sent_in = match phases.recv_timeout(plan.measure * 2 + START_TIMEOUT) {
        Ok(Phase::Sent(took)) => took,
        Ok(Phase::Failed(why)) => proc.fail(&format!("the fake upstream failed: {why}")),
        _ => proc.fail("the upstream did not finish sending"),
    };
    let expected = measured * load.clients as u64;
    let drain = Instant::now() + DRAIN_TIMEOUT;
    while state.received.load(Ordering::Acquire) < expected && Instant::now() < drain {
        thread::sleep(Duration::from_millis(2));
    }
    let after = Usage::now(proc.pid);
    sample.achieved_rate = Some(measured as f64 / sent_in.as_secs_f64().max(1e-9));
    let metrics = proc.metrics();
    let metric = |name: &str| -> Option<u64> {
        metrics
            .as_deref()?
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?
            .trim()
            .parse()
            .ok()
    };
    sample.conflated = metric("tablo_conflations_total");
    sample.relay_peak_rss_kib = proc.peak_rss_kib();
    state.stop.store(true, Ordering::Release);
    let mut hist = Histogram::<u64>::new_with_bounds(1, HIST_MAX_US, 3).expect("histogram");
    let mut reads = 0u64;
    let mut frames = 0u64;
    for c in clients {
        let stats = c.join().expect("a client thread panicked");
        hist.add(&stats.hist).expect("merge histograms");
        sample.delivered += stats.delivered;
        sample.lost += stats.lost;
        sample.duplicates += stats.duplicates;
        sample.closed += stats.closed;
        reads += stats.reads;
        frames += stats.frames;
    }
    proc.stop();
    let _ = upstream.join();
    if sample.lost > 0 && metrics.is_some() {
        eprint!(
            "[relay: {} prices events in, {} frames out, {} dropped, {} bad upstream messages, {} journal drops] ",
            metric("tablo_events_in_total{channel=\"prices\"}").unwrap_or(0),
            metric("tablo_frames_out_total{channel=\"prices\"}").unwrap_or(0),
            metric("tablo_drops_total").unwrap_or(0),
            metric("tablo_feed_bad_messages_total{feed=\"binance\"}").unwrap_or(0),
            metric("tablo_journal_dropped_total").unwrap_or(0),
        );
    }

    sample.expected = expected;
    sample.frames_per_read = Some(frames as f64 / reads.max(1) as f64);
    if !hist.is_empty() {
        let ms = |us: u64| us as f64 / 1000.0;
        sample.latency = Some([
            ms(hist.value_at_quantile(0.50)),
            ms(hist.value_at_quantile(0.90)),
            ms(hist.value_at_quantile(0.99)),
            ms(hist.value_at_quantile(0.999)),
            ms(hist.max()),
        ]);
    }
    let wall = after.wall.duration_since(before.wall).as_secs_f64();
    let relay_cpu = after.relay_cpu - before.relay_cpu;
    let generator_cpu = after.own_cpu - before.own_cpu;
    if sample.delivered > 0 {
        sample.cpu_per_frame_us = Some(relay_cpu * 1e6 / sample.delivered as f64);
    }
    let generator_cpus = plan.cpus.generator.as_ref().map_or(1, Vec::len) as f64;
    sample.generator_pct = Some((
        generator_cpu / wall * 100.0,
        generator_cpu / wall / generator_cpus,
    ));
    sample.others_pct = Some(
        ((after.machine_busy - before.machine_busy) - relay_cpu - generator_cpu).max(0.0) / wall
            * 100.0,
    );
    sample
}

/// Splits `n` clients over `threads` threads.
fn shares(n: usize, threads: usize) -> Vec<usize> {
    (0..threads)
        .map(|i| n / threads + usize::from(i < n % threads))
        .collect()
}

/// CPU counters at one instant.
struct Usage {
    wall: Instant,
    /// The relay's utime + stime, seconds.
    relay_cpu: f64,
    /// This process's (the load generator's) CPU, seconds.
    own_cpu: f64,
    /// Busy time of the whole machine, seconds.
    machine_busy: f64,
}

impl Usage {
    fn now(relay: u32) -> Usage {
        Usage {
            wall: Instant::now(),
            relay_cpu: process_cpu_seconds(relay).unwrap_or(0.0),
            own_cpu: own_cpu_seconds(),
            machine_busy: machine_busy_seconds(),
        }
    }
}

// ---------------------------------------------------------------------------
// The relay under test.
// ---------------------------------------------------------------------------

/// A running relay: its process, address and the tail of its stderr.
struct RelayProcess {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    kind: Relay,
    log: Arc<Mutex<VecDeque<String>>>,
    _dir: Option<tempfile::TempDir>,
}

impl RelayProcess {
    fn start(
        plan: &Plan,
        kind: Relay,
        upstream: &str,
        clients: usize,
        bin: &Path,
        root: &Path,
    ) -> RelayProcess {
        let mut dir = None;
        let mut cmd = match kind {
            Relay::Tablo => {
                let data = tempfile::Builder::new()
                    .prefix("run-")
                    .tempdir_in(root)
                    .expect("a data dir");
                let config = data.path().join("bench.toml");
                std::fs::write(
                    &config,
                    format!("[server]\nmax_clients = {}\n", clients.max(1000)),
                )
                .expect("write the bench config");
                let mut cmd = match plan.wrap.split_first() {
                    Some((wrapper, args)) => {
                        let mut cmd = Command::new(wrapper);
                        cmd.args(args).arg(bin);
                        cmd
                    }
                    None => Command::new(bin),
                };
                cmd.arg("run")
                    .arg("--config")
                    .arg(&config)
                    .args(["--listen", "127.0.0.1:0", "--display", "none"])
                    .arg("--data-dir")
                    .arg(data.path())
                    .arg("--feed")
                    .arg(format!("binance={upstream}"));
                dir = Some(data);
                cmd
            }
            Relay::TabloNoJournal => {
                let mut cmd = Command::new(std::env::current_exe().expect("the bench's path"));
                cmd.env(RELAY_CHILD_ENV, upstream)
                    .env(RELAY_CHILD_CLIENTS_ENV, clients.max(1000).to_string());
                cmd
            }
            Relay::Node => {
                let mut cmd = Command::new("node");
                cmd.arg(peer_dir().join("relay.js")).arg(upstream);
                cmd
            }
        };
        cmd.env("TABLO_LOG", "warn,tablo=info")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(cpus) = plan.cpus.relay.clone() {
            // SAFETY: only sched_setaffinity, which is async-signal-safe,
            // runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    set_affinity(&cpus);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            fail(&format!("cannot start the {kind:?} relay: {e}"));
        });
        let pid = child.id();
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        {
            let log = log.clone();
            thread::spawn(move || {
                // Keeps draining, so the relay never blocks on a full pipe.
                let mut sent = false;
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if !sent && let Some(rest) = line.split("listening on ").nth(1) {
                        let token = rest.split_whitespace().next().unwrap_or("");
                        if let Ok(addr) = token.parse::<SocketAddr>() {
                            let _ = addr_tx.send(addr);
                            sent = true;
                        }
                    }
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    if log.len() == 40 {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            });
        }
        let mut proc = RelayProcess {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            kind,
            log,
            _dir: dir,
        };
        match addr_rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => proc.addr = addr,
            Err(_) => proc.fail("the relay did not say where it listens"),
        }
        proc
    }

    /// Stops the relay and the bench with the relay's last words.
    fn fail(&mut self, why: &str) -> ! {
        self.stop();
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        eprintln!(
            "\nbroadcast bench: {why} ({:?} relay)\nits stderr ended with:",
            self.kind
        );
        for line in log.iter() {
            eprintln!("  {line}");
        }
        std::process::exit(1);
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The relay's own counters from its `/metrics` (Tablo only).
    fn metrics(&self) -> Option<String> {
        if self.kind == Relay::Node {
            return None;
        }
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    }

    fn stop(&mut self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The journal-off relay (see the module doc): `app::run_relay`, the hub,
/// server, sessions and Binance feed task as `app::run` wires them, with
/// no journal. Runs until killed.
fn relay_child(upstream: &str) {
    use tablo::config::{Config, Overrides, parse_feed_flag};

    tablo::logger::init();
    let max_clients: usize = env_num(RELAY_CHILD_CLIENTS_ENV, 1000);
    let feed = parse_feed_flag(&format!("binance={upstream}"), &mut Vec::new())
        .expect("a binance feed flag");
    let overrides = Overrides {
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        feeds: vec![feed],
        data_dir: Some(std::env::temp_dir().join("tablo-bench-unused")),
        ..Overrides::default()
    };
    let mut config = Config::load(None, &overrides).expect("the relay's config");
    config.server.max_clients = max_clients;
    let listener = tablo::app::bind(config.server.listen).expect("bind the relay");
    let local = listener.local_addr().expect("local address");
    eprintln!("listening on {local}");
    smol::block_on(tablo::app::run_relay(
        listener,
        std::future::pending(),
        config,
    ))
    .expect("the relay runs until killed");
}

// ---------------------------------------------------------------------------
// The fake upstream.
// ---------------------------------------------------------------------------

/// Accepts the relay's feed connection, then sends `state.total` ticker
/// messages at `rate` once `state.go` is set, answering pings meanwhile.
fn upstream(
    listener: TcpListener,
    state: &RunState,
    rate: u32,
    symbols: usize,
    phases: &mpsc::Sender<Phase>,
) {
    let mut conn = match accept_relay(&listener, state) {
        Ok(conn) => conn,
        Err(why) => {
            let _ = phases.send(Phase::Failed(why));
            return;
        }
    };
    let _ = phases.send(Phase::Connected);
    let mut incoming = Vec::new();
    while !state.go.load(Ordering::Acquire) {
        if state.stop.load(Ordering::Acquire) {
            return;
        }
        answer_pings(&mut conn, &mut incoming);
        thread::sleep(Duration::from_millis(1));
    }
    let names: Vec<String> = (0..symbols)
        .map(|i| {
            SYMBOLS
                .get(i)
                .map_or_else(|| format!("SYM{i}USDT"), |s| (*s).to_owned())
        })
        .collect();
    let mut json = String::with_capacity(512);
    let mut frame = Vec::with_capacity(600);
    let started = Instant::now();
    let mut measuring_since = started;
    let period = 1.0 / f64::from(rate.max(1));
    for k in 0..state.total {
        let due = started + Duration::from_secs_f64(k as f64 * period);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        if state.stop.load(Ordering::Acquire) {
            return;
        }
        if k == state.warm {
            let _ = phases.send(Phase::Measuring);
            measuring_since = Instant::now();
        }
        let symbol = (k % symbols as u64) as usize;
        ticker_json(&mut json, &names[symbol], symbol, k, monotonic_ns());
        frame.clear();
        ws_header(&mut frame, json.len(), None);
        frame.extend_from_slice(json.as_bytes());
        if let Err(e) = conn.write_all(&frame) {
            let _ = phases.send(Phase::Failed(format!("writing to the relay: {e}")));
            return;
        }
        if k % 64 == 0 {
            answer_pings(&mut conn, &mut incoming);
        }
    }
    let _ = phases.send(Phase::Sent(measuring_since.elapsed()));
    while !state.stop.load(Ordering::Acquire) {
        answer_pings(&mut conn, &mut incoming);
        thread::sleep(Duration::from_millis(5));
    }
}

/// A Binance `24hrTicker` payload for message `k`, written at `sent_ns`.
fn ticker_json(out: &mut String, symbol: &str, index: usize, k: u64, sent_ns: u64) {
    out.clear();
    let whole = 1000 + index * 100 + (k / 20 % 50) as usize;
    let cents = k % 100;
    let _ = write!(
        out,
        concat!(
            r#"{{"e":"24hrTicker","E":{e},"s":"{s}","p":"12.50","P":"1.25","w":"{w}.00","x":"{w}.00","#,
            r#""c":"{w}.{c:02}","Q":"0.01000000","b":"{k}","B":"1.50000000","a":"{w}.{a:02}","A":"2.00000000","#,
            r#""o":"{o}.00","h":"{h}.00","l":"{o}.00","v":"{v}","q":"1234567.89000000","#,
            r#""O":1700000000000,"C":1700086400000,"F":1,"L":{k},"n":{k}}}"#
        ),
        e = 1_700_000_000_000u64 + k,
        s = symbol,
        w = whole,
        c = cents,
        a = (cents + 1) % 100,
        k = k,
        o = whole - 10,
        h = whole + 10,
        v = sent_ns,
    );
}

fn accept_relay(listener: &TcpListener, state: &RunState) -> Result<TcpStream, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline || state.stop.load(Ordering::Acquire) {
                    return Err("the relay never connected".into());
                }
                thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(START_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let (head, _) = read_head(&mut stream).map_err(|e| format!("the relay's request: {e}"))?;
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .ok_or("the relay's request has no Sec-WebSocket-Key")?;
    write!(
        stream,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
    .map_err(|e| e.to_string())?;
    stream.set_read_timeout(None).map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Reads what the relay sent (without waiting) and answers its pings, so
/// its keepalive never takes the fake upstream for dead.
fn answer_pings(conn: &mut TcpStream, incoming: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: recv into a buffer we own, without blocking.
        let n = unsafe {
            libc::recv(
                conn.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            break;
        }
        incoming.extend_from_slice(&buf[..n as usize]);
    }
    let mut at = 0;
    while let Some((opcode, payload, len)) = parse_frame(&incoming[at..]) {
        if opcode == 0x9 {
            let mut pong = Vec::with_capacity(payload.len() + 2);
            ws_header_op(&mut pong, 0xA, payload.len(), None);
            pong.extend_from_slice(&payload);
            let _ = conn.write_all(&pong);
        }
        at += len;
    }
    incoming.drain(..at);
}

// ---------------------------------------------------------------------------
// The clients.
// ---------------------------------------------------------------------------

/// One client thread's results.
struct ClientStats {
    hist: Histogram<u64>,
    delivered: u64,
    lost: u64,
    duplicates: u64,
    closed: u64,
    reads: u64,
    frames: u64,
}

/// One client connection.
struct Conn {
    stream: TcpStream,
    /// Bytes of a frame not yet complete.
    partial: Vec<u8>,
    /// Which k it got.
    seen: Vec<u64>,
    subscribed: bool,
    open: bool,
}

/// Connects `n` clients to `addr`, subscribes them to `prices` and records
/// what they receive until `state.stop`.
fn client_thread(addr: SocketAddr, n: usize, state: &RunState) -> ClientStats {
    // SAFETY: plain epoll_create1; the fd is closed at the end.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(epoll >= 0, "epoll_create1 failed");
    let words = (state.total as usize).div_ceil(64);
    let mut conns = Vec::with_capacity(n);
    let mut stats = ClientStats {
        hist: Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("histogram"),
        delivered: 0,
        lost: 0,
        duplicates: 0,
        closed: 0,
        reads: 0,
        frames: 0,
    };
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..n {
        let (stream, leftover) = connect_client(addr)
            .unwrap_or_else(|e| panic!("client {i} of this thread could not connect: {e}"));
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: registers a socket we own with our epoll fd.
        let added =
            unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, stream.as_raw_fd(), &mut ev) };
        assert_eq!(added, 0, "epoll_ctl failed");
        let mut conn = Conn {
            stream,
            partial: Vec::new(),
            seen: vec![0; words],
            subscribed: false,
            open: true,
        };
        if !leftover.is_empty() {
            on_bytes(&mut conn, &leftover, monotonic_ns(), state, &mut stats);
        }
        conns.push(conn);
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    while !state.stop.load(Ordering::Acquire) {
        // SAFETY: epoll_wait into a buffer of events.len() entries.
        let ready =
            unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, 20) };
        for ev in events.iter().take(ready.max(0) as usize) {
            let conn = &mut conns[ev.u64 as usize];
            if !conn.open {
                continue;
            }
            // SAFETY: read into our buffer; the socket is non-blocking.
            let got =
                unsafe { libc::read(conn.stream.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            let now = monotonic_ns();
            if got > 0 {
                stats.reads += 1;
                on_bytes(conn, &buf[..got as usize], now, state, &mut stats);
            } else if got == 0
                || std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock
            {
                conn.open = false;
                stats.closed += 1;
                // SAFETY: removes our own registration.
                unsafe {
                    libc::epoll_ctl(
                        epoll,
                        libc::EPOLL_CTL_DEL,
                        conn.stream.as_raw_fd(),
                        std::ptr::null_mut(),
                    )
                };
            }
        }
    }
    // SAFETY: our own fd.
    unsafe { libc::close(epoll) };
    for conn in &conns {
        let got: u64 = (state.warm..state.total)
            .filter(|&k| conn.seen[(k / 64) as usize] & (1 << (k % 64)) != 0)
            .count() as u64;
        stats.lost += (state.total - state.warm) - got;
    }
    stats
}

/// Handles bytes a client read at `now` (monotonic ns).
fn on_bytes(conn: &mut Conn, data: &[u8], now: u64, state: &RunState, stats: &mut ClientStats) {
    let mut fresh = 0;
    let mut take = |conn: &mut Conn, bytes: &[u8]| -> usize {
        let mut at = 0;
        while let Some((opcode, payload, len)) = parse_frame(&bytes[at..]) {
            at += len;
            match opcode {
                0x1 => {
                    stats.frames += 1;
                    if let Some((k, sent)) = tick_marks(&payload) {
                        if k >= state.total {
                            continue;
                        }
                        let (word, bit) = ((k / 64) as usize, 1u64 << (k % 64));
                        if conn.seen[word] & bit != 0 {
                            stats.duplicates += 1;
                            continue;
                        }
                        conn.seen[word] |= bit;
                        if k >= state.warm {
                            fresh += 1;
                            let us = (now.saturating_sub(sent) / 1000).clamp(1, HIST_MAX_US);
                            let _ = stats.hist.record(us);
                        }
                    } else if !conn.subscribed && contains(&payload, br#""type":"subscribed""#) {
                        conn.subscribed = true;
                        state.subscribed.fetch_add(1, Ordering::AcqRel);
                    }
                }
                0x8 => conn.open = false,
                0x9 => {
                    let mut pong = Vec::with_capacity(payload.len() + 6);
                    ws_header_op(&mut pong, 0xA, payload.len(), Some([1, 2, 3, 4]));
                    pong.extend(
                        payload
                            .iter()
                            .enumerate()
                            .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
                    );
                    let _ = (&conn.stream).write_all(&pong);
                }
                _ => {}
            }
        }
        at
    };
    if conn.partial.is_empty() {
        let used = take(conn, data);
        conn.partial.extend_from_slice(&data[used..]);
    } else {
        let mut bytes = std::mem::take(&mut conn.partial);
        bytes.extend_from_slice(data);
        let used = take(conn, &bytes);
        bytes.drain(..used);
        conn.partial = bytes;
    }
    if fresh > 0 {
        stats.delivered += fresh;
        state.received.fetch_add(fresh, Ordering::AcqRel);
    }
}

/// k (the bid) and the send instant (the volume) of a tick frame.
fn tick_marks(payload: &[u8]) -> Option<(u64, u64)> {
    if !payload.starts_with(br#"{"type":"tick""#) {
        return None;
    }
    let k = number_after(payload, br#""bid":""#)?;
    let sent = number_after(payload, br#""volume":""#)?;
    Some((k, sent))
}

fn number_after(hay: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(hay, key)? + key.len();
    let digits = hay[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut n = 0u64;
    let mut any = false;
    for d in digits {
        n = n * 10 + u64::from(d - b'0');
        any = true;
    }
    any.then_some(n)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// Opens a WebSocket to the relay and sends the subscribe; returns the
/// socket (non-blocking) and whatever came after the 101 head.
fn connect_client(addr: SocketAddr) -> std::io::Result<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(START_TIMEOUT))?;
    write!(
        s,
        "GET /ws?client=bench HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )?;
    let (head, rest) = read_head(&mut s)?;
    if !head.starts_with("HTTP/1.1 101") {
        return Err(std::io::Error::other(format!(
            "upgrade refused: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    let op = br#"{"op":"subscribe","channels":["prices"]}"#;
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = Vec::with_capacity(op.len() + 8);
    ws_header_op(&mut frame, 0x1, op.len(), Some(mask));
    frame.extend(op.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame)?;
    s.set_nonblocking(true)?;
    Ok((s, rest))
}

/// Reads an HTTP head; returns it and the bytes read past it.
fn read_head(s: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Ok((head, buf[end + 4..].to_vec()));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A complete frame at the start of `buf`: opcode, unmasked payload, length.
fn parse_frame(buf: &[u8]) -> Option<(u8, std::borrow::Cow<'_, [u8]>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let mask = if masked {
        let m: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(m)
    } else {
        None
    };
    let payload = buf.get(at..at + len)?;
    let payload = match mask {
        None => std::borrow::Cow::Borrowed(payload),
        Some(m) => payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ m[i % 4])
            .collect::<Vec<u8>>()
            .into(),
    };
    Some((opcode, payload, at + len))
}

/// A final text frame's header.
fn ws_header(out: &mut Vec<u8>, len: usize, mask: Option<[u8; 4]>) {
    ws_header_op(out, 0x1, len, mask);
}

fn ws_header_op(out: &mut Vec<u8>, opcode: u8, len: usize, mask: Option<[u8; 4]>) {
    out.push(0x80 | opcode);
    let bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(bit | len as u8);
    } else if len <= 0xffff {
        out.push(bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(m) = mask {
        out.extend_from_slice(&m);
    }
}

// ---------------------------------------------------------------------------
// The send() floor.
// ---------------------------------------------------------------------------

/// CPU per `send()` of a 200-byte frame to `load.clients` loopback sockets,
/// `load.rate` rounds a second, from a thread pinned like the relay, while
/// the load generator's threads read the other ends.
fn send_floor(plan: &Plan, load: Load) -> Sample {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let mut senders = Vec::with_capacity(load.clients);
    let mut readers = Vec::with_capacity(load.clients);
    for _ in 0..load.clients {
        let reader = TcpStream::connect(addr).expect("connect");
        let (sender, _) = listener.accept().expect("accept");
        sender.set_nodelay(true).expect("nodelay");
        reader.set_nonblocking(true).expect("nonblocking");
        senders.push(sender);
        readers.push(reader);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut drains = Vec::new();
    let mut readers = readers.into_iter();
    for share in shares(load.clients, plan.threads) {
        let mine: Vec<TcpStream> = readers.by_ref().take(share).collect();
        let stop = stop.clone();
        drains.push(thread::spawn(move || drain(&mine, &stop)));
    }
    let relay_cpus = plan.cpus.relay.clone();
    let rate = load.rate;
    let time = plan.floor_time;
    let (cpu_ns, sends) = thread::spawn(move || {
        if let Some(cpus) = &relay_cpus {
            pin_current_thread(cpus);
        }
        let mut frame = [b'x'; FLOOR_FRAME_BYTES];
        frame[0] = 0x81;
        frame[1] = (FLOOR_FRAME_BYTES - 2) as u8 & 0x7f;
        let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let started = Instant::now();
        let cpu_before = thread_cpu_ns();
        let mut sends = 0u64;
        let mut round = 0u32;
        while started.elapsed() < time {
            let due = started + period * round;
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            for s in &senders {
                // SAFETY: send from a buffer we own on a socket we own.
                let n = unsafe {
                    libc::send(
                        s.as_raw_fd(),
                        frame.as_ptr().cast(),
                        frame.len(),
                        libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                    )
                };
                if n == frame.len() as isize {
                    sends += 1;
                }
            }
            round += 1;
        }
        (thread_cpu_ns() - cpu_before, sends)
    })
    .join()
    .expect("the floor's sender");
    stop.store(true, Ordering::Release);
    for d in drains {
        let _ = d.join();
    }
    Sample {
        cpu_per_frame_us: (sends > 0).then(|| cpu_ns as f64 / 1000.0 / sends as f64),
        ..Sample::default()
    }
}

/// Reads and discards everything arriving on `sockets` until `stop`.
fn drain(sockets: &[TcpStream], stop: &AtomicBool) {
    // SAFETY: plain epoll_create1; closed below.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    for (i, s) in sockets.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: registers a socket we own.
        unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Acquire) {
        // SAFETY: epoll_wait into a buffer of events.len() entries.
        let ready =
            unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, 20) };
        for ev in events.iter().take(ready.max(0) as usize) {
            // SAFETY: read into our buffer from a non-blocking socket.
            unsafe {
                libc::read(
                    sockets[ev.u64 as usize].as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
        }
    }
    // SAFETY: our own fd.
    unsafe { libc::close(epoll) };
}

// ---------------------------------------------------------------------------
// The machine.
// ---------------------------------------------------------------------------

fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we pass.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of a process (all its threads, living and gone), seconds: the
/// utime + stime of `/proc/<pid>/stat`, read in ns through the process's
/// CPU clock instead of in 10 ms ticks; the ticks if that clock is refused.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    // What glibc's clock_getcpuclockid(pid) returns: the process's
    // CPUCLOCK_SCHED clock, (~pid << 3) | 2.
    let clock = ((!(pid as libc::clockid_t)) << 3) | 2;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we pass.
    if unsafe { libc::clock_gettime(clock, &mut ts) } == 0 {
        return Some(ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn own_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Busy time of all CPUs (everything but idle and iowait), seconds.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    let fields: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: f64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0.0) + fields.get(4).copied().unwrap_or(0.0);
    (total - idle) / clock_ticks()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

fn set_affinity(cpus: &[usize]) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn pin_current_thread(cpus: &[usize]) {
    set_affinity(cpus);
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".into(), |m| m.trim().to_owned());
    let mhz = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .map_or(String::new(), |m| format!(" at {} MHz", m.trim()));
    // Counted from cpuinfo: this process is pinned by now, so
    // available_parallelism would say 1.
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(String::new(), |kib| format!(", {} GiB RAM", kib >> 20));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or(String::new(), |k| format!(", Linux {}", k.trim()));
    format!("{model}{mhz}, {cpus} CPUs{mem}{kernel}")
}

/// Raises the soft open-file limit to the hard one: 1000 clients are 2000
/// sockets here (both ends of the floor's, too).
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

// ---------------------------------------------------------------------------
// Building and preparing.
// ---------------------------------------------------------------------------

/// A temp dir under `target/` for the journals: on the project's disk, never
/// a tmpfs. Removed on drop.
fn bench_root() -> tempfile::TempDir {
    let target = support::target_dir();
    std::fs::create_dir_all(&target).expect("create the target dir");
    tempfile::Builder::new()
        .prefix("bench-broadcast-")
        .tempdir_in(&target)
        .expect("create the bench dir under target/")
}

/// Whether `node` runs and the peer's `ws` is there or `npm` can get it.
fn node_installed() -> bool {
    let runs = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    runs("node") && (peer_dir().join("node_modules/ws").exists() || runs("npm"))
}

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer")
}

/// Checks node and npm, installs the peer's `ws` on first use, and returns
/// what the peer is (`node/v20 ws/8.23.0`).
fn prepare_node_peer() -> String {
    let dir = peer_dir();
    let version = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(node) = version("node") else {
        fail(
            "TABLO_BENCH_PEER=node needs Node.js: `node` was not found on PATH (Debian: apt install nodejs npm)",
        );
    };
    let ws_package = dir.join("node_modules/ws/package.json");
    if !ws_package.exists() {
        if version("npm").is_none() {
            fail(
                "TABLO_BENCH_PEER=node needs npm once, to install the `ws` package into benches/peer/node_modules: `npm` was not found on PATH (Debian: apt install npm)",
            );
        }
        eprintln!(
            "installing the peer's ws package (npm ci in {})",
            dir.display()
        );
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            fail(&format!(
                "`npm ci` in {} failed; the peer needs the ws package from the npm registry",
                dir.display()
            ));
        }
    }
    let ws = std::fs::read_to_string(&ws_package)
        .ok()
        .and_then(|text| {
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            v["version"].as_str().map(str::to_owned)
        })
        .unwrap_or_else(|| "?".into());
    format!("node/{node} ws/{ws} (benches/peer/relay.js)")
}
