"""What a post's Markdown would look like, rendered by the very rules a saved post goes through.

The editor's Preview tab asks here instead of rendering in the browser, so a preview can never
differ from the post readers get (keel.core.markdown is the one renderer). Nothing is stored.
"""

from __future__ import annotations

import anyio

from keel.core import markdown
from keel.schemas.post_preview import PostPreviewRead


async def preview(*, content: str) -> PostPreviewRead:
    # Up to 50,000 characters of pure-Python parsing: off the event loop, so other requests go on.
    made = await anyio.to_thread.run_sync(markdown.render, content)
    return PostPreviewRead(content_html=made.content_html, excerpt=made.excerpt, reading_minutes=made.reading_minutes)
