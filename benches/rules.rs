//! What the `[[alert]]` rules cost the hub per event (issue 12).
//!
//! In process, no I/O: a stream of Binance-like ticks over 20 symbols on a
//! random walk (decimal strings with 2 decimals), each given to
//! `Rules::on_event` as the hub does after numbering it. Measured in the same
//! run, per event:
//!
//! - the hub's own fixed work per event that does not depend on rules:
//!   serializing it once (`Event::to_json`), the baseline;
//! - no rules: the hub holds no engine at all then, so the cost is zero by
//!   construction; shown as the baseline alone;
//! - a board's worth of rules (an above and a below line per row for 4
//!   rows, a move and a drop rule on every symbol, a stale rule on the
//!   feed: 11 rules);
//! - the most rules a config may hold (64: above/below lines on every
//!   symbol, moves and drops with windows);
//! - `Rules::due`, which the hub asks on every turn of its loop.
//!
//! Each figure is the median of 7 rounds of 200,000 events. Run with
//! `cargo bench --bench rules`; `TABLO_BENCH_QUICK=1` for a smoke run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tablo::config::{Config, Overrides};
use tablo::event::{Body, Event, Tick};
use tablo::rules::Rules;

/// Symbols in the stream.
const SYMBOLS: usize = 20;

/// Events per round.
const EVENTS: usize = 200_000;

/// Rounds per figure; the median is shown.
const ROUNDS: usize = 7;

fn quick() -> bool {
    std::env::var_os("TABLO_BENCH_QUICK").is_some()
}

fn symbol(i: usize) -> String {
    format!("SYM{i:02}USDT")
}

/// A config of `rules` (TOML) over a feed named `spot`.
fn config(rules: &str) -> Config {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("tablo.toml");
    let text = format!("[[feed]]\nname = \"spot\"\nformat = \"demo\"\n\n{rules}");
    std::fs::write(&path, text).expect("write the config");
    Config::load(Some(&path), &Overrides::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// 11 rules: what a board might have.
fn board_rules() -> String {
    let mut out = String::new();
    for i in 0..4 {
        let s = symbol(i);
        out.push_str(&format!(
            "[[alert]]\nkind = \"above\"\nsymbol = \"{s}\"\nprice = \"1100\"\nhysteresis = \"0.5%\"\n\n[[alert]]\nkind = \"below\"\nsymbol = \"{s}\"\nprice = \"900\"\nhysteresis = \"5\"\n\n"
        ));
    }
    out.push_str(
        "[[alert]]\nkind = \"move\"\nsymbol = \"*\"\npercent = \"2\"\nwindow = \"5m\"\n\n",
    );
    out.push_str("[[alert]]\nkind = \"drop\"\nsymbol = \"*\"\npercent = \"3\"\n\n");
    out.push_str("[[alert]]\nkind = \"stale\"\nfeed = \"spot\"\nafter = \"2m\"\n\n");
    out
}

/// 64 rules, the most a config may hold.
fn max_rules() -> String {
    let mut out = String::new();
    for i in 0..SYMBOLS {
        let s = symbol(i);
        out.push_str(&format!(
            "[[alert]]\nkind = \"above\"\nsymbol = \"{s}\"\nprice = \"1100\"\n\n[[alert]]\nkind = \"below\"\nsymbol = \"{s}\"\nprice = \"900\"\n\n"
        ));
    }
    for i in 0..12 {
        out.push_str(&format!(
            "[[alert]]\nkind = \"move\"\nsymbol = \"*\"\npercent = \"{}\"\nwindow = \"{}m\"\n\n[[alert]]\nkind = \"drop\"\nsymbol = \"*\"\npercent = \"{}\"\nwindow = \"{}m\"\n\n",
            2 + i,
            1 + i,
            3 + i,
            1 + i
        ));
    }
    out
}

/// The tick stream: a random walk around 1000 per symbol, 2 decimals.
fn events(n: usize) -> Vec<Event> {
    let mut prices = [100_000i64; SYMBOLS];
    let mut rng = fastrand::Rng::with_seed(12);
    (0..n)
        .map(|k| {
            let i = k % SYMBOLS;
            prices[i] = (prices[i] + rng.i64(-150..=150)).clamp(80_000, 120_000);
            let p = prices[i];
            Event {
                seq: k as u64 + 1,
                ts: 1_700_000_000_000 + k as u64,
                body: Body::Tick(Tick {
                    symbol: symbol(i),
                    price: format!("{}.{:02}", p / 100, p % 100),
                    source: "spot".into(),
                    ..Tick::default()
                }),
            }
        })
        .collect()
}

/// Median ns per event of `round` over `events`, run [`ROUNDS`] times.
fn per_event(events: &[Event], mut round: impl FnMut(&[Event]) -> u64) -> f64 {
    let rounds = if quick() { 2 } else { ROUNDS };
    let mut figures: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            black_box(round(events));
            start.elapsed().as_nanos() as f64 / events.len() as f64
        })
        .collect();
    figures.sort_by(f64::total_cmp);
    figures[figures.len() / 2]
}

/// ns per event of the rules in `config`, fed as the hub feeds them: 1 ms
/// of (monotonic) time between events, so windows fill and slide.
fn rules_cost(config: &Config, events: &[Event]) -> (f64, usize) {
    let t0 = Instant::now();
    let mut fired = 0;
    let ns = per_event(events, |events| {
        let mut rules = Rules::new(config, t0);
        let mut n = 0u64;
        for (k, event) in events.iter().enumerate() {
            let now = t0 + Duration::from_millis(k as u64);
            let alerts = rules.on_event(event, Some("spot"), now, event.ts);
            n += alerts.len() as u64;
            if rules.has_saves() {
                black_box(rules.take_saves(event.ts));
            }
        }
        fired = n as usize;
        n
    });
    (ns, fired)
}

fn main() {
    let n = if quick() { 20_000 } else { EVENTS };
    let events = events(n);
    let serialize = per_event(&events, |events| {
        events.iter().map(|e| e.to_json().len() as u64).sum()
    });
    let board = config(&board_rules());
    let max = config(&max_rules());
    let (board_ns, board_fired) = rules_cost(&board, &events);
    let (max_ns, max_fired) = rules_cost(&max, &events);
    let rules = Rules::new(&board, Instant::now());
    let now = Instant::now();
    let due = per_event(&events, |events| {
        events.iter().filter(|_| rules.due(black_box(now))).count() as u64
    });

    println!("alert rules, per event ({n} ticks over {SYMBOLS} symbols, median of rounds)");
    println!("{:<44} {:>10} {:>14}", "", "ns/event", "× to_json");
    let row = |label: &str, ns: f64| {
        println!("{label:<44} {ns:>10.0} {:>14.2}", ns / serialize);
    };
    row("baseline: serialize the event once", serialize);
    row("no rules (the hub holds no engine)", 0.0);
    row(
        &format!("11 rules, a board's worth ({board_fired} fired)"),
        board_ns,
    );
    row(
        &format!("64 rules, the most allowed ({max_fired} fired)"),
        max_ns,
    );
    row("Rules::due, once per hub turn", due);
}
