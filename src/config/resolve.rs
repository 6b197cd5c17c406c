//! From the file as written to the resolved [`Config`]: built-in defaults,
//! then the file, then the command-line overrides, with every value checked
//! against its limits and the others.
//!
//! Each section has its resolver here; the feeds have theirs in `feed` and
//! paths in `paths`. A resolver reads nothing: it is given the parsed file
//! and the environment, and returns the settings or the first problem, at
//! its line.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::alert::resolve_alerts;
use super::error::{ConfigError, Source};
use super::feed::resolve_feeds;
use super::jwt::resolve_jwt;
use super::keyword::Keyword;
use super::mqtt::{resolve_forwards, resolve_site};
use super::paths::Paths;
use super::raw::{At, Limit, OFF, RawBoard, RawConfig, RawDisplay, RawJournal, RawServer};
use super::units::format_size;
use super::{
    BoardConfig, BoardQr, CalendarChoice, Column, Config, DEFAULT_CACHE_BYTES, DEFAULT_COLUMNS,
    DEFAULT_FB_DEVICE, DEFAULT_FLUSH_INTERVAL_MS, DEFAULT_FPS_MAX, DEFAULT_LISTEN, DEFAULT_LOCALE,
    DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_FRAME_BYTES, DEFAULT_PAGE_SECONDS, DEFAULT_STALE_AFTER, DEFAULT_THEME,
    DEFAULT_TITLE, Digits, Direction, DisplayConfig, DisplayMode, JournalConfig, MAX_DECIMALS,
    MAX_FLUSH_INTERVAL_MS, MAX_FPS, MAX_FRAME_BYTES, MAX_QR_URL, MAX_SIDE, MAX_THREADS,
    MIN_CACHE_BYTES, MIN_FRAME_BYTES, MIN_SIDE, Overrides, RowConfig, Schedule, ScreenOff,
    ServerConfig, THEMES, TokenConfig, WakeOn, default_threads,
};

/// Defaults ← file ← overrides, with every value checked.
pub(super) fn resolve(
    raw: RawConfig,
    src: &Source<'_>,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<String>), ConfigError> {
    let mut notes = Vec::new();
    let paths = Paths::new(src, env);
    let data_dir = paths.data_dir(overrides.data_dir.as_ref(), raw.data_dir.as_ref())?;

    let mut raw_server = raw.server;
    let raw_jwt = raw_server.jwt.take();
    let mut server = resolve_server(raw_server, src, overrides)?;
    if let Some(jwt) = raw_jwt {
        server.jwt = Some(resolve_jwt(jwt, src, &paths)?);
    } else if !server.allow_anonymous && server.tokens.is_empty() {
        notes.push(
            "[server] allow_anonymous = false and no tokens or [server.jwt] are configured: no client can connect"
                .to_owned(),
        );
    }
    let journal = resolve_journal(raw.journal, src, &paths, &data_dir)?;
    let display = resolve_display(raw.display, src, &paths, overrides, &data_dir)?;
    schedule_notes(&display, &mut notes);
    let board = resolve_board(raw.board, src, &paths)?;

    let feeds = resolve_feeds(raw.feed, src, &paths, overrides, &mut notes)?;
    let alerts = resolve_alerts(raw.alert, src, &board, &feeds, &mut notes)?;
    let site = resolve_site(raw.site, src)?;
    let forwards = resolve_forwards(raw.forward, src, &feeds)?;

    let config = Config {
        file: src.file.map(Path::to_path_buf),
        data_dir,
        server,
        journal,
        display,
        board,
        feeds,
        alerts,
        site,
        forwards,
    };
    Ok((config, notes))
}

/// Checks that `value` lies in `lo..=hi`.
fn in_range(
    src: &Source<'_>,
    value: &Spanned<u64>,
    what: &str,
    lo: u64,
    hi: u64,
) -> Result<u64, ConfigError> {
    let n = *value.get_ref();
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        Err(src.at(
            value.span(),
            format!("{what}: {n} is out of range; use {lo} to {hi}"),
        ))
    }
}

/// Checks that a string is not empty.
pub(super) fn nonempty(
    src: &Source<'_>,
    value: Spanned<String>,
    what: &str,
) -> Result<String, ConfigError> {
    if value.get_ref().trim().is_empty() {
        Err(src.at(value.span(), format!("{what}: must not be empty")))
    } else {
        Ok(value.into_inner())
    }
}

/// `[display] theme`: one of [`THEMES`]; the error lists them.
fn known_theme(src: &Source<'_>, theme: Spanned<String>) -> Result<String, ConfigError> {
    if THEMES.contains(&theme.get_ref().as_str()) {
        return Ok(theme.into_inner());
    }
    let message = format!(
        "[display] theme: {:?} is not one of {} (the themes the board draws)",
        theme.get_ref(),
        THEMES.join(", ")
    );
    Err(src.at(theme.span(), message))
}

/// `[server]` without `[server.jwt]`: `--listen` wins over the file's
/// `listen`.
fn resolve_server(
    raw: RawServer,
    src: &Source<'_>,
    overrides: &Overrides,
) -> Result<ServerConfig, ConfigError> {
    let listen = overrides
        .listen
        .or(raw.listen.map(|a| a.0))
        .unwrap_or(DEFAULT_LISTEN);
    let max_clients = match &raw.max_clients {
        Some(v) => in_range(src, v, "[server] max_clients", 1, u32::MAX.into())? as usize,
        None => DEFAULT_MAX_CLIENTS,
    };
    let max_frame_bytes = match raw.max_frame_bytes {
        Some(v) => {
            let n = v.get_ref().0;
            if !(MIN_FRAME_BYTES as u64..=MAX_FRAME_BYTES as u64).contains(&n) {
                return Err(src.at(
                    v.span(),
                    format!(
                        "[server] max_frame_bytes: {} is out of range; use {} to {}",
                        format_size(n),
                        format_size(MIN_FRAME_BYTES as u64),
                        format_size(MAX_FRAME_BYTES as u64)
                    ),
                ));
            }
            n as usize
        }
        None => DEFAULT_MAX_FRAME_BYTES,
    };
    let allow_anonymous = raw.allow_anonymous.unwrap_or(true);
    let mut tokens: Vec<TokenConfig> = Vec::new();
    for entry in raw.tokens {
        let span = entry.span();
        let entry = entry.into_inner();
        let Some(token) = entry.token else {
            return Err(src.at(
                span,
                "[server] tokens: an entry has no token; write { token = \"a long secret\", publish = true }",
            ));
        };
        let (token_span, token) = (token.span(), token.into_inner());
        if token.is_empty() {
            return Err(src.at(token_span, "[server] tokens: a token must not be empty"));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(src.at(
                token_span,
                "[server] tokens: a token must not contain spaces or control characters",
            ));
        }
        if tokens.iter().any(|t| t.token == token) {
            return Err(src.at(
                token_span,
                "[server] tokens: this token is listed twice; each token must be unique",
            ));
        }
        tokens.push(TokenConfig {
            token,
            publish: entry.publish.unwrap_or(false),
        });
    }
    let mut cors_origins = Vec::new();
    for origin in raw.cors_origins {
        let span = origin.span();
        let origin = origin.into_inner();
        if !valid_origin(&origin) {
            return Err(src.at(
                span,
                format!(
                    "[server] cors_origins: {origin:?} is not an origin; write the scheme and host \
                     as a browser sends them, such as \"https://example.org\" or \"http://10.0.0.5:8080\" \
                     (no path, no trailing slash), or \"*\" for any"
                ),
            ));
        }
        cors_origins.push(origin);
    }
    let threads = match &raw.threads {
        Some(v) => in_range(src, v, "[server] threads", 1, MAX_THREADS as u64)? as usize,
        None => default_threads(),
    };
    Ok(ServerConfig {
        listen,
        max_clients,
        max_frame_bytes,
        allow_anonymous,
        tokens,
        jwt: None,
        cors_origins,
        threads,
    })
}

/// Whether `s` is a web origin as browsers send it in `Origin`
/// (`scheme://host[:port]`, http or https), or `*`.
fn valid_origin(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let Some(host) = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
    else {
        return false;
    };
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
}

/// `[journal]`: `dir` defaults to `<data_dir>/journal`.
fn resolve_journal(
    raw: RawJournal,
    src: &Source<'_>,
    paths: &Paths<'_>,
    data_dir: &Path,
) -> Result<JournalConfig, ConfigError> {
    let dir = match &raw.dir {
        Some(dir) => paths.resolve(dir, "[journal] dir")?,
        None => data_dir.join("journal"),
    };
    let max_events = limit(
        src,
        &raw.max_events,
        "max_events",
        DEFAULT_MAX_EVENTS,
        |v| v.0,
    )?;
    let max_bytes = limit(src, &raw.max_bytes, "max_bytes", DEFAULT_MAX_BYTES, |v| v.0)?;
    let max_age = limit(src, &raw.max_age, "max_age", DEFAULT_MAX_AGE, |v| v.0)?;
    let flush_interval_ms = match &raw.flush_interval_ms {
        Some(v) => in_range(
            src,
            v,
            "[journal] flush_interval_ms",
            1,
            MAX_FLUSH_INTERVAL_MS,
        )?,
        None => DEFAULT_FLUSH_INTERVAL_MS,
    };
    let cache_bytes = match &raw.cache_bytes {
        Some(v) if v.get_ref().0 < MIN_CACHE_BYTES => {
            return Err(src.at(
                v.span(),
                format!(
                    "[journal] cache_bytes: {} is too small; use at least {}",
                    format_size(v.get_ref().0),
                    format_size(MIN_CACHE_BYTES)
                ),
            ));
        }
        Some(v) => v.get_ref().0,
        None => DEFAULT_CACHE_BYTES,
    };
    Ok(JournalConfig {
        dir,
        max_events,
        max_bytes,
        max_age,
        flush_interval_ms,
        cache_bytes,
    })
}

/// A `[journal]` retention limit: `default` when the key is left out, `None`
/// for `"off"`, else the value (`get` takes it out of its raw type), which
/// must not be 0.
fn limit<T, V: Default + PartialEq>(
    src: &Source<'_>,
    raw: &At<Limit<T>>,
    key: &str,
    default: V,
    get: impl Fn(&T) -> V,
) -> Result<Option<V>, ConfigError> {
    let Some(written) = raw else {
        return Ok(Some(default));
    };
    match written.get_ref() {
        Limit::Off => Ok(None),
        Limit::On(value) => {
            let value = get(value);
            if value == V::default() {
                Err(src.at(
                    written.span(),
                    format!("[journal] {key}: must not be 0; write \"{OFF}\" for no limit"),
                ))
            } else {
                Ok(Some(value))
            }
        }
    }
}

/// `[display]`: `--display` wins over the file's `mode`, and `png_path`
/// defaults to `<data_dir>/board.png`.
fn resolve_display(
    raw: RawDisplay,
    src: &Source<'_>,
    paths: &Paths<'_>,
    overrides: &Overrides,
    data_dir: &Path,
) -> Result<DisplayConfig, ConfigError> {
    let side = |v: &At<u64>, what: &str| -> Result<Option<u32>, ConfigError> {
        v.as_ref()
            .map(|v| in_range(src, v, what, MIN_SIDE.into(), MAX_SIDE.into()).map(|n| n as u32))
            .transpose()
    };
    let rotate = match &raw.rotate {
        Some(v) => match *v.get_ref() {
            r @ (0 | 90 | 180 | 270) => r as u16,
            r => {
                return Err(src.at(
                    v.span(),
                    format!("[display] rotate: {r} is not one of 0, 90, 180, 270"),
                ));
            }
        },
        None => 0,
    };
    let fps_max = match &raw.fps_max {
        Some(v) => in_range(src, v, "[display] fps_max", 1, MAX_FPS.into())? as u32,
        None => DEFAULT_FPS_MAX,
    };
    let bpp = match &raw.bpp {
        Some(v) => match *v.get_ref() {
            b @ (16 | 32) => b as u8,
            b => {
                return Err(src.at(
                    v.span(),
                    format!("[display] bpp: {b} is not 16 or 32 (RGB565 or XRGB8888)"),
                ));
            }
        },
        None => 32,
    };
    Ok(DisplayConfig {
        mode: overrides
            .display
            .or(raw.mode.map(|m| m.0))
            .unwrap_or(DisplayMode::Auto),
        width: side(&raw.width, "[display] width")?,
        height: side(&raw.height, "[display] height")?,
        rotate,
        fps_max,
        theme: match raw.theme {
            Some(theme) => known_theme(src, theme)?,
            None => DEFAULT_THEME.to_owned(),
        },
        pixel_shift: raw.pixel_shift.unwrap_or(false),
        device: match &raw.device {
            Some(device) => paths.resolve(device, "[display] device")?,
            None => PathBuf::from(DEFAULT_FB_DEVICE),
        },
        bpp,
        png_path: match &raw.png_path {
            Some(png) => paths.resolve(png, "[display] png_path")?,
            None => data_dir.join("board.png"),
        },
        schedule: resolve_schedule(raw.schedule.as_deref().unwrap_or_default(), src)?,
        off: raw.off.map_or(ScreenOff::Blank, |o| o.0),
        wake_on: raw.wake_on.map_or(WakeOn::None, |w| w.0),
    })
}

/// What `[display] off` and `schedule` cannot do with the display mode set
/// (docs/board.md §9): said at `tablo check` and at start, not an error.
fn schedule_notes(display: &DisplayConfig, notes: &mut Vec<String>) {
    let mode = display.mode;
    if display.schedule.is_empty() {
        return;
    }
    if mode == DisplayMode::None {
        notes.push("[display] schedule has no screen to switch with mode = \"none\"".to_owned());
    } else if display.off == ScreenOff::Dpms
        && matches!(mode, DisplayMode::Fbdev | DisplayMode::Png)
    {
        notes.push(format!(
            "[display] off = \"dpms\" is for the window mode (X11); with mode = \"{mode}\" the screen is blanked instead"
        ));
    }
}

/// `[display] schedule`: each entry parsed, a bad one named with its line.
fn resolve_schedule(
    entries: &[Spanned<String>],
    src: &Source<'_>,
) -> Result<Schedule, ConfigError> {
    Schedule::parse(entries.iter().map(|e| e.get_ref().as_str())).map_err(|(i, e)| {
        src.at(
            entries[i].span(),
            format!("[display] schedule: {:?}: {e}", entries[i].get_ref()),
        )
    })
}

/// `[board]` and its `[[board.rows]]`.
fn resolve_board(
    raw: RawBoard,
    src: &Source<'_>,
    paths: &Paths<'_>,
) -> Result<BoardConfig, ConfigError> {
    let positive = |v: Option<(Range<usize>, Duration)>, what: &str, default: Duration| match v {
        Some((span, d)) if d.is_zero() => {
            Err(src.at(span, format!("{what}: must be longer than 0s")))
        }
        Some((_, d)) => Ok(d),
        None => Ok(default),
    };
    let stale_after = positive(
        raw.stale_after.map(|v| (v.span(), v.get_ref().0)),
        "[board] stale_after",
        DEFAULT_STALE_AFTER,
    )?;
    let page_seconds = positive(
        raw.page_seconds.map(|v| (v.span(), v.get_ref().0)),
        "[board] page_seconds",
        DEFAULT_PAGE_SECONDS,
    )?;
    let columns = match raw.columns {
        Some(list) => {
            let mut columns: Vec<Column> = Vec::new();
            for column in list {
                let c = column.get_ref().0;
                if columns.contains(&c) {
                    return Err(src.at(
                        column.span(),
                        format!("[board] columns: {:?} is listed twice", c.keyword()),
                    ));
                }
                columns.push(c);
            }
            columns
        }
        None => DEFAULT_COLUMNS.to_vec(),
    };
    let locale = match raw.locale {
        Some(locale) => {
            let text = locale.get_ref();
            if text.is_empty()
                || !text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(src.at(
                    locale.span(),
                    format!("[board] locale: {text:?} is not a locale name such as \"en\", \"fa\" or \"tr-TR\""),
                ));
            }
            // Language codes are case-insensitive (BCP 47): `FA` is `fa`.
            let mut locale = locale.into_inner();
            let end = locale.find(['-', '_', '.']).unwrap_or(locale.len());
            locale[..end].make_ascii_lowercase();
            locale
        }
        None => DEFAULT_LOCALE.to_owned(),
    };
    let font = raw
        .font
        .as_ref()
        .map(|font| paths.resolve(font, "[board] font"))
        .transpose()?;
    let mut rows: Vec<RowConfig> = Vec::new();
    for row in raw.rows {
        let span = row.span();
        let row = row.into_inner();
        let Some(symbol) = row.symbol else {
            return Err(src.at(
                span,
                "[[board.rows]]: symbol is missing; write symbol = \"BTCUSDT\"",
            ));
        };
        let symbol_span = symbol.span();
        let symbol = nonempty(src, symbol, "[[board.rows]] symbol")?;
        if rows.iter().any(|r| r.symbol == symbol) {
            return Err(src.at(
                symbol_span,
                format!("[[board.rows]] symbol: {symbol:?} already has a row"),
            ));
        }
        let decimals = row
            .decimals
            .as_ref()
            .map(|d| {
                in_range(src, d, "[[board.rows]] decimals", 0, MAX_DECIMALS.into()).map(|d| d as u8)
            })
            .transpose()?;
        rows.push(RowConfig {
            symbol,
            label: row.label,
            decimals,
        });
    }
    let qr = match raw.qr {
        Some(qr) => board_qr(src, qr)?,
        None => BoardQr::Auto,
    };
    Ok(BoardConfig {
        title: raw.title.unwrap_or_else(|| DEFAULT_TITLE.to_owned()),
        stale_after,
        page_seconds,
        columns,
        locale,
        digits: raw.digits.map_or(Digits::Latin, |d| d.0),
        direction: raw.direction.map_or(Direction::Auto, |d| d.0),
        calendar: raw.calendar.map_or(CalendarChoice::Auto, |c| c.0),
        font,
        rows,
        qr,
    })
}

/// `[board] qr`: `"auto"`, `"off"`, or an `http://` or `https://` URL with
/// a host, of printable ASCII (a phone's scanner may not take more), at most
/// [`MAX_QR_URL`] bytes.
fn board_qr(src: &Source<'_>, value: Spanned<String>) -> Result<BoardQr, ConfigError> {
    let text = value.get_ref().as_str();
    let bad = |why: String| {
        Err(src.at(
            value.span(),
            format!("[board] qr: {text:?} {why}; write \"auto\", \"off\" or a URL such as \"https://rates.example.com/\""),
        ))
    };
    match text {
        "auto" => return Ok(BoardQr::Auto),
        "off" => return Ok(BoardQr::Off),
        _ => {}
    }
    let Some(rest) = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
    else {
        return bad("is not auto, off, or a URL starting with http:// or https://".into());
    };
    if let Some(c) = text.chars().find(|c| !c.is_ascii_graphic()) {
        return bad(format!(
            "holds {c:?}: write spaces and other characters percent-encoded (%20) and a domain in punycode (xn--)"
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return bad("has no host name or address after the scheme".into());
    }
    if text.len() > MAX_QR_URL {
        return bad(format!(
            "is {} bytes long, over {MAX_QR_URL}: a code that long is too fine to scan across a room; use a shorter address",
            text.len()
        ));
    }
    Ok(BoardQr::Url(value.into_inner()))
}

#[cfg(test)]
mod tests {
    use crate::config::JsonPointers;
    use crate::config::feed::demo_feed;
    use crate::config::testing::{FILE, FULL, check_err, load, load_notes};

    use super::*;

    #[test]
    fn every_section_parses() {
        let (c, notes) = load_notes(FULL, &Overrides::default()).unwrap();
        assert_eq!(notes, Vec::<String>::new());
        assert_eq!(c.file, Some(PathBuf::from(FILE)));
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/tablo"));
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(
            (
                c.server.max_clients,
                c.server.max_frame_bytes,
                c.server.allow_anonymous
            ),
            (200, 16384, false)
        );
        assert_eq!(
            c.server.tokens,
            vec![
                TokenConfig {
                    token: "s3cret".into(),
                    publish: true
                },
                TokenConfig {
                    token: "reader".into(),
                    publish: false
                }
            ]
        );
        let j = &c.journal;
        assert_eq!(j.dir, PathBuf::from("/mnt/journal"));
        assert_eq!(
            (j.max_events, j.max_bytes),
            (Some(1_000_000), Some(256 * 1024 * 1024))
        );
        assert_eq!(j.max_age, Some(Duration::from_secs(7 * 86400)));
        assert_eq!((j.flush_interval_ms, j.cache_bytes), (50, 4 * 1024 * 1024));
        let d = &c.display;
        assert_eq!(
            (d.mode, d.width, d.height, d.rotate, d.fps_max),
            (DisplayMode::Png, Some(1920), Some(1080), 90, 20)
        );
        assert_eq!((d.theme.as_str(), d.pixel_shift, d.bpp), ("dark", true, 16));
        assert_eq!(
            (d.device.as_path(), d.png_path.as_path()),
            (Path::new("/dev/fb1"), Path::new("/tmp/board.png"))
        );
        let entries: Vec<String> = d.schedule.entries().iter().map(|e| e.to_string()).collect();
        assert_eq!(
            entries,
            ["Mon-Fri 08:00-20:00", "Sat 09:00-14:00", "Fri 20:00-02:00"]
        );
        assert_eq!((d.off, d.wake_on), (ScreenOff::Cec, WakeOn::Critical));
        let b = &c.board;
        assert_eq!(b.title, "صرافی");
        assert_eq!(
            (b.stale_after, b.page_seconds),
            (Duration::from_secs(120), Duration::from_secs(15))
        );
        assert_eq!(b.columns, vec![Column::Bid, Column::Ask, Column::Change]);
        assert_eq!(
            (b.locale.as_str(), b.digits, b.direction),
            ("fa", Digits::Persian, Direction::Rtl)
        );
        assert_eq!(
            b.font,
            Some(PathBuf::from("/usr/share/fonts/Vazirmatn.ttf"))
        );
        assert_eq!(
            b.rows,
            vec![
                RowConfig {
                    symbol: "USD".into(),
                    label: Some("دلار".into()),
                    decimals: Some(0)
                },
                RowConfig {
                    symbol: "XAU".into(),
                    label: None,
                    decimals: None
                }
            ]
        );
        let names: Vec<&str> = c.feeds.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["binance", "office", "tablo", "coinbase", "demo"]);
        assert_eq!(c.feeds[0].symbols, ["BTCUSDT", "ETHUSDT"]);
        assert!(c.feeds[0].channels.is_empty());
        assert_eq!(c.feeds[1].subscribe, [r#"{"op":"sub"}"#]);
        assert_eq!(
            c.feeds[1].pointers,
            JsonPointers {
                items: Some("/rates".into()),
                symbol: Some("/code".into()),
                price: Some("/sell".into()),
                open: Some("/open".into()),
                change_pct: Some("/pct".into()),
                bid: Some("/buy".into()),
                ask: Some("/sell".into()),
                volume: Some("".into()),
            }
        );
        assert_eq!(c.feeds[2].channels, ["prices", "news"]);
        assert_eq!(c.feeds[3].subscribe, ["a", "b"]);
        assert_eq!(c.feeds[4], demo_feed("demo".into()));
    }

    #[test]
    fn a_bad_schedule_entry_is_named_with_its_line_and_the_fix() {
        check_err(
            "[display]\nschedule = [\n  \"Mon-Fri 08:00-20:00\",\n  \"Sat 9-14\",\n]\n",
            4,
            "[display] schedule: \"Sat 9-14\": \"9-14\" is not a range of hours such as 08:00-20:00",
        );
        check_err(
            "[display]\nschedule = [\"Mun 08:00-20:00\"]\n",
            2,
            "\"Mun\" is not a day: use Mon, Tue, Wed, Thu, Fri, Sat, Sun",
        );
        check_err(
            "[display]\noff = \"sleep\"\n",
            2,
            "[display] off: \"sleep\" is not one of blank, dpms, cec",
        );
        check_err(
            "[display]\nwake_on = \"warning\"\n",
            2,
            "\"warning\" is not one of critical, none",
        );
        let (_, notes) = load_notes(
            "[display]\nmode = \"fbdev\"\nschedule = [\"08:00-20:00\"]\noff = \"dpms\"\n",
            &Overrides::default(),
        )
        .unwrap();
        assert!(
            notes
                .iter()
                .any(|n| n.contains("the screen is blanked instead")),
            "{notes:?}"
        );
        let d = load("[display]\nschedule = []\n").unwrap().display;
        assert!(d.schedule.is_empty());
        assert_eq!((d.off, d.wake_on), (ScreenOff::Blank, WakeOn::None));
    }

    #[test]
    fn limits_are_enforced() {
        check_err(
            "[server]\nmax_clients = 0\n",
            2,
            "[server] max_clients: 0 is out of range; use 1 to",
        );
        check_err(
            "[server]\nmax_frame_bytes = \"512B\"\n",
            2,
            "[server] max_frame_bytes: 512B is out of range; use 1KiB to 16MiB",
        );
        check_err("[server]\nmax_frame_bytes = \"32MiB\"\n", 2, "out of range");
        check_err(
            "[journal]\nflush_interval_ms = 0\n",
            2,
            "[journal] flush_interval_ms: 0 is out of range; use 1 to 10000",
        );
        check_err(
            "[journal]\nflush_interval_ms = 10001\n",
            2,
            "flush_interval_ms: 10001 is out of range",
        );
        check_err(
            "[journal]\ncache_bytes = \"1KiB\"\n",
            2,
            "[journal] cache_bytes: 1KiB is too small; use at least 64KiB",
        );
        check_err(
            "[display]\nfps_max = 0\n",
            2,
            "[display] fps_max: 0 is out of range; use 1 to 120",
        );
        check_err(
            "[display]\nbpp = 24\n",
            2,
            "[display] bpp: 24 is not 16 or 32 (RGB565 or XRGB8888)",
        );
        check_err(
            "[display]\nfps_max = 121\n",
            2,
            "fps_max: 121 is out of range",
        );
        check_err(
            "[display]\nwidth = 63\n",
            2,
            "[display] width: 63 is out of range; use 64 to 8192",
        );
        check_err(
            "[display]\nheight = 8193\n",
            2,
            "[display] height: 8193 is out of range",
        );
        check_err(
            "[display]\nrotate = 45\n",
            2,
            "[display] rotate: 45 is not one of 0, 90, 180, 270",
        );
        check_err(
            "[display]\ntheme = \"\"\n",
            2,
            "[display] theme: \"\" is not one of dark (the themes",
        );
        check_err(
            "[display]\ntheme = \"light\"\n",
            2,
            "[display] theme: \"light\" is not one of dark (the themes the board draws)",
        );
        check_err(
            "[[board.rows]]\nsymbol = \"A\"\ndecimals = 19\n",
            3,
            "[[board.rows]] decimals: 19 is out of range; use 0 to 18",
        );
        check_err(
            "[[board.rows]]\nlabel = \"A\"\n",
            1,
            "[[board.rows]]: symbol is missing",
        );
        check_err(
            "[[board.rows]]\nsymbol = \"\"\n",
            2,
            "[[board.rows]] symbol: must not be empty",
        );
        check_err(
            "[[board.rows]]\nsymbol = \"A\"\n[[board.rows]]\nsymbol = \"A\"\n",
            4,
            "\"A\" already has a row",
        );
        check_err(
            "[board]\nlocale = \"en US\"\n",
            2,
            "[board] locale: \"en US\" is not a locale name",
        );
        check_err("[journal]\ndir = \"\"\n", 2, "[journal] dir: an empty path");
        for ok in [
            "[display]\nrotate = 270\n",
            "[display]\nwidth = 64\nheight = 8192\n",
            "[server]\nmax_frame_bytes = 1024\n",
        ] {
            load(ok).unwrap();
        }
    }

    #[test]
    fn threads_are_1_to_16_and_default_to_the_cpus_at_most_4() {
        for bad in ["0", "17", "1000"] {
            check_err(
                &format!("[server]\nthreads = {bad}\n"),
                2,
                &format!("[server] threads: {bad} is out of range; use 1 to 16"),
            );
        }
        check_err("[server]\nthreads = \"four\"\n", 2, "threads");
        check_err("[server]\nthreads = -1\n", 2, "threads");
        for good in [1, 2, 16] {
            let config = load(&format!("[server]\nthreads = {good}\n")).unwrap();
            assert_eq!(config.server.threads, good);
        }
        let default = load("").unwrap().server.threads;
        assert!((1..=4).contains(&default), "{default}");
        assert_eq!(default, super::default_threads());
    }

    #[test]
    fn a_locale_s_language_is_read_in_any_case() {
        for (given, read) in [("FA", "fa"), ("Tr-TR", "tr-TR"), ("en", "en")] {
            let config = load(&format!("[board]\nlocale = \"{given}\"\n")).unwrap();
            assert_eq!(config.board.locale, read, "{given}");
        }
    }

    #[test]
    fn tokens_must_be_present_non_empty_and_unique() {
        check_err(
            "[server]\ntokens = [{ publish = true }]\n",
            2,
            "[server] tokens: an entry has no token",
        );
        check_err(
            "[server]\ntokens = [{ token = \"\" }]\n",
            2,
            "[server] tokens: a token must not be empty",
        );
        check_err(
            "[server]\ntokens = [\n  { token = \"abc\" },\n  { token = \"abc\", publish = true },\n]\n",
            4,
            "this token is listed twice",
        );
        let err = load("[server]\ntokens = [{ token = \"abc\" }, { token = \"abc\" }]\n")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("abc"), "a secret leaked into an error: {err}");
    }

    #[test]
    fn cors_origins_are_origins() {
        let c = load(
            "[server]\ncors_origins = [\"https://screens.example\", \"http://10.0.0.5:8080\", \"*\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.server.cors_origins,
            ["https://screens.example", "http://10.0.0.5:8080", "*"]
        );
        assert!(
            c.to_toml().contains(
                "cors_origins = [\"https://screens.example\", \"http://10.0.0.5:8080\", \"*\"]"
            ),
            "{}",
            c.to_toml()
        );
        assert!(load("").unwrap().server.cors_origins.is_empty());
        for bad in [
            "screens.example",
            "https://",
            "https://a.example/",
            "ftp://a.example",
            "https://a b",
        ] {
            check_err(
                &format!("[server]\ncors_origins = [{bad:?}]\n"),
                2,
                "is not an origin",
            );
        }
    }

    #[test]
    fn board_qr_is_auto_off_or_an_http_url() {
        let qr = |text: &str| load(text).unwrap().board.qr;
        assert_eq!(qr(""), BoardQr::Auto);
        assert_eq!(qr("[board]\nqr = \"auto\"\n"), BoardQr::Auto);
        assert_eq!(qr("[board]\nqr = \"off\"\n"), BoardQr::Off);
        assert_eq!(
            qr("[board]\nqr = \"https://rates.example.com:8443/board?b=1\"\n"),
            BoardQr::Url("https://rates.example.com:8443/board?b=1".into())
        );
        assert_eq!(
            qr("[board]\nqr = \"http://[fd00::7]:7070/\"\n"),
            BoardQr::Url("http://[fd00::7]:7070/".into())
        );
        check_err(
            "[board]\ntitle = \"x\"\nqr = \"yes\"\n",
            3,
            "[board] qr: \"yes\" is not auto, off, or a URL starting with http:// or https://; write \"auto\", \"off\" or a URL",
        );
        check_err(
            "[board]\nqr = \"ftp://files.example.com/\"\n",
            2,
            "is not auto, off, or a URL",
        );
        check_err("[board]\nqr = \"https://\"\n", 2, "has no host");
        check_err("[board]\nqr = \"http://:7070/\"\n", 2, "has no host");
        check_err(
            "[board]\nqr = \"https://example.com/a b\"\n",
            2,
            "holds ' ': write spaces and other characters percent-encoded",
        );
        check_err(
            "[board]\nqr = \"https://نرخ.example/\"\n",
            2,
            "a domain in punycode",
        );
        let long = format!("[board]\nqr = \"https://example.com/{}\"\n", "a".repeat(81));
        check_err(&long, 2, "is 101 bytes long, over 100");
        let fits = format!("https://example.com/{}", "a".repeat(80));
        assert_eq!(
            qr(&format!("[board]\nqr = \"{fits}\"\n")),
            BoardQr::Url(fits)
        );
        check_err("[board]\nqr = 1\n", 2, "[board]");
    }

    #[test]
    fn closed_server_without_tokens_is_noted() {
        let (_, notes) =
            load_notes("[server]\nallow_anonymous = false\n", &Overrides::default()).unwrap();
        assert!(
            notes.iter().any(|n| n.contains("no client can connect")),
            "{notes:?}"
        );
    }

    #[test]
    fn flags_override_the_file() {
        let text = "[server]\nlisten = \"0.0.0.0:1\"\n[display]\nmode = \"window\"\n";
        let overrides = Overrides {
            listen: Some("127.0.0.1:9".parse().unwrap()),
            display: Some(DisplayMode::None),
            data_dir: Some("/flag".into()),
            ..Overrides::default()
        };
        let c = load_notes(text, &overrides).unwrap().0;
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9");
        assert_eq!(c.display.mode, DisplayMode::None);
        assert_eq!(c.data_dir, PathBuf::from("/flag"));
        assert_eq!(c.journal.dir, PathBuf::from("/flag/journal"));
        assert_eq!(c.display.png_path, PathBuf::from("/flag/board.png"));
        let c = load(text).unwrap();
        assert_eq!(
            (c.server.listen.to_string().as_str(), c.display.mode),
            ("0.0.0.0:1", DisplayMode::Window)
        );
    }

    #[test]
    fn retention_limits_default_to_a_bounded_journal_and_turn_off_with_off() {
        let j = load("").unwrap().journal;
        assert_eq!(
            (j.max_events, j.max_bytes, j.max_age),
            (
                Some(DEFAULT_MAX_EVENTS),
                Some(DEFAULT_MAX_BYTES),
                Some(DEFAULT_MAX_AGE)
            )
        );
        let j = load("[journal]\nmax_events = \"off\"\nmax_bytes = \"OFF\"\nmax_age = \"off\"\n")
            .unwrap()
            .journal;
        assert_eq!((j.max_events, j.max_bytes, j.max_age), (None, None, None));
        let j = load("[journal]\nmax_bytes = \"off\"\n").unwrap().journal;
        assert_eq!(
            (j.max_events, j.max_bytes, j.max_age),
            (Some(DEFAULT_MAX_EVENTS), None, Some(DEFAULT_MAX_AGE)),
            "turning one limit off leaves the others at their defaults"
        );
        let j = load("[journal]\nmax_events = 10\nmax_bytes = 4096\nmax_age = \"1h\"\n")
            .unwrap()
            .journal;
        assert_eq!(
            (j.max_events, j.max_bytes, j.max_age),
            (Some(10), Some(4096), Some(Duration::from_secs(3600)))
        );
        for key in ["max_events", "max_bytes"] {
            check_err(
                &format!("[journal]\n{key} = 0\n"),
                2,
                &format!("[journal] {key}: must not be 0; write \"off\" for no limit"),
            );
        }
        check_err(
            "[journal]\nmax_age = \"0s\"\n",
            2,
            "[journal] max_age: must not be 0; write \"off\" for no limit",
        );
        check_err(
            "[journal]\nmax_age = \"of\"\n",
            2,
            "[journal] max_age: \"of\" is not a duration",
        );
        check_err(
            "[journal]\nmax_events = \"many\"\n",
            2,
            "[journal] max_events: expected a number of events such as 1000000, or \"off\", found string \"many\"",
        );
    }

    #[test]
    fn the_default_limits_fit_beside_an_os_on_a_16_gb_card() {
        // docs/notes.md §2: sled takes about 2.1 times the payload on disk.
        let on_disk = DEFAULT_MAX_BYTES as f64 * 2.1;
        let gib = (1u64 << 30) as f64;
        assert!(
            on_disk < 1.5 * gib,
            "{:.2} GiB on disk is too much for a 16 GB card with an OS",
            on_disk / gib
        );
        // Ticks of 200 to 250 bytes: max_bytes and max_events bind at about
        // the same point (within a factor of 1.5 either way).
        for tick in [200, 250] {
            let fit = DEFAULT_MAX_BYTES / tick;
            assert!(
                fit * 2 / 3 <= DEFAULT_MAX_EVENTS && DEFAULT_MAX_EVENTS <= fit * 3 / 2,
                "{fit} ticks of {tick} B"
            );
        }
        // A quiet board (1 event/s of 225 B) is bounded by max_age, well
        // before max_bytes.
        assert!(DEFAULT_MAX_AGE.as_secs() * 225 < DEFAULT_MAX_BYTES / 2);
    }
}
