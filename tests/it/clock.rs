//! The wall clock from the outside (docs/protocol.md §6.2, docs/durability.md
//! §10): its state in `/healthz`, `stats`, a `status` event and the
//! snapshot; and the real daemon under libfaketime, its wall clock stepping
//! 90 days forward, then 180 back, mid-run, while the monotonic clock runs on
//! (`FAKETIME_DONT_FAKE_MONOTONIC=1`): retention by `max_age` trims nothing
//! that is seconds old, event `ts` never goes back, and `/healthz` says how
//! far the labels run ahead of the clock.
//!
//! The libfaketime test needs Debian's `libfaketime` (.ci/run installs it);
//! without it the test says so and passes, except under `CI=true`, where it
//! fails.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use smol::Timer;

use crate::harness::{Client, Daemon, FakeUpstream, Sandbox};
use crate::relay::{binance_ticker, is_tick};

/// Where Debian's libfaketime package puts the library.
pub(crate) const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Whether [`LIBFAKETIME`] is installed; a test without it is skipped
/// (and says so), except under `CI=true`, where `.ci/run` installs it and
/// its absence fails the test.
pub(crate) fn libfaketime_is_there() -> bool {
    if Path::new(LIBFAKETIME).exists() {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "{LIBFAKETIME} is missing under CI=true; .ci/run installs it (apt-get install libfaketime)"
    );
    eprintln!("SKIPPED: {LIBFAKETIME} is missing (apt-get install libfaketime)");
    false
}

/// 90 days in ms.
const NINETY_DAYS_MS: u64 = 90 * 86_400_000;

/// How long a tick may take to become durable on a loaded machine.
const DURABLE_WITHIN: Duration = Duration::from_secs(10);

/// Points libfaketime at `offset` (such as `+90d`), atomically: the daemon
/// reads the file at every clock read (`FAKETIME_NO_CACHE=1`).
fn set_offset(file: &Path, offset: &str) {
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, format!("{offset}\n")).expect("write the faketime file");
    std::fs::rename(&tmp, file).expect("move the faketime file in place");
}

/// `/healthz`, parsed.
fn healthz(daemon: &Daemon) -> Value {
    let (status, body) = daemon.http_get("/healthz");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

/// Sends a tick at `price` and returns it as the client got it, once it is
/// durable.
async fn durable_tick(
    daemon: &Daemon,
    upstream: &FakeUpstream,
    client: &mut Client,
    price: &str,
) -> Value {
    upstream.send(&binance_ticker("BTCUSDT", price).to_string());
    let tick = client
        .recv_until(|f| is_tick(f) && f["price"] == price)
        .await;
    let seq = tick["seq"].as_f64().unwrap_or(f64::MAX);
    let deadline = Instant::now() + DURABLE_WITHIN;
    while daemon.metric("tablo_journal_durable_seq") < seq {
        assert!(Instant::now() < deadline, "{tick} never became durable");
        Timer::after(Duration::from_millis(10)).await;
    }
    tick
}

#[test]
fn clock_steps_of_90_days_trim_nothing_and_never_turn_ts_back() {
    if !libfaketime_is_there() {
        return;
    }
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let sandbox = Sandbox::new();
        let clock = sandbox.write("faketime", "+0\n");
        let config = format!(
            r#"
[journal]
flush_interval_ms = 20
max_age = "1h"

[[feed]]
name = "binance"
format = "binance"
url = "{}"
"#,
            upstream.url("/ws")
        );
        let daemon = Daemon::start_in_with(sandbox, Some(&config), &[], |cmd| {
            cmd.env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_TIMESTAMP_FILE", &clock)
                .env("FAKETIME_NO_CACHE", "1");
        });
        upstream.wait_connection().await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices"]).await;

        let mut ticks = Vec::new();
        for (phase, offset) in ["+0", "+90d", "-90d"].into_iter().enumerate() {
            set_offset(&clock, offset);
            for i in 0..3 {
                let tick =
                    durable_tick(&daemon, &upstream, &mut client, &format!("{phase}.{i}")).await;
                ticks.push(tick);
            }
        }
        // A commit, and the trim after it, at each clock: nothing trimmed.
        let health = healthz(&daemon);
        let journal = &health["journal"];
        assert_eq!(journal["trimmed_below"], 0, "{health}");
        assert_eq!(journal["first_seq"], 1, "{health}");

        let ts: Vec<u64> = ticks.iter().filter_map(|t| t["ts"].as_u64()).collect();
        assert!(
            ts.windows(2).all(|w| w[0] <= w[1]),
            "ts went back across the steps: {ts:?}"
        );
        // The forward step moved the labels; the step back did not.
        assert!(ts[3] >= ts[2] + NINETY_DAYS_MS - 60_000, "{ts:?}");
        assert!(ts[8] - ts[3] < 60_000, "{ts:?}");
        let ahead = health["clock"]["ts_ahead_ms"].as_u64().unwrap_or(0);
        assert!(
            ahead > 2 * NINETY_DAYS_MS - 60_000,
            "labels run ~180 days ahead of the stepped-back clock: {health}"
        );
    });
}

#[test]
fn the_clock_state_is_in_healthz_stats_the_snapshot_and_a_status_event() {
    smol::block_on(async {
        let daemon = Daemon::start(&[]);
        let mut client = daemon.bot().await;
        let stats = client.request(json!({"op": "stats"})).await;
        let state = stats["clock"]["state"].clone();
        assert!(
            ["synchronized", "unsynchronized", "unknown"].contains(&state.as_str().unwrap_or("")),
            "stats should say the clock's state: {stats}"
        );
        assert!(stats["clock"]["wall_ms"].as_u64() > Some(0), "{stats}");
        assert_eq!(healthz(&daemon)["clock"]["state"], state);
        let snapshot = client
            .request(json!({"op": "snapshot", "channels": ["status"]}))
            .await;
        let clock = snapshot["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e.get("clock").is_some())
            .unwrap_or_else(|| client.fail(&format!("no clock status in {snapshot}")))
            .clone();
        assert_eq!(clock["type"], "status", "{clock}");
        assert_eq!(clock["channel"], "status", "{clock}");
        assert_eq!(clock["clock"], state, "{clock}");
        assert!(clock.get("feed").is_none(), "{clock}");
        let synced = i32::from(state == "synchronized");
        assert_eq!(daemon.metric("tablo_clock_synchronized") as i32, synced);
    });
}
