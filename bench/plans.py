"""The SQL Keel runs on its hot paths, explained at each data size (issue 25).

    python3 -m uv run python bench/plans.py --sizes small 100k 1m    # writes bench/SCALE_PLANS.md

For each size, bench/scale.py first makes `keel_scale_<size>` a fresh copy of its cached template
(building it if needed). Keel itself then answers each scenario's requests, in this process,
through httpx's ASGI transport, without Redis so that every request's session check and personal
access token lookup reach the database as a cache miss does. Every statement the app sends is
recorded with its parameters as the driver got them: the driver path (`Database.rows`, patched
`asyncpg.Connection.fetch`) and the ORM path (SQLAlchemy's `before_cursor_execute`). Nothing here
writes SQL of its own for a scenario.

Each distinct statement is then run on its own connection, inside a transaction that is rolled
back (so writes change nothing): `EXPLAIN (ANALYZE, BUFFERS)` with the app's parameters (the
custom plan asyncpg's first five executions of a prepared statement get), the same under
`plan_cache_mode = force_generic_plan` (the plan PostgreSQL may settle on for a statement asyncpg
keeps prepared), and the statement itself 7 times for its median time. Sequential scans on the big
tables are flagged. The output compares each statement's time and buffers across the sizes and
shows the largest size's plans, abbreviated.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import scale  # bench/, this script's folder, leads sys.path
from sqlalchemy import event
from sqlalchemy.engine import Engine

from keel.core.db.engine import request_server_settings

BENCH = Path(__file__).resolve().parent
API = "/api/v1"
BIG_TABLES = {"user", "todo", "list", "list_member", "post", "post_tag", "vote", "comment"}
TIMED_RUNS = 7
GENERIC = "keel_scale_generic"


# --- recording what the app runs ----------------------------------------------------------------
@dataclass
class Recorder:
    """The statements sent while a scenario's requests are in flight, grouped by scenario."""

    scenario: str | None = None
    statements: dict[str, list[tuple[str, tuple[Any, ...]]]] = field(default_factory=dict)

    def note(self, sql: str, args: tuple[Any, ...]) -> None:
        if self.scenario is not None:
            self.statements.setdefault(self.scenario, []).append((sql, args))

    def install(self) -> None:
        original = asyncpg.connection.Connection.fetch
        recorder = self

        async def fetch(connection: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
            recorder.note(query, args)
            return await original(connection, query, *args, **kwargs)

        asyncpg.connection.Connection.fetch = fetch  # type: ignore[method-assign,assignment]

        def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
            if not many:
                recorder.note(statement, tuple(parameters or ()))

        event.listen(Engine, "before_cursor_execute", before)


Request = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


@dataclass
class Known:
    """What the scenarios need from the signed-in session."""

    access: str = ""
    refresh: str = ""
    personal: str = ""
    hot_post: int = 0


def scenarios(known: Known) -> dict[str, list[Request]]:
    """Each hot path, as the requests a client makes (the bench user is user 1: 10k todos, list 1)."""

    def get(path: str, token: str | None = None) -> Request:
        def send(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
            headers = {"Authorization": f"Bearer {token or known.access}"}
            return client.get(API + path, headers=headers)

        return send

    def refresh(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        return client.post(API + "/auth/refresh", json={"refresh_token": known.refresh})

    tag = scale.TAGS[0]
    return {
        "todos page 1": [get("/todos?limit=20")],
        "todos q=milk": [get("/todos?limit=20&q=milk")],
        "todos label=work": [get("/todos?limit=20&label=work")],
        "todos list_id=1 (shared list)": [get(f"/todos?limit=20&list_id={scale.KNOWN_LIST_ID}")],
        "shared list and members": [get(f"/lists/{scale.KNOWN_LIST_ID}"), get(f"/lists/{scale.KNOWN_LIST_ID}/members")],
        "my lists": [get("/lists")],
        "feed sort=new": [get("/posts?limit=20")],
        "feed sort=top": [get("/posts?limit=20&sort=top")],
        f"tag page tag={tag} sort=new": [get(f"/posts?limit=20&tag={tag}")],
        f"tag page tag={tag} sort=top": [get(f"/posts?limit=20&tag={tag}&sort=top")],
        "tag list (GET /tags)": [get("/tags?limit=20")],
        "post with comments": [get(f"/posts/{known.hot_post}"), get(f"/posts/{known.hot_post}/comments?limit=20")],
        "/users/me": [get("/users/me")],
        "PAT auth: todos page 1": [get("/todos?limit=20", known.personal)],
        "refresh": [refresh],
    }


@asynccontextmanager
async def keel_client(database: str) -> Any:
    from keel.main import create_app

    settings = scale.keel_settings(database).model_copy(update={"tune_gc": False, "email_delivery": "in-process"})
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50000))
        headers = {"User-Agent": "keel-scale-plans/1.0"}
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers) as client:
            yield client


async def record(database: str, hot_post: int, recorder: Recorder) -> dict[str, Any]:
    """Sign in, make a personal access token, then run every scenario's requests, recording their SQL.

    The answers' totals, by scenario.
    """
    recorder.statements.clear()
    totals: dict[str, Any] = {}
    known = Known(hot_post=hot_post)
    async with keel_client(database) as client:
        recorder.scenario = "sign-in"
        answer = await client.post(
            API + "/auth/login", data={"username": scale.KNOWN_USER_EMAIL, "password": scale.PASSWORD}
        )
        answer.raise_for_status()
        known.access, known.refresh = answer.json()["access_token"], answer.json()["refresh_token"]
        recorder.scenario = None
        answer = await client.post(
            API + "/tokens",
            json={"name": "scale", "scopes": ["todos:read", "posts:read", "lists:read"], "expires_in_days": 30},
            headers={"Authorization": f"Bearer {known.access}"},
        )
        answer.raise_for_status()
        known.personal = answer.json()["token"]
        for name, requests in scenarios(known).items():
            recorder.scenario = name
            for send in requests:
                answer = await send(client)
                if answer.status_code != 200:
                    raise SystemExit(f"{name}: {answer.status_code} {answer.text[:300]}")
                body = answer.json()
                if isinstance(body, dict) and "total" in body:
                    totals[name] = body["total"]
                if name == "refresh":
                    known.refresh = body["refresh_token"]
            recorder.scenario = None
    return totals


# --- explaining it ------------------------------------------------------------------------------
@dataclass
class Explained:
    sql: str
    args: tuple[Any, ...]
    median_ms: float
    plan: dict[str, Any]
    generic: dict[str, Any] | None
    seq_scans: list[str]
    generic_seq_scans: list[str]

    @property
    def execution_ms(self) -> float:
        return float(self.plan.get("Execution Time", math.nan))

    @property
    def buffers(self) -> int:
        return buffers(self.plan["Plan"])

    @property
    def generic_ms(self) -> float | None:
        return float(self.generic["Execution Time"]) if self.generic else None


def buffers(node: dict[str, Any]) -> int:
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from walk(child)


def seq_scans(plan: dict[str, Any]) -> list[str]:
    found = []
    for node in walk(plan["Plan"]):
        if node["Node Type"] == "Seq Scan" and node.get("Relation Name") in BIG_TABLES:
            scanned = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * node.get("Actual Loops", 1)
            found.append(f"{node['Relation Name']} ({scanned:,.0f} rows read)")
    return found


def literal(value: Any) -> str:
    """A parameter as an SQL literal for EXECUTE, left untyped so PREPARE's inferred types apply."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime | date):
        return f"'{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


async def explain(connection: asyncpg.Connection, sql: str, args: tuple[Any, ...]) -> Explained:
    try:
        times = []
        for _ in range(TIMED_RUNS):
            async with rolled_back(connection):
                started = time.perf_counter()
                await connection.fetch(sql, *args)
                times.append((time.perf_counter() - started) * 1000)
        async with rolled_back(connection):
            plan = json.loads(await connection.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args))[0]
        median = statistics.median(times)
    except asyncpg.PostgresError as exc:
        # A write the app committed cannot always run again (the same new key): its plan, unexecuted.
        scale.say(f"    not run again ({type(exc).__name__}), plan only: {short(sql, 60)}")
        plan = json.loads(await connection.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))[0]
        median = math.nan
    generic: dict[str, Any] | None = None
    try:
        async with rolled_back(connection):
            await connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await connection.execute(f"PREPARE {GENERIC} AS {sql}")
            values = ", ".join(literal(value) for value in args)
            execute = f"EXECUTE {GENERIC}({values})" if args else f"EXECUTE {GENERIC}"
            generic = json.loads(await connection.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {execute}"))[0]
    except asyncpg.PostgresError as exc:
        scale.say(f"    no generic plan ({type(exc).__name__}): {short(sql, 60)}")
    finally:
        # Prepared statements outlive transactions; asyncpg's own must stay.
        if await connection.fetchval("SELECT 1 FROM pg_prepared_statements WHERE name = $1", GENERIC):
            await connection.execute(f"DEALLOCATE {GENERIC}")
    return Explained(sql, args, median, plan, generic, seq_scans(plan), seq_scans(generic) if generic else [])


@asynccontextmanager
async def rolled_back(connection: asyncpg.Connection) -> Any:
    transaction = connection.transaction()
    await transaction.start()
    try:
        yield
    finally:
        await transaction.rollback()


async def explain_all(
    database: str, statements: dict[str, list[tuple[str, tuple[Any, ...]]]]
) -> dict[str, list[Explained]]:
    # With the settings Keel's own connections have (JIT off above all): the generic plans here
    # measured JIT compiling (the feed's at 477 ms), which Keel's statements never do.
    connection = await asyncpg.connect(
        scale.dsn(database), server_settings=request_server_settings(scale.keel_settings(database))
    )
    explained: dict[str, list[Explained]] = {}
    # A statement several scenarios send (the session check) is explained under the first one.
    seen: set[str] = set()
    try:
        for scenario, sent in statements.items():
            for sql, args in sent:
                if sql in seen or not sql.lstrip().upper().startswith(("SELECT", "WITH", "UPDATE", "INSERT", "DELETE")):
                    continue
                seen.add(sql)
                explained.setdefault(scenario, []).append(await explain(connection, sql, args))
    finally:
        await connection.close()
    return explained


# --- the report ---------------------------------------------------------------------------------
def short(text: str, width: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render(node: dict[str, Any], depth: int = 0) -> list[str]:
    """A plan node per line: what it does, on what, its actual rows, time and buffers."""
    label = node["Node Type"]
    if node.get("Index Name"):
        label += f" using {node['Index Name']} on {node.get('Relation Name', '?')}"
    elif node.get("Relation Name"):
        label += f" on {node['Relation Name']}"
    if node.get("Subplan Name"):
        label = f"{node['Subplan Name']}: {label}"
    loops = node.get("Actual Loops", 1)
    figures = f"rows={node.get('Actual Rows', 0):,.0f} loops={loops:,} time={node.get('Actual Total Time', 0):.2f} ms"
    figures += f" buffers={buffers(node):,}"
    if node.get("Rows Removed by Filter"):
        figures += f" removed by filter={node['Rows Removed by Filter']:,}"
    lines = [f"{'  ' * depth}-> {label} ({figures})"]
    for key in ("Index Cond", "Filter", "Join Filter", "Hash Cond", "Sort Key"):
        if key in node:
            value = node[key] if isinstance(node[key], str) else ", ".join(node[key])
            lines.append(f"{'  ' * depth}     {key}: {short(value, 100)}")
    for child in node.get("Plans", []):
        lines += render(child, depth + 1)
    return lines


def statement_name(sql: str) -> str:
    """A short handle for a statement: its verb and the tables it names."""
    words = sql.replace('"', " ").replace("(", " ").replace(",", " ").split()
    tables = []
    for before, word in itertools.pairwise(words):
        if before.upper() in ("FROM", "JOIN", "UPDATE", "INTO") and word not in tables and word.isidentifier():
            tables.append(word)
    return f"{words[0].upper()} {'/'.join(tables)}"


def report(
    sizes: list[str],
    results: dict[str, dict[str, list[Explained]]],
    records: dict[str, Any],
    totals: dict[str, dict[str, Any]],
) -> str:
    largest, smallest = sizes[-1], sizes[0]
    lines = [
        "# Keel at scale: the hot paths' plans",
        "",
        f"Generated {datetime.now().astimezone():%Y-%m-%d %H:%M %Z} by `python3 -m uv run python bench/plans.py "
        f"--sizes {' '.join(sizes)}` (see its docstring for the method; bench/scale.py for the data).",
        "",
        "| size | users | todos | posts | votes | comments | post_tag | database | load (once) | clone |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        record = records[size]
        rows = record["rows"]
        lines.append(
            f"| {size} | {rows['user']:,} | {rows['todo']:,} | {rows['post']:,} | {rows['vote']:,} | "
            f"{rows['comment']:,} | {rows['post_tag']:,} | {record['bytes'] / 2**30:.2f} GiB | "
            f"{record['load_seconds']:.0f} s | {record['clone_seconds']:.1f} s |"
        )
    lines += ["", "The `total` each page answered:", "", "| scenario | " + " | ".join(sizes) + " |"]
    lines.append("|---|" + "---:|" * len(sizes))
    for scenario in totals[largest]:
        found = [totals[size].get(scenario) for size in sizes]
        lines.append(f"| {scenario} | " + " | ".join(f"{v:,}" if isinstance(v, int) else "-" for v in found) + " |")
    lines += [
        "",
        "Load steps at the largest size (s): "
        + ", ".join(f"{step} {seconds:.1f}" for step, seconds in records[largest]["timings"].items())
        + ".",
        "",
        f"Each statement: the median of {TIMED_RUNS} runs (ms, client side, warm cache), the buffers its plan "
        "touched, its execution time inside PostgreSQL (EXPLAIN ANALYZE) with the custom and the generic plan, "
        "and the sequential scans of a big table in either plan.",
        "",
        "| scenario | statement | " + " | ".join(f"{size} ms" for size in sizes)
        + f" | {largest}/{smallest} | buffers {smallest} → {largest} | server ms at {largest}, custom / generic plan "
        "| seq scans |",
        "|---|---|" + "---:|" * len(sizes) + "---:|---|---:|---|",
    ]  # fmt: skip
    for scenario, explained in results[largest].items():
        for item in explained:
            # The same statement of the same scenario at each size (its SQL is the same, its values may not be).
            matched = [
                next((found for found in results[size].get(scenario, []) if found.sql == item.sql), None)
                for size in sizes
            ]
            times = [f"{m.median_ms:.2f}" if m and not math.isnan(m.median_ms) else "-" for m in matched]
            first = matched[0]
            ratio = f"{item.median_ms / first.median_ms:.1f}x" if first and first.median_ms > 0 else "-"
            growth = f"{first.buffers:,} → {item.buffers:,}" if first else f"{item.buffers:,}"
            generic = f"{item.execution_ms:.2f} / " + (
                f"{item.generic_ms:.2f}" if item.generic_ms is not None else "n/a"
            )
            scans = "; ".join(sorted(set(item.seq_scans) | {f"{s} (generic)" for s in item.generic_seq_scans}))
            lines.append(
                f"| {scenario} | {statement_name(item.sql)} | {' | '.join(times)} | {ratio} | {growth} | "
                f"{generic} | {scans or '-'} |"
            )
    lines += ["", f"## Plans at {largest}", ""]
    for scenario, explained in results[largest].items():
        lines += [f"### {scenario}", ""]
        for item in explained:
            lines += ["```", short(item.sql, 400), f"-- parameters: {short(repr(item.args), 200)}"]
            lines += render(item.plan["Plan"])
            lines.append(f"Execution: {item.execution_ms:.2f} ms, planning {item.plan.get('Planning Time', 0):.2f} ms")
            if item.generic and _shape(item.generic["Plan"]) != _shape(item.plan["Plan"]):
                lines += ["-- the generic plan differs:"]
                lines += render(item.generic["Plan"])
                lines.append(f"Execution: {item.generic_ms:.2f} ms")
            lines += ["```", ""]
    return "\n".join(lines) + "\n"


def _shape(node: dict[str, Any]) -> list[tuple[str, str]]:
    return [(n["Node Type"], n.get("Index Name", n.get("Relation Name", ""))) for n in walk(node)]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=list(scale.SIZES), default=list(scale.SIZES))
    parser.add_argument("--out", type=Path, default=BENCH / "SCALE_PLANS.md")
    parser.add_argument("--json", type=Path, help="also keep every plan as JSON here")
    args = parser.parse_args()
    fingerprint = scale.migrations_fingerprint()
    recorder = Recorder()
    recorder.install()
    results: dict[str, dict[str, list[Explained]]] = {}
    records: dict[str, Any] = {}
    totals: dict[str, dict[str, Any]] = {}
    for size in args.sizes:
        seed = scale.SIZES[size]
        records[size] = scale.prepare(size, seed, rebuild=False, fingerprint=fingerprint)
        database = scale.database_name(size)
        totals[size] = asyncio.run(record(database, seed.posts, recorder))
        statements = dict(recorder.statements)
        scale.say(f"{size}: recorded {sum(map(len, statements.values()))} statements; totals {totals[size]}")
        results[size] = asyncio.run(explain_all(database, statements))
        for scenario, explained in results[size].items():
            for item in explained:
                flag = f"  SEQ SCAN {item.seq_scans}" if item.seq_scans else ""
                scale.say(f"  {size} {scenario}: {statement_name(item.sql)} {item.median_ms:.2f} ms{flag}")
    args.out.write_text(report(args.sizes, results, records, totals))
    scale.say(f"wrote {args.out}")
    if args.json:
        dump = {
            size: {s: [{"sql": e.sql, "plan": e.plan, "generic": e.generic} for e in ex] for s, ex in found.items()}
            for size, found in results.items()
        }
        args.json.write_text(json.dumps(dump, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
