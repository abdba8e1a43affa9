from __future__ import annotations

from fastapi import Request, Response, status

from keel.deps import (
    NO_PERSONAL_TOKENS,
    CacheDep,
    ClientIP,
    CurrentUser,
    DatabaseDep,
    DispatcherDep,
    PasskeyId,
    PasskeySignInRateLimit,
    RateLimiterDep,
    RecentlyAuthenticatedUser,
    RedisDep,
    SettingsDep,
    SignInStartRateLimit,
    WebClient,
)
from keel.routes import API_PREFIX, PrefixedRouter
from keel.routes.auth import no_store, sets_cookie
from keel.schemas.auth import TokenPair
from keel.schemas.common import problem_responses
from keel.schemas.passkey import (
    CredentialOptions,
    PasskeyAuthenticate,
    PasskeyAuthenticationOptionsRequest,
    PasskeyRead,
    PasskeyReauthenticate,
    PasskeyRegister,
    PasskeyUpdate,
)
from keel.services import passkey as passkey_service
from keel.services.signin import Client

router = PrefixedRouter(prefix=f"{API_PREFIX}/auth/passkeys", tags=["passkeys"], dependencies=[NO_PERSONAL_TOKENS])
# The ids are `:int` in the paths: else `/register` and `/authenticate` would also match them, and a
# PATCH there would be answered (401, 422) instead of 405.


@router.post("/register/options", response_model=CredentialOptions, responses=problem_responses(401, 403))
async def passkey_registration_options(
    user: RecentlyAuthenticatedUser, response: Response, database: DatabaseDep, redis: RedisDep, settings: SettingsDep
) -> CredentialOptions:
    """Start adding a passkey: `PublicKeyCredentialCreationOptions` for `navigator.credentials.create()`.

    Needs a recent sign-in (else 403 `reauthentication_required`). The challenge is good for one
    answer, from this session, within 5 minutes.
    """
    no_store(response)
    return await passkey_service.registration_options(database=database, redis=redis, settings=settings, principal=user)


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=PasskeyRead,
    responses=problem_responses(400, 401, 422),
)
async def register_passkey(
    data: PasskeyRegister,
    user: CurrentUser,
    database: DatabaseDep,
    redis: RedisDep,
    cache: CacheDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> PasskeyRead:
    """Finish adding a passkey with the browser's answer to the creation options; every other session ends
    and the owner is emailed. Anything that does not verify is 400 `invalid_credential`."""
    passkey = await passkey_service.register(
        database=database,
        redis=redis,
        cache=cache,
        settings=settings,
        dispatcher=dispatcher,
        principal=user,
        credential=data.credential,
        name=data.name,
    )
    return PasskeyRead.model_validate(passkey)


@router.get("", response_model=list[PasskeyRead], responses=problem_responses(401))
async def list_passkeys(user: CurrentUser, database: DatabaseDep) -> list[PasskeyRead]:
    """List the current user's passkeys, oldest first."""
    passkeys = await passkey_service.list_for_owner(database=database, user_id=user.user_id)
    return [PasskeyRead.model_validate(passkey) for passkey in passkeys]


@router.patch("/{passkey_id:int}", response_model=PasskeyRead, responses=problem_responses(401, 404, 422))
async def rename_passkey(
    passkey_id: PasskeyId, data: PasskeyUpdate, user: CurrentUser, database: DatabaseDep
) -> PasskeyRead:
    """Rename one of the current user's passkeys."""
    passkey = await passkey_service.rename(database=database, principal=user, passkey_id=passkey_id, name=data.name)
    return PasskeyRead.model_validate(passkey)


@router.delete(
    "/{passkey_id:int}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(401, 403, 404, 422)
)
async def delete_passkey(
    passkey_id: PasskeyId,
    user: RecentlyAuthenticatedUser,
    database: DatabaseDep,
    cache: CacheDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> None:
    """Remove one of the current user's passkeys; needs a recent sign-in. Every other session ends and
    the owner is emailed."""
    await passkey_service.delete(
        database=database, cache=cache, settings=settings, dispatcher=dispatcher, principal=user, passkey_id=passkey_id
    )


@router.post(
    "/authenticate/options",
    response_model=CredentialOptions,
    responses=problem_responses(400, 401, 422, 429),
    dependencies=[SignInStartRateLimit],
)
async def passkey_authentication_options(
    response: Response,
    database: DatabaseDep,
    redis: RedisDep,
    settings: SettingsDep,
    data: PasskeyAuthenticationOptionsRequest | None = None,
) -> CredentialOptions:
    """Start signing in with a passkey: `PublicKeyCredentialRequestOptions` for `navigator.credentials.get()`.

    Without `mfa_token`, for any passkey of this site (the browser lists the discoverable ones; no
    email is typed). With the `mfa_token` of a 403 `mfa_required`, for that account's passkeys, to
    finish that sign-in (401 `invalid_mfa_token` if it is unknown, used or expired). The challenge is
    good for one answer within 5 minutes. Counted per client address (`sign_in_start`, 429).
    """
    no_store(response)
    return await passkey_service.authentication_options(
        database=database, redis=redis, settings=settings, mfa_token=data.mfa_token if data else None
    )


@router.post(
    "/authenticate",
    response_model=TokenPair,
    responses={
        **problem_responses(400, 401, 403, 422, 429),
        **sets_cookie(200, "The refresh cookie"),
    },
    dependencies=[PasskeySignInRateLimit],
)
async def authenticate_with_passkey(
    data: PasskeyAuthenticate,
    request: Request,
    response: Response,
    database: DatabaseDep,
    redis: RedisDep,
    cache: CacheDep,
    settings: SettingsDep,
    ip: ClientIP,
    web: WebClient,
    limiter: RateLimiterDep,
) -> TokenPair:
    """Sign in with the browser's answer to the request options; returns the session's tokens.

    Without `mfa_token`: a passkey sign-in, complete on its own since the passkey verified its user
    (the session's `amr` is `hwk user mfa`). With it: the second step of that pending sign-in (`amr`
    e.g. `pwd hwk user mfa`); a wrong answer counts against the `mfa_token` as a wrong code does.
    Anything that does not verify is 400 `invalid_credential`. With `X-Keel-Client: web`, as for
    /auth/login: same origin only, and the refresh token is set as the `keel_refresh` cookie.
    """
    if web.opted_in:
        web.require_same_origin()
    if data.mfa_token is None:
        issued = await passkey_service.authenticate(
            database=database,
            redis=redis,
            cache=cache,
            settings=settings,
            credential=data.credential,
            client=Client(user_agent=request.headers.get("user-agent"), ip=ip),
        )
    else:
        issued = await passkey_service.finish_pending(
            database=database,
            redis=redis,
            cache=cache,
            settings=settings,
            limiter=limiter,
            mfa_token=data.mfa_token,
            credential=data.credential,
        )
    no_store(response)
    return web.hand_over(response, issued) if web.opted_in else issued.pair


@router.post(
    "/reauthenticate/options",
    response_model=CredentialOptions,
    responses=problem_responses(401, 404, 422, 429),
    dependencies=[SignInStartRateLimit],
)
async def passkey_reauthentication_options(
    user: CurrentUser, response: Response, database: DatabaseDep, redis: RedisDep, settings: SettingsDep
) -> CredentialOptions:
    """Start proving it is you again with one of your passkeys: request options for this session.

    For an account whose only way in may be a passkey; 404 `passkey_not_found` without one. The
    challenge is good for one answer from this session within 5 minutes.
    """
    no_store(response)
    return await passkey_service.reauthentication_options(
        database=database, redis=redis, settings=settings, principal=user
    )


@router.post(
    "/reauthenticate",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(400, 401, 422, 429),
    dependencies=[PasskeySignInRateLimit],
)
async def reauthenticate_with_passkey(
    data: PasskeyReauthenticate, user: CurrentUser, database: DatabaseDep, redis: RedisDep, settings: SettingsDep
) -> None:
    """Prove it is you again with a passkey (the answer to `/reauthenticate/options`): sensitive
    operations are then allowed for 10 minutes. 400 `invalid_credential` if it does not verify."""
    await passkey_service.reauthenticate(
        database=database, redis=redis, settings=settings, principal=user, credential=data.credential
    )
