// The todo page's lists: the switcher (Inbox, my lists, lists shared with me, and a form to start
// a list) and the heading of the list on screen, with what its owner can do to it (rename, delete).
// Which list is on screen lives in the address (`/todos?list=7`): the switcher's entries are
// links, so reload, back and forward all work.

import { etagOf, request } from "../api.js";
import { button, confirmDialog, field, formAlert, h, replace, toast } from "../dom.js";
import { changedElsewhere, editForm, inlineError, onSubmit, reloadButton } from "../forms.js";

const ROLE_WORDS = { owner: "you own it", editor: "you can edit", viewer: "you can view" };

/** The address of a list's todos (null: the inbox). */
export function listAddress(listId) {
  return listId === null ? "/todos" : `/todos?list=${listId}`;
}

function plural(count, one, many) {
  return `${count} ${count === 1 ? one : many}`;
}

/**
 * The switcher for `lists` (ListRead items) with `currentId` marked; `created(list)` opens a list
 * just made. `update(lists)` draws it again, for a list renamed, added or gone elsewhere.
 */
export function listSwitcher(lists, currentId, { created }) {
  const nav = h("nav", { class: "lists-nav", id: "lists", "aria-label": "Lists" });
  const entry = (list) =>
    h(
      "li",
      {},
      h(
        "a",
        { href: listAddress(list.id), "aria-current": list.id === currentId ? "page" : false, dataset: { listId: list.id } },
        h("span", { class: "list-name" }, list.name),
        h("span", { class: "list-count" }, list.role === "owner" ? plural(list.members_count, "member", "members") : `by ${list.owner.username}`),
      ),
    );
  const group = (title, items, emptyText) => [
    h("h2", {}, title),
    items.length ? h("ul", {}, items.map(entry)) : h("p", { class: "muted small-text" }, emptyText),
  ];
  const form = h(
    "form",
    { class: "new-list", novalidate: true, "aria-label": "Start a list" },
    formAlert(),
    field("New list", "name", { required: true, maxlength: 100, placeholder: "Groceries, Trip…" }),
    h("button", { type: "submit", class: "small" }, "Create list"),
  );
  onSubmit(form, async (data) => {
    const list = await request("POST", "/lists", { body: { name: data.name } });
    form.reset();
    toast(`List “${list.name}” created.`);
    created(list);
  });
  const update = (items) => {
    const mine = items.filter((list) => list.role === "owner");
    const shared = items.filter((list) => list.role !== "owner");
    replace(
      nav,
      h("ul", {}, h("li", {}, h("a", { href: "/todos", "aria-current": currentId === null ? "page" : false }, h("span", { class: "list-name" }, "Inbox"), h("span", { class: "list-count" }, "private")))),
      group("My lists", mine, "No lists yet."),
      group("Shared with me", shared, "Nothing shared with you yet."),
      form,
    );
  };
  update(lists);
  return { element: nav, update };
}

/**
 * The heading of the list on screen, with its owner's Rename and Delete and everyone's Members.
 * `list` is the ListRead read with its ETag (null: the inbox). `renamed(list)` follows a rename;
 * `members()` opens the members dialog; `status` is the live-updates indicator to show beside it.
 */
export function listHeading(ctx, list, { renamed, members, status }) {
  const head = h("div", { class: "list-head" });
  let shown = list;
  const error = inlineError();
  const draw = () => {
    const toLists = h("a", { href: "#lists", class: "to-lists" }, "All lists");
    if (!shown) {
      replace(head, h("div", { class: "list-title" }, h("h2", { id: "list-heading" }, "Inbox"), h("p", { class: "muted" }, "Your private todos."), status), h("div", { class: "list-actions" }, toLists), error.element);
      return;
    }
    const owner = shown.role === "owner";
    replace(
      head,
      h(
        "div",
        { class: "list-title" },
        h("h2", { id: "list-heading" }, shown.name),
        h(
          "p",
          { class: "muted" },
          owner ? `Your list · ${plural(shown.members_count, "member", "members")}` : `Shared by ${shown.owner.username} · ${ROLE_WORDS[shown.role]}`,
        ),
        status,
      ),
      h(
        "div",
        { class: "list-actions" },
        toLists,
        button("Members", { class: "small", "aria-haspopup": "dialog", onclick: members }),
        owner ? button("Rename", { class: "small", onclick: rename }) : null,
        owner ? button("Delete list", { class: "small danger-text", onclick: remove }) : null,
      ),
      error.element,
    );
  };
  const current = async () => (etagOf(shown) ? shown : request("GET", `/lists/${shown.id}`));
  const reload = async () => {
    shown = await request("GET", `/lists/${shown.id}`);
    error.hide();
    draw();
    head.querySelector(".list-actions .danger-text")?.focus();
  };
  const remove = async () => {
    error.hide();
    try {
      const latest = await current();
      const question = `Delete “${latest.name}” and all its todos, for every member? This cannot be undone.`;
      if (!(await confirmDialog(question, { confirm: "Delete list" }))) return;
      await request("DELETE", `/lists/${latest.id}`, { ifMatch: etagOf(latest) });
      ctx.navigate("/todos", { state: { notice: `The list “${latest.name}” was deleted.` } });
    } catch (err) {
      error.show(err, ...(changedElsewhere(err) ? [" ", reloadButton(reload)] : []));
    }
  };
  function rename() {
    error.hide();
    const cancel = () => {
      draw();
      head.querySelector(".list-actions button:nth-of-type(2)")?.focus();
    };
    const form = h(
      "form",
      { class: "list-rename", novalidate: true, "aria-label": "Rename the list" },
      formAlert(),
      field("List name", "name", { required: true, maxlength: 100 }),
      h("div", { class: "actions start" }, button("Cancel", { onclick: cancel }), h("button", { type: "submit", class: "primary" }, "Save name")),
    );
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") cancel();
    });
    const open = (item) => {
      editForm(form, item, {
        load: () => request("GET", `/lists/${item.id}`),
        save: async (data, etag) => {
          shown = await request("PATCH", `/lists/${item.id}`, { body: { name: data.name }, ifMatch: etag });
          toast("List renamed.");
          renamed(shown);
          cancel();
          return shown;
        },
      });
      replace(head, form);
      form.elements.name.focus();
    };
    current().then(open, (err) => error.show(err));
  }
  draw();
  return {
    element: head,
    /** Show a version of the list that arrived from elsewhere (a rename, a new member count). */
    update(next) {
      if (!shown || next.id !== shown.id || head.querySelector("form")) return;
      shown = { ...shown, ...next };
      draw();
    },
  };
}
