"""`keel serve --workers 2` as a real process: a logout is honoured by both workers at once."""

from __future__ import annotations

import email
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from keel.main import create_app
from tests.conftest import base_settings, reset_postgres, reset_redis
from tests.factories import create_user
from tests.processes import ServerProcess, free_port, keel_env, serve_command, serving

pytestmark = pytest.mark.slow

ME = "/api/v1/users/me"


@dataclass
class Server:
    base_url: str
    log_path: Path
    server: ServerProcess

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.server.process

    def access_lines(self) -> list[dict[str, object]]:
        lines = []
        for raw in self.log_path.read_text().splitlines():
            try:
                entry = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and entry.get("event") == "request":
                lines.append(entry)
        return lines


@pytest.fixture
def server(postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[Server]:
    import asyncio

    asyncio.run(reset_postgres(postgres_url))
    asyncio.run(reset_redis(redis_url))
    port = free_port()
    env = {
        **os.environ,  # this test has always kept the KEEL_* variables of the machine running it
        **keel_env(tmp_path / "data", KEEL_DATABASE_URL=postgres_url, KEEL_REDIS_URL=redis_url, KEEL_LOG_FORMAT="json"),
    }
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    with serving(serve_command(port, workers=2), env=env, log_path=log_path, ready_url=f"{base_url}/health") as process:
        yield Server(base_url=base_url, log_path=log_path, server=process)


def _pids_answering(server: Server, *, status: int, since: int) -> set[object]:
    return {line["pid"] for line in server.access_lines()[since:] if line["path"] == ME and line["status"] == status}


def _fresh_request(server: Server, headers: dict[str, str]) -> int:
    # A new client per request means a new TCP connection, which either worker may accept.
    with httpx.Client(base_url=server.base_url, timeout=5) as http:
        return http.get(ME, headers=headers).status_code


def test_logout_is_refused_by_every_worker(server: Server, postgres_url: str, redis_url: str, tmp_path: Path) -> None:
    import asyncio

    async def make_account() -> tuple[str, str]:
        app = create_app(base_settings(tmp_path, database_url=postgres_url, redis_url=redis_url))
        async with app.router.lifespan_context(app):
            account = await create_user(app)
        return account.email, account.password

    email, password = asyncio.run(make_account())
    with httpx.Client(base_url=server.base_url, timeout=5) as http:
        response = http.post("/api/v1/auth/login", data={"username": email, "password": password})
        assert response.status_code == 200, response.text
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    # Both workers accept the token before the logout.
    for _ in range(200):
        assert _fresh_request(server, headers) == 200
        if len(_pids_answering(server, status=200, since=0)) == 2:
            break
    assert len(_pids_answering(server, status=200, since=0)) == 2, "requests never reached the second worker"

    with httpx.Client(base_url=server.base_url, timeout=5) as http:
        assert http.post("/api/v1/auth/logout", headers=headers).status_code == 204
    after_logout = len(server.access_lines())

    # And both refuse it right after, on fresh connections.
    for _ in range(200):
        assert _fresh_request(server, headers) == 401
        if len(_pids_answering(server, status=401, since=after_logout)) == 2:
            break
    assert len(_pids_answering(server, status=401, since=after_logout)) == 2

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0


def test_mailed_links_point_at_the_port_keel_serve_listens_on(tmp_path: Path) -> None:
    """No KEEL_PUBLIC_URL, a port other than 8000: the verification link in the .eml opens this server."""
    port = free_port()
    mail_dir = tmp_path / "data" / "mail"
    env = keel_env(tmp_path / "data", KEEL_EMAIL_DELIVERY="in-process")
    base_url = f"http://127.0.0.1:{port}"
    with serving(
        serve_command(port),
        env=env,
        log_path=tmp_path / "serve.log",
        ready_url=f"{base_url}/health",
        cwd=tmp_path,  # no .env of the machine running the tests
    ):
        account = {"email": "port@example.com", "username": "port_follower", "password": "a sturdy keel holds 42 knots"}
        assert httpx.post(f"{base_url}/api/v1/auth/register", json=account, timeout=10).status_code == 202

        deadline = time.monotonic() + 20
        while not list(mail_dir.glob("*.eml")) and time.monotonic() < deadline:
            time.sleep(0.1)
        (mail,) = mail_dir.glob("*.eml")
        message = email.message_from_bytes(mail.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        body = message.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert f"{base_url}/verify-email?token=" in text, text
