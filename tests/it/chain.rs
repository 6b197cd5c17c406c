//! A chain of Tablos (format `tablo`, docs/config.md §11; its position
//! across a restart, docs/durability.md §15): one daemon reads another's
//! downstream protocol and relays its events unchanged.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Client, Daemon, FakeUpstream, RECV_TIMEOUT, Sandbox};
use crate::relay::{binance_ticker, is_tick};

/// Ticks to collect from the downstream daemon. The demo feed moves one to
/// three symbols every 250 ms, so this takes a couple of seconds.
const TICKS: usize = 10;

/// How long the downstream daemon may take to relay a demo tick: the demo
/// feed ticks several times a second.
const TICK_WITHIN: Duration = Duration::from_secs(3);

/// How long the downstream daemon may take to notice its upstream is gone.
const DOWN_WITHIN: Duration = Duration::from_secs(5);

/// `(symbol, price)` of a tick.
fn pair(tick: &Value) -> (String, String) {
    let text = |key: &str| tick[key].as_str().unwrap_or_default().to_owned();
    (text("symbol"), text("price"))
}

/// The state the stats report for the upstream named `name`.
async fn upstream_state(client: &mut Client, name: &str) -> Value {
    client.send_json(json!({"op": "stats"})).await;
    let stats = client.recv_until(|f| f["type"] == "stats").await;
    let upstreams = stats["upstreams"]
        .as_array()
        .unwrap_or_else(|| panic!("upstreams should be an array: {stats}"));
    let feed = upstreams
        .iter()
        .find(|u| u["name"] == name)
        .unwrap_or_else(|| panic!("no upstream named {name}: {stats}"));
    assert_eq!(feed["format"], "tablo", "{stats}");
    feed["state"].clone()
}

#[test]
fn tablo_reads_another_tablo() {
    smol::block_on(async {
        let mut upstream = Daemon::start(&[]);
        // Subscribed before the downstream daemon exists, so it sees every
        // tick the downstream daemon can.
        let mut direct = upstream.bot().await;
        direct.subscribe(&["prices"]).await;
        // The downstream starts from the upstream's last-known state (a
        // snapshot), which may hold ticks sent before `direct` subscribed:
        // take the same snapshot here, after subscribing and so before the
        // downstream's, to know them.
        let mut from_upstream = BTreeSet::new();
        direct
            .send_json(json!({"op": "snapshot", "channels": ["prices"]}))
            .await;
        loop {
            let frame = direct.recv_json().await;
            if is_tick(&frame) {
                from_upstream.insert(pair(&frame));
            } else if frame["type"] == "snapshot" {
                for event in frame["events"].as_array().into_iter().flatten() {
                    from_upstream.insert(pair(event));
                }
                break;
            }
        }

        let feed = format!("tablo=ws://{}/ws?client=relay", upstream.addr());
        let downstream = Daemon::start(&["--feed", &feed]);
        let mut relayed = downstream.bot().await;
        relayed.subscribe(&["prices", "status"]).await;

        let mut from_downstream = BTreeSet::new();
        while from_downstream.len() < TICKS {
            let tick = relayed.recv_until_within(TICK_WITHIN, is_tick).await;
            assert_eq!(
                tick["source"], "demo",
                "the upstream's source is kept: {tick}"
            );
            assert_eq!(tick["channel"], "prices", "{tick}");
            assert!(tick["seq"].as_u64().is_some(), "{tick}");
            from_downstream.insert(pair(&tick));
        }

        // Every relayed (symbol, price) is one the upstream sent: prices
        // pass through digit for digit.
        let deadline = std::time::Instant::now() + RECV_TIMEOUT * 4;
        while !from_downstream.is_subset(&from_upstream) {
            if std::time::Instant::now() > deadline {
                let missing: Vec<_> = from_downstream.difference(&from_upstream).collect();
                direct.fail(&format!(
                    "the downstream daemon relayed ticks the upstream never sent: {missing:?}"
                ));
            }
            match direct.try_recv_json_within(RECV_TIMEOUT).await {
                Some(frame) if is_tick(&frame) => {
                    from_upstream.insert(pair(&frame));
                }
                Some(_) => {}
                None => {
                    let missing: Vec<_> = from_downstream.difference(&from_upstream).collect();
                    direct.fail(&format!(
                        "the downstream daemon relayed ticks the upstream never sent: {missing:?}"
                    ));
                }
            }
        }

        assert_eq!(upstream_state(&mut relayed, "tablo").await, "up");

        // The downstream daemon sees its upstream go away.
        drop(direct);
        upstream.sigterm();
        let down = relayed
            .recv_until_within(DOWN_WITHIN, |f| {
                f["type"] == "status" && f["feed"] == "tablo" && f["state"] == "down"
            })
            .await;
        assert_eq!(down["channel"], "status", "{down}");
        assert_ne!(upstream_state(&mut relayed, "tablo").await, "up");
        let status = upstream.wait_exit(Duration::from_secs(2));
        assert_eq!(
            status.code(),
            Some(0),
            "the upstream daemon exits 0: {status}"
        );
    });
}

/// The price of a tick frame, or "" for any other frame.
fn price_of(frame: &Value) -> &str {
    if is_tick(frame) {
        frame["price"].as_str().unwrap_or_default()
    } else {
        ""
    }
}

#[test]
fn a_chain_loses_nothing_across_a_restart_of_the_downstream() {
    smol::block_on(async {
        let source = FakeUpstream::start().await;
        let upstream = Daemon::start(&["--feed", &format!("binance={}", source.url("/ws"))]);
        source.wait_connection().await;
        let mut direct = upstream.bot().await;
        direct.subscribe(&["prices"]).await;

        let feed = format!("tablo=ws://{}/ws?client=relay", upstream.addr());
        let downstream = Daemon::start_in(Sandbox::new(), None, &["--feed", &feed]);
        let mut relayed = downstream.bot().await;
        relayed.subscribe(&["prices"]).await;
        let epoch = relayed.hello["epoch"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // Prices 1.0, 1.1, 1.2 reach the downstream while it runs.
        let mut last_seen = 0;
        for i in 0..3 {
            let price = format!("1.{i}");
            source.send(&binance_ticker("BTCUSDT", &price).to_string());
            let tick = relayed.recv_until(|f| price_of(f) == price).await;
            last_seen = tick["seq"].as_u64().unwrap_or_default();
        }
        drop(relayed);

        // The downstream stops; the upstream goes on with 1.3 to 1.5.
        downstream.sigterm();
        let stopped = downstream.into_stopped(Duration::from_secs(5));
        assert!(stopped.status.success(), "{}", stopped.stderr);
        for i in 3..6 {
            let price = format!("1.{i}");
            source.send(&binance_ticker("BTCUSDT", &price).to_string());
            direct.recv_until(|f| price_of(f) == price).await;
        }

        // Back up, it resumes from the upstream where it stopped: a client
        // resuming on the downstream gets 1.3, 1.4, 1.5 exactly once, in
        // order, then the next live tick.
        let downstream = Daemon::start_in(stopped.sandbox, None, &["--feed", &feed]);
        let mut resumed = downstream.bot().await;
        assert_eq!(resumed.hello["epoch"], epoch.as_str(), "same journal");
        resumed
            .send_json(json!({"op": "subscribe", "channels": ["prices"], "since": last_seen, "epoch": epoch}))
            .await;
        resumed.recv_until(|f| f["type"] == "subscribed").await;
        for i in 3..6 {
            let price = format!("1.{i}");
            let tick = resumed.recv_until(is_tick).await;
            assert_eq!(price_of(&tick), price, "in order, none missing: {tick}");
        }
        source.send(&binance_ticker("BTCUSDT", "1.6").to_string());
        let next = resumed.recv_until(is_tick).await;
        assert_eq!(
            price_of(&next),
            "1.6",
            "no duplicate before the live tick: {next}"
        );
    });
}
