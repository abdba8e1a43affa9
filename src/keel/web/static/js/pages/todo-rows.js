// The rows of the todo page: each todo with its labels and assignee, ticking, editing in place
// and deleting; and the list that holds them, kept by todo id so that a change arriving while
// someone reads (another person's edit, over the live stream) redraws only its own row, leaves a
// row being edited alone and keeps keyboard focus where it was.

import { currentUser, etagOf, request } from "../api.js";
import { button, field, formAlert, h, replace, toast } from "../dom.js";
import { blankToNull, changedElsewhere, editForm, inlineError, reloadButton } from "../forms.js";
import { labelChip, labelsField, parseLabels } from "../labels.js";

export const PRIORITIES = [
  ["normal", "Normal"],
  ["high", "High"],
  ["low", "Low"],
];

function today() {
  const now = new Date();
  return new Date(now.getTime() - now.getTimezoneOffset() * 60_000).toISOString().slice(0, 10);
}

function formatDue(isoDate, dateStyle = "medium") {
  return new Date(`${isoDate}T00:00:00Z`).toLocaleDateString(undefined, { dateStyle, timeZone: "UTC" });
}

/** Whole days from today (in the reader's time zone) to `isoDate`: 0 today, -1 yesterday. */
export function daysFromToday(isoDate) {
  return Math.round((Date.parse(`${isoDate}T00:00:00Z`) - Date.parse(`${today()}T00:00:00Z`)) / 86_400_000);
}

/** Whether `todo` is due in a due-date view: "today", "upcoming" (later) or "overdue" (earlier, open). */
export function dueIn(todo, due) {
  if (!todo.due_date) return false;
  const days = daysFromToday(todo.due_date);
  if (due === "today") return days === 0;
  if (due === "upcoming") return days > 0;
  return days < 0 && !todo.completed;
}

/** "Today", "Tomorrow", "in 3 days", "3 days ago"; past a week either way, the date itself. */
export function relativeDue(isoDate) {
  const days = daysFromToday(isoDate);
  if (days === 0) return "today";
  if (days === 1) return "tomorrow";
  if (days === -1) return "yesterday";
  if (days > 1 && days < 7) return `in ${days} days`;
  if (days < -1 && days > -7) return `${-days} days ago`;
  return formatDue(isoDate);
}

/**
 * The todo body a form's values make: blank optional fields null, labels as a list, and the
 * assignee (a member's id, or null) only where the form offers one.
 */
export function todoBody(data) {
  const body = blankToNull({ ...data }, "description", "due_date");
  body.labels = parseLabels(data.labels);
  if ("assignee_id" in data) body.assignee_id = data.assignee_id ? Number(data.assignee_id) : null;
  return body;
}

/** The assignee picker: the list's members, or nobody. */
export function assigneeField(scope) {
  const me = currentUser();
  const options = [["", "Unassigned"], ...scope.members.map((m) => [String(m.user.id), m.user.id === me?.id ? `${m.user.username} (you)` : m.user.username])];
  return field("Assigned to", "assignee_id", { control: "select", options });
}

/** Who a todo is assigned to, in words, from the list's members. */
function assigneeName(todo, scope) {
  if (todo.assignee_id === null || todo.assignee_id === undefined) return null;
  if (todo.assignee_id === currentUser()?.id) return "you";
  const member = scope.members.find((m) => m.user.id === todo.assignee_id);
  return member ? member.user.username : "a former member";
}

// Which of two versions of a todo is newer: kept in api.js, where the outbox needs it too.
export { isNewer } from "../api.js";

/**
 * The list of todo rows for `scope` ({listId, canWrite, members, filterLabel(label), activeLabel,
 * reload(options)}). `draw(items)` makes the list show exactly `items`, in order: a row whose todo
 * is unchanged stays as it is, a row being edited is never replaced; `flash(id)` marks a row that
 * changed elsewhere; `todo(id)` is the version a row shows.
 */
export function todoRows(scope) {
  const element = h("ul", { class: "todo-list", "aria-label": "Todos" });
  // With `split`, done todos wait under the open ones in a closed "Completed (n)" disclosure.
  const doneList = h("ul", { class: "todo-list", "aria-label": "Completed todos" });
  const doneCount = h("span", {});
  const clear = scope.canWrite ? button("Clear completed", { class: "small danger-text", onclick: () => scope.clearCompleted() }) : null;
  const completed = h(
    "details",
    { class: "completed-todos", hidden: true },
    h("summary", {}, doneCount),
    clear ? h("div", { class: "actions" }, clear) : null,
    doneList,
  );
  const rows = new Map();
  const shown = new WeakMap();
  scope.shown = shown;

  const draw = (items, emptyText, { split = false } = {}) => {
    const wanted = new Set(items.map((todo) => todo.id));
    for (const [id, li] of rows) {
      if (!wanted.has(id)) {
        li.remove();
        rows.delete(id);
      }
    }
    for (const empty of element.querySelectorAll(".empty")) empty.remove();
    const done = split ? items.filter((todo) => todo.completed) : [];
    const open = split ? items.filter((todo) => !todo.completed) : items;
    drawInto(element, open);
    drawInto(doneList, done);
    if (!items.length) element.append(h("li", { class: "empty" }, emptyText));
    else if (!open.length) element.append(h("li", { class: "empty" }, "All done. Nothing open here."));
    doneCount.textContent = `Completed (${done.length})`;
    completed.hidden = !done.length;
  };
  const drawInto = (ul, items) => {
    let cursor = ul.firstElementChild;
    for (const todo of items) {
      let li = rows.get(todo.id);
      if (!li) {
        li = h("li", { dataset: { id: todo.id } });
        rows.set(todo.id, li);
        drawItem(li, todo, scope);
      } else if (!li.classList.contains("editing") && !li.dataset.busy && shown.get(li) !== todo && isChanged(shown.get(li), todo)) {
        redrawKeepingFocus(li, todo, scope);
      }
      if (li === cursor) cursor = cursor.nextElementSibling;
      else ul.insertBefore(li, cursor);
    }
  };
  const flash = (id) => {
    const li = rows.get(id);
    if (!li) return;
    li.classList.remove("flash");
    void li.offsetWidth; // restart the animation when the row changes twice in a row
    li.classList.add("flash");
    clearTimeout(li.flashTimer);
    li.flashTimer = setTimeout(() => li.classList.remove("flash"), 1600);
  };
  const todo = (id) => (rows.has(id) ? shown.get(rows.get(id)) : null);
  /** Show `error` in the row of todo `id` (after a change to it was rolled back). */
  const showError = (id, error) => {
    const li = rows.get(id);
    if (!li?.error) return;
    const reloadRow = () => li.reloadRow();
    li.error.show(error, ...(changedElsewhere(error) ? [" ", reloadButton(reloadRow)] : []));
  };
  /** The row element of todo `id`, if it is drawn. */
  const row = (id) => rows.get(id) || null;
  /** Draw every row again (select mode came or went); a row being edited or saved is left alone. */
  const refresh = () => {
    for (const li of rows.values()) {
      if (!li.classList.contains("editing") && !li.dataset.busy) drawItem(li, shown.get(li), scope);
    }
  };
  return { element, completed, draw, flash, todo, showError, row, refresh };
}

function isChanged(before, after) {
  return !before || JSON.stringify(before) !== JSON.stringify(after);
}

/** Redraw a row for a change made elsewhere, putting focus back on the same control if it had it. */
function redrawKeepingFocus(li, todo, scope) {
  const controls = () => [...li.querySelectorAll("input, button, summary")];
  const focused = controls().indexOf(document.activeElement);
  drawItem(li, todo, scope);
  if (focused >= 0) (controls()[focused] || li.querySelector("input, button"))?.focus();
}

/**
 * A row drawn from the list has no ETag; one drawn from a single todo's answer (after an edit or
 * a reload) has. Edit and Delete act on a version with an ETag: the row's own, else the todo as
 * it is now, read when the form or the confirmation opens (which then shows that version).
 */
function current(todo) {
  // Offline, or waiting to be sent: the row's own version, which a queued change is made on.
  if (etagOf(todo) || todo.waiting || navigator.onLine === false) return Promise.resolve(todo);
  return request("GET", `/todos/${todo.id}`).catch((error) => {
    if (error.status === 0) return todo;
    throw error;
  });
}

function drawItem(li, todo, scope) {
  scope.shown.set(li, todo);
  const { reload } = scope;
  li.className = `todo${todo.completed ? " done" : ""}`;
  const id = `todo-${todo.id}`;
  const error = inlineError();
  if (!scope.canWrite) {
    // A viewer reads: the state in words, no controls (the server would refuse them anyway).
    replace(
      li,
      h("span", { class: "todo-state", "aria-hidden": "true" }, todo.completed ? "✓" : ""),
      h("div", { class: "todo-body" }, h("p", { class: "todo-title" }, h("span", { class: "visually-hidden" }, todo.completed ? "Done: " : "Open: "), todo.title), todoDetails(todo, scope)),
    );
    return;
  }
  if (scope.selection?.on) {
    scope.selection.drawRow(li, todo, todoDetails(todo, scope));
    return;
  }
  // Ticking sends no If-Match: it sets one field to what the box shows, so it cannot undo a
  // change made elsewhere (at worst it sets what that change set). The row shows the new state at
  // once; a refusal puts it back and says why.
  const tick = h("input", {
    type: "checkbox",
    id,
    checked: todo.completed,
    onchange: async () => {
      const wanted = tick.checked;
      error.hide();
      li.dataset.busy = "true";
      li.classList.toggle("done", wanted);
      try {
        // Offline, the tick is queued and the row says it waits (scope.save, todo-offline.js).
        const { answer } = await scope.save("tick", todo, { method: "PATCH", body: { completed: wanted } });
        delete li.dataset.busy;
        scope.settle(answer);
      } catch (err) {
        delete li.dataset.busy;
        tick.checked = !wanted;
        li.classList.toggle("done", !wanted);
        error.show(err);
      }
    },
  });
  li.error = error;
  // After a 412 the row shows the todo as it is now; its Delete then acts on that version.
  li.reloadRow = async () => {
    try {
      drawItem(li, await request("GET", `/todos/${todo.id}`), scope);
      const menu = li.querySelector(".todo-menu");
      (menu && !menu.open ? menu.querySelector("summary") : li.querySelector(".todo-actions .danger-text"))?.focus();
    } catch (err) {
      li.error.show(err);
    }
  };
  // The row goes at once; the page holds the DELETE back while its Undo is offered.
  const remove = () => {
    error.hide();
    scope.remove(todo);
  };
  const edit = async () => {
    error.hide();
    try {
      editItem(li, await current(todo), scope);
    } catch (err) {
      error.show(err);
    }
  };
  replace(
    li,
    tick,
    h("div", { class: "todo-body" }, h("label", { for: id, class: "todo-title" }, todo.title), todoDetails(todo, scope), error.element),
    // On a phone Edit and Delete wait in a menu, so the list reads as a list; a wide screen
    // shows them on the row (the menu open, its toggle hidden by the style sheet).
    rowMenu(todo, [
      button("Edit", { class: "small", "aria-label": `Edit “${todo.title}”`, onclick: edit }),
      button("Delete", { class: "small danger-text", "aria-label": `Delete “${todo.title}”`, onclick: remove }),
    ]),
  );
}

function rowMenu(todo, actions) {
  const toggle = h("summary", { "aria-label": `Actions for “${todo.title}”` }, h("span", { "aria-hidden": "true" }, "⋯"));
  const menu = h("details", { class: "todo-menu", open: matchMedia("(min-width: 40rem)").matches }, toggle, h("div", { class: "todo-actions" }, actions));
  menu.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || !menu.open || getComputedStyle(toggle).display === "none") return;
    menu.open = false;
    toggle.focus();
  });
  return menu;
}

/** Put focus on a row's first action: its Edit button, or on a phone the menu that holds it. */
function focusRow(li) {
  const menu = li.querySelector(".todo-menu");
  (menu && !menu.open ? menu.querySelector("summary") : li.querySelector(".todo-actions button"))?.focus();
}

/** The description, priority, due date, assignee and labels under a todo's title. */
function todoDetails(todo, scope) {
  const overdue = todo.due_date && !todo.completed && todo.due_date < today();
  const assignee = assigneeName(todo, scope);
  const labels = todo.labels || [];
  return [
    todo.description ? h("p", { class: "todo-description" }, todo.description) : null,
    todo.waiting ? h("p", { class: "todo-waiting" }, "Waiting for the network") : null,
    h(
      "p",
      { class: "todo-meta" },
      todo.priority !== "normal" ? h("span", { class: `badge priority-${todo.priority}` }, todo.priority === "high" ? "High priority" : "Low priority") : null,
      todo.due_date
        ? h(
            "span",
            { class: `due${overdue ? " overdue" : ""}` },
            overdue ? "Overdue, due " : "Due ",
            h("time", { datetime: todo.due_date, title: formatDue(todo.due_date, "full") }, relativeDue(todo.due_date)),
          )
        : null,
      assignee ? h("span", { class: "assignee" }, `Assigned to ${assignee}`) : null,
    ),
    labels.length
      ? h(
          "ul",
          { class: "chips todo-labels", "aria-label": "Labels" },
          labels.map((label) =>
            h("li", {}, labelChip(label, { pressed: scope.activeLabel === label, onclick: () => scope.filterLabel(label) })),
          ),
        )
      : null,
  ];
}

/** Edit `todo` (read with its ETag) in place of its row. */
function editItem(li, todo, scope) {
  let latest = () => todo;
  const cancel = () => {
    drawItem(li, latest(), scope);
    focusRow(li);
  };
  const labels = labelsField();
  const form = h(
    "form",
    { class: "todo-edit", novalidate: true },
    formAlert(),
    field("Title", "title", { required: true, maxlength: 200 }),
    field("Description", "description", { control: "textarea", rows: 3, maxlength: 5000 }),
    h(
      "div",
      { class: "row" },
      field("Priority", "priority", { control: "select", options: PRIORITIES }),
      field("Due date", "due_date", { type: "date" }),
      scope.listId !== null ? assigneeField(scope) : null,
    ),
    labels.element,
    h("div", { class: "actions" }, button("Cancel", { onclick: cancel }), h("button", { type: "submit", class: "primary" }, "Save")),
  );
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") cancel();
  });
  // The labels field reads what is still typed in it before the form's values are taken.
  form.addEventListener("submit", stopUnlessLabelsCommit(labels), { capture: true });
  latest = editForm(form, todo, {
    load: () => request("GET", `/todos/${todo.id}`),
    // The row shows the edit at once; a refusal brings the form back, the edit still in it,
    // with the error (and, after a 412, its Reload) shown there.
    save: async (data, etag) => {
      const body = todoBody(data);
      drawItem(li, { ...latest(), ...body }, scope);
      li.dataset.busy = "true";
      focusRow(li);
      let updated;
      try {
        // The edit keeps the version it was made on (its ETag, else the version itself), also
        // when it is queued offline: a replay that meets a newer one is refused, not written over it.
        const shownNow = latest();
        ({ answer: updated } = await scope.save("edit", shownNow, { method: "PATCH", body, ifMatch: etag, base: etag ? null : shownNow }));
      } catch (err) {
        li.className = "todo editing";
        replace(li, form);
        form.elements.title.focus();
        throw err;
      } finally {
        delete li.dataset.busy;
      }
      const hadFocus = li.contains(document.activeElement) || document.activeElement === document.body;
      drawItem(li, updated, scope);
      scope.settle(updated);
      toast(updated.waiting ? "Saved on this device. It will be sent when the network returns." : "Todo saved.");
      if (hadFocus) focusRow(li);
      return updated;
    },
  });
  li.className = "todo editing";
  replace(li, form);
  form.elements.title.focus();
}

/** A capturing submit listener: a label refused as typed (too long, too many) stops the submit. */
export function stopUnlessLabelsCommit(labels) {
  return (event) => {
    if (labels.commit()) return;
    event.preventDefault();
    event.stopImmediatePropagation();
  };
}
