//! The fuzz targets of `fuzz/targets.rs` on a short budget: CI's share of
//! what `cargo bench --bench fuzz` runs for an hour.
//!
//! Each target runs [`CI_CASES`] cases (`PROPTEST_CASES` overrides) from a
//! seed fixed per target, so a run is repeatable; `TABLO_FUZZ_SEED` picks
//! another seed (the bench prints the seed of a failing batch). A failure
//! names the smallest input proptest found.

#[path = "fuzz/targets.rs"]
mod targets;

use proptest::test_runner::TestRunner;

use crate::harness::{Daemon, Sandbox};
use targets::{Ctx, target};

/// Cases per target in CI: enough to cover each generator's branches, few
/// enough that every target together stays within seconds.
const CI_CASES: u32 = 256;

/// A runner for `name`'s cases: `TABLO_FUZZ_SEED` as the seed when set
/// (the bench prints the seed of each failing batch), else a seed fixed per
/// target, so adding a target does not change the others' cases.
fn runner(name: &str) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CI_CASES);
    let seed = std::env::var("TABLO_FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            name.bytes()
                .fold(0x7AB1_0F22, |h: u64, b| h.rotate_left(5) ^ u64::from(b))
        });
    targets::runner(seed, cases)
}

/// Runs the target `name`, with a daemon when it needs one.
#[track_caller]
fn fuzz(name: &str) {
    let target = target(name);
    let sandbox = Sandbox::new();
    let daemon = target.needs_daemon.then(|| Daemon::start(&[]));
    let ctx = Ctx {
        daemon: daemon.as_ref().map(Daemon::addr),
        dir: sandbox.path().to_path_buf(),
    };
    let mut runner = runner(name);
    let result = targets::on_big_stack(move || (target.run)(&ctx, &mut runner));
    if let Err(failure) = result {
        let log = daemon.as_ref().map(Daemon::stderr_tail).unwrap_or_default();
        panic!("fuzz target {name} failed: {failure}\n{log}");
    }
}

#[test]
fn decimal() {
    fuzz("decimal");
}

#[test]
fn protocol() {
    fuzz("protocol");
}

#[test]
fn subscriptions() {
    fuzz("subscriptions");
}

#[test]
fn feed_binance() {
    fuzz("feed-binance");
}

#[test]
fn feed_coinbase() {
    fuzz("feed-coinbase");
}

#[test]
fn feed_json() {
    fuzz("feed-json");
}

#[test]
fn feed_tablo() {
    fuzz("feed-tablo");
}

#[test]
fn http_query() {
    fuzz("http-query");
}

#[test]
fn http_head() {
    fuzz("http-head");
}

#[test]
fn config_text() {
    fuzz("config-text");
}

#[test]
fn config_valid() {
    fuzz("config-valid");
}

/// Every target has a test here.
#[test]
fn every_target_runs_in_ci() {
    let source = include_str!("fuzz.rs");
    for t in targets::TARGETS {
        assert!(
            source.contains(&format!("fuzz(\"{}\");", t.name)),
            "fuzz target {} has no test in tests/it/fuzz.rs",
            t.name
        );
    }
}
