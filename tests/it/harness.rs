//! The test harness: the real `tablo` binary in a temp dir, a fake upstream
//! WebSocket server, a WebSocket client and a raw HTTP client.
//!
//! Nothing here sleeps to wait for something. Every wait is on an event (a
//! log line, a frame, a connection, a process exit) with a deadline, and a
//! missed deadline fails the test with what was seen so far: the last frames
//! and the tail of the daemon's stderr.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::frame::Frame;
use async_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use futures_util::StreamExt;
use serde_json::{Value, json};
use smol::channel::{Receiver, Sender};
use smol::net::{TcpListener, TcpStream};
use smol::{Task, Timer};
use tempfile::TempDir;

/// The binary under test.
pub const TABLO: &str = env!("CARGO_BIN_EXE_tablo");

/// The version `--version`, `hello` and `server` must report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long a daemon may take to log its listening address: generous, since
/// tests run in parallel on a 2-core machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client waits for a frame the daemon owes it.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a one-shot command (`check`, `--version`, a bad `run`) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a fake upstream waits for the daemon to connect. Covers the
/// daemon's reconnect backoff (0.5 s doubling, full jitter) for a few rounds.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an HTTP request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// How many stderr lines a failure message shows.
const LOG_TAIL: usize = 60;

/// How long a flood waits for an answer once rate-limited before it sends
/// the next op: short, so that even a daemon that drops limited ops without
/// an answer sees 100 ops/s, twice the limit.
const FLOOD_IDLE: Duration = Duration::from_millis(10);

/// How many recent frames a client keeps for failure messages.
const SEEN_FRAMES: usize = 20;

/// `f`, or `None` if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> Option<T> {
    smol::future::or(async { Some(f.await) }, async {
        Timer::after(limit).await;
        None
    })
    .await
}

/// A temp dir for one test, and commands that run `tablo` inside it with a
/// clean environment: no systemd variables, no display, no user config.
pub struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    /// A fresh, empty sandbox.
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("create a temp dir"),
        }
    }

    /// The sandbox's root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The data dir daemons in this sandbox use.
    pub fn data_dir(&self) -> PathBuf {
        self.path().join("data")
    }

    /// Writes `contents` to `name` in the sandbox and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, contents).expect("write a file in the sandbox");
        path
    }

    /// `program` (`tablo`, or an emulator running one) with a clean
    /// environment rooted in the sandbox.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("TABLO_LOG", "debug")
            .env("HOME", self.path())
            .env("XDG_STATE_HOME", self.path().join("xdg-state"))
            .env("XDG_CONFIG_HOME", self.path().join("xdg-config"))
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("STATE_DIRECTORY")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `tablo ARGS` to completion (killing it after a deadline) and
    /// returns what it printed.
    pub fn tablo(&self, args: &[&str]) -> Output {
        self.run(TABLO, args)
    }

    /// Runs `program ARGS` like [`Sandbox::tablo`]: for a `tablo` of
    /// another architecture under qemu-user.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut cmd = self.command(program);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut proc = Proc::spawn(cmd);
        let stdout = read_all_in_background(proc.child.stdout.take().expect("piped stdout"));
        let stderr = read_all_in_background(proc.child.stderr.take().expect("piped stderr"));
        let status = proc.wait_timeout(COMMAND_TIMEOUT);
        let timed_out = status.is_none();
        let status = status.unwrap_or_else(|| proc.kill());
        let output = Output {
            args: args.iter().map(|a| a.to_string()).collect(),
            status,
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        };
        assert!(
            !timed_out,
            "`tablo {}` did not exit within {COMMAND_TIMEOUT:?}; killed it\n{output}",
            output.args.join(" ")
        );
        output
    }
}

fn read_all_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error only truncates what a failure message shows.
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// What a one-shot `tablo` command did.
pub struct Output {
    args: Vec<String>,
    /// How it exited.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl Output {
    /// Fails unless the command exited with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Output {
        assert_eq!(
            self.status.code(),
            Some(code),
            "`tablo {}` should exit with {code}\n{self}",
            self.args.join(" ")
        );
        self
    }

    /// Fails unless stderr contains `needle`.
    #[track_caller]
    pub fn assert_stderr_has(&self, needle: &str) -> &Output {
        assert!(
            self.stderr.contains(needle),
            "`tablo {}`: stderr should contain {needle:?}\n{self}",
            self.args.join(" ")
        );
        self
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// A child process whose exit can be awaited with a deadline, killed on drop.
struct Proc {
    child: Child,
    /// Fires (or disconnects) once the child has exited; it is then a zombie
    /// until `child.wait()` reaps it, so its pid cannot be reused under us.
    exited: mpsc::Receiver<()>,
    status: Option<ExitStatus>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {TABLO}: {e}"));
        let pid = child.id();
        let (tx, exited) = mpsc::channel();
        thread::spawn(move || {
            loop {
                let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
                // SAFETY: `info` is valid for writes of a `siginfo_t`. WNOWAIT
                // leaves the child unreaped, so `Child::wait` still owns it.
                let rc = unsafe {
                    libc::waitid(
                        libc::P_PID,
                        pid as libc::id_t,
                        info.as_mut_ptr(),
                        libc::WEXITED | libc::WNOWAIT,
                    )
                };
                let interrupted =
                    rc != 0 && std::io::Error::last_os_error().kind() == ErrorKind::Interrupted;
                if !interrupted {
                    break;
                }
            }
            let _ = tx.send(());
        });
        Proc {
            child,
            exited,
            status: None,
        }
    }

    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// The exit status, or `None` if the child is still running after `limit`.
    fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.exited.recv_timeout(limit) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.status = Some(self.child.wait().expect("reap the child"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        self.status
    }

    /// Kills the child if it still runs and reaps it.
    fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("reap the killed child");
        self.status = Some(status);
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Lines a daemon wrote to stderr, shared with the thread that reads them,
/// and a condition variable that thread signals after each line.
#[derive(Clone, Default)]
pub struct Log(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Log {
    fn lines(&self) -> MutexGuard<'_, Vec<String>> {
        self.0.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, line: String) {
        self.lines().push(line);
        self.0.1.notify_all();
    }

    /// The last lines, for a failure message.
    pub fn tail(&self) -> String {
        let lines = self.lines();
        let start = lines.len().saturating_sub(LOG_TAIL);
        lines[start..].join("\n")
    }

    /// Everything so far.
    pub fn all(&self) -> String {
        self.lines().join("\n")
    }

    /// Waits until a line contains `needle`; false if none does within
    /// `limit`.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut lines = self.lines();
        let mut checked = 0;
        loop {
            if lines[checked..].iter().any(|line| line.contains(needle)) {
                return true;
            }
            checked = lines.len();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            lines = self
                .0
                .1
                .wait_timeout(lines, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A running `tablo run --listen 127.0.0.1:0 --display none` in its own
/// sandbox. Killed on drop.
pub struct Daemon {
    proc: Proc,
    addr: SocketAddr,
    log: Log,
    /// Kept for its temp dir, which must outlive the process.
    _sandbox: Sandbox,
}

impl Daemon {
    /// Starts a daemon with no config file and `args` after the defaults.
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::spawn(Sandbox::new(), None, args)
    }

    /// Starts a daemon with `config` as its config file.
    pub fn start_with_config(config: &str, args: &[&str]) -> Daemon {
        Daemon::spawn(Sandbox::new(), Some(config), args)
    }

    /// Starts a daemon with no config file and `args` after the defaults,
    /// whose open-file limit (soft and hard, so it cannot raise it) is
    /// `limit`.
    pub fn start_with_nofile_limit(limit: u64, args: &[&str]) -> Daemon {
        Daemon::spawn_with(Sandbox::new(), None, args, |cmd| {
            let limit = limit as libc::rlim_t;
            // SAFETY: the hook runs in the forked child before exec and only
            // calls setrlimit(2), which is async-signal-safe; it allocates
            // nothing and touches no lock.
            unsafe {
                cmd.pre_exec(move || {
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
    }

    /// Starts a daemon in `sandbox`, with `config` as its config file if
    /// given: a sandbox handed back by [`Daemon::into_stopped`] keeps the
    /// data dir, and so the journal, of the daemon that ran in it.
    pub fn start_in(sandbox: Sandbox, config: Option<&str>, args: &[&str]) -> Daemon {
        Daemon::spawn(sandbox, config, args)
    }

    /// Like [`Daemon::start_in`], with `customize` applied to the command
    /// last: e.g. a `pre_exec` hook that changes what the daemon runs on.
    pub fn start_in_with(
        sandbox: Sandbox,
        config: Option<&str>,
        args: &[&str],
        customize: impl FnOnce(&mut Command),
    ) -> Daemon {
        Daemon::spawn_with(sandbox, config, args, customize)
    }

    fn spawn(sandbox: Sandbox, config: Option<&str>, args: &[&str]) -> Daemon {
        Daemon::spawn_with(sandbox, config, args, |_| {})
    }

    /// Like [`Daemon::spawn`], with `customize` applied to the command last.
    fn spawn_with(
        sandbox: Sandbox,
        config: Option<&str>,
        args: &[&str],
        customize: impl FnOnce(&mut Command),
    ) -> Daemon {
        let mut cmd = sandbox.command(TABLO);
        cmd.arg("run");
        // A free port unless the test names one (a restart on the same
        // address, which a browser's page is tied to).
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.arg("--data-dir").arg(sandbox.data_dir());
        // No board unless the test asks for one.
        if !args.contains(&"--display") {
            cmd.args(["--display", "none"]);
        }
        if let Some(config) = config {
            cmd.arg("--config").arg(sandbox.write("tablo.toml", config));
        }
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        customize(&mut cmd);
        let mut proc = Proc::spawn(cmd);

        let log = Log::default();
        let (lines_tx, lines) = mpsc::channel();
        let mut stderr = std::io::BufReader::new(proc.child.stderr.take().expect("piped stderr"));
        let log_writer = log.clone();
        thread::spawn(move || {
            let mut line = Vec::new();
            loop {
                line.clear();
                match std::io::BufRead::read_until(&mut stderr, b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                        log_writer.push(text.clone());
                        // Nobody listens once the address is known.
                        let _ = lines_tx.send(text);
                    }
                }
            }
        });

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        break addr;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "tablo logged no `listening on ADDR` within {STARTUP_TIMEOUT:?}; stderr:\n{}",
                    log.tail()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = match proc.wait_timeout(Duration::from_secs(2)) {
                        Some(status) => status.to_string(),
                        None => "still running".to_owned(),
                    };
                    panic!(
                        "tablo closed stderr before logging `listening on ADDR` \
                         ({status}); stderr:\n{}",
                        log.tail()
                    )
                }
            }
        };
        Daemon {
            proc,
            addr,
            log,
            _sandbox: sandbox,
        }
    }

    /// The address the daemon listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// The daemon's `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self._sandbox.data_dir()
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.log.all()
    }

    /// The last lines of the daemon's stderr, for a failure message.
    pub fn stderr_tail(&self) -> String {
        self.log.tail()
    }

    /// Waits until the daemon's stderr contains `needle`; fails after
    /// `limit`. Stderr arrives through a pipe and a reader thread, so a line
    /// logged before a frame was sent may be seen here after the frame.
    #[track_caller]
    pub fn wait_stderr(&self, needle: &str, limit: Duration) {
        assert!(
            self.log.wait_for(needle, limit),
            "stderr should contain {needle:?} within {limit:?}; stderr:\n{}",
            self.log.tail()
        );
    }

    /// The value of the Prometheus series `series` (a name with its labels
    /// exactly as printed, e.g. `tablo_feed_up{feed="binance"}`) in
    /// `/metrics`; fails if `/metrics` does not answer 200 or lacks it.
    #[track_caller]
    pub fn metric(&self, series: &str) -> f64 {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "GET /metrics\n{body}");
        let value = body.lines().find_map(|line| {
            let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        });
        value.unwrap_or_else(|| panic!("/metrics has no sample for {series}:\n{body}"))
    }

    /// Connects a WebSocket client to `path_and_query` and reads its
    /// `hello`, all within `limit`; says why not instead of failing.
    pub async fn try_ws(&self, path_and_query: &str, limit: Duration) -> Result<Client, String> {
        let url = format!("ws://{}{path_and_query}", self.addr());
        let connect = async {
            let stream = TcpStream::connect(self.addr())
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let (ws, _response) = async_tungstenite::client_async(url.as_str(), stream)
                .await
                .map_err(|e| format!("upgrade: {e}"))?;
            let mut client = Client::new(ws, self.log.clone());
            match client.read_incoming().await {
                Incoming::Json(hello) if hello["type"] == "hello" => {
                    client.hello = hello;
                    Ok(client)
                }
                Incoming::Json(other) => Err(format!("the first frame is not a hello: {other}")),
                Incoming::Closed(code) => Err(format!("closed with {code} before the hello")),
                Incoming::Ended(why) => Err(format!("ended before the hello: {why}")),
            }
        };
        match within(limit, connect).await {
            Some(result) => result,
            None => Err(format!("no hello from {url} within {limit:?}")),
        }
    }

    /// Connects a WebSocket client to `path_and_query` (e.g.
    /// `/ws?client=bot`) and reads its `hello`.
    pub async fn ws(&self, path_and_query: &str) -> Client {
        let url = format!("ws://{}{path_and_query}", self.addr());
        let connect = async {
            let stream = TcpStream::connect(self.addr()).await?;
            async_tungstenite::client_async(url.as_str(), stream)
                .await
                .map_err(std::io::Error::other)
        };
        let ws = match within(RECV_TIMEOUT, connect).await {
            Some(Ok((ws, _response))) => ws,
            Some(Err(e)) => panic!(
                "WebSocket upgrade to {url} failed: {e}\nstderr:\n{}",
                self.log.tail()
            ),
            None => panic!(
                "WebSocket upgrade to {url} took over {RECV_TIMEOUT:?}\nstderr:\n{}",
                self.log.tail()
            ),
        };
        let mut client = Client::new(ws, self.log.clone());
        let hello = client.recv_json().await;
        if hello["type"] != "hello" {
            client.fail(&format!("the first frame should be a hello, got {hello}"));
        }
        client.hello = hello;
        client
    }

    /// Like [`Daemon::try_ws`], with extra request `headers` (e.g.
    /// `Authorization`, `Sec-WebSocket-Protocol`); also returns the
    /// response's headers, names lower-cased. The WebSocket client fails
    /// the upgrade, as a browser does, when the answer names no subprotocol
    /// it offered.
    pub async fn try_ws_with(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
        limit: Duration,
    ) -> Result<(Client, Vec<(String, String)>), String> {
        use async_tungstenite::tungstenite::client::IntoClientRequest;
        use async_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
        let url = format!("ws://{}{path_and_query}", self.addr());
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("request: {e}"))?;
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            let value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            request.headers_mut().append(name, value);
        }
        let connect = async {
            let stream = TcpStream::connect(self.addr())
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let (ws, response) = async_tungstenite::client_async(request, stream)
                .await
                .map_err(|e| format!("upgrade: {e}"))?;
            let answered = response
                .headers()
                .iter()
                .map(|(n, v)| {
                    let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (n.as_str().to_ascii_lowercase(), value)
                })
                .collect();
            let mut client = Client::new(ws, self.log.clone());
            match client.read_incoming().await {
                Incoming::Json(hello) if hello["type"] == "hello" => {
                    client.hello = hello;
                    Ok((client, answered))
                }
                Incoming::Json(other) => Err(format!("the first frame is not a hello: {other}")),
                Incoming::Closed(code) => Err(format!("closed with {code} before the hello")),
                Incoming::Ended(why) => Err(format!("ended before the hello: {why}")),
            }
        };
        match within(limit, connect).await {
            Some(result) => result,
            None => Err(format!("no hello from {url} within {limit:?}")),
        }
    }

    /// Sends a WebSocket upgrade for `path_and_query` with `extra` header
    /// lines (each `Name: value`) over raw TCP; returns the answer's status,
    /// headers (names lower-cased) and body.
    pub fn upgrade_answer(
        &self,
        path_and_query: &str,
        extra: &[&str],
    ) -> (u16, Vec<(String, String)>, String) {
        let mut stream = self.http_connect();
        let mut request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n",
            self.addr
        );
        for line in extra {
            request.push_str(line);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .expect("send the upgrade");
        let (status, headers, mut body) = self.read_head(&mut stream, path_and_query);
        let len = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while body.len() < len {
            let mut chunk = [0; 4096];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        body.truncate(len);
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    /// A client that says it is a bot, without a token.
    pub async fn bot(&self) -> Client {
        self.ws("/ws?client=bot").await
    }

    /// `GET path` over a fresh connection: the status and the body.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let mut stream = self.http_connect();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        stream
            .write_all(request.as_bytes())
            .expect("send the request");
        let (status, headers, mut body) = self.read_head(&mut stream, path);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.trim().to_owned())
        };
        if let Some(len) = header("content-length") {
            let len: usize = len.parse().expect("a numeric Content-Length");
            while body.len() < len {
                let mut chunk = [0; 4096];
                match stream.read(&mut chunk) {
                    Ok(0) => panic!(
                        "GET {path}: connection closed after {} of {len} body bytes",
                        body.len()
                    ),
                    Ok(n) => body.extend_from_slice(&chunk[..n]),
                    Err(e) => panic!("GET {path}: reading the body: {e}"),
                }
            }
            body.truncate(len);
        } else {
            // No length: the body ends when the server closes (we asked it to).
            if let Err(e) = stream.read_to_end(&mut body) {
                panic!("GET {path}: no Content-Length and the body did not end: {e}");
            }
            if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
                body = dechunk(&body);
            }
        }
        let body = String::from_utf8(body)
            .unwrap_or_else(|e| panic!("GET {path}: the body is not UTF-8: {e}"));
        (status, body)
    }

    /// Sends a WebSocket upgrade request for `path_and_query` over raw TCP
    /// and returns the HTTP status of the answer (101 if accepted).
    pub fn upgrade_status(&self, path_and_query: &str) -> u16 {
        self.upgrade_status_with_key(path_and_query, "dGhlIHNhbXBsZSBub25jZQ==")
    }

    /// Like [`Daemon::upgrade_status`], with `key` as the
    /// `Sec-WebSocket-Key`.
    pub fn upgrade_status_with_key(&self, path_and_query: &str, key: &str) -> u16 {
        let mut stream = self.http_connect();
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
            self.addr
        );
        stream
            .write_all(request.as_bytes())
            .expect("send the upgrade");
        self.read_head(&mut stream, path_and_query).0
    }

    /// Sends `partial` (the start of a request head) and then nothing,
    /// and returns the status and lower-cased headers the daemon answers
    /// with, waiting up to `limit`.
    pub fn stalled_head_answer(
        &self,
        partial: &str,
        limit: Duration,
    ) -> (u16, Vec<(String, String)>) {
        let mut stream = self.http_connect();
        stream
            .set_read_timeout(Some(limit))
            .expect("set a read timeout");
        stream
            .write_all(partial.as_bytes())
            .expect("send the start of a head");
        let (status, headers, _) = self.read_head(&mut stream, "a stalled head");
        (status, headers)
    }

    /// A raw TCP connection to the daemon whose reads give up after
    /// `read_timeout`.
    pub fn raw_connect(&self, read_timeout: Duration) -> StdTcpStream {
        let stream = self.http_connect();
        stream
            .set_read_timeout(Some(read_timeout))
            .expect("set a read timeout");
        stream
    }

    fn http_connect(&self) -> StdTcpStream {
        let stream = StdTcpStream::connect_timeout(&self.addr, HTTP_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr));
        stream
            .set_read_timeout(Some(HTTP_TIMEOUT))
            .expect("set a read timeout");
        stream
    }

    /// Reads a response head: status, lower-cased headers, and the bytes
    /// already read past it.
    fn read_head(
        &self,
        stream: &mut StdTcpStream,
        what: &str,
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut buf = Vec::new();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = response.code.expect("a complete head has a status");
                    let headers = response
                        .headers
                        .iter()
                        .map(|h| {
                            let value = String::from_utf8_lossy(h.value).into_owned();
                            (h.name.to_ascii_lowercase(), value)
                        })
                        .collect();
                    return (status, headers, buf[len..].to_vec());
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => panic!(
                    "{what}: not an HTTP response ({e}): {:?}",
                    String::from_utf8_lossy(&buf)
                ),
            }
            let mut chunk = [0; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => panic!(
                    "{what}: connection closed before the end of the response head: {:?}\nstderr:\n{}",
                    String::from_utf8_lossy(&buf),
                    self.log.tail()
                ),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!(
                    "{what}: no complete response head within {HTTP_TIMEOUT:?} ({e}): {:?}\nstderr:\n{}",
                    String::from_utf8_lossy(&buf),
                    self.log.tail()
                ),
            }
        }
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
        // unreaped child, so it cannot name another process.
        let rc = unsafe { libc::kill(self.proc.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.proc.pid());
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends SIGKILL: the daemon stops at once, without a word.
    pub fn sigkill(&self) {
        self.signal(libc::SIGKILL);
    }

    /// Waits for the daemon to exit (failing after `limit`, like
    /// [`Daemon::wait_exit`]) and hands back how it exited, what it logged
    /// and its sandbox, data dir included, for [`Daemon::start_in`].
    pub fn into_stopped(mut self, limit: Duration) -> Stopped {
        let status = self.wait_exit(limit);
        let stderr = self.stderr();
        let Daemon { _sandbox, .. } = self;
        Stopped {
            status,
            stderr,
            sandbox: _sandbox,
        }
    }

    /// Waits for the daemon to exit; fails the test (and kills it) if it is
    /// still running after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        match self.proc.wait_timeout(limit) {
            Some(status) => status,
            None => {
                self.proc.kill();
                panic!(
                    "tablo did not exit within {limit:?}; killed it. stderr:\n{}",
                    self.log.tail()
                )
            }
        }
    }
}

/// A daemon that has exited, and what it left behind.
pub struct Stopped {
    /// How it exited.
    pub status: ExitStatus,
    /// What it wrote to stderr (as far as the reader thread got).
    pub stderr: String,
    /// Its sandbox, data dir included, for [`Daemon::start_in`].
    pub sandbox: Sandbox,
}

/// Decodes a chunked HTTP body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).expect("a hex chunk size");
        raw = &raw[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// The address in a `... listening on 127.0.0.1:PORT ...` log line, unless
/// it still has port 0.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let token = line
        .split_once("listening on ")?
        .1
        .split_whitespace()
        .next()?;
    let token = token.trim_end_matches(|c: char| !c.is_ascii_digit());
    let addr: SocketAddr = token.parse().ok()?;
    (addr.port() != 0).then_some(addr)
}

/// One thing read from a WebSocket.
enum Incoming {
    /// A text frame, parsed.
    Json(Value),
    /// A close frame and its code (1005 when it had none).
    Closed(u16),
    /// The connection ended without a close frame.
    Ended(String),
}

/// How a connection ended.
#[derive(Debug)]
pub enum Ending {
    /// The daemon sent a close frame with this code (1005 when it had none).
    Closed(u16),
    /// The connection ended without a close frame: EOF, a reset, or a frame
    /// cut short.
    Ended(String),
}

/// A downstream WebSocket client of the daemon.
pub struct Client {
    ws: WebSocketStream<TcpStream>,
    /// The `hello` the daemon sent first.
    pub hello: Value,
    seen: VecDeque<String>,
    log: Log,
}

impl Client {
    fn new(ws: WebSocketStream<TcpStream>, log: Log) -> Client {
        Client {
            ws,
            hello: Value::Null,
            seen: VecDeque::new(),
            log,
        }
    }

    /// Fails the test, showing the last frames and the daemon's stderr.
    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        let seen: Vec<&str> = self.seen.iter().map(String::as_str).collect();
        panic!(
            "{what}\n--- last frames received ---\n{}\n--- daemon stderr (tail) ---\n{}",
            seen.join("\n"),
            self.log.tail()
        )
    }

    /// Sends a JSON value as a text frame.
    pub async fn send_json(&mut self, value: Value) {
        self.send(Message::text(value.to_string())).await;
    }

    /// Sends a text frame as is.
    pub async fn send_text(&mut self, text: &str) {
        self.send(Message::text(text)).await;
    }

    /// Sends a text frame whose payload is `bytes` as is, valid UTF-8 or
    /// not.
    pub async fn send_raw_text(&mut self, bytes: &[u8]) {
        let frame = Frame::message(bytes.to_vec(), OpCode::Data(Data::Text), true);
        self.send(Message::Frame(frame)).await;
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.send(Message::binary(bytes.to_vec())).await;
    }

    async fn send(&mut self, message: Message) {
        match within(RECV_TIMEOUT, self.ws.send(message)).await {
            Some(Ok(())) => {}
            Some(Err(e)) => self.fail(&format!("sending a frame failed: {e}")),
            None => self.fail(&format!("sending a frame took over {RECV_TIMEOUT:?}")),
        }
    }

    async fn next_incoming(&mut self, limit: Duration) -> Option<Incoming> {
        within(limit, self.read_incoming()).await
    }

    async fn read_incoming(&mut self) -> Incoming {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    self.remember(text.to_string());
                    return match serde_json::from_str(&text) {
                        Ok(value) => Incoming::Json(value),
                        Err(e) => {
                            Incoming::Ended(format!("a text frame is not JSON ({e}): {text}"))
                        }
                    };
                }
                Some(Ok(Message::Binary(bytes))) => {
                    return Incoming::Ended(format!("the daemon sent a binary frame: {bytes:?}"));
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map_or(1005, |f| u16::from(f.code));
                    self.remember(format!("<close {code}>"));
                    return Incoming::Closed(code);
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Incoming::Ended(e.to_string()),
                None => return Incoming::Ended("the stream ended".to_owned()),
            }
        }
    }

    fn remember(&mut self, frame: String) {
        if self.seen.len() == SEEN_FRAMES {
            self.seen.pop_front();
        }
        self.seen.push_back(frame);
    }

    /// Sends a WebSocket ping with `payload` and waits for the daemon's
    /// pong, passing over text frames; fails on anything else.
    pub async fn ws_ping_expect_pong(&mut self, payload: &[u8]) {
        self.send(Message::Ping(payload.to_vec().into())).await;
        let ws = &mut self.ws;
        let got = within(RECV_TIMEOUT, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Pong(bytes))) => return Ok(bytes),
                    Some(Ok(Message::Text(_))) => {}
                    other => return Err(format!("{other:?}")),
                }
            }
        })
        .await;
        match got {
            Some(Ok(bytes)) if bytes[..] == *payload => {}
            Some(Ok(bytes)) => self.fail(&format!("pong carried {bytes:?}, not {payload:?}")),
            Some(Err(other)) => self.fail(&format!("expected a pong, got {other}")),
            None => self.fail(&format!("no pong within {RECV_TIMEOUT:?}")),
        }
    }

    /// The next frame as JSON; fails after [`RECV_TIMEOUT`] or on a close.
    pub async fn recv_json(&mut self) -> Value {
        self.recv_json_within(RECV_TIMEOUT).await
    }

    /// The next frame as JSON; fails after `limit` or on a close.
    pub async fn recv_json_within(&mut self, limit: Duration) -> Value {
        match self.next_incoming(limit).await {
            Some(Incoming::Json(value)) => value,
            Some(Incoming::Closed(code)) => {
                self.fail(&format!("expected a frame, the daemon closed with {code}"))
            }
            Some(Incoming::Ended(why)) => {
                self.fail(&format!("expected a frame, the connection ended: {why}"))
            }
            None => self.fail(&format!("no frame within {limit:?}")),
        }
    }

    /// The next frame as JSON, or `None` if none comes within `limit`;
    /// fails on a close.
    pub async fn try_recv_json_within(&mut self, limit: Duration) -> Option<Value> {
        match self.next_incoming(limit).await {
            Some(Incoming::Json(value)) => Some(value),
            Some(Incoming::Closed(code)) => {
                self.fail(&format!("expected a frame, the daemon closed with {code}"))
            }
            Some(Incoming::Ended(why)) => {
                self.fail(&format!("expected a frame, the connection ended: {why}"))
            }
            None => None,
        }
    }

    /// Skips frames until one matches `pred`; fails if none does within
    /// [`RECV_TIMEOUT`] in all.
    pub async fn recv_until(&mut self, pred: impl FnMut(&Value) -> bool) -> Value {
        self.recv_until_within(RECV_TIMEOUT, pred).await
    }

    /// Skips frames until one matches `pred`; fails if none does within
    /// `limit` in all.
    pub async fn recv_until_within(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_incoming(left).await {
                Some(Incoming::Json(value)) if pred(&value) => return value,
                Some(Incoming::Json(_)) => {}
                Some(Incoming::Closed(code)) => self.fail(&format!(
                    "the daemon closed with {code} before the awaited frame came"
                )),
                Some(Incoming::Ended(why)) => self.fail(&format!(
                    "the connection ended before the awaited frame came: {why}"
                )),
                None => self.fail(&format!("the awaited frame did not come within {limit:?}")),
            }
        }
    }

    /// Sends `op` and returns the next frame (for use when no events flow).
    pub async fn request(&mut self, op: Value) -> Value {
        self.send_json(op).await;
        self.recv_json().await
    }

    /// Fails unless `frame` is an error with `code`; returns it.
    #[track_caller]
    pub fn assert_error(&self, frame: &Value, code: &str) -> Value {
        if frame["type"] != "error" || frame["code"] != code {
            self.fail(&format!(
                "expected an error with code {code:?}, got {frame}"
            ));
        }
        if frame["message"].as_str().is_none_or(str::is_empty) {
            self.fail(&format!("an error should carry a message: {frame}"));
        }
        frame.clone()
    }

    /// Reads the next frame and fails unless it is an error with `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let frame = self.recv_json().await;
        self.assert_error(&frame, code)
    }

    /// Subscribes to `channels` and waits for `subscribed`.
    pub async fn subscribe(&mut self, channels: &[&str]) -> Value {
        self.send_json(json!({"op": "subscribe", "channels": channels}))
            .await;
        let reply = self
            .recv_until(|f| f["type"] == "subscribed" || f["type"] == "error")
            .await;
        if reply["type"] != "subscribed" {
            self.fail(&format!("subscribe to {channels:?} failed: {reply}"));
        }
        reply
    }

    /// Sends a ping with `id` and fails unless the very next frame is its pong.
    pub async fn ping_expect_pong_next(&mut self, id: Value) {
        self.send_json(json!({"op": "ping", "id": id})).await;
        let reply = self.recv_json().await;
        if reply["type"] != "pong" || reply["id"] != id {
            self.fail(&format!(
                "expected {{\"type\":\"pong\",\"id\":{id}}} next, got {reply}"
            ));
        }
    }

    /// Reads every frame until the connection ends, however it ends;
    /// fails if it is still open after `limit`.
    pub async fn read_to_end(&mut self, limit: Duration) -> (Vec<Value>, Ending) {
        let deadline = Instant::now() + limit;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_incoming(left).await {
                Some(Incoming::Json(value)) => frames.push(value),
                Some(Incoming::Closed(code)) => return (frames, Ending::Closed(code)),
                Some(Incoming::Ended(why)) => return (frames, Ending::Ended(why)),
                None => self.fail(&format!(
                    "the connection was still open after {limit:?} ({} frames read)",
                    frames.len()
                )),
            }
        }
    }

    /// Skips frames until the daemon closes; returns the close code.
    pub async fn expect_close(&mut self) -> u16 {
        let deadline = Instant::now() + RECV_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_incoming(left).await {
                Some(Incoming::Json(_)) => {}
                Some(Incoming::Closed(code)) => return code,
                Some(Incoming::Ended(why)) => self.fail(&format!(
                    "expected a close frame, the connection ended without one: {why}"
                )),
                None => self.fail(&format!("the daemon did not close within {RECV_TIMEOUT:?}")),
            }
        }
    }

    /// Sends `frame` over and over, far faster than 50 a second, until the
    /// daemon closes; returns the close code and the frames received before.
    ///
    /// Each frame waits for its answer before the next goes out, so the
    /// daemon has no unread input when it closes: closing a socket with
    /// unread input sends a TCP reset, which can discard the close frame.
    /// Once the daemon says `rate_limited` it may drop ops without a word,
    /// so from then on the next frame goes out after [`FLOOD_IDLE`] without
    /// an answer.
    pub async fn flood_until_close(&mut self, frame: &str, limit: Duration) -> (u16, Vec<Value>) {
        let deadline = Instant::now() + limit;
        let mut frames = Vec::new();
        let mut limited = false;
        let mut sending = true;
        while Instant::now() < deadline {
            if sending {
                // A failed send means the daemon has closed: read how.
                sending = within(RECV_TIMEOUT, self.ws.send(Message::text(frame)))
                    .await
                    .is_some_and(|sent| sent.is_ok());
            }
            let patient = !(sending && limited);
            let wait = if patient { RECV_TIMEOUT } else { FLOOD_IDLE };
            match self.next_incoming(wait).await {
                Some(Incoming::Json(value)) => {
                    limited |= value["code"] == "rate_limited";
                    frames.push(value);
                }
                Some(Incoming::Closed(code)) => return (code, frames),
                Some(Incoming::Ended(why)) => self.fail(&format!(
                    "expected a close frame, the connection ended without one: {why}"
                )),
                None if patient => self.fail(&format!("no answer within {wait:?}")),
                None => {}
            }
        }
        self.fail(&format!("the daemon did not close within {limit:?}"))
    }
}

/// A fake upstream feed: a WebSocket server on `127.0.0.1` that records
/// what the daemon sends and sends what the test says.
pub struct FakeUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    received: Receiver<String>,
    connected: Receiver<()>,
    accept: Option<Task<()>>,
}

/// What the accept loop and connection tasks share with the test.
struct Shared {
    /// One sender per live connection, for frames to push to the daemon.
    outs: Mutex<Vec<Sender<String>>>,
    /// Connection tasks, so that shutdown can stop them.
    conns: Mutex<Vec<Task<()>>>,
    /// Text frames received from the daemon, in order.
    received: Sender<String>,
    /// One message per completed WebSocket handshake.
    connected: Sender<()>,
    /// Completed handshakes since the start, across restarts.
    connections: AtomicUsize,
}

impl FakeUpstream {
    /// Starts listening on a free port.
    pub async fn start() -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake upstream");
        let addr = listener.local_addr().expect("the fake upstream's address");
        let (received_tx, received) = smol::channel::unbounded();
        let (connected_tx, connected) = smol::channel::unbounded();
        let shared = Arc::new(Shared {
            outs: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
            received: received_tx,
            connected: connected_tx,
            connections: AtomicUsize::new(0),
        });
        let accept = Some(smol::spawn(accept_loop(listener, shared.clone())));
        FakeUpstream {
            addr,
            shared,
            received,
            connected,
            accept,
        }
    }

    /// `ws://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Waits for the daemon's next WebSocket connection; returns how many
    /// there have been in all.
    pub async fn wait_connection(&self) -> usize {
        match within(UPSTREAM_CONNECT_TIMEOUT, self.connected.recv()).await {
            Some(Ok(())) => self.connections(),
            _ => panic!(
                "the daemon did not connect to the fake upstream {} within {UPSTREAM_CONNECT_TIMEOUT:?}",
                self.addr
            ),
        }
    }

    /// Completed WebSocket handshakes so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Sends a text frame to every connected daemon; fails if none is.
    pub fn send(&self, text: &str) {
        let mut outs = self.shared.outs.lock().unwrap();
        outs.retain(|out| out.try_send(text.to_owned()).is_ok());
        assert!(
            !outs.is_empty(),
            "no daemon is connected to the fake upstream {}",
            self.addr
        );
    }

    /// Sends a text frame to every connected daemon; false, instead of a
    /// failure, when none is (a soak sends through its upstream's drops).
    #[allow(
        dead_code,
        reason = "benches/soak.rs, which includes this file, uses it"
    )]
    pub fn try_send(&self, text: &str) -> bool {
        let mut outs = self.shared.outs.lock().unwrap();
        outs.retain(|out| out.try_send(text.to_owned()).is_ok());
        !outs.is_empty()
    }

    /// The next text frame the daemon sent, if one has already arrived.
    pub fn try_recv(&self) -> Option<String> {
        self.received.try_recv().ok()
    }

    /// The next text frame the daemon sent; fails after [`RECV_TIMEOUT`].
    pub async fn recv(&self) -> String {
        match within(RECV_TIMEOUT, self.received.recv()).await {
            Some(Ok(text)) => text,
            _ => panic!("the daemon sent nothing to the fake upstream within {RECV_TIMEOUT:?}"),
        }
    }

    /// Drops every connection and stops listening. When this returns the
    /// sockets are closed.
    pub async fn shutdown(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.cancel().await;
        }
        let conns = std::mem::take(&mut *self.shared.conns.lock().unwrap());
        for conn in conns {
            conn.cancel().await;
        }
        self.shared.outs.lock().unwrap().clear();
    }

    /// Listens again on the same port after [`FakeUpstream::shutdown`].
    pub async fn restart(&mut self) {
        assert!(self.accept.is_none(), "restart without shutdown");
        let listener = TcpListener::bind(self.addr)
            .await
            .unwrap_or_else(|e| panic!("bind the fake upstream again on {}: {e}", self.addr));
        self.accept = Some(smol::spawn(accept_loop(listener, self.shared.clone())));
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        // Errors such as EMFILE are transient here; try the next one.
        if let Ok((stream, _)) = listener.accept().await {
            let conn = smol::spawn(serve(stream, shared.clone()));
            shared.conns.lock().unwrap().push(conn);
        }
    }
}

/// Steps of one fake upstream connection.
enum Step {
    /// The test wants this frame sent; `None` when the test side is gone.
    Out(Option<String>),
    /// The daemon sent something, or the connection ended.
    In(Option<Result<Message, async_tungstenite::tungstenite::Error>>),
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let Ok(mut ws) = async_tungstenite::accept_async(stream).await else {
        return;
    };
    let (out_tx, out_rx) = smol::channel::unbounded::<String>();
    shared.outs.lock().unwrap().push(out_tx);
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let _ = shared.connected.try_send(());
    loop {
        let step = smol::future::or(async { Step::Out(out_rx.recv().await.ok()) }, async {
            Step::In(ws.next().await)
        })
        .await;
        match step {
            Step::Out(Some(text)) => {
                if ws.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
            Step::Out(None) => return,
            Step::In(Some(Ok(Message::Text(text)))) => {
                let _ = shared.received.try_send(text.to_string());
            }
            Step::In(Some(Ok(Message::Close(_)))) | Step::In(Some(Err(_))) | Step::In(None) => {
                return;
            }
            // Pings are answered by tungstenite itself.
            Step::In(Some(Ok(_))) => {}
        }
    }
}

// ---------------------------------------------------------------------------
// For `tablo journal` (tests/it/journal_cli.rs).
// ---------------------------------------------------------------------------

impl Client {
    /// The next text frame exactly as the daemon sent it, byte for byte;
    /// fails after [`RECV_TIMEOUT`], on a close, or if it is not JSON.
    pub async fn recv_text(&mut self) -> String {
        match self.next_incoming(RECV_TIMEOUT).await {
            // `read_incoming` keeps the text of each frame it returns.
            Some(Incoming::Json(_)) => self.seen.back().cloned().unwrap_or_default(),
            Some(Incoming::Closed(code)) => {
                self.fail(&format!("expected a frame, the daemon closed with {code}"))
            }
            Some(Incoming::Ended(why)) => {
                self.fail(&format!("expected a frame, the connection ended: {why}"))
            }
            None => self.fail(&format!("no frame within {RECV_TIMEOUT:?}")),
        }
    }
}

impl Sandbox {
    /// Starts `tablo ARGS` with its stdout piped to the test, for a test
    /// that reads only part of it (like `| head -1`).
    pub fn tablo_piped(&self, args: &[&str]) -> Piped {
        let mut cmd = self.command(TABLO);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut proc = Proc::spawn(cmd);
        let stderr = read_all_in_background(proc.child.stderr.take().expect("piped stderr"));
        Piped {
            stdout: proc.child.stdout.take(),
            proc,
            stderr,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }
}

/// A running `tablo` command whose stdout the test reads; killed on drop.
pub struct Piped {
    proc: Proc,
    stdout: Option<std::process::ChildStdout>,
    stderr: thread::JoinHandle<String>,
    args: Vec<String>,
}

impl Piped {
    /// Reads the first line of stdout (without its newline), then closes
    /// the pipe, as `| head -1` does. Fails if no line comes within the
    /// command timeout.
    pub fn read_line_and_close(&mut self) -> String {
        let stdout = self.stdout.take().expect("stdout is still open");
        let (tx, rx) = mpsc::channel();
        // A thread, so a command that never writes cannot hang the test.
        thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stdout);
            let mut line = String::new();
            let read = std::io::BufRead::read_line(&mut reader, &mut line);
            // The pipe closes here, before the test goes on.
            drop(reader);
            let _ = tx.send(read.map(|_| line));
        });
        match rx.recv_timeout(COMMAND_TIMEOUT) {
            Ok(Ok(line)) if line.ends_with('\n') => line.trim_end_matches('\n').to_owned(),
            Ok(Ok(line)) => panic!(
                "`tablo {}` ended its output without a full line: {line:?}",
                self.args.join(" ")
            ),
            Ok(Err(e)) => panic!("reading `tablo {}`: {e}", self.args.join(" ")),
            Err(_) => {
                self.proc.kill();
                panic!(
                    "`tablo {}` printed no line within {COMMAND_TIMEOUT:?}; killed it",
                    self.args.join(" ")
                )
            }
        }
    }

    /// Waits for the command to exit (killing it after the command
    /// timeout) and returns how it exited and its stderr; stdout is what
    /// was left unread, if the pipe is still open.
    pub fn wait(mut self) -> Output {
        let stdout = self.stdout.take().map(read_all_in_background);
        let status = self.proc.wait_timeout(COMMAND_TIMEOUT);
        let timed_out = status.is_none();
        let status = status.unwrap_or_else(|| self.proc.kill());
        let output = Output {
            args: self.args,
            status,
            stdout: stdout
                .map(|s| s.join().expect("stdout reader"))
                .unwrap_or_default(),
            stderr: self.stderr.join().expect("stderr reader"),
        };
        assert!(
            !timed_out,
            "`tablo {}` did not exit within {COMMAND_TIMEOUT:?}; killed it\n{output}",
            output.args.join(" ")
        );
        output
    }
}
