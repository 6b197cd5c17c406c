//! The daemon's own process figures for `/metrics`, from `/proc`: resident
//! and virtual memory, CPU time, start time and open file descriptors, as
//! the usual `process_*` metrics.
//!
//! Parsing is pure ([`Figures::parse`]); [`Figures::read`] is the one place
//! that reads `/proc` and asks `sysconf`, at the moment of a scrape. Reading
//! procfs does not wait for a disk. This module knows nothing of the rest of
//! the daemon.

use std::fs;

use super::{Kind, MetricsText};

/// What `/proc` says about this process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figures {
    /// User and system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub resident_bytes: u64,
    /// Virtual memory, bytes.
    pub virtual_bytes: u64,
    /// When the process started, seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
}

/// The units `/proc` counts in, from `sysconf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Units {
    /// Clock ticks per second (`_SC_CLK_TCK`).
    pub ticks_per_second: u64,
    /// Bytes per page (`_SC_PAGESIZE`).
    pub page_bytes: u64,
}

impl Figures {
    /// Reads this process's figures; `None` (and no process metrics) where
    /// there is no `/proc`, or it says something unexpected.
    pub fn read() -> Option<Figures> {
        let stat = fs::read_to_string("/proc/self/stat").ok()?;
        let system = fs::read_to_string("/proc/stat").ok()?;
        let open_fds = fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        // SAFETY: sysconf(3) reads a constant of the system; no pointers.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let units = Units {
            ticks_per_second: u64::try_from(ticks).ok().filter(|&t| t > 0)?,
            page_bytes: u64::try_from(page).ok().filter(|&p| p > 0)?,
        };
        Figures::parse(&stat, &system, open_fds, units)
    }

    /// The figures from the text of `/proc/self/stat` and `/proc/stat`
    /// (proc(5)), and the count of `/proc/self/fd`.
    pub fn parse(stat: &str, system: &str, open_fds: u64, units: Units) -> Option<Figures> {
        // `pid (comm) state ...`: the command may hold spaces and
        // parentheses, so the fields are counted from the last `)`. After
        // it, field 3 (state) is index 0.
        let (_, rest) = stat.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        let ticks = units.ticks_per_second as f64;
        let cpu_ticks = field(14)? + field(15)?;
        let start_ticks = field(22)?;
        let boot_time = system
            .lines()
            .find_map(|line| line.strip_prefix("btime "))?
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(Figures {
            cpu_seconds: cpu_ticks as f64 / ticks,
            resident_bytes: field(24)? * units.page_bytes,
            virtual_bytes: field(23)?,
            start_time_seconds: boot_time as f64 + start_ticks as f64 / ticks,
            open_fds,
        })
    }

    /// Appends the `process_*` metrics.
    pub fn write_metrics(&self, text: &mut MetricsText<'_>) {
        text.standard(
            "process_cpu_seconds_total",
            Kind::Counter,
            "Total user and system CPU time spent in seconds.",
            self.cpu_seconds,
        );
        text.standard(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
            self.resident_bytes,
        );
        text.standard(
            "process_virtual_memory_bytes",
            Kind::Gauge,
            "Virtual memory size in bytes.",
            self.virtual_bytes,
        );
        text.standard(
            "process_start_time_seconds",
            Kind::Gauge,
            "Start time of the process since the Unix epoch in seconds.",
            self.start_time_seconds,
        );
        text.standard(
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
            self.open_fds,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNITS: Units = Units {
        ticks_per_second: 100,
        page_bytes: 4096,
    };

    /// A `/proc/self/stat` line whose command holds a space and a `)`.
    const STAT: &str = "4242 (tab lo) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
        250 125 0 0 20 0 9 0 616478 3133440000 382 18446744073709551615 1 1 0 0 0 0 0 \
        0 0 0 0 0 17 1 0 0 0 0 0\n";

    const SYSTEM: &str = "cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 5\nbtime 1765000000\nprocesses 9\n";

    #[test]
    fn fields_are_counted_from_the_last_parenthesis() {
        let figures = Figures::parse(STAT, SYSTEM, 12, UNITS).unwrap();
        assert_eq!(
            figures,
            Figures {
                cpu_seconds: 3.75,
                resident_bytes: 382 * 4096,
                virtual_bytes: 3_133_440_000,
                start_time_seconds: 1_765_000_000.0 + 6164.78,
                open_fds: 12,
            }
        );
    }

    #[test]
    fn unexpected_text_gives_no_figures() {
        assert_eq!(Figures::parse("4242 (tablo) S 1 2", SYSTEM, 1, UNITS), None);
        assert_eq!(Figures::parse("no parenthesis", SYSTEM, 1, UNITS), None);
        assert_eq!(Figures::parse(STAT, "cpu 1 2 3\n", 1, UNITS), None);
    }

    #[test]
    fn the_metrics_have_their_standard_names() {
        let figures = Figures::parse(STAT, SYSTEM, 12, UNITS).unwrap();
        let mut out = String::new();
        figures.write_metrics(&mut MetricsText::new(&mut out));
        for row in [
            "\nprocess_cpu_seconds_total 3.75\n",
            "\nprocess_resident_memory_bytes 1564672\n",
            "\nprocess_virtual_memory_bytes 3133440000\n",
            "\nprocess_open_fds 12\n",
            "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds 1765006164.78\n",
        ] {
            assert!(out.contains(row), "no {row:?} in:\n{out}");
        }
    }

    #[test]
    fn this_process_can_be_read() {
        let figures = Figures::read().expect("Linux has /proc/self");
        assert!(figures.resident_bytes > 0, "{figures:?}");
        assert!(figures.open_fds >= 3, "{figures:?}");
        assert!(figures.start_time_seconds > 1.5e9, "{figures:?}");
    }
}
