"""Post shapes."""

from __future__ import annotations

import re
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


# A tag as typed: "#Python " is the tag `python`. What is kept is 1-30 of a-z, 0-9 and "-".
TAG_PATTERN = r"^[ \t]*#?[A-Za-z0-9-]{1,30}[ \t]*$"
_TAG = re.compile(r"[A-Za-z0-9-]{1,30}")
MAX_TAGS = 5


def normalise_tag(value: str) -> str:
    """A tag as stored: trimmed, without a leading `#`, lower-case; anything else is refused."""
    bare = value.strip(" \t")
    bare = bare.removeprefix("#")
    if not _TAG.fullmatch(bare):
        raise ValueError("A tag is 1-30 letters, digits or hyphens (a leading # is dropped).")
    return bare.lower()


def _distinct(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))


Tag = Annotated[
    str,
    # The spaces around it are forgiven, but not without end: every input string has a bound.
    Field(max_length=64, json_schema_extra={"pattern": TAG_PATTERN}, examples=["python"]),
    AfterValidator(normalise_tag),
]
Tags = Annotated[
    list[Tag],
    Field(
        max_length=MAX_TAGS,
        description="Up to 5 tags, each 1-30 of a-z, 0-9 and `-`; stored lower-case, without a leading `#` "
        "and without repeats, in the order given.",
    ),
    AfterValidator(_distinct),
]


class PostCreate(InputModel):
    title: PostTitle
    content: Content
    published: StrictBool = False
    tags: Tags = Field(default_factory=list)


class PostUpdate(InputModel):
    """A merge patch: a field left out is unchanged; none of them can be null."""

    title: Annotated[PostTitle | None, NotNull()] = None
    content: Annotated[Content | None, NotNull()] = None
    published: Annotated[StrictBool | None, NotNull()] = None
    tags: Annotated[Tags | None, NotNull()] = None


class PostSummary(BaseModel):
    """A post as lists show it: everything but its body, of which the excerpt is enough there."""

    id: int
    title: str
    excerpt: str = Field(description="Plain text (not HTML) from the start of the post, at most 280 characters.")
    reading_minutes: int = Field(ge=1, description="Estimated reading time at 230 words a minute, at least 1.")
    published: bool
    tags: list[str] = Field(description="Its tags, lower-case, in the order the author gave them.")
    author: UserPublic
    votes: int = Field(description="How many users voted for the post.")
    voted: bool = Field(description="Whether the caller voted for it (false when anonymous).")
    comments_count: int = Field(description='Its comments, replies included ("[deleted]" placeholders not).')
    is_author: bool = Field(
        description="Whether the caller wrote it (false when anonymous). Authors cannot vote for their own "
        "posts (403 `own_post`): a client hides the vote button when this is true."
    )
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None


class PostRead(PostSummary):
    """One whole post: the summary and its body, as Markdown source and as safe HTML."""

    content: str = Field(description="The Markdown source (CommonMark, tables, strikethrough).")
    content_html: str = Field(
        description="The content rendered and sanitised at write time: safe to insert as HTML. Links carry "
        '`rel="nofollow ugc noopener"`; images appear as links to them.'
    )


class TagCount(BaseModel):
    tag: str
    count: int = Field(description="How many published posts carry it.")
