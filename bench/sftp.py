"""Benchmark: the gateway's SFTP channel against OpenSSH's sshd (internal-sftp), side by side.

Both servers run on this machine in the same run and are driven by the OpenSSH ``sftp`` client
in batch mode with key authentication. The script starts its own sshd (``/usr/sbin/sshd``, its
own config, host key and authorized_keys, a free port, ``Subsystem sftp internal-sftp``) and the
gateway's SFTP channel (``python -m gateway.cli.sftp_testserver``) on a provisioned SQLite
registry in a temporary state directory. It measures:

1. upload MB/s for one 256 MiB file, and the server's CPU milliseconds per MiB of it;
2. files per second for 1,000 files of 4 KiB over one session, and CPU milliseconds per file;
3. server CPU milliseconds per new session (connect, key auth, one 4 KiB put, close);
4. RSS of the server holding 500 idle authenticated SFTP sessions (sshd: all its processes).

Server CPU is read from /proc (sshd: listener plus reaped children) around each measure; on a
shared machine it is the steadier figure, the rates move with the load. The cipher and MAC the
client negotiated with each server are printed (OpenSSH picks the first of its own list the
server offers; ``--cipher`` makes the client offer only that one).

Two more servers are measured the same way (``--no-bare`` skips them): a bare asyncssh SFTP
server (``bench/bare_sftp.py``: the gateway's algorithms, no checks, no hashing, no sync, no
database), the ceiling the gateway is built on; and the same server with durable closes
(``--durable``: each close answered once committed, the small files' bytes with their rows, by
one writer thread, or on the event loop for a small file's close when its session is the only
one, as the gateway does), the least a durable close costs on asyncssh.

The servers take turns on measures 1-3 (best of ``--rounds`` rounds each), so load from other
work on the machine hits both alike; the script prints each figure with the gateway/OpenSSH
ratio, the load average, and this disk's durability floors (what one committed upload must wait
for: fsync of file and directory plus a SQLite FULL commit; or for a small upload committed
inline, one SQLite FULL commit of its row and bytes), which sshd does not pay. With the bare
servers measured, the small-file row is followed by its bound: the durable bare server's rate
against OpenSSH's.
Targets (issue 14): 256 MiB >= 1.4x, 1,000 x 4 KiB in one session >= 0.6x; (issue 4) CPU per
session <= 0.35x, 500 idle sessions < 150 MiB RSS.

``--fsync`` uploads to OpenSSH with ``put -f``: its sftp-server then fsyncs each file before it
answers the close, a durability step of its own (the file's data, not its folder, and no
record), so the gateway is compared with a peer that waits for the disk too.

``--subsystem`` measures one more server, ``sshd+py``: sshd whose sftp subsystem is
``bench/sshd_subsystem.py`` (a Python SFTP server on sshd's pipes, with the durable server's
closes), what a gateway on sshd's transport would pay; its small-file rate is printed as a
second bound.

``--lean`` measures one more server, ``lean``: asyncssh's transport as the gateway runs it, with
an SFTP layer of its own instead of asyncssh's (``bench/lean_sftp.py``: the same subsystem's
protocol and durable closes, fed from the channel's callbacks), what the gateway's design would
pay on asyncssh without asyncssh's SFTP server; its small-file rate is printed as a bound too.
(The gateway itself has had an SFTP layer of its own since 2026-12-07,
``gateway/channels/sftp_layer.py``: this bound is that design without the gateway's checks.)
``--lean-contract`` measures one more, ``contract``: that layer with the gateway's per-file
contract at its leanest (``bench/lean_sftp.py --contract``: the gateway's path and name checks,
free-space floor and name lookup at open, SHA-256, its own row-and-bytes insert, its log line),
a small-file bound the gateway's figure reads against.

``--critical`` splits the small files' wall time of every Python server (the gateway, the bare,
lean and contract servers: ``bench/critical_hook`` on their ``PYTHONPATH`` records when each SSH
connection receives and sends, ``bench/critical.py`` reads it) into the server's turns (a
request's bytes in to the first send after them) and the client's (the last send to the next
request), per file, with the part of the server's turns its commits waited for the disk (the
spool's SQLite insert: wall less CPU time). One ``sftp`` client waits for each answer, so a
session's files/s is 1 / (server's turns + client's turns): a ratio to OpenSSH of ``r`` needs
the server's turns at most ``1 / (r * OpenSSH's files/s)`` less the client's.

Run from the repository root: ``python bench/sftp.py [--sessions 500] [--files 1000]``;
``--only big,small`` runs just those measures (``big``, ``small``, ``cpu``, ``rss``); ``--pin``
puts every server (all its threads; sshd's session processes) on CPU 0 and this script with
its sftp clients on CPU 1, as ``bench/e2e.py --pin`` does, so the client's encryption does not
compete with the server under test; the first line says whether it pinned.
Needs openssh-server (``apt-get install openssh-server``) and openssh-client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.critical import turns  # noqa: E402
from gateway.ops.logging import configure_logging  # noqa: E402
from gateway.ops.settings import DEFAULT_TIMEZONE  # noqa: E402
from tests.channels.provision import provision_database  # noqa: E402

MIB = 1024 * 1024
CONTRACT_SENDER = "000109"
"""The sender number whose names bench/lean_sftp.py --contract checks (any valid one)."""
SSHD = "/usr/sbin/sshd"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


SERVER_CPU, CLIENT_CPU = 0, 1


def pin_clients() -> str:
    """Pin this script (and so its sftp clients, started later) to CLIENT_CPU; what was done."""
    if shutil.which("taskset") is None:
        raise SystemExit("--pin needs taskset (util-linux)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("--pin needs 2 CPUs")
    os.sched_setaffinity(0, {CLIENT_CPU})
    return f"pinned: server on CPU {SERVER_CPU}, clients on CPU {CLIENT_CPU}"


def pin_server(pid: int) -> None:
    """Every thread of ``pid`` (and what it starts later) on SERVER_CPU, with taskset."""
    subprocess.run(
        ["taskset", "-a", "-p", "-c", str(SERVER_CPU), str(pid)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now (each socket is held until all are
    chosen: one by one, the kernel may hand the same free port out twice)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def stat_fields(stat: Path) -> list[str]:
    """The fields of a ``/proc/.../stat`` file after the command name (utime is [11], stime
    [12], the reaped children's [13] and [14])."""
    return stat.read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int, *, children: bool) -> float:
    """utime+stime of ``pid`` (plus its reaped children's when ``children``), in seconds."""
    fields = stat_fields(Path(f"/proc/{pid}/stat"))
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found = [pid]
    index = 0
    while index < len(found):
        parent = found[index]
        index += 1
        try:
            kids = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except FileNotFoundError:
            continue
        found.extend(int(k) for k in kids)
    return found


def rss_bytes(pids: list[int]) -> int:
    """Summed resident set size of ``pids``."""
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except FileNotFoundError:
            continue
    return total


@dataclass
class Server:
    """One server under test and how to address files on it."""

    label: str
    port: int
    login: str
    pid: int
    count_children: bool
    folder: str
    name: Callable[[int], str]
    process: subprocess.Popen[bytes]
    put: str = "put"
    """The sftp command that uploads to it (``put -f`` with ``--fsync``: OpenSSH's)."""
    big_ciphers: list[str] = field(default_factory=list)
    """The client-to-server cipher of each key exchange of its last big upload (the gateway
    re-keys a session to AES-GCM once it has carried 4 MiB: gateway/channels/ssh_rekey.py)."""
    small_only: bool = False
    """It takes files of at most 64 KiB only (the contract server): no big upload."""


CLIENT_OPTIONS: list[str] = []
"""Extra options of every sftp client (``--cipher``)."""


def sftp_args(server: Server, key: Path) -> list[str]:
    """The OpenSSH sftp command line for ``server``."""
    return [
        "sftp", "-b", "-", "-F", "/dev/null", *CLIENT_OPTIONS, "-i", str(key),
        "-P", str(server.port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
        f"{server.login}@127.0.0.1",
    ]  # fmt: skip


def run_batch(server: Server, key: Path, batch: str, *, kex: list[str] | None = None) -> float:
    """Run one sftp batch; return its wall time. Fails loudly if sftp fails. ``kex``: filled
    with the client-to-server cipher (and MAC) of each key exchange the session made."""
    argv = sftp_args(server, key)
    if kex is not None:
        argv[argv.index("LogLevel=ERROR")] = "LogLevel=DEBUG1"
    started = time.perf_counter()
    result = subprocess.run(argv, input=batch.encode(), capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{server.label}: sftp failed: {result.stderr.decode()[-500:]}")
    if kex is not None:
        kex[:] = kex_ciphers(result.stderr.decode(errors="replace"))
    return elapsed


def kex_ciphers(log: str) -> list[str]:
    """From an sftp client's debug log: each key exchange's client-to-server cipher and MAC."""
    found = []
    for line in log.splitlines():
        if "kex: client->server cipher:" in line:
            words = line.split()
            cipher = words[words.index("cipher:") + 1]
            mac = words[words.index("MAC:") + 1]
            found.append(cipher if mac == "<implicit>" else f"{cipher} + {mac}")
    return found


def negotiated(server: Server, key: Path) -> str:
    """The client-to-server cipher and MAC the sftp client picks with ``server``."""
    kex: list[str] = []
    run_batch(server, key, "pwd\n", kex=kex)
    return kex[0] if kex else "?"


def server_cpu(server: Server) -> float:
    """The server's CPU seconds so far. sshd's sessions are processes, whose time reaches the
    listener once they are reaped: their end (a moment after the client's) is waited for."""
    if server.count_children:
        deadline = time.monotonic() + 10
        while len(descendants(server.pid)) > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    return cpu_seconds(server.pid, children=server.count_children)


def server_keys(etc: Path, key_pub: str) -> Path:
    """``etc`` made, holding a new ed25519 host key (``host_ed25519``) and an
    ``authorized_keys`` with ``key_pub``; returns ``etc``."""
    etc.mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(etc / "host_ed25519")],
        check=True,
    )
    (etc / "authorized_keys").write_text(key_pub + "\n")
    return etc


def start_sshd(work: Path, key_pub: str, *, subsystem: bool = False) -> Server:
    """sshd on a free port with its own config; uploads land in work/sshd-data. ``subsystem``:
    its sftp subsystem is bench/sshd_subsystem.py (durable closes, SQLite beside the data)
    instead of internal-sftp, and uploads land in work/sshd+py-data."""
    if not Path(SSHD).exists():
        raise SystemExit("sshd not found: apt-get install openssh-server")
    label = "sshd+py" if subsystem else "sshd"
    etc = server_keys(work / label, key_pub)
    data = work / f"{label}-data"
    data.mkdir()
    sftp = "internal-sftp"
    if subsystem:
        script = ROOT / "bench" / "sshd_subsystem.py"
        sftp = f"env PYTHONPATH={ROOT} {sys.executable} {script} {work / f'{label}.sqlite3'}"
    Path("/run/sshd").mkdir(exist_ok=True)
    port = free_port()
    config = etc / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {etc / 'host_ed25519'}\n"
        f"AuthorizedKeysFile {etc / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PermitRootLogin prohibit-password\nSubsystem sftp {sftp}\n"
        "MaxStartups 1000\nMaxSessions 10\nPidFile none\nLogLevel ERROR\n"
    )
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    _wait_port(port)
    user = (
        os.environ.get("USER")
        or subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    )
    return Server(
        label="sshd+py" if subsystem else "OpenSSH",
        port=port,
        login=user,
        pid=process.pid,
        count_children=True,
        folder=str(data),
        name=lambda i: f"file{i:06d}",
        process=process,
    )


def start_bare(
    work: Path, key_pub: str, *, durable: bool = False, lean: bool = False, contract: bool = False
) -> Server:
    """The bare asyncssh SFTP server (bench/bare_sftp.py) serving work/<label>-data; ``lean``:
    bench/lean_sftp.py, asyncssh's transport with an SFTP layer of its own; ``contract``: the
    same with the gateway's per-file contract (its checks, digest, rows and log line)."""
    label = "contract" if contract else "lean" if lean else "durable" if durable else "asyncssh"
    etc = server_keys(work / label, key_pub)
    script = ROOT / "bench" / ("lean_sftp.py" if lean or contract else "bare_sftp.py")
    options = ["--durable"] * durable + ["--contract", CONTRACT_SENDER] * contract
    process = subprocess.Popen(
        [sys.executable, str(script), str(work / f"{label}-data"),
         str(etc / "host_ed25519"), str(etc / "authorized_keys"), *options],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(b"port "):
        raise SystemExit(f"bare asyncssh server did not start: {line!r}")
    today = datetime.now(DEFAULT_TIMEZONE).strftime("%Y%m%d")  # gateway calendar

    def name(i: int) -> str:
        return f"FI.DMFA.{CONTRACT_SENDER}.{today}.{_seq(i)}.R.1.1" if contract else f"file{i:06d}"

    return Server(
        label=label,
        port=int(line.split()[1]),
        login="bench",
        pid=process.pid,
        count_children=False,
        folder="/IN",
        name=name,
        process=process,
        small_only=contract,
    )


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def start_gateway(work: Path, key_pub: str) -> Server:
    """The gateway's SFTP channel on a provisioned registry; limits raised for the bench."""
    state = work / "gateway"
    state.mkdir()
    url = f"sqlite+aiosqlite:///{state / 'registry.sqlite3'}"
    senders = asyncio.run(provision_database(url, state, [[key_pub]]))
    sender = senders[0]
    env = dict(os.environ)
    env.update(
        GATEWAY_LIMITS__MAX_FILE_BYTES=str(1024 * MIB),
        GATEWAY_LIMITS__SENDER_PENDING_QUOTA_BYTES=str(64 * 1024 * MIB),
        GATEWAY_LIMITS__SENDER_MAX_SESSIONS="2000",
        GATEWAY_SFTP__MAX_STARTUPS="2000",
        GATEWAY_SFTP__PENALTY_EXEMPT='["127.0.0.0/8"]',  # hundreds of sessions from loopback
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.sftp_testserver", "--state-dir", str(state),
         "--database-url", url],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(b"port "):
        raise SystemExit(f"gateway did not start: {line!r}")
    today = datetime.now(DEFAULT_TIMEZONE).strftime("%Y%m%d")  # gateway calendar

    def name(i: int) -> str:
        return f"FI.DMFA.{sender.number}.{today}.{_seq(i)}.R.1.1"

    return Server(
        label="gateway",
        port=int(line.split()[1]),
        login=sender.login,
        pid=process.pid,
        count_children=False,
        folder="/IN",
        name=name,
        process=process,
    )


def _seq(i: int) -> str:
    """Sequence numbers 00001, 00002...: base 36 so thousands of names stay 5 characters."""
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    n = i + 1
    out = ""
    for _ in range(5):
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out


class Counter:
    """Hands out distinct file numbers per server."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, n: int = 1) -> range:
        """``n`` fresh numbers."""
        start = self.next
        self.next += n
        return range(start, start + n)


def bench_big(server: Server, key: Path, big: Path, counter: Counter) -> dict[str, float]:
    """MB/s for one put of ``big``, and the server's CPU ms per MiB."""
    (i,) = counter.take()
    mib = big.stat().st_size / MIB
    before = server_cpu(server)
    elapsed = run_batch(
        server, key, f"{server.put} {big} {server.folder}/{server.name(i)}\n",
        kex=server.big_ciphers,
    )  # fmt: skip
    return {"big": mib / elapsed, "big_cpu": (server_cpu(server) - before) * 1000 / mib}


def bench_small(
    server: Server, key: Path, small: Path, count: int, counter: Counter
) -> dict[str, float]:
    """Files per second for ``count`` puts of ``small`` in one session, and CPU ms per file."""
    batch = "".join(
        f"{server.put} {small} {server.folder}/{server.name(i)}\n" for i in counter.take(count)
    )
    before = server_cpu(server)
    elapsed = run_batch(server, key, batch)
    return {"small": count / elapsed, "small_cpu": (server_cpu(server) - before) * 1000 / count}


def bench_cpu(
    server: Server, key: Path, small: Path, sessions: int, counter: Counter
) -> dict[str, float]:
    """Server CPU milliseconds per session of connect, key auth, one put, close."""
    before = server_cpu(server)
    for i in counter.take(sessions):
        run_batch(server, key, f"{server.put} {small} {server.folder}/{server.name(i)}\n")
    return {"cpu": (server_cpu(server) - before) * 1000 / sessions}


def bench_idle(server: Server, key: Path, sessions: int) -> int:
    """Server RSS with ``sessions`` idle authenticated SFTP sessions (OpenSSH sftp clients)."""
    clients: list[subprocess.Popen[bytes]] = []
    try:
        for start in range(0, sessions, 25):
            batch = []
            for _ in range(min(25, sessions - start)):
                proc = subprocess.Popen(
                    sftp_args(server, key),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
                assert proc.stdin is not None
                proc.stdin.write(b"pwd\n")
                proc.stdin.flush()
                batch.append(proc)
            for proc in batch:  # each answers pwd only once authenticated with SFTP running
                assert proc.stdout is not None
                while b"Remote working directory" not in proc.stdout.readline():
                    if proc.poll() is not None:
                        raise RuntimeError(f"{server.label}: an idle session failed")
            clients.extend(batch)
        return rss_bytes(descendants(server.pid))
    finally:
        for proc in clients:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in clients:
            proc.wait(timeout=60)


def _wal_database(database: Path, create: str) -> sqlite3.Connection:
    """A SQLite connection as the gateway's (WAL, ``synchronous=FULL``, transactions opened by
    hand), after the ``create`` statement of its table."""
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(create)
    return conn


def durability_floor(directory: Path, database: Path, count: int = 50) -> float:
    """Milliseconds for what every committed upload must wait for on this disk: a 4 KiB file
    written, linked and fsync'ed with its directory, then one SQLite WAL commit (FULL)."""
    conn = _wal_database(
        database, "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT)"
    )
    started = time.perf_counter()
    for i in range(count):
        tmp, final = directory / f"tmp{i}", directory / f"final{i}"
        with open(tmp, "wb") as file:
            file.write(os.urandom(4096))
            file.flush()
            os.link(tmp, final)
            os.fsync(file.fileno())
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd)
        os.close(fd)
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t (name) VALUES (?)", (str(final),))
        conn.execute("COMMIT")
        os.unlink(tmp)
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed * 1000 / count


def inline_floor(directory: Path, database: Path, count: int = 100, warm: int = 400) -> float:
    """Milliseconds for what a small upload committed inline waits for (SQLite): its 4 KiB
    written under its name, not synced, then one SQLite WAL commit (FULL) of its row and its
    bytes. Measured after ``warm`` commits, past the first checkpoint (the default one, at 1,000
    pages): a running gateway's WAL is written over in place, a new one grows at every commit,
    which costs the filesystem a journal commit more."""
    conn = _wal_database(
        database, "CREATE TABLE IF NOT EXISTS i (id INTEGER PRIMARY KEY, name TEXT, content BLOB)"
    )
    spent = 0.0
    for i in range(warm + count):
        started = time.perf_counter()
        data = os.urandom(4096)
        final = directory / f"inline{i}"
        fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.close(fd)
        conn.execute("BEGIN")
        conn.execute("INSERT INTO i (name, content) VALUES (?, ?)", (str(final), data))
        conn.execute("COMMIT")
        if i >= warm:
            spent += time.perf_counter() - started
    conn.close()
    return spent * 1000 / count


# (title, field, best of the rounds, target): rates keep their highest round, CPU its lowest.
ROWS = (
    ("upload {big} MiB file (MB/s)", "big", max, ">= 1.4"),
    ("  server CPU per MiB (ms)", "big_cpu", min, ""),
    ("{files} x 4 KiB files, one session (files/s)", "small", max, ">= 0.6"),
    ("  server CPU per file (ms)", "small_cpu", min, ""),
    ("server CPU per new session (ms)", "cpu", min, "<= 0.35"),
    ("RSS with {sessions} idle sessions (MiB)", "rss", min, "gateway < 150 MiB"),
)
MEASURES = ("big", "small", "cpu", "rss")


def print_turns(servers: list[Server], labels: list[str], recorded: Path, files: int) -> None:
    """The small files' critical path per server (bench/critical.py), under the files/s row."""
    found = {s.label: turns(recorded, s.pid, files) for s in servers}
    for title, part in (
        ("  server's turns per file (ms)", "server"),
        ("    of which the commit's disk wait (ms)", "disk_wait"),
        ("  client's turns per file (ms)", "client"),
    ):
        cells = ""
        for label in labels:
            value = getattr(found[label], part) if found[label] is not None else None
            cells += f" {value:10.3f}" if value is not None else f" {'-':>10}"
        print(f"{title:46}{cells} {'-':>10}")


def main() -> int:
    """Run every measurement on both servers and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--cpu-sessions", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only", default=",".join(MEASURES), help="measures to run, of " + ",".join(MEASURES)
    )
    parser.add_argument(
        "--cipher", help="the only cipher the sftp clients offer (ssh -c), e.g. aes128-ctr"
    )
    parser.add_argument(
        "--no-bare", action="store_true", help="skip the bare asyncssh reference server"
    )
    parser.add_argument(
        "--fsync",
        action="store_true",
        help="OpenSSH's uploads with put -f: its sftp-server fsyncs each file before answering",
    )
    parser.add_argument(
        "--subsystem",
        action="store_true",
        help="also sshd with bench/sshd_subsystem.py, a Python SFTP subsystem with durable closes",
    )
    parser.add_argument(
        "--lean",
        action="store_true",
        help="also bench/lean_sftp.py: asyncssh's transport with an SFTP layer of its own",
    )
    parser.add_argument(
        "--lean-contract",
        action="store_true",
        help="also bench/lean_sftp.py --contract: that layer with the gateway's per-file contract",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="servers on CPU 0, this script and its sftp clients on CPU 1 (taskset)",
    )
    parser.add_argument(
        "--critical",
        action="store_true",
        help="the small files' critical path: the Python servers' turns and the client's, per "
        "file (bench/critical.py)",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    if not only <= set(MEASURES):
        raise SystemExit(f"--only takes {','.join(MEASURES)}")
    if args.cipher:
        CLIENT_OPTIONS.extend(["-c", args.cipher])
    for tool in ("sftp", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install openssh-client")
    configure_logging(fmt="console", level="warning", stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-sftp-") as tmp:
        work = Path(tmp)
        key = work / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        key_pub = (work / "id_ed25519.pub").read_text().strip()
        big = work / "big.bin"
        with open(big, "wb") as out:
            for _ in range(args.big_mib):
                out.write(os.urandom(MIB))
        small = work / "small.bin"
        small.write_bytes(os.urandom(4096))
        pinned = pin_clients() if args.pin else "not pinned"
        recorded = work / "critical"
        if args.critical:
            recorded.mkdir()
            hook = str(ROOT / "bench" / "critical_hook")
            path = os.environ.get("PYTHONPATH")
            os.environ["PYTHONPATH"] = f"{hook}{os.pathsep}{path}" if path else hook
            os.environ["BENCH_CRITICAL"] = str(recorded)
        servers = [start_gateway(work, key_pub), start_sshd(work, key_pub)]
        if args.fsync:
            servers[1].put = "put -f"
        if not args.no_bare:
            servers.append(start_bare(work, key_pub))
            servers.append(start_bare(work, key_pub, durable=True))
        if args.subsystem:
            servers.append(start_sshd(work, key_pub, subsystem=True))
        if args.lean:
            servers.append(start_bare(work, key_pub, lean=True))
        if args.lean_contract:
            servers.append(start_bare(work, key_pub, contract=True))
        if args.pin:
            for server in servers:
                pin_server(server.pid)  # every thread; sshd's sessions are forked from it
        results: dict[str, dict[str, float]] = {s.label: {} for s in servers}
        counters = {s.label: Counter() for s in servers}
        best = {field: pick for _, field, pick, _ in ROWS}
        # The servers take turns on each measure, `--rounds` times, and each keeps its best
        # round: on a shared machine, load that comes and goes then hits both alike.
        measures: list[tuple[str, Callable[[Server, Counter], dict[str, float]]]] = [
            ("big", lambda srv, c: bench_big(srv, key, big, c)),
            ("small", lambda srv, c: bench_small(srv, key, small, args.files, c)),
            ("cpu", lambda srv, c: bench_cpu(srv, key, small, args.cpu_sessions, c)),
        ]
        try:
            ciphers = {s.label: negotiated(s, key) for s in servers}  # also the warm-up
            loads = [os.getloadavg()[0]]
            for name, measure in measures:
                if name not in only:
                    continue
                rounds: dict[str, list[dict[str, float]]] = {s.label: [] for s in servers}
                taking = [s for s in servers if not (s.small_only and name == "big")]
                for _ in range(args.rounds):
                    for server in taking:
                        rounds[server.label].append(measure(server, counters[server.label]))
                for server in taking:
                    for field in rounds[server.label][0]:
                        values = [r[field] for r in rounds[server.label]]
                        results[server.label][field] = best[field](values)
            if "rss" in only:
                for server in servers:
                    results[server.label]["rss"] = bench_idle(server, key, args.sessions) / MIB
            loads.append(os.getloadavg()[0])
        finally:
            for server in servers:
                server.process.terminate()
                server.process.wait(timeout=30)
        floor_dir = work / "floor"
        floor_dir.mkdir()
        floor = durability_floor(floor_dir, work / "floor.sqlite3")
        inline = inline_floor(floor_dir, work / "inline.sqlite3")
        print(
            f"bench/sftp.py: OpenSSH sftp client; load average {loads[0]:.2f} -> {loads[1]:.2f} "
            f"on {os.cpu_count()} CPUs, {pinned}; best of {args.rounds} alternating rounds; "
            f"{'OpenSSH puts with -f (fsync per file); ' if args.fsync else ''}"
            "durability "
            f"floor per committed file: {floor:.2f} ms synced (fsync file+dir, SQLite FULL "
            f"commit), {inline:.2f} ms inline (a file of at most 64 KiB: SQLite FULL commit of "
            "its row and bytes)"
        )
        print("client->server cipher: " + "; ".join(f"{k} {v}" for k, v in ciphers.items()))
        moved = [s for s in servers if len(s.big_ciphers) > 1]
        if moved:
            print(
                "re-keyed during the big upload: "
                + "; ".join(f"{s.label} to {' then '.join(s.big_ciphers[1:])}" for s in moved)
            )
        labels = [s.label for s in servers if s.label != "OpenSSH"]
        head = "".join(f" {label:>10}" for label in labels)
        print(f"{'measure':46}{head} {'OpenSSH':>10} {'ratio':>6}  target (gateway/OpenSSH)")
        o = results["OpenSSH"]
        for title, field, _, target in ROWS:
            if field not in o:
                continue
            text = title.format(big=args.big_mib, files=args.files, sessions=args.sessions)
            cells = "".join(
                f" {results[label][field]:10.2f}" if field in results[label] else f" {'-':>10}"
                for label in labels
            )
            g = results["gateway"][field]
            ratio = g / o[field] if o[field] else float("nan")
            print(f"{text:46}{cells} {o[field]:10.2f} {ratio:6.2f}  {target}")
            if field == "small" and args.critical:
                print_turns(servers, labels, recorded, args.files)
        for label, title in (
            ("durable", "  bound: asyncssh, durable closes (files/s)"),
            ("sshd+py", "  bound: sshd + Python, durable closes (files/s)"),
            ("lean", "  bound: asyncssh, own SFTP layer (files/s)"),
            ("contract", "  bound: that layer + gateway contract (files/s)"),
        ):
            bound = results.get(label, {}).get("small")
            if bound and "small" in o:
                print(
                    f"{title:46}{'':{11 * labels.index(label)}} {bound:10.2f}"
                    f"{'':{11 * (len(labels) - 1 - labels.index(label))}} {o['small']:10.2f}"
                    f" {bound / o['small']:6.2f}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
