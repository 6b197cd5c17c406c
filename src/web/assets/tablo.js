// tablo.js: the browser client of a Tablo daemon (docs/web.md).
//
//   import { Tablo } from "http://kiosk:7070/tablo.js";
//   const tablo = new Tablo("http://kiosk:7070", { channels: ["prices"] });
//   tablo.on("tick", (t) => console.log(t.symbol, t.price));
//   tablo.on("state", (s) => console.log(s.state));  // connecting, connected, offline
//   tablo.connect();
//
// It reconnects with exponential backoff and full jitter, finds a dead link
// with `ping` within two ping intervals, and resumes with `since` + `epoch`,
// so across any number of drops the application sees every event once, in
// seq order; `gap` and `reset` arrive as events (a `reset` is followed by a
// `snapshot`). Publishes made while offline wait in a bounded queue (kept in
// localStorage) and go out in order after the reconnect, each with an
// idempotency key, so the server applies each exactly once.

/** First reconnect delay cap; it doubles per failed attempt. */
export const BACKOFF_MIN_MS = 500;
/** Largest reconnect delay cap (the same as the daemon's own feeds). */
export const BACKOFF_MAX_MS = 30000;
/** A connection that stayed up this long starts the backoff over. */
export const STABLE_MS = 30000;
/** How often to ping; silence for a whole interval after a ping is a dead link. */
export const PING_MS = 10000;
/** Publishes kept while offline at most: a phone left offline for a day must not fill its storage. */
export const MAX_QUEUE = 256;

const EVENT_TYPES = ["tick", "news", "alert", "status"];

/** A random idempotency key (works outside secure contexts, unlike randomUUID). */
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function storage() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}

/**
 * One connection to a Tablo daemon. Events: `hello`, `subscribed`, `event`
 * (every tick, news, alert and status, after `tick`/`news`/...), `gap`,
 * `reset`, `snapshot`, `ack`, `refreshed`, `error` (a `token_expired` one
 * asks for `refresh(token)`), `state` ({state, since, retryInMs}).
 */
export class Tablo extends EventTarget {
  /**
   * @param {string} url the daemon's http(s) or ws(s) address; default this page's
   * @param {object} options channels (["*"]), token, client ("browser"),
   *   since and epoch (resume from there), pingMs, backoffMaxMs, queueName
   */
  constructor(url = globalThis.location?.href, options = {}) {
    super();
    this.options = {
      channels: ["*"],
      client: "browser",
      token: null,
      pingMs: PING_MS,
      backoffMaxMs: BACKOFF_MAX_MS,
      queueName: "tablo.queue",
    };
    // An option given as undefined keeps its default.
    for (const [name, value] of Object.entries(options)) {
      if (value !== undefined) this.options[name] = value;
    }
    const u = new URL("/ws", url);
    u.protocol = u.protocol.replace(/^http/, "ws");
    if (this.options.token) u.searchParams.set("token", this.options.token);
    u.searchParams.set("client", this.options.client);
    this.url = u.href;
    this.seq = options.since ?? null;
    this.epoch = options.epoch ?? null;
    this.state = "idle";
    this.ws = null;
    this.attempt = 0;
    this.offlineSince = null;
    this.nextId = 1;
    this.requests = new Map();
    this.waiting = new Map();
    this.queueKey = this.options.queueName + ":" + this.url;
    this.queue = this.loadQueue();
    this.closed = true;
    this.wake = () => this.wakeUp();
  }

  /** Calls `fn(detail)` on every `type` event; returns this. */
  on(type, fn) {
    this.addEventListener(type, (e) => fn(e.detail));
    return this;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Connects, and keeps reconnecting until `close()`. */
  connect() {
    if (!this.closed) return this;
    this.closed = false;
    globalThis.addEventListener?.("online", this.wake);
    globalThis.document?.addEventListener("visibilitychange", this.wake);
    this.open();
    return this;
  }

  /** Closes for good: no reconnect. Queued publishes stay stored. */
  close() {
    this.closed = true;
    globalThis.removeEventListener?.("online", this.wake);
    globalThis.document?.removeEventListener("visibilitychange", this.wake);
    clearTimeout(this.retry);
    clearInterval(this.pinger);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
    this.setState("closed");
  }

  /** Subscribes to more channels (they are resubscribed after a reconnect). */
  subscribe(channels) {
    this.options.channels = [...new Set([...this.options.channels, ...channels])];
    if (this.state === "connected") this.send({ op: "subscribe", channels });
  }

  /** The latest state (ticks per symbol, news, alerts, feeds): resolves with the reply. */
  snapshot(channels = this.options.channels) {
    return this.request({ op: "snapshot", channels });
  }

  /** The daemon's stats. */
  stats() {
    return this.request({ op: "stats" });
  }

  /**
   * Publishes `data` on `channel` (needs a token with publish rights);
   * resolves with the event's seq once it is durable. Offline, it waits in
   * the queue. The same `key` is never applied twice.
   */
  publish(channel, data, { key = newKey() } = {}) {
    if (this.queue.length >= MAX_QUEUE) {
      return Promise.reject(new Error(`publish queue full (${MAX_QUEUE})`));
    }
    const item = { channel, data, key };
    this.queue.push(item);
    this.saveQueue();
    const done = new Promise((resolve, reject) => this.waiting.set(key, { resolve, reject }));
    if (this.state === "connected") this.sendPublish(item);
    return done;
  }

  /**
   * Presents a new token: after a `token_expired` error (a JWT ran out while
   * connected), or before it. Later connections use it too.
   */
  refresh(token) {
    this.options.token = token;
    const u = new URL(this.url);
    u.searchParams.set("token", token);
    this.url = u.href;
    if (this.state === "connected") this.send({ op: "refresh", token });
  }

  /** Publishes still waiting for their ack, oldest first. */
  get queued() {
    return this.queue.slice();
  }

  open() {
    clearTimeout(this.retry);
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this.emit("error", { code: "connect", message: String(e) });
      return this.dropped(null);
    }
    this.ws = ws;
    this.setState(this.offlineSince ? "offline" : "connecting", { retryInMs: 0 });
    ws.onmessage = (e) => this.receive(ws, e.data);
    ws.onclose = () => this.dropped(ws);
  }

  dropped(ws) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearInterval(this.pinger);
    for (const [, { reject }] of this.requests) reject(new Error("disconnected"));
    this.requests.clear();
    if (this.closed) return;
    if (this.openedAt !== undefined && performance.now() - this.openedAt >= STABLE_MS) {
      this.attempt = 0;
    }
    this.openedAt = undefined;
    // Full jitter: anywhere from 0 to the cap, so a room of phones that lost
    // the kiosk together does not come back together.
    const cap = Math.min(this.options.backoffMaxMs, BACKOFF_MIN_MS * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    const delay = Math.random() * cap;
    this.offlineSince ??= Date.now();
    this.retryAt = Date.now() + delay;
    this.setState("offline", { retryInMs: delay });
    this.retry = setTimeout(() => this.open(), delay);
  }

  /** Back online or back in view: check the link now instead of waiting. */
  wakeUp() {
    if (this.closed || globalThis.document?.visibilityState === "hidden") return;
    if (!this.ws && this.state === "offline") return this.open();
    if (this.state === "connected") this.startPing(true);
  }

  setState(state, extra = {}) {
    this.state = state;
    this.emit("state", { state, since: this.offlineSince, ...extra });
  }

  send(message) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  request(message) {
    if (this.state !== "connected") return Promise.reject(new Error("not connected"));
    const id = "r" + this.nextId++;
    this.send({ ...message, id });
    return new Promise((resolve, reject) => this.requests.set(id, { resolve, reject }));
  }

  sendPublish({ channel, data, key }) {
    this.send({ op: "publish", channel, data, key, id: "k:" + key });
  }

  /** Pings every interval; a whole interval with nothing heard is a dead link. */
  startPing(now = false) {
    clearInterval(this.pinger);
    const ws = this.ws;
    this.heard = !now;
    const beat = () => {
      if (!this.heard) {
        // A frozen socket may take minutes to report its close: drop it now.
        ws.onclose = null;
        ws.close();
        return this.dropped(ws);
      }
      this.heard = false;
      this.send({ op: "ping", id: "ping" });
    };
    if (now) this.send({ op: "ping", id: "ping" });
    this.pinger = setInterval(beat, this.options.pingMs);
  }

  receive(ws, text) {
    if (ws !== this.ws) return;
    this.heard = true;
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      return;
    }
    const reply = m.id !== undefined && this.requests.get(m.id);
    if (reply) {
      this.requests.delete(m.id);
      if (m.type === "error") reply.reject(Object.assign(new Error(m.message), m));
      else reply.resolve(m);
      if (m.type !== "snapshot") return;
    }
    switch (m.type) {
      case "hello":
        return this.hello(m);
      case "subscribed":
        // Without `since`, live events start after the seq the reply names.
        if (this.seq === null) this.seq = m.seq;
        return this.emit("subscribed", m);
      case "reset":
        // The journal was wiped or the resume point trimmed: a snapshot
        // follows, and seqs go on from its seq.
        this.seq = null;
        return this.emit("reset", m);
      case "snapshot":
        // Every event of ours up to its seq came before it.
        this.seq = Math.max(this.seq ?? 0, m.seq);
        return this.emit("snapshot", m);
      case "gap":
        this.seq = Math.max(this.seq ?? 0, m.to);
        return this.emit("gap", m);
      case "ack":
        return this.acked(m);
      case "error":
        return this.failed(m);
      case "pong":
        return;
      case "refreshed":
        return this.emit("refreshed", m);
      default:
        if (EVENT_TYPES.includes(m.type)) return this.event(m);
    }
  }

  hello(m) {
    this.openedAt = performance.now();
    this.offlineSince = null;
    const resume = this.seq !== null && this.epoch !== null;
    const sub = { op: "subscribe", channels: this.options.channels };
    if (resume) Object.assign(sub, { since: this.seq, epoch: this.epoch });
    this.epoch = m.epoch;
    this.send(sub);
    // Subscribed first, then the snapshot: events between the two replies
    // are live and come before the snapshot, which already holds them.
    if (!resume) this.send({ op: "snapshot", channels: this.options.channels });
    this.setState("connected");
    this.emit("hello", m);
    for (const item of this.queue) this.sendPublish(item);
    this.startPing();
  }

  event(m) {
    // A resume may overlap what was already seen; each seq counts once.
    if (this.seq !== null && m.seq <= this.seq) return;
    this.seq = m.seq;
    this.emit(m.type, m);
    this.emit("event", m);
  }

  acked(m) {
    const key = typeof m.id === "string" && m.id.startsWith("k:") ? m.id.slice(2) : null;
    if (key !== null) this.settle(key, (w) => w.resolve(m.seq));
    this.emit("ack", m);
  }

  failed(m) {
    const key = typeof m.id === "string" && m.id.startsWith("k:") ? m.id.slice(2) : null;
    // Rate limited: it stays queued and goes out again after the next reconnect.
    if (key !== null && m.code !== "rate_limited") {
      this.settle(key, (w) => w.reject(Object.assign(new Error(m.message), m)));
    }
    this.emit("error", m);
  }

  settle(key, how) {
    const before = this.queue.length;
    this.queue = this.queue.filter((item) => item.key !== key);
    if (this.queue.length !== before) this.saveQueue();
    const w = this.waiting.get(key);
    this.waiting.delete(key);
    if (w) how(w);
  }

  loadQueue() {
    try {
      const q = JSON.parse(storage()?.getItem(this.queueKey) ?? "[]");
      return Array.isArray(q) ? q.slice(0, MAX_QUEUE) : [];
    } catch {
      return [];
    }
  }

  saveQueue() {
    try {
      const s = storage();
      if (this.queue.length) s?.setItem(this.queueKey, JSON.stringify(this.queue));
      else s?.removeItem(this.queueKey);
    } catch {
      // Storage full or forbidden: the queue still lives in memory.
    }
  }
}
