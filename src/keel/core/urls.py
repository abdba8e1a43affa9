"""Origins of URLs, as browsers compare them (shared by the settings and the web cookie's checks)."""

from __future__ import annotations

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str, *, bare: bool = False) -> str | None:
    """The normalised origin (`scheme://host[:port]`, lower case, default port dropped) of a URL.

    With `bare`, the URL must be an origin and nothing more, as an `Origin` header is; anything
    else (`null`, a path, credentials, another scheme) has no origin and gives None.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # an unparsable host or port
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None or parts.password is not None:
        return None
    if bare and (parts.path or parts.query or parts.fragment or url.endswith(("?", "#"))):
        return None
    if ":" in host:  # IPv6 literal: urlsplit drops the brackets
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"
