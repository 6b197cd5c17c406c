//! JWTs end to end: a daemon with `[server.jwt]` (an HS256 secret and RS256,
//! ES256 and EdDSA public keys from tests/fixtures/jwt), real WebSocket
//! clients presenting tokens in each carrier, refusals at the upgrade,
//! channel claims on subscribe, snapshot and publish, expiry on a live
//! connection, refresh, and the real `tablo token` and `tablo check`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::harness::{Client, Daemon, Ending, RECV_TIMEOUT, Sandbox};

/// The HS256 secret the test daemons use (test-only, 40 bytes).
const SECRET: &str = "test-only-hs256-secret-0123456789abcdef\n";

/// How long after `token_expired` the daemon closes an unrefreshed
/// connection: `session::rights::REFRESH_GRACE`.
const REFRESH_GRACE: Duration = Duration::from_secs(10);

/// The issuer and audience the daemons require.
const ISSUER: &str = "exchange-office";
const AUDIENCE: &str = "tablo";

/// A static token that keeps working beside JWT.
const STATIC_TOKEN: &str = "static-publisher-token";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("read fixture {name}: {e}"))
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}

/// The config of a JWT daemon: the secret in its sandbox, the three public
/// keys, issuer and audience, no leeway (so expiry is exact), and a static
/// publishing token.
fn config() -> String {
    let keys: Vec<String> = ["rsa-2026.pem", "ec-2026.pem", "ed-2026.pem"]
        .iter()
        .map(|k| format!("{:?}", fixture(k).display().to_string()))
        .collect();
    format!(
        "[server]\ntokens = [{{ token = \"{STATIC_TOKEN}\", publish = true }}]\n\n\
         [server.jwt]\nhs256_secret_file = \"jwt.secret\"\npublic_key_files = [{}]\n\
         issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\nleeway = \"0s\"\n",
        keys.join(", ")
    )
}

/// A sandbox holding the secret file next to where the config goes.
fn sandbox() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.write("jwt.secret", SECRET);
    sandbox
}

fn daemon() -> Daemon {
    Daemon::start_in(sandbox(), Some(&config()), &[])
}

/// Claims for `sub` valid for `ttl_s` seconds, with the right iss and aud.
fn claims(sub: &str, ttl_s: u64) -> Value {
    json!({"sub": sub, "exp": now_s() + ttl_s, "iss": ISSUER, "aud": AUDIENCE})
}

/// `claims` with `extra` fields merged in.
fn with(mut claims: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().expect("an object") {
        claims[k] = v.clone();
    }
    claims
}

/// An HS256 token (no kid) signed with `secret`.
fn hs256_with(secret: &[u8], claims: &Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("sign")
}

/// An HS256 token signed with the daemon's secret.
fn hs256(claims: &Value) -> String {
    hs256_with(SECRET.trim_end().as_bytes(), claims)
}

/// A token signed with the private key fixture `key`, with `alg` and `kid`
/// in its header.
fn signed(alg: Algorithm, key: &str, kid: &str, claims: &Value) -> String {
    let pem = read_fixture(key);
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        other => panic!("no fixture for {other:?}"),
    }
    .expect("a private key fixture");
    let header = Header {
        kid: Some(kid.into()),
        ..Header::new(alg)
    };
    encode(&header, claims, &key).expect("sign")
}

/// The base64url (no padding) of `bytes`, for hand-made tokens.
fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Reads up to the reply to request `id` and fails unless it is an error
/// with `code`.
async fn error_for(c: &mut Client, id: Value, code: &str) -> Value {
    let reply = c.recv_until(|f| f["id"] == id).await;
    c.assert_error(&reply, code)
}

/// The status and body the upgrade with `?token=token` is answered with.
fn upgrade(d: &Daemon, token: &str) -> (u16, Vec<(String, String)>, String) {
    d.upgrade_answer(&format!("/ws?token={token}"), &[])
}

#[test]
fn upgrade_accepts_good_tokens_and_refuses_bad_ones_without_leaking_the_key() {
    let d = daemon();
    let good = claims("kiosk", 300);
    let accepted = [
        ("HS256", hs256(&good)),
        (
            "RS256",
            signed(Algorithm::RS256, "rsa-2026.key", "rsa-2026", &good),
        ),
        (
            "ES256",
            signed(Algorithm::ES256, "ec-2026.key", "ec-2026", &good),
        ),
        (
            "EdDSA",
            signed(Algorithm::EdDSA, "ed-2026.key", "ed-2026", &good),
        ),
        ("static token", STATIC_TOKEN.to_owned()),
    ];
    for (what, token) in &accepted {
        let (status, _, body) = upgrade(&d, token);
        assert_eq!(status, 101, "{what} should be accepted: {body}");
    }

    let payload = good.to_string();
    let valid = hs256(&good);
    let parts: Vec<&str> = valid.split('.').collect();
    // The payload changed (wider channels), the signature kept.
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url(
            with(good.clone(), json!({"channels": ["*"]}))
                .to_string()
                .as_bytes()
        ),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(payload.as_bytes())
    );
    let rsa_public = read_fixture("rsa-2026.pem");
    // The classic confusion: the RSA public key used as an HMAC secret.
    let confused = encode(
        &Header {
            kid: Some("rsa-2026".into()),
            ..Header::new(Algorithm::HS256)
        },
        &good,
        &EncodingKey::from_secret(&rsa_public),
    )
    .expect("sign");
    let refused = [
        (
            "expired",
            hs256(&with(good.clone(), json!({"exp": now_s() - 1}))),
            "expired",
        ),
        (
            "not yet valid",
            hs256(&with(good.clone(), json!({"nbf": now_s() + 3600}))),
            "not valid yet",
        ),
        (
            "no exp",
            hs256(&json!({"sub": "k", "iss": ISSUER, "aud": AUDIENCE})),
            "no exp claim",
        ),
        (
            "wrong secret",
            hs256_with(b"another-secret-of-forty-bytes-0123456789", &good),
            "signature",
        ),
        (
            "wrong key",
            signed(Algorithm::EdDSA, "ed-other.key", "ed-2026", &good),
            "signature",
        ),
        (
            "unknown kid",
            signed(Algorithm::EdDSA, "ed-2026.key", "ed-2027", &good),
            "kid",
        ),
        (
            "alg of another key",
            signed(Algorithm::ES256, "ec-2026.key", "rsa-2026", &good),
            "alg",
        ),
        ("RSA key as HMAC secret", confused, "alg"),
        ("alg none", none, "well-formed"),
        ("tampered payload", tampered, "signature"),
        (
            "wrong issuer",
            hs256(&with(good.clone(), json!({"iss": "elsewhere"}))),
            "issuer",
        ),
        (
            "wrong audience",
            hs256(&with(good.clone(), json!({"aud": "other"}))),
            "audience",
        ),
        (
            "unknown static token",
            "not-a-token".to_owned(),
            "unknown token",
        ),
    ];
    for (what, token, reason) in &refused {
        let (status, headers, body) = upgrade(&d, token);
        assert_eq!(
            status, 401,
            "{what} should be refused, got {status}: {body}"
        );
        assert!(
            body.contains(reason),
            "{what}: the 401 should say {reason:?}: {body}"
        );
        let challenge = headers
            .iter()
            .find(|(n, _)| n == "www-authenticate")
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate in {headers:?}"));
        assert!(challenge.starts_with("Bearer "), "{what}: {challenge}");
        for secret in [SECRET.trim_end(), "BEGIN", "MII"] {
            assert!(
                !body.contains(secret) && !challenge.contains(secret),
                "{what}: the refusal shows key material: {body} / {challenge}"
            );
        }
    }
}

#[test]
fn channel_claims_limit_subscribe_snapshot_and_publish_and_stats_count_users() {
    let d = daemon();
    let token = hs256(&with(
        claims("lobby-tv", 300),
        json!({"channels": ["prices.*", "news"], "publish": ["alerts"]}),
    ));
    smol::block_on(async {
        let mut c = d.ws(&format!("/ws?token={token}&client=kiosk")).await;
        assert_eq!(c.hello["user"], "lobby-tv", "{}", c.hello);

        // One refused channel does not spoil the others.
        c.send_json(json!({"op": "subscribe", "channels": ["prices", "alerts"], "id": 1}))
            .await;
        let refused = c.expect_error("unauthorized").await;
        assert_eq!(refused["id"], 1);
        assert!(
            refused["message"].as_str().unwrap().contains("alerts"),
            "{refused}"
        );
        let subscribed = c.recv_until(|f| f["type"] == "subscribed").await;
        assert_eq!(subscribed["channels"], json!(["prices"]));
        c.recv_until(|f| f["type"] == "tick").await;
        c.send_json(json!({"op": "subscribe", "channels": ["*"], "id": 2}))
            .await;
        let refused = c.recv_until(|f| f["type"] == "error").await;
        c.assert_error(&refused, "unauthorized");
        assert_eq!(refused["id"], 2);

        // A snapshot of everything is one of what the token may read.
        c.send_json(json!({"op": "snapshot", "id": 3})).await;
        let snapshot = c.recv_until(|f| f["type"] == "snapshot").await;
        let events = snapshot["events"].as_array().expect("events");
        assert!(!events.is_empty(), "{snapshot}");
        for e in events {
            assert!(
                e["channel"] == "prices" || e["channel"] == "news",
                "a snapshot event outside the claims: {e}"
            );
        }
        c.send_json(json!({"op": "snapshot", "channels": ["status"], "id": 4}))
            .await;
        let refused = c.recv_until(|f| f["type"] == "error").await;
        c.assert_error(&refused, "unauthorized");

        // Publish: only where the publish claim says.
        c.send_json(json!({"op": "publish", "channel": "alerts",
            "data": {"level": "info", "text": "from the lobby"}, "id": 5}))
            .await;
        let ack = c.recv_until(|f| f["id"] == 5).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        c.send_json(json!({"op": "publish", "channel": "news",
            "data": {"title": "not mine to say"}, "id": 6}))
            .await;
        let refused = c.recv_until(|f| f["id"] == 6).await;
        c.assert_error(&refused, "unauthorized");

        // A read-only JWT, a second connection of the same user, and a
        // static token: users count subs, connections count sockets.
        let reader = hs256(&with(
            claims("phone-app", 300),
            json!({"channels": ["news"]}),
        ));
        let mut r = d.ws(&format!("/ws?token={reader}")).await;
        r.send_json(json!({"op": "publish", "channel": "news",
            "data": {"title": "x"}, "id": 7}))
            .await;
        let refused = r.expect_error("unauthorized").await;
        assert!(
            refused["message"].as_str().unwrap().contains("read-only"),
            "{refused}"
        );
        let _again = d.ws(&format!("/ws?token={token}")).await;
        let mut s = d.ws(&format!("/ws?token={STATIC_TOKEN}")).await;
        assert!(s.hello.get("user").is_none(), "{}", s.hello);
        let stats = s.request(json!({"op": "stats"})).await;
        assert_eq!(stats["connections"], 4, "{stats}");
        assert_eq!(stats["users"], 2, "{stats}");
        assert_eq!(
            stats["user_connections"],
            json!({"lobby-tv": 2, "phone-app": 1})
        );
        assert_eq!(d.metric("tablo_users"), 2.0);
        s.send_json(json!({"op": "publish", "channel": "news",
            "data": {"title": "static tokens still publish"}, "id": 8}))
            .await;
        let ack = s.recv_until(|f| f["id"] == 8).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    });
}

#[test]
fn every_carrier_works_and_the_subprotocol_is_answered() {
    let d = daemon();
    let token = hs256(&claims("carrier", 300));
    smol::block_on(async {
        let c = d.ws(&format!("/ws?token={token}")).await;
        assert_eq!(c.hello["user"], "carrier");

        let bearer = format!("Bearer {token}");
        let (c, _) = d
            .try_ws_with("/ws", &[("Authorization", &bearer)], RECV_TIMEOUT)
            .await
            .expect("a Bearer header is accepted");
        assert_eq!(c.hello["user"], "carrier");

        // A browser offers "tablo" and the token; the answer is "tablo".
        let offer = format!("tablo, bearer.{token}");
        let (c, headers) = d
            .try_ws_with("/ws", &[("Sec-WebSocket-Protocol", &offer)], RECV_TIMEOUT)
            .await
            .expect("a subprotocol token is accepted");
        assert_eq!(c.hello["user"], "carrier");
        let answered: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n == "sec-websocket-protocol")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(answered, ["tablo"]);

        // Offered alone, the token's own entry is the answer (the client
        // library, like a browser, fails an upgrade that names none).
        let alone = format!("bearer.{token}");
        let (c, _) = d
            .try_ws_with("/ws", &[("Sec-WebSocket-Protocol", &alone)], RECV_TIMEOUT)
            .await
            .expect("a lone subprotocol token is accepted");
        assert_eq!(c.hello["user"], "carrier");

        // A bad token in a header is refused like one in the query.
        let expired = hs256(&with(claims("carrier", 300), json!({"exp": now_s() - 5})));
        for extra in [
            format!("Authorization: Bearer {expired}"),
            format!("Sec-WebSocket-Protocol: tablo, bearer.{expired}"),
        ] {
            let (status, _, body) = d.upgrade_answer("/ws", &[&extra]);
            assert_eq!(status, 401, "{extra}: {body}");
            assert!(body.contains("expired"), "{body}");
        }
    });
}

#[test]
fn refresh_extends_and_narrows_a_live_connection() {
    let d = daemon();
    let wide = hs256(&with(
        claims("kiosk", 300),
        json!({"channels": ["prices", "news"]}),
    ));
    smol::block_on(async {
        let mut c = d.ws(&format!("/ws?token={wide}")).await;
        c.subscribe(&["prices", "news"]).await;
        c.recv_until(|f| f["type"] == "tick").await;

        // Narrower claims end the subscriptions they no longer grant.
        let narrow = hs256(&with(claims("kiosk", 2), json!({"channels": ["news"]})));
        c.send_json(json!({"op": "refresh", "token": narrow, "id": 1}))
            .await;
        let dropped = c.recv_until(|f| f["type"] == "unsubscribed").await;
        assert_eq!(dropped["channels"], json!(["prices"]), "{dropped}");
        let refreshed = c.recv_until(|f| f["type"] == "refreshed").await;
        assert_eq!(
            (&refreshed["sub"], &refreshed["id"]),
            (&json!("kiosk"), &json!(1))
        );
        // No tick after the narrowing (news may come; ticks may not).
        c.send_json(json!({"op": "ping", "id": "after-narrowing"}))
            .await;
        let pong = c.recv_until(|f| f["type"] != "news").await;
        assert_eq!(pong["type"], "pong", "a frame after the narrowing: {pong}");
        c.send_json(json!({"op": "subscribe", "channels": ["prices.BTCUSDT"], "id": 2}))
            .await;
        error_for(&mut c, json!(2), "unauthorized").await;

        // The narrow token runs out while connected.
        let expired = c
            .recv_until_within(Duration::from_secs(5), |f| f["type"] == "error")
            .await;
        c.assert_error(&expired, "token_expired");
        // An expired connection may not subscribe until it refreshes.
        c.send_json(json!({"op": "subscribe", "channels": ["news"], "id": 3}))
            .await;
        error_for(&mut c, json!(3), "token_expired").await;
        c.send_json(json!({"op": "snapshot", "id": "s"})).await;
        error_for(&mut c, json!("s"), "token_expired").await;
        c.send_json(json!({"op": "ping", "id": "still open"})).await;
        c.recv_until(|f| f["type"] == "pong").await;
        // A bad refresh is refused and changes nothing.
        let other_user = hs256(&claims("someone-else", 300));
        for (id, token) in [(4, "garbage".to_owned()), (5, other_user)] {
            c.send_json(json!({"op": "refresh", "token": token, "id": id}))
                .await;
            error_for(&mut c, json!(id), "unauthorized").await;
        }
        let fresh = hs256(&claims("kiosk", 300));
        c.send_json(json!({"op": "refresh", "token": fresh, "id": 6}))
            .await;
        let refreshed = c.recv_until(|f| f["id"] == 6).await;
        assert_eq!(refreshed["type"], "refreshed", "{refreshed}");
        c.subscribe(&["prices"]).await;
        c.recv_until(|f| f["type"] == "tick").await;
    });
}

#[test]
fn an_expired_connection_that_does_not_refresh_is_closed_with_1008() {
    let d = daemon();
    let token = hs256(&claims("short-lived", 2));
    smol::block_on(async {
        let mut c = d.ws(&format!("/ws?token={token}")).await;
        c.subscribe(&["news"]).await;
        let expired = c
            .recv_until_within(Duration::from_secs(5), |f| f["type"] == "error")
            .await;
        c.assert_error(&expired, "token_expired");
        assert!(
            expired["message"].as_str().unwrap().contains("refresh"),
            "{expired}"
        );
        let (_, ending) = c.read_to_end(REFRESH_GRACE + RECV_TIMEOUT).await;
        assert!(matches!(ending, Ending::Closed(1008)), "{ending:?}");
    });
}

#[test]
fn tablo_token_prints_a_token_the_daemon_accepts() {
    let sandbox = sandbox();
    let file = sandbox.write("tablo.toml", &config());
    let file = file.to_str().unwrap();
    let out = sandbox.tablo(&[
        "token",
        "--config",
        file,
        "--sub",
        "lobby-tv",
        "--channels",
        "prices.*,news",
        "--publish",
        "alerts",
        "--ttl",
        "30d",
    ]);
    out.assert_code(0);
    let token = out.stdout.trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{out}");
    let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    let printed = jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.trim_end().as_bytes()),
        &validation,
    )
    .unwrap_or_else(|e| panic!("tablo token printed a token that does not verify: {e}\n{out}"))
    .claims;
    assert_eq!(printed["sub"], "lobby-tv");
    assert_eq!(printed["channels"], json!(["prices.*", "news"]));
    assert_eq!(printed["publish"], json!(["alerts"]));
    assert_eq!(
        (&printed["iss"], &printed["aud"]),
        (&json!(ISSUER), &json!(AUDIENCE))
    );
    let (iat, exp) = (
        printed["iat"].as_u64().unwrap(),
        printed["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 30 * 24 * 3600, "{printed}");
    assert!(iat.abs_diff(now_s()) < 60, "{printed}");
    let check = sandbox.tablo(&["check", "--config", file]);
    check.assert_code(0);
    assert!(
        check.stdout.contains("[server.jwt]") && check.stdout.contains("# kid ed-2026 is EdDSA"),
        "{check}"
    );
    assert!(!check.stdout.contains(SECRET.trim_end()), "{check}");

    let d = Daemon::start_in(sandbox, Some(&config()), &[]);
    smol::block_on(async {
        let mut c = d.ws(&format!("/ws?token={token}")).await;
        assert_eq!(c.hello["user"], "lobby-tv");
        c.send_json(json!({"op": "subscribe", "channels": ["alerts"], "id": 1}))
            .await;
        error_for(&mut c, json!(1), "unauthorized").await;
        c.subscribe(&["news"]).await;
        c.send_json(json!({"op": "publish", "channel": "alerts",
            "data": {"level": "info", "text": "hello"}, "id": 2}))
            .await;
        assert_eq!(c.recv_until(|f| f["id"] == 2).await["type"], "ack");
    });
}

#[test]
fn a_broken_jwt_section_is_a_config_error_with_file_line_and_key() {
    let sandbox = Sandbox::new();
    let text = "[server]\n\n[server.jwt]\nhs256_secret_file = \"missing.secret\"\n";
    let file = sandbox.write("tablo.toml", text);
    let file = file.to_str().unwrap();
    for args in [
        vec!["check", "--config", file],
        vec!["token", "--config", file, "--sub", "x", "--ttl", "1h"],
        vec![
            "run",
            "--config",
            file,
            "--listen",
            "127.0.0.1:0",
            "--display",
            "none",
        ],
    ] {
        let out = sandbox.tablo(&args);
        out.assert_code(78)
            .assert_stderr_has(&format!("{file}:4: [server.jwt] hs256_secret_file"))
            .assert_stderr_has("missing.secret");
    }
    sandbox.write("short.secret", "too short\n");
    let private = fixture("ed-2026.key").display().to_string();
    for (body, line, says) in [
        ("hs256_secret_file = \"short.secret\"\n", 4, "at least 32"),
        (
            &format!("public_key_files = [{private:?}]\n"),
            4,
            "private key",
        ),
        (
            "leeway = \"30s\"\n",
            3,
            "needs hs256_secret_file or public_key_files",
        ),
        (
            "hs256_secret_file = \"short.secret\"\nlifetime = 5\n",
            5,
            "unknown key `lifetime` in [server.jwt]",
        ),
    ] {
        let file = sandbox.write("bad.toml", &format!("[server]\n\n[server.jwt]\n{body}"));
        let file = file.to_str().unwrap();
        let out = sandbox.tablo(&["check", "--config", file]);
        out.assert_code(78)
            .assert_stderr_has(&format!("{file}:{line}: "))
            .assert_stderr_has(says);
    }
    let out = sandbox.tablo(&["token", "--sub", "x", "--ttl", "1h"]);
    out.assert_code(64).assert_stderr_has("--config");
    let out = sandbox.tablo(&["token", "--sub", "x", "--ttl", "a week"]);
    out.assert_code(64).assert_stderr_has("--ttl");
}
