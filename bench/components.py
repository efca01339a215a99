"""Where the gateway's Python CPU goes per set, by component, from ``bench/e2e.py --profile``.

``bench/e2e.py --profile FILE`` has py-spy sample the gateway's thread holding the GIL (200 Hz,
from the window's start until every ACRF is written) and write collapsed stacks. This reads
them and prints milliseconds per set for each component of issue 14's table: each sample goes
to the component of its innermost frame that belongs to one (library frames such as
SQLAlchemy's or hashlib's count for the gateway code that called them; asyncssh's and
structlog's are components of their own; a sample whose innermost frame is asyncio's runner is
the event loop's own C code, uvloop), and a sample with none is ``other`` (mostly stacks py-spy
could not unwind whole).

Run from the repository root::

    python bench/e2e.py --pin --no-bare --profile /tmp/gw.txt   # note its GO.ACRF count
    python bench/components.py /tmp/gw.txt --sets 4179 [--rate 200]

The GIL's samples are the Python side of the CPU; native work that released the GIL (SQLite's
``fdatasync``, OpenSSL's hashing of large buffers, the kernel's I/O) is not in them, so the
table reads against the bench's own CPU per set, not as a part of it.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

COMPONENTS: tuple[tuple[str, str], ...] = (
    ("logging", r"\((structlog/|gateway/ops/logging\.py)"),
    (
        "SSH transport and the SFTP layer",
        r"\((asyncssh/|gateway/channels/(sftp_layer|sftp_wire|eager|ssh_\w+)\.py)",
    ),
    ("upload group commit", r"\(gateway/spool/commit\.py"),
    ("pipeline file sync and renames", r"\((gateway/pipeline/files|gateway/spool/durable)\.py"),
    (
        "upload spool path and SFTP handlers",
        r"\((gateway/spool/|gateway/channels/(sftp|sftp_session|limits|penalties)\.py)",
    ),
    (
        "signature verify, name and formal checks",
        r"\(gateway/(pipeline/(checks|trust_files)|core/(signature|cms|names|declaration|trust|sets))\.py",
    ),
    ("ACRF", r"\(gateway/(pipeline/(acks|publish)|core/(receipts|cms_sign))\.py"),
    ("routing", r"\(gateway/pipeline/routing\.py"),
    ("pipeline SQL", r"\(gateway/pipeline/(store|db|statements|intake|records|tables|turns)\.py"),
    ("registry (logins, sender profiles)", r"\(gateway/registry/"),
    ("pipeline orchestration", r"\(gateway/pipeline/"),
    ("thread-pool glue", r"\((concurrent/futures/|threading\.py|queue\.py)"),
    ("event loop", r"\((asyncio/|uvloop)"),
)
"""Each component and the frames that are its own, tried in this order on each frame."""
_RULES = [(name, re.compile(pattern)) for name, pattern in COMPONENTS]


def component(stack: list[str]) -> str:
    """The component of a sample: that of its innermost frame that has one."""
    for frame in reversed(stack):
        for name, rule in _RULES:
            if rule.search(frame):
                return name
    return "other"


def samples_by_component(path: Path) -> tuple[Counter[str], int]:
    """Samples per component in py-spy's collapsed stacks at ``path``, and the total."""
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        samples = int(number)
        counts[component(stack.split(";"))] += samples
        total += samples
    return counts, total


def main() -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", type=Path, help="bench/e2e.py --profile's output")
    parser.add_argument("--sets", type=int, required=True, help="sets acknowledged in the run")
    parser.add_argument("--rate", type=float, default=200.0, help="py-spy's samples per second")
    args = parser.parse_args()
    counts, total = samples_by_component(args.stacks)
    scale = 1000.0 / args.rate / args.sets
    print(f"{total} samples holding the GIL over {args.sets} sets: {total * scale:.2f} ms per set")
    for name, samples in counts.most_common():
        print(f"  {name:44s} {samples * scale:6.2f} ms per set  ({100 * samples / total:4.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
