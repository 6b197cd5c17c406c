//! The command line (SPEC §1), parsed with argh. The doc comments here are
//! the `--help` text.
//!
//! This module describes and converts arguments; `main` decides exit codes
//! and `app` runs the daemon. `tablo journal` is a small client and runs
//! here ([`run_journal`]): it reads the journal's files through
//! `journal::export`, or, when a running daemon holds the journal's lock,
//! asks that daemon's `/journal/*` endpoints over plain HTTP.

use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use argh::FromArgs;

use crate::app::LISTEN_FILE;
use crate::config::{self, Config, ConfigError, DisplayMode, Overrides};
use crate::journal::export::{self, MAX_LIMIT, MAX_TAIL, WriteError};
use crate::journal::store::{Opened, Store, StoreError};

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

    /// frame size as WIDTHxHEIGHT, e.g. 1920x1080 (default [display] width
    /// and height, else 1920x1080)
    #[argh(option, from_str_fn(parse_frame_size))]
    pub size: Option<(u32, u32)>,

    /// draw the demo market's first state instead of the journal's
    #[argh(switch)]
    pub demo: bool,
}

/// Parses `--size WIDTHxHEIGHT`.
pub fn parse_frame_size(value: &str) -> Result<(u32, u32), String> {
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
pub fn parse_tail(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n <= MAX_TAIL => Ok(n),
        Ok(_) => Err(format!(
            "-n {value}: at most {MAX_TAIL}; for more, use `tablo journal export --since SEQ`"
        )),
        Err(_) => Err(format!("-n {value}: expected a whole number of records")),
    }
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

impl JournalCommand {
    /// `--config` and `--data-dir`, whichever subcommand carries them.
    fn location(&self) -> (Option<&Path>, Option<&Path>) {
        let (config, data_dir) = match self {
            JournalCommand::Stats(a) => (&a.config, &a.data_dir),
            JournalCommand::Tail(a) => (&a.config, &a.data_dir),
            JournalCommand::Export(a) => (&a.config, &a.data_dir),
        };
        (config.as_deref(), data_dir.as_deref())
    }
}

/// sled's cache for `tablo journal`: it reads each page once, in order, so
/// a small cache does as well as a big one.
const JOURNAL_CLI_CACHE_BYTES: u64 = 1024 * 1024;

/// The file sled keeps its data in (and takes its lock on), inside the
/// journal directory: without it there is no journal to read, and opening
/// would create one.
const JOURNAL_DATA_FILE: &str = "db";

/// How long `tablo journal` waits to connect to a running daemon.
const DAEMON_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long `tablo journal` waits for each read from a running daemon: an
/// answer comes a page at a time, and a page takes milliseconds.
const DAEMON_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A response head from the daemon longer than this is not one.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// How much of an error answer from the daemon is shown.
const MAX_ERROR_BODY: u64 = 4096;

/// Why `tablo journal` failed.
#[derive(Debug)]
pub enum JournalError {
    /// The config file is bad (exit 78).
    Config(ConfigError),
    /// There is no journal in this directory (exit 74).
    NoJournal(PathBuf),
    /// The journal's files could not be read (exit 74).
    Store(StoreError),
    /// The journal's files were unreadable: opening them moved them aside
    /// and started a new, empty journal, as `tablo run` would (exit 74).
    Quarantined {
        /// The journal directory.
        dir: PathBuf,
        /// Where the unreadable journal went.
        moved_to: PathBuf,
    },
    /// A running daemon holds the journal, and asking it failed (exit 74).
    /// The message says where it was asked and what went wrong.
    Daemon(String),
    /// Writing to stdout failed, other than a closed pipe (exit 1).
    Output(io::Error),
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Config(e) => write!(f, "{e}"),
            JournalError::NoJournal(dir) => write!(
                f,
                "there is no journal at {}: point --data-dir (or --config) at the data dir \
                 of a tablo that has run, or start `tablo run` to create one",
                dir.display()
            ),
            JournalError::Store(e) => write!(f, "{e}"),
            JournalError::Quarantined { dir, moved_to } => write!(
                f,
                "the journal at {} could not be read; it was moved to {} and a new, empty \
                 journal was started in its place, as `tablo run` would have done",
                dir.display(),
                moved_to.display()
            ),
            JournalError::Daemon(message) => write!(f, "{message}"),
            JournalError::Output(e) => write!(f, "cannot write the output: {e}"),
        }
    }
}

impl std::error::Error for JournalError {}

/// Runs `tablo journal`, writing its JSON lines to `out` (and flushing it).
/// A closed `out` (a reader such as `head` that has seen enough) ends it
/// quietly with `Ok`.
pub fn run_journal(args: &JournalArgs, out: &mut impl Write) -> Result<(), JournalError> {
    match journal_to(&args.command, out) {
        Err(JournalError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn journal_to(command: &JournalCommand, out: &mut impl Write) -> Result<(), JournalError> {
    let (config_file, data_dir) = command.location();
    let overrides = Overrides {
        data_dir: data_dir.map(Path::to_path_buf),
        ..Overrides::default()
    };
    let config = Config::load(config_file, &overrides).map_err(JournalError::Config)?;
    let dir = &config.journal.dir;
    let why_not_files = match open_journal(dir)? {
        Ok(opened) => {
            if let Some(moved_to) = opened.quarantined {
                return Err(JournalError::Quarantined {
                    dir: dir.clone(),
                    moved_to,
                });
            }
            // Read only. Dropping the store closes sled without a commit:
            // nothing is written that the open did not already write.
            return from_files(command, &opened, out);
        }
        Err(why_not) => why_not,
    };
    let (addr, addr_from) = daemon_addr(&config);
    let failed = |problem: String| {
        JournalError::Daemon(format!(
            "the journal at {} {why_not_files}, and asking the running tablo at {addr} \
             (from {addr_from}) failed: {problem}; check that the daemon runs and listens \
             there, or pass the --config it runs with",
            dir.display()
        ))
    };
    from_daemon(command, addr, out).map_err(|e| match e {
        FetchError::Daemon(problem) => failed(problem),
        FetchError::Output(e) => JournalError::Output(e),
    })
}

/// Opens the journal in `dir` for reading. `Ok(Err(why))` when a running
/// daemon should be asked instead: it holds the lock, or the files are not
/// readable by this user (they belong to the service's).
fn open_journal(dir: &Path) -> Result<Result<Opened, String>, JournalError> {
    let not_readable = |e: &io::Error| format!("cannot be read by this user ({e})");
    match fs::metadata(dir.join(JOURNAL_DATA_FILE)) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(JournalError::NoJournal(dir.to_path_buf()));
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Ok(Err(not_readable(&e)));
        }
        Err(source) => {
            return Err(JournalError::Store(StoreError::Io {
                path: dir.to_path_buf(),
                source,
            }));
        }
    }
    match Store::open(dir, JOURNAL_CLI_CACHE_BYTES) {
        Ok(opened) => Ok(Ok(opened)),
        Err(StoreError::Locked(_)) => Ok(Err("is locked by a running tablo".into())),
        Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::PermissionDenied => {
            Ok(Err(not_readable(&source)))
        }
        Err(e) => Err(JournalError::Store(e)),
    }
}

/// Answers `command` from an opened journal.
fn from_files(
    command: &JournalCommand,
    opened: &Opened,
    out: &mut impl Write,
) -> Result<(), JournalError> {
    let mut lines = Vec::new();
    match command {
        JournalCommand::Stats(_) => {
            lines = export::stats_json(opened).to_string().into_bytes();
            lines.push(b'\n');
        }
        JournalCommand::Tail(tail) => {
            let records = opened.store.tail(tail.n).map_err(JournalError::Store)?;
            export::push_tail(&records, &mut lines);
        }
        JournalCommand::Export(export) => {
            return export::write_export(&opened.store, export.since, out).map_err(|e| match e {
                WriteError::Store(e) => JournalError::Store(e),
                WriteError::Output(e) => JournalError::Output(e),
            });
        }
    }
    out.write_all(&lines)
        .and_then(|()| out.flush())
        .map_err(JournalError::Output)
}

/// Where the running daemon listens, and where that was found: the
/// address it wrote to [`LISTEN_FILE`] in the data dir, else the config's
/// `[server] listen` (by default `127.0.0.1:7070`). A wildcard address is
/// reached on the loopback.
fn daemon_addr(config: &Config) -> (SocketAddr, String) {
    let file = config.data_dir.join(LISTEN_FILE);
    let (mut addr, from) = match fs::read_to_string(&file)
        .ok()
        .and_then(|text| text.trim().parse::<SocketAddr>().ok())
    {
        Some(addr) => (addr, file.display().to_string()),
        None if config.file.is_some() => (config.server.listen, "[server] listen".to_string()),
        None => (
            config.server.listen,
            "the default listen address".to_string(),
        ),
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    (addr, from)
}

/// Why asking the daemon failed.
enum FetchError {
    /// The daemon could not be reached or answered with an error.
    Daemon(String),
    /// Writing the answer out failed.
    Output(io::Error),
}

/// Answers `command` by asking the daemon at `addr`.
fn from_daemon(
    command: &JournalCommand,
    addr: SocketAddr,
    out: &mut impl Write,
) -> Result<(), FetchError> {
    let mut tally = Tally::new(out);
    match command {
        JournalCommand::Stats(_) => fetch(addr, "/journal/stats", &mut tally)?,
        JournalCommand::Tail(tail) => fetch(
            addr,
            &format!("/journal/export?tail={}", tail.n),
            &mut tally,
        )?,
        JournalCommand::Export(export) => {
            // One answer holds at most MAX_LIMIT records; a full one means
            // there may be more after its last record.
            let mut since = export.since;
            loop {
                let before = tally.lines;
                let path = format!("/journal/export?since={since}&limit={MAX_LIMIT}");
                fetch(addr, &path, &mut tally)?;
                if tally.lines - before < MAX_LIMIT as u64 {
                    break;
                }
                since = end_of_line(&tally.last).ok_or_else(|| {
                    FetchError::Daemon(format!(
                        "its last record has no seq: {}",
                        String::from_utf8_lossy(&tally.last)
                    ))
                })?;
            }
        }
    }
    tally.flush().map_err(FetchError::Output)
}

/// The last seq a JSON line covers: a gap's `to`, else the event's `seq`.
fn end_of_line(line: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    if value["type"] == "gap" {
        value["to"].as_u64()
    } else {
        value["seq"].as_u64()
    }
}

/// Passes bytes through to the output, counting lines and keeping the last
/// complete one.
struct Tally<'a, W> {
    out: &'a mut W,
    lines: u64,
    current: Vec<u8>,
    last: Vec<u8>,
}

impl<'a, W: Write> Tally<'a, W> {
    fn new(out: &'a mut W) -> Tally<'a, W> {
        Tally {
            out,
            lines: 0,
            current: Vec::new(),
            last: Vec::new(),
        }
    }
}

impl<W: Write> Write for Tally<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        let mut rest = &buf[..n];
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.current.extend_from_slice(&rest[..end]);
            std::mem::swap(&mut self.current, &mut self.last);
            self.current.clear();
            self.lines += 1;
            rest = &rest[end + 1..];
        }
        self.current.extend_from_slice(rest);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// `GET path` from the daemon at `addr` (HTTP/1.1, `Connection: close`):
/// a 200 answer's body is copied to `out` as it arrives; any other answer
/// is an error that quotes it.
fn fetch(addr: SocketAddr, path: &str, out: &mut impl Write) -> Result<(), FetchError> {
    let failed = |what: &str, e: io::Error| FetchError::Daemon(format!("{what}: {e}"));
    let stream = TcpStream::connect_timeout(&addr, DAEMON_CONNECT_TIMEOUT)
        .map_err(|e| failed("cannot connect", e))?;
    stream
        .set_read_timeout(Some(DAEMON_IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(DAEMON_IO_TIMEOUT)))
        .map_err(|e| failed("cannot set a timeout", e))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: tablo/{}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    (&stream)
        .write_all(request.as_bytes())
        .map_err(|e| failed("cannot send the request", e))?;
    let mut reader = BufReader::new(stream);
    let head = read_response_head(&mut reader).map_err(|e| failed("no answer", e))?;
    if head.status != 200 {
        let mut body = Vec::new();
        let limit = head
            .content_length
            .unwrap_or(MAX_ERROR_BODY)
            .min(MAX_ERROR_BODY);
        let _ = reader.by_ref().take(limit).read_to_end(&mut body);
        let body = String::from_utf8_lossy(&body);
        return Err(FetchError::Daemon(format!(
            "GET {path} answered {}: {}",
            head.status,
            body.trim()
        )));
    }
    let broke_off = |e: io::Error| failed("the answer broke off", e);
    if head.chunked {
        loop {
            let mut size_line = String::new();
            read_line_bounded(&mut reader, &mut size_line).map_err(broke_off)?;
            let size_text = size_line.trim().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| FetchError::Daemon(format!("a malformed chunk size {size_line:?}")))?;
            if size == 0 {
                break;
            }
            copy_exactly(&mut reader, size, out)?;
            let mut crlf = String::new();
            read_line_bounded(&mut reader, &mut crlf).map_err(broke_off)?;
        }
        Ok(())
    } else if let Some(len) = head.content_length {
        copy_exactly(&mut reader, len, out)
    } else {
        copy_exactly(&mut reader, u64::MAX, out)
    }
}

/// What matters of a response head.
struct ResponseHead {
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
}

fn read_response_head(reader: &mut impl BufRead) -> io::Result<ResponseHead> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_RESPONSE_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the response head is too long",
            ));
        }
        let before = head.len();
        reader
            .by_ref()
            .take(MAX_RESPONSE_HEAD as u64)
            .read_until(b'\n', &mut head)?;
        if head.len() == before {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let not_http = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    match response.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(not_http("a cut-off HTTP head".into())),
        Err(e) => return Err(not_http(format!("not an HTTP answer ({e})"))),
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    Ok(ResponseHead {
        status: response.code.unwrap_or(0),
        content_length: header("content-length").and_then(|v| v.parse().ok()),
        chunked: header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")),
    })
}

/// Reads one line (a chunk-size line or the CRLF after a chunk); a line
/// that does not end before EOF or within a few KiB is an error.
fn read_line_bounded(reader: &mut impl BufRead, line: &mut String) -> io::Result<()> {
    reader.by_ref().take(1024).read_line(line)?;
    if line.ends_with('\n') {
        Ok(())
    } else {
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}

/// Copies `len` bytes (until EOF if `len` is `u64::MAX`) from the daemon to
/// `out`, telling a failed read from a failed write.
fn copy_exactly(
    reader: &mut impl BufRead,
    len: u64,
    out: &mut impl Write,
) -> Result<(), FetchError> {
    let mut left = len;
    while left > 0 {
        let buf = reader
            .fill_buf()
            .map_err(|e| FetchError::Daemon(format!("the answer broke off: {e}")))?;
        if buf.is_empty() {
            if len == u64::MAX {
                return Ok(());
            }
            return Err(FetchError::Daemon(format!(
                "the answer broke off {left} bytes before its end"
            )));
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        out.write_all(&buf[..n]).map_err(FetchError::Output)?;
        reader.consume(n);
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

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
    fn a_line_ends_at_its_seq_or_its_gap_end() {
        assert_eq!(end_of_line(br#"{"type":"tick","seq":42}"#), Some(42));
        assert_eq!(
            end_of_line(br#"{"type":"gap","from":43,"to":99}"#),
            Some(99)
        );
        assert_eq!(end_of_line(b"{}"), None);
        assert_eq!(end_of_line(b"not json"), None);
    }

    #[test]
    fn tally_counts_lines_across_writes() {
        let mut out = Vec::new();
        let mut tally = Tally::new(&mut out);
        tally.write_all(b"{\"seq\":1}\n{\"se").unwrap();
        tally.write_all(b"q\":2}\n").unwrap();
        assert_eq!(
            (tally.lines, tally.last.as_slice()),
            (2, &b"{\"seq\":2}"[..])
        );
        tally.write_all(b"\n").unwrap();
        assert_eq!((tally.lines, tally.last.as_slice()), (3, &b""[..]));
        assert_eq!(out, b"{\"seq\":1}\n{\"seq\":2}\n\n");
    }

    /// Serves `answer` once on a port of its own and returns the port's
    /// address and the request it got.
    fn serve_once(answer: &'static [u8]) -> (SocketAddr, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                request.push(byte[0]);
            }
            stream.write_all(answer).unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, server)
    }

    #[track_caller]
    fn fetched(answer: &'static [u8]) -> (Result<(), String>, Vec<u8>) {
        let (addr, server) = serve_once(answer);
        let mut out = Vec::new();
        let result = fetch(addr, "/journal/export?tail=2", &mut out).map_err(|e| match e {
            FetchError::Daemon(why) => why,
            FetchError::Output(e) => panic!("output error {e}"),
        });
        let request = server.join().unwrap();
        assert!(
            request.starts_with("GET /journal/export?tail=2 HTTP/1.1\r\n")
                && request.contains("\r\nConnection: close\r\n"),
            "{request:?}"
        );
        (result, out)
    }

    #[test]
    fn fetch_reads_chunked_sized_and_unsized_bodies() {
        let (result, out) = fetched(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              6\r\n{\"a\"}\n\r\n7;x=y\r\n{\"bc\"}\n\r\n0\r\n\r\n",
        );
        assert_eq!(
            (result, out.as_slice()),
            (Ok(()), &b"{\"a\"}\n{\"bc\"}\n"[..])
        );
        let (result, out) = fetched(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}\nextra");
        assert_eq!((result, out.as_slice()), (Ok(()), &b"{}\n"[..]));
        let (result, out) = fetched(b"HTTP/1.1 200 OK\r\n\r\n{}\n{}\n");
        assert_eq!((result, out.as_slice()), (Ok(()), &b"{}\n{}\n"[..]));
    }

    #[test]
    fn fetch_reports_errors_and_cut_off_answers() {
        let (result, _) = fetched(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 25\r\n\r\ntail=\"x\" is not a number",
        );
        let err = result.unwrap_err();
        assert!(
            err.contains("answered 400: tail=\"x\" is not a number"),
            "{err}"
        );
        // A chunked body without its last chunk was cut off.
        let (result, out) =
            fetched(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{}\n\r\n");
        assert!(result.unwrap_err().contains("broke off"));
        assert_eq!(out, b"{}\n");
        let (result, _) = fetched(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}\n");
        assert!(result.unwrap_err().contains("broke off"));
        let (result, _) = fetched(b"SSH-2.0-OpenSSH\r\n\r\n");
        assert!(result.unwrap_err().contains("not an HTTP answer"));
    }

    #[test]
    fn a_wildcard_listen_address_is_reached_on_the_loopback() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = Config::defaults_in(tmp.path());
        let (addr, from) = daemon_addr(&config);
        assert_eq!(
            (addr, from.as_str()),
            (config.server.listen, "the default listen address")
        );
        config.server.listen = "0.0.0.0:9".parse().unwrap();
        assert_eq!(daemon_addr(&config).0, "127.0.0.1:9".parse().unwrap());
        config.server.listen = "[::]:9".parse().unwrap();
        assert_eq!(daemon_addr(&config).0, "[::1]:9".parse().unwrap());
        fs::write(tmp.path().join(LISTEN_FILE), "127.0.0.1:4242\n").unwrap();
        let (addr, from) = daemon_addr(&config);
        assert_eq!(addr, "127.0.0.1:4242".parse().unwrap());
        assert!(from.ends_with(LISTEN_FILE), "{from}");
    }
}
