"""What Keel writes to its data folder is readable by its own user only.

The folder holds the SQLite database (password hashes, sessions), the generated development
secret and, with file mail, .eml files carrying live verification and reset links.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keel.core.config import SECRET_FILE_NAME, Settings
from keel.main import create_app
from keel.migrations import upgrade
from tests.conftest import base_settings

PASSWORD = "Velvet-harbor-lantern-93"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most hosts run with, which leaves new files readable by everyone."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def first_start(usual_umask: None, isolated_env: None, tmp_path: Path) -> Settings:
    """What a first `keel serve` does before serving: a generated secret, SQLite in the data folder, migrated."""
    settings = base_settings(tmp_path / "fresh" / "data", secret_key=None)
    upgrade(settings)
    return settings


async def test_the_data_folder_and_everything_in_it_is_private(first_start: Settings) -> None:
    settings, data_dir = first_start, first_start.data_dir
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            body = {"email": "private@example.com", "username": "private", "password": PASSWORD}
            response = await client.post("/api/v1/auth/register", json=body)
            assert response.status_code == 202, response.text
        await app.state.dispatcher.drain()

        database = data_dir / "keel.db"
        journals = [data_dir / "keel.db-wal", data_dir / "keel.db-shm"]
        assert all(path.exists() for path in journals)  # WAL mode, with a connection open
        (eml,) = settings.mail_dir.glob("*.eml")
        assert "verify-email?token=" in eml.read_text()

        assert {str(path.relative_to(data_dir)): oct(mode(path)) for path in [data_dir, settings.mail_dir]} == {
            ".": "0o700",
            "mail": "0o700",
        }
        files = [data_dir / SECRET_FILE_NAME, database, *journals, eml]
        assert {str(path.relative_to(data_dir)): oct(mode(path)) for path in files} == {
            str(path.relative_to(data_dir)): "0o600" for path in files
        }
