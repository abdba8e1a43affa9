"""/ready reports the Celery broker when Celery delivers email."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from keel.main import create_app
from tests.conftest import base_settings
from tests.factories import assert_problem


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _ready(tmp_path: Path, broker_url: str) -> httpx.Response:
    settings = base_settings(
        tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'keel.db'}",
        email_delivery="celery",
        celery_broker_url=broker_url,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.get("/ready")


async def test_an_unreachable_broker_makes_the_service_not_ready(tmp_path: Path) -> None:
    response = await _ready(tmp_path, f"redis://127.0.0.1:{_closed_port()}/0")

    body = assert_problem(response, 503, "not_ready")
    assert body["checks"] == {"database": "ok", "broker": "unavailable"}
    assert "broker" in str(body["detail"])


async def test_a_reachable_broker_is_ready(tmp_path: Path, redis_url: str) -> None:
    response = await _ready(tmp_path, redis_url)

    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}
