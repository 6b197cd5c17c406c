//! The layering of `src/`, checked: every import points down.
//!
//! ARCHITECTURE.md's "Layers" table gives each room (a module, or a
//! submodule that sits lower than its parent) a layer. A file may use what
//! its own room has and what rooms on lower layers have; a use of a room
//! on its own layer or above fails this test, naming the file, the line
//! and the rule. The table is read from ARCHITECTURE.md itself, so the
//! document and the check cannot drift apart.
//!
//! Imports are read as text: `use` trees (groups expanded) and inline
//! `crate::`, `super::` and `self::` paths in code, not in comments or
//! string literals. Inline `mod tests { .. }` blocks are followed, so
//! `super::` there means the file's own module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A room of the layering and its layer.
#[derive(Debug, Clone)]
struct Room {
    /// `hub`, `session::wire`, … (a path below `crate`).
    path: String,
    layer: u32,
}

/// One import that breaks the layering.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    from: String,
    to: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: `{}` imports `{}`, which is not on a lower layer",
            self.file, self.line, self.from, self.to
        )
    }
}

/// The rooms of ARCHITECTURE.md's "## Layers" table: rows `| N | `a`, `b` |`.
fn rooms_from(architecture: &str) -> Vec<Room> {
    let mut rooms = Vec::new();
    let mut in_section = false;
    for line in architecture.lines() {
        if line.starts_with("## ") {
            in_section = line.trim() == "## Layers";
            continue;
        }
        if !in_section || !line.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Some(Ok(layer)) = cells.first().map(|c| c.parse::<u32>()) else {
            continue;
        };
        let Some(names) = cells.get(1) else { continue };
        for name in names.split(',') {
            let name = name.trim().trim_matches('`');
            if !name.is_empty() {
                rooms.push(Room {
                    path: name.to_owned(),
                    layer,
                });
            }
        }
    }
    rooms
}

/// The room a module path (`hub::report`, `feed::task::run`) falls in: the
/// longest room path that is a prefix of it at a `::` boundary.
fn room_of<'a>(rooms: &'a [Room], path: &str) -> Option<&'a Room> {
    rooms
        .iter()
        .filter(|r| path == r.path || path.starts_with(&format!("{}::", r.path)))
        .max_by_key(|r| r.path.len())
}

/// The module path of a file under `src/`: `hub/mod.rs` → `hub`,
/// `session/wire.rs` → `session::wire`.
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.last_mut() {
        *last = last.trim_end_matches(".rs").to_owned();
        if last == "mod" {
            parts.pop();
        }
    }
    parts.join("::")
}

/// `text` with comments and the contents of string and char literals
/// blanked out (lengths and newlines kept, so line numbers stay right).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |c: u8| if c == b'\n' { b'\n' } else { b' ' };
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            while i < b.len() && !b[i..].starts_with(b"*/") {
                out.push(blank(b[i]));
                i += 1;
            }
            out.extend_from_slice(b"  ");
            i = (i + 2).min(b.len());
        } else if b[i] == b'r' && (b[i + 1..].starts_with(b"\"") || b[i + 1..].starts_with(b"#")) {
            // A raw string: r"…", r#"…"#.
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                out.push(b[i]);
                i += 1;
                continue;
            }
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            out.push(b'"');
            i += 2 + hashes;
            while i < b.len() && !b[i..].starts_with(&close) {
                out.push(blank(b[i]));
                i += 1;
            }
            out.push(b'"');
            i += close.len();
        } else if b[i] == b'"' {
            out.push(b'"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    out.push(b' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(b'"');
            i += 1;
        } else if b[i] == b'\'' && (b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\')) {
            // A char literal ('x', '\n'); lifetimes have no closing quote.
            let end = b[i + 1..]
                .iter()
                .position(|&c| c == b'\'')
                .map_or(b.len(), |p| i + 2 + p);
            out.extend(std::iter::repeat_n(b' ', end - i));
            i = end;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every path a `use` tree names, its groups expanded:
/// `crate::{a, b::{c, d}}` → `crate::a`, `crate::b::c`, `crate::b::d`.
fn expand_use(tree: &str) -> Vec<String> {
    let mut out = Vec::new();
    expand_into("", tree, &mut out);
    out
}

fn expand_into(prefix: &str, tree: &str, out: &mut Vec<String>) {
    // Split `tree` at top-level commas.
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (i, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&tree[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&tree[start..]);
    for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
        if let Some(open) = item.find('{') {
            let head = item[..open].trim().trim_end_matches("::");
            let inner = &item[open + 1..item.rfind('}').unwrap_or(item.len())];
            expand_into(&join(prefix, head), inner, out);
        } else {
            // `path as name`: the path is the first word.
            let path = item.split_whitespace().next().unwrap_or(item);
            out.push(join(prefix, path));
        }
    }
}

fn join(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (_, true) => prefix.to_owned(),
        _ => format!("{prefix}::{rest}"),
    }
}

/// The crate-relative module path `path` names, seen from `module` (with
/// `inline` the inline `mod` block the line is in, if any), or `None` for
/// paths outside the crate (std, other crates).
fn resolve(path: &str, module: &str, inline: Option<&str>, children: &[String]) -> Option<String> {
    let here = match inline {
        Some(name) if module.is_empty() => name.to_owned(),
        Some(name) => format!("{module}::{name}"),
        None => module.to_owned(),
    };
    let mut base: Vec<&str> = here.split("::").filter(|s| !s.is_empty()).collect();
    let mut rest = path.split("::").peekable();
    match rest.peek().copied() {
        Some("crate") => {
            base.clear();
            rest.next();
        }
        Some("super") => {
            while rest.peek() == Some(&"super") {
                base.pop();
                rest.next();
            }
        }
        Some("self") => {
            rest.next();
        }
        // `use child::X` names a module declared in this file.
        Some(first) if inline.is_none() && children.iter().any(|c| c == first) => {}
        _ => return None,
    }
    base.extend(rest.filter(|s| *s != "*" && *s != "self"));
    Some(base.join("::"))
}

/// The crate paths one file uses, with their line numbers.
fn imports(text: &str, module: &str) -> Vec<(usize, String)> {
    let code = code_only(text);
    // Modules this file declares (`mod x;`, `pub(crate) mod x;`): a path
    // may start with one of them.
    let children: Vec<String> = code
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = ["pub mod ", "pub(crate) mod ", "pub(super) mod ", "mod "]
                .iter()
                .find_map(|p| l.strip_prefix(p))?;
            Some(l.strip_suffix(';')?.trim().to_owned())
        })
        .collect();
    let mut found = Vec::new();
    let mut inline: Option<String> = None;
    let mut statement: Option<(usize, String)> = None;
    for (n, line) in code.lines().enumerate() {
        let number = n + 1;
        let trimmed = line.trim_start();
        if inline.is_none()
            && line.starts_with("mod ")
            && let Some(name) = trimmed
                .strip_prefix("mod ")
                .and_then(|r| r.strip_suffix(" {"))
        {
            inline = Some(name.trim().to_owned());
        }
        if statement.is_none() {
            let use_start = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
                .iter()
                .find_map(|p| trimmed.strip_prefix(p));
            if let Some(rest) = use_start {
                statement = Some((number, rest.to_owned()));
            }
        } else if let Some((_, s)) = statement.as_mut() {
            s.push(' ');
            s.push_str(trimmed);
        }
        if let Some((start, s)) = statement.take() {
            if let Some(end) = s.find(';') {
                for path in expand_use(&s[..end]) {
                    if let Some(p) = resolve(&path, module, inline.as_deref(), &children) {
                        found.push((start, p));
                    }
                }
            } else {
                statement = Some((start, s));
            }
            continue;
        }
        // Inline paths: crate::a::b, super::x, self::y.
        for key in ["crate::", "super::", "self::"] {
            let mut from = 0;
            while let Some(at) = line[from..].find(key) {
                let at = from + at;
                from = at + key.len();
                let before = line[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let path: String = line[at..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                if let Some(p) = resolve(
                    path.trim_end_matches(':'),
                    module,
                    inline.as_deref(),
                    &children,
                ) {
                    found.push((number, p));
                }
            }
        }
    }
    found
}

/// Every import in `files` (module path, text) that breaks `rooms`.
fn violations(rooms: &[Room], files: &[(String, String, String)]) -> Vec<Violation> {
    let mut out = Vec::new();
    for (file, module, text) in files {
        let Some(own) = room_of(rooms, module) else {
            continue;
        };
        for (line, path) in imports(text, module) {
            let Some(target) = room_of(rooms, &path) else {
                continue;
            };
            if target.path == own.path {
                continue;
            }
            let repeated = out.last().is_some_and(|v: &Violation| {
                v.file == *file && v.line == line && v.to == target.path
            });
            if target.layer >= own.layer && !repeated {
                out.push(Violation {
                    file: file.clone(),
                    line,
                    from: own.path.clone(),
                    to: target.path.clone(),
                });
            }
        }
    }
    out
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read src/")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_import_in_src_points_down() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture =
        std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    let rooms = rooms_from(&architecture);
    assert!(
        rooms.len() > 10,
        "ARCHITECTURE.md has no \"## Layers\" table"
    );
    let src = root.join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let mut files = Vec::new();
    let mut unplaced = Vec::new();
    let mut seen_rooms: BTreeMap<&str, usize> = BTreeMap::new();
    for path in paths {
        let relative = path.strip_prefix(&src).expect("under src/");
        let module = module_of(relative);
        // The crate root and the binary declare modules and import none.
        if module == "lib" || module == "main" {
            continue;
        }
        match room_of(&rooms, &module) {
            Some(room) => *seen_rooms.entry(&room.path).or_default() += 1,
            None => unplaced.push(relative.display().to_string()),
        }
        let text = std::fs::read_to_string(&path).expect("read a source file");
        files.push((format!("src/{}", relative.display()), module, text));
    }
    assert!(
        unplaced.is_empty(),
        "these files are in no room of ARCHITECTURE.md's Layers table: {unplaced:?}"
    );
    let empty: Vec<&str> = rooms
        .iter()
        .map(|r| r.path.as_str())
        .filter(|r| !seen_rooms.contains_key(r))
        .collect();
    assert!(
        empty.is_empty(),
        "ARCHITECTURE.md's Layers table names rooms with no file: {empty:?}"
    );
    let found = violations(&rooms, &files);
    let listed: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(
        found.is_empty(),
        "imports that point up or sideways (see ARCHITECTURE.md, Layers):\n{}",
        listed.join("\n")
    );
}

#[test]
fn the_check_catches_an_upward_import_in_every_form() {
    let rooms = rooms_from(
        "## Layers\n\n| layer | rooms |\n|---|---|\n| 3 | `hub` |\n| 2 | `session::wire`, `journal` |\n| 4 | `session` |\n| 1 | `event` |\n| 5 | `journal::task` |\n\n## Next\n| 9 | `ignored` |\n",
    );
    assert_eq!(rooms.len(), 6, "{rooms:?}");
    let file =
        |module: &str, text: &str| (format!("{module}.rs"), module.to_owned(), text.to_owned());
    let files = [
        // Down: fine.
        file(
            "hub",
            "use crate::event::Event;\nuse crate::session::wire::Tx;\n",
        ),
        // Up, grouped over lines.
        file(
            "journal",
            "use crate::{\n    event::Event,\n    hub::{HubMsg, INBOX},\n};\n",
        ),
        // Sideways (same layer), inline in code.
        file(
            "journal::writer",
            "fn f() { crate::session::wire::flush(); }\n",
        ),
        // Up through super: session::wire is below session.
        file("session::wire", "use super::Session;\n"),
        // Up through a child module declared in the file.
        file(
            "journal",
            "pub mod task;\nmod other;\npub use task::Thing;\n",
        ),
        // Comments, strings and tests' `use super::*` do not count.
        file(
            "event",
            "// use crate::hub::Hub;\nconst S: &str = \"crate::hub::X\";\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
        ),
    ];
    let found = violations(&rooms, &files);
    let pairs: Vec<(&str, usize, &str)> = found
        .iter()
        .map(|v| (v.file.as_str(), v.line, v.to.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("journal.rs", 1, "hub"),
            ("journal::writer.rs", 1, "session::wire"),
            ("session::wire.rs", 1, "session"),
            ("journal.rs", 3, "journal::task"),
        ]
    );
}
