"""Shared list shapes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from keel.models.todo_list import MemberRole
from keel.schemas.common import NO_NUL, NOT_BLANK, InputModel, not_blank
from keel.schemas.user import UserPublic

ListName = Annotated[
    str, Field(min_length=1, max_length=100, json_schema_extra={"pattern": NOT_BLANK}), AfterValidator(not_blank)
]


class InvitedRole(StrEnum):
    """The roles an owner can give: a list has exactly one owner."""

    EDITOR = "editor"
    VIEWER = "viewer"


class ListCreate(InputModel):
    name: ListName


class ListUpdate(InputModel):
    name: ListName


class ListRead(BaseModel):
    id: int
    name: str
    owner: UserPublic
    role: MemberRole = Field(description="The caller's role in this list.")
    members_count: int = Field(description="Members including the owner.")
    created_at: datetime
    updated_at: datetime


class MemberCreate(InputModel):
    username: Annotated[
        str, Field(min_length=1, max_length=30, pattern=NO_NUL, description="Whom to invite (any letter case).")
    ]
    role: InvitedRole


class MemberUpdate(InputModel):
    role: InvitedRole


class MemberRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    user: UserPublic
    role: MemberRole
    added_at: datetime
