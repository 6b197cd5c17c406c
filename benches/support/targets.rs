//! Issue 14's performance targets as PASS/FAIL lines: each a bound on one
//! figure from the bench that prints it, either against Node's figure from
//! the same run ([`against_node`]) or against a fixed number
//! ([`at_most`]). The benches print them; nothing asserts them, because a
//! shared machine's figures are evidence to read, not a test verdict.
//!
//! A line reads `target: WHAT | tablo X | node Y | RATIO | PASS` (for a
//! fixed bound, `bound Y` and the ratio to it), so `grep '| FAIL'` over a
//! bench log lists what is missed. A target whose figures the run did not
//! measure says `NOT MEASURED` and why.

use std::fmt::Write as _;

/// How a figure is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Percent of one core.
    Pct,
    /// Mebibytes.
    Mib,
    /// A count (frames lost).
    Count,
}

impl Unit {
    fn show(self, v: f64) -> String {
        match self {
            Unit::Ms => format!("{v:.2} ms"),
            Unit::Us => format!("{v:.2} µs"),
            Unit::Pct => format!("{v:.2} %"),
            Unit::Mib => format!("{v:.1} MiB"),
            Unit::Count => format!("{v:.0}"),
        }
    }
}

/// One target's outcome.
#[derive(Clone, Debug)]
pub struct Line {
    /// What is promised, e.g. `1000 clients: p50 ≤ 0.7× Node's`.
    pub target: String,
    /// Tablo's figure, with its unit.
    pub tablo: Option<String>,
    /// `node X` or `bound X`.
    pub other: Option<String>,
    /// Tablo's figure over the other one.
    pub ratio: Option<f64>,
    /// Met, missed, or why it was not measured.
    pub verdict: Verdict,
}

/// Whether a target is met.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Met.
    Pass,
    /// Missed.
    Fail,
    /// The run lacks a figure it needs; says which.
    NotMeasured(String),
}

/// `tablo ≤ max_ratio × node`, both from the same run. `what` names the
/// figure (`p50`), `load` the configuration (`1000 clients, 100 msg/s`).
pub fn against_node(
    load: &str,
    what: &str,
    unit: Unit,
    max_ratio: f64,
    tablo: Option<f64>,
    node: Option<f64>,
) -> Line {
    let target = format!("{load}: {what} ≤ {max_ratio}× Node's");
    let (verdict, ratio) = match (tablo, node) {
        (Some(t), Some(n)) if n > 0.0 => {
            let ok = t <= max_ratio * n;
            (if ok { Verdict::Pass } else { Verdict::Fail }, Some(t / n))
        }
        (Some(_), Some(_)) => (Verdict::NotMeasured("Node's figure is 0".into()), None),
        (None, _) => (
            Verdict::NotMeasured("no Tablo run at this load".into()),
            None,
        ),
        (_, None) => (
            Verdict::NotMeasured(
                "no Node run at this load (it needs node and npm; TABLO_BENCH_PEER=node)".into(),
            ),
            None,
        ),
    };
    Line {
        target,
        tablo: tablo.map(|v| unit.show(v)),
        other: node.map(|v| format!("node {}", unit.show(v))),
        ratio,
        verdict,
    }
}

/// `value ≤ max`, with Node's figure beside it when there is one (for a
/// count such as frames lost, where a ratio means nothing).
pub fn at_most(target: &str, unit: Unit, max: f64, value: Option<f64>, node: Option<f64>) -> Line {
    let verdict = match value {
        Some(v) if v <= max => Verdict::Pass,
        Some(_) => Verdict::Fail,
        None => Verdict::NotMeasured("not measured in this run".into()),
    };
    Line {
        target: target.to_owned(),
        tablo: value.map(|v| unit.show(v)),
        other: Some(match node {
            Some(n) => format!("node {}", unit.show(n)),
            None => format!("bound {}", unit.show(max)),
        }),
        ratio: match (value, node) {
            (Some(v), None) if max > 0.0 => Some(v / max),
            _ => None,
        },
        verdict,
    }
}

impl Line {
    /// `target: WHAT | tablo X | node Y | RATIO | PASS`.
    pub fn text(&self) -> String {
        let mut out = format!("target: {}", self.target);
        let _ = write!(out, " | tablo {}", self.tablo.as_deref().unwrap_or("–"));
        let _ = write!(out, " | {}", self.other.as_deref().unwrap_or("–"));
        match self.ratio {
            Some(r) => {
                let _ = write!(out, " | {r:.2}×");
            }
            None => out.push_str(" | –"),
        }
        match &self.verdict {
            Verdict::Pass => out.push_str(" | PASS"),
            Verdict::Fail => out.push_str(" | FAIL"),
            Verdict::NotMeasured(why) => {
                let _ = write!(out, " | NOT MEASURED: {why}");
            }
        }
        out
    }
}

/// Prints `lines` under a heading, then a count of passes and fails.
pub fn print(heading: &str, lines: &[Line]) {
    println!("{heading}");
    for line in lines {
        println!("  {}", line.text());
    }
    let count = |v: &Verdict| lines.iter().filter(|l| &l.verdict == v).count();
    println!(
        "  {} passed, {} failed, {} not measured",
        count(&Verdict::Pass),
        count(&Verdict::Fail),
        lines.len() - count(&Verdict::Pass) - count(&Verdict::Fail)
    );
}

/// What one relay measured at one load (medians of its runs; `lost` the
/// most any run lost).
#[derive(Clone, Copy, Debug, Default)]
pub struct Relayed {
    /// Latency p50, ms.
    pub p50_ms: Option<f64>,
    /// Latency p99, ms.
    pub p99_ms: Option<f64>,
    /// Relay CPU per delivered frame, µs.
    pub cpu_us: Option<f64>,
    /// Frames lost, the most in any run.
    pub lost: Option<f64>,
}

/// Which relay a figure is from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The daemon, journal on.
    Tablo,
    /// The Node.js `ws` relay (benches/peer/relay.js).
    Node,
}

/// The relay's targets of issue 14, from `get(who, clients, msg/s)` (the
/// one-core configuration of the broadcast bench): at 1000 clients and
/// 100 msg/s p50 and p99 ≤ 0.7× and CPU per frame ≤ 0.6× Node's with none
/// lost; at 100 clients p50 and p99 ≤ 0.7×; at 1000 msg/s to 100 clients
/// CPU per frame ≤ 0.3×.
pub fn relay(get: impl Fn(Who, usize, u32) -> Option<Relayed>) -> Vec<Line> {
    let pair = |clients, rate| {
        (
            get(Who::Tablo, clients, rate).unwrap_or_default(),
            get(Who::Node, clients, rate).unwrap_or_default(),
        )
    };
    let mut lines = Vec::new();
    let (t, n) = pair(1000, 100);
    let load = "1000 clients, 100 msg/s, relay on 1 core";
    lines.push(against_node(load, "p50", Unit::Ms, 0.7, t.p50_ms, n.p50_ms));
    lines.push(against_node(load, "p99", Unit::Ms, 0.7, t.p99_ms, n.p99_ms));
    lines.push(against_node(
        load,
        "CPU per delivered frame",
        Unit::Us,
        0.6,
        t.cpu_us,
        n.cpu_us,
    ));
    lines.push(at_most(
        &format!("{load}: frames lost = 0"),
        Unit::Count,
        0.0,
        t.lost,
        n.lost,
    ));
    let (t, n) = pair(100, 100);
    let load = "100 clients, 100 msg/s, relay on 1 core";
    lines.push(against_node(load, "p50", Unit::Ms, 0.7, t.p50_ms, n.p50_ms));
    lines.push(against_node(load, "p99", Unit::Ms, 0.7, t.p99_ms, n.p99_ms));
    let (t, n) = pair(100, 1000);
    lines.push(against_node(
        "100 clients, 1000 msg/s, relay on 1 core",
        "CPU per delivered frame",
        Unit::Us,
        0.3,
        t.cpu_us,
        n.cpu_us,
    ));
    lines
}
