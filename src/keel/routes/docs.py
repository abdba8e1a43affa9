"""The API documentation: the schema at /openapi.json, Swagger UI at /docs, ReDoc at /redoc.

FastAPI's own pages load their viewers from a CDN with an inline script. These are static pages
of this package that load only its own files (src/keel/web/docs/), so the policy they are served
with admits scripts from this origin alone. Who may see what is KEEL_DOCS (Settings.docs_access).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from keel.core.config import DocsAccess
from keel.core.errors import NotFound
from keel.deps import AdminUser
from keel.http.security_headers import DOCS_CONTENT_SECURITY_POLICY, docs_content_security_policy

DOCS_DIR = Path(__file__).parent.parent / "web" / "docs"
# The viewers' files; mounted at ASSETS_PATH only while the documentation is on.
ASSETS_DIR = DOCS_DIR / "assets"
ASSETS_PATH = "/static/docs"

OPENAPI_PATH = "/openapi.json"
SWAGGER_PATH = "/docs"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
REDOC_PATH = "/redoc"

PAGE_HEADERS = {
    "Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY,
    # Revalidated on every use (a cheap 304), like the viewers' files, so an upgrade never mixes versions.
    "Cache-Control": "no-cache",
}
NONCE_PLACEHOLDER = "__STYLE_NONCE__"
# What ReDoc needs beyond this origin's files. Its styled-components write <style> elements with the
# nonce the page hands it (redoc-init.js). The scrollbar's style sheet is written as the bundle loads,
# before any nonce can be set: it is the same text every time, admitted by its hash, and so is the
# empty element it starts as. Its search index runs in a worker made from a blob: URL, which only a
# script already running in the page (so one of this origin's files) can create. After an update of
# redoc.standalone.js, tests/browser/test_docs.py fails with the hash of any style that changed.
REDOC_STYLE_HASHES = (
    "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='",  # perfect-scrollbar's CSS in ReDoc 2.5.4
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",  # the empty string
)
REDOC_WORKERS = ("blob:",)


class DocsOff(NotFound):
    default_detail = "The API documentation is not published on this server."


def router_for(access: DocsAccess) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    if access == "off":
        # Explicit routes rather than no routes: whatever else answers unknown paths, these stay 404 problems.
        for path in (OPENAPI_PATH, SWAGGER_PATH, OAUTH2_REDIRECT_PATH, REDOC_PATH):
            router.add_api_route(path, _off, methods=["GET"])
        return router
    router.add_api_route(OPENAPI_PATH, _admin_schema if access == "admin" else _public_schema, methods=["GET"])
    router.add_api_route(SWAGGER_PATH, _page(DOCS_DIR / "swagger.html"), methods=["GET"])
    router.add_api_route(OAUTH2_REDIRECT_PATH, _page(DOCS_DIR / "oauth2-redirect.html"), methods=["GET"])
    router.add_api_route(REDOC_PATH, _redoc_page((DOCS_DIR / "redoc.html").read_text()), methods=["GET"])
    return router


async def _off() -> None:
    raise DocsOff


async def _public_schema(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


async def _admin_schema(request: Request, _admin: AdminUser) -> JSONResponse:
    # Behind a token: no shared cache may keep it for the next caller.
    return JSONResponse(request.app.openapi(), headers={"Cache-Control": "private, no-store"})


def _page(path: Path) -> Callable[[], Awaitable[FileResponse]]:
    async def page() -> FileResponse:
        return FileResponse(path, headers=PAGE_HEADERS)

    return page


def _redoc_page(template: str) -> Callable[[], Awaitable[HTMLResponse]]:
    async def page() -> HTMLResponse:
        # A fresh nonce per response: one the page was served with before cannot admit anything now.
        nonce = secrets.token_urlsafe(18)
        return HTMLResponse(
            template.replace(NONCE_PLACEHOLDER, nonce),
            headers={
                "Content-Security-Policy": docs_content_security_policy(
                    styles=(f"'nonce-{nonce}'", *REDOC_STYLE_HASHES), workers=REDOC_WORKERS
                ),
                "Cache-Control": "no-store",
            },
        )

    return page
