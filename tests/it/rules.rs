//! `[[alert]]` rules in a real daemon (docs/config.md §15, docs/protocol.md
//! §6, docs/durability.md §18): a fake Binance upstream sends ticks, a real
//! WebSocket client gets the alerts with their fields and seqs, a restart on
//! the same data dir fires nothing whose condition still holds, stale rules
//! fire and come back, and `tablo check` reports bad rules by line.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{Client, Daemon, FakeUpstream, Sandbox};
use crate::relay::binance_ticker;

/// Exit code for a bad config (sysexits EX_CONFIG).
const EX_CONFIG: i32 = 78;

/// A stale rule's `after` in these tests; short, the wait is on the alert.
const STALE_WITHIN: Duration = Duration::from_secs(10);

/// A config reading one Binance feed from `url`, with `rules` after it.
fn config(url: &str, rules: &str) -> String {
    format!(
        "[[board.rows]]\nsymbol = \"BTCUSDT\"\nlabel = \"Bitcoin\"\n\n[[feed]]\nname = \"spot\"\nformat = \"binance\"\nurl = \"{url}\"\n\n{rules}"
    )
}

const ABOVE: &str = r#"
[[alert]]
name = "btc-70k"
kind = "above"
symbol = "BTCUSDT"
price = "70000"
hysteresis = "1%"
cooldown = "0s"
text = "{label} passed 70,000: {price}"
"#;

/// Sends a tick and waits for it; returns it.
async fn tick(upstream: &FakeUpstream, client: &mut Client, symbol: &str, price: &str) -> Value {
    upstream.send(&binance_ticker(symbol, price).to_string());
    client
        .recv_until(|f| f["type"] == "tick" && f["symbol"] == symbol && f["price"] == price)
        .await
}

/// Sends a tick and returns the frame right after it: the alert it fired,
/// or `None` when the next frame is the marker tick sent behind it. The hub
/// fires a rule's alert in the same turn as its tick, so nothing can come
/// between them.
async fn tick_fires(
    upstream: &FakeUpstream,
    client: &mut Client,
    price: &str,
    marker: &str,
) -> Option<Value> {
    let t = tick(upstream, client, "BTCUSDT", price).await;
    upstream.send(&binance_ticker("MARKER", marker).to_string());
    let next = client.recv_json().await;
    if next["type"] == "alert" {
        assert_eq!(next["trigger_seq"], t["seq"], "{next}");
        client.recv_until(|f| f["symbol"] == "MARKER").await;
        return Some(next);
    }
    assert_eq!(next["symbol"], "MARKER", "{next}");
    None
}

#[test]
fn an_above_rule_sends_one_alert_with_its_fields_and_seq() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let daemon = Daemon::start_with_config(&config(&upstream.url("/ws"), ABOVE), &[]);
        upstream.wait_connection().await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices", "alerts"]).await;
        assert!(
            tick_fires(&upstream, &mut client, "69000", "1")
                .await
                .is_none()
        );
        let alert = tick_fires(&upstream, &mut client, "70100.50", "2")
            .await
            .expect("crossing 70000 fires");
        let crossing_seq = alert["trigger_seq"].as_u64().unwrap();
        assert_eq!(alert["seq"].as_u64(), Some(crossing_seq + 1), "{alert}");
        assert_eq!(alert["channel"], "alerts");
        assert_eq!(alert["level"], "critical");
        assert_eq!(alert["rule"], "btc-70k");
        assert_eq!(alert["kind"], "above");
        assert_eq!(alert["symbol"], "BTCUSDT");
        assert_eq!(alert["old_price"], "69000");
        assert_eq!(alert["new_price"], "70100.50");
        assert_eq!(alert["text"], "Bitcoin passed 70,000: 70,100.50");
        assert_eq!(alert["source"], "rules");
        let ts = alert["ts"].as_u64().unwrap();
        assert_eq!(alert["expires"].as_u64(), Some(ts + 3_600_000));
        // Hovering above, and just below within the hysteresis: quiet.
        assert!(
            tick_fires(&upstream, &mut client, "70500", "3")
                .await
                .is_none()
        );
        assert!(
            tick_fires(&upstream, &mut client, "69500", "4")
                .await
                .is_none()
        );
        assert!(
            tick_fires(&upstream, &mut client, "70001", "5")
                .await
                .is_none()
        );
        // Back below 69300 (70000 − 1 %) re-arms it.
        assert!(
            tick_fires(&upstream, &mut client, "69300", "6")
                .await
                .is_none()
        );
        assert!(
            tick_fires(&upstream, &mut client, "70001", "7")
                .await
                .is_some()
        );
        // The alert is in the snapshot and in a resume from before it.
        let snap = client
            .request(serde_json::json!({"op": "snapshot", "channels": ["alerts"]}))
            .await;
        let rules: Vec<&Value> = snap["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["rule"] == "btc-70k")
            .collect();
        assert_eq!(rules.len(), 2, "{snap}");
        let mut late = daemon.bot().await;
        late.send_json(
            serde_json::json!({"op": "subscribe", "channels": ["alerts"], "since": crossing_seq}),
        )
        .await;
        let replayed = late.recv_until(|f| f["type"] == "alert").await;
        assert_eq!(replayed["seq"], alert["seq"], "{replayed}");
        assert_eq!(replayed["new_price"], "70100.50");
    });
}

#[test]
fn a_restart_on_the_same_data_dir_does_not_fire_again() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let text = config(&upstream.url("/ws"), ABOVE);
        let daemon = Daemon::start_in(Sandbox::new(), Some(&text), &[]);
        upstream.wait_connection().await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices", "alerts"]).await;
        tick(&upstream, &mut client, "BTCUSDT", "69000").await;
        let first = tick_fires(&upstream, &mut client, "71000", "1")
            .await
            .expect("fires");
        drop(client);
        daemon.sigterm();
        let stopped = daemon.into_stopped(Duration::from_secs(5));
        assert!(stopped.status.success(), "{}", stopped.stderr);

        let daemon = Daemon::start_in(stopped.sandbox, Some(&text), &[]);
        upstream.wait_connection().await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices", "alerts"]).await;
        // Still above: the restarted rule knows it already said so.
        assert!(
            tick_fires(&upstream, &mut client, "71500", "2")
                .await
                .is_none(),
            "{}",
            daemon.stderr_tail()
        );
        tick(&upstream, &mut client, "BTCUSDT", "69000").await;
        let second = tick_fires(&upstream, &mut client, "70500", "3")
            .await
            .expect("a new crossing fires");
        assert!(second["seq"].as_u64() > first["seq"].as_u64());
        assert_eq!(second["old_price"], "69000");
    });
}

#[test]
fn a_stale_symbol_and_a_silent_feed_are_told_and_so_is_their_return() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let rules = r#"
[[alert]]
name = "btc-quiet"
kind = "stale"
symbol = "BTCUSDT"
after = "1s"
cooldown = "0s"

[[alert]]
name = "spot-silent"
kind = "stale"
feed = "spot"
after = "1s"
cooldown = "0s"
text = "the {symbol} feed is silent"
"#;
        let daemon = Daemon::start_with_config(&config(&upstream.url("/ws"), rules), &[]);
        upstream.wait_connection().await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices", "alerts"]).await;
        let t = tick(&upstream, &mut client, "BTCUSDT", "1").await;
        let mut stale = Vec::new();
        while stale.len() < 2 {
            let alert = client
                .recv_until_within(STALE_WITHIN, |f| f["type"] == "alert")
                .await;
            assert_eq!(alert["kind"], "stale", "{alert}");
            stale.push(alert);
        }
        stale.sort_by_key(|a| a["rule"].as_str().unwrap_or("").to_owned());
        assert_eq!(stale[0]["rule"], "btc-quiet");
        assert_eq!(stale[0]["trigger_seq"], t["seq"]);
        assert_eq!(stale[0]["text"], "Bitcoin: no update for 1s");
        assert_eq!(stale[1]["rule"], "spot-silent");
        assert_eq!(stale[1]["feed"], "spot");
        assert_eq!(stale[1]["text"], "the spot feed is silent");
        let t = tick(&upstream, &mut client, "BTCUSDT", "2").await;
        let mut back = Vec::new();
        while back.len() < 2 {
            let alert = client.recv_until(|f| f["type"] == "alert").await;
            assert_eq!(alert["kind"], "back", "{alert}");
            assert_eq!(alert["trigger_seq"], t["seq"], "{alert}");
            assert_eq!(alert["level"], "info");
            back.push(alert["rule"].as_str().unwrap_or("").to_owned());
        }
        back.sort();
        assert_eq!(back, ["btc-quiet", "spot-silent"]);
    });
}

/// `check` on `text` exits 78 naming the file, `line` and `needle`.
#[track_caller]
fn check_rejects(text: &str, line: usize, needle: &str) {
    let sandbox = Sandbox::new();
    let path = sandbox.write("tablo.toml", text);
    let out = sandbox.tablo(&["check", "--config", path.to_str().unwrap()]);
    out.assert_code(EX_CONFIG)
        .assert_stderr_has(&format!("tablo.toml:{line}: "))
        .assert_stderr_has(needle);
}

#[test]
fn check_rejects_a_bad_decimal_or_window_at_its_line() {
    check_rejects(
        "[[feed]]\nformat = \"demo\"\n\n[[alert]]\nkind = \"above\"\nsymbol = \"USD\"\nprice = \"60.000,5\"\n",
        7,
        "[[alert]] price: \"60.000,5\" is not a decimal",
    );
    check_rejects(
        "[[alert]]\nkind = \"move\"\nsymbol = \"*\"\npercent = \"2\"\nwindow = \"5 minutes\"\n",
        5,
        "[[alert]] window",
    );
    check_rejects(
        "[[alert]]\nkind = \"drop\"\nsymbol = \"USD\"\npercent = \"five\"\n",
        4,
        "[[alert]] percent: \"five\" is not a decimal",
    );
    check_rejects(
        "[[alert]]\nkind = \"stale\"\nsymbol = \"USD\"\nafter = \"2m\"\nprice = \"1\"\n",
        5,
        "a stale rule has no price",
    );
}

#[test]
fn check_prints_the_rules_and_warns_about_a_symbol_without_a_row() {
    let sandbox = Sandbox::new();
    let path = sandbox.write(
        "tablo.toml",
        "[[board.rows]]\nsymbol = \"USD\"\n\n[[alert]]\nkind = \"above\"\nsymbol = \"EUR\"\nprice = 1.10\nhysteresis = \"0.5%\"\n",
    );
    let out = sandbox.tablo(&["check", "--config", path.to_str().unwrap()]);
    out.assert_code(0).assert_stderr_has(
        "warning: [[alert]] \"above EUR 1.10\": symbol \"EUR\" has no [[board.rows]] entry",
    );
    let resolved: toml::Table = toml::from_str(&out.stdout).expect("TOML on stdout");
    let rule = &resolved["alert"][0];
    assert_eq!(rule["kind"].as_str(), Some("above"), "{out}");
    assert_eq!(rule["price"].as_str(), Some("1.10"), "{out}");
    assert_eq!(rule["hysteresis"].as_str(), Some("0.5%"), "{out}");
    assert_eq!(rule["cooldown"].as_str(), Some("1m"), "{out}");
}

/// Every `[[alert]]` example in the README and docs/config.md passes
/// `tablo check`, so the documented keys are the real ones.
#[test]
fn the_documented_alert_examples_pass_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut blocks = Vec::new();
    for doc in ["README.md", "docs/config.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        blocks.extend(
            text.split("```toml\n")
                .skip(1)
                .filter_map(|rest| rest.split_once("```").map(|(block, _)| block.to_owned()))
                .filter(|block| block.contains("[[alert]]"))
                .map(|block| (doc, block)),
        );
    }
    assert!(blocks.len() >= 2, "no [[alert]] examples found");
    for (doc, block) in blocks {
        let sandbox = Sandbox::new();
        let path = sandbox.write("tablo.toml", &block);
        let out = sandbox.tablo(&["check", "--config", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{doc}'s example fails check:\n{block}\n{out}"
        );
        assert!(out.stdout.contains("[[alert]]"), "{out}");
    }
}
