//! The process logger: one line per record on stderr.
//!
//! Under systemd (`$JOURNAL_STREAM` names our stderr) each line starts with a
//! syslog priority, `<6>message`, and carries no timestamp, because journald
//! adds its own. Elsewhere a line reads
//! `2026-11-22T15:04:05.123Z INFO  tablo::server: message`.
//!
//! `$TABLO_LOG` (`error|warn|info|debug|trace`, default `info`) sets the level
//! for Tablo's own modules; other crates (rustls, tungstenite, sled) stay at
//! `warn` unless it is `trace`. Each line is written with one `write_all` of
//! a preformatted buffer, so lines from different threads never interleave.
//!
//! This module writes to stderr and reads the clock and the environment once
//! per line or at `init`; it never panics on a failed write.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Our crate's name: targets equal to it or below it (`tablo::…`) are ours.
const OUR_CRATE: &str = env!("CARGO_CRATE_NAME");

/// The level used when `$TABLO_LOG` is unset or not understood.
const DEFAULT_LEVEL: LevelFilter = LevelFilter::Info;

/// Other crates log at most this much unless `$TABLO_LOG=trace`: their
/// debug output (every TLS record, every frame) would drown ours.
const DEPENDENCY_LEVEL: LevelFilter = LevelFilter::Warn;

/// Installs the logger, configured from `$TABLO_LOG` and `$JOURNAL_STREAM`.
/// Calling it again (or after another logger was installed) does nothing.
pub fn init() {
    static LOGGER: OnceLock<StderrLogger> = OnceLock::new();
    let mut warning = None;
    let logger = LOGGER.get_or_init(|| {
        let env = |name: &str| std::env::var(name).ok();
        let (logger, bad_level) = StderrLogger::from_env(&env, stderr_id());
        warning = bad_level;
        logger
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(logger.max_level());
        if let Some(warning) = warning {
            log::warn!("{warning}");
        }
    }
}

/// The logger [`init`] installs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StderrLogger {
    /// Level for our own targets.
    ours: LevelFilter,
    /// Level for every other target.
    theirs: LevelFilter,
    /// Whether stderr is journald's stream: priority prefixes, no timestamps.
    journald: bool,
}

impl StderrLogger {
    /// Reads `$TABLO_LOG` and `$JOURNAL_STREAM` through `env`; `stderr` is
    /// the (device, inode) of our stderr, to check `$JOURNAL_STREAM` against.
    /// Also returns a warning to log when `$TABLO_LOG` is not understood.
    fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        stderr: Option<(u64, u64)>,
    ) -> (StderrLogger, Option<String>) {
        let (ours, warning) = match env("TABLO_LOG").as_deref().map(str::trim) {
            None | Some("") => (DEFAULT_LEVEL, None),
            Some(text) => match parse_level(text) {
                Some(level) => (level, None),
                None => (
                    DEFAULT_LEVEL,
                    Some(format!(
                        "TABLO_LOG={text:?} is not one of error, warn, info, debug, trace; using info"
                    )),
                ),
            },
        };
        let theirs = if ours == LevelFilter::Trace {
            LevelFilter::Trace
        } else {
            ours.min(DEPENDENCY_LEVEL)
        };
        let journald = env("JOURNAL_STREAM").is_some_and(|stream| is_our_stream(&stream, stderr));
        (
            StderrLogger {
                ours,
                theirs,
                journald,
            },
            warning,
        )
    }

    /// The most verbose level any target may log at.
    fn max_level(&self) -> LevelFilter {
        self.ours.max(self.theirs)
    }

    /// Formats one record as a complete line into `buf`.
    fn format(&self, buf: &mut String, record: &Record<'_>, now: SystemTime) {
        use std::fmt::Write as _;
        if self.journald {
            let priority = syslog_priority(record.level());
            let start = buf.len();
            let _ = write!(buf, "<{priority}>{}", record.args());
            // journald splits a message at newlines; give every piece the
            // same priority.
            if buf[start..].contains('\n') {
                let text = buf.split_off(start);
                buf.push_str(&text.replace('\n', &format!("\n<{priority}>")));
            }
        } else {
            write_timestamp(buf, now);
            let _ = write!(
                buf,
                " {:<5} {}: {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
        buf.push('\n');
    }
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let limit = if is_ours(metadata.target()) {
            self.ours
        } else {
            self.theirs
        };
        metadata.level() <= limit
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = String::with_capacity(128);
        self.format(&mut line, record, SystemTime::now());
        // One write_all per line: stderr's lock is held for the whole line.
        // A failed write to stderr has nowhere to be reported.
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Whether `target` belongs to this crate (the library or the binary).
fn is_ours(target: &str) -> bool {
    target == OUR_CRATE
        || target
            .strip_prefix(OUR_CRATE)
            .is_some_and(|rest| rest.starts_with("::"))
}

/// Parses a `$TABLO_LOG` value.
fn parse_level(text: &str) -> Option<LevelFilter> {
    match text.to_ascii_lowercase().as_str() {
        "off" => Some(LevelFilter::Off),
        "error" => Some(LevelFilter::Error),
        "warn" | "warning" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}

/// The syslog priority journald understands for a level.
fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Whether `$JOURNAL_STREAM` (`DEVICE:INODE`) names our stderr. systemd sets
/// it for the service's stderr; a child whose stderr was redirected elsewhere
/// inherits the variable but not the stream. When our stderr cannot be
/// checked, a well-formed value is trusted.
fn is_our_stream(value: &str, stderr: Option<(u64, u64)>) -> bool {
    let parsed = value
        .split_once(':')
        .and_then(|(dev, ino)| Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?)));
    match (parsed, stderr) {
        (Some(named), Some(actual)) => named == actual,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// The (device, inode) of our stderr, if it can be found.
#[cfg(unix)]
fn stderr_id() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The (device, inode) of our stderr: unknown off Unix.
#[cfg(not(unix))]
fn stderr_id() -> Option<(u64, u64)> {
    None
}

/// Appends `now` as RFC 3339 UTC with milliseconds: `2026-11-22T15:04:05.123Z`.
fn write_timestamp(buf: &mut String, now: SystemTime) {
    use std::fmt::Write as _;
    let since = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    let _ = write!(
        buf,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_millis()
    );
}

/// The proleptic Gregorian (year, month, day) of a count of days since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Lets a repeated warning through at most once per interval, counting the
/// repeats it held back. Time is passed in, so it is tested without sleeping.
///
/// ```
/// # use std::time::{Duration, Instant};
/// # use tablo::logger::RateLimited;
/// let mut limit = RateLimited::new(Duration::from_secs(10));
/// let now = Instant::now();
/// assert_eq!(limit.should_log(now), Some(0));
/// assert_eq!(limit.should_log(now), None);
/// assert_eq!(limit.should_log(now + Duration::from_secs(10)), Some(1));
/// ```
#[derive(Debug, Clone)]
pub struct RateLimited {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    /// A limiter that lets one message through per `interval`.
    pub const fn new(interval: Duration) -> RateLimited {
        RateLimited {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether to log now. `Some(n)`: log, and say that `n` repeats were
    /// held back since the last message; `None`: stay quiet (this call is
    /// counted).
    pub fn should_log(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn logger(pairs: &[(&str, &str)]) -> StderrLogger {
        StderrLogger::from_env(&env_of(pairs), Some((8, 1234))).0
    }

    fn line(
        logger: &StderrLogger,
        level: Level,
        target: &str,
        text: &str,
        now: SystemTime,
    ) -> String {
        let mut buf = String::new();
        logger.format(
            &mut buf,
            &Record::builder()
                .level(level)
                .target(target)
                .args(format_args!("{text}"))
                .build(),
            now,
        );
        buf
    }

    fn enabled(logger: &StderrLogger, level: Level, target: &str) -> bool {
        logger.enabled(&Metadata::builder().level(level).target(target).build())
    }

    #[test]
    fn civil_from_days_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
        assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
    }

    #[test]
    fn civil_from_days_is_continuous() {
        let mut previous = civil_from_days(-800);
        for days in -799..800_000 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let next_day = (y, m) == (py, pm) && d == pd + 1;
            let next_month = y == py && m == pm + 1 && d == 1;
            let next_year = y == py + 1 && m == 1 && d == 1 && pm == 12 && pd == 31;
            assert!(
                next_day || next_month || next_year,
                "{previous:?} then {:?}",
                (y, m, d)
            );
            previous = (y, m, d);
        }
    }

    #[test]
    fn timestamp_is_rfc3339_utc_with_millis() {
        let mut buf = String::new();
        let t = UNIX_EPOCH + Duration::from_millis(1_795_359_845_123);
        write_timestamp(&mut buf, t);
        assert_eq!(buf, "2026-11-22T15:04:05.123Z");
        buf.clear();
        write_timestamp(&mut buf, UNIX_EPOCH);
        assert_eq!(buf, "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn plain_line_has_timestamp_level_and_target() {
        let l = logger(&[]);
        let t = UNIX_EPOCH + Duration::from_millis(1_795_359_845_123);
        assert_eq!(
            line(&l, Level::Info, "tablo::server", "listening", t),
            "2026-11-22T15:04:05.123Z INFO  tablo::server: listening\n"
        );
        assert_eq!(
            line(&l, Level::Error, "tablo", "x", t),
            "2026-11-22T15:04:05.123Z ERROR tablo: x\n"
        );
    }

    #[test]
    fn journald_line_has_priority_and_no_timestamp() {
        let l = logger(&[("JOURNAL_STREAM", "8:1234")]);
        assert!(l.journald);
        let t = UNIX_EPOCH;
        assert_eq!(
            line(&l, Level::Error, "tablo::journal", "disk full", t),
            "<3>disk full\n"
        );
        assert_eq!(line(&l, Level::Warn, "tablo", "w", t), "<4>w\n");
        assert_eq!(line(&l, Level::Info, "tablo", "i", t), "<6>i\n");
        assert_eq!(line(&l, Level::Debug, "tablo", "d", t), "<7>d\n");
        assert_eq!(line(&l, Level::Trace, "tablo", "t", t), "<7>t\n");
        assert_eq!(line(&l, Level::Warn, "tablo", "a\nb", t), "<4>a\n<4>b\n");
    }

    #[test]
    fn journal_stream_must_name_our_stderr() {
        assert!(!logger(&[("JOURNAL_STREAM", "8:999")]).journald);
        assert!(!logger(&[("JOURNAL_STREAM", "garbage")]).journald);
        assert!(!logger(&[]).journald);
        let (unknown_stderr, _) =
            StderrLogger::from_env(&env_of(&[("JOURNAL_STREAM", "8:1")]), None);
        assert!(unknown_stderr.journald);
    }

    #[test]
    fn default_level_is_info_for_us_and_warn_for_dependencies() {
        let l = logger(&[]);
        assert!(enabled(&l, Level::Info, "tablo::server"));
        assert!(!enabled(&l, Level::Debug, "tablo::server"));
        assert!(enabled(&l, Level::Warn, "rustls::conn"));
        assert!(!enabled(&l, Level::Info, "rustls::conn"));
        assert_eq!(l.max_level(), LevelFilter::Info);
    }

    #[test]
    fn debug_is_only_for_our_crate() {
        let l = logger(&[("TABLO_LOG", "debug")]);
        assert!(enabled(&l, Level::Debug, "tablo::feed::binance"));
        assert!(enabled(&l, Level::Debug, "tablo"));
        assert!(!enabled(&l, Level::Debug, "tungstenite::protocol"));
        assert!(!enabled(&l, Level::Debug, "tablox"));
        assert!(!enabled(&l, Level::Trace, "tablo::server"));
    }

    #[test]
    fn trace_opens_everything() {
        let l = logger(&[("TABLO_LOG", "trace")]);
        assert!(enabled(&l, Level::Trace, "tablo::server"));
        assert!(enabled(&l, Level::Trace, "sled::pagecache"));
        assert_eq!(l.max_level(), LevelFilter::Trace);
    }

    #[test]
    fn error_level_quiets_dependencies_too() {
        let l = logger(&[("TABLO_LOG", "error")]);
        assert!(!enabled(&l, Level::Warn, "tablo::server"));
        assert!(!enabled(&l, Level::Warn, "rustls"));
        assert!(enabled(&l, Level::Error, "rustls"));
    }

    #[test]
    fn bad_tablo_log_falls_back_to_info_with_a_warning() {
        let (l, warning) = StderrLogger::from_env(&env_of(&[("TABLO_LOG", "verbose")]), None);
        assert_eq!(l.ours, LevelFilter::Info);
        assert!(warning.unwrap().contains("verbose"));
        let (l, warning) = StderrLogger::from_env(&env_of(&[("TABLO_LOG", "WARN")]), None);
        assert_eq!((l.ours, warning), (LevelFilter::Warn, None));
    }

    #[test]
    fn rate_limited_counts_what_it_holds_back() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut limit = RateLimited::new(Duration::from_secs(1));
        assert_eq!(limit.should_log(at(0)), Some(0));
        assert_eq!(limit.should_log(at(10)), None);
        assert_eq!(limit.should_log(at(500)), None);
        assert_eq!(limit.should_log(at(999)), None);
        assert_eq!(limit.should_log(at(1000)), Some(3));
        assert_eq!(limit.should_log(at(1500)), None);
        assert_eq!(limit.should_log(at(5000)), Some(1));
        assert_eq!(limit.should_log(at(7000)), Some(0));
    }

    #[test]
    fn rate_limited_tolerates_time_going_backwards() {
        let start = Instant::now() + Duration::from_secs(5);
        let mut limit = RateLimited::new(Duration::from_secs(1));
        assert_eq!(limit.should_log(start), Some(0));
        assert_eq!(limit.should_log(start - Duration::from_secs(3)), None);
    }
}
