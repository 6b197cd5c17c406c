//! The durable journal from the outside (docs/durability.md; resume and publish
//! in docs/protocol.md §8, §14): `since` and `epoch` on `subscribe`, `reset`,
//! `gap` records after a crash, seqs that are never reused, `publish` acked
//! once durable, last-known prices after a restart, the journal's lock, a
//! corrupt journal, and what `/healthz` and `/metrics` say about it.
//!
//! A daemon is restarted on the same data dir with
//! [`Daemon::into_stopped`] and [`Daemon::start_in`]. Something is known to
//! be durable once `/metrics` says `tablo_journal_durable_seq` has reached
//! it, or once its publish is acked; nothing here sleeps to wait for a
//! commit.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use smol::Timer;
use tablo::journal::{LEASE_MIN, REPLAY_PAGE, RESERVE_BLOCK};
use tablo::protocol::MAX_SYMBOL_LEN;

use crate::harness::{Client, Daemon, FakeUpstream, Sandbox};
use crate::relay::{binance_ticker, is_tick};

/// The group-commit interval of most daemons here: short, so waiting for
/// durability is quick.
const FLUSH_MS: u64 = 20;

/// How long an event may take to become durable: many commit intervals, on
/// a loaded 2-core machine.
const DURABLE_WITHIN: Duration = Duration::from_secs(5);

/// How often `/metrics` is asked whether a seq is durable yet.
const DURABLE_POLL: Duration = Duration::from_millis(10);

/// docs/config.md §14: SIGTERM stops the daemon within 2 s.
const STOP_WITHIN: Duration = Duration::from_secs(2);

/// How long a SIGKILLed daemon may take to be reaped.
const KILL_WITHIN: Duration = Duration::from_secs(2);

/// How long to listen for frames that must not come.
const QUIET: Duration = Duration::from_millis(300);

/// sysexits EX_IOERR: the journal could not be opened (docs/config.md §14).
const EX_IOERR: i32 = 74;

/// A feed URL on which nothing listens: a feed that never connects.
const DEAD_FEED: &str = "binance=ws://127.0.0.1:1/ws";

/// A config with one Binance feed named `binance` reading `upstream`, a
/// publishing token `pub` and a read-only token `ro`, and the journal
/// committing every `flush_ms`; `journal_extra` goes into `[journal]`.
fn config_with(upstream: &FakeUpstream, flush_ms: u64, journal_extra: &str) -> String {
    format!(
        r#"
[server]
tokens = [{{ token = "pub", publish = true }}, {{ token = "ro", publish = false }}]

[journal]
flush_interval_ms = {flush_ms}
{journal_extra}

[[feed]]
name = "binance"
format = "binance"
url = "{}"
"#,
        upstream.url("/ws")
    )
}

/// [`config_with`] the usual commit interval and no other journal settings.
fn config(upstream: &FakeUpstream) -> String {
    config_with(upstream, FLUSH_MS, "")
}

/// Starts a daemon in `sandbox` and waits until it has connected to
/// `upstream`.
async fn start(sandbox: Sandbox, config: &str, upstream: &FakeUpstream) -> Daemon {
    let daemon = Daemon::start_in(sandbox, Some(config), &[]);
    upstream.wait_connection().await;
    daemon
}

/// A Binance ticker frame for `symbol` at `price`.
fn ticker(symbol: &str, price: &str) -> String {
    binance_ticker(symbol, price).to_string()
}

/// A frame's `seq`; fails if it has none.
#[track_caller]
fn seq_of(frame: &Value) -> u64 {
    frame["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("a frame without a numeric seq: {frame}"))
}

/// The epoch of the daemon `client` is connected to: 16 hex characters.
#[track_caller]
fn epoch_of(client: &Client) -> String {
    let epoch = client.hello["epoch"].as_str().unwrap_or_default();
    if epoch.len() != 16 || !epoch.chars().all(|c| c.is_ascii_hexdigit()) {
        client.fail(&format!(
            "hello should carry a 16-hex-character epoch: {}",
            client.hello
        ));
    }
    epoch.to_owned()
}

/// The `seq` of `client`'s hello: the daemon's last seq when it joined.
#[track_caller]
fn hello_seq(client: &Client) -> u64 {
    client.hello["seq"]
        .as_u64()
        .unwrap_or_else(|| client.fail(&format!("hello should carry a seq: {}", client.hello)))
}

/// An epoch that is not `epoch`.
fn other_epoch(epoch: &str) -> String {
    let flipped = if epoch.starts_with('0') { '1' } else { '0' };
    format!("{flipped}{}", &epoch[1..])
}

/// Subscribes to `channels` resuming after `since` (in `epoch`, if given);
/// fails unless the very next frame is `subscribed`, which it returns.
async fn resume(client: &mut Client, channels: &[&str], since: u64, epoch: Option<&str>) -> Value {
    let mut op = json!({"op": "subscribe", "channels": channels, "since": since});
    if let Some(epoch) = epoch {
        op["epoch"] = json!(epoch);
    }
    client.send_json(op).await;
    let reply = client.recv_json().await;
    if reply["type"] != "subscribed" {
        client.fail(&format!(
            "a resume after {since} should be answered with subscribed first, got {reply}"
        ));
    }
    reply
}

/// Reads the next frames and fails unless they are a `reset` with a reason
/// and then a `snapshot`, which it returns.
async fn expect_reset_then_snapshot(client: &mut Client) -> Value {
    let reset = client.recv_json().await;
    if reset["type"] != "reset" || reset["reason"].as_str().is_none_or(str::is_empty) {
        client.fail(&format!("expected a reset with a reason, got {reset}"));
    }
    let snapshot = client.recv_json().await;
    if snapshot["type"] != "snapshot" || !snapshot["events"].is_array() {
        client.fail(&format!(
            "expected a snapshot after the reset, got {snapshot}"
        ));
    }
    snapshot
}

/// The events of a snapshot frame.
fn snapshot_events(snapshot: &Value) -> &[Value] {
    snapshot["events"].as_array().map_or(&[], Vec::as_slice)
}

/// Fails unless the next frame is exactly `want`.
async fn expect_frame(client: &mut Client, want: &Value, what: &str) {
    let got = client.recv_json().await;
    if got != *want {
        client.fail(&format!("{what}: expected {want}, got {got}"));
    }
}

/// Fails if a frame arrives within [`QUIET`].
async fn expect_quiet(client: &mut Client, what: &str) {
    if let Some(frame) = client.try_recv_json_within(QUIET).await {
        client.fail(&format!("{what}: unexpected frame {frame}"));
    }
}

/// Reads ticks until one for `symbol` at `price` comes; returns it.
async fn recv_tick(client: &mut Client, symbol: &str, price: &str) -> Value {
    client
        .recv_until(|f| is_tick(f) && f["symbol"] == symbol && f["price"] == price)
        .await
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
            "seq {seq} was not durable within {DURABLE_WITHIN:?} \
             (tablo_journal_durable_seq {durable}); stderr:\n{}",
            daemon.stderr()
        );
        Timer::after(DURABLE_POLL).await;
    }
}

/// Waits until retention has trimmed every event before `first` (it trims
/// in the background, after a commit) and `/healthz` says so.
async fn wait_trimmed(daemon: &Daemon, first: u64) {
    let deadline = Instant::now() + DURABLE_WITHIN;
    loop {
        let journal = healthz(daemon)["journal"].clone();
        if journal["first_seq"].as_u64() >= Some(first) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "retention should trim the journal up to seq {first} within {DURABLE_WITHIN:?}: {journal}"
        );
        Timer::after(DURABLE_POLL).await;
    }
}

/// `/healthz`, parsed; fails unless it answers 200.
#[track_caller]
fn healthz(daemon: &Daemon) -> Value {
    let (status, body) = daemon.http_get("/healthz");
    assert_eq!(status, 200, "GET /healthz\n{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/healthz is not JSON ({e}): {body}"))
}

/// Stops `daemon` with SIGTERM, checks that it exited 0, and hands back its
/// sandbox.
fn stop_cleanly(daemon: Daemon) -> Sandbox {
    daemon.sigterm();
    let stopped = daemon.into_stopped(STOP_WITHIN);
    assert_eq!(
        stopped.status.code(),
        Some(0),
        "SIGTERM should stop tablo with 0, got {}; stderr:\n{}",
        stopped.status,
        stopped.stderr
    );
    stopped.sandbox
}

/// Kills `daemon` with SIGKILL and hands back its sandbox.
fn kill(daemon: Daemon) -> Sandbox {
    daemon.sigkill();
    let stopped = daemon.into_stopped(KILL_WITHIN);
    assert_eq!(
        stopped.status.signal(),
        Some(libc::SIGKILL),
        "{}; stderr:\n{}",
        stopped.status,
        stopped.stderr
    );
    stopped.sandbox
}

/// Publishes `data` on `channel` with request `id` and returns the next
/// frame.
async fn publish(client: &mut Client, channel: &str, data: Value, id: u64) -> Value {
    let op = json!({"op": "publish", "channel": channel, "data": data, "id": id});
    client.request(op).await
}

/// Fails unless `reply` is the ack of publish `id`; returns its seq.
#[track_caller]
fn ack_seq(client: &Client, reply: &Value, id: u64) -> u64 {
    if reply["type"] != "ack" || reply["id"] != id || reply["seq"].as_u64().is_none() {
        client.fail(&format!(
            "expected {{\"type\":\"ack\",\"id\":{id},\"seq\":N}}, got {reply}"
        ));
    }
    seq_of(reply)
}

#[test]
fn resume_after_reconnect_gets_exactly_the_missed_events() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let daemon = start(Sandbox::new(), &config(&upstream), &upstream).await;
        // Stays connected throughout and sees every tick.
        let mut witness = daemon.bot().await;
        witness.subscribe(&["prices"]).await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices"]).await;
        let epoch = epoch_of(&client);

        let symbol = |i: usize| if i % 3 == 2 { "ETHUSDT" } else { "BTCUSDT" };
        let price = |i: usize| format!("67000.{i:02}");
        for i in 0..5 {
            upstream.send(&ticker(symbol(i), &price(i)));
        }
        let mut last = Value::Null;
        for i in 0..5 {
            last = recv_tick(&mut client, symbol(i), &price(i)).await;
        }
        let since = seq_of(&last);
        drop(client);

        for i in 5..10 {
            upstream.send(&ticker(symbol(i), &price(i)));
        }
        let mut missed = Vec::new();
        for i in 0..10 {
            let tick = witness.recv_json().await;
            assert_eq!(tick["price"], price(i), "{tick}");
            if i >= 5 {
                missed.push(tick);
            }
        }

        let mut resumed = daemon.bot().await;
        assert_eq!(epoch_of(&resumed), epoch, "same daemon, same epoch");
        let subscribed = resume(&mut resumed, &["prices"], since, Some(&epoch)).await;
        assert!(
            subscribed["seq"].as_u64() >= Some(seq_of(&missed[4])),
            "subscribed should carry the last seq: {subscribed}"
        );
        for want in &missed {
            expect_frame(&mut resumed, want, "the replay").await;
        }
        // A resume on one symbol replays that symbol only.
        let mut eth = daemon.bot().await;
        resume(&mut eth, &["prices.ETHUSDT"], since, Some(&epoch)).await;
        for want in missed.iter().filter(|t| t["symbol"] == "ETHUSDT") {
            expect_frame(&mut eth, want, "the replay of prices.ETHUSDT").await;
        }

        upstream.send(&ticker("ETHUSDT", &price(10)));
        let live = witness.recv_json().await;
        assert_eq!(live["price"], price(10), "{live}");
        for client in [&mut resumed, &mut eth] {
            expect_frame(client, &live, "the first live tick after the replay").await;
            expect_quiet(client, "after the live tick").await;
        }
    });
}

/// Ticks already journaled when the client resumes: enough for a replay of
/// several journal pages.
const SEAM_BEFORE: usize = 2 * REPLAY_PAGE + REPLAY_PAGE / 2;

/// Ticks sent while the client resumes and after.
const SEAM_DURING: usize = 300;

#[test]
fn resume_seam_has_no_gap_or_duplicate_while_events_keep_arriving() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let daemon = start(Sandbox::new(), &config(&upstream), &upstream).await;
        let mut witness = daemon.bot().await;
        witness.subscribe(&["*"]).await;
        let mut client = daemon.bot().await;
        client.subscribe(&["*"]).await;
        let epoch = epoch_of(&client);

        // One symbol per tick: a tick never conflates with another in the
        // resumed client's queue (a slow client may lose ticks that way, by
        // design), so every seq must arrive.
        let symbol = |i: usize| format!("S{i:04}USDT");
        upstream.send(&ticker("BTCUSDT", "1.00"));
        let since = seq_of(&recv_tick(&mut client, "BTCUSDT", "1.00").await);
        drop(client);
        for i in 0..SEAM_BEFORE {
            upstream.send(&ticker(&symbol(i), "2.00"));
        }
        recv_tick(&mut witness, &symbol(SEAM_BEFORE - 1), "2.00").await;
        drop(witness);

        let (go_tx, go_rx) = smol::channel::bounded::<()>(1);
        let sender = async {
            go_rx.recv().await.expect("the reader says go");
            for i in SEAM_BEFORE..SEAM_BEFORE + SEAM_DURING {
                upstream.send(&ticker(&symbol(i), "3.00"));
                // Paced, so that ticks keep coming during the replay and
                // after it, not in one burst.
                Timer::after(Duration::from_millis(1)).await;
            }
        };
        let reader = async {
            let mut resumed = daemon.bot().await;
            resumed
                .send_json(
                    json!({"op": "subscribe", "channels": ["*"], "since": since, "epoch": epoch}),
                )
                .await;
            go_tx.send(()).await.expect("the sender listens");
            let subscribed = resumed.recv_json().await;
            if subscribed["type"] != "subscribed" {
                resumed.fail(&format!("expected subscribed first, got {subscribed}"));
            }
            let mut next = since + 1;
            let mut symbols = BTreeSet::new();
            let last_symbol = symbol(SEAM_BEFORE + SEAM_DURING - 1);
            loop {
                let frame = resumed.recv_json().await;
                if frame["seq"].as_u64() != Some(next) {
                    resumed.fail(&format!(
                        "after {since} every seq should come once, in order: expected {next}, got {frame}"
                    ));
                }
                next += 1;
                if is_tick(&frame) {
                    symbols.insert(frame["symbol"].as_str().unwrap_or_default().to_owned());
                    if frame["symbol"] == last_symbol.as_str() {
                        break;
                    }
                }
            }
            (subscribed, next - 1, symbols)
        };
        let ((), (subscribed, last, symbols)) = smol::future::zip(sender, reader).await;

        let upto = seq_of(&subscribed);
        assert!(
            upto >= since + SEAM_BEFORE as u64,
            "the resume should have replayed the {SEAM_BEFORE} journaled ticks: {subscribed}"
        );
        assert!(
            upto < last,
            "ticks should have come live after the subscribe ({subscribed}, last seq {last})"
        );
        let sent: BTreeSet<String> = (0..SEAM_BEFORE + SEAM_DURING).map(symbol).collect();
        assert!(
            sent.is_subset(&symbols),
            "missing ticks: {:?}",
            sent.difference(&symbols).collect::<Vec<_>>()
        );
    });
}

/// The commit interval of [`resume_across_a_clean_restart`]: the largest
/// accepted.
const SLOW_FLUSH_MS: u64 = 10_000;

#[test]
fn resume_across_a_clean_restart() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        // Commits so rare that what was sent last is not yet durable at the
        // SIGTERM: the clean stop must commit it.
        let config = config_with(&upstream, SLOW_FLUSH_MS, "");
        let daemon = start(Sandbox::new(), &config, &upstream).await;
        let mut client = daemon.bot().await;
        client.subscribe(&["*"]).await;
        let epoch = epoch_of(&client);
        // Every event seen, ticks and the feed's status events alike.
        let mut frames = Vec::new();
        let price = |i: usize| format!("3456.{i:02}");
        for i in 0..5 {
            upstream.send(&ticker("ETHUSDT", &price(i)));
            loop {
                let frame = client.recv_json().await;
                frames.push(frame.clone());
                if is_tick(&frame) && frame["price"] == price(i) {
                    break;
                }
            }
        }
        let last_tick = seq_of(frames.last().expect("frames were read"));
        let last = hello_seq(&daemon.bot().await);
        assert!(last >= last_tick, "hello seq {last}, last tick {last_tick}");
        drop(client);

        let sandbox = stop_cleanly(daemon);
        let daemon = start(sandbox, &config, &upstream).await;
        let mut resumed = daemon.bot().await;
        assert_eq!(epoch_of(&resumed), epoch, "the epoch survives a restart");
        assert!(
            hello_seq(&resumed) >= last,
            "hello seq {} went back from {last}",
            hello_seq(&resumed)
        );
        let since = seq_of(&frames[1]);
        resume(&mut resumed, &["*"], since, Some(&epoch)).await;
        for want in &frames[2..] {
            expect_frame(&mut resumed, want, "the replay after a clean restart").await;
        }
        // Then every event of the new run (the feed's status events, then
        // this tick), numbered on from the last seq without a gap.
        upstream.send(&ticker("ETHUSDT", "3500.00"));
        let mut next = last_tick + 1;
        loop {
            let frame = resumed.recv_json().await;
            if frame["type"] == "gap" || frame["seq"].as_u64() != Some(next) {
                resumed.fail(&format!(
                    "after a clean restart seqs go on from {last} without a gap: expected {next}, got {frame}"
                ));
            }
            next += 1;
            if is_tick(&frame) && frame["price"] == "3500.00" {
                break;
            }
        }
        assert!(next - 1 > last, "the new tick reused a seq");
    });
}

/// Kill-and-restart rounds.
const CRASH_ROUNDS: usize = 3;

/// Ticks per round, of which the first [`DURABLE_TICKS`] are made durable
/// before the kill and the rest may not be.
const ROUND_TICKS: usize = 6;

/// See [`ROUND_TICKS`].
const DURABLE_TICKS: usize = 3;

/// The commit interval of the crash test: long enough that the last ticks
/// of a round are usually not yet durable when the daemon is killed.
const CRASH_FLUSH_MS: u64 = 300;

/// Remembers `frame` (an event seen live, or replayed) under its seq; fails
/// if that seq was seen before with other content: a reused seq.
#[track_caller]
fn remember(seen: &mut HashMap<u64, Value>, frame: &Value) {
    let seq = seq_of(frame);
    if let Some(before) = seen.insert(seq, frame.clone()) {
        assert_eq!(
            before, *frame,
            "seq {seq} was used for two different events"
        );
    }
}

#[test]
fn crash_leaves_a_gap_record_and_never_reuses_seqs() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let config = config_with(&upstream, CRASH_FLUSH_MS, "");
        let mut daemon = start(Sandbox::new(), &config, &upstream).await;
        let epoch = epoch_of(&daemon.bot().await);
        let mut seen = HashMap::new();
        // The highest seq seen before the last kill.
        let mut highest = 0;

        for round in 0..CRASH_ROUNDS {
            let mut client = daemon.bot().await;
            client.subscribe(&["*"]).await;
            let price = |i: usize| format!("{round}.{i:02}");
            let mut ticks = Vec::new();
            for i in 0..ROUND_TICKS {
                upstream.send(&ticker("BTCUSDT", &price(i)));
                // Every event in between (a status event, say) is seen too.
                loop {
                    let frame = client.recv_json().await;
                    remember(&mut seen, &frame);
                    if is_tick(&frame) && frame["price"] == price(i) {
                        ticks.push(frame);
                        break;
                    }
                }
                if i + 1 == DURABLE_TICKS {
                    wait_durable(&daemon, seq_of(&ticks[i])).await;
                }
            }
            assert!(
                seq_of(&ticks[0]) > highest,
                "round {round}: seq {} reused after a crash at {highest}",
                seq_of(&ticks[0])
            );
            let durable = seq_of(&ticks[DURABLE_TICKS - 1]);
            highest = seen.keys().copied().max().unwrap_or(0);
            drop(client);

            let sandbox = kill(daemon);
            daemon = start(sandbox, &config, &upstream).await;
            let mut resumed = daemon.bot().await;
            assert_eq!(
                epoch_of(&resumed),
                epoch,
                "round {round}: the epoch survives a crash"
            );
            assert!(
                hello_seq(&resumed) >= highest,
                "round {round}: hello seq {} is not past {highest}, seen before the kill",
                hello_seq(&resumed)
            );

            let since = seq_of(&ticks[0]);
            resume(&mut resumed, &["*"], since, Some(&epoch)).await;
            // The durable events, as they were sent live, then the gap.
            let mut next = since + 1;
            let gap = loop {
                let frame = resumed.recv_json().await;
                if frame["type"] == "gap" {
                    break frame;
                }
                if frame["seq"].as_u64() != Some(next) {
                    resumed.fail(&format!(
                        "round {round}: the replay should go on from {since} in order: expected {next}, got {frame}"
                    ));
                }
                if seen.get(&next).is_some_and(|live| live != &frame) {
                    resumed.fail(&format!(
                        "round {round}: seq {next} was {} live, replayed as {frame}",
                        seen[&next]
                    ));
                }
                remember(&mut seen, &frame);
                next += 1;
            };
            let (from, to) = (gap["from"].as_u64(), gap["to"].as_u64());
            let (Some(from), Some(to)) = (from, to) else {
                resumed.fail(&format!("a gap needs numeric from and to: {gap}"));
            };
            if from != next || from <= durable || to < highest || to < from {
                resumed.fail(&format!(
                    "round {round}: expected a gap from {next} (past the durable {durable}) \
                     to at least {highest} (the highest seq seen before the kill), got {gap}"
                ));
            }
            assert!(
                to <= highest + RESERVE_BLOCK,
                "round {round}: a crash loses at most one reservation block: {gap}, highest {highest}"
            );
            // Of the lost range, only a lease's worth can have reached a
            // client, and every seq this client saw past the durable ones
            // is among them.
            let handed = gap["handed_out_max"].as_u64().unwrap_or(u64::MAX);
            assert!(
                handed > highest.saturating_sub(from) && handed <= 2 * LEASE_MIN,
                "round {round}: handed_out_max should count the {} seqs seen past the durable \
                 ones and stay within about a lease ({LEASE_MIN}): {gap}",
                highest + 1 - from.min(highest + 1)
            );

            // A client that saw the lost seqs live and resumes after the
            // last of them is told that the rest of the range is gone.
            let mut lagging = daemon.bot().await;
            resume(&mut lagging, &["*"], highest, Some(&epoch)).await;
            let rest = json!({
                "type": "gap",
                "from": highest + 1,
                "to": to,
                "handed_out_max": handed.min(to - highest),
            });
            expect_frame(&mut lagging, &rest, "a resume from inside the lost range").await;

            // Then the new run, live or replayed, on from the gap.
            let live = format!("{round}.99");
            upstream.send(&ticker("BTCUSDT", &live));
            for client in [&mut resumed, &mut lagging] {
                let mut next = to + 1;
                loop {
                    let frame = client.recv_json().await;
                    if frame["seq"].as_u64() != Some(next) {
                        client.fail(&format!(
                            "round {round}: after the gap seqs go on from {next}, got {frame}"
                        ));
                    }
                    remember(&mut seen, &frame);
                    next += 1;
                    if is_tick(&frame) && frame["price"] == live.as_str() {
                        break;
                    }
                }
            }
        }
    });
}

#[test]
fn wrong_epoch_gets_reset_then_snapshot() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let daemon = start(Sandbox::new(), &config(&upstream), &upstream).await;
        let mut first = daemon.bot().await;
        first.subscribe(&["prices"]).await;
        upstream.send(&ticker("BTCUSDT", "67012.50"));
        let tick = recv_tick(&mut first, "BTCUSDT", "67012.50").await;

        let mut client = daemon.bot().await;
        let wrong = other_epoch(&epoch_of(&client));
        resume(&mut client, &["prices"], seq_of(&tick) - 1, Some(&wrong)).await;
        let snapshot = expect_reset_then_snapshot(&mut client).await;
        assert!(
            snapshot_events(&snapshot).contains(&tick),
            "the snapshot should hold the last tick {tick}: {snapshot}"
        );
        // Then live, with no replay before it.
        upstream.send(&ticker("BTCUSDT", "67013.00"));
        let live = recv_tick(&mut first, "BTCUSDT", "67013.00").await;
        expect_frame(&mut client, &live, "live after the reset").await;
    });
}

#[test]
fn since_ahead_of_server_gets_reset() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let daemon = start(Sandbox::new(), &config(&upstream), &upstream).await;
        let mut first = daemon.bot().await;
        first.subscribe(&["prices"]).await;
        upstream.send(&ticker("BTCUSDT", "67012.50"));
        let tick = recv_tick(&mut first, "BTCUSDT", "67012.50").await;

        let mut client = daemon.bot().await;
        let epoch = epoch_of(&client);
        let ahead = hello_seq(&client) + 1_000;
        resume(&mut client, &["prices"], ahead, Some(&epoch)).await;
        let snapshot = expect_reset_then_snapshot(&mut client).await;
        assert!(snapshot_events(&snapshot).contains(&tick), "{snapshot}");
        // Without an epoch too.
        let mut client = daemon.bot().await;
        resume(&mut client, &["prices"], ahead, None).await;
        expect_reset_then_snapshot(&mut client).await;
        upstream.send(&ticker("BTCUSDT", "67013.00"));
        let live = recv_tick(&mut first, "BTCUSDT", "67013.00").await;
        expect_frame(&mut client, &live, "live after the reset").await;
    });
}

/// The retention of [`since_older_than_retention_gets_reset`].
const KEEP_EVENTS: u64 = 5;

#[test]
fn since_older_than_retention_gets_reset() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let config = config_with(&upstream, FLUSH_MS, &format!("max_events = {KEEP_EVENTS}"));
        let daemon = start(Sandbox::new(), &config, &upstream).await;
        let mut first = daemon.bot().await;
        first.subscribe(&["prices"]).await;
        let mut ticks = Vec::new();
        for i in 0..4 * KEEP_EVENTS {
            let price = format!("1.{i:02}");
            upstream.send(&ticker("BTCUSDT", &price));
            ticks.push(recv_tick(&mut first, "BTCUSDT", &price).await);
        }
        let oldest = seq_of(&ticks[0]);
        wait_trimmed(&daemon, oldest + 2).await;

        let mut client = daemon.bot().await;
        let epoch = epoch_of(&client);
        resume(&mut client, &["prices"], oldest - 1, Some(&epoch)).await;
        let snapshot = expect_reset_then_snapshot(&mut client).await;
        let last = ticks.last().expect("ticks were sent");
        assert!(snapshot_events(&snapshot).contains(last), "{snapshot}");
    });
}

/// The commit interval of
/// [`since_trimmed_a_moment_ago_gets_reset_not_a_gap`]: long, so that the
/// resume comes between the commit after which retention trimmed and the
/// next commit.
const TRIM_FLUSH_MS: u64 = 1_000;

/// docs/protocol.md §8, docs/durability.md §4, §10: a `since` older than
/// retention gets `reset` and a snapshot, also during the commit interval right
/// after retention trimmed, before the journal's counters (first seq) are
/// published again. Trimmed events are not lost seqs: they are no `gap`.
#[test]
fn since_trimmed_a_moment_ago_gets_reset_not_a_gap() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let config = config_with(
            &upstream,
            TRIM_FLUSH_MS,
            &format!("max_events = {KEEP_EVENTS}"),
        );
        let daemon = start(Sandbox::new(), &config, &upstream).await;
        let mut first = daemon.bot().await;
        first.subscribe(&["prices"]).await;
        let mut ticks = Vec::new();
        for i in 0..4 * KEEP_EVENTS {
            let price = format!("1.{i:02}");
            upstream.send(&ticker("BTCUSDT", &price));
            ticks.push(recv_tick(&mut first, "BTCUSDT", &price).await);
        }
        // Retention trims right after the commit that makes these durable.
        let last = ticks.last().expect("ticks were sent");
        wait_durable(&daemon, seq_of(last)).await;

        let mut client = daemon.bot().await;
        let epoch = epoch_of(&client);
        resume(
            &mut client,
            &["prices"],
            seq_of(&ticks[0]) - 1,
            Some(&epoch),
        )
        .await;
        let snapshot = expect_reset_then_snapshot(&mut client).await;
        assert!(snapshot_events(&snapshot).contains(last), "{snapshot}");
    });
}

#[test]
fn publish_is_acked_after_it_is_durable_and_reaches_subscribers() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        // A long commit interval: an ack sent before the commit would be
        // seen before `durable_seq` has reached it.
        let config = config_with(&upstream, 200, "");
        let daemon = start(Sandbox::new(), &config, &upstream).await;
        let mut subscriber = daemon.bot().await;
        subscriber.subscribe(&["alerts"]).await;
        let mut publisher = daemon.ws("/ws?client=bot&token=pub").await;

        // The server sets seq, channel, ts and source, whatever data says.
        let data = json!({
            "level": "critical",
            "text": "Market closed early",
            "seq": 1,
            "channel": "news",
            "ts": 1,
            "source": "me",
        });
        let reply = publish(&mut publisher, "alerts", data, 7).await;
        let seq = ack_seq(&publisher, &reply, 7);
        let durable = daemon.metric("tablo_journal_durable_seq") as u64;
        assert!(
            durable >= seq,
            "the ack for seq {seq} came before it was durable (durable seq {durable})"
        );

        let alert = subscriber.recv_json().await;
        assert_eq!(alert["type"], "alert", "{alert}");
        assert_eq!(alert["seq"], seq, "{alert}");
        assert_eq!(alert["channel"], "alerts", "{alert}");
        assert_eq!(alert["level"], "critical", "{alert}");
        assert_eq!(alert["text"], "Market closed early", "{alert}");
        assert_eq!(alert["source"], "publish", "{alert}");
        assert!(alert["ts"].as_u64() > Some(1), "{alert}");

        // A tick for a symbol channel takes its symbol from the channel.
        subscriber.subscribe(&["prices.GOLD"]).await;
        let reply = publish(
            &mut publisher,
            "prices.GOLD",
            json!({"price": "2345.60"}),
            8,
        )
        .await;
        let seq = ack_seq(&publisher, &reply, 8);
        let tick = subscriber.recv_until(is_tick).await;
        assert_eq!(tick["seq"], seq, "{tick}");
        assert_eq!(tick["symbol"], "GOLD", "{tick}");
        assert_eq!(tick["price"], "2345.60", "{tick}");
        assert_eq!(tick["source"], "publish", "{tick}");
        // A published tick is last-known state like a feed's.
        let snapshot = publisher
            .request(json!({"op": "snapshot", "channels": ["prices.GOLD"]}))
            .await;
        assert_eq!(snapshot_events(&snapshot), [tick], "{snapshot}");
    });
}

#[test]
fn a_publish_many_times_the_read_buffer_arrives_whole() {
    // server::READ_BUFFER_BYTES is 1 KiB; a 40 KiB op is read in pieces.
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let config = config_with(&upstream, 100, "");
        let daemon = start(Sandbox::new(), &config, &upstream).await;
        let mut subscriber = daemon.bot().await;
        subscriber.subscribe(&["alerts"]).await;
        let mut publisher = daemon.ws("/ws?client=bot&token=pub").await;
        let text: String = (0..40 * 1024)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let data = json!({"level": "info", "text": text});
        let reply = publish(&mut publisher, "alerts", data, 9).await;
        let seq = ack_seq(&publisher, &reply, 9);
        let alert = subscriber.recv_json().await;
        assert_eq!(alert["seq"], seq, "{}", &alert.to_string()[..200]);
        assert!(
            alert["text"] == text.as_str(),
            "the alert's text came out changed"
        );
    });
}

#[test]
fn publish_without_the_right_is_unauthorized() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let daemon = start(Sandbox::new(), &config(&upstream), &upstream).await;
        let mut subscriber = daemon.bot().await;
        subscriber.subscribe(&["alerts"]).await;
        let data = json!({"level": "info", "text": "not from you"});
        for query in ["/ws?client=bot&token=ro", "/ws?client=bot"] {
            let mut client = daemon.ws(query).await;
            let reply = publish(&mut client, "alerts", data.clone(), 3).await;
            let error = client.assert_error(&reply, "unauthorized");
            assert_eq!(error["id"], 3, "{error}");
            // The connection stays open.
            client.ping_expect_pong_next(json!(4)).await;
        }
        expect_quiet(&mut subscriber, "a refused publish reached a subscriber").await;
    });
}

#[test]
fn bad_publishes_get_bad_request_or_unknown_channel() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let daemon = start(Sandbox::new(), &config(&upstream), &upstream).await;
        let mut subscriber = daemon.bot().await;
        // Every publishable channel; `status` would also bring the feed's
        // own events.
        subscriber.subscribe(&["prices", "news", "alerts"]).await;
        let mut publisher = daemon.ws("/ws?client=bot&token=pub").await;
        let cases = [
            ("alerts", json!({"level": "critical"}), "bad_request"),
            (
                "alerts",
                json!({"level": "loud", "text": "x"}),
                "bad_request",
            ),
            ("prices", json!({"symbol": "BTCUSDT"}), "bad_request"),
            (
                "prices",
                json!({"symbol": "BTCUSDT", "price": 1.5}),
                "bad_request",
            ),
            (
                "prices",
                json!({"symbol": "BTCUSDT", "price": "cheap"}),
                "bad_request",
            ),
            (
                "prices.BTCUSDT",
                json!({"symbol": "ETHUSDT", "price": "1"}),
                "bad_request",
            ),
            ("news", json!({"url": "https://example.com"}), "bad_request"),
            (
                "status",
                json!({"feed": "binance", "state": "up"}),
                "bad_request",
            ),
            ("weather", json!({"text": "sunny"}), "unknown_channel"),
        ];
        for (id, (channel, data, code)) in cases.into_iter().enumerate() {
            let reply = publish(&mut publisher, channel, data.clone(), id as u64).await;
            if reply["type"] != "error" || reply["code"] != code || reply["id"] != id {
                publisher.fail(&format!(
                    "publish to {channel} of {data} should get {code} with id {id}, got {reply}"
                ));
            }
        }
        expect_quiet(&mut subscriber, "a refused publish reached a subscriber").await;
        // The publisher can still publish.
        let reply = publish(&mut publisher, "news", json!({"title": "Still here"}), 99).await;
        let seq = ack_seq(&publisher, &reply, 99);
        let news = subscriber.recv_until(|f| f["type"] == "news").await;
        assert_eq!(news["seq"], seq, "{news}");
        assert_eq!(news["title"], "Still here", "{news}");
    });
}

/// docs/protocol.md §5, §14: a publish is checked like a feed's events, so a
/// tick for a symbol the hub refuses from every feed (whitespace, control
/// characters, longer than `MAX_SYMBOL_LEN`), which no `prices.<SYMBOL>`
/// subscription could name and which would get past the hub's cap on symbols,
/// is a `bad_request`.
#[test]
fn publish_of_a_symbol_no_feed_may_send_is_bad_request() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let daemon = start(Sandbox::new(), &config(&upstream), &upstream).await;
        let mut subscriber = daemon.bot().await;
        subscriber.subscribe(&["prices"]).await;
        let mut publisher = daemon.ws("/ws?client=bot&token=pub").await;
        let too_long = "X".repeat(MAX_SYMBOL_LEN + 1);
        for (id, symbol) in ["BTC USDT", "BTC\u{1}USDT", too_long.as_str()]
            .into_iter()
            .enumerate()
        {
            let data = json!({"symbol": symbol, "price": "1.00"});
            let reply = publish(&mut publisher, "prices", data, id as u64).await;
            if reply["type"] != "error" || reply["code"] != "bad_request" || reply["id"] != id {
                publisher.fail(&format!(
                    "a tick for symbol {symbol:?} should get bad_request with id {id}, got {reply}"
                ));
            }
        }
        expect_quiet(&mut subscriber, "a refused publish reached a subscriber").await;
    });
}

#[test]
fn an_acked_publish_survives_sigkill() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let config = config(&upstream);
        let daemon = start(Sandbox::new(), &config, &upstream).await;
        let mut publisher = daemon.ws("/ws?client=bot&token=pub").await;
        let epoch = epoch_of(&publisher);
        let data = json!({"level": "warning", "text": "Feed maintenance at noon"});
        let reply = publish(&mut publisher, "alerts", data, 1).await;
        let seq = ack_seq(&publisher, &reply, 1);
        let sandbox = kill(daemon);

        let daemon = start(sandbox, &config, &upstream).await;
        let mut client = daemon.bot().await;
        assert_eq!(epoch_of(&client), epoch);
        resume(&mut client, &["alerts"], seq - 1, Some(&epoch)).await;
        let alert = client.recv_json().await;
        assert_eq!(alert["type"], "alert", "{alert}");
        assert_eq!(alert["seq"], seq, "{alert}");
        assert_eq!(alert["text"], "Feed maintenance at noon", "{alert}");
        assert_eq!(alert["level"], "warning", "{alert}");
        // The kill lost the rest of the reservation, on every channel.
        let gap = client.recv_json().await;
        if gap["type"] != "gap" || gap["from"].as_u64() <= Some(seq) {
            client.fail(&format!("expected a gap after seq {seq}, got {gap}"));
        }

        let snapshot = client
            .request(json!({"op": "snapshot", "channels": ["alerts"]}))
            .await;
        assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
        assert!(
            snapshot_events(&snapshot).contains(&alert),
            "a recent alert is last-known state: {snapshot}"
        );
    });
}

#[test]
fn last_known_prices_are_served_after_restart_before_any_feed() {
    smol::block_on(async {
        let mut upstream = FakeUpstream::start().await;
        // Retention keeps one event, but never trims the snapshot.
        let config = config_with(&upstream, FLUSH_MS, "max_events = 1");
        let daemon = start(Sandbox::new(), &config, &upstream).await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices"]).await;
        let mut last = HashMap::new();
        for (symbol, price) in [
            ("BTCUSDT", "67012.50000000"),
            ("ETHUSDT", "3456.78000000"),
            ("BTCUSDT", "67013.00000000"),
        ] {
            upstream.send(&ticker(symbol, price));
            last.insert(symbol, recv_tick(&mut client, symbol, price).await);
        }
        let newest = seq_of(&last["BTCUSDT"]);
        wait_durable(&daemon, newest).await;
        wait_trimmed(&daemon, newest).await;
        let sandbox = kill(daemon);
        // The feed stays down: whatever the daemon knows comes from the
        // journal.
        upstream.shutdown().await;
        let connections = upstream.connections();

        let daemon = Daemon::start_in(sandbox, Some(&config), &[]);
        let mut client = daemon.bot().await;
        let snapshot = client
            .request(json!({"op": "snapshot", "channels": ["prices"], "id": 1}))
            .await;
        assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
        assert_eq!(snapshot["id"], 1, "{snapshot}");
        let ticks: Vec<&Value> = snapshot_events(&snapshot)
            .iter()
            .filter(|e| is_tick(e))
            .collect();
        assert_eq!(ticks.len(), 2, "the latest tick per symbol: {snapshot}");
        for tick in last.values() {
            assert!(
                ticks.contains(&tick),
                "the snapshot should hold {tick} as it was sent: {snapshot}"
            );
        }
        // The feed's last-known status is not shown as fresh: it is down.
        let status = client
            .request(json!({"op": "snapshot", "channels": ["status"]}))
            .await;
        let feed = snapshot_events(&status)
            .iter()
            .find(|e| e["feed"] == "binance")
            .unwrap_or_else(|| panic!("the snapshot should hold the feed's status: {status}"));
        assert_ne!(feed["state"], "up", "the feed is down: {status}");
        assert_eq!(upstream.connections(), connections, "the feed was down");
    });
}

#[test]
fn second_daemon_on_the_same_journal_exits_74() {
    smol::block_on(async {
        let first = Daemon::start(&["--feed", DEAD_FEED]);
        let data_dir = first.data_dir();
        let out = Sandbox::new().tablo(&[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--display",
            "none",
            "--feed",
            DEAD_FEED,
            "--data-dir",
            data_dir.to_str().expect("temp paths are UTF-8"),
        ]);
        out.assert_code(EX_IOERR).assert_stderr_has("journal");
        assert!(
            out.stderr.to_lowercase().contains("lock"),
            "the message should say the journal is locked\n{out}"
        );
        // The first daemon goes on, its journal where it was.
        let mut client = first.bot().await;
        client.ping_expect_pong_next(json!(1)).await;
        assert_eq!(healthz(&first)["journal"]["writable"], true);
        let moved = std::fs::read_dir(&data_dir)
            .expect("read the data dir")
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("journal.corrupt")
            });
        assert!(!moved, "a locked journal must not be moved aside");
    });
}

/// `len` bytes that look random and are the same on every run (xorshift).
fn garbage(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn garbage_journal_is_moved_aside_and_the_daemon_starts() {
    smol::block_on(async {
        let daemon = Daemon::start_in(Sandbox::new(), None, &["--feed", DEAD_FEED]);
        let old_epoch = epoch_of(&daemon.bot().await);
        let sandbox = stop_cleanly(daemon);
        let journal = sandbox.data_dir().join("journal");
        for (name, seed) in [("db", 1), ("conf", 2)] {
            std::fs::write(journal.join(name), garbage(64 * 1024, seed))
                .unwrap_or_else(|e| panic!("overwrite journal/{name}: {e}"));
        }

        let daemon = Daemon::start_in(sandbox, None, &["--feed", DEAD_FEED]);
        let stderr = daemon.stderr();
        assert!(
            stderr.contains("moved") && stderr.contains("journal.corrupt-"),
            "the daemon should say loudly where it moved the journal:\n{stderr}"
        );
        let moved: Vec<String> = std::fs::read_dir(daemon.data_dir())
            .expect("read the data dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("journal.corrupt-"))
            .collect();
        assert_eq!(moved.len(), 1, "one journal moved aside: {moved:?}");

        let mut client = daemon.bot().await;
        let epoch = epoch_of(&client);
        assert_ne!(epoch, old_epoch, "a new journal has a new epoch");
        resume(&mut client, &["prices"], 1, Some(&old_epoch)).await;
        expect_reset_then_snapshot(&mut client).await;
        assert_eq!(healthz(&daemon)["journal"]["writable"], true);
    });
}

#[test]
fn healthz_and_metrics_report_the_journal() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let daemon = start(Sandbox::new(), &config(&upstream), &upstream).await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices"]).await;
        let commits = daemon.metric("tablo_journal_commits_total");
        upstream.send(&ticker("BTCUSDT", "67012.50"));
        let tick = recv_tick(&mut client, "BTCUSDT", "67012.50").await;
        let seq = seq_of(&tick);
        wait_durable(&daemon, seq).await;

        assert!(daemon.metric("tablo_journal_commits_total") > commits);
        assert!(daemon.metric("tablo_journal_last_commit_seconds") > 0.0);
        assert_eq!(
            daemon.metric("tablo_journal_commit_seconds_count"),
            daemon.metric("tablo_journal_commit_seconds_bucket{le=\"+Inf\"}"),
        );
        assert!(daemon.metric("tablo_journal_commit_seconds_count") > commits);
        assert!(daemon.metric("tablo_journal_commit_seconds_sum") > 0.0);
        // The feed's status events and the tick.
        assert!(daemon.metric("tablo_journal_events") >= 1.0);
        assert!(daemon.metric("tablo_journal_durable_seq") >= seq as f64);

        client.send_json(json!({"op": "stats"})).await;
        let stats = client.recv_until(|f| f["type"] == "stats").await;
        let journal = &stats["journal"];
        assert!(journal["last_seq"].as_u64() >= Some(seq), "{stats}");
        assert!(journal["events"].as_u64() >= Some(1), "{stats}");
        assert!(journal["bytes"].as_u64() > Some(0), "{stats}");
        assert!(journal["first_seq"].as_u64() <= Some(seq), "{stats}");

        let health = healthz(&daemon);
        let journal = &health["journal"];
        assert_eq!(journal["writable"], true, "{health}");
        assert!(journal["last_seq"].as_u64() >= Some(seq), "{health}");
        assert!(journal["events"].as_u64() >= Some(1), "{health}");
        assert!(journal["first_seq"].as_u64() <= Some(seq), "{health}");
    });
}

/// Issue 16: a journal whose limits need more disk than its filesystem has
/// free is warned about at start, naming the dir and what to do; the daemon
/// runs on.
#[test]
fn limits_larger_than_the_free_space_are_warned_about_at_start() {
    // No filesystem here has a pebibyte free.
    let daemon = Daemon::start_with_config("[journal]\nmax_bytes = \"1024TiB\"\n", &[]);
    // The journal is opened before the board and the listener, so the
    // warning is logged by the time the daemon listens; stderr comes through
    // a pipe and a thread, hence the wait.
    const LOGGED_WITHIN: Duration = Duration::from_secs(2);
    let dir = daemon.data_dir().join("journal");
    daemon.wait_stderr(
        &format!("the journal in {} may fill its disk", dir.display()),
        LOGGED_WITHIN,
    );
    daemon.wait_stderr("lower [journal] max_bytes", LOGGED_WITHIN);
    assert!(
        !daemon.stderr().contains("ERROR"),
        "only a warning\n{}",
        daemon.stderr()
    );
    assert_eq!(daemon.http_get("/healthz").0, 200, "the daemon runs on");
}

/// The commit window of [`a_subscriber_never_holds_a_publish_the_journal_then_lost`]:
/// long, so the kill lands inside a window.
const PUBLISH_CRASH_FLUSH_MS: u64 = 300;

/// Publishes sent in one burst there, without waiting for acks (under the
/// per-client burst of 100 ops).
const PUBLISH_BURST: u64 = 80;

#[test]
fn a_subscriber_never_holds_a_publish_the_journal_then_lost() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let config = config_with(&upstream, PUBLISH_CRASH_FLUSH_MS, "");
        let daemon = start(Sandbox::new(), &config, &upstream).await;
        let mut watcher = daemon.bot().await;
        watcher.subscribe(&["alerts"]).await;
        let mut publisher = daemon.ws("/ws?client=bot&token=pub").await;
        for id in 0..PUBLISH_BURST {
            let data = json!({"level": "info", "text": format!("alert {id}")});
            let op = json!({"op": "publish", "channel": "alerts", "data": data, "id": id});
            publisher.send_json(op).await;
        }
        // SIGKILL as soon as the subscriber holds one: before, the whole
        // burst went out at once and most of it was still in the commit
        // window.
        let first = watcher.recv_json().await;
        let sandbox = kill(daemon);
        let (rest, _) = watcher.read_to_end(KILL_WITHIN).await;
        let seen: Vec<Value> = std::iter::once(first)
            .chain(rest)
            .filter(|f| f["type"] == "alert")
            .collect();
        assert!(!seen.is_empty(), "the subscriber got an alert");

        let data_dir = sandbox.data_dir();
        let data_dir = data_dir.to_str().expect("a UTF-8 path");
        let export = sandbox.tablo(&["journal", "export", "--data-dir", data_dir]);
        export.assert_code(0);
        let stored: HashMap<u64, Value> = export
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["type"] == "alert")
            .map(|v| (seq_of(&v), v))
            .collect();
        for alert in &seen {
            assert_eq!(
                stored.get(&seq_of(alert)),
                Some(alert),
                "a subscriber got {alert} live, so the journal must have it after the kill \
                 ({} alerts seen, {} stored)",
                seen.len(),
                stored.len()
            );
        }
    });
}
