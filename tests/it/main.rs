//! Integration tests: the real `tablo` binary, driven through its command
//! line, its WebSocket protocol and its HTTP endpoints, with fake upstream
//! feeds on `127.0.0.1:0` and a fresh temp dir per daemon.

mod broker;
mod browser;
mod browser_proc;
mod chain;
mod chromium;
mod cli;
mod clock;
mod cross;
mod disk;
mod display;
mod embedded;
mod fanout;
mod firefox;
mod fuzz;
mod harness;
mod http;
mod journal;
mod journal_cli;
mod jsonfeed;
mod jwt;
mod keys;
mod kiosk;
mod layers;
mod limits;
mod mqtt;
mod protocol;
mod qr;
mod relay;
mod rules;
mod screen;
mod service;
mod slow;
mod web;
