//! The systemd watchdog as a health check: `WATCHDOG=1` goes out at half
//! the interval systemd asked for, but only while every watched loop (the
//! hub, the journal writer, the renderer) has come round recently.
//!
//! Each loop beats its [`Heartbeat`] at least every [`MAX_QUIET`], idle or
//! not. [`LoopHealth::check`] calls a loop stuck once it has been silent for
//! [`STUCK_AFTER`]; while any loop is stuck no ping is sent, so systemd
//! kills and restarts the daemon `WatchdogSec` after the last ping. A loop
//! that comes back before then makes the pings resume and nothing happens.
//!
//! The pings come from a plain thread of their own, not from a smol task:
//! a loop that blocks the executor thread must not also silence the voice
//! that says which loop it is. The thread sleeps between checks and does a
//! few atomic loads and one datagram per ping.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::heartbeat::{Heartbeat, MAX_QUIET};
use crate::service::notify::Notifier;

/// Silence after which a loop counts as stuck: three missed beats. A busy
/// Pi can delay a wake-up by a second; an fsync on a tired SD card can take
/// a few. Going past this only withholds pings: systemd acts after a further
/// `WatchdogSec` without one, so a loop that is merely slow has
/// `STUCK_AFTER` plus at least half of `WatchdogSec` to come back.
pub const STUCK_AFTER: Duration = Duration::from_secs(3 * MAX_QUIET.as_secs());

/// Shortest ping interval, whatever `WATCHDOG_USEC` says: a tiny value must
/// not turn the watchdog thread into a busy loop.
pub const MIN_PING_INTERVAL: Duration = Duration::from_millis(10);

/// The environment variables systemd sets when `WatchdogSec=` is on.
pub const WATCHDOG_USEC_VAR: &str = "WATCHDOG_USEC";
/// The process the watchdog is meant for.
pub const WATCHDOG_PID_VAR: &str = "WATCHDOG_PID";

/// What `$WATCHDOG_USEC` and `$WATCHDOG_PID` ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// No watchdog (`WATCHDOG_USEC` unset).
    Off,
    /// A watchdog meant for another process (`WATCHDOG_PID` names it), as
    /// when a wrapper started us; sd_watchdog_enabled(3) ignores it too.
    NotOurs {
        /// The process it is meant for.
        pid: u32,
    },
    /// Ping at least this often: half of `WATCHDOG_USEC`.
    PingEvery(Duration),
}

/// Reads the watchdog setting from `usec` (`$WATCHDOG_USEC`) and `pid`
/// (`$WATCHDOG_PID`) for process `our_pid`. A malformed value is an
/// `Err` with a message that says what was wrong and that the watchdog is
/// off: it must not stop the daemon.
pub fn parse(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Result<Setting, String> {
    let Some(usec) = usec else {
        return Ok(Setting::Off);
    };
    let micros = match usec.trim().parse::<u64>() {
        Ok(0) | Err(_) => {
            return Err(format!(
                "{WATCHDOG_USEC_VAR}={usec:?} is not a positive number of microseconds; the systemd watchdog is off"
            ));
        }
        Ok(micros) => micros,
    };
    if let Some(pid) = pid {
        match pid.trim().parse::<u32>() {
            Ok(pid) if pid == our_pid => {}
            Ok(pid) => return Ok(Setting::NotOurs { pid }),
            Err(_) => {
                return Err(format!(
                    "{WATCHDOG_PID_VAR}={pid:?} is not a process id; the systemd watchdog is off"
                ));
            }
        }
    }
    let half = Duration::from_micros(micros) / 2;
    Ok(Setting::PingEvery(half.max(MIN_PING_INTERVAL)))
}

/// A change in a loop's health, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The loop has been silent for longer than [`STUCK_AFTER`].
    Stuck {
        /// Its name.
        name: &'static str,
        /// How long.
        silent: Duration,
    },
    /// A stuck loop beats again.
    Recovered {
        /// Its name.
        name: &'static str,
    },
}

/// The watched loops and which of them were stuck at the last check.
#[derive(Debug)]
pub struct LoopHealth {
    hearts: Vec<Arc<Heartbeat>>,
    stuck: Vec<bool>,
}

impl LoopHealth {
    /// Watches `hearts`.
    pub fn new(hearts: Vec<Arc<Heartbeat>>) -> LoopHealth {
        let stuck = vec![false; hearts.len()];
        LoopHealth { hearts, stuck }
    }

    /// Checks every loop at `now`: whether all are healthy, and what
    /// changed since the last check.
    pub fn check(&mut self, now: Instant) -> (bool, Vec<Change>) {
        let mut changes = Vec::new();
        for (heart, was_stuck) in self.hearts.iter().zip(self.stuck.iter_mut()) {
            let silent = heart.silent_for(now);
            let stuck = silent > STUCK_AFTER;
            match (stuck, *was_stuck) {
                (true, false) => changes.push(Change::Stuck {
                    name: heart.name(),
                    silent,
                }),
                (false, true) => changes.push(Change::Recovered { name: heart.name() }),
                _ => {}
            }
            *was_stuck = stuck;
        }
        (!self.stuck.contains(&true), changes)
    }
}

/// The running watchdog thread; dropping it (or [`Watchdog::stop`]) stops
/// the pings.
#[derive(Debug)]
pub struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts pinging through `notifier` every `every` while every loop in
    /// `hearts` is healthy.
    pub fn start(
        notifier: Arc<Notifier>,
        hearts: Vec<Arc<Heartbeat>>,
        every: Duration,
    ) -> std::io::Result<Watchdog> {
        let (stop, stopped) = mpsc::channel();
        let names: Vec<&str> = hearts.iter().map(|h| h.name()).collect();
        log::info!(
            "systemd watchdog on: WATCHDOG=1 every {} ms while these loops come round: {}",
            every.as_millis(),
            names.join(", ")
        );
        let mut health = LoopHealth::new(hearts);
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || run(&notifier, &mut health, every, &stopped))?;
        Ok(Watchdog {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the pings and waits for the thread.
    pub fn stop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    notifier: &Notifier,
    health: &mut LoopHealth,
    every: Duration,
    stopped: &mpsc::Receiver<()>,
) {
    // A failing send (systemd gone, a full queue) is logged once per
    // stretch of failures: the next ping may well get through.
    let mut send_failed = false;
    loop {
        match stopped.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let (healthy, changes) = health.check(Instant::now());
        for change in changes {
            match change {
                Change::Stuck { name, silent } => log::error!(
                    "watchdog: the {name} loop has not come round for {:.1} s and looks stuck; \
                     withholding WATCHDOG=1 so systemd restarts tablo if it stays stuck",
                    silent.as_secs_f64()
                ),
                Change::Recovered { name } => {
                    log::warn!("watchdog: the {name} loop is running again; pinging again")
                }
            }
        }
        if !healthy {
            continue;
        }
        match notifier.send("WATCHDOG=1") {
            Ok(()) => send_failed = false,
            Err(e) if !send_failed => {
                send_failed = true;
                log::warn!("watchdog: cannot notify systemd: {e}");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: u32 = 4242;

    #[track_caller]
    fn check(usec: Option<&str>, pid: Option<&str>, expected: Result<Setting, &str>) {
        match (parse(usec, pid, PID), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(message), Err(needle)) => {
                assert!(message.contains(needle), "{message:?} lacks {needle:?}");
                assert!(message.contains("watchdog is off"), "{message}");
            }
            (got, want) => panic!("{usec:?} {pid:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn watchdog_settings_from_the_environment() {
        let every = |ms| Ok(Setting::PingEvery(Duration::from_millis(ms)));
        check(None, None, Ok(Setting::Off));
        check(None, Some("1"), Ok(Setting::Off));
        check(Some("30000000"), None, every(15_000));
        check(Some("500000"), Some("4242"), every(250));
        check(Some(" 500000\n"), Some("4242"), every(250));
        check(Some("500000"), Some("1"), Ok(Setting::NotOurs { pid: 1 }));
        check(Some("1"), None, every(10));
        check(Some("abc"), None, Err("WATCHDOG_USEC=\"abc\""));
        check(Some("0"), None, Err("WATCHDOG_USEC=\"0\""));
        check(Some("-5"), None, Err("positive number"));
        check(Some(""), None, Err("WATCHDOG_USEC"));
        check(Some("500000"), Some("me"), Err("WATCHDOG_PID=\"me\""));
    }

    #[test]
    fn a_silent_loop_is_stuck_until_it_beats_again() {
        let hub = Heartbeat::new("hub");
        let journal = Heartbeat::new("journal");
        let t0 = Instant::now();
        hub.beat_at(t0);
        journal.beat_at(t0);
        let mut health = LoopHealth::new(vec![hub.clone(), journal.clone()]);
        assert_eq!(health.check(t0 + MAX_QUIET), (true, vec![]));

        // The journal keeps beating; the hub goes quiet.
        let late = t0 + STUCK_AFTER + Duration::from_millis(100);
        journal.beat_at(late);
        let (healthy, changes) = health.check(late);
        assert!(!healthy);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(
            matches!(changes[0], Change::Stuck { name: "hub", silent } if silent > STUCK_AFTER),
            "{changes:?}"
        );
        // Still stuck: no new change, still unhealthy.
        assert_eq!(health.check(late + MAX_QUIET), (false, vec![]));

        // It comes back.
        let back = late + 2 * MAX_QUIET;
        hub.beat_at(back);
        journal.beat_at(back);
        assert_eq!(
            health.check(back),
            (true, vec![Change::Recovered { name: "hub" }])
        );
    }

    #[test]
    fn stuck_means_silent_for_longer_than_stuck_after() {
        let hub = Heartbeat::new("hub");
        let t0 = Instant::now();
        hub.beat_at(t0);
        let mut health = LoopHealth::new(vec![hub]);
        // Beats are kept in whole milliseconds: allow for the rounding.
        assert!(health.check(t0 + STUCK_AFTER - Duration::from_millis(1)).0);
        assert!(!health.check(t0 + STUCK_AFTER + Duration::from_millis(2)).0);
    }

    #[test]
    fn nothing_to_watch_is_healthy() {
        assert_eq!(
            LoopHealth::new(vec![]).check(Instant::now()),
            (true, vec![])
        );
    }

    #[test]
    fn the_thread_pings_while_healthy_and_stops_on_request() {
        use std::os::unix::net::UnixDatagram;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = Arc::new(Notifier::new(path.to_str().unwrap()).unwrap());
        let heart = Heartbeat::new("test");
        let mut watchdog =
            Watchdog::start(notifier, vec![heart.clone()], Duration::from_millis(20)).unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..3 {
            heart.beat();
            let n = server.recv(&mut buf).expect("a ping within 5 s");
            assert_eq!(&buf[..n], b"WATCHDOG=1");
        }
        watchdog.stop();
        server.set_nonblocking(true).unwrap();
        while server.recv(&mut buf).is_ok() {}
        // Stopped: joined, so no ping can follow.
        assert!(server.recv(&mut buf).is_err());
    }
}
