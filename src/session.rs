//! One WebSocket client: a reader that answers ops and a writer that drains
//! the client's [`Outbox`].
//!
//! The reader parses ops ([`crate::protocol`]), enforces the op rate limit
//! and the frame-size limit, answers `ping` and errors itself and forwards
//! everything that needs hub state to the hub. The writer owns the socket's
//! sending half: it takes every queued frame at once and writes them as one
//! batch, pings an idle client, and sends the close frame. Neither ever
//! blocks the hub: the hub only pushes into the outbox.

use std::collections::VecDeque;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::error::CapacityError;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::{WebSocketSender, WebSocketStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use smol::channel::{Sender, bounded};
use smol::future::or;
use smol::io::AsyncReadExt;
use smol::net::TcpStream;
use smol::{Task, Timer};

use crate::event::Event;
use crate::hub::{ClientId, HubMsg};
use crate::journal::store::Record;
use crate::journal::writer::{JournalMsg, REPLAY_PAGE};
use crate::outbox::{CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, Close, Item, Outbox, Replay};
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

/// Runs the session until the client or the server closes it.
pub async fn run(session: Session, ws: WebSocketStream<TcpStream>, raw: TcpStream) {
    let outbox = Outbox::new();
    let joined = session
        .hub
        .send(HubMsg::Join {
            client: session.id,
            kind: session.kind.clone(),
            outbox: outbox.clone(),
        })
        .await;
    if joined.is_err() {
        return;
    }
    let (sink, mut stream) = ws.split();
    let mut writer: Task<()> =
        smol::spawn(write_loop(sink, outbox.clone(), session.journal.clone()));
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
                reader.on_message(msg).await
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
    linger(raw).await;
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

/// Writes batches from the outbox until it closes or the socket fails.
async fn write_loop(
    mut sink: WebSocketSender<TcpStream>,
    outbox: Arc<Outbox>,
    journal: Option<Sender<JournalMsg>>,
) {
    let mut batch: VecDeque<Item> = VecDeque::new();
    let mut next_ping = Instant::now() + PING_INTERVAL;
    let mut ping = Timer::at(next_ping);
    loop {
        if Instant::now() >= next_ping {
            // Pinged on a clock, busy or not, so a client that only listens
            // still answers with pongs and is not taken for dead.
            next_ping = Instant::now() + PING_INTERVAL;
            ping.set_at(next_ping);
            if sink.send(Message::Ping(Default::default())).await.is_err() {
                return;
            }
        }
        let close = outbox.take(&mut batch);
        let had_frames = !batch.is_empty();
        if had_frames {
            let written = or(
                async {
                    for item in batch.drain(..) {
                        match item {
                            Item::Frame(frame) => sink.feed(Message::Text(frame.text)).await?,
                            Item::Replay(replay) => {
                                play_back(&mut sink, journal.as_ref(), &replay).await?
                            }
                        }
                    }
                    sink.flush().await
                },
                async {
                    outbox.interrupted().await;
                    Err(WsError::AlreadyClosed)
                },
            )
            .await;
            batch.clear();
            if written.is_err() {
                // Interrupted (overflow or abort) or the socket failed: make
                // one short attempt at a close frame, then give up.
                if let Some(close) = outbox.take(&mut batch) {
                    send_close(&mut sink, &close).await;
                }
                return;
            }
        }
        if let Some(close) = close {
            send_close(&mut sink, &close).await;
            return;
        }
        if !had_frames {
            or(outbox.ready(), async {
                (&mut ping).await;
            })
            .await;
        }
    }
}

/// Sends the journaled events of a [`Replay`] in order, pages at a time, with
/// `gap` records where seqs are lost. Paced by the socket: a page is read
/// only after the previous one was handed to it.
async fn play_back(
    sink: &mut WebSocketSender<TcpStream>,
    journal: Option<&Sender<JournalMsg>>,
    replay: &Replay,
) -> Result<(), WsError> {
    let mut cursor = replay.after;
    while cursor < replay.upto {
        let records = match journal {
            Some(journal) => read_page(journal, cursor).await,
            None => Vec::new(),
        };
        if records.is_empty() {
            // Not in the journal (it failed or was trimmed meanwhile).
            sink.feed(gap(cursor + 1, replay.upto)).await?;
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
                        sink.feed(gap(cursor + 1, seq - 1)).await?;
                    }
                    cursor = seq;
                    if Event::from_json(&json).is_some_and(|e| replay.subs.matches(&e.body)) {
                        let text = String::from_utf8(json).unwrap_or_default();
                        sink.feed(Message::Text(text.into())).await?;
                    }
                }
                Record::Gap { from, to } => {
                    let to = to.min(replay.upto);
                    if to > cursor {
                        sink.feed(gap(from.max(cursor + 1), to)).await?;
                        cursor = to;
                    }
                }
            }
            if cursor >= replay.upto {
                break;
            }
        }
        sink.flush().await?;
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

fn gap(from: u64, to: u64) -> Message {
    Message::Text(
        json!({"type": "gap", "from": from, "to": to})
            .to_string()
            .into(),
    )
}

async fn send_close(sink: &mut WebSocketSender<TcpStream>, close: &Close) {
    let frame = CloseFrame {
        code: CloseCode::from(close.code),
        reason: close.reason.into(),
    };
    or(
        async {
            if sink.send(Message::Close(Some(frame))).await.is_err() {
                // The client closed first: tungstenite has queued its echo
                // of the client's close frame; write that instead.
                let _ = sink.flush().await;
            }
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
