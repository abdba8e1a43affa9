"""Comment shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from keel.schemas.common import NOT_BLANK, InputModel, NotNull, not_blank
from keel.schemas.user import UserPublic

CommentContent = Annotated[
    str,
    Field(
        min_length=1,
        max_length=10_000,
        json_schema_extra={"pattern": NOT_BLANK},
        description="Markdown, rendered by the same rules as posts.",
    ),
    AfterValidator(not_blank),
]


class CommentCreate(InputModel):
    content: CommentContent
    parent_id: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="The top-level comment of the same post this replies to (replies to replies are refused: "
        "422 `invalid_parent`).",
    )


class CommentUpdate(InputModel):
    """A merge patch: `content` left out changes nothing; it cannot be null."""

    content: Annotated[CommentContent | None, NotNull()] = None


class CommentRead(BaseModel):
    id: int
    post_id: int
    author: UserPublic | None = Field(description="Null for a deleted comment kept for its replies.")
    content: str = Field(description='The Markdown source; `"[deleted]"` for a deleted comment kept for its replies.')
    content_html: str = Field(description="The content rendered and sanitised at write time: safe to insert as HTML.")
    parent_id: int | None = Field(description="The comment this replies to; null for a top-level comment.")
    deleted: bool = Field(description="A deleted comment kept as a placeholder because it has replies.")
    created_at: datetime
    updated_at: datetime
