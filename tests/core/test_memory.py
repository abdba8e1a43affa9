"""argon2's buffers go back to the kernel once a hash is done (keel.core.memory)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt; Linux only")

# Hashes at the default memory cost (19 MiB) on 1 to 4 threads at once, then prints how much
# resident memory the process kept. Fresh threads get fresh malloc arenas, as a server's do.
_PROBE = """
import sys
from concurrent.futures import ThreadPoolExecutor
from argon2 import PasswordHasher
from keel.core.memory import return_large_blocks_to_the_os

def resident_mib():
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) // 1024

if sys.argv[1] == "fixed":
    assert return_large_blocks_to_the_os()
hasher = PasswordHasher(memory_cost=19456, time_cost=1, parallelism=1)
before = resident_mib()
for threads in (1, 2, 3, 4):
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(hasher.hash, ["password"] * threads * 2))
print(resident_mib() - before)
"""


def _kept_mib(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=120, check=True)
    return int(done.stdout.strip())


def test_hash_buffers_are_not_kept_once_the_threshold_is_fixed() -> None:
    assert _kept_mib("fixed") < 10


def test_without_it_glibc_keeps_them_which_is_why_it_exists() -> None:
    # The control: if this stops holding (another allocator, a glibc change), the setting is moot.
    assert _kept_mib("default") > 19
