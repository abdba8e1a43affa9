"""The editor's preview: Markdown in, the HTML readers would see out, nothing stored."""

from __future__ import annotations

from pydantic import BaseModel, Field

from keel.schemas.common import InputModel
from keel.schemas.post import Content


class PostPreview(InputModel):
    content: Content


class PostPreviewRead(BaseModel):
    content_html: str = Field(
        description="The content as a post would store it: rendered and sanitised, safe to insert."
    )
    excerpt: str = Field(description="The plain-text excerpt the feed would show.")
    reading_minutes: int = Field(ge=1, description="The estimated reading time the post would show.")
