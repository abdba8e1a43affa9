"""HEAD answers every GET with the GET's status and headers and no body; answers are compressed
(br or gzip, as the client prefers) from 1 KB."""

from __future__ import annotations

import gzip
import re
from typing import Any

import brotli  # type: ignore[import-untyped]
import httpx
import pytest
from fastapi import FastAPI

from keel.models import Role
from tests.factories import create_user, login

# Headers that differ between any two answers, whatever the method: the request id, the time, the
# CSP nonce, and what is left of a rate limit (the provider callback counts against the client's
# sign-ins, GET and HEAD alike).
VOLATILE = {"x-request-id", "date", "content-security-policy", "ratelimit"}


def comparable(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name not in VOLATILE}


async def concrete_paths(app: FastAPI, client: httpx.AsyncClient) -> tuple[list[str], dict[str, str]]:
    """Every GET path of the schema with its parameters filled in, and an admin's headers for them."""
    admin = await create_user(app, role=Role.ADMIN)
    tokens = await login(client, admin)
    todo = await client.post("/api/v1/todos", json={"title": "Check HEAD"}, headers=tokens.headers)
    post = await client.post(
        "/api/v1/posts", json={"title": "Head", "content": "x", "published": True}, headers=tokens.headers
    )
    shared = await client.post("/api/v1/lists", json={"name": "Head"}, headers=tokens.headers)
    assert todo.status_code == 201, todo.text
    assert post.status_code == 201, post.text
    assert shared.status_code == 201, shared.text
    # No provider is configured here: its routes answer 404 provider_not_found, to HEAD as to GET.
    values = {
        "todo_id": todo.json()["id"],
        "post_id": post.json()["id"],
        "list_id": shared.json()["id"],
        "user_id": admin.id,
        "provider": "none",
    }
    paths = []
    for path, item in app.openapi()["paths"].items():
        if "get" not in item or path == "/api/v1/events":  # a stream never ends (tests/routes/test_events.py)
            continue
        names = re.findall(r"{(\w+)}", path)
        assert set(names) <= set(values), f"give this test a value for {names} in {path}"
        paths.append(path.format(**values))
    return [*paths, "/", "/todos", "/static/js/app.js"], tokens.headers


async def test_every_get_answers_head_with_its_headers_and_no_body(app: FastAPI, client: httpx.AsyncClient) -> None:
    paths, headers = await concrete_paths(app, client)
    assert len(paths) > 10
    for path in paths:
        for encoding in ("identity", "br, gzip"):
            sent = {**headers, "Accept-Encoding": encoding}
            got = await client.get(path, headers=sent)
            head = await client.head(path, headers=sent)

            assert head.status_code == got.status_code, path
            assert head.content == b"", path
            if path != "/metrics":  # its counters moved between the two requests
                assert comparable(head) == comparable(got), (path, encoding)


async def test_a_405_names_head_wherever_get_is_allowed(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/users/me")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    assert (await client.put("/api/v1/todos")).headers["allow"] == "GET, HEAD, POST"


@pytest.mark.parametrize(
    ("accept", "encoding", "decode"),
    [
        ("br, gzip", "br", brotli.decompress),
        ("gzip, deflate", "gzip", gzip.decompress),
        ("gzip, br;q=0", "gzip", gzip.decompress),  # q=0: not acceptable
    ],
)
async def test_a_large_answer_is_compressed_as_the_client_prefers(
    app: FastAPI, client: httpx.AsyncClient, accept: str, encoding: str, decode: Any
) -> None:
    await _seed_feed(app, client)
    plain = await client.get("/api/v1/posts?limit=100", headers={"Accept-Encoding": "identity"})
    async with client.stream("GET", "/api/v1/posts?limit=100", headers={"Accept-Encoding": accept}) as raw:
        body = b"".join([chunk async for chunk in raw.aiter_raw()])

    assert len(plain.content) > 1024
    assert "content-encoding" not in plain.headers
    assert raw.headers["content-encoding"] == encoding
    assert "Accept-Encoding" in raw.headers["vary"]
    assert len(body) < len(plain.content) / 3
    assert decode(body) == plain.content


async def test_a_small_answer_goes_out_as_it_is(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"Accept-Encoding": "br, gzip"})
    assert len(response.content) < 1024
    assert "content-encoding" not in response.headers


async def _seed_feed(app: FastAPI, client: httpx.AsyncClient) -> None:
    author = await create_user(app)
    tokens = await login(client, author)
    for n in range(12):
        body = {"title": f"Post {n} about compression", "content": "Some words that repeat. " * 20, "published": True}
        created = await client.post("/api/v1/posts", json=body, headers=tokens.headers)
        assert created.status_code == 201, created.text
