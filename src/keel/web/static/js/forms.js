// Form plumbing shared by every page: read values, show the API's errors beside the fields
// (or the controls) they belong to, and keep a form from being sent twice.

import { ApiError, etagOf } from "./api.js";
import { button, h, replace, showPassword } from "./dom.js";
import { humanMessage, labelOf } from "./validation.js";

const SOMETHING_WRONG = "Something went wrong. Please try again.";
/** What a change that met 412 says: the item is no longer the version this page read. */
export const CHANGED_ELSEWHERE = "This changed elsewhere since you opened it. Reload to see the latest, then make your change again.";

/** Whether `error` is a 412: the change named a version (If-Match) that is no longer current. */
export function changedElsewhere(error) {
  return error instanceof ApiError && error.code === "precondition_failed";
}

function messageOf(error) {
  return changedElsewhere(error) ? CHANGED_ELSEWHERE : error.detail || SOMETHING_WRONG;
}

/** The Reload button beside CHANGED_ELSEWHERE; `reload()` reads the item again. */
export function reloadButton(reload) {
  const reloading = button("Reload", { class: "small" });
  reloading.addEventListener("click", async () => {
    if (reloading.getAttribute("aria-disabled") === "true") return;
    reloading.setAttribute("aria-disabled", "true");
    try {
      await reload();
    } finally {
      reloading.removeAttribute("aria-disabled");
    }
  });
  return reloading;
}

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
    alert.classList.remove("note");
    alert.hidden = true;
  }
}

/** "Too many tries. Wait 2 minutes, then try again.", from a 429's Retry-After when it has one. */
export function waitMessage(error) {
  const seconds = error.retryAfter;
  if (!seconds) return "Too many tries. Wait a little, then try again.";
  const wait = seconds < 90 ? `${seconds} second${seconds === 1 ? "" : "s"}` : `${Math.ceil(seconds / 60)} minutes`;
  return `Too many tries. Wait ${wait}, then try again.`;
}

/**
 * Show `error` on `form`: validation messages next to their fields, anything else in the
 * form's alert. `codeFields` names the field a problem code is about ({username_taken: "username"});
 * `messages` says what a problem code means to a person, in place of the API's detail (a text,
 * or a function of the error); `reload()`, when given, is what the alert's Reload button does after a 412.
 */
export function showError(form, error, { codeFields = {}, fieldNames = {}, messages = {}, reload } = {}) {
  const apiError = error instanceof ApiError ? error : new ApiError(0, { detail: SOMETHING_WRONG });
  const leftovers = [];
  let first = null;
  const said = messages[apiError.code];
  const detail = typeof said === "function" ? said(apiError) : said || null;
  const slotOf = (name) => name && form.querySelector(`[data-field="${CSS.escape(fieldNames[name] || name)}"]`);
  const byField = {};
  for (const [name, errors] of Object.entries(apiError.fieldErrors())) {
    // The label as the person reads it, less what only the form needs ("Full name (optional)").
    const shown = name && slotOf(name)?.querySelector("label")?.textContent.replace(/\s*\(optional\)$/i, "");
    const label = name ? shown || labelOf(name) : null;
    byField[name] = errors.map((item) => humanMessage(item, label));
  }
  if (apiError.code && codeFields[apiError.code] && !apiError.errors.length) {
    byField[codeFields[apiError.code]] = [detail || apiError.detail];
  }
  for (const [name, sentences] of Object.entries(byField)) {
    const slot = slotOf(name);
    if (!slot) {
      leftovers.push(...sentences);
      continue;
    }
    const message = slot.querySelector(".field-error");
    message.textContent = sentences.join(" ");
    message.hidden = false;
    const input = slot.querySelector("input, textarea, select");
    input.setAttribute("aria-invalid", "true");
    first ||= input;
  }
  if (!Object.keys(byField).length) leftovers.push(detail || messageOf(apiError));
  const alert = form.querySelector(".form-alert");
  if (leftovers.length && alert) {
    const more = reload && changedElsewhere(apiError) ? [" ", reloadButton(reload)] : [];
    replace(alert, leftovers.join(" "), ...more);
    alert.hidden = false;
  }
  // Where the person looks next: the first field to fix, else the alert, which sits at the top of
  // the form and may be far above the button they pressed (a phone's screen).
  if (first) first.focus();
  else if (alert && !alert.hidden) revealAlert(alert);
}

/** Focus a form's alert and bring it into view, where a person who pressed a button below will see it. */
export function revealAlert(alert) {
  alert.focus({ preventScroll: true });
  alert.scrollIntoView({ block: "center" });
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
      replace(element, messageOf(error), ...more);
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
    // A password shown while typing is hidden again once sent, as a password manager expects.
    for (const input of form.querySelectorAll(".password-box input")) showPassword(input, false);
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

/**
 * Set a field's value. A hidden input is told with a `keel:set` event, for the widget that
 * draws it (the labels field's chips); an array becomes its items joined by commas.
 */
function setValue(el, value) {
  el.value = value ?? "";
  if (el.type === "hidden") el.dispatchEvent(new Event("keel:set"));
}

/** Put `item`'s values in the form's fields of the same names. */
export function fill(form, item) {
  for (const el of form.elements) {
    if (!el.name || !(el.name in item)) continue;
    if (el.type === "checkbox") el.checked = Boolean(item[el.name]);
    else setValue(el, item[el.name]);
  }
}

/** A value of `item` as its field holds it (text, or a checkbox's boolean). */
function asField(el, value) {
  return el.type === "checkbox" ? Boolean(value) : String(value ?? "");
}

/**
 * After a reload, each field shows the `latest` version, except where only the user changed it
 * since `base` (it keeps what they typed). Where someone else changed it too, what the user typed
 * goes under it with a button to put it back. Returns how many fields got such a note.
 */
function merge(form, base, latest, typed) {
  let clashes = 0;
  for (const el of form.elements) {
    if (!el.name || !(el.name in latest) || !(el.name in typed)) continue;
    const [was, now, mine] = [asField(el, base[el.name]), asField(el, latest[el.name]), typed[el.name]];
    if (mine !== was && now === was) continue; // only the user changed it: theirs stays
    fill(form, { [el.name]: latest[el.name] });
    if (mine === was || mine === now) continue;
    clashes += 1;
    const shown = el.tagName === "SELECT" ? [...el.options].find((option) => option.value === mine)?.text : mine;
    const note = h(
      "div",
      { class: "typed" },
      h("p", { class: "hint" }, "Your change, not saved:"),
      h("p", { class: "typed-text" }, shown || "(empty)"),
      button("Use mine", {
        class: "small",
        onclick: () => {
          setValue(el, mine);
          note.remove();
          el.focus();
        },
      }),
    );
    el.closest(".field").append(note);
  }
  return clashes;
}

/**
 * Edit one item the API sent with its ETag: `form` shows `item`, and a submit runs
 * `save(values, etag)`, which sends the ETag as If-Match and resolves with the saved item (the
 * next save's version). If the item changed elsewhere (412), nothing is saved and the form keeps
 * what the user typed, with a Reload button: `load()` reads the latest version, and `merge` shows
 * it without dropping the user's changes. `options` are onSubmit's. Returns what gives the item
 * the form shows now.
 */
export function editForm(form, item, { load, save, ...options }) {
  let shown = item;
  fill(form, shown);
  const reload = async () => {
    const typed = values(form);
    form.setAttribute("aria-busy", "true");
    try {
      const latest = await load();
      clearErrors(form);
      for (const note of form.querySelectorAll(".typed")) note.remove();
      const clashes = merge(form, shown, latest, typed);
      shown = latest;
      const alert = form.querySelector(".form-alert");
      alert.textContent = clashes
        ? "Reloaded: this is the latest version. Where it clashes with what you changed, your change is under the field: use it or keep the latest, then save."
        : "Reloaded: this is the latest version, with your changes kept. Save to apply them.";
      alert.classList.add("note");
      alert.hidden = false;
      // The Reload button that had focus is gone with the old text: the news takes its place.
      revealAlert(alert);
    } catch (error) {
      showError(form, error);
    } finally {
      form.removeAttribute("aria-busy");
    }
  };
  onSubmit(
    form,
    async (data, submitter) => {
      const saved = await save(data, etagOf(shown), submitter);
      for (const note of form.querySelectorAll(".typed")) note.remove();
      if (saved) shown = saved;
    },
    { ...options, reload },
  );
  return () => shown;
}
