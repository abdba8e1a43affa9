"""Password hashing edge cases and the password policy."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import zxcvbn
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from keel.core.errors import ClientClosedRequest
from keel.core.password_policy import MAX_LENGTH, RATED_CHARS, check_password, is_common
from keel.core.security import HASH_THREAD_NICENESS, PasswordHasher

COMPOSED = "Caf\u00e9-tidal-marmot-42"
DECOMPOSED = "Cafe\u0301-tidal-marmot-42"


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

    # What an outside probe found accepted: none is in the frequency list, all are easy to guess.
    @pytest.mark.parametrize(
        "password", ["password123456", " " * 10, "keelkeel", "aaaaaaaa", "letmein123", "Summer2024!"]
    )
    def test_easily_guessed_passwords_are_refused_saying_why(self, password: str) -> None:
        verdict = "This password is too easy to guess."
        with pytest.raises(ValueError, match=re.escape(verdict)) as refused:
            check_password(password)

        assert len(str(refused.value)) > len(verdict)  # and zxcvbn's reason or advice

    def test_the_reason_is_zxcvbns_feedback(self) -> None:
        with pytest.raises(ValueError, match="too easy to guess") as refused:
            check_password("aaaaaaaa")

        assert str(refused.value) == (
            'This password is too easy to guess. Repeats like "aaa" are easy to guess. '
            "Add another word or two. Uncommon words are better. Avoid repeated words and characters."
        )

    def test_a_password_built_from_the_email_or_username_is_refused(self) -> None:
        personal = ("qhorvath@example.com", "qhorvath", "qhorvath_k")

        assert check_password("Qhorvath_k2024") == "Qhorvath_k2024"  # hard to guess for someone else
        with pytest.raises(ValueError, match="built from your email or username"):
            check_password("Qhorvath_k2024", personal=personal)

    def test_eight_characters_without_a_pattern_are_enough(self) -> None:
        assert check_password("Zq9-xv7B") == "Zq9-xv7B"

    def test_only_the_first_characters_are_rated(self, monkeypatch: pytest.MonkeyPatch) -> None:
        rated: list[str] = []
        real = zxcvbn.zxcvbn

        def recording(password: str, **options: Any) -> Any:
            rated.append(password)
            return real(password, **options)

        monkeypatch.setattr(zxcvbn, "zxcvbn", recording)
        password = "Vq3-rTw8-Lm2!" * 9

        assert check_password(password) == password
        assert rated == [password[:RATED_CHARS]]

    def test_the_password_comes_back_in_nfc(self) -> None:
        assert check_password(DECOMPOSED) == COMPOSED


class TestNormalization:
    async def test_a_password_verifies_whichever_way_its_accents_are_typed(self, hasher: PasswordHasher) -> None:
        hashed = await hasher.hash(DECOMPOSED)

        assert await hasher.verify(COMPOSED, hashed) == (True, None)
        assert await hasher.verify(DECOMPOSED, hashed) == (True, None)
        assert await hasher.verify("Cafe-tidal-marmot-42", hashed) == (False, None)

    async def test_a_hash_of_the_password_as_typed_before_normalization_verifies_and_is_upgraded(
        self, hasher: PasswordHasher
    ) -> None:
        legacy = Argon2Hasher(memory_cost=1024, time_cost=1, parallelism=1).hash(DECOMPOSED)

        valid, upgraded = await hasher.verify(DECOMPOSED, legacy)

        assert valid
        assert upgraded is not None
        assert await hasher.verify(COMPOSED, upgraded) == (True, None)

    async def test_a_legacy_bcrypt_hash_of_the_password_as_typed_verifies_and_is_upgraded(
        self, hasher: PasswordHasher
    ) -> None:
        legacy = BcryptHasher(rounds=4).hash(DECOMPOSED.encode())

        valid, upgraded = await hasher.verify(DECOMPOSED, legacy)

        assert valid
        assert upgraded is not None
        assert upgraded.startswith("$argon2id$")
        assert await hasher.verify(COMPOSED, upgraded) == (True, None)


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

    async def test_a_queued_check_whose_client_has_gone_is_dropped_when_it_is_next(self) -> None:
        hasher = PasswordHasher(memory_cost=1024, time_cost=1, parallelism=1, concurrency=1)
        hashed = await hasher.hash("a password")
        events: list[str] = []
        real_verify = hasher._hash.verify_and_update

        def observed_verify(password: str | bytes, hashed: str | bytes) -> tuple[bool, str | None]:
            time.sleep(0.05)  # the others queue behind this one
            events.append("hashed")
            return real_verify(password, hashed)

        async def client_gone() -> bool:
            events.append("asked")
            return True

        hasher._hash.verify_and_update = observed_verify  # type: ignore[method-assign,assignment]
        # With one thread: one check runs and one waits in the thread's queue, ready for it.
        running = asyncio.create_task(hasher.verify("a password", hashed))
        ready = asyncio.create_task(hasher.verify("a password", hashed))
        await asyncio.sleep(0)
        with pytest.raises(ClientClosedRequest):
            await hasher.verify("a password", hashed, unless=client_gone)

        assert await running == (True, None)
        assert await ready == (True, None)
        # The third was asked only once the first was done, and nothing was hashed for it.
        assert events == ["hashed", "asked", "hashed"]

    async def test_a_check_whose_client_is_still_there_is_hashed(self, hasher: PasswordHasher) -> None:
        hashed = await hasher.hash("a password")

        async def client_gone() -> bool:
            return False

        assert await hasher.verify("a password", hashed, unless=client_gone) == (True, None)
        assert await hasher.verify("another", hashed, unless=client_gone) == (False, None)


# Hashes 12 passwords at the default memory cost (19 MiB) through Keel's hasher, two at a time,
# then prints how much resident memory the process kept: one reused block per hash thread.
_MEMORY_PROBE = """
import asyncio
from keel.core.security import PasswordHasher

def resident_mib():
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) // 1024

async def main():
    hasher = PasswordHasher(memory_cost=19456, time_cost=1, parallelism=1, concurrency=2)
    before = resident_mib()
    for _ in range(3):
        await asyncio.gather(*(hasher.hash("password") for _ in range(4)))
    print(resident_mib() - before)

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_keeps_at_most_one_argon2_block_per_hash_thread() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    assert int(done.stdout.strip()) <= 2 * 19 + 8  # two threads' blocks, and a little else
