//! Memory of the relay with many idle clients.
//!
//! Starts the release `tablo` binary on the demo feed, reads its RSS, opens
//! N idle WebSocket clients (default 1000; `TABLO_BENCH_CLIENTS` to change),
//! reads RSS again and prints the cost per connection. Run with
//! `cargo bench --bench idle_clients`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

fn main() {
    let clients: usize = std::env::var("TABLO_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let bin = support::release_binary();
    let dir = std::env::temp_dir().join(format!("tablo-bench-{}", std::process::id()));
    let mut child = Command::new(&bin)
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--display",
            "none",
            "--data-dir",
        ])
        .arg(&dir)
        .env("TABLO_LOG", "warn,tablo=info")
        .env_remove("JOURNAL_STREAM")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tablo");
    let addr = listen_addr(&mut child);
    // Let the demo feed settle so the baseline includes a warm hub.
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_kib(child.id());
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(clients);
    for _ in 0..clients {
        sockets.push(open_idle_client(addr));
    }
    let opened_in = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let loaded = rss_kib(child.id());
    println!("tablo idle clients bench ({})", bin.display());
    println!("  idle RSS (demo feed, no clients): {:>8} KiB", idle);
    println!("  RSS with {clients} idle clients:     {:>8} KiB", loaded);
    println!(
        "  per idle client:                  {:>8.1} KiB",
        (loaded.saturating_sub(idle)) as f64 / clients as f64
    );
    println!(
        "  {clients} upgrades took {:.0} ms",
        opened_in.as_secs_f64() * 1e3
    );
    drop(sockets);
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

fn listen_addr(child: &mut Child) -> SocketAddr {
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("tablo exited before listening")
            .expect("read");
        if let Some(rest) = line.split("listening on ").nth(1) {
            let token = rest.split_whitespace().next().unwrap_or("");
            break token.parse().expect("listen address");
        }
    };
    // Keep draining stderr so the daemon never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    addr
}

fn open_idle_client(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    let req = format!(
        "GET /ws?client=bench HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("send upgrade");
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).expect("read 101");
    assert!(buf[..n].starts_with(b"HTTP/1.1 101"), "upgrade refused");
    s
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}
