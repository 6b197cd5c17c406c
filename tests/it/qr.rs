//! The board's QR code (docs/board.md §10) through the real binary: a fixed
//! URL drawn and read back from the PNG board, `auto` on loopback (no code,
//! one log line saying why), `auto` on every address, `auto` following a
//! LAN address that moves (in a network namespace of the test's own, with
//! a veth pair: no traffic leaves it), and `tablo check`.

use std::path::Path;
use std::time::{Duration, Instant};

use embedded_graphics::pixelcolor::RgbColor;
use tablo::board::Canvas;

use crate::harness::{Daemon, Sandbox};

/// How long a daemon may take to write its first board.
const APPEAR: Duration = Duration::from_secs(20);

/// A small board, quick to write and to read back.
const DISPLAY: &str = "[display]\nwidth = 1280\nheight = 720\n";

/// The QR codes `rqrr` finds in `frame`.
fn codes(frame: &Canvas) -> Vec<String> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let p = frame.pixel(x as u32, y as u32);
        ((u32::from(p.r()) * 3 + u32::from(p.g()) * 6 + u32::from(p.b())) / 10) as u8
    });
    image
        .detect_grids()
        .into_iter()
        .filter_map(|grid| grid.decode().ok().map(|(_, text)| text))
        .collect()
}

/// The daemon's PNG board, once it has one whose codes `ok` accepts (or
/// the last one read when [`APPEAR`] passes).
fn board_codes(png: &Path, ok: impl Fn(&[String]) -> bool) -> Option<Vec<String>> {
    let deadline = Instant::now() + APPEAR;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(frame) = std::fs::read(png)
            .ok()
            .and_then(|b| Canvas::decode(&b).ok())
        {
            let found = codes(&frame);
            if ok(&found) {
                return Some(found);
            }
            last = Some(found);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

#[test]
fn a_fixed_url_is_drawn_and_reads_back() {
    let url = "https://rates.example.com/lobby";
    let config = format!("{DISPLAY}[board]\nqr = \"{url}\"\n");
    let daemon = Daemon::start_with_config(&config, &["--display", "png"]);
    let found = board_codes(&daemon.data_dir().join("board.png"), |c| !c.is_empty());
    assert_eq!(
        found.as_deref(),
        Some(&[url.to_owned()][..]),
        "{}",
        daemon.stderr_tail()
    );
}

#[test]
fn auto_on_loopback_draws_no_code_and_says_why_once() {
    let daemon = Daemon::start_with_config(DISPLAY, &["--display", "png"]);
    daemon.wait_stderr(
        "board: no QR code: the daemon listens on 127.0.0.1:",
        APPEAR,
    );
    let png = daemon.data_dir().join("board.png");
    let found = board_codes(&png, |_| true);
    assert_eq!(found, Some(Vec::new()), "a board without a code");
    let log = daemon.stderr();
    assert_eq!(log.matches("no QR code").count(), 1, "{log}");
    assert!(log.contains("set [server] listen = \"0.0.0.0:"), "{log}");
}

/// On every address, the code holds this machine's LAN address with the
/// bound port (or, with no network, the log says there is none yet).
#[test]
fn auto_on_every_address_shows_the_lan_url() {
    let daemon = Daemon::start_with_config(DISPLAY, &["--display", "png", "--listen", "0.0.0.0:0"]);
    let port = daemon.addr().port();
    let deadline = Instant::now() + APPEAR;
    let url = loop {
        let log = daemon.stderr();
        if let Some(line) = log.lines().find(|l| l.contains("board: QR code for ")) {
            let url = line.split("board: QR code for ").nth(1).unwrap();
            break Some(url.split(' ').next().unwrap().to_owned());
        }
        if log.contains("board: no QR code yet: this machine has no LAN address") {
            break None;
        }
        assert!(Instant::now() < deadline, "no QR log line:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let Some(url) = url else { return };
    assert!(
        url.starts_with("http://") && url.ends_with(&format!(":{port}/")),
        "{url}"
    );
    assert!(
        !url.contains("127.0.0.1") && !url.contains("0.0.0.0"),
        "{url}"
    );
    let found = board_codes(&daemon.data_dir().join("board.png"), |c| !c.is_empty());
    assert_eq!(found, Some(vec![url]));
}

#[test]
fn check_prints_qr_and_rejects_a_bad_one_with_its_line() {
    let sandbox = Sandbox::new();
    let good = sandbox.write("good.toml", "[board]\nqr = \"off\"\n");
    let out = sandbox.tablo(&["check", "--config", good.to_str().unwrap()]);
    out.assert_code(0);
    assert!(out.stdout.contains("\nqr = \"off\"\n"), "{out}");
    let bad = sandbox.write(
        "bad.toml",
        "[board]\ntitle = \"Rates\"\nqr = \"rates.example.com\"\n",
    );
    let out = sandbox.tablo(&["check", "--config", bad.to_str().unwrap()]);
    out.assert_code(78)
        .assert_stderr_has("bad.toml:3")
        .assert_stderr_has("[board] qr: \"rates.example.com\" is not auto, off, or a URL starting with http:// or https://");
}

/// Runs `ip ARGS` in the network namespace of process `pid`.
#[track_caller]
fn ip_in(pid: u32, args: &str) {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("ip")
        .args(args.split(' '))
        .output()
        .expect("nsenter runs");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until the daemon has logged the code for `url` and its board
/// shows it.
#[track_caller]
fn shows(daemon: &Daemon, url: &str) {
    daemon.wait_stderr(&format!("board: QR code for {url} "), APPEAR);
    let png = daemon.data_dir().join("board.png");
    let found = board_codes(&png, |c| c == [url]);
    assert_eq!(
        found,
        Some(vec![url.to_owned()]),
        "{}",
        daemon.stderr_tail()
    );
}

/// A daemon in a network namespace of its own (root only): no network at
/// start, then a LAN with no default route, then a new address (a new DHCP
/// lease) with a default route. The code follows each move, through both
/// ways the address is found, and "no code yet" is said once.
#[test]
fn auto_follows_the_lan_address_when_it_moves() {
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ip", "nsenter"]
        .iter()
        .all(|tool| std::process::Command::new(tool).arg("-V").output().is_ok());
    if !root || !tools {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "under CI=true this test needs root, ip and nsenter (.ci/run installs iproute2)"
        );
        eprintln!("SKIPPED: needs root, ip (iproute2) and nsenter (util-linux)");
        return;
    }
    let daemon = Daemon::start_in_with(
        Sandbox::new(),
        Some(DISPLAY),
        &["--display", "png", "--listen", "0.0.0.0:0"],
        |cmd| {
            cmd.env("TABLO_TEST_QR_RECHECK_MS", "200");
            // SAFETY: the hook runs in the forked child before exec and
            // only calls unshare(2), which allocates nothing and takes no
            // lock.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(cmd, || {
                    if libc::unshare(libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        },
    );
    let port = daemon.addr().port();
    let pid = daemon.pid();
    daemon.wait_stderr(
        "board: no QR code yet: this machine has no LAN address yet",
        APPEAR,
    );
    // A LAN with no way out: the address of its interface route.
    ip_in(pid, "link add v0 type veth peer name v1");
    ip_in(pid, "link set v1 up");
    ip_in(pid, "link set v0 up");
    ip_in(pid, "addr add 10.9.0.2/24 dev v0");
    shows(&daemon, &format!("http://10.9.0.2:{port}/"));
    // A new lease on another subnet, with a default route: the routing
    // table's answer wins over the first interface route (still 10.9.0.0/24).
    ip_in(pid, "addr add 10.9.1.3/24 dev v0");
    ip_in(pid, "route add default via 10.9.1.1");
    shows(&daemon, &format!("http://10.9.1.3:{port}/"));
    let log = daemon.stderr();
    assert_eq!(log.matches("no QR code yet").count(), 1, "{log}");
}
