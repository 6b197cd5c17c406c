//! Limits and hostile input the daemon must survive: running out of file
//! descriptors, an oversized upstream message, upstream error replies,
//! symbols and texts with hidden characters, the cap on symbols.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Client, Daemon, FakeUpstream};
use crate::relay::{binance_daemon, binance_ticker, is_tick};

/// The daemon's open-file limit in the EMFILE test: it uses about a dozen
/// descriptors of its own, so this runs out after a few dozen clients.
const NOFILE: u64 = 48;

/// How many clients the EMFILE test tries to connect at most; past
/// [`NOFILE`].
const MAX_CLIENTS: usize = 60;

/// How long a client waits for its hello while the daemon may be out of
/// descriptors (it then never accepts the connection).
const STARVED_HELLO_WITHIN: Duration = Duration::from_millis(500);

/// How long a client may take to connect once descriptors are free again:
/// the accept loop backs off up to 2 s after errors.
const RECOVER_WITHIN: Duration = Duration::from_secs(8);

/// How long a log line may take to show up.
const LOG_WITHIN: Duration = Duration::from_secs(5);

/// Waiting for a feed to come back covers a few rounds of the reconnect
/// backoff (0.5 s doubling, full jitter).
const RECONNECT_WITHIN: Duration = Duration::from_secs(10);

/// docs/config.md §12 (the daemon's `feed::task::MAX_UPSTREAM_MESSAGE`).
const MAX_UPSTREAM_MESSAGE: usize = 4 << 20;

fn is_status(feed: &'static str, state: &'static str) -> impl Fn(&Value) -> bool {
    move |f| f["type"] == "status" && f["feed"] == feed && f["state"] == state
}

/// Waits for the tick for `symbol` at `price`; fails if the feed goes down
/// first.
async fn tick_while_up(client: &mut Client, feed: &str, symbol: &str, price: &str) -> Value {
    let frame = client
        .recv_until(|f| {
            (is_tick(f) && f["symbol"] == symbol)
                || (f["type"] == "status" && f["feed"] == feed && f["state"] == "down")
        })
        .await;
    if !is_tick(&frame) {
        client.fail(&format!("the feed went down: {frame}"));
    }
    assert_eq!(frame["price"], price, "{frame}");
    frame
}

#[test]
fn accept_errors_do_not_stop_the_server() {
    smol::block_on(async {
        let daemon = Daemon::start_with_nofile_limit(NOFILE, &[]);
        let mut held = Vec::new();
        for _ in 0..MAX_CLIENTS {
            match daemon.try_ws("/ws?client=bot", STARVED_HELLO_WITHIN).await {
                Ok(client) => held.push(client),
                // Out of descriptors: the connection waits in the listen
                // backlog, or is refused. Stop once the daemon said so.
                Err(_) if daemon.stderr().contains("accept failed") => break,
                Err(_) => {}
            }
        }
        assert!(
            held.len() < MAX_CLIENTS,
            "{MAX_CLIENTS} clients connected under a limit of {NOFILE} open files"
        );
        daemon.wait_stderr("accept failed", LOG_WITHIN);

        drop(held);
        let mut client = match daemon.try_ws("/ws?client=bot", RECOVER_WITHIN).await {
            Ok(client) => client,
            Err(why) => panic!(
                "no new client after descriptors were freed: {why}\nstderr:\n{}",
                daemon.stderr()
            ),
        };
        client.ping_expect_pong_next(json!("back")).await;
        let (status, body) = daemon.http_get("/healthz");
        assert_eq!(status, 200, "{body}");
    });
}

#[test]
fn oversized_upstream_message_is_survived() {
    smol::block_on(async {
        let (upstream, daemon) = binance_daemon("/ws").await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices", "status"]).await;
        upstream.send(&binance_ticker("BTCUSDT", "67000.00000000").to_string());
        tick_while_up(&mut client, "binance", "BTCUSDT", "67000.00000000").await;

        // A valid ticker, padded past the limit.
        let mut huge = binance_ticker("BTCUSDT", "1.00000000");
        huge["pad"] = json!("x".repeat(MAX_UPSTREAM_MESSAGE));
        upstream.send(&huge.to_string());
        client.recv_until(is_status("binance", "down")).await;
        daemon.wait_stderr(
            "over the cap of 4194304 bytes (4 MiB, MAX_UPSTREAM_MESSAGE); the message was dropped",
            LOG_WITHIN,
        );
        client
            .recv_until_within(RECONNECT_WITHIN, is_status("binance", "up"))
            .await;
        assert_eq!(upstream.wait_connection().await, 2);

        upstream.send(&binance_ticker("BTCUSDT", "67100.00000000").to_string());
        tick_while_up(&mut client, "binance", "BTCUSDT", "67100.00000000").await;
        let (status, body) = daemon.http_get("/healthz");
        assert_eq!(status, 200, "{body}");
    });
}

#[test]
fn upstream_error_reply_is_skipped() {
    smol::block_on(async {
        // Binance answers a bad request with {"code":…,"msg":…}.
        let (upstream, daemon) = binance_daemon("/ws").await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices", "status"]).await;
        upstream.send(r#"{"code":2,"msg":"Invalid request","id":1}"#);
        upstream.send(&binance_ticker("BTCUSDT", "67200.00000000").to_string());
        tick_while_up(&mut client, "binance", "BTCUSDT", "67200.00000000").await;
        assert_eq!(upstream.connections(), 1, "the daemon reconnected");
        assert_eq!(
            daemon.metric(r#"tablo_feed_bad_messages_total{feed="binance"}"#),
            1.0
        );
        // The operator sees what the upstream said.
        daemon.wait_stderr("Invalid request", LOG_WITHIN);

        // Coinbase sends {"type":"error",…}, e.g. for an unknown product.
        let upstream = FakeUpstream::start().await;
        let config = format!(
            "[[feed]]\nname = \"coinbase\"\nformat = \"coinbase\"\nurl = \"{}\"\nsymbols = [\"BTC-USD\"]\n",
            upstream.url("/")
        );
        let daemon = Daemon::start_with_config(&config, &[]);
        upstream.wait_connection().await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices", "status"]).await;
        upstream.send(
            &json!({
                "type": "error",
                "message": "Failed to subscribe",
                "reason": "NOPE-USD is not a valid product",
            })
            .to_string(),
        );
        upstream.send(
            &json!({
                "type": "ticker",
                "product_id": "BTC-USD",
                "price": "67012.01",
                "best_bid": "67012.00",
                "best_ask": "67012.02",
                "time": "2024-05-01T12:00:00.123456Z",
            })
            .to_string(),
        );
        tick_while_up(&mut client, "coinbase", "BTC-USD", "67012.01").await;
        assert_eq!(upstream.connections(), 1, "the daemon reconnected");
        assert_eq!(
            daemon.metric(r#"tablo_feed_bad_messages_total{feed="coinbase"}"#),
            1.0
        );
        daemon.wait_stderr("Failed to subscribe", LOG_WITHIN);
    });
}

/// A daemon reading one `tablo` feed named `up` from a fake upstream it has
/// connected to, with a publishing token `pub`.
async fn tablo_feed_daemon() -> (FakeUpstream, Daemon) {
    let upstream = FakeUpstream::start().await;
    let config = format!(
        "[server]\ntokens = [{{ token = \"pub\", publish = true }}]\n\n\
         [[feed]]\nname = \"up\"\nformat = \"tablo\"\nurl = \"{}\"\n",
        upstream.url("/ws")
    );
    let daemon = Daemon::start_with_config(&config, &[]);
    upstream.wait_connection().await;
    (upstream, daemon)
}

/// An upstream Tablo's event: `body` with `seq`, `ts` and `source`.
fn upstream_event(seq: u64, mut body: Value) -> String {
    body["seq"] = json!(seq);
    body["ts"] = json!(1_795_362_390_000u64 + seq);
    body["source"] = json!("up");
    body.to_string()
}

#[test]
fn hidden_characters_are_refused_in_symbols_and_stripped_from_texts() {
    smol::block_on(async {
        let (upstream, daemon) = tablo_feed_daemon().await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices", "news", "alerts"]).await;

        // `USD\u{202E}RRI` would show as `USDIRR`: refused, and the tick
        // after it is the first one relayed.
        upstream.send(&upstream_event(
            1,
            json!({"type": "tick", "channel": "prices", "symbol": "USD\u{202E}RRI", "price": "1"}),
        ));
        upstream.send(&upstream_event(
            2,
            json!({"type": "tick", "channel": "prices", "symbol": "USDIRR", "price": "585000"}),
        ));
        let tick = client.recv_until(is_tick).await;
        assert_eq!(tick["symbol"], "USDIRR", "{tick}");
        assert_eq!(tick["price"], "585000", "{tick}");
        assert_eq!(daemon.metric("tablo_refused_symbols_total"), 1.0);
        assert_eq!(
            daemon.metric(r#"tablo_feed_bad_messages_total{feed="up"}"#),
            1.0
        );

        // A title with a bidi override is relayed without it; Persian with
        // its ZWNJ is relayed as sent.
        let persian = "نرخ\u{200C}های جدید ارز از ساعت ۹";
        upstream.send(&upstream_event(
            3,
            json!({"type": "news", "channel": "news", "title": "Gold \u{202E}steady\u{202C} ahead"}),
        ));
        upstream.send(&upstream_event(
            4,
            json!({"type": "news", "channel": "news", "title": persian}),
        ));
        let news = client.recv_until(|f| f["type"] == "news").await;
        assert_eq!(news["title"], "Gold steady ahead", "{news}");
        let news = client.recv_until(|f| f["type"] == "news").await;
        assert_eq!(news["title"], persian, "{news}");

        // A publish goes through the same checks.
        let mut publisher = daemon.ws("/ws?client=bot&token=pub").await;
        let publish = |channel: &str, data: Value, id: u64| json!({"op": "publish", "channel": channel, "data": data, "id": id});
        publisher
            .send_json(publish(
                "alerts",
                json!({"level": "info", "text": "\u{2066}\u{2069}"}),
                1,
            ))
            .await;
        let refused = publisher.expect_error("bad_request").await;
        assert_eq!(refused["id"], 1, "{refused}");
        publisher
            .send_json(publish(
                "prices",
                json!({"symbol": "BTC\u{200B}USDT", "price": "1"}),
                2,
            ))
            .await;
        publisher.expect_error("bad_request").await;
        publisher
            .send_json(publish(
                "alerts",
                json!({"level": "critical", "text": "Market\u{FEFF} closed\u{200F}"}),
                3,
            ))
            .await;
        let alert = client.recv_until(|f| f["type"] == "alert").await;
        assert_eq!(alert["text"], "Market closed", "{alert}");
    });
}

#[test]
fn the_symbol_cap_is_logged_when_a_tick_is_dropped_for_it() {
    /// docs/protocol.md §16: at most this many symbols are kept.
    const MAX_SYMBOLS: u64 = 4096;
    smol::block_on(async {
        let (upstream, daemon) = tablo_feed_daemon().await;
        for seq in 1..=MAX_SYMBOLS + 1 {
            upstream.send(&upstream_event(
                seq,
                json!({"type": "tick", "channel": "prices", "symbol": format!("S{seq}"), "price": "1"}),
            ));
        }
        daemon.wait_stderr(
            &format!(
                "4096 symbols are kept, the most there may be: a tick for the new symbol S{} \
                 from feed up was dropped",
                MAX_SYMBOLS + 1
            ),
            LOG_WITHIN,
        );
        assert_eq!(daemon.metric("tablo_refused_symbols_total"), 1.0);
    });
}
