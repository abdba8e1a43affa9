// The outbox: changes made while offline, kept in IndexedDB and sent in order when the network
// returns. The todo page (pages/todo-offline.js) queues its adds, ticks, edits and deletes here
// when the browser is offline or a request dies on the way (status 0), and while older changes
// still wait, so that they reach Keel in the order they were made.
//
// Sending a change twice must do no harm, because an answer can be lost after Keel acted on it:
// - a create carries an Idempotency-Key chosen when it was made: Keel answers a second POST with
//   the first one's result, so nothing is created twice;
// - a tick sets a field to a value (no If-Match): sending it again sets the same value;
// - an edit or a delete is conditional on the version it was made on: its ETag (`ifMatch`), or,
//   for a row drawn from a list, the version itself (`base`, checked with a GET first). A 412
//   whose todo already holds the edit's values means our own earlier try landed; a DELETE that
//   meets 404 finds what it wanted. Anything else newer is someone else's change: the edit is
//   refused rather than written over it.
// A change to a todo that is itself still waiting to be created names it by a local id
// (`/todos/local-…`); once the create is answered the later changes are rewritten to the real id.
// Each entry belongs to the person who made it and is only sent on their session.

import { ApiError, currentUser, etagOf, isNewer, isSignedIn, refresh, request } from "./api.js";

const DB = "keel-outbox";
const STORE = "changes";
/** The prefix of an id given to an item that waits here to be created. */
export const LOCAL = "local-";
// After a replay that the network (or a busy server) stopped, try again after this long, doubling
// up to the cap: the `online` event does not fire for a server that was down while the browser was online.
const RETRY_FIRST_MS = 5_000;
const RETRY_MAX_MS = 120_000;
const replayListeners = new Set();
const changeListeners = new Set();
let replaying = null;
let retryTimer = null;
let retryDelay = RETRY_FIRST_MS;
let waitingCount = 0;
// Changes Keel refused during a replay, until a page that can say so takes them (takeRefused).
const refused = [];

function open() {
  return new Promise((resolve, reject) => {
    const opening = indexedDB.open(DB, 1);
    opening.onupgradeneeded = () => opening.result.createObjectStore(STORE, { keyPath: "seq", autoIncrement: true });
    opening.onsuccess = () => resolve(opening.result);
    opening.onerror = () => reject(opening.error);
  });
}

async function transact(mode, work) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const result = work(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(result?.result);
      tx.onerror = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

/** A fresh random key; crypto.randomUUID exists only in secure contexts (https, localhost), getRandomValues everywhere. */
export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return [...crypto.getRandomValues(new Uint8Array(16))].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

const me = () => currentUser()?.id ?? null;
const isMine = (entry) => (entry.userId ?? null) === me();

/**
 * Queue a change: `{method, path, body, idempotencyKey, ifMatch, base, localId, note}`. `base` is
 * the item as the change saw it ({updated_at, version}); `localId` names what a POST creates, for
 * the changes queued after it; `note` is the page's own (what to show while it waits). Resolves
 * with the entry as stored.
 */
export async function enqueue({ method, path, body, idempotencyKey = newKey(), ifMatch = null, base = null, localId = null, note = null }) {
  const entry = { method, path, body, idempotencyKey, ifMatch, base: base && versionOf(base), localId, note, userId: me() };
  entry.seq = await transact("readwrite", (store) => store.add(entry));
  await counted();
  return entry;
}

/** The signed-in person's queued changes, oldest first. */
export async function pending() {
  return (await transact("readonly", (store) => store.getAll())).filter(isMine);
}

/** How many changes wait (as last counted). */
export function waiting() {
  return waitingCount;
}

/** Call `listener({entry, result, error})` after each replayed change: sent (`result`) or refused and dropped (`error`). */
export function onReplay(listener) {
  replayListeners.add(listener);
  return () => replayListeners.delete(listener);
}

/** The changes Keel refused since the last call ({entry, error}, oldest first), for a page to tell the person. */
export function takeRefused() {
  return refused.splice(0);
}

/** Call `listener({waiting, replaying})` when the number of waiting changes changes, or a replay ends. */
export function onChange(listener) {
  changeListeners.add(listener);
  return () => changeListeners.delete(listener);
}

/** Count the waiting changes again (after a sign-in: they are counted per person), telling the listeners. */
export function recount() {
  return counted();
}

async function counted() {
  try {
    waitingCount = (await pending()).length;
  } catch {
    waitingCount = 0; // storage blocked: nothing can wait
  }
  for (const listener of changeListeners) listener({ waiting: waitingCount, replaying: replaying !== null });
}

/** Forget the changes queued by person `userId` (they signed out: what they wrote leaves with them). */
export async function clear(userId) {
  refused.length = 0;
  await transact("readwrite", (store) => {
    const all = store.getAll();
    all.onsuccess = () => {
      for (const entry of all.result) if ((entry.userId ?? null) === userId) store.delete(entry.seq);
    };
  });
  await counted();
}

function versionOf(item) {
  return { updated_at: item.updated_at, ...(typeof item.version === "number" ? { version: item.version } : {}) };
}

/** Whether `item` already holds every value `body` sets: the change is there, whoever sent it. */
function holds(item, body) {
  return Boolean(body) && Object.entries(body).every(([name, value]) => JSON.stringify(item[name] ?? null) === JSON.stringify(value ?? null));
}

// "Changed elsewhere": the same problem Keel sends for a failed If-Match.
const changedSince = () => new ApiError(412, { code: "precondition_failed", detail: "This changed elsewhere since you opened it." });

/**
 * Send one change now, with the care a replay needs (see the header). The page sends its writes
 * through here too, so a change means the same whether it goes at once or after an hour offline.
 * Resolves with Keel's answer (null for a delete), or throws ApiError.
 */
export async function send({ method, path, body, idempotencyKey, ifMatch, base, keepalive = false }) {
  const gone = (error) => error instanceof ApiError && error.status === 404 && method === "DELETE";
  let condition = ifMatch || null;
  try {
    if (!condition && base) {
      const now = await request("GET", path);
      if (isNewer(now, base)) {
        if (method === "PATCH" && holds(now, body)) return now;
        throw changedSince();
      }
      condition = etagOf(now);
    }
    const headers = method === "POST" && idempotencyKey ? { "Idempotency-Key": idempotencyKey } : undefined;
    return await request(method, path, { body, ifMatch: condition, headers, keepalive });
  } catch (error) {
    if (gone(error)) return null;
    if (method === "PATCH" && error instanceof ApiError && error.code === "precondition_failed") {
      const now = await request("GET", path).catch(() => null);
      if (now && holds(now, body)) return now;
    }
    throw error;
  }
}

/** Whether Keel could not take a change now but may later (no network, busy, signed out for a moment). */
export function worthRetrying(error) {
  return !(error instanceof ApiError) || error.status === 0 || error.status === 401 || error.status === 408 || error.status === 429 || error.status >= 500;
}

const segments = (path) => path.split("/");
const itemPath = (entry, result) => (entry.method === "POST" ? `${entry.path.replace(/\/$/, "")}/${result.id}` : entry.path);

/**
 * After `entry` was answered with `result`: the changes queued after it that name what it created
 * get its real id, and the conditional ones on the same item move on to the version our own change
 * made (it is not "changed elsewhere"); a create refused takes the changes to its item with it.
 */
async function passOn(entry, result) {
  const later = (await pending()).filter((other) => other.seq > entry.seq);
  await transact("readwrite", (store) => {
    for (const other of later) {
      const named = entry.localId && segments(other.path).includes(entry.localId);
      if (named && !result) {
        store.delete(other.seq);
        continue;
      }
      if (named) other.path = segments(other.path).map((part) => (part === entry.localId ? String(result.id) : part)).join("/");
      if (result && other.path === itemPath(entry, result) && (other.ifMatch || other.base)) {
        other.ifMatch = etagOf(result);
        other.base = versionOf(result);
      }
      if (named || (result && other.path === itemPath(entry, result))) store.put(other);
    }
  });
}

async function replayNow() {
  // One entry at a time, read afresh: each answer may rewrite the ones after it (passOn), and a
  // change queued meanwhile goes in this replay too.
  for (let [entry] = await pending(); entry; [entry] = await pending()) {
    if (!isSignedIn()) {
      // Nobody to send them as: they wait for the person who made them to sign in again.
      if (currentUser() === null) return true;
      // An offline reload starts without a token: get one before sending anything.
      if ((await refresh()) !== "ok") return false;
    }
    let result = null;
    let error = null;
    try {
      if (segments(entry.path).some((part) => part.startsWith(LOCAL))) throw new ApiError(404, { detail: "It was never added." });
      result = await send(entry);
    } catch (caught) {
      if (worthRetrying(caught)) return false;
      error = caught;
      refused.push({ entry, error });
    }
    if (!error) retryDelay = RETRY_FIRST_MS; // the way is open again: a later stop starts waiting afresh
    await passOn(entry, error ? null : result);
    await transact("readwrite", (store) => store.delete(entry.seq));
    await counted();
    for (const listener of replayListeners) listener({ entry, result, error });
  }
  return true;
}

function withOutboxLock(task) {
  // Two tabs replaying at once would each send every change: harmless (see the header) but wasteful.
  return navigator.locks ? navigator.locks.request("keel-outbox", task) : task();
}

/**
 * Send the queued changes in order. A change the network cannot carry (or a busy Keel) stops the
 * replay and stays queued, to be tried again on `online` or after a pause; one Keel refuses (4xx)
 * is dropped and reported, since sending it again would be refused again.
 */
export function replay() {
  replaying ||= withOutboxLock(replayNow)
    .then((finished) => {
      clearTimeout(retryTimer);
      if (finished) {
        retryDelay = RETRY_FIRST_MS;
      } else if (navigator.onLine !== false && waitingCount > 0) {
        retryTimer = setTimeout(() => replay().catch(() => {}), retryDelay);
        retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
      }
    })
    .finally(() => {
      replaying = null;
      counted();
    });
  return replaying;
}

window.addEventListener("online", () => {
  retryDelay = RETRY_FIRST_MS;
  replay().catch(() => {});
});
