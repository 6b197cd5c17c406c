//! The renderer: one thread that keeps its own copy of the board state and
//! draws it onto a [`Screen`] when, and only when, the picture changes.
//!
//! The hub hands every event to a [`BoardFeed`] (a bounded queue; the hub
//! never waits on it). The renderer takes in everything queued before each
//! frame, so a burst of ticks becomes one frame (the state is conflated),
//! and a slow frame or a stuck display never delays relaying. If the queue
//! ever fills, the hub counts the drop and, as soon as there is room,
//! sends its whole last-known state so the board is whole again.
//!
//! Frames are paced by [`FramePacer`]: one when an event arrived, when a row
//! goes stale or its age label changes, when the clock's second turns, or
//! while a flash fades or the news scrolls; never closer than `fps_max`
//! allows (and a PNG at most once a second). With nothing due the thread
//! sleeps until the next thing is due, at most [`MAX_QUIET`], so the
//! process is idle when nothing changes; while a frame is due but held
//! back by the cap, events do not wake it (they wait in the queue for that
//! frame), so a busy feed costs one wake-up per frame. Only what changed is
//! drawn: the bands of the rows that changed (all of them when the page
//! turns), the header when its clock turned, the news strip when it
//! scrolled; a whole frame when the layout or anything outside the rows
//! changed (`board::damage`). The frame writes only pixels whose colour
//! changes and remembers where (`Canvas::changed_in_line`), and the
//! framebuffer and the window get only those; everything is copied on a
//! new screen, after a black frame, an expose or a failed present, and
//! every [`COPY_ALL_EVERY`].
//!
//! Steady state allocates nothing per frame: the frame buffer, the painter
//! and its glyph cache are reused; a new buffer is made only on a resize.
//!
//! With `[board] qr = "auto"` the loop also looks up the listen socket's
//! LAN address every [`qr::RECHECK`] and redraws the QR code when it moved
//! (`renderer::qr`); the look-up rides on a wake-up the loop has anyway.
//!
//! Outside `[display] schedule`'s hours ([`power`]) the screen goes dark:
//! nothing is drawn, the thread takes events in batches (so a wake shows
//! current data) and otherwise sleeps until the next change; waking draws
//! a whole frame.

mod power;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use embedded_graphics::prelude::Point;
use embedded_graphics::primitives::Rectangle;

use crate::board::damage::{MAX_AREAS, Redrawn, Scope, Shown};
use crate::board::feed::{BoardFeed, BoardMsg, Sideband};
use crate::board::rotate::{Rotated, Rotation, shift_at};
use crate::board::{self, BoardState, Canvas};
use crate::clock::wall_ms;
use crate::config::Config;
use crate::display::{self, Choice, Damage, DisplayError, Polled, Screen};
use crate::event::Event;
use crate::heartbeat::{Heartbeat, MAX_QUIET};
use crate::logger::RateLimited;
use crate::schedule::zone;

pub mod qr;

/// How long shutdown waits for the renderer to finish its frame.
const JOIN_WAIT: Duration = Duration::from_secs(1);

/// Longest sleep while a frame is held back by the cap (events do not wake
/// the thread then): it must see the hub gone well within [`JOIN_WAIT`].
const HELD_SLEEP: Duration = Duration::from_millis(250);

/// Pixels of burn-in shift per 1,000 pixels of the shorter side (4 px at
/// 1080p); at least 2.
const SHIFT_PER_1000: u32 = 4;

/// While the screen is dark, events are taken in at most this often: a
/// burst of ticks then costs one wake-up, not one each. The queue
/// (`BOARD_INBOX`) holds seconds of events; a critical alert that wakes
/// the screen waits this long at most.
const DARK_BATCH: Duration = Duration::from_millis(250);

/// The running renderer thread, owned by `app`.
pub struct Renderer {
    thread: Option<JoinHandle<()>>,
    heart: Arc<Heartbeat>,
    closed: smol::channel::Receiver<()>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Renderer {
    /// The renderer's heartbeat, for the watchdog.
    pub fn heartbeat(&self) -> Arc<Heartbeat> {
        self.heart.clone()
    }

    /// Resolves when the window was closed (a stop request).
    pub fn closed(&self) -> smol::channel::Receiver<()> {
        self.closed.clone()
    }

    /// Waits (at most a second) for the thread to end once the hub has
    /// dropped its [`BoardFeed`]; a thread stuck in a display call is left
    /// behind for the process exit to end.
    pub fn join(mut self) {
        if self.done.recv_timeout(JOIN_WAIT).is_ok()
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        } else {
            log::warn!("the board did not stop within a second; exiting without it");
        }
    }
}

/// Starts the renderer for `choice`, drawing `restored` (the journal's
/// last-known state, marked stale) at once; `listen` is the bound listen
/// address, for `[board] qr = "auto"`. Returns `None` for
/// [`Choice::None`]. Fails when the screen cannot be opened.
pub fn start(
    config: &Config,
    choice: &Choice,
    restored: &[Event],
    listen: SocketAddr,
) -> Result<Option<(Renderer, BoardFeed)>, DisplayError> {
    if *choice == Choice::None {
        return Ok(None);
    }
    let feeds: Vec<&str> = config.feeds.iter().map(|f| f.name.as_str()).collect();
    let mut state = BoardState::new(&config.board, &feeds);
    for event in restored {
        state.restore(event);
    }
    let fresh = BoardState::new(&config.board, &feeds);
    let auto_qr = qr::AutoQr::new(&config.board.qr, listen, Instant::now());
    let settings = Settings {
        fps_max: config.display.fps_max,
        rotation: Rotation::from_degrees(config.display.rotate).unwrap_or_default(),
        pixel_shift: config.display.pixel_shift,
    };
    let (feed, inbox) = board::feed::channel(choice.name());
    let heart = Heartbeat::new("renderer");
    let (closed_tx, closed_rx) = smol::channel::bounded(1);
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
    let (opened_tx, opened_rx) = std::sync::mpsc::sync_channel(1);
    let thread = {
        let (choice, display) = (choice.clone(), config.display.clone());
        let font = config.board.font.clone();
        let heart = heart.clone();
        std::thread::Builder::new()
            .name("renderer".into())
            .spawn(move || {
                // A window belongs to the thread that made it.
                let screen = match display::open(&choice, &display) {
                    Ok(Some(screen)) => screen,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                let _ = opened_tx.send(Ok(screen.size()));
                let power = power::Power::new(&display, &choice, inbox.sideband.clone());
                let mut run = Run {
                    screen,
                    state,
                    fresh,
                    settings,
                    font,
                    shared: inbox.sideband,
                    heart,
                    present_warning: RateLimited::new(Duration::from_secs(60)),
                    clock: BoardClock::new(wall_ms(), Instant::now()),
                    auto_qr,
                    power,
                    copy_all: true,
                    copied_all_at: Instant::now(),
                };
                if run.run(inbox.messages) == Ended::Closed {
                    let _ = closed_tx.try_send(());
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| DisplayError::Window(format!("cannot start the renderer thread: {e}")))?
    };
    let size = opened_rx.recv().map_err(|_| {
        DisplayError::Window("the renderer thread ended while opening the screen".into())
    })??;
    log::info!("board: {} at {}×{}", choice.name(), size.0, size.1);
    Ok(Some((
        Renderer {
            thread: Some(thread),
            heart,
            closed: closed_rx,
            done: done_rx,
        },
        feed,
    )))
}

/// Drawing settings from `[display]`.
#[derive(Clone, Copy, Debug)]
struct Settings {
    fps_max: u32,
    rotation: Rotation,
    pixel_shift: bool,
}

/// Why the render loop ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The hub dropped its end: shutdown.
    Shutdown,
    /// The window was closed.
    Closed,
}

/// The renderer thread's state.
struct Run {
    screen: Box<dyn Screen>,
    state: BoardState,
    /// An empty state, the start of a resync.
    fresh: BoardState,
    settings: Settings,
    /// `[board] font`, read by the renderer thread when it starts.
    font: Option<std::path::PathBuf>,
    shared: Arc<Sideband>,
    heart: Arc<Heartbeat>,
    /// One warning a minute when frames cannot be shown.
    present_warning: RateLimited,
    /// The board's time: ages, staleness, flashes and pages.
    clock: BoardClock,
    /// The QR code's URL, for `[board] qr = "auto"`.
    auto_qr: Option<qr::AutoQr>,
    /// The screen's schedule: on, or dark.
    power: power::Power,
    /// Whether the screen may not hold the frame's last shown state (a
    /// new screen, a black frame, an expose, a failed present): the next
    /// present copies everything.
    copy_all: bool,
    /// When everything was last copied (see [`COPY_ALL_EVERY`]).
    copied_all_at: Instant,
}

/// Even with nothing lost, everything is copied this often: what another
/// program (the console's cursor, a stray `cat > /dev/fb0`) wrote into the
/// framebuffer lasts at most this long. On this machine a whole 1080p copy
/// costs a few milliseconds, a minute's idle frames a fraction of that.
const COPY_ALL_EVERY: Duration = Duration::from_secs(60);

/// The board's time: the wall clock at the renderer's start, advanced by the
/// monotonic clock. Ages and staleness are measured on it, so a step of the
/// wall clock neither freshens a stale row nor ages a fresh one; the header
/// shows the wall clock, as an offset from it (docs/board.md §3).
#[derive(Clone, Copy, Debug)]
struct BoardClock {
    wall_at_start: u64,
    started: Instant,
}

impl BoardClock {
    fn new(wall_ms: u64, now: Instant) -> BoardClock {
        BoardClock {
            wall_at_start: wall_ms,
            started: now,
        }
    }

    /// The board's time at `now`, in ms.
    fn at(&self, now: Instant) -> u64 {
        self.wall_at_start
            .saturating_add(crate::clock::age_ms(self.started, now))
    }
}

/// A wall-clock offset from the board's time that moves by less than this
/// (NTP slewing) redraws nothing by itself; a step does.
const CLOCK_STEP_MS: i64 = 1_000;

impl Run {
    fn run(&mut self, rx: Receiver<BoardMsg>) -> Ended {
        if self.heart.injected_stall() {
            loop {
                std::thread::park();
            }
        }
        let mut painter = crate::board::font::painter(self.font.as_deref());
        let mut target = self.target(self.screen.size());
        // What is on screen, so a frame redraws only what changed.
        let mut shown = Shown::new();
        let min_gap = self
            .screen
            .min_interval()
            .max(Duration::from_secs(1) / self.settings.fps_max.max(1));
        let mut pacer = FramePacer::new(min_gap);
        let mut offset_checked_ms = 0;
        loop {
            let now = Instant::now();
            self.heart.beat_at(now);
            let now_ms = self.clock.at(now);
            let wall = wall_ms();
            let offset = wall as i64 - now_ms as i64;
            let stepped = (offset - self.state.clock_offset_ms()).abs() >= CLOCK_STEP_MS;
            if stepped {
                pacer.invalidate();
            }
            self.state.set_clock_offset_ms(offset);
            let polled = self.screen.poll();
            match polled {
                Polled::Same => {}
                Polled::Exposed => {
                    self.lost(&mut shown);
                    pacer.invalidate();
                }
                Polled::Resized(w, h) => {
                    target = self.target((w, h));
                    self.lost(&mut shown);
                    pacer.invalidate();
                }
                Polled::Closed => {
                    log::info!("the board window was closed; stopping");
                    return Ended::Closed;
                }
            }
            if wall / 60_000 != offset_checked_ms / 60_000 {
                // The local time offset, once a minute (daylight saving).
                self.state
                    .set_utc_offset_minutes(local_offset_minutes(wall));
                offset_checked_ms = wall;
            }
            if let Some(auto) = &mut self.auto_qr
                && let Some(code) = auto.poll(now, crate::lan::phone_url)
            {
                self.state.set_qr(code);
                pacer.invalidate();
            }
            if let Some(on) = self.power.turn(now, wall, stepped, &self.state, now_ms) {
                self.switch(on, &mut pacer);
                // Dark, the screen showed black (or nothing): whatever it
                // shows after a switch, the next frame is whole.
                self.lost(&mut shown);
            }
            if self.power.dark() {
                if polled != Polled::Same && self.power.painted_black() {
                    // The window lost its black frame (uncovered, resized).
                    self.show_black();
                }
                match self.rest(&rx, now) {
                    Some(ended) => return ended,
                    None => continue,
                }
            }
            let clients = self.shared.clients.load(Ordering::Relaxed);
            if clients != self.state.clients() {
                self.state.set_clients(clients);
                pacer.invalidate();
            }
            if self.settings.pixel_shift {
                let shift = shift_at(now_ms, target.margin());
                if shift != target.shift() {
                    target.set_shift(shift);
                    self.lost(&mut shown);
                    pacer.invalidate();
                }
            }
            match pacer.next(&self.state, now, now_ms) {
                FrameDue::Full => {
                    let redrawn = shown.redraw(
                        &self.state,
                        now_ms,
                        &mut painter,
                        &mut target,
                        Scope::Everything,
                    );
                    self.show_redrawn(&mut target, redrawn, now);
                    pacer.drawn_full(&self.state, now, now_ms);
                }
                FrameDue::Strips { header, .. } => {
                    let redrawn = shown.redraw(
                        &self.state,
                        now_ms,
                        &mut painter,
                        &mut target,
                        Scope::Strips,
                    );
                    self.show_redrawn(&mut target, redrawn, now);
                    pacer.drawn_strips(now, now_ms, header);
                }
                // A whole frame is due already, held back by the frame cap:
                // what arrives before then goes into that frame anyway, so
                // the thread sleeps until it instead of waking per event.
                FrameDue::Wait(wait) if pacer.dirty => {
                    std::thread::sleep(wait.min(HELD_SLEEP));
                    if self.drain(&rx) == Some(Ended::Shutdown) {
                        return Ended::Shutdown;
                    }
                }
                FrameDue::Wait(wait) => match rx.recv_timeout(wait.min(MAX_QUIET)) {
                    Ok(msg) => {
                        let now_ms = self.clock.at(Instant::now());
                        self.take(msg, now_ms);
                        if self.drain(&rx) == Some(Ended::Shutdown) {
                            return Ended::Shutdown;
                        }
                        pacer.invalidate();
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Ended::Shutdown,
                },
            }
        }
    }

    /// The screen no longer shows the frame (or the frame moved): the
    /// next redraw is whole and the next present copies everything.
    fn lost(&mut self, shown: &mut Shown) {
        shown.forget();
        self.copy_all = true;
    }

    /// Switches the screen on or off. Dark: blanked (or a black frame)
    /// and nothing more drawn. On: a whole frame of the current state.
    fn switch(&mut self, on: bool, pacer: &mut FramePacer) {
        if on {
            self.power.woke(self.screen.as_mut());
            pacer.invalidate();
        } else if self.power.went_dark(self.screen.as_mut()) {
            self.show_black();
        }
    }

    /// Shows one black frame (made for the occasion: switches are rare).
    fn show_black(&mut self) {
        let (width, height) = self.screen.size();
        let black = Canvas::new(width, height);
        self.copy_all = true;
        if let Err(e) = self.screen.present(&black, Damage::All) {
            log::warn!("cannot show the black frame: {e}");
        }
    }

    /// One turn while the screen is dark: waits for an event or the next
    /// check, takes in what came (in batches of [`DARK_BATCH`]), draws
    /// nothing. `Some` when the render loop ends.
    fn rest(&mut self, rx: &Receiver<BoardMsg>, now: Instant) -> Option<Ended> {
        match rx.recv_timeout(self.power.wait(now).min(MAX_QUIET)) {
            Ok(msg) => {
                let now_ms = self.clock.at(Instant::now());
                self.take(msg, now_ms);
                std::thread::sleep(DARK_BATCH.min(self.power.wait(Instant::now())));
                self.drain(rx)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Ended::Shutdown),
        }
    }

    /// Takes in everything queued; `Some(Shutdown)` when the hub is gone.
    fn drain(&mut self, rx: &Receiver<BoardMsg>) -> Option<Ended> {
        let now_ms = self.clock.at(Instant::now());
        loop {
            match rx.try_recv() {
                Ok(msg) => self.take(msg, now_ms),
                Err(std::sync::mpsc::TryRecvError::Empty) => return None,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return Some(Ended::Shutdown),
            }
        }
    }

    fn take(&mut self, msg: BoardMsg, now_ms: u64) {
        match msg {
            BoardMsg::Event(event) => self.state.apply(&event, now_ms),
            BoardMsg::Resync(events) => {
                let mut state = self.fresh.clone();
                state.set_clients(self.state.clients());
                state.set_utc_offset_minutes(self.state.utc_offset_minutes());
                state.set_clock_offset_ms(self.state.clock_offset_ms());
                state.set_qr(self.state.qr().cloned());
                for event in &events {
                    state.apply(event, now_ms);
                }
                self.state = state;
            }
        }
    }

    /// Shows what `Shown::redraw` drew: the pixels of the frame that
    /// changed, or only the rectangles it redrew (mapped to the screen);
    /// everything when the screen may have lost the frame or every
    /// [`COPY_ALL_EVERY`]; nothing when nothing was redrawn.
    fn show_redrawn<E>(
        &mut self,
        target: &mut Rotated<Canvas>,
        redrawn: Result<Redrawn<'_>, E>,
        started: Instant,
    ) {
        let copy_all =
            self.copy_all || started.duration_since(self.copied_all_at) >= COPY_ALL_EVERY;
        match redrawn {
            Ok(Redrawn::Whole) => {
                let damage = if copy_all {
                    Damage::All
                } else {
                    Damage::Changed
                };
                self.show(target, damage, started, false);
            }
            Ok(Redrawn::Areas(drawn)) if !drawn.is_empty() => {
                if copy_all {
                    self.show(target, Damage::All, started, true);
                    return;
                }
                let mut areas = [Rectangle::zero(); MAX_AREAS];
                for (area, drawn) in areas.iter_mut().zip(drawn) {
                    *area = target.map_rect(drawn);
                }
                self.show(target, Damage::Areas(&areas[..drawn.len()]), started, true);
            }
            Ok(Redrawn::Areas(_)) | Err(_) => {}
        }
    }

    /// Presents the frame; once shown, its changes are cleared (the
    /// screen holds them), and a failure makes the next present whole.
    fn show(
        &mut self,
        target: &mut Rotated<Canvas>,
        damage: Damage<'_>,
        started: Instant,
        partial: bool,
    ) {
        match self.screen.present(target.inner(), damage) {
            Ok(()) => {
                self.shared.stats.record(started.elapsed(), partial);
                target.inner_mut().clear_changes();
                if damage == Damage::All {
                    self.copy_all = false;
                    self.copied_all_at = started;
                }
            }
            Err(e) => {
                self.copy_all = true;
                self.shared
                    .stats
                    .present_errors
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(held) = self.present_warning.should_log(Instant::now()) {
                    log::warn!("cannot show the board: {e} ({held} more since the last warning)");
                }
            }
        }
    }

    fn target(&self, (width, height): (u32, u32)) -> Rotated<Canvas> {
        let margin = if self.settings.pixel_shift {
            (width.min(height) * SHIFT_PER_1000 / 1000).max(2)
        } else {
            0
        };
        Rotated::new(Canvas::new(width, height), self.settings.rotation)
            .with_shift(margin, Point::zero())
    }
}

/// Whole frames at most this often, however fast prices change: a board is
/// read, not watched, and five changes a second is more than anyone reads
/// across a room, while each whole frame at 1080p costs several
/// milliseconds of a Pi's core (at 100 updates/s, 10 frames a second cost
/// this machine 5 % of a core, 5 a second half that). A change shows within
/// 200 ms. The news line and the clock move at up to `fps_max` regardless.
pub const WHOLE_FRAME_GAP: Duration = Duration::from_millis(200);

/// What the render loop does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameDue {
    /// Draw and show what changed anywhere on the board now: the bands of
    /// the rows that changed, or the whole frame when something outside
    /// the rows did (`board::damage`).
    Full,
    /// Redraw and show just the header (the clock's second turned) and/or
    /// the news strip (it scrolls).
    Strips {
        /// Redraw the header.
        header: bool,
        /// Redraw the news line.
        news: bool,
    },
    /// Nothing can be drawn for this long (nothing is due, or a frame-rate
    /// cap holds the next frame back): take in events meanwhile.
    Wait(Duration),
}

/// When to draw what. Pure: time is passed in. See the module docs.
#[derive(Debug)]
struct FramePacer {
    /// From `fps_max` (and the backend): between any two frames.
    min_gap: Duration,
    /// Between two whole frames.
    full_gap: Duration,
    last_frame: Option<Instant>,
    last_full: Option<Instant>,
    /// Something changed since the last whole frame.
    dirty: bool,
    /// Until when the last whole frame's rows stay right.
    rows_until_ms: u64,
    /// The second the header's clock shows.
    shown_second: u64,
    /// The last whole frame had a news line (so its strip is in place).
    news_in_full: bool,
}

impl FramePacer {
    fn new(min_gap: Duration) -> FramePacer {
        FramePacer {
            min_gap,
            full_gap: min_gap.max(WHOLE_FRAME_GAP),
            last_frame: None,
            last_full: None,
            dirty: true,
            rows_until_ms: 0,
            shown_second: 0,
            news_in_full: false,
        }
    }

    /// The state changed: a whole frame is due.
    fn invalidate(&mut self) {
        self.dirty = true;
    }

    fn next(&self, state: &BoardState, now: Instant, now_ms: u64) -> FrameDue {
        let full = self.dirty
            || now_ms >= self.rows_until_ms
            || state.flashing(now_ms)
            || state.scrolling() != self.news_in_full;
        let header = now_ms / 1_000 != self.shown_second;
        let news = state.scrolling() && self.news_in_full;
        let after = |last: Option<Instant>, gap: Duration| {
            last.map_or(now, |t: Instant| (t + gap).max(now))
        };
        let frame_ready = after(self.last_frame, self.min_gap);
        let full_ready = after(self.last_full, self.full_gap).max(frame_ready);
        if full && now >= full_ready {
            return FrameDue::Full;
        }
        if (header || news) && now >= frame_ready {
            return FrameDue::Strips { header, news };
        }
        // Something is due but held back by a cap: the strips' cap comes
        // first (the whole-frame one is never earlier).
        if header || news {
            return FrameDue::Wait(frame_ready - now);
        }
        if full {
            return FrameDue::Wait(full_ready - now);
        }
        let until = self.rows_until_ms.min((now_ms / 1_000 + 1) * 1_000);
        FrameDue::Wait(Duration::from_millis(until.saturating_sub(now_ms).max(1)))
    }

    fn drawn_full(&mut self, state: &BoardState, now: Instant, now_ms: u64) {
        self.last_frame = Some(now);
        self.last_full = Some(now);
        self.dirty = false;
        self.rows_until_ms = state.next_rows_change_ms(now_ms);
        self.shown_second = now_ms / 1_000;
        self.news_in_full = state.scrolling();
    }

    fn drawn_strips(&mut self, now: Instant, now_ms: u64, header: bool) {
        self.last_frame = Some(now);
        if header {
            self.shown_second = now_ms / 1_000;
        }
    }
}

/// Minutes east of UTC for local time at `now_ms` (the TZ environment
/// variable or /etc/localtime), read by `schedule::zone` as the schedule
/// reads it, so the header's clock and the opening hours agree.
fn local_offset_minutes(now_ms: u64) -> i32 {
    zone::offset_minutes(&zone::local(), now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::testing::{NOW, board_config, tick};
    use crate::event::{Body, News};

    fn event(seq: u64, ts: u64, body: Body) -> Event {
        Event { seq, ts, body }
    }

    fn board() -> BoardState {
        let mut state = BoardState::new(&board_config(&[]), &["feed"]);
        state.apply(&event(1, NOW, tick("BTCUSDT", "67012.50")), NOW);
        state
    }

    const GAP: Duration = Duration::from_millis(33);

    /// Runs the render loop on its own thread, on `screen`, from `state`
    /// (rows from `config`): no schedule (the screen stays on), 30 frames
    /// a second at most, no rotation or pixel shift.
    fn start_run(
        screen: impl Screen + Send + 'static,
        config: crate::config::BoardConfig,
        state: BoardState,
    ) -> (BoardFeed, std::thread::JoinHandle<Ended>) {
        let (feed, inbox) = crate::board::feed::channel("test");
        let thread = std::thread::spawn(move || {
            let display =
                crate::config::Config::defaults_in(std::path::Path::new("/nonexistent")).display;
            let power = power::Power::new(&display, &Choice::None, inbox.sideband.clone());
            let mut run = Run {
                power,
                screen: Box::new(screen),
                fresh: BoardState::new(&config, &["feed"]),
                state,
                settings: Settings {
                    fps_max: 30,
                    rotation: Rotation::None,
                    pixel_shift: false,
                },
                font: None,
                shared: inbox.sideband,
                heart: Heartbeat::new("renderer"),
                present_warning: RateLimited::new(Duration::from_secs(60)),
                clock: BoardClock::new(wall_ms(), Instant::now()),
                auto_qr: None,
                copy_all: true,
                copied_all_at: Instant::now(),
            };
            run.run(inbox.messages)
        });
        (feed, thread)
    }

    /// A screen that tells the test what each present changed: `None` for
    /// a whole frame.
    struct Recorder {
        size: (u32, u32),
        presents: std::sync::mpsc::Sender<Option<Vec<Rectangle>>>,
    }

    impl Screen for Recorder {
        fn size(&self) -> (u32, u32) {
            self.size
        }

        fn present(&mut self, _: &Canvas, damage: Damage<'_>) -> Result<(), DisplayError> {
            let areas = match damage {
                Damage::All | Damage::Changed => None,
                Damage::Areas(areas) => Some(areas.to_vec()),
            };
            let _ = self.presents.send(areas);
            Ok(())
        }
    }

    #[test]
    fn a_tick_presents_only_the_band_of_its_row() {
        let size = (800, 480);
        let config = board_config(&["AAA", "BBB", "CCC"]);
        let mut state = BoardState::new(&config, &["feed"]);
        let wall = wall_ms();
        for (seq, symbol) in ["AAA", "BBB", "CCC"].into_iter().enumerate() {
            state.restore(&event(seq as u64, wall - 5_000, tick(symbol, "101.00")));
        }
        let mut after = state.clone();
        let live = event(9, wall, tick("BBB", "102.00"));
        after.apply(&live, wall);
        let layout = crate::board::layout::Layout::new(
            &after,
            crate::board::Painter::new().text(),
            embedded_graphics::prelude::Size::new(size.0, size.1),
            wall,
        );
        let (band, header) = (layout.row_rect(1), layout.header);
        let (presents_tx, presents) = std::sync::mpsc::channel();
        let screen = Recorder {
            size,
            presents: presents_tx,
        };
        let (mut feed, thread) = start_run(screen, config, state);
        let next = || {
            presents
                .recv_timeout(Duration::from_secs(10))
                .expect("a frame")
        };
        assert_eq!(next(), None, "the first frame is whole");
        feed.offer(&live, Vec::new);
        // Header strips may come first (the clock's second); then the
        // tick's frame: the band of its row, and at most the header.
        let areas = loop {
            let areas = next().expect("only parts of the frame");
            if areas != [header] {
                break areas;
            }
        };
        assert!(areas.contains(&band), "{areas:?} has {band:?}");
        assert!(
            areas.iter().all(|a| *a == band || *a == header),
            "{areas:?}: only {band:?} and {header:?}"
        );
        drop(feed);
        assert_eq!(thread.join().unwrap(), Ended::Shutdown);
    }

    /// A screen that keeps what it was sent as the framebuffer does (all
    /// of it, or only the changed pixels within the areas or anywhere)
    /// and tells the test after each present whether that equals the
    /// frame, and how many pixels it took.
    struct Copier {
        size: (u32, u32),
        held: Canvas,
        /// Set by the test: the next present fails halfway.
        fail_next: Arc<std::sync::atomic::AtomicBool>,
        /// Whether the screen equals the frame, and the pixels copied
        /// (`None` for a present that failed).
        presents: std::sync::mpsc::Sender<(bool, Option<usize>)>,
    }

    impl Screen for Copier {
        fn size(&self) -> (u32, u32) {
            self.size
        }

        fn present(&mut self, frame: &Canvas, damage: Damage<'_>) -> Result<(), DisplayError> {
            if self.fail_next.swap(false, Ordering::Relaxed) {
                // Something reached the screen, then the copy failed.
                self.held.pixels[..frame.pixels.len() / 2].fill(0x00ab_cdef);
                let _ = self.presents.send((false, None));
                return Err(DisplayError::Window("a test failure".into()));
            }
            let size = embedded_graphics::prelude::Size::new(frame.width, frame.height);
            let whole = [Rectangle::new(Point::zero(), size)];
            let (areas, changed_only) = match damage {
                Damage::All => (&whole[..], false),
                Damage::Areas(areas) => (areas, true),
                Damage::Changed => (&whole[..], true),
            };
            let mut copied = 0;
            for area in areas {
                let x0 = area.top_left.x as u32;
                let x1 = x0 + area.size.width;
                for y in area.rows() {
                    let y = y as u32;
                    let (from, to) = match frame.changed_in_line(y) {
                        _ if !changed_only => (x0, x1),
                        Some(span) if span.start < x1 && span.end > x0 => {
                            (span.start.max(x0), span.end.min(x1))
                        }
                        _ => continue,
                    };
                    let at = (y * frame.width) as usize;
                    self.held.pixels[at + from as usize..at + to as usize]
                        .copy_from_slice(&frame.pixels[at + from as usize..at + to as usize]);
                    copied += (to - from) as usize;
                }
            }
            let _ = self.presents.send((self.held == *frame, Some(copied)));
            Ok(())
        }
    }

    #[test]
    fn the_screen_always_holds_the_frame_though_only_changes_are_copied() {
        let size = (800, 480);
        let symbols = ["AAA", "BBB", "CCC"];
        let config = board_config(&symbols);
        let wall = wall_ms();
        let mut state = BoardState::new(&config, &["feed"]);
        for (seq, symbol) in symbols.into_iter().enumerate() {
            state.restore(&event(seq as u64, wall - 5_000, tick(symbol, "101.00")));
        }
        let (presents_tx, presents) = std::sync::mpsc::channel();
        let fail_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let screen = Copier {
            size,
            held: Canvas::new(size.0, size.1),
            fail_next: fail_next.clone(),
            presents: presents_tx,
        };
        let (mut feed, thread) = start_run(screen, config, state);
        let next = || {
            presents
                .recv_timeout(Duration::from_secs(10))
                .expect("a frame")
        };
        let whole = (size.0 * size.1) as usize;
        assert_eq!(
            next(),
            (true, Some(whole)),
            "the first frame is copied whole"
        );
        // Ticks (row bands), then news (a whole frame): each present
        // leaves the screen equal to the frame, and copies less than all.
        let mut seq = 10;
        for price in ["102.00", "103.50", "99.25"] {
            for symbol in symbols {
                feed.offer(&event(seq, wall_ms(), tick(symbol, price)), Vec::new);
                seq += 1;
            }
            let (same, copied) = next();
            assert!(same, "after ticks to {price}");
            let copied = copied.expect("a present that worked");
            assert!(
                copied < whole,
                "{copied} of {whole} pixels copied for ticks"
            );
        }
        // A present fails, leaving the screen scribbled on: the next one
        // copies everything.
        fail_next.store(true, Ordering::Relaxed);
        feed.offer(&event(seq, wall_ms(), tick("AAA", "105.00")), Vec::new);
        seq += 1;
        assert_eq!(next(), (false, None));
        assert_eq!(
            next(),
            (true, Some(whole)),
            "the frame after a failure is whole"
        );
        let news = Body::News(News {
            title: "Markets open".into(),
            url: None,
            source: "test".into(),
        });
        feed.offer(&event(seq, wall_ms(), news), Vec::new);
        // The next frames (the news's whole frame among them) all match.
        for _ in 0..4 {
            let (same, copied) = next();
            assert!(same, "after the news ({copied:?} pixels copied)");
        }
        drop(feed);
        assert_eq!(thread.join().unwrap(), Ended::Shutdown);
    }

    #[test]
    fn the_first_frame_is_whole_and_immediate() {
        let pacer = FramePacer::new(GAP);
        assert_eq!(pacer.next(&board(), Instant::now(), NOW), FrameDue::Full);
    }

    #[test]
    fn with_nothing_moving_only_the_clock_redraws_once_a_second() {
        let state = board();
        let mut pacer = FramePacer::new(GAP);
        let t0 = Instant::now();
        // After the flash has ended, 200 ms into a second.
        let ms = NOW + 1_200;
        assert!(ms > NOW + FLASH);
        pacer.drawn_full(&state, t0, ms);
        match pacer.next(&state, t0, ms) {
            FrameDue::Wait(wait) => assert_eq!(wait, Duration::from_millis(800)),
            other => panic!("{other:?}"),
        }
        let t1 = t0 + Duration::from_millis(800);
        assert_eq!(
            pacer.next(&state, t1, ms + 800),
            FrameDue::Strips {
                header: true,
                news: false
            }
        );
        pacer.drawn_strips(t1, ms + 800, true);
        assert!(matches!(
            pacer.next(&state, t1, ms + 800),
            FrameDue::Wait(_)
        ));
    }

    /// Far enough after `NOW` for the first tick's flash to have ended.
    const FLASH: u64 = crate::board::state::FLASH_MS;

    #[test]
    fn events_make_whole_frames_at_most_five_a_second() {
        let mut state = board();
        let mut pacer = FramePacer::new(GAP);
        let t0 = Instant::now();
        let ms = NOW + FLASH + 100;
        pacer.drawn_full(&state, t0, ms);
        state.apply(&event(2, ms + 10, tick("BTCUSDT", "67013.00")), ms + 10);
        pacer.invalidate();
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(
            pacer.next(&state, t1, ms + 10),
            FrameDue::Wait(WHOLE_FRAME_GAP - Duration::from_millis(10))
        );
        let t2 = t0 + WHOLE_FRAME_GAP;
        assert_eq!(pacer.next(&state, t2, ms + 100), FrameDue::Full);
    }

    #[test]
    fn the_news_scrolls_at_the_frame_cap_between_whole_frames() {
        let mut state = board();
        let news = Body::News(News {
            title: "Markets calm".into(),
            url: None,
            source: "demo".into(),
        });
        let ms = NOW + FLASH + 100;
        state.apply(&event(2, ms, news), ms);
        let mut pacer = FramePacer::new(GAP);
        let t0 = Instant::now();
        // The news line is new: it needs a whole frame to make room.
        assert_eq!(pacer.next(&state, t0, ms), FrameDue::Full);
        pacer.drawn_full(&state, t0, ms);
        assert_eq!(pacer.next(&state, t0, ms), FrameDue::Wait(GAP));
        let t1 = t0 + GAP;
        assert_eq!(
            pacer.next(&state, t1, ms + 33),
            FrameDue::Strips {
                header: false,
                news: true
            }
        );
        pacer.drawn_strips(t1, ms + 33, false);
        // An event now waits for the whole-frame gap; the strip goes on.
        pacer.invalidate();
        let t2 = t1 + GAP;
        assert_eq!(
            pacer.next(&state, t2, ms + 66),
            FrameDue::Strips {
                header: false,
                news: true
            }
        );
        pacer.drawn_strips(t2, ms + 66, false);
        let t3 = t0 + WHOLE_FRAME_GAP;
        assert_eq!(pacer.next(&state, t3, ms + 100), FrameDue::Full);
    }

    #[test]
    fn a_png_is_written_at_most_once_a_second() {
        let state = board();
        let mut pacer = FramePacer::new(Duration::from_secs(1));
        let t0 = Instant::now();
        pacer.drawn_full(&state, t0, NOW);
        pacer.invalidate();
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(
            pacer.next(&state, t1, NOW + 500),
            FrameDue::Wait(Duration::from_millis(500))
        );
        assert_eq!(
            pacer.next(&state, t0 + Duration::from_secs(1), NOW + 1_000),
            FrameDue::Full
        );
    }
}
