//! The Linux framebuffer (`/dev/fb0`): the board on a console with no
//! display server, as on Raspberry Pi OS Lite.
//!
//! The geometry and pixel layout come from the device through the
//! `FBIOGET_VSCREENINFO` and `FBIOGET_FSCREENINFO` ioctls; the memory is
//! mapped once and every frame is copied into it, converted to the device's
//! format (16 bpp such as RGB565, or 32 bpp such as XRGB8888), honouring the
//! line length and the panning offset. A plain file (which answers the
//! ioctls with ENOTTY) is treated as a framebuffer of the configured
//! `[display] width`, `height` and `bpp`, which is how tests and machines
//! with no framebuffer exercise this code.
//!
//! Outside the screen's hours `FBIOBLANK` powers the screen down (and up
//! again; a dropped `Fbdev` unblanks), docs/board.md §9.
//!
//! This module only copies pixels; it never draws. Its `unsafe` is the
//! ioctl, the mapping and the copy into it, each with its bounds checked.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

use embedded_graphics::primitives::Rectangle;

use super::{Damage, DisplayError, Screen};
use crate::board::Canvas;

/// `FBIOGET_VSCREENINFO` from `<linux/fb.h>`.
const FBIOGET_VSCREENINFO: libc::c_ulong = 0x4600;
/// `FBIOGET_FSCREENINFO` from `<linux/fb.h>`.
const FBIOGET_FSCREENINFO: libc::c_ulong = 0x4602;
/// `FBIOBLANK` from `<linux/fb.h>`: its argument is a blanking level.
const FBIOBLANK: libc::c_ulong = 0x4611;
/// `FB_BLANK_UNBLANK`: the screen on.
const FB_BLANK_UNBLANK: libc::c_ulong = 0;
/// `FB_BLANK_POWERDOWN`: the screen off, its signal too (the monitor
/// sleeps).
const FB_BLANK_POWERDOWN: libc::c_ulong = 4;

/// Largest side accepted from a device: beyond 8K, the ioctl answer is
/// nonsense rather than a screen.
const MAX_SIDE: u32 = 8192;

/// `struct fb_bitfield`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Bitfield {
    offset: u32,
    length: u32,
    msb_right: u32,
}

/// `struct fb_var_screeninfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct VarInfo {
    xres: u32,
    yres: u32,
    xres_virtual: u32,
    yres_virtual: u32,
    xoffset: u32,
    yoffset: u32,
    bits_per_pixel: u32,
    grayscale: u32,
    red: Bitfield,
    green: Bitfield,
    blue: Bitfield,
    transp: Bitfield,
    nonstd: u32,
    activate: u32,
    height: u32,
    width: u32,
    accel_flags: u32,
    pixclock: u32,
    left_margin: u32,
    right_margin: u32,
    upper_margin: u32,
    lower_margin: u32,
    hsync_len: u32,
    vsync_len: u32,
    sync: u32,
    vmode: u32,
    rotate: u32,
    colorspace: u32,
    reserved: [u32; 4],
}

/// `struct fb_fix_screeninfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct FixInfo {
    id: [u8; 16],
    smem_start: libc::c_ulong,
    smem_len: u32,
    kind: u32,
    type_aux: u32,
    visual: u32,
    xpanstep: u16,
    ypanstep: u16,
    ywrapstep: u16,
    line_length: u32,
    mmio_start: libc::c_ulong,
    mmio_len: u32,
    accel: u32,
    capabilities: u16,
    reserved: [u16; 2],
}

/// How one pixel is laid out in the device's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    /// Bytes per pixel: 2 or 4.
    pub bytes: usize,
    /// (offset, length) in bits of red, green and blue.
    pub red: (u32, u32),
    /// Green.
    pub green: (u32, u32),
    /// Blue.
    pub blue: (u32, u32),
    /// Alpha, set opaque when the device has it (length 0: none).
    pub alpha: (u32, u32),
}

impl Format {
    /// 16 bpp, 5-6-5.
    pub const RGB565: Format = Format {
        bytes: 2,
        red: (11, 5),
        green: (5, 6),
        blue: (0, 5),
        alpha: (0, 0),
    };

    /// 32 bpp, `0x00RRGGBB`: the same layout as [`Canvas`].
    pub const XRGB8888: Format = Format {
        bytes: 4,
        red: (16, 8),
        green: (8, 8),
        blue: (0, 8),
        alpha: (0, 0),
    };

    /// The format a device reports, if this module can write it.
    fn from_var(var: &VarInfo) -> Result<Format, DisplayError> {
        let field = |b: Bitfield| (b.offset, b.length);
        let format = Format {
            bytes: match var.bits_per_pixel {
                16 => 2,
                32 => 4,
                bpp => {
                    return Err(DisplayError::Format(format!(
                        "the framebuffer has {bpp} bits per pixel; tablo draws 16 and 32"
                    )));
                }
            },
            red: field(var.red),
            green: field(var.green),
            blue: field(var.blue),
            alpha: field(var.transp),
        };
        let bits = 8 * format.bytes as u32;
        let fits =
            |(offset, length): (u32, u32)| (1..=8).contains(&length) && offset + length <= bits;
        let alpha_fits = format.alpha.1 == 0 || fits(format.alpha);
        if var.grayscale != 0
            || !(fits(format.red) && fits(format.green) && fits(format.blue) && alpha_fits)
        {
            return Err(DisplayError::Format(format!(
                "the framebuffer's colour layout (red {:?}, green {:?}, blue {:?}, grayscale {}) is not RGB",
                format.red, format.green, format.blue, var.grayscale
            )));
        }
        Ok(format)
    }

    /// `0x00RRGGBB` in this format.
    fn convert(&self, pixel: u32) -> u32 {
        let channel = |value: u32, (offset, length): (u32, u32)| {
            if length == 0 {
                0
            } else {
                ((value & 0xff) >> (8 - length.min(8))) << offset
            }
        };
        channel(pixel >> 16, self.red)
            | channel(pixel >> 8, self.green)
            | channel(pixel, self.blue)
            | channel(0xff, self.alpha)
    }
}

/// Where the visible screen lies in the mapped memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Visible width in pixels.
    pub width: u32,
    /// Visible height in pixels.
    pub height: u32,
    /// Bytes from one line to the next (may exceed `width × bytes`).
    pub line_length: usize,
    /// Byte offset of the visible screen's top-left pixel (panning).
    pub start: usize,
    /// The pixel format.
    pub format: Format,
}

impl Geometry {
    /// Bytes the mapping must hold.
    fn span(&self) -> usize {
        self.start + self.line_length * self.height as usize
    }
}

/// An open, mapped framebuffer. See the module docs.
pub struct Fbdev {
    path: std::path::PathBuf,
    geometry: Geometry,
    map: NonNull<u8>,
    map_len: usize,
    /// `FBIOBLANK` powered the screen down (undone on drop).
    blanked: bool,
    /// Kept open for the mapping's lifetime.
    file: File,
}

// SAFETY: the mapping is owned by this value alone and only written
// through `&mut self`.
unsafe impl Send for Fbdev {}

impl Fbdev {
    /// Opens and maps `path`. A plain file gets the geometry of `size`
    /// (required then) and `bpp`, and is grown to hold a frame.
    pub fn open(path: &Path, size: Option<(u32, u32)>, bpp: u8) -> Result<Fbdev, DisplayError> {
        let fail = |what: &str, source: io::Error| DisplayError::Fbdev {
            path: path.to_path_buf(),
            what: what.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| fail("open", e))?;
        let geometry = match device_geometry(&file) {
            Ok(geometry) => geometry?,
            Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => {
                let Some((width, height)) = size else {
                    return Err(fail(
                        "use",
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "it is not a framebuffer device, and a plain file needs [display] width and height",
                        ),
                    ));
                };
                let geometry = file_geometry(width, height, bpp);
                let len = geometry.span() as u64;
                let current = file.metadata().map_err(|e| fail("read", e))?.len();
                if current < len {
                    file.set_len(len).map_err(|e| fail("grow", e))?;
                }
                geometry
            }
            Err(e) => return Err(fail("query", e)),
        };
        Fbdev::map(path, file, geometry)
    }

    /// Maps `file`, which holds at least `geometry.span()` bytes.
    fn map(path: &Path, file: File, geometry: Geometry) -> Result<Fbdev, DisplayError> {
        let fail = |what: &str, source: io::Error| DisplayError::Fbdev {
            path: path.to_path_buf(),
            what: what.to_owned(),
            source,
        };
        let len = file.metadata().map_err(|e| fail("read", e))?.len();
        if len > 0 && len < geometry.span() as u64 {
            return Err(fail(
                "map",
                io::Error::other(format!(
                    "it holds {len} bytes, less than the {} a frame needs",
                    geometry.span()
                )),
            ));
        }
        let map_len = geometry.span();
        // SAFETY: a fresh shared mapping of `map_len` bytes of an open file
        // that holds at least that many (a device reports its memory, a
        // plain file was grown above); checked for failure below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(fail("map", io::Error::last_os_error()));
        }
        let map = NonNull::new(map.cast::<u8>())
            .ok_or_else(|| fail("map", io::Error::other("null mapping")))?;
        Ok(Fbdev {
            path: path.to_path_buf(),
            geometry,
            map,
            map_len,
            blanked: false,
            file,
        })
    }

    /// Where the screen lies in the mapping.
    #[cfg(test)]
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Copies the rows and columns of `area` (all of the frame when `None`)
    /// into the mapping; with `changed_only`, of each line only the pixels
    /// the frame marks as changed.
    fn copy(&mut self, frame: &Canvas, area: Option<Rectangle>, changed_only: bool) {
        let g = self.geometry;
        let (width, height) = (g.width.min(frame.width), g.height.min(frame.height));
        let (x0, y0, x1, y1) = match area {
            Some(a) => {
                let x0 = a.top_left.x.clamp(0, width as i32) as u32;
                let y0 = a.top_left.y.clamp(0, height as i32) as u32;
                (
                    x0,
                    y0,
                    (x0 + a.size.width).min(width),
                    (y0 + a.size.height).min(height),
                )
            }
            None => (0, 0, width, height),
        };
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        // SAFETY: the mapping is `map_len` bytes, owned by `self`, and
        // `span()` ≤ `map_len`; every line written below lies within it.
        let memory = unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr(), self.map_len) };
        for y in y0..y1 {
            let (from, to) = if changed_only {
                match frame.changed_in_line(y) {
                    Some(span) if span.start < x1 && span.end > x0 => {
                        (span.start.max(x0), span.end.min(x1))
                    }
                    _ => continue,
                }
            } else {
                (x0, x1)
            };
            let source =
                &frame.pixels[(y * frame.width + from) as usize..(y * frame.width + to) as usize];
            let line = g.start + y as usize * g.line_length + from as usize * g.format.bytes;
            let out = &mut memory[line..line + source.len() * g.format.bytes];
            if g.format == Format::XRGB8888 {
                // SAFETY: a `[u32]` viewed as its bytes (native order, as
                // the device reads them); same lifetime, u8 has no alignment.
                let bytes = unsafe {
                    std::slice::from_raw_parts(source.as_ptr().cast::<u8>(), source.len() * 4)
                };
                out.copy_from_slice(bytes);
            } else if g.format.bytes == 4 {
                for (out, &pixel) in out.chunks_exact_mut(4).zip(source) {
                    out.copy_from_slice(&g.format.convert(pixel).to_ne_bytes());
                }
            } else {
                for (out, &pixel) in out.chunks_exact_mut(2).zip(source) {
                    out.copy_from_slice(&(g.format.convert(pixel) as u16).to_ne_bytes());
                }
            }
        }
    }
}

impl Drop for Fbdev {
    fn drop(&mut self) {
        if self.blanked {
            // A stopped daemon leaves the console visible.
            let _ = self.set_blanked(false);
        }
        // SAFETY: the mapping made in `open`, unmapped once.
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), self.map_len);
        }
    }
}

impl Screen for Fbdev {
    fn size(&self) -> (u32, u32) {
        (self.geometry.width, self.geometry.height)
    }

    fn present(&mut self, frame: &Canvas, damage: Damage<'_>) -> Result<(), DisplayError> {
        match damage {
            Damage::All => self.copy(frame, None, false),
            Damage::Areas(areas) => {
                for area in areas {
                    self.copy(frame, Some(*area), true);
                }
            }
            Damage::Changed => self.copy(frame, None, true),
        }
        Ok(())
    }

    /// `FBIOBLANK`: powers the screen down or up. A plain file answers
    /// ENOTTY, which is an error here (the renderer shows a black frame).
    fn set_blanked(&mut self, blanked: bool) -> Result<bool, DisplayError> {
        let level = if blanked {
            FB_BLANK_POWERDOWN
        } else {
            FB_BLANK_UNBLANK
        };
        // SAFETY: FBIOBLANK takes its level by value and touches no memory
        // of ours.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), FBIOBLANK as _, level) } < 0 {
            return Err(DisplayError::Blank {
                path: self.path.clone(),
                what: if blanked { "blank" } else { "unblank" },
                source: io::Error::last_os_error(),
            });
        }
        self.blanked = blanked;
        Ok(true)
    }
}

/// Asks the device for its geometry. The outer error is the ioctl's (ENOTTY
/// for a plain file); the inner one a device this module cannot use.
fn device_geometry(file: &File) -> io::Result<Result<Geometry, DisplayError>> {
    let mut var = VarInfo::default();
    // SAFETY: FBIOGET_VSCREENINFO fills a `struct fb_var_screeninfo`, which
    // `VarInfo` mirrors field for field.
    if unsafe { libc::ioctl(file.as_raw_fd(), FBIOGET_VSCREENINFO as _, &mut var) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: all-zero is a valid `FixInfo` (integers and byte arrays).
    let mut fix: FixInfo = unsafe { std::mem::zeroed() };
    // SAFETY: FBIOGET_FSCREENINFO fills a `struct fb_fix_screeninfo`, which
    // `FixInfo` mirrors field for field.
    if unsafe { libc::ioctl(file.as_raw_fd(), FBIOGET_FSCREENINFO as _, &mut fix) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(geometry_of(&var, &fix))
}

/// The geometry a device reported, checked.
fn geometry_of(var: &VarInfo, fix: &FixInfo) -> Result<Geometry, DisplayError> {
    let format = Format::from_var(var)?;
    let sane = |side: u32| (1..=MAX_SIDE).contains(&side);
    let line_length = fix.line_length as usize;
    let geometry = Geometry {
        width: var.xres,
        height: var.yres,
        line_length,
        start: var.yoffset as usize * line_length + var.xoffset as usize * format.bytes,
        format,
    };
    if !sane(var.xres) || !sane(var.yres) || line_length < var.xres as usize * format.bytes {
        return Err(DisplayError::Format(format!(
            "the framebuffer reports {}×{} with {} bytes a line",
            var.xres, var.yres, fix.line_length
        )));
    }
    if geometry.span() > fix.smem_len as usize {
        return Err(DisplayError::Format(format!(
            "the framebuffer's visible area ({} bytes) is larger than its memory ({} bytes)",
            geometry.span(),
            fix.smem_len
        )));
    }
    Ok(geometry)
}

/// The geometry of a plain file standing in for a framebuffer.
pub fn file_geometry(width: u32, height: u32, bpp: u8) -> Geometry {
    let format = if bpp == 16 {
        Format::RGB565
    } else {
        Format::XRGB8888
    };
    Geometry {
        width,
        height,
        line_length: width as usize * format.bytes,
        start: 0,
        format,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(width: u32, height: u32) -> Canvas {
        let mut frame = Canvas::new(width, height);
        for (i, p) in frame.pixels.iter_mut().enumerate() {
            *p = (i as u32).wrapping_mul(0x9E37_79B9) & 0x00ff_ffff;
        }
        frame
    }

    fn read_back(path: &Path, g: &Geometry) -> Vec<u32> {
        let bytes = std::fs::read(path).unwrap();
        let mut out = Vec::new();
        for y in 0..g.height as usize {
            for x in 0..g.width as usize {
                let at = g.start + y * g.line_length + x * g.format.bytes;
                out.push(match g.format.bytes {
                    2 => u16::from_ne_bytes([bytes[at], bytes[at + 1]]).into(),
                    _ => u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap()),
                });
            }
        }
        out
    }

    #[test]
    fn rgb565_keeps_the_top_bits_of_each_channel() {
        assert_eq!(Format::RGB565.convert(0x00ff_ffff), 0xffff);
        assert_eq!(Format::RGB565.convert(0x00ff_0000), 0xf800);
        assert_eq!(Format::RGB565.convert(0x0000_ff00), 0x07e0);
        assert_eq!(Format::RGB565.convert(0x0000_00ff), 0x001f);
        assert_eq!(
            Format::RGB565.convert(0x0012_3456),
            (0x12 >> 3) << 11 | (0x34 >> 2) << 5 | 0x56 >> 3
        );
        assert_eq!(Format::XRGB8888.convert(0x0012_3456), 0x0012_3456);
        let argb = Format {
            alpha: (24, 8),
            ..Format::XRGB8888
        };
        assert_eq!(argb.convert(0x0012_3456), 0xff12_3456);
        let bgr = Format {
            red: (0, 8),
            blue: (16, 8),
            ..Format::XRGB8888
        };
        assert_eq!(bgr.convert(0x0012_3456), 0x0056_3412);
    }

    #[test]
    fn a_plain_file_takes_whole_frames_in_both_formats() {
        for bpp in [16, 32] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("fb");
            std::fs::write(&path, b"").unwrap();
            let mut fb = Fbdev::open(&path, Some((37, 11)), bpp).unwrap();
            assert_eq!(fb.size(), (37, 11));
            let g = fb.geometry();
            let f = frame(37, 11);
            fb.present(&f, Damage::All).unwrap();
            let expected: Vec<u32> = f.pixels.iter().map(|&p| g.format.convert(p)).collect();
            assert_eq!(read_back(&path, &g), expected, "{bpp} bpp");
            assert_eq!(
                std::fs::metadata(&path).unwrap().len() as usize,
                37 * 11 * g.format.bytes
            );
        }
    }

    /// A 20×10 XRGB8888 screen on a plain file in `dir`, and its path.
    fn small_screen(dir: &Path) -> (Fbdev, std::path::PathBuf) {
        let path = dir.join("fb");
        std::fs::write(&path, b"").unwrap();
        (Fbdev::open(&path, Some((20, 10)), 32).unwrap(), path)
    }

    /// Checks every pixel of `fb`'s file against `want(x, y)`.
    #[track_caller]
    fn assert_screen(fb: &Fbdev, path: &Path, want: impl Fn(u32, u32) -> u32) {
        let g = fb.geometry();
        let back = read_back(path, &g);
        for y in 0..g.height {
            for x in 0..g.width {
                assert_eq!(back[(y * g.width + x) as usize], want(x, y), "({x}, {y})");
            }
        }
    }

    #[test]
    fn a_partial_present_writes_only_its_area() {
        let dir = tempfile::tempdir().unwrap();
        let (mut fb, path) = small_screen(dir.path());
        let area = Rectangle::new(
            embedded_graphics::prelude::Point::new(3, 2),
            embedded_graphics::prelude::Size::new(5, 4),
        );
        let f = frame(20, 10);
        fb.present(&f, Damage::Areas(&[area])).unwrap();
        assert_screen(&fb, &path, |x, y| {
            let inside = (3..8).contains(&x) && (2..6).contains(&y);
            if inside {
                f.pixels[(y * 20 + x) as usize]
            } else {
                0
            }
        });
    }

    #[test]
    fn after_a_whole_copy_only_the_changed_pixels_reach_the_screen() {
        use embedded_graphics::pixelcolor::Rgb888;
        use embedded_graphics::prelude::{DrawTarget, Point, RgbColor, Size};
        let dir = tempfile::tempdir().unwrap();
        let (mut fb, path) = small_screen(dir.path());
        let mut f = frame(20, 10);
        fb.present(&f, Damage::All).unwrap();
        f.clear_changes();
        // A pixel written behind the canvas's back is not a change: what
        // reaches the file says that only recorded changes are copied.
        f.pixels[0] = 0x0012_3456;
        f.fill_solid(
            &Rectangle::new(Point::new(4, 3), Size::new(3, 2)),
            Rgb888::RED,
        )
        .unwrap();
        let area = Rectangle::new(Point::new(0, 0), Size::new(20, 4));
        fb.present(&f, Damage::Areas(&[area])).unwrap();
        let before = frame(20, 10);
        assert_screen(&fb, &path, |x, y| match (x, y) {
            // Inside the area: the red line 3; line 4 is outside it.
            (4..7, 3) => 0x00ff_0000,
            _ => before.pixels[(y * 20 + x) as usize],
        });
        // `Changed` copies every recorded change, line 4's too.
        fb.present(&f, Damage::Changed).unwrap();
        let back = read_back(&path, &fb.geometry());
        assert_eq!(back[4 * 20 + 5], 0x00ff_0000);
        assert_eq!(back[0], frame(20, 10).pixels[0]);
        // `All` copies everything.
        fb.present(&f, Damage::All).unwrap();
        assert_eq!(read_back(&path, &fb.geometry())[0], 0x0012_3456);
    }

    #[test]
    fn line_length_and_panning_are_honoured() {
        // A device with padded lines, panned down by 2 lines: what a
        // framebuffer with a virtual height reports.
        let g = Geometry {
            width: 6,
            height: 3,
            line_length: 32,
            start: 2 * 32,
            format: Format::XRGB8888,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb");
        std::fs::write(&path, vec![0xAAu8; g.span()]).unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut fb = Fbdev::map(&path, file, g).unwrap();
        let f = frame(6, 3);
        fb.present(&f, Damage::All).unwrap();
        assert_eq!(read_back(&path, &g), f.pixels);
        let bytes = std::fs::read(&path).unwrap();
        // The padding after each line and the lines above are untouched.
        assert!(bytes[..64].iter().all(|&b| b == 0xAA));
        assert!(bytes[64 + 24..96].iter().all(|&b| b == 0xAA));
    }

    #[test]
    fn a_device_geometry_is_checked() {
        let mut var = VarInfo {
            xres: 800,
            yres: 480,
            bits_per_pixel: 16,
            red: Bitfield {
                offset: 11,
                length: 5,
                msb_right: 0,
            },
            green: Bitfield {
                offset: 5,
                length: 6,
                msb_right: 0,
            },
            blue: Bitfield {
                offset: 0,
                length: 5,
                msb_right: 0,
            },
            ..VarInfo::default()
        };
        // SAFETY: all-zero is a valid `FixInfo`.
        let mut fix: FixInfo = unsafe { std::mem::zeroed() };
        fix.line_length = 1600;
        fix.smem_len = 1600 * 480;
        let g = geometry_of(&var, &fix).unwrap();
        assert_eq!((g.width, g.height, g.format), (800, 480, Format::RGB565));
        fix.smem_len = 1600 * 479;
        assert!(
            geometry_of(&var, &fix)
                .unwrap_err()
                .to_string()
                .contains("larger than its memory")
        );
        var.bits_per_pixel = 24;
        assert!(
            geometry_of(&var, &fix)
                .unwrap_err()
                .to_string()
                .contains("24 bits per pixel")
        );
    }

    #[test]
    fn a_plain_file_without_a_size_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb");
        std::fs::write(&path, b"").unwrap();
        let err = Fbdev::open(&path, None, 32).err().unwrap().to_string();
        assert!(err.contains("[display] width and height"), "{err}");
        let missing = Fbdev::open(&dir.path().join("nope"), None, 32)
            .err()
            .unwrap()
            .to_string();
        assert!(
            missing.contains("cannot open") && missing.contains("group video"),
            "{missing}"
        );
    }
}
