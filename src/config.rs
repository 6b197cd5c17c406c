//! The resolved, validated settings of one Tablo process.
//!
//! `Config` is what every other module reads. It is built once by
//! [`Config::load`] from built-in defaults, the TOML file (SPEC §2) and the
//! command-line [`Overrides`], in that order, and never changes afterwards.
//! This module reads the config file and the environment and nothing else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Keep at most this many events (oldest trimmed first).
    pub max_events: Option<u64>,
    /// Keep at most this many bytes of events.
    pub max_bytes: Option<u64>,
    /// Trim events older than this.
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
    /// Output file for `png`; default `<data_dir>/board.png`.
    pub png_path: PathBuf,
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
    /// A TTF/OTF to use instead of the bundled font.
    pub font: Option<PathBuf>,
    /// Rows to show; empty means every symbol seen, in first-seen order.
    pub rows: Vec<RowConfig>,
}

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
    /// Where the fields are in a `json` feed's messages.
    pub pointers: JsonPointers,
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
