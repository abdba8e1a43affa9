"""uvicorn's httptools protocol with a bound on the size of a request's head (request line and headers).

httptools (llhttp) buffers a header of any size, and uvicorn sets no limit on it: a client could
make a worker hold a request line or headers of many megabytes. h11 has the limit built in
(uvicorn's `h11_max_incomplete_event_size`), but parses in pure Python: about three times the
CPU of httptools per request, more than the rest of a request's HTTP handling (bench/NOTES.md).
This subclass keeps httptools and counts what arrives instead, answering 431 and closing the
connection once the head is larger than the limit, which `keel serve` passes in that same
`h11_max_incomplete_event_size` setting.

The count costs a few additions per request. While a head is incomplete, the bytes received since
it began are an upper bound of its size, so a head still growing past the limit is refused as soon
as a read shows it. A head that arrives complete within one read is measured exactly from what the
parser produced, which is only done when the read was larger than the limit or the head began in
the middle of a read (a pipelined request), so the common small request never pays for it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from keel.core.logging import get_logger

log = get_logger("keel.http")

DEFAULT_MAX_HEAD_BYTES = 16 * 1024


class RequestHeadTooLarge(Exception):
    """Raised inside the parser's callback to stop it; the protocol then answers 431."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.max_head_bytes = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        self._read_size = 0  # bytes in the read being parsed
        self._message_ended_in_read = False  # a message ended earlier in this read
        self._in_head = False
        self._head_bytes = 0  # bytes of the current head seen so far, or an upper bound of them
        self._head_loose = False  # the head began mid-read: _head_bytes leaves out that read's part
        self._too_large = False
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        self._read_size = len(data)
        self._message_ended_in_read = False
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_head_bytes and not self._refused:
            self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_loose = self._message_ended_in_read
        self._head_bytes = 0 if self._head_loose else self._read_size

    def on_headers_complete(self) -> None:
        self._in_head = False
        if (self._head_bytes > self.max_head_bytes or self._head_loose) and self._head_size() > self.max_head_bytes:
            # Stops the parser; uvicorn catches the error (logging an invalid request) and calls
            # send_400_response, which answers 431 instead.
            self._too_large = True
            raise RequestHeadTooLarge
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._message_ended_in_read = True

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse()
        else:
            # A request the parser could not read (a bad request line, a header with a control
            # character): uvicorn answers plain text; clients get the same problem shape as ever.
            self._answer(400, "bad_request", "Bad Request", "The request is not valid HTTP/1.1.")

    def _head_size(self) -> int:
        """The head as the parser saw it, less its method and version: the target and the header lines."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _refuse(self) -> None:
        if len(self.url) > self.max_head_bytes:  # the target alone is too long
            detail = f"The request target is longer than {self.max_head_bytes} bytes."
            self._answer(414, "uri_too_long", "URI Too Long", detail)
        else:
            detail = f"The request line and headers are larger than {self.max_head_bytes} bytes."
            self._answer(431, "request_headers_too_large", "Request Header Fields Too Large", detail)

    def _answer(self, status: int, code: str, title: str, detail: str) -> None:
        """Answer with a problem document and close: the app never saw this request."""
        self._refused = True
        request_id = uuid.uuid4().hex
        body = json.dumps(
            {
                "type": f"urn:keel:problem:{code}",
                "title": title,
                "status": status,
                "detail": detail,
                "code": code,
                "request_id": request_id,
            }
        ).encode()
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"connection", b"close"),
        ]
        head = f"HTTP/1.1 {status} {title}\r\n".encode()
        head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        self.transport.write(head + b"\r\n" + body)
        self.transport.close()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else None
        log.info("request_refused_by_protocol", status=status, code=code, client=client, request_id=request_id)
