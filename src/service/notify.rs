//! sd_notify(3) without libsystemd: one datagram per message to the unix
//! socket systemd names in `$NOTIFY_SOCKET`.
//!
//! The protocol is a newline-separated list of `KEY=VALUE` assignments in
//! one datagram (`READY=1`, `WATCHDOG=1`, `STATUS=…`, `STOPPING=1`); the
//! address is a filesystem path (`/run/systemd/notify`) or, with a leading
//! `@`, a Linux abstract socket. systemd learns who sent a message from the
//! socket's credentials, so nothing else is needed.
//!
//! Sending never blocks: the socket is non-blocking, and a message that
//! cannot be sent right now (a full queue on the other side) is dropped and
//! reported to the caller, who decides whether that matters (a lost
//! `WATCHDOG=1` does not: the next one follows at half the interval).
//! This module parses and sends; it never logs and never reads the
//! environment itself except in [`Notifier::from_env`].

use std::fmt;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_VAR: &str = "NOTIFY_SOCKET";

/// Why `$NOTIFY_SOCKET` cannot be used.
#[derive(Debug)]
pub enum NotifyError {
    /// The variable is set but empty.
    Empty,
    /// Neither an absolute path nor `@name` (`vsock:` addresses of newer
    /// systemd versions land here too).
    Unsupported(String),
    /// The address is not a valid unix socket address (too long, a NUL
    /// byte in a path).
    BadAddress {
        /// The value.
        value: String,
        /// Why.
        source: io::Error,
    },
    /// The sending socket could not be made.
    Socket(io::Error),
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::Empty => write!(f, "{NOTIFY_SOCKET_VAR} is set but empty"),
            NotifyError::Unsupported(value) => write!(
                f,
                "{NOTIFY_SOCKET_VAR}={value:?} is neither an absolute socket path nor an abstract @name"
            ),
            NotifyError::BadAddress { value, source } => {
                write!(
                    f,
                    "{NOTIFY_SOCKET_VAR}={value:?} is not a usable unix socket address: {source}"
                )
            }
            NotifyError::Socket(e) => write!(f, "cannot create a socket to notify systemd: {e}"),
        }
    }
}

impl std::error::Error for NotifyError {}

/// A way to talk to the service manager.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for; `Ok(None)` when it is not
    /// set (not started by systemd, or not as `Type=notify`).
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var_os(NOTIFY_SOCKET_VAR) {
            None => Ok(None),
            Some(value) => Notifier::new(&value.to_string_lossy()).map(Some),
        }
    }

    /// A notifier for the address `value`, spelled as in `$NOTIFY_SOCKET`.
    pub fn new(value: &str) -> Result<Notifier, NotifyError> {
        let addr = parse_address(value)?;
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        socket.set_nonblocking(true).map_err(NotifyError::Socket)?;
        Ok(Notifier { socket, addr })
    }

    /// Sends one message (`KEY=VALUE` lines) as one datagram.
    pub fn send(&self, message: &str) -> io::Result<()> {
        let sent = self.socket.send_to_addr(message.as_bytes(), &self.addr)?;
        if sent == message.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", message.len()),
            ))
        }
    }
}

/// Parses a `$NOTIFY_SOCKET` value into a socket address.
fn parse_address(value: &str) -> Result<SocketAddr, NotifyError> {
    let bad = |source| NotifyError::BadAddress {
        value: value.to_owned(),
        source,
    };
    if value.is_empty() {
        Err(NotifyError::Empty)
    } else if value.starts_with('/') {
        SocketAddr::from_pathname(value).map_err(bad)
    } else if let Some(name) = value.strip_prefix('@') {
        abstract_address(name.as_bytes()).map_err(bad)
    } else {
        Err(NotifyError::Unsupported(value.to_owned()))
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_address(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets exist only on Linux",
    ))
}

/// Makes `text` safe as the value of one `KEY=VALUE` line: newlines would
/// start a new assignment, so control characters become spaces.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a datagram within 5 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(path.to_str().unwrap()).unwrap();
        notifier.send("READY=1\nSTATUS=up").unwrap();
        assert_eq!(receive(&server), "READY=1\nSTATUS=up");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("tablo-notify-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let notifier = Notifier::new(&format!("@{name}")).unwrap();
        notifier.send("WATCHDOG=1").unwrap();
        assert_eq!(receive(&server), "WATCHDOG=1");
    }

    #[test]
    fn malformed_addresses_are_refused_with_the_reason() {
        assert!(matches!(Notifier::new(""), Err(NotifyError::Empty)));
        for value in ["run/notify", "vsock:2:1234", "notify"] {
            let e = Notifier::new(value).unwrap_err();
            assert!(matches!(e, NotifyError::Unsupported(_)), "{value}: {e}");
            assert!(e.to_string().contains(value), "{e}");
        }
        let long = format!("/{}", "x".repeat(200));
        let e = Notifier::new(&long).unwrap_err();
        assert!(matches!(e, NotifyError::BadAddress { .. }), "{e}");
        assert!(e.to_string().contains(NOTIFY_SOCKET_VAR), "{e}");
    }

    #[test]
    fn a_socket_nobody_listens_on_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let notifier = Notifier::new(dir.path().join("gone").to_str().unwrap()).unwrap();
        assert!(notifier.send("WATCHDOG=1").is_err());
    }

    #[test]
    fn a_full_receiver_does_not_block_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let _server = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(path.to_str().unwrap()).unwrap();
        // The receiver never reads: its queue fills up and sends start
        // failing with WouldBlock instead of waiting.
        let refused = (0..10_000).find_map(|_| notifier.send("WATCHDOG=1").err());
        assert_eq!(
            refused.map(|e| e.kind()),
            Some(io::ErrorKind::WouldBlock),
            "a full queue should refuse, not block"
        );
    }

    #[test]
    fn one_line_removes_line_breaks() {
        assert_eq!(one_line("a\nb\rc\td"), "a b c d");
        assert_eq!(one_line("feeds: binance up"), "feeds: binance up");
    }
}
