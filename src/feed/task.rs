//! The task that runs one feed: connect, subscribe, read, decode, hand events
//! to the hub, and reconnect with backoff when the link dies.
//!
//! Every state change (`connecting`, `up`, `down`) is reported to the hub,
//! which turns it into a `status` event. The decision logic lives in the pure
//! [`Backoff`] and [`Keepalive`]; this file is the I/O around them. It never
//! parses a feed's JSON itself (that is the decoders' job).

use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::error::CapacityError;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_util::StreamExt;
use smol::Timer;
use smol::channel::Sender;
use smol::future::or;

use crate::clock::wall_ms;
use crate::config::{FeedConfig, FeedFormat};
use crate::event::{FeedState, Incoming, Position};
use crate::feed::backoff::{self, Backoff, Outage, Report};
use crate::feed::demo::{DEMO_STEP, Demo};
use crate::feed::keepalive::{Action, Keepalive};
use crate::feed::{DecodeError, Decoder};
use crate::hub::HubMsg;
use crate::logger::RateLimited;

pub(crate) mod mqtt;

/// Dialing, TLS and the WebSocket handshake together must finish in this
/// time, or the attempt counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest upstream message accepted. Binance's `!ticker@arr` sends ~400 KiB
/// arrays; 4 MiB leaves room while bounding what one bad upstream can make
/// a Pi allocate.
pub const MAX_UPSTREAM_MESSAGE: usize = 4 << 20;

/// Undecodable upstream messages are logged at most this often (with a count
/// of the ones not logged), so a feed that sends garbage cannot flood the log.
pub const BAD_MESSAGE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Runs feed number `index` until the task is dropped. `resume` is a
/// chained feed's position saved by an earlier run.
pub async fn run(index: usize, feed: FeedConfig, hub: Sender<HubMsg>, resume: Option<Position>) {
    let link = HubLink {
        index,
        hub: hub.clone(),
    };
    if feed.format == FeedFormat::Demo {
        return run_demo(&link, &feed).await;
    }
    let Some(mut decoder) = Decoder::new(&feed) else {
        return;
    };
    if let (Decoder::Tablo(tablo), Some(position)) = (&mut decoder, resume) {
        log::info!(
            "feed {}: resuming after upstream seq {} (epoch {})",
            feed.name,
            position.since,
            position.epoch
        );
        tablo.resume_from(position);
    }
    let mut backoff = Backoff::new();
    let mut rng = fastrand::Rng::new();
    let mut bad_log = RateLimited::new(BAD_MESSAGE_LOG_INTERVAL);
    let mut outage = Outage::new();
    loop {
        if !link.state(FeedState::Connecting).await {
            return;
        }
        let started = Instant::now();
        let end = match connect(&feed.url).await {
            Ok(ws) => {
                outage.connected();
                log::info!("feed {}: connected to {}", feed.name, feed.url);
                pump(&link, &feed, ws, &mut decoder, &mut bad_log).await
            }
            Err(why) => LinkEnd::ConnectFailed(why),
        };
        let Some(attempt) = link.down(&mut backoff, &mut rng, started).await else {
            return;
        };
        let ending = match &end {
            LinkEnd::HubGone => return,
            LinkEnd::ConnectFailed(why) => Ending::ConnectFailed(why),
            LinkEnd::Lost(why) => Ending::Lost(why),
        };
        report_link_end(&feed, &mut outage, ending, attempt);
        Timer::after(attempt.delay).await;
    }
}

/// How a link ended, as far as the log is concerned.
enum Ending<'a> {
    /// The connect failed, with this reason.
    ConnectFailed(&'a str),
    /// The link was up and died, with this reason.
    Lost(&'a str),
}

/// How long one attempt at a link lasted, and how long to wait before the
/// next.
#[derive(Clone, Copy)]
struct Attempt {
    /// From the start of the connect to the link's end.
    up_for: Duration,
    /// Until the next connect.
    delay: Duration,
}

/// Notes in `outage` how `feed`'s link ended and logs it: a failed connect
/// at its outage's first attempt, then as the outage's [`Report`] says; a lost
/// link always. Shared by the WebSocket feeds and [`mqtt`].
fn report_link_end(feed: &FeedConfig, outage: &mut Outage, ending: Ending<'_>, attempt: Attempt) {
    let Attempt { up_for, delay } = attempt;
    match ending {
        Ending::ConnectFailed(why) => match outage.failed(Instant::now()) {
            Report::First => log::warn!(
                "feed {}: cannot connect to {}: {why}; retrying in {} ms",
                feed.name,
                feed.url,
                delay.as_millis()
            ),
            Report::StillDown { down_for, attempts } => log::warn!(
                "feed {}: still down after {}, {attempts} attempts; the last: {why}; \
                 retrying in {} ms",
                feed.name,
                backoff::minutes(down_for),
                delay.as_millis()
            ),
            Report::Quiet => log::debug!("feed {}: cannot connect: {why}", feed.name),
        },
        Ending::Lost(why) => {
            outage.lost(Instant::now());
            log::warn!(
                "feed {}: link lost after {} s: {why}; reconnecting in {} ms",
                feed.name,
                up_for.as_secs(),
                delay.as_millis()
            );
        }
    }
}

/// The feed's handle on the hub.
struct HubLink {
    index: usize,
    hub: Sender<HubMsg>,
}

impl HubLink {
    /// Reports a state change; false if the hub is gone.
    async fn state(&self, state: FeedState) -> bool {
        self.hub
            .send(HubMsg::FeedState {
                feed: self.index,
                state,
            })
            .await
            .is_ok()
    }

    /// Reports the link down (a link that started at `started`) and asks
    /// `backoff` how long to wait before the next attempt; `None` if the hub
    /// is gone.
    async fn down(
        &self,
        backoff: &mut Backoff,
        rng: &mut fastrand::Rng,
        started: Instant,
    ) -> Option<Attempt> {
        if !self.state(FeedState::Down).await {
            return None;
        }
        let up_for = started.elapsed();
        backoff.link_lasted(up_for);
        let delay = backoff.next_delay(rng.f64());
        Some(Attempt { up_for, delay })
    }

    /// Hands events to the hub; false if the hub is gone.
    async fn publish(&self, events: &mut Vec<Incoming>, mut position: Option<Position>) -> bool {
        let last = events.len().saturating_sub(1);
        for (i, incoming) in events.drain(..).enumerate() {
            let sent = self.hub.send(HubMsg::FeedEvent {
                feed: self.index,
                incoming,
                // On the last event, so the hub journals both together.
                position: if i == last { position.take() } else { None },
            });
            if sent.await.is_err() {
                return false;
            }
        }
        true
    }
}

/// How a connection ended.
enum LinkEnd {
    /// Never got up.
    ConnectFailed(String),
    /// Was up, then died.
    Lost(String),
    /// The hub stopped: the process is shutting down.
    HubGone,
}

type Upstream = async_tungstenite::WebSocketStream<async_tungstenite::smol::ConnectStream>;

async fn connect(url: &str) -> Result<Upstream, String> {
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(MAX_UPSTREAM_MESSAGE))
        .max_frame_size(Some(MAX_UPSTREAM_MESSAGE));
    let attempt = async {
        async_tungstenite::smol::connect_async_with_config(url, Some(config))
            .await
            .map(|(ws, _response)| ws)
            .map_err(|e| e.to_string())
    };
    or(attempt, async {
        Timer::after(CONNECT_TIMEOUT).await;
        Err(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))
    })
    .await
}

/// Subscribes, then reads until the link dies.
async fn pump(
    link: &HubLink,
    feed: &FeedConfig,
    mut ws: Upstream,
    decoder: &mut Decoder,
    bad_log: &mut RateLimited,
) -> LinkEnd {
    for frame in decoder.subscribe_frames() {
        if let Err(e) = ws.send(Message::Text(frame.into())).await {
            return LinkEnd::Lost(format!("sending the subscribe frame failed: {e}"));
        }
    }
    if !link.state(FeedState::Up).await {
        return LinkEnd::HubGone;
    }
    let mut keepalive = Keepalive::new(Instant::now());
    let mut timer = Timer::never();
    let mut events = Vec::new();
    let mut saved = decoder.position();
    loop {
        match keepalive.poll(Instant::now()) {
            Action::Ping => {
                if let Err(e) = ws.send(Message::Ping(Default::default())).await {
                    return LinkEnd::Lost(format!("ping failed: {e}"));
                }
                continue;
            }
            Action::Dead(why) => return LinkEnd::Lost(why.to_string()),
            Action::WaitUntil(at) => {
                timer.set_at(at);
            }
        }
        let next = or(async { Some(ws.next().await) }, async {
            (&mut timer).await;
            None
        })
        .await;
        let Some(next) = next else { continue };
        let now = Instant::now();
        let text = match next {
            None => return LinkEnd::Lost("upstream closed the connection".into()),
            Some(Err(e)) => return LinkEnd::Lost(link_error(&e)),
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(bytes))) => match std::str::from_utf8(&bytes) {
                Ok(text) => text.into(),
                Err(_) => {
                    keepalive.received(now);
                    bad_message(
                        link,
                        feed,
                        bad_log,
                        &DecodeError::NotJson("binary frame".into()),
                    )
                    .await;
                    continue;
                }
            },
            Some(Ok(Message::Pong(_))) => {
                keepalive.pong(now);
                continue;
            }
            Some(Ok(Message::Close(frame))) => {
                let why = frame.map_or_else(
                    || "upstream sent close".to_string(),
                    |f| close_reason(u16::from(f.code), &f.reason),
                );
                return LinkEnd::Lost(why);
            }
            Some(Ok(Message::Ping(_) | Message::Frame(_))) => {
                keepalive.received(now);
                continue;
            }
        };
        keepalive.received(now);
        match decoder.decode(&text, wall_ms(), &mut events) {
            Ok(()) => {}
            Err(e) => {
                events.clear();
                if !bad_message(link, feed, bad_log, &e).await {
                    return LinkEnd::HubGone;
                }
                continue;
            }
        }
        // A chained feed's position travels with the last event it covers,
        // so the journal holds both or neither and a restart resumes exactly
        // after them.
        let position = decoder
            .position()
            .filter(|position| saved.as_ref() != Some(position));
        if position.is_some() {
            saved.clone_from(&position);
        }
        let delivered = match position {
            Some(position) if events.is_empty() => link
                .hub
                .send(HubMsg::FeedPosition {
                    feed: link.index,
                    position,
                })
                .await
                .is_ok(),
            position => link.publish(&mut events, position).await,
        };
        if !delivered {
            return LinkEnd::HubGone;
        }
    }
}

/// Counts and (rate-limited) logs an undecodable message; false if the hub
/// is gone.
async fn bad_message(
    link: &HubLink,
    feed: &FeedConfig,
    log: &mut RateLimited,
    e: &DecodeError,
) -> bool {
    if let Some(suppressed) = log.should_log(Instant::now()) {
        let level = match e {
            DecodeError::Upstream(_) => log::Level::Warn,
            _ => log::Level::Debug,
        };
        log::log!(
            level,
            "feed {}: skipped a message: {e}{}",
            feed.name,
            if suppressed > 0 {
                format!(" ({suppressed} more since the last report)")
            } else {
                String::new()
            }
        );
    }
    link.hub
        .send(HubMsg::FeedBadMessage { feed: link.index })
        .await
        .is_ok()
}

/// Why a link ended, for the log: an oversized message names the cap and
/// says the message was dropped; other errors are as the library says them.
fn link_error(e: &WsError) -> String {
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => format!(
            "the upstream sent a message of {size} bytes, over the cap of {max_size} bytes \
             ({} MiB, MAX_UPSTREAM_MESSAGE); the message was dropped",
            max_size >> 20
        ),
        e => e.to_string(),
    }
}

/// An upstream's close frame, for the log: `upstream sent close 1001`, with
/// the reason in parentheses when there is one.
fn close_reason(code: u16, reason: &str) -> String {
    match reason.trim() {
        "" => format!("upstream sent close {code}"),
        reason => format!("upstream sent close {code} ({reason})"),
    }
}

/// The built-in demo market: no network, so it is up at once.
async fn run_demo(link: &HubLink, feed: &FeedConfig) {
    if !link.state(FeedState::Connecting).await || !link.state(FeedState::Up).await {
        return;
    }
    let mut demo = Demo::new(&feed.name, fastrand::u64(..));
    let mut events = Vec::new();
    demo.first_state(wall_ms(), &mut events);
    if !link.publish(&mut events, None).await {
        return;
    }
    let mut timer = Timer::interval(DEMO_STEP);
    loop {
        (&mut timer).await;
        demo.step(wall_ms(), &mut events);
        if !link.publish(&mut events, None).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_without_a_reason_has_no_stray_separator() {
        assert_eq!(close_reason(1001, ""), "upstream sent close 1001");
        assert_eq!(close_reason(1001, " "), "upstream sent close 1001");
        assert_eq!(
            close_reason(1008, "policy"),
            "upstream sent close 1008 (policy)"
        );
    }

    #[test]
    fn an_oversized_message_names_the_cap_and_says_it_was_dropped() {
        let e = WsError::Capacity(CapacityError::MessageTooLong {
            size: 52_428_847,
            max_size: MAX_UPSTREAM_MESSAGE,
        });
        assert_eq!(
            link_error(&e),
            "the upstream sent a message of 52428847 bytes, over the cap of 4194304 bytes \
             (4 MiB, MAX_UPSTREAM_MESSAGE); the message was dropped"
        );
        assert_eq!(
            link_error(&WsError::ConnectionClosed),
            WsError::ConnectionClosed.to_string()
        );
    }
}
