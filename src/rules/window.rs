//! The low and the high of a symbol's prices over a sliding window of time,
//! for `move` and `drop` rules.
//!
//! Two monotonic queues: the lows queue holds prices rising from front to
//! back (a price that a later, lower price undercuts can never be the low
//! again and is dropped), the highs queue prices falling. The front of each
//! is the window's low or high; a tick costs amortized O(1). Each queue is
//! bounded by [`MAX_POINTS`]. Pure: time is passed in.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::decimal::Decimal;

/// Most points each queue keeps. A queue only grows while prices run one
/// way (every new price above all the others for the lows); past this, the
/// second-oldest point is dropped, so the low stays exact now and a later
/// one may come out a little high (a move is then seen a little smaller,
/// never larger). 32 points × 2 queues × ~48 bytes is ~3 KiB a symbol, so a
/// `"*"` rule over 4096 symbols stays near 12 MiB at worst.
pub(super) const MAX_POINTS: usize = 32;

/// One price at one instant.
#[derive(Clone, Copy, Debug)]
struct Point {
    at: Instant,
    price: Decimal,
}

/// A window's lows and highs.
#[derive(Debug, Default)]
pub(super) struct Window {
    lows: VecDeque<Point>,
    highs: VecDeque<Point>,
}

impl Window {
    /// Adds `price` seen at `at`, and forgets points older than `span`
    /// before `at` (a point exactly `span` old is still in).
    pub(super) fn push(&mut self, at: Instant, price: Decimal, span: Duration) {
        for queue in [&mut self.lows, &mut self.highs] {
            while queue
                .front()
                .is_some_and(|p| at.saturating_duration_since(p.at) > span)
            {
                queue.pop_front();
            }
        }
        let point = Point { at, price };
        push_monotonic(&mut self.lows, point, Ordering::Greater);
        push_monotonic(&mut self.highs, point, Ordering::Less);
    }

    /// The lowest price in the window.
    pub(super) fn low(&self) -> Option<Decimal> {
        self.lows.front().map(|p| p.price)
    }

    /// The highest price in the window.
    pub(super) fn high(&self) -> Option<Decimal> {
        self.highs.front().map(|p| p.price)
    }

    /// Starts over from `price` alone (after the rule fired).
    pub(super) fn restart(&mut self, at: Instant, price: Decimal) {
        self.lows.clear();
        self.highs.clear();
        let point = Point { at, price };
        self.lows.push_back(point);
        self.highs.push_back(point);
    }
}

/// Pushes `point` after dropping every point at the back that it makes
/// useless: for the lows (`worse` = Greater) those at or above it, for the
/// highs (`worse` = Less) those at or below it.
fn push_monotonic(queue: &mut VecDeque<Point>, point: Point, worse: Ordering) {
    while let Some(back) = queue.back() {
        match back.price.try_cmp(point.price) {
            Some(order) if order == worse || order == Ordering::Equal => {
                queue.pop_back();
            }
            _ => break,
        }
    }
    if queue.len() >= MAX_POINTS {
        queue.remove(1);
    }
    queue.push_back(point);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn low_and_high_follow_the_window_edges() {
        let t0 = Instant::now();
        let span = Duration::from_secs(60);
        let mut w = Window::default();
        let at = |s: u64| t0 + Duration::from_secs(s);
        w.push(at(0), d("100"), span);
        w.push(at(10), d("105"), span);
        w.push(at(20), d("98"), span);
        w.push(at(30), d("101"), span);
        assert_eq!((w.low(), w.high()), (Some(d("98")), Some(d("105"))));
        // At 70 s the point at 10 s is exactly 60 s old: still in.
        w.push(at(70), d("100"), span);
        assert_eq!(w.high(), Some(d("105")));
        // At 71 s it is out; the high is now 101 (at 30 s).
        w.push(at(71), d("99"), span);
        assert_eq!((w.low(), w.high()), (Some(d("98")), Some(d("101"))));
        // 98 (at 20 s) leaves at 81 s.
        w.push(at(81) + Duration::from_millis(1), d("99.5"), span);
        assert_eq!(w.low(), Some(d("99")));
        w.restart(at(90), d("120"));
        assert_eq!((w.low(), w.high()), (Some(d("120")), Some(d("120"))));
    }

    #[test]
    fn a_long_run_one_way_stays_bounded_and_keeps_the_extreme() {
        let t0 = Instant::now();
        let mut w = Window::default();
        for i in 0..1000u64 {
            w.push(
                t0 + Duration::from_millis(i),
                Decimal::new(i128::from(i), 0),
                Duration::from_secs(3600),
            );
        }
        assert!(w.lows.len() <= MAX_POINTS);
        assert_eq!(w.low(), Some(Decimal::new(0, 0)));
        assert_eq!(w.high(), Some(Decimal::new(999, 0)));
    }
}
