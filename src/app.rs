//! Wiring: starts the journal, the board, the hub, the feeds and the server
//! for a [`Config`] on a given listener, and shuts them down in order when
//! a given shutdown future completes (SIGTERM or SIGINT in the daemon).
//!
//! Shutdown is data flow: the server stops accepting, the feed tasks are
//! dropped (which cancels them), the hub closes every client with 1001, and
//! the server gives connections a moment to send that close frame. Every
//! task is owned here; nothing is detached.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::{Duration, Instant};

use async_signal::{Signal, Signals};
use futures_util::{FutureExt, StreamExt};
use smol::channel::{Receiver, Sender, bounded};
use smol::future::or;
use smol::net::TcpListener;
use smol::{Task, Timer};

use crate::board::feed::BoardFeed;
use crate::clock;
use crate::config::{Config, DisplayMode, FeedFormat};
use crate::display::{self, Choice, DisplayError, Environment};
use crate::event::{Event, Position};
use crate::feed;
use crate::forward::Rule;
use crate::hub::fanout::Fanout;
use crate::hub::{Hub, HubMsg, INBOX, Start};
use crate::journal::forward::Outboxes;
use crate::journal::keys::{self, RecentKeys};
use crate::journal::space;
use crate::journal::store::{Retention, Store, StoreError};
use crate::journal::writer::{Journal, WriterConfig};
use crate::renderer::{self, Renderer};
use crate::rules::{self, Rules};
use crate::server::{self, Shared};
use crate::service::Service;
use crate::web::Site;

/// Why the daemon could not run.
#[derive(Debug)]
pub enum RunError {
    /// The listen address could not be bound.
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Signal handlers could not be installed.
    Signals(io::Error),
    /// The journal could not be opened (exit 74).
    Journal(StoreError),
    /// The board's screen could not be opened.
    Display(DisplayError),
    /// The hub task stopped on its own (a bug): exit non-zero so the
    /// service manager restarts the daemon.
    HubDied,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Listen { addr, source } => {
                let hint = match source.kind() {
                    io::ErrorKind::AddrInUse => {
                        "another process is using it; stop it or choose another port with --listen or [server] listen"
                    }
                    io::ErrorKind::PermissionDenied => {
                        "ports below 1024 need privileges; use a port above 1024"
                    }
                    io::ErrorKind::AddrNotAvailable => {
                        "no local interface has that address; use 127.0.0.1 or 0.0.0.0"
                    }
                    _ => "check [server] listen",
                };
                write!(f, "cannot listen on {addr}: {source}; {hint}")
            }
            RunError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            RunError::Journal(e) => write!(f, "cannot open the journal: {e}"),
            RunError::Display(e) => write!(f, "{e}"),
            RunError::HubDied => write!(
                f,
                "the relay hub stopped unexpectedly (see the panic above); exiting so the service manager restarts tablo"
            ),
        }
    }
}

impl std::error::Error for RunError {}

/// Why the main loop stopped.
enum Stop {
    /// The caller's shutdown future completed (SIGTERM or SIGINT for the
    /// daemon).
    Shutdown,
    /// The hub task ended by itself.
    HubDied,
    /// The board's window was closed.
    WindowClosed,
}

/// Binds `addr` for [`run`]. The error says what to do about a port in use,
/// a privileged port or an address no interface has.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, RunError> {
    std::net::TcpListener::bind(addr)
        .and_then(TcpListener::try_from)
        .map_err(|source| RunError::Listen { addr, source })
}

/// SIGTERM or SIGINT as a shutdown future for [`run`], which logs which
/// one came. The handlers are installed when this is called, so a signal
/// that arrives during start-up is a clean stop, not a kill.
pub fn stop_signals() -> Result<impl Future<Output = ()>, RunError> {
    let mut signals = Signals::new([Signal::Term, Signal::Int]).map_err(RunError::Signals)?;
    Ok(async move {
        let name = match signals.next().await {
            Some(Ok(Signal::Int)) => "SIGINT",
            _ => "SIGTERM",
        };
        log::info!("received {name}; shutting down");
    })
}

/// Runs the daemon on `listener` until `shutdown` completes (or the board's
/// window is closed), then shuts down in order. Opens the journal and the
/// board, starts the hub, the feeds and the server, and tells systemd when
/// it is ready. Returns after a clean shutdown.
///
/// The binary binds the listener and passes [`stop_signals`]; tests and
/// benches pass their own listener (port 0) and shutdown future.
///
/// Every task runs on this thread, on the executor of `crate::exec::run`.
/// The binary blocks on it with `smol::future::block_on`, so that no thread
/// but async-io's own waits in epoll (the `exec` module docs say why).
pub async fn run(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    config: Config,
) -> Result<(), RunError> {
    crate::exec::run(run_here(listener, shutdown, config)).await
}

/// [`run`], inside its executor.
async fn run_here(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    config: Config,
) -> Result<(), RunError> {
    raise_open_file_limit();
    let mut service = Service::from_env();
    let (journal, start, restored, positions, keys, rule_state, outboxes) = open_journal(&config)?;
    // The board first, so the last-known prices are on the screen while
    // the rest starts.
    let local = listener.local_addr().unwrap_or(config.server.listen);
    let board = open_board(&config, &restored, local)?;
    log::info!("listening on {local} (ws://{local}/ws, http://{local}/healthz)");
    write_listen_file(&config.data_dir, local);
    log_feeds(&config);

    let (hub_tx, hub_rx) = bounded(INBOX);
    let epoch = start.epoch.clone();
    let mut hub = Hub::new(&config.feeds, start, Instant::now());
    hub.attach_fanout(Fanout::new(config.server.threads));
    let rules = start_rules(&config, &rule_state, &restored);
    hub.restore(restored, Instant::now(), clock::wall_ms());
    hub.attach_rules(rules);
    hub.restore_keys(keys);
    let hub_heart = hub.heartbeat();
    let (renderer, closed) = match board {
        Some((renderer, feed)) => {
            hub.attach_board(feed);
            let closed = renderer.closed();
            (Some(renderer), Some(closed))
        }
        None => (None, None),
    };
    // The clock's state before any client can ask (and then every
    // CHECK_INTERVAL, below); after the board is attached, so a first run's
    // board hears it too.
    let clock_state = HubMsg::Clock {
        state: clock::sync::check(),
    };
    hub.handle(clock_state, Instant::now(), clock::wall_ms());
    let mut hub = spawn_hub(hub, hub_rx);
    let clock_watch = crate::exec::spawn(watch_clock(hub_tx.clone(), clock::sync::check));
    let feeds = spawn_feeds(&config, &hub_tx, &positions, outboxes.as_ref());
    let (stop_tx, stop_rx) = bounded::<()>(1);
    let shared = Shared::new(
        config.server.clone(),
        hub_tx.clone(),
        Some(journal.handle().tx),
    );
    shared.set_journal_info(journal.handle().status, epoch);
    shared.set_site(Site::new(&config.board));
    let server: Task<()> = crate::exec::spawn(server::serve(listener, shared, stop_rx));
    // Bound and journal open: systemd may send traffic our way. Every
    // loop that must not get stuck is in the watchdog's list, the
    // renderer's too when the board runs.
    service.ready(&format!("listening on {local}; journal open"));
    let mut hearts = vec![hub_heart, journal.heartbeat()];
    hearts.extend(renderer.as_ref().map(Renderer::heartbeat));
    service.start_watchdog(hearts);
    let status = service.status_task(hub_tx.clone(), local);

    let window_closed = async {
        match &closed {
            Some(closed) => {
                let _ = closed.recv().await;
                Stop::WindowClosed
            }
            None => std::future::pending().await,
        }
    };
    let stopped = or(
        or(
            async {
                shutdown.await;
                Stop::Shutdown
            },
            window_closed,
        ),
        async {
            (&mut hub).await;
            Stop::HubDied
        },
    )
    .await;
    service.stopping();
    drop(status);
    let result = match stopped {
        Stop::Shutdown | Stop::WindowClosed => Ok(()),
        Stop::HubDied => Err(RunError::HubDied),
    };
    drop(stop_tx);
    drop(feeds);
    drop(clock_watch);
    let _ = hub_tx.send(HubMsg::Shutdown).await;
    drop(hub_tx);
    if result.is_ok() {
        hub.await;
    }
    server.await;
    // The hub has dropped its end of the board's queue by now.
    if let Some(renderer) = renderer {
        renderer.join();
    }
    journal.close();
    log::info!("stopped");
    result
}

/// The relay alone, on `listener` until `shutdown`: the hub, the feeds and
/// the server as [`run`] wires them, but with no journal (numbering starts
/// at 1 in epoch `relay`), no board and no systemd. What
/// `benches/broadcast.rs` measures as "journal off"; the daemon itself
/// always journals. Runs on this thread like [`run`].
pub async fn run_relay(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    config: Config,
) -> Result<(), RunError> {
    crate::exec::run(run_relay_here(listener, shutdown, config)).await
}

/// [`run_relay`], inside its executor.
async fn run_relay_here(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    config: Config,
) -> Result<(), RunError> {
    let (hub_tx, hub_rx) = bounded(INBOX);
    let start = Start {
        epoch: "relay".into(),
        next_seq: 1,
        journal: None,
    };
    let mut hub = Hub::new(&config.feeds, start, Instant::now());
    hub.attach_fanout(Fanout::new(config.server.threads));
    hub.attach_rules(start_rules(&config, &[], &[]));
    let mut hub = spawn_hub(hub, hub_rx);
    if !config.forwards.is_empty() {
        log::warn!("the relay alone has no journal, so [[forward]] rules are not run");
    }
    let feeds = spawn_feeds(&config, &hub_tx, &[], None);
    let (stop_tx, stop_rx) = bounded::<()>(1);
    let shared = Shared::new(config.server.clone(), hub_tx.clone(), None);
    let server: Task<()> = crate::exec::spawn(server::serve(listener, shared, stop_rx));
    let died = or(
        async {
            shutdown.await;
            false
        },
        async {
            (&mut hub).await;
            true
        },
    )
    .await;
    drop(stop_tx);
    drop(feeds);
    let _ = hub_tx.send(HubMsg::Shutdown).await;
    drop(hub_tx);
    if !died {
        hub.await;
    }
    server.await;
    if died { Err(RunError::HubDied) } else { Ok(()) }
}

/// Tells the hub the wall clock's state (`check`: the probe, an edge a test
/// can replace) every [`clock::sync::CHECK_INTERVAL`]; the hub turns each
/// change into a clock `status` event. Ends when the hub is gone.
async fn watch_clock(hub: Sender<HubMsg>, check: fn() -> clock::ClockState) {
    loop {
        Timer::after(clock::sync::CHECK_INTERVAL).await;
        if hub.send(HubMsg::Clock { state: check() }).await.is_err() {
            return;
        }
    }
}

/// Runs the hub in its own task. A panic in the hub is caught there, so
/// shutdown still runs and the exit code says what happened: the task's
/// result is false after a panic.
fn spawn_hub(hub: Hub, inbox: Receiver<HubMsg>) -> Task<bool> {
    let hub_run = hub.run(inbox);
    crate::exec::spawn(async move { AssertUnwindSafe(hub_run).catch_unwind().await.is_ok() })
}

/// The `[[alert]]` rules, with the state saved beside the journal
/// (`saved`: meta key and value) and the previous prices from the
/// last-known events (`restored`), so a restart fires nothing whose
/// condition merely still holds (docs/durability.md §18).
fn start_rules(config: &Config, saved: &[(String, Vec<u8>)], restored: &[Event]) -> Rules {
    let (now, now_ms) = (Instant::now(), clock::wall_ms());
    let mut rules = Rules::new(config, now);
    let stored = |key: &str| saved.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    rules.load(stored, now, now_ms);
    rules.restore(restored, now, now_ms);
    if !rules.is_empty() {
        log::info!("{} alert rule(s) watching", config.alerts.len());
    }
    rules
}

/// One task per configured feed; a chained feed resumes from its saved
/// position (`positions`, in config order, when there are any); a broker
/// feed also sends what `[[forward]]` queued for it in `outboxes`.
fn spawn_feeds(
    config: &Config,
    hub: &Sender<HubMsg>,
    positions: &[Option<Position>],
    outboxes: Option<&Outboxes>,
) -> Vec<Task<()>> {
    config
        .feeds
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if f.format == FeedFormat::Mqtt {
                let outbox = outboxes.and_then(|o| o.for_feed(&f.name));
                return crate::exec::spawn(feed::task::mqtt::run(
                    i,
                    f.clone(),
                    hub.clone(),
                    outbox,
                ));
            }
            let resume = positions.get(i).cloned().flatten();
            crate::exec::spawn(feed::task::run(i, f.clone(), hub.clone(), resume))
        })
        .collect()
}

/// One log line per feed: its name, format and address.
fn log_feeds(config: &Config) {
    for feed in &config.feeds {
        log::info!(
            "feed {}: {} {}",
            feed.name,
            feed.format.name(),
            if feed.url.is_empty() {
                "(built in)"
            } else {
                &feed.url
            }
        );
    }
}

/// Opens the journal (quarantining a corrupt one), reads the last-known
/// state and starts the writer. Returns the writer, where numbering starts,
/// and the events to restore, in seq order.
#[allow(
    clippy::type_complexity,
    reason = "the six things start-up needs from the journal"
)]
/// What [`open_journal`] hands the hub: where numbering starts, the
/// last-known events, the chained feeds' positions, the publish keys, the
/// alert rules' saved state and the forward outboxes.
type Opening = (
    Journal,
    Start,
    Vec<Event>,
    Vec<Option<Position>>,
    RecentKeys,
    Vec<(String, Vec<u8>)>,
    Option<Outboxes>,
);

fn open_journal(config: &Config) -> Result<Opening, RunError> {
    let dir = &config.journal.dir;
    let started = Instant::now();
    let mut opened = Store::open(dir, config.journal.cache_bytes).map_err(RunError::Journal)?;
    if let Some(moved) = &opened.quarantined {
        log::error!(
            "the journal in {} could not be read and was moved to {}; started a new one (clients will get a reset)",
            dir.display(),
            moved.display()
        );
    }
    if let Some((from, to)) = opened.lost {
        log::warn!(
            "the last stop was not clean: seqs {from}..={to} were never made durable and are \
             recorded as a gap; at most {} of them were handed out to clients",
            opened.lost_handed_out_max
        );
    }
    let snapshot = opened.store.snapshot().map_err(RunError::Journal)?;
    let restored: Vec<Event> = snapshot
        .iter()
        .filter_map(|(_, _, json)| Event::from_json(json))
        .collect();
    let positions: Vec<Option<Position>> = config
        .feeds
        .iter()
        .map(|f| {
            if f.format != FeedFormat::Tablo {
                return None;
            }
            let saved = opened.store.get_meta(&Position::key(&f.name)).ok()??;
            Position::decode(&saved)
        })
        .collect();
    let rule_state: Vec<(String, Vec<u8>)> = config
        .alerts
        .iter()
        .filter_map(|rule| {
            let key = rules::state_key(&rule.name);
            let value = opened.store.get_meta(&key).ok()??;
            Some((key, value))
        })
        .collect();
    let keys = opened
        .store
        .with_tree(keys::TREE, keys::load)
        .map(RecentKeys::from_loaded)
        .map_err(RunError::Journal)?;
    let start = Start {
        epoch: opened.epoch.clone(),
        next_seq: opened.next_seq,
        journal: None,
    };
    log::info!(
        "journal {} opened in {} ms: epoch {}, next seq {}, {} last-known values",
        dir.display(),
        started.elapsed().as_millis(),
        start.epoch,
        start.next_seq,
        restored.len()
    );
    warn_if_the_disk_is_short(config, opened.store.stats().disk_bytes);
    let outboxes = if config.forwards.is_empty() {
        None
    } else {
        let rules = config
            .forwards
            .iter()
            .map(|r| Rule::new(r, &config.site))
            .collect();
        Some(Outboxes::open(&opened.store, rules).map_err(RunError::Journal)?)
    };
    let writer = WriterConfig {
        dir: dir.clone(),
        cache_bytes: config.journal.cache_bytes,
        flush_interval: Duration::from_millis(config.journal.flush_interval_ms),
        retention: Retention {
            max_events: config.journal.max_events,
            max_bytes: config.journal.max_bytes,
            max_age_ms: config.journal.max_age.map(|d| d.as_millis() as u64),
        },
        forward: outboxes.clone(),
        clock: clock::sync::check(),
    };
    let journal = Journal::start(
        opened.store,
        start.epoch.clone(),
        start.next_seq - 1,
        writer,
    )
    .map_err(RunError::Journal)?;
    let start = Start {
        journal: Some(journal.handle()),
        ..start
    };
    Ok((
        journal, start, restored, positions, keys, rule_state, outboxes,
    ))
}

/// Logs a warning when the journal's filesystem has less free space than
/// the journal may still grow by under `[journal] max_bytes`
/// (`journal::space`). Only a warning: the daemon runs either way, and a disk
/// that does fill puts the journal in degraded mode (docs/durability.md §13).
/// `used` is what the journal already takes, as the store measured it at
/// open.
fn warn_if_the_disk_is_short(config: &Config, used: u64) {
    let Some(max_bytes) = config.journal.max_bytes else {
        return;
    };
    let dir = &config.journal.dir;
    let free = match free_bytes(dir) {
        Ok(free) => free,
        Err(e) => {
            log::debug!("cannot read the free space under {}: {e}", dir.display());
            return;
        }
    };
    if let Some(warning) = space::low_space_warning(dir, max_bytes, free, used) {
        log::warn!("{warning}");
    }
}

/// The bytes an unprivileged process may still write on the filesystem that
/// holds `dir` (`statvfs`: available blocks × fragment size).
fn free_bytes(dir: &Path) -> io::Result<u64> {
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a zeroed statvfs is a valid value of a plain C struct, which
    // statvfs(3) only writes; `path` is a NUL-terminated string that lives
    // across the call.
    let (rc, stat) = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(path.as_ptr(), &mut stat), stat)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(
        clippy::unnecessary_cast,
        reason = "the field types differ between 32- and 64-bit targets"
    )]
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// Picks and opens the board's screen and starts the renderer on the
/// last-known state. With `auto`, a screen that will not open gives way to
/// the next choice (the framebuffer when writable, then a PNG), with a
/// warning; an explicit mode that will not open is an error.
fn open_board(
    config: &Config,
    restored: &[Event],
    listen: SocketAddr,
) -> Result<Option<(Renderer, BoardFeed)>, RunError> {
    let env = Environment::current(&config.display);
    let (choice, why) = display::choose(&config.display, &env);
    log::info!("board: {} ({why})", choice.name());
    let first = match renderer::start(config, &choice, restored, listen) {
        Ok(board) => return Ok(board),
        Err(e) if config.display.mode != DisplayMode::Auto => return Err(RunError::Display(e)),
        Err(e) => e,
    };
    let mut fallbacks = Vec::new();
    if env.fb_writable && !matches!(choice, Choice::Fbdev(_)) {
        fallbacks.push(Choice::Fbdev(config.display.device.clone()));
    }
    fallbacks.push(Choice::Png(config.display.png_path.clone()));
    let mut last = first;
    for next in fallbacks {
        log::warn!("{last}; trying {} instead", next.name());
        match renderer::start(config, &next, restored, listen) {
            Ok(board) => return Ok(board),
            Err(e) => last = e,
        }
    }
    Err(RunError::Display(last))
}

/// Name of the file in the data dir that holds the daemon's bound address,
/// so `tablo journal` can ask the running daemon when it holds the journal.
pub const LISTEN_FILE: &str = "tablo.listen";

/// Writes [`LISTEN_FILE`] (once, at start: no wear). A failure only costs
/// `tablo journal` its way to the running daemon, so it is logged, not fatal.
fn write_listen_file(data_dir: &std::path::Path, addr: SocketAddr) {
    let path = data_dir.join(LISTEN_FILE);
    let written =
        std::fs::create_dir_all(data_dir).and_then(|()| std::fs::write(&path, format!("{addr}\n")));
    if let Err(e) = written {
        log::warn!(
            "cannot write {}: {e}; `tablo journal` will not find this daemon",
            path.display()
        );
    }
}

/// Raises the soft open-file limit to the hard limit: each client is a file
/// descriptor, and the usual soft limit (1024) is below `max_clients` plus
/// feeds and files.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            let old = limit.rlim_cur;
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                log::debug!("open-file limit raised from {old} to {}", limit.rlim_cur);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_bytes_reads_the_filesystem_of_a_dir_and_fails_for_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        let missing = dir.path().join("nope");
        let err = free_bytes(&missing).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }
}
