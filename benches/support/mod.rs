//! What every bench needs: the daemon under test and a line about the
//! machine. Included with `mod support;` by each bench; not every bench
//! uses every item.

#![allow(dead_code, reason = "each bench uses what it needs")]

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod targets;

/// The daemon under test: `TABLO_BENCH_TABLO` when set (e.g. a build with
/// symbols for a profiler), else the release build, built now.
pub fn release_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("TABLO_BENCH_TABLO") {
        return PathBuf::from(bin);
    }
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--bin", "tablo"])
        .status()
        .expect("cargo build --release");
    assert!(status.success(), "release build failed");
    target_dir().join("release/tablo")
}

/// Cargo's target dir.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// `N cores, MODEL, Linux K`.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {model}, Linux {}", kernel.trim())
}
