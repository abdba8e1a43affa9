"""Faults the service must ride out: Redis and PostgreSQL going away, a pool that stays
exhausted, and SIGTERM in the middle of a request."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url, text

from keel.core.config import Settings
from keel.main import create_app
from tests.conftest import TEST_SECRET, base_settings, reset_postgres
from tests.factories import assert_problem, create_user, login
from tests.tasks.test_celery_worker import PrivateRedis, _free_port

pytestmark = pytest.mark.slow  # real servers started and stopped

ME = "/api/v1/users/me"


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(port=_free_port(), tmp_path=tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def postgres(postgres_url: str) -> str:
    await reset_postgres(postgres_url)
    return postgres_url


async def test_a_redis_outage_fails_closed_and_heals_by_itself(
    redis_server: PrivateRedis, postgres: str, tmp_path: Path
) -> None:
    settings = base_settings(tmp_path, database_url=postgres, redis_url=redis_server.url)
    async with running(settings) as (app, http):
        account = await create_user(app)
        tokens = await login(http, account)
        assert (await http.get(ME, headers=tokens.headers)).status_code == 200

        redis_server.stop()
        refused = await http.get(ME, headers=tokens.headers)
        ready = await http.get("/ready")

        # The revocation check cannot run: the token is neither accepted nor a 500.
        assert_problem(refused, 503, "service_unavailable")
        assert int(refused.headers["retry-after"]) >= 1
        assert ready.status_code == 503
        assert ready.json()["checks"]["redis"] != "ok"

        redis_server.start()  # an empty Redis: the cache refills from the database
        statuses = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            statuses.append((await http.get(ME, headers=tokens.headers)).status_code)
            if statuses[-1] == 200:
                break
            await asyncio.sleep(0.1)

        assert statuses[-1] == 200, statuses
        assert set(statuses) <= {200, 503}, statuses
        assert (await http.get("/ready")).status_code == 200


async def test_killed_database_connections_are_replaced_on_the_next_request(postgres: str, tmp_path: Path) -> None:
    settings = base_settings(tmp_path, database_url=postgres, db_pool_size=3)
    async with running(settings) as (app, http):
        account = await create_user(app)
        tokens = await login(http, account)
        for _ in range(3):
            assert (await http.get("/api/v1/todos", headers=tokens.headers)).status_code == 200

        killed = await _terminate_other_backends(postgres)

        answers = [(await http.get("/api/v1/todos", headers=tokens.headers)).status_code for _ in range(5)]

    assert killed >= 1
    assert answers == [200] * 5


async def test_an_exhausted_pool_answers_503_within_its_timeout(postgres: str, tmp_path: Path) -> None:
    settings = base_settings(
        tmp_path, database_url=postgres, db_pool_size=1, db_max_overflow=0, db_pool_timeout_seconds=1.0
    )
    async with running(settings) as (app, http):
        async with app.state.database.session() as held:
            await held.exec(text("SELECT 1"))  # the only connection is now checked out
            started = time.monotonic()
            response = await http.get("/api/v1/posts")
            waited = time.monotonic() - started
        after = await http.get("/api/v1/posts")

    assert_problem(response, 503, "service_unavailable")
    assert int(response.headers["retry-after"]) >= 1
    assert 0.9 <= waited < 5
    assert after.status_code == 200


async def _terminate_other_backends(url: str) -> int:
    target = make_url(url)
    connection = await asyncpg.connect(
        host=target.host, port=target.port or 5432, user=target.username, database=target.database
    )
    try:
        rows = await connection.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    return sum(1 for row in rows if row[0])


# --- SIGTERM --------------------------------------------------------------------------------------
@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = _free_port()
    log_path = tmp_path / "serve.log"
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("KEEL_")},
        "KEEL_SECRET_KEY": TEST_SECRET,
        "KEEL_DATA_DIR": str(tmp_path / "data"),
        "KEEL_ENVIRONMENT": "test",
        "KEEL_LOG_FORMAT": "json",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "keel", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"keel serve did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield process, port, log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigterm_lets_the_request_in_flight_finish_then_exits_cleanly(
    serve: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    process, port, log_path = serve
    body = b'{"email": "slow@example.com", "username": "slow_sender", "password": "a slow and steady tide 9"}'
    head = (
        f"POST /api/v1/auth/register HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        # A slow client: the headers and half the body, then SIGTERM while the rest is awaited.
        sock.sendall(head + body[:20])
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert process.poll() is None, "the server must wait for the request in flight"
        # New connections are no longer taken while it drains.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        sock.sendall(body[20:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk

    assert answer.startswith(b"HTTP/1.1 202 "), answer[:200]
    # uvicorn finishes its graceful shutdown, then re-raises the signal it caught, so a
    # supervisor sees the conventional "terminated by SIGTERM" status.
    assert process.wait(timeout=30) in {0, -signal.SIGTERM}
    log = log_path.read_text()
    lines = log.splitlines()
    entries = {i: json.loads(line) for i, line in enumerate(lines) if line.startswith("{")}
    assert all(entry.get("status") != 500 for entry in entries.values())
    access = [(i, entry["status"]) for i, entry in entries.items() if entry.get("path") == "/api/v1/auth/register"]
    assert [status for _, status in access] == [202]

    def first(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    assert first("Shutting down") < access[0][0] < first("Application shutdown complete")
    assert "Finished server process" in log
