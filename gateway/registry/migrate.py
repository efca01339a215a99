"""Bring a database to the newest schema with Alembic (``upgrade head``), programmatically, and
tell which revision a database is at.

Called by the daemon at start-up, by ``gateway admin db migrate`` and by test fixtures; the
command line reads :func:`schema_revision` before working on a database it did not migrate. The
migration scripts live beside this module in ``migrations/``.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url

from gateway.ops.private import create_private_file
from gateway.registry.db import create_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    """The Alembic configuration pointing at ``gateway/registry/migrations``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _step(revision: str, down: bool, connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    (command.downgrade if down else command.upgrade)(config, revision)


def _private_sqlite_file(engine_url: str) -> None:
    """Create a missing SQLite database file 0600 before SQLite does (with the umask's mode): it
    holds password hashes, and its journal files take its mode."""
    url = make_url(engine_url)
    if url.get_backend_name() != "sqlite" or url.database in {None, "", ":memory:"}:
        return
    with contextlib.suppress(FileNotFoundError):  # no folder: SQLite's own error says so
        create_private_file(Path(url.database or ""))


async def migrate(engine_url: str, revision: str = "head", *, down: bool = False) -> None:
    """Upgrade the database at ``engine_url`` to ``revision`` (the newest by default); with
    ``down``, downgrade it to ``revision`` (a migration's way back, in its tests)."""
    _private_sqlite_file(engine_url)
    engine = create_engine(engine_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(functools.partial(_step, revision, down))
    finally:
        await engine.dispose()


def head_revision() -> str | None:
    """The newest revision of the migration scripts."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def schema_revision(engine_url: str) -> str | None:
    """The revision the database at ``engine_url`` is at; ``None`` when it has no schema."""
    engine = create_engine(engine_url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current)
    finally:
        await engine.dispose()
