"""`Idempotency-Key` on POST /todos and POST /posts: a retry replays, never duplicates."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
import time_machine
from fastapi import FastAPI

from tests.factories import Tokens, assert_problem, create_user, error_locs, login, signed_in

TODOS = "/api/v1/todos"
POSTS = "/api/v1/posts"
REPLAYED = "idempotent-replayed"


def keyed(tokens: Tokens, key: str) -> dict[str, str]:
    return {**tokens.headers, "Idempotency-Key": key}


async def total(client: httpx.AsyncClient, tokens: Tokens, path: str) -> int:
    response = await client.get(path if path == TODOS else f"{POSTS}/mine", headers=tokens.headers)
    assert response.status_code == 200
    return int(response.json()["total"])


class TestReplay:
    @pytest.mark.parametrize(
        ("path", "body", "respelled"),
        [
            (
                TODOS,
                '{"title": "Pay the harbour fee", "priority": "high"}',
                '{"priority":"high","title":"Pay the harbour fee"}',
            ),
            (
                POSTS,
                '{"title": "Tides", "content": "High at six."}',
                '{ "content": "High at six.",  "title": "Tides" }',
            ),
        ],
    )
    async def test_the_same_key_and_body_replays_the_first_answer(
        self, app: FastAPI, client: httpx.AsyncClient, path: str, body: str, respelled: str
    ) -> None:
        _, tokens = await signed_in(app, client)
        headers = {**keyed(tokens, "retry-7f3a"), "Content-Type": "application/json"}

        first = await client.post(path, content=body, headers=headers)
        again = await client.post(path, content=respelled, headers=headers)

        assert first.status_code == again.status_code == 201
        assert REPLAYED not in first.headers
        assert again.headers[REPLAYED] == "true"
        assert again.json() == first.json()
        assert await total(client, tokens, path) == 1

    async def test_without_a_key_every_post_creates(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)

        for _ in range(2):
            assert (await client.post(TODOS, json={"title": "Same"}, headers=tokens.headers)).status_code == 201

        assert await total(client, tokens, TODOS) == 2

    async def test_a_different_body_with_the_same_key_is_refused(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        assert (await client.post(TODOS, json={"title": "One"}, headers=keyed(tokens, "k1"))).status_code == 201

        response = await client.post(TODOS, json={"title": "Two"}, headers=keyed(tokens, "k1"))

        problem = assert_problem(response, 422, "idempotency_key_reused")
        assert error_locs(problem) == [["header", "Idempotency-Key"]]
        assert await total(client, tokens, TODOS) == 1

    async def test_a_key_used_for_a_todo_cannot_create_a_post(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        assert (await client.post(TODOS, json={"title": "Mine"}, headers=keyed(tokens, "shared"))).status_code == 201

        response = await client.post(POSTS, json={"title": "Mine", "content": "x"}, headers=keyed(tokens, "shared"))

        assert_problem(response, 422, "idempotency_key_reused")
        assert await total(client, tokens, POSTS) == 0

    async def test_keys_belong_to_their_user(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, ada = await signed_in(app, client)
        _, bob = await signed_in(app, client)

        mine = await client.post(TODOS, json={"title": "Ada's"}, headers=keyed(ada, "k"))
        theirs = await client.post(TODOS, json={"title": "Bob's"}, headers=keyed(bob, "k"))

        assert mine.status_code == theirs.status_code == 201
        assert REPLAYED not in theirs.headers
        assert theirs.json()["title"] == "Bob's"
        assert theirs.json()["owner_id"] != mine.json()["owner_id"]

    async def test_a_key_is_kept_for_24_hours(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        account, tokens = await signed_in(app, client)
        first = await client.post(TODOS, json={"title": "Daily"}, headers=keyed(tokens, "daily"))

        clock.shift(timedelta(hours=23, minutes=58))
        tokens = await login(client, account)  # the access token has expired meanwhile
        within = await client.post(TODOS, json={"title": "Daily"}, headers=keyed(tokens, "daily"))
        clock.shift(timedelta(minutes=3))
        tokens = await login(client, account)  # the access token has expired meanwhile
        after = await client.post(TODOS, json={"title": "Daily"}, headers=keyed(tokens, "daily"))

        assert within.headers[REPLAYED] == "true"
        assert within.json()["id"] == first.json()["id"]
        assert after.status_code == 201
        assert REPLAYED not in after.headers
        assert after.json()["id"] != first.json()["id"]
        assert await total(client, tokens, TODOS) == 2

    async def test_racing_retries_create_one_row(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)

        answers = await asyncio.gather(
            *(client.post(TODOS, json={"title": "Once"}, headers=keyed(tokens, "race")) for _ in range(5))
        )

        assert [answer.status_code for answer in answers] == [201] * 5
        assert len({answer.json()["id"] for answer in answers}) == 1
        assert sum(REPLAYED in answer.headers for answer in answers) == 4
        assert await total(client, tokens, TODOS) == 1


class TestFailuresAreNotRecorded:
    async def test_a_refused_create_leaves_the_key_free(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app, is_verified=False)
        tokens = await login(client, account)
        draft = {"title": "Launch", "content": "Soon.", "published": True}

        refused = await client.post(POSTS, json=draft, headers=keyed(tokens, "launch"))
        assert_problem(refused, 403, "email_not_verified")
        invalid = await client.post(POSTS, json={"title": ""}, headers=keyed(tokens, "launch"))
        assert invalid.status_code == 422
        saved = await client.post(POSTS, json={**draft, "published": False}, headers=keyed(tokens, "launch"))

        assert saved.status_code == 201
        assert REPLAYED not in saved.headers

    @pytest.mark.parametrize("key", ["", "has space", "x" * 256, "naïve"])
    async def test_a_malformed_key_is_a_422(self, app: FastAPI, client: httpx.AsyncClient, key: str) -> None:
        _, tokens = await signed_in(app, client)
        # Raw UTF-8 bytes on the wire, as a careless client would send them.
        headers = [*((name.encode(), value.encode()) for name, value in tokens.headers.items())]
        headers.append((b"Idempotency-Key", key.encode()))

        response = await client.post(TODOS, json={"title": "Never"}, headers=headers)

        problem = assert_problem(response, 422, "validation_error")
        assert ["header", "Idempotency-Key"] in error_locs(problem)
        assert await total(client, tokens, TODOS) == 0


async def test_the_header_is_documented(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()

    for path in (TODOS, POSTS):
        parameters = schema["paths"][path]["post"]["parameters"]
        (header,) = [p for p in parameters if p["in"] == "header"]
        assert header["name"] == "Idempotency-Key"
        assert header["required"] is False
