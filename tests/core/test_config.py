"""Settings: read from KEEL_* variables, complete in development, strict in production."""

from __future__ import annotations

import secrets
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from keel.core.config import SECRET_FILE_NAME, ConfigError, Settings, load_settings
from tests.conftest import TEST_SECRET

GOOD_SECRET = "0123456789abcdef0123456789abcdef-a-real-random-key"
POSTGRES_URL = "postgresql+asyncpg://keel@db.internal:5432/keel"


pytestmark = pytest.mark.usefixtures("isolated_env")


def production(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "production",
        "data_dir": tmp_path / "data",
        "secret_key": GOOD_SECRET,
        "database_url": POSTGRES_URL,
        "smtp_host": "smtp.internal",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


class TestProduction:
    def test_accepts_a_complete_configuration(self, tmp_path: Path) -> None:
        settings = production(tmp_path)

        assert settings.is_production
        assert settings.secret == GOOD_SECRET.encode()
        assert not settings.is_sqlite
        # Production never writes a generated secret.
        assert not (tmp_path / "data" / SECRET_FILE_NAME).exists()

    @pytest.mark.parametrize(
        ("secret", "fragment"),
        [
            (None, "must be set"),
            ("changeme", "placeholder"),
            ("CHANGEME", "placeholder"),
            ("  secret  ", "placeholder"),
            ("your-secret-key", "placeholder"),
            ("please-change-me-before-going-live-0123456789", "placeholder"),
            ("x" * 31, "at least 32 bytes"),
            ("é" * 15, "at least 32 bytes"),
            ("", "at least 32 bytes"),
        ],
        ids=[
            "missing",
            "changeme",
            "upper-case",
            "padded",
            "tutorial",
            "contains-change",
            "31-bytes",
            "30-utf8",
            "empty",
        ],
    )
    def test_refuses_a_weak_secret(self, tmp_path: Path, secret: str | None, fragment: str) -> None:
        with pytest.raises(ValidationError) as caught:
            production(tmp_path, secret_key=secret)

        message = str(caught.value)
        assert "KEEL_SECRET_KEY" in message
        assert fragment in message

    @pytest.mark.parametrize(
        "secret",
        [
            "a" * 32,
            "k" * 64,
            "ab" * 16,
            "abc" * 20,
            "0123456789" * 4,
            "password" * 5,
            "é" * 16,
        ],
        ids=["32-a", "64-k", "abab", "abcabc", "repeated-digits", "repeated-word", "32-bytes-utf8"],
    )
    def test_refuses_a_guessable_secret_however_long(self, tmp_path: Path, secret: str) -> None:
        with pytest.raises(ValidationError) as caught:
            production(tmp_path, secret_key=secret)

        message = str(caught.value)
        assert "KEEL_SECRET_KEY" in message
        assert "guessable" in message
        assert "secrets.token_urlsafe(48)" in message

    @pytest.mark.parametrize("secret", ["short", "x" * 31], ids=["short", "31-bytes"])
    def test_the_refusal_says_how_to_generate_a_key(self, tmp_path: Path, secret: str) -> None:
        with pytest.raises(ConfigError) as caught:
            load_settings(
                environment="production",
                data_dir=tmp_path,
                secret_key=secret,
                database_url=POSTGRES_URL,
                smtp_host="smtp.internal",
            )

        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith("KEEL_SECRET_KEY")
        assert 'python -c "import secrets; print(secrets.token_urlsafe(48))"' in message
        assert secret not in message

    @pytest.mark.parametrize(
        "make",
        [lambda: secrets.token_urlsafe(32), lambda: secrets.token_hex(32), lambda: secrets.token_urlsafe(48)],
        ids=["token_urlsafe(32)", "token_hex(32)", "token_urlsafe(48)"],
    )
    def test_accepts_a_random_secret(self, tmp_path: Path, make: Callable[[], str]) -> None:
        # Many draws: a random key must never be taken for a guessable one.
        for _ in range(200):
            secret = make()
            assert production(tmp_path, secret_key=secret).secret == secret.encode()

    def test_accepts_the_secrets_the_other_tests_run_production_with(self, tmp_path: Path) -> None:
        for secret in (GOOD_SECRET, TEST_SECRET, "0123456789abcdef0123456789abcdef-real-key"):
            assert production(tmp_path, secret_key=secret).secret == secret.encode()

    @pytest.mark.parametrize(
        "database_url",
        [None, "sqlite+aiosqlite:///./keel.db", "sqlite+aiosqlite:///:memory:"],
        ids=["default", "file", "memory"],
    )
    def test_refuses_sqlite_unless_allowed(self, tmp_path: Path, database_url: str | None) -> None:
        with pytest.raises(ValidationError, match="SQLite is not allowed in production"):
            production(tmp_path, database_url=database_url)

        allowed = production(tmp_path, database_url=database_url, allow_sqlite_in_production=True)

        assert allowed.is_sqlite

    def test_does_not_generate_a_secret(self, tmp_path: Path) -> None:
        with pytest.raises(ValidationError):
            production(tmp_path, secret_key=None)

        assert not (tmp_path / "data").exists()


class TestLoadSettings:
    @pytest.mark.parametrize(
        ("environment", "setting"),
        [
            ({"KEEL_ENVIRONMENT": "production", "KEEL_DATABASE_URL": POSTGRES_URL}, "KEEL_SECRET_KEY"),
            (
                {"KEEL_ENVIRONMENT": "production", "KEEL_DATABASE_URL": POSTGRES_URL, "KEEL_SECRET_KEY": "changeme"},
                "KEEL_SECRET_KEY",
            ),
            (
                {"KEEL_ENVIRONMENT": "production", "KEEL_DATABASE_URL": POSTGRES_URL, "KEEL_SECRET_KEY": "short"},
                "KEEL_SECRET_KEY",
            ),
            ({"KEEL_ENVIRONMENT": "production", "KEEL_SECRET_KEY": GOOD_SECRET}, "KEEL_DATABASE_URL"),
            ({"KEEL_ENVIRONMENT": "staging"}, "KEEL_ENVIRONMENT"),
            ({"KEEL_ACCESS_TOKEN_TTL_SECONDS": "5"}, "KEEL_ACCESS_TOKEN_TTL_SECONDS"),
            ({"KEEL_LOG_LEVEL": "LOUD"}, "KEEL_LOG_LEVEL"),
            (
                {"KEEL_SESSION_IDLE_TTL_SECONDS": "7200", "KEEL_SESSION_ABSOLUTE_TTL_SECONDS": "3600"},
                "KEEL_SESSION_ABSOLUTE_TTL_SECONDS",
            ),
        ],
        ids=[
            "no-secret",
            "placeholder",
            "short-secret",
            "sqlite",
            "unknown-environment",
            "ttl-too-short",
            "log-level",
            "absolute-before-idle",
        ],
    )
    def test_turns_an_invalid_configuration_into_one_line(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, environment: dict[str, str], setting: str
    ) -> None:
        monkeypatch.setenv("KEEL_DATA_DIR", str(tmp_path / "data"))
        for name, value in environment.items():
            monkeypatch.setenv(name, value)

        with pytest.raises(ConfigError) as caught:
            load_settings()

        message = str(caught.value)
        assert "\n" not in message
        assert setting in message
        assert "Value error" not in message
        assert "validation error" not in message.lower()
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__
        # Unlike pydantic's own message, the one-liner never echoes the value it refused.
        secret = environment.get("KEEL_SECRET_KEY")
        if secret:
            assert secret not in message

    def test_overrides_win(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="KEEL_SECRET_KEY"):
            load_settings(environment="production", database_url=POSTGRES_URL, data_dir=tmp_path)

        settings = load_settings(environment="test", data_dir=tmp_path, secret_key=GOOD_SECRET)

        assert settings.environment == "test"
        assert settings.secret == GOOD_SECRET.encode()


class TestDevelopmentSecret:
    def test_is_generated_once_and_reused(self, tmp_path: Path) -> None:
        data_dir = tmp_path / "fresh" / "data"

        first = Settings(data_dir=data_dir)
        second = Settings(data_dir=data_dir)

        path = data_dir / SECRET_FILE_NAME
        assert path.is_file()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert first.environment == "development"
        assert len(first.secret) >= 32
        assert first.secret == second.secret
        assert path.read_text().strip().encode() == first.secret

    def test_differs_between_data_dirs(self, tmp_path: Path) -> None:
        one = Settings(data_dir=tmp_path / "one")
        two = Settings(data_dir=tmp_path / "two")

        assert one.secret != two.secret

    def test_an_existing_secret_file_is_used(self, tmp_path: Path) -> None:
        (tmp_path / SECRET_FILE_NAME).write_text("kept-from-last-time-" + "9" * 20 + "\n")

        settings = Settings(data_dir=tmp_path)

        assert settings.secret == b"kept-from-last-time-" + b"9" * 20

    def test_an_explicit_secret_writes_no_file(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=tmp_path, secret_key=SecretStr(GOOD_SECRET))

        assert settings.secret == GOOD_SECRET.encode()
        assert not (tmp_path / SECRET_FILE_NAME).exists()

    def test_development_accepts_a_short_secret(self, tmp_path: Path) -> None:
        # Only production insists on a strong key; development stays frictionless.
        assert Settings(data_dir=tmp_path, secret_key=SecretStr("dev")).secret == b"dev"


class TestEnvironmentVariables:
    def test_keel_variables_are_read(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("KEEL_ENVIRONMENT", "production")
        monkeypatch.setenv("KEEL_DATA_DIR", str(tmp_path / "from-env"))
        monkeypatch.setenv("KEEL_SECRET_KEY", GOOD_SECRET)
        monkeypatch.setenv("KEEL_DATABASE_URL", POSTGRES_URL)
        monkeypatch.setenv("KEEL_REDIS_URL", "redis://cache.internal:6379/0")
        monkeypatch.setenv("KEEL_ACCESS_TOKEN_TTL_SECONDS", "120")
        monkeypatch.setenv("KEEL_LOG_LEVEL", "DEBUG")
        monkeypatch.setenv("KEEL_SMTP_HOST", "smtp.internal")

        settings = Settings()

        assert settings.environment == "production"
        assert settings.data_dir == tmp_path / "from-env"
        assert settings.secret == GOOD_SECRET.encode()
        assert settings.sqlalchemy_url == POSTGRES_URL
        assert settings.redis_url == "redis://cache.internal:6379/0"
        assert settings.access_token_ttl_seconds == 120
        assert settings.log_level == "DEBUG"
        assert settings.smtp_host == "smtp.internal"

    def test_unprefixed_variables_are_ignored(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("SECRET_KEY", GOOD_SECRET)
        monkeypatch.setenv("DATABASE_URL", POSTGRES_URL)

        settings = Settings(data_dir=tmp_path)

        assert settings.secret != GOOD_SECRET.encode()
        assert settings.is_sqlite

    def test_a_dotenv_file_is_read(self, tmp_path: Path) -> None:
        Path(".env").write_text(f"KEEL_DATA_DIR={tmp_path / 'dotenv'}\nKEEL_ACCESS_TOKEN_TTL_SECONDS=300\n")

        settings = Settings()

        assert settings.data_dir == tmp_path / "dotenv"
        assert settings.access_token_ttl_seconds == 300

    def test_the_environment_beats_the_dotenv_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        Path(".env").write_text(f"KEEL_DATA_DIR={tmp_path}\nKEEL_ACCESS_TOKEN_TTL_SECONDS=300\n")
        monkeypatch.setenv("KEEL_ACCESS_TOKEN_TTL_SECONDS", "600")

        assert Settings().access_token_ttl_seconds == 600

    def test_extra_webauthn_origins_are_a_comma_separated_list(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("KEEL_WEBAUTHN_EXTRA_ORIGINS", " https://App.example.com:443, http://localhost:5173,")

        settings = Settings(data_dir=tmp_path)

        assert settings.webauthn_extra_origins == ("https://app.example.com", "http://localhost:5173")
        assert Settings(data_dir=tmp_path, webauthn_extra_origins=()).webauthn_extra_origins == ()

    @pytest.mark.parametrize("value", ["https://app.example.com/login", "app.example.com", "*", "null"])
    def test_an_extra_webauthn_origin_must_be_an_origin(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
    ) -> None:
        monkeypatch.setenv("KEEL_WEBAUTHN_EXTRA_ORIGINS", f"https://ok.example.com,{value}")

        with pytest.raises(ConfigError, match=r"KEEL_WEBAUTHN_EXTRA_ORIGINS: .* is not an origin"):
            load_settings(data_dir=tmp_path)


class TestDefaults:
    def test_the_default_database_is_a_sqlite_file_in_the_data_dir(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=tmp_path / "data")

        assert settings.database_url is None
        assert settings.is_sqlite
        assert settings.sqlalchemy_url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'keel.db'}"

    def test_a_database_url_replaces_the_default(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=tmp_path, database_url=POSTGRES_URL)

        assert settings.sqlalchemy_url == POSTGRES_URL
        assert not settings.is_sqlite

    def test_development_defaults(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=tmp_path)

        assert settings.environment == "development"
        assert not settings.is_production
        assert settings.redis_url is None
        assert settings.access_token_ttl_seconds == 15 * 60
        assert settings.session_idle_ttl_seconds == 7 * 24 * 3600
        assert settings.session_absolute_ttl_seconds == 30 * 24 * 3600

    def test_the_data_dir_defaults_to_dot_keel_in_the_working_directory(self) -> None:
        settings = Settings()

        assert settings.data_dir == Path(".keel")
        assert (Path.cwd() / ".keel" / SECRET_FILE_NAME).is_file()
        assert settings.sqlalchemy_url == "sqlite+aiosqlite:///.keel/keel.db"


class TestOutboxTimings:
    def test_a_claim_lease_not_longer_than_the_smtp_timeout_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="KEEL_OUTBOX_CLAIM_LEASE_SECONDS must be longer"):
            load_settings(data_dir=tmp_path, outbox_claim_lease_seconds=10, smtp_timeout_seconds=10)

    def test_a_longer_lease_is_accepted(self, tmp_path: Path) -> None:
        settings = load_settings(data_dir=tmp_path, outbox_claim_lease_seconds=11, smtp_timeout_seconds=10)
        assert settings.outbox_claim_lease_seconds == 11
