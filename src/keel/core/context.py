"""Context variables shared by the middleware, the error renderer and the logs."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("keel_request_id", default=None)


def current_request_id() -> str | None:
    return request_id_var.get()
