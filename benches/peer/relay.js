// The peer for `cargo bench --bench broadcast` (TABLO_BENCH_PEER=node): the
// minimal relay a user would write instead of Tablo, on the `ws` package. It
// reads a Binance ticker stream, turns each message into the same tick event
// Tablo sends, serializes it once and sends it to every client subscribed to
// "prices". No journal, no conflation: a client more than 512 KiB behind is
// dropped, like Tablo's byte cap. Usage: node relay.js ws://UPSTREAM/ws
'use strict';
const WebSocket = require('ws');

const MAX_BUFFERED = 512 * 1024;
const subscribers = new Set();
let seq = 0;

const server = new WebSocket.Server({ host: '127.0.0.1', port: 0, path: '/ws', clientTracking: false });
server.on('listening', () => console.error(`listening on 127.0.0.1:${server.address().port}`));
server.on('connection', (ws) => {
  ws.send(JSON.stringify({ type: 'hello', seq, server: `node/${process.version} ws/${require('ws/package.json').version}` }));
  ws.on('message', (data) => {
    let req;
    try { req = JSON.parse(data); } catch { return; }
    if (req.op === 'subscribe' && Array.isArray(req.channels) && req.channels.includes('prices')) {
      subscribers.add(ws);
      ws.send(JSON.stringify({ type: 'subscribed', channels: req.channels, seq }));
    }
  });
  ws.on('close', () => subscribers.delete(ws));
  ws.on('error', () => subscribers.delete(ws));
});

function connect() {
  const feed = new WebSocket(process.argv[2], { perMessageDeflate: false });
  feed.on('message', (data) => {
    const t = JSON.parse(data);
    if (t.e !== '24hrTicker') return;
    const frame = Buffer.from(JSON.stringify({
      type: 'tick', seq: ++seq, channel: 'prices', symbol: t.s, price: t.c, open: t.o, change_pct: t.P,
      bid: t.b, ask: t.a, volume: t.v, ts: Date.now(), source: 'binance',
    }));
    for (const ws of subscribers) {
      if (ws.bufferedAmount > MAX_BUFFERED) ws.terminate();
      else ws.send(frame, { binary: false });
    }
  });
  feed.on('close', () => setTimeout(connect, 500));
  feed.on('error', () => {});
}
connect();
