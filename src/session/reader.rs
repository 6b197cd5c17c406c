//! A client's reader: the ops it sends, checked and passed on.
//!
//! It enforces the op rate limit and the connection's rights
//! ([`Rights`]: channels outside a JWT's claims, `refresh`), answers what
//! needs no hub state (a bad frame, a refused publish) with an error through
//! the hub, so the reply keeps its place among the others, and forwards
//! every other op to the hub as a [`HubMsg`]. It never writes to the socket.

use std::sync::Arc;
use std::time::Instant;

use async_tungstenite::tungstenite::Message;
use serde_json::Value;

use super::rights::Rights;
use super::{Flow, OPS_BURST, OPS_PER_S, RATE_LIMIT_STRIKES, Session};
use crate::clock;
use crate::hub::HubMsg;
use crate::outbox::{CLOSE_POLICY, Outbox};
use crate::protocol::{self, ErrorCode, Op, ProtoError, Request, Sub};
use crate::ratelimit::TokenBucket;

/// The reader's per-client state.
pub(super) struct Reader<'a> {
    pub(super) session: &'a Session,
    pub(super) outbox: &'a Arc<Outbox>,
    pub(super) limiter: TokenBucket,
    pub(super) strikes: u32,
    pub(super) rights: Rights,
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
        // An expired token reads on until the grace ends, but takes on
        // nothing new (docs/protocol.md §3.1).
        if matches!(
            op,
            Op::Subscribe { .. } | Op::Snapshot { .. } | Op::Publish { .. }
        ) && let Some(expired) = self.rights.expired(&id)
        {
            return self.reply_error(expired).await;
        }
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
            } => {
                let ((channels, names), refused) = self.rights.split(channels, names);
                if !refused.is_empty()
                    && let Flow::Stop = self.refuse_channels(&refused, &id).await
                {
                    return Flow::Stop;
                }
                if channels.is_empty() {
                    return Flow::Continue;
                }
                self.rights.held_add(&channels, &names);
                HubMsg::Subscribe {
                    client,
                    channels,
                    names,
                    since,
                    epoch,
                    id,
                }
            }
            Op::Unsubscribe { channels, names } => {
                self.rights.held_remove(&channels);
                HubMsg::Unsubscribe {
                    client,
                    channels,
                    names,
                    id,
                }
            }
            Op::Snapshot { channels } if channels.is_empty() => match self.rights.snapshot_all() {
                None => HubMsg::Snapshot {
                    client,
                    channels,
                    id,
                },
                Some(granted) if granted.is_empty() => {
                    return self
                        .reply_error(ProtoError::new(
                            ErrorCode::Unauthorized,
                            "your token's channels name no whole channel; ask for a snapshot of named channels",
                            id,
                        ))
                        .await;
                }
                Some(granted) => HubMsg::Snapshot {
                    client,
                    channels: granted,
                    id,
                },
            },
            Op::Snapshot { channels } => {
                // A snapshot names channels but not by the names the client
                // wrote, so each is checked by its canonical name.
                let names = channels.iter().map(sub_name).collect();
                let ((channels, _), refused) = self.rights.split(channels, names);
                if !refused.is_empty()
                    && let Flow::Stop = self.refuse_channels(&refused, &id).await
                {
                    return Flow::Stop;
                }
                if channels.is_empty() {
                    return Flow::Continue;
                }
                HubMsg::Snapshot {
                    client,
                    channels,
                    id,
                }
            }
            Op::Stats => HubMsg::Stats { client, id },
            Op::Publish { channel, data, key } => match self.rights.check_publish(&channel, &id) {
                Ok(()) => HubMsg::ClientPublish {
                    client,
                    channel,
                    data,
                    key,
                    id,
                },
                Err(e) => return self.reply_error(e).await,
            },
            Op::Refresh { token } => {
                let now = (Instant::now(), clock::wall_ms());
                match self
                    .rights
                    .refresh(&self.session.auth, &token, &id, now.0, now.1)
                {
                    Ok(done) => {
                        let (channels, names) = done.dropped;
                        if !channels.is_empty() {
                            let narrow = HubMsg::Unsubscribe {
                                client,
                                channels,
                                names,
                                id: None,
                            };
                            if self.session.hub.send(narrow).await.is_err() {
                                return Flow::Stop;
                            }
                        }
                        HubMsg::Reply {
                            client,
                            text: done.reply,
                        }
                    }
                    Err(e) => return self.reply_error(e).await,
                }
            }
        };
        match self.session.hub.send(msg).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }

    /// Answers `unauthorized` for the channels outside the token's claims.
    async fn refuse_channels(&self, refused: &[String], id: &Option<Value>) -> Flow {
        let shown: Vec<String> = refused
            .iter()
            .take(8)
            .map(|n| n.chars().take(48).collect())
            .collect();
        let more = if refused.len() > shown.len() {
            ", ..."
        } else {
            ""
        };
        let message = format!(
            "not in your token's channels claim: {}{more}; the other channels, if any, are subscribed",
            shown.join(", ")
        );
        self.reply_error(ProtoError::new(
            ErrorCode::Unauthorized,
            message,
            id.clone(),
        ))
        .await
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

/// A channel's name as a client writes it.
fn sub_name(sub: &Sub) -> String {
    match sub {
        Sub::All => "*".to_owned(),
        Sub::Family(channel) => channel.name().to_owned(),
        Sub::Symbol(symbol) => format!("prices.{symbol}"),
    }
}
