"""Route matching: a request tries only the routers whose prefix it is under (keel.routes.PrefixedRouter)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Match

from keel.main import create_app
from keel.routes import PrefixedRouter
from tests.conftest import base_settings


def _scope(method: str, path: str, root_path: str = "") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": root_path, "headers": [], "query_string": b""}


@pytest.fixture
def keel_app(tmp_path: Path) -> FastAPI:
    return create_app(base_settings(tmp_path))


@pytest.fixture
def tried(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The path templates of the routes a match tried, in order."""
    paths: list[str] = []
    original = APIRoute.matches

    def counting(route: APIRoute, scope: Any) -> tuple[Match, Any]:
        paths.append(route.path)
        return original(route, scope)

    monkeypatch.setattr(APIRoute, "matches", counting)
    return paths


def _match(app: FastAPI, method: str, path: str, root_path: str = "") -> Match:
    scope = _scope(method, path, root_path)
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return match
    return Match.NONE


def test_every_api_router_skips_paths_outside_its_prefix(keel_app: FastAPI) -> None:
    """A router added without the class would make every route after it slower again, silently."""
    included = [route.original_router for route in keel_app.router.routes if hasattr(route, "original_router")]
    prefixed = [router for router in included if router.prefix]
    assert len(prefixed) >= 14
    assert all(isinstance(router, PrefixedRouter) for router in prefixed), [
        router.prefix for router in prefixed if not isinstance(router, PrefixedRouter)
    ]


@pytest.mark.parametrize(
    ("method", "path", "family"),
    [
        ("GET", "/api/v1/users/me", "/api/v1/users"),
        ("POST", "/api/v1/auth/refresh", "/api/v1/auth"),
        ("GET", "/api/v1/lists", "/api/v1/lists"),
        ("GET", "/api/v1/admin/users", "/api/v1/admin"),
    ],
)
def test_a_request_tries_only_the_routes_under_its_prefix(
    keel_app: FastAPI, tried: list[str], method: str, path: str, family: str
) -> None:
    assert _match(keel_app, method, path) == Match.FULL
    assert tried, "no route was tried: the counter is not in the path"
    assert all(template.startswith(family) for template in tried), sorted(set(tried))


def test_a_path_under_a_parameterised_prefix_is_still_found(keel_app: FastAPI, tried: list[str]) -> None:
    # The comments router's prefix holds the post id: only "/api/v1/posts/" is literal.
    assert _match(keel_app, "GET", "/api/v1/posts/7/comments") == Match.FULL
    assert any("/comments" in template for template in tried)


def test_the_prefix_is_read_below_the_root_path() -> None:
    """Behind a proxy that strips /keel (uvicorn --root-path), the path still carries it."""
    router = PrefixedRouter(prefix="/api/v1/things")

    @router.get("/{thing_id}")
    async def read(thing_id: int) -> int:
        return thing_id

    app = FastAPI()
    app.include_router(router)
    assert _match(app, "GET", "/keel/api/v1/things/3", root_path="/keel") == Match.FULL
    assert _match(app, "GET", "/keel/api/v1/other/3", root_path="/keel") == Match.NONE


async def test_every_route_still_answers_through_the_app(client: httpx.AsyncClient) -> None:
    # One route from each end of the routers' order, a parameterised prefix, and a miss.
    assert (await client.get("/api/v1/todos")).status_code == 401
    assert (await client.get("/api/v1/admin/users")).status_code == 401
    assert (await client.get("/api/v1/posts/1/comments")).status_code == 404
    missing = await client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
