//! Where the board's frames go: a window, the Linux framebuffer or a PNG
//! file (docs/board.md §1), each a thin adapter that shows a finished
//! [`Canvas`].
//!
//! [`choose`] turns `[display] mode` into a backend, resolving `auto` from
//! the environment and saying why; [`open`] opens it. A [`Screen`] only
//! copies pixels out: it never draws, never decides when to draw, and never
//! reads the board state. Pacing lives in `renderer`.

pub(crate) mod fbdev;
pub(crate) mod pngfile;
pub mod power;
pub mod window;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use embedded_graphics::primitives::Rectangle;

use crate::board::Canvas;
use crate::config::{DisplayConfig, DisplayMode};

/// The frame size for a window or a PNG when neither `[display]` nor the
/// screen says: the most common TV panel.
pub const DEFAULT_SIZE: (u32, u32) = (1920, 1080);

/// A backend that shows finished frames.
pub trait Screen {
    /// The physical size in pixels, before rotation.
    fn size(&self) -> (u32, u32);

    /// Shows `frame` (the physical size). `damage` says which parts changed
    /// since the last frame shown: a backend may copy just those.
    fn present(&mut self, frame: &Canvas, damage: Damage<'_>) -> Result<(), DisplayError>;

    /// Handles what happened on the screen since the last call (window
    /// events). Called at least once a second.
    fn poll(&mut self) -> Polled {
        Polled::Same
    }

    /// The shortest time between two frames this backend wants.
    fn min_interval(&self) -> Duration {
        Duration::ZERO
    }

    /// Switches the screen's own output off (`blanked`) or back on, where
    /// the backend has a way: the framebuffer's `FBIOBLANK`. `Ok(false)`
    /// when it has none; then (and on an error) the renderer shows a black
    /// frame instead (docs/board.md §9).
    fn set_blanked(&mut self, _blanked: bool) -> Result<bool, DisplayError> {
        Ok(false)
    }
}

/// Which parts of a frame changed since the last one shown.
///
/// With `Areas` and `Changed` the screen holds the frame as it was when
/// its changes were last cleared (`Canvas::clear_changes`), so a backend
/// may copy only the pixels the frame marks as changed
/// (`Canvas::changed_in_line`); `All` promises nothing about the screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage<'a> {
    /// All of it: the screen may hold anything.
    All,
    /// Only within these rectangles (physical coordinates).
    Areas(&'a [Rectangle]),
    /// Anywhere, but only the pixels the frame marks as changed.
    Changed,
}

/// What [`Screen::poll`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polled {
    /// Nothing that changes the frame.
    Same,
    /// The screen has a new size: draw a whole frame at it.
    Resized(u32, u32),
    /// The window was uncovered and lost its pixels: show a whole frame.
    Exposed,
    /// The window was closed: the daemon stops.
    Closed,
}

/// The backend [`choose`] picked, with what it needs to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// A minifb window.
    Window,
    /// A framebuffer device (or a plain file with the configured geometry).
    Fbdev(PathBuf),
    /// A PNG file rewritten at most once a second.
    Png(PathBuf),
    /// No board.
    None,
}

impl Choice {
    /// The mode's name, as in `--display`.
    pub fn name(&self) -> &'static str {
        match self {
            Choice::Window => "window",
            Choice::Fbdev(_) => "fbdev",
            Choice::Png(_) => "png",
            Choice::None => "none",
        }
    }
}

/// Why a screen could not be opened or written.
#[derive(Debug)]
pub enum DisplayError {
    /// `window` with no display server to talk to.
    NoDisplay(String),
    /// The framebuffer device (or file) could not be used.
    Fbdev {
        /// The device.
        path: PathBuf,
        /// What failed, in words.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// The framebuffer has a pixel format this build cannot draw.
    Format(String),
    /// The PNG file could not be written.
    Png(PathBuf, io::Error),
    /// The window could not be created or updated.
    Window(String),
    /// The framebuffer could not be blanked or unblanked (`FBIOBLANK`).
    Blank {
        /// The device.
        path: PathBuf,
        /// What failed: `blank` or `unblank`.
        what: &'static str,
        /// The cause (ENOTTY for a plain file).
        source: io::Error,
    },
}

impl fmt::Display for DisplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisplayError::NoDisplay(why) => write!(
                f,
                "cannot open a window: {why}; set DISPLAY (X11, or XWayland under a Wayland compositor such as cage), or choose --display fbdev, png or none"
            ),
            DisplayError::Fbdev { path, what, source } => write!(
                f,
                "cannot {what} {}: {source}; check [display] device and that the user is in group video, or choose --display window, png or none",
                path.display()
            ),
            DisplayError::Format(what) => write!(
                f,
                "{what}; set the console to 16 or 32 bits per pixel (fbset -depth 32), or choose --display window or png"
            ),
            DisplayError::Png(path, e) => write!(f, "cannot write {}: {e}", path.display()),
            DisplayError::Window(what) => write!(f, "the board window failed: {what}"),
            DisplayError::Blank { path, what, source } => write!(
                f,
                "cannot {what} {} (FBIOBLANK): {source}; a plain file or a driver without \
                 blanking cannot",
                path.display()
            ),
        }
    }
}

impl std::error::Error for DisplayError {}

/// Where `auto` looks: the environment variables and the framebuffer
/// device, as a value so the rule can be tested without a screen.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    /// `$DISPLAY`, when set and not empty.
    pub display: Option<String>,
    /// `$WAYLAND_DISPLAY`, when set and not empty.
    pub wayland: Option<String>,
    /// Whether the framebuffer device can be opened for writing.
    pub fb_writable: bool,
}

impl Environment {
    /// The real environment, for `config`'s framebuffer device.
    pub fn current(config: &DisplayConfig) -> Environment {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        Environment {
            display: var("DISPLAY"),
            wayland: var("WAYLAND_DISPLAY"),
            fb_writable: writable(&config.device),
        }
    }
}

/// Picks the backend for `config` and says why, in words for the log.
///
/// `auto`: a window when DISPLAY or WAYLAND_DISPLAY is set, else the
/// framebuffer when it is writable, else a PNG in the data dir.
pub fn choose(config: &DisplayConfig, env: &Environment) -> (Choice, String) {
    let fbdev = || Choice::Fbdev(config.device.clone());
    let png = || Choice::Png(config.png_path.clone());
    match config.mode {
        DisplayMode::Window => (Choice::Window, "display mode window".into()),
        DisplayMode::Fbdev => (fbdev(), "display mode fbdev".into()),
        DisplayMode::Png => (png(), "display mode png".into()),
        DisplayMode::None => (Choice::None, "display mode none".into()),
        DisplayMode::Auto => {
            if let Some(d) = &env.display {
                (Choice::Window, format!("auto: DISPLAY is {d}"))
            } else if let Some(w) = &env.wayland {
                (Choice::Window, format!("auto: WAYLAND_DISPLAY is {w}"))
            } else if env.fb_writable {
                (
                    fbdev(),
                    format!(
                        "auto: no DISPLAY or WAYLAND_DISPLAY, and {} is writable",
                        config.device.display()
                    ),
                )
            } else {
                (
                    png(),
                    format!(
                        "auto: no DISPLAY or WAYLAND_DISPLAY, and {} is not writable",
                        config.device.display()
                    ),
                )
            }
        }
    }
}

/// Opens the screen for `choice`. `None` for [`Choice::None`].
pub fn open(
    choice: &Choice,
    config: &DisplayConfig,
) -> Result<Option<Box<dyn Screen>>, DisplayError> {
    let size = config.width.zip(config.height);
    Ok(match choice {
        Choice::Window => Some(Box::new(window::Window::open(size)?)),
        Choice::Fbdev(path) => Some(Box::new(fbdev::Fbdev::open(path, size, config.bpp)?)),
        Choice::Png(path) => Some(Box::new(pngfile::PngFile::new(
            path.clone(),
            size.unwrap_or(DEFAULT_SIZE),
        ))),
        Choice::None => None,
    })
}

/// Whether `path` opens for writing (without creating it).
fn writable(path: &Path) -> bool {
    std::fs::OpenOptions::new().write(true).open(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn display(mode: DisplayMode) -> DisplayConfig {
        let mut config = Config::defaults_in(Path::new("/var/lib/tablo")).display;
        config.mode = mode;
        config
    }

    #[track_caller]
    fn check(env: Environment, expected: Choice, why: &str) {
        let (choice, reason) = choose(&display(DisplayMode::Auto), &env);
        assert_eq!(choice, expected);
        assert!(reason.contains(why), "{reason:?} should contain {why:?}");
    }

    #[test]
    fn auto_prefers_a_window_then_the_framebuffer_then_a_png() {
        let fb = Choice::Fbdev(PathBuf::from("/dev/fb0"));
        let png = Choice::Png(PathBuf::from("/var/lib/tablo/board.png"));
        let x11 = Environment {
            display: Some(":0".into()),
            fb_writable: true,
            ..Environment::default()
        };
        check(x11, Choice::Window, "DISPLAY is :0");
        let wayland = Environment {
            wayland: Some("wayland-1".into()),
            ..Environment::default()
        };
        check(wayland, Choice::Window, "WAYLAND_DISPLAY is wayland-1");
        let console = Environment {
            fb_writable: true,
            ..Environment::default()
        };
        check(console, fb, "/dev/fb0 is writable");
        check(Environment::default(), png, "/dev/fb0 is not writable");
    }

    #[test]
    fn an_explicit_mode_ignores_the_environment() {
        let env = Environment {
            display: Some(":0".into()),
            ..Environment::default()
        };
        for (mode, name) in [
            (DisplayMode::Window, "window"),
            (DisplayMode::Fbdev, "fbdev"),
            (DisplayMode::Png, "png"),
            (DisplayMode::None, "none"),
        ] {
            let (choice, reason) = choose(&display(mode), &env);
            assert_eq!(choice.name(), name);
            assert_eq!(reason, format!("display mode {name}"));
        }
    }

    #[test]
    fn the_no_display_error_names_the_variables_and_the_other_modes() {
        let text = DisplayError::NoDisplay("DISPLAY is not set".into()).to_string();
        for word in ["DISPLAY", "cage", "fbdev", "png", "none"] {
            assert!(text.contains(word), "{text}");
        }
    }
}
