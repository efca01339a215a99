"""How the pipeline's set steps reach SQLite: SQLAlchemy Core against the DB-API (issue 14).

Issue 14 asks for SQLAlchemy Core's compiled statements or the DB-API directly, "whichever
meets the budget"; this measures what the choice is worth on the hottest statement, the
guarded step commit (``ADVANCE``: one ``executemany`` per batch, one row per set), on a
database migrated to head, in batches of ``--batch`` sets (the pipeline's batches at 150 sets/s
are about 6 sets; unpaced, up to ``batch_limit``), each batch one transaction:

- **core**: ``Connection.execute(ADVANCE, rows)`` in ``engine.begin()``, as the store runs it;
- **driver**: the statement compiled once, each row's values bound by the column types' own
  processors, run on the DB-API cursor of the connection ``engine.begin()`` gives (SQLAlchemy
  still runs the transaction; the statement itself skips it, and its events);
- **dbapi**: the same compiled SQL and values on the pysqlite connection itself, ``BEGIN
  IMMEDIATE`` and ``COMMIT`` by hand (the spool's group commit runs its inserts this way).

Printed: CPU microseconds per row (the thread's CPU clock around each transaction: the machine
is shared), the commit's fsync included in all three, and each path against Core. Each path
runs in a fresh database in a fresh interpreter, ``--repeat`` times, in turn. ``--gap MS``
sleeps that long before each transaction, as the daemon's writer waits between batches at a
paced rate: the transactions then run from cold caches (``bench/cold.py``), and the paths
differ by more than back to back. Figures are printed, never asserted.

Run from the repository root: ``python bench/sql_paths.py [--rows 3000] [--batch 6]
[--repeat 3] [--gap 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

PATHS = ("core", "driver", "dbapi")


def _values(set_id: int, now: datetime) -> dict[str, Any]:
    # A decided step's changes, as SetStore._steps binds them.
    return {
        "updated_at": now,
        "claim_until": now + timedelta(seconds=30),
        "state": "accepted",
        "code": None,
        "reason": None,
        "verified": True,
        "ack_sequence": "00001",
        "ack_created": now,
        "b_set_id": set_id,
        "b_token": "token",
    }


def _one(path: str, rows: int, batch: int, gap: float = 0.0) -> float:
    """CPU seconds to step ``rows`` sets in batches through ``path`` (in this interpreter),
    with ``gap`` seconds of sleep before each batch (not counted)."""
    from sqlalchemy import func, insert, select

    from gateway.pipeline.statements import ADVANCE, SETS
    from gateway.registry.db import create_engine, sqlite_sync_engine
    from gateway.registry.migrate import migrate

    folder = tempfile.mkdtemp(prefix="bench-sql-")
    url = f"sqlite+aiosqlite:///{folder}/gateway.sqlite3"
    asyncio.run(migrate(url))
    engine = sqlite_sync_engine(create_engine(url))
    if engine is None:  # pragma: no cover - a file database always has one
        raise SystemExit("no synchronous engine")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(SETS),
            [
                {
                    "ticket": f"T{i:012d}",
                    "trigger": "GO",
                    "trigger_upload_id": None,
                    "trigger_name": f"GO.DMFA.006400.20260115.{i:05d}.R",
                    "sender": "006400",
                    "folder": "IN",
                    "application": "DMFA",
                    "created_date": date(2026, 1, 15),
                    "sequence": f"{i:05d}",
                    "environment": "R",
                    "state": "checking",
                    "finished": False,
                    "code": None,
                    "reason": None,
                    "received_at": now,
                    "updated_at": now,
                    "claim_token": "token",
                    "claim_until": now,
                    "files": 2,
                    "bytes": 20_000,
                    "verified": False,
                    "files_released": False,
                }
                for i in range(1, rows + 1)
            ],
        )
    keys = list(_values(1, now))
    compiled = ADVANCE.compile(
        dialect=engine.dialect, column_keys=[k for k in keys if not k.startswith("b_")]
    )
    sql, order = str(compiled), list(compiled.positiontup or [])
    processors = {
        bind.key: bind.type._cached_bind_processor(engine.dialect)
        for bind in compiled.binds.values()
    }

    def bound(values: dict[str, Any]) -> tuple[Any, ...]:
        out = []
        for key in order:
            process = processors.get(key)
            out.append(values[key] if process is None else process(values[key]))
        return tuple(out)

    batches = [range(s, min(s + batch, rows + 1)) for s in range(1, rows + 1, batch)]
    raw = engine.raw_connection() if path == "dbapi" else None
    db: Any = None if raw is None else raw.driver_connection
    if db is not None:
        db.isolation_level = None  # BEGIN IMMEDIATE and COMMIT by hand
    spent = 0.0
    for ids in batches:
        if gap:
            time.sleep(gap)
        started = time.thread_time()
        if path == "core":
            with engine.begin() as conn:
                conn.execute(ADVANCE, [_values(i, now) for i in ids])
        elif path == "driver":
            params = [bound(_values(i, now)) for i in ids]
            with engine.begin() as conn:
                cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                cursor.executemany(sql, params)
                cursor.close()
        else:
            params = [bound(_values(i, now)) for i in ids]
            db.execute("BEGIN IMMEDIATE")
            db.executemany(sql, params)
            db.execute("COMMIT")
        spent += time.thread_time() - started
    if raw is not None:
        raw.close()
    with engine.connect() as conn:
        done = conn.execute(
            select(func.count()).select_from(SETS).where(SETS.c.state == "accepted")
        ).scalar()
    if done != rows:
        raise SystemExit(f"{path}: {done} of {rows} rows stepped")
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--gap", type=float, default=0.0, help="ms of sleep before each batch (not counted)"
    )
    parser.add_argument("--one", choices=PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(_one(args.one, args.rows, args.batch, args.gap / 1000))
        return
    root = Path(__file__).resolve().parent.parent
    per_row: dict[str, list[float]] = {path: [] for path in PATHS}
    for _ in range(args.repeat):
        for path in PATHS:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    path,
                    "--rows",
                    str(args.rows),
                    "--batch",
                    str(args.batch),
                    "--gap",
                    str(args.gap),
                ],
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
            )
            per_row[path].append(float(out.stdout.split()[-1]) / args.rows * 1e6)
    print(
        f"bench/sql_paths.py: ADVANCE, {args.rows} rows in batches of {args.batch} (one "
        f"transaction each, SQLite WAL, synchronous=FULL), {args.repeat} runs of each path in turn"
    )
    core = min(per_row["core"])
    for path in PATHS:
        runs = ", ".join(f"{v:.1f}" for v in per_row[path])
        best = min(per_row[path])
        print(
            f"{path:7s} CPU per row {best:6.1f} us (best; runs {runs})  x{best / core:.2f} of core"
        )


if __name__ == "__main__":
    main()
