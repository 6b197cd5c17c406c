//! The board as a web page: `GET /` and the files it loads, embedded in the
//! binary (docs/web.md).
//!
//! [`Site`] is built once at start-up from the `[board]` and `[display]`
//! settings: the page (with the board's settings as a JSON data block),
//! its style sheet (with the theme's colours), the page script, the
//! `tablo.js` client and the service worker, each with an `ETag` that is a
//! hash of its bytes. The server looks a path up with [`Site::get`] and
//! answers with the [`Asset`]'s bytes and headers; nothing here is computed
//! per request.
//!
//! This module does no I/O and knows no HTTP beyond header values.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use serde_json::{Value, json};

use crate::board::layout::caption;
use crate::board::numbers::{Numbers, is_rtl, language};
use crate::board::theme::{DARK, Theme};
use crate::board::words::words;
use crate::config::{BoardConfig, Column, Digits};

/// The `Content-Security-Policy` of every page and script: nothing but this
/// server, no inline script or style, no framing. The board's settings ride
/// in a `<script type="application/json">` block, which is data and never
/// runs; `data:` images are the empty favicon.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; manifest-src 'self'; worker-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// How browsers may cache the page and its files: keep a copy but ask
/// again each time (a 304 when the `ETag` still matches), so a changed
/// config or a new version shows on the next load.
pub const CACHE_CONTROL: &str = "no-cache";

/// The longest board title put in the page, in characters (the TV board
/// clips its own).
pub const MAX_TITLE_CHARS: usize = 120;

const INDEX_HTML: &str = include_str!("assets/index.html");
const BOARD_CSS: &str = include_str!("assets/board.css");
const PAGE_JS: &str = include_str!("assets/page.js");
const TABLO_JS: &str = include_str!("assets/tablo.js");
const SW_JS: &str = include_str!("assets/sw.js");

/// One file the page is made of, ready to send.
#[derive(Debug)]
pub struct Asset {
    /// Where it is served, e.g. `/tablo.js`.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: String,
    /// Its `ETag` header value, quotes included.
    pub etag: String,
}

/// Every file of the web page, built once.
#[derive(Debug)]
pub struct Site {
    assets: Vec<Asset>,
}

impl Site {
    /// The page for a board with these settings.
    pub fn new(board: &BoardConfig) -> Site {
        let theme = DARK;
        let rtl = is_rtl(&board.locale, board.direction);
        let lang = language(&board.locale);
        let title: String = board.title.chars().take(MAX_TITLE_CHARS).collect();
        // `<` is written as \u003c, so no string in the data block can end it.
        let settings = page_settings(board, &title)
            .to_string()
            .replace('<', "\\u003c");
        let index = INDEX_HTML
            .replace("{lang}", &escape_html(lang))
            .replace("{dir}", if rtl { "rtl" } else { "ltr" })
            .replace("{title}", &escape_html(&title))
            .replace("{settings}", &settings);
        let css = theme_css(&theme) + BOARD_CSS;
        let assets = vec![
            asset("/", "text/html; charset=utf-8", index),
            asset("/board.css", "text/css; charset=utf-8", css),
            asset("/page.js", "text/javascript; charset=utf-8", PAGE_JS.into()),
            asset(
                "/tablo.js",
                "text/javascript; charset=utf-8",
                TABLO_JS.into(),
            ),
            asset("/sw.js", "text/javascript; charset=utf-8", SW_JS.into()),
        ];
        Site { assets }
    }

    /// The asset served at `path`, if any (`/index.html` is `/`).
    pub fn get(&self, path: &str) -> Option<&Asset> {
        let path = if path == "/index.html" { "/" } else { path };
        self.assets.iter().find(|a| a.path == path)
    }

    /// The bytes of the page and everything it loads.
    #[cfg(test)]
    pub fn page_bytes(&self) -> usize {
        self.assets.iter().map(|a| a.body.len()).sum()
    }
}

fn asset(path: &'static str, content_type: &'static str, body: String) -> Asset {
    let etag = etag(&body);
    Asset {
        path,
        content_type,
        body,
        etag,
    }
}

/// A strong `ETag`: a 64-bit hash of the bytes and the version. Not a
/// secret and not a security check, only "has it changed".
fn etag(body: &str) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    body.hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

/// Whether an `If-None-Match` header value names `etag` (or is `*`).
pub fn matches_etag(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|tag| {
        tag == "*" || tag == etag || tag.strip_prefix("W/").is_some_and(|weak| weak == etag)
    })
}

/// What `page.js` reads from the data block: the board's settings, the
/// locale's digits and separators, and the page's words.
fn page_settings(board: &BoardConfig, title: &str) -> Value {
    let numbers = Numbers::new(&board.locale, board.digits);
    let lang = language(&board.locale);
    let w = words(lang);
    let columns: Vec<Value> = board
        .columns
        .iter()
        .map(|&c| json!({"name": column_name(c), "caption": caption(c, lang)}))
        .collect();
    let rows: Vec<Value> = board
        .rows
        .iter()
        .map(|r| json!({"symbol": r.symbol, "label": r.label, "decimals": r.decimals}))
        .collect();
    let web = web_words(lang);
    json!({
        "title": title,
        "stale_after_ms": board.stale_after.as_millis() as u64,
        "columns": columns,
        "rows": rows,
        "numbers": {
            "zero": numbers.zero().to_string(),
            "group": numbers.group().to_string(),
            "decimal": numbers.decimal().to_string(),
            "percent": numbers.percent().to_string(),
            "latin": board.digits == Digits::Latin,
        },
        "words": {
            "news": w.news,
            "client": w.client,
            "clients": w.clients,
            "no_data": w.no_data,
            "offline_since": w.offline_since,
            "waiting": w.waiting,
            "connected": web.connected,
            "connecting": web.connecting,
            "reconnecting_in": web.reconnecting_in,
            "units": web.units,
            "ago": web.ago,
        },
    })
}

/// `[board] columns` as the config spells them.
fn column_name(column: Column) -> &'static str {
    match column {
        Column::Price => "price",
        Column::Change => "change",
        Column::Sparkline => "sparkline",
        Column::Bid => "bid",
        Column::Ask => "ask",
        Column::Volume => "volume",
    }
}

/// The page's own words (the status bar's), beside the board's.
struct WebWords {
    connected: &'static str,
    connecting: &'static str,
    /// Followed by the number of seconds.
    reconnecting_in: &'static str,
    /// Seconds, minutes, hours, days.
    units: [&'static str; 4],
    /// After an age ("5m ago").
    ago: &'static str,
}

fn web_words(lang: &str) -> WebWords {
    match lang {
        "fa" => WebWords {
            connected: "وصل",
            connecting: "در حال اتصال…",
            reconnecting_in: "اتصال دوباره تا",
            units: ["ثانیه", "دقیقه", "ساعت", "روز"],
            ago: "پیش",
        },
        "ar" => WebWords {
            connected: "متصل",
            connecting: "جارٍ الاتصال…",
            reconnecting_in: "إعادة الاتصال خلال",
            units: ["ث", "د", "س", "ي"],
            ago: "مضت",
        },
        "tr" => WebWords {
            connected: "bağlı",
            connecting: "bağlanıyor…",
            reconnecting_in: "yeniden bağlanma",
            units: ["sn", "dk", "sa", "gün"],
            ago: "önce",
        },
        _ => WebWords {
            connected: "connected",
            connecting: "connecting…",
            reconnecting_in: "reconnecting in",
            units: ["s", "m", "h", "d"],
            ago: "ago",
        },
    }
}

/// The theme's colours as CSS custom properties, put before `board.css`.
fn theme_css(theme: &Theme) -> String {
    let mut css = String::from(":root{");
    for (name, colour) in [
        ("bg", theme.background),
        ("stripe", theme.stripe),
        ("header", theme.header),
        ("rule", theme.rule),
        ("text", theme.text),
        ("muted", theme.muted),
        ("up", theme.up),
        ("down", theme.down),
        ("flat", theme.flat),
        ("warning", theme.warning),
        ("alert", theme.alert),
        ("alert-text", theme.alert_text),
        ("news", theme.news),
        ("news-label", theme.news_label),
    ] {
        let _ = write!(css, "--{name}:{};", hex(colour));
    }
    css.push_str("}\n");
    css
}

fn hex(c: Rgb888) -> String {
    format!("#{:02x}{:02x}{:02x}", c.r(), c.g(), c.b())
}

/// `s` safe inside HTML text and double-quoted attributes.
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Direction};

    fn default_board() -> BoardConfig {
        Config::defaults_in("/srv/tablo").board
    }

    /// The whole page, with everything it loads, in bytes at most: a phone
    /// on a weak link gets the board in one round of small requests.
    const PAGE_BUDGET: usize = 48 * 1024;

    #[test]
    fn the_page_and_everything_it_loads_fit_the_budget() {
        let site = Site::new(&default_board());
        assert!(
            site.page_bytes() <= PAGE_BUDGET,
            "{} bytes",
            site.page_bytes()
        );
    }

    #[test]
    fn the_title_cannot_break_out_of_the_page() {
        let board = BoardConfig {
            title: "</script><script>alert(1)</script>\"&".into(),
            ..default_board()
        };
        let site = Site::new(&board);
        let page = &site.get("/").unwrap().body;
        assert!(!page.contains("<script>alert"), "{page}");
        assert_eq!(page.matches("</script>").count(), 2, "{page}");
        assert!(page.contains("&lt;/script&gt;"), "{page}");
    }

    #[test]
    fn a_persian_board_is_right_to_left_with_persian_digits() {
        let board = BoardConfig {
            locale: "fa".into(),
            digits: Digits::Persian,
            direction: Direction::Auto,
            ..default_board()
        };
        let site = Site::new(&board);
        let page = &site.get("/").unwrap().body;
        assert!(page.contains("<html lang=\"fa\" dir=\"rtl\">"), "{page}");
        assert!(page.contains("\"zero\":\"۰\""), "{page}");
    }

    #[test]
    fn etags_follow_the_bytes() {
        let a = Site::new(&default_board());
        let b = Site::new(&BoardConfig {
            title: "Other".into(),
            ..default_board()
        });
        assert_ne!(a.get("/").unwrap().etag, b.get("/").unwrap().etag);
        assert_eq!(
            a.get("/tablo.js").unwrap().etag,
            b.get("/tablo.js").unwrap().etag
        );
        assert!(a.get("/index.html").is_some());
        assert!(a.get("/nope").is_none());
    }

    #[test]
    fn if_none_match_lists() {
        assert!(matches_etag("\"ab\"", "\"ab\""));
        assert!(matches_etag("\"x\", W/\"ab\"", "\"ab\""));
        assert!(matches_etag("*", "\"ab\""));
        assert!(!matches_etag("\"abc\"", "\"ab\""));
        assert!(!matches_etag("", "\"ab\""));
    }
}
