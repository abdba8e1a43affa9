// The todo list: add, tick, edit in place, delete, filter, search, sort and page.

import { request } from "../api.js";
import { button, confirmDialog, field, formAlert, h, replace, toast } from "../dom.js";
import { blankToNull, onSubmit } from "../forms.js";

const PAGE_SIZE = 20;
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
  const filter = FILTERS.some(([v]) => v === query.get("filter")) ? query.get("filter") : "all";
  const sort = SORTS.some(([v]) => v === query.get("sort")) ? query.get("sort") : "-created_at";
  const page = Math.max(1, Number.parseInt(query.get("page") || "1", 10) || 1);
  return { filter, sort, q: query.get("q") || "", page };
}

function writeView(ctx, view) {
  const params = new URLSearchParams();
  if (view.filter !== "all") params.set("filter", view.filter);
  if (view.q) params.set("q", view.q);
  if (view.sort !== "-created_at") params.set("sort", view.sort);
  if (view.page > 1) params.set("page", String(view.page));
  const text = params.toString();
  ctx.replaceLocation(`/todos${text ? `?${text}` : ""}`);
}

export async function list(container, ctx) {
  ctx.title("Todos");
  const view = readView(ctx.query);
  const items = h("ul", { class: "todo-list", "aria-label": "Todos" });
  const summary = h("p", { class: "muted", role: "status", tabindex: -1 });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });

  let loads = 0;

  /**
   * Fetch and draw the current page of the list. Only the latest load draws (an older answer
   * that arrives late is dropped). `focusId` puts focus back on that todo's checkbox, or, when
   * it is gone, on the list's summary, so keyboard users keep their place.
   */
  async function load({ focusId = null } = {}) {
    const seq = ++loads;
    const page = await request("GET", "/todos", {
      query: {
        completed: view.filter === "all" ? null : view.filter === "done",
        q: view.q.trim(),
        sort: view.sort,
        limit: PAGE_SIZE,
        offset: (view.page - 1) * PAGE_SIZE,
      },
    });
    if (seq !== loads || !ctx.active) return;
    const pages = Math.max(1, Math.ceil(page.total / PAGE_SIZE));
    if (view.page > pages) {
      view.page = pages;
      return load({ focusId });
    }
    writeView(ctx, view);
    replace(items, page.items.map((todo) => item(todo)));
    if (!page.items.length) {
      items.append(h("li", { class: "empty" }, view.q || view.filter !== "all" ? "No todos match." : "Nothing to do yet. Add your first todo above."));
    }
    summary.textContent = `${page.total} ${page.total === 1 ? "todo" : "todos"}${view.q ? ` matching “${view.q.trim()}”` : ""}`;
    drawPager(pages);
    if (focusId !== null) {
      const target = document.getElementById(`todo-${focusId}`) || summary;
      target.focus();
    }
  }

  function drawPager(pages) {
    const go = (to) => () => {
      view.page = to;
      load().catch(showLoadError);
    };
    replace(
      pager,
      button("Previous", { disabled: view.page <= 1, onclick: go(view.page - 1) }),
      h("span", {}, `Page ${view.page} of ${pages}`),
      button("Next", { disabled: view.page >= pages, onclick: go(view.page + 1) }),
    );
    pager.hidden = pages <= 1;
  }

  function showLoadError(error) {
    if (error.status !== 401) toast(error.detail || "The list could not be loaded.");
  }

  function item(todo) {
    const li = h("li", { class: `todo${todo.completed ? " done" : ""}`, dataset: { id: todo.id } });
    drawItem(li, todo);
    return li;
  }

  function drawItem(li, todo) {
    li.className = `todo${todo.completed ? " done" : ""}`;
    const id = `todo-${todo.id}`;
    const error = h("p", { class: "field-error", role: "alert", hidden: true });
    const fail = (err) => {
      if (err.status === 401) return;
      error.textContent = err.detail;
      error.hidden = false;
    };
    const tick = h("input", {
      type: "checkbox",
      id,
      checked: todo.completed,
      onchange: async () => {
        try {
          await request("PATCH", `/todos/${todo.id}`, { body: { completed: tick.checked } });
          await load({ focusId: todo.id });
        } catch (err) {
          tick.checked = !tick.checked;
          fail(err);
        }
      },
    });
    const overdue = todo.due_date && !todo.completed && todo.due_date < today();
    replace(
      li,
      tick,
      h(
        "div",
        { class: "todo-body" },
        h("label", { for: id, class: "todo-title" }, todo.title),
        todo.description ? h("p", { class: "todo-description" }, todo.description) : null,
        h(
          "p",
          { class: "todo-meta" },
          todo.priority !== "normal" ? h("span", { class: `badge priority-${todo.priority}` }, todo.priority === "high" ? "High priority" : "Low priority") : null,
          todo.due_date ? h("span", { class: `due${overdue ? " overdue" : ""}` }, `${overdue ? "Overdue: " : "Due "}${formatDue(todo.due_date)}`) : null,
        ),
        error,
      ),
      h(
        "div",
        { class: "todo-actions" },
        button("Edit", { class: "small", "aria-label": `Edit “${todo.title}”`, onclick: () => editItem(li, todo) }),
        button("Delete", {
          class: "small danger-text",
          "aria-label": `Delete “${todo.title}”`,
          onclick: async () => {
            if (!(await confirmDialog(`Delete “${todo.title}”?`))) return;
            try {
              await request("DELETE", `/todos/${todo.id}`);
              toast("Todo deleted.");
              await load({ focusId: todo.id });
            } catch (err) {
              fail(err);
            }
          },
        }),
      ),
    );
  }

  function editItem(li, todo) {
    const form = h(
      "form",
      { class: "todo-edit", novalidate: true },
      formAlert(),
      field("Title", "title", { required: true, maxlength: 200, value: todo.title }),
      field("Description", "description", { control: "textarea", rows: 3, maxlength: 5000 }),
      h(
        "div",
        { class: "row" },
        field("Priority", "priority", { control: "select", options: PRIORITIES }),
        field("Due date", "due_date", { type: "date", value: todo.due_date || "" }),
      ),
      h(
        "div",
        { class: "actions" },
        button("Cancel", { onclick: () => cancel() }),
        h("button", { type: "submit", class: "primary" }, "Save"),
      ),
    );
    form.elements.description.value = todo.description || "";
    form.elements.priority.value = todo.priority;
    const cancel = () => {
      drawItem(li, todo);
      li.querySelector("button").focus();
    };
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") cancel();
    });
    onSubmit(form, async (data) => {
      const updated = await request("PATCH", `/todos/${todo.id}`, { body: blankToNull(data, "description", "due_date") });
      drawItem(li, updated);
      toast("Todo saved.");
      li.querySelector("button").focus();
    });
    li.className = "todo editing";
    replace(li, form);
    form.elements.title.focus();
  }

  const addForm = h(
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
  onSubmit(addForm, async (data) => {
    await request("POST", "/todos", { body: blankToNull(data, "description", "due_date") });
    addForm.reset();
    addForm.elements.title.focus();
    toast("Todo added.");
    view.page = 1;
    await load();
  });

  const filterGroup = h(
    "fieldset",
    { class: "segmented" },
    h("legend", {}, "Show"),
    FILTERS.map(([value, text]) =>
      h(
        "label",
        {},
        h("input", {
          type: "radio",
          name: "filter",
          value,
          checked: view.filter === value,
          onchange: () => {
            view.filter = value;
            view.page = 1;
            load().catch(showLoadError);
          },
        }),
        h("span", {}, text),
      ),
    ),
  );
  const search = field("Search", "q", { type: "search", value: view.q, maxlength: 200, placeholder: "Title or description" });
  let searchTimer = null;
  search.querySelector("input").addEventListener("input", (event) => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      view.q = event.target.value;
      view.page = 1;
      load().catch(showLoadError);
    }, 250);
  });
  const sort = field("Sort by", "sort", { control: "select", options: SORTS });
  sort.querySelector("select").value = view.sort;
  sort.querySelector("select").addEventListener("change", (event) => {
    view.sort = event.target.value;
    view.page = 1;
    load().catch(showLoadError);
  });
  ctx.onLeave(() => clearTimeout(searchTimer));

  await load();
  replace(
    container,
    h("h1", {}, "Todos"),
    addForm,
    h("div", { class: "toolbar", role: "search" }, filterGroup, search, sort),
    summary,
    items,
    pager,
  );
}
