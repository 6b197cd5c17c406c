//! Switching the screen itself off and on outside its hours
//! (`[display] off`, docs/board.md §9), with the programs that do it:
//! `xset dpms force off|on` for an X screen (DPMS) and `cec-ctl` for a TV
//! on HDMI-CEC (from Debian's `x11-xserver-utils` and `v4l-utils`).
//!
//! The framebuffer's own blanking (`FBIOBLANK`) is an ioctl in `fbdev`;
//! this module runs the external programs. They run on a thread of their
//! own, [`PowerCommand`], with a timeout, so a slow CEC bus or a hung X
//! server never holds up the renderer: [`PowerCommand::set`] only records
//! what is wanted and wakes the thread, which runs the command for the
//! latest wish and skips the ones it overtook.
//!
//! Why `xset` rather than the DPMS extension through Xlib: a DPMS request
//! to a server without the extension is an X protocol error, which Xlib's
//! default handler answers by ending the process; a child process that
//! fails only fails, and needs no extra library loaded here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a power command may run before it is killed: a CEC message
/// waits for the bus and the TV's answer (a second or two, more on a busy
/// bus); ten seconds is far beyond a healthy answer and short enough that a
/// stuck program does not hold the next switch up for long.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the command thread looks whether its child has ended.
const CHILD_POLL: Duration = Duration::from_millis(50);

/// Which program switches the screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// `xset dpms force off` / `on`: the X screen's DPMS.
    Xset,
    /// `cec-ctl --playback --to 0 --standby` / `--image-view-on`: the TV
    /// (logical address 0) over HDMI-CEC.
    CecCtl,
}

impl Program {
    /// The program's file name, looked up on `PATH`.
    pub fn name(self) -> &'static str {
        match self {
            Program::Xset => "xset",
            Program::CecCtl => "cec-ctl",
        }
    }

    /// The Debian package that has it.
    pub fn package(self) -> &'static str {
        match self {
            Program::Xset => "x11-xserver-utils",
            Program::CecCtl => "v4l-utils",
        }
    }

    /// The arguments that switch the screen on or off.
    pub fn args(self, on: bool) -> &'static [&'static str] {
        match (self, on) {
            (Program::Xset, false) => &["dpms", "force", "off"],
            (Program::Xset, true) => &["dpms", "force", "on"],
            (Program::CecCtl, false) => &["--playback", "--to", "0", "--standby"],
            (Program::CecCtl, true) => &["--playback", "--to", "0", "--image-view-on"],
        }
    }
}

/// The first executable `name` on `path` (a `PATH`-style list).
pub fn find_program(name: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|file| is_executable(file))
}

/// Whether `file` is a regular file with an execute bit.
fn is_executable(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What the command thread is asked for: nothing yet, off, or on.
const WANT_NONE: u8 = 0;
/// Off.
const WANT_OFF: u8 = 1;
/// On.
const WANT_ON: u8 = 2;

/// A thread that runs one program to switch the screen, off the
/// renderer's path. Dropping it ends the thread once its command is done;
/// a command still running then is left to its timeout.
pub struct PowerCommand {
    program: Program,
    want: Arc<AtomicU8>,
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PowerCommand {
    /// Starts the thread for `program` at `file`.
    pub fn start(program: Program, file: PathBuf) -> std::io::Result<PowerCommand> {
        let want = Arc::new(AtomicU8::new(WANT_NONE));
        // One pending wake is enough: the thread reads the latest wish.
        let (wake, woken) = sync_channel(1);
        let thread = {
            let want = want.clone();
            std::thread::Builder::new()
                .name("screen-power".into())
                .spawn(move || run(program, &file, &want, woken))?
        };
        Ok(PowerCommand {
            program,
            want,
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// The program it runs.
    pub fn program(&self) -> Program {
        self.program
    }

    /// Asks for the screen on or off. Never blocks.
    pub fn set(&self, on: bool) {
        self.want
            .store(if on { WANT_ON } else { WANT_OFF }, Ordering::Relaxed);
        if let Some(wake) = &self.wake {
            match wake.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => {
                    log::warn!("the screen's power thread has ended; cannot switch the screen")
                }
            }
        }
    }
}

impl Drop for PowerCommand {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop.
        self.wake = None;
        if let Some(thread) = self.thread.take()
            && thread.is_finished()
        {
            let _ = thread.join();
        }
    }
}

/// The command thread: each wake, run the command for the latest wish if
/// it differs from the last one done.
fn run(program: Program, file: &Path, want: &AtomicU8, woken: Receiver<()>) {
    let mut done = WANT_NONE;
    while woken.recv().is_ok() {
        let wish = want.load(Ordering::Relaxed);
        if wish == done || wish == WANT_NONE {
            continue;
        }
        let on = wish == WANT_ON;
        match run_once(file, program.args(on), COMMAND_TIMEOUT) {
            Ok(()) => log::info!(
                "screen {}: {} {}",
                if on { "on" } else { "off" },
                program.name(),
                program.args(on).join(" ")
            ),
            Err(why) => log::warn!(
                "cannot switch the screen {} with {} {}: {why}",
                if on { "on" } else { "off" },
                file.display(),
                program.args(on).join(" ")
            ),
        }
        done = wish;
    }
}

/// Runs `file args` to its end or for at most `timeout` (then kills it);
/// the error says how it failed, with the start of its stderr. A program
/// that exits 0 but complains on stderr has failed too: `xset` does that
/// on a server without the DPMS extension.
pub fn run_once(file: &Path, args: &[&str], timeout: Duration) -> Result<(), String> {
    let mut child = Command::new(file)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start it: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s; killed", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(CHILD_POLL),
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    };
    let said = stderr_start(&mut child);
    match (status.success(), said) {
        (true, None) => Ok(()),
        (true, Some(said)) => Err(format!("it said {said:?}")),
        (false, said) => Err(format!(
            "{status}: {}",
            said.as_deref().unwrap_or("no message")
        )),
    }
}

/// The first line of an ended child's stderr (at most 200 bytes), if it
/// wrote any.
fn stderr_start(child: &mut Child) -> Option<String> {
    use std::io::Read;
    let mut text = Vec::with_capacity(200);
    if let Some(err) = child.stderr.as_mut() {
        let _ = err.take(200).read_to_end(&mut text);
    }
    let text = String::from_utf8_lossy(&text);
    let first = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(first.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A script in a temp dir that appends its arguments to `log`, then
    /// runs `tail` (a shell command).
    fn fake(dir: &Path, name: &str, tail: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let file = dir.join(name);
        let log = dir.join(format!("{name}.log"));
        std::fs::write(
            &file,
            format!("#!/bin/sh\necho \"$*\" >> '{}'\n{tail}\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        file
    }

    #[test]
    fn programs_are_found_on_the_path_only_when_executable() {
        let dir = tempfile::tempdir().unwrap();
        let script = fake(dir.path(), "cec-ctl", "");
        let plain = dir.path().join("xset");
        std::fs::write(&plain, "not a program").unwrap();
        let path = std::env::join_paths(["/nonexistent", dir.path().to_str().unwrap()]).unwrap();
        assert_eq!(find_program("cec-ctl", &path), Some(script));
        assert_eq!(find_program("xset", &path), None);
    }

    #[test]
    fn a_failing_or_hanging_command_is_an_error_that_says_how() {
        let dir = tempfile::tempdir().unwrap();
        let failing = fake(dir.path(), "xset", "echo 'no DPMS here' >&2; exit 3");
        let err = run_once(&failing, &["dpms", "force", "off"], COMMAND_TIMEOUT).unwrap_err();
        assert!(
            err.contains("exit status: 3") && err.contains("no DPMS here"),
            "{err}"
        );
        let grumbling = fake(
            dir.path(),
            "xset",
            "echo 'server does not have extension for dpms option' >&2",
        );
        let err = run_once(&grumbling, &["dpms", "force", "off"], COMMAND_TIMEOUT).unwrap_err();
        assert!(err.contains("does not have extension"), "{err}");
        let hanging = fake(dir.path(), "cec-ctl", "exec sleep 30");
        let started = Instant::now();
        let err = run_once(&hanging, &[], Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("killed"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn the_thread_runs_the_latest_wish_and_the_caller_never_waits() {
        let dir = tempfile::tempdir().unwrap();
        let file = fake(dir.path(), "cec-ctl", "sleep 0.2");
        let command = PowerCommand::start(Program::CecCtl, file).unwrap();
        let started = Instant::now();
        command.set(false);
        command.set(true);
        command.set(false);
        assert!(started.elapsed() < Duration::from_millis(100));
        let log = dir.path().join("cec-ctl.log");
        let deadline = Instant::now() + Duration::from_secs(10);
        let lines = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.lines().last() == Some("--playback --to 0 --standby") {
                break text;
            }
            assert!(Instant::now() < deadline, "{text:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        // The first wish may run before the others arrive; the last one
        // always runs, and nothing runs twice in a row.
        let lines: Vec<&str> = lines.lines().collect();
        assert!(lines.windows(2).all(|w| w[0] != w[1]), "{lines:?}");
        assert!(lines.len() <= 3, "{lines:?}");
    }
}
