// The admin users page: search accounts, change a role, deactivate, delete.

import { currentUser, request } from "../api.js";
import { button, confirmDialog, field, h, replace, time, toast } from "../dom.js";

const PAGE_SIZE = 20;

export async function users(container, ctx) {
  ctx.title("Users");
  const me = currentUser();
  const filters = { q: "", role: "", is_active: "", offset: 0 };
  const rows = h("tbody");
  const summary = h("p", { class: "muted", role: "status", tabindex: -1 });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });

  let loads = 0;

  async function load({ focusSummary = false } = {}) {
    const seq = ++loads;
    const page = await request("GET", "/admin/users", {
      query: { q: filters.q.trim(), role: filters.role, is_active: filters.is_active, limit: PAGE_SIZE, offset: filters.offset },
    });
    if (seq !== loads || !ctx.active) return; // a newer search is on its way
    replace(rows, page.items.map((user) => row(user)));
    if (!page.items.length) rows.append(h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No users match.")));
    summary.textContent = `${page.total} ${page.total === 1 ? "user" : "users"}`;
    const pages = Math.max(1, Math.ceil(page.total / PAGE_SIZE));
    const current = Math.floor(filters.offset / PAGE_SIZE) + 1;
    replace(
      pager,
      button("Previous", { disabled: current <= 1, onclick: () => move(-PAGE_SIZE) }),
      h("span", {}, `Page ${current} of ${pages}`),
      button("Next", { disabled: current >= pages, onclick: () => move(PAGE_SIZE) }),
    );
    pager.hidden = pages <= 1;
    if (focusSummary) summary.focus();
  }

  function move(delta) {
    filters.offset = Math.max(0, filters.offset + delta);
    load().catch(report);
  }

  function report(error) {
    if (error.status !== 401) toast(error.detail);
  }

  /** Draw one account into `tr` (a new row, or the same row again after a change). */
  function row(user, tr = h("tr")) {
    const self = user.id === me.id;
    tr.dataset.user = String(user.id);
    const error = h("p", { class: "field-error", role: "alert", hidden: true });
    // Role and status change only after a confirmation: a keyboard user browsing the
    // options with the arrow keys must not promote anyone by accident.
    const update = async (control, change, question, done) => {
      error.hidden = true;
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
        row(updated, tr);
        toast(done);
        tr.querySelector(control === role ? "select" : "input[type=checkbox]").focus();
      } catch (err) {
        role.disabled = active.disabled = false;
        role.value = user.role;
        active.checked = user.is_active;
        if (err.status === 401) return;
        error.textContent = err.detail;
        error.hidden = false;
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
          update(
            role,
            { role: role.value },
            promote ? `Make ${user.username} an admin? They will be signed out everywhere.` : `Make ${user.username} a regular user? They will be signed out everywhere.`,
            `${user.username} is now ${promote ? "an admin" : "a user"}.`,
          );
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
    const remove = button("Delete", {
      class: "small danger-text",
      disabled: self,
      "aria-label": `Delete ${user.username}`,
      onclick: async () => {
        if (!(await confirmDialog(`Delete ${user.username} (${user.email}) with all their todos and posts?`))) return;
        try {
          await request("DELETE", `/admin/users/${user.id}`);
          toast(`${user.username} is deleted.`);
          await load({ focusSummary: true });
        } catch (err) {
          if (err.status === 401) return;
          error.textContent = err.detail;
          error.hidden = false;
        }
      },
    });
    replace(
      tr,
      h(
        "td",
        { "data-label": "User" },
        h("strong", {}, user.username),
        self ? h("span", { class: "badge published" }, "You") : null,
        h("br"),
        h("span", { class: "muted" }, user.email),
        user.is_verified ? null : h("span", { class: "badge draft" }, "unverified"),
        error,
      ),
      h("td", { "data-label": "Role" }, role),
      h("td", { "data-label": "Active" }, active),
      h("td", { "data-label": "Joined" }, time(user.created_at)),
      h("td", { "data-label": "" }, remove),
    );
    return tr;
  }

  const toolbar = h(
    "form",
    { class: "toolbar", role: "search" },
    field("Search", "q", { type: "search", maxlength: 254, placeholder: "Email or username" }),
    field("Role", "role", { control: "select", options: [["", "Any role"], ["user", "Users"], ["admin", "Admins"]] }),
    field("Status", "is_active", { control: "select", options: [["", "Any status"], ["true", "Active"], ["false", "Deactivated"]] }),
    h("button", { type: "submit" }, "Search"),
  );
  const apply = (event) => {
    if (event) event.preventDefault();
    filters.q = toolbar.elements.q.value;
    filters.role = toolbar.elements.role.value;
    filters.is_active = toolbar.elements.is_active.value;
    filters.offset = 0;
    load().catch(report);
  };
  toolbar.addEventListener("submit", apply);
  toolbar.elements.role.addEventListener("change", () => apply());
  toolbar.elements.is_active.addEventListener("change", () => apply());

  await load();
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
    pager,
  );
}
