"""The bounded httptools protocol fed byte by byte, read by read: where a head begins and ends in a read."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from keel.http.http_protocol import BoundedHttpToolsProtocol

LIMIT = 4096


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, then answers with its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def connect() -> tuple[BoundedHttpToolsProtocol, Transport]:
    config = Config(app=app, h11_max_incomplete_event_size=LIMIT, lifespan="off", log_config=None)
    config.load()
    protocol = BoundedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


def request(header_bytes: int = 0, body: bytes = b"") -> bytes:
    head = b"POST /x HTTP/1.1\r\nHost: t\r\n"
    if header_bytes:
        head += b"X-Pad: " + b"a" * header_bytes + b"\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def statuses(transport: Transport) -> list[int]:
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", transport.written)]


async def test_a_head_over_the_limit_arriving_in_small_reads_is_refused_before_it_ends() -> None:
    protocol, transport = connect()
    data = request(header_bytes=10 * LIMIT)

    for start in range(0, LIMIT + 512, 512):
        protocol.data_received(data[start : start + 512])
    await settle()

    assert statuses(transport) == [431]
    assert transport.closed
    body = json.loads(transport.written.split(b"\r\n\r\n", 1)[1])
    assert body["code"] == "request_headers_too_large"
    # What arrives after the refusal is ignored.
    protocol.data_received(data[LIMIT + 512 :])
    assert statuses(transport) == [431]


async def test_a_head_over_the_limit_within_one_read_is_refused() -> None:
    protocol, transport = connect()

    protocol.data_received(request(header_bytes=LIMIT + 10))
    await settle()

    assert statuses(transport) == [431]
    assert transport.closed


async def test_a_small_head_with_a_large_body_in_one_read_is_served() -> None:
    protocol, transport = connect()

    protocol.data_received(request(body=b"b" * (4 * LIMIT)))
    await settle()

    assert statuses(transport) == [200]
    assert transport.written.endswith(b"\r\n\r\n%d" % (4 * LIMIT))
    assert not transport.closed


async def test_a_head_just_under_the_limit_is_served_and_the_connection_kept() -> None:
    protocol, transport = connect()

    protocol.data_received(request(header_bytes=LIMIT - 100))
    await settle()
    protocol.data_received(request(header_bytes=LIMIT - 100))
    await settle()

    assert statuses(transport) == [200, 200]
    assert not transport.closed


@pytest.mark.parametrize("second_head", [LIMIT - 100, LIMIT + 100], ids=["under", "over"])
async def test_a_pipelined_head_that_begins_mid_read_is_measured(second_head: int) -> None:
    protocol, transport = connect()
    # The first request's large body and the whole second request arrive in one read.
    data = request(body=b"b" * (2 * LIMIT)) + request(header_bytes=second_head)

    protocol.data_received(data)
    await settle()

    if second_head < LIMIT:
        assert statuses(transport) == [200, 200]
        assert not transport.closed
    else:
        assert 431 in statuses(transport)
        assert transport.closed


async def test_a_pipelined_head_that_begins_mid_read_and_grows_over_later_reads_is_refused() -> None:
    protocol, transport = connect()
    second = request(header_bytes=10 * LIMIT)
    protocol.data_received(request(body=b"b" * 100) + second[:100])
    await settle()

    for start in range(100, 2 * LIMIT, 1024):
        protocol.data_received(second[start : start + 1024])
    await settle()

    assert statuses(transport)[-1] == 431
    assert transport.closed
