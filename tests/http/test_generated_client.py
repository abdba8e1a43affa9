"""A client generated from the live schema by openapi-python-client reads naturally and works.

The client is generated afresh from `/openapi.json` on every run, so a schema that stops
generating cleanly (a warning, a model it cannot name) or a name that regresses fails here.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "keel_client"

pytestmark = pytest.mark.slow  # a code generator in a subprocess


@pytest.fixture
def generated(app: FastAPI, tmp_path: Path) -> Iterator[ModuleType]:
    schema = tmp_path / "openapi.json"
    schema.write_bytes(httpx.Response(200, json=app.openapi()).content)
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(schema), "--meta", "none", "--output-path", str(tmp_path / PACKAGE)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def part(package: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.{name}")


def test_the_todo_routes_have_natural_method_names(generated: ModuleType) -> None:
    assert generated.__file__ is not None
    folder = Path(generated.__file__).parent / "api" / "todos"
    assert sorted(path.stem for path in folder.glob("todos_*.py")) == [
        "todos_create",
        "todos_delete",
        "todos_get",
        "todos_list",
        "todos_update",
    ]
    sort = part(generated, "models.todo_sort").TodoSort
    assert sort.DUE_DATE_DESC.value == "-due_date"
    assert part(generated, "models").LoginForm


async def test_a_journey_through_the_generated_client(app: FastAPI, generated: ModuleType) -> None:
    models = part(generated, "models")
    api = {name: part(generated, f"api.{name}") for name in ("auth", "todos", "posts", "users")}
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
    anonymous = generated.Client(base_url="http://testserver", httpx_args={"transport": transport})

    registered = await part(generated, "api.auth.auth_register").asyncio_detailed(
        client=anonymous,
        body=models.UserCreate(email="gen@example.com", username="generated", password="Quartz-lantern-meadow-42"),
    )
    assert registered.status_code == 202
    tokens = await part(generated, "api.auth.auth_login").asyncio(
        client=anonymous, body=models.LoginForm(username="gen@example.com", password="Quartz-lantern-meadow-42")
    )
    assert isinstance(tokens, models.TokenPair), tokens
    client = generated.AuthenticatedClient(
        base_url="http://testserver", token=tokens.access_token, httpx_args={"transport": transport}
    )
    assert api  # the modules import

    todos = {verb: part(generated, f"api.todos.todos_{verb}") for verb in ("create", "list", "get", "update", "delete")}
    created = await todos["create"].asyncio(
        client=client, body=models.TodoCreate(title="Generated", due_date=None, priority=models.Priority.HIGH)
    )
    assert isinstance(created, models.TodoRead), created
    page = await todos["list"].asyncio(client=client, sort=models.TodoSort.DUE_DATE_DESC)
    assert [todo.id for todo in page.items] == [created.id]
    read = await todos["get"].asyncio_detailed(client=client, todo_id=created.id)
    etag = read.headers["etag"]
    unchanged = await todos["get"].asyncio_detailed(client=client, todo_id=created.id, if_none_match=etag)
    assert unchanged.status_code == 304
    change = models.TodoUpdate(completed=True, description=None)
    updated_answer = await todos["update"].asyncio_detailed(
        client=client, todo_id=created.id, body=change, if_match=etag
    )
    updated = updated_answer.parsed
    assert isinstance(updated, models.TodoRead), updated
    assert (updated.title, updated.completed, updated.description) == ("Generated", True, None)
    stale = await todos["update"].asyncio_detailed(client=client, todo_id=created.id, body=change, if_match=etag)
    assert stale.status_code == 412
    assert isinstance(stale.parsed, models.Problem)
    assert stale.parsed.code == "precondition_failed"
    fetched = await todos["get"].asyncio(client=client, todo_id=created.id)
    assert fetched.completed is True
    deleted = await todos["delete"].asyncio_detailed(
        client=client, todo_id=created.id, if_match=updated_answer.headers["etag"]
    )
    assert deleted.status_code == 204
    gone = await todos["get"].asyncio_detailed(client=client, todo_id=created.id)
    assert gone.status_code == 404
    assert isinstance(gone.parsed, models.Problem)
    assert gone.parsed.code == "todo_not_found"

    draft = await part(generated, "api.posts.posts_create").asyncio(
        client=client, body=models.PostCreate(title="From a client", content="Generated, then used.")
    )
    assert isinstance(draft, models.PostRead), draft
    mine = await part(generated, "api.posts.posts_list_mine").asyncio(client=client)
    assert [post.id for post in mine.items] == [draft.id]
    # List items are summaries, a type of their own: no body a client would find empty.
    assert all(isinstance(post, models.PostSummary) for post in mine.items)
    assert mine.items[0].excerpt == "Generated, then used."
    feed = await part(generated, "api.posts.posts_list").asyncio(client=anonymous)
    assert isinstance(feed, models.PostSummaryPage)
    me = await part(generated, "api.users.users_me_get").asyncio(client=client)
    assert me.username == "generated"

    refreshed = await part(generated, "api.auth.auth_refresh").asyncio(
        client=anonymous, body=models.RefreshRequest(refresh_token=tokens.refresh_token)
    )
    assert isinstance(refreshed, models.TokenPair), refreshed
    client = client.with_headers({"Authorization": f"Bearer {refreshed.access_token}"})
    logged_out = await part(generated, "api.auth.auth_logout").asyncio_detailed(
        client=client, body=models.LogoutRequest(refresh_token=refreshed.refresh_token)
    )
    assert logged_out.status_code == 204
    after = await part(generated, "api.users.users_me_get").asyncio_detailed(client=client)
    assert after.status_code == 401
