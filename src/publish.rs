//! The `publish` op: a client's channel and `data` turned into an event body.
//!
//! The channel decides the event type (`prices`/`prices.<SYM>` → tick,
//! `news` → news, `alerts` → alert; `status` is not publishable) and the
//! fields are checked exactly like an upstream Tablo's events. The server
//! sets `seq`, `channel`, `ts` and `source` itself. Pure; no I/O.

use serde_json::{Map, Value};

use crate::event::Body;
use crate::feed::tablo::body_of;
use crate::protocol::{ErrorCode, valid_symbol};

/// The `source` of every published event.
pub const SOURCE: &str = "publish";

/// The event body a publish to `channel` asks for, or the error reply.
pub fn body(channel: &str, mut data: Map<String, Value>) -> Result<Body, (ErrorCode, String)> {
    let bad = |message: String| (ErrorCode::BadRequest, message);
    let kind = match channel {
        "prices" => "tick",
        "news" => "news",
        "alerts" => "alert",
        "status" => {
            return Err(bad(
                "channel status is not publishable: it belongs to the feeds".into(),
            ));
        }
        "*" => {
            return Err(bad(
                "publish to one channel: prices, prices.<SYMBOL>, news or alerts".into(),
            ));
        }
        other => match other.strip_prefix("prices.") {
            Some(symbol) if valid_symbol(symbol) => {
                match data.get("symbol") {
                    None => {
                        data.insert("symbol".into(), Value::String(symbol.into()));
                    }
                    Some(Value::String(s)) if s == symbol => {}
                    Some(_) => {
                        return Err(bad(format!(
                            "data.symbol does not match channel prices.{symbol}"
                        )));
                    }
                }
                "tick"
            }
            _ => {
                let shown: String = other.chars().take(48).collect();
                return Err((
                    ErrorCode::UnknownChannel,
                    format!(
                        "unknown channel \"{shown}\"; publish to prices, prices.<SYMBOL>, news or alerts"
                    ),
                ));
            }
        },
    };
    let mut body = body_of(kind, &data, SOURCE.into())
        .map_err(|e| bad(format!("publish to {channel}: {e}")))?;
    if let Body::Alert(alert) = &mut body {
        // Only the daemon's own rules name a rule (docs/protocol.md §6): a
        // client cannot pass for one, nor take a rule's alert off a board.
        alert.fired = None;
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::{Level, Tick};

    fn data(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[track_caller]
    fn check_err(channel: &str, fields: Value, code: ErrorCode) {
        match body(channel, data(fields)) {
            Err((got, _)) => assert_eq!(got, code),
            Ok(body) => panic!("accepted: {body:?}"),
        }
    }

    #[test]
    fn channel_decides_the_type_and_source_is_ours() {
        let tick = body(
            "prices.BTCUSDT",
            data(json!({"price": "1.50", "source": "me"})),
        );
        assert_eq!(
            tick,
            Ok(Body::Tick(Tick {
                symbol: "BTCUSDT".into(),
                price: "1.50".into(),
                source: SOURCE.into(),
                ..Tick::default()
            }))
        );
        match body(
            "alerts",
            data(json!({"level": "critical", "text": "Closed"})),
        ) {
            Ok(Body::Alert(a)) => {
                assert_eq!((a.level, a.source.as_str()), (Level::Critical, SOURCE))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            body("news", data(json!({"title": "t"}))),
            Ok(Body::News(_))
        ));
    }

    #[test]
    fn a_publish_cannot_pass_for_a_rules_alert() {
        let fields = json!({"level": "critical", "text": "x", "rule": "usd-drop", "kind": "back"});
        match body("alerts", data(fields)) {
            Ok(Body::Alert(a)) => assert_eq!(a.fired, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_publishes_are_refused() {
        check_err(
            "status",
            json!({"feed": "x", "state": "up"}),
            ErrorCode::BadRequest,
        );
        check_err("weather", json!({}), ErrorCode::UnknownChannel);
        check_err("prices", json!({"symbol": "X"}), ErrorCode::BadRequest);
        check_err(
            "prices",
            json!({"symbol": "X", "price": 1.5}),
            ErrorCode::BadRequest,
        );
        check_err(
            "prices.X",
            json!({"symbol": "Y", "price": "1"}),
            ErrorCode::BadRequest,
        );
        check_err(
            "alerts",
            json!({"level": "loud", "text": "x"}),
            ErrorCode::BadRequest,
        );
        check_err("news", json!({"url": "x"}), ErrorCode::BadRequest);
    }
}
