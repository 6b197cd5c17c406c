//! Where everything goes on a board of a given size.
//!
//! [`Layout::new`] divides the logical screen into a header, an optional
//! alert band, optional column captions, the rows (in one to three panels,
//! paged when they do not fit) and an optional news bar, and picks text
//! sizes. Everything scales with the screen height, and with the width when
//! that is the tighter side; column widths come from measuring what the rows
//! hold, so nothing is clipped and nothing overlaps.
//!
//! This module never does I/O, never reads the clock and never draws.

use embedded_graphics::prelude::{Point, Size};
use embedded_graphics::primitives::Rectangle;

use super::numbers::localized;
use super::qr::{self, QrPlace};
use super::state::BoardState;
use super::text::{Text, TextStyle, Weight};
use super::theme::DARK;
use crate::config::Column;

/// Design sizes, in pixels of a 1920×1080 board; everything is scaled.
mod design {
    pub const HEADER: f32 = 88.0;
    pub const NEWS: f32 = 64.0;
    pub const ALERT: f32 = 80.0;
    pub const CAPTIONS: f32 = 42.0;
    /// The smallest row height; rows grow up to [`ROW_GROWTH`] times this
    /// when there are few of them.
    pub const ROW: f32 = 96.0;
    pub const PAD: f32 = 36.0;
    pub const GAP: f32 = 40.0;
    pub const TITLE: f32 = 46.0;
    pub const CLOCK: f32 = 46.0;
    pub const HEADER_SMALL: f32 = 28.0;
    pub const LABEL: f32 = 44.0;
    pub const SUB: f32 = 27.0;
    /// Price digits: Vazirmatn's digits are 0.7 em tall, so 80 px draws
    /// 56 px digits, over the 48 px at 1080p of docs/board.md §2.
    pub const PRICE: f32 = 80.0;
    pub const QUOTE: f32 = 68.0;
    pub const CHANGE: f32 = 36.0;
    pub const VOLUME: f32 = 34.0;
    pub const SPARKLINE: f32 = 220.0;
    pub const NEWS_TEXT: f32 = 32.0;
    pub const NEWS_LABEL: f32 = 26.0;
    pub const ALERT_TEXT: f32 = 40.0;
    pub const CAPTION: f32 = 22.0;
    /// Marquee speed in pixels a second.
    pub const NEWS_SPEED: f32 = 110.0;
    pub const LABEL_MIN: f32 = 150.0;
    pub const LABEL_MAX: f32 = 520.0;
}

/// How much taller than [`design::ROW`] rows may grow when there are few.
const ROW_GROWTH: f32 = 1.4;

/// How much larger row text may grow with its rows.
const FONT_GROWTH: f32 = 1.25;

/// Most panels of rows side by side on a very wide screen.
const MAX_PANELS: usize = 3;

/// Text sizes in pixels (em), one per kind of text; the names say where.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sizes {
    pub title: u32,
    pub clock: u32,
    pub header_small: u32,
    pub label: u32,
    pub sub: u32,
    pub price: u32,
    pub quote: u32,
    pub change: u32,
    pub volume: u32,
    pub news: u32,
    pub news_label: u32,
    pub alert: u32,
    pub caption: u32,
}

/// One column of a row: what it shows and where, relative to the panel's
/// left edge. Text in it is right-aligned at `x + width`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell {
    pub column: Column,
    pub x: i32,
    pub width: i32,
}

/// The geometry of one frame. See the module docs. Two equal layouts put
/// everything in the same place (`board::damage` redraws only rows while
/// the layout stays the same).
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Scale against the 1080p design.
    pub scale: f32,
    /// Scale of row contents (grows with the rows, shrinks to fit).
    pub row_scale: f32,
    /// The logical screen.
    pub size: Size,
    /// Title, status and clock.
    pub header: Rectangle,
    /// The critical-alert band, when an alert is shown.
    pub alert: Option<Rectangle>,
    /// Column captions, when the columns need naming.
    pub captions: Option<Rectangle>,
    /// Where the rows go.
    pub rows: Rectangle,
    /// The news line, when there is news.
    pub news: Option<Rectangle>,
    /// The QR code and its caption, when the board shows one: at the end
    /// of the rows (a column beside them, or a strip under them on a
    /// portrait screen), just over the news line.
    pub qr: Option<QrPlace>,
    /// Space at the left and right of a panel (and of the header).
    pub pad: i32,
    /// Panels of rows side by side.
    pub panels: usize,
    /// Width of one panel.
    pub panel_width: i32,
    /// Rows one panel holds on a page.
    pub per_panel: usize,
    /// Pages the rows take.
    pub pages: usize,
    /// Height of one row.
    pub row_height: i32,
    /// Where the label starts, from the panel's left edge.
    pub label_x: i32,
    /// Room for the label.
    pub label_width: i32,
    /// At most one cell per configured column, in order.
    pub cells: [Option<Cell>; 6],
    /// Text sizes.
    pub sizes: Sizes,
    /// Marquee speed, pixels a second.
    pub news_speed: f32,
}

impl Layout {
    /// The layout of `state` on a logical screen of `size` at `now_ms`.
    pub fn new(state: &BoardState, text: &Text, size: Size, now_ms: u64) -> Layout {
        let (w, h) = (size.width as f32, size.height as f32);
        let scale = base_scale(w, h);
        let px = |v: f32| (v * scale).round() as i32;

        let header_h = px(design::HEADER);
        let alert_h = if state.critical_alerts(now_ms).next().is_some() {
            px(design::ALERT)
        } else {
            0
        };
        let captions_h = if needs_captions(state.columns()) {
            px(design::CAPTIONS)
        } else {
            0
        };
        let news_h = if state.news().len() > 0 {
            px(design::NEWS)
        } else {
            0
        };
        let top = header_h + alert_h + captions_h;
        let mut area_h = (size.height as i32 - top - news_h).max(1);
        let row_min = px(design::ROW).max(1);

        let pad = px(design::PAD);
        // The QR code's corner comes out of the rows' area.
        let qr = state.qr().and_then(|code| {
            let caption_h = px(design::HEADER_SMALL * 1.8);
            qr::place(code, size, scale, pad, (top, top + area_h), caption_h)
        });
        let mut rows_w = size.width as i32;
        match qr {
            Some(place) if place.strip => area_h = (area_h - place.taken).max(1),
            Some(place) => rows_w = (rows_w - place.taken).max(1),
            None => {}
        }
        let w = rows_w as f32;
        let n = state.rows().len();
        let per_panel_cap = (area_h / row_min).max(1) as usize;
        let natural = Widths::measure(state, text, scale, pad);
        let panels = if n > per_panel_cap {
            ((w / (natural.total as f32 * 1.1)) as usize).clamp(1, MAX_PANELS)
        } else {
            1
        };
        let capacity = per_panel_cap * panels;
        let pages = n.div_ceil(capacity).max(1);
        // Pages share the rows out evenly; the fullest has this many.
        let per_page = n.div_ceil(pages);
        let per_panel = per_page.div_ceil(panels).max(1);
        let row_height = ((area_h as f32 / per_panel as f32).min(row_min as f32 * ROW_GROWTH))
            .floor()
            .max(1.0) as i32;
        let panel_width = rows_w / panels as i32;

        let mut row_scale = scale * (row_height as f32 / row_min as f32).clamp(1.0, FONT_GROWTH);
        let mut widths = Widths::measure(state, text, row_scale, pad);
        // Text widths scale almost linearly; rounding may leave a pixel or
        // two, so shrink again until it fits.
        for _ in 0..4 {
            if widths.total <= panel_width {
                break;
            }
            row_scale *= panel_width as f32 / widths.total as f32 * 0.995;
            widths = Widths::measure(state, text, row_scale, pad);
        }

        // Spare width goes into the gaps, so the columns spread over the
        // panel like a table.
        let spare = (panel_width - widths.total).max(0);
        let gaps = shown_columns(state.columns()).count().max(1) as i32;
        let extra = spare / gaps;
        let mut cells = [None; 6];
        let mut x = pad + widths.label;
        for (slot, (column, width)) in cells.iter_mut().zip(widths.columns.iter().flatten()) {
            x += widths.gap + extra;
            *slot = Some(Cell {
                column: *column,
                x,
                width: *width,
            });
            x += width;
        }

        let rs = |v: f32| (v * row_scale).round().max(1.0) as u32;
        let hs = |v: f32| (v * scale).round().max(1.0) as u32;
        Layout {
            scale,
            row_scale,
            size,
            header: rect(0, 0, size.width as i32, header_h),
            alert: (alert_h > 0).then(|| rect(0, header_h, size.width as i32, alert_h)),
            captions: (captions_h > 0)
                .then(|| rect(0, header_h + alert_h, size.width as i32, captions_h)),
            rows: rect(0, top, rows_w, area_h),
            news: (news_h > 0)
                .then(|| rect(0, size.height as i32 - news_h, size.width as i32, news_h)),
            qr,
            pad,
            panels,
            panel_width,
            per_panel,
            pages,
            row_height,
            label_x: pad,
            label_width: widths.label,
            cells,
            sizes: Sizes {
                title: hs(design::TITLE),
                clock: hs(design::CLOCK),
                header_small: hs(design::HEADER_SMALL),
                label: rs(design::LABEL),
                sub: rs(design::SUB),
                price: rs(design::PRICE),
                quote: rs(design::QUOTE),
                change: rs(design::CHANGE),
                volume: rs(design::VOLUME),
                news: hs(design::NEWS_TEXT),
                news_label: hs(design::NEWS_LABEL),
                alert: hs(design::ALERT_TEXT),
                caption: hs(design::CAPTION),
            },
            news_speed: design::NEWS_SPEED * scale,
        }
    }

    /// The rectangle of the `slot`-th row shown (0-based within the page).
    pub fn row_rect(&self, slot: usize) -> Rectangle {
        let panel = slot / self.per_panel;
        let line = (slot % self.per_panel) as i32;
        rect(
            panel as i32 * self.panel_width,
            self.rows.top_left.y + line * self.row_height,
            self.panel_width,
            self.row_height,
        )
    }

    /// Which of `n` rows page `page` shows: the rows are shared out as
    /// evenly as the pages allow (16 rows on 3 pages are 5, 5 and 6, not 6,
    /// 6 and 4).
    pub fn page_rows(&self, page: usize, n: usize) -> std::ops::Range<usize> {
        let pages = self.pages.max(1);
        let page = page.min(pages - 1);
        (page * n / pages)..((page + 1) * n / pages)
    }
}

/// The scale of a `w × h` screen against the 1920×1080 design: the height
/// decides, small screens get a little more (they are read closer, but
/// their text must stay legible), and the width caps it so a row fits.
fn base_scale(w: f32, h: f32) -> f32 {
    let boost = 1.0 + 0.3 * ((1080.0 - h) / 600.0).clamp(0.0, 1.0);
    (h / 1080.0 * boost).min(w / 1240.0).max(0.2)
}

/// Captions name the columns when a row's numbers are not self-evident:
/// buy and sell, or a volume.
fn needs_captions(columns: &[Column]) -> bool {
    columns
        .iter()
        .any(|c| matches!(c, Column::Bid | Column::Ask | Column::Volume))
}

/// The configured columns, at most six (one of each kind is all that makes
/// sense), in order.
fn shown_columns(columns: &[Column]) -> impl Iterator<Item = Column> + '_ {
    columns.iter().copied().take(6)
}

/// The caption of a column in `language` (`"fa"`, `"ar"`, `"tr"`; any
/// other is English). The exchange office's own words: "buy" is the price
/// the office buys at (the bid).
pub fn caption(column: Column, language: &str) -> &'static str {
    match (language, column) {
        ("fa", Column::Price) => "قیمت",
        ("fa", Column::Change) => "تغییر",
        ("fa", Column::Sparkline) => "روند",
        ("fa", Column::Bid) => "خرید",
        ("fa", Column::Ask) => "فروش",
        ("fa", Column::Volume) => "حجم",
        ("ar", Column::Price) => "السعر",
        ("ar", Column::Change) => "التغيّر",
        ("ar", Column::Sparkline) => "الاتجاه",
        ("ar", Column::Bid) => "شراء",
        ("ar", Column::Ask) => "بيع",
        ("ar", Column::Volume) => "الحجم",
        ("tr", Column::Price) => "FİYAT",
        ("tr", Column::Change) => "DEĞİŞİM",
        ("tr", Column::Sparkline) => "EĞİLİM",
        ("tr", Column::Bid) => "ALIŞ",
        ("tr", Column::Ask) => "SATIŞ",
        ("tr", Column::Volume) => "HACİM",
        (_, Column::Price) => "PRICE",
        (_, Column::Change) => "CHANGE",
        (_, Column::Sparkline) => "TREND",
        (_, Column::Bid) => "BUY",
        (_, Column::Ask) => "SELL",
        (_, Column::Volume) => "VOLUME",
    }
}

/// What the text of a row needs, at one scale.
struct Widths {
    label: i32,
    gap: i32,
    columns: [Option<(Column, i32)>; 6],
    /// Both pads, the label, every gap and every column.
    total: i32,
}

impl Widths {
    /// Widths at `scale`, with `pad` pixels on each side of the panel.
    fn measure(state: &BoardState, text: &Text, scale: f32, pad: i32) -> Widths {
        let sized = |v: f32| (v * scale).round().max(1.0) as u32;
        let style = |size: f32, weight: Weight, tabular: bool| TextStyle {
            size: sized(size),
            weight,
            color: DARK.text,
            background: DARK.background,
            tabular,
        };
        let numbers = state.numbers();
        let label_style = style(design::LABEL, Weight::Bold, false);
        let price_style = style(design::PRICE, Weight::Bold, true);
        let quote_style = style(design::QUOTE, Weight::Bold, true);
        let change_style = style(design::CHANGE, Weight::Bold, true);
        let volume_style = style(design::VOLUME, Weight::Regular, true);
        let widest =
            |style: &TextStyle, field: &dyn Fn(&super::state::Row) -> Option<&str>, floor: &str| {
                state
                    .rows()
                    .iter()
                    .filter_map(field)
                    .map(|s| text.measure(localized(numbers, s).as_str(), style))
                    .fold(
                        text.measure(localized(numbers, floor).as_str(), style),
                        i32::max,
                    )
            };
        let label = state
            .rows()
            .iter()
            .map(|r| text.measure(&r.label, &label_style))
            .fold(0, i32::max)
            .clamp(
                (design::LABEL_MIN * scale) as i32,
                (design::LABEL_MAX * scale) as i32,
            );
        let arrow = text.cap_height(change_style.size, Weight::Bold) * 2;
        let mut sign = [0; 4];
        let percent = text.measure(numbers.percent().encode_utf8(&mut sign), &change_style);
        let mut columns = [None; 6];
        for (slot, column) in columns.iter_mut().zip(shown_columns(state.columns())) {
            let width = match column {
                Column::Price => widest(&price_style, &|r| r.price.as_deref(), "0000.00"),
                Column::Bid => widest(&quote_style, &|r| r.bid.as_deref(), "0000.00"),
                Column::Ask => widest(&quote_style, &|r| r.ask.as_deref(), "0000.00"),
                Column::Change => {
                    let change = widest(&change_style, &|r| r.change.as_deref(), "+00.00");
                    let pct = widest(&change_style, &|r| r.change_pct.as_deref(), "+0.00");
                    change.max(arrow + pct + percent)
                }
                Column::Volume => widest(&volume_style, &|r| r.volume.as_deref(), "000000")
                    .min((320.0 * scale) as i32),
                Column::Sparkline => (design::SPARKLINE * scale).round() as i32,
            };
            *slot = Some((column, width));
        }
        let gap = (design::GAP * scale).round() as i32;
        let total = 2 * pad + label + columns.iter().flatten().map(|(_, w)| gap + w).sum::<i32>();
        Widths {
            label,
            gap,
            columns,
            total,
        }
    }
}

fn rect(x: i32, y: i32, w: i32, h: i32) -> Rectangle {
    Rectangle::new(
        Point::new(x, y),
        Size::new(w.max(0) as u32, h.max(0) as u32),
    )
}
