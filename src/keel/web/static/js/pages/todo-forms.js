// The todo page's forms: the one that adds a todo, and the tools that pick what the list shows
// (state, due date, search, sort, "Assigned to me"), with the choices the page's address keeps.

import { field, formAlert, h, toast } from "../dom.js";
import { onSubmit } from "../forms.js";
import { labelsField } from "../labels.js";
import { localTodo } from "./todo-offline.js";
import { PRIORITIES, assigneeField, stopUnlessLabelsCommit, todoBody } from "./todo-rows.js";

export const SORTS = [
  ["-created_at", "Newest first"],
  ["created_at", "Oldest first"],
  ["due_date", "Due soonest"],
  ["-due_date", "Due latest"],
  ["-priority", "Most important"],
  ["priority", "Least important"],
];
export const FILTERS = [
  ["all", "All"],
  ["open", "Open"],
  ["done", "Done"],
];
// The API filters by state, not by due date: these views read the first 100 todos the other
// filters pick and keep those due in the view's days (see fetchTodos in todos.js).
export const DUE_VIEWS = [
  ["all", "Any date"],
  ["today", "Today"],
  ["upcoming", "Upcoming"],
  ["overdue", "Overdue"],
];

/** The form that adds a todo (to the list on screen); `added()` shows the list with it. */
export function addTodoForm(scope, added) {
  const labels = labelsField();
  // On a phone only the title and its button show; the rest waits behind "More options". A wide
  // screen opens it from the start (the summary is then hidden by the style sheet).
  const more = h(
    "details",
    { class: "more-fields", open: matchMedia("(min-width: 40rem)").matches },
    h("summary", {}, "More options"),
    h(
      "div",
      { class: "row" },
      field("Priority", "priority", { control: "select", options: PRIORITIES }),
      field("Due date", "due_date", { type: "date" }),
    ),
    field("Description (optional)", "description", { control: "textarea", rows: 2, maxlength: 5000 }),
    h("div", { class: "row" }, labels.element, scope.listId !== null ? assigneeField(scope) : null),
  );
  const form = h(
    "form",
    { class: "card todo-add", novalidate: true, "aria-label": "Add a todo" },
    formAlert(),
    h(
      "div",
      { class: "quick-add" },
      field("New todo", "title", { required: true, maxlength: 200, placeholder: "What needs doing?" }),
      h("button", { type: "submit", class: "primary" }, "Add todo"),
    ),
    more,
  );
  form.addEventListener("submit", stopUnlessLabelsCommit(labels), { capture: true });
  onSubmit(form, async (data) => {
    // Sent with an Idempotency-Key, and queued with the same one when the network fails: Keel
    // creates it once however many times it arrives.
    const body = { ...todoBody(data), list_id: scope.listId };
    const { queued, answer } = await scope.save("add", localTodo(body), { method: "POST", path: "/todos", body });
    form.reset();
    labels.reset();
    form.elements.title.focus();
    if (queued) {
      toast("Added on this device. It will be sent when the network returns.");
      scope.insert(answer);
      return;
    }
    toast("Todo added.");
    await added();
  });
  return form;
}

/** Filter, search and sort; each change shows the first page of what it picks. */
export function toolbar(todos, ctx) {
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
  const dueGroup = h(
    "fieldset",
    { class: "segmented due-views" },
    h("legend", {}, "Due"),
    DUE_VIEWS.map(([value, text]) =>
      h(
        "label",
        {},
        h("input", { type: "radio", name: "due", value, checked: view.due === value, onchange: () => todos.show({ due: value }) }),
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
  const mineId = "assigned-to-me";
  const mine = h(
    "div",
    { class: "field checkbox mine" },
    h("input", { type: "checkbox", id: mineId, checked: view.mine, onchange: (event) => todos.show({ mine: event.target.checked }) }),
    h("label", { for: mineId }, "Assigned to me"),
  );
  // On a phone the tools fold away under one line, so the list starts on the first screen; an
  // active filter opens them, so what narrows the list is never out of sight.
  const narrowed = view.filter !== "all" || view.due !== "all" || view.q || view.mine || view.sort !== SORTS[0][0];
  return h(
    "details",
    { class: "view-tools", open: narrowed || matchMedia("(min-width: 40rem)").matches },
    h("summary", {}, "Filter and sort"),
    h("div", { class: "toolbar", role: "search" }, filterGroup, dueGroup, search, sort, mine),
  );
}
