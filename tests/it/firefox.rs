//! The web page in headless Firefox, driven over WebDriver BiDi (the
//! protocol Firefox speaks on `--remote-debugging-port`): Debian's
//! `firefox-esr`, which `.ci/run` installs, a fresh profile, and the same
//! WebSocket client as the other tests. One check: the page's ES modules
//! load and show live prices (docs/web.md §2).

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

use crate::harness::{Daemon, within};

/// Where Debian puts the browser.
const FIREFOX: &str = "/usr/bin/firefox-esr";

/// How long Firefox may take to start: generous, on a shared 2-core box.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one BiDi command may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

struct Firefox {
    child: Child,
    ws: WebSocketStream<TcpStream>,
    next_id: u64,
    context: String,
    _profile: TempDir,
}

impl Firefox {
    async fn launch() -> Firefox {
        let profile = tempfile::tempdir().expect("a temp dir for the profile");
        let mut child = Command::new(FIREFOX)
            .args([
                "--headless",
                "--no-remote",
                "--remote-debugging-port=0",
                "--profile",
            ])
            .arg(profile.path())
            .arg("about:blank")
            .env("MOZ_CRASHREPORTER_DISABLE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {FIREFOX}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut said = Vec::new();
        let url = loop {
            match rx.recv_timeout(LAUNCH_TIMEOUT) {
                Ok(line) => {
                    if let Some((_, url)) = line.split_once("WebDriver BiDi listening on ") {
                        break url.trim().to_owned();
                    }
                    said.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "Firefox said no \"WebDriver BiDi listening on\" within {LAUNCH_TIMEOUT:?}:\n{}",
                        said.join("\n")
                    );
                }
            }
        };
        let addr = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("not a ws:// URL: {url}"))
            .to_owned();
        let session_url = format!("ws://{addr}/session");
        let stream = TcpStream::connect(addr.as_str())
            .await
            .unwrap_or_else(|e| panic!("connect to BiDi at {addr}: {e}"));
        let (ws, _) = async_tungstenite::client_async(session_url.as_str(), stream)
            .await
            .unwrap_or_else(|e| panic!("BiDi upgrade at {session_url}: {e}"));
        let mut firefox = Firefox {
            child,
            ws,
            next_id: 0,
            context: String::new(),
            _profile: profile,
        };
        firefox
            .call("session.new", json!({"capabilities": {}}))
            .await;
        let tree = firefox.call("browsingContext.getTree", json!({})).await;
        firefox.context = tree["contexts"][0]["context"]
            .as_str()
            .unwrap_or_else(|| panic!("no browsing context: {tree}"))
            .to_owned();
        firefox
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .unwrap_or_else(|e| panic!("send {method} to Firefox: {e}"));
        let reply = within(CALL_TIMEOUT, async {
            loop {
                let frame = self.ws.next().await;
                let Some(Ok(Message::Text(text))) = frame else {
                    panic!("the BiDi connection ended while waiting for {method}: {frame:?}");
                };
                let value: Value = serde_json::from_str(&text).expect("BiDi sends JSON");
                if value["id"] == id {
                    break value;
                }
            }
        })
        .await
        .unwrap_or_else(|| panic!("no reply to {method} within {CALL_TIMEOUT:?}"));
        if reply["type"] == "error" {
            panic!("{method} failed: {reply}");
        }
        reply["result"].clone()
    }

    async fn open(&mut self, url: &str) {
        let context = self.context.clone();
        self.call(
            "browsingContext.navigate",
            json!({"context": context, "url": url, "wait": "complete"}),
        )
        .await;
    }

    /// Waits until `condition` is true in the page (it checks every
    /// 20 ms); fails after `limit` with the value of `show`.
    async fn wait_for(&mut self, condition: &str, limit: Duration, show: &str) {
        let ms = limit.as_millis();
        let js = format!(
            "new Promise((resolve) => {{
               const until = performance.now() + {ms};
               const check = () => {{
                 let v; try {{ v = ({condition}); }} catch (e) {{ v = false; }}
                 if (v) return resolve('ok');
                 if (performance.now() > until) {{
                   let s; try {{ s = String({show}); }} catch (e) {{ s = String(e); }}
                   return resolve(s);
                 }}
                 setTimeout(check, 20);
               }};
               check();
             }})"
        );
        let context = self.context.clone();
        let result = self
            .call(
                "script.evaluate",
                json!({"expression": js, "target": {"context": context}, "awaitPromise": true}),
            )
            .await;
        let value = &result["result"]["value"];
        if result["type"] != "success" || value != "ok" {
            panic!(
                "Firefox: the page did not reach `{condition}` within {limit:?}; {show} = {result}"
            );
        }
    }
}

impl Drop for Firefox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_page_runs_in_firefox_too() {
    if !Path::new(FIREFOX).exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "{FIREFOX} is missing under CI=true; .ci/run installs it (apt-get install firefox-esr)"
            );
        }
        eprintln!("SKIPPED the_page_runs_in_firefox_too: {FIREFOX} is missing");
        return;
    }
    smol::block_on(async {
        let daemon = Daemon::start(&["--feed", "demo="]);
        let mut firefox = Firefox::launch().await;
        firefox.open(&format!("http://{}/", daemon.addr())).await;
        firefox
            .wait_for(
                "document.body.dataset.conn === 'connected' && [...document.querySelectorAll('.row .price')].some((p) => /\\d/.test(p.textContent)) && window.tabloSeqs.length > 0",
                Duration::from_secs(10),
                "document.body.dataset.conn + ' ' + document.querySelector('main').innerHTML",
            )
            .await;
    });
}
