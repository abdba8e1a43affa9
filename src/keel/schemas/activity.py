from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ActivityRead(BaseModel):
    """One security event on the account."""

    id: int
    type: str = Field(
        description=(
            "What happened: `sign_in`, `sign_in_failed`, `new_device`, `password_changed`, `password_reset`, "
            "`mfa_enabled`, `mfa_disabled`, `passkey_added`, `passkey_removed`, `identity_linked`, "
            "`identity_unlinked`, `token_created`, `token_revoked`, `session_revoked`, `role_changed`, "
            "`account_deactivated`, `account_reactivated`; clients should show unknown types as they are."
        ),
        examples=["sign_in"],
    )
    created_at: datetime
    ip: str | None = Field(description="The client's address, as resolved through trusted proxies.")
    user_agent: str | None = Field(
        description="The client's browser and system as words (`Firefox on macOS`), or the program's name."
    )
    detail: dict[str, Any] = Field(
        description="A few facts about the event, by type: `method` and `amr` for sign-ins, `reason` for failures, "
        "`provider`, `name`, `role` and the like elsewhere.",
        examples=[{"method": "password", "amr": ["pwd"]}],
    )
