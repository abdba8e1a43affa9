// Labels: a todo's short tags, typed into one field and shown as chips.
//
// The field keeps its value in a hidden input named `labels` (the labels joined by commas, as the
// API's own stored form), so the form helpers read, fill and merge it like any other field; the
// chips are drawn from that value whenever it is set.

import { button, h, replace } from "./dom.js";

export const MAX_LABELS = 10;
export const MAX_LABEL_LENGTH = 30;

/** A label as the API stores it: trimmed, inner whitespace made one space, lower-cased. */
export function normalise(text) {
  return text.split(/\s+/).filter(Boolean).join(" ").toLowerCase();
}

/** The labels in a field's value ("errands,home"), without blanks or repeats. */
export function parseLabels(text) {
  const labels = [];
  for (const part of String(text || "").split(",")) {
    const label = normalise(part);
    if (label && !labels.includes(label)) labels.push(label);
  }
  return labels;
}

/** One label as a chip; `onclick`, when given, makes it a button (filter by it). */
export function labelChip(label, { onclick, pressed = false } = {}) {
  if (!onclick) return h("span", { class: "chip" }, label);
  return button(label, {
    class: "chip",
    "aria-pressed": pressed ? "true" : "false",
    "aria-label": pressed ? `Showing label “${label}”` : `Show only label “${label}”`,
    onclick,
  });
}

let ids = 0;

/**
 * The labels field: type a label, then a comma or Enter to make it a chip; each chip has its own
 * Remove button; Backspace in the empty field removes the last. Enter in an empty field submits the
 * form as usual. Anything left typed when the form is read counts too (`commit()` before reading).
 */
export function labelsField(label = "Labels") {
  const id = `labels-${++ids}`;
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const value = h("input", { type: "hidden", name: "labels", value: "" });
  const input = h("input", {
    id,
    type: "text",
    autocomplete: "off",
    maxlength: MAX_LABEL_LENGTH * 2,
    "aria-describedby": `${hintId} ${errorId}`,
  });
  const chips = h("ul", { class: "chips", "aria-label": "Labels added" });
  const error = h("p", { class: "field-error", id: errorId, hidden: true });
  const say = (text) => {
    error.textContent = text;
    error.hidden = !text;
    if (text) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  };
  const current = () => parseLabels(value.value);
  const draw = () => {
    const labels = current();
    replace(
      chips,
      labels.map((text) =>
        h(
          "li",
          {},
          h("span", { class: "chip" }, text, " ",
            button("×", {
              class: "chip-remove",
              "aria-label": `Remove label “${text}”`,
              onclick: () => {
                value.value = current().filter((other) => other !== text).join(",");
                draw();
                input.focus();
              },
            }),
          ),
        ),
      ),
    );
    chips.hidden = !labels.length;
  };
  /** Turn what is typed into chips; false (and a message) when a label is refused. */
  const commit = () => {
    const typed = input.value.split(",").map(normalise).filter(Boolean);
    if (!typed.length) return true;
    const labels = current();
    for (const text of typed) {
      if (text.length > MAX_LABEL_LENGTH) {
        say(`A label has at most ${MAX_LABEL_LENGTH} characters.`);
        return false;
      }
      if (!labels.includes(text)) labels.push(text);
    }
    if (labels.length > MAX_LABELS) {
      say(`A todo has at most ${MAX_LABELS} labels.`);
      return false;
    }
    say("");
    value.value = labels.join(",");
    input.value = "";
    draw();
    return true;
  };
  input.addEventListener("keydown", (event) => {
    if ((event.key === "Enter" || event.key === ",") && input.value.trim()) {
      event.preventDefault();
      commit();
    } else if (event.key === "Backspace" && !input.value && current().length) {
      value.value = current().slice(0, -1).join(",");
      draw();
    }
  });
  input.addEventListener("input", () => {
    if (input.value.includes(",")) commit();
  });
  // The form helpers set the hidden value (filling the form, or a reload after a 412): redraw.
  value.addEventListener("keel:set", draw);
  draw();
  const element = h(
    "div",
    { class: "field labels-field", dataset: { field: "labels" } },
    h("label", { for: id }, label),
    h("p", { class: "hint", id: hintId }, `Type a label, then a comma or Enter. Up to ${MAX_LABELS}.`),
    input,
    value,
    chips,
    error,
  );
  return {
    element,
    commit,
    reset() {
      value.value = "";
      input.value = "";
      say("");
      draw();
    },
  };
}
