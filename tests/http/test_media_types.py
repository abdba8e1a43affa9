"""A body of another media type than the operation takes is a 415 that names the right one."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from keel.models import Role
from tests.factories import assert_problem, signed_in

HTTP_METHODS = {"post", "patch", "put", "delete"}


def operations_with_a_body(app: FastAPI, ids: dict[str, int]) -> list[tuple[str, str, str]]:
    """(method, path with its ids filled in, the media type the schema says it takes)."""
    found = []
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS and "requestBody" in operation:
                (media_type,) = operation["requestBody"]["content"]
                found.append((method.upper(), path.format(**ids), media_type))
    return found


async def test_every_operation_with_a_body_refuses_other_media_types_with_415(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # An administrator, and things of theirs to name: the checks of who may do what come first.
    account, tokens = await signed_in(app, client, role=Role.ADMIN)
    todo = await client.post("/api/v1/todos", json={"title": "x"}, headers=tokens.headers)
    post = await client.post("/api/v1/posts", json={"title": "x", "content": "x"}, headers=tokens.headers)
    # (No passkey is needed: the body is refused before the passkey is looked up.)
    shared = await client.post("/api/v1/lists", json={"name": "x"}, headers=tokens.headers)
    ids = {
        "todo_id": todo.json()["id"],
        "post_id": post.json()["id"],
        "list_id": shared.json()["id"],
        "user_id": account.id,
        "passkey_id": 1,
        "comment_id": 1,  # (refused before the comment is looked up, as the passkey)
    }
    operations = operations_with_a_body(app, ids)
    assert len(operations) > 10
    for method, path, media_type in operations:
        for sent in ("text/plain", None, "application/xml"):
            headers = {**tokens.headers, **({"Content-Type": sent} if sent else {})}
            response = await client.request(method, path, content=b'{"title": "x"}', headers=headers)

            assert_problem(response, 415, "unsupported_media_type")
            accept = "Accept-Post" if method == "POST" else "Accept-Patch"
            assert response.headers[accept] == media_type, (method, path)
            assert media_type in str(response.json()["detail"])


@pytest.mark.parametrize(
    ("path", "content", "media_type"),
    [
        ("/api/v1/auth/login", b'{"username": "a@example.com", "password": "x"}', "application/json"),
        (
            "/api/v1/auth/register",
            b"email=a%40example.com&username=abc&password=x",
            "application/x-www-form-urlencoded",
        ),
    ],
)
async def test_json_to_the_form_and_a_form_to_json_are_415(
    client: httpx.AsyncClient, path: str, content: bytes, media_type: str
) -> None:
    response = await client.post(path, content=content, headers={"Content-Type": media_type})
    assert_problem(response, 415, "unsupported_media_type")


async def test_a_json_type_with_parameters_or_a_suffix_is_json(client: httpx.AsyncClient) -> None:
    for media_type in ("application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"):
        response = await client.post(
            "/api/v1/auth/register", content=b'{"email": "nope"}', headers={"Content-Type": media_type}
        )
        assert_problem(response, 422, "validation_error")


async def test_the_schema_documents_415_wherever_a_body_is_taken(app: FastAPI) -> None:
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            if "requestBody" in operation:
                assert "415" in operation["responses"], (method, path)


@pytest.mark.parametrize("form", [{"username": "", "password": ""}, {}], ids=["sent-empty", "left-out"])
async def test_the_login_form_names_each_empty_field_once_without_calling_it_only_missing(
    client: httpx.AsyncClient, form: dict[str, str]
) -> None:
    response = await client.post("/api/v1/auth/login", data=form)

    assert_problem(response, 422, "validation_error")
    errors = response.json()["errors"]
    assert [error["loc"] for error in errors] == [["body", "username"], ["body", "password"]]
    assert {error["msg"] for error in errors} == {"Required, and must not be empty."}
