"""What makes a password acceptable: 8-128 characters and not among the 30,000 most common.

The list is the "passwords" frequency list that ships with zxcvbn (from real leaked-password
corpora); checking membership, case-insensitively, is cheap once it is loaded as a set.
"""

from __future__ import annotations

from functools import lru_cache

MIN_LENGTH = 8
MAX_LENGTH = 128


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word for word in FREQUENCY_LISTS["passwords"] if len(word) >= MIN_LENGTH)


def is_common(password: str) -> bool:
    return password.lower() in _common_passwords()


def check_password(password: str, *, personal: tuple[str | None, ...] = ()) -> str:
    """Return the password if acceptable, else raise ``ValueError`` saying why."""
    if len(password) < MIN_LENGTH:
        raise ValueError(f"Password must be at least {MIN_LENGTH} characters long.")
    if len(password) > MAX_LENGTH:
        raise ValueError(f"Password must be at most {MAX_LENGTH} characters long.")
    if is_common(password):
        raise ValueError("This password is too common; choose one that is harder to guess.")
    lowered = password.lower()
    if any(value and lowered == value.lower() for value in personal):
        raise ValueError("Password must not be the same as your email or username.")
    return password
