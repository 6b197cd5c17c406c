//! The web page's HTTP: the embedded files of [`crate::web::Site`] with
//! their `ETag`, cache and security headers, and the JSON of `/api/snapshot`
//! and `/api/stats` (docs/web.md §1).

use std::io;

use smol::io::AsyncWriteExt;
use smol::net::TcpStream;

use crate::web::{Asset, CACHE_CONTROL, CSP, matches_etag};

/// Headers every page file carries besides its type, length and tag: the
/// CSP, no type sniffing, no referrer to other sites, no framing.
const SECURITY_HEADERS: &str = "X-Content-Type-Options: nosniff\r\n\
     Referrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n";

/// Answers a GET or HEAD of `asset`: 304 when `if_none_match` names its
/// tag, else 200 with the bytes (none for HEAD).
pub(super) async fn send_asset(
    stream: &mut TcpStream,
    asset: &Asset,
    if_none_match: Option<&str>,
    send_body: bool,
) -> io::Result<()> {
    let fresh = if_none_match.is_some_and(|tags| matches_etag(tags, &asset.etag));
    let (status, body) = if fresh {
        ("304 Not Modified", "")
    } else {
        ("200 OK", asset.body.as_str())
    };
    let length = if fresh {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    // The service worker may control the whole site from `/sw.js`.
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\n{length}ETag: {}\r\n\
         Cache-Control: {CACHE_CONTROL}\r\nContent-Security-Policy: {CSP}\r\n\
         {SECURITY_HEADERS}Connection: close\r\n\r\n",
        asset.content_type, asset.etag,
    );
    stream.write_all(head.as_bytes()).await?;
    if send_body {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.flush().await
}

/// Answers `/api/snapshot` or `/api/stats` with `json` (503 when the hub
/// is gone), never cached; `allow_origin` is the CORS origin to name, when
/// `[server] cors_origins` allows the request's.
pub(super) async fn send_api(
    stream: &mut TcpStream,
    json: Option<String>,
    allow_origin: Option<&str>,
    send_body: bool,
) -> io::Result<()> {
    let (status, body) = match json {
        Some(mut json) => {
            json.push('\n');
            ("200 OK", json)
        }
        None => (
            "503 Service Unavailable",
            "{\"error\":\"stopping\"}\n".into(),
        ),
    };
    let cors = match allow_origin {
        Some(origin) => format!("Access-Control-Allow-Origin: {origin}\r\nVary: Origin\r\n"),
        None => String::new(),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\n{cors}X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if send_body {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.flush().await
}
