//! Verifying a JWT (RFC 7519) against `[server.jwt]`, at a given time.
//!
//! The signature is checked by the `jsonwebtoken` crate (ring underneath);
//! nothing here does cryptography. The key decides the algorithm: the
//! token's `kid` picks a key (no `kid`: the HS256 secret, or the only public
//! key), and only that key's algorithm is accepted, so `alg: none` and an
//! RS256 key used as an HMAC secret are refused before any signature is
//! computed. The time claims (`exp`, `nbf`), `iss`, `aud`, `sub` and
//! Tablo's own `channels` and `publish` are checked here against the
//! `now_ms` the caller passes: this reads no clock and no file.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

use super::pattern::Pattern;
use super::{Grant, JwtError};
use crate::config::JwtConfig;

/// A `sub` is at most this many characters: it is shown in stats and logs,
/// and a kiosk's or an app's name fits.
pub const MAX_SUB_LEN: usize = 64;

/// A token longer than this is refused unread: a Tablo token with a board's
/// worth of patterns is well under 4 KiB, and the request head it travels
/// in is capped anyway.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Checks tokens against the configured keys and claims.
pub struct Verifier {
    hs256: Option<DecodingKey>,
    keys: Vec<(String, Algorithm, DecodingKey)>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_ms: u64,
}

impl Verifier {
    /// A verifier for `[server.jwt]`.
    pub fn new(config: &JwtConfig) -> Verifier {
        Verifier {
            hs256: config
                .hs256
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.bytes())),
            keys: config
                .public_keys
                .iter()
                .map(|k| (k.kid.clone(), k.algorithm, k.key.clone()))
                .collect(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway_ms: config.leeway.as_millis() as u64,
        }
    }

    /// Verifies `token` at wall time `now_ms`: the signature with the key its
    /// `kid` names, then the claims.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Grant, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed);
        }
        let header = decode_header(token).map_err(|_| JwtError::Malformed)?;
        let (algorithm, key) = match header.kid.as_deref() {
            Some(kid) => self
                .keys
                .iter()
                .find(|(k, _, _)| k == kid)
                .map(|(_, alg, key)| (*alg, key))
                .ok_or(JwtError::UnknownKid)?,
            None => match (&self.hs256, self.keys.as_slice()) {
                (Some(secret), _) => (Algorithm::HS256, secret),
                (None, [(_, alg, key)]) => (*alg, key),
                (None, _) => return Err(JwtError::NoKid),
            },
        };
        // The signature only: the claims are checked below, against `now_ms`
        // rather than the crate's own reading of the clock.
        let mut validation = Validation::new(algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        let claims = decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => JwtError::BadSignature,
                ErrorKind::InvalidAlgorithm => JwtError::WrongAlgorithm,
                _ => JwtError::Malformed,
            })?
            .claims;
        self.check_claims(&claims, now_ms)
    }

    fn check_claims(&self, claims: &Map<String, Value>, now_ms: u64) -> Result<Grant, JwtError> {
        let time = |name: &'static str| -> Result<Option<u64>, JwtError> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or(JwtError::BadClaim(name)),
            }
        };
        let exp = time("exp")?.ok_or(JwtError::MissingClaim("exp"))?;
        let until_ms = exp.saturating_mul(1000).saturating_add(self.leeway_ms);
        if now_ms >= until_ms {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = time("nbf")?
            && now_ms.saturating_add(self.leeway_ms) < nbf.saturating_mul(1000)
        {
            return Err(JwtError::NotYetValid);
        }
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(JwtError::WrongIssuer);
        }
        if let Some(audience) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !ok {
                return Err(JwtError::WrongAudience);
            }
        }
        let sub = match claims.get("sub") {
            None => return Err(JwtError::MissingClaim("sub")),
            Some(Value::String(s))
                if !s.is_empty()
                    && s.chars().count() <= MAX_SUB_LEN
                    && !s.chars().any(char::is_control) =>
            {
                s.clone()
            }
            Some(_) => return Err(JwtError::BadClaim("sub")),
        };
        let patterns = |name: &'static str| -> Result<Option<Vec<Pattern>>, JwtError> {
            match claims.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(items)) => {
                    let texts: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                    let texts = texts.ok_or(JwtError::BadClaim(name))?;
                    Pattern::parse_list(texts)
                        .map(Some)
                        .map_err(|_| JwtError::BadClaim(name))
                }
                Some(_) => Err(JwtError::BadClaim(name)),
            }
        };
        Ok(Grant {
            sub,
            exp,
            until_ms,
            channels: patterns("channels")?,
            publish: patterns("publish")?.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;
    use crate::auth::issue::{Claims, issue_hs256};
    use crate::config::Hs256Secret;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW_S: u64 = 1_800_000_000;
    const NOW_MS: u64 = NOW_S * 1000;

    fn verifier(leeway: u64, issuer: Option<&str>, audience: Option<&str>) -> Verifier {
        Verifier::new(&JwtConfig {
            hs256: Some(Hs256Secret::new("secret".into(), SECRET.to_vec())),
            public_keys: Vec::new(),
            issuer: issuer.map(str::to_owned),
            audience: audience.map(str::to_owned),
            leeway: Duration::from_secs(leeway),
        })
    }

    fn sign(claims: Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[track_caller]
    fn check(v: &Verifier, claims: Value, expected: Result<(), JwtError>) {
        let got = v.verify(&sign(claims), NOW_MS).map(|_| ());
        assert_eq!(got, expected);
    }

    #[test]
    fn time_claims_are_checked_against_the_given_now_with_leeway() {
        let strict = verifier(0, None, None);
        let lenient = verifier(30, None, None);
        let t = |exp: u64| json!({"sub": "a", "exp": exp});
        check(&strict, t(NOW_S + 1), Ok(()));
        check(&strict, t(NOW_S), Err(JwtError::Expired));
        check(&lenient, t(NOW_S - 29), Ok(()));
        check(&lenient, t(NOW_S - 30), Err(JwtError::Expired));
        check(
            &strict,
            json!({"sub": "a"}),
            Err(JwtError::MissingClaim("exp")),
        );
        check(
            &strict,
            json!({"sub": "a", "exp": "soon"}),
            Err(JwtError::BadClaim("exp")),
        );
        let nbf = |nbf: u64| json!({"sub": "a", "exp": NOW_S + 100, "nbf": nbf});
        check(&strict, nbf(NOW_S), Ok(()));
        check(&strict, nbf(NOW_S + 1), Err(JwtError::NotYetValid));
        check(&lenient, nbf(NOW_S + 30), Ok(()));
        check(&lenient, nbf(NOW_S + 31), Err(JwtError::NotYetValid));
    }

    #[test]
    fn issuer_audience_and_sub_are_checked() {
        let v = verifier(0, Some("office"), Some("tablo"));
        let exp = NOW_S + 60;
        check(
            &v,
            json!({"sub": "a", "exp": exp, "iss": "office", "aud": "tablo"}),
            Ok(()),
        );
        check(
            &v,
            json!({"sub": "a", "exp": exp, "iss": "office", "aud": ["x", "tablo"]}),
            Ok(()),
        );
        check(
            &v,
            json!({"sub": "a", "exp": exp, "iss": "other", "aud": "tablo"}),
            Err(JwtError::WrongIssuer),
        );
        check(
            &v,
            json!({"sub": "a", "exp": exp, "aud": "tablo"}),
            Err(JwtError::WrongIssuer),
        );
        check(
            &v,
            json!({"sub": "a", "exp": exp, "iss": "office", "aud": "x"}),
            Err(JwtError::WrongAudience),
        );
        check(
            &v,
            json!({"sub": "a", "exp": exp, "iss": "office"}),
            Err(JwtError::WrongAudience),
        );
        let plain = verifier(0, None, None);
        check(
            &plain,
            json!({"exp": exp}),
            Err(JwtError::MissingClaim("sub")),
        );
        check(
            &plain,
            json!({"sub": "", "exp": exp}),
            Err(JwtError::BadClaim("sub")),
        );
        check(
            &plain,
            json!({"sub": "a\nb", "exp": exp}),
            Err(JwtError::BadClaim("sub")),
        );
        check(
            &plain,
            json!({"sub": "a", "exp": exp, "channels": "news"}),
            Err(JwtError::BadClaim("channels")),
        );
        check(
            &plain,
            json!({"sub": "a", "exp": exp, "publish": ["a b"]}),
            Err(JwtError::BadClaim("publish")),
        );
    }

    #[test]
    fn a_token_from_issue_carries_its_rights() {
        let v = verifier(0, None, None);
        let channels = vec!["prices.*".to_owned(), "news".to_owned()];
        let publish = vec!["alerts".to_owned()];
        let token = issue_hs256(
            SECRET,
            &Claims {
                sub: "lobby-tv",
                iat: NOW_S,
                exp: NOW_S + 60,
                channels: Some(&channels),
                publish: Some(&publish),
                iss: None,
                aud: None,
            },
        )
        .unwrap();
        let grant = v.verify(&token, NOW_MS).unwrap();
        assert_eq!((grant.sub.as_str(), grant.exp), ("lobby-tv", NOW_S + 60));
        assert_eq!(grant.until_ms, (NOW_S + 60) * 1000);
        let channels = grant.channels.unwrap();
        assert_eq!(channels.len(), 2);
        assert_eq!(grant.publish.len(), 1);
    }

    #[test]
    fn signatures_and_algorithms() {
        let v = verifier(0, None, None);
        let good = sign(json!({"sub": "a", "exp": NOW_S + 60}));
        assert!(v.verify(&good, NOW_MS).is_ok());
        let wrong_key = encode(
            &Header::default(),
            &json!({"sub": "a", "exp": NOW_S + 60}),
            &EncodingKey::from_secret(b"another secret, 32 bytes long..."),
        )
        .unwrap();
        assert_eq!(
            v.verify(&wrong_key, NOW_MS).err(),
            Some(JwtError::BadSignature)
        );
        // The same secret under another HMAC: the key decides HS256.
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &json!({"sub": "a", "exp": NOW_S + 60}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            v.verify(&hs512, NOW_MS).err(),
            Some(JwtError::WrongAlgorithm)
        );
        // alg none: header {"alg":"none","typ":"JWT"}, no signature.
        let none = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            good.split('.').nth(1).unwrap()
        );
        assert_eq!(v.verify(&none, NOW_MS).err(), Some(JwtError::Malformed));
        let kid = Header {
            kid: Some("nope".into()),
            ..Header::default()
        };
        let with_kid = encode(
            &kid,
            &json!({"sub": "a", "exp": NOW_S + 60}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            v.verify(&with_kid, NOW_MS).err(),
            Some(JwtError::UnknownKid)
        );
        for junk in ["", "a.b", "a.b.c", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert_eq!(
                v.verify(junk, NOW_MS).err(),
                Some(JwtError::Malformed),
                "{junk}"
            );
        }
    }
}
