from __future__ import annotations

from typing import Any

from fastapi import Request, Response, status

from keel.core import password_policy
from keel.core.errors import InactiveUser, InvalidRefreshToken
from keel.deps import (
    NO_PERSONAL_TOKENS,
    CacheDep,
    ClientIP,
    CurrentUser,
    DatabaseDep,
    DispatcherDep,
    EmailCodeAttempt,
    EmailCodeRateLimit,
    LoginAttempt,
    LoginFormDep,
    PasswordCheckRateLimit,
    PasswordResetRateLimit,
    PresentedRefreshToken,
    RateLimiterDep,
    RecentlyAuthenticatedUser,
    RefreshRateLimit,
    RegisterRateLimit,
    SessionId,
    SettingsDep,
    VerifyEmailRateLimit,
    WebClient,
)
from keel.routes import API_PREFIX, PrefixedRouter
from keel.schemas.auth import (
    EmailCodeRequest,
    EmailCodeTokenPair,
    LogoutRequest,
    PasswordChange,
    PasswordCheck,
    PasswordCheckRead,
    PasswordResetConfirm,
    PasswordResetRequest,
    SessionRead,
    TokenPair,
    VerifyEmailConfirm,
)
from keel.schemas.common import Message, problem_responses
from keel.schemas.mfa import first_factor_responses
from keel.schemas.user import UserCreate, UserRead
from keel.services import account as account_service
from keel.services import auth as auth_service
from keel.services import email_code as email_code_service
from keel.services import session as session_service
from keel.services import user as user_service
from keel.services.activity import describe as describe_device

router = PrefixedRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"], dependencies=[NO_PERSONAL_TOKENS])

REGISTERED = "If this address can be registered, an email is on its way to it with the next step."


def sets_cookie(status_code: int, what: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI: the success response may carry a `Set-Cookie` for the refresh cookie."""
    header = {"description": f"{what} (web client mode only).", "schema": {"type": "string"}}
    return {status_code: {"headers": {"Set-Cookie": header}}}


def no_store(response: Response) -> None:
    # Token responses must never be kept by a browser or proxy cache.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


@router.post(
    "/register",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Message,
    responses=problem_responses(409, 422, 429),
    dependencies=[RegisterRateLimit],
)
async def register(
    data: UserCreate, database: DatabaseDep, settings: SettingsDep, dispatcher: DispatcherDep
) -> Message:
    """Create an account. The answer is the same whether or not the email already has one."""
    await user_service.register(database=database, settings=settings, dispatcher=dispatcher, data=data)
    return Message(detail=REGISTERED)


@router.post(
    "/login",
    response_model=TokenPair,
    responses={
        **problem_responses(401, 403, 422, 429),
        **first_factor_responses(),
        **sets_cookie(200, "The refresh cookie"),
    },
)
async def login(
    attempt: LoginAttempt,
    form: LoginFormDep,
    request: Request,
    response: Response,
    database: DatabaseDep,
    cache: CacheDep,
    settings: SettingsDep,
    ip: ClientIP,
    web: WebClient,
    dispatcher: DispatcherDep,
    limiter: RateLimiterDep,
) -> TokenPair:
    """Sign in with email (as `username`) and password; opens a session and returns its tokens.

    An account with a second factor (authenticator app or passkey) gets 403 `mfa_required` instead,
    with `mfa_token` and `methods`: finish at `/auth/mfa/verify` or `/auth/passkeys/authenticate`.

    Ten wrong passwords in a row for one account, from any address, lock it for a minute (429 with
    `Retry-After`), and each further one doubles the lock, up to 15 minutes; the owner is emailed
    when it first locks. A right password, or a password reset, starts the count over.

    With the header `X-Keel-Client: web` (the web app), the request must also carry this service's own
    `Origin` (else 403 `csrf_rejected`), and the refresh token is set as the HttpOnly `keel_refresh`
    cookie instead of being returned (`refresh_token` is null).
    """
    if web.opted_in:
        web.require_same_origin()  # before any password hashing
    issued = await auth_service.login(
        database=database,
        cache=cache,
        settings=settings,
        dispatcher=dispatcher,
        limiter=limiter,
        attempt=attempt,
        email=form.username,
        password=form.password,
        user_agent=request.headers.get("user-agent"),
        ip=ip,
        client_gone=request.is_disconnected,
    )
    no_store(response)
    return web.hand_over(response, issued) if web.opted_in else issued.pair


@router.post(
    "/refresh",
    response_model=TokenPair,
    responses={**problem_responses(401, 403, 422, 429), **sets_cookie(200, "The new refresh cookie")},
)
async def refresh(
    response: Response,
    presented: PresentedRefreshToken,
    count: RefreshRateLimit,
    database: DatabaseDep,
    cache: CacheDep,
    settings: SettingsDep,
    web: WebClient,
) -> TokenPair:
    """Exchange a refresh token for a new token pair; the old refresh token stops working.

    Without `refresh_token` in the body the `keel_refresh` cookie is used: the request must then carry
    `X-Keel-Client: web` and this service's own `Origin` (else 403 `csrf_rejected`), the new refresh
    token replaces the cookie (`refresh_token` is null), and a 401 also deletes the cookie. A session
    that ended because its account was deactivated answers 403 `inactive_user` (deleting the cookie
    too), so the app can say why instead of asking for a sign-in that would fail.
    """
    if presented.token is None:
        raise InvalidRefreshToken
    try:
        issued = await auth_service.refresh(
            database=database, cache=cache, settings=settings, token=presented.token, count=count
        )
    except (InvalidRefreshToken, InactiveUser) as exc:
        if presented.from_cookie:
            web.clear_cookie_on(exc)
        raise
    no_store(response)
    return web.hand_over(response, issued) if presented.from_cookie else issued.pair


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**problem_responses(401, 403, 422), **sets_cookie(204, "Deletes the refresh cookie")},
)
async def logout(
    user: CurrentUser,
    response: Response,
    database: DatabaseDep,
    cache: CacheDep,
    web: WebClient,
    data: LogoutRequest | None = None,
) -> None:
    """End the current session at once, in every worker.

    A request that carries the `keel_refresh` cookie must also carry `X-Keel-Client: web` and this
    service's own `Origin` (else 403 `csrf_rejected`); its session ends too and the cookie is deleted.
    """
    if web.refresh_cookie is not None:
        web.require_same_origin()
    handed_in = [token for token in (data.refresh_token if data else None, web.refresh_cookie) if token]
    await auth_service.logout(database=database, cache=cache, principal=user, refresh_tokens=handed_in)
    if web.refresh_cookie is not None:
        web.clear_cookie(response)


@router.post(
    "/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**problem_responses(401), **sets_cookie(204, "Deletes the refresh cookie")},
)
async def logout_all(
    user: CurrentUser, response: Response, database: DatabaseDep, cache: CacheDep, web: WebClient
) -> None:
    """End every session of the current user, this one included, and delete the refresh cookie if sent."""
    await auth_service.logout_all(database=database, cache=cache, principal=user)
    if web.refresh_cookie is not None:
        web.clear_cookie(response)


@router.get("/sessions", response_model=list[SessionRead], responses=problem_responses(401))
async def list_sessions(user: CurrentUser, database: DatabaseDep, settings: SettingsDep) -> list[SessionRead]:
    """List the current user's active sessions, newest use first."""
    rows = await session_service.list_active(
        database=database, user_id=user.user_id, idle_seconds=settings.session_idle_ttl_seconds
    )
    return [
        SessionRead.model_validate(
            {**row.model_dump(), "current": row.id == user.session_id, "device": describe_device(row.user_agent)}
        )
        for row in rows
    ]


@router.delete(
    "/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(401, 404, 422)
)
async def revoke_session(session_id: SessionId, user: CurrentUser, database: DatabaseDep, cache: CacheDep) -> None:
    """End one of the current user's sessions (for example a lost device)."""
    await session_service.revoke_one(database=database, cache=cache, principal=user, session_id=session_id)


@router.post(
    "/password-change", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(400, 401, 403, 422, 429)
)
async def change_password(
    data: PasswordChange,
    user: RecentlyAuthenticatedUser,
    database: DatabaseDep,
    cache: CacheDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    limiter: RateLimiterDep,
) -> None:
    """Change the password (the current one is required); every other session ends.

    Needs a recent authentication: a sign-in or `/auth/reauthenticate` in the last 10 minutes (else
    403 `reauthentication_required`).

    A wrong current password counts against the account's wrong passwords like a sign-in's (429 while locked).
    """
    await auth_service.change_password(
        database=database,
        cache=cache,
        settings=settings,
        dispatcher=dispatcher,
        limiter=limiter,
        principal=user,
        current_password=data.current_password,
        new_password=data.new_password,
    )


@router.post(
    "/verify-email/request",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Message,
    responses=problem_responses(401, 409, 429),
    dependencies=[VerifyEmailRateLimit],
)
async def request_verification(
    user: CurrentUser, database: DatabaseDep, settings: SettingsDep, dispatcher: DispatcherDep
) -> Message:
    """Send a new verification link to the current user's address."""
    await account_service.request_verification(
        database=database, settings=settings, dispatcher=dispatcher, user_id=user.user_id
    )
    return Message(detail="A verification link is on its way.")


@router.post("/verify-email/confirm", response_model=UserRead, responses=problem_responses(400, 422))
async def confirm_verification(
    data: VerifyEmailConfirm, database: DatabaseDep, cache: CacheDep, settings: SettingsDep
) -> UserRead:
    """Confirm an email address with the token from the verification link."""
    user = await account_service.confirm_verification(
        database=database, cache=cache, settings=settings, token=data.token
    )
    return UserRead.model_validate(user)


@router.post(
    "/password-check",
    response_model=PasswordCheckRead,
    responses=problem_responses(422, 429),
    dependencies=[PasswordCheckRateLimit],
)
async def check_password(data: PasswordCheck) -> PasswordCheckRead:
    """Rate a new password by the policy of sign-up, reset and change; it is neither stored nor logged."""
    verdict = password_policy.assess(data.password, personal=password_policy.personal_of(data.email, data.username))
    return PasswordCheckRead(acceptable=verdict.acceptable, score=verdict.score, message=verdict.message)


@router.post(
    "/password-reset/request",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Message,
    responses=problem_responses(422, 429),
    dependencies=[PasswordResetRateLimit],
)
async def request_password_reset(
    data: PasswordResetRequest, database: DatabaseDep, settings: SettingsDep, dispatcher: DispatcherDep
) -> Message:
    """Email a password reset link. The answer is the same whether or not the address has an account."""
    await account_service.request_reset(database=database, settings=settings, dispatcher=dispatcher, email=data.email)
    return Message(detail="If this address has an account, a reset link is on its way to it.")


@router.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(400, 422))
async def confirm_password_reset(
    data: PasswordResetConfirm,
    database: DatabaseDep,
    cache: CacheDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    limiter: RateLimiterDep,
) -> None:
    """Set a new password with the token from the reset link; every session ends, and so does a lock."""
    await account_service.confirm_reset(
        database=database,
        cache=cache,
        settings=settings,
        dispatcher=dispatcher,
        limiter=limiter,
        token=data.token,
        new_password=data.new_password,
        confirm_password=data.confirm_password,
    )


CODE_SENT = "If this address has an account, a sign-in code is on its way to it."


@router.post(
    "/email-code/request",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Message,
    responses=problem_responses(422, 429),
    dependencies=[EmailCodeRateLimit],
)
async def request_email_code(
    data: EmailCodeRequest, database: DatabaseDep, settings: SettingsDep, dispatcher: DispatcherDep
) -> Message:
    """Email a sign-in code (8 digits, and a link to the web app that carries it).

    The answer is the same whether or not the address has an account. The code works once, for 10
    minutes and at most 5 tries; a new request replaces the unused ones. Counted like the other
    email requests: per client, and per address (3 emails an hour, shared with the other emails).
    """
    await email_code_service.request(database=database, settings=settings, dispatcher=dispatcher, email=data.email)
    return Message(detail=CODE_SENT)


@router.post(
    "/email-code/verify",
    response_model=EmailCodeTokenPair,
    responses={
        **problem_responses(400, 422, 429),
        **first_factor_responses(),
        **sets_cookie(200, "The refresh cookie"),
    },
)
async def verify_email_code(
    tried: EmailCodeAttempt,
    request: Request,
    response: Response,
    database: DatabaseDep,
    cache: CacheDep,
    settings: SettingsDep,
    ip: ClientIP,
    web: WebClient,
    dispatcher: DispatcherDep,
    limiter: RateLimiterDep,
) -> TokenPair:
    """Sign in with an emailed code (`{email, code}`); opens a session and returns its tokens.

    400 `invalid_code` alike for an address with no account and for a wrong, expired or used code
    (the sixth try of a code is refused even when right). Each try counts against the sign-in
    limits of the client and of the account, as a password does (429). A right code also confirms
    the address. An account with a second factor gets 403 `mfa_required`, as after a password.

    With `X-Keel-Client: web` and this service's own `Origin`, the refresh token is set as the
    `keel_refresh` cookie instead of being returned, as at `/auth/login`.

    `password_removed: true` when the code claimed an account whose address was never confirmed:
    the password its registrant set no longer works.
    """
    if web.opted_in:
        web.require_same_origin()
    signed_in = await email_code_service.verify(
        database=database,
        cache=cache,
        settings=settings,
        dispatcher=dispatcher,
        limiter=limiter,
        attempt=tried.attempt,
        email=tried.email,
        code=tried.code,
        user_agent=request.headers.get("user-agent"),
        ip=ip,
    )
    no_store(response)
    issued = signed_in.issued
    pair = web.hand_over(response, issued) if web.opted_in else issued.pair
    return EmailCodeTokenPair(**pair.model_dump(), password_removed=signed_in.password_removed)
