//! `[board] qr = "auto"` on the renderer thread: which URL the board's QR
//! code holds, found again now and then so that a new DHCP lease redraws
//! the code (docs/board.md §10).
//!
//! [`AutoQr`] asks `lan::phone_url` for the listen socket's LAN URL when
//! the renderer starts and then every [`RECHECK`] on the monotonic clock,
//! from the renderer's own loop (which wakes at least once a second
//! anyway), so it adds no wake-up and never touches the hub. A URL is
//! encoded once, when it changes. Each change is logged once; a daemon on
//! loopback says once why there is no code and never looks again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::board::qr::Qr;
use crate::config::BoardQr;
use crate::lan::NoUrl;

/// How often the LAN address is looked up again: a DHCP lease that moves
/// shows on the code within half a minute, and the look-up (a UDP socket
/// that sends nothing, a few microseconds) costs nothing at that rate.
pub const RECHECK: Duration = Duration::from_secs(30);

/// Set to a number of milliseconds, the look-up runs that often instead of
/// every [`RECHECK`]: for the test that moves the LAN address, which would
/// otherwise wait half a minute per move. The daemon warns when it is set.
pub const TEST_RECHECK_VAR: &str = "TABLO_TEST_QR_RECHECK_MS";

/// The code of `[board] qr = "auto"` and when to look again.
#[derive(Debug)]
pub struct AutoQr {
    listen: SocketAddr,
    /// [`RECHECK`], or what [`TEST_RECHECK_VAR`] says.
    every: Duration,
    /// When to look the address up next; `None` once it cannot change
    /// (loopback).
    next: Option<Instant>,
    /// What the last look-up found; `None` before the first.
    found: Option<Result<String, NoUrl>>,
}

impl AutoQr {
    /// The tracker for `setting` on a daemon listening on `listen`: `None`
    /// unless `setting` is `auto`. The first look-up is due at once.
    pub fn new(setting: &BoardQr, listen: SocketAddr, now: Instant) -> Option<AutoQr> {
        if *setting != BoardQr::Auto {
            return None;
        }
        let test = std::env::var(TEST_RECHECK_VAR).ok();
        let every = match test.as_deref().map(str::parse::<u64>) {
            Some(Ok(ms)) if ms > 0 => {
                log::warn!(
                    "{TEST_RECHECK_VAR}={ms}: the QR code's address is looked up every {ms} ms (a test)"
                );
                Duration::from_millis(ms)
            }
            _ => RECHECK,
        };
        Some(AutoQr {
            listen,
            every,
            next: Some(now),
            found: None,
        })
    }

    /// When due at `now`, looks the URL up with `find` (`lan::phone_url`
    /// outside tests) and returns what the board shows from now on when it
    /// changed: the new code, or no code.
    pub fn poll(
        &mut self,
        now: Instant,
        find: impl FnOnce(SocketAddr) -> Result<String, NoUrl>,
    ) -> Option<Option<Arc<Qr>>> {
        if self.next.is_none_or(|due| now < due) {
            return None;
        }
        let found = find(self.listen);
        self.next = match found {
            Err(NoUrl::Loopback(_)) => None,
            _ => Some(now + self.every),
        };
        if self.found.as_ref() == Some(&found) {
            return None;
        }
        let code = match &found {
            Ok(url) => match Qr::encode(url) {
                Some(code) => {
                    log::info!("board: QR code for {url} (the web board, for phones on the LAN)");
                    Some(Arc::new(code))
                }
                None => {
                    log::warn!("board: no QR code: {url} does not fit a QR code");
                    None
                }
            },
            Err(why @ NoUrl::Loopback(_)) => {
                log::info!("board: no QR code: {why}");
                None
            }
            Err(why @ NoUrl::NoLan) => {
                log::info!(
                    "board: no QR code yet: {why}; looking again every {} s",
                    self.every.as_secs_f32()
                );
                None
            }
        };
        let changed = self.found.is_some() || code.is_some();
        self.found = Some(found);
        changed.then_some(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> SocketAddr {
        "0.0.0.0:7070".parse().unwrap()
    }

    #[test]
    fn the_code_follows_the_address_at_each_recheck() {
        let t0 = Instant::now();
        let mut auto = AutoQr::new(&BoardQr::Auto, listen(), t0).unwrap();
        let a = || Ok("http://192.168.1.23:7070/".to_owned());
        let b = || Ok("http://192.168.1.57:7070/".to_owned());
        let shown = auto.poll(t0, |l| {
            assert_eq!(l, listen());
            a()
        });
        assert_eq!(shown.unwrap().unwrap().url(), "http://192.168.1.23:7070/");
        // Not due yet: not even asked.
        assert_eq!(auto.poll(t0 + RECHECK / 2, |_| panic!("asked early")), None);
        // Due, same address: nothing to redraw.
        assert_eq!(auto.poll(t0 + RECHECK, |_| a()), None);
        // A new lease: the new code.
        let shown = auto.poll(t0 + RECHECK * 2, |_| b()).unwrap().unwrap();
        assert_eq!(shown.url(), "http://192.168.1.57:7070/");
        // The network goes: no code, until it is back.
        assert_eq!(
            auto.poll(t0 + RECHECK * 3, |_| Err(NoUrl::NoLan)),
            Some(None)
        );
        assert_eq!(auto.poll(t0 + RECHECK * 4, |_| Err(NoUrl::NoLan)), None);
        assert!(auto.poll(t0 + RECHECK * 5, |_| a()).unwrap().is_some());
    }

    #[test]
    fn loopback_is_looked_up_once() {
        let t0 = Instant::now();
        let lo: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        let mut auto = AutoQr::new(&BoardQr::Auto, lo, t0).unwrap();
        // No code at start is no change to redraw.
        assert_eq!(auto.poll(t0, |l| Err(NoUrl::Loopback(l))), None);
        assert_eq!(
            auto.poll(t0 + RECHECK * 10, |_| panic!("asked again")),
            None
        );
    }

    #[test]
    fn only_auto_is_tracked() {
        let t0 = Instant::now();
        assert!(AutoQr::new(&BoardQr::Off, listen(), t0).is_none());
        assert!(AutoQr::new(&BoardQr::Url("https://x.example/".into()), listen(), t0).is_none());
    }
}
