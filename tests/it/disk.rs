//! A full disk under the journal (issue 3, item 8): live relaying goes on,
//! `/healthz` answers 503 with the reason, `/metrics` says
//! `tablo_journal_writable 0`, the error is logged once and not again at
//! each retry, and once space returns journaling resumes: new events are
//! durable, publishes are acked, and a replay across the outage shows the
//! seqs lost meanwhile as a `gap`.
//!
//! The fault is a real ENOSPC. The daemon runs in a mount namespace of its
//! own with a small tmpfs on its data dir, mounted by a `pre_exec` hook (as
//! root directly; otherwise inside a user namespace, where an unprivileged
//! user may mount a tmpfs). The test fills that tmpfs through
//! `/proc/<pid>/root` until the kernel refuses, then deletes the filler:
//! space returns. The mount exists only in the daemon's namespace and goes
//! away with the daemon, so nothing stays mounted on the host however the
//! test ends.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::ptr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use smol::Timer;
use tablo::journal::RETRY_INTERVAL;

use crate::harness::{Client, Daemon, FakeUpstream, Sandbox, TABLO};
use crate::relay::{binance_ticker, is_tick};

/// Size of the daemon's tmpfs: room for a new journal, quick to fill.
const TMPFS_SIZE: &str = "4m";

/// `f_type` of a tmpfs in `statfs`.
const TMPFS_MAGIC: libc::c_long = 0x0102_1994;

/// The group-commit interval: short, so a write hits the full disk soon.
const FLUSH_MS: u64 = 20;

/// How long the journal may take to notice the full disk: many commits.
const FAIL_WITHIN: Duration = Duration::from_secs(10);

/// How long the disk stays full once `/healthz` says 503: past the
/// writer's first retry, so that a failed retry is seen not to log again.
const OUTAGE: Duration = RETRY_INTERVAL.saturating_add(Duration::from_millis(800));

/// How far into the outage the failure's own log lines have surely come
/// through the pipe; anything logged later was logged at a retry.
const LOG_SETTLED: Duration = Duration::from_secs(1);

/// How long the journal may take to be writable again once space returns:
/// the writer retries every `RETRY_INTERVAL`, plus a loaded machine.
const RECOVER_WITHIN: Duration = RETRY_INTERVAL.saturating_add(Duration::from_secs(5));

/// How long an event may take to become durable once the journal works.
const DURABLE_WITHIN: Duration = Duration::from_secs(5);

/// Pace of ticks and polls while waiting for the daemon to change state.
const STEP: Duration = Duration::from_millis(50);

/// Ticks sent before the outage and after recovery.
const TICKS_AROUND: usize = 5;

/// A Binance feed on `upstream`, a publishing token `pub`, fast commits.
fn config(upstream: &FakeUpstream) -> String {
    format!(
        r#"
[server]
tokens = [{{ token = "pub", publish = true }}]

[journal]
flush_interval_ms = {FLUSH_MS}

[[feed]]
name = "binance"
format = "binance"
url = "{}"
"#,
        upstream.url("/ws")
    )
}

#[test]
fn full_disk_keeps_relaying_reports_503_and_journaling_resumes_when_space_returns() {
    smol::block_on(async {
        let upstream = FakeUpstream::start().await;
        let sandbox = Sandbox::new();
        let data = sandbox.data_dir();
        std::fs::create_dir(&data).expect("create the data dir");
        probe_private_tmpfs(&sandbox.path().join("probe"));
        let daemon = Daemon::start_in_with(sandbox, Some(&config(&upstream)), &[], |cmd| {
            on_private_tmpfs(cmd, &data)
        });
        upstream.wait_connection().await;
        let disk = daemon_view(&daemon);
        assert_eq!(
            statfs_type(&disk),
            TMPFS_MAGIC,
            "the daemon's data dir should be its own tmpfs"
        );
        assert!(
            disk.join("journal").is_dir() && !daemon.data_dir().join("journal").exists(),
            "the journal should be on the daemon's private tmpfs, not on the host's disk"
        );

        let mut witness = Witness::new(daemon.bot().await).await;
        let epoch = witness.client.hello["epoch"]
            .as_str()
            .unwrap_or_else(|| panic!("hello without an epoch: {}", witness.client.hello))
            .to_owned();
        let mut publisher = daemon.ws("/ws?client=bot&token=pub").await;
        let mut since = 0;
        for _ in 0..TICKS_AROUND {
            since = witness.tick(&upstream).await;
        }
        wait_durable(&daemon, since).await;

        // The disk fills up; ticks keep coming.
        let log_before = daemon.stderr().lines().count();
        let filler = fill(&disk);
        let mut outage = Vec::new();
        let deadline = Instant::now() + FAIL_WITHIN;
        let health = loop {
            outage.push(witness.tick(&upstream).await);
            let (status, body) = daemon.http_get("/healthz");
            if status == 503 {
                break parse(&body);
            }
            assert_eq!(status, 200, "GET /healthz: {body}");
            assert!(
                Instant::now() < deadline,
                "the journal did not notice the full disk within {FAIL_WITHIN:?} \
                 ({} ticks written meanwhile); /healthz: {body}\nstderr:\n{}",
                outage.len(),
                daemon.stderr()
            );
            Timer::after(STEP).await;
        };
        let reason = health["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("journal") && (reason.contains("space") || reason.contains("full")),
            "/healthz should say the journal cannot write to a full disk: {health}"
        );
        assert_eq!(health["journal"]["writable"], false, "{health}");
        assert_eq!(daemon.metric("tablo_journal_writable"), 0.0);
        let refused = publish(&mut publisher, "while the disk is full", 1).await;
        if refused["type"] != "error"
            || !refused["message"]
                .as_str()
                .is_some_and(|m| m.contains("journal"))
        {
            publisher.fail(&format!(
                "a publish while the journal cannot write should be refused with an error \
                 naming the journal, got {refused}"
            ));
        }

        // The disk stays full past a retry; live relaying goes on.
        let full_since = Instant::now();
        let mut log_settled = None;
        while full_since.elapsed() < OUTAGE {
            outage.push(witness.tick(&upstream).await);
            if log_settled.is_none() && full_since.elapsed() >= LOG_SETTLED {
                log_settled = Some(daemon.stderr().lines().count());
            }
            Timer::after(STEP).await;
        }
        let (status, body) = daemon.http_get("/healthz");
        assert_eq!(status, 503, "the disk is still full: {body}");
        let log = daemon.stderr();
        let lines: Vec<&str> = log.lines().collect();
        let settled = log_settled.expect("the outage lasts past LOG_SETTLED");
        let at_failure = &lines[log_before..settled];
        let own: Vec<&&str> = at_failure
            .iter()
            .filter(|l| level_and_target(l).is_some_and(|(lv, t)| lv == "ERROR" && is_ours(t)))
            .collect();
        assert!(
            own.len() == 1 && own[0].contains("journal"),
            "the full disk should be logged once, as a journal error; logged:\n{}",
            at_failure.join("\n")
        );
        let later: Vec<&&str> = lines[settled..]
            .iter()
            .filter(|l| level_and_target(l).is_some_and(|(lv, _)| lv == "ERROR"))
            .collect();
        assert!(
            later.is_empty(),
            "nothing more should be logged while the disk stays full (retries every {:?}); \
             logged after the first {LOG_SETTLED:?}:\n{}",
            RETRY_INTERVAL,
            later.iter().map(|l| **l).collect::<Vec<_>>().join("\n")
        );

        // Space returns.
        std::fs::remove_file(&filler).expect("remove the filler");
        let returned = Instant::now();
        loop {
            outage.push(witness.tick(&upstream).await);
            let (status, body) = daemon.http_get("/healthz");
            if status == 200 {
                assert_eq!(parse(&body)["journal"]["writable"], true, "{body}");
                break;
            }
            assert!(
                returned.elapsed() < RECOVER_WITHIN,
                "/healthz still says {status} {:?} after space returned: {body}\nstderr:\n{}",
                returned.elapsed(),
                daemon.stderr_tail()
            );
            Timer::after(STEP).await;
        }
        assert_eq!(daemon.metric("tablo_journal_writable"), 1.0);

        // Journaling resumes: ticks become durable, publishes are acked.
        let mut after = Vec::new();
        for _ in 0..TICKS_AROUND {
            after.push(witness.tick(&upstream).await);
        }
        let reply = publish(&mut publisher, "after the disk had room again", 2).await;
        if reply["type"] != "ack" || reply["id"] != 2 {
            publisher.fail(&format!(
                "a publish after space returned should be acked once durable, got {reply}"
            ));
        }
        let published = seq_of(&reply);
        witness
            .until(|f| f["type"] == "alert" && f["seq"] == published)
            .await;
        after.push(published);
        let last = published.max(*after.iter().max().expect("ticks after recovery"));
        wait_durable(&daemon, last).await;

        // A replay across the outage: every seq once, in order, each an
        // event exactly as sent live or inside a gap.
        let mut resumed = daemon.bot().await;
        assert_eq!(
            resumed.hello["epoch"], epoch,
            "a full disk is no reason for a new journal"
        );
        resumed
            .send_json(
                json!({"op": "subscribe", "channels": ["*"], "since": since, "epoch": epoch}),
            )
            .await;
        let subscribed = resumed.recv_json().await;
        if subscribed["type"] != "subscribed" {
            resumed.fail(&format!("expected subscribed first, got {subscribed}"));
        }
        let mut cursor = since;
        let mut events = Vec::new();
        let mut gaps = Vec::new();
        while cursor < last {
            let frame = resumed.recv_json().await;
            if frame["type"] == "gap" {
                let (from, to) = (frame["from"].as_u64(), frame["to"].as_u64());
                let (Some(from), Some(to)) = (from, to) else {
                    resumed.fail(&format!("a gap without from and to: {frame}"));
                };
                if from != cursor + 1 || to < from {
                    resumed.fail(&format!("after seq {cursor} came {frame}"));
                }
                gaps.push((from, to));
                cursor = to;
                continue;
            }
            let seq = seq_of(&frame);
            if seq != cursor + 1 {
                resumed.fail(&format!(
                    "after seq {cursor} the replay should go on with {}, got {frame}",
                    cursor + 1
                ));
            }
            if witness.frames.get(&seq) != Some(&frame) {
                resumed.fail(&format!(
                    "the replay of seq {seq} differs from what was sent live ({:?}): {frame}",
                    witness.frames.get(&seq)
                ));
            }
            events.push(seq);
            cursor = seq;
        }
        let in_gap = |seq: &u64| gaps.iter().any(|(from, to)| (from..=to).contains(&seq));
        assert!(
            outage.iter().any(in_gap),
            "the seqs of the outage should show as a gap; replayed events {events:?}, gaps {gaps:?}, \
             outage seqs {outage:?}"
        );
        let missing: Vec<&u64> = after.iter().filter(|seq| !events.contains(seq)).collect();
        assert!(
            missing.is_empty(),
            "events after space returned should be journaled; not replayed: {missing:?} \
             (gaps {gaps:?})"
        );
    });
}

/// A client subscribed to everything that keeps every frame it sees by seq.
struct Witness {
    client: Client,
    frames: BTreeMap<u64, Value>,
    ticks: usize,
}

impl Witness {
    async fn new(mut client: Client) -> Witness {
        client.subscribe(&["*"]).await;
        Witness {
            client,
            frames: BTreeMap::new(),
            ticks: 0,
        }
    }

    /// Sends a tick (one of a few symbols, a price never sent before) to
    /// `upstream` and waits until it arrives live; returns its seq.
    async fn tick(&mut self, upstream: &FakeUpstream) -> u64 {
        self.ticks += 1;
        let symbol = ["BTCUSDT", "ETHUSDT", "SOLUSDT"][self.ticks % 3];
        let price = format!("{}.25", 1000 + self.ticks);
        upstream.send(&binance_ticker(symbol, &price).to_string());
        let tick = self
            .until(|f| is_tick(f) && f["symbol"] == symbol && f["price"] == price.as_str())
            .await;
        seq_of(&tick)
    }

    /// Reads frames until one matches `pred`, keeping them all.
    async fn until(&mut self, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let frames = &mut self.frames;
        self.client
            .recv_until(|f| {
                if let Some(seq) = f["seq"].as_u64() {
                    frames.insert(seq, f.clone());
                }
                pred(f)
            })
            .await
    }
}

/// Publishes an alert with `text` and request `id`; returns the reply.
async fn publish(client: &mut Client, text: &str, id: u64) -> Value {
    let data = json!({"level": "info", "text": text});
    client
        .request(json!({"op": "publish", "channel": "alerts", "data": data, "id": id}))
        .await
}

/// Waits until `/metrics` says every seq up to `seq` is on stable storage.
async fn wait_durable(daemon: &Daemon, seq: u64) {
    let deadline = Instant::now() + DURABLE_WITHIN;
    loop {
        let durable = daemon.metric("tablo_journal_durable_seq") as u64;
        if durable >= seq {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "seq {seq} was not durable within {DURABLE_WITHIN:?}: tablo_journal_durable_seq \
             {durable}, tablo_journal_events {}, tablo_last_seq {}; stderr:\n{}",
            daemon.metric("tablo_journal_events"),
            daemon.metric("tablo_last_seq"),
            daemon.stderr_tail()
        );
        Timer::after(Duration::from_millis(10)).await;
    }
}

#[track_caller]
fn seq_of(frame: &Value) -> u64 {
    frame["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("a frame without a numeric seq: {frame}"))
}

#[track_caller]
fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("/healthz is not JSON ({e}): {body}"))
}

/// The level and target of a log line `TIMESTAMP LEVEL target: message`.
fn level_and_target(line: &str) -> Option<(&str, &str)> {
    let mut words = line.split_whitespace();
    let _timestamp = words.next()?;
    let level = words.next()?;
    let target = words.next()?.strip_suffix(':')?;
    Some((level, target))
}

/// Whether a log target is tablo's own (not sled's or another crate's).
fn is_ours(target: &str) -> bool {
    target == "tablo" || target.starts_with("tablo::")
}

/// The daemon's data dir as the daemon sees it (its tmpfs), reached
/// through `/proc/<pid>/root`.
fn daemon_view(daemon: &Daemon) -> PathBuf {
    let data = daemon.data_dir();
    let relative = data.strip_prefix("/").expect("temp dirs are absolute");
    Path::new("/proc")
        .join(daemon.pid().to_string())
        .join("root")
        .join(relative)
}

/// Fills the file system of `dir` with one file until the kernel says
/// ENOSPC; returns the file's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let chunk = vec![0xa5u8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => panic!("{}: a write of 0 bytes", path.display()),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return path,
            Err(e) => panic!("fill {}: {e}", path.display()),
        }
    }
}

/// `f_type` of the file system holding `path`.
fn statfs_type(path: &Path) -> libc::c_long {
    let c_path = CString::new(path.as_os_str().as_bytes()).expect("no NUL in the path");
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c_path` is a valid C string and `stat` is valid for writes of
    // one `statfs`.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    assert_eq!(
        rc,
        0,
        "statfs {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
    // SAFETY: statfs succeeded, so it filled the struct.
    unsafe { stat.assume_init() }.f_type as libc::c_long
}

/// Fails the test with what is missing unless this machine lets a child
/// mount a tmpfs in a private namespace (root, or unprivileged user
/// namespaces).
fn probe_private_tmpfs(dir: &Path) {
    std::fs::create_dir(dir).expect("create the probe dir");
    let mut cmd = Command::new(TABLO);
    cmd.arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    on_private_tmpfs(&mut cmd, dir);
    let probed = cmd.status();
    assert!(
        probed.as_ref().is_ok_and(|s| s.success()),
        "this test mounts a tmpfs in a private mount namespace, which needs root \
         (as CI runs) or unprivileged user namespaces: {probed:?}"
    );
}

/// Makes `cmd` run in a mount namespace of its own (and, unless we are root,
/// a user namespace in which our ids are root) with a tmpfs of
/// [`TMPFS_SIZE`] mounted on `dir`. Mounts made there never reach the host.
fn on_private_tmpfs(cmd: &mut Command, dir: &Path) {
    let dir = CString::new(dir.as_os_str().as_bytes()).expect("no NUL in a temp path");
    let options = CString::new(format!("size={TMPFS_SIZE},mode=0755")).expect("no NUL");
    // SAFETY: geteuid and getegid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let uid_map = format!("0 {uid} 1");
    let gid_map = format!("0 {gid} 1");
    let hook = move || -> io::Result<()> {
        if uid == 0 {
            unshare(libc::CLONE_NEWNS)?;
        } else {
            unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS)?;
            write_proc(c"/proc/self/setgroups", b"deny")?;
            write_proc(c"/proc/self/uid_map", uid_map.as_bytes())?;
            write_proc(c"/proc/self/gid_map", gid_map.as_bytes())?;
        }
        // Nothing mounted from here on may propagate back to the host.
        mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
        mount(
            Some(c"tmpfs"),
            &dir,
            Some(c"tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&options),
        )
    };
    // SAFETY: the hook runs in the forked child before exec and only makes
    // system calls (unshare, open, write, close, mount) on buffers made
    // before the fork: it allocates nothing and takes no lock.
    unsafe { cmd.pre_exec(hook) };
}

fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare(2) only changes this process's namespaces.
    if unsafe { libc::unshare(flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes `bytes` to the `/proc` file `path` in one write(2), without
/// allocating (this runs between fork and exec).
fn write_proc(path: &CStr, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: `path` is a valid C string; the descriptor is ours alone and
    // closed below; `bytes` is valid for reads of its length.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        let result = if written == bytes.len() as isize {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        };
        libc::close(fd);
        result
    }
}

fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fs_type: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let ptr_of = |s: Option<&CStr>| s.map_or(ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is null or a valid C string that outlives the
    // call.
    let rc = unsafe {
        libc::mount(
            ptr_of(source),
            target.as_ptr(),
            ptr_of(fs_type),
            flags,
            ptr_of(data).cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
