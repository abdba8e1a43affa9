"""Password hashing edge cases and the password policy."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import pytest
from pwdlib.hashers.bcrypt import BcryptHasher

from keel.core.password_policy import MAX_LENGTH, check_password, is_common
from keel.core.security import HASH_THREAD_NICENESS, PasswordHasher


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


class TestHashThreads:
    async def test_hashes_run_on_at_most_concurrency_threads_at_a_lower_priority(self, hasher: PasswordHasher) -> None:
        seen: list[tuple[int, int]] = []
        running = 0
        most = 0
        lock = threading.Lock()
        real_hash = hasher._hash.hash

        def observed_hash(password: str) -> str:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            thread = threading.get_native_id()
            seen.append((thread, os.getpriority(os.PRIO_PROCESS, thread)))
            try:
                time.sleep(0.02)  # long enough for the others to pile up
                return real_hash(password)
            finally:
                with lock:
                    running -= 1

        hasher._hash.hash = observed_hash  # type: ignore[method-assign,assignment]
        await asyncio.gather(*(hasher.hash(f"password-{i}") for i in range(8)))

        main_priority = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert most == 2
        assert len({thread for thread, _ in seen}) <= 2
        assert threading.get_native_id() not in {thread for thread, _ in seen}
        if sys.platform.startswith("linux"):
            assert {priority for _, priority in seen} == {min(main_priority + HASH_THREAD_NICENESS, 19)}
