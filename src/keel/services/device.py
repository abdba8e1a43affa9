"""Telling a new device from one seen before, on each sign-in, for the new-device notice.

A browser is known by its `keel_device` cookie: a random id set on its first sign-in, kept 400 days,
HttpOnly. An API client (a script, a mobile app) is known by its user agent and its network (the
/24 of an IPv4 address, the /64 of an IPv6 one), so a phone moving between two addresses of its
carrier's network is still itself. Only a hash is stored, salted with the account's id, so the same
browser's rows on two accounts cannot be matched up.

`seen` runs in the sign-in's transaction. A device new to an account that already had one records
`new_device` and, at most once per `new_device_notice_interval_seconds`, queues a mail to the owner;
an account's first device (the first sign-in after registering, or after this was deployed) is no news.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from http.cookies import CookieError, SimpleCookie
from ipaddress import IPv4Address, ip_address, ip_network
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import col

from keel.core.config import Settings
from keel.core.context import current_client, dispatch_var
from keel.core.db import Prebuilt, Transaction
from keel.http.web_session import DEVICE_COOKIE, WEB_CLIENT_HEADER, WEB_CLIENT_VALUE
from keel.models import Activity, ActivityType, EmailKind, EmailOutbox, KnownDevice, OutboxStatus, User
from keel.models.base import UTCDateTime
from keel.services import activity as activity_service

_WEB_CLIENT = WEB_CLIENT_HEADER.lower().encode()
_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_-]{32}$")


class Device(NamedTuple):
    hash: str
    # A device cookie to set on the response (a browser signing in for the first time), else None.
    new_cookie: str | None


def _digest(user_id: int, kind: str, value: str) -> str:
    return hashlib.sha256(f"{user_id}:{kind}:{value}".encode()).hexdigest()


def _network(ip: str | None) -> str:
    try:
        address = ip_address(ip or "")
    except ValueError:
        return "unknown"
    return str(ip_network((address, 24 if isinstance(address, IPv4Address) else 64), strict=False))


def _cookie(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                continue
            morsel = jar.get(DEVICE_COOKIE)
            if morsel is not None and _COOKIE_VALUE.match(morsel.value):
                return morsel.value
    return None


def identify(*, user_id: int, ip: str | None, user_agent: str | None) -> Device:
    """The device of the current request, as this account knows it."""
    request = current_client()
    headers = list(request.headers) if request is not None else []
    cookie = _cookie(headers)
    if cookie is not None:
        return Device(_digest(user_id, "cookie", cookie), None)
    # The web app says so on its API calls; a provider's redirect back is a browser's own navigation.
    if (_WEB_CLIENT, WEB_CLIENT_VALUE.encode()) in headers or (b"sec-fetch-mode", b"navigate") in headers:
        minted = secrets.token_urlsafe(24)
        return Device(_digest(user_id, "cookie", minted), minted)
    return Device(_digest(user_id, "client", f"{_network(ip)} {(user_agent or '')[:255]}"), None)


class _Seen(NamedTuple):
    created_at: datetime


class _NoticeState(NamedTuple):
    others: int
    recent: bool
    email: str


_NOW = sa.bindparam("now", type_=UTCDateTime())
_USER = sa.bindparam("user_id", type_=sa.Integer())
_HASH = sa.bindparam("device_hash", type_=sa.String())
_insert = postgresql.insert(KnownDevice).values(user_id=_USER, device_hash=_HASH, created_at=_NOW, last_seen_at=_NOW)
# One statement on both backends (SQLite compiles PostgreSQL's ON CONFLICT the same): a device new to
# the account comes back with `created_at` equal to `now`; a known one has its `last_seen_at` moved on.
_SEEN = Prebuilt(
    _insert.on_conflict_do_update(
        index_elements=[col(KnownDevice.user_id), col(KnownDevice.device_hash)],
        set_={"last_seen_at": _insert.excluded.last_seen_at},
    ).returning(col(KnownDevice.created_at)),
    _Seen,
    read=False,
)
_NOTICE_STATE = Prebuilt(
    sa.select(
        sa.select(sa.func.count())
        .where(col(KnownDevice.user_id) == _USER, col(KnownDevice.device_hash) != _HASH)
        .scalar_subquery()
        .label("others"),
        sa.exists()
        .where(
            col(Activity.user_id) == _USER,
            col(Activity.type) == ActivityType.NEW_DEVICE.value,
            col(Activity.created_at) > sa.bindparam("since", type_=UTCDateTime()),
        )
        .label("recent"),
        col(User.email),
    ).where(col(User.id) == _USER),
    _NoticeState,
)


class _Id(NamedTuple):
    id: int


_NOTICE = Prebuilt(
    sa.insert(EmailOutbox).returning(col(EmailOutbox.id)),
    _Id,
    binds=[
        "kind",
        "to_address",
        "user_id",
        "activity_id",
        "status",
        "attempts",
        "created_at",
        "next_attempt_at",
    ],
)


async def send_notice(outbox_id: int | None) -> None:
    """Hand a committed notice to the app's dispatcher, where there is one (else the relay sends it)."""
    dispatch = dispatch_var.get()
    if outbox_id is not None and dispatch is not None:
        await dispatch([outbox_id])


async def seen(
    transaction: Transaction,
    settings: Settings,
    *,
    user_id: int,
    device: Device,
    method: str,
    where: activity_service.Where,
    now: datetime,
) -> int | None:
    """Note the device's sign-in; for a device new to an account that had others, record it and
    (throttled) queue the owner's notice. Returns the notice's outbox id, for `send_notice` after commit."""
    known = await transaction.first(_SEEN, user_id=user_id, device_hash=device.hash, now=now)
    if known is None or known.created_at != now:
        return None
    since = now - timedelta(seconds=settings.new_device_notice_interval_seconds)
    state = await transaction.first(_NOTICE_STATE, user_id=user_id, device_hash=device.hash, since=since)
    if state is None or state.others == 0:
        return None
    notify = not state.recent
    activity_id = await activity_service.record_returning_id(
        transaction,
        user_id=user_id,
        type=ActivityType.NEW_DEVICE,
        detail={"method": method, "notified": notify},
        where=where,
        now=now,
    )
    if not notify:
        return None
    notice = await transaction.first(
        _NOTICE,
        kind=EmailKind.NEW_DEVICE,
        to_address=state.email,
        user_id=user_id,
        activity_id=activity_id,
        status=OutboxStatus.PENDING,
        attempts=0,
        created_at=now,
        next_attempt_at=now,
    )
    assert notice is not None  # an INSERT ... RETURNING of one row
    return notice.id
