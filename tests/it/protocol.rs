//! The downstream WebSocket protocol: hello, ops, errors, limits, tokens and
//! shutdown (docs/protocol.md).

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Daemon, VERSION};
use crate::relay::{binance_daemon, binance_ticker, is_tick};

/// docs/config.md §14: SIGTERM stops the daemon within 2 s.
const STOP_WITHIN: Duration = Duration::from_secs(2);

/// How long a flood of ops may go on before the daemon must close.
const FLOOD_CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// docs/protocol.md §16: a client may send a burst of this many ops before
/// it is limited.
const OP_BURST: usize = 100;

/// A config with one token and no anonymous clients.
const TOKEN_ONLY: &str = r#"
[server]
allow_anonymous = false
tokens = [{ token = "s3cret", publish = false }]
"#;

#[test]
fn websocket_pings_get_pongs_between_events() {
    // The session writes data frames itself and the WebSocket layer's pongs
    // go through the outbox: they must come out whole, between frames.
    smol::block_on(async {
        let daemon = Daemon::start(&["--demo"]);
        let mut client = daemon.bot().await;
        client.subscribe(&["prices"]).await;
        for i in 0..20u8 {
            client.ws_ping_expect_pong(&[i; 7]).await;
        }
        let tick = client.recv_until(|f| f["type"] == "tick").await;
        assert!(tick["price"].is_string(), "{tick}");
    });
}

#[test]
fn hello_is_the_first_frame() {
    smol::block_on(async {
        let daemon = Daemon::start(&[]);
        let a = daemon.bot().await;
        let b = daemon.ws("/ws?client=browser").await;
        let hello = &a.hello;
        assert_eq!(hello["type"], "hello", "{hello}");
        assert!(
            hello["session"].as_str().is_some_and(|s| !s.is_empty()),
            "{hello}"
        );
        assert!(
            hello["epoch"].as_str().is_some_and(|s| !s.is_empty()),
            "{hello}"
        );
        assert!(hello["seq"].as_u64().is_some(), "seq is a number: {hello}");
        assert_eq!(hello["server"], format!("tablo/{VERSION}"), "{hello}");
        assert_ne!(
            a.hello["session"], b.hello["session"],
            "sessions must differ"
        );
        assert_eq!(a.hello["epoch"], b.hello["epoch"], "one journal, one epoch");
    });
}

#[test]
fn ping_gets_pong_with_the_same_id() {
    smol::block_on(async {
        let daemon = Daemon::start(&[]);
        let mut client = daemon.bot().await;
        client.ping_expect_pong_next(json!(7)).await;
        client.ping_expect_pong_next(json!("abc")).await;
        // Unknown fields are ignored.
        let reply = client
            .request(json!({"op": "ping", "id": 9, "extra": {"x": 1}}))
            .await;
        assert_eq!(
            (&reply["type"], &reply["id"]),
            (&json!("pong"), &json!(9)),
            "{reply}"
        );
    });
}

#[test]
fn malformed_json_gets_bad_request_and_the_connection_stays_open() {
    smol::block_on(async {
        let daemon = Daemon::start(&[]);
        let mut client = daemon.bot().await;
        client.send_text("{\"op\": \"ping\", \"id\": ").await;
        client.expect_error("bad_request").await;
        client.send_text("not json at all").await;
        client.expect_error("bad_request").await;
        client.ping_expect_pong_next(json!(1)).await;
    });
}

#[test]
fn unknown_op_gets_unknown_op_with_the_id() {
    smol::block_on(async {
        let daemon = Daemon::start(&[]);
        let mut client = daemon.bot().await;
        let error = client.request(json!({"op": "frobnicate", "id": 3})).await;
        client.assert_error(&error, "unknown_op");
        assert_eq!(error["id"], 3, "{error}");
        // Ops are case-sensitive.
        let error = client.request(json!({"op": "PING", "id": "x"})).await;
        client.assert_error(&error, "unknown_op");
        assert_eq!(error["id"], "x", "{error}");
        client.ping_expect_pong_next(json!(4)).await;
    });
}

#[test]
fn unknown_channel_gets_unknown_channel() {
    smol::block_on(async {
        let daemon = Daemon::start(&[]);
        let mut client = daemon.bot().await;
        let error = client
            .request(json!({"op": "subscribe", "channels": ["nosuch"], "id": 5}))
            .await;
        client.assert_error(&error, "unknown_channel");
        assert_eq!(error["id"], 5, "{error}");
        client.ping_expect_pong_next(json!(6)).await;
    });
}

#[test]
fn channels_of_the_wrong_type_get_bad_request() {
    smol::block_on(async {
        let daemon = Daemon::start(&[]);
        let mut client = daemon.bot().await;
        for (id, channels) in [(1, json!("prices")), (2, json!([42])), (3, json!({"a": 1}))] {
            let error = client
                .request(json!({"op": "subscribe", "channels": channels, "id": id}))
                .await;
            client.assert_error(&error, "bad_request");
            assert_eq!(error["id"], id, "{error}");
        }
        client.ping_expect_pong_next(json!(4)).await;
    });
}

#[test]
fn more_than_256_channels_get_too_large() {
    smol::block_on(async {
        let daemon = Daemon::start(&[]);
        let mut client = daemon.bot().await;
        let channels =
            |n: usize| -> Vec<String> { (0..n).map(|i| format!("prices.S{i}")).collect() };

        let error = client
            .request(json!({"op": "subscribe", "channels": channels(257), "id": 1}))
            .await;
        client.assert_error(&error, "too_large");
        assert_eq!(error["id"], 1, "{error}");

        let reply = client
            .request(json!({"op": "subscribe", "channels": channels(256), "id": 2}))
            .await;
        assert_eq!(
            reply["type"], "subscribed",
            "256 channels are allowed: {reply}"
        );
    });
}

#[test]
fn frame_over_max_frame_bytes_closes_with_1009() {
    smol::block_on(async {
        let daemon = Daemon::start_with_config("[server]\nmax_frame_bytes = 1024\n", &[]);
        let mut client = daemon.bot().await;
        // Just under the limit is fine.
        client.ping_expect_pong_next(json!("x".repeat(900))).await;
        // Twice the limit, yet small enough for one read: a daemon closing
        // with unread input sends a TCP reset that can eat its close frame.
        let big = json!({"op": "ping", "id": "x".repeat(2 * 1024)});
        client.send_json(big).await;
        assert_eq!(client.expect_close().await, 1009);
    });
}

#[test]
fn text_frame_that_is_not_utf8_closes_with_1007() {
    smol::block_on(async {
        let daemon = Daemon::start(&[]);
        let mut client = daemon.bot().await;
        client.ping_expect_pong_next(json!(1)).await;
        // A ping whose id holds a lone continuation byte.
        client
            .send_raw_text(b"{\"op\":\"ping\",\"id\":\"\x80\"}")
            .await;
        assert_eq!(client.expect_close().await, 1007);
    });
}

#[test]
fn flooding_ops_gets_rate_limited_then_closed_with_1008() {
    smol::block_on(async {
        let daemon = Daemon::start(&[]);
        let mut client = daemon.bot().await;
        let (code, frames) = client
            .flood_until_close(r#"{"op":"ping","id":1}"#, FLOOD_CLOSE_WITHIN)
            .await;
        let first_limited = frames
            .iter()
            .position(|f| f["type"] == "error" && f["code"] == "rate_limited");
        let Some(first_limited) = first_limited else {
            panic!(
                "no rate_limited error before the close ({code}); {} frames",
                frames.len()
            )
        };
        let pongs = frames[..first_limited]
            .iter()
            .filter(|f| f["type"] == "pong")
            .count();
        assert!(
            pongs >= OP_BURST,
            "a burst of {OP_BURST} ops is allowed, only {pongs} pongs came first"
        );
        assert_eq!(code, 1008);
    });
}

#[test]
fn binary_frame_gets_bad_request() {
    smol::block_on(async {
        let daemon = Daemon::start(&[]);
        let mut client = daemon.bot().await;
        client.send_binary(br#"{"op":"ping","id":1}"#).await;
        client.expect_error("bad_request").await;
        client.ping_expect_pong_next(json!(2)).await;
    });
}

#[test]
fn wrong_token_is_refused_with_401() {
    smol::block_on(async {
        let daemon = Daemon::start_with_config(TOKEN_ONLY, &[]);
        assert_eq!(daemon.upgrade_status("/ws?client=bot&token=wrong"), 401);
        assert_eq!(daemon.upgrade_status("/ws?client=bot&token="), 401);
        let mut client = daemon.ws("/ws?client=bot&token=s3cret").await;
        client.ping_expect_pong_next(json!(1)).await;
    });
}

#[test]
fn anonymous_is_refused_when_not_allowed_but_a_good_token_works() {
    smol::block_on(async {
        let daemon = Daemon::start_with_config(TOKEN_ONLY, &[]);
        assert_eq!(daemon.upgrade_status("/ws?client=bot"), 401);
        assert_eq!(daemon.upgrade_status("/ws"), 401);
        let mut client = daemon.ws("/ws?client=bot&token=s3cret").await;
        client.ping_expect_pong_next(json!(1)).await;
    });
}

#[test]
fn anonymous_is_allowed_by_default() {
    smol::block_on(async {
        let daemon = Daemon::start_with_config("[server]\nmax_clients = 10\n", &[]);
        assert_eq!(daemon.upgrade_status("/ws?client=bot"), 101);
    });
}

#[test]
fn malformed_websocket_key_gets_400() {
    smol::block_on(async {
        let daemon = Daemon::start(&[]);
        for key in [
            "",
            "not base64 at all!!!!!==",
            // The base64 of 15 and of 17 bytes.
            "AAECAwQFBgcICQoLDA0O",
            "AAECAwQFBgcICQoLDA0ODxA=",
        ] {
            assert_eq!(
                daemon.upgrade_status_with_key("/ws?client=bot", key),
                400,
                "Sec-WebSocket-Key: {key:?}"
            );
        }
        // The base64 of 16 bytes.
        assert_eq!(
            daemon.upgrade_status_with_key("/ws?client=bot", "AAECAwQFBgcICQoLDA0ODw=="),
            101
        );
    });
}

#[test]
fn upgrade_past_max_clients_gets_503() {
    smol::block_on(async {
        let daemon = Daemon::start_with_config("[server]\nmax_clients = 1\n", &[]);
        let mut first = daemon.bot().await;
        assert_eq!(daemon.upgrade_status("/ws?client=bot"), 503);
        // The first client is unaffected.
        first.ping_expect_pong_next(json!(1)).await;
    });
}

#[test]
fn unsubscribed_client_gets_no_more_ticks() {
    smol::block_on(async {
        let (upstream, daemon) = binance_daemon("/ws").await;
        let mut leaving = daemon.bot().await;
        leaving.subscribe(&["prices"]).await;
        let mut staying = daemon.bot().await;
        staying.subscribe(&["prices"]).await;

        upstream.send(&binance_ticker("BTCUSDT", "67000.00000000").to_string());
        let is_first = |f: &Value| is_tick(f) && f["price"] == "67000.00000000";
        leaving.recv_until(is_first).await;
        staying.recv_until(is_first).await;

        leaving
            .send_json(json!({"op": "unsubscribe", "channels": ["prices"]}))
            .await;
        let reply = leaving.recv_until(|f| f["type"] == "unsubscribed").await;
        assert_eq!(reply["channels"], json!(["prices"]), "{reply}");

        // Once the staying client has the second tick, the hub has fanned it
        // out; had it gone to the leaving client too, it would be queued
        // ahead of the pong.
        upstream.send(&binance_ticker("BTCUSDT", "67001.00000000").to_string());
        staying
            .recv_until(|f| is_tick(f) && f["price"] == "67001.00000000")
            .await;
        leaving.ping_expect_pong_next(json!("after")).await;
    });
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits_0() {
    smol::block_on(async {
        let mut daemon = Daemon::start(&[]);
        let mut client = daemon.bot().await;
        client.subscribe(&["prices"]).await;
        daemon.sigterm();
        assert_eq!(client.expect_close().await, 1001);
        let status = daemon.wait_exit(STOP_WITHIN);
        assert_eq!(
            status.code(),
            Some(0),
            "SIGTERM should stop tablo with 0, got {status}; stderr:\n{}",
            daemon.stderr()
        );
    });
}
