from __future__ import annotations

from sqlmodel import Field, SQLModel

# The number of published posts: the feed's `total` (keel.services.tag.count_published).
PUBLISHED_POSTS = "published_posts"


class Counter(SQLModel, table=True):
    """A count kept by the writes that change it, for a total that would otherwise be a count(*) of a big table.

    A row may be missing (an empty database): a reader takes that as 0, a writer creates it.
    """

    __tablename__ = "counter"

    name: str = Field(max_length=50, primary_key=True)
    value: int = Field(default=0)
