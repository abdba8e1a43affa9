// What the feed, a post's page and the editor show of a post alike: its byline, tags, reading
// time and the Vote button, which follows the API's rules (published posts only, never one's own).

import { currentUser, request } from "../api.js";
import { button, h, replace, time } from "../dom.js";

export function votesLabel(count) {
  return `${count} ${count === 1 ? "vote" : "votes"}`;
}

export function commentsLabel(count) {
  return `${count} ${count === 1 ? "comment" : "comments"}`;
}

export function byline(post) {
  const who = post.author.full_name ? `${post.author.full_name} (@${post.author.username})` : `@${post.author.username}`;
  return h(
    "p",
    { class: "byline" },
    `${who} · `,
    post.published ? time(post.published_at) : h("span", { class: "badge draft" }, "Draft"),
    ` · ${post.reading_minutes} min read`,
  );
}

/** The address of a tag's page, with the feed's order when it is not the default. */
export function tagHref(tag, sort = "new") {
  return `/tags/${encodeURIComponent(tag)}${sort === "top" ? "?sort=top" : ""}`;
}

/** The post's tags as chips, each a link to its tag's page. */
export function tagList(tags) {
  if (!tags || !tags.length) return null;
  return h(
    "ul",
    { class: "tag-chips", "aria-label": "Tags" },
    tags.map((tag) => h("li", {}, h("a", { class: "chip", href: tagHref(tag) }, `#${tag}`))),
  );
}

/** Whether the caller wrote `post`: the API says so (`is_author`), else the ids do. */
export function isAuthor(post) {
  if (typeof post.is_author === "boolean") return post.is_author;
  const user = currentUser();
  return Boolean(user && user.id === post.author.id);
}

/**
 * The post's votes: a Vote button for a signed-in reader of someone else's published post, the
 * count alone otherwise (authors cannot vote for their own posts: 403 `own_post`). `onError(error)`
 * shows a refusal where it fits; `afterVote(post)` may give the post as it is now (the post page
 * reads it again for its ETag). `signInLink` adds "Sign in to vote" for visitors.
 */
export function voteControl(post, { onError, afterVote, signInLink = false }) {
  if (!post.published) return null;
  const user = currentUser();
  const count = () => h("span", { class: `votes${post.voted ? " voted" : ""}` }, `▲ ${votesLabel(post.votes)}`);
  if (!user) {
    return signInLink
      ? h("p", { class: "vote-line" }, count(), " · ", h("a", { href: `/signin?next=/posts/${post.id}` }, "Sign in to vote"))
      : count();
  }
  if (isAuthor(post)) return count();
  const vote = button("", { class: "vote small", "aria-pressed": String(post.voted) });
  const draw = () => {
    replace(vote, post.voted ? "▲ Voted" : "▲ Vote", " · ", votesLabel(post.votes));
    vote.setAttribute("aria-pressed", String(post.voted));
    vote.setAttribute("aria-label", `${post.voted ? "Voted" : "Vote"} for “${post.title}”, ${votesLabel(post.votes)}`);
  };
  vote.addEventListener("click", async () => {
    if (vote.getAttribute("aria-disabled") === "true") return;
    vote.setAttribute("aria-disabled", "true");
    try {
      await request(post.voted ? "DELETE" : "POST", `/posts/${post.id}/vote`);
      post.voted = !post.voted;
      post.votes += post.voted ? 1 : -1;
      if (afterVote) post = await afterVote(post);
      draw();
    } catch (error) {
      onError(error);
    } finally {
      vote.removeAttribute("aria-disabled");
    }
  });
  draw();
  return vote;
}
