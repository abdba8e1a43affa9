// Live updates: one Server-Sent Events stream per tab, shared by whichever pages listen.
//
// EventSource cannot send an Authorization header, so each connection starts with a short-lived,
// single-use ticket from POST /events/ticket (sent with the bearer token like any request). A used
// ticket cannot open a second connection, so EventSource's own reconnect would only fail: on an
// error this module closes the stream itself, waits (1 s, 2 s, 4 s ... at most 30 s), takes a new
// ticket and resumes after the last event it saw (`last_event_id`), which it also keeps in
// sessionStorage so a reload carries on from there. A server without the events endpoint (404 on
// the ticket) leaves the page as it was, without live updates.

import { currentUser, onAuthChange, request } from "./api.js";

const EVENTS_URL = "/api/v1/events";
const LAST_ID_KEY = "keel.last-event-id";
const MAX_DELAY_MS = 30_000;
// A page that leaves and another that arrives at once (a new list, a reload of the view) share
// the stream rather than close and reopen it.
const LINGER_MS = 5_000;
/** The event types a listener may receive. */
export const EVENT_TYPES = [
  "todo.created",
  "todo.updated",
  "todo.deleted",
  "list.updated",
  "list.deleted",
  "list.member_added",
  "list.member_updated",
  "list.member_removed",
];

const listeners = new Set();
const state = {
  source: null,
  retryTimer: null,
  lingerTimer: null,
  attempt: 0,
  // "idle" (not wanted), "connecting", "open", "retrying", "off" (no endpoint), "ended" (revoked)
  status: "idle",
  opening: false,
};

// The last event id is not a secret: only where this tab's stream was.
const session = {
  get() {
    try {
      return sessionStorage.getItem(LAST_ID_KEY);
    } catch {
      return null;
    }
  },
  set(value) {
    try {
      if (value) sessionStorage.setItem(LAST_ID_KEY, value);
      else sessionStorage.removeItem(LAST_ID_KEY);
    } catch {
      /* storage blocked: the id stays in memory only */
    }
  },
};
let lastEventId = session.get();

function setStatus(status) {
  if (state.status === status) return;
  state.status = status;
  for (const listener of listeners) listener.status?.(status);
}

function emit(kind, payload) {
  for (const listener of listeners) {
    try {
      listener[kind]?.(payload);
    } catch (error) {
      console.error(error);
    }
  }
}

function closeSource() {
  if (state.source) {
    state.source.close();
    state.source = null;
  }
}

function scheduleRetry({ immediately = false } = {}) {
  closeSource();
  clearTimeout(state.retryTimer);
  if (!listeners.size || !currentUser()) return setStatus("idle");
  const delay = immediately ? 0 : Math.min(MAX_DELAY_MS, 1000 * 2 ** state.attempt);
  state.attempt += immediately ? 0 : 1;
  setStatus("retrying");
  state.retryTimer = setTimeout(open, delay);
}

function handle(event) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return; // not ours to understand; the stream goes on
  }
  remember(event);
  emit("event", { type: event.type, data, id: event.lastEventId || null });
}

function remember(event) {
  if (event.lastEventId) {
    lastEventId = event.lastEventId;
    session.set(lastEventId);
  }
}

function handleEnd(event) {
  remember(event);
  let reason = null;
  try {
    reason = JSON.parse(event.data).reason;
  } catch {
    /* an end without a reason is treated like a dropped connection */
  }
  if (reason === "revoked") {
    // The session is over: no new ticket. A request now meets the 401 that signs this tab out.
    closeSource();
    setStatus("ended");
    request("GET", "/users/me").catch(() => {});
    return;
  }
  // "overflow": this tab fell behind and was dropped; resume at once from the last event seen.
  scheduleRetry({ immediately: reason === "overflow" });
}

function handleReset(event) {
  handle(event);
  emit("reset", null);
}

async function open() {
  if (state.opening || state.source || !listeners.size || !currentUser()) return;
  state.opening = true;
  if (state.status !== "retrying") setStatus("connecting");
  let ticket;
  try {
    ticket = await request("POST", "/events/ticket");
  } catch (error) {
    state.opening = false;
    if (error.status === 404) return setStatus("off");
    if (error.status === 401) return setStatus("idle");
    return scheduleRetry();
  }
  state.opening = false;
  if (!listeners.size || !currentUser()) return setStatus("idle");
  const query = new URLSearchParams({ ticket: ticket.ticket });
  if (lastEventId) query.set("last_event_id", lastEventId);
  const source = new EventSource(`${EVENTS_URL}?${query}`);
  state.source = source;
  source.addEventListener("open", () => {
    state.attempt = 0;
    setStatus("open");
  });
  // EventSource would retry with the used ticket: close it and start again with a new one.
  source.addEventListener("error", () => {
    if (state.source === source) scheduleRetry();
  });
  for (const type of EVENT_TYPES) source.addEventListener(type, handle);
  source.addEventListener("stream.end", handleEnd);
  source.addEventListener("stream.reset", handleReset);
}

function stop() {
  clearTimeout(state.retryTimer);
  clearTimeout(state.lingerTimer);
  closeSource();
  state.attempt = 0;
  setStatus("idle");
}

/**
 * Listen to the stream: `event({type, data, id})` for each event, `reset()` when the server could
 * not replay what was missed (reload what is shown), `status(name)` as the connection changes.
 * Opens the stream if it is not open; returns what stops listening.
 */
export function listen(listener) {
  listeners.add(listener);
  clearTimeout(state.lingerTimer);
  listener.status?.(state.status);
  if (!state.source && !state.opening && !["retrying", "off", "ended"].includes(state.status)) open();
  return () => {
    listeners.delete(listener);
    if (!listeners.size) state.lingerTimer = setTimeout(stop, LINGER_MS);
  };
}

onAuthChange((user) => {
  if (user && state.status === "ended") state.status = "idle";
  if (!user) {
    stop();
    lastEventId = null;
    session.set(null);
  }
});
