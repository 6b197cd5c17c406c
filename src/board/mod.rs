//! The price board of docs/board.md: its model, its drawing, and its PNG
//! output.
//!
//! The board is a pure core with thin edges. [`state::BoardState`] is what
//! the screen shows, updated by events with a given `now`;
//! [`draw::draw`] turns a state and a time into pixels on any
//! embedded-graphics `DrawTarget<Color = Rgb888>`; [`rotate::Rotated`] maps
//! a logical (rotated, shifted) board onto a physical target; `png`
//! encodes a [`png::Canvas`] and writes it atomically.
//!
//! Nothing under `board` does I/O except `font::painter`, which reads
//! `[board] font` once when a painter is made, and `png::write_atomically`;
//! nothing here reads the clock or spawns a task: the renderer thread and
//! its pacing live in `renderer`, the screens in `display`, and they pass
//! `now` in. `feed` is the queue the hub feeds the renderer through.
//! Prices are never parsed into floating point for display; only the
//! sparkline's pixel heights go through `f64`.

pub(crate) mod calendar;
pub mod damage;
pub mod draw;
pub(crate) mod feed;
pub(crate) mod font;
pub(crate) mod numbers;
pub(crate) mod png;
pub(crate) mod qr;
pub(crate) mod rotate;
pub(crate) mod screen;
pub(crate) mod state;
pub(crate) mod text;

pub(crate) mod layout;
pub(crate) mod plural;
pub(crate) mod theme;
pub(crate) mod words;

#[cfg(test)]
pub(crate) mod golden;
#[cfg(test)]
mod golden_calendar;
#[cfg(test)]
pub(crate) mod testing;

pub use damage::{Redrawn, Scope, Shown};
pub use draw::{Painter, draw};
pub use png::Canvas;
pub use rotate::{Rotated, Rotation};
pub use state::BoardState;
