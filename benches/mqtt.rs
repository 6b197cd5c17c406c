//! The MQTT feed and `[[forward]]` against a real Mosquitto (issue 13).
//!
//! The release daemon, a Mosquitto of its own on 127.0.0.1 (a free port,
//! persistence in a temp dir) and, in this process, an MQTT publisher
//! written with `mqttbytes` over a plain TCP socket:
//!
//! - **latency**: the publisher sends QoS 0 messages `bench/<SYMBOL>`
//!   `{"p":"…","v":"<ns>"}` on a clock (`v` is the instant it wrote the
//!   message, in ns since the bench started). Tablo's feed reads them
//!   (`symbol = "topic:2"`, `price = "/p"`, `volume = "/v"`) and a
//!   WebSocket client of Tablo's reads the ticks; in the same run a
//!   `mosquitto_sub` on the same topics prints each payload. Both sides
//!   turn `v` into "publisher wrote it" → "the reader got it", into HDR
//!   histograms: Tablo's path against the broker's own client;
//! - **forward throughput**: a burst of messages into a second feed of
//!   Tablo's, forwarded at QoS 1 by a `[[forward]]` rule to the broker
//!   (another topic), counted by a `mosquitto_sub` from the first to the
//!   last arrival;
//! - **outbox replay**: the same with the forwarding broker stopped while
//!   the burst comes in; once the outbox holds all of it the broker is
//!   started, and the replay is timed from the first to the last arrival.
//!
//! Run with `cargo bench --bench mqtt`. Settings (environment):
//! `TABLO_BENCH_RATE` (msg/s for the latency run, default 100),
//! `TABLO_BENCH_SECONDS` (default 10), `TABLO_BENCH_BURST` (messages for
//! the forward runs, default 10000), `TABLO_BENCH_QUICK=1` (a short smoke
//! run), `TABLO_BENCH_TABLO` (a `tablo` binary to use).

#[allow(
    dead_code,
    reason = "the bench starts, stops and drops brokers; the tests do the rest"
)]
#[path = "../tests/it/broker.rs"]
mod broker;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use mqttbytes::QoS;
use mqttbytes::v4::{Connect, Packet, Publish};

use broker::{Broker, free_port};

/// Symbols the latency run cycles through.
const SYMBOLS: usize = 20;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A broker for the bench on `port`, in its own dir under `dir` (a run
/// has two), with room for a large burst queued for an offline session.
fn start_broker(dir: &Path, port: u16) -> Broker {
    let own = dir.join(format!("mosquitto-{port}"));
    Broker::start_on(&own, port, "max_queued_messages 1000000")
}

/// A `mosquitto_sub` printing each payload on its own line, with the time
/// each line was read.
struct Sub {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
}

impl Sub {
    fn start(port: u16, topic: &str, session: Option<&str>) -> Sub {
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            topic,
            "-q",
            "1",
        ]);
        if let Some(id) = session {
            cmd.args(["-c", "-i", id]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub");
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Sub { child, lines }
    }

    /// Subscribes with the persistent session `id` and leaves, so the broker
    /// keeps what comes for it.
    fn register(port: u16, topic: &str, id: &str) {
        let status = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic])
            .args(["-q", "1", "-c", "-i", id, "-E"])
            .status()
            .expect("mosquitto_sub -E");
        assert!(status.success());
    }

    /// Times of the first and the last of `n` messages.
    fn first_last(&self, n: u64, limit: Duration) -> (Instant, Instant, u64) {
        let deadline = Instant::now() + limit;
        let mut first = None;
        let mut last = Instant::now();
        let mut got = 0;
        while got < n {
            let Ok((at, _)) = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                break;
            };
            first.get_or_insert(at);
            last = at;
            got += 1;
        }
        (first.unwrap_or(last), last, got)
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking MQTT publisher on a plain socket.
struct Publisher {
    tcp: TcpStream,
    buf: BytesMut,
}

impl Publisher {
    fn connect(port: u16) -> Publisher {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to the broker");
        tcp.set_nodelay(true).unwrap();
        let mut buf = BytesMut::new();
        Connect::new(format!("bench-pub-{port}"))
            .write(&mut buf)
            .unwrap();
        tcp.write_all(&buf).unwrap();
        buf.clear();
        let mut chunk = [0u8; 64];
        loop {
            let n = tcp.read(&mut chunk).unwrap();
            assert!(n > 0, "the broker closed before CONNACK");
            buf.extend_from_slice(&chunk[..n]);
            match mqttbytes::v4::read(&mut buf, 1 << 20) {
                Ok(Packet::ConnAck(_)) => break,
                Ok(other) => panic!("{other:?} instead of CONNACK"),
                Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        buf.clear();
        Publisher { tcp, buf }
    }

    /// Sends one QoS 0 message.
    fn send(&mut self, topic: &str, payload: &str) {
        self.buf.clear();
        Publish::new(topic, QoS::AtMostOnce, payload.as_bytes().to_vec())
            .write(&mut self.buf)
            .unwrap();
        self.tcp.write_all(&self.buf).unwrap();
    }
}

/// The daemon under test, with `config`; killed on drop.
struct Daemon {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(bin: &Path, config: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tablo.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(bin)
            .args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--display",
                "none",
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tablo");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("tablo logged its address")
                .expect("stderr");
            if let Some(rest) = line.split_once("listening on ") {
                break rest.1.split_whitespace().next().unwrap().to_owned();
            }
        };
        thread::spawn(move || for _ in lines {});
        Daemon {
            child,
            addr,
            _dir: dir,
        }
    }

    /// One sample of `/metrics`.
    fn metric(&self, series: &str) -> f64 {
        let mut tcp = TcpStream::connect(&self.addr).unwrap();
        write!(
            tcp,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut body = String::new();
        let _ = tcp.read_to_string(&mut body);
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    fn wait_metric(&self, series: &str, want: f64, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.metric(series) < want {
            assert!(Instant::now() < deadline, "{series} did not reach {want}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebSocket client of Tablo's reading `prices`: each tick's `volume`
/// (the publisher's write instant) into `hist` against `start`.
fn ws_reader(
    addr: String,
    start: Instant,
    ready: mpsc::Sender<()>,
) -> mpsc::Receiver<Histogram<u64>> {
    let (done_tx, done) = mpsc::channel();
    thread::spawn(move || {
        smol::block_on(async move {
            use async_tungstenite::tungstenite::Message;
            use futures_util::StreamExt;
            let (mut ws, _) = async_tungstenite::smol::connect_async(format!("ws://{addr}/ws"))
                .await
                .expect("connect to tablo");
            ws.send(Message::text(r#"{"op":"subscribe","channels":["prices"]}"#))
                .await
                .unwrap();
            let mut hist = Histogram::<u64>::new(3).unwrap();
            let mut said_ready = false;
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if v["type"] == "subscribed" && !said_ready {
                    said_ready = true;
                    let _ = ready.send(());
                }
                if v["type"] == "tick"
                    && let Some(ns) = v["volume"].as_str().and_then(|s| s.parse::<u64>().ok())
                {
                    if ns == u64::MAX {
                        break;
                    }
                    let now = start.elapsed().as_nanos() as u64;
                    let _ = hist.record(now.saturating_sub(ns) / 1000);
                }
            }
            let _ = done_tx.send(hist);
        })
    });
    done
}

fn ms(hist: &Histogram<u64>, q: f64) -> f64 {
    hist.value_at_quantile(q) as f64 / 1000.0
}

fn main() {
    let quick = std::env::var_os("TABLO_BENCH_QUICK").is_some();
    let rate = env_u64("TABLO_BENCH_RATE", 100);
    let seconds = env_u64("TABLO_BENCH_SECONDS", if quick { 2 } else { 10 });
    let burst = env_u64("TABLO_BENCH_BURST", if quick { 1000 } else { 10_000 });
    let bin: PathBuf = support::release_binary();
    println!("machine: {}", support::machine());
    let dir = tempfile::tempdir().unwrap();

    // Latency: publisher → Mosquitto → Tablo → WebSocket client, against
    // publisher → Mosquitto → mosquitto_sub, in the same run.
    let port = free_port();
    let broker = start_broker(dir.path(), port);
    let config = format!(
        r#"
[[feed]]
name = "hq"
format = "mqtt"
url = "mqtt://127.0.0.1:{port}"
topics = ["bench/+"]
qos = 0

[feed.pointers]
symbol = "topic:2"
price = "/p"
volume = "/v"
"#
    );
    let daemon = Daemon::start(&bin, &config);
    let start = Instant::now();
    let (ready_tx, ready) = mpsc::channel();
    let tablo_hist = ws_reader(daemon.addr.clone(), start, ready_tx);
    ready
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed");
    daemon.wait_metric("tablo_feed_up{feed=\"hq\"}", 1.0, Duration::from_secs(10));
    let sub = Sub::start(port, "bench/+", None);
    thread::sleep(Duration::from_millis(300));
    let mut publisher = Publisher::connect(port);
    let n = rate * seconds;
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let mut next = Instant::now();
    for k in 0..n {
        let at = start.elapsed().as_nanos() as u64;
        let symbol = format!("S{:02}", k as usize % SYMBOLS);
        publisher.send(
            &format!("bench/{symbol}"),
            &format!(r#"{{"p":"1.{k}","v":"{at}"}}"#),
        );
        next += interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
    }
    publisher.send("bench/END", &format!(r#"{{"p":"1","v":"{}"}}"#, u64::MAX));
    let tablo = tablo_hist
        .recv_timeout(Duration::from_secs(30))
        .expect("the WebSocket client's histogram");
    let mut broker_hist = Histogram::<u64>::new(3).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok((at, line)) = sub
        .lines
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        let Some(ns) = v["v"].as_str().and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        if ns == u64::MAX {
            break;
        }
        let now = at.duration_since(start).as_nanos() as u64;
        let _ = broker_hist.record(now.saturating_sub(ns) / 1000);
    }
    println!(
        "latency at {rate} msg/s over {SYMBOLS} symbols, {n} messages (QoS 0):\n\
         \x20 publisher → Mosquitto → Tablo → WebSocket client: p50 {:.2} ms, p99 {:.2} ms ({} received)\n\
         \x20 publisher → Mosquitto → mosquitto_sub:            p50 {:.2} ms, p99 {:.2} ms ({} received)",
        ms(&tablo, 0.5),
        ms(&tablo, 0.99),
        tablo.len(),
        ms(&broker_hist, 0.5),
        ms(&broker_hist, 0.99),
        broker_hist.len()
    );
    drop(sub);
    drop(daemon);
    drop(broker);

    // Forward throughput at QoS 1, then the outbox's replay after an outage.
    let in_port = free_port();
    let out_port = free_port();
    let input = start_broker(dir.path(), in_port);
    let output = start_broker(dir.path(), out_port);
    Sub::register(out_port, "out/#", "bench-consumer");
    let config = format!(
        r#"
[journal]
flush_interval_ms = 100

[[feed]]
name = "in"
format = "mqtt"
url = "mqtt://127.0.0.1:{in_port}"
topics = ["bench/+"]
qos = 0

[feed.pointers]
symbol = "topic:2"
price = "/p"

[[feed]]
name = "out"
format = "mqtt"
url = "mqtt://127.0.0.1:{out_port}"
topics = ["unused/none"]

[[forward]]
channels = ["prices.*"]
to = "out"
topic = "out/{{symbol}}"
qos = 1
"#
    );
    let daemon = Daemon::start(&bin, &config);
    daemon.wait_metric("tablo_feed_up{feed=\"in\"}", 1.0, Duration::from_secs(10));
    daemon.wait_metric("tablo_feed_up{feed=\"out\"}", 1.0, Duration::from_secs(10));
    let sub = Sub::start(out_port, "out/#", Some("bench-consumer"));
    thread::sleep(Duration::from_millis(300));
    let mut publisher = Publisher::connect(in_port);
    let sent_at = Instant::now();
    for k in 0..burst {
        publisher.send("bench/FWD", &format!(r#"{{"p":"{k}"}}"#));
    }
    let (first, last, got) = sub.first_last(burst, Duration::from_secs(120));
    println!(
        "forward, QoS 1, a burst of {burst} events: {got} arrived; first after {:.1} ms, \
         then {:.0} msg/s (first to last arrival), {:.0} msg/s from the first publish",
        first.duration_since(sent_at).as_secs_f64() * 1e3,
        got as f64 / last.duration_since(first).as_secs_f64().max(1e-9),
        got as f64 / last.duration_since(sent_at).as_secs_f64().max(1e-9),
    );
    drop(sub);

    // The outage: the forwarding broker is down while the burst comes in.
    let _ = output.stop();
    let queued = "tablo_forward_queued{to=\"out\",topic=\"out/{symbol}\"}";
    let before = daemon.metric(queued);
    for k in 0..burst {
        publisher.send("bench/FWD", &format!(r#"{{"p":"{k}"}}"#));
    }
    daemon.wait_metric(queued, before + burst as f64, Duration::from_secs(120));
    let output = start_broker(dir.path(), out_port);
    let restarted = Instant::now();
    let sub = Sub::start(out_port, "out/#", Some("bench-consumer"));
    let (first, last, got) = sub.first_last(burst, Duration::from_secs(120));
    println!(
        "outbox replay after an outage, {burst} messages queued: {got} arrived; first {:.1} s \
         after the broker came back (Tablo's reconnect backoff), then {:.0} msg/s",
        first.duration_since(restarted).as_secs_f64(),
        got as f64 / last.duration_since(first).as_secs_f64().max(1e-9),
    );
    drop(sub);
    drop(daemon);
    drop(output);
    drop(input);
}
