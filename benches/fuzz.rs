//! `cargo bench --bench fuzz`: every fuzz target of `tests/it/fuzz/targets.rs`
//! (the same strategies and properties CI runs on a short budget) for an
//! hour, and a table of cases run and failures per target.
//!
//! The budget is split evenly between the targets. Each target runs in
//! batches of [`BATCH`] cases, every batch from a new seed, until its share
//! is spent; a failing batch counts one failure and prints the smallest
//! input proptest shrank it to, with the seed that reproduces it
//! (the line says how to run the CI test from that seed). The `http-head` target
//! talks to the release daemon on 127.0.0.1, which must still answer
//! `/healthz` at the end.
//!
//! Settings: `TABLO_FUZZ_SECS` (default 3600; `TABLO_BENCH_QUICK=1` makes it
//! 22), `TABLO_FUZZ_TARGETS` (comma-separated names, default all),
//! `TABLO_FUZZ_SEED` (the first batch's seed; default from the clock).
//! Exits 1 when anything failed.

#[allow(dead_code, reason = "the bench uses the harness's daemon only")]
#[path = "../tests/it/harness.rs"]
mod harness;
mod support;
#[allow(dead_code, reason = "shared with tests/it/fuzz.rs")]
#[path = "../tests/it/fuzz/targets.rs"]
mod targets;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::{Daemon, Sandbox};
use targets::{CASES, Ctx, TARGETS, Target};

/// Cases per batch: small enough that a target's share of the budget is
/// kept to within a second or so, large enough that starting a batch costs
/// nothing.
const BATCH: u32 = 256;

/// The budget without settings: an hour.
const DEFAULT_SECS: u64 = 3600;

/// The budget of `TABLO_BENCH_QUICK=1`: two seconds a target.
const QUICK_SECS: u64 = 22;

/// How many failures of one target are printed in full.
const SHOWN_FAILURES: usize = 3;

/// What one target did.
struct Outcome {
    name: &'static str,
    cases: u64,
    batches: u64,
    failures: Vec<(u64, String)>,
    elapsed: Duration,
}

fn main() {
    let quick = std::env::var_os("TABLO_BENCH_QUICK").is_some();
    let secs = env_u64("TABLO_FUZZ_SECS").unwrap_or(if quick { QUICK_SECS } else { DEFAULT_SECS });
    let chosen: Option<Vec<String>> = std::env::var("TABLO_FUZZ_TARGETS")
        .ok()
        .map(|list| list.split(',').map(|s| s.trim().to_owned()).collect());
    let targets: Vec<&'static Target> = TARGETS
        .iter()
        .filter(|t| {
            chosen
                .as_ref()
                .is_none_or(|c| c.iter().any(|n| n == t.name))
        })
        .collect();
    if targets.is_empty() {
        let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        eprintln!(
            "TABLO_FUZZ_TARGETS names no target; the targets are {}",
            names.join(", ")
        );
        std::process::exit(64);
    }
    let first_seed = env_u64("TABLO_FUZZ_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let share = Duration::from_secs(secs) / u32::try_from(targets.len()).unwrap_or(1);
    println!(
        "fuzz: {} targets, {secs} s in all ({share:.1?} each), first seed {first_seed}",
        targets.len()
    );
    println!("machine: {}", support::machine());

    let sandbox = Sandbox::new();
    let daemon = targets
        .iter()
        .any(|t| t.needs_daemon)
        .then(|| Daemon::start(&[]));
    let mut outcomes = Vec::new();
    let mut seed = first_seed;
    for target in targets {
        let ctx = Ctx {
            daemon: daemon.as_ref().map(Daemon::addr),
            dir: sandbox.path().to_path_buf(),
        };
        let outcome = targets::on_big_stack(move || fuzz(target, &ctx, share, seed));
        seed += outcome.batches;
        print_outcome(&outcome);
        outcomes.push(outcome);
    }

    println!();
    println!(
        "{:<16} {:>12} {:>9} {:>9} {:>8}",
        "target", "cases", "cases/s", "failures", "seconds"
    );
    for o in &outcomes {
        let rate = o.cases as f64 / o.elapsed.as_secs_f64().max(1e-9);
        println!(
            "{:<16} {:>12} {:>9.0} {:>9} {:>8.1}",
            o.name,
            o.cases,
            rate,
            o.failures.len(),
            o.elapsed.as_secs_f64()
        );
    }
    let failures: usize = outcomes.iter().map(|o| o.failures.len()).sum();
    let cases: u64 = outcomes.iter().map(|o| o.cases).sum();
    let mut alive = true;
    if let Some(daemon) = &daemon {
        let (status, _) = daemon.http_get("/healthz");
        alive = status == 200;
        println!("daemon after the http-head target: /healthz {status}");
    }
    println!("total: {cases} cases, {failures} failures");
    if failures > 0 || !alive {
        std::process::exit(1);
    }
}

/// Runs `target` in batches until `share` is spent.
fn fuzz(target: &'static Target, ctx: &Ctx, share: Duration, first_seed: u64) -> Outcome {
    let start = Instant::now();
    let before = CASES.load(Ordering::Relaxed);
    let mut failures = Vec::new();
    let mut batches = 0;
    while batches == 0 || start.elapsed() < share {
        let seed = first_seed + batches;
        batches += 1;
        if let Err(failure) = (target.run)(ctx, &mut targets::runner(seed, BATCH)) {
            failures.push((seed, failure));
        }
    }
    Outcome {
        name: target.name,
        cases: CASES.load(Ordering::Relaxed) - before,
        batches,
        failures,
        elapsed: start.elapsed(),
    }
}

fn print_outcome(o: &Outcome) {
    println!(
        "{}: {} cases in {} batches, {} failures, {:.1} s",
        o.name,
        o.cases,
        o.batches,
        o.failures.len(),
        o.elapsed.as_secs_f64()
    );
    for (seed, failure) in o.failures.iter().take(SHOWN_FAILURES) {
        let test = o.name.replace('-', "_");
        println!(
            "  failure (again: TABLO_FUZZ_SEED={seed} PROPTEST_CASES={BATCH} cargo test --test it fuzz::{test}): {failure}"
        );
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!("{name}={value:?} is not a whole number");
            std::process::exit(64);
        }
    }
}
