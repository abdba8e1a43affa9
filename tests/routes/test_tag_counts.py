"""The kept counts (each tag's published posts, all published posts) stay exact through every write.

GET /tags, a tag page's `total` and the feed's `total` read those counts instead of counting rows,
so after each kind of write they are checked against the posts themselves, read from the database.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import col, select

from keel.models import Post
from tests.factories import Tokens, signed_in
from tests.routes.test_post_tags import TAGS, tagged
from tests.routes.test_posts import POSTS, Cast, cast, create_post, get_page, patch_post, post_url
from tests.routes.test_users import delete_me

__all__ = ["cast"]  # the fixture, shared with the posts tests


async def assert_counts_exact(app: FastAPI, client: httpx.AsyncClient) -> dict[str, int]:
    """What the API answers agrees with the published posts as stored; returns the tags' counts."""
    async with app.state.database.session() as session:
        published = (await session.exec(select(Post.tags).where(col(Post.published)))).all()
    truth = Counter(tag for tags in published for tag in tags)

    page = await get_page(client, TAGS, limit=100)
    assert page["items"] == [{"tag": tag, "count": n} for tag, n in sorted(truth.items(), key=lambda t: (-t[1], t[0]))]
    assert page["total"] == len(truth)
    assert (await get_page(client, POSTS, limit=1))["total"] == len(published)
    assert (await get_page(client, POSTS, limit=1, sort="top"))["total"] == len(published)
    for tag, count in truth.items():
        assert (await get_page(client, POSTS, tag=tag, limit=1))["total"] == count, tag
    return dict(truth)


async def feed_total(client: httpx.AsyncClient) -> int:
    total: int = (await get_page(client, POSTS, limit=1))["total"]
    return total


async def draft(client: httpx.AsyncClient, tokens: Tokens, tags: list[str]) -> dict[str, Any]:
    return await tagged(client, tokens, tags, published=False)


class TestWrites:
    async def test_creating_counts_published_posts_only(
        self, app: FastAPI, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        await tagged(client, cast.author_tokens, ["alpha", "beta"])
        await draft(client, cast.author_tokens, ["alpha", "gamma"])
        await create_post(client, cast.other_tokens, published=True)  # no tags: the feed alone
        await create_post(client, cast.other_tokens)  # a draft without tags: nothing
        keyed = await client.post(
            POSTS,
            json={"title": "t", "content": "c", "published": True, "tags": ["alpha"]},
            headers={**cast.author_tokens.headers, "Idempotency-Key": "count-once"},
        )
        replayed = await client.post(
            POSTS,
            json={"title": "t", "content": "c", "published": True, "tags": ["alpha"]},
            headers={**cast.author_tokens.headers, "Idempotency-Key": "count-once"},
        )

        assert (keyed.status_code, replayed.status_code) == (201, 201)
        assert await assert_counts_exact(app, client) == {"alpha": 2, "beta": 1}
        assert await feed_total(client) == 3
        assert (await get_page(client, POSTS, tag="gamma"))["total"] == 0

    async def test_publishing_unpublishing_and_retagging(
        self, app: FastAPI, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        post = await tagged(client, cast.author_tokens, ["alpha", "beta"])
        other = await draft(client, cast.author_tokens, ["alpha", "gamma"])

        await patch_post(client, cast.author_tokens, other["id"], published=True)
        assert await assert_counts_exact(app, client) == {"alpha": 2, "beta": 1, "gamma": 1}
        await patch_post(client, cast.author_tokens, post["id"], tags=["beta", "delta"])
        assert await assert_counts_exact(app, client) == {"alpha": 1, "beta": 1, "gamma": 1, "delta": 1}
        await patch_post(client, cast.author_tokens, post["id"], published=False)
        assert await assert_counts_exact(app, client) == {"alpha": 1, "gamma": 1}
        assert await feed_total(client) == 1
        await patch_post(client, cast.author_tokens, post["id"], tags=["epsilon"])  # a draft's tags count nothing
        assert await assert_counts_exact(app, client) == {"alpha": 1, "gamma": 1}
        await patch_post(client, cast.author_tokens, post["id"], published=True, tags=["alpha"])
        assert await assert_counts_exact(app, client) == {"alpha": 2, "gamma": 1}
        await patch_post(client, cast.author_tokens, other["id"], published=False, tags=["zeta"])
        assert await assert_counts_exact(app, client) == {"alpha": 1}
        await patch_post(client, cast.author_tokens, post["id"], title="only the title")
        assert await assert_counts_exact(app, client) == {"alpha": 1}
        assert await feed_total(client) == 1

    async def test_a_refused_edit_changes_no_count(self, app: FastAPI, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await draft(client, cast.author_tokens, ["alpha"])

        stale = await client.patch(
            post_url(post["id"]),
            json={"published": True},
            headers={**cast.author_tokens.headers, "If-Match": '"not-the-etag"'},
        )
        foreign = await client.patch(post_url(post["id"]), json={"published": True}, headers=cast.other_tokens.headers)

        assert (stale.status_code, foreign.status_code) == (412, 404)
        assert await assert_counts_exact(app, client) == {}
        assert await feed_total(client) == 0

    @pytest.mark.parametrize("by", ["author", "admin"])
    async def test_deleting_a_post(self, app: FastAPI, cast: Cast, client: httpx.AsyncClient, by: str) -> None:
        published = await tagged(client, cast.author_tokens, ["alpha", "beta"])
        kept = await tagged(client, cast.other_tokens, ["alpha"])
        unpublished = await draft(client, cast.author_tokens, ["alpha"])
        tokens = cast.author_tokens if by == "author" else cast.admin_tokens

        for post in (published, unpublished):
            assert (await client.delete(post_url(post["id"]), headers=tokens.headers)).status_code == 204

        assert await assert_counts_exact(app, client) == {"alpha": 1}
        assert await feed_total(client) == 1
        assert (await get_page(client, POSTS, tag="beta"))["total"] == 0
        assert (await get_page(client, POSTS, tag="alpha"))["items"][0]["id"] == kept["id"]

    @pytest.mark.parametrize("by", ["themself", "admin"])
    async def test_deleting_an_account_takes_its_posts_off_the_counts(
        self, app: FastAPI, cast: Cast, client: httpx.AsyncClient, by: str
    ) -> None:
        leaving, tokens = await signed_in(app, client)
        for tags in (["alpha", "beta"], ["alpha"], []):
            await tagged(client, tokens, tags)
        await draft(client, tokens, ["alpha", "gamma"])
        await tagged(client, cast.author_tokens, ["alpha", "gamma"])
        assert await assert_counts_exact(app, client) == {"alpha": 3, "beta": 1, "gamma": 1}

        if by == "themself":
            response = await delete_me(client, tokens, {"password": leaving.password})
        else:
            response = await client.delete(f"/api/v1/admin/users/{leaving.id}", headers=cast.admin_tokens.headers)

        assert response.status_code == 204, response.text
        assert await assert_counts_exact(app, client) == {"alpha": 1, "gamma": 1}
        assert await feed_total(client) == 1


class TestConcurrentWrites:
    async def test_publishing_at_once_loses_no_count_and_never_deadlocks(
        self, app: FastAPI, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        # Opposite tag orders too: each writer takes the tags' rows in name order, whatever the post's.
        orders = [["alpha", "beta"], ["beta", "alpha"], ["alpha"], ["beta", "gamma", "alpha"]]
        drafts = [await draft(client, cast.author_tokens, orders[i % len(orders)]) for i in range(12)]

        responses = await asyncio.gather(
            *(
                client.patch(post_url(post["id"]), json={"published": True}, headers=cast.author_tokens.headers)
                for post in drafts
            )
        )

        assert [response.status_code for response in responses] == [200] * len(drafts)
        assert await assert_counts_exact(app, client) == {"alpha": 12, "beta": 9, "gamma": 3}
        assert await feed_total(client) == 12

        responses = await asyncio.gather(
            *(client.delete(post_url(post["id"]), headers=cast.author_tokens.headers) for post in drafts[::2])
        )

        assert [response.status_code for response in responses] == [204] * 6
        assert await assert_counts_exact(app, client) == {"alpha": 6, "beta": 6, "gamma": 3}
        assert await feed_total(client) == 6
