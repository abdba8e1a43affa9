"""User shapes: registration, profile reads and edits, administration."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    ValidationInfo,
    field_validator,
)

from keel.core.password_policy import MAX_LENGTH, MIN_LENGTH, check_password
from keel.models.user import Role
from keel.schemas.common import InputModel

_USERNAME = re.compile(r"^[a-z0-9_]{3,30}$")


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _check_username(value: str) -> str:
    if not _USERNAME.match(value):
        raise ValueError("Username must be 3-30 characters of a-z, 0-9 and underscore.")
    return value


def _clean_full_name(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    return value or None


Email = Annotated[EmailStr, Field(max_length=254), AfterValidator(lambda v: v.lower())]
Username = Annotated[
    str,
    BeforeValidator(_lower),
    Field(min_length=3, max_length=30, examples=["ada_l"]),
    AfterValidator(_check_username),
]
FullName = Annotated[str | None, Field(max_length=100), AfterValidator(_clean_full_name)]
# Schema-level bounds only; the policy (common passwords etc.) is checked by validators.
Password = Annotated[str, Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)]
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
    username: Username | None = None
    full_name: FullName = None


class UserDelete(InputModel):
    password: AnyPassword


class AdminUserUpdate(InputModel):
    role: Role | None = None
    is_active: bool | None = None
    is_verified: bool | None = None


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
