// Signing in with a passkey and no email: a "Sign in with a passkey" button, and the passkeys the
// browser offers in the email field's autofill (conditional mediation) while the page is open.

import { ApiError, request, signInWith } from "../api.js";
import { button, h } from "../dom.js";
import { inlineError, waitMessage } from "../forms.js";
import { autofillSupported, getPasskey, passkeyProblem, passkeysSupported } from "../webauthn.js";

/** A failed passkey sign-in as an error to show; null when the person just cancelled it. */
export function passkeyError(error) {
  if (error instanceof ApiError) return error.status === 429 ? new ApiError(429, { detail: waitMessage(error) }) : error;
  const problem = passkeyProblem(error);
  if (!problem && error?.name !== "AbortError") console.error(error);
  return problem ? new ApiError(0, { detail: problem }) : null;
}

/**
 * One passkey sign-in: options for a discoverable credential, the browser's ceremony, the token
 * pair. Resolves false when the browser gave no credential.
 */
async function signInWithPasskey({ signal, mediation, progress = {} } = {}) {
  const options = await request("POST", "/auth/passkeys/authenticate/options", { body: {} });
  const credential = await getPasskey(options, { signal, mediation });
  if (!credential) return false;
  progress.picked = true;
  await signInWith("/auth/passkeys/authenticate", { credential });
  return true;
}

/**
 * The passkey part of the sign-in page. `signedIn()` runs after a passkey signed in;
 * `secondFactor(problem)` if the server still asks for one (403 `mfa_required`).
 * Returns the element to show, and `stop()` for when the page goes.
 */
export function passkeySignIn({ signedIn, secondFactor }) {
  if (!passkeysSupported()) return { element: null, stop() {} };
  const error = inlineError();
  let autofill = null; // the AbortController of the pending autofill request
  let stopped = false;
  // Resolves the error the attempt ended with, if any, after showing it unless `quiet()`.
  const settle = async (attempt, quiet = () => false) => {
    try {
      if (await attempt()) signedIn();
      return null;
    } catch (err) {
      if (err instanceof ApiError && err.code === "mfa_required") {
        secondFactor(err.problem);
        return err;
      }
      const shown = quiet() ? null : passkeyError(err);
      if (shown) error.show(shown);
      return err;
    }
  };
  const listen = async () => {
    if (stopped || !(await autofillSupported())) return;
    autofill = new AbortController();
    const { signal } = autofill;
    // Autofill runs unasked: what goes wrong before the person picks a passkey is not theirs to hear.
    const progress = {};
    const failed = await settle(() => signInWithPasskey({ signal, mediation: "conditional", progress }), () => !progress.picked);
    // A passkey the server refused: the person may pick another, so autofill listens again.
    if (failed?.code === "invalid_credential" && !signal.aborted && !stopped) listen();
  };
  const use = button("Sign in with a passkey", { class: "wide" });
  use.addEventListener("click", async () => {
    if (use.getAttribute("aria-disabled") === "true") return;
    use.setAttribute("aria-disabled", "true");
    error.hide();
    // A browser runs one WebAuthn request at a time: the autofill one must end first.
    autofill?.abort();
    await settle(() => signInWithPasskey());
    use.removeAttribute("aria-disabled");
    listen();
  });
  listen();
  const stop = () => {
    stopped = true;
    autofill?.abort();
  };
  const element = h("div", { class: "card narrow passkey-signin" }, h("p", { class: "or" }, "or"), use, error.element);
  return { element, stop };
}
