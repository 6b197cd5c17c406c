//! `[server.jwt]`: the keys that JWTs presented by clients must be signed
//! with, and the claims every token must carry (docs/config.md §5.1).
//!
//! Unlike the rest of `config`, this reads files: the HS256 secret and the
//! public keys are read and parsed here, while the config loads, so that
//! `tablo check` and a start with a missing, short or malformed key file
//! fail at once with the file, the line and the key (exit 78), and not at
//! the first client. Nothing here verifies a token: that is `auth`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use toml::Spanned;

use super::error::{ConfigError, Source};
use super::paths::Paths;
use super::raw::RawJwt;

/// Default `leeway`: clocks on kiosks drift (a Pi has no real-time clock and
/// NTP steps it), so `exp` and `nbf` are checked with this much slack.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Largest accepted `leeway`: more would keep an expired token alive for
/// longer than most tokens live.
pub const MAX_LEEWAY: Duration = Duration::from_secs(10 * 60);

/// An HS256 secret shorter than this is refused: RFC 7518 §3.2 asks for a
/// key at least as long as the hash (256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// A key file larger than this is refused unread: a PEM public key is under
/// 2 KiB (an RSA 8192-bit one about 1.5 KiB), so a larger file is a wrong
/// path (a log, a directory of certificates) and is not read whole.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// At most this many `public_key_files`: key rotation needs two or three,
/// and each token's `kid` is looked up among them.
pub const MAX_PUBLIC_KEYS: usize = 16;

/// `[server.jwt]`, resolved: the keys read and parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct JwtConfig {
    /// The HS256 secret (`hs256_secret_file`); it verifies tokens without a
    /// `kid`, and `tablo token` signs with it.
    pub hs256: Option<Hs256Secret>,
    /// The public keys (`public_key_files`), each with its `kid`.
    pub public_keys: Vec<PublicKey>,
    /// A token's `iss` must equal this, when set.
    pub issuer: Option<String>,
    /// A token's `aud` must be or contain this, when set.
    pub audience: Option<String>,
    /// Slack for `exp` and `nbf`; default [`DEFAULT_LEEWAY`].
    pub leeway: Duration,
}

/// The HS256 secret, read from `hs256_secret_file`. Its `Debug` shows the
/// path, never the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Hs256Secret {
    /// The file it was read from.
    pub path: PathBuf,
    bytes: Arc<[u8]>,
}

impl Hs256Secret {
    /// A secret read from `path` (for tests and tools that have the bytes).
    pub fn new(path: PathBuf, bytes: Vec<u8>) -> Hs256Secret {
        Hs256Secret {
            path,
            bytes: bytes.into(),
        }
    }

    /// The secret: the file's bytes without trailing whitespace.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Hs256Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hs256Secret({})", self.path.display())
    }
}

/// One public key from `public_key_files`. The key decides the algorithm:
/// a token naming this `kid` is verified with [`PublicKey::algorithm`]
/// only, whatever its header says.
#[derive(Clone)]
pub struct PublicKey {
    /// The file's name without its extension (`keys/2026-05.pem` → `2026-05`).
    pub kid: String,
    /// The file it was read from.
    pub path: PathBuf,
    /// RS256 for an RSA key, ES256 or ES384 for an EC P-256 or P-384 key,
    /// EdDSA for an Ed25519 key.
    pub algorithm: Algorithm,
    /// The parsed key.
    pub key: DecodingKey,
    pem: Arc<[u8]>,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        (&self.kid, &self.path, self.algorithm, &self.pem)
            == (&other.kid, &other.path, other.algorithm, &other.pem)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey({} {:?} {})",
            self.kid,
            self.algorithm,
            self.path.display()
        )
    }
}

/// Resolves `[server.jwt]`, reading its key files.
pub(super) fn resolve_jwt(
    raw: Spanned<RawJwt>,
    src: &Source<'_>,
    paths: &Paths<'_>,
) -> Result<JwtConfig, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let hs256 =
        match &raw.hs256_secret_file {
            Some(file) => {
                let path = paths.resolve(file, "[server.jwt] hs256_secret_file")?;
                Some(read_secret(&path).map_err(|m| {
                    src.at(file.span(), format!("[server.jwt] hs256_secret_file: {m}"))
                })?)
            }
            None => None,
        };
    let mut public_keys: Vec<PublicKey> = Vec::new();
    let files = raw.public_key_files.map(Spanned::into_inner);
    if files.as_ref().is_some_and(|f| f.len() > MAX_PUBLIC_KEYS) {
        return Err(src.at(
            span,
            format!("[server.jwt] public_key_files: at most {MAX_PUBLIC_KEYS} keys"),
        ));
    }
    for file in files.unwrap_or_default() {
        let what = "[server.jwt] public_key_files";
        let path = paths.resolve(&file, what)?;
        let key =
            read_public_key(&path).map_err(|m| src.at(file.span(), format!("{what}: {m}")))?;
        if public_keys.iter().any(|k| k.kid == key.kid) {
            return Err(src.at(
                file.span(),
                format!(
                    "{what}: two files give kid {:?} (a key's kid is its file name without the extension); rename one",
                    key.kid
                ),
            ));
        }
        public_keys.push(key);
    }
    if hs256.is_none() && public_keys.is_empty() {
        return Err(src.at(
            span,
            "[server.jwt] needs hs256_secret_file or public_key_files (or both); \
             or remove [server.jwt] to accept no JWTs",
        ));
    }
    let text = |value: Option<Spanned<String>>, what: &str| -> Result<_, ConfigError> {
        match value {
            Some(v) if v.get_ref().trim().is_empty() => Err(src.at(
                v.span(),
                format!("[server.jwt] {what}: must not be empty; leave the key out to accept any"),
            )),
            Some(v) => Ok(Some(v.into_inner())),
            None => Ok(None),
        }
    };
    let leeway = match raw.leeway {
        Some(v) if v.get_ref().0 > MAX_LEEWAY => {
            return Err(src.at(
                v.span(),
                format!(
                    "[server.jwt] leeway: at most {} s; clocks that far apart need NTP, not slack",
                    MAX_LEEWAY.as_secs()
                ),
            ));
        }
        Some(v) => v.into_inner().0,
        None => DEFAULT_LEEWAY,
    };
    Ok(JwtConfig {
        hs256,
        public_keys,
        issuer: text(raw.issuer, "issuer")?,
        audience: text(raw.audience, "audience")?,
        leeway,
    })
}

/// Reads a key file of at most [`MAX_KEY_FILE_BYTES`]; the error says what
/// to do.
fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a file"));
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "{shown} is {} bytes, too large for a key file (at most {MAX_KEY_FILE_BYTES}); check the path",
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))
}

/// The HS256 secret in `path`: its bytes without trailing whitespace, at
/// least [`MIN_SECRET_BYTES`] of them.
fn read_secret(path: &Path) -> Result<Hs256Secret, String> {
    let mut bytes = read_key_file(path).map_err(|m| {
        format!(
            "{m}; create it with e.g. `head -c 32 /dev/urandom | base64 > {}`",
            path.display()
        )
    })?;
    while bytes.last().is_some_and(u8::is_ascii_whitespace) {
        bytes.pop();
    }
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "{} holds {} bytes; an HS256 secret needs at least {MIN_SECRET_BYTES} \
             (e.g. `head -c 32 /dev/urandom | base64 > {}`)",
            path.display(),
            bytes.len(),
            path.display()
        ));
    }
    Ok(Hs256Secret {
        path: path.to_path_buf(),
        bytes: bytes.into(),
    })
}

/// DER object identifiers that tell the key type (X.509 SubjectPublicKeyInfo).
const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01,
];
const OID_EC: &[u8] = &[0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x70];

/// The public key in the PEM file `path`, its algorithm decided by its type.
fn read_public_key(path: &Path) -> Result<PublicKey, String> {
    let shown = path.display();
    let bytes = read_key_file(path)?;
    let parsed = pem::parse(&bytes).map_err(|e| {
        format!("{shown} is not a PEM file ({e}); give a public key such as `openssl pkey -in private.pem -pubout` writes")
    })?;
    let tag = parsed.tag();
    if tag.contains("PRIVATE") {
        return Err(format!(
            "{shown} holds a private key; give only the public key: `openssl pkey -in {shown} -pubout -out public.pem`"
        ));
    }
    // Where the key type is named: the AlgorithmIdentifier opens the
    // SubjectPublicKeyInfo, so only its first bytes are searched.
    let head = &parsed.contents()[..parsed.contents().len().min(32)];
    let has = |oid: &[u8]| head.windows(oid.len()).any(|w| w == oid);
    let (algorithm, key) = match tag {
        "RSA PUBLIC KEY" => (Algorithm::RS256, DecodingKey::from_rsa_pem(&bytes)),
        "PUBLIC KEY" if has(OID_RSA) => (Algorithm::RS256, DecodingKey::from_rsa_pem(&bytes)),
        "PUBLIC KEY" if has(OID_EC) && has(OID_P256) => {
            (Algorithm::ES256, DecodingKey::from_ec_pem(&bytes))
        }
        "PUBLIC KEY" if has(OID_EC) && has(OID_P384) => {
            (Algorithm::ES384, DecodingKey::from_ec_pem(&bytes))
        }
        "PUBLIC KEY" if has(OID_ED25519) => (Algorithm::EdDSA, DecodingKey::from_ed_pem(&bytes)),
        "PUBLIC KEY" => {
            return Err(format!(
                "{shown}: unsupported key type; use an RSA (RS256), EC P-256 (ES256), EC P-384 (ES384) or Ed25519 (EdDSA) public key"
            ));
        }
        other => {
            return Err(format!(
                "{shown} holds a PEM {other:?}, not a public key (-----BEGIN PUBLIC KEY-----)"
            ));
        }
    };
    let key = key.map_err(|e| format!("{shown}: not a valid {algorithm:?} public key ({e})"))?;
    let kid = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{shown}: the file name (its kid) must be UTF-8 text"))?
        .to_owned();
    Ok(PublicKey {
        kid,
        path: path.to_path_buf(),
        algorithm,
        key,
        pem: bytes.into(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::testing::load;
    use crate::config::{Config, Overrides};

    use super::*;

    fn fixture(name: &str) -> String {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
        path.join(name).display().to_string()
    }

    #[test]
    fn keys_are_read_and_their_type_decides_the_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("jwt.secret");
        std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
        let text = format!(
            "[server.jwt]\nhs256_secret_file = {:?}\npublic_key_files = [{:?}, {:?}, {:?}, {:?}]\nissuer = \"office\"\n",
            secret.display().to_string(),
            fixture("rsa-2026.pem"),
            fixture("ec-2026.pem"),
            fixture("ec384-2026.pem"),
            fixture("ed-2026.pem"),
        );
        let config = load(&text).unwrap();
        let jwt = config.server.jwt.as_ref().unwrap();
        assert_eq!(
            jwt.hs256.as_ref().unwrap().bytes(),
            b"0123456789abcdef0123456789abcdef"
        );
        let kinds: Vec<(&str, Algorithm)> = jwt
            .public_keys
            .iter()
            .map(|k| (k.kid.as_str(), k.algorithm))
            .collect();
        assert_eq!(
            kinds,
            [
                ("rsa-2026", Algorithm::RS256),
                ("ec-2026", Algorithm::ES256),
                ("ec384-2026", Algorithm::ES384),
                ("ed-2026", Algorithm::EdDSA)
            ]
        );
        assert_eq!(
            (jwt.issuer.as_deref(), jwt.audience.as_deref()),
            (Some("office"), None)
        );
        assert_eq!(jwt.leeway, DEFAULT_LEEWAY);
        assert!(
            !format!("{jwt:?}").contains("0123456789abcdef"),
            "Debug shows the secret"
        );

        // `tablo check` prints the paths, never the secret, and loads back.
        let printed = config.to_toml();
        assert!(!printed.contains("0123456789abcdef"), "{printed}");
        let again = dir.path().join("check.toml");
        std::fs::write(&again, &printed).unwrap();
        let back = Config::load(Some(&again), &Overrides::default()).unwrap();
        assert_eq!(back.server.jwt, config.server.jwt);
    }

    #[test]
    fn two_keys_with_one_kid_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("ed-2026.pem");
        std::fs::copy(fixture("ed-2026.pem"), &copy).unwrap();
        let text = format!(
            "[server.jwt]\npublic_key_files = [{:?}, {:?}]\n",
            fixture("ed-2026.pem"),
            copy.display().to_string()
        );
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains("two files give kid \"ed-2026\""), "{err}");
    }
}
