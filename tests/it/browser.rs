//! The web page in a real browser (docs/web.md §5): headless Chromium
//! against a real daemon, checked through the DOM and the seqs the page
//! exposes (`window.tabloSeqs`).
//!
//! Screenshots go to the test's temp dir; with `TABLO_UPDATE_SCREENSHOTS=1`
//! they are also written to `docs/img/` (the README's pictures).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::chromium::{self, Chromium};
use crate::harness::{Client, Daemon, Sandbox, Stopped};

/// docs/web.md §5: live prices on the page within 2 s of its load.
const FIRST_PRICES: Duration = Duration::from_secs(2);

/// How long a published tick may take to reach the DOM.
const TO_THE_DOM: Duration = Duration::from_secs(5);

/// How long the page may take to see the daemon gone, and to come back:
/// the page's backoff is capped at 1 s in these tests (`backoff_max_ms`).
const RECONNECT: Duration = Duration::from_secs(10);

/// A config with a publishing token and a short `stale_after`.
const CONFIG: &str = r#"
[server]
tokens = [{ token = "pub", publish = true }]

[board]
title = "Web test"
stale_after = "2s"
"#;

/// A feed that never answers: no events but its own status.
const DEAD_FEED: &str = "binance=ws://127.0.0.1:1/ws";

/// Runs one browser test: skipped without Chromium (failed under
/// `CI=true`); otherwise `test` gets a daemon started with `config` and
/// `args`, and a fresh Chromium.
fn with_browser<F: Future<Output = ()>>(
    name: &str,
    config: &str,
    args: &[&str],
    test: impl FnOnce(Daemon, Chromium) -> F,
) {
    if !chromium::available(name) {
        return;
    }
    smol::block_on(async {
        let daemon = Daemon::start_with_config(config, args);
        let browser = Chromium::launch().await;
        test(daemon, browser).await;
    });
}

/// Saves a screenshot in `dir` and, when asked, in `docs/img/`.
fn keep_screenshot(dir: &std::path::Path, name: &str, png: &[u8]) -> PathBuf {
    assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
    let path = dir.join(name);
    std::fs::write(&path, png).expect("write the screenshot");
    if std::env::var("TABLO_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/img");
        std::fs::create_dir_all(&docs).expect("docs/img");
        std::fs::write(docs.join(name), png).expect("write docs/img");
    }
    path
}

async fn publisher(daemon: &Daemon) -> Client {
    daemon.ws("/ws?token=pub&client=bot").await
}

async fn publish_tick(bot: &mut Client, symbol: &str, price: &str, open: &str) -> u64 {
    let ack = bot
        .request(json!({"op": "publish", "channel": "prices", "id": 1,
            "data": {"symbol": symbol, "price": price, "open": open}}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    ack["seq"].as_u64().expect("an ack has a seq")
}

/// The text of a row's cell, in JavaScript.
fn cell(symbol: &str, cell: &str) -> String {
    format!("document.querySelector('.row[data-symbol=\"{symbol}\"] .{cell}')?.textContent")
}

/// SIGTERM, and the daemon's clean exit within 5 s.
#[track_caller]
fn stop(daemon: Daemon) -> Stopped {
    daemon.sigterm();
    let stopped = daemon.into_stopped(Duration::from_secs(5));
    assert!(stopped.status.success(), "{}", stopped.stderr);
    stopped
}

/// Waits until `symbol`'s `cell` reads `text`, within [`TO_THE_DOM`].
async fn wait_cell(browser: &mut Chromium, symbol: &str, cell_name: &str, text: &str) {
    let shown = cell(symbol, cell_name);
    browser
        .wait_for(&format!("{shown} === '{text}'"), TO_THE_DOM, &shown)
        .await;
}

#[test]
fn live_prices_show_within_two_seconds_and_a_change_reaches_the_dom() {
    with_browser(
        "live_prices_show_within_two_seconds",
        CONFIG,
        &["--feed", "demo="],
        |daemon, mut browser| async move {
            browser.open(&format!("http://{}/", daemon.addr())).await;
            let loaded = Instant::now();
            browser
            .wait_for(
                "[...document.querySelectorAll('.row .price')].some((p) => /\\d/.test(p.textContent))",
                FIRST_PRICES.saturating_sub(loaded.elapsed()),
                "document.querySelector('main').innerHTML",
            )
            .await;
            assert_eq!(
                browser.eval("document.body.dataset.conn").await,
                "connected"
            );

            let mut bot = publisher(&daemon).await;
            publish_tick(&mut bot, "WEBTEST", "1234.5", "1000").await;
            wait_cell(&mut browser, "WEBTEST", "price", "1,234.5").await;
            publish_tick(&mut bot, "WEBTEST", "999.25", "1000").await;
            let row = "document.querySelector('.row[data-symbol=\"WEBTEST\"]')";
            wait_cell(&mut browser, "WEBTEST", "price", "999.25").await;
            // Down against the open, with the change and its percent, and a
            // downward flash.
            let state = browser
            .eval(&format!(
                "({{cls: {row}.className, change: {}, flash: {row}.querySelector('.price').className}})",
                cell("WEBTEST", "change")
            ))
            .await;
            assert!(
                state["cls"].as_str().unwrap_or("").contains("down"),
                "{state}"
            );
            assert_eq!(state["change"], "-0.75-0.08%", "{state}");
            assert!(
                state["flash"].as_str().unwrap_or("").contains("fd"),
                "{state}"
            );

            // The page's client has its defaults (regression: an option the
            // page passed as undefined once replaced its default, and an
            // undefined backoff cap meant no backoff at all).
            let options = browser
                .eval("[window.tablo.options.backoffMaxMs, window.tablo.options.pingMs]")
                .await;
            assert_eq!(options, json!([30000, 10000]));

            // Every event once, in seq order.
            let seqs = browser.eval("window.tabloSeqs").await;
            assert_increasing(&seqs);
            // Nothing refused by the CSP, nothing thrown.
            browser.assert_no_errors();
        },
    );
}

#[test]
fn a_stopped_daemon_turns_the_page_offline_and_stale_and_a_restart_resumes_without_gap() {
    with_browser(
        "a_stopped_daemon_turns_the_page_offline",
        CONFIG,
        &["--feed", "demo="],
        |daemon, mut browser| async move {
            let addr = daemon.addr();
            browser
                .open(&format!("http://{addr}/?backoff_max_ms=1000"))
                .await;
            browser
                .wait_for(
                    "window.tabloSeqs.length > 5",
                    TO_THE_DOM,
                    "window.tabloSeqs",
                )
                .await;

            let stopped = stop(daemon);
            browser
            .wait_for(
                "document.body.dataset.conn === 'offline' && /\\d\\d:\\d\\d/.test(document.getElementById('conn').textContent)",
                RECONNECT,
                "document.getElementById('conn').textContent",
            )
            .await;
            // After stale_after (2 s) with no update every row is stale, with
            // its age.
            let stale = browser
            .wait_for(
                "[...document.querySelectorAll('.row')].every((r) => r.classList.contains('stale')) && document.querySelector('.row .age').textContent",
                Duration::from_secs(5),
                "document.querySelector('main').innerHTML",
            )
            .await;
            assert!(stale.as_str().unwrap_or("").ends_with("ago"), "{stale}");
            let before = browser.eval("window.tabloSeqs.length").await;

            // The same journal on the same address; the demo feed goes on, so
            // events arrive while the page is still away.
            let port = addr.to_string();
            let daemon = Daemon::start_in(
                stopped.sandbox,
                Some(CONFIG),
                &["--feed", "demo=", "--listen", &port],
            );
            browser
            .wait_for(
                &format!("document.body.dataset.conn === 'connected' && window.tabloSeqs.length > {before} + 20"),
                RECONNECT,
                "[document.body.dataset.conn, window.tabloSeqs.length]",
            )
            .await;
            let seqs = browser.eval("window.tabloSeqs").await;
            assert_increasing(&seqs);
            assert_contiguous(&seqs);
            assert_eq!(browser.eval("window.tabloGaps").await, json!([]));
            assert_eq!(browser.eval("window.tabloResets").await, 0);
            // Fresh again.
            browser
                .wait_for(
                    "document.querySelectorAll('.row.stale').length === 0",
                    TO_THE_DOM,
                    "document.querySelectorAll('.row.stale').length",
                )
                .await;
            drop(daemon);
        },
    );
}

#[test]
fn a_phone_gets_one_column_without_horizontal_scroll_and_a_tv_large_prices() {
    if !chromium::available("a_phone_gets_one_column") {
        return;
    }
    smol::block_on(async {
        let sandbox = Sandbox::new();
        let shots = sandbox.path().to_owned();
        let config = r#"
[board]
title = "Market board"

[[board.rows]]
symbol = "BTCUSDT"
label = "Bitcoin"

[[board.rows]]
symbol = "ETHUSDT"
label = "Ether"

[[board.rows]]
symbol = "XAUUSD"
label = "Gold"
decimals = 2

[[board.rows]]
symbol = "EURUSD"
label = "EUR/USD"
"#;
        let daemon = Daemon::start_in(sandbox, Some(config), &["--feed", "demo="]);
        let mut browser = Chromium::launch().await;
        browser.viewport(360, 640, true).await;
        browser.open(&format!("http://{}/", daemon.addr())).await;
        let filled =
            "[...document.querySelectorAll('.row .price')].every((p) => /\\d/.test(p.textContent))";
        browser
            .wait_for(
                filled,
                TO_THE_DOM,
                "document.querySelector('main').innerHTML",
            )
            .await;
        let widths = browser
            .eval("({scroll: document.documentElement.scrollWidth, inner: innerWidth, rows: [...document.querySelectorAll('.row')].map((r) => r.getBoundingClientRect().right)})")
            .await;
        assert_eq!(widths["inner"], 360, "{widths}");
        assert!(
            widths["scroll"].as_u64() <= Some(360),
            "horizontal scroll: {widths}"
        );
        for right in widths["rows"].as_array().expect("rows") {
            assert!(right.as_f64() <= Some(360.0), "a row overflows: {widths}");
        }
        keep_screenshot(&shots, "phone-latin.png", &browser.screenshot().await);

        browser.viewport(1920, 1080, false).await;
        let size = browser
            .eval("parseFloat(getComputedStyle(document.querySelector('.row .price')).fontSize)")
            .await;
        // docs/board.md: legible across a room, at least 48 px at 1080p.
        assert!(
            size.as_f64() >= Some(48.0),
            "price font {size} px at 1920×1080"
        );
        keep_screenshot(&shots, "tv-latin.png", &browser.screenshot().await);
        browser.assert_no_errors();
    });
}

#[test]
fn a_persian_board_is_right_to_left_with_persian_digits() {
    if !chromium::available("a_persian_board_is_right_to_left") {
        return;
    }
    smol::block_on(async {
        let sandbox = Sandbox::new();
        let shots = sandbox.path().to_owned();
        let config = r#"
[server]
tokens = [{ token = "pub", publish = true }]

[board]
title = "صرافی نمونه"
locale = "fa"
digits = "persian"
columns = ["bid", "ask", "change"]

[[board.rows]]
symbol = "USDIRR"
label = "دلار آمریکا"
decimals = 0

[[board.rows]]
symbol = "EURIRR"
label = "یورو"
decimals = 0

[[board.rows]]
symbol = "GOLD18"
label = "طلای ۱۸ عیار"
decimals = 0
"#;
        let daemon = Daemon::start_in(sandbox, Some(config), &["--feed", DEAD_FEED]);
        let mut bot = publisher(&daemon).await;
        for (symbol, bid, ask, open) in [
            ("USDIRR", "1052300", "1054100", "1040000"),
            ("EURIRR", "1189500", "1192000", "1195000"),
            ("GOLD18", "68450000", "68900000", "68450000"),
        ] {
            let ack = bot
                .request(
                    json!({"op": "publish", "channel": "prices", "id": 1, "data":
                    {"symbol": symbol, "price": bid, "bid": bid, "ask": ask, "open": open}}),
                )
                .await;
            assert_eq!(ack["type"], "ack", "{ack}");
        }
        let mut browser = Chromium::launch().await;
        browser.viewport(360, 640, true).await;
        browser.open(&format!("http://{}/", daemon.addr())).await;
        wait_cell(&mut browser, "USDIRR", "bid", "۱٬۰۵۲٬۳۰۰").await;
        let page = browser
            .eval("({dir: getComputedStyle(document.body).direction, lang: document.documentElement.lang,
                     text: document.querySelector('main').innerText,
                     label: document.querySelector('.label').getBoundingClientRect().left,
                     ask: document.querySelector('.ask').getBoundingClientRect().left,
                     scroll: document.documentElement.scrollWidth})")
            .await;
        assert_eq!(page["dir"], "rtl", "{page}");
        assert_eq!(page["lang"], "fa", "{page}");
        let text = page["text"].as_str().unwrap_or("");
        assert!(text.contains('۰') || text.contains('۵'), "{page}");
        assert!(
            !text.chars().any(|c| c.is_ascii_digit()),
            "Latin digits in {text}"
        );
        // Right to left: the label is right of the numbers.
        assert!(page["label"].as_f64() > page["ask"].as_f64(), "{page}");
        assert!(page["scroll"].as_u64() <= Some(360), "{page}");
        let status = browser
            .eval("document.getElementById('conn').textContent")
            .await;
        assert_eq!(status, "وصل");
        keep_screenshot(&shots, "phone-persian.png", &browser.screenshot().await);
        browser.viewport(1920, 1080, false).await;
        keep_screenshot(&shots, "tv-persian.png", &browser.screenshot().await);
        // News on the news line, an alert as a toast, a critical one as
        // the band.
        for (channel, data) in [
            ("news", json!({"title": "نرخ‌های تازه از ساعت ۹"})),
            (
                "alerts",
                json!({"level": "warning", "text": "نرخ‌ها تا ظهر به‌روز نمی‌شوند"}),
            ),
            (
                "alerts",
                json!({"level": "critical", "text": "بازار بسته است"}),
            ),
        ] {
            let ack = bot
                .request(json!({"op": "publish", "channel": channel, "id": 2, "data": data}))
                .await;
            assert_eq!(ack["type"], "ack", "{ack}");
        }
        browser
            .wait_for(
                "document.getElementById('headline').textContent === 'نرخ‌های تازه از ساعت ۹'
                 && !document.getElementById('news').hidden
                 && document.querySelector('.toast.warning')?.textContent === 'نرخ‌ها تا ظهر به‌روز نمی‌شوند'
                 && !document.getElementById('band').hidden
                 && document.getElementById('band').textContent === 'بازار بسته است'",
                TO_THE_DOM,
                "[document.getElementById('news').outerHTML, document.getElementById('toasts').innerHTML, document.getElementById('band').outerHTML]",
            )
            .await;

        browser.assert_no_errors();
    });
}

#[track_caller]
fn seq_list(seqs: &Value) -> Vec<u64> {
    seqs.as_array()
        .unwrap_or_else(|| panic!("not a list: {seqs}"))
        .iter()
        .map(|s| s.as_u64().unwrap_or_else(|| panic!("not a seq: {s}")))
        .collect()
}

#[track_caller]
fn assert_increasing(seqs: &Value) {
    let seqs = seq_list(seqs);
    assert!(!seqs.is_empty(), "no events reached the page");
    for pair in seqs.windows(2) {
        assert!(pair[0] < pair[1], "{} then {}: {seqs:?}", pair[0], pair[1]);
    }
}

/// With `*` subscribed, every seq from the first to the last, once.
#[track_caller]
fn assert_contiguous(seqs: &Value) {
    let seqs = seq_list(seqs);
    for pair in seqs.windows(2) {
        assert_eq!(pair[0] + 1, pair[1], "a hole after {}: {seqs:?}", pair[0]);
    }
}

/// The alerts with `text` in the daemon's journal.
fn journaled(daemon: &Daemon, text: &str) -> Vec<u64> {
    let (status, body) = daemon.http_get("/journal/export");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "alert" && e["text"] == text)
        .filter_map(|e| e["seq"].as_u64())
        .collect()
}

#[test]
fn publishes_made_offline_or_racing_their_ack_are_applied_exactly_once() {
    with_browser(
        "publishes_made_offline_are_applied_exactly_once",
        CONFIG,
        &["--feed", DEAD_FEED],
        |daemon, mut browser| async move {
            let addr = daemon.addr();
            browser.open(&format!("http://{addr}/")).await;
            // A publishing client of its own, beside the page's read-only one.
            browser
                .eval(
                    "import('/tablo.js').then(({ Tablo }) => {
                   window.pub = new Tablo(location.href, { token: 'pub', client: 'bot',
                     channels: ['alerts'], backoffMaxMs: 500 });
                   window.sent = 0;
                   const send = window.pub.send.bind(window.pub);
                   window.pub.send = (m) => { if (m.op === 'publish') window.sent++; send(m); };
                   window.pub.connect();
                 })",
                )
                .await;
            browser
                .wait_for(
                    "window.pub.state === 'connected'",
                    TO_THE_DOM,
                    "window.pub.state",
                )
                .await;

            // Racing the ack: the socket closes right after the publish went
            // out, so the ack is lost and the publish is sent again after the
            // reconnect, with the same key.
            browser
                .eval(
                    "window.raced = window.pub.publish('alerts', { level: 'info', text: 'raced' });
                 window.pub.ws.close(); true",
                )
                .await;
            let raced = browser.eval("window.raced").await;
            let raced = raced.as_u64().expect("the publish resolves with its seq");
            // Sent twice (the ack of the first was lost with its socket),
            // applied once.
            assert_eq!(browser.eval("window.sent").await, 2);
            assert_eq!(journaled(&daemon, "raced"), [raced]);

            // Offline: queued (in localStorage too), sent after the restart.
            daemon.sigterm();
            let stopped = daemon.into_stopped(Duration::from_secs(5));
            browser
                .wait_for(
                    "window.pub.state === 'offline'",
                    RECONNECT,
                    "window.pub.state",
                )
                .await;
            let queued = browser
            .eval(
                "window.later = window.pub.publish('alerts', { level: 'warning', text: 'offline' });
                 window.pub.queued.length + ':' + localStorage.getItem(window.pub.queueKey).includes('offline')",
            )
            .await;
            assert_eq!(queued, "1:true");
            let port = addr.to_string();
            let daemon = Daemon::start_in(
                stopped.sandbox,
                Some(CONFIG),
                &["--feed", DEAD_FEED, "--listen", &port],
            );
            let later = browser.eval("window.later").await;
            let later = later.as_u64().expect("the publish resolves with its seq");
            assert!(later > raced);
            assert_eq!(browser.eval("window.sent").await, 3);
            assert_eq!(journaled(&daemon, "offline"), [later]);
            assert_eq!(journaled(&daemon, "raced"), [raced]);
            let left = browser
                .eval("window.pub.queued.length + ':' + localStorage.getItem(window.pub.queueKey)")
                .await;
            assert_eq!(left, "0:null");
        },
    );
}

#[test]
fn a_reload_with_the_daemon_down_shows_the_last_known_rows_through_the_service_worker() {
    let config = r#"
[board]
title = "Offline test"

[[board.rows]]
symbol = "BTCUSDT"
label = "Bitcoin"

[[board.rows]]
symbol = "EURUSD"
label = "EUR/USD"
"#;
    with_browser(
        "a_reload_with_the_daemon_down",
        config,
        &["--feed", "demo="],
        |daemon, mut browser| async move {
            // 127.0.0.1 is a secure context, so the page registers its worker.
            browser.open(&format!("http://{}/", daemon.addr())).await;
            browser
                .wait_for(
                    "navigator.serviceWorker.controller !== null",
                    TO_THE_DOM,
                    "navigator.serviceWorker.controller",
                )
                .await;
            let prices = "[...document.querySelectorAll('.row .price')].map((p) => p.textContent)";
            let live = browser
                .wait_for(
                    &format!("{prices}.every((t) => /\\d/.test(t)) && {prices}"),
                    TO_THE_DOM,
                    prices,
                )
                .await;

            let _stopped = stop(daemon);
            browser
                .wait_for(
                    "document.body.dataset.conn === 'offline'",
                    RECONNECT,
                    "document.body.dataset.conn",
                )
                .await;
            // Once every row waiting for a redraw has had it.
            let kept = browser
                .wait_for(
                    &format!("window.tabloPending() === 0 && {prices}"),
                    TO_THE_DOM,
                    "window.tabloPending()",
                )
                .await;

            browser.reload().await;
            let shown = browser
                .wait_for(
                    &format!("{prices}.every((t) => /\\d/.test(t)) && {prices}"),
                    TO_THE_DOM,
                    "document.documentElement.outerHTML",
                )
                .await;
            assert_eq!(shown, kept, "the last-known rows (live before: {live})");
            let page = browser
            .eval(
                "({stale: [...document.querySelectorAll('.row')].every((r) => r.classList.contains('stale')),
                   age: document.querySelector('.row .age').textContent,
                   conn: document.getElementById('conn').textContent,
                   title: document.title})",
            )
            .await;
            assert_eq!(page["stale"], true, "{page}");
            assert!(
                page["age"].as_str().unwrap_or("").ends_with("ago"),
                "{page}"
            );
            let conn = page["conn"].as_str().unwrap_or("");
            assert!(conn.starts_with("OFFLINE since "), "{page}");
            assert_eq!(page["title"], "Offline test");
        },
    );
}

/// How long the cost test feeds the page 100 updates a second (seconds);
/// `TABLO_WEB_COST_SECS` runs it longer (the README's figures: 600).
const COST_SECS: u64 = 10;

#[test]
fn the_page_keeps_up_with_100_updates_a_second_at_a_small_cost() {
    if !chromium::available("the_page_keeps_up_with_100_updates_a_second") {
        return;
    }
    smol::block_on(async {
        let (upstream, daemon) = crate::relay::binance_daemon("/ws/!ticker@arr").await;
        let mut browser = Chromium::launch().await;
        browser.viewport(1920, 1080, false).await;
        browser.open(&format!("http://{}/", daemon.addr())).await;
        browser.call("Performance.enable", json!({})).await;
        let symbols: Vec<String> = (0..16).map(|i| format!("SYM{i:02}USDT")).collect();
        let secs = std::env::var("TABLO_WEB_COST_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(COST_SECS);
        // One round of every symbol first, so the rows exist.
        for s in &symbols {
            upstream.send(&crate::relay::binance_ticker(s, "100.00").to_string());
        }
        browser
            .wait_for(
                "document.querySelectorAll('.row').length === 16",
                TO_THE_DOM,
                "document.querySelectorAll('.row').length",
            )
            .await;
        let before = sample(&mut browser).await;
        let cpu_before = browser.cpu_seconds();
        let started = Instant::now();
        let mut sent = 0u64;
        let mut next = Instant::now();
        while started.elapsed() < Duration::from_secs(secs) {
            // 100 updates a second, paced in steps of 10 ms (load, not
            // a wait for correctness).
            next += Duration::from_millis(10);
            smol::Timer::at(next).await;
            let symbol = &symbols[sent as usize % symbols.len()];
            let price = format!("{}.{:02}", 100 + sent % 7, sent % 100);
            upstream.send(&crate::relay::binance_ticker(symbol, &price).to_string());
            sent += 1;
        }
        let wall = started.elapsed().as_secs_f64();
        let browser_cpu = (browser.cpu_seconds() - cpu_before) / wall;
        let last = format!("{}.{:02}", 100 + (sent - 1) % 7, (sent - 1) % 100);
        let last_symbol = &symbols[(sent - 1) as usize % symbols.len()];
        browser
            .wait_for(
                &format!("{} === '{last}'", cell(last_symbol, "price")),
                TO_THE_DOM,
                &cell(last_symbol, "price"),
            )
            .await;
        let after = sample(&mut browser).await;
        let busy = (after.task_s - before.task_s) / wall;
        let script = (after.script_s - before.script_s) / wall;
        let seen = browser.eval("window.tabloCount").await;
        eprintln!(
            "web page at {:.0} updates/s for {wall:.0} s: Chromium's processes used {:.1} % of a core; \
             the page's main thread was busy {:.1} % of the time \
             (script {:.1} %, style {:.1} %, layout {:.1} %), JS heap after GC {:.2} MiB → \
             {:.2} MiB, {seen} events seen",
            sent as f64 / wall,
            browser_cpu * 100.0,
            busy * 100.0,
            script * 100.0,
            (after.style_s - before.style_s) / wall * 100.0,
            (after.layout_s - before.layout_s) / wall * 100.0,
            before.heap_mib,
            after.heap_mib
        );
        assert!(seen.as_u64() >= Some(sent), "{seen} of {sent} events");
        // Loose bounds, for a shared CI box: most of a core free, and no
        // growth beyond the bounded seq list (10,000 numbers).
        assert!(
            browser_cpu < 0.75,
            "Chromium used {:.0} % of a core",
            browser_cpu * 100.0
        );
        assert!(
            after.heap_mib < before.heap_mib + 2.0,
            "JS heap {:.2} → {:.2} MiB",
            before.heap_mib,
            after.heap_mib
        );
    });
}

/// What `Performance.getMetrics` says, after a garbage collection.
struct Sample {
    layout_s: f64,
    style_s: f64,
    task_s: f64,
    script_s: f64,
    heap_mib: f64,
}

async fn sample(browser: &mut Chromium) -> Sample {
    browser.call("HeapProfiler.collectGarbage", json!({})).await;
    let metrics = browser.metrics().await;
    let get = |name: &str| {
        metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {name} in {metrics:?}"))
    };
    Sample {
        layout_s: get("LayoutDuration"),
        style_s: get("RecalcStyleDuration"),
        task_s: get("TaskDuration"),
        script_s: get("ScriptDuration"),
        heap_mib: get("JSHeapUsedSize") / (1024.0 * 1024.0),
    }
}

#[test]
fn on_plain_http_to_a_lan_name_the_page_works_without_a_service_worker() {
    if !chromium::available("on_plain_http_to_a_lan_name") {
        return;
    }
    smol::block_on(async {
        let daemon = Daemon::start_with_config(CONFIG, &["--feed", "demo="]);
        // A name, not loopback: not a secure context, as on a kiosk's LAN.
        let mut browser =
            Chromium::launch_with(&["--host-resolver-rules=MAP kiosk.test 127.0.0.1"]).await;
        let port = daemon.addr().port();
        browser.open(&format!("http://kiosk.test:{port}/")).await;
        browser
            .wait_for(
                "[...document.querySelectorAll('.row .price')].some((p) => /\\d/.test(p.textContent))",
                TO_THE_DOM,
                "document.querySelector('main').innerHTML",
            )
            .await;
        let page = browser
            .eval("({secure: window.isSecureContext, worker: 'serviceWorker' in navigator, conn: document.body.dataset.conn})")
            .await;
        assert_eq!(
            page,
            json!({"secure": false, "worker": false, "conn": "connected"})
        );
        browser.assert_no_errors();
    });
}

#[test]
fn a_closed_board_connects_with_the_token_in_the_address() {
    let config = "[server]\nallow_anonymous = false\ntokens = [{ token = \"reader\" }]\n";
    with_browser(
        "a_closed_board_connects_with_the_token",
        config,
        &["--feed", "demo="],
        |daemon, mut browser| async move {
            browser
                .open(&format!("http://{}/#token=reader", daemon.addr()))
                .await;
            browser
                .wait_for(
                    "document.body.dataset.conn === 'connected' && window.tabloSeqs.length > 0",
                    TO_THE_DOM,
                    "document.body.dataset.conn",
                )
                .await;
        },
    );
}

#[test]
fn a_frozen_link_is_found_within_two_ping_intervals() {
    with_browser(
        "a_frozen_link_is_found",
        CONFIG,
        &["--feed", DEAD_FEED],
        |daemon, mut browser| async move {
            browser.open(&format!("http://{}/", daemon.addr())).await;
            browser
            .eval(
                "import('/tablo.js').then(({ Tablo }) => {
                   window.probe = new Tablo(location.href, { pingMs: 500, channels: ['alerts'] });
                   window.probe.on('state', (s) => { if (s.state === 'offline') window.deadAt ??= performance.now(); });
                   window.probe.connect();
                 })",
            )
            .await;
            browser
                .wait_for(
                    "window.probe.state === 'connected'",
                    TO_THE_DOM,
                    "window.probe.state",
                )
                .await;
            // A stopped process keeps its sockets open and answers nothing:
            // what a phone's link looks like after the phone slept.
            browser
                .eval("window.frozeAt = performance.now(); true")
                .await;
            daemon.signal(libc::SIGSTOP);
            let took = browser
                .wait_for(
                    "window.deadAt && window.deadAt - window.frozeAt",
                    Duration::from_secs(5),
                    "window.probe.state",
                )
                .await;
            daemon.signal(libc::SIGCONT);
            let took = took.as_f64().expect("a duration");
            // Two intervals, and a little for timers on a busy machine.
            assert!(took <= 2.0 * 500.0 + 250.0, "found after {took:.0} ms");
            browser
                .wait_for(
                    "window.probe.state === 'connected'",
                    RECONNECT,
                    "window.probe.state",
                )
                .await;
        },
    );
}

#[test]
fn a_new_journal_behind_the_same_address_is_a_reset_and_the_page_carries_on() {
    with_browser(
        "a_new_journal_behind_the_same_address",
        CONFIG,
        &["--feed", DEAD_FEED],
        |daemon, mut browser| async move {
            let addr = daemon.addr();
            let mut bot = publisher(&daemon).await;
            publish_tick(&mut bot, "OLD", "1.00", "1.00").await;
            browser
                .open(&format!("http://{addr}/?backoff_max_ms=500"))
                .await;
            browser
                .wait_for(
                    &format!("{} === '1.00'", cell("OLD", "price")),
                    TO_THE_DOM,
                    "0",
                )
                .await;
            let old_epoch = browser.eval("window.tablo.epoch").await;
            drop(bot);
            daemon.sigterm();
            let stopped = daemon.into_stopped(Duration::from_secs(5));
            browser
                .wait_for("document.body.dataset.conn === 'offline'", RECONNECT, "0")
                .await;

            // Another journal (another epoch) on the same address: the resume is
            // answered with reset and a snapshot, and the page goes on from it.
            let port = addr.to_string();
            let daemon = Daemon::start_in(
                Sandbox::new(),
                Some(CONFIG),
                &["--feed", DEAD_FEED, "--listen", &port],
            );
            let mut bot = publisher(&daemon).await;
            publish_tick(&mut bot, "NEW", "2.00", "2.00").await;
            browser
                .wait_for(
                    &format!(
                        "window.tabloResets === 1 && {} === '2.00'",
                        cell("NEW", "price")
                    ),
                    RECONNECT,
                    "[window.tabloResets, document.querySelector('main').innerText]",
                )
                .await;
            let epoch = browser.eval("window.tablo.epoch").await;
            assert_ne!(epoch, old_epoch);
            assert_eq!(epoch, bot.hello["epoch"]);
            // Live events after the reset arrive too.
            publish_tick(&mut bot, "NEW", "3.00", "2.00").await;
            wait_cell(&mut browser, "NEW", "price", "3.00").await;
            drop(stopped);
        },
    );
}

#[test]
fn a_jwt_that_runs_out_is_refreshed_without_a_drop() {
    if !chromium::available("a_jwt_that_runs_out_is_refreshed") {
        return;
    }
    smol::block_on(async {
        let sandbox = Sandbox::new();
        sandbox.write(
            "jwt.secret",
            "a test secret of more than thirty-two bytes\n",
        );
        let config = "[server]\nallow_anonymous = false\n\n[server.jwt]\n\
                      hs256_secret_file = \"jwt.secret\"\nleeway = \"0s\"\n";
        let file = sandbox.write("tablo.toml", config);
        let token = |sandbox: &Sandbox, ttl: &str| {
            let out = sandbox.tablo(&[
                "token",
                "--config",
                file.to_str().expect("UTF-8"),
                "--sub",
                "phone",
                "--ttl",
                ttl,
            ]);
            out.assert_code(0);
            out.stdout.trim().to_owned()
        };
        let long = token(&sandbox, "1h");
        let mut browser = Chromium::launch().await;
        // Made last, so it is still good when the page connects.
        let short = token(&sandbox, "5s");
        let daemon = Daemon::start_in(sandbox, Some(config), &["--feed", "demo="]);
        browser
            .open(&format!("http://{}/#token={short}", daemon.addr()))
            .await;
        browser
            .eval(&format!(
                "window.expired = 0; window.refreshed = 0;
                 window.tablo.on('error', (e) => {{
                   if (e.code === 'token_expired') {{ window.expired++; window.tablo.refresh('{long}'); }}
                 }});
                 window.tablo.on('refreshed', () => window.refreshed++);
                 true"
            ))
            .await;
        browser
            .wait_for(
                "window.expired === 1 && window.refreshed === 1",
                Duration::from_secs(15),
                "[window.expired, window.refreshed, document.body.dataset.conn]",
            )
            .await;
        // Still the same connection, and events go on arriving.
        let seen = browser.eval("window.tabloSeqs.length").await;
        browser
            .wait_for(
                &format!("window.tabloSeqs.length > {seen} + 3 && document.body.dataset.conn === 'connected'"),
                TO_THE_DOM,
                "[window.tabloSeqs.length, document.body.dataset.conn]",
            )
            .await;
        assert_eq!(
            browser
                .eval("window.tablo.url.includes(window.tablo.options.token)")
                .await,
            true
        );
        assert_eq!(
            browser.eval("window.tablo.attempt").await,
            0,
            "no reconnect happened"
        );
    });
}
