"""Request bodies over the configured limit get 413, whether or not they declare their length."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from keel.core.config import Settings
from keel.main import create_app
from tests.factories import assert_problem

REGISTER = "/api/v1/auth/register"


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings.model_copy(update={"max_body_bytes": 4096}))
    async with application.router.lifespan_context(application):
        yield application


async def test_declared_length_over_the_limit(client: httpx.AsyncClient) -> None:
    response = await client.post(
        REGISTER, content=b"{" + b" " * 5000 + b"}", headers={"content-type": "application/json"}
    )
    body = assert_problem(response, 413, "payload_too_large")
    assert body["instance"] == REGISTER
    assert "x-request-id" in response.headers


async def test_chunked_body_over_the_limit(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "'
        for _ in range(10):
            yield b"a" * 1000
        yield b'"}'

    response = await client.post(REGISTER, content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload_too_large")


async def test_a_body_within_the_limit_is_processed(client: httpx.AsyncClient) -> None:
    response = await client.post(REGISTER, json={"email": "x"})
    assert_problem(response, 422, "validation_error")
