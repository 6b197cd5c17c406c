//! Running under systemd (systemd/README.md): the real binary with
//! `NOTIFY_SOCKET` pointing at a unix datagram socket the test owns, as
//! systemd's would. READY=1 after the listener is bound, WATCHDOG=1 pings that
//! stop when a loop is stuck, STATUS= lines with feed states, STOPPING=1 on
//! SIGTERM; and the unit file itself, checked by `systemd-analyze verify`.

use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::harness::{Daemon, FakeUpstream, Sandbox, TABLO};

/// docs/config.md §14: SIGTERM stops the daemon within 2 s.
const STOP_WITHIN: Duration = Duration::from_secs(2);

/// `WATCHDOG_USEC` for these tests: pings every 250 ms.
const WATCHDOG_USEC: &str = "500000";

/// The ping interval that asks for.
const PING_EVERY: Duration = Duration::from_millis(250);

/// How long a message the daemon owes may take: generous, since tests run
/// in parallel on a 2-core machine.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon calls a loop stuck after 3 s of silence (`STUCK_AFTER`); this
/// is how long a test waits for it to say so.
const STUCK_TIMEOUT: Duration = Duration::from_secs(15);

/// One datagram the daemon sent, and when it arrived.
struct Message {
    at: Instant,
    text: String,
}

/// A unix datagram socket standing in for systemd's notify socket; a
/// thread reads it and hands each datagram over with its arrival time.
struct NotifySocket {
    /// What goes into `NOTIFY_SOCKET`.
    address: String,
    messages: mpsc::Receiver<Message>,
    /// Received but passed over by a [`NotifySocket::wait_for`], oldest
    /// first: a later wait for something else still finds them.
    backlog: VecDeque<Message>,
    /// Everything received so far, for failure messages.
    seen: Vec<String>,
}

impl NotifySocket {
    /// A socket at `path`.
    fn bind(path: &Path) -> NotifySocket {
        let socket = UnixDatagram::bind(path)
            .unwrap_or_else(|e| panic!("bind a notify socket at {}: {e}", path.display()));
        NotifySocket::reading(socket, path.to_str().expect("UTF-8 temp path").to_owned())
    }

    /// A Linux abstract socket, named `@name` in `NOTIFY_SOCKET`.
    fn bind_abstract(name: &str) -> NotifySocket {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("an abstract socket name");
        let socket = UnixDatagram::bind_addr(&addr).expect("bind an abstract notify socket");
        NotifySocket::reading(socket, format!("@{name}"))
    }

    fn reading(socket: UnixDatagram, address: String) -> NotifySocket {
        let (tx, messages) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            // Ends when the test is done with the socket (send fails).
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if tx
                    .send(Message {
                        at: Instant::now(),
                        text,
                    })
                    .is_err()
                {
                    return;
                }
            }
        });
        NotifySocket {
            address,
            messages,
            backlog: VecDeque::new(),
            seen: Vec::new(),
        }
    }

    /// The next datagram (passed-over ones first) within `limit`, if any.
    fn next(&mut self, limit: Duration) -> Option<Message> {
        if let Some(message) = self.backlog.pop_front() {
            return Some(message);
        }
        self.receive(limit)
    }

    /// Sends `text` to this socket from the test itself and passes over
    /// everything received until it comes back (within `limit`). One
    /// socket's datagrams arrive in the order they were sent, so what is
    /// passed over is all the daemon sent before this call, however late the
    /// reader thread got to it, and all that comes next was sent after it.
    #[track_caller]
    fn skip_to_marker(&mut self, text: &str, limit: Duration) {
        let sender = UnixDatagram::unbound().expect("an unbound datagram socket");
        let sent = match self.address.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .expect("an abstract socket name");
                sender.send_to_addr(text.as_bytes(), &addr)
            }
            None => sender.send_to(text.as_bytes(), &self.address),
        };
        sent.unwrap_or_else(|e| panic!("send a marker to {}: {e}", self.address));
        self.backlog.clear();
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receive(left) {
                Some(message) if message.text == text => return,
                Some(_) => {}
                None => panic!(
                    "our own marker {text:?} did not come back within {limit:?}; received:\n{}",
                    self.seen.join("\n---\n")
                ),
            }
        }
    }

    /// The next datagram from the socket within `limit`, if any.
    fn receive(&mut self, limit: Duration) -> Option<Message> {
        let message = self.messages.recv_timeout(limit).ok()?;
        self.seen.push(message.text.clone());
        Some(message)
    }

    /// The first datagram for which `pred` holds, passed-over ones
    /// included; the others stay in the backlog. Fails after `limit` with
    /// what was seen.
    #[track_caller]
    fn wait_for(&mut self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> Message {
        if let Some(i) = self.backlog.iter().position(|m| pred(&m.text)) {
            return self.backlog.remove(i).expect("a found index");
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receive(left) {
                Some(message) if pred(&message.text) => return message,
                Some(message) => self.backlog.push_back(message),
                None => panic!(
                    "no {what} on the notify socket within {limit:?}; received:\n{}",
                    self.seen.join("\n---\n")
                ),
            }
        }
    }

    /// Waits for `n` more `WATCHDOG=1` pings; returns their arrival times.
    #[track_caller]
    fn pings(&mut self, n: usize, limit: Duration) -> Vec<Instant> {
        (0..n)
            .map(|_| self.wait_for("WATCHDOG=1", limit, is_ping).at)
            .collect()
    }
}

fn is_ping(text: &str) -> bool {
    text.lines().any(|line| line == "WATCHDOG=1")
}

/// The value of `KEY=` in one datagram.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}

/// Starts a daemon in `sandbox` with `env` set on top of the harness's
/// clean environment.
fn start(sandbox: Sandbox, config: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Daemon {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Daemon::start_in_with(sandbox, config, args, move |cmd| {
        cmd.envs(env);
    })
}

/// A sandbox and a notify socket inside it.
fn sandbox_with_socket() -> (Sandbox, NotifySocket) {
    let sandbox = Sandbox::new();
    let socket = NotifySocket::bind(&sandbox.path().join("notify"));
    (sandbox, socket)
}

fn is_ready(text: &str) -> bool {
    field(text, "READY") == Some("1")
}

/// A daemon (no config: the demo feed) with `NOTIFY_SOCKET` and `env`
/// set, once it has sent READY=1.
fn ready_daemon(env: &[(&str, &str)]) -> (Daemon, NotifySocket) {
    ready_daemon_with(&[], env)
}

/// [`ready_daemon`] with extra command-line arguments.
fn ready_daemon_with(args: &[&str], env: &[(&str, &str)]) -> (Daemon, NotifySocket) {
    let (sandbox, mut notify) = sandbox_with_socket();
    let address = notify.address.clone();
    let mut env = env.to_vec();
    env.push(("NOTIFY_SOCKET", &address));
    let daemon = start(sandbox, None, args, &env);
    notify.wait_for("READY=1", MESSAGE_TIMEOUT, is_ready);
    (daemon, notify)
}

#[test]
fn ready_after_bind_then_pings_status_and_stopping_on_sigterm() {
    let (sandbox, mut notify) = sandbox_with_socket();
    let mut daemon = start(
        sandbox,
        None,
        &[],
        &[
            ("NOTIFY_SOCKET", &notify.address.clone()),
            ("WATCHDOG_USEC", WATCHDOG_USEC),
        ],
    );

    // The first message is READY=1, and its status names the address the
    // listener was bound to: port 0 became a real port before it was sent.
    let ready = notify
        .next(MESSAGE_TIMEOUT)
        .unwrap_or_else(|| panic!("no READY=1; stderr:\n{}", daemon.stderr_tail()));
    assert!(is_ready(&ready.text), "{}", ready.text);
    let status = field(&ready.text, "STATUS").unwrap_or_default();
    let addr = daemon.addr();
    assert!(
        status.contains(&format!("listening on {addr}")) && status.contains("journal open"),
        "READY's status should name the bound address {addr} and the open journal: {status:?}"
    );
    let listen_file = std::fs::read_to_string(daemon.data_dir().join("tablo.listen"))
        .expect("tablo.listen exists once READY=1 is sent");
    let listed: SocketAddr = listen_file.trim().parse().expect("an address");
    assert_eq!(listed, addr);
    TcpStream::connect_timeout(&addr, MESSAGE_TIMEOUT).expect("the listener accepts");

    // Pings at half of WATCHDOG_USEC: not a timer gone wild, not absent.
    let pings = notify.pings(5, MESSAGE_TIMEOUT);
    let mean = (pings[4] - pings[0]) / 4;
    assert!(
        mean >= PING_EVERY * 4 / 5,
        "pings should come every {PING_EVERY:?}, not every {mean:?}"
    );

    // STATUS= names each feed and its state once the demo feed is up.
    let status = notify.wait_for("STATUS= with the demo feed up", MESSAGE_TIMEOUT, |text| {
        field(text, "STATUS").is_some_and(|s| s.contains("demo up"))
    });
    let line = field(&status.text, "STATUS").unwrap_or_default();
    assert!(
        line.contains("1/1 feeds up") && line.contains("journal ok"),
        "{line:?}"
    );

    daemon.sigterm();
    notify.wait_for("STOPPING=1", MESSAGE_TIMEOUT, |text| {
        field(text, "STOPPING") == Some("1")
    });
    let exit = daemon.wait_exit(STOP_WITHIN);
    assert_eq!(exit.code(), Some(0), "stderr:\n{}", daemon.stderr_tail());
    // The watchdog thread is stopped before the shutdown: no ping follows
    // STOPPING=1.
    while let Some(late) = notify.next(Duration::ZERO) {
        assert!(!is_ping(&late.text), "a ping after STOPPING=1");
    }
    // STATUS= is sent on change, not every second: a steady daemon sends
    // the same line once.
    let statuses: Vec<&String> = notify
        .seen
        .iter()
        .filter(|t| field(t, "STATUS").is_some() && !t.contains("READY=1"))
        .collect();
    let mut distinct = statuses.clone();
    distinct.dedup();
    assert_eq!(statuses, distinct, "the same STATUS= line was sent twice");
}

/// Injects a stall into `loop_name` and checks that the pings stop and the
/// log says which loop is stuck.
#[track_caller]
fn pings_stop_when_stuck(loop_name: &str) {
    // A board (as a PNG, the backend every machine has), so the renderer
    // runs and is watched.
    let (daemon, mut notify) = ready_daemon_with(
        &["--display", "png"],
        &[
            ("WATCHDOG_USEC", WATCHDOG_USEC),
            ("TABLO_TEST_STALL", loop_name),
        ],
    );
    daemon.wait_stderr(
        &format!("TABLO_TEST_STALL={loop_name}: the {loop_name} loop stops here"),
        MESSAGE_TIMEOUT,
    );
    let stuck = format!("the {loop_name} loop has not come round");
    daemon.wait_stderr(&stuck, STUCK_TIMEOUT);
    // Every ping sent before the verdict is ahead of this marker on the
    // socket; none may come after it, for several ping intervals.
    notify.skip_to_marker("TEST_MARKER=stuck-seen", MESSAGE_TIMEOUT);
    let quiet_until = Instant::now() + PING_EVERY * 6;
    while let Some(message) = notify.next(quiet_until.saturating_duration_since(Instant::now())) {
        assert!(
            !is_ping(&message.text),
            "a WATCHDOG=1 ping after the daemon said the {loop_name} loop is stuck; stderr:\n{}",
            daemon.stderr_tail()
        );
    }
    // Only the stalled loop stays stuck. On a loaded machine another loop
    // may be slow to come round at start-up (the renderer opens its screen
    // and loads its fonts before its first beat) and be called stuck for a
    // moment; it must then be said to run again.
    for other in ["hub", "journal", "renderer"]
        .iter()
        .filter(|l| **l != loop_name)
    {
        if daemon
            .stderr()
            .contains(&format!("the {other} loop has not come round"))
        {
            daemon.wait_stderr(&format!("the {other} loop is running again"), STUCK_TIMEOUT);
        }
    }
}

#[test]
fn pings_stop_when_the_hub_is_stuck() {
    pings_stop_when_stuck("hub");
}

#[test]
fn pings_stop_when_the_journal_writer_is_stuck() {
    pings_stop_when_stuck("journal");
}

#[test]
fn pings_stop_when_the_renderer_is_stuck() {
    pings_stop_when_stuck("renderer");
}

/// A config whose only feed is a fake upstream that never says a word, so
/// the daemon is idle once the feed is up.
fn silent_feed_config(upstream: &FakeUpstream, journal: &str) -> String {
    format!(
        "[[feed]]\nname = \"quiet\"\nformat = \"binance\"\nurl = \"{}\"\n\n[journal]\n{journal}\n",
        upstream.url("/ws")
    )
}

/// Sizes and modification times of every file under `dir`.
fn files_under(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let entry = entry.expect("a directory entry");
            let meta = entry.metadata().expect("file metadata");
            if meta.is_dir() {
                todo.push(entry.path());
            } else {
                let modified = meta.modified().expect("an mtime");
                files.insert(entry.path(), (meta.len(), modified));
            }
        }
    }
    files
}

/// A daemon with a watchdog whose only feed is up and silent, and the
/// journal's `flush_interval_ms` at `flush_ms`.
async fn quiet_daemon(flush_ms: u64) -> (FakeUpstream, Daemon, NotifySocket) {
    let upstream = FakeUpstream::start().await;
    let (sandbox, mut notify) = sandbox_with_socket();
    let config = silent_feed_config(&upstream, &format!("flush_interval_ms = {flush_ms}"));
    let daemon = start(
        sandbox,
        Some(&config),
        &[],
        &[
            ("NOTIFY_SOCKET", &notify.address.clone()),
            ("WATCHDOG_USEC", WATCHDOG_USEC),
        ],
    );
    upstream.wait_connection().await;
    notify.wait_for("STATUS= with the quiet feed up", MESSAGE_TIMEOUT, |text| {
        field(text, "STATUS").is_some_and(|s| s.contains("quiet up"))
    });
    (upstream, daemon, notify)
}

#[test]
fn an_idle_daemon_keeps_pinging_and_writes_nothing_to_the_journal() {
    smol::block_on(async {
        let (_upstream, daemon, mut notify) = quiet_daemon(100).await;
        // Wait (ping by ping) until the feed's status events are durable.
        let deadline = Instant::now() + MESSAGE_TIMEOUT;
        loop {
            let (_, body) = daemon.http_get("/healthz");
            let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            let journal = &health["journal"];
            if journal["last_seq"].as_u64().is_some()
                && journal["durable_seq"] == journal["last_seq"]
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the journal never caught up: {body}"
            );
            notify.pings(1, MESSAGE_TIMEOUT);
        }
        let journal_dir = daemon.data_dir().join("journal");
        let before = files_under(&journal_dir);
        assert!(!before.is_empty(), "no journal files");
        // Two seconds of pings: the writer came round 20 times meanwhile.
        notify.pings(8, MESSAGE_TIMEOUT);
        let after = files_under(&journal_dir);
        assert_eq!(
            before, after,
            "an idle daemon changed its journal files (SD-card wear)"
        );
        assert!(!daemon.stderr().contains("has not come round"));
    });
}

#[test]
fn a_long_flush_interval_still_wakes_the_journal_writer_for_the_watchdog() {
    smol::block_on(async {
        // Commits every 10 s; the writer must still beat every second, or
        // the watchdog would call it stuck after 3 s and stop pinging.
        let (_upstream, daemon, mut notify) = quiet_daemon(10_000).await;
        // 5 s of pings: past the 3 s after which a silent loop is stuck.
        let pings = notify.pings(20, MESSAGE_TIMEOUT);
        assert!(pings[19] - pings[0] >= Duration::from_millis(4500));
        assert!(
            !daemon.stderr().contains("has not come round"),
            "{}",
            daemon.stderr_tail()
        );
    });
}

#[test]
fn an_abstract_notify_socket_gets_ready() {
    let name = format!(
        "tablo-it-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let mut notify = NotifySocket::bind_abstract(&name);
    let daemon = start(
        Sandbox::new(),
        None,
        &[],
        &[("NOTIFY_SOCKET", &notify.address.clone())],
    );
    let ready = notify.wait_for("READY=1", MESSAGE_TIMEOUT, is_ready);
    assert!(ready.text.contains(&daemon.addr().to_string()));
    // No WATCHDOG_USEC: no watchdog, no pings.
    assert!(!daemon.stderr().contains("watchdog on"));
}

#[test]
fn malformed_notify_variables_are_warned_about_and_ignored() {
    let mut daemon = start(
        Sandbox::new(),
        None,
        &[],
        &[
            ("NOTIFY_SOCKET", "run/systemd/notify"),
            ("WATCHDOG_USEC", "soon"),
        ],
    );
    let stderr = daemon.stderr();
    for needle in [
        "NOTIFY_SOCKET=\"run/systemd/notify\"",
        "WATCHDOG_USEC=\"soon\"",
        "watchdog is off",
    ] {
        assert!(
            stderr.contains(needle),
            "stderr should say {needle:?}:\n{stderr}"
        );
    }
    // It runs as if started by hand.
    let (status, _) = daemon.http_get("/healthz");
    assert!(status == 200 || status == 503, "{status}");
    daemon.sigterm();
    assert_eq!(daemon.wait_exit(STOP_WITHIN).code(), Some(0));
}

#[test]
fn a_watchdog_meant_for_another_process_is_not_pinged() {
    // PID 1 is never the daemon: a wrapper's watchdog, not ours.
    let (daemon, mut notify) =
        ready_daemon(&[("WATCHDOG_USEC", WATCHDOG_USEC), ("WATCHDOG_PID", "1")]);
    let quiet_until = Instant::now() + PING_EVERY * 6;
    while let Some(message) = notify.next(quiet_until.saturating_duration_since(Instant::now())) {
        assert!(
            !is_ping(&message.text),
            "pinged a watchdog meant for PID 1; stderr:\n{}",
            daemon.stderr_tail()
        );
    }
}

// ---------------------------------------------------------------------------
// The unit file.
// ---------------------------------------------------------------------------

/// A unit file of the repository's `systemd/`.
fn unit_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(name)
}

/// Where `systemd-analyze` is, if installed.
fn systemd_analyze() -> Option<PathBuf> {
    ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[test]
fn the_unit_files_pass_systemd_analyze_verify() {
    let Some(analyze) = systemd_analyze() else {
        eprintln!(
            "SKIPPED: systemd-analyze is not installed (apt-get install systemd); .ci/run installs it"
        );
        return;
    };
    verify(&analyze, "tablo.service");
    verify(&analyze, "tablo-cage.service");
}

/// Runs `systemd-analyze verify` on a copy of `systemd/NAME` whose
/// ExecStart= runs the binary under test; fails on any complaint about it.
#[track_caller]
fn verify(analyze: &Path, name: &str) {
    let unit = std::fs::read_to_string(unit_file(name)).expect("a unit file in systemd/");
    // verify insists that ExecStart's binary exists: point it at the one
    // under test, and change nothing else.
    let exec_lines = unit.lines().filter(|l| l.starts_with("ExecStart=")).count();
    assert_eq!(exec_lines, 1, "one ExecStart= line expected");
    let rewritten: String = unit
        .lines()
        .map(|line| match line.strip_prefix("ExecStart=") {
            Some(cmd) => {
                let args = cmd.split_once(' ').map_or("", |(_, rest)| rest);
                format!("ExecStart={TABLO} {args}\n")
            }
            None => format!("{line}\n"),
        })
        .collect();
    let sandbox = Sandbox::new();
    let copy = sandbox.write(name, &rewritten);
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&copy)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Lines about other units (the host's own, in a container) are not
    // ours to fix; anything naming this unit is.
    let ours: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| l.contains(name))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify {}: {}\nours: {ours:#?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        copy.display(),
        out.status
    );
}

#[test]
fn the_unit_file_asks_for_what_the_daemon_does() {
    let unit = std::fs::read_to_string(unit_file("tablo.service")).expect("systemd/tablo.service");
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let has = |key: &str, value: &str| settings.iter().any(|(k, v)| *k == key && *v == value);
    for (key, value) in [
        ("Type", "notify"),
        ("Restart", "always"),
        ("StateDirectory", "tablo"),
        ("User", "tablo"),
        ("SupplementaryGroups", "video"),
        ("DeviceAllow", "/dev/fb0 rw"),
        ("NoNewPrivileges", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ] {
        assert!(has(key, value), "tablo.service should set {key}={value}");
    }
    let watchdog = settings
        .iter()
        .find(|(k, _)| *k == "WatchdogSec")
        .expect("WatchdogSec=");
    let secs: u64 = watchdog.1.trim_end_matches('s').parse().expect("seconds");
    // Pings stop 3 s after a loop is stuck; the interval must leave room
    // for a slow loop to come back before systemd acts.
    assert!(secs >= 10, "WatchdogSec={secs} is too tight");
    let nofile = settings
        .iter()
        .find(|(k, _)| *k == "LimitNOFILE")
        .expect("LimitNOFILE=");
    let nofile: u64 = nofile.1.parse().expect("a number");
    assert!(
        nofile >= 2048,
        "LimitNOFILE={nofile} is too low for 1000 clients"
    );
    let exec = settings
        .iter()
        .find(|(k, _)| *k == "ExecStart")
        .expect("ExecStart=");
    assert!(exec.1.contains(" run"), "ExecStart= should run the daemon");
}

// ---------------------------------------------------------------------------
// Logs under systemd.
// ---------------------------------------------------------------------------

#[test]
fn under_systemd_every_log_line_carries_a_journald_priority() {
    // systemd sets JOURNAL_STREAM to the device and inode of the stream it
    // connects to the service's stderr; `sh` does the same for the pipe the
    // test reads, then becomes tablo.
    let sandbox = Sandbox::new();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec "$@""#)
        .arg("sh")
        .arg(TABLO)
        .args(["run", "--listen", "127.0.0.1:0", "--display", "none"])
        .arg("--data-dir")
        .arg(sandbox.data_dir())
        .env("HOME", sandbox.path())
        .env("TABLO_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + MESSAGE_TIMEOUT;
    let listening = loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let done = line.contains("listening on");
                seen.push(line);
                if done {
                    break seen.last().cloned().unwrap_or_default();
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no `listening on` line; stderr:\n{}", seen.join("\n"));
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        listening.starts_with("<6>listening on"),
        "info is priority 6, with no timestamp (journald adds its own): {listening:?}"
    );
    for line in &seen {
        let priority = line
            .strip_prefix('<')
            .and_then(|rest| rest.split_once('>'))
            .map(|(p, _)| p);
        assert!(
            matches!(priority, Some("3" | "4" | "6" | "7")),
            "a line without a journald priority: {line:?}"
        );
    }
}

#[test]
fn steady_state_logs_nothing_per_message() {
    let (daemon, mut notify) =
        ready_daemon(&[("WATCHDOG_USEC", WATCHDOG_USEC), ("TABLO_LOG", "info")]);
    notify.wait_for("STATUS= with the demo feed up", MESSAGE_TIMEOUT, |text| {
        field(text, "STATUS").is_some_and(|s| s.contains("demo up"))
    });
    notify.pings(2, MESSAGE_TIMEOUT);
    let events = "tablo_events_in_total{channel=\"prices\"}";
    let (lines_before, ticks_before) = (daemon.stderr().lines().count(), daemon.metric(events));
    // Two seconds of the demo market: a few ticks a second.
    notify.pings(8, MESSAGE_TIMEOUT);
    let ticks = daemon.metric(events) - ticks_before;
    let stderr = daemon.stderr();
    assert!(
        ticks >= 3.0,
        "the demo feed should have ticked; {ticks} ticks"
    );
    assert_eq!(
        stderr.lines().count(),
        lines_before,
        "{ticks} ticks were logged about:\n{stderr}"
    );
}

#[test]
fn repeated_refusals_are_logged_once_per_interval() {
    smol::block_on(async {
        let daemon = Daemon::start_with_config(
            "[server]\nmax_clients = 1\ntokens = [{ token = \"right\" }]\n",
            &["--demo"],
        );
        let _only = daemon.bot().await;
        for _ in 0..20 {
            assert_eq!(daemon.upgrade_status("/ws?token=wrong"), 401);
            assert_eq!(daemon.upgrade_status("/ws"), 503);
        }
        daemon.sigterm();
        let stopped = daemon.into_stopped(STOP_WITHIN);
        let count = |needle: &str| {
            stopped
                .stderr
                .lines()
                .filter(|l| l.contains(needle))
                .count()
        };
        assert_eq!(count("unknown token"), 1, "{}", stopped.stderr);
        assert_eq!(count("clients already connected"), 1, "{}", stopped.stderr);
    });
}
