"""The ceiling: the least work that answers the benchmark's requests the way Keel must.

A bare FastAPI app with no models, no ORM and no middleware. It verifies the same JWT with
PyJWT (same key, same claims), checks the session the way Keel does with Redis (one GET of
the same cache entry, the database on a miss), runs the same SQL through raw asyncpg and
serialises with orjson. Whatever Keel spends above this is the price of its framework code;
the benchmark reports every Keel figure as a ratio to this app measured on the same machine.

It is not a second implementation of Keel: no validation beyond what the benchmark sends, no
error bodies, no rate limits, logs or metrics. Configured by environment variables set by
bench/run.py: BENCH_DSN, BENCH_REDIS_URL, KEEL_SECRET_KEY.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import jwt
import orjson
from fastapi import FastAPI, Request, Response
from redis.asyncio import Redis

_KEY = hmac.new(os.environ["KEEL_SECRET_KEY"].encode(), b"keel:jwt", hashlib.sha256).digest()
_REQUIRED = ["sub", "sid", "jti", "iat", "exp", "iss", "aud", "type"]
_PRIORITY = ("low", "normal", "high")
_ACCESS_TTL = 15 * 60
_IDLE_TTL = 14 * 24 * 3600
_CACHE_TTL = 300
GC_THRESHOLDS = (10_000, 20, 20)  # keel.main.GC_THRESHOLDS


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(os.environ["BENCH_DSN"], min_size=10, max_size=10)
    app.state.redis = Redis.from_url(os.environ["BENCH_REDIS_URL"], decode_responses=True)
    # The same collector settings as Keel's: they are the process's, not work an app does.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    yield
    await app.state.pool.close()
    await app.state.redis.aclose()


app = FastAPI(lifespan=_lifespan, openapi_url=None)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


_DENIED = Response(b'{"status":401}', status_code=401, media_type="application/json")

_SESSION_SQL = """
SELECT s.user_id, s.expires_at, u.role, u.is_verified FROM user_session s JOIN "user" u ON u.id = s.user_id
WHERE s.id = $1 AND s.revoked_at IS NULL AND u.is_active
"""


async def _principal(request: Request) -> tuple[int, bool] | None:
    """(user id, verified) for a valid bearer token whose session still counts, else None."""
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        return None
    try:
        claims = jwt.decode(
            header[7:], _KEY, algorithms=["HS256"], audience="keel-api", issuer="keel", options={"require": _REQUIRED}
        )
    except jwt.PyJWTError:
        return None
    if claims["type"] != "access" or not str(claims["sub"]).isdigit():
        return None
    user_id, session_id = int(claims["sub"]), claims["sid"]
    redis: Redis = request.app.state.redis
    raw = cast(str | None, await redis.get("keel:session:" + session_id))
    if raw is None:
        row = await request.app.state.pool.fetchrow(_SESSION_SQL, session_id)
        if row is None:
            return None
        raw = f"{row[0]}|{row[2]}|{int(row[3])}|{int(row[1].timestamp())}"
        await redis.set("keel:session:" + session_id, raw, ex=_CACHE_TTL, nx=True)
    if raw == "revoked":
        return None
    owner, _role, verified, expires = raw.split("|")
    if int(owner) != user_id or int(expires) <= time.time():
        return None
    return user_id, verified == "1"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


_TODOS_SQL = """
SELECT id, title, description, completed, priority, due_date, created_at, updated_at, owner_id,
       (SELECT count(*) FROM todo WHERE owner_id = $1) AS total
FROM todo WHERE owner_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3
"""


def _todo(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "description": row["description"],
        "completed": row["completed"],
        "priority": _PRIORITY[row["priority"]],
        "due_date": row["due_date"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "owner_id": row["owner_id"],
    }


@app.get("/api/v1/todos")
async def list_todos(request: Request) -> Response:
    principal = await _principal(request)
    if principal is None:
        return _DENIED
    limit = int(request.query_params.get("limit", 20))
    offset = int(request.query_params.get("offset", 0))
    rows = await request.app.state.pool.fetch(_TODOS_SQL, principal[0], limit, offset)
    total = rows[0]["total"] if rows else 0
    return _json({"items": [_todo(row) for row in rows], "total": total, "limit": limit, "offset": offset})


_ME_SQL = 'SELECT id, username, full_name, created_at, email, role, is_active, is_verified FROM "user" WHERE id = $1'


@app.get("/api/v1/users/me")
async def read_me(request: Request) -> Response:
    """The account, with the strong ETag Keel sends: a digest of the sorted JSON (keel.core.conditional)."""
    principal = await _principal(request)
    if principal is None:
        return _DENIED
    row = await request.app.state.pool.fetchrow(_ME_SQL, principal[0])
    if row is None:
        return _DENIED
    body = {**dict(row), "created_at": _iso(row["created_at"])}
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).digest()[:16]
    answer = _json(body)
    answer.headers["etag"] = '"' + base64.urlsafe_b64encode(digest).decode().rstrip("=") + '"'
    return answer


_INSERT_TODO_SQL = """
INSERT INTO todo (owner_id, title, description, completed, priority, due_date, created_at, updated_at)
VALUES ($1, $2, $3, false, $4, $5, $6, $6)
RETURNING id, title, description, completed, priority, due_date, created_at, updated_at, owner_id
"""


@app.post("/api/v1/todos")
async def create_todo(request: Request) -> Response:
    principal = await _principal(request)
    if principal is None:
        return _DENIED
    data = orjson.loads(await request.body())
    due = data.get("due_date")
    row = await request.app.state.pool.fetchrow(
        _INSERT_TODO_SQL,
        principal[0],
        data["title"],
        data.get("description"),
        _PRIORITY.index(data.get("priority", "normal")),
        None if due is None else datetime.strptime(due, "%Y-%m-%d").date(),
        datetime.now(UTC),
    )
    return _json(_todo(row), 201)


_FEED_SQL = """
SELECT p.id, p.title, p.content, p.published, p.published_at, p.created_at, p.updated_at,
       u.id AS author_id, u.username, u.full_name, u.created_at AS author_created_at,
       (SELECT count(*) FROM vote v WHERE v.post_id = p.id) AS votes,
       EXISTS (SELECT 1 FROM vote v WHERE v.post_id = p.id AND v.user_id = $1) AS voted,
       (SELECT count(*) FROM post WHERE published = true) AS total
FROM post p JOIN "user" u ON u.id = p.author_id
WHERE p.published = true ORDER BY p.published_at DESC, p.id DESC LIMIT $2 OFFSET $3
"""


@app.get("/api/v1/posts")
async def list_posts(request: Request) -> Response:
    principal = await _principal(request) if "authorization" in request.headers else None
    if principal is None and "authorization" in request.headers:
        return _DENIED
    viewer = principal[0] if principal else 0
    limit = int(request.query_params.get("limit", 20))
    offset = int(request.query_params.get("offset", 0))
    rows = await request.app.state.pool.fetch(_FEED_SQL, viewer, limit, offset)
    items = [
        {
            "id": row["id"],
            "title": row["title"],
            "content": row["content"],
            "published": row["published"],
            "published_at": _iso(row["published_at"]),
            "created_at": _iso(row["created_at"]),
            "updated_at": _iso(row["updated_at"]),
            "author": {
                "id": row["author_id"],
                "username": row["username"],
                "full_name": row["full_name"],
                "created_at": _iso(row["author_created_at"]),
            },
            "votes": row["votes"],
            "voted": row["voted"],
        }
        for row in rows
    ]
    total = rows[0]["total"] if rows else 0
    return _json({"items": items, "total": total, "limit": limit, "offset": offset})


_CONSUME_SQL = """
UPDATE refresh_token SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL RETURNING session_id
"""
_REFRESH_SESSION_SQL = """
SELECT s.user_id, s.expires_at, s.last_used_at, s.revoked_at, u.is_active
FROM user_session s JOIN "user" u ON u.id = s.user_id WHERE s.id = $1
"""


@app.post("/api/v1/auth/refresh")
async def refresh(request: Request) -> Response:
    data = orjson.loads(await request.body())
    token_hash = hashlib.sha256(data["refresh_token"].encode()).hexdigest()
    now = datetime.now(UTC)
    async with request.app.state.pool.acquire() as connection, connection.transaction():
        session_id = await connection.fetchval(_CONSUME_SQL, token_hash, now)
        if session_id is None:
            return _DENIED  # Keel would also look for reuse here; the benchmark never reuses
        row = await connection.fetchrow(_REFRESH_SESSION_SQL, session_id)
        idle = (now - row["last_used_at"]).total_seconds()
        if not row["is_active"] or row["revoked_at"] is not None or row["expires_at"] <= now or idle >= _IDLE_TTL:
            return _DENIED
        await connection.execute("UPDATE user_session SET last_used_at = $2 WHERE id = $1", session_id, now)
        new_token = secrets.token_urlsafe(32)
        await connection.execute(
            "INSERT INTO refresh_token (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
            hashlib.sha256(new_token.encode()).hexdigest(),
            session_id,
            now,
        )
    issued = int(now.timestamp())
    claims = {
        "sub": str(row["user_id"]),
        "sid": session_id,
        "jti": uuid.uuid4().hex,
        "iat": issued,
        "exp": issued + _ACCESS_TTL,
        "iss": "keel",
        "aud": "keel-api",
        "type": "access",
    }
    access = jwt.encode(claims, _KEY, algorithm="HS256")
    return _json(
        {"access_token": access, "refresh_token": new_token, "token_type": "bearer", "expires_in": _ACCESS_TTL}
    )
