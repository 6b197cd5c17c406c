// The service worker (docs/web.md §4): keeps the page shell so a reload
// while the kiosk is unreachable still shows the board, with the last-known
// rows the page kept in localStorage. Network first, so a reachable kiosk
// always serves its current page; the cache only when the network fails or
// takes longer than NETWORK_WAIT_MS.
const CACHE = "tablo-shell-1";
const SHELL = ["/", "/board.css", "/page.js", "/tablo.js"];
const NETWORK_WAIT_MS = 3000;

self.addEventListener("install", (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (e) => {
  e.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== "GET" || url.origin !== location.origin) return;
  const path = url.pathname === "/index.html" ? "/" : url.pathname;
  if (!SHELL.includes(path)) return;
  e.respondWith(fromNetwork(e.request, path));
});

async function fromNetwork(request, path) {
  const cached = () => caches.match(path);
  try {
    const timeout = new Promise((_, reject) => setTimeout(reject, NETWORK_WAIT_MS));
    const response = await Promise.race([fetch(request), timeout]);
    if (response.ok) {
      const copy = response.clone();
      caches.open(CACHE).then((c) => c.put(path, copy));
    }
    return response;
  } catch {
    return (await cached()) ?? Response.error();
  }
}
