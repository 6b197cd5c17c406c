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
//!
//! Two things wait for the journal before they reach clients
//! (docs/durability.md §3, §7): a published event, until it is durable, and
//! an event whose seq is past the journal's durable lease, until the lease
//! covers it. Events behind a held one wait with it, so clients still get
//! every seq in order. The hub never blocks on this: it keeps numbering,
//! remembering and journaling, and looks again every [`HOLD_POLL`]. Every
//! event gets its `ts` from [`Stamps`], so `ts` never goes back within an
//! epoch (docs/protocol.md §6.2).

pub mod fanout;
mod last_known;
mod report;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Utf8Bytes;
use serde_json::{Value, json};
use smol::Timer;
use smol::channel::{Receiver, Sender, TryRecvError};
use smol::future::or;
use smol::stream::StreamExt;

use self::fanout::{Fanout, Shard};
use self::last_known::{LastKnown, MAX_SYMBOLS};
pub use self::report::HealthReport;
use crate::board::feed::BoardFeed;
use crate::clock::{ClockState, Stamps, wall_ms};
use crate::config::FeedConfig;
use crate::event::{Alert, Body, Event, FeedState, Incoming, Position, Status, alert_ttl};
use crate::heartbeat::{Heartbeat, MAX_QUIET};
use crate::journal::keys::RecentKeys;
use crate::journal::writer::{JournalHandle, JournalMsg, MAX_PENDING_ACKS, ack_failed};
use crate::logger::RateLimited;
use crate::outbox::{Batch, CLOSE_GOING_AWAY, Frame, Outbox, Push, Replay};
use crate::protocol::{
    ErrorCode, MAX_SUBSCRIPTIONS, MAX_SYMBOL_LEN, ProtoError, Sub, Subscriptions, channels_reply,
    valid_symbol,
};
use crate::publish;
use crate::rules::Rules;
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

/// `stats` lists the open connections of at most this many JWT users (the
/// first by name; `users` counts them all), so the reply stays small with
/// a thousand phones connected.
pub const MAX_USERS_LISTED: usize = 32;

/// While events are held for the journal (see the module docs), the hub
/// looks this often whether they may go out. A commit comes every
/// `flush_interval_ms` (100 ms by default), so a publish and what follows it
/// wait at most this much longer than the commit itself.
pub const HOLD_POLL: Duration = Duration::from_millis(2);

/// At most this many events are held for the journal. ~1 s of a busy 10,000
/// events/s: a commit that takes longer than that is a disk in trouble, and
/// the held events go out anyway (with a warning) rather than stall every
/// client; a publish among them may then reach clients before it is
/// durable.
pub const MAX_HELD: usize = 10_000;

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
        /// Its JWT's `sub`, if it has one.
        user: Option<String>,
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
        /// Its idempotency key.
        key: Option<String>,
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
    /// `/api/snapshot` asks for the `snapshot` reply of every channel.
    ApiSnapshot {
        /// Where to send its JSON.
        reply: Sender<String>,
    },
    /// `/api/stats` asks for the `stats` reply.
    ApiStats {
        /// Where to send its JSON.
        reply: Sender<String>,
    },
    /// The wall clock's state (checked every
    /// [`crate::clock::sync::CHECK_INTERVAL`] by `app`); a change becomes a
    /// clock `status` event.
    Clock {
        /// What the check found.
        state: ClockState,
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
    user: Option<Arc<str>>,
    tx: Tx,
    subs: Subscriptions,
    /// Which fan-out thread writes to it.
    shard: Shard,
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
    /// Open connections per JWT `sub`: at most one entry per client.
    users: BTreeMap<Arc<str>, u64>,
    upstreams: Vec<FeedEntry>,
    last: LastKnown,
    /// The idempotency keys of recent publishes.
    keys: RecentKeys,
    counters: RelayCounters,
    /// Refusals for the symbol cap, logged now and then.
    symbol_cap_log: RateLimited,
    /// The renderer's queue, when a board is shown.
    board: Option<BoardFeed>,
    /// The `[[alert]]` rules, when there are any.
    rules: Option<Rules>,
    heart: Arc<Heartbeat>,
    /// Clients owed a flush for events pushed quietly since the last one,
    /// and the threads that write them (`hub::fanout`).
    fanout: Fanout,
    /// Messages for the journal writer, handed over with the flushes, in
    /// order; the writer takes them on its commit tick (`JournalHandle`).
    journal_out: Vec<JournalMsg>,
    /// Scratch space for flushes.
    scratch: Batch,
    /// The `ts` labels: never lower than the last one.
    stamps: Stamps,
    /// The wall clock as of the last message handled, ms.
    now_ms: u64,
    /// The clock's state as last checked; `None` before the first check.
    clock: Option<ClockState>,
    /// Events numbered but not yet fanned out, oldest first (see the module
    /// docs); at most [`MAX_HELD`].
    held: VecDeque<Held>,
    /// Warns, now and then, that held events went out before the journal
    /// had them.
    held_log: RateLimited,
}

/// An event waiting for the journal before it reaches clients.
struct Held {
    seq: u64,
    /// A client's publish: waits until it is durable. Other events wait for
    /// the lease, and behind a held publish.
    published: bool,
    frame: Frame,
    body: Body,
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
            users: BTreeMap::new(),
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
            keys: RecentKeys::new(),
            counters: RelayCounters::default(),
            symbol_cap_log: RateLimited::new(SYMBOL_CAP_LOG_INTERVAL),
            board: None,
            rules: None,
            heart: Heartbeat::new("hub"),
            fanout: Fanout::new(1),
            journal_out: Vec::new(),
            scratch: Batch::default(),
            stamps: Stamps::new(0, now),
            now_ms: 0,
            clock: None,
            held: VecDeque::new(),
            held_log: RateLimited::new(SYMBOL_CAP_LOG_INTERVAL),
        }
    }

    /// Writes to clients through `fanout`'s threads from now on (before any
    /// client joins; a new hub writes every socket itself). Dropping the hub
    /// stops them.
    pub fn attach_fanout(&mut self, fanout: Fanout) {
        self.fanout = fanout;
    }

    /// Shows every event on the board fed by `board` from now on. Dropping
    /// the hub drops it, which stops the renderer.
    pub fn attach_board(&mut self, board: BoardFeed) {
        board.set_clients(self.clients.len());
        self.board = Some(board);
    }

    /// Evaluates `rules` on every event from now on, and lets them check
    /// their silences on every turn of the loop (at least every
    /// [`MAX_QUIET`]). Their alerts are events like any other.
    pub fn attach_rules(&mut self, rules: Rules) {
        self.rules = Some(rules).filter(|r| !r.is_empty());
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
        // When `timer` is set for: it is set again only for a new time, as
        // each setting is a message to the reactor's thread that wakes it.
        let mut timer_at = None;
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
                    if self.fanout.is_empty()
                        && self.journal_out.is_empty()
                        && !self.held.is_empty() =>
                {
                    or(recv(), async {
                        Timer::after(HOLD_POLL).await;
                        Turn::Idle
                    })
                    .await
                }
                Err(TryRecvError::Empty)
                    if self.fanout.is_empty() && self.journal_out.is_empty() =>
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
                        if timer_at != Some(due) {
                            timer.set_at(due);
                            timer_at = Some(due);
                        }
                        or(recv(), async {
                            (&mut timer).await;
                            Turn::Ring
                        })
                        .await
                    }
                }
            };
            self.heart.beat();
            self.check_rules();
            match next {
                Turn::Msg(msg) => {
                    if !self.handle(msg, Instant::now(), wall_ms()) {
                        break;
                    }
                }
                Turn::Ring => {
                    timer_at = None;
                    self.fanout.flush(&mut self.scratch);
                    self.flush_journal();
                    pacer.flushed(Instant::now());
                }
                Turn::Idle => self.release(),
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
        self.now_ms = now_ms;
        if !self.held.is_empty() {
            self.release();
        }
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
                    self.publish_from(incoming, Some(feed), now, false);
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
            HubMsg::Join {
                client,
                kind,
                user,
                tx,
            } => self.join(client, kind, user, tx),
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
                key,
                id,
            } => self.client_publish(client, &channel, data, key, id, now_ms, now),
            HubMsg::Unsubscribe {
                client,
                channels,
                names,
                id,
            } => {
                let seq = self.out_seq();
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
                let reply = self.snapshot_json(&channels, &id, now);
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
            HubMsg::ApiSnapshot { reply } => {
                let _ = reply.try_send(self.snapshot_json(&[], &None, now));
            }
            HubMsg::ApiStats { reply } => {
                let _ = reply.try_send(self.stats_json(now).to_string());
            }
            HubMsg::Clock { state } => self.clock_state(state, now, now_ms),
            HubMsg::Shutdown => return false,
        }
        true
    }

    /// A snapshot reply of what clients may hold: without the publishes
    /// still waiting to be durable, at the last seq fanned out.
    fn snapshot_json(&self, channels: &[Sub], id: &Option<Value>, now: Instant) -> String {
        let held = &self.held;
        let hidden = |seq: u64| {
            held.front().is_some_and(|h| seq >= h.seq)
                && held.iter().any(|h| h.published && h.seq == seq)
        };
        self.last
            .snapshot_json(channels, self.out_seq(), id, now, &hidden)
    }

    /// The clock was checked: a change is a clock `status` event, and the
    /// journal writer hears of it (it trusts the wall clock for downtime
    /// only while it is synchronized).
    fn clock_state(&mut self, state: ClockState, now: Instant, now_ms: u64) {
        if self.clock == Some(state) {
            return;
        }
        match state {
            ClockState::Unsynchronized => log::warn!(
                "the wall clock is not synchronized (no NTP yet?): event ts and the board's \
                 clock may be far off; ages and retention do not depend on it"
            ),
            ClockState::Synchronized if self.clock.is_some() => {
                log::info!("the wall clock is synchronized")
            }
            _ => {}
        }
        self.clock = Some(state);
        if self.journal.is_some() {
            self.journal_out.push(JournalMsg::Clock { state });
        }
        self.publish(
            Incoming {
                ts: now_ms,
                body: Body::Clock(state),
            },
            now,
            false,
        );
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
        let last_seq = self.out_seq();
        let reset = since.and_then(|since| self.reset_reason(since, epoch.as_deref()));
        let snapshot = reset.map(|_| self.snapshot_json(&channels, &None, now));
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

    #[allow(
        clippy::too_many_arguments,
        reason = "the fields of one HubMsg::ClientPublish"
    )]
    fn client_publish(
        &mut self,
        client: ClientId,
        channel: &str,
        data: serde_json::Map<String, Value>,
        key: Option<String>,
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
        // A repeat of a key in the window is answered with the first
        // publish's seq, once that is durable, and publishes nothing.
        if let Some(seq) = key.as_deref().and_then(|k| self.keys.get(k)) {
            let ack = JournalMsg::Ack {
                seq,
                id: id.clone(),
                outbox: outbox.clone(),
            };
            if journal.tx.try_send(ack).is_err() {
                outbox.push(ack_failed(id));
            }
            return;
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
        self.publish(Incoming { ts: now_ms, body }, now, true);
        let journaled = self.flush_journal();
        if let (true, Some(key)) = (journaled, key) {
            let evicted = self.keys.insert(&key, seq);
            let key = key.into_boxed_str();
            // Lost only with a full journal inbox, which fails the ack too.
            let _ = journal.tx.try_send(JournalMsg::Key { seq, key, evicted });
        }
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

    /// The last seq fanned out to clients: below the first held event. What
    /// `hello`, `subscribed` and snapshots report, and where a replay ends,
    /// so a client never holds a seq it was not sent.
    fn out_seq(&self) -> u64 {
        self.held
            .front()
            .map_or_else(|| self.last_seq(), |h| h.seq - 1)
    }

    fn join(&mut self, client: ClientId, kind: String, user: Option<String>, tx: Tx) {
        let kind: Arc<str> = match self.kinds.get_key_value(kind.as_str()) {
            Some((known, _)) => known.clone(),
            None if self.kinds.len() < MAX_CLIENT_KINDS => Arc::from(kind),
            None => Arc::from("other"),
        };
        *self.kinds.entry(kind.clone()).or_insert(0) += 1;
        self.counters.sessions_total += 1;
        let mut hello = json!({
            "type": "hello",
            "session": format!("{client:016x}"),
            "epoch": self.epoch,
            "seq": self.out_seq(),
            "server": concat!("tablo/", env!("CARGO_PKG_VERSION")),
        });
        let user: Option<Arc<str>> = user.map(|u| match self.users.get_key_value(u.as_str()) {
            Some((known, _)) => known.clone(),
            None => Arc::from(u),
        });
        if let Some(user) = &user {
            *self.users.entry(user.clone()).or_insert(0) += 1;
            hello["user"] = (**user).into();
        }
        tx.outbox().push(control(hello.to_string()));
        let shard = self.fanout.join();
        self.clients.insert(
            client,
            Client {
                kind,
                user,
                tx,
                subs: Subscriptions::default(),
                shard,
            },
        );
        if let Some(board) = &self.board {
            board.set_clients(self.clients.len());
        }
    }

    fn leave(&mut self, client: ClientId) {
        let Some(c) = self.clients.remove(&client) else {
            return;
        };
        self.fanout.leave(c.shard);
        if let Some(n) = self.kinds.get_mut(&c.kind) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.kinds.remove(&c.kind);
            }
        }
        if let Some(user) = &c.user
            && let Some(n) = self.users.get_mut(user)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.users.remove(user);
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
        self.publish(Incoming { ts: now_ms, body }, now, false);
    }

    /// Numbers an event, remembers it, fans it out (or holds it, see the
    /// module docs; `published`: a client's publish) and queues it for the
    /// journal.
    fn publish(&mut self, incoming: Incoming, now: Instant, published: bool) {
        self.publish_from(incoming, None, now, published);
    }

    /// Fires the stale rules that are due, if any. Cheap when none is.
    fn check_rules(&mut self) {
        let Some(rules) = &mut self.rules else {
            return;
        };
        let now = Instant::now();
        if !rules.due(now) {
            return;
        }
        let now_ms = wall_ms();
        let fired = rules.check(now, now_ms);
        self.fire(fired, now_ms, now);
    }

    /// Publishes the alerts rules fired (stamped `ts`), then queues the rule
    /// state they changed for the journal, in the same batch
    /// (docs/durability.md §18).
    fn fire(&mut self, fired: Vec<Alert>, ts: u64, now: Instant) {
        for alert in fired {
            self.publish(
                Incoming {
                    ts,
                    body: Body::Alert(alert),
                },
                now,
                false,
            );
        }
        let Some(rules) = &mut self.rules else {
            return;
        };
        for (key, value) in rules.take_saves(ts) {
            if self.journal.is_some() {
                self.journal_out.push(JournalMsg::PutMeta { key, value });
            }
        }
    }

    /// [`Hub::publish`] for an event from feed number `feed`, which the
    /// rules see as the event's origin.
    fn publish_from(
        &mut self,
        incoming: Incoming,
        feed: Option<usize>,
        now: Instant,
        published: bool,
    ) {
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
            ts: self.stamps.stamp(incoming.ts, now),
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
        if published || !self.held.is_empty() || self.beyond_lease(event.seq) {
            self.held.push_back(Held {
                seq: event.seq,
                published,
                frame,
                body: event.body.clone(),
            });
        } else {
            self.fan_out(frame, &event.body);
        }
        if let Some(board) = &mut self.board {
            let last = &self.last;
            board.offer(&event, || last.events());
        }
        // Alerts a tick fires are stamped with the tick's time.
        let fired = match &mut self.rules {
            Some(rules) => {
                let from = feed
                    .and_then(|f| self.upstreams.get(f))
                    .map(|u| u.name.as_str());
                rules.on_event(&event, from, now, event.ts)
            }
            None => Vec::new(),
        };
        let (seq, ts) = (event.seq, event.ts);
        let slot = self.status_slot(&event.body);
        let (put, remove) = self.last.remember(event, text.clone(), key, slot, now);
        if self.journal.is_some() {
            self.journal_out.push(JournalMsg::Append {
                seq,
                json: text,
                put,
                remove,
            });
        }
        if !fired.is_empty() || self.rules.as_ref().is_some_and(Rules::has_saves) {
            self.fire(fired, ts, now);
        }
    }

    /// Whether `seq` is past the journal's durable lease while the journal
    /// works: it may not reach a client until a commit covers it
    /// (docs/durability.md §3). A failing journal commits nothing, and
    /// relaying goes on without it.
    fn beyond_lease(&self, seq: u64) -> bool {
        self.journal.as_ref().is_some_and(|j| {
            seq > j.status.lease.load(Ordering::Acquire) && j.status.healthy.load(Ordering::Acquire)
        })
    }

    /// Fans out the held events that may go now, in order: a publish once it
    /// is durable (or, if the journal failed first, a one-seq `gap` in its
    /// place: it will never be in the journal), the others once the lease
    /// covers them; all of them when more than [`MAX_HELD`] wait.
    fn release(&mut self) {
        let Some(journal) = self.journal.clone() else {
            // No journal to wait for (unit tests): nothing is held.
            while let Some(h) = self.held.pop_front() {
                self.fan_out(h.frame, &h.body);
            }
            return;
        };
        let durable = journal.status.durable_seq.load(Ordering::Acquire);
        let failed = journal.status.problem().is_some();
        let overfull = self.held.len() > MAX_HELD;
        if overfull && let Some(suppressed) = self.held_log.should_log(Instant::now()) {
            log::warn!(
                "{} events waited for a journal commit that does not come; sent them \
                 before they are durable ({suppressed} times more since the last of these lines)",
                self.held.len()
            );
        }
        while let Some(front) = self.held.front() {
            let go = overfull
                || failed
                || if front.published {
                    front.seq <= durable
                } else {
                    !self.beyond_lease(front.seq)
                };
            if !go {
                break;
            }
            let Some(h) = self.held.pop_front() else {
                break;
            };
            if h.published && failed && h.seq > durable && !overfull {
                let mut text = Vec::new();
                let _ = crate::journal::export::write_gap(&mut text, h.seq, h.seq, 1);
                let frame = Frame {
                    text: Utf8Bytes::from(String::from_utf8_lossy(&text).into_owned()),
                    key: None,
                };
                self.fan_out(frame, &h.body);
            } else {
                self.fan_out(h.frame, &h.body);
            }
        }
    }

    /// Pushes one event's frame to every client subscribed to `body`.
    fn fan_out(&mut self, frame: Frame, body: &Body) {
        let channel = body.channel().index();
        let mut overflowed = Vec::new();
        for (id, client) in &self.clients {
            if !client.subs.matches(body) {
                continue;
            }
            let (pushed, owe_ring) = client.outbox().push_quiet(frame.clone());
            if owe_ring {
                self.fanout.owe(client.shard, client.tx.clone());
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
    }

    /// Takes the idempotency keys the journal remembered (`journal::keys`).
    pub fn restore_keys(&mut self, keys: RecentKeys) {
        self.keys = keys;
    }

    /// Restores the last-known state from the journal's snapshot tree, so a
    /// restarted daemon serves last-known values before any feed connects.
    /// Events are expected in seq order.
    pub fn restore(&mut self, events: Vec<Event>, now: Instant, now_ms: u64) {
        // The newest of them is the journal's newest event (each is the
        // latest of its key): labels go on from its ts.
        let newest = events.iter().map(|e| e.ts).max().unwrap_or(0);
        self.stamps = Stamps::new(newest.max(self.stamps.last()), now);
        for event in events {
            let key = match &event.body {
                Body::Tick(t) => Some(self.last.symbol_key(&t.symbol)),
                _ => None,
            };
            // An alert's age counts from its own ts, not from this start.
            let age = Duration::from_millis(now_ms.saturating_sub(event.ts));
            if let Body::Alert(alert) = &event.body
                && age >= alert_ttl(alert, event.ts)
            {
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
                user: None,
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
    fn users_count_subs_not_sockets_and_hello_names_the_user() {
        let now = Instant::now();
        let mut hub = Hub::new(&[], start("epoch1"), now);
        let mut outboxes = Vec::new();
        for (client, user) in [
            (1, Some("tv")),
            (2, Some("tv")),
            (3, Some("app")),
            (4, None),
        ] {
            let outbox = Outbox::new();
            let join = HubMsg::Join {
                client,
                kind: "kiosk".into(),
                user: user.map(str::to_owned),
                tx: Tx::detached(outbox.clone()),
            };
            hub.handle(join, now, 0);
            let hello = drain(&outbox).remove(0);
            assert_eq!(
                hello["user"],
                user.map_or(Value::Null, Value::from),
                "{hello}"
            );
            outboxes.push(outbox);
        }
        let stats = hub.stats_json(now);
        assert_eq!(
            (stats["connections"].as_u64(), stats["users"].as_u64()),
            (Some(4), Some(2))
        );
        assert_eq!(stats["user_connections"], json!({"app": 1, "tv": 2}));
        hub.handle(HubMsg::Leave { client: 1 }, now, 0);
        hub.handle(HubMsg::Leave { client: 3 }, now, 0);
        let stats = hub.stats_json(now);
        assert_eq!(stats["users"], 1);
        assert_eq!(stats["user_connections"], json!({"tv": 1}));
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
                user: None,
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
    fn a_rule_fires_an_alert_right_after_the_tick_that_crossed_its_line() {
        let (mut hub, outbox) = hub_with_client(&["alerts", "prices"]);
        let mut config = crate::config::Config::defaults_in("/nonexistent");
        config.alerts.push(crate::config::AlertRule {
            name: "usd-60k".into(),
            kind: crate::config::AlertKind::Above {
                price: "60000".into(),
                hysteresis: None,
            },
            symbol: Some("USD".into()),
            feed: None,
            level: crate::config::AlertLevel::Critical,
            text: "{symbol} {price}".into(),
            back_text: None,
            cooldown: Duration::ZERO,
            expires: None,
        });
        let now = Instant::now();
        hub.attach_rules(Rules::new(&config, now));
        drain(&outbox);
        for price in ["59000", "60001"] {
            hub.handle(
                HubMsg::FeedEvent {
                    feed: 0,
                    incoming: tick("USD", price),
                    position: None,
                },
                now,
                0,
            );
        }
        let frames = drain(&outbox);
        let kinds: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
        assert_eq!(kinds, ["tick", "tick", "alert"]);
        let alert = &frames[2];
        assert_eq!(alert["seq"], 3);
        assert_eq!(alert["trigger_seq"], 2);
        assert_eq!(alert["rule"], "usd-60k");
        assert_eq!(alert["text"], "USD 60,001");
        assert_eq!(alert["source"], "rules");
        // In the snapshot too, until it expires.
        hub.handle(
            HubMsg::Snapshot {
                client: 1,
                channels: vec![Sub::Family(Channel::Alerts)],
                id: None,
            },
            now,
            0,
        );
        let snap = drain(&outbox);
        assert_eq!(snap[0]["events"][0]["rule"], "usd-60k");
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

    #[test]
    fn ts_never_goes_back_when_the_clock_steps_90_days_either_way() {
        let (mut hub, outbox) = hub_with_client(&["*"]);
        drain(&outbox);
        let t0 = Instant::now();
        let day = 86_400_000;
        let wall = 1_780_000_000_000;
        // Received at these wall times, these many ms into the run.
        let steps = [
            (wall, 0),
            (wall + 1_000, 1_000),
            (wall - 90 * day + 2_000, 2_000), // stepped back 90 days
            (wall - 90 * day + 3_000, 3_000),
            (wall + 90 * day, 4_000), // and forward 180
        ];
        for (ts, at) in steps {
            let mut incoming = tick("BTC", "1");
            incoming.ts = ts;
            let now = t0 + Duration::from_millis(at);
            let msg = HubMsg::FeedEvent {
                feed: 0,
                incoming,
                position: None,
            };
            hub.handle(msg, now, ts);
        }
        let ts: Vec<u64> = drain(&outbox)
            .iter()
            .filter_map(|f| f["ts"].as_u64())
            .collect();
        // After the backward step, labels go on from the last one at the
        // pace of real time; the forward step is taken as it comes.
        assert_eq!(
            ts,
            [
                wall,
                wall + 1_000,
                wall + 2_000,
                wall + 3_000,
                wall + 90 * day
            ]
        );
        let mut incoming = tick("BTC", "2");
        incoming.ts = wall;
        let now = t0 + Duration::from_millis(5_000);
        let msg = HubMsg::FeedEvent {
            feed: 0,
            incoming,
            position: None,
        };
        hub.handle(msg, now, wall);
        let stats = hub.stats_json(now);
        assert_eq!(stats["clock"]["ts_ahead_ms"], 90 * day + 1_000, "{stats}");
    }

    #[test]
    fn a_change_of_the_clock_state_is_one_status_event_and_in_the_snapshot() {
        let (mut hub, outbox) = hub_with_client(&["status"]);
        drain(&outbox);
        let now = Instant::now();
        for state in [
            ClockState::Unsynchronized,
            ClockState::Unsynchronized,
            ClockState::Synchronized,
        ] {
            hub.handle(HubMsg::Clock { state }, now, 1_780_000_000_000);
        }
        let frames = drain(&outbox);
        let clocks: Vec<&str> = frames.iter().filter_map(|f| f["clock"].as_str()).collect();
        assert_eq!(clocks, ["unsynchronized", "synchronized"], "{frames:?}");
        assert_eq!(frames[0]["type"], "status");
        assert_eq!(frames[0]["channel"], "status");
        assert_eq!(hub.stats_json(now)["clock"]["state"], "synchronized");
        assert!(hub.metrics().contains("tablo_clock_synchronized 1"));
        hub.handle(
            HubMsg::Snapshot {
                client: 1,
                channels: vec![],
                id: None,
            },
            now,
            0,
        );
        let snapshot = &drain(&outbox)[0];
        assert_eq!(snapshot["events"][0]["clock"], "synchronized", "{snapshot}");
    }

    #[test]
    fn publishes_and_seqs_past_the_lease_wait_for_the_journal_in_order() {
        use crate::journal::writer::JournalStatus;
        let (tx, _rx) = smol::channel::bounded(64);
        let status = Arc::new(JournalStatus::default());
        status.healthy.store(true, Ordering::Release);
        status.lease.store(2, Ordering::Release);
        let start = Start {
            epoch: "e".into(),
            next_seq: 1,
            journal: Some(JournalHandle::new(
                tx.clone(),
                status.clone(),
                tx,
                smol::channel::bounded(1).0,
            )),
        };
        let now = Instant::now();
        let mut hub = Hub::new(&[], start, now);
        let outbox = Outbox::new();
        let join = HubMsg::Join {
            client: 1,
            kind: "bot".into(),
            user: None,
            tx: Tx::detached(outbox.clone()),
        };
        hub.handle(join, now, 0);
        let subscribe = HubMsg::Subscribe {
            client: 1,
            channels: vec![Sub::All],
            names: vec!["*".into()],
            since: None,
            epoch: None,
            id: None,
        };
        hub.handle(subscribe, now, 0);
        drain(&outbox);
        let publish = |hub: &mut Hub, text: &str| {
            let mut data = serde_json::Map::new();
            data.insert("level".into(), json!("info"));
            data.insert("text".into(), json!(text));
            let msg = HubMsg::ClientPublish {
                client: 1,
                channel: "alerts".into(),
                data,
                key: None,
                id: None,
            };
            hub.handle(msg, now, 10);
        };
        let feed_tick = |hub: &mut Hub, price: &str| {
            let msg = HubMsg::FeedEvent {
                feed: 0,
                incoming: tick("BTC", price),
                position: None,
            };
            hub.handle(msg, now, 10);
        };
        let seqs = |outbox: &Outbox| -> Vec<(String, u64)> {
            drain(outbox)
                .iter()
                .map(|f| {
                    let kind = f["type"].as_str().unwrap_or("").to_owned();
                    (kind, f["seq"].as_u64().or(f["from"].as_u64()).unwrap_or(0))
                })
                .collect()
        };
        // The publish (seq 1) waits for its commit, and the tick behind it
        // (seq 2) waits with it.
        publish(&mut hub, "one");
        feed_tick(&mut hub, "1");
        assert_eq!(seqs(&outbox), []);
        assert_eq!(hub.out_seq(), 0);
        status.durable_seq.store(1, Ordering::Release);
        hub.release();
        assert_eq!(seqs(&outbox), [("alert".into(), 1), ("tick".into(), 2)]);
        // Seq 3 is past the lease: it waits for a commit to cover it.
        feed_tick(&mut hub, "2");
        assert_eq!(seqs(&outbox), []);
        status.lease.store(100, Ordering::Release);
        hub.release();
        assert_eq!(seqs(&outbox), [("tick".into(), 3)]);
        // A publish whose commit never comes (the journal failed) is a gap
        // of one seq in its place; what followed it goes out.
        publish(&mut hub, "two");
        feed_tick(&mut hub, "3");
        status.healthy.store(false, Ordering::Release);
        hub.release();
        let frames = drain(&outbox);
        assert_eq!(
            frames[0],
            json!({"type": "gap", "from": 4, "to": 4, "handed_out_max": 1})
        );
        assert_eq!(frames[1]["seq"], 5);
    }
}
