"""Comments: writing, replying one level deep, editing, deleting with placeholders, the kept count."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI

from tests.factories import Tokens, assert_problem, signed_in
from tests.routes.test_posts import POSTS, Cast, cast, create_post, patch_post, read_post

__all__ = ["cast"]  # the fixture, shared with the posts tests

COMMENT_FIELDS = {
    "id",
    "post_id",
    "author",
    "content",
    "content_html",
    "parent_id",
    "deleted",
    "created_at",
    "updated_at",
}


def comments_url(post_id: int) -> str:
    return f"{POSTS}/{post_id}/comments"


async def comment(
    client: httpx.AsyncClient, tokens: Tokens, post_id: int, content: str = "Nice.", **fields: Any
) -> dict[str, Any]:
    response = await client.post(comments_url(post_id), json={"content": content, **fields}, headers=tokens.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def thread(client: httpx.AsyncClient, post_id: int, tokens: Tokens | None = None) -> list[dict[str, Any]]:
    response = await client.get(comments_url(post_id), headers=tokens.headers if tokens else {})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def count_of(client: httpx.AsyncClient, post_id: int, tokens: Tokens | None = None) -> int:
    return int((await read_post(client, post_id, tokens))["comments_count"])


class TestWrite:
    async def test_a_comment_is_markdown_and_counted(self, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)

        body = await comment(client, cast.other_tokens, post["id"], "**Yes** <script>x</script>")

        assert set(body) == COMMENT_FIELDS
        assert body["content_html"] == "<p><strong>Yes</strong> &lt;script&gt;x&lt;/script&gt;</p>\n"
        assert (body["post_id"], body["parent_id"], body["deleted"]) == (post["id"], None, False)
        assert body["author"]["username"] == "someone_else"
        assert await thread(client, post["id"]) == [body]
        assert await count_of(client, post["id"]) == 1

    async def test_replies_go_one_level_deep(self, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        other_post = await create_post(client, cast.author_tokens, published=True)
        top = await comment(client, cast.other_tokens, post["id"])
        elsewhere = await comment(client, cast.other_tokens, other_post["id"])

        reply = await comment(client, cast.author_tokens, post["id"], "Thanks.", parent_id=top["id"])
        deeper = await client.post(
            comments_url(post["id"]), json={"content": "x", "parent_id": reply["id"]}, headers=cast.other_tokens.headers
        )
        across = await client.post(
            comments_url(post["id"]),
            json={"content": "x", "parent_id": elsewhere["id"]},
            headers=cast.other_tokens.headers,
        )
        missing = await client.post(
            comments_url(post["id"]), json={"content": "x", "parent_id": 987654}, headers=cast.other_tokens.headers
        )

        assert reply["parent_id"] == top["id"]
        for refused in (deeper, across, missing):
            assert_problem(refused, 422, "invalid_parent")
        assert [c["id"] for c in await thread(client, post["id"])] == [top["id"], reply["id"]]
        assert await count_of(client, post["id"]) == 2

    async def test_an_unverified_user_cannot_comment(self, app: FastAPI, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        _, tokens = await signed_in(app, client, is_verified=False)

        response = await client.post(comments_url(post["id"]), json={"content": "x"}, headers=tokens.headers)

        assert_problem(response, 403, "email_not_verified")
        assert await count_of(client, post["id"]) == 0

    async def test_drafts_have_no_comments_and_unpublishing_hides_them(
        self, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        draft = await create_post(client, cast.author_tokens)
        refused = await client.post(
            comments_url(draft["id"]), json={"content": "x"}, headers=cast.author_tokens.headers
        )
        assert_problem(refused, 404, "post_not_found")
        post = await create_post(client, cast.author_tokens, published=True)
        await comment(client, cast.other_tokens, post["id"])

        await patch_post(client, cast.author_tokens, post["id"], published=False)

        assert_problem(await client.get(comments_url(post["id"])), 404, "post_not_found")
        hidden = await client.get(comments_url(post["id"]), headers=cast.other_tokens.headers)
        assert_problem(hidden, 404, "post_not_found")
        assert len(await thread(client, post["id"], cast.author_tokens)) == 1
        assert len(await thread(client, post["id"], cast.admin_tokens)) == 1
        again = await client.post(comments_url(post["id"]), json={"content": "x"}, headers=cast.other_tokens.headers)
        assert_problem(again, 404, "post_not_found")

    async def test_content_limits(self, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        for content in ("", "   ", "x" * 10_001):
            response = await client.post(
                comments_url(post["id"]), json={"content": content}, headers=cast.other_tokens.headers
            )
            assert_problem(response, 422, "validation_error")
        assert (await comment(client, cast.other_tokens, post["id"], "x" * 10_000))["content"] == "x" * 10_000

    async def test_an_idempotency_key_replays_the_first_answer(self, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        headers = {**cast.other_tokens.headers, "Idempotency-Key": "comment-1"}

        first = await client.post(comments_url(post["id"]), json={"content": "once"}, headers=headers)
        second = await client.post(comments_url(post["id"]), json={"content": "once"}, headers=headers)

        assert (first.status_code, second.status_code) == (201, 201)
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json() == first.json()
        assert await count_of(client, post["id"]) == 1

    async def test_concurrent_comments_are_counted_exactly(
        self, app: FastAPI, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        writers = [(await signed_in(app, client))[1] for _ in range(6)]

        responses = await asyncio.gather(
            *(
                client.post(comments_url(post["id"]), json={"content": f"c{n}"}, headers=tokens.headers)
                for tokens in writers
                for n in range(3)
            )
        )

        assert [r.status_code for r in responses] == [201] * 18, [r.text for r in responses]
        assert await count_of(client, post["id"]) == 18
        assert len(await thread(client, post["id"])) == 18


class TestEditAndDelete:
    async def test_only_the_author_edits(self, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        mine = await comment(client, cast.other_tokens, post["id"], "first")

        edited = await client.patch(
            f"{comments_url(post['id'])}/{mine['id']}", json={"content": "*second*"}, headers=cast.other_tokens.headers
        )
        for tokens in (cast.author_tokens, cast.admin_tokens):
            refused = await client.patch(
                f"{comments_url(post['id'])}/{mine['id']}", json={"content": "no"}, headers=tokens.headers
            )
            assert_problem(refused, 403, "not_author")

        assert edited.status_code == 200, edited.text
        assert edited.json()["content_html"] == "<p><em>second</em></p>\n"
        assert edited.headers["etag"]
        stale = await client.patch(
            f"{comments_url(post['id'])}/{mine['id']}",
            json={"content": "third"},
            headers={**cast.other_tokens.headers, "If-Match": '"stale"'},
        )
        assert_problem(stale, 412, "precondition_failed")
        assert (await thread(client, post["id"]))[0]["content"] == "*second*"

    async def test_who_deletes(self, app: FastAPI, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        _, third = await signed_in(app, client)
        by_other = [await comment(client, cast.other_tokens, post["id"]) for _ in range(3)]

        refused = await client.delete(f"{comments_url(post['id'])}/{by_other[0]['id']}", headers=third.headers)
        assert_problem(refused, 403, "not_author")
        for tokens, target in zip((cast.other_tokens, cast.author_tokens, cast.admin_tokens), by_other, strict=True):
            deleted = await client.delete(f"{comments_url(post['id'])}/{target['id']}", headers=tokens.headers)
            assert deleted.status_code == 204, deleted.text

        assert await thread(client, post["id"]) == []
        assert await count_of(client, post["id"]) == 0
        gone = await client.delete(f"{comments_url(post['id'])}/{by_other[0]['id']}", headers=cast.admin_tokens.headers)
        assert_problem(gone, 404, "comment_not_found")

    async def test_a_deleted_comment_with_replies_stays_as_a_placeholder(
        self, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        top = await comment(client, cast.other_tokens, post["id"], "top")
        reply = await comment(client, cast.author_tokens, post["id"], "reply", parent_id=top["id"])

        deleted = await client.delete(f"{comments_url(post['id'])}/{top['id']}", headers=cast.other_tokens.headers)

        assert deleted.status_code == 204, deleted.text
        placeholder, kept = await thread(client, post["id"])
        assert (placeholder["id"], placeholder["deleted"], placeholder["author"]) == (top["id"], True, None)
        assert (placeholder["content"], placeholder["content_html"]) == ("[deleted]", "<p>[deleted]</p>\n")
        assert kept == reply
        assert await count_of(client, post["id"]) == 1
        no_reply = await client.post(
            comments_url(post["id"]), json={"content": "x", "parent_id": top["id"]}, headers=cast.other_tokens.headers
        )
        assert_problem(no_reply, 422, "invalid_parent")
        # Its last reply gone, the placeholder goes too.
        await client.delete(f"{comments_url(post['id'])}/{reply['id']}", headers=cast.author_tokens.headers)
        assert await thread(client, post["id"]) == []
        assert await count_of(client, post["id"]) == 0

    async def test_deleting_the_post_takes_its_comments(self, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        top = await comment(client, cast.other_tokens, post["id"])
        await comment(client, cast.other_tokens, post["id"], parent_id=top["id"])

        assert (await client.delete(f"{POSTS}/{post['id']}", headers=cast.author_tokens.headers)).status_code == 204

        assert_problem(await client.get(comments_url(post["id"])), 404, "post_not_found")

    async def test_a_deleted_user_leaves_placeholders_only_where_there_are_replies(
        self, app: FastAPI, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        leaving, tokens = await signed_in(app, client)
        post = await create_post(client, cast.author_tokens, published=True)
        answered = await comment(client, tokens, post["id"], "answered")
        await comment(client, tokens, post["id"], "lonely")
        reply = await comment(client, cast.other_tokens, post["id"], "reply", parent_id=answered["id"])
        assert await count_of(client, post["id"]) == 3

        deleted = await client.delete(f"/api/v1/admin/users/{leaving.id}", headers=cast.admin_tokens.headers)

        assert deleted.status_code == 204, deleted.text
        placeholder, kept = await thread(client, post["id"])
        assert (placeholder["id"], placeholder["deleted"], placeholder["author"]) == (answered["id"], True, None)
        assert kept == reply
        assert await count_of(client, post["id"]) == 1
