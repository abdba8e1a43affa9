"""Shapes of provider sign-in and linked identities."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from keel.schemas.common import InputModel


class ProviderRead(BaseModel):
    id: str = Field(description="Used in `/auth/oidc/{provider}/...` and `/auth/identities/{provider}/link`.")
    name: str = Field(description="What to show on its button.")


class IdentityRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    provider: str
    subject: str = Field(description="The account's id at the provider.")
    email: str | None = Field(description="The address the provider gave when it was linked.")
    created_at: datetime


class AuthorizeUrl(BaseModel):
    authorize_url: str = Field(description="Send the browser here (a top-level navigation) to link the account.")


class IdentityLinkConfirm(InputModel):
    token: str = Field(min_length=1, max_length=1024, description="The token from the mailed confirmation link.")
