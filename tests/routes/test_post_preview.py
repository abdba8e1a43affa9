"""POST /posts/preview: the editor's preview is the server's own rendering, and stores nothing."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlmodel import func, select

from keel.core import markdown
from keel.core.db import Database
from keel.models import Post
from tests.factories import assert_problem, error_locs, signed_in

PREVIEW = "/api/v1/posts/preview"
SOURCE = (
    "Some **bold**, [a link](https://example.com) and a table:\n\n| knot | use |\n|---|---|\n| bowline | a loop |\n"
)


async def post_count(app: FastAPI) -> int:
    database: Database = app.state.database
    async with database.session() as session:
        return int((await session.exec(select(func.count()).select_from(Post))).one())


class TestPreview:
    async def test_it_answers_what_a_saved_post_would_store(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)

        response = await client.post(PREVIEW, json={"content": SOURCE}, headers=tokens.headers)

        assert response.status_code == 200, response.text
        made = markdown.render(SOURCE)
        assert response.json() == {
            "content_html": made.content_html,
            "excerpt": made.excerpt,
            "reading_minutes": made.reading_minutes,
        }
        assert "<strong>bold</strong>" in made.content_html
        assert "<table>" in made.content_html
        assert 'rel="nofollow ugc noopener"' in made.content_html
        saved = await client.post("/api/v1/posts", json={"title": "Same", "content": SOURCE}, headers=tokens.headers)
        assert saved.json()["content_html"] == response.json()["content_html"]

    async def test_it_renders_script_and_handlers_inert(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        hostile = (
            "[x](javascript:alert(1)) <img src=x onerror=alert(1)> <script>alert(1)</script> <svg onload=alert(1)>"
        )

        html = (await client.post(PREVIEW, json={"content": hostile}, headers=tokens.headers)).json()["content_html"]

        assert "<script" not in html
        assert "<img" not in html
        assert "<svg" not in html
        assert "href" not in html  # the link is refused and stays as its text

    async def test_it_stores_nothing(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)

        assert (await client.post(PREVIEW, json={"content": "Draft thoughts."}, headers=tokens.headers)).is_success

        assert await post_count(app) == 0

    async def test_an_unverified_writer_may_preview_as_they_may_save_drafts(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        _, tokens = await signed_in(app, client, is_verified=False)

        response = await client.post(PREVIEW, json={"content": "Not yet verified."}, headers=tokens.headers)

        assert response.status_code == 200

    async def test_it_needs_a_signed_in_caller(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.post(PREVIEW, json={"content": "Hello"}), 401, "not_authenticated")

    async def test_content_follows_the_posts_rules(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)

        blank = await client.post(PREVIEW, json={"content": "   "}, headers=tokens.headers)
        too_long = await client.post(PREVIEW, json={"content": "x" * 50_001}, headers=tokens.headers)
        extra = await client.post(PREVIEW, json={"content": "Hi", "title": "no"}, headers=tokens.headers)

        assert error_locs(assert_problem(blank, 422, "validation_error")) == [["body", "content"]]
        assert error_locs(assert_problem(too_long, 422, "validation_error")) == [["body", "content"]]
        assert error_locs(assert_problem(extra, 422, "validation_error")) == [["body", "title"]]
