// The post editor: Markdown with Write / Preview tabs (the preview is the server's own rendering,
// from POST /posts/preview, so it cannot differ from what readers will see), tags as chips, and
// Publish / Save draft buttons. Leaving with unsaved text asks first.

import { ApiError, currentUser, request } from "../api.js";
import { button, confirmDialog, field, formAlert, h, replace, serverHTML, toast } from "../dom.js";
import { editForm, onSubmit } from "../forms.js";
import { guardLeaving } from "../router.js";

const MAX_TAGS = 5;
const TAG = /^[a-z0-9-]{1,30}$/;

/** A tag as the server keeps it ("#Python " is `python`), or null when it cannot be one. */
export function normaliseTag(text) {
  const bare = text.trim().replace(/^#/, "").toLowerCase();
  return TAG.test(bare) ? bare : null;
}

/**
 * Tag chips over a text input: Enter, a comma or leaving the input adds what was typed; a chip's
 * × (or Backspace in the empty input) removes it. `get()` is the list; `onChange` says it changed.
 */
function tagInput(initial, onChange) {
  let tags = [...initial];
  const holder = field("Tags", "tag-entry", {
    hint: `Up to ${MAX_TAGS}: letters, digits and hyphens. Press Enter or a comma after each.`,
    autocomplete: "off",
    maxlength: 31,
  });
  const input = holder.querySelector("input");
  input.removeAttribute("name"); // the chips are the value, not what is half typed
  const error = holder.querySelector(".field-error");
  holder.dataset.field = "tags";
  const chips = h("ul", { class: "tag-chips editing", "aria-label": "Tags chosen" });
  input.before(chips);
  const say = (text) => {
    error.textContent = text || "";
    error.hidden = !text;
    if (text) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  };
  const draw = () => {
    replace(
      chips,
      tags.map((tag) =>
        h(
          "li",
          { class: "chip" },
          `#${tag}`,
          button("×", { class: "chip-remove", "aria-label": `Remove tag ${tag}`, onclick: () => removeTag(tag) }),
        ),
      ),
    );
    chips.hidden = !tags.length;
  };
  const removeTag = (tag) => {
    tags = tags.filter((t) => t !== tag);
    say("");
    draw();
    onChange();
    input.focus();
  };
  const commit = () => {
    const typed = input.value.replace(/,/g, "").trim();
    if (!typed) return true;
    const tag = normaliseTag(typed);
    if (!tag) {
      say(`“${typed}” cannot be a tag: use 1 to 30 letters, digits or hyphens.`);
      return false;
    }
    if (!tags.includes(tag)) {
      if (tags.length >= MAX_TAGS) {
        say(`A post has at most ${MAX_TAGS} tags. Remove one to add “${tag}”.`);
        return false;
      }
      tags.push(tag);
      onChange();
    }
    input.value = "";
    say("");
    draw();
    return true;
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === ",") {
      event.preventDefault();
      commit();
    } else if (event.key === "Backspace" && !input.value && tags.length) {
      removeTag(tags[tags.length - 1]);
    }
  });
  input.addEventListener("blur", () => commit());
  input.addEventListener("input", () => say("")); // a refusal is about what was typed before
  draw();
  return {
    element: holder,
    /** The tags, with what is still in the input; throws a readable error when that cannot be one. */
    get() {
      if (!commit()) throw new ApiError(422, { detail: error.textContent, errors: [{ loc: ["body", "tags"], msg: error.textContent }] });
      return [...tags];
    },
    set(list) {
      tags = [...list];
      draw();
    },
  };
}

/** Write / Preview over the Markdown text; the preview asks the server to render it. */
function markdownTabs(textarea) {
  const write = button("Write", { role: "tab", "aria-selected": "true", id: "tab-write", "aria-controls": "panel-write" });
  const preview = button("Preview", { role: "tab", "aria-selected": "false", id: "tab-preview", "aria-controls": "panel-preview", tabindex: -1 });
  const output = h("div", { class: "preview prose", id: "panel-preview", role: "tabpanel", "aria-labelledby": "tab-preview", hidden: true, tabindex: 0 });
  const writePanel = textarea.closest(".field");
  writePanel.id = "panel-write";
  writePanel.setAttribute("role", "tabpanel");
  writePanel.setAttribute("aria-labelledby", "tab-write");
  let latest = 0;
  const select = async (showPreview) => {
    write.setAttribute("aria-selected", String(!showPreview));
    preview.setAttribute("aria-selected", String(showPreview));
    write.tabIndex = showPreview ? -1 : 0;
    preview.tabIndex = showPreview ? 0 : -1;
    writePanel.hidden = showPreview;
    output.hidden = !showPreview;
    if (!showPreview) return;
    const mine = ++latest;
    const text = textarea.value;
    if (!text.trim()) {
      replace(output, h("p", { class: "muted" }, "Nothing to preview yet."));
      return;
    }
    replace(output, h("p", { class: "muted" }, "Rendering…"));
    output.setAttribute("aria-busy", "true");
    try {
      const rendered = await request("POST", "/posts/preview", { body: { content: text } });
      if (mine === latest) {
        replace(output, h("p", { class: "hint" }, `${rendered.reading_minutes} min read · as readers will see it`), serverHTML(rendered.content_html));
      }
    } catch (error) {
      if (mine === latest) replace(output, h("p", { class: "field-error" }, error.detail || "The preview could not be made. Your text is safe: try again."));
    } finally {
      output.removeAttribute("aria-busy");
    }
  };
  write.addEventListener("click", () => select(false));
  preview.addEventListener("click", () => select(true));
  const tablist = h("div", { class: "md-tabs", role: "tablist", "aria-label": "Write or preview" }, write, preview);
  // Arrow keys move between the two tabs, as in any tab list.
  tablist.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    const next = event.target === write ? preview : write;
    next.focus();
    select(next === preview);
  });
  writePanel.before(tablist);
  writePanel.after(output);
  return { showWrite: () => select(false) };
}

export async function editor(container, ctx) {
  const editing = ctx.params.id !== undefined;
  const post = editing ? await request("GET", `/posts/${encodeURIComponent(ctx.params.id)}`) : null;
  const heading = editing ? "Edit post" : "Write a post";
  ctx.title(heading);
  if (editing && post.author.id !== currentUser().id) {
    throw new ApiError(403, { detail: "Only the author can edit this post." });
  }
  const published = Boolean(post && post.published);
  const primary = published ? ["save", "Save"] : ["publish", "Publish"];
  const secondary = published ? ["unpublish", "Move to drafts"] : ["draft", "Save draft"];
  const form = h(
    "form",
    { class: "card editor", novalidate: true },
    formAlert(),
    field("Title", "title", { required: true, maxlength: 200 }),
    field("Text", "content", { control: "textarea", rows: 16, required: true, maxlength: 50000, hint: "Markdown: **bold**, _italic_, # headings, [links](https://…), lists, `code`, tables." }),
    h(
      "div",
      { class: "actions" },
      h("a", { href: editing ? `/posts/${post.id}` : "/my-posts", class: "button" }, "Cancel"),
      h("button", { type: "submit", value: secondary[0] }, secondary[1]),
      h("button", { type: "submit", class: "primary", value: primary[0] }, primary[1]),
    ),
  );
  const tabs = markdownTabs(form.elements.content);
  let dirty = false;
  const tags = tagInput(post ? post.tags || [] : [], () => {
    dirty = true;
  });
  form.elements.content.closest(".field").parentElement.insertBefore(tags.element, form.querySelector(".actions"));
  form.addEventListener("input", () => {
    dirty = true;
  });

  // Unsaved text is not lost by accident: closing the tab asks (the browser's own question),
  // and so does leaving through the app's links or Back (ours).
  const beforeUnload = (event) => {
    if (!dirty) return;
    event.preventDefault();
    event.returnValue = "";
  };
  window.addEventListener("beforeunload", beforeUnload);
  const unguard = guardLeaving(() => (dirty ? confirmDialog("Leave without saving? What you wrote here will be lost.", { confirm: "Leave" }) : true));
  ctx.onLeave(() => {
    window.removeEventListener("beforeunload", beforeUnload);
    unguard();
  });

  const body = (data, submitter) => {
    const choice = submitter?.value || primary[0];
    const sent = { title: data.title, content: data.content, tags: tags.get() };
    if (choice !== "save") sent.published = choice === "publish";
    return sent;
  };
  const send = async (action) => {
    let saved;
    try {
      saved = await action();
    } catch (error) {
      if (error.code !== "email_not_verified") throw error;
      throw new ApiError(error.status, {
        detail: `${error.detail} Your account page can send you a new link; until then, save it as a draft.`,
      });
    }
    dirty = false;
    unguard();
    toast(saved.published ? (published ? "Post saved." : "Post published.") : "Draft saved.");
    ctx.navigate(`/posts/${saved.id}`, { replace: true });
    return saved;
  };
  const showTextErrors = { fieldNames: { tags: "tags" } };
  if (editing) {
    editForm(form, post, {
      load: () => request("GET", `/posts/${post.id}`),
      save: (data, etag, submitter) => send(() => request("PATCH", `/posts/${post.id}`, { body: body(data, submitter), ifMatch: etag })),
      ...showTextErrors,
    });
  } else {
    onSubmit(form, (data, submitter) => send(() => request("POST", "/posts", { body: body(data, submitter) })), showTextErrors);
  }
  form.addEventListener("submit", () => tabs.showWrite(), { capture: true });
  // Enter in the title saves without publishing anything or taking a post off the feed.
  const safe = form.querySelector(`button[value="${published ? "save" : "draft"}"]`);
  form.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.defaultPrevented || event.target.tagName !== "INPUT") return;
    event.preventDefault();
    form.requestSubmit(safe);
  });
  replace(container, h("h1", {}, heading), form);
}
