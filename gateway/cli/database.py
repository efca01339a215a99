"""The command line's edge to the database: a URL an async driver can open, a database that is
there with the newest schema, and one message when it cannot be reached.

Why before opening: SQLite creates a missing file on connect, so a command run before
``gateway admin db migrate`` (or with the wrong state directory) would leave an empty
``registry.sqlite3`` behind and then fail on a missing table. Commands other than ``db migrate``
call :func:`require_schema` first; it names the fix instead.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)

from gateway.cli.failures import CommandError, first_line
from gateway.registry.migrate import head_revision, migrate, schema_revision

MIGRATE = "gateway admin db migrate"
ASYNC_URLS = "sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DATABASE"

# What opening a database raises when it cannot be reached or refuses us: a refused or timed-out
# connection, an unknown host (OSError, TimeoutError), or the driver's own error. While a
# migration runs, only the driver's connection-level errors: any other is a bug to report.
UNREACHABLE = (OSError, TimeoutError, DBAPIError)
UNREACHABLE_WHILE_MIGRATING = (OSError, TimeoutError, OperationalError, InterfaceError)


def shown(url: str) -> str:
    """``url`` fit for a message: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def check_url(url: str) -> URL:
    """The parsed ``url``, if an async driver of this installation can open it."""
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        message = f"database URL {shown(url)} is not usable ({exc}); use {ASYNC_URLS}"
        raise CommandError(message) from None
    if not getattr(dialect, "is_async", False):
        raise CommandError(
            f"database URL {shown(url)}: driver {parsed.drivername} is not asynchronous; "
            f"use {ASYNC_URLS}"
        )
    return parsed


def unreachable(url: str, exc: BaseException) -> CommandError:
    """The failure for a database that could not be opened."""
    return CommandError(f"cannot open the database {shown(url)}: {first_line(exc)}")


def sqlite_file(parsed: URL) -> Path | None:
    """The file of a SQLite URL; ``None`` for other databases and in-memory ones."""
    if parsed.get_backend_name() != "sqlite" or parsed.database in {None, "", ":memory:"}:
        return None
    return Path(parsed.database or "")


async def require_schema(url: str) -> None:
    """Refuse, naming the fix, unless ``url`` holds a database at the newest schema."""
    parsed = check_url(url)
    path = sqlite_file(parsed)
    if path is not None and not path.is_file():
        raise CommandError(
            f"no registry database at {path}: create it with `{MIGRATE}`, "
            "or point state_dir (or --database) at the existing one"
        )
    try:
        current = await schema_revision(url)
    except UNREACHABLE as exc:
        raise unreachable(url, exc) from None
    head = head_revision()
    if current is None:
        raise CommandError(f"the database {shown(url)} has no schema yet: run `{MIGRATE}`")
    if current != head:
        raise CommandError(
            f"the database {shown(url)} is at schema revision {current}, this gateway needs "
            f"{head}: run `{MIGRATE}`"
        )


async def migrate_database(url: str) -> None:
    """``alembic upgrade head`` on ``url``, a failure to reach it as a message."""
    check_url(url)
    try:
        await migrate(url)
    except UNREACHABLE_WHILE_MIGRATING as exc:
        raise unreachable(url, exc) from None
