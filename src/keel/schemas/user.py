"""User shapes: registration, profile reads and edits, administration."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
)

from keel.core.password_policy import MAX_LENGTH, MIN_LENGTH, RULE, check_password
from keel.models.user import Role
from keel.schemas.common import InputModel, NotNull

# Checked as sent (no trimming), then lower-cased: the schema's pattern is the whole rule, so any
# username a client can build from the OpenAPI document is one the API accepts, and no other.
USERNAME_PATTERN = r"^[A-Za-z0-9_]{3,30}$"
_USERNAME = re.compile(r"[A-Za-z0-9_]{3,30}")


def _check_username(value: str) -> str:
    if not _USERNAME.fullmatch(value):
        raise ValueError("Username must be 3-30 characters of a-z, 0-9 and underscore.")
    return value.lower()


def _clean_full_name(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    return value or None


# email-validator (behind EmailStr) refuses special-use domains such as .test or .local, which can
# never receive the verification email; say so in the schema, which `format: email` alone does not.
_SPECIAL_USE = "|".join(
    "".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in name) for name in SPECIAL_USE_DOMAIN_NAMES
)
EMAIL_PATTERN = rf"^[^\x00@]*@(?!(?:[^@]*\.)?(?:{_SPECIAL_USE})$)[^\x00@]*$"
Email = Annotated[
    EmailStr, Field(max_length=254, json_schema_extra={"pattern": EMAIL_PATTERN}), AfterValidator(lambda v: v.lower())
]
Username = Annotated[
    str,
    # The pattern is for the schema only: `_check_username` enforces it with a friendlier message.
    Field(min_length=3, max_length=30, examples=["ada_l"], json_schema_extra={"pattern": USERNAME_PATTERN}),
    AfterValidator(_check_username),
]
FullName = Annotated[str | None, Field(max_length=100), AfterValidator(_clean_full_name)]
# Schema-level bounds only; the policy (common passwords etc.) is checked by validators.
Password = Annotated[str, Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH, description=RULE)]
AnyPassword = Annotated[str, Field(min_length=1, max_length=1024)]


class UserCreate(InputModel):
    email: Email
    username: Username
    full_name: FullName = None
    # Declared last so its validator can compare it with the email and username.
    password: Password

    @field_validator("password")
    @classmethod
    def _password_policy(cls, value: str, info: ValidationInfo) -> str:
        email = info.data.get("email")
        personal = (email, email.split("@")[0] if email else None, info.data.get("username"))
        return check_password(value, personal=personal)


class UserUpdate(InputModel):
    """A merge patch: a field left out is unchanged; null clears `full_name`, not `username`."""

    username: Annotated[Username | None, NotNull()] = None
    full_name: FullName = None


class UserDelete(InputModel):
    password: AnyPassword | None = Field(
        default=None,
        description=(
            "Required when the account has a password. An account without one (made by a provider, "
            "or signing in by code) is deleted on its recent authentication alone."
        ),
    )


class AdminUserUpdate(InputModel):
    """A merge patch: a field left out is unchanged; none of them can be null."""

    role: Annotated[Role | None, NotNull()] = None
    is_active: Annotated[StrictBool | None, NotNull()] = None
    is_verified: Annotated[StrictBool | None, NotNull()] = None


class UserPublic(BaseModel):
    """What anyone may see of a user: never the email."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    full_name: str | None
    created_at: datetime


class UserRead(UserPublic):
    email: str
    role: Role
    is_active: bool
    is_verified: bool


class AdminUserRead(UserRead):
    """A user as the admin pages show them: `UserRead` and when they last used Keel."""

    last_seen_at: datetime | None = Field(
        default=None,
        description=(
            "The latest use of any of the account's sessions (a sign-in or a refresh, about every"
            " quarter hour while a page is open) or personal access tokens still on record; null"
            " when there is none."
        ),
    )
