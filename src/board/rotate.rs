//! Rotation and pixel shift, as a `DrawTarget` adapter.
//!
//! The board is drawn in logical coordinates: a screen mounted in portrait
//! gets a logical size of 1080×1920 even though its frame buffer is
//! 1920×1080. [`Rotated`] wraps the physical target and maps each pixel
//! (and each filled rectangle, whole) to where it belongs, rotated clockwise
//! by 0, 90, 180 or 270 degrees. With a pixel-shift margin the logical board
//! is a little smaller than the screen and is moved inside it by
//! [`shift_at`], a few pixels every few minutes against burn-in, with no
//! change of layout.
//!
//! This module never does I/O and never reads the clock.

use embedded_graphics::Pixel;
use embedded_graphics::prelude::{
    Dimensions, DrawTarget, OriginDimensions, Point, PointsIter, Size,
};
use embedded_graphics::primitives::Rectangle;

use super::png::within;

/// Clockwise rotation of the board on the screen (`[display] rotate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rotation {
    /// As is.
    #[default]
    None,
    /// A quarter turn clockwise: the board's top is on the screen's right.
    Cw90,
    /// Upside down.
    Cw180,
    /// Three quarter turns clockwise: the board's top is on the screen's left.
    Cw270,
}

impl Rotation {
    /// From `[display] rotate`; `None` for anything but 0, 90, 180 and 270.
    pub fn from_degrees(degrees: u16) -> Option<Rotation> {
        match degrees {
            0 => Some(Rotation::None),
            90 => Some(Rotation::Cw90),
            180 => Some(Rotation::Cw180),
            270 => Some(Rotation::Cw270),
            _ => None,
        }
    }

    /// Whether width and height trade places.
    pub fn is_quarter(self) -> bool {
        matches!(self, Rotation::Cw90 | Rotation::Cw270)
    }
}

/// How often [`shift_at`] moves the board: slow enough that nobody notices
/// a move, often enough that no pixel shows the same edge for hours.
pub const SHIFT_PERIOD_MS: u64 = 180_000;

/// The offsets [`shift_at`] walks through, in units of the margin: the
/// centre, then once around it.
const SHIFT_PATTERN: [(i32, i32); 9] = [
    (0, 0),
    (1, 0),
    (1, 1),
    (0, 1),
    (-1, 1),
    (-1, 0),
    (-1, -1),
    (0, -1),
    (1, -1),
];

/// The pixel shift at `now_ms` for a margin of `margin` pixels: each
/// component within `-margin..=margin`, changing every [`SHIFT_PERIOD_MS`].
pub fn shift_at(now_ms: u64, margin: u32) -> Point {
    let step = (now_ms / SHIFT_PERIOD_MS) as usize % SHIFT_PATTERN.len();
    let (x, y) = SHIFT_PATTERN[step];
    let m = i32::try_from(margin).unwrap_or(i32::MAX);
    Point::new(x * m, y * m)
}

/// A physical target seen through a rotation and a pixel shift. See the
/// module docs.
#[derive(Debug)]
pub struct Rotated<D> {
    inner: D,
    rotation: Rotation,
    /// Pixels kept free on each side for the shift.
    margin: u32,
    /// Current shift, each component within `-margin..=margin`.
    shift: Point,
}

impl<D: DrawTarget> Rotated<D> {
    /// `inner` rotated, with no pixel shift.
    pub fn new(inner: D, rotation: Rotation) -> Rotated<D> {
        Rotated {
            inner,
            rotation,
            margin: 0,
            shift: Point::zero(),
        }
    }

    /// Keeps `margin` pixels free on every side and moves the board by
    /// `shift` (clamped to the margin) within them.
    pub fn with_shift(mut self, margin: u32, shift: Point) -> Rotated<D> {
        self.margin = margin;
        self.set_shift(shift);
        self
    }

    /// Moves the board to `shift`, clamped to the margin.
    pub fn set_shift(&mut self, shift: Point) {
        let m = i32::try_from(self.margin).unwrap_or(i32::MAX);
        self.shift = Point::new(shift.x.clamp(-m, m), shift.y.clamp(-m, m));
    }

    /// Pixels kept free on each side for the shift.
    pub fn margin(&self) -> u32 {
        self.margin
    }

    /// The current shift.
    pub fn shift(&self) -> Point {
        self.shift
    }

    /// The wrapped target.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The target it draws into, to change (only what `Rotated` does not
    /// track: a canvas's record of changes).
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Gives the wrapped target back.
    pub fn into_inner(self) -> D {
        self.inner
    }

    fn geometry(&self) -> Mapping {
        Mapping {
            rotation: self.rotation,
            offset: Point::new(
                self.margin as i32 + self.shift.x,
                self.margin as i32 + self.shift.y,
            ),
            physical: self.inner.bounding_box(),
        }
    }

    /// Where a logical point lands on the physical target.
    pub fn map(&self, at: Point) -> Point {
        self.geometry().map(at)
    }

    /// Where a logical rectangle lands on the physical target (for
    /// presenting only a redrawn part, such as `draw::draw_news`'s strip).
    pub fn map_rect(&self, area: &Rectangle) -> Rectangle {
        self.geometry().map_rect(area)
    }
}

/// What [`Rotated`] needs to map a point, copied out so that the wrapped
/// target can be borrowed mutably while pixels are mapped.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    rotation: Rotation,
    /// Margin plus shift.
    offset: Point,
    physical: Rectangle,
}

impl Mapping {
    fn map(&self, at: Point) -> Point {
        let (pw, ph) = (
            self.physical.size.width as i32,
            self.physical.size.height as i32,
        );
        let Point { x, y } = at + self.offset;
        let (px, py) = match self.rotation {
            Rotation::None => (x, y),
            Rotation::Cw90 => (pw - 1 - y, x),
            Rotation::Cw180 => (pw - 1 - x, ph - 1 - y),
            Rotation::Cw270 => (y, ph - 1 - x),
        };
        self.physical.top_left + Point::new(px, py)
    }

    fn map_rect(&self, area: &Rectangle) -> Rectangle {
        let Some(bottom_right) = area.bottom_right() else {
            return Rectangle::new(self.map(area.top_left), Size::zero());
        };
        let (a, b) = (self.map(area.top_left), self.map(bottom_right));
        Rectangle::with_corners(
            Point::new(a.x.min(b.x), a.y.min(b.y)),
            Point::new(a.x.max(b.x), a.y.max(b.y)),
        )
    }
}

impl<D: DrawTarget> OriginDimensions for Rotated<D> {
    fn size(&self) -> Size {
        let size = self.inner.bounding_box().size;
        let size = if self.rotation.is_quarter() {
            Size::new(size.height, size.width)
        } else {
            size
        };
        let free = 2 * self.margin;
        Size::new(
            size.width.saturating_sub(free),
            size.height.saturating_sub(free),
        )
    }
}

impl<D: DrawTarget> DrawTarget for Rotated<D> {
    type Color = D::Color;
    type Error = D::Error;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        let logical = self.bounding_box();
        let geometry = self.geometry();
        self.inner.draw_iter(
            pixels
                .into_iter()
                .filter(|Pixel(at, _)| logical.contains(*at))
                .map(|Pixel(at, color)| Pixel(geometry.map(at), color)),
        )
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Self::Color) -> Result<(), Self::Error> {
        let area = area.intersection(&self.bounding_box());
        if area.is_zero_sized() {
            return Ok(());
        }
        let physical = self.geometry().map_rect(&area);
        self.inner.fill_solid(&physical, color)
    }

    /// Passes a run of pixels on whole when the rotation keeps its order
    /// (none, or a quarter turn of a one-pixel-high run, which becomes a
    /// column read top to bottom), so the wrapped frame can write it as a
    /// slice; otherwise, or when part of it lies outside the board, pixel
    /// by pixel as `draw_iter` would.
    fn fill_contiguous<I>(&mut self, area: &Rectangle, colors: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Self::Color>,
    {
        let in_order = match self.rotation {
            Rotation::None => true,
            Rotation::Cw90 => area.size.height == 1,
            Rotation::Cw180 | Rotation::Cw270 => false,
        };
        let logical = self.size();
        if in_order && !area.is_zero_sized() && within(area, logical.width, logical.height) {
            let physical = self.geometry().map_rect(area);
            return self.inner.fill_contiguous(&physical, colors);
        }
        self.draw_iter(
            area.points()
                .zip(colors)
                .map(|(at, color)| Pixel(at, color)),
        )
    }

    fn clear(&mut self, color: Self::Color) -> Result<(), Self::Error> {
        self.inner.clear(color)
    }
}

#[cfg(test)]
mod tests {
    use embedded_graphics::Drawable;
    use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
    use embedded_graphics::prelude::{PointsIter, Primitive};
    use embedded_graphics::primitives::PrimitiveStyle;

    use super::*;
    use crate::board::png::Canvas;

    const RED: Rgb888 = Rgb888::RED;

    /// Draws one pixel at logical `at` through `rotation` on a 6×4 screen
    /// and returns where it landed.
    #[track_caller]
    fn check(rotation: Rotation, at: Point, expected: (u32, u32)) {
        let mut screen = Rotated::new(Canvas::new(6, 4), rotation);
        screen.draw_iter([Pixel(at, RED)]).unwrap();
        let frame = screen.into_inner();
        let lit: Vec<(u32, u32)> = (0..4)
            .flat_map(|y| (0..6).map(move |x| (x, y)))
            .filter(|&(x, y)| frame.pixel(x, y) == RED)
            .collect();
        assert_eq!(lit, [expected], "{rotation:?} {at:?}");
    }

    #[test]
    fn quarter_turns_map_corners_clockwise() {
        check(Rotation::None, Point::new(1, 2), (1, 2));
        // Logical 4×6: its top-left is the screen's top-right.
        check(Rotation::Cw90, Point::new(0, 0), (5, 0));
        check(Rotation::Cw90, Point::new(3, 0), (5, 3));
        check(Rotation::Cw90, Point::new(1, 2), (3, 1));
        check(Rotation::Cw180, Point::new(0, 0), (5, 3));
        check(Rotation::Cw270, Point::new(0, 0), (0, 3));
        check(Rotation::Cw270, Point::new(1, 2), (2, 2));
    }

    #[test]
    fn logical_size_swaps_and_pixels_outside_are_dropped() {
        let mut screen = Rotated::new(Canvas::new(6, 4), Rotation::Cw90);
        assert_eq!(screen.size(), Size::new(4, 6));
        screen
            .draw_iter([Pixel(Point::new(4, 0), RED), Pixel(Point::new(0, -1), RED)])
            .unwrap();
        assert!(screen.inner().pixels.iter().all(|&p| p == 0));
    }

    #[test]
    fn filled_rectangles_map_like_their_pixels() {
        for rotation in [
            Rotation::None,
            Rotation::Cw90,
            Rotation::Cw180,
            Rotation::Cw270,
        ] {
            let mut by_fill =
                Rotated::new(Canvas::new(7, 5), rotation).with_shift(1, Point::new(1, -1));
            let mut by_pixel =
                Rotated::new(Canvas::new(7, 5), rotation).with_shift(1, Point::new(1, -1));
            let area = Rectangle::new(Point::new(1, 0), Size::new(2, 9));
            by_fill.fill_solid(&area, RED).unwrap();
            by_pixel
                .draw_iter(area.points().map(|p| Pixel(p, RED)))
                .unwrap();
            assert_eq!(by_fill.into_inner(), by_pixel.into_inner(), "{rotation:?}");
        }
    }

    #[test]
    fn pixel_shift_keeps_a_margin_and_moves_within_it() {
        let mut screen =
            Rotated::new(Canvas::new(10, 8), Rotation::None).with_shift(2, Point::new(5, -5));
        assert_eq!(screen.size(), Size::new(6, 4));
        Rectangle::new(Point::zero(), screen.size())
            .into_styled(PrimitiveStyle::with_fill(RED))
            .draw(&mut screen)
            .unwrap();
        let frame = screen.into_inner();
        // Shift clamped to (2, -2): the board spans x 4..=9, y 0..=3.
        assert_eq!(frame.pixel(4, 0), RED);
        assert_eq!(frame.pixel(9, 3), RED);
        assert_ne!(frame.pixel(3, 0), RED);
        assert_ne!(frame.pixel(4, 4), RED);
    }

    #[test]
    fn shift_walks_around_the_centre_slowly() {
        assert_eq!(shift_at(0, 3), Point::zero());
        assert_eq!(shift_at(SHIFT_PERIOD_MS - 1, 3), Point::zero());
        assert_eq!(shift_at(SHIFT_PERIOD_MS, 3), Point::new(3, 0));
        let all: Vec<Point> = (0..9).map(|n| shift_at(n * SHIFT_PERIOD_MS, 2)).collect();
        assert!(all.iter().all(|p| p.x.abs() <= 2 && p.y.abs() <= 2));
        assert_eq!(shift_at(9 * SHIFT_PERIOD_MS, 2), Point::zero());
    }
}
