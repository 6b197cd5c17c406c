//! One WebSocket client: a reader that answers ops and a writer that drains
//! the client's [`Outbox`].
//!
//! The reader parses ops ([`crate::protocol`]), enforces the op rate limit
//! and the frame-size limit, answers `ping` and errors itself and forwards
//! everything that needs hub state to the hub. The writer alone writes to
//! the socket: it takes every queued frame at once and writes the batch
//! with one `writev` (each frame's bytes are the ones the hub serialized,
//! shared by every client; only the 2–10 byte WebSocket header is made
//! here), pings an idle client, and sends the close frame. The WebSocket
//! protocol layer (tungstenite) reads and parses the client's frames; what
//! it writes (pongs, pings, close frames) goes into the outbox through
//! [`Link`] and out with the next batch. Neither task ever blocks the hub:
//! the hub only pushes into the outbox.

use std::future::poll_fn;
use std::io::{self, IoSlice, Write};
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::error::CapacityError;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::{WebSocketSender, WebSocketStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use smol::Async;
use smol::channel::{Sender, bounded};
use smol::future::or;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use smol::net::TcpStream;
use smol::stream::Stream;
use smol::{Task, Timer};

use crate::event::Event;
use crate::hub::{ClientId, HubMsg};
use crate::journal::store::Record;
use crate::journal::writer::{JournalMsg, REPLAY_PAGE};
use crate::outbox::{
    Batch, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, Close, Item, Outbox, Replay,
};
use crate::protocol::{self, ErrorCode, Op, ProtoError, Request};
use crate::ratelimit::TokenBucket;

/// Sustained ops per second a client may send (SPEC §4).
pub const OPS_PER_S: u32 = 50;
/// Ops a client may send in a burst (SPEC §4).
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

/// At most this many frames go into one `writev` (two iovecs each, well
/// under the kernel's 1024): ~16 KiB of ticks, so a long backlog goes out
/// in a few large writes while the iovecs stay on the stack.
pub const FRAMES_PER_WRITE: usize = 64;

/// A writer that always has work looks at its ping timer every this many
/// batches (a busy one writes a few hundred a second at most).
const PING_CHECK_TURNS: u32 = 64;

/// The longest WebSocket frame header: 2 bytes, plus 8 of extended length.
const MAX_HEAD: usize = 10;

/// Who the client is, decided at the upgrade.
pub struct Session {
    /// Unique id.
    pub id: ClientId,
    /// Its `client=` kind.
    pub kind: String,
    /// Whether its token allows `publish`.
    pub can_publish: bool,
    /// The hub's inbox.
    pub hub: Sender<HubMsg>,
    /// The journal writer, for replays.
    pub journal: Option<Sender<JournalMsg>>,
}

/// What woke the reader.
enum Wake {
    Frame(Option<Result<Message, WsError>>),
    WriterDone,
    Idle,
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
            tx: Tx {
                outbox: outbox.clone(),
                socket: Some(Arc::from(socket.clone())),
            },
        })
        .await;
    if joined.is_err() {
        return;
    }
    let (sink, mut stream) = ws.split();
    let mut writer: Task<()> = smol::spawn(write_loop(
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
    };
    let mut idle = Timer::after(IDLE_TIMEOUT);
    let mut writer_done = false;
    loop {
        let wake = or(
            async { Wake::Frame(stream.next().await) },
            or(
                async {
                    (&mut writer).await;
                    Wake::WriterDone
                },
                async {
                    (&mut idle).await;
                    Wake::Idle
                },
            ),
        )
        .await;
        let flow = match wake {
            Wake::WriterDone => {
                writer_done = true;
                Flow::Stop
            }
            Wake::Idle => {
                log::debug!(
                    "client {:016x} silent for {IDLE_TIMEOUT:?}; dropping it",
                    session.id
                );
                outbox.abort(CLOSE_NORMAL, "idle");
                Flow::Stop
            }
            Wake::Frame(None) => Flow::Stop,
            Wake::Frame(Some(Err(WsError::Capacity(CapacityError::MessageTooLong {
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
            Wake::Frame(Some(Err(e))) => {
                log::debug!("client {:016x}: {e}", session.id);
                Flow::Stop
            }
            Wake::Frame(Some(Ok(msg))) => {
                idle.set_after(IDLE_TIMEOUT);
                Box::pin(reader.on_message(msg)).await
            }
        };
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

/// A client's sending side as the hub holds it: the outbox, and the socket
/// for the writes the hub makes itself while the client's writer task is
/// idle ([`Tx::flush`]).
#[derive(Clone, Debug)]
pub struct Tx {
    outbox: Arc<Outbox>,
    socket: Option<Socket>,
}

/// The socket's sending side: non-blocking, shared with the reader.
type Socket = Arc<Async<std::net::TcpStream>>;

impl Tx {
    /// A sending side with no socket: [`Tx::flush`] only wakes the writer.
    /// For tests that drain the outbox themselves.
    pub fn detached(outbox: Arc<Outbox>) -> Tx {
        Tx {
            outbox,
            socket: None,
        }
    }

    /// The client's outbox.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Sends what the hub queued for this client since the last flush.
    /// While the client's writer task is idle, the frames are written here
    /// and now with `writev` on the non-blocking socket (no task wake-up,
    /// no copy); whatever the socket does not take at once, and anything
    /// but frames (a replay, control bytes, a close), is left to the writer
    /// task, woken for it. `batch` is scratch space, left empty.
    pub fn flush(&self, batch: &mut Batch) {
        let Some(socket) = &self.socket else {
            self.outbox.ring();
            return;
        };
        if !self.outbox.begin_flush(batch) {
            return;
        }
        let mut cursor = Cursor::default();
        let rest = match write_now(socket.get_ref(), &[], batch, &mut cursor) {
            Ok(true) => Vec::new(),
            Ok(false) => unwritten(&[], batch, &cursor),
            Err(e) => {
                // The client is gone or its socket broke: the writer finds
                // out on its next write and ends the session.
                log::debug!("writing to a client failed: {e}");
                unwritten(&[], batch, &cursor)
            }
        };
        batch.clear();
        self.outbox.end_flush(&rest);
    }
}

/// The reader's per-client state.
struct Reader<'a> {
    session: &'a Session,
    outbox: &'a Arc<Outbox>,
    limiter: TokenBucket,
    strikes: u32,
}

impl Reader<'_> {
    async fn on_message(&mut self, msg: Message) -> Flow {
        let text = match msg {
            Message::Text(text) => Some(text),
            Message::Binary(_) => None,
            Message::Close(_) => return Flow::Stop,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Flow::Continue,
        };
        if !self.limiter.try_take(Instant::now()) {
            // Each refused op adds a strike and each allowed one takes one
            // away, so a client above the rate, however slightly, piles up
            // strikes and is closed, while a short burst is forgiven.
            self.strikes += 1;
            if self.strikes > RATE_LIMIT_STRIKES {
                log::info!(
                    "client {:016x} kept flooding ops; closing it with 1008",
                    self.session.id
                );
                self.outbox
                    .close(CLOSE_POLICY, "too many ops; at most 50/s");
                return Flow::Stop;
            }
            let id = text
                .as_deref()
                .and_then(|t| protocol::parse_request(t).ok())
                .and_then(|r| r.id);
            return self
                .reply_error(ProtoError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "more than {OPS_PER_S} ops/s (burst {OPS_BURST}); slow down or be disconnected"
                    ),
                    id,
                ))
                .await;
        }
        self.strikes = self.strikes.saturating_sub(1);
        let Some(text) = text else {
            return self
                .reply_error(ProtoError::new(
                    ErrorCode::BadRequest,
                    "binary frames are not supported; send JSON text frames",
                    None,
                ))
                .await;
        };
        match protocol::parse_request(&text) {
            Ok(request) => self.on_request(request).await,
            Err(e) => self.reply_error(e).await,
        }
    }

    async fn on_request(&mut self, Request { id, op }: Request) -> Flow {
        let client = self.session.id;
        let msg = match op {
            Op::Ping => HubMsg::Reply {
                client,
                text: protocol::pong(&id),
            },
            Op::Subscribe {
                channels,
                names,
                since,
                epoch,
            } => HubMsg::Subscribe {
                client,
                channels,
                names,
                since,
                epoch,
                id,
            },
            Op::Unsubscribe { channels, names } => HubMsg::Unsubscribe {
                client,
                channels,
                names,
                id,
            },
            Op::Snapshot { channels } => HubMsg::Snapshot {
                client,
                channels,
                id,
            },
            Op::Stats => HubMsg::Stats { client, id },
            Op::Publish { channel, data } if self.session.can_publish => HubMsg::ClientPublish {
                client,
                channel,
                data,
                id,
            },
            Op::Publish { .. } => {
                return self
                    .reply_error(ProtoError::new(
                        ErrorCode::Unauthorized,
                        "publish needs a token with publish = true; connect with /ws?token=...",
                        id,
                    ))
                    .await;
            }
        };
        match self.session.hub.send(msg).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }

    /// Sends an error reply through the hub, so it keeps its place among
    /// the replies to earlier requests.
    async fn reply_error(&self, error: ProtoError) -> Flow {
        let reply = HubMsg::Reply {
            client: self.session.id,
            text: error.to_json(),
        };
        match self.session.hub.send(reply).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }
}

/// What woke the writer.
enum Due {
    /// Frames, control bytes, a close or a kill.
    Work,
    /// Time to ping.
    Ping,
}

/// Writes batches from the outbox until it closes or the socket fails.
async fn write_loop(
    socket: Socket,
    mut sink: WebSocketSender<Link>,
    outbox: Arc<Outbox>,
    journal: Option<Sender<JournalMsg>>,
) {
    let mut batch = Batch::default();
    let mut control = Vec::new();
    let mut ping = Timer::interval(PING_INTERVAL);
    let mut busy_turns = 0;
    loop {
        let due = poll_fn(|cx| {
            let work = outbox.poll_work(cx).is_ready();
            // The ping timer reads the clock: look at it when there is
            // nothing to do, and every PING_CHECK_TURNS batches when there
            // always is.
            if !work || busy_turns >= PING_CHECK_TURNS {
                busy_turns = 0;
                if Pin::new(&mut ping).poll_next(cx).is_ready() {
                    return Poll::Ready(Due::Ping);
                }
            }
            if work {
                busy_turns += 1;
                Poll::Ready(Due::Work)
            } else {
                Poll::Pending
            }
        })
        .await;
        if let Due::Ping = due {
            // Pinged on a clock, busy or not, so a client that only listens
            // still answers with pongs and is not taken for dead. The ping
            // lands in the outbox's control bytes and goes out next.
            if sink.send(Message::Ping(Default::default())).await.is_err() {
                return;
            }
            continue;
        }
        let taken = outbox.take(&mut batch, &mut control);
        let written = if taken.killed {
            Err(io::ErrorKind::ConnectionAborted.into())
        } else {
            or(
                write_batch(&socket, &control, &batch, journal.as_ref()),
                async {
                    outbox.interrupted().await;
                    Err(io::ErrorKind::ConnectionAborted.into())
                },
            )
            .await
        };
        batch.clear();
        control.clear();
        if written.is_err() {
            // Interrupted (overflow or abort) or the socket failed: make
            // one short attempt at a close frame, then give up.
            let close = outbox.take(&mut batch, &mut control).close;
            batch.clear();
            if let Some(close) = close.or(taken.close) {
                send_close(&socket, &mut sink, &outbox, &close).await;
            }
            return;
        }
        if let Some(close) = taken.close {
            send_close(&socket, &mut sink, &outbox, &close).await;
            return;
        }
    }
}

/// How far a batch has been written.
#[derive(Default)]
struct Cursor {
    /// Control bytes written.
    control: usize,
    /// The first slot not fully written.
    slot: usize,
    /// Bytes of that slot's frame (header and payload) written.
    offset: usize,
}

/// Writes `control`, then every item of `batch`: runs of frames with
/// `writev`, replays from the journal in their place.
async fn write_batch(
    socket: &Socket,
    control: &[u8],
    batch: &Batch,
    journal: Option<&Sender<JournalMsg>>,
) -> io::Result<()> {
    let mut cursor = Cursor::default();
    loop {
        poll_fn(|cx| {
            loop {
                match write_now(socket.get_ref(), control, batch, &mut cursor) {
                    Ok(true) => return Poll::Ready(Ok(())),
                    Ok(false) => match socket.poll_writable(cx) {
                        Poll::Ready(Ok(())) => {}
                        other => return other,
                    },
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        })
        .await?;
        match batch.get(cursor.slot) {
            Some(Item::Replay(replay)) => play_back(socket, journal, replay).await?,
            _ if cursor.slot >= batch.slots() => return Ok(()),
            _ => {}
        }
        cursor.slot += 1;
        cursor.offset = 0;
    }
}

/// Writes what is left of `control` and the frames from `cursor` up to the
/// next replay marker (or the end), [`FRAMES_PER_WRITE`] frames per
/// `writev`, until they are all written (true, with `cursor` on the marker
/// or past the end) or the socket would block (false).
fn write_now(
    socket: &std::net::TcpStream,
    control: &[u8],
    batch: &Batch,
    cursor: &mut Cursor,
) -> io::Result<bool> {
    loop {
        // Left uninitialized: filling ~2 KiB of iovecs for a batch of one
        // frame cost more than the rest of the write path.
        let mut heads = [const { MaybeUninit::<[u8; MAX_HEAD]>::uninit() }; FRAMES_PER_WRITE];
        let mut iov = [const { MaybeUninit::<IoSlice<'_>>::uninit() }; 2 * FRAMES_PER_WRITE + 1];
        let mut n = 0;
        if cursor.control < control.len() {
            iov[n].write(IoSlice::new(&control[cursor.control..]));
            n += 1;
        }
        // Pass 1: the headers of the next frames.
        let mut frames = 0;
        let mut end = cursor.slot;
        while frames < FRAMES_PER_WRITE && end < batch.slots() {
            match batch.get(end) {
                Some(Item::Frame(frame)) => {
                    let mut head = [0u8; MAX_HEAD];
                    encode_head(&mut head, frame.text.len());
                    heads[frames].write(head);
                    frames += 1;
                }
                Some(Item::Replay(_)) => break,
                None => {}
            }
            end += 1;
        }
        // Pass 2: header and payload iovecs, skipping what was written.
        let mut k = 0;
        for slot in cursor.slot..end {
            let Some(Item::Frame(frame)) = batch.get(slot) else {
                continue;
            };
            // SAFETY: pass 1 wrote heads[0..frames], one per frame in
            // cursor.slot..end, in this order.
            let head = unsafe { heads[k].assume_init_ref() };
            k += 1;
            let head = &head[..head_len(frame.text.len())];
            let skip = if slot == cursor.slot {
                cursor.offset
            } else {
                0
            };
            if skip < head.len() {
                iov[n].write(IoSlice::new(&head[skip..]));
                iov[n + 1].write(IoSlice::new(frame.text.as_bytes()));
                n += 2;
            } else {
                iov[n].write(IoSlice::new(&frame.text.as_bytes()[skip - head.len()..]));
                n += 1;
            }
        }
        if n == 0 {
            cursor.slot = end;
            cursor.offset = 0;
            return Ok(true);
        }
        // SAFETY: iov[0..n] were written above; MaybeUninit<T> has T's layout.
        let iov = unsafe { std::slice::from_raw_parts(iov.as_ptr().cast::<IoSlice<'_>>(), n) };
        let mut written = match send_vectored(socket, iov) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => written,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let from_control = written.min(control.len() - cursor.control);
        cursor.control += from_control;
        written -= from_control;
        let mut all = true;
        for slot in cursor.slot..end {
            let Some(Item::Frame(frame)) = batch.get(slot) else {
                continue;
            };
            let left = head_len(frame.text.len()) + frame.text.len() - cursor.offset;
            if written >= left {
                written -= left;
                cursor.slot = slot + 1;
                cursor.offset = 0;
            } else {
                cursor.slot = slot;
                cursor.offset += written;
                all = false;
                break;
            }
        }
        if all && cursor.control == control.len() && frames < FRAMES_PER_WRITE {
            // Everything up to the marker or the end is out.
            cursor.slot = end;
            cursor.offset = 0;
            return Ok(true);
        }
    }
}

/// `sendmsg` of `iov`: what `write_vectored` (`writev`) does, without the
/// file layer's share of the syscall (~10 % of a small send on loopback).
fn send_vectored(socket: &std::net::TcpStream, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no address, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is ABI-compatible with iovec on Unix; sendmsg only reads it.
    msg.msg_iov = iov.as_ptr().cast_mut().cast::<libc::iovec>();
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: msg points at `iov`, which lives across the call; the fd is
    // the socket's own.
    let sent = unsafe {
        libc::sendmsg(
            socket.as_raw_fd(),
            &msg,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

/// The bytes of `control` and of the frames in `batch` that `cursor` has
/// not reached, as they would have been written (up to a replay marker).
fn unwritten(control: &[u8], batch: &Batch, cursor: &Cursor) -> Vec<u8> {
    let mut rest = control[cursor.control.min(control.len())..].to_vec();
    for slot in cursor.slot..batch.slots() {
        match batch.get(slot) {
            Some(Item::Frame(frame)) => {
                let mut head = [0u8; MAX_HEAD];
                let len = encode_head(&mut head, frame.text.len());
                let skip = if slot == cursor.slot {
                    cursor.offset
                } else {
                    0
                };
                let mut whole = head[..len].iter().chain(frame.text.as_bytes());
                rest.extend(whole.by_ref().skip(skip));
            }
            Some(Item::Replay(_)) => break,
            None => {}
        }
    }
    rest
}

/// The length of the header [`encode_head`] writes for `len` bytes.
fn head_len(len: usize) -> usize {
    match len {
        0..126 => 2,
        126..=0xffff => 4,
        _ => 10,
    }
}

/// Writes the header of an unmasked, final text frame of `len` bytes into
/// `out`; returns its length.
fn encode_head(out: &mut [u8; MAX_HEAD], len: usize) -> usize {
    out[0] = 0x81;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if let Ok(len) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Appends `text` as one text frame to `out`.
fn push_frame(out: &mut Vec<u8>, text: &[u8]) {
    let mut head = [0u8; MAX_HEAD];
    let len = encode_head(&mut head, text.len());
    out.extend_from_slice(&head[..len]);
    out.extend_from_slice(text);
}

/// Sends the journaled events of a [`Replay`] in order, pages at a time, with
/// `gap` records where seqs are lost. Paced by the socket: a page is read
/// only after the previous one was written.
async fn play_back(
    socket: &Socket,
    journal: Option<&Sender<JournalMsg>>,
    replay: &Replay,
) -> io::Result<()> {
    let mut cursor = replay.after;
    let mut page = Vec::new();
    while cursor < replay.upto {
        let records = match journal {
            Some(journal) => read_page(journal, cursor).await,
            None => Vec::new(),
        };
        page.clear();
        if records.is_empty() {
            // Not in the journal (it failed or was trimmed meanwhile).
            push_frame(&mut page, &gap(cursor + 1, replay.upto));
            write_all(socket, &page).await?;
            break;
        }
        for record in records {
            match record {
                Record::Event { seq, json, .. } => {
                    if seq > replay.upto {
                        cursor = replay.upto;
                        break;
                    }
                    if seq > cursor + 1 {
                        push_frame(&mut page, &gap(cursor + 1, seq - 1));
                    }
                    cursor = seq;
                    if Event::from_json(&json).is_some_and(|e| replay.subs.matches(&e.body)) {
                        push_frame(&mut page, &json);
                    }
                }
                Record::Gap { from, to } => {
                    let to = to.min(replay.upto);
                    if to > cursor {
                        push_frame(&mut page, &gap(from.max(cursor + 1), to));
                        cursor = to;
                    }
                }
            }
            if cursor >= replay.upto {
                break;
            }
        }
        write_all(socket, &page).await?;
    }
    Ok(())
}

/// Writes all of `bytes`, waiting for the socket as needed.
async fn write_all(socket: &Socket, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = socket.write_with(|s| (&*s).write(bytes)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

async fn read_page(journal: &Sender<JournalMsg>, after: u64) -> Vec<Record> {
    let (reply, records) = bounded(1);
    let asked = journal.send(JournalMsg::Read {
        after,
        limit: REPLAY_PAGE,
        reply,
    });
    if asked.await.is_err() {
        return Vec::new();
    }
    records.recv().await.unwrap_or_default()
}

fn gap(from: u64, to: u64) -> Vec<u8> {
    json!({"type": "gap", "from": from, "to": to})
        .to_string()
        .into_bytes()
}

/// Sends the close frame (through the protocol layer, which then knows the
/// close handshake has begun) and whatever control bytes are queued, for at
/// most [`CLOSE_TIMEOUT`].
async fn send_close(
    socket: &Socket,
    sink: &mut WebSocketSender<Link>,
    outbox: &Outbox,
    close: &Close,
) {
    let frame = CloseFrame {
        code: CloseCode::from(close.code),
        reason: close.reason.into(),
    };
    or(
        async {
            if sink.send(Message::Close(Some(frame))).await.is_err() {
                // The client closed first: tungstenite has queued its echo
                // of the client's close frame; flush that instead.
                let _ = sink.flush().await;
            }
            let mut control = Vec::new();
            outbox.take(&mut Batch::default(), &mut control);
            let _ = write_all(socket, &control).await;
        },
        async {
            Timer::after(CLOSE_TIMEOUT).await;
        },
    )
    .await;
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

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream as StdTcpStream};

    use async_tungstenite::tungstenite::Utf8Bytes;

    use super::*;
    use crate::outbox::Frame;

    /// The text frames in `bytes`, which must hold whole frames only.
    fn parse_frames(mut bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            assert_eq!(bytes[0], 0x81, "a final text frame");
            let (len, at) = match bytes[1] {
                126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(bytes[2..10].try_into().expect("8 bytes")) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            out.push(String::from_utf8(bytes[at..at + len].to_vec()).expect("utf-8"));
            bytes = &bytes[at + len..];
        }
        out
    }

    #[test]
    fn a_batch_larger_than_the_socket_takes_comes_out_whole_and_in_order() {
        // Frames of every header size, empty slots left by conflation, and
        // a socket that takes only part: what write_now wrote plus what
        // unwritten returns must be exactly the frames, in order.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut reader =
            StdTcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (writer, _) = listener.accept().expect("accept");
        writer.set_nonblocking(true).expect("nonblocking");
        let small: libc::c_int = 4096;
        // SAFETY: setsockopt reads an int from a live local.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&writer),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&small as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        let outbox = Outbox::new();
        let mut texts = Vec::new();
        for i in 0..crate::outbox::CONFLATE_AFTER + 40 {
            // Under the outbox's byte cap, over what the socket takes.
            let size = if i == 50 {
                70_000
            } else {
                [5, 300, 9_000][i % 3]
            };
            let text = format!("{i:05}{}", "x".repeat(size));
            outbox.push(Frame {
                text: Utf8Bytes::from(text.clone()),
                key: (i % 3 == 1).then(|| Arc::from(format!("S{}", i % 7))),
            });
            texts.push(text);
        }
        let mut batch = Batch::default();
        let mut control = Vec::new();
        assert!(!outbox.take(&mut batch, &mut control).killed);
        let expected: Vec<String> = batch
            .iter()
            .map(|item| match item {
                Item::Frame(f) => f.text.to_string(),
                Item::Replay(_) => unreachable!(),
            })
            .collect();
        assert!(expected.len() < texts.len(), "some ticks were conflated");
        let mut cursor = Cursor::default();
        let head = b"\x8a\x02hi";
        let done = write_now(&writer, head, &batch, &mut cursor).expect("write");
        assert!(!done, "the socket should not take ~400 KiB at once");
        let rest = unwritten(head, &batch, &cursor);
        drop(writer);
        let mut got = Vec::new();
        reader.read_to_end(&mut got).expect("read");
        got.extend_from_slice(&rest);
        assert_eq!(&got[..4], head);
        assert_eq!(parse_frames(&got[4..]), expected);
    }
}
