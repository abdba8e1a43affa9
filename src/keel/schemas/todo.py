"""Todo shapes."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from keel.models.todo import Priority
from keel.schemas.common import InputModel, not_blank

Title = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(not_blank)]
Description = Annotated[str | None, Field(max_length=5000)]
DueDate = Annotated[date | None, Field(ge=date(1900, 1, 1), le=date(9999, 12, 31))]


class TodoSort(StrEnum):
    CREATED_AT = "created_at"
    CREATED_AT_DESC = "-created_at"
    DUE_DATE = "due_date"
    DUE_DATE_DESC = "-due_date"
    PRIORITY = "priority"
    PRIORITY_DESC = "-priority"


class TodoCreate(InputModel):
    title: Title
    description: Description = None
    due_date: DueDate = None
    priority: Priority = Priority.NORMAL


class TodoUpdate(InputModel):
    title: Title | None = None
    description: Description = None
    completed: bool | None = None
    priority: Priority | None = None
    due_date: DueDate = None


class TodoRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    description: str | None
    completed: bool
    priority: Priority
    due_date: date | None
    created_at: datetime
    updated_at: datetime
    owner_id: int
