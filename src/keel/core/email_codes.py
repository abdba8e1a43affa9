"""Emailed sign-in codes: derived from their outbox row, kept only as a keyed hash.

The outbox stores ids, never a message (keel.services.outbox): the code in a sign-in email is
derived when the email is rendered, from the row's id, creation time and address under a key
derived from the secret key, so a copy sent again after a worker died carries the same code,
and the table holds nothing usable without the secret key. The code itself is checked against
`email_sign_in_code.code_hash`, an HMAC under another derived key, bound to the account.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from keel.core.config import Settings

DIGITS = 8
_MODULUS = 10**DIGITS


def _key(settings: Settings, purpose: bytes) -> bytes:
    return hmac.new(settings.secret, b"keel:email-sign-in-code:" + purpose, hashlib.sha256).digest()


def derive(settings: Settings, *, outbox_id: int, created_at: datetime, to_address: str) -> str:
    """The code an outbox row's email carries: 8 digits, the same at every rendering."""
    message = f"{outbox_id}|{created_at.isoformat()}|{to_address}".encode()
    digest = hmac.new(_key(settings, b"derive"), message, hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % _MODULUS:0{DIGITS}d}"


def hash_code(settings: Settings, *, user_id: int, code: str) -> str:
    """What is stored of a code: its HMAC, bound to the account it signs in to."""
    return hmac.new(_key(settings, b"hash"), f"{user_id}|{code}".encode(), hashlib.sha256).hexdigest()


def matches(settings: Settings, *, user_id: int, code: str, code_hash: str) -> bool:
    return hmac.compare_digest(hash_code(settings, user_id=user_id, code=code), code_hash)
