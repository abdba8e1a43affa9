"""Where a worker's CPU goes: py-spy's raw samples, bucketed by the innermost layer they are in.

    py-spy record --pid <worker> --gil --rate 250 --duration 9 --format raw --output samples.txt
    uv run python bench/buckets.py samples.txt

With --gil only the thread holding the GIL is sampled, so idle waits on the network do not count
and each bucket is a share of the Python CPU the worker spent. A sample goes to the first bucket
whose marker appears in its innermost frame, then the next frame out, and so on.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("JWT verification (PyJWT)", ("decode_access_token",)),
    ("session check: Redis GET", ("SessionCache.get",)),
    ("rate-limit check (limits, Redis script)", ("RateLimiter.hit", "_limit_login")),
    ("password hashing (argon2)", ("argon2", "PasswordHasher")),
    (
        "SQL: SQLAlchemy + asyncpg",
        ("greenlet_spawn", "AsyncConnection.execute", "_execute_clauseelement", "AsyncEngine.connect", "Database.read"),
    ),
    ("Keel services: building response models", ("keel/services/",)),
    ("response validation + JSON (FastAPI, pydantic)", ("serialize_response", "_prepare_response_content")),
    ("request parsing + dependencies (FastAPI)", ("solve_dependencies", "request_body_to_args", "get_request_handler")),
    ("access log line (structlog, logging)", ("BoundLogger", "structlog", "logging/__init__")),
    ("metrics (prometheus_client)", ("observe_request", "prometheus_client")),
    ("Keel middleware (request id, headers)", ("request_context.py", "security_headers.py")),
    ("routing, Starlette and FastAPI middleware", ("routing.py", "starlette/", "fastapi/")),
    ("uvicorn HTTP (httptools)", ("httptools_impl", "uvicorn/")),
    ("event loop (uvloop, asyncio)", ("asyncio/", "uvloop", "Runner.run", "run_forever")),
]


def bucket_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, markers in BUCKETS:
            if any(marker in frame for marker in markers):
                return name
    return "other"


def main(path: Path) -> None:
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        counts[bucket_of(stack.split(";"))] += int(count)
    total = sum(counts.values())
    sys.stdout.write("| where | share of CPU |\n|---|---:|\n")
    for name, samples in counts.most_common():
        sys.stdout.write(f"| {name} | {samples / total:.0%} |\n")
    sys.stdout.write(f"\n{total} samples\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
