// The todo list: add, tick, edit in place, delete, filter, search, sort and page.

import { etagOf, request } from "../api.js";
import { button, confirmDialog, field, formAlert, h, replace, toast } from "../dom.js";
import { blankToNull, changedElsewhere, editForm, inlineError, onSubmit, reloadButton } from "../forms.js";
import { choiceFrom, drawPager, liveList, pageCount, pageFrom, pageQuery, pager, withQuery } from "../list.js";

const PRIORITIES = [
  ["normal", "Normal"],
  ["high", "High"],
  ["low", "Low"],
];
const SORTS = [
  ["-created_at", "Newest first"],
  ["created_at", "Oldest first"],
  ["due_date", "Due soonest"],
  ["-due_date", "Due latest"],
  ["-priority", "Most important"],
  ["priority", "Least important"],
];
const FILTERS = [
  ["all", "All"],
  ["open", "Open"],
  ["done", "Done"],
];

function today() {
  const now = new Date();
  return new Date(now.getTime() - now.getTimezoneOffset() * 60_000).toISOString().slice(0, 10);
}

function formatDue(isoDate) {
  return new Date(`${isoDate}T00:00:00Z`).toLocaleDateString(undefined, { dateStyle: "medium", timeZone: "UTC" });
}

/** Read the list's settings from the address, so reload and back keep them. */
function readView(query) {
  return { filter: choiceFrom(query, "filter", FILTERS), q: query.get("q") || "", sort: choiceFrom(query, "sort", SORTS), page: pageFrom(query) };
}

function address(view) {
  return withQuery("/todos", view, { filter: FILTERS[0][0], sort: SORTS[0][0], page: 1 });
}

function fetchTodos(view) {
  const completed = view.filter === "all" ? null : view.filter === "done";
  return request("GET", "/todos", { query: { completed, q: view.q.trim(), sort: view.sort, ...pageQuery(view.page) } });
}

function summaryText(total, view) {
  return `${total} ${total === 1 ? "todo" : "todos"}${view.q ? ` matching “${view.q.trim()}”` : ""}`;
}

export async function list(container, ctx) {
  ctx.title("Todos");
  const items = h("ul", { class: "todo-list", "aria-label": "Todos" });
  const summary = h("p", { class: "muted", role: "status", tabindex: -1 });
  const nav = pager();
  const todos = liveList(ctx, readView(ctx.query), {
    fetch: fetchTodos,
    /**
     * `focusId` puts focus back on that todo's checkbox, or, when it is gone, on the list's
     * summary, so keyboard users keep their place.
     */
    draw(page, { focusId = null }) {
      const { view } = todos;
      const pages = pageCount(page.total);
      if (view.page > pages) {
        view.page = pages;
        return todos.load({ focusId });
      }
      ctx.replaceLocation(address(view));
      replace(items, page.items.map((todo) => todoItem(todo, todos.load)));
      if (!page.items.length) {
        items.append(h("li", { class: "empty" }, view.q || view.filter !== "all" ? "No todos match." : "Nothing to do yet. Add your first todo above."));
      }
      summary.textContent = summaryText(page.total, view);
      drawPager(nav, { page: view.page, pages, go: (to) => todos.show({ page: to }) });
      if (focusId !== null) (document.getElementById(`todo-${focusId}`) || summary).focus();
    },
  });
  const addForm = addTodoForm(() => {
    todos.view.page = 1;
    return todos.load();
  });
  const tools = toolbar(todos, ctx);
  await todos.load();
  replace(container, h("h1", {}, "Todos"), addForm, tools, summary, items, nav);
}

/** One todo's row; `reload(options)` loads the list again after a change. */
function todoItem(todo, reload) {
  const li = h("li", { dataset: { id: todo.id } });
  drawItem(li, todo, reload);
  return li;
}

/**
 * A row drawn from the list has no ETag; one drawn from a single todo's answer (after an edit or
 * a reload) has. Edit and Delete act on a version with an ETag: the row's own, else the todo as
 * it is now, read when the form or the confirmation opens (which then shows that version).
 */
function current(todo) {
  return etagOf(todo) ? Promise.resolve(todo) : request("GET", `/todos/${todo.id}`);
}

function drawItem(li, todo, reload) {
  li.className = `todo${todo.completed ? " done" : ""}`;
  const id = `todo-${todo.id}`;
  const error = inlineError();
  // Ticking sends no If-Match: it sets one field to what the box shows, so it cannot undo a
  // change made elsewhere (at worst it sets what that change set).
  const tick = h("input", {
    type: "checkbox",
    id,
    checked: todo.completed,
    onchange: async () => {
      try {
        await request("PATCH", `/todos/${todo.id}`, { body: { completed: tick.checked } });
        await reload({ focusId: todo.id });
      } catch (err) {
        tick.checked = !tick.checked;
        error.show(err);
      }
    },
  });
  // After a 412 the row shows the todo as it is now; its Delete then acts on that version.
  const reloadRow = async () => {
    try {
      drawItem(li, await request("GET", `/todos/${todo.id}`), reload);
      li.querySelector(".todo-actions .danger-text").focus();
    } catch (err) {
      error.show(err);
    }
  };
  const remove = async () => {
    error.hide();
    try {
      const shown = await current(todo);
      if (!(await confirmDialog(`Delete “${shown.title}”?`))) return;
      await request("DELETE", `/todos/${todo.id}`, { ifMatch: etagOf(shown) });
      toast("Todo deleted.");
      await reload({ focusId: todo.id });
    } catch (err) {
      error.show(err, ...(changedElsewhere(err) ? [" ", reloadButton(reloadRow)] : []));
    }
  };
  const edit = async () => {
    error.hide();
    try {
      editItem(li, await current(todo), reload);
    } catch (err) {
      error.show(err);
    }
  };
  replace(
    li,
    tick,
    h("div", { class: "todo-body" }, h("label", { for: id, class: "todo-title" }, todo.title), todoDetails(todo), error.element),
    h(
      "div",
      { class: "todo-actions" },
      button("Edit", { class: "small", "aria-label": `Edit “${todo.title}”`, onclick: edit }),
      button("Delete", { class: "small danger-text", "aria-label": `Delete “${todo.title}”`, onclick: remove }),
    ),
  );
}

/** The description, priority and due date under a todo's title. */
function todoDetails(todo) {
  const overdue = todo.due_date && !todo.completed && todo.due_date < today();
  return [
    todo.description ? h("p", { class: "todo-description" }, todo.description) : null,
    h(
      "p",
      { class: "todo-meta" },
      todo.priority !== "normal" ? h("span", { class: `badge priority-${todo.priority}` }, todo.priority === "high" ? "High priority" : "Low priority") : null,
      todo.due_date ? h("span", { class: `due${overdue ? " overdue" : ""}` }, `${overdue ? "Overdue: " : "Due "}${formatDue(todo.due_date)}`) : null,
    ),
  ];
}

/** Edit `todo` (read with its ETag) in place of its row. */
function editItem(li, todo, reload) {
  let shown = () => todo;
  const cancel = () => {
    drawItem(li, shown(), reload);
    li.querySelector("button").focus();
  };
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
    ),
    h("div", { class: "actions" }, button("Cancel", { onclick: cancel }), h("button", { type: "submit", class: "primary" }, "Save")),
  );
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") cancel();
  });
  shown = editForm(form, todo, {
    load: () => request("GET", `/todos/${todo.id}`),
    save: async (data, etag) => {
      const updated = await request("PATCH", `/todos/${todo.id}`, { body: blankToNull(data, "description", "due_date"), ifMatch: etag });
      drawItem(li, updated, reload);
      toast("Todo saved.");
      li.querySelector("button").focus();
      return updated;
    },
  });
  li.className = "todo editing";
  replace(li, form);
  form.elements.title.focus();
}

/** The form that adds a todo; `added()` shows the list with it. */
function addTodoForm(added) {
  const form = h(
    "form",
    { class: "card todo-add", novalidate: true, "aria-label": "Add a todo" },
    formAlert(),
    h(
      "div",
      { class: "row" },
      field("New todo", "title", { required: true, maxlength: 200, placeholder: "What needs doing?" }),
      field("Priority", "priority", { control: "select", options: PRIORITIES }),
      field("Due date", "due_date", { type: "date" }),
    ),
    field("Description (optional)", "description", { control: "textarea", rows: 2, maxlength: 5000 }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Add todo")),
  );
  onSubmit(form, async (data) => {
    await request("POST", "/todos", { body: blankToNull(data, "description", "due_date") });
    form.reset();
    form.elements.title.focus();
    toast("Todo added.");
    await added();
  });
  return form;
}

/** Filter, search and sort; each change shows the first page of what it picks. */
function toolbar(todos, ctx) {
  const { view } = todos;
  const filterGroup = h(
    "fieldset",
    { class: "segmented" },
    h("legend", {}, "Show"),
    FILTERS.map(([value, text]) =>
      h(
        "label",
        {},
        h("input", { type: "radio", name: "filter", value, checked: view.filter === value, onchange: () => todos.show({ filter: value }) }),
        h("span", {}, text),
      ),
    ),
  );
  const search = field("Search", "q", { type: "search", value: view.q, maxlength: 200, placeholder: "Title or description" });
  let searchTimer = null;
  search.querySelector("input").addEventListener("input", (event) => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => todos.show({ q: event.target.value }), 250);
  });
  ctx.onLeave(() => clearTimeout(searchTimer));
  const sort = field("Sort by", "sort", { control: "select", options: SORTS });
  sort.querySelector("select").value = view.sort;
  sort.querySelector("select").addEventListener("change", (event) => todos.show({ sort: event.target.value }));
  return h("div", { class: "toolbar", role: "search" }, filterGroup, search, sort);
}
