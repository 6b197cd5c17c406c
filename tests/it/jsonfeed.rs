//! The `json` feed format (docs/config.md §10, §11): any JSON feed, its fields
//! picked with JSON pointers from the config, prices kept digit for digit.

use serde_json::{Value, json};

use crate::harness::{Client, Daemon, FakeUpstream};
use crate::relay::is_tick;

/// The feed's name in the config: the ticks' `source` and the metrics label.
const FEED: &str = "office";

/// A daemon reading one `json` feed from a fake upstream it has connected
/// to, and a client subscribed to `prices` and `status`.
async fn json_daemon() -> (FakeUpstream, Daemon, Client) {
    let upstream = FakeUpstream::start().await;
    let config = format!(
        r#"
[[feed]]
name = "{FEED}"
format = "json"
url = "{}"
subscribe = '{{"op":"sub"}}'

[feed.pointers]
items = "/data"
symbol = "/pair"
price = "/mid"
bid = "/buy"
ask = "/sell"
"#,
        upstream.url("/rates")
    );
    let daemon = Daemon::start_with_config(&config, &[]);
    upstream.wait_connection().await;
    let mut client = daemon.bot().await;
    client.subscribe(&["prices", "status"]).await;
    (upstream, daemon, client)
}

/// The next tick, failing if the feed goes down first.
async fn next_tick(client: &mut Client) -> Value {
    let frame = client
        .recv_until(|f| is_tick(f) || (f["type"] == "status" && f["state"] == "down"))
        .await;
    if !is_tick(&frame) {
        client.fail(&format!("the feed went down: {frame}"));
    }
    frame
}

#[test]
fn json_feed_picks_fields_with_pointers_and_keeps_number_text() {
    smol::block_on(async {
        let (upstream, _daemon, mut client) = json_daemon().await;
        assert_eq!(
            upstream.recv().await,
            r#"{"op":"sub"}"#,
            "the configured subscribe frame, as written"
        );

        upstream.send(
            r#"{"data":[{"pair":"USDIRR","mid":"585000","buy":584500,"sell":"585500"},{"pair":"EURUSD","mid":1.08345000}]}"#,
        );
        let usd = next_tick(&mut client).await;
        assert_eq!(usd["symbol"], "USDIRR", "{usd}");
        assert_eq!(usd["price"], "585000", "{usd}");
        assert_eq!(usd["bid"], "584500", "a number becomes its text: {usd}");
        assert_eq!(usd["ask"], "585500", "{usd}");
        assert_eq!(usd["source"], FEED, "{usd}");
        assert_eq!(usd["channel"], "prices", "{usd}");
        let eur = next_tick(&mut client).await;
        assert_eq!(eur["symbol"], "EURUSD", "{eur}");
        assert_eq!(
            eur["price"], "1.08345000",
            "a number keeps its exact text, trailing zeros too: {eur}"
        );
        assert_eq!(eur["bid"], Value::Null, "no bid pointer match: {eur}");
        assert!(
            eur["seq"].as_u64() > usd["seq"].as_u64(),
            "records keep their order: {usd} then {eur}"
        );

        // By now the daemon has sent everything it sends on connecting.
        assert_eq!(
            upstream.try_recv(),
            None,
            "only the configured subscribe frame goes upstream"
        );
    });
}

#[test]
fn json_record_without_price_skips_the_message_and_the_feed_stays_up() {
    smol::block_on(async {
        let (upstream, daemon, mut client) = json_daemon().await;
        // No price at all.
        upstream.send(r#"{"data":[{"pair":"GBPUSD","buy":"1.2700"}]}"#);
        // A good record next to a bad one: the message is skipped whole.
        upstream.send(r#"{"data":[{"pair":"XAUUSD","mid":"2400.10"},{"pair":"GBPUSD"}]}"#);
        upstream.send(r#"{"data":[{"pair":"GBPUSD","mid":"1.2701"}]}"#);

        let tick = next_tick(&mut client).await;
        assert_eq!(
            (&tick["symbol"], &tick["price"]),
            (&json!("GBPUSD"), &json!("1.2701")),
            "the first tick should come from the first good message: {tick}"
        );
        assert_eq!(upstream.connections(), 1, "the daemon reconnected");
        // The feed task reports a bad message to the hub before it hands
        // over the next good one, so both are counted by now.
        let bad = daemon.metric(&format!("tablo_feed_bad_messages_total{{feed=\"{FEED}\"}}"));
        assert_eq!(bad, 2.0, "two messages were skipped");
        assert_eq!(
            daemon.metric(&format!("tablo_feed_up{{feed=\"{FEED}\"}}")),
            1.0
        );
    });
}
