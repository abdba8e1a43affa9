"""Sign in with another provider (OpenID Connect, Google, GitHub) and manage linked identities."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import Depends, Path, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from keel.core.errors import MfaRequired, ProviderUnavailable, RateLimited
from keel.core.oidc import OidcClient
from keel.deps import (
    NO_PERSONAL_TOKENS,
    CacheDep,
    ClientIP,
    CurrentUser,
    DatabaseDep,
    DispatcherDep,
    IdentityId,
    ProviderSignInRateLimit,
    RecentlyAuthenticatedUser,
    SettingsDep,
    SignInStartRateLimit,
    SignInStartRefusal,
    WebClient,
)
from keel.http.web_session import device_cookie, needs_secure, refresh_cookie
from keel.routes import API_PREFIX, PrefixedRouter
from keel.schemas.common import problem_responses
from keel.schemas.identity import AuthorizeUrl, IdentityLinkConfirm, IdentityRead, ProviderRead
from keel.services import identity as identity_service
from keel.services.signin import Client

router = PrefixedRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"], dependencies=[NO_PERSONAL_TOKENS])

# The browser's half of a provider flow: SameSite=Lax, so the provider's redirect back (a
# top-level GET from another site) carries it; only the callbacks receive it.
FLOW_COOKIE = "keel_oidc"
FLOW_COOKIE_PATH = f"{API_PREFIX}/auth/oidc"
# Where the web UI shows the outcome of a provider flow.
SIGNIN_ERROR_PAGE = "/signin"
ACCOUNT_ERROR_PAGE = "/account"
MFA_PAGE = "/signin/mfa"

ProviderPath = Annotated[
    str, Path(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="A provider id.")
]
NextPath = Annotated[
    str | None,
    Query(
        max_length=identity_service.NEXT_MAX_LENGTH,
        pattern=identity_service.NEXT_PATTERN,
        description="Where in the web app to land afterwards: a path of this app (`/...`), never another site.",
    ),
]


async def _oidc(request: Request) -> OidcClient:
    oidc: OidcClient = request.app.state.oidc
    return oidc


OidcDep = Annotated[OidcClient, Depends(_oidc)]


def _flow_cookie(value: str, *, max_age: int, secure: bool) -> str:
    parts = [f"{FLOW_COOKIE}={value}", f"Path={FLOW_COOKIE_PATH}", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def _no_store(response: Response) -> None:
    response.headers["Cache-Control"] = "no-store"


REDIRECT_HEADERS = {"Location": {"description": "Where the browser goes next.", "schema": {"type": "string"}}}


@router.get("/providers", response_model=list[ProviderRead])
async def list_providers(oidc: OidcDep) -> list[ProviderRead]:
    """The other providers one can sign in with here (none unless configured)."""
    return [ProviderRead(id=provider.id, name=provider.name) for provider in oidc.providers.values()]


@router.get(
    "/oidc/{provider}/authorize",
    status_code=status.HTTP_302_FOUND,
    response_class=RedirectResponse,
    responses={
        302: {
            "description": "To the provider's sign-in page; sets the flow's short-lived `keel_oidc` cookie.",
            "headers": {**REDIRECT_HEADERS, "Set-Cookie": {"schema": {"type": "string"}}},
        },
        303: {
            "description": (
                "The provider could not be reached (`/signin?error=provider_unavailable`), or the client "
                "address started too many sign-ins (`/signin?error=rate_limited`)."
            ),
            "headers": REDIRECT_HEADERS,
        },
        **problem_responses(404, 422),
    },
)
async def oidc_authorize(
    provider: ProviderPath,
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    oidc: OidcDep,
    refusal: SignInStartRefusal,
    next: NextPath = None,
) -> RedirectResponse:
    """Start signing in with a provider (authorization code with PKCE): a browser navigates here.

    A browser gets a page, not JSON: a provider that cannot be reached (its discovery document)
    sends it to `/signin?error=provider_unavailable` (303), and a client address over its
    `sign_in_start` limit to `/signin?error=rate_limited` (303, with `Retry-After`). An unknown
    provider is a 404 and an unsafe `next` a 422: no link of the web UI leads there.
    """
    if refusal is not None:
        response = RedirectResponse(
            f"{SIGNIN_ERROR_PAGE}?error={RateLimited.code}", status_code=status.HTTP_303_SEE_OTHER, headers=refusal
        )
        _no_store(response)
        return response
    try:
        started = await identity_service.begin(
            database=database, settings=settings, oidc=oidc, provider_id=provider, next_path=next
        )
    except ProviderUnavailable:
        response = RedirectResponse(
            f"{SIGNIN_ERROR_PAGE}?error={ProviderUnavailable.code}", status_code=status.HTTP_303_SEE_OTHER
        )
        _no_store(response)
        return response
    response = RedirectResponse(started.authorize_url, status_code=status.HTTP_302_FOUND)
    secure = needs_secure(request_scheme=request.scope["scheme"], public_url=settings.public_url)
    response.headers.append(
        "Set-Cookie", _flow_cookie(started.browser_value, max_age=settings.oidc_flow_ttl_seconds, secure=secure)
    )
    _no_store(response)
    return response


@router.get(
    "/oidc/{provider}/callback",
    status_code=status.HTTP_302_FOUND,
    response_class=RedirectResponse,
    responses={
        302: {
            "description": "Signed in: into the web app (`next`), the refresh token set as the `keel_refresh` cookie.",
            "headers": {**REDIRECT_HEADERS, "Set-Cookie": {"schema": {"type": "string"}}},
        },
        303: {
            "description": (
                "Not signed in: to `/signin?error=<code>` (a link flow: `/account?error=<code>`), or, for an "
                "account with a second factor, to `/signin/mfa#mfa_token=...&methods=...` (in the fragment, "
                "which never reaches a server)."
            ),
            "headers": {**REDIRECT_HEADERS, "Set-Cookie": {"schema": {"type": "string"}}},
        },
        **problem_responses(429),
    },
    dependencies=[ProviderSignInRateLimit],
)
async def oidc_callback(
    provider: ProviderPath,
    request: Request,
    database: DatabaseDep,
    cache: CacheDep,
    settings: SettingsDep,
    oidc: OidcDep,
    dispatcher: DispatcherDep,
    web: WebClient,
    ip: ClientIP,
    code: Annotated[
        str | None,
        # Declared, not enforced as a 422: a longer value is a browser sent back with a broken
        # flow, and gets the same redirect as any other failed one (`state_mismatch`).
        Query(
            description=f"At most {identity_service.MAX_CODE_LENGTH} characters.",
            json_schema_extra={"maxLength": identity_service.MAX_CODE_LENGTH},
        ),
    ] = None,
    state: Annotated[
        str | None,
        # Declared, not enforced as a 422: a longer value is a browser sent back with a broken
        # flow, and gets the same redirect as any other failed one (`state_mismatch`).
        Query(
            description=f"At most {identity_service.MAX_STATE_LENGTH} characters.",
            json_schema_extra={"maxLength": identity_service.MAX_STATE_LENGTH},
        ),
    ] = None,
    error: Annotated[
        str | None,
        # Declared, not enforced as a 422: a longer value is a browser sent back with a broken
        # flow, and gets the same redirect as any other failed one (`state_mismatch`).
        Query(
            description=f"At most {identity_service.MAX_ERROR_LENGTH} characters.",
            json_schema_extra={"maxLength": identity_service.MAX_ERROR_LENGTH},
        ),
    ] = None,
) -> RedirectResponse:
    """Where the provider sends the browser back. Never answers with tokens: only the refresh cookie.

    Answers only with redirects (a browser is here): an oversize `code`, `state` or `error` is
    a `state_mismatch`, not a 422.

    Error codes (`/signin?error=<code>`; these names are stable, the web UI maps them to messages):
    `access_denied`, `state_mismatch`, `provider_error`, `invalid_id_token`, `email_missing`
    (no address, or one registration would refuse), `email_not_verified`, `email_taken`,
    `account_inactive`, `link_confirmation_sent` (the owner of the address was mailed a link to
    confirm), and for a link flow `identity_in_use`, `reauthentication_required`. The authorize
    endpoint adds `provider_unavailable` (the provider could not be reached).
    """
    try:
        outcome = await identity_service.complete(
            database=database,
            cache=cache,
            settings=settings,
            oidc=oidc,
            dispatcher=dispatcher,
            provider_id=provider,
            state=state,
            code=code,
            error=error,
            browser_value=request.cookies.get(FLOW_COOKIE),
            client=Client(user_agent=request.headers.get("user-agent"), ip=ip),
        )
    except MfaRequired as exc:
        fragment = urlencode({"mfa_token": exc.mfa_token, "methods": ",".join(exc.methods)}, quote_via=quote)
        response = RedirectResponse(f"{MFA_PAGE}#{fragment}", status_code=status.HTTP_303_SEE_OTHER)
    else:
        if isinstance(outcome, identity_service.SignedIn):
            response = RedirectResponse(outcome.next_path, status_code=status.HTTP_302_FOUND)
            token = outcome.issued.pair.refresh_token
            assert token is not None
            response.headers.append(
                "Set-Cookie", refresh_cookie(token, max_age=outcome.issued.refresh_expires_in, secure=web.secure)
            )
            if outcome.issued.device_cookie is not None:
                response.headers.append("Set-Cookie", device_cookie(outcome.issued.device_cookie, secure=web.secure))
        elif isinstance(outcome, identity_service.Linked):
            response = RedirectResponse(outcome.next_path, status_code=status.HTTP_302_FOUND)
        else:
            page = ACCOUNT_ERROR_PAGE if outcome.link else SIGNIN_ERROR_PAGE
            response = RedirectResponse(f"{page}?error={outcome.code}", status_code=status.HTTP_303_SEE_OTHER)
    response.headers.append("Set-Cookie", _flow_cookie("", max_age=0, secure=web.secure))
    _no_store(response)
    return response


@router.get("/identities", response_model=list[IdentityRead], responses=problem_responses(401))
async def list_identities(user: CurrentUser, database: DatabaseDep) -> list[IdentityRead]:
    """The provider accounts that sign in to this account."""
    rows = await identity_service.list_identities(database=database, user_id=user.user_id)
    return [IdentityRead.model_validate(row) for row in rows]


@router.post(
    "/identities/{provider}/link",
    response_model=AuthorizeUrl,
    responses={
        200: {
            "headers": {"Set-Cookie": {"description": "The flow's `keel_oidc` cookie.", "schema": {"type": "string"}}}
        },
        **problem_responses(401, 403, 404, 422, 429, 503),
    },
    dependencies=[SignInStartRateLimit],
)
async def link_identity(
    provider: ProviderPath,
    user: RecentlyAuthenticatedUser,
    request: Request,
    response: Response,
    database: DatabaseDep,
    settings: SettingsDep,
    oidc: OidcDep,
    next: NextPath = None,
) -> AuthorizeUrl:
    """Start linking a provider account to this one; navigate the browser to `authorize_url`.

    Needs a recent authentication (else 403 `reauthentication_required`), still recent when the
    provider sends the browser back. The flow is bound to this browser by a cookie set here.
    """
    started = await identity_service.begin(
        database=database, settings=settings, oidc=oidc, provider_id=provider, next_path=next, link_for=user
    )
    secure = needs_secure(request_scheme=request.scope["scheme"], public_url=settings.public_url)
    response.headers.append(
        "Set-Cookie", _flow_cookie(started.browser_value, max_age=settings.oidc_flow_ttl_seconds, secure=secure)
    )
    _no_store(response)
    return AuthorizeUrl(authorize_url=started.authorize_url)


@router.post("/identities/confirm", response_model=IdentityRead, responses=problem_responses(400, 422))
async def confirm_identity_link(
    data: IdentityLinkConfirm, database: DatabaseDep, settings: SettingsDep, dispatcher: DispatcherDep
) -> IdentityRead:
    """Confirm, with the token from the mailed link, that a provider account may sign in to yours."""
    row = await identity_service.confirm_link(
        database=database, settings=settings, dispatcher=dispatcher, token=data.token
    )
    return IdentityRead.model_validate(row)


@router.delete(
    "/identities/{identity_id:int}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def unlink_identity(
    identity_id: IdentityId,
    user: RecentlyAuthenticatedUser,
    database: DatabaseDep,
    cache: CacheDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> None:
    """Remove a linked provider account; 409 `last_sign_in_method` if the account would keep no way to sign in.

    Needs a recent authentication (else 403 `reauthentication_required`). The sessions that provider
    account signed in end at once (all but the caller's), and the owner is emailed.
    """
    await identity_service.unlink(
        database=database,
        cache=cache,
        settings=settings,
        dispatcher=dispatcher,
        principal=user,
        identity_id=identity_id,
    )
