// The todo page without a network. Its writes go through `todoWriter`: sent at once when they
// can be, else queued in the outbox (../outbox.js) and shown at once, marked as waiting; they are
// also queued while older changes still wait, so that everything reaches Keel in the order it was
// made. A reload while offline shows the waiting changes on top of the last list seen
// (`withWaiting`). Once a replay is over the page reloads to show Keel's state, and says which
// changes Keel refused and why.

import { ApiError, currentUser } from "../api.js";
import { button, h, replace } from "../dom.js";
import { changedElsewhere } from "../forms.js";
import { LOCAL, enqueue, newKey, onChange, onReplay, pending, recount, replay, send, takeRefused, waiting } from "../outbox.js";
import { belongs, comparator } from "./todo-live.js";

/** Put `todo` among `items` where the view's sort puts it. */
export function placeIn(items, todo, sort) {
  const order = comparator(sort);
  const index = items.findIndex((item) => order(todo, item) < 0);
  items.splice(index < 0 ? items.length : index, 0, todo);
}

const isLocal = (id) => String(id).startsWith(LOCAL);
/** The todo id a queued change's path names (a number, or the local id of one still to be created). */
const idIn = (path) => {
  const last = path.split("/").pop();
  return isLocal(last) ? last : Number(last);
};

/** A todo as it shows before Keel has it: a local id, this device's clock, marked waiting. */
export function localTodo(body) {
  const now = new Date().toISOString();
  return {
    id: `${LOCAL}${newKey()}`,
    description: null,
    due_date: null,
    priority: "normal",
    labels: [],
    assignee_id: null,
    ...body,
    completed: false,
    created_at: now,
    updated_at: now,
    owner_id: currentUser()?.id ?? null,
    waiting: true,
  };
}

/**
 * `answer` (a page of todos from Keel, or the service worker's last copy of it) with the changes
 * still waiting in the outbox applied to it, each marked waiting.
 */
export async function withWaiting(answer, view) {
  let entries;
  try {
    entries = await pending();
  } catch {
    return answer; // storage blocked: nothing can be waiting
  }
  const items = [...answer.items];
  let total = answer.total;
  for (const { method, path, note } of entries) {
    if (!note || (note.listId ?? null) !== view.list) continue;
    if (note.kind === "add") {
      if (view.page === 1 && belongs(note.todo, view) && !items.some((item) => item.id === note.todo.id)) {
        placeIn(items, note.todo, view.sort);
        total += 1;
      }
      continue;
    }
    const at = items.findIndex((item) => item.id === idIn(path));
    if (at < 0) continue;
    const changed = method === "DELETE" ? null : { ...items[at], ...note.body, waiting: true };
    if (changed && belongs(changed, view)) items[at] = changed;
    else {
      items.splice(at, 1);
      total = Math.max(0, total - 1);
    }
  }
  return { ...answer, items, total };
}

/** What a queued change did, in words: "Marking “Buy milk” done". */
function describe({ body, note }) {
  if (note.kind === "tick") return `Marking “${note.title}” ${body?.completed ? "done" : "not done"}`;
  return `${{ add: "Adding", edit: "Editing", delete: "Deleting" }[note.kind] || "Changing"} “${note.title}”`;
}

function reason(error) {
  return changedElsewhere(error) ? "it was changed elsewhere meanwhile, so yours was not applied. Reload it and make your change again." : error.detail;
}

/**
 * The todo page's way to write. `page` lends `listId`, `items()` (the todos on screen, to change in
 * place), `redraw()`, `reload()`, `rows` and `focusHome()`. Returns `save(kind, todo, change)`,
 * `failures` (the element that lists the queued changes Keel refused) and `ready()`, to call once
 * the rows are drawn.
 */
export function todoWriter(ctx, page) {
  const failures = h("div", { class: "notice error sync-failures", role: "alert", hidden: true });
  let told = [];
  let sent = false;

  /**
   * Send `change` ({method, path, body, ifMatch, base, keepalive}) about `todo` (kind "add",
   * "tick", "edit" or "delete"; an add's todo is a `localTodo`), or queue it. Resolves with
   * `{answer, queued}`: Keel's answer, or the todo as it now shows (null for a delete); throws
   * the ApiError of a change Keel refused.
   */
  async function save(kind, todo, { method, path = `/todos/${todo.id}`, body, ifMatch = null, base = null, keepalive = false }) {
    const adding = kind === "add";
    // One key for the first try and every replay: a create whose answer was lost is not made twice.
    const change = { method, path, body, ifMatch, base, idempotencyKey: adding ? todo.id.slice(LOCAL.length) : undefined, localId: adding ? todo.id : null };
    if (navigator.onLine !== false && waiting() === 0 && (adding || !isLocal(todo.id))) {
      try {
        return { answer: await send({ ...change, keepalive }), queued: false };
      } catch (error) {
        if (error.status !== 0) throw error;
      }
    }
    try {
      await enqueue({ ...change, note: { kind, title: todo.title, listId: page.listId, ...(adding ? { todo } : { body }) } });
    } catch {
      throw new ApiError(0, { detail: "Keel could not be reached, and this browser cannot keep the change for later. Try again when you are back online." });
    }
    if (navigator.onLine !== false) replay().catch(() => {});
    return { answer: kind === "delete" ? null : adding ? todo : { ...todo, ...body, waiting: true }, queued: true };
  }

  // A todo created by the replay takes its local row's place at once (the reload that follows
  // would too, but the live stream may show Keel's copy first, and two rows would stand there).
  function created(localId, todo) {
    const items = page.items();
    const at = items.findIndex((item) => item.id === localId);
    if (at < 0) return;
    const hadFocus = page.rows.row(localId)?.contains(document.activeElement);
    if (items.some((item) => item.id === todo.id)) items.splice(at, 1);
    else items[at] = todo;
    page.redraw();
    if (hadFocus) page.rows.row(todo.id)?.querySelector("input, button")?.focus();
  }

  function tell(refused) {
    if (!refused.length || !ctx.active) return;
    for (const { entry, error } of refused) {
      if (entry.note) told.push(`${describe(entry)} was not saved: ${reason(error)}`);
      if (entry.method === "PATCH") page.rows.showError(idIn(entry.path), error);
    }
    const dismiss = button("Dismiss", {
      class: "small",
      onclick: () => {
        told = [];
        failures.hidden = true;
        page.focusHome();
      },
    });
    replace(failures, h("p", {}, "Some changes made offline could not be saved:"), h("ul", {}, told.map((text) => h("li", {}, text))), dismiss);
    failures.hidden = !told.length;
  }

  const stops = [
    onReplay(({ entry, result }) => {
      sent = true;
      if (entry.note?.kind === "add" && result) created(entry.localId, result);
    }),
    onChange(({ replaying }) => {
      if (replaying || !ctx.active) return;
      const refused = takeRefused();
      if (!sent && !refused.length) return;
      sent = false;
      // Keel's state now, without the waiting marks; then what it refused, where the rows are drawn.
      page
        .reload()
        .catch(() => {})
        .finally(() => tell(refused));
    }),
  ];
  ctx.onLeave(() => {
    for (const stop of stops) stop();
  });
  // Once the page's rows are drawn: what Keel refused while no todo page was open, and the count.
  const ready = () => {
    tell(takeRefused());
    recount();
  };
  return { save, failures, ready };
}
