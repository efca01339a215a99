"""What a pause costs: the same operation's time back to back and after a pause, on this host.

Why (issue 14): a set costs the gateway several times more CPU at a low rate than at
saturation (``bench/pipeline.py --rate``: about 20 ms per set at 10 sets/s against 3 unpaced on
2026-12-07), although it does the same work. This shows why without the gateway: an operation
whose code and data last ran a moment ago runs from warm caches; one that last ran some
milliseconds ago, on this shared virtual machine, runs from cold ones (whatever the thread did
meanwhile: the pause is a sleep or a busy loop of its own). The larger an operation's working
set (SQLAlchemy's against the bare DB-API's), the more it loses.

Each operation is timed ``--count`` times (wall clock, median, microseconds) after each pause
of ``--pauses`` milliseconds (0: back to back), first slept, then spun, on one core when pinned
with ``taskset``. Figures are printed, never asserted:

- ``python``: a list of 300 short strings (the interpreter alone);
- ``sqlite``: a one-row ``SELECT`` on the pysqlite connection;
- ``core``: the same ``SELECT`` through SQLAlchemy Core (connection from the pool, execute,
  fetch, back to the pool), as the pipeline's store reads.

Run from the repository root: ``taskset -c 0 python bench/cold.py [--pauses 0,0.2,1,10]``.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text


def _operations(folder: Path) -> dict[str, Callable[[], object]]:
    database = folder / "cold.sqlite3"
    raw = sqlite3.connect(database)
    raw.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
    raw.execute("INSERT INTO t VALUES (1, 'x')")
    raw.commit()
    engine = create_engine(f"sqlite:///{database}")
    query = text("SELECT b FROM t WHERE a = :a")

    def core() -> object:
        with engine.connect() as conn:
            return conn.execute(query, {"a": 1}).all()

    return {
        "python": lambda: [str(i) for i in range(300)],
        "sqlite": lambda: raw.execute("SELECT b FROM t WHERE a = ?", (1,)).fetchall(),
        "core": core,
    }


def _pause(seconds: float, *, spin: bool) -> None:
    if not seconds:
        return
    if not spin:
        time.sleep(seconds)
        return
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _median_us(operation: Callable[[], object], pause: float, count: int, *, spin: bool) -> float:
    times = []
    for _ in range(count):
        _pause(pause, spin=spin)
        started = time.perf_counter()
        operation()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pauses", default="0,0.2,1,10", help="milliseconds, comma-separated")
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    pauses = [float(p) / 1000 for p in args.pauses.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as folder:
        operations = _operations(Path(folder))
        print(f"bench/cold.py: median us per operation ({args.count} each) after a pause of")
        print(f"{'':13s}" + "".join(f"{p * 1000:>9g} ms" for p in pauses))
        for name, operation in operations.items():
            for spin in (False, True):
                row = "".join(
                    f"{_median_us(operation, p, args.count, spin=spin):12.1f}" for p in pauses
                )
                print(f"{name:7s} {'spun' if spin else 'slept':5s}{row}")


if __name__ == "__main__":
    main()
