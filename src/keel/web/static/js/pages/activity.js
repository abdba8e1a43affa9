// "Recent security activity" on the account page: what happened to the account, when, from where,
// and a way out for the owner who does not recognise something.

import { request } from "../api.js";
import { button, h, replace } from "../dom.js";

const PAGE_SIZE = 10;

const METHODS = { password: "password", passkey: "passkey", email_code: "emailed code", provider: "another provider" };

/** The event in words, from its `type` and `detail`; an unknown type is shown as it is. */
export function describeActivity(item) {
  const detail = item.detail || {};
  const method = METHODS[detail.method];
  switch (item.type) {
    case "sign_in":
      return method ? `Signed in with ${method}` : "Signed in";
    case "sign_in_failed":
      return method ? `Failed sign-in (wrong ${detail.method === "password" ? "password" : "code"})` : "Failed sign-in";
    case "new_device":
      return "Signed in from a new device";
    case "password_changed":
      return "Password changed";
    case "password_reset":
      return "Password reset by email";
    case "mfa_enabled":
      return "Authenticator app turned on";
    case "mfa_disabled":
      return detail.by === "admin" ? "Second sign-in steps removed by an administrator" : "Authenticator app turned off";
    case "passkey_added":
      return detail.name ? `Passkey “${detail.name}” added` : "Passkey added";
    case "passkey_removed":
      return detail.name ? `Passkey “${detail.name}” removed` : "Passkey removed";
    case "identity_linked":
      return `Connected ${detail.provider || "another provider"}`;
    case "identity_unlinked":
      return `Disconnected ${detail.provider || "another provider"}`;
    case "token_created":
      return detail.name ? `Access token “${detail.name}” created` : "Access token created";
    case "token_revoked":
      return detail.name ? `Access token “${detail.name}” revoked` : "Access token revoked";
    case "session_revoked":
      return detail.sessions === "all" ? "Signed out everywhere" : `Signed out ${detail.device || "a session"}`;
    case "role_changed":
      return `Role changed to ${detail.to || "another role"} by an administrator`;
    case "account_deactivated":
      return "Account deactivated by an administrator";
    case "account_reactivated":
      return "Account reactivated by an administrator";
    default:
      return item.type.replaceAll("_", " ");
  }
}

const UNITS = [
  ["year", 365 * 24 * 3600],
  ["month", 30 * 24 * 3600],
  ["week", 7 * 24 * 3600],
  ["day", 24 * 3600],
  ["hour", 3600],
  ["minute", 60],
];

/** "3 minutes ago", with the exact time as the element's title. */
export function relativeTime(iso, now = Date.now()) {
  const when = new Date(iso);
  const seconds = Math.round((when.getTime() - now) / 1000);
  const format = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const unit = UNITS.find(([, size]) => Math.abs(seconds) >= size);
  const text = unit ? format.format(Math.round(seconds / unit[1]), unit[0]) : "just now";
  return h("time", { datetime: iso, title: when.toLocaleString() }, text);
}

const WORRYING = new Set(["sign_in", "sign_in_failed", "new_device"]);

/**
 * The section's content. `notMe()` is what "This wasn't me" leads to (the account page shows the
 * way out: a password change and signing out everywhere); without it there is no such button, as
 * when an admin reads someone else's history from `path`.
 */
export async function recentActivity({ notMe = null, path = "/users/me/activity", intro = "Sign-ins and changes to how you sign in, newest first." } = {}) {
  const list = h("ol", { class: "activity-list", id: "activity" });
  const more = button("Show older", { class: "small" });
  const actions = h("div", { class: "actions" });
  let offset = 0;
  const load = async () => {
    const page = await request("GET", `${path}?limit=${PAGE_SIZE}&offset=${offset}`);
    offset += page.items.length;
    list.append(...page.items.map((item) => activityItem(item, notMe)));
    // Only while there is more to show (a button's display rule would outweigh `hidden`).
    replace(actions, offset < page.total ? more : null);
    if (!page.total) replace(list, h("li", { class: "muted" }, "Nothing yet."));
  };
  more.addEventListener("click", () => load().catch(() => {}));
  await load();
  return h("div", {}, h("p", { class: "muted" }, intro), list, actions);
}

function activityItem(item, notMe) {
  const where = [item.ip, item.user_agent].filter(Boolean).join(" · ");
  return h(
    "li",
    { dataset: { activity: item.type } },
    h(
      "div",
      {},
      h("p", { class: "activity-what" }, describeActivity(item)),
      h("p", { class: "muted" }, relativeTime(item.created_at), where ? ` · ${where}` : ""),
    ),
    notMe && WORRYING.has(item.type) ? button("This wasn't me", { class: "small", onclick: () => notMe() }) : null,
  );
}
