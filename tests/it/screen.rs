//! The screen schedule through the real binary (docs/board.md §9): the
//! daemon on a framebuffer that is a plain file, in a fixed time zone
//! (`TZ`), its wall clock moved by libfaketime while the monotonic clock
//! runs on. The screen goes dark at closing time (the blank ioctl is tried
//! and, on a plain file, answered ENOTTY: a black frame, then nothing
//! drawn), wakes when the wall clock is stepped into the next day's hours,
//! and a critical alert wakes it outside them. A fake `cec-ctl` on `PATH`
//! records the HDMI-CEC commands; an unsynchronized clock keeps the
//! screen on.
//!
//! The clock state is set with `TABLO_TEST_CLOCK_STATE` (this machine's
//! own may be anything). The libfaketime test needs Debian's
//! `libfaketime` (.ci/run installs it); without it the test says so and
//! passes, except under `CI=true`, where it fails.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::clock::{LIBFAKETIME, libfaketime_is_there};
use crate::harness::{Daemon, Sandbox};

/// Iran's offset, with no daylight saving: a zone that is not UTC and has
/// a half hour, so a label in the wrong zone cannot pass.
const TZ: &str = "<+0330>-3:30";

/// How long a switch, a frame or a log line may take on a loaded machine.
const WITHIN: Duration = Duration::from_secs(15);

/// The frame size of the fake framebuffer (32 bpp).
const SIZE: (usize, usize) = (320, 240);

/// Wall time `local` (`2026-12-11T12:00:00`) in [`TZ`], in seconds since
/// the epoch.
fn local_secs(local: &str) -> f64 {
    let dt: jiff::civil::DateTime = local.parse().unwrap();
    let zone = jiff::tz::TimeZone::posix(TZ).unwrap();
    let at = zone.to_ambiguous_timestamp(dt).compatible().unwrap();
    at.as_millisecond() as f64 / 1000.0
}

/// Moves the daemon's wall clock to `local` (in [`TZ`]) from now on:
/// libfaketime reads the offset in `file` at every clock read.
fn set_clock(file: &Path, local: &str) {
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, format!("{:+.3}\n", local_secs(local) - real)).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// `/healthz`'s `screen`.
fn screen(daemon: &Daemon) -> Value {
    let (status, body) = daemon.http_get("/healthz");
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    health["screen"].clone()
}

/// Frames drawn so far, whole and strips.
fn frames(daemon: &Daemon, mode: &str) -> f64 {
    ["full", "strips"]
        .iter()
        .map(|kind| {
            daemon.metric(&format!(
                "tablo_render_frames_total{{mode=\"{mode}\",kind=\"{kind}\"}}"
            ))
        })
        .sum()
}

/// Polls `ok` until it holds or [`WITHIN`] passes.
#[track_caller]
fn await_true(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WITHIN;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {WITHIN:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Distinct pixel values in the framebuffer file: 1 when it is all black
/// (or one colour), many when a board is drawn.
fn colours(fb: &Path) -> usize {
    let bytes = std::fs::read(fb).unwrap_or_default();
    let mut pixels: Vec<&[u8]> = bytes.chunks(4).collect();
    pixels.sort_unstable();
    pixels.dedup();
    pixels.len()
}

fn all_black(fb: &Path) -> bool {
    let bytes = std::fs::read(fb).unwrap_or_default();
    bytes.len() == SIZE.0 * SIZE.1 * 4 && bytes.iter().all(|b| *b == 0)
}

/// Publishes a critical alert as the publisher `pub`.
fn publish_critical(daemon: &Daemon, text: &str) {
    smol::block_on(async {
        let mut client = daemon.ws("/ws?token=pub&client=bot").await;
        let data = json!({"level": "critical", "text": text});
        let ack = client
            .request(json!({"op": "publish", "channel": "alerts", "data": data, "id": 1}))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
    });
}

#[test]
fn the_screen_goes_dark_at_closing_time_and_wakes_on_the_next_days_hours() {
    if !libfaketime_is_there() {
        return;
    }
    let sandbox = Sandbox::new();
    let fb = sandbox.write("fb0", "");
    let clock = sandbox.write("faketime", "+0\n");
    // 2026-12-11 is a Friday.
    set_clock(&clock, "2026-12-11T12:00:00");
    let config = format!(
        r#"
[server]
tokens = [{{ token = "pub", publish = true }}]

[display]
device = "{}"
width = {}
height = {}
schedule = ["Mon-Fri 08:00-20:00", "Sat 09:00-14:00"]
wake_on = "critical"
"#,
        fb.display(),
        SIZE.0,
        SIZE.1
    );
    let daemon = Daemon::start_in_with(sandbox, Some(&config), &["--display", "fbdev"], |cmd| {
        cmd.env("TZ", TZ)
            .env("TABLO_TEST_CLOCK_STATE", "synchronized")
            .env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env("FAKETIME_TIMESTAMP_FILE", &clock)
            .env("FAKETIME_NO_CACHE", "1");
    });
    daemon.wait_stderr(
        "screen on (in the schedule's hours); next change at 2026-12-11T20:00:00+03:30",
        WITHIN,
    );
    await_true("a board in the framebuffer", || colours(&fb) > 20);
    assert_eq!(daemon.metric("tablo_screen_on"), 1.0);

    // Two seconds before closing: the step is seen, and the screen goes
    // dark at 20:00 by its monotonic deadline.
    set_clock(&clock, "2026-12-11T19:59:58");
    daemon.wait_stderr(
        "screen off (outside the schedule's hours); next change at 2026-12-12T09:00:00+03:30",
        WITHIN,
    );
    // The blank ioctl was tried: a plain file answers ENOTTY.
    daemon.wait_stderr("cannot blank", WITHIN);
    await_true("a black framebuffer", || all_black(&fb));
    let dark = screen(&daemon);
    assert_eq!(dark["on"], false, "{dark}");
    assert_eq!(dark["reason"], "schedule", "{dark}");
    assert_eq!(dark["off"], "black_frame", "{dark}");
    assert_eq!(dark["next_change"], "2026-12-12T09:00:00+03:30", "{dark}");
    let in_s = dark["next_change_in_s"].as_u64().unwrap_or(0);
    assert!((46_000..=46_800).contains(&in_s), "13 h to go: {dark}");
    assert_eq!(daemon.metric("tablo_screen_on"), 0.0);

    // Dark means nothing drawn: not the clock's second, not the demo's
    // prices.
    let drawn = frames(&daemon, "fbdev");
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(frames(&daemon, "fbdev"), drawn, "frames drawn while dark");
    assert!(all_black(&fb), "the framebuffer was written while dark");

    // Stepped to just before Saturday's opening: it wakes at 09:00 with a
    // whole frame of current prices.
    set_clock(&clock, "2026-12-12T08:59:58");
    daemon.wait_stderr(
        "screen on (in the schedule's hours); next change at 2026-12-12T14:00:00+03:30",
        WITHIN,
    );
    await_true("the board back in the framebuffer", || colours(&fb) > 20);
    assert!(frames(&daemon, "fbdev") > drawn);
    assert_eq!(screen(&daemon)["on"], true);

    // Saturday closes at 14:00; a critical alert then wakes the screen.
    set_clock(&clock, "2026-12-12T13:59:59");
    daemon.wait_stderr(
        "screen off (outside the schedule's hours); next change at 2026-12-14T08:00:00+03:30",
        WITHIN,
    );
    await_true("a black framebuffer again", || all_black(&fb));
    publish_critical(&daemon, "Market halted");
    daemon.wait_stderr("screen on (a critical alert is on the band)", WITHIN);
    await_true("the board with its alert", || colours(&fb) > 20);
    let woken = screen(&daemon);
    assert_eq!(
        (woken["on"].clone(), woken["reason"].clone()),
        (json!(true), json!("alert"))
    );
    assert_eq!(daemon.metric("tablo_screen_switches_total"), 4.0);
    daemon.sigterm();
    let stopped = daemon.into_stopped(Duration::from_secs(10));
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
}

/// A program `name` that appends its arguments to `name.log` beside it;
/// returns the log's path.
fn fake_program(dir: &Path, name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let file = dir.join(name);
    let log = dir.join(format!("{name}.log"));
    let script = format!("#!/bin/sh\necho \"$*\" >> '{}'\n", log.display());
    std::fs::write(&file, script).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    log
}

/// `PATH` with `dir` first.
fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Hours that are not now, whatever the real time: one minute on the
/// weekday three days from today.
fn hours_not_now() -> String {
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let today = jiff::tz::TimeZone::posix(TZ)
        .unwrap()
        .to_datetime(jiff::Timestamp::now())
        .weekday()
        .to_monday_zero_offset() as usize;
    format!("{} 03:00-03:01", days[(today + 3) % 7])
}

#[test]
fn cec_switches_the_tv_and_an_unsynchronized_clock_keeps_the_screen_on() {
    let bin = Sandbox::new();
    let calls = fake_program(bin.path(), "cec-ctl");
    let path = path_with(bin.path());
    let config = format!(
        "[server]\ntokens = [{{ token = \"pub\", publish = true }}]\n\n\
         [display]\nwidth = 320\nheight = 240\nschedule = [\"{}\"]\noff = \"cec\"\nwake_on = \"critical\"\n",
        hours_not_now()
    );
    let start = |state: &'static str| {
        let path = path.clone();
        Daemon::start_in_with(
            Sandbox::new(),
            Some(&config),
            &["--display", "png"],
            move |cmd| {
                cmd.env("TZ", TZ)
                    .env("PATH", &path)
                    .env("TABLO_TEST_CLOCK_STATE", state);
            },
        )
    };
    let calls_now = || std::fs::read_to_string(&calls).unwrap_or_default();

    // Outside the hours at start: the TV goes to standby.
    let daemon = start("synchronized");
    daemon.wait_stderr("screen off (outside the schedule's hours)", WITHIN);
    await_true("cec-ctl --standby", || {
        calls_now().lines().last() == Some("--playback --to 0 --standby")
    });
    let dark = screen(&daemon);
    assert_eq!(
        (dark["on"].clone(), dark["off"].clone()),
        (json!(false), json!("cec")),
        "{dark}"
    );
    let stats = smol::block_on(async {
        let mut client = daemon.bot().await;
        client.request(json!({"op": "stats"})).await
    });
    assert_eq!(stats["screen"]["on"], false, "{stats}");
    assert_eq!(stats["screen"]["reason"], "schedule", "{stats}");
    // A critical alert wakes it.
    publish_critical(&daemon, "Fire drill");
    await_true("cec-ctl --image-view-on", || {
        calls_now().lines().last() == Some("--playback --to 0 --image-view-on")
    });
    assert_eq!(screen(&daemon)["reason"], "alert");
    daemon.sigterm();
    assert_eq!(daemon.into_stopped(WITHIN).status.code(), Some(0));

    // An unsynchronized clock cannot tell the hours: the screen stays on,
    // and the TV the last run left in standby is switched on.
    std::fs::remove_file(&calls).unwrap();
    let daemon = start("unsynchronized");
    daemon.wait_stderr(
        "screen on (the wall clock is not synchronized, so the hours cannot be told)",
        WITHIN,
    );
    let on = screen(&daemon);
    assert_eq!(
        (
            on["on"].clone(),
            on["reason"].clone(),
            on["next_change"].clone()
        ),
        (json!(true), json!("clock_unsynchronized"), Value::Null),
        "{on}"
    );
    assert_eq!(daemon.metric("tablo_screen_on"), 1.0);
    await_true("cec-ctl --image-view-on at start", || {
        calls_now().lines().collect::<Vec<_>>() == ["--playback --to 0 --image-view-on"]
    });
    daemon.sigterm();
    assert_eq!(daemon.into_stopped(WITHIN).status.code(), Some(0));
}

#[test]
fn dpms_puts_the_x_screen_to_sleep_after_a_black_frame() {
    let x = crate::display::Xvfb::start(320, 240);
    let bin = Sandbox::new();
    let calls = fake_program(bin.path(), "xset");
    let config = format!(
        "[display]\nwidth = 320\nheight = 240\nschedule = [\"{}\"]\noff = \"dpms\"\n",
        hours_not_now()
    );
    let daemon = Daemon::start_in_with(
        Sandbox::new(),
        Some(&config),
        &["--display", "window"],
        |cmd| {
            cmd.env("TZ", TZ)
                .env("DISPLAY", &x.display)
                .env("PATH", path_with(bin.path()))
                .env("TABLO_TEST_CLOCK_STATE", "synchronized");
        },
    );
    daemon.wait_stderr("screen off (outside the schedule's hours)", WITHIN);
    await_true("xset dpms force off", || {
        std::fs::read_to_string(&calls).is_ok_and(|c| c.lines().last() == Some("dpms force off"))
    });
    // The window is black: no stale prices if the display ignores DPMS.
    await_true("a black window", || {
        crate::display::screen(&x.display)
            .pixels
            .iter()
            .all(|p| *p == 0)
    });
    assert_eq!(screen(&daemon)["off"], "dpms");
    daemon.sigterm();
    assert_eq!(daemon.into_stopped(WITHIN).status.code(), Some(0));
}
