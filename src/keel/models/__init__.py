"""Table models. Importing this package registers every table on ``SQLModel.metadata``."""

from keel.models.activity import Activity, ActivityType
from keel.models.base import utcnow
from keel.models.comment import Comment
from keel.models.counter import PUBLISHED_POSTS, Counter
from keel.models.device import KnownDevice
from keel.models.idempotency import IdempotencyRecord
from keel.models.identity import Identity, OidcFlow
from keel.models.mfa import Passkey, PendingSignIn, RecoveryCode, TotpCredential, WebauthnChallenge
from keel.models.outbox import EmailKind, EmailOutbox, OutboxStatus
from keel.models.personal_token import PersonalAccessToken
from keel.models.post import Post, PostTag
from keel.models.refresh_token import RefreshToken
from keel.models.session import UserSession
from keel.models.sign_in_code import EmailSignInCode
from keel.models.tag import Tag
from keel.models.todo import Priority, Todo
from keel.models.todo_list import ListMember, MemberRole, TodoList
from keel.models.user import Role, User
from keel.models.username_reservation import UsernameReservation
from keel.models.vote import Vote

__all__ = [
    "PUBLISHED_POSTS",
    "Activity",
    "ActivityType",
    "Comment",
    "Counter",
    "EmailKind",
    "EmailOutbox",
    "EmailSignInCode",
    "IdempotencyRecord",
    "Identity",
    "KnownDevice",
    "ListMember",
    "MemberRole",
    "OidcFlow",
    "OutboxStatus",
    "Passkey",
    "PendingSignIn",
    "PersonalAccessToken",
    "Post",
    "PostTag",
    "Priority",
    "RecoveryCode",
    "RefreshToken",
    "Role",
    "Tag",
    "Todo",
    "TodoList",
    "TotpCredential",
    "User",
    "UserSession",
    "UsernameReservation",
    "Vote",
    "WebauthnChallenge",
    "utcnow",
]
