"""Loaded by a bench server's interpreter (``bench/sftp.py --critical`` puts this folder on its
``PYTHONPATH``): timestamps of each SSH connection's reads and writes, for the critical path.

With ``BENCH_CRITICAL`` naming a folder, asyncssh's connection records when bytes arrive
(``data_received``) and when it sends (``_send``), and the spool's SQLite insert (the gateway's
and the contract server's close) records its wall and CPU time. When a connection ends, its
record goes to ``BENCH_CRITICAL/<pid>.<n>.txt`` (one line per event: kind, nanoseconds, and
for an insert its CPU nanoseconds), read by :mod:`bench.critical`. Without the variable
nothing is changed.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

_FOLDER = os.environ.get("BENCH_CRITICAL")


def _time(event: tuple[str, int, int]) -> int:
    return event[1]


def _install(folder: str) -> None:
    import asyncssh.connection as ssh_connection

    clock = time.perf_counter_ns
    cpu = time.thread_time_ns
    events: dict[int, list[tuple[str, int, int]]] = {}
    inserts: list[tuple[str, int, int]] = []
    numbers = itertools.count()
    cls: Any = ssh_connection.SSHConnection
    received, send, lost = cls.data_received, cls._send, cls.connection_lost

    def data_received(self: Any, data: bytes, datatype: Any = None) -> None:
        events.setdefault(id(self), []).append(("r", clock(), len(data)))
        received(self, data, datatype)

    def _send(self: Any, data: bytes) -> None:
        events.setdefault(id(self), []).append(("s", clock(), 0))
        send(self, data)

    def connection_lost(self: Any, exc: Exception | None = None) -> None:
        record = events.pop(id(self), [])
        if record:
            path = f"{folder}/{os.getpid()}.{next(numbers)}.txt"
            with open(path, "w", encoding="ascii") as out:
                out.writelines(f"{k} {t} {c}\n" for k, t, c in sorted(record + inserts, key=_time))
            inserts.clear()
        lost(self, exc)

    cls.data_received, cls._send, cls.connection_lost = data_received, _send, connection_lost
    try:
        from gateway.spool import commit
    except ImportError:  # a server without the gateway's spool
        return
    rows: Any = commit._SqliteRows
    insert = rows.insert

    def timed_insert(self: Any, *args: Any, **kwargs: Any) -> Any:
        started, used = clock(), cpu()
        try:
            return insert(self, *args, **kwargs)
        finally:
            inserts.append(("i", started, clock() - started - (cpu() - used)))

    rows.insert = timed_insert


if _FOLDER:
    _install(_FOLDER)
