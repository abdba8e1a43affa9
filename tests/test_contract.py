"""The HTTP contract, checked by schemathesis against the app's own OpenAPI document, in-process.

Stateless: every operation through the examples, coverage and fuzzing phases with every check
schemathesis enables by default (server errors, status codes, content types, response schemas,
negative data rejection, positive data acceptance, unsupported methods, ignored auth, ...).
Stateful: sequences along the links the schema declares (keel.http.openapi: create a todo or post,
then read, change and delete it), with its stateful checks (use after free, resource availability).

Both run on each backend, against a fresh database, as a real verified user. Runs are bounded and
derandomized, so CI sees the same cases every time. The structural rules (every input string and
list has a bound) are checked on the document itself, below.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.core.transport import Response
from schemathesis.python.asgi import ASGIClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

from keel.core.config import Settings
from keel.core.password_policy import check_password
from keel.core.ratelimit import RULES
from keel.http.openapi import BEARER_SCHEME
from keel.main import create_app
from tests.conftest import base_settings
from tests.factories import Account, create_user

# Hypothesis warns when the process-wide `random` generator moves while a case is drawn. On the
# PostgreSQL + Redis backend a library under the app draws from it now and then (not Keel's own
# code: the outbox uses its own generator), which makes the warning, and only the warning, come
# and go. It concerns the reproducibility of drawing, not the contract checked here.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning"
)

# Schema-valid input the contract still refuses, for what no JSON Schema can express: a wrong
# password (400 invalid_credentials), a link token that was never issued (400 invalid_token), a
# confirmation that differs (400 passwords_do_not_match), a wrong one-time code (400 invalid_code)
# or a passkey's answer that does not verify (400 invalid_credential). Elsewhere, refusing valid
# input fails.
WRONG_SECRET = [
    "POST /api/v1/auth/password-change",
    "POST /api/v1/auth/mfa/totp/confirm",
    "POST /api/v1/auth/mfa/verify",
    "POST /api/v1/auth/reauthenticate",
    "POST /api/v1/auth/verify-email/confirm",
    "POST /api/v1/auth/password-reset/confirm",
    # Any well-formed code that was not mailed: 400 invalid_code.
    "POST /api/v1/auth/email-code/verify",
    "POST /api/v1/auth/identities/confirm",
    "DELETE /api/v1/users/me",
    # A WebAuthn credential is checked by its verification, not its schema: 400 invalid_credential.
    "POST /api/v1/auth/passkeys/register",
    "POST /api/v1/auth/passkeys/authenticate",
    "POST /api/v1/auth/passkeys/reauthenticate",
]
# The password policy is the other such rule (422: among the 30,000 most common, the email or
# username, or easy to guess by zxcvbn's estimate). Rather than excuse 422 on these operations,
# which would hide any other field's mismatch, a case meant to be valid gets a password the
# policy accepts (see `Target.prepare`).
NEW_PASSWORD = {
    "POST /api/v1/auth/register": ("password",),
    "POST /api/v1/auth/password-change": ("new_password",),
    "POST /api/v1/auth/password-reset/confirm": ("new_password", "confirm_password"),
}
# The check's own default, and 412: a well-formed If-Match that names no current ETag (a random one).
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]

CONFIG: dict[str, Any] = {
    "generation": {
        # Bounded for CI: fuzzing cases per operation (the examples and coverage phases add their
        # own), no example database, and the same cases on every run.
        "max-examples": 40,
        "deterministic": True,
        "database": "none",
    },
    # Each operation gets a fresh database, so there is little to reuse from earlier answers, and
    # drawing from them made cases depend on the server's random tokens and request ids. The
    # stateful test follows real ids from one call to the next.
    "phases": {"fuzzing": {"extra-data-sources": {"responses": False}}},
    # Shared machines are slow at times; a slow example is not a failing one.
    "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
    # Schemathesis would read literals out of the code behind the app it is given, which here is
    # `CurrentApp` below: this test module and its imports, not the request handlers.
    "analysis": {"constants": {"enabled": False}},
    "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
    "operations": [
        {
            "include-name": WRONG_SECRET,
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400"]}},
        },
        {
            # The provider's way back is a browser redirect: whatever it is given, a broken value
            # included, it answers 303 to the web UI with an error code (test_oidc.py), never a 4xx.
            "include-name": "GET /api/v1/auth/oidc/{provider}/callback",
            "checks": {"negative_data_rejection": {"enabled": False}},
        },
        {
            # A new post is a draft, and drafts can be neither voted on nor commented: 404
            # post_not_found, for the author too (API.md; test_posts.py::test_voting_on_a_draft_is_404,
            # test_comments.py::TestWrite::test_drafts_have_no_comments_and_unpublishing_hides_them).
            # The check expects whatever follows POST /api/v1/posts (a link it may infer by itself,
            # not only the ones keel.http.openapi declares) to find the post.
            "include-name": [
                "POST /api/v1/posts/{post_id}/vote",
                "GET /api/v1/posts/{post_id}/comments",
                "POST /api/v1/posts/{post_id}/comments",
                "PATCH /api/v1/posts/{post_id}/comments/{comment_id}",
                "DELETE /api/v1/posts/{post_id}/comments/{comment_id}",
            ],
            "checks": {"ensure_resource_availability": {"enabled": False}},
        },
        {
            # The live update stream never ends, so no response to check ever completes; its
            # contract is tested by reading it (tests/routes/test_events.py).
            "include-name": "GET /api/v1/events",
            "enabled": False,
        },
        {
            # An invitation names a user by username, which the fuzzer cannot know: 404
            # user_not_found is about that user, not the list the check expects it to find.
            "include-name": "POST /api/v1/lists/{list_id}/members",
            "checks": {"ensure_resource_availability": {"enabled": False}},
        },
    ],
}
SESSION_PLACEHOLDER = "Bearer <a fresh session of the fuzz account>"
Case = schemathesis.Case[Any]
IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,255}")


@dataclass
class Target:
    """One test's app and account, and what schemathesis sent them."""

    app: FastAPI
    settings: Settings
    account: Account
    cases: Counter[str] = field(default_factory=Counter)
    signed_in: set[str] = field(default_factory=set)

    def prepare(self, case: Case) -> None:
        """Complete a generated case just before it is sent."""
        headers = case.headers
        if headers.get("Authorization") == SESSION_PLACEHOLDER:
            # A session of its own for every case, so logout, logout-all or revoking a session only
            # ever end sessions no later case uses. (Deleting the account takes its password, which
            # is random and in no source file, so the fuzzer cannot.)
            headers["Authorization"] = f"Bearer {self._sign_in()}"
            self.signed_in.add(case.id)
        key = headers.get("Idempotency-Key")
        if isinstance(key, str) and IDEMPOTENCY_KEY.fullmatch(key):
            # A key belongs to one request. The fuzzer would reuse a generated key ("0") for
            # different bodies, which the contract answers with 422 idempotency_key_reused (see
            # tests/routes/test_idempotency.py); a valid key stays a valid key.
            headers["Idempotency-Key"] = f"{key[:200]}.{case.id}"
        if case.meta is not None and case.meta.generation.mode.is_positive:
            _satisfy_password_policy(case)
        self.cases[case.meta.phase.name.value if case.meta is not None else "explicit"] += 1

    def check(self, case: Case, response: Response) -> None:
        """What no built-in check can know: a fresh, valid session must never be refused."""
        assert not (case.id in self.signed_in and response.status_code == 401), (
            f"{case.operation.label} refused a fresh session: {response.text}"
        )

    def reset(self) -> None:
        """Undo what earlier cases did, leaving the account as it was created.

        A stateful scenario draws from the answers it gets (which todo of a listed page to delete),
        so each must start from the same data, or Hypothesis sees the same choices lead elsewhere.
        """
        asyncio.run(self._reset())

    async def _reset(self) -> None:
        engine = create_async_engine(self.settings.sqlalchemy_url)
        try:
            async with engine.begin() as connection:
                # Every table but the accounts, children before parents: what one scenario made
                # (a list, a comment, a passkey, an outbox row) must not be there for the next.
                for table in reversed(SQLModel.metadata.sorted_tables):
                    if table.name != "user":
                        await connection.execute(table.delete())
                account = {"id": self.account.id, "username": self.account.username}
                await connection.execute(text('DELETE FROM "user" WHERE id <> :id'), account)
                await connection.execute(
                    text('UPDATE "user" SET username = :username, full_name = NULL WHERE id = :id'), account
                )
        finally:
            await engine.dispose()

    def _sign_in(self) -> str:
        with ASGIClient(CURRENT_APP) as client:
            response = client.post(
                "/api/v1/auth/login", data={"username": self.account.email, "password": self.account.password}
            )
        assert response.status_code == 200, f"the fuzz account cannot sign in: {response.text}"
        token = response.json()["access_token"]
        assert isinstance(token, str)
        return token


def _satisfy_password_policy(case: Case) -> None:
    body = case.body
    fields = NEW_PASSWORD.get(case.operation.label, ())
    password = body.get(fields[0]) if isinstance(body, dict) and fields else None
    if not (isinstance(body, dict) and isinstance(password, str)):
        return
    email = body.get("email")
    personal = [value for value in (email, body.get("username")) if isinstance(value, str)]
    if isinstance(email, str):
        personal.append(email.split("@")[0])
    try:
        check_password(password, personal=tuple(personal))
    except ValueError:
        # The same length, so the case stays what it was generated as (a boundary, say).
        strong = ("Vq3-rTw8-Lm2!" * 10)[: len(password)]
        for name in fields:
            if body.get(name) == password:
                body[name] = strong


class CurrentApp:
    """The ASGI app schemathesis is given: it forwards everything, lifespan included, to this test's app.

    Schemathesis builds the examples and coverage cases when pytest collects the tests, long before a
    test's database and app exist (its `from_fixture` loader, meant for that, does not run on pytest
    9.2). Requests, sign-ins and schemathesis' own probes all go through here, so one lifespan serves
    them, on schemathesis' event loop thread; the schemathesis pytest plugin ends it with the test.
    """

    target: Target | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert self.target is not None, "no contract test is running"
        await self.target.app(scope, receive, send)


class FuzzAccount:
    """Schemathesis auth provider: marks the cases that carry the fuzz account's credentials.

    Schemathesis decides which cases those are (every operation that requires the bearer scheme,
    except where it tests missing or broken credentials), and knows them for explicit auth, so its
    `ignored_auth` check removes or corrupts them and expects 401. The token itself is filled in by
    `Target.prepare` when the case is sent.
    """

    def get(self, case: Case, ctx: schemathesis.AuthContext) -> str:
        return SESSION_PLACEHOLDER

    def set(self, case: Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers["Authorization"] = data


def _load(loader: Any) -> Any:
    schema = loader()
    schema.auth(refresh_interval=None).apply_to(schemathesis.openapi.require_security_scheme(BEARER_SCHEME))(
        FuzzAccount
    )
    return schema


CURRENT_APP = CurrentApp()
# The document is the app's own; it does not depend on settings or the backend.
DOCUMENT = create_app(base_settings(Path("/nonexistent"))).openapi()
schema = _load(lambda: schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict(CONFIG)))
schema.app = CURRENT_APP


@pytest.fixture
def fuzz_settings(settings: Settings) -> Settings:
    # Rate limits stay on, as in production, but far above what a run sends: every case signs in,
    # and a 429 would only hide the answer being checked. test_rate_limits covers the limits.
    # The fuzzer's wrong passwords (password change, account deletion) would lock its account too.
    limits: dict[str, object] = {f"rate_limit_{rule}": "100000/minute" for rule in RULES}
    return settings.model_copy(update={**limits, "rate_limit_account_failures": 100_000})


@pytest.fixture
async def fuzz_account(fuzz_settings: Settings) -> Account:
    # Written through a short-lived app on this test's event loop; the fuzzed app runs on another.
    # The password is random, so no source file holds it for the fuzzer to find.
    app = create_app(fuzz_settings)
    async with app.router.lifespan_context(app):
        return await create_user(app, is_verified=True, password=secrets.token_urlsafe(24))


@pytest.fixture
def target(fuzz_settings: Settings, fuzz_account: Account, request: pytest.FixtureRequest) -> Iterator[Target]:
    CURRENT_APP.target = target = Target(create_app(fuzz_settings), fuzz_settings, fuzz_account)
    yield target
    CURRENT_APP.target = None
    # Cases per phase, and every request the app answered (sign-ins and schemathesis' own probes
    # included), for reports: `-o junit_family=legacy --junitxml=...` shows them.
    request.node.user_properties.extend((f"cases_{phase}", count) for phase, count in sorted(target.cases.items()))
    answered = target.app.state.metrics.http_requests.collect()[0].samples
    request.node.user_properties.append(("requests", int(sum(s.value for s in answered if s.name.endswith("_total")))))


@schema.parametrize()  # type: ignore[untyped-decorator]  # schemathesis types it as a bare Callable
# `target` (a database, app and account) serves all of an operation's cases, not one each.
@hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
def test_operation_keeps_the_contract(case: Case, target: Target) -> None:
    target.prepare(case)
    response = case.call_and_validate()
    target.check(case, response)


def test_sequences_keep_the_contract(target: Target) -> None:
    loaded = _load(
        lambda: schemathesis.openapi.from_asgi(
            "/openapi.json", CURRENT_APP, config=schemathesis.Config.from_dict(CONFIG)
        )
    )

    class Workflow(loaded.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            target.reset()

        def before_call(self, case: Case) -> None:
            target.prepare(case)

        def after_call(self, response: Response, case: Case) -> None:
            super().after_call(response, case)
            target.check(case, response)

    # The same bounds as the stateless phases (schemathesis' own defaults for a state machine are
    # random and keep an example database): 40 scenarios of at most 8 calls, the same every run.
    Workflow.run(
        settings=hypothesis.settings(
            Workflow.TestCase.settings, max_examples=40, stateful_step_count=8, derandomize=True, database=None
        )
    )


# --- every input is bounded --------------------------------------------------------------------
# Formats whose values have a fixed length, so they need no maxLength.
BOUNDED_FORMATS = {"date", "uuid"}


def _input_schemas(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, schema) for every parameter and request body of every operation."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            label = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                yield f"{label} {parameter['in']} {parameter['name']}", parameter["schema"]
            for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
                yield f"{label} body ({media_type})", content["schema"]


def _unbounded(document: dict[str, Any], where: str, node: dict[str, Any], seen: set[str]) -> Iterator[str]:
    ref = node.get("$ref")
    if ref is not None:
        if ref not in seen:
            seen.add(ref)
            name = ref.removeprefix("#/components/schemas/")
            yield from _unbounded(document, f"{where} -> {name}", document["components"]["schemas"][name], seen)
        return
    types = node.get("type", [])
    types = types if isinstance(types, list) else [types]
    bounded_by_value = "enum" in node or "const" in node
    if "string" in types and not (bounded_by_value or "maxLength" in node or node.get("format") in BOUNDED_FORMATS):
        yield f"{where}: a string without maxLength"
    if "array" in types and "maxItems" not in node:
        yield f"{where}: an array without maxItems"
    for keyword in ("anyOf", "oneOf", "allOf"):
        for variant in node.get(keyword, []):
            yield from _unbounded(document, where, variant, seen)
    for name, field_schema in node.get("properties", {}).items():
        yield from _unbounded(document, f"{where}.{name}", field_schema, seen)
    for keyword in ("items", "additionalProperties"):
        if isinstance(node.get(keyword), dict):
            yield from _unbounded(document, f"{where}[]", node[keyword], seen)


def test_every_input_string_and_list_is_bounded() -> None:
    unbounded = [
        problem
        for where, input_schema in _input_schemas(DOCUMENT)
        for problem in _unbounded(DOCUMENT, where, input_schema, set())
    ]

    assert unbounded == []


def test_the_bounds_check_finds_what_it_looks_for() -> None:
    document: dict[str, Any] = {
        "paths": {
            "/things": {
                "post": {
                    "parameters": [{"in": "query", "name": "q", "schema": {"type": "string"}}],
                    "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/T"}}}},
                }
            }
        },
        "components": {
            "schemas": {
                "T": {
                    "type": "object",
                    "properties": {
                        "tags": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
                        "kind": {"type": "string", "enum": ["a", "b"]},
                        "day": {"type": "string", "format": "date"},
                    },
                }
            }
        },
    }

    found = [
        problem for where, node in _input_schemas(document) for problem in _unbounded(document, where, node, set())
    ]

    assert found == [
        "POST /things query q: a string without maxLength",
        "POST /things body (application/json) -> T.tags: an array without maxItems",
        "POST /things body (application/json) -> T.tags[]: a string without maxLength",
    ]
