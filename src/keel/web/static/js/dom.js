// Small DOM helpers. Every piece of user data goes in as text, never as HTML.

/**
 * Build an element: h("a", { href: "/", class: "brand" }, "Keel").
 * Attributes starting with "on" become event listeners; `false`/`null` attributes are left out.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace everything inside `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let fieldIds = 0;

/**
 * A labelled form field with a slot for its error message.
 * `control` is "input", "textarea" or "select"; `options` for a select are [value, label] pairs.
 */
export function field(label, name, { control = "input", options = [], hint, ...attrs } = {}) {
  const id = `f${++fieldIds}-${name}`;
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  const describedBy = [hintId, errorId].filter(Boolean).join(" ");
  let input;
  if (control === "select") {
    input = h(
      "select",
      { id, name, "aria-describedby": describedBy, ...attrs },
      options.map(([value, text]) => h("option", { value }, text)),
    );
  } else {
    input = h(control, { id, name, "aria-describedby": describedBy, ...attrs });
  }
  return h(
    "div",
    { class: "field", dataset: { field: name } },
    h("label", { for: id }, label),
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    input,
    h("p", { class: "field-error", id: errorId, hidden: true }),
  );
}

/** A checkbox with its label after it. */
export function checkbox(label, name, attrs = {}) {
  const id = `f${++fieldIds}-${name}`;
  return h(
    "div",
    { class: "field checkbox", dataset: { field: name } },
    h("input", { type: "checkbox", id, name, ...attrs }),
    h("label", { for: id }, label),
    h("p", { class: "field-error", id: `${id}-error`, hidden: true }),
  );
}

/** The message area at the top of a form, read out when it changes. */
export function formAlert() {
  return h("div", { class: "form-alert", role: "alert", hidden: true });
}

export function button(text, attrs = {}) {
  return h("button", { type: "button", ...attrs }, text);
}

/** A date-time in the reader's locale, with the exact value in a <time> element. */
export function time(iso) {
  if (!iso) return "";
  const text = new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  return h("time", { datetime: iso }, text);
}

/** Show a short, polite status message at the bottom of the screen. */
export function toast(message) {
  const region = document.getElementById("toast");
  if (!region) return;
  // The live region stays in the page (a region that appears with its text is often not
  // read out); it is only empty, and then invisible, between messages.
  region.textContent = message;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => {
    region.textContent = "";
  }, 4000);
}

/**
 * Ask the user to confirm something with a modal <dialog>. Resolves true or false.
 */
export function confirmDialog(message, { confirm = "Delete", danger = true } = {}) {
  return new Promise((resolve) => {
    const yes = button(confirm, { class: danger ? "danger" : "primary", value: "yes" });
    const no = button("Cancel", { value: "no" });
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": "confirm-text" },
      h("p", { id: "confirm-text" }, message),
      h("div", { class: "actions" }, no, yes),
    );
    const close = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    yes.addEventListener("click", () => close(true));
    no.addEventListener("click", () => close(false));
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      close(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
}
