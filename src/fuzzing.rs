//! A narrow door to the parsers that meet the network or the operator, for
//! the property tests (`tests/it/fuzz.rs`) and `cargo bench --bench fuzz`,
//! which cannot reach the crate's private modules.
//!
//! Not part of Tablo's API: hidden from the docs, and it may change with any
//! release. It only forwards to pure functions (no I/O, no clock) and adds
//! no behaviour of its own; the property tests judge exactly the code the
//! daemon runs. What is public anyway (`protocol`, `feed::Decoder`,
//! `config::Config`) is used directly and not repeated here.

use serde_json::{Map, Value};

use crate::event::Body;

pub use crate::decimal::is_decimal;
pub use crate::decimal::{Decimal, MAX_LEN as DECIMAL_MAX_LEN, change_pct, compare, from_json};

/// `/journal/export`'s parsed query: `Ok((since, limit))` for a range,
/// `Err(Ok(n))` for `tail=n`, `Err(Err(message))` for the 400 answer.
pub fn export_query(query: &str) -> Result<(u64, usize), Result<usize, String>> {
    use crate::server::ExportQuery;
    match crate::server::parse_export_query(query) {
        Ok(ExportQuery::Range { since, limit }) => Ok((since, limit)),
        Ok(ExportQuery::Tail(n)) => Err(Ok(n)),
        Err(message) => Err(Err(message)),
    }
}

/// How the server decodes a query value (`%XX` escapes, `+` as a space).
pub fn percent_decode(s: &str) -> String {
    crate::server::percent_decode(s)
}

/// Whether the server takes `key` as a `Sec-WebSocket-Key`.
pub fn valid_websocket_key(key: &str) -> bool {
    crate::server::valid_key(key)
}

/// The label the server makes of a `client=` value.
pub fn client_kind(kind: Option<&str>) -> String {
    crate::server::clean_kind(kind)
}

/// Where the server finds the end of a request head in `buf`.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    crate::server::find_head_end(buf)
}

/// The event a `publish` to `channel` with `data` asks for, or the error
/// code's wire name and message.
pub fn publish_body(
    channel: &str,
    data: Map<String, Value>,
) -> Result<Body, (&'static str, String)> {
    crate::publish::body(channel, data).map_err(|(code, message)| (code.name(), message))
}
