"""A stand-in for the server's live updates, served by the browser itself (Playwright's page.route):
a ticket for every POST /api/v1/events/ticket, and for each GET /api/v1/events the next scripted
body of Server-Sent Events (an empty one when none is left). A fulfilled body ends, as a dropped
connection does, so each connection also exercises the page's reconnect."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, Route

STREAM = re.compile(r"/api/v1/events\?")


def sse(event_id: str, event_type: str, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {event_type}\ndata: {json.dumps(data)}\n\n"


def later(iso: str, seconds: int = 60) -> str:
    """An ISO time `seconds` after `iso`: a newer `updated_at`."""
    return (datetime.fromisoformat(iso) + timedelta(seconds=seconds)).isoformat()


def now() -> str:
    return datetime.now(UTC).isoformat()


class FakeStream:
    """Tickets and scripted event streams for one page; `connections` are the stream URLs asked for."""

    def __init__(self, page: Page, *, ticket_status: int = 201) -> None:
        self.page = page
        self.ticket_status = ticket_status
        self.bodies: list[str] = []
        self.connections: list[str] = []
        self.connection_times: list[float] = []
        self.ticket_times: list[float] = []
        self.serial = 0
        page.route("**/api/v1/events/ticket", self._ticket)
        page.route(STREAM, self._stream)

    def _ticket(self, route: Route) -> None:
        self.ticket_times.append(time.monotonic())
        if self.ticket_status != 201:
            route.fulfill(status=self.ticket_status, json={"status": self.ticket_status, "code": "fake"})
            return
        route.fulfill(status=201, json={"ticket": f"ticket-{len(self.ticket_times)}", "expires_in": 30})

    def _stream(self, route: Route) -> None:
        self.connections.append(route.request.url)
        self.connection_times.append(time.monotonic())
        body = self.bodies.pop(0) if self.bodies else ": nothing new\n\n"
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}, body=body)

    def event(self, event_type: str, *, list_id: int | None = None, actor_id: int = 0, **data: Any) -> str:
        """One event in the contract's shape, with the next id."""
        self.serial += 1
        payload = {"type": event_type, "at": now(), "actor_id": actor_id, "list_id": list_id, **data}
        return sse(f"{self.serial:08d}", event_type, payload)

    def send(self, *events: str) -> None:
        """The next connection's body."""
        self.bodies.append("".join(events))

    def last_event_ids(self) -> list[str | None]:
        return [parse_qs(urlsplit(url).query).get("last_event_id", [None])[0] for url in self.connections]

    def wait_for_connections(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.connections) < count:
            assert time.monotonic() < deadline, f"{len(self.connections)} connections, wanted {count}"
            self.page.wait_for_timeout(100)


def without_live_updates(page: Page) -> None:
    """Answer the page's ticket requests 404, as a server without live updates does: for a test of
    what a page shows while it is out of date (a change made elsewhere it has not heard of)."""
    page.route("**/api/v1/events/ticket", lambda route: route.fulfill(status=404, json={"status": 404}))
