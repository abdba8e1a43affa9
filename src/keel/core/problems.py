"""Rendering of every error as an RFC 9457 problem document, and the handlers that do it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Route

from keel.core.context import current_request_id
from keel.core.errors import KeelError
from keel.core.logging import get_logger

PROBLEM_MEDIA_TYPE = "application/problem+json"

log = get_logger("keel.errors")

# Stable codes for errors that Starlette/FastAPI raise themselves.
_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "service_unavailable",
}


def problem_type(code: str) -> str:
    return f"urn:keel:problem:{code}"


def problem_response(
    *,
    status: int,
    code: str,
    detail: str,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    if extensions:
        body.update(extensions)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def internal_error_response() -> JSONResponse:
    return problem_response(
        status=500,
        code="internal_error",
        detail="An unexpected error occurred. Quote the request id when reporting it.",
    )


def payload_too_large_response(limit: int, path: str) -> JSONResponse:
    return problem_response(
        status=413,
        code="payload_too_large",
        detail=f"The request body is larger than {limit} bytes.",
        instance=path,
    )


async def _keel_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KeelError)
    if exc.status >= 500:
        log.warning("request_failed", code=exc.code, detail=exc.detail)
    return problem_response(
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        instance=request.url.path,
        headers=exc.headers,
        extensions=exc.extensions(),
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    phrase = HTTPStatus(status).phrase
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else _default_detail(status, request)
    headers = dict(exc.headers) if exc.headers else {}
    if status == 405:
        headers["Allow"] = _allowed_methods(request)
    return problem_response(
        status=status,
        code=_HTTP_CODES.get(status, "http_error"),
        detail=detail,
        instance=request.url.path,
        headers=headers or None,
    )


def _allowed_methods(request: Request) -> str:
    """Every method some route at this path accepts (Starlette reports only the first match's)."""
    index: list[tuple[re.Pattern[str], set[str]]] = getattr(request.app.state, "route_methods", [])
    methods = set().union(*(methods for pattern, methods in index if pattern.match(request.url.path)))
    return ", ".join(sorted(methods))


def route_method_index(routes: Iterable[BaseRoute]) -> list[tuple[re.Pattern[str], set[str]]]:
    return [
        (route.path_regex, set(route.methods))
        for route in routes
        if isinstance(route, Route | APIRoute) and route.methods
    ]


def _default_detail(status: int, request: Request) -> str:
    if status == 404:
        return f"There is nothing at {request.url.path}."
    if status == 405:
        return f"{request.method} is not allowed on {request.url.path}."
    return HTTPStatus(status).description or HTTPStatus(status).phrase


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    # Only loc/msg/type: pydantic's `input` and `ctx` may echo a password or other secrets.
    return [
        {
            "loc": [part if isinstance(part, int) else str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in errors
    ]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _clean_errors(exc.errors())
    if any(err["type"] == "json_invalid" for err in errors):
        return problem_response(
            status=400,
            code="malformed_json",
            title="Malformed JSON",
            detail="The request body is not valid JSON.",
            instance=request.url.path,
        )
    return problem_response(
        status=422,
        code="validation_error",
        title="Invalid input",
        detail="The request contains invalid data; see `errors`.",
        instance=request.url.path,
        extensions={"errors": errors},
    )


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    # Services translate the conflicts they expect; this is the safety net for a race they did not.
    log.info("integrity_error", error=type(getattr(exc, "orig", exc)).__name__)
    return problem_response(
        status=409,
        code="conflict",
        title="Conflict",
        detail="The request conflicts with existing data.",
        instance=request.url.path,
    )


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    # Validation should stop such input first; this keeps a value the database refuses a 422.
    log.warning("database_refused_value", error=type(getattr(exc, "orig", exc)).__name__)
    return problem_response(
        status=422,
        code="invalid_data",
        title="Invalid input",
        detail="The request contains a value that cannot be stored.",
        instance=request.url.path,
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    unavailable = isinstance(exc, (PoolTimeoutError, OperationalError, InterfaceError)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )
    if not unavailable:
        log.error("database_error", exc_info=exc)
        return internal_error_response()
    log.warning("database_unavailable", error=type(getattr(exc, "orig", exc)).__name__, message=str(exc)[:200])
    return problem_response(
        status=503,
        code="service_unavailable",
        title="Service unavailable",
        detail="The database is unavailable; try again shortly.",
        instance=request.url.path,
        headers={"Retry-After": "2"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(KeelError, _keel_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(PoolTimeoutError, _database_error)
    app.add_exception_handler(DBAPIError, _database_error)
