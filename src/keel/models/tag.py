from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Field, SQLModel, col


class Tag(SQLModel, table=True):
    """A tag and how many published posts carry it, kept so that `GET /tags` never counts post_tag.

    `published_posts` changes in the same transaction as every change to the post_tag rows of a
    published post (keel.services.tag.count_published): it always equals that count. A tag whose
    count falls to 0 keeps its row (deleting it would race the next post to use it); the index
    holds only the tags in use, most used first, so the page is its first entries.
    """

    __tablename__ = "tag"

    name: str = Field(max_length=30, primary_key=True)
    published_posts: int = Field(default=0)


sa.Index(
    "ix_tag_in_use",
    col(Tag.published_posts).desc(),
    col(Tag.name),
    postgresql_where=sa.text("published_posts > 0"),
    sqlite_where=sa.text("published_posts > 0"),
)
