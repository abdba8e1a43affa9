"""The schema as client generators read it: hand-chosen names, declared headers, enums with names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from keel.core.config import Settings
from keel.http.openapi import OPERATION_IDS, operation_id
from keel.main import create_app
from keel.schemas.todo import TodoSort
from tests.conftest import base_settings

HTTP_METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings: Settings = base_settings(Path(tmp_path_factory.mktemp("openapi")))
    return create_app(settings).openapi()


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def test_every_operation_has_its_hand_chosen_id_named_tag_then_verb(schema: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(schema)]

    assert sorted(ids) == sorted(OPERATION_IDS.values())  # each chosen once, and nothing made up
    for _, _, operation in operations(schema):
        assert re.fullmatch(r"[a-z]+(_[a-z]+)+", operation["operationId"]), operation["operationId"]
        assert operation["operationId"].startswith(f"{operation['tags'][0]}_"), operation["operationId"]


def test_the_todo_routes_read_naturally(schema: dict[str, Any]) -> None:
    todos = {(method, path): operation["operationId"] for method, path, operation in operations(schema)}
    assert todos[("GET", "/api/v1/todos")] == "todos_list"
    assert todos[("POST", "/api/v1/todos")] == "todos_create"
    assert todos[("GET", "/api/v1/todos/{todo_id}")] == "todos_get"
    assert todos[("PATCH", "/api/v1/todos/{todo_id}")] == "todos_update"
    assert todos[("DELETE", "/api/v1/todos/{todo_id}")] == "todos_delete"


def test_a_route_without_a_chosen_id_stops_the_app_from_starting() -> None:
    async def export_everything() -> None: ...

    app = FastAPI(generate_unique_id_function=operation_id)
    with pytest.raises(LookupError, match="export_everything"):
        app.add_api_route("/api/v1/export", export_everything, methods=["GET"])


def test_component_names_carry_no_generated_suffixes(schema: dict[str, Any]) -> None:
    names = set(schema["components"]["schemas"])
    assert not [name for name in names if "_" in name], names
    assert {"LoginForm", "TodoReadPage", "PostSummaryPage", "TagCountPage", "AdminUserReadPage"} <= names
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', str(schema).replace("'", '"'))
    assert set(refs) <= names  # every reference still points at a component


def test_the_sort_order_has_member_names_a_generator_can_use(schema: dict[str, Any]) -> None:
    sort = schema["components"]["schemas"]["TodoSort"]
    assert sort["enum"] == [member.value for member in TodoSort]
    assert sort["x-enum-varnames"] == [
        "CREATED_AT",
        "CREATED_AT_DESC",
        "DUE_DATE",
        "DUE_DATE_DESC",
        "PRIORITY",
        "PRIORITY_DESC",
    ]


def test_every_answer_declares_the_headers_keel_sets(schema: dict[str, Any]) -> None:
    for method, path, operation in operations(schema):
        for status, response in operation["responses"].items():
            headers = response.get("headers", {})
            assert "X-Request-ID" in headers, (method, path, status)
            if status in ("429", "503"):
                assert headers["Retry-After"]["schema"]["type"] == "integer", (method, path, status)
    creates = {path: operation for method, path, operation in operations(schema) if method == "POST"}
    for path in ("/api/v1/todos", "/api/v1/posts"):
        assert "Idempotent-Replayed" in creates[path]["responses"]["201"]["headers"], path
    assert "Idempotent-Replayed" not in creates["/api/v1/auth/register"]["responses"]["202"]["headers"]


def test_every_answer_of_a_rate_limited_operation_declares_the_ratelimit_fields(schema: dict[str, Any]) -> None:
    declared = set()
    for method, path, operation in operations(schema):
        answers = {
            status
            for status, response in operation["responses"].items()
            if {"RateLimit-Policy", "RateLimit"} <= response["headers"].keys()
        }
        if answers:
            assert answers == set(operation["responses"]), (method, path)
            declared.add((method, path))

    # The operations whose dependencies count the request against a limit; not the password change,
    # which only counts wrong passwords against the account's lock.
    assert declared == {
        ("POST", "/api/v1/auth/register"),
        ("POST", "/api/v1/auth/login"),
        ("GET", "/api/v1/auth/oidc/{provider}/callback"),
        ("POST", "/api/v1/auth/passkeys/authenticate"),
        ("POST", "/api/v1/auth/refresh"),
        ("POST", "/api/v1/auth/verify-email/request"),
        ("POST", "/api/v1/auth/password-reset/request"),
        ("POST", "/api/v1/auth/password-check"),
        ("POST", "/api/v1/auth/email-code/request"),
        ("POST", "/api/v1/auth/email-code/verify"),
        ("POST", "/api/v1/todos"),
        ("PATCH", "/api/v1/todos/{todo_id}"),
        ("DELETE", "/api/v1/todos/{todo_id}"),
        ("POST", "/api/v1/lists"),
        ("PATCH", "/api/v1/lists/{list_id}"),
        ("DELETE", "/api/v1/lists/{list_id}"),
        ("POST", "/api/v1/lists/{list_id}/members"),
        ("PATCH", "/api/v1/lists/{list_id}/members/{user_id}"),
        ("DELETE", "/api/v1/lists/{list_id}/members/{user_id}"),
        ("POST", "/api/v1/events/ticket"),
        ("POST", "/api/v1/posts"),
        ("PATCH", "/api/v1/posts/{post_id}"),
        ("DELETE", "/api/v1/posts/{post_id}"),
        ("POST", "/api/v1/posts/{post_id}/vote"),
        ("DELETE", "/api/v1/posts/{post_id}/vote"),
        ("POST", "/api/v1/posts/preview"),
        ("POST", "/api/v1/posts/{post_id}/comments"),
        ("PATCH", "/api/v1/posts/{post_id}/comments/{comment_id}"),
        ("DELETE", "/api/v1/posts/{post_id}/comments/{comment_id}"),
        ("PATCH", "/api/v1/users/me"),
        ("DELETE", "/api/v1/users/me"),
        ("POST", "/api/v1/tokens"),
        ("DELETE", "/api/v1/tokens/{token_id}"),
        ("GET", "/api/v1/auth/oidc/{provider}/authorize"),
        ("POST", "/api/v1/auth/identities/{provider}/link"),
        ("POST", "/api/v1/auth/passkeys/authenticate/options"),
        ("POST", "/api/v1/auth/passkeys/reauthenticate/options"),
        ("POST", "/api/v1/auth/passkeys/reauthenticate"),
    }


def test_a_create_links_to_what_can_be_done_with_what_it_made(schema: dict[str, Any]) -> None:
    by_id = {operation["operationId"]: (path, operation) for _, path, operation in operations(schema)}
    linked: dict[str, set[str]] = {}
    for _, _, operation in operations(schema):
        for response in operation["responses"].values():
            for link in response.get("links", {}).values():
                target_path, _ = by_id[link["operationId"]]
                for parameter, expression in link["parameters"].items():
                    assert f"{{{parameter}}}" in target_path, (link, target_path)
                    assert expression == "$response.body#/id"
                linked.setdefault(operation["operationId"], set()).add(link["operationId"])
    assert linked["todos_create"] == {"todos_get", "todos_update", "todos_delete"}
    assert linked["posts_create"] >= {"posts_get", "posts_update", "posts_delete"}


def test_every_operation_that_takes_a_token_declares_the_403_and_the_challenge(schema: dict[str, Any]) -> None:
    # Any bearer token may be a personal access token, refused here or short of a scope (403).
    secured = [(method, path, op) for method, path, op in operations(schema) if op.get("security")]
    assert secured
    for method, path, operation in secured:
        for status in ("401", "403"):
            assert "WWW-Authenticate" in operation["responses"][status]["headers"], (method, path, status)
    unsecured = [op for _, _, op in operations(schema) if not op.get("security")]
    assert all(
        "WWW-Authenticate" not in response.get("headers", {})
        for op in unsecured
        for response in op["responses"].values()
    )


def test_the_token_operations_and_their_shapes(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    components = schema["components"]["schemas"]
    created = paths["/api/v1/tokens"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    listed = paths["/api/v1/tokens"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]

    assert created == {"$ref": "#/components/schemas/AccessTokenCreated"}
    assert listed["items"] == {"$ref": "#/components/schemas/AccessTokenRead"}
    assert set(components["AccessTokenCreated"]["required"]) >= {"id", "name", "scopes", "token", "created_at"}
    assert "token" not in components["AccessTokenRead"]["properties"]
    assert set(components["Scope"]["enum"]) == {
        "profile:read",
        "todos:read",
        "todos:write",
        "posts:read",
        "posts:write",
        "lists:read",
        "lists:write",
    }
    assert "404" in paths["/api/v1/tokens/{token_id}"]["delete"]["responses"]
    assert "422" in paths["/api/v1/tokens"]["post"]["responses"]


@pytest.mark.parametrize("allowed", [False, True])
def test_a_token_that_never_expires_is_offered_only_where_the_server_makes_one(allowed: bool, tmp_path: Path) -> None:
    app = create_app(base_settings(tmp_path, personal_tokens_allow_no_expiry=allowed))
    field = app.openapi()["components"]["schemas"]["AccessTokenCreate"]["properties"]["expires_in_days"]

    variants = field.get("anyOf", [field])
    assert ({"type": "null"} in variants) is allowed
    assert {"type": "integer", "minimum": 1, "maximum": 365} in [
        {key: variant[key] for key in ("type", "minimum", "maximum") if key in variant} for variant in variants
    ]
