"""Keep argon2's large, short-lived buffers from staying in a worker's resident memory.

Every password hash or check allocates one block of the configured argon2 memory cost (19 MiB
by default) in a worker thread. glibc serves a block that large with mmap at first, but each
free of an mmapped block raises its dynamic threshold, so later blocks come from the thread's
malloc arena and stay resident after they are freed: a worker that had signed people in kept
around 300 MB. A fixed threshold turns the dynamic one off: every block over it is mapped on
its own and handed back to the kernel when it is freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
LARGE_BLOCK_BYTES = 1 << 20


def return_large_blocks_to_the_os(threshold: int = LARGE_BLOCK_BYTES) -> bool:
    """Apply the fixed threshold to this process; False where the C library has no mallopt (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
