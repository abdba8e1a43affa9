// Signing in with a code sent by email: asked for on the sign-in page ("Email me a code"), or
// brought by the link in that email (/signin/code#email=…&code=…: in the fragment, which a browser
// never sends to a server, so the code reaches no access log and no Referer).

import { ApiError, request, signInWith } from "../api.js";
import { button, field, formAlert, h, replace } from "../dom.js";
import { clearErrors, onSubmit, showError, waitMessage } from "../forms.js";
import { navigate } from "../router.js";
import { secondStep } from "./second-step.js";

const SENT = "If an account uses this address, a code is on its way. It works for 10 minutes.";
const SENT_AGAIN = "A new code is on its way; the one before no longer works. It works for 10 minutes.";
const WRONG_CODE = "That code is not right, or it has expired. Check it, or send a new code.";
const MESSAGES = { invalid_code: WRONG_CODE, rate_limited: waitMessage };

function sendCode(email) {
  return request("POST", "/auth/email-code/request", { body: { email } });
}

// The code claimed an account whose address was never confirmed (`password_removed`).
const PASSWORD_REMOVED =
  "This code confirmed your email address, so this account is now yours. It had a password set before the " +
  "address was confirmed, possibly by someone else: that password was removed, with its sessions, second " +
  "steps and connected accounts. To sign in with a password, set a new one with \u201cForgot your password?\u201d.";

/**
 * Try the code: `signedIn()` after it worked, `secondFactor(problem)` on 403 `mfa_required`. A code
 * that removed a password goes to the account page, which says so.
 */
async function verify(email, code, { signedIn, secondFactor }) {
  let answer;
  try {
    // Spaces or dashes a mail client or a person put between the digits are not part of the code.
    answer = await signInWith("/auth/email-code/verify", { email, code: code.replace(/[\s-]/g, "") });
  } catch (error) {
    if (error instanceof ApiError && error.code === "mfa_required") return secondFactor(error.problem);
    throw error;
  }
  if (answer.password_removed) return navigate("/account", { replace: true, state: { notice: PASSWORD_REMOVED } });
  signedIn();
}

/** Step one: the address the code goes to. `sent(email)` runs once it is asked for. */
function emailForm(email, sent) {
  const form = h(
    "form",
    { class: "card narrow", novalidate: true },
    formAlert(),
    h("p", {}, "We will email you a code to sign in with, instead of your password."),
    field("Email", "email", { type: "email", autocomplete: "username", required: true, maxlength: 254, value: email || null }),
    h("button", { type: "submit", class: "primary wide" }, "Email me a code"),
  );
  onSubmit(
    form,
    async (data) => {
      const address = data.email.trim();
      await sendCode(address);
      sent(address);
    },
    { messages: MESSAGES },
  );
  return form;
}

/** "Send a new code": asks again, says so in `status`, and shows a failure on `form`. */
function resendButton(form, email, status) {
  const again = button("Send a new code", { class: "link" });
  again.addEventListener("click", async () => {
    if (again.getAttribute("aria-disabled") === "true") return;
    again.setAttribute("aria-disabled", "true");
    clearErrors(form);
    try {
      await sendCode(email);
      status.textContent = SENT_AGAIN;
      form.querySelector("input[name=code]").focus();
    } catch (error) {
      showError(form, error, { messages: MESSAGES });
    } finally {
      again.removeAttribute("aria-disabled");
    }
  });
  return again;
}

/** Step two: the code from the email. `other()` goes back to step one for another address. */
function codeForm(email, handlers, other) {
  const status = h("p", { class: "notice info narrow", role: "status" }, SENT);
  const code = field("Code from the email", "code", {
    autocomplete: "one-time-code",
    inputmode: "numeric",
    maxlength: 12,
    required: true,
    hint: "The 8 digits in the email we sent you.",
  });
  const form = h(
    "form",
    { class: "card narrow", novalidate: true },
    formAlert(),
    h("p", { class: "sent-to" }, "Sent to ", h("strong", {}, email), " ", button("Use another address", { class: "link", onclick: other })),
    code,
    h("button", { type: "submit", class: "primary wide" }, "Sign in"),
  );
  form.append(h("p", { class: "form-links" }, resendButton(form, email, status)));
  onSubmit(form, (data) => verify(email, data.code, handlers), { codeFields: { invalid_code: "code" }, messages: MESSAGES });
  return { status, form, input: code.querySelector("input") };
}

/**
 * The sign-in page's code way, drawn into `container`: the address (prefilled with `email`), then
 * the code. `signedIn()` and `secondFactor(problem)` are as for a password; `back()` returns to it.
 */
export function emailCodeSignIn(container, { email, signedIn, secondFactor, back }) {
  const heading = h("h1", { tabindex: -1 }, "Sign in with a code");
  const password = h("p", { class: "center" }, button("Sign in with your password instead", { class: "link", onclick: back }));
  const askAddress = (address) => {
    const form = emailForm(address, askCode);
    replace(container, heading, form, password);
    form.querySelector("input[name=email]").focus();
  };
  const askCode = (address) => {
    const step = codeForm(address, { signedIn, secondFactor }, () => askAddress(address));
    replace(container, heading, step.status, step.form, password);
    step.input.focus();
  };
  askAddress(email);
}

/** The page the email's link opens: one click signs in (a link scanner's visit sends nothing). */
export async function fromLink(container, ctx) {
  ctx.title("Sign in");
  // The fragment; an older mail's link had them in the query.
  const fragment = new URLSearchParams(location.hash.slice(1));
  const email = (fragment.get("email") || ctx.query.get("email") || "").trim();
  const code = (fragment.get("code") || ctx.query.get("code") || "").trim();
  // The code must not stay in the address bar or the history.
  if (location.hash || ctx.query.has("email") || ctx.query.has("code")) ctx.replaceLocation(location.pathname);
  if (!email || !code) return noCode(container);
  const signedIn = () => ctx.navigate("/todos", { replace: true });
  const restart = (notice) => ctx.navigate("/signin", { replace: true, state: { notice } });
  let stopTimer = () => {};
  ctx.onLeave(() => stopTimer());
  const secondFactor = (problem) => {
    ctx.title("Confirm it's you");
    stopTimer = secondStep(container, problem, { finish: signedIn, restart });
  };
  const form = h(
    "form",
    { class: "card narrow", novalidate: true },
    formAlert(),
    h("p", {}, "Your email brought you here with a sign-in code."),
    h("button", { type: "submit", class: "primary wide wrap" }, `Sign in as ${email}`),
  );
  onSubmit(form, () => verify(email, code, { signedIn, secondFactor }), { messages: MESSAGES });
  const again = button("Email me a new code", {
    class: "link",
    onclick: () => emailCodeSignIn(container, { email, signedIn, secondFactor, back: () => restart(null) }),
  });
  replace(container, h("h1", {}, "Sign in"), form, h("p", { class: "center" }, again, " · ", h("a", { href: "/signin" }, "Sign in another way")));
}

function noCode(container) {
  replace(
    container,
    h("h1", {}, "Sign in"),
    h("p", { class: "notice error", role: "alert" }, "This link has no sign-in code. Open the link from your email again, or ask for a new code."),
    h("p", {}, h("a", { href: "/signin", class: "button primary" }, "Go to sign in")),
  );
}
