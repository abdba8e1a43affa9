"""Single-use recovery codes, for signing in when the authenticator is lost.

A code is 10 characters of Crockford's base32 (digits and lower-case letters without i, l, o and
u), 50 random bits, shown as `xxxxx-xxxxx`. Typing is forgiving: case, spaces and dashes do not
matter, and i, l and o are read as 1, 1 and 0, as Crockford's alphabet intends.

Only an HMAC-SHA256 of the code is stored, keyed with a key derived from the secret key: a copy of
the database alone is not enough to try codes offline.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import lru_cache

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
GROUP = 5
GROUPS = 2
LENGTH = GROUP * GROUPS
BITS = LENGTH * 5  # 32 symbols: 5 bits each
DEFAULT_COUNT = 10
_READ_AS = str.maketrans({"i": "1", "l": "1", "o": "0", " ": None, "-": None})
_ALPHABET_SET = frozenset(ALPHABET)
# Longer than any code with separators typed into it: not worth normalising.
_MAX_INPUT = 64


def generate(count: int = DEFAULT_COUNT) -> list[str]:
    """`count` distinct new codes, formatted `xxxxx-xxxxx`."""
    codes: dict[str, None] = {}  # distinct, in the order made
    while len(codes) < count:
        raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        codes["-".join(raw[i : i + GROUP] for i in range(0, LENGTH, GROUP))] = None
    return list(codes)


def normalize(code: str) -> str | None:
    """The code's 10 characters as stored, or None when it cannot be a recovery code."""
    if len(code) > _MAX_INPUT or not code.isascii():
        return None
    normal = code.lower().translate(_READ_AS)
    if len(normal) != LENGTH or not _ALPHABET_SET.issuperset(normal):
        return None
    return normal


@lru_cache(maxsize=8)
def _key(secret: bytes) -> bytes:
    # Its own key, independent of every other key derived from the same secret.
    return hmac.new(secret, b"keel:recovery-codes", hashlib.sha256).digest()


def hash_code(secret: bytes, code: str) -> str:
    """What to store for `code` (64 hex characters); `secret` is `Settings.secret`.

    Codes that normalise alike hash alike, so the hash of a presented code can also be looked up.
    Raises `ValueError` for something that is not a recovery code (see `normalize`).
    """
    normal = normalize(code)
    if normal is None:
        raise ValueError("not a recovery code")
    return hmac.new(_key(secret), normal.encode("ascii"), hashlib.sha256).hexdigest()


def verify(secret: bytes, code: str, code_hash: str) -> bool:
    """Whether `code` is the one `code_hash` was made from; any malformed input is simply False."""
    normal = normalize(code)
    if normal is None:
        return False
    presented = hmac.new(_key(secret), normal.encode("ascii"), hashlib.sha256).hexdigest()
    return hmac.compare_digest(presented.encode("ascii"), code_hash.encode("utf-8", "replace"))
