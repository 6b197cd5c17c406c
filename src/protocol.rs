//! The downstream client protocol of docs/protocol.md: parsing client ops
//! and writing the server's control replies.
//!
//! Pure: text in, values out. Ops are case-sensitive and unknown fields are
//! ignored. Nothing here touches a socket or the hub.

use std::collections::HashSet;
use std::fmt;

use serde_json::{Map, Value, json};

use crate::event::{Body, Channel, is_hidden};

/// A request may name at most this many channels; more is `too_large`. 256
/// covers `*`, the four families and a board's worth of single symbols.
pub const MAX_CHANNELS: usize = 256;

/// A symbol is at most this many bytes. Exchange symbols are under 20
/// characters and a Persian label of a few words fits; the cap keeps a client
/// or an upstream from parking kilobytes of key in the hub.
pub const MAX_SYMBOL_LEN: usize = 64;

/// A publish's idempotency `key` is at most this many bytes: tablo.js
/// sends 32 hex digits, a UUID is 36, and the hub keeps thousands of them
/// (`journal::keys::KEY_WINDOW`).
pub const MAX_KEY_BYTES: usize = 128;

/// One client holds at most this many channels in total; more is
/// `too_large`. A board's worth of single symbols fits, and the hub's work
/// per client stays bounded.
pub const MAX_SUBSCRIPTIONS: usize = 256;

/// One channel a client can subscribe to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Sub {
    /// `*`: everything.
    All,
    /// `prices`, `news`, `alerts` or `status`.
    Family(Channel),
    /// `prices.<SYMBOL>`: one symbol's ticks.
    Symbol(Box<str>),
}

impl Sub {
    /// Parses a channel name; `None` if it names no channel.
    pub fn parse(name: &str) -> Option<Sub> {
        match name {
            "*" => Some(Sub::All),
            "prices" => Some(Sub::Family(Channel::Prices)),
            "news" => Some(Sub::Family(Channel::News)),
            "alerts" => Some(Sub::Family(Channel::Alerts)),
            "status" => Some(Sub::Family(Channel::Status)),
            _ => {
                let symbol = name.strip_prefix("prices.")?;
                valid_symbol(symbol).then(|| Sub::Symbol(symbol.into()))
            }
        }
    }

    /// Whether this channel carries `body`.
    pub fn matches(&self, body: &Body) -> bool {
        match self {
            Sub::All => true,
            Sub::Family(channel) => body.channel() == *channel,
            Sub::Symbol(symbol) => matches!(body, Body::Tick(t) if *t.symbol == **symbol),
        }
    }
}

/// Whether `s` can be a symbol: 1 to [`MAX_SYMBOL_LEN`] bytes, no
/// whitespace, control or format characters (any script is fine).
///
/// Format characters are the [`is_hidden`] ones and also the joiners U+200C
/// and U+200D, which news titles keep: a symbol is a name to tell
/// instruments apart, and with an invisible character or a bidi override in
/// it one symbol could show as another (`USD\u{202E}RRI` as `USDIRR`).
pub fn valid_symbol(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SYMBOL_LEN
        && !s
            .chars()
            .any(|c| c.is_whitespace() || is_hidden(c) || matches!(c, '\u{200C}' | '\u{200D}'))
}

/// A client's set of subscriptions; matching an event is O(1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subscriptions {
    all: bool,
    families: [bool; 4],
    symbols: HashSet<Box<str>>,
}

impl Subscriptions {
    /// Adds channels (duplicates are kept once). Refuses, changing nothing,
    /// if the total would pass [`MAX_SUBSCRIPTIONS`]; the error is that
    /// total.
    pub fn add(&mut self, channels: &[Sub]) -> Result<(), usize> {
        let mut fresh: HashSet<&Sub> = HashSet::new();
        for sub in channels {
            let new = match sub {
                Sub::All => !self.all,
                Sub::Family(c) => !self.families[c.index()],
                Sub::Symbol(s) => !self.symbols.contains(s),
            };
            if new {
                fresh.insert(sub);
            }
        }
        let total = self.len() + fresh.len();
        if total > MAX_SUBSCRIPTIONS {
            return Err(total);
        }
        for sub in fresh {
            match sub {
                Sub::All => self.all = true,
                Sub::Family(c) => self.families[c.index()] = true,
                Sub::Symbol(s) => {
                    self.symbols.insert(s.clone());
                }
            }
        }
        Ok(())
    }

    /// Removes channels; removing one not subscribed is not an error.
    pub fn remove(&mut self, channels: &[Sub]) {
        for sub in channels {
            match sub {
                Sub::All => self.all = false,
                Sub::Family(c) => self.families[c.index()] = false,
                Sub::Symbol(s) => {
                    self.symbols.remove(s);
                }
            }
        }
    }

    /// Whether any subscription carries `body`.
    pub fn matches(&self, body: &Body) -> bool {
        self.all
            || self.families[body.channel().index()]
            || matches!(body, Body::Tick(t)
                if !self.symbols.is_empty() && self.symbols.contains(t.symbol.as_str()))
    }

    /// How many channels are subscribed.
    pub fn len(&self) -> usize {
        usize::from(self.all) + self.families.iter().filter(|f| **f).count() + self.symbols.len()
    }

    /// Whether nothing is subscribed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parsed client request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The client's `id`, echoed in the reply.
    pub id: Option<Value>,
    /// What it asks for.
    pub op: Op,
}

/// The client ops.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Start receiving channels (optionally replaying from `since`).
    Subscribe {
        /// Parsed channels.
        channels: Vec<Sub>,
        /// The channel names as the client sent them, for the reply.
        names: Vec<String>,
        /// Resume after this seq.
        since: Option<u64>,
        /// The epoch the client's `since` belongs to.
        epoch: Option<String>,
    },
    /// Stop receiving channels.
    Unsubscribe {
        /// Parsed channels.
        channels: Vec<Sub>,
        /// The channel names as the client sent them, for the reply.
        names: Vec<String>,
    },
    /// Latest state; an empty list means every channel.
    Snapshot {
        /// Parsed channels.
        channels: Vec<Sub>,
    },
    /// Server statistics.
    Stats,
    /// Liveness check.
    Ping,
    /// Put an event on a channel.
    Publish {
        /// Target channel.
        channel: String,
        /// The event's fields.
        data: Map<String, Value>,
        /// The idempotency key: a repeat is answered with the first
        /// publish's seq instead of becoming a second event.
        key: Option<String>,
    },
    /// Replace the connection's JWT with a new one (docs/protocol.md §3.1).
    Refresh {
        /// The new token.
        token: String,
    },
}

/// The error codes of docs/protocol.md §15.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not JSON, not an object, missing or mistyped fields.
    BadRequest,
    /// `op` names no op.
    UnknownOp,
    /// A channel name names no channel.
    UnknownChannel,
    /// The token does not allow this.
    Unauthorized,
    /// A valid request asking for too much.
    TooLarge,
    /// Too many ops too fast.
    RateLimited,
    /// The connection's JWT has expired; refresh it or be closed.
    TokenExpired,
}

impl ErrorCode {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::UnknownChannel => "unknown_channel",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TokenExpired => "token_expired",
        }
    }
}

/// A request that gets an `error` reply.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtoError {
    /// The code.
    pub code: ErrorCode,
    /// What was wrong and what to do.
    pub message: String,
    /// The request's `id`, when it had one.
    pub id: Option<Value>,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl ProtoError {
    /// A new error.
    pub fn new(code: ErrorCode, message: impl Into<String>, id: Option<Value>) -> ProtoError {
        ProtoError {
            code,
            message: message.into(),
            id,
        }
    }

    /// The `error` frame.
    pub fn to_json(&self) -> String {
        let mut reply = json!({
            "type": "error",
            "code": self.code.name(),
            "message": self.message,
        });
        if let (Some(id), Some(obj)) = (&self.id, reply.as_object_mut()) {
            obj.insert("id".into(), id.clone());
        }
        reply.to_string()
    }
}

/// Parses one client text frame.
pub fn parse_request(text: &str) -> Result<Request, ProtoError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        ProtoError::new(
            ErrorCode::BadRequest,
            format!("frame is not valid JSON ({e}); send an object like {{\"op\":\"ping\"}}"),
            None,
        )
    })?;
    let Value::Object(mut obj) = value else {
        return Err(ProtoError::new(
            ErrorCode::BadRequest,
            "frame must be a JSON object like {\"op\":\"ping\"}",
            None,
        ));
    };
    let id = obj.remove("id");
    let bad = |message: String| ProtoError::new(ErrorCode::BadRequest, message, id.clone());
    let op = match obj.get("op") {
        Some(Value::String(op)) => op.as_str(),
        Some(_) => return Err(bad("\"op\" must be a string".into())),
        None => {
            return Err(bad(
                "missing \"op\"; one of subscribe, unsubscribe, snapshot, stats, ping, publish, refresh"
                    .into(),
            ));
        }
    };
    let op = match op {
        "subscribe" => {
            let (channels, names) = channels(&obj, true, &id)?;
            let since =
                match obj.get("since") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_u64().ok_or_else(|| {
                        bad("\"since\" must be a non-negative integer seq".into())
                    })?),
                };
            let epoch = match obj.get("epoch") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(bad("\"epoch\" must be a string".into())),
            };
            Op::Subscribe {
                channels,
                names,
                since,
                epoch,
            }
        }
        "unsubscribe" => {
            let (channels, names) = channels(&obj, true, &id)?;
            Op::Unsubscribe { channels, names }
        }
        "snapshot" => Op::Snapshot {
            channels: channels(&obj, false, &id)?.0,
        },
        "stats" => Op::Stats,
        "ping" => Op::Ping,
        "publish" => {
            let channel = match obj.get("channel") {
                Some(Value::String(c)) => c.clone(),
                _ => return Err(bad("publish needs \"channel\" as a string".into())),
            };
            let data = match obj.remove("data") {
                Some(Value::Object(data)) => data,
                _ => return Err(bad("publish needs \"data\" as an object".into())),
            };
            let key = match obj.get("key") {
                None | Some(Value::Null) => None,
                Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KEY_BYTES => {
                    Some(k.clone())
                }
                Some(_) => {
                    return Err(bad(format!(
                        "publish \"key\" must be a string of 1 to {MAX_KEY_BYTES} bytes"
                    )));
                }
            };
            Op::Publish { channel, data, key }
        }
        "refresh" => match obj.get("token") {
            Some(Value::String(token)) if !token.is_empty() => Op::Refresh {
                token: token.clone(),
            },
            _ => return Err(bad("refresh needs \"token\" as a non-empty string".into())),
        },
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(ProtoError::new(
                ErrorCode::UnknownOp,
                format!(
                    "unknown op \"{shown}\"; one of subscribe, unsubscribe, snapshot, stats, ping, publish, refresh"
                ),
                id,
            ));
        }
    };
    Ok(Request { id, op })
}

/// Reads `channels`: required (non-empty) or optional (empty means all).
fn channels(
    obj: &Map<String, Value>,
    required: bool,
    id: &Option<Value>,
) -> Result<(Vec<Sub>, Vec<String>), ProtoError> {
    let list = match obj.get("channels") {
        Some(Value::Array(list)) => list,
        None | Some(Value::Null) if !required => return Ok((Vec::new(), Vec::new())),
        None => {
            return Err(ProtoError::new(
                ErrorCode::BadRequest,
                "missing \"channels\", e.g. [\"prices\"]",
                id.clone(),
            ));
        }
        Some(_) => {
            return Err(ProtoError::new(
                ErrorCode::BadRequest,
                "\"channels\" must be an array of strings, e.g. [\"prices\"]",
                id.clone(),
            ));
        }
    };
    if list.len() > MAX_CHANNELS {
        return Err(ProtoError::new(
            ErrorCode::TooLarge,
            format!(
                "{} channels in one request; at most {MAX_CHANNELS}",
                list.len()
            ),
            id.clone(),
        ));
    }
    if required && list.is_empty() {
        return Err(ProtoError::new(
            ErrorCode::BadRequest,
            "\"channels\" is empty; name at least one, e.g. [\"prices\"]",
            id.clone(),
        ));
    }
    let mut subs = Vec::with_capacity(list.len());
    let mut names = Vec::with_capacity(list.len());
    for item in list {
        let Value::String(name) = item else {
            return Err(ProtoError::new(
                ErrorCode::BadRequest,
                "\"channels\" must be an array of strings",
                id.clone(),
            ));
        };
        let Some(sub) = Sub::parse(name) else {
            let shown: String = name.chars().take(48).collect();
            return Err(ProtoError::new(
                ErrorCode::UnknownChannel,
                format!(
                    "unknown channel \"{shown}\"; one of prices, prices.<SYMBOL>, news, alerts, status, *"
                ),
                id.clone(),
            ));
        };
        subs.push(sub);
        names.push(name.clone());
    }
    Ok((subs, names))
}

/// `{"type":"pong","id":X}`.
pub fn pong(id: &Option<Value>) -> String {
    match id {
        Some(id) => json!({"type": "pong", "id": id}).to_string(),
        None => json!({"type": "pong"}).to_string(),
    }
}

/// `{"type":"refreshed","sub":S,"exp":N}`: a `refresh` took effect.
pub fn refreshed(sub: &str, exp: u64, id: &Option<Value>) -> String {
    let mut reply = json!({"type": "refreshed", "sub": sub, "exp": exp});
    if let (Some(id), Some(obj)) = (id, reply.as_object_mut()) {
        obj.insert("id".into(), id.clone());
    }
    reply.to_string()
}

/// `{"type":"subscribed"|"unsubscribed","channels":[..],"seq":N}`.
pub fn channels_reply(kind: &str, names: &[String], seq: u64, id: &Option<Value>) -> String {
    let mut reply = json!({"type": kind, "channels": names, "seq": seq});
    if let (Some(id), Some(obj)) = (id, reply.as_object_mut()) {
        obj.insert("id".into(), id.clone());
    }
    reply.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_err(text: &str, code: ErrorCode, id: Option<Value>) {
        let err = parse_request(text).expect_err("should be rejected");
        assert_eq!((err.code, err.id), (code, id), "{}", err.message);
    }

    #[test]
    fn parses_every_op() {
        let req = parse_request(r#"{"op":"subscribe","channels":["prices","prices.BTCUSDT","*"],"since":12,"epoch":"e1","id":3,"extra":true}"#)
            .expect("valid");
        assert_eq!(req.id, Some(json!(3)));
        assert_eq!(
            req.op,
            Op::Subscribe {
                channels: vec![
                    Sub::Family(Channel::Prices),
                    Sub::Symbol("BTCUSDT".into()),
                    Sub::All
                ],
                names: vec!["prices".into(), "prices.BTCUSDT".into(), "*".into()],
                since: Some(12),
                epoch: Some("e1".into()),
            }
        );
        assert_eq!(
            parse_request(r#"{"op":"stats"}"#).map(|r| r.op),
            Ok(Op::Stats)
        );
        assert_eq!(
            parse_request(r#"{"op":"snapshot"}"#).map(|r| r.op),
            Ok(Op::Snapshot { channels: vec![] })
        );
        assert_eq!(
            parse_request(r#"{"op":"ping","id":"x"}"#).map(|r| r.id),
            Ok(Some(json!("x")))
        );
        assert_eq!(
            parse_request(r#"{"op":"refresh","token":"a.b.c"}"#).map(|r| r.op),
            Ok(Op::Refresh {
                token: "a.b.c".into()
            })
        );
        check_err(r#"{"op":"refresh"}"#, ErrorCode::BadRequest, None);
        check_err(r#"{"op":"refresh","token":5}"#, ErrorCode::BadRequest, None);
    }

    #[test]
    fn bad_requests_get_the_spec_codes() {
        check_err("{not json", ErrorCode::BadRequest, None);
        check_err("[1,2]", ErrorCode::BadRequest, None);
        check_err(r#"{"id":1}"#, ErrorCode::BadRequest, Some(json!(1)));
        check_err(r#"{"op":5,"id":1}"#, ErrorCode::BadRequest, Some(json!(1)));
        check_err(
            r#"{"op":"Ping","id":2}"#,
            ErrorCode::UnknownOp,
            Some(json!(2)),
        );
        check_err(
            r#"{"op":"subscribe","channels":"prices"}"#,
            ErrorCode::BadRequest,
            None,
        );
        check_err(
            r#"{"op":"subscribe","channels":[1]}"#,
            ErrorCode::BadRequest,
            None,
        );
        check_err(
            r#"{"op":"subscribe","channels":[]}"#,
            ErrorCode::BadRequest,
            None,
        );
        check_err(
            r#"{"op":"subscribe","channels":["weather"]}"#,
            ErrorCode::UnknownChannel,
            None,
        );
        check_err(
            r#"{"op":"subscribe","channels":["prices."]}"#,
            ErrorCode::UnknownChannel,
            None,
        );
        check_err(
            r#"{"op":"subscribe","channels":["prices"],"since":-1}"#,
            ErrorCode::BadRequest,
            None,
        );
        check_err(
            r#"{"op":"publish","channel":"alerts","data":5}"#,
            ErrorCode::BadRequest,
            None,
        );
        let many: Vec<String> = (0..=MAX_CHANNELS).map(|i| format!("prices.S{i}")).collect();
        let text = json!({"op": "subscribe", "channels": many, "id": 9}).to_string();
        check_err(&text, ErrorCode::TooLarge, Some(json!(9)));
    }

    #[test]
    fn error_frame_echoes_id() {
        let err = ProtoError::new(ErrorCode::UnknownOp, "nope", Some(json!(7)));
        assert_eq!(
            err.to_json(),
            r#"{"code":"unknown_op","id":7,"message":"nope","type":"error"}"#
        );
    }

    #[test]
    fn symbol_channel_matches_only_its_symbol() {
        use crate::event::{News, Tick};
        let tick = |s: &str| {
            Body::Tick(Tick {
                symbol: s.into(),
                price: "1".into(),
                ..Tick::default()
            })
        };
        let mut subs = Subscriptions::default();
        assert_eq!(subs.add(&[Sub::Symbol("BTCUSDT".into())]), Ok(()));
        assert!(subs.matches(&tick("BTCUSDT")));
        assert!(!subs.matches(&tick("ETHUSDT")));
        assert!(!subs.matches(&Body::News(News::default())));
        assert_eq!(subs.add(&[Sub::All]), Ok(()));
        assert!(subs.matches(&Body::News(News::default())));
        subs.remove(&[Sub::All, Sub::Symbol("BTCUSDT".into())]);
        assert!(subs.is_empty());
    }

    #[test]
    fn total_subscriptions_are_capped() {
        let mut subs = Subscriptions::default();
        let batch = |from: usize| -> Vec<Sub> {
            (from..from + 128)
                .map(|i| Sub::Symbol(format!("S{i}").into()))
                .collect()
        };
        assert_eq!(subs.add(&batch(0)), Ok(()));
        assert_eq!(subs.add(&batch(0)), Ok(()), "re-adding is free");
        assert_eq!(subs.add(&batch(128)), Ok(()));
        assert_eq!(subs.add(&[Sub::All]), Err(MAX_SUBSCRIPTIONS + 1));
        assert_eq!(subs.len(), MAX_SUBSCRIPTIONS);
    }

    #[test]
    fn symbols_in_any_script_but_no_spaces() {
        assert!(valid_symbol("BTC-USD"));
        assert!(valid_symbol("دلار"));
        assert!(!valid_symbol("a b"));
        for hidden in [
            "USD\u{202E}RRI",
            "\u{2066}BTC",
            "US\u{200B}D",
            "US\u{200C}D",
            "A\u{200D}B",
        ] {
            assert!(!valid_symbol(hidden), "{hidden:?}");
        }
        assert!(!valid_symbol("BTC\u{0007}") && !valid_symbol("BTC\u{0085}"));
        assert!(!valid_symbol(""));
        assert!(!valid_symbol(&"x".repeat(MAX_SYMBOL_LEN + 1)));
    }
}
