//! Row-level damage: after a whole frame, redraw only what changed.
//!
//! [`Shown`] remembers what the frame on screen was drawn from: the
//! layout, the page, the stamp of everything outside the rows
//! (`BoardState::changed`), how many rows there are and how many critical
//! alerts the band counts; what the header's clock and client count said;
//! when the marquee was drawn; and, for each row slot, which row it holds,
//! that row's `Row::changed` stamp and its look (`draw::RowLook`: stripe
//! and flash, stale, age note). [`Shown::redraw`] compares them with the
//! state at `now_ms`:
//!
//! - when anything outside the rows changed (the layout, which follows
//!   every row's values; news, alerts, feed status, the time zone; a row
//!   added), it draws the whole frame;
//! - when only the page turned, it redraws every row slot's band (an
//!   empty one on a shorter last page) and the header, which numbers the
//!   page;
//! - otherwise it redraws the band of each row whose stamp or look changed
//!   (`draw::draw_row`), the header when its clock second or client count
//!   changed, and the news strip when it scrolled (even when every row
//!   changed, the bands cost less than a whole frame, which would draw the
//!   header and news strip again),
//!
//! and says which rectangles it drew, so a backend copies only those. A
//! frame redrawn this way is, pixel for pixel, the frame `draw::draw`
//! draws for the same state and time.
//!
//! Whoever changes the target behind `Shown`'s back (a new buffer, a pixel
//! shift, a window that lost its pixels, another painter or theme) calls
//! [`Shown::forget`], and the next redraw is whole.
//!
//! This module never does I/O, never reads the clock and allocates
//! nothing: its tables are fixed arrays, [`MAX_AREAS`] rectangles at most.

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::{DrawTarget, Size};
use embedded_graphics::primitives::Rectangle;

use super::draw::{
    Painter, RowLook, draw_laid_out, draw_row, header_laid_out, news_laid_out, row_look,
};
use super::layout::Layout;
use super::state::{BoardState, MAX_ROWS};

/// Most rectangles one redraw reports: a band per row slot (a page shows
/// at most every row), the header and the news line.
pub const MAX_AREAS: usize = MAX_ROWS + 2;

/// What a redraw may draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Whatever changed, up to the whole frame.
    Everything,
    /// Only the header and the news strip, for the frames between two
    /// `Everything` passes (the clock's second, the marquee): changed rows
    /// wait for the next `Everything`, which the renderer paces.
    Strips,
}

/// What a redraw drew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redrawn<'a> {
    /// The whole frame.
    Whole,
    /// Only these rectangles, in the target's coordinates; none when
    /// nothing had changed.
    Areas(&'a [Rectangle]),
}

/// What decides the parts of a frame that are drawn only whole.
#[derive(Clone, Debug, PartialEq)]
struct FrameKey {
    layout: Layout,
    page: usize,
    rows: usize,
    changed: u64,
    alerts: usize,
}

impl FrameKey {
    /// Whether `other` is this frame on another page (compared field by
    /// field: a copy with the page changed would clone the layout).
    fn differs_only_in_page(&self, other: &FrameKey) -> bool {
        let FrameKey {
            layout,
            page: _,
            rows,
            changed,
            alerts,
        } = self;
        *layout == other.layout
            && *rows == other.rows
            && *changed == other.changed
            && *alerts == other.alerts
    }
}

/// What decides the header, beyond the [`FrameKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HeaderKey {
    /// The wall clock's second the clock shows (0 while it is not set).
    second: u64,
    clients: usize,
}

/// Everything `Layout::new` reads, besides the painter's fonts: a layout
/// worked out for an equal key is the same layout. (A new input of
/// `Layout::new` must join this key.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LayoutKey {
    size: Size,
    rows: usize,
    /// `Row::changed` of each row: the values whose widths set the columns.
    stamps: [u64; MAX_ROWS],
    /// `BoardState::changed`: news, alerts and the rest outside the rows.
    changed: u64,
    /// Whether the critical-alert band shows (alerts expire with time).
    alert: bool,
}

impl LayoutKey {
    fn of(state: &BoardState, size: Size, now_ms: u64) -> LayoutKey {
        let mut stamps = [0; MAX_ROWS];
        for (stamp, row) in stamps.iter_mut().zip(state.rows()) {
            *stamp = row.changed();
        }
        LayoutKey {
            size,
            rows: state.rows().len(),
            stamps,
            changed: state.changed(),
            alert: state.critical_alerts(now_ms).next().is_some(),
        }
    }
}

/// What decides one row's band, beyond the [`FrameKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RowKey {
    /// The row's index in `BoardState::rows`.
    index: usize,
    changed: u64,
    look: RowLook,
}

/// What the frame on screen was drawn from. See the module docs. Keep one
/// per target, beside the painter.
#[derive(Clone, Debug)]
pub struct Shown {
    /// `None` until the first whole frame, and after [`Shown::forget`].
    frame: Option<FrameKey>,
    header: Option<HeaderKey>,
    /// When the marquee was last drawn.
    news_ms: Option<u64>,
    /// By slot on the page shown.
    rows: [Option<RowKey>; MAX_ROWS],
    /// What the last redraw drew, reused.
    areas: [Rectangle; MAX_AREAS],
    /// The last layout worked out: frames where no value changed (the
    /// marquee, the clock, a flash fading) do not measure every row again.
    layout: Option<(LayoutKey, Layout)>,
}

impl Default for Shown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shown {
    /// Nothing known on screen: the first redraw is whole.
    pub fn new() -> Shown {
        Shown {
            frame: None,
            header: None,
            news_ms: None,
            rows: [None; MAX_ROWS],
            areas: [Rectangle::zero(); MAX_AREAS],
            layout: None,
        }
    }

    /// The target changed behind our back: the next `Everything` redraw
    /// is whole.
    pub fn forget(&mut self) {
        self.frame = None;
        self.header = None;
        self.news_ms = None;
    }

    /// Which of `BoardState::rows` the frame on screen shows (the page's),
    /// `None` before the first whole frame and after [`Shown::forget`].
    pub fn rows_on_screen(&self) -> Option<std::ops::Range<usize>> {
        let frame = self.frame.as_ref()?;
        Some(frame.layout.page_rows(frame.page, frame.rows))
    }

    /// Draws onto `target` what changed since the frame on screen, for
    /// `state` at `now_ms`, within `scope`, and says what it drew. See the
    /// module docs.
    pub fn redraw<D>(
        &mut self,
        state: &BoardState,
        now_ms: u64,
        painter: &mut Painter,
        target: &mut D,
        scope: Scope,
    ) -> Result<Redrawn<'_>, D::Error>
    where
        D: DrawTarget<Color = Rgb888>,
    {
        let size = target.bounding_box().size;
        let key = LayoutKey::of(state, size, now_ms);
        let layout = match &self.layout {
            Some((known, layout)) if *known == key => layout.clone(),
            _ => {
                let layout = Layout::new(state, painter.text(), size, now_ms);
                self.layout = Some((key, layout.clone()));
                layout
            }
        };
        let page = state.page_at(now_ms, layout.pages);
        let frame = FrameKey {
            layout,
            page,
            rows: state.rows().len(),
            changed: state.changed(),
            alerts: state.critical_alerts(now_ms).count(),
        };
        let header = HeaderKey {
            // A clock that is not set shows words, not the time: its
            // header stays as it is from second to second.
            second: if state.clock_not_set() {
                0
            } else {
                now_ms.saturating_add_signed(state.clock_offset_ms()) / 1_000
            },
            clients: state.clients(),
        };
        let layout = &frame.layout;
        let rows = layout.page_rows(page, state.rows().len());
        let mut n = 0;
        if scope == Scope::Everything {
            if let Some(before) = &mut self.frame
                && before.page != frame.page
                && before.differs_only_in_page(&frame)
            {
                // Only the page turned: every slot shows another row (or
                // none, on a shorter last page), and the header another
                // page number; the captions, the news and the rest stay.
                let slots = before.layout.page_rows(before.page, before.rows).len();
                for slot in rows.len()..slots {
                    self.areas[n] = draw_row(state, now_ms, painter, target, layout, slot)?;
                    n += 1;
                }
                self.rows = [None; MAX_ROWS];
                self.header = None;
                before.page = frame.page;
            }
            if self.frame.as_ref() != Some(&frame) {
                draw_laid_out(state, now_ms, painter, target, layout)?;
                self.header = Some(header);
                self.news_ms = Some(now_ms);
                self.rows = [None; MAX_ROWS];
                for slot in 0..rows.len() {
                    self.rows[slot] = Some(row_key(state, painter, layout, &rows, slot, now_ms));
                }
                self.frame = Some(frame);
                return Ok(Redrawn::Whole);
            }
            for slot in 0..rows.len() {
                let key = row_key(state, painter, layout, &rows, slot, now_ms);
                if self.rows[slot] != Some(key) {
                    self.areas[n] = draw_row(state, now_ms, painter, target, layout, slot)?;
                    self.rows[slot] = Some(key);
                    n += 1;
                }
            }
        }
        if self.header != Some(header) {
            self.areas[n] = header_laid_out(state, now_ms, painter, target, layout)?;
            self.header = Some(header);
            n += 1;
        }
        // The news strip only where the frame on screen has it.
        let on_screen = self.frame.as_ref().and_then(|f| f.layout.news);
        if on_screen.is_some() && on_screen == layout.news && self.news_ms != Some(now_ms) {
            if let Some(area) = news_laid_out(state, now_ms, painter, target, layout)? {
                self.areas[n] = area;
                n += 1;
            }
            self.news_ms = Some(now_ms);
        }
        Ok(Redrawn::Areas(&self.areas[..n]))
    }
}

/// The key of row slot `slot` of the page that shows `rows`.
fn row_key(
    state: &BoardState,
    painter: &Painter,
    layout: &Layout,
    rows: &std::ops::Range<usize>,
    slot: usize,
    now_ms: u64,
) -> RowKey {
    let index = rows.start + slot;
    let row = &state.rows()[index];
    RowKey {
        index,
        changed: row.changed(),
        look: row_look(painter.theme(), layout, state, row, slot, now_ms),
    }
}

#[cfg(test)]
mod tests {
    use embedded_graphics::prelude::{OriginDimensions, Point};

    use super::*;
    use crate::board::draw::draw;
    use crate::board::png::Canvas;
    use crate::board::rotate::{Rotated, Rotation};
    use crate::board::state::{FLASH_MS, SPARK_LEN};
    use crate::board::testing::{NOW, board_config, status, tick_with_open};
    use crate::config::{Column, Digits};
    use crate::event::{Alert, Body, Event, FeedState, Level, News};

    fn apply(state: &mut BoardState, at: u64, body: Body) {
        state.apply(
            &Event {
                seq: 0,
                ts: at,
                body,
            },
            at,
        );
    }

    /// A board of `symbols` with a minute of history each, its flashes
    /// over by `NOW`.
    fn board(symbols: &[&str]) -> BoardState {
        let mut state = BoardState::new(&board_config(symbols), &["feed"]);
        apply(&mut state, NOW - 70_000, status("feed", FeedState::Up));
        for step in 0..SPARK_LEN as u64 {
            for (i, symbol) in symbols.iter().enumerate() {
                let cents = 10_000 + (step * 37 + i as u64 * 101) % 900;
                let price = format!("{}.{:02}", cents / 100, cents % 100);
                let at = NOW - 62_000 + step * 1_000;
                apply(&mut state, at, tick_with_open(symbol, &price, "100.00"));
            }
        }
        state
    }

    fn news(state: &mut BoardState, at: u64, title: &str) {
        let body = Body::News(News {
            title: title.into(),
            url: None,
            source: "test".into(),
        });
        apply(state, at, body);
    }

    /// A frame under test: its pixels, and where a logical area lands.
    trait Screen: DrawTarget<Color = Rgb888, Error = std::convert::Infallible> {
        fn pixels(&self) -> Canvas;
        fn physical(&self, area: &Rectangle) -> Rectangle;
    }

    impl Screen for Canvas {
        fn pixels(&self) -> Canvas {
            self.clone()
        }
        fn physical(&self, area: &Rectangle) -> Rectangle {
            *area
        }
    }

    impl Screen for Rotated<Canvas> {
        fn pixels(&self) -> Canvas {
            self.inner().clone()
        }
        fn physical(&self, area: &Rectangle) -> Rectangle {
            self.map_rect(area)
        }
    }

    /// Redraws `screen` through `shown` for `state` at `now_ms`, checks that
    /// it now holds exactly what a whole frame drawn afresh holds, and that
    /// nothing changed outside the areas reported. `None` for a whole frame.
    #[track_caller]
    fn redraw<F: Screen>(
        shown: &mut Shown,
        painter: &mut Painter,
        screen: &mut F,
        state: &BoardState,
        now_ms: u64,
        fresh: impl Fn() -> F,
    ) -> Option<Vec<Rectangle>> {
        let before = screen.pixels();
        let areas = match shown
            .redraw(state, now_ms, painter, screen, Scope::Everything)
            .unwrap()
        {
            Redrawn::Whole => None,
            Redrawn::Areas(areas) => Some(areas.to_vec()),
        };
        let mut whole = fresh();
        draw(state, now_ms, &mut Painter::new(), &mut whole).unwrap();
        let (after, whole) = (screen.pixels(), whole.pixels());
        let differing = after
            .pixels
            .iter()
            .zip(&whole.pixels)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differing, 0,
            "at {now_ms}: pixels differ from a whole frame"
        );
        if let Some(areas) = &areas {
            let physical: Vec<Rectangle> = areas.iter().map(|a| screen.physical(a)).collect();
            for y in 0..after.height {
                for x in 0..after.width {
                    if after.pixel(x, y) != before.pixel(x, y) {
                        let at = Point::new(x as i32, y as i32);
                        assert!(
                            physical.iter().any(|a| a.contains(at)),
                            "at {now_ms}: {at:?} changed outside {areas:?}"
                        );
                    }
                }
            }
        }
        areas
    }

    fn plain(width: u32, height: u32) -> impl Fn() -> Canvas {
        move || Canvas::new(width, height)
    }

    #[test]
    fn one_changed_row_redraws_only_its_band() {
        let mut state = board(&["AAA", "BBB", "CCC", "DDD", "EEE"]);
        let fresh = plain(1280, 720);
        let (mut shown, mut painter, mut screen) = (Shown::new(), Painter::new(), fresh());
        let t0 = NOW + 100;
        assert_eq!(
            redraw(&mut shown, &mut painter, &mut screen, &state, t0, &fresh),
            None,
            "the first frame is whole"
        );
        let layout = Layout::new(&state, painter.text(), screen.size(), t0);
        // A tick 300 ms later, in the same second: its row's band alone.
        let t1 = t0 + 300;
        apply(&mut state, t1, tick_with_open("CCC", "104.44", "100.00"));
        let band = layout.row_rect(2);
        let mut r =
            |state: &BoardState, t| redraw(&mut shown, &mut painter, &mut screen, state, t, &fresh);
        assert_eq!(r(&state, t1), Some(vec![band]));
        // The flash fades: the band again, and again nothing else.
        assert_eq!(r(&state, t1 + 300), Some(vec![band]));
        // Nothing changed since: nothing drawn.
        assert_eq!(r(&state, t1 + 300), Some(vec![]));
        // The flash is over and the clock's second turned.
        let after = r(&state, t1 + FLASH_MS + 50).expect("not whole");
        assert_eq!(after, vec![band, layout.header]);
        // More clients: the header alone.
        state.set_clients(7);
        assert_eq!(r(&state, t1 + FLASH_MS + 60), Some(vec![layout.header]));
        let screen_lines = band.size.height * 100 / 720;
        assert!(
            screen_lines < 20,
            "a band is {screen_lines} % of the screen"
        );
    }

    #[test]
    fn the_news_strip_is_redrawn_as_it_scrolls_with_the_rows() {
        let mut state = board(&["AAA", "BBB", "CCC"]);
        news(
            &mut state,
            NOW - 1_000,
            "Markets calm as the parliament agrees on lunch",
        );
        let fresh = plain(1280, 720);
        let (mut shown, mut painter, mut screen) = (Shown::new(), Painter::new(), fresh());
        let mut r =
            |state: &BoardState, t| redraw(&mut shown, &mut painter, &mut screen, state, t, &fresh);
        let t0 = NOW + 100;
        assert_eq!(r(&state, t0), None);
        let layout = Layout::new(&state, Painter::new().text(), Size::new(1280, 720), t0);
        let news_strip = layout.news.expect("a news line");
        apply(
            &mut state,
            t0 + 100,
            tick_with_open("AAA", "109.00", "100.00"),
        );
        assert_eq!(
            r(&state, t0 + 100),
            Some(vec![layout.row_rect(0), news_strip])
        );
        // A new headline changes what scrolls: a whole frame.
        news(&mut state, t0 + 150, "Gold steady");
        assert_eq!(r(&state, t0 + 200), None);
    }

    #[test]
    fn a_change_outside_the_rows_redraws_the_whole_frame_a_page_turn_only_the_rows() {
        let symbols: Vec<String> = (0..12).map(|i| format!("S{i:02}")).collect();
        let symbols: Vec<&str> = symbols.iter().map(String::as_str).collect();
        let mut state = board(&symbols);
        let fresh = plain(800, 480);
        let (mut shown, mut painter, mut screen) = (Shown::new(), Painter::new(), fresh());
        let layout = Layout::new(&state, painter.text(), Size::new(800, 480), NOW);
        assert!(layout.pages > 1, "12 rows take pages at 800×480");
        let page_ms = state.page_ms();
        let t0 = (NOW / page_ms + 1) * page_ms + 100;
        let mut r =
            |state: &BoardState, t| redraw(&mut shown, &mut painter, &mut screen, state, t, &fresh);
        assert_eq!(r(&state, t0), None);
        assert_eq!(r(&state, t0 + 100), Some(vec![]));
        // A row on another page changed: nothing to draw.
        let page = state.page_at(t0, layout.pages);
        let hidden = (0..symbols.len())
            .find(|i| !layout.page_rows(page, symbols.len()).contains(i))
            .unwrap();
        apply(
            &mut state,
            t0 + 150,
            tick_with_open(symbols[hidden], "100.01", "100.00"),
        );
        assert_eq!(r(&state, t0 + 200), Some(vec![]));
        // The page turns: every row's band and the header (its page
        // number), not the captions or the rest.
        let turned = r(&state, t0 - 100 + page_ms).expect("bands, not a whole frame");
        let slots = layout.page_rows(page, symbols.len()).len();
        let mut want: Vec<Rectangle> = (0..slots).map(|slot| layout.row_rect(slot)).collect();
        want.push(layout.header);
        assert_eq!(turned, want);
        let t = t0 - 100 + page_ms + 10;
        // A price too wide for its column: the columns move.
        apply(
            &mut state,
            t,
            tick_with_open(symbols[0], "123456789.25", "100.00"),
        );
        assert_eq!(r(&state, t), None);
        // A feed goes down: the header's dots (and maybe the offline pill).
        apply(&mut state, t + 10, status("feed", FeedState::Down));
        assert_eq!(r(&state, t + 10), None);
        // A critical alert: the band opens.
        let alert = Body::Alert(Alert {
            level: Level::Critical,
            text: "Trading halted".into(),
            source: "publish".into(),
            fired: None,
        });
        apply(&mut state, t + 20, alert);
        assert_eq!(r(&state, t + 20), None);
        // The time zone (daylight saving).
        state.set_utc_offset_minutes(60);
        assert_eq!(r(&state, t + 30), None);
        assert_eq!(r(&state, t + 30), Some(vec![]));
    }

    #[test]
    fn a_partial_frame_allocates_nothing() {
        use crate::board::testing::allocations;

        let symbols = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH"];
        let mut start = board(&symbols);
        news(
            &mut start,
            NOW,
            "Markets calm as the parliament agrees on lunch",
        );
        let mut painter = Painter::new();
        // The second pass draws what the first did (the glyph cache is
        // warm), through a new `Shown` on a new screen.
        let mut allocated = Vec::new();
        for _ in 0..2 {
            let mut state = start.clone();
            let (mut shown, mut screen) = (Shown::new(), Canvas::new(1280, 720));
            let (mut count, mut partial) = (0, 0);
            for n in 0..20u64 {
                // A second apart: each tick's row, and the last one's as
                // its flash ends, never the whole page.
                let t = NOW + n * 1_000;
                let price = format!("{}.25", 101 + n % 3);
                apply(
                    &mut state,
                    t,
                    tick_with_open(symbols[n as usize % 8], &price, "100.00"),
                );
                let before = allocations::count();
                let redrawn = shown
                    .redraw(&state, t, &mut painter, &mut screen, Scope::Everything)
                    .unwrap();
                count += allocations::count() - before;
                partial += u32::from(redrawn != Redrawn::Whole);
            }
            // Pages turn every ten seconds: whole frames then.
            assert!(partial >= 15, "{partial} partial frames");
            allocated.push(count);
        }
        assert_eq!(allocated[1], 0, "{allocated:?}");
    }

    #[test]
    fn a_clock_that_is_not_set_redraws_no_header_each_second() {
        let mut state = board(&["AAA", "BBB"]);
        let fresh = plain(800, 480);
        let (mut shown, mut painter, mut screen) = (Shown::new(), Painter::new(), fresh());
        let layout = Layout::new(&state, painter.text(), Size::new(800, 480), NOW);
        let mut r =
            |state: &BoardState, t| redraw(&mut shown, &mut painter, &mut screen, state, t, &fresh);
        assert_eq!(r(&state, NOW), None);
        // Set: each second redraws the header.
        assert_eq!(r(&state, NOW + 1_000), Some(vec![layout.header]));
        apply(
            &mut state,
            NOW + 1_100,
            Body::Clock(crate::event::ClockState::Unsynchronized),
        );
        assert_eq!(r(&state, NOW + 1_200), None, "the header's words change");
        // Not set: the header says so and stays as it is.
        assert_eq!(r(&state, NOW + 2_200), Some(vec![]));
        assert_eq!(r(&state, NOW + 5_200), Some(vec![]));
        apply(
            &mut state,
            NOW + 5_300,
            Body::Clock(crate::event::ClockState::Synchronized),
        );
        assert_eq!(r(&state, NOW + 5_400), None);
        assert_eq!(r(&state, NOW + 6_400), Some(vec![layout.header]));
    }

    #[test]
    fn a_forgotten_screen_gets_a_whole_frame() {
        let state = board(&["AAA"]);
        let fresh = plain(800, 480);
        let (mut shown, mut painter, mut screen) = (Shown::new(), Painter::new(), fresh());
        assert_eq!(
            redraw(&mut shown, &mut painter, &mut screen, &state, NOW, &fresh),
            None
        );
        shown.forget();
        screen = fresh();
        assert_eq!(
            redraw(&mut shown, &mut painter, &mut screen, &state, NOW, &fresh),
            None
        );
    }

    /// Ticks, flashes, ages and pages over a minute and a half, each frame
    /// redrawn through `Shown` and compared with a whole frame.
    #[track_caller]
    fn run_a_market<F: Screen>(mut state: BoardState, symbols: &[&str], fresh: impl Fn() -> F) {
        let (mut shown, mut painter, mut screen) = (Shown::new(), Painter::new(), fresh());
        let (mut whole, mut partial) = (0, 0);
        let mut t = NOW;
        for step in 0..16u64 {
            // Most rows go quiet (and stale after a minute); two keep moving.
            let symbol = symbols[(step % 2) as usize];
            let cents = 10_000 + (step * 53) % 700;
            let price = format!("{}.{:02}", cents / 100, cents % 100);
            apply(&mut state, t, tick_with_open(symbol, &price, "100.00"));
            match redraw(&mut shown, &mut painter, &mut screen, &state, t, &fresh) {
                None => whole += 1,
                Some(_) => partial += 1,
            }
            t += if step % 3 == 0 { 300 } else { 6_900 };
        }
        assert!(
            partial >= 6 && whole >= 1,
            "{partial} partial, {whole} whole frames"
        );
    }

    #[test]
    fn partial_frames_equal_whole_ones_in_panels_and_with_stale_rows() {
        let symbols: Vec<String> = (0..30).map(|i| format!("S{i:02}")).collect();
        let symbols: Vec<&str> = symbols.iter().map(String::as_str).collect();
        let state = board(&symbols);
        let size = (1920, 540);
        let layout = Layout::new(
            &state,
            Painter::new().text(),
            Size::new(size.0, size.1),
            NOW,
        );
        assert!(layout.panels > 1, "{} panels", layout.panels);
        run_a_market(state, &symbols, plain(size.0, size.1));
    }

    #[test]
    fn partial_frames_equal_whole_ones_mirrored_and_rotated() {
        let symbols = ["USD", "EUR", "AED", "COIN", "XAU"];
        let mut config = board_config(&[
            "USD:دلار آمریکا",
            "EUR:یورو",
            "AED:درهم امارات",
            "COIN:نیم‌سکه",
            "XAU:طلای ۱۸ عیار (گرم)",
        ]);
        config.locale = "fa".into();
        config.digits = Digits::Persian;
        // An exchange office's columns, with their captions over the rows.
        config.columns = vec![Column::Bid, Column::Ask, Column::Change, Column::Sparkline];
        let mut state = BoardState::new(&config, &["feed"]);
        for symbol in symbols {
            apply(
                &mut state,
                NOW - 500,
                tick_with_open(symbol, "100.00", "99.00"),
            );
        }
        news(&mut state, NOW - 500, "نرخ حواله درهم امروز ۰٫۲٪ بالا رفت");
        assert!(state.rtl());
        let layout = Layout::new(&state, Painter::new().text(), Size::new(800, 600), NOW);
        assert!(layout.captions.is_some());
        for rotation in [Rotation::None, Rotation::Cw90, Rotation::Cw270] {
            let fresh = move || {
                Rotated::new(Canvas::new(800, 600), rotation).with_shift(3, Point::new(-3, 2))
            };
            run_a_market(state.clone(), &symbols, fresh);
        }
    }

    #[test]
    fn partial_frames_keep_the_qr_code_and_a_new_code_is_a_whole_frame() {
        let code = |url: &str| crate::board::qr::Qr::encode(url).map(std::sync::Arc::new);
        let symbols = ["AAA", "BBB", "CCC", "DDD", "EEE"];
        let mut state = board(&symbols);
        state.set_qr(code("http://192.168.1.20:7070/"));
        let layout = Layout::new(&state, Painter::new().text(), Size::new(1920, 1080), NOW);
        assert!(layout.qr.is_some(), "the code has its place");
        run_a_market(state.clone(), &symbols, plain(1920, 1080));

        // The address moved (DHCP): the layout and the code change together.
        let fresh = plain(1920, 1080);
        let (mut shown, mut painter, mut screen) = (Shown::new(), Painter::new(), fresh());
        assert_eq!(
            redraw(&mut shown, &mut painter, &mut screen, &state, NOW, &fresh),
            None
        );
        state.set_qr(code("http://10.0.0.7:7070/"));
        assert_eq!(
            redraw(
                &mut shown,
                &mut painter,
                &mut screen,
                &state,
                NOW + 10,
                &fresh
            ),
            None,
            "a new code is a whole frame"
        );
        let decoded = crate::board::testing::decode_qr(&screen);
        assert_eq!(decoded, vec!["http://10.0.0.7:7070/".to_owned()]);
    }
}
