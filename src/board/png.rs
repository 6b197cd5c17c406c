//! An in-memory frame, and the board as a PNG file.
//!
//! [`Canvas`] is a plain `0x00RRGGBB` pixel buffer (the layout of a minifb
//! window and of a 32 bpp framebuffer) that the board draws into. It
//! writes a pixel only when its colour changes and remembers, per line,
//! the span of pixels that changed since [`Canvas::clear_changes`], so a
//! screen copies just those: on a Pi's framebuffer (uncached memory) and
//! in a VM that charges for the first write to a page after a pause, a
//! clock that ticks then costs a few hundred pixels a second, not its
//! whole strip.
//! [`encode`] turns it into PNG bytes; [`write_atomically`] puts those in a
//! file so that a reader (a web server, a screenshot script) never sees half
//! a picture.
//!
//! Only [`write_atomically`] does I/O, and only to the path it is given and
//! a temporary file beside it. Nothing here reads the clock.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use embedded_graphics::Pixel;
use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use embedded_graphics::prelude::{
    Dimensions, DrawTarget, OriginDimensions, Point, PointsIter, Size,
};
use embedded_graphics::primitives::Rectangle;

/// A frame of `width × height` pixels, row by row, each `0x00RRGGBB`,
/// with the span of each line that changed since the frame was last shown
/// (see the module docs). Two canvases are equal when their pixels are.
#[derive(Clone, Debug)]
pub struct Canvas {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width × height` pixels, top row first. Drawing through
    /// [`DrawTarget`] records what changed; a direct write here does not
    /// (call [`Canvas::mark_all_changed`] after one).
    pub pixels: Vec<u32>,
    /// Per line, the changed pixels `start..end` (empty: none).
    changed: Vec<Span>,
}

/// Columns `start..end` of one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    const NONE: Span = Span {
        start: u32::MAX,
        end: 0,
    };

    fn add(&mut self, start: usize, end: usize) {
        self.start = self.start.min(start as u32);
        self.end = self.end.max(end as u32);
    }
}

impl PartialEq for Canvas {
    fn eq(&self, other: &Canvas) -> bool {
        (self.width, self.height) == (other.width, other.height) && self.pixels == other.pixels
    }
}

impl Eq for Canvas {}

impl Canvas {
    /// A black frame, all of it changed (a screen holds anything before
    /// it is first shown).
    pub fn new(width: u32, height: u32) -> Canvas {
        let mut canvas = Canvas {
            width,
            height,
            pixels: vec![0; width as usize * height as usize],
            changed: vec![Span::NONE; height as usize],
        };
        canvas.mark_all_changed();
        canvas
    }

    /// The columns of line `y` that changed since [`Canvas::clear_changes`],
    /// if any.
    pub fn changed_in_line(&self, y: u32) -> Option<std::ops::Range<u32>> {
        let span = self.changed.get(y as usize)?;
        (span.start < span.end).then_some(span.start..span.end)
    }

    /// The smallest rectangle around every changed pixel; `None` when none
    /// changed.
    pub fn changed_bounds(&self) -> Option<Rectangle> {
        let mut lines = self
            .changed
            .iter()
            .enumerate()
            .filter(|(_, span)| span.start < span.end);
        let (top, first) = lines.next()?;
        let (mut bottom, mut left, mut right) = (top, first.start, first.end);
        for (y, span) in lines {
            bottom = y;
            left = left.min(span.start);
            right = right.max(span.end);
        }
        Some(Rectangle::new(
            Point::new(left as i32, top as i32),
            Size::new(right - left, (bottom - top + 1) as u32),
        ))
    }

    /// The frame was shown: nothing has changed since.
    pub fn clear_changes(&mut self) {
        self.changed.fill(Span::NONE);
    }

    /// Counts every pixel as changed (after writing `pixels` directly, or
    /// when the screen lost what it showed).
    pub fn mark_all_changed(&mut self) {
        self.changed.fill(Span {
            start: 0,
            end: self.width,
        });
    }

    /// Sets columns `left..right` of line `y` to `value`, writing only from
    /// the first pixel that differs to the last, and records that span.
    fn fill_line(&mut self, y: usize, left: usize, right: usize, value: u32) {
        let start = y * self.width as usize;
        let line = &mut self.pixels[start + left..start + right];
        let Some(first) = first_other(line, value) else {
            return;
        };
        let last = first + last_other(&line[first..], value).unwrap_or(0);
        line[first..=last].fill(value);
        self.changed[y].add(left + first, left + last + 1);
    }

    /// The colour at `(x, y)`; black outside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> Rgb888 {
        if x >= self.width || y >= self.height {
            return Rgb888::BLACK;
        }
        let p = self.pixels[(y * self.width + x) as usize];
        Rgb888::new((p >> 16) as u8, (p >> 8) as u8, p as u8)
    }

    fn index(&self, at: Point) -> Option<usize> {
        let (x, y) = (u32::try_from(at.x).ok()?, u32::try_from(at.y).ok()?);
        (x < self.width && y < self.height).then(|| (y * self.width + x) as usize)
    }

    /// Reads a PNG written by `encode` (8-bit RGB or RGBA).
    pub fn decode(png: &[u8]) -> io::Result<Canvas> {
        let decoder = png::Decoder::new(io::Cursor::new(png));
        let mut reader = decoder.read_info().map_err(io::Error::other)?;
        let mut buffer = vec![0; reader.output_buffer_size().unwrap_or(0)];
        let info = reader.next_frame(&mut buffer).map_err(io::Error::other)?;
        let channels = match (info.color_type, info.bit_depth) {
            (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
            (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unsupported PNG pixel format {other:?}"),
                ));
            }
        };
        let mut frame = Canvas::new(info.width, info.height);
        for (y, line) in buffer
            .chunks(info.line_size)
            .take(info.height as usize)
            .enumerate()
        {
            for (x, p) in line.chunks(channels).take(info.width as usize).enumerate() {
                frame.pixels[y * info.width as usize + x] =
                    u32::from(p[0]) << 16 | u32::from(p[1]) << 8 | u32::from(p[2]);
            }
        }
        Ok(frame)
    }
}

/// Whether `area` (not empty) lies wholly inside a `width × height` frame
/// at the origin: a few comparisons, where `Rectangle::intersection` is
/// dozens of instructions, for a check made once per run of text pixels.
pub(crate) fn within(area: &Rectangle, width: u32, height: u32) -> bool {
    let Point { x, y } = area.top_left;
    x >= 0
        && y >= 0
        && u64::from(x as u32) + u64::from(area.size.width) <= u64::from(width)
        && u64::from(y as u32) + u64::from(area.size.height) <= u64::from(height)
}

/// Pixels compared at once by [`first_other`] and [`last_other`]: 64
/// bytes, one cache line.
const BLOCK: usize = 16;

/// Whether any pixel of `block` is not `value`, without branching per
/// pixel (the compiler turns it into vector compares).
fn differs(block: &[u32], value: u32) -> bool {
    block.iter().fold(0, |acc, &p| acc | (p ^ value)) != 0
}

/// The first pixel of `line` that is not `value`. Most fills find none
/// (a background painted over itself), so the line is compared a
/// [`BLOCK`] at a time, then searched within the block that differs (or
/// the tail after the last whole block).
fn first_other(line: &[u32], value: u32) -> Option<usize> {
    let blocks = line.chunks_exact(BLOCK);
    let tail = line.len() - blocks.remainder().len();
    let (start, part) = blocks
        .enumerate()
        .find(|(_, block)| differs(block, value))
        .map_or((tail, &line[tail..]), |(i, block)| (i * BLOCK, block));
    part.iter().position(|&p| p != value).map(|at| start + at)
}

/// The last pixel of `line` that is not `value` ([`first_other`] from the
/// end).
fn last_other(line: &[u32], value: u32) -> Option<usize> {
    let blocks = line.rchunks_exact(BLOCK);
    let head = blocks.remainder().len();
    let (start, part) = blocks
        .enumerate()
        .find(|(_, block)| differs(block, value))
        .map_or((0, &line[..head]), |(i, block)| {
            (line.len() - (i + 1) * BLOCK, block)
        });
    part.iter().rposition(|&p| p != value).map(|at| start + at)
}

fn pack(color: Rgb888) -> u32 {
    u32::from(color.r()) << 16 | u32::from(color.g()) << 8 | u32::from(color.b())
}

impl OriginDimensions for Canvas {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for Canvas {
    type Color = Rgb888;
    type Error = std::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(at, color) in pixels {
            if let Some(i) = self.index(at) {
                let value = pack(color);
                if self.pixels[i] != value {
                    self.pixels[i] = value;
                    let x = at.x as usize;
                    self.changed[at.y as usize].add(x, x + 1);
                }
            }
        }
        Ok(())
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Self::Color) -> Result<(), Self::Error> {
        let area = area.intersection(&self.bounding_box());
        let Some(bottom_right) = area.bottom_right() else {
            return Ok(());
        };
        let value = pack(color);
        let (left, right) = (area.top_left.x as usize, bottom_right.x as usize + 1);
        for y in area.top_left.y as usize..=bottom_right.y as usize {
            self.fill_line(y, left, right, value);
        }
        Ok(())
    }

    /// Writes a run of pixels straight into the buffer, row by row: the
    /// glyph blit of `board::text` sends each run of inked pixels here, so
    /// text costs a slice write per run instead of a bounds check per pixel.
    /// An area not wholly inside the frame takes the per-pixel path, which
    /// drops what falls outside.
    fn fill_contiguous<I>(&mut self, area: &Rectangle, colors: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Self::Color>,
    {
        if area.is_zero_sized() {
            return Ok(());
        }
        if !within(area, self.width, self.height) {
            return self.draw_iter(
                area.points()
                    .zip(colors)
                    .map(|(at, color)| Pixel(at, color)),
            );
        }
        let (left, top) = (area.top_left.x as usize, area.top_left.y as usize);
        let (width, stride) = (area.size.width as usize, self.width as usize);
        let mut colors = colors.into_iter();
        for y in top..top + area.size.height as usize {
            let start = y * stride + left;
            let mut span = Span::NONE;
            for (x, (pixel, color)) in self.pixels[start..start + width]
                .iter_mut()
                .zip(colors.by_ref())
                .enumerate()
            {
                let value = pack(color);
                if *pixel != value {
                    *pixel = value;
                    span.add(x, x + 1);
                }
            }
            if span.start < span.end {
                self.changed[y].add(left + span.start as usize, left + span.end as usize);
            }
        }
        Ok(())
    }

    fn clear(&mut self, color: Self::Color) -> Result<(), Self::Error> {
        let (width, value) = (self.width as usize, pack(color));
        for y in 0..self.height as usize {
            self.fill_line(y, 0, width, value);
        }
        Ok(())
    }
}

/// `frame` as an 8-bit RGB PNG, written to `out`. Boards are mostly flat
/// colour: fast compression is small enough and keeps a 4K frame well under
/// the once-a-second budget of `display = "png"`.
pub fn encode(frame: &Canvas, out: impl Write) -> io::Result<()> {
    encode_with(frame, out, png::Compression::Fast)
}

/// `frame` as an 8-bit RGB PNG at a chosen compression (pictures kept in
/// git, such as the golden tests', are worth the slower `High`).
pub fn encode_with(
    frame: &Canvas,
    out: impl Write,
    compression: png::Compression,
) -> io::Result<()> {
    let mut encoder = png::Encoder::new(out, frame.width, frame.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(compression);
    let mut writer = encoder.write_header().map_err(io::Error::other)?;
    let mut stream = writer.stream_writer().map_err(io::Error::other)?;
    let mut line = Vec::with_capacity(frame.width as usize * 3);
    for row in frame.pixels.chunks(frame.width.max(1) as usize) {
        line.clear();
        for &p in row {
            line.extend_from_slice(&[(p >> 16) as u8, (p >> 8) as u8, p as u8]);
        }
        stream.write_all(&line)?;
    }
    stream.finish().map_err(io::Error::other)?;
    Ok(())
}

/// Writes `frame` as a PNG to `path` so that readers see the old file or
/// the new one, never a mix: a temporary file in the same directory,
/// written, fsynced, renamed over `path`, then the directory fsynced.
pub fn write_atomically(path: &Path, frame: &Canvas) -> io::Result<()> {
    replace(path, frame, true)
}

/// Like [`write_atomically`], but with `durable` false nothing is fsynced:
/// readers still never see half a picture, but a power cut may leave the
/// old one. For a file rewritten every second, where an fsync each time
/// would only wear the SD card.
pub fn replace(path: &Path, frame: &Canvas, durable: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a file path", path.display()),
        )
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    let result = (|| {
        let file = File::create(&temp)?;
        let mut out = BufWriter::new(file);
        encode(frame, &mut out)?;
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        if durable {
            file.sync_all()?;
        }
        fs::rename(&temp, path)?;
        if durable {
            // The rename itself is durable once the directory is synced.
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use embedded_graphics::Drawable;
    use embedded_graphics::prelude::Primitive;
    use embedded_graphics::primitives::PrimitiveStyle;

    use super::*;

    #[test]
    fn a_frame_round_trips_through_a_png_file() {
        let mut frame = Canvas::new(7, 5);
        frame.clear(Rgb888::new(1, 2, 3)).unwrap();
        Rectangle::new(Point::new(2, 1), Size::new(3, 2))
            .into_styled(PrimitiveStyle::with_fill(Rgb888::new(250, 128, 0)))
            .draw(&mut frame)
            .unwrap();
        frame
            .draw_iter([
                Pixel(Point::new(6, 4), Rgb888::new(9, 8, 7)),
                Pixel(Point::new(7, 4), Rgb888::WHITE),
                Pixel(Point::new(-1, 0), Rgb888::WHITE),
            ])
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("board.png");
        write_atomically(&path, &frame).unwrap();
        write_atomically(&path, &frame).unwrap();
        let back = Canvas::decode(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, frame);
        assert_eq!(frame.pixel(3, 2), Rgb888::new(250, 128, 0));
        assert_eq!(frame.pixel(6, 4), Rgb888::new(9, 8, 7));
        // Only the file itself is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["board.png"]);
    }

    /// What changed since the frame was last shown, line by line.
    fn changes(frame: &Canvas) -> Vec<Option<std::ops::Range<u32>>> {
        (0..frame.height)
            .map(|y| frame.changed_in_line(y))
            .collect()
    }

    #[test]
    fn only_pixels_that_change_colour_are_recorded() {
        let mut frame = Canvas::new(8, 4);
        assert_eq!(
            changes(&frame),
            vec![Some(0..8); 4],
            "a new frame is all new"
        );
        frame.clear_changes();
        assert_eq!(frame.changed_bounds(), None);
        // Black on black: nothing changes.
        frame.clear(Rgb888::BLACK).unwrap();
        frame
            .fill_solid(
                &Rectangle::new(Point::new(1, 1), Size::new(4, 2)),
                Rgb888::BLACK,
            )
            .unwrap();
        assert_eq!(frame.changed_bounds(), None);
        // A red box, then a fill over it that repaints part of it red.
        let red = Rgb888::RED;
        frame
            .fill_solid(&Rectangle::new(Point::new(2, 1), Size::new(3, 2)), red)
            .unwrap();
        frame.clear_changes();
        frame
            .fill_solid(&Rectangle::new(Point::new(0, 1), Size::new(6, 1)), red)
            .unwrap();
        // Columns 2..5 were red already: the span is 0..6 (the first to the
        // last pixel that changed), line 2 untouched.
        assert_eq!(changes(&frame), vec![None, Some(0..6), None, None]);
        frame.clear_changes();
        frame
            .fill_solid(&Rectangle::new(Point::new(0, 1), Size::new(6, 1)), red)
            .unwrap();
        assert_eq!(
            frame.changed_bounds(),
            None,
            "the same fill again changes nothing"
        );
        // A run of pixels, the same as what is there but for one.
        let line: Vec<u32> = frame.pixels[8..16].to_vec();
        let mut colors: Vec<Rgb888> = line
            .iter()
            .map(|&p| Rgb888::new((p >> 16) as u8, (p >> 8) as u8, p as u8))
            .collect();
        colors[7] = Rgb888::GREEN;
        frame
            .fill_contiguous(&Rectangle::new(Point::new(0, 1), Size::new(8, 1)), colors)
            .unwrap();
        assert_eq!(changes(&frame), vec![None, Some(7..8), None, None]);
        frame
            .draw_iter([
                Pixel(Point::new(3, 3), Rgb888::BLUE),
                Pixel(Point::new(5, 3), Rgb888::BLUE),
                Pixel(Point::new(6, 3), Rgb888::BLACK),
                Pixel(Point::new(9, 3), Rgb888::BLUE),
            ])
            .unwrap();
        assert_eq!(changes(&frame), vec![None, Some(7..8), None, Some(3..6)]);
        assert_eq!(
            frame.changed_bounds(),
            Some(Rectangle::new(Point::new(3, 1), Size::new(5, 3)))
        );
        // Equal pixels are equal frames, whatever they record.
        let mut other = frame.clone();
        other.clear_changes();
        assert_eq!(other, frame);
        other.mark_all_changed();
        assert_eq!(changes(&other), vec![Some(0..8); 4]);
    }

    #[test]
    fn the_first_and_last_other_pixels_are_found_in_any_block_and_the_tail() {
        for len in [0, 1, 15, 16, 17, 40] {
            let line = vec![7u32; len];
            assert_eq!(first_other(&line, 7), None, "len {len}");
            assert_eq!(last_other(&line, 7), None, "len {len}");
            for at in 0..len {
                let mut line = line.clone();
                line[at] = 8;
                if at + 1 < len {
                    line[len - 1] = 9;
                }
                assert_eq!(first_other(&line, 7), Some(at), "len {len}, at {at}");
                let mut line = vec![7u32; len];
                line[at] = 8;
                if at > 0 {
                    line[0] = 9;
                }
                assert_eq!(last_other(&line, 7), Some(at), "len {len}, last {at}");
            }
        }
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a directory: the rename fails.
        let path = dir.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("x"), b"x").unwrap();
        assert!(write_atomically(&path, &Canvas::new(2, 2)).is_err());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["taken"]);
    }
}
