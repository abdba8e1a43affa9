"""Live updates, measured: memory per idle stream, and event latency between two processes.

    uv run python bench/events.py --redis-url redis://127.0.0.1:6379/9      # about a minute

It starts two `keel serve` processes (one worker each) on PostgreSQL (its own database,
keel_bench_events) and the Redis given, then:

(a) opens `--streams` idle event streams (500 by default) on the second, each held by a member of
    one shared list (100 streams a member), and reads its resident memory before and after;
(b) with those streams open, sends edits of that list to the first, one at a time, and times each
    until its event arrives on one more stream on the second: p50 and p99 over a few hundred. Every
    event also goes to every idle stream (each is read, and must receive them all), and the second
    worker's CPU over the edits is reported per event.

It prints a small report; the figures go in bench/REPORT.md under "Live updates" by hand. This is
a script, not a test: it asserts only that every stream opened and every event arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg
import httpx

SERVER_DSN = "postgresql://postgres@127.0.0.1:5432"
PASSWORD = "steady as she goes 1234"
SECRET = "bench-events-secret-key-that-is-long-enough-0123456789"
PER_VIEWER = 100  # idle streams per list member


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident memory of the process and its children (a `keel serve` may fork its worker)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    for one in pids:
        for line in Path(f"/proc/{one}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


async def fresh_database(name: str) -> str:
    server = await asyncpg.connect(f"{SERVER_DSN}/postgres")
    try:
        await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await server.execute(f'CREATE DATABASE "{name}"')
    finally:
        await server.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


def start(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "keel", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_ready(url: str, deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not start")


async def sign_up(http: httpx.AsyncClient, name: str) -> dict[str, str]:
    email = f"{name}@example.com"
    await http.post("/api/v1/auth/register", json={"email": email, "username": name, "password": PASSWORD})
    tokens = (await http.post("/api/v1/auth/login", data={"username": email, "password": PASSWORD})).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process and its children so far (a `keel serve` may fork its worker)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    ticks = 0
    for one in pids:
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class Drained:
    """An open stream read in the background: how many `todo.created` events it has received."""

    def __init__(self, response: httpx.Response) -> None:
        self.created = 0
        self.task = asyncio.create_task(self._read(response))

    async def _read(self, response: httpx.Response) -> None:
        async for line in response.aiter_lines():
            if line.startswith("event: todo.created"):
                self.created += 1


async def measure(
    first: str, second: str, pid: int, alice: dict[str, str], bob: dict[str, str],
    viewers: list[tuple[str, dict[str, str]]], streams: int, events: int,
) -> tuple[int, int, list[float], float, list[Drained]]:  # fmt: skip
    """With `streams` idle streams open on the second process, every one a member's of the list
    the edits go to, each edit sent to the first process is timed until its event arrives on a
    stream of the second, one at a time: so every event is also delivered to every idle stream.

    Returns the second process's RSS (KiB) before and after the idle streams opened, the latency
    samples, its CPU seconds over the edits, and the idle streams (for what each received).
    """
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=0)
    async with (
        httpx.AsyncClient(base_url=first, timeout=10) as one,
        httpx.AsyncClient(base_url=second, timeout=30, limits=limits) as two,
        AsyncExitStack() as open_streams,
    ):
        list_id = (await one.post("/api/v1/lists", json={"name": "bench"}, headers=alice)).json()["id"]
        for username, _ in [("bob", bob), *viewers]:
            added = await one.post(
                f"/api/v1/lists/{list_id}/members", json={"username": username, "role": "viewer"}, headers=alice
            )
            assert added.status_code == 201, added.text
        # Warm the route once, so the first stream's one-off costs (imports, caches) are not counted.
        async with two.stream("GET", "/api/v1/events", headers=bob) as warm:
            await anext(warm.aiter_bytes())
        await asyncio.sleep(1)
        before = rss_kib(pid)
        opened = [
            open_streams.enter_async_context(two.stream("GET", "/api/v1/events", headers=viewers[n % len(viewers)][1]))
            for n in range(streams)
        ]
        responses = await asyncio.gather(*opened)
        refused = [response for response in responses if response.status_code != 200]
        if refused:
            await refused[0].aread()
        assert not refused, f"{len(refused)} streams refused, e.g. {refused[0].status_code} {refused[0].text}"
        idle = [Drained(response) for response in responses]
        await asyncio.sleep(2)
        after = rss_kib(pid)

        samples: list[float] = []
        async with two.stream("GET", "/api/v1/events", headers=bob) as stream:
            lines = stream.aiter_lines()
            await anext(lines)  # the stream has started: subscribed
            cpu_before = cpu_seconds(pid)
            for n in range(events):
                sent = time.perf_counter()
                created = await one.post("/api/v1/todos", json={"title": f"e{n}", "list_id": list_id}, headers=alice)
                assert created.status_code == 201, created.text
                async with asyncio.timeout(10):
                    while not (await anext(lines)).startswith("event: todo.created"):
                        pass
                samples.append(time.perf_counter() - sent)
            cpu = cpu_seconds(pid) - cpu_before
        # Every idle stream had every event (given a moment for the last ones to be read).
        for _ in range(100):
            if all(drained.created == events for drained in idle):
                break
            await asyncio.sleep(0.1)
        for drained in idle:
            drained.task.cancel()
        return before, after, samples, cpu, idle


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default=os.environ.get("KEEL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"))
    parser.add_argument("--database", default="keel_bench_events")
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--events", type=int, default=300)
    args = parser.parse_args()

    database_url = await fresh_database(args.database)
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()  # the bench's own Redis database
    data = Path(tempfile.mkdtemp(prefix="keel-bench-events-"))
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("KEEL_")},
        "KEEL_SECRET_KEY": SECRET,
        "KEEL_DATA_DIR": str(data),
        "KEEL_ENVIRONMENT": "test",
        "KEEL_DATABASE_URL": database_url,
        "KEEL_REDIS_URL": args.redis_url,
        "KEEL_EVENTS_MAX_STREAMS_PER_USER": str(PER_VIEWER + 10),
        "KEEL_EVENTS_MAX_STREAMS": str(args.streams + 20),
        "KEEL_LOG_LEVEL": "WARNING",
        # A few hundred edits in seconds by one user, and a few sign-ups and sign-ins from one address.
        **{f"KEEL_RATE_LIMIT_{rule}": "100000/minute" for rule in ("WRITES", "REGISTER", "LOGIN", "LOGIN_IP")},
    }
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for n, port in enumerate(ports):  # one after the other: each migrates at start
            processes.append(start(port, env, data / f"serve-{n}.log"))
            wait_ready(urls[n])
        async with httpx.AsyncClient(base_url=urls[0], timeout=10) as http:
            alice, bob = await sign_up(http, "alice"), await sign_up(http, "bob")
            # Streams per account are capped (KEEL_EVENTS_MAX_STREAMS_PER_USER, at most 1,000): the
            # idle streams are spread over enough members to stay under it.
            names = [f"viewer{n}" for n in range(-(-args.streams // PER_VIEWER))]
            viewers = [(name, await sign_up(http, name)) for name in names]
        began = time.monotonic()
        before, after, samples, cpu, idle = await measure(
            urls[0], urls[1], processes[1].pid, alice, bob, viewers, args.streams, args.events
        )
        per_stream = (after - before) / args.streams
        elapsed = time.monotonic() - began
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=20)

    complete = sum(drained.created == args.events for drained in idle)
    print("Live updates (bench/events.py)")  # noqa: T201 - this script's report
    print(f"  idle streams on one worker : {args.streams}, every one a list member's")  # noqa: T201
    print(f"  RSS before / after         : {before / 1024:.1f} MiB / {after / 1024:.1f} MiB")  # noqa: T201
    print(f"  memory per idle stream     : {per_stream:.1f} KiB")  # noqa: T201
    print(f"  events across processes    : {len(samples)}, each also sent to every idle stream")  # noqa: T201
    print(f"  idle streams with them all : {complete} of {args.streams}")  # noqa: T201
    print(f"  worker CPU per event       : {cpu / max(1, len(samples)) * 1000:.2f} ms (to {args.streams + 1} streams)")  # noqa: T201
    print(  # noqa: T201
        f"  edit -> event latency      : p50 {percentile(samples, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(samples, 0.99) * 1000:.1f} ms, mean {statistics.mean(samples) * 1000:.1f} ms"
    )
    print(f"  measured in                : {elapsed:.1f} s")  # noqa: T201


if __name__ == "__main__":
    asyncio.run(main())
