"""Todo shapes."""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, GetJsonSchemaHandler, StrictBool
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from keel.models.todo import Priority
from keel.schemas.common import NOT_BLANK, InputModel, NotNull, not_blank

Title = Annotated[
    str, Field(min_length=1, max_length=200, json_schema_extra={"pattern": NOT_BLANK}), AfterValidator(not_blank)
]
Description = Annotated[str | None, Field(max_length=5000)]
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _date_text(value: object) -> object:
    # What the schema's `format: date` allows, no more: pydantic alone would also take a Unix
    # timestamp, as a number or as text.
    if (isinstance(value, date) and not isinstance(value, datetime)) or (
        isinstance(value, str) and _ISO_DATE.fullmatch(value)
    ):
        return value
    raise ValueError("Input should be a date in the format YYYY-MM-DD.")


# JSON Schema has no bounds for dates: the pattern states the range there, this check here.
_DUE_DATE_RANGE = r"^(19[0-9]{2}|[2-9][0-9]{3})-[0-9]{2}-[0-9]{2}$"
_EARLIEST_DUE_DATE = date(1900, 1, 1)


def _in_range(value: date) -> date:
    if value < _EARLIEST_DUE_DATE:
        raise ValueError("Must be 1900-01-01 or later.")
    return value


DueDate = (
    Annotated[
        date,
        BeforeValidator(_date_text),
        AfterValidator(_in_range),
        Field(json_schema_extra={"pattern": _DUE_DATE_RANGE}),
    ]
    | None
)


class TodoSort(StrEnum):
    """The order of a list: a field, or a field with `-` for descending."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        # The values are not identifiers, so a client generator would number them (VALUE_1, ...);
        # `x-enum-varnames` hands it these members' names instead (openapi-generator's convention).
        schema = handler.resolve_ref_schema(handler(core_schema))
        schema["x-enum-varnames"] = [member.name for member in cls]
        return schema

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
    """A merge patch: a field left out is unchanged; null clears `description` and `due_date`,
    and is refused for the others, which cannot be empty."""

    title: Annotated[Title | None, NotNull()] = None
    description: Description = None
    completed: Annotated[StrictBool | None, NotNull()] = None
    priority: Annotated[Priority | None, NotNull()] = None
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
