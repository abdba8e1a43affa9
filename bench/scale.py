"""Keel's data at scale: a PostgreSQL database per size, bulk-loaded once and cloned on every later run.

    python3 -m uv run python bench/scale.py --sizes small 100k 1m    # build or clone each size
    python3 -m uv run python bench/scale.py --sizes 1m --rebuild     # build again even if cached
    python3 -m uv run python bench/scale.py --sizes 1m --set votes=2000000   # change one parameter

Each size is created with Keel's own migrations, loaded with COPY through asyncpg, vacuumed and
analyzed, and kept as the template database `keel_scale_<size>_template`. Its comment records a
key (the migration head, a hash of the migration files, the seed parameters and SEED_VERSION) and
how long the load took. A later run whose key matches only clones it, `CREATE DATABASE
keel_scale_<size> TEMPLATE ...`, in seconds; a different key builds it again. The database to use
is `keel_scale_<size>`; it is a fresh copy after every run, so a benchmark may write to it freely.

The data (every size has the same shape; the numbers are `Seed`'s fields):
- users, all verified, all with one precomputed argon2id hash of PASSWORD at Keel's parameters;
  user 1 (`user1@scale.example`) is the known user: `heavy_todos` todos in their inbox, owner of
  the known shared list 1 with `known_list_members` members (users 1-50) and `known_list_todos` todos;
- todos in creation order with random owners (so one user's rows are spread over the table, as in
  a real one), 10% in shared lists; titles from a small vocabulary (`q=milk` finds about 1 in 20),
  a third with labels (`label=work`);
- lists with `list_members` members each, the owner among them with the role `owner`;
- posts, 90% published, 1-3 tags each from TAGS (the first tags are the most common), and
  `votes_count` and `comments_count` equal to their rows; the newest post is the known busy post
  with `hot_votes` votes and `hot_comments` comments; the kept counts (`tag.published_posts`, the
  `published_posts` counter) equal to the published posts, as Keel's writes keep them;
- votes, unique per (post, user), skewed: a few posts get most of them;
- comments, 30% of them replies to an earlier top-level comment of the same post (one level);
- live sessions of other users, each with a used and a live refresh token, and personal access
  tokens, so that the per-request session and token lookups meet full tables.

While loading, the foreign key triggers are off (`session_replication_role = replica`: the data is
made consistent) and the indexes and the constraints no foreign key depends on are dropped, then
built again from their own definitions once the rows are in (checked to match the migrations').
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr

from keel.core.config import Settings

ROOT = Path(__file__).resolve().parent.parent
SERVER_DSN = "postgresql://postgres@127.0.0.1:5432"
PASSWORD = "scale-correct-horse-7"
# Bump when the generated data changes shape, so cached templates are built again.
SEED_VERSION = 3
KNOWN_USER_EMAIL = "user1@scale.example"
KNOWN_LIST_ID = 1
TAGS = (
    "python", "rust", "go", "postgres", "redis", "linux", "web", "css", "javascript", "security",
    "devops", "testing", "design", "career", "books", "music", "travel", "food", "photography", "science",
    "history", "math", "games", "hardware", "networking", "cloud", "data", "ai", "privacy", "opensource",
)  # fmt: skip
LABELS = ("work", "home", "urgent", "errand", "later")
VERBS = ("buy", "call", "write", "fix", "read", "plan", "clean", "send", "book", "check")
NOUNS = (
    "milk", "report", "car", "letter", "tickets", "garden", "invoice", "slides", "dentist", "taxes",
    "bike", "laptop", "flowers", "passport", "rent", "gift", "boiler", "emails", "paint", "shelf",
)  # fmt: skip
# The tables the loader fills, in the order it fills them.
TABLES = (
    "user", "list", "list_member", "todo", "post", "post_tag", "tag", "counter", "vote", "comment", "user_session",
    "refresh_token", "personal_access_token",
)  # fmt: skip


@dataclass(frozen=True)
class Seed:
    """How much of everything one size has (see the module's docstring for its shape)."""

    users: int
    todos: int
    heavy_todos: int
    lists: int
    list_members: int
    known_list_members: int
    known_list_todos: int
    posts: int
    votes: int
    comments: int
    hot_votes: int
    hot_comments: int
    # Sign-ins (each with one used and one live refresh token) and personal access tokens, all alive.
    sessions: int
    personal_tokens: int
    seed: int = 20261207

    def key(self, migrations: str) -> str:
        text = json.dumps({"seed": asdict(self), "migrations": migrations, "version": SEED_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


SIZES = {
    # Today's benchmark (bench/run.py: 1,000 users, 2,000 posts, ~30,000 votes), plus what it lacks.
    "small": Seed(
        users=1_000, todos=2_000, heavy_todos=200, lists=100, list_members=5, known_list_members=50,
        known_list_todos=100, posts=2_000, votes=30_000, comments=4_000, hot_votes=200, hot_comments=100,
        sessions=1_000, personal_tokens=100,
    ),
    "100k": Seed(
        users=10_000, todos=100_000, heavy_todos=10_000, lists=1_000, list_members=5, known_list_members=50,
        known_list_todos=1_000, posts=100_000, votes=1_000_000, comments=200_000, hot_votes=2_000,
        hot_comments=500, sessions=10_000, personal_tokens=1_000,
    ),
    # Issue 25: 1M todos over 100k users (one with 10k), 1M posts with 10M votes and 2M comments.
    "1m": Seed(
        users=100_000, todos=1_000_000, heavy_todos=10_000, lists=10_000, list_members=5, known_list_members=50,
        known_list_todos=1_000, posts=1_000_000, votes=10_000_000, comments=2_000_000, hot_votes=5_000,
        hot_comments=500, sessions=100_000, personal_tokens=10_000,
    ),
}  # fmt: skip


def say(message: str) -> None:
    sys.stdout.write(f"[scale {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stdout.flush()


def database_name(size: str) -> str:
    return f"keel_scale_{size}"


def template_name(size: str) -> str:
    return f"keel_scale_{size}_template"


def dsn(database: str) -> str:
    return f"{SERVER_DSN}/{database}"


def sqlalchemy_url(database: str) -> str:
    return dsn(database).replace("postgresql://", "postgresql+asyncpg://")


# --- the migrations ----------------------------------------------------------------------------
def migrations_fingerprint() -> str:
    """The head revision and a hash of every migration file: a changed migration is a changed schema."""
    from alembic.script import ScriptDirectory

    from keel.migrations import MIGRATIONS_DIR, alembic_config

    head = ScriptDirectory.from_config(alembic_config(keel_settings("postgres"))).get_current_head()
    digest = hashlib.sha256()
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{head}:{digest.hexdigest()[:16]}"


def keel_settings(database: str) -> Settings:
    return Settings(
        environment="development",
        data_dir=Path(tempfile.gettempdir()) / "keel-scale",
        secret_key=SecretStr("scale-benchmark-secret-key-0123456789abcdef"),
        database_url=sqlalchemy_url(database),
        redis_url=None,
        log_level="WARNING",
    )


def migrate(database: str) -> None:
    from keel.migrations import upgrade

    upgrade(keel_settings(database))


def password_hash() -> str:
    """One argon2id hash at Keel's own parameters, so signing in verifies it and never rehashes it."""
    from keel.core.security import password_hasher

    return asyncio.run(password_hasher(keel_settings("postgres")).hash(PASSWORD))


# --- the rows ----------------------------------------------------------------------------------
@dataclass
class Plan:
    """What is decided before any row is written, because several tables depend on it."""

    list_owners: list[int]
    post_votes: list[int]
    post_comments: list[int]
    post_tags: list[tuple[str, ...]]

    @property
    def hot_post(self) -> int:
        return len(self.post_votes)


def skewed(rng: random.Random, mean: float) -> int:
    """A count with the given mean, most of them small and a few large (3·mean·r², r uniform)."""
    r = rng.random()
    return int(3 * mean * r * r + 0.5)


def lay_out(seed: Seed) -> Plan:
    rng = random.Random(seed.seed)
    list_owners = [1] + [rng.randrange(1, seed.users + 1) for _ in range(seed.lists - 1)]
    published = [is_published(seed, post_id) for post_id in range(1, seed.posts + 1)]
    live = sum(published)
    vote_mean = (seed.votes - seed.hot_votes) / max(1, live - 1)
    comment_mean = (seed.comments - seed.hot_comments) / max(1, live - 1)
    post_votes = [min(seed.users, skewed(rng, vote_mean)) if is_live else 0 for is_live in published]
    post_comments = [skewed(rng, comment_mean) if is_live else 0 for is_live in published]
    post_votes[-1], post_comments[-1] = min(seed.users, seed.hot_votes), seed.hot_comments
    tag_count = len(TAGS)
    post_tags = []
    for _ in range(seed.posts):
        # The first tags are the common ones (index n·r²): `python` is on about a third of the posts.
        chosen = {TAGS[int(tag_count * rng.random() ** 2)] for _ in range(rng.randrange(1, 4))}
        post_tags.append(tuple(sorted(chosen)))
    return Plan(list_owners, post_votes, post_comments, post_tags)


def at(start: datetime, span: timedelta, index: int, count: int) -> datetime:
    """The index-th of count instants spread evenly over span, oldest first."""
    return start + span * (index / max(1, count))


NOW = datetime(2026, 12, 1, tzinfo=UTC)
TWO_YEARS = timedelta(days=730)
EPOCH = NOW - TWO_YEARS


def users(seed: Seed, hashed: str) -> Iterator[tuple[Any, ...]]:
    for user_id in range(1, seed.users + 1):
        created = at(EPOCH, TWO_YEARS, user_id, seed.users)
        yield (user_id, f"user{user_id}@scale.example", f"user{user_id}", f"Scale User {user_id}", hashed, "user",
               True, True, created, created, 1)  # fmt: skip


USER_COLUMNS = ["id", "email", "username", "full_name", "hashed_password", "role", "is_active", "is_verified",
                "created_at", "updated_at", "version"]  # fmt: skip


def lists(seed: Seed, plan: Plan) -> Iterator[tuple[Any, ...]]:
    for list_id, owner in enumerate(plan.list_owners, start=1):
        created = at(EPOCH, TWO_YEARS, list_id, seed.lists)
        yield (list_id, f"Shared list {list_id}", owner, created, created, 1)


LIST_COLUMNS = ["id", "name", "owner_id", "created_at", "updated_at", "version"]


def list_members(seed: Seed, plan: Plan) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed.seed + 1)
    for list_id, owner in enumerate(plan.list_owners, start=1):
        added = at(EPOCH, TWO_YEARS, list_id, seed.lists)
        yield (list_id, owner, "owner", added)
        if list_id == KNOWN_LIST_ID:
            others = list(range(2, seed.known_list_members + 1))
        else:
            others = [user for user in rng.sample(range(1, seed.users + 1), seed.list_members) if user != owner]
            others = others[: seed.list_members - 1]
        for index, user in enumerate(others):
            yield (list_id, user, "viewer" if index % 4 == 3 else "editor", added + timedelta(minutes=index + 1))


MEMBER_COLUMNS = ["list_id", "user_id", "role", "added_at"]


def todos(seed: Seed, plan: Plan) -> Iterator[tuple[Any, ...]]:
    """Todos in creation order: the known user's, the known list's, other lists' (10%), and inboxes."""
    rng = random.Random(seed.seed + 2)
    others = seed.todos - seed.heavy_todos - seed.known_list_todos
    in_lists = others // 10
    # 0: the known user's inbox, 1: the known list, 2: another list, 3: someone's inbox.
    kinds = [0] * seed.heavy_todos + [1] * seed.known_list_todos + [2] * in_lists + [3] * (others - in_lists)
    rng.shuffle(kinds)
    for index, kind in enumerate(kinds):
        todo_id = index + 1
        list_id: int | None
        if kind == 0:
            owner, list_id = 1, None
        elif kind == 1:
            owner, list_id = rng.randrange(1, seed.known_list_members + 1), KNOWN_LIST_ID
        elif kind == 2:
            list_id = rng.randrange(2, seed.lists + 1) if seed.lists > 1 else KNOWN_LIST_ID
            owner = plan.list_owners[list_id - 1]
        else:
            owner, list_id = rng.randrange(2, seed.users + 1), None
        noun = NOUNS[rng.randrange(len(NOUNS))]
        labels = f",{LABELS[rng.randrange(len(LABELS))]}," if rng.random() < 0.33 else ""
        created = at(EPOCH, TWO_YEARS, todo_id, seed.todos)
        yield (
            todo_id, owner, list_id, labels, None, f"{VERBS[todo_id % len(VERBS)]} the {noun} ({todo_id})",
            f"Remember the {noun} before the weekend" if todo_id % 2 else None, todo_id % 4 == 0, todo_id % 3,
            date(2026, 12, 1) + timedelta(days=todo_id % 90) if todo_id % 3 else None, created, created, 1,
        )  # fmt: skip


TODO_COLUMNS = ["id", "owner_id", "list_id", "labels", "assignee_id", "title", "description", "completed",
                "priority", "due_date", "created_at", "updated_at", "version"]  # fmt: skip


def is_published(seed: Seed, post_id: int) -> bool:
    """Nine posts in ten; the last one, the known busy post, always."""
    return post_id % 10 != 0 or post_id == seed.posts


def post_times(seed: Seed, post_id: int) -> tuple[datetime, datetime | None]:
    created = at(EPOCH, TWO_YEARS, post_id, seed.posts)
    return created, created + timedelta(minutes=1) if is_published(seed, post_id) else None


def posts(seed: Seed, plan: Plan) -> Iterator[tuple[Any, ...]]:
    from keel.core.markdown import RENDERER_VERSION

    rng = random.Random(seed.seed + 3)
    for index in range(seed.posts):
        post_id = index + 1
        created, published_at = post_times(seed, post_id)
        tags = plan.post_tags[index]
        text = f"Some words about post {post_id}, for the scale benchmark. Tagged {' '.join(tags)}."
        yield (
            post_id, rng.randrange(1, seed.users + 1), f"Post number {post_id}", text, f"<p>{text}</p>", text, 1,
            RENDERER_VERSION, published_at is not None, f",{','.join(tags)},", plan.post_votes[index],
            plan.post_comments[index], published_at, created, created, 1,
        )  # fmt: skip


POST_COLUMNS = ["id", "author_id", "title", "content", "content_html", "excerpt", "reading_minutes",
                "render_version", "published", "tags", "votes_count", "comments_count", "published_at",
                "created_at", "updated_at", "version"]  # fmt: skip


def post_tags(seed: Seed, plan: Plan) -> Iterator[tuple[Any, ...]]:
    for index, tags in enumerate(plan.post_tags):
        _, published_at = post_times(seed, index + 1)
        for tag in tags:
            yield (index + 1, tag, published_at is not None, published_at, plan.post_votes[index])


POST_TAG_COLUMNS = ["post_id", "tag", "published", "published_at", "votes_count"]


def tag_counts(seed: Seed, plan: Plan) -> Iterator[tuple[Any, ...]]:
    counts = Counter(tag for index, tags in enumerate(plan.post_tags) if is_published(seed, index + 1) for tag in tags)
    yield from sorted(counts.items())


TAG_COLUMNS = ["name", "published_posts"]


def counters(seed: Seed) -> Iterator[tuple[Any, ...]]:
    yield ("published_posts", sum(is_published(seed, post_id) for post_id in range(1, seed.posts + 1)))


COUNTER_COLUMNS = ["name", "value"]


def coprime_step(users: int) -> int:
    step = max(1, int(users * 0.618))
    while math.gcd(step, users) != 1:
        step += 1
    return step


def votes(seed: Seed, plan: Plan) -> Iterator[tuple[int, int, datetime]]:
    """Each post's voters are distinct: users start, start+step, ... (mod users), step coprime with users."""
    rng = random.Random(seed.seed + 4)
    step = coprime_step(seed.users)
    for index, count in enumerate(plan.post_votes):
        if count:
            post_id, start = index + 1, rng.randrange(seed.users)
            _, published_at = post_times(seed, post_id)
            for voter in range(count):
                yield ((start + voter * step) % seed.users + 1, post_id, published_at or NOW)


VOTE_COLUMNS = ["user_id", "post_id", "created_at"]


def comments(seed: Seed, plan: Plan) -> Iterator[tuple[Any, ...]]:
    from keel.core.markdown import RENDERER_VERSION

    rng = random.Random(seed.seed + 5)
    comment_id = 0
    for index, count in enumerate(plan.post_comments):
        post_id = index + 1
        _, published_at = post_times(seed, post_id)
        top_level: list[int] = []
        for number in range(count):
            comment_id += 1
            parent = top_level[rng.randrange(len(top_level))] if top_level and rng.random() < 0.3 else None
            if parent is None:
                top_level.append(comment_id)
            text = f"Comment {number} on post {post_id}."
            created = (published_at or NOW) + timedelta(minutes=number + 1)
            yield (comment_id, post_id, rng.randrange(1, seed.users + 1), parent, text, f"<p>{text}</p>",
                   RENDERER_VERSION, False, created, created, 1)  # fmt: skip


COMMENT_COLUMNS = ["id", "post_id", "author_id", "parent_id", "content", "content_html", "render_version",
                   "deleted", "created_at", "updated_at", "version"]  # fmt: skip


def session_id(number: int) -> str:
    return f"{number:032x}"  # fixed width: the ids sort as the numbers do, so the key is appended to


def sessions(seed: Seed) -> Iterator[tuple[Any, ...]]:
    """Live sessions of random users (none of user 1's: the benchmark signs in for those)."""
    rng = random.Random(seed.seed + 6)
    for number in range(1, seed.sessions + 1):
        created = at(NOW - timedelta(days=6), timedelta(days=6), number, seed.sessions)
        yield (session_id(number), rng.randrange(2, seed.users + 1), created, created, created + timedelta(days=30),
               None, "scale-benchmark/1.0", "203.0.113.7", "pwd", created, None)  # fmt: skip


SESSION_COLUMNS = ["id", "user_id", "created_at", "last_used_at", "expires_at", "revoked_at", "user_agent", "ip",
                   "amr", "authenticated_at", "identity_id"]  # fmt: skip


def refresh_tokens(seed: Seed) -> Iterator[tuple[Any, ...]]:
    """Each session's first token, used, and its live second one, stored as SHA-256 like Keel's."""
    for number in range(1, seed.sessions + 1):
        created = at(NOW - timedelta(days=6), timedelta(days=6), number, seed.sessions)
        for turn in range(2):
            digest = hashlib.sha256(f"scale-refresh-{number}-{turn}".encode()).hexdigest()
            yield (digest, session_id(number), created, created if turn == 0 else None)


REFRESH_COLUMNS = ["token_hash", "session_id", "created_at", "used_at"]


def personal_tokens(seed: Seed) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed.seed + 7)
    for token_id in range(1, seed.personal_tokens + 1):
        created = at(EPOCH, TWO_YEARS, token_id, seed.personal_tokens)
        digest = hashlib.sha256(f"scale-token-{token_id}".encode()).hexdigest()
        yield (token_id, rng.randrange(2, seed.users + 1), f"Token {token_id}", digest, "todos:read", created,
               NOW + timedelta(days=365), None, None)  # fmt: skip


TOKEN_COLUMNS = ["id", "user_id", "name", "token_hash", "scopes", "created_at", "expires_at", "last_used_at",
                 "revoked_at"]  # fmt: skip


def table_rows(seed: Seed, plan: Plan, hashed: str) -> dict[str, tuple[list[str], Iterable[tuple[Any, ...]]]]:
    return {
        "user": (USER_COLUMNS, users(seed, hashed)),
        "list": (LIST_COLUMNS, lists(seed, plan)),
        "list_member": (MEMBER_COLUMNS, list_members(seed, plan)),
        "todo": (TODO_COLUMNS, todos(seed, plan)),
        "post": (POST_COLUMNS, posts(seed, plan)),
        "post_tag": (POST_TAG_COLUMNS, post_tags(seed, plan)),
        "tag": (TAG_COLUMNS, tag_counts(seed, plan)),
        "counter": (COUNTER_COLUMNS, counters(seed)),
        "vote": (VOTE_COLUMNS, votes(seed, plan)),
        "comment": (COMMENT_COLUMNS, comments(seed, plan)),
        "user_session": (SESSION_COLUMNS, sessions(seed)),
        "refresh_token": (REFRESH_COLUMNS, refresh_tokens(seed)),
        "personal_access_token": (TOKEN_COLUMNS, personal_tokens(seed)),
    }


# --- loading -----------------------------------------------------------------------------------
# Indexes that back no constraint, and primary keys and unique constraints no foreign key refers to:
# built once after the rows are in rather than kept up row by row.
_DROPPABLE = """
    SELECT 'index' AS kind, i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
    FROM pg_index i
    WHERE i.indrelid = $1::regclass
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
    UNION ALL
    SELECT 'constraint', c.conname, pg_get_constraintdef(c.oid)
    FROM pg_constraint c
    WHERE c.conrelid = $1::regclass AND c.contype IN ('p', 'u')
      AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = c.conindid)
"""
_SCHEMA = """
    SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2
"""


async def load(database: str, seed: Seed, hashed: str) -> dict[str, Any]:
    """Fill a freshly migrated database; the timings and row counts of each step."""
    timings: dict[str, float] = {}
    counts: dict[str, int] = {}
    connection = await asyncpg.connect(dsn(database))
    try:
        schema_before = [tuple(row) for row in await connection.fetch(_SCHEMA)]
        # A freshly migrated database holds nothing but the counters its migrations started at 0.
        quoted_tables = ", ".join(f'"{table}"' for table in TABLES)
        await connection.execute(f"TRUNCATE {quoted_tables} CASCADE")
        await connection.execute(
            "SET session_replication_role = replica; SET maintenance_work_mem = '1GB'; SET synchronous_commit = off"
        )
        dropped: list[tuple[str, str, str, str]] = []
        for table in TABLES:
            quoted = f'"{table}"'
            for kind, name, definition in await connection.fetch(_DROPPABLE, quoted):
                dropped.append((table, kind, name, definition))
                if kind == "index":
                    await connection.execute(f"DROP INDEX {name}")
                else:
                    await connection.execute(f"ALTER TABLE {quoted} DROP CONSTRAINT {name}")
        started = time.perf_counter()
        layout = lay_out(seed)
        timings["plan"] = time.perf_counter() - started
        for table, (columns, rows) in table_rows(seed, layout, hashed).items():
            started = time.perf_counter()
            status = await connection.copy_records_to_table(table, records=rows, columns=columns)
            counts[table] = int(status.split()[-1])
            timings[table] = time.perf_counter() - started
            say(f"  {table}: {counts[table]:,} rows in {timings[table]:.1f} s")
        started = time.perf_counter()
        for table, kind, name, definition in dropped:
            if kind == "index":
                await connection.execute(definition)
            else:
                await connection.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT {name} {definition}')
        timings["indexes"] = time.perf_counter() - started
        say(f"  {len(dropped)} indexes and constraints built in {timings['indexes']:.1f} s")
        for table in ("user", "list", "todo", "post", "comment", "personal_access_token"):
            await connection.execute(
                f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), (SELECT max(id) FROM \"{table}\"))"
            )
        await connection.execute("RESET session_replication_role")
        schema_after = [tuple(row) for row in await connection.fetch(_SCHEMA)]
        if schema_after != schema_before:
            raise SystemExit(
                f"the indexes built again differ from the migrations': {set(schema_before) ^ set(schema_after)}"
            )
        started = time.perf_counter()
        # The visibility map too (index-only scans), as a table autovacuum has been through.
        await connection.execute("VACUUM (ANALYZE)")
        timings["vacuum_analyze"] = time.perf_counter() - started
        say(f"  VACUUM (ANALYZE) in {timings['vacuum_analyze']:.1f} s")
        size = await connection.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await connection.close()
    return {"timings": timings, "rows": counts, "bytes": int(size)}


# --- the cache ---------------------------------------------------------------------------------
async def admin() -> asyncpg.Connection:
    return await asyncpg.connect(dsn("postgres"))


async def cached_record(name: str) -> dict[str, Any] | None:
    """What the template's comment says about it, or None if there is no such template."""
    connection = await admin()
    try:
        comment = await connection.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", name
        )
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    finally:
        await connection.close()
    if not exists:
        return None
    try:
        record: dict[str, Any] = json.loads(comment or "{}")
    except json.JSONDecodeError:
        return {}
    return record


async def drop(connection: asyncpg.Connection, name: str) -> None:
    if await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
        await connection.execute(f'ALTER DATABASE "{name}" IS_TEMPLATE false')
        await connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def create_empty(name: str) -> None:
    connection = await admin()
    try:
        await drop(connection, name)
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def promote(building: str, template: str, record: dict[str, Any]) -> None:
    """The finished database becomes the template, in one rename: a half-built one never is one."""
    connection = await admin()
    try:
        await drop(connection, template)
        await connection.execute(f'ALTER DATABASE "{building}" RENAME TO "{template}"')
        comment = json.dumps(record).replace("'", "''")
        await connection.execute(f"COMMENT ON DATABASE \"{template}\" IS '{comment}'")
        await connection.execute(f'ALTER DATABASE "{template}" IS_TEMPLATE true')
    finally:
        await connection.close()


async def clone(template: str, target: str) -> float:
    """A fresh copy of the template; FILE_COPY copies the files rather than writing every page to WAL."""
    connection = await admin()
    try:
        await drop(connection, target)
        started = time.perf_counter()
        await connection.execute(f'CREATE DATABASE "{target}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        return time.perf_counter() - started
    finally:
        await connection.close()


def prepare(size: str, seed: Seed, *, rebuild: bool, fingerprint: str) -> dict[str, Any]:
    """Make `keel_scale_<size>` a fresh copy of its template, building the template if it is missing or stale."""
    key = seed.key(fingerprint)
    template = template_name(size)
    record = asyncio.run(cached_record(template))
    if rebuild or record is None or record.get("key") != key:
        why = "rebuild asked" if rebuild else "no template" if record is None else "the key changed"
        say(f"{size}: building {template} ({why}; key {key})")
        building = f"keel_scale_{size}_building"
        started = time.perf_counter()
        asyncio.run(create_empty(building))
        migrate(building)
        migrated = time.perf_counter() - started
        loaded = asyncio.run(load(building, seed, password_hash()))
        total = time.perf_counter() - started
        record = {
            "key": key,
            "seed": asdict(seed),
            "migrations": fingerprint,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "load_seconds": round(total, 1),
            "timings": {"create_and_migrate": round(migrated, 2)}
            | {step: round(seconds, 2) for step, seconds in loaded["timings"].items()},
            "rows": loaded["rows"],
            "bytes": loaded["bytes"],
        }
        asyncio.run(promote(building, template, record))
        say(f"{size}: built in {total:.1f} s ({loaded['bytes'] / 2**30:.2f} GiB)")
    else:
        built = f"built {record.get('built_at')} in {record.get('load_seconds')} s"
        say(f"{size}: {template} is current (key {key}, {built})")
    seconds = asyncio.run(clone(template, database_name(size)))
    say(f"{size}: cloned into {database_name(size)} in {seconds:.1f} s")
    return {**record, "clone_seconds": round(seconds, 1)}


def parse_overrides(pairs: list[str]) -> dict[str, int]:
    names = {field.name for field in fields(Seed)}
    overrides = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in names or not value.isdigit():
            raise SystemExit(f"--set takes NAME=NUMBER with NAME one of {sorted(names)}: {pair!r}")
        overrides[name] = int(value)
    return overrides


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--rebuild", action="store_true", help="build the templates even if they are current")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=NUMBER", help="override a Seed field")
    args = parser.parse_args()
    overrides = parse_overrides(args.set)
    fingerprint = migrations_fingerprint()
    for size in args.sizes:
        record = prepare(size, replace(SIZES[size], **overrides), rebuild=args.rebuild, fingerprint=fingerprint)
        say(f"{size}: {json.dumps({k: record[k] for k in ('load_seconds', 'clone_seconds', 'rows', 'timings')})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
