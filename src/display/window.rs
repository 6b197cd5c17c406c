//! `display = "window"`: the board in a borderless, screen-sized minifb
//! window with no cursor, on X11 (or XWayland under a Wayland kiosk
//! compositor such as cage, which also makes it fullscreen).
//!
//! The window is sized to the X screen unless `[display] width` and
//! `height` say otherwise, and follows the size the window manager gives
//! it. Closing the window stops the daemon. If the X server goes away,
//! Xlib ends the process (exit 1), and the service manager restarts it.
//!
//! This module only presents finished frames and pumps window events.

use embedded_graphics::prelude::{Point, Size};
use embedded_graphics::primitives::Rectangle;
use minifb::{ScaleMode, Window as MiniWindow, WindowOptions};

use x11_dl::xlib::{self, Xlib};

use super::{Damage, DisplayError, Polled, Screen};
use crate::board::Canvas;

/// A minifb window. See the module docs.
pub struct Window {
    window: MiniWindow,
    size: (u32, u32),
    /// Our own connection for presenting parts of a frame, when the server
    /// takes our pixel layout as is.
    blitter: Option<Blitter>,
}

impl Window {
    /// Opens a window of `size`, or of the whole screen when `None`.
    pub fn open(size: Option<(u32, u32)>) -> Result<Window, DisplayError> {
        let display = std::env::var("DISPLAY").ok().filter(|d| !d.is_empty());
        let Some(display) = display else {
            let why = match std::env::var("WAYLAND_DISPLAY") {
                Ok(w) if !w.is_empty() => format!(
                    "WAYLAND_DISPLAY is {w} but DISPLAY is not set, and this build draws through X11"
                ),
                _ => "neither DISPLAY nor WAYLAND_DISPLAY is set".to_owned(),
            };
            return Err(DisplayError::NoDisplay(why));
        };
        // Our connection stays open while minifb makes its own: an X server
        // with no clients resets, and refuses connections while it does.
        let connection = Connection::open(&display)?;
        let screen = connection.screen_size()?;
        let (width, height) = size.unwrap_or(screen);
        let options = WindowOptions {
            borderless: true,
            title: false,
            resize: true,
            // The frame is drawn at the window's size: a plain copy, not
            // minifb's default per-pixel stretch (a third of a frame's cost).
            scale_mode: ScaleMode::UpperLeft,
            ..WindowOptions::default()
        };
        let mut window = MiniWindow::new("Tablo", width as usize, height as usize, options)
            .map_err(|e| DisplayError::Window(format!("{e} (DISPLAY={display})")))?;
        // The renderer paces frames itself; minifb must not sleep.
        window.set_target_fps(0);
        window.set_cursor_visibility(false);
        window.set_position(0, 0);
        let blitter = Blitter::new(connection, window.get_window_handle() as xlib::Window);
        if blitter.is_none() {
            log::info!("the X server's pixel layout is not 24-bit: presenting whole frames only");
        }
        Ok(Window {
            window,
            size: (width, height),
            blitter,
        })
    }
}

impl Screen for Window {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn present(&mut self, frame: &Canvas, damage: Damage<'_>) -> Result<(), DisplayError> {
        if let Some(blitter) = &mut self.blitter {
            let whole = [Rectangle::new(
                Point::zero(),
                Size::new(frame.width, frame.height),
            )];
            let changed = [frame.changed_bounds().unwrap_or_else(Rectangle::zero)];
            blitter.put(
                frame,
                match damage {
                    Damage::All => &whole,
                    Damage::Areas(areas) => areas,
                    // One rectangle around the changes: a request per
                    // line would cost the X server more than the pixels.
                    Damage::Changed => &changed,
                },
            );
            return Ok(());
        }
        self.window
            .update_with_buffer(&frame.pixels, frame.width as usize, frame.height as usize)
            .map_err(|e| DisplayError::Window(e.to_string()))
    }

    fn poll(&mut self) -> Polled {
        self.window.update();
        if !self.window.is_open() {
            return Polled::Closed;
        }
        let (w, h) = self.window.get_size();
        let size = (w as u32, h as u32);
        if size != self.size && w > 0 && h > 0 {
            self.size = size;
            return Polled::Resized(size.0, size.1);
        }
        if self.blitter.as_mut().is_some_and(Blitter::exposed) {
            // minifb keeps no backing store: show the whole frame again.
            return Polled::Exposed;
        }
        Polled::Same
    }
}

/// A second Xlib connection to the board's window that copies rectangles
/// of a frame with `XPutImage` (minifb always sends the whole frame: 8 MB
/// a frame at 1080p, too much for a clock that ticks) and watches for
/// `Expose`, which minifb ignores.
struct Blitter {
    conn: Connection,
    window: xlib::Window,
    gc: xlib::GC,
    visual: *mut xlib::Visual,
    /// An `XImage` header over the last frame's pixels, rebuilt when the
    /// frame's buffer changes (a resize), so a present allocates nothing.
    image: *mut xlib::XImage,
    image_of: (*const u32, u32, u32),
}

impl Blitter {
    /// A blitter for `window` over `connection`, when the default visual is
    /// 24-bit true colour (our `0x00RRGGBB` pixels as they are).
    fn new(connection: Connection, window: xlib::Window) -> Option<Blitter> {
        let (xlib, display) = (&connection.xlib, connection.display);
        // SAFETY: Xlib calls on an open display; the window id comes from
        // minifb's live window on the same server.
        unsafe {
            let screen = (xlib.XDefaultScreen)(display);
            if (xlib.XDefaultDepth)(display, screen) != 24 {
                return None;
            }
            let visual = (xlib.XDefaultVisual)(display, screen);
            let gc = (xlib.XCreateGC)(display, window, 0, std::ptr::null_mut());
            (xlib.XSelectInput)(display, window, xlib::ExposureMask);
            (xlib.XFlush)(display);
            Some(Blitter {
                conn: connection,
                window,
                gc,
                visual,
                image: std::ptr::null_mut(),
                image_of: (std::ptr::null(), 0, 0),
            })
        }
    }

    /// Copies `areas` of `frame` to the window.
    fn put(&mut self, frame: &Canvas, areas: &[Rectangle]) {
        let key = (frame.pixels.as_ptr(), frame.width, frame.height);
        // SAFETY: the XImage borrows `frame.pixels` only during this call
        // (rebuilt whenever the buffer moves) and its data pointer is
        // cleared before XDestroyImage, so Xlib never frees our memory.
        unsafe {
            if self.image_of != key {
                self.drop_image();
                self.image = (self.conn.xlib.XCreateImage)(
                    self.conn.display,
                    self.visual,
                    24,
                    xlib::ZPixmap,
                    0,
                    frame.pixels.as_ptr() as *mut _,
                    frame.width,
                    frame.height,
                    32,
                    0,
                );
                if self.image.is_null() {
                    return;
                }
                self.image_of = key;
            }
            for area in areas {
                let x = area.top_left.x.clamp(0, frame.width as i32);
                let y = area.top_left.y.clamp(0, frame.height as i32);
                let w = area.size.width.min(frame.width - x as u32);
                let h = area.size.height.min(frame.height - y as u32);
                if w > 0 && h > 0 {
                    (self.conn.xlib.XPutImage)(
                        self.conn.display,
                        self.window,
                        self.gc,
                        self.image,
                        x,
                        y,
                        x,
                        y,
                        w,
                        h,
                    );
                }
            }
            (self.conn.xlib.XFlush)(self.conn.display);
        }
    }

    /// Whether the window was exposed since the last call.
    fn exposed(&mut self) -> bool {
        let mut exposed = false;
        // SAFETY: reads events already queued on our own open display.
        unsafe {
            while (self.conn.xlib.XPending)(self.conn.display) > 0 {
                let mut event: xlib::XEvent = std::mem::zeroed();
                (self.conn.xlib.XNextEvent)(self.conn.display, &mut event);
                exposed |= event.get_type() == xlib::Expose;
            }
        }
        exposed
    }

    /// Frees the image header (not the pixels).
    ///
    /// # Safety
    /// `self.image` is null or made by `XCreateImage` on `self.conn.display`.
    unsafe fn drop_image(&mut self) {
        if !self.image.is_null() {
            // SAFETY: see above; the data is ours, so detach it first.
            unsafe {
                (*self.image).data = std::ptr::null_mut();
                (self.conn.xlib.XDestroyImage)(self.image);
            }
            self.image = std::ptr::null_mut();
            self.image_of = (std::ptr::null(), 0, 0);
        }
    }
}

impl Drop for Blitter {
    fn drop(&mut self) {
        // SAFETY: our own image header and GC, freed once, before the
        // connection (a field, dropped after this) closes.
        unsafe {
            self.drop_image();
            (self.conn.xlib.XFreeGC)(self.conn.display, self.gc);
        }
    }
}

/// Called by Xlib when the X server connection breaks; Xlib exits the
/// process (status 1) when this returns, and the service manager restarts
/// the daemon.
unsafe extern "C" fn x_server_gone(_: *mut xlib::Display) -> std::os::raw::c_int {
    log::error!("the X server went away; exiting (1) so that the service manager restarts tablo");
    0
}

/// An open Xlib connection, before it becomes a [`Blitter`].
struct Connection {
    xlib: Xlib,
    display: *mut xlib::Display,
}

impl Connection {
    /// Connects to the server on `$DISPLAY` (named `display` in errors).
    fn open(display: &str) -> Result<Connection, DisplayError> {
        let xlib = Xlib::open().map_err(|e| {
            DisplayError::NoDisplay(format!(
                "libX11 could not be loaded ({e}); install libx11-6 and libxcursor1"
            ))
        })?;
        // SAFETY: XOpenDisplay with a null name reads $DISPLAY; checked.
        let handle = unsafe { (xlib.XOpenDisplay)(std::ptr::null()) };
        if handle.is_null() {
            return Err(DisplayError::NoDisplay(format!(
                "the X server at DISPLAY={display} does not answer"
            )));
        }
        // Xlib ends the process when the server goes away; say why first.
        // SAFETY: installs a process-wide handler that only logs.
        unsafe {
            (xlib.XSetIOErrorHandler)(Some(x_server_gone));
        }
        Ok(Connection {
            xlib,
            display: handle,
        })
    }

    /// The size of the default screen.
    fn screen_size(&self) -> Result<(u32, u32), DisplayError> {
        // SAFETY: queries on an open display.
        let (width, height) = unsafe {
            let screen = (self.xlib.XDefaultScreen)(self.display);
            (
                (self.xlib.XDisplayWidth)(self.display, screen),
                (self.xlib.XDisplayHeight)(self.display, screen),
            )
        };
        match (u32::try_from(width), u32::try_from(height)) {
            (Ok(w), Ok(h)) if w > 0 && h > 0 => Ok((w, h)),
            _ => Err(DisplayError::Window(format!(
                "the X screen reports {width}×{height}"
            ))),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: closes our own display, once.
        unsafe {
            (self.xlib.XCloseDisplay)(self.display);
        }
    }
}
