//! The config file as written: serde types that mirror its layout, every
//! key optional and unknown keys rejected, each value kept with its span so
//! that an error can name its line.
//!
//! Values are parsed as they are read (a duration, a size, an address, a
//! keyword), so a malformed one is reported by the `toml` crate at its
//! place. Nothing here fills in a default, checks a value against a limit or
//! against another value, or resolves a path: that is `resolve`'s job.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use toml::Spanned;

use super::alert::RawAlert;
use super::keyword::Keyword;
use super::units::{parse_duration, parse_size};
use super::{
    CalendarChoice, Column, Digits, Direction, DisplayMode, FeedFormat, ScreenOff, WakeOn,
};

/// A value wrapped with where it was written in the file.
pub(super) type At<T> = Option<Spanned<T>>;

/// The whole file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    pub(super) data_dir: At<String>,
    pub(super) server: RawServer,
    pub(super) journal: RawJournal,
    pub(super) display: RawDisplay,
    pub(super) board: RawBoard,
    pub(super) feed: Vec<Spanned<RawFeed>>,
    /// `[[alert]]` rules, read and checked in `alert`.
    pub(super) alert: Vec<Spanned<RawAlert>>,
    pub(super) site: At<String>,
    pub(super) forward: Vec<Spanned<RawForward>>,
}

/// One `[[forward]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawForward {
    pub(super) channels: At<Vec<Spanned<String>>>,
    pub(super) to: At<String>,
    pub(super) topic: At<String>,
    pub(super) qos: At<u64>,
    pub(super) retain: Option<bool>,
    pub(super) max_bytes: At<Size>,
    pub(super) max_age: At<Dur>,
}

/// `[server]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub(super) listen: Option<Addr>,
    pub(super) max_clients: At<u64>,
    pub(super) max_frame_bytes: At<Size>,
    pub(super) allow_anonymous: Option<bool>,
    pub(super) tokens: Vec<Spanned<RawToken>>,
    pub(super) cors_origins: Vec<Spanned<String>>,
    pub(super) jwt: At<RawJwt>,
    pub(super) threads: At<u64>,
}

/// `[server.jwt]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawJwt {
    pub(super) hs256_secret_file: At<String>,
    pub(super) public_key_files: At<Vec<Spanned<String>>>,
    pub(super) issuer: At<String>,
    pub(super) audience: At<String>,
    pub(super) leeway: At<Dur>,
}

/// One entry of `[server] tokens` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawToken {
    pub(super) token: At<String>,
    pub(super) publish: Option<bool>,
}

/// `[journal]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawJournal {
    pub(super) dir: At<String>,
    pub(super) max_events: At<Limit<Count>>,
    pub(super) max_bytes: At<Limit<Size>>,
    pub(super) max_age: At<Limit<Dur>>,
    pub(super) flush_interval_ms: At<u64>,
    pub(super) cache_bytes: At<Size>,
}

/// `[display]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDisplay {
    pub(super) mode: Option<Kw<DisplayMode>>,
    pub(super) width: At<u64>,
    pub(super) height: At<u64>,
    pub(super) rotate: At<u64>,
    pub(super) fps_max: At<u64>,
    pub(super) theme: At<String>,
    pub(super) pixel_shift: Option<bool>,
    pub(super) device: At<String>,
    pub(super) bpp: At<u64>,
    pub(super) png_path: At<String>,
    /// Each entry kept with its place, for the line of a bad one.
    pub(super) schedule: Option<Vec<Spanned<String>>>,
    pub(super) off: Option<Kw<ScreenOff>>,
    pub(super) wake_on: Option<Kw<WakeOn>>,
}

/// `[board]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawBoard {
    pub(super) title: Option<String>,
    pub(super) stale_after: At<Dur>,
    pub(super) page_seconds: At<Secs>,
    pub(super) columns: Option<Vec<Spanned<Kw<Column>>>>,
    pub(super) locale: At<String>,
    pub(super) digits: Option<Kw<Digits>>,
    pub(super) direction: Option<Kw<Direction>>,
    pub(super) calendar: Option<Kw<CalendarChoice>>,
    pub(super) font: At<String>,
    pub(super) rows: Vec<Spanned<RawRow>>,
    pub(super) qr: At<String>,
}

/// One `[[board.rows]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRow {
    pub(super) symbol: At<String>,
    pub(super) label: Option<String>,
    pub(super) decimals: At<u64>,
}

/// One `[[feed]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawFeed {
    pub(super) name: At<String>,
    pub(super) format: Option<Kw<FeedFormat>>,
    pub(super) url: At<String>,
    pub(super) symbols: Option<Vec<Spanned<String>>>,
    pub(super) subscribe: At<Strings>,
    pub(super) channels: At<Vec<Spanned<String>>>,
    pub(super) pointers: At<RawPointers>,
    pub(super) topics: At<Vec<Spanned<String>>>,
    pub(super) qos: At<u64>,
    pub(super) client_id: At<String>,
    pub(super) username: At<String>,
    pub(super) password_file: At<String>,
}

/// `[feed.pointers]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPointers {
    pub(super) items: At<String>,
    pub(super) symbol: At<String>,
    pub(super) price: At<String>,
    pub(super) open: At<String>,
    pub(super) change_pct: At<String>,
    pub(super) bid: At<String>,
    pub(super) ask: At<String>,
    pub(super) volume: At<String>,
}

impl RawPointers {
    /// Each pointer with its key name, in file order.
    pub(super) fn fields(&self) -> [(&'static str, &At<String>); 8] {
        [
            ("items", &self.items),
            ("symbol", &self.symbol),
            ("price", &self.price),
            ("open", &self.open),
            ("change_pct", &self.change_pct),
            ("bid", &self.bid),
            ("ask", &self.ask),
            ("volume", &self.volume),
        ]
    }
}

/// A keyword value; a wrong word is reported with the accepted ones.
#[derive(Debug, Clone, Copy)]
pub(super) struct Kw<T>(pub(super) T);

impl<'de, T: Keyword> Deserialize<'de> for Kw<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T: Keyword> Visitor<'_> for V<T> {
            type Value = Kw<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "one of {}", T::list())
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Kw<T>, E> {
                T::from_keyword(s)
                    .map(Kw)
                    .ok_or_else(|| E::custom(format!("{s:?} is not one of {}", T::list())))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// A duration string, parsed by [`parse_duration`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Dur(pub(super) Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration in quotes such as \"30s\", \"5m\" or \"7d\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A duration string, or a whole number of seconds (for `page_seconds`,
/// whose name invites one).
#[derive(Debug, Clone, Copy)]
pub(super) struct Secs(pub(super) Duration);

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds or a duration such as \"10s\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Secs, E> {
                parse_duration(s).map(Secs).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Secs, E> {
                u64::try_from(n)
                    .map(|n| Secs(Duration::from_secs(n)))
                    .map_err(|_| {
                        E::custom(format!(
                            "{n} is negative; use a number of seconds such as 10"
                        ))
                    })
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Secs, E> {
                Ok(Secs(Duration::from_secs(n)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A size string parsed by [`parse_size`], or a whole number of bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Size(pub(super) u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"8MiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
                parse_size(s).map(Size).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
                u64::try_from(n)
                    .map(Size)
                    .map_err(|_| E::custom(format!("{n} is negative; use a size such as \"8MiB\"")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
                Ok(Size(n))
            }
        }
        d.deserialize_any(V)
    }
}

/// The word that turns a retention limit off: `max_bytes = "off"`.
pub(super) const OFF: &str = "off";

/// A retention limit as written: `"off"`, or a value that `T` reads. Every
/// other input goes to `T`, so a wrong value gets `T`'s own message.
#[derive(Debug, Clone, Copy)]
pub(super) enum Limit<T> {
    /// `"off"`: no limit.
    Off,
    /// A limit.
    On(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Limit<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Limit<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a limit or \"{OFF}\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Limit<T>, E> {
                if s.trim().eq_ignore_ascii_case(OFF) {
                    return Ok(Limit::Off);
                }
                T::deserialize(de::value::StrDeserializer::new(s)).map(Limit::On)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Limit<T>, E> {
                T::deserialize(de::value::I64Deserializer::new(n)).map(Limit::On)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Limit<T>, E> {
                T::deserialize(de::value::U64Deserializer::new(n)).map(Limit::On)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Limit<T>, E> {
                T::deserialize(de::value::BoolDeserializer::new(b)).map(Limit::On)
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Limit<T>, E> {
                T::deserialize(de::value::F64Deserializer::new(n)).map(Limit::On)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A whole number of events (`max_events`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Count(pub(super) u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a number of events such as 1000000, or \"{OFF}\"")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Count, E> {
                u64::try_from(n)
                    .map(Count)
                    .map_err(|_| E::custom(format!("{n} is negative; use a number of events")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Count, E> {
                Ok(Count(n))
            }
        }
        d.deserialize_any(V)
    }
}

/// A socket address such as `127.0.0.1:7070` or `[::]:7070`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Addr(pub(super) SocketAddr);

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Addr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address in quotes such as \"127.0.0.1:7070\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Addr, E> {
                s.parse().map(Addr).map_err(|_| {
                    E::custom(format!(
                        "{s:?} is not an address like 127.0.0.1:7070 or [::]:7070 (an IP address and a port)"
                    ))
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// A string or an array of strings (`subscribe`).
#[derive(Debug, Clone, Default)]
pub(super) struct Strings(pub(super) Vec<String>);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strings;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Strings, E> {
                Ok(Strings(vec![s.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strings, A::Error> {
                let mut all = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    all.push(s);
                }
                Ok(Strings(all))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::testing::{check_err, load};

    #[test]
    fn listen_must_be_an_address_with_a_port() {
        check_err(
            "\n\n[server]\nlisten = \"127.0.0.1\"\n",
            4,
            "[server] listen: \"127.0.0.1\" is not an address like 127.0.0.1:7070",
        );
        check_err(
            "[server]\nlisten = 7070\n",
            2,
            "[server] listen: expected an address in quotes",
        );
        assert_eq!(
            load("[server]\nlisten = \"[::]:80\"\n")
                .unwrap()
                .server
                .listen
                .to_string(),
            "[::]:80"
        );
    }

    #[test]
    fn calendar_is_one_of_the_four_words() {
        use crate::config::CalendarChoice;
        check_err(
            "[board]\nlocale = \"fa\"\ncalendar = \"jalali\"\n",
            3,
            "[board] calendar: \"jalali\" is not one of auto, gregorian, persian, hijri",
        );
        check_err("[board]\ncalendar = 1\n", 2, "[board] calendar");
        let calendar = |text: &str| load(text).unwrap().board.calendar;
        assert_eq!(calendar(""), CalendarChoice::Auto);
        assert_eq!(
            calendar("[board]\ncalendar = \"hijri\"\n"),
            CalendarChoice::Hijri
        );
        assert_eq!(
            calendar("[board]\nlocale = \"ar\"\ncalendar = \"gregorian\"\n"),
            CalendarChoice::Gregorian
        );
        assert_eq!(
            calendar("[board]\ncalendar = \"persian\"\n"),
            CalendarChoice::Persian
        );
    }

    #[test]
    fn keywords_list_the_accepted_words() {
        check_err(
            "[display]\nmode = \"windw\"\n",
            2,
            "[display] mode: \"windw\" is not one of auto, window, fbdev, png, none",
        );
        check_err(
            "[board]\ndigits = \"roman\"\n",
            2,
            "[board] digits: \"roman\" is not one of latin, persian, arabic",
        );
        check_err(
            "[board]\ndirection = \"up\"\n",
            2,
            "[board] direction: \"up\" is not one of auto, ltr, rtl",
        );
        check_err(
            "[board]\ncolumns = [\"price\",\n \"chnage\"]\n",
            3,
            "[board] columns: \"chnage\" is not one of price, change",
        );
        check_err(
            "[[feed]]\nformat = \"kraken\"\n",
            2,
            "[[feed]] format: \"kraken\" is not one of binance, coinbase, tablo, json, mqtt, demo",
        );
        check_err(
            "[board]\ncolumns = [\"price\", \"price\"]\n",
            2,
            "[board] columns: \"price\" is listed twice",
        );
    }

    #[test]
    fn bad_durations_and_sizes() {
        check_err(
            "[board]\nstale_after = \"5x\"\n",
            2,
            "[board] stale_after: \"5x\" has an unknown unit \"x\"",
        );
        check_err(
            "[board]\nstale_after = \"60\"\n",
            2,
            "[board] stale_after: \"60\" has a number without a unit",
        );
        check_err(
            "[journal]\nmax_age = 30\n",
            2,
            "[journal] max_age: expected a duration in quotes such as \"30s\"",
        );
        check_err(
            "[journal]\nmax_bytes = \"12 parsecs\"\n",
            2,
            "[journal] max_bytes: \"12 parsecs\" has an unknown unit \"parsecs\"",
        );
        check_err(
            "[journal]\nmax_bytes = -5\n",
            2,
            "[journal] max_bytes: -5 is negative",
        );
        check_err(
            "[journal]\nmax_bytes = true\n",
            2,
            "[journal] max_bytes: expected a size such as \"8MiB\" or a number of bytes",
        );
        check_err(
            "[board]\npage_seconds = \"0s\"\n",
            2,
            "[board] page_seconds: must be longer than 0s",
        );
        check_err(
            "[journal]\nmax_age = \"0d\"\n",
            2,
            "[journal] max_age: must not be 0",
        );
        check_err(
            "[journal]\nmax_bytes = 0\n",
            2,
            "[journal] max_bytes: must not be 0",
        );
        check_err(
            "[journal]\nmax_events = 0\n",
            2,
            "[journal] max_events: must not be 0",
        );
        assert_eq!(
            load("[board]\npage_seconds = \"1m\"\n")
                .unwrap()
                .board
                .page_seconds,
            Duration::from_secs(60)
        );
    }
}
