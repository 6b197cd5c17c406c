//! A headless Chromium driven over the DevTools protocol (CDP), for the web
//! page's tests in `browser`: Debian's `/usr/bin/chromium` (which `.ci/run`
//! installs), started, connected to and waited on through `browser_proc`,
//! which the Firefox driver shares. Nothing is downloaded.
//!
//! Every wait is on an event with a deadline: the "DevTools listening on"
//! line, a CDP reply, or a JavaScript promise that settles when the page
//! reaches the state the test waits for.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Value, json};

use crate::browser_proc::{self, Process, Rpc};
use crate::harness::within;

/// Where Debian puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long Chromium may take to start: generous, on a shared 2-core box.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one CDP command may take (a navigation, a screenshot).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A running headless Chromium with one page attached.
pub struct Chromium {
    rpc: Rpc,
    session: Option<String>,
    /// CDP events that arrived while waiting for a reply.
    events: VecDeque<Value>,
    process: Process,
}

/// Whether the browser tests can run here; under `CI=true` a missing
/// Chromium fails the test instead of skipping it.
pub fn available(test: &str) -> bool {
    browser_proc::available(CHROMIUM, "chromium", test)
}

impl Chromium {
    /// Starts Chromium and attaches to a blank page.
    pub async fn launch() -> Chromium {
        Chromium::launch_with(&[]).await
    }

    /// Like [`Chromium::launch`], with `extra` command-line switches.
    pub async fn launch_with(extra: &[&str]) -> Chromium {
        let (process, url) = Process::start(
            "Chromium",
            "DevTools listening on ",
            LAUNCH_TIMEOUT,
            |profile| {
                let mut command = std::process::Command::new(CHROMIUM);
                command
                    .args([
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-quic",
                        "--no-first-run",
                        "--no-default-browser-check",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--disable-extensions",
                        "--disable-dev-shm-usage",
                        "--hide-scrollbars",
                        "--remote-debugging-port=0",
                        "--lang=en-US",
                    ])
                    .args(extra)
                    .arg(format!("--user-data-dir={}", profile.display()))
                    .arg("about:blank");
                command
            },
        );
        let mut browser = Chromium {
            rpc: Rpc::connect("DevTools", &url).await,
            session: None,
            events: VecDeque::new(),
            process,
        };
        let target = browser
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"].as_str().map(str::to_owned);
        browser.call("Page.enable", json!({})).await;
        browser.call("Runtime.enable", json!({})).await;
        browser.call("Log.enable", json!({})).await;
        browser
    }

    /// Sends one CDP command to the page and returns its `result`; fails
    /// the test on an error reply.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let mut message = json!({"method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        let events = &mut self.events;
        let reply = self
            .rpc
            .call(message, CALL_TIMEOUT, |value| keep(events, value))
            .await;
        if let Some(error) = reply.get("error") {
            panic!("{method} failed: {error}");
        }
        reply["result"].clone()
    }

    /// Fails the test if the page threw an uncaught exception or the
    /// browser logged an error (a CSP violation among them) so far, but
    /// for failed WebSocket connections, which a page whose daemon is down
    /// is expected to have.
    #[track_caller]
    pub fn assert_no_errors(&self) {
        let errors: Vec<&Value> = self
            .events
            .iter()
            .filter(|e| {
                e["method"] == "Runtime.exceptionThrown"
                    || (e["method"] == "Log.entryAdded"
                        && e["params"]["entry"]["level"] == "error"
                        && !e["params"]["entry"]["text"]
                            .as_str()
                            .is_some_and(|t| t.starts_with("WebSocket connection")))
            })
            .collect();
        assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
    }

    /// Loads `url` and waits for its load event.
    pub async fn open(&mut self, url: &str) {
        self.events.clear();
        let result = self.call("Page.navigate", json!({"url": url})).await;
        if let Some(error) = result.get("errorText") {
            panic!("navigating to {url}: {error}");
        }
        self.wait_event("Page.loadEventFired").await;
    }

    /// Reloads the page and waits for its load event.
    pub async fn reload(&mut self) {
        self.events.clear();
        self.call("Page.reload", json!({"ignoreCache": false}))
            .await;
        self.wait_event("Page.loadEventFired").await;
    }

    async fn wait_event(&mut self, method: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
            return self.events.remove(i).expect("just found");
        }
        within(CALL_TIMEOUT, async {
            loop {
                let value = self.rpc.next(method).await;
                if value["method"] == method {
                    break value;
                }
                keep(&mut self.events, value);
            }
        })
        .await
        .unwrap_or_else(|| panic!("no {method} within {CALL_TIMEOUT:?}"))
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns
    /// its value; fails the test on a JavaScript exception.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(details) = result.get("exceptionDetails") {
            let text = details["exception"]["description"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| details.to_string());
            panic!("{expression}\nthrew: {text}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until the JavaScript `condition` is truthy in the page (the
    /// page checks it every 20 ms) and returns its value; fails after
    /// `limit` with `what` and the value of `show`.
    pub async fn wait_for(&mut self, condition: &str, limit: Duration, show: &str) -> Value {
        let outcome = self
            .eval(&browser_proc::wait_script(condition, limit, show))
            .await;
        browser_proc::settled("Chromium", &outcome, condition, limit, show)
    }

    /// Makes the page `width`×`height` CSS pixels, as a phone when `mobile`.
    pub async fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    /// A PNG of what the page shows.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        base64_decode(shot["data"].as_str().expect("screenshot data"))
    }

    /// `Performance.getMetrics` as name → value (after `Performance.enable`).
    pub async fn metrics(&mut self) -> Vec<(String, f64)> {
        let result = self.call("Performance.getMetrics", json!({})).await;
        result["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let name = m["name"].as_str().unwrap_or("").to_owned();
                (name, m["value"].as_f64().unwrap_or(f64::NAN))
            })
            .collect()
    }
}

impl Chromium {
    /// CPU time (user + system) of Chromium and every process under it
    /// (the page's renderer, the GPU and network processes), from /proc.
    pub fn cpu_seconds(&self) -> f64 {
        let root = self.process.id();
        let mut stats = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // After the command's closing parenthesis: state, ppid, ... with
            // utime and stime the 12th and 13th fields.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            stats.push((pid, num(1) as u32, num(11) + num(12)));
        }
        let mut tree = vec![root];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(stats.iter().filter(|s| s.1 == parent).map(|s| s.0));
            i += 1;
        }
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let total: u64 = stats
            .iter()
            .filter(|s| tree.contains(&s.0))
            .map(|s| s.2)
            .sum();
        total as f64 / ticks
    }
}

/// Keeps a CDP event (a message with a `method`) for
/// [`Chromium::assert_no_errors`] and the waits.
fn keep(events: &mut VecDeque<Value>, event: Value) {
    if event.get("method").is_none() {
        return;
    }
    events.push_back(event);
    // Only the newest events matter to the tests.
    if events.len() > 1000 {
        events.pop_front();
    }
}

/// Standard base64 (CDP's screenshots) to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c:?}"),
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(value(c)) << (18 - 6 * i);
        }
        let take = chunk.len() - 1;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
}
