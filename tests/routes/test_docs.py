"""The API documentation: its viewers served from this package, and who may see it (KEEL_DOCS)."""

from __future__ import annotations

import os
import re
import subprocess
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from keel.core.config import Settings
from keel.main import create_app
from keel.models import Role
from tests.conftest import base_settings
from tests.factories import assert_problem, create_user, login

PAGES = ["/docs", "/redoc", "/docs/oauth2-redirect"]
REPO = Path(__file__).resolve().parents[2]
DOCS_DIR = REPO / "src" / "keel" / "web" / "docs"
# Every attribute that makes a browser load something.
LOADS = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""")
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)


@asynccontextmanager
async def running(settings: Settings, **changes: object) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings.model_copy(update=changes))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 51000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


def policy(response: httpx.Response) -> dict[str, list[str]]:
    values = response.headers.get_list("content-security-policy")
    assert len(values) == 1, values
    directives = [directive.split() for directive in values[0].split(";")]
    return {name: sources for name, *sources in directives}


class TestServedFromThePackage:
    @pytest.mark.parametrize("path", PAGES)
    async def test_a_page_loads_only_files_of_this_origin(self, client: httpx.AsyncClient, path: str) -> None:
        page = await client.get(path)

        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert not INLINE_SCRIPT.search(page.text), "an inline script"
        assert "<style" not in page.text
        assert " style=" not in page.text
        loaded = LOADS.findall(page.text)
        assert loaded
        for url in loaded:
            assert url.startswith("/static/"), url
            response = await client.get(url)
            assert response.status_code == 200, url
            assert response.headers["cache-control"] == "no-cache"
            assert "etag" in response.headers

    @pytest.mark.parametrize("path", PAGES)
    async def test_the_policy_admits_scripts_from_this_origin_only(self, client: httpx.AsyncClient, path: str) -> None:
        directives = policy(await client.get(path))

        assert directives["script-src"] == ["'self'"]
        assert directives["default-src"] == ["'self'"]
        assert directives["frame-ancestors"] == ["'none'"]
        assert directives["object-src"] == ["'none'"]
        for name, sources in directives.items():
            for source in sources:
                assert not source.startswith("'unsafe-"), (name, source)
                assert not re.match(r"^(https?:|\*|[\w-]+\.[\w.-]+)", source), (name, source)

    async def test_swagger_ui_needs_no_inline_style(self, client: httpx.AsyncClient) -> None:
        for path in ("/docs", "/docs/oauth2-redirect"):
            assert policy(await client.get(path))["style-src"] == ["'self'"]

    async def test_redoc_gets_a_fresh_style_nonce_on_its_own_script_every_time(self, client: httpx.AsyncClient) -> None:
        nonces = []
        for _ in range(2):
            page = await client.get("/redoc")
            styles = policy(page)["style-src"]
            nonce = re.search(r'<script src="/static/docs/redoc-init.js" nonce="([\w-]{24})"></script>', page.text)
            assert nonce is not None
            assert f"'nonce-{nonce.group(1)}'" in styles
            assert [source for source in styles if not source.startswith(("'nonce-", "'sha256-"))] == ["'self'"]
            assert policy(page)["worker-src"] == ["'self'", "blob:"]
            assert page.headers["cache-control"] == "no-store"
            nonces.append(nonce.group(1))

        assert nonces[0] != nonces[1]

    def test_each_vendored_viewer_comes_with_its_licence(self) -> None:
        for viewer, bundle in (("swagger-ui", "swagger-ui-bundle.js"), ("redoc", "redoc.standalone.js")):
            folder = DOCS_DIR / "assets" / viewer
            assert (folder / "LICENSE").read_text().strip(), viewer
            # The notices of the libraries bundled into it.
            assert (folder / f"{bundle}.LICENSE.txt").is_file(), viewer

    @pytest.mark.slow
    def test_the_wheel_ships_every_file_of_the_docs(self, tmp_path: Path) -> None:
        subprocess.run(
            # `uv run` names the uv that runs the suite; the README's commands do not put one on PATH.
            [os.environ.get("UV", "uv"), "build", "--wheel", "--out-dir", str(tmp_path), str(REPO)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        (wheel,) = tmp_path.glob("keel-*.whl")
        shipped = set(zipfile.ZipFile(wheel).namelist())

        source = REPO / "src"
        expected = {path.relative_to(source).as_posix() for path in DOCS_DIR.rglob("*") if path.is_file()}
        assert expected
        assert expected <= shipped


class TestAccess:
    async def test_public_serves_the_schema_to_anyone(self, settings: Settings) -> None:
        async with running(settings, docs="public") as (_, http):
            response = await http.get("/openapi.json")

        assert response.status_code == 200
        assert response.json()["info"]["title"] == "Keel"

    @pytest.mark.parametrize("path", [*PAGES, "/openapi.json", "/static/docs/swagger-init.js"])
    async def test_off_answers_404_for_all_of_it(self, settings: Settings, path: str) -> None:
        async with running(settings, docs="off") as (_, http):
            response = await http.get(path)

        assert_problem(response, 404, "not_found")

    @pytest.mark.parametrize("path", PAGES)
    async def test_admin_serves_the_pages_to_anyone(self, settings: Settings, path: str) -> None:
        # They are the same static files for everyone; only the schema they show is kept back.
        async with running(settings, docs="admin") as (_, http):
            response = await http.get(path)

        assert response.status_code == 200

    async def test_admin_serves_the_schema_only_to_an_administrators_token(self, settings: Settings) -> None:
        async with running(settings, docs="admin") as (app, http):
            member = await login(http, await create_user(app))
            admin = await login(http, await create_user(app, role=Role.ADMIN))

            anonymous = await http.get("/openapi.json")
            forged = await http.get("/openapi.json", headers={"Authorization": "Bearer not-a-token"})
            refused = await http.get("/openapi.json", headers=member.headers)
            served = await http.get("/openapi.json", headers=admin.headers)

        assert_problem(anonymous, 401, "not_authenticated")
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert_problem(forged, 401, "invalid_token")
        assert_problem(refused, 403, "forbidden")
        assert served.status_code == 200
        assert "/api/v1/users/me" in served.json()["paths"]
        assert served.headers["cache-control"] == "private, no-store"


@pytest.mark.usefixtures("isolated_env")
class TestDefaults:
    @pytest.mark.parametrize(("environment", "expected"), [("development", "public"), ("test", "public")])
    def test_public_outside_production(self, tmp_path: Path, environment: str, expected: str) -> None:
        assert base_settings(tmp_path, environment=environment).docs_access == expected

    def test_admin_in_production(self, tmp_path: Path) -> None:
        settings = production_settings(tmp_path)

        assert settings.docs_access == "admin"

    @pytest.mark.parametrize("value", ["public", "admin", "off"])
    def test_keel_docs_overrides_it(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
        monkeypatch.setenv("KEEL_DOCS", value)

        assert production_settings(tmp_path).docs_access == value

    def test_refuses_anything_else(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        from keel.core.config import ConfigError, load_settings

        monkeypatch.setenv("KEEL_DOCS", "private")

        with pytest.raises(ConfigError, match="KEEL_DOCS"):
            load_settings(environment="test", data_dir=tmp_path)


def production_settings(tmp_path: Path) -> Settings:
    return Settings(
        environment="production",
        data_dir=tmp_path,
        secret_key="0123456789abcdef0123456789abcdef-a-real-random-key",  # type: ignore[arg-type]
        database_url="postgresql+asyncpg://keel@db.internal:5432/keel",
        smtp_host="smtp.internal",
    )
