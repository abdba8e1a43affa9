"""The Todos API: a private list per user, with filters, search, sorting and pagination."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI
from sqlmodel import col, select

from keel.core.db import Database
from keel.models import Role, Todo
from tests.factories import Tokens, assert_problem, create_user, error_locs, signed_in, utc_timestamp

TODOS = "/api/v1/todos"
TODO_READ_FIELDS = {
    "id",
    "title",
    "description",
    "completed",
    "priority",
    "due_date",
    "created_at",
    "updated_at",
    "owner_id",
    "list_id",
    "labels",
    "assignee_id",
}
INVALID_IDS = ["0", "-1", "abc", "1.5", str(2**31)]
MISSING_IDS = [987654, 2**31 - 1]


def todo_url(todo_id: int | str) -> str:
    return f"{TODOS}/{todo_id}"


async def create_todo(client: httpx.AsyncClient, tokens: Tokens, **fields: Any) -> dict[str, Any]:
    response = await client.post(TODOS, json={"title": "A todo", **fields}, headers=tokens.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def read_todo(client: httpx.AsyncClient, tokens: Tokens, todo_id: int) -> dict[str, Any]:
    response = await client.get(todo_url(todo_id), headers=tokens.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def patch_todo(client: httpx.AsyncClient, tokens: Tokens, todo_id: int, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.patch(todo_url(todo_id), json=body, headers=tokens.headers)
    assert response.status_code == 200, response.text
    updated: dict[str, Any] = response.json()
    return updated


async def list_todos(client: httpx.AsyncClient, tokens: Tokens, **params: Any) -> dict[str, Any]:
    response = await client.get(TODOS, params=params, headers=tokens.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"items", "total", "limit", "offset"}
    return body


def titles(page: dict[str, Any]) -> list[str]:
    return [item["title"] for item in page["items"]]


def ids(page: dict[str, Any]) -> list[int]:
    return [item["id"] for item in page["items"]]


async def stored_todos(app: FastAPI) -> list[Todo]:
    database: Database = app.state.database
    async with database.session() as session:
        return list(await session.exec(select(Todo).order_by(col(Todo.id))))


def error_types(problem: dict[str, object]) -> list[object]:
    errors = problem["errors"]
    assert isinstance(errors, list)
    return [error["type"] for error in errors]


def without_request_details(problem: dict[str, object]) -> dict[str, object]:
    """The problem minus what names this particular request (its id and path)."""
    return {key: value for key, value in problem.items() if key not in {"request_id", "instance"}}


class TestCreateTodo:
    async def test_returns_201_with_every_field(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account, tokens = await signed_in(app, client)
        before = datetime.now(UTC)

        response = await client.post(
            TODOS,
            json={
                "title": "Water the plants",
                "description": "Both ferns",
                "due_date": "2030-06-15",
                "priority": "high",
            },
            headers=tokens.headers,
        )

        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == TODO_READ_FIELDS
        assert isinstance(body["id"], int)
        assert body["id"] >= 1
        assert body["title"] == "Water the plants"
        assert body["description"] == "Both ferns"
        assert body["completed"] is False
        assert body["priority"] == "high"
        assert body["due_date"] == "2030-06-15"
        assert body["owner_id"] == account.id
        created_at = utc_timestamp(body["created_at"])
        updated_at = utc_timestamp(body["updated_at"])
        assert before - timedelta(seconds=1) <= created_at <= datetime.now(UTC)
        assert created_at <= updated_at <= datetime.now(UTC)
        # What was returned is what was stored.
        assert await read_todo(client, tokens, body["id"]) == body

    async def test_defaults(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)

        body = await create_todo(client, tokens, title="Only a title")

        assert body["title"] == "Only a title"
        assert body["completed"] is False
        assert body["priority"] == "normal"
        assert body["description"] is None
        assert body["due_date"] is None
        assert await read_todo(client, tokens, body["id"]) == body

    @pytest.mark.parametrize("path", [TODOS, f"{TODOS}/"], ids=["no-slash", "trailing-slash"])
    async def test_both_paths_create(self, app: FastAPI, client: httpx.AsyncClient, path: str) -> None:
        _, tokens = await signed_in(app, client)

        response = await client.post(path, json={"title": "Either way"}, headers=tokens.headers)

        assert response.status_code == 201, response.text
        assert (await list_todos(client, tokens))["items"] == [response.json()]

    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            ({"title": "t" * 200}, {"title": "t" * 200}),
            ({"title": "x"}, {"title": "x"}),
            ({"title": "é" * 200}, {"title": "é" * 200}),
            ({"description": "d" * 5000}, {"description": "d" * 5000}),
            ({"description": "ü" * 5000}, {"description": "ü" * 5000}),
            ({"description": None}, {"description": None}),
            ({"priority": "low"}, {"priority": "low"}),
            ({"priority": "normal"}, {"priority": "normal"}),
            ({"priority": "high"}, {"priority": "high"}),
            ({"due_date": "1900-01-01"}, {"due_date": "1900-01-01"}),
            ({"due_date": "2024-02-29"}, {"due_date": "2024-02-29"}),
            ({"due_date": "9999-12-31"}, {"due_date": "9999-12-31"}),
            ({"due_date": None}, {"due_date": None}),
        ],
        ids=[
            "title-200",
            "title-1",
            "title-200-non-ascii",
            "description-5000",
            "description-5000-non-ascii",
            "description-null",
            "priority-low",
            "priority-normal",
            "priority-high",
            "due-date-earliest",
            "due-date-leap-day",
            "due-date-latest",
            "due-date-null",
        ],
    )
    async def test_valid_edges_are_stored(
        self, app: FastAPI, client: httpx.AsyncClient, fields: dict[str, Any], expected: dict[str, Any]
    ) -> None:
        _, tokens = await signed_in(app, client)

        body = await create_todo(client, tokens, **fields)

        assert {key: body[key] for key in expected} == expected
        stored = await read_todo(client, tokens, body["id"])
        assert {key: stored[key] for key in expected} == expected

    @pytest.mark.parametrize(
        ("payload", "loc"),
        [
            ({}, ["body", "title"]),
            ({"description": "no title"}, ["body", "title"]),
            ({"title": None}, ["body", "title"]),
            ({"title": ""}, ["body", "title"]),
            ({"title": "   "}, ["body", "title"]),
            ({"title": "\t\n "}, ["body", "title"]),
            ({"title": "t" * 201}, ["body", "title"]),
            ({"title": 42}, ["body", "title"]),
            ({"title": "ok", "description": "d" * 5001}, ["body", "description"]),
            ({"title": "ok", "priority": "urgent"}, ["body", "priority"]),
            ({"title": "ok", "priority": "HIGH"}, ["body", "priority"]),
            ({"title": "ok", "priority": ""}, ["body", "priority"]),
            ({"title": "ok", "priority": 2}, ["body", "priority"]),
            ({"title": "ok", "priority": None}, ["body", "priority"]),
            ({"title": "ok", "due_date": "not-a-date"}, ["body", "due_date"]),
            ({"title": "ok", "due_date": "2023-02-29"}, ["body", "due_date"]),
            ({"title": "ok", "due_date": "2024-13-01"}, ["body", "due_date"]),
            ({"title": "ok", "due_date": "15/06/2030"}, ["body", "due_date"]),
            ({"title": "ok", "due_date": "1899-12-31"}, ["body", "due_date"]),
            # Pydantic alone reads these as Unix timestamps; the schema says a YYYY-MM-DD string.
            ({"title": "ok", "due_date": 0}, ["body", "due_date"]),
            ({"title": "ok", "due_date": "1700000000"}, ["body", "due_date"]),
            ({"title": "ok", "due_date": "2030-06-15T00:00:00"}, ["body", "due_date"]),
        ],
        ids=[
            "title-missing",
            "only-description",
            "title-null",
            "title-empty",
            "title-spaces",
            "title-whitespace",
            "title-201",
            "title-integer",
            "description-5001",
            "priority-unknown",
            "priority-upper-case",
            "priority-empty",
            "priority-integer",
            "priority-null",
            "due-date-garbage",
            "due-date-not-a-leap-year",
            "due-date-month-13",
            "due-date-other-format",
            "due-date-before-1900",
            "due-date-timestamp",
            "due-date-timestamp-text",
            "due-date-with-time",
        ],
    )
    async def test_invalid_input_is_422_and_creates_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, payload: dict[str, Any], loc: list[str]
    ) -> None:
        _, tokens = await signed_in(app, client)

        response = await client.post(TODOS, json=payload, headers=tokens.headers)

        body = assert_problem(response, 422, "validation_error")
        assert error_locs(body) == [loc], body
        assert await stored_todos(app) == []

    @pytest.mark.parametrize(("due_date", "valid"), [("1899-12-31", False), ("1900-01-01", True), ("9999-12-31", True)])
    async def test_the_schema_states_the_due_date_range(
        self, app: FastAPI, client: httpx.AsyncClient, due_date: str, valid: bool
    ) -> None:
        # JSON Schema has no bounds for dates, so a pattern states them; it and the API must agree.
        field = app.openapi()["components"]["schemas"]["TodoCreate"]["properties"]["due_date"]
        [text] = [variant for variant in field["anyOf"] if variant.get("type") == "string"]
        _, tokens = await signed_in(app, client)

        response = await client.post(TODOS, json={"title": "t", "due_date": due_date}, headers=tokens.headers)

        assert (re.search(text["pattern"], due_date) is not None) is valid
        assert response.status_code == (201 if valid else 422), response.text

    @pytest.mark.parametrize(
        ("payload", "loc"),
        [
            ({"title": "nul\x00byte"}, ["body", "title"]),
            ({"title": "\x00"}, ["body", "title"]),
            ({"title": "ok", "description": "nul\x00byte"}, ["body", "description"]),
        ],
        ids=["title", "title-only-nul", "description"],
    )
    async def test_nul_character_is_422_on_every_backend(
        self, app: FastAPI, client: httpx.AsyncClient, payload: dict[str, Any], loc: list[str]
    ) -> None:
        # PostgreSQL cannot store U+0000 in text, so it must be refused as input, never a 500.
        _, tokens = await signed_in(app, client)

        response = await client.post(TODOS, json=payload, headers=tokens.headers)

        body = assert_problem(response, 422, "validation_error")
        assert error_locs(body) == [loc], body
        assert await stored_todos(app) == []

    @pytest.mark.parametrize(
        "extra",
        [
            {"owner_id": 1},
            {"id": 12345},
            {"completed": True},
            {"created_at": "2020-01-01T00:00:00+00:00"},
            {"updated_at": "2020-01-01T00:00:00+00:00"},
            {"tags": ["x"]},
        ],
        ids=["owner_id", "id", "completed", "created_at", "updated_at", "tags"],
    )
    async def test_unknown_fields_are_422_and_create_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, extra: dict[str, Any]
    ) -> None:
        victim = await create_user(app)
        _, tokens = await signed_in(app, client)
        if "owner_id" in extra:
            extra = {"owner_id": victim.id}

        response = await client.post(TODOS, json={"title": "Mass assignment", **extra}, headers=tokens.headers)

        body = assert_problem(response, 422, "validation_error")
        field = next(iter(extra))
        assert error_locs(body) == [["body", field]], body
        assert error_types(body) == ["extra_forbidden"], body
        assert await stored_todos(app) == []

    async def test_the_owner_is_always_the_caller(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        other = await create_user(app)
        account, tokens = await signed_in(app, client)

        body = await create_todo(client, tokens, title="Mine")

        assert body["owner_id"] == account.id != other.id
        assert [(todo.id, todo.owner_id) for todo in await stored_todos(app)] == [(body["id"], account.id)]

    @pytest.mark.parametrize(
        "headers",
        [{}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
        ids=["no-token", "garbage-token", "basic-auth"],
    )
    async def test_anonymous_is_401_and_creates_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        await create_user(app)

        response = await client.post(TODOS, json={"title": "Nobody's"}, headers=headers)

        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert await stored_todos(app) == []


class TestReadTodo:
    async def test_owner_reads_their_todo(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        created = await create_todo(client, tokens, title="Read me", description="Please", priority="low")

        response = await client.get(todo_url(created["id"]), headers=tokens.headers)

        assert response.status_code == 200, response.text
        assert set(response.json()) == TODO_READ_FIELDS
        assert response.json() == created

    @pytest.mark.parametrize("todo_id", MISSING_IDS)
    async def test_missing_id_is_404(self, app: FastAPI, client: httpx.AsyncClient, todo_id: int) -> None:
        _, tokens = await signed_in(app, client)
        await create_todo(client, tokens)

        assert_problem(await client.get(todo_url(todo_id), headers=tokens.headers), 404, "todo_not_found")


async def original_todo(client: httpx.AsyncClient, tokens: Tokens) -> dict[str, Any]:
    """A todo with every field set away from its default, so a reset to a default would show."""
    created = await create_todo(
        client,
        tokens,
        title="Original title",
        description="Original description",
        priority="low",
        due_date="2030-06-15",
    )
    return await patch_todo(client, tokens, created["id"], {"completed": True})


class TestUpdateTodo:
    @pytest.mark.parametrize(
        ("change", "expected"),
        [
            ({"title": "New title"}, {"title": "New title"}),
            ({"description": "New description"}, {"description": "New description"}),
            ({"completed": False}, {"completed": False}),
            ({"priority": "high"}, {"priority": "high"}),
            ({"due_date": "2031-02-03"}, {"due_date": "2031-02-03"}),
            ({"description": None}, {"description": None}),
            ({"due_date": None}, {"due_date": None}),
            ({}, {}),
            (
                {"title": "All", "description": None, "completed": False, "priority": "normal", "due_date": None},
                {"title": "All", "description": None, "completed": False, "priority": "normal", "due_date": None},
            ),
            ({"title": "t" * 200, "description": "d" * 5000}, {"title": "t" * 200, "description": "d" * 5000}),
        ],
        ids=[
            "title",
            "description",
            "completed",
            "priority",
            "due-date",
            "null-description-clears",
            "null-due-date-clears",
            "empty-body",
            "every-field",
            "longest-values",
        ],
    )
    async def test_applies_only_the_fields_sent(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        change: dict[str, Any],
        expected: dict[str, Any],
    ) -> None:
        _, tokens = await signed_in(app, client)
        before = await original_todo(client, tokens)
        assert before["completed"] is True

        body = await patch_todo(client, tokens, before["id"], change)

        assert set(body) == TODO_READ_FIELDS
        unchanged = ("id", "owner_id", "created_at")
        assert {key: body[key] for key in unchanged} == {key: before[key] for key in unchanged}
        wanted = {**before, **expected}
        fields = ("title", "description", "completed", "priority", "due_date")
        assert {key: body[key] for key in fields} == {key: wanted[key] for key in fields}
        assert await read_todo(client, tokens, before["id"]) == body

    async def test_updated_at_advances_and_created_at_does_not(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        _, tokens = await signed_in(app, client)
        before = await create_todo(client, tokens)
        clock.shift(timedelta(minutes=5))

        body = await patch_todo(client, tokens, before["id"], {"completed": True})

        assert body["created_at"] == before["created_at"]
        previous = utc_timestamp(before["updated_at"])
        assert utc_timestamp(body["updated_at"]) >= previous + timedelta(minutes=5)
        assert await read_todo(client, tokens, before["id"]) == body

    @pytest.mark.parametrize(
        ("payload", "loc", "error_type"),
        [
            ({"title": ""}, ["body", "title"], None),
            ({"title": "   "}, ["body", "title"], None),
            ({"title": "t" * 201}, ["body", "title"], None),
            ({"description": "d" * 5001}, ["body", "description"], None),
            ({"completed": "maybe"}, ["body", "completed"], None),
            # JSON booleans only: 1, 0 and "true" used to be coerced.
            ({"completed": 1}, ["body", "completed"], "bool_type"),
            ({"completed": "true"}, ["body", "completed"], "bool_type"),
            ({"due_date": 0}, ["body", "due_date"], None),
            ({"priority": "urgent"}, ["body", "priority"], None),
            ({"due_date": "2024-13-01"}, ["body", "due_date"], None),
            ({"due_date": "tomorrow"}, ["body", "due_date"], None),
            ({"title": "nul\x00byte"}, ["body", "title"], None),
            ({"description": "nul\x00byte"}, ["body", "description"], None),
            ({"title": "Changed", "owner_id": 1}, ["body", "owner_id"], "extra_forbidden"),
            ({"title": "Changed", "id": 999}, ["body", "id"], "extra_forbidden"),
            ({"title": "Changed", "created_at": "2020-01-01T00:00:00Z"}, ["body", "created_at"], "extra_forbidden"),
            ({"title": "Changed", "done": True}, ["body", "done"], "extra_forbidden"),
        ],
        ids=[
            "title-empty",
            "title-blank",
            "title-201",
            "description-5001",
            "completed-not-bool",
            "completed-integer",
            "completed-string",
            "due-date-timestamp",
            "priority-unknown",
            "due-date-month-13",
            "due-date-garbage",
            "title-nul",
            "description-nul",
            "owner_id",
            "id",
            "created_at",
            "unknown-done",
        ],
    )
    async def test_invalid_input_is_422_and_changes_nothing(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        payload: dict[str, Any],
        loc: list[str],
        error_type: str | None,
    ) -> None:
        other = await create_user(app)
        _, tokens = await signed_in(app, client)
        before = await original_todo(client, tokens)
        if "owner_id" in payload:
            payload = {**payload, "owner_id": other.id}

        response = await client.patch(todo_url(before["id"]), json=payload, headers=tokens.headers)

        body = assert_problem(response, 422, "validation_error")
        assert error_locs(body) == [loc], body
        if error_type is not None:
            assert error_types(body) == [error_type], body
        assert await read_todo(client, tokens, before["id"]) == before

    @pytest.mark.parametrize("todo_id", MISSING_IDS)
    async def test_missing_id_is_404(self, app: FastAPI, client: httpx.AsyncClient, todo_id: int) -> None:
        _, tokens = await signed_in(app, client)
        await create_todo(client, tokens)

        response = await client.patch(todo_url(todo_id), json={"title": "Ghost"}, headers=tokens.headers)

        assert_problem(response, 404, "todo_not_found")


class TestDeleteTodo:
    async def test_owner_deletes_their_todo(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        doomed = await create_todo(client, tokens, title="Doomed")
        kept = await create_todo(client, tokens, title="Kept")

        response = await client.delete(todo_url(doomed["id"]), headers=tokens.headers)

        assert response.status_code == 204, response.text
        assert response.content == b""
        assert_problem(await client.get(todo_url(doomed["id"]), headers=tokens.headers), 404, "todo_not_found")
        assert_problem(await client.delete(todo_url(doomed["id"]), headers=tokens.headers), 404, "todo_not_found")
        page = await list_todos(client, tokens)
        assert ids(page) == [kept["id"]]
        assert page["total"] == 1
        assert [todo.id for todo in await stored_todos(app)] == [kept["id"]]

    @pytest.mark.parametrize("todo_id", MISSING_IDS)
    async def test_missing_id_is_404(self, app: FastAPI, client: httpx.AsyncClient, todo_id: int) -> None:
        _, tokens = await signed_in(app, client)
        kept = await create_todo(client, tokens)

        assert_problem(await client.delete(todo_url(todo_id), headers=tokens.headers), 404, "todo_not_found")
        assert [todo.id for todo in await stored_todos(app)] == [kept["id"]]


class TestOwnership:
    @pytest.mark.parametrize(
        ("method", "body"),
        [("GET", None), ("PATCH", {"title": "Hijacked", "completed": True}), ("DELETE", None)],
        ids=["get", "patch", "delete"],
    )
    async def test_another_users_todo_is_404_exactly_like_a_missing_one(
        self, app: FastAPI, client: httpx.AsyncClient, method: str, body: dict[str, Any] | None
    ) -> None:
        _, owner_tokens = await signed_in(app, client)
        _, intruder_tokens = await signed_in(app, client)
        target = await create_todo(client, owner_tokens, title="Private", description="Secret plans")
        await create_todo(client, intruder_tokens, title="Intruder's own")
        missing_id = 987654

        foreign = await client.request(method, todo_url(target["id"]), json=body, headers=intruder_tokens.headers)
        missing = await client.request(method, todo_url(missing_id), json=body, headers=intruder_tokens.headers)

        foreign_problem = assert_problem(foreign, 404, "todo_not_found")
        missing_problem = assert_problem(missing, 404, "todo_not_found")
        assert without_request_details(foreign_problem) == without_request_details(missing_problem)
        assert "Secret plans" not in foreign.text
        assert "Private" not in foreign.text
        # Nothing changed for the owner.
        assert await read_todo(client, owner_tokens, target["id"]) == target
        assert ids(await list_todos(client, owner_tokens)) == [target["id"]]

    async def test_an_admin_cannot_see_someone_elses_todo_either(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, owner_tokens = await signed_in(app, client)
        _, admin_tokens = await signed_in(app, client, role=Role.ADMIN)
        target = await create_todo(client, owner_tokens)

        response = await client.get(todo_url(target["id"]), headers=admin_tokens.headers)

        assert_problem(response, 404, "todo_not_found")
        assert (await list_todos(client, admin_tokens))["total"] == 0

    async def test_the_list_holds_only_the_callers_todos(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, mine_tokens = await signed_in(app, client)
        _, other_tokens = await signed_in(app, client)
        theirs = [await create_todo(client, other_tokens, title=f"Theirs {n}") for n in range(3)]
        mine = [await create_todo(client, mine_tokens, title=f"Mine {n}") for n in range(2)]
        theirs.append(await create_todo(client, other_tokens, title="Theirs late"))

        page = await list_todos(client, mine_tokens, limit=100)

        assert page["total"] == 2
        assert sorted(ids(page)) == sorted(todo["id"] for todo in mine)
        assert not set(ids(page)) & {todo["id"] for todo in theirs}
        other_page = await list_todos(client, other_tokens, limit=100)
        assert other_page["total"] == 4
        assert sorted(ids(other_page)) == sorted(todo["id"] for todo in theirs)


class TestTodoIds:
    @pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
    @pytest.mark.parametrize("todo_id", INVALID_IDS)
    async def test_invalid_id_is_422(self, app: FastAPI, client: httpx.AsyncClient, method: str, todo_id: str) -> None:
        _, tokens = await signed_in(app, client)
        kept = await create_todo(client, tokens)
        body = {"title": "Changed"} if method == "PATCH" else None

        response = await client.request(method, todo_url(todo_id), json=body, headers=tokens.headers)

        problem = assert_problem(response, 422, "validation_error")
        assert error_locs(problem) == [["path", "todo_id"]], problem
        assert await read_todo(client, tokens, kept["id"]) == kept


class TestAnonymous:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", TODOS),
            ("GET", TODOS),
            ("GET", f"{TODOS}/"),
            ("GET", "{todo}"),
            ("PATCH", "{todo}"),
            ("DELETE", "{todo}"),
        ],
        ids=["create", "list", "list-slash", "read", "update", "delete"],
    )
    async def test_every_route_requires_a_token(
        self, app: FastAPI, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        _, tokens = await signed_in(app, client)
        todo = await create_todo(client, tokens)
        url = todo_url(todo["id"]) if path == "{todo}" else path
        body = {"title": "Anonymous"} if method in {"POST", "PATCH"} else None

        response = await client.request(method, url, json=body)

        assert_problem(response, 401, "not_authenticated")
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert await read_todo(client, tokens, todo["id"]) == todo
        assert (await list_todos(client, tokens))["total"] == 1


class TestFilterTodos:
    async def test_completed_filter(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        _, other_tokens = await signed_in(app, client)
        done = [await create_todo(client, tokens, title=f"Done {n}") for n in range(2)]
        open_ = [await create_todo(client, tokens, title=f"Open {n}") for n in range(3)]
        for todo in done:
            await patch_todo(client, tokens, todo["id"], {"completed": True})
        other = await create_todo(client, other_tokens, title="Other's done")
        await patch_todo(client, other_tokens, other["id"], {"completed": True})
        await create_todo(client, other_tokens, title="Other's open")

        completed = await list_todos(client, tokens, completed="true")
        pending = await list_todos(client, tokens, completed="false")
        everything = await list_todos(client, tokens)

        assert sorted(ids(completed)) == sorted(todo["id"] for todo in done)
        assert completed["total"] == 2
        assert all(item["completed"] is True for item in completed["items"])
        assert sorted(ids(pending)) == sorted(todo["id"] for todo in open_)
        assert pending["total"] == 3
        assert all(item["completed"] is False for item in pending["items"])
        assert everything["total"] == 5

    @pytest.mark.parametrize("value", ["maybe", "", "2"])
    async def test_invalid_completed_is_422(self, app: FastAPI, client: httpx.AsyncClient, value: str) -> None:
        _, tokens = await signed_in(app, client)

        response = await client.get(TODOS, params={"completed": value}, headers=tokens.headers)

        body = assert_problem(response, 422, "validation_error")
        assert error_locs(body) == [["query", "completed"]], body


# (title, description) of the todos that every search runs over.
SEARCHABLE: list[tuple[str, str | None]] = [
    ("Buy milk", None),
    ("Groceries", "oat MILK and bread"),
    ("100% done", None),
    ("Percentless", "nothing special"),
    ("a_b", None),
    ("ab", "axb"),
    ("back\\slash", None),
    ("Café crème", None),
    ("Rentrée à l'ÉCOLE", None),
]


class TestSearchTodos:
    @pytest.mark.parametrize(
        ("q", "expected"),
        [
            ("milk", {"Buy milk", "Groceries"}),
            ("MILK", {"Buy milk", "Groceries"}),
            ("mIlK", {"Buy milk", "Groceries"}),
            ("oat milk", {"Groceries"}),
            ("groceries", {"Groceries"}),
            ("%", {"100% done"}),
            ("0%", {"100% done"}),
            ("100%", {"100% done"}),
            ("_", {"a_b"}),
            ("a_b", {"a_b"}),
            ("A_B", {"a_b"}),
            ("a%b", set()),
            ("\\", {"back\\slash"}),
            ("k\\s", {"back\\slash"}),
            ("crème", {"Café crème"}),
            ("CRÈME", {"Café crème"}),
            ("école", {"Rentrée à l'ÉCOLE"}),
            ("zzz", set()),
        ],
        ids=[
            "lower",
            "upper",
            "mixed-case",
            "in-description-only",
            "title-case-insensitive",
            "percent",
            "percent-suffix",
            "percent-whole",
            "underscore",
            "underscore-word",
            "underscore-upper",
            "percent-is-no-wildcard",
            "backslash",
            "backslash-inside",
            "non-ascii",
            "non-ascii-upper-finds-lower",
            "non-ascii-lower-finds-upper",
            "no-match",
        ],
    )
    async def test_q_matches_title_or_description_literally(
        self, app: FastAPI, client: httpx.AsyncClient, q: str, expected: set[str]
    ) -> None:
        _, tokens = await signed_in(app, client)
        _, other_tokens = await signed_in(app, client)
        for title, description in SEARCHABLE:
            await create_todo(client, tokens, title=title, description=description)
            # Another user's matching todos never show up.
            await create_todo(client, other_tokens, title=title, description=description)

        page = await list_todos(client, tokens, q=q, limit=100)

        assert set(titles(page)) == expected
        assert len(page["items"]) == len(expected)
        assert page["total"] == len(expected)

    async def test_q_and_completed_combine(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        done = await create_todo(client, tokens, title="Milk, done")
        await patch_todo(client, tokens, done["id"], {"completed": True})
        pending = await create_todo(client, tokens, title="Milk, pending")
        await create_todo(client, tokens, title="Bread, pending")

        assert ids(await list_todos(client, tokens, q="milk", completed="true")) == [done["id"]]
        assert ids(await list_todos(client, tokens, q="milk", completed="false")) == [pending["id"]]

    async def test_q_of_200_characters_is_accepted(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        match = await create_todo(client, tokens, title="q" * 200)
        await create_todo(client, tokens, title="q" * 199)

        page = await list_todos(client, tokens, q="Q" * 200)

        assert ids(page) == [match["id"]]
        assert page["total"] == 1


# The same eight todos for every sort: (title, priority, due_date), created in three batches that
# each share one created_at instant, so every order has ties that only the id can break.
SORT_BATCHES: list[list[tuple[str, str, str | None]]] = [
    [("a1", "low", "2030-05-01"), ("a2", "high", None), ("a3", "normal", "2030-01-01")],
    [("b1", "high", "2030-05-01"), ("b2", "low", None)],
    [("c1", "normal", "2030-03-01"), ("c2", "high", "2030-01-01"), ("c3", "normal", None)],
]
SORTED_TITLES = {
    "created_at": ["a1", "a2", "a3", "b1", "b2", "c1", "c2", "c3"],
    "-created_at": ["c3", "c2", "c1", "b2", "b1", "a3", "a2", "a1"],
    "due_date": ["a3", "c2", "c1", "a1", "b1", "a2", "b2", "c3"],
    "-due_date": ["b1", "a1", "c1", "c2", "a3", "c3", "b2", "a2"],
    "priority": ["a1", "b2", "a3", "c1", "c3", "a2", "b1", "c2"],
    "-priority": ["c2", "b1", "a2", "c3", "c1", "a3", "b2", "a1"],
}


class TestSortTodos:
    async def make_todos(self, app: FastAPI, client: httpx.AsyncClient, traveller: time_machine.Traveller) -> Tokens:
        _, tokens = await signed_in(app, client)
        _, other_tokens = await signed_in(app, client)
        for batch in SORT_BATCHES:
            traveller.shift(timedelta(seconds=1))
            for title, priority, due_date in batch:
                await create_todo(client, tokens, title=title, priority=priority, due_date=due_date)
                await create_todo(client, other_tokens, title=f"other {title}", priority=priority, due_date=due_date)
        return tokens

    @pytest.mark.parametrize(("sort", "expected"), list(SORTED_TITLES.items()), ids=list(SORTED_TITLES))
    async def test_each_sort_order_with_ties_broken_by_id(
        self, app: FastAPI, client: httpx.AsyncClient, sort: str, expected: list[str]
    ) -> None:
        with time_machine.travel(datetime.now(UTC), tick=False) as traveller:
            tokens = await self.make_todos(app, client, traveller)

            page = await list_todos(client, tokens, sort=sort)
            # Page by page, the same order: nothing skipped or repeated across page boundaries.
            paged: list[str] = []
            for offset in range(0, 8, 3):
                paged += titles(await list_todos(client, tokens, sort=sort, limit=3, offset=offset))

        assert titles(page) == expected
        assert page["total"] == 8
        assert paged == expected

    async def test_the_default_is_newest_first(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        with time_machine.travel(datetime.now(UTC), tick=False) as traveller:
            tokens = await self.make_todos(app, client, traveller)

            page = await list_todos(client, tokens)

        assert titles(page) == SORTED_TITLES["-created_at"]

    async def test_sort_follows_real_creation_times(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        created = [await create_todo(client, tokens, title=f"t{n}") for n in range(4)]

        oldest_first = await list_todos(client, tokens, sort="created_at")
        newest_first = await list_todos(client, tokens, sort="-created_at")

        assert ids(oldest_first) == [todo["id"] for todo in created]
        assert ids(newest_first) == [todo["id"] for todo in reversed(created)]
        stamps = [utc_timestamp(item["created_at"]) for item in oldest_first["items"]]
        assert stamps == sorted(stamps)

    async def test_sort_by_due_date_reflects_updates(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        first = await create_todo(client, tokens, title="first", due_date="2030-01-01")
        second = await create_todo(client, tokens, title="second", due_date="2030-02-01")
        await patch_todo(client, tokens, first["id"], {"due_date": None})

        assert ids(await list_todos(client, tokens, sort="due_date")) == [second["id"], first["id"]]
        assert ids(await list_todos(client, tokens, sort="-due_date")) == [second["id"], first["id"]]
        assert date.fromisoformat((await read_todo(client, tokens, second["id"]))["due_date"]) == date(2030, 2, 1)


class TestPaginateTodos:
    async def test_pages_cover_every_item_exactly_once(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        _, other_tokens = await signed_in(app, client)
        created = [await create_todo(client, tokens, title=f"t{n}") for n in range(7)]
        await create_todo(client, other_tokens, title="not mine")

        pages = [await list_todos(client, tokens, limit=3, offset=offset) for offset in (0, 3, 6)]

        assert [len(page["items"]) for page in pages] == [3, 3, 1]
        assert [page["total"] for page in pages] == [7, 7, 7]
        assert [(page["limit"], page["offset"]) for page in pages] == [(3, 0), (3, 3), (3, 6)]
        seen = [todo_id for page in pages for todo_id in ids(page)]
        assert seen == [todo["id"] for todo in reversed(created)]

    @pytest.mark.parametrize("offset", [7, 8, 1000])
    async def test_offset_past_the_end_is_an_empty_page(
        self, app: FastAPI, client: httpx.AsyncClient, offset: int
    ) -> None:
        _, tokens = await signed_in(app, client)
        for n in range(7):
            await create_todo(client, tokens, title=f"t{n}")

        page = await list_todos(client, tokens, limit=3, offset=offset)

        assert page == {"items": [], "total": 7, "limit": 3, "offset": offset}

    async def test_defaults_are_limit_20_offset_0(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        for n in range(21):
            await create_todo(client, tokens, title=f"t{n}")

        page = await list_todos(client, tokens)

        assert (page["limit"], page["offset"], page["total"]) == (20, 0, 21)
        assert len(page["items"]) == 20
        assert "t0" not in titles(page)

    @pytest.mark.parametrize("limit", [1, 100])
    async def test_limit_edges_are_accepted(self, app: FastAPI, client: httpx.AsyncClient, limit: int) -> None:
        _, tokens = await signed_in(app, client)
        for n in range(3):
            await create_todo(client, tokens, title=f"t{n}")

        page = await list_todos(client, tokens, limit=limit)

        assert (page["limit"], page["offset"], page["total"]) == (limit, 0, 3)
        assert len(page["items"]) == min(limit, 3)

    async def test_an_empty_list(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)

        assert await list_todos(client, tokens) == {"items": [], "total": 0, "limit": 20, "offset": 0}

    @pytest.mark.parametrize(
        ("params", "loc"),
        [
            ({"limit": 0}, ["query", "limit"]),
            ({"limit": 101}, ["query", "limit"]),
            ({"limit": -1}, ["query", "limit"]),
            ({"limit": "ten"}, ["query", "limit"]),
            ({"offset": -1}, ["query", "offset"]),
            ({"offset": "first"}, ["query", "offset"]),
            ({"sort": "title"}, ["query", "sort"]),
            ({"sort": "+created_at"}, ["query", "sort"]),
            ({"sort": "CREATED_AT"}, ["query", "sort"]),
            ({"sort": "-id"}, ["query", "sort"]),
            ({"sort": ""}, ["query", "sort"]),
            ({"q": "x" * 201}, ["query", "q"]),
            ({"q": "nul\x00byte"}, ["query", "q"]),
        ],
        ids=[
            "limit-0",
            "limit-101",
            "limit-negative",
            "limit-text",
            "offset-negative",
            "offset-text",
            "sort-title",
            "sort-plus",
            "sort-upper-case",
            "sort-id",
            "sort-empty",
            "q-201",
            "q-nul",
        ],
    )
    async def test_invalid_query_is_422(
        self, app: FastAPI, client: httpx.AsyncClient, params: dict[str, Any], loc: list[str]
    ) -> None:
        _, tokens = await signed_in(app, client)
        await create_todo(client, tokens)

        response = await client.get(TODOS, params=params, headers=tokens.headers)

        body = assert_problem(response, 422, "validation_error")
        assert error_locs(body) == [loc], body


class TestCascadeOnUserDeletion:
    @pytest.mark.parametrize("by", ["self", "admin"])
    async def test_deleting_a_user_deletes_their_todos(self, app: FastAPI, client: httpx.AsyncClient, by: str) -> None:
        account, tokens = await signed_in(app, client)
        other, other_tokens = await signed_in(app, client)
        _, admin_tokens = await signed_in(app, client, role=Role.ADMIN)
        for n in range(3):
            await create_todo(client, tokens, title=f"doomed {n}", description="goes with its owner")
        kept = [await create_todo(client, other_tokens, title=f"kept {n}") for n in range(2)]
        assert len(await stored_todos(app)) == 5

        if by == "self":
            response = await client.request(
                "DELETE", "/api/v1/users/me", json={"password": account.password}, headers=tokens.headers
            )
        else:
            response = await client.delete(f"/api/v1/admin/users/{account.id}", headers=admin_tokens.headers)

        assert response.status_code == 204, response.text
        remaining = await stored_todos(app)
        assert [(todo.id, todo.owner_id) for todo in remaining] == [(todo["id"], other.id) for todo in kept]
        page = await list_todos(client, other_tokens)
        assert sorted(ids(page)) == sorted(todo["id"] for todo in kept)
