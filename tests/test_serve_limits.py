"""`keel serve` as a real process: the size of a request's head is bounded, and it does not name its server."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.processes import free_port, keel_env, serve_command, serving

pytestmark = pytest.mark.slow

MAX_HEADER_BYTES = 16 * 1024  # the default of KEEL_MAX_HEADER_BYTES


@dataclass
class Served:
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after it


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp_path = tmp_path_factory.mktemp("serve-limits")
    port = free_port()
    server = Served(host="127.0.0.1", port=port)
    env = keel_env(tmp_path / "data", KEEL_LOG_FORMAT="json")
    with serving(serve_command(port), env=env, log_path=tmp_path / "serve.log", ready_url=f"{server.base_url}/health"):
        yield server


def exchange(server: Served, request: bytes) -> RawResponse:
    """Send `request` on a fresh connection (as much as the server reads of it) and read one answer."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        # The server may answer and hang up before reading it all: what a limit should do.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        received = b""
        while not _complete(received):
            chunk = _recv(sock)
            if not chunk:
                break
            received += chunk
        sock.settimeout(2)
        try:
            closed = _recv(sock) == b""
        except TimeoutError:
            closed = False  # kept open for the next request
    head, _, body = received.partition(b"\r\n\r\n")
    assert head, "no response at all"
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (ln.partition(":") for ln in header_lines)}
    return RawResponse(status=int(status_line.split()[1]), headers=headers, body=body, closed=closed)


def _recv(sock: socket.socket) -> bytes:
    """The next bytes; empty once the server has closed the connection (or reset it)."""
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def _complete(received: bytes) -> bool:
    head, separator, body = received.partition(b"\r\n\r\n")
    if not separator:
        return False
    lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return bool(lengths) and len(body) >= int(lengths[0])


def get(path: str, extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n"


def test_a_normal_request_is_answered_without_a_server_header(served: Served) -> None:
    response = httpx.get(f"{served.base_url}/health", timeout=5)

    assert response.status_code == 200
    assert "server" not in response.headers
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("size", [1024 * 1024, 64 * 1024, MAX_HEADER_BYTES + 100], ids=["1MB", "64KB", "just-over"])
def test_a_request_head_over_the_limit_is_refused_and_the_connection_closed(served: Served, size: int) -> None:
    response = exchange(served, get("/health", b"X-Big: " + b"a" * size + b"\r\n"))

    assert response.status == 431
    assert response.closed
    assert response.headers["content-type"] == "application/problem+json"
    assert "server" not in response.headers
    problem = json.loads(response.body)
    assert problem["status"] == 431
    assert problem["code"] == "request_headers_too_large"
    assert str(MAX_HEADER_BYTES) in problem["detail"]
    assert problem["request_id"] == response.headers["x-request-id"]


def test_many_small_headers_over_the_limit_are_refused(served: Served) -> None:
    headers = b"".join(b"X-Field-%d: %s\r\n" % (n, b"v" * 100) for n in range(400))

    assert exchange(served, get("/health", headers)).status == 431


def test_a_head_just_under_the_limit_is_served(served: Served) -> None:
    request = get("/health", b"X-Big: " + b"a" * (MAX_HEADER_BYTES - 200) + b"\r\n")
    assert len(request) < MAX_HEADER_BYTES

    response = exchange(served, request)

    assert response.status == 200
    assert not response.closed


def test_a_request_line_of_100_kb_is_a_414_problem(served: Served) -> None:
    response = exchange(served, get("/api/v1/posts?q=" + "a" * 100_000))

    assert response.status == 414
    assert response.closed
    assert response.headers["content-type"] == "application/problem+json"
    problem = json.loads(response.body)
    assert (problem["status"], problem["code"]) == (414, "uri_too_long")
    assert problem["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    "request_bytes",
    [b"GE T / HTTP/1.1\r\nHost: x\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad\x01: y\r\n\r\n", b"\x16\x03\x01\x00"],
    ids=["broken-request-line", "control-character-in-a-header", "tls-to-a-plain-port"],
)
def test_a_request_that_is_not_http_gets_a_400_problem_with_a_request_id(served: Served, request_bytes: bytes) -> None:
    response = exchange(served, request_bytes)

    assert response.status == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = json.loads(response.body)
    assert (problem["status"], problem["code"]) == (400, "bad_request")
    assert problem["request_id"] == response.headers["x-request-id"]
    assert "server" not in response.headers
