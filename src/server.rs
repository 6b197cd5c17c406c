//! The local server: one TCP port for the WebSocket endpoint and plain HTTP.
//!
//! The accept loop owns every connection task. Each connection reads one
//! HTTP request head (parsed with httparse) and is either answered
//! (`/healthz`, `/metrics`, `/journal/stats`, `/journal/export`, errors) or
//! upgraded to a WebSocket [`session`]. The token is taken from its carrier
//! here (`token=`, `Authorization: Bearer`, `Sec-WebSocket-Protocol`) and
//! judged by `auth` (401); capacity (503) is decided here too, all before
//! the upgrade. `/journal/export` streams its answer
//! page by page from the journal writer (chunked), so an export of any
//! length holds one page at a time.
//!
//! The web page (`/`, its files, `/api/snapshot`, `/api/stats`) is
//! answered by `server::pages` from the [`Site`] set at start-up.
//!
//! This module knows HTTP; it does not know the client protocol (that is
//! `session` and `protocol`) and never holds hub state.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use smol::channel::{Receiver, Sender, bounded};
use smol::future::or;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::{Task, Timer};

use crate::auth::{Access, Auth, Refusal};
use crate::clock;
use crate::config::ServerConfig;
use crate::hub::{HubMsg, INBOX};
use crate::journal::export::{self, DEFAULT_LIMIT, Export, MAX_LIMIT, MAX_TAIL};
use crate::journal::store::Record;
use crate::journal::writer::{JournalMsg, JournalStatus, REPLAY_PAGE};
use crate::logger::RateLimited;
use crate::metrics::{MetricsText, process};
use crate::session::{self, Session};
use crate::web::Site;

mod pages;

/// A request head larger than this is refused with 431: browsers send
/// ~1 KiB, and the cap keeps a connection's memory small.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// A client must finish sending its request head within this time, or it is
/// answered 408 and closed: a slowloris client holds a connection at most
/// this long.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// After an accept error (e.g. EMFILE), wait this long first, doubling up to
/// [`ACCEPT_BACKOFF_MAX`], so a full file table does not spin a core.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);

/// Longest wait between accept retries.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Each kind of repeated refusal or failure (an unknown token, a full
/// server, a failing accept) is logged at most once per this interval, with
/// the count held back: a crowd past `max_clients` or a kiosk retrying a
/// wrong token must not fill the log of a device nobody watches.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// On shutdown, connections get this long to send their close frames
/// before they are dropped (SIGTERM must exit within 2 s).
pub const DRAIN_TIMEOUT: Duration = Duration::from_millis(1500);

/// The client's read buffer. docs/notes.md §1: tungstenite's 128 KiB default
/// costs ~141 KiB per idle client. Client ops are small (a subscribe is ~100
/// bytes), so 1 KiB; a larger frame (a publish, up to `max_frame_bytes`) grows
/// it as needed. benches/idle_clients.rs: 4 KiB → 1 KiB took an idle client
/// from 9.9 to 7.0 KiB.
pub const READ_BUFFER_BYTES: usize = 1024;

/// A `Sec-WebSocket-Protocol` entry that starts with this carries a token
/// (docs/protocol.md §2): browsers cannot set `Authorization` on a
/// WebSocket, but they can offer subprotocols.
pub const TOKEN_PROTOCOL_PREFIX: &str = "bearer.";

/// The subprotocol the upgrade answers with when the client offers it next
/// to its token, so the token is not echoed back.
pub const PROTOCOL: &str = "tablo";

/// Everything a connection needs, shared read-only.
pub struct Shared {
    /// `[server]` settings.
    pub config: ServerConfig,
    /// Who may connect, and the checks of a `refresh`.
    pub auth: Arc<Auth>,
    /// The hub's inbox.
    pub hub: Sender<HubMsg>,
    /// The journal writer's inbox, for replays and `/journal/export`.
    pub journal: Option<Sender<JournalMsg>>,
    /// Upgraded WebSocket clients right now (for `max_clients`).
    pub clients: AtomicUsize,
    next_id: AtomicU64,
    /// What `/journal/stats` reports; set once at start-up by
    /// [`Shared::set_journal_info`]. Until then it answers 503.
    journal_info: OnceLock<JournalInfo>,
    /// The web page; set once at start-up by [`Shared::set_site`]. Until
    /// then its paths are 404.
    site: OnceLock<Site>,
    /// Rate limits for the "refused: unknown token" and "refused: server
    /// full" lines.
    token_refusals: Mutex<RateLimited>,
    full_refusals: Mutex<RateLimited>,
}

/// The journal as `/journal/stats` reports it.
struct JournalInfo {
    /// The writer's counters and health.
    status: Arc<JournalStatus>,
    /// The journal's epoch.
    epoch: String,
}

impl Shared {
    /// Shared state for a server with these settings.
    pub fn new(
        config: ServerConfig,
        hub: Sender<HubMsg>,
        journal: Option<Sender<JournalMsg>>,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            auth: Arc::new(Auth::new(&config)),
            config,
            hub,
            journal,
            clients: AtomicUsize::new(0),
            next_id: AtomicU64::new(fastrand::u64(..) >> 16),
            journal_info: OnceLock::new(),
            site: OnceLock::new(),
            token_refusals: Mutex::new(RateLimited::new(REFUSAL_LOG_INTERVAL)),
            full_refusals: Mutex::new(RateLimited::new(REFUSAL_LOG_INTERVAL)),
        })
    }

    /// Serves `/journal/stats` from the journal writer's `status` and the
    /// journal's `epoch`; until this is called it answers 503. Only the first
    /// call counts.
    pub fn set_journal_info(&self, status: Arc<JournalStatus>, epoch: String) {
        let _ = self.journal_info.set(JournalInfo { status, epoch });
    }

    /// Serves the web page `site`; only the first call counts.
    pub fn set_site(&self, site: Site) {
        let _ = self.site.set(site);
    }

    /// The `Access-Control-Allow-Origin` to send for a request from
    /// `origin`: the origin itself when `[server] cors_origins` names it
    /// (or holds `*`), else none.
    fn allowed_origin<'a>(&self, origin: Option<&'a str>) -> Option<&'a str> {
        let origin = origin?;
        let allowed = &self.config.cors_origins;
        allowed
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
            .then_some(origin)
    }

    fn ws_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            // tungstenite writes only control frames (the session writes
            // the data frames itself), straight into the outbox.
            .write_buffer_size(0)
            .max_message_size(Some(self.config.max_frame_bytes))
            .max_frame_size(Some(self.config.max_frame_bytes))
    }
}

/// Accepts connections until `shutdown` fires, then gives open connections
/// [`DRAIN_TIMEOUT`] to finish and drops the rest.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: Receiver<()>) {
    let mut conns: HashMap<u64, (Task<()>, Arc<AtomicBool>)> = HashMap::new();
    let (done_tx, done_rx) = bounded::<u64>(INBOX);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut resume_at = Instant::now();
    let mut next_conn = 0u64;
    let mut accept_log = RateLimited::new(REFUSAL_LOG_INTERVAL);
    loop {
        let step = or(
            async {
                let _ = shutdown.recv().await;
                Step::Shutdown
            },
            or(
                async {
                    match done_rx.recv().await {
                        Ok(conn) => Step::Done(conn),
                        Err(_) => Step::Shutdown,
                    }
                },
                async {
                    Timer::at(resume_at).await;
                    Step::Accepted(listener.accept().await)
                },
            ),
        )
        .await;
        match step {
            Step::Shutdown => break,
            Step::Done(conn) => {
                conns.remove(&conn);
            }
            Step::Accepted(Ok((stream, peer))) => {
                backoff = ACCEPT_BACKOFF_MIN;
                let _ = stream.set_nodelay(true);
                next_conn += 1;
                let conn = next_conn;
                let shared = shared.clone();
                let done = done_tx.clone();
                let upgraded = Arc::new(AtomicBool::new(false));
                let flag = upgraded.clone();
                let task = crate::exec::spawn(async move {
                    handle(stream, peer, &shared, &flag).await;
                    let _ = done.send(conn).await;
                });
                conns.insert(conn, (task, upgraded));
            }
            Step::Accepted(Err(e)) => {
                if let Some(more) = accept_log.should_log(Instant::now()) {
                    log::warn!(
                        "accept failed: {e}; retrying in {} ms (raise LimitNOFILE if this is EMFILE){}",
                        backoff.as_millis(),
                        held_back(more)
                    );
                }
                // Waited for inside the select above, so a SIGTERM still
                // stops the loop at once.
                resume_at = Instant::now() + backoff;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
    drop(listener);
    // Connections still in their HTTP request are dropped at once; only
    // WebSocket sessions get time to send their close frame.
    conns.retain(|_, (_, upgraded)| upgraded.load(Ordering::Acquire));
    // The hub has been told to close every client with 1001; wait for the
    // connections to finish writing that, then drop whatever is left.
    let drain = async {
        while !conns.is_empty() {
            match done_rx.recv().await {
                Ok(done) => {
                    conns.remove(&done);
                }
                Err(_) => break,
            }
        }
    };
    or(drain, async {
        Timer::after(DRAIN_TIMEOUT).await;
    })
    .await;
    if !conns.is_empty() {
        log::debug!(
            "dropping {} connections still open after drain",
            conns.len()
        );
    }
}

/// What woke the accept loop.
enum Step {
    /// A new connection (or an accept error).
    Accepted(io::Result<(TcpStream, SocketAddr)>),
    /// Connection number `.0` finished.
    Done(u64),
    /// Stop accepting.
    Shutdown,
}

/// One connection: an HTTP request, possibly upgraded to a WebSocket.
///
/// The request is parsed in its own boxed future, so its buffers (~2.4 KiB
/// of them) are freed before the (long) WebSocket session starts instead of
/// staying part of every connection's task.
async fn handle(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    upgraded: &AtomicBool,
) {
    if let Some(upgrade) = Box::pin(serve_http(&mut stream, peer, shared)).await {
        upgraded.store(true, Ordering::Release);
        run_websocket(stream, upgrade, shared).await;
    }
}

/// An accepted WebSocket upgrade, ready for its 101 response.
struct Upgrade<'a> {
    accept_key: String,
    kind: String,
    access: Access,
    /// The subprotocol to answer with, if the client offered one.
    protocol: Option<String>,
    leftover: Vec<u8>,
    slot: Slot<'a>,
}

/// Answers a plain HTTP request, or checks an upgrade request and returns it.
async fn serve_http<'a>(
    stream: &mut TcpStream,
    peer: SocketAddr,
    shared: &'a Arc<Shared>,
) -> Option<Upgrade<'a>> {
    let mut buf = Vec::with_capacity(1024);
    let head = or(read_head(stream, &mut buf), async {
        Timer::after(HEAD_TIMEOUT).await;
        Err(io::ErrorKind::TimedOut.into())
    })
    .await;
    let head_len = match head {
        Ok(Some(len)) => len,
        Ok(None) => {
            let _ = respond(stream, 431, "text/plain", "request head too large\n").await;
            return None;
        }
        // A connection that never sent a byte gets no answer (it may be a
        // browser's speculative connection, which never made a request);
        // one that started a head and stalled is told why it is closed.
        Err(e) if e.kind() == io::ErrorKind::TimedOut && !buf.is_empty() => {
            let body = format!(
                "request head not complete within {} s\n",
                HEAD_TIMEOUT.as_secs()
            );
            let _ = respond(stream, 408, "text/plain", &body).await;
            return None;
        }
        Err(_) => return None,
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => {
            let _ = respond(stream, 400, "text/plain", "bad HTTP request\n").await;
            return None;
        }
    }
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let _ = respond(stream, 405, "text/plain", "only GET is supported\n").await;
        return None;
    }
    match path {
        "/healthz" => {
            let (status, body) = match ask_hub(shared, |reply| HubMsg::Health { reply }).await {
                Some(h) if h.journal_ok => (200, h.body),
                Some(h) => (503, h.body),
                None => (503, "{\"status\":\"stopping\"}".into()),
            };
            let _ = respond_with(stream, status, "application/json", &body, !head_only).await;
        }
        "/metrics" => match ask_hub(shared, |reply| HubMsg::Metrics { reply }).await {
            Some(mut text) => {
                // Here, not in the hub, which never touches a file.
                if let Some(figures) = process::Figures::read() {
                    figures.write_metrics(&mut MetricsText::new(&mut text));
                }
                let _ =
                    respond_with(stream, 200, "text/plain; version=0.0.4", &text, !head_only).await;
            }
            None => {
                let _ = respond(stream, 503, "text/plain", "stopping\n").await;
            }
        },
        "/journal/stats" => match shared.journal_info.get() {
            Some(info) => {
                let mut stats = info.status.to_json();
                stats["epoch"] = info.epoch.as_str().into();
                let body = stats.to_string() + "\n";
                let _ = respond_with(stream, 200, "application/json", &body, !head_only).await;
            }
            None => {
                let _ = respond(stream, 503, "text/plain", JOURNAL_UNAVAILABLE).await;
            }
        },
        "/journal/export" => match parse_export_query(query) {
            Ok(asked) => {
                let _ = serve_export(stream, shared, asked, !head_only).await;
            }
            Err(message) => {
                let _ = respond(stream, 400, "text/plain", &(message + "\n")).await;
            }
        },
        "/api/snapshot" | "/api/stats" => {
            // The same admission as /ws: a closed server's data needs a
            // token, and a JWT limited to some channels reads them over
            // /ws, where the snapshot op is filtered by its grant.
            let token = query
                .split('&')
                .filter_map(|pair| pair.strip_prefix("token="))
                .next_back()
                .map(percent_decode);
            let (token, _) = carried_token(&req, token);
            match shared.auth.admit(token.as_deref(), clock::wall_ms()) {
                Err(refusal) => {
                    let _ = refuse_unauthorized(stream, refusal).await;
                    return None;
                }
                Ok(access) if path == "/api/snapshot" && !access.may_subscribe("*") => {
                    let body =
                        "this token may read only some channels; use the snapshot op over /ws\n";
                    let _ = respond(stream, 403, "text/plain", body).await;
                    return None;
                }
                Ok(_) => {}
            }
            let json = if path == "/api/snapshot" {
                ask_hub(shared, |reply| HubMsg::ApiSnapshot { reply }).await
            } else {
                ask_hub(shared, |reply| HubMsg::ApiStats { reply }).await
            };
            let origin = shared.allowed_origin(header(&req, "origin"));
            let _ = pages::send_api(stream, json, origin, !head_only).await;
        }
        "/ws" => {
            let leftover = buf[head_len..].to_vec();
            return check_upgrade(stream, peer, shared, &req, query, leftover).await;
        }
        _ => match shared.site.get().and_then(|site| site.get(path)) {
            Some(asset) => {
                let tags = header(&req, "if-none-match");
                let _ = pages::send_asset(stream, asset, tags, !head_only).await;
            }
            None => {
                let _ = respond(
                    stream,
                    404,
                    "text/plain",
                    "not found; try /, /ws, /api/snapshot, /api/stats, /healthz, /metrics, /journal/stats or /journal/export\n",
                )
                .await;
            }
        },
    }
    None
}

/// Reads until the end of the request head. Returns its length (the buffer
/// may hold bytes past it), or `None` if it exceeds [`MAX_HEAD_BYTES`].
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_head_end(buf) {
            return Ok(Some(end));
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub(crate) fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

async fn ask_hub<T>(shared: &Shared, make: impl FnOnce(Sender<T>) -> HubMsg) -> Option<T> {
    let (tx, rx) = bounded(1);
    shared.hub.send(make(tx)).await.ok()?;
    rx.recv().await.ok()
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> io::Result<()> {
    respond_with(stream, status, content_type, body, true).await
}

/// Writes a whole response; `send_body` is false for HEAD (the headers
/// still say how long the body would be).
async fn respond_with(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    send_body: bool,
) -> io::Result<()> {
    let reason = match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if send_body {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.flush().await
}

/// The 503 body of `/journal/*` in a daemon without a journal.
const JOURNAL_UNAVAILABLE: &str = "journal not available in this daemon\n";

/// What `/journal/export` was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExportQuery {
    /// `since=N&limit=M`: the first `limit` records with seq > `since`.
    Range {
        /// Records after this seq.
        since: u64,
        /// At most this many.
        limit: usize,
    },
    /// `tail=N`: the newest N records.
    Tail(usize),
}

/// Parses the query of `/journal/export`; the error is the 400 message.
/// Unknown parameters are ignored, like everywhere on this server.
pub(crate) fn parse_export_query(query: &str) -> Result<ExportQuery, String> {
    let (mut since, mut limit, mut tail) = (None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        let number = |min: u64, max: u64| {
            // Digits only: `u64::from_str` would also take a `+` sign.
            Some(value.as_str())
                .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    format!("{name}={value:?} is not a whole number from {min} to {max}")
                })
        };
        match name {
            "since" => since = Some(number(0, u64::MAX)?),
            "limit" => limit = Some(number(1, MAX_LIMIT as u64)? as usize),
            "tail" => tail = Some(number(0, MAX_TAIL as u64)? as usize),
            _ => {}
        }
    }
    match (tail, since, limit) {
        (Some(n), None, None) => Ok(ExportQuery::Tail(n)),
        (Some(_), _, _) => Err("tail=N cannot be combined with since or limit".into()),
        (None, since, limit) => Ok(ExportQuery::Range {
            since: since.unwrap_or(0),
            limit: limit.unwrap_or(DEFAULT_LIMIT),
        }),
    }
}

/// Answers `/journal/export`: JSON lines (see `journal::export`), read from
/// the journal writer a page at a time and sent as one HTTP chunk per page,
/// so memory stays at one page whatever the length. A journal that fails
/// midway ends the connection without the last chunk, so the client knows
/// the answer is incomplete.
async fn serve_export(
    stream: &mut TcpStream,
    shared: &Shared,
    asked: ExportQuery,
    send_body: bool,
) -> io::Result<()> {
    let Some(journal) = &shared.journal else {
        return respond(stream, 503, "text/plain", JOURNAL_UNAVAILABLE).await;
    };
    let problem = || {
        shared
            .journal_info
            .get()
            .and_then(|info| info.status.problem())
    };
    if let Some(problem) = problem() {
        let body = format!("the journal cannot be read right now: {problem}\n");
        return respond(stream, 503, "text/plain", &body).await;
    }
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\
              Transfer-Encoding: chunked\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        )
        .await?;
    if !send_body {
        return stream.flush().await;
    }
    let mut lines = Vec::new();
    let mut chunk = Vec::new();
    match asked {
        ExportQuery::Tail(n) => {
            let Some(records) = read_journal(journal, |reply| JournalMsg::Tail { n, reply }).await
            else {
                return Ok(());
            };
            export::push_tail(&records, &mut lines);
            write_chunk(stream, &lines, &mut chunk).await?;
        }
        ExportQuery::Range { since, limit } => {
            let mut export = Export::new(since, limit);
            loop {
                let (after, limit) = (export.after(), export.next_read(REPLAY_PAGE));
                if limit == 0 {
                    break;
                }
                let read = |reply| JournalMsg::Read {
                    after,
                    limit,
                    reply,
                };
                let Some(records) = read_journal(journal, read).await else {
                    return Ok(());
                };
                lines.clear();
                if export.push_page(&records, &mut lines) == 0 {
                    break;
                }
                write_chunk(stream, &lines, &mut chunk).await?;
            }
        }
    }
    // The writer answers an empty page when its journal has failed: then
    // the end of the records was not the end of the journal.
    if problem().is_some() {
        return Ok(());
    }
    stream.write_all(b"0\r\n\r\n").await?;
    stream.flush().await
}

/// Asks the journal writer for records; `None` if it is gone (shutdown).
async fn read_journal(
    journal: &Sender<JournalMsg>,
    make: impl FnOnce(Sender<Vec<Record>>) -> JournalMsg,
) -> Option<Vec<Record>> {
    let (reply, records) = bounded(1);
    journal.send(make(reply)).await.ok()?;
    records.recv().await.ok()
}

/// Writes `data` as one HTTP chunk (nothing if it is empty: an empty chunk
/// would end the body), framed in `scratch`.
async fn write_chunk(stream: &mut TcpStream, data: &[u8], scratch: &mut Vec<u8>) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    scratch.clear();
    scratch.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    scratch.extend_from_slice(data);
    scratch.extend_from_slice(b"\r\n");
    stream.write_all(scratch).await
}

fn header<'a>(req: &'a httparse::Request<'_, '_>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
}

/// Holds one of the `max_clients` slots; released on drop.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Decides an upgrade request: 426 if it is not one, 400 for a malformed
/// `Sec-WebSocket-Key`, 401 for a bad or missing token, 503 past
/// `max_clients`.
async fn check_upgrade<'a>(
    stream: &mut TcpStream,
    peer: SocketAddr,
    shared: &'a Arc<Shared>,
    req: &httparse::Request<'_, '_>,
    query: &str,
    leftover: Vec<u8>,
) -> Option<Upgrade<'a>> {
    let is_upgrade = header(req, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && header(req, "connection").is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    let key = header(req, "sec-websocket-key");
    let (true, Some(key), Some("13")) = (
        is_upgrade,
        key,
        header(req, "sec-websocket-version").map(str::trim),
    ) else {
        let _ = respond(
            stream,
            426,
            "text/plain",
            "this endpoint speaks WebSocket (version 13); connect with a WebSocket client\n",
        )
        .await;
        return None;
    };
    // A browser names the page that opens the socket; with cors_origins
    // set, only those pages (and this server's own) may.
    if let Some(origin) = header(req, "origin")
        && !shared.config.cors_origins.is_empty()
        && shared.allowed_origin(Some(origin)).is_none()
        && !same_origin(origin, header(req, "host"))
    {
        let _ = respond(
            stream,
            403,
            "text/plain",
            "this page's origin is not in [server] cors_origins\n",
        )
        .await;
        return None;
    }
    let key = key.trim();
    if !valid_key(key) {
        let _ = respond(
            stream,
            400,
            "text/plain",
            "Sec-WebSocket-Key must be the base64 of 16 bytes (24 characters ending in ==)\n",
        )
        .await;
        return None;
    }
    let mut token = None;
    let mut kind = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "token" => token = Some(percent_decode(value)),
            "client" => kind = Some(percent_decode(value)),
            _ => {}
        }
    }
    let (token, protocol) = carried_token(req, token);
    let access = match shared.auth.admit(token.as_deref(), clock::wall_ms()) {
        Ok(access) => access,
        Err(refusal) => {
            if token.is_some()
                && let Some(more) = should_log(&shared.token_refusals)
            {
                log::info!("refused {peer}: {refusal}{}", held_back(more));
            }
            let _ = refuse_unauthorized(stream, refusal).await;
            return None;
        }
    };
    let taken = shared.clients.fetch_add(1, Ordering::AcqRel);
    let slot = Slot(&shared.clients);
    if taken >= shared.config.max_clients {
        if let Some(more) = should_log(&shared.full_refusals) {
            log::warn!(
                "refused {peer}: {} clients already connected (max_clients){}",
                shared.config.max_clients,
                held_back(more)
            );
        }
        let _ = respond(stream, 503, "text/plain", "server full; try again later\n").await;
        return None;
    }
    Some(Upgrade {
        accept_key: derive_accept_key(key.as_bytes()),
        kind: clean_kind(kind.as_deref()),
        access,
        protocol,
        leftover,
        slot,
    })
}

/// Whether `origin` (`http://host:port`) is the server itself as the
/// request's `Host` names it: the board's own page.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let bare = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((bare, host), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b.trim()))
}

/// Whether `key` is a `Sec-WebSocket-Key` as RFC 6455 §4.1 requires: the
/// base64 of 16 bytes, which is always 22 characters of the base64 alphabet
/// followed by `==`. Like most decoders this does not insist that the unused
/// low bits of the 22nd character are zero.
pub(crate) fn valid_key(key: &str) -> bool {
    let key = key.as_bytes();
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Whether a rate-limited line may be logged now, and how many were held
/// back since the last one.
fn should_log(limit: &Mutex<RateLimited>) -> Option<u64> {
    let mut limit = limit.lock().unwrap_or_else(|e| e.into_inner());
    limit.should_log(Instant::now())
}

/// `" (N more since the last message)"`, or nothing when none were held
/// back.
fn held_back(more: u64) -> String {
    if more == 0 {
        String::new()
    } else {
        format!(" ({more} more since the last message)")
    }
}

/// Sends the 101 response and runs the WebSocket session.
async fn run_websocket(mut stream: TcpStream, upgrade: Upgrade<'_>, shared: &Arc<Shared>) {
    let protocol = match &upgrade.protocol {
        Some(p) => format!("Sec-WebSocket-Protocol: {p}\r\n"),
        None => String::new(),
    };
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{protocol}\r\n",
        upgrade.accept_key
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let session = Session {
        id: shared.next_id.fetch_add(1, Ordering::Relaxed),
        kind: upgrade.kind,
        access: upgrade.access,
        auth: shared.auth.clone(),
        hub: shared.hub.clone(),
        journal: shared.journal.clone(),
    };
    session::run(session, stream, upgrade.leftover, shared.ws_config()).await;
    drop(upgrade.slot);
}

/// `client=` as a short printable label; `unknown` when absent.
pub(crate) fn clean_kind(kind: Option<&str>) -> String {
    let kind: String = kind
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(32)
        .collect();
    if kind.is_empty() {
        "unknown".into()
    } else {
        kind
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                // Two hex digits, nothing else: `u8::from_str_radix` would
                // also take a sign, so `%+1` would decode to a byte 0x01.
                match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of one hex digit, either case.
fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The token a client presents, from the first carrier that has one: the
/// `token=` query (`query`), `Authorization: Bearer`, or a
/// `Sec-WebSocket-Protocol` entry `bearer.<token>` (docs/protocol.md §2).
/// Also the subprotocol to answer with: `tablo` when offered, else the
/// token's own entry (a browser fails an upgrade whose answer names no
/// protocol it offered).
fn carried_token(
    req: &httparse::Request<'_, '_>,
    query: Option<String>,
) -> (Option<String>, Option<String>) {
    let offered: Vec<&str> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let in_protocol = offered
        .iter()
        .find(|p| p.starts_with(TOKEN_PROTOCOL_PREFIX))
        .copied();
    let protocol = if offered.contains(&PROTOCOL) {
        Some(PROTOCOL.to_owned())
    } else {
        in_protocol.map(str::to_owned)
    };
    let bearer = header(req, "authorization").and_then(|v| {
        let (scheme, rest) = v.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| rest.trim().to_owned())
    });
    let token = query
        .or(bearer)
        .or_else(|| in_protocol.map(|p| p[TOKEN_PROTOCOL_PREFIX.len()..].to_owned()));
    (token, protocol)
}

/// Answers 401 with the reason in the body and in `WWW-Authenticate`
/// (RFC 6750 §3); the reason names the check that failed, never a key.
async fn refuse_unauthorized(stream: &mut TcpStream, refusal: Refusal) -> io::Result<()> {
    let body = format!("{refusal}\n");
    let error = match refusal {
        Refusal::Missing => String::new(),
        _ => format!(
            ", error=\"invalid_token\", error_description=\"{}\"",
            refusal.to_string().replace(['"', '\\'], "'")
        ),
    };
    let head = format!(
        "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         WWW-Authenticate: Bearer realm=\"tablo\"{error}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%E2%82%AC"), "€");
    }

    /// Found by the fuzzer (tests/it/fuzz.rs, http-query): `%+0` decoded
    /// to a NUL byte, because `u8::from_str_radix` takes a leading sign.
    #[test]
    fn percent_escape_with_a_sign_is_not_an_escape() {
        assert_eq!(percent_decode("%+0"), "% 0");
        assert_eq!(percent_decode("%-1"), "%-1");
        assert_eq!(percent_decode("%+41x"), "% 41x");
        assert_eq!(percent_decode("%4a%4A"), "JJ");
    }

    #[test]
    fn head_end_is_found_after_blank_line() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"),
            Some(24)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn export_queries() {
        use ExportQuery::{Range, Tail};
        let range = |since, limit| Ok(Range { since, limit });
        assert_eq!(parse_export_query(""), range(0, DEFAULT_LIMIT));
        assert_eq!(parse_export_query("since=42"), range(42, DEFAULT_LIMIT));
        assert_eq!(parse_export_query("since=7&limit=5"), range(7, 5));
        assert_eq!(parse_export_query("limit=100000&x=y&"), range(0, MAX_LIMIT));
        assert_eq!(
            parse_export_query("since=18446744073709551615"),
            range(u64::MAX, DEFAULT_LIMIT)
        );
        assert_eq!(parse_export_query("tail=20"), Ok(Tail(20)));
        assert_eq!(parse_export_query("tail=0"), Ok(Tail(0)));
        for (bad, says) in [
            (
                "limit=abc",
                "limit=\"abc\" is not a whole number from 1 to 100000",
            ),
            ("limit=0", "limit=\"0\""),
            ("limit=100001", "limit=\"100001\""),
            ("limit=-1", "limit=\"-1\""),
            ("since=", "since=\"\""),
            ("since=1.5", "since=\"1.5\""),
            (
                "tail=10001",
                "tail=\"10001\" is not a whole number from 0 to 10000",
            ),
            ("tail=5&since=3", "cannot be combined"),
            ("limit=5&tail=5", "cannot be combined"),
        ] {
            let err = parse_export_query(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    /// Found by the fuzzer (tests/it/fuzz.rs, http-query): a `+` sign,
    /// sent as `%2B`, passed as a whole number (`since=%2B5` was seq 5).
    #[test]
    fn export_query_numbers_take_no_sign() {
        for (bad, says) in [
            ("since=%2B5", "since=\"+5\" is not a whole number"),
            ("limit=%2b10", "limit=\"+10\""),
            ("tail=%2B1", "tail=\"+1\""),
        ] {
            let err = parse_export_query(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn websocket_keys() {
        // RFC 6455 §1.3's example, and the base64 of 16 other bytes.
        assert!(valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(valid_key("AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(valid_key("+/+/+/+/+/+/+/+/+/+/+w=="));
        for bad in [
            "",
            // 15 and 17 bytes.
            "dGhlIHNhbXBsZSBub25j",
            "dGhlIHNhbXBsZSBub25jZXg=",
            // Not base64: a character outside the alphabet, URL-safe
            // base64, padding in the middle, no padding.
            "dGhlIHNhbXBsZSBub25j!Q==",
            "-_-_-_-_-_-_-_-_-_-_-w==",
            "dGhlIHNhbX=sZSBub25jZQ==",
            "dGhlIHNhbXBsZSBub25jZQAA",
            "dGhlIHNhbXBsZSBub25j\u{e9}==",
        ] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn tokens_come_from_the_first_carrier_and_the_subprotocol_is_chosen() {
        let carried = |head: &str, query: Option<&str>| {
            let mut headers = [httparse::EMPTY_HEADER; 8];
            let mut req = httparse::Request::new(&mut headers);
            let text = format!("GET /ws HTTP/1.1\r\n{head}\r\n");
            assert!(req.parse(text.as_bytes()).unwrap().is_complete());
            carried_token(&req, query.map(str::to_owned))
        };
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(carried("", None), (None, None));
        assert_eq!(
            carried("Authorization: bearer  a.b.c \r\n", None),
            (some("a.b.c"), None)
        );
        assert_eq!(carried("Authorization: Basic eA==\r\n", None), (None, None));
        assert_eq!(
            carried("Sec-WebSocket-Protocol: tablo, bearer.a.b.c\r\n", None),
            (some("a.b.c"), some("tablo"))
        );
        assert_eq!(
            carried("Sec-WebSocket-Protocol: bearer.a.b.c\r\n", None),
            (some("a.b.c"), some("bearer.a.b.c"))
        );
        assert_eq!(
            carried("Sec-WebSocket-Protocol: graphql-ws\r\n", None),
            (None, None)
        );
        // The query wins over a header, a header over the subprotocol.
        let both = "Authorization: Bearer h.h.h\r\nSec-WebSocket-Protocol: bearer.p.p.p\r\n";
        assert_eq!(carried(both, Some("q.q.q")).0, some("q.q.q"));
        assert_eq!(carried(both, None).0, some("h.h.h"));
    }

    #[test]
    fn kinds_are_cleaned() {
        assert_eq!(clean_kind(None), "unknown");
        assert_eq!(clean_kind(Some("bot\n")), "bot");
        assert_eq!(clean_kind(Some(&"x".repeat(100))).len(), 32);
    }
}
