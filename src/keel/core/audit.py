"""Security events: one log line each on the `keel.security` logger, and a count in Prometheus.

Every field is an id, a reason or a role: never a password, a token, a link or an address
typed into a form (a password typed into the email field must not end up in the log).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from enum import StrEnum
from typing import Any, Literal

from keel.core.logging import DirectLog

log = DirectLog("keel.security")


class SecurityEvent(StrEnum):
    USER_REGISTERED = "user_registered"
    EMAIL_VERIFIED = "email_verified"
    # A reset link confirmed an address that had an account no one had confirmed (it may have been
    # registered by someone else): the link's holder now has the account, and everyone else is out.
    ACCOUNT_CLAIMED = "account_claimed"
    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    TOKEN_REFRESHED = "token_refreshed"
    REFRESH_FAILED = "refresh_failed"
    REFRESH_TOKEN_REUSE = "refresh_token_reuse"
    LOGOUT = "logout"
    LOGOUT_ALL = "logout_all"
    SESSION_REVOKED = "session_revoked"
    PASSWORD_CHANGED = "password_changed"
    PASSWORD_CHANGE_FAILED = "password_change_failed"
    # Too many password checks in a row without the right password: the account is locked a while.
    ACCOUNT_LOCKED = "account_locked"
    PASSWORD_RESET_REQUESTED = "password_reset_requested"
    SIGN_IN_CODE_REQUESTED = "sign_in_code_requested"
    PASSWORD_RESET = "password_reset"
    ROLE_CHANGED = "role_changed"
    MFA_REQUIRED = "mfa_required"
    MFA_FAILED = "mfa_failed"
    MFA_TOKEN_EXHAUSTED = "mfa_token_exhausted"
    TOTP_ENABLED = "totp_enabled"
    TOTP_DISABLED = "totp_disabled"
    RECOVERY_CODES_GENERATED = "recovery_codes_generated"
    RECOVERY_CODE_USED = "recovery_code_used"
    PASSKEY_ADDED = "passkey_added"
    PASSKEY_RENAMED = "passkey_renamed"
    PASSKEY_REMOVED = "passkey_removed"
    PASSKEY_SIGN_IN_FAILED = "passkey_sign_in_failed"
    MFA_RESET = "mfa_reset"
    REAUTHENTICATED = "reauthenticated"
    REAUTHENTICATION_FAILED = "reauthentication_failed"
    IDENTITY_LINKED = "identity_linked"
    IDENTITY_UNLINKED = "identity_unlinked"
    IDENTITY_LINK_REQUESTED = "identity_link_requested"
    PROVIDER_SIGN_IN = "provider_sign_in"
    PROVIDER_SIGN_IN_REFUSED = "provider_sign_in_refused"
    TOKEN_CREATED = "token_created"
    TOKEN_REVOKED = "token_revoked"
    USER_DEACTIVATED = "user_deactivated"
    USER_REACTIVATED = "user_reactivated"
    USER_DELETED = "user_deleted"
    # Every 403 and 429 answer, whatever refused it (its problem `code` says why).
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"


# Set per request by the request middleware to the app's counter; unset (no count, only the
# log line) outside a request, e.g. in the CLI or a Celery worker.
event_counter: ContextVar[Callable[[SecurityEvent], None] | None] = ContextVar("keel_event_counter", default=None)


def record(event: SecurityEvent, *, level: Literal["info", "warning"] = "info", **fields: Any) -> None:
    getattr(log, level)(event.value, **fields)
    count = event_counter.get()
    if count is not None:
        count(event)
