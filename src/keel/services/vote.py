"""Votes: one per user and published post, never an author's on their own, counted on the post.

The vote row and the post's kept count (and its tag rows' copies) change in one transaction, and
the count only by the rows really added or removed (RETURNING), so concurrent votes leave it exact.
"""

from __future__ import annotations

from sqlalchemy import delete as sa_delete
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.db import Database
from keel.core.errors import EmailNotVerified, OwnPost, PostNotFound
from keel.models import Vote, utcnow
from keel.services import post as post_service
from keel.services import tag as tag_service
from keel.services.query import insert_ignoring_conflict
from keel.services.session import Principal


async def vote(*, database: Database, post_id: int, voter: Principal) -> None:
    """Idempotent: voting twice leaves one vote. Authors cannot vote for their own posts (403 `own_post`).

    The vote and the post's kept count change in one transaction, and the count only when a row
    was really added, so concurrent votes leave it exact.
    """
    async with database.session() as session:
        post = await post_service.visible(session, post_id, voter)
        if not post.published:
            raise PostNotFound  # drafts cannot be voted on, and most voters cannot see them
        if not voter.is_verified:
            raise EmailNotVerified("Verify your email address before voting.")
        if post.author_id == voter.user_id:
            raise OwnPost
        added = await insert_ignoring_conflict(
            session,
            Vote,
            {"user_id": voter.user_id, "post_id": post_id, "created_at": utcnow()},
            returning=col(Vote.post_id),
        )
        await tag_service.count_vote(session, post_ids=added, delta=1)
        await session.commit()


async def unvote(*, database: Database, post_id: int, voter: Principal) -> None:
    """Idempotent: removing a vote that is not there is fine."""
    async with database.session() as session:
        await post_service.visible(session, post_id, voter)
        removed = await session.exec(
            sa_delete(Vote)
            .where(col(Vote.post_id) == post_id, col(Vote.user_id) == voter.user_id)
            .returning(col(Vote.post_id))
        )
        await tag_service.count_vote(session, post_ids=list(removed.scalars()), delta=-1)
        await session.commit()


async def forget_voter(*, session: AsyncSession, user_id: int) -> None:
    """Take a leaving user's votes off the counts, in the deletion's transaction (the rows go with them)."""
    removed = await session.exec(sa_delete(Vote).where(col(Vote.user_id) == user_id).returning(col(Vote.post_id)))
    await tag_service.count_vote(session, post_ids=list(removed.scalars()), delta=-1)
