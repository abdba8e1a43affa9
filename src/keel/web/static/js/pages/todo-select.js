// Select mode on the todo page: a box on each row to pick todos, "Select all on this page", how
// many are picked, and what to do with them. The box takes the tick's place (and the title becomes
// its label), so a tap on a row picks it and never ticks it by mistake; the rows' own Edit and
// Delete step aside. Marking done or not done shows at once and puts back each todo Keel refuses;
// Delete is the page's own, with one Undo for all. Escape or Cancel leaves the mode. Only for those
// who may change the list: a viewer never gets it.

import { button, h, toast } from "../dom.js";

/** At most this many PATCHes at once: a browser opens a few connections to a server, and the live stream holds one. */
const AT_ONCE = 4;

const todosText = (n) => `${n} ${n === 1 ? "todo" : "todos"}`;

/** Run `work(item)` for every item, AT_ONCE at a time. */
async function inTurns(items, work) {
  const queue = [...items];
  const worker = async () => {
    while (queue.length) await work(queue.shift());
  };
  await Promise.all(Array.from({ length: Math.min(AT_ONCE, queue.length) }, worker));
}

/**
 * Select mode for the page's `scope` (its `save`, `settle` and `removeMany`). `page` lends
 * `items()` (the todos on screen, changed in place), `redraw()` and `rows`. Returns the `toggle`
 * that starts it, the `bar` shown while it lasts, `sync()` (to call after every redraw),
 * `keydown(event)` for the pane, and what the rows need: `on` and `drawRow(li, todo, details)`.
 */
export function selectMode(scope, page) {
  const picked = new Set();
  let on = false;
  const toggle = button("Select", { class: "small", onclick: () => enter() });
  const all = h("input", { type: "checkbox", id: "select-all", onchange: () => pickAll(all.checked) });
  const count = h("p", { class: "select-count", role: "status" });
  const markDone = button("Mark done", { class: "small", onclick: () => mark(true) });
  const markOpen = button("Mark not done", { class: "small", onclick: () => mark(false) });
  const remove = button("Delete", { class: "small danger-text", onclick: () => removePicked() });
  const cancel = button("Cancel", { class: "small", onclick: () => leave() });
  const bar = h(
    "div",
    { class: "select-bar", role: "group", "aria-label": "Selected todos", hidden: true },
    h("div", { class: "field checkbox" }, all, h("label", { for: "select-all" }, "Select all on this page")),
    count,
    h("div", { class: "select-actions" }, markDone, markOpen, remove, cancel),
  );

  const pickedTodos = () => page.items().filter((todo) => picked.has(todo.id));
  const boxOf = (id) => page.rows.row(id)?.querySelector(".todo-select");

  /** The bar as the picks are now; picks no longer on the page (a reload, a change elsewhere) are dropped. */
  function sync() {
    const items = page.items();
    for (const id of picked) if (!items.some((todo) => todo.id === id)) picked.delete(id);
    toggle.hidden = on || !items.length;
    bar.hidden = !on;
    if (!on) return;
    const chosen = pickedTodos();
    count.textContent = `${chosen.length} selected`;
    all.checked = items.length > 0 && chosen.length === items.length;
    all.indeterminate = chosen.length > 0 && chosen.length < items.length;
    markDone.disabled = !chosen.some((todo) => !todo.completed);
    markOpen.disabled = !chosen.some((todo) => todo.completed);
    remove.disabled = !chosen.length;
  }

  function pick(id, yes) {
    if (yes) picked.add(id);
    else picked.delete(id);
    page.rows.row(id)?.classList.toggle("selected", yes);
    const box = boxOf(id);
    if (box) box.checked = yes;
    sync();
  }

  function pickAll(yes) {
    for (const todo of page.items()) pick(todo.id, yes);
  }

  function drawRow(li, todo, details) {
    const id = `select-${todo.id}`;
    const chosen = picked.has(todo.id);
    const box = h("input", {
      type: "checkbox",
      id,
      class: "todo-select",
      checked: chosen,
      "aria-label": `Select “${todo.title}”`,
      onchange: () => pick(todo.id, box.checked),
    });
    li.className = `todo selecting${todo.completed ? " done" : ""}${chosen ? " selected" : ""}`;
    li.replaceChildren(box, h("div", { class: "todo-body" }, h("label", { for: id, class: "todo-title" }, todo.title), details));
    // A tap anywhere on the row picks it, as on a phone's own lists (the title is the box's label).
    li.onclick = (event) => {
      if (on && !event.target.closest("input, button, a, label, summary")) box.click();
    };
  }

  function enter() {
    on = true;
    picked.clear();
    page.rows.refresh();
    // Done todos can be picked too: show them, rather than pick what cannot be seen.
    if (!page.rows.completed.hidden) page.rows.completed.open = true;
    sync();
    const first = [page.rows.element, page.rows.completed].map((list) => list.querySelector(".todo-select")).find(Boolean);
    (first || all).focus();
  }

  function leave({ focus = true } = {}) {
    on = false;
    picked.clear();
    page.rows.refresh();
    sync();
    if (focus) toggle.focus();
  }

  // Every picked todo shows its new state at once; each PATCH that Keel refuses puts its todo back,
  // with the reason in its row. Offline, each is queued and its row says it waits.
  async function mark(completed) {
    const chosen = pickedTodos().filter((todo) => todo.completed !== completed);
    leave();
    if (!chosen.length) return;
    const at = (id) => page.items().findIndex((item) => item.id === id);
    for (const todo of chosen) page.items()[at(todo.id)] = { ...todo, completed };
    page.redraw();
    const busy = (id, yes) => {
      const li = page.rows.row(id);
      if (li && yes) li.dataset.busy = "true";
      else if (li) delete li.dataset.busy;
    };
    for (const todo of chosen) busy(todo.id, true);
    let refused = 0;
    let queued = 0;
    await inTurns(chosen, async (todo) => {
      try {
        const saved = await scope.save("tick", todo, { method: "PATCH", body: { completed } });
        busy(todo.id, false);
        if (saved.queued) queued += 1;
        scope.settle(saved.answer);
      } catch (error) {
        busy(todo.id, false);
        refused += 1;
        if (at(todo.id) >= 0) page.items()[at(todo.id)] = todo;
        page.redraw();
        page.rows.showError(todo.id, error);
      }
    });
    const state = completed ? "done" : "not done";
    if (refused) toast(`Marked ${chosen.length - refused} of ${todosText(chosen.length)} ${state}. ${refused} could not be changed: ${refused === 1 ? "its row says" : "their rows say"} why.`);
    else toast(`Marked ${chosen.length === 1 ? `“${chosen[0].title}”` : todosText(chosen.length)} ${state}.${queued ? ` Waiting for the network to send ${chosen.length === 1 ? "it" : "them"}.` : ""}`);
  }

  function removePicked() {
    const chosen = pickedTodos();
    leave({ focus: false });
    scope.removeMany(chosen);
  }

  function keydown(event) {
    if (!on || event.key !== "Escape" || event.target.closest(".todo-edit, dialog")) return;
    event.preventDefault();
    leave();
  }

  return {
    toggle,
    bar,
    sync,
    keydown,
    drawRow,
    get on() {
      return on;
    },
  };
}
