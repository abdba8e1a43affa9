"""The scale benchmark (issue 25): Keel's hot paths under wrk at each data size, against the ceiling app.

    python3 -m uv run python bench/scale_wrk.py --sizes small 100k 1m --seconds 3

For each size, bench/scale.py makes `keel_scale_<size>` a fresh copy of its cached template, and
`keel serve` (one worker) and bench/ceiling.py serve it on ports of their own for the whole run,
on the first core; wrk runs on the last, with bench/run.py's own machinery (`serve`, `run_wrk`, the
Lua scripts). A private Redis on port 6395 (started here, flushed, stopped at the end unless it was
running) holds the sessions, a database per size. Every scenario runs `--rounds` times per app and
size at 32 connections after a warm-up: each round runs every size and both apps once, the order of
the sizes turning from round to round, so a machine that drifts slows every size alike. Each app's
rate is its best round's, its p50, p99 and CPU per request the median of its rounds (errors from
every round count). CPU per request is the serving worker's utime + stime over the run, from
/proc, divided by the requests it answered.

Writes bench/SCALE_REPORT.md (each scenario's req/s, p50, p99, non-2xx, CPU per request and ratio
to the ceiling at each size, and the growth of p99 and CPU per request from the first size to the
last) and bench/scale.svg (p99 and CPU per request against size). With `--sweep 32 64 256 512
1024`, the first size also gets a concurrency sweep of one worker: each `--sweep-scenarios` run at
each connection count, with the seconds in which no answer came and the p99 against the wait the
queue alone explains (connections / req/s, Little's law). Not here: 1,000 idle SSE streams with
events flowing (bench/events.py measures streams on their own).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import run  # bench/, this script's folder, leads sys.path
import scale
from redis import Redis

REDIS_PORT = 6395
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
CONNECTIONS = 32
TARGET_GROWTH = 1.25
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Scenario:
    shown: str
    lua: str
    path: str = ""  # for get_path.lua
    token: str = "bench"  # which token BENCH_TOKEN carries
    ceiling: bool = False


def scenarios(hot_post: int) -> dict[str, Scenario]:
    tag = scale.TAGS[0]
    return {
        "get_todos": Scenario("GET /todos?limit=20 (user 1's inbox)", "get_todos.lua", ceiling=True),
        "get_posts": Scenario("GET /posts?limit=20 (sort=new)", "get_posts.lua", ceiling=True),
        "post_todos": Scenario("POST /todos", "post_todos.lua", ceiling=True),
        "feed_top": Scenario("GET /posts?sort=top", "get_path.lua", "/api/v1/posts?limit=20&sort=top"),
        "tag_page": Scenario(f"GET /posts?tag={tag}", "get_path.lua", f"/api/v1/posts?limit=20&tag={tag}"),
        "post": Scenario("GET /posts/{busy post}", "get_path.lua", f"/api/v1/posts/{hot_post}"),
        "comments": Scenario(
            "GET /posts/{busy post}/comments", "get_path.lua", f"/api/v1/posts/{hot_post}/comments?limit=20"
        ),
        "shared_list": Scenario(
            "GET /todos?list_id=1 (50 members)", "get_path.lua", f"/api/v1/todos?limit=20&list_id={scale.KNOWN_LIST_ID}"
        ),
        "me": Scenario("GET /users/me", "get_me.lua", ceiling=True),
        "search": Scenario("GET /todos?q=milk", "get_path.lua", "/api/v1/todos?limit=20&q=milk"),
        "pat_todos": Scenario("GET /todos with a PAT", "get_path.lua", "/api/v1/todos?limit=20", token="pat"),
    }


@dataclass
class Measured:
    size: str
    scenario: str
    app: str
    result: run.Result
    cpu_ms: float


@dataclass
class SweepPoint:
    scenario: str
    app: str
    connections: int
    result: run.Result

    @property
    def queue_ms(self) -> float:
        """The mean time in the system that `connections` busy clients imply at this rate (Little's law)."""
        return self.connections / max(self.result.requests_per_s, 1e-9) * 1000


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def combined(rounds: list[tuple[run.Result, float]]) -> run.Result:
    """The rate of the best round (a neighbour on a shared machine can only slow a run down), and the
    median round's latencies: one 3-second round's p99 moved by about 40 % from run to run (a
    collection, a checkpoint), and the best round by rate is not the one with the steadiest tail."""
    results = [result for result, _ in rounds]
    best = max(results, key=lambda result: result.requests_per_s)
    whole = [result.fewest_per_second for result in results if result.fewest_per_second >= 0]
    return replace(
        best,
        p50_ms=statistics.median(result.p50_ms for result in results),
        p99_ms=statistics.median(result.p99_ms for result in results),
        # Failures and stalls from every round count.
        non2xx=sum(result.non2xx for result in results),
        socket_errors=sum(result.socket_errors for result in results),
        stalled_seconds=sum(result.stalled_seconds for result in results),
        fewest_per_second=min(whole, default=-1),
    )


def measured_run(server: run.Server, name: str, scenario: Scenario, seconds: float, env: dict[str, str],
                 cpus: list[int] | None, workdir: Path) -> tuple[run.Result, float]:  # fmt: skip
    pids = server.workers()
    before = cpu_ticks(pids)
    result = run.run_wrk(server, name, CONNECTIONS, seconds, env=env, cpus=cpus, workdir=workdir, lua=scenario.lua)
    cpu_ms = (cpu_ticks(pids) - before) / CLOCK_TICKS * 1000 / max(1, result.requests)
    return result, cpu_ms


def ensure_redis() -> subprocess.Popen[bytes] | None:
    """A private Redis for this run, unless one is on its port already (then it is only flushed)."""
    started = None
    if not run.port_open(REDIS_PORT):
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no"]
        started = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        run.wait_for(lambda: run.port_open(REDIS_PORT), 30)
    Redis.from_url(REDIS_URL).flushall()
    return started


@dataclass
class Stage:
    """One size for the whole run: its fresh database, a private Redis database, and Keel and the
    ceiling app serving it on ports of their own, with the tokens its scenarios send."""

    size: str
    seed: scale.Seed
    database: str
    keel: run.Server
    ceiling: run.Server
    tokens: dict[str, str]
    writer: str

    def scenarios(self) -> dict[str, Scenario]:
        return scenarios(self.seed.posts)

    def servers(self, scenario: Scenario) -> list[run.Server]:
        return [self.ceiling, self.keel] if scenario.ceiling else [self.keel]

    def sign_in_again(self) -> None:
        """Fresh access tokens: they last 15 minutes, and a whole run lasts longer (a sweep that began
        15 minutes after the sign-in had its answers turn into 401s midway)."""
        self.tokens["bench"], self.writer = sign_in(self.keel)

    def wrk_env(self, scenario: Scenario) -> dict[str, str]:
        return {
            "BENCH_TOKEN": self.tokens[scenario.token],
            "BENCH_WRITER_TOKEN": self.writer,
            "BENCH_PATH": scenario.path,
            "BENCH_USERS": str(self.seed.users),
        }


def open_stage(size: str, index: int, workdir: Path, fingerprint: str, stack: ExitStack) -> Stage:
    seed = scale.SIZES[size]
    scale.prepare(size, seed, rebuild=False, fingerprint=fingerprint)
    database = scale.database_name(size)
    # Each size has its own Redis database: the seeded sessions' ids are the same at every size.
    redis_url = f"redis://127.0.0.1:{REDIS_PORT}/{index}"
    keel_port, ceiling_port = run.KEEL_PORT + 10 * index, run.CEILING_PORT + 10 * index
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("KEEL_", "PROMETHEUS_"))},
        "KEEL_ENVIRONMENT": "production",
        "KEEL_SECRET_KEY": secrets.token_urlsafe(48),
        "KEEL_DATABASE_URL": scale.sqlalchemy_url(database),
        "KEEL_REDIS_URL": redis_url,
        "KEEL_EMAIL_DELIVERY": "in-process",
        "KEEL_ALLOW_FILE_MAIL_IN_PRODUCTION": "true",
        "KEEL_DATA_DIR": str(workdir / f"data-{size}"),
        "KEEL_PUBLIC_URL": f"http://127.0.0.1:{keel_port}",
        "BENCH_DSN": scale.dsn(database),
        "BENCH_REDIS_URL": redis_url,
        **{f"KEEL_RATE_LIMIT_{rule}": run.UNLIMITED for rule in ("LOGIN", "LOGIN_IP", "REFRESH", "WRITES")},
    }
    server_cpus = server_cores()
    keel_cmd = run.pinned([str(run.BIN / "keel"), "serve", "--port", str(keel_port), "--workers", "1"], server_cpus)
    ceiling_cmd = run.pinned(
        [str(run.BIN / "uvicorn"), "ceiling:app", "--app-dir", str(run.BENCH), "--port", str(ceiling_port),
         "--no-access-log", "--log-level", "warning"],
        server_cpus,
    )  # fmt: skip
    keel = stack.enter_context(run.serve(f"keel-{size}", keel_cmd, keel_port, env, workdir))
    ceiling = stack.enter_context(run.serve(f"ceiling-{size}", ceiling_cmd, ceiling_port, env, workdir))
    bench, writer = sign_in(keel)
    created = httpx.post(
        keel.url + "/api/v1/tokens",
        json={"name": "scale", "scopes": ["todos:read"], "expires_in_days": 30},
        headers={"Authorization": f"Bearer {bench}"},
        timeout=30,
    )
    created.raise_for_status()
    return Stage(size, seed, database, keel, ceiling, {"bench": bench, "pat": created.json()["token"]}, writer)


def sign_in(keel: run.Server) -> tuple[str, str]:
    """Access tokens of user 1 (whose data the reads read) and of user 2 (who writes)."""
    bench = run.login(keel.url, scale.KNOWN_USER_EMAIL, scale.PASSWORD)["access_token"]
    writer = run.login(keel.url, "user2@scale.example", scale.PASSWORD)["access_token"]
    return bench, writer


def server_cores() -> list[int] | None:
    cores = run.cores()
    return cores[:-1] if len(cores) > 1 else None


def wrk_cores() -> list[int] | None:
    cores = run.cores()
    return [cores[-1]] if len(cores) > 1 else None


def app_name(server: run.Server) -> str:
    return server.name.split("-", 1)[0]


def measure(stages: list[Stage], args: argparse.Namespace, workdir: Path) -> list[Measured]:
    """Every scenario at every size, the sizes interleaved round by round.

    A shared machine drifts: a neighbour's spell of CPU steal or a slower hash throughout a
    minute. Measured one size after the other, that drift landed on the last size and read as
    growth (data-independent `/users/me` once grew x1.4). Here each round runs every size and both
    apps once, and the order of the sizes turns from round to round, so drift falls on every size
    alike and the growth between them is the data's.
    """
    wrk_cpus = wrk_cores()
    found: list[Measured] = []
    for name in stages[0].scenarios():
        if args.sweep_only or (args.scenarios and name not in args.scenarios):
            continue
        for stage in stages:
            stage.sign_in_again()
            asyncio.run(analyze(stage.database))
            scenario = stage.scenarios()[name]
            for server in stage.servers(scenario):  # a warm-up
                run.run_wrk(server, name, CONNECTIONS, 1, env=stage.wrk_env(scenario), cpus=wrk_cpus,
                            workdir=workdir, lua=scenario.lua)  # fmt: skip
        tried: dict[tuple[str, str], list[tuple[run.Result, float]]] = {}
        for number in range(args.rounds):
            turn = number % len(stages)
            for stage in stages[turn:] + stages[:turn]:
                scenario = stage.scenarios()[name]
                for server in stage.servers(scenario):
                    asyncio.run(quiet(stage.database))
                    tried.setdefault((stage.size, app_name(server)), []).append(
                        measured_run(server, name, scenario, args.seconds, stage.wrk_env(scenario), wrk_cpus, workdir)
                    )
        for (size, app), rounds in tried.items():
            result = combined(rounds)
            cpu_ms = statistics.median(cpu for _, cpu in rounds)
            found.append(Measured(size, name, app, result, cpu_ms))
            scale.say(
                f"{size:5} {app:7} {name:11} {result.requests_per_s:7.0f} req/s  p50 {result.p50_ms:6.1f}"
                f"  p99 {result.p99_ms:6.1f} ms  cpu {cpu_ms:5.2f} ms/req  non-2xx {result.non2xx}"
                f"  (rounds: {', '.join(f'{r.requests_per_s:.0f}/{r.p99_ms:.0f}' for r, _ in rounds)} req/s/p99)"
            )
    return found


def sweep_stage(stage: Stage, args: argparse.Namespace, workdir: Path) -> list[SweepPoint]:
    """Each app through every connection count, `--sweep-rounds` times, the counts in turn within a
    round: one 8-second point's p99 varied up to 5x between runs (at 256 connections, `POST /todos`
    had 1.4 s in a sweep and 0.4-0.6 s in three runs of its own), so a point is its rounds combined
    as a scenario's are (`combined`), and drift falls on every count alike."""
    wrk_cpus = wrk_cores()
    points: list[SweepPoint] = []
    every = stage.scenarios()
    for name in args.sweep_scenarios:
        stage.sign_in_again()  # one scenario's sweep of both apps takes about 5 minutes
        wrk_env = stage.wrk_env(every[name])
        # The ceiling app runs the sweep too: a tail that it shares is the stack's (uvicorn, the
        # kernel, wrk), one that only Keel has is Keel's. Each app runs its whole sweep in turn:
        # interleaved, the ceiling's aftermath at one count (its own pool timeouts and failed
        # requests still unwinding) landed in Keel's p99 at the next.
        for server in (stage.keel, stage.ceiling):
            # A warm-up, so the first point (the base of the growth ratios) is not a cold start.
            run.run_wrk(
                server, name, args.sweep[0], 2, env=wrk_env, cpus=wrk_cpus, workdir=workdir, lua=every[name].lua
            )
            tried: dict[int, list[tuple[run.Result, float]]] = {connections: [] for connections in args.sweep}
            for _ in range(args.sweep_rounds):
                for connections in args.sweep:
                    drained(server.port)
                    asyncio.run(analyze(stage.database))
                    asyncio.run(quiet(stage.database))
                    result = run.run_wrk(
                        server, name, connections, args.sweep_seconds, env=wrk_env, cpus=wrk_cpus,
                        workdir=workdir, lua=every[name].lua,
                    )  # fmt: skip
                    tried[connections].append((result, 0.0))
            for connections, rounds in tried.items():
                result = combined(rounds)
                point = SweepPoint(name, app_name(server), connections, result)
                points.append(point)
                scale.say(
                    f"sweep {name:11} {point.app:7} c={connections:5} {result.requests_per_s:7.0f} req/s"
                    f"  p50 {result.p50_ms:7.1f}  p99 {result.p99_ms:7.1f} ms  queue {point.queue_ms:7.1f} ms"
                    f"  non-2xx {result.non2xx + result.socket_errors}  stalled {result.stalled_seconds} s"
                    f"  (rounds: {', '.join(f'{r.requests_per_s:.0f}/{r.p99_ms:.0f}' for r, _ in rounds)} req/s/p99)"
                )
    return points


def sweep_report(points: list[SweepPoint], args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The sweep's table and the targets it missed: no failures, no second without an answer, and a
    p99 that grows no faster than the queue explains (within TARGET_GROWTH of the queue's growth)."""
    if not points:
        return [], []
    shown = scenarios(0)
    missed: list[str] = []
    lines = [
        "",
        "## Concurrency sweep (one worker)",
        "",
        "Queue = connections ÷ req/s, the mean time in the system that so many busy clients imply at",
        "that rate (Little's law); growth is from the fewest connections, p99's against the queue's.",
        f"Each point is {args.sweep_rounds} runs of {args.sweep_seconds:g} s, the counts in turn within each "
        "round: its best rate and its median p50 and p99; failures and seconds without an answer from every run.",
        "",
        "The ceiling app's rows are the same stack with the least work (uvicorn, the kernel, wrk): the",
        "targets apply to Keel's rows, and a tail both share is not Keel's own.",
        "",
        "| scenario | app | connections | req/s | p50 ms | p99 ms | queue ms | p99 growth / queue growth "
        "| non-2xx | seconds with no answer | fewest answers in a second |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for name, app in dict.fromkeys((point.scenario, point.app) for point in points):
        mine = [point for point in points if (point.scenario, point.app) == (name, app)]
        base = mine[0]
        for point in mine:
            r = point.result
            growth = (r.p99_ms / base.result.p99_ms) / (point.queue_ms / base.queue_ms)
            lines.append(
                f"| {shown[name].shown} | {app} | {point.connections:,} | {r.requests_per_s:,.0f} | {r.p50_ms:.1f} | "
                f"{r.p99_ms:.1f} | {point.queue_ms:.1f} | {growth:.2f} | {r.non2xx + r.socket_errors} | "
                f"{r.stalled_seconds} | {r.fewest_per_second:,} |"
            )
            if app != "keel":
                continue
            if r.non2xx or r.socket_errors:
                missed.append(
                    f"sweep {name} c={point.connections}: {r.non2xx} non-2xx, {r.socket_errors} socket errors"
                )
            if r.stalled_seconds:
                missed.append(f"sweep {name} c={point.connections}: {r.stalled_seconds} s with no answer")
            if growth >= TARGET_GROWTH:
                missed.append(f"sweep {name} c={point.connections}: p99 grew x{growth:.2f} the queue's growth")
    return lines, missed


CLOSE_WAIT = "08"  # the state's number in /proc/net/tcp


def abandoned_connections(port: int) -> int:
    """Sockets of the server on `port` whose client has closed while the server has not (CLOSE_WAIT).

    When wrk stops, each of its connections leaves a request the server goes on working through,
    and the server keeps the socket until it has answered into the void.
    """
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == CLOSE_WAIT and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def drained(port: int, limit_s: float = 60) -> None:
    """Wait until the server has finished the requests of the clients that left (see
    `abandoned_connections`): a sweep point that starts before then had a p99 of 7 s at 1,024
    connections, where the same point after a pause had 2-3 s."""
    deadline = time.monotonic() + limit_s
    while abandoned_connections(port) and time.monotonic() < deadline:
        time.sleep(0.1)


async def quiet(database: str, limit_s: float = 60) -> None:
    """Wait until no statement runs in the database: a client gone from wrk leaves the statements
    it started running (the ceiling's feed counts take seconds each at 1M), and the next app's
    round must not pay for them."""
    import asyncpg

    connection = await asyncpg.connect(scale.dsn(database))
    try:
        for _ in range(int(limit_s * 10)):
            busy = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state = 'active'"
                " AND pid <> pg_backend_pid()",
                database,
            )
            if not busy:
                return
            await asyncio.sleep(0.1)
    finally:
        await connection.close()


async def analyze(database: str) -> None:
    """Fresh statistics before each scenario, as bench/run.py does (a write scenario adds rows)."""
    import asyncpg

    connection = await asyncpg.connect(scale.dsn(database))
    try:
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


# --- the report and the chart -------------------------------------------------------------------
def report(
    sizes: list[str], measured: list[Measured], sweep: list[SweepPoint], args: argparse.Namespace
) -> tuple[str, list[str]]:
    by = {(m.size, m.scenario, m.app): m for m in measured}
    names = list(dict.fromkeys(m.scenario for m in measured))
    shown = scenarios(0)
    first, last = sizes[0], sizes[-1]
    missed: list[str] = []
    lines = [
        "# Keel scale benchmark",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python3 -m uv run python bench/scale_wrk.py "
        f"{shlex.join(sys.argv[1:])}`: 1 worker, {CONNECTIONS} "
        f"connections, {args.rounds} rounds per scenario after a 1 s warm-up, each running every size and both apps "
        "once, the sizes' order turning each round (a drifting machine slows every size alike): req/s is the best "
        "round's, p50, p99 and CPU/req the median round's; wrk pinned to the last core, the servers to the others.",
        "CPU/req is the worker's utime + stime over the run divided by its requests. Ratio = Keel req/s ÷ the "
        "ceiling's for the same scenario, measured seconds apart (only the scenarios the ceiling answers).",
        "",
        "| scenario | size | req/s | p50 ms | p99 ms | non-2xx | CPU/req ms | ceiling req/s | ceiling CPU/req ms "
        "| ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for name in names:
        for size in sizes:
            keel = by.get((size, name, "keel"))
            if keel is None:
                continue
            ceiling = by.get((size, name, "ceiling"))
            r = keel.result
            ceiling_cells = (
                f"{ceiling.result.requests_per_s:,.0f} | {ceiling.cpu_ms:.2f} | "
                f"{r.requests_per_s / ceiling.result.requests_per_s:.2f}"
                if ceiling
                else "- | - | -"
            )
            lines.append(
                f"| {shown[name].shown} | {size} | {r.requests_per_s:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
                f"{r.non2xx + r.socket_errors} | {keel.cpu_ms:.2f} | {ceiling_cells} |"
            )
            if r.non2xx or r.socket_errors:
                missed.append(f"{name} at {size}: {r.non2xx} non-2xx, {r.socket_errors} socket errors")
    lines += ["", f"Growth from {first} to {last} (target: below x{TARGET_GROWTH}):", ""]
    lines += ["| scenario | p99 | CPU/req |", "|---|---:|---:|"]
    for name in names:
        a, b = by.get((first, name, "keel")), by.get((last, name, "keel"))
        if a is None or b is None:
            continue
        p99, cpu = b.result.p99_ms / a.result.p99_ms, b.cpu_ms / a.cpu_ms
        lines.append(f"| {shown[name].shown} | x{p99:.2f} | x{cpu:.2f} |")
        if p99 >= TARGET_GROWTH or cpu >= TARGET_GROWTH:
            missed.append(f"{name}: p99 x{p99:.2f}, CPU/req x{cpu:.2f} from {first} to {last}")
    lines += ["", "![p99 and CPU per request against data size](scale.svg)"]
    sweep_lines, sweep_missed = sweep_report(sweep, args)
    lines += sweep_lines
    missed += sweep_missed
    lines += ["", "## Targets", ""]
    lines += [f"- missed: {item}" for item in missed] or ["- every target was met."]
    return "\n".join(lines) + "\n", missed


def chart(sizes: list[str], measured: list[Measured]) -> str:
    """Two panels, p99 and CPU per request, one line per scenario, sizes evenly spaced: plain SVG."""
    by = {(m.size, m.scenario): m for m in measured if m.app == "keel"}
    names = list(dict.fromkeys(m.scenario for m in measured))
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf", "#393b79", "#637939"]  # fmt: skip
    width, height, pad = 420, 300, 50
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * width + 220}" height="{height}" '
        'font-family="sans-serif" font-size="11">'
    ]
    panels: list[tuple[str, Callable[[Measured], float]]] = [
        ("p99 (ms)", lambda m: m.result.p99_ms),
        ("CPU per request (ms)", lambda m: m.cpu_ms),
    ]
    for panel, (title, value) in enumerate(panels):
        left = panel * width
        top_value = max((value(m) for m in by.values()), default=1) * 1.1 or 1

        def x(index: int, left: int = left) -> float:
            return left + pad + index * (width - 2 * pad) / max(1, len(sizes) - 1)

        def y(number: float, top_value: float = top_value) -> float:
            return height - pad - number / top_value * (height - 2 * pad)

        parts.append(f'<text x="{left + width / 2}" y="20" text-anchor="middle" font-size="13">{title}</text>')
        parts.append(
            f'<line x1="{left + pad}" y1="{height - pad}" x2="{left + width - pad}" y2="{height - pad}" stroke="#000"/>'
        )
        parts.append(f'<line x1="{left + pad}" y1="{pad}" x2="{left + pad}" y2="{height - pad}" stroke="#000"/>')
        for tick in range(5):
            number = top_value * tick / 4
            parts.append(f'<text x="{left + pad - 4}" y="{y(number) + 4:.1f}" text-anchor="end">{number:.1f}</text>')
        for index, size in enumerate(sizes):
            parts.append(f'<text x="{x(index):.1f}" y="{height - pad + 16}" text-anchor="middle">{size}</text>')
        for number, name in enumerate(names):
            points = [(x(i), y(value(by[(s, name)]))) for i, s in enumerate(sizes) if (s, name) in by]
            colour = colours[number % len(colours)]
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
    for number, name in enumerate(names):
        colour = colours[number % len(colours)]
        parts.append(f'<rect x="{2 * width + 10}" y="{40 + 16 * number}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{2 * width + 25}" y="{49 + 16 * number}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=list(scale.SIZES), default=list(scale.SIZES))
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs per app and scenario: the best rate, the median latencies"
    )
    parser.add_argument("--scenarios", nargs="*", help="only these scenarios")
    parser.add_argument("--report", type=Path, default=run.BENCH / "SCALE_REPORT.md")
    parser.add_argument("--chart", type=Path, default=run.BENCH / "scale.svg")
    parser.add_argument("--sweep", type=int, nargs="*", default=[], help="connection counts for the sweep")
    parser.add_argument("--sweep-scenarios", nargs="+", default=["get_todos", "me", "post_todos"])
    parser.add_argument("--sweep-seconds", type=float, default=8)
    parser.add_argument(
        "--sweep-rounds", type=int, default=3, help="runs per sweep point: the best rate, the median latencies"
    )
    parser.add_argument("--sweep-only", action="store_true", help="only the sweep (at the first size)")
    args = parser.parse_args()
    # A timeout or kill sends SIGTERM: leave through the cleanup code, which stops every server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run.ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="keel-scale-"))
    redis = ensure_redis()
    fingerprint = scale.migrations_fingerprint()
    try:
        with ExitStack() as stack:
            stages = [open_stage(size, index, workdir, fingerprint, stack) for index, size in enumerate(args.sizes)]
            measured = measure(stages, args, workdir)
            sweep = sweep_stage(stages[0], args, workdir) if args.sweep else []
    finally:
        if redis is not None:
            redis.terminate()
            with suppress(subprocess.TimeoutExpired):
                redis.wait(10)
    text, missed = report(args.sizes, measured, sweep, args)
    args.report.write_text(text)
    args.chart.write_text(chart(args.sizes, measured))
    scale.say(f"wrote {args.report} and {args.chart}: {len(missed)} target(s) missed")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
