// Form plumbing shared by every page: read values, show the API's errors beside the fields
// (or the controls) they belong to, and keep a form from being sent twice.

import { ApiError } from "./api.js";
import { h, replace } from "./dom.js";

const SOMETHING_WRONG = "Something went wrong. Please try again.";

/** The form's values; checkboxes become booleans, empty optional fields null. */
export function values(form) {
  const result = {};
  for (const el of form.elements) {
    if (!el.name || el.disabled) continue;
    if (el.type === "checkbox") result[el.name] = el.checked;
    else if (el.type !== "submit" && el.type !== "button") result[el.name] = el.value;
  }
  return result;
}

/** Empty strings to null, for optional fields the API wants absent or null. */
export function blankToNull(data, ...names) {
  for (const name of names) if (data[name] === "") data[name] = null;
  return data;
}

export function clearErrors(form) {
  for (const el of form.querySelectorAll(".field-error")) {
    el.textContent = "";
    el.hidden = true;
  }
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  const alert = form.querySelector(".form-alert");
  if (alert) {
    alert.textContent = "";
    alert.hidden = true;
  }
}

/**
 * Show `error` on `form`: validation messages next to their fields, anything else in the
 * form's alert. `codeFields` names the field a problem code is about ({username_taken: "username"}).
 */
export function showError(form, error, { codeFields = {}, fieldNames = {} } = {}) {
  const apiError = error instanceof ApiError ? error : new ApiError(0, { detail: SOMETHING_WRONG });
  const leftovers = [];
  let first = null;
  const byField = apiError.fieldErrors();
  if (apiError.code && codeFields[apiError.code] && !apiError.errors.length) {
    byField[codeFields[apiError.code]] = [apiError.detail];
  }
  for (const [name, messages] of Object.entries(byField)) {
    const slot = name && form.querySelector(`[data-field="${CSS.escape(fieldNames[name] || name)}"]`);
    if (!slot) {
      leftovers.push(...messages);
      continue;
    }
    const message = slot.querySelector(".field-error");
    message.textContent = messages.join(" ");
    message.hidden = false;
    const input = slot.querySelector("input, textarea, select");
    input.setAttribute("aria-invalid", "true");
    first ||= input;
  }
  if (!Object.keys(byField).length) leftovers.push(apiError.detail);
  const alert = form.querySelector(".form-alert");
  if (leftovers.length && alert) {
    alert.textContent = leftovers.join(" ");
    alert.hidden = false;
  }
  if (first) first.focus();
}

/**
 * The place for the error of an action that is not a form (ticking a todo, changing a role),
 * beside the control it was about, and read out when it shows. `show(error, ...more)` puts
 * the API's message there, with `more` after it; an expired session (401) shows nothing, as
 * the app is already on its way to the sign-in page.
 */
export function inlineError() {
  const element = h("p", { class: "field-error", role: "alert", hidden: true });
  return {
    element,
    show(error, ...more) {
      if (error.status === 401) return;
      if (!(error instanceof ApiError)) console.error(error);
      replace(element, error.detail || SOMETHING_WRONG, ...more);
      element.hidden = false;
    },
    hide() {
      element.hidden = true;
    },
  };
}

/**
 * Run `action(values)` when `form` is submitted; its errors are shown on the form.
 * While the request runs the form ignores further submits. Its buttons are marked
 * aria-disabled rather than disabled, so the focused button keeps focus.
 */
export function onSubmit(form, action, options = {}) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (form.getAttribute("aria-busy") === "true") return;
    clearErrors(form);
    const buttons = [...form.querySelectorAll("button[type=submit]")];
    form.setAttribute("aria-busy", "true");
    for (const b of buttons) b.setAttribute("aria-disabled", "true");
    try {
      await action(values(form), event.submitter);
    } catch (error) {
      if (!(error instanceof ApiError)) console.error(error);
      showError(form, error, options);
    } finally {
      form.removeAttribute("aria-busy");
      for (const b of buttons) b.removeAttribute("aria-disabled");
    }
  });
}
