"""The session cache: one Redis entry per session, read by the per-request access check.

The database is the source of truth (see keel.services.session). The entry is filled from it on a
miss (``SET NX``) and overwritten with a tombstone *before* a revocation is committed, so a
concurrent fill can never put a revoked session back, and a Redis that lost its data only causes
misses, which read the database again.

The entry has two readers: ``SessionState.decode`` here, and the rate limiter's script
(keel.core.window_script.WINDOW_SCRIPT), which reads it in the same round trip as it counts an
authenticated write. Both take the format from this module: ``SessionState.encode`` writes it,
``ENTRY_CHECK_LUA`` is the script's reading of it, and ``user_prefix`` is how the script is told
whose session to expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from keel.core.errors import ServiceUnavailable
from keel.core.logging import get_logger

if TYPE_CHECKING:  # the limiter's script reads this module's format: no import back at run time
    from keel.core.ratelimit import RateLimiter, WindowCount, WindowResult

log = get_logger("keel.sessions")

# A revoked (or unknown) session's entry: not a SessionState, so the format's reader refuses it.
REVOKED = "revoked"
_SEPARATOR = "|"


@dataclass(frozen=True, slots=True)
class SessionState:
    """What the access check needs of a live session, as its entry holds it: "user|role|verified|expires"."""

    user_id: int
    role: str
    is_verified: bool
    expires_at: int  # the session's absolute end, as a Unix timestamp

    def encode(self) -> str:
        return _SEPARATOR.join((str(self.user_id), self.role, str(int(self.is_verified)), str(self.expires_at)))

    @classmethod
    def decode(cls, raw: str) -> SessionState:
        user_id, role, verified, expires = raw.split(_SEPARATOR)
        return cls(int(user_id), role, verified == "1", int(expires))


def user_prefix(user_id: int) -> str:
    """How an entry of this user's session begins (the separator keeps user 7 from matching 17)."""
    return f"{user_id}{_SEPARATOR}"


# The script's reading of an entry: whether it is the live session of the user whose
# `user_prefix` is given, at `now` (Unix seconds). A tombstone, another user's session, an
# expired one or no entry at all is not.
ENTRY_CHECK_LUA = """
local function is_live_session(entry, user_prefix, now)
  if not entry or string.sub(entry, 1, #user_prefix) ~= user_prefix then
    return false
  end
  local expires = tonumber(string.match(entry, '|(%d+)$'))
  return expires ~= nil and expires > now
end
"""


@dataclass(frozen=True, slots=True)
class TokenState:
    """What the access check needs of a live personal access token: "id|user|role|verified|expires|scopes"."""

    token_id: int
    user_id: int
    role: str
    is_verified: bool
    expires_at: int  # Unix seconds; 0: never
    scopes: str  # space-separated

    def encode(self) -> str:
        return _SEPARATOR.join(
            (
                str(self.token_id),
                str(self.user_id),
                self.role,
                str(int(self.is_verified)),
                str(self.expires_at),
                self.scopes,
            )
        )

    @classmethod
    def decode(cls, raw: str) -> TokenState:
        token_id, user_id, role, verified, expires, scopes = raw.split(_SEPARATOR)
        return cls(int(token_id), int(user_id), role, verified == "1", int(expires), scopes)


class SessionCache:
    """The Redis side of the access check. Every Redis failure becomes a 503: fail closed."""

    prefix = "keel:session:"
    # Personal access tokens, by the SHA-256 of the secret; and the marks that keep their
    # `last_used_at` to one write a minute.
    token_prefix = "keel:pat:"
    token_used_prefix = "keel:pat-used:"
    token_used_seconds = 60

    def __init__(self, redis: Redis, *, ttl_seconds: int, tombstone_ttl_seconds: int) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        # A tombstone only has to outlive the access tokens of its session.
        self.tombstone_ttl_seconds = tombstone_ttl_seconds

    async def get(self, session_id: str) -> SessionState | str | None:
        try:
            raw = cast(str | None, await self.redis.get(self.prefix + session_id))
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return _decoded(raw)

    async def get_counting(
        self, session_id: str, user_id: int, limiter: RateLimiter, count: WindowCount
    ) -> tuple[SessionState | str | None, WindowResult]:
        """The entry, read by the script that also counts the request against `count` if it is that
        user's live session: an authenticated write in one round trip (see keel.core.ratelimit)."""
        try:
            result = await limiter.run(count, session_key=self.prefix + session_id, user_prefix=user_prefix(user_id))
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return _decoded(result.entry), result

    async def fill(self, session_id: str, state: SessionState | str, ttl_seconds: int) -> None:
        value = state.encode() if isinstance(state, SessionState) else state
        try:
            await self.redis.set(self.prefix + session_id, value, ex=max(ttl_seconds, 1), nx=True)
        except RedisError as exc:  # the answer came from the database; only the cache is missed
            log.warning("session_cache_fill_failed", error=type(exc).__name__)

    async def admit(self, session_id: str, *, user_id: int, role: str, is_verified: bool, expires_at: datetime) -> None:
        """Cache a session whose tokens are about to be handed out (sign-in, refresh); 503 if Redis fails.

        While Redis is down every request's access check is refused, so tokens handed out then could
        not be used; and a revocation made then could not leave its tombstone, so a fallback to the
        database could later let a revoked session through. Sign-in and refresh fail closed too.
        """
        state = SessionState(user_id, str(role), is_verified, int(expires_at.timestamp()))
        try:
            await self.redis.set(self.prefix + session_id, state.encode(), ex=self.ttl_seconds, nx=True)
        except RedisError as exc:
            raise _unavailable(exc, "Sessions cannot be opened right now; try again shortly.") from exc

    async def tombstone(self, session_ids: Sequence[str]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for session_id in session_ids:
                    pipe.set(self.prefix + session_id, REVOKED, ex=self.tombstone_ttl_seconds)
                await pipe.execute()
        except RedisError as exc:
            log.warning("session_cache_unavailable", error=type(exc).__name__)
            raise ServiceUnavailable("Sessions cannot be changed right now; try again shortly.") from exc

    async def forget(self, session_ids: Sequence[str]) -> None:
        if not session_ids:
            return
        try:
            await self.redis.delete(*(self.prefix + session_id for session_id in session_ids))
        except RedisError as exc:
            log.warning("session_cache_unavailable", error=type(exc).__name__)
            raise ServiceUnavailable("Sessions cannot be changed right now; try again shortly.") from exc

    # --- personal access tokens: the same fill-on-miss and tombstone-before-commit as sessions ---
    async def get_token(self, digest: str) -> tuple[TokenState | str | None, bool]:
        """The token's entry, and whether this is its first use this minute (then `last_used_at` is written)."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(self.token_prefix + digest)
                pipe.set(self.token_used_prefix + digest, "1", ex=self.token_used_seconds, nx=True)
                raw, first_use = await pipe.execute()
        except RedisError as exc:
            raise _unavailable(exc) from exc
        if raw is None or raw == REVOKED:
            return raw, bool(first_use)
        return TokenState.decode(raw), bool(first_use)

    async def fill_token(self, digest: str, state: TokenState | str) -> None:
        value = state.encode() if isinstance(state, TokenState) else state
        try:
            await self.redis.set(self.token_prefix + digest, value, ex=self.ttl_seconds, nx=True)
        except RedisError as exc:
            log.warning("session_cache_fill_failed", error=type(exc).__name__)

    async def tombstone_tokens(self, digests: Sequence[str]) -> None:
        """Before the revocation commits: from now on every worker refuses these tokens.

        The tombstone outlives any cache entry a request could still be filling from a read made
        before the commit; after it, a miss reads the database, which has the revocation.
        """
        if not digests:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for digest in digests:
                    pipe.set(self.token_prefix + digest, REVOKED, ex=self.ttl_seconds + 60)
                await pipe.execute()
        except RedisError as exc:
            log.warning("session_cache_unavailable", error=type(exc).__name__)
            raise ServiceUnavailable("Tokens cannot be changed right now; try again shortly.") from exc

    async def forget_tokens(self, digests: Sequence[str]) -> None:
        """Drop entries that hold stale account state (a verification change); the next use reads the database."""
        if not digests:
            return
        try:
            await self.redis.delete(*(self.token_prefix + digest for digest in digests))
        except RedisError as exc:
            log.warning("session_cache_unavailable", error=type(exc).__name__)
            raise ServiceUnavailable("Sessions cannot be changed right now; try again shortly.") from exc


def _unavailable(
    exc: RedisError, detail: str = "Sessions cannot be checked right now; try again shortly."
) -> ServiceUnavailable:
    log.warning("session_cache_unavailable", error=type(exc).__name__)
    return ServiceUnavailable(detail)


def _decoded(raw: str | None) -> SessionState | str | None:
    if raw is None or raw == REVOKED:
        return raw
    return SessionState.decode(raw)
