// Signing in and up, and the pages that email links open (verify, reset).

import { ApiError, endSession, isSignedIn, reloadUser, request, signIn as apiSignIn } from "../api.js";
import { button, field, formAlert, h, replace } from "../dom.js";
import { onSubmit } from "../forms.js";
import { match } from "../router.js";
import { strengthHint } from "../strength.js";
import { emailCodeSignIn } from "./email-code.js";
import { passkeySignIn } from "./passkey-signin.js";
import { providerCard, providerError, providerLinks } from "./providers.js";
import { secondStep } from "./second-step.js";

const PASSWORD_HINT = "At least 8 characters. Common or easily guessed passwords are refused.";

/** Where to go after signing in: a page of this app, never anywhere else. */
function safeNext(value) {
  if (!value) return "/todos";
  let url;
  try {
    url = new URL(value, location.origin);
  } catch {
    return "/todos";
  }
  if (url.origin !== location.origin || !match(url.pathname)) return "/todos";
  return url.pathname + url.search;
}

/** Read the token from an email link, then drop it from the address bar and history. */
function takeToken(ctx) {
  const token = ctx.query.get("token");
  if (token) ctx.replaceLocation(location.pathname);
  return token;
}

function notice(text, kind = "info") {
  return text ? h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text) : null;
}

export async function signIn(container, ctx) {
  ctx.title("Sign in");
  const signedIn = () => ctx.navigate(safeNext(ctx.query.get("next")), { replace: true });
  // Back to the password, on this same address (it keeps `next`), with a message or none.
  const restart = (message) => ctx.navigate(location.pathname + location.search, { replace: true, state: { notice: message } });
  const cleanups = [];
  ctx.onLeave(() => cleanups.forEach((cleanup) => cleanup()));
  const passkeys = passkeySignIn({ signedIn, secondFactor: (problem) => showSecondStep(problem) });
  cleanups.push(passkeys.stop);
  const showSecondStep = (problem) => {
    passkeys.stop();
    ctx.title("Confirm it's you");
    cleanups.push(secondStep(container, problem, { finish: signedIn, restart }));
  };
  const form = signInForm();
  const withCode = () => {
    passkeys.stop();
    ctx.title("Sign in with a code");
    const email = form.querySelector("input[name=email]").value.trim();
    emailCodeSignIn(container, { email, signedIn, secondFactor: showSecondStep, back: () => restart(null) });
  };
  form.querySelector(".email-code").addEventListener("click", withCode);
  onSubmit(
    form,
    async ({ email, password }) => {
      try {
        await apiSignIn(email.trim(), password);
      } catch (error) {
        if (error instanceof ApiError && error.code === "mfa_required") return showSecondStep(error.problem);
        throw error;
      }
      signedIn();
    },
    { fieldNames: { username: "email" } },
  );
  // The provider's way back when it did not sign in: said once, then off the address bar.
  const error = ctx.query.get("error");
  if (error) ctx.replaceLocation(withoutError());
  const links = await providerLinks(safeNext(ctx.query.get("next")));
  // Beside the passkey button when there is one: one "or", not two.
  passkeys.element?.append(...links);
  const providers = passkeys.element ? null : providerCard(links);
  replace(
    container,
    h("h1", {}, "Sign in"),
    notice(ctx.state.notice),
    error ? h("p", { class: "notice error narrow", role: "alert" }, providerError(error)) : null,
    form,
    passkeys.element,
    providers,
    h("p", { class: "center" }, "New to Keel? ", h("a", { href: "/signup" }, "Create an account")),
  );
}

function withoutError() {
  const params = new URLSearchParams(location.search);
  params.delete("error");
  const rest = params.toString();
  return location.pathname + (rest ? `?${rest}` : "");
}

function signInForm() {
  return h(
    "form",
    { class: "card narrow", novalidate: true },
    formAlert(),
    // "webauthn": the browser may offer the passkeys it holds for Keel in this field's autofill.
    field("Email", "email", { type: "email", autocomplete: "username webauthn", required: true, maxlength: 254 }),
    field("Password", "password", { type: "password", autocomplete: "current-password", required: true }),
    h("button", { type: "submit", class: "primary wide" }, "Sign in"),
    h("p", { class: "form-links" }, h("a", { href: "/forgot-password" }, "Forgot your password?")),
    h("p", { class: "form-links" }, button("Email me a code", { class: "link email-code" })),
  );
}

export async function signUp(container, ctx) {
  ctx.title("Create an account");
  const form = h(
    "form",
    { class: "card narrow", novalidate: true },
    formAlert(),
    field("Email", "email", { type: "email", autocomplete: "email", required: true, maxlength: 254 }),
    field("Username", "username", {
      autocomplete: "username",
      required: true,
      minlength: 3,
      maxlength: 30,
      hint: "3 to 30 lowercase letters, digits or underscores. Shown on your posts.",
    }),
    field("Full name (optional)", "full_name", { autocomplete: "name", maxlength: 100 }),
    field("Password", "password", { type: "password", autocomplete: "new-password", required: true, maxlength: 128, hint: PASSWORD_HINT }),
    h("button", { type: "submit", class: "primary wide" }, "Create account"),
  );
  strengthHint(form.querySelector('[data-field="password"]'), () => ({
    email: form.elements.email.value.trim(),
    username: form.elements.username.value.trim(),
  }));
  onSubmit(
    form,
    async (data) => {
      await request("POST", "/auth/register", {
        body: { email: data.email.trim(), username: data.username.trim(), full_name: data.full_name.trim() || null, password: data.password },
      });
      replace(
        container,
        h("h1", {}, "Check your inbox"),
        h(
          "div",
          { class: "card narrow", role: "status" },
          h("p", {}, "We sent a message to ", h("strong", {}, data.email.trim()), "."),
          h("p", {}, "Open the link in it to verify your address, then sign in. The link works for 48 hours."),
          h("p", {}, h("a", { href: "/signin", class: "button primary" }, "Go to sign in")),
        ),
      );
      const heading = container.querySelector("h1");
      heading.setAttribute("tabindex", "-1");
      heading.focus();
    },
    { codeFields: { username_taken: "username" } },
  );
  replace(
    container,
    h("h1", {}, "Create an account"),
    form,
    providerCard(await providerLinks("/todos")),
    h("p", { class: "center" }, "Already have one? ", h("a", { href: "/signin" }, "Sign in")),
  );
}

export async function forgotPassword(container, ctx) {
  ctx.title("Reset your password");
  const form = h(
    "form",
    { class: "card narrow", novalidate: true },
    formAlert(),
    h("p", {}, "Enter the email address of your account and we will send you a link to choose a new password."),
    field("Email", "email", { type: "email", autocomplete: "email", required: true, maxlength: 254 }),
    h("button", { type: "submit", class: "primary wide" }, "Send the link"),
  );
  onSubmit(form, async ({ email }) => {
    const result = await request("POST", "/auth/password-reset/request", { body: { email: email.trim() } });
    const status = h("p", { role: "status", tabindex: -1 }, result.detail);
    replace(form, status, h("p", {}, h("a", { href: "/signin" }, "Back to sign in")));
    status.focus();
  });
  replace(container, h("h1", {}, "Reset your password"), form);
}

export async function resetPassword(container, ctx) {
  ctx.title("Choose a new password");
  const token = takeToken(ctx);
  if (!token) {
    replace(
      container,
      h("h1", {}, "Choose a new password"),
      notice("This link has no token. Open the link from your email again, or ask for a new one.", "error"),
      h("p", {}, h("a", { href: "/forgot-password" }, "Ask for a new link")),
    );
    return;
  }
  const form = h(
    "form",
    { class: "card narrow", novalidate: true },
    formAlert(),
    field("New password", "new_password", { type: "password", autocomplete: "new-password", required: true, maxlength: 128, hint: PASSWORD_HINT }),
    field("Repeat the new password", "confirm_password", { type: "password", autocomplete: "new-password", required: true, maxlength: 128 }),
    h("button", { type: "submit", class: "primary wide" }, "Change password"),
  );
  // The reset link names no account to this page: the save also checks the email and username.
  strengthHint(form.querySelector('[data-field="new_password"]'));
  onSubmit(
    form,
    async (data) => {
      await request("POST", "/auth/password-reset/confirm", { body: { token, ...data } });
      endSession(); // the reset ended every session, this browser's included
      ctx.navigate("/signin", { replace: true, state: { notice: "Your password is changed and every session was signed out. Sign in with the new password." } });
    },
    { codeFields: { passwords_do_not_match: "confirm_password" } },
  );
  replace(container, h("h1", {}, "Choose a new password"), form);
}

export async function verifyEmail(container, ctx) {
  ctx.title("Verify your email");
  const token = takeToken(ctx);
  const heading = h("h1", {}, "Verify your email");
  if (!token) {
    replace(container, heading, notice("This link has no token. Open the link from your email again.", "error"));
    return;
  }
  try {
    const user = await request("POST", "/auth/verify-email/confirm", { body: { token } });
    if (isSignedIn()) await reloadUser();
    replace(
      container,
      heading,
      notice(`Thank you, ${user.username}: your email address is verified. You can now publish posts and vote.`, "success"),
      h("p", {}, isSignedIn() ? h("a", { href: "/", class: "button primary" }, "Go to the feed") : h("a", { href: "/signin", class: "button primary" }, "Sign in")),
    );
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 401) throw error;
    replace(
      container,
      heading,
      notice(error.detail, "error"),
      h("p", {}, "Signed in? You can ask for a new link on your ", h("a", { href: "/account" }, "account page"), "."),
    );
  }
}
