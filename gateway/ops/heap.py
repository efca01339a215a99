"""The garbage collector, set for a long-running server once it has started.

Why: by the time the daemon is ready it holds some 170,000 objects that live as long as it does
(modules, SQLAlchemy's tables and compiled statements, asyncssh, the settings), and CPython's
cyclic collector walks all of them at every full collection, which the default thresholds
(700, 10, 10) trigger every few hundred sets under load, whichever thread happens to allocate
then (``perf``: ``gc_collect_main`` and ``visit_*``, ~6 % of the pipeline bench's CPU).
:func:`settle` moves the objects made during start
out of the collector's sight (``gc.freeze``) and collects the young generation less often.
Cyclic garbage made while serving is still collected, a little later.

Measured with ``bench/pipeline.py`` (600 sets, pinned, a fresh ext4 each run): 2.61-2.89 ms of
user CPU per set in the pipeline before, 2.16-2.33 after.
"""

from __future__ import annotations

import gc

THRESHOLDS = (10_000, 50, 100)
"""Allocations before a young collection, and young (then middle) collections before the next
generation's (CPython's defaults: 700, 10, 10)."""


def settle() -> None:
    """Collect once, freeze what survives (it lives as long as the process), and set the
    thresholds for serving."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
