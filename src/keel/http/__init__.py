"""The HTTP edge: what turns requests and answers into and out of the service's own terms.

Problem rendering (RFC 9457), the request context and access log, security headers, the web
client's cookie, the client address behind trusted proxies, the bounded HTTP protocol and the
metrics' route labels live here; `keel.core` below them knows nothing of FastAPI or Starlette.
"""
