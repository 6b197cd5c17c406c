//! The board's feed: how events get from the hub to the renderer thread.
//!
//! The hub holds a [`BoardFeed`] and offers it every event; the renderer
//! thread holds the [`BoardInbox`]. The queue between them is bounded
//! ([`BOARD_INBOX`]) and the hub never waits on it: `offer` is a
//! `try_send`. A full queue is counted and, once there is room again, the
//! hub's whole last-known state goes first ([`BoardMsg::Resync`]), so the
//! board is whole again however far it fell behind. Besides the queue, the
//! two share a [`Sideband`]: the client count the header shows and the
//! renderer's counters that `/metrics` reads.
//!
//! This module does no drawing and no I/O; it knows events, not pixels.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use super::screen::ScreenStatus;
use crate::event::Event;
use crate::metrics::{Histogram, Kind, MetricsText};

/// Events queued for the renderer: at 1,000 events a second, four seconds
/// of a renderer that does not drain (a display that hangs) before the hub
/// starts counting drops and falls back to a resync.
pub const BOARD_INBOX: usize = 4096;

/// Frame-time histogram bounds in µs (1 ms to 250 ms), for `/metrics`.
pub const FRAME_BUCKETS_US: [u64; 8] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000,
];

/// What the hub sends the renderer.
#[derive(Debug)]
pub enum BoardMsg {
    /// One live event.
    Event(Event),
    /// The hub's whole last-known state, after events were dropped.
    Resync(Vec<Event>),
}

/// Counters the renderer keeps and `/metrics` reads.
#[derive(Debug)]
pub struct RenderStats {
    /// Whole frames drawn.
    pub frames: AtomicU64,
    /// Frames that redrew only the header and/or the news strip.
    pub partial_frames: AtomicU64,
    /// The last frame's draw and present time in nanoseconds.
    pub last_ns: AtomicU64,
    /// Draw and present times, in buckets of [`FRAME_BUCKETS_US`].
    pub times: Histogram,
    /// Events the hub could not queue.
    pub dropped_events: AtomicU64,
    /// Frames the screen failed to show.
    pub present_errors: AtomicU64,
}

impl Default for RenderStats {
    fn default() -> RenderStats {
        RenderStats {
            frames: AtomicU64::new(0),
            partial_frames: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            times: Histogram::new(&FRAME_BUCKETS_US),
            dropped_events: AtomicU64::new(0),
            present_errors: AtomicU64::new(0),
        }
    }
}

impl RenderStats {
    /// Counts one frame that took `took` to draw and show.
    pub fn record(&self, took: Duration, partial: bool) {
        let counter = if partial {
            &self.partial_frames
        } else {
            &self.frames
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.last_ns
            .store(took.as_nanos() as u64, Ordering::Relaxed);
        self.times.record(took);
    }

    /// Appends the render metrics; `mode` labels the frame counts.
    pub fn write_metrics(&self, mode: &str, text: &mut MetricsText<'_>) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        text.family(
            "render_frames_total",
            Kind::Counter,
            "Board frames drawn: whole, or only the header and news strips.",
        )
        .row(&[("mode", mode), ("kind", "full")], get(&self.frames))
        .row(
            &[("mode", mode), ("kind", "strips")],
            get(&self.partial_frames),
        );
        text.histogram(
            "render_seconds",
            "Time to draw and show a board frame.",
            &self.times,
        );
        text.single(
            "render_last_seconds",
            Kind::Gauge,
            "The last frame's draw and show time.",
            get(&self.last_ns) as f64 / 1e9,
        );
        text.single(
            "render_dropped_events_total",
            Kind::Counter,
            "Events the board's queue had no room for (followed by a resync).",
            get(&self.dropped_events),
        );
        text.single(
            "render_present_errors_total",
            Kind::Counter,
            "Frames the screen failed to show.",
            get(&self.present_errors),
        );
    }
}

/// What the hub and the renderer share besides the queue of events.
#[derive(Debug, Default)]
pub struct Sideband {
    /// Connected clients, for the header; set by the hub.
    pub clients: AtomicUsize,
    /// The renderer's counters, read by `/metrics`.
    pub stats: RenderStats,
    /// The screen on or off by its schedule, read by `/healthz`, `stats`
    /// and `/metrics`.
    pub screen: ScreenStatus,
}

/// The hub's end of the renderer: never blocks.
#[derive(Debug)]
pub struct BoardFeed {
    tx: SyncSender<BoardMsg>,
    shared: Arc<Sideband>,
    mode: &'static str,
    /// Events were dropped: send a resync before the next event.
    lagged: bool,
}

impl BoardFeed {
    /// Queues `event` for the board. When earlier events were dropped, the
    /// whole `last_known` state goes first.
    pub fn offer(&mut self, event: &Event, last_known: impl FnOnce() -> Vec<Event>) {
        if self.lagged {
            match self.tx.try_send(BoardMsg::Resync(last_known())) {
                Ok(()) => {
                    self.lagged = false;
                    log::info!("the board caught up; redrawing it from the last-known state");
                }
                Err(_) => {
                    self.shared
                        .stats
                        .dropped_events
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        match self.tx.try_send(BoardMsg::Event(event.clone())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared
                    .stats
                    .dropped_events
                    .fetch_add(1, Ordering::Relaxed);
                if !self.lagged {
                    log::warn!(
                        "the board is not keeping up (its display may hang); dropping its events until it drains"
                    );
                }
                self.lagged = true;
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Tells the board how many clients are connected (shown in the header
    /// within a second).
    pub fn set_clients(&self, clients: usize) {
        self.shared.clients.store(clients, Ordering::Relaxed);
    }

    /// Appends the render metrics.
    pub fn write_metrics(&self, text: &mut MetricsText<'_>) {
        self.shared.stats.write_metrics(self.mode, text);
    }

    /// The screen's state (on, off, why, the next change).
    pub fn screen(&self) -> &ScreenStatus {
        &self.shared.screen
    }
}

/// The renderer's end of the board's feed.
#[derive(Debug)]
pub struct BoardInbox {
    /// Events and resyncs from the hub, in order.
    pub messages: Receiver<BoardMsg>,
    /// What the renderer shares with the hub.
    pub sideband: Arc<Sideband>,
}

/// A new feed for a board shown by `mode` (the display mode's name, for
/// `/metrics`): the hub's end and the renderer's.
pub fn channel(mode: &'static str) -> (BoardFeed, BoardInbox) {
    let (tx, messages) = sync_channel(BOARD_INBOX);
    let sideband = Arc::new(Sideband::default());
    let feed = BoardFeed {
        tx,
        shared: sideband.clone(),
        mode,
        lagged: false,
    };
    (feed, BoardInbox { messages, sideband })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::testing::{NOW, tick};
    use crate::event::Body;

    fn event(seq: u64, ts: u64, body: Body) -> Event {
        Event { seq, ts, body }
    }

    #[test]
    fn a_full_queue_is_counted_and_followed_by_a_resync() {
        let (tx, rx) = sync_channel(2);
        let mut feed = BoardFeed {
            tx,
            shared: Arc::new(Sideband::default()),
            mode: "png",
            lagged: false,
        };
        let e = |seq| event(seq, NOW, tick("BTCUSDT", "1"));
        for seq in 1..=3 {
            feed.offer(&e(seq), Vec::new);
        }
        assert_eq!(feed.shared.stats.dropped_events.load(Ordering::Relaxed), 1);
        let seqs: Vec<u64> = rx
            .try_iter()
            .map(|m| match m {
                BoardMsg::Event(ev) => ev.seq,
                BoardMsg::Resync(_) => 0,
            })
            .collect();
        assert_eq!(seqs, [1, 2]);
        // Room again: the last-known state goes first, then the event.
        feed.offer(&e(4), || vec![e(3)]);
        assert!(matches!(rx.try_recv(), Ok(BoardMsg::Resync(all)) if all[0].seq == 3));
        assert!(matches!(rx.try_recv(), Ok(BoardMsg::Event(ev)) if ev.seq == 4));
        assert_eq!(feed.shared.stats.dropped_events.load(Ordering::Relaxed), 1);
        let mut text = String::new();
        feed.write_metrics(&mut MetricsText::new(&mut text));
        assert!(
            text.contains("tablo_render_dropped_events_total 1"),
            "{text}"
        );
    }
}
