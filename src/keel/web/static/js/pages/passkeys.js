// The passkeys part of "Sign-in & security": add one (navigator.credentials.create), and list,
// rename or remove them.

import { request } from "../api.js";
import { describeDevice } from "../devices.js";
import { button, confirmDialog, field, formAlert, h, replace, time, toast } from "../dom.js";
import { inlineError, onSubmit } from "../forms.js";
import { CANCELLED, withReauth } from "../reauth.js";
import { createPasskey, passkeysSupported } from "../webauthn.js";
import { passkeyError } from "./passkey-signin.js";

/** The browser's answer to the creation options, or an error fit to show on the form. */
async function newCredential(options) {
  try {
    return await createPasskey(options);
  } catch (error) {
    throw passkeyError(error) || error;
  }
}

/** The "Add a passkey" form; `done()` after one is added, `cancel()` to go back. */
export function addPasskeyForm({ totp, done, cancel }) {
  const form = h(
    "form",
    { class: "mfa-step", novalidate: true },
    h("h3", { tabindex: -1 }, "Add a passkey"),
    h("p", {}, "Your browser or phone keeps the passkey and unlocks it with your fingerprint, face or screen lock."),
    formAlert(),
    field("Name", "name", { required: true, maxlength: 64, value: describeDevice(navigator.userAgent), hint: "To tell your passkeys apart, such as the device it is on." }),
    h("div", { class: "actions start" }, h("button", { type: "submit", class: "primary" }, "Create passkey"), button("Cancel", { onclick: cancel })),
  );
  onSubmit(form, async ({ name }) => {
    const options = await withReauth(() => request("POST", "/auth/passkeys/register/options"), { totp });
    if (options === CANCELLED) return;
    const credential = await newCredential(options);
    await request("POST", "/auth/passkeys/register", { body: { credential, name: name.trim() } });
    done();
  });
  queueMicrotask(() => form.querySelector("input[name=name]").focus());
  return form;
}

function renameForm(passkey, { saved, cancel }) {
  const form = h(
    "form",
    { class: "rename", novalidate: true },
    formAlert(),
    field("New name", "name", { required: true, maxlength: 64, value: passkey.name }),
    h("button", { type: "submit", class: "small primary" }, "Save"),
    button("Cancel", { class: "small", onclick: cancel }),
  );
  onSubmit(form, async ({ name }) => {
    await request("PATCH", `/auth/passkeys/${passkey.id}`, { body: { name: name.trim() } });
    saved();
  });
  queueMicrotask(() => form.querySelector("input[name=name]").select());
  return form;
}

/** One passkey with its dates; `redraw()` shows the section again after a change. */
function passkeyItem(passkey, { totp, redraw, changed }) {
  const error = inlineError();
  const item = h("li", { dataset: { passkey: passkey.id } });
  const used = passkey.last_used_at ? ["last used ", time(passkey.last_used_at)] : ["never used yet"];
  const remove = async () => {
    if (!(await confirmDialog(`Remove the passkey “${passkey.name}”? It will no longer sign you in.`, { confirm: "Remove" }))) return;
    error.hide();
    try {
      if ((await withReauth(() => request("DELETE", `/auth/passkeys/${passkey.id}`), { totp })) === CANCELLED) return;
    } catch (err) {
      return error.show(err);
    }
    toast("Passkey removed. Your other sessions were signed out.");
    redraw();
    changed();
  };
  const show = () =>
    replace(
      item,
      h("div", {}, h("p", { class: "device" }, passkey.name), h("p", { class: "muted" }, "Added ", time(passkey.created_at), " · ", used), error.element),
      h(
        "div",
        { class: "factor-actions" },
        button("Rename", { class: "small", "aria-label": `Rename ${passkey.name}`, onclick: () => replace(item, renameForm(passkey, { saved: redraw, cancel: show })) }),
        button("Remove", { class: "small", "aria-label": `Remove ${passkey.name}`, onclick: remove }),
      ),
    );
  show();
  return item;
}

/** The passkeys line of the overview and the list under it. */
export function passkeysRow(status, passkeys, { show, overview, changed, factorRow }) {
  if (!passkeysSupported() && !passkeys.length) return null;
  const add = () =>
    show(
      addPasskeyForm({
        totp: status.totp,
        cancel: overview,
        done: () => {
          toast("Passkey added. Your other sessions were signed out.");
          overview();
          changed();
        },
      }),
    );
  const text = passkeys.length
    ? "Sign in with your fingerprint, face or screen lock; after a password, a passkey also works as the second step."
    : "Sign in with your fingerprint, face or screen lock instead of a password.";
  const action = passkeysSupported() ? button("Add a passkey", { class: "small", onclick: add }) : null;
  const count = passkeys.length ? h("span", { class: "badge published" }, `${passkeys.length}`) : null;
  const list = passkeys.length
    ? h("ul", { class: "passkey-list", "aria-label": "Passkeys" }, passkeys.map((passkey) => passkeyItem(passkey, { totp: status.totp, redraw: overview, changed })))
    : null;
  return [factorRow("Passkeys", count, text, action), list];
}
