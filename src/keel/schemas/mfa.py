"""Second factors: TOTP, recovery codes, and finishing or confirming a sign-in with one."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from keel.schemas.common import InputModel
from keel.schemas.user import AnyPassword

# A code as typed: spaces are allowed ("123 456"); the service decides whether it is right.
TotpCode = Annotated[str, Field(min_length=1, max_length=32, examples=["123456"])]
RecoveryCodeStr = Annotated[str, Field(min_length=1, max_length=64, examples=["7kq2m-x9d4p"])]
MfaToken = Annotated[str, Field(min_length=1, max_length=128, description="The `mfa_token` of a 403 `mfa_required`.")]


class MfaStatus(BaseModel):
    totp: bool = Field(description="An authenticator app is set up and confirmed.")
    passkeys: int = Field(description="How many passkeys the account has.")
    recovery_codes_left: int = Field(description="Unused recovery codes.")


class TotpSetup(BaseModel):
    secret: str = Field(description="The base32 secret, for typing into an authenticator app.")
    otpauth_uri: str = Field(description="The `otpauth://totp/...` URI (issuer `Keel`), as the QR code carries it.")
    qr_svg: str = Field(description="The URI as a QR code: an SVG document.")


class TotpConfirm(InputModel):
    code: TotpCode


class RecoveryCodes(BaseModel):
    recovery_codes: list[str] = Field(
        description="Ten single-use codes, shown this once: each finishes one sign-in without the app."
    )


def _exactly_one(model: BaseModel, *names: str) -> None:
    given = [name for name in names if getattr(model, name) is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(names)}")


class Reauthenticate(InputModel):
    """Exactly one of `password`, `code` (authenticator app) or `recovery_code`."""

    password: AnyPassword | None = None
    code: TotpCode | None = None
    recovery_code: RecoveryCodeStr | None = None

    @model_validator(mode="after")
    def _one(self) -> Reauthenticate:
        _exactly_one(self, "password", "code", "recovery_code")
        return self


class MfaVerify(InputModel):
    """`mfa_token` and exactly one of `code` (authenticator app) or `recovery_code`."""

    mfa_token: MfaToken
    code: TotpCode | None = None
    recovery_code: RecoveryCodeStr | None = None

    @model_validator(mode="after")
    def _one(self) -> MfaVerify:
        _exactly_one(self, "code", "recovery_code")
        return self
