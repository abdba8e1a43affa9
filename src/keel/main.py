"""The application factory: settings, lifespan resources, middleware, error handlers, routers."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from redis.asyncio import Redis
from starlette.responses import Response
from starlette_compress import CompressMiddleware, remove_compress_type

from keel import __version__
from keel.core.config import Settings, get_settings
from keel.core.db import Database
from keel.core.events import Broker, InProcessBroker
from keel.core.events_redis import RedisBroker
from keel.core.logging import configure_logging, get_logger
from keel.core.mail import transport_for
from keel.core.oidc import OidcClient
from keel.core.ratelimit import create_rate_limiter
from keel.core.redis import create_redis
from keel.core.session_cache import SessionCache
from keel.http import openapi
from keel.http.head import HeadAsGet
from keel.http.metrics import Metrics
from keel.http.problems import http_error, install_error_handlers, route_method_index
from keel.http.request_context import RequestContextMiddleware
from keel.http.security_headers import SecurityHeadersMiddleware
from keel.http.web_assets import Assets, HashedStatic, conditional
from keel.routes import (
    API_PREFIX,
    admin,
    auth,
    docs,
    events,
    identities,
    lists,
    mfa,
    ops,
    passkeys,
    post_preview,
    posts,
    todos,
    tokens,
    users,
)
from keel.routes import comments as comment_routes
from keel.routes import tags as tag_routes
from keel.services.event_stream import LiveUpdates
from keel.services.event_tickets import MemoryTickets, RedisTickets, TicketStore
from keel.tasks.inprocess import InProcessDispatcher

if TYPE_CHECKING:
    from keel.tasks.celery_app import CeleryDispatcher

WEB_DIR = Path(__file__).parent / "web"
COMPRESS_FROM_BYTES = 1024
API_CONVENTIONS = """\
Conventions every operation follows:

- Errors are RFC 9457 problem documents (`application/problem+json`) with a stable `code`.
- Every answer carries `X-Request-ID` (the client's own, when it sends a sane one).
- Every `GET` also answers `HEAD`: the same status and headers, no body.
- Answers of 1 KB or more are compressed when the client asks (`Accept-Encoding`: zstd, br or
  gzip; an encoding given `q=0` is never used).
- Over a rate limit the answer is 429 with `Retry-After` in seconds; a backing service that cannot
  be reached is a 503 with `Retry-After`.
- A request counted against a rate limit gets `RateLimit-Policy` and `RateLimit`
  (draft-ietf-httpapi-ratelimit-headers) on its answer, whatever its status: `"writes";q=120;w=60`
  is 120 requests in any 60 seconds, and `"writes";r=117;t=58` says 117 more fit in the next 58.
"""

log = get_logger("keel.app")


# Requests free nearly everything they allocate by reference counting. With CPython's default
# first threshold (700) and many requests in flight, a young pass runs every few dozen requests
# and walks whatever those requests hold; 10,000 makes them rare (bench/NOTES.md has the figures).
GC_THRESHOLDS = (10_000, 20, 20)


def tune_garbage_collector() -> None:
    """Once the app is built: keep its long-lived objects out of every collection, collect less often.

    Everything imported and built at startup lives as long as the worker. Frozen, the full passes
    no longer walk it again and again under load, pausing every request while they do.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings)
        redis = (
            create_redis(
                settings.redis_url,
                max_connections=settings.redis_max_connections,
                pool_timeout_seconds=settings.redis_pool_timeout_seconds,
            )
            if settings.redis_url
            else None
        )
        app.state.database = database
        app.state.redis = redis
        app.state.rate_limiter = create_rate_limiter(settings, redis)
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
            # Imported only here: a worker that delivers in-process never loads Celery (5 MB).
            from keel.tasks.celery_app import CeleryDispatcher

            dispatcher = CeleryDispatcher(settings)
        else:
            dispatcher = InProcessDispatcher(database=database, settings=settings, transport=transport_for(settings))
            dispatcher.start()
        app.state.dispatcher = dispatcher
        live_updates = _live_updates(settings, redis, app.state.metrics)
        database.commit_hooks.append(live_updates.committed)
        await live_updates.broker.start()
        app.state.live_updates = live_updates
        log.info(
            "startup",
            environment=settings.environment,
            database=database.engine.url.get_backend_name(),
            redis=redis is not None,
        )
        if settings.tune_gc:
            tune_garbage_collector()
        try:
            yield
        finally:
            await live_updates.broker.stop()  # open streams end ("shutdown") before the server waits on them
            if isinstance(dispatcher, InProcessDispatcher):
                await dispatcher.stop()
            await app.state.rate_limiter.aclose()
            if redis is not None:
                await redis.aclose()
            await database.dispose()

    app = FastAPI(
        title="Keel",
        version=__version__,
        summary="Multi-user todos and posts, with accounts and sessions done properly.",
        description=API_CONVENTIONS,
        lifespan=lifespan,
        # Served by keel.routes.docs instead, from this package's own files and as KEEL_DOCS says.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=openapi.operation_id,
        # Every documented path answers as written. Starlette's slash redirects build Location
        # from the Host header (Host: evil.example sent clients there) and say http behind TLS.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.oidc = OidcClient(settings)
    # Outermost last: security headers cover every answer, the request id and access line
    # cover CORS preflights too. A HEAD is a GET whose body is dropped after compression, so
    # its headers are the GET's; compression starts at 1 KB, below which it saves too little.
    # Event streams go out uncompressed: each compressed one would hold its own zstd or brotli
    # context open for as long as it lasts (about 2 MB a stream, bench/REPORT.md), to squeeze
    # frames of a few hundred bytes that are flushed one by one anyway.
    remove_compress_type("text/event-stream")
    app.add_middleware(CompressMiddleware, minimum_size=COMPRESS_FROM_BYTES)
    app.add_middleware(HeadAsGet)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "WWW-Authenticate", "RateLimit-Policy", "RateLimit"],
            max_age=600,
        )
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware, https=settings.public_url.startswith("https://"))
    install_error_handlers(app)

    # No two routers share a path. Each is a PrefixedRouter, so a request tries only the routes of
    # the routers whose prefix it is under (FastAPI alone walks every route of every router ahead
    # of the one that matches: /users/me cost 34 µs of matching, 7 µs now; bench/REPORT.md). The
    # busiest are still first, for the few paths that share a prefix (/auth, /posts).
    routers = [
        *(todos.router, posts.router, users.router, auth.router, lists.router),
        *(mfa.router, passkeys.router, identities.router, comment_routes.router, post_preview.router),
        *(tag_routes.router, tokens.router),
        *(events.router,),
        *(admin.router, ops.router),
        docs.router_for(settings.docs_access),
    ]
    for router in routers:
        app.include_router(router)
    if settings.docs_access != "off":
        # Before the UI's /static, which would otherwise claim these paths.
        app.mount(docs.ASSETS_PATH, _WebStatic(directory=docs.ASSETS_DIR), name="docs-static")
    _mount_web(app)
    app.state.route_methods = route_method_index(
        [*app.router.routes, *(route for router in routers for route in router.routes)]
    )
    # The order /docs shows the tags in: signing in first (the routers are matched in another).
    tags = [
        *("auth", "mfa", "passkeys", "users", "tokens", "todos", "lists", "events", "posts", "comments"),
        *("tags", "admin", "operations"),
    ]
    api_routes = [route for router in routers for route in router.routes]
    app.openapi = lambda: openapi.build(app, tags, api_prefix=API_PREFIX, routes=api_routes)  # type: ignore[method-assign]
    return app


def _live_updates(settings: Settings, redis: Redis | None, metrics: Metrics) -> LiveUpdates:
    """The worker's live updates: across workers through Redis when it is configured, else in process."""
    broker: Broker
    tickets: TicketStore
    if redis is not None:
        broker = RedisBroker(
            redis,
            retention_seconds=settings.events_retention_seconds,
            max_events=settings.events_max_log,
            counters=metrics,
        )
        tickets = RedisTickets(redis)
    else:
        broker = InProcessBroker(
            retention_seconds=settings.events_retention_seconds, max_events=settings.events_max_log, counters=metrics
        )
        tickets = MemoryTickets()
    return LiveUpdates(broker=broker, tickets=tickets, settings=settings, counters=metrics)


# Every path the web UI's router knows; each is answered with the same shell page, so a
# reload or a link from an email lands on the right screen. Keep in step with static/js/app.js.
WEB_PAGES = (
    "/",
    "/signin",
    "/signin/code",
    "/signin/mfa",
    "/link-identity",
    "/signup",
    "/forgot-password",
    "/reset-password",
    "/verify-email",
    "/todos",
    "/my-posts",
    "/posts/new",
    "/posts/{post_id}",
    "/posts/{post_id}/edit",
    "/tags/{tag}",
    "/account",
    "/admin/users",
)

# The UI runs only its own files: no inline script or style, nothing from another origin,
# and no page may frame it.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self'",
        "manifest-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

WEB_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Email links carry their token in the query: never pass the address on.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class _WebStatic(StaticFiles):
    """The UI's files, revalidated on every use (a cheap 304) so an upgrade never mixes versions."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _mount_web(app: FastAPI) -> None:
    assets = Assets(WEB_DIR / "static", WEB_DIR / "index.html", WEB_DIR / "sw.js")
    app.state.web_assets = assets
    app.mount("/static", HashedStatic(assets=assets), name="static")
    for path in WEB_PAGES:
        app.add_api_route(path, _shell, methods=["GET"], include_in_schema=False)
    app.add_api_route("/sw.js", _service_worker, methods=["GET"], include_in_schema=False)
    # Starlette looks up a handler by status before one by exception class: this one sees every
    # unknown path (and any other HTTPException 404) first, and hands the API's back.
    app.add_exception_handler(404, _not_found)


async def _shell(request: Request) -> Response:
    """The shell, rendered at start with hashed URLs; revalidated on each visit by its ETag."""
    return _shell_response(request)


async def _service_worker(request: Request) -> Response:
    """The service worker, from the root so its scope is the whole app; revalidated like the shell."""
    assets: Assets = request.app.state.web_assets
    return conditional(
        request.headers.get("if-none-match"),
        assets.service_worker,
        assets.service_worker_etag,
        WEB_HEADERS,
        media_type="text/javascript",
    )


def _shell_response(request: Request, status_code: int = 200) -> Response:
    assets: Assets = request.app.state.web_assets
    if status_code != 200:
        return Response(assets.shell, status_code=status_code, media_type="text/html", headers=WEB_HEADERS)
    return conditional(
        request.headers.get("if-none-match"), assets.shell, assets.shell_etag, WEB_HEADERS, media_type="text/html"
    )


# Paths that belong to programs, not people: an unknown one is a problem document whatever the
# client accepts.
NOT_PAGES = ("/api", "/static", "/health", "/ready", "/metrics", "/docs", "/redoc", "/openapi.json")


async def _not_found(request: Request, exc: Exception) -> Response:
    """An unknown address opened in a browser gets the UI, whose router shows "Page not found".

    The status stays 404, so link checkers, crawlers and monitors still see a missing page;
    browsers render the body whatever the status. Everyone else gets the problem document.
    """
    path = request.url.path
    if (
        request.method in ("GET", "HEAD")
        and not any(path == prefix or path.startswith(f"{prefix}/") for prefix in NOT_PAGES)
        and _prefers_html(request.headers.get("accept", ""))
    ):
        return _shell_response(request, status_code=404)
    return await http_error(request, exc)


def _prefers_html(accept: str) -> bool:
    """Whether an Accept header ranks HTML above JSON, as a browser opening a page does.

    Wildcards count for neither: `*/*` is what API clients and scripts send.
    """
    html = json = 0.0
    for item in accept.split(","):
        media_type, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media_type = media_type.lower()
        if media_type in ("text/html", "application/xhtml+xml"):
            html = max(html, quality)
        elif media_type in ("application/json", "application/problem+json"):
            json = max(json, quality)
    return html > json
