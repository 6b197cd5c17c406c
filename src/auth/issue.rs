//! Signing a Tablo token with the HS256 secret: what `tablo token` prints.
//!
//! The signature is made by the `jsonwebtoken` crate; this only puts the
//! claims together. Pure: the caller passes the times.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde::Serialize;

use super::pattern::Pattern;

/// The claims of a token to sign.
#[derive(Clone, Debug, Serialize)]
pub struct Claims<'a> {
    /// Who holds it (shown in stats).
    pub sub: &'a str,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    /// Subscribe patterns; absent means every channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<&'a [String]>,
    /// Publish patterns; absent means none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<&'a [String]>,
    /// Issuer, when the server checks one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<&'a str>,
    /// Audience, when the server checks one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<&'a str>,
}

/// Signs `claims` with HS256 and `secret` (no `kid`: the server verifies a
/// token without one with its HS256 secret). The error says which claim is
/// malformed.
pub fn issue_hs256(secret: &[u8], claims: &Claims<'_>) -> Result<String, String> {
    if claims.sub.is_empty() || claims.sub.chars().count() > super::jwt::MAX_SUB_LEN {
        return Err(format!(
            "sub must be 1 to {} characters",
            super::jwt::MAX_SUB_LEN
        ));
    }
    if claims.sub.chars().any(char::is_control) {
        return Err("sub must not contain control characters".into());
    }
    for (name, list) in [("channels", claims.channels), ("publish", claims.publish)] {
        if let Some(list) = list {
            Pattern::parse_list(list.iter().map(String::as_str))
                .map_err(|e| format!("{name}: {e}"))?;
        }
    }
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| format!("cannot sign the token: {e}"))
}
