"""Time-based one-time passwords (RFC 6238) as authenticator apps make them by default:
SHA-1, 6 digits, a new code every 30 seconds.

A code is accepted one step either side of now, for clocks that drift and codes typed as they
change. Each code works once: the caller keeps the step `matching_step` returns and passes it back
as `last_used_step`, and no code of that step or an earlier one is accepted again.
"""

from __future__ import annotations

import hmac
import io
from datetime import datetime

import pyotp
import segno

ISSUER = "Keel"
STEP_SECONDS = 30
DIGITS = 6
# How many steps either side of now a code may belong to.
WINDOW = 1
_SECRET_BASE32_CHARS = 32  # 160 bits, the key size RFC 4226 recommends for HMAC-SHA1
_ASCII_DIGITS = frozenset("0123456789")
# Longer than any code with spaces typed into it: not worth normalising.
_MAX_INPUT = 64


def new_secret() -> str:
    """A new random secret, base32 (32 characters, 160 bits)."""
    return pyotp.random_base32(length=_SECRET_BASE32_CHARS)


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)


def provisioning_uri(secret: str, email: str) -> str:
    """The `otpauth://totp/Keel:<email>?secret=...&issuer=Keel` URI an authenticator app scans."""
    return _totp(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The URI as a QR code: a standalone SVG element (with its namespace, no XML declaration),
    usable inline in HTML or as an image. Dark modules on a white quiet zone, at 4 px a module."""
    buffer = io.BytesIO()
    code = segno.make(uri, error="m", micro=False)
    code.save(buffer, kind="svg", xmldecl=False, nl=False, scale=4, border=4, dark="#000", light="#fff")
    return buffer.getvalue().decode("utf-8")


def step_at(now: datetime) -> int:
    """The time step `now` falls in (Unix time / 30, rounded down); `now` must be timezone-aware."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return int(now.timestamp() // STEP_SECONDS)


def normalize(code: str) -> str | None:
    """The code as 6 ASCII digits, with any spaces removed; None when it is not one."""
    if len(code) > _MAX_INPUT:
        return None
    compact = "".join(code.split())
    if len(compact) != DIGITS or not _ASCII_DIGITS.issuperset(compact):
        return None
    return compact


def matching_step(secret: str, code: str, *, now: datetime, last_used_step: int | None) -> int | None:
    """The time step within one of now's that `code` is the code of, or None.

    Steps at or before `last_used_step` are not tried, so a code used once is refused after. Bad
    input (letters, the wrong length, non-ASCII digits) is None, never an exception.
    """
    normal = normalize(code)
    if normal is None:
        return None
    totp = _totp(secret)
    current = step_at(now)
    matched: int | None = None
    # Every candidate is compared, and the latest match wins: were one code right for two steps,
    # using it must use up both.
    for step in range(current - WINDOW, current + WINDOW + 1):
        if step < 0 or (last_used_step is not None and step <= last_used_step):
            continue
        if hmac.compare_digest(totp.generate_otp(step), normal):
            matched = step
    return matched
