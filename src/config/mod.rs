//! The resolved, validated settings of one Tablo process.
//!
//! `Config` is what every other module reads. It is built once by
//! [`Config::load`] from built-in defaults, the TOML file (every key is
//! described in `docs/config.md`) and the command-line [`Overrides`], in that
//! order, and never changes afterwards.
//! This module reads the config file, the environment and the key files
//! `[server.jwt]` names, and nothing else: it never opens the data dir, the
//! journal, a font or a device.
//!
//! This file holds the model, its defaults and limits, and the entry points;
//! each step of building a `Config` has a file of its own:
//!
//! - `raw`: the file as written, in serde types that mirror its layout
//!   (every key optional, unknown keys rejected) and keep each value's span;
//! - `resolve`: defaults ← file ← overrides, section by section, with every
//!   value checked;
//! - `alert`: the `[[alert]]` rules, read and checked;
//! - `feed`: the feed list, from `[[feed]]` tables and `--feed` flags
//!   ([`parse_feed_flag`]);
//! - `paths`: the data dir (`--data-dir`, the file, `$STATE_DIRECTORY`,
//!   `$XDG_STATE_HOME`, `$HOME`) and paths written in the file;
//! - `units`: durations and sizes, read and written;
//! - `jwt`: `[server.jwt]`, whose key files are read and parsed while the
//!   config loads (the one place here that reads a file besides the config
//!   file), so a bad key is a config error;
//! - `keyword`: the words of the enum-valued settings;
//! - `error`: [`ConfigError`], and where a problem is (file, line, key);
//! - `print`: the resolved settings as TOML, for `tablo check`
//!   ([`Config::to_toml`]).

mod alert;
mod error;
mod feed;
mod jwt;
mod keyword;
mod mqtt;
mod paths;
mod print;
mod raw;
mod resolve;
#[cfg(test)]
mod testing;
mod units;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::schedule::Schedule;

pub use self::alert::{
    ANY_SYMBOL, AlertKind, AlertLevel, AlertRule, Hysteresis, MAX_RULES, MoveDirection,
    PLACEHOLDERS,
};
pub use self::error::ConfigError;
pub use self::feed::parse_feed_flag;
pub use self::jwt::{
    DEFAULT_LEEWAY, Hs256Secret, JwtConfig, MAX_LEEWAY, MIN_SECRET_BYTES, PublicKey,
};
pub use self::mqtt::{TOPIC_SYMBOL_PREFIX, topic_level};
pub use self::units::parse_duration;

use self::error::Source;
use self::paths::real_env;
use self::raw::RawConfig;
use self::resolve::resolve;
use self::units::{KIB, MIB};

/// Every setting, resolved. Built by [`Config::load`].
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file the settings came from, if any.
    pub file: Option<PathBuf>,
    /// Where the journal and the PNG board live.
    pub data_dir: PathBuf,
    /// The local WebSocket and HTTP server.
    pub server: ServerConfig,
    /// The durable journal.
    pub journal: JournalConfig,
    /// Where the board is drawn.
    pub display: DisplayConfig,
    /// What the board shows.
    pub board: BoardConfig,
    /// Upstream feeds, in the order configured.
    pub feeds: Vec<FeedConfig>,
    /// `[[alert]]` rules, in the order configured.
    pub alerts: Vec<AlertRule>,
    /// This Tablo's name in a fleet (`site`, for `{site}` in forwarded
    /// topics); default [`DEFAULT_SITE`].
    pub site: String,
    /// `[[forward]]` rules: events published to a broker feed.
    pub forwards: Vec<ForwardConfig>,
}

/// `site` when the file does not say.
pub const DEFAULT_SITE: &str = "tablo";

/// One `[[forward]]` rule (docs/config.md §16).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Channels whose events it forwards, as a client subscribes.
    pub channels: Vec<String>,
    /// The name of the `mqtt` feed whose broker gets them.
    pub to: String,
    /// The topic template: `{site}`, `{channel}`, `{symbol}`.
    pub topic: String,
    /// 0 or 1; default 1.
    pub qos: u8,
    /// Whether the broker keeps the last message per topic; default false.
    pub retain: bool,
    /// The outbox holds at most this many bytes of messages; the oldest go
    /// first. Default [`DEFAULT_FORWARD_MAX_BYTES`].
    pub max_bytes: u64,
    /// Messages older than this are dropped unsent; default
    /// [`DEFAULT_FORWARD_MAX_AGE`].
    pub max_age: Duration,
}

/// The default topic of a forwarded event.
pub const DEFAULT_FORWARD_TOPIC: &str = "tablo/{site}/{channel}";

/// An outbox's bytes by default: a day of a busy office's alerts and rates
/// (about 100 messages a minute of 300 bytes is 43 MiB) fits.
pub const DEFAULT_FORWARD_MAX_BYTES: u64 = 64 * MIB;

/// How long a message waits for its broker by default: a weekend without a
/// network is caught up on Monday.
pub const DEFAULT_FORWARD_MAX_AGE: Duration = Duration::from_secs(3 * 86400);

impl Default for ForwardConfig {
    fn default() -> ForwardConfig {
        ForwardConfig {
            channels: Vec::new(),
            to: String::new(),
            topic: DEFAULT_FORWARD_TOPIC.to_owned(),
            qos: 1,
            retain: false,
            max_bytes: DEFAULT_FORWARD_MAX_BYTES,
            max_age: DEFAULT_FORWARD_MAX_AGE,
        }
    }
}

/// `[server]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// Address to listen on; default `127.0.0.1:7070`.
    pub listen: SocketAddr,
    /// Upgrades past this many clients get HTTP 503; default 1000.
    pub max_clients: usize,
    /// A client frame larger than this closes the connection with 1009;
    /// default 64 KiB.
    pub max_frame_bytes: usize,
    /// Whether a client without a token may connect (read-only); default true.
    pub allow_anonymous: bool,
    /// Tokens clients may present with `?token=`.
    pub tokens: Vec<TokenConfig>,
    /// `[server.jwt]`: signed tokens with rights, when configured.
    pub jwt: Option<JwtConfig>,
    /// Web origins (`https://example.org`) whose pages may read `/api/*`
    /// and open `/ws`; empty (the default) means CORS off and any origin
    /// may open `/ws`. `"*"` allows every origin.
    pub cors_origins: Vec<String>,
    /// Threads that write to clients (`hub::fanout`), 1 to [`MAX_THREADS`];
    /// default the CPUs this process may use, at most [`DEFAULT_THREADS_MAX`].
    pub threads: usize,
}

/// One entry of `[server] tokens`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenConfig {
    /// The secret a client passes as `?token=`.
    pub token: String,
    /// Whether the holder may use the `publish` op.
    pub publish: bool,
}

/// `[journal]`.
#[derive(Clone, Debug, PartialEq)]
pub struct JournalConfig {
    /// Journal directory; default `<data_dir>/journal`.
    pub dir: PathBuf,
    /// Keep at most this many events (oldest trimmed first); default
    /// [`DEFAULT_MAX_EVENTS`], `None` when the file says `"off"`.
    pub max_events: Option<u64>,
    /// Keep at most this many bytes of event JSON; default
    /// [`DEFAULT_MAX_BYTES`], `None` when the file says `"off"`.
    pub max_bytes: Option<u64>,
    /// Trim events older than this; default [`DEFAULT_MAX_AGE`], `None`
    /// when the file says `"off"`.
    pub max_age: Option<Duration>,
    /// Group-commit interval; default 100 ms.
    pub flush_interval_ms: u64,
    /// sled's page cache; default 8 MiB.
    pub cache_bytes: u64,
}

/// `[display]`.
#[derive(Clone, Debug, PartialEq)]
pub struct DisplayConfig {
    /// Which backend draws the board.
    pub mode: DisplayMode,
    /// Width in pixels (window, png, or fbdev on a plain file).
    pub width: Option<u32>,
    /// Height in pixels.
    pub height: Option<u32>,
    /// Clockwise rotation: 0, 90, 180 or 270.
    pub rotate: u16,
    /// Frame-rate cap; default 30.
    pub fps_max: u32,
    /// Colour theme name; default `dark`.
    pub theme: String,
    /// Shift the board a few pixels now and then against burn-in.
    pub pixel_shift: bool,
    /// Framebuffer device for `fbdev`; default `/dev/fb0`.
    pub device: PathBuf,
    /// Bits per pixel when `device` is a plain file (a real framebuffer
    /// says its own): 16 (RGB565) or 32 (XRGB8888); default 32.
    pub bpp: u8,
    /// Output file for `png`; default `<data_dir>/board.png`.
    pub png_path: PathBuf,
    /// `schedule`: the screen's opening hours in local time; empty (the
    /// default) is always on.
    pub schedule: Schedule,
    /// `off`: how the screen goes dark outside them; default `blank`.
    pub off: ScreenOff,
    /// `wake_on`: what lights it up outside them; default `none`.
    pub wake_on: WakeOn,
}

/// `[display] off`: how the screen goes dark outside the schedule
/// (docs/board.md §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScreenOff {
    /// The framebuffer blanked (`FBIOBLANK`), else a black frame.
    Blank,
    /// The X screen put to sleep (`xset dpms force off`), and a black frame.
    Dpms,
    /// The TV switched to standby over HDMI-CEC (`cec-ctl`), and a black
    /// frame.
    Cec,
}

/// `[display] wake_on`: what lights the screen up outside its hours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeOn {
    /// A critical alert, while it is on the band.
    Critical,
    /// Nothing: outside the hours the screen stays dark.
    None,
}

/// `--display` / `[display] mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisplayMode {
    /// Window if a display is reachable, else fbdev if writable, else png.
    Auto,
    /// A minifb window.
    Window,
    /// The Linux framebuffer.
    Fbdev,
    /// A PNG file, rewritten at most once a second.
    Png,
    /// No board at all: relay only.
    None,
}

/// `[board]`.
#[derive(Clone, Debug, PartialEq)]
pub struct BoardConfig {
    /// Header title; default `Tablo`.
    pub title: String,
    /// A row with no update for this long is drawn as stale; default 60 s.
    pub stale_after: Duration,
    /// Rows that do not fit rotate in pages this often; default 10 s.
    pub page_seconds: Duration,
    /// Which columns each row shows; default price, change, sparkline.
    pub columns: Vec<Column>,
    /// Locale for number separators, e.g. `en`, `fa`, `tr`; default `en`.
    pub locale: String,
    /// Digit glyphs.
    pub digits: Digits,
    /// Layout direction.
    pub direction: Direction,
    /// The calendar of the header's date.
    pub calendar: CalendarChoice,
    /// A TTF/OTF to use instead of the bundled font.
    pub font: Option<PathBuf>,
    /// Rows to show; empty means every symbol seen, in first-seen order.
    pub rows: Vec<RowConfig>,
    /// The QR code to the web board (docs/board.md §10); default
    /// [`BoardQr::Auto`].
    pub qr: BoardQr,
}

/// `[board] qr`: whether the board shows a QR code that opens the web
/// board on a phone, and which address it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BoardQr {
    /// The address nearby phones reach: the listen socket's LAN address,
    /// found again when it changes. No code while the daemon listens on
    /// loopback only. The default.
    Auto,
    /// No code.
    Off,
    /// This `http://` or `https://` URL (a proxy's or a public name), at
    /// most [`MAX_QR_URL`] bytes of printable ASCII.
    Url(String),
}

/// Longest `[board] qr` URL, in bytes. At error correction level M a
/// 100-byte URL is a version-6 code (41 modules a side); a longer one would
/// shrink the modules of a code that fits its corner below what a phone
/// reads from across a room (docs/board.md §10).
pub const MAX_QR_URL: usize = 100;

/// One `[board] columns` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// Last price.
    Price,
    /// Change and % change against the open.
    Change,
    /// Recent prices as a small line.
    Sparkline,
    /// Best bid ("buy").
    Bid,
    /// Best ask ("sell").
    Ask,
    /// Traded volume.
    Volume,
}

/// `[board] digits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digits {
    /// 0–9.
    Latin,
    /// ۰–۹.
    Persian,
    /// ٠–٩.
    Arabic,
}

/// `[board] direction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the locale: rtl for `fa` and `ar`, else ltr.
    Auto,
    /// Left to right.
    Ltr,
    /// Right to left: the whole board mirrors.
    Rtl,
}

/// `[board] calendar`: the calendar of the header's date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalendarChoice {
    /// From the locale: Solar Hijri for `fa`, Hijri for `ar`, else
    /// Gregorian.
    Auto,
    /// The Gregorian calendar.
    Gregorian,
    /// The Solar Hijri (Jalali) calendar.
    Persian,
    /// The Hijri calendar, Umm al-Qura.
    Hijri,
}

/// One `[[board.rows]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowConfig {
    /// Symbol as the feed spells it.
    pub symbol: String,
    /// What the board shows instead of the symbol.
    pub label: Option<String>,
    /// Decimals to show (the price string is cut or padded, never rounded
    /// through floating point).
    pub decimals: Option<u8>,
}

/// One `[[feed]]` (or `--feed FORMAT=URL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedConfig {
    /// Unique name; shown in `status` events and stats.
    pub name: String,
    /// How to read it.
    pub format: FeedFormat,
    /// `ws://` or `wss://` URL; empty for `demo`.
    pub url: String,
    /// Symbols to subscribe to (binance, coinbase) or to keep (json).
    pub symbols: Vec<String>,
    /// Raw text frames to send after connecting, replacing the format's own
    /// subscribe frames when not empty.
    pub subscribe: Vec<String>,
    /// Channels to subscribe to on an upstream Tablo; default `["*"]`.
    pub channels: Vec<String>,
    /// Where the fields are in a `json` or `mqtt` feed's messages.
    pub pointers: JsonPointers,
    /// The broker side of an `mqtt` feed (topics, QoS, client id, login).
    pub mqtt: MqttFeed,
}

/// The broker side of a `format = "mqtt"` feed (docs/config.md §11).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MqttFeed {
    /// Topic filters to subscribe to, with `+` and `#` wildcards.
    pub topics: Vec<String>,
    /// The QoS asked for: 0 or 1; default 1, so that what is published
    /// while this Tablo is off waits in its persistent session.
    pub qos: u8,
    /// The MQTT client id; `None`: `tablo-<machine id>-<feed name>`, made
    /// when connecting.
    pub client_id: Option<String>,
    /// The user name to log in with.
    pub username: Option<String>,
    /// A file holding the password (read at each connect, trailing
    /// newline dropped).
    pub password_file: Option<PathBuf>,
}

/// `[[feed]] format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedFormat {
    /// Binance spot streams.
    Binance,
    /// Coinbase Exchange `ticker` channel.
    Coinbase,
    /// Another Tablo's downstream protocol.
    Tablo,
    /// Any JSON feed, fields picked with JSON pointers.
    Json,
    /// An MQTT broker: topics, each message's payload mapped like `json`.
    Mqtt,
    /// The built-in simulated market.
    Demo,
}

impl FeedFormat {
    /// The config and CLI name.
    pub fn name(self) -> &'static str {
        match self {
            FeedFormat::Binance => "binance",
            FeedFormat::Coinbase => "coinbase",
            FeedFormat::Tablo => "tablo",
            FeedFormat::Json => "json",
            FeedFormat::Mqtt => "mqtt",
            FeedFormat::Demo => "demo",
        }
    }
}

/// `[feed.pointers]`: RFC 6901 JSON pointers into a `json` feed's messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JsonPointers {
    /// Where the records are: an array of records or one record. Default: the
    /// message itself (a top-level array is taken as a list of records).
    pub items: Option<String>,
    /// The symbol inside a record. May be left out when `symbols` names
    /// exactly one symbol.
    pub symbol: Option<String>,
    /// The price inside a record (required for a json feed).
    pub price: Option<String>,
    /// Optional fields inside a record.
    pub open: Option<String>,
    /// Change against the open, in percent.
    pub change_pct: Option<String>,
    /// Best bid / buy.
    pub bid: Option<String>,
    /// Best ask / sell.
    pub ask: Option<String>,
    /// Traded volume.
    pub volume: Option<String>,
}

/// What the command line says, applied over the config file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--feed FORMAT=URL`, already parsed; replaces the file's feeds when
    /// not empty.
    pub feeds: Vec<FeedConfig>,
    /// `--display`.
    pub display: Option<DisplayMode>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--demo`: add the built-in demo feed (alone when no other feed is set).
    pub demo: bool,
}

// ---------------------------------------------------------------------------
// Defaults and limits.
// ---------------------------------------------------------------------------

/// Default `[server] listen`: loopback, so opening the relay to the LAN is a
/// choice made in the config.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7070));

/// Default `[server] max_clients`: an idle client costs about 10 KiB with
/// small WebSocket buffers, so 1000 fit in ~10 MiB on a Pi.
const DEFAULT_MAX_CLIENTS: usize = 1000;

/// Most fan-out threads `[server] threads` defaults to: a Pi has 4 cores,
/// and past 4 the writes of 1000 clients no longer split usefully.
pub const DEFAULT_THREADS_MAX: usize = 4;

/// Largest accepted `[server] threads`: each is a thread and its stack, and
/// more than there are cores only adds wake-ups.
pub const MAX_THREADS: usize = 16;

/// Default `[server] threads`: the CPUs this process may run on (its
/// affinity, as `taskset` sets it), at most [`DEFAULT_THREADS_MAX`].
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(DEFAULT_THREADS_MAX)
}

/// Default `[server] max_frame_bytes`: client ops are small JSON objects;
/// 64 KiB leaves room for a `publish` with a long alert text.
const DEFAULT_MAX_FRAME_BYTES: usize = 64 * KIB as usize;

/// Smallest accepted `max_frame_bytes`: below 1 KiB a `subscribe` naming a
/// few dozen channels would not fit.
const MIN_FRAME_BYTES: usize = KIB as usize;

/// Largest accepted `max_frame_bytes`: a frame is buffered whole before it is
/// parsed, so this bounds what one client can make the server hold.
const MAX_FRAME_BYTES: usize = 16 * MIB as usize;

/// Default `[journal] flush_interval_ms`: the journal group-commits events
/// at most this long after they arrive, so a crash loses at most that much.
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 100;

/// Largest accepted `flush_interval_ms`: past 10 s a crash loses too much,
/// and a `publish` ack would wait that long.
const MAX_FLUSH_INTERVAL_MS: u64 = 10_000;

/// Default `[journal] max_bytes`: 512 MiB of event JSON, about 1.1 GiB on
/// disk. Sled takes about 2.1 times the payload of append-only data
/// (docs/notes.md §2), so the journal needs about 512 MiB × 2.1 ≈ 1.05 GiB
/// plus a few tens of MiB of sled's own (the snapshot and meta trees,
/// segments not yet reclaimed). A 16 GB SD card (about 14.9 GiB) with
/// Raspberry Pi OS on it has roughly 8 to 12 GiB free, less with a desktop:
/// the journal then takes about 10 to 15 % of that, leaving room for
/// logs and updates. At the demo's ~30 events/s of ~225 bytes (about
/// 580 MB a day) it holds the last ~22 hours; a board at a few events a
/// second is bounded by [`DEFAULT_MAX_AGE`] first.
pub const DEFAULT_MAX_BYTES: u64 = 512 * MIB;

/// Default `[journal] max_events`: 2,000,000 events. With typical 200 to
/// 250-byte ticks, [`DEFAULT_MAX_BYTES`] holds 2.1 to 2.7 million of them,
/// so the two limits bind at about the same point; for small events, whose
/// 20 bytes of framing each (seq, ts, length) are not counted in
/// `max_bytes`, this keeps the count, and so the framing and what a replay
/// or an export may walk, bounded too.
pub const DEFAULT_MAX_EVENTS: u64 = 2_000_000;

/// Default `[journal] max_age`: a week. A price board rarely needs older
/// history (a client that resumes from further back gets a snapshot), and a
/// quiet board stays far below [`DEFAULT_MAX_BYTES`]: at 1 event/s of
/// ~225 bytes, a week is 605k events, about 136 MB of JSON.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Default `[journal] cache_bytes`: sled's own default is 1 GiB, far too
/// much for a Pi; a few MiB keep recent events hot.
pub const DEFAULT_CACHE_BYTES: u64 = 8 * MIB;

/// Smallest accepted `cache_bytes`: sled needs some room for its pages.
const MIN_CACHE_BYTES: u64 = 64 * KIB;

/// Default `[display] fps_max`: smooth enough for flashes and scrolling news
/// while leaving a Pi's CPU mostly idle.
const DEFAULT_FPS_MAX: u32 = 30;

/// Largest accepted `fps_max`: no kiosk screen refreshes faster.
const MAX_FPS: u32 = 120;

/// Smallest accepted `[display] width` / `height` in pixels.
const MIN_SIDE: u32 = 64;

/// Largest accepted `[display] width` / `height` in pixels: twice 4K, and a
/// frame buffer of this size still fits in memory.
const MAX_SIDE: u32 = 8192;

/// Default `[display] theme`.
const DEFAULT_THEME: &str = "dark";

/// The `[display] theme` names the board draws (their colours are in
/// `board::theme`): any other name is an error, not a silent `dark`.
const THEMES: &[&str] = &[DEFAULT_THEME];

/// Default `[display] device`.
const DEFAULT_FB_DEVICE: &str = "/dev/fb0";

/// Default `[board] title`.
const DEFAULT_TITLE: &str = "Tablo";

/// Default `[board] stale_after`: a row not updated for a minute is drawn as
/// stale.
const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(60);

/// Default `[board] page_seconds`.
const DEFAULT_PAGE_SECONDS: Duration = Duration::from_secs(10);

/// Default `[board] columns`.
const DEFAULT_COLUMNS: [Column; 3] = [Column::Price, Column::Change, Column::Sparkline];

/// Default `[board] locale`.
const DEFAULT_LOCALE: &str = "en";

/// Largest accepted `[[board.rows]] decimals`: more than any price feed sends
/// (Ethereum's wei has 18).
const MAX_DECIMALS: u8 = 18;

/// Name of the built-in demo feed added when nothing else is configured.
const DEMO_FEED_NAME: &str = "demo";

/// The note [`Config::load_with_notes`] returns when it falls back to the
/// demo feed.
const DEMO_FALLBACK_NOTE: &str = "no feed configured: using the built-in demo feed";

// ---------------------------------------------------------------------------
// Loading.
// ---------------------------------------------------------------------------

impl Config {
    /// Loads the settings: built-in defaults, then the TOML `file` (if
    /// given), then the command-line `overrides`. Reads the file, the
    /// environment (for the data dir default) and the key files of
    /// `[server.jwt]`, and nothing else.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::load_with_notes(file, overrides).map(|(config, _)| config)
    }

    /// Like [`Config::load`], and also returns notes for the log about
    /// choices made for the user, such as using the built-in demo feed
    /// because no feed is configured.
    pub fn load_with_notes(
        file: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        load_from(file, overrides, &real_env)
    }

    /// The built-in defaults with `data_dir` (and the demo feed): what
    /// `Config::load(None, ..)` gives with `--data-dir`. Handy in tests.
    pub fn defaults_in(data_dir: impl Into<PathBuf>) -> Config {
        let overrides = Overrides {
            data_dir: Some(data_dir.into()),
            ..Overrides::default()
        };
        let (config, _) =
            load_from(None, &overrides, &|_| None).expect("the built-in defaults are valid");
        config
    }
}

/// Reads `file` (if any) and resolves it with `overrides` and `env`.
fn load_from(
    file: Option<&Path>,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<String>), ConfigError> {
    let Some(path) = file else {
        return resolve(
            RawConfig::default(),
            &Source {
                file: None,
                text: "",
            },
            overrides,
            env,
        );
    };
    let bytes = std::fs::read(path).map_err(|error| ConfigError::Unreadable {
        path: path.to_path_buf(),
        error,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        ConfigError::Invalid {
            file: Some(path.to_path_buf()),
            line: Some(line),
            message: "the file is not UTF-8 text (a TOML file must be UTF-8)".to_owned(),
        }
    })?;
    load_text(path, &text, overrides, env)
}

/// Parses and resolves the text of the config file at `path`.
fn load_text(
    path: &Path,
    text: &str,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<String>), ConfigError> {
    let src = Source {
        file: Some(path),
        text,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
    resolve(raw, &src, overrides, env)
}

#[cfg(test)]
mod tests {
    use super::feed::demo_feed;
    use super::testing::{FILE, error_line, home_env, load_notes};
    use super::*;

    #[test]
    fn defaults_without_a_file() {
        let (config, notes) = load_from(None, &Overrides::default(), &home_env).unwrap();
        let data = PathBuf::from("/home/pi/.local/state/tablo");
        assert_eq!(config.file, None);
        assert_eq!(config.data_dir, data);
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(config.server.max_clients, 1000);
        assert_eq!(config.server.max_frame_bytes, 65536);
        assert!(config.server.allow_anonymous);
        assert!(config.server.tokens.is_empty());
        assert_eq!(config.journal.dir, data.join("journal"));
        assert_eq!(
            (
                config.journal.max_events,
                config.journal.max_bytes,
                config.journal.max_age
            ),
            (
                Some(2_000_000),
                Some(512 * 1024 * 1024),
                Some(Duration::from_secs(7 * 86400))
            )
        );
        assert_eq!(config.journal.flush_interval_ms, 100);
        assert_eq!(config.journal.cache_bytes, 8 * 1024 * 1024);
        let d = &config.display;
        assert_eq!(
            (d.mode, d.width, d.height, d.rotate, d.fps_max),
            (DisplayMode::Auto, None, None, 0, 30)
        );
        assert_eq!((d.theme.as_str(), d.pixel_shift), ("dark", false));
        assert_eq!(d.device, PathBuf::from("/dev/fb0"));
        assert_eq!(d.png_path, data.join("board.png"));
        let b = &config.board;
        assert_eq!(b.title, "Tablo");
        assert_eq!(
            (b.stale_after, b.page_seconds),
            (Duration::from_secs(60), Duration::from_secs(10))
        );
        assert_eq!(
            b.columns,
            vec![Column::Price, Column::Change, Column::Sparkline]
        );
        assert_eq!(
            (b.locale.as_str(), b.digits, b.direction),
            ("en", Digits::Latin, Direction::Auto)
        );
        assert_eq!((&b.font, b.rows.len()), (&None, 0));
        assert_eq!(config.feeds, vec![demo_feed("demo".to_owned())]);
        assert_eq!(notes, vec![DEMO_FALLBACK_NOTE.to_owned()]);
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let (config, notes) = load_notes("", &Overrides::default()).unwrap();
        let (defaults, _) = load_from(None, &Overrides::default(), &home_env).unwrap();
        assert_eq!(
            config,
            Config {
                file: Some(FILE.into()),
                ..defaults
            }
        );
        assert_eq!(notes, vec![DEMO_FALLBACK_NOTE.to_owned()]);
    }

    #[test]
    fn defaults_in_matches_load_with_a_data_dir() {
        let config = Config::defaults_in("/srv/tablo");
        assert_eq!(config.data_dir, PathBuf::from("/srv/tablo"));
        assert_eq!(config.journal.dir, PathBuf::from("/srv/tablo/journal"));
        assert_eq!(config.feeds.len(), 1);
    }

    #[test]
    fn a_missing_file_is_unreadable_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.toml");
        let err = Config::load(Some(&path), &Overrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::Unreadable { .. }));
        let shown = err.to_string();
        assert!(
            shown.contains(&path.display().to_string()) && shown.contains("does not exist"),
            "{shown}"
        );
        let err = Config::load(Some(dir.path()), &Overrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::Unreadable { .. }), "{err}");
        assert!(
            err.to_string().starts_with("cannot read config file"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_is_not_utf8_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, b"[board]\ntitle = \"\xff\"\n").unwrap();
        let err = Config::load(Some(&path), &Overrides::default()).unwrap_err();
        assert_eq!(error_line(&err), Some(2));
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}
