"""Token and session shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from keel.core.password_policy import check_password
from keel.schemas.common import InputModel
from keel.schemas.user import AnyPassword, Email, Password

RefreshTokenStr = Annotated[str, Field(min_length=1, max_length=256)]


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str | None = Field(
        description="The new refresh token; null when it was set as the HttpOnly cookie instead (web client mode)."
    )
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")


class RefreshRequest(InputModel):
    refresh_token: RefreshTokenStr | None = Field(
        default=None, description="Leave out (or send no body) to use the refresh cookie instead."
    )


class LogoutRequest(InputModel):
    refresh_token: RefreshTokenStr | None = None


class PasswordChange(InputModel):
    current_password: AnyPassword
    new_password: Password

    @field_validator("new_password")
    @classmethod
    def _password_policy(cls, value: str) -> str:
        return check_password(value)


class SessionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool


EmailToken = Annotated[str, Field(min_length=1, max_length=512)]


class VerifyEmailConfirm(InputModel):
    token: EmailToken


class PasswordResetRequest(InputModel):
    email: Email


class PasswordResetConfirm(InputModel):
    token: EmailToken
    new_password: Password
    confirm_password: Annotated[str, Field(min_length=1, max_length=128)]

    @field_validator("new_password")
    @classmethod
    def _password_policy(cls, value: str) -> str:
        return check_password(value)
