// The account page's "Access tokens": personal access tokens for scripts and command-line tools.
// Make one (name, scopes, expiry), see its secret once in a dialog with a Copy button, list them
// with when each was last used, revoke one.

import { request } from "../api.js";
import { button, confirmDialog, field, formAlert, h, replace, time, toast } from "../dom.js";
import { inlineError, onSubmit } from "../forms.js";
import { CANCELLED, withReauth } from "../reauth.js";

const SCOPES = [
  ["profile:read", "Read your profile"],
  ["todos:read", "Read your todos"],
  ["todos:write", "Add, change and delete your todos"],
  ["posts:read", "Read posts, your drafts included"],
  ["posts:write", "Write, change and vote on posts"],
  ["lists:read", "Read your shared lists"],
  ["lists:write", "Change your shared lists"],
];
const EXPIRY = [
  ["7", "7 days"],
  ["30", "30 days"],
  ["90", "90 days"],
  ["365", "1 year"],
];

/** The scopes as checkboxes in a fieldset; its errors show under the legend's group. */
function scopeChoices() {
  return h(
    "fieldset",
    { class: "field scopes", dataset: { field: "scopes" }, "aria-describedby": "token-scopes-error" },
    h("legend", {}, "Scopes"),
    h("p", { class: "hint" }, "What the token may do. It can never sign in, manage tokens, change your account or use administration."),
    SCOPES.map(([value, label]) => {
      const id = `token-scope-${value.replace(":", "-")}`;
      return h("div", { class: "checkbox" }, h("input", { type: "checkbox", id, name: "scopes", value }), h("label", { for: id }, h("code", {}, value), " ", label));
    }),
    h("p", { class: "field-error", id: "token-scopes-error", hidden: true }),
  );
}

/** The secret, shown this once in a modal dialog with a Copy button; resolves when it is closed. */
function showSecret(created) {
  return new Promise((resolve) => {
    const secret = h("input", { id: "new-token-value", class: "token-value", type: "text", readonly: true, value: created.token, "aria-describedby": "new-token-note", spellcheck: "false", autocomplete: "off" });
    const copy = button("Copy", {
      class: "primary",
      "aria-label": "Copy the token",
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(created.token);
          toast("Token copied.");
        } catch {
          secret.select();
          toast("Copying is not allowed here: the token is selected, copy it yourself.");
        }
      },
    });
    const done = button("Done", { value: "done" });
    const dialog = h(
      "dialog",
      { class: "confirm token-dialog", "aria-labelledby": "new-token-title", "aria-describedby": "new-token-note" },
      h("h2", { id: "new-token-title" }, `Your new token “${created.name}”`),
      h("p", { id: "new-token-note" }, "Copy it now: it is shown only this once. Send it as ", h("code", {}, "Authorization: Bearer …"), "."),
      h("label", { for: "new-token-value", class: "visually-hidden" }, "Token"),
      secret,
      h("div", { class: "actions" }, copy, done),
    );
    const close = () => {
      dialog.close();
      dialog.remove();
      resolve();
    };
    done.addEventListener("click", close);
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      close();
    });
    document.body.append(dialog);
    dialog.showModal();
    secret.focus();
    secret.select();
  });
}

function createForm(created) {
  const form = h(
    "form",
    { class: "token-form", novalidate: true, "aria-label": "New access token" },
    formAlert(),
    field("Name", "name", { required: true, maxlength: 100, hint: "What it is for, such as the script or machine that uses it." }),
    scopeChoices(),
    field("Expires after", "expires_in_days", { control: "select", options: EXPIRY }),
    h("div", { class: "actions start" }, h("button", { type: "submit", class: "primary" }, "Create token")),
  );
  form.querySelector("select[name=expires_in_days]").value = "90";
  onSubmit(form, async (data) => {
    const scopes = [...form.querySelectorAll("input[name=scopes]:checked")].map((input) => input.value);
    const body = { name: data.name.trim(), scopes, expires_in_days: Number(data.expires_in_days) };
    const token = await withReauth(() => request("POST", "/tokens", { body }));
    if (token === CANCELLED) return;
    form.reset();
    form.querySelector("select[name=expires_in_days]").value = "90";
    await showSecret(token);
    await created();
    form.querySelector("input[name=name]").focus();
  });
  return form;
}

/** One token with its scopes and dates; `redraw()` shows the list again after it is revoked. */
function tokenItem(token, redraw) {
  const error = inlineError();
  const used = token.last_used_at ? ["last used ", time(token.last_used_at)] : ["never used"];
  const expires = token.expires_at ? [" · expires ", time(token.expires_at)] : [" · never expires"];
  return h(
    "li",
    { dataset: { token: token.id } },
    h(
      "div",
      {},
      h("p", { class: "device" }, token.name),
      h("p", { class: "token-scopes" }, token.scopes.map((scope) => h("code", {}, scope)).flatMap((code, i) => (i ? [" ", code] : [code]))),
      h("p", { class: "muted" }, "Created ", time(token.created_at), expires, " · ", used),
      error.element,
    ),
    button("Revoke", {
      class: "small",
      "aria-label": `Revoke the token ${token.name}`,
      onclick: async () => {
        if (!(await confirmDialog(`Revoke the token “${token.name}”? Anything using it stops working at once.`, { confirm: "Revoke" }))) return;
        error.hide();
        try {
          await request("DELETE", `/tokens/${token.id}`);
        } catch (err) {
          return error.show(err);
        }
        toast("Token revoked.");
        await redraw();
      },
    }),
  );
}

/** The section's content: the list of tokens, then the form that makes one. */
export async function accessTokens() {
  const list = h("ul", { class: "token-list", "aria-label": "Access tokens" });
  const empty = h("p", { class: "muted" }, "No access tokens yet.");
  const draw = async () => {
    const tokens = await request("GET", "/tokens");
    empty.hidden = tokens.length > 0;
    replace(list, tokens.map((token) => tokenItem(token, draw)));
  };
  await draw();
  return h(
    "div",
    { class: "access-tokens" },
    h("p", { class: "muted" }, "Tokens let scripts and command-line tools use the API as you, within the scopes you choose."),
    empty,
    list,
    h("h3", {}, "New access token"),
    createForm(draw),
  );
}
