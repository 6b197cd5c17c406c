//! The board's colours, and the arithmetic to mix them.
//!
//! One theme for now, `dark` (the config default): light text on a near
//! black background, which reads best across a room and wears a screen
//! least. This module does no I/O.

use embedded_graphics::pixelcolor::{Rgb888, RgbColor};

/// The colours of one theme.
#[derive(Clone, Copy, Debug)]
pub struct Theme {
    /// Behind everything.
    pub background: Rgb888,
    /// Every other row, so the eye can follow a row across the screen.
    pub stripe: Rgb888,
    /// The header bar.
    pub header: Rgb888,
    /// Thin separators.
    pub rule: Rgb888,
    /// Main text: labels, prices, title, clock.
    pub text: Rgb888,
    /// Secondary text: captions, counts.
    pub muted: Rgb888,
    /// Up.
    pub up: Rgb888,
    /// Down.
    pub down: Rgb888,
    /// Unchanged.
    pub flat: Rgb888,
    /// Stale ages, connecting feeds.
    pub warning: Rgb888,
    /// The critical-alert band.
    pub alert: Rgb888,
    /// Text on the alert band.
    pub alert_text: Rgb888,
    /// The news bar.
    pub news: Rgb888,
    /// The news bar's label box.
    pub news_label: Rgb888,
}

/// The `dark` theme.
pub const DARK: Theme = Theme {
    background: Rgb888::new(0x0d, 0x10, 0x15),
    stripe: Rgb888::new(0x15, 0x19, 0x21),
    header: Rgb888::new(0x1b, 0x21, 0x2c),
    rule: Rgb888::new(0x2c, 0x34, 0x42),
    text: Rgb888::new(0xf3, 0xf5, 0xf8),
    muted: Rgb888::new(0x93, 0x9c, 0xab),
    up: Rgb888::new(0x2e, 0xd5, 0x73),
    down: Rgb888::new(0xff, 0x52, 0x52),
    flat: Rgb888::new(0x9a, 0xa3, 0xb2),
    warning: Rgb888::new(0xf5, 0xa5, 0x24),
    alert: Rgb888::new(0xc6, 0x28, 0x28),
    alert_text: Rgb888::new(0xff, 0xff, 0xff),
    news: Rgb888::new(0x17, 0x1c, 0x26),
    news_label: Rgb888::new(0xf5, 0xa5, 0x24),
};

/// `from` moved towards `to` by `amount` (0 = `from`, 256 = `to`).
pub fn mix(from: Rgb888, to: Rgb888, amount: u32) -> Rgb888 {
    let amount = amount.min(256);
    let channel = |a: u8, b: u8| {
        let (a, b) = (u32::from(a), u32::from(b));
        ((a * (256 - amount) + b * amount) >> 8) as u8
    };
    Rgb888::new(
        channel(from.r(), to.r()),
        channel(from.g(), to.g()),
        channel(from.b(), to.b()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_ends_at_both_colours() {
        let (a, b) = (Rgb888::new(0, 100, 255), Rgb888::new(255, 0, 7));
        assert_eq!(mix(a, b, 0), a);
        assert_eq!(mix(a, b, 256), b);
        assert_eq!(mix(a, b, 1000), b);
        assert_eq!(mix(a, b, 128), Rgb888::new(127, 50, 131));
    }
}
