//! HTTP on the WebSocket port: `/healthz`, `/metrics` and 404s
//! (docs/protocol.md §19).

use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::Daemon;

#[test]
fn healthz_reports_status_feeds_journal_and_clients() {
    smol::block_on(async {
        let daemon = Daemon::start(&[]);
        let mut client = daemon.bot().await;
        // A round trip makes sure the daemon has taken the client in.
        client.ping_expect_pong_next(json!(1)).await;

        let (status, body) = daemon.http_get("/healthz");
        assert_eq!(status, 200, "{body}");
        let health: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/healthz is not JSON ({e}): {body}"));
        assert!(
            health["status"] == "ok" || health["status"] == "degraded",
            "{health}"
        );
        let feeds = health["feeds"]
            .as_array()
            .unwrap_or_else(|| panic!("feeds should be an array: {health}"));
        assert!(
            !feeds.is_empty(),
            "the demo feed should be listed: {health}"
        );
        assert!(health["journal"].is_object(), "{health}");
        assert!(health["clients"].as_u64() >= Some(1), "{health}");
    });
}

#[test]
fn metrics_are_prometheus_text_with_tablo_names() {
    let daemon = Daemon::start(&[]);
    let (status, body) = daemon.http_get("/metrics");
    assert_eq!(status, 200, "{body}");
    let mut names = Vec::new();
    for line in body.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // `name{labels} value [timestamp]`; label values here never hold
        // spaces, so the value is the second field.
        let mut fields = line.split_whitespace();
        let series = fields.next().unwrap_or_default();
        let value = fields
            .next()
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        assert!(
            value.parse::<f64>().is_ok() || ["NaN", "+Inf", "-Inf"].contains(&value),
            "not a sample value in {line:?}"
        );
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "not a metric name in {line:?}"
        );
        names.push(name.to_owned());
    }
    assert!(
        names.iter().any(|n| n.starts_with("tablo_")),
        "no tablo_ metric in:\n{body}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("tablo_") && n.contains("client")),
        "no tablo_ clients metric in:\n{body}"
    );
}

#[test]
fn unknown_path_is_404() {
    let daemon = Daemon::start(&[]);
    let (status, body) = daemon.http_get("/nope");
    assert_eq!(status, 404, "{body}");
}

/// docs/protocol.md §16: a request head must be complete within 10 s.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn stalled_request_head_gets_408_after_the_head_timeout() {
    let daemon = Daemon::start(&[]);
    let started = Instant::now();
    // A connection that says nothing is closed without an answer; it
    // waits alongside the stalled one, so the test takes the timeout once.
    let mut silent = daemon.raw_connect(HEAD_TIMEOUT * 2);
    let (status, headers) = daemon.stalled_head_answer(
        "GET /healthz HTTP/1.1\r\nHost: tablo\r\nX-Slow: ",
        HEAD_TIMEOUT * 2,
    );
    let mut got = Vec::new();
    if let Err(e) = silent.read_to_end(&mut got) {
        panic!("a silent connection was not closed: {e}");
    }
    assert!(
        got.is_empty(),
        "a connection that sent nothing got an answer: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(status, 408, "{headers:?}");
    assert!(
        started.elapsed() >= HEAD_TIMEOUT,
        "answered after {:?}, before the head timeout",
        started.elapsed()
    );
    assert!(
        headers
            .iter()
            .any(|(name, value)| name == "connection" && value.trim() == "close"),
        "{headers:?}"
    );
}

/// Runs `promtool check metrics` on `text`: `None` when promtool is not on
/// PATH, else whether it passed and what it said.
fn promtool_check(text: &str) -> Option<(bool, String)> {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(text.as_bytes()).expect("write to promtool");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), said))
}

#[test]
fn metrics_pass_promtool_check_metrics() {
    // A board too (as a PNG), so the render metrics are checked with the rest.
    let daemon = Daemon::start(&["--display", "png"]);
    let (status, body) = daemon.http_get("/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("tablo_render_seconds_count"), "{body}");
    match promtool_check(&body) {
        Some((passed, said)) => assert!(passed, "promtool check metrics:\n{said}\n{body}"),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "promtool is not on PATH under CI=true; .ci/run installs it (apt-get install prometheus)"
            )
        }
        None => eprintln!(
            "SKIPPED: promtool is not on PATH (apt-get install prometheus); .ci/run installs it"
        ),
    }
}

#[test]
fn metrics_tell_the_version_and_the_process_figures() {
    let daemon = Daemon::start(&[]);
    let version = format!(
        "tablo_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(daemon.metric(&version), 1.0);
    // The listener, the journal's files, stdio: well more than three.
    assert!(daemon.metric("process_open_fds") > 3.0);
    assert!(daemon.metric("process_resident_memory_bytes") > 1e6);
    assert!(daemon.metric("process_virtual_memory_bytes") > 1e6);
    assert!(daemon.metric("process_cpu_seconds_total") >= 0.0);
    // Started within the last ten minutes, by the wall clock.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let started = daemon.metric("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 600.0,
        "started {started}, now {now}"
    );
}
