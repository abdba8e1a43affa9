"""The `keel` command: help, migrations, creating administrators, refusing bad configuration."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner, Result

from keel import cli
from keel.core.config import Settings, get_settings
from keel.core.markdown import RENDERER_VERSION
from keel.main import create_app
from tests.factories import Account, create_user, login

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "tidal-Marmot-quarry-42"
OTHER_PASSWORD = "lantern-Osprey-gravel-77"
CREATED = re.compile(r"administrator (?P<email>\S+) \(id (?P<id>\d+)\) is ready")


pytestmark = pytest.mark.usefixtures("isolated_env")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def run(data_dir: Path) -> RunCli:
    return RunCli(data_dir)


@dataclass
class RunCli:
    data_dir: Path

    def __call__(self, *args: str, input: str | None = None, **env: str | None) -> Result:
        get_settings.cache_clear()
        environment: dict[str, str | None] = {"KEEL_DATA_DIR": str(self.data_dir), "KEEL_LOG_LEVEL": "WARNING"}
        environment.update(env)
        return CliRunner().invoke(cli.app, list(args), env=environment, input=input)

    @property
    def settings(self) -> Settings:
        """What the command used: the same data folder, so the same database and secret."""
        return Settings(data_dir=self.data_dir, log_level="WARNING")

    @property
    def database(self) -> Path:
        return self.data_dir / "keel.db"


@dataclass
class SignIn:
    status: int
    me: dict[str, object] | None = None
    admin_list_status: int | None = None


async def _sign_in(settings: Settings, email: str, password: str) -> SignIn:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.post("/api/v1/auth/login", data={"username": email, "password": password})
            if response.status_code != 200:
                return SignIn(response.status_code)
            headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
            me = await http.get("/api/v1/users/me", headers=headers)
            assert me.status_code == 200, me.text
            listing = await http.get("/api/v1/admin/users", headers=headers)
            return SignIn(200, me.json(), listing.status_code)


def sign_in(settings: Settings, email: str, password: str) -> SignIn:
    return asyncio.run(_sign_in(settings, email, password))


def users(database: Path) -> list[tuple[int, str, str, str, int, int]]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            'SELECT id, email, username, role, is_verified, is_active FROM "user" ORDER BY id'
        ).fetchall()
    connection.close()
    return [tuple(row) for row in rows]


def created_id(result: Result, email: str = ADMIN_EMAIL) -> int:
    assert result.exit_code == 0, result.output
    match = CREATED.search(result.stdout)
    assert match is not None, result.output
    assert match["email"] == email
    return int(match["id"])


class TestHelp:
    def test_lists_the_commands(self, run: RunCli) -> None:
        result = run("--help")

        assert result.exit_code == 0, result.output
        for command in ("serve", "migrate", "create-admin"):
            assert command in result.stdout

    @pytest.mark.parametrize(("command", "expected"), [("migrate", "REVISION"), ("create-admin", "EMAIL")])
    def test_each_command_has_help(self, run: RunCli, command: str, expected: str) -> None:
        result = run(command, "--help")

        assert result.exit_code == 0, result.output
        assert expected in result.stdout


class TestMigrate:
    def test_creates_the_sqlite_database_in_a_fresh_data_dir(self, run: RunCli) -> None:
        assert not run.data_dir.exists()

        result = run("migrate")

        assert result.exit_code == 0, result.output
        assert "database at head" in result.stdout
        assert run.database.is_file()
        with sqlite3.connect(run.database) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        connection.close()
        assert {"user", "user_session", "refresh_token", "alembic_version"} <= tables
        assert len(version) == 1

    def test_is_idempotent(self, run: RunCli) -> None:
        assert run("migrate").exit_code == 0

        again = run("migrate")

        assert again.exit_code == 0, again.output
        assert users(run.database) == []


class TestServeMigratesInAChild:
    """`keel serve` migrates in a child process, so the process that goes on to serve never loads Alembic."""

    SCRIPT = (
        "import sys\n"
        "from keel.cli import _migrate_in_child\n"
        "from keel.core.config import get_settings\n"
        "_migrate_in_child(get_settings())\n"
        "print('alembic loaded:', 'alembic' in sys.modules, 'migrations loaded:', 'keel.migrations' in sys.modules)\n"
    )

    def _run(self, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
        environment = {**os.environ, "KEEL_DATA_DIR": str(data_dir), "KEEL_LOG_LEVEL": "WARNING", **env}
        environment = {key: value for key, value in environment.items() if value}
        return subprocess.run(
            [sys.executable, "-c", self.SCRIPT],
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def test_the_database_is_migrated_and_the_parent_never_imports_alembic(self, run: RunCli) -> None:
        done = self._run(run.data_dir)

        assert done.returncode == 0, done.stderr
        assert "alembic loaded: False migrations loaded: False" in done.stdout
        with sqlite3.connect(run.database) as connection:
            version = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        connection.close()
        assert len(version) == 1
        assert run("migrate").exit_code == 0  # nothing left to do, and nothing broken
        assert users(run.database) == []

    def test_a_failed_migration_stops_serve_with_a_clear_message(self, run: RunCli, tmp_path: Path) -> None:
        # A database file that is not a database: the child fails, and the parent must not go on to serve.
        run.data_dir.mkdir(parents=True)
        (run.data_dir / "keel.db").write_bytes(b"not a database " * 100)

        done = self._run(run.data_dir)

        assert done.returncode == 1
        assert "keel: migrating the database failed (exit code 1); see the log above" in done.stderr
        assert "alembic loaded" not in done.stdout


class TestPrune:
    def test_prunes_old_activity_and_says_what_went(self, run: RunCli) -> None:
        assert run("migrate").exit_code == 0
        with sqlite3.connect(run.database) as connection:
            connection.execute(
                "INSERT INTO user (email, username, full_name, hashed_password, is_active, is_verified, role,"
                " created_at, updated_at, version) VALUES ('old@example.com', 'old', NULL, 'x', 1, 1, 'user',"
                " '2020-01-01 00:00:00', '2020-01-01 00:00:00', 1)"
            )
            for created_at in ("2020-01-01 00:00:00.000000", "2999-01-01 00:00:00.000000"):
                connection.execute(
                    "INSERT INTO activity (user_id, type, created_at, detail) VALUES (1, 'sign_in', ?, '{}')",
                    (created_at,),
                )
        connection.close()

        result = run("prune")

        assert result.exit_code == 0, result.output
        assert "pruned: 1 activity, 0 known devices, 0 sessions, 0 refresh tokens, 0 sent emails" in result.stdout
        with sqlite3.connect(run.database) as connection:
            left = connection.execute("SELECT created_at FROM activity").fetchall()
        connection.close()
        assert left == [("2999-01-01 00:00:00.000000",)]


class TestPostsRerender:
    def _rows(self, run: RunCli) -> list[tuple[object, ...]]:
        with sqlite3.connect(run.database) as connection:
            rows = connection.execute(
                "SELECT content_html, excerpt, reading_minutes, render_version, version FROM post ORDER BY id"
            ).fetchall()
        connection.close()
        return rows

    def test_the_migration_renders_existing_posts_and_rerender_renders_stale_ones(self, run: RunCli) -> None:
        assert run("migrate", "8a3c5e7f9b12").exit_code == 0
        with sqlite3.connect(run.database) as connection:
            connection.execute(
                "INSERT INTO user (email, username, full_name, hashed_password, is_active, is_verified, role,"
                " created_at, updated_at, version) VALUES ('w@example.com', 'w', NULL, 'x', 1, 1, 'user',"
                " '2020-01-01 00:00:00', '2020-01-01 00:00:00', 1)"
            )
            for content in ("**old** post <script>x</script>", "[l](javascript:alert(1))"):
                connection.execute(
                    "INSERT INTO post (author_id, title, content, published, created_at, updated_at, version)"
                    " VALUES (1, 't', ?, 1, '2020-01-01 00:00:00', '2020-01-01 00:00:00', 1)",
                    (content,),
                )
        connection.close()

        assert run("migrate").exit_code == 0
        migrated = self._rows(run)
        assert migrated[0] == (
            "<p><strong>old</strong> post &lt;script&gt;x&lt;/script&gt;</p>\n",
            "old post <script>x</script>",
            1,
            RENDERER_VERSION,
            1,
        )
        assert "href" not in str(migrated[1][0])

        with sqlite3.connect(run.database) as connection:
            connection.execute("UPDATE post SET content_html = '', render_version = 0 WHERE id = 1")
            # A comment made by older rules (here: none at all).
            connection.execute(
                "INSERT INTO comment (post_id, author_id, content, content_html, render_version, deleted,"
                " created_at, updated_at, version) VALUES (1, 1, '~~no~~ <b>x</b>', '', 0, 0,"
                " '2020-01-01 00:00:00', '2020-01-01 00:00:00', 3)"
            )
        connection.close()
        result = run("posts", "rerender")

        assert result.exit_code == 0, result.output
        assert "rerendered: 1 posts, 1 comments" in result.stdout
        assert self._rows(run) == migrated  # the row's version is not an edit's: If-Match still holds
        with sqlite3.connect(run.database) as connection:
            comment = connection.execute("SELECT content_html, render_version, version FROM comment").fetchone()
        connection.close()
        assert comment == ("<p><s>no</s> &lt;b&gt;x&lt;/b&gt;</p>\n", RENDERER_VERSION, 3)
        again = run("posts", "rerender")
        assert "rerendered: 0 posts, 0 comments" in again.stdout


class TestCreateAdmin:
    def test_creates_a_verified_admin_who_can_sign_in(self, run: RunCli) -> None:
        result = run("create-admin", ADMIN_EMAIL, KEEL_ADMIN_PASSWORD=ADMIN_PASSWORD)

        user_id = created_id(result)
        assert ADMIN_PASSWORD not in result.output
        assert users(run.database) == [(user_id, ADMIN_EMAIL, "admin", "admin", 1, 1)]
        signed = sign_in(run.settings, ADMIN_EMAIL, ADMIN_PASSWORD)
        assert signed.status == 200
        assert signed.me is not None
        assert signed.me["id"] == user_id
        assert signed.me["role"] == "admin"
        assert signed.me["is_verified"] is True
        assert signed.me["is_active"] is True
        assert signed.admin_list_status == 200

    def test_email_is_stored_lower_cased(self, run: RunCli) -> None:
        result = run("create-admin", "Root.Admin@Example.COM", KEEL_ADMIN_PASSWORD=ADMIN_PASSWORD)

        created_id(result, "root.admin@example.com")
        assert sign_in(run.settings, "root.admin@example.com", ADMIN_PASSWORD).status == 200

    def test_the_username_option_is_used(self, run: RunCli) -> None:
        result = run("create-admin", ADMIN_EMAIL, "--username", "chief", KEEL_ADMIN_PASSWORD=ADMIN_PASSWORD)

        user_id = created_id(result)
        assert users(run.database) == [(user_id, ADMIN_EMAIL, "chief", "admin", 1, 1)]

    def test_the_password_can_be_typed_at_the_prompt(self, run: RunCli) -> None:
        result = run("create-admin", ADMIN_EMAIL, input=f"{ADMIN_PASSWORD}\n{ADMIN_PASSWORD}\n")

        created_id(result)
        assert ADMIN_PASSWORD not in result.output
        assert sign_in(run.settings, ADMIN_EMAIL, ADMIN_PASSWORD).status == 200

    def test_running_it_again_keeps_one_admin_with_the_new_password(self, run: RunCli) -> None:
        first = created_id(run("create-admin", ADMIN_EMAIL, KEEL_ADMIN_PASSWORD=ADMIN_PASSWORD))

        second = created_id(run("create-admin", ADMIN_EMAIL, KEEL_ADMIN_PASSWORD=OTHER_PASSWORD))

        assert second == first
        assert users(run.database) == [(first, ADMIN_EMAIL, "admin", "admin", 1, 1)]
        assert sign_in(run.settings, ADMIN_EMAIL, ADMIN_PASSWORD).status == 401
        signed = sign_in(run.settings, ADMIN_EMAIL, OTHER_PASSWORD)
        assert signed.me is not None
        assert signed.me["role"] == "admin"

    def test_promotes_an_existing_account_and_ends_its_sessions(self, run: RunCli) -> None:
        assert run("migrate").exit_code == 0
        settings = run.settings

        async def existing_user_with_a_session() -> tuple[Account, str]:
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                account = await create_user(
                    app, email="ada@example.com", username="ada", is_verified=False, password=ADMIN_PASSWORD
                )
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                    tokens = await login(http, account)
            return account, tokens.access

        async def status_of(token: str) -> int:
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                    response = await http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
                    return response.status_code

        account, old_token = asyncio.run(existing_user_with_a_session())
        assert asyncio.run(status_of(old_token)) == 200

        result = run("create-admin", "Ada@Example.com", KEEL_ADMIN_PASSWORD=OTHER_PASSWORD)

        assert created_id(result, "ada@example.com") == account.id
        assert users(run.database) == [(account.id, "ada@example.com", "ada", "admin", 1, 1)]
        assert asyncio.run(status_of(old_token)) == 401
        signed = sign_in(settings, "ada@example.com", OTHER_PASSWORD)
        assert signed.me is not None
        assert (signed.me["role"], signed.me["is_verified"]) == ("admin", True)
        assert signed.admin_list_status == 200

    def test_a_taken_username_fails_with_a_hint(self, run: RunCli) -> None:
        created_id(run("create-admin", "admin@one.example", KEEL_ADMIN_PASSWORD=ADMIN_PASSWORD), "admin@one.example")

        clash = run("create-admin", "admin@two.example", KEEL_ADMIN_PASSWORD=ADMIN_PASSWORD)

        assert clash.exit_code == 1, clash.output
        assert "--username" in clash.stderr
        assert "Traceback" not in clash.output
        assert len(users(run.database)) == 1

    @pytest.mark.parametrize(
        "password",
        ["password123", "short", "admin@example.com", "x" * 129, "letmein123", "Summer2024!"],
        ids=["common", "too-short", "same-as-email", "too-long", "guessable", "guessable-capitalized"],
    )
    def test_a_weak_password_is_refused(self, run: RunCli, password: str) -> None:
        result = run("create-admin", ADMIN_EMAIL, KEEL_ADMIN_PASSWORD=password)

        assert result.exit_code != 0
        assert "password" in result.stderr.lower()
        assert result.stderr.startswith("keel: ")
        assert "Traceback" not in result.output
        assert password not in result.output
        assert not run.database.exists() or users(run.database) == []

    def test_an_invalid_email_is_refused(self, run: RunCli) -> None:
        result = run("create-admin", "not-an-email", KEEL_ADMIN_PASSWORD=ADMIN_PASSWORD)

        assert result.exit_code != 0
        assert "email" in result.stderr.lower()
        assert not run.database.exists() or users(run.database) == []


class TestConfigurationErrors:
    @pytest.fixture(autouse=True)
    def no_server(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def refuse(*_args: object, **_kwargs: object) -> None:
            raise AssertionError("serve started a server despite a configuration error")

        monkeypatch.setattr(uvicorn, "run", refuse)

    @pytest.mark.parametrize(
        "args", [("migrate",), ("create-admin", ADMIN_EMAIL), ("serve",)], ids=["migrate", "create-admin", "serve"]
    )
    @pytest.mark.parametrize(
        ("secret", "fragment"),
        [(None, "must be set"), ("changeme", "placeholder"), ("too-short", "at least 32 bytes")],
        ids=["missing", "placeholder", "short"],
    )
    def test_production_with_a_bad_secret_exits_2_with_one_line(
        self, run: RunCli, args: tuple[str, ...], secret: str | None, fragment: str
    ) -> None:
        result = run(
            *args,
            KEEL_ENVIRONMENT="production",
            KEEL_SECRET_KEY=secret,
            KEEL_DATABASE_URL="postgresql+asyncpg://keel@127.0.0.1:1/keel",
            KEEL_ADMIN_PASSWORD=ADMIN_PASSWORD,
        )

        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("keel: configuration error: ")
        assert "KEEL_SECRET_KEY" in lines[0]
        assert fragment in lines[0]
        assert result.stdout == ""
        assert not run.data_dir.exists()

    def test_production_on_sqlite_exits_2_naming_the_setting(self, run: RunCli) -> None:
        result = run(
            "migrate", KEEL_ENVIRONMENT="production", KEEL_SECRET_KEY="0123456789abcdef0123456789abcdef-real-key"
        )

        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1
        assert result.stderr.startswith("keel: configuration error: ")
        assert "KEEL_DATABASE_URL" in result.stderr
        assert not run.database.exists()

    def test_an_invalid_value_exits_2_naming_the_setting(self, run: RunCli) -> None:
        result = run("migrate", KEEL_ACCESS_TOKEN_TTL_SECONDS="five")

        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("keel: configuration error: KEEL_ACCESS_TOKEN_TTL_SECONDS")
        assert result.stderr.count("\n") == 1


class TestServePublicUrl:
    """Outside production, mailed links follow the address `keel serve` listens on unless one is configured."""

    @pytest.fixture
    def served(self, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
        """What the app would see: the public URL it builds links from, read as the app reads it."""
        seen: dict[str, str] = {}

        def fake_run(*_args: object, **_kwargs: object) -> None:
            seen["public_url"] = get_settings().public_url

        monkeypatch.setattr(uvicorn, "run", fake_run)
        monkeypatch.setattr("keel.cli._migrate_in_child", lambda *_args, **_kwargs: None)
        return seen

    @pytest.mark.parametrize(
        ("host", "expected"),
        [
            ("127.0.0.1", "http://127.0.0.1:8771"),
            ("0.0.0.0", "http://127.0.0.1:8771"),
            ("::", "http://[::1]:8771"),
            ("::1", "http://[::1]:8771"),
            ("localhost", "http://localhost:8771"),
            ("keel.internal", "http://keel.internal:8771"),
        ],
    )
    def test_the_default_follows_host_and_port(
        self, run: RunCli, served: dict[str, str], host: str, expected: str
    ) -> None:
        # KEEL_PUBLIC_URL=None: unset while serving, and put back as it was afterwards.
        result = run("serve", "--host", host, "--port", "8771", KEEL_PUBLIC_URL=None)

        assert result.exit_code == 0, result.output
        assert served["public_url"] == expected

    def test_the_default_port_gives_the_documented_default(self, run: RunCli, served: dict[str, str]) -> None:
        result = run("serve", KEEL_PUBLIC_URL=None)

        assert result.exit_code == 0, result.output
        assert served["public_url"] == "http://127.0.0.1:8000"

    def test_a_configured_public_url_wins(self, run: RunCli, served: dict[str, str]) -> None:
        result = run("serve", "--port", "8771", KEEL_PUBLIC_URL="https://keel.example.com/")

        assert result.exit_code == 0, result.output
        assert served["public_url"] == "https://keel.example.com"

    def test_a_public_url_from_the_env_file_wins(self, run: RunCli, served: dict[str, str]) -> None:
        Path(".env").write_text("KEEL_PUBLIC_URL=https://keel.example.com\n")

        result = run("serve", "--port", "8771", KEEL_PUBLIC_URL=None)

        assert result.exit_code == 0, result.output
        assert served["public_url"] == "https://keel.example.com"

    def test_production_keeps_its_rule(self, run: RunCli, served: dict[str, str]) -> None:
        result = run(
            "serve",
            "--port",
            "8771",
            KEEL_PUBLIC_URL=None,
            KEEL_ENVIRONMENT="production",
            KEEL_SECRET_KEY="0123456789abcdef0123456789abcdef-real-key",
            KEEL_DATABASE_URL="postgresql+asyncpg://keel@127.0.0.1:1/keel",
            KEEL_SMTP_HOST="127.0.0.1",
        )

        assert result.exit_code == 0, result.output
        assert served["public_url"] == "http://127.0.0.1:8000"
