"""Conditional requests: a strong ETag on todos, posts and the caller's account; 304 for a GET whose
If-None-Match is current; 412 for a PATCH or DELETE whose If-Match is not, and nothing changed.
Two clients racing an edit: exactly one wins."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from keel.services import todo as todo_service
from tests.factories import Tokens, assert_problem, create_user, login, signed_in

TODOS = "/api/v1/todos"
POSTS = "/api/v1/posts"
ME = "/api/v1/users/me"


async def _todo(client: httpx.AsyncClient, tokens: Tokens, title: str = "Water the ferns") -> tuple[str, str]:
    created = await client.post(TODOS, json={"title": title}, headers=tokens.headers)
    assert created.status_code == 201, created.text
    return f"{TODOS}/{created.json()['id']}", created.headers["etag"]


def _with(tokens: Tokens, **headers: str) -> dict[str, str]:
    return {**tokens.headers, **{name.replace("_", "-"): value for name, value in headers.items()}}


class TestEntityTags:
    async def test_a_create_sends_the_etag_a_get_then_sends(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        path, created_tag = await _todo(client, tokens)

        read = await client.get(path, headers=tokens.headers)

        assert read.status_code == 200
        assert read.headers["etag"] == created_tag
        assert created_tag.startswith('"')
        assert created_tag.endswith('"')
        assert len(created_tag) > 10

    async def test_the_tag_changes_with_the_representation_and_only_then(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        _, tokens = await signed_in(app, client)
        path, first = await _todo(client, tokens)
        assert (await client.get(path, headers=tokens.headers)).headers["etag"] == first

        patched = await client.patch(path, json={"completed": True}, headers=tokens.headers)

        assert patched.status_code == 200
        assert patched.headers["etag"] != first
        assert (await client.get(path, headers=tokens.headers)).headers["etag"] == patched.headers["etag"]

    async def test_if_none_match_with_the_current_tag_is_304_without_a_body(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        _, tokens = await signed_in(app, client)
        path, tag = await _todo(client, tokens)

        for sent in (tag, f"W/{tag}", f'"other", {tag}', "*"):
            answer = await client.get(path, headers=_with(tokens, If_None_Match=sent))
            assert answer.status_code == 304, sent
            assert answer.content == b""
            assert answer.headers["etag"] == tag
            assert "x-request-id" in answer.headers

        head = await client.head(path, headers=_with(tokens, If_None_Match=tag))
        assert head.status_code == 304

    async def test_if_none_match_with_an_old_tag_gets_the_item(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        path, tag = await _todo(client, tokens)
        await client.patch(path, json={"title": "Water the palms"}, headers=tokens.headers)

        answer = await client.get(path, headers=_with(tokens, If_None_Match=tag))

        assert answer.status_code == 200
        assert answer.json()["title"] == "Water the palms"
        assert answer.headers["etag"] != tag

    async def test_someone_elses_todo_is_404_whatever_the_precondition(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        _, owner = await signed_in(app, client)
        _, stranger = await signed_in(app, client)
        path, tag = await _todo(client, owner)

        assert_problem(await client.get(path, headers=_with(stranger, If_None_Match=tag)), 404, "todo_not_found")
        assert_problem(await client.patch(path, json={}, headers=_with(stranger, If_Match="*")), 404, "todo_not_found")
        assert_problem(await client.delete(path, headers=_with(stranger, If_Match=tag)), 404, "todo_not_found")


class TestIfMatch:
    async def test_a_stale_tag_is_412_and_changes_nothing(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        path, stale = await _todo(client, tokens)
        current = (await client.patch(path, json={"priority": "high"}, headers=tokens.headers)).headers["etag"]

        refused = await client.patch(path, json={"title": "Mine wins"}, headers=_with(tokens, If_Match=stale))
        assert_problem(refused, 412, "precondition_failed")
        assert_problem(await client.delete(path, headers=_with(tokens, If_Match=stale)), 412, "precondition_failed")

        after = await client.get(path, headers=tokens.headers)
        assert after.json()["title"] == "Water the ferns"
        assert after.headers["etag"] == current

    async def test_a_weak_tag_never_matches(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        path, tag = await _todo(client, tokens)

        refused = await client.patch(path, json={"completed": True}, headers=_with(tokens, If_Match=f"W/{tag}"))

        assert_problem(refused, 412, "precondition_failed")

    @pytest.mark.parametrize("sent", ["current", "*", "listed"])
    async def test_the_current_tag_or_a_star_lets_the_change_through(
        self, app: FastAPI, client: httpx.AsyncClient, sent: str
    ) -> None:
        _, tokens = await signed_in(app, client)
        path, tag = await _todo(client, tokens)
        header = {"current": tag, "*": "*", "listed": f'"nope", {tag}'}[sent]

        patched = await client.patch(path, json={"completed": True}, headers=_with(tokens, If_Match=header))
        assert patched.status_code == 200, patched.text
        assert patched.json()["completed"] is True

        deleted = await client.delete(path, headers=_with(tokens, If_Match=patched.headers["etag"]))
        assert deleted.status_code == 204
        assert (await client.get(path, headers=tokens.headers)).status_code == 404

    async def test_an_if_match_that_is_not_printable_is_a_422(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        path, _ = await _todo(client, tokens)

        answer = await client.patch(path, json={}, headers=_with(tokens, If_Match="\x7f"))

        assert answer.status_code == 422


class TestTwoClientsRacing:
    async def test_the_second_edit_from_the_same_reading_is_refused(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account, phone = await signed_in(app, client)
        laptop = await login(client, account)
        path, _ = await _todo(client, phone)
        # Both read the same version...
        seen_by_phone = (await client.get(path, headers=phone.headers)).headers["etag"]
        seen_by_laptop = (await client.get(path, headers=laptop.headers)).headers["etag"]
        assert seen_by_phone == seen_by_laptop

        # ...the phone saves first; the laptop, still showing what it read, is told so.
        first = await client.patch(path, json={"title": "From the phone"}, headers=_with(phone, If_Match=seen_by_phone))
        second = await client.patch(
            path, json={"title": "From the laptop"}, headers=_with(laptop, If_Match=seen_by_laptop)
        )

        assert first.status_code == 200
        assert_problem(second, 412, "precondition_failed")
        assert (await client.get(path, headers=laptop.headers)).json()["title"] == "From the phone"

    async def test_concurrent_edits_from_one_reading_leave_exactly_one_winner(
        self, app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _, tokens = await signed_in(app, client)
        path, tag = await _todo(client, tokens)
        # Every edit has read the todo (and passed its If-Match check) before any of them writes: the
        # version the write is conditioned on is all that can tell the winner from the rest.
        all_read = asyncio.Barrier(6)
        owned = todo_service._owned

        async def read_then_wait(*args: Any) -> Any:
            todo = await owned(*args)
            await asyncio.wait_for(all_read.wait(), timeout=10)
            return todo

        monkeypatch.setattr(todo_service, "_owned", read_then_wait)

        async def edit(n: int) -> httpx.Response:
            return await client.patch(path, json={"title": f"Edit {n}"}, headers=_with(tokens, If_Match=tag))

        answers = await asyncio.gather(*(edit(n) for n in range(6)))

        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200, 412, 412, 412, 412, 412], [answer.text for answer in answers]
        winner = next(answer for answer in answers if answer.status_code == 200)
        assert (await client.get(path, headers=tokens.headers)).json()["title"] == winner.json()["title"]

    async def test_without_if_match_racing_edits_all_apply(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        path, _ = await _todo(client, tokens)

        answers = await asyncio.gather(
            client.patch(path, json={"title": "Left"}, headers=tokens.headers),
            client.patch(path, json={"priority": "high"}, headers=tokens.headers),
        )

        assert [answer.status_code for answer in answers] == [200, 200], [answer.text for answer in answers]
        final = (await client.get(path, headers=tokens.headers)).json()
        assert (final["title"], final["priority"]) == ("Left", "high")  # neither change was lost


class TestPostsAndAccount:
    async def test_a_vote_changes_the_posts_tag(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, author = await signed_in(app, client)
        _, voter = await signed_in(app, client)
        created = await client.post(
            POSTS, json={"title": "T", "content": "C", "published": True}, headers=author.headers
        )
        path, tag = f"{POSTS}/{created.json()['id']}", created.headers["etag"]
        assert (await client.get(path, headers=author.headers)).headers["etag"] == tag
        assert (await client.get(path, headers=_with(author, If_None_Match=tag))).status_code == 304

        assert (await client.post(f"{path}/vote", headers=voter.headers)).status_code == 204

        fresh = await client.get(path, headers=_with(author, If_None_Match=tag))
        assert fresh.status_code == 200
        assert fresh.json()["votes"] == 1
        stale = await client.patch(path, json={"title": "New"}, headers=_with(author, If_Match=tag))
        assert_problem(stale, 412, "precondition_failed")
        ok = await client.patch(path, json={"title": "New"}, headers=_with(author, If_Match=fresh.headers["etag"]))
        assert ok.status_code == 200
        assert ok.headers["etag"] == (await client.get(path, headers=author.headers)).headers["etag"]
        assert_problem(await client.delete(path, headers=_with(author, If_Match=tag)), 412, "precondition_failed")
        assert (await client.delete(path, headers=_with(author, If_Match=ok.headers["etag"]))).status_code == 204

    async def test_anonymous_readers_get_tags_too(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, author = await signed_in(app, client)
        created = await client.post(
            POSTS, json={"title": "T", "content": "C", "published": True}, headers=author.headers
        )
        path = f"{POSTS}/{created.json()['id']}"

        anonymous = await client.get(path)
        again = await client.get(path, headers={"If-None-Match": anonymous.headers["etag"]})

        assert again.status_code == 304

    async def test_the_account(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        me = await client.get(ME, headers=tokens.headers)
        tag = me.headers["etag"]
        assert (await client.get(ME, headers=_with(tokens, If_None_Match=tag))).status_code == 304

        renamed = await client.patch(ME, json={"full_name": "Ada"}, headers=_with(tokens, If_Match=tag))
        assert renamed.status_code == 200
        assert renamed.headers["etag"] != tag
        stale = await client.patch(ME, json={"full_name": "Bob"}, headers=_with(tokens, If_Match=tag))
        assert_problem(stale, 412, "precondition_failed")
        refused = await client.request(
            "DELETE", ME, json={"password": account.password}, headers=_with(tokens, If_Match=tag)
        )
        assert_problem(refused, 412, "precondition_failed")
        assert (await client.get(ME, headers=tokens.headers)).json()["full_name"] == "Ada"


def test_the_schema_documents_etags_304_and_412(app: FastAPI) -> None:
    paths: dict[str, Any] = app.openapi()["paths"]
    for path in (f"{TODOS}/{{todo_id}}", f"{POSTS}/{{post_id}}", ME):
        get = paths[path]["get"]
        assert "ETag" in get["responses"]["200"]["headers"], path
        assert "ETag" in get["responses"]["304"]["headers"], path
        assert "If-None-Match" in {parameter["name"] for parameter in get["parameters"]}, path
        for method in ("patch", "delete"):
            operation = paths[path][method]
            assert "412" in operation["responses"], (path, method)
            assert "If-Match" in {parameter["name"] for parameter in operation["parameters"]}, (path, method)
        assert "ETag" in paths[path]["patch"]["responses"]["200"]["headers"], path
    for path in (TODOS, POSTS):
        assert "ETag" in paths[path]["post"]["responses"]["201"]["headers"], path
