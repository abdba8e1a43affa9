"""POST /posts/preview: the editor's preview, rendered on the server by the rules posts are stored with."""

from __future__ import annotations

from keel.deps import POSTS_SCOPES, WritingUser
from keel.routes import API_PREFIX, PrefixedRouter
from keel.schemas.common import problem_responses
from keel.schemas.post_preview import PostPreview, PostPreviewRead
from keel.services import post_preview as preview_service

router = PrefixedRouter(
    prefix=f"{API_PREFIX}/posts", tags=["posts"], responses=problem_responses(422), dependencies=[POSTS_SCOPES]
)


@router.post("/preview", response_model=PostPreviewRead, responses=problem_responses(401, 403, 429))
async def preview_post(data: PostPreview, _user: WritingUser) -> PostPreviewRead:
    """Render Markdown exactly as a saved post would be, without saving anything. Counts as a write for rate limits."""
    return await preview_service.preview(content=data.content)
