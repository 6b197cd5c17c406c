//! `app::run` driven in this process, as a bench or an embedding program
//! drives it: its own listener on port 0 and its own shutdown future, with
//! a real journal in a temp dir and a real WebSocket client.

use std::net::SocketAddr;
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use futures_util::StreamExt;
use serde_json::Value;
use smol::net::TcpStream;
use tablo::config::{Config, DisplayMode, Overrides, parse_feed_flag};

use crate::harness::within;

/// How long any one step may take before the test fails.
const STEP: Duration = Duration::from_secs(10);

#[test]
fn run_serves_a_callers_listener_until_its_shutdown_future_completes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let overrides = Overrides {
        feeds: vec![parse_feed_flag("demo=", &mut Vec::new()).expect("demo feed")],
        display: Some(DisplayMode::None),
        data_dir: Some(dir.path().to_path_buf()),
        ..Overrides::default()
    };
    let config = Config::load(None, &overrides).expect("config");
    let listener = tablo::app::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind port 0");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let shutdown = async move {
        let _ = stopped.recv().await;
    };
    let (ran, close) = smol::block_on(smol::future::zip(
        tablo::app::run(listener, shutdown, config),
        async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let url = format!("ws://{addr}/ws?client=embedded");
            let (mut ws, _) = within(STEP, async_tungstenite::client_async(url, stream))
                .await
                .expect("upgrade in time")
                .expect("upgrade");
            let hello = next_json(&mut ws).await;
            assert_eq!(hello["type"], "hello", "{hello}");
            let subscribe = r#"{"op":"subscribe","channels":["prices"]}"#;
            ws.send(Message::text(subscribe)).await.expect("subscribe");
            let subscribed = next_json(&mut ws).await;
            assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
            // The demo feed runs: a live tick arrives.
            loop {
                let event = next_json(&mut ws).await;
                if event["type"] == "tick" {
                    assert!(event["seq"].as_u64().is_some(), "{event}");
                    break;
                }
            }
            drop(stop);
            // Shutdown closes every client with 1001 (going away).
            loop {
                match within(STEP, ws.next()).await.expect("the close in time") {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                    Some(Ok(_)) => {}
                    other => panic!("the connection ended without a close frame: {other:?}"),
                }
            }
        },
    ));
    ran.expect("run returns Ok after its shutdown future");
    assert_eq!(close, Some(CloseCode::Away));
    // The journal it opened is closed again: it can be reopened, and it
    // holds what was relayed.
    assert!(dir.path().join("journal").join("db").exists());
    let reopened = tablo::journal::store::Store::open(&dir.path().join("journal"), 1 << 20);
    let opened = reopened.expect("the journal is released after run");
    assert!(
        opened.store.last_seq() > Some(0),
        "the journal holds the demo's events"
    );
}

/// The next text frame as JSON.
async fn next_json(ws: &mut async_tungstenite::WebSocketStream<TcpStream>) -> Value {
    loop {
        match within(STEP, ws.next()).await.expect("a frame in time") {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text).expect("a JSON frame");
            }
            Some(Ok(_)) => {}
            other => panic!("no frame: {other:?}"),
        }
    }
}
