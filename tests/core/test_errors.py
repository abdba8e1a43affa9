"""Every error is an RFC 9457 problem document: framework errors, validation, database errors, crashes."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm.exc import StaleDataError

from keel.main import create_app
from tests.conftest import base_settings
from tests.factories import assert_problem, signed_in

API_PREFIX = "/api/v1"
PROBLEM_REF = "#/components/schemas/Problem"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


@pytest.fixture
def crashing_app(tmp_path: Path) -> FastAPI:
    """An app with extra routes that fail the ways a handler can fail unexpectedly."""
    application = create_app(base_settings(tmp_path))

    @application.get("/test/boom", include_in_schema=False)
    async def boom() -> None:
        raise RuntimeError("secret detail")

    @application.get("/test/integrity", include_in_schema=False)
    async def integrity() -> None:
        raise IntegrityError("INSERT INTO secret_table", {}, Exception("duplicate key secret_value"))

    # A versioned row's conditioned UPDATE matched nothing: another request changed it meanwhile.
    @application.get("/test/stale", include_in_schema=False)
    async def stale() -> None:
        raise StaleDataError("UPDATE secret_table matched 0 rows; expected 1")

    @application.get("/test/operational", include_in_schema=False)
    async def operational() -> None:
        raise OperationalError("SELECT secret_column", {}, Exception("connection to secret_host refused"))

    @application.get("/test/invalidated", include_in_schema=False)
    async def invalidated() -> None:
        raise DBAPIError(
            "SELECT secret_column", {}, Exception("server closed secret_host"), connection_invalidated=True
        )

    # What the driver says when the server is starting up, or gave up waiting for a lock (lock_timeout):
    # SQLAlchemy passes on either as a plain DBAPIError.
    @application.get("/test/starting-up", include_in_schema=False)
    async def starting_up() -> None:
        raise DBAPIError(None, None, asyncpg.CannotConnectNowError("the database system is starting up"))

    @application.get("/test/lock-timeout", include_in_schema=False)
    async def lock_timeout() -> None:
        raise DBAPIError("UPDATE secret_table", {}, asyncpg.LockNotAvailableError("canceling statement: lock timeout"))

    @application.get("/test/programming", include_in_schema=False)
    async def programming() -> None:
        raise ProgrammingError("SELECT secret_column FROM nowhere", {}, Exception("syntax error at secret_host"))

    return application


@pytest.fixture
async def crashing_client(crashing_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=crashing_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def assert_no_leak(response: httpx.Response, *secrets: str) -> None:
    for secret in ("Traceback", 'File "', *secrets):
        assert secret not in response.text, secret


class TestFrameworkErrors:
    @pytest.mark.parametrize("path", ["/nowhere", "/api/v1/nothing-here", "/api/v1/users/me/extra"])
    async def test_unknown_route_is_404(self, client: httpx.AsyncClient, path: str) -> None:
        response = await client.get(path)

        body = assert_problem(response, 404, "not_found")
        assert body["instance"] == path
        assert body["request_id"] == response.headers["x-request-id"]

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("POST", "/health", {"GET"}),
            ("DELETE", "/api/v1/admin/users", {"GET"}),
            ("PUT", "/api/v1/users/me", {"GET", "PATCH", "DELETE"}),
            ("GET", "/api/v1/auth/login", {"POST"}),
        ],
    )
    async def test_wrong_method_is_405_with_allow(
        self, client: httpx.AsyncClient, method: str, path: str, allowed: set[str]
    ) -> None:
        response = await client.request(method, path)

        assert_problem(response, 405, "method_not_allowed")
        # RFC 9110 15.5.6: Allow lists every method the resource supports.
        listed = {part.strip() for part in response.headers["allow"].split(",")}
        assert allowed <= listed, response.headers["allow"]
        assert method not in listed

    @pytest.mark.parametrize(
        "content",
        [b'{"email": ', b"{'single': 'quotes'}", b"not json at all", b'{"a": 1,}', b"\xff\xfe"],
        ids=["truncated", "single-quotes", "text", "trailing-comma", "not-utf8"],
    )
    async def test_malformed_json_is_400(self, client: httpx.AsyncClient, content: bytes) -> None:
        response = await client.post(
            "/api/v1/auth/register", content=content, headers={"Content-Type": "application/json"}
        )

        body = assert_problem(response, 400, "malformed_json")
        assert "errors" not in body

    async def test_malformed_json_on_an_authenticated_route(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)

        response = await client.patch(
            "/api/v1/users/me", content=b"{", headers={**tokens.headers, "Content-Type": "application/json"}
        )

        assert_problem(response, 400, "malformed_json")


class TestValidationErrors:
    @pytest.mark.parametrize(
        ("payload", "field", "secret"),
        [
            ({"email": "ada@example.com", "username": "ada_l", "password": "s3cr3t!"}, "password", "s3cr3t!"),
            ({"email": "ada@example.com", "username": "ada_l", "password": "password123"}, "password", "password123"),
            (
                {"email": "ada@example.com", "username": "ada_l", "password": "x" * 129 + "Zq9"},
                "password",
                "x" * 129 + "Zq9",
            ),
            ({"email": "not-an-email", "username": "ada_l", "password": "tidal-Marmot-quarry-42"}, "email", None),
            ({"email": "ada@example.com", "password": "tidal-Marmot-quarry-42"}, "username", None),
        ],
        ids=["short-password", "common-password", "long-password", "bad-email", "missing-username"],
    )
    async def test_is_422_with_clean_errors(
        self, client: httpx.AsyncClient, payload: dict[str, Any], field: str, secret: str | None
    ) -> None:
        response = await client.post("/api/v1/auth/register", json=payload)

        body = assert_problem(response, 422, "validation_error")
        errors = body["errors"]
        assert isinstance(errors, list)
        assert errors
        for error in errors:
            assert set(error) <= {"loc", "msg", "type", "ctx"}
            # Only the schema's bounds, never what describes the input (its length, its text).
            assert set(error.get("ctx", {})) <= {"min_length", "max_length", "ge", "gt", "le", "lt"}
            assert isinstance(error["loc"], list)
            assert isinstance(error["msg"], str)
            assert error["msg"]
            assert isinstance(error["type"], str)
            assert error["type"]
        assert ["body", field] in [error["loc"] for error in errors]
        if secret is not None:
            assert secret not in response.text
        assert "tidal-Marmot-quarry-42" not in response.text

    async def test_errors_carry_the_bound_they_missed(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/auth/register", json={"email": "ada@example.com", "username": "ad", "password": "x" * 130}
        )

        assert_problem(response, 422, "validation_error")
        errors = {error["loc"][-1]: error for error in response.json()["errors"]}
        assert errors["username"]["type"] == "string_too_short"
        assert errors["username"]["ctx"] == {"min_length": 3}
        assert errors["password"]["type"] == "string_too_long"
        assert errors["password"]["ctx"] == {"max_length": 128}

    async def test_query_and_path_errors_name_their_location(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/users/zero")

        body = assert_problem(response, 422, "validation_error")
        errors = body["errors"]
        assert isinstance(errors, list)
        assert [(error["loc"], error["type"]) for error in errors] == [(["path", "user_id"], "int_parsing")]

    async def test_no_operation_lists_the_same_error_twice(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        # A body, form field or parameter read by a dependency as well as by its route is validated
        # twice, once for each; the problem must still name each mistake once.
        _, tokens = await signed_in(app, client)
        operations = [
            (method.upper(), path, operation)
            for path, item in app.openapi()["paths"].items()
            if path.startswith(API_PREFIX)
            for method, operation in item.items()
            if method in HTTP_METHODS
        ]
        invalid: dict[str, list[tuple[str, ...]]] = {}
        for method, path, operation in operations:
            url = re.sub(r"\{[^}]+\}", "%00", path)
            query = {
                parameter["name"]: "\x00" for parameter in operation.get("parameters", ()) if parameter["in"] == "query"
            }
            content = operation.get("requestBody", {}).get("content", {})
            body: dict[str, Any] = {"json": [1]} if "application/json" in content else {"data": {}} if content else {}
            response = await client.request(method, url, params=query, headers=tokens.headers, **body)
            if response.status_code == 422 and response.json()["code"] == "validation_error":
                invalid[f"{method} {path}"] = [
                    (json.dumps(error["loc"]), error["msg"], error["type"]) for error in response.json()["errors"]
                ]

        assert {label for label, errors in invalid.items() if len(errors) != len(set(errors))} == set()
        # The sweep reached the operations whose input a dependency also reads.
        assert {"POST /api/v1/auth/refresh", "POST /api/v1/auth/login", "POST /api/v1/auth/logout"} <= set(invalid)

    async def test_a_password_confirming_an_action_is_not_echoed(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        password = "hunter2-" + "z" * 1100

        response = await client.request(
            "DELETE", "/api/v1/users/me", json={"password": password}, headers=tokens.headers
        )

        assert_problem(response, 422, "validation_error")
        assert "hunter2" not in response.text


class TestUnexpectedErrors:
    async def test_is_a_generic_500_that_reveals_nothing(
        self, crashing_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        response = await crashing_client.get("/test/boom", headers={"X-Request-ID": "crash-42"})

        body = assert_problem(response, 500, "internal_error")
        assert_no_leak(response, "secret detail", "RuntimeError")
        assert response.headers["x-request-id"] == "crash-42"
        assert body["request_id"] == "crash-42"
        # The app was configured before the test body ran, so pytest's log handler sits beside
        # Keel's and receives structlog's event dict, with the exception attached to the record.
        crashes = [
            record
            for record in caplog.records
            if isinstance(record.msg, dict) and record.msg.get("event") == "unhandled_exception"
        ]
        assert len(crashes) == 1
        crash = crashes[0]
        assert crash.levelname == "ERROR"
        assert isinstance(crash.msg, dict)
        assert crash.msg["request_id"] == "crash-42"
        assert crash.msg["path"] == "/test/boom"
        assert crash.exc_info is not None
        assert isinstance(crash.exc_info[1], RuntimeError)
        assert "Traceback" in caplog.text
        assert "RuntimeError: secret detail" in caplog.text

    async def test_generated_request_id_matches_the_body(self, crashing_client: httpx.AsyncClient) -> None:
        response = await crashing_client.get("/test/boom")

        body = assert_problem(response, 500, "internal_error")
        assert body["request_id"] == response.headers["x-request-id"]
        assert len(response.headers["x-request-id"]) == 32

    @pytest.mark.parametrize("log_format", ["json", "console"])
    async def test_the_trace_reaches_the_log_output(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], log_format: str
    ) -> None:
        # Built inside the test, so Keel's stderr handler writes into capsys.
        application = create_app(base_settings(tmp_path, log_format=log_format))

        @application.get("/test/boom", include_in_schema=False)
        async def boom() -> None:
            password = "local-7f3a-never-logged"  # a frame's locals stay out of the log
            raise RuntimeError(f"secret detail ({len(password)})")

        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.get("/test/boom", headers={"X-Request-ID": "trace-7"})

        assert_problem(response, 500, "internal_error")
        logged = capsys.readouterr().err
        if log_format == "json":
            lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
            crash = next(line for line in lines if line.get("event") == "unhandled_exception")
            assert crash["request_id"] == "trace-7"
            assert crash["level"] == "error"
            assert "Traceback" in crash["exception"]
            assert "RuntimeError: secret detail" in crash["exception"]
        else:
            assert "unhandled_exception" in logged
            assert "trace-7" in logged
            assert "Traceback" in logged
            assert "secret detail" in logged
        assert "local-7f3a-never-logged" not in logged

    async def test_integrity_error_is_409_conflict(self, crashing_client: httpx.AsyncClient) -> None:
        response = await crashing_client.get("/test/integrity")

        body = assert_problem(response, 409, "conflict")
        assert body["instance"] == "/test/integrity"
        assert_no_leak(response, "secret_table", "secret_value", "INSERT")

    async def test_a_write_that_lost_its_race_is_409_edit_conflict(self, crashing_client: httpx.AsyncClient) -> None:
        response = await crashing_client.get("/test/stale")

        body = assert_problem(response, 409, "edit_conflict")
        assert body["instance"] == "/test/stale"
        assert_no_leak(response, "secret_table", "matched 0 rows", "StaleDataError")

    @pytest.mark.parametrize(
        "path", ["/test/operational", "/test/invalidated", "/test/starting-up", "/test/lock-timeout"]
    )
    async def test_an_unreachable_database_is_503_with_retry_after(
        self, crashing_client: httpx.AsyncClient, path: str
    ) -> None:
        response = await crashing_client.get(path)

        assert_problem(response, 503, "database_unavailable")
        assert int(response.headers["retry-after"]) > 0
        assert_no_leak(response, "secret_column", "secret_host", "SELECT")

    async def test_any_other_database_error_is_a_generic_500(
        self, crashing_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        response = await crashing_client.get("/test/programming")

        body = assert_problem(response, 500, "internal_error")
        assert body["request_id"] == response.headers["x-request-id"]
        assert_no_leak(response, "secret_column", "secret_host", "SELECT", "nowhere")
        assert "ProgrammingError" in caplog.text


class TestOpenAPI:
    @pytest.fixture
    def schema(self, tmp_path: Path) -> dict[str, Any]:
        return create_app(base_settings(tmp_path)).openapi()

    @staticmethod
    def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        found = [
            (method.upper(), path, operation)
            for path, item in schema["paths"].items()
            if path.startswith(API_PREFIX)
            for method, operation in item.items()
            if method in HTTP_METHODS
        ]
        assert len(found) >= 15, "the API seems to be missing from the schema"
        return found

    def test_problem_component_exists(self, schema: dict[str, Any]) -> None:
        components = schema["components"]["schemas"]
        problem = components["Problem"]
        assert set(problem["required"]) >= {"type", "title", "status", "detail", "code"}
        assert {"type", "title", "status", "detail", "code", "errors", "request_id"} <= set(problem["properties"])
        # Every reference inside the problem schema resolves.
        for ref in _refs(problem):
            assert ref.removeprefix("#/components/schemas/") in components, ref
        # FastAPI's own validation error shape is never documented: 422 is a problem too.
        assert "HTTPValidationError" not in components

    def test_every_error_response_is_a_problem(self, schema: dict[str, Any]) -> None:
        problem_members = schema["components"]["schemas"]["Problem"]["properties"]
        for method, path, operation in self.operations(schema):
            for status, response in operation["responses"].items():
                if status.startswith(("2", "3")):  # 304 Not Modified is no error, and has no body
                    continue
                content = response.get("content", {})
                assert list(content) == ["application/problem+json"], (method, path, status)
                body = content["application/problem+json"]["schema"]
                # The problem document, or (a first-factor sign-in's 403) any of it and documents
                # that extend it with members of their own (`MfaRequiredProblem`).
                variants = body.get("anyOf", [body])
                assert {"$ref": PROBLEM_REF} in variants, (method, path, status)
                for variant in variants:
                    name = variant["$ref"].rsplit("/", 1)[-1]
                    members = schema["components"]["schemas"][name]["properties"]
                    assert set(problem_members) <= set(members), (method, path, status, name)

    def test_operations_with_input_document_422(self, schema: dict[str, Any]) -> None:
        for method, path, operation in self.operations(schema):
            if operation.get("parameters") or operation.get("requestBody"):
                assert "422" in operation["responses"], (method, path)

    def test_operations_behind_a_bearer_token_document_401(self, schema: dict[str, Any]) -> None:
        protected = [
            (method, path, operation)
            for method, path, operation in self.operations(schema)
            if operation.get("security")
        ]
        assert protected, "no operation declares bearer security"
        for method, path, operation in protected:
            assert "401" in operation["responses"], (method, path)

    # Found by the contract fuzzer (tests/test_contract.py): a malformed body got an undocumented 400
    # on every operation that takes one. These statuses can answer any such request, so they are
    # documented for all of them at once (keel.main._document_common_problems).
    def test_operations_with_a_body_document_400_413_and_422(self, schema: dict[str, Any]) -> None:
        with_body = [(method, path, op) for method, path, op in self.operations(schema) if "requestBody" in op]
        assert len(with_body) >= 15
        for method, path, operation in with_body:
            assert {"400", "413", "422"} <= set(operation["responses"]), (method, path)

    def test_every_api_operation_documents_503(self, schema: dict[str, Any]) -> None:
        # Each one needs the database, which can be unreachable or out of connections.
        for method, path, operation in self.operations(schema):
            assert "503" in operation["responses"], (method, path)

    def test_the_access_token_is_also_described_as_a_plain_bearer_token(self, schema: dict[str, Any]) -> None:
        # Clients and tools that do not speak OAuth2 flows (schemathesis among them) need the plain
        # scheme to know where the token goes; either requirement is met by the same header.
        # Two kinds of bearer token share it (a JWT, or a `keel_pat_` personal access token): no one format.
        scheme = schema["components"]["securitySchemes"]["BearerToken"]
        assert {key: scheme[key] for key in ("type", "scheme")} == {"type": "http", "scheme": "bearer"}
        assert "bearerFormat" not in scheme
        assert "/api/v1/auth/login" in scheme["description"]
        assert "keel_pat_" in scheme["description"]
        assert "personal_token_not_allowed" in scheme["description"]
        secured = [(method, path, op) for method, path, op in self.operations(schema) if op.get("security")]
        for method, path, operation in secured:
            assert {"OAuth2PasswordBearer": []} in operation["security"], (method, path)
            assert {"BearerToken": []} in operation["security"], (method, path)

    def test_only_the_public_feed_and_posts_admit_anonymous_callers(self, schema: dict[str, Any]) -> None:
        # `{}` among the requirements: a token is optional. The schema used to demand one here.
        anonymous = {(method, path) for method, path, op in self.operations(schema) if {} in op.get("security", [])}

        assert anonymous == {
            ("GET", "/api/v1/posts"),
            ("GET", "/api/v1/posts/{post_id}"),
            ("GET", "/api/v1/posts/{post_id}/comments"),
            ("GET", "/api/v1/tags"),
        }

    @pytest.mark.parametrize(
        ("method", "path", "statuses"),
        [
            # Login and refresh answer 401 for bad credentials, but take no bearer token.
            ("POST", "/api/v1/auth/login", {"403", "422"}),
            ("POST", "/api/v1/auth/refresh", {"403", "422"}),
            ("POST", "/api/v1/auth/logout", {"401", "403", "422"}),
            ("GET", "/api/v1/users/me", {"401"}),
            ("PATCH", "/api/v1/users/me", {"401", "409", "422"}),
            ("DELETE", "/api/v1/users/me", {"400", "401", "422"}),
            ("GET", "/api/v1/users/{user_id}", {"404", "422"}),
            ("GET", "/api/v1/admin/users", {"401", "403", "422"}),
            ("PATCH", "/api/v1/admin/users/{user_id}", {"401", "403", "404", "409", "422"}),
            ("DELETE", "/api/v1/admin/users/{user_id}", {"401", "403", "404", "409", "422"}),
        ],
    )
    def test_documented_statuses(self, schema: dict[str, Any], method: str, path: str, statuses: set[str]) -> None:
        operation = schema["paths"][path][method.lower()]

        assert statuses <= set(operation["responses"])
        if "401" in statuses:
            assert operation.get("security"), (method, path)


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []
