"""Typed settings read from ``KEEL_*`` environment variables and ``.env``."""

from __future__ import annotations

import ipaddress
import math
import os
import secrets
import zlib
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import limits
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from keel.core.client_ip import IPNetwork, parse_networks
from keel.core.files import PRIVATE_FILE_MODE, private_dir
from keel.core.urls import origin_of

Environment = Literal["development", "test", "production"]
DocsAccess = Literal["public", "admin", "off"]

SECRET_FILE_NAME = "secret_key"
MIN_SECRET_BYTES = 32
MIN_METRICS_TOKEN_BYTES = 32
# Where a scraper usually runs: this host, or the deployment's own network.
METRICS_PRODUCTION_NETWORKS = parse_networks("127.0.0.0/8,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7")
# A random key of 32 bytes (token_urlsafe(32), token_hex(32)) estimates at 185 bits or more.
MIN_SECRET_BITS = 128
GENERATE_SECRET = 'generate one: python -c "import secrets; print(secrets.token_urlsafe(48))"'
# Values people paste from examples; refusing them outside development stops a
# deployment from signing tokens with a key printed in a tutorial.
_PLACEHOLDER_SECRETS = {"changeme", "change-me", "change_me", "secret", "secret-key", "your-secret-key"}


class OidcProviderSettings(BaseModel):
    """One generic OpenID Connect provider (KEEL_OIDC_PROVIDERS is a JSON list of these)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    name: str = Field(min_length=1, max_length=64)
    issuer: str = Field(min_length=1, max_length=512)
    client_id: str = Field(min_length=1, max_length=512)
    client_secret: SecretStr
    scopes: tuple[str, ...] = ("openid", "email", "profile")

    @field_validator("issuer")
    @classmethod
    def _bare_issuer(cls, value: str) -> str:
        if not value.lower().startswith(("https://", "http://")):
            raise ValueError("an issuer is an http(s) URL")
        # Kept exactly as configured: the discovery document's `issuer` and the ID token's `iss`
        # must equal it, and some providers (Auth0) end theirs with "/".
        return value


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line meant for an operator."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEEL_", env_file=".env", extra="ignore")

    environment: Environment = "development"
    data_dir: Path = Path(".keel")
    secret_key: SecretStr | None = None
    database_url: str | None = None
    allow_sqlite_in_production: bool = False
    redis_url: str | None = None
    # Outside production, `keel serve` replaces this default with the address it listens on.
    public_url: str = "http://127.0.0.1:8000"
    # Origins besides KEEL_PUBLIC_URL's that may use this service's passkeys, comma-separated: a
    # subdomain of its host, or another site that serves /.well-known/webauthn (related origins).
    webauthn_extra_origins: Annotated[tuple[str, ...], NoDecode] = ()

    # Email: SMTP when KEEL_SMTP_HOST is set, else one .eml file per message in the data folder.
    mail_from: str = "Keel <no-reply@keel.localhost>"
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    allow_file_mail_in_production: bool = False
    # Celery broker for email delivery; KEEL_REDIS_URL serves when unset. Neither: in-process delivery.
    celery_broker_url: str | None = None
    email_delivery: Literal["auto", "celery", "in-process"] = "auto"
    outbox_max_attempts: int = Field(default=6, ge=1, le=50)
    outbox_retry_base_seconds: float = Field(default=5.0, gt=0)
    outbox_relay_after_seconds: int = Field(default=60, ge=1)
    outbox_relay_interval_seconds: float = Field(default=15.0, gt=0)
    outbox_claim_lease_seconds: int = Field(default=300, ge=1)
    email_throttle_per_hour: int = Field(default=3, ge=1)
    # Invitations to shared lists mailed to one address in an hour (their own budget). Past it the
    # membership is still made and shows in the app; only the mail is left out.
    invitation_emails_per_hour: int = Field(default=5, ge=1)
    # The security activity log (and the devices an account signed in from) keeps this many days;
    # the prune job (`keel prune`, and the scheduled one) removes older rows, and expired sessions,
    # spent refresh tokens and sent outbox rows as old.
    activity_retention_days: int = Field(default=180, ge=1, le=3650)
    # Sent emails are kept this long (failed ones until an operator retries or removes them).
    outbox_retention_days: int = Field(default=30, ge=1, le=3650)
    # How often the prune job runs (Celery beat, or the in-process loop without a broker).
    prune_interval_seconds: float = Field(default=3600.0, gt=0)
    # At most one new-device email per account in this many seconds (each new device is still recorded).
    new_device_notice_interval_seconds: int = Field(default=600, ge=0)
    verify_token_ttl_seconds: int = Field(default=48 * 3600, ge=60)
    reset_token_ttl_seconds: int = Field(default=30 * 60, ge=60)

    access_token_ttl_seconds: int = Field(default=15 * 60, ge=60, le=24 * 3600)
    session_idle_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=300)
    session_absolute_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=300)
    # Sensitive operations (password change, every second-factor change...) need a sign-in or a
    # /auth/reauthenticate this recent.
    reauthentication_seconds: int = Field(default=600, ge=30, le=86400)
    # Admin routes answer 403 mfa_enrollment_required to an admin without a second factor.
    require_mfa_for_admins: bool = False
    jwt_issuer: str = "keel"
    jwt_audience: str = "keel-api"
    auth_cache_ttl_seconds: int = Field(default=300, ge=1, le=3600)
    # Personal access tokens expire after at most a year; with this, a user may also make one that never does.
    personal_tokens_allow_no_expiry: bool = False

    argon2_memory_cost: int = Field(default=19456, ge=8)
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_parallelism: int = Field(default=1, ge=1)
    # One argon2 hash at a time per process: with a worker per core that keeps every core busy, and
    # each further concurrent hash only adds its memory cost (19 MiB) and slows the event loop.
    hash_concurrency: int = Field(default=1, ge=1, le=64)
    # Freeze what startup built and collect garbage less often (keel.main.tune_garbage_collector).
    # Off only where many apps share one process, as in the test suite.
    tune_gc: bool = True

    # A fixed pool: SQLAlchemy closes an overflow connection as soon as it is returned, so under
    # steady concurrency above the pool size every request paid for a new PostgreSQL connection.
    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    db_pool_recycle_seconds: int = Field(default=1800, ge=-1)
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0)
    # Enforced by PostgreSQL on every connection of the pool (not on migrations): a statement that
    # runs longer, or waits longer for a lock, is cancelled and its request answers 503 with
    # Retry-After instead of hanging. 0 turns one off.
    db_statement_timeout_seconds: float = Field(default=30.0, ge=0)
    db_lock_timeout_seconds: float = Field(default=5.0, ge=0)
    # Redis connections per process. A request that finds them all busy waits up to the timeout for
    # one (then 503), so a burst queues instead of failing at once.
    redis_max_connections: int = Field(default=50, ge=1)
    redis_pool_timeout_seconds: float = Field(default=5.0, gt=0)

    # Live updates (GET /api/v1/events): how long and how many events a reconnect can catch up on
    # (at least 5 minutes, the API's promise), the heartbeat, and the bounds of one worker's streams.
    events_retention_seconds: int = Field(default=600, ge=300, le=24 * 3600)
    events_max_log: int = Field(default=10_000, ge=100, le=1_000_000)
    events_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    events_max_streams_per_user: int = Field(default=5, ge=1, le=1000)
    events_max_streams: int = Field(default=1000, ge=1, le=100_000)
    events_queue_size: int = Field(default=256, ge=8, le=100_000)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # The request line and headers together; a larger head gets 431 before the app sees it.
    max_header_bytes: int = Field(default=16 * 1024, ge=4096, le=1024 * 1024)

    # Peers allowed to name the client in X-Forwarded-For: comma-separated addresses or CIDR networks.
    trusted_proxies: Annotated[tuple[IPNetwork, ...], NoDecode] = ()
    # Rate limits in the `limits` notation ("5/minute", several joined by ";"), counted in Redis when
    # configured, else in process memory.
    rate_limit_enabled: bool = True
    rate_limit_login: str = "5/minute"  # per (email, client IP)
    rate_limit_login_ip: str = "20/minute"  # per client IP, whatever the email
    rate_limit_register: str = "5/hour"
    rate_limit_verify_email: str = "10/hour"
    rate_limit_password_reset: str = "10/hour"
    # Per client IP, over the password strength checks a form asks for as someone types.
    rate_limit_password_check: str = "60/minute"
    rate_limit_refresh: str = "30/minute"  # per session
    rate_limit_writes: str = "120/minute"  # per user, over the write endpoints
    # Per client IP, over what starts a sign-in without a secret: a provider's authorize redirect,
    # linking an identity, a passkey sign-in's challenge (each writes a row or a challenge).
    rate_limit_sign_in_start: str = "30/minute"
    # Password checks in a row without the right password, per account and from any address, before
    # the account is locked (keel.core.lockout); each further one doubles the lock, up to the maximum.
    rate_limit_account_failures: int = Field(default=10, ge=1)
    rate_limit_account_lock_seconds: int = Field(default=60, ge=1)
    rate_limit_account_lock_max_seconds: int = Field(default=900, ge=1)

    # Browser origins allowed to call the API cross-origin (CORS), comma-separated, e.g.
    # "https://app.example.com,https://admin.example.com". Empty: same origin only.
    cors_origins: str = ""

    # Who gets the API documentation: "public"; "admin" (the /docs and /redoc pages are public, the
    # schema they show, /openapi.json, needs an administrator's access token); "off" (all of it 404).
    # Unset: "admin" in production, "public" elsewhere.
    docs: DocsAccess | None = None
    # Who gets /metrics: clients in these networks (comma-separated addresses or CIDR networks, matched
    # against the client address KEEL_TRUSTED_PROXIES resolves), and anyone presenting
    # `Authorization: Bearer <KEEL_METRICS_TOKEN>`. Unset: loopback and private networks in production,
    # anyone elsewhere; empty: no network, the token only.
    metrics_allow: Annotated[tuple[IPNetwork, ...] | None, NoDecode] = None
    metrics_token: SecretStr | None = None

    # Sign-in with other providers (keel.core.oidc): nothing is offered unless configured. Generic
    # OpenID Connect providers as a JSON list of {id, name, issuer, client_id, client_secret, scopes};
    # Google and GitHub by their client credentials alone.
    oidc_providers: tuple[OidcProviderSettings, ...] = ()
    google_client_id: str | None = None
    google_client_secret: SecretStr | None = None
    github_client_id: str | None = None
    github_client_secret: SecretStr | None = None
    # Where GitHub's OAuth pages and its API live (a GitHub Enterprise server, or a test's stub).
    github_oauth_url: str = "https://github.com"
    github_api_url: str = "https://api.github.com"
    # How long a provider sign-in may take between leaving and coming back, and a link confirmation mailed.
    oidc_flow_ttl_seconds: int = Field(default=600, ge=60, le=3600)
    identity_link_ttl_seconds: int = Field(default=24 * 3600, ge=300)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("trusted_proxies", "metrics_allow", mode="before")
    @classmethod
    def _parse_trusted_proxies(cls, value: object) -> object:
        if isinstance(value, str) or (isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)):
            return parse_networks(value)
        return value

    @field_validator("webauthn_extra_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        entries = value.split(",") if isinstance(value, str) else value
        if not isinstance(entries, list | tuple) or not all(isinstance(entry, str) for entry in entries):
            return value  # the field's own type check refuses it
        origins = []
        for entry in (entry.strip() for entry in entries):
            origin = origin_of(entry, bare=True)
            if origin is None and entry:
                raise ValueError(f"{entry!r} is not an origin like https://app.example.com")
            if origin is not None:
                origins.append(origin)
        return tuple(origins)

    @field_validator("public_url")
    @classmethod
    def _strip_public_url(cls, value: str) -> str:
        # Here rather than in the model validator: an assignment there would mark the field as set.
        return value.rstrip("/")

    @field_validator(
        "rate_limit_login",
        "rate_limit_login_ip",
        "rate_limit_register",
        "rate_limit_verify_email",
        "rate_limit_password_reset",
        "rate_limit_password_check",
        "rate_limit_refresh",
        "rate_limit_writes",
        "rate_limit_sign_in_start",
    )
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        try:
            items = limits.parse_many(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit such as 5/minute or 10/hour;100/day") from None
        if any(item.amount < 1 for item in items):
            raise ValueError(f"{value!r} allows nothing; set KEEL_RATE_LIMIT_ENABLED=false to turn limits off")
        return value

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_METRICS_TOKEN_BYTES:
            raise ValueError(
                f"must be at least {MIN_METRICS_TOKEN_BYTES} bytes long "
                "(generate one: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'keel.db'}"

    @property
    def public_url_configured(self) -> bool:
        """Whether KEEL_PUBLIC_URL came from the environment, `.env` or the caller, not the default."""
        return "public_url" in self.model_fields_set

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    @property
    def broker_url(self) -> str | None:
        return self.celery_broker_url or self.redis_url

    @property
    def uses_celery(self) -> bool:
        if self.email_delivery == "auto":
            return self.broker_url is not None
        return self.email_delivery == "celery"

    @property
    def docs_access(self) -> DocsAccess:
        return self.docs or ("admin" if self.is_production else "public")

    @property
    def metrics_networks(self) -> tuple[IPNetwork, ...] | None:
        """The networks /metrics is served to without its token; None: every client."""
        if self.metrics_allow is not None:
            return self.metrics_allow
        return METRICS_PRODUCTION_NETWORKS if self.is_production else None

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def secret(self) -> bytes:
        if self.secret_key is None:  # pragma: no cover - the validator always fills it
            raise ConfigError("KEEL_SECRET_KEY is not set")
        return self.secret_key.get_secret_value().encode()

    @model_validator(mode="after")
    def _check_and_complete(self) -> Settings:
        if self.is_production:
            _refuse_weak_secret(self.secret_key)
            if self.is_sqlite and not self.allow_sqlite_in_production:
                raise ValueError(
                    "SQLite is not allowed in production: set KEEL_DATABASE_URL to PostgreSQL "
                    "or KEEL_ALLOW_SQLITE_IN_PRODUCTION=true"
                )
            if self.smtp_host is None and not self.allow_file_mail_in_production:
                raise ValueError(
                    "Mail would go to files in production: set KEEL_SMTP_HOST "
                    "or KEEL_ALLOW_FILE_MAIL_IN_PRODUCTION=true"
                )
        elif self.secret_key is None:
            self.secret_key = SecretStr(_load_or_create_dev_secret(self.data_dir))
        for origin in self.cors_origin_list:
            if origin == "*":
                raise ValueError(
                    "KEEL_CORS_ORIGINS must list origins: '*' is refused for an API that takes credentials"
                )
            if origin_of(origin, bare=True) != origin.lower():
                raise ValueError(f"KEEL_CORS_ORIGINS: {origin!r} is not an origin like https://app.example.com")
        if self.outbox_claim_lease_seconds <= self.smtp_timeout_seconds:
            # A send still in progress must never be handed to a second worker.
            raise ValueError("KEEL_OUTBOX_CLAIM_LEASE_SECONDS must be longer than KEEL_SMTP_TIMEOUT_SECONDS")
        if self.session_absolute_ttl_seconds < self.session_idle_ttl_seconds:
            raise ValueError("KEEL_SESSION_ABSOLUTE_TTL_SECONDS must be >= KEEL_SESSION_IDLE_TTL_SECONDS")
        return self


def listening_url(host: str, port: int) -> str:
    """The address a browser on this machine reaches a server listening on HOST and PORT at.

    A wildcard address (0.0.0.0, ::) is not one a browser can open: it stands for this machine,
    whose loopback address of the same family is always among those listened on.
    """
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return f"http://{host}:{port}"  # a name, such as localhost
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return f"http://[{address}]:{port}" if address.version == 6 else f"http://{address}:{port}"


def _refuse_weak_secret(secret: SecretStr | None) -> None:
    if secret is None:
        raise ValueError(f"KEEL_SECRET_KEY must be set in production; {GENERATE_SECRET}")
    value = secret.get_secret_value()
    if value.strip().lower() in _PLACEHOLDER_SECRETS or "change" in value.lower():
        raise ValueError(f"KEEL_SECRET_KEY is a placeholder; {GENERATE_SECRET}")
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"KEEL_SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes long; {GENERATE_SECRET}")
    if estimated_entropy_bits(value) < MIN_SECRET_BITS:
        raise ValueError(f"KEEL_SECRET_KEY is guessable (repeated or too few different characters); {GENERATE_SECRET}")


def estimated_entropy_bits(value: str) -> float:
    """A rough estimate of a key's entropy: the smaller of two estimates that each miss something.

    The characters' Shannon entropy times the length sees a small alphabet ("abab...") but not a
    repeated run of many characters ("0123456789" four times); the size of the key compressed with
    deflate sees repetition but prices every character it cannot match at 8 bits or so.
    """
    counts = Counter(value)
    shannon = -sum(n * math.log2(n / len(value)) for n in counts.values())
    raw_deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressed = raw_deflate.compress(value.encode()) + raw_deflate.flush()
    return min(shannon, 8.0 * len(compressed))


def _load_or_create_dev_secret(data_dir: Path) -> str:
    """Keep one generated secret per data folder, so development tokens survive restarts."""
    path = data_dir / SECRET_FILE_NAME
    if path.exists():
        return path.read_text().strip()
    private_dir(data_dir)
    value = secrets.token_urlsafe(48)
    # O_EXCL: if two workers start at once, the loser reads the winner's file.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning a validation failure into a one-line ``ConfigError``."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        prefix = f"KEEL_{where.upper()}: " if where else ""
        raise ConfigError(f"{prefix}{message}") from None


@lru_cache
def get_settings() -> Settings:
    return load_settings()
