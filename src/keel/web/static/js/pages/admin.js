// The admin users page: search accounts, change a role, deactivate, delete.

import { currentUser, request } from "../api.js";
import { button, confirmDialog, field, h, replace, toast } from "../dom.js";
import { inlineError } from "../forms.js";
import { drawPager, liveList, pageCount, pageQuery, pager } from "../list.js";
import { recentActivity, relativeTime } from "./activity.js";

const COLUMNS = ["User", "Role", "Active", "Verified", "Last seen", h("span", { class: "visually-hidden" }, "Actions")];

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
      if (!page.items.length) rows.append(h("tr", {}, h("td", { colspan: COLUMNS.length, class: "empty" }, "No users match.")));
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
        h("thead", {}, h("tr", {}, COLUMNS.map((text) => h("th", { scope: "col" }, text)))),
        rows,
      ),
    ),
    nav,
  );
}

// How long typing must pause before the search runs: a query per word, not per key.
const SEARCH_PAUSE_MS = 250;

/**
 * Search and filters; a change of role or status applies at once, the search as you type (after a
 * short pause; only the latest answer is drawn) or on submit.
 */
function searchForm(list) {
  const form = h(
    "form",
    { class: "toolbar", role: "search" },
    field("Search", "q", { type: "search", maxlength: 254, placeholder: "Email or username" }),
    field("Role", "role", { control: "select", options: [["", "Any role"], ["user", "Users"], ["admin", "Admins"]] }),
    field("Status", "is_active", { control: "select", options: [["", "Any status"], ["true", "Active"], ["false", "Deactivated"]] }),
    h("button", { type: "submit" }, "Search"),
  );
  let pause = null;
  const apply = (event) => {
    if (event) event.preventDefault();
    clearTimeout(pause); // a search still waiting is covered by this one
    const { q, role, is_active } = form.elements;
    list.show({ q: q.value, role: role.value, is_active: is_active.value });
  };
  form.addEventListener("submit", apply);
  form.elements.role.addEventListener("change", () => apply());
  form.elements.is_active.addEventListener("change", () => apply());
  form.elements.q.addEventListener("input", () => {
    clearTimeout(pause);
    pause = setTimeout(apply, SEARCH_PAUSE_MS);
  });
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
    const putBack = () => {
      role.value = user.role;
      active.checked = user.is_active;
      verified.checked = user.is_verified;
    };
    if (!confirmed) {
      putBack();
      control.focus();
      return;
    }
    const controls = [role, active, verified];
    for (const each of controls) each.disabled = true;
    try {
      const updated = await request("PATCH", `/admin/users/${user.id}`, { body: change });
      userRow(updated, table, tr);
      toast(done);
      tr.querySelector(`[data-control="${control.dataset.control}"]`).focus();
    } catch (err) {
      for (const each of controls) each.disabled = self;
      putBack();
      if (err.status === 401) return;
      error.show(err);
      control.focus();
    }
  };
  const role = h(
    "select",
    {
      "data-control": "role",
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
    "data-control": "active",
    "aria-label": `${user.username} is active`,
    onchange: () =>
      update(
        active,
        { is_active: active.checked },
        active.checked ? `Let ${user.username} sign in again?` : `Deactivate ${user.username}? They are signed out everywhere and cannot sign in.`,
        active.checked ? `${user.username} is active again.` : `${user.username} is deactivated and signed out.`,
      ),
  });
  // Verifying by hand is for an address confirmed another way; taking it back makes the account
  // verify its email again before it can post.
  const verified = h("input", {
    type: "checkbox",
    checked: user.is_verified,
    disabled: self,
    "data-control": "verified",
    "aria-label": `${user.username}'s email is verified`,
    onchange: () =>
      update(
        verified,
        { is_verified: verified.checked },
        verified.checked ? `Mark ${user.email} as verified without the emailed link?` : `Mark ${user.email} as not verified? ${user.username} must verify it again to post.`,
        verified.checked ? `${user.username}'s email is verified.` : `${user.username}'s email is no longer verified.`,
      ),
  });
  replace(
    tr,
    whoCell(user, self, error),
    h("td", { "data-label": "Role" }, role),
    h("td", { "data-label": "Active" }, active),
    h("td", { "data-label": "Verified" }, verified),
    h("td", { "data-label": "Last seen" }, user.last_seen_at ? relativeTime(user.last_seen_at) : h("span", { class: "muted", title: "No sign-in or token use on record" }, "Not on record")),
    h("td", { "data-label": "" }, h("div", { class: "row-actions" }, activityButton(user, error), deleteButton(user, self, error, table.reload))),
  );
  return tr;
}

/** The date alone (the full time as its title): the table has room for one line. */
function day(iso) {
  const when = new Date(iso);
  return h("time", { datetime: iso, title: when.toLocaleString() }, when.toLocaleDateString(undefined, { dateStyle: "medium" }));
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
    h("br"),
    h("small", { class: "muted" }, "Joined ", day(user.created_at)),
    error.element,
  );
}

/** The account's security history (sign-ins, factors, tokens) in a dialog, newest first. */
function activityButton(user, error) {
  const opener = button("Activity", {
    class: "small",
    "aria-label": `Security activity of ${user.username}`,
    onclick: async () => {
      error.hide();
      let content;
      try {
        content = await recentActivity({
          path: `/admin/users/${user.id}/activity`,
          intro: `Sign-ins and changes to how ${user.username} signs in, newest first.`,
        });
      } catch (err) {
        if (err.status !== 401) error.show(err);
        return;
      }
      const heading = h("h2", { id: "activity-of" }, `Activity of ${user.username}`);
      const close = button("Close", { class: "primary" });
      const dialog = h("dialog", { class: "confirm token-dialog activity-dialog", "aria-labelledby": "activity-of" }, heading, content, h("div", { class: "actions" }, close));
      const done = () => {
        dialog.close();
        dialog.remove();
        opener.focus();
      };
      close.addEventListener("click", done);
      dialog.addEventListener("cancel", (event) => {
        event.preventDefault();
        done();
      });
      document.body.append(dialog);
      dialog.showModal();
      close.focus();
    },
  });
  return opener;
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
