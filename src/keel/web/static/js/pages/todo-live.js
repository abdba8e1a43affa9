// What the todo page does with live events: a todo created or changed elsewhere is put where the
// page's list, filters, sort and page would show it (or taken out when it no longer belongs), a
// deleted one disappears, a renamed list is renamed in place; membership changes refresh the
// switcher and the members, and someone removed from the list they are reading is taken back to
// their inbox and told why. A change this tab made itself arrives too: it is already on screen
// (same version), so it is left alone.

import { currentUser } from "../api.js";
import { PAGE_SIZE } from "../list.js";
import { listen } from "../live.js";
import { dueIn, isNewer } from "./todo-rows.js";

const RANK = { low: 0, normal: 1, high: 2 };

function byKey(key, a, b, descending) {
  const order = key(a) - key(b) || a.id - b.id;
  return descending ? -order : order;
}

/** The order the API sorts by (services/todo.py `_ORDER`), as a comparison of two todos. */
export function comparator(sort) {
  const descending = sort.startsWith("-");
  const field = sort.replace(/^-/, "");
  if (field === "due_date") {
    // Undated todos go last either way.
    return (a, b) => (a.due_date === null) - (b.due_date === null) || byKey((t) => Date.parse(t.due_date), a, b, descending);
  }
  if (field === "priority") return (a, b) => byKey((t) => RANK[t.priority], a, b, descending);
  return (a, b) => byKey((t) => Date.parse(t.created_at), a, b, descending);
}

/** Whether `todo` belongs in the page's view: its list, and every filter the view has. */
export function belongs(todo, view) {
  const me = currentUser();
  if ((todo.list_id ?? null) !== view.list) return false;
  if (view.list === null && todo.owner_id !== me?.id) return false;
  if (view.filter !== "all" && todo.completed !== (view.filter === "done")) return false;
  if (view.due !== "all" && !dueIn(todo, view.due)) return false;
  if (view.label && !(todo.labels || []).includes(view.label)) return false;
  if (view.mine && todo.assignee_id !== me?.id) return false;
  const q = view.q.trim().toLowerCase();
  return !q || `${todo.title}\n${todo.description || ""}`.toLowerCase().includes(q);
}

/**
 * Follow the stream while the todo page is open. `page` is what the page lends: its `view`,
 * `scope`, `rows`, `page()` (the items and total shown), `redraw()`, `reload()`, `reloadLists()`,
 * `reloadMembers()`, `listName()`, `renameList(list)`, the `status` and `announcer` elements.
 */
export function followLive(ctx, page) {
  if (!ctx.active) return; // the reader moved on while the page loaded
  const { view } = page;
  const quietly = (promise) => Promise.resolve(promise).catch(() => {});
  const actorName = (data) => {
    if (data.actor_id === currentUser()?.id) return null;
    const member = page.scope.members.find((m) => m.user.id === data.actor_id);
    return member ? member.user.username : "Someone";
  };
  const announce = (text) => {
    page.announcer.textContent = text;
  };
  const leave = (notice) => ctx.navigate("/todos", { state: { notice } });

  function upsert(todo, data) {
    // Deleted here with its Undo still offered, or changed here with the answer on its way: this
    // page's own change settles the row, so the stream does not move it meanwhile.
    if (page.scope.hidden?.has(todo.id) || page.rows.row(todo.id)?.dataset.busy) return;
    const shown = page.page();
    const at = shown.items.findIndex((item) => item.id === todo.id);
    if (at >= 0 && !isNewer(todo, page.rows.todo(todo.id) || shown.items[at])) return; // already on screen
    if (at >= 0) shown.items.splice(at, 1);
    if (belongs(todo, view)) {
      const order = comparator(view.sort);
      let index = shown.items.findIndex((item) => order(todo, item) < 0);
      if (index < 0) index = shown.items.length;
      // On a later page, a todo that sorts before this page's first belongs to an earlier one.
      const fits = at >= 0 || !(view.page > 1 && index === 0) || !shown.items.length;
      if (fits) shown.items.splice(index, 0, todo);
      if (at < 0) shown.total += 1;
      if (shown.items.length > PAGE_SIZE) shown.items.pop();
      page.redraw();
      if (fits) page.rows.flash(todo.id);
      const who = actorName(data);
      if (who) announce(`${who} ${at >= 0 ? "changed" : "added"} “${todo.title}”.`);
    } else if (at >= 0) {
      shown.total = Math.max(0, shown.total - 1);
      page.redraw();
    }
  }

  function remove(todoId, data) {
    const shown = page.page();
    const at = shown.items.findIndex((item) => item.id === todoId);
    if (at < 0) return;
    const [gone] = shown.items.splice(at, 1);
    shown.total = Math.max(0, shown.total - 1);
    page.redraw();
    const who = actorName(data);
    if (who) announce(`${who} deleted “${gone.title}”.`);
  }

  function membership(type, data) {
    const me = currentUser();
    const here = data.list_id === view.list;
    const aboutMe =
      (type === "list.member_removed" && data.user_id === me?.id) ||
      (type !== "list.member_removed" && data.member?.user?.id === me?.id);
    if (aboutMe && here && type === "list.member_removed") {
      if (data.actor_id !== me?.id) leave(`You were removed from “${page.listName()}”.`);
      return;
    }
    if (aboutMe && here && type === "list.member_updated") {
      // A new role changes what this page offers: draw it again.
      const role = data.member.role;
      ctx.navigate(location.pathname + location.search, { replace: true, state: { notice: `Your role in “${page.listName()}” is now ${role}.` } });
      return;
    }
    quietly(here ? page.reloadMembers() : page.reloadLists());
  }

  const stop = listen({
    status(name) {
      page.status.textContent = name === "retrying" ? "Reconnecting…" : "";
    },
    reset() {
      quietly(page.reload());
      quietly(page.reloadLists());
      if (view.list !== null) quietly(page.reloadMembers());
    },
    event({ type, data }) {
      if (!ctx.active || !data) return;
      if (type === "todo.created" || type === "todo.updated") {
        if (data.todo) upsert(data.todo, data);
      } else if (type === "todo.deleted") {
        remove(data.todo_id, data);
      } else if (type === "list.updated") {
        if (data.list) page.renameList(data.list);
      } else if (type === "list.deleted") {
        if (data.list_id === view.list) {
          if (data.actor_id !== currentUser()?.id) leave(`The list “${page.listName()}” was deleted.`);
        } else {
          quietly(page.reloadLists());
        }
      } else if (type.startsWith("list.member_")) {
        membership(type, data);
      }
    },
  });
  ctx.onLeave(stop);
}
