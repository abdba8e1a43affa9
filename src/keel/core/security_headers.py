"""Security headers on every response.

A response that already names one of these headers keeps its own value: the web UI's pages
send their own Content-Security-Policy, the API documentation a looser one.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# JSON needs no resources at all: a response opened in a browser by mistake runs nothing.
API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"
HSTS = "max-age=63072000; includeSubDomains"  # two years, as hstspreload.org asks
# FastAPI's /docs and /redoc pages load Swagger UI and ReDoc from jsDelivr with an inline
# bootstrap script; this allows exactly that and nothing else.
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net",
        "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com",
        "font-src https://fonts.gstatic.com",
        "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly",
        "worker-src blob:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    )
)


class SecurityHeadersMiddleware:
    """Pure ASGI middleware that adds the headers a response did not set itself."""

    def __init__(self, app: ASGIApp, *, https: bool, docs_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.docs_paths = set(docs_paths)
        self.docs_policy = (b"content-security-policy", DOCS_CONTENT_SECURITY_POLICY.encode())
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

        docs = scope["path"] in self.docs_paths

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if docs:
                    headers.append(self.docs_policy)
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in self.defaults if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
