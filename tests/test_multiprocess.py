"""Two `keel serve` processes (two workers each) and a `keel worker` on PostgreSQL + Redis,
under a short mixed load: no 5xx anywhere, and every revocation holds on both at once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import make_url

from tests.conftest import reset_postgres, reset_redis
from tests.processes import ServerProcess, free_port, keel_env, serve_command, wait_ready

pytestmark = pytest.mark.slow  # five real processes

USERS = 12  # inside the default limits: 20 logins a minute per address, 30 refreshes per session
PASSWORD = "steady as she goes 1234"


@dataclass
class Cluster:
    urls: list[str]
    processes: list[ServerProcess] = field(default_factory=list)

    def tails(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.tail(2000)}" for p in self.processes)


@pytest.fixture
def cluster(postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    asyncio.run(reset_postgres(postgres_url))
    asyncio.run(reset_redis(redis_url))
    env = keel_env(
        tmp_path / "data",
        KEEL_DATABASE_URL=postgres_url,
        KEEL_REDIS_URL=redis_url,
        KEEL_LOG_FORMAT="json",
        KEEL_EMAIL_DELIVERY="celery",
        # Every sign-up comes from 127.0.0.1; the other limits keep their production values.
        KEEL_RATE_LIMIT_REGISTER="100/hour",
    )
    ports = [free_port(), free_port()]
    commands = [
        *(serve_command(port, workers=2) for port in ports),
        [sys.executable, "-m", "keel", "worker", "--concurrency", "1"],
    ]
    running = Cluster(urls=[f"http://127.0.0.1:{port}" for port in ports])
    try:
        for n, command in enumerate(commands):
            running.processes.append(ServerProcess(command, env=env, log_path=tmp_path / f"process-{n}.log"))
        deadline = time.monotonic() + 90
        for url in running.urls:
            # One deadline for the whole cluster, as before: each wait gets what is left of it.
            wait_ready(
                f"{url}/ready",
                running.processes,
                timeout=max(0.0, deadline - time.monotonic()),
                what="the cluster",
                logs=running.tails,
            )
        yield running
    finally:
        for process in running.processes:
            if process.running():
                os.killpg(process.pid, signal.SIGTERM)
        for process in running.processes:
            process.reap()


@dataclass
class Member:
    email: str
    access: str = ""
    refresh: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


async def fresh(url: str, method: str, path: str, **kwargs: object) -> httpx.Response:
    # A new client per request is a new TCP connection, which either worker may accept.
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        return await http.request(method, path, **kwargs)  # type: ignore[arg-type]


async def journey(member: Member, urls: list[str], statuses: Counter[int], rng: random.Random) -> None:
    """Sign up and in, then mixed reads, writes and refreshes across both servers."""

    def pick() -> str:
        return rng.choice(urls)

    async def call(method: str, path: str, **kwargs: object) -> httpx.Response:
        response = await fresh(pick(), method, path, **kwargs)
        statuses[response.status_code] += 1
        return response

    username = member.email.split("@")[0]
    registered = await call(
        "POST", "/api/v1/auth/register", json={"email": member.email, "username": username, "password": PASSWORD}
    )
    assert registered.status_code == 202, registered.text
    signed_in = await call("POST", "/api/v1/auth/login", data={"username": member.email, "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    member.access, member.refresh = signed_in.json()["access_token"], signed_in.json()["refresh_token"]
    for step in range(24):
        if step % 8 == 7:
            refreshed = await call("POST", "/api/v1/auth/refresh", json={"refresh_token": member.refresh})
            assert refreshed.status_code == 200, refreshed.text
            member.access, member.refresh = refreshed.json()["access_token"], refreshed.json()["refresh_token"]
        elif step % 3 == 0:
            created = await call("POST", "/api/v1/todos", json={"title": f"step {step}"}, headers=member.headers)
            assert created.status_code == 201, created.text
        else:
            path = rng.choice(
                ["/api/v1/todos?limit=20", "/api/v1/users/me", "/api/v1/posts?limit=20", "/api/v1/auth/sessions"]
            )
            read = await call("GET", path, headers=member.headers)
            assert read.status_code == 200, read.text


async def refused_everywhere(member: Member, urls: list[str]) -> list[int]:
    """The revoked access token, on fresh connections to every server (and so both workers)."""
    answers = await asyncio.gather(
        *(fresh(url, "GET", "/api/v1/users/me", headers=member.headers) for url in urls for _ in range(8))
    )
    return [answer.status_code for answer in answers]


async def load(urls: list[str]) -> tuple[Counter[int], list[Member]]:
    statuses: Counter[int] = Counter()
    members = [Member(email=f"crew_{n}@example.com") for n in range(USERS)]
    await asyncio.gather(*(journey(m, urls, statuses, random.Random(n)) for n, m in enumerate(members)))
    return statuses, members


def test_two_servers_and_a_worker_under_mixed_load(cluster: Cluster, postgres_url: str) -> None:
    statuses, members = asyncio.run(load(cluster.urls))
    assert not [status for status in statuses if status >= 500], (statuses, cluster.tails())

    async def revoke_and_check() -> dict[str, list[int]]:
        outcome: dict[str, list[int]] = {}
        # Logout on one server, logout-all on the other, a password change on either.
        logout, logout_all, change = members[0], members[1], members[2]
        assert (await fresh(cluster.urls[0], "POST", "/api/v1/auth/logout", headers=logout.headers)).status_code == 204
        assert (
            await fresh(cluster.urls[1], "POST", "/api/v1/auth/logout-all", headers=logout_all.headers)
        ).status_code == 204
        other_session = await fresh(
            cluster.urls[0], "POST", "/api/v1/auth/login", data={"username": change.email, "password": PASSWORD}
        )
        changed = await fresh(
            cluster.urls[1],
            "POST",
            "/api/v1/auth/password-change",
            json={"current_password": PASSWORD, "new_password": "a brand new heading 5678"},
            headers={"Authorization": f"Bearer {other_session.json()['access_token']}"},
        )
        assert changed.status_code == 204
        for name, member in (("logout", logout), ("logout-all", logout_all), ("password-change", change)):
            outcome[name] = await refused_everywhere(member, cluster.urls)
            stale = await fresh(cluster.urls[1], "POST", "/api/v1/auth/refresh", json={"refresh_token": member.refresh})
            outcome[f"{name} refresh"] = [stale.status_code]
        # Everyone else is untouched.
        outcome["others"] = [
            (await fresh(url, "GET", "/api/v1/users/me", headers=member.headers)).status_code
            for member in members[3:]
            for url in cluster.urls
        ]
        return outcome

    outcome = asyncio.run(revoke_and_check())
    for name in ("logout", "logout-all", "password-change"):
        assert outcome[name] == [401] * 16, (name, outcome[name])
        assert outcome[f"{name} refresh"] == [401], name
    assert outcome["others"] == [200] * (2 * (USERS - 3))

    # The Celery worker delivered every email queued: a verification per sign-up and the
    # password-change notice.
    expected = USERS + 1
    assert asyncio.run(_wait_for_outbox(postgres_url, expected=expected)) == {"sent": expected}, cluster.tails()


async def _wait_for_outbox(url: str, *, expected: int) -> dict[str, int]:
    target = make_url(url)
    connection = await asyncpg.connect(
        host=target.host, port=target.port or 5432, user=target.username, database=target.database
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            rows = await connection.fetch("SELECT status, count(*) FROM email_outbox GROUP BY status")
            counts = {str(row[0]): int(row[1]) for row in rows}
            if counts.get("sent") == expected or time.monotonic() > deadline:
                return counts
            await asyncio.sleep(0.25)
    finally:
        await connection.close()
