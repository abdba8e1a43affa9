// One post: its Markdown as the server rendered it, its tags, votes and actions, and the
// comments under it (comments.js).

import { currentUser, etagOf, request } from "../api.js";
import { button, confirmDialog, h, replace, serverHTML, toast } from "../dom.js";
import { changedElsewhere, inlineError, reloadButton } from "../forms.js";
import { commentsSection } from "./comments.js";
import { byline, isAuthor, tagList, voteControl } from "./post-parts.js";

/**
 * `post` after this reader's vote. A vote changes the post's ETag (it counts votes), so the post
 * is read again; the new version (and ETag, for Delete) is taken only while what the page shows
 * of it is still current. Otherwise Delete meets 412 and offers a reload.
 */
async function reread(post) {
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
  const mine = isAuthor(post);
  const message = inlineError();
  const fail = (error) => {
    const verify = error.code === "email_not_verified" && [" ", h("a", { href: "/account" }, "Verify your email on your account page.")];
    const reload = changedElsewhere(error) && [" ", reloadButton(() => ctx.navigate(`/posts/${post.id}`, { replace: true }))];
    message.show(error, verify, reload);
  };
  const votes = voteControl(post, {
    signInLink: true,
    onError: fail,
    afterVote: async (voted) => {
      message.hide();
      post = await reread(voted);
      return post;
    },
  });

  const actions = [];
  if (mine) actions.push(h("a", { href: `/posts/${post.id}/edit`, class: "button" }, "Edit"));
  if (mine || (user && user.role === "admin")) {
    actions.push(
      button("Delete", {
        class: "danger",
        onclick: async () => {
          if (!(await confirmDialog(`Delete the post “${post.title}”? Its votes and comments go with it.`))) return;
          try {
            await request("DELETE", `/posts/${post.id}`, { ifMatch: etagOf(post) });
            toast("Post deleted.");
            ctx.navigate(mine ? "/my-posts" : "/", { replace: true });
          } catch (error) {
            fail(error);
          }
        },
      }),
    );
  }
  const comments = post.published ? await commentsSection(post) : null;
  replace(
    container,
    h(
      "article",
      { class: "post" },
      h("h1", {}, post.title),
      byline(post),
      tagList(post.tags),
      h("div", { class: "post-content prose" }, serverHTML(post.content_html)),
      h("div", { class: "post-actions" }, votes, ...actions),
      message.element,
    ),
    comments,
    h("p", {}, h("a", { href: "/" }, "← Back to the feed")),
  );
}

