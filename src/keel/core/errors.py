"""The typed error hierarchy. Services raise these; one handler renders them as problem+json."""

from __future__ import annotations

from typing import Any, ClassVar


class KeelError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal server error"
    default_detail: ClassVar[str] = "The server could not complete the request."

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        self.detail = detail or self.default_detail
        self.headers = headers or {}
        super().__init__(self.detail)

    def extensions(self) -> dict[str, Any]:
        """Extra members for the problem document."""
        return {}


# --- 400 -------------------------------------------------------------------------------------
class BadRequest(KeelError):
    status = 400
    code = "bad_request"
    title = "Bad request"


class InvalidCredentialsInput(BadRequest):
    """A password given to confirm an action (change, deletion) is wrong."""

    code = "invalid_credentials"
    title = "Invalid credentials"
    default_detail = "The password is incorrect."


class InvalidCredential(BadRequest):
    """A passkey's answer (registration or sign-in) that cannot be verified, whatever is wrong with it."""

    code = "invalid_credential"
    title = "Invalid passkey"
    default_detail = "The passkey's response could not be verified; try again."


class InvalidEmailToken(BadRequest):
    code = "invalid_token"
    title = "Invalid link"
    default_detail = "This link is invalid or has already been used."


class ExpiredEmailToken(BadRequest):
    code = "expired_token"
    title = "Expired link"
    default_detail = "This link has expired; ask for a new one."


class PasswordsDoNotMatch(BadRequest):
    code = "passwords_do_not_match"
    title = "Passwords do not match"
    default_detail = "The new password and its confirmation differ."


class InvalidCode(BadRequest):
    """A second-factor code (authenticator app or recovery code) that is wrong, used or malformed."""

    code = "invalid_code"
    title = "Invalid code"
    default_detail = "The code is incorrect or has already been used."


# --- 401 -------------------------------------------------------------------------------------
class Unauthorized(KeelError):
    status = 401
    code = "not_authenticated"
    title = "Not authenticated"
    default_detail = "Authentication is required."
    # RFC 6750: the `invalid_token` error only when a presented access token was refused.
    bearer_error: ClassVar[str | None] = None

    def __init__(self, detail: str | None = None) -> None:
        challenge = f'Bearer error="{self.bearer_error}"' if self.bearer_error else "Bearer"
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class InvalidToken(Unauthorized):
    code = "invalid_token"
    title = "Invalid token"
    default_detail = "The access token is invalid."
    bearer_error = "invalid_token"


class TokenExpired(InvalidToken):
    code = "token_expired"
    title = "Token expired"
    default_detail = "The access token has expired."


class SessionRevoked(InvalidToken):
    code = "session_revoked"
    title = "Session ended"
    default_detail = "This session has ended; sign in again."


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    title = "Invalid credentials"
    default_detail = "Incorrect email or password."


class InvalidRefreshToken(Unauthorized):
    code = "invalid_refresh_token"
    title = "Invalid refresh token"
    default_detail = "The refresh token is invalid, expired or already used."


class InvalidTicket(Unauthorized):
    """An event stream ticket that is unknown, expired or already used (each opens one stream)."""

    code = "invalid_ticket"
    title = "Invalid ticket"
    default_detail = "This ticket is unknown, expired or already used; ask for a new one."


class InvalidMfaToken(Unauthorized):
    code = "invalid_mfa_token"
    title = "Invalid sign-in token"
    default_detail = "This sign-in has expired or was already finished; sign in again."


# --- 403 -------------------------------------------------------------------------------------
class Forbidden(KeelError):
    status = 403
    code = "forbidden"
    title = "Forbidden"
    default_detail = "You do not have permission to do this."


class EmailNotVerified(Forbidden):
    code = "email_not_verified"
    title = "Email not verified"
    default_detail = "Verify your email address first."


class NotAuthor(Forbidden):
    code = "not_author"
    title = "Not the author"
    default_detail = "Only the author can change this post."


class OwnPost(Forbidden):
    code = "own_post"
    title = "Your own post"
    default_detail = "An author cannot vote for their own post."


class InactiveUser(Forbidden):
    code = "inactive_user"
    title = "Account deactivated"
    default_detail = "This account has been deactivated."


class CsrfRejected(Forbidden):
    """A request that would use the refresh cookie did not prove it comes from the web app."""

    code = "csrf_rejected"
    title = "Cross-site request refused"
    default_detail = "This request must come from the Keel web app."


class MfaRequired(Forbidden):
    """The first factor was right; the sign-in finishes with a second one, named by `mfa_token`."""

    code = "mfa_required"
    title = "Second sign-in step required"
    default_detail = "Finish signing in with your authenticator app, a passkey or a recovery code."

    def __init__(self, *, mfa_token: str, methods: list[str], expires_in: int) -> None:
        super().__init__(headers={"Cache-Control": "no-store"})
        self.mfa_token = mfa_token
        self.methods = methods
        self.expires_in = expires_in

    def extensions(self) -> dict[str, Any]:
        return {"mfa_token": self.mfa_token, "methods": self.methods, "expires_in": self.expires_in}


class ReauthenticationRequired(Forbidden):
    code = "reauthentication_required"
    title = "Confirm it is you"
    default_detail = "This needs a recent sign-in: confirm your password or a code at /api/v1/auth/reauthenticate."


class MfaEnrollmentRequired(Forbidden):
    code = "mfa_enrollment_required"
    title = "Second sign-in step required for administrators"
    default_detail = "Set up an authenticator app or a passkey before using administrator functions."


class PersonalTokenNotAllowed(Forbidden):
    """A personal access token was sent where only a signed-in session may act (API.md's security center)."""

    code = "personal_token_not_allowed"
    title = "Not with a personal access token"
    default_detail = (
        "Personal access tokens cannot be used for signing in, tokens, administration or account changes; "
        "sign in instead."
    )


class InsufficientScope(Forbidden):
    """A personal access token without the scope this route family needs (RFC 6750 section 3.1)."""

    code = "insufficient_scope"
    title = "Insufficient scope"

    def __init__(self, scope: str) -> None:
        super().__init__(
            f"This personal access token lacks the {scope} scope.",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        )
        self.scope = scope

    def extensions(self) -> dict[str, Any]:
        return {"scope": self.scope}


# --- 404 -------------------------------------------------------------------------------------
class NotFound(KeelError):
    status = 404
    code = "not_found"
    title = "Not found"
    default_detail = "The resource does not exist."


class UserNotFound(NotFound):
    code = "user_not_found"
    default_detail = "No such user."


class TodoNotFound(NotFound):
    code = "todo_not_found"
    default_detail = "No such todo."


class ListNotFound(NotFound):
    """A list that does not exist, or of which the caller is not a member (the same to them)."""

    code = "list_not_found"
    default_detail = "No such list."


class MemberNotFound(NotFound):
    code = "member_not_found"
    default_detail = "No such member of this list."


class PostNotFound(NotFound):
    code = "post_not_found"
    default_detail = "No such post."


class CommentNotFound(NotFound):
    code = "comment_not_found"
    default_detail = "No such comment."


class SessionNotFound(NotFound):
    code = "session_not_found"
    default_detail = "No such active session."


class TotpNotEnabled(NotFound):
    code = "totp_not_enabled"
    default_detail = "No authenticator app is set up for this account."


class PasskeyNotFound(NotFound):
    code = "passkey_not_found"
    default_detail = "No such passkey."


class ProviderNotFound(NotFound):
    code = "provider_not_found"
    default_detail = "No such sign-in provider is configured."


class AccessTokenNotFound(NotFound):
    code = "access_token_not_found"
    default_detail = "No such personal access token."


class IdentityNotFound(NotFound):
    code = "identity_not_found"
    default_detail = "No such linked account."


# --- 409 -------------------------------------------------------------------------------------
class Conflict(KeelError):
    status = 409
    code = "conflict"
    title = "Conflict"
    default_detail = "The request conflicts with the current state of the resource."


class LastSignInMethod(Conflict):
    code = "last_sign_in_method"
    default_detail = "This is the account's last way to sign in: set a password or add a passkey first."


class UsernameTaken(Conflict):
    code = "username_taken"
    title = "Username taken"
    default_detail = "This username is already taken."


class AlreadyVerified(Conflict):
    code = "already_verified"
    title = "Already verified"
    default_detail = "This email address is already verified."


class AlreadyMember(Conflict):
    code = "already_member"
    title = "Already a member"
    default_detail = "This user is already a member of the list."


class OwnerMembership(Conflict):
    code = "list_owner"
    title = "The list's owner"
    default_detail = "The owner's membership cannot change: delete the list instead."


class NotAMember(Conflict):
    """An assignee who is not a member of the todo's list (a state of the list, not a malformed body)."""

    code = "not_a_member"
    title = "Not a member of the list"
    default_detail = "The assignee must be a member of the todo's list (in your inbox, only you)."


class LastAdmin(Conflict):
    code = "last_admin"
    title = "Last administrator"
    default_detail = "This would leave the service without an active administrator."


class EditConflict(Conflict):
    """Another request changed the same item between this one's read and its write."""

    code = "edit_conflict"
    title = "Edit conflict"
    default_detail = "Someone else changed this at the same moment; nothing was changed. Try again."


class TotpAlreadyEnabled(Conflict):
    code = "totp_already_enabled"
    title = "Authenticator app already set up"
    default_detail = "An authenticator app is already set up; remove it first to set up another."


class MfaNotEnabled(Conflict):
    code = "mfa_not_enabled"
    title = "No second factor"
    default_detail = "Recovery codes stand in for a second factor; set up an authenticator app or a passkey first."


# --- 412 -------------------------------------------------------------------------------------
class PreconditionFailed(KeelError):
    """An `If-Match` that names no current representation: the item changed since the client read it."""

    status = 412
    code = "precondition_failed"
    title = "Precondition failed"
    default_detail = "This was changed since you read it (the If-Match ETag is stale); read it again first."


# --- 422 -------------------------------------------------------------------------------------
class InvalidInput(KeelError):
    """Input that passed the schema but breaks a rule the service knows (rendered like 422)."""

    status = 422
    code = "validation_error"
    title = "Invalid input"
    default_detail = "The request contains invalid data."

    def __init__(self, *, loc: list[str | int], msg: str, type_: str) -> None:
        super().__init__(msg)
        self.errors = [{"loc": loc, "msg": msg, "type": type_}]

    def extensions(self) -> dict[str, Any]:
        return {"errors": self.errors}


class InvalidParent(InvalidInput):
    """A reply's `parent_id` is not a comment that can be replied to: one level of replies only."""

    code = "invalid_parent"

    def __init__(self, msg: str = "Reply to a top-level comment of the same post.") -> None:
        super().__init__(loc=["body", "parent_id"], msg=msg, type_="invalid_parent")


# --- 429 -------------------------------------------------------------------------------------
class RateLimited(KeelError):
    """Too many requests; the body never depends on who was asked about (it names no account)."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"
    default_detail = "Too many requests; try again later."

    def __init__(self, *, retry_after: int) -> None:
        super().__init__(headers={"Retry-After": str(max(retry_after, 1))})


class TooManyStreams(RateLimited):
    """The caller already has as many live update streams open on this worker as one may."""

    code = "too_many_streams"
    title = "Too many streams"
    default_detail = "Too many event streams are open for this account; close one and try again."


class IdempotencyKeyReused(KeelError):
    """An `Idempotency-Key` already used, within its 24 hours, for a different request."""

    status = 422
    code = "idempotency_key_reused"
    title = "Idempotency key reused"
    default_detail = "This Idempotency-Key was already used for a different request; use a new key."

    def extensions(self) -> dict[str, Any]:
        return {"errors": [{"loc": ["header", "Idempotency-Key"], "msg": self.detail, "type": self.code}]}


# --- 499 -------------------------------------------------------------------------------------
class ClientClosedRequest(KeelError):
    """The client hung up before the work it asked for began; no one receives this answer.

    499 is nginx's status for it: logs and metrics then tell an abandoned request from a failed one.
    """

    status = 499
    code = "client_closed_request"
    title = "Client closed request"
    default_detail = "The client closed the connection before its request was served."


# --- 503 -------------------------------------------------------------------------------------
class ServiceUnavailable(KeelError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"
    default_detail = "A backing service is unavailable; try again shortly."

    def __init__(self, detail: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class StreamsFull(ServiceUnavailable):
    """This worker holds as many live update streams as it may; another worker (or later) will do."""

    code = "streams_unavailable"
    default_detail = "This server holds as many event streams as it can; try again shortly."


class ProviderUnavailable(ServiceUnavailable):
    code = "provider_unavailable"
    default_detail = "The sign-in provider could not be reached; try again shortly."


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot be reached, has no connection free, or gave up on the statement in time."""

    code = "database_unavailable"
    title = "Database unavailable"
    default_detail = "The database is unavailable; try again shortly."
