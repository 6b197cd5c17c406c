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
use smol::channel::Sender;
use smol::future::or;
use smol::io::AsyncReadExt;
use smol::net::TcpStream;
use smol::{Task, Timer};

use crate::hub::{ClientId, HubMsg};
use crate::outbox::{CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, Close, Frame, Outbox};
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
    let mut writer: Task<()> = smol::spawn(write_loop(sink, outbox.clone()));
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
        match msg {
            Message::Text(text) => {
                if !self.limiter.try_take(Instant::now()) {
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
                    let id = protocol::parse_request(&text).ok().and_then(|r| r.id);
                    self.reply_error(&ProtoError::new(
                        ErrorCode::RateLimited,
                        format!(
                            "more than {OPS_PER_S} ops/s (burst {OPS_BURST}); slow down or be disconnected"
                        ),
                        id,
                    ));
                    return Flow::Continue;
                }
                self.strikes = 0;
                match protocol::parse_request(&text) {
                    Ok(request) => self.on_request(request).await,
                    Err(e) => {
                        self.reply_error(&e);
                        Flow::Continue
                    }
                }
            }
            Message::Binary(_) => {
                self.reply_error(&ProtoError::new(
                    ErrorCode::BadRequest,
                    "binary frames are not supported; send JSON text frames",
                    None,
                ));
                Flow::Continue
            }
            Message::Close(_) => Flow::Stop,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Flow::Continue,
        }
    }

    async fn on_request(&mut self, Request { id, op }: Request) -> Flow {
        let client = self.session.id;
        let msg = match op {
            Op::Ping => {
                self.outbox.push(control(protocol::pong(&id)));
                return Flow::Continue;
            }
            Op::Subscribe { since: Some(_), .. } | Op::Subscribe { epoch: Some(_), .. } => {
                self.reply_error(&ProtoError::new(
                    ErrorCode::BadRequest,
                    "resume with \"since\" needs the durable journal, which this build does not have yet; subscribe without \"since\" for live events",
                    id,
                ));
                return Flow::Continue;
            }
            Op::Subscribe {
                channels, names, ..
            } => HubMsg::Subscribe {
                client,
                channels,
                names,
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
            Op::Publish { .. } => {
                let error = if self.session.can_publish {
                    ProtoError::new(
                        ErrorCode::BadRequest,
                        "publish needs the durable journal, which this build does not have yet",
                        id,
                    )
                } else {
                    ProtoError::new(
                        ErrorCode::Unauthorized,
                        "publish needs a token with publish = true; connect with /ws?token=...",
                        id,
                    )
                };
                self.reply_error(&error);
                return Flow::Continue;
            }
        };
        match self.session.hub.send(msg).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }

    fn reply_error(&self, error: &ProtoError) {
        self.outbox.push(control(error.to_json()));
    }
}

fn control(text: String) -> Frame {
    Frame {
        text: text.into(),
        key: None,
    }
}

/// Writes batches from the outbox until it closes or the socket fails.
async fn write_loop(mut sink: WebSocketSender<TcpStream>, outbox: Arc<Outbox>) {
    let mut batch: VecDeque<Frame> = VecDeque::new();
    let mut ping = Timer::interval(PING_INTERVAL);
    loop {
        let close = outbox.take(&mut batch);
        let had_frames = !batch.is_empty();
        if had_frames {
            let written = or(
                async {
                    for frame in batch.drain(..) {
                        sink.feed(Message::Text(frame.text)).await?;
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
            let pinged = or(
                async {
                    outbox.ready().await;
                    false
                },
                async {
                    (&mut ping).await;
                    true
                },
            )
            .await;
            if pinged && sink.send(Message::Ping(Default::default())).await.is_err() {
                return;
            }
        }
    }
}

async fn send_close(sink: &mut WebSocketSender<TcpStream>, close: &Close) {
    let frame = CloseFrame {
        code: CloseCode::from(close.code),
        reason: close.reason.into(),
    };
    or(
        async {
            let _ = sink.send(Message::Close(Some(frame))).await;
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
