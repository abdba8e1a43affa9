"""Text PostgreSQL cannot store (U+0000) is refused as input on every backend, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DataError

from keel.main import create_app
from keel.models import Role
from tests.conftest import base_settings
from tests.factories import assert_problem, create_user, login

NUL = "a\x00b"


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("POST", "/api/v1/auth/register", {"json": {"email": "n@example.com", "username": "nul", "password": NUL * 5}}),
        ("POST", "/api/v1/auth/login", {"data": {"username": f"{NUL}@example.com", "password": "whatever-123"}}),
        ("PATCH", "/api/v1/users/me", {"json": {"full_name": NUL}}),
        ("POST", "/api/v1/posts", {"json": {"title": "t", "content": NUL}}),
        ("POST", "/api/v1/todos", {"json": {"title": NUL}}),
        ("GET", "/api/v1/todos", {"params": {"q": NUL}}),
        ("GET", "/api/v1/posts", {"params": {"q": NUL}}),
        ("GET", "/api/v1/admin/users", {"params": {"q": NUL}}),
        ("DELETE", "/api/v1/auth/sessions/a%00b", {}),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_nul_characters_are_invalid_input(
    app: FastAPI, client: httpx.AsyncClient, method: str, path: str, payload: dict[str, Any]
) -> None:
    admin = await login(client, await create_user(app, role=Role.ADMIN))

    response = await client.request(method, path, headers=admin.headers, **payload)

    assert_problem(response, 422, "validation_error")


async def test_a_value_the_database_refuses_is_a_422(tmp_path: Any) -> None:
    app = create_app(base_settings(tmp_path))

    @app.get("/boom")
    async def boom() -> None:
        raise DataError("INSERT ...", {}, Exception("invalid byte sequence"))

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/boom")
    body = assert_problem(response, 422, "invalid_data")
    assert "invalid byte sequence" not in response.text
    assert body["instance"] == "/boom"
