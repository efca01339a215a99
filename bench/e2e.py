"""Benchmark: whole sets through ``gateway serve`` against OpenSSH's sshd merely storing the files.

N concurrent senders (default 20), each one OpenSSH ``sftp`` client process with its own key,
push 1-part sets (a 20 KiB FI, its FS made by ``openssl cms -sign``, an empty GO) back to back
for a fixed time (default 30 s), first to OpenSSH's sshd (``internal-sftp``, its own config on a
free port: the reference, which only stores the files), then to a bare asyncssh SFTP server
(``bench/bare_sftp.py``: asyncssh's own ``SFTPServer`` in a chroot, no checks, no fsync, no
database; it too only stores the files), then to ``gateway serve``, which checks names and
signatures, routes each set to the directory destination and writes a signed ACRF. The bare
server is the floor of any gateway built on asyncssh: what asyncssh itself costs per set on this
machine in the same run (``--no-bare`` skips it).

Before the gateway starts, the N senders are provisioned through the registry's service API
(enterprise, HTB first login, quality, technical user, SFTP channel with the sender's key,
subscription to DMFA, the sender's own signing certificate issued by the bench's CA, which is
the gateway's trust store). Each sender connects and authenticates before the clock starts, then
sends one set after another in one session (three ``put`` and a ``pwd`` whose answer says the GO
was closed); at the deadline it finishes the set in hand and stops.

Printed, as one table with the gateway, the bare asyncssh server and sshd side by side:
- sets stored per second by each server (sets whose GO was closed within the window);
- sets acknowledged per second by the gateway (GO.ACRF written within the window) and its ratio
  to sshd's stored sets per second;
- server CPU milliseconds per set: the gateway's process until every ACRF is written (plus the
  PostgreSQL server's), the bare asyncssh server's process over its window, sshd's listener and
  its reaped session processes; the ratio column is gateway/OpenSSH, and a row of its own gives
  the gateway's CPU per set over asyncssh's (how many times the floor it is built on);
- p50/p99 latency from "GO closed" (the gateway's ``upload.stored`` log event for the GO) to
  "GO.ACRF present" (that file's mtime), over every set, including those acknowledged after the
  window (the backlog counts against the gateway).
A line above the table names the client-to-server cipher each server ends up with (OpenSSH's
client takes the first of its own list that the server offers); the last line counts the files
sshd and the bare server stored (three per set).
Targets (issue 14, 2 cores, 20 senders): >= 200 sets/s acknowledged (PostgreSQL >= 120), <= 6 ms
of gateway CPU per set, p99 GO -> ACRF < 300 ms at 150 sets/s offered.

Paced mode: ``--rate N`` offers N sets per second on a fixed schedule (sender i starts its k-th
set at ``start + (k * senders + i) / N``; a sender still busy with its previous set starts the
next one late, counted), so latency and CPU per set are read at a known load rather than at
saturation. Every server gets the same schedule.

Pinning: ``--pin`` puts the server under test (every thread of ``gateway serve``; sshd and its
session processes; the bare asyncssh server) on CPU 0 and this script with its ``sftp`` clients
on CPU 1 (``taskset``), so the clients' encryption does not compete with the server; a
PostgreSQL server is not moved. The header line says whether it pinned.

Scale-out: ``--database-url postgresql+asyncpg://...`` runs the gateway on a fresh database of
that PostgreSQL server (dropped at the end; the server's CPU is added to the gateway's and shown
apart), and ``--nodes N`` starts N ``gateway serve`` nodes on one state directory, the shared
spool of DESIGN.md's scale-out, sender i connecting to node i mod N. On one machine this measures
what a second process buys on the same cores, not a second machine.

Run from the repository root: ``python bench/e2e.py [--senders 20] [--seconds 30] [--rate N]
[--pin] [--no-bare] [--database postgresql]``; ``--database postgresql`` takes the server of
``GATEWAY_TEST_PG_DSN`` (``eval "$(bash .ci/start-postgres)"``). Needs openssh-client,
openssh-server (``/usr/sbin/sshd``), openssl and, for ``--pin``, taskset (util-linux).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sftp import (  # noqa: E402
    CLIENT_OPTIONS,
    CLK_TCK,
    Server,
    cpu_seconds,
    durability_floor,
    free_ports,
    negotiated,
    pin_clients,
    pin_server,
    server_cpu,
    start_bare,
    start_sshd,
    stat_fields,
)
from gateway.ops.settings import DEFAULT_TIMEZONE  # noqa: E402
from gateway.registry.catalogue import load_service_catalogue  # noqa: E402
from gateway.registry.credentials import Argon2Parameters, PasswordHashing  # noqa: E402
from gateway.registry.db import create_engine  # noqa: E402
from gateway.registry.migrate import migrate  # noqa: E402
from gateway.registry.notify import OutboxNotifier  # noqa: E402
from gateway.registry.service import Registry  # noqa: E402
from tests.pipeline.provision import provision  # noqa: E402
from tests.pki import Identity, Pki, fs_text  # noqa: E402

FI_BYTES = 20 * 1024
SERVICES = ROOT / "config" / "services.toml"
CHEAP = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)
DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def seq(i: int) -> str:
    """The i-th sequence number (1-based), base 36 so that 60 million fit in 5 characters."""
    out = ""
    for _ in range(5):
        i, r = divmod(i, 36)
        out = DIGITS[r] + out
    return out


@dataclass
class Sender:
    """One bench sender: its key, its signing identity, the set files it pushes."""

    index: int
    key: Path
    public_line: str
    signer: Identity
    fi: Path
    fs: Path
    go: Path
    number: str = ""
    login: str = ""


def make_senders(work: Path, count: int) -> tuple[list[Sender], Path]:
    """Keys (ssh-keygen), a CA and one RSA-2048 signer per sender (openssl), the set files."""
    pki = Pki(work / "pki")
    ca = pki.root_ca("Bench Root CA")
    trust = work / "trust"
    trust.mkdir()
    (trust / "root.pem").write_bytes(ca.cert_pem)
    senders = []
    for i in range(count):
        folder = work / f"sender{i:02d}"
        folder.mkdir()
        key = folder / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        signer = pki.leaf(f"bench sender {i}", issuer=ca)
        # Well-formed XML (the pipeline's formal checks refuse anything else: 134-139).
        head, tail = f"<DmfA sender='{i}'><Pad>".encode(), b"</Pad></DmfA>"
        fi = folder / "fi.xml"
        pad = os.urandom(FI_BYTES).hex().encode()[: FI_BYTES - len(head) - len(tail)]
        fi.write_bytes(head + pad + tail)
        fs = folder / "fs.b64"
        fs.write_bytes(fs_text(pki.sign(fi, signer), "76-cr"))
        go = folder / "go"
        go.write_bytes(b"")
        senders.append(
            Sender(
                index=i,
                key=key,
                public_line=key.with_suffix(".pub").read_text().strip(),
                signer=signer,
                fi=fi,
                fs=fs,
                go=go,
            )
        )
    return senders, trust


async def provision_all(url: str, state: Path, senders: list[Sender]) -> None:
    """Every sender through the registry's service API, with its own signing certificate."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    await migrate(url)
    registry = Registry(
        create_engine(url),
        clock=lambda: datetime.now(UTC),
        notifier=OutboxNotifier(state / "outbox"),
        hashing=PasswordHashing(CHEAP),
        catalogue=load_service_catalogue(SERVICES),
    )
    try:
        for sender in senders:
            made = await provision(
                registry,
                index=sender.index + 1,
                ssh_public_key=sender.public_line,
                applications=("DMFA",),
                certificates=(sender.signer.cert_pem,),
            )
            sender.number, sender.login = made.number, made.login
    finally:
        await registry.engine.dispose()


@dataclass
class Gateway:
    """A running ``gateway serve`` whose JSON log goes to a file."""

    process: subprocess.Popen[bytes]
    state: Path
    log: Path
    sftp_port: int


def start_gateways(
    work: Path,
    trust: Path,
    senders: list[Sender],
    *,
    concurrency: int | None = None,
    priority_boost: int | None = None,
    database_url: str | None = None,
    nodes: int = 1,
    state_sync: str = "files",
    event_loop: str = "uvloop",
) -> list[Gateway]:
    """Provision, write the settings, start ``nodes`` daemons on one state directory (the shared
    spool of a scale-out; more than one needs PostgreSQL), each ready at /readyz."""
    state = work / "gateway-state"  # not "gateway": python -m gateway runs in ``work``
    state.mkdir()
    url = database_url or f"sqlite+aiosqlite:///{state / 'registry.sqlite3'}"
    asyncio.run(provision_all(url, state, senders))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    # The gateway of this tree, not the one an editable install points at: ``python -m gateway``
    # runs in ``work``, where the install's path would win (an A/B of two worktrees would then
    # measure one gateway twice).
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    started = []
    try:
        # One after the other: the first creates the host keys and the gateway certificate.
        for node in range(nodes):
            sftp_port, metrics_port = free_ports(2)
            config = work / f"gateway-{node}.toml"
            config.write_text(
                f'state_dir = "{state}"\n'
                f'state_sync = "{state_sync}"\n'
                f'event_loop = "{event_loop}"\n'
                + (f'database_url = "{database_url}"\n' if database_url else "")
                + f"[sftp]\nport = {sftp_port}\n"
                # Every sender connects from loopback at once: no per-source cap or penalty.
                'penalty_exempt = ["127.0.0.0/8"]\n'
                f"[metrics]\nport = {metrics_port}\n"
                f'[signature]\ntrust_dir = "{trust}"\n'
                f'[pipeline]\nservices_file = "{SERVICES}"\n'
                + (f"concurrency = {concurrency}\n" if concurrency else "")
                + (f"priority_boost = {priority_boost}\n" if priority_boost is not None else "")
            )
            log = work / f"gateway-{node}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "gateway", "--config", str(config), "serve"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=work,
                    env=env,
                )
            started.append(Gateway(process=process, state=state, log=log, sftp_port=sftp_port))
            _wait_ready(process, log, metrics_port)
    except BaseException:
        for gateway in started:
            gateway.process.kill()
        raise
    return started


def _wait_ready(process: subprocess.Popen[bytes], log: Path, metrics_port: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise SystemExit(f"gateway exited at start:\n{log.read_text()[-3000:]}")
        try:
            url = f"http://127.0.0.1:{metrics_port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit("gateway not ready within 120 s")
        time.sleep(0.05)


BENCH_DATABASE = "bench_e2e"  # a literal: SQL is never built from strings (test_sql_safety)


async def _database(server_url: str, *, create: bool) -> str:
    """Create anew (or drop) the bench's database on the PostgreSQL server of ``server_url``;
    its URL. One bench at a time per server: a second run replaces the first one's database."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text("DROP DATABASE IF EXISTS bench_e2e WITH (FORCE)"))
            if create:
                await conn.execute(text("CREATE DATABASE bench_e2e"))
    finally:
        await admin.dispose()
    return make_url(server_url).set(database=BENCH_DATABASE).render_as_string(hide_password=False)


def postgres_cpu(server_url: str) -> Callable[[], float]:
    """A reader of the PostgreSQL server's CPU seconds: the postmaster and its reaped children
    (a node's connections are reaped once the nodes stop), read on this machine's /proc."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def checkpointer_pid() -> int:  # a long-lived child of the postmaster
        engine = create_async_engine(server_url)
        try:
            async with engine.connect() as conn:
                found = await conn.execute(
                    text("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
                )
                return int(found.scalar_one())
        finally:
            await engine.dispose()

    status = Path(f"/proc/{asyncio.run(checkpointer_pid())}/status").read_text().splitlines()
    postmaster = int(next(line for line in status if line.startswith("PPid:"))[5:])
    return lambda: cpu_seconds(postmaster, children=True)


@dataclass
class Pusher:
    """One sender's sftp client process, pushing sets until told to stop."""

    argv: list[str]
    commands: Callable[[int], list[str]]
    stderr: Path
    closed: list[float] = field(default_factory=list)
    error: str | None = None
    schedule: Callable[[int], float] | None = None
    """Paced: the wall time at which set ``i`` (1-based) is due."""
    late: int = 0
    """Paced: sets started after their time (the previous one was still going)."""

    def run(self, ready: threading.Barrier, start: threading.Event, stop_at: list[float]) -> None:
        """Connect, wait for the start, push sets until ``stop_at[0]`` (wall clock)."""
        with open(self.stderr, "wb") as err:
            process = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                bufsize=1,
            )
            assert process.stdin is not None
            assert process.stdout is not None
            try:
                process.stdin.write("pwd\n")
                process.stdin.flush()
                self._await_pwd(process)  # connected and authenticated
                ready.wait()
                start.wait()
                i = 0
                while time.time() < stop_at[0]:
                    i += 1
                    if self.schedule is not None:
                        due = self.schedule(i)
                        if due >= stop_at[0]:
                            break
                        wait = due - time.time()
                        if wait > 0:
                            time.sleep(wait)
                        elif wait < -0.01:
                            self.late += 1
                    process.stdin.write("".join(f"{c}\n" for c in self.commands(i)) + "pwd\n")
                    process.stdin.flush()
                    self._await_pwd(process)
                    self.closed.append(time.time())
            except (OSError, RuntimeError) as exc:
                self.error = f"{exc}; {self.stderr.read_text()[-300:]}"
            finally:
                if process.stdin is not None:
                    process.stdin.close()
                process.wait(timeout=60)

    def _await_pwd(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        while True:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("sftp ended (a command failed)")
            if line.startswith("Remote working directory"):
                return


def sftp_argv(port: int, login: str, key: Path) -> list[str]:
    """OpenSSH sftp, batch mode from stdin, no user config."""
    return [
        "sftp", "-b", "-", "-F", "/dev/null", "-i", str(key), "-P", str(port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
        *CLIENT_OPTIONS, f"{login}@127.0.0.1",
    ]  # fmt: skip


def names(sender: Sender, i: int, day: str) -> tuple[str, str, str]:
    """FI, FS and GO names of the sender's i-th set."""
    stem = f"DMFA.{sender.number}.{day}.{seq(i)}.R"
    return f"FI.{stem}.1.1", f"FS.{stem}.1.1", f"GO.{stem}.1"


def push(
    pushers: list[Pusher], seconds: float, rate: float | None = None
) -> tuple[float, float, list[Pusher]]:
    """Run every pusher for ``seconds`` (paced at ``rate`` sets/s in all when given); return
    (window start, window end, pushers)."""
    origin = [0.0]  # the window's start, set before the pushers are let go
    if rate:
        count = len(pushers)
        for index, p in enumerate(pushers):
            # One schedule for all: set k of sender i at start + ((k - 1) * count + i) / rate.
            p.schedule = lambda k, i=index: origin[0] + ((k - 1) * count + i) / rate
    ready = threading.Barrier(len(pushers) + 1)
    start = threading.Event()
    stop_at = [float("inf")]
    threads = [
        threading.Thread(target=p.run, args=(ready, start, stop_at), daemon=True) for p in pushers
    ]
    for thread in threads:
        thread.start()
    ready.wait(timeout=120)
    began = origin[0] = time.time()
    stop_at[0] = began + seconds
    start.set()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    errors = [p.error for p in pushers if p.error]
    if errors:
        raise SystemExit(f"{len(errors)} sender(s) failed: {errors[0]}")
    return began, stop_at[0], pushers


def read_uploads(log: Path) -> tuple[dict[str, float], list[float]]:
    """From the gateway's log: GO name -> time of its ``upload.stored`` event (the GO is closed
    and committed), and every upload's own duration (open to stored), in seconds."""
    closed = {}
    durations = []
    with open(log, "rb") as lines:
        for line in lines:
            if b'"upload.stored"' not in line:
                continue
            event = json.loads(line)
            durations.append(float(event["duration"]))
            if event["name"].startswith("GO."):
                stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
                closed[event["name"]] = stamp.timestamp()
    return closed, durations


def logged_at_start(log: Path, event: str, key: str) -> str:
    """A value the gateway logged at start: ``key`` of its first ``event`` line (e.g. what
    ``state_sync`` resolved to, ``storage.state_sync`` ``mode``; the event loop it runs on,
    ``runtime.event_loop`` ``kind``), or "?"."""
    quoted = f'"{event}"'.encode()
    with open(log, "rb") as lines:
        for line in lines:
            if quoted in line:
                return str(json.loads(line)[key])
    return "?"


def acknowledgements(state: Path) -> list[tuple[str, int, float]]:
    """(GO name, ResultCode, GO.ACRF mtime) of every complete ACRF in every OUT folder."""
    found = []
    for out in (state / "out").glob("*/OUT"):
        for go in out.glob("GO.ACRF.*"):
            fo = go.with_name("FO" + go.name[2:])
            root = ET.fromstring(fo.read_bytes())  # noqa: S314 - the gateway's own ACRF
            found.append(
                (
                    root.findtext("Form/FileReference/FileName") or "",
                    int(root.findtext("Form/ReceptionResult/ResultCode") or "-1"),
                    go.stat().st_mtime,
                )
            )
    return found


def wait_for_acks(state: Path, expected: int, timeout: float) -> float:
    """Wait until ``expected`` GO.ACRF files exist (or the timeout); return the wait."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if sum(1 for _ in state.glob("out/*/OUT/GO.ACRF.*")) >= expected:
            break
        time.sleep(0.2)
    return time.monotonic() - began


def profile(pid: int, seconds: float, output: Path | None) -> subprocess.Popen[bytes] | None:
    """With ``--profile FILE``: py-spy samples the gateway's thread holding the GIL (where its
    Python CPU goes) from the window's start until every ACRF is written (collapsed stacks,
    one root frame per thread)."""
    if output is None:
        return None
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(int(seconds) + 600), "--rate", "200",
         "--format", "raw", "--output", str(output), "--nonblocking", "--threads", "--gil"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


ThreadCounts = tuple[int, int, int, int]
"""A thread's user and system clock ticks, and its voluntary and involuntary context switches."""


def thread_ticks(pid: int) -> dict[int, ThreadCounts]:
    """:data:`ThreadCounts` of each thread of ``pid``."""
    ticks: dict[int, ThreadCounts] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = stat_fields(task / "stat")
            status = (task / "status").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        switches = dict(re.findall(r"^(\w+_ctxt_switches):\s+(\d+)$", status, re.MULTILINE))
        ticks[int(task.name)] = (
            int(fields[11]),
            int(fields[12]),
            int(switches["voluntary_ctxt_switches"]),
            int(switches["nonvoluntary_ctxt_switches"]),
        )
    return ticks


def thread_groups(pid: int) -> dict[int, str]:
    """Each thread's Python name (``py-spy dump``), numbered pool threads grouped
    (``pipeline_3`` -> ``pipeline_*``)."""
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--threads needs py-spy (pip install py-spy)")
    dump = subprocess.run(
        [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    names = {}
    for found in re.finditer(r'Thread (\d+) \((?:active|idle)[^)]*\): "([^"]+)"', dump):
        name = re.sub(r"_\d+$", "_*", found.group(2))
        names[int(found.group(1))] = re.sub(r"Thread-\d+ ", "", name)
    return names


def thread_table(
    before: dict[int, ThreadCounts],
    after: dict[int, ThreadCounts],
    names: dict[int, str],
    sets: int,
) -> list[str]:
    """Lines: CPU ms per set (user, system) by thread group, largest first, with the group's
    threads and its context switches per set (voluntary: it waited; involuntary: preempted)."""
    groups: dict[str, list[int]] = {}
    for tid, counts in after.items():
        start = before.get(tid, (0, 0, 0, 0))
        group = groups.setdefault(names.get(tid, "(ended or unnamed)"), [0, 0, 0, 0, 0])
        for index in range(4):
            group[index] += counts[index] - start[index]
        group[4] += 1
    per_set = 1 / max(sets, 1)
    ms = 1000 / CLK_TCK * per_set
    lines = [
        "gateway CPU per set by thread (ms; user + system; threads; context switches per set, "
        "voluntary + involuntary):"
    ]
    for name, (user, system, waited, preempted, count) in sorted(
        groups.items(), key=lambda g: -sum(g[1][:2])
    ):
        if user + system:
            lines.append(
                f"  {name:45s} {(user + system) * ms:6.2f} = {user * ms:5.2f} + "
                f"{system * ms:5.2f}  ({count})  {waited * per_set:5.1f} + "
                f"{preempted * per_set:4.1f}"
            )
    return lines


def pusher(s: Sender, port: int, login: str, folder: str, day: str, stderr: Path) -> Pusher:
    """Sender ``s`` pushing its FI, FS and GO as set ``i`` into ``folder`` of the server on
    ``port``, logged in as ``login``."""
    return Pusher(
        argv=sftp_argv(port, login, s.key),
        commands=lambda i: [
            f"put {src} {folder}/{dst}"
            for src, dst in zip((s.fi, s.fs, s.go), names(s, i, day), strict=True)
        ],
        stderr=stderr,
    )


def cpu_pressure() -> tuple[float, int] | None:
    """(now, microseconds some task waited for a CPU since boot): Linux's PSI
    (/proc/pressure/cpu, "some" total); None where the kernel has none."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return time.monotonic(), int(line.rsplit("total=", 1)[1])


def mark(loads: list[float], pressures: list[tuple[float, int] | None]) -> None:
    """Note the 1-minute load average and the CPU pressure now (before or after a window)."""
    loads.append(os.getloadavg()[0])
    pressures.append(cpu_pressure())


def stalled(servers: str, pressures: list[tuple[float, int] | None]) -> str:
    """For each server's window (its before/after pair of marks), the share of its wall time in
    which some task waited for a CPU (PSI): what the load average only hints at, and why two
    runs of one configuration differ. Empty without PSI."""
    shares = []
    for before, after in zip(pressures[::2], pressures[1::2], strict=False):
        if before is None or after is None or after[0] <= before[0]:
            return ""
        shares.append((after[1] - before[1]) / 1e6 / (after[0] - before[0]))
    return f"; CPU pressure (PSI some) during {servers}: " + " / ".join(
        f"{share:.0%}" for share in shares
    )


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(1, round(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class Table:
    """The one table printed: a measure per row, the gateway beside the bare asyncssh server
    (when it ran) and OpenSSH's sshd."""

    def __init__(self, *, bare: bool) -> None:
        self.bare = bare
        middle = f" {'asyncssh':>9}" if bare else ""
        self.rows: list[str] = [
            f"{'measure':50} {'gateway':>9}{middle} {'OpenSSH':>9} {'ratio':>6}  target"
        ]

    def row(
        self,
        title: str,
        gateway: float,
        openssh: float | None = None,
        target: str = "",
        digits: int = 1,
        asyncssh: float | None = None,
    ) -> None:
        """One measure; the ratio is gateway/OpenSSH when both are there."""
        middle = ""
        if self.bare:
            middle = f" {asyncssh:9.{digits}f}" if asyncssh is not None else " " * 10
        other = f"{openssh:9.{digits}f}" if openssh is not None else " " * 9
        ratio = f"{gateway / openssh:6.2f}" if openssh else " " * 6
        line = f"{title:50} {gateway:9.{digits}f}{middle} {other} {ratio}  {target}"
        self.rows.append(line.rstrip())

    def print(self) -> None:
        """Print it."""
        print("\n".join(self.rows))


def main() -> int:
    """Run both servers with the same senders and files; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--rate", type=float, help="paced: sets per second offered in all, on a fixed schedule"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="server on CPU 0, this script and its sftp clients on CPU 1 (taskset)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--no-bare",
        action="store_true",
        help="skip the bare asyncssh SFTP server (bench/bare_sftp.py) between sshd and the gateway",
    )
    parser.add_argument(
        "--pipeline-concurrency",
        type=int,
        help="[pipeline] concurrency of the gateway (default: the setting's default)",
    )
    parser.add_argument(
        "--priority-boost",
        type=int,
        help="[pipeline] priority_boost of the gateway (default: the setting's default, 0)",
    )
    parser.add_argument(
        "--state-sync",
        choices=("auto", "files", "filesystem"),
        default="files",
        help="the gateway's state_sync: an fsync per file and folder, or one syncfs per batch "
        "(give --dir a filesystem of its own for the latter)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        help="parent of the work folder, the gateway's state directory included (default /tmp)",
    )
    parser.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the gateway's event_loop (default: its default, uvloop)",
    )
    parser.add_argument(
        "--cipher",
        help="the only cipher every sftp client offers (ssh -c), e.g. aes128-gcm@openssh.com, so "
        "that the three servers are compared on one cipher (by default OpenSSH's client picks "
        "chacha20-poly1305 with sshd and asyncssh, aes128-ctr + HMAC with the gateway, which "
        "does not offer chacha20)",
    )
    parser.add_argument(
        "--threads",
        action="store_true",
        help="also print the gateway's CPU per set by thread (event loop, pipeline, database, "
        "spool writer...; names read with py-spy dump)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy collapsed stacks of the gateway until every ACRF is written",
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help='postgresql: the server of GATEWAY_TEST_PG_DSN (eval "$(bash .ci/start-postgres)")',
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server on this machine (postgresql+asyncpg://...): the gateway runs on "
        "a fresh database there, dropped at the end, and its server's CPU is reported; give it "
        "the durability you run (fsync on). Default: the embedded SQLite",
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="gateway nodes on one state directory (scale-out; needs PostgreSQL); sender i "
        "connects to node i mod N",
    )
    args = parser.parse_args()
    if args.cipher:
        CLIENT_OPTIONS.extend(["-c", args.cipher])  # negotiated() and every pusher use them
    server_url = args.database_url
    if args.database == "postgresql" and not server_url:
        server_url = os.environ.get("GATEWAY_TEST_PG_DSN")
        if not server_url:
            raise SystemExit('--database postgresql: eval "$(bash .ci/start-postgres)" first')
    if args.nodes < 1 or (args.nodes > 1 and not server_url):
        raise SystemExit("--nodes above 1 needs PostgreSQL")
    if args.nodes > 1 and args.profile:
        raise SystemExit("--profile samples one node: use it with --nodes 1")
    for tool in ("sftp", "ssh-keygen", "openssl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found")
    pinned = pin_clients() if args.pin else "not pinned"
    work = Path(tempfile.mkdtemp(prefix="bench-e2e-", dir=args.dir))
    day = datetime.now(DEFAULT_TIMEZONE).strftime("%Y%m%d")  # the gateway's calendar
    try:
        senders, trust = make_senders(work, args.senders)

        # Reference: sshd (internal-sftp) storing the same files under the same names.
        sshd = start_sshd(work, "\n".join(s.public_line for s in senders))
        try:
            if args.pin:
                pin_server(sshd.pid)  # its session processes are forked from it: pinned too
            for s in senders:
                s.number = f"{900000 + s.index:06d}"
            reference = [
                pusher(
                    s, sshd.port, sshd.login, sshd.folder, day, work / f"sshd-client-{s.index}.err"
                )
                for s in senders
            ]
            ciphers = {"OpenSSH": negotiated(sshd, senders[0].key)}  # also a warm-up
            loads: list[float] = []
            pressures: list[tuple[float, int] | None] = []
            mark(loads, pressures)
            sshd_cpu = server_cpu(sshd)
            _, s_end, _ = push(reference, args.seconds, args.rate)
            mark(loads, pressures)
            sshd_cpu = server_cpu(sshd) - sshd_cpu  # sessions reaped
        finally:
            sshd.process.terminate()
            sshd.process.wait(timeout=30)
        sshd_sets = sum(1 for p in reference for t in p.closed if t <= s_end)
        sshd_files = sum(1 for _ in Path(sshd.folder).iterdir())

        # The floor of a gateway on asyncssh: asyncssh's own SFTPServer storing the same files
        # under the same names, in a chroot whose IN folder every sender pushes into.
        bare_pushers: list[Pusher] = []
        bare_cpu = 0.0
        bare_sets = bare_files = 0
        if not args.no_bare:
            bare = start_bare(work, "\n".join(s.public_line for s in senders))
            try:
                if args.pin:
                    pin_server(bare.pid)  # every thread, and those it starts later
                bare_pushers = [
                    pusher(
                        s,
                        bare.port,
                        bare.login,
                        bare.folder,
                        day,
                        work / f"bare-client-{s.index}.err",
                    )
                    for s in senders
                ]
                ciphers["asyncssh"] = negotiated(bare, senders[0].key)
                mark(loads, pressures)
                bare_cpu = server_cpu(bare)
                _, b_end, _ = push(bare_pushers, args.seconds, args.rate)
                mark(loads, pressures)
                bare_cpu = server_cpu(bare) - bare_cpu
            finally:
                bare.process.terminate()
                bare.process.wait(timeout=30)
            bare_sets = sum(1 for p in bare_pushers for t in p.closed if t <= b_end)
            bare_files = sum(1 for _ in (work / "bare-data" / "IN").iterdir())

        database = None
        if server_url:
            database = asyncio.run(_database(server_url, create=True))
            pg_cpu = postgres_cpu(server_url)
            pg_before = pg_cpu()
        nodes = start_gateways(
            work,
            trust,
            senders,
            concurrency=args.pipeline_concurrency,
            priority_boost=args.priority_boost,
            database_url=database,
            nodes=args.nodes,
            state_sync=args.state_sync,
            event_loop=args.event_loop,
        )
        state = nodes[0].state
        try:
            if args.pin:
                for node in nodes:
                    pin_server(node.process.pid)
            pushers = [
                pusher(
                    s,
                    nodes[s.index % len(nodes)].sftp_port,
                    s.login,
                    "IN",
                    day,
                    work / f"gateway-client-{s.index}.err",
                )
                for s in senders
            ]
            first = Server(
                label="gateway",
                port=nodes[0].sftp_port,
                login=senders[0].login,
                pid=nodes[0].process.pid,
                count_children=False,
                folder="IN",
                name=str,
                process=nodes[0].process,
            )
            ciphers["gateway"] = negotiated(first, senders[0].key)
            mark(loads, pressures)
            gateway_cpu = sum(cpu_seconds(n.process.pid, children=False) for n in nodes)
            spy = profile(nodes[0].process.pid, args.seconds, args.profile)
            threads_before = thread_ticks(nodes[0].process.pid) if args.threads else {}
            g_began, g_end, _ = push(pushers, args.seconds, args.rate)
            mark(loads, pressures)
            uploaded = sum(len(p.closed) for p in pushers)
            drained = wait_for_acks(state, uploaded, timeout=120)
            if args.threads:  # until every ACRF is written, like the CPU per set
                threads_after = thread_ticks(nodes[0].process.pid)
                names = thread_groups(nodes[0].process.pid)
            if spy is not None:  # until every ACRF is written: the backlog's work is included
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=120)
            gateway_cpu = (
                sum(cpu_seconds(n.process.pid, children=False) for n in nodes) - gateway_cpu
            )
        finally:
            for node in nodes:
                node.process.terminate()
            statuses = [node.process.wait(timeout=60) for node in nodes]
        pg_used = None
        if database is not None:
            pg_used = pg_cpu() - pg_before  # the nodes' connections are closed and reaped now
            asyncio.run(_database(server_url, create=False))
        stored_in_window = sum(1 for p in pushers for t in p.closed if t <= g_end)
        acks = acknowledgements(state)
        closed: dict[str, float] = {}
        upload_durations: list[float] = []
        for node in nodes:
            node_closed, node_durations = read_uploads(node.log)
            closed.update(node_closed)
            upload_durations.extend(node_durations)
        in_window = sum(1 for _, _, t in acks if g_began <= t <= g_end)
        negative = sum(1 for _, code, _ in acks if code != 1)
        latencies = [t - closed[go] for go, _, t in acks if go in closed]

        seconds = args.seconds
        ack_rate = in_window / seconds
        sshd_rate = sshd_sets / seconds
        where = "PostgreSQL" if server_url else "SQLite"
        servers = "sshd, asyncssh, gateway" if not args.no_bare else "sshd, gateway"
        mode = f"paced at {args.rate:g} sets/s offered" if args.rate else "unpaced"
        print(
            f"bench/e2e.py: {args.senders} senders (one sftp process each), 1-part sets "
            f"(FI {FI_BYTES // 1024} KiB + FS + GO), {mode}, {seconds:g} s per server, "
            f"{os.cpu_count()} CPUs, {pinned}; gateway: {len(nodes)} node(s) on {where}, "
            f"state_sync {args.state_sync} "
            f"(ran: {logged_at_start(nodes[0].log, 'storage.state_sync', 'mode')}), "
            f"event loop {logged_at_start(nodes[0].log, 'runtime.event_loop', 'kind')}"
            "; "
            f"1-min load before/after {servers}: "
            + " / ".join(f"{load:.2f}" for load in loads)
            + stalled(servers, pressures)
        )
        print("client->server cipher: " + "; ".join(f"{k} {v}" for k, v in ciphers.items()))
        bare_ran = not args.no_bare
        table = Table(bare=bare_ran)
        if args.rate:
            late = sum(p.late for p in pushers), sum(p.late for p in reference)
            table.row(
                "sets started late (behind the schedule)",
                late[0],
                late[1],
                asyncssh=sum(p.late for p in bare_pushers) if bare_ran else None,
            )
        table.row(
            "sets stored per second (GO closed in the window)",
            stored_in_window / seconds,
            sshd_rate,
            asyncssh=bare_sets / seconds if bare_ran else None,
        )
        table.row(
            "sets acknowledged per second (GO.ACRF in window)",
            ack_rate,
            sshd_rate,
            ">= 120/s" if server_url else ">= 200/s",
        )
        backlog = sum(1 for _, _, t in acks if t > g_end)
        if backlog and drained > 0:
            table.row("  after the window, backlog only (sets/s)", backlog / drained)
        sshd_all = sum(len(p.closed) for p in reference)
        bare_all = sum(len(p.closed) for p in bare_pushers)
        gateway_per_set = (gateway_cpu + (pg_used or 0.0)) * 1000 / max(len(acks), 1)
        bare_per_set = bare_cpu * 1000 / max(bare_all, 1)
        table.row(
            "server CPU per set (ms; gateway: until every ACRF)",
            gateway_per_set,
            sshd_cpu * 1000 / max(sshd_all, 1),
            "<= 6 ms",
            asyncssh=bare_per_set if bare_ran else None,
        )
        if pg_used is not None:
            table.row("  of which PostgreSQL server (ms)", pg_used * 1000 / max(len(acks), 1))
        if bare_ran and bare_per_set:
            table.row(
                "  gateway CPU per set over asyncssh's (ratio)",
                gateway_per_set / bare_per_set,
                digits=2,
            )
        if latencies:
            table.row("GO closed -> GO.ACRF present, p50 (ms)", statistics.median(latencies) * 1000)
            table.row(
                "GO closed -> GO.ACRF present, p99 (ms)",
                percentile(latencies, 99) * 1000,
                target="< 300 ms at 150/s offered",
            )
        if upload_durations:
            table.row(
                "gateway upload open -> stored, p50 (ms)",
                statistics.median(upload_durations) * 1000,
            )
            table.row(
                "gateway upload open -> stored, p99 (ms)",
                percentile(upload_durations, 99) * 1000,
            )
        stops = [
            json.loads(x)
            for n in nodes
            for x in n.log.read_bytes().splitlines()
            if b'"pipeline.stopped"' in x
        ]
        table.row(
            "pipeline SQL statements per set (its own count)",
            sum(e["statements"] for e in stops) / max(sum(e["sets"] for e in stops), 1),
            target="<= 6",
            digits=2,
        )
        table.print()
        if args.threads:
            for line in thread_table(threads_before, threads_after, names, len(acks)):
                print(line)
        floor_dir = work / "floor"
        floor_dir.mkdir()
        floor = durability_floor(floor_dir, work / "floor.sqlite3")
        print(
            f"sets uploaded to the gateway {uploaded}, ACRFs {len(acks)} ({negative} negative), "
            f"all present {drained:.1f} s after the window, latencies {len(latencies)}, exit "
            f"{statuses}; sshd sets {sshd_all} ({sshd_files} files stored)"
            + (f"; asyncssh sets {bare_all} ({bare_files} files stored)" if bare_ran else "")
            + f"; durability floor {floor:.2f} ms per committed "
            "file (fsync file+dir, SQLite FULL commit; a set is 3)"
        )
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
