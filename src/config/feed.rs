//! The feed list: `[[feed]]` tables and `--feed FORMAT=URL` flags, their
//! names (the format's, then numbered), URLs, channels and JSON pointers,
//! and the built-in demo feed.
//!
//! [`parse_feed_flag`] reads a flag for the command line; the feeds it gives
//! are checked again at load, since a caller may build one by hand. This
//! only checks that a feed is well described: it never connects to one.

use std::ops::Range;

use toml::Spanned;

use super::error::{ConfigError, Source, line_of};
use super::keyword::Keyword;
use super::mqtt::{RawMqttKeys, check_mqtt_url, resolve_mqtt, topic_level};
use super::paths::Paths;
use super::raw::{At, RawFeed, RawPointers, Strings};
use super::resolve::nonempty;
use super::{
    DEMO_FALLBACK_NOTE, DEMO_FEED_NAME, FeedConfig, FeedFormat, JsonPointers, MqttFeed, Overrides,
};

/// Parses one `--feed FORMAT=URL`. The feed is named after its format, then
/// `FORMAT-2`, `FORMAT-3`… when `taken` already holds that name; the chosen
/// name is pushed onto `taken`. The URL may be empty (or the `=URL` left
/// out) for `demo`. The error says what was wrong and the accepted formats.
pub fn parse_feed_flag(arg: &str, taken: &mut Vec<String>) -> Result<FeedConfig, String> {
    let (format_text, url) = match arg.split_once('=') {
        Some((format, url)) => (format.trim(), url.trim()),
        None => (arg.trim(), ""),
    };
    let format = FeedFormat::from_keyword(format_text).ok_or_else(|| {
        format!(
            "--feed {arg}: unknown format {format_text:?}; use --feed FORMAT=URL with FORMAT one of {}",
            FeedFormat::list()
        )
    })?;
    if format == FeedFormat::Demo {
        if !url.is_empty() {
            return Err(format!(
                "--feed {arg}: the demo feed has no URL; use --feed demo"
            ));
        }
    } else if url.is_empty() {
        return Err(format!(
            "--feed {arg}: a {format} feed needs a URL, e.g. --feed {format}=wss://host/path"
        ));
    } else {
        check_ws_url(url).map_err(|why| format!("--feed {arg}: {why}"))?;
    }
    match format {
        FeedFormat::Json => {
            return Err(format!(
                "--feed {arg}: a json feed needs [feed.pointers] to find its fields; describe it in a [[feed]] table of the config file"
            ));
        }
        FeedFormat::Mqtt => {
            return Err(format!(
                "--feed {arg}: an mqtt feed needs topics to subscribe to; describe it in a [[feed]] table with topics = [\"rates/#\"]"
            ));
        }
        FeedFormat::Coinbase => {
            return Err(format!(
                "--feed {arg}: a coinbase feed needs product ids to subscribe to; describe it in a [[feed]] table with symbols = [\"BTC-USD\", ...]"
            ));
        }
        _ => {}
    }
    let name = unique_name(format.name(), taken);
    taken.push(name.clone());
    Ok(FeedConfig {
        name,
        format,
        url: url.to_owned(),
        symbols: Vec::new(),
        subscribe: Vec::new(),
        channels: default_channels(format),
        pointers: JsonPointers::default(),
        mqtt: MqttFeed::default(),
    })
}

/// `base`, or `base-2`, `base-3`… whichever is not in `taken`.
fn unique_name(base: &str, taken: &[String]) -> String {
    if !taken.iter().any(|t| t == base) {
        return base.to_owned();
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|name| !taken.contains(name))
        .expect("an unused name exists")
}

/// Channels a feed subscribes to when the config does not say.
fn default_channels(format: FeedFormat) -> Vec<String> {
    match format {
        FeedFormat::Tablo => vec!["*".to_owned()],
        _ => Vec::new(),
    }
}

/// The built-in demo feed.
pub(super) fn demo_feed(name: String) -> FeedConfig {
    FeedConfig {
        name,
        format: FeedFormat::Demo,
        url: String::new(),
        symbols: Vec::new(),
        subscribe: Vec::new(),
        channels: Vec::new(),
        pointers: JsonPointers::default(),
        mqtt: MqttFeed::default(),
    }
}

/// Checks that `url` is a `ws://` or `wss://` URL with a host.
fn check_ws_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("wss://")
        .or_else(|| lower.strip_prefix("ws://"));
    match rest {
        None => Err(format!(
            "{url:?} is not a WebSocket URL: it must start with ws:// or wss://"
        )),
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            Err(format!("{url:?} has no host"))
        }
        Some(_) if url.chars().any(char::is_whitespace) => Err(format!("{url:?} contains a space")),
        Some(_) => Ok(()),
    }
}

/// Checks a channel name of Tablo's downstream protocol, as a client would
/// subscribe to it.
fn check_channel(channel: &str) -> Result<(), String> {
    match channel {
        "*" | "prices" | "news" | "alerts" | "status" => Ok(()),
        c if c.strip_prefix("prices.").is_some_and(|sym| !sym.is_empty()) => Ok(()),
        c => Err(format!(
            "{c:?} is not a channel: use prices, prices.SYMBOL, news, alerts, status or *"
        )),
    }
}

/// The feeds to run: the file's `[[feed]]` tables (`raw`), or the `--feed`
/// flags instead when there are any, then the demo feed for `--demo`, or
/// alone when nothing else is configured. Pushes a note for the log when the
/// flags replace the file's feeds or the demo feed is used in their absence.
pub(super) fn resolve_feeds(
    raw: Vec<Spanned<RawFeed>>,
    src: &Source<'_>,
    paths: &Paths<'_>,
    overrides: &Overrides,
    notes: &mut Vec<String>,
) -> Result<Vec<FeedConfig>, ConfigError> {
    let file_feeds = file_feeds(raw, src, paths)?;
    let mut feeds = if overrides.feeds.is_empty() {
        file_feeds
    } else {
        if let (Some(file), false) = (src.file, file_feeds.is_empty()) {
            notes.push(format!(
                "--feed replaces the {} [[feed]] table(s) of {}",
                file_feeds.len(),
                file.display()
            ));
        }
        check_flag_feeds(&overrides.feeds)?;
        overrides.feeds.clone()
    };
    if overrides.demo && !feeds.iter().any(|f| f.format == FeedFormat::Demo) {
        let taken: Vec<String> = feeds.iter().map(|f| f.name.clone()).collect();
        feeds.push(demo_feed(unique_name(DEMO_FEED_NAME, &taken)));
    }
    if feeds.is_empty() {
        feeds.push(demo_feed(DEMO_FEED_NAME.to_owned()));
        notes.push(DEMO_FALLBACK_NOTE.to_owned());
    }
    Ok(feeds)
}

/// The file's `[[feed]]` tables, named and checked.
fn file_feeds(
    raw: Vec<Spanned<RawFeed>>,
    src: &Source<'_>,
    paths: &Paths<'_>,
) -> Result<Vec<FeedConfig>, ConfigError> {
    // Explicit names first, so that an unnamed feed never takes a name that a
    // later feed gives itself.
    let mut taken: Vec<String> = Vec::new();
    let mut lines: Vec<usize> = Vec::new();
    for feed in &raw {
        let Some(name) = &feed.get_ref().name else {
            continue;
        };
        let text = name.get_ref();
        if text.trim().is_empty() || text.chars().any(char::is_control) {
            return Err(src.at(name.span(), format!("[[feed]] name: {text:?} is not a usable name; leave name out to use the format's name")));
        }
        if let Some(i) = taken.iter().position(|t| t == text) {
            return Err(src.at(
                name.span(),
                format!("[[feed]] name: {text:?} is already the name of the feed at line {}; feed names must be unique", lines[i]),
            ));
        }
        taken.push(text.clone());
        lines.push(line_of(src.text, name.span().start));
    }
    let mut feeds = Vec::new();
    for feed in raw {
        let span = feed.span();
        let raw = feed.into_inner();
        let Some(format) = raw.format.map(|f| f.0) else {
            return Err(src.at(
                span,
                format!(
                    "[[feed]]: format is missing; set format to one of {}",
                    FeedFormat::list()
                ),
            ));
        };
        let name = match raw.name {
            Some(name) => name.into_inner(),
            None => {
                let name = unique_name(format.name(), &taken);
                taken.push(name.clone());
                name
            }
        };
        let keys = RawMqttKeys {
            topics: raw.topics,
            qos: raw.qos,
            client_id: raw.client_id,
            username: raw.username,
            password_file: raw.password_file,
        };
        let mqtt = resolve_mqtt(format == FeedFormat::Mqtt, keys, span.clone(), src, paths)?;
        let feed = resolve_feed(
            name,
            format,
            span,
            raw.url,
            raw.symbols,
            raw.subscribe,
            raw.channels,
            raw.pointers,
            src,
        )?;
        feeds.push(FeedConfig { mqtt, ..feed });
    }
    Ok(feeds)
}

/// One `[[feed]]` table, checked for its format.
#[allow(
    clippy::too_many_arguments,
    reason = "the fields of one RawFeed, taken apart"
)]
fn resolve_feed(
    name: String,
    format: FeedFormat,
    span: Range<usize>,
    url: At<String>,
    symbols: Option<Vec<Spanned<String>>>,
    subscribe: At<Strings>,
    channels: At<Vec<Spanned<String>>>,
    pointers: At<RawPointers>,
    src: &Source<'_>,
) -> Result<FeedConfig, ConfigError> {
    let url = match (format, url) {
        (FeedFormat::Demo, Some(url)) if !url.get_ref().is_empty() => {
            return Err(src.at(
                url.span(),
                "[[feed]] url: the demo feed has no URL; remove url",
            ));
        }
        (FeedFormat::Demo, _) => String::new(),
        (_, None) => {
            return Err(src.at(
                span,
                if format == FeedFormat::Mqtt {
                    "[[feed]]: an mqtt feed needs url = \"mqtt://host:1883\"".to_owned()
                } else {
                    format!("[[feed]]: a {format} feed needs url = \"wss://…\"")
                },
            ));
        }
        (FeedFormat::Mqtt, Some(url)) => {
            check_mqtt_url(url.get_ref())
                .map_err(|why| src.at(url.span(), format!("[[feed]] url: {why}")))?;
            url.into_inner()
        }
        (_, Some(url)) => {
            check_ws_url(url.get_ref())
                .map_err(|why| src.at(url.span(), format!("[[feed]] url: {why}")))?;
            url.into_inner()
        }
    };
    let mut symbol_list = Vec::new();
    for symbol in symbols.unwrap_or_default() {
        symbol_list.push(nonempty(src, symbol, "[[feed]] symbols")?);
    }
    let subscribe = match subscribe {
        Some(frames) if frames.get_ref().0.iter().any(String::is_empty) => {
            return Err(src.at(
                frames.span(),
                "[[feed]] subscribe: a subscribe message must not be empty",
            ));
        }
        Some(frames) => frames.into_inner().0,
        None => Vec::new(),
    };
    let channels = match channels {
        Some(list) if format != FeedFormat::Tablo => {
            return Err(src.at(
                list.span(),
                "[[feed]] channels: only a format = \"tablo\" feed has channels",
            ));
        }
        Some(list) if list.get_ref().is_empty() => {
            return Err(src.at(
                list.span(),
                "[[feed]] channels: empty; list channels or leave it out for [\"*\"]",
            ));
        }
        Some(list) => {
            let mut channels = Vec::new();
            for channel in list.into_inner() {
                check_channel(channel.get_ref())
                    .map_err(|why| src.at(channel.span(), format!("[[feed]] channels: {why}")))?;
                channels.push(channel.into_inner());
            }
            channels
        }
        None => default_channels(format),
    };
    let pointers = match pointers {
        Some(p) if !matches!(format, FeedFormat::Json | FeedFormat::Mqtt) => {
            return Err(src.at(
                p.span(),
                "[feed.pointers]: only a format = \"json\" or \"mqtt\" feed uses pointers",
            ));
        }
        Some(p) => {
            for (key, value) in p.get_ref().fields() {
                if let Some(value) = value {
                    let topic = (format == FeedFormat::Mqtt && key == "symbol")
                        .then(|| topic_level(value.get_ref()))
                        .flatten();
                    let checked = match topic {
                        Some(level) => level.map(|_| ()),
                        None => check_pointer(value.get_ref()),
                    };
                    checked.map_err(|why| {
                        src.at(value.span(), format!("[feed.pointers] {key}: {why}"))
                    })?;
                }
            }
            let (p_span, p) = (p.span(), p.into_inner());
            let text = |v: At<String>| v.map(Spanned::into_inner);
            let pointers = JsonPointers {
                items: text(p.items),
                symbol: text(p.symbol),
                price: text(p.price),
                open: text(p.open),
                change_pct: text(p.change_pct),
                bid: text(p.bid),
                ask: text(p.ask),
                volume: text(p.volume),
            };
            check_json_feed(&pointers, &symbol_list).map_err(|why| src.at(p_span, why))?;
            pointers
        }
        None if format == FeedFormat::Json => {
            let pointers = JsonPointers::default();
            check_json_feed(&pointers, &symbol_list).map_err(|why| src.at(span.clone(), why))?;
            pointers
        }
        None => JsonPointers::default(),
    };
    if format == FeedFormat::Coinbase && symbol_list.is_empty() && subscribe.is_empty() {
        return Err(src.at(
            span,
            "[[feed]]: a coinbase feed needs symbols such as [\"BTC-USD\"] (or its own subscribe message)",
        ));
    }
    Ok(FeedConfig {
        name,
        format,
        url,
        symbols: symbol_list,
        subscribe,
        channels,
        pointers,
        mqtt: MqttFeed::default(),
    })
}

/// Checks an RFC 6901 JSON pointer: empty, or `/` then tokens in which `~`
/// is only ever `~0` or `~1`.
fn check_pointer(pointer: &str) -> Result<(), String> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!(
            "{pointer:?} is not a JSON pointer: it must start with / (e.g. \"/data/price\"), or be \"\" for the whole record"
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "{pointer:?}: in a JSON pointer ~ must be written ~0 and / inside a name ~1"
            ));
        }
    }
    Ok(())
}

/// What a json feed needs: a price and a way to tell the symbol.
fn check_json_feed(pointers: &JsonPointers, symbols: &[String]) -> Result<(), String> {
    if pointers.price.is_none() {
        return Err(
            "[feed.pointers] price is missing: a json feed needs price = \"/path/to/price\""
                .to_owned(),
        );
    }
    if pointers.symbol.is_none() && symbols.len() != 1 {
        return Err(
            "[feed.pointers] symbol is missing: a json feed needs symbol = \"/path/to/symbol\", or exactly one entry in symbols"
                .to_owned(),
        );
    }
    Ok(())
}

/// Checks feeds from `--feed`, which may come from [`parse_feed_flag`] or be
/// built by hand.
fn check_flag_feeds(feeds: &[FeedConfig]) -> Result<(), ConfigError> {
    for (i, feed) in feeds.iter().enumerate() {
        if feeds[..i].iter().any(|f| f.name == feed.name) {
            return Err(ConfigError::plain(format!(
                "--feed: two feeds are named {:?}",
                feed.name
            )));
        }
        match feed.format {
            FeedFormat::Demo => {}
            FeedFormat::Json => {
                if let Err(why) = check_json_feed(&feed.pointers, &feed.symbols) {
                    return Err(ConfigError::plain(format!(
                        "--feed json={}: {why}; only a config file can say that, so describe this feed in a [[feed]] table",
                        feed.url
                    )));
                }
            }
            _ => check_ws_url(&feed.url).map_err(|why| {
                ConfigError::plain(format!("--feed {}={}: {why}", feed.format, feed.url))
            })?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{FILE, check_err, load, load_notes};

    use super::*;

    fn feed_names(text: &str) -> Vec<String> {
        load(text)
            .unwrap()
            .feeds
            .into_iter()
            .map(|f| f.name)
            .collect()
    }

    #[test]
    fn feeds_are_named_after_their_format_then_numbered() {
        let b = "[[feed]]\nformat = \"binance\"\nurl = \"wss://x\"\n";
        assert_eq!(
            feed_names(&b.repeat(3)),
            ["binance", "binance-2", "binance-3"]
        );
        let named = "[[feed]]\nname = \"binance\"\nformat = \"coinbase\"\nurl = \"wss://y\"\nsymbols = [\"A-B\"]\n";
        assert_eq!(feed_names(&format!("{b}{named}")), ["binance-2", "binance"]);
        let named2 = "[[feed]]\nname = \"binance-2\"\nformat = \"binance\"\nurl = \"wss://z\"\n";
        assert_eq!(
            feed_names(&format!("{b}{b}{named2}")),
            ["binance", "binance-3", "binance-2"]
        );
    }

    #[test]
    fn duplicate_feed_names_are_refused() {
        let text = "[[feed]]\nname = \"a\"\nformat = \"demo\"\n\n[[feed]]\nname = \"a\"\nformat = \"demo\"\n";
        check_err(
            text,
            6,
            "[[feed]] name: \"a\" is already the name of the feed at line 2; feed names must be unique",
        );
        check_err(
            "[[feed]]\nname = \" \"\nformat = \"demo\"\n",
            2,
            "[[feed]] name: \" \" is not a usable name",
        );
    }

    #[test]
    fn feed_urls() {
        check_err(
            "[[feed]]\nformat = \"demo\"\n\n[[feed]]\nformat = \"binance\"\n",
            4,
            "[[feed]]: a binance feed needs url = ",
        );
        check_err(
            "[[feed]]\nformat = \"tablo\"\nurl = \"http://x/ws\"\n",
            3,
            "[[feed]] url: \"http://x/ws\" is not a WebSocket URL: it must start with ws:// or wss://",
        );
        check_err(
            "[[feed]]\nformat = \"tablo\"\nurl = \"ws:///ws\"\n",
            3,
            "has no host",
        );
        check_err(
            "[[feed]]\nformat = \"demo\"\nurl = \"ws://x\"\n",
            3,
            "the demo feed has no URL",
        );
        check_err(
            "[[feed]]\nname = \"x\"\n",
            1,
            "[[feed]]: format is missing; set format to one of binance, coinbase, tablo, json, mqtt, demo",
        );
        assert_eq!(
            load("[[feed]]\nformat = \"demo\"\nurl = \"\"\n")
                .unwrap()
                .feeds[0]
                .url,
            ""
        );
        assert_eq!(
            load("[[feed]]\nformat = \"tablo\"\nurl = \"WSS://Host\"\n")
                .unwrap()
                .feeds[0]
                .url,
            "WSS://Host"
        );
    }

    #[test]
    fn json_feeds_need_a_price_and_a_symbol() {
        let head = "[[feed]]\nformat = \"json\"\nurl = \"wss://x\"\n";
        check_err(head, 1, "[feed.pointers] price is missing");
        check_err(
            &format!("{head}[feed.pointers]\nsymbol = \"/s\"\n"),
            4,
            "[feed.pointers] price is missing",
        );
        check_err(
            &format!("{head}[feed.pointers]\nprice = \"/p\"\n"),
            4,
            "[feed.pointers] symbol is missing",
        );
        check_err(
            &format!("{head}symbols = [\"A\", \"B\"]\n[feed.pointers]\nprice = \"/p\"\n"),
            5,
            "exactly one entry in symbols",
        );
        check_err(
            &format!("{head}[feed.pointers]\nprice = \"p\"\nsymbol = \"/s\"\n"),
            5,
            "[feed.pointers] price: \"p\" is not a JSON pointer: it must start with /",
        );
        check_err(
            &format!("{head}[feed.pointers]\nprice = \"/a~2b\"\nsymbol = \"/s\"\n"),
            5,
            "~0",
        );
        let one = load(&format!(
            "{head}symbols = [\"GOLD\"]\n[feed.pointers]\nprice = \"/a~1b\"\n"
        ))
        .unwrap();
        assert_eq!(one.feeds[0].pointers.price.as_deref(), Some("/a~1b"));
        let inline = load(&format!(
            "{head}pointers = {{ price = \"\", symbol = \"/s\" }}\n"
        ))
        .unwrap();
        assert_eq!(inline.feeds[0].pointers.price.as_deref(), Some(""));
    }

    #[test]
    fn format_specific_keys_are_refused_elsewhere() {
        check_err(
            "[[feed]]\nformat = \"binance\"\nurl = \"wss://x\"\n[feed.pointers]\nprice = \"/p\"\n",
            4,
            "[feed.pointers]: only a format = \"json\" or \"mqtt\" feed uses pointers",
        );
        check_err(
            "[[feed]]\nformat = \"binance\"\nurl = \"wss://x\"\nchannels = [\"news\"]\n",
            4,
            "[[feed]] channels: only a format = \"tablo\" feed has channels",
        );
        check_err(
            "[[feed]]\nformat = \"tablo\"\nurl = \"wss://x\"\nchannels = []\n",
            4,
            "[[feed]] channels: empty",
        );
        check_err(
            "[[feed]]\nformat = \"tablo\"\nurl = \"wss://x\"\nchannels = [\"prices\", \"weather\"]\n",
            4,
            "\"weather\" is not a channel",
        );
        check_err(
            "[[feed]]\nformat = \"coinbase\"\nurl = \"wss://x\"\n",
            1,
            "a coinbase feed needs symbols",
        );
        check_err(
            "[[feed]]\nformat = \"binance\"\nurl = \"wss://x\"\nsymbols = [\"\"]\n",
            4,
            "[[feed]] symbols: must not be empty",
        );
        check_err(
            "[[feed]]\nformat = \"binance\"\nurl = \"wss://x\"\nsubscribe = \"\"\n",
            4,
            "a subscribe message must not be empty",
        );
        let tablo = load("[[feed]]\nformat = \"tablo\"\nurl = \"wss://x\"\n").unwrap();
        assert_eq!(tablo.feeds[0].channels, ["*"]);
        let channels = load(
            "[[feed]]\nformat = \"tablo\"\nurl = \"wss://x\"\nchannels = [\"prices.BTC\", \"*\"]\n",
        )
        .unwrap();
        assert_eq!(channels.feeds[0].channels, ["prices.BTC", "*"]);
    }

    #[test]
    fn feed_flags_replace_the_files_feeds() {
        let text =
            "[[feed]]\nformat = \"binance\"\nurl = \"wss://x\"\n[[feed]]\nformat = \"demo\"\n";
        let mut taken = Vec::new();
        let flag = parse_feed_flag("tablo=ws://up:7070/ws", &mut taken).unwrap();
        let overrides = Overrides {
            feeds: vec![flag.clone()],
            ..Overrides::default()
        };
        let (c, notes) = load_notes(text, &overrides).unwrap();
        assert_eq!(c.feeds, vec![flag]);
        assert_eq!(
            notes,
            vec![format!("--feed replaces the 2 [[feed]] table(s) of {FILE}")]
        );
    }

    #[test]
    fn json_and_coinbase_feed_flags_are_refused_with_a_hint() {
        let mut taken = Vec::new();
        let err = parse_feed_flag("json=wss://x", &mut taken).unwrap_err();
        assert!(
            err.contains("[feed.pointers]") && err.contains("[[feed]]"),
            "{err}"
        );
        let err = parse_feed_flag("coinbase=wss://x", &mut taken).unwrap_err();
        assert!(err.contains("symbols"), "{err}");
        assert!(taken.is_empty(), "a refused flag takes no name");
    }

    #[test]
    fn demo_flag_adds_the_demo_feed_once() {
        let overrides = Overrides {
            demo: true,
            ..Overrides::default()
        };
        let b = "[[feed]]\nformat = \"binance\"\nurl = \"wss://x\"\n";
        let (c, notes) = load_notes(b, &overrides).unwrap();
        assert_eq!(
            c.feeds.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["binance", "demo"]
        );
        assert!(notes.is_empty());
        let (c, notes) = load_notes("", &overrides).unwrap();
        assert_eq!(c.feeds, vec![demo_feed("demo".into())]);
        assert!(notes.is_empty(), "--demo asked for it: {notes:?}");
        let with_demo = "[[feed]]\nname = \"sim\"\nformat = \"demo\"\n";
        assert_eq!(load_notes(with_demo, &overrides).unwrap().0.feeds.len(), 1);
        let named_demo = "[[feed]]\nname = \"demo\"\nformat = \"binance\"\nurl = \"wss://x\"\n";
        let names: Vec<String> = load_notes(named_demo, &overrides)
            .unwrap()
            .0
            .feeds
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["demo", "demo-2"]);
    }

    #[test]
    fn feed_flags_are_named_and_numbered() {
        let mut taken = Vec::new();
        let a = parse_feed_flag(
            "binance=wss://stream.binance.com:9443/ws/btcusdt@ticker",
            &mut taken,
        )
        .unwrap();
        let b = parse_feed_flag("binance=wss://other/ws", &mut taken).unwrap();
        let c = parse_feed_flag("demo=", &mut taken).unwrap();
        let d = parse_feed_flag("demo", &mut taken).unwrap();
        let e = parse_feed_flag("tablo=ws://10.0.0.1:7070/ws", &mut taken).unwrap();
        assert_eq!(
            (a.name.as_str(), a.format),
            ("binance", FeedFormat::Binance)
        );
        assert_eq!(a.url, "wss://stream.binance.com:9443/ws/btcusdt@ticker");
        assert_eq!(b.name, "binance-2");
        assert_eq!((c.name.as_str(), c.url.as_str()), ("demo", ""));
        assert_eq!(d.name, "demo-2");
        assert_eq!(e.channels, ["*"]);
        assert_eq!(taken, ["binance", "binance-2", "demo", "demo-2", "tablo"]);
    }

    #[test]
    fn bad_feed_flags_say_what_is_accepted() {
        let mut taken = Vec::new();
        let err = parse_feed_flag("kraken=wss://x", &mut taken).unwrap_err();
        assert!(
            err.contains("binance, coinbase, tablo, json, mqtt, demo"),
            "{err}"
        );
        assert!(
            parse_feed_flag("binance", &mut taken)
                .unwrap_err()
                .contains("needs a URL")
        );
        assert!(
            parse_feed_flag("binance=https://x", &mut taken)
                .unwrap_err()
                .contains("ws:// or wss://")
        );
        assert!(
            parse_feed_flag("demo=ws://x", &mut taken)
                .unwrap_err()
                .contains("no URL")
        );
        assert!(taken.is_empty());
    }
}
