"""Accounts: registration, profiles, deletion and administration."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import col, delete, exists, func, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core import audit
from keel.core.audit import SecurityEvent
from keel.core.conditional import IfMatch
from keel.core.config import Settings
from keel.core.db import Database, Prebuilt
from keel.core.errors import (
    InvalidCredentialsInput,
    InvalidInput,
    LastAdmin,
    SessionRevoked,
    UsernameTaken,
    UserNotFound,
)
from keel.core.logging import get_logger
from keel.core.password_policy import check_password
from keel.core.ratelimit import RateLimiter, account_key
from keel.core.security import has_usable_password, password_hasher
from keel.core.session_cache import SessionCache
from keel.models import (
    ActivityType,
    EmailKind,
    PersonalAccessToken,
    Role,
    Todo,
    User,
    UsernameReservation,
    UserSession,
    utcnow,
)
from keel.schemas.common import Page
from keel.schemas.user import AdminUserRead, AdminUserUpdate, UserCreate, UserPublic, UserRead, UserUpdate
from keel.services import activity as activity_service
from keel.services import comment as comment_service
from keel.services import lockout as lockout_service
from keel.services import outbox as outbox_service
from keel.services import personal_token as personal_token_service
from keel.services import post as post_service
from keel.services import session as session_service
from keel.services import versioned
from keel.services import vote as vote_service
from keel.services.outbox import Dispatcher
from keel.services.query import contains

log = get_logger("keel.users")


async def get(*, session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise UserNotFound
    return user


async def get_own(*, session: AsyncSession, user_id: int) -> User:
    """The signed-in caller's own account. A session whose account row has gone (removed behind the
    service's back, or deleted by a request racing this one) has ended: 401, not 404."""
    user = await session.get(User, user_id)
    if user is None:
        raise SessionRevoked
    return user


async def get_by_email(*, session: AsyncSession, email: str) -> User | None:
    return (await session.exec(select(User).where(User.email == email.lower()))).one_or_none()


async def _username_taken(session: AsyncSession, username: str, *, other_than: int | None = None) -> bool:
    """Whether an account has the username or a registration reserved it (see `UsernameReservation`).

    ``other_than`` is an account renaming itself: a reservation made by a registration of its own
    address does not stand in its way.
    """
    account = select(User.id).where(User.username == username)
    reserved = select(UsernameReservation.username).where(UsernameReservation.username == username)
    if other_than is not None:
        account = account.where(User.id != other_than)
        reserved = reserved.where(
            or_(col(UsernameReservation.user_id).is_(None), col(UsernameReservation.user_id) != other_than)
        )
    return bool((await session.exec(select(or_(account.exists(), reserved.exists())))).one())


async def register(*, database: Database, settings: Settings, dispatcher: Dispatcher, data: UserCreate) -> User | None:
    """Create the account, or return ``None`` when the email is already registered.

    Nothing a client can see depends on whether the email has an account (see the README's
    threat model): the answer is the same 202; the username is checked before the email is looked
    up, and afterwards it is taken either way (by the new account, or reserved); and both paths do
    the same work in the same order (hash the password, two lookups, one row written, one email
    queued: a verification link, or a notice to the address's owner).
    """
    async with database.session() as session:
        hashed = await password_hasher(settings).hash(data.password)
        if await _username_taken(session, data.username):
            raise UsernameTaken
        existing = await get_by_email(session=session, email=data.email)
        if existing is not None:
            await _register_existing(session, settings, dispatcher, existing, data.username)
            return None
        user = User(email=data.email, username=data.username, full_name=data.full_name, hashed_password=hashed)
        session.add(user)
        try:
            await session.flush()
            assert user.id is not None
            row = await outbox_service.enqueue(
                session=session, settings=settings, kind=EmailKind.VERIFY_EMAIL, to_address=user.email, user_id=user.id
            )
            await session.commit()
        except IntegrityError:
            # A concurrent registration won the race for the email or the username.
            await session.rollback()
            if await _username_taken(session, data.username):
                raise UsernameTaken from None
            existing = await get_by_email(session=session, email=data.email)
            if existing is not None:
                await _register_existing(session, settings, dispatcher, existing, data.username)
            return None
        await outbox_service.dispatch_after_commit(dispatcher, [row])
        audit.record(SecurityEvent.USER_REGISTERED, user_id=user.id)
        return user


async def _register_existing(
    session: AsyncSession, settings: Settings, dispatcher: Dispatcher, user: User, username: str
) -> None:
    """A registration of a known address: reserve the username as a new account would take it; tell the owner.

    The notice to an address that was never confirmed carries a link to claim the account
    (`keel.services.outbox.compose`, `keel.services.account.confirm_reset`).
    """
    session.add(UsernameReservation(username=username, user_id=user.id))
    try:
        row = await outbox_service.enqueue(
            session=session, settings=settings, kind=EmailKind.SIGNUP_ATTEMPT, to_address=user.email, user_id=user.id
        )
        await session.commit()
    except IntegrityError:
        # A concurrent registration reserved the username first. (One that creates an account with
        # it at the same moment is not stopped: the username is then both taken and reserved.)
        await session.rollback()
        raise UsernameTaken from None
    await outbox_service.dispatch_after_commit(dispatcher, [row])
    log.info("register_existing_email", user_id=user.id)


def check_new_password(user: User, password: str) -> str:
    """The password (in NFC) if the whole policy accepts it for this account, else a 422 on `new_password`."""
    try:
        return check_password(password, personal=(user.email, user.email.split("@")[0], user.username))
    except ValueError as exc:
        raise InvalidInput(loc=["body", "new_password"], msg=str(exc), type_="value_error") from None


class _Own(NamedTuple):
    id: int
    username: str
    full_name: str | None
    created_at: datetime
    email: str
    role: Role
    is_active: bool
    is_verified: bool


# `/users/me`, asked by every page the web app opens: one prebuilt read of UserRead's columns.
_OWN = Prebuilt(
    sa.select(*(getattr(User, name) for name in _Own._fields)).where(col(User.id) == sa.bindparam("user_id")), _Own
)


async def read_own(*, database: Database, user_id: int) -> UserRead:
    """The caller's own account (401 if its row has gone: see `get_own`)."""
    row = await database.first(_OWN, user_id=user_id)
    if row is None:
        raise SessionRevoked
    return UserRead.model_validate(row._asdict())


async def read_public(*, database: Database, user_id: int) -> UserPublic:
    async with database.session() as session:
        return UserPublic.model_validate(await get(session=session, user_id=user_id))


async def update_profile(
    *, database: Database, user_id: int, data: UserUpdate, if_match: IfMatch | None = None
) -> UserRead:
    changes = data.model_dump(exclude_unset=True)
    if changes.get("username") is None:
        changes.pop("username", None)  # null means "leave it"; a username cannot be removed

    async def work(session: AsyncSession) -> UserRead:
        user = await get_own(session=session, user_id=user_id)
        if if_match is not None:
            if_match.check(UserRead.model_validate(user))
        if "username" in changes and await _username_taken(session, changes["username"], other_than=user_id):
            raise UsernameTaken
        user.sqlmodel_update(changes)
        user.updated_at = utcnow()
        try:
            await session.flush()  # raises StaleDataError if another write got there first
        except IntegrityError:
            raise UsernameTaken from None
        return UserRead.model_validate(user)

    return await versioned.edit(database, work, if_match=if_match)


async def delete_own(
    *,
    database: Database,
    cache: SessionCache | None,
    settings: Settings,
    dispatcher: Dispatcher,
    limiter: RateLimiter,
    user_id: int,
    password: str | None,
    if_match: IfMatch | None = None,
) -> None:
    """Delete the caller's account after checking the password; everything they own goes with it.

    The check draws on the account's allowance of wrong passwords, as a sign-in does (429 while locked).
    An account without a password has nothing to check beyond the caller's recent authentication.
    With `If-Match`, the account must still be as the client read it.
    """
    async with database.session() as session:
        user = await get_own(session=session, user_id=user_id)
        if if_match is not None:
            if_match.check(UserRead.model_validate(user))
        if not has_usable_password(user.hashed_password):
            await _delete(session, cache, user)
            audit.record(SecurityEvent.USER_DELETED, user_id=user_id, actor_id=user_id)
            return
        if password is None:
            raise InvalidCredentialsInput("This account's password is required.")
        attempt = await limiter.password_attempt(account_key(user.email))
        valid, _ = await password_hasher(settings).verify(password, user.hashed_password)
        if not valid:
            await lockout_service.wrong_password(
                session=session,
                settings=settings,
                dispatcher=dispatcher,
                attempt=attempt,
                user_id=user_id,
                email=user.email,
            )
            raise InvalidCredentialsInput
        await limiter.password_right(attempt)
        await _delete(session, cache, user)
        audit.record(SecurityEvent.USER_DELETED, user_id=user_id, actor_id=user_id)


async def _delete(session: AsyncSession, cache: SessionCache | None, user: User) -> None:
    assert user.id is not None
    await _guard_last_admin(session, user.id)
    await session_service.revoke_all(session=session, cache=cache, user_id=user.id)
    # The cascade takes the rows; the tombstones make every worker refuse the tokens at once.
    await personal_token_service.revoke_all(session=session, cache=cache, user_id=user.id)
    # The todos it added to other people's shared lists stay there, by "a deleted user" (no owner):
    # the list's members planned with them. (Those in its own lists go with the lists below.)
    await session.exec(
        update(Todo)
        .where(col(Todo.owner_id) == user.id, col(Todo.list_id).is_not(None))
        .values(owner_id=None, version=col(Todo.version) + 1)
        .execution_options(synchronize_session=False)
    )
    # Its votes come off the posts' kept counts as they go; its comments with replies stay as
    # "[deleted]" placeholders (the replies are other people's), the rest go.
    await vote_service.forget_voter(session=session, user_id=user.id)
    await comment_service.forget_author(session=session, user_id=user.id)
    # Its posts go here rather than by the cascade below, so that the published ones leave the kept
    # counts (the feed's total, each tag's) in this transaction.
    await post_service.forget_author(session=session, user_id=user.id)
    # Sessions, refresh tokens, personal access tokens, private todos, votes, the lists it
    # owns (and every todo in them) and its memberships go by ON DELETE CASCADE; todos assigned to
    # it are unassigned.
    await session.exec(delete(User).where(col(User.id) == user.id))
    await session.commit()


# Any change that can take away an active administrator holds this PostgreSQL advisory lock (for
# the rest of its transaction) before it checks that another one remains. Without it, two admins
# demoting each other at once each see the other still active (READ COMMITTED) and both succeed.
ADMIN_GUARD_LOCK = 0x6B65656C_61646D6E  # "keeladmn"


async def _guard_last_admin(session: AsyncSession, user_id: int) -> None:
    """Refuse (409) to go on if this account is the last active admin; else go on, serialised.

    Call it before the change's first write: the check is itself a write (a conditional UPDATE of
    the account's row), so on SQLite it takes the database's single write lock and sees the latest
    data, and no other change can come between it and this transaction's commit. PostgreSQL
    needs the advisory lock as well, which the other side's transaction holds until it commits.
    Nothing is written when it refuses; the transaction is rolled back.
    """
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        await session.exec(select(func.pg_advisory_xact_lock(ADMIN_GUARD_LOCK)))
    other = aliased(User)
    another_admin = exists().where(
        col(other.role) == Role.ADMIN, col(other.is_active).is_(True), col(other.id) != user_id
    )
    result = await session.exec(
        update(User)
        .where(
            col(User.id) == user_id,
            or_(col(User.role) != Role.ADMIN, col(User.is_active).is_(False), another_admin),
        )
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:
        return
    await session.rollback()
    if (await session.exec(select(User.id).where(User.id == user_id))).first() is None:
        raise UserNotFound
    raise LastAdmin


async def list_users(
    *,
    database: Database,
    q: str | None,
    role: Role | None,
    is_active: bool | None,
    limit: int,
    offset: int,
) -> Page[AdminUserRead]:
    async with database.session() as session:
        conditions = []
        if q:
            conditions.append(or_(contains(col(User.email), q), contains(col(User.username), q)))
        if role is not None:
            conditions.append(col(User.role) == role)
        if is_active is not None:
            conditions.append(col(User.is_active) == is_active)
        total = (await session.exec(select(func.count()).select_from(User).where(*conditions))).one()
        rows = await session.exec(select(User).where(*conditions).order_by(col(User.id)).limit(limit).offset(offset))
        users = list(rows)
        seen = await _last_seen(session, [user.id for user in users])
        return Page[AdminUserRead](
            items=[_admin_read(user, seen) for user in users], total=total, limit=limit, offset=offset
        )


async def admin_read(*, database: Database, user: User) -> AdminUserRead:
    async with database.session() as session:
        return _admin_read(user, await _last_seen(session, [user.id]))


def _admin_read(user: User, seen: dict[int | None, datetime]) -> AdminUserRead:
    return AdminUserRead.model_validate(user).model_copy(update={"last_seen_at": seen.get(user.id)})


async def _last_seen(session: AsyncSession, user_ids: list[int | None]) -> dict[int | None, datetime]:
    """When each user last used Keel: the latest use of a session or a personal access token.

    Read from what is already written on each use (a refresh moves its session's `last_used_at`)
    rather than from a column on the user, so that the hot refresh path writes nothing more. Two
    grouped reads by the indexed `user_id`, for one page of users.
    """
    seen: dict[int | None, datetime] = {}
    for model in (UserSession, PersonalAccessToken):
        used = await session.exec(
            select(model.user_id, func.max(model.last_used_at))
            .where(col(model.user_id).in_(user_ids), col(model.last_used_at).is_not(None))
            .group_by(col(model.user_id))
        )
        for user_id, when in used:
            if when is not None and (user_id not in seen or when > seen[user_id]):
                seen[user_id] = when
    return seen


async def admin_update(
    *, database: Database, cache: SessionCache | None, user_id: int, data: AdminUserUpdate, actor_id: int
) -> User:
    """Change role, activation or verification. A role change or deactivation ends every session."""
    async with database.session() as session:
        user = await get(session=session, user_id=user_id)
        changes = {key: value for key, value in data.model_dump(exclude_unset=True).items() if value is not None}
        if changes.get("role", Role.ADMIN) is not Role.ADMIN or changes.get("is_active") is False:
            await _guard_last_admin(session, user_id)
            await session.refresh(user)  # decide on the account as it is now, not as first read
        role_changed = "role" in changes and changes["role"] != user.role
        deactivated = changes.get("is_active") is False and user.is_active
        reactivated = changes.get("is_active") is True and not user.is_active
        previous_role = user.role
        verification_changed = "is_verified" in changes and changes["is_verified"] != user.is_verified
        if role_changed or deactivated:
            await session_service.revoke_all(session=session, cache=cache, user_id=user_id)
            await personal_token_service.revoke_all(session=session, cache=cache, user_id=user_id)
        if role_changed:
            await activity_service.record(
                session,
                user_id=user_id,
                type=ActivityType.ROLE_CHANGED,
                detail={"from": str(user.role), "to": str(changes["role"]), "by": "admin"},
            )
        if deactivated or reactivated:
            kind = ActivityType.ACCOUNT_DEACTIVATED if deactivated else ActivityType.ACCOUNT_REACTIVATED
            await activity_service.record(session, user_id=user_id, type=kind, detail={"by": "admin"})
        user.sqlmodel_update(changes)
        user.updated_at = utcnow()
        session.add(user)
        await session.commit()
        if verification_changed and not (role_changed or deactivated):
            await session_service.forget_cached(session=session, cache=cache, user_id=user_id)
            await personal_token_service.forget_cached(session=session, cache=cache, user_id=user_id)
        await session.refresh(user)
        log.info(
            "user_admin_update",
            user_id=user_id,
            actor_id=actor_id,
            role_changed=role_changed,
            deactivated=deactivated,
            fields=sorted(changes),
        )
        if role_changed:
            audit.record(
                SecurityEvent.ROLE_CHANGED,
                user_id=user_id,
                actor_id=actor_id,
                old_role=str(previous_role),
                new_role=str(user.role),
            )
        if deactivated:
            audit.record(SecurityEvent.USER_DEACTIVATED, user_id=user_id, actor_id=actor_id)
        if reactivated:
            audit.record(SecurityEvent.USER_REACTIVATED, user_id=user_id, actor_id=actor_id)
        return user


async def admin_delete(*, database: Database, cache: SessionCache | None, user_id: int, actor_id: int) -> None:
    async with database.session() as session:
        user = await get(session=session, user_id=user_id)
        await _delete(session, cache, user)
        audit.record(SecurityEvent.USER_DELETED, user_id=user_id, actor_id=actor_id)


async def create_admin(
    *, session: AsyncSession, cache: SessionCache | None, settings: Settings, email: str, username: str, password: str
) -> User:
    """Create a verified administrator, or promote the existing account with this email.

    Promoting sets the given password and ends the account's sessions, like any role change.
    """
    hashed = await password_hasher(settings).hash(password)
    user = await get_by_email(session=session, email=email)
    if user is None:
        if await _username_taken(session, username):
            raise UsernameTaken
        user = User(email=email.lower(), username=username, hashed_password=hashed)
        previous_role = None
    else:
        assert user.id is not None
        previous_role = user.role
        await session_service.revoke_all(session=session, cache=cache, user_id=user.id)
        await personal_token_service.revoke_all(session=session, cache=cache, user_id=user.id)
    user.role = Role.ADMIN
    user.is_verified = True
    user.is_active = True
    user.hashed_password = hashed
    user.updated_at = utcnow()
    session.add(user)
    await session.commit()
    await session.refresh(user)
    if previous_role is not Role.ADMIN:
        # From the command line: there is no acting account.
        audit.record(
            SecurityEvent.ROLE_CHANGED,
            user_id=user.id,
            actor_id=None,
            old_role=str(previous_role) if previous_role else None,
            new_role=str(user.role),
        )
    return user
