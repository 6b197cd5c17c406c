//! The `tablo` binary: parses the command line, loads the config, runs, and
//! maps every error to an exit code (listed in docs/config.md §14) in one
//! place.

use std::io::{self, BufWriter};
use std::process::ExitCode;

use argh::FromArgs;

use tablo::cli::journal::{JournalError, run_journal};
use tablo::cli::render::{Render, render};
use tablo::cli::token::{TokenError, TokenRequest, make_token};
use tablo::cli::{Args, Command};
use tablo::config::{Config, Overrides};

/// Bad usage (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Bad config (sysexits EX_CONFIG).
const EXIT_CONFIG: u8 = 78;
/// The journal could not be opened or read (sysexits EX_IOERR).
const EXIT_IO: u8 = 74;
/// Anything else.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    tablo::logger::init();
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let rest: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    let args = match Args::from_args(&["tablo"], &rest) {
        Ok(args) => args,
        Err(exit) => {
            return match exit.status {
                Ok(()) => {
                    print!("{}", exit.output);
                    ExitCode::SUCCESS
                }
                Err(()) => {
                    eprintln!("{}\nRun 'tablo --help' for usage.", exit.output.trim_end());
                    ExitCode::from(EXIT_USAGE)
                }
            };
        }
    };
    if args.version {
        println!("tablo {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    match args.command {
        None => {
            eprintln!("tablo: no command given; try 'tablo run' or 'tablo --help'");
            ExitCode::from(EXIT_USAGE)
        }
        Some(Command::Check(check)) => {
            match Config::load_with_notes(check.config.as_deref(), &Overrides::default()) {
                Ok((config, notes)) => {
                    // Warnings (an alert rule's symbol that no row shows)
                    // and notes go to stderr, so stdout stays TOML.
                    for note in notes {
                        eprintln!("tablo: {note}");
                    }
                    print!("{}", config.to_toml());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tablo: {e}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Some(Command::Token(args)) => {
            let request = TokenRequest {
                config: args.config.as_deref(),
                sub: &args.sub,
                channels: args.channels.as_deref(),
                publish: args.publish.as_deref(),
                ttl: args.ttl,
            };
            match make_token(&request) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tablo: {e}");
                    ExitCode::from(match e {
                        TokenError::NoConfig | TokenError::Usage(_) => EXIT_USAGE,
                        TokenError::Config(_) | TokenError::NoSecret(_) => EXIT_CONFIG,
                    })
                }
            }
        }
        Some(Command::Render(args)) => {
            let overrides = Overrides {
                data_dir: args.data_dir.clone(),
                ..Overrides::default()
            };
            let config = match Config::load(args.config.as_deref(), &overrides) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("tablo: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let job = Render {
                out: &args.out,
                config: &config,
                size: args.size,
                demo: args.demo,
            };
            match render(&job) {
                Ok(0) => {
                    eprintln!(
                        "tablo: wrote {} (the demo market's first state)",
                        args.out.display()
                    );
                    ExitCode::SUCCESS
                }
                Ok(n) => {
                    eprintln!(
                        "tablo: wrote {} ({n} last-known values from the journal, drawn as stale)",
                        args.out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tablo: {e}");
                    ExitCode::from(EXIT_IO)
                }
            }
        }
        Some(Command::Journal(journal)) => {
            let mut out = BufWriter::new(io::stdout().lock());
            match run_journal(&journal, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tablo: {e}");
                    ExitCode::from(match e {
                        JournalError::Config(_) => EXIT_CONFIG,
                        JournalError::Output(_) => EXIT_FAILURE,
                        JournalError::NoJournal(_)
                        | JournalError::Store(_)
                        | JournalError::Quarantined { .. }
                        | JournalError::Daemon(_) => EXIT_IO,
                    })
                }
            }
        }
        Some(Command::Run(run)) => {
            let overrides = match run.overrides() {
                Ok(overrides) => overrides,
                Err(e) => {
                    eprintln!("tablo: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let config = match Config::load_with_notes(run.config.as_deref(), &overrides) {
                Ok((config, notes)) => {
                    for note in notes {
                        log::info!("{note}");
                    }
                    config
                }
                Err(e) => {
                    log::error!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let shutdown = match tablo::app::stop_signals() {
                Ok(shutdown) => shutdown,
                Err(e) => {
                    log::error!("{e}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            };
            let ran = tablo::app::bind(config.server.listen).and_then(|listener| {
                // Parks between events and never drives the reactor
                // itself: async-io's thread alone waits in epoll, so it
                // never backs off and polls (the `exec` module docs).
                smol::future::block_on(tablo::app::run(listener, shutdown, config))
            });
            match ran {
                Ok(()) => ExitCode::SUCCESS,
                Err(e @ tablo::app::RunError::Journal(_)) => {
                    log::error!("{e}");
                    ExitCode::from(EXIT_IO)
                }
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::from(EXIT_FAILURE)
                }
            }
        }
    }
}
