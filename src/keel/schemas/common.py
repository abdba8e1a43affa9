"""Shapes shared by every domain: input base class, pages, problem documents."""

from __future__ import annotations

import re
import types
from typing import Any, Generic, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

# For text in query strings, paths and forms, which InputModel's validator does not see.
NO_NUL = r"^[^\x00]*$"
# Whitespace as Python's str.isspace() and JSON Schema's (ECMA-262) regexes count it, together, so
# the schema and the server can never disagree about whether a text is blank.
_BLANK = r"\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
BLANK_CHARACTERS = _BLANK  # for other patterns built the same way
_NOT_BLANK_CHAR = re.compile(f"[^{_BLANK}]")
# The schema side of `not_blank` (and of InputModel's NUL rule): some character that is not blank.
NOT_BLANK = rf"^[^\x00]*[^\x00{_BLANK}][^\x00]*$"


def _declare_no_nul(schema: dict[str, Any]) -> None:
    # The schema side of `_no_nul`. A field with a pattern of its own must exclude NUL in it.
    for field in schema.get("properties", {}).values():
        for variant in (field, *field.get("anyOf", ())):
            if variant.get("type") == "string":
                variant.setdefault("pattern", NO_NUL)


class NotNull:
    """Marks a PATCH field that may be left out (it is then unchanged) but not set to null.

    Written `Annotated[T | None, NotNull()] = None`: None stands for "left out" inside the service,
    while a client's explicit null is a 422 and the schema shows the field as `T`, not nullable.
    A field without the mark that admits None is cleared by null (merge-patch, RFC 7396).
    """


def _not_null_fields(model: type[BaseModel]) -> list[str]:
    return [
        field.alias or name
        for name, field in model.model_fields.items()
        if any(isinstance(item, NotNull) for item in field.metadata)
    ]


def _input_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    _declare_no_nul(schema)
    for name in _not_null_fields(model):
        field = schema["properties"][name]
        variants = [variant for variant in field.pop("anyOf", ()) if variant.get("type") != "null"]
        if len(variants) == 1:
            field.update(variants[0])
        elif variants:
            field["anyOf"] = variants
        field.pop("default", None)


class InputModel(BaseModel):
    """Every request body: unknown fields are an error, so nothing can be mass-assigned."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, json_schema_extra=_input_schema)

    @field_validator("*", mode="before")
    @classmethod
    def _null_only_where_it_clears(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name is not None:
            field = cls.model_fields[info.field_name]
            if any(isinstance(item, NotNull) for item in field.metadata):
                raise PydanticCustomError("null_not_allowed", "Leave this field out to keep it; it cannot be null.")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _integers_are_integers(cls, value: Any, info: ValidationInfo) -> Any:
        # Pydantic's lax mode would take `true` or "7" for an integer (an id, a number of days); the
        # schema says integer, which JSON Schema reads as a number with no fraction (7 and 7.0, which
        # pydantic takes; 7.5 it refuses), so only a boolean or a string is refused here.
        if not isinstance(value, (bool, str)) or info.field_name is None:
            return value
        if _is_integer(cls.model_fields[info.field_name].annotation):
            raise PydanticCustomError("int_type", "Input should be a valid integer")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL cannot store U+0000 in text; refuse it as input everywhere, on every backend.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("Must not contain the NUL character.")
        return value


def _is_integer(annotation: Any) -> bool:
    """Whether a field is `int` or `int | None` (not a bool, not a union with other types)."""
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = [kind for kind in get_args(annotation) if kind is not type(None)]
        return kinds == [int]
    return annotation is int


T = TypeVar("T")


def not_blank(value: str) -> str:
    if not _NOT_BLANK_CHAR.search(value):
        raise ValueError("Must not be blank.")
    return value


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class Message(BaseModel):
    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    ctx: dict[str, int | float] | None = Field(
        default=None,
        description="The schema's bound the input missed (min_length, max_length, ge, gt, le, lt), when there is one.",
        examples=[{"min_length": 3}],
    )


class Problem(BaseModel):
    """An RFC 9457 problem document; ``code`` is the stable machine-readable part."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:keel:problem:user_not_found"])
    title: str
    status: int
    detail: str
    code: str = Field(examples=["user_not_found"])
    instance: str | None = None
    request_id: str | None = None
    errors: list[ValidationIssue] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer with."""
    descriptions = {
        400: "Bad request",
        401: "Missing, invalid, expired or revoked credentials",
        403: "Not allowed",
        404: "Not found",
        409: "Conflict",
        412: "`If-Match` names no current representation: it changed since it was read; nothing changed",
        413: "Request body too large",
        415: "The body is not of the media type the operation takes",
        422: "Invalid input",
        429: "Too many requests",
        503: "A backing service is unavailable",
    }
    return {
        status: {
            "description": descriptions.get(status, "Error"),
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
