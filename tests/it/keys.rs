//! Idempotency keys on `publish` (docs/protocol.md §14.1,
//! docs/durability.md §17): a repeated key is acked with the first seq and
//! publishes nothing, also after a restart.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Client, Daemon};

/// A daemon with a publishing token and a feed that never answers, so the
/// only events are the test's (and the feed's status).
const CONFIG: &str = r#"
[server]
tokens = [{ token = "pub", publish = true }]
"#;
const DEAD_FEED: &str = "binance=ws://127.0.0.1:1/ws";

async fn publish(client: &mut Client, text: &str, key: Option<&str>, id: u64) -> Value {
    let mut op = json!({"op": "publish", "channel": "alerts", "id": id,
        "data": {"level": "info", "text": text}});
    if let Some(key) = key {
        op["key"] = json!(key);
    }
    client.request(op).await
}

#[track_caller]
fn acked(client: &Client, reply: &Value, id: u64) -> u64 {
    if reply["type"] != "ack" || reply["id"] != id {
        client.fail(&format!("expected the ack of {id}, got {reply}"));
    }
    reply["seq"].as_u64().expect("an ack has a seq")
}

#[test]
fn a_repeated_key_is_acked_with_the_first_seq_and_published_once_also_after_a_restart() {
    smol::block_on(async {
        let daemon = Daemon::start_with_config(CONFIG, &["--feed", DEAD_FEED]);
        let mut watcher = daemon.bot().await;
        watcher.subscribe(&["alerts"]).await;
        let mut publisher = daemon.ws("/ws?token=pub&client=bot").await;

        let reply = publish(&mut publisher, "first", Some("k-1"), 1).await;
        let first = acked(&publisher, &reply, 1);
        let reply = publish(&mut publisher, "again", Some("k-1"), 2).await;
        assert_eq!(acked(&publisher, &reply, 2), first, "{reply}");
        let reply = publish(&mut publisher, "other", Some("k-2"), 3).await;
        let other = acked(&publisher, &reply, 3);
        assert!(other > first);
        let reply = publish(&mut publisher, "no key", None, 4).await;
        let unkeyed = acked(&publisher, &reply, 4);

        // The watcher sees three alerts, not four.
        for (seq, text) in [(first, "first"), (other, "other"), (unkeyed, "no key")] {
            let alert = watcher.recv_until(|m| m["type"] == "alert").await;
            assert_eq!(
                (alert["seq"].as_u64(), alert["text"].as_str()),
                (Some(seq), Some(text))
            );
        }

        // A clean restart keeps the window.
        daemon.sigterm();
        let stopped = daemon.into_stopped(Duration::from_secs(5));
        let daemon = Daemon::start_in(stopped.sandbox, Some(CONFIG), &["--feed", DEAD_FEED]);
        let mut publisher = daemon.ws("/ws?token=pub&client=bot").await;
        let reply = publish(&mut publisher, "after restart", Some("k-2"), 5).await;
        assert_eq!(acked(&publisher, &reply, 5), other, "{reply}");
        let reply = publish(&mut publisher, "new", Some("k-3"), 6).await;
        assert!(acked(&publisher, &reply, 6) > unkeyed);
        let (_, body) = daemon.http_get(&format!("/journal/export?since={}", first - 1));
        let texts: Vec<String> = body
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["type"] == "alert")
            .map(|e| e["text"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(texts, ["first", "other", "no key", "new"], "{body}");
    });
}

#[test]
fn a_key_that_is_not_a_short_string_is_bad_request() {
    smol::block_on(async {
        let daemon = Daemon::start_with_config(CONFIG, &["--feed", DEAD_FEED]);
        let mut publisher = daemon.ws("/ws?token=pub&client=bot").await;
        for key in [json!(""), json!(7), json!("x".repeat(129))] {
            let reply = publisher
                .request(
                    json!({"op": "publish", "channel": "alerts", "id": 1, "key": key,
                    "data": {"level": "info", "text": "t"}}),
                )
                .await;
            assert_eq!(reply["code"], "bad_request", "{key}: {reply}");
            assert!(
                reply["message"].as_str().unwrap_or("").contains("key"),
                "{reply}"
            );
        }
    });
}

#[test]
fn a_key_stored_before_a_crash_is_remembered_after_it() {
    smol::block_on(async {
        let daemon = Daemon::start_with_config(CONFIG, &["--feed", DEAD_FEED]);
        let mut publisher = daemon.ws("/ws?token=pub&client=bot").await;
        let reply = publish(&mut publisher, "before the crash", Some("k-crash"), 1).await;
        let seq = acked(&publisher, &reply, 1);
        // The key goes to disk with the commit after its event's: wait for
        // two more commits, then kill.
        let commits = "tablo_journal_commit_seconds_count";
        let at_ack = daemon.metric(commits);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // Publishes make commits happen; each is acked after its own.
        let mut id = 10;
        while daemon.metric(commits) < at_ack + 2.0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no commits after the ack"
            );
            id += 1;
            let reply = publish(&mut publisher, "filler", None, id).await;
            acked(&publisher, &reply, id);
        }
        daemon.sigkill();
        let stopped = daemon.into_stopped(Duration::from_secs(5));
        let daemon = Daemon::start_in(stopped.sandbox, Some(CONFIG), &["--feed", DEAD_FEED]);
        let mut publisher = daemon.ws("/ws?token=pub&client=bot").await;
        let reply = publish(&mut publisher, "resent after the crash", Some("k-crash"), 2).await;
        assert_eq!(acked(&publisher, &reply, 2), seq, "{reply}");
    });
}
