"""Rendering of every error as an RFC 9457 problem document, and the handlers that do it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Route

from keel.core import audit
from keel.core.audit import SecurityEvent
from keel.core.client_ip import client_ip_of
from keel.core.context import current_request_id
from keel.core.db import Outage
from keel.core.errors import DatabaseUnavailable, EditConflict, KeelError
from keel.core.logging import get_logger
from keel.http.metrics import route_label

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


# A refusal is worth watching (someone probing the admin API, forging cross-site requests, guessing
# passwords): each one is a security event, counted in the metrics as the others are.
_REFUSALS = {403: SecurityEvent.FORBIDDEN, 429: SecurityEvent.RATE_LIMITED}


def _record_refusal(request: Request, status: int, code: str) -> None:
    event = _REFUSALS.get(status)
    if event is None:
        return
    settings = getattr(request.app.state, "settings", None)
    audit.record(
        event,
        level="warning",
        code=code,
        method=request.method,
        route=route_label(request.scope),
        # Set by the authentication dependency, when it ran before the refusal.
        user_id=getattr(request.state, "user_id", None),
        client_ip=client_ip_of(request.scope, getattr(settings, "trusted_proxies", ())),
    )


async def _keel_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KeelError)
    if exc.status >= 500:
        log.warning("request_failed", code=exc.code, detail=exc.detail)
    _record_refusal(request, exc.status, exc.code)
    return problem_response(
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        instance=request.url.path,
        headers=exc.headers,
        extensions=exc.extensions(),
    )


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """The problem for an HTTPException that Starlette or FastAPI raised (an unknown path, say)."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    phrase = HTTPStatus(status).phrase
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else _default_detail(status, request)
    headers = dict(exc.headers) if exc.headers else {}
    if status == 405:
        headers["Allow"] = _allowed_methods(request)
    code = _HTTP_CODES.get(status, "http_error")
    _record_refusal(request, status, code)
    return problem_response(
        status=status,
        code=code,
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
    """Each route's path and methods, HEAD wherever GET is (keel.http.head answers it)."""
    return [
        (route.path_regex, set(route.methods) | ({"HEAD"} if "GET" in route.methods else set()))
        for route in routes
        if isinstance(route, Route | APIRoute) and route.methods
    ]


def _default_detail(status: int, request: Request) -> str:
    if status == 404:
        return f"There is nothing at {request.url.path}."
    if status == 405:
        return f"{request.method} is not allowed on {request.url.path}."
    return HTTPStatus(status).description or HTTPStatus(status).phrase


# The bounds a schema sets (a client words its own message from them: "needs at least 3
# characters"). Never the rest of pydantic's ctx: `actual_length`, `error` or `reason` describe
# the input, and the input may be a password.
_SCHEMA_BOUNDS = ("min_length", "max_length", "ge", "gt", "le", "lt")


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    # Only loc/msg/type and the schema's bounds: pydantic's `input` may echo a password or other secrets.
    # FastAPI validates input once for every dependency that reads it (a rate limit that reads the
    # route's body or form, say), so the same mistake can be reported more than once: list it once.
    cleaned: dict[tuple[str, str, str], dict[str, Any]] = {}
    for err in errors:
        loc = [part if isinstance(part, int) else str(part) for part in err.get("loc", ())]
        msg, type_ = str(err.get("msg", "")), str(err.get("type", ""))
        issue: dict[str, Any] = {"loc": loc, "msg": msg, "type": type_}
        given = err.get("ctx") or {}
        bounds = {key: given[key] for key in _SCHEMA_BOUNDS if _is_number(given.get(key))}
        if bounds:
            issue["ctx"] = bounds
        cleaned.setdefault((repr(loc), msg, type_), issue)
    return list(cleaned.values())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    expected = _unaccepted_media_type(request)
    if expected is not None:
        return problem_response(
            status=415,
            code="unsupported_media_type",
            title="Unsupported media type",
            detail=f"This operation takes a body of type {expected}.",
            instance=request.url.path,
            headers={"Accept-Post" if request.method == "POST" else "Accept-Patch": expected},
        )
    errors = _clean_errors(exc.errors())
    if _takes_a_form(request):
        # A form field sent empty reaches validation as absent: say both, not just "Field required".
        for err in errors:
            if err["type"] == "missing" and err["loc"][:1] == ["body"]:
                err["msg"] = "Required, and must not be empty."
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


FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _takes_a_form(request: Request) -> bool:
    body_field = getattr(request.scope.get("route"), "body_field", None)
    return body_field is not None and isinstance(body_field.field_info, params.Form)


def _unaccepted_media_type(request: Request) -> str | None:
    """What the route's body must be, when the request sent a body of another type (else None).

    FastAPI reads a JSON body only when `Content-Type` says JSON (its strict check), and a form only
    when it says form; anything else reached validation as raw bytes and came out as a 422 about
    the body's shape. A body sent without any `Content-Type` is refused alike.
    """
    route = request.scope.get("route")
    body_field = getattr(route, "body_field", None)
    if body_field is None:
        return None
    sent = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not sent and request.headers.get("content-length", "0") in ("", "0"):
        return None  # no body at all: validation says what is missing
    if _takes_a_form(request):
        return None if sent in FORM_MEDIA_TYPES else FORM_MEDIA_TYPES[0]
    if sent == "application/json" or (sent.startswith("application/") and sent.endswith("+json")):
        return None
    return "application/json"


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


async def _stale_data(request: Request, exc: Exception) -> JSONResponse:
    # A write conditioned on a row's version (keel.core.conditional) found it changed by another request
    # meanwhile. The edits that expect it (keel.services.versioned) try again or answer 412; this is
    # the safety net for any other write of a versioned row.
    log.info("edit_conflict", route=route_label(request.scope))
    error = EditConflict()
    return problem_response(
        status=error.status, code=error.code, title=error.title, detail=error.detail, instance=request.url.path
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


# PostgreSQL's SQLSTATEs for a statement it gave up on at statement_timeout (query_canceled) or
# lock_timeout (lock_not_available): the same request can succeed a moment later.
_TIMED_OUT_STATES = frozenset({"57014", "55P03"})
# A server shutting down, crashed, starting up, or out of connections; and class 08, connection exceptions.
_UNREACHABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def _sqlstate(exc: Exception) -> str | None:
    # asyncpg's errors, and SQLAlchemy's adaptation of them, carry it as `sqlstate`.
    state = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return state if isinstance(state, str) else None


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    state = _sqlstate(exc)
    orig = getattr(exc, "orig", None)
    if state in _TIMED_OUT_STATES or getattr(orig, "sqlite_errorname", None) == "SQLITE_BUSY":
        # A statement of this request, not the database, ran out of time: one line per request.
        log.warning("database_timeout", error=type(orig).__name__, sqlstate=state, route=route_label(request.scope))
        return _database_unavailable(request, "The database did not answer in time; try again shortly.")
    unavailable = (
        isinstance(exc, (PoolTimeoutError, OperationalError, InterfaceError))
        or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
        or (state is not None and (state.startswith("08") or state in _UNREACHABLE_STATES))
    )
    if not unavailable:
        log.error("database_error", exc_info=exc)
        return internal_error_response()
    outage = getattr(getattr(request.app.state, "database", None), "outage", None)
    if isinstance(outage, Outage):
        outage.refused(exc, exhausted=isinstance(exc, PoolTimeoutError))  # logs once per outage
    else:
        log.warning("database_unavailable", error=type(orig or exc).__name__, message=str(exc)[:200])
    return _database_unavailable(request, None)


def _database_unavailable(request: Request, detail: str | None) -> JSONResponse:
    error = DatabaseUnavailable(detail, retry_after=2)
    return problem_response(
        status=error.status,
        code=error.code,
        title=error.title,
        detail=error.detail,
        instance=request.url.path,
        headers=error.headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(KeelError, _keel_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(StaleDataError, _stale_data)
    app.add_exception_handler(PoolTimeoutError, _database_error)
    app.add_exception_handler(DBAPIError, _database_error)
