//! One connection's rights while it lives: which channels it may subscribe
//! to and publish on, when its JWT runs out, and what a `refresh` changes
//! (docs/protocol.md §3.1).
//!
//! The rules themselves are `auth`'s; this keeps the per-connection state
//! around them: the current [`Access`], the channels the client holds (so a
//! narrower refresh can end the ones it no longer grants), and the expiry
//! deadline with its grace period. Pure: both clocks are passed in; the
//! reader sends whatever these methods decide.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::auth::{Access, Auth};
use crate::event::Channel;
use crate::protocol::{self, ErrorCode, MAX_SUBSCRIPTIONS, ProtoError, Sub};

/// After `token_expired`, a client has this long to send a `refresh` before
/// it is closed with 1008: enough for an app to fetch a new token from its
/// own server, short enough that an expired token does not keep reading.
pub const REFRESH_GRACE: Duration = Duration::from_secs(10);

/// Where the connection's token stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    /// No expiry (anonymous or a static token).
    Never,
    /// Valid until this instant.
    Live(Instant),
    /// Expired and told so; closed at this instant unless refreshed.
    Grace(Instant),
}

/// What the deadline's passing means.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Deadline {
    /// The token just expired: send this `token_expired` error.
    Expired(String),
    /// The grace period is over: close with 1008.
    Close,
}

/// What a refresh did.
#[derive(Debug)]
pub(super) struct Refreshed {
    /// Channels the new token no longer grants, to unsubscribe (subs and
    /// their names); empty when nothing narrowed.
    pub(super) dropped: (Vec<Sub>, Vec<String>),
    /// The `refreshed` reply.
    pub(super) reply: String,
}

/// One connection's rights.
pub(super) struct Rights {
    access: Access,
    expiry: Expiry,
    /// The channels the client holds, by name, for a JWT connection (others
    /// cannot refresh, so they need no record). Bounded like the hub's
    /// subscriptions: at most [`MAX_SUBSCRIPTIONS`].
    held: HashMap<Sub, String>,
}

impl Rights {
    /// The rights of a connection admitted with `access` at `now` (wall
    /// time `now_ms`).
    pub(super) fn new(access: Access, now: Instant, now_ms: u64) -> Rights {
        let expiry = match access.until_ms() {
            Some(until) => Expiry::Live(deadline(until, now, now_ms)),
            None => Expiry::Never,
        };
        Rights {
            access,
            expiry,
            held: HashMap::new(),
        }
    }

    /// When [`Rights::on_deadline`] is due, if ever.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.expiry {
            Expiry::Never => None,
            Expiry::Live(at) | Expiry::Grace(at) => Some(at),
        }
    }

    /// The deadline has passed at `now`.
    pub(super) fn on_deadline(&mut self, now: Instant) -> Option<Deadline> {
        match self.expiry {
            Expiry::Live(at) if now >= at => {
                self.expiry = Expiry::Grace(now + REFRESH_GRACE);
                Some(Deadline::Expired(expired_error(None).to_json()))
            }
            Expiry::Grace(at) if now >= at => Some(Deadline::Close),
            _ => None,
        }
    }

    /// The error for an op that needs a live token, when it has expired.
    pub(super) fn expired(&self, id: &Option<Value>) -> Option<ProtoError> {
        matches!(self.expiry, Expiry::Grace(_)).then(|| expired_error(id.clone()))
    }

    /// Splits a subscribe's (or snapshot's) channels into the granted ones
    /// and the names of the refused ones.
    pub(super) fn split(
        &self,
        channels: Vec<Sub>,
        names: Vec<String>,
    ) -> ((Vec<Sub>, Vec<String>), Vec<String>) {
        let mut granted = (Vec::new(), Vec::new());
        let mut refused = Vec::new();
        for (sub, name) in channels.into_iter().zip(names) {
            if self.access.may_subscribe(&name) {
                granted.0.push(sub);
                granted.1.push(name);
            } else {
                refused.push(name);
            }
        }
        (granted, refused)
    }

    /// The channels a snapshot of "everything" may cover: `None` when the
    /// connection may read everything; otherwise the granted channels that
    /// a snapshot can name (a pattern such as `prices.BTC*` names none).
    pub(super) fn snapshot_all(&self) -> Option<Vec<Sub>> {
        let Access::Jwt(grant) = &self.access else {
            return None;
        };
        let patterns = grant.channels.as_ref()?;
        if self.access.may_subscribe("*") {
            return None;
        }
        let mut subs: Vec<Sub> = patterns
            .iter()
            .filter(|p| !p.as_str().ends_with('*'))
            .filter_map(|p| Sub::parse(p.as_str()))
            .collect();
        if self.access.may_subscribe(Channel::Prices.name()) {
            subs.push(Sub::Family(Channel::Prices));
        }
        Some(subs)
    }

    /// Records channels the hub is asked to subscribe to, as the hub will
    /// hold them (all of them, or none when they would pass the cap).
    pub(super) fn held_add(&mut self, channels: &[Sub], names: &[String]) {
        if !matches!(self.access, Access::Jwt(_)) {
            return;
        }
        let fresh = channels
            .iter()
            .filter(|c| !self.held.contains_key(c))
            .count();
        if self.held.len() + fresh > MAX_SUBSCRIPTIONS {
            return;
        }
        for (sub, name) in channels.iter().zip(names) {
            self.held.entry(sub.clone()).or_insert_with(|| name.clone());
        }
    }

    /// Records channels the hub is asked to unsubscribe from.
    pub(super) fn held_remove(&mut self, channels: &[Sub]) {
        for sub in channels {
            self.held.remove(sub);
        }
    }

    /// Whether the client may publish to `channel`; the error otherwise.
    pub(super) fn check_publish(
        &self,
        channel: &str,
        id: &Option<Value>,
    ) -> Result<(), ProtoError> {
        if self.access.may_publish(channel) {
            return Ok(());
        }
        let message = match &self.access {
            Access::Jwt(_) if self.access.publishes_somewhere() => {
                let shown: String = channel.chars().take(48).collect();
                format!("your token's publish claim does not include channel \"{shown}\"")
            }
            Access::Jwt(_) => "your token has no publish claim: it is read-only".to_owned(),
            _ => "publish needs a token with publish = true, or a JWT with a publish claim; \
                  connect with /ws?token=..."
                .to_owned(),
        };
        Err(ProtoError::new(
            ErrorCode::Unauthorized,
            message,
            id.clone(),
        ))
    }

    /// Replaces the token with `token` at `now` (wall time `now_ms`). The
    /// new token must be a valid JWT for the same `sub`; the channels it no
    /// longer grants are returned to be unsubscribed.
    pub(super) fn refresh(
        &mut self,
        auth: &Auth,
        token: &str,
        id: &Option<Value>,
        now: Instant,
        now_ms: u64,
    ) -> Result<Refreshed, ProtoError> {
        let refuse =
            |message: String| ProtoError::new(ErrorCode::Unauthorized, message, id.clone());
        let Access::Jwt(old) = &self.access else {
            return Err(refuse(
                "refresh is for connections opened with a JWT; reconnect with the new token".into(),
            ));
        };
        let grant = auth
            .refresh(token, now_ms)
            .map_err(|e| refuse(format!("refresh refused: {e}")))?;
        if grant.sub != old.sub {
            return Err(refuse(format!(
                "refresh refused: the new token is for sub {:?}, this connection is {:?}; reconnect instead",
                grant.sub, old.sub
            )));
        }
        let reply = protocol::refreshed(&grant.sub, grant.exp, id);
        self.expiry = Expiry::Live(deadline(grant.until_ms, now, now_ms));
        self.access = Access::Jwt(grant);
        let mut dropped = (Vec::new(), Vec::new());
        let access = &self.access;
        self.held.retain(|sub, name| {
            let keep = access.may_subscribe(name);
            if !keep {
                dropped.0.push(sub.clone());
                dropped.1.push(name.clone());
            }
            keep
        });
        Ok(Refreshed { dropped, reply })
    }
}

/// The instant at which wall time `until_ms` comes, seen at `now` (wall
/// time `now_ms`). A wall clock stepped later moves nothing: the deadline
/// is monotonic from here on.
fn deadline(until_ms: u64, now: Instant, now_ms: u64) -> Instant {
    now + Duration::from_millis(until_ms.saturating_sub(now_ms))
}

/// The `token_expired` error.
fn expired_error(id: Option<Value>) -> ProtoError {
    ProtoError::new(
        ErrorCode::TokenExpired,
        format!(
            "your token has expired; send {{\"op\":\"refresh\",\"token\":\"...\"}} with a new one within {} s or the connection is closed",
            REFRESH_GRACE.as_secs()
        ),
        id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Grant, Pattern};

    fn jwt(channels: &[&str], until_ms: u64) -> Access {
        Access::Jwt(Grant {
            sub: "kiosk".into(),
            exp: until_ms / 1000,
            until_ms,
            channels: Some(Pattern::parse_list(channels.iter().copied()).unwrap()),
            publish: Vec::new(),
        })
    }

    #[test]
    fn expiry_warns_then_closes_after_the_grace() {
        let now = Instant::now();
        let mut rights = Rights::new(jwt(&["news"], 5_000), now, 1_000);
        assert_eq!(rights.deadline(), Some(now + Duration::from_secs(4)));
        assert_eq!(rights.on_deadline(now), None, "not due yet");
        let at = now + Duration::from_secs(4);
        assert!(
            matches!(rights.on_deadline(at), Some(Deadline::Expired(t)) if t.contains("token_expired"))
        );
        assert!(rights.expired(&None).is_some());
        assert_eq!(rights.deadline(), Some(at + REFRESH_GRACE));
        assert_eq!(
            rights.on_deadline(at + REFRESH_GRACE),
            Some(Deadline::Close)
        );
        let never = Rights::new(Access::Anonymous, now, 1_000);
        assert_eq!(never.deadline(), None);
    }

    #[test]
    fn refresh_keeps_the_sub_narrows_what_is_held_and_moves_the_deadline() {
        use jsonwebtoken::{EncodingKey, Header, encode};
        use serde_json::json;

        use crate::config::{Config, Hs256Secret, JwtConfig};

        let secret = b"0123456789abcdef0123456789abcdef";
        let mut server = Config::defaults_in("/tmp/unused").server;
        server.jwt = Some(JwtConfig {
            hs256: Some(Hs256Secret::new("s".into(), secret.to_vec())),
            public_keys: Vec::new(),
            issuer: None,
            audience: None,
            leeway: Duration::ZERO,
        });
        let auth = Auth::new(&server);
        let sign = |claims: serde_json::Value| {
            encode(
                &Header::default(),
                &claims,
                &EncodingKey::from_secret(secret),
            )
            .unwrap()
        };
        let (now, now_ms) = (Instant::now(), 1_000_000u64);
        let access = auth
            .admit(Some(&sign(json!({"sub": "kiosk", "exp": 1_010}))), now_ms)
            .unwrap();
        let mut rights = Rights::new(access, now, now_ms);
        let names: Vec<String> = ["prices", "news", "prices.BTC"].map(String::from).to_vec();
        let subs: Vec<Sub> = names.iter().map(|n| Sub::parse(n).unwrap()).collect();
        rights.held_add(&subs, &names);

        let other = sign(json!({"sub": "someone", "exp": 2_000}));
        let refused = rights
            .refresh(&auth, &other, &None, now, now_ms)
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::Unauthorized);
        assert_eq!(
            rights.deadline(),
            Some(now + Duration::from_secs(10)),
            "unchanged"
        );

        let narrower = sign(json!({"sub": "kiosk", "exp": 2_000, "channels": ["prices.BTC*"]}));
        let mut done = rights
            .refresh(&auth, &narrower, &None, now, now_ms)
            .unwrap();
        done.dropped.1.sort();
        assert_eq!(done.dropped.1, ["news", "prices"]);
        assert!(done.reply.contains("\"refreshed\""), "{}", done.reply);
        assert_eq!(rights.deadline(), Some(now + Duration::from_secs(1_000)));
        let again = rights
            .refresh(&auth, &narrower, &None, now, now_ms)
            .unwrap();
        assert!(again.dropped.0.is_empty(), "prices.BTC is still granted");
        assert!(rights.refresh(&auth, "junk", &None, now, now_ms).is_err());
        let mut anonymous = Rights::new(Access::Anonymous, now, now_ms);
        assert!(
            anonymous
                .refresh(&auth, &narrower, &None, now, now_ms)
                .is_err()
        );
    }

    #[test]
    fn subscribe_splits_by_the_claims_and_snapshot_all_names_what_is_granted() {
        let rights = Rights::new(jwt(&["prices.*", "news"], 9_000), Instant::now(), 0);
        let names: Vec<String> = ["prices.BTC", "alerts", "news", "*"]
            .map(String::from)
            .to_vec();
        let subs = names.iter().map(|n| Sub::parse(n).unwrap()).collect();
        let ((granted, granted_names), refused) = rights.split(subs, names);
        assert_eq!(granted_names, ["prices.BTC", "news"]);
        assert_eq!(granted.len(), 2);
        assert_eq!(refused, ["alerts", "*"]);
        let all = rights.snapshot_all().unwrap();
        assert!(
            all.contains(&Sub::Family(Channel::Prices))
                && all.contains(&Sub::Family(Channel::News))
        );
        assert_eq!(all.len(), 2);
        assert_eq!(
            Rights::new(Access::Anonymous, Instant::now(), 0).snapshot_all(),
            None
        );
    }
}
