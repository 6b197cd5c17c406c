//! Where files are: the data dir, chosen from `--data-dir`, the file or the
//! environment (`$STATE_DIRECTORY`, `$XDG_STATE_HOME`, `$HOME`), and paths
//! written in the file (`~`, relative to the file's directory).
//!
//! This only computes paths: it never touches the file system, and it reads
//! the process environment only through [`real_env`], which the loader
//! passes in (tests pass their own).

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::error::{ConfigError, Source};

/// The process environment, as [`Config::load`](super::Config::load) reads
/// it; the callers take an empty value as unset.
pub(super) fn real_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The default data dir from the environment `env`: `$STATE_DIRECTORY`
/// (set by systemd; the first of several colon-separated paths), else
/// `$XDG_STATE_HOME/tablo`, else `$HOME/.local/state/tablo`. `None` when none
/// of these is set.
fn data_dir_from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(first) =
        var("STATE_DIRECTORY").and_then(|v| v.split(':').find(|p| !p.is_empty()).map(PathBuf::from))
    {
        return Some(first);
    }
    // The XDG spec says a relative $XDG_STATE_HOME is invalid and ignored.
    if let Some(xdg) = var("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Some(xdg.join("tablo"));
    }
    var("HOME").map(|home| PathBuf::from(home).join(".local/state/tablo"))
}

/// Resolves paths written in the file, and chooses the data dir.
pub(super) struct Paths<'a> {
    /// The file the paths are written in: where errors point.
    src: &'a Source<'a>,
    /// The config file's directory: relative paths are taken from there.
    base: &'a Path,
    /// The environment, for `$HOME` and the data dir's defaults.
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Paths<'a> {
    /// Paths written in `src`, relative to its directory, in `env`.
    pub(super) fn new(src: &'a Source<'a>, env: &'a dyn Fn(&str) -> Option<String>) -> Paths<'a> {
        Paths {
            src,
            base: src.file.and_then(Path::parent).unwrap_or(Path::new("")),
            env,
        }
    }

    /// The data dir: `--data-dir` (`flag`) as given, else `data_dir` in the
    /// file (`file`) resolved like any path, else the default from the
    /// environment.
    pub(super) fn data_dir(
        &self,
        flag: Option<&PathBuf>,
        file: Option<&Spanned<String>>,
    ) -> Result<PathBuf, ConfigError> {
        Ok(match (flag, file) {
            (Some(dir), _) => dir.clone(),
            (None, Some(dir)) => self.resolve(dir, "data_dir")?,
            (None, None) => data_dir_from_env(self.env).ok_or_else(|| {
                ConfigError::plain(
                    "cannot choose a data directory: $STATE_DIRECTORY, $XDG_STATE_HOME and $HOME are all unset; \
                     pass --data-dir DIR or set data_dir in the config file",
                )
            })?,
        })
    }

    /// A path written in the file as `value` for the key `what`: `~` and
    /// `~/…` are taken from `$HOME`, a relative path from the file's
    /// directory.
    pub(super) fn resolve(
        &self,
        value: &Spanned<String>,
        what: &str,
    ) -> Result<PathBuf, ConfigError> {
        let text = value.get_ref().as_str();
        if text.is_empty() {
            return Err(self.src.at(
                value.span(),
                format!("{what}: an empty path; give a path or leave the key out"),
            ));
        }
        let home_relative = if text == "~" {
            Some("")
        } else {
            text.strip_prefix("~/")
        };
        if let Some(rest) = home_relative {
            let home = (self.env)("HOME")
                .filter(|h| !h.is_empty())
                .ok_or_else(|| {
                    self.src.at(
                        value.span(),
                        format!(
                            "{what}: cannot expand ~ because $HOME is not set; write the full path"
                        ),
                    )
                })?;
            return Ok(PathBuf::from(home).join(rest));
        }
        let path = PathBuf::from(text);
        Ok(if path.is_absolute() {
            path
        } else {
            self.base.join(path)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::config::testing::{FILE, env_of, home_env, load, load_notes};
    use crate::config::{Overrides, load_from, load_text};

    use super::*;

    #[test]
    fn data_dir_prefers_state_directory_then_xdg_then_home() {
        let dir = |pairs| data_dir_from_env(&env_of(pairs));
        let all = &[
            ("STATE_DIRECTORY", "/var/lib/tablo:/var/lib/other"),
            ("XDG_STATE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(dir(all), Some("/var/lib/tablo".into()));
        assert_eq!(
            dir(&[
                ("STATE_DIRECTORY", ""),
                ("XDG_STATE_HOME", "/x"),
                ("HOME", "/h")
            ]),
            Some("/x/tablo".into())
        );
        assert_eq!(
            dir(&[("STATE_DIRECTORY", ":/second")]),
            Some("/second".into())
        );
        assert_eq!(
            dir(&[("XDG_STATE_HOME", "relative"), ("HOME", "/h")]),
            Some("/h/.local/state/tablo".into())
        );
        assert_eq!(dir(&[("HOME", "/h")]), Some("/h/.local/state/tablo".into()));
        assert_eq!(dir(&[("HOME", "")]), None);
        assert_eq!(dir(&[]), None);
    }

    #[test]
    fn no_data_dir_anywhere_is_an_error_that_says_what_to_do() {
        let err = load_from(None, &Overrides::default(), &|_| None).unwrap_err();
        assert!(err.to_string().contains("--data-dir"), "{err}");
        let overrides = Overrides {
            data_dir: Some("/d".into()),
            ..Overrides::default()
        };
        assert_eq!(
            load_from(None, &overrides, &|_| None).unwrap().0.data_dir,
            PathBuf::from("/d")
        );
    }

    #[test]
    fn relative_paths_are_taken_from_the_config_files_directory() {
        let text = "data_dir = \"state\"\n[board]\nfont = \"fonts/v.ttf\"\n[display]\ndevice = \"fb.raw\"\n";
        let c = load(text).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/etc/tablo/state"));
        assert_eq!(c.journal.dir, PathBuf::from("/etc/tablo/state/journal"));
        assert_eq!(
            c.display.png_path,
            PathBuf::from("/etc/tablo/state/board.png")
        );
        assert_eq!(c.board.font, Some(PathBuf::from("/etc/tablo/fonts/v.ttf")));
        assert_eq!(c.display.device, PathBuf::from("/etc/tablo/fb.raw"));
        let (c, _) = load_text(
            Path::new("tablo.toml"),
            text,
            &Overrides::default(),
            &home_env,
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("state"));
    }

    #[test]
    fn tilde_means_home() {
        let c = load("data_dir = \"~/tablo\"\n[journal]\ndir = \"~\"\n").unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/home/pi/tablo"));
        assert_eq!(c.journal.dir, PathBuf::from("/home/pi"));
        let err = load_text(
            Path::new(FILE),
            "data_dir = \"~/t\"\n",
            &Overrides::default(),
            &|_| None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("$HOME is not set"), "{err}");
    }

    #[test]
    fn journal_dir_and_png_path_set_in_the_file_stay_put() {
        let text = "data_dir = \"/a\"\n[journal]\ndir = \"/j\"\n[display]\npng_path = \"/p.png\"\n";
        let overrides = Overrides {
            data_dir: Some("/b".into()),
            ..Overrides::default()
        };
        let c = load_notes(text, &overrides).unwrap().0;
        assert_eq!(
            (c.data_dir.as_path(), c.journal.dir.as_path()),
            (Path::new("/b"), Path::new("/j"))
        );
        assert_eq!(c.display.png_path, PathBuf::from("/p.png"));
    }
}
