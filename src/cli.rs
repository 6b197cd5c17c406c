//! The command line (SPEC §1), parsed with argh. The doc comments here are
//! the `--help` text.
//!
//! This module only describes and converts arguments; `main` decides exit
//! codes and `app` runs things.

use std::net::SocketAddr;
use std::path::PathBuf;

use argh::FromArgs;

use crate::config::{self, DisplayMode, Overrides};

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
    /// tablo, json, demo; repeatable; replaces the config's [[feed]] list
    #[argh(option)]
    pub feed: Vec<String>,

    /// where to draw the board: auto, window, fbdev, png or none
    #[argh(option, from_str_fn(parse_display))]
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

/// Parses `--display`.
pub fn parse_display(value: &str) -> Result<DisplayMode, String> {
    Ok(match value {
        "auto" => DisplayMode::Auto,
        "window" => DisplayMode::Window,
        "fbdev" => DisplayMode::Fbdev,
        "png" => DisplayMode::Png,
        "none" => DisplayMode::None,
        other => {
            return Err(format!(
                "unknown display mode \"{other}\"; one of auto, window, fbdev, png, none"
            ));
        }
    })
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
