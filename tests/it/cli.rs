//! The command line: `--version`, `check`, usage errors, config errors and
//! stopping on a signal (docs/config.md §1, §13, §14).

use std::path::Path;
use std::time::Duration;

use crate::harness::{Daemon, Sandbox, VERSION};

/// Exit code for bad usage (sysexits EX_USAGE).
const EX_USAGE: i32 = 64;

/// Exit code for a bad config (sysexits EX_CONFIG).
const EX_CONFIG: i32 = 78;

/// docs/config.md §14: SIGTERM stops the daemon within 2 s.
const STOP_WITHIN: Duration = Duration::from_secs(2);

#[test]
fn version_prints_name_and_version() {
    let out = Sandbox::new().tablo(&["--version"]);
    out.assert_code(0);
    assert_eq!(out.stdout.trim(), format!("tablo {VERSION}"), "\n{out}");
}

#[test]
fn check_prints_resolved_settings_as_toml() {
    let sandbox = Sandbox::new();
    let config = sandbox.write(
        "tablo.toml",
        r#"
[server]
listen = "127.0.0.1:7171"
max_clients = 5

[[feed]]
name = "spot"
format = "binance"
url = "wss://stream.binance.com:9443/ws"
symbols = ["BTCUSDT"]
"#,
    );
    let out = sandbox.tablo(&["check", "--config", path_str(&config)]);
    out.assert_code(0);
    let resolved: toml::Table = toml::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("`check` should print TOML: {e}\n{out}"));
    assert!(!resolved.is_empty(), "`check` printed no settings\n{out}");
    for expected in ["127.0.0.1:7171", "spot", "BTCUSDT"] {
        assert!(
            out.stdout.contains(expected),
            "the resolved settings should contain {expected:?}\n{out}"
        );
    }
}

/// The retention limits of the `[journal]` example in the README.
fn readme_limits() -> toml::Table {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = std::fs::read_to_string(&readme)
        .unwrap_or_else(|e| panic!("read {}: {e}", readme.display()));
    let block = text
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .find(|block| block.starts_with("[journal]"))
        .expect("the README's config section has a [journal] example");
    let table: toml::Table = toml::from_str(block)
        .unwrap_or_else(|e| panic!("the README's [journal] example is TOML: {e}\n{block}"));
    table["journal"]
        .as_table()
        .expect("a [journal] table")
        .clone()
}

/// Issue 16: with no config the journal is bounded, `check` says by what, and
/// the README's example shows those same limits.
#[test]
fn check_without_a_config_prints_the_default_limits_the_readme_shows() {
    let readme = readme_limits();
    let sandbox = Sandbox::new();
    let out = sandbox.tablo(&["check"]);
    out.assert_code(0);
    let resolved: toml::Table = toml::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("`check` should print TOML: {e}\n{out}"));
    let journal = &resolved["journal"];
    assert_eq!(
        journal["max_events"].as_integer(),
        Some(2_000_000),
        "\n{out}"
    );
    assert_eq!(journal["max_bytes"].as_str(), Some("512MiB"), "\n{out}");
    assert_eq!(journal["max_age"].as_str(), Some("7d"), "\n{out}");
    for key in ["max_events", "max_bytes", "max_age"] {
        assert_eq!(
            readme.get(key),
            Some(&journal[key]),
            "README's [journal] {key} should be the default `tablo check` prints\n{out}"
        );
    }
}

/// `"off"` turns one limit off and leaves the others at their defaults; the
/// output says `"off"` so that it loads back the same.
#[test]
fn check_shows_a_limit_turned_off() {
    let sandbox = Sandbox::new();
    let config = sandbox.write("tablo.toml", "[journal]\nmax_age = \"off\"\n");
    let out = sandbox.tablo(&["check", "--config", path_str(&config)]);
    out.assert_code(0);
    let resolved: toml::Table = toml::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("`check` should print TOML: {e}\n{out}"));
    let journal = &resolved["journal"];
    assert_eq!(journal["max_age"].as_str(), Some("off"), "\n{out}");
    assert_eq!(journal["max_bytes"].as_str(), Some("512MiB"), "\n{out}");
}

/// `check` on `config` exits 78 and its message names the file, `line` and
/// `key`.
#[track_caller]
fn check_rejects(config: &str, line: usize, key: &str) {
    let sandbox = Sandbox::new();
    let path = sandbox.write("tablo.toml", config);
    let out = sandbox.tablo(&["check", "--config", path_str(&path)]);
    out.assert_code(EX_CONFIG)
        .assert_stderr_has("tablo.toml")
        .assert_stderr_has(key);
    assert!(
        out.stderr.contains(&format!("tablo.toml:{line}"))
            || out.stderr.contains(&format!("line {line}")),
        "stderr should name line {line} (as `tablo.toml:{line}` or `line {line}`)\n{out}"
    );
}

#[test]
fn check_rejects_unknown_keys_naming_file_line_and_key() {
    check_rejects(
        "[server]\nlisten = \"127.0.0.1:7171\"\nlisten_port = 7171\n",
        3,
        "listen_port",
    );
    check_rejects("data_dir = \"/tmp/x\"\ncolour = \"red\"\n", 2, "colour");
    check_rejects(
        "[[feed]]\nname = \"b\"\nformat = \"binance\"\nurl = \"wss://x\"\nsymbol = [\"BTCUSDT\"]\n",
        5,
        "symbol",
    );
}

#[test]
fn check_rejects_wrong_values_naming_file_line_and_key() {
    check_rejects("[server]\nmax_clients = \"many\"\n", 2, "max_clients");
    check_rejects(
        "[[feed]]\nname = \"b\"\nformat = \"nosuch\"\nurl = \"wss://x\"\n",
        3,
        "format",
    );
}

#[test]
fn check_rejects_a_file_that_is_not_toml() {
    let sandbox = Sandbox::new();
    let path = sandbox.write("tablo.toml", "this is [not toml\n");
    sandbox
        .tablo(&["check", "--config", path_str(&path)])
        .assert_code(EX_CONFIG)
        .assert_stderr_has("tablo.toml");
}

#[test]
fn missing_config_file_is_a_config_error_naming_the_path() {
    let sandbox = Sandbox::new();
    let missing = sandbox.path().join("missing.toml");
    let missing = path_str(&missing);
    sandbox
        .tablo(&["check", "--config", missing])
        .assert_code(EX_CONFIG)
        .assert_stderr_has(missing);
    let data_dir = sandbox.data_dir();
    sandbox
        .tablo(&[
            "run",
            "--config",
            missing,
            "--listen",
            "127.0.0.1:0",
            "--display",
            "none",
            "--data-dir",
            path_str(&data_dir),
        ])
        .assert_code(EX_CONFIG)
        .assert_stderr_has(missing);
}

#[test]
fn bad_usage_exits_64() {
    let sandbox = Sandbox::new();
    let data_dir = sandbox.data_dir();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--display",
            "none",
            "--data-dir",
            path_str(&data_dir),
        ];
        args.extend_from_slice(extra);
        sandbox.tablo(&args)
    };
    let listen = ["--listen", "127.0.0.1:0"];
    run(&[&listen[..], &["--no-such-flag"]].concat()).assert_code(EX_USAGE);
    run(&[&listen[..], &["--feed", "nosuch=ws://x"]].concat()).assert_code(EX_USAGE);
    run(&[&listen[..], &["--feed", "binance"]].concat()).assert_code(EX_USAGE);
    run(&["--listen", "not-an-address"]).assert_code(EX_USAGE);
    sandbox.tablo(&["no-such-command"]).assert_code(EX_USAGE);
}

#[test]
fn sigterm_stops_the_daemon_with_exit_0_within_2s() {
    let mut daemon = Daemon::start(&[]);
    daemon.sigterm();
    let status = daemon.wait_exit(STOP_WITHIN);
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM should stop tablo with 0, got {status}; stderr:\n{}",
        daemon.stderr()
    );
}

#[test]
fn sigint_stops_the_daemon_with_exit_0_within_2s() {
    let mut daemon = Daemon::start(&[]);
    daemon.signal(libc::SIGINT);
    let status = daemon.wait_exit(STOP_WITHIN);
    assert_eq!(
        status.code(),
        Some(0),
        "SIGINT should stop tablo with 0, got {status}; stderr:\n{}",
        daemon.stderr()
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

#[test]
fn json_and_coinbase_feed_flags_are_bad_usage_pointing_at_the_config() {
    let sandbox = Sandbox::new();
    let data_dir = sandbox.data_dir();
    sandbox
        .tablo(&[
            "run",
            "--feed",
            "json=ws://127.0.0.1:1/x",
            "--listen",
            "127.0.0.1:0",
            "--display",
            "none",
            "--data-dir",
            path_str(&data_dir),
        ])
        .assert_code(EX_USAGE)
        .assert_stderr_has("[[feed]]");
    sandbox
        .tablo(&[
            "run",
            "--feed",
            "coinbase=wss://127.0.0.1:1/x",
            "--display",
            "none",
            "--data-dir",
            path_str(&data_dir),
        ])
        .assert_code(EX_USAGE)
        .assert_stderr_has("symbols");
}

#[test]
fn kiosk_examples_pass_check() {
    let kiosk = Path::new(env!("CARGO_MANIFEST_DIR")).join("kiosk");
    let mut examples: Vec<_> = std::fs::read_dir(&kiosk)
        .unwrap_or_else(|e| panic!("read {}: {e}", kiosk.display()))
        .map(|entry| entry.expect("a kiosk/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    examples.sort();
    assert!(
        !examples.is_empty(),
        "kiosk/ should ship example configs (docs/config.md §1)"
    );
    let sandbox = Sandbox::new();
    for example in &examples {
        sandbox
            .tablo(&["check", "--config", path_str(example)])
            .assert_code(0);
    }
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {}",
        path.display()
    );
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20))
}

#[test]
fn render_draws_the_demo_at_the_requested_size_without_creating_a_journal() {
    let sandbox = Sandbox::new();
    let data_dir = sandbox.data_dir();
    let out = data_dir
        .parent()
        .expect("the data dir lives in the sandbox")
        .join("board.png");
    sandbox
        .tablo(&[
            "render",
            "--out",
            path_str(&out),
            "--size",
            "800x480",
            "--data-dir",
            path_str(&data_dir),
        ])
        .assert_code(0)
        .assert_stderr_has("demo");
    assert_eq!(png_size(&out), (800, 480));
    assert!(
        !data_dir.join("journal").exists(),
        "render never creates a journal"
    );
    sandbox
        .tablo(&["render", "--out", path_str(&out), "--size", "12x12"])
        .assert_code(EX_USAGE);
}

#[test]
fn render_draws_the_journals_last_known_state() {
    smol::block_on(async {
        let upstream = crate::harness::FakeUpstream::start().await;
        let feed = format!("binance={}", upstream.url("/ws"));
        let daemon = Daemon::start(&["--feed", &feed]);
        upstream.wait_connection().await;
        let mut client = daemon.bot().await;
        client.subscribe(&["prices"]).await;
        upstream.send(&crate::relay::binance_ticker("BTCUSDT", "67012.50").to_string());
        client.recv_until(|f| f["price"] == "67012.50").await;
        daemon.sigterm();
        let stopped = daemon.into_stopped(Duration::from_secs(5));
        assert!(stopped.status.success(), "{}", stopped.stderr);
        let data_dir = stopped.sandbox.data_dir();
        let out = data_dir.join("last-known.png");
        stopped
            .sandbox
            .tablo(&[
                "render",
                "--out",
                path_str(&out),
                "--data-dir",
                path_str(&data_dir),
            ])
            .assert_code(0)
            .assert_stderr_has("last-known values from the journal");
        assert_eq!(png_size(&out), (1920, 1080));
    });
}
