"""PATCH is a merge patch, as the schema says: a field left out is unchanged, null clears a
nullable field and is a 422 for one that cannot be empty. The schema uses only JSON Schema's own
keywords, and no message shows a Python value."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from keel.models import Role
from tests.factories import Tokens, create_user, error_locs, login

PATCH_BODIES = {
    "/api/v1/todos/{todo_id}": "TodoUpdate",
    "/api/v1/posts/{post_id}": "PostUpdate",
    "/api/v1/posts/{post_id}/comments/{comment_id}": "CommentUpdate",
    "/api/v1/users/me": "UserUpdate",
    "/api/v1/admin/users/{user_id}": "AdminUserUpdate",
}
# PATCH bodies that name the one thing they change: the field is required and never null.
SINGLE_FIELD_PATCHES = {
    "/api/v1/lists/{list_id}": ("ListUpdate", "name"),
    "/api/v1/lists/{list_id}/members/{user_id}": ("MemberUpdate", "role"),
    "/api/v1/auth/passkeys/{passkey_id}": ("PasskeyUpdate", "name"),
}
# What JSON Schema does not know: pydantic's own names for bounds.
NOT_JSON_SCHEMA = {"ge", "le", "gt", "lt", "max_length", "min_length"}


def nullable(property_schema: dict[str, Any]) -> bool:
    return any(variant.get("type") == "null" for variant in property_schema.get("anyOf", ()))


@pytest.fixture
async def resources(app: FastAPI, client: httpx.AsyncClient) -> tuple[dict[str, str], Tokens]:
    admin = await create_user(app, role=Role.ADMIN)
    other = await create_user(app)
    tokens = await login(client, admin)
    body = {"title": "Write", "description": "Words", "due_date": "2030-01-01", "priority": "high"}
    todo = (await client.post("/api/v1/todos", json=body, headers=tokens.headers)).json()
    post = (await client.post("/api/v1/posts", json={"title": "T", "content": "C"}, headers=tokens.headers)).json()
    published = {"title": "P", "content": "C", "published": True}
    commented = (await client.post("/api/v1/posts", json=published, headers=tokens.headers)).json()
    note = await client.post(f"/api/v1/posts/{commented['id']}/comments", json={"content": "C"}, headers=tokens.headers)
    ids = {"todo_id": todo["id"], "post_id": post["id"], "user_id": other.id, "comment_id": note.json()["id"]}
    paths = {path: path.format(**ids) for path in PATCH_BODIES}
    paths["/api/v1/posts/{post_id}/comments/{comment_id}"] = (
        f"/api/v1/posts/{commented['id']}/comments/{ids['comment_id']}"
    )
    return paths, tokens


def test_every_patch_route_is_one_of_the_two_kinds(app: FastAPI) -> None:
    """A new PATCH route must be placed here, so the tests below cover what its null means."""
    schemas = app.openapi()["components"]["schemas"]
    patches = {
        path: operations["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for path, operations in app.openapi()["paths"].items()
        if "patch" in operations
    }
    kinds = {**PATCH_BODIES, **{path: model for path, (model, _) in SINGLE_FIELD_PATCHES.items()}}
    assert patches == kinds
    for model, field in SINGLE_FIELD_PATCHES.values():
        assert schemas[model]["required"] == [field], model
        assert list(schemas[model]["properties"]) == [field], model
        assert not nullable(schemas[model]["properties"][field]), model


async def test_a_single_field_patch_refuses_null_and_nothing(app: FastAPI, client: httpx.AsyncClient) -> None:
    owner, other = await create_user(app), await create_user(app)
    tokens = await login(client, owner)
    made = await client.post("/api/v1/lists", json={"name": "Chores"}, headers=tokens.headers)
    list_url = f"/api/v1/lists/{made.json()['id']}"
    invited = await client.post(
        f"{list_url}/members", json={"username": other.username, "role": "viewer"}, headers=tokens.headers
    )
    assert invited.status_code == 201
    urls = {
        "/api/v1/lists/{list_id}": (list_url, list_url),
        "/api/v1/lists/{list_id}/members/{user_id}": (f"{list_url}/members/{other.id}", f"{list_url}/members"),
    }
    for path, (url, read_url) in urls.items():
        _, field = SINGLE_FIELD_PATCHES[path]
        before = (await client.get(read_url, headers=tokens.headers)).json()
        for body in ({field: None}, {}):
            response = await client.patch(url, json=body, headers=tokens.headers)
            assert response.status_code == 422, (url, body, response.text)
            assert error_locs(response.json()) == [["body", field]], (url, body)
        assert (await client.get(read_url, headers=tokens.headers)).json() == before, url


def test_every_patch_body_says_which_fields_null_clears(app: FastAPI) -> None:
    schemas = app.openapi()["components"]["schemas"]
    expected_nullable = {
        # null moves a todo to the inbox (list_id) and unassigns it (assignee_id)
        "TodoUpdate": {"description", "due_date", "list_id", "assignee_id"},
        "PostUpdate": set(),
        "CommentUpdate": set(),
        "UserUpdate": {"full_name"},
        "AdminUserUpdate": set(),
    }
    for name, fields in expected_nullable.items():
        properties = schemas[name]["properties"]
        assert {field for field, schema in properties.items() if nullable(schema)} == fields, name
        assert "required" not in schemas[name], name  # every field may be left out


async def test_null_on_a_field_that_cannot_be_empty_is_a_422_and_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, resources: tuple[dict[str, str], Tokens]
) -> None:
    paths, tokens = resources
    schemas = app.openapi()["components"]["schemas"]
    for path, model in PATCH_BODIES.items():
        url = paths[path]
        # A comment is read in its post's list of comments.
        read_url = url.rsplit("/", 1)[0] if "/comments/" in url else url.replace("/admin/users/", "/users/")
        before = (await client.get(read_url, headers=tokens.headers)).json()
        for field, schema in schemas[model]["properties"].items():
            if nullable(schema):
                continue
            response = await client.patch(url, json={field: None}, headers=tokens.headers)

            assert response.status_code == 422, (url, field, response.text)
            assert error_locs(response.json()) == [["body", field]], (url, field)
            assert response.json()["errors"][0]["type"] == "null_not_allowed"
        after = (await client.get(read_url, headers=tokens.headers)).json()
        assert after == before, url


async def test_null_clears_a_nullable_field_and_what_is_left_out_stays(
    client: httpx.AsyncClient, resources: tuple[dict[str, str], Tokens]
) -> None:
    paths, tokens = resources
    url = paths["/api/v1/todos/{todo_id}"]

    cleared = await client.patch(url, json={"description": None, "due_date": None}, headers=tokens.headers)
    untouched = await client.patch(url, json={}, headers=tokens.headers)

    assert cleared.status_code == 200, cleared.text
    assert (cleared.json()["description"], cleared.json()["due_date"]) == (None, None)
    assert (cleared.json()["title"], cleared.json()["priority"]) == ("Write", "high")
    assert untouched.json() == {**cleared.json(), "updated_at": untouched.json()["updated_at"]}
    named = await client.patch("/api/v1/users/me", json={"full_name": "Ada"}, headers=tokens.headers)
    unnamed = await client.patch("/api/v1/users/me", json={"full_name": None}, headers=tokens.headers)
    assert (named.json()["full_name"], unnamed.json()["full_name"]) == ("Ada", None)


async def test_a_date_out_of_range_says_so_without_a_python_value(
    client: httpx.AsyncClient, resources: tuple[dict[str, str], Tokens]
) -> None:
    _, tokens = resources
    response = await client.post(
        "/api/v1/todos", json={"title": "Old", "due_date": "1899-12-31"}, headers=tokens.headers
    )

    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["loc"] == ["body", "due_date"]
    assert "1900-01-01" in error["msg"]
    assert "datetime" not in response.text


def test_the_schema_uses_only_json_schema_keywords(app: FastAPI) -> None:
    found: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            found.extend(f"{where}.{key}" for key in node if key in NOT_JSON_SCHEMA)
            for key, value in node.items():
                if key not in ("properties", "examples"):
                    walk(value, f"{where}.{key}")
                else:
                    for name, child in value.items() if isinstance(value, dict) else ():
                        walk(child, f"{where}.{name}")

    walk(app.openapi(), "")
    assert found == []


async def test_an_integer_field_takes_only_integers(app: FastAPI, client: httpx.AsyncClient) -> None:
    """JSON true and "7" are not integers (lax coercion would take them); 7.0 is, to JSON Schema."""
    tokens = await login(client, await create_user(app))
    for wrong in (True, "7", 7.5):
        todo = await client.post("/api/v1/todos", json={"title": "T", "list_id": wrong}, headers=tokens.headers)
        assert todo.status_code == 422, (wrong, todo.text)
        assert todo.json()["errors"][0]["type"] in {"int_type", "int_from_float"}
        token = await client.post(
            "/api/v1/tokens",
            json={"name": "ci", "scopes": ["todos:read"], "expires_in_days": wrong},
            headers=tokens.headers,
        )
        assert token.status_code == 422, (wrong, token.text)
        assert error_locs(token.json()) == [["body", "expires_in_days"]]
    made = await client.post(
        "/api/v1/tokens", json={"name": "ci", "scopes": ["todos:read"], "expires_in_days": 7.0}, headers=tokens.headers
    )
    assert made.status_code == 201, made.text
    assert made.json()["expires_at"] is not None
