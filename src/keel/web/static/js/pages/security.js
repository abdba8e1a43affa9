// The account page's "Sign-in & security": the authenticator app (set up, confirm, turn off),
// recovery codes (shown once, downloadable) and passkeys (pages/passkeys.js).

import { request } from "../api.js";
import { button, confirmDialog, field, formAlert, h, replace, toast } from "../dom.js";
import { inlineError, onSubmit } from "../forms.js";
import { CANCELLED, withReauth } from "../reauth.js";
import { passkeysRow } from "./passkeys.js";

const CODES_FILE = "keel-recovery-codes.txt";

/** The QR code as an image: the server's SVG never becomes markup in this page. */
function qrImage(svg) {
  const bytes = new TextEncoder().encode(svg);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return h("img", { class: "qr", src: `data:image/svg+xml;base64,${btoa(binary)}`, alt: "QR code for your authenticator app", width: 200, height: 200 });
}

/** "ABCD EFGH ...": a secret that is easier to read out and type. */
export function groupSecret(secret) {
  return secret.replace(/\s+/g, "").replace(/(.{4})(?=.)/g, "$1 ");
}

/** A button that copies `text`, and says so. */
function copyButton(text, label) {
  return button("Copy", {
    class: "small",
    "aria-label": label,
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(text);
        toast("Copied.");
      } catch {
        toast("Copying is not allowed here: select the text and copy it yourself.");
      }
    },
  });
}

function downloadCodes(codes) {
  const text = `Keel recovery codes\n\nEach code signs you in once when you cannot use your authenticator app or passkey.\n\n${codes.join("\n")}\n`;
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  const link = h("a", { href: url, download: CODES_FILE, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** The recovery codes, shown this once, under `note` if given; `done()` goes back to the overview. */
function codesView(codes, done, note = null) {
  const heading = h("h3", { tabindex: -1 }, "Save your recovery codes");
  const view = h(
    "div",
    { class: "mfa-step" },
    note ? h("p", { class: "notice success", role: "status" }, note) : null,
    heading,
    h("p", {}, "If you lose your phone, each of these codes signs you in once. They are shown only now: keep them somewhere safe, such as a password manager."),
    h("ul", { class: "recovery-codes", "aria-label": "Recovery codes" }, codes.map((code) => h("li", {}, h("code", {}, code)))),
    h(
      "div",
      { class: "actions start" },
      button("Download as .txt", { onclick: () => downloadCodes(codes) }),
      copyButton(codes.join("\n"), "Copy the recovery codes"),
      button("I have saved them", { class: "primary", onclick: done }),
    ),
  );
  queueMicrotask(() => heading.focus());
  return view;
}

/** Step two of the setup: the code that proves the app has the secret. */
function confirmForm(done, cancel) {
  const form = h(
    "form",
    { novalidate: true },
    formAlert(),
    field("Code from the app", "code", { autocomplete: "one-time-code", inputmode: "numeric", maxlength: 7, required: true, hint: "The 6-digit code the app shows for Keel." }),
    h("div", { class: "actions start" }, h("button", { type: "submit", class: "primary" }, "Turn on"), button("Cancel", { onclick: cancel })),
  );
  onSubmit(
    form,
    async ({ code }) => {
      const { recovery_codes: codes } = await request("POST", "/auth/mfa/totp/confirm", { body: { code: code.trim() } });
      done(codes);
    },
    { codeFields: { invalid_code: "code" }, messages: { invalid_code: "That code is not right. Check the app and try again." } },
  );
  return form;
}

/** The QR code and the secret, then the confirming code. */
function setupView(setup, { show, overview, changed }) {
  const heading = h("h3", { tabindex: -1 }, "Set up an authenticator app");
  const grouped = groupSecret(setup.secret);
  const view = h(
    "div",
    { class: "mfa-step" },
    heading,
    h("p", {}, "1. Scan this QR code with an authenticator app (1Password, Google Authenticator, Microsoft Authenticator, …)."),
    qrImage(setup.qr_svg),
    h(
      "p",
      { class: "secret" },
      h("span", { class: "muted" }, "Cannot scan it? Enter this key: "),
      h("code", { class: "secret-key" }, grouped),
      " ",
      copyButton(setup.secret, "Copy the setup key"),
    ),
    h("p", {}, "2. Enter the code the app shows, to turn it on."),
    confirmForm((codes) => {
      show(codesView(codes, overview, "Your authenticator app is on. Your other sessions were signed out."));
      changed();
    }, overview),
  );
  queueMicrotask(() => heading.focus());
  return view;
}

/** One line of the overview: what it is, its state, and what can be done with it. */
function factorRow(title, status, description, actions) {
  return h(
    "div",
    { class: "factor" },
    h("div", { class: "factor-text" }, h("p", { class: "factor-title" }, title, " ", status), h("p", { class: "muted" }, description)),
    h("div", { class: "factor-actions" }, actions),
  );
}

const badge = (on) => h("span", { class: `badge ${on ? "published" : "draft"}` }, on ? "On" : "Off");

/**
 * Run a sensitive `action` (with the "Confirm it's you" dialog if it needs one); its error goes to
 * `error`. Resolves the action's result, or CANCELLED.
 */
async function sensitive(action, error, totp) {
  error.hide();
  try {
    return await withReauth(action, { totp });
  } catch (err) {
    error.show(err);
    return CANCELLED;
  }
}

function appRow(status, { show, overview, changed }) {
  const error = inlineError();
  const setUp = async () => {
    const setup = await sensitive(() => request("POST", "/auth/mfa/totp/setup"), error, false);
    if (setup !== CANCELLED) show(setupView(setup, { show, overview, changed }));
  };
  const turnOff = async () => {
    if (!(await confirmDialog("Turn off the authenticator app? Signing in will need only your password.", { confirm: "Turn off" }))) return;
    if ((await sensitive(() => request("DELETE", "/auth/mfa/totp"), error, true)) === CANCELLED) return;
    toast("Authenticator app turned off. Your other sessions were signed out.");
    overview();
    changed();
  };
  const action = status.totp
    ? button("Turn off authenticator app", { class: "small", onclick: turnOff })
    : button("Set up authenticator app", { class: "small primary", onclick: setUp });
  const text = status.totp ? "Signing in asks for a code from the app after your password." : "Ask for a code from an app on your phone after your password.";
  return [factorRow("Authenticator app", badge(status.totp), text, action), error.element];
}

function codesRow(status, { show, overview }) {
  const error = inlineError();
  const renew = async () => {
    const answer = await sensitive(() => request("POST", "/auth/mfa/recovery-codes"), error, status.totp);
    if (answer !== CANCELLED) show(codesView(answer.recovery_codes, overview));
  };
  const left = status.recovery_codes_left;
  const text = left
    ? `${left} of 10 left. Each signs you in once if you lose your second factor.`
    : "None to use. Make a set, for the day you cannot use your second factor.";
  const warn = left <= 3 ? h("span", { class: "badge draft" }, left ? "Running low" : "None") : null;
  return [factorRow("Recovery codes", warn, text, button("New recovery codes", { class: "small", onclick: renew })), error.element];
}

/**
 * The section's content: the overview, which each step replaces until it is done.
 * `changed()` runs after a change that signed out the other sessions.
 */
export async function security({ changed }) {
  const root = h("div", { class: "security" });
  const show = (view) => replace(root, view);
  const draw = async () => {
    const [status, passkeys] = await Promise.all([request("GET", "/auth/mfa"), request("GET", "/auth/passkeys")]);
    const parts = { show, overview, changed, factorRow };
    const hasFactor = status.totp || status.passkeys > 0;
    show(
      h("div", { class: "factors" }, appRow(status, parts), passkeysRow(status, passkeys, parts), hasFactor ? codesRow(status, parts) : null),
    );
  };
  function overview() {
    draw().catch((error) => {
      if (error.status !== 401) toast(error.detail || "Your sign-in settings could not be loaded.");
    });
  }
  await draw();
  return root;
}
