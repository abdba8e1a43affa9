// The second step of a sign-in: the password was right and the account has a second factor
// (403 `mfa_required`). It finishes with an authenticator-app code, a recovery code or a passkey.

import { ApiError, request, signInWith } from "../api.js";
import { button, field, formAlert, h, replace } from "../dom.js";
import { inlineError, onSubmit, waitMessage } from "../forms.js";
import { getPasskey, passkeysSupported } from "../webauthn.js";
import { passkeyError } from "./passkey-signin.js";

const EXPIRED = "Your sign-in expired before it was finished. Please sign in again.";

function codeFields() {
  const app = field("Authentication code", "code", {
    autocomplete: "one-time-code",
    inputmode: "numeric",
    maxlength: 7,
    required: true,
    hint: "Enter the 6-digit code from your authenticator app.",
  });
  const recovery = field("Recovery code", "recovery_code", {
    autocomplete: "off",
    autocapitalize: "none",
    spellcheck: "false",
    maxlength: 64,
    required: true,
    hint: "One of the recovery codes you saved when you set up your second factor. Each works once.",
  });
  return { app, recovery };
}

/** Show the app code or the recovery code; the other is disabled, so it is not sent. */
function useRecovery(fields, toggle, recovery, { focus = true } = {}) {
  fields.app.hidden = recovery;
  fields.app.querySelector("input").disabled = recovery;
  fields.recovery.hidden = !recovery;
  fields.recovery.querySelector("input").disabled = !recovery;
  if (toggle) toggle.textContent = recovery ? "Use your authenticator app instead" : "Use a recovery code instead";
  if (focus) (recovery ? fields.recovery : fields.app).querySelector("input").focus();
}

function codeForm(challenge, { finish, expired }) {
  const fields = codeFields();
  const hasApp = challenge.methods.includes("totp");
  const hasRecovery = challenge.methods.includes("recovery_code");
  const toggle = hasApp && hasRecovery ? button("Use a recovery code instead", { class: "link" }) : null;
  const form = h(
    "form",
    { class: "card narrow", novalidate: true },
    formAlert(),
    fields.app,
    fields.recovery,
    h("button", { type: "submit", class: "primary wide" }, "Verify"),
    toggle ? h("p", { class: "form-links" }, toggle) : null,
  );
  useRecovery(fields, toggle, !hasApp, { focus: false });
  toggle?.addEventListener("click", () => useRecovery(fields, toggle, fields.recovery.hidden));
  onSubmit(
    form,
    async (data) => {
      const proof = "code" in data ? { code: data.code.trim() } : { recovery_code: data.recovery_code.trim() };
      try {
        await signInWith("/auth/mfa/verify", { mfa_token: challenge.mfa_token, ...proof });
      } catch (error) {
        if (error instanceof ApiError && error.code === "invalid_mfa_token") return expired();
        throw error;
      }
      finish();
    },
    {
      codeFields: {
        // A wrong code is shown under the field on screen.
        get invalid_code() {
          return fields.recovery.hidden ? "code" : "recovery_code";
        },
      },
      messages: { invalid_code: "That code is not right. Check it and try again.", rate_limited: waitMessage },
    },
  );
  return form;
}

function passkeyButton(challenge, { finish, expired, first }) {
  const error = inlineError();
  const use = button("Use a passkey", { class: first ? "primary wide" : "wide" });
  use.addEventListener("click", async () => {
    if (use.getAttribute("aria-disabled") === "true") return;
    use.setAttribute("aria-disabled", "true");
    error.hide();
    try {
      const options = await request("POST", "/auth/passkeys/authenticate/options", { body: { mfa_token: challenge.mfa_token } });
      const credential = await getPasskey(options);
      if (!credential) return;
      await signInWith("/auth/passkeys/authenticate", { mfa_token: challenge.mfa_token, credential });
      finish();
    } catch (err) {
      if (err instanceof ApiError && err.code === "invalid_mfa_token") return expired();
      const shown = passkeyError(err);
      if (shown) error.show(shown);
    } finally {
      use.removeAttribute("aria-disabled");
    }
  });
  const text = first ? "Use the passkey saved on this device or your phone." : "Or use a passkey saved on this device or your phone.";
  return h("div", { class: "card narrow passkey-step" }, h("p", { class: "muted" }, text), use, error.element);
}

/**
 * Draw the second step into `container`. `challenge` is the 403's problem (`mfa_token`,
 * `methods`, `expires_in`); `finish()` runs once signed in, `restart(notice)` goes back to
 * the password with a message; `intro` says what the first step was. Returns a function that stops the expiry timer.
 */
export function secondStep(container, challenge, { finish, restart, intro = "Your password was right." }) {
  const expired = () => restart(EXPIRED);
  const methods = Array.isArray(challenge.methods) ? challenge.methods : ["totp", "recovery_code"];
  const state = { ...challenge, methods };
  const withCode = methods.includes("totp") || methods.includes("recovery_code");
  const withPasskey = methods.includes("passkey") && passkeysSupported();
  // Without an authenticator app, the passkey is the usual way and a recovery code the fallback.
  const passkeyFirst = withPasskey && !methods.includes("totp");
  const passkey = withPasskey ? passkeyButton(state, { finish, expired, first: passkeyFirst }) : null;
  const code = withCode ? codeForm(state, { finish, expired }) : null;
  const heading = h("h1", { tabindex: -1 }, "Confirm it's you");
  const lead = methods.includes("totp") ? "a code from your authenticator app" : passkeyFirst ? "your passkey" : "a recovery code";
  replace(
    container,
    heading,
    h("p", { class: "lead" }, `${intro} One more step: ${lead}.`),
    passkeyFirst ? [passkey, code] : [code, passkey],
    h("p", { class: "center" }, button("Cancel and start again", { class: "link", onclick: () => restart(null) })),
  );
  heading.focus();
  const seconds = Number(challenge.expires_in) || 300;
  const timer = setTimeout(expired, seconds * 1000);
  return () => clearTimeout(timer);
}
