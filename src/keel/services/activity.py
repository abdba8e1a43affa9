"""The account's security activity: recorded inside the transaction of the change it records.

`record` takes the change's own unit of work (an ORM session, or a `Transaction` of prebuilt
statements on the sign-in paths), so a change that fails or rolls back leaves no row, and a row
never exists without its change. Where the change came from is the current request's client (the
address resolved through trusted proxies, see keel.core.context) unless the caller says otherwise.
`detail` is a small JSON object kept as text: both database paths write the one string it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

import sqlalchemy as sa
import ua_parser
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.context import current_client
from keel.core.db import Database, Prebuilt, Transaction
from keel.core.errors import UserNotFound
from keel.models import Activity, ActivityType, User, utcnow
from keel.schemas.activity import ActivityRead
from keel.schemas.common import Page
from keel.services.query import PageQuery

# The names people know their systems by, where ua-parser's differ.
_OS_NAMES = {"Mac OS X": "macOS", "Windows": "Windows", "Ubuntu": "Ubuntu Linux"}
_DEVICE_CHARS = 120


class Where(NamedTuple):
    """Where a change came from: the client's address and its raw User-Agent header."""

    ip: str | None
    user_agent: str | None


def here() -> Where:
    """The current request's client, or nowhere (the CLI, a worker)."""
    client = current_client()
    return Where(None, None) if client is None else Where(client.ip, client.user_agent)


@lru_cache(maxsize=512)
def describe(user_agent: str | None) -> str | None:
    """A User-Agent header as a person reads it: "Firefox on macOS"; else its first product token."""
    if not user_agent:
        return None
    parsed = ua_parser.parse(user_agent[:1000])
    browser = parsed.user_agent.family if parsed.user_agent is not None else None
    system = parsed.os.family if parsed.os is not None else None
    system = _OS_NAMES.get(system, system) if system else None
    if browser and system:
        return f"{browser} on {system}"[:_DEVICE_CHARS]
    if browser or system:
        return (browser or system or "")[:_DEVICE_CHARS]
    # A library or a script ("python-httpx/0.28.1", "curl/8.5.0"): its own name is the best there is.
    return user_agent.split()[0][:_DEVICE_CHARS]


def _values(
    *, user_id: int, type: ActivityType | str, detail: Mapping[str, Any] | None, where: Where | None, now: datetime
) -> dict[str, Any]:
    where = here() if where is None else where
    return {
        "user_id": user_id,
        "type": str(type),
        "created_at": now,
        "ip": (where.ip or "")[:45] or None,
        "user_agent": describe(where.user_agent),
        "detail": json.dumps(dict(detail or {}), separators=(",", ":"), sort_keys=True, default=str),
    }


class _Id(NamedTuple):
    id: int


# With RETURNING said outright: PostgreSQL's dialect would add it for the id anyway.
_NEW = Prebuilt(
    sa.insert(Activity).returning(col(Activity.id)),
    _Id,
    binds=["user_id", "type", "created_at", "ip", "user_agent", "detail"],
)


async def record(
    work: AsyncSession | Transaction,
    *,
    user_id: int,
    type: ActivityType | str,
    detail: Mapping[str, Any] | None = None,
    where: Where | None = None,
    now: datetime | None = None,
) -> None:
    """Add an activity row to the change's own transaction (committed with it, or not at all)."""
    values = _values(user_id=user_id, type=type, detail=detail, where=where, now=now or utcnow())
    if isinstance(work, Transaction):
        await work.rows(_NEW, **values)
    else:
        work.add(Activity(**values))


async def record_returning_id(
    work: Transaction,
    *,
    user_id: int,
    type: ActivityType | str,
    detail: Mapping[str, Any] | None = None,
    where: Where | None = None,
    now: datetime | None = None,
) -> int:
    """`record` in a transaction of prebuilt statements, for a row something else will point to."""
    values = _values(user_id=user_id, type=type, detail=detail, where=where, now=now or utcnow())
    row = await work.first(_NEW, **values)
    assert row is not None  # an INSERT ... RETURNING of one row
    return row.id


_COLUMNS = [col(getattr(Activity, name)) for name in ("id", "type", "created_at", "ip", "user_agent", "detail")]
_PAGE = PageQuery.of(
    sa.select(*_COLUMNS)
    .where(col(Activity.user_id) == sa.bindparam("user_id"))
    .order_by(col(Activity.created_at).desc(), col(Activity.id).desc())
    .limit(sa.bindparam("limit"))
    .offset(sa.bindparam("offset")),
    sa.select(sa.func.count()).select_from(Activity).where(col(Activity.user_id) == sa.bindparam("user_id")),
)


def _detail(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def list_for_user(*, database: Database, user_id: int, limit: int, offset: int) -> Page[ActivityRead]:
    """A page of an account's activity, newest first."""
    rows, total = await _PAGE.fetch(database, {"user_id": user_id, "limit": limit, "offset": offset})
    items = [
        ActivityRead(id=row[0], type=row[1], created_at=row[2], ip=row[3], user_agent=row[4], detail=_detail(row[5]))
        for row in rows
    ]
    return Page[ActivityRead](items=items, total=total, limit=limit, offset=offset)


_EXISTS = Prebuilt(sa.select(col(User.id)).where(col(User.id) == sa.bindparam("user_id")), tuple)


async def list_for_admin(*, database: Database, user_id: int, limit: int, offset: int) -> Page[ActivityRead]:
    """`list_for_user` for an administrator: 404 for an account that does not exist."""
    if await database.first(_EXISTS, user_id=user_id) is None:
        raise UserNotFound
    return await list_for_user(database=database, user_id=user_id, limit=limit, offset=offset)
