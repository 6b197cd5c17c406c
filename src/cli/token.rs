//! `tablo token`: prints a JWT signed with the config's HS256 secret, for
//! testing and for kiosks (docs/config.md §13).
//!
//! It reads the config (and so the secret file) and prints; it never talks
//! to a running daemon.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::auth::{Claims, issue_hs256};
use crate::clock;
use crate::config::{Config, ConfigError, Overrides};

/// Why no token was printed.
#[derive(Debug)]
pub enum TokenError {
    /// No `--config`: there is no secret to sign with (exit 64).
    NoConfig,
    /// The config file is bad, or has no HS256 secret (exit 78).
    Config(ConfigError),
    /// The config has no `[server.jwt] hs256_secret_file` (exit 78).
    NoSecret(String),
    /// A flag's value is wrong (exit 64).
    Usage(String),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::NoConfig => f.write_str(
                "tablo token signs with the config's [server.jwt] hs256_secret_file: pass --config FILE",
            ),
            TokenError::Config(e) => e.fmt(f),
            TokenError::NoSecret(file) => write!(
                f,
                "{file}: [server.jwt] hs256_secret_file is not set, so there is no secret to sign with; \
                 add it (e.g. hs256_secret_file = \"jwt.secret\")"
            ),
            TokenError::Usage(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for TokenError {}

/// What to put in the token.
pub struct TokenRequest<'a> {
    /// The config file.
    pub config: Option<&'a Path>,
    /// The `sub` claim.
    pub sub: &'a str,
    /// `--channels`, comma-separated; `None` for every channel.
    pub channels: Option<&'a str>,
    /// `--publish`, comma-separated; `None` for none.
    pub publish: Option<&'a str>,
    /// How long the token is valid.
    pub ttl: Duration,
}

/// The signed token for `request`, issued now (by the wall clock).
pub fn make_token(request: &TokenRequest<'_>) -> Result<String, TokenError> {
    let now_s = clock::wall_secs();
    let file = request.config.ok_or(TokenError::NoConfig)?;
    let config = Config::load(Some(file), &Overrides::default()).map_err(TokenError::Config)?;
    let jwt = config.server.jwt.as_ref();
    let secret = jwt
        .and_then(|j| j.hs256.as_ref())
        .ok_or_else(|| TokenError::NoSecret(file.display().to_string()))?;
    if request.ttl.is_zero() {
        return Err(TokenError::Usage("--ttl must be longer than 0".into()));
    }
    let list = |text: Option<&str>| -> Option<Vec<String>> {
        text.map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
    };
    let channels = list(request.channels);
    let publish = list(request.publish);
    let claims = Claims {
        sub: request.sub,
        iat: now_s,
        exp: now_s.saturating_add(request.ttl.as_secs().max(1)),
        channels: channels.as_deref(),
        publish: publish.as_deref(),
        iss: jwt.and_then(|j| j.issuer.as_deref()),
        aud: jwt.and_then(|j| j.audience.as_deref()),
    };
    issue_hs256(secret.bytes(), &claims)
        .map_err(|e| TokenError::Usage(format!("--sub/--channels/--publish: {e}")))
}
