//! The board's backends for real: a minifb window on an Xvfb server read
//! back with `xwd`, the framebuffer backend on a plain file in both pixel
//! formats, the PNG file, and `auto`'s choice, through the real binary.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tablo::board::{BoardState, Canvas, Painter, draw};
use tablo::config::Config;
use tablo::display::window::Window;
use tablo::display::{Damage, Screen};
use tablo::event::Event;

use crate::harness::{Daemon, Sandbox};

/// How long a board may take to appear after start-up.
const APPEAR: Duration = Duration::from_secs(10);

/// Set in the environment of the child half of
/// [`a_window_shows_exactly_the_frame_it_was_given`].
const CHILD: &str = "TABLO_TEST_WINDOW_CHILD";

/// An Xvfb server on a free display number, stopped on drop.
pub(crate) struct Xvfb {
    child: Child,
    /// `:N`, for `DISPLAY`.
    pub(crate) display: String,
}

impl Xvfb {
    /// A server with one screen of `width × height` at 24 bits.
    pub(crate) fn start(width: u32, height: u32) -> Xvfb {
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-nolisten", "tcp", "-screen", "0"])
            .arg(format!("{width}x{height}x24"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start Xvfb ({e}): install it (apt-get install xvfb x11-apps)")
            });
        // Xvfb writes the display number once it accepts connections.
        let mut number = String::new();
        let mut out = child.stdout.take().expect("piped stdout");
        let mut byte = [0u8; 1];
        while out.read(&mut byte).map(|n| n == 1).unwrap_or(false) && byte[0] != b'\n' {
            number.push(byte[0] as char);
        }
        assert!(!number.is_empty(), "Xvfb did not report a display");
        Xvfb {
            child,
            display: format!(":{}", number.trim()),
        }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The X screen's pixels, `0x00RRGGBB`, read with `xwd -root`.
pub(crate) fn screen(display: &str) -> Canvas {
    let out = Command::new("xwd")
        .args(["-root", "-silent", "-display", display])
        .output()
        .unwrap_or_else(|e| panic!("cannot run xwd ({e}): install x11-apps"));
    assert!(out.status.success(), "xwd failed: {out:?}");
    parse_xwd(&out.stdout)
}

/// Decodes an XWD dump of a 24-bit true-colour screen (32 bits a pixel).
fn parse_xwd(data: &[u8]) -> Canvas {
    let field = |i: usize| u32::from_be_bytes(data[i * 4..i * 4 + 4].try_into().unwrap());
    let (header_size, width, height) = (field(0) as usize, field(4), field(5));
    let (byte_order, bits_per_pixel, bytes_per_line) = (field(7), field(11), field(12) as usize);
    let ncolors = field(19) as usize;
    assert_eq!(
        bits_per_pixel, 32,
        "expected a 24-bit screen in 32-bit pixels"
    );
    let pixels_at = header_size + ncolors * 12;
    let mut frame = Canvas::new(width, height);
    for y in 0..height as usize {
        for x in 0..width as usize {
            let at = pixels_at + y * bytes_per_line + x * 4;
            let bytes: [u8; 4] = data[at..at + 4].try_into().unwrap();
            let p = if byte_order == 0 {
                u32::from_le_bytes(bytes)
            } else {
                u32::from_be_bytes(bytes)
            };
            frame.pixels[y * width as usize + x] = p & 0x00ff_ffff;
        }
    }
    frame
}

/// A board with a few prices, drawn at a fixed time.
fn board_frame(width: u32, height: u32, price: &str) -> Canvas {
    let config = Config::defaults_in(Path::new("/nonexistent"));
    let mut state = BoardState::new(&config.board, &["demo"]);
    let ts = 1_700_000_000_000u64;
    for (seq, (symbol, p)) in [
        ("BTCUSDT", price),
        ("ETHUSDT", "3481.60"),
        ("XAUUSD", "2381.4"),
    ]
    .into_iter()
    .enumerate()
    {
        let json = format!(
            r#"{{"type":"tick","seq":{},"symbol":"{symbol}","price":"{p}","open":"3000","ts":{ts}}}"#,
            seq + 1
        );
        state.apply(&Event::from_json(json.as_bytes()).unwrap(), ts);
    }
    let mut frame = Canvas::new(width, height);
    draw(&state, ts + 5_000, &mut Painter::new(), &mut frame).unwrap();
    frame
}

/// The colour of the header's background at this size (top-left corner).
fn header_colour(width: u32, height: u32) -> u32 {
    board_frame(width, height, "1").pixels[2 * width as usize + 2]
}

/// Polls `read` until `ok` holds or [`APPEAR`] passes; returns the last
/// value read.
fn await_value<T>(mut read: impl FnMut() -> Option<T>, ok: impl Fn(&T) -> bool) -> Option<T> {
    let deadline = Instant::now() + APPEAR;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(v) = read() {
            if ok(&v) {
                return Some(v);
            }
            last = Some(v);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    last
}

/// Pixels of `frame` inside `width × height` at the top left.
fn crop(frame: &Canvas, width: u32, height: u32) -> Canvas {
    let mut out = Canvas::new(width, height);
    for y in 0..height {
        let from = (y * frame.width) as usize;
        out.pixels[(y * width) as usize..((y + 1) * width) as usize]
            .copy_from_slice(&frame.pixels[from..from + width as usize]);
    }
    out
}

#[test]
fn a_window_shows_exactly_the_frame_it_was_given() {
    let x = Xvfb::start(1024, 768);
    // The window must see DISPLAY in its environment from the start, so
    // the window half runs in a child process of this test binary.
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "display::window_half_of_the_exact_frame_test",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("DISPLAY", &x.display)
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("WINDOW MATCHES"), "{stdout}");
}

/// The child half of [`a_window_shows_exactly_the_frame_it_was_given`]:
/// opens a real window, presents a whole frame and then a changed strip,
/// and compares the screen read back with each. Outside that test (no
/// DISPLAY from it), there is nothing to do.
#[test]
fn window_half_of_the_exact_frame_test() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let (w, h) = (800, 480);
    let mut window = Window::open(Some((w, h))).expect("open a window on Xvfb");
    assert_eq!(window.size(), (w, h));
    let first = board_frame(w, h, "67012.50");
    // Present until the window is mapped and shows the frame.
    let shown = await_value(
        || {
            window.poll();
            window.present(&first, Damage::All).unwrap();
            Some(crop(&screen(&std::env::var("DISPLAY").unwrap()), w, h))
        },
        |s| *s == first,
    );
    let diff = shown.map_or(usize::MAX, |s| {
        s.pixels
            .iter()
            .zip(&first.pixels)
            .filter(|(a, b)| a != b)
            .count()
    });
    assert_eq!(diff, 0, "pixels differ between the window and the frame");

    // A changed price, presented as one strip: the screen equals the new
    // frame inside the strip and the old one outside it.
    let second = board_frame(w, h, "67013.75");
    let rows: Vec<usize> = (0..h as usize)
        .filter(|&y| {
            first.pixels[y * w as usize..][..w as usize]
                != second.pixels[y * w as usize..][..w as usize]
        })
        .collect();
    let (top, bottom) = (rows[0] as i32, *rows.last().unwrap() as i32);
    let strip = embedded_graphics::primitives::Rectangle::new(
        embedded_graphics::prelude::Point::new(0, top),
        embedded_graphics::prelude::Size::new(w, (bottom - top + 1) as u32),
    );
    window.present(&second, Damage::Areas(&[strip])).unwrap();
    let shown = await_value(
        || Some(crop(&screen(&std::env::var("DISPLAY").unwrap()), w, h)),
        |s| *s == second,
    );
    assert!(
        shown.is_some_and(|s| s == second),
        "the strip was not shown"
    );
    println!("WINDOW MATCHES");
}

#[test]
fn the_daemon_draws_its_board_in_a_window_and_stops_cleanly() {
    let x = Xvfb::start(1024, 768);
    let sandbox = Sandbox::new();
    let config = "[display]\nwidth = 800\nheight = 480\n";
    let daemon = Daemon::start_in_with(sandbox, Some(config), &["--display", "window"], |cmd| {
        cmd.env("DISPLAY", &x.display);
    });
    daemon.wait_stderr("board: window at 800×480", APPEAR);
    let header = header_colour(800, 480);
    let shown = await_value(
        || Some(screen(&x.display)),
        |s| s.pixels[2 * 1024 + 2] == header,
    );
    assert!(
        shown.is_some_and(|s| s.pixels[2 * 1024 + 2] == header),
        "the header never appeared; stderr:\n{}",
        daemon.stderr_tail()
    );
    daemon.sigterm();
    let stopped = daemon.into_stopped(Duration::from_secs(10));
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
}

#[test]
fn window_mode_without_a_display_says_what_to_set_and_exits_1() {
    let sandbox = Sandbox::new();
    let data = sandbox.data_dir();
    let out = sandbox.tablo(&[
        "run",
        "--display",
        "window",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    out.assert_code(1)
        .assert_stderr_has("DISPLAY")
        .assert_stderr_has("WAYLAND_DISPLAY")
        .assert_stderr_has("--display fbdev, png or none");
}

/// Starts a daemon drawing into a plain file as a framebuffer of `bpp`,
/// and checks the header's colour lands there in that format.
fn fbdev_on_a_plain_file(bpp: u32) {
    let sandbox = Sandbox::new();
    let fb = sandbox.path().join("fb0");
    std::fs::write(&fb, b"").unwrap();
    let config = format!(
        "[display]\ndevice = \"{}\"\nwidth = 800\nheight = 480\nbpp = {bpp}\n",
        fb.display()
    );
    let daemon = Daemon::start_in(sandbox, Some(&config), &["--display", "fbdev"]);
    daemon.wait_stderr("board: fbdev at 800×480", APPEAR);
    let bytes = (bpp / 8) as usize;
    let header = header_colour(800, 480);
    let expected = match bpp {
        16 => {
            let (r, g, b) = (header >> 16 & 0xff, header >> 8 & 0xff, header & 0xff);
            ((r >> 3) << 11 | (g >> 2) << 5 | b >> 3).to_ne_bytes()[..2].to_vec()
        }
        _ => header.to_ne_bytes().to_vec(),
    };
    let at = (2 * 800 + 2) * bytes;
    // A real board, not a filled rectangle: many colours (anti-aliased
    // text) once the demo's prices are drawn (the first frame, before any
    // price, has only the header and a short notice).
    let colours = |file: &[u8]| {
        let mut colours: Vec<&[u8]> = file.chunks(bytes).collect();
        colours.sort_unstable();
        colours.dedup();
        colours.len()
    };
    let file = await_value(
        || std::fs::read(&fb).ok(),
        |f| f.len() > at && f[at..at + bytes] == expected[..] && colours(f) > 50,
    );
    let file = file.expect("the framebuffer file");
    assert_eq!(file.len(), 800 * 480 * bytes);
    assert_eq!(file[at..at + bytes], expected[..], "{bpp} bpp header pixel");
    assert!(colours(&file) > 50, "{} colours", colours(&file));
    daemon.sigterm();
    let stopped = daemon.into_stopped(Duration::from_secs(10));
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
}

#[test]
fn fbdev_draws_rgb565_into_a_plain_file() {
    fbdev_on_a_plain_file(16);
}

#[test]
fn fbdev_draws_xrgb8888_into_a_plain_file() {
    fbdev_on_a_plain_file(32);
}

#[test]
fn fbdev_on_a_missing_device_names_it_and_the_group() {
    let sandbox = Sandbox::new();
    let data = sandbox.data_dir();
    let missing = sandbox.path().join("no-fb");
    let config = sandbox.write(
        "tablo.toml",
        &format!("[display]\ndevice = \"{}\"\n", missing.display()),
    );
    let out = sandbox.tablo(&[
        "run",
        "--display",
        "fbdev",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    out.assert_code(1)
        .assert_stderr_has("no-fb")
        .assert_stderr_has("group video");
}

#[test]
fn auto_without_a_display_or_framebuffer_writes_a_png_and_says_why() {
    let sandbox = Sandbox::new();
    let config = "[display]\nwidth = 800\nheight = 480\ndevice = \"/nonexistent/fb0\"\n";
    let daemon = Daemon::start_in(sandbox, Some(config), &["--display", "auto"]);
    daemon.wait_stderr(
        "auto: no DISPLAY or WAYLAND_DISPLAY, and /nonexistent/fb0 is not writable",
        APPEAR,
    );
    let png = daemon.data_dir().join("board.png");
    let header = header_colour(800, 480);
    let frame = await_value(
        || {
            std::fs::read(&png)
                .ok()
                .and_then(|b| Canvas::decode(&b).ok())
        },
        |f| f.pixels.get(2 * 800 + 2) == Some(&header),
    );
    let frame = frame.expect("board.png");
    assert_eq!((frame.width, frame.height), (800, 480));
    daemon.sigterm();
    let stopped = daemon.into_stopped(Duration::from_secs(10));
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    // Only the picture is left beside the journal: no temporary files.
    let leftovers: Vec<_> = std::fs::read_dir(stopped.sandbox.data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// How long each step of losing the X server may take (the window coming
/// up, the daemon noticing and exiting, its last line reaching the test):
/// generous, since the tests share two cores with builds.
const X_GONE_WITHIN: Duration = Duration::from_secs(30);

#[test]
fn losing_the_x_server_ends_the_daemon_with_1_and_says_why() {
    let mut x = Xvfb::start(640, 480);
    let sandbox = Sandbox::new();
    let config = "[display]\nwidth = 320\nheight = 240\n";
    let mut daemon =
        Daemon::start_in_with(sandbox, Some(config), &["--display", "window"], |cmd| {
            cmd.env("DISPLAY", &x.display);
        });
    daemon.wait_stderr("board: window at 320×240", X_GONE_WITHIN);
    let _ = x.child.kill();
    let _ = x.child.wait();
    let status = daemon.wait_exit(X_GONE_WITHIN);
    assert_eq!(status.code(), Some(1), "{}", daemon.stderr_tail());
    // The reader thread may not have read the last line when the process
    // is reaped: wait for it rather than look once.
    daemon.wait_stderr("the X server went away", X_GONE_WITHIN);
}
