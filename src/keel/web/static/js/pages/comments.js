// The comments under a published post: oldest first, a page at a time ("Show more"), with one
// level of replies. Any verified reader writes and replies; a comment's author edits it; its
// author, the post's author or an admin deletes it (one with replies stays as "[deleted]").

import { ApiError, currentUser, request } from "../api.js";
import { button, confirmDialog, field, formAlert, h, replace, serverHTML, time, toast } from "../dom.js";
import { onSubmit } from "../forms.js";
import { commentsLabel } from "./post-parts.js";

const PAGE = 20;
const MARKDOWN_HINT = "Markdown: **bold**, _italic_, [a link](https://…), `code`.";

/** Whether the API kept `comment` only as the "[deleted]" placeholder above its replies. */
function isDeleted(comment) {
  return Boolean(comment.deleted || !comment.author);
}

function commentForm({ label, submit, value = "", onCancel, send }) {
  const form = h(
    "form",
    { class: "comment-form", novalidate: true },
    formAlert(),
    field(label, "content", { control: "textarea", rows: 4, required: true, maxlength: 10000, hint: MARKDOWN_HINT }),
    h(
      "div",
      { class: "actions" },
      onCancel ? button("Cancel", { onclick: onCancel }) : null,
      h("button", { type: "submit", class: "primary" }, submit),
    ),
  );
  form.elements.content.value = value;
  onSubmit(form, async (data) => {
    if (!data.content.trim()) {
      throw new ApiError(422, { detail: "Write something first.", errors: [{ loc: ["body", "content"], msg: "Write something first." }] });
    }
    await send(data.content);
  });
  return form;
}

/**
 * The section under `post`; its first page is loaded before the page is drawn. A post whose
 * comments cannot be loaded just now is still shown, with a note where they would be.
 */
export async function commentsSection(post) {
  const user = currentUser();
  let first;
  try {
    first = await request("GET", `/posts/${post.id}/comments`, { query: { limit: PAGE, offset: 0 } });
  } catch (error) {
    if (error.status === 401) throw error;
    return h(
      "section",
      { class: "comments", id: "comments", "aria-labelledby": "comments-title" },
      h("h2", { id: "comments-title" }, "Comments"),
      h("p", { class: "notice error" }, error.detail || "The comments could not be loaded.", " Reload the page to try again."),
    );
  }
  let loaded = 0; // how many of the API's list are on screen, for the next page's offset
  let total = first.total;
  let count = post.comments_count ?? first.total;
  const shown = new Map(); // comment id -> its list item
  const heading = h("h2", { id: "comments-title" }, "");
  const list = h("ol", { class: "comment-list" });
  const more = button("Show more comments", { class: "more" });
  const drawCount = () => {
    replace(heading, count ? commentsLabel(count) : "Comments");
    more.hidden = loaded >= total;
  };

  const canDelete = (comment) => user && (comment.author?.id === user.id || post.is_author || post.author.id === user.id || user.role === "admin");

  function item(comment) {
    const li = h("li", { class: "comment", id: `comment-${comment.id}`, dataset: { id: comment.id } });
    const replies = comment.parent_id ? null : h("ol", { class: "replies" });
    const slot = h("div", { class: "reply-slot" });
    const draw = () => {
      const deleted = isDeleted(comment);
      const edited = !deleted && comment.updated_at && comment.updated_at !== comment.created_at;
      const actions = [];
      if (user && user.is_verified && !deleted) actions.push(button("Reply", { class: "link", onclick: () => openReply(comment) }));
      if (user && !deleted && comment.author.id === user.id) actions.push(button("Edit", { class: "link", onclick: () => edit() }));
      if (!deleted && canDelete(comment)) actions.push(button("Delete", { class: "link danger-text", onclick: () => remove() }));
      replace(
        body,
        h(
          "p",
          { class: "comment-meta" },
          deleted ? h("span", { class: "muted" }, "[deleted]") : h("strong", {}, `@${comment.author.username}`),
          " · ",
          time(comment.created_at),
          edited ? h("span", { class: "muted" }, " · edited") : null,
        ),
        deleted ? null : h("div", { class: "comment-content prose" }, serverHTML(comment.content_html)),
        actions.length ? h("div", { class: "comment-actions" }, actions) : null,
      );
    };
    const body = h("div", { class: "comment-body" });
    const edit = () => {
      const form = commentForm({
        label: "Edit your comment",
        submit: "Save",
        value: comment.content,
        onCancel: draw,
        send: async (content) => {
          Object.assign(comment, await request("PATCH", `/posts/${post.id}/comments/${comment.id}`, { body: { content } }));
          draw();
          toast("Comment saved.");
        },
      });
      replace(body, form);
      form.elements.content.focus();
    };
    const remove = async () => {
      if (!(await confirmDialog("Delete this comment?"))) return;
      try {
        await request("DELETE", `/posts/${post.id}/comments/${comment.id}`);
      } catch (error) {
        if (error.status !== 401) toast(error.detail || "The comment could not be deleted.");
        return;
      }
      count = Math.max(0, count - 1);
      if (replies && replies.children.length) {
        comment.deleted = true; // the API keeps it above its replies
        draw();
      } else {
        forget(li);
        // A placeholder whose last reply went is gone from the API too.
        const parent = comment.parent_id && shown.get(comment.parent_id);
        if (parent && isDeleted(parent.thread.comment) && !parent.thread.replies.children.length) forget(parent);
      }
      drawCount();
      toast("Comment deleted.");
    };
    li.append(...[body, replies, replies && slot].filter(Boolean));
    li.thread = { comment, replies, slot };
        draw();
    return li;
  }

  function forget(li) {
    li.remove();
    shown.delete(li.thread.comment.id);
    loaded = Math.max(0, loaded - 1);
    total = Math.max(0, total - 1);
  }

  /** Replies go to a top-level comment: a reply's Reply answers its parent's thread. */
  function openReply(comment) {
    const parent = shown.get(comment.parent_id || comment.id);
    if (!parent) return;
    if (isDeleted(parent.thread.comment)) {
      toast("The comment this thread answers was deleted, so it takes no more replies.");
      return;
    }
    const close = () => replace(parent.thread.slot);
    const form = commentForm({
      label: `Reply to @${parent.thread.comment.author?.username || "[deleted]"}`,
      submit: "Reply",
      value: comment.parent_id && comment.author ? `@${comment.author.username} ` : "",
      onCancel: close,
      send: async (content) => {
        const made = await request("POST", `/posts/${post.id}/comments`, { body: { content, parent_id: parent.thread.comment.id } });
        close();
        add(made);
        toast("Reply posted.");
      },
    });
    replace(parent.thread.slot, form);
    form.elements.content.focus();
  }

  function place(comment) {
    if (shown.has(comment.id)) return;
    const li = item(comment);
    shown.set(comment.id, li);
    const parent = comment.parent_id && shown.get(comment.parent_id);
    (parent ? parent.thread.replies : list).append(li);
  }

  function add(comment) {
    place(comment);
    count += 1;
    total += 1;
    // What the next page would hold is on screen already only when everything before it is.
    if (loaded === total - 1) loaded += 1;
    drawCount();
  }

  const accept = (page) => {
    for (const comment of page.items) place(comment);
    loaded += page.items.length;
    total = page.total;
    drawCount();
  };
  more.addEventListener("click", async () => {
    if (more.getAttribute("aria-disabled") === "true") return;
    more.setAttribute("aria-disabled", "true");
    try {
      accept(await request("GET", `/posts/${post.id}/comments`, { query: { limit: PAGE, offset: loaded } }));
    } catch (error) {
      if (error.status !== 401) toast(error.detail || "More comments could not be loaded.");
    } finally {
      more.removeAttribute("aria-disabled");
    }
  });
  accept(first);

  let writer;
  if (!user) {
    writer = h("p", { class: "notice" }, h("a", { href: `/signin?next=/posts/${post.id}` }, "Sign in"), " to join the conversation.");
  } else if (!user.is_verified) {
    writer = h("p", { class: "notice" }, "Commenting needs a verified email address, so every voice here belongs to someone reachable. ", h("a", { href: "/account" }, "Verify your email on your account page."));
  } else {
    writer = commentForm({
      label: "Add a comment",
      submit: "Comment",
      send: async (content) => {
        const made = await request("POST", `/posts/${post.id}/comments`, { body: { content } });
        writer.elements.content.value = "";
        add(made);
        toast("Comment posted.");
      },
    });
  }
  return h("section", { class: "comments", id: "comments", "aria-labelledby": "comments-title" }, heading, list, more, writer);
}
