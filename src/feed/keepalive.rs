//! Dead-link detection for an upstream connection (docs/config.md §12).
//!
//! A ping goes out every [`PING_INTERVAL`]; the link is dead when a ping's
//! pong has not come back within [`PONG_TIMEOUT`] or nothing at all arrived
//! for [`SILENCE_LIMIT`]. Pure: the caller passes `now` and acts on the
//! returned [`Action`].

use std::time::{Duration, Instant};

/// How often to ping the upstream.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// How long a ping may go unanswered.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the link may be completely silent (no data, no pong).
pub const SILENCE_LIMIT: Duration = Duration::from_secs(30);

/// What the feed task should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a ping now.
    Ping,
    /// Give up on the link: reconnect.
    Dead(DeadReason),
    /// Nothing to do until this instant (then call [`Keepalive::poll`] again).
    WaitUntil(Instant),
}

/// Why a link was declared dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadReason {
    /// A ping got no pong in time.
    NoPong,
    /// Nothing arrived for [`SILENCE_LIMIT`].
    Silent,
}

impl std::fmt::Display for DeadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeadReason::NoPong => write!(f, "no pong within {}s", PONG_TIMEOUT.as_secs()),
            DeadReason::Silent => write!(f, "silent for {}s", SILENCE_LIMIT.as_secs()),
        }
    }
}

/// Keepalive state of one connection.
#[derive(Clone, Debug)]
pub struct Keepalive {
    last_rx: Instant,
    last_ping: Instant,
    ping_outstanding: Option<Instant>,
}

impl Keepalive {
    /// A link that just came up at `now`.
    pub fn new(now: Instant) -> Keepalive {
        Keepalive {
            last_rx: now,
            last_ping: now,
            ping_outstanding: None,
        }
    }

    /// Anything arrived (data, ping or pong).
    pub fn received(&mut self, now: Instant) {
        self.last_rx = now;
    }

    /// Our ping's pong arrived.
    pub fn pong(&mut self, now: Instant) {
        self.last_rx = now;
        self.ping_outstanding = None;
    }

    /// What to do at `now`. After [`Action::Ping`] the caller sends the ping;
    /// the state already counts it as sent.
    pub fn poll(&mut self, now: Instant) -> Action {
        if now.saturating_duration_since(self.last_rx) >= SILENCE_LIMIT {
            return Action::Dead(DeadReason::Silent);
        }
        if let Some(sent) = self.ping_outstanding
            && now.saturating_duration_since(sent) >= PONG_TIMEOUT
        {
            return Action::Dead(DeadReason::NoPong);
        }
        let next_ping = self.last_ping + PING_INTERVAL;
        if now >= next_ping {
            self.last_ping = now;
            if self.ping_outstanding.is_none() {
                self.ping_outstanding = Some(now);
            }
            return Action::Ping;
        }
        let mut wake = next_ping.min(self.last_rx + SILENCE_LIMIT);
        if let Some(sent) = self.ping_outstanding {
            wake = wake.min(sent + PONG_TIMEOUT);
        }
        Action::WaitUntil(wake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn pings_every_interval_while_pongs_come_back() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(t0);
        assert_eq!(k.poll(t0), Action::WaitUntil(t0 + PING_INTERVAL));
        for round in 1..=5u64 {
            let t = t0 + secs(15 * round);
            assert_eq!(k.poll(t), Action::Ping, "round {round}");
            k.pong(t + secs(1));
        }
    }

    #[test]
    fn missing_pong_is_dead_after_timeout() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(t0);
        let t_ping = t0 + PING_INTERVAL;
        assert_eq!(k.poll(t_ping), Action::Ping);
        // Data keeps flowing, but the pong never comes.
        k.received(t_ping + secs(5));
        assert_eq!(
            k.poll(t_ping + secs(5)),
            Action::WaitUntil(t_ping + PONG_TIMEOUT)
        );
        assert_eq!(
            k.poll(t_ping + PONG_TIMEOUT),
            Action::Dead(DeadReason::NoPong)
        );
    }

    #[test]
    fn silence_is_dead_even_without_a_ping_due() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(t0);
        assert_eq!(k.poll(t0 + PING_INTERVAL), Action::Ping);
        k.pong(t0 + PING_INTERVAL);
        assert_eq!(
            k.poll(t0 + PING_INTERVAL + SILENCE_LIMIT),
            Action::Dead(DeadReason::Silent)
        );
    }

    #[test]
    fn traffic_postpones_silence_but_not_pings() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(t0);
        k.received(t0 + secs(10));
        assert_eq!(k.poll(t0 + secs(10)), Action::WaitUntil(t0 + PING_INTERVAL));
    }
}
