//! What the decoders share in reading a JSON message: parsing it, reading a
//! field of a given kind, and the [`DecodeError`]s for what is wrong.
//!
//! Nothing here knows a format: no field names, no message types. Those stay
//! in each format's own module. Like the decoders, this does no I/O and reads
//! no clock.

use std::fmt;

use serde_json::{Map, Value};

use crate::decimal;
use crate::feed::DecodeError;

/// A JSON object, as serde_json has it.
pub(crate) type Object = Map<String, Value>;

/// The JSON value of one text message, or [`DecodeError::NotJson`].
pub(crate) fn parse(text: &str) -> Result<Value, DecodeError> {
    serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))
}

/// Runs `decode`, which appends to `out`, and on an error takes back what it
/// appended: a message is decoded whole or not at all.
pub(crate) fn whole<T>(
    out: &mut Vec<T>,
    decode: impl FnOnce(&mut Vec<T>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let start = out.len();
    let result = decode(out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// A message that is an object with a string `type`: the object and the
/// type. `format` names the format in the errors (`"Coinbase"`).
pub(crate) fn typed<'a>(
    value: &'a Value,
    format: &str,
) -> Result<(&'a Object, &'a str), DecodeError> {
    let Value::Object(obj) = value else {
        return Err(unexpected(format!(
            "a {format} message must be a JSON object"
        )));
    };
    match obj.get("type") {
        Some(Value::String(kind)) => Ok((obj, kind.as_str())),
        Some(_) => Err(unexpected("`type` is not a string")),
        None => Err(unexpected(format!("not a {format} message: no `type`"))),
    }
}

/// An optional value: `None` when missing or `null`, else what `read` makes
/// of it, and `error()` when `read` makes nothing of it.
pub(crate) fn optional<T>(
    value: Option<&Value>,
    read: impl FnOnce(&Value) -> Option<T>,
    error: impl FnOnce() -> DecodeError,
) -> Result<Option<T>, DecodeError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => read(value).map(Some).ok_or_else(error),
    }
}

/// An optional decimal field `key`: `None` when missing or `null`, an error
/// when present but not a decimal string or number (see
/// [`decimal::from_json`]).
pub(crate) fn decimal(obj: &Object, key: &str) -> Result<Option<String>, DecodeError> {
    optional(obj.get(key), decimal::from_json, || {
        unexpected(format!("`{key}` is not a decimal"))
    })
}

/// A decimal field `key` that must be there: as [`decimal()`], and missing or
/// `null` is an error too.
pub(crate) fn required_decimal(obj: &Object, key: &str) -> Result<String, DecodeError> {
    decimal(obj, key)?.ok_or_else(|| missing(key))
}

/// A required non-empty string field `key`.
pub(crate) fn text(obj: &Object, key: &str) -> Result<String, DecodeError> {
    named_text(obj.get(key), format_args!("`{key}`"))
}

/// A required non-empty string, `value`, called `name` in the errors
/// (`` the symbol `s` ``).
pub(crate) fn named_text(
    value: Option<&Value>,
    name: impl fmt::Display,
) -> Result<String, DecodeError> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(unexpected(format!("{name} is not a non-empty string"))),
        None => Err(unexpected(format!("{name} is missing"))),
    }
}

/// `first: second` from two optional non-empty string fields, as much of it
/// as is there; `None` when neither is. Error replies are often a code and a
/// message, or a message and a reason.
pub(crate) fn joined(obj: &Object, first: &str, second: &str) -> Option<String> {
    let text = |key| {
        obj.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    match (text(first), text(second)) {
        (Some(first), Some(second)) => Some(format!("{first}: {second}")),
        (Some(text), None) | (None, Some(text)) => Some(text.to_owned()),
        (None, None) => None,
    }
}

/// Upstream text for an error message: its first `chars` characters, quoted
/// and escaped, so a long or odd value cannot flood the log.
pub(crate) fn quote(text: &str, chars: usize) -> String {
    let cut: String = text.chars().take(chars).collect();
    format!("{cut:?}")
}

/// The error for a field `key` that must be there and is not.
pub(crate) fn missing(key: &str) -> DecodeError {
    unexpected(format!("`{key}` is missing"))
}

/// [`DecodeError::Unexpected`] with `why`.
pub(crate) fn unexpected(why: impl Into<String>) -> DecodeError {
    DecodeError::Unexpected(why.into())
}
