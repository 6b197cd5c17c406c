//! The command line, parsed with argh: the doc comments here are the
//! `--help` text, and docs/config.md §13 describes every command and flag.
//!
//! This module describes and converts arguments; `main` builds the config,
//! calls the command and decides exit codes, and `app` runs the daemon.
//! Nothing here starts the daemon. The commands that are not the daemon
//! live below it:
//!
//! - [`journal`]: `tablo journal`, which reads the journal's files, or asks
//!   the running daemon when it holds the journal's lock;
//! - [`render`]: `tablo render`, one board frame to a PNG file, offline;
//! - [`token`]: `tablo token`, a JWT signed with the config's HS256 secret;
//! - `http`: the small blocking HTTP/1.1 client `tablo journal` asks the
//!   daemon with.
//!
//! `tablo check` is two lines (load the config, print it as TOML) and stays
//! in `main`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

use crate::config::{self, DisplayMode, Overrides};
use crate::journal::export::MAX_TAIL;

pub mod journal;
pub mod render;
pub mod token;

mod http;

/// Tablo: a price board and real-time relay for Raspberry-Pi-class kiosks.
///
/// Relays upstream WebSocket feeds (Binance, Coinbase, another Tablo, any
/// JSON feed, or a built-in demo market) to local WebSocket clients at
/// ws://HOST:PORT/ws, with /healthz and /metrics on the same port.
#[derive(FromArgs, Debug)]
pub struct Args {
    /// print the version and exit
    #[argh(switch)]
    pub version: bool,

    #[argh(subcommand)]
    /// what to do
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    /// `tablo run`.
    Run(RunArgs),
    /// `tablo check`.
    Check(CheckArgs),
    /// `tablo journal`.
    Journal(JournalArgs),
    /// `tablo render`.
    Render(RenderArgs),
    /// `tablo token`.
    Token(TokenArgs),
}

/// Print a JWT for a client, signed with the config's HS256 secret.
///
/// Example: tablo token --config /etc/tablo/tablo.toml --sub lobby-tv
/// --channels 'prices.*,news' --ttl 30d
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "token",
    note = "The token carries sub, iat, exp, and channels and publish when given (and \
            iss and aud when [server.jwt] sets issuer and audience). Clients present it \
            as /ws?token=..., Authorization: Bearer ..., or the WebSocket subprotocol \
            bearer.<token>.",
    error_code(64, "Bad usage (a flag's value, or no --config)."),
    error_code(78, "The config file is bad or has no [server.jwt] hs256_secret_file.")
)]
pub struct TokenArgs {
    /// the TOML config file whose [server.jwt] hs256_secret_file signs the
    /// token
    #[argh(option)]
    pub config: Option<PathBuf>,

    /// who holds the token (the sub claim; stats show it as the user)
    #[argh(option)]
    pub sub: String,

    /// channels it may subscribe to, as comma-separated patterns such as
    /// 'prices.*,news' (default: every channel)
    #[argh(option)]
    pub channels: Option<String>,

    /// channels it may publish to, comma-separated, e.g. alerts (default:
    /// none)
    #[argh(option)]
    pub publish: Option<String>,

    /// how long it is valid, e.g. 12h or 30d
    #[argh(option, from_str_fn(parse_ttl))]
    pub ttl: Duration,
}

/// Parses `--ttl`.
fn parse_ttl(value: &str) -> Result<Duration, String> {
    config::parse_duration(value).map_err(|e| format!("--ttl {value}: {e}"))
}

/// Draw one board frame to a PNG file, offline.
///
/// Shows what the board would show right after a start: the journal's
/// last-known prices, marked stale (or the demo market's first state when
/// there is no journal, or with --demo).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "render")]
pub struct RenderArgs {
    /// the PNG file to write
    #[argh(option)]
    pub out: PathBuf,

    /// the TOML config file (board layout, rows, rotation)
    #[argh(option)]
    pub config: Option<PathBuf>,

    /// the data directory whose journal to draw (default as for run)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,

    /// frame size as WIDTHxHEIGHT, e.g. 1920x1080 (default `[display]` width
    /// and height, else 1920x1080)
    #[argh(option, from_str_fn(parse_frame_size))]
    pub size: Option<(u32, u32)>,

    /// draw the demo market's first state instead of the journal's
    #[argh(switch)]
    pub demo: bool,
}

/// Parses `--size WIDTHxHEIGHT`.
fn parse_frame_size(value: &str) -> Result<(u32, u32), String> {
    let bad =
        || format!("--size {value}: expected WIDTHxHEIGHT between 64 and 8192, e.g. 1920x1080");
    let (w, h) = value.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    if !(64..=8192).contains(&w) || !(64..=8192).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

/// Run the daemon: connect to the feeds and serve clients until SIGTERM.
///
/// With no config file and no --feed, runs the built-in demo market.
#[derive(FromArgs, Debug, Default)]
#[argh(subcommand, name = "run")]
pub struct RunArgs {
    /// the TOML config file (see kiosk/ for examples)
    #[argh(option)]
    pub config: Option<PathBuf>,

    /// address to serve WebSocket and HTTP on (default 127.0.0.1:7070)
    #[argh(option)]
    pub listen: Option<SocketAddr>,

    /// an upstream feed as FORMAT=URL, FORMAT one of binance, coinbase,
    /// tablo, json, mqtt, demo; repeatable; replaces the config's `[[feed]]` list
    #[argh(option)]
    pub feed: Vec<String>,

    /// where to draw the board: auto, window, fbdev, png or none
    #[argh(option)]
    pub display: Option<DisplayMode>,

    /// directory for the journal and board.png (default $STATE_DIRECTORY,
    /// else $XDG_STATE_HOME/tablo, else ~/.local/state/tablo)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,

    /// add the built-in demo market to the feeds
    #[argh(switch)]
    pub demo: bool,
}

/// Validate a config file and print the resolved settings as TOML.
///
/// Exits 0 when the file is valid, 78 when it is not.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check")]
pub struct CheckArgs {
    /// the TOML config file to check
    #[argh(option)]
    pub config: Option<PathBuf>,
}

/// Inspect the durable journal (JSON lines on stdout), whether the daemon
/// runs or not.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "journal",
    note = "A stopped daemon's journal is read from its files; nothing in it changes, \
            except that the seqs lost in a crash are recorded as a gap, as the daemon \
            would at its next start. A running daemon holds the journal's lock: it is \
            asked over HTTP instead, at the address in DATA_DIR/tablo.listen, else the \
            config's [server] listen.",
    error_code(64, "Bad usage."),
    error_code(74, "There is no journal, or it cannot be read."),
    error_code(78, "The config file is bad."),
    error_code(1, "Writing the output failed.")
)]
pub struct JournalArgs {
    #[argh(subcommand)]
    /// what to print
    pub command: JournalCommand,
}

/// The `tablo journal` subcommands.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum JournalCommand {
    /// `tablo journal stats`.
    Stats(JournalStatsArgs),
    /// `tablo journal tail`.
    Tail(JournalTailArgs),
    /// `tablo journal export`.
    Export(JournalExportArgs),
}

/// Print the journal's counters as one JSON object.
#[derive(FromArgs, Debug, Default)]
#[argh(
    subcommand,
    name = "stats",
    note = "Fields: epoch, events, bytes (of event JSON), first_seq, last_seq, disk_bytes; \
            from a running daemon also durable_seq, writable and error; from the files \
            also next_seq (where the next run starts) and trimmed_below (every seq below \
            it was removed by retention)."
)]
pub struct JournalStatsArgs {
    /// the daemon's TOML config file, for its data dir, journal dir and
    /// listen address
    #[argh(option)]
    pub config: Option<PathBuf>,

    /// the daemon's data dir (default: the config's, else $STATE_DIRECTORY,
    /// $XDG_STATE_HOME/tablo or ~/.local/state/tablo)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
}

/// Print the newest records, oldest first, one JSON line each.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "tail",
    note = "Each event is printed exactly as clients got it; seqs lost in a crash are \
            one line {{\"type\":\"gap\",\"from\":A,\"to\":B}} in their place."
)]
pub struct JournalTailArgs {
    /// how many records (default 20, at most 10000; for more use export
    /// --since)
    #[argh(
        option,
        short = 'n',
        long = "lines",
        default = "20",
        from_str_fn(parse_tail)
    )]
    pub n: usize,

    /// the daemon's TOML config file, for its data dir, journal dir and
    /// listen address
    #[argh(option)]
    pub config: Option<PathBuf>,

    /// the daemon's data dir (default: the config's, else $STATE_DIRECTORY,
    /// $XDG_STATE_HOME/tablo or ~/.local/state/tablo)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
}

/// Print every record after --since, in seq order, one JSON line each.
#[derive(FromArgs, Debug, Default)]
#[argh(
    subcommand,
    name = "export",
    note = "Each event is printed exactly as clients got it; seqs lost in a crash are \
            one line {{\"type\":\"gap\",\"from\":A,\"to\":B}} in their place; events \
            removed by retention are absent. Memory stays bounded: the journal is read a \
            page at a time."
)]
pub struct JournalExportArgs {
    /// print the records after this seq (default 0: all of them)
    #[argh(option, default = "0")]
    pub since: u64,

    /// the daemon's TOML config file, for its data dir, journal dir and
    /// listen address
    #[argh(option)]
    pub config: Option<PathBuf>,

    /// the daemon's data dir (default: the config's, else $STATE_DIRECTORY,
    /// $XDG_STATE_HOME/tablo or ~/.local/state/tablo)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
}

/// Parses `tablo journal tail -n`.
fn parse_tail(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n <= MAX_TAIL => Ok(n),
        Ok(_) => Err(format!(
            "-n {value}: at most {MAX_TAIL}; for more, use `tablo journal export --since SEQ`"
        )),
        Err(_) => Err(format!("-n {value}: expected a whole number of records")),
    }
}

impl RunArgs {
    /// The command-line overrides; an error names the bad `--feed`.
    pub fn overrides(&self) -> Result<Overrides, String> {
        let mut taken = Vec::new();
        let feeds = self
            .feed
            .iter()
            .map(|arg| config::parse_feed_flag(arg, &mut taken))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Overrides {
            listen: self.listen,
            feeds,
            display: self.display,
            data_dir: self.data_dir.clone(),
            demo: self.demo,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_counts() {
        assert_eq!(parse_tail("0"), Ok(0));
        assert_eq!(parse_tail("10000"), Ok(MAX_TAIL));
        assert!(parse_tail("10001").unwrap_err().contains("export --since"));
        assert!(parse_tail("-1").is_err());
        assert!(parse_tail("ten").is_err());
    }

    #[test]
    fn display_takes_the_config_s_mode_words() {
        use argh::FromArgs;
        let run = |mode: &str| match Args::from_args(&["tablo"], &["run", "--display", mode]) {
            Ok(Args {
                command: Some(Command::Run(run)),
                ..
            }) => Ok(run.display),
            Ok(_) => panic!("not a run"),
            Err(e) => Err(e.output),
        };
        assert_eq!(run("png"), Ok(Some(DisplayMode::Png)));
        assert_eq!(run("none"), Ok(Some(DisplayMode::None)));
        let err = run("windw").unwrap_err();
        assert!(
            err.contains("use one of auto, window, fbdev, png, none"),
            "{err}"
        );
    }
}
