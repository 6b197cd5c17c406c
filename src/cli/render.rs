//! `tablo render`: one board frame written to a PNG file, offline.
//!
//! It draws what the board would show right after a start: the journal's
//! last-known values, marked stale; or, with `--demo` or when there is no
//! journal yet, the demo market's first state. For docs, screenshots and a
//! quick look at a config. It reads the journal and writes one file; it never
//! creates a journal.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::board::draw::draw;
use crate::board::font::painter;
use crate::board::png::{Canvas, write_atomically};
use crate::board::rotate::{Rotated, Rotation};
use crate::board::state::BoardState;
use crate::cli::journal::JOURNAL_DATA_FILE;
use crate::clock::wall_ms;
use crate::config::Config;
use crate::display::DEFAULT_SIZE;
use crate::event::{Body, Event};
use crate::feed::demo::Demo;
use crate::journal::store::{Store, StoreError};
use crate::renderer::qr::AutoQr;

/// The demo's seed for `render`, so the same command draws the same prices.
const DEMO_SEED: u64 = 7;

/// sled's cache while reading the snapshot: it is read once.
const CACHE_BYTES: u64 = 1 << 20;

/// Why a frame could not be rendered.
#[derive(Debug)]
pub enum RenderError {
    /// The journal could not be read (exit 74).
    Journal(StoreError),
    /// A running daemon holds the journal (exit 74).
    Locked(PathBuf),
    /// The PNG could not be written (exit 74).
    Write(PathBuf, std::io::Error),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::Journal(e) => write!(f, "cannot read the journal: {e}"),
            RenderError::Locked(dir) => write!(
                f,
                "the journal in {} is held by a running tablo; its board already shows this (use --display png for a file), or render the demo with --demo",
                dir.display()
            ),
            RenderError::Write(path, e) => write!(f, "cannot write {}: {e}", path.display()),
        }
    }
}

impl std::error::Error for RenderError {}

/// What to render.
pub struct Render<'a> {
    /// The PNG to write.
    pub out: &'a Path,
    /// Settings (board, display, journal dir).
    pub config: &'a Config,
    /// `--size`, overriding `[display]`.
    pub size: Option<(u32, u32)>,
    /// `--demo`: the demo market's first state instead of the journal.
    pub demo: bool,
}

/// Draws the frame and writes it. Returns how many last-known values came
/// from the journal (0: the demo was drawn).
pub fn render(job: &Render<'_>) -> Result<usize, RenderError> {
    let config = job.config;
    let (width, height) = job
        .size
        .or(config.display.width.zip(config.display.height))
        // The daemon's default for a window or `display = "png"` too.
        .unwrap_or(DEFAULT_SIZE);
    let now = wall_ms();
    let feeds: Vec<&str> = config.feeds.iter().map(|f| f.name.as_str()).collect();
    let mut state = BoardState::new(&config.board, &feeds);
    // `[board] qr = "auto"`: the code a daemon on `[server] listen` shows.
    let started = std::time::Instant::now();
    if let Some(mut auto) = AutoQr::new(&config.board.qr, config.server.listen, started)
        && let Some(code) = auto.poll(started, crate::lan::phone_url)
    {
        state.set_qr(code);
    }
    // As the daemon does at start: a clock that is not set is said so in
    // the header instead of a wrong time.
    let clock = Event {
        seq: 0,
        ts: now,
        body: Body::Clock(crate::clock::sync::check()),
    };
    state.apply(&clock, now);
    let restored = if job.demo {
        Vec::new()
    } else {
        last_known(&config.journal.dir)?
    };
    let from_journal = restored.len();
    if restored.is_empty() {
        let mut first = Vec::new();
        Demo::new("demo", DEMO_SEED).first_state(now, &mut first);
        for (seq, incoming) in (1..).zip(first) {
            let event = Event {
                seq,
                ts: incoming.ts,
                body: incoming.body,
            };
            state.apply(&event, now);
        }
    } else {
        for event in &restored {
            state.restore(event);
        }
        state.mark_restored();
    }
    let rotation = Rotation::from_degrees(config.display.rotate).unwrap_or_default();
    let (w, h) = match rotation {
        Rotation::Cw90 | Rotation::Cw270 => (height, width),
        _ => (width, height),
    };
    let mut painter = painter(config.board.font.as_deref());
    let mut target = Rotated::new(Canvas::new(w, h), rotation);
    // Drawing into memory cannot fail.
    let _ = draw(&state, now, &mut painter, &mut target);
    let frame = target.into_inner();
    write_atomically(job.out, &frame).map_err(|e| RenderError::Write(job.out.to_path_buf(), e))?;
    Ok(from_journal)
}

/// The journal's last-known events, in seq order; empty when there is no
/// journal (nothing is created).
fn last_known(dir: &Path) -> Result<Vec<Event>, RenderError> {
    if !dir.join(JOURNAL_DATA_FILE).exists() {
        return Ok(Vec::new());
    }
    let opened = match Store::open(dir, CACHE_BYTES) {
        Ok(opened) => opened,
        Err(StoreError::Locked(_)) => return Err(RenderError::Locked(dir.to_path_buf())),
        Err(e) => return Err(RenderError::Journal(e)),
    };
    let snapshot = opened.store.snapshot().map_err(RenderError::Journal)?;
    Ok(snapshot
        .iter()
        .filter_map(|(_, _, json)| Event::from_json(json))
        .collect())
}
