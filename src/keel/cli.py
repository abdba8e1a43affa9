"""The ``keel`` command."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer
import uvicorn
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.config import ConfigError, Settings, get_settings, listening_url
from keel.core.files import private_dir
from keel.core.logging import configure_logging
from keel.http.metrics import reset_multiprocess_dir

app = typer.Typer(
    help="Keel: multi-user todos and posts. Configure with KEEL_* environment variables or a .env file.",
    no_args_is_help=True,
    add_completion=False,
)


def _settings_or_exit() -> Settings:
    try:
        settings = get_settings()
    except ConfigError as exc:
        typer.echo(f"keel: configuration error: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings)
    return settings


def _migrate(settings: Settings) -> None:
    """The migrating child's work (see `_migrate_in_child`)."""
    from keel.migrations import upgrade

    configure_logging(settings)
    upgrade(settings)


def _migrate_in_child(settings: Settings) -> None:
    """Apply pending migrations in a child process that exits when they are done.

    With one worker, uvicorn serves in this very process: migrating here would keep Alembic, its
    templates and every migration module loaded for the server's whole life (11 MB of its resident
    memory, measured). The child is forked where that is safe (a platform with fork, and no thread
    started yet: nothing is imported twice), else spawned.
    """
    import multiprocessing
    import threading

    can_fork = "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
    context = multiprocessing.get_context("fork") if can_fork else multiprocessing.get_context("spawn")
    child = context.Process(target=_migrate, args=(settings,), name="keel-migrate")
    child.start()
    child.join()
    if child.exitcode != 0:
        typer.echo(f"keel: migrating the database failed (exit code {child.exitcode}); see the log above", err=True)
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (each a full copy of the app).")] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development only).")] = False,
) -> None:
    """Apply pending migrations, then serve the API and web UI with uvicorn."""
    settings = _settings_or_exit()
    if not settings.public_url_configured and not settings.is_production:
        # Mailed links must open this server. The app (and every worker or reloaded process,
        # which inherit the environment) reads its settings from the environment.
        os.environ["KEEL_PUBLIC_URL"] = listening_url(host, port)
        get_settings.cache_clear()
        settings = _settings_or_exit()
    _migrate_in_child(settings)
    reset_multiprocess_dir()  # a no-op unless PROMETHEUS_MULTIPROC_DIR is set
    uvicorn.run(
        "keel.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=None if reload else workers,
        reload=reload,
        proxy_headers=False,
        # httptools with a bound on the request head (keel.http.http_protocol), which takes its
        # limit from the setting h11 would use for the same purpose.
        http="keel.http.http_protocol:BoundedHttpToolsProtocol",
        h11_max_incomplete_event_size=settings.max_header_bytes,
        # Naming the server and its version only helps someone looking for a known flaw.
        server_header=False,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=30,
    )


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations up to REVISION (default: the latest)."""
    from keel.migrations import upgrade

    settings = _settings_or_exit()
    upgrade(settings, revision)
    typer.echo(f"database at {revision}")


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Argument(help="The administrator's email address.")],
    username: Annotated[str | None, typer.Option(help="Username (default: derived from the email).")] = None,
) -> None:
    """Create an administrator, or promote the account with EMAIL.

    The password is read from KEEL_ADMIN_PASSWORD when set (for scripts), else prompted for.
    """
    from pydantic import ValidationError

    from keel.core.errors import UsernameTaken
    from keel.migrations import upgrade
    from keel.schemas.user import UserCreate

    settings = _settings_or_exit()
    password = os.environ.get("KEEL_ADMIN_PASSWORD") or typer.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
    derived = "".join(ch for ch in email.split("@")[0].lower() if ch.isalnum() or ch == "_")[:30]
    try:
        data = UserCreate(email=email, username=username or derived.ljust(3, "_"), password=password)
    except ValidationError as exc:
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            typer.echo(f"keel: {'.'.join(map(str, error['loc']))}: {message}", err=True)
        raise typer.Exit(2) from None
    upgrade(settings)
    try:
        user_id = asyncio.run(_create_admin(settings, data))
    except UsernameTaken:
        typer.echo(f"keel: username {data.username!r} is taken; pass --username", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"administrator {data.email} (id {user_id}) is ready")


async def _create_admin(settings: Settings, data: object) -> int:
    from keel.core.db import Database
    from keel.core.redis import create_redis
    from keel.core.session_cache import SessionCache
    from keel.schemas.user import UserCreate
    from keel.services import user as user_service

    assert isinstance(data, UserCreate)
    database = Database(settings)
    redis = create_redis(settings.redis_url) if settings.redis_url else None
    cache = (
        SessionCache(
            redis,
            ttl_seconds=settings.auth_cache_ttl_seconds,
            tombstone_ttl_seconds=settings.access_token_ttl_seconds + 60,
        )
        if redis
        else None
    )
    try:
        async with database.session() as session:
            user = await user_service.create_admin(
                session=session,
                cache=cache,
                settings=settings,
                email=data.email,
                username=data.username,
                password=data.password,
            )
            assert user.id is not None
            return user.id
    finally:
        if redis is not None:
            await redis.aclose()
        await database.dispose()


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    beat: Annotated[
        bool, typer.Option(help="Also run the schedule that relays stuck emails and prunes old rows.")
    ] = True,
) -> None:
    """Run a Celery worker that delivers emails (and, with --beat, the outbox relay and the prune job)."""
    from keel.tasks.celery_app import configure

    settings = _settings_or_exit()
    if not settings.broker_url:
        typer.echo("keel: set KEEL_CELERY_BROKER_URL or KEEL_REDIS_URL for the worker", err=True)
        raise typer.Exit(2)
    argv = ["worker", "--loglevel=INFO", f"--concurrency={concurrency}", "--queues=keel"]
    if beat:
        argv += ["--beat", f"--schedule={settings.data_dir / 'celerybeat-schedule'}"]
    private_dir(settings.data_dir)
    configure(settings).worker_main(argv)


outbox_app = typer.Typer(help="Inspect the email outbox and retry failed messages.", no_args_is_help=False)
app.add_typer(outbox_app, name="outbox")


@outbox_app.callback(invoke_without_command=True)
def outbox_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="Rows to show at most.")] = 50,
) -> None:
    """List pending and failed emails (retry one with `keel outbox retry ID`)."""
    if ctx.invoked_subcommand is not None:
        return
    from keel.models import OutboxStatus
    from keel.services import outbox as outbox_service

    settings = _settings_or_exit()

    async def rows() -> list[str]:
        async with _database(settings) as session:
            found = await outbox_service.list_rows(
                session=session, statuses=[OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.FAILED], limit=limit
            )
            return [
                f"{row.id}\t{row.status.value}\t{row.kind.value}\t{row.to_address}\t"
                f"attempts={row.attempts}\t{row.created_at:%Y-%m-%d %H:%M:%S}\t{row.last_error or ''}"
                for row in found
            ]

    lines = asyncio.run(rows())
    typer.echo("\n".join(lines) if lines else "outbox is empty: nothing pending or failed")


@outbox_app.command("retry")
def outbox_retry(outbox_id: Annotated[int, typer.Argument(help="The id of a failed email.")]) -> None:
    """Queue a failed email again; the relay (or a running worker) sends it."""
    from keel.services import outbox as outbox_service

    settings = _settings_or_exit()

    async def run() -> bool:
        async with _database(settings) as session:
            return await outbox_service.retry(session=session, outbox_id=outbox_id)

    if not asyncio.run(run()):
        typer.echo(f"keel: no failed email with id {outbox_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"email {outbox_id} queued again")


posts_app = typer.Typer(help="Maintain posts.", no_args_is_help=True)
app.add_typer(posts_app, name="posts")


@posts_app.command("rerender")
def posts_rerender() -> None:
    """Render again every post and comment whose HTML was made by older Markdown rules (safe to run any time)."""
    from keel.core.db import Database
    from keel.services import post_render

    settings = _settings_or_exit()

    async def run() -> tuple[int, int]:
        database = Database(settings)
        try:
            posts = await post_render.rerender(database=database)
            return posts, await post_render.rerender_comments(database=database)
        finally:
            await database.dispose()

    posts, comments = asyncio.run(run())
    typer.echo(f"rerendered: {posts} posts, {comments} comments")


@app.command()
def prune() -> None:
    """Delete activity and known devices past KEEL_ACTIVITY_RETENTION_DAYS, ended sessions with their
    refresh tokens, and sent emails past KEEL_OUTBOX_RETENTION_DAYS (the schedule does this hourly)."""
    from keel.core.db import Database
    from keel.services import prune as prune_service

    settings = _settings_or_exit()

    async def run() -> prune_service.Pruned:
        database = Database(settings)
        try:
            return await prune_service.prune(database=database, settings=settings)
        finally:
            await database.dispose()

    pruned = asyncio.run(run())
    typer.echo(
        f"pruned: {pruned.activity} activity, {pruned.known_devices} known devices, {pruned.sessions} sessions, "
        f"{pruned.refresh_tokens} refresh tokens, {pruned.outbox} sent emails"
    )


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[AsyncSession]:
    from keel.core.db import Database

    database = Database(settings)
    try:
        async with database.session() as session:
            yield session
    finally:
        await database.dispose()


def main() -> None:  # pragma: no cover - console entry for `python -m keel`
    sys.exit(app())
