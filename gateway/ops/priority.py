"""Thread priority: the threads that finish work in hand run ahead of those that take new work.

Why: on a busy node the event loop (every upload's SSH, FTP and HTTPS bytes) and the threads
that finish sets (the pipeline's checks, ACRFs and file syncs; the database writer's commits)
take turns on the same cores. At equal priority the scheduler shares a core evenly between
them, so a batch of sets in hand crawls while the uploads that will make the next batch keep
arriving: batches grow, and every set waits longer for its ACRF. Run 10 nice levels above the
event loop, those threads take the core whenever they have work and the uploads use the rest:
below the node's peak, the same CPU per set and upload times and about half the wait for an
ACRF (``bench/e2e.py --rate 150``). The price is the peak: finished as they come, sets make
smaller batches, which cost more CPU each, so a saturated node acknowledges about a tenth fewer
sets per second (bench/README.md, "Thread priority"). Hence ``pipeline.priority_boost``: 0 (off)
by default, 10 for a node that runs below its peak and wants short waits.

Linux keeps a nice value per thread, and ``setpriority(PRIO_PROCESS, 0, ...)`` names the
calling thread, so each such thread raises itself as it starts (:class:`ThreadBoost`, a thread
pool's ``initializer``); the threads it starts later inherit its value. Raising a priority
needs ``CAP_SYS_NICE`` or an ``RLIMIT_NICE`` that allows it (systemd: ``LimitNICE=-10``, which
the shipped unit sets). Without either, the threads run at the process's priority, and one
warning says so (``threads.priority_refused``): nothing else changes.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass

import structlog

log = structlog.get_logger("gateway.ops")

HIGHEST = -20
"""The highest priority (lowest nice value) Linux has."""


@dataclass(frozen=True, slots=True)
class Priority:
    """What a thread's attempt to raise its priority came to."""

    before: int
    """The thread's nice value before."""
    after: int
    """Its nice value now (``before`` when refused or not asked)."""
    refused: bool = False
    """The kernel refused: neither ``CAP_SYS_NICE`` nor ``RLIMIT_NICE`` allowed it."""


def raise_priority(levels: int) -> Priority:
    """Raise the calling thread ``levels`` nice levels (at most to -20); Linux only (elsewhere
    a nice value is the whole process's, so nothing is changed)."""
    if levels <= 0 or not sys.platform.startswith("linux"):
        current = os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else 0
        return Priority(current, current)
    before = os.getpriority(os.PRIO_PROCESS, 0)
    target = max(HIGHEST, before - levels)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, target)
    except PermissionError:
        return Priority(before, before, refused=True)
    return Priority(before, os.getpriority(os.PRIO_PROCESS, 0))


class ThreadBoost:
    """A thread pool's ``initializer``: each new thread of the pool raises itself ``levels``
    nice levels (:func:`raise_priority`). The pool's first thread logs the outcome once:
    ``threads.priority_raised`` (info) or ``threads.priority_refused`` (warning, with what
    grants it)."""

    def __init__(self, levels: int, role: str) -> None:
        self.levels = levels
        self.role = role
        self.outcome: Priority | None = None
        """The first thread's outcome (None before the pool starts a thread)."""
        self._lock = threading.Lock()

    def __call__(self) -> None:
        outcome = raise_priority(self.levels)
        with self._lock:
            first = self.outcome is None
            if first:
                self.outcome = outcome
        if not first or self.levels <= 0:
            return
        if outcome.refused:
            log.warning(
                "threads.priority_refused",
                role=self.role,
                levels=self.levels,
                nice=outcome.before,
                hint="grant it with systemd's LimitNICE=-10 (the shipped unit has it) or "
                "CAP_SYS_NICE, or set pipeline.priority_boost = 0 to stop asking",
            )
        elif outcome.after != outcome.before:
            log.info("threads.priority_raised", role=self.role, nice=outcome.after)
