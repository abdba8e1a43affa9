"""Dependency aliases: one ``Annotated`` name per dependency, used as ``user: CurrentUser``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Form, Header, Path, Query, Request, Response
from fastapi.security import OAuth2PasswordBearer
from redis.asyncio import Redis

from keel.core.client_ip import limit_key, resolve_client_ip
from keel.core.conditional import IfMatch
from keel.core.config import Settings
from keel.core.db import Database
from keel.core.errors import (
    CsrfRejected,
    EmailNotVerified,
    Forbidden,
    InsufficientScope,
    InvalidToken,
    KeelError,
    MfaEnrollmentRequired,
    PersonalTokenNotAllowed,
    RateLimited,
    SessionRevoked,
    TokenExpired,
    Unauthorized,
)
from keel.core.lockout import PasswordAttempt
from keel.core.logging import get_logger
from keel.core.personal_token import Scope, is_personal_token, token_hash
from keel.core.ratelimit import RateLimiter, Rule, account_key, digest
from keel.core.security import TokenError, decode_access_token
from keel.core.session_cache import SessionCache
from keel.http.rate_limit_fields import CountsTowardsRateLimits
from keel.http.web_session import (
    REFRESH_COOKIE,
    WEB_CLIENT_HEADER,
    WEB_CLIENT_VALUE,
    device_cookie,
    expired_refresh_cookie,
    is_same_origin,
    needs_secure,
    refresh_cookie,
)
from keel.models import MemberRole
from keel.schemas.auth import EmailCodeVerify, RefreshRequest, TokenPair
from keel.schemas.common import NO_NUL
from keel.services import auth as auth_service
from keel.services import event_stream, signin
from keel.services import list as list_service
from keel.services import personal_token as personal_token_service
from keel.services import session as session_service
from keel.services.auth import PresentedToken
from keel.services.event_stream import LiveUpdates
from keel.services.event_tickets import StreamCredential
from keel.services.outbox import Dispatcher
from keel.services.session import Principal
from keel.services.signin import IssuedTokens

LOGIN_PATH = "/api/v1/auth/login"

log = get_logger("keel.auth")


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _session_cache(request: Request) -> SessionCache | None:
    cache: SessionCache | None = request.app.state.session_cache
    return cache


async def _dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


SettingsDep = Annotated[Settings, Depends(_settings)]
DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]


async def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


# The one database dependency a route takes. The service it calls decides how to use it: prebuilt
# statements (`rows`, `first`, `transaction`) or an ORM session of its own (`database.session()`),
# held only while that service works. A plain dependency, cheaper to resolve than a generator.
DatabaseDep = Annotated[Database, Depends(_database)]
CacheDep = Annotated[SessionCache | None, Depends(_session_cache)]


async def _redis(request: Request) -> Redis | None:
    redis: Redis | None = request.app.state.redis
    return redis


# The shared Redis client, or None where KEEL_REDIS_URL is not set.
RedisDep = Annotated[Redis | None, Depends(_redis)]


# --- personal access tokens: what each route family lets one do -----------------------------------
# Where a family's TokenScopes puts the scope this request needs, for the bearer scheme to check.
_REQUIRED_SCOPE = "keel_required_scope"
_READ_METHODS = frozenset({"GET", "HEAD"})


class TokenScopes:
    """A route family's one declaration of what a personal access token needs there.

    Given to the family's router as `dependencies=[...]`, so it runs before the route's own
    dependencies. A request that sends no personal access token passes untouched. One that does is
    refused (403 `personal_token_not_allowed`) where the family admits none, before the token is even
    looked up; elsewhere the bearer scheme checks, once it has the token's scopes, that they hold the
    one named here for the method (`read` for GET and HEAD, `write` for the rest), else 403
    `insufficient_scope`. A route of a family that declares nothing refuses every such token.
    """

    def __init__(
        self, *, read: Scope | tuple[Scope, ...] | None = None, write: Scope | tuple[Scope, ...] | None = None
    ) -> None:
        # A tuple: any one of its scopes will do (the first is the one a refusal names).
        self.read = read
        self.write = write

    def scope_for(self, method: str) -> Scope | tuple[Scope, ...] | None:
        return self.read if method in _READ_METHODS else self.write

    async def __call__(self, request: Request) -> None:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not is_personal_token(credential.strip()):
            return
        scope = self.scope_for(request.method)
        if scope is None:
            raise PersonalTokenNotAllowed
        setattr(request.state, _REQUIRED_SCOPE, scope)


# The families' declarations; each router takes one of them (see keel.routes).
TODOS_SCOPES = Depends(TokenScopes(read=Scope.TODOS_READ, write=Scope.TODOS_WRITE))
POSTS_SCOPES = Depends(TokenScopes(read=Scope.POSTS_READ, write=Scope.POSTS_WRITE))
LISTS_SCOPES = Depends(TokenScopes(read=Scope.LISTS_READ, write=Scope.LISTS_WRITE))
# Live updates carry todos and lists, and change nothing: either read scope opens a stream or a ticket.
EVENTS_SCOPES = Depends(
    TokenScopes(read=(Scope.TODOS_READ, Scope.LISTS_READ), write=(Scope.TODOS_READ, Scope.LISTS_READ))
)
# The profile can be read; every account change (PATCH and DELETE /users/me) refuses tokens.
USERS_SCOPES = Depends(TokenScopes(read=Scope.PROFILE_READ))
# /auth/* (sessions, passwords, second factors, passkeys, identities), /tokens and /admin/*.
NO_PERSONAL_TOKENS = Depends(TokenScopes())


def _check_scope(request: Request, principal: Principal) -> None:
    scope: Scope | tuple[Scope, ...] | None = getattr(request.state, _REQUIRED_SCOPE, None)
    if scope is None:  # deny by default: this route's family declared no scope
        raise PersonalTokenNotAllowed
    assert principal.scopes is not None
    accepted = scope if isinstance(scope, tuple) else (scope,)
    if not any(one in principal.scopes for one in accepted):
        raise InsufficientScope(accepted[0])


class _BearerAuth(OAuth2PasswordBearer):
    """The OAuth2 password flow's bearer token, authenticated: yields the principal it belongs to.

    One dependency rather than a token dependency under an authentication one: FastAPI solves
    every level of a dependency tree again for each dependency that uses it, and this runs on
    nearly every request. Being the security scheme itself, it still documents the flow (and
    /docs' Authorize button) under the scheme name FastAPI gives it by default.

    Each instance is solved once per request, so a route authenticates once as long as it and any
    dependency of its own name the same one (`CurrentUser`, or `WritingUser` on a route that writes).
    """

    counts_writes = False

    def __init__(self, *, optional: bool = False) -> None:
        super().__init__(tokenUrl=LOGIN_PATH, scheme_name="OAuth2PasswordBearer", auto_error=False)
        self.optional = optional

    async def __call__(self, request: Request) -> Principal | None:  # type: ignore[override]
        token = await super().__call__(request)
        if not token:
            if self.optional:  # anonymous is fine; a token that is presented must still be valid
                return None
            raise Unauthorized
        # Reads the app's state directly rather than through dependencies: this runs on every request.
        state = request.app.state
        if is_personal_token(token):
            principal = await personal_token_service.authenticate(
                database=state.database, cache=state.session_cache, token=token
            )
            request.state.user_id = principal.user_id
            _check_scope(request, principal)
            if self.counts_writes:  # the same write limit as the user's sessions
                await state.rate_limiter.hit("writes", str(principal.user_id))
            return principal
        try:
            claims = decode_access_token(state.settings, token)
        except TokenError as exc:
            raise (TokenExpired() if exc.expired else InvalidToken()) from None
        try:
            principal = await session_service.authenticate(
                database=state.database,
                cache=state.session_cache,
                claims=claims,
                writes=state.rate_limiter if self.counts_writes else None,
            )
        except RateLimited:
            request.state.user_id = claims.user_id  # the session is live; the write limit is used up
            raise
        request.state.user_id = principal.user_id  # for the access log
        return principal


class _WritingBearerAuth(_BearerAuth, CountsTowardsRateLimits):
    """The bearer scheme that also counts the request against the caller's write limit, in the
    session check's own Redis round trip where it can (see `session_service.authenticate`)."""

    counts_writes = True


CurrentUser = Annotated[Principal, Depends(_BearerAuth())]
OptionalUser = Annotated[Principal | None, Depends(_BearerAuth(optional=True))]
# For a route that writes: the caller, counted against their write limit (429 when it is used up).
# It replaces CurrentUser there, in the route and in the lookups it uses, rather than joining it.
WritingUser = Annotated[Principal, Depends(_WritingBearerAuth())]
# For a route that takes OptionalUser: its OpenAPI security then admits anonymous callers (`{}`).
ANONYMOUS_ALLOWED: dict[str, Any] = {"security": [{}]}


async def _verified_user(user: CurrentUser) -> Principal:
    if not user.is_verified:
        raise EmailNotVerified
    return user


async def _admin_user(user: CurrentUser, database: DatabaseDep, settings: SettingsDep) -> Principal:
    if not user.is_admin:
        raise Forbidden("This requires the admin role.")
    if settings.require_mfa_for_admins and not await signin.has_second_factor(database=database, user_id=user.user_id):
        raise MfaEnrollmentRequired
    return user


async def _recent(user: Principal, database: Database, settings: Settings) -> Principal:
    await session_service.require_recent_authentication(
        database=database, principal=user, within_seconds=settings.reauthentication_seconds
    )
    return user


async def _recently_authenticated(user: CurrentUser, database: DatabaseDep, settings: SettingsDep) -> Principal:
    return await _recent(user, database, settings)


async def _recently_authenticated_admin(user: AdminUser, database: DatabaseDep, settings: SettingsDep) -> Principal:
    return await _recent(user, database, settings)


async def _recently_authenticated_writer(user: WritingUser, database: DatabaseDep, settings: SettingsDep) -> Principal:
    return await _recent(user, database, settings)


VerifiedUser = Annotated[Principal, Depends(_verified_user)]
AdminUser = Annotated[Principal, Depends(_admin_user)]
# For sensitive operations: signed in, or confirmed at /auth/reauthenticate, within the last
# `reauthentication_seconds` (10 minutes); else 403 `reauthentication_required`.
RecentlyAuthenticatedUser = Annotated[Principal, Depends(_recently_authenticated)]
# The same, for an admin's sensitive operation (removing someone's second factors).
RecentlyAuthenticatedAdmin = Annotated[Principal, Depends(_recently_authenticated_admin)]
# The same, for a write that counts against the caller's write limit (see WritingUser).
RecentlyAuthenticatedWriter = Annotated[Principal, Depends(_recently_authenticated_writer)]


@dataclass(frozen=True, slots=True)
class LoginForm:
    username: str
    password: str


async def _login_form(
    username: Annotated[str, Form(max_length=254, pattern=NO_NUL, description="Your email address.")],
    password: Annotated[str, Form(max_length=1024, json_schema_extra={"format": "password"})],
    grant_type: Annotated[str | None, Form(max_length=8, pattern="^password$")] = None,
    scope: Annotated[str, Form(max_length=1024)] = "",
    client_id: Annotated[str | None, Form(max_length=256)] = None,
    client_secret: Annotated[str | None, Form(max_length=256, json_schema_extra={"format": "password"})] = None,
) -> LoginForm:
    """The OAuth2 password grant form (what /docs' Authorize button sends), with bounded fields."""
    return LoginForm(username=username, password=password)


LoginFormDep = Annotated[LoginForm, Depends(_login_form)]


async def client_ip(request: Request, settings: SettingsDep) -> str | None:
    """The socket peer, or the client a trusted proxy (KEEL_TRUSTED_PROXIES) forwarded for."""
    peer = request.client.host if request.client else None
    return resolve_client_ip(peer, request.headers.getlist("x-forwarded-for"), settings.trusted_proxies)


ClientIP = Annotated[str | None, Depends(client_ip)]


async def _client_limit_key(ip: ClientIP) -> str:
    return limit_key(ip)


# Who per-address rate limits count (an IPv6 client by its /64).
ClientLimitKey = Annotated[str, Depends(_client_limit_key)]


# --- the web client's refresh cookie (see keel.http.web_session) -----------------------------------
@dataclass(frozen=True, slots=True)
class WebClientContext:
    """What cookie mode needs from a request: the opt-in, the refresh cookie, and where it comes from."""

    opted_in: bool
    refresh_cookie: str | None
    same_origin: bool
    secure: bool
    origin: str | None

    def require_same_origin(self) -> None:
        """Refuse (403) a request that would act with the cookie but may have been forged cross-site."""
        if not (self.opted_in and self.same_origin):
            log.info("csrf_rejected", opted_in=self.opted_in, origin=(self.origin or "")[:200] or None)
            raise CsrfRejected

    def hand_over(self, response: Response, issued: IssuedTokens) -> TokenPair:
        """Set the new refresh token as the cookie and leave it out of the body that scripts can read."""
        token = issued.pair.refresh_token
        assert token is not None
        response.headers.append(
            "Set-Cookie", refresh_cookie(token, max_age=issued.refresh_expires_in, secure=self.secure)
        )
        if issued.device_cookie is not None:
            response.headers.append("Set-Cookie", device_cookie(issued.device_cookie, secure=self.secure))
        return issued.pair.model_copy(update={"refresh_token": None})

    def clear_cookie(self, response: Response) -> None:
        response.headers.append("Set-Cookie", expired_refresh_cookie(secure=self.secure))

    def clear_cookie_on(self, error: KeelError) -> None:
        """Make a problem response also drop the cookie (it goes through the one error handler)."""
        error.headers["Set-Cookie"] = expired_refresh_cookie(secure=self.secure)


async def _web_client(request: Request, settings: SettingsDep) -> WebClientContext:
    origin = request.headers.get("origin")
    return WebClientContext(
        opted_in=request.headers.get(WEB_CLIENT_HEADER) == WEB_CLIENT_VALUE,
        refresh_cookie=request.cookies.get(REFRESH_COOKIE),
        same_origin=is_same_origin(origin, request_url=str(request.url), public_url=settings.public_url),
        secure=needs_secure(request_scheme=request.scope["scheme"], public_url=settings.public_url),
        origin=origin,
    )


WebClient = Annotated[WebClientContext, Depends(_web_client)]


# --- rate limits (see keel.core.ratelimit); used as `dependencies=[RegisterRateLimit]` -----------
# Each counting dependency is a CountsTowardsRateLimits, so the schema declares the RateLimit fields
# on the operations that use it.
async def _rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


RateLimiterDep = Annotated[RateLimiter, Depends(_rate_limiter)]


class _PerClientIP(CountsTowardsRateLimits):
    """Count the request against a rule, keyed by the client's address."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule

    async def __call__(self, limiter: RateLimiterDep, client: ClientLimitKey) -> None:
        await limiter.hit(self.rule, client)


class _LoginAttempt(CountsTowardsRateLimits):
    async def __call__(self, form: LoginFormDep, limiter: RateLimiterDep, client: ClientLimitKey) -> PasswordAttempt:
        # Runs before any lookup or hashing and keys by the email as typed, so an address with no
        # account is limited exactly like one with an account: a 429 reveals nothing. The account's
        # lock and the two windows are one script call.
        windows: list[tuple[Rule, list[str]]] = [
            ("login_ip", [client]),
            ("login", [digest(form.username.strip().lower()), client]),
        ]
        return await limiter.password_attempt(account_key(form.username), windows)


@dataclass(frozen=True, slots=True)
class EmailCodeTry:
    """A try of an emailed sign-in code, already counted like a password sign-in."""

    email: str
    code: str
    attempt: PasswordAttempt


class _EmailCodeTry(CountsTowardsRateLimits):
    async def __call__(self, data: EmailCodeVerify, limiter: RateLimiterDep, client: ClientLimitKey) -> EmailCodeTry:
        # A code is a secret like a password: tried against the same windows and the same account
        # count, before any lookup, keyed by the address as typed (an address with no account alike).
        windows: list[tuple[Rule, list[str]]] = [
            ("login_ip", [client]),
            ("login", [digest(data.email.strip().lower()), client]),
        ]
        attempt = await limiter.password_attempt(account_key(data.email), windows)
        return EmailCodeTry(email=data.email, code=data.code.replace(" ", ""), attempt=attempt)


@dataclass(frozen=True, slots=True)
class PresentedRefresh:
    """The refresh token a request presents, decided once: the body's, else the web cookie's."""

    token: PresentedToken | None  # None: the request presents neither
    from_cookie: bool


async def _presented_refresh(web: WebClient, data: RefreshRequest | None = None) -> PresentedRefresh:
    """The body's `refresh_token`, else the `keel_refresh` cookie, which only a same-origin web app may use."""
    if data is not None and data.refresh_token is not None:
        return PresentedRefresh(PresentedToken.of(data.refresh_token), from_cookie=False)
    if web.refresh_cookie is None:
        return PresentedRefresh(None, from_cookie=False)
    web.require_same_origin()  # 403 csrf_rejected: the cookie could have been sent by a forged request
    return PresentedRefresh(PresentedToken.of(web.refresh_cookie), from_cookie=True)


# The rate limit and the route read the same one (FastAPI solves a dependency once per request).
PresentedRefreshToken = Annotated[PresentedRefresh, Depends(_presented_refresh)]


class _PerRefreshSession(CountsTowardsRateLimits):
    """How a refresh is counted: per session, so a client stuck in a refresh loop is stopped although
    every rotation brings a new token, and a token of no session against the client's address. The
    refresh counts itself (`auth_service.refresh`), once its consume has named the session."""

    async def __call__(self, limiter: RateLimiterDep, client: ClientLimitKey) -> auth_service.CountRefresh:
        async def count(session_id: str | None) -> None:
            if not limiter.enabled:
                return
            if session_id is None:
                await limiter.hit("refresh", "ip", client)
            else:
                await limiter.hit("refresh", "session", session_id)

        return count


RefreshRateLimit = Annotated[auth_service.CountRefresh, Depends(_PerRefreshSession())]
# The sign-in's rate limits, and its password check counted against the account (keel.core.lockout).
LoginAttempt = Annotated[PasswordAttempt, Depends(_LoginAttempt())]
RegisterRateLimit = Depends(_PerClientIP("register"))
VerifyEmailRateLimit = Depends(_PerClientIP("verify_email"))
PasswordResetRateLimit = Depends(_PerClientIP("password_reset"))
PasswordCheckRateLimit = Depends(_PerClientIP("password_check"))
# Requests for a sign-in code are email requests like a reset's: counted in the same rule.
EmailCodeRateLimit = Depends(_PerClientIP("password_reset"))
# A try of an emailed code, counted against the client's and the account's sign-ins.
EmailCodeAttempt = Annotated[EmailCodeTry, Depends(_EmailCodeTry())]
# A passkey sign-in names no account before it is verified: it counts against the address's sign-ins.
PasskeySignInRateLimit = Depends(_PerClientIP("login_ip"))
# A provider's callback opens a session: it counts against the address's sign-ins too.
ProviderSignInRateLimit = Depends(_PerClientIP("login_ip"))
# What starts a sign-in (a provider's authorize redirect, linking an identity, a passkey challenge).
SignInStartRateLimit = Depends(_PerClientIP("sign_in_start"))


class _SignInStartWait(CountsTowardsRateLimits):
    """The `sign_in_start` count for a route a browser navigates to, which answers a refusal with a
    page, not a 429: None when counted, else the refusal's headers (`Retry-After`)."""

    async def __call__(self, limiter: RateLimiterDep, client: ClientLimitKey) -> dict[str, str] | None:
        try:
            await limiter.hit("sign_in_start", client)
        except RateLimited as refused:
            return dict(refused.headers or {})
        return None


SignInStartRefusal = Annotated[dict[str, str] | None, Depends(_SignInStartWait())]


# --- Idempotency-Key on creates (see keel.services.idempotency) -------------------------------------
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[!-~]+$",  # printable ASCII, no spaces
        description=(
            "Optional. Send the same key with the same body again within 24 hours and the first "
            "answer is replayed (with `Idempotent-Replayed: true`) instead of creating a second item; "
            "the same key with a different body gets 422 `idempotency_key_reused`. Keys are per user."
        ),
    ),
]


# --- conditional requests (see keel.core.conditional) -----------------------------------------------
# RFC 9110's `"*" / #entity-tag`: a list of quoted tags (weak ones marked `W/`), or `*`. Empty is an
# empty list, which names no tag.
_ETAG_LIST = r'^(\*|(W/)?"[!#-~]*"( *, *(W/)?"[!#-~]*")*)?$'  # (a field value has no outer spaces)

IfNoneMatch = Annotated[
    str | None,
    Header(
        alias="If-None-Match",
        max_length=2048,
        pattern=_ETAG_LIST,
        description="An `ETag` this client has (or `*`): if it is still current, the answer is 304 with no body.",
    ),
]


async def _if_match(
    header: Annotated[
        str | None,
        Header(
            alias="If-Match",
            max_length=2048,
            pattern=_ETAG_LIST,
            description=(
                "The `ETag` this client read (or `*`): the change is made only if the item is still exactly "
                "that, else 412 `precondition_failed` and nothing changes. Without it, the last write wins."
            ),
        ),
    ] = None,
) -> IfMatch | None:
    return IfMatch.of(header)


IfMatchDep = Annotated[IfMatch | None, Depends(_if_match)]


# --- ids in paths, and the lookups that check who may see what ------------------------------------
def _id_param(description: str) -> Any:
    return Path(ge=1, le=2**31 - 1, description=description)


UserId = Annotated[int, _id_param("A user id.")]
SessionId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]{1,64}$", description="A session id.")]
TodoId = Annotated[int, _id_param("A todo id.")]
PostId = Annotated[int, _id_param("A post id.")]
CommentId = Annotated[int, _id_param("A comment id.")]
PasskeyId = Annotated[int, _id_param("A passkey id.")]
IdentityId = Annotated[int, _id_param("A linked identity's id.")]
AccessTokenId = Annotated[int, _id_param("A personal access token's id.")]
ListId = Annotated[int, _id_param("A list id.")]
MemberId = Annotated[int, _id_param("A member's user id.")]


# --- a shared list's members: who may do what (see keel.services.list) -------------------------------
@dataclass(frozen=True, slots=True)
class ListAccess:
    """The caller's membership of the list in the path: found by their own user id, so a list
    they are not a member of is a 404 `list_not_found` before the route runs."""

    list_id: int
    user_id: int
    role: MemberRole


async def _list_member(list_id: ListId, user: CurrentUser, database: DatabaseDep) -> ListAccess:
    role = await list_service.role_of(database=database, user_id=user.user_id, list_id=list_id)
    return ListAccess(list_id=list_id, user_id=user.user_id, role=role)


async def _list_member_writing(list_id: ListId, user: WritingUser, database: DatabaseDep) -> ListAccess:
    role = await list_service.role_of(database=database, user_id=user.user_id, list_id=list_id)
    return ListAccess(list_id=list_id, user_id=user.user_id, role=role)


async def _list_owner(access: Annotated[ListAccess, Depends(_list_member_writing)]) -> ListAccess:
    list_service.require_owner(access.role)  # 403 forbidden for editors and viewers
    return access


# Any member (a read).
ListMemberAccess = Annotated[ListAccess, Depends(_list_member)]
# Any member, for a write that decides itself what the role allows (a member leaving); counted
# against the caller's write limit.
ListMemberWriting = Annotated[ListAccess, Depends(_list_member_writing)]
# The list's owner (a write: counted against the caller's write limit).
ListOwnerAccess = Annotated[ListAccess, Depends(_list_owner)]


# --- live updates (see keel.services.event_stream) -------------------------------------------------
async def _live_updates(request: Request) -> LiveUpdates:
    live: LiveUpdates = request.app.state.live_updates
    return live


LiveUpdatesDep = Annotated[LiveUpdates, Depends(_live_updates)]


def _bearer_credential(request: Request, principal: Principal) -> StreamCredential:
    if principal.token_id is None:
        return StreamCredential(principal.user_id, session_id=principal.session_id)
    presented = request.headers.get("authorization", "").partition(" ")[2].strip()
    return StreamCredential(principal.user_id, token_digest=token_hash(presented))


async def _ticket_holder(request: Request, user: WritingUser) -> StreamCredential:
    return _bearer_credential(request, user)


async def _stream_caller(
    request: Request,
    user: OptionalUser,
    live: LiveUpdatesDep,
    database: DatabaseDep,
    cache: CacheDep,
    ticket: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            pattern=NO_NUL,
            description="A ticket from POST /api/v1/events/ticket, for clients that cannot send headers.",
        ),
    ] = None,
) -> StreamCredential:
    if user is not None:
        return _bearer_credential(request, user)
    if ticket is None:
        raise Unauthorized
    credential = await live.tickets.redeem(ticket)
    if not await event_stream.credential_is_live(credential, database=database, cache=cache):
        raise SessionRevoked  # revoked in the seconds since the ticket was handed out
    return credential


# Who asks for a ticket (a bearer token; counted against their write limit) ...
TicketHolder = Annotated[StreamCredential, Depends(_ticket_holder)]
# ... and who opens a stream: a bearer token, or a ticket redeemed here.
StreamCaller = Annotated[StreamCredential, Depends(_stream_caller)]


Limit = Annotated[int, Query(ge=1, le=100, description="Page size (1-100).")]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1, description="Items to skip.")]
SearchTerm = Annotated[
    str | None,
    Query(min_length=1, max_length=200, pattern=NO_NUL, description="Case-insensitive substring to look for."),
]
