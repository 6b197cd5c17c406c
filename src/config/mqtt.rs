//! The MQTT parts of the config: a `format = "mqtt"` feed's broker keys
//! (`topics`, `qos`, `client_id`, `username`, `password_file`), its URL
//! (`mqtt://`, `mqtts://`, `ws://`, `wss://`) and its `symbol = "topic:N"`
//! pointer; the `[[forward]]` rules that publish to such a feed's broker,
//! and the top-level `site`.
//!
//! Like the rest of `config`, this only checks what is written: it never
//! reads the password file or connects to a broker.

use std::ops::Range;

use toml::Spanned;

use super::error::{ConfigError, Source};
use super::paths::Paths;
use super::raw::{At, RawForward};
use super::{DEFAULT_SITE, FeedConfig, FeedFormat, ForwardConfig, MqttFeed};

/// `[[forward]]` rules at most: each has an outbox tree in the journal and
/// is matched against every event.
pub const MAX_FORWARDS: usize = 32;

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
            format!(
                "[[feed]] topics: more than {MAX_TOPICS} topic filters; use wildcards (+ and #)"
            ),
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
        Some(id)
            if id
                .get_ref()
                .chars()
                .any(|c| c.is_control() || c.is_whitespace()) =>
        {
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
        Some(rest) if lower.starts_with("mqtt") && rest.trim_end_matches('/').contains('/') => Err(
            format!("{url:?}: an mqtt:// URL has no path; give the topics in topics = [...]"),
        ),
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

/// The top-level `site`: a name for topics, one level (no `/`, `+`, `#`).
pub(super) fn resolve_site(site: At<String>, src: &Source<'_>) -> Result<String, ConfigError> {
    let Some(site) = site else {
        return Ok(DEFAULT_SITE.to_owned());
    };
    let text = site.get_ref();
    if text.is_empty() || text.contains(['/', '+', '#', '\0']) || text.chars().any(char::is_control)
    {
        return Err(src.at(
            site.span(),
            format!("site: {text:?} cannot be one topic level; use a name such as \"office-7\" (no /, + or #)"),
        ));
    }
    Ok(site.into_inner())
}

/// The `[[forward]]` rules, each checked against the `feeds` it names.
pub(super) fn resolve_forwards(
    raw: Vec<Spanned<RawForward>>,
    src: &Source<'_>,
    feeds: &[FeedConfig],
) -> Result<Vec<ForwardConfig>, ConfigError> {
    if let Some(extra) = raw.get(MAX_FORWARDS) {
        return Err(src.at(
            extra.span(),
            format!(
                "[[forward]]: more than {MAX_FORWARDS} rules; list several channels in one rule"
            ),
        ));
    }
    let mut rules = Vec::new();
    for rule in raw {
        let span = rule.span();
        let r = rule.into_inner();
        let defaults = ForwardConfig::default();
        let Some(to) = r.to else {
            return Err(src.at(
                span,
                "[[forward]]: to is missing; name the mqtt feed whose broker gets the events, e.g. to = \"hq\"",
            ));
        };
        match feeds.iter().find(|f| f.name == *to.get_ref()) {
            Some(f) if f.format == FeedFormat::Mqtt => {}
            Some(f) => {
                return Err(src.at(
                    to.span(),
                    format!(
                        "[[forward]] to: the feed {:?} is a {} feed; forwarding needs a format = \"mqtt\" feed",
                        f.name, f.format
                    ),
                ));
            }
            None => {
                let mqtt: Vec<&str> = feeds
                    .iter()
                    .filter(|f| f.format == FeedFormat::Mqtt)
                    .map(|f| f.name.as_str())
                    .collect();
                return Err(src.at(
                    to.span(),
                    format!(
                        "[[forward]] to: no feed is named {:?}; {}",
                        to.get_ref(),
                        if mqtt.is_empty() {
                            "add a [[feed]] with format = \"mqtt\" and name it".to_owned()
                        } else {
                            format!("the mqtt feeds are {}", mqtt.join(", "))
                        }
                    ),
                ));
            }
        }
        let Some(list) = r.channels else {
            return Err(src.at(
                span,
                "[[forward]]: channels is missing; e.g. channels = [\"alerts\", \"prices.*\"]",
            ));
        };
        if list.get_ref().is_empty() {
            return Err(src.at(
                list.span(),
                "[[forward]] channels: empty; list at least one channel",
            ));
        }
        let mut channels = Vec::new();
        for channel in list.into_inner() {
            let c = channel.get_ref();
            let ok = matches!(
                c.as_str(),
                "*" | "prices" | "prices.*" | "news" | "alerts" | "status"
            ) || c
                .strip_prefix("prices.")
                .is_some_and(|s| !s.is_empty() && !s.contains(char::is_whitespace));
            if !ok {
                return Err(src.at(
                    channel.span(),
                    format!("[[forward]] channels: {c:?} is not a channel: use prices, prices.SYMBOL, prices.*, news, alerts, status or *"),
                ));
            }
            channels.push(channel.into_inner());
        }
        let topic = match r.topic {
            Some(topic) => {
                let sample = topic
                    .get_ref()
                    .replace("{site}", "s")
                    .replace("{channel}", "c")
                    .replace("{symbol}", "y");
                if let Err(why) = check_topic_name(&sample) {
                    return Err(src.at(topic.span(), format!("[[forward]] topic: {why}")));
                }
                if sample.contains(['{', '}']) {
                    return Err(src.at(
                        topic.span(),
                        format!("[[forward]] topic: {:?} has an unknown placeholder; use {{site}}, {{channel}} and {{symbol}}", topic.get_ref()),
                    ));
                }
                topic.into_inner()
            }
            None => defaults.topic.clone(),
        };
        let qos = match r.qos {
            None => defaults.qos,
            Some(q) if *q.get_ref() <= 1 => *q.get_ref() as u8,
            Some(q) => {
                return Err(src.at(
                    q.span(),
                    format!("[[forward]] qos: {} is not supported; use 1 (kept until the broker acknowledges) or 0", q.get_ref()),
                ));
            }
        };
        let max_bytes = match r.max_bytes {
            None => defaults.max_bytes,
            Some(b) if b.get_ref().0 >= 4096 => b.get_ref().0,
            Some(b) => {
                return Err(src.at(
                    b.span(),
                    "[[forward]] max_bytes: at least 4 KiB (e.g. \"64MiB\")",
                ));
            }
        };
        let max_age = match r.max_age {
            None => defaults.max_age,
            Some(a) if !a.get_ref().0.is_zero() => a.get_ref().0,
            Some(a) => {
                return Err(src.at(a.span(), "[[forward]] max_age: must not be 0 (e.g. \"3d\")"));
            }
        };
        rules.push(ForwardConfig {
            channels,
            to: to.into_inner(),
            topic,
            qos,
            retain: r.retain.unwrap_or(defaults.retain),
            max_bytes,
            max_age,
        });
    }
    Ok(rules)
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
        check_err(
            &format!("{BASE}topics = [\"a/b+\"]\n"),
            5,
            "+ must be a whole level",
        );
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
            &format!(
                "{BASE}topics = [\"a\"]\n[feed.pointers]\nsymbol = \"topic:0\"\nprice = \"/p\"\n"
            ),
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
        for bad in [
            "mqtt://",
            "mqtt://:1883",
            "tcp://b",
            "mqtt://b/x",
            "mqtt://b c",
        ] {
            assert!(check_mqtt_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forward_rules() {
        let text = format!(
            "site = \"office-7\"\n{BASE}topics = [\"a\"]\n\n[[forward]]\nchannels = [\"alerts\", \"prices.*\"]\nto = \"hq\"\ntopic = \"t/{{site}}/{{channel}}/{{symbol}}\"\nretain = true\nmax_bytes = \"1MiB\"\nmax_age = \"1h\"\n"
        );
        let config = load(&text).unwrap();
        assert_eq!(config.site, "office-7");
        let rule = &config.forwards[0];
        assert_eq!(rule.channels, ["alerts", "prices.*"]);
        assert_eq!((rule.to.as_str(), rule.qos, rule.retain), ("hq", 1, true));
        assert_eq!(rule.max_bytes, 1 << 20);
        assert_eq!(rule.max_age, std::time::Duration::from_secs(3600));
        let plain =
            format!("{BASE}topics = [\"a\"]\n[[forward]]\nchannels = [\"*\"]\nto = \"hq\"\n");
        let config = load(&plain).unwrap();
        assert_eq!(config.site, "tablo");
        assert_eq!(
            config.forwards[0],
            ForwardConfig {
                channels: vec!["*".into()],
                to: "hq".into(),
                ..ForwardConfig::default()
            }
        );
    }

    #[test]
    fn bad_forward_rules_are_named() {
        let feeds = format!("{BASE}topics = [\"a\"]\n[[feed]]\nname = \"b\"\nformat = \"demo\"\n");
        check_err(
            &format!("{feeds}[[forward]]\nchannels = [\"*\"]\nto = \"nope\"\n"),
            11,
            "no feed is named \"nope\"; the mqtt feeds are hq",
        );
        check_err(
            &format!("{feeds}[[forward]]\nchannels = [\"*\"]\nto = \"b\"\n"),
            11,
            "is a demo feed; forwarding needs a format = \"mqtt\" feed",
        );
        check_err(
            &format!("{feeds}[[forward]]\nto = \"hq\"\n"),
            9,
            "channels is missing",
        );
        check_err(
            &format!("{feeds}[[forward]]\nto = \"hq\"\nchannels = [\"trades\"]\n"),
            11,
            "\"trades\" is not a channel",
        );
        check_err(
            &format!(
                "{feeds}[[forward]]\nto = \"hq\"\nchannels = [\"*\"]\ntopic = \"t/{{who}}\"\n"
            ),
            12,
            "unknown placeholder",
        );
        check_err(
            &format!("{feeds}[[forward]]\nto = \"hq\"\nchannels = [\"*\"]\ntopic = \"t/#\"\n"),
            12,
            "may not hold #",
        );
        check_err("site = \"a/b\"\n", 1, "cannot be one topic level");
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
