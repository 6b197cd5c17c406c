//! Anti-aliased text from the bundled TTF fonts, with a glyph cache.
//!
//! [`Text`] holds the fonts (Vazirmatn Regular and Bold, embedded in the
//! binary) and a bounded cache of rasterized glyph coverage, so a frame
//! re-rasterizes nothing it drew before. All text goes through
//! [`Text::draw_text`] and [`Text::measure`]: today they lay out Latin text
//! glyph by glyph with kerning; shaping and bidi for Persian and Arabic
//! (rustybuzz, unicode-bidi) will slot in behind them without touching the
//! callers.
//!
//! Digits can be tabular: each digit is centred in a cell as wide as the
//! widest digit, so a changing price does not jitter. Coverage is blended
//! onto the background colour the caller says it drew; nothing is read back
//! from the target.
//!
//! This module never does I/O and never reads the clock; after warm-up,
//! drawing text allocates nothing.

use std::collections::HashMap;

use ab_glyph::{Font, FontArc, GlyphId, PxScale, ScaleFont, point};
use embedded_graphics::Pixel;
use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use embedded_graphics::prelude::{DrawTarget, Point, Size};
use embedded_graphics::primitives::Rectangle;

use super::theme::mix;

/// The bundled regular face (SIL OFL 1.1, see `fonts/OFL.txt`).
static REGULAR: &[u8] = include_bytes!("fonts/Vazirmatn-Regular.ttf");
/// The bundled bold face.
static BOLD: &[u8] = include_bytes!("fonts/Vazirmatn-Bold.ttf");

/// Most glyph bitmaps kept. A board uses a few hundred (digits at three or
/// four sizes, the letters of its labels and headlines); at up to a few KiB
/// each the cache stays under a couple of MiB even at 4K. When it is full it
/// is emptied and refilled, which costs one slow frame.
pub const MAX_GLYPHS: usize = 512;

/// Largest text size in pixels (em); larger requests are drawn at this size.
/// Bounds the size of one cached glyph.
pub const MAX_SIZE: u32 = 400;

/// Heavier or lighter face.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Weight {
    /// Vazirmatn Regular.
    Regular,
    /// Vazirmatn Bold.
    Bold,
}

/// How a run of text looks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TextStyle {
    /// Em size in pixels.
    pub size: u32,
    /// Which face.
    pub weight: Weight,
    /// Text colour.
    pub color: Rgb888,
    /// The colour already under the text, to blend the edges onto.
    pub background: Rgb888,
    /// Digits in fixed-width cells.
    pub tabular: bool,
}

/// Where the anchor point sits on the text's advance box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// The text starts at the anchor.
    Left,
    /// The text is centred on the anchor.
    Center,
    /// The text ends at the anchor.
    Right,
}

/// One rasterized glyph: coverage 0–255, row by row, and where its top-left
/// pixel is relative to the pen position on the baseline.
#[derive(Debug)]
struct Coverage {
    left: i32,
    top: i32,
    width: u32,
    alpha: Box<[u8]>,
}

/// Cache key: face, glyph, em size in pixels.
type Key = (Weight, GlyphId, u32);

/// Per-face numbers computed once.
#[derive(Clone, Copy, Debug)]
struct Metrics {
    /// `PxScale` (ascent to descent) per pixel of em.
    px_scale_per_em: f32,
    /// Font units per em.
    units_per_em: f32,
    /// Height of the digit zero above the baseline, in font units.
    digit_units: f32,
    /// Height of a capital H above the baseline, in font units.
    cap_units: f32,
}

/// The fonts and the glyph cache. One per renderer; see the module docs.
#[derive(Debug)]
pub struct Text {
    fonts: [FontArc; 2],
    metrics: [Metrics; 2],
    glyphs: HashMap<Key, Coverage>,
    rasterized: u64,
}

impl Default for Text {
    fn default() -> Self {
        Self::new()
    }
}

impl Text {
    /// The bundled Vazirmatn fonts.
    pub fn new() -> Text {
        // The bundled fonts are part of the binary and tested below; a
        // failure here is a build defect, not something a user can cause.
        let parse = |data: &'static [u8]| {
            FontArc::try_from_slice(data).expect("the bundled Vazirmatn font parses")
        };
        Text::with_fonts(parse(REGULAR), parse(BOLD))
    }

    /// Other fonts (`[board] font`): a regular and a bold face, which may
    /// be the same.
    pub fn with_fonts(regular: FontArc, bold: FontArc) -> Text {
        let metrics = [metrics(&regular), metrics(&bold)];
        Text {
            fonts: [regular, bold],
            metrics,
            glyphs: HashMap::with_capacity(MAX_GLYPHS),
            rasterized: 0,
        }
    }

    /// How many glyphs have been rasterized so far (cache misses).
    pub fn rasterized(&self) -> u64 {
        self.rasterized
    }

    /// The advance width of `text` in `style`, in pixels, rounded up.
    pub fn measure(&self, text: &str, style: &TextStyle) -> i32 {
        self.layout(text, style, |_, _| {}).ceil() as i32
    }

    /// Height of the digits above the baseline, in pixels, at `size`.
    pub fn digit_height(&self, size: u32, weight: Weight) -> i32 {
        let m = &self.metrics[face(weight)];
        (m.digit_units * size.min(MAX_SIZE) as f32 / m.units_per_em).round() as i32
    }

    /// Height of capital letters above the baseline, in pixels, at `size`.
    pub fn cap_height(&self, size: u32, weight: Weight) -> i32 {
        let m = &self.metrics[face(weight)];
        (m.cap_units * size.min(MAX_SIZE) as f32 / m.units_per_em).round() as i32
    }

    /// Draws `text` with its baseline at `anchor.y`, placed on `anchor.x`
    /// by `align`, touching only pixels inside `clip`. Returns the advance
    /// width. The one entry point for drawing text.
    pub fn draw_text<D>(
        &mut self,
        target: &mut D,
        text: &str,
        anchor: Point,
        align: Align,
        style: &TextStyle,
        clip: &Rectangle,
    ) -> Result<i32, D::Error>
    where
        D: DrawTarget<Color = Rgb888>,
    {
        let width = self.layout(text, style, |_, _| {});
        let start = match align {
            Align::Left => 0.0,
            Align::Center => -width / 2.0,
            Align::Right => -width,
        };
        let origin_x = anchor.x as f32 + start;
        if let Some(bottom_right) = clip.bottom_right() {
            let (left, right) = (origin_x, origin_x + width);
            if right < clip.top_left.x as f32 || left > bottom_right.x as f32 {
                return Ok(width.ceil() as i32);
            }
        }
        let size = style.size.clamp(1, MAX_SIZE);
        let weight = style.weight;
        let font = &self.fonts[face(weight)];
        let scale = PxScale::from(size as f32 * self.metrics[face(weight)].px_scale_per_em);
        let mut result = Ok(());
        let glyphs = &mut self.glyphs;
        let rasterized = &mut self.rasterized;
        let metrics = &self.metrics[face(weight)];
        layout(font, metrics, text, style, |id, x| {
            if result.is_err() {
                return;
            }
            let key = (weight, id, size);
            if !glyphs.contains_key(&key) {
                if glyphs.len() >= MAX_GLYPHS {
                    glyphs.clear();
                }
                glyphs.insert(key, rasterize(font, id, scale));
                *rasterized += 1;
            }
            let Some(coverage) = glyphs.get(&key) else {
                return;
            };
            let pen = Point::new((origin_x + x).round() as i32, anchor.y);
            result = blit(target, coverage, pen, style, clip);
        });
        result.map(|()| width.ceil() as i32)
    }

    /// Lays `text` out with the face of `style`, calling `glyph` with each
    /// glyph and its pen x offset; returns the advance width.
    fn layout(&self, text: &str, style: &TextStyle, glyph: impl FnMut(GlyphId, f32)) -> f32 {
        let face = face(style.weight);
        layout(&self.fonts[face], &self.metrics[face], text, style, glyph)
    }
}

/// Lays `text` out glyph by glyph: kerning between letters, digits centred
/// in cells as wide as the widest digit when the style is tabular. Calls
/// `glyph` with each glyph and its pen x offset; returns the advance width.
fn layout(
    font: &FontArc,
    metrics: &Metrics,
    text: &str,
    style: &TextStyle,
    mut glyph: impl FnMut(GlyphId, f32),
) -> f32 {
    let size = style.size.clamp(1, MAX_SIZE);
    let scaled = font.as_scaled(PxScale::from(size as f32 * metrics.px_scale_per_em));
    let cell = if style.tabular {
        ('0'..='9')
            .map(|d| scaled.h_advance(font.glyph_id(d)))
            .fold(0.0, f32::max)
    } else {
        0.0
    };
    let mut x = 0.0;
    let mut previous: Option<GlyphId> = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        let advance = scaled.h_advance(id);
        if style.tabular && c.is_ascii_digit() {
            glyph(id, x + (cell - advance) / 2.0);
            x += cell;
            previous = None;
        } else {
            if let Some(previous) = previous {
                x += scaled.kern(previous, id);
            }
            glyph(id, x);
            x += advance;
            previous = Some(id);
        }
    }
    x
}

fn face(weight: Weight) -> usize {
    match weight {
        Weight::Regular => 0,
        Weight::Bold => 1,
    }
}

fn metrics(font: &FontArc) -> Metrics {
    let units_per_em = font.units_per_em().unwrap_or(1000.0);
    // ab_glyph's unscaled bounds keep the outline's top (y up, in font
    // units) in `min.y`.
    let top = |c: char| {
        font.outline(font.glyph_id(c))
            .map_or(units_per_em * 0.7, |o| o.bounds.min.y)
    };
    Metrics {
        px_scale_per_em: font.height_unscaled() / units_per_em,
        units_per_em,
        digit_units: top('0'),
        cap_units: top('H'),
    }
}

/// The coverage of one glyph at one scale, with the pen at the origin.
fn rasterize(font: &FontArc, id: GlyphId, scale: PxScale) -> Coverage {
    let glyph = id.with_scale_and_position(scale, point(0.0, 0.0));
    let Some(outlined) = font.outline_glyph(glyph) else {
        return Coverage {
            left: 0,
            top: 0,
            width: 0,
            alpha: Box::default(),
        };
    };
    let bounds = outlined.px_bounds();
    let width = bounds.width().max(0.0) as u32;
    let height = bounds.height().max(0.0) as u32;
    let mut alpha = vec![0_u8; (width * height) as usize].into_boxed_slice();
    outlined.draw(|x, y, c| {
        if let Some(a) = alpha.get_mut((y * width + x) as usize) {
            *a = (c.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    });
    Coverage {
        left: bounds.min.x as i32,
        top: bounds.min.y as i32,
        width,
        alpha,
    }
}

/// Blends one glyph onto the known background at `pen`, inside `clip`.
fn blit<D>(
    target: &mut D,
    coverage: &Coverage,
    pen: Point,
    style: &TextStyle,
    clip: &Rectangle,
) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    if coverage.width == 0 {
        return Ok(());
    }
    let width = coverage.width as usize;
    let (x0, y0) = (pen.x + coverage.left, pen.y + coverage.top);
    let height = (coverage.alpha.len() / width) as u32;
    let bounds = Rectangle::new(Point::new(x0, y0), Size::new(coverage.width, height));
    // Most glyphs lie wholly inside the clip: check it once, not per pixel.
    let inside = clip.intersection(&bounds) == bounds;
    // Each coverage value's colour is mixed once per glyph, not per pixel.
    const UNSET: u32 = u32::MAX;
    let mut palette = [UNSET; 256];
    let pixels = coverage
        .alpha
        .chunks_exact(width)
        .enumerate()
        .flat_map(move |(row, line)| {
            let y = y0 + row as i32;
            line.iter()
                .enumerate()
                .filter(|(_, a)| **a != 0)
                .map(move |(col, &a)| (Point::new(x0 + col as i32, y), a))
        })
        .filter(|(at, _)| inside || clip.contains(*at))
        .map(move |(at, a)| {
            let slot = &mut palette[usize::from(a)];
            if *slot == UNSET {
                let color = if a == 255 {
                    style.color
                } else {
                    mix(style.background, style.color, u32::from(a) + 1)
                };
                *slot = pack(color);
            }
            Pixel(at, unpack(*slot))
        });
    target.draw_iter(pixels)
}

fn pack(c: Rgb888) -> u32 {
    u32::from(c.r()) << 16 | u32::from(c.g()) << 8 | u32::from(c.b())
}

fn unpack(p: u32) -> Rgb888 {
    Rgb888::new((p >> 16) as u8, (p >> 8) as u8, p as u8)
}

#[cfg(test)]
mod tests {
    use embedded_graphics::pixelcolor::RgbColor;
    use embedded_graphics::prelude::{Dimensions, OriginDimensions};

    use super::*;
    use crate::board::png::Frame;

    fn style(size: u32, tabular: bool) -> TextStyle {
        TextStyle {
            size,
            weight: Weight::Bold,
            color: Rgb888::WHITE,
            background: Rgb888::BLACK,
            tabular,
        }
    }

    /// The columns that have any ink.
    fn ink_columns(frame: &Frame) -> Vec<u32> {
        (0..frame.width)
            .filter(|&x| (0..frame.height).any(|y| frame.pixel(x, y) != Rgb888::BLACK))
            .collect()
    }

    #[test]
    fn bundled_fonts_parse_and_cover_latin_persian_and_both_digit_sets() {
        let text = Text::new();
        for font in &text.fonts {
            for c in [
                'A', 'z', '0', '9', '%', '.', '+', '-', '۰', '۹', '٠', '٩', 'ش', 'ğ',
            ] {
                assert_ne!(font.glyph_id(c), GlyphId(0), "{c}");
            }
        }
    }

    #[test]
    fn tabular_digits_take_the_same_width_whatever_they_are() {
        let text = Text::new();
        let tabular = style(64, true);
        assert_eq!(
            text.measure("1111", &tabular),
            text.measure("8888", &tabular)
        );
        assert_eq!(
            text.measure("67012.50", &tabular),
            text.measure("11111.11", &tabular)
        );
        // Vazirmatn's own digits share one advance; the cells make it hold
        // for any `[board] font`, and keep a narrow sign or dot from moving
        // the digits after it.
    }

    #[test]
    fn draws_anti_aliased_text_where_it_was_asked() {
        let mut text = Text::new();
        let mut frame = Frame::new(200, 80);
        let clip = frame.bounding_box();
        let width = text
            .draw_text(
                &mut frame,
                "H8",
                Point::new(10, 60),
                Align::Left,
                &style(48, false),
                &clip,
            )
            .unwrap();
        let ink = ink_columns(&frame);
        assert!(
            ink[0] >= 10 && *ink.last().unwrap() <= 10 + width as u32,
            "{ink:?}"
        );
        // Some pixels are partly covered: the edges are blended.
        let grey = (0..frame.height)
            .flat_map(|y| (0..frame.width).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let p = frame.pixel(x, y);
                p != Rgb888::BLACK && p != Rgb888::WHITE
            })
            .count();
        assert!(grey > 10, "{grey} grey pixels");
        // Nothing below the baseline for these glyphs, and the digit top is
        // where the metrics say.
        let rows: Vec<u32> = (0..frame.height)
            .filter(|&y| (0..frame.width).any(|x| frame.pixel(x, y) != Rgb888::BLACK))
            .collect();
        assert!(*rows.last().unwrap() < 61);
        let top = 60 - text.digit_height(48, Weight::Bold);
        assert!((rows[0] as i32 - top).abs() <= 1, "{} vs {top}", rows[0]);
        let _ = frame.size();
    }

    #[test]
    fn clip_and_alignment_are_honoured() {
        let mut text = Text::new();
        let mut frame = Frame::new(200, 60);
        let clip = Rectangle::new(Point::new(0, 0), Size::new(100, 60));
        let s = style(40, true);
        let w = text
            .draw_text(
                &mut frame,
                "8888",
                Point::new(150, 50),
                Align::Right,
                &s,
                &clip,
            )
            .unwrap();
        let ink = ink_columns(&frame);
        assert!(*ink.last().unwrap() < 100, "clipped at 100: {ink:?}");
        assert!(ink[0] >= 150 - w as u32);
    }

    #[test]
    fn the_cache_rasterizes_each_glyph_once_and_stays_bounded() {
        let mut text = Text::new();
        let mut frame = Frame::new(400, 60);
        let clip = frame.bounding_box();
        for _ in 0..3 {
            text.draw_text(
                &mut frame,
                "12.50 12.50",
                Point::new(0, 50),
                Align::Left,
                &style(30, true),
                &clip,
            )
            .unwrap();
        }
        // 1, 2, '.', 5, 0 and the space.
        assert_eq!(text.rasterized(), 6);
        for size in 10..80 {
            text.draw_text(
                &mut frame,
                "0123456789",
                Point::new(0, 50),
                Align::Left,
                &style(size, true),
                &clip,
            )
            .unwrap();
            assert!(text.glyphs.len() <= MAX_GLYPHS);
        }
    }
}
