//! Integration tests: the real `tablo` binary, driven through its command
//! line, its WebSocket protocol and its HTTP endpoints, with fake upstream
//! feeds on `127.0.0.1:0` and a fresh temp dir per daemon.

mod cli;
mod harness;
mod http;
mod protocol;
mod relay;
