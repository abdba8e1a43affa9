"""A Server-Sent Events reader that talks to the ASGI app directly.

httpx's ASGI transport hands a response over only once the app has finished it, and an event stream
never finishes: this runs the app in a task, passes each body part on as it is sent, and hangs up
(an `http.disconnect`) when the test is done with the stream. The parsing follows the SSE spec's
field rules, independently of how the app writes its frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI

EVENTS = "/api/v1/events"


@dataclass
class Frame:
    """One dispatched SSE block: its event type, id, data, and any `retry`; or a comment."""

    event: str | None = None
    id: str | None = None
    data: str | None = None
    retry: int | None = None
    comment: str | None = None

    @property
    def json(self) -> dict[str, Any]:
        assert self.data is not None, self
        parsed = json.loads(self.data)
        assert isinstance(parsed, dict)
        return parsed


def parse_block(block: str) -> Frame:
    frame = Frame()
    data: list[str] = []
    for line in block.split("\n"):
        if line.startswith(":"):
            frame.comment = line[1:].strip()
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            frame.event = value
        elif name == "id":
            frame.id = value
        elif name == "data":
            data.append(value)
        elif name == "retry":
            frame.retry = int(value)
    frame.data = "\n".join(data) if data else None
    return frame


@dataclass
class Stream:
    status: int
    headers: dict[str, str]
    body: bytes = b""  # the whole body, for an answer that is not a stream
    _chunks: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    _buffer: str = ""
    finished: bool = False

    async def next(self, wait: float = 5.0) -> Frame:
        """The next block (event, control event or comment); AssertionError if none comes in time."""
        while "\n\n" not in self._buffer:
            if self.finished:
                raise AssertionError(f"the stream ended; left over: {self._buffer!r}")
            try:
                async with asyncio.timeout(wait):
                    chunk = await self._chunks.get()
            except TimeoutError:
                raise AssertionError(f"no frame within {wait}s; buffered: {self._buffer!r}") from None
            if chunk is None:
                self.finished = True
            else:
                self._buffer += chunk.decode()
        block, self._buffer = self._buffer.split("\n\n", 1)
        return parse_block(block)

    async def next_event(self, wait: float = 5.0) -> Frame:
        """The next frame that is not a comment (heartbeats skipped) nor the opening `retry`."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            frame = await self.next(max(deadline - asyncio.get_running_loop().time(), 0.001))
            if frame.comment is None and frame.event is not None:
                return frame

    async def nothing_within(self, seconds: float) -> None:
        """Assert that no event (heartbeats aside) arrives within `seconds`."""
        try:
            frame = await self.next_event(seconds)
        except AssertionError as exc:
            if "no frame within" in str(exc):
                return
            raise
        raise AssertionError(f"unexpected event: {frame}")

    async def until_end(self, wait: float = 5.0) -> None:
        """Wait for the app to finish the response."""
        async with asyncio.timeout(wait):
            while not self.finished:
                if await self._chunks.get() is None:
                    self.finished = True

    @property
    def problem(self) -> dict[str, Any]:
        parsed = json.loads(self.body)
        assert isinstance(parsed, dict)
        return parsed


@contextlib.asynccontextmanager
async def open_stream(
    app: FastAPI,
    *,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    path: str = EVENTS,
    method: str = "GET",
) -> AsyncIterator[Stream]:
    """Open the stream; yields once the response has started (an error answer is read whole)."""
    disconnected = asyncio.Event()
    started: asyncio.Future[Stream] = asyncio.get_running_loop().create_future()
    stream: Stream | None = None
    sent_request = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal stream
        if message["type"] == "http.response.start":
            names = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
            stream = Stream(status=message["status"], headers=names)
            if not names.get("content-type", "").startswith("text/event-stream"):
                return  # read whole below
            started.set_result(stream)
        elif message["type"] == "http.response.body":
            assert stream is not None
            if started.done():
                if message.get("body"):
                    stream._chunks.put_nowait(message["body"])
                if not message.get("more_body", False):
                    stream._chunks.put_nowait(None)
            else:
                stream.body += message.get("body", b"")
                if not message.get("more_body", False):
                    started.set_result(stream)

    raw_headers = [(b"host", b"testserver"), (b"user-agent", b"pytest-browser/1.0")]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": urlencode(query or {}).encode(),
        "root_path": "",
        "headers": raw_headers,
        "client": ("203.0.113.7", 51000),
        "server": ("testserver", 80),
        "state": {},
    }

    async def run() -> None:
        try:
            await app(scope, receive, send)
        finally:
            if not started.done():
                started.set_exception(AssertionError("the app answered nothing"))
            elif stream is not None:
                stream._chunks.put_nowait(None)

    task = asyncio.create_task(run())
    try:
        yield await asyncio.wait_for(asyncio.shield(started), 10)
    finally:
        disconnected.set()
        try:
            await asyncio.wait_for(task, 5)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
