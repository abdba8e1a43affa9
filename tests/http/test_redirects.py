"""No answer's Location can be steered by the Host header: paths answer as written, or not at all."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import assert_problem


@pytest.mark.parametrize("path", ["/health/", "/api/v1/todos/", "/api/v1/posts/", "/ready/"])
async def test_a_path_with_a_trailing_slash_is_not_redirected(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, headers={"Host": "evil.example", "Accept": "application/json"})

    # Answered where it is (a list route matches with or without the slash), or a 404: never a redirect.
    assert "location" not in response.headers
    assert not 300 <= response.status_code < 400
    if path in ("/health/", "/ready/"):
        assert_problem(response, 404, "not_found")


async def test_no_answer_carries_a_location_built_from_host(client: httpx.AsyncClient) -> None:
    for path in ("/", "/todos", "/docs", "/redoc", "/health", "/api/v1/posts", "/static/js/app.js"):
        response = await client.get(path, headers={"Host": "evil.example"})
        assert "evil.example" not in response.headers.get("location", ""), path
