from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


class UsernameReservation(SQLModel, table=True):
    """A username asked for by a registration of an address that already has an account.

    A registration of a new address leaves its username taken by the account it creates; one of a
    known address creates no account, so it takes the username here instead. Either way the
    username is then taken, and a later answer about it cannot tell the two apart.
    """

    __tablename__ = "username_reservation"

    username: str = Field(max_length=30, primary_key=True)
    # The account that has the address: it alone may still take the username (its owner may be
    # the one who asked for it). Kept when that account goes, so the username stays taken.
    user_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
