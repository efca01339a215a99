"""The one column type for instants: :class:`UtcDateTime`, aware UTC in and out on every database.

Why: SQLite keeps a ``DateTime`` as text without its offset and hands it back naive, while
PostgreSQL hands back an aware value; every reader of a stored time had to repair it with a
``utc()`` helper of its own, and a value stored in another zone was kept as its wall-clock
time. With this type a column holds the instant itself:

- **in**: an aware ``datetime`` in any zone, stored as that instant in UTC; a naive one is
  refused (``TypeError``), because nothing says which zone it means;
- **out**: an aware ``datetime`` in UTC, on SQLite and PostgreSQL alike.

On SQLite the text is the one SQLAlchemy's ``DATETIME`` writes (``YYYY-MM-DD
HH:MM:SS.ffffff``, UTC), so the spool's and the pipeline's rows written before this type read
the same and compare in SQL in time order; it is made and read by ``datetime``'s own C
formatting and parsing, which costs a fraction of the dialect's regular expression. Their DDL
is unchanged (``DATETIME`` on SQLite, ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL). The
registry's times were ISO-8601 text until migration ``0008_registry_instants``, which rewrote
them to this text on SQLite (keeping their ``VARCHAR`` declaration: :func:`compare_type`) and
converted the columns on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.types import DateTime, String, TypeDecorator, TypeEngine

_NAIVE = "{!r} is naive: give an instant with its zone (e.g. datetime.now(UTC))"


def utc_now() -> datetime:
    """The current instant, in UTC: the default clock of everything that takes one (a test or
    the demo injects its own)."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` as the same instant in UTC; ``TypeError`` for a naive one."""
    if value.tzinfo is None:
        raise TypeError(_NAIVE.format(value))
    return value.astimezone(UTC)


def _to_sqlite(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:  # the clock's own values are UTC already: no conversion
        value = as_utc(value)
    # "...+00:00" cut off: 1.3 us a value against 2.1 for replace(tzinfo=None) first.
    return value.isoformat(" ", "microseconds")[:-6]


def _from_sqlite(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _from_server(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """An instant: aware in any zone going in, aware UTC coming out (see the module)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        """SQLite: the UTC text itself (the dialect's own processor is not run)."""
        if dialect.name == "sqlite":
            return _to_sqlite
        return super().bind_processor(dialect)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        """SQLite: parsed from the text; others: the server's aware value moved to UTC."""
        if dialect.name == "sqlite":
            return _from_sqlite
        return _from_server

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Servers with a time zone type: the aware value in UTC."""
        return None if value is None else as_utc(value)


def compare_type(
    context: object,
    inspected_column: object,
    metadata_column: object,
    inspected_type: TypeEngine[Any],
    metadata_type: TypeEngine[Any],
) -> bool | None:
    """Alembic's type comparison, with one equivalence: on SQLite a :class:`UtcDateTime` column
    declared as text (``VARCHAR``) is the same column, since SQLite keeps this type's values as
    text under either declaration. The registry's first times were declared so
    (0008_registry_instants says why they stay). None: Alembic's own comparison decides."""
    dialect = getattr(getattr(context, "dialect", None), "name", None)
    if (
        dialect == "sqlite"
        and isinstance(metadata_type, UtcDateTime)
        and isinstance(inspected_type, String)
    ):
        return False
    return None
