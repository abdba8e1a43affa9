// The API client: one place that talks HTTP, holds the access token (in memory only) and
// refreshes it. The refresh token never reaches JavaScript: the server keeps it in an
// HttpOnly cookie scoped to /api/v1/auth, and every cookie request carries WEB_CLIENT.

const API = "/api/v1";
const WEB_CLIENT = { "X-Keel-Client": "web" };
// Not a token: only a hint that a refresh cookie may exist, so that a visitor who never
// signed in does not start every page with a refresh that must fail.
const SIGNED_IN_HINT = "keel.signed-in";
// Refresh a little before the access token expires rather than after a 401.
const EARLY_REFRESH_MS = 30_000;

export class ApiError extends Error {
  constructor(status, problem, { retryAfter = null } = {}) {
    const detail = (problem && problem.detail) || (problem && problem.title) || `Request failed (${status}).`;
    super(detail);
    this.status = status;
    this.code = (problem && problem.code) || null;
    this.detail = detail;
    this.errors = (problem && Array.isArray(problem.errors) && problem.errors) || [];
    // The whole problem document: some carry members of their own (mfa_required's `mfa_token`).
    this.problem = problem && typeof problem === "object" ? problem : {};
    // Seconds to wait before trying again (a 429's Retry-After), when the server said.
    this.retryAfter = retryAfter;
  }

  /** Validation errors ({loc, msg, type, ctx?}) keyed by the input field they belong to ("" for the form as a whole). */
  fieldErrors() {
    const byField = {};
    for (const error of this.errors) {
      const loc = Array.isArray(error.loc) ? error.loc : [];
      const name = loc.length > 1 && ["body", "query", "path"].includes(loc[0]) ? String(loc[1]) : "";
      (byField[name] ||= []).push(error);
    }
    return byField;
  }
}

const state = { token: null, expiresAt: 0, user: null };
// The ETag each single item came with, keyed by the object its answer became: an edit sends it
// back as If-Match, so it changes only the version on screen. A list's items have none.
const etags = new WeakMap();

/** The ETag `item` was answered with (a GET, create or PATCH of that one item), else null. */
export function etagOf(item) {
  return etags.get(item) || null;
}

/** Whether `next` is a newer version of an item than `shown` (its version, else its updated_at). */
export function isNewer(next, shown) {
  if (typeof next.version === "number" && typeof shown.version === "number") return next.version > shown.version;
  return Date.parse(next.updated_at) > Date.parse(shown.updated_at);
}
const listeners = new Set();
let refreshing = null;

/** Call `listener(user, reason)` whenever the signed-in user changes. */
export function onAuthChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function notify(reason) {
  for (const listener of listeners) listener(state.user, reason);
}

export function currentUser() {
  return state.user;
}

export function isSignedIn() {
  return state.token !== null;
}

// Web storage holds only these two flags, never a token; a browser that blocks storage
// still works, it just forgets the hint.
const storage = {
  get(key) {
    try {
      return localStorage.getItem(key);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(key, value);
    } catch {
      /* storage blocked: nothing to keep */
    }
  },
  remove(key) {
    try {
      localStorage.removeItem(key);
    } catch {
      /* storage blocked: nothing to remove */
    }
  },
};

function accept(pair) {
  state.token = pair.access_token;
  state.expiresAt = Date.now() + pair.expires_in * 1000;
  storage.set(SIGNED_IN_HINT, "1");
}

function forget(reason) {
  const wasSignedIn = state.token !== null || state.user !== null;
  state.token = null;
  state.expiresAt = 0;
  state.user = null;
  storage.set(SIGNED_OUT_REASON, reason);
  storage.remove(SIGNED_IN_HINT);
  forgetOfflineData();
  if (wasSignedIn) notify(reason);
}

// The service worker keeps the last data seen for offline use: it belongs to the person who
// saw it, so it goes when they sign out or their session ends.
function forgetOfflineData() {
  if (globalThis.caches) caches.delete("keel-data").catch(() => {});
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const TAB = Math.random().toString(36).slice(2);

// Without Web Locks (they exist only in secure contexts: https, or localhost), tabs take turns
// through a lease kept in IndexedDB. A readwrite transaction runs alone across every tab of the
// origin, so reading the lease and claiming it in one transaction is an atomic test-and-set;
// localStorage offers no such thing (another tab's process sees a write a little later, and
// under load two tabs each read back their own claim). The lease expires, so a tab closed while
// holding it blocks the others for seconds, not for good.
const LEASE_DB = "keel-refresh-lease";
const LEASE_STORE = "lease";
const LEASE_MS = 10_000;

function openLeases() {
  return new Promise((resolve, reject) => {
    const opening = indexedDB.open(LEASE_DB, 1);
    opening.onupgradeneeded = () => opening.result.createObjectStore(LEASE_STORE);
    opening.onsuccess = () => resolve(opening.result);
    opening.onerror = () => reject(opening.error);
  });
}

/** In one transaction, take the lease if it is free or expired (`take`), or give it back if it is ours. Resolves whether this tab holds it. */
function lease(db, take) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(LEASE_STORE, "readwrite");
    const store = tx.objectStore(LEASE_STORE);
    let ours = false;
    const reading = store.get("refresh");
    reading.onsuccess = () => {
      const held = reading.result;
      const mine = held && held.owner === TAB;
      if (!take) {
        if (mine) store.delete("refresh");
      } else if (!held || mine || held.until < Date.now()) {
        store.put({ owner: TAB, until: Date.now() + LEASE_MS }, "refresh");
        ours = true;
      }
    };
    tx.oncomplete = () => resolve(ours);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

async function withLease(task) {
  let db;
  try {
    db = await openLeases();
  } catch {
    return task(); // no IndexedDB either (a locked-down private window): nothing to take turns through
  }
  try {
    // Give up waiting after two lease lifetimes: by then the holder is gone or stuck.
    for (const deadline = Date.now() + 2 * LEASE_MS; Date.now() < deadline; ) {
      if (await lease(db, true).catch(() => true)) break;
      await sleep(20 + Math.random() * 30);
    }
    try {
      return await task();
    } finally {
      await lease(db, false).catch(() => {});
    }
  } finally {
    db.close();
  }
}

function withRefreshLock(task) {
  // Two refreshes of one token count as reuse and end the session, so only one runs at a
  // time, across every tab of this origin.
  if (navigator.locks) return navigator.locks.request("keel-refresh", task);
  return withLease(task);
}

/**
 * Exchange the refresh cookie for a new access token. Concurrent callers share one request.
 * Resolves "ok" (signed in), "ended" (the session is over: signed out here too) or "failed"
 * (Keel could not answer: nothing is forgotten, a later try may work).
 */
export function refresh() {
  refreshing ||= withRefreshLock(async () => {
    let response;
    try {
      response = await fetch(`${API}/auth/refresh`, { method: "POST", headers: WEB_CLIENT });
    } catch {
      return "failed";
    }
    if (response.status === 401) {
      forget("expired");
      return "ended";
    }
    if (response.status === 403) {
      const problem = await response.json().catch(() => null);
      if (problem && problem.code === "inactive_user") {
        forget("deactivated");
        return "ended";
      }
    }
    if (!response.ok) return "failed";
    accept(await response.json());
    return "ok";
  }).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

const UNREACHABLE = "Keel could not be reached. Check your connection and try again.";

/**
 * Send one API request. `body` is sent as JSON, `form` as an HTML form; `query` values that
 * are empty are left out; `ifMatch` (an ETag) makes a change conditional on that version;
 * `keepalive` lets the request outlive the page (one sent as the tab closes).
 * Resolves with the parsed body (null for 204) or throws ApiError.
 */
/**
 * Reads started before their page asked for them: on load, a signed-in page's data is asked for as
 * soon as the refresh has given a token, beside /users/me instead of after it (see `resume`). The
 * page's own GET of the same address takes the answer once; an answer unclaimed for a few seconds,
 * or left when anything is written, is dropped, so a page never reads a stale one.
 */
const early = new Map();
const EARLY_KEEP_MS = 5000;

function startEarly(reads) {
  for (const [path, query] of reads) {
    const address = path + queryString(query);
    if (early.has(address)) continue;
    const answer = request("GET", path, { query });
    answer.catch(() => {}); // the page that claims it sees the failure, and asks again
    early.set(address, { answer, until: Date.now() + EARLY_KEEP_MS });
  }
}

function claimEarly(method, path, query) {
  if (early.size === 0) return null;
  if (method !== "GET") {
    early.clear();
    return null;
  }
  const address = path + queryString(query);
  const started = early.get(address);
  early.delete(address);
  return started && Date.now() < started.until ? started.answer : null;
}

export async function request(method, path, { body, form, query, ifMatch, headers: extra, retry = true, keepalive = false } = {}) {
  const started = extra || ifMatch ? null : claimEarly(method, path, query);
  if (started) {
    try {
      return await started;
    } catch {
      // Asked again below: the page handles this answer's failure as its own.
    }
  }
  if (state.token && Date.now() > state.expiresAt - EARLY_REFRESH_MS) await refresh();
  const headers = { Accept: "application/json", ...WEB_CLIENT, ...extra };
  const sentToken = state.token;
  if (sentToken) headers.Authorization = `Bearer ${sentToken}`;
  if (ifMatch) headers["If-Match"] = ifMatch;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  } else if (form !== undefined) {
    payload = new URLSearchParams(form);
  }
  let response;
  try {
    response = await fetch(API + path + queryString(query), { method, headers, body: payload, keepalive });
  } catch {
    throw new ApiError(0, { detail: UNREACHABLE });
  }
  if (response.status === 401 && sentToken && retry) {
    // The access token expired or its session ended: refresh once, then try again.
    const outcome = await refresh();
    if (outcome === "ok") return request(method, path, { body, form, query, ifMatch, headers: extra, retry: false });
    if (outcome === "failed") throw new ApiError(503, { detail: "Your session could not be renewed just now. Please try again." });
  }
  const data = await parse(response);
  if (response.status === 401 && sentToken) forget("expired");
  if (!response.ok) throw new ApiError(response.status, data, { retryAfter: retryAfter(response) });
  const etag = response.headers.get("ETag");
  if (etag && data && typeof data === "object") etags.set(data, etag);
  return data;
}

function retryAfter(response) {
  const seconds = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return Number.isFinite(seconds) && seconds > 0 ? seconds : null;
}

function queryString(query) {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

async function parse(response) {
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) return response.json().catch(() => null);
  return null;
}

async function loadUser(reason) {
  state.user = await request("GET", "/users/me");
  notify(reason);
  return state.user;
}

/**
 * On page load: resume the session held by the refresh cookie, if there is one. Offline, the
 * user the service worker last saw stands in (read-only: a request still needs a token, and the
 * next refresh, once online, decides whether the session lives). `reads` gives the page's first
 * GETs as [path, query] pairs: they start once the refresh succeeds (see `startEarly`).
 */
export async function resume({ reads = () => [] } = {}) {
  if (!storage.get(SIGNED_IN_HINT)) return null;
  const outcome = await refresh();
  // The page's first data goes out now, beside /users/me rather than after it: one round trip less.
  if (outcome === "ok") startEarly(reads());
  if (outcome === "failed" && navigator.onLine === false) {
    try {
      return await loadUser("offline");
    } catch {
      return null;
    }
  }
  if (outcome !== "ok") return null;
  try {
    return await loadUser("resumed");
  } catch {
    return null;
  }
}

/**
 * Sign in with a password. An account with a second factor answers 403 `mfa_required`
 * (an ApiError whose `problem` holds `mfa_token`, `methods` and `expires_in`): finish with `signInWith`.
 */
export async function signIn(email, password) {
  accept(await request("POST", "/auth/login", { form: { username: email, password } }));
  return loadUser("signed-in");
}

/** Sign in through another endpoint that answers a token pair (/auth/mfa/verify, a passkey). */
export async function signInWith(path, body) {
  const answer = await request("POST", path, { body });
  accept(answer);
  await loadUser("signed-in");
  return answer;
}

/**
 * About to leave for another provider's sign-in page: if it signs in, the server sets the refresh
 * cookie and sends the browser back here, and the app should look for it on load.
 */
export function expectSession() {
  storage.set(SIGNED_IN_HINT, "1");
}

/** Reload the signed-in user after a change to their profile. */
export function reloadUser() {
  return loadUser("updated");
}

/** Forget a session that the server already ended (account deleted, password reset). */
export function endSession() {
  forget("signed-out");
}

export async function signOut({ everywhere = false } = {}) {
  try {
    await request("POST", everywhere ? "/auth/logout-all" : "/auth/logout");
  } catch (error) {
    // A session that already ended is the outcome we wanted; anything else and the session
    // may still be live, so this browser stays signed in and says so.
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
  }
  forget("signed-out");
}

// Another tab signed out: follow it, and say where it happened. A tab whose session ended
// (expired, revoked, deactivated) writes why first, so the others can say the same.
const SIGNED_OUT_REASON = "keel.signed-out-reason";
const REASONS = new Set(["expired", "deactivated"]);

window.addEventListener("storage", (event) => {
  if (event.key === SIGNED_IN_HINT && event.newValue === null && state.token) {
    const why = storage.get(SIGNED_OUT_REASON);
    state.token = null;
    state.expiresAt = 0;
    state.user = null;
    notify(REASONS.has(why) ? why : "signed-out-elsewhere");
  }
});
