"""Benchmark: the set path in one process, without SSH: spool intake, then the pipeline to idle.

Where ``bench/e2e.py`` measures the whole gateway beside sshd (and moves with its clients'
load), this isolates the two halves a set costs inside the gateway, for profiling and for
comparing two versions or settings of the same code:

1. **upload**: ``--sets`` sets (FI of ``--fi-bytes``, its FS made by ``openssl cms``, the GO)
   stored through the spool's API, ``--senders`` uploads at once, as the channels store them
   (durable closes, group commit);
2. **pipeline**: ``run_once`` until idle: intake, name, signature and declaration checks,
   routing to the directory destination, the signed ACRF, the finish.

Paced (``--rate N``): the two halves at once, as under a steady load: sets uploaded on a fixed
schedule (set k starts at ``k / N`` seconds; ``--senders`` at most in flight) while the pipeline
runs in the background as the daemon runs it, woken by each stored GO. Its batches are then as
small as the load makes them, so this reads what a batch's fixed work costs per set at that
rate (the unpaced run takes every set in batches of ``batch_limit``). One line: CPU per set
from the first upload until the last ACRF is written, the pipeline's batches and their mean
size, and GO stored -> ACRF written p50/p99.

Printed for each phase, per set: this process's user and system CPU, the whole machine's busy
CPU (so that work the kernel does on other threads, e.g. writeback after ``syncfs``, is not
hidden), voluntary and involuntary context switches, and the rate. Run it pinned to one core
(``taskset -c 0``) to read CPU without the scheduler spreading threads. No peer runs: compare
``--state-sync files`` with ``--state-sync filesystem``, or two commits.

Run from the repository root: ``taskset -c 0 python bench/pipeline.py [--sets 400]
[--rate 150] [--state-sync filesystem] [--dir /mnt/spool]`` (``--dir``: where the state
directory goes, e.g. a filesystem of its own). Needs openssl and ssh-keygen.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.core.types import SenderNumber  # noqa: E402
from gateway.ops.heap import settle as settle_heap  # noqa: E402
from gateway.ops.logging import configure_logging  # noqa: E402
from gateway.ops.loop import EventLoop  # noqa: E402
from gateway.ops.loop import run as run_on  # noqa: E402
from gateway.registry.migrate import migrate  # noqa: E402
from gateway.spool.durable import StateSync, choose_state_sync  # noqa: E402
from tests.pipeline.conftest import Clock, build_harness, set_names  # noqa: E402
from tests.pki import standard_pki  # noqa: E402


@dataclass(frozen=True)
class Usage:
    """CPU seconds and context switches of this process, and the machine's busy seconds."""

    user: float
    system: float
    voluntary: int
    involuntary: int
    machine: float

    @classmethod
    def now(cls) -> Usage:
        r = resource.getrusage(resource.RUSAGE_SELF)
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait
        return cls(r.ru_utime, r.ru_stime, r.ru_nvcsw, r.ru_nivcsw, busy / os.sysconf("SC_CLK_TCK"))


def report(phase: str, sets: int, seconds: float, before: Usage, after: Usage) -> None:
    """One line per phase: figures per set."""
    ms = 1000 / sets
    print(
        f"{phase:9s} {sets} sets in {seconds:5.2f} s ({sets / seconds:6.1f}/s); per set: "
        f"user {(after.user - before.user) * ms:5.2f} ms, "
        f"system {(after.system - before.system) * ms:5.2f} ms, "
        f"machine busy {(after.machine - before.machine) * ms:5.2f} ms, "
        f"switches {(after.voluntary - before.voluntary) / sets:5.1f} voluntary "
        f"{(after.involuntary - before.involuntary) / sets:4.1f} involuntary; "
        f"threads {threading.active_count()}"
    )


async def run(args: argparse.Namespace, work: Path) -> None:
    """Provision, upload, process; print both phases."""
    pki = standard_pki(work / "pki")
    key = work / "id"
    keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)]
    await asyncio.to_thread(subprocess.run, keygen, check=True)
    url = f"sqlite+aiosqlite:///{work / 'registry.sqlite3'}"
    await migrate(url)
    state = work / "state"
    state.mkdir()
    h = await build_harness(
        state_dir=state,
        url=url,
        cast=pki,
        ssh_public_key=key.with_suffix(".pub").read_text().strip(),
        clock=Clock(),
        state_sync=choose_state_sync(StateSync(args.state_sync or "files"), state).mode,
    )
    body = b"<declaration>" + b"x" * max(args.fi_bytes - 30, 0) + b"</declaration>\r\n"
    signature = h.sign(body)
    await h.pipeline.ctx.profile(SenderNumber(h.number))  # cached, as under load
    settle_heap()  # as the daemon does once started
    gate = asyncio.Semaphore(args.senders)

    async def send(i: int) -> None:
        fis, fss, go, _ = set_names(sender=h.number, seq=f"{i:05d}", parts=1)
        async with gate:
            await h.upload(fis[0], body)
            await h.upload(fss[0], signature)
            await h.upload(go, b"")

    try:
        if args.rate:
            await paced(h, args, send)
            return
        before, start = Usage.now(), time.monotonic()
        await asyncio.gather(*(send(i) for i in range(1, args.sets + 1)))
        report("upload", args.sets, time.monotonic() - start, before, Usage.now())
        before, start, done = Usage.now(), time.monotonic(), 0
        while n := await h.pipeline.run_once():
            done += n
        report("pipeline", done, time.monotonic() - start, before, Usage.now())
        acrfs = h.acrfs()
        if len(acrfs) != args.sets or not all(a.accepted for _, a in acrfs):
            raise SystemExit(f"expected {args.sets} positive ACRFs, found {len(acrfs)}")
    finally:
        h.spool.close()
        await h.pipeline.aclose()
        await h.engine.dispose()


async def paced(h: Any, args: argparse.Namespace, send: Callable[[int], Awaitable[None]]) -> None:
    """Upload set k at ``k / rate`` s while the pipeline runs; one line once every ACRF is in."""
    pipeline = h.pipeline
    batches: list[int] = []
    process_batch = pipeline._process_batch

    async def counted(claims: list[Any]) -> int:
        batches.append(len(claims))
        return int(await process_batch(claims))

    pipeline._process_batch = counted  # counts the batches the worker loop makes
    stored: dict[str, float] = {}  # GO name -> when its upload was stored (send's last)
    worker = asyncio.create_task(pipeline.run())
    before, start = Usage.now(), time.monotonic()

    async def scheduled(i: int) -> None:
        await asyncio.sleep(max(0.0, start + (i - 1) / args.rate - time.monotonic()))
        await send(i)
        stored[set_names(sender=h.number, seq=f"{i:05d}", parts=1)[2]] = time.monotonic()

    await asyncio.gather(*(scheduled(i) for i in range(1, args.sets + 1)))
    await pipeline.wait_finished(args.sets)
    seconds, after = time.monotonic() - start, Usage.now()
    await pipeline.aclose(deadline=10)
    await worker
    out = h.out_dir()
    acrfs = {acrf.file_name: (out / f"GO.{name[3:]}").stat().st_mtime for name, acrf in h.acrfs()}
    # An ACRF's mtime is wall-clock time: compared with the GO's stored time on the same clock.
    offset = time.time() - time.monotonic()
    waits = sorted(acrfs[go] - (at + offset) for go, at in stored.items() if go in acrfs)
    report("paced", args.sets, seconds, before, after)
    print(
        f"          {len(batches)} batches of {statistics.mean(batches or [0]):.1f} sets on "
        f"average; GO stored -> ACRF written p50 {waits[len(waits) // 2] * 1000:.0f} ms, p99 "
        f"{waits[int(len(waits) * 0.99)] * 1000:.0f} ms ({len(waits)} sets)"
    )


def main() -> int:
    """Parse the options, run in a temporary folder, remove it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=400)
    parser.add_argument("--senders", type=int, default=20, help="uploads at once")
    parser.add_argument("--rate", type=float, help="paced: sets per second offered")
    parser.add_argument("--fi-bytes", type=int, default=20 * 1024)
    parser.add_argument("--state-sync", choices=("auto", "files", "filesystem"))
    parser.add_argument("--dir", type=Path, help="parent of the work folder (default: /tmp)")
    parser.add_argument(
        "--event-loop",
        choices=[str(kind) for kind in EventLoop],
        default=str(EventLoop.UVLOOP),
        help="the loop it runs on (default: the daemon's default, uvloop)",
    )
    args = parser.parse_args()
    for tool in ("openssl", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found")
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-", dir=args.dir))
    log = (work / "gateway.log").open("w")
    configure_logging(fmt="json", level="info", stream=log)  # the daemon's format, to a file
    print(
        f"bench/pipeline.py: {args.sets} sets, FI {args.fi_bytes} B, {args.senders} uploads at "
        f"once, state sync {args.state_sync or 'default'}, {args.event_loop}, CPUs allowed "
        f"{sorted(os.sched_getaffinity(0))}, load {os.getloadavg()[0]:.2f}, in {work}"
    )
    try:
        run_on(lambda: run(args, work), EventLoop(args.event_loop))
    finally:
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
