//! The daemon's side of systemd (systemd/README.md, "What the daemon does for
//! systemd"): `READY=1` once the listener is bound and the journal open,
//! `STATUS=` lines when the feed states change, `STOPPING=1` at shutdown, and
//! the watchdog, whose pings stop when a loop is stuck (see [`watchdog`]).
//!
//! Everything here is optional: without `$NOTIFY_SOCKET` (a run by hand,
//! a test) every call is a no-op, and a malformed `$NOTIFY_SOCKET` or
//! `$WATCHDOG_USEC` gets one warning and is otherwise ignored. `app` owns
//! the [`Service`] and calls it at a handful of points; nothing else talks
//! to systemd.

pub(crate) mod notify;
pub(crate) mod watchdog;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use smol::channel::{Sender, TrySendError, bounded};
use smol::stream::StreamExt;
use smol::{Task, Timer};

use self::notify::{Notifier, one_line};
use self::watchdog::{Setting, Watchdog};
use crate::event::FeedState;
use crate::heartbeat::{Heartbeat, MAX_QUIET};
use crate::hub::HubMsg;

/// How often the hub is asked for the feed states behind `STATUS=`. The
/// line is sent only when it changes, so this bounds how late a change
/// shows in `systemctl status`, not how often systemd hears from us.
pub const STATUS_POLL: Duration = MAX_QUIET;

/// What the daemon tells systemd, and the watchdog thread once started.
#[derive(Debug)]
pub struct Service {
    notifier: Option<Arc<Notifier>>,
    watchdog: Setting,
    running: Option<Watchdog>,
}

impl Service {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` once.
    /// A value that cannot be used is logged as a warning and ignored.
    pub fn from_env() -> Service {
        let notifier = match Notifier::from_env() {
            Ok(notifier) => notifier.map(Arc::new),
            Err(e) => {
                log::warn!("{e}; not notifying systemd (no readiness, status or watchdog pings)");
                None
            }
        };
        let var = |name| std::env::var(name).ok();
        let usec = var(watchdog::WATCHDOG_USEC_VAR);
        let pid = var(watchdog::WATCHDOG_PID_VAR);
        let watchdog = match watchdog::parse(usec.as_deref(), pid.as_deref(), std::process::id()) {
            Ok(setting) => setting,
            Err(message) => {
                log::warn!("{message}");
                Setting::Off
            }
        };
        match watchdog {
            Setting::NotOurs { pid } => log::debug!(
                "the systemd watchdog is meant for process {pid}, not this one; not pinging it"
            ),
            Setting::PingEvery(_) if notifier.is_none() => log::warn!(
                "{} is set but there is no usable {}: the systemd watchdog cannot be pinged",
                watchdog::WATCHDOG_USEC_VAR,
                notify::NOTIFY_SOCKET_VAR
            ),
            _ => {}
        }
        Service {
            notifier,
            watchdog,
            running: None,
        }
    }

    /// Sends one message, logging a failure: these messages are rare and
    /// each one matters.
    fn send(&self, message: &str) {
        if let Some(notifier) = &self.notifier
            && let Err(e) = notifier.send(message)
        {
            log::warn!(
                "cannot notify systemd ({}): {e}",
                message.lines().next().unwrap_or_default()
            );
        }
    }

    /// `READY=1`: call once the listener is bound and the journal is open.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// Starts the watchdog over `hearts`, if systemd asked for one. Every
    /// loop that must not get stuck is in `hearts`; `app` lists them.
    pub fn start_watchdog(&mut self, hearts: Vec<Arc<Heartbeat>>) {
        let (Some(notifier), Setting::PingEvery(every)) = (&self.notifier, self.watchdog) else {
            return;
        };
        match Watchdog::start(notifier.clone(), hearts, every) {
            Ok(running) => self.running = Some(running),
            Err(e) => log::error!(
                "cannot start the watchdog thread: {e}; systemd will restart tablo when WatchdogSec runs out"
            ),
        }
    }

    /// A task that keeps `STATUS=` up to date with the feed states the hub
    /// reports, sending a line only when it changes; `None` when there is no
    /// one to tell. `addr` is the bound address, shown in the line.
    pub fn status_task(&self, hub: Sender<HubMsg>, addr: SocketAddr) -> Option<Task<()>> {
        let notifier = self.notifier.clone()?;
        Some(crate::exec::spawn(report_status(notifier, hub, addr)))
    }

    /// `STOPPING=1`, and no more watchdog pings: call when shutdown starts.
    pub fn stopping(&mut self) {
        self.send("STOPPING=1\nSTATUS=stopping");
        if let Some(mut running) = self.running.take() {
            running.stop();
        }
    }
}

/// Asks the hub for its health every [`STATUS_POLL`] and sends `STATUS=`
/// when the line changes. A hub too busy to take the request is skipped
/// this round; a hub that is gone ends the task.
async fn report_status(notifier: Arc<Notifier>, hub: Sender<HubMsg>, addr: SocketAddr) {
    let mut last = String::new();
    let mut failing = false;
    let mut ticks = Timer::interval(STATUS_POLL);
    loop {
        ticks.next().await;
        let (reply, replies) = bounded(1);
        match hub.try_send(HubMsg::Health { reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => continue,
            Err(TrySendError::Closed(_)) => return,
        }
        let answer = smol::future::or(async { replies.recv().await.ok() }, async {
            Timer::after(STATUS_POLL).await;
            None
        })
        .await;
        let Some(health) = answer else { continue };
        let line = status_line(addr, &health.feeds, health.journal_ok);
        if line == last {
            continue;
        }
        match notifier.send(&format!("STATUS={line}")) {
            Ok(()) => {
                last = line;
                failing = false;
            }
            Err(e) if !failing => {
                failing = true;
                log::warn!("cannot send STATUS to systemd: {e}");
            }
            Err(_) => {}
        }
    }
}

/// The `STATUS=` text: where clients connect, each feed's state, and
/// whether the journal is writable. One line.
pub fn status_line(addr: SocketAddr, feeds: &[(String, FeedState)], journal_ok: bool) -> String {
    let up = feeds.iter().filter(|(_, s)| *s == FeedState::Up).count();
    let states: Vec<String> = feeds
        .iter()
        .map(|(name, state)| format!("{name} {}", state.name()))
        .collect();
    let feeds = if states.is_empty() {
        "no feeds".to_owned()
    } else {
        format!("{up}/{} feeds up: {}", feeds.len(), states.join(", "))
    };
    let journal = if journal_ok {
        "journal ok"
    } else {
        "journal NOT writable (see /healthz)"
    };
    one_line(&format!("ws://{addr}/ws; {feeds}; {journal}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_names_every_feed_state() {
        let addr: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        let feeds = vec![
            ("binance".to_owned(), FeedState::Up),
            ("rates".to_owned(), FeedState::Connecting),
            ("upstream".to_owned(), FeedState::Down),
        ];
        assert_eq!(
            status_line(addr, &feeds, true),
            "ws://127.0.0.1:7070/ws; 1/3 feeds up: binance up, rates connecting, upstream down; journal ok"
        );
        assert_eq!(
            status_line(addr, &[], false),
            "ws://127.0.0.1:7070/ws; no feeds; journal NOT writable (see /healthz)"
        );
        let odd = vec![("a\nREADY=1".to_owned(), FeedState::Up)];
        assert!(!status_line(addr, &odd, true).contains('\n'));
    }
}
