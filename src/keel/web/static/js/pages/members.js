// The members dialog of a shared list: who is in it and with which role; its owner invites by
// username, changes roles and removes members; any other member can leave. A modal <dialog>, so
// focus stays inside it until it is closed (Escape or Close), and then returns to where it was.

import { currentUser, request } from "../api.js";
import { button, confirmDialog, field, formAlert, h, replace, toast } from "../dom.js";
import { inlineError, onSubmit } from "../forms.js";

const ROLES = [
  ["editor", "Editor"],
  ["viewer", "Viewer"],
];
const ROLE_NAMES = { owner: "Owner", editor: "Editor", viewer: "Viewer" };

/**
 * Open the dialog for `list` (a ListRead). `changed()` is called after any change made here (the
 * page reloads its members); `left()` after the user left the list; `opener()` is the button that
 * takes focus back when it closes (the page may have drawn it anew meanwhile). Returns `{refresh, close}`,
 * so that live updates can redraw an open dialog.
 */
export function openMembers(list, { changed, left, opener }) {
  const me = currentUser();
  const owner = list.role === "owner";
  const items = h("ul", { class: "member-list", "aria-label": "Members" });
  const error = inlineError();
  const status = h("p", { class: "visually-hidden", role: "status" });
  const close = () => {
    if (!dialog.open) return;
    dialog.close();
    dialog.remove();
    opener()?.focus();
  };
  const refresh = async () => {
    try {
      const members = await request("GET", `/lists/${list.id}/members`);
      replace(items, members.map(memberItem));
    } catch (err) {
      if (err.status === 404) return close();
      error.show(err);
    }
  };
  const act = async (work, message) => {
    error.hide();
    try {
      await work();
      status.textContent = message;
      toast(message);
      await changed();
      await refresh();
    } catch (err) {
      error.show(err);
    }
  };
  function memberItem(member) {
    const name = member.user.username;
    const isMe = member.user.id === me?.id;
    const role =
      owner && member.role !== "owner"
        ? field(`Role of ${name}`, "role", { control: "select", options: ROLES, class: "member-role" })
        : h("span", { class: "badge role" }, ROLE_NAMES[member.role]);
    const select = role.querySelector?.("select");
    if (select) {
      select.value = member.role;
      select.addEventListener("change", () =>
        act(() => request("PATCH", `/lists/${list.id}/members/${member.user.id}`, { body: { role: select.value } }), `${name} is now ${ROLE_NAMES[select.value].toLowerCase()}.`),
      );
    }
    let action = null;
    if (owner && member.role !== "owner") {
      action = button("Remove", {
        class: "small danger-text",
        "aria-label": `Remove ${name}`,
        onclick: async () => {
          if (!(await confirmDialog(`Remove ${name} from “${list.name}”?`, { confirm: "Remove" }))) return;
          await act(() => request("DELETE", `/lists/${list.id}/members/${member.user.id}`), `${name} was removed.`);
        },
      });
    } else if (isMe && member.role !== "owner") {
      action = button("Leave list", {
        class: "small danger-text",
        onclick: async () => {
          if (!(await confirmDialog(`Leave “${list.name}”? You will no longer see its todos.`, { confirm: "Leave" }))) return;
          error.hide();
          try {
            await request("DELETE", `/lists/${list.id}/members/${member.user.id}`);
            close();
            left();
          } catch (err) {
            error.show(err);
          }
        },
      });
    }
    return h(
      "li",
      { class: "member" },
      h("div", { class: "member-who" }, h("p", { class: "member-name" }, name, isMe ? " (you)" : ""), member.user.full_name ? h("p", { class: "muted" }, member.user.full_name) : null),
      h("div", { class: "member-controls" }, role, action),
    );
  }
  const invite = owner ? inviteForm(list, (message) => act(async () => {}, message)) : null;
  const dialog = h(
    "dialog",
    { class: "members-dialog", "aria-labelledby": "members-title" },
    h("div", { class: "dialog-head" }, h("h2", { id: "members-title" }, `Members of “${list.name}”`), button("Close", { class: "small", onclick: close })),
    items,
    error.element,
    invite,
    status,
  );
  dialog.addEventListener("cancel", (event) => {
    event.preventDefault();
    close();
  });
  document.body.append(dialog);
  dialog.showModal();
  dialog.querySelector(".dialog-head button").focus();
  refresh();
  return { refresh, close, get open() { return dialog.open; } };
}

/** The owner's invitation form; `invited(message)` follows a successful invitation. */
function inviteForm(list, invited) {
  const form = h(
    "form",
    { class: "invite", novalidate: true, "aria-label": "Invite someone" },
    h("h3", {}, "Invite someone"),
    formAlert(),
    h(
      "div",
      { class: "row" },
      field("Username", "username", { required: true, maxlength: 30, autocomplete: "off", spellcheck: "false" }),
      field("Role", "role", { control: "select", options: ROLES }),
    ),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Invite")),
  );
  onSubmit(
    form,
    async (data) => {
      const member = await request("POST", `/lists/${list.id}/members`, { body: { username: data.username.trim(), role: data.role } });
      form.reset();
      form.elements.username.focus();
      await invited(`${member.user.username} was invited as ${ROLE_NAMES[member.role].toLowerCase()}.`);
    },
    {
      codeFields: { user_not_found: "username", already_member: "username" },
      messages: {
        user_not_found: "No one has that username. Check the spelling.",
        already_member: "They are already a member of this list.",
      },
    },
  );
  return form;
}
