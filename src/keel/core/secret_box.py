"""Small secrets encrypted at rest (a TOTP seed, say) with a key derived from the secret key.

AES-256-GCM with a random 96-bit nonce. The associated data names what the secret is for and whose
it is, so a sealed value copied into another user's row, or into a column for another purpose,
does not open. A sealed value is `v1.` and the base64url (unpadded) of nonce + ciphertext + tag:
ASCII, and `sealed_length` tells how long, for sizing a column.
"""

from __future__ import annotations

import base64
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = "v1."
_NONCE_BYTES = 12
_TAG_BYTES = 16


class SecretBoxError(Exception):
    """A sealed value that does not open: tampered with, malformed, made with another key or for
    another purpose or user."""


@lru_cache(maxsize=8)
def _key(secret: bytes) -> AESGCM:
    # Its own key, independent of the JWT and email-link keys made from the same secret.
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"keel:secret-box:v1").derive(secret)
    return AESGCM(key)


def _associated_data(purpose: str, user_id: int) -> bytes:
    if not purpose or "\x00" in purpose:
        raise ValueError("purpose must be a non-empty label without NUL characters")
    return b"keel:secret-box:v1\x00" + purpose.encode() + b"\x00" + str(user_id).encode()


def seal(secret: bytes, plaintext: str, *, purpose: str, user_id: int) -> str:
    """Encrypt `plaintext` for `user_id`'s `purpose` (e.g. "totp"); `secret` is `Settings.secret`."""
    nonce = os.urandom(_NONCE_BYTES)
    ciphertext = _key(secret).encrypt(nonce, plaintext.encode(), _associated_data(purpose, user_id))
    return _VERSION + _encode(nonce + ciphertext)


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unseal(secret: bytes, sealed: str, *, purpose: str, user_id: int) -> str:
    """The plaintext `seal` was given, or `SecretBoxError`."""
    associated_data = _associated_data(purpose, user_id)
    if not sealed.startswith(_VERSION):
        raise SecretBoxError("not a sealed value (unknown version)")
    body = sealed[len(_VERSION) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError as error:  # not ASCII, or a length no base64 has
        raise SecretBoxError("not a sealed value (bad encoding)") from error
    # The decoder skips characters outside the alphabet and ignores the last one's unused bits:
    # only the one spelling `seal` makes is accepted.
    if _encode(raw) != body:
        raise SecretBoxError("not a sealed value (bad encoding)")
    if len(raw) < _NONCE_BYTES + _TAG_BYTES:
        raise SecretBoxError("not a sealed value (too short)")
    try:
        plaintext = _key(secret).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], associated_data)
    except InvalidTag as error:
        raise SecretBoxError("sealed value does not open: tampered, or another key, purpose or user") from error
    return plaintext.decode()


def sealed_length(plaintext_bytes: int) -> int:
    """How many characters `seal` makes of a plaintext of this many UTF-8 bytes."""
    raw = _NONCE_BYTES + plaintext_bytes + _TAG_BYTES
    return len(_VERSION) + (4 * raw + 2) // 3
