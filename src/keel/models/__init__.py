"""Table models. Importing this package registers every table on ``SQLModel.metadata``."""

from keel.models.base import utcnow
from keel.models.refresh_token import RefreshToken
from keel.models.session import UserSession
from keel.models.user import Role, User

__all__ = ["RefreshToken", "Role", "User", "UserSession", "utcnow"]
