//! The `mqtt` feed and `[[forward]]` against a real Mosquitto
//! (docs/config.md §11, §16; docs/durability.md §19). Each test starts its
//! own broker on a free port, with a generated config and its persistence
//! in a temp dir, and talks to it with `mosquitto_pub` and `mosquitto_sub`.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::broker::{Broker, free_port};
use crate::harness::{Client, Daemon, FakeUpstream, Sandbox};
use crate::relay::is_tick;

/// How long Tablo may take to (re)connect to a broker: its backoff is at
/// most 30 s, but the first retries come within a few seconds.
const CONNECT_WITHIN: Duration = Duration::from_secs(20);

/// How long a forwarded batch may take to arrive.
const FORWARD_WITHIN: Duration = Duration::from_secs(60);

/// Events published into Tablo in the forward tests.
const EVENTS: u64 = 1000;

/// A `mosquitto_sub` with a persistent session `id` at QoS 1 on `topic`,
/// printing `topic payload` lines.
struct Subscriber {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Subscriber {
    fn start(port: u16, id: &str, topic: &str, extra: &[&str]) -> Subscriber {
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-i", id, "-c", "-q", "1", "-t", topic, "-v"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run mosquitto_sub");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Subscriber { child, lines }
    }

    /// Makes the persistent session `id` (subscribed, then gone), so the
    /// broker keeps QoS 1 messages for it while it is away.
    fn register(port: u16, id: &str, topic: &str) {
        let mut sub = Subscriber::start(port, id, topic, &["-E"]);
        let status = sub.child.wait().unwrap();
        assert!(status.success(), "mosquitto_sub -E failed");
    }

    /// The payloads of the next messages, parsed, until `done` says so.
    fn collect(&self, limit: Duration, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        let mut got = Vec::new();
        while !done(&got) {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    let (_, payload) = line.split_once(' ').unwrap_or(("", &line));
                    got.push(serde_json::from_str(payload).unwrap_or(Value::Null));
                }
                Err(_) => panic!(
                    "the subscriber got {} messages within {limit:?}; the last: {:?}",
                    got.len(),
                    got.last()
                ),
            }
        }
        got
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config with one mqtt feed `hq` on `url` mapping `rates/<SYMBOL>`
/// payloads `{"p":..,"b":..}`, plus `extra`.
fn feed_config(url: &str, extra: &str) -> String {
    format!(
        r#"
[[feed]]
name = "hq"
format = "mqtt"
url = "{url}"
topics = ["rates/+", "news/#"]
client_id = "tablo-test-{}"
{extra}

[feed.pointers]
symbol = "topic:2"
price = "/p"
bid = "/b"
"#,
        free_port()
    )
}

/// Waits until the status channel says feed `hq` is `state`.
async fn wait_state(client: &mut Client, state: &str) {
    client
        .recv_until_within(CONNECT_WITHIN, |f| {
            f["type"] == "status" && f["feed"] == "hq" && f["state"] == state
        })
        .await;
}

/// Waits until `/metrics` has `series` at `want` or more.
fn wait_metric(daemon: &Daemon, series: &str, want: f64, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    loop {
        let (_, body) = daemon.http_get("/metrics");
        let value = body
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0);
        if value >= want {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stayed at {value} (want {want}) for {limit:?}; stderr:\n{}",
            daemon.stderr_tail()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The next tick for `symbol`.
async fn tick_of(client: &mut Client, symbol: &str) -> Value {
    client
        .recv_until_within(CONNECT_WITHIN, |f| is_tick(f) && f["symbol"] == symbol)
        .await
}

/// The last-known tick of `symbol` from a `snapshot`, once there is one.
async fn snapshot_tick(client: &mut Client, symbol: &str) -> Value {
    let deadline = Instant::now() + CONNECT_WITHIN;
    loop {
        client
            .send_json(json!({"op": "snapshot", "channels": ["prices"], "id": 1}))
            .await;
        let reply = client
            .recv_until_within(CONNECT_WITHIN, |f| f["type"] == "snapshot")
            .await;
        if let Some(tick) = reply["events"]
            .as_array()
            .and_then(|events| events.iter().find(|e| e["symbol"] == symbol))
        {
            return tick.clone();
        }
        if Instant::now() > deadline {
            client.fail(&format!("no {symbol} in the snapshot: {reply}"));
        }
        smol::Timer::after(Duration::from_millis(50)).await;
    }
}

#[test]
fn ticks_reach_clients_with_exact_decimals_and_retained_values_at_start() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start(dir.path(), "");
        broker.publish(
            "rates/USD",
            r#"{"p":"61250.500000000000000001","b":61000.10}"#,
            1,
            true,
        );
        let daemon = Daemon::start_with_config(&feed_config(&broker.url(), ""), &[]);
        let mut client = daemon.bot().await;
        client.subscribe(&["prices", "status", "news"]).await;
        // The retained value is the last-known price from the start.
        let usd = snapshot_tick(&mut client, "USD").await;
        assert_eq!(usd["price"], "61250.500000000000000001", "{usd}");
        assert_eq!(
            usd["bid"], "61000.10",
            "a JSON number keeps its text: {usd}"
        );
        assert_eq!(usd["source"], "hq");

        broker.publish("rates/EUR", r#"{"p":"66500.25"}"#, 0, false);
        let eur = tick_of(&mut client, "EUR").await;
        assert_eq!(eur["price"], "66500.25");
        broker.publish("news/world", "Markets open", 1, false);
        let news = client
            .recv_until_within(CONNECT_WITHIN, |f| f["type"] == "news")
            .await;
        assert_eq!(news["title"], "Markets open");

        // Garbage is counted and skipped; the feed stays up.
        broker.publish("rates/BAD", "not json at all", 1, false);
        broker.publish("rates/BAD", r#"{"p":"1,5"}"#, 1, false);
        wait_metric(
            &daemon,
            "tablo_feed_bad_messages_total{feed=\"hq\"}",
            2.0,
            CONNECT_WITHIN,
        );
        broker.publish("rates/EUR", r#"{"p":"66500.30"}"#, 1, false);
        assert_eq!(tick_of(&mut client, "EUR").await["price"], "66500.30");
        assert_eq!(daemon.metric("tablo_feed_up{feed=\"hq\"}"), 1.0);
    });
}

#[test]
fn a_restarted_broker_is_rejoined_and_qos1_sent_while_tablo_was_off_arrives() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start(dir.path(), "");
        let config = feed_config(&broker.url(), "");
        let daemon = Daemon::start_with_config(&config, &[]);
        let mut client = daemon.bot().await;
        client.subscribe(&["prices", "status"]).await;
        broker.publish("rates/USD", r#"{"p":"1.01"}"#, 1, false);
        tick_of(&mut client, "USD").await;

        // Tablo stops; a QoS 1 message waits for it in its session.
        daemon.sigterm();
        let stopped = daemon.into_stopped(Duration::from_secs(10));
        broker.publish("rates/GBP", r#"{"p":"77000.5"}"#, 1, false);
        let daemon = Daemon::start_in(stopped.sandbox, Some(&config), &[]);
        let mut client = daemon.bot().await;
        client.subscribe(&["prices", "status"]).await;
        let gbp = snapshot_tick(&mut client, "GBP").await;
        assert_eq!(gbp["price"], "77000.5");
        assert!(
            daemon.stderr().contains("the broker kept our session"),
            "{}",
            daemon.stderr()
        );

        // The broker dies and comes back on the same port.
        let (dir2, port, extra) = broker.kill();
        wait_state(&mut client, "down").await;
        let broker = Broker::start_on(&dir2, port, &extra);
        wait_state(&mut client, "up").await;
        broker.publish("rates/USD", r#"{"p":"1.02"}"#, 1, false);
        assert_eq!(tick_of(&mut client, "USD").await["price"], "1.02");
    });
}

#[test]
fn refused_credentials_are_said_once_and_not_retried_in_a_hot_loop() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        let out = Command::new("mosquitto_passwd")
            .args(["-c", "-b"])
            .arg(&passwd)
            .args(["kiosk", "right"])
            .output()
            .expect("run mosquitto_passwd");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let extra = format!("allow_anonymous false\npassword_file {}", passwd.display());
        let broker = Broker::start(dir.path(), &extra);
        let sandbox = Sandbox::new();
        let wrong = sandbox.write("mqtt.pw", "wrong\n");
        let config = feed_config(
            &broker.url(),
            &format!(
                "username = \"kiosk\"\npassword_file = \"{}\"",
                wrong.display()
            ),
        );
        let daemon = Daemon::start_in(sandbox, Some(&config), &[]);
        daemon.wait_stderr(
            "refused the connection: not authorized: a wrong user name or password",
            CONNECT_WITHIN,
        );
        let mut client = daemon.bot().await;
        client.subscribe(&["status"]).await;
        let (_, health) = daemon.http_get("/healthz");
        assert!(health.contains("\"degraded\""), "{health}");
        assert!(
            health.contains("\"problem\":\"the broker refused the connection: not authorized"),
            "{health}"
        );
        // A second attempt would come a minute later, not now.
        thread::sleep(Duration::from_secs(2));
        assert_eq!(daemon.stderr().matches("refused the connection").count(), 1);
        assert!(
            daemon.stderr().contains("asking again in 60 s"),
            "{}",
            daemon.stderr()
        );
        assert!(daemon.metric("tablo_feed_reconnects_total{feed=\"hq\"}") <= 1.0);
    });
}

/// A daemon forwarding the ticks of a json feed `up` (from `upstream`) to
/// the broker feed `hq` at `url`.
fn forward_config(url: &str, upstream: &FakeUpstream) -> String {
    format!(
        r#"
site = "office-7"

[journal]
flush_interval_ms = 20

[[forward]]
channels = ["prices.*"]
to = "hq"
topic = "tablo/{{site}}/{{channel}}/{{symbol}}"
qos = 1

[[feed]]
name = "up"
format = "json"
url = "{}"

[feed.pointers]
items = "/rows"
symbol = "/s"
price = "/p"
{}"#,
        upstream.url("/rates"),
        feed_config(url, "topics = [\"none/+\"]")
            .replace("topics = [\"rates/+\", \"news/#\"]\n", "")
    )
}

/// Sends ticks `from..=to` of symbol `FWD` (price = their number) upstream,
/// 100 to a message.
fn send_ticks(upstream: &FakeUpstream, from: u64, to: u64) {
    let numbers: Vec<u64> = (from..=to).collect();
    for chunk in numbers.chunks(100) {
        let rows: Vec<Value> = chunk
            .iter()
            .map(|n| json!({"s": "FWD", "p": n.to_string()}))
            .collect();
        upstream.send(&json!({ "rows": rows }).to_string());
    }
}

/// The tick numbers of forwarded payloads, checking each has seq and epoch.
fn numbers(payloads: &[Value]) -> Vec<u64> {
    payloads
        .iter()
        .map(|p| {
            assert!(p["seq"].is_u64() && p["epoch"].is_string(), "{p}");
            assert_eq!(p["type"], "tick", "{p}");
            p["price"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0)
        })
        .collect()
}

/// The outbox metrics of the rule in [`forward_config`].
const QUEUED: &str = "tablo_forward_queued{to=\"hq\",topic=\"tablo/{site}/{channel}/{symbol}\"}";
const SENT: &str = "tablo_forward_sent_total{to=\"hq\",topic=\"tablo/{site}/{channel}/{symbol}\"}";

/// A forward test's start: a broker that knows the consumer's session
/// (so it keeps what arrives for it) and has stopped, and a daemon whose
/// `[[forward]]` has queued [`EVENTS`] ticks from a fake upstream for it.
struct Outage {
    /// The broker's persistence, port and extra config, to restart it.
    broker: (PathBuf, u16, String),
    /// The daemon's config.
    config: String,
    /// Kept for the upstream's connection.
    _upstream: FakeUpstream,
    /// Kept for the broker's persistence.
    _dir: tempfile::TempDir,
}

impl Outage {
    /// Starts the broker again, on the same port with the same sessions.
    fn restart(&self) -> Broker {
        let (dir, port, extra) = &self.broker;
        Broker::start_on(dir, *port, extra)
    }
}

async fn queued_for_a_stopped_broker() -> (Outage, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), "");
    Subscriber::register(broker.port, "consumer", "tablo/#");
    let stopped = broker.stop();
    let upstream = FakeUpstream::start().await;
    let url = format!("mqtt://127.0.0.1:{}", stopped.1);
    let config = forward_config(&url, &upstream);
    let daemon = Daemon::start_with_config(&config, &[]);
    upstream.wait_connection().await;
    send_ticks(&upstream, 1, EVENTS);
    wait_metric(&daemon, QUEUED, EVENTS as f64, FORWARD_WITHIN);
    let outage = Outage {
        broker: stopped,
        config,
        _upstream: upstream,
        _dir: dir,
    };
    (outage, daemon)
}

#[test]
fn events_forwarded_while_the_broker_is_down_arrive_in_order_once_each() {
    smol::block_on(async {
        let (outage, daemon) = queued_for_a_stopped_broker().await;
        let broker = outage.restart();
        wait_metric(&daemon, SENT, EVENTS as f64, FORWARD_WITHIN);
        let sub = Subscriber::start(broker.port, "consumer", "tablo/#", &[]);
        let got = numbers(&sub.collect(FORWARD_WITHIN, |got| got.len() as u64 >= EVENTS));
        assert_eq!(
            got,
            (1..=EVENTS).collect::<Vec<_>>(),
            "all, in order, once each"
        );
        // Nothing more comes: no duplicates.
        assert!(
            sub.lines.recv_timeout(Duration::from_millis(500)).is_err(),
            "a duplicate arrived"
        );
        assert_eq!(daemon.metric(QUEUED), 0.0);
        let (_, health) = daemon.http_get("/healthz");
        assert!(health.contains("\"forward\":[{"), "{health}");
    });
}

/// Waits until the journal has made one more commit than now: whatever
/// was put into an outbox before this call is then on disk.
fn wait_commit(daemon: &Daemon) {
    let commits = daemon.metric("tablo_journal_commits_total");
    wait_metric(
        daemon,
        "tablo_journal_commits_total",
        commits + 1.0,
        FORWARD_WITHIN,
    );
}

#[test]
fn forwarding_survives_kill_9_at_least_once_in_order() {
    smol::block_on(async {
        let (outage, daemon) = queued_for_a_stopped_broker().await;
        wait_commit(&daemon);

        // The broker comes back; Tablo is killed as soon as the first
        // forwarded message arrives.
        let broker = outage.restart();
        let sub = Subscriber::start(broker.port, "consumer", "tablo/#", &[]);
        let mut got = numbers(&sub.collect(FORWARD_WITHIN, |got| !got.is_empty()));
        daemon.sigkill();
        let stopped = daemon.into_stopped(Duration::from_secs(10));
        let before_kill = got.len();
        // The upstream sends nothing more: what is missing must come from
        // the outbox on disk.
        let daemon = Daemon::start_in(stopped.sandbox, Some(&outage.config), &[]);
        let mut seen: HashSet<u64> = got.iter().copied().collect();
        let rest = sub.collect(FORWARD_WITHIN, |more| {
            if let Some(last) = more.last() {
                seen.extend(numbers(std::slice::from_ref(last)));
            }
            seen.len() as u64 >= EVENTS
        });
        got.extend(numbers(&rest));
        let mut first = Vec::new();
        let mut once = HashSet::new();
        for n in &got {
            if once.insert(*n) {
                first.push(*n);
            }
        }
        assert_eq!(
            first,
            (1..=EVENTS).collect::<Vec<_>>(),
            "every event, in order of first arrival ({before_kill} arrived before the kill, {} in all)",
            got.len()
        );
        drop(daemon);
    });
}

#[test]
fn mqtts_checks_the_brokers_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let extra = format!("certfile {}\nkeyfile {}", cert.display(), key.display());
    let broker = Broker::start(dir.path(), &extra);
    let url = format!("mqtts://127.0.0.1:{}", broker.port);
    let daemon = Daemon::start_with_config(&feed_config(&url, ""), &[]);
    // The TLS handshake runs and refuses a certificate no known CA signed.
    daemon.wait_stderr("TLS: invalid peer certificate", CONNECT_WITHIN);
}

/// A WebSocket-to-TCP bridge in front of the broker on `port`, standing in
/// for a broker's WebSocket listener (Debian's Mosquitto is built without
/// one): its URL, its task, and the subprotocol each client asked for.
async fn ws_bridge(port: u16) -> (String, smol::Task<()>, mpsc::Receiver<String>) {
    use async_tungstenite::tungstenite::Message;
    use async_tungstenite::tungstenite::handshake::server::{Request, Response};
    use futures_util::StreamExt;
    use smol::io::{AsyncReadExt, AsyncWriteExt};

    let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/mqtt", listener.local_addr().unwrap());
    let (tx, protocols) = mpsc::channel();
    let task = smol::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            conns.push(smol::spawn(async move {
                #[allow(
                    clippy::result_large_err,
                    reason = "tungstenite's callback type returns its whole error response"
                )]
                let callback = |req: &Request, mut resp: Response| {
                    let asked = req
                        .headers()
                        .get("Sec-WebSocket-Protocol")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    if asked == "mqtt" {
                        resp.headers_mut()
                            .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
                    }
                    let _ = tx.send(asked);
                    Ok(resp)
                };
                let Ok(ws) = async_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                let Ok(tcp) = smol::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                let (mut sink, mut source) = ws.split();
                let (mut from_broker, mut to_broker) = (tcp.clone(), tcp);
                let up = async move {
                    while let Some(Ok(msg)) = source.next().await {
                        if let Message::Binary(bytes) = msg
                            && to_broker.write_all(&bytes).await.is_err()
                        {
                            break;
                        }
                    }
                };
                let down = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = from_broker.read(&mut buf).await {
                        if n == 0 || sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                };
                smol::future::or(up, down).await;
            }));
        }
    });
    (url, task, protocols)
}

#[test]
fn mqtt_over_a_websocket() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start(dir.path(), "");
        broker.publish("rates/USD", r#"{"p":"61250.5"}"#, 1, true);
        let (url, _bridge, protocols) = ws_bridge(broker.port).await;
        let daemon = Daemon::start_with_config(&feed_config(&url, ""), &[]);
        let mut client = daemon.bot().await;
        client.subscribe(&["prices"]).await;
        assert_eq!(snapshot_tick(&mut client, "USD").await["price"], "61250.5");
        assert_eq!(protocols.recv_timeout(CONNECT_WITHIN).unwrap(), "mqtt");
        broker.publish("rates/EUR", r#"{"p":"66500.25"}"#, 1, false);
        assert_eq!(tick_of(&mut client, "EUR").await["price"], "66500.25");
    });
}
