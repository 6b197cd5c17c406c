//! `tablo journal`: the durable journal's records and counters as JSON
//! lines on stdout, whether the daemon runs or not.
//!
//! A stopped daemon's journal is read from its files through `journal::export`;
//! nothing in it changes, except that the seqs lost in a crash are recorded as
//! a gap, as the daemon would at its next start (see docs/durability.md §14). A
//! running daemon holds the journal's lock, so it is asked instead, over HTTP
//! (`cli::http`), at its `/journal/stats` and `/journal/export` endpoints
//! (docs/protocol.md §19.3, §19.4). This module never writes to the journal and
//! never starts a daemon.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::app::LISTEN_FILE;
use crate::cli::http::{FetchError, fetch};
use crate::cli::{JournalArgs, JournalCommand};
use crate::config::{Config, ConfigError, Overrides};
use crate::journal::export::{self, MAX_LIMIT, WriteError};
use crate::journal::store::{Opened, Store, StoreError};

/// sled's cache for `tablo journal`: it reads each page once, in order, so
/// a small cache does as well as a big one.
const JOURNAL_CLI_CACHE_BYTES: u64 = 1024 * 1024;

/// The file sled keeps its data in (and takes its lock on), inside the
/// journal directory: without it there is no journal to read, and opening
/// would create one.
pub(crate) const JOURNAL_DATA_FILE: &str = "db";

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

/// [`run_journal`] before its closed-pipe rule: from the files when they
/// can be read, else from the running daemon.
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

#[cfg(test)]
mod tests {
    use super::*;

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
