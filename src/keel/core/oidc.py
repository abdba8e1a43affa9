"""Signing in with another provider: OpenID Connect (any issuer, Google) and GitHub's OAuth 2.0.

The flow is the authorization code grant with PKCE (S256), `state` and `nonce`; keel.services.identity
keeps them, bound to the browser. This module only talks to providers: it builds the authorization
URL, exchanges the code, and proves who came back:

- OpenID Connect: the ID token's signature is checked against the issuer's JWKS, and its `iss`,
  `aud` (and `azp` when there are several audiences), `exp`, `iat` and `nonce`. The discovery
  document and the JWKS are cached; an unknown key id fetches the JWKS again once (key rotation).
- The client authenticates at the token endpoint as the discovery document's
  `token_endpoint_auth_methods_supported` allows: `client_secret_basic` first, else `client_secret_post`.
- GitHub has no ID token: the account is `/user`'s id, the address its primary one from
  `/user/emails`, verified only if GitHub says so.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import TypeAdapter, ValidationError

from keel.core.config import Settings
from keel.core.logging import get_logger
from keel.schemas.user import Email

log = get_logger("keel.oidc")

GOOGLE_ISSUER = "https://accounts.google.com"
# Asymmetric algorithms only: an HMAC "signature" keyed by the client secret proves nothing here.
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
CACHE_SECONDS = 3600
CLOCK_LEEWAY_SECONDS = 60
HTTP_TIMEOUT_SECONDS = 10.0


class ProviderError(Exception):
    """The provider did not prove who came back. `code` is what the web UI is told."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Provider:
    id: str
    name: str
    kind: Literal["oidc", "github"]
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    issuer: str = ""  # OpenID Connect
    authorize_url: str = ""  # GitHub (OpenID Connect: from discovery)
    token_url: str = ""
    api_url: str = ""


@dataclass(frozen=True, slots=True)
class ProviderAccount:
    """Who the provider says signed in."""

    subject: str
    email: str | None
    email_verified: bool
    username_hint: str | None = None


def configured_providers(settings: Settings) -> dict[str, Provider]:
    """The providers this deployment offers, by id, in the order they are configured; none by default."""
    found: dict[str, Provider] = {}
    if settings.google_client_id and settings.google_client_secret:
        found["google"] = Provider(
            id="google",
            name="Google",
            kind="oidc",
            client_id=settings.google_client_id,
            client_secret=settings.google_client_secret.get_secret_value(),
            scopes=("openid", "email", "profile"),
            issuer=GOOGLE_ISSUER,
        )
    if settings.github_client_id and settings.github_client_secret:
        oauth = settings.github_oauth_url.rstrip("/")
        found["github"] = Provider(
            id="github",
            name="GitHub",
            kind="github",
            client_id=settings.github_client_id,
            client_secret=settings.github_client_secret.get_secret_value(),
            scopes=("read:user", "user:email"),
            authorize_url=f"{oauth}/login/oauth/authorize",
            token_url=f"{oauth}/login/oauth/access_token",
            api_url=settings.github_api_url.rstrip("/"),
        )
    for entry in settings.oidc_providers:
        found[entry.id] = Provider(
            id=entry.id,
            name=entry.name,
            kind="oidc",
            client_id=entry.client_id,
            client_secret=entry.client_secret.get_secret_value(),
            scopes=tuple(dict.fromkeys(("openid", *entry.scopes))),
            issuer=entry.issuer,
        )
    return found


def verify_id_token(
    id_token: str, *, keys: KeySet, issuer: str, client_id: str, nonce: str, now: int | None = None
) -> dict[str, Any]:
    """The claims of an ID token whose signature, issuer, audience, lifetime and nonce are right.

    Raises ProviderError(`invalid_id_token`) otherwise.
    """
    try:
        token = jwt.decode(id_token, keys, algorithms=list(ID_TOKEN_ALGORITHMS))
        registry = jwt.JWTClaimsRegistry(
            now=now,
            leeway=CLOCK_LEEWAY_SECONDS,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        registry.validate(token.claims)
    except (JoseError, ValueError, TypeError) as exc:
        raise ProviderError("invalid_id_token", f"{type(exc).__name__}: {exc}") from None
    claims = token.claims
    audience = claims["aud"]
    if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != client_id:
        raise ProviderError("invalid_id_token", "several audiences and azp is not this client")
    if not isinstance(claims["sub"], str) or not claims["sub"] or len(claims["sub"]) > 255:
        raise ProviderError("invalid_id_token", "sub is not a usable string")
    return claims


ClientAuthMethod = Literal["client_secret_basic", "client_secret_post"]


def token_auth_method(document: dict[str, Any]) -> ClientAuthMethod:
    """How this client authenticates at the token endpoint, as the discovery document allows.

    `client_secret_basic` when offered (OpenID Connect Discovery's default when the document names
    none), else `client_secret_post`; a provider that offers neither cannot take a client secret.
    """
    offered = document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    if not isinstance(offered, list):
        raise ProviderError("provider_error", "token_endpoint_auth_methods_supported is not a list")
    for method in ("client_secret_basic", "client_secret_post"):
        if method in offered:
            return method
    raise ProviderError("provider_error", f"no client secret method among {offered!r}"[:200])


def _key_id(id_token: str) -> str | None:
    try:
        kid = jws.extract_compact(id_token.encode()).headers().get("kid")
    except (JoseError, ValueError, TypeError):
        return None
    return kid if isinstance(kid, str) else None


_EMAIL: TypeAdapter[str] = TypeAdapter(Email)


def _address(value: object) -> str | None:
    """The provider's address if registration would accept it (lower-cased), else None: no address."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return _EMAIL.validate_python(value.strip())
    except ValidationError:
        return None


@dataclass
class _Cached:
    value: Any
    at: float


@dataclass
class OidcClient:
    """Talks to the configured providers; one per app, holding the discovery and JWKS caches."""

    settings: Settings
    providers: dict[str, Provider] = field(init=False)
    transport: httpx.AsyncBaseTransport | None = None  # tests may route the provider calls
    _discovery: dict[str, _Cached] = field(default_factory=dict)
    _jwks: dict[str, _Cached] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.providers = configured_providers(self.settings)

    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=HTTP_TIMEOUT_SECONDS, transport=self.transport, headers={"Accept": "application/json"}
        )

    async def _get_json(self, url: str, *, headers: dict[str, str] | None = None) -> Any:
        try:
            async with self._http() as http:
                response = await http.get(url, headers=headers)
                response.raise_for_status()
                return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderError("provider_error", f"GET {url}: {type(exc).__name__}") from None

    async def discovery(self, provider: Provider) -> dict[str, Any]:
        cached = self._discovery.get(provider.issuer)
        if cached is not None and time.monotonic() - cached.at < CACHE_SECONDS:
            document: dict[str, Any] = cached.value
            return document
        # OpenID Connect Discovery 1.0 section 4: the issuer without its trailing "/", then the path.
        document = await self._get_json(f"{provider.issuer.rstrip('/')}/.well-known/openid-configuration")
        if not isinstance(document, dict) or document.get("issuer") != provider.issuer:
            raise ProviderError("provider_error", "the discovery document names another issuer")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(name), str):
                raise ProviderError("provider_error", f"the discovery document has no {name}")
        self._discovery[provider.issuer] = _Cached(document, time.monotonic())
        return document

    async def _keys(self, provider: Provider, *, fresh: bool = False) -> KeySet:
        cached = self._jwks.get(provider.issuer)
        if not fresh and cached is not None and time.monotonic() - cached.at < CACHE_SECONDS:
            keys: KeySet = cached.value
            return keys
        document = await self.discovery(provider)
        try:
            keys = KeySet.import_key_set(await self._get_json(document["jwks_uri"]))
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ProviderError("provider_error", f"unusable JWKS: {type(exc).__name__}") from None
        self._jwks[provider.issuer] = _Cached(keys, time.monotonic())
        return keys

    async def authorization_url(
        self, provider: Provider, *, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        endpoint = (
            provider.authorize_url
            if provider.kind == "github"
            else (await self.discovery(provider))["authorization_endpoint"]
        )
        extra: dict[str, str] = {
            "code_challenge": create_s256_code_challenge(code_verifier),
            "code_challenge_method": "S256",
        }
        if provider.kind == "oidc":
            extra["nonce"] = nonce
        url: str = prepare_grant_uri(
            endpoint,
            client_id=provider.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=" ".join(provider.scopes),
            state=state,
            **extra,
        )
        return url

    async def _exchange(
        self,
        provider: Provider,
        token_url: str,
        *,
        code: str,
        code_verifier: str,
        redirect_uri: str,
        auth_method: ClientAuthMethod,
    ) -> dict[str, Any]:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
            "client_id": provider.client_id,
        }
        headers: dict[str, str] = {}
        if auth_method == "client_secret_basic":
            # RFC 6749 section 2.3.1: each part form-encoded, then HTTP Basic.
            pair = f"{quote(provider.client_id, safe='')}:{quote(provider.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            data["client_secret"] = provider.client_secret
        try:
            async with self._http() as http:
                response = await http.post(token_url, data=data, headers=headers)
                body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderError("provider_error", f"token request: {type(exc).__name__}") from None
        if response.status_code != 200 or not isinstance(body, dict) or "error" in body:
            error = body.get("error") if isinstance(body, dict) else None
            raise ProviderError("provider_error", f"token request answered {response.status_code} {error!r}")
        return body

    async def finish(
        self, provider: Provider, *, code: str, code_verifier: str, redirect_uri: str, nonce: str
    ) -> ProviderAccount:
        """Exchange the code and establish who signed in at the provider."""
        if provider.kind == "github":
            return await self._github(provider, code=code, code_verifier=code_verifier, redirect_uri=redirect_uri)
        document = await self.discovery(provider)
        tokens = await self._exchange(
            provider,
            document["token_endpoint"],
            code=code,
            code_verifier=code_verifier,
            redirect_uri=redirect_uri,
            auth_method=token_auth_method(document),
        )
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise ProviderError("invalid_id_token", "the token response has no ID token")
        keys = await self._keys(provider)
        kid = _key_id(id_token)
        if kid is not None and not any(key.kid == kid for key in keys.keys):
            keys = await self._keys(provider, fresh=True)  # the provider may have rotated its keys
        claims = verify_id_token(id_token, keys=keys, issuer=provider.issuer, client_id=provider.client_id, nonce=nonce)
        email = claims.get("email")
        verified = claims.get("email_verified")
        hint = claims.get("preferred_username") or claims.get("nickname")
        return ProviderAccount(
            subject=claims["sub"],
            email=_address(email),
            # Some providers send "true" as a string.
            email_verified=verified is True or verified == "true",
            username_hint=hint if isinstance(hint, str) else None,
        )

    async def _github(self, provider: Provider, *, code: str, code_verifier: str, redirect_uri: str) -> ProviderAccount:
        tokens = await self._exchange(
            provider,
            provider.token_url,
            code=code,
            code_verifier=code_verifier,
            redirect_uri=redirect_uri,
            auth_method="client_secret_post",  # what GitHub documents
        )
        access = tokens.get("access_token")
        if not isinstance(access, str):
            raise ProviderError("provider_error", "GitHub gave no access token")
        headers = {"Authorization": f"Bearer {access}", "Accept": "application/vnd.github+json"}
        user = await self._get_json(f"{provider.api_url}/user", headers=headers)
        emails = await self._get_json(f"{provider.api_url}/user/emails", headers=headers)
        if not isinstance(user, dict) or not isinstance(user.get("id"), int) or not isinstance(emails, list):
            raise ProviderError("provider_error", "GitHub's answers are not what its API documents")
        primary = next((e for e in emails if isinstance(e, dict) and e.get("primary") is True), None)
        address = primary.get("email") if primary is not None else None
        login = user.get("login")
        return ProviderAccount(
            subject=str(user["id"]),
            email=_address(address),
            email_verified=primary is not None and primary.get("verified") is True,
            username_hint=login if isinstance(login, str) else None,
        )
