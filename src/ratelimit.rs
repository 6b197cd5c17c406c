//! A token bucket for the per-client op rate limit of docs/protocol.md §16.
//!
//! Pure: the caller passes `now`. No clock reads, no I/O.

use std::time::Instant;

/// Tokens refill at `rate` per second up to `burst`; each op takes one.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_s: u32, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate_per_s),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(50, 100, t0);
        let taken = (0..150).filter(|_| bucket.try_take(t0)).count();
        assert_eq!(taken, 100);
        // One second later, 50 more.
        let t1 = t0 + Duration::from_secs(1);
        let taken = (0..150).filter(|_| bucket.try_take(t1)).count();
        assert_eq!(taken, 50);
    }

    #[test]
    fn refill_never_exceeds_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(50, 100, t0);
        let later = t0 + Duration::from_secs(3600);
        let taken = (0..500).filter(|_| bucket.try_take(later)).count();
        assert_eq!(taken, 100);
    }
}
