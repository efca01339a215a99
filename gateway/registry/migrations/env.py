"""Alembic environment: runs on the connection handed in by ``gateway.registry.migrate``.

``migrate()`` opens an async engine and passes its sync connection in
``config.attributes["connection"]``; the ``alembic`` command line (used only to write new
revisions) passes a URL instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

import gateway.registry.all_models  # noqa: F401  (fills Base.metadata)
from gateway.registry.db import Base
from gateway.registry.instant import compare_type

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_type=compare_type,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = config.get_main_option("sqlalchemy.url") or "sqlite:///alembic-dev.sqlite3"
    with create_engine(url).connect() as conn:
        _run(conn)
