// The web board (docs/web.md §2): the `[board]` settings from the page's
// data block, live events from tablo.js, the last-known rows in
// localStorage for a reload while the kiosk is unreachable.
import { Tablo } from "/tablo.js";

const S = JSON.parse(document.getElementById("tablo-settings").textContent);
const W = S.words;
const N = S.numbers;
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

/** Rows are redrawn at most this often: ten pictures a second read as live, and a page at 100 updates/s costs a sixth of drawing every frame. */
const FRAME_MS = 100;
/** Sparkline points kept per row. */
const SPARK_POINTS = 60;
/** Seqs kept in `window.tabloSeqs` (the tests read it); older ones fall off. */
const MAX_SEQS = 10000;
/** News items the news line rotates through, and how long each shows. */
const NEWS_KEPT = 5;
const NEWS_MS = 10000;
/** How long an info or warning toast stays. */
const TOAST_MS = 8000;
/** Toasts on screen at most. */
const MAX_TOASTS = 4;
/** How often the last-known rows are saved, and the online count asked for. */
const SAVE_MS = 2000;
const STATS_MS = 15000;
const STORE_KEY = "tablo.rows:" + location.host;

const rows = new Map();
const feeds = new Map();
const news = [];
const fixed = S.rows.length > 0;
window.tabloSeqs = [];
window.tabloCount = 0;
window.tabloGaps = [];
window.tabloResets = 0;

// Numbers: decimal strings, never floats (docs/web.md §2).
const DEC = /^([+-]?)(\d+)(?:\.(\d+))?$/;
const zero = N.zero.charCodeAt(0);
const digits = (s) => s.replace(/\d/g, (d) => String.fromCharCode(zero + +d));

function localized(s) {
  const m = DEC.exec(s ?? "");
  if (!m) return digits(s ?? "");
  const int = m[2].replace(/\B(?=(\d{3})+$)/g, "\u0000").replaceAll("\u0000", N.group);
  return digits(m[1] + int + (m[3] !== undefined ? N.decimal + m[3] : ""));
}

/** `s` cut or padded to `d` decimals, as text. */
function fixed_(s, d) {
  if (d == null || !DEC.test(s ?? "")) return s;
  const [i, f = ""] = s.split(".");
  return d ? i + "." + f.slice(0, d).padEnd(d, "0") : i;
}

function parse(s) {
  const m = DEC.exec(s ?? "");
  return m && { v: BigInt(m[1] + m[2] + (m[3] ?? "")), s: (m[3] ?? "").length };
}

function align(a, b) {
  const s = Math.max(a.s, b.s);
  return [a.v * 10n ** BigInt(s - a.s), b.v * 10n ** BigInt(s - b.s), s];
}

function text({ v, s }) {
  const t = (v < 0n ? -v : v).toString().padStart(s + 1, "0");
  return (v < 0n ? "-" : v > 0n ? "+" : "") + (s ? t.slice(0, -s) + "." + t.slice(-s) : t);
}

/** price − open, and the percent change at two decimals, rounded half away from zero. */
function change(price, open) {
  const p = parse(price);
  const o = parse(open);
  if (!p || !o || o.v === 0n) return null;
  const [pv, ov, s] = align(p, o);
  const diff = pv - ov;
  const abs = (x) => (x < 0n ? -x : x);
  const q = (2n * abs(diff) * 10000n + abs(ov)) / (2n * abs(ov));
  const pct = (diff < 0n) !== (ov < 0n) && diff !== 0n ? -q : q;
  return { diff: text({ v: diff, s }), pct: text({ v: pct, s: 2 }), sign: diff > 0n ? 1 : diff < 0n ? -1 : 0 };
}

function compare(a, b) {
  const x = parse(a);
  const y = parse(b);
  if (!x || !y) return 0;
  const [xv, yv] = align(x, y);
  return xv > yv ? 1 : xv < yv ? -1 : 0;
}

function ago(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const [n, u] = s < 60 ? [s, 0] : s < 3600 ? [Math.floor(s / 60), 1] : s < 86400 ? [Math.floor(s / 3600), 2] : [Math.floor(s / 86400), 3];
  const unit = W.units[u];
  return digits(String(n)) + (unit.length > 2 ? " " : "") + unit + " " + W.ago;
}

function clock(ms) {
  const d = new Date(ms);
  return digits(String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0"));
}

// Rows.
const cells = S.columns.map((c) => c.name);
document.body.style.setProperty("--cells", String(cells.length));
const SVG = "http://www.w3.org/2000/svg";

function element(tag, cls, parent) {
  const e = tag === "svg" || tag === "polyline" ? document.createElementNS(SVG, tag) : document.createElement(tag);
  if (cls) e.setAttribute("class", cls);
  parent?.append(e);
  return e;
}

function row(symbol) {
  let r = rows.get(symbol);
  if (r) return r;
  if (fixed) return null;
  return addRow({ symbol });
}

function addRow(conf) {
  const el = element("div", "row flat", $("rows"));
  el.dataset.symbol = conf.symbol;
  const label = element("span", "label", el);
  const name = element("span", "", label);
  name.textContent = conf.label ?? conf.symbol;
  const age = element("span", "age", label);
  const r = { conf, el, age, cells: {}, spark: [], tick: null, seenAt: 0, restored: false };
  for (const c of cells) {
    if (c === "sparkline") {
      const svg = element("svg", "spark", el);
      svg.setAttribute("viewBox", "0 0 100 30");
      svg.setAttribute("preserveAspectRatio", "none");
      r.cells.sparkline = element("polyline", "", svg);
    } else {
      r.cells[c] = element("span", c, el);
    }
  }
  rows.set(conf.symbol, r);
  $("waiting").hidden = true;
  return r;
}

function applyTick(t, seenAt, restored = false) {
  const r = row(t.symbol);
  if (!r) return;
  const before = r.tick?.price;
  r.tick = t;
  r.seenAt = seenAt;
  r.restored = restored;
  if (before !== undefined && before !== t.price) r.way = compare(t.price, before);
  if (before !== t.price || r.spark.length === 0) {
    // Only the sparkline's pixel heights go through floating point.
    r.spark.push(Number(t.price));
    if (r.spark.length > SPARK_POINTS) r.spark.shift();
  }
  later(r);
}

// Rows changed since the last frame: drawn at most every FRAME_MS (and
// only in a visible frame), however many ticks came in between.
const dirty = new Set();
function later(r) {
  if (dirty.size === 0) setTimeout(() => requestAnimationFrame(flush), FRAME_MS);
  dirty.add(r);
}

window.tabloPending = () => dirty.size;

function flush() {
  for (const r of dirty) draw(r);
  dirty.clear();
}

function draw(r) {
  const t = r.tick;
  const p = r.cells.price;
  if (p && r.way) {
    // Two names for the same flash, so a new one restarts it without a
    // forced layout.
    r.flip = !r.flip;
    p.className = "price " + (r.way > 0 ? "fu" : "fd") + (r.flip ? "" : "2");
    r.way = 0;
  }
  const d = r.conf.decimals;
  const ch = t.open !== undefined ? change(t.price, t.open) : null;
  const pct = t.change_pct ?? ch?.pct;
  const sign = ch ? ch.sign : pct ? Math.sign(Number(pct)) : 0;
  r.el.classList.toggle("up", sign > 0);
  r.el.classList.toggle("down", sign < 0);
  r.el.classList.toggle("flat", !sign);
  for (const c of ["price", "bid", "ask", "volume"]) {
    if (r.cells[c]) r.cells[c].textContent = t[c] !== undefined ? localized(c === "volume" ? t[c] : fixed_(t[c], d)) : "";
  }
  if (r.cells.change) {
    r.cells.change.textContent = "";
    if (ch) r.cells.change.append(localized(fixed_(ch.diff, d)));
    if (pct !== undefined) {
      const p = element("small", "", r.cells.change);
      p.textContent = localized(pct.startsWith("-") || pct.startsWith("+") || pct === "0.00" ? pct : "+" + pct) + N.percent;
    }
  }
  const line = r.cells.sparkline;
  if (line) {
    const lo = Math.min(...r.spark);
    const hi = Math.max(...r.spark);
    const n = r.spark.length;
    line.setAttribute("points", r.spark.map((v, i) => `${n > 1 ? (i * 100) / (n - 1) : 50},${hi > lo ? 28 - ((v - lo) * 26) / (hi - lo) : 15}`).join(" "));
  }
}

/** Ages, stale marks and the clock, once a second. */
function tick() {
  const now = Date.now();
  for (const r of rows.values()) {
    if (!r.tick) continue;
    const stale = r.restored || now - r.seenAt >= S.stale_after_ms;
    r.el.classList.toggle("stale", stale);
    r.age.textContent = stale ? ago(now - r.seenAt) : "";
  }
  $("clock").textContent = clock(now);
  status();
}

// News, alerts, feeds.
function addNews(n) {
  news.unshift(n);
  news.length = Math.min(news.length, NEWS_KEPT);
  showNews(0);
}

let newsAt = 0;
function showNews(i) {
  if (!news.length) return;
  newsAt = i % news.length;
  $("news").hidden = false;
  $("headline").textContent = digits(news[newsAt].title);
}

// The band's alert, and when it leaves: at its `expires` (an [[alert]]
// rule's, counted from the alert's own `ts`, so a phone whose clock is off
// keeps it no longer than its lifetime), or when a `back` alert of the same
// rule and symbol or feed comes.
let banded = null;
let bandTimer = 0;
const about = (a) => a.rule + "\u0000" + (a.symbol || a.feed || "");
function alert(a) {
  const band = $("band");
  if (a.kind === "back" && banded && banded.rule && about(banded) === about(a)) {
    band.hidden = true;
    banded = null;
  }
  if (a.level === "critical") {
    band.textContent = a.text;
    band.hidden = false;
    banded = a;
    clearTimeout(bandTimer);
    if (typeof a.expires === "number" && typeof a.ts === "number") {
      const left = a.expires - a.ts - Math.max(0, Date.now() - a.ts);
      bandTimer = setTimeout(() => {
        if (banded === a) band.hidden = true;
      }, Math.max(0, left));
    }
    return;
  }
  const box = $("toasts");
  while (box.children.length >= MAX_TOASTS) box.firstChild.remove();
  const t = element("div", "toast " + a.level, box);
  t.textContent = a.text;
  setTimeout(() => t.remove(), TOAST_MS);
}
$("band").addEventListener("click", () => ($("band").hidden = true));

function feed(s) {
  // The kiosk's clock state is a status event too; the page shows the
  // phone's own clock, so only feeds are listed.
  if (s.feed === undefined) return;
  feeds.set(s.feed, s.state);
  const box = $("feeds");
  box.textContent = "";
  for (const [name, state] of feeds) {
    const i = element("i", state, box);
    i.textContent = name;
    i.title = state;
  }
}

// Connection and status bar.
// A closed board's token, from `#token=` (not sent with the page's own
// requests) or `?token=`.
const token = new URLSearchParams(location.hash.slice(1)).get("token") ?? params.get("token");
const tablo = new Tablo(location.href, {
  client: "browser",
  token,
  backoffMaxMs: Number(params.get("backoff_max_ms")) || undefined,
});
window.tablo = tablo;
let conn = { state: "connecting" };
let online = null;

function status() {
  document.body.dataset.conn = conn.state === "connected" ? "connected" : conn.state === "offline" ? "offline" : "connecting";
  let words = W.connecting;
  if (conn.state === "connected") words = W.connected;
  else if (conn.since) {
    words = W.offline_since + clock(conn.since);
    const left = Math.ceil(((tablo.retryAt ?? 0) - Date.now()) / 1000);
    if (!tablo.ws && left > 0) words += " · " + W.reconnecting_in + " " + digits(String(left)) + " " + W.units[0];
  }
  $("conn").textContent = words;
  $("online").textContent = online === null ? "" : digits(String(online)) + " " + (online === 1 ? W.client : W.clients);
}

tablo.on("state", (s) => {
  conn = s;
  if (s.state === "offline") saveRows(s.since);
  status();
});
tablo.on("snapshot", (snap) => {
  const now = Date.now();
  for (const e of snap.events) {
    if (e.type === "tick") applyTick(e, Math.min(now, e.ts));
    else if (e.type === "news" && !news.some((n) => n.seq === e.seq)) news.push(e);
    else if (e.type === "status") feed(e);
    else if (e.type === "alert" && e.level === "critical") alert(e);
  }
  news.sort((a, b) => b.seq - a.seq);
  news.length = Math.min(news.length, NEWS_KEPT);
  showNews(0);
  tick();
});
tablo.on("event", (e) => {
  window.tabloCount++;
  window.tabloSeqs.push(e.seq);
  if (window.tabloSeqs.length > MAX_SEQS) window.tabloSeqs.splice(0, MAX_SEQS / 10);
  if (e.type === "tick") applyTick(e, Date.now());
  else if (e.type === "news") addNews(e);
  else if (e.type === "alert") alert(e);
  else if (e.type === "status") feed(e);
});
tablo.on("gap", (g) => window.tabloGaps.push([g.from, g.to]));
tablo.on("reset", () => window.tabloResets++);
tablo.on("hello", () => askStats());

function askStats() {
  tablo.stats().then((s) => {
    online = s.connections;
    status();
  }, () => {});
}

// Last-known rows, for a reload while the kiosk is unreachable.
function saveRows(offlineSince) {
  try {
    const saved = [...rows.values()].filter((r) => r.tick).map((r) => ({ t: r.tick, at: r.seenAt, spark: r.spark }));
    localStorage.setItem(STORE_KEY, JSON.stringify({ rows: saved, offlineSince }));
  } catch {
    // No storage (private mode, full): the live board still works.
  }
}

function restoreRows() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE_KEY) ?? "null");
    for (const { t, at, spark } of saved?.rows ?? []) {
      applyTick(t, at, true);
      const r = rows.get(t.symbol);
      if (r && Array.isArray(spark)) r.spark = spark.slice(-SPARK_POINTS);
    }
    if (saved?.offlineSince) tablo.offlineSince = saved.offlineSince;
  } catch {
    // Nothing usable saved.
  }
}

// Column captions (buy / sell on an exchange office's board).
const head = element("div", "caps", $("rows"));
element("span", "", head);
for (const c of S.columns) element("span", "", head).textContent = c.caption;
for (const conf of S.rows) addRow(conf);
$("waiting").textContent = W.waiting;
$("news-label").textContent = W.news;
$("waiting").hidden = rows.size > 0;
restoreRows();
flush();
tick();
setInterval(tick, 1000);
setInterval(() => showNews(newsAt + 1), NEWS_MS);
setInterval(() => conn.state === "connected" && saveRows(null), SAVE_MS);
setInterval(() => conn.state === "connected" && askStats(), STATS_MS);
tablo.connect();

// A service worker needs a secure context (https, or localhost); on plain
// http to a LAN address the page works without it.
if ("serviceWorker" in navigator && window.isSecureContext) {
  navigator.serviceWorker.register("/sw.js").catch(() => {});
}
