"""The critical path of one session's small uploads, read from the timestamps a server recorded
(``bench/critical_hook``): how long the server took to answer, how long the client took to ask.

One OpenSSH ``sftp`` client sends its requests one after another for small files (it waits for
each answer), so a session's wall time is the sum of two kinds of turns:

- **the server's**: from the moment a request's bytes arrive while nothing is waiting for an
  answer, to the server's first send after it (decrypting, handling, the close's commit,
  encrypting the answer);
- **the client's**: from the server's last send to the next request's bytes (the client and
  the ``ssh`` process behind it, the loopback, the kernel's wake-ups).

Of the server's turns, the part its closes spent waiting for the disk is the spool's SQLite
insert's wall time less its CPU time (the commit's ``fdatasync``). Each figure is per file: the
session's sum divided by its files. Only sessions with at least three reads per file count (the
small-file rounds) and at most 16 KiB received per file (not the big upload's), and the median
over them is taken.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

SMALL_SESSION_BYTES = 16 * 1024
"""Bytes received per file above which a session is not one of the small-file rounds."""


@dataclass(frozen=True)
class Turns:
    """One server's turns per small file, in milliseconds."""

    server: float
    client: float
    disk_wait: float | None
    """None: the server records no SQLite insert (it commits another way)."""


def _session(path: Path, files: int) -> Turns | None:
    server = client = wait = 0
    inserts = 0
    reads = received = 0
    asked: int | None = None  # a request's arrival, not answered yet
    answered: int | None = None  # the last send
    for line in path.read_text(encoding="ascii").splitlines():
        kind, at, extra = line.split()
        moment = int(at)
        if kind == "r":
            reads += 1
            received += int(extra)
            if asked is None:
                asked = moment
                if answered is not None:
                    client += moment - answered
        elif kind == "s":
            if asked is not None:
                server += moment - asked
                asked = None
            answered = moment
        else:
            inserts += 1
            wait += int(extra)
    if reads < 3 * files or received > SMALL_SESSION_BYTES * files:
        return None
    return Turns(
        server=server / files / 1e6,
        client=client / files / 1e6,
        disk_wait=wait / files / 1e6 if inserts else None,
    )


def turns(folder: Path, pid: int, files: int) -> Turns | None:
    """The median per-file turns of server ``pid``'s small-file sessions recorded in
    ``folder``; None if it recorded none."""
    found = [t for p in sorted(folder.glob(f"{pid}.*.txt")) if (t := _session(p, files))]
    if not found:
        return None
    waits = [t.disk_wait for t in found if t.disk_wait is not None]
    return Turns(
        server=statistics.median(t.server for t in found),
        client=statistics.median(t.client for t in found),
        disk_wait=statistics.median(waits) if waits else None,
    )
