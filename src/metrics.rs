//! The Prometheus text format, written by one small writer.
//!
//! `/metrics` is a few dozen rows; a registry crate would keep a second copy
//! of counters that the hub and the renderer already own. Instead, each
//! owner describes its metrics to a [`MetricsText`] at the moment of a
//! scrape: a metric's `# HELP` and `# TYPE` lines are written once, by
//! [`MetricsText::family`], followed by its rows. Names are given without
//! the `tablo_` prefix, which the writer adds; the few standard names that
//! carry no prefix (`process_*`) go through [`MetricsText::standard`].
//! A [`Histogram`] is a set of atomics one thread records into and a scrape
//! reads.
//!
//! This module knows the text format and nothing about what is measured,
//! but for [`process`], which reads the process's own figures from `/proc`.

pub mod process;

use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Every metric's name starts with this.
const PREFIX: &str = "tablo_";

/// A Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets with the process).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, a sum and a count.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Prometheus text being written into a `String`.
pub struct MetricsText<'a> {
    out: &'a mut String,
}

/// One metric's rows, after its `# HELP` and `# TYPE` lines.
pub struct Family<'w, 'a> {
    text: &'w mut MetricsText<'a>,
    prefix: &'static str,
    name: &'static str,
}

impl<'a> MetricsText<'a> {
    /// Appends to `out`.
    pub fn new(out: &'a mut String) -> MetricsText<'a> {
        MetricsText { out }
    }

    /// Starts metric `name` (without the prefix): writes its help and type.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> Family<'_, 'a> {
        self.family_with(PREFIX, name, kind, help)
    }

    fn family_with(
        &mut self,
        prefix: &'static str,
        name: &'static str,
        kind: Kind,
        help: &str,
    ) -> Family<'_, 'a> {
        let _ = writeln!(
            self.out,
            "# HELP {prefix}{name} {help}\n# TYPE {prefix}{name} {}",
            kind.name()
        );
        Family {
            text: self,
            prefix,
            name,
        }
    }

    /// A metric with one row and no labels.
    pub fn single(&mut self, name: &'static str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help).row(&[], value);
    }

    /// A metric with one row, no labels and a name of Prometheus's own
    /// conventions, written as given, without the `tablo_` prefix (such as
    /// `process_open_fds`).
    pub fn standard(&mut self, name: &'static str, kind: Kind, help: &str, value: impl Display) {
        self.family_with("", name, kind, help).row(&[], value);
    }

    /// Histogram `name` in seconds: its `_bucket` rows (cumulative, `+Inf`
    /// last), `_sum` and `_count`.
    pub fn histogram(&mut self, name: &'static str, help: &str, histogram: &Histogram) {
        let mut family = self.family(name, Kind::Histogram, help);
        let mut cumulative = 0;
        for (i, bound) in histogram.bounds_us.iter().enumerate() {
            cumulative += histogram.counts[i].load(Ordering::Relaxed);
            let le = (*bound as f64 / 1e6).to_string();
            family.suffixed_row("_bucket", &[("le", &le)], cumulative);
        }
        cumulative += histogram.counts[histogram.bounds_us.len()].load(Ordering::Relaxed);
        let sum = histogram.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        family
            .suffixed_row("_bucket", &[("le", "+Inf")], cumulative)
            .suffixed_row("_sum", &[], sum)
            .suffixed_row("_count", &[], cumulative);
    }
}

impl Family<'_, '_> {
    /// A row of this metric with `labels` (name, value; values escaped here).
    pub fn row(&mut self, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.suffixed_row("", labels, value)
    }

    /// A row of a series next to the metric's own name, such as a
    /// histogram's `_bucket`, `_sum` and `_count`.
    pub fn suffixed_row(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) -> &mut Self {
        let out = &mut *self.text.out;
        let _ = write!(out, "{}{}{suffix}", self.prefix, self.name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{key}=\"");
                escape_into(out, val);
                out.push('"');
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
        self
    }
}

/// Most bounds a [`Histogram`] has, `+Inf` not counted.
const MAX_BOUNDS: usize = 16;

/// Durations counted into buckets by upper bound, in microseconds: one
/// thread records, a scrape reads ([`MetricsText::histogram`]). Fixed
/// atomics, so recording never allocates or locks.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in µs, ascending.
    bounds_us: &'static [u64],
    /// Durations per bucket, not cumulative; the one after the last bound
    /// counts the rest.
    counts: [AtomicU64; MAX_BOUNDS + 1],
    /// Sum of the durations recorded, µs.
    sum_us: AtomicU64,
}

impl Histogram {
    /// An empty histogram with upper `bounds_us` (ascending, at most 16).
    pub fn new(bounds_us: &'static [u64]) -> Histogram {
        assert!(bounds_us.len() <= MAX_BOUNDS, "at most {MAX_BOUNDS} bounds");
        assert!(bounds_us.is_sorted(), "bounds ascending");
        Histogram {
            bounds_us,
            counts: Default::default(),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Counts one duration.
    pub fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = self
            .bounds_us
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(self.bounds_us.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// Appends `value` as a label value: backslash, quote and newline escaped.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_and_type_come_once_then_every_row() {
        let mut out = String::new();
        let mut text = MetricsText::new(&mut out);
        text.family("feed_up", Kind::Gauge, "1 when the feed is connected.")
            .row(&[("feed", "a")], 1)
            .row(&[("feed", "b")], 0);
        text.single("clients", Kind::Gauge, "Connected clients.", 3);
        assert_eq!(
            out,
            "# HELP tablo_feed_up 1 when the feed is connected.\n# TYPE tablo_feed_up gauge\n\
             tablo_feed_up{feed=\"a\"} 1\ntablo_feed_up{feed=\"b\"} 0\n\
             # HELP tablo_clients Connected clients.\n# TYPE tablo_clients gauge\ntablo_clients 3\n"
        );
    }

    #[test]
    fn a_histogram_is_cumulative_in_seconds_with_inf_sum_and_count() {
        static BOUNDS: [u64; 2] = [1_000, 10_000];
        let histogram = Histogram::new(&BOUNDS);
        histogram.record(Duration::from_micros(1_000));
        histogram.record(Duration::from_micros(5_000));
        histogram.record(Duration::from_micros(6_000));
        histogram.record(Duration::from_secs(2));
        let mut out = String::new();
        MetricsText::new(&mut out).histogram("x_seconds", "h", &histogram);
        assert_eq!(
            out,
            "# HELP tablo_x_seconds h\n# TYPE tablo_x_seconds histogram\n\
             tablo_x_seconds_bucket{le=\"0.001\"} 1\n\
             tablo_x_seconds_bucket{le=\"0.01\"} 3\n\
             tablo_x_seconds_bucket{le=\"+Inf\"} 4\n\
             tablo_x_seconds_sum 2.012\n\
             tablo_x_seconds_count 4\n"
        );
    }

    #[test]
    fn standard_names_have_no_prefix() {
        let mut out = String::new();
        MetricsText::new(&mut out).standard("process_open_fds", Kind::Gauge, "Open fds.", 7);
        assert_eq!(
            out,
            "# HELP process_open_fds Open fds.\n# TYPE process_open_fds gauge\nprocess_open_fds 7\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        MetricsText::new(&mut out)
            .family("x", Kind::Counter, "h")
            .suffixed_row("_total", &[("feed", "a\"b\\c\nd"), ("k", "v")], 2);
        assert!(
            out.ends_with("tablo_x_total{feed=\"a\\\"b\\\\c\\nd\",k=\"v\"} 2\n"),
            "{out}"
        );
    }
}
