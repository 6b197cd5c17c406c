//! [`ConfigError`], and where a problem is: the file, the line and the key.
//!
//! [`Source`] is the file being resolved; its `at` makes the error for a
//! value at a given span, and its `toml_error` turns the `toml` crate's own
//! errors (syntax, unknown keys, wrong types, sections of the wrong kind)
//! into messages that name the line, the key and the fix. Nothing here
//! decides whether a value is valid: that is the resolver's job.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Why the settings could not be loaded. Every variant maps to exit code 78.
#[derive(Debug)]
pub enum ConfigError {
    /// The config file could not be read (missing, a directory, no
    /// permission).
    Unreadable {
        /// The path as given.
        path: PathBuf,
        /// What the operating system said.
        error: io::Error,
    },
    /// The settings are wrong: bad TOML, an unknown key, a bad value, or a
    /// combination that cannot work.
    Invalid {
        /// The config file, when the problem is in it.
        file: Option<PathBuf>,
        /// 1-based line in `file`, when known.
        line: Option<usize>,
        /// What is wrong and how to fix it; names the key.
        message: String,
    },
}

impl ConfigError {
    /// An error that is not in any file (an override or the environment).
    pub(super) fn plain(message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: None,
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Unreadable { path, error } if error.kind() == io::ErrorKind::NotFound => {
                write!(
                    f,
                    "config file {} does not exist: check the --config path",
                    path.display()
                )
            }
            ConfigError::Unreadable { path, error } => {
                write!(f, "cannot read config file {}: {error}", path.display())
            }
            ConfigError::Invalid {
                file: Some(file),
                line: Some(line),
                message,
            } => {
                write!(f, "{}:{line}: {message}", file.display())
            }
            ConfigError::Invalid {
                file: Some(file),
                line: None,
                message,
            } => {
                write!(f, "{}: {message}", file.display())
            }
            ConfigError::Invalid {
                file: None,
                message,
                ..
            } => f.write_str(message),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Unreadable { error, .. } => Some(error),
            ConfigError::Invalid { .. } => None,
        }
    }
}

/// The config file being resolved: where errors point.
pub(super) struct Source<'a> {
    /// `None` when there is no file (defaults and overrides only).
    pub(super) file: Option<&'a Path>,
    /// The file's text; empty when there is no file.
    pub(super) text: &'a str,
}

impl Source<'_> {
    /// An error at `span`, naming the file and the line.
    pub(super) fn at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.map(Path::to_path_buf),
            line: self.file.map(|_| line_of(self.text, span.start)),
            message: message.into(),
        }
    }

    /// Turns toml's error into one that names the line, the key and the fix.
    pub(super) fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        if let Some(shape) = self.shape_error() {
            return shape;
        }
        let span = e.span().unwrap_or(0..0);
        let path = key_path(e);
        let msg = e.message();
        let message = if let Some(rest) = msg.strip_prefix("unknown field `") {
            let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let expected: Vec<&str> = backticked(expected);
            let place = match path.as_deref() {
                None | Some("") => "at the top level".to_owned(),
                Some(p) => format!("in {}", place(p)),
            };
            match expected.as_slice() {
                [] => format!("unknown key `{name}` {place}"),
                [one] => format!("unknown key `{name}` {place}; expected {one}"),
                many => format!(
                    "unknown key `{name}` {place}; expected one of {}",
                    many.join(", ")
                ),
            }
        } else if msg == "duplicate key" {
            let key = self.text.get(span.clone()).unwrap_or("?");
            format!("duplicate key `{key}`: a key may be set only once in a table")
        } else if let Some(rest) = msg
            .strip_prefix("invalid type: ")
            .or_else(|| msg.strip_prefix("invalid value: "))
        {
            let (found, expected) = rest
                .rsplit_once(", expected ")
                .unwrap_or((rest, "something else"));
            let found = if found == "map" { "a table" } else { found };
            let what = path.as_deref().map_or_else(|| "value".to_owned(), place);
            format!(
                "{what}: expected {}, found {found}",
                friendly_expected(expected)
            )
        } else if let Some(p) = path.as_deref() {
            format!("{}: {msg}", place(p))
        } else {
            let column = column_of(self.text, span.start);
            format!("invalid TOML at column {column}: {msg}")
        };
        self.at(span, message)
    }
}

impl Source<'_> {
    /// A section written as the wrong kind of table (`[[server]]`, `[feed]`),
    /// which serde would report confusingly (it reads a struct from an array
    /// field by field). Only called once parsing has failed.
    fn shape_error(&self) -> Option<ConfigError> {
        let doc = toml::de::DeTable::parse(self.text).ok()?;
        for (key, value) in doc.get_ref().iter() {
            let name: &str = key.get_ref();
            let value = value.get_ref();
            match name {
                "server" | "journal" | "display" | "board" if !value.is_table() => {
                    return Some(self.at(
                        key.span(),
                        match value.is_array() {
                            true => format!("[{name}] must be a table: write [{name}] on a line of its own, not [[{name}]]"),
                            false => format!("[{name}] must be a table: write [{name}] on a line of its own, then its keys, not {name} = <{}>", value.type_str()),
                        },
                    ));
                }
                "feed" | "alert" if !value.is_array() => {
                    return Some(self.at(
                        key.span(),
                        format!("[[{name}]] is a list of tables: start each one with [[{name}]], not [{name}]"),
                    ));
                }
                "board" => {
                    let rows = value
                        .as_table()
                        .and_then(|board| board.iter().find(|(k, _)| k.get_ref() == "rows"));
                    if let Some((key, _)) = rows.filter(|(_, rows)| !rows.get_ref().is_array()) {
                        return Some(self.at(
                            key.span(),
                            "[[board.rows]] is a list of tables: start each row with [[board.rows]], not [board.rows]",
                        ));
                    }
                }
                _ => {}
            }
        }
        None
    }
}

/// The dotted key path toml attached to a deserialization error, if any.
///
/// toml keeps the path private and prints it (`in `server.listen``) only when
/// the error has no input to quote, so print it that way and read it back.
fn key_path(e: &toml::de::Error) -> Option<String> {
    let mut bare = e.clone();
    bare.set_input(None);
    let shown = bare.to_string();
    shown.lines().rev().find_map(|line| {
        line.strip_prefix("in `")?
            .strip_suffix('`')
            .map(str::to_owned)
    })
}

/// Every `name` in backticks in `text`.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// How an error names a dotted key path: `[server] listen`, `[[feed]]
/// pointers`, `[feed.pointers] price`, `data_dir`.
fn place(path: &str) -> String {
    const TABLES: [(&str, &str); 9] = [
        ("board.rows", "[[board.rows]]"),
        ("server.jwt", "[server.jwt]"),
        ("feed.pointers", "[feed.pointers]"),
        ("server", "[server]"),
        ("journal", "[journal]"),
        ("display", "[display]"),
        ("board", "[board]"),
        ("feed", "[[feed]]"),
        ("alert", "[[alert]]"),
    ];
    for (table, shown) in TABLES {
        if path == table {
            return shown.to_owned();
        }
        if let Some(key) = path
            .strip_prefix(table)
            .and_then(|rest| rest.strip_prefix('.'))
        {
            return format!("{shown} {key}");
        }
    }
    path.to_owned()
}

/// serde's name for an expected type, in words a user knows.
fn friendly_expected(expected: &str) -> String {
    match expected {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a whole number, 0 or more".to_owned(),
        "isize" | "i64" | "i32" | "i16" | "i8" => "a whole number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a string" => "a string in quotes".to_owned(),
        "a sequence" => "an array such as [\"a\", \"b\"]".to_owned(),
        e if e.starts_with("struct ") => "a table".to_owned(),
        e => e.to_owned(),
    }
}

/// 1-based line of byte offset `at` in `text`.
pub(super) fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// 1-based column (in characters) of byte offset `at` in `text`.
fn column_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    let start = text.as_bytes()[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |nl| nl + 1);
    String::from_utf8_lossy(&text.as_bytes()[start..at])
        .chars()
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{check_err, load};

    use super::*;

    #[test]
    fn unknown_key_in_server_names_line_key_and_choices() {
        let err =
            load("# comment\n\n[server]\nlisten = \"127.0.0.1:7070\"\nlisen = 1\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/tablo/tablo.toml:5: unknown key `lisen` in [server]; expected one of listen, max_clients, \
             max_frame_bytes, allow_anonymous, tokens, cors_origins, jwt, threads"
        );
    }

    #[test]
    fn unknown_keys_in_every_section() {
        check_err(
            "colour = 1\n",
            1,
            "unknown key `colour` at the top level; expected one of data_dir, server",
        );
        check_err("\n[servers]\n", 2, "unknown key `servers` at the top level");
        check_err(
            "[server]\ntokens = [{ token = \"a\", publik = true }]\n",
            2,
            "unknown key `publik` in [server] tokens; expected one of token, publish",
        );
        check_err(
            "[journal]\n\nmax_size = 1\n",
            3,
            "unknown key `max_size` in [journal]; expected one of dir, max_events",
        );
        check_err(
            "[display]\nmode = \"png\"\nfps = 2\n",
            3,
            "unknown key `fps` in [display]",
        );
        check_err(
            "[board]\ntitle = \"x\"\ncolumn = []\n",
            3,
            "unknown key `column` in [board]",
        );
        check_err(
            "[[board.rows]]\nsymbol = \"A\"\ndecimal = 2\n",
            3,
            "unknown key `decimal` in [[board.rows]]; expected one of symbol, label, decimals",
        );
        check_err(
            "[[feed]]\nformat = \"demo\"\nsymbol = \"A\"\n",
            3,
            "unknown key `symbol` in [[feed]]; expected one of name, format, url",
        );
        check_err(
            "[[feed]]\nformat = \"json\"\n[feed.pointers]\nprice = \"/p\"\nlast = \"/l\"\n",
            5,
            "unknown key `last` in [feed.pointers]; expected one of items, symbol, price",
        );
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        check_err("[server]\nlisten = \"a\n", 2, "invalid TOML at column");
        check_err("[server\n", 1, "invalid TOML");
        check_err(
            "[server]\nmax_clients = 1\nmax_clients = 2\n",
            3,
            "duplicate key `max_clients`",
        );
    }

    #[test]
    fn wrong_types_say_what_was_expected() {
        check_err(
            "[server]\nmax_clients = \"many\"\n",
            2,
            "[server] max_clients: expected a whole number, 0 or more, found string \"many\"",
        );
        check_err(
            "[server]\nmax_clients = -1\n",
            2,
            "[server] max_clients: expected a whole number, 0 or more, found integer `-1`",
        );
        check_err(
            "[server]\nallow_anonymous = \"yes\"\n",
            2,
            "[server] allow_anonymous: expected true or false",
        );
        check_err(
            "[board]\ncolumns = \"price\"\n",
            2,
            "[board] columns: expected an array",
        );
        check_err(
            "server = 1\n",
            1,
            "[server] must be a table: write [server] on a line of its own, then its keys, not server = <integer>",
        );
        check_err(
            "[board]\ntitle = 3\n",
            2,
            "[board] title: expected a string in quotes, found integer `3`",
        );
        check_err(
            "[[feed]]\nformat = \"binance\"\nsubscribe = 3\n",
            3,
            "[[feed]] subscribe: expected a string or an array of strings",
        );
        check_err("data_dir = 1\n", 1, "data_dir: expected a string in quotes");
    }

    #[test]
    fn sections_of_the_wrong_kind_say_how_to_write_them() {
        check_err(
            "\n[[server]]\nlisten = \"1.2.3.4:5\"\n",
            2,
            "[server] must be a table: write [server] on a line of its own, not [[server]]",
        );
        check_err("journal = 3\n", 1, "[journal] must be a table");
        check_err(
            "[feed]\nformat = \"demo\"\n",
            1,
            "[[feed]] is a list of tables: start each one with [[feed]], not [feed]",
        );
        check_err(
            "[board]\ntitle = \"t\"\n[board.rows]\nsymbol = \"A\"\n",
            3,
            "[[board.rows]] is a list of tables",
        );
        check_err(
            "[board]\nrows = 3\n",
            2,
            "[[board.rows]] is a list of tables",
        );
        check_err(
            "feed = [1]\n",
            1,
            "[[feed]]: expected a table, found integer `1`",
        );
    }

    #[test]
    fn config_errors_without_a_line_name_the_file() {
        let e = ConfigError::Invalid {
            file: Some("/x.toml".into()),
            line: None,
            message: "m".into(),
        };
        assert_eq!(e.to_string(), "/x.toml: m");
        assert_eq!(ConfigError::plain("just this").to_string(), "just this");
    }
}
