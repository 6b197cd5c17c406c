//! One `mqtt` feed's task: connect to the broker, log in, subscribe, hand
//! what arrives to the hub, publish what `[[forward]]` queued for this
//! broker, and reconnect with the feed's backoff (docs/config.md §11).
//!
//! MQTT 3.1.1 over TCP (`mqtt://`), TLS (`mqtts://`, rustls with the
//! webpki roots) or a WebSocket (`ws://`, `wss://`, subprotocol `mqtt`); packets are encoded and decoded with `mqttbytes`
//! over a byte buffer, the I/O is this task's, on smol. The session is
//! persistent (clean session off, a client id stable across restarts), so
//! QoS 1 messages published while this Tablo was off wait at the broker.
//! A QoS 1 message is acknowledged only once its events are in the hub's
//! inbox. A broker that refuses the login is asked again only after
//! [`REFUSED_RETRY`], with one clear log line, never in a hot loop.
//!
//! What a payload means is `feed::mqtt`'s to say; the outbox is
//! `journal::forward`'s. This file is the session and the I/O around them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use bytes::BytesMut;
use futures_util::StreamExt;
use mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Login, Packet, PingReq, PubAck, Publish, Subscribe,
    SubscribeFilter, SubscribeReasonCode,
};
use mqttbytes::{Error as CodecError, QoS};
use smol::Timer;
use smol::channel::Sender;
use smol::future::or;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

use super::{
    BAD_MESSAGE_LOG_INTERVAL, CONNECT_TIMEOUT, Ending, HubLink, MAX_UPSTREAM_MESSAGE, bad_message,
    report_link_end,
};
use crate::clock::wall_ms;
use crate::config::FeedConfig;
use crate::event::FeedState;
use crate::feed::backoff::{Backoff, Outage, Report};
use crate::feed::mqtt::Mqtt;
use crate::hub::HubMsg;
use crate::journal::forward::{Outbox, Pending};
use crate::logger::RateLimited;

/// The keepalive sent in CONNECT: the broker drops a client it has heard
/// nothing from for 1.5 × this. 30 s finds a dead link within a minute
/// without waking a Pi's radio often.
pub const KEEPALIVE: Duration = Duration::from_secs(30);

/// A PINGREQ goes out once nothing was sent or received for this long,
/// half the keepalive, so the broker's timer never runs out.
pub const PING_AFTER: Duration = Duration::from_secs(15);

/// A PINGREQ not answered within this long means the link is dead.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// A broker that refused the login (bad user name or password, not
/// authorized) is asked again after at least this long: the config or the
/// broker must change first, and a quick retry would only fill its log.
pub const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// Forwarded messages sent and not yet acknowledged (PUBACK), at most. A
/// window keeps the link busy across the round trip; 64 × a few hundred
/// bytes is little memory, and all of it is in the outbox anyway.
pub const MAX_IN_FLIGHT: usize = 64;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Runs `mqtt` feed number `index` until the task is dropped. `outbox`
/// holds what `[[forward]]` rules queued for this broker, when any rule
/// names this feed.
pub async fn run(index: usize, feed: FeedConfig, hub: Sender<HubMsg>, outbox: Option<Outbox>) {
    let link = HubLink {
        index,
        hub: hub.clone(),
    };
    let mut decoder = Mqtt::new(&feed);
    let client_id = feed
        .mqtt
        .client_id
        .clone()
        .unwrap_or_else(|| default_client_id(&feed.name));
    let mut backoff = Backoff::new();
    let mut rng = fastrand::Rng::new();
    let mut bad_log = RateLimited::new(BAD_MESSAGE_LOG_INTERVAL);
    let mut outage = Outage::new();
    loop {
        if !link.state(FeedState::Connecting).await {
            return;
        }
        let started = Instant::now();
        let end = match open(&feed, &client_id).await {
            Ok((conn, session_present)) => {
                outage.connected();
                let _ = hub
                    .send(HubMsg::FeedProblem {
                        feed: index,
                        problem: None,
                    })
                    .await;
                log::info!(
                    "feed {}: connected to {} as {client_id} ({})",
                    feed.name,
                    feed.url,
                    if session_present {
                        "the broker kept our session"
                    } else {
                        "a new session"
                    }
                );
                let mut session = Session {
                    link: &link,
                    feed: &feed,
                    conn,
                    decoder: &mut decoder,
                    bad_log: &mut bad_log,
                    outbox: outbox.as_ref(),
                    next_id: 1,
                    in_flight: VecDeque::new(),
                    out: BytesMut::new(),
                };
                session.pump().await
            }
            Err(end) => end,
        };
        let Some(mut attempt) = link.down(&mut backoff, &mut rng, started).await else {
            return;
        };
        let ending = match &end {
            LinkEnd::HubGone => return,
            LinkEnd::Refused(why) => {
                attempt.delay = attempt.delay.max(REFUSED_RETRY);
                let problem = Some(format!("the broker refused the connection: {why}"));
                if hub
                    .send(HubMsg::FeedProblem {
                        feed: index,
                        problem,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                match outage.failed(Instant::now()) {
                    Report::Quiet => {
                        log::debug!("feed {}: refused: {why}", feed.name);
                    }
                    _ => log::error!(
                        "feed {}: {} refused the connection: {why}; asking again in {} s",
                        feed.name,
                        feed.url,
                        attempt.delay.as_secs()
                    ),
                }
                Timer::after(attempt.delay).await;
                continue;
            }
            LinkEnd::ConnectFailed(why) => Ending::ConnectFailed(why),
            LinkEnd::Lost(why) => Ending::Lost(why),
        };
        report_link_end(&feed, &mut outage, ending, attempt);
        Timer::after(attempt.delay).await;
    }
}

/// How a connection ended.
enum LinkEnd {
    /// Never got up.
    ConnectFailed(String),
    /// The broker answered CONNECT with a refusal that a retry will not fix.
    Refused(String),
    /// Was up, then died.
    Lost(String),
    /// The hub stopped: the process is shutting down.
    HubGone,
}

/// `tablo-<machine id>-<feed name>`: stable across restarts, so the broker
/// keeps this kiosk's session, and different per machine, so two kiosks
/// with the same config do not take each other's. The machine id is the
/// first 12 hex digits of `/etc/machine-id`, or the host name.
fn default_client_id(feed: &str) -> String {
    let machine = std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|id| id.trim().chars().take(12).collect::<String>())
        .filter(|id| !id.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    let clean = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    format!("tablo-{}-{}", clean(&machine), clean(feed))
}

/// Dials, logs in, and subscribes: the connection and whether the broker
/// still had our session.
async fn open(feed: &FeedConfig, client_id: &str) -> Result<(Conn, bool), LinkEnd> {
    let password = match &feed.mqtt.password_file {
        Some(file) => match std::fs::read_to_string(file) {
            Ok(text) => Some(text.trim_end_matches(['\n', '\r']).to_owned()),
            Err(e) => {
                return Err(LinkEnd::Refused(format!(
                    "cannot read password_file {}: {e}",
                    file.display()
                )));
            }
        },
        None => None,
    };
    let attempt = async {
        let mut conn = Conn::dial(&feed.url)
            .await
            .map_err(LinkEnd::ConnectFailed)?;
        let mut connect = Connect::new(client_id);
        connect.keep_alive = KEEPALIVE.as_secs() as u16;
        connect.clean_session = false;
        if let Some(user) = &feed.mqtt.username {
            connect.login = Some(Login::new(user.clone(), password.unwrap_or_default()));
        }
        let mut out = BytesMut::new();
        write_packet(&mut out, |b| connect.write(b)).map_err(LinkEnd::ConnectFailed)?;
        conn.write(&out).await.map_err(LinkEnd::ConnectFailed)?;
        let mut buf = BytesMut::new();
        let ack = loop {
            match mqttbytes::v4::read(&mut buf, MAX_UPSTREAM_MESSAGE) {
                Ok(Packet::ConnAck(ack)) => break ack,
                Ok(other) => {
                    return Err(LinkEnd::ConnectFailed(format!(
                        "the broker answered CONNECT with {} instead of CONNACK",
                        packet_name(&other)
                    )));
                }
                Err(CodecError::InsufficientBytes(_)) => {
                    if conn.read(&mut buf).await.map_err(LinkEnd::ConnectFailed)? == 0 {
                        return Err(LinkEnd::ConnectFailed(
                            "the broker closed the connection before CONNACK".into(),
                        ));
                    }
                }
                Err(e) => {
                    return Err(LinkEnd::ConnectFailed(format!(
                        "not an MQTT broker, or a broken CONNACK: {e:?}"
                    )));
                }
            }
        };
        let ConnAck {
            session_present,
            code,
        } = ack;
        refusal(code, client_id)?;
        let filters = feed
            .mqtt
            .topics
            .iter()
            .map(|t| SubscribeFilter::new(t.clone(), qos(feed.mqtt.qos)))
            .collect::<Vec<_>>();
        let mut subscribe = Subscribe::new_many(filters);
        subscribe.pkid = SUBSCRIBE_ID;
        out.clear();
        write_packet(&mut out, |b| subscribe.write(b)).map_err(LinkEnd::ConnectFailed)?;
        conn.write(&out).await.map_err(LinkEnd::ConnectFailed)?;
        conn.pending = buf;
        Ok((conn, session_present))
    };
    or(attempt, async {
        Timer::after(CONNECT_TIMEOUT).await;
        Err(LinkEnd::ConnectFailed(format!(
            "no CONNACK within {} s",
            CONNECT_TIMEOUT.as_secs()
        )))
    })
    .await
}

/// The packet id of our SUBSCRIBE; forwarded publishes use the others.
const SUBSCRIBE_ID: u16 = 1;

/// A CONNACK code as the reason it refuses, if it does.
fn refusal(code: ConnectReturnCode, client_id: &str) -> Result<(), LinkEnd> {
    Err(match code {
        ConnectReturnCode::Success => return Ok(()),
        ConnectReturnCode::BadUserNamePassword => {
            LinkEnd::Refused("bad user name or password (check username and password_file)".into())
        }
        ConnectReturnCode::NotAuthorized => LinkEnd::Refused(
            "not authorized: a wrong user name or password, or no right to connect \
             (check username, password_file and the broker's password file and ACL)"
                .into(),
        ),
        ConnectReturnCode::BadClientId => LinkEnd::Refused(format!(
            "it does not accept the client id {client_id:?} (set client_id)"
        )),
        ConnectReturnCode::RefusedProtocolVersion => {
            LinkEnd::Refused("it does not speak MQTT 3.1.1".into())
        }
        ConnectReturnCode::ServiceUnavailable => {
            LinkEnd::ConnectFailed("the broker is unavailable (CONNACK 3)".into())
        }
    })
}

fn qos(level: u8) -> QoS {
    if level == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    }
}

/// Encodes one packet at the end of `out`.
fn write_packet(
    out: &mut BytesMut,
    write: impl FnOnce(&mut BytesMut) -> Result<usize, CodecError>,
) -> Result<(), String> {
    write(out)
        .map(|_| ())
        .map_err(|e| format!("cannot encode a packet: {e:?}"))
}

/// A packet's name, for the log.
fn packet_name(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}

/// The byte stream to the broker: TCP, or MQTT over a WebSocket.
struct Conn {
    transport: Transport,
    /// Bytes read and not yet a whole packet.
    pending: BytesMut,
}

type WsStream = async_tungstenite::WebSocketStream<async_tungstenite::smol::ConnectStream>;

enum Transport {
    Tcp(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
    Ws(Box<WsStream>),
}

/// `host:port` of an `mqtt://` or `mqtts://` URL's `rest` (after the
/// scheme), with `default` as the port when it has none; and the host.
fn host_port(rest: &str, default: u16) -> (String, String) {
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !rest.ends_with(']') && port.parse::<u16>().is_ok() => {
            (host, port.to_owned())
        }
        _ => (rest, default.to_string()),
    };
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    (format!("{host}:{port}"), bare)
}

/// The TLS client for `mqtts://`: the webpki CA roots, no client
/// certificate.
fn tls_connector() -> futures_rustls::TlsConnector {
    let mut roots = futures_rustls::rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = futures_rustls::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    futures_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

impl Conn {
    /// Opens the transport for `url`: `mqtt://host[:1883]`,
    /// `mqtts://host[:8883]`, or `ws://`/`wss://` with the `mqtt`
    /// subprotocol.
    async fn dial(url: &str) -> Result<Conn, String> {
        let lower = url.to_ascii_lowercase();
        let transport = if let Some(rest) = lower.strip_prefix("mqtt://") {
            let (addr, _) = host_port(&url[url.len() - rest.len()..], 1883);
            let tcp = TcpStream::connect(addr.as_str())
                .await
                .map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            Transport::Tcp(tcp)
        } else if let Some(rest) = lower.strip_prefix("mqtts://") {
            let (addr, host) = host_port(&url[url.len() - rest.len()..], 8883);
            let tcp = TcpStream::connect(addr.as_str())
                .await
                .map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            let name = futures_rustls::pki_types::ServerName::try_from(host)
                .map_err(|e| format!("not a host name for TLS: {e}"))?;
            let tls = tls_connector()
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            Transport::Tls(Box::new(tls))
        } else if lower.starts_with("ws://") || lower.starts_with("wss://") {
            let mut request = url.into_client_request().map_err(|e| e.to_string())?;
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
            let config = WebSocketConfig::default()
                .read_buffer_size(READ_CHUNK)
                .max_message_size(Some(MAX_UPSTREAM_MESSAGE))
                .max_frame_size(Some(MAX_UPSTREAM_MESSAGE));
            let (ws, _) = async_tungstenite::smol::connect_async_with_config(request, Some(config))
                .await
                .map_err(|e| e.to_string())?;
            Transport::Ws(Box::new(ws))
        } else {
            return Err(format!(
                "{url} is not a broker URL: use mqtt://, mqtts://, ws:// or wss://"
            ));
        };
        Ok(Conn {
            transport,
            pending: BytesMut::new(),
        })
    }

    /// Sends `bytes` (whole packets).
    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        match &mut self.transport {
            Transport::Tcp(tcp) => tcp.write_all(bytes).await.map_err(|e| e.to_string()),
            Transport::Tls(tls) => {
                tls.write_all(bytes).await.map_err(|e| e.to_string())?;
                tls.flush().await.map_err(|e| e.to_string())
            }
            Transport::Ws(ws) => ws
                .send(Message::Binary(bytes.to_vec().into()))
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Reads what is there into `buf`; 0 when the broker closed the link.
    /// Cancel-safe: dropped before it is ready, it has read nothing.
    async fn read(&mut self, buf: &mut BytesMut) -> Result<usize, String> {
        match &mut self.transport {
            Transport::Tcp(tcp) => {
                let mut chunk = [0u8; READ_CHUNK];
                let n = tcp.read(&mut chunk).await.map_err(|e| e.to_string())?;
                buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Transport::Tls(tls) => {
                let mut chunk = [0u8; READ_CHUNK];
                let n = tls.read(&mut chunk).await.map_err(|e| e.to_string())?;
                buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Transport::Ws(ws) => loop {
                match ws.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(0),
                    Some(Err(e)) => return Err(e.to_string()),
                    Some(Ok(Message::Binary(bytes))) if !bytes.is_empty() => {
                        buf.extend_from_slice(&bytes);
                        return Ok(bytes.len());
                    }
                    Some(Ok(_)) => {}
                }
            },
        }
    }
}

/// What woke the session.
enum Wake {
    /// Bytes came (0: the broker closed the link), or reading failed.
    Read(Result<usize, String>),
    /// A keepalive deadline.
    Timer,
    /// The outbox has something new.
    Outbox,
}

/// One connection's state.
struct Session<'a> {
    link: &'a HubLink,
    feed: &'a FeedConfig,
    conn: Conn,
    decoder: &'a mut Mqtt,
    bad_log: &'a mut RateLimited,
    outbox: Option<&'a Outbox>,
    /// The next packet id for a forwarded publish.
    next_id: u16,
    /// Forwarded publishes sent and not yet acknowledged, oldest first.
    in_flight: VecDeque<(u16, Pending)>,
    /// Packets to send, encoded.
    out: BytesMut,
}

impl Session<'_> {
    /// Reads and writes until the link dies.
    async fn pump(&mut self) -> LinkEnd {
        if !self.link.state(FeedState::Up).await {
            return LinkEnd::HubGone;
        }
        let mut buf = std::mem::take(&mut self.conn.pending);
        let mut events = Vec::new();
        let mut last_sent = Instant::now();
        let mut last_heard = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        let mut timer = Timer::never();
        // Resend from the oldest unacknowledged forwarded message: the
        // outbox keeps everything until its PUBACK.
        let mut cursor = None;
        loop {
            // Whole packets first: some may have come with the CONNACK.
            loop {
                match mqttbytes::v4::read(&mut buf, MAX_UPSTREAM_MESSAGE) {
                    Ok(packet) => {
                        last_heard = Instant::now();
                        if let Err(end) = self.packet(packet, &mut events, &mut ping_sent).await {
                            return end;
                        }
                    }
                    Err(CodecError::InsufficientBytes(_)) => break,
                    Err(CodecError::PayloadSizeLimitExceeded(size)) => {
                        return LinkEnd::Lost(format!(
                            "the broker sent a packet of {size} bytes, over the cap of {} MiB \
                             (MAX_UPSTREAM_MESSAGE)",
                            MAX_UPSTREAM_MESSAGE >> 20
                        ));
                    }
                    Err(e) => return LinkEnd::Lost(format!("a broken MQTT packet: {e:?}")),
                }
            }
            if let Some(outbox) = self.outbox {
                while self.in_flight.len() < MAX_IN_FLIGHT {
                    let Some(pending) = outbox.next_after(cursor) else {
                        break;
                    };
                    cursor = Some(pending.key);
                    let id = self.take_id();
                    let mut publish = Publish::new(
                        pending.topic.clone(),
                        qos(pending.qos),
                        pending.payload.to_vec(),
                    );
                    publish.retain = pending.retain;
                    if pending.qos > 0 {
                        publish.pkid = id;
                    }
                    if let Err(why) = write_packet(&mut self.out, |b| publish.write(b)) {
                        // Cannot happen for a topic and payload the outbox
                        // accepted; drop it rather than block the queue.
                        log::warn!("feed {}: {why}; the message is dropped", self.feed.name);
                        outbox.acked(pending.key);
                        continue;
                    }
                    if pending.qos > 0 {
                        self.in_flight.push_back((id, pending));
                    } else {
                        outbox.acked(pending.key);
                    }
                }
            }
            let now = Instant::now();
            if let Some(at) = ping_sent {
                if now >= at + PING_TIMEOUT {
                    return LinkEnd::Lost(format!(
                        "no PINGRESP within {} s",
                        PING_TIMEOUT.as_secs()
                    ));
                }
            } else if now >= last_sent.min(last_heard) + PING_AFTER {
                if let Err(why) = write_packet(&mut self.out, |b| PingReq.write(b)) {
                    return LinkEnd::Lost(why);
                }
                ping_sent = Some(now);
            }
            if !self.out.is_empty() {
                let out = self.out.split();
                if let Err(why) = self.conn.write(&out).await {
                    return LinkEnd::Lost(format!("sending failed: {why}"));
                }
                last_sent = Instant::now();
                continue;
            }
            let deadline = match ping_sent {
                Some(at) => at + PING_TIMEOUT,
                None => last_sent.min(last_heard) + PING_AFTER,
            };
            timer.set_at(deadline);
            let conn = &mut self.conn;
            let read = async { Wake::Read(conn.read(&mut buf).await) };
            let tick = async {
                (&mut timer).await;
                Wake::Timer
            };
            let wake = match self.outbox {
                Some(outbox) if self.in_flight.len() < MAX_IN_FLIGHT => {
                    or(
                        read,
                        or(tick, async {
                            outbox.changed().await;
                            Wake::Outbox
                        }),
                    )
                    .await
                }
                _ => or(read, tick).await,
            };
            match wake {
                Wake::Read(Ok(0)) => {
                    return LinkEnd::Lost("the broker closed the connection".into());
                }
                Wake::Read(Ok(_)) => {}
                Wake::Read(Err(why)) => return LinkEnd::Lost(why),
                Wake::Timer | Wake::Outbox => {}
            }
        }
    }

    /// The next packet id for a forwarded publish: never 0 and never the
    /// SUBSCRIBE's.
    fn take_id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = match self.next_id.wrapping_add(1) {
            0 | SUBSCRIBE_ID => SUBSCRIBE_ID + 1,
            next => next,
        };
        id
    }

    /// Handles one packet from the broker.
    async fn packet(
        &mut self,
        packet: Packet,
        events: &mut Vec<crate::event::Incoming>,
        ping_sent: &mut Option<Instant>,
    ) -> Result<(), LinkEnd> {
        match packet {
            Packet::Publish(publish) => {
                let decoded =
                    self.decoder
                        .decode(&publish.topic, &publish.payload, wall_ms(), events);
                match decoded {
                    Ok(()) => {
                        if !self.link.publish(events, None).await {
                            return Err(LinkEnd::HubGone);
                        }
                    }
                    Err(e) => {
                        events.clear();
                        if !bad_message(self.link, self.feed, self.bad_log, &e).await {
                            return Err(LinkEnd::HubGone);
                        }
                    }
                }
                // Acknowledged once its events are in the hub's inbox (or it
                // was counted as garbage: resending it would not help).
                if publish.qos != QoS::AtMostOnce {
                    write_packet(&mut self.out, |b| PubAck::new(publish.pkid).write(b))
                        .map_err(LinkEnd::Lost)?;
                }
            }
            Packet::PubAck(ack) => {
                if let Some(i) = self.in_flight.iter().position(|(id, _)| *id == ack.pkid) {
                    if let Some((_, pending)) = self.in_flight.remove(i)
                        && let Some(outbox) = self.outbox
                    {
                        outbox.acked(pending.key);
                    }
                }
            }
            Packet::SubAck(ack) => {
                for (topic, code) in self.feed.mqtt.topics.iter().zip(&ack.return_codes) {
                    if *code == SubscribeReasonCode::Failure {
                        log::warn!(
                            "feed {}: the broker refused the subscription to {topic:?} \
                             (check the broker's ACL)",
                            self.feed.name
                        );
                    }
                }
            }
            Packet::PingResp => *ping_sent = None,
            Packet::Disconnect => {
                return Err(LinkEnd::Lost("the broker sent DISCONNECT".into()));
            }
            // QoS 2 is never asked for; a broker that sends it anyway, or a
            // client packet, is ignored.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses() {
        assert_eq!(host_port("b", 1883), ("b:1883".into(), "b".into()));
        assert_eq!(host_port("b:1884/", 1883), ("b:1884".into(), "b".into()));
        assert_eq!(
            host_port("[::1]", 8883),
            ("[::1]:8883".into(), "::1".into())
        );
        assert_eq!(
            host_port("[::1]:99", 8883),
            ("[::1]:99".into(), "::1".into())
        );
    }

    #[test]
    fn default_client_ids_are_stable_and_clean() {
        let id = default_client_id("hq rates/1");
        assert!(id.starts_with("tablo-"), "{id}");
        assert!(id.ends_with("-hq_rates_1"), "{id}");
        assert_eq!(id, default_client_id("hq rates/1"));
    }

    #[test]
    fn refusals_name_the_fix() {
        let why = |code| match refusal(code, "k") {
            Err(LinkEnd::Refused(why)) => why,
            Err(LinkEnd::ConnectFailed(why)) => format!("failed: {why}"),
            _ => "ok".into(),
        };
        assert!(why(ConnectReturnCode::BadUserNamePassword).contains("password_file"));
        assert!(why(ConnectReturnCode::NotAuthorized).contains("ACL"));
        assert!(why(ConnectReturnCode::ServiceUnavailable).starts_with("failed"));
        assert_eq!(why(ConnectReturnCode::Success), "ok");
    }
}
