"""The Posts API: drafts and publishing, the public feed, /mine, who sees what, editing, deleting and votes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import pytest
import time_machine
from fastapi import FastAPI
from sqlmodel import col, func, select

from keel.core.db import Database
from keel.models import Role, Vote
from tests.factories import Account, Tokens, assert_problem, create_user, error_locs, login, signed_in, utc_timestamp

POSTS = "/api/v1/posts"
MINE = f"{POSTS}/mine"
POST_READ_FIELDS = {
    "id",
    "title",
    "content",
    "content_html",
    "excerpt",
    "reading_minutes",
    "published",
    "tags",
    "author",
    "votes",
    "voted",
    "comments_count",
    "is_author",
    "created_at",
    "updated_at",
    "published_at",
}
# A list's items are summaries: the body stays on the post's own page.
BODY_FIELDS = {"content", "content_html"}
POST_SUMMARY_FIELDS = POST_READ_FIELDS - BODY_FIELDS
USER_PUBLIC_FIELDS = {"id", "username", "full_name", "created_at"}
PAGE_FIELDS = {"items", "total", "limit", "offset"}

Viewer = Literal["anonymous", "author", "other", "admin"]


def post_url(post_id: int | str) -> str:
    return f"{POSTS}/{post_id}"


def vote_url(post_id: int | str) -> str:
    return f"{POSTS}/{post_id}/vote"


def headers_of(tokens: Tokens | None) -> dict[str, str]:
    return tokens.headers if tokens else {}


@dataclass
class Cast:
    """A verified author, another verified user and an admin, all signed in."""

    author: Account
    author_tokens: Tokens
    other: Account
    other_tokens: Tokens
    admin: Account
    admin_tokens: Tokens

    def tokens(self, viewer: Viewer) -> Tokens | None:
        return {"author": self.author_tokens, "other": self.other_tokens, "admin": self.admin_tokens}.get(viewer)

    def headers(self, viewer: Viewer) -> dict[str, str]:
        return headers_of(self.tokens(viewer))


@pytest.fixture
async def cast(app: FastAPI, client: httpx.AsyncClient) -> Cast:
    author, author_tokens = await signed_in(app, client, username="the_author")
    other, other_tokens = await signed_in(app, client, username="someone_else")
    admin, admin_tokens = await signed_in(app, client, username="the_admin", role=Role.ADMIN)
    return Cast(author, author_tokens, other, other_tokens, admin, admin_tokens)


async def create_post(
    client: httpx.AsyncClient,
    tokens: Tokens,
    *,
    title: str = "A title",
    content: str = "Some content.",
    published: bool = False,
) -> dict[str, Any]:
    response = await client.post(
        POSTS, json={"title": title, "content": content, "published": published}, headers=tokens.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def patch_post(client: httpx.AsyncClient, tokens: Tokens, post_id: int, **changes: object) -> dict[str, Any]:
    response = await client.patch(post_url(post_id), json=changes, headers=tokens.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def read_post(client: httpx.AsyncClient, post_id: int, tokens: Tokens | None = None) -> dict[str, Any]:
    response = await client.get(post_url(post_id), headers=headers_of(tokens))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def get_page(
    client: httpx.AsyncClient, url: str, tokens: Tokens | None = None, **params: str | int | bool
) -> dict[str, Any]:
    query = {key: str(value).lower() if isinstance(value, bool) else value for key, value in params.items()}
    response = await client.get(url, params=query, headers=headers_of(tokens))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == PAGE_FIELDS
    return body


def ids(page: dict[str, Any]) -> list[int]:
    return [item["id"] for item in page["items"]]


async def vote(client: httpx.AsyncClient, tokens: Tokens, post_id: int) -> None:
    response = await client.post(vote_url(post_id), headers=tokens.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""


async def stored_votes(app: FastAPI, *, post_id: int | None = None, user_id: int | None = None) -> int:
    """Vote rows as the database holds them, for what the API can no longer show (a deleted post)."""
    database: Database = app.state.database
    statement = select(func.count()).select_from(Vote)
    if post_id is not None:
        statement = statement.where(col(Vote.post_id) == post_id)
    if user_id is not None:
        statement = statement.where(col(Vote.user_id) == user_id)
    async with database.session() as session:
        return (await session.exec(statement)).one()


class TestCreate:
    async def test_returns_exactly_the_post_read_fields(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account, tokens = await signed_in(app, client, username="writer_ada")
        renamed = await client.patch("/api/v1/users/me", json={"full_name": "Ada Lovelace"}, headers=tokens.headers)
        assert renamed.status_code == 200, renamed.text

        response = await client.post(POSTS, json={"title": "On engines", "content": "Notes."}, headers=tokens.headers)

        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == POST_READ_FIELDS
        assert isinstance(body["id"], int)
        assert body["title"] == "On engines"
        assert body["content"] == "Notes."
        assert body["votes"] == 0
        assert body["voted"] is False
        assert set(body["author"]) == USER_PUBLIC_FIELDS
        assert body["author"]["id"] == account.id
        assert body["author"]["username"] == "writer_ada"
        assert body["author"]["full_name"] == "Ada Lovelace"
        utc_timestamp(body["author"]["created_at"])
        assert account.email not in response.text
        assert "email" not in response.text
        assert utc_timestamp(body["created_at"]) == utc_timestamp(body["updated_at"])
        assert await read_post(client, body["id"], tokens) == body

    async def test_is_a_draft_by_default(self, cast: Cast, client: httpx.AsyncClient) -> None:
        body = await create_post(client, cast.author_tokens)

        assert body["published"] is False
        assert body["published_at"] is None
        assert ids(await get_page(client, POSTS)) == []
        assert ids(await get_page(client, MINE, cast.author_tokens)) == [body["id"]]

    async def test_published_by_a_verified_user_sets_published_at(self, cast: Cast, client: httpx.AsyncClient) -> None:
        before = datetime.now(UTC)

        body = await create_post(client, cast.author_tokens, published=True)

        assert body["published"] is True
        published_at = utc_timestamp(body["published_at"])
        assert before <= published_at <= datetime.now(UTC)
        assert published_at == utc_timestamp(body["created_at"])
        assert ids(await get_page(client, POSTS)) == [body["id"]]

    async def test_an_unverified_user_may_write_a_draft(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client, is_verified=False)

        body = await create_post(client, tokens)

        assert body["published"] is False

    async def test_publishing_unverified_is_403_and_creates_nothing(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        _, tokens = await signed_in(app, client, is_verified=False)

        response = await client.post(
            POSTS, json={"title": "Too soon", "content": "Unverified.", "published": True}, headers=tokens.headers
        )

        assert_problem(response, 403, "email_not_verified")
        assert (await get_page(client, MINE, tokens))["total"] == 0
        assert (await get_page(client, POSTS))["total"] == 0

    @pytest.mark.parametrize(
        ("headers", "code"),
        [
            ({}, "not_authenticated"),
            ({"Authorization": "Bearer not-a-jwt"}, "invalid_token"),
            ({"Authorization": "Basic dXNlcjpwYXNz"}, "not_authenticated"),
        ],
        ids=["no-token", "garbage-token", "basic-auth"],
    )
    async def test_without_a_valid_token_is_401(
        self, cast: Cast, client: httpx.AsyncClient, headers: dict[str, str], code: str
    ) -> None:
        response = await client.post(POSTS, json={"title": "Anonymous", "content": "Nope."}, headers=headers)

        assert_problem(response, 401, code)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert (await get_page(client, MINE, cast.author_tokens))["total"] == 0

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"content": "No title."}, "title"),
            ({"title": "", "content": "Empty title."}, "title"),
            ({"title": "   \t\n", "content": "Blank title."}, "title"),
            ({"title": "x" * 201, "content": "Long title."}, "title"),
            ({"title": 123, "content": "Numeric title."}, "title"),
            ({"title": None, "content": "Null title."}, "title"),
            ({"title": "No content"}, "content"),
            ({"title": "Empty content", "content": ""}, "content"),
            ({"title": "Blank content", "content": "   "}, "content"),
            ({"title": "Long content", "content": "x" * 50_001}, "content"),
            ({"title": "Odd flag", "content": "x", "published": "maybe"}, "published"),
            # JSON booleans only: 0, 1 and "true" used to be coerced (found by the contract fuzzer).
            ({"title": "Numeric flag", "content": "x", "published": 0}, "published"),
            ({"title": "Text flag", "content": "x", "published": "true"}, "published"),
        ],
        ids=[
            "title-missing",
            "title-empty",
            "title-blank",
            "title-201",
            "title-number",
            "title-null",
            "content-missing",
            "content-empty",
            "content-blank",
            "content-50001",
            "published-not-bool",
            "published-integer",
            "published-string",
        ],
    )
    async def test_invalid_body_is_422_and_creates_nothing(
        self, cast: Cast, client: httpx.AsyncClient, body: dict[str, object], field: str
    ) -> None:
        response = await client.post(POSTS, json=body, headers=cast.author_tokens.headers)

        problem = assert_problem(response, 422, "validation_error")
        assert ["body", field] in error_locs(problem), problem
        assert (await get_page(client, MINE, cast.author_tokens))["total"] == 0

    async def test_longest_title_and_content_are_accepted(self, cast: Cast, client: httpx.AsyncClient) -> None:
        body = await create_post(client, cast.author_tokens, title="t" * 200, content="c" * 50_000)

        stored = await read_post(client, body["id"], cast.author_tokens)
        assert stored["title"] == "t" * 200
        assert stored["content"] == "c" * 50_000

    @pytest.mark.parametrize(
        "extra",
        [{"author_id": 1}, {"votes": 1000}, {"published_at": "2020-01-01T00:00:00Z"}, {"id": 7}, {"voted": True}],
        ids=["author_id", "votes", "published_at", "id", "voted"],
    )
    async def test_unknown_fields_are_422_and_create_nothing(
        self, cast: Cast, client: httpx.AsyncClient, extra: dict[str, object]
    ) -> None:
        response = await client.post(
            POSTS, json={"title": "Sneaky", "content": "Mass assignment.", **extra}, headers=cast.other_tokens.headers
        )

        problem = assert_problem(response, 422, "validation_error")
        errors = problem["errors"]
        assert isinstance(errors, list)
        assert {"loc": ["body", next(iter(extra))], "type": "extra_forbidden"}.items() <= errors[0].items(), errors
        assert (await get_page(client, MINE, cast.other_tokens))["total"] == 0
        assert (await get_page(client, MINE, cast.author_tokens))["total"] == 0

    @pytest.mark.parametrize("path", [POSTS, f"{POSTS}/"], ids=["no-slash", "slash"])
    async def test_both_paths_create(self, cast: Cast, client: httpx.AsyncClient, path: str) -> None:
        response = await client.post(
            path, json={"title": "Path", "content": "Either way."}, headers=cast.author_tokens.headers
        )

        assert response.status_code == 201, response.text
        assert ids(await get_page(client, MINE, cast.author_tokens)) == [response.json()["id"]]


class TestFeed:
    @pytest.mark.parametrize("path", [POSTS, f"{POSTS}/"], ids=["no-slash", "slash"])
    async def test_anonymous_caller_gets_a_page(self, cast: Cast, client: httpx.AsyncClient, path: str) -> None:
        post = await create_post(client, cast.author_tokens, published=True)

        page = await get_page(client, path)

        assert page["total"] == 1
        assert page["limit"] == 20
        assert page["offset"] == 0
        [item] = page["items"]
        assert set(item) == POST_SUMMARY_FIELDS
        assert set(item["author"]) == USER_PUBLIC_FIELDS
        whole = {**post, "voted": False, "is_author": False}
        assert item == {name: value for name, value in whole.items() if name not in BODY_FIELDS}
        assert cast.author.email not in str(page)

    async def test_only_published_posts_newest_published_first(
        self, cast: Cast, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        first = await create_post(client, cast.author_tokens, title="first written")
        second = await create_post(client, cast.author_tokens, title="second written")
        third = await create_post(client, cast.other_tokens, title="third written")
        draft = await create_post(client, cast.author_tokens, title="never published")
        # Published in another order than written: the feed follows publication.
        for post, tokens in ((third, cast.other_tokens), (first, cast.author_tokens), (second, cast.author_tokens)):
            clock.shift(timedelta(seconds=5))
            await patch_post(client, tokens, post["id"], published=True)

        for viewer in ("anonymous", "author", "other", "admin"):
            page = await get_page(client, POSTS, cast.tokens(viewer))
            assert ids(page) == [second["id"], first["id"], third["id"]], viewer
            assert page["total"] == 3
            assert draft["id"] not in ids(page)

    async def test_posts_published_at_the_same_instant_are_ordered_by_id(
        self, cast: Cast, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        clock.move_to(datetime.now(UTC) + timedelta(seconds=1), tick=False)
        posts = [
            await create_post(client, cast.author_tokens, title=f"same instant {n}", published=True) for n in range(4)
        ]
        clock.move_to(datetime.now(UTC) + timedelta(seconds=1), tick=True)
        assert len({post["published_at"] for post in posts}) == 1

        page = await get_page(client, POSTS)

        assert ids(page) == sorted((post["id"] for post in posts), reverse=True)

    async def test_drafts_never_appear_even_for_their_author(self, cast: Cast, client: httpx.AsyncClient) -> None:
        published = await create_post(client, cast.author_tokens, title="out there", published=True)
        await create_post(client, cast.author_tokens, title="my draft")
        await create_post(client, cast.author_tokens, title="another draft")

        for tokens in (cast.author_tokens, cast.admin_tokens, None):
            page = await get_page(client, POSTS, tokens)
            assert ids(page) == [published["id"]]
            assert page["total"] == 1
            filtered = await get_page(client, POSTS, tokens, author_id=cast.author.id)
            assert ids(filtered) == [published["id"]]

    async def test_filters_by_author(self, cast: Cast, client: httpx.AsyncClient) -> None:
        mine = [await create_post(client, cast.author_tokens, published=True) for _ in range(2)]
        theirs = await create_post(client, cast.other_tokens, published=True)
        await create_post(client, cast.author_tokens)

        by_author = await get_page(client, POSTS, author_id=cast.author.id)
        by_other = await get_page(client, POSTS, author_id=cast.other.id)
        by_admin = await get_page(client, POSTS, author_id=cast.admin.id)
        by_nobody = await get_page(client, POSTS, author_id=987654)

        assert ids(by_author) == [mine[1]["id"], mine[0]["id"]]
        assert by_author["total"] == 2
        assert ids(by_other) == [theirs["id"]]
        assert by_other["total"] == 1
        assert by_admin == {"items": [], "total": 0, "limit": 20, "offset": 0}
        assert by_nobody["total"] == 0

    @pytest.mark.parametrize(
        ("q", "expected"),
        [
            ("hello", {"hello_title", "hello_content"}),
            ("HELLO", {"hello_title", "hello_content"}),
            ("wOrLd", {"hello_title"}),
            ("%", {"percent"}),
            ("100%", {"percent"}),
            ("_", {"underscore"}),
            ("e_c", {"underscore"}),
            ("\\", {"backslash"}),
            ("\\t", {"backslash"}),
            ("draft", set()),
            ("nothing like this", set()),
        ],
        ids=[
            "lower",
            "upper",
            "mixed-case",
            "percent-alone",
            "percent-suffix",
            "underscore-alone",
            "underscore-inside",
            "backslash-alone",
            "backslash-sequence",
            "only-in-a-draft",
            "no-match",
        ],
    )
    async def test_search_in_title_or_content(
        self, cast: Cast, client: httpx.AsyncClient, q: str, expected: set[str]
    ) -> None:
        corpus = {
            "hello_title": ("Hello World", "first post"),
            "hello_content": ("Quiet", "someone said hello there"),
            "percent": ("100% sure", "with a sign"),
            "no_percent": ("100 percent", "without a sign"),
            "underscore": ("snake_case", "names"),
            "no_underscore": ("snakeXcase", "names"),
            "backslash": ("C:\\temp", "a path"),
        }
        posted = {
            key: (await create_post(client, cast.author_tokens, title=title, content=content, published=True))["id"]
            for key, (title, content) in corpus.items()
        }
        await create_post(client, cast.author_tokens, title="hello draft 100% snake_case", content="draft \\t")

        page = await get_page(client, POSTS, q=q)

        assert ids(page) == sorted((posted[key] for key in expected), reverse=True)
        assert page["total"] == len(expected)

    async def test_search_and_author_filter_combine(self, cast: Cast, client: httpx.AsyncClient) -> None:
        wanted = await create_post(client, cast.author_tokens, title="Rust tips", published=True)
        await create_post(client, cast.author_tokens, title="Python tips", published=True)
        await create_post(client, cast.other_tokens, title="Rust news", published=True)

        page = await get_page(client, POSTS, q="rust", author_id=cast.author.id)

        assert ids(page) == [wanted["id"]]
        assert page["total"] == 1

    @pytest.mark.parametrize(
        ("limit", "offset", "expected"),
        [(2, 0, [4, 3]), (2, 2, [2, 1]), (2, 4, [0]), (2, 5, []), (100, 0, [4, 3, 2, 1, 0]), (1, 1, [3])],
    )
    async def test_pagination(
        self, cast: Cast, client: httpx.AsyncClient, limit: int, offset: int, expected: list[int]
    ) -> None:
        posts = [await create_post(client, cast.author_tokens, title=f"post {n}", published=True) for n in range(5)]

        page = await get_page(client, POSTS, limit=limit, offset=offset)

        assert ids(page) == [posts[n]["id"] for n in expected]
        assert page["total"] == 5
        assert page["limit"] == limit
        assert page["offset"] == offset

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"limit": 0}, "limit"),
            ({"limit": 101}, "limit"),
            ({"limit": -1}, "limit"),
            ({"limit": "ten"}, "limit"),
            ({"offset": -1}, "offset"),
            ({"offset": "x"}, "offset"),
            ({"author_id": 0}, "author_id"),
            ({"author_id": -3}, "author_id"),
            ({"author_id": "abc"}, "author_id"),
            ({"author_id": 2**31}, "author_id"),
            ({"q": ""}, "q"),
            ({"q": "x" * 201}, "q"),
        ],
        ids=[
            "limit-0",
            "limit-101",
            "limit-negative",
            "limit-text",
            "offset-negative",
            "offset-text",
            "author-0",
            "author-negative",
            "author-text",
            "author-too-big",
            "q-empty",
            "q-too-long",
        ],
    )
    async def test_invalid_query_is_422(
        self, cast: Cast, client: httpx.AsyncClient, params: dict[str, object], field: str
    ) -> None:
        await create_post(client, cast.author_tokens, published=True)

        response = await client.get(POSTS, params=params)  # type: ignore[arg-type]

        problem = assert_problem(response, 422, "validation_error")
        assert error_locs(problem) == [["query", field]]

    async def test_a_garbage_token_is_401(self, cast: Cast, client: httpx.AsyncClient) -> None:
        await create_post(client, cast.author_tokens, published=True)

        response = await client.get(POSTS, headers={"Authorization": "Bearer not-a-jwt"})

        assert_problem(response, 401, "invalid_token")
        assert response.headers["www-authenticate"].startswith("Bearer")

    async def test_a_tampered_token_is_401(self, cast: Cast, client: httpx.AsyncClient) -> None:
        await create_post(client, cast.author_tokens, published=True)
        head, _, signature = cast.other_tokens.access.rpartition(".")
        forged = f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"

        response = await client.get(POSTS, headers={"Authorization": f"Bearer {forged}"})

        assert_problem(response, 401, "invalid_token")

    async def test_an_expired_token_is_401(
        self, cast: Cast, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        await create_post(client, cast.author_tokens, published=True)
        clock.shift(timedelta(hours=1))

        response = await client.get(POSTS, headers=cast.other_tokens.headers)

        assert_problem(response, 401, "token_expired")
        assert (await get_page(client, POSTS))["total"] == 1

    async def test_a_revoked_token_is_401(self, cast: Cast, client: httpx.AsyncClient) -> None:
        await create_post(client, cast.author_tokens, published=True)
        assert (await get_page(client, POSTS, cast.other_tokens))["total"] == 1
        logout = await client.post("/api/v1/auth/logout", headers=cast.other_tokens.headers)
        assert logout.status_code == 204, logout.text

        response = await client.get(POSTS, headers=cast.other_tokens.headers)

        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")


class TestMine:
    @pytest.mark.parametrize("method", ["PATCH", "DELETE", "PUT"])
    async def test_other_methods_are_405(self, cast: Cast, client: httpx.AsyncClient, method: str) -> None:
        # /mine only lists; PATCH and DELETE used to be taken for a post id that is not a number (422).
        response = await client.request(method, MINE, json={"title": "x"}, headers=cast.headers("author"))

        assert_problem(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "GET, HEAD"

    @pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
    async def test_any_other_word_is_still_an_invalid_post_id(
        self, cast: Cast, client: httpx.AsyncClient, method: str
    ) -> None:
        response = await client.request(method, post_url("mines"), headers=cast.headers("author"))

        body = assert_problem(response, 422, "validation_error")
        assert ["path", "post_id"] in error_locs(body)

    async def test_voting_for_mine_is_an_invalid_post_id(self, cast: Cast, client: httpx.AsyncClient) -> None:
        response = await client.post(vote_url("mine"), headers=cast.headers("author"))

        body = assert_problem(response, 422, "validation_error")
        assert error_locs(body) == [["path", "post_id"]]

    @pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-jwt"}], ids=["anonymous", "garbage-token"])
    async def test_requires_a_valid_token(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        response = await client.get(MINE, headers=headers)

        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")

    async def test_lists_own_posts_with_drafts_newest_created_first(
        self, cast: Cast, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        oldest = await create_post(client, cast.author_tokens, title="oldest")
        clock.shift(timedelta(seconds=5))
        middle = await create_post(client, cast.author_tokens, title="middle", published=True)
        clock.shift(timedelta(seconds=5))
        newest = await create_post(client, cast.author_tokens, title="newest")
        foreign = await create_post(client, cast.other_tokens, title="someone else's", published=True)
        clock.shift(timedelta(seconds=5))
        # Publishing later does not move a post: /mine is ordered by creation.
        await patch_post(client, cast.author_tokens, oldest["id"], published=True)

        page = await get_page(client, MINE, cast.author_tokens)

        assert ids(page) == [newest["id"], middle["id"], oldest["id"]]
        assert page["total"] == 3
        assert foreign["id"] not in ids(page)
        assert all(set(item) == POST_SUMMARY_FIELDS for item in page["items"])
        assert {item["author"]["id"] for item in page["items"]} == {cast.author.id}

    @pytest.mark.parametrize(
        ("published", "expected"),
        [
            (True, ["public_b", "public_a"]),
            (False, ["draft_b", "draft_a"]),
            (None, ["draft_b", "public_b", "draft_a", "public_a"]),
        ],
        ids=["published", "drafts", "all"],
    )
    async def test_filters_by_published(
        self, cast: Cast, client: httpx.AsyncClient, published: bool | None, expected: list[str]
    ) -> None:
        posted: dict[str, int] = {}
        for key in ("public_a", "draft_a", "public_b", "draft_b"):
            post = await create_post(client, cast.author_tokens, title=key, published=key.startswith("public"))
            posted[key] = post["id"]
        await create_post(client, cast.other_tokens, title="other public", published=True)
        await create_post(client, cast.other_tokens, title="other draft")

        params = {} if published is None else {"published": published}
        page = await get_page(client, MINE, cast.author_tokens, **params)

        assert ids(page) == [posted[key] for key in expected]
        assert page["total"] == len(expected)

    async def test_never_shows_another_users_posts(self, cast: Cast, client: httpx.AsyncClient) -> None:
        await create_post(client, cast.author_tokens, title="author public", published=True)
        await create_post(client, cast.author_tokens, title="author draft")

        for tokens in (cast.other_tokens, cast.admin_tokens):
            for published in (True, False):
                page = await get_page(client, MINE, tokens, published=published)
                assert page == {"items": [], "total": 0, "limit": 20, "offset": 0}

    @pytest.mark.parametrize(
        "params",
        [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"published": "perhaps"}],
        ids=["limit-0", "limit-101", "offset-negative", "published-not-bool"],
    )
    async def test_invalid_query_is_422(self, cast: Cast, client: httpx.AsyncClient, params: dict[str, object]) -> None:
        response = await client.get(MINE, params=params, headers=cast.author_tokens.headers)  # type: ignore[arg-type]

        problem = assert_problem(response, 422, "validation_error")
        assert error_locs(problem) == [["query", next(iter(params))]]


class TestRead:
    @pytest.mark.parametrize(
        ("published", "viewer", "status"),
        [
            (True, "anonymous", 200),
            (True, "author", 200),
            (True, "other", 200),
            (True, "admin", 200),
            (False, "anonymous", 404),
            (False, "author", 200),
            (False, "other", 404),
            (False, "admin", 200),
        ],
    )
    async def test_who_sees_a_post(
        self, cast: Cast, client: httpx.AsyncClient, published: bool, viewer: Viewer, status: int
    ) -> None:
        post = await create_post(client, cast.author_tokens, title="visibility", published=published)

        response = await client.get(post_url(post["id"]), headers=cast.headers(viewer))

        if status == 200:
            assert response.status_code == 200, response.text
            body = response.json()
            assert set(body) == POST_READ_FIELDS
            assert body == {**post, "voted": False, "is_author": viewer == "author"}
            assert cast.author.email not in response.text
        else:
            assert_problem(response, 404, "post_not_found")
            assert "visibility" not in response.text

    async def test_a_draft_looks_exactly_like_a_missing_post(self, cast: Cast, client: httpx.AsyncClient) -> None:
        draft = await create_post(client, cast.author_tokens)

        hidden = assert_problem(
            await client.get(post_url(draft["id"]), headers=cast.other_tokens.headers), 404, "post_not_found"
        )
        missing = assert_problem(
            await client.get(post_url(987654), headers=cast.other_tokens.headers), 404, "post_not_found"
        )

        assert {key: value for key, value in hidden.items() if key not in {"instance", "request_id"}} == {
            key: value for key, value in missing.items() if key not in {"instance", "request_id"}
        }

    @pytest.mark.parametrize("post_id", [987654, 2**31 - 1])
    async def test_missing_post_is_404(self, cast: Cast, client: httpx.AsyncClient, post_id: int) -> None:
        await create_post(client, cast.author_tokens, published=True)

        for viewer in ("anonymous", "author", "admin"):
            assert_problem(await client.get(post_url(post_id), headers=cast.headers(viewer)), 404, "post_not_found")

    @pytest.mark.parametrize("post_id", ["0", "-1", "abc", "1.5", str(2**31)])
    async def test_invalid_id_is_422(self, client: httpx.AsyncClient, post_id: str) -> None:
        problem = assert_problem(await client.get(post_url(post_id)), 422, "validation_error")

        assert error_locs(problem) == [["path", "post_id"]]

    async def test_an_invalid_token_is_401_even_on_a_published_post(
        self, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        post = await create_post(client, cast.author_tokens, published=True)

        response = await client.get(post_url(post["id"]), headers={"Authorization": "Bearer not-a-jwt"})

        assert_problem(response, 401, "invalid_token")


class TestEdit:
    async def test_author_changes_title_and_content(
        self, cast: Cast, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        post = await create_post(client, cast.author_tokens, title="Old title", content="Old content", published=True)
        clock.shift(timedelta(minutes=1))

        body = await patch_post(client, cast.author_tokens, post["id"], title="New title", content="New content")

        assert set(body) == POST_READ_FIELDS
        assert body["title"] == "New title"
        assert body["content"] == "New content"
        assert body["published"] is True
        assert body["published_at"] == post["published_at"]
        assert body["created_at"] == post["created_at"]
        assert utc_timestamp(body["updated_at"]) >= utc_timestamp(post["updated_at"]) + timedelta(minutes=1)
        assert body["author"] == post["author"]
        assert await read_post(client, post["id"]) == {**body, "voted": False, "is_author": False}

    @pytest.mark.parametrize(
        ("changes", "expected"),
        [
            ({"title": "Only the title"}, {"title": "Only the title", "content": "Original content"}),
            ({"content": "Only the content"}, {"title": "Original title", "content": "Only the content"}),
            ({}, {"title": "Original title", "content": "Original content"}),
        ],
        ids=["title", "content", "nothing"],
    )
    async def test_unset_fields_are_kept(
        self, cast: Cast, client: httpx.AsyncClient, changes: dict[str, str], expected: dict[str, str]
    ) -> None:
        post = await create_post(client, cast.author_tokens, title="Original title", content="Original content")

        body = await patch_post(client, cast.author_tokens, post["id"], **changes)

        assert {"title": body["title"], "content": body["content"]} == expected
        assert body["published"] is False

    async def test_updated_at_advances(
        self, cast: Cast, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        post = await create_post(client, cast.author_tokens)
        clock.shift(timedelta(minutes=3))

        first = await patch_post(client, cast.author_tokens, post["id"], title="Edited once")
        clock.shift(timedelta(minutes=3))
        second = await patch_post(client, cast.author_tokens, post["id"], content="Edited twice")

        assert (
            utc_timestamp(post["updated_at"]) < utc_timestamp(first["updated_at"]) < utc_timestamp(second["updated_at"])
        )
        assert first["created_at"] == second["created_at"] == post["created_at"]

    async def test_publishing_sets_published_at_once(
        self, cast: Cast, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        draft = await create_post(client, cast.author_tokens)
        assert draft["published_at"] is None
        clock.shift(timedelta(minutes=2))

        published = await patch_post(client, cast.author_tokens, draft["id"], published=True)
        first_published_at = utc_timestamp(published["published_at"])
        assert published["published"] is True
        assert first_published_at >= utc_timestamp(draft["created_at"]) + timedelta(minutes=2)
        assert ids(await get_page(client, POSTS)) == [draft["id"]]

        clock.shift(timedelta(minutes=2))
        unpublished = await patch_post(client, cast.author_tokens, draft["id"], published=False)
        assert unpublished["published"] is False
        assert ids(await get_page(client, POSTS)) == []
        assert_problem(await client.get(post_url(draft["id"])), 404, "post_not_found")

        clock.shift(timedelta(minutes=2))
        republished = await patch_post(client, cast.author_tokens, draft["id"], published=True)
        assert republished["published"] is True
        assert utc_timestamp(republished["published_at"]) == first_published_at
        again = await patch_post(client, cast.author_tokens, draft["id"], published=True, title="Still published")
        assert utc_timestamp(again["published_at"]) == first_published_at
        assert (await read_post(client, draft["id"]))["published_at"] == republished["published_at"]

    async def test_unverified_author_cannot_publish(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client, is_verified=False)
        draft = await create_post(client, tokens, title="Unverified draft")

        response = await client.patch(
            post_url(draft["id"]), json={"published": True, "title": "Sneaking out"}, headers=tokens.headers
        )

        assert_problem(response, 403, "email_not_verified")
        stored = await read_post(client, draft["id"], tokens)
        assert stored["published"] is False
        assert stored["published_at"] is None
        assert stored["title"] == "Unverified draft"
        assert (await get_page(client, POSTS))["total"] == 0
        # Editing the draft itself is fine.
        assert (await patch_post(client, tokens, draft["id"], title="Better draft"))["title"] == "Better draft"

    @pytest.mark.parametrize(
        ("published", "viewer", "status", "code"),
        [
            (True, "other", 403, "not_author"),
            (False, "other", 404, "post_not_found"),
            (True, "admin", 403, "not_author"),
            (False, "admin", 403, "not_author"),
            (True, "anonymous", 401, "not_authenticated"),
            (False, "anonymous", 401, "not_authenticated"),
        ],
    )
    async def test_only_the_author_may_edit(
        self, cast: Cast, client: httpx.AsyncClient, published: bool, viewer: Viewer, status: int, code: str
    ) -> None:
        post = await create_post(client, cast.author_tokens, title="Mine to edit", published=published)

        response = await client.patch(
            post_url(post["id"]),
            json={"title": "Hijacked", "content": "Hijacked", "published": not published},
            headers=cast.headers(viewer),
        )

        assert_problem(response, status, code)
        assert await read_post(client, post["id"], cast.author_tokens) == post

    @pytest.mark.parametrize("viewer", ["author", "other", "anonymous"])
    async def test_missing_post(self, cast: Cast, client: httpx.AsyncClient, viewer: Viewer) -> None:
        response = await client.patch(post_url(987654), json={"title": "Ghost"}, headers=cast.headers(viewer))

        if viewer == "anonymous":
            assert_problem(response, 401, "not_authenticated")
        else:
            assert_problem(response, 404, "post_not_found")

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"title": ""}, "title"),
            ({"title": "  "}, "title"),
            ({"title": "x" * 201}, "title"),
            ({"content": ""}, "content"),
            ({"content": "x" * 50_001}, "content"),
            ({"published": "perhaps"}, "published"),
            ({"published": 1}, "published"),
            ({"author_id": 2}, "author_id"),
            ({"votes": 99}, "votes"),
            ({"published_at": "2020-01-01T00:00:00Z"}, "published_at"),
        ],
        ids=[
            "title-empty",
            "title-blank",
            "title-201",
            "content-empty",
            "content-50001",
            "published-not-bool",
            "published-integer",
            "author_id",
            "votes",
            "published_at",
        ],
    )
    async def test_invalid_body_is_422_and_changes_nothing(
        self, cast: Cast, client: httpx.AsyncClient, changes: dict[str, object], field: str
    ) -> None:
        post = await create_post(client, cast.author_tokens, published=True)

        response = await client.patch(post_url(post["id"]), json=changes, headers=cast.author_tokens.headers)

        problem = assert_problem(response, 422, "validation_error")
        assert ["body", field] in error_locs(problem), problem
        assert await read_post(client, post["id"], cast.author_tokens) == post


class TestDelete:
    async def test_author_deletes(self, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        kept = await create_post(client, cast.author_tokens, published=True)

        response = await client.delete(post_url(post["id"]), headers=cast.author_tokens.headers)

        assert response.status_code == 204, response.text
        assert response.content == b""
        assert_problem(
            await client.get(post_url(post["id"]), headers=cast.author_tokens.headers), 404, "post_not_found"
        )
        assert ids(await get_page(client, POSTS)) == [kept["id"]]
        assert ids(await get_page(client, MINE, cast.author_tokens)) == [kept["id"]]
        again = await client.delete(post_url(post["id"]), headers=cast.author_tokens.headers)
        assert_problem(again, 404, "post_not_found")

    @pytest.mark.parametrize("published", [True, False], ids=["published", "draft"])
    async def test_admin_deletes_someone_elses_post(
        self, cast: Cast, client: httpx.AsyncClient, published: bool
    ) -> None:
        post = await create_post(client, cast.author_tokens, published=published)

        response = await client.delete(post_url(post["id"]), headers=cast.admin_tokens.headers)

        assert response.status_code == 204, response.text
        assert (await get_page(client, MINE, cast.author_tokens))["total"] == 0

    @pytest.mark.parametrize(
        ("published", "viewer", "status", "code"),
        [
            (True, "other", 403, "not_author"),
            (False, "other", 404, "post_not_found"),
            (True, "anonymous", 401, "not_authenticated"),
            (False, "anonymous", 401, "not_authenticated"),
        ],
    )
    async def test_others_cannot_delete(
        self, cast: Cast, client: httpx.AsyncClient, published: bool, viewer: Viewer, status: int, code: str
    ) -> None:
        post = await create_post(client, cast.author_tokens, published=published)

        response = await client.delete(post_url(post["id"]), headers=cast.headers(viewer))

        assert_problem(response, status, code)
        assert await read_post(client, post["id"], cast.author_tokens) == post

    async def test_the_posts_votes_go_with_it(self, app: FastAPI, cast: Cast, client: httpx.AsyncClient) -> None:
        doomed = await create_post(client, cast.author_tokens, published=True)
        kept = await create_post(client, cast.author_tokens, published=True)
        for tokens in (cast.other_tokens, cast.admin_tokens):
            await vote(client, tokens, doomed["id"])
        await vote(client, cast.other_tokens, kept["id"])
        assert await stored_votes(app, post_id=doomed["id"]) == 2

        response = await client.delete(post_url(doomed["id"]), headers=cast.author_tokens.headers)

        assert response.status_code == 204, response.text
        assert await stored_votes(app, post_id=doomed["id"]) == 0
        assert await stored_votes(app) == 1
        assert (await read_post(client, kept["id"], cast.other_tokens))["votes"] == 1


class TestVotes:
    async def test_vote_counts_and_marks_the_voter(self, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)

        await vote(client, cast.other_tokens, post["id"])

        as_voter = await read_post(client, post["id"], cast.other_tokens)
        assert as_voter["votes"] == 1
        assert as_voter["voted"] is True
        for viewer in ("author", "admin", "anonymous"):
            seen = await read_post(client, post["id"], cast.tokens(viewer))
            assert seen["votes"] == 1, viewer
            assert seen["voted"] is False, viewer
        [in_feed] = (await get_page(client, POSTS, cast.other_tokens))["items"]
        assert (in_feed["votes"], in_feed["voted"]) == (1, True)
        [anonymous_feed] = (await get_page(client, POSTS))["items"]
        assert (anonymous_feed["votes"], anonymous_feed["voted"]) == (1, False)
        [in_mine] = (await get_page(client, MINE, cast.author_tokens))["items"]
        assert (in_mine["votes"], in_mine["voted"]) == (1, False)

    async def test_votes_of_several_users_add_up(self, app: FastAPI, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        untouched = await create_post(client, cast.author_tokens, published=True)

        _, third_tokens = await signed_in(app, client)
        for tokens in (third_tokens, cast.other_tokens, cast.admin_tokens):
            await vote(client, tokens, post["id"])

        assert (await read_post(client, post["id"]))["votes"] == 3
        assert (await read_post(client, post["id"], third_tokens))["voted"] is True
        assert (await read_post(client, untouched["id"]))["votes"] == 0
        assert (await read_post(client, untouched["id"], third_tokens))["voted"] is False

    async def test_an_author_cannot_vote_for_their_own_post_and_is_told_so(
        self, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        post = await create_post(client, cast.author_tokens, published=True)

        response = await client.post(vote_url(post["id"]), headers=cast.author_tokens.headers)

        assert_problem(response, 403, "own_post")
        seen = await read_post(client, post["id"], cast.author_tokens)
        assert (seen["votes"], seen["voted"], seen["is_author"]) == (0, False, True)
        [in_feed] = (await get_page(client, POSTS, cast.author_tokens))["items"]
        assert in_feed["is_author"] is True
        for viewer in ("other", "admin", "anonymous"):
            assert (await read_post(client, post["id"], cast.tokens(viewer)))["is_author"] is False, viewer

    async def test_voting_twice_keeps_one_vote(self, app: FastAPI, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)

        await vote(client, cast.other_tokens, post["id"])
        await vote(client, cast.other_tokens, post["id"])

        body = await read_post(client, post["id"], cast.other_tokens)
        assert (body["votes"], body["voted"]) == (1, True)
        assert await stored_votes(app, post_id=post["id"]) == 1

    async def test_unvote_removes_the_vote(self, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        await vote(client, cast.other_tokens, post["id"])
        await vote(client, cast.admin_tokens, post["id"])

        response = await client.delete(vote_url(post["id"]), headers=cast.other_tokens.headers)

        assert response.status_code == 204, response.text
        assert response.content == b""
        body = await read_post(client, post["id"], cast.other_tokens)
        assert (body["votes"], body["voted"]) == (1, False)
        assert (await read_post(client, post["id"], cast.admin_tokens))["voted"] is True
        again = await client.delete(vote_url(post["id"]), headers=cast.other_tokens.headers)
        assert again.status_code == 204, again.text
        assert (await read_post(client, post["id"]))["votes"] == 1
        await client.delete(vote_url(post["id"]), headers=cast.admin_tokens.headers)
        assert (await read_post(client, post["id"]))["votes"] == 0

    async def test_unvote_without_a_vote_is_204(self, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        await vote(client, cast.admin_tokens, post["id"])

        response = await client.delete(vote_url(post["id"]), headers=cast.other_tokens.headers)

        assert response.status_code == 204, response.text
        assert (await read_post(client, post["id"]))["votes"] == 1

    async def test_unverified_voter_is_403(self, app: FastAPI, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        _, tokens = await signed_in(app, client, is_verified=False)

        response = await client.post(vote_url(post["id"]), headers=tokens.headers)

        assert_problem(response, 403, "email_not_verified")
        body = await read_post(client, post["id"], tokens)
        assert (body["votes"], body["voted"]) == (0, False)

    @pytest.mark.parametrize("viewer", ["author", "other", "admin"])
    async def test_voting_on_a_draft_is_404(
        self, app: FastAPI, cast: Cast, client: httpx.AsyncClient, viewer: Viewer
    ) -> None:
        draft = await create_post(client, cast.author_tokens)

        response = await client.post(vote_url(draft["id"]), headers=cast.headers(viewer))

        assert_problem(response, 404, "post_not_found")
        assert await stored_votes(app, post_id=draft["id"]) == 0

    async def test_a_vote_does_not_survive_unpublishing(self, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        await vote(client, cast.other_tokens, post["id"])
        await patch_post(client, cast.author_tokens, post["id"], published=False)

        response = await client.post(vote_url(post["id"]), headers=cast.other_tokens.headers)

        assert_problem(response, 404, "post_not_found")
        unvote = await client.delete(vote_url(post["id"]), headers=cast.other_tokens.headers)
        assert_problem(unvote, 404, "post_not_found")

    @pytest.mark.parametrize("method", ["POST", "DELETE"])
    async def test_missing_post_is_404(self, cast: Cast, client: httpx.AsyncClient, method: str) -> None:
        response = await client.request(method, vote_url(987654), headers=cast.other_tokens.headers)

        assert_problem(response, 404, "post_not_found")

    @pytest.mark.parametrize("method", ["POST", "DELETE"])
    @pytest.mark.parametrize(
        ("headers", "code"),
        [({}, "not_authenticated"), ({"Authorization": "Bearer not-a-jwt"}, "invalid_token")],
        ids=["anonymous", "garbage-token"],
    )
    async def test_requires_a_valid_token(
        self, app: FastAPI, cast: Cast, client: httpx.AsyncClient, method: str, headers: dict[str, str], code: str
    ) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        await vote(client, cast.other_tokens, post["id"])

        response = await client.request(method, vote_url(post["id"]), headers=headers)

        assert_problem(response, 401, code)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert await stored_votes(app, post_id=post["id"]) == 1

    async def test_concurrent_votes_are_counted_exactly(
        self, app: FastAPI, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        voters = [await signed_in(app, client) for _ in range(8)]

        # Every voter votes twice at the same moment as everyone else.
        responses = await asyncio.gather(
            *(client.post(vote_url(post["id"]), headers=tokens.headers) for _, tokens in voters for _ in range(2))
        )

        assert [response.status_code for response in responses] == [204] * 16, [r.text for r in responses]
        assert (await read_post(client, post["id"]))["votes"] == 8
        assert await stored_votes(app, post_id=post["id"]) == 8
        for account, tokens in voters:
            assert await stored_votes(app, post_id=post["id"], user_id=account.id) == 1
            assert (await read_post(client, post["id"], tokens))["voted"] is True

    async def test_concurrent_unvotes_leave_nothing(self, app: FastAPI, cast: Cast, client: httpx.AsyncClient) -> None:
        post = await create_post(client, cast.author_tokens, published=True)
        voters = [await signed_in(app, client) for _ in range(4)]
        for _, tokens in voters:
            await vote(client, tokens, post["id"])

        responses = await asyncio.gather(
            *(client.delete(vote_url(post["id"]), headers=tokens.headers) for _, tokens in voters for _ in range(2))
        )

        assert [response.status_code for response in responses] == [204] * 8, [r.text for r in responses]
        assert (await read_post(client, post["id"]))["votes"] == 0


class TestAuthenticationComesFirst:
    @pytest.mark.parametrize(
        ("method", "suffix"),
        [("PATCH", ""), ("DELETE", ""), ("POST", "/vote"), ("DELETE", "/vote")],
        ids=["edit", "delete", "vote", "unvote"],
    )
    @pytest.mark.parametrize("target", ["published", "draft", "missing"])
    async def test_anonymous_is_401_whatever_the_post(
        self, cast: Cast, client: httpx.AsyncClient, method: str, suffix: str, target: str
    ) -> None:
        # A mutation without credentials is refused before the post is looked up, so 401 never turns into 404.
        post_id = 987654
        if target != "missing":
            post_id = (await create_post(client, cast.author_tokens, published=target == "published"))["id"]

        response = await client.request(method, f"{post_url(post_id)}{suffix}", json={"title": "x"})

        assert_problem(response, 401, "not_authenticated")
        assert response.headers["www-authenticate"] == "Bearer"


class TestUserDeletion:
    @pytest.mark.parametrize("how", ["self", "admin"])
    async def test_removes_their_posts_and_votes(
        self, app: FastAPI, cast: Cast, client: httpx.AsyncClient, how: str
    ) -> None:
        leaving, leaving_tokens = await signed_in(app, client, username="leaving_user")
        their_public = await create_post(client, leaving_tokens, title="their public post", published=True)
        their_draft = await create_post(client, leaving_tokens, title="their draft")
        others_post = await create_post(client, cast.author_tokens, title="stays", published=True)
        await vote(client, leaving_tokens, others_post["id"])
        await vote(client, cast.other_tokens, others_post["id"])
        await vote(client, cast.other_tokens, their_public["id"])
        assert (await read_post(client, others_post["id"]))["votes"] == 2

        if how == "self":
            response = await client.request(
                "DELETE", "/api/v1/users/me", json={"password": leaving.password}, headers=leaving_tokens.headers
            )
        else:
            response = await client.delete(f"/api/v1/admin/users/{leaving.id}", headers=cast.admin_tokens.headers)

        assert response.status_code == 204, response.text
        for post in (their_public, their_draft):
            assert_problem(
                await client.get(post_url(post["id"]), headers=cast.admin_tokens.headers), 404, "post_not_found"
            )
        feed = await get_page(client, POSTS)
        assert ids(feed) == [others_post["id"]]
        assert (await get_page(client, POSTS, author_id=leaving.id))["total"] == 0
        survivor = await read_post(client, others_post["id"], cast.other_tokens)
        assert (survivor["votes"], survivor["voted"]) == (1, True)
        assert await stored_votes(app, user_id=leaving.id) == 0
        assert await stored_votes(app, post_id=their_public["id"]) == 0
        assert await stored_votes(app) == 1
        assert ids(await get_page(client, MINE, cast.author_tokens)) == [others_post["id"]]

    async def test_a_new_user_never_inherits_a_deleted_users_posts(
        self, app: FastAPI, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        leaving, leaving_tokens = await signed_in(app, client)
        await create_post(client, leaving_tokens, title="orphan draft")
        deleted = await client.delete(f"/api/v1/admin/users/{leaving.id}", headers=cast.admin_tokens.headers)
        assert deleted.status_code == 204, deleted.text

        newcomer = await create_user(app)
        tokens = await login(client, newcomer)

        assert (await get_page(client, MINE, tokens))["total"] == 0


class TestMarkdown:
    async def test_create_stores_the_rendered_html_excerpt_and_reading_time(
        self, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        content = "# Hello\n\nSome **bold** and a [link](https://keel.example). <script>alert(1)</script>\n\n" + (
            "word " * 500
        )
        body = await create_post(client, cast.author_tokens, content=content, published=True)

        assert body["content"] == content
        assert body["content_html"].startswith(
            '<h1>Hello</h1>\n<p>Some <strong>bold</strong> and a <a href="https://keel.example" '
            'rel="nofollow ugc noopener">link</a>. &lt;script&gt;'
        )
        assert "<script" not in body["content_html"]
        assert body["excerpt"].startswith("Hello Some bold and a link. <script>alert(1)</script> word word")
        assert len(body["excerpt"]) <= 280
        assert body["excerpt"].endswith("…")
        assert body["reading_minutes"] == 2
        assert await read_post(client, body["id"], cast.author_tokens) == body

    async def test_editing_the_content_renders_it_again_and_a_title_edit_does_not_touch_it(
        self, cast: Cast, client: httpx.AsyncClient
    ) -> None:
        post = await create_post(client, cast.author_tokens, content="*first*")

        edited = await patch_post(client, cast.author_tokens, post["id"], content="~~second~~")
        retitled = await patch_post(client, cast.author_tokens, post["id"], title="New title")

        assert (edited["content_html"], edited["excerpt"]) == ("<p><s>second</s></p>\n", "second")
        assert (retitled["content_html"], retitled["excerpt"]) == ("<p><s>second</s></p>\n", "second")
