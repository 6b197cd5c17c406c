//! Helpers shared by the board's tests: settings, events and demo states.

use crate::config::{BoardConfig, Config, RowConfig};
use crate::event::{Body, Event, FeedState, Status, Tick};
use crate::feed::demo::{DEMO_STEP, Demo};

use embedded_graphics::Pixel;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::{DrawTarget, OriginDimensions, Size};

use super::png::Canvas;
use super::state::BoardState;

/// The built-in `[board]` defaults with these rows, each
/// `symbol[:label[:decimals]]`.
pub fn board_config(rows: &[&str]) -> BoardConfig {
    let mut board = Config::defaults_in("/nonexistent/tablo-test").board;
    board.rows = rows
        .iter()
        .map(|spec| {
            let mut parts = spec.split(':');
            RowConfig {
                symbol: parts.next().unwrap_or_default().to_owned(),
                label: parts.next().map(str::to_owned),
                decimals: parts.next().map(|d| d.parse().expect("decimals")),
            }
        })
        .collect();
    board
}

/// A tick with only a price.
pub fn tick(symbol: &str, price: &str) -> Body {
    Body::Tick(Tick {
        symbol: symbol.into(),
        price: price.into(),
        source: "test".into(),
        ..Tick::default()
    })
}

/// A tick with a price and an open.
pub fn tick_with_open(symbol: &str, price: &str, open: &str) -> Body {
    Body::Tick(Tick {
        symbol: symbol.into(),
        price: price.into(),
        open: Some(open.into()),
        source: "test".into(),
        ..Tick::default()
    })
}

/// A feed status.
pub fn status(feed: &str, state: FeedState) -> Body {
    Body::Status(Status {
        feed: feed.into(),
        state,
    })
}

/// A fixed "now" for pictures: 2023-11-14 22:13:20 UTC.
pub const NOW: u64 = 1_700_000_000_000;

/// The demo feed's board: its first state at `start`, then `steps` steps of
/// [`DEMO_STEP`], every event applied as it comes, with feed `demo` up and
/// three clients. Returns the state and the time of the last step.
pub fn demo_board(board: &BoardConfig, start: u64, steps: u64) -> (BoardState, u64) {
    let mut state = BoardState::new(board, &["demo"]);
    state.set_clients(3);
    let mut seq = 0;
    let mut apply = |state: &mut BoardState, ts: u64, body: Body| {
        seq += 1;
        state.apply(&Event { seq, ts, body }, ts);
    };
    apply(&mut state, start, status("demo", FeedState::Up));
    let mut demo = Demo::new("demo", 7);
    let mut out = Vec::new();
    demo.first_state(start, &mut out);
    let mut last = start;
    for step in 1..=steps {
        last = start + step * DEMO_STEP.as_millis() as u64;
        demo.step(last, &mut out);
    }
    for incoming in out {
        apply(&mut state, incoming.ts, incoming.body);
    }
    (state, last)
}

/// A frame that takes pixels one at a time and nothing else: its
/// `fill_solid` and `fill_contiguous` are embedded-graphics' defaults over
/// `draw_iter`, as on any `DrawTarget` without fast paths. What the fast
/// paths of [`Canvas`] and `Rotated` must draw exactly.
pub struct PixelByPixel(pub Canvas);

impl OriginDimensions for PixelByPixel {
    fn size(&self) -> Size {
        self.0.size()
    }
}

impl DrawTarget for PixelByPixel {
    type Color = Rgb888;
    type Error = std::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Rgb888>>,
    {
        self.0.draw_iter(pixels)
    }
}

/// The QR codes in `frame`, read back with `rqrr` (a decoder that shares
/// no code with the encoder), as their texts.
pub fn decode_qr(frame: &super::png::Canvas) -> Vec<String> {
    use embedded_graphics::pixelcolor::RgbColor;
    let (w, h) = (frame.width as usize, frame.height as usize);
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let p = frame.pixel(x as u32, y as u32);
        ((u32::from(p.r()) * 3 + u32::from(p.g()) * 6 + u32::from(p.b())) / 10) as u8
    });
    image
        .detect_grids()
        .into_iter()
        .filter_map(|grid| grid.decode().ok().map(|(_, text)| text))
        .collect()
}

/// Allocations made by the current thread, counted by the lib test
/// binary's global allocator, so a test can show that a steady-state frame
/// allocates nothing.
pub mod allocations {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static COUNT: Cell<u64> = const { Cell::new(0) };
    }

    /// The system allocator, counting allocations per thread.
    pub struct Counting;

    // SAFETY: every call is passed on to the system allocator unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // `try_with`: the counter may be gone while a thread exits.
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            // SAFETY: the caller upholds `alloc`'s contract.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller upholds `dealloc`'s contract.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            // SAFETY: the caller upholds `realloc`'s contract.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// Allocations made by this thread so far.
    pub fn count() -> u64 {
        COUNT.with(Cell::get)
    }
}
