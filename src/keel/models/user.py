from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import declared_attr
from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


class User(SQLModel, table=True):
    __tablename__ = "user"
    # Never hand a deleted user's id to a new account (SQLite reuses the highest rowid otherwise).
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    # Stored lower-cased: emails and usernames are unique ignoring case.
    email: str = Field(max_length=254, unique=True)
    username: str = Field(max_length=30, unique=True)
    full_name: str | None = Field(default=None, max_length=100)
    hashed_password: str = Field(max_length=255)
    role: Role = Field(
        default=Role.USER,
        sa_type=sa.Enum(
            Role,
            name="role",
            native_enum=False,
            create_constraint=True,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        ),
    )
    is_active: bool = Field(default=True)
    is_verified: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    # Raised by every ORM write and checked by it (UPDATE/DELETE ... WHERE version = the one read):
    # a write that raced another fails rather than overwriting it (see keel.core.conditional).
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]
