//! A client's reader: the ops it sends, checked and passed on.
//!
//! It enforces the op rate limit, answers what needs no hub state (a bad
//! frame, a refused publish) with an error through the hub, so the reply
//! keeps its place among the others, and forwards every other op to the hub
//! as a [`HubMsg`]. It never writes to the socket.

use std::sync::Arc;
use std::time::Instant;

use async_tungstenite::tungstenite::Message;

use super::{Flow, OPS_BURST, OPS_PER_S, RATE_LIMIT_STRIKES, Session};
use crate::hub::HubMsg;
use crate::outbox::{CLOSE_POLICY, Outbox};
use crate::protocol::{self, ErrorCode, Op, ProtoError, Request};
use crate::ratelimit::TokenBucket;

/// The reader's per-client state.
pub(super) struct Reader<'a> {
    pub(super) session: &'a Session,
    pub(super) outbox: &'a Arc<Outbox>,
    pub(super) limiter: TokenBucket,
    pub(super) strikes: u32,
}

impl Reader<'_> {
    /// Handles one frame from the client.
    pub(super) async fn on_message(&mut self, msg: Message) -> Flow {
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
            Op::Publish { channel, data, key } if self.session.can_publish => {
                HubMsg::ClientPublish {
                    client,
                    channel,
                    data,
                    key,
                    id,
                }
            }
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
