// Sensitive changes (second factors, passkeys, the password) need a recent sign-in. When one
// answers 403 `reauthentication_required`, ask the person to confirm it is them, then try again once.

import { ApiError, currentUser, request } from "./api.js";
import { button, field, formAlert, h } from "./dom.js";
import { clearErrors, onSubmit, showError, waitMessage } from "./forms.js";
import { getPasskey, passkeyProblem, passkeysSupported } from "./webauthn.js";

/** What `withReauth` resolves to when the person closed the dialog instead of confirming. */
export const CANCELLED = Symbol("cancelled");

/**
 * Run `action()`; if it needs a recent sign-in, ask for the password (or, with `totp`, an app
 * code), then run it once more. Resolves with what the action resolved, or CANCELLED.
 */
export async function withReauth(action, { totp = false } = {}) {
  try {
    return await action();
  } catch (error) {
    if (!(error instanceof ApiError) || error.code !== "reauthentication_required") throw error;
    if (!(await confirmIdentity({ totp }))) return CANCELLED;
    return action();
  }
}

function proofFields(totp) {
  const user = currentUser();
  const password = field("Password", "password", { type: "password", autocomplete: "current-password", required: true });
  const code = field("Code from your authenticator app", "code", {
    autocomplete: "one-time-code",
    inputmode: "numeric",
    maxlength: 7,
    required: true,
  });
  const fields = [
    // Tells a password manager which account the password is for; unnamed, so never sent.
    user ? h("input", { type: "text", autocomplete: "username", value: user.email, hidden: true, readonly: true, tabindex: -1 }) : null,
    password,
  ];
  if (!totp) return { fields, password, code: null };
  code.hidden = true;
  code.querySelector("input").disabled = true;
  return { fields: [...fields, code], password, code };
}

/** Show one of the two proofs; the other is disabled, so it is neither checked nor sent. */
function toggleProof(parts, toggle) {
  const showCode = parts.code.hidden;
  for (const [slot, visible] of [
    [parts.password, !showCode],
    [parts.code, showCode],
  ]) {
    slot.hidden = !visible;
    slot.querySelector("input").disabled = !visible;
  }
  toggle.textContent = showCode ? "Use your password instead" : "Use a code from your app instead";
  (showCode ? parts.code : parts.password).querySelector("input").focus();
}

/**
 * "Email me a code instead": an account without a password (made by a provider, or signing in by
 * code) proves it is its owner with a code mailed to its own address. Swaps the other proofs for it.
 */
function emailCodeProof(form, parts, toggle) {
  const user = currentUser();
  const emailCode = field("Code from the email", "email_code", {
    autocomplete: "one-time-code",
    inputmode: "numeric",
    maxlength: 12,
    required: true,
    hint: user ? `The 8 digits we emailed to ${user.email}.` : "The 8 digits we emailed you.",
  });
  emailCode.hidden = true;
  emailCode.querySelector("input").disabled = true;
  const ask = button("Email me a code instead", { class: "link" });
  ask.addEventListener("click", async () => {
    if (!user || ask.getAttribute("aria-disabled") === "true") return;
    ask.setAttribute("aria-disabled", "true");
    try {
      await request("POST", "/auth/email-code/request", { body: { email: user.email } });
    } catch (error) {
      ask.removeAttribute("aria-disabled");
      showError(form, error, { messages: { rate_limited: waitMessage } });
      return;
    }
    for (const slot of [parts.password, parts.code]) {
      if (!slot) continue;
      slot.hidden = true;
      slot.querySelector("input").disabled = true;
    }
    if (toggle) toggle.hidden = true;
    emailCode.hidden = false;
    emailCode.querySelector("input").disabled = false;
    ask.textContent = "We emailed you a code. It works for 10 minutes.";
    emailCode.querySelector("input").focus();
  });
  return { emailCode, ask };
}

/**
 * "Use a passkey instead": the browser's ceremony for one of the account's passkeys, answered to
 * /auth/passkeys/reauthenticate. `done()` runs once it is accepted; failures show on `form`.
 */
function passkeyProof(form, done) {
  if (!passkeysSupported()) return null;
  const use = button("Use a passkey instead", { class: "link" });
  use.addEventListener("click", async () => {
    if (use.getAttribute("aria-disabled") === "true") return;
    use.setAttribute("aria-disabled", "true");
    clearErrors(form);
    try {
      const options = await request("POST", "/auth/passkeys/reauthenticate/options");
      const credential = await getPasskey(options);
      if (!credential) return;
      await request("POST", "/auth/passkeys/reauthenticate", { body: { credential } });
      done();
    } catch (error) {
      if (!(error instanceof ApiError)) {
        // The browser's ceremony failed (cancelled, timed out, wrong address): say which, if known.
        const problem = passkeyProblem(error);
        if (error?.name !== "AbortError") showError(form, new ApiError(0, { detail: problem || "No passkey was used." }));
        return;
      }
      showError(form, error, {
        messages: { invalid_credential: "That passkey could not confirm it is you. Try another way.", rate_limited: waitMessage },
      });
    } finally {
      use.removeAttribute("aria-disabled");
    }
  });
  return use;
}

/** The "Confirm it's you" dialog; resolves true once /auth/reauthenticate accepted a proof. */
export function confirmIdentity({ totp = false } = {}) {
  return new Promise((resolve) => {
    const parts = proofFields(totp);
    const cancel = button("Cancel");
    const toggle = totp ? button("Use a code from your app instead", { class: "link" }) : null;
    const form = h("form", { novalidate: true }, formAlert());
    const byEmail = emailCodeProof(form, parts, toggle);
    const byPasskey = passkeyProof(form, () => close(true));
    const links = [toggle, byEmail.ask, byPasskey].filter(Boolean).flatMap((link, index) => (index ? [" · ", link] : [link]));
    form.append(
      ...parts.fields.filter(Boolean),
      byEmail.emailCode,
      h("p", { class: "form-links" }, ...links),
      h("div", { class: "actions" }, cancel, h("button", { type: "submit", class: "primary" }, "Confirm")),
    );
    const dialog = h(
      "dialog",
      { class: "confirm reauth", "aria-labelledby": "reauth-title" },
      h("h2", { id: "reauth-title" }, "Confirm it's you"),
      h("p", { class: "muted" }, "This change needs a recent sign-in. Confirm it is you to go on (no password? have a code emailed to you)."),
      form,
    );
    const close = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    toggle?.addEventListener("click", () => toggleProof(parts, toggle));
    cancel.addEventListener("click", () => close(false));
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      close(false);
    });
    onSubmit(
      form,
      async (data) => {
        const body =
          "email_code" in data
            ? { email_code: data.email_code.replace(/[\s-]/g, "") }
            : "code" in data
              ? { code: data.code }
              : { password: data.password };
        await request("POST", "/auth/reauthenticate", { body });
        close(true);
      },
      {
        codeFields: {
          invalid_credentials: "password",
          // Read when the answer comes: the app's code or the emailed one, whichever is shown.
          get invalid_code() {
            return parts.code && !parts.code.hidden ? "code" : "email_code";
          },
        },
        messages: { invalid_code: "That code is not right.", rate_limited: waitMessage },
      },
    );
    document.body.append(dialog);
    dialog.showModal();
    parts.password.querySelector("input").focus();
  });
}
