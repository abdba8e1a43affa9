"""The application factory: settings, lifespan resources, middleware, error handlers, routers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from keel import __version__
from keel.core.config import Settings, get_settings
from keel.core.db import Database
from keel.core.logging import configure_logging, get_logger
from keel.core.mail import transport_for
from keel.core.problems import install_error_handlers, route_method_index
from keel.core.redis import create_redis
from keel.core.request_context import RequestContextMiddleware
from keel.routes import admin, auth, ops, posts, todos, users
from keel.schemas.common import Problem
from keel.services.session import SessionCache
from keel.tasks.celery_app import CeleryDispatcher
from keel.tasks.inprocess import InProcessDispatcher

WEB_DIR = Path(__file__).parent / "web"

log = get_logger("keel.app")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings)
        redis = create_redis(settings.redis_url) if settings.redis_url else None
        app.state.database = database
        app.state.redis = redis
        app.state.session_cache = (
            SessionCache(
                redis,
                ttl_seconds=settings.auth_cache_ttl_seconds,
                tombstone_ttl_seconds=settings.access_token_ttl_seconds + 60,
            )
            if redis is not None
            else None
        )
        dispatcher: CeleryDispatcher | InProcessDispatcher
        if settings.uses_celery:
            dispatcher = CeleryDispatcher(settings)
        else:
            dispatcher = InProcessDispatcher(database=database, settings=settings, transport=transport_for(settings))
            dispatcher.start()
        app.state.dispatcher = dispatcher
        log.info(
            "startup",
            environment=settings.environment,
            database=database.engine.url.get_backend_name(),
            redis=redis is not None,
        )
        try:
            yield
        finally:
            if isinstance(dispatcher, InProcessDispatcher):
                await dispatcher.stop()
            if redis is not None:
                await redis.aclose()
            await database.dispose()

    app = FastAPI(
        title="Keel",
        version=__version__,
        summary="Multi-user todos and posts, with accounts and sessions done properly.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    install_error_handlers(app)

    routers = [auth.router, users.router, admin.router, todos.router, posts.router, ops.router]
    for router in routers:
        app.include_router(router)
    _mount_web(app)
    app.state.route_methods = route_method_index(
        [*app.router.routes, *(route for router in routers for route in router.routes)]
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _mount_web(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html")

    # The pages that email links point at (KEEL_PUBLIC_URL + path).
    for page in ("verify-email", "reset-password", "forgot-password"):
        app.add_api_route(f"/{page}", _page(page), methods=["GET"], include_in_schema=False)


def _page(name: str) -> Callable[[], Awaitable[FileResponse]]:
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / f"{name}.html")

    return page


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        # Error responses reference the problem document by name; register it once here.
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(problem.pop("$defs", {}))
        components["Problem"] = problem
        app.openapi_schema = schema
    return app.openapi_schema
