"""Password hashing edge cases and the password policy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest
from pwdlib.hashers.bcrypt import BcryptHasher

from keel.core.errors import ClientClosedRequest
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
