"""Faults the service must ride out: Redis and PostgreSQL going away, a pool that stays
exhausted, and SIGTERM in the middle of a request."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url, text

from keel.core.config import Settings
from keel.main import create_app
from keel.migrations import upgrade
from tests.conftest import base_settings, reset_postgres, reset_redis
from tests.factories import assert_problem, create_user, login
from tests.processes import PrivatePostgres, PrivateRedis, free_port, keel_env, serve_command
from tests.processes import serving as serving_process

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
    server = PrivateRedis(port=free_port(), tmp_path=tmp_path)
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


async def test_the_first_requests_after_a_redis_restart_are_served(
    redis_server: PrivateRedis, postgres: str, tmp_path: Path
) -> None:
    settings = base_settings(tmp_path, database_url=postgres, redis_url=redis_server.url)
    async with running(settings) as (app, http):
        account = await create_user(app)
        tokens = await login(http, account)
        # Requests at once leave as many connections in the pool, every one of them dead after the restart.
        warm = await asyncio.gather(*(http.get(ME, headers=tokens.headers) for _ in range(20)))

        await asyncio.to_thread(redis_server.stop)
        await asyncio.to_thread(redis_server.start)
        first = await http.get(ME, headers=tokens.headers)
        burst = await asyncio.gather(*(http.get(ME, headers=tokens.headers) for _ in range(20)))

    assert [response.status_code for response in warm] == [200] * 20
    assert first.status_code == 200, first.text
    assert [response.status_code for response in burst] == [200] * 20


BURST = 512  # concurrent connections, as in the probe that measured hundreds of 503s with wrk
BURSTS = 3


async def _burst(port: int, request: bytes, connections: int, rounds: int) -> Counter[int]:
    """Each of `connections` keep-alive connections sends `request` at the same moment, `rounds` times.

    All are written before any answer is read, so the server gets them as one burst (an HTTP client
    that prepares each request in turn spreads them out), and so many are in flight at once.
    """
    statuses: Counter[int] = Counter()
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    try:
        for _ in range(rounds):
            for _, writer in streams:
                writer.write(request)
            await asyncio.gather(*(writer.drain() for _, writer in streams))
            for status in await asyncio.gather(*(_answer(reader) for reader, _ in streams)):
                statuses[status] += 1
    finally:
        for _, writer in streams:
            writer.close()
    return statuses


async def _answer(reader: asyncio.StreamReader) -> int:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in head if line.lower().startswith("content-length:"))
    await reader.readexactly(length)
    return int(head[0].split(" ")[1])


async def test_a_burst_of_concurrent_requests_queues_for_redis_connections_and_all_succeed(
    postgres: str, redis_url: str, tmp_path: Path
) -> None:
    await reset_redis(redis_url)
    async with running(base_settings(tmp_path, database_url=postgres, redis_url=redis_url)) as (app, _):
        account = await create_user(app)
    services = {"KEEL_DATABASE_URL": postgres, "KEEL_REDIS_URL": redis_url, "KEEL_EMAIL_DELIVERY": "in-process"}
    with serving(tmp_path, **services, KEEL_LOG_LEVEL="WARNING") as (_, port, log_path):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            tokens = await login(http, account)
        # One worker, an authenticated read on every connection at once: each needs Redis (the session
        # check) and PostgreSQL, far more at a time than either pool holds.
        request = (
            f"GET {ME} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {tokens.access}\r\n\r\n"
        ).encode()
        async with asyncio.timeout(300):  # bounded: a few seconds when all is well
            statuses = await _burst(port, request, BURST, BURSTS)
        log = log_path.read_text()

    assert statuses == Counter({200: BURST * BURSTS}), (statuses, log[-3000:])
    assert "session_cache_unavailable" not in log


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

    assert_problem(response, 503, "database_unavailable")
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


# --- PostgreSQL stopped and started again ----------------------------------------------------------
@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[PrivatePostgres]:
    server = PrivatePostgres.create()
    try:
        server.start()
        upgrade(base_settings(tmp_path, database_url=server.url))
        yield server
    finally:
        server.destroy()


@contextmanager
def logged() -> Iterator[list[logging.LogRecord]]:
    """Every log record emitted inside the block (Keel's handler is installed when the app is built)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logging.getLogger().addHandler(handler)
    try:
        yield records
    finally:
        logging.getLogger().removeHandler(handler)


def events(records: list[logging.LogRecord], name: str) -> list[logging.LogRecord]:
    return [record for record in records if isinstance(record.msg, dict) and record.msg.get("event") == name]


async def test_a_stopped_database_is_a_503_on_every_route_logged_once_and_heals_by_itself(
    private_postgres: PrivatePostgres, redis_url: str, tmp_path: Path
) -> None:
    await reset_redis(redis_url)
    settings = base_settings(
        tmp_path,
        database_url=private_postgres.url,
        redis_url=redis_url,
        log_level="INFO",
        outbox_relay_interval_seconds=3600,  # no background relay in the middle of the outage
    )
    async with running(settings) as (app, http):
        account = await create_user(app)
        tokens = await login(http, account)
        sign_in = {"username": account.email, "password": account.password}
        requests: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", ME, {"headers": tokens.headers}),  # an authenticated read
            ("POST", "/api/v1/todos", {"headers": tokens.headers, "json": {"title": "Buy rope"}}),  # a write
            ("POST", "/api/v1/auth/login", {"data": sign_in}),
            ("GET", "/api/v1/posts", {}),  # the public feed
        ]

        with logged() as records:
            await asyncio.to_thread(private_postgres.stop)
            refused = [await http.request(method, path, **options) for method, path, options in requests * 2]
            ready = await http.get("/ready")

            await asyncio.to_thread(private_postgres.start)
            served = [await http.request(method, path, **options) for method, path, options in requests]

    for response in refused:
        assert_problem(response, 503, "database_unavailable")
        assert int(response.headers["retry-after"]) >= 1
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "unavailable"
    # One warning for the outage, not an error with a traceback for each request.
    (warning,) = events(records, "database_unavailable")
    assert warning.levelname == "WARNING"
    assert [record.msg for record in records if record.levelno >= logging.ERROR or record.exc_info] == []
    # The first requests once it is back are served, on new connections.
    assert [response.status_code for response in served] == [200, 201, 200, 200], [r.text for r in served]
    assert len(events(records, "database_available")) == 1


# --- SIGTERM --------------------------------------------------------------------------------------
@contextmanager
def serving(tmp_path: Path, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """`keel serve` in a process of its own on a free port, with these KEEL_* variables; killed at the end."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    environment = keel_env(tmp_path / "data", KEEL_LOG_FORMAT="json", **env)
    with serving_process(
        serve_command(port), env=environment, log_path=log_path, ready_url=f"http://127.0.0.1:{port}/health"
    ) as server:
        yield server.process, port, log_path


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    with serving(tmp_path) as server:
        yield server


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
