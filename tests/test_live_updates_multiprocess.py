"""Live updates across two `keel serve` processes on PostgreSQL + Redis: one client edits through the
first, another's stream on the second receives every event in order, resumes on the first from its
last id, and ends within a second when its session is revoked through the first."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import reset_postgres, reset_redis
from tests.processes import ServerProcess, free_port, keel_env, serve_command, wait_ready

pytestmark = pytest.mark.slow  # two real servers

PASSWORD = "steady as she goes 1234"


@pytest.fixture
def servers(postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[list[str]]:
    asyncio.run(reset_postgres(postgres_url))
    asyncio.run(reset_redis(redis_url))
    env = keel_env(tmp_path / "data", KEEL_DATABASE_URL=postgres_url, KEEL_REDIS_URL=redis_url)
    ports = [free_port(), free_port()]
    processes = [
        ServerProcess(serve_command(port), env=env, log_path=tmp_path / f"serve-{n}.log")
        for n, port in enumerate(ports)
    ]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url in urls:
            wait_ready(f"{url}/ready", processes, timeout=60)
        yield urls
    finally:
        for process in processes:
            if process.running():
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.reap()


@dataclass
class Person:
    username: str
    headers: dict[str, str]
    refresh: str


async def person(http: httpx.AsyncClient, name: str) -> Person:
    email = f"{name}@example.com"
    registered = await http.post("/api/v1/auth/register", json={"email": email, "username": name, "password": PASSWORD})
    assert registered.status_code == 202, registered.text
    tokens = (await http.post("/api/v1/auth/login", data={"username": email, "password": PASSWORD})).json()
    return Person(name, {"Authorization": f"Bearer {tokens['access_token']}"}, tokens["refresh_token"])


async def frames(response: httpx.Response) -> AsyncIterator[tuple[str | None, str | None, dict[str, Any] | None]]:
    """(event, id, data) for each event of a real HTTP stream; comments and `retry` skipped."""
    event: str | None = None
    event_id: str | None = None
    data: str | None = None
    async for line in response.aiter_lines():
        if line == "":
            if event is not None:
                yield event, event_id, json.loads(data) if data is not None else None
            event = event_id = data = None
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            data = line[6:]


def test_an_edit_on_one_process_reaches_a_stream_on_the_other_in_order(servers: list[str]) -> None:
    first, second = servers

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=first, timeout=10) as one, httpx.AsyncClient(timeout=None) as two:
            alice, bob = await person(one, "alice"), await person(one, "bob")
            list_id = (await one.post("/api/v1/lists", json={"name": "Trip"}, headers=alice.headers)).json()["id"]
            invited = await one.post(
                f"/api/v1/lists/{list_id}/members", json={"username": "bob", "role": "editor"}, headers=alice.headers
            )
            assert invited.status_code == 201, invited.text
            titles: list[str] = []
            last_id = None
            async with two.stream("GET", f"{second}/api/v1/events", headers=bob.headers) as stream:
                assert stream.status_code == 200
                received = frames(stream)
                await asyncio.sleep(0.3)  # subscribed by now: the stream has started
                for n in range(20):
                    created = await one.post(
                        "/api/v1/todos", json={"title": f"item {n}", "list_id": list_id}, headers=alice.headers
                    )
                    assert created.status_code == 201
                async with asyncio.timeout(10):
                    while len(titles) < 10:
                        event, event_id, data = await anext(received)
                        assert event == "todo.created"
                        assert data is not None
                        titles.append(data["todo"]["title"])
                        last_id = event_id
            # Resumed on the other process, from the last id seen: the rest, in order, once each.
            headers = {**bob.headers, "Last-Event-ID": str(last_id)}
            async with two.stream("GET", f"{first}/api/v1/events", headers=headers) as stream:
                received = frames(stream)
                async with asyncio.timeout(10):
                    while len(titles) < 20:
                        event, _, data = await anext(received)
                        assert event == "todo.created"
                        assert data is not None
                        titles.append(data["todo"]["title"])
            assert titles == [f"item {n}" for n in range(20)]

            # Revoked through the first process: the stream on the second ends within a second.
            async with two.stream("GET", f"{second}/api/v1/events", headers=bob.headers) as stream:
                received = frames(stream)
                await asyncio.sleep(0.3)
                out = await one.post("/api/v1/auth/logout", headers=bob.headers, json={"refresh_token": bob.refresh})
                assert out.status_code == 204
                began = time.monotonic()
                async with asyncio.timeout(5):
                    event, _, data = await anext(received)
                assert (event, data and data["reason"]) == ("stream.end", "revoked")
                assert time.monotonic() - began < 1.0

    asyncio.run(scenario())
