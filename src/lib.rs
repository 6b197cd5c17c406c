//! Tablo: a price board and real-time relay for Raspberry-Pi-class kiosks.
//!
//! The binary in `main.rs` is a thin shell over this library: it parses the
//! command line ([`cli`]), loads a [`config::Config`] and calls [`app::run`].
//! See ARCHITECTURE.md for the codemap and the invariants.

pub mod app;
pub mod board;
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub(crate) mod decimal;
pub mod display;
pub mod event;
pub mod feed;
pub(crate) mod heartbeat;
pub(crate) mod hub;
pub mod journal;
pub mod logger;
pub(crate) mod metrics;
pub(crate) mod outbox;
pub mod protocol;
pub(crate) mod publish;
pub(crate) mod ratelimit;
pub(crate) mod renderer;
pub(crate) mod server;
pub(crate) mod service;
pub(crate) mod session;
