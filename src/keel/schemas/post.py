"""Post shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StrictBool

from keel.schemas.common import NOT_BLANK, InputModel, NotNull, not_blank
from keel.schemas.user import UserPublic

PostTitle = Annotated[
    str, Field(min_length=1, max_length=200, json_schema_extra={"pattern": NOT_BLANK}), AfterValidator(not_blank)
]
Content = Annotated[
    str, Field(min_length=1, max_length=50_000, json_schema_extra={"pattern": NOT_BLANK}), AfterValidator(not_blank)
]


class PostCreate(InputModel):
    title: PostTitle
    content: Content
    published: StrictBool = False


class PostUpdate(InputModel):
    """A merge patch: a field left out is unchanged; none of them can be null."""

    title: Annotated[PostTitle | None, NotNull()] = None
    content: Annotated[Content | None, NotNull()] = None
    published: Annotated[StrictBool | None, NotNull()] = None


class PostRead(BaseModel):
    id: int
    title: str
    content: str
    published: bool
    author: UserPublic
    votes: int = Field(description="How many users voted for the post.")
    voted: bool = Field(description="Whether the caller voted for it (false when anonymous).")
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
