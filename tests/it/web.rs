//! The web page's HTTP side (docs/web.md): `/` and its files with `ETag`,
//! cache and security headers, `/api/snapshot`, `/api/stats`, and
//! `[server] cors_origins` on the API and the upgrade.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::Daemon;

/// A response: status, lower-cased headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `method path` with `extra` header lines (each ending in `\r\n`); the
/// server closes after one answer, so the body is what comes before EOF.
pub fn request(daemon: &Daemon, method: &str, path: &str, extra: &str) -> Answer {
    let mut stream = daemon.raw_connect(Duration::from_secs(5));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{extra}\r\n",
        daemon.addr()
    );
    stream.write_all(head.as_bytes()).expect("send the request");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path}: reading the answer: {e}"));
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = response.parse(&raw) else {
        panic!(
            "{method} {path}: not an HTTP answer: {:?}",
            String::from_utf8_lossy(&raw)
        );
    };
    Answer {
        status: response.code.unwrap_or(0),
        headers: response
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value).into_owned();
                (h.name.to_ascii_lowercase(), value)
            })
            .collect(),
        body: String::from_utf8_lossy(&raw[len..]).into_owned(),
    }
}

/// The CSP every page file must carry: nothing from elsewhere, no inline
/// script.
#[track_caller]
fn assert_strict_csp(answer: &Answer) {
    let csp = answer
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("no Content-Security-Policy: {:?}", answer.headers));
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{part} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
}

#[test]
fn the_page_is_served_with_its_headers_and_a_304_for_a_known_etag() {
    let daemon = Daemon::start(&[]);
    let page = request(&daemon, "GET", "/", "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_strict_csp(&page);
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert!(
        page.body
            .contains("<script type=\"module\" src=\"/page.js\">")
    );
    assert!(
        !page.body.contains("<script>") && !page.body.contains("style="),
        "no inline script or style: {}",
        page.body
    );
    let etag = page.header("etag").expect("an ETag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    let again = request(&daemon, "GET", "/", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(again.status, 304);
    assert_eq!(again.body, "");
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let other = request(&daemon, "GET", "/", "If-None-Match: \"other\"\r\n");
    assert_eq!(other.status, 200);

    let head = request(&daemon, "HEAD", "/", "");
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    assert_eq!(
        head.header("content-length"),
        Some(page.body.len().to_string().as_str())
    );
}

#[test]
fn the_scripts_and_style_are_served_and_fit_the_page_budget() {
    let daemon = Daemon::start(&[]);
    let mut total = request(&daemon, "GET", "/", "").body.len();
    for (path, kind, has) in [
        ("/tablo.js", "text/javascript", "export class Tablo"),
        (
            "/page.js",
            "text/javascript",
            "import { Tablo } from \"/tablo.js\"",
        ),
        ("/sw.js", "text/javascript", "addEventListener(\"fetch\""),
        ("/board.css", "text/css", "--up:#"),
    ] {
        let answer = request(&daemon, "GET", path, "");
        assert_eq!(answer.status, 200, "{path}");
        assert!(
            answer
                .header("content-type")
                .is_some_and(|t| t.starts_with(kind)),
            "{path}: {:?}",
            answer.header("content-type")
        );
        assert!(answer.body.contains(has), "{path} lacks {has}");
        assert_strict_csp(&answer);
        assert!(answer.header("etag").is_some(), "{path}");
        if path != "/sw.js" {
            total += answer.body.len();
        }
    }
    // docs/web.md §2: the page and what it loads stay within 48 KiB.
    assert!(total <= 48 * 1024, "the page is {total} bytes");
}

#[test]
fn the_page_carries_the_board_settings() {
    let config = r#"
[board]
title = "صرافی <نمونه>"
locale = "fa"
digits = "persian"
columns = ["bid", "ask", "change"]
stale_after = "5s"

[[board.rows]]
symbol = "USDIRR"
label = "دلار"
decimals = 0
"#;
    let daemon = Daemon::start_with_config(config, &[]);
    let page = request(&daemon, "GET", "/", "").body;
    assert!(page.contains("<html lang=\"fa\" dir=\"rtl\">"), "{page}");
    assert!(
        page.contains("<title>صرافی &lt;نمونه&gt;</title>"),
        "{page}"
    );
    let start = page
        .find("id=\"tablo-settings\">")
        .expect("the settings block")
        + 20;
    let end = start + page[start..].find("</script>").expect("its end");
    let settings: Value = serde_json::from_str(&page[start..end])
        .unwrap_or_else(|e| panic!("settings are not JSON ({e}): {}", &page[start..end]));
    assert_eq!(settings["title"], "صرافی <نمونه>");
    assert_eq!(settings["stale_after_ms"], 5000);
    assert_eq!(settings["numbers"]["zero"], "۰");
    assert_eq!(
        settings["rows"],
        json!([{"symbol": "USDIRR", "label": "دلار", "decimals": 0}])
    );
    let columns: Vec<&str> = settings["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(columns, ["bid", "ask", "change"]);
}

#[test]
fn api_snapshot_and_stats_answer_json_like_the_ops() {
    smol::block_on(async {
        let daemon = Daemon::start(&[]);
        let mut bot = daemon.bot().await;
        // The demo feed's first ticks, and the client counted.
        bot.subscribe(&["prices"]).await;
        bot.recv_until(|m| m["type"] == "tick").await;

        let answer = request(&daemon, "GET", "/api/snapshot", "");
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.header("content-type"), Some("application/json"));
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        assert_eq!(answer.header("access-control-allow-origin"), None);
        let snapshot: Value = serde_json::from_str(&answer.body).expect("JSON");
        assert!(snapshot["seq"].as_u64() > Some(0), "{snapshot}");
        let events = snapshot["events"].as_array().expect("events");
        assert!(events.iter().any(|e| e["type"] == "tick"), "{snapshot}");

        // A second client, with no subscription between it and the reply.
        let mut asker = daemon.bot().await;
        let op = asker.request(json!({"op": "snapshot"})).await;
        assert_eq!(op["type"], "snapshot");
        let symbols = |s: &Value| -> Vec<String> {
            let mut v: Vec<String> = s["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["type"] == "tick")
                .map(|e| e["symbol"].as_str().unwrap_or("").to_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(symbols(&snapshot), symbols(&op));

        let stats = request(&daemon, "GET", "/api/stats", "");
        assert_eq!(stats.status, 200);
        let stats: Value = serde_json::from_str(&stats.body).expect("JSON");
        assert_eq!(stats["type"], "stats");
        assert_eq!(stats["connections"], 2, "{stats}");
        assert!(stats["upstreams"].is_array(), "{stats}");
    });
}

#[test]
fn a_closed_server_wants_a_token_for_the_api_too() {
    let config = "[server]\nallow_anonymous = false\ntokens = [{ token = \"reader\" }]\n";
    let daemon = Daemon::start_with_config(config, &[]);
    let bare = request(&daemon, "GET", "/api/stats", "");
    assert_eq!(bare.status, 401, "{}", bare.body);
    assert!(bare.header("www-authenticate").is_some());
    assert_eq!(
        request(&daemon, "GET", "/api/snapshot?token=nope", "").status,
        401
    );
    assert_eq!(
        request(&daemon, "GET", "/api/snapshot?token=reader", "").status,
        200
    );
    let bearer = request(
        &daemon,
        "GET",
        "/api/stats",
        "Authorization: Bearer reader\r\n",
    );
    assert_eq!(bearer.status, 200, "{}", bearer.body);
    // The page itself is public; its socket needs the token.
    assert_eq!(request(&daemon, "GET", "/", "").status, 200);
}

#[test]
fn cors_is_off_by_default_and_names_only_the_configured_origins() {
    // Off: no CORS header, and any page may open the socket.
    let open = Daemon::start(&[]);
    let answer = request(
        &open,
        "GET",
        "/api/stats",
        "Origin: https://elsewhere.example\r\n",
    );
    assert_eq!(answer.header("access-control-allow-origin"), None);
    assert_eq!(upgrade(&open, "Origin: https://elsewhere.example\r\n"), 101);

    let config = "[server]\ncors_origins = [\"https://screens.example\"]\n";
    let daemon = Daemon::start_with_config(config, &[]);
    let allowed = request(
        &daemon,
        "GET",
        "/api/snapshot",
        "Origin: https://screens.example\r\n",
    );
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://screens.example")
    );
    assert_eq!(allowed.header("vary"), Some("Origin"));
    let other = request(
        &daemon,
        "GET",
        "/api/snapshot",
        "Origin: https://elsewhere.example\r\n",
    );
    assert_eq!(other.status, 200);
    assert_eq!(other.header("access-control-allow-origin"), None);

    assert_eq!(upgrade(&daemon, "Origin: https://screens.example\r\n"), 101);
    assert_eq!(
        upgrade(&daemon, "Origin: https://elsewhere.example\r\n"),
        403
    );
    // The board's own page, and a client that is not a browser.
    let own = format!("Origin: http://{}\r\n", daemon.addr());
    assert_eq!(upgrade(&daemon, &own), 101);
    assert_eq!(upgrade(&daemon, ""), 101);
}

#[test]
fn a_cors_origin_that_is_not_an_origin_is_a_config_error() {
    let sandbox = crate::harness::Sandbox::new();
    let file = sandbox.write(
        "tablo.toml",
        "[server]\ncors_origins = [\"https://ok.example\", \"https://bad.example/\"]\n",
    );
    let out = sandbox.tablo(&["check", "--config", file.to_str().expect("UTF-8")]);
    out.assert_code(78)
        .assert_stderr_has("tablo.toml:2")
        .assert_stderr_has("cors_origins");
}

/// The status of a WebSocket upgrade of `/ws` with `extra` headers.
fn upgrade(daemon: &Daemon, extra: &str) -> u16 {
    let answer = request_upgrade(daemon, extra);
    answer.status
}

fn request_upgrade(daemon: &Daemon, extra: &str) -> Answer {
    let mut stream = daemon.raw_connect(Duration::from_secs(5));
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n",
        daemon.addr()
    );
    stream.write_all(head.as_bytes()).expect("send the upgrade");
    let mut raw = Vec::new();
    let mut chunk = [0; 1024];
    loop {
        let n = stream.read(&mut chunk).expect("read the answer");
        raw.extend_from_slice(&chunk[..n]);
        if n == 0 || raw.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&raw) {
        Ok(httparse::Status::Complete(_)) => Answer {
            status: response.code.unwrap_or(0),
            headers: Vec::new(),
            body: String::new(),
        },
        _ => panic!("not an HTTP answer: {:?}", String::from_utf8_lossy(&raw)),
    }
}
