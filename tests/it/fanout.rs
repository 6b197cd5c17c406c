//! The fan-out threads (`[server] threads`, docs/config.md §5): clients
//! split over several writing threads still get every event once, in
//! order, from one serialization; a stalled client on a fan-out thread is
//! still closed with 1013 while the others keep everything; bad values are
//! refused with the key and the range.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Client, Daemon, Ending, FakeUpstream, Sandbox};

/// Clients spread over the shards: several per thread.
const CLIENTS: usize = 24;

/// News events sent to all of them.
const EVENTS: usize = 200;

/// Padding per event in the stalled-client test: a few thousand fill a
/// stalled client's socket buffers and then its 512 KiB outbox.
const PAD: usize = 2048;

/// Events per batch in the stalled-client test, paced by the readers.
const BATCH: usize = 64;

/// The stalled-client flood stops here (~34 MiB) if no close came.
const MAX_FLOOD: usize = 16 * 1024;

/// How long a stalled client may take to see its connection end.
const END_WITHIN: Duration = Duration::from_secs(10);

/// A daemon with `threads` fan-out threads reading a fake upstream Tablo,
/// with the upstream's subscribe received.
async fn daemon_with_threads(threads: usize) -> (FakeUpstream, Daemon) {
    let upstream = FakeUpstream::start().await;
    let feed = format!("tablo={}", upstream.url("/ws"));
    let config = format!("[server]\nthreads = {threads}\n");
    let daemon = Daemon::start_with_config(&config, &["--feed", &feed]);
    upstream.wait_connection().await;
    upstream.recv().await;
    (upstream, daemon)
}

/// Upstream news number `i`, with `pad` bytes of title padding.
fn news(i: usize, pad: usize) -> String {
    json!({
        "type": "news",
        "seq": i + 1,
        "channel": "news",
        "title": format!("#{i:05} {}", "x".repeat(pad)),
        "ts": 1_700_000_000_000u64 + i as u64,
        "source": "fanout",
    })
    .to_string()
}

/// The `i` in a title made by [`news`].
fn news_index(frame: &Value) -> Option<usize> {
    frame["title"].as_str()?.get(1..6)?.parse().ok()
}

/// Reads `client`'s news until #`last`, failing on a gap, a repeat or a
/// reorder (`next` is the index expected next, carried across calls).
async fn read_news_through(client: &mut Client, next: &mut usize, last: usize) {
    while *next <= last {
        let frame = client.recv_json().await;
        if frame["type"] != "news" {
            // The feed's own `up` status may come first; nothing else.
            if frame["type"] == "status" && frame["feed"] == "tablo" {
                continue;
            }
            client.fail(&format!("only news should come, got {frame}"));
        }
        if news_index(&frame) != Some(*next) {
            client.fail(&format!("expected news #{next}, got {frame}"));
        }
        *next += 1;
    }
}

#[test]
fn every_client_on_every_shard_gets_every_event_in_order_from_one_serialization() {
    smol::block_on(async {
        let (upstream, daemon) = daemon_with_threads(4).await;
        assert_eq!(daemon.metric("tablo_fanout_threads"), 4.0);
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let mut client = daemon.bot().await;
            client.subscribe(&["news"]).await;
            clients.push(client);
        }
        for i in 0..EVENTS {
            upstream.send(&news(i, 0));
        }
        // Every client, whichever thread writes to it, gets #0..#199 in
        // order, none twice (the reads of one client are awaited in turn;
        // the others' frames wait in their sockets meanwhile).
        for client in &mut clients {
            let mut next = 0;
            read_news_through(client, &mut next, EVENTS - 1).await;
        }
        // Each event numbered (and serialized) once, queued once per client.
        assert_eq!(
            daemon.metric("tablo_events_in_total{channel=\"news\"}"),
            EVENTS as f64
        );
        assert_eq!(
            daemon.metric("tablo_frames_out_total{channel=\"news\"}"),
            (EVENTS * CLIENTS) as f64
        );
        for client in &mut clients {
            client.ping_expect_pong_next(json!("after")).await;
        }
    });
}

#[test]
fn a_stalled_client_on_a_fanout_thread_is_closed_with_1013_and_the_others_keep_everything() {
    smol::block_on(async {
        let (upstream, daemon) = daemon_with_threads(2).await;
        // Shards are filled least-loaded first, in the order clients join:
        // the hub's own thread, fanout-1 (the stalled client), then a
        // reader on each.
        let mut first = daemon.bot().await;
        first.subscribe(&["news"]).await;
        let mut stalled = daemon.bot().await;
        stalled.subscribe(&["news"]).await;
        let mut readers = vec![first];
        for _ in 0..2 {
            let mut reader = daemon.bot().await;
            reader.subscribe(&["news"]).await;
            readers.push(reader);
        }
        let mut next = vec![0; readers.len()];
        let mut sent = 0;
        while daemon.metric("tablo_slow_client_closes_total") < 1.0 {
            if sent >= MAX_FLOOD {
                stalled.fail(&format!(
                    "the stalled client was not closed after {sent} news of {PAD} bytes"
                ));
            }
            let end = sent + BATCH;
            for i in sent..end {
                upstream.send(&news(i, PAD));
            }
            sent = end;
            for (reader, next) in readers.iter_mut().zip(next.iter_mut()) {
                read_news_through(reader, next, end - 1).await;
            }
        }
        let (frames, ending) = stalled.read_to_end(END_WITHIN).await;
        let got: Vec<Option<usize>> = frames
            .iter()
            .filter(|f| f["type"] == "news")
            .map(news_index)
            .collect();
        let prefix: Vec<Option<usize>> = (0..got.len()).map(Some).collect();
        assert_eq!(
            got, prefix,
            "the stalled client's news are a gap-free prefix"
        );
        assert!(got.len() < sent, "the stalled client got everything");
        if let Ending::Closed(code) = ending {
            assert_eq!(code, 1013, "a slow client is closed with 1013");
        }
        for reader in &mut readers {
            reader.ping_expect_pong_next(json!("after")).await;
        }
    });
}

#[test]
fn threads_out_of_range_are_refused_and_the_count_is_printed() {
    let sandbox = Sandbox::new();
    for bad in ["0", "17"] {
        let config = sandbox.write("bad.toml", &format!("[server]\nthreads = {bad}\n"));
        let out = sandbox.tablo(&["check", "--config", config.to_str().unwrap()]);
        out.assert_code(78).assert_stderr_has(&format!(
            "bad.toml:2: [server] threads: {bad} is out of range; use 1 to 16"
        ));
    }
    let config = sandbox.write("good.toml", "[server]\nthreads = 3\n");
    let out = sandbox.tablo(&["check", "--config", config.to_str().unwrap()]);
    out.assert_code(0);
    let resolved: toml::Table = toml::from_str(&out.stdout).expect("`check` prints TOML");
    assert_eq!(resolved["server"]["threads"].as_integer(), Some(3), "{out}");
}
