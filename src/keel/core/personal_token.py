"""Personal access tokens on the wire: `keel_pat_`, 30 random base62 characters, a 6-character checksum.

The shape follows GitHub's tokens: the prefix lets secret scanners recognise a leaked one, and the
checksum (CRC32 of the random part, in base62) lets Keel refuse a mistyped or made-up token before
it reads the cache or the database. Only the SHA-256 of the whole token is kept.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import zlib
from enum import StrEnum

PREFIX = "keel_pat_"
RANDOM_LENGTH = 30  # 62**30 is about 2**178
CHECKSUM_LENGTH = 6  # 62**6 > 2**32
TOKEN_LENGTH = len(PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH
_ALPHABET = string.digits + string.ascii_letters
_ALLOWED = frozenset(_ALPHABET)


class Scope(StrEnum):
    """What a personal access token may do; each route family names the scope it needs."""

    PROFILE_READ = "profile:read"
    TODOS_READ = "todos:read"
    TODOS_WRITE = "todos:write"
    POSTS_READ = "posts:read"
    POSTS_WRITE = "posts:write"
    LISTS_READ = "lists:read"
    LISTS_WRITE = "lists:write"


def _base62(value: int, width: int) -> str:
    digits = []
    while value:
        value, digit = divmod(value, 62)
        digits.append(_ALPHABET[digit])
    return "".join(reversed(digits)).rjust(width, _ALPHABET[0])


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_LENGTH)


def is_personal_token(token: str) -> bool:
    """Whether a bearer credential is meant as a personal access token (told apart by its prefix)."""
    return token.startswith(PREFIX)


def new_token() -> str:
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(RANDOM_LENGTH))
    return PREFIX + random_part + _checksum(random_part)


def well_formed(token: str) -> bool:
    """The prefix, the length, the alphabet and the checksum: all without any lookup."""
    if len(token) != TOKEN_LENGTH or not token.startswith(PREFIX):
        return False
    body = token[len(PREFIX) :]
    if not _ALLOWED.issuperset(body):
        return False
    random_part, checksum = body[:RANDOM_LENGTH], body[RANDOM_LENGTH:]
    return secrets.compare_digest(_checksum(random_part), checksum)


def token_hash(token: str) -> str:
    """What is stored, and what the cache is keyed by: the SHA-256 of the whole token, in hex."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def parse_scopes(stored: str) -> frozenset[str]:
    return frozenset(stored.split())


def format_scopes(scopes: frozenset[str] | set[str] | list[str]) -> str:
    """Space-separated and in a fixed order (OAuth's `scope` syntax), as stored and as sent in a challenge."""
    order = [scope.value for scope in Scope]
    return " ".join(sorted(set(scopes), key=order.index))
