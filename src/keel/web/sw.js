// The service worker: the app shell from its own cache, the last data seen when offline.
//
// The server serves this file at /sw.js (so its scope is the whole site) with SHELL filled in:
// the hashed URLs of every static file, which never change content, so they are kept until a new
// shell replaces them. VERSION changes with any of them, which makes the browser install the new
// worker. Data is network first: a GET of the three reads the app starts from is copied here on
// success and answered from here only when the network fails. Nothing else is cached: no auth
// endpoint, no write, nothing with a token in its address.

const VERSION = "dev";
const SHELL = [];
const SHELL_CACHE = `keel-shell-${VERSION}`;
const DATA_CACHE = "keel-data";
const DATA_PATHS = new Set(["/api/v1/todos", "/api/v1/lists", "/api/v1/posts", "/api/v1/users/me"]);

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(SHELL_CACHE)
      .then((cache) => cache.addAll([...SHELL, "/"]))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((name) => name.startsWith("keel-shell-") && name !== SHELL_CACHE).map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    event.respondWith(shellFor(request));
  } else if (url.pathname.startsWith("/static/")) {
    event.respondWith(caches.match(request).then((cached) => cached || fetch(request)));
  } else if (DATA_PATHS.has(url.pathname) && !/token/i.test(url.search)) {
    event.respondWith(networkFirst(request));
  }
});

// A page of the app: the network's (a fresh shell, or the server's 404 page), else the cached shell.
async function shellFor(request) {
  try {
    return await fetch(request);
  } catch (error) {
    const cached = await caches.match("/", { cacheName: SHELL_CACHE });
    if (cached) return cached;
    throw error;
  }
}

async function networkFirst(request) {
  const cache = await caches.open(DATA_CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(request, response.clone());
    return response;
  } catch (error) {
    // The answer was for the Authorization it came with: whatever this request carries now
    // (none, offline, before a refresh), the last data seen is what a person wants to see.
    const cached = await cache.match(request, { ignoreVary: true });
    if (cached) return cached;
    throw error;
  }
}
