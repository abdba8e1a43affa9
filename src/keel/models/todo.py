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


# Labels are kept in one text column as `,a,b,` (empty for none): a label filter is then a LIKE on
# `%,label,%`, the same statement on SQLite and PostgreSQL, and a page needs no second query.
# A label never holds a comma (see keel.schemas.todo).
LABEL_SEPARATOR = ","


def labels_text(labels: list[str] | tuple[str, ...]) -> str:
    return f"{LABEL_SEPARATOR}{LABEL_SEPARATOR.join(labels)}{LABEL_SEPARATOR}" if labels else ""


class LabelSet(TypeDecorator[list[str]]):
    """A todo's labels, in the order given, stored as `,a,b,`."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> str:
        return labels_text(value or [])

    def process_result_value(self, value: Any, dialect: Dialect) -> list[str]:
        return [label for label in str(value or "").split(LABEL_SEPARATOR) if label]


_INBOX: dict[str, Any] = {
    "postgresql_where": sa.text("list_id IS NULL"),
    "sqlite_where": sa.text("list_id IS NULL"),
}


class Todo(SQLModel, table=True):
    __tablename__ = "todo"
    __table_args__ = (
        # Each serves one sort order of a user's inbox; the id breaks ties so pages are stable. They
        # hold only inbox todos (`list_id IS NULL`, which every inbox query says), so the inbox's
        # count reads the owner's entries alone and no row: the newest-first one carries what the
        # `completed=` and `label=` filters read (PostgreSQL only; SQLite has no INCLUDE).
        sa.Index(
            "ix_todo_inbox_created_at",
            "owner_id",
            "created_at",
            "id",
            postgresql_include=["completed", "labels"],
            **_INBOX,
        ),
        sa.Index("ix_todo_inbox_due_date", "owner_id", "due_date", "id", **_INBOX),
        sa.Index("ix_todo_inbox_priority", "owner_id", "priority", "id", **_INBOX),
        # Every todo of an owner, wherever it is: for deleting an account (its ON DELETE CASCADE).
        sa.Index("ix_todo_owner_id", "owner_id"),
        # A shared list's page, newest first (its other sorts are small enough to sort).
        sa.Index("ix_todo_list_id_created_at", "list_id", "created_at", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    # Who created it (for a todo with no list: whose private inbox it is). Null once the creator's
    # account is deleted: their todos in other people's lists stay, by "a deleted user".
    owner_id: int | None = Field(default=None, foreign_key="user.id", ondelete="CASCADE")
    # Null: the owner's private inbox. Deleting the list deletes its todos.
    list_id: int | None = Field(default=None, foreign_key="list.id", ondelete="CASCADE")
    labels: list[str] = Field(default_factory=list, sa_type=LabelSet, sa_column_kwargs={"server_default": ""})
    assignee_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL", index=True)
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
