"""Passkey shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from keel.schemas.common import NOT_BLANK, InputModel, not_blank
from keel.schemas.mfa import MfaToken

PasskeyName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        json_schema_extra={"pattern": NOT_BLANK},
        description="What the owner calls it, such as the device it lives on.",
    ),
    AfterValidator(not_blank),
]
# Checked by the WebAuthn verification itself, field by field: whatever is wrong with it (a
# missing member, bad base64url, broken CBOR) is one 400 `invalid_credential`, never a 422, and
# browsers may add members of later WebAuthn levels. The request body's size bounds it.
Credential = Annotated[
    dict[str, Any],
    Field(
        description=(
            "The `PublicKeyCredential` the browser returned, as its `toJSON()` gives it (binary members in "
            "base64url). Anything that does not verify is 400 `invalid_credential`."
        ),
        json_schema_extra={"maxProperties": 16},
    ),
]
# The WebAuthn options, as JSON (binary members in base64url), for `navigator.credentials.create()`
# or `.get()` after `PublicKeyCredential.parseCreationOptionsFromJSON()` / `parseRequestOptionsFromJSON()`.
CredentialOptions = dict[str, Any]


class PasskeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None = Field(description="The last sign-in with it; null if never used.")


class PasskeyRegister(InputModel):
    credential: Credential
    name: PasskeyName


class PasskeyUpdate(InputModel):
    name: PasskeyName


class PasskeyAuthenticationOptionsRequest(InputModel):
    mfa_token: MfaToken | None = Field(
        default=None,
        description="Leave out for a sign-in with a passkey alone; give it to finish a sign-in with a passkey.",
    )


class PasskeyAuthenticate(InputModel):
    credential: Credential
    mfa_token: MfaToken | None = Field(
        default=None, description="The same `mfa_token` the options were asked for with, if any."
    )


class PasskeyReauthenticate(InputModel):
    credential: Credential
