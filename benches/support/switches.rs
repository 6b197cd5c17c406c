//! Context switches of a process, per thread name, from
//! `/proc/<pid>/task/*/status` (`voluntary_ctxt_switches`: the thread
//! blocked, i.e. a wake-up it waited for; `nonvoluntary_ctxt_switches`: the
//! scheduler took the CPU away), and each thread's CPU time (utime + stime
//! from `/proc/<pid>/task/*/stat`, in clock ticks), so a split of the work
//! over threads shows. Read before and after a measured window,
//! the difference divided by the events of the window says how many thread
//! hops an event costs, and on which thread.
//!
//! Threads are grouped by name (`/proc/<pid>/task/<tid>/comm` as `Name:`
//! shows it), so the shard threads of one kind sum up; a thread that was
//! started or ended inside the window counts with what it had at the reading
//! that saw it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Switch counts per thread id, with the thread's name.
#[derive(Clone, Debug, Default)]
pub struct Switches {
    threads: BTreeMap<u32, Counts>,
}

/// One thread's counters.
#[derive(Clone, Debug, Default)]
struct Counts {
    name: String,
    voluntary: u64,
    involuntary: u64,
    /// utime + stime, clock ticks.
    ticks: u64,
}

/// The switches of one thread name over a window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PerName {
    /// The thread name (`tablo`, `smol-0`, `async-io`, `journal`, …).
    pub name: String,
    /// Threads of that name seen.
    pub threads: usize,
    /// Voluntary switches in the window.
    pub voluntary: u64,
    /// Non-voluntary switches in the window.
    pub involuntary: u64,
    /// CPU time in the window, clock ticks (`sysconf(_SC_CLK_TCK)`).
    pub ticks: u64,
}

impl Switches {
    /// Reads every thread of `pid` now; empty when the process is gone.
    pub fn read(pid: u32) -> Switches {
        let mut threads = BTreeMap::new();
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Switches { threads };
        };
        for entry in dir.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
                continue;
            };
            let mut counts = Counts::default();
            for line in status.lines() {
                let Some((key, value)) = line.split_once(':') else {
                    continue;
                };
                let value = value.trim();
                match key {
                    "Name" => counts.name = value.to_owned(),
                    "voluntary_ctxt_switches" => counts.voluntary = value.parse().unwrap_or(0),
                    "nonvoluntary_ctxt_switches" => {
                        counts.involuntary = value.parse().unwrap_or(0);
                    }
                    _ => {}
                }
            }
            // Fields 14 and 15 of stat, counted after the `(comm)`, which
            // may hold spaces.
            counts.ticks = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1;
                    let fields: Vec<&str> = rest.split_whitespace().collect();
                    let utime: u64 = fields.get(11)?.parse().ok()?;
                    let stime: u64 = fields.get(12)?.parse().ok()?;
                    Some(utime + stime)
                })
                .unwrap_or(0);
            threads.insert(tid, counts);
        }
        Switches { threads }
    }

    /// What happened between `self` (before) and `after`, per thread name,
    /// busiest first.
    pub fn since(&self, after: &Switches) -> Vec<PerName> {
        let mut names: BTreeMap<&str, PerName> = BTreeMap::new();
        for (tid, now) in &after.threads {
            let then = self.threads.get(tid);
            let entry = names.entry(&now.name).or_insert_with(|| PerName {
                name: now.name.clone(),
                ..PerName::default()
            });
            entry.threads += 1;
            entry.voluntary += now.voluntary - then.map_or(0, |t| t.voluntary.min(now.voluntary));
            entry.involuntary +=
                now.involuntary - then.map_or(0, |t| t.involuntary.min(now.involuntary));
            entry.ticks += now.ticks - then.map_or(0, |t| t.ticks.min(now.ticks));
        }
        let mut out: Vec<PerName> = names.into_values().collect();
        out.sort_by_key(|n| std::cmp::Reverse(n.voluntary + n.involuntary));
        out
    }
}

/// Adds one window's figures into a running total (several runs of one
/// configuration).
pub fn accumulate(total: &mut Vec<PerName>, window: &[PerName]) {
    for w in window {
        match total.iter_mut().find(|t| t.name == w.name) {
            Some(t) => {
                t.threads = t.threads.max(w.threads);
                t.voluntary += w.voluntary;
                t.involuntary += w.involuntary;
                t.ticks += w.ticks;
            }
            None => total.push(w.clone()),
        }
    }
    total.sort_by_key(|n| std::cmp::Reverse(n.voluntary + n.involuntary));
}

/// One line per thread name: voluntary + non-voluntary switches per
/// delivered frame and per upstream message, and a total line.
/// `tick_ms` is the length of a clock tick in ms (10 at 100 Hz).
pub fn describe(per_name: &[PerName], delivered: u64, upstream: u64, tick_ms: f64) -> String {
    let mut out = String::new();
    let per = |n: u64, of: u64| n as f64 / of.max(1) as f64;
    let mut vol = 0;
    let mut invol = 0;
    let mut ticks = 0;
    for t in per_name {
        vol += t.voluntary;
        invol += t.involuntary;
        ticks += t.ticks;
        let threads = if t.threads > 1 {
            format!(" ×{}", t.threads)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "    {:<16} vol {:>8} invol {:>7} | per frame {:.4} + {:.4} | per upstream msg {:.2} + {:.2} | CPU {:.0} ms",
            format!("{}{threads}", t.name),
            t.voluntary,
            t.involuntary,
            per(t.voluntary, delivered),
            per(t.involuntary, delivered),
            per(t.voluntary, upstream),
            per(t.involuntary, upstream),
            t.ticks as f64 * tick_ms,
        );
    }
    let _ = writeln!(
        out,
        "    {:<16} vol {vol:>8} invol {invol:>7} | per frame {:.4} + {:.4} | per upstream msg {:.2} + {:.2} | CPU {:.0} ms",
        "all threads",
        per(vol, delivered),
        per(invol, delivered),
        per(vol, upstream),
        per(invol, upstream),
        ticks as f64 * tick_ms,
    );
    out
}
