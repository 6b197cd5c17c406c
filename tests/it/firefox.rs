//! The web page in headless Firefox, driven over WebDriver BiDi (the
//! protocol Firefox speaks on `--remote-debugging-port`): Debian's
//! `firefox-esr`, which `.ci/run` installs, a fresh profile, and the same
//! WebSocket client as the other tests. One check: the page's ES modules
//! load and show live prices (docs/web.md §2).

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::browser_proc::{self, Process, Rpc, host_port};
use crate::harness::Daemon;

/// Where Debian puts the browser.
const FIREFOX: &str = "/usr/bin/firefox-esr";

/// How long Firefox may take to start: generous, on a shared 2-core box.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one BiDi command may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

struct Firefox {
    rpc: Rpc,
    context: String,
    _process: Process,
}

impl Firefox {
    async fn launch() -> Firefox {
        let (process, url) = Process::start(
            "Firefox",
            "WebDriver BiDi listening on ",
            LAUNCH_TIMEOUT,
            |profile| {
                let mut command = Command::new(FIREFOX);
                command
                    .args([
                        "--headless",
                        "--no-remote",
                        "--remote-debugging-port=0",
                        "--profile",
                    ])
                    .arg(profile)
                    .arg("about:blank")
                    .env("MOZ_CRASHREPORTER_DISABLE", "1");
                command
            },
        );
        let session_url = format!("ws://{}/session", host_port(&url));
        let mut firefox = Firefox {
            rpc: Rpc::connect("BiDi", &session_url).await,
            context: String::new(),
            _process: process,
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
        let message = json!({"method": method, "params": params});
        let reply = self.rpc.call(message, CALL_TIMEOUT, |_| {}).await;
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
        let js = browser_proc::wait_script(condition, limit, show);
        let context = self.context.clone();
        let result = self
            .call(
                "script.evaluate",
                json!({"expression": js, "target": {"context": context}, "awaitPromise": true}),
            )
            .await;
        if result["type"] != "success" {
            panic!("Firefox: waiting for `{condition}` threw: {result}");
        }
        browser_proc::settled(
            "Firefox",
            &result["result"]["value"],
            condition,
            limit,
            show,
        );
    }
}

#[test]
fn the_page_runs_in_firefox_too() {
    if !browser_proc::available(FIREFOX, "firefox-esr", "the_page_runs_in_firefox_too") {
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
