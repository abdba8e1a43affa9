"""Security headers on every response.

A response that already names one of these headers keeps its own value: the web UI's pages
and the API documentation send their own Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# JSON needs no resources at all: a response opened in a browser by mistake runs nothing.
API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"
HSTS = "max-age=63072000; includeSubDomains"  # two years, as hstspreload.org asks


def docs_content_security_policy(*, styles: Iterable[str] = (), workers: Iterable[str] = ()) -> str:
    """The policy of /docs and /redoc (keel.routes.docs), which run Swagger UI and ReDoc from this package.

    Scripts come from this origin only, and so does everything else unless a page names more
    sources: `styles` for the inline styles a viewer writes (as a nonce or hashes), `workers`
    for the workers it starts.
    """
    directives = [
        "default-src 'self'",
        "script-src 'self'",
        " ".join(("style-src 'self'", *styles)),
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
    if workers:
        directives.append(" ".join(("worker-src 'self'", *workers)))
    return "; ".join(directives)


DOCS_CONTENT_SECURITY_POLICY = docs_content_security_policy()


class SecurityHeadersMiddleware:
    """Pure ASGI middleware that adds the headers a response did not set itself."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        defaults = {
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "x-frame-options": "DENY",
            "cross-origin-opener-policy": "same-origin",
            "content-security-policy": API_CONTENT_SECURITY_POLICY,
        }
        if https:
            # Only when people reach the service over https: a browser that saw it once will
            # refuse plain http for two years, which would lock out a plain-http deployment.
            defaults["strict-transport-security"] = HSTS
        self.defaults = [(name.encode(), value.encode()) for name, value in defaults.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in self.defaults if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
