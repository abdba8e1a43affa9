"""Per-request context: the request id, the rate limit fields, the access log line, and the last-resort 500."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.core.audit import event_counter
from keel.core.client_ip import IPNetwork, client_ip_of
from keel.core.context import RequestClient, dispatch_var, request_client_var, request_id_var
from keel.core.logging import DirectLog, get_logger
from keel.core.ratelimit import Rule, RuleUsage, usage_var
from keel.http.metrics import Metrics, route_label
from keel.http.problems import internal_error_response, payload_too_large_response
from keel.http.rate_limit_fields import fields as rate_limit_fields

REQUEST_ID_HEADER = "x-request-id"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

access_log = DirectLog("keel.access")
error_log = get_logger("keel.errors")


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def _app_metrics(scope: Scope) -> Metrics | None:
    # Starlette puts the application in the scope before any middleware runs.
    metrics = getattr(getattr(scope.get("app"), "state", None), "metrics", None)
    return metrics if isinstance(metrics, Metrics) else None


def trusted_proxies(scope: Scope) -> tuple[IPNetwork, ...]:
    settings = getattr(getattr(scope.get("app"), "state", None), "settings", None)
    networks = getattr(settings, "trusted_proxies", ())
    return networks if isinstance(networks, tuple) else ()


def _pick_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _SANE_REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Pure ASGI middleware: cheap on the hot path and safe for streaming responses."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _pick_request_id(scope)
        rid_token = request_id_var.set(request_id)
        # As the rate limits see it: behind trusted proxies, the client they forwarded for.
        client_ip = client_ip_of(scope, trusted_proxies(scope))
        client_token = request_client_var.set(RequestClient(client_ip, scope.get("headers", ())))
        dispatcher = getattr(getattr(scope.get("app"), "state", None), "dispatcher", None)
        dispatch_token = dispatch_var.set(getattr(dispatcher, "dispatch", None))
        metrics = _app_metrics(scope)
        counter_token = event_counter.set(metrics.count_auth_event if metrics is not None else None)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        # Filled in by the rate limiter as it counts this request (see keel.http.rate_limit_fields).
        usage: dict[Rule, RuleUsage] = {}
        usage_token = usage_var.set(usage)
        started = time.perf_counter()
        status = 500
        response_started = False
        header_value = request_id.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers: list[Any] = list(message.get("headers", ()))
                headers.append((b"x-request-id", header_value))
                headers += rate_limit_fields(usage)
                message = {**message, "headers": headers}
            await send(message)

        limit = self.max_body_bytes
        received = 0

        async def receive_limited() -> Message:
            # Counts what actually arrives, so a chunked body without Content-Length is bounded too.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"The request body is larger than {limit} bytes.")
            return message

        try:
            if _declared_length(scope) > limit:
                await payload_too_large_response(limit, scope.get("path", ""))(scope, receive, send_with_id)
                status = 413
            else:
                await self.app(scope, receive_limited, send_with_id)
        except Exception:
            # Anything that escaped every handler: log the trace with the request id, answer
            # with a body that reveals nothing.
            error_log.exception("unhandled_exception", method=scope.get("method"), path=scope.get("path"))
            if response_started:
                raise
            status = 500
            await internal_error_response()(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            # The router put the matched route in the scope; its template keeps labels bounded.
            route = metrics.route_label(scope) if metrics is not None else route_label(scope)
            if metrics is not None:
                metrics.observe_request(method=scope.get("method"), route=route, status=status, seconds=seconds)
            access_log.info(
                "request",
                method=scope.get("method"),
                path=scope.get("path", "")[:300],
                route=route,
                status=status,
                duration_ms=round(seconds * 1000, 2),
                # Set by the authentication dependency through request.state.
                user_id=scope.get("state", {}).get("user_id"),
                client_ip=client_ip,
            )
            structlog.contextvars.unbind_contextvars("request_id")
            event_counter.reset(counter_token)
            usage_var.reset(usage_token)
            dispatch_var.reset(dispatch_token)
            request_client_var.reset(client_token)
            request_id_var.reset(rid_token)
