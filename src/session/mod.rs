//! One WebSocket client's tasks: a reader that answers ops and a writer
//! that drains the client's [`Outbox`].
//!
//! - [`reader`]: parses ops ([`crate::protocol`]), enforces the op rate
//!   limit, and forwards everything that needs hub state to the hub;
//! - [`writer`]: the task that writes to the socket when the hub's direct
//!   flush does not: batches, replays, pings and the close frame;
//! - [`replay`]: a resume played back from the journal in its place;
//! - [`rights`]: what the client's token lets it do, its expiry and
//!   `refresh`;
//! - [`wire`]: [`Tx`] (the client as the hub holds it) and the `sendmsg`
//!   of WebSocket frames, shared by the hub's flush and the writer.
//!
//! The WebSocket protocol layer (tungstenite) reads and parses the client's
//! frames; what it writes (pongs, pings, close frames) goes into the outbox
//! through [`Link`] and out with the next batch, so only one writer ever
//! touches the socket. No task here ever blocks the hub: the hub only
//! pushes into the outbox.

pub(crate) mod reader;
pub(crate) mod replay;
pub(crate) mod rights;
pub(crate) mod wire;
pub(crate) mod writer;

use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::error::CapacityError;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_util::StreamExt;
use smol::channel::Sender;
use smol::future::or;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use smol::net::TcpStream;
use smol::{Task, Timer};

use self::reader::Reader;
use self::rights::{Deadline, Rights};
use self::wire::Tx;
use self::writer::write_loop;
use crate::auth::{Access, Auth};
use crate::clock;
use crate::hub::{ClientId, HubMsg};
use crate::journal::writer::JournalMsg;
use crate::outbox::{CLOSE_INVALID_DATA, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, Outbox};
use crate::ratelimit::TokenBucket;

/// Sustained ops per second a client may send (docs/protocol.md §16).
pub const OPS_PER_S: u32 = 50;
/// Ops a client may send in a burst (docs/protocol.md §16).
pub const OPS_BURST: u32 = 100;
/// A client that sends this many more ops while rate-limited is closed with
/// 1008: about two more seconds of flooding after the first warning.
pub const RATE_LIMIT_STRIKES: u32 = 100;

/// The writer pings a client this often, so dead links are found and NAT
/// entries stay open.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// A client that sends nothing (not even a pong) for this long is dropped:
/// two missed pings and some slack.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// How long to try to get a close frame out before dropping the socket.
pub const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);
/// After closing, how long to read (and discard) what the client still sends
/// so the close frame is not lost to a TCP reset.
pub const LINGER: Duration = Duration::from_secs(1);

/// Who the client is, decided at the upgrade.
pub struct Session {
    /// Unique id.
    pub id: ClientId,
    /// Its `client=` kind.
    pub kind: String,
    /// What its token lets it do.
    pub access: Access,
    /// The server's token rules, for `refresh`.
    pub auth: Arc<Auth>,
    /// The hub's inbox.
    pub hub: Sender<HubMsg>,
    /// The journal writer, for replays.
    pub journal: Option<Sender<JournalMsg>>,
}

/// What woke the reader.
enum ReaderWake {
    Frame(Option<Result<Message, WsError>>),
    WriterDone,
    Idle,
    Deadline,
}

/// Whether the reader goes on after a frame.
enum Flow {
    Continue,
    Stop,
}

/// Runs the session on an upgraded connection until the client or the
/// server closes it. `leftover` is what the client sent after its request
/// head.
pub async fn run(session: Session, socket: TcpStream, leftover: Vec<u8>, config: WebSocketConfig) {
    let outbox = Outbox::new();
    let link = Link {
        socket: socket.clone(),
        outbox: outbox.clone(),
    };
    // Boxed here and below: a state this future passes through once (or
    // rarely) would otherwise be part of every connection's task for its
    // whole life (benches/idle_clients.rs).
    let ws = Box::pin(async {
        if leftover.is_empty() {
            WebSocketStream::from_raw_socket(link, Role::Server, Some(config)).await
        } else {
            WebSocketStream::from_partially_read(link, leftover, Role::Server, Some(config)).await
        }
    })
    .await;
    let joined = session
        .hub
        .send(HubMsg::Join {
            client: session.id,
            kind: session.kind.clone(),
            user: session.access.user().map(str::to_owned),
            tx: Tx::new(outbox.clone(), Arc::from(socket.clone())),
        })
        .await;
    if joined.is_err() {
        return;
    }
    let (sink, mut stream) = ws.split();
    let mut writer: Task<()> = crate::exec::spawn(write_loop(
        Arc::from(socket.clone()),
        sink,
        outbox.clone(),
        session.journal.clone(),
    ));
    let mut reader = Reader {
        session: &session,
        outbox: &outbox,
        limiter: TokenBucket::new(OPS_PER_S, OPS_BURST, Instant::now()),
        strikes: 0,
        rights: Rights::new(session.access.clone(), Instant::now(), clock::wall_ms()),
    };
    let mut idle = Timer::after(IDLE_TIMEOUT);
    let mut due = reader.rights.deadline();
    let mut deadline = due.map_or_else(Timer::never, Timer::at);
    let mut writer_done = false;
    loop {
        let wake = or(
            async { ReaderWake::Frame(stream.next().await) },
            or(
                async {
                    (&mut writer).await;
                    ReaderWake::WriterDone
                },
                or(
                    async {
                        (&mut idle).await;
                        ReaderWake::Idle
                    },
                    async {
                        (&mut deadline).await;
                        ReaderWake::Deadline
                    },
                ),
            ),
        )
        .await;
        let flow = match wake {
            ReaderWake::WriterDone => {
                writer_done = true;
                Flow::Stop
            }
            ReaderWake::Idle => {
                log::debug!(
                    "client {:016x} silent for {IDLE_TIMEOUT:?}; dropping it",
                    session.id
                );
                outbox.abort(CLOSE_NORMAL, "idle");
                Flow::Stop
            }
            ReaderWake::Frame(None) => Flow::Stop,
            ReaderWake::Frame(Some(Err(WsError::Capacity(CapacityError::MessageTooLong {
                size,
                max_size,
            })))) => {
                log::debug!(
                    "client {:016x} sent a {size}-byte frame (max {max_size})",
                    session.id
                );
                outbox.close(CLOSE_TOO_BIG, "frame larger than max_frame_bytes");
                Flow::Stop
            }
            ReaderWake::Frame(Some(Err(WsError::Utf8(e)))) => {
                log::debug!(
                    "client {:016x} sent a text frame that is not UTF-8: {e}",
                    session.id
                );
                outbox.close(CLOSE_INVALID_DATA, "text frame is not valid UTF-8");
                Flow::Stop
            }
            ReaderWake::Frame(Some(Err(e))) => {
                log::debug!("client {:016x}: {e}", session.id);
                Flow::Stop
            }
            ReaderWake::Frame(Some(Ok(msg))) => {
                idle.set_after(IDLE_TIMEOUT);
                Box::pin(reader.on_message(msg)).await
            }
            ReaderWake::Deadline => match reader.rights.on_deadline(Instant::now()) {
                Some(Deadline::Expired(text)) => {
                    let warn = HubMsg::Reply {
                        client: session.id,
                        text,
                    };
                    match session.hub.send(warn).await {
                        Ok(()) => Flow::Continue,
                        Err(_) => Flow::Stop,
                    }
                }
                Some(Deadline::Close) => {
                    log::debug!(
                        "client {:016x}: token expired and not refreshed; closing it with 1008",
                        session.id
                    );
                    outbox.close(CLOSE_POLICY, "token expired");
                    Flow::Stop
                }
                None => Flow::Continue,
            },
        };
        if reader.rights.deadline() != due {
            due = reader.rights.deadline();
            deadline = due.map_or_else(Timer::never, Timer::at);
        }
        if let Flow::Stop = flow {
            break;
        }
    }
    let _ = session.hub.send(HubMsg::Leave { client: session.id }).await;
    if !writer_done {
        outbox.close(CLOSE_NORMAL, "");
        or(async { (&mut writer).await }, async {
            Timer::after(CLOSE_TIMEOUT).await;
        })
        .await;
    }
    drop(writer);
    drop(stream);
    Box::pin(linger(socket)).await;
}

/// The client's socket as the WebSocket protocol layer sees it: it reads
/// from the socket, and what it writes (pongs, pings, close frames) is
/// queued in the outbox, so that only the writer task writes to the socket
/// and frames never interleave.
pub struct Link {
    socket: TcpStream,
    outbox: Arc<Outbox>,
}

impl AsyncRead for Link {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.outbox.push_control(buf) {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(io::Error::other(
                "the client reads too slowly to take its control frames",
            )))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Half-closes the socket and discards what the client still sends, so it
/// reads our close frame instead of a reset.
async fn linger(mut raw: TcpStream) {
    let _ = raw.shutdown(Shutdown::Write);
    let mut sink = [0u8; 1024];
    or(
        async {
            let mut total = 0usize;
            while let Ok(n) = raw.read(&mut sink).await {
                total += n;
                if n == 0 || total > 1 << 20 {
                    break;
                }
            }
        },
        async {
            Timer::after(LINGER).await;
        },
    )
    .await;
}
