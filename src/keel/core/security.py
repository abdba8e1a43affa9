"""Password hashing, access tokens (JWT) and opaque refresh tokens."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import hmac
import os
import secrets
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar

import anyio
import jwt
from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from keel.core.config import Settings
from keel.core.errors import ClientClosedRequest
from keel.core.logging import get_logger
from keel.core.password_policy import normalize

JWT_ALGORITHM = "HS256"
ACCESS_TOKEN_TYPE = "access"
REQUIRED_CLAIMS = ["sub", "sid", "jti", "iat", "exp", "iss", "aud", "type"]

log = get_logger("keel.security")

_T = TypeVar("_T")


# --- passwords -------------------------------------------------------------------------------
# Asked before a queued hash runs: has the one who asked for it gone?
Abandoned = Callable[[], Awaitable[bool]]


class PasswordHasher:
    """argon2id for new hashes; other argon2 parameters and bcrypt still verify and get upgraded.

    Hashing runs on its own `concurrency` threads (argon2-cffi releases the GIL). Only they ever
    allocate argon2's block (the memory cost, 19 MiB by default), and glibc keeps and reuses it in
    each one's malloc arena, so a worker holds at most `concurrency` blocks and no hash pays for
    fresh pages. (Hashing on a shared thread pool left a block in the arena of every thread that
    ever hashed: a worker that had signed people in kept about 300 MB. Handing each block back to
    the kernel instead made every hash about 70% slower on a VM, from the page faults.) The
    threads run at a lower CPU priority than the event loop: under load, requests already in
    flight keep their pace and sign-ins wait for spare CPU, instead of everything slowing down.
    """

    def __init__(self, *, memory_cost: int, time_cost: int, parallelism: int, concurrency: int) -> None:
        self._bcrypt = BcryptHasher()
        self._hash = PasswordHash(
            (Argon2Hasher(memory_cost=memory_cost, time_cost=time_cost, parallelism=parallelism), self._bcrypt)
        )
        self._threads = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="keel-hash", initializer=_yield_to_the_event_loop
        )
        # Hashes wait for their turn here, on the event loop, rather than in the executor's queue, so
        # a verification whose client has gone by then can still be dropped (see `verify`). One more
        # per thread may wait in the executor's queue, ready when its thread is done: a thread then
        # never idles while the event loop gets round to handing it the next hash.
        self._turns = anyio.Semaphore(2 * concurrency)
        self._dummy_hash: str | None = None

    async def _run(self, function: Callable[..., _T], *args: Any, unless: Abandoned | None = None) -> _T:
        async with self._turns:
            if unless is not None and await unless():
                raise ClientClosedRequest
            # In the caller's context, so anything logged there still carries the request id.
            call = functools.partial(contextvars.copy_context().run, function, *args)
            return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    async def hash(self, password: str) -> str:
        return await self._run(self._hash.hash, normalize(password))

    async def verify(self, password: str, hashed: str, *, unless: Abandoned | None = None) -> tuple[bool, str | None]:
        """Check a password; the second value is a new hash when the stored one is outdated.

        With `unless`, asked once the hash is admitted to its thread's short queue (at most one more
        per thread ahead of it): when it answers true (the client hung up while the request queued
        behind other sign-ins), no hash is run and `ClientClosedRequest` is raised.
        Under a burst of sign-ins, clients that time out would otherwise leave a backlog of hashes
        nobody waits for, and every later sign-in would queue behind it.
        """
        return await self._run(self._verify_and_update, password, hashed, unless=unless)

    def _verify_and_update(self, password: str, hashed: str) -> tuple[bool, str | None]:
        normal = normalize(password)
        valid, upgraded = self._verify_one(normal, hashed)
        if valid or normal == password:
            return valid, upgraded
        # Hashed before passwords were normalised: the stored hash is of the password as typed then.
        valid, _ = self._verify_one(password, hashed)
        return valid, (self._hash.hash(normal) if valid else None)

    def _verify_one(self, password: str, hashed: str) -> tuple[bool, str | None]:
        if not has_usable_password(hashed):
            return False, None
        if self._bcrypt.identify(hashed):
            # bcrypt only ever used the first 72 bytes; bcrypt 5 raises on longer input instead of
            # truncating, so truncate as the system that made the hash did.
            valid = self._bcrypt.verify(password.encode()[:72], hashed)
            return valid, (self._hash.hash(password) if valid else None)
        try:
            return self._hash.verify_and_update(password, hashed)
        except UnknownHashError:
            log.error("unknown_password_hash_format")
            return False, None

    async def dummy_verify(self, password: str, *, unless: Abandoned | None = None) -> None:
        """Spend the time of a real verification, so an unknown email answers as slowly as a known one."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
        await self.verify(password, self._dummy_hash, unless=unless)


HASH_THREAD_NICENESS = 10


def _yield_to_the_event_loop() -> None:
    """Lower this thread's CPU priority below the process's (Linux schedules threads one by one)."""
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(os.getpriority(os.PRIO_PROCESS, thread) + HASH_THREAD_NICENESS, 19))
    except (AttributeError, OSError):  # pragma: no cover - not Linux, or not permitted
        log.info("hash_thread_priority_unchanged")


@lru_cache(maxsize=8)
def _hasher(memory_cost: int, time_cost: int, parallelism: int, concurrency: int) -> PasswordHasher:
    return PasswordHasher(
        memory_cost=memory_cost, time_cost=time_cost, parallelism=parallelism, concurrency=concurrency
    )


# An account made by a provider sign-in has no password until its owner sets one through a reset:
# its stored "hash" is this prefix and random text, which no password verifies against.
UNUSABLE_PASSWORD_PREFIX = "!unusable$"


def unusable_password() -> str:
    return UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(24)


def has_usable_password(hashed: str) -> bool:
    return not hashed.startswith(UNUSABLE_PASSWORD_PREFIX)


def password_hasher(settings: Settings) -> PasswordHasher:
    return _hasher(
        settings.argon2_memory_cost, settings.argon2_time_cost, settings.argon2_parallelism, settings.hash_concurrency
    )


# --- access tokens ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    session_id: str
    jti: str
    issued_at: int
    expires_at: int


class TokenError(Exception):
    """The token is not a valid access token; ``expired`` tells the one case clients act on."""

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.expired = expired


@lru_cache(maxsize=8)
def _jwt_key(secret: bytes) -> bytes:
    # One secret, one independent key per use: the JWT key never doubles as an email-link key.
    return hmac.new(secret, b"keel:jwt", hashlib.sha256).digest()


def create_access_token(settings: Settings, *, user_id: int, session_id: str, amr: Sequence[str], now: datetime) -> str:
    """`amr`: how the session was signed in (RFC 8176 values: `pwd`, `otp`, `hwk`, `mfa`...)."""
    issued = int(now.timestamp())
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "sid": session_id,
        "jti": uuid.uuid4().hex,
        "iat": issued,
        "exp": issued + settings.access_token_ttl_seconds,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "type": ACCESS_TOKEN_TYPE,
        "amr": list(amr),
    }
    return jwt.encode(claims, _jwt_key(settings.secret), algorithm=JWT_ALGORITHM)


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    """Verify an access token: signature, algorithm, issuer, audience, type, shape, and expiry now."""
    claims = _verified(_jwt_key(settings.secret), settings.jwt_audience, settings.jwt_issuer, token)
    # Everything but the expiry is a fixed property of the token's bytes and the key, so a token
    # verified once need not be verified again; the expiry depends on the clock, so it is checked
    # on every use. (The session behind the token is checked on every request elsewhere.)
    if claims.expires_at <= time.time():
        raise TokenError("expired", expired=True)
    return claims


# A client sends the same access token with every request for its whole life (15 minutes), and
# verifying it is a tenth of a list request's CPU. Bounded; invalid tokens raise and are not kept.
@lru_cache(maxsize=4096)
def _verified(key: bytes, audience: str, issuer: str, token: str) -> AccessClaims:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[JWT_ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("expired", expired=True) from exc
    except jwt.PyJWTError as exc:
        raise TokenError(type(exc).__name__) from exc
    if claims.get("type") != ACCESS_TOKEN_TYPE:
        raise TokenError("wrong token type")
    sub, sid, jti = claims["sub"], claims["sid"], claims["jti"]
    if not (isinstance(sub, str) and sub.isdigit() and len(sub) <= 18):
        raise TokenError("malformed subject")
    if not (isinstance(sid, str) and 0 < len(sid) <= 32 and isinstance(jti, str)):
        raise TokenError("malformed session id")
    return AccessClaims(
        user_id=int(sub),
        session_id=sid,
        jti=jti,
        issued_at=int(claims["iat"]),
        expires_at=int(claims["exp"]),
    )


# --- refresh tokens and session ids ----------------------------------------------------------
# Refresh tokens are 43 characters; a string longer than this is refused without a lookup.
MAX_REFRESH_TOKEN_CHARS = 4096


def new_refresh_token() -> tuple[str, str]:
    """A fresh opaque token (256 random bits) and the hash that is all the database keeps."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_session_id() -> str:
    return secrets.token_urlsafe(16)
