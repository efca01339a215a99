"""Count the SQL statements the pipeline sends to its database (a test and bench helper).

What is counted: every statement execution SQLAlchemy sends through a cursor (an
``executemany`` of many rows is one), and every transaction boundary sent (BEGIN, COMMIT, and a
ROLLBACK when a transaction was open, including the one that returns a read's connection to
the pool). SAVEPOINT and RELEASE go through a cursor, so they count too. That is what a set
costs in round trips to the database and in SQLAlchemy's Python, whatever the database does
inside.

On SQLite the pipeline's store runs on its own synchronous engine (``SetStore.db``), so only its
statements are counted; on PostgreSQL the engine is shared with the spool and the registry, so
count while only the pipeline runs.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from gateway.pipeline.db import READ_ONLY
from gateway.pipeline.store import SetStore


def pipeline_engine(store: SetStore) -> Engine:
    """The synchronous engine the store's statements go through."""
    sync = store.db.sync_engine
    return sync if sync is not None else store.engine.sync_engine


def _in_transaction(dbapi: Any) -> bool:
    """Whether a rollback of this DB-API connection would send a ROLLBACK (sqlite3's
    ``in_transaction``; SQLAlchemy's asyncpg adapter holds its open transaction)."""
    if hasattr(dbapi, "in_transaction"):
        return bool(dbapi.in_transaction)
    return getattr(dbapi, "_transaction", True) is not None


@contextlib.contextmanager
def counting(engine: Engine) -> Iterator[Counter[str]]:
    """Count statements on ``engine`` while the block runs, by first word (``SELECT``,
    ``UPDATE``, ``BEGIN``, ...); the sum is the statement count."""
    seen: Counter[str] = Counter()

    def on_execute(*args: Any) -> None:
        statement = str(args[2]).lstrip()
        seen[statement.split(None, 1)[0].upper() if statement else "?"] += 1

    def on_begin(conn: Connection) -> None:
        if not conn.get_execution_options().get(READ_ONLY):  # SQLite reads send no BEGIN
            seen["BEGIN"] += 1

    def on_commit(_conn: Connection) -> None:
        seen["COMMIT"] += 1

    def on_rollback(conn: Connection) -> None:
        if _in_transaction(conn.connection.dbapi_connection):
            seen["ROLLBACK"] += 1

    def on_reset(dbapi: Any, _record: Any, state: Any) -> None:
        if not state.transaction_was_reset and _in_transaction(dbapi):
            seen["ROLLBACK"] += 1

    hooks: list[tuple[Any, str, Any]] = [
        (engine, "before_cursor_execute", on_execute),
        (engine, "begin", on_begin),
        (engine, "commit", on_commit),
        (engine, "rollback", on_rollback),
        (engine.pool, "reset", on_reset),
    ]
    for target, name, fn in hooks:
        event.listen(target, name, fn)
    try:
        yield seen
    finally:
        for target, name, fn in hooks:
            event.remove(target, name, fn)
