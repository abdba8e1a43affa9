// The admin users page: search accounts, change a role, deactivate, delete.

import { currentUser, request } from "../api.js";
import { button, confirmDialog, field, h, replace, time, toast } from "../dom.js";

const PAGE_SIZE = 20;

export async function users(container) {
  document.title = "Users · Keel";
  const me = currentUser();
  const filters = { q: "", role: "", is_active: "", offset: 0 };
  const rows = h("tbody");
  const summary = h("p", { class: "muted", role: "status" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });

  async function load() {
    const page = await request("GET", "/admin/users", {
      query: { q: filters.q.trim(), role: filters.role, is_active: filters.is_active, limit: PAGE_SIZE, offset: filters.offset },
    });
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
  }

  function move(delta) {
    filters.offset = Math.max(0, filters.offset + delta);
    load().catch(report);
  }

  function report(error) {
    if (error.status !== 401) toast(error.detail);
  }

  function row(user) {
    const self = user.id === me.id;
    const error = h("p", { class: "field-error", role: "alert", hidden: true });
    const tr = h("tr", { dataset: { user: user.id } });
    const update = async (change, done) => {
      error.hidden = true;
      try {
        const updated = await request("PATCH", `/admin/users/${user.id}`, { body: change });
        tr.replaceWith(row(updated));
        toast(done);
      } catch (err) {
        if (err.status === 401) return;
        error.textContent = err.detail;
        error.hidden = false;
        tr.querySelector("select").value = user.role;
        tr.querySelector("input[type=checkbox]").checked = user.is_active;
      }
    };
    const role = h(
      "select",
      {
        "aria-label": `Role of ${user.username}`,
        disabled: self,
        onchange: (event) => update({ role: event.target.value }, `${user.username} is now ${event.target.value === "admin" ? "an admin" : "a user"}.`),
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
      onchange: (event) => update({ is_active: event.target.checked }, event.target.checked ? `${user.username} is active again.` : `${user.username} is deactivated and signed out.`),
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
          await load();
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
