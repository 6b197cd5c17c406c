//! The hub: the one task that numbers events and fans them out.
//!
//! Feeds and client sessions talk to it through a bounded channel of
//! [`HubMsg`]. It owns the client registry and each client's subscriptions,
//! the last-known state (latest tick per symbol, recent news and alerts,
//! latest status per feed) and every relay counter. Each event is serialized
//! once and the same bytes are pushed to every subscribed client's
//! [`Outbox`], which never waits, so a slow client cannot slow the hub or the
//! feeds. Event pushes are quiet: once the hub has handled every message
//! waiting in its inbox, it flushes each client that got something, once
//! ([`Tx::flush`]: it writes the frames itself while the client's writer
//! task is idle), and hands the batch's messages to the journal writer. A
//! sustained fast stream is flushed every [`RING_INTERVAL`], so a client's
//! frames go out together in one write. Replies to a client (hello,
//! subscribed, snapshot, stats) go through the same outbox, so they are
//! ordered with the events around them, and wake the writer at once.
//!
//! The hub never touches the disk, and writes to sockets only through
//! [`Tx::flush`], which never waits.
//!
//! Two concepts have their own files: [`last_known`] (the latest state per
//! key, which answers `snapshot`) and [`report`] (`stats`, `/healthz` and
//! `/metrics`, formatted from the hub's counters).
//!
//! It beats its [`Heartbeat`] on every message and wakes at least every
//! [`MAX_QUIET`] when idle, so the service watchdog can tell a quiet hub
//! from a stuck one.

mod last_known;
mod report;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Utf8Bytes;
use serde_json::{Value, json};
use smol::Timer;
use smol::channel::{Receiver, Sender, TryRecvError};
use smol::future::or;
use smol::stream::StreamExt;

use self::last_known::{LastKnown, MAX_SYMBOLS};
pub use self::report::HealthReport;
use crate::board::feed::BoardFeed;
use crate::clock::wall_ms;
use crate::config::FeedConfig;
use crate::event::{ALERT_TTL, Body, Event, FeedState, Incoming, Position, Status};
use crate::heartbeat::{Heartbeat, MAX_QUIET};
use crate::journal::writer::{JournalHandle, JournalMsg, MAX_PENDING_ACKS, ack_failed};
use crate::logger::RateLimited;
use crate::outbox::{Batch, CLOSE_GOING_AWAY, Frame, Outbox, Push, Replay};
use crate::protocol::{
    ErrorCode, MAX_SUBSCRIPTIONS, MAX_SYMBOL_LEN, ProtoError, Sub, Subscriptions, channels_reply,
    valid_symbol,
};
use crate::publish;
use crate::session::wire::Tx;

/// Capacity of the hub's inbox. Feeds wait when it is full, which is the
/// backpressure we want: 1024 messages is ~10 s of a busy 100 msg/s feed, so
/// a full inbox means the hub is truly stuck, not briefly busy.
pub const INBOX: usize = 1024;

/// The hub sends a client new events (and hands events to the journal) at
/// most this often on average (see [`RING_BURST`]). At 100 events/s (10 ms
/// apart) every event goes out as soon as it is fanned out; at 1000
/// events/s a client gets ~5 frames per write instead of one, and a write
/// costs about as much as one `send()` whatever its size.
/// benches/broadcast.rs, 100 clients at 1000 events/s: 2 ms → 5 ms took CPU
/// per delivered frame from 0.9× to 0.7× the `send()` floor; 10 ms made
/// events at 100/s wait too (p50 0.9 → 6.5 ms). The cost is at most this
/// much added latency, and only when events come faster than this.
pub const RING_INTERVAL: Duration = Duration::from_millis(5);

/// A tick refused because [`MAX_SYMBOLS`] are already kept is logged at
/// most this often (with a count of the ones not logged): the first one
/// says the cap is reached, the repeats that it still refuses.
pub const SYMBOL_CAP_LOG_INTERVAL: Duration = Duration::from_secs(300);

/// At most this many distinct `client=` kinds are counted separately; the
/// rest are counted as `other`, so a client cannot grow the stats map.
pub const MAX_CLIENT_KINDS: usize = 32;

/// Identifies one client connection.
pub type ClientId = u64;

/// Everything the hub is told.
#[derive(Debug)]
pub enum HubMsg {
    /// Feed number `feed` decoded an event.
    FeedEvent {
        /// Index into the configured feeds.
        feed: usize,
        /// The event, not yet numbered.
        incoming: Incoming,
        /// A chained feed's upstream position after this event, journaled
        /// with it.
        position: Option<Position>,
    },
    /// Feed number `feed` changed state.
    FeedState {
        /// Index into the configured feeds.
        feed: usize,
        /// The new state.
        state: FeedState,
    },
    /// Chained feed number `feed` has read its upstream up to `position`.
    FeedPosition {
        /// Index into the configured feeds.
        feed: usize,
        /// How far.
        position: Position,
    },
    /// Feed number `feed` received a message it could not decode.
    FeedBadMessage {
        /// Index into the configured feeds.
        feed: usize,
    },
    /// Feed number `feed` cannot connect for a reason a retry will not fix
    /// (a broker refused its login), or no longer (`None`): `/healthz` and
    /// `stats` show it as the feed's `problem`.
    FeedProblem {
        /// Index into the configured feeds.
        feed: usize,
        /// What is wrong and what to do about it.
        problem: Option<String>,
    },
    /// A client connected; the hub sends its hello.
    Join {
        /// Its id.
        client: ClientId,
        /// Its `client=` kind.
        kind: String,
        /// Where its frames go.
        tx: Tx,
    },
    /// A client disconnected.
    Leave {
        /// Its id.
        client: ClientId,
    },
    /// A client subscribes, possibly resuming after `since`.
    Subscribe {
        /// Its id.
        client: ClientId,
        /// Parsed channels.
        channels: Vec<Sub>,
        /// Channel names for the reply.
        names: Vec<String>,
        /// Replay journaled events after this seq first.
        since: Option<u64>,
        /// The epoch `since` belongs to.
        epoch: Option<String>,
        /// The request id to echo.
        id: Option<Value>,
    },
    /// A client with a publishing token puts an event on a channel.
    ClientPublish {
        /// Its id.
        client: ClientId,
        /// The target channel.
        channel: String,
        /// The event's fields.
        data: serde_json::Map<String, Value>,
        /// The request id to echo in the ack.
        id: Option<Value>,
    },
    /// A client unsubscribes.
    Unsubscribe {
        /// Its id.
        client: ClientId,
        /// Parsed channels.
        channels: Vec<Sub>,
        /// Channel names for the reply.
        names: Vec<String>,
        /// The request id to echo.
        id: Option<Value>,
    },
    /// A client asks for the latest state.
    Snapshot {
        /// Its id.
        client: ClientId,
        /// Channels to include; empty means all.
        channels: Vec<Sub>,
        /// The request id to echo.
        id: Option<Value>,
    },
    /// A client asks for stats.
    Stats {
        /// Its id.
        client: ClientId,
        /// The request id to echo.
        id: Option<Value>,
    },
    /// Send a reply frame (pong, error) to a client, in order with the
    /// hub's own replies.
    Reply {
        /// Its id.
        client: ClientId,
        /// The frame.
        text: String,
    },
    /// `/healthz` asks for health.
    Health {
        /// Where to send it.
        reply: Sender<HealthReport>,
    },
    /// `/metrics` asks for the Prometheus text.
    Metrics {
        /// Where to send it.
        reply: Sender<String>,
    },
    /// Close every client with 1001 and stop.
    Shutdown,
}

/// Where numbering starts, and the journal (absent in unit tests).
pub struct Start {
    /// The journal's epoch.
    pub epoch: String,
    /// The first seq this run hands out.
    pub next_seq: u64,
    /// The journal writer.
    pub journal: Option<JournalHandle>,
}

struct Client {
    kind: Arc<str>,
    tx: Tx,
    subs: Subscriptions,
}

impl Client {
    fn outbox(&self) -> &Outbox {
        self.tx.outbox()
    }
}

struct FeedEntry {
    name: String,
    format: &'static str,
    state: FeedState,
    last_event: Option<Instant>,
    reconnects: u64,
    bad_messages: u64,
    events: u64,
    problem: Option<String>,
}

#[derive(Default)]
struct RelayCounters {
    sessions_total: u64,
    events_in: [u64; 4],
    frames_out: [u64; 4],
    conflations: u64,
    overflow_closes: u64,
    dropped_frames: u64,
    refused_symbols: u64,
}

/// The hub's state. Build with [`Hub::new`], then drive with [`Hub::run`].
pub struct Hub {
    epoch: String,
    journal: Option<JournalHandle>,
    started: Instant,
    next_seq: u64,
    first_seq: Option<u64>,
    event_bytes: u64,
    clients: HashMap<ClientId, Client>,
    kinds: HashMap<Arc<str>, u64>,
    upstreams: Vec<FeedEntry>,
    last: LastKnown,
    counters: RelayCounters,
    /// Refusals for the symbol cap, logged now and then.
    symbol_cap_log: RateLimited,
    /// The renderer's queue, when a board is shown.
    board: Option<BoardFeed>,
    heart: Arc<Heartbeat>,
    /// Clients owed a flush for events pushed quietly since the last one.
    rings: Vec<Tx>,
    /// Messages for the journal writer, handed over with the flushes (one
    /// wake-up of its thread per batch, not per event) and in order.
    journal_out: Vec<JournalMsg>,
    /// Scratch space for flushes.
    scratch: Batch,
}

/// Flushes may come this many in a row faster than [`RING_INTERVAL`]: an
/// event right behind another (an upstream that sent two at once, a late
/// timer) is not held back; only a sustained fast stream is paced.
pub const RING_BURST: u32 = 3;

/// When the hub may flush next: [`RING_INTERVAL`] apart on average, with
/// bursts of up to [`RING_BURST`] (the generic cell rate algorithm).
struct FlushPacer {
    /// When the next flush would be due at the steady pace.
    steady: Instant,
}

impl FlushPacer {
    fn new(now: Instant) -> FlushPacer {
        FlushPacer { steady: now }
    }

    /// The earliest instant the next flush may happen.
    fn next_at(&self) -> Instant {
        let slack = RING_INTERVAL * (RING_BURST - 1);
        self.steady.checked_sub(slack).unwrap_or(self.steady)
    }

    /// A flush happened at `now`.
    fn flushed(&mut self, now: Instant) {
        self.steady = self.steady.max(now) + RING_INTERVAL;
    }
}

/// What the hub's loop does next.
#[allow(
    clippy::large_enum_variant,
    reason = "lives for one turn of the loop; boxing would allocate per message"
)]
enum Turn {
    /// Handle a message.
    Msg(HubMsg),
    /// Wake the writers owed a ring.
    Ring,
    /// Nothing happened for [`MAX_QUIET`]: just beat.
    Idle,
    /// Every sender is gone.
    Stop,
}

impl Hub {
    /// A hub for these feeds, numbering from `start.next_seq` in
    /// `start.epoch`, journaling through `start.journal` when there is one.
    pub fn new(feeds: &[FeedConfig], start: Start, now: Instant) -> Hub {
        Hub {
            epoch: start.epoch,
            journal: start.journal,
            started: now,
            next_seq: start.next_seq.max(1),
            first_seq: None,
            event_bytes: 0,
            clients: HashMap::new(),
            kinds: HashMap::new(),
            upstreams: feeds
                .iter()
                .map(|f| FeedEntry {
                    name: f.name.clone(),
                    format: f.format.name(),
                    state: FeedState::Connecting,
                    last_event: None,
                    reconnects: 0,
                    bad_messages: 0,
                    events: 0,
                    problem: None,
                })
                .collect(),
            last: LastKnown::new(feeds.len()),
            counters: RelayCounters::default(),
            symbol_cap_log: RateLimited::new(SYMBOL_CAP_LOG_INTERVAL),
            board: None,
            heart: Heartbeat::new("hub"),
            rings: Vec::new(),
            journal_out: Vec::new(),
            scratch: Batch::default(),
        }
    }

    /// Shows every event on the board fed by `board` from now on. Dropping
    /// the hub drops it, which stops the renderer.
    pub fn attach_board(&mut self, board: BoardFeed) {
        board.set_clients(self.clients.len());
        self.board = Some(board);
    }

    /// The hub's liveness, for the service watchdog.
    pub fn heartbeat(&self) -> Arc<Heartbeat> {
        self.heart.clone()
    }

    /// Handles messages until [`HubMsg::Shutdown`] or until every sender is
    /// gone.
    pub async fn run(mut self, inbox: Receiver<HubMsg>) {
        if self.heart.injected_stall() {
            // A deadlocked hub, as a test of the watchdog sees it.
            std::future::pending::<()>().await;
        }
        let mut pacer = FlushPacer::new(Instant::now());
        let mut timer = Timer::never();
        // Wakes an idle hub so that it beats; a message that is ready wins.
        let mut idle = Timer::interval(MAX_QUIET);
        let recv = || async {
            match inbox.recv().await {
                Ok(msg) => Turn::Msg(msg),
                Err(_) => Turn::Stop,
            }
        };
        loop {
            let next = match inbox.try_recv() {
                Ok(msg) => Turn::Msg(msg),
                Err(TryRecvError::Closed) => Turn::Stop,
                // Every waiting message is handled: the fan-out batch is
                // complete. Flush its clients, now or when the pacer allows,
                // unless a message comes first.
                Err(TryRecvError::Empty)
                    if self.rings.is_empty() && self.journal_out.is_empty() =>
                {
                    or(recv(), async {
                        idle.next().await;
                        Turn::Idle
                    })
                    .await
                }
                Err(TryRecvError::Empty) => {
                    let due = pacer.next_at();
                    if due <= Instant::now() {
                        Turn::Ring
                    } else {
                        timer.set_at(due);
                        or(recv(), async {
                            (&mut timer).await;
                            Turn::Ring
                        })
                        .await
                    }
                }
            };
            self.heart.beat();
            match next {
                Turn::Msg(msg) => {
                    if !self.handle(msg, Instant::now(), wall_ms()) {
                        break;
                    }
                }
                Turn::Ring => {
                    for tx in self.rings.drain(..) {
                        tx.flush(&mut self.scratch);
                    }
                    self.flush_journal();
                    pacer.flushed(Instant::now());
                }
                Turn::Idle => {}
                Turn::Stop => break,
            }
        }
        for client in self.clients.values() {
            client
                .outbox()
                .close(CLOSE_GOING_AWAY, "server shutting down");
        }
        self.flush_journal();
        if let Some(journal) = &self.journal {
            let last_seq = self.last_seq();
            let _ = journal.tx.send(JournalMsg::Close { last_seq }).await;
        }
    }

    /// Handles one message at `now` (`now_ms` is the same instant as wall
    /// time). Returns false when the hub should stop.
    pub fn handle(&mut self, msg: HubMsg, now: Instant, now_ms: u64) -> bool {
        match msg {
            HubMsg::FeedEvent {
                feed,
                mut incoming,
                position,
            } => {
                // Every event of every decoder (and every publish, below)
                // passes here, so the symbol check and the stripping of
                // hidden characters (docs/protocol.md §6.1) are done once,
                // here, rather than in each format.
                if let Body::Tick(t) = &incoming.body
                    && !self.accepts_symbol(&t.symbol)
                {
                    if let Some(up) = self.upstreams.get_mut(feed) {
                        up.bad_messages += 1;
                    }
                    self.counters.refused_symbols += 1;
                    self.log_symbol_cap(&t.symbol, Some(feed), now);
                } else if !incoming.body.strip_hidden() {
                    // A title or text of nothing but hidden characters.
                    if let Some(up) = self.upstreams.get_mut(feed) {
                        up.bad_messages += 1;
                    }
                } else {
                    if let Some(up) = self.upstreams.get_mut(feed) {
                        up.last_event = Some(now);
                        up.events += 1;
                    }
                    self.publish(incoming, now);
                }
                if let Some(position) = position {
                    self.save_position(feed, &position);
                }
            }
            HubMsg::FeedState { feed, state } => self.feed_state(feed, state, now, now_ms),
            HubMsg::FeedPosition { feed, position } => self.save_position(feed, &position),
            HubMsg::FeedProblem { feed, problem } => {
                if let Some(up) = self.upstreams.get_mut(feed) {
                    up.problem = problem;
                }
            }
            HubMsg::FeedBadMessage { feed } => {
                if let Some(up) = self.upstreams.get_mut(feed) {
                    up.bad_messages += 1;
                }
            }
            HubMsg::Join { client, kind, tx } => self.join(client, kind, tx),
            HubMsg::Leave { client } => self.leave(client),
            HubMsg::Subscribe {
                client,
                channels,
                names,
                since,
                epoch,
                id,
            } => self.subscribe(client, channels, &names, since, epoch, &id, now),
            HubMsg::ClientPublish {
                client,
                channel,
                data,
                id,
            } => self.client_publish(client, &channel, data, id, now_ms, now),
            HubMsg::Unsubscribe {
                client,
                channels,
                names,
                id,
            } => {
                let seq = self.last_seq();
                if let Some(c) = self.clients.get_mut(&client) {
                    c.subs.remove(&channels);
                    let reply = channels_reply("unsubscribed", &names, seq, &id);
                    c.outbox().push(control(reply));
                }
            }
            HubMsg::Snapshot {
                client,
                channels,
                id,
            } => {
                let reply = self
                    .last
                    .snapshot_json(&channels, self.last_seq(), &id, now);
                if let Some(c) = self.clients.get(&client) {
                    c.outbox().push(control(reply));
                }
            }
            HubMsg::Stats { client, id } => {
                let mut stats = self.stats_json(now);
                if let (Some(id), Some(obj)) = (id, stats.as_object_mut()) {
                    obj.insert("id".into(), id);
                }
                if let Some(c) = self.clients.get(&client) {
                    c.outbox().push(control(stats.to_string()));
                }
            }
            HubMsg::Reply { client, text } => {
                if let Some(c) = self.clients.get(&client) {
                    c.outbox().push(control(text));
                }
            }
            HubMsg::Health { reply } => {
                let _ = reply.try_send(self.health(now));
            }
            HubMsg::Metrics { reply } => {
                let _ = reply.try_send(self.metrics());
            }
            HubMsg::Shutdown => return false,
        }
        true
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the fields of one HubMsg::Subscribe"
    )]
    fn subscribe(
        &mut self,
        client: ClientId,
        channels: Vec<Sub>,
        names: &[String],
        since: Option<u64>,
        epoch: Option<String>,
        id: &Option<Value>,
        now: Instant,
    ) {
        let last_seq = self.last_seq();
        let reset = since.and_then(|since| self.reset_reason(since, epoch.as_deref()));
        let snapshot = reset.map(|_| self.last.snapshot_json(&channels, last_seq, &None, now));
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        if let Err(total) = c.subs.add(&channels) {
            let message = format!(
                "that would make {total} channels; a client may hold at most {MAX_SUBSCRIPTIONS}"
            );
            let error = ProtoError::new(ErrorCode::TooLarge, message, id.clone());
            c.outbox().push(control(error.to_json()));
            return;
        }
        c.outbox()
            .push(control(channels_reply("subscribed", names, last_seq, id)));
        match (since, reset, snapshot) {
            (Some(_), Some(reason), Some(snapshot)) => {
                c.outbox().push(control(
                    json!({"type": "reset", "reason": reason}).to_string(),
                ));
                c.outbox().push(control(snapshot));
            }
            (Some(since), _, _) if since < last_seq => {
                // The writer reads the journal for the replay: everything up
                // to last_seq must be with the journal writer before then.
                flush_journal(self.journal.as_ref(), &mut self.journal_out);
                let mut subs = Subscriptions::default();
                // Within the cap: the same channels were just added above.
                let _ = subs.add(&channels);
                c.outbox().push_replay(Replay {
                    after: since,
                    upto: last_seq,
                    subs,
                });
            }
            _ => {}
        }
    }

    /// Why a resume after `since` cannot be served, if it cannot.
    fn reset_reason(&self, since: u64, epoch: Option<&str>) -> Option<&'static str> {
        if epoch.is_some_and(|e| e != self.epoch) {
            return Some("epoch changed: this journal is not the one your since belongs to");
        }
        if since > self.last_seq() {
            return Some("since is ahead of this server's last seq");
        }
        if since == self.last_seq() {
            return None;
        }
        let Some(journal) = &self.journal else {
            return Some("this server keeps no journal");
        };
        // Exact: below this seq events were trimmed (a lost range at the
        // start is not a trim, and is replayed as a gap instead).
        let trimmed_below = journal.status.trimmed_below.load(Ordering::Acquire);
        if since + 1 < trimmed_below {
            return Some("since is older than the journal's retention");
        }
        None
    }

    fn client_publish(
        &mut self,
        client: ClientId,
        channel: &str,
        data: serde_json::Map<String, Value>,
        id: Option<Value>,
        now_ms: u64,
        now: Instant,
    ) {
        let Some(outbox) = self.clients.get(&client).map(|c| c.tx.outbox().clone()) else {
            return;
        };
        let refuse = |code: ErrorCode, message: String| {
            outbox.push(control(
                ProtoError::new(code, message, id.clone()).to_json(),
            ));
        };
        let Some(journal) = self.journal.clone() else {
            return refuse(
                ErrorCode::BadRequest,
                "this server keeps no journal, so it cannot accept publishes".into(),
            );
        };
        if let Some(problem) = journal.status.problem() {
            return refuse(
                ErrorCode::BadRequest,
                format!("the journal is not writable ({problem}); publish later"),
            );
        }
        if journal.status.pending_acks.load(Ordering::Relaxed) >= MAX_PENDING_ACKS as u64 {
            return refuse(
                ErrorCode::RateLimited,
                "too many publishes waiting for the disk; retry shortly".into(),
            );
        }
        let mut body = match publish::body(channel, data) {
            Ok(body) => body,
            Err((code, message)) => return refuse(code, message),
        };
        if !body.strip_hidden() {
            return refuse(
                ErrorCode::BadRequest,
                "the text has nothing but control or format characters".into(),
            );
        }
        if let Body::Tick(t) = &body
            && !self.accepts_symbol(&t.symbol)
        {
            self.log_symbol_cap(&t.symbol, None, now);
            return refuse(
                ErrorCode::BadRequest,
                format!(
                    "symbol must be 1 to {MAX_SYMBOL_LEN} bytes without spaces or control or format characters, and at most {MAX_SYMBOLS} symbols are kept"
                ),
            );
        }
        let seq = self.next_seq;
        self.publish(Incoming { ts: now_ms, body }, now);
        let journaled = self.flush_journal();
        let ack = JournalMsg::Ack {
            seq,
            id: id.clone(),
            outbox: outbox.clone(),
        };
        if !journaled || journal.tx.try_send(ack).is_err() {
            outbox.push(ack_failed(id));
        }
    }

    /// Whether a tick for `symbol` may enter the hub: a well-formed symbol,
    /// already known or with room for one more.
    fn accepts_symbol(&self, symbol: &str) -> bool {
        valid_symbol(symbol) && self.last.has_room_for(symbol)
    }

    /// Warns, now and then, that a tick for `symbol` from feed number
    /// `feed` (`None`: a client's publish) was refused because
    /// [`MAX_SYMBOLS`] are kept (malformed symbols are only counted).
    fn log_symbol_cap(&mut self, symbol: &str, feed: Option<usize>, now: Instant) {
        if !valid_symbol(symbol) {
            return;
        }
        if let Some(suppressed) = self.symbol_cap_log.should_log(now) {
            let from = match feed.and_then(|f| self.upstreams.get(f)) {
                Some(up) => format!("feed {}", up.name),
                None => "a publish".to_owned(),
            };
            log::warn!(
                "{MAX_SYMBOLS} symbols are kept, the most there may be: a tick for the new \
                 symbol {symbol} from {from} was dropped, as are ticks for any other new \
                 symbol{}",
                if suppressed > 0 {
                    format!(" ({suppressed} more dropped since the last of these lines)")
                } else {
                    String::new()
                }
            );
        }
    }

    /// Journals a chained feed's upstream position behind the events
    /// before it.
    fn save_position(&mut self, feed: usize, position: &Position) {
        if let (Some(_), Some(up)) = (&self.journal, self.upstreams.get(feed)) {
            self.journal_out.push(JournalMsg::PutMeta {
                key: Position::key(&up.name),
                value: position.encode(),
            });
        }
    }

    /// Hands the queued messages to the journal writer; false if it could
    /// not take them all (each one missed is counted there as dropped).
    fn flush_journal(&mut self) -> bool {
        flush_journal(self.journal.as_ref(), &mut self.journal_out)
    }

    fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    fn join(&mut self, client: ClientId, kind: String, tx: Tx) {
        let kind: Arc<str> = match self.kinds.get_key_value(kind.as_str()) {
            Some((known, _)) => known.clone(),
            None if self.kinds.len() < MAX_CLIENT_KINDS => Arc::from(kind),
            None => Arc::from("other"),
        };
        *self.kinds.entry(kind.clone()).or_insert(0) += 1;
        self.counters.sessions_total += 1;
        let hello = json!({
            "type": "hello",
            "session": format!("{client:016x}"),
            "epoch": self.epoch,
            "seq": self.last_seq(),
            "server": concat!("tablo/", env!("CARGO_PKG_VERSION")),
        });
        tx.outbox().push(control(hello.to_string()));
        self.clients.insert(
            client,
            Client {
                kind,
                tx,
                subs: Subscriptions::default(),
            },
        );
        if let Some(board) = &self.board {
            board.set_clients(self.clients.len());
        }
    }

    fn leave(&mut self, client: ClientId) {
        if let Some(c) = self.clients.remove(&client)
            && let Some(n) = self.kinds.get_mut(&c.kind)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.kinds.remove(&c.kind);
            }
        }
        if let Some(board) = &self.board {
            board.set_clients(self.clients.len());
        }
    }

    fn feed_state(&mut self, feed: usize, state: FeedState, now: Instant, now_ms: u64) {
        let Some(up) = self.upstreams.get_mut(feed) else {
            return;
        };
        if state == FeedState::Connecting && up.state != FeedState::Connecting {
            up.reconnects += 1;
        }
        up.state = state;
        let body = Body::Status(Status {
            feed: up.name.clone(),
            state,
        });
        self.publish(Incoming { ts: now_ms, body }, now);
    }

    /// Numbers an event, remembers it, fans it out and queues it for the
    /// journal.
    fn publish(&mut self, incoming: Incoming, now: Instant) {
        if let Some(journal) = &self.journal {
            // After the journal was reopened, seqs up to its old reservation
            // are a recorded lost range: number past them.
            let resume_at = journal.status.resume_at.load(Ordering::Acquire);
            if resume_at > self.next_seq {
                self.next_seq = resume_at;
            }
        }
        let event = Event {
            seq: self.next_seq,
            ts: incoming.ts,
            body: incoming.body,
        };
        self.next_seq += 1;
        self.first_seq.get_or_insert(event.seq);
        let text = Utf8Bytes::from(event.to_json());
        self.event_bytes += text.len() as u64;
        let channel = event.body.channel().index();
        self.counters.events_in[channel] += 1;
        let key = match &event.body {
            Body::Tick(t) => Some(self.last.symbol_key(&t.symbol)),
            _ => None,
        };
        let frame = Frame {
            text: text.clone(),
            key: key.clone(),
        };
        let mut overflowed = Vec::new();
        for (id, client) in &self.clients {
            if !client.subs.matches(&event.body) {
                continue;
            }
            let (pushed, owe_ring) = client.outbox().push_quiet(frame.clone());
            if owe_ring {
                self.rings.push(client.tx.clone());
            }
            match pushed {
                Push::Queued => self.counters.frames_out[channel] += 1,
                Push::Conflated => {
                    self.counters.frames_out[channel] += 1;
                    self.counters.conflations += 1;
                }
                Push::Overflow => {
                    self.counters.overflow_closes += 1;
                    self.counters.dropped_frames += 1;
                    overflowed.push(*id);
                }
                Push::Closed => self.counters.dropped_frames += 1,
            }
        }
        for id in overflowed {
            log::info!("client {id:016x} fell too far behind; closing it with 1013");
            self.leave(id);
        }
        if let Some(board) = &mut self.board {
            let last = &self.last;
            board.offer(&event, || last.events());
        }
        let (seq, ts) = (event.seq, event.ts);
        let slot = self.status_slot(&event.body);
        let (put, remove) = self.last.remember(event, text.clone(), key, slot, now);
        if self.journal.is_some() {
            self.journal_out.push(JournalMsg::Append {
                seq,
                ts,
                json: text,
                put,
                remove,
            });
        }
    }

    /// Restores the last-known state from the journal's snapshot tree, so a
    /// restarted daemon serves last-known values before any feed connects.
    /// Events are expected in seq order.
    pub fn restore(&mut self, events: Vec<Event>, now: Instant, now_ms: u64) {
        for event in events {
            let key = match &event.body {
                Body::Tick(t) => Some(self.last.symbol_key(&t.symbol)),
                _ => None,
            };
            // An alert's age counts from its own ts, not from this start.
            let age = Duration::from_millis(now_ms.saturating_sub(event.ts));
            if matches!(event.body, Body::Alert(_)) && age >= ALERT_TTL {
                continue;
            }
            let at = now.checked_sub(age).unwrap_or(now);
            let text = Utf8Bytes::from(event.to_json());
            let slot = self.status_slot(&event.body);
            self.last.remember(event, text, key, slot, at);
        }
    }

    /// Which feed's status slot a status event fills, by the feed's name.
    fn status_slot(&self, body: &Body) -> Option<usize> {
        match body {
            Body::Status(s) => self.upstreams.iter().position(|u| u.name == s.feed),
            _ => None,
        }
    }
}

/// Hands `out` to the journal writer, in order, without waiting; false if
/// it could not take them all.
fn flush_journal(journal: Option<&JournalHandle>, out: &mut Vec<JournalMsg>) -> bool {
    let Some(journal) = journal else {
        out.clear();
        return false;
    };
    let mut all = true;
    for msg in out.drain(..) {
        all &= journal.try_append(msg);
    }
    all
}

/// A reply frame: never conflated.
fn control(text: String) -> Frame {
    Frame {
        text: Utf8Bytes::from(text),
        key: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Channel, News, Tick};
    use crate::outbox::Item;

    fn tick(symbol: &str, price: &str) -> Incoming {
        Incoming {
            ts: 1,
            body: Body::Tick(Tick {
                symbol: symbol.into(),
                price: price.into(),
                source: "test".into(),
                ..Tick::default()
            }),
        }
    }

    fn start(epoch: &str) -> Start {
        Start {
            epoch: epoch.into(),
            next_seq: 1,
            journal: None,
        }
    }

    fn drain(outbox: &Outbox) -> Vec<Value> {
        let mut batch = Batch::default();
        outbox.take(&mut batch, &mut Vec::new());
        batch
            .iter()
            .map(|item| match item {
                Item::Frame(f) => serde_json::from_str(&f.text).expect("json"),
                Item::Replay(r) => json!({"type": "replay", "after": r.after, "upto": r.upto}),
            })
            .collect()
    }

    fn hub_with_client(channels: &[&str]) -> (Hub, Arc<Outbox>) {
        let now = Instant::now();
        let mut hub = Hub::new(&[], start("epoch1"), now);
        let outbox = Outbox::new();
        hub.handle(
            HubMsg::Join {
                client: 1,
                kind: "bot".into(),
                tx: Tx::detached(outbox.clone()),
            },
            now,
            0,
        );
        let subs: Vec<Sub> = channels.iter().filter_map(|c| Sub::parse(c)).collect();
        hub.handle(
            HubMsg::Subscribe {
                client: 1,
                channels: subs,
                names: channels.iter().map(|c| c.to_string()).collect(),
                since: None,
                epoch: None,
                id: None,
            },
            now,
            0,
        );
        (hub, outbox)
    }

    #[test]
    fn the_pacer_lets_a_few_flushes_through_then_paces_them() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut pacer = FlushPacer::new(t0);
        // 1000 events/s: the first RING_BURST flush at once...
        for i in 0..u64::from(RING_BURST) {
            assert!(pacer.next_at() <= ms(i), "flush {i} waits");
            pacer.flushed(ms(i));
        }
        // ...then one per RING_INTERVAL.
        let next = pacer.next_at();
        assert!(next > ms(u64::from(RING_BURST)));
        pacer.flushed(next);
        assert_eq!(pacer.next_at() - next, RING_INTERVAL);
        // After a pause, 100 events/s (10 ms apart) never wait, even with
        // two of them arriving together now and then.
        let mut pacer = FlushPacer::new(t0);
        for i in 0..100 {
            let at = ms(10 * i);
            assert!(pacer.next_at() <= at);
            pacer.flushed(at);
            if i % 7 == 0 {
                assert!(pacer.next_at() <= at);
                pacer.flushed(at);
            }
        }
    }

    #[test]
    fn hello_then_subscribed_then_only_matching_events() {
        let (mut hub, outbox) = hub_with_client(&["prices.BTC"]);
        let now = Instant::now();
        for incoming in [tick("ETH", "1"), tick("BTC", "2")] {
            hub.handle(
                HubMsg::FeedEvent {
                    feed: 0,
                    incoming,
                    position: None,
                },
                now,
                0,
            );
        }
        let frames = drain(&outbox);
        let types: Vec<&str> = frames
            .iter()
            .map(|f| f["type"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(types, ["hello", "subscribed", "tick"]);
        assert_eq!(frames[0]["epoch"], "epoch1");
        assert_eq!(frames[2]["symbol"], "BTC");
        assert_eq!(frames[2]["seq"], 2);
    }

    #[test]
    fn snapshot_holds_latest_tick_per_symbol_in_first_seen_order() {
        let (mut hub, outbox) = hub_with_client(&["news"]);
        let now = Instant::now();
        for incoming in [tick("B", "1"), tick("A", "2"), tick("B", "3")] {
            hub.handle(
                HubMsg::FeedEvent {
                    feed: 0,
                    incoming,
                    position: None,
                },
                now,
                0,
            );
        }
        let news = Incoming {
            ts: 2,
            body: Body::News(News {
                title: "t".into(),
                url: None,
                source: "s".into(),
            }),
        };
        hub.handle(
            HubMsg::FeedEvent {
                feed: 0,
                incoming: news,
                position: None,
            },
            now,
            0,
        );
        drain(&outbox);
        hub.handle(
            HubMsg::Snapshot {
                client: 1,
                channels: vec![],
                id: Some(json!(5)),
            },
            now,
            0,
        );
        let frames = drain(&outbox);
        let snap = &frames[0];
        assert_eq!(snap["type"], "snapshot");
        assert_eq!(snap["seq"], 4);
        assert_eq!(snap["id"], 5);
        let prices: Vec<&str> = snap["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["price"].as_str())
            .collect();
        assert_eq!(prices, ["3", "2"]);
        assert_eq!(snap["events"][2]["type"], "news");
    }

    fn resume(hub: &mut Hub, since: u64, epoch: Option<&str>) -> Vec<Value> {
        let now = Instant::now();
        let outbox = Outbox::new();
        hub.handle(
            HubMsg::Join {
                client: 2,
                kind: "bot".into(),
                tx: Tx::detached(outbox.clone()),
            },
            now,
            0,
        );
        hub.handle(
            HubMsg::Subscribe {
                client: 2,
                channels: vec![Sub::Family(Channel::Prices)],
                names: vec!["prices".into()],
                since: Some(since),
                epoch: epoch.map(str::to_owned),
                id: None,
            },
            now,
            0,
        );
        drain(&outbox)
    }

    #[test]
    fn resume_without_a_journal_is_a_reset_then_snapshot() {
        let (mut hub, _) = hub_with_client(&["news"]);
        let now = Instant::now();
        hub.handle(
            HubMsg::FeedEvent {
                feed: 0,
                incoming: tick("A", "1"),
                position: None,
            },
            now,
            0,
        );
        let frames = resume(&mut hub, 0, None);
        let types: Vec<&str> = frames
            .iter()
            .map(|f| f["type"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(types, ["hello", "subscribed", "reset", "snapshot"]);
        assert_eq!(frames[3]["events"][0]["price"], "1");
    }

    #[test]
    fn wrong_epoch_and_future_since_are_resets() {
        let (mut hub, _) = hub_with_client(&["news"]);
        let now = Instant::now();
        hub.handle(
            HubMsg::FeedEvent {
                feed: 0,
                incoming: tick("A", "1"),
                position: None,
            },
            now,
            0,
        );
        assert_eq!(
            hub.reset_reason(0, Some("other")),
            Some("epoch changed: this journal is not the one your since belongs to")
        );
        assert_eq!(
            hub.reset_reason(5, Some("epoch1")),
            Some("since is ahead of this server's last seq")
        );
        let frames = resume(&mut hub, 1, Some("epoch1"));
        assert_eq!(
            frames.len(),
            2,
            "caught up: no replay, no reset: {frames:?}"
        );
    }

    #[test]
    fn too_many_channels_in_total_is_too_large() {
        let (mut hub, outbox) = hub_with_client(&["prices"]);
        drain(&outbox);
        let now = Instant::now();
        for round in 0..2 {
            let channels: Vec<Sub> = (0..200)
                .map(|i| Sub::Symbol(format!("S{round}-{i}").into()))
                .collect();
            hub.handle(
                HubMsg::Subscribe {
                    client: 1,
                    names: vec![],
                    channels,
                    since: None,
                    epoch: None,
                    id: Some(json!(round)),
                },
                now,
                0,
            );
        }
        let frames = drain(&outbox);
        assert_eq!(frames[0]["type"], "subscribed");
        assert_eq!(frames[1]["code"], "too_large");
        assert_eq!(frames[1]["id"], 1);
    }

    #[test]
    fn invalid_symbols_are_refused_and_counted() {
        let (mut hub, outbox) = hub_with_client(&["prices"]);
        drain(&outbox);
        let now = Instant::now();
        hub.handle(
            HubMsg::FeedEvent {
                feed: 0,
                incoming: tick("bad symbol", "1"),
                position: None,
            },
            now,
            0,
        );
        // A bidi override would let it show as `USDIRR`.
        hub.handle(
            HubMsg::FeedEvent {
                feed: 0,
                incoming: tick("USD\u{202E}RRI", "1"),
                position: None,
            },
            now,
            0,
        );
        assert!(drain(&outbox).is_empty());
        assert!(hub.metrics().contains("tablo_refused_symbols_total 2"));
    }

    #[test]
    fn reconnects_count_returns_to_connecting() {
        let feeds = [FeedConfig {
            name: "binance".into(),
            format: crate::config::FeedFormat::Binance,
            url: "ws://x".into(),
            symbols: vec![],
            subscribe: vec![],
            channels: vec![],
            pointers: Default::default(),
            mqtt: Default::default(),
        }];
        let now = Instant::now();
        let mut hub = Hub::new(&feeds, start("e"), now);
        for state in [
            FeedState::Connecting,
            FeedState::Up,
            FeedState::Down,
            FeedState::Connecting,
            FeedState::Up,
        ] {
            hub.handle(HubMsg::FeedState { feed: 0, state }, now, 0);
        }
        let stats = hub.stats_json(now);
        assert_eq!(stats["upstreams"][0]["reconnects"], 1);
        assert_eq!(stats["upstreams"][0]["state"], "up");
        assert_eq!(stats["journal"]["last_seq"], 5);
        assert!(hub.metrics().contains("tablo_feed_up{feed=\"binance\"} 1"));
    }
}
