//! Tablo: a price board and real-time relay for Raspberry-Pi-class kiosks.
//!
//! The binary in `main.rs` is a thin shell over this library: it parses the
//! command line ([`cli`]), loads a [`config::Config`] and calls [`app::run`].
//! See ARCHITECTURE.md for the codemap and the invariants.

pub mod app;
pub mod board;
pub mod cli;
pub mod clock;
pub mod config;
pub mod decimal;
pub mod display;
pub mod event;
pub mod feed;
pub mod heartbeat;
pub mod hub;
pub mod journal;
pub mod logger;
pub mod metrics;
pub mod outbox;
pub mod protocol;
pub mod publish;
pub mod ratelimit;
pub mod renderer;
pub mod server;
pub mod service;
pub mod session;
