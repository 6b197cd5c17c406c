//! Helpers shared by the config's unit tests: load a text as if it were the
//! file at [`FILE`], and check that it fails at a given line with a given
//! message. Nothing here reads the process environment or a real file.

use std::path::Path;

use super::{Config, ConfigError, Overrides, load_text};

/// Where the tests pretend the config file is.
pub(super) const FILE: &str = "/etc/tablo/tablo.toml";

/// An environment with only `$HOME`, set to `/home/pi`.
pub(super) fn home_env(name: &str) -> Option<String> {
    (name == "HOME").then(|| "/home/pi".to_owned())
}

/// Loads `text` as the file at [`FILE`], with `overrides`, in [`home_env`].
pub(super) fn load_notes(
    text: &str,
    overrides: &Overrides,
) -> Result<(Config, Vec<String>), ConfigError> {
    load_text(Path::new(FILE), text, overrides, &home_env)
}

/// Loads `text` as the file at [`FILE`], without overrides.
pub(super) fn load(text: &str) -> Result<Config, ConfigError> {
    load_notes(text, &Overrides::default()).map(|(config, _)| config)
}

/// The 1-based line of the problem in the config file, when the error
/// knows it.
pub(super) fn error_line(err: &ConfigError) -> Option<usize> {
    match err {
        ConfigError::Unreadable { .. } => None,
        ConfigError::Invalid { line, .. } => *line,
    }
}

/// Loading `text` fails at `line` with a message containing `expected`.
#[track_caller]
pub(super) fn check_err(text: &str, line: usize, expected: &str) {
    let err = load(text).expect_err("the config should be rejected");
    let shown = err.to_string();
    assert_eq!(error_line(&err), Some(line), "{shown}");
    assert!(shown.starts_with(&format!("{FILE}:{line}: ")), "{shown}");
    assert!(
        shown.contains(expected),
        "{shown:?}\ndoes not contain\n{expected:?}"
    );
}

/// An environment with just these variables.
pub(super) fn env_of(
    pairs: &'static [(&'static str, &'static str)],
) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

/// A file that sets every key of every section.
pub(super) const FULL: &str = r#"
data_dir = "/var/lib/tablo"

[server]
listen = "0.0.0.0:8080"
max_clients = 200
max_frame_bytes = "16KiB"
allow_anonymous = false
tokens = [{ token = "s3cret", publish = true }, { token = "reader" }]

[journal]
dir = "/mnt/journal"
max_events = 1000000
max_bytes = "256MiB"
max_age = "7d"
flush_interval_ms = 50
cache_bytes = 4194304

[display]
mode = "png"
width = 1920
height = 1080
rotate = 90
fps_max = 20
theme = "dark"
pixel_shift = true
device = "/dev/fb1"
bpp = 16
png_path = "/tmp/board.png"
schedule = ["Mon-Fri 08:00-20:00", "sat 9:00-14:00", "Fri 20:00-02:00"]
off = "cec"
wake_on = "critical"

[board]
title = "صرافی"
stale_after = "2m"
page_seconds = 15
columns = ["bid", "ask", "change"]
locale = "fa"
digits = "persian"
direction = "rtl"
font = "/usr/share/fonts/Vazirmatn.ttf"

[[board.rows]]
symbol = "USD"
label = "دلار"
decimals = 0

[[board.rows]]
symbol = "XAU"

[[feed]]
format = "binance"
url = "wss://stream.binance.com:9443/ws"
symbols = ["BTCUSDT", "ETHUSDT"]

[[feed]]
name = "office"
format = "json"
url = "wss://rates.example/ws"
subscribe = '{"op":"sub"}'

[feed.pointers]
items = "/rates"
symbol = "/code"
price = "/sell"
open = "/open"
change_pct = "/pct"
bid = "/buy"
ask = "/sell"
volume = ""

[[feed]]
format = "tablo"
url = "ws://10.0.0.2:7070/ws"
channels = ["prices", "news"]

[[feed]]
format = "coinbase"
url = "wss://ws-feed.exchange.coinbase.com"
symbols = ["BTC-USD"]
subscribe = ["a", "b"]

[[feed]]
format = "demo"

[[alert]]
kind = "above"
symbol = "USD"
price = 60000
hysteresis = "0.5%"
text = "دلار از {price} گذشت"
expires = "30m"

[[alert]]
name = "office quiet"
kind = "stale"
feed = "office"
after = "2m"
level = "warning"
cooldown = "0s"

[[alert]]
kind = "move"
symbol = "*"
percent = "1.5"
window = "5m"
direction = "up"
"#;
