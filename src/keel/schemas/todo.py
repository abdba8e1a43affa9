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
from keel.schemas.common import BLANK_CHARACTERS, NOT_BLANK, InputModel, NotNull, not_blank

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


# A label: 1-30 characters with at least one that is not blank, and no comma (the stored form
# separates labels with commas) or NUL; stored trimmed, inner whitespace runs made one space,
# lower-cased.
LABEL_PATTERN = rf"^[^,\x00]*[^,\x00{BLANK_CHARACTERS}][^,\x00]*$"


def normalise_label(value: str) -> str:
    return " ".join(value.split()).lower()


def _label(value: str) -> str:
    if "," in value or "\x00" in value:
        raise ValueError("A label cannot contain a comma.")
    return normalise_label(not_blank(value))


def _distinct(labels: list[str]) -> list[str]:
    return list(dict.fromkeys(labels))


Label = Annotated[
    str,
    Field(min_length=1, max_length=30, json_schema_extra={"pattern": LABEL_PATTERN}, examples=["errands"]),
    AfterValidator(_label),
]
Labels = Annotated[
    list[Label],
    Field(
        max_length=10,
        description="Up to 10 labels of 1-30 characters (no comma), stored trimmed, lower-cased and without repeats.",
    ),
    AfterValidator(_distinct),
]
ListRef = Annotated[
    int | None,
    Field(
        ge=1,
        le=2**31 - 1,
        description="The shared list it belongs to (you need to be its owner or an editor); null: your private inbox.",
    ),
]
AssigneeRef = Annotated[
    int | None,
    Field(ge=1, le=2**31 - 1, description="Who is to do it: a member of its list (in the inbox, only you), or null."),
]


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
    list_id: ListRef = None
    labels: Labels = Field(default_factory=list)
    assignee_id: AssigneeRef = None


class TodoUpdate(InputModel):
    """A merge patch: a field left out is unchanged; null clears `description` and `due_date`,
    and is refused for the others, which cannot be empty. `list_id` moves the todo (editor rights on
    both lists); null moves it into your own private inbox. `labels` replaces the labels (`[]` clears them)."""

    title: Annotated[Title | None, NotNull()] = None
    description: Description = None
    completed: Annotated[StrictBool | None, NotNull()] = None
    priority: Annotated[Priority | None, NotNull()] = None
    due_date: DueDate = None
    list_id: ListRef = None
    labels: Annotated[Labels | None, NotNull()] = None
    assignee_id: AssigneeRef = None


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
    owner_id: int | None = Field(description="Who created it; null once their account is deleted.")
    list_id: int | None = Field(description="Its shared list; null for a todo in its owner's private inbox.")
    labels: list[str]
    assignee_id: int | None
