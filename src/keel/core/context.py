"""Context variables shared by the middleware, the error renderer and the logs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import NamedTuple

request_id_var: ContextVar[str | None] = ContextVar("keel_request_id", default=None)


def current_request_id() -> str | None:
    return request_id_var.get()


class RequestClient(NamedTuple):
    """Who made the current request: its address as resolved through trusted proxies, and its headers."""

    ip: str | None
    headers: Sequence[tuple[bytes, bytes]]

    @property
    def user_agent(self) -> str | None:
        for name, value in self.headers:
            if name == b"user-agent":
                return value.decode("latin-1")
        return None


# Set by the request middleware, so that what a change records (keel.services.activity) can say
# where it came from without every service taking the address and the user agent as arguments.
request_client_var: ContextVar[RequestClient | None] = ContextVar("keel_request_client", default=None)


def current_client() -> RequestClient | None:
    return request_client_var.get()


# The app's outbox dispatcher (keel.services.outbox.Dispatcher.dispatch), set by the request
# middleware: for mail queued deep in a use case that is not handed the dispatcher (the new-device
# notice, queued by the sign-in's transaction). Without it the outbox relay sends the mail.
Dispatch = Callable[[Sequence[int]], Awaitable[None]]
dispatch_var: ContextVar[Dispatch | None] = ContextVar("keel_dispatch", default=None)
