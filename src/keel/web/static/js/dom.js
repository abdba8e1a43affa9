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
    attrs.type === "password" ? h("div", { class: "password-box" }, input, revealButton(input)) : input,
    h("p", { class: "field-error", id: errorId, hidden: true }),
  );
}

/**
 * The toggle beside a password input that shows what was typed (a phone's keyboard is easy to
 * miss on). Its name stays "Show password" and aria-pressed says whether it is shown; the
 * name is its text, not an aria-label, so the field's own label is the only one with "password".
 */
function revealButton(input) {
  const toggle = h(
    "button",
    { type: "button", class: "reveal small", "aria-pressed": "false", "aria-controls": input.id },
    "Show",
    h("span", { class: "visually-hidden" }, " password"),
  );
  toggle.addEventListener("click", () => showPassword(input, input.type === "password"));
  return toggle;
}

/** Show (type=text) or hide (type=password) a password input, its toggle saying which. */
export function showPassword(input, shown) {
  input.type = shown ? "text" : "password";
  const toggle = input.parentElement.querySelector(".reveal");
  if (toggle) toggle.setAttribute("aria-pressed", String(shown));
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

/** The message area at the top of a form, read out when it changes, and focused when it shows (forms.js). */
export function formAlert() {
  return h("div", { class: "form-alert", role: "alert", tabindex: -1, hidden: true });
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

/**
 * Place a toast where it does not cover what the person just used: at the bottom of the screen,
 * or at the top when the focused control is in the lower half (on a phone, most of them are).
 */
export function placeToast(element) {
  const focused = document.activeElement;
  const box = focused && focused !== document.body ? focused.getBoundingClientRect() : null;
  element.classList.toggle("at-top", Boolean(box && box.height && box.top + box.height / 2 > window.innerHeight / 2));
}

/**
 * What a page shows where its list would be when there is nothing in it: what that means, and
 * the one thing to do next (a link or a button), so the page never ends in grey text alone.
 */
export function emptyState(text, action = null) {
  return h("div", { class: "empty empty-state" }, h("p", {}, text), action);
}

/** Show a short, polite status message, away from the control just used (see placeToast). */
export function toast(message) {
  const region = document.getElementById("toast");
  if (!region) return;
  placeToast(region);
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

// The one way server-made HTML reaches the page, named so a Trusted Types policy could allow it.
const serverPolicy = window.trustedTypes?.createPolicy?.("keel-server-html", { createHTML: (html) => html }) || null;

/**
 * Nodes from HTML the server rendered and sanitised (a post's or comment's `content_html`):
 * parsed by DOMParser into an inert document (nothing in it runs or loads there), then moved
 * here. Never for anything else: every other piece of user data goes in as text.
 */
export function serverHTML(html) {
  const parsed = new DOMParser().parseFromString(serverPolicy ? serverPolicy.createHTML(html) : html, "text/html");
  const fragment = document.createDocumentFragment();
  fragment.append(...parsed.body.childNodes);
  // A wide table scrolls inside its own box instead of widening the page on a phone.
  for (const table of fragment.querySelectorAll("table")) {
    const box = h("div", { class: "table-scroll", tabindex: 0, role: "region", "aria-label": "Table" });
    table.replaceWith(box);
    box.append(table);
  }
  return fragment;
}
