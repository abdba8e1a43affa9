"""Personal access token shapes (API.md, "The security center")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, field_validator

from keel.core.personal_token import Scope
from keel.schemas.common import NOT_BLANK, InputModel, not_blank

DEFAULT_EXPIRY_DAYS = 90
MAX_EXPIRY_DAYS = 365

TokenName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        json_schema_extra={"pattern": NOT_BLANK},
        description="What the token is for, such as the script or machine that uses it.",
    ),
    AfterValidator(not_blank),
]


class AccessTokenCreate(InputModel):
    name: TokenName
    scopes: list[Scope] = Field(
        min_length=1,
        max_length=len(Scope),
        description="What the token may do, each scope once. Never /auth, /tokens, /admin or account changes.",
        json_schema_extra={"uniqueItems": True},
    )
    expires_in_days: int | None = Field(
        default=DEFAULT_EXPIRY_DAYS,
        ge=1,
        le=MAX_EXPIRY_DAYS,
        description=(
            f"Days until it stops working (1-{MAX_EXPIRY_DAYS}, default {DEFAULT_EXPIRY_DAYS}). `null` makes one "
            "that never expires, only where the server allows it (KEEL_PERSONAL_TOKENS_ALLOW_NO_EXPIRY); else 422."
        ),
    )

    @field_validator("scopes")
    @classmethod
    def _each_once(cls, value: list[Scope]) -> list[Scope]:
        if len(set(value)) != len(value):
            raise ValueError("Name each scope once.")
        return value


class AccessTokenRead(BaseModel):
    id: int
    name: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None = Field(description="When it stops working; null if never.")
    last_used_at: datetime | None = Field(
        description="The last request made with it (kept to the minute); null if never used."
    )


class AccessTokenCreated(AccessTokenRead):
    token: str = Field(
        description="The secret, `keel_pat_...`: shown only in this answer. Send it as `Authorization: Bearer`."
    )
