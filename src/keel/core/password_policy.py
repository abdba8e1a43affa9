"""What makes a password acceptable: 8-128 characters, not common, and not easy to guess.

"Common" is the "passwords" frequency list that ships with zxcvbn (from real leaked-password
corpora), checked case-insensitively. "Easy to guess" is zxcvbn's own estimate, told the
account's email and username: it must reach 10^8 guesses, the edge of its score 3 ("safely
unguessable"). Score 3 proper starts just above 10^8, which no 8-character password can reach,
and 8 characters is the contract's minimum; 10^8 is what zxcvbn gives 8 characters with no
pattern in them, and a day of guessing for a rig that tries a thousand argon2 hashes a second.

Passwords are compared, rated and hashed in Unicode NFC, so the same password typed on two
keyboards (a precomposed "é", or "e" and a combining accent) is the same password.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

MIN_LENGTH = 8
MAX_LENGTH = 128
MIN_GUESSES = 10**8
# zxcvbn's time grows quickly with the length (a second for some 128-character inputs), and it
# runs on the event loop; a password whose first 32 characters are hard to guess is.
RATED_CHARS = 32
RULE = (
    f"Passwords must be {MIN_LENGTH}-{MAX_LENGTH} characters, not a common password, not your email or "
    "username, and hard to guess (zxcvbn estimates at least 10^8 guesses)."
)


def normalize(password: str) -> str:
    return unicodedata.normalize("NFC", password)


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word for word in FREQUENCY_LISTS["passwords"] if len(word) >= MIN_LENGTH)


def is_common(password: str) -> bool:
    return normalize(password).lower() in _common_passwords()


def check_form(password: str) -> str:
    """The cheap part of the policy (length, the frequency list): the password in NFC, or ``ValueError``."""
    password = normalize(password)
    if len(password) < MIN_LENGTH:
        raise ValueError(f"Password must be at least {MIN_LENGTH} characters long.")
    if len(password) > MAX_LENGTH:
        raise ValueError(f"Password must be at most {MAX_LENGTH} characters long.")
    if is_common(password):
        raise ValueError("This password is too common; choose one that is harder to guess.")
    return password


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the policy says of a password: whether it is accepted, zxcvbn's score 0-4, and why."""

    acceptable: bool
    score: int
    message: str


ACCEPTED = "Hard to guess: this password is accepted."


def assess(password: str, *, personal: tuple[str | None, ...] = ()) -> Verdict:
    """The policy's verdict on ``password``; ``check_password`` refuses exactly what this does not accept.

    ``personal``: the account's email, its local part and the username, which the password must
    neither equal nor be built from.
    """
    try:
        password = check_form(password)
    except ValueError as exc:
        return Verdict(acceptable=False, score=0, message=str(exc))
    lowered = password.lower()
    known = [value for value in personal if value]
    if any(lowered == value.lower() for value in known):
        return Verdict(acceptable=False, score=0, message="Password must not be the same as your email or username.")
    return _rate(password, known)


def personal_of(email: str | None, username: str | None) -> tuple[str | None, ...]:
    """What a password must not be built from: the email, its local part and the username."""
    return (email, email.split("@")[0] if email else None, username)


def check_password(password: str, *, personal: tuple[str | None, ...] = ()) -> str:
    """Return the password in NFC if acceptable, else raise ``ValueError`` saying why."""
    verdict = assess(password, personal=personal)
    if not verdict.acceptable:
        raise ValueError(verdict.message)
    return normalize(password)


def _rate(password: str, personal: list[str]) -> Verdict:
    from zxcvbn import zxcvbn

    rated = password[:RATED_CHARS]
    result: dict[str, Any] = zxcvbn(rated, user_inputs=personal, max_length=RATED_CHARS)
    score = int(result["score"])
    if result["guesses"] >= MIN_GUESSES:
        return Verdict(acceptable=True, score=score, message=ACCEPTED)
    feedback = result["feedback"]
    reasons = [feedback["warning"]] if feedback["warning"] else []
    if any(match.get("dictionary_name") == "user_inputs" for match in result["sequence"]):
        reasons.append("It is built from your email or username.")
    reasons.extend(feedback["suggestions"])
    return Verdict(acceptable=False, score=score, message=" ".join(["This password is too easy to guess.", *reasons]))
