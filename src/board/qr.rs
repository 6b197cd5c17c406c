//! The board's QR code: a code that opens the web board on a phone
//! (docs/board.md §10).
//!
//! [`Qr`] is a URL encoded once (by the `qrcode` crate, error correction
//! level M) into its modules; the board state holds it until the URL
//! changes, so a frame only reads it. [`place`] gives the code its corner
//! of the screen: a column at the end of the rows on a landscape screen,
//! a strip under them on a portrait one, the code at the bottom, next to
//! the news line, and never over a price. [`paint`] draws the modules as
//! solid squares of whole pixels, dark on a light card with a quiet zone of
//! [`QUIET`] modules.
//!
//! This module does no I/O, reads no clock, and never allocates while
//! drawing. Which URL the code holds (`[board] qr`, the listen socket's
//! LAN address) is decided outside the board.

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::{DrawTarget, Point, Size};
use embedded_graphics::primitives::Rectangle;

/// Light modules around the code on every side: the quiet zone the QR
/// standard asks for, without which a scanner may not find the code on a
/// busy screen.
pub const QUIET: u32 = 4;

/// Pixels a module is drawn at on a 1920×1080 board, scaled with the
/// board: 10 px is 4.6 mm on a 40-inch TV and 6.3 mm on a 55-inch one, so
/// an auto URL's code (25 or 29 modules) is 11 to 18 cm wide, and each
/// module covers three to four pixels of a phone camera's preview at two
/// metres (docs/board.md §10).
const MODULE_1080P: f32 = 10.0;

/// At most this share of the screen's width (or, on a portrait screen, its
/// height) goes to the code, so the rows keep most of the screen.
const MAX_SHARE: f32 = 0.25;

/// Fewest pixels a module is drawn at: below this (a very small screen with
/// a long URL) a screen's pixels blur the modules into each other for a
/// camera, and no code is drawn.
const MIN_MODULE: u32 = 3;

/// A URL encoded as a QR code, with its modules: made once per URL, read
/// by every frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qr {
    url: String,
    /// Modules on a side, without the quiet zone.
    width: u32,
    /// Row by row, `true` for a dark module.
    dark: Vec<bool>,
}

impl Qr {
    /// `url` as a code at error correction level M (a screen is not
    /// scratched, but glare and a camera at an angle lose a module here and
    /// there); `None` when it is too long for any QR code, which the
    /// config's [`crate::config::MAX_QR_URL`] keeps from happening.
    pub fn encode(url: &str) -> Option<Qr> {
        let code =
            qrcode::QrCode::with_error_correction_level(url.as_bytes(), qrcode::EcLevel::M).ok()?;
        let width = code.width() as u32;
        Some(Qr {
            url: url.to_owned(),
            width,
            dark: code
                .into_colors()
                .into_iter()
                .map(|c| c == qrcode::Color::Dark)
                .collect(),
        })
    }

    /// The URL the code holds.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Modules on a side, without the quiet zone.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Whether the module at column `x`, row `y` is dark.
    pub fn is_dark(&self, x: u32, y: u32) -> bool {
        x < self.width && y < self.width && self.dark[(y * self.width + x) as usize]
    }
}

/// Where the code goes on one frame, in the board's logical (unmirrored)
/// coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QrPlace {
    /// The light card: the code and its quiet zone.
    pub card: Rectangle,
    /// Pixels a module is drawn at.
    pub module: u32,
    /// Where the caption goes: over the card in a column, beside it (on
    /// the rows' side) in a strip.
    pub caption: Rectangle,
    /// The code sits in a strip under the rows (a portrait screen), not in
    /// a column beside them.
    pub strip: bool,
    /// Pixels the rows give up: the column's width, or the strip's height.
    pub taken: i32,
}

/// The place of `qr` on a `size` board at `scale` (against 1920×1080) whose
/// rows run from `top` to `bottom`, with `pad` pixels of margin and a
/// caption `caption_h` pixels tall; `None` when it does not fit at
/// [`MIN_MODULE`].
pub fn place(
    qr: &Qr,
    size: Size,
    scale: f32,
    pad: i32,
    (top, bottom): (i32, i32),
    caption_h: i32,
) -> Option<QrPlace> {
    let (w, h) = (size.width as i32, size.height as i32);
    let modules = (qr.width + 2 * QUIET) as i32;
    let wanted = (MODULE_1080P * scale).round() as i32;
    let strip = h > w;
    let area_h = bottom - top;
    let room = if strip {
        // Beside the caption, under the rows; the rows keep at least half
        // of their area.
        ((h as f32 * MAX_SHARE) as i32)
            .min(area_h / 2 - pad)
            .min(w - 2 * pad)
    } else {
        // Under the caption, beside the rows.
        ((w as f32 * MAX_SHARE) as i32).min(area_h - caption_h - pad)
    };
    let module = wanted.min(room / modules);
    if module < MIN_MODULE as i32 {
        return None;
    }
    let side = modules * module;
    let card = Rectangle::new(
        Point::new(w - pad - side, bottom - pad / 2 - side),
        Size::new(side as u32, side as u32),
    );
    let caption = if strip {
        Rectangle::new(
            Point::new(pad, card.top_left.y),
            Size::new((card.top_left.x - 2 * pad).max(0) as u32, side as u32),
        )
    } else {
        Rectangle::new(
            Point::new(card.top_left.x, card.top_left.y - caption_h),
            Size::new(side as u32, caption_h as u32),
        )
    };
    Some(QrPlace {
        card,
        module: module as u32,
        caption,
        strip,
        taken: side + pad,
    })
}

/// Draws `qr` filling `card` (as [`place`] gave it, mirrored or not) with
/// modules of `module` pixels: the card `light`, the dark modules `dark`,
/// each run of dark modules in a row one rectangle. Allocates nothing.
pub fn paint<D>(
    target: &mut D,
    qr: &Qr,
    card: Rectangle,
    module: u32,
    light: Rgb888,
    dark: Rgb888,
) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    target.fill_solid(&card, light)?;
    let origin = card.top_left + Point::new((QUIET * module) as i32, (QUIET * module) as i32);
    let m = module as i32;
    for y in 0..qr.width {
        let mut x = 0;
        while x < qr.width {
            if !qr.is_dark(x, y) {
                x += 1;
                continue;
            }
            let start = x;
            while x < qr.width && qr.is_dark(x, y) {
                x += 1;
            }
            target.fill_solid(
                &Rectangle::new(
                    origin + Point::new(start as i32 * m, y as i32 * m),
                    Size::new((x - start) * module, module),
                ),
                dark,
            )?;
        }
    }
    Ok(())
}

/// `a` and `b` as (light, dark): a scanner wants dark modules on a light
/// card whatever the theme's text and background are.
pub fn light_and_dark(a: Rgb888, b: Rgb888) -> (Rgb888, Rgb888) {
    use embedded_graphics::pixelcolor::RgbColor;
    let luma = |c: Rgb888| 3 * u32::from(c.r()) + 6 * u32::from(c.g()) + u32::from(c.b());
    if luma(a) >= luma(b) { (a, b) } else { (b, a) }
}

/// The caption under or beside the code in `language` (`"fa"`, `"ar"`,
/// `"tr"`; any other is English): what the code is for, in a few words.
pub fn caption(language: &str) -> &'static str {
    match language {
        "fa" => "برای دیدن روی گوشی اسکن کنید",
        "ar" => "امسح لفتح اللوحة على هاتفك",
        "tr" => "Telefonunuzda açmak için okutun",
        _ => "Scan to open on your phone",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::geometry::Dimensions;

    use crate::board::layout::Layout;
    use crate::board::png::Canvas;
    use crate::board::testing::{NOW, allocations, board_config, decode_qr as decode, demo_board};
    use crate::board::{BoardState, Painter, draw};
    use crate::config::BoardQr;

    #[test]
    fn a_painted_code_reads_back_as_its_url() {
        for url in [
            "http://192.168.1.23:7070/",
            "https://rates.example.com/board?screen=lobby",
        ] {
            let qr = Qr::encode(url).unwrap();
            let side = (qr.width() + 2 * QUIET) * 6;
            let mut frame = Canvas::new(side + 40, side + 40);
            let card = Rectangle::new(Point::new(20, 20), Size::new(side, side));
            let (light, dark) = (Rgb888::new(0xf3, 0xf5, 0xf8), Rgb888::new(0x0d, 0x10, 0x15));
            frame.fill_solid(&frame.bounding_box(), dark).unwrap();
            paint(&mut frame, &qr, card, 6, light, dark).unwrap();
            assert_eq!(decode(&frame), [url]);
        }
    }

    #[test]
    fn a_fixed_url_is_encoded_once_and_drawn_without_allocating() {
        let mut board = board_config(&[]);
        board.qr = BoardQr::Url("https://rates.example.com/lobby".into());
        let (state, last) = demo_board(&board, NOW, 100);
        assert_eq!(state.qr().unwrap().url(), "https://rates.example.com/lobby");
        let mut painter = Painter::new();
        let mut frame = Canvas::new(1280, 720);
        for n in 0..5 {
            draw(&state, last + n * 33, &mut painter, &mut frame).unwrap();
        }
        let before = allocations::count();
        for n in 0..20 {
            draw(&state, last + n * 33, &mut painter, &mut frame).unwrap();
        }
        assert_eq!(allocations::count() - before, 0);
        assert_eq!(decode(&frame), ["https://rates.example.com/lobby"]);
        board.qr = BoardQr::Off;
        assert!(BoardState::new(&board, &["demo"]).qr().is_none());
        board.qr = BoardQr::Auto;
        assert!(BoardState::new(&board, &["demo"]).qr().is_none());
    }

    /// The code never covers a row, the header or the news line, at any
    /// size the board is designed for.
    #[test]
    fn the_code_keeps_off_the_rows_header_and_news() {
        let mut board = board_config(&[]);
        board.qr = BoardQr::Url("http://192.168.100.200:7070/".into());
        let (mut state, _) = demo_board(&board, NOW, 10);
        state.apply(
            &crate::event::Event {
                seq: 1,
                ts: NOW,
                body: crate::event::Body::News(crate::event::News {
                    title: "A headline".into(),
                    url: None,
                    source: "demo".into(),
                }),
            },
            NOW,
        );
        let painter = Painter::new();
        for (w, h) in [
            (800, 480),
            (1280, 720),
            (1920, 1080),
            (3840, 2160),
            (480, 800),
            (1080, 1920),
        ] {
            let l = Layout::new(&state, painter.text(), Size::new(w, h), NOW);
            let p = l.qr.unwrap_or_else(|| panic!("{w}x{h}: no code"));
            let rows_end =
                (0..l.per_panel * l.panels)
                    .map(|s| l.row_rect(s))
                    .fold((0, 0), |(x, y), r| {
                        (
                            x.max(r.top_left.x + r.size.width as i32),
                            y.max(r.top_left.y + r.size.height as i32),
                        )
                    });
            for area in [p.card, p.caption] {
                let (x0, y0) = (area.top_left.x, area.top_left.y);
                let (x1, y1) = (x0 + area.size.width as i32, y0 + area.size.height as i32);
                assert!(x0 >= 0 && x1 <= w as i32, "{w}x{h}: {area:?}");
                assert!(
                    y0 >= l.rows.top_left.y,
                    "{w}x{h}: under the header: {area:?}"
                );
                let news = l.news.unwrap().top_left.y;
                assert!(y1 <= news, "{w}x{h}: over the news: {area:?}");
                if p.strip {
                    assert!(
                        y0 >= rows_end.1,
                        "{w}x{h}: over a row: {area:?} {rows_end:?}"
                    );
                } else {
                    assert!(
                        x0 >= rows_end.0,
                        "{w}x{h}: over a row: {area:?} {rows_end:?}"
                    );
                }
            }
            assert!(p.module >= MIN_MODULE);
            if (w, h) == (1920, 1080) {
                assert_eq!(p.module, 10);
            }
        }
    }

    #[test]
    fn the_card_is_light_on_any_theme() {
        let (text, background) = (Rgb888::new(0xf3, 0xf5, 0xf8), Rgb888::new(0x0d, 0x10, 0x15));
        assert_eq!(light_and_dark(text, background), (text, background));
        assert_eq!(light_and_dark(background, text), (text, background));
    }

    #[test]
    fn an_auto_url_is_a_small_code() {
        // The longest auto URL: an IPv4 address and a port.
        let qr = Qr::encode("http://255.255.255.255:65535/").unwrap();
        assert!(qr.width() <= 29, "{}", qr.width());
        let qr = Qr::encode(&format!("https://example.com/{}", "a".repeat(80))).unwrap();
        assert!(qr.width() <= 41, "{}", qr.width());
    }

    #[test]
    fn the_code_takes_whole_pixels_and_a_corner_that_fits() {
        let qr = Qr::encode("http://192.168.1.23:7070/").unwrap();
        let modules = qr.width() + 2 * QUIET;
        // 1080p: 10 px a module, in the bottom right corner over the news.
        let p = place(&qr, Size::new(1920, 1080), 1.0, 36, (88, 1016), 40).unwrap();
        assert_eq!(p.module, 10);
        assert_eq!(p.card.size, Size::new(modules * 10, modules * 10));
        assert_eq!(p.card.top_left.x + p.card.size.width as i32, 1920 - 36);
        assert_eq!(p.card.top_left.y + p.card.size.height as i32, 1016 - 18);
        assert!(p.caption.top_left.y >= 88 && !p.strip);
        // A small screen: smaller modules, at most a quarter of the width.
        let p = place(&qr, Size::new(800, 480), 0.578, 21, (51, 443), 24).unwrap();
        assert!(p.module >= MIN_MODULE && p.card.size.width <= 200, "{p:?}");
        // Portrait: a strip under the rows.
        let p = place(&qr, Size::new(1080, 1920), 0.87, 31, (77, 1864), 35).unwrap();
        assert!(p.strip && p.caption.size.width > 300, "{p:?}");
        // No room at all: no code.
        assert_eq!(place(&qr, Size::new(64, 64), 0.2, 7, (18, 50), 8), None);
    }
}
