"""Shared lists: a list, its members and their roles. The owner is a member too (role `owner`),
so every check of who may see or change a list is one lookup of the caller's membership row."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import declared_attr
from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


class MemberRole(StrEnum):
    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"


# What each role may do to the todos of a list.
WRITERS = (MemberRole.OWNER, MemberRole.EDITOR)


class TodoList(SQLModel, table=True):
    __tablename__ = "list"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    # Deleting the owner's account deletes the list, and its todos with it.
    owner_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    # Checked and raised by every ORM write, as on todos (see keel.core.conditional).
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]


class ListMember(SQLModel, table=True):
    __tablename__ = "list_member"

    list_id: int = Field(foreign_key="list.id", ondelete="CASCADE", primary_key=True)
    # "Lists shared with me": the user's memberships.
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", primary_key=True, index=True)
    role: MemberRole = Field(
        sa_type=sa.Enum(
            MemberRole,
            name="member_role",
            native_enum=False,
            create_constraint=True,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    added_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
