// Posts: the public feed, one post with its votes, the editor, and "my posts" with drafts.

import { ApiError, currentUser, etagOf, request } from "../api.js";
import { button, checkbox, confirmDialog, field, formAlert, h, replace, time, toast } from "../dom.js";
import { changedElsewhere, editForm, inlineError, onSubmit, reloadButton } from "../forms.js";
import { PAGE_SIZE, choiceFrom, drawPager, pageCount, pageQuery, pager, withQuery } from "../list.js";

const EXCERPT = 280;
const SHOW = [
  ["all", "All"],
  ["published", "Published"],
  ["drafts", "Drafts"],
];

function excerpt(text) {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > EXCERPT ? `${flat.slice(0, EXCERPT).trimEnd()}…` : flat;
}

/** Paragraphs from blank-line-separated text; single newlines stay as line breaks (CSS). */
function paragraphs(text) {
  return text
    .split(/\n\s*\n/)
    .filter((part) => part.trim())
    .map((part) => h("p", {}, part));
}

function byline(post) {
  const who = post.author.full_name ? `${post.author.full_name} (@${post.author.username})` : `@${post.author.username}`;
  return h(
    "p",
    { class: "byline" },
    `${who} · `,
    post.published ? time(post.published_at) : h("span", { class: "badge draft" }, "Draft"),
  );
}

function votesLabel(count) {
  return `${count} ${count === 1 ? "vote" : "votes"}`;
}

/**
 * The page the address asks for. The post lists keep the API's `offset` in their address
 * (`?offset=20`) rather than a page number, so links to them keep working.
 */
function pageFromOffset(query) {
  const offset = Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
  return Math.floor(offset / PAGE_SIZE) + 1;
}

/** The pager of a post list; each page has its own address, so Back returns to it. */
function postsPager(ctx, total, page, href, labels) {
  const go = (to) => ctx.navigate(href((to - 1) * PAGE_SIZE));
  return drawPager(pager(), { page, pages: pageCount(total), go, labels });
}

export async function feed(container, ctx) {
  ctx.title("");
  const q = ctx.query.get("q") || "";
  const current = pageFromOffset(ctx.query);
  const page = await request("GET", "/posts", { query: { q, ...pageQuery(current) } });
  const href = (offset, term = q) => withQuery("/", { q: term, offset }, { offset: 0 });
  const searchForm = h(
    "form",
    { class: "toolbar", role: "search" },
    field("Search posts", "q", { type: "search", value: q, maxlength: 200 }),
    h("button", { type: "submit" }, "Search"),
  );
  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.navigate(href(0, searchForm.elements.q.value.trim()));
  });
  const user = currentUser();
  replace(
    container,
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Latest posts"),
      user ? h("a", { href: "/posts/new", class: "button primary" }, "Write a post") : null,
    ),
    user ? null : h("p", { class: "lead" }, "What people are writing on Keel. ", h("a", { href: "/signup" }, "Join"), " to write and vote."),
    searchForm,
    page.items.length
      ? h("ol", { class: "post-list" }, page.items.map((post) => postCard(post)))
      : h("p", { class: "empty" }, q ? "No posts match your search." : "No posts yet."),
    postsPager(ctx, page.total, current, href, ["Newer", "Older"]),
  );
}

function postCard(post) {
  return h(
    "li",
    {},
    h(
      "article",
      { class: "card post-card" },
      h("h2", {}, h("a", { href: `/posts/${post.id}` }, post.title)),
      byline(post),
      h("p", { class: "excerpt" }, excerpt(post.content)),
      h("p", { class: "post-foot" }, h("span", { class: `votes${post.voted ? " voted" : ""}` }, `▲ ${votesLabel(post.votes)}`)),
    ),
  );
}

/**
 * `post` after this reader's vote. A vote changes the post's ETag (it counts votes), so the post
 * is read again; the new version (and ETag, for Delete) is taken only while what the page shows
 * of it is still current. Otherwise Delete meets 412 and offers a reload.
 */
async function afterVote(post) {
  post.voted = !post.voted;
  post.votes += post.voted ? 1 : -1;
  try {
    const latest = await request("GET", `/posts/${post.id}`);
    const same = ["title", "content", "published", "author"].every((name) => JSON.stringify(latest[name]) === JSON.stringify(post[name]));
    if (same && latest.voted === post.voted) return latest;
  } catch {
    /* the vote counted; the page keeps the version it shows */
  }
  return post;
}

export async function show(container, ctx) {
  let post = await request("GET", `/posts/${encodeURIComponent(ctx.params.id)}`);
  ctx.title(post.title);
  const user = currentUser();
  const isAuthor = user && user.id === post.author.id;
  const message = inlineError();
  const fail = (error) => {
    const verify = error.code === "email_not_verified" && [" ", h("a", { href: "/account" }, "Verify your email on your account page.")];
    const reload = changedElsewhere(error) && [" ", reloadButton(() => ctx.navigate(`/posts/${post.id}`, { replace: true }))];
    message.show(error, verify, reload);
  };

  let voteControl;
  if (!post.published) {
    voteControl = null;
  } else if (!user) {
    voteControl = h("p", {}, h("span", { class: "votes" }, `▲ ${votesLabel(post.votes)}`), " · ", h("a", { href: `/signin?next=/posts/${post.id}` }, "Sign in to vote"));
  } else {
    const vote = button("", { class: "vote", "aria-pressed": String(post.voted) });
    const draw = () => {
      replace(vote, post.voted ? "▲ Voted" : "▲ Vote", " · ", votesLabel(post.votes));
      vote.setAttribute("aria-pressed", String(post.voted));
    };
    vote.addEventListener("click", async () => {
      message.hide();
      vote.disabled = true;
      try {
        await request(post.voted ? "DELETE" : "POST", `/posts/${post.id}/vote`);
        post = await afterVote(post);
        draw();
      } catch (error) {
        fail(error);
      } finally {
        vote.disabled = false;
      }
    });
    draw();
    voteControl = vote;
  }

  const actions = [];
  if (isAuthor) actions.push(h("a", { href: `/posts/${post.id}/edit`, class: "button" }, "Edit"));
  if (isAuthor || (user && user.role === "admin")) {
    actions.push(
      button("Delete", {
        class: "danger",
        onclick: async () => {
          if (!(await confirmDialog(`Delete the post “${post.title}”? Its votes go with it.`))) return;
          try {
            await request("DELETE", `/posts/${post.id}`, { ifMatch: etagOf(post) });
            toast("Post deleted.");
            ctx.navigate(isAuthor ? "/my-posts" : "/", { replace: true });
          } catch (error) {
            fail(error);
          }
        },
      }),
    );
  }
  replace(
    container,
    h(
      "article",
      { class: "post" },
      h("h1", {}, post.title),
      byline(post),
      h("div", { class: "post-content" }, paragraphs(post.content)),
      h("div", { class: "post-actions" }, voteControl, ...actions),
      message.element,
    ),
    h("p", {}, h("a", { href: "/" }, "← Back to the feed")),
  );
}

export async function editor(container, ctx) {
  const editing = ctx.params.id !== undefined;
  const post = editing ? await request("GET", `/posts/${encodeURIComponent(ctx.params.id)}`) : null;
  const heading = editing ? "Edit post" : "Write a post";
  ctx.title(heading);
  if (editing && post.author.id !== currentUser().id) {
    throw new ApiError(403, { detail: "Only the author can edit this post." });
  }
  const form = h(
    "form",
    { class: "card", novalidate: true },
    formAlert(),
    field("Title", "title", { required: true, maxlength: 200 }),
    field("Text", "content", { control: "textarea", rows: 14, required: true, maxlength: 50000, hint: "Plain text. Leave a blank line between paragraphs." }),
    checkbox("Published: visible to everyone in the feed", "published"),
    h(
      "div",
      { class: "actions" },
      h("a", { href: editing ? `/posts/${post.id}` : "/my-posts", class: "button" }, "Cancel"),
      h("button", { type: "submit", class: "primary" }, editing ? "Save" : "Save post"),
    ),
  );
  const publish = async (send) => {
    let saved;
    try {
      saved = await send();
    } catch (error) {
      if (error.code !== "email_not_verified") throw error;
      throw new ApiError(error.status, {
        detail: `${error.detail} Your account page can send you a new link; until then, save it as a draft.`,
      });
    }
    toast(saved.published ? "Post published." : "Draft saved.");
    ctx.navigate(`/posts/${saved.id}`, { replace: true });
    return saved;
  };
  if (editing) {
    editForm(form, post, {
      load: () => request("GET", `/posts/${post.id}`),
      save: (data, etag) => publish(() => request("PATCH", `/posts/${post.id}`, { body: data, ifMatch: etag })),
    });
  } else {
    onSubmit(form, (data) => publish(() => request("POST", "/posts", { body: data })));
  }
  replace(container, h("h1", {}, heading), form);
}

export async function mine(container, ctx) {
  ctx.title("My posts");
  const filter = choiceFrom(ctx.query, "show", SHOW);
  const current = pageFromOffset(ctx.query);
  const page = await request("GET", "/posts/mine", {
    query: { published: filter === "all" ? null : filter === "published", ...pageQuery(current) },
  });
  const href = (offset, show = filter) => withQuery("/my-posts", { show, offset }, { show: "all", offset: 0 });
  const tabs = h(
    "nav",
    { class: "tabs", "aria-label": "Which posts" },
    SHOW.map(([value, text]) => h("a", { href: href(0, value), "aria-current": filter === value ? "page" : false }, text)),
  );
  replace(
    container,
    h("div", { class: "page-head" }, h("h1", {}, "My posts"), h("a", { href: "/posts/new", class: "button primary" }, "Write a post")),
    tabs,
    page.items.length
      ? h(
          "ul",
          { class: "mine-list" },
          page.items.map((post) =>
            h(
              "li",
              { class: "card" },
              h("h2", {}, h("a", { href: `/posts/${post.id}` }, post.title)),
              h(
                "p",
                { class: "byline" },
                post.published ? h("span", { class: "badge published" }, "Published") : h("span", { class: "badge draft" }, "Draft"),
                " · ",
                post.published ? votesLabel(post.votes) : "Only you can see it",
                " · updated ",
                time(post.updated_at),
              ),
              h("p", {}, h("a", { href: `/posts/${post.id}/edit`, "aria-label": `Edit “${post.title}”` }, "Edit")),
            ),
          ),
        )
      : h("p", { class: "empty" }, filter === "drafts" ? "No drafts." : "You have not written anything yet."),
    postsPager(ctx, page.total, current, href),
  );
}
