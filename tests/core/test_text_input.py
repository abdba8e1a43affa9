"""Text PostgreSQL cannot store (U+0000) is refused as input on every backend, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DataError

from keel.main import create_app
from keel.models import Role
from keel.schemas.common import NOT_BLANK, not_blank
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
        ("POST", "/api/v1/todos", {"json": {"title": "t", "labels": [NUL]}}),
        ("GET", "/api/v1/todos", {"params": {"label": NUL}}),
        ("POST", "/api/v1/lists", {"json": {"name": NUL}}),
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

    @app.get("/boom", include_in_schema=False)
    async def boom() -> None:
        raise DataError("INSERT ...", {}, Exception("invalid byte sequence"))

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/boom")
    body = assert_problem(response, 422, "invalid_data")
    assert "invalid byte sequence" not in response.text
    assert body["instance"] == "/boom"


# --- the same rules, stated in the OpenAPI document -------------------------------------------
# The contract fuzzer found a request body whose text held U+0000: valid by the schema, refused by
# the API. Every text field of a body now says so, and the not-blank rule is stated alike.
def _body_text_fields(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    components = document["components"]["schemas"]
    names = {
        content["schema"]["$ref"].removeprefix("#/components/schemas/")
        for item in document["paths"].values()
        for operation in item.values()
        for content in operation.get("requestBody", {}).get("content", {}).values()
        if "application/json" in operation["requestBody"]["content"] and "$ref" in content["schema"]
    }
    return [
        (f"{name}.{field}", variant)
        for name in sorted(names)
        for field, field_schema in components[name]["properties"].items()
        for variant in (field_schema, *field_schema.get("anyOf", ()))
        if variant.get("type") == "string"
    ]


def test_every_text_field_of_a_body_refuses_nul(tmp_path: Any) -> None:
    fields = _body_text_fields(create_app(base_settings(tmp_path)).openapi())

    assert len(fields) > 15, fields
    for where, field in fields:
        assert not jsonschema_rs.validator_for(field).is_valid("a\x00b"), where


# Every character Python or JSON Schema (ECMA-262) counts as whitespace, and some that neither does.
WHITESPACE = [chr(code) for code in range(0x110000) if chr(code).isspace()] + ["\ufeff"]


@pytest.mark.parametrize("text", [*WHITESPACE, " \t\u3000 ", "x", " x ", "\u200b", "é"], ids=repr)
def test_the_schema_and_the_server_agree_on_blank(text: str) -> None:
    schema = jsonschema_rs.validator_for({"type": "string", "pattern": NOT_BLANK})
    try:
        not_blank(text)
    except ValueError:
        accepted = False
    else:
        accepted = True

    assert schema.is_valid(text) is accepted
    assert accepted is (text.strip() not in ("", "\ufeff"))
