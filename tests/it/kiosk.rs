//! `kiosk/`: the example configs pass `tablo check` and say what their
//! names promise, and `kiosk/install.sh --dry-run` prints every action of
//! an install without root and without changing anything.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::harness::{Sandbox, TABLO};

/// The checkout's root.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `tablo check --config kiosk/NAME`, parsed: fails unless it exits 0.
#[track_caller]
fn checked(name: &str) -> toml::Table {
    let path = repo().join("kiosk").join(name);
    assert!(path.exists(), "kiosk/{name} should exist");
    let out = Sandbox::new().tablo(&["check", "--config", path.to_str().expect("UTF-8")]);
    out.assert_code(0);
    toml::from_str(&out.stdout).unwrap_or_else(|e| panic!("`check` printed no TOML: {e}\n{out}"))
}

/// The first `[[feed]]` of a resolved config.
fn first_feed(config: &toml::Table) -> &toml::Table {
    config["feed"]
        .as_array()
        .and_then(|feeds| feeds.first())
        .and_then(|feed| feed.as_table())
        .expect("a [[feed]]")
}

/// `[board] columns` of a resolved config.
fn columns(config: &toml::Table) -> Vec<&str> {
    config["board"]["columns"]
        .as_array()
        .expect("[board] columns")
        .iter()
        .filter_map(|c| c.as_str())
        .collect()
}

#[test]
fn the_crypto_board_reads_binance() {
    let config = checked("binance.toml");
    let feed = first_feed(&config);
    assert_eq!(feed["format"].as_str(), Some("binance"));
    assert!(
        feed["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("wss://stream.binance.com"))
    );
    assert_eq!(columns(&config), ["price", "change", "sparkline"]);
    let rows = config["board"]["rows"].as_array().expect("board rows");
    let symbols = feed["symbols"].as_array().expect("feed symbols");
    assert_eq!(
        rows.len(),
        symbols.len(),
        "every subscribed symbol has a labelled row"
    );
}

#[test]
fn the_exchange_office_board_shows_buy_and_sell_from_a_json_feed() {
    let config = checked("forex-gold.toml");
    let feed = first_feed(&config);
    assert_eq!(feed["format"].as_str(), Some("json"));
    let pointers = feed["pointers"].as_table().expect("[feed.pointers]");
    for key in ["symbol", "price", "bid", "ask"] {
        assert!(pointers.contains_key(key), "a {key} pointer");
    }
    assert_eq!(columns(&config), ["bid", "ask", "change"]);
    let labels: Vec<&str> = config["board"]["rows"]
        .as_array()
        .expect("board rows")
        .iter()
        .filter_map(|r| r["label"].as_str())
        .collect();
    assert!(
        labels.iter().any(|l| l.contains("Gold")),
        "gold on the board: {labels:?}"
    );
}

#[test]
fn the_international_boards_say_their_locale_digits_and_direction() {
    for (name, locale, digits, words) in [
        (
            "fa-exchange.toml",
            "fa",
            "persian",
            ["دلار", "یورو", "درهم", "سکه", "طلا"].as_slice(),
        ),
        (
            "ar-exchange.toml",
            "ar",
            "arabic",
            ["دولار", "ذهب"].as_slice(),
        ),
        (
            "tr-gold.toml",
            "tr",
            "latin",
            ["Gram Altın", "Çeyrek", "22 Ayar"].as_slice(),
        ),
    ] {
        let config = checked(name);
        let board = &config["board"];
        assert_eq!(board["locale"].as_str(), Some(locale), "{name}");
        assert_eq!(board["digits"].as_str(), Some(digits), "{name}");
        assert_eq!(board["direction"].as_str(), Some("auto"), "{name}");
        assert_eq!(board["calendar"].as_str(), Some("auto"), "{name}");
        assert_eq!(columns(&config), ["bid", "ask", "change"], "{name}");
        let labels: Vec<&str> = board["rows"]
            .as_array()
            .expect("board rows")
            .iter()
            .filter_map(|r| r["label"].as_str())
            .collect();
        for word in words {
            assert!(
                labels.iter().any(|l| l.contains(word)),
                "{name}: {word} in {labels:?}"
            );
        }
    }
}

#[test]
fn the_chained_board_reads_another_tablo() {
    let config = checked("chain.toml");
    let feed = first_feed(&config);
    assert_eq!(feed["format"].as_str(), Some("tablo"));
    assert!(
        feed["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/ws?client=relay"))
    );
}

#[test]
fn kiosk_boards_use_the_framebuffer_and_spare_the_sd_card() {
    for name in [
        "binance.toml",
        "forex-gold.toml",
        "fa-exchange.toml",
        "ar-exchange.toml",
        "tr-gold.toml",
        "chain.toml",
    ] {
        let config = checked(name);
        assert_eq!(
            config["display"]["mode"].as_str(),
            Some("fbdev"),
            "{name}: a kiosk draws on the framebuffer, never into a PNG on the SD card"
        );
        let flush = config["journal"]["flush_interval_ms"].as_integer();
        assert_eq!(flush, Some(1000), "{name}: one commit a second");
        assert!(
            config["journal"].get("max_bytes").is_some(),
            "{name}: a bounded journal"
        );
    }
}

// ---------------------------------------------------------------------------
// kiosk/install.sh
// ---------------------------------------------------------------------------

/// Where a real install puts things: a dry run must leave them as they were.
const DESTINATIONS: [&str; 3] = [
    "/usr/local/bin/tablo",
    "/etc/systemd/system/tablo.service",
    "/etc/tablo",
];

/// A copy of what install.sh reads (the script, the example configs, the
/// unit files, the binary under test) in a sandbox anyone may read, so the
/// script can run as an unprivileged user whatever the checkout's
/// permissions.
struct Checkout {
    sandbox: Sandbox,
}

impl Checkout {
    fn new() -> Checkout {
        let sandbox = Sandbox::new();
        let root = sandbox.path().join("tablo");
        for dir in ["kiosk", "systemd"] {
            std::fs::create_dir_all(root.join(dir)).expect("mkdir");
            for entry in std::fs::read_dir(repo().join(dir)).expect("read the checkout") {
                let path = entry.expect("an entry").path();
                let name = path.file_name().expect("a file name");
                std::fs::copy(&path, root.join(dir).join(name)).expect("copy");
            }
        }
        let binary = root.join("tablo");
        // A hard link when the sandbox is on the same disk: no 80 MB copy.
        if std::fs::hard_link(TABLO, &binary).is_err() {
            std::fs::copy(TABLO, &binary).expect("copy the binary");
        }
        for path in [
            sandbox.path(),
            &root,
            &root.join("kiosk"),
            &root.join("systemd"),
        ] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        Checkout { sandbox }
    }

    fn root(&self) -> PathBuf {
        self.sandbox.path().join("tablo")
    }

    /// `bash kiosk/install.sh ARGS`, as `nobody` when the test runs as
    /// root: a dry run must not need root.
    fn install(&self, args: &[&str]) -> Output {
        let script = self.root().join("kiosk/install.sh");
        // SAFETY: geteuid has no preconditions.
        let mut cmd = if unsafe { libc::geteuid() } == 0 {
            let mut cmd = Command::new("setpriv");
            cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash"]);
            cmd
        } else {
            Command::new("bash")
        };
        cmd.arg(script)
            .args(args)
            .current_dir(self.sandbox.path())
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .stdin(Stdio::null());
        cmd.output().expect("run kiosk/install.sh")
    }
}

fn show(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn install_dry_run_prints_every_action_and_changes_nothing() {
    let checkout = Checkout::new();
    let existed: Vec<bool> = DESTINATIONS.iter().map(|d| Path::new(d).exists()).collect();
    let binary = checkout.root().join("tablo");
    let out = checkout.install(&[
        "--dry-run",
        "--binary",
        binary.to_str().expect("UTF-8"),
        "--config",
        "tablo/kiosk/forex-gold.toml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Each action as the command it would run; the user and the config
    // may already be there, in which case the script says it keeps them.
    let user = stdout.contains("+ useradd --system --user-group --groups video")
        || stdout.contains("user tablo exists");
    assert!(user, "the user step is missing\n{}", show(&out));
    let config = stdout.contains("kiosk/forex-gold.toml /etc/tablo/tablo.toml")
        || stdout.contains("keeping the existing /etc/tablo/tablo.toml");
    assert!(config, "the config step is missing\n{}", show(&out));
    for action in [
        "/usr/local/bin/tablo",
        "tablo/systemd/tablo.service /etc/systemd/system/tablo.service",
        "+ systemctl daemon-reload",
        "+ systemctl enable tablo.service",
        "+ systemctl restart tablo.service",
        "nothing was changed",
    ] {
        assert!(
            stdout.contains(action),
            "missing {action:?}\n{}",
            show(&out)
        );
    }
    for (dest, existed) in DESTINATIONS.iter().zip(existed) {
        assert_eq!(
            Path::new(dest).exists(),
            existed,
            "a dry run changed {dest}"
        );
    }
}

#[test]
fn install_dry_run_with_cage_installs_the_cage_unit() {
    let checkout = Checkout::new();
    let binary = checkout.root().join("tablo");
    let out = checkout.install(&[
        "--dry-run",
        "--cage",
        "--no-start",
        "--binary",
        binary.to_str().expect("UTF-8"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("tablo/systemd/tablo-cage.service /etc/systemd/system/tablo.service"),
        "{}",
        show(&out)
    );
    assert!(
        !stdout.contains("systemctl restart"),
        "--no-start restarts nothing"
    );
}

#[test]
fn install_refuses_bad_input_before_doing_anything() {
    let checkout = Checkout::new();
    let binary = checkout.root().join("tablo");
    let binary = binary.to_str().expect("UTF-8");
    let bad_config = checkout
        .sandbox
        .write("bad.toml", "[server]\nlisten_port = 1\n");
    std::fs::set_permissions(&bad_config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    for (args, code, needle) in [
        (vec!["--help"], 0, "Usage:"),
        (vec!["--frobnicate"], 64, "unknown option '--frobnicate'"),
        (vec!["--dry-run", "--binary"], 64, "--binary needs a path"),
        (
            vec!["--dry-run", "--binary", "/nonexistent/tablo"],
            66,
            "no executable tablo binary at /nonexistent/tablo",
        ),
        (
            vec!["--dry-run", "--binary", binary, "--config", "bad.toml"],
            78,
            "listen_port",
        ),
    ] {
        let out = checkout.install(&args);
        assert_eq!(out.status.code(), Some(code), "{args:?}\n{}", show(&out));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains(needle),
            "{args:?}: {needle:?}\n{}",
            show(&out)
        );
        assert!(
            !text.contains("+ "),
            "{args:?} acted anyway\n{}",
            show(&out)
        );
    }
}

#[test]
fn install_without_dry_run_needs_root() {
    let checkout = Checkout::new();
    let binary = checkout.root().join("tablo");
    // `install` runs the script unprivileged.
    let out = checkout.install(&["--binary", binary.to_str().expect("UTF-8")]);
    assert_eq!(out.status.code(), Some(77), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs root"),
        "{}",
        show(&out)
    );
}

#[test]
fn the_fleet_examples_read_and_forward_through_one_broker() {
    let hq = checked("fleet-hq.toml");
    let office = checked("fleet-office.toml");
    let rules = |config: &toml::Table| -> Vec<toml::Table> {
        config["forward"]
            .as_array()
            .expect("[[forward]] rules")
            .iter()
            .filter_map(|r| r.as_table().cloned())
            .collect()
    };
    // HQ publishes every price, retained, one topic per symbol, under its site.
    assert_eq!(hq["site"].as_str(), Some("hq"));
    let prices = &rules(&hq)[0];
    assert_eq!(
        prices["topic"].as_str(),
        Some("tablo/{site}/{channel}/{symbol}")
    );
    assert_eq!(prices["retain"].as_bool(), Some(true));
    // The office reads exactly what HQ publishes, from the same broker.
    let feed = first_feed(&office);
    assert_eq!(feed["format"].as_str(), Some("mqtt"));
    let hq_broker = hq["feed"].as_array().unwrap()[1]["url"].as_str();
    assert_eq!(feed["url"].as_str(), hq_broker);
    let topics: Vec<&str> = feed["topics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(topics.contains(&"tablo/hq/prices/+"), "{topics:?}");
    // Its alerts go where HQ listens, and HQ does not read its own topics.
    let back = &rules(&office)[0];
    assert_eq!(back["topic"].as_str(), Some("offices/{site}/{channel}"));
    let hq_topics = hq["feed"].as_array().unwrap()[1]["topics"]
        .as_array()
        .unwrap();
    assert_eq!(hq_topics[0].as_str(), Some("offices/+/alerts"));
}
