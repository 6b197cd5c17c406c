//! Who a client is and what it may do: the static `[server] tokens`, JWTs
//! checked against `[server.jwt]`, and anonymous clients
//! (docs/protocol.md §2 and §3.1).
//!
//! - [`Auth`]: admits a token at the upgrade (or refuses it with a
//!   [`Refusal`] whose text never shows a key or the token), and checks the
//!   token of a `refresh`;
//! - [`Access`]: what one connection may subscribe to and publish on;
//! - `jwt`: [`Verifier`], the signature (by the `jsonwebtoken` crate) and
//!   the claims at a given time;
//! - `pattern`: [`Pattern`], the `channels` and `publish` claims;
//! - `issue`: [`issue_hs256`], the token `tablo token` prints.
//!
//! Pure: the wall time is passed in, keys come parsed from `config`, and
//! nothing here does I/O or cryptography of its own.

mod issue;
mod jwt;
mod pattern;

use std::fmt;

pub use self::issue::{Claims, issue_hs256};
pub use self::jwt::Verifier;
pub use self::pattern::{Pattern, any_grants};

use crate::config::{ServerConfig, TokenConfig};

/// A verified JWT: who, until when, and with which rights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The `sub` claim: the user, as stats show it.
    pub sub: String,
    /// The `exp` claim, seconds since the epoch.
    pub exp: u64,
    /// Wall time in ms at which the rights end: `exp` plus the leeway.
    pub until_ms: u64,
    /// The `channels` claim; `None` (no claim) grants every channel.
    pub channels: Option<Vec<Pattern>>,
    /// The `publish` claim; empty (no claim) grants none.
    pub publish: Vec<Pattern>,
}

/// What one connection may do, decided at the upgrade (and, for a JWT,
/// again at each `refresh`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token: read everything, publish nothing.
    Anonymous,
    /// A static `[server] tokens` entry: read everything; publish anywhere
    /// when its `publish` is true.
    Token {
        /// The entry's `publish`.
        publish: bool,
    },
    /// A JWT: what its claims grant, until it expires.
    Jwt(Grant),
}

impl Access {
    /// Whether `channel` (a name as the client wrote it) may be subscribed
    /// to (or asked for in a snapshot).
    pub fn may_subscribe(&self, channel: &str) -> bool {
        match self {
            Access::Anonymous | Access::Token { .. } => true,
            Access::Jwt(grant) => grant
                .channels
                .as_deref()
                .is_none_or(|patterns| any_grants(patterns, channel)),
        }
    }

    /// Whether the client may publish to `channel`.
    pub fn may_publish(&self, channel: &str) -> bool {
        match self {
            Access::Anonymous => false,
            Access::Token { publish } => *publish,
            Access::Jwt(grant) => any_grants(&grant.publish, channel),
        }
    }

    /// Whether it may publish anywhere at all (for the error's wording).
    pub fn publishes_somewhere(&self) -> bool {
        match self {
            Access::Anonymous => false,
            Access::Token { publish } => *publish,
            Access::Jwt(grant) => !grant.publish.is_empty(),
        }
    }

    /// The JWT's `sub`, for stats; `None` for other clients.
    pub fn user(&self) -> Option<&str> {
        match self {
            Access::Jwt(grant) => Some(&grant.sub),
            _ => None,
        }
    }

    /// When the rights end (wall time, ms), for a JWT.
    pub fn until_ms(&self) -> Option<u64> {
        match self {
            Access::Jwt(grant) => Some(grant.until_ms),
            _ => None,
        }
    }
}

/// Why a JWT is refused. The texts name the claim or the check, never a
/// key, a secret or the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts of JSON, or an algorithm Tablo does not
    /// know (`none` among them).
    Malformed,
    /// The header's `alg` is not the algorithm of the key its `kid` picks.
    WrongAlgorithm,
    /// The `kid` names no configured key.
    UnknownKid,
    /// No `kid`, and no HS256 secret or single public key to fall back on.
    NoKid,
    /// The signature does not verify with the key.
    BadSignature,
    /// Past `exp` (plus the leeway).
    Expired,
    /// Before `nbf` (minus the leeway).
    NotYetValid,
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// `aud` does not name the configured audience.
    WrongAudience,
    /// A claim Tablo needs is absent.
    MissingClaim(&'static str),
    /// A claim has the wrong type or form.
    BadClaim(&'static str),
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::Malformed => f.write_str(
                "token is not a well-formed JWT signed with an accepted algorithm",
            ),
            JwtError::WrongAlgorithm => {
                f.write_str("token's alg is not the algorithm of the key it names")
            }
            JwtError::UnknownKid => f.write_str("token names a key (kid) this server does not have"),
            JwtError::NoKid => f.write_str(
                "token has no kid, and this server has several keys: put the key's kid in the header",
            ),
            JwtError::BadSignature => f.write_str("token signature does not verify"),
            JwtError::Expired => f.write_str("token expired: get a new one"),
            JwtError::NotYetValid => f.write_str("token not valid yet (nbf): check the clocks"),
            JwtError::WrongIssuer => f.write_str("token issuer (iss) is not accepted here"),
            JwtError::WrongAudience => f.write_str("token audience (aud) is not accepted here"),
            JwtError::MissingClaim(name) => write!(f, "token has no {name} claim"),
            JwtError::BadClaim(name) => write!(f, "token's {name} claim is malformed"),
        }
    }
}

/// Why a connection is refused at the upgrade (HTTP 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No token, and anonymous clients are not allowed.
    Missing,
    /// A token that is no static token and no JWT this server accepts.
    UnknownToken,
    /// A JWT that does not pass.
    Jwt(JwtError),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Missing => f.write_str(
                "a token is required: connect to /ws?token=..., or send Authorization: Bearer ...",
            ),
            Refusal::UnknownToken => f.write_str("unknown token"),
            Refusal::Jwt(e) => e.fmt(f),
        }
    }
}

/// Decides who may connect.
pub struct Auth {
    tokens: Vec<TokenConfig>,
    allow_anonymous: bool,
    jwt: Option<Verifier>,
}

impl Auth {
    /// The rules of `[server]` and `[server.jwt]`.
    pub fn new(server: &ServerConfig) -> Auth {
        Auth {
            tokens: server.tokens.clone(),
            allow_anonymous: server.allow_anonymous,
            jwt: server.jwt.as_ref().map(Verifier::new),
        }
    }

    /// Admits a connection presenting `token` (or none) at wall time
    /// `now_ms`. A static token is tried first, in constant time; then, if
    /// `[server.jwt]` is configured, the token as a JWT.
    pub fn admit(&self, token: Option<&str>, now_ms: u64) -> Result<Access, Refusal> {
        let Some(token) = token else {
            return if self.allow_anonymous {
                Ok(Access::Anonymous)
            } else {
                Err(Refusal::Missing)
            };
        };
        if let Some(t) = self
            .tokens
            .iter()
            .find(|t| constant_time_eq(t.token.as_bytes(), token.as_bytes()))
        {
            return Ok(Access::Token { publish: t.publish });
        }
        match &self.jwt {
            Some(_) if token.split('.').count() != 3 => Err(Refusal::UnknownToken),
            Some(jwt) => jwt
                .verify(token, now_ms)
                .map(Access::Jwt)
                .map_err(Refusal::Jwt),
            None => Err(Refusal::UnknownToken),
        }
    }

    /// Checks the token of a `refresh` at wall time `now_ms`: only a JWT
    /// can refresh a JWT.
    pub fn refresh(&self, token: &str, now_ms: u64) -> Result<Grant, Refusal> {
        match &self.jwt {
            Some(jwt) => jwt.verify(token, now_ms).map_err(Refusal::Jwt),
            None => Err(Refusal::UnknownToken),
        }
    }
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn rights_follow_the_claims() {
        let grant = |channels: Option<&[&str]>, publish: &[&str]| {
            Access::Jwt(Grant {
                sub: "a".into(),
                exp: 1,
                until_ms: 1000,
                channels: channels.map(|c| Pattern::parse_list(c.iter().copied()).unwrap()),
                publish: Pattern::parse_list(publish.iter().copied()).unwrap(),
            })
        };
        let reader = grant(Some(&["prices.*", "news"]), &[]);
        assert!(reader.may_subscribe("prices.BTCUSDT") && reader.may_subscribe("news"));
        assert!(!reader.may_subscribe("alerts") && !reader.may_subscribe("*"));
        assert!(!reader.may_publish("news") && !reader.publishes_somewhere());
        let open = grant(None, &["alerts"]);
        assert!(open.may_subscribe("*") && open.may_publish("alerts"));
        assert!(!open.may_publish("news"));
        assert_eq!(open.user(), Some("a"));
        assert!(Access::Anonymous.may_subscribe("*") && !Access::Anonymous.may_publish("alerts"));
        assert!(Access::Token { publish: true }.may_publish("news"));
    }
}
