from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import declared_attr
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2}
_BY_RANK = {rank: priority for priority, rank in _RANK.items()}


class PriorityRank(TypeDecorator[Priority]):
    """Stored as a small integer so that sorting by priority is sorting by importance."""

    impl = sa.SmallInteger
    cache_ok = True

    def process_bind_param(self, value: Priority | str | None, dialect: Dialect) -> int | None:
        return None if value is None else _RANK[Priority(value)]

    def process_result_value(self, value: Any, dialect: Dialect) -> Priority | None:
        return None if value is None else _BY_RANK[int(value)]


class Todo(SQLModel, table=True):
    __tablename__ = "todo"
    __table_args__ = (
        # Each serves one sort order of a user's list; the id breaks ties so pages are stable.
        sa.Index("ix_todo_owner_id_created_at", "owner_id", "created_at", "id"),
        sa.Index("ix_todo_owner_id_due_date", "owner_id", "due_date", "id"),
        sa.Index("ix_todo_owner_id_priority", "owner_id", "priority", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="user.id", ondelete="CASCADE")
    title: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    completed: bool = Field(default=False)
    priority: Priority = Field(default=Priority.NORMAL, sa_type=PriorityRank)
    due_date: date | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    # Raised by every ORM write and checked by it (UPDATE/DELETE ... WHERE version = the one read):
    # a write that raced another fails rather than overwriting it (see keel.core.conditional).
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]
