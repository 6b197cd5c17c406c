//! `[board] font`: the board's one file read, done at the edge.
//!
//! [`painter`] reads the font file once per process, when the renderer
//! thread starts or `tablo render` draws its frame, and keeps it until exit.
//! A font that cannot be used is a warning that names the file, and the
//! board is drawn with the bundled Vazirmatn instead. Nothing here runs
//! while a frame is drawn, and, outside tests, nothing else under `board`
//! reads a file.

use std::borrow::Cow;
use std::path::Path;

use crate::board::draw::Painter;
use crate::board::text::Text;

/// A painter with `[board] font` for both weights, or with the bundled
/// Vazirmatn when there is none or it cannot be used (with a warning that
/// names the file). The file is read once and kept for the life of the
/// process: the renderer and `tablo render` each load it once.
pub fn painter(font: Option<&Path>) -> Painter {
    let Some(path) = font else {
        return Painter::new();
    };
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) => {
            log::warn!(
                "[board] font: cannot read {}: {e}; drawing with the bundled Vazirmatn",
                path.display()
            );
            return Painter::new();
        }
    };
    // Leaked on purpose: loaded once per process and used until exit, so
    // both rustybuzz and ab_glyph can borrow it without copies.
    let data: &'static [u8] = Box::leak(data.into_boxed_slice());
    match Text::with_font_data(Cow::Borrowed(data), Cow::Borrowed(data)) {
        Ok(text) => Painter::with_text(text),
        Err(e) => {
            log::warn!(
                "[board] font: {} is not a TrueType or OpenType font ({e}); drawing with the bundled Vazirmatn",
                path.display()
            );
            Painter::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use embedded_graphics::pixelcolor::{Rgb888, RgbColor};

    use super::*;
    use crate::board::text::{TextStyle, Weight};

    fn width(painter: &Painter, weight: Weight) -> i32 {
        let style = TextStyle {
            size: 40,
            weight,
            color: Rgb888::WHITE,
            background: Rgb888::BLACK,
            tabular: false,
        };
        painter.text().measure("Gram Altın دلار", &style)
    }

    #[test]
    fn board_font_is_used_for_both_weights_or_falls_back_to_the_bundled_one() {
        let fonts = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/board/fonts");
        let bundled = Painter::new();
        let (regular, bold) = (
            width(&bundled, Weight::Regular),
            width(&bundled, Weight::Bold),
        );
        assert_ne!(regular, bold);
        // The regular face as `[board] font`: bold text is drawn with it.
        let custom = painter(Some(&fonts.join("Vazirmatn-Regular.ttf")));
        assert_eq!(width(&custom, Weight::Bold), regular);
        // Missing, or not a font: the bundled faces, not a panic.
        for bad in [fonts.join("missing.ttf"), fonts.join("OFL.txt")] {
            let fallback = painter(Some(&bad));
            assert_eq!(width(&fallback, Weight::Bold), bold, "{}", bad.display());
        }
    }
}
