//! Slow clients (docs/protocol.md §17): a client that stops reading never slows
//! the others; its ticks are conflated, and once its news passes the byte cap
//! it is closed with 1013.
//!
//! The upstream is a fake Tablo (`--feed tablo=...`), whose events may carry
//! any `source` and `title`, so each event can be made ~2 KiB and a few
//! thousand of them fill a stalled client's socket buffers (a few MiB on
//! loopback) and then its 512 KiB outbox. The flood is paced by a client
//! that reads: each batch goes out only once that client has received the
//! previous one, so it never falls behind itself, however slow the machine.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Client, Daemon, Ending, FakeUpstream};

/// Bytes of padding per event: with these, a few thousand events are
/// several MiB.
const PAD: usize = 2048;

/// Events sent before waiting for the reading client to catch up: 128 KiB,
/// a quarter of the 512 KiB per-client cap.
const BATCH: usize = 64;

/// A flood goes on, batch by batch, until the daemon reports what the test
/// waits for; this caps it at ~34 MiB. A stalled client's kernel buffers
/// hold a few MiB (the daemon's send buffer grows to `tcp_wmem` max, 4 MiB
/// by default, plus the client's receive buffer), its outbox 512 KiB more.
const MAX_FLOOD: usize = 16 * 1024;

/// How long a stalled client may take to read what is buffered for it and
/// see its connection end.
const END_WITHIN: Duration = Duration::from_secs(10);

/// A daemon reading a fake upstream Tablo, connected, with its subscribe
/// frame received.
async fn tablo_fed_daemon() -> (FakeUpstream, Daemon) {
    let upstream = FakeUpstream::start().await;
    let feed = format!("tablo={}", upstream.url("/ws"));
    let daemon = Daemon::start(&["--feed", &feed]);
    upstream.wait_connection().await;
    upstream.recv().await;
    (upstream, daemon)
}

/// Upstream news number `i`, ~[`PAD`] bytes.
fn big_news(i: usize) -> String {
    json!({
        "type": "news",
        "seq": i + 1,
        "channel": "news",
        "title": format!("#{i:05} {}", "x".repeat(PAD)),
        "ts": 1_700_000_000_000u64 + i as u64,
        "source": "flood",
    })
    .to_string()
}

/// The `i` in a news title made by [`big_news`].
fn news_index(frame: &Value) -> Option<usize> {
    frame["title"].as_str()?.get(1..6)?.parse().ok()
}

/// Upstream tick number `i` for `symbol`: its `volume` is `i`, so a
/// client can tell older from newer; ~[`PAD`] bytes through `source`.
fn big_tick(symbol: &str, i: usize, price: &str) -> String {
    json!({
        "type": "tick",
        "seq": i + 1,
        "channel": "prices",
        "symbol": symbol,
        "price": price,
        "volume": i.to_string(),
        "ts": 1_700_000_000_000u64 + i as u64,
        "source": format!("flood-{}", "x".repeat(PAD)),
    })
    .to_string()
}

/// The `i` of a tick made by [`big_tick`].
fn tick_index(frame: &Value) -> u64 {
    frame["volume"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a flood tick should carry its index as volume: {frame}"))
}

/// Reads `reader`'s frames until one matches `last`, checking that every
/// event's `seq` is one past the previous event's; `prev_seq` carries that
/// across calls. Returns the frames, events only.
async fn read_through(
    reader: &mut Client,
    prev_seq: &mut Option<u64>,
    mut last: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let frame = reader.recv_json().await;
        let Some(seq) = frame["seq"]
            .as_u64()
            .filter(|_| frame["channel"].is_string())
        else {
            reader.fail(&format!("only events should come now, got {frame}"));
        };
        if let Some(prev) = *prev_seq
            && seq != prev + 1
        {
            reader.fail(&format!(
                "seq {seq} follows seq {prev}: events were lost or reordered"
            ));
        }
        *prev_seq = Some(seq);
        let done = last(&frame);
        events.push(frame);
        if done {
            return events;
        }
    }
}

/// Fails unless `frame` is the feed's own `up` status, the only non-flood
/// event that may come (when the client subscribed before the feed was up).
fn assert_feed_up(reader: &Client, frame: &Value) {
    if frame["type"] != "status" || frame["feed"] != "tablo" || frame["state"] != "up" {
        reader.fail(&format!("unexpected event during the flood: {frame}"));
    }
}

#[test]
fn slow_client_is_closed_with_1013_and_others_keep_everything() {
    smol::block_on(async {
        let (upstream, daemon) = tablo_fed_daemon().await;
        let mut stalled = daemon.bot().await;
        stalled.subscribe(&["*"]).await;
        let mut reader = daemon.bot().await;
        reader.subscribe(&["*"]).await;

        let mut prev_seq = None;
        let mut next = 0;
        let mut sent = 0;
        while daemon.metric("tablo_slow_client_closes_total") < 1.0 {
            if sent >= MAX_FLOOD {
                stalled.fail(&format!(
                    "the stalled client was not closed after {sent} news of {PAD} bytes"
                ));
            }
            let (start, end) = (sent, sent + BATCH);
            sent = end;
            for i in start..end {
                upstream.send(&big_news(i));
            }
            let events = read_through(&mut reader, &mut prev_seq, |f| {
                news_index(f) == Some(end - 1)
            })
            .await;
            for event in &events {
                if event["type"] != "news" {
                    assert_feed_up(&reader, event);
                    continue;
                }
                if news_index(event) != Some(next) {
                    reader.fail(&format!("expected news #{next}, got {event}"));
                }
                assert_eq!(event["source"], "flood", "{event}");
                next += 1;
            }
        }
        assert_eq!(next, sent, "the reading client should get every news");

        // The stalled client is closed: with 1013 if the close frame got
        // through, else by EOF or a reset (its socket was full).
        let (frames, ending) = stalled.read_to_end(END_WITHIN).await;
        let news = frames.iter().filter(|f| f["type"] == "news").count();
        // What it got is a gap-free prefix, so it can resume after the last.
        for (n, frame) in frames.iter().filter(|f| f["type"] == "news").enumerate() {
            assert_eq!(
                news_index(frame),
                Some(n),
                "the stalled client's news should be #0, #1, … in order: {frame}"
            );
        }
        assert!(
            news < sent,
            "the stalled client got all {sent} news and was not closed"
        );
        let how = match ending {
            Ending::Closed(code) => {
                assert_eq!(
                    code, 1013,
                    "a slow client is closed with 1013 (after {news} news)"
                );
                format!("closed with {code}")
            }
            Ending::Ended(why) => why,
        };
        let closes = daemon.metric("tablo_slow_client_closes_total");
        assert!(
            closes >= 1.0,
            "tablo_slow_client_closes_total is {closes}, yet the client's connection ended ({how})"
        );

        // The reader is still connected and served.
        reader.ping_expect_pong_next(json!("after")).await;
    });
}

#[test]
fn slow_client_ticks_are_conflated() {
    smol::block_on(async {
        const SYMBOLS: [&str; 4] = ["AAA", "BBB", "CCC", "DDD"];
        let (upstream, daemon) = tablo_fed_daemon().await;
        let mut stalled = daemon.bot().await;
        stalled.subscribe(&["prices"]).await;
        let mut reader = daemon.bot().await;
        reader.subscribe(&["prices"]).await;

        // Until well past the first conflation: the stalled client's
        // socket is full and its outbox holds a tick per symbol.
        let mut prev_seq = None;
        let mut sent = 0;
        while daemon.metric("tablo_conflations_total") < BATCH as f64 {
            if sent >= MAX_FLOOD {
                stalled.fail(&format!(
                    "ticks were not conflated after {sent} ticks of {PAD} bytes"
                ));
            }
            let (start, end) = (sent, sent + BATCH);
            sent = end;
            for i in start..end {
                let symbol = SYMBOLS[i % SYMBOLS.len()];
                upstream.send(&big_tick(symbol, i, &format!("{}.25", 100 + i)));
            }
            let events = read_through(&mut reader, &mut prev_seq, |f| {
                f["type"] == "tick" && tick_index(f) == end as u64 - 1
            })
            .await;
            if let Some(other) = events.iter().find(|e| e["type"] != "tick") {
                reader.fail(&format!("only ticks should come: {other}"));
            }
        }
        // The final, distinctive tick per symbol.
        let finals: BTreeMap<&str, String> = SYMBOLS
            .iter()
            .enumerate()
            .map(|(n, s)| (*s, format!("999999.{n}")))
            .collect();
        for (n, (symbol, price)) in finals.iter().enumerate() {
            upstream.send(&big_tick(symbol, sent + n, price));
        }
        // Once the reader has them, the hub has queued them for everyone.
        read_through(&mut reader, &mut prev_seq, |f| {
            f["type"] == "tick" && tick_index(f) == (sent + SYMBOLS.len() - 1) as u64
        })
        .await;

        // The stalled client reads at last. Its ping is answered after
        // everything queued before it, so the frames before the pong are all
        // it will ever get of the flood.
        stalled.send_json(json!({"op": "ping", "id": "end"})).await;
        let mut ticks = Vec::new();
        loop {
            let frame = stalled.recv_json_within(END_WITHIN).await;
            match frame["type"].as_str() {
                Some("tick") => ticks.push(frame),
                Some("pong") => break,
                _ => stalled.fail(&format!("unexpected frame: {frame}")),
            }
        }
        let mut last: BTreeMap<String, Value> = BTreeMap::new();
        for tick in &ticks {
            let symbol = tick["symbol"].as_str().unwrap_or_default().to_owned();
            if let Some(prev) = last.get(&symbol)
                && tick_index(prev) >= tick_index(tick)
            {
                stalled.fail(&format!(
                    "{symbol}: an older tick came after a newer one: {prev} then {tick}"
                ));
            }
            last.insert(symbol, tick.clone());
        }
        for (symbol, price) in &finals {
            let tick = last
                .get(*symbol)
                .unwrap_or_else(|| panic!("the stalled client got no tick for {symbol}"));
            assert_eq!(
                tick["price"], **price,
                "the stalled client's last {symbol} tick should be the newest"
            );
        }
        assert!(
            ticks.len() < sent,
            "the stalled client got all {} ticks: nothing was conflated",
            ticks.len()
        );
        let conflations = daemon.metric("tablo_conflations_total");
        assert!(
            conflations > 0.0,
            "tablo_conflations_total is {conflations}"
        );
        assert_eq!(
            daemon.metric("tablo_slow_client_closes_total"),
            0.0,
            "conflated ticks never close a client"
        );
    });
}
