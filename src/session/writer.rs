//! A client's writer task: the one task that writes to the client's socket
//! while the hub's direct flush is not writing.
//!
//! It takes everything queued in the outbox at once and writes it with the
//! wire's `sendmsg` ([`super::wire`]), plays back journal replays in their
//! place ([`super::replay`]), pings an idle client, and sends the close
//! frame. It never blocks the hub: the hub only pushes into the outbox.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use async_tungstenite::WebSocketSender;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use futures_util::SinkExt;
use smol::Timer;
use smol::channel::Sender;
use smol::future::or;
use smol::stream::Stream;

use super::replay::play_back;
use super::wire::{Cursor, Socket, write_all, write_now};
use super::{CLOSE_TIMEOUT, Link, PING_INTERVAL};
use crate::journal::writer::JournalMsg;
use crate::outbox::{Batch, Close, Item, Outbox};

/// A writer that always has work looks at its ping timer every this many
/// batches (a busy one writes a few hundred a second at most).
const PING_CHECK_TURNS: u32 = 64;

/// What woke the writer.
enum Due {
    /// Frames, control bytes, a close or a kill.
    Work,
    /// Time to ping.
    Ping,
}

/// Writes batches from the outbox until it closes or the socket fails.
pub(super) async fn write_loop(
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

/// Writes `control`, then every item of `batch`: runs of frames with
/// `sendmsg`, replays from the journal in their place.
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
