"""Test fixtures: a clean database per test, on SQLite always and on PostgreSQL + Redis when configured.

`KEEL_TEST_DATABASE_URL` (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/keel_test) and
`KEEL_TEST_REDIS_URL` (e.g. redis://127.0.0.1:6379/15) turn on the second backend. Without them
those tests skip, saying why; with `KEEL_TEST_REQUIRE_SERVICES=1` (CI) they fail instead.
"""

from __future__ import annotations

import asyncio
import graphlib
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
import time_machine
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from keel.core.config import Settings
from keel.main import create_app
from keel.migrations import upgrade
from tests.parallel import Plugin
from tests.skip_summary import pytest_terminal_summary  # noqa: F401  (a hook: skips counted by reason)

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
REQUIRE_SERVICES = os.environ.get("KEEL_TEST_REQUIRE_SERVICES") == "1"


def unavailable(reason: str) -> None:
    """Skip on a bare machine, fail where the services are required (CI)."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def base_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "data_dir": data_dir,
        "secret_key": TEST_SECRET,
        "redis_url": None,
        # Cheap hashing keeps the suite fast; the production parameters have their own test.
        "argon2_memory_cost": 1024,
        "argon2_time_cost": 1,
        "log_format": "console",
        # Emails go to files in the test's data folder, delivered inside the app; Celery has its own tests.
        "email_delivery": "in-process",
        "log_level": "WARNING",
        # Each test builds an app; frozen startup objects would pile up in the one test process.
        "tune_gc": False,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def pytest_configure(config: pytest.Config) -> None:
    # The suite runs on several processes; this keeps the tests on the shared PostgreSQL and Redis to one.
    config.pluginmanager.register(Plugin(), "keel-parallel")


# --- the databases, prepared once per run ------------------------------------------------------
@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sqlite-template")
    path = directory / "keel.db"
    upgrade(base_settings(directory, database_url=f"sqlite+aiosqlite:///{path}"))
    return path


async def _ensure_database(url: str) -> None:
    target = make_url(url)
    admin = create_async_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            exists = await connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
            )
            if not exists:
                await connection.execute(text(f'CREATE DATABASE "{target.database}"'))
    finally:
        await admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("KEEL_TEST_DATABASE_URL")
    if not url:
        unavailable(
            "PostgreSQL tests need KEEL_TEST_DATABASE_URL (e.g. postgresql+asyncpg://postgres@127.0.0.1/keel_test)"
        )
    assert url is not None
    try:
        asyncio.run(_ensure_database(url))
    except OSError as exc:
        unavailable(f"PostgreSQL at KEEL_TEST_DATABASE_URL is unreachable: {exc}")
    upgrade(base_settings(Path("/nonexistent"), database_url=url))
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("KEEL_TEST_REDIS_URL")
    if not url:
        unavailable("Redis tests need KEEL_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/15)")
    assert url is not None
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at KEEL_TEST_REDIS_URL is unreachable: {exc}")
    return url


# Every table but Alembic's, children before parents, and the sequences; read once per process.
EMPTYING_QUERIES = {
    "tables": """
        SELECT c.relname FROM pg_class c
        WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
          AND c.relname <> 'alembic_version'
    """,
    "references": """
        SELECT child.relname, parent.relname FROM pg_constraint k
        JOIN pg_class child ON child.oid = k.conrelid JOIN pg_class parent ON parent.oid = k.confrelid
        WHERE k.contype = 'f' AND k.connamespace = current_schema()::regnamespace
    """,
    "sequences": "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()",
}
_emptying: dict[str, str] = {}


async def _emptying_script(connection: asyncpg.Connection) -> str:
    tables = [row[0] for row in await connection.fetch(EMPTYING_QUERIES["tables"])]
    # A table is emptied after every table that refers to it.
    referrers: dict[str, set[str]] = {table: set() for table in tables}
    for child, parent in await connection.fetch(EMPTYING_QUERIES["references"]):
        if child != parent and parent in referrers:
            referrers[parent].add(child)
    order = graphlib.TopologicalSorter(referrers).static_order()
    sequences = [row[0] for row in await connection.fetch(EMPTYING_QUERIES["sequences"])]
    return "".join(
        [*(f'DELETE FROM "{table}";' for table in order), *(f'ALTER SEQUENCE "{name}" RESTART;' for name in sequences)]
    )


async def reset_postgres(url: str) -> None:
    """Empty the test database: every row gone, every id counting from 1 again, the schema kept.

    One DELETE a table (the tables are a few rows each) and one restart a sequence, sent as one
    script on one plain connection: about 6 ms, where TRUNCATE ... CASCADE through an engine took
    90, on each of the suite's PostgreSQL tests.
    """
    connection = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        script = _emptying.get(url)
        if script is None:
            script = _emptying[url] = await _emptying_script(connection)
        # Several statements without parameters: one simple query, one implicit transaction.
        await connection.execute(script)
    finally:
        await connection.close()


async def reset_redis(url: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


# --- per test ----------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every test that uses the app runs once per backend: SQLite alone, PostgreSQL with Redis."""
    return str(request.param)


@pytest.fixture
def backend_urls(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """Resolve the session-wide services here, outside any running event loop."""
    if backend == "sqlite":
        return {"sqlite_template": str(request.getfixturevalue("sqlite_template"))}
    return {"database_url": request.getfixturevalue("postgres_url"), "redis_url": request.getfixturevalue("redis_url")}


@pytest.fixture
async def settings(backend_urls: dict[str, str], tmp_path: Path) -> Settings:
    if "sqlite_template" in backend_urls:
        path = tmp_path / "keel.db"
        shutil.copyfile(backend_urls["sqlite_template"], path)
        return base_settings(tmp_path, database_url=f"sqlite+aiosqlite:///{path}")
    await reset_postgres(backend_urls["database_url"])
    await reset_redis(backend_urls["redis_url"])
    return base_settings(tmp_path, **backend_urls)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51000))
    # The user agent `factories.login` sends: one test's requests come from one device (a sign-in
    # from another is a new device, and mails its owner).
    headers = {"User-Agent": "pytest-browser/1.0"}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers) as http:
        yield http


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No KEEL_* variable, .env file or cached settings from the machine running the tests leak in."""
    from keel.core.config import get_settings

    for name in list(os.environ):
        if name.upper().startswith("KEEL_"):
            monkeypatch.delenv(name)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    """A controllable wall clock: `clock.shift(timedelta(days=8))` moves every `now()` forward."""
    with time_machine.travel(datetime.now(UTC), tick=True) as traveller:
        yield traveller
