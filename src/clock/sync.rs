//! Whether the wall clock is set: the kernel's NTP state, systemd-timesyncd's
//! flag file, and a floor no correct clock is below.
//!
//! A Pi has no real-time clock: it boots at its last saved time or at 1970,
//! and NTP sets it later, by a step of minutes or months. Until then every
//! wall-clock label (an event's `ts`, the board's clock) is wrong, so Tablo
//! says so: in `/healthz`, `stats`, a `status` event and on the board
//! (docs/protocol.md §6, docs/board.md).
//!
//! [`decide`] is the pure decision over a [`Probe`]; [`probe`] is the thin
//! edge that reads the kernel and the file system. Nothing here sets or
//! steps the clock.

use std::path::Path;
use std::time::Duration;

use super::wall_ms;

/// How often the daemon looks at the clock's state again. NTP takes from
/// seconds to minutes to set a clock after boot (or after the network is
/// back); a minute is soon enough for a label, and the probe costs one
/// system call and one `stat`.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// systemd-timesyncd creates this file once it has set the clock (it lives
/// in /run, so it goes away at every boot).
pub const TIMESYNC_FLAG: &str = "/run/systemd/timesync/synchronized";

/// 2026-01-01T00:00:00Z in ms. This build was made after it, so a wall clock
/// below it is certainly not set (a Pi that booted at 1970 or at an old
/// saved time), whatever the kernel says.
pub const PLAUSIBLE_AFTER_MS: u64 = 1_767_225_600_000;

/// What is known about the wall clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClockState {
    /// Set by NTP (or another time service): labels can be trusted.
    Synchronized,
    /// Not set, or no longer kept in step: labels may be far off.
    Unsynchronized,
    /// Nothing could tell (no `adjtimex`, no timesyncd).
    Unknown,
}

impl ClockState {
    /// The name on the wire: `synchronized`, `unsynchronized`, `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            ClockState::Synchronized => "synchronized",
            ClockState::Unsynchronized => "unsynchronized",
            ClockState::Unknown => "unknown",
        }
    }

    /// The state of a wire name.
    pub fn parse(s: &str) -> Option<ClockState> {
        match s {
            "synchronized" => Some(ClockState::Synchronized),
            "unsynchronized" => Some(ClockState::Unsynchronized),
            "unknown" => Some(ClockState::Unknown),
            _ => None,
        }
    }
}

/// The kernel's answer to `adjtimex` with no change requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// The return value: the clock state (`TIME_OK` … `TIME_ERROR`).
    pub state: i32,
    /// `timex.status`: `STA_*` bits.
    pub status: i32,
}

/// One look at the clock: everything [`decide`] needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The kernel's NTP state; `None` when `adjtimex` failed.
    pub kernel: Option<Kernel>,
    /// Whether [`TIMESYNC_FLAG`] exists.
    pub timesyncd: bool,
    /// The wall clock at the probe, ms since the Unix epoch.
    pub wall_ms: u64,
}

/// The clock's state from a probe: unsynchronized when the wall clock is
/// below [`PLAUSIBLE_AFTER_MS`]; synchronized when timesyncd says so or the
/// kernel does (neither `TIME_ERROR` nor `STA_UNSYNC`); unsynchronized when
/// the kernel says so and timesyncd does not contradict it; else unknown.
pub fn decide(probe: &Probe) -> ClockState {
    if probe.wall_ms < PLAUSIBLE_AFTER_MS {
        return ClockState::Unsynchronized;
    }
    if probe.timesyncd {
        return ClockState::Synchronized;
    }
    match probe.kernel {
        Some(k) if k.state == libc::TIME_ERROR || k.status & libc::STA_UNSYNC != 0 => {
            ClockState::Unsynchronized
        }
        Some(_) => ClockState::Synchronized,
        None => ClockState::Unknown,
    }
}

/// Reads the kernel's NTP state, the timesyncd flag and the wall clock.
pub fn probe() -> Probe {
    Probe {
        kernel: kernel(),
        timesyncd: Path::new(TIMESYNC_FLAG).exists(),
        wall_ms: wall_ms(),
    }
}

/// Replaces [`check`]'s answer when set to a state's name
/// (`synchronized`, `unsynchronized`, `unknown`): integration tests run on
/// machines whose clock state they cannot set, and drive the screen
/// schedule (which waits for a synchronized clock) through it.
pub const TEST_STATE_VAR: &str = "TABLO_TEST_CLOCK_STATE";

/// [`decide`] on a fresh [`probe`] (or the state [`TEST_STATE_VAR`]
/// names).
pub fn check() -> ClockState {
    if let Some(state) = std::env::var(TEST_STATE_VAR)
        .ok()
        .and_then(|v| ClockState::parse(&v))
    {
        return state;
    }
    decide(&probe())
}

/// `adjtimex` with `modes` 0: reads, changes nothing, needs no privilege.
fn kernel() -> Option<Kernel> {
    // SAFETY: a zeroed timex is a valid value of a plain C struct; with
    // `modes` 0 adjtimex only writes into it.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, exclusively borrowed timex for the call.
    let state = unsafe { libc::adjtimex(&mut tx) };
    (state >= 0).then_some(Kernel {
        state,
        status: tx.status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_780_000_000_000;

    #[track_caller]
    fn check(kernel: Option<(i32, i32)>, timesyncd: bool, wall_ms: u64, want: ClockState) {
        let probe = Probe {
            kernel: kernel.map(|(state, status)| Kernel { state, status }),
            timesyncd,
            wall_ms,
        };
        assert_eq!(decide(&probe), want, "{probe:?}");
    }

    #[test]
    fn the_kernel_and_timesyncd_decide_and_1970_is_never_set() {
        use ClockState::*;
        let ok = libc::TIME_OK;
        check(Some((ok, 0)), false, NOW, Synchronized);
        check(Some((libc::TIME_ERROR, 0)), false, NOW, Unsynchronized);
        check(Some((ok, libc::STA_UNSYNC)), false, NOW, Unsynchronized);
        check(
            Some((libc::TIME_ERROR, libc::STA_UNSYNC)),
            true,
            NOW,
            Synchronized,
        );
        check(None, true, NOW, Synchronized);
        check(None, false, NOW, Unknown);
        // A Pi that booted at 1970, or at a time saved long ago.
        check(Some((ok, 0)), true, 0, Unsynchronized);
        check(None, false, PLAUSIBLE_AFTER_MS - 1, Unsynchronized);
    }

    #[test]
    fn names_round_trip() {
        for state in [
            ClockState::Synchronized,
            ClockState::Unsynchronized,
            ClockState::Unknown,
        ] {
            assert_eq!(ClockState::parse(state.name()), Some(state));
        }
        assert_eq!(ClockState::parse("set"), None);
    }

    #[test]
    fn the_probe_reads_this_machine_without_failing() {
        // Whatever this machine's clock is, probing it works and is decided.
        let p = probe();
        assert!(p.wall_ms > 0);
        let _ = decide(&p);
    }
}
