//! Upstream feeds to downstream clients: the demo feed, Binance and Coinbase
//! through a fake upstream, filtering by symbol, bad upstream frames,
//! reconnects, snapshots and stats (docs/config.md §11, §12;
//! docs/protocol.md §11, §12).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::harness::{Client, Daemon, FakeUpstream};

/// docs/config.md §9, §11: the demo feed shows live ticks on a first run.
const DEMO_TICKS_WITHIN: Duration = Duration::from_secs(2);

/// Waiting for a feed to come back covers a few rounds of the reconnect
/// backoff (0.5 s doubling, full jitter).
const RECONNECT_WITHIN: Duration = Duration::from_secs(10);

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    since.as_millis() as u64
}

/// A Binance `24hrTicker` event.
pub fn binance_ticker(symbol: &str, price: &str) -> Value {
    json!({
        "e": "24hrTicker",
        "E": now_ms(),
        "s": symbol,
        "p": "1010.00000000",
        "P": "1.53",
        "o": "66000.00000000",
        "c": price,
        "b": "67012.40000000",
        "a": "67012.60000000",
        "v": "12345.67800000",
    })
}

/// A daemon reading one Binance feed (`--feed binance=...`) from a fake
/// upstream that it has connected to.
pub async fn binance_daemon(path: &str) -> (FakeUpstream, Daemon) {
    let upstream = FakeUpstream::start().await;
    let feed = format!("binance={}", upstream.url(path));
    let daemon = Daemon::start(&["--feed", &feed]);
    upstream.wait_connection().await;
    (upstream, daemon)
}

pub fn is_tick(frame: &Value) -> bool {
    frame["type"] == "tick"
}

/// Waits for a tick for `symbol` at `price`.
async fn recv_tick(client: &mut Client, symbol: &str, price: &str) -> Value {
    client
        .recv_until(|f| is_tick(f) && f["symbol"] == symbol && f["price"] == price)
        .await
}

#[test]
fn demo_feed_ticks_within_2s_without_config() {
    smol::block_on(async {
        let daemon = Daemon::start(&[]);
        let mut client = daemon.bot().await;
        client.subscribe(&["prices"]).await;
        let tick = client.recv_until_within(DEMO_TICKS_WITHIN, is_tick).await;
        assert_eq!(tick["channel"], "prices", "{tick}");
        assert!(
            tick["symbol"].as_str().is_some_and(|s| !s.is_empty()),
            "{tick}"
        );
        assert!(
            tick["price"].is_string(),
            "prices are decimal strings: {tick}"
        );
        assert!(tick["seq"].as_u64().is_some(), "{tick}");
        assert!(tick["ts"].as_u64().is_some(), "{tick}");
    });
}

#[test]
fn binance_ticker_price_reaches_clients_byte_for_byte() {
    smol::block_on(async {
        let (upstream, daemon) = binance_daemon("/ws/btcusdt@ticker").await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices"]).await;
        upstream.send(&binance_ticker("BTCUSDT", "67012.50000000").to_string());
        let tick = client.recv_until(is_tick).await;
        assert_eq!(tick["symbol"], "BTCUSDT", "{tick}");
        assert_eq!(tick["price"], "67012.50000000", "{tick}");
        assert_eq!(tick["open"], "66000.00000000", "{tick}");
        assert_eq!(tick["change_pct"], "1.53", "{tick}");
        assert_eq!(tick["bid"], "67012.40000000", "{tick}");
        assert_eq!(tick["ask"], "67012.60000000", "{tick}");
        assert_eq!(tick["volume"], "12345.67800000", "{tick}");
        assert_eq!(tick["channel"], "prices", "{tick}");
        assert_eq!(tick["source"], "binance", "{tick}");
        assert!(tick["seq"].as_u64().is_some(), "{tick}");
        assert!(tick["ts"].as_u64().is_some(), "{tick}");
    });
}

#[test]
fn binance_combined_stream_wrapper_is_unwrapped() {
    smol::block_on(async {
        let (upstream, daemon) = binance_daemon("/stream?streams=ethusdt@ticker").await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices"]).await;
        let wrapped = json!({
            "stream": "ethusdt@ticker",
            "data": binance_ticker("ETHUSDT", "3456.78000000"),
        });
        upstream.send(&wrapped.to_string());
        let tick = client.recv_until(is_tick).await;
        assert_eq!(tick["symbol"], "ETHUSDT", "{tick}");
        assert_eq!(tick["price"], "3456.78000000", "{tick}");
    });
}

#[test]
fn binance_symbols_are_subscribed_upstream() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let config = format!(
            r#"
[[feed]]
name = "spot"
format = "binance"
url = "{}"
symbols = ["BTCUSDT", "ETHUSDT"]
"#,
            upstream.url("/ws")
        );
        let _daemon = Daemon::start_with_config(&config, &[]);
        upstream.wait_connection().await;
        // One SUBSCRIBE for both streams, or one per stream: either will do.
        let wanted = BTreeSet::from(["btcusdt@ticker".to_owned(), "ethusdt@ticker".to_owned()]);
        let mut streams = BTreeSet::new();
        while !wanted.is_subset(&streams) {
            let text = upstream.recv().await;
            let frame: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("the daemon sent non-JSON upstream ({e}): {text}"));
            assert_eq!(frame["method"], "SUBSCRIBE", "unexpected frame: {frame}");
            assert!(
                frame["id"].as_u64().is_some(),
                "SUBSCRIBE needs a numeric id: {frame}"
            );
            let params = frame["params"]
                .as_array()
                .unwrap_or_else(|| panic!("SUBSCRIBE params should be an array: {frame}"));
            streams.extend(
                params
                    .iter()
                    .map(|p| p.as_str().unwrap_or_default().to_owned()),
            );
        }
        assert_eq!(streams, wanted);
    });
}

#[test]
fn symbol_channel_gets_only_that_symbol() {
    smol::block_on(async {
        let (upstream, daemon) = binance_daemon("/ws").await;
        let mut btc_only = daemon.bot().await;
        btc_only.subscribe(&["prices.BTCUSDT"]).await;
        let mut all = daemon.bot().await;
        all.subscribe(&["prices"]).await;

        upstream.send(&binance_ticker("ETHUSDT", "3456.78000000").to_string());
        upstream.send(&binance_ticker("BTCUSDT", "67012.50000000").to_string());

        let first = btc_only.recv_until(is_tick).await;
        assert_eq!(
            first["symbol"], "BTCUSDT",
            "ETHUSDT leaked into prices.BTCUSDT: {first}"
        );
        assert_eq!(first["price"], "67012.50000000", "{first}");

        let eth = all.recv_until(is_tick).await;
        assert_eq!(eth["symbol"], "ETHUSDT", "{eth}");
        let btc = all.recv_until(is_tick).await;
        assert_eq!(btc["symbol"], "BTCUSDT", "{btc}");
        assert!(
            btc["seq"].as_u64() > eth["seq"].as_u64(),
            "seq should increase: {eth} then {btc}"
        );
    });
}

#[test]
fn coinbase_ticker_reaches_clients_and_symbols_are_subscribed() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let config = format!(
            r#"
[[feed]]
name = "coinbase"
format = "coinbase"
url = "{}"
symbols = ["BTC-USD"]
"#,
            upstream.url("/")
        );
        let daemon = Daemon::start_with_config(&config, &[]);
        upstream.wait_connection().await;

        let text = upstream.recv().await;
        let subscribe: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the daemon sent non-JSON upstream ({e}): {text}"));
        assert_eq!(subscribe["type"], "subscribe", "{subscribe}");
        assert_eq!(subscribe["product_ids"], json!(["BTC-USD"]), "{subscribe}");
        let channels = subscribe["channels"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(channels.contains(&json!("ticker")), "{subscribe}");

        let mut client = daemon.bot().await;
        client.subscribe(&["prices"]).await;
        let ticker = json!({
            "type": "ticker",
            "sequence": 123456,
            "product_id": "BTC-USD",
            "price": "67012.01",
            "open_24h": "66000.5",
            "volume_24h": "1234.56789012",
            "low_24h": "65000",
            "high_24h": "68000",
            "best_bid": "67012.00",
            "best_ask": "67012.02",
            "side": "buy",
            "time": "2024-05-01T12:00:00.123456Z",
            "trade_id": 42,
            "last_size": "0.01",
        });
        upstream.send(&ticker.to_string());
        let tick = client.recv_until(is_tick).await;
        assert_eq!(tick["symbol"], "BTC-USD", "{tick}");
        assert_eq!(tick["price"], "67012.01", "{tick}");
        assert_eq!(tick["open"], "66000.5", "{tick}");
        assert_eq!(tick["bid"], "67012.00", "{tick}");
        assert_eq!(tick["ask"], "67012.02", "{tick}");
        assert_eq!(tick["volume"], "1234.56789012", "{tick}");
        assert_eq!(tick["source"], "coinbase", "{tick}");
    });
}

#[test]
fn garbage_from_upstream_is_skipped_and_the_feed_stays_up() {
    smol::block_on(async {
        let (upstream, daemon) = binance_daemon("/ws").await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices", "status"]).await;

        for garbage in [
            "this is not json",
            "{\"e\":\"24hrTicker\",\"s\":\"BTCUSDT\"",
            "[1,2,3]",
            "{\"e\":\"24hrTicker\",\"s\":\"BTCUSDT\"}",
            "{\"stream\":\"btcusdt@ticker\",\"data\":\"nope\"}",
            "{\"result\":null,\"id\":1}",
        ] {
            upstream.send(garbage);
        }
        upstream.send(&binance_ticker("BTCUSDT", "101.25000000").to_string());

        let mut down = None;
        let tick = client
            .recv_until(|f| {
                if f["type"] == "status" && f["state"] == "down" {
                    down = Some(f.clone());
                }
                is_tick(f)
            })
            .await;
        assert_eq!(down, None, "the feed went down on garbage");
        assert_eq!(tick["symbol"], "BTCUSDT", "{tick}");
        assert_eq!(
            tick["price"], "101.25000000",
            "a tick came from garbage: {tick}"
        );
        assert_eq!(
            upstream.connections(),
            1,
            "the daemon reconnected on garbage"
        );
    });
}

#[test]
fn feed_reconnects_after_upstream_restart() {
    smol::block_on(async {
        let (mut upstream, daemon) = binance_daemon("/ws").await;
        let mut client = daemon.bot().await;
        client.subscribe(&["status", "prices"]).await;
        let is_status = |state: &'static str| {
            move |f: &Value| f["type"] == "status" && f["feed"] == "binance" && f["state"] == state
        };

        upstream.shutdown().await;
        let down = client.recv_until(is_status("down")).await;
        assert_eq!(down["channel"], "status", "{down}");
        assert!(down["seq"].as_u64().is_some(), "{down}");

        upstream.restart().await;
        client
            .recv_until_within(RECONNECT_WITHIN, is_status("up"))
            .await;
        assert_eq!(upstream.wait_connection().await, 2);

        upstream.send(&binance_ticker("BTCUSDT", "67100.00000000").to_string());
        recv_tick(&mut client, "BTCUSDT", "67100.00000000").await;
    });
}

#[test]
fn snapshot_returns_latest_tick_per_symbol() {
    smol::block_on(async {
        let (upstream, daemon) = binance_daemon("/ws").await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices"]).await;
        for (symbol, price) in [
            ("BTCUSDT", "67000.00000000"),
            ("ETHUSDT", "3400.00000000"),
            ("BTCUSDT", "67050.00000000"),
        ] {
            upstream.send(&binance_ticker(symbol, price).to_string());
        }
        let last = recv_tick(&mut client, "BTCUSDT", "67050.00000000").await;

        client
            .send_json(json!({"op": "snapshot", "channels": ["prices"]}))
            .await;
        let snapshot = client.recv_until(|f| f["type"] == "snapshot").await;
        assert!(
            snapshot["seq"].as_u64() >= last["seq"].as_u64(),
            "the snapshot is older than the last tick sent ({last}): {snapshot}"
        );
        let events = snapshot["events"]
            .as_array()
            .unwrap_or_else(|| panic!("snapshot events should be an array: {snapshot}"));
        let ticks: Vec<&Value> = events.iter().filter(|e| is_tick(e)).collect();
        let price_of = |symbol: &str| {
            let found: Vec<&Value> = ticks
                .iter()
                .copied()
                .filter(|t| t["symbol"] == symbol)
                .collect();
            assert_eq!(
                found.len(),
                1,
                "one tick per symbol for {symbol}: {snapshot}"
            );
            found[0]["price"].clone()
        };
        assert_eq!(price_of("BTCUSDT"), "67050.00000000", "{snapshot}");
        assert_eq!(price_of("ETHUSDT"), "3400.00000000", "{snapshot}");
    });
}

#[test]
fn stats_counts_connections_client_types_and_upstreams() {
    smol::block_on(async {
        let (upstream, daemon) = binance_daemon("/ws").await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices"]).await;
        // A tick through proves the feed is up.
        upstream.send(&binance_ticker("BTCUSDT", "67000.00000000").to_string());
        recv_tick(&mut client, "BTCUSDT", "67000.00000000").await;

        client.send_json(json!({"op": "stats"})).await;
        let stats = client.recv_until(|f| f["type"] == "stats").await;
        assert!(stats["connections"].as_u64() >= Some(1), "{stats}");
        assert!(stats["sessions_total"].as_u64() >= Some(1), "{stats}");
        assert!(stats["client_types"]["bot"].as_u64() >= Some(1), "{stats}");
        assert!(stats["uptime_s"].as_u64().is_some(), "{stats}");
        assert!(stats["journal"].is_object(), "{stats}");
        let upstreams = stats["upstreams"]
            .as_array()
            .unwrap_or_else(|| panic!("upstreams should be an array: {stats}"));
        let feed = upstreams
            .iter()
            .find(|u| u["name"] == "binance")
            .unwrap_or_else(|| panic!("no upstream named binance: {stats}"));
        assert_eq!(feed["format"], "binance", "{stats}");
        assert_eq!(feed["state"], "up", "{stats}");
        assert!(feed["reconnects"].as_u64().is_some(), "{stats}");
    });
}
