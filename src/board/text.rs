//! Anti-aliased text from the bundled TTF fonts, with a glyph cache.
//!
//! [`Text`] holds the fonts (Vazirmatn Regular and Bold, embedded in the
//! binary) and a bounded cache of rasterized glyph coverage, so a frame
//! re-rasterizes nothing it drew before. All text goes through
//! [`Text::draw_text`] and [`Text::measure`], which take a string in logical
//! order and lay it out in one of two ways:
//!
//! - Text that needs no shaping (Latin, Turkish, Latin-1 and Extended-A/B,
//!   general punctuation, currency signs, and numbers in any of the three
//!   digit sets with their separators) is laid out glyph by glyph from the
//!   font's cmap with kerning: the fast path for prices, clocks and Latin
//!   labels, allocation-free and uncached.
//! - Anything else (Persian, Arabic, combining marks, bidi controls, ZWNJ)
//!   goes through the Unicode bidi algorithm (unicode-bidi: paragraph
//!   direction from the first strong character, so numbers stay left to
//!   right inside right-to-left text) and then HarfBuzz shaping (rustybuzz)
//!   run by run in visual order: joined letter forms, ligatures, marks,
//!   ZWNJ, mirrored brackets. The shaped glyphs are kept in a bounded cache
//!   keyed by text, face and `tnum` (in font units, so one entry serves
//!   every size): a label is shaped once, not once a frame.
//!
//! Digits can be tabular: on the fast path Persian and Arabic-Indic digits
//! take the font's `tnum` forms (found once per face by shaping each digit
//! with `tnum`; Vazirmatn's default Persian digits are proportional), and
//! each digit is centred in a cell as wide as the widest of its set, so a
//! changing price does not jitter whatever the font; shaped text asks for
//! `tnum` itself. Coverage is blended
//! onto the background colour the caller says it drew; nothing is read back
//! from the target.
//!
//! This module never does I/O and never reads the clock; after warm-up,
//! drawing text allocates nothing.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use ab_glyph::{Font, FontArc, GlyphId, InvalidFont, PxScale, point};
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

/// Most shaped strings kept. A board shapes its title, labels, captions and
/// headlines: a few dozen strings. Prices, clocks and Latin text never come
/// here. When it is full it is emptied and refilled.
pub const MAX_SHAPED: usize = 256;

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
    /// The font's tabular (`tnum`) glyphs for the Arabic-Indic digits
    /// U+0660..U+0669 and then the Persian digits U+06F0..U+06F9. Vazirmatn's
    /// default Persian digits are proportional (۱ is half as wide as ۲);
    /// its Latin digits are tabular already.
    eastern_tnum: [GlyphId; 20],
    /// The cmap's glyph for each ASCII character, looked up once: prices,
    /// clocks and Latin labels are laid out every frame.
    ascii: [GlyphId; 128],
    /// The widest advance of the digits 0–9, in font units: a tabular
    /// digit cell before scaling.
    digit_cell_units: f32,
    /// The widest advance of the `tnum` forms in `eastern_tnum`.
    eastern_cell_units: f32,
    /// Ascent less descent, in font units (`Font::height_unscaled`).
    height_units: f32,
}

impl Metrics {
    /// The font's glyph for `c`, from the table for ASCII.
    fn glyph_id(&self, font: &FontArc, c: char) -> GlyphId {
        match self.ascii.get(c as usize) {
            Some(&id) => id,
            None => font.glyph_id(c),
        }
    }
}

/// One shaped glyph: where it goes relative to the start of the text, in
/// font units (y up), and the byte offset of the character it came from.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ShapedGlyph {
    id: GlyphId,
    x: f32,
    y: f32,
    cluster: u32,
}

/// A string shaped in visual order, in font units.
#[derive(Debug)]
struct Shaped {
    glyphs: Box<[ShapedGlyph]>,
    advance: f32,
}

/// Shaped strings, one map per face and `tnum` setting so that a lookup
/// by `&str` needs no key to be built.
#[derive(Debug, Default)]
struct Shapes {
    runs: [HashMap<Box<str>, Shaped>; 4],
    shaped: u64,
}

impl Shapes {
    fn len(&self) -> usize {
        self.runs.iter().map(HashMap::len).sum()
    }
}

/// The fonts and the glyph cache. One per renderer; see the module docs.
#[derive(Debug)]
pub struct Text {
    fonts: [FontArc; 2],
    /// The font files, for rustybuzz.
    data: [Cow<'static, [u8]>; 2],
    metrics: [Metrics; 2],
    glyphs: HashMap<Key, Coverage>,
    /// Shaped strings; a `RefCell` because measuring (`&self`, from the
    /// layout) shapes too. A `Text` belongs to one renderer and is never
    /// shared between threads.
    shapes: RefCell<Shapes>,
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
        Text::with_font_data(Cow::Borrowed(REGULAR), Cow::Borrowed(BOLD))
            .expect("the bundled Vazirmatn font parses")
    }

    /// Other fonts (`[board] font`): the files of a regular and a bold
    /// face, which may be the same.
    pub fn with_font_data(
        regular: Cow<'static, [u8]>,
        bold: Cow<'static, [u8]>,
    ) -> Result<Text, InvalidFont> {
        let parse = |data: &Cow<'static, [u8]>| match data {
            Cow::Borrowed(data) => FontArc::try_from_slice(data),
            Cow::Owned(data) => FontArc::try_from_vec(data.clone()),
        };
        let fonts = [parse(&regular)?, parse(&bold)?];
        // rustybuzz reads the same files; one that ab_glyph accepts but
        // rustybuzz does not is drawn unshaped.
        let metrics = [metrics(&fonts[0], &regular), metrics(&fonts[1], &bold)];
        Ok(Text {
            fonts,
            data: [regular, bold],
            metrics,
            glyphs: HashMap::with_capacity(MAX_GLYPHS),
            shapes: RefCell::default(),
            rasterized: 0,
        })
    }

    /// How many strings have been shaped so far (shape-cache misses).
    pub fn shaped(&self) -> u64 {
        self.shapes.borrow().shaped
    }

    /// How many glyphs have been rasterized so far (cache misses).
    pub fn rasterized(&self) -> u64 {
        self.rasterized
    }

    /// The advance width of `text` in `style`, in pixels, rounded up.
    pub fn measure(&self, text: &str, style: &TextStyle) -> i32 {
        self.layout(text, style, |_, _, _| {}).ceil() as i32
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
        let width = self.layout(text, style, |_, _, _| {});
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
        let i = face(weight);
        let font = &self.fonts[i];
        let scale = PxScale::from(size as f32 * self.metrics[i].px_scale_per_em);
        let mut result = Ok(());
        let glyphs = &mut self.glyphs;
        let rasterized = &mut self.rasterized;
        let metrics = &self.metrics[i];
        let source = FontFace {
            font,
            data: &self.data[i],
            metrics,
            shapes: &self.shapes,
        };
        source.layout(text, style, |id, x, y| {
            if result.is_err() {
                return;
            }
            let key = (weight, id, size);
            let pen = Point::new((origin_x + x).round() as i32, anchor.y - y.round() as i32);
            // One lookup for a cached glyph (every glyph after warm-up).
            if let Some(coverage) = glyphs.get(&key) {
                result = blit(target, coverage, pen, style, clip);
                return;
            }
            if glyphs.len() >= MAX_GLYPHS {
                glyphs.clear();
            }
            *rasterized += 1;
            let coverage = glyphs.entry(key).or_insert(rasterize(font, id, scale));
            result = blit(target, coverage, pen, style, clip);
        });
        result.map(|()| width.ceil() as i32)
    }

    /// Lays `text` out with the face of `style`, calling `glyph` with each
    /// glyph and its pen offset (x right, y up); returns the advance width.
    fn layout(&self, text: &str, style: &TextStyle, glyph: impl FnMut(GlyphId, f32, f32)) -> f32 {
        let i = face(style.weight);
        FontFace {
            font: &self.fonts[i],
            data: &self.data[i],
            metrics: &self.metrics[i],
            shapes: &self.shapes,
        }
        .layout(text, style, glyph)
    }

    /// The glyphs of `text` as shaped (in visual order, with clusters and
    /// pen positions in font units), for tests against a reference shaper.
    #[cfg(test)]
    fn shape_for_test(&self, text: &str, weight: Weight, tabular: bool) -> Vec<ShapedGlyph> {
        let style = TextStyle {
            size: 100,
            weight,
            color: Rgb888::WHITE,
            background: Rgb888::BLACK,
            tabular,
        };
        self.layout(text, &style, |_, _, _| {});
        let shapes = self.shapes.borrow();
        shapes.runs[slot(weight, tabular)]
            .get(text)
            .map(|s| s.glyphs.to_vec())
            .unwrap_or_default()
    }
}

/// One face with what laying text out in it needs.
struct FontFace<'a> {
    font: &'a FontArc,
    data: &'a [u8],
    metrics: &'a Metrics,
    shapes: &'a RefCell<Shapes>,
}

impl FontFace<'_> {
    /// Lays `text` out, shaped when it needs shaping (see the module docs).
    /// Calls `glyph` with each glyph and its pen offset in pixels (x right,
    /// y up); returns the advance width.
    fn layout(
        &self,
        text: &str,
        style: &TextStyle,
        mut glyph: impl FnMut(GlyphId, f32, f32),
    ) -> f32 {
        if !needs_shaping(text) {
            return layout(self.font, self.metrics, text, style, |id, x| {
                glyph(id, x, 0.0)
            });
        }
        let slot = slot(style.weight, style.tabular);
        let mut shapes = self.shapes.borrow_mut();
        if !shapes.runs[slot].contains_key(text) {
            let Some(shaped) = shape(self.data, text, style.tabular) else {
                drop(shapes);
                return layout(self.font, self.metrics, text, style, |id, x| {
                    glyph(id, x, 0.0)
                });
            };
            if shapes.len() >= MAX_SHAPED {
                shapes.runs.iter_mut().for_each(HashMap::clear);
            }
            shapes.runs[slot].insert(text.into(), shaped);
            shapes.shaped += 1;
        }
        let Some(shaped) = shapes.runs[slot].get(text) else {
            return 0.0;
        };
        let size = style.size.clamp(1, MAX_SIZE);
        let px = size as f32 / self.metrics.units_per_em;
        for g in &shaped.glyphs {
            glyph(g.id, g.x * px, g.y * px);
        }
        shaped.advance * px
    }
}

/// Whether `text` reads right to left: its first strongly directional
/// character is Hebrew, Arabic or another right-to-left script (rule P2 of
/// the bidi algorithm, as the shaping uses it).
pub fn is_rtl_text(text: &str) -> bool {
    use unicode_bidi::BidiClass::{AL, L, R};
    text.chars()
        .map(unicode_bidi::bidi_class)
        .find(|c| matches!(c, L | R | AL))
        .is_some_and(|c| c != L)
}

/// Which [`Shapes`] map a face and `tnum` setting use.
fn slot(weight: Weight, tabular: bool) -> usize {
    face(weight) * 2 + usize::from(tabular)
}

/// Whether `text` has a character that the glyph-by-glyph layout would get
/// wrong: a right-to-left or joining script, a combining mark, a bidi
/// control or a zero-width joiner. See the module docs.
pub fn needs_shaping(text: &str) -> bool {
    !text.chars().all(|c| {
        matches!(c,
            '\0'..='\u{02FF}'
            // Arabic-Indic digits, ٪ ٫ ٬, and Persian digits: numbers are
            // laid out left to right, glyph by glyph.
            | '\u{0660}'..='\u{066C}'
            | '\u{06F0}'..='\u{06F9}'
            // Dashes, quotes, bullets, ellipsis, per mille, primes; not the
            // bidi controls (U+200C..U+200F, U+202A..U+202E, U+2066..).
            | '\u{2010}'..='\u{2027}'
            | '\u{2030}'..='\u{205E}'
            // Currency signs (€, ₺, ﷼ is elsewhere) and arrows.
            | '\u{20A0}'..='\u{20CF}'
            | '\u{2190}'..='\u{21FF}')
    })
}

/// Shapes `text`: the bidi algorithm splits it into runs of one direction,
/// each run is shaped by rustybuzz, and the runs are placed in visual order.
/// `None` when rustybuzz cannot read the font.
fn shape(data: &[u8], text: &str, tabular: bool) -> Option<Shaped> {
    use rustybuzz::ttf_parser::Tag;
    use rustybuzz::{Direction, Feature, UnicodeBuffer};
    use unicode_bidi::ParagraphBidiInfo;

    let face = rustybuzz::Face::from_slice(data, 0)?;
    let features = if tabular {
        vec![Feature::new(Tag::from_bytes(b"tnum"), 1, ..)]
    } else {
        Vec::new()
    };
    // One line: a board's texts have no paragraph breaks worth keeping.
    let bidi = ParagraphBidiInfo::new(text, None);
    let (levels, runs) = bidi.visual_runs(0..text.len());
    let mut glyphs = Vec::new();
    let mut x = 0.0;
    for run in runs {
        let mut buffer = UnicodeBuffer::new();
        buffer.push_str(&text[run.clone()]);
        buffer.set_direction(if levels[run.start].is_rtl() {
            Direction::RightToLeft
        } else {
            Direction::LeftToRight
        });
        buffer.guess_segment_properties();
        let shaped = rustybuzz::shape(&face, &features, buffer);
        for (info, pos) in shaped.glyph_infos().iter().zip(shaped.glyph_positions()) {
            glyphs.push(ShapedGlyph {
                id: GlyphId(info.glyph_id as u16),
                x: x + pos.x_offset as f32,
                y: pos.y_offset as f32,
                cluster: run.start as u32 + info.cluster,
            });
            x += pos.x_advance as f32;
        }
    }
    Some(Shaped {
        glyphs: glyphs.into_boxed_slice(),
        advance: x,
    })
}

/// Lays `text` out glyph by glyph: kerning between letters, digits (of
/// any of the three sets) centred in cells as wide as the widest digit of
/// their set when the style is tabular. Calls `glyph` with each glyph and
/// its pen x offset; returns the advance width.
fn layout(
    font: &FontArc,
    metrics: &Metrics,
    text: &str,
    style: &TextStyle,
    mut glyph: impl FnMut(GlyphId, f32),
) -> f32 {
    let size = style.size.clamp(1, MAX_SIZE);
    // What ab_glyph's `PxScaleFont::h_scale_factor` computes, with the
    // font's height looked up once per face instead of once per glyph:
    // `h_advance` and `kern` are this factor times the unscaled values.
    let factor = PxScale::from(size as f32 * metrics.px_scale_per_em).x / metrics.height_units;
    // The widest scaled advance is the scaled widest advance: scaling by a
    // positive factor keeps the order, so these are the same numbers as
    // taking the widest of the scaled digits.
    let (cell, eastern) = if style.tabular {
        (
            factor * metrics.digit_cell_units,
            factor * metrics.eastern_cell_units,
        )
    } else {
        (0.0, 0.0)
    };
    let mut x = 0.0;
    let mut previous: Option<GlyphId> = None;
    for c in text.chars() {
        let id = metrics.glyph_id(font, c);
        let advance = factor * font.h_advance_unscaled(id);
        if style.tabular && c.is_ascii_digit() {
            glyph(id, x + (cell - advance) / 2.0);
            x += cell;
            previous = None;
        } else if let Some(i) = eastern_digit(c).filter(|_| style.tabular) {
            let id = metrics.eastern_tnum[i];
            let advance = factor * font.h_advance_unscaled(id);
            glyph(id, x + (eastern - advance) / 2.0);
            x += eastern;
            previous = None;
        } else {
            if let Some(previous) = previous {
                x += factor * font.kern_unscaled(previous, id);
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

fn metrics(font: &FontArc, data: &[u8]) -> Metrics {
    let units_per_em = font.units_per_em().unwrap_or(1000.0);
    // ab_glyph's unscaled bounds keep the outline's top (y up, in font
    // units) in `min.y`.
    let top = |c: char| {
        font.outline(font.glyph_id(c))
            .map_or(units_per_em * 0.7, |o| o.bounds.min.y)
    };
    let eastern_tnum = eastern_tnum(font, data);
    let mut ascii = [GlyphId(0); 128];
    for (c, id) in ascii.iter_mut().enumerate() {
        *id = font.glyph_id(char::from(c as u8));
    }
    let widest = |ids: &mut dyn Iterator<Item = GlyphId>| {
        ids.map(|id| font.h_advance_unscaled(id))
            .fold(0.0, f32::max)
    };
    Metrics {
        px_scale_per_em: font.height_unscaled() / units_per_em,
        height_units: font.height_unscaled(),
        units_per_em,
        digit_units: top('0'),
        cap_units: top('H'),
        digit_cell_units: widest(&mut (b'0'..=b'9').map(|d| ascii[usize::from(d)])),
        eastern_cell_units: widest(&mut eastern_tnum.iter().copied()),
        eastern_tnum,
        ascii,
    }
}

/// What `tnum` makes of each Arabic-Indic and Persian digit, found once by
/// shaping each digit alone; the cmap glyph where the font has no `tnum`.
fn eastern_tnum(font: &FontArc, data: &[u8]) -> [GlyphId; 20] {
    use rustybuzz::ttf_parser::Tag;
    use rustybuzz::{Feature, UnicodeBuffer};

    let digits = ('\u{0660}'..='\u{0669}').chain('\u{06F0}'..='\u{06F9}');
    let mut ids = [GlyphId(0); 20];
    let face = rustybuzz::Face::from_slice(data, 0);
    let tnum = [Feature::new(Tag::from_bytes(b"tnum"), 1, ..)];
    for (id, digit) in ids.iter_mut().zip(digits) {
        *id = font.glyph_id(digit);
        if let Some(face) = &face {
            let mut buffer = UnicodeBuffer::new();
            buffer.push_str(digit.encode_utf8(&mut [0; 4]));
            buffer.guess_segment_properties();
            if let [info] = rustybuzz::shape(face, &tnum, buffer).glyph_infos() {
                *id = GlyphId(info.glyph_id as u16);
            }
        }
    }
    ids
}

/// The index of `c` in [`Metrics::eastern_tnum`], when it is an
/// Arabic-Indic or Persian digit.
fn eastern_digit(c: char) -> Option<usize> {
    match c {
        '\u{0660}'..='\u{0669}' => Some(c as usize - 0x0660),
        '\u{06F0}'..='\u{06F9}' => Some(c as usize - 0x06F0 + 10),
        _ => None,
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
///
/// Each row of the glyph goes to the target as runs of inked pixels with
/// `fill_contiguous`, clipped first: an in-memory frame (`png::Canvas`,
/// through `rotate::Rotated`) writes a run straight into its slice, and any
/// other target gets the same pixels one by one (its default
/// `fill_contiguous` is `draw_iter`). Uninked pixels are never written, so
/// glyphs that overlap (kerning, joined letters) keep each other's ink.
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
    let visible = clip.intersection(&bounds);
    if visible.is_zero_sized() {
        return Ok(());
    }
    // Columns and rows of the glyph that lie inside the clip.
    let (first_col, first_row) = (
        (visible.top_left.x - x0) as usize,
        (visible.top_left.y - y0) as usize,
    );
    let end_col = first_col + visible.size.width as usize;
    // Each coverage value's colour is mixed once per glyph, not per pixel.
    const UNSET: u32 = u32::MAX;
    let mut palette = [UNSET; 256];
    let mut shade = |a: u8| {
        let slot = &mut palette[usize::from(a)];
        if *slot == UNSET {
            let color = if a == 255 {
                style.color
            } else {
                mix(style.background, style.color, u32::from(a) + 1)
            };
            *slot = pack(color);
        }
        unpack(*slot)
    };
    let lines = coverage.alpha.chunks_exact(width);
    for (row, line) in lines
        .enumerate()
        .skip(first_row)
        .take(visible.size.height as usize)
    {
        let y = y0 + row as i32;
        let line = &line[..end_col];
        let mut col = first_col;
        while col < end_col {
            while col < end_col && line[col] == 0 {
                col += 1;
            }
            let start = col;
            while col < end_col && line[col] != 0 {
                col += 1;
            }
            if col > start {
                let run = Rectangle::new(
                    Point::new(x0 + start as i32, y),
                    Size::new((col - start) as u32, 1),
                );
                target.fill_contiguous(&run, line[start..col].iter().map(|&a| shade(a)))?;
            }
        }
    }
    Ok(())
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
    use crate::board::png::Canvas;

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
    fn ink_columns(frame: &Canvas) -> Vec<u32> {
        (0..frame.width)
            .filter(|&x| (0..frame.height).any(|y| frame.pixel(x, y) != Rgb888::BLACK))
            .collect()
    }

    #[test]
    fn the_direct_blit_draws_what_drawing_pixel_by_pixel_draws() {
        use crate::board::rotate::{Rotated, Rotation};
        use crate::board::testing::PixelByPixel;

        /// Draws the same texts, places and clips on `target`.
        fn texts<D: DrawTarget<Color = Rgb888>>(text: &mut Text, target: &mut D)
        where
            D::Error: std::fmt::Debug,
        {
            let area = target.bounding_box();
            let (w, h) = (area.size.width as i32, area.size.height as i32);
            let clips = [
                area,
                Rectangle::new(Point::new(20, 10), Size::new(90, 35)),
                Rectangle::new(Point::new(-30, -30), Size::new(60, 60)),
            ];
            let samples = [
                ("Gram Altın ÇEYREK ₺ 2,450.00", Weight::Bold, false),
                ("67012.50 +1.53%", Weight::Bold, true),
                ("دلار آمریکا ۶۷٬۰۱۲", Weight::Bold, true),
                ("نیم‌سکه (گرم)", Weight::Regular, false),
                ("Waiting for prices…", Weight::Regular, false),
            ];
            for (i, clip) in clips.iter().enumerate() {
                for (j, &(s, weight, tabular)) in samples.iter().enumerate() {
                    let style = TextStyle {
                        size: [13, 31, 64][(i + j) % 3],
                        weight,
                        color: Rgb888::new(250, 200, 20 * j as u8),
                        background: Rgb888::new(10, 20 * i as u8, 30),
                        tabular,
                    };
                    // Inside, and across each edge of the frame.
                    for (x, y, align) in [
                        (10, 40, Align::Left),
                        (-25, 20, Align::Left),
                        (w + 20, h - 5, Align::Right),
                        (w / 2, 8, Align::Center),
                        (w / 3, h + 12, Align::Left),
                    ] {
                        text.draw_text(target, s, Point::new(x, y), align, &style, clip)
                            .unwrap();
                    }
                }
            }
        }

        let mut text = Text::new();
        let mut fast = Canvas::new(240, 90);
        let mut slow = PixelByPixel(Canvas::new(240, 90));
        texts(&mut text, &mut fast);
        texts(&mut text, &mut slow);
        assert!(fast.pixels.iter().filter(|&&p| p != 0).count() > 2_000);
        assert!(fast == slow.0, "the same pixels on a plain frame");
        for rotation in [
            Rotation::None,
            Rotation::Cw90,
            Rotation::Cw180,
            Rotation::Cw270,
        ] {
            let shift = Point::new(2, -3);
            let mut fast = Rotated::new(Canvas::new(240, 90), rotation).with_shift(3, shift);
            let mut slow =
                Rotated::new(PixelByPixel(Canvas::new(240, 90)), rotation).with_shift(3, shift);
            texts(&mut text, &mut fast);
            texts(&mut text, &mut slow);
            assert!(
                *fast.inner() == slow.inner().0,
                "the same pixels turned {rotation:?}"
            );
        }
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
        let mut frame = Canvas::new(200, 80);
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
        let mut frame = Canvas::new(200, 60);
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

    /// What `tests/fixtures/shaping/shaping.txt` says of one string: the
    /// glyphs pango drew, in visual order, with their byte clusters; and
    /// hb-shape's runs (offset, glyph, cluster, advance in font units).
    struct Reference {
        text: String,
        pango: Vec<(u32, u32)>,
        hb: Vec<(u32, u32, f32)>,
    }

    /// pango's id for a default-ignorable character (ZWNJ) it draws as
    /// nothing; HarfBuzz shapes it to a zero-width glyph instead.
    const PANGO_GLYPH_EMPTY: u32 = 0x0FFF_FFFF;

    fn references() -> Vec<Reference> {
        let fixture = include_str!("../../tests/fixtures/shaping/shaping.txt");
        let mut out: Vec<Reference> = Vec::new();
        for line in fixture.lines().filter(|l| !l.starts_with('#')) {
            let fields: Vec<&str> = line.split('\t').collect();
            match fields[0] {
                "text" => out.push(Reference {
                    text: fields[1].to_owned(),
                    pango: Vec::new(),
                    hb: Vec::new(),
                }),
                "pango" => {
                    let last = out.last_mut().expect("text first");
                    last.pango = fields[1]
                        .split(' ')
                        .map(|g| {
                            let (id, cluster) = g.split_once('@').expect("glyph@cluster");
                            (id.parse().unwrap(), cluster.parse().unwrap())
                        })
                        .collect();
                }
                "run" => {
                    let last = out.last_mut().expect("text first");
                    let offset: u32 = fields[1].parse().unwrap();
                    let glyphs = fields[4].trim_start_matches('[').trim_end_matches(']');
                    for g in glyphs.split('|') {
                        // `id=cluster+advance`, or `id=cluster@x,y+advance`.
                        let (id, rest) = g.split_once('=').unwrap();
                        let (cluster, advance) = rest.split_once('+').unwrap();
                        let cluster = cluster.split('@').next().unwrap();
                        last.hb.push((
                            id.parse().unwrap(),
                            offset + cluster.parse::<u32>().unwrap(),
                            advance.parse().unwrap(),
                        ));
                    }
                }
                other => panic!("unknown fixture line {other:?}"),
            }
        }
        out
    }

    #[track_caller]
    fn check_shaping(text: &Text, reference: &Reference) {
        let ours = text.shape_for_test(&reference.text, Weight::Bold, false);
        let ids: Vec<(u32, u32)> = ours
            .iter()
            .map(|g| (u32::from(g.id.0), g.cluster))
            .collect();
        let hb: Vec<(u32, u32)> = reference.hb.iter().map(|&(id, c, _)| (id, c)).collect();
        assert_eq!(
            ids, hb,
            "{}: glyphs and clusters against hb-shape",
            reference.text
        );
        assert_eq!(ids.len(), reference.pango.len(), "{}", reference.text);
        for (i, (&(id, cluster), &(pango_id, pango_cluster))) in
            ids.iter().zip(&reference.pango).enumerate()
        {
            assert_eq!(
                cluster, pango_cluster,
                "{}: cluster of glyph {i}",
                reference.text
            );
            if pango_id == PANGO_GLYPH_EMPTY {
                assert_eq!(
                    reference.hb[i].2, 0.0,
                    "{}: glyph {i} is invisible",
                    reference.text
                );
            } else {
                assert_eq!(id, pango_id, "{}: glyph {i} against pango", reference.text);
            }
        }
        // Pen positions: each glyph starts where the advances before it end.
        let mut x = 0.0;
        for (g, &(_, _, advance)) in ours.iter().zip(&reference.hb) {
            assert_eq!(g.x, x, "{}: glyph at cluster {}", reference.text, g.cluster);
            x += advance;
        }
    }

    #[test]
    fn mixed_persian_and_arabic_shape_like_pango_and_hb_shape() {
        let text = Text::new();
        let references = references();
        assert_eq!(references.len(), 5);
        for reference in &references {
            check_shaping(&text, reference);
        }
        // The brief's example: the number run `۶۷٬۰۱۲` comes first from the
        // left, in logical order (clusters rising), then the words right to
        // left (clusters falling), joined (ل and ا make one ligature).
        let ours = text.shape_for_test("دلار آمریکا ۶۷٬۰۱۲", Weight::Bold, false);
        let clusters: Vec<u32> = ours.iter().map(|g| g.cluster).collect();
        assert_eq!(clusters[..6], [22, 24, 26, 28, 30, 32]);
        assert!(
            clusters[6..].windows(2).all(|w| w[0] > w[1]),
            "{clusters:?}"
        );
        assert_eq!(clusters.len(), 17, "18 characters, one ligature");
    }

    #[test]
    fn only_text_that_needs_it_is_shaped_and_shaping_is_cached() {
        for (s, shaped) in [
            ("BTC/USDT 67,012.50", false),
            ("Gram Altın ÇEYREK 22 Ayar ₺ €", false),
            ("۶۷٬۰۱۲٫۵۰ ٢٬٤٥٠٫٠٠ ٪", false),
            ("Waiting for prices… — •", false),
            ("دلار", true),
            ("a\u{200C}b", true),
            ("a\u{202B}b", true),
            ("e\u{0301}", true),
        ] {
            assert_eq!(needs_shaping(s), shaped, "{s:?}");
        }
        let mut text = Text::new();
        let mut frame = Canvas::new(400, 60);
        let clip = frame.bounding_box();
        for size in [20, 30, 40, 30] {
            text.draw_text(
                &mut frame,
                "سکه بهار آزادی",
                Point::new(0, 50),
                Align::Left,
                &style(size, false),
                &clip,
            )
            .unwrap();
        }
        assert_eq!(text.shaped(), 1, "one shaping serves every size");
    }

    #[test]
    fn direction_of_a_text_is_its_first_strong_character() {
        for (s, rtl) in [
            ("دلار", true),
            ("۱۸ عیار", true),
            ("USD دلار", false),
            ("۶۷٬۰۱۲", false),
            ("ذهب", true),
            ("", false),
        ] {
            assert_eq!(is_rtl_text(s), rtl, "{s:?}");
        }
    }

    #[test]
    fn persian_digits_use_the_fonts_tabular_forms() {
        let text = Text::new();
        let tabular = style(64, true);
        assert_eq!(
            text.measure("۱۱۱۱", &tabular),
            text.measure("۸۸۸۸", &tabular)
        );
        assert_eq!(
            text.measure("٦٧٠١٢", &tabular),
            text.measure("١١١١١", &tabular)
        );
        // Vazirmatn's default ۱ is narrower than its ۲; `tnum` evens them.
        let proportional = style(64, false);
        assert!(text.measure("۱", &proportional) < text.measure("۲", &proportional));
        // The tnum glyph, as hb-shape --features=tnum gives it (Bold: ۶ is
        // glyph 916 with tnum, 915 without).
        assert_eq!(text.metrics[1].eastern_tnum[16], GlyphId(916));
    }

    #[test]
    fn the_cache_rasterizes_each_glyph_once_and_stays_bounded() {
        let mut text = Text::new();
        let mut frame = Canvas::new(400, 60);
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
