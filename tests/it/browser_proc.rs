//! What the two browser drivers share (`chromium` over CDP, `firefox` over
//! WebDriver BiDi): a Debian browser found or skipped, started headless on
//! a fresh temp profile with `--remote-debugging-port=0`, the address it
//! listens on read from its stderr, one JSON-over-WebSocket connection
//! with numbered commands, and the JavaScript promise that waits for a
//! condition in the page. Nothing is downloaded.
//!
//! Every wait is on an event with a deadline: the "listening on" line, a
//! reply with our id, or the page's promise settling.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use serde_json::{Value, json};
use smol::net::TcpStream;
use tempfile::TempDir;

use crate::harness::within;

/// Whether `program` (Debian's `package`) is here for `test`; under
/// `CI=true` a missing browser fails the test instead of skipping it.
pub fn available(program: &str, package: &str, test: &str) -> bool {
    if Path::new(program).exists() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{program} is missing under CI=true; .ci/run installs it (apt-get install {package})"
        );
    }
    eprintln!("SKIPPED {test}: {program} is missing (apt-get install {package})");
    false
}

/// A running browser and its profile, killed and removed on drop.
pub struct Process {
    child: Child,
    /// Kept for the profile, which must outlive the process.
    _profile: TempDir,
}

impl Process {
    /// Runs the command `command` makes for a fresh profile directory, and
    /// waits up to `limit` for a stderr line with `marker`; returns the
    /// process and what follows `marker` on that line (the URL it listens
    /// on). `name` is the browser's, for failure messages.
    pub fn start(
        name: &str,
        marker: &str,
        limit: Duration,
        command: impl FnOnce(&Path) -> Command,
    ) -> (Process, String) {
        let profile = tempfile::tempdir().expect("a temp dir for the profile");
        let mut child = command(profile.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Nobody listens once the address is known.
                let _ = tx.send(line);
            }
        });
        let mut said = Vec::new();
        let url = loop {
            match rx.recv_timeout(limit) {
                Ok(line) => {
                    if let Some((_, url)) = line.split_once(marker) {
                        break url.trim().to_owned();
                    }
                    said.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{name} said no {marker:?} within {limit:?}:\n{}",
                        said.join("\n")
                    );
                }
            }
        };
        let process = Process {
            child,
            _profile: profile,
        };
        (process, url)
    }

    /// The browser's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `host:port` of a `ws://host:port/...` URL.
pub fn host_port(url: &str) -> &str {
    url.strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("not a ws:// URL: {url}"))
}

/// One JSON-over-WebSocket connection to a browser: numbered commands,
/// each answered by a message with the same `id`.
pub struct Rpc {
    ws: WebSocketStream<TcpStream>,
    next_id: u64,
    /// The protocol's name, for failure messages.
    protocol: &'static str,
}

impl Rpc {
    /// Connects to the WebSocket at `url` (a `ws://host:port/...`).
    pub async fn connect(protocol: &'static str, url: &str) -> Rpc {
        let addr = host_port(url);
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect to {protocol} at {addr}: {e}"));
        let (ws, _) = async_tungstenite::client_async(url, stream)
            .await
            .unwrap_or_else(|e| panic!("{protocol} upgrade at {url}: {e}"));
        Rpc {
            ws,
            next_id: 0,
            protocol,
        }
    }

    /// The next message; fails the test if the connection ends. `what`
    /// says what the test waits for.
    pub async fn next(&mut self, what: &str) -> Value {
        let frame = self.ws.next().await;
        let Some(Ok(Message::Text(text))) = frame else {
            panic!(
                "the {} connection ended while waiting for {what}: {frame:?}",
                self.protocol
            );
        };
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} sent no JSON: {e}", self.protocol))
    }

    /// Sends `message` (an object with `method`) with the next `id` and
    /// returns the reply with that id, within `limit`; every other message
    /// meanwhile goes to `other`.
    pub async fn call(
        &mut self,
        mut message: Value,
        limit: Duration,
        mut other: impl FnMut(Value),
    ) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        message["id"] = json!(id);
        let method = message["method"].as_str().unwrap_or("?").to_owned();
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .unwrap_or_else(|e| panic!("send {method} over {}: {e}", self.protocol));
        within(limit, async {
            loop {
                let value = self.next(&method).await;
                if value["id"] == id {
                    break value;
                }
                other(value);
            }
        })
        .await
        .unwrap_or_else(|| panic!("no reply to {method} within {limit:?}"))
    }
}

/// A JavaScript promise that checks `condition` every 20 ms and settles
/// within `limit` to a JSON string: `{"ok":true,"v":<its value>}`, or
/// `{"ok":false,"s":<the value of show>}` once `limit` has passed. Parse
/// it with [`settled`].
pub fn wait_script(condition: &str, limit: Duration, show: &str) -> String {
    let ms = limit.as_millis();
    format!(
        "new Promise((resolve) => {{
           const until = performance.now() + {ms};
           const check = () => {{
             let v; try {{ v = ({condition}); }} catch (e) {{ v = undefined; }}
             if (v) return resolve(JSON.stringify({{ok: true, v}}));
             if (performance.now() > until) {{
               let s; try {{ s = ({show}); }} catch (e) {{ s = String(e); }}
               return resolve(JSON.stringify({{ok: false, s}}));
             }}
             setTimeout(check, 20);
           }};
           check();
         }})"
    )
}

/// The value a [`wait_script`] promise settled to; fails the test (naming
/// `browser`) if `condition` did not hold within `limit`.
#[track_caller]
pub fn settled(
    browser: &str,
    outcome: &Value,
    condition: &str,
    limit: Duration,
    show: &str,
) -> Value {
    let parsed: Value = outcome
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_else(|| panic!("{browser}: waiting for `{condition}` gave {outcome}"));
    if parsed["ok"] != true {
        panic!(
            "{browser}: the page did not reach `{condition}` within {limit:?}; {show} = {}",
            parsed["s"]
        );
    }
    parsed["v"].clone()
}
