"""Password hashing edge cases and the password policy."""

from __future__ import annotations

import pytest
from pwdlib.hashers.bcrypt import BcryptHasher

from keel.core.password_policy import MAX_LENGTH, check_password, is_common
from keel.core.security import PasswordHasher


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher(memory_cost=1024, time_cost=1, parallelism=1, concurrency=2)


class TestLegacyHashes:
    async def test_long_password_against_a_bcrypt_hash_verifies_as_bcrypt_did(self, hasher: PasswordHasher) -> None:
        password = "ünïcode-" * 20  # far past bcrypt's 72-byte window
        legacy = BcryptHasher(rounds=4).hash(password.encode()[:72])

        valid, upgraded = await hasher.verify(password, legacy)

        assert valid
        assert upgraded is not None
        assert upgraded.startswith("$argon2id$")
        assert (await hasher.verify(password, upgraded)) == (True, None)

    async def test_wrong_password_against_a_bcrypt_hash(self, hasher: PasswordHasher) -> None:
        legacy = BcryptHasher(rounds=4).hash(b"right-password-123")
        assert await hasher.verify("wrong-password-123", legacy) == (False, None)

    async def test_an_unrecognised_hash_is_a_failed_verification_not_a_crash(self, hasher: PasswordHasher) -> None:
        assert await hasher.verify("anything-at-all", "$md5$not-a-supported-hash") == (False, None)


class TestPolicy:
    @pytest.mark.parametrize("password", ["password", "Password1", "QWERTYUIOP", "iloveyou", "sunshine"])
    def test_common_passwords_are_refused_whatever_their_case(self, password: str) -> None:
        assert is_common(password)
        with pytest.raises(ValueError, match="too common"):
            check_password(password)

    @pytest.mark.parametrize(
        ("password", "message"),
        [("short1!", "at least 8"), ("x" * (MAX_LENGTH + 1), "at most 128")],
    )
    def test_length_bounds(self, password: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            check_password(password)

    def test_personal_values_are_refused(self) -> None:
        with pytest.raises(ValueError, match="email or username"):
            check_password("Ada_Lovelace", personal=("ada_lovelace", None))

    def test_a_good_password_passes_unchanged(self) -> None:
        assert check_password("tidal-Marmot-quarry-42", personal=("ada",)) == "tidal-Marmot-quarry-42"
