"""The same-origin rules and the refresh cookie's header, without HTTP."""

from __future__ import annotations

import pytest

from keel.core.urls import origin_of
from keel.http.web_session import expired_refresh_cookie, is_same_origin, needs_secure, refresh_cookie


class TestOriginOf:
    @pytest.mark.parametrize(
        ("url", "origin"),
        [
            ("http://example.com", "http://example.com"),
            ("http://example.com:80", "http://example.com"),
            ("https://example.com:443", "https://example.com"),
            ("http://example.com:443", "http://example.com:443"),
            ("https://example.com:80", "https://example.com:80"),
            ("HTTPS://Example.COM:8443", "https://example.com:8443"),
            ("http://[::1]:8000", "http://[::1]:8000"),
            ("http://[::1]:80", "http://[::1]"),
            ("https://keel.example.com/app/?x=1#top", "https://keel.example.com"),
        ],
    )
    def test_normalises(self, url: str, origin: str) -> None:
        assert origin_of(url) == origin

    @pytest.mark.parametrize(
        "url",
        [
            "null",
            "",
            "example.com",
            "ftp://example.com",
            "file:///etc/passwd",
            "http://",
            "http://user:pw@example.com",
            "http://user@example.com",
            "http://example.com:99999",
            "http://example.com:port",
            "http://[::1",
        ],
    )
    def test_no_origin(self, url: str) -> None:
        assert origin_of(url) is None
        assert origin_of(url, bare=True) is None

    @pytest.mark.parametrize(
        "header", ["http://example.com/", "http://example.com/x", "http://example.com?", "http://example.com#"]
    )
    def test_an_origin_header_is_an_origin_and_nothing_more(self, header: str) -> None:
        assert origin_of(header) == "http://example.com"
        assert origin_of(header, bare=True) is None


class TestIsSameOrigin:
    PUBLIC = "https://keel.example.com"

    @pytest.mark.parametrize(
        "origin", ["http://10.0.0.5:8000", "https://keel.example.com", "https://KEEL.example.com:443"]
    )
    def test_own_or_public_origin(self, origin: str) -> None:
        assert is_same_origin(origin, request_url="http://10.0.0.5:8000/api/v1/auth/refresh", public_url=self.PUBLIC)

    @pytest.mark.parametrize(
        "origin",
        [
            None,
            "null",
            "http://keel.example.com",
            "https://keel.example.com.evil.test",
            "http://10.0.0.5",
            "https://x.test",
        ],
    )
    def test_anything_else(self, origin: str | None) -> None:
        assert not is_same_origin(
            origin, request_url="http://10.0.0.5:8000/api/v1/auth/refresh", public_url=self.PUBLIC
        )


@pytest.mark.parametrize(
    ("scheme", "public_url", "secure"),
    [
        ("http", "http://127.0.0.1:8000", False),
        ("https", "http://127.0.0.1:8000", True),
        ("http", "https://keel.example.com", True),
        ("http", "HTTPS://keel.example.com", True),
    ],
)
def test_needs_secure(scheme: str, public_url: str, secure: bool) -> None:
    assert needs_secure(request_scheme=scheme, public_url=public_url) is secure


def test_cookie_headers() -> None:
    assert refresh_cookie("abc-_9", max_age=60, secure=False) == (
        "keel_refresh=abc-_9; HttpOnly; Max-Age=60; Path=/api/v1/auth; SameSite=Strict"
    )
    assert expired_refresh_cookie(secure=True) == (
        'keel_refresh=""; HttpOnly; Max-Age=0; Path=/api/v1/auth; SameSite=Strict; Secure'
    )
