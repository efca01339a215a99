"""After :func:`gateway.ops.heap.settle`, cyclic garbage made while serving is still collected by
itself (no explicit ``gc.collect``), and what start made is out of the collector's sight. Run in
a child interpreter: freezing pytest's own heap would change every later test."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import gc, json
from gateway.ops.heap import THRESHOLDS, settle

settle()
frozen = gc.get_freeze_count()
freed = 0

class Node:
    def __del__(self):
        global freed
        freed += 1

for _ in range(100_000):  # cycles only the collector can free
    a, b = Node(), Node()
    a.other, b.other = b, a
print(json.dumps({"frozen": frozen, "freed": freed, "thresholds": gc.get_threshold()}))
"""


def test_cycles_made_after_settling_are_collected_without_being_asked() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=60
    )
    seen = json.loads(done.stdout)
    assert seen["frozen"] > 1000  # the interpreter's and the module's objects
    assert seen["thresholds"] == [10_000, 50, 100]
    # Of 200,000: all but those still in the young generation (at most 10,000 allocations).
    assert 200_000 - seen["freed"] <= 10_000 + 100
