//! The MQTT parts of the config: a `format = "mqtt"` feed's broker keys
//! (`topics`, `qos`, `client_id`, `username`, `password_file`), its URL
//! (`mqtt://`, `mqtts://`, `ws://`, `wss://`) and its `symbol = "topic:N"`
//! pointer.
//!
//! Like the rest of `config`, this only checks what is written: it never
//! reads the password file or connects to a broker.

use std::ops::Range;

use toml::Spanned;

use super::MqttFeed;
use super::error::{ConfigError, Source};
use super::paths::Paths;
use super::raw::At;

/// The `symbol` pointer of an `mqtt` feed that takes the symbol from the
/// topic: `topic:N` is the Nth level, counted from 1.
pub const TOPIC_SYMBOL_PREFIX: &str = "topic:";

/// Topic filters one feed may subscribe to. One SUBSCRIBE packet carries
/// them all; a few dozen is already a broad feed.
pub const MAX_TOPICS: usize = 64;

/// The broker keys of one `[[feed]]` table, as written.
pub(super) struct RawMqttKeys {
    pub(super) topics: At<Vec<Spanned<String>>>,
    pub(super) qos: At<u64>,
    pub(super) client_id: At<String>,
    pub(super) username: At<String>,
    pub(super) password_file: At<String>,
}

impl RawMqttKeys {
    /// The first key that is set, for the error on a feed of another format.
    fn first_set(&self) -> Option<(&'static str, Range<usize>)> {
        let spans = [
            ("topics", self.topics.as_ref().map(Spanned::span)),
            ("qos", self.qos.as_ref().map(Spanned::span)),
            ("client_id", self.client_id.as_ref().map(Spanned::span)),
            ("username", self.username.as_ref().map(Spanned::span)),
            (
                "password_file",
                self.password_file.as_ref().map(Spanned::span),
            ),
        ];
        spans
            .into_iter()
            .find_map(|(key, span)| span.map(|span| (key, span)))
    }
}

/// The broker keys of a feed of `format`: checked and resolved for an
/// `mqtt` feed (which needs `topics`), refused on any other.
pub(super) fn resolve_mqtt(
    is_mqtt: bool,
    keys: RawMqttKeys,
    span: Range<usize>,
    src: &Source<'_>,
    paths: &Paths<'_>,
) -> Result<MqttFeed, ConfigError> {
    if !is_mqtt {
        return match keys.first_set() {
            Some((key, span)) => Err(src.at(
                span,
                format!("[[feed]] {key}: only a format = \"mqtt\" feed has {key}"),
            )),
            None => Ok(MqttFeed::default()),
        };
    }
    let Some(list) = keys.topics else {
        return Err(src.at(
            span,
            "[[feed]]: an mqtt feed needs topics, e.g. topics = [\"rates/#\"]",
        ));
    };
    if list.get_ref().is_empty() {
        return Err(src.at(
            list.span(),
            "[[feed]] topics: empty; list at least one topic filter, e.g. [\"rates/#\"]",
        ));
    }
    if list.get_ref().len() > MAX_TOPICS {
        return Err(src.at(
            list.span(),
            format!("[[feed]] topics: more than {MAX_TOPICS} topic filters; use wildcards (+ and #)"),
        ));
    }
    let mut topics = Vec::new();
    for topic in list.into_inner() {
        check_topic_filter(topic.get_ref())
            .map_err(|why| src.at(topic.span(), format!("[[feed]] topics: {why}")))?;
        topics.push(topic.into_inner());
    }
    let qos = match keys.qos {
        None => 1,
        Some(qos) if *qos.get_ref() <= 1 => *qos.get_ref() as u8,
        Some(qos) => {
            return Err(src.at(
                qos.span(),
                format!(
                    "[[feed]] qos: {} is not supported; use 0 (at most once) or 1 (at least once)",
                    qos.get_ref()
                ),
            ));
        }
    };
    let client_id = match keys.client_id {
        Some(id) if id.get_ref().is_empty() || id.get_ref().len() > 256 => {
            return Err(src.at(
                id.span(),
                "[[feed]] client_id: give 1 to 256 characters, or leave it out for tablo-<machine id>-<feed name>",
            ));
        }
        Some(id) if id.get_ref().chars().any(|c| c.is_control() || c.is_whitespace()) => {
            return Err(src.at(
                id.span(),
                "[[feed]] client_id: no spaces or control characters",
            ));
        }
        id => id.map(Spanned::into_inner),
    };
    let username = match keys.username {
        Some(user) if user.get_ref().is_empty() => {
            return Err(src.at(
                user.span(),
                "[[feed]] username: empty; leave it out to connect without a login",
            ));
        }
        user => user.map(Spanned::into_inner),
    };
    let password_file = match keys.password_file {
        Some(_) if username.is_none() => {
            return Err(src.at(
                span,
                "[[feed]] password_file needs a username (MQTT 3.1.1 sends no password without one)",
            ));
        }
        Some(file) => Some(paths.resolve(&file, "[[feed]] password_file")?),
        None => None,
    };
    Ok(MqttFeed {
        topics,
        qos,
        client_id,
        username,
        password_file,
    })
}

/// Checks an MQTT topic filter: not empty, no NUL, `#` only as the whole
/// last level, `+` only as a whole level.
pub(super) fn check_topic_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("an empty topic filter; write e.g. \"rates/#\"".to_owned());
    }
    if filter.contains('\0') {
        return Err(format!("{filter:?} contains a NUL character"));
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(format!(
                "{filter:?}: # must be a whole level and the last one, as in \"rates/#\""
            ));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!(
                "{filter:?}: + must be a whole level, as in \"rates/+/buy\""
            ));
        }
    }
    Ok(())
}

/// Checks an MQTT topic name to publish to (no wildcards).
pub(super) fn check_topic_name(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("an empty topic".to_owned());
    }
    if topic.contains(['#', '+', '\0']) {
        return Err(format!(
            "{topic:?}: a topic to publish to may not hold #, + or NUL"
        ));
    }
    Ok(())
}

/// Checks the URL of an mqtt feed: `mqtt://host[:port]`,
/// `mqtts://host[:port]`, or `ws://`/`wss://` for MQTT over WebSocket.
pub(super) fn check_mqtt_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let rest = ["mqtt://", "mqtts://", "ws://", "wss://"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme));
    match rest {
        None => Err(format!(
            "{url:?} is not a broker URL: it must start with mqtt://, mqtts://, ws:// or wss://"
        )),
        Some(rest) if rest.is_empty() || rest.starts_with('/') || rest.starts_with(':') => {
            Err(format!("{url:?} has no host"))
        }
        Some(_) if url.chars().any(char::is_whitespace) => Err(format!("{url:?} contains a space")),
        Some(rest) if lower.starts_with("mqtt") && rest.trim_end_matches('/').contains('/') => {
            Err(format!(
                "{url:?}: an mqtt:// URL has no path; give the topics in topics = [...]"
            ))
        }
        Some(_) => Ok(()),
    }
}

/// The level number of a `topic:N` symbol pointer: `Some(Ok(N))` for a
/// good one, `Some(Err(why))` for a bad one, `None` when `pointer` is not
/// of that form.
pub fn topic_level(pointer: &str) -> Option<Result<usize, String>> {
    let n = pointer.strip_prefix(TOPIC_SYMBOL_PREFIX)?;
    Some(match n.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{pointer:?}: topic:N takes a level number from 1, as in \"topic:2\" for rates/USD"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{check_err, load};

    const BASE: &str = "[[feed]]\nname = \"hq\"\nformat = \"mqtt\"\nurl = \"mqtt://broker:1883\"\n";

    #[test]
    fn an_mqtt_feed_with_defaults() {
        let text = format!(
            "{BASE}topics = [\"rates/#\", \"news/+\"]\n[feed.pointers]\nsymbol = \"topic:2\"\nprice = \"/p\"\n"
        );
        let config = load(&text).unwrap();
        let feed = &config.feeds[0];
        assert_eq!(feed.mqtt.topics, ["rates/#", "news/+"]);
        assert_eq!(feed.mqtt.qos, 1);
        assert_eq!(feed.mqtt.client_id, None);
        assert_eq!(feed.pointers.symbol.as_deref(), Some("topic:2"));
    }

    #[test]
    fn an_mqtt_feed_with_a_login() {
        let text = format!(
            "{BASE}topics = [\"a\"]\nqos = 0\nclient_id = \"kiosk-7\"\nusername = \"kiosk\"\npassword_file = \"/etc/tablo/mqtt.pw\"\n"
        );
        let feed = load(&text).unwrap().feeds.remove(0);
        assert_eq!(feed.mqtt.qos, 0);
        assert_eq!(feed.mqtt.client_id.as_deref(), Some("kiosk-7"));
        assert_eq!(feed.mqtt.username.as_deref(), Some("kiosk"));
        assert_eq!(
            feed.mqtt.password_file.as_deref(),
            Some(std::path::Path::new("/etc/tablo/mqtt.pw"))
        );
    }

    #[test]
    fn bad_mqtt_keys_are_named() {
        check_err(BASE, 1, "an mqtt feed needs topics");
        check_err(&format!("{BASE}topics = []\n"), 5, "topics: empty");
        check_err(
            &format!("{BASE}topics = [\"a/#/b\"]\n"),
            5,
            "# must be a whole level and the last one",
        );
        check_err(&format!("{BASE}topics = [\"a/b+\"]\n"), 5, "+ must be a whole level");
        check_err(
            &format!("{BASE}topics = [\"a\"]\nqos = 2\n"),
            6,
            "qos: 2 is not supported; use 0 (at most once) or 1 (at least once)",
        );
        check_err(
            &format!("{BASE}topics = [\"a\"]\npassword_file = \"pw\"\n"),
            1,
            "password_file needs a username",
        );
        check_err(
            "[[feed]]\nformat = \"binance\"\nurl = \"wss://x\"\ntopics = [\"a\"]\n",
            4,
            "[[feed]] topics: only a format = \"mqtt\" feed has topics",
        );
        check_err(
            "[[feed]]\nformat = \"mqtt\"\nurl = \"http://x\"\ntopics = [\"a\"]\n",
            3,
            "is not a broker URL: it must start with mqtt://, mqtts://, ws:// or wss://",
        );
        check_err(
            "[[feed]]\nformat = \"binance\"\nurl = \"mqtt://x\"\n",
            3,
            "is not a WebSocket URL",
        );
        check_err(
            &format!("{BASE}topics = [\"a\"]\n[feed.pointers]\nsymbol = \"topic:0\"\nprice = \"/p\"\n"),
            7,
            "topic:N takes a level number from 1",
        );
    }

    #[test]
    fn broker_urls() {
        for good in [
            "mqtt://b",
            "mqtt://b:1883",
            "mqtts://b:8883/",
            "ws://b:9001/mqtt",
            "wss://b/mqtt",
        ] {
            assert_eq!(check_mqtt_url(good), Ok(()), "{good}");
        }
        for bad in ["mqtt://", "mqtt://:1883", "tcp://b", "mqtt://b/x", "mqtt://b c"] {
            assert!(check_mqtt_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_levels() {
        assert_eq!(topic_level("topic:2"), Some(Ok(2)));
        assert!(matches!(topic_level("topic:0"), Some(Err(_))));
        assert!(matches!(topic_level("topic:x"), Some(Err(_))));
        assert_eq!(topic_level("/code"), None);
        assert_eq!(check_topic_name("tablo/hq/alerts"), Ok(()));
        assert!(check_topic_name("tablo/#").is_err());
    }
}
