//! `tablo journal stats | tail | export` and the `/journal/*` endpoints
//! (docs/config.md §13, §14; docs/durability.md §4, §14;
//! docs/protocol.md §19.3, §19.4): what they print matches what clients were
//! sent, byte for byte, whether the daemon is stopped (the journal's files are
//! read) or running (it holds the journal's lock and is asked over HTTP); a
//! crash shows as a `gap` record; reading a stopped journal changes nothing; a
//! closed pipe is a quiet exit 0; no journal is exit 74.
//!
//! Something is known to be durable once `/metrics` says
//! `tablo_journal_durable_seq` has reached it; nothing here sleeps.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use smol::Timer;

use tablo::journal::LEASE_MIN;

use crate::harness::{Client, Daemon, FakeUpstream, Output, Sandbox};
use crate::relay::binance_ticker;

/// sysexits EX_IOERR: no journal, or it cannot be read (docs/config.md §14).
const EX_IOERR: i32 = 74;

/// sysexits EX_USAGE.
const EX_USAGE: i32 = 64;

/// docs/config.md §14: SIGTERM stops the daemon within 2 s.
const STOP_WITHIN: Duration = Duration::from_secs(2);

/// How long a SIGKILLed daemon may take to be reaped.
const KILL_WITHIN: Duration = Duration::from_secs(2);

/// How long an event may take to become durable, on a loaded machine.
const DURABLE_WITHIN: Duration = Duration::from_secs(5);

/// How often `/metrics` is asked whether a seq is durable yet.
const DURABLE_POLL: Duration = Duration::from_millis(10);

/// A config with one Binance feed reading `upstream` and a short commit
/// interval, so waiting for durability is quick.
fn config(upstream: &FakeUpstream) -> String {
    format!(
        r#"
[journal]
flush_interval_ms = 20

[[feed]]
name = "binance"
format = "binance"
url = "{}"
"#,
        upstream.url("/ws")
    )
}

/// Starts a daemon in `sandbox` and waits until it has connected to
/// `upstream`.
async fn start(sandbox: Sandbox, config: &str, upstream: &FakeUpstream) -> Daemon {
    let daemon = Daemon::start_in(sandbox, Some(config), &[]);
    upstream.wait_connection().await;
    daemon
}

/// A client of `daemon` subscribed to everything from seq 0 on: it gets
/// every journaled event (replayed) and then every live one, in order.
async fn witness(daemon: &Daemon) -> Client {
    let mut client = daemon.bot().await;
    client
        .send_json(json!({"op": "subscribe", "channels": ["*"], "since": 0}))
        .await;
    let reply = client.recv_json().await;
    if reply["type"] != "subscribed" {
        client.fail(&format!("expected subscribed, got {reply}"));
    }
    client
}

/// Sends `count` Binance tickers through `upstream`, prices `{tag}.{i}`,
/// and returns every event `client` receives up to the last of them,
/// exactly as sent.
async fn ticks(
    upstream: &FakeUpstream,
    client: &mut Client,
    tag: &str,
    count: usize,
) -> Vec<String> {
    let price = |i: usize| format!("{tag}.{i:04}");
    for i in 0..count {
        upstream.send(&binance_ticker("BTCUSDT", &price(i)).to_string());
    }
    let last = price(count - 1);
    let mut events = Vec::new();
    loop {
        let text = client.recv_text().await;
        let frame: Value = serde_json::from_str(&text).expect("a JSON frame");
        assert!(
            frame["seq"].is_u64() && frame["type"] != "subscribed",
            "expected only events, got {text}"
        );
        events.push(text);
        if frame["type"] == "tick" && frame["price"] == last.as_str() {
            return events;
        }
    }
}

/// The seq of an event line.
#[track_caller]
fn seq_of(line: &str) -> u64 {
    let value: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    value["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq in {line}"))
}

/// Waits until `/metrics` says every seq up to `seq` is on stable storage.
async fn wait_durable(daemon: &Daemon, seq: u64) {
    let deadline = Instant::now() + DURABLE_WITHIN;
    loop {
        let durable = daemon.metric("tablo_journal_durable_seq") as u64;
        if durable >= seq {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "seq {seq} was not durable within {DURABLE_WITHIN:?} (durable: {durable})\n{}",
            daemon.stderr()
        );
        Timer::after(DURABLE_POLL).await;
    }
}

/// Waits until `/journal/stats` counts every event up to `seq` (the
/// writer publishes its counters after each commit) and returns it.
async fn wait_stats(daemon: &Daemon, seq: u64) -> Value {
    let deadline = Instant::now() + DURABLE_WITHIN;
    loop {
        let (status, body) = daemon.http_get("/journal/stats");
        assert_eq!(status, 200, "GET /journal/stats: {body}");
        let stats: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
        if stats["last_seq"].as_u64() >= Some(seq) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "/journal/stats did not reach seq {seq} within {DURABLE_WITHIN:?}: {stats}"
        );
        Timer::after(DURABLE_POLL).await;
    }
}

/// Stops `daemon` with SIGTERM, checks that it exited 0, and hands back its
/// sandbox.
fn stop_cleanly(daemon: Daemon) -> Sandbox {
    daemon.sigterm();
    let stopped = daemon.into_stopped(STOP_WITHIN);
    assert_eq!(
        stopped.status.code(),
        Some(0),
        "SIGTERM should stop tablo with 0; stderr:\n{}",
        stopped.stderr
    );
    stopped.sandbox
}

/// `tablo journal ARGS --data-dir DATA_DIR`, run from `sandbox`; fails
/// unless it exits 0.
#[track_caller]
fn journal(sandbox: &Sandbox, data_dir: &Path, args: &[&str]) -> Output {
    let out = journal_any(sandbox, data_dir, args);
    out.assert_code(0);
    out
}

/// `tablo journal ARGS --data-dir DATA_DIR`, however it exits.
fn journal_any(sandbox: &Sandbox, data_dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["journal"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data-dir", path_str(data_dir)]);
    sandbox.tablo(&all)
}

/// The lines of a command's stdout; fails if it does not end with a
/// newline.
#[track_caller]
fn lines(out: &Output) -> Vec<String> {
    assert!(
        out.stdout.is_empty() || out.stdout.ends_with('\n'),
        "the output should end with a newline\n{out}"
    );
    out.stdout.lines().map(str::to_owned).collect()
}

/// The one JSON object `stats` printed.
#[track_caller]
fn stats(out: &Output) -> Value {
    let lines = lines(out);
    assert_eq!(lines.len(), 1, "stats prints one line\n{out}");
    serde_json::from_str(&lines[0]).unwrap_or_else(|e| panic!("stats is not JSON ({e})\n{out}"))
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Checks `stats`, `tail -n 3`, `export` and `export --since` on the
/// journal in `data_dir` against `events` (every event, as sent) and
/// `epoch`; returns the stats.
#[track_caller]
fn check_journal(sandbox: &Sandbox, data_dir: &Path, events: &[String], epoch: &str) -> Value {
    let exported = lines(&journal(sandbox, data_dir, &["export"]));
    assert_eq!(
        exported, events,
        "export prints every event as sent, in order"
    );

    let tail = lines(&journal(sandbox, data_dir, &["tail", "-n", "3"]));
    assert_eq!(tail, events[events.len() - 3..], "tail -n 3: the newest 3");
    let default_tail = lines(&journal(sandbox, data_dir, &["tail"]));
    let from = events.len().saturating_sub(20);
    assert_eq!(default_tail, events[from..], "tail: the newest 20");

    let since = seq_of(&events[4]);
    let after = lines(&journal(
        sandbox,
        data_dir,
        &["export", "--since", &since.to_string()],
    ));
    assert_eq!(after, events[5..], "export --since {since}");
    let last = seq_of(&events[events.len() - 1]);
    let none = journal(sandbox, data_dir, &["export", "--since", &last.to_string()]);
    assert_eq!(none.stdout, "", "nothing after the last seq\n{none}");

    let stats = stats(&journal(sandbox, data_dir, &["stats"]));
    let bytes: usize = events.iter().map(String::len).sum();
    assert_eq!(stats["epoch"], epoch, "{stats}");
    assert_eq!(stats["events"], events.len() as u64, "{stats}");
    assert_eq!(stats["bytes"], bytes as u64, "{stats}");
    assert_eq!(stats["first_seq"], seq_of(&events[0]), "{stats}");
    assert_eq!(stats["last_seq"], last, "{stats}");
    assert!(stats["disk_bytes"].as_u64() > Some(bytes as u64), "{stats}");
    stats
}

#[test]
fn journal_commands_print_what_clients_got_with_the_daemon_running_or_stopped() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let daemon = start(Sandbox::new(), &config(&upstream), &upstream).await;
        let data_dir = daemon.data_dir();
        let mut client = witness(&daemon).await;
        let epoch = client.hello["epoch"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let events = ticks(&upstream, &mut client, "67000", 30).await;
        assert!(events.len() > 30, "status events and ticks: {events:?}");
        wait_stats(&daemon, seq_of(&events[events.len() - 1])).await;
        let cli = Sandbox::new();

        // Running: the daemon holds the journal, so the CLI asks it, at the
        // address it wrote to tablo.listen.
        assert!(
            data_dir.join("tablo.listen").exists(),
            "the daemon writes its address to DATA_DIR/tablo.listen"
        );
        let running = check_journal(&cli, &data_dir, &events, &epoch);
        assert_eq!(running["writable"], true, "{running}");
        assert!(running["durable_seq"].as_u64() >= running["last_seq"].as_u64());

        // Without tablo.listen, the config's [server] listen says where.
        std::fs::remove_file(data_dir.join("tablo.listen")).expect("remove tablo.listen");
        let elsewhere = cli.write(
            "elsewhere.toml",
            &format!("[server]\nlisten = \"{}\"\n", daemon.addr()),
        );
        let out = cli.tablo(&[
            "journal",
            "tail",
            "-n",
            "1",
            "--config",
            path_str(&elsewhere),
            "--data-dir",
            path_str(&data_dir),
        ]);
        out.assert_code(0);
        assert_eq!(lines(&out), events[events.len() - 1..], "\n{out}");
        // And with nothing listening there, it says so and exits 74.
        let nowhere = cli.write("nowhere.toml", "[server]\nlisten = \"127.0.0.1:1\"\n");
        cli.tablo(&[
            "journal",
            "stats",
            "--config",
            path_str(&nowhere),
            "--data-dir",
            path_str(&data_dir),
        ])
        .assert_code(EX_IOERR)
        .assert_stderr_has("locked by a running tablo")
        .assert_stderr_has("127.0.0.1:1");

        // Stopped: the same commands read the files and print the same.
        drop(client);
        let sandbox = stop_cleanly(daemon);
        let stopped = check_journal(&cli, &sandbox.data_dir(), &events, &epoch);
        for key in ["events", "bytes", "first_seq", "last_seq", "epoch"] {
            assert_eq!(stopped[key], running[key], "{key}: {stopped} vs {running}");
        }
        assert_eq!(
            stopped["next_seq"],
            seq_of(&events[events.len() - 1]) + 1,
            "{stopped}"
        );
    });
}

#[test]
fn reading_a_cleanly_stopped_journal_changes_nothing() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let config = config(&upstream);
        let daemon = start(Sandbox::new(), &config, &upstream).await;
        let mut client = witness(&daemon).await;
        let events = ticks(&upstream, &mut client, "1", 5).await;
        let last = seq_of(&events[events.len() - 1]);
        drop(client);
        let sandbox = stop_cleanly(daemon);
        let data_dir = sandbox.data_dir();

        let first = journal(&sandbox, &data_dir, &["stats"]);
        let second = journal(&sandbox, &data_dir, &["stats"]);
        assert_eq!(first.stdout, second.stdout, "stats twice: the same");
        journal(&sandbox, &data_dir, &["tail"]);
        assert_eq!(
            lines(&journal(&sandbox, &data_dir, &["export"])),
            events,
            "no gap recorded by reading"
        );

        // The next run goes on at last + 1, with no gap.
        let daemon = start(sandbox, &config, &upstream).await;
        let mut client = witness(&daemon).await;
        let again = ticks(&upstream, &mut client, "2", 1).await;
        assert_eq!(again[..events.len()], events[..], "the replay");
        let next = &again[events.len()..];
        assert_eq!(seq_of(&next[0]), last + 1, "seqs go on: {next:?}");
        let exported = lines(&journal(&Sandbox::new(), &data_dir, &["export"]));
        assert_eq!(exported, again, "no gap anywhere");
        assert!(
            !daemon.stderr().contains("not clean"),
            "the last stop was clean:\n{}",
            daemon.stderr()
        );
    });
}

#[test]
fn a_crash_is_a_gap_record_in_export() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let config = config(&upstream);
        let daemon = start(Sandbox::new(), &config, &upstream).await;
        let mut client = witness(&daemon).await;
        let before = ticks(&upstream, &mut client, "1", 5).await;
        let last = seq_of(&before[before.len() - 1]);
        wait_durable(&daemon, last).await;
        drop(client);
        daemon.sigkill();
        let sandbox = daemon.into_stopped(KILL_WITHIN).sandbox;
        let data_dir = sandbox.data_dir();

        // Stopped: the seqs reserved but never stored are one gap record
        // after the last durable event; reading again finds the same.
        let exported = lines(&journal(&sandbox, &data_dir, &["export"]));
        assert_eq!(exported[..before.len()], before[..], "the durable events");
        assert_eq!(
            exported.len(),
            before.len() + 1,
            "then one gap: {exported:?}"
        );
        let gap: Value = serde_json::from_str(&exported[before.len()]).expect("JSON");
        let to = gap["to"].as_u64().unwrap_or(0);
        assert_eq!(
            (&gap["type"], gap["from"].as_u64()),
            (&json!("gap"), Some(last + 1)),
            "{gap}"
        );
        assert!(to > last, "{gap}");
        // Every event was durable: none of the lost seqs reached a client,
        // and the record says at most a lease's worth can have.
        let handed = gap["handed_out_max"].as_u64().unwrap_or(u64::MAX);
        assert!(handed <= LEASE_MIN && handed < to - last, "{gap}");
        assert_eq!(
            exported[before.len()],
            format!(
                r#"{{"type":"gap","from":{},"to":{to},"handed_out_max":{handed}}}"#,
                last + 1
            ),
            "the gap line's exact form"
        );
        assert_eq!(
            lines(&journal(&sandbox, &data_dir, &["tail", "-n", "2"])),
            exported[before.len() - 1..],
        );
        let again = stats(&journal(&sandbox, &data_dir, &["stats"]));
        assert_eq!(again["next_seq"], to + 1, "{again}");
        assert_eq!(again["last_seq"], last, "{again}");

        // Running again: numbering goes on after the gap, and the daemon's
        // export shows the same gap in its place, once.
        let daemon = start(sandbox, &config, &upstream).await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices"]).await;
        let after = ticks(&upstream, &mut client, "2", 1).await;
        assert!(seq_of(&after[0]) > to, "{after:?} after the gap to {to}");
        let exported = lines(&journal(&Sandbox::new(), &data_dir, &["export"]));
        assert_eq!(exported[..=before.len()], lines_of(&before, &gap)[..]);
        assert_eq!(exported.last(), after.last(), "{exported:?}");
        let gaps = exported.iter().filter(|l| l.contains("\"gap\"")).count();
        assert_eq!(gaps, 1, "{exported:?}");
        let since_gap = lines(&journal(
            &Sandbox::new(),
            &data_dir,
            &["export", "--since", &(last + 2).to_string()],
        ));
        assert_eq!(
            since_gap[0],
            format!(
                r#"{{"type":"gap","from":{},"to":{to},"handed_out_max":{handed}}}"#,
                last + 3
            ),
            "export --since inside a gap starts it after since"
        );
    });
}

/// `events` and then the `gap` line.
fn lines_of(events: &[String], gap: &Value) -> Vec<String> {
    let mut all = events.to_vec();
    all.push(format!(
        r#"{{"type":"gap","from":{},"to":{},"handed_out_max":{}}}"#,
        gap["from"], gap["to"], gap["handed_out_max"]
    ));
    all
}

/// `tablo journal export | head -1`: the first line, then a closed pipe.
#[track_caller]
fn export_head_1(data_dir: &Path) -> Output {
    let sandbox = Sandbox::new();
    let mut export = sandbox.tablo_piped(&["journal", "export", "--data-dir", path_str(data_dir)]);
    let first = export.read_line_and_close();
    assert!(seq_of(&first) >= 1, "{first}");
    export.wait()
}

#[test]
fn a_closed_pipe_ends_export_quietly_with_0() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let config = config(&upstream);
        let daemon = start(Sandbox::new(), &config, &upstream).await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices"]).await;
        // Far more than a pipe (64 KiB) and a reader's buffer hold, so the
        // export is still writing when the pipe closes. The client may get
        // them conflated; it waits for the last one.
        let price = |i: usize| format!("3.{i:04}");
        for i in 0..1500 {
            upstream.send(&binance_ticker("BTCUSDT", &price(i)).to_string());
        }
        let last = client
            .recv_until(|f| f["type"] == "tick" && f["price"] == price(1499).as_str())
            .await;
        wait_durable(&daemon, last["seq"].as_u64().unwrap_or(u64::MAX)).await;
        let whole = journal(&Sandbox::new(), &daemon.data_dir(), &["export"]);
        assert!(
            whole.stdout.len() > 256 * 1024,
            "{} bytes",
            whole.stdout.len()
        );

        for (how, out) in [
            ("running", export_head_1(&daemon.data_dir())),
            ("stopped", {
                drop(client);
                let sandbox = stop_cleanly(daemon);
                export_head_1(&sandbox.data_dir())
            }),
        ] {
            out.assert_code(0);
            assert!(
                !out.stderr.contains("tablo:"),
                "{how}: a closed pipe is no error\n{out}"
            );
        }
    });
}

#[test]
fn no_journal_is_exit_74_and_nothing_is_created() {
    let sandbox = Sandbox::new();
    let missing = sandbox.path().join("nothing-here");
    let journal_dir = missing.join("journal");
    for args in [&["stats"][..], &["tail"], &["export", "--since", "3"]] {
        journal_any(&sandbox, &missing, args)
            .assert_code(EX_IOERR)
            .assert_stderr_has(&format!("no journal at {}", journal_dir.display()));
    }
    assert!(!missing.exists(), "tablo journal must not create a journal");

    // The default data dir: $XDG_STATE_HOME/tablo in the sandbox.
    let default_dir: PathBuf = sandbox.path().join("xdg-state/tablo");
    sandbox
        .tablo(&["journal", "stats"])
        .assert_code(EX_IOERR)
        .assert_stderr_has(&format!(
            "no journal at {}",
            default_dir.join("journal").display()
        ));
    assert!(!default_dir.exists());

    // A journal directory with nothing in it is no journal either.
    let empty = sandbox.path().join("empty");
    std::fs::create_dir_all(empty.join("journal")).expect("mkdir");
    journal_any(&sandbox, &empty, &["stats"])
        .assert_code(EX_IOERR)
        .assert_stderr_has("no journal at");
    let left = std::fs::read_dir(empty.join("journal"))
        .expect("ls")
        .count();
    assert_eq!(
        left, 0,
        "nothing was created in the empty journal directory"
    );
}

#[test]
fn bad_journal_usage_is_exit_64() {
    let sandbox = Sandbox::new();
    for args in [
        &["journal"][..],
        &["journal", "frob"],
        &["journal", "tail", "-n", "abc"],
        &["journal", "tail", "-n", "10001"],
        &["journal", "export", "--since", "-1"],
    ] {
        sandbox.tablo(args).assert_code(EX_USAGE);
    }
}

#[test]
fn journal_export_endpoint_checks_its_query() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let daemon = start(Sandbox::new(), &config(&upstream), &upstream).await;
        for (query, says) in [
            ("limit=abc", "limit"),
            ("limit=0", "limit"),
            ("limit=100001", "limit"),
            ("since=x", "since"),
            ("tail=-3", "tail"),
            ("tail=3&since=1", "cannot be combined"),
        ] {
            let (status, body) = daemon.http_get(&format!("/journal/export?{query}"));
            assert_eq!(status, 400, "{query}: {body}");
            assert!(body.contains(says), "{query}: {body}");
        }

        let mut client = witness(&daemon).await;
        let events = ticks(&upstream, &mut client, "4", 5).await;
        let (status, body) = daemon.http_get("/journal/export");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body.lines().collect::<Vec<_>>(), events);
        let since = seq_of(&events[1]);
        let (status, body) = daemon.http_get(&format!("/journal/export?since={since}&limit=2"));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body.lines().collect::<Vec<_>>(), events[2..4]);
        let (status, body) = daemon.http_get("/journal/export?tail=2");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body.lines().collect::<Vec<_>>(), events[events.len() - 2..]);
    });
}

#[test]
fn journal_stats_endpoint_reports_the_counters_and_the_epoch() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let daemon = start(Sandbox::new(), &config(&upstream), &upstream).await;
        let mut client = witness(&daemon).await;
        let events = ticks(&upstream, &mut client, "5", 3).await;
        let last = seq_of(&events[events.len() - 1]);
        let stats = wait_stats(&daemon, last).await;
        assert_eq!(stats["epoch"], client.hello["epoch"], "{stats}");
        assert_eq!(stats["events"], events.len() as u64, "{stats}");
        let bytes: usize = events.iter().map(String::len).sum();
        assert_eq!(stats["bytes"], bytes as u64, "{stats}");
        assert_eq!(stats["first_seq"], seq_of(&events[0]), "{stats}");
        assert_eq!(stats["last_seq"], last, "{stats}");
        assert!(stats["durable_seq"].as_u64() >= Some(last), "{stats}");
        assert!(stats["disk_bytes"].as_u64() > Some(0), "{stats}");
        assert_eq!(stats["writable"], true, "{stats}");
        assert_eq!(stats["error"], Value::Null, "{stats}");
    });
}
