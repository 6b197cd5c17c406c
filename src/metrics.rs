//! The Prometheus text format, written by one small writer.
//!
//! `/metrics` is a few dozen rows; a registry crate would keep a second copy
//! of counters that the hub and the renderer already own. Instead, each
//! owner describes its metrics to a [`MetricsText`] at the moment of a
//! scrape: a metric's `# HELP` and `# TYPE` lines are written once, by
//! [`MetricsText::family`], followed by its rows. Names are given without
//! the `tablo_` prefix, which the writer adds.
//!
//! This module knows the text format and nothing about what is measured.

use std::fmt::{Display, Write};

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
    name: &'static str,
}

impl<'a> MetricsText<'a> {
    /// Appends to `out`.
    pub fn new(out: &'a mut String) -> MetricsText<'a> {
        MetricsText { out }
    }

    /// Starts metric `name` (without the prefix): writes its help and type.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> Family<'_, 'a> {
        let _ = writeln!(
            self.out,
            "# HELP {PREFIX}{name} {help}\n# TYPE {PREFIX}{name} {}",
            kind.name()
        );
        Family { text: self, name }
    }

    /// A metric with one row and no labels.
    pub fn single(&mut self, name: &'static str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help).row(&[], value);
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
        let _ = write!(out, "{PREFIX}{}{suffix}", self.name);
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
