// Posts: the public feed (newest or top, of every tag or one) and "my posts" with drafts.
// A post's own page is post.js; the editor is post-editor.js.

import { ApiError, currentUser, request } from "../api.js";
import { emptyState, field, h, replace, time } from "../dom.js";
import { PAGE_SIZE, choiceFrom, drawPager, pageCount, pageQuery, pager, withQuery } from "../list.js";
import { byline, commentsLabel, tagHref, tagList, voteControl, votesLabel } from "./post-parts.js";

const SORTS = [
  ["new", "New"],
  ["top", "Top"],
];
const SHOW = [
  ["all", "All"],
  ["published", "Published"],
  ["drafts", "Drafts"],
];

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

/** What a feed address shows: its tag, search, order and page. */
function feedView(params, query) {
  return {
    tag: params.tag ? params.tag.toLowerCase() : null,
    q: query.get("q") || "",
    sort: choiceFrom(query, "sort", SORTS),
    current: pageFromOffset(query),
  };
}

/** The feed's reads (its page of posts, the tag list), for the page and for an early start. */
export function feedReads(params, query) {
  const { tag, q, sort, current } = feedView(params, query);
  return [
    ["/posts", { q, tag, sort, ...pageQuery(current) }],
    ["/tags", { limit: 30 }],
  ];
}

export async function feed(container, ctx) {
  const { tag, q, sort, current } = feedView(ctx.params, ctx.query);
  ctx.title(tag ? `#${tag}` : "");
  const [posts, tagList] = feedReads(ctx.params, ctx.query);
  const [page, tags] = await Promise.all([
    request("GET", posts[0], { query: posts[1] }),
    // The tag list is a way in, not the page: without it the feed still shows.
    request("GET", tagList[0], { query: tagList[1] }).catch(() => null),
  ]);
  const base = tag ? `/tags/${encodeURIComponent(tag)}` : "/";
  const href = (offset, term = q, order = sort) => withQuery(base, { sort: order, q: term, offset }, { sort: "new", offset: 0 });
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
  const tabs = h(
    "nav",
    { class: "tabs", "aria-label": "Order" },
    SORTS.map(([value, text]) => h("a", { href: href(0, q, value), "aria-current": sort === value ? "page" : false }, text)),
  );
  const user = currentUser();
  const heading = tag ? h("h1", {}, h("span", { class: "muted" }, "Posts tagged "), `#${tag}`) : h("h1", {}, sort === "top" ? "Top posts" : "Latest posts");
  const empty = q
    ? emptyState(`No posts match “${q}”.`, h("a", { href: href(0, "", sort), class: "button" }, "Clear the search"))
    : tag
      ? emptyState(`No published posts are tagged #${tag} yet.`, user ? h("a", { href: "/posts/new", class: "button primary" }, "Write one") : null)
      : user
        ? emptyState("No posts yet.", h("a", { href: "/posts/new", class: "button primary" }, "Write the first post"))
        : emptyState("No posts yet.", h("a", { href: "/signup", class: "button primary" }, "Join to write the first one"));
  replace(
    container,
    h("div", { class: "page-head" }, heading, user ? h("a", { href: "/posts/new", class: "button primary" }, "Write a post") : null),
    user || tag ? null : h("p", { class: "lead" }, "What people are writing on Keel. ", h("a", { href: "/signup" }, "Join"), " to write and vote."),
    tag ? h("p", { class: "back-link" }, h("a", { href: withQuery("/", { sort }, { sort: "new" }) }, "← All posts")) : null,
    h(
      "div",
      { class: "feed-layout" },
      h(
        "div",
        { class: "feed-main" },
        tabs,
        searchForm,
        page.items.length ? h("ol", { class: "post-list" }, page.items.map((post) => postCard(post, sort))) : empty,
        postsPager(ctx, page.total, current, href, sort === "top" ? ["Previous", "Next"] : ["Newer", "Older"]),
      ),
      tagCloud(tags, tag, sort),
    ),
  );
}

/** The tags in use, most used first: a sidebar beside the feed, a row above it on a phone. */
function tagCloud(tags, active, sort) {
  if (!tags || !tags.items.length) return null;
  return h(
    "aside",
    { class: "tag-cloud", "aria-labelledby": "tag-cloud-title" },
    h("h2", { id: "tag-cloud-title" }, "Tags"),
    h(
      "ul",
      { class: "tag-chips" },
      tags.items.map(({ tag, count }) =>
        h(
          "li",
          {},
          h(
            "a",
            { class: "chip", href: tagHref(tag, sort), "aria-current": tag === active ? "page" : false, "aria-label": `#${tag}, ${count} ${count === 1 ? "post" : "posts"}` },
            `#${tag}`,
            h("span", { class: "chip-count", "aria-hidden": "true" }, String(count)),
          ),
        ),
      ),
    ),
  );
}

function postCard(post) {
  const message = h("p", { class: "field-error", role: "alert", hidden: true });
  const onError = (error) => {
    if (error.status === 401) return;
    if (!(error instanceof ApiError)) console.error(error);
    const verify = error.code === "email_not_verified" ? [" ", h("a", { href: "/account" }, "Verify your email on your account page.")] : [];
    replace(message, error.detail || "The vote did not count. Please try again.", ...verify);
    message.hidden = false;
  };
  return h(
    "li",
    {},
    h(
      "article",
      { class: "card post-card" },
      h("h2", {}, h("a", { href: `/posts/${post.id}` }, post.title)),
      byline(post),
      h("p", { class: "excerpt" }, post.excerpt),
      tagList(post.tags),
      h(
        "div",
        { class: "post-foot" },
        voteControl(post, { onError }),
        h("a", { href: `/posts/${post.id}`, class: "comments-link", "aria-label": `${commentsLabel(post.comments_count ?? 0)} on “${post.title}”` }, commentsLabel(post.comments_count ?? 0)),
      ),
      message,
    ),
  );
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
                post.published ? `${votesLabel(post.votes)} · ${commentsLabel(post.comments_count ?? 0)}` : "Only you can see it",
                " · updated ",
                time(post.updated_at),
              ),
              h("p", {}, h("a", { href: `/posts/${post.id}/edit`, "aria-label": `Edit “${post.title}”` }, "Edit")),
            ),
          ),
        )
      : emptyState(
          filter === "drafts" ? "No drafts. A post you save without publishing waits here." : filter === "published" ? "Nothing published yet." : "You have not written anything yet.",
          // The page's head offers "Write a post" already; the first one gets its own invitation.
          filter === "all" ? h("a", { href: "/posts/new", class: "button primary" }, "Write your first post") : null,
        ),
    postsPager(ctx, page.total, current, href),
  );
}
