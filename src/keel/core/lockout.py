"""The account lock: password checks in a row without the right password, per account (see keel.core.ratelimit)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

# How long an account's count of checks without the right password is kept after the last one.
ATTEMPTS_KEPT_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class Lockout:
    """How many password checks in a row without the right password an account gets, and its lock."""

    after: int  # the check that reaches this count locks the account (unless it is right)
    first_seconds: float
    max_seconds: float
    kept_seconds: float = ATTEMPTS_KEPT_SECONDS

    def lock_seconds(self, attempt: int) -> float:
        """How long the account is locked after the `attempt`-th check in a row (0: not locked)."""
        if attempt < self.after:
            return 0.0
        return min(self.first_seconds * 2.0 ** min(attempt - self.after, 32), self.max_seconds)

    @property
    def args(self) -> list[float]:
        return [self.after, self.first_seconds, self.max_seconds, self.kept_seconds]


@dataclass(frozen=True, slots=True)
class PasswordAttempt:
    """A password check, counted against its account before it runs (see ``RateLimiter.password_attempt``)."""

    account: str  # the account's key: a digest of its normalised email
    number: int  # its place in the account's run of checks without the right password; 0: not counted
    locks: bool  # it reached the limit: if the password is wrong, the account is now locked


class LocalAttempts:
    """The accounts' password-check counts in this process, when Redis is not there to hold them."""

    # Bounded: an address spraying made-up emails must not grow the process without end. Past the
    # bound, counts that ended go first, then the longest untouched.
    MAX_ACCOUNTS = 100_000

    def __init__(self) -> None:
        self._accounts: dict[str, tuple[int, float, float]] = {}  # attempts, locked until, kept until

    def locked_until(self, account: str, now: float) -> float:
        _, until, kept = self._accounts.get(account, (0, 0.0, 0.0))
        return until if kept > now else 0.0

    def count(self, account: str, now: float, lockout: Lockout) -> int:
        attempts, until, kept = self._accounts.pop(account, (0, 0.0, 0.0))
        attempts = attempts + 1 if kept > now else 1
        if attempts >= lockout.after:
            until = now + lockout.lock_seconds(attempts)
        self._accounts[account] = (attempts, until, now + lockout.kept_seconds)
        if len(self._accounts) > self.MAX_ACCOUNTS:
            self._prune(now)
        return attempts

    def clear(self, account: str) -> None:
        self._accounts.pop(account, None)

    def _prune(self, now: float) -> None:
        for account in [account for account, (_, _, kept) in self._accounts.items() if kept <= now]:
            del self._accounts[account]
        excess = len(self._accounts) - self.MAX_ACCOUNTS * 9 // 10
        for account in list(itertools.islice(self._accounts, max(excess, 0))):
            del self._accounts[account]
