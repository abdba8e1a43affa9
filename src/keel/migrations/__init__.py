"""Alembic, configured from code so an installed ``keel`` can migrate without an ini file."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from keel.core.config import Settings

MIGRATIONS_DIR = Path(__file__).parent
# Several hosts may start `keel serve` (which migrates first) at the same moment. On
# PostgreSQL they queue on this transaction-scoped advisory lock; each reads the schema
# version only once it holds the lock, so the first migrates and the rest find nothing to do.
MIGRATION_LOCK_KEY = 0x6B65656C  # "keel"


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(slug)s")
    config.set_main_option("timezone", "UTC")
    # `%` would be read as interpolation by configparser.
    config.set_main_option("sqlalchemy.url", settings.sqlalchemy_url.replace("%", "%%"))
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str = "base") -> None:
    command.downgrade(alembic_config(settings), revision)


# Indexes a migration creates only where the database allows it (the trigram index needs the
# pg_trgm extension), so they are not in the models; comparing the schema with the models skips them.
OPTIONAL_INDEXES = frozenset({"ix_todo_search"})


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's filter for comparing the database with the models (autogenerate, the schema tests)."""
    return not (type_ == "index" and name in OPTIONAL_INDEXES)
