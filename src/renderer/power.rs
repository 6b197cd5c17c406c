//! The screen's schedule in the render loop: when to go dark, when to wake,
//! and how (docs/board.md §9).
//!
//! [`Power::turn`] runs on every turn of the loop and is cheap until
//! something is due: it asks [`schedule::verdict::decide`] again only at
//! the next change (a monotonic deadline made from the schedule's wall-time
//! answer), when the wall clock steps, when the clock's state changes, and
//! when a waking alert comes or goes. Going dark blanks the framebuffer
//! (`FBIOBLANK`) where there is one, else shows a black frame, and for
//! `off = "dpms"` or `"cec"` also asks [`PowerCommand`] to switch the
//! display or the TV off; waking undoes both. The state goes to the
//! sideband for `/healthz` and `/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;

use crate::board::BoardState;
use crate::board::feed::Sideband;
use crate::board::screen::Darkness;
use crate::clock::{self, ClockState};
use crate::config::{DisplayConfig, ScreenOff, WakeOn};
use crate::display::power::{PowerCommand, Program, find_program};
use crate::display::{Choice, Screen};
use crate::schedule::verdict::{Facts, Reason, Verdict, decide};
use crate::schedule::{Schedule, zone};

/// The longest the verdict goes unasked, even with no change due: the
/// system's time zone may be changed under a running daemon (jiff reads
/// it again every few minutes), and NTP slewing moves the wall clock a
/// little against the monotonic deadline. An hour is cheap and soon enough
/// for both.
const RECHECK_AT_LEAST: Duration = Duration::from_secs(3600);

/// The screen's schedule and the means to switch it. See the module docs.
pub(super) struct Power {
    plan: Plan,
    wake_on: WakeOn,
    command: Option<PowerCommand>,
    shared: Arc<Sideband>,
    darkness: Darkness,
    /// The clock's state, probed every `clock::sync::CHECK_INTERVAL`.
    clock_unsynchronized: bool,
    clock_probed: Option<Instant>,
    /// The framebuffer is blanked by `FBIOBLANK`.
    blanked: bool,
    /// A failed blank has been logged (once a run).
    blank_warned: bool,
}

impl Power {
    /// The schedule of `config` for the screen `choice` picked, reporting
    /// to `shared`. Logs what will happen outside the hours, and why a
    /// configured `off` cannot be had here.
    pub(super) fn new(config: &DisplayConfig, choice: &Choice, shared: Arc<Sideband>) -> Power {
        let schedule = config.schedule.clone();
        let mut darkness = match choice {
            Choice::Fbdev(_) => Darkness::Fbioblank,
            _ => Darkness::Black,
        };
        let mut command = None;
        if !schedule.is_empty() {
            let program = match (config.off, choice) {
                (ScreenOff::Blank, _) => None,
                (ScreenOff::Dpms, Choice::Window) => Some(Program::Xset),
                (ScreenOff::Dpms, _) => {
                    log::warn!(
                        "[display] off = \"dpms\" is for the window display mode (X11), not {}; \
                         blanking the screen instead",
                        choice.name()
                    );
                    None
                }
                (ScreenOff::Cec, _) => Some(Program::CecCtl),
            };
            if let Some(program) = program {
                command = start_command(program);
                if command.is_some() {
                    darkness = match program {
                        Program::Xset => Darkness::Dpms,
                        Program::CecCtl => Darkness::Cec,
                    };
                }
            }
            let entries: Vec<String> = schedule.entries().iter().map(|e| e.to_string()).collect();
            log::info!(
                "screen schedule: on {} (local time, now {}); outside it: {}; wakes on: {}",
                entries.join(", "),
                zone::label(&zone::local(), zone::timestamp(clock::wall_ms())),
                darkness.name(),
                config.wake_on.name()
            );
        }
        shared.screen.configure(!schedule.is_empty(), darkness);
        Power {
            plan: Plan::new(schedule, Instant::now()),
            wake_on: config.wake_on,
            command,
            shared,
            darkness,
            clock_unsynchronized: false,
            clock_probed: None,
            blanked: false,
            blank_warned: false,
        }
    }

    /// Whether the screen is dark now.
    pub(super) fn dark(&self) -> bool {
        self.plan.dark()
    }

    /// Whether the dark screen is a black frame (not blanked by the
    /// device), which a window must be shown again when it loses it.
    pub(super) fn painted_black(&self) -> bool {
        self.dark() && !self.blanked
    }

    /// How long the loop may sleep before the verdict must be asked again.
    pub(super) fn wait(&self, now: Instant) -> Duration {
        self.plan.recheck.saturating_duration_since(now)
    }

    /// One turn of the render loop at `now` (monotonic), `wall_ms` (the
    /// wall clock) and `board_ms` (the board's time, for the alerts);
    /// `stepped` when the wall clock stepped since the last turn. Returns
    /// `Some(on)` when the screen must switch (the first verdict always
    /// does, so a screen left dark by an earlier run wakes).
    pub(super) fn turn(
        &mut self,
        now: Instant,
        wall_ms: u64,
        stepped: bool,
        state: &BoardState,
        board_ms: u64,
    ) -> Option<bool> {
        if self.plan.schedule.is_empty() {
            return None;
        }
        if self
            .clock_probed
            .is_none_or(|t| now.saturating_duration_since(t) >= clock::sync::CHECK_INTERVAL)
        {
            self.clock_unsynchronized = clock::sync::check() == ClockState::Unsynchronized;
            self.clock_probed = Some(now);
        }
        let facts = Facts {
            clock_unsynchronized: self.clock_unsynchronized,
            waking_alert: self.wake_on == WakeOn::Critical
                && state.critical_alerts(board_ms).next().is_some(),
        };
        if !self.plan.due(now, stepped, facts) {
            return None;
        }
        let local = zone::local();
        let asked = self.plan.ask(now, wall_ms, facts, &local);
        let verdict = asked.verdict;
        let offset_s = verdict
            .next_change
            .map_or(0, |t| local.to_offset(t).seconds());
        self.shared.screen.set(&verdict, asked.next_at, offset_s);
        let switch = asked.previous.is_none_or(|p| p.on != verdict.on);
        if switch || asked.previous.is_some_and(|p| p.reason != verdict.reason) {
            log::info!("{}", describe(&verdict));
        }
        switch.then_some(verdict.on)
    }

    /// The screen went dark: blanks it (or says a black frame must do)
    /// and asks the command to switch the display off. Returns whether
    /// the caller must show a black frame.
    pub(super) fn went_dark(&mut self, screen: &mut dyn Screen) -> bool {
        if let Some(command) = &self.command {
            command.set(false);
        }
        match screen.set_blanked(true) {
            Ok(true) => {
                self.blanked = true;
                false
            }
            Ok(false) => true,
            Err(e) => {
                if !self.blank_warned {
                    log::warn!("{e}; showing a black frame instead (no frame is drawn while dark)");
                    self.blank_warned = true;
                }
                if self.darkness == Darkness::Fbioblank {
                    self.darkness = Darkness::Black;
                    self.shared.screen.configure(true, Darkness::Black);
                }
                true
            }
        }
    }

    /// The screen woke: unblanks it and asks the command to switch the
    /// display on. At start-up too, for a screen an earlier run left dark.
    pub(super) fn woke(&mut self, screen: &mut dyn Screen) {
        if let Some(command) = &self.command {
            command.set(true);
        }
        let was_blanked = std::mem::take(&mut self.blanked);
        match screen.set_blanked(false) {
            Ok(_) => {}
            Err(e) if was_blanked => log::warn!("{e}"),
            // A plain file, or a device that cannot blank: nothing to undo.
            Err(e) => log::debug!("{e}"),
        }
    }
}

/// When to ask the schedule, and what it said last: the pure part of
/// [`Power`], with the clocks and the zone passed in.
#[derive(Debug)]
struct Plan {
    schedule: Schedule,
    /// The last verdict; `None` before the first.
    verdict: Option<Verdict>,
    /// The facts it was decided on.
    facts: Facts,
    /// When to ask again (monotonic).
    recheck: Instant,
}

/// What [`Plan::ask`] found.
#[derive(Clone, Copy, Debug)]
struct Asked {
    verdict: Verdict,
    /// The verdict before it.
    previous: Option<Verdict>,
    /// The next change as a monotonic deadline.
    next_at: Option<Instant>,
}

impl Plan {
    fn new(schedule: Schedule, now: Instant) -> Plan {
        Plan {
            schedule,
            verdict: None,
            facts: Facts {
                clock_unsynchronized: false,
                waking_alert: false,
            },
            recheck: now,
        }
    }

    fn dark(&self) -> bool {
        self.verdict.is_some_and(|v| !v.on)
    }

    /// Whether the verdict must be asked again at `now`: never asked, the
    /// deadline has come, the wall clock `stepped`, or the facts changed.
    fn due(&self, now: Instant, stepped: bool, facts: Facts) -> bool {
        self.verdict.is_none() || stepped || facts != self.facts || now >= self.recheck
    }

    /// Asks the schedule at `now` (monotonic) and `wall_ms` (the wall
    /// clock) in `zone`. The wall-clock answer becomes a monotonic
    /// deadline; a step of the wall clock before it comes makes a new one.
    fn ask(&mut self, now: Instant, wall_ms: u64, facts: Facts, zone: &TimeZone) -> Asked {
        let verdict = decide(&self.schedule, zone, zone::timestamp(wall_ms), facts);
        let next_at = verdict
            .next_change
            .map(|t| now + Duration::from_millis(zone::millis(t).saturating_sub(wall_ms)));
        self.recheck = next_at
            .unwrap_or(now + RECHECK_AT_LEAST)
            .min(now + RECHECK_AT_LEAST);
        self.facts = facts;
        Asked {
            verdict,
            previous: self.verdict.replace(verdict),
            next_at,
        }
    }
}

/// The log line of a verdict: `screen off (schedule); on again at …`.
fn describe(verdict: &Verdict) -> String {
    let state = if verdict.on { "on" } else { "off" };
    let why = match verdict.reason {
        Reason::NoSchedule => "no schedule",
        Reason::Schedule if verdict.on => "in the schedule's hours",
        Reason::Schedule => "outside the schedule's hours",
        Reason::Alert => "a critical alert is on the band",
        Reason::ClockUnsynchronized => {
            "the wall clock is not synchronized, so the hours cannot be told"
        }
    };
    match verdict.next_change {
        Some(at) => format!(
            "screen {state} ({why}); next change at {}",
            zone::label(&zone::local(), at)
        ),
        None => format!("screen {state} ({why})"),
    }
}

/// The thread that runs `program`, when the program is installed; else
/// `None`, with a log line that names the package.
fn start_command(program: Program) -> Option<PowerCommand> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(file) = find_program(program.name(), &path) else {
        log::warn!(
            "{} is not installed (apt-get install {}); outside the schedule's hours the board \
             only goes black",
            program.name(),
            program.package()
        );
        return None;
    };
    match PowerCommand::start(program, file) {
        Ok(command) => Some(command),
        Err(e) => {
            log::warn!("cannot start the screen's power thread: {e}; the board only goes black");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 86_400_000;

    /// Berlin's rules, as the schedule's own tests use them.
    fn berlin() -> TimeZone {
        TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
    }

    /// Berlin local time `text` as wall ms.
    fn wall(text: &str) -> u64 {
        let local: jiff::civil::DateTime = text.parse().unwrap();
        zone::millis(berlin().to_ambiguous_timestamp(local).compatible().unwrap())
    }

    const CALM: Facts = Facts {
        clock_unsynchronized: false,
        waking_alert: false,
    };

    /// One turn: `Some(on)` when the plan switched the screen.
    fn turn(
        plan: &mut Plan,
        now: Instant,
        wall_ms: u64,
        stepped: bool,
        facts: Facts,
    ) -> Option<bool> {
        if !plan.due(now, stepped, facts) {
            return None;
        }
        let asked = plan.ask(now, wall_ms, facts, &berlin());
        asked
            .previous
            .is_none_or(|p| p.on != asked.verdict.on)
            .then_some(asked.verdict.on)
    }

    #[test]
    fn closing_time_is_a_monotonic_deadline_from_the_wall_clocks_answer() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let schedule = Schedule::parse(["Mon-Fri 08:00-20:00"]).unwrap();
        let mut plan = Plan::new(schedule, t0);
        let w0 = wall("2026-12-11T19:59:58");
        assert_eq!(
            turn(&mut plan, at(0), w0, false, CALM),
            Some(true),
            "first verdict"
        );
        assert_eq!(plan.recheck, at(2_000));
        // Nothing to ask before the deadline, however often the loop turns.
        assert_eq!(turn(&mut plan, at(1_999), w0 + 1_999, false, CALM), None);
        assert!(!plan.due(at(1_999), false, CALM));
        assert_eq!(
            turn(&mut plan, at(2_000), w0 + 2_000, false, CALM),
            Some(false)
        );
        assert!(plan.dark());
        // Dark until Monday 08:00; the wait is capped at an hour.
        assert_eq!(plan.recheck, at(2_000) + RECHECK_AT_LEAST);
        let hour = RECHECK_AT_LEAST.as_millis() as u64;
        assert_eq!(
            turn(&mut plan, at(2_000 + hour), w0 + 2_000 + hour, false, CALM),
            None
        );
        assert!(plan.dark());
    }

    #[test]
    fn a_step_of_90_days_either_way_is_asked_again_at_once() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let schedule = Schedule::parse(["Mon-Fri 08:00-20:00"]).unwrap();
        let mut plan = Plan::new(schedule, t0);
        // Friday noon: on, next change at 20:00.
        let w0 = wall("2026-12-11T12:00");
        assert_eq!(turn(&mut plan, at(0), w0, false, CALM), Some(true));
        // NTP steps the clock 90 days ahead, to a Thursday at 12:00 + 1 s:
        // still open, with a new deadline for 20:00 that day.
        let ahead = w0 + 90 * DAY_MS + 1_000;
        assert!(plan.due(at(1_000), true, CALM));
        let asked = plan.ask(at(1_000), ahead, CALM, &berlin());
        assert!(asked.verdict.on);
        assert_eq!(
            asked.next_at,
            Some(at(1_000) + Duration::from_millis(8 * 3_600_000 - 1_000))
        );
        // And 90 days back from the first reading, to a Saturday: dark at once,
        // without waiting for the old deadline.
        let behind = w0 - 90 * DAY_MS + 2_000;
        assert_eq!(turn(&mut plan, at(2_000), behind, true, CALM), Some(false));
        assert!(plan.dark());
    }

    #[test]
    fn an_unsynchronized_clock_or_a_waking_alert_lights_a_dark_screen() {
        let t0 = Instant::now();
        let schedule = Schedule::parse(["Mon-Fri 08:00-20:00"]).unwrap();
        let mut plan = Plan::new(schedule, t0);
        let night = wall("2026-12-11T23:00");
        assert_eq!(turn(&mut plan, t0, night, false, CALM), Some(false));
        let unsynchronized = Facts {
            clock_unsynchronized: true,
            ..CALM
        };
        assert_eq!(
            turn(&mut plan, t0, night, false, unsynchronized),
            Some(true)
        );
        assert_eq!(turn(&mut plan, t0, night, false, CALM), Some(false));
        let alert = Facts {
            waking_alert: true,
            ..CALM
        };
        assert_eq!(turn(&mut plan, t0, night, false, alert), Some(true));
        assert_eq!(
            turn(&mut plan, t0, night, false, CALM),
            Some(false),
            "the alert left"
        );
    }
}
