//! The resolved settings written back as TOML in the config file's layout:
//! what `tablo check` prints.
//!
//! Loading the output again gives the same settings, except for the tokens,
//! which are never printed. This only writes text: it reads nothing and
//! checks nothing.

use std::path::Path;

use super::alert::print_alerts;
use super::keyword::Keyword;
use super::raw::OFF;
use super::units::{format_duration, format_size};
use super::{BoardQr, Config, JsonPointers};

impl Config {
    /// The resolved settings as TOML in the config file's layout, for
    /// `tablo check`. Durations and sizes are written as strings (`"1m"`,
    /// `"8MiB"`), paths as resolved, and tokens as `"***"`: loading the
    /// output again gives the same settings, except for the tokens.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        match &self.file {
            Some(file) => out.push_str(&format!(
                "# Resolved settings: built-in defaults, then {}, then the command line.\n",
                file.display()
            )),
            None => out.push_str(
                "# Resolved settings: built-in defaults and the command line (no config file).\n",
            ),
        }
        key(&mut out, "data_dir", q_path(&self.data_dir));
        key(&mut out, "site", q(&self.site));

        let s = &self.server;
        out.push_str("\n[server]\n");
        key(&mut out, "listen", q(&s.listen.to_string()));
        key(&mut out, "max_clients", s.max_clients.to_string());
        key(
            &mut out,
            "max_frame_bytes",
            q(&format_size(s.max_frame_bytes as u64)),
        );
        key(&mut out, "allow_anonymous", s.allow_anonymous.to_string());
        key(&mut out, "threads", s.threads.to_string());
        if !s.tokens.is_empty() {
            let tokens: Vec<String> = s
                .tokens
                .iter()
                .map(|t| format!("{{ token = \"***\", publish = {} }}", t.publish))
                .collect();
            key(&mut out, "tokens", format!("[{}]", tokens.join(", ")));
        }
        if let Some(jwt) = &s.jwt {
            out.push_str("\n[server.jwt]\n");
            if let Some(secret) = &jwt.hs256 {
                key(&mut out, "hs256_secret_file", q_path(&secret.path));
            }
            if !jwt.public_keys.is_empty() {
                for k in &jwt.public_keys {
                    out.push_str(&format!("# kid {} is {:?}\n", k.kid, k.algorithm));
                }
                let files: Vec<String> = jwt.public_keys.iter().map(|k| q_path(&k.path)).collect();
                key(
                    &mut out,
                    "public_key_files",
                    format!("[{}]", files.join(", ")),
                );
            }
            if let Some(issuer) = &jwt.issuer {
                key(&mut out, "issuer", q(issuer));
            }
            if let Some(audience) = &jwt.audience {
                key(&mut out, "audience", q(audience));
            }
            key(&mut out, "leeway", q(&format_duration(jwt.leeway)));
        }
        if !s.cors_origins.is_empty() {
            let origins: Vec<String> = s.cors_origins.iter().map(|o| q(o.as_str())).collect();
            key(
                &mut out,
                "cors_origins",
                format!("[{}]", origins.join(", ")),
            );
        }

        let j = &self.journal;
        out.push_str("\n[journal]\n");
        key(&mut out, "dir", q_path(&j.dir));
        match j.max_events {
            Some(n) => key(&mut out, "max_events", n.to_string()),
            None => key(&mut out, "max_events", q(OFF)),
        }
        match j.max_bytes {
            Some(n) => key(&mut out, "max_bytes", q(&format_size(n))),
            None => key(&mut out, "max_bytes", q(OFF)),
        }
        match j.max_age {
            Some(d) => key(&mut out, "max_age", q(&format_duration(d))),
            None => key(&mut out, "max_age", q(OFF)),
        }
        key(
            &mut out,
            "flush_interval_ms",
            j.flush_interval_ms.to_string(),
        );
        key(&mut out, "cache_bytes", q(&format_size(j.cache_bytes)));

        let d = &self.display;
        out.push_str("\n[display]\n");
        key(&mut out, "mode", q(d.mode.name()));
        match d.width {
            Some(w) => key(&mut out, "width", w.to_string()),
            None => out.push_str("# width: from the screen or the backend\n"),
        }
        match d.height {
            Some(h) => key(&mut out, "height", h.to_string()),
            None => out.push_str("# height: from the screen or the backend\n"),
        }
        key(&mut out, "rotate", d.rotate.to_string());
        key(&mut out, "fps_max", d.fps_max.to_string());
        key(&mut out, "theme", q(&d.theme));
        key(&mut out, "pixel_shift", d.pixel_shift.to_string());
        key(&mut out, "device", q_path(&d.device));
        key(&mut out, "bpp", d.bpp.to_string());
        key(&mut out, "png_path", q_path(&d.png_path));
        if d.schedule.is_empty() {
            out.push_str("# schedule: none, the screen is always on\n");
        } else {
            let entries: Vec<String> = d
                .schedule
                .entries()
                .iter()
                .map(|e| q(&e.to_string()))
                .collect();
            key(&mut out, "schedule", format!("[{}]", entries.join(", ")));
        }
        key(&mut out, "off", q(d.off.name()));
        key(&mut out, "wake_on", q(d.wake_on.name()));

        let b = &self.board;
        out.push_str("\n[board]\n");
        key(&mut out, "title", q(&b.title));
        key(&mut out, "stale_after", q(&format_duration(b.stale_after)));
        key(
            &mut out,
            "page_seconds",
            q(&format_duration(b.page_seconds)),
        );
        key(
            &mut out,
            "columns",
            q_array(b.columns.iter().map(|c| c.keyword())),
        );
        key(&mut out, "locale", q(&b.locale));
        key(&mut out, "digits", q(b.digits.keyword()));
        key(&mut out, "direction", q(b.direction.keyword()));
        key(&mut out, "calendar", q(b.calendar.keyword()));
        match &b.font {
            Some(font) => key(&mut out, "font", q_path(font)),
            None => out.push_str("# font: the bundled font\n"),
        }
        let qr = match &b.qr {
            BoardQr::Auto => "auto",
            BoardQr::Off => "off",
            BoardQr::Url(url) => url,
        };
        key(&mut out, "qr", q(qr));
        for row in &b.rows {
            out.push_str("\n[[board.rows]]\n");
            key(&mut out, "symbol", q(&row.symbol));
            if let Some(label) = &row.label {
                key(&mut out, "label", q(label));
            }
            if let Some(decimals) = row.decimals {
                key(&mut out, "decimals", decimals.to_string());
            }
        }

        for feed in &self.feeds {
            out.push_str("\n[[feed]]\n");
            key(&mut out, "name", q(&feed.name));
            key(&mut out, "format", q(feed.format.name()));
            if !feed.url.is_empty() {
                key(&mut out, "url", q(&feed.url));
            }
            if !feed.symbols.is_empty() {
                key(
                    &mut out,
                    "symbols",
                    q_array(feed.symbols.iter().map(String::as_str)),
                );
            }
            if !feed.subscribe.is_empty() {
                key(
                    &mut out,
                    "subscribe",
                    q_array(feed.subscribe.iter().map(String::as_str)),
                );
            }
            if !feed.channels.is_empty() {
                key(
                    &mut out,
                    "channels",
                    q_array(feed.channels.iter().map(String::as_str)),
                );
            }
            let m = &feed.mqtt;
            if !m.topics.is_empty() {
                key(
                    &mut out,
                    "topics",
                    q_array(m.topics.iter().map(String::as_str)),
                );
                key(&mut out, "qos", m.qos.to_string());
                match &m.client_id {
                    Some(id) => key(&mut out, "client_id", q(id)),
                    None => out.push_str("# client_id: tablo-<machine id>-<feed name>\n"),
                }
                if let Some(user) = &m.username {
                    key(&mut out, "username", q(user));
                }
                if let Some(file) = &m.password_file {
                    key(&mut out, "password_file", q(&file.display().to_string()));
                }
            }
            if feed.pointers != JsonPointers::default() {
                out.push_str("\n[feed.pointers]\n");
                let p = &feed.pointers;
                let fields = [
                    ("items", &p.items),
                    ("symbol", &p.symbol),
                    ("price", &p.price),
                    ("open", &p.open),
                    ("change_pct", &p.change_pct),
                    ("bid", &p.bid),
                    ("ask", &p.ask),
                    ("volume", &p.volume),
                ];
                for (name, value) in fields {
                    if let Some(value) = value {
                        key(&mut out, name, q(value));
                    }
                }
            }
        }
        print_alerts(&self.alerts, &mut out, key, q);
        for rule in &self.forwards {
            out.push_str("\n[[forward]]\n");
            key(
                &mut out,
                "channels",
                q_array(rule.channels.iter().map(String::as_str)),
            );
            key(&mut out, "to", q(&rule.to));
            key(&mut out, "topic", q(&rule.topic));
            key(&mut out, "qos", rule.qos.to_string());
            key(&mut out, "retain", rule.retain.to_string());
            key(&mut out, "max_bytes", q(&format_size(rule.max_bytes)));
            key(&mut out, "max_age", q(&format_duration(rule.max_age)));
        }
        out
    }
}

/// Appends `name = value`.
fn key(out: &mut String, name: &str, value: String) {
    out.push_str(name);
    out.push_str(" = ");
    out.push_str(&value);
    out.push('\n');
}

/// A TOML basic string.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A path as a TOML string (lossy for paths that are not UTF-8, which a TOML
/// file could not have named anyway).
fn q_path(p: &Path) -> String {
    q(&p.to_string_lossy())
}

/// A TOML array of strings.
fn q_array<'a>(items: impl Iterator<Item = &'a str>) -> String {
    format!("[{}]", items.map(q).collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::testing::{FILE, FULL, home_env, load};
    use crate::config::{Overrides, load_from};

    use super::*;

    /// Writes `config.to_toml()` to a file and loads it back.
    fn round_trip(config: &Config) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("check.toml");
        let text = config.to_toml();
        std::fs::write(&path, &text).unwrap();
        let back = Config::load(Some(&path), &Overrides::default())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        Config {
            file: config.file.clone(),
            ..back
        }
    }

    #[test]
    fn check_output_loads_back_to_the_same_settings() {
        let mut full = load(FULL).unwrap();
        full.server.tokens.clear();
        assert_eq!(round_trip(&full), full);
        let defaults = load_from(None, &Overrides::default(), &home_env).unwrap().0;
        assert_eq!(round_trip(&defaults), defaults);
        let mut odd = defaults.clone();
        odd.board.title = "a \"quoted\"\\ title\twith\u{1} controls".into();
        odd.journal.max_bytes = Some(1_000_001);
        odd.journal.max_age = Some(Duration::from_millis(1500));
        assert_eq!(round_trip(&odd), odd);
        let mut qr = defaults.clone();
        qr.board.qr = BoardQr::Url("https://rates.example.com/board?x=1#top".into());
        assert_eq!(round_trip(&qr), qr);
        qr.board.qr = BoardQr::Off;
        assert_eq!(round_trip(&qr), qr);
        assert!(defaults.to_toml().contains("\nqr = \"auto\"\n"));
        let mut off = defaults.clone();
        off.journal.max_events = None;
        off.journal.max_bytes = None;
        off.journal.max_age = None;
        assert_eq!(round_trip(&off), off);
        assert!(off.to_toml().contains("max_bytes = \"off\"\n"));
    }

    #[test]
    fn mqtt_feeds_and_forward_rules_load_back() {
        let text = r#"
site = "office-7"

[[feed]]
name = "hq"
format = "mqtt"
url = "mqtt://broker:1883"
topics = ["rates/+", "news/#"]
qos = 0
username = "kiosk"
password_file = "/etc/tablo/mqtt.pw"

[feed.pointers]
symbol = "topic:2"
price = "/p"

[[feed]]
name = "hq2"
format = "mqtt"
url = "wss://broker/mqtt"
topics = ["tablo/hq/#"]
client_id = "k7"

[[forward]]
channels = ["alerts", "prices.*"]
to = "hq"
topic = "tablo/{site}/{channel}/{symbol}"
retain = true
max_bytes = "1MiB"
max_age = "2h"
"#;
        let config = load(text).unwrap();
        assert_eq!(round_trip(&config), config);
        let printed = config.to_toml();
        assert!(
            printed.contains("\n[[forward]]\nchannels = [\"alerts\", \"prices.*\"]\nto = \"hq\"\n"),
            "{printed}"
        );
        assert!(
            printed.contains("# client_id: tablo-<machine id>-<feed name>"),
            "{printed}"
        );
    }

    #[test]
    fn check_output_masks_tokens() {
        let full = load(FULL).unwrap();
        let text = full.to_toml();
        assert!(
            !text.contains("s3cret") && !text.contains("reader"),
            "{text}"
        );
        assert!(text.contains("tokens = [{ token = \"***\", publish = true }, { token = \"***\", publish = false }]"), "{text}");
        assert!(
            text.contains("stale_after = \"2m\"") && text.contains("max_bytes = \"256MiB\""),
            "{text}"
        );
        assert!(
            text.starts_with(&format!(
                "# Resolved settings: built-in defaults, then {FILE}"
            )),
            "{text}"
        );
    }
}
