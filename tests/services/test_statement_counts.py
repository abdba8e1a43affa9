"""A list page costs the same number of SQL statements however many items it holds (no N+1)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy import event
from sqlmodel import col

from keel.models import Post, PostTag, User, Vote
from keel.services import tag as tag_service
from tests.factories import Account, Tokens, assert_problem, create_user, login


@contextmanager
def count_statements(app: FastAPI) -> Iterator[list[str]]:
    """The SQL of every statement run meanwhile, on either backend.

    SQLAlchemy's cursor events see the ORM's statements and all of SQLite's; on PostgreSQL the
    prebuilt statements run on the driver and are seen through `Database.statement_hooks` instead.
    """
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    database = app.state.database
    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    database.statement_hooks.append(statements.append)
    try:
        yield statements
    finally:
        database.statement_hooks.remove(statements.append)
        event.remove(engine, "before_cursor_execute", record)


def _page_statements(app: FastAPI) -> int:
    """One statement carries a page and its total; plus the session check where no Redis cache serves it.

    Exact on each backend, so a statement added to a page is caught on PostgreSQL as on SQLite.
    """
    return 1 if app.state.session_cache is not None else 2


async def _seed_posts(app: FastAPI, authors: list[Account], voters: list[Account], count: int) -> None:
    """`count` published posts spread over several authors, each with votes from every voter."""
    async with app.state.database.session() as session:
        posts = [
            Post(
                author_id=authors[i % len(authors)].id,
                title=f"post {i}",
                content="body",
                published=True,
                votes_count=len(voters),
                tags=["sea"],
            )
            for i in range(count)
        ]
        for post in posts:
            post.published_at = post.created_at
        session.add_all(posts)
        await session.flush()
        session.add_all(Vote(user_id=voter.id, post_id=post.id) for post in posts for voter in voters if post.id)
        session.add_all(
            PostTag(post_id=post.id, tag="sea", published=True, published_at=post.published_at, votes_count=len(voters))
            for post in posts
            if post.id
        )
        # Written behind the services' back, so counted as they would have counted them.
        await tag_service.count_published(session, added=[post.tags for post in posts])
        await session.commit()


async def _statements_for(app: FastAPI, client: httpx.AsyncClient, path: str, tokens: Tokens) -> int:
    await client.get(path, headers=tokens.headers)  # warm up: connection set-up, caches
    with count_statements(app) as statements:
        response = await client.get(path, headers=tokens.headers)
    assert response.status_code == 200, response.text
    return len(statements)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/posts?limit=100",
        "/api/v1/posts?limit=100&sort=top",
        "/api/v1/posts?limit=100&tag=sea",
        "/api/v1/posts?limit=100&tag=sea&sort=top",
        "/api/v1/posts/mine?limit=100",
    ],
)
async def test_post_pages_cost_a_fixed_number_of_statements(app: FastAPI, client: httpx.AsyncClient, path: str) -> None:
    authors = [await create_user(app) for _ in range(3)]
    voters = [await create_user(app) for _ in range(4)]
    reader = await login(client, voters[0])
    mine_reader = await login(client, authors[0])
    tokens = mine_reader if "mine" in path else reader

    await _seed_posts(app, authors, voters, 1)
    one = await _statements_for(app, client, path, tokens)
    await _seed_posts(app, authors, voters, 49)
    fifty = await _statements_for(app, client, path, tokens)

    page = (await client.get(path, headers=tokens.headers)).json()
    assert page["total"] >= (17 if "mine" in path else 50)
    assert all(item["votes"] == len(voters) for item in page["items"])
    assert one == fifty
    assert fifty == _page_statements(app)


async def test_todo_pages_cost_a_fixed_number_of_statements(app: FastAPI, client: httpx.AsyncClient) -> None:
    owner = await create_user(app)
    tokens = await login(client, owner)
    await client.post("/api/v1/todos", json={"title": "first"}, headers=tokens.headers)
    one = await _statements_for(app, client, "/api/v1/todos?limit=100", tokens)
    for i in range(49):
        await client.post("/api/v1/todos", json={"title": f"todo {i}"}, headers=tokens.headers)
    fifty = await _statements_for(app, client, "/api/v1/todos?limit=100", tokens)

    assert one == fifty
    assert fifty == _page_statements(app)


@pytest.mark.parametrize("path", ["/api/v1/todos", "/api/v1/posts", "/api/v1/posts/mine"])
async def test_a_page_past_the_end_still_reports_the_total(app: FastAPI, client: httpx.AsyncClient, path: str) -> None:
    author = await create_user(app)
    tokens = await login(client, author)
    for i in range(3):
        kind = "todos" if "todos" in path else "posts"
        body = {"title": f"item {i}"} | ({} if kind == "todos" else {"content": "body", "published": True})
        assert (await client.post(f"/api/v1/{kind}", json=body, headers=tokens.headers)).status_code == 201

    inside = (await client.get(f"{path}?limit=2&offset=2", headers=tokens.headers)).json()
    past = (await client.get(f"{path}?limit=2&offset=50", headers=tokens.headers)).json()

    assert (len(inside["items"]), inside["total"]) == (1, 3)
    assert (past["items"], past["total"], past["offset"]) == ([], 3, 50)


class TestPersonalTokens:
    async def test_a_mistyped_token_is_refused_without_a_statement_or_a_cache_read(
        self, app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        tokens = await login(client, await create_user(app))
        created = await client.post(
            "/api/v1/tokens", json={"name": "ci", "scopes": ["todos:read"]}, headers=tokens.headers
        )
        token = created.json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/api/v1/todos", headers=headers)).status_code == 200  # warm up, and last used

        # The count is real on this backend: a good token's page is counted like a session's.
        with count_statements(app) as statements:
            assert (await client.get("/api/v1/todos", headers=headers)).status_code == 200
        assert len(statements) == _page_statements(app)

        cache = app.state.session_cache
        if cache is not None:

            async def no_cache_read(*_args: object) -> None:
                raise AssertionError("the cache was read for a token whose checksum is wrong")

            monkeypatch.setattr(cache, "get_token", no_cache_read)
        last = token[-1]
        mistyped = token[:-1] + ("a" if last != "a" else "b")
        with count_statements(app) as statements:
            refused = await client.get("/api/v1/todos", headers={"Authorization": f"Bearer {mistyped}"})
        assert_problem(refused, 401, "invalid_token")
        assert statements == []


async def test_the_own_account_is_one_statement_and_a_401_once_its_row_has_gone(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # `/users/me` is asked by every page the web app opens.
    account = await create_user(app)
    tokens = await login(client, account)
    assert await _statements_for(app, client, "/api/v1/users/me", tokens) == _page_statements(app)

    # Removed behind the service's back (the session check may still be served from the cache):
    # the session has ended, whichever of the two reads sees it first.
    async with app.state.database.session() as session:
        await session.exec(sa.delete(User).where(col(User.id) == account.id))
        await session.commit()
    assert_problem(await client.get("/api/v1/users/me", headers=tokens.headers), 401, "session_revoked")
