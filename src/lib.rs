//! Tablo: a price board and real-time relay for Raspberry-Pi-class kiosks.
//!
//! The binary (`main.rs`) is a thin shell over this library: it parses the
//! command line ([`cli`]), loads a [`config::Config`], binds the listener,
//! and calls [`app::run`] with a shutdown future made of SIGTERM and
//! SIGINT. ARCHITECTURE.md has the codemap, the invariants, and the Layers
//! table that `tests/it/layers.rs` holds every import to. The user-visible
//! contract is in `docs/`.
//!
//! # Layout
//!
//! From the top down; a module uses only modules below it.
//!
//! - [`cli`]: the commands besides `run` (`tablo journal`, `tablo render`)
//!   and the argh types, whose doc comments are the `--help` text.
//! - [`app`]: starts and owns everything for `tablo run`, and shuts it down
//!   in order: [`app::run`] on a given listener and shutdown future.
//! - `server`: the accept loop and plain HTTP on the WebSocket port (and
//!   the web page's files and `/api/*`, in `server::pages`).
//! - `session`: one client's reader and writer tasks; `session::wire` is the
//!   `sendmsg` of WebSocket frames that the hub's flush shares.
//! - `feed::task`: the loop per feed that connects, reads and reconnects;
//!   `feed::task::mqtt`, an MQTT broker's session, which also publishes
//!   what `[[forward]]` queued.
//! - `renderer`: the thread that draws the board when, and only when, the
//!   picture changes. `service`: what systemd hears (READY, watchdog).
//! - `hub`: the one task that numbers events, keeps the last-known state and
//!   fans out; `hub::report` answers `stats`, `/healthz` and `/metrics`.
//! - [`journal`]: the durable journal in sled, its writer thread and export.
//!   [`rules`]: the `[[alert]]` rules, a pure engine the hub feeds.
//!   `web`: the board as a web page and `tablo.js`, built once at start-up.
//! - [`display`]: where finished frames go (window, framebuffer, PNG file).
//! - `outbox`: one client's bounded queue with tick conflation.
//! - [`board`]: the board's model, drawing and text (pure, but for
//!   `board::font`, which reads the font file, and `board::png`, which
//!   writes one), and the queue
//!   that feeds it from the hub. `publish`: a client's publish as an event.
//!   `forward`: the `[[forward]]` rules, an event's topic and payload.
//! - [`protocol`]: the client protocol's ops, subscriptions and errors.
//!   [`feed`]: upstream decoders, one per format, pure.
//! - [`event`]: the events and their wire shape.
//! - [`config`]: the resolved settings, from defaults, the TOML file and
//!   flags. `clock` (the wall clock and ages), `decimal` (price strings),
//!   `metrics` (Prometheus text; `metrics::process`, the `process_*`
//!   metrics from `/proc`), `ratelimit`, `heartbeat`, `lan` (the LAN
//!   address phones reach, for the board's QR code), [`logger`],
//!   [`schedule`] (the screen's opening hours in local time): small
//!   leaves that import nothing of the crate.
//! - `fuzzing` (hidden): a narrow door to the private parsers for the
//!   property tests and `cargo bench --bench fuzz`; not an API.
//!
//! Modules that only the daemon itself uses are `pub(crate)`; the public
//! ones are what the binary, the integration tests and the benches drive.

pub mod app;
pub(crate) mod auth;
pub mod board;
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub(crate) mod decimal;
pub mod display;
pub mod event;
pub(crate) mod exec;
pub mod feed;
pub(crate) mod forward;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod heartbeat;
pub(crate) mod hub;
pub mod journal;
pub(crate) mod lan;
pub mod logger;
pub(crate) mod metrics;
pub(crate) mod outbox;
pub mod protocol;
pub(crate) mod publish;
pub(crate) mod ratelimit;
pub(crate) mod renderer;
pub mod rules;
pub mod schedule;
pub(crate) mod server;
pub(crate) mod service;
pub(crate) mod session;
pub(crate) mod web;
