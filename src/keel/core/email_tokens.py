"""Signed, expiring tokens for email links (itsdangerous), one salt per purpose.

A verification token carries the user id and the address it was sent to, so it stops working if
the address changes. A reset token carries a fingerprint of the current password hash, so it
stops working once the password has changed: it works once (an unconfirmed account's, see
`reset_binding`, is bound to its address until the account is confirmed).

An email's token is signed as issued when its outbox row was written, not when it is rendered: the
same claims and the same time make the same token, so an email sent twice carries one link, and
nothing but the secret key is needed to make it again (the outbox stores no link).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from keel.core.config import Settings


class Purpose(StrEnum):
    VERIFY_EMAIL = "keel.verify-email"
    PASSWORD_RESET = "keel.password-reset"
    IDENTITY_LINK = "keel.identity-link"


class EmailTokenError(Exception):
    def __init__(self, *, expired: bool) -> None:
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


@dataclass(frozen=True, slots=True)
class EmailTokenClaims:
    user_id: int
    value: str  # the address (verification), or what `reset_binding` gives (reset)


class _IssuedAtSigner(TimestampSigner):
    """A TimestampSigner that signs with a given time rather than the clock's (its get_timestamp hook)."""

    def __init__(self, *args: Any, issued_at: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.issued_at = issued_at

    def get_timestamp(self) -> int:
        return self.issued_at


def _serializer(settings: Settings, purpose: Purpose, issued_at: datetime | None = None) -> URLSafeTimedSerializer:
    key = hmac.new(settings.secret, b"keel:email-links", hashlib.sha256).digest()
    if issued_at is None:
        return URLSafeTimedSerializer(key, salt=purpose.value)
    return URLSafeTimedSerializer(
        key, salt=purpose.value, signer=_IssuedAtSigner, signer_kwargs={"issued_at": int(issued_at.timestamp())}
    )


def password_fingerprint(settings: Settings, hashed_password: str) -> str:
    return hmac.new(settings.secret, hashed_password.encode(), hashlib.sha256).hexdigest()[:32]


def reset_binding(settings: Settings, *, hashed_password: str, email: str, verified: bool) -> str:
    """What a reset token is bound to, so that it works once.

    A confirmed account's token is bound to its password hash, so it stops working once the
    password has changed, by the token or otherwise. An unconfirmed account's token is bound to
    its address instead, and stops working once the account is confirmed (as using it does):
    someone who registered another person's address cannot spoil that person's link to claim the
    account by changing its password.
    """
    if verified:
        return password_fingerprint(settings, hashed_password)
    digest = hmac.new(settings.secret, f"unconfirmed:{email}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"unconfirmed:{digest}"


def make(settings: Settings, purpose: Purpose, *, user_id: int, value: str, issued_at: datetime | None = None) -> str:
    """A token for the claims, valid for its purpose's lifetime from `issued_at` (default: now)."""
    if issued_at is not None and issued_at.tzinfo is None:
        raise ValueError("issued_at must be an aware datetime")
    return _serializer(settings, purpose, issued_at).dumps({"u": user_id, "v": value})


def read(settings: Settings, purpose: Purpose, token: str) -> EmailTokenClaims:
    max_age = {
        Purpose.VERIFY_EMAIL: settings.verify_token_ttl_seconds,
        Purpose.PASSWORD_RESET: settings.reset_token_ttl_seconds,
        Purpose.IDENTITY_LINK: settings.identity_link_ttl_seconds,
    }[purpose]
    try:
        data: Any = _serializer(settings, purpose).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise EmailTokenError(expired=True) from exc
    except BadSignature as exc:
        raise EmailTokenError(expired=False) from exc
    if not (isinstance(data, dict) and isinstance(data.get("u"), int) and isinstance(data.get("v"), str)):
        raise EmailTokenError(expired=False)
    return EmailTokenClaims(user_id=data["u"], value=data["v"])
