"""Token and session shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from keel.core.password_policy import MAX_LENGTH, check_form
from keel.core.security import MAX_REFRESH_TOKEN_CHARS
from keel.schemas.common import InputModel
from keel.schemas.user import AnyPassword, Email, Password

# Not enforced as a 422: any string that is not a live refresh token, however long, is the same
# 401 `invalid_refresh_token` (so a client that sends the wrong token signs in again rather than
# reporting a bug); the service refuses past the bound without a lookup.
RefreshTokenStr = Annotated[str, Field(json_schema_extra={"maxLength": MAX_REFRESH_TOKEN_CHARS})]


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str | None = Field(
        description="The new refresh token; null when it was set as the HttpOnly cookie instead (web client mode)."
    )
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")


class EmailCodeTokenPair(TokenPair):
    password_removed: bool = Field(
        default=False,
        description=(
            "True when this code claimed an account whose address was never confirmed: whoever registered "
            "it may have been someone else, so the password set then no longer works (set a new one through "
            "the password reset)."
        ),
    )


class RefreshRequest(InputModel):
    refresh_token: RefreshTokenStr | None = Field(
        default=None,
        description=(
            "Leave out (or send no body) to use the refresh cookie instead. Any string that is not a live "
            "refresh token (an access token, say, or one longer than maxLength) is 401 invalid_refresh_token."
        ),
    )


class LogoutRequest(InputModel):
    # Past the bound it is plainly not a token: refused like any other schema violation.
    refresh_token: Annotated[str, Field(max_length=MAX_REFRESH_TOKEN_CHARS)] | None = Field(
        default=None,
        description="Also end this refresh token's session, if it is one of yours; anything else is ignored.",
    )


class PasswordChange(InputModel):
    current_password: AnyPassword
    new_password: Password

    @field_validator("new_password")
    @classmethod
    def _password_policy(cls, value: str) -> str:
        # The rest of the policy needs the account (its email and username): the service checks it.
        return check_form(value)


class SessionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    device: str | None = Field(
        description='The user agent as a person reads it ("Firefox on macOS"), named as the activity log names it.'
    )
    ip: str | None
    current: bool
    amr: list[str] = Field(
        description="How the session was signed in (RFC 8176): `pwd` password, `otp` authenticator app or "
        "recovery code, `hwk` passkey, `mfa` with a second factor."
    )

    @field_validator("amr", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return value.split() if isinstance(value, str) else value


EmailToken = Annotated[str, Field(min_length=1, max_length=512)]


class VerifyEmailConfirm(InputModel):
    token: EmailToken


class PasswordResetRequest(InputModel):
    email: Email


class PasswordCheck(InputModel):
    """A password to rate, with what the account will hold (the password must not be built from them)."""

    password: Annotated[str, Field(min_length=1, max_length=MAX_LENGTH)]
    email: Annotated[str | None, Field(max_length=254)] = None
    username: Annotated[str | None, Field(max_length=254)] = None


class PasswordCheckRead(BaseModel):
    acceptable: bool = Field(description="Whether a sign-up, reset or change would accept this password.")
    score: int = Field(ge=0, le=4, description="zxcvbn's score: 0 too guessable ... 4 very unguessable.")
    message: str = Field(description="Why it is refused, or that it is accepted, in a sentence for a person.")


class PasswordResetConfirm(InputModel):
    token: EmailToken
    new_password: Password
    confirm_password: Annotated[str, Field(min_length=1, max_length=128)]

    @field_validator("new_password")
    @classmethod
    def _password_policy(cls, value: str) -> str:
        # The rest of the policy needs the account (its email and username): the service checks it.
        return check_form(value)


class EmailCodeRequest(InputModel):
    email: Email


class EmailCodeVerify(InputModel):
    email: Email
    # 8 digits as mailed; spaces a mail client added are dropped. Anything else is a wrong code.
    code: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9 ]+$", examples=["12345678"])]
