"""Cookie mode for browsers: the refresh token lives in an HttpOnly cookie that page scripts never see.

A browser sends cookies on its own, so every request that uses the cookie must prove it comes from
the Keel web app: it carries the opt-in header (which a cross-site form cannot set) and an `Origin`
equal to the service's own. SameSite=Strict already keeps the cookie off cross-site requests; the
check is the second lock, and the one that still holds for a sibling subdomain.
"""

from __future__ import annotations

from http.cookies import SimpleCookie

from keel.core.urls import origin_of

WEB_CLIENT_HEADER = "X-Keel-Client"
WEB_CLIENT_VALUE = "web"
REFRESH_COOKIE = "keel_refresh"
# Only the auth endpoints ever receive the cookie (tests check this equals the auth router's prefix).
REFRESH_COOKIE_PATH = "/api/v1/auth"


def is_same_origin(origin_header: str | None, *, request_url: str, public_url: str) -> bool:
    """Whether an `Origin` header names the service: as this request reached it, or its public address."""
    if origin_header is None:
        return False
    origin = origin_of(origin_header, bare=True)
    if origin is None:
        return False
    return origin in {origin_of(request_url), origin_of(public_url)}


def needs_secure(*, request_scheme: str, public_url: str) -> bool:
    # Behind a TLS-terminating proxy the app may see http; the public address still says https.
    return request_scheme == "https" or public_url.lower().startswith("https://")


def refresh_cookie(value: str, *, max_age: int, secure: bool) -> str:
    """The `Set-Cookie` value that stores a refresh token; `max_age=0` with an empty value deletes it."""
    cookie: SimpleCookie = SimpleCookie()
    cookie[REFRESH_COOKIE] = value
    morsel = cookie[REFRESH_COOKIE]
    morsel["path"] = REFRESH_COOKIE_PATH
    morsel["max-age"] = max(max_age, 0)
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    if secure:
        morsel["secure"] = True
    return morsel.OutputString()


# A browser's long-lived, random id, so a sign-in from a browser not seen on the account before can be
# told apart (keel.services.device); stored only as a hash per account. Lax, not Strict: a provider's
# redirect back to the callback is a cross-site navigation, and this cookie grants nothing.
DEVICE_COOKIE = "keel_device"
DEVICE_COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest browsers keep a cookie


def device_cookie(value: str, *, secure: bool) -> str:
    cookie: SimpleCookie = SimpleCookie()
    cookie[DEVICE_COOKIE] = value
    morsel = cookie[DEVICE_COOKIE]
    morsel["path"] = REFRESH_COOKIE_PATH
    morsel["max-age"] = DEVICE_COOKIE_MAX_AGE
    morsel["httponly"] = True
    morsel["samesite"] = "Lax"
    if secure:
        morsel["secure"] = True
    return morsel.OutputString()


def expired_refresh_cookie(*, secure: bool) -> str:
    """The `Set-Cookie` value that makes the browser drop the refresh cookie."""
    return refresh_cookie("", max_age=0, secure=secure)
