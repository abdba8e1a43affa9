"""Tags on posts, tag pages, GET /tags, and the feed sorted by new or top."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import Tokens, assert_problem, error_locs, signed_in
from tests.routes.test_posts import POSTS, Cast, cast, create_post, get_page, ids, patch_post, vote

__all__ = ["cast"]  # the fixture, shared with the posts tests

TAGS = "/api/v1/tags"


async def tagged(client: httpx.AsyncClient, tokens: Tokens, tags: list[str], **fields: Any) -> dict[str, Any]:
    response = await client.post(
        POSTS, json={"title": "t", "content": "c", "published": True, "tags": tags, **fields}, headers=tokens.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


class TestTags:
    async def test_tags_are_normalised_and_kept_in_order(self, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await tagged(client, cast.author_tokens, [" #Python", "web-dev", "PYTHON", "a1"])

        assert post["tags"] == ["python", "web-dev", "a1"]
        assert (await client.get(f"{POSTS}/{post['id']}")).json()["tags"] == ["python", "web-dev", "a1"]

    @pytest.mark.parametrize(
        "tags",
        [["a b"], [""], ["#"], ["x" * 31], ["ünïcode"], ["under_score"], ["a", "b", "c", "d", "e", "f"], "python"],
    )
    async def test_anything_else_is_422(self, cast: Cast, client: httpx.AsyncClient, tags: object) -> None:
        response = await client.post(
            POSTS, json={"title": "t", "content": "c", "tags": tags}, headers=cast.author_tokens.headers
        )

        problem = assert_problem(response, 422, "validation_error")
        assert all(loc[:2] == ["body", "tags"] for loc in error_locs(problem))  # type: ignore[index]

    async def test_a_tag_page_shows_only_published_posts_with_the_tag(
        self, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        rust = await tagged(client, cast.author_tokens, ["rust"])
        both = await tagged(client, cast.other_tokens, ["rust", "go"])
        await tagged(client, cast.author_tokens, ["go"])
        draft = await create_post(client, cast.author_tokens)
        await patch_post(client, cast.author_tokens, draft["id"], tags=["rust"])

        assert ids(await get_page(client, POSTS, tag="rust")) == [both["id"], rust["id"]]
        assert (await get_page(client, POSTS, tag="#Rust"))["total"] == 2
        assert ids(await get_page(client, POSTS, tag="rust", author_id=cast.author.id)) == [rust["id"]]
        assert ids(await get_page(client, POSTS, tag="rust", q="t", limit=1, offset=1)) == [rust["id"]]
        assert (await get_page(client, POSTS, tag="nothing"))["total"] == 0

    async def test_editing_tags_and_publication_moves_the_post_between_pages(
        self, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        post = await tagged(client, cast.author_tokens, ["old"])

        await patch_post(client, cast.author_tokens, post["id"], tags=["new"])
        assert ids(await get_page(client, POSTS, tag="old")) == []
        assert ids(await get_page(client, POSTS, tag="new")) == [post["id"]]
        await patch_post(client, cast.author_tokens, post["id"], published=False)
        assert ids(await get_page(client, POSTS, tag="new")) == []
        await patch_post(client, cast.author_tokens, post["id"], published=True)
        assert ids(await get_page(client, POSTS, tag="new")) == [post["id"]]
        await patch_post(client, cast.author_tokens, post["id"], tags=[])
        assert ids(await get_page(client, POSTS, tag="new")) == []

    async def test_an_invalid_tag_filter_is_422(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get(POSTS, params={"tag": "no spaces"}), 422, "validation_error")

    async def test_tags_in_use_most_used_first_then_by_name(self, cast: Cast, client: httpx.AsyncClient) -> None:
        await tagged(client, cast.author_tokens, ["b", "a"])
        await tagged(client, cast.author_tokens, ["b", "c"])
        await tagged(client, cast.other_tokens, ["c", "b"])
        draft = await create_post(client, cast.author_tokens)
        await patch_post(client, cast.author_tokens, draft["id"], tags=["hidden", "a"])

        page = await get_page(client, TAGS)
        assert page["items"] == [{"tag": "b", "count": 3}, {"tag": "c", "count": 2}, {"tag": "a", "count": 1}]
        assert page["total"] == 3
        second = await get_page(client, TAGS, limit=1, offset=1)
        assert (second["items"], second["total"]) == ([{"tag": "c", "count": 2}], 3)
        past = await get_page(client, TAGS, offset=10)
        assert (past["items"], past["total"]) == ([], 3)

    async def test_deleting_a_post_drops_its_tags(self, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await tagged(client, cast.author_tokens, ["gone"])
        assert (await client.delete(f"{POSTS}/{post['id']}", headers=cast.author_tokens.headers)).status_code == 204

        assert (await get_page(client, TAGS))["items"] == []


class TestSort:
    async def test_top_is_most_votes_then_newest_then_id(
        self, app: FastAPI, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        voters = [(await signed_in(app, client))[1] for _ in range(2)]
        first = await tagged(client, cast.author_tokens, ["x"])
        second = await tagged(client, cast.author_tokens, ["x"])
        third = await tagged(client, cast.author_tokens, ["y"])
        for tokens in voters:
            await vote(client, tokens, first["id"])
        await vote(client, voters[0], third["id"])

        assert ids(await get_page(client, POSTS, sort="top")) == [first["id"], third["id"], second["id"]]
        assert ids(await get_page(client, POSTS, sort="new")) == [third["id"], second["id"], first["id"]]
        assert ids(await get_page(client, POSTS)) == [third["id"], second["id"], first["id"]]
        assert ids(await get_page(client, POSTS, sort="top", tag="x")) == [first["id"], second["id"]]
        await client.delete(f"{POSTS}/{first['id']}/vote", headers=voters[0].headers)
        await client.delete(f"{POSTS}/{first['id']}/vote", headers=voters[1].headers)
        assert ids(await get_page(client, POSTS, sort="top", tag="x")) == [second["id"], first["id"]]
        assert ids(await get_page(client, POSTS, sort="top")) == [third["id"], second["id"], first["id"]]

    async def test_a_deleted_voter_leaves_the_counts_exact(
        self, app: FastAPI, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        leaving, leaving_tokens = await signed_in(app, client)
        post = await tagged(client, cast.author_tokens, ["x"])
        other = await tagged(client, cast.author_tokens, ["x"])
        await vote(client, leaving_tokens, post["id"])
        await vote(client, cast.other_tokens, post["id"])
        await vote(client, cast.other_tokens, other["id"])

        response = await client.delete(f"/api/v1/admin/users/{leaving.id}", headers=cast.admin_tokens.headers)

        assert response.status_code == 204, response.text
        page = await get_page(client, POSTS, sort="top", tag="x")
        assert [(item["id"], item["votes"]) for item in page["items"]] == [(other["id"], 1), (post["id"], 1)]

    async def test_an_unknown_sort_is_422(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get(POSTS, params={"sort": "best"}), 422, "validation_error")
