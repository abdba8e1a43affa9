"""HEAD for every GET (RFC 9110 9.3.2): the same status and headers, no body.

FastAPI's routes answer only the methods they list, so uptime and link checkers, which send
HEAD, got 405 everywhere. This middleware runs a HEAD as the GET it stands for and drops the
body on the way out; the layers outside it (the access line, metrics) still see a HEAD.
It sits outside compression, so a HEAD's `Content-Encoding` and `Content-Length` are the GET's.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """Pure ASGI middleware: a HEAD request is served as GET, its body left out."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the rest is coming; only the last part ends the answer
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        # Marked, for a route whose GET never ends (the event stream) to answer its headers alone.
        await self.app({**scope, "method": "GET", "keel.head": True}, receive, send_without_body)
