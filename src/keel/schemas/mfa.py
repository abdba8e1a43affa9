"""Second factors: TOTP, recovery codes, and finishing or confirming a sign-in with one."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from keel.schemas.common import InputModel, Problem
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


class PasswordProof(InputModel):
    password: AnyPassword


class CodeProof(InputModel):
    code: TotpCode


class RecoveryCodeProof(InputModel):
    recovery_code: RecoveryCodeStr


class EmailCodeProof(InputModel):
    """A code mailed by `/auth/email-code/request` to the account's own address: how an account
    without a password (made by a provider, or signing in only by code) proves it is its owner."""

    email_code: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9 ]+$", examples=["12345678"])]


# Exactly one proof: unknown fields are refused, so a body naming two matches neither shape (422).
Reauthenticate = Annotated[
    PasswordProof | CodeProof | RecoveryCodeProof | EmailCodeProof,
    Field(
        description=(
            "Exactly one of `password`, `code` (authenticator app), `recovery_code` or `email_code` "
            "(a code mailed by `/auth/email-code/request` to the account's address)."
        )
    ),
]


class MfaCodeVerify(InputModel):
    mfa_token: MfaToken
    code: TotpCode


class MfaRecoveryCodeVerify(InputModel):
    mfa_token: MfaToken
    recovery_code: RecoveryCodeStr


MfaVerify = Annotated[
    MfaCodeVerify | MfaRecoveryCodeVerify,
    Field(description="`mfa_token` and exactly one of `code` (authenticator app) or `recovery_code`."),
]


class MfaRequiredProblem(Problem):
    """403 `mfa_required`: the first factor was right; finish with `/mfa/verify` or `/passkeys/authenticate`."""

    mfa_token: str = Field(description="Names this half-finished sign-in: single use, for `expires_in` seconds.")
    methods: list[Literal["totp", "passkey", "recovery_code"]] = Field(
        description="The second factors the account can finish with."
    )
    expires_in: int = Field(description="Seconds until `mfa_token` expires.")


def first_factor_responses() -> dict[int | str, dict[str, Any]]:
    """OpenAPI: a first-factor sign-in's 403 is `mfa_required` (with its members) or another problem."""
    refs = [{"$ref": "#/components/schemas/MfaRequiredProblem"}, {"$ref": "#/components/schemas/Problem"}]
    return {
        403: {
            "description": "`mfa_required` (the account has a second factor: finish with the `mfa_token`), "
            "or another refusal such as `inactive_user`",
            "content": {"application/problem+json": {"schema": {"anyOf": refs}}},
        }
    }
