// The strength hint under a new password: as the person types (after a pause), the server rates
// the password by the very policy a save applies (POST /auth/password-check), so the hint and
// the save never disagree. The text says it; the bar beside it only shows it.

import { request } from "./api.js";
import { h } from "./dom.js";

const PAUSE_MS = 300;

/**
 * Add the hint to `fieldElement` (a field() holding a password input). `personal()` gives the
 * email and username the account will have, which a password must not be built from.
 */
export function strengthHint(fieldElement, personal = () => ({})) {
  const input = fieldElement.querySelector("input");
  const text = h("span", { class: "strength-text" });
  const hint = h(
    "p",
    { class: "strength", id: `${input.id}-strength`, "aria-live": "polite", hidden: true },
    h("span", { class: "strength-bar", "aria-hidden": "true" }, h("span"), h("span"), h("span"), h("span")),
    text,
  );
  input.setAttribute("aria-describedby", `${input.getAttribute("aria-describedby")} ${hint.id}`.trim());
  input.closest(".password-box").after(hint);

  let timer = null;
  let asked = 0; // only the answer to the latest question is shown
  const show = (verdict) => {
    hint.dataset.score = String(verdict.score);
    hint.classList.toggle("acceptable", verdict.acceptable);
    text.textContent = verdict.message;
    hint.hidden = false;
  };
  input.addEventListener("input", () => {
    clearTimeout(timer);
    asked += 1;
    const password = input.value;
    if (!password) {
      hint.hidden = true;
      return;
    }
    const question = asked;
    timer = setTimeout(async () => {
      const { email, username } = personal();
      try {
        const verdict = await request("POST", "/auth/password-check", {
          body: { password, email: email || null, username: username || null },
        });
        if (question === asked) show(verdict);
      } catch {
        // A hint, not a gate: when it cannot be had (offline, too many tries) the save still says why.
        if (question === asked) hint.hidden = true;
      }
    }, PAUSE_MS);
  });
  // A password sent (or a form reset after a change) starts over.
  input.form?.addEventListener("reset", () => {
    asked += 1;
    hint.hidden = true;
  });
}
