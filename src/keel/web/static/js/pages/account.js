// The account page: profile, verification, password, sessions, access tokens, and deleting the account.

import { endSession, etagOf, reloadUser, request, signOut } from "../api.js";
import { describeSignIn } from "../devices.js";
import { button, confirmDialog, field, formAlert, h, replace, time, toast } from "../dom.js";
import { editForm, inlineError, onSubmit } from "../forms.js";
import { CANCELLED, withReauth } from "../reauth.js";
import { strengthHint } from "../strength.js";
import { connectedAccounts, providerError } from "./providers.js";
import { recentActivity } from "./activity.js";
import { security } from "./security.js";
import { accessTokens } from "./tokens.js";

/**
 * Password managers file a password under the account it belongs to; this hidden, unnamed
 * field tells them which (it is never sent: only named fields are).
 */
function usernameHint(user) {
  return h("input", { type: "text", autocomplete: "username", value: user.email, hidden: true, readonly: true, tabindex: -1 });
}

function section(title, ...children) {
  const id = `section-${title.toLowerCase().replace(/\W+/g, "-")}`;
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

export async function page(container, ctx) {
  ctx.title("Account");
  // Read afresh: the page changes the account as it shows it (its ETag), not as it was at sign-in.
  const user = await reloadUser();
  // The version shown, for the profile form to advance and the delete form to name.
  const account = { user };
  const profile = profileForm(account);
  const sessions = h("ul", { class: "session-list" });
  const drawSessions = async () => {
    const rows = await request("GET", "/auth/sessions");
    replace(sessions, rows.map((row) => sessionItem(row, ctx, drawSessions)));
  };
  const password = passwordForm(user, drawSessions);
  const remove = deleteForm(account, ctx);
  const notMe = h("div", { class: "notice error", role: "alert", hidden: true, id: "not-me" });
  const [signInSettings, connected, tokens, activity] = await Promise.all([
    security({ changed: () => drawSessions().catch(() => {}) }),
    connectedAccounts(),
    accessTokens(),
    recentActivity({ notMe: () => showNotMe(notMe, password, ctx) }),
    drawSessions(),
  ]);
  // Connecting a provider that did not work comes back as /account?error=<code>: said once.
  const error = ctx.query.get("error");
  if (error) ctx.replaceLocation("/account");
  replace(
    container,
    h("h1", {}, "Account"),
    error ? h("p", { class: "notice error", role: "alert" }, providerError(error)) : null,
    ctx.state?.notice ? h("p", { class: "notice info", role: "status" }, ctx.state.notice) : null,
    section("Profile", h("p", {}, "Email: ", h("strong", {}, user.email)), verification(user), profile),
    section("Password", password),
    section("Sign-in & security", signInSettings),
    connected ? section("Connected accounts", connected) : null,
    section("Sessions", h("p", { class: "muted" }, "Where your account is signed in. Revoke anything you do not recognise."), sessions, h("div", { class: "actions" }, signOutEverywhere(ctx))),
    section("Access tokens", tokens),
    section("Recent security activity", notMe, activity),
    section("Delete account", remove),
  );
}

function profileForm(account) {
  const form = h(
    "form",
    { novalidate: true },
    formAlert(),
    field("Username", "username", { required: true, minlength: 3, maxlength: 30, autocomplete: "username" }),
    field("Full name", "full_name", { maxlength: 100, autocomplete: "name" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Save profile")),
  );
  editForm(form, account.user, {
    load: async () => (account.user = await reloadUser()),
    save: async (data, etag) => {
      const body = { username: data.username.trim(), full_name: data.full_name.trim() || null };
      account.user = await request("PATCH", "/users/me", { body, ifMatch: etag });
      await reloadUser();
      toast("Profile saved.");
      return account.user;
    },
    codeFields: { username_taken: "username" },
  });
  return form;
}

/** Whether the email address is verified, with a way to ask for a new link while it is not. */
function verification(user) {
  if (user.is_verified) {
    return h("div", { class: "verification" }, h("p", {}, h("span", { class: "badge published" }, "Verified"), " Your email address is confirmed."));
  }
  const status = h("p", { role: "status" });
  return h(
    "div",
    { class: "verification" },
    h("p", {}, h("span", { class: "badge draft" }, "Not verified"), " Verify your address to publish posts and vote."),
    button("Send a new verification link", {
      onclick: async (event) => {
        event.target.disabled = true;
        try {
          const result = await request("POST", "/auth/verify-email/request");
          status.textContent = result.detail;
        } catch (error) {
          status.textContent = error.detail;
        } finally {
          event.target.disabled = false;
        }
      },
    }),
    status,
  );
}

/** Changing the password signs out the other sessions; `changed()` shows the list again. */
function passwordForm(user, changed) {
  const form = h(
    "form",
    { novalidate: true },
    formAlert(),
    usernameHint(user),
    field("Current password", "current_password", { type: "password", autocomplete: "current-password", required: true }),
    field("New password", "new_password", {
      type: "password",
      autocomplete: "new-password",
      required: true,
      maxlength: 128,
      hint: "At least 8 characters. Common or easily guessed passwords are refused.",
    }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Change password")),
  );
  strengthHint(form.querySelector('[data-field="new_password"]'), () => ({ email: user.email, username: user.username }));
  onSubmit(
    form,
    async (data) => {
      if ((await withReauth(() => request("POST", "/auth/password-change", { body: data }))) === CANCELLED) return;
      form.reset();
      toast("Password changed. Your other sessions were signed out.");
      await changed();
    },
    { codeFields: { invalid_credentials: "current_password" } },
  );
  return form;
}

/** One signed-in device; `redraw()` shows the list again after one is revoked. */
function sessionItem(row, ctx, redraw) {
  const error = inlineError();
  return h(
    "li",
    { dataset: { session: row.id } },
    h(
      "div",
      {},
      h("p", { class: "device" }, row.device || "Unknown device", row.current ? h("span", { class: "badge published" }, "This device") : null),
      h("p", { class: "muted" }, row.ip ? `${row.ip} · ` : "", "last used ", time(row.last_used_at), " · signed in ", time(row.created_at)),
      describeSignIn(row.amr) ? h("p", { class: "muted sign-in-method" }, "Signed in with: ", describeSignIn(row.amr)) : null,
      error.element,
    ),
    button(row.current ? "Sign out" : "Revoke", {
      class: "small",
      "aria-label": row.current ? "Sign out of this device" : `Revoke the session of ${row.device || "Unknown device"}`,
      onclick: async () => {
        try {
          if (row.current) {
            await signOut();
            ctx.navigate("/signin", { state: { notice: "You are signed out." } });
            return;
          }
          await request("DELETE", `/auth/sessions/${encodeURIComponent(row.id)}`);
          toast("Session revoked.");
          await redraw();
        } catch (err) {
          error.show(err);
        }
      },
    }),
  );
}

/** "This wasn't me": the way out, first the password (which signs out every other device), then everything. */
function showNotMe(panel, password, ctx) {
  replace(
    panel,
    h("p", {}, h("strong", {}, "Secure your account now.")),
    h("p", {}, "1. Change your password: every other device is signed out when you do."),
    h("div", { class: "actions" }, button("Change my password", { class: "primary", onclick: () => focusPassword(password) })),
    h("p", {}, "2. Or sign out of every device at once, this one included, and sign in again."),
    h("div", { class: "actions" }, signOutEverywhere(ctx)),
  );
  panel.hidden = false;
  panel.scrollIntoView({ block: "center" });
}

function focusPassword(password) {
  const input = password.querySelector('[name="current_password"]');
  password.scrollIntoView({ block: "center" });
  if (input) input.focus();
}

function signOutEverywhere(ctx) {
  return button("Sign out everywhere", {
    class: "danger",
    onclick: async () => {
      if (!(await confirmDialog("Sign out of every device, this one included?", { confirm: "Sign out everywhere" }))) return;
      try {
        await signOut({ everywhere: true });
        ctx.navigate("/signin", { state: { notice: "Every session is signed out." } });
      } catch (error) {
        toast(error.detail);
      }
    },
  });
}

function deleteForm(account, ctx) {
  const form = h(
    "form",
    { novalidate: true },
    formAlert(),
    h("p", {}, "This deletes your account with all its todos and posts. It cannot be undone."),
    usernameHint(account.user),
    field("Your password", "password", {
      type: "password",
      autocomplete: "current-password",
      hint: "Leave it empty if your account has no password (you sign in with a provider or emailed codes).",
    }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "danger" }, "Delete my account")),
  );
  onSubmit(
    form,
    async (data) => {
      if (!(await confirmDialog("Delete your account and everything in it for good?", { confirm: "Delete account" }))) return;
      // No password sent: an account without one is deleted on its recent sign-in alone.
      const body = data.password ? { password: data.password } : {};
      const deleted = await withReauth(() => request("DELETE", "/users/me", { body, ifMatch: etagOf(account.user) }));
      if (deleted === CANCELLED) return;
      endSession();
      ctx.navigate("/", { replace: true });
      toast("Your account is deleted.");
    },
    // The page is drawn again from the account as it is now; the password is asked for again.
    { codeFields: { invalid_credentials: "password" }, reload: () => ctx.navigate("/account", { replace: true }) },
  );
  return form;
}
