//! The whole board, drawn from a [`BoardState`] and a time.
//!
//! [`draw`] paints one complete frame for the target's size: the header
//! (title, offline notice, feed dots, client count, page, clock), the
//! critical-alert band, column captions when they are needed, the rows of
//! the current page and the scrolling news line. The same state and time
//! always give the same pixels.
//!
//! [`Painter`] carries what survives between frames: the fonts with their
//! glyph cache, and scratch space for the sparklines, so a steady-state
//! frame allocates nothing. Keep one per renderer.
//!
//! `board::draw` never does I/O, never reads the clock (time comes in as
//! `now_ms`, the time zone as the state's UTC offset), and never reads
//! pixels back from the target: text is blended onto the colour this module
//! knows it painted underneath.

use std::fmt::Write;

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::{DrawTarget, Point, Primitive, Size};
use embedded_graphics::primitives::{
    Circle, PrimitiveStyle, Rectangle, RoundedRectangle, Triangle,
};
use embedded_graphics::{Drawable, Pixel};

use super::calendar::{DateCache, local_day};
use super::layout::{self, Layout};
use super::numbers::{Line, Numbers, localized};
use super::qr;
use super::state::{BoardState, Row, SPARK_LEN, Trend, age_label};
use super::text::{Align, Text, TextStyle, Weight, is_rtl_text};
use super::theme::{DARK, Theme, mix};
use super::words::words;
use crate::config::Column;

/// How strongly a fresh flash tints its row, out of 256.
const FLASH_TINT: f32 = 64.0;

/// How far stale text fades towards the background, out of 256.
const STALE_FADE: u32 = 150;

/// Smallest a text is shrunk to fit its box, as a fraction of its size;
/// below that it is cut with an ellipsis instead.
const MIN_SHRINK: f32 = 0.7;

/// What survives between frames: the fonts and glyph cache, and scratch
/// space. See the module docs.
#[derive(Debug)]
pub struct Painter {
    text: Text,
    theme: Theme,
    /// Sparkline heights, reused.
    heights: Vec<f32>,
    /// The header's date, formatted once a day.
    dates: DateCache,
}

impl Default for Painter {
    fn default() -> Self {
        Self::new()
    }
}

impl Painter {
    /// A painter with the bundled fonts and the dark theme.
    pub fn new() -> Painter {
        Painter::with_text(Text::new())
    }

    /// A painter with other fonts.
    pub fn with_text(text: Text) -> Painter {
        Painter {
            text,
            theme: DARK,
            heights: Vec::with_capacity(SPARK_LEN),
            dates: DateCache::default(),
        }
    }

    /// The fonts and glyph cache.
    pub fn text(&self) -> &Text {
        &self.text
    }

    /// The colours drawn with.
    pub(crate) fn theme(&self) -> &Theme {
        &self.theme
    }
}

/// Draws the whole board for `state` at `now_ms` onto `target`, at the
/// target's size (800×480 up to 3840×2160 and beyond). For a rotated or
/// shifted screen, pass a [`super::Rotated`] target.
pub fn draw<D>(
    state: &BoardState,
    now_ms: u64,
    painter: &mut Painter,
    target: &mut D,
) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let size = target.bounding_box().size;
    let layout = Layout::new(state, &painter.text, size, now_ms);
    draw_laid_out(state, now_ms, painter, target, &layout)
}

/// [`draw`] with the layout already worked out (`Layout::new` for the same
/// state, time and target size).
pub(crate) fn draw_laid_out<D>(
    state: &BoardState,
    now_ms: u64,
    painter: &mut Painter,
    target: &mut D,
    layout: &Layout,
) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    target.clear(painter.theme.background)?;
    let mut frame = Drawing::new(state, now_ms, painter, target, layout);
    frame.header(state)?;
    frame.alert(state)?;
    frame.captions(state)?;
    frame.rows(state)?;
    frame.qr(state)?;
    frame.news(state)
}

/// Redraws only the news line for `now_ms`, exactly as [`draw`] would draw
/// it there, and returns its rectangle in the target's coordinates (`None`
/// when there is no news line; through a [`super::Rotated`] target, map it
/// with [`super::Rotated::map_rect`]).
///
/// For frames where nothing but the marquee moved (no event, no flash, the
/// clock still in the same second): a backend can redraw and present just
/// this strip, a few percent of the screen.
pub fn draw_news<D>(
    state: &BoardState,
    now_ms: u64,
    painter: &mut Painter,
    target: &mut D,
) -> Result<Option<Rectangle>, D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let size = target.bounding_box().size;
    let layout = Layout::new(state, &painter.text, size, now_ms);
    news_laid_out(state, now_ms, painter, target, &layout)
}

/// [`draw_news`] with the layout already worked out.
pub(crate) fn news_laid_out<D>(
    state: &BoardState,
    now_ms: u64,
    painter: &mut Painter,
    target: &mut D,
    layout: &Layout,
) -> Result<Option<Rectangle>, D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    Drawing::new(state, now_ms, painter, target, layout).news(state)?;
    Ok(layout.news)
}

/// Redraws only the header (title, offline notice, feed dots, clients,
/// page, clock) for `now_ms`, exactly as [`draw`] would draw it there, and
/// returns its rectangle in the target's coordinates.
///
/// For frames where only the clock's second turned: a backend can redraw
/// and present just this strip.
pub fn draw_header<D>(
    state: &BoardState,
    now_ms: u64,
    painter: &mut Painter,
    target: &mut D,
) -> Result<Rectangle, D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let size = target.bounding_box().size;
    let layout = Layout::new(state, &painter.text, size, now_ms);
    header_laid_out(state, now_ms, painter, target, &layout)
}

/// [`draw_header`] with the layout already worked out.
pub(crate) fn header_laid_out<D>(
    state: &BoardState,
    now_ms: u64,
    painter: &mut Painter,
    target: &mut D,
    layout: &Layout,
) -> Result<Rectangle, D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    Drawing::new(state, now_ms, painter, target, layout).header(state)?;
    Ok(layout.header)
}

/// Redraws the row in `slot` of the page shown at `now_ms` (its band, with
/// the rule between panels where it crosses the band), exactly as [`draw`]
/// would draw it there, and returns the band in the target's coordinates.
/// `layout` is `Layout::new` for the same state, time and target size, and
/// `slot` one of the page's (`Layout::page_rows`).
///
/// For frames where only some rows changed: nothing outside a row's band
/// depends on that row, as long as the layout is the same (column widths
/// come from every row's values, which `board::damage` checks).
pub(crate) fn draw_row<D>(
    state: &BoardState,
    now_ms: u64,
    painter: &mut Painter,
    target: &mut D,
    layout: &Layout,
    slot: usize,
) -> Result<Rectangle, D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let rows = state.rows();
    let page = state.page_at(now_ms, layout.pages);
    let shown = &rows[layout.page_rows(page, rows.len())];
    let area = layout.row_rect(slot);
    let mut frame = Drawing::new(state, now_ms, painter, target, layout);
    let theme = frame.theme();
    frame.fill(area, theme.background)?;
    if let Some(row) = shown.get(slot) {
        frame.row(state, row, slot)?;
    }
    for rule in panel_rules(layout) {
        frame.fill(rule.intersection(&area), theme.rule)?;
    }
    Ok(frame.target.rect(&area))
}

/// What a row's picture depends on besides its content and its place:
/// its background (stripe and flash), whether it is drawn stale, and the
/// note under its label. Time changes these with no event; the row's
/// content changes only with its `Row::changed` stamp. `board::damage`
/// compares both to tell which rows need redrawing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowLook {
    /// Behind the row.
    pub bg: Rgb888,
    /// Dimmed as stale.
    pub stale: bool,
    /// Under the label.
    pub note: Note,
}

/// The small text under a row's label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// Nothing: a fresh row.
    None,
    /// A stale row's age, as `age_label` gives it.
    Age(u64, char),
    /// A stale row stamped in the future: "age unknown".
    AgeUnknown,
    /// A row with no price yet.
    NoData,
}

/// The look of `row` in `slot` at `now_ms` (see [`RowLook`]).
pub(crate) fn row_look(
    theme: &Theme,
    layout: &Layout,
    state: &BoardState,
    row: &Row,
    slot: usize,
    now_ms: u64,
) -> RowLook {
    let line = slot % layout.per_panel.max(1);
    let mut bg = if line % 2 == 1 {
        theme.stripe
    } else {
        theme.background
    };
    if let Some((trend, strength)) = row.flash_at(now_ms) {
        let tint = match trend {
            Trend::Up => theme.up,
            Trend::Down => theme.down,
            Trend::Flat => theme.flat,
        };
        bg = mix(bg, tint, (strength * FLASH_TINT) as u32);
    }
    let stale = row.is_stale(now_ms, state.stale_after_ms());
    let note = if stale {
        match row.age_ms(now_ms) {
            Some(age) => {
                let (n, unit) = age_label(age);
                Note::Age(n, unit)
            }
            None => Note::AgeUnknown,
        }
    } else if row.price.is_none() {
        Note::NoData
    } else {
        Note::None
    };
    RowLook { bg, stale, note }
}

/// One frame being drawn.
struct Drawing<'a, D> {
    target: Mirror<'a, D>,
    /// The board reads right to left (the mirror may be off for a cell).
    layout_rtl: bool,
    painter: &'a mut Painter,
    layout: &'a Layout,
    now_ms: u64,
}

impl<'a, D: DrawTarget<Color = Rgb888>> Drawing<'a, D> {
    fn new(
        state: &BoardState,
        now_ms: u64,
        painter: &'a mut Painter,
        target: &'a mut D,
        layout: &'a Layout,
    ) -> Self {
        Drawing {
            target: Mirror::new(target, state.rtl()),
            layout_rtl: state.rtl(),
            painter,
            layout,
            now_ms,
        }
    }

    fn theme(&self) -> Theme {
        self.painter.theme
    }

    fn fill(&mut self, area: Rectangle, color: Rgb888) -> Result<(), D::Error> {
        self.target.fill_solid(&area, color)
    }

    /// Draws `text` in `style` with its baseline at `anchor`, shrunk (down
    /// to [`MIN_SHRINK`]) and then cut with an ellipsis to fit `max_width`.
    /// Returns the width drawn.
    fn text(
        &mut self,
        text: &str,
        anchor: Point,
        align: Align,
        style: TextStyle,
        max_width: i32,
        clip: &Rectangle,
    ) -> Result<i32, D::Error> {
        let width = self.painter.text.measure(text, &style);
        if width <= max_width {
            return self.draw_text(text, anchor, align, &style, clip);
        }
        let shrunk = (style.size as f32 * max_width.max(0) as f32 / width as f32).floor();
        if shrunk >= style.size as f32 * MIN_SHRINK {
            let style = TextStyle {
                size: shrunk.max(1.0) as u32,
                ..style
            };
            return self.draw_text(text, anchor, align, &style, clip);
        }
        let style = TextStyle {
            size: ((style.size as f32 * MIN_SHRINK) as u32).max(1),
            ..style
        };
        let fonts = &self.painter.text;
        let ellipsis = fonts.measure("…", &style);
        // Character by character (kerning aside, which the clip absorbs),
        // so a long text costs one pass, not one per character.
        let (mut end, mut used) = (0, ellipsis);
        for (i, c) in text.char_indices() {
            let next = i + c.len_utf8();
            used += fonts.measure(&text[i..next], &style);
            if used > max_width {
                break;
            }
            end = next;
        }
        let cut = text[..end].trim_end();
        let width = fonts.measure(cut, &style) + ellipsis;
        let left = match align {
            Align::Left => anchor.x,
            Align::Center => anchor.x - width / 2,
            Align::Right => anchor.x - width,
        };
        // Right-to-left text is cut at its end, on the left of the screen;
        // on a mirrored board the left of the screen is the right here.
        if is_rtl_text(text) != self.target.on {
            self.draw_text("…", Point::new(left, anchor.y), Align::Left, &style, clip)?;
            self.draw_text(
                cut,
                Point::new(left + ellipsis, anchor.y),
                Align::Left,
                &style,
                clip,
            )?;
        } else {
            let drawn =
                self.draw_text(cut, Point::new(left, anchor.y), Align::Left, &style, clip)?;
            self.draw_text(
                "…",
                Point::new(left + drawn, anchor.y),
                Align::Left,
                &style,
                clip,
            )?;
        }
        Ok(width)
    }

    /// Draws `text` as it is (no shrinking), mirroring where it goes (not
    /// its glyphs) on a right-to-left board. Returns the advance width.
    fn draw_text(
        &mut self,
        text: &str,
        anchor: Point,
        align: Align,
        style: &TextStyle,
        clip: &Rectangle,
    ) -> Result<i32, D::Error> {
        let anchor = Point::new(self.target.x(anchor.x), anchor.y);
        let align = self.target.align(align);
        let clip = self.target.rect(clip);
        self.painter
            .text
            .draw_text(&mut *self.target.inner, text, anchor, align, style, &clip)
    }

    /// A baseline that centres capital letters (or digits) of `size` on
    /// `center_y`.
    fn centred_baseline(&self, center_y: i32, size: u32, weight: Weight) -> i32 {
        center_y + self.painter.text.cap_height(size, weight) / 2
    }

    fn header(&mut self, state: &BoardState) -> Result<(), D::Error> {
        let theme = self.theme();
        let l = self.layout;
        let area = l.header;
        let bg = theme.header;
        self.fill(area, bg)?;
        let rule = ((2.0 * l.scale).round() as u32).max(1);
        self.fill(
            Rectangle::new(
                Point::new(0, bottom(&area) - rule as i32),
                Size::new(area.size.width, rule),
            ),
            theme.rule,
        )?;
        let center = area.top_left.y + (area.size.height as i32 - rule as i32) / 2;
        let width = area.size.width as i32;
        let pad = l.pad;
        let gap = (24.0 * l.scale).round() as i32;
        let style = |size, weight, color, tabular| TextStyle {
            size,
            weight,
            color,
            background: bg,
            tabular,
        };

        // The clock, on the right.
        let clock_style = style(l.sizes.clock, Weight::Bold, theme.text, true);
        let mut clock = Line::new();
        if state.clock_not_set() {
            clock.push_str(words(state.language()).clock_not_set);
        } else {
            clock_text(
                &mut clock,
                self.now_ms.saturating_add_signed(state.clock_offset_ms()),
                state.utc_offset_minutes(),
                true,
                state.numbers(),
            );
        }
        let baseline = self.centred_baseline(center, l.sizes.clock, Weight::Bold);
        let clock_width = self.text(
            clock.as_str(),
            Point::new(width - pad, baseline),
            Align::Right,
            clock_style,
            width,
            &area,
        )?;
        let mut right = width - pad - clock_width - 2 * gap;

        // Today's date in the board's calendar, before the clock; none
        // while the clock is not set. The header is redrawn each second,
        // so the date turns with the clock at local midnight, and at once
        // after a clock step.
        let small_baseline = self.centred_baseline(center, l.sizes.header_small, Weight::Regular);
        if !state.clock_not_set() {
            let wall = self.now_ms.saturating_add_signed(state.clock_offset_ms());
            let day = local_day(wall, state.utc_offset_minutes());
            let date = localized(state.numbers(), self.painter.dates.get(state.date(), day));
            if !date.is_empty() {
                let date_style = style(l.sizes.header_small, Weight::Bold, theme.text, true);
                right -= self.text(
                    date.as_str(),
                    Point::new(right, small_baseline),
                    Align::Right,
                    date_style,
                    width,
                    &area,
                )? + 2 * gap;
            }
        }

        // Page and clients, right to left.
        let words = words(state.language());
        let small = style(l.sizes.header_small, Weight::Regular, theme.muted, true);
        let mut line = Line::new();
        if l.pages > 1 {
            let page = state.page_at(self.now_ms, l.pages);
            let _ = write!(line, "{} {}/{}", words.page, page + 1, l.pages);
            right -= self.text(
                localized(state.numbers(), line.as_str()).as_str(),
                Point::new(right, small_baseline),
                Align::Right,
                small,
                width,
                &area,
            )? + 2 * gap;
        }
        line.clear();
        let _ = words.clients(&mut line, state.clients() as u64);
        right -= self.text(
            localized(state.numbers(), line.as_str()).as_str(),
            Point::new(right, small_baseline),
            Align::Right,
            small,
            width,
            &area,
        )? + 2 * gap;

        // The title, on the left, and the offline notice after it.
        let title_style = style(l.sizes.title, Weight::Bold, theme.text, false);
        let title_baseline = self.centred_baseline(center, l.sizes.title, Weight::Bold);
        let title_max = (right - pad) / 2;
        let mut left =
            pad + self.text(
                state.title(),
                Point::new(pad, title_baseline),
                Align::Left,
                title_style,
                title_max,
                &area,
            )? + 2 * gap;
        if let Some(since) = state.offline_since() {
            left += self.offline_pill(since, state, left, center)? + 2 * gap;
        }

        // One dot per feed, with its name when there is room.
        let feeds = state.feeds();
        let dot = ((18.0 * l.scale).round() as u32).max(4);
        let name_style = style(l.sizes.header_small, Weight::Regular, theme.muted, false);
        let named: i32 = feeds
            .iter()
            .map(|f| dot as i32 + gap / 2 + self.painter.text.measure(&f.name, &name_style) + gap)
            .sum();
        let with_names = named <= right - left;
        let total = if with_names {
            named
        } else {
            feeds.len() as i32 * (dot as i32 + gap / 2)
        };
        let mut x = (right - total).max(left);
        for feed in feeds {
            if x + dot as i32 > right {
                break;
            }
            let color = match feed.state {
                crate::event::FeedState::Up => theme.up,
                crate::event::FeedState::Down => theme.down,
                crate::event::FeedState::Connecting => theme.warning,
            };
            Circle::new(Point::new(x, center - dot as i32 / 2), dot)
                .into_styled(PrimitiveStyle::with_fill(color))
                .draw(&mut self.target)?;
            x += dot as i32 + gap / 2;
            if with_names {
                x += self.text(
                    &feed.name,
                    Point::new(x, small_baseline),
                    Align::Left,
                    name_style,
                    right - x,
                    &area,
                )? + gap;
            }
        }
        Ok(())
    }

    /// "OFFLINE since HH:MM" in a red pill starting at `left`; returns its
    /// width.
    fn offline_pill(
        &mut self,
        since: u64,
        state: &BoardState,
        left: i32,
        center: i32,
    ) -> Result<i32, D::Error> {
        let theme = self.theme();
        let l = self.layout;
        let size = l.sizes.header_small;
        let mut line = Line::new();
        line.push_str(words(state.language()).offline_since);
        clock_text(
            &mut line,
            since,
            state.utc_offset_minutes(),
            false,
            state.numbers(),
        );
        let style = TextStyle {
            size,
            weight: Weight::Bold,
            color: theme.alert_text,
            background: theme.alert,
            tabular: true,
        };
        let text_width = self.painter.text.measure(line.as_str(), &style);
        let cap = self.painter.text.cap_height(size, Weight::Bold);
        let pad_x = cap;
        let height = cap * 2 + cap / 2;
        let pill = Rectangle::new(
            Point::new(left, center - height / 2),
            Size::new((text_width + 2 * pad_x) as u32, height as u32),
        );
        RoundedRectangle::with_equal_corners(pill, Size::new(height as u32 / 2, height as u32 / 2))
            .into_styled(PrimitiveStyle::with_fill(theme.alert))
            .draw(&mut self.target)?;
        let baseline = center + cap / 2;
        let clip = pill;
        self.draw_text(
            line.as_str(),
            Point::new(left + pad_x, baseline),
            Align::Left,
            &style,
            &clip,
        )?;
        Ok(pill.size.width as i32)
    }

    fn alert(&mut self, state: &BoardState) -> Result<(), D::Error> {
        let Some(area) = self.layout.alert else {
            return Ok(());
        };
        let mut alerts = state.critical_alerts(self.now_ms);
        let Some(latest) = alerts.next() else {
            return Ok(());
        };
        let more = alerts.count();
        let theme = self.theme();
        let l = self.layout;
        let bg = theme.alert;
        self.fill(area, bg)?;
        let center = area.top_left.y + area.size.height as i32 / 2;
        let size = l.sizes.alert;
        let cap = self.painter.text.cap_height(size, Weight::Bold);
        let baseline = center + cap / 2;

        // A warning sign: a white triangle with a "!" in it.
        let side = cap * 2;
        let x = l.pad;
        let top = center - side * 7 / 16;
        Triangle::new(
            Point::new(x + side / 2, top),
            Point::new(x + side, top + side * 7 / 8),
            Point::new(x, top + side * 7 / 8),
        )
        .into_styled(PrimitiveStyle::with_fill(theme.alert_text))
        .draw(&mut self.target)?;
        let mark = TextStyle {
            size: (size as f32 * 0.8) as u32,
            weight: Weight::Bold,
            color: bg,
            background: theme.alert_text,
            tabular: false,
        };
        self.draw_text(
            "!",
            Point::new(x + side / 2, top + side * 7 / 8 - side / 10),
            Align::Center,
            &mark,
            &area,
        )?;

        // Time (and how many more) on the right.
        let meta = TextStyle {
            size: l.sizes.header_small,
            weight: Weight::Regular,
            color: mix(theme.alert_text, bg, 60),
            background: bg,
            tabular: true,
        };
        let mut line = Line::new();
        clock_text(
            &mut line,
            latest.ts,
            state.utc_offset_minutes(),
            false,
            state.numbers(),
        );
        if more > 0 {
            let mut raw = Line::new();
            let _ = write!(raw, "  +{more} {}", words(state.language()).more);
            let _ = state.numbers().write(&mut line, raw.as_str());
        }
        let width = area.size.width as i32;
        let meta_width = self.text(
            line.as_str(),
            Point::new(
                width - l.pad,
                self.centred_baseline(center, meta.size, Weight::Regular),
            ),
            Align::Right,
            meta,
            width / 3,
            &area,
        )?;
        let text_left = x + side + cap;
        let style = TextStyle {
            size,
            weight: Weight::Bold,
            color: theme.alert_text,
            background: bg,
            tabular: false,
        };
        self.text(
            &latest.text,
            Point::new(text_left, baseline),
            Align::Left,
            style,
            width - l.pad - meta_width - cap - text_left,
            &area,
        )?;
        Ok(())
    }

    fn captions(&mut self, state: &BoardState) -> Result<(), D::Error> {
        let Some(area) = self.layout.captions else {
            return Ok(());
        };
        let theme = self.theme();
        let l = self.layout;
        let style = TextStyle {
            size: l.sizes.caption,
            weight: Weight::Bold,
            color: theme.muted,
            background: theme.background,
            tabular: false,
        };
        let baseline = area.top_left.y + area.size.height as i32 * 2 / 3;
        for panel in 0..l.panels as i32 {
            let x0 = panel * l.panel_width;
            for cell in l.cells.iter().flatten() {
                // Over its column's numbers, which do not mirror (see `row`).
                let column = self.target.rect(&Rectangle::new(
                    Point::new(x0 + cell.x, area.top_left.y),
                    Size::new(cell.width.max(0) as u32, area.size.height),
                ));
                let (x, width) = (column.top_left.x, cell.width);
                let (anchor, align) = match cell.column {
                    Column::Sparkline => (x + width / 2, Align::Center),
                    _ => (x + width, Align::Right),
                };
                let mirrored = std::mem::replace(&mut self.target.on, false);
                let drawn = self.text(
                    layout::caption(cell.column, state.language()),
                    Point::new(anchor, baseline),
                    align,
                    style,
                    cell.width,
                    &area,
                );
                self.target.on = mirrored;
                drawn?;
            }
        }
        let rule = ((1.5 * l.scale).round() as u32).max(1);
        self.fill(
            Rectangle::new(
                Point::new(0, bottom(&area) - rule as i32),
                Size::new(area.size.width, rule),
            ),
            theme.rule,
        )
    }

    fn rows(&mut self, state: &BoardState) -> Result<(), D::Error> {
        let l = self.layout;
        let rows = state.rows();
        if rows.is_empty() {
            return self.waiting(state);
        }
        let page = state.page_at(self.now_ms, l.pages);
        for (slot, row) in rows[l.page_rows(page, rows.len())].iter().enumerate() {
            self.row(state, row, slot)?;
        }
        // A rule between panels.
        let theme = self.theme();
        for rule in panel_rules(l) {
            self.fill(rule, theme.rule)?;
        }
        Ok(())
    }

    /// The board before any price has arrived.
    fn waiting(&mut self, state: &BoardState) -> Result<(), D::Error> {
        let theme = self.theme();
        let l = self.layout;
        let style = TextStyle {
            size: l.sizes.label,
            weight: Weight::Regular,
            color: theme.muted,
            background: theme.background,
            tabular: false,
        };
        let center = l.rows.top_left.y + l.rows.size.height as i32 / 2;
        let baseline = self.centred_baseline(center, style.size, Weight::Regular);
        let width = l.size.width as i32;
        self.text(
            words(state.language()).waiting,
            Point::new(width / 2, baseline),
            Align::Center,
            style,
            width - 2 * l.pad,
            &l.rows,
        )?;
        Ok(())
    }

    fn row(&mut self, state: &BoardState, row: &Row, slot: usize) -> Result<(), D::Error> {
        let theme = self.theme();
        let l = self.layout;
        let area = l.row_rect(slot);
        let RowLook { bg, stale, note } = row_look(&theme, l, state, row, slot, self.now_ms);
        if bg != theme.background {
            self.fill(area, bg)?;
        }
        let fade = |c: Rgb888| if stale { mix(c, bg, STALE_FADE) } else { c };
        let x0 = area.top_left.x;
        let center = area.top_left.y + area.size.height as i32 / 2;
        let s = l.sizes;

        // Label, with the age of a stale row (or a note for an empty one)
        // under it.
        let label_style = TextStyle {
            size: s.label,
            weight: Weight::Bold,
            color: fade(theme.text),
            background: bg,
            tabular: false,
        };
        let mut sub = Line::new();
        let sub_color = match note {
            Note::Age(n, unit) => {
                let mut raw = Line::new();
                let _ = words(state.language()).age(&mut raw, n, unit);
                let _ = state.numbers().write(&mut sub, raw.as_str());
                theme.warning
            }
            Note::AgeUnknown => {
                sub.push_str(words(state.language()).age_unknown);
                theme.warning
            }
            Note::NoData => {
                sub.push_str(words(state.language()).no_data);
                theme.muted
            }
            Note::None => theme.muted,
        };
        let label_cap = self.painter.text.cap_height(s.label, Weight::Bold);
        let label_left = x0 + l.label_x;
        if sub.is_empty() {
            self.text(
                &row.label,
                Point::new(label_left, center + label_cap / 2),
                Align::Left,
                label_style,
                l.label_width,
                &area,
            )?;
        } else {
            let sub_cap = self.painter.text.cap_height(s.sub, Weight::Regular);
            let gap = sub_cap * 3 / 4;
            let top = center - (label_cap + gap + sub_cap) / 2;
            self.text(
                &row.label,
                Point::new(label_left, top + label_cap),
                Align::Left,
                label_style,
                l.label_width,
                &area,
            )?;
            let sub_style = TextStyle {
                size: s.sub,
                weight: Weight::Regular,
                color: sub_color,
                background: bg,
                tabular: true,
            };
            self.text(
                sub.as_str(),
                Point::new(label_left, top + label_cap + gap + sub_cap),
                Align::Left,
                sub_style,
                l.label_width,
                &area,
            )?;
        }

        for cell in l.cells.iter().flatten() {
            let cell_area = Rectangle::new(
                Point::new(x0 + cell.x, area.top_left.y),
                Size::new(cell.width.max(0) as u32, area.size.height),
            );
            // Numbers, changes and sparklines read left to right in every
            // language: on a right-to-left board the cell moves, its
            // contents do not mirror (digits stay right-aligned so their
            // places line up, the sparkline's time runs left to right).
            let cell_area = self.target.rect(&cell_area);
            let mirrored = std::mem::replace(&mut self.target.on, false);
            let drawn = match cell.column {
                Column::Price | Column::Bid | Column::Ask => {
                    let (value, size) = match cell.column {
                        Column::Price => (&row.price, s.price),
                        Column::Bid => (&row.bid, s.quote),
                        _ => (&row.ask, s.quote),
                    };
                    let color = fade(theme.text);
                    self.number(
                        state.numbers(),
                        value.as_deref(),
                        size,
                        cell_area,
                        color,
                        bg,
                    )
                }
                Column::Volume => {
                    self.volume(state.numbers(), row, cell_area, fade(theme.muted), bg)
                }
                Column::Change => self.change(state.numbers(), row, cell_area, stale, bg),
                Column::Sparkline => self.sparkline(row, cell_area, stale, bg),
            };
            self.target.on = mirrored;
            drawn?;
        }
        Ok(())
    }

    /// A large tabular number, right-aligned and centred vertically.
    fn number(
        &mut self,
        numbers: &Numbers,
        value: Option<&str>,
        size: u32,
        cell: Rectangle,
        color: Rgb888,
        bg: Rgb888,
    ) -> Result<(), D::Error> {
        let theme = self.theme();
        let (text, color) = match value {
            Some(v) => (localized(numbers, v), color),
            None => (localized(numbers, "—"), mix(theme.muted, bg, 100)),
        };
        let text = text.as_str();
        let style = TextStyle {
            size,
            weight: Weight::Bold,
            color,
            background: bg,
            tabular: true,
        };
        let center = cell.top_left.y + cell.size.height as i32 / 2;
        let baseline = center + self.painter.text.digit_height(size, Weight::Bold) / 2;
        let right = cell.top_left.x + cell.size.width as i32;
        let clip = widen(&cell, self.layout.pad / 2);
        self.text(
            text,
            Point::new(right, baseline),
            Align::Right,
            style,
            cell.size.width as i32,
            &clip,
        )?;
        Ok(())
    }

    fn volume(
        &mut self,
        numbers: &Numbers,
        row: &Row,
        area: Rectangle,
        color: Rgb888,
        bg: Rgb888,
    ) -> Result<(), D::Error> {
        let size = self.layout.sizes.volume;
        let style = TextStyle {
            size,
            weight: Weight::Regular,
            color,
            background: bg,
            tabular: true,
        };
        let center = area.top_left.y + area.size.height as i32 / 2;
        let baseline = center + self.painter.text.digit_height(size, Weight::Regular) / 2;
        let right = area.top_left.x + area.size.width as i32;
        self.text(
            localized(numbers, row.volume.as_deref().unwrap_or("—")).as_str(),
            Point::new(right, baseline),
            Align::Right,
            style,
            area.size.width as i32,
            &area,
        )?;
        Ok(())
    }

    /// Change against the open over the change in percent, coloured by
    /// direction, with an arrow.
    fn change(
        &mut self,
        numbers: &Numbers,
        row: &Row,
        area: Rectangle,
        stale: bool,
        bg: Rgb888,
    ) -> Result<(), D::Error> {
        let theme = self.theme();
        let color = match row.trend {
            Trend::Up => theme.up,
            Trend::Down => theme.down,
            Trend::Flat => theme.flat,
        };
        let color = if stale {
            mix(color, bg, STALE_FADE)
        } else {
            color
        };
        let size = self.layout.sizes.change;
        let style = TextStyle {
            size,
            weight: Weight::Bold,
            color,
            background: bg,
            tabular: true,
        };
        let cap = self.painter.text.digit_height(size, Weight::Bold);
        let center = area.top_left.y + area.size.height as i32 / 2;
        let right = area.top_left.x + area.size.width as i32;
        let width = area.size.width as i32;
        let gap = cap * 7 / 10;
        let (first, second) = match (&row.change, &row.change_pct) {
            (Some(_), Some(_)) => (center - gap / 2, Some(center + gap / 2 + cap)),
            _ => (center + cap / 2, None),
        };
        let pct_baseline = second.unwrap_or(first);
        let rtl = |s: &str, percent: bool| {
            let mut line = Line::new();
            let _ = numbers.write_rtl(&mut line, s, percent);
            line
        };
        if let Some(change) = &row.change {
            let text = if self.layout_rtl {
                rtl(change, false)
            } else {
                localized(numbers, change)
            };
            self.text(
                text.as_str(),
                Point::new(right, first),
                Align::Right,
                style,
                width,
                &area,
            )?;
        }
        if let Some(pct) = row.change_pct.as_deref().filter(|_| self.layout_rtl) {
            // One text: the percent sign sits on the left (see
            // `Numbers::write_rtl`), the arrow left of it.
            let pct_width = self.text(
                rtl(pct, true).as_str(),
                Point::new(right, pct_baseline),
                Align::Right,
                style,
                width - cap * 2,
                &area,
            )?;
            self.arrow(
                row.trend,
                right - pct_width - cap / 2,
                pct_baseline,
                cap,
                color,
            )?;
        } else if let Some(pct) = &row.change_pct {
            let mut sign = [0; 4];
            let sign = numbers.percent().encode_utf8(&mut sign);
            let percent = self.painter.text.measure(sign, &style);
            self.draw_text(
                sign,
                Point::new(right, pct_baseline),
                Align::Right,
                &style,
                &area,
            )?;
            let pct_width = self.text(
                localized(numbers, pct).as_str(),
                Point::new(right - percent, pct_baseline),
                Align::Right,
                style,
                width - percent - cap * 2,
                &area,
            )?;
            let arrow_right = right - percent - pct_width - cap / 2;
            self.arrow(row.trend, arrow_right, pct_baseline, cap, color)?;
        }
        if row.change.is_none() && row.change_pct.is_none() {
            let muted = TextStyle {
                color: mix(theme.muted, bg, 100),
                ..style
            };
            self.text(
                "—",
                Point::new(right, first),
                Align::Right,
                muted,
                width,
                &area,
            )?;
        }
        Ok(())
    }

    /// A small triangle pointing up or down (a bar for flat) ending at
    /// `right`, sitting on `baseline`, `cap` tall.
    fn arrow(
        &mut self,
        trend: Trend,
        right: i32,
        baseline: i32,
        cap: i32,
        color: Rgb888,
    ) -> Result<(), D::Error> {
        let w = cap;
        let h = cap * 3 / 4;
        let top = baseline - cap / 2 - h / 2;
        let fill = PrimitiveStyle::with_fill(color);
        match trend {
            Trend::Up => Triangle::new(
                Point::new(right - w, top + h),
                Point::new(right, top + h),
                Point::new(right - w / 2, top),
            )
            .into_styled(fill)
            .draw(&mut self.target),
            Trend::Down => Triangle::new(
                Point::new(right - w, top),
                Point::new(right, top),
                Point::new(right - w / 2, top + h),
            )
            .into_styled(fill)
            .draw(&mut self.target),
            Trend::Flat => {
                let bar = (cap / 6).max(1);
                self.fill(
                    Rectangle::new(
                        Point::new(right - w, baseline - cap / 2 - bar / 2),
                        Size::new(w as u32, bar as u32),
                    ),
                    color,
                )
            }
        }
    }

    /// Recent prices as a line over a soft fill, with the open as a dashed
    /// line. Heights go through `f64`: only pixels, never a shown price.
    ///
    /// Drawn column by column: the fill from the line down, then the line
    /// as a vertical span per column whose ends are blended onto what is
    /// known to be there (the row above the line, the fill below it). This
    /// anti-aliases the line and costs a few rectangles per column, where
    /// embedded-graphics' thick polyline cost most of a frame.
    fn sparkline(
        &mut self,
        row: &Row,
        cell: Rectangle,
        stale: bool,
        bg: Rgb888,
    ) -> Result<(), D::Error> {
        let history = row.history();
        let n = history.len();
        if n < 2 {
            return Ok(());
        }
        let theme = self.theme();
        let color = match row.trend {
            Trend::Up => theme.up,
            Trend::Down => theme.down,
            Trend::Flat => theme.flat,
        };
        let color = if stale {
            mix(color, bg, STALE_FADE)
        } else {
            color
        };
        let value = |d: crate::decimal::Decimal| d.mantissa as f64 / 10_f64.powi(d.scale as i32);
        let open = row
            .open
            .as_deref()
            .and_then(crate::decimal::Decimal::parse)
            .map(value);
        let (mut low, mut high) = history
            .clone()
            .map(value)
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if let Some(open) = open {
            // Keep the open in view when it is near, so the line reads
            // against it.
            let span = (high - low).max(high.abs() * 1e-4);
            if open >= low - span && open <= high + span {
                low = low.min(open);
                high = high.max(open);
            }
        }
        let stroke = (3.0 * self.layout.row_scale).max(1.5);
        let inset = (cell.size.height as f32 * 0.2).max(stroke);
        let top = cell.top_left.y as f32 + inset;
        let height = (cell.size.height as f32 - 2.0 * inset).max(1.0);
        let floor = (cell.top_left.y + cell.size.height as i32) as f32 - inset * 0.6;
        let y_of = |v: f64| {
            if high > low {
                top + ((high - v) / (high - low)) as f32 * height
            } else {
                top + height / 2.0
            }
        };
        let ys = &mut self.painter.heights;
        ys.clear();
        ys.extend(history.map(|v| y_of(value(v))));
        let left = cell.top_left.x;
        let width = cell.size.width as i32;
        let under = mix(bg, color, 48);
        // The line's height at column `x` (0 ..= width - 1).
        let line_at = |x: i32| {
            let t = x as f32 * (n - 1) as f32 / (width - 1).max(1) as f32;
            let i = (t.floor() as usize).min(n - 2);
            let f = t - i as f32;
            ys[i] + (ys[i + 1] - ys[i]) * f
        };
        for x in 0..width {
            let (a, b) = (line_at(x), line_at((x + 1).min(width - 1)));
            let (span_top, span_bottom) = (a.min(b) - stroke / 2.0, a.max(b) + stroke / 2.0);
            let column = left + x;
            let fill_from = span_bottom.floor() as i32;
            self.target.fill_solid(
                &Rectangle::new(
                    Point::new(column, fill_from),
                    Size::new(1, (floor as i32 - fill_from).max(0) as u32),
                ),
                under,
            )?;
            let solid_top = span_top.ceil() as i32;
            let solid_bottom = span_bottom.floor() as i32;
            if solid_bottom > solid_top {
                self.target.fill_solid(
                    &Rectangle::new(
                        Point::new(column, solid_top),
                        Size::new(1, (solid_bottom - solid_top) as u32),
                    ),
                    color,
                )?;
            }
            let coverage = |c: f32| (c.clamp(0.0, 1.0) * 256.0) as u32;
            self.target.draw_iter([
                Pixel(
                    Point::new(column, solid_top - 1),
                    mix(bg, color, coverage(solid_top as f32 - span_top)),
                ),
                Pixel(
                    Point::new(column, solid_bottom),
                    mix(under, color, coverage(span_bottom - solid_bottom as f32)),
                ),
            ])?;
        }
        if let Some(open) = open.filter(|o| *o >= low && *o <= high) {
            let y = y_of(open).round() as i32;
            let dash = (6.0 * self.layout.row_scale).round().max(2.0) as i32;
            let dashed = mix(bg, theme.muted, 150);
            let mut x = left;
            while x < left + width {
                // Only where the dash is not under the line.
                let line = line_at(x - left);
                if (line - y as f32).abs() > stroke {
                    self.target.fill_solid(
                        &Rectangle::new(
                            Point::new(x, y),
                            Size::new(dash.min(left + width - x) as u32, 1),
                        ),
                        dashed,
                    )?;
                }
                x += dash * 2;
            }
        }
        // The last price as a dot.
        let d = (stroke * 2.6).round() as u32;
        let last = Point::new(left + width - 1, ys[n - 1].round() as i32);
        Circle::with_center(last, d | 1)
            .into_styled(PrimitiveStyle::with_fill(color))
            .draw(&mut self.target)?;
        Ok(())
    }

    /// The QR code to the web board and its caption (`board::qr`). The
    /// code goes to the mirrored place on a right-to-left board, but its
    /// modules are never mirrored.
    fn qr(&mut self, state: &BoardState) -> Result<(), D::Error> {
        let (Some(place), Some(code)) = (self.layout.qr, state.qr()) else {
            return Ok(());
        };
        let theme = self.theme();
        let style = TextStyle {
            size: self.layout.sizes.header_small,
            weight: Weight::Regular,
            color: theme.muted,
            background: theme.background,
            tabular: false,
        };
        let area = place.caption;
        let (anchor, align) = if place.strip {
            let cap = self.painter.text.cap_height(style.size, Weight::Regular);
            let center = area.top_left.y + area.size.height as i32 / 2;
            (
                Point::new(bottom_right_x(&area), center + cap / 2),
                Align::Right,
            )
        } else {
            let descent = style.size as i32 / 3;
            (
                Point::new(
                    area.top_left.x + area.size.width as i32 / 2,
                    bottom(&area) - descent,
                ),
                Align::Center,
            )
        };
        self.text(
            qr::caption(state.language()),
            anchor,
            align,
            style,
            area.size.width as i32,
            &area,
        )?;
        let card = self.target.rect(&place.card);
        let (light, dark) = qr::light_and_dark(theme.text, theme.background);
        qr::paint(
            &mut *self.target.inner,
            code,
            card,
            place.module,
            light,
            dark,
        )
    }

    fn news(&mut self, state: &BoardState) -> Result<(), D::Error> {
        let Some(area) = self.layout.news else {
            return Ok(());
        };
        let theme = self.theme();
        let l = self.layout;
        let bg = theme.news;
        self.fill(area, bg)?;
        let rule = ((2.0 * l.scale).round() as u32).max(1);
        self.fill(
            Rectangle::new(area.top_left, Size::new(area.size.width, rule)),
            theme.rule,
        )?;
        let center = area.top_left.y + (area.size.height as i32 + rule as i32) / 2;

        // The label box.
        let label_style = TextStyle {
            size: l.sizes.news_label,
            weight: Weight::Bold,
            color: theme.background,
            background: theme.news_label,
            tabular: false,
        };
        let cap = self.painter.text.cap_height(label_style.size, Weight::Bold);
        let news = words(state.language()).news;
        let label_width = self.painter.text.measure(news, &label_style);
        let box_height = cap * 2 + cap / 2;
        let label_box = Rectangle::new(
            Point::new(l.pad, center - box_height / 2),
            Size::new((label_width + 2 * cap) as u32, box_height as u32),
        );
        let radius = (cap / 2).max(1) as u32;
        RoundedRectangle::with_equal_corners(label_box, Size::new(radius, radius))
            .into_styled(PrimitiveStyle::with_fill(theme.news_label))
            .draw(&mut self.target)?;
        self.draw_text(
            news,
            Point::new(l.pad + cap, center + cap / 2),
            Align::Left,
            &label_style,
            &label_box,
        )?;

        // The marquee: every headline, latest first, dot-separated, moving
        // left at a steady speed and wrapping.
        let style = TextStyle {
            size: l.sizes.news,
            weight: Weight::Regular,
            color: theme.text,
            background: bg,
            tabular: false,
        };
        let text_cap = self.painter.text.cap_height(style.size, Weight::Regular);
        let baseline = center + text_cap / 2;
        let left = bottom_right_x(&label_box) + cap * 2;
        let marquee = Rectangle::new(
            Point::new(left, area.top_left.y + rule as i32),
            Size::new(
                (area.size.width as i32 - left).max(0) as u32,
                area.size.height - rule,
            ),
        );
        let separator = text_cap * 3;
        let cycle: i32 = state
            .news()
            .map(|n| self.painter.text.measure(&n.title, &style) + separator)
            .sum();
        if cycle <= 0 {
            return Ok(());
        }
        let speed = l.news_speed.round().max(1.0) as u64;
        let offset = ((self.now_ms.wrapping_mul(speed) / 1000) % cycle as u64) as i32;
        let mut x = left - offset;
        let right = bottom_right_x(&marquee);
        let dot = (text_cap / 3).max(2) as u32;
        while x <= right {
            for item in state.news() {
                let width = self.draw_text(
                    &item.title,
                    Point::new(x, baseline),
                    Align::Left,
                    &style,
                    &marquee,
                )?;
                x += width;
                let dot_at = Point::new(x + separator / 2, center);
                if marquee.contains(dot_at) {
                    Circle::with_center(dot_at, dot)
                        .into_styled(PrimitiveStyle::with_fill(theme.news_label))
                        .draw(&mut self.target)?;
                }
                x += separator;
                if x > right {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// The rules between panels of rows (none with one panel).
fn panel_rules(l: &Layout) -> impl Iterator<Item = Rectangle> + use<> {
    let (panel_width, top, height) = (l.panel_width, l.rows.top_left.y, l.rows.size.height);
    let width = ((2.0 * l.scale) as u32).max(1);
    (1..l.panels as i32).map(move |panel| {
        Rectangle::new(
            Point::new(panel * panel_width, top),
            Size::new(width, height),
        )
    })
}

/// `HH:MM:SS` (or `HH:MM`) of `ms` since the epoch, `offset_min` east of
/// UTC.
fn clock_text(out: &mut Line, ms: u64, offset_min: i32, seconds: bool, numbers: &Numbers) {
    let mut raw = Line::new();
    clock_digits(&mut raw, ms, offset_min, seconds);
    let _ = numbers.write(out, raw.as_str());
}

fn clock_digits(out: &mut Line, ms: u64, offset_min: i32, seconds: bool) {
    let secs = (ms / 1000) as i64 + i64::from(offset_min) * 60;
    let day = secs.rem_euclid(86_400);
    let (h, m, s) = (day / 3600, day / 60 % 60, day % 60);
    let _ = if seconds {
        write!(out, "{h:02}:{m:02}:{s:02}")
    } else {
        write!(out, "{h:02}:{m:02}")
    };
}

fn bottom(area: &Rectangle) -> i32 {
    area.top_left.y + area.size.height as i32
}

fn bottom_right_x(area: &Rectangle) -> i32 {
    area.top_left.x + area.size.width as i32
}

/// `area` grown by `by` on the left and right.
fn widen(area: &Rectangle, by: i32) -> Rectangle {
    Rectangle::new(
        area.top_left - Point::new(by, 0),
        Size::new(area.size.width + 2 * by.max(0) as u32, area.size.height),
    )
}

/// The target seen in a vertical mirror while `on`: what is drawn at
/// column x lands at the mirrored column. A right-to-left board draws its
/// header, rows, captions, alert band and news line through it, so the
/// whole layout mirrors; text goes to `inner` at a mirrored place, so the
/// glyphs themselves do not (see `Drawing::draw_text`).
struct Mirror<'a, D> {
    inner: &'a mut D,
    /// Left edge plus right edge of the target: column x maps to
    /// `span - 1 - x`, edge x to `span - x`.
    span: i32,
    on: bool,
}

impl<'a, D: DrawTarget<Color = Rgb888>> Mirror<'a, D> {
    fn new(inner: &'a mut D, on: bool) -> Self {
        let area = inner.bounding_box();
        Mirror {
            span: 2 * area.top_left.x + area.size.width as i32,
            inner,
            on,
        }
    }

    /// Where the edge (not the pixel column) at `x` goes.
    fn x(&self, x: i32) -> i32 {
        if self.on { self.span - x } else { x }
    }

    /// Where `area` goes.
    fn rect(&self, area: &Rectangle) -> Rectangle {
        if self.on {
            let x = self.span - area.top_left.x - area.size.width as i32;
            Rectangle::new(Point::new(x, area.top_left.y), area.size)
        } else {
            *area
        }
    }

    /// How text anchored at a mirrored point aligns.
    fn align(&self, align: Align) -> Align {
        match (self.on, align) {
            (true, Align::Left) => Align::Right,
            (true, Align::Right) => Align::Left,
            (_, align) => align,
        }
    }
}

impl<D: DrawTarget<Color = Rgb888>> embedded_graphics::prelude::Dimensions for Mirror<'_, D> {
    fn bounding_box(&self) -> Rectangle {
        self.inner.bounding_box()
    }
}

impl<D: DrawTarget<Color = Rgb888>> DrawTarget for Mirror<'_, D> {
    type Color = Rgb888;
    type Error = D::Error;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Rgb888>>,
    {
        if !self.on {
            return self.inner.draw_iter(pixels);
        }
        let last = self.span - 1;
        self.inner.draw_iter(
            pixels
                .into_iter()
                .map(|Pixel(at, color)| Pixel(Point::new(last - at.x, at.y), color)),
        )
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Rgb888) -> Result<(), Self::Error> {
        let area = self.rect(area);
        self.inner.fill_solid(&area, color)
    }

    fn clear(&mut self, color: Rgb888) -> Result<(), Self::Error> {
        self.inner.clear(color)
    }
}

#[cfg(test)]
mod tests {
    use embedded_graphics::pixelcolor::RgbColor;
    use embedded_graphics::prelude::OriginDimensions;

    use super::*;
    use crate::board::png::Canvas;
    use crate::board::testing::{NOW, allocations, board_config, demo_board, tick, tick_with_open};
    use crate::event::{Body, Event};

    /// A board of `rows` drawn at `width × height`, with its layout.
    fn drawn(state: &BoardState, now_ms: u64, width: u32, height: u32) -> (Canvas, Layout) {
        let mut painter = Painter::new();
        let mut frame = Canvas::new(width, height);
        draw(state, now_ms, &mut painter, &mut frame).unwrap();
        let layout = Layout::new(state, painter.text(), frame.size(), now_ms);
        (frame, layout)
    }

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

    /// The pixels of `cell` within row `slot`.
    fn pixels(frame: &Canvas, layout: &Layout, slot: usize, column: Column) -> Vec<Rgb888> {
        let row = layout.row_rect(slot);
        let cell = layout
            .cells
            .iter()
            .flatten()
            .find(|c| c.column == column)
            .expect("the column is shown");
        let (x0, y0) = (row.top_left.x + cell.x, row.top_left.y);
        (y0..y0 + row.size.height as i32)
            .flat_map(|y| (x0..x0 + cell.width).map(move |x| (x as u32, y as u32)))
            .map(|(x, y)| frame.pixel(x, y))
            .collect()
    }

    fn brightest(pixels: &[Rgb888]) -> u32 {
        pixels
            .iter()
            .map(|p| u32::from(p.r()) + u32::from(p.g()) + u32::from(p.b()))
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn a_stale_row_is_dimmer_than_a_fresh_one() {
        let mut state = BoardState::new(&board_config(&[]), &["feed"]);
        apply(&mut state, NOW - 120_000, tick("OLD", "1234.56"));
        apply(&mut state, NOW - 1_000, tick("NEW", "1234.56"));
        let (frame, layout) = drawn(&state, NOW, 800, 480);
        let stale = brightest(&pixels(&frame, &layout, 0, Column::Price));
        let fresh = brightest(&pixels(&frame, &layout, 1, Column::Price));
        assert!(stale * 10 < fresh * 7, "stale {stale}, fresh {fresh}");
    }

    #[test]
    fn up_is_green_and_down_is_red_at_the_change() {
        let mut state = BoardState::new(&board_config(&[]), &["feed"]);
        apply(&mut state, NOW, tick_with_open("UP", "101.5", "100"));
        apply(&mut state, NOW, tick_with_open("DOWN", "98.25", "100"));
        apply(&mut state, NOW, tick_with_open("FLAT", "100.00", "100"));
        let (frame, layout) = drawn(&state, NOW + FLASH, 800, 480);
        let lean = |slot| -> i64 {
            pixels(&frame, &layout, slot, Column::Change)
                .iter()
                .map(|p| i64::from(p.g()) - i64::from(p.r()))
                .sum()
        };
        let (up, down, flat) = (lean(0), lean(1), lean(2));
        assert!(up > 10_000, "up leans green: {up}");
        assert!(down < -10_000, "down leans red: {down}");
        assert!(flat.abs() < up / 4, "flat is grey: {flat}");
    }

    /// A frame late enough that no flash tints the rows.
    const FLASH: u64 = crate::board::state::FLASH_MS;

    #[test]
    fn price_digits_are_at_least_48_px_tall_at_1080p() {
        let (state, _) = demo_board(&board_config(&[]), NOW, 0);
        let painter = Painter::new();
        for rows in [16, 64] {
            let mut state = state.clone();
            for n in 16..rows {
                apply(&mut state, NOW, tick(&format!("S{n}"), "1.5"));
            }
            let layout = Layout::new(&state, painter.text(), Size::new(1920, 1080), NOW);
            let height = painter
                .text()
                .digit_height(layout.sizes.price, Weight::Bold);
            assert!(height >= 48, "{rows} rows: {height} px");
        }
    }

    /// Columns never overlap each other or the label, and stay inside
    /// their panel, at every size and for every column set.
    #[test]
    fn cells_never_overlap_and_fit_their_panel() {
        let column_sets = [
            vec![Column::Price, Column::Change, Column::Sparkline],
            vec![Column::Bid, Column::Ask, Column::Change],
            vec![
                Column::Price,
                Column::Bid,
                Column::Ask,
                Column::Change,
                Column::Volume,
                Column::Sparkline,
            ],
        ];
        let painter = Painter::new();
        for columns in column_sets {
            let mut board = board_config(&[]);
            board.columns = columns.clone();
            let (state, _) = demo_board(&board, NOW, 100);
            for (w, h) in [
                (800, 480),
                (480, 800),
                (1280, 720),
                (1920, 1080),
                (1080, 1920),
                (3840, 2160),
            ] {
                let l = Layout::new(&state, painter.text(), Size::new(w, h), NOW);
                let mut right = l.label_x + l.label_width;
                for cell in l.cells.iter().flatten() {
                    assert!(cell.x >= right, "{w}x{h} {columns:?}: {cell:?} overlaps");
                    right = cell.x + cell.width;
                }
                assert!(
                    right <= l.panel_width - l.pad,
                    "{w}x{h} {columns:?}: {right} > {} - {}",
                    l.panel_width,
                    l.pad
                );
                assert!(l.rows.size.height as i32 >= l.row_height * l.per_panel as i32);
            }
        }
    }

    #[test]
    fn the_fast_paths_draw_a_board_exactly_as_pixel_by_pixel_drawing_does() {
        use crate::board::rotate::{Rotated, Rotation};
        use crate::board::testing::PixelByPixel;

        let (mut latin, last) = demo_board(&board_config(&[]), NOW, 200);
        let body = Body::News(crate::event::News {
            title: "A headline long enough to scroll across the bar".into(),
            url: None,
            source: "demo".into(),
        });
        apply(&mut latin, last, body);
        let mut board = board_config(&["USD:دلار آمریکا:0", "COIN:نیم‌سکه:0"]);
        board.locale = "fa".into();
        board.digits = crate::config::Digits::Persian;
        let mut persian = BoardState::new(&board, &["rates"]);
        apply(&mut persian, last, tick_with_open("USD", "58450", "58000"));
        apply(
            &mut persian,
            last,
            tick_with_open("COIN", "25100000", "25200000"),
        );
        let mut painter = Painter::new();
        for state in [&latin, &persian] {
            let mut fast = Canvas::new(960, 540);
            let mut slow = PixelByPixel(Canvas::new(960, 540));
            draw(state, last + 300, &mut painter, &mut fast).unwrap();
            draw(state, last + 300, &mut painter, &mut slow).unwrap();
            assert!(fast == slow.0);
            for rotation in [Rotation::Cw90, Rotation::Cw180] {
                let mut fast =
                    Rotated::new(Canvas::new(540, 960), rotation).with_shift(2, Point::new(2, 2));
                let mut slow = Rotated::new(PixelByPixel(Canvas::new(540, 960)), rotation)
                    .with_shift(2, Point::new(2, 2));
                draw(state, last + 300, &mut painter, &mut fast).unwrap();
                draw(state, last + 300, &mut painter, &mut slow).unwrap();
                assert!(*fast.inner() == slow.inner().0, "{rotation:?}");
            }
        }
    }

    #[test]
    fn a_steady_state_frame_allocates_nothing() {
        let (mut state, last) = demo_board(&board_config(&[]), NOW, 400);
        let body = Body::News(crate::event::News {
            title: "A headline long enough to scroll across the bar".into(),
            url: None,
            source: "demo".into(),
        });
        apply(&mut state, last, body);
        let mut painter = Painter::new();
        let mut frame = Canvas::new(1280, 720);
        for n in 0..20 {
            draw(&state, last + n * 33, &mut painter, &mut frame).unwrap();
        }
        let before = allocations::count();
        for n in 0..20 {
            draw(&state, last + n * 33, &mut painter, &mut frame).unwrap();
        }
        assert_eq!(allocations::count() - before, 0);
    }

    #[test]
    fn a_steady_state_persian_frame_allocates_nothing() {
        let mut board =
            board_config(&["USD:دلار آمریکا:0", "COIN:نیم‌سکه:0", "XAU:طلای ۱۸ عیار (گرم)"]);
        board.locale = "fa".into();
        board.digits = crate::config::Digits::Persian;
        board.columns = vec![Column::Bid, Column::Ask, Column::Change];
        let mut state = BoardState::new(&board, &["rates"]);
        for (symbol, price) in [("USD", "58450"), ("COIN", "25100000"), ("XAU", "3948000.5")] {
            apply(&mut state, NOW, tick_with_open(symbol, price, "58000"));
        }
        let body = Body::News(crate::event::News {
            title: "نرخ حواله درهم امروز ۰٫۲٪ بالا رفت".into(),
            url: None,
            source: "rates".into(),
        });
        apply(&mut state, NOW, body);
        assert!(state.rtl());
        let mut painter = Painter::new();
        let mut frame = Canvas::new(1280, 720);
        for n in 0..20 {
            draw(&state, NOW + n * 33, &mut painter, &mut frame).unwrap();
        }
        let before = allocations::count();
        for n in 0..20 {
            draw(&state, NOW + n * 33, &mut painter, &mut frame).unwrap();
        }
        assert_eq!(allocations::count() - before, 0);
    }

    #[test]
    fn the_news_line_alone_redraws_as_the_whole_board_would() {
        let (mut state, last) = demo_board(&board_config(&[]), NOW, 400);
        let body = Body::News(crate::event::News {
            title: "Markets calm as the Tabloland parliament agrees on lunch".into(),
            url: None,
            source: "demo".into(),
        });
        apply(&mut state, last, body);
        // Same second, no flash running: only the marquee moves.
        let (t0, t1) = (last + 2_000, last + 2_500);
        assert!(!state.rows().iter().any(|r| r.flash_at(t0).is_some()));
        let mut painter = Painter::new();
        let mut partial = Canvas::new(1280, 720);
        draw(&state, t0, &mut painter, &mut partial).unwrap();
        let strip = draw_news(&state, t1, &mut painter, &mut partial).unwrap();
        let mut whole = Canvas::new(1280, 720);
        draw(&state, t1, &mut painter, &mut whole).unwrap();
        assert!(partial == whole);
        let strip = strip.expect("a news line");
        assert_eq!(strip.size.width, 1280);
        assert!(strip.size.height < 720 / 10, "{strip:?}");
        let mut before = Canvas::new(1280, 720);
        draw(&state, t0, &mut painter, &mut before).unwrap();
        assert!(before != whole, "the marquee moved");
    }

    #[test]
    fn the_header_alone_redraws_as_the_whole_board_would_when_the_second_turns() {
        let mut state = BoardState::new(&board_config(&[]), &["feed"]);
        apply(&mut state, NOW, tick("BTCUSDT", "67012.50"));
        apply(&mut state, NOW, tick("ETHUSDT", "3481.60"));
        // Two instants a second apart, with no flash running and no row
        // turning stale: only the clock differs.
        let (t0, t1) = (NOW + 2_000, NOW + 3_000);
        assert!(!state.flashing(t0) && !state.scrolling());
        let mut painter = Painter::new();
        let mut partial = Canvas::new(1280, 720);
        draw(&state, t0, &mut painter, &mut partial).unwrap();
        let strip = draw_header(&state, t1, &mut painter, &mut partial).unwrap();
        let mut whole = Canvas::new(1280, 720);
        draw(&state, t1, &mut painter, &mut whole).unwrap();
        assert!(partial == whole);
        assert_eq!((strip.top_left.y, strip.size.width), (0, 1280));
        assert!(strip.size.height < 720 / 6, "{strip:?}");
        let mut before = Canvas::new(1280, 720);
        draw(&state, t0, &mut painter, &mut before).unwrap();
        assert!(before != whole, "the clock moved");
    }

    #[test]
    fn a_long_label_is_cut_with_an_ellipsis_inside_its_column() {
        let mut state = BoardState::new(
            &board_config(&[
                "X:A label far too long for any board to show in full, however wide the screen is",
            ]),
            &["feed"],
        );
        apply(&mut state, NOW, tick("X", "1.25"));
        let (frame, layout) = drawn(&state, NOW + FLASH, 800, 480);
        let row = layout.row_rect(0);
        let label_end = (layout.label_x + layout.label_width) as u32;
        let first_cell = layout.cells[0].expect("a price cell").x as u32;
        let y0 = row.top_left.y as u32;
        let inked =
            |x: u32| (y0..y0 + row.size.height).any(|y| frame.pixel(x, y) != DARK.background);
        assert!(
            (layout.label_x as u32..label_end).any(inked),
            "the label is drawn"
        );
        assert!(
            !(label_end..first_cell).any(inked),
            "nothing past the label's column"
        );
    }

    #[test]
    fn empty_board_says_it_is_waiting() {
        let state = BoardState::new(&board_config(&[]), &["feed"]);
        let (frame, layout) = drawn(&state, NOW, 800, 480);
        let middle = layout.rows.top_left.y as u32 + layout.rows.size.height / 2;
        let lit = (0..frame.width)
            .filter(|&x| frame.pixel(x, middle) != DARK.background)
            .count();
        assert!(lit > 20, "{lit}");
    }

    #[test]
    fn clock_follows_the_utc_offset() {
        let mut line = Line::new();
        clock_digits(&mut line, NOW, 0, true);
        assert_eq!(line.as_str(), "22:13:20");
        line.clear();
        clock_digits(&mut line, NOW, 210, false);
        assert_eq!(line.as_str(), "01:43");
        line.clear();
        clock_digits(&mut line, NOW, -23 * 60, true);
        assert_eq!(line.as_str(), "23:13:20");
    }
}
