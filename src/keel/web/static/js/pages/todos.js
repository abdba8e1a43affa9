// The todo page: the private inbox or a shared list, chosen in the switcher beside it; add, tick,
// edit in place, delete with Undo, filter (by state, due date, label, assignee), search, sort and
// page; and, while it is open, other people's changes arriving live (see todo-live.js). Ticks and
// edits show at once and are put back when the API refuses them. Select mode acts on many todos
// at once (todo-select.js); offline, changes wait in the outbox (todo-offline.js).

import { currentUser, etagOf, request } from "../api.js";
import { button, h, placeToast, replace, toast } from "../dom.js";
import { choiceFrom, drawPager, liveList, pageCount, pageFrom, pageQuery, pager, withQuery } from "../list.js";
import { listAddress, listHeading, listSwitcher } from "./list-switcher.js";
import { openMembers } from "./members.js";
import { DUE_VIEWS, FILTERS, SORTS, addTodoForm, toolbar } from "./todo-forms.js";
import { belongs, followLive } from "./todo-live.js";
import { placeIn, todoWriter, withWaiting } from "./todo-offline.js";
import { dueIn, todoRows } from "./todo-rows.js";
import { selectMode } from "./todo-select.js";

const DUE_VIEW_LIMIT = 100;
/** How long a deleted todo can be brought back before its DELETE is sent. */
const UNDO_MS = 5000;

function listFrom(query) {
  const id = Number.parseInt(query.get("list") || "", 10);
  return Number.isInteger(id) && id > 0 && id < 2 ** 31 ? id : null;
}

/** Read the page's settings from the address, so reload and back keep them. */
function readView(query) {
  return {
    list: listFrom(query),
    filter: choiceFrom(query, "filter", FILTERS),
    due: choiceFrom(query, "due", DUE_VIEWS),
    q: query.get("q") || "",
    sort: choiceFrom(query, "sort", SORTS),
    label: query.get("label") || "",
    mine: query.get("assigned") === "me",
    page: pageFrom(query),
  };
}

function address(view) {
  const { mine, ...rest } = view;
  return withQuery("/todos", { ...rest, assigned: mine ? "me" : null }, { filter: FILTERS[0][0], due: DUE_VIEWS[0][0], sort: SORTS[0][0], page: 1 });
}

/** The query of a view's page of todos ("assigned to me" needs the signed-in user's id). */
function todosQuery(view, userId) {
  const dated = view.due !== "all";
  const completed = view.due === "overdue" ? false : view.filter === "all" ? null : view.filter === "done";
  return {
    list_id: view.list,
    completed,
    q: view.q.trim(),
    sort: view.sort,
    label: view.label,
    assignee_id: view.mine ? userId : null,
    ...(dated ? { limit: DUE_VIEW_LIMIT, offset: 0 } : pageQuery(view.page)),
  };
}

/** The page's first reads, for an early start: the lists, the list on screen, its todos. */
export function firstReads(_params, query) {
  const view = readView(query);
  const reads = [["/lists", { limit: 100 }]];
  if (view.list !== null) reads.push([`/lists/${view.list}`], [`/lists/${view.list}/members`]);
  // Whose todos "assigned to me" are is known only once /users/me has answered.
  if (!view.mine) reads.push(["/todos", todosQuery(view, null)]);
  return reads;
}

async function fetchTodos(view) {
  const dated = view.due !== "all";
  const answer = await request("GET", "/todos", { query: todosQuery(view, currentUser()?.id) });
  if (!dated) return answer;
  const items = answer.items.filter((todo) => dueIn(todo, view.due));
  return { ...answer, items, total: items.length, dated: true };
}

function summaryText(total, view) {
  return `${total} ${total === 1 ? "todo" : "todos"}${view.q ? ` matching “${view.q.trim()}”` : ""}`;
}

function filtered(view) {
  return Boolean(view.q || view.filter !== "all" || view.due !== "all" || view.label || view.mine);
}

export async function list(container, ctx) {
  ctx.title("Todos");
  const initial = readView(ctx.query);
  // The list on screen, with the caller's role in it (404 for a list they are not a member of).
  const [lists, current] = await Promise.all([
    request("GET", "/lists", { query: { limit: 100 } }),
    initial.list === null ? null : request("GET", `/lists/${initial.list}`),
  ]);
  const scope = {
    listId: initial.list,
    canWrite: current === null || current.role !== "viewer",
    members: current === null ? [] : await request("GET", `/lists/${initial.list}/members`),
    activeLabel: initial.label,
    filterLabel: (label) => todos.show({ label: todos.view.label === label ? "" : label }),
    reload: (options) => todos.load(options),
  };
  const rows = todoRows(scope);
  const summary = h("p", { class: "muted", role: "status", tabindex: -1 });
  const nav = pager();
  let page = { items: [], total: 0 };
  const todos = liveList(ctx, initial, {
    // Keel's page (or, offline, the service worker's last copy) with this device's waiting changes on it.
    fetch: async (view) => withWaiting(await fetchTodos(view), view),
    /**
     * `focusId` puts focus back on that todo's checkbox, or, when it is gone, on the list's
     * summary, so keyboard users keep their place.
     */
    draw(answer, { focusId = null }) {
      const { view } = todos;
      const pages = answer.dated ? 1 : pageCount(answer.total);
      if (view.page > pages) {
        view.page = pages;
        return todos.load({ focusId });
      }
      page = answer;
      ctx.replaceLocation(address(view));
      show();
      drawPager(nav, { page: view.page, pages, go: (to) => todos.show({ page: to }) });
      if (focusId !== null) (document.getElementById(`todo-${focusId}`) || summary).focus();
    },
  });
  const labelBar = h("div", { class: "label-filter", hidden: true });
  /** Draw the page's todos as they are now (after a load, or a change that arrived live). */
  function show() {
    const { view } = todos;
    scope.activeLabel = view.label;
    const empty = filtered(view)
      ? "No todos match."
      : scope.canWrite
        ? ["Nothing to do yet. ", button("Add your first todo", { class: "small primary", onclick: () => addField()?.focus() })]
        : "Nothing in this list yet.";
    rows.draw(page.items, empty, { split: view.filter === "all" });
    summary.textContent = summaryText(page.total, view);
    replace(
      labelBar,
      view.label ? [h("span", {}, "Label: ", h("span", { class: "chip" }, view.label)), button("Clear label filter", { class: "small", onclick: () => todos.show({ label: "" }) })] : null,
    );
    labelBar.hidden = !view.label;
    select?.sync();
  }

  const addField = () => container.querySelector(".todo-add [name=title]");
  const writer = todoWriter(ctx, {
    listId: scope.listId,
    items: () => page.items,
    redraw: show,
    reload: () => todos.load(),
    rows,
    focusHome: () => (addField() || summary).focus(),
  });
  scope.save = writer.save;
  // Where a new todo waiting to be sent shows: where the view's sort puts it, if the view shows it.
  scope.insert = (todo) => {
    if (!belongs(todo, todos.view)) return;
    placeIn(page.items, todo, todos.view.sort);
    page.total += 1;
    show();
  };
  const select = scope.canWrite ? selectMode(scope, { items: () => page.items, redraw: show, rows }) : null;
  scope.selection = select;
  /**
   * The checkbox to move focus to when the rows of todos `ids` go: the first row that stays after
   * the first of them on screen, else the nearest before it; none inside a closed disclosure.
   */
  const neighbour = (...ids) => {
    const going = new Set(ids.map(String));
    const staying = (li) => li?.matches(".todo") && !going.has(li.dataset.id);
    const first = rows.row(ids.find((id) => rows.element.contains(rows.row(id))) ?? ids[0]);
    let next = first;
    while (next && !staying(next)) next = next.nextElementSibling;
    for (next ||= first; next && !staying(next); ) next = next.previousElementSibling;
    return next && !next.closest("details:not([open])") ? next.querySelector("input[type=checkbox], button") : null;
  };

  // A change this page made and the API accepted: the row shows the answer, or leaves when the
  // todo no longer belongs in the view (ticked in "Open"); focus stays in the list.
  scope.settle = (updated) => {
    const at = page.items.findIndex((item) => item.id === updated.id);
    if (at < 0) return;
    const hadFocus = rows.row(updated.id)?.contains(document.activeElement);
    const next = hadFocus ? neighbour(updated.id) : null;
    if (belongs(updated, todos.view)) page.items[at] = updated;
    else {
      page.items.splice(at, 1);
      page.total = Math.max(0, page.total - 1);
    }
    show();
    const row = rows.row(updated.id);
    if (hadFocus && (!row?.isConnected || row.closest("details:not([open])"))) (next?.isConnected ? next : addField() || summary).focus();
  };

  // Deleting: the rows leave at once and their DELETE waits UNDO_MS behind an Undo button; a
  // later delete, leaving the page or closing the tab sends what waits at once. Holding the
  // request back (rather than deleting and creating again) keeps the todo's id, dates and place
  // for everyone else, who never see it go and come back.
  const undoBar = h("div", { class: "undo-toast", role: "status" });
  let waiting = null;
  scope.hidden = new Set();
  const restore = (entries) => {
    for (const { todo, at } of [...entries].sort((a, b) => a.at - b.at)) {
      scope.hidden.delete(todo.id);
      const there = page.items.findIndex((item) => item.id === todo.id);
      if (there >= 0) page.items[there] = todo;
      else {
        page.items.splice(Math.min(at, page.items.length), 0, todo);
        page.total += 1;
      }
    }
    show();
  };
  const sendDelete = async ({ todo, at }, leaving) => {
    try {
      // Only the version shown is deleted: its ETag, or for a row drawn from the list the version
      // itself, checked first (not when the tab is closing: there is no time to read it).
      const etag = etagOf(todo);
      const { queued } = await writer.save("delete", todo, { method: "DELETE", ifMatch: etag, base: etag || leaving ? null : todo, keepalive: leaving });
      // A delete waiting in the outbox keeps the todo out of sight until it is sent.
      if (!queued) scope.hidden.delete(todo.id);
    } catch (err) {
      scope.hidden.delete(todo.id);
      if (err.status === 404 || !ctx.active) return;
      restore([{ todo, at }]);
      rows.showError(todo.id, err);
    }
  };
  const flush = (leaving = false) => {
    if (!waiting) return;
    const { entries, timer } = waiting;
    waiting = null;
    clearTimeout(timer);
    replace(undoBar);
    for (const entry of entries) sendDelete(entry, leaving);
  };
  const offerUndo = (entries, text) => {
    flush();
    const undo = button("Undo", {
      class: "small",
      onclick: () => {
        if (!waiting || waiting.entries !== entries) return;
        clearTimeout(waiting.timer);
        waiting = null;
        replace(undoBar);
        restore(entries);
        toast(entries.length === 1 ? `Restored “${entries[0].todo.title}”.` : `Restored ${entries.length} todos.`);
        rows.row(entries[0].todo.id)?.querySelector("input[type=checkbox]")?.focus();
      },
    });
    waiting = { entries, timer: setTimeout(() => flush(), UNDO_MS) };
    placeToast(undoBar);
    replace(undoBar, h("span", {}, text), undo);
  };
  /**
   * Todos `gone` leave together, with one Undo for them all; focus goes to the row that takes their
   * place (or `focus`, when given), so keyboard users keep theirs.
   */
  const removeAll = (gone, text, { focus = null } = {}) => {
    const ids = new Set(gone.map((todo) => todo.id));
    // Each as its row shows it (a row reloaded after a 412 is newer than the page's list): the
    // DELETE is conditional on that version.
    const entries = page.items.map((todo, at) => ({ todo: rows.todo(todo.id) || todo, at })).filter(({ todo }) => ids.has(todo.id));
    if (!entries.length) return;
    const next = focus ? null : neighbour(...entries.map(({ todo }) => todo.id));
    for (const { todo } of entries) scope.hidden.add(todo.id);
    page.items = page.items.filter((todo) => !ids.has(todo.id));
    page.total = Math.max(0, page.total - entries.length);
    show();
    (next?.isConnected ? next : focus || addField() || summary).focus();
    offerUndo(entries, text(entries.length));
  };
  scope.remove = (todo) => removeAll([todo], () => `Deleted “${todo.title}”.`);
  // Select mode's Delete: "Deleted 3 todos." with one Undo.
  scope.removeMany = (gone) => removeAll(gone, (n) => (n === 1 ? `Deleted “${gone[0].title}”.` : `Deleted ${n} todos.`));
  // Clear completed: the done todos on screen leave together.
  scope.clearCompleted = () =>
    removeAll(
      page.items.filter((todo) => todo.completed),
      (n) => `Cleared ${n} completed ${n === 1 ? "todo" : "todos"}.`,
      { focus: addField() || summary },
    );
  const onPageHide = () => flush(true);
  window.addEventListener("pagehide", onPageHide);
  ctx.onLeave(() => {
    window.removeEventListener("pagehide", onPageHide);
    flush();
  });

  const status = h("span", { class: "live-status", role: "status" });
  let membersDialog = null;
  const heading = listHeading(ctx, current, {
    renamed: (renamed) => {
      switcher.update(allLists.map((item) => (item.id === renamed.id ? { ...item, name: renamed.name } : item)));
    },
    members: () => {
      membersDialog = openMembers(current, {
        changed: reloadMembers,
        left: () => ctx.navigate("/todos", { state: { notice: `You left “${current.name}”.` } }),
        opener: () => heading.element.querySelector("[aria-haspopup=dialog]"),
      });
    },
    status,
  });
  let allLists = lists.items;
  const switcher = listSwitcher(allLists, scope.listId, { created: (made) => ctx.navigate(listAddress(made.id)) });
  async function reloadLists() {
    allLists = (await request("GET", "/lists", { query: { limit: 100 } })).items;
    switcher.update(allLists);
    const here = allLists.find((item) => item.id === scope.listId);
    if (here) heading.update(here);
  }
  async function reloadMembers() {
    if (scope.listId === null) return;
    scope.members = await request("GET", `/lists/${scope.listId}/members`);
    if (membersDialog?.open) await membersDialog.refresh();
    await reloadLists();
    show();
  }

  const addForm = scope.canWrite ? addTodoForm(scope, () => {
    todos.view.page = 1;
    return todos.load();
  }) : h("p", { class: "notice" }, "You can view this list. Only its owner and editors can change it.");
  const tools = toolbar(todos, ctx);
  await todos.load();
  writer.ready();
  const announcer = h("p", { class: "visually-hidden", "aria-live": "polite" });
  followLive(ctx, {
    view: todos.view,
    scope,
    rows,
    status,
    announcer,
    page: () => page,
    redraw: show,
    reload: () => todos.load().catch(() => {}),
    reloadLists,
    reloadMembers,
    listName: () => allLists.find((item) => item.id === scope.listId)?.name || current?.name || "the list",
    renameList: (changed) => {
      allLists = allLists.map((item) => (item.id === changed.id ? { ...item, ...changed } : item));
      switcher.update(allLists);
      heading.update(changed);
    },
  });
  const notice = ctx.state.notice ? h("p", { class: "notice", role: "status" }, ctx.state.notice) : null;
  replace(
    container,
    h("h1", {}, "Todos"),
    notice,
    h(
      "div",
      { class: "todos-layout" },
      // The list comes first, for the keyboard and on a phone; the switcher sits beside it on a wide
      // screen, and after it on a narrow one, where the list's heading links down to it.
      h(
        "section",
        { class: "todo-pane", "aria-labelledby": "list-heading", onkeydown: (event) => select?.keydown(event) },
        heading.element,
        writer.failures,
        addForm,
        tools,
        labelBar,
        h("div", { class: "list-bar" }, summary, select?.toggle),
        select?.bar,
        rows.element,
        rows.completed,
        undoBar,
        nav,
        announcer,
      ),
      switcher.element,
    ),
  );
}
