// The admin users page: search accounts, change a role, deactivate, delete.

import { currentUser, request } from "../api.js";
import { button, confirmDialog, field, h, replace, time, toast } from "../dom.js";
import { inlineError } from "../forms.js";
import { drawPager, liveList, pageCount, pageQuery, pager } from "../list.js";

function fetchUsers(view) {
  return request("GET", "/admin/users", {
    query: { q: view.q.trim(), role: view.role, is_active: view.is_active, ...pageQuery(view.page) },
  });
}

export async function users(container, ctx) {
  ctx.title("Users");
  const table = { me: currentUser(), reload: (options) => list.load(options) };
  const rows = h("tbody");
  const summary = h("p", { class: "muted", role: "status", tabindex: -1 });
  const nav = pager();
  const list = liveList(ctx, { q: "", role: "", is_active: "", page: 1 }, {
    fetch: fetchUsers,
    draw(page, { focusSummary = false }) {
      replace(rows, page.items.map((user) => userRow(user, table)));
      if (!page.items.length) rows.append(h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No users match.")));
      summary.textContent = `${page.total} ${page.total === 1 ? "user" : "users"}`;
      drawPager(nav, { page: list.view.page, pages: pageCount(page.total), go: (to) => list.show({ page: to }) });
      if (focusSummary) summary.focus();
    },
  });
  const toolbar = searchForm(list);
  await list.load();
  replace(
    container,
    h("h1", {}, "Users"),
    toolbar,
    summary,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "users" },
        h("thead", {}, h("tr", {}, ["User", "Role", "Active", "Joined", h("span", { class: "visually-hidden" }, "Actions")].map((text) => h("th", { scope: "col" }, text)))),
        rows,
      ),
    ),
    nav,
  );
}

/** Search and filters; a change of role or status applies at once, the search on submit. */
function searchForm(list) {
  const form = h(
    "form",
    { class: "toolbar", role: "search" },
    field("Search", "q", { type: "search", maxlength: 254, placeholder: "Email or username" }),
    field("Role", "role", { control: "select", options: [["", "Any role"], ["user", "Users"], ["admin", "Admins"]] }),
    field("Status", "is_active", { control: "select", options: [["", "Any status"], ["true", "Active"], ["false", "Deactivated"]] }),
    h("button", { type: "submit" }, "Search"),
  );
  const apply = (event) => {
    if (event) event.preventDefault();
    const { q, role, is_active } = form.elements;
    list.show({ q: q.value, role: role.value, is_active: is_active.value });
  };
  form.addEventListener("submit", apply);
  form.elements.role.addEventListener("change", () => apply());
  form.elements.is_active.addEventListener("change", () => apply());
  return form;
}

/**
 * Draw one account into `tr` (a new row, or the same row again after a change). `table.me`,
 * the signed-in admin, cannot change or delete themself here; `table.reload(options)` loads
 * the list again.
 */
function userRow(user, table, tr = h("tr")) {
  const self = user.id === table.me.id;
  tr.dataset.user = String(user.id);
  const error = inlineError();
  // Role and status change only after a confirmation: a keyboard user browsing the
  // options with the arrow keys must not promote anyone by accident.
  const update = async (control, change, question, done) => {
    error.hide();
    const confirmed = await confirmDialog(question, { confirm: "Yes, change it", danger: false });
    if (!confirmed) {
      role.value = user.role;
      active.checked = user.is_active;
      control.focus();
      return;
    }
    role.disabled = active.disabled = true;
    try {
      const updated = await request("PATCH", `/admin/users/${user.id}`, { body: change });
      userRow(updated, table, tr);
      toast(done);
      tr.querySelector(control === role ? "select" : "input[type=checkbox]").focus();
    } catch (err) {
      role.disabled = active.disabled = false;
      role.value = user.role;
      active.checked = user.is_active;
      if (err.status === 401) return;
      error.show(err);
      control.focus();
    }
  };
  const role = h(
    "select",
    {
      "aria-label": `Role of ${user.username}`,
      disabled: self,
      onchange: () => {
        const promote = role.value === "admin";
        const question = `Make ${user.username} ${promote ? "an admin" : "a regular user"}? They will be signed out everywhere.`;
        update(role, { role: role.value }, question, `${user.username} is now ${promote ? "an admin" : "a user"}.`);
      },
    },
    h("option", { value: "user" }, "user"),
    h("option", { value: "admin" }, "admin"),
  );
  role.value = user.role;
  const active = h("input", {
    type: "checkbox",
    checked: user.is_active,
    disabled: self,
    "aria-label": `${user.username} is active`,
    onchange: () =>
      update(
        active,
        { is_active: active.checked },
        active.checked ? `Let ${user.username} sign in again?` : `Deactivate ${user.username}? They are signed out everywhere and cannot sign in.`,
        active.checked ? `${user.username} is active again.` : `${user.username} is deactivated and signed out.`,
      ),
  });
  replace(
    tr,
    whoCell(user, self, error),
    h("td", { "data-label": "Role" }, role),
    h("td", { "data-label": "Active" }, active),
    h("td", { "data-label": "Joined" }, time(user.created_at)),
    h("td", { "data-label": "" }, deleteButton(user, self, error, table.reload)),
  );
  return tr;
}

/** Who the account is, and the error of the last change to it. */
function whoCell(user, self, error) {
  return h(
    "td",
    { "data-label": "User" },
    h("strong", {}, user.username),
    self ? h("span", { class: "badge published" }, "You") : null,
    h("br"),
    h("span", { class: "muted" }, user.email),
    user.is_verified ? null : h("span", { class: "badge draft" }, "unverified"),
    error.element,
  );
}

function deleteButton(user, self, error, reload) {
  return button("Delete", {
    class: "small danger-text",
    disabled: self,
    "aria-label": `Delete ${user.username}`,
    onclick: async () => {
      if (!(await confirmDialog(`Delete ${user.username} (${user.email}) with all their todos and posts?`))) return;
      try {
        await request("DELETE", `/admin/users/${user.id}`);
        toast(`${user.username} is deleted.`);
        await reload({ focusSummary: true });
      } catch (err) {
        error.show(err);
      }
    },
  });
}
