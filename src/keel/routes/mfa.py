"""Second factors: authenticator app (TOTP), recovery codes, re-authentication, finishing a sign-in."""

from __future__ import annotations

from fastapi import Response, status

from keel.deps import (
    NO_PERSONAL_TOKENS,
    CacheDep,
    CurrentUser,
    DatabaseDep,
    DispatcherDep,
    RateLimiterDep,
    RecentlyAuthenticatedUser,
    SettingsDep,
    WebClient,
)
from keel.routes import API_PREFIX, PrefixedRouter
from keel.routes.auth import no_store, sets_cookie
from keel.schemas.auth import TokenPair
from keel.schemas.common import problem_responses
from keel.schemas.mfa import (
    CodeProof,
    EmailCodeProof,
    MfaCodeVerify,
    MfaRecoveryCodeVerify,
    MfaStatus,
    MfaVerify,
    PasswordProof,
    Reauthenticate,
    RecoveryCodeProof,
    RecoveryCodes,
    TotpConfirm,
    TotpSetup,
)
from keel.services import mfa as mfa_service

router = PrefixedRouter(prefix=f"{API_PREFIX}/auth", tags=["mfa"], dependencies=[NO_PERSONAL_TOKENS])


@router.get("/mfa", response_model=MfaStatus, responses=problem_responses(401))
async def mfa_status(user: CurrentUser, database: DatabaseDep) -> MfaStatus:
    """Which second factors the account has."""
    return await mfa_service.status(database=database, principal=user)


@router.post("/mfa/totp/setup", response_model=TotpSetup, responses=problem_responses(401, 403, 409))
async def totp_setup(
    user: RecentlyAuthenticatedUser, response: Response, database: DatabaseDep, settings: SettingsDep
) -> TotpSetup:
    """Start setting up an authenticator app: a new secret, as text, URI and QR code.

    Nothing changes for signing in until `/mfa/totp/confirm` proves the app has the secret; starting
    again before that replaces the secret. Needs a recent authentication (403 `reauthentication_required`).
    """
    no_store(response)
    return await mfa_service.totp_setup(database=database, settings=settings, principal=user)


@router.post("/mfa/totp/confirm", response_model=RecoveryCodes, responses=problem_responses(400, 401, 422))
async def totp_confirm(
    data: TotpConfirm,
    user: CurrentUser,
    response: Response,
    database: DatabaseDep,
    cache: CacheDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> RecoveryCodes:
    """Turn the authenticator app on with a code from it; returns ten recovery codes, shown this once.

    Every other session ends, and the owner is emailed. From now on every sign-in asks for a code.
    """
    no_store(response)
    return await mfa_service.totp_confirm(
        database=database, cache=cache, settings=settings, dispatcher=dispatcher, principal=user, code=data.code
    )


@router.delete("/mfa/totp", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(401, 403, 404))
async def totp_disable(
    user: RecentlyAuthenticatedUser,
    database: DatabaseDep,
    cache: CacheDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> None:
    """Remove the authenticator app (recovery codes go too when no passkey is left); other sessions end."""
    await mfa_service.totp_disable(
        database=database, cache=cache, settings=settings, dispatcher=dispatcher, principal=user
    )


@router.post("/mfa/recovery-codes", response_model=RecoveryCodes, responses=problem_responses(401, 403, 409))
async def recovery_codes_regenerate(
    user: RecentlyAuthenticatedUser, response: Response, database: DatabaseDep, settings: SettingsDep
) -> RecoveryCodes:
    """A new set of ten recovery codes, shown this once; the old set stops working.

    409 `mfa_not_enabled` without an authenticator app or a passkey: the codes stand in for one.
    """
    no_store(response)
    return await mfa_service.regenerate_recovery_codes(database=database, settings=settings, principal=user)


@router.post("/reauthenticate", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(400, 401, 422, 429))
async def reauthenticate(
    data: Reauthenticate,
    user: CurrentUser,
    database: DatabaseDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    limiter: RateLimiterDep,
) -> None:
    """Prove again who you are (password, app code, recovery code or emailed code): sensitive operations
    are then allowed for 10 minutes. Wrong answers count against the account's sign-in budget (429 when locked).

    An account without a password (made by a provider, or signing in by code) asks
    `/auth/email-code/request` for a code to its own address and sends it as `email_code`.
    """
    await mfa_service.reauthenticate(
        database=database,
        settings=settings,
        dispatcher=dispatcher,
        limiter=limiter,
        principal=user,
        password=data.password if isinstance(data, PasswordProof) else None,
        code=data.code if isinstance(data, CodeProof) else None,
        recovery_code=data.recovery_code if isinstance(data, RecoveryCodeProof) else None,
        email_code=data.email_code.replace(" ", "") if isinstance(data, EmailCodeProof) else None,
    )


@router.post(
    "/mfa/verify",
    response_model=TokenPair,
    responses={**problem_responses(400, 401, 403, 422, 429), **sets_cookie(200, "The refresh cookie")},
)
async def mfa_verify(
    data: MfaVerify,
    response: Response,
    database: DatabaseDep,
    cache: CacheDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    limiter: RateLimiterDep,
    web: WebClient,
) -> TokenPair:
    """Finish a sign-in that answered 403 `mfa_required`, with an app code or a recovery code.

    The `mfa_token` works once and for 5 minutes; five wrong codes end it (401 `invalid_mfa_token`
    after that). Wrong codes also count against the account's sign-in budget (429 when locked).
    With `X-Keel-Client: web`, as for login, the refresh token is set as the cookie.
    """
    if web.opted_in:
        web.require_same_origin()
    issued = await mfa_service.verify(
        database=database,
        cache=cache,
        settings=settings,
        dispatcher=dispatcher,
        limiter=limiter,
        mfa_token=data.mfa_token,
        code=data.code if isinstance(data, MfaCodeVerify) else None,
        recovery_code=data.recovery_code if isinstance(data, MfaRecoveryCodeVerify) else None,
    )
    no_store(response)
    return web.hand_over(response, issued) if web.opted_in else issued.pair
