//! A Mosquitto of a test's own (or a bench's: `benches/mqtt.rs` takes this
//! file by `#[path]`): a generated config on a free port of 127.0.0.1,
//! persistence in a given dir, started and awaited until it says it is
//! running, stopped or killed on purpose, killed on drop.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a broker may take to say it is running.
const BROKER_START: Duration = Duration::from_secs(10);

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A Mosquitto of our own: killed on drop.
pub struct Broker {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    dir: PathBuf,
    extra: String,
}

impl Broker {
    /// Starts a broker on a free port with its persistence in `dir`, plus
    /// `extra` config lines.
    pub fn start(dir: &Path, extra: &str) -> Broker {
        Broker::start_on(dir, free_port(), extra)
    }

    /// Starts a broker on `port`.
    pub fn start_on(dir: &Path, port: u16, extra: &str) -> Broker {
        let store = dir.join("mosquitto");
        std::fs::create_dir_all(&store).unwrap();
        let has_listener = extra.contains("allow_anonymous");
        let conf = format!(
            "listener {port} 127.0.0.1\n{}persistence true\npersistence_location {}/\n\
             user root\nlog_dest stderr\nmax_queued_messages 100000\n\
             max_inflight_messages 100\n{extra}\n",
            if has_listener {
                ""
            } else {
                "allow_anonymous true\n"
            },
            store.display()
        );
        let path = dir.join("mosquitto.conf");
        std::fs::write(&path, conf).unwrap();
        let mut child = Command::new(mosquitto())
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mosquitto (apt-get install mosquitto)");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + BROKER_START;
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(" running") => break,
                Ok(line) => seen.push(line),
                Err(_) => panic!("mosquitto did not start:\n{}", seen.join("\n")),
            }
        }
        // The rest of its log is not needed; keep the pipe drained.
        thread::spawn(move || while rx.recv().is_ok() {});
        Broker {
            child,
            port,
            dir: dir.to_path_buf(),
            extra: extra.to_owned(),
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// SIGTERM (the broker saves its sessions) and waits for the exit.
    pub fn stop(mut self) -> (PathBuf, u16, String) {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        (self.dir.clone(), self.port, std::mem::take(&mut self.extra))
    }

    /// SIGKILL: gone at once.
    pub fn kill(mut self) -> (PathBuf, u16, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.dir.clone(), self.port, std::mem::take(&mut self.extra))
    }

    /// `mosquitto_pub` one message; fails the test if it fails.
    pub fn publish(&self, topic: &str, payload: &str, qos: u8, retain: bool) {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", topic, "-m", payload, "-q", &qos.to_string()]);
        if retain {
            cmd.arg("-r");
        }
        let out = cmd.output().expect("run mosquitto_pub");
        assert!(
            out.status.success(),
            "mosquitto_pub failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The mosquitto binary (in /usr/sbin on Debian, which a plain PATH may
/// not hold).
fn mosquitto() -> String {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto".into()
    } else {
        "mosquitto".into()
    }
}
