"""Benchmark: the gateway's FTPS channel against vsftpd with TLS, side by side, one client.

Both servers run on this machine in the same run and are driven by the same client command line
(lftp with ``ftp:ssl-force``, or curl with ``--ssl-reqd``: ``--client``), which differs only in
port, login and the CA file that verifies the server:

- **vsftpd** (the Debian package, ``/usr/sbin/vsftpd``) with explicit FTPS: its own config file in
  a temporary folder, ``listen=YES`` on a free loopback port, ``background=NO``, passive ports
  only, ``ssl_enable``, TLS forced for login and data, TLS 1.0 and older off and the gateway's
  TLS 1.2 suites (``ECDHE+AESGCM:ECDHE+CHACHA20``, which TLS 1.1 cannot negotiate), and a
  throwaway P-256 certificate made with openssl at run time (the gateway's development
  certificate is P-256 too). Uploads go to an anonymous upload folder ``/IN`` (no system user is
  created). ``require_ssl_reuse=NO``: with YES, curl 7.88 over TLS 1.3 gets ``522`` (session reuse
  required) on about a quarter of its data connections, and the gateway, which sends no TLS 1.3
  session tickets, ties a data connection to its control connection by peer address instead,
  so NO is both the working and the like-for-like setting. vsftpd still resumes the sessions
  that a client offers, so its data connections may skip the full handshake; the gateway's
  cannot.
- **the gateway**: ``gateway serve`` in a temporary state folder with a generated config
  (``[ftp] enabled``, SFTP off, limits raised for a 256 MiB file), with one sender provisioned
  through the registry's service API whose quality has an FTP channel and password. Its FTPS
  certificate is the development one made under ``<state>/ftps/`` (verified with ``ca.pem``).

Measured, ``--rounds`` times (default 3), the servers alternating which goes first:

1. upload MiB/s for one 256 MiB file (``--big-mib``), and the server's CPU ms per MiB;
2. files per second for 1,000 files of 4 KiB (``--files``) over one control connection (lftp
   ``mput``, curl ``-T "{a,b,...}"``), and the server's CPU ms per file.

File names are declaration names (``FI.DMFA.<sender>.<today>.<SEQ>.R.1.1``, fresh sequence
numbers each round), put in ``/IN/`` on both servers; with no GO the gateway stores them and
processes nothing. After each measure every file is checked on the server's disk, byte for byte
(for the gateway also its ``uploads`` row: size and SHA-256); a missing or damaged file is
printed and makes the exit status 1. The summary is the median of the rounds.

Server CPU is read from /proc while the client runs (:class:`CpuMeter`: vsftpd's per-session
processes, the gateway's one process with all its threads). On a shared 2-core machine the CPU
per unit of work is the steadier figure.

Why lftp by default: curl 7.88 (Debian 12), uploading several files over one connection,
sometimes stalls exactly one second before opening a data connection (its trace shows
``ftp_perform ends with SECONDARY: 0``, then ``Trying ...`` 1.001 s later): when the ``229``
reply to its ``EPSV`` is already there as it returns from sending the command, the connect
waits for its poll's 1 s fallback. That is a race in the client, not work in the server, and
it can turn 1,000 files into minutes. The gateway now answers ``EPSV`` after 1 ms, which avoids
it; vsftpd does not, so ``--client curl`` compares the gateway with a vsftpd slowed by its
client: its ratios say more about curl than about the servers.

Targets (issue 11, quoted, not asserted): both ratios >= 0.8x vsftpd, the big file >= 1x.

Run from the repository root as root (vsftpd): ``python bench/ftp.py [--rounds 3]``. Needs
vsftpd, lftp (or curl) and openssl: ``apt-get install vsftpd lftp curl``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.e2e import seq  # noqa: E402
from bench.sftp import CLK_TCK, descendants, durability_floor, free_port, free_ports  # noqa: E402
from gateway.ops.logging import configure_logging  # noqa: E402
from gateway.ops.settings import DEFAULT_TIMEZONE  # noqa: E402
from gateway.registry.migrate import migrate  # noqa: E402
from gateway.registry.types import ChannelKind  # noqa: E402
from tests.channels.provision import registry_on  # noqa: E402
from tests.pipeline.provision import ok, provision  # noqa: E402

MIB = 1024 * 1024
VSFTPD = "/usr/sbin/vsftpd"
SERVICES = ROOT / "config" / "services.toml"
NETWORKS = ROOT / "config" / "networks.toml"
PASSIVE_PORTS = 100  # per server; one data connection per file, sockets reused (SO_REUSEADDR)


# -- the servers --------------------------------------------------------------------------------


@dataclass
class Server:
    """One server under test: how a client reaches it and where its uploads land."""

    label: str
    port: int
    user: str
    password: str
    ca: Path
    process: subprocess.Popen[bytes]
    landed: Callable[[str], tuple[Path, int | None, str | None]]
    """name -> (path on disk, recorded size, recorded SHA-256) (None: nothing recorded)."""


class CpuMeter:
    """The CPU that a server's processes use while a client runs, read from /proc.

    vsftpd serves each session with two or three processes of its own; measured here, half or
    more of their CPU never reaches the listener's reaped-children counters (with or without its
    PID-namespace isolation), so those counters cannot be used. Instead every process below the
    server is read every ``interval`` seconds while the client runs and each process counts with
    its last reading: a process that ends during the measure loses at most one interval of its
    CPU (to vsftpd's advantage, a few ms per session). The gateway is one long-lived process
    (all its threads in one reading), read exactly at both ends.
    """

    def __init__(self, root: int, interval: float = 0.005) -> None:
        self._root = root
        self._interval = interval
        self._baseline: dict[int, int] = {}
        self._last: dict[int, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> dict[int, int]:
        found = {}
        for pid in descendants(self._root):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            found[pid] = int(fields[11]) + int(fields[12])  # utime + stime, all threads
        return found

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            self._last.update(self._sample())

    def __enter__(self) -> CpuMeter:
        self._baseline = self._sample()
        self._last = dict(self._baseline)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self._last.update(self._sample())

    @property
    def seconds(self) -> float:
        """CPU seconds used between enter and exit."""
        ticks = sum(t - self._baseline.get(pid, 0) for pid, t in self._last.items())
        return ticks / CLK_TCK


def passive_range(count: int) -> tuple[int, int]:
    """``count`` consecutive ports free on 127.0.0.1 now, between 20000 and 60000."""
    for _ in range(200):
        first = secrets.randbelow(40000 - count) + 20000
        socks = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return first, first + count - 1
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise SystemExit(f"no {count} consecutive free ports found")


def wait_banner(port: int, process: subprocess.Popen[bytes], label: str, log: Path) -> None:
    """Wait until ``port`` answers with an FTP ``220`` greeting."""
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"{label} exited at start:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if sock.recv(64).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{label} did not greet on port {port} within 60 s")
        time.sleep(0.05)


def start_vsftpd(work: Path) -> Server:
    """vsftpd with explicit FTPS on a free port; anonymous uploads land in work/vsftpd/root/IN."""
    if not Path(VSFTPD).exists():
        raise SystemExit("vsftpd not found: apt-get install vsftpd")
    if os.geteuid() != 0:
        raise SystemExit("vsftpd needs root here (chroot, privilege separation): run as root")
    try:
        ftp_user = pwd.getpwnam("ftp")  # vsftpd's anonymous user, made by its Debian package
    except KeyError:
        raise SystemExit("no 'ftp' user: apt-get install vsftpd makes it") from None
    etc = work / "vsftpd"
    root = etc / "root"  # the anonymous root: not writable by ftp, or vsftpd refuses it
    (root / "IN").mkdir(parents=True)
    root.chmod(0o755)
    os.chown(root / "IN", ftp_user.pw_uid, ftp_user.pw_gid)
    cert, key = etc / "cert.pem", etc / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    first, last = passive_range(PASSIVE_PORTS)
    config = etc / "vsftpd.conf"
    config.write_text(
        "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\n"
        f"listen_port={port}\nbackground=NO\n"
        "anonymous_enable=YES\nlocal_enable=NO\nno_anon_password=YES\n"
        f"anon_root={root}\nwrite_enable=YES\nanon_upload_enable=YES\nanon_umask=022\n"
        f"pasv_enable=YES\nport_enable=NO\npasv_min_port={first}\npasv_max_port={last}\n"
        "ssl_enable=YES\nallow_anon_ssl=YES\nforce_anon_logins_ssl=YES\n"
        "force_anon_data_ssl=YES\nforce_local_logins_ssl=YES\nforce_local_data_ssl=YES\n"
        "require_ssl_reuse=NO\nssl_sslv2=NO\nssl_sslv3=NO\nssl_tlsv1=NO\n"
        "ssl_ciphers=ECDHE+AESGCM:ECDHE+CHACHA20\n"
        f"rsa_cert_file={cert}\nrsa_private_key_file={key}\n"
        "xferlog_enable=NO\ndirmessage_enable=NO\nmax_clients=0\nmax_per_ip=0\n"
    )
    log = etc / "vsftpd.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [VSFTPD, str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(
        label="vsftpd",
        port=port,
        user="anonymous",
        password="",
        ca=cert,
        process=process,
        landed=lambda name: (root / "IN" / name, None, None),
    )
    wait_banner(port, process, "vsftpd", log)
    return server


async def provision_ftp(url: str, state: Path, password: str) -> tuple[str, str]:
    """One sender whose quality has an FTP channel with ``password``: (login, sender number).

    The shared provisioning helper makes the quality's first channel (SFTP, with a key made
    here and never used), which assigns the sender number; the FTP channel is added beside it.
    """
    await migrate(url)
    registry = registry_on(url, state)
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    ssh_key = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    try:
        made = await provision(
            registry, index=1, ssh_public_key=ssh_key.decode(), applications=("DMFA",)
        )
        ok(
            await registry.add_channel(
                actor=made.htb, quality=made.quality, kind=ChannelKind.ftp, ftp_password=password
            )
        )
    finally:
        await registry.engine.dispose()
    return made.login, made.number


def start_gateway(work: Path, big_bytes: int) -> tuple[Server, str]:
    """``gateway serve`` with FTP(S) on, on a provisioned SQLite registry; and the sender number."""
    state = work / "gateway-state"  # not "gateway": python -m gateway runs in ``work``
    state.mkdir()
    trust = work / "trust"
    trust.mkdir()
    url = f"sqlite+aiosqlite:///{state / 'registry.sqlite3'}"
    password = secrets.token_urlsafe(12) + "-42"
    login, sender = asyncio.run(provision_ftp(url, state, password))
    port, metrics_port = free_ports(2)
    first, last = passive_range(PASSIVE_PORTS)
    config = work / "gateway.toml"
    config.write_text(
        f'state_dir = "{state}"\nlog_format = "json"\nlog_level = "info"\ndrain_seconds = 5.0\n'
        "[sftp]\nenabled = false\n"
        f'[ftp]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n'
        f'networks_file = "{NETWORKS}"\npassive_ports = [{first}, {last}]\n'
        f"[metrics]\nport = {metrics_port}\n"
        f"[limits]\nmax_file_bytes = {max(4 * big_bytes, 200 * MIB)}\n"
        f"sender_pending_quota_bytes = {64 * 1024 * MIB}\n"
        f'[signature]\ntrust_dir = "{trust}"\n'
        f'[pipeline]\nservices_file = "{SERVICES}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    log = work / "gateway.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config), "serve"],
            stdout=out, stderr=subprocess.STDOUT, cwd=work, env=env, start_new_session=True,
        )  # fmt: skip
    spool = state / "spool" / sender / "IN"
    database = state / "registry.sqlite3"

    def landed(name: str) -> tuple[Path, int | None, str | None]:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
            row = conn.execute(
                "SELECT size, sha256 FROM uploads WHERE sender = ? AND folder = 'IN' AND name = ?",
                (sender, name),
            ).fetchone()
        return spool / name, (row[0] if row else None), (row[1] if row else None)

    server = Server(
        label="gateway",
        port=port,
        user=login,
        password=password,
        ca=state / "ftps" / "ca.pem",
        process=process,
        landed=landed,
    )
    _wait_ready(process, log, metrics_port)
    wait_banner(port, process, "gateway", log)
    return server, sender


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
            raise SystemExit("gateway not ready within 120 s")
        time.sleep(0.05)


def stop(server: Server) -> None:
    """Stop ``server`` and every process below it (TERM, then KILL after 15 s)."""
    pids = descendants(server.process.pid)
    for pid in reversed(pids):  # sessions first, so the listener does not fork anew
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=15)
    for pid in pids[1:]:  # reparented session processes, if any survived their listener
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue


# -- the client ---------------------------------------------------------------------------------


def curl_command(server: Server, files: list[Path], remote: str) -> list[str]:
    """curl uploading ``files`` (one, or a ``{a,b,...}`` glob over one control connection) to
    ``remote`` (a folder ending in ``/``, or a file path)."""
    upload = str(files[0]) if len(files) == 1 else "{" + ",".join(f.name for f in files) + "}"
    return [
        "curl", "--silent", "--show-error", "--ssl-reqd", "--cacert", str(server.ca),
        "--user", f"{server.user}:{server.password}", "--upload-file", upload,
        f"ftp://127.0.0.1:{server.port}{remote}",
    ]  # fmt: skip


def lftp_command(server: Server, files: list[Path], remote: str) -> list[str]:
    """lftp with explicit FTPS: ``put`` of one file to ``remote``, or ``mput`` into it."""
    if len(files) == 1 and not remote.endswith("/"):
        transfer = f"put {files[0]} -o {remote}"
    else:
        transfer = f"cd {remote}; mput " + " ".join(f.name for f in files)
    script = (
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; set ftp:passive-mode true; "
        f"set ssl:ca-file {server.ca}; set net:max-retries 1; set cmd:fail-exit true; "
        f"open -u {server.user},{server.password} -p {server.port} 127.0.0.1; {transfer}; bye"
    )
    return ["lftp", "-c", script]


CLIENTS = {"curl": curl_command, "lftp": lftp_command}


def upload(client: str, server: Server, files: list[Path], remote: str) -> tuple[float, str]:
    """Run the client once from the files' folder: (wall seconds, its error text)."""
    command = CLIENTS[client](server, files, remote)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=files[0].parent, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    errors = result.stderr.decode(errors="replace").strip()
    if result.returncode != 0:
        errors = f"exit {result.returncode}: {errors}"
    return elapsed, errors[-400:]


# -- checks -------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """The SHA-256 of ``path`` in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(MIB):
            digest.update(block)
    return digest.hexdigest()


def check_landed(server: Server, sent: dict[str, tuple[int, str]]) -> list[str]:
    """What is wrong with the files ``sent`` (name -> size, SHA-256) on ``server``."""
    problems = []
    for name, (size, digest) in sent.items():
        path, recorded_size, recorded_digest = server.landed(name)
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        if path.stat().st_size != size:
            problems.append(f"{name}: {path.stat().st_size} bytes, sent {size}")
        elif sha256_file(path) != digest:
            problems.append(f"{name}: content differs")
        if server.label == "gateway" and (recorded_size, recorded_digest) != (size, digest):
            problems.append(f"{name}: uploads row {recorded_size} {recorded_digest}")
    return problems


# -- measures -----------------------------------------------------------------------------------


@dataclass
class Result:
    """One measure on one server in one round."""

    seconds: float
    cpu: float
    units: float
    """MiB or files."""
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Units per second."""
        return self.units / self.seconds

    @property
    def cpu_ms(self) -> float:
        """Server CPU milliseconds per unit."""
        return self.cpu * 1000 / self.units


def measure(
    client: str, server: Server, files: list[Path], remote: str, units: float, names: list[str]
) -> Result:
    """Upload ``files`` under ``names`` (same order) and check them on the server."""
    sent = {}
    for path, name in zip(files, names, strict=True):
        sent[name] = (path.stat().st_size, sha256_file(path))
    with CpuMeter(server.process.pid) as meter:
        seconds, errors = upload(client, server, files, remote)
    used = meter.seconds
    problems = check_landed(server, sent)
    if problems and errors:
        problems.insert(0, f"client: {errors}")
    return Result(seconds=seconds, cpu=used, units=units, problems=problems)


class Names:
    """Fresh declaration names for one sender and day, from sequence number 1 on."""

    def __init__(self, sender: str, day: str) -> None:
        self.sender, self.day, self.next = sender, day, 1

    def take(self, count: int) -> list[str]:
        """``count`` names never handed out before."""
        start, self.next = self.next, self.next + count
        return [
            f"FI.DMFA.{self.sender}.{self.day}.{seq(i)}.R.1.1" for i in range(start, start + count)
        ]


def small_files(folder: Path, names: list[str]) -> list[Path]:
    """``folder`` made, holding one random 4 KiB file per name."""
    folder.mkdir()
    files = []
    for name in names:
        path = folder / name
        path.write_bytes(os.urandom(4096))
        files.append(path)
    return files


def show(label: str, what: str, result: Result, unit: str) -> None:
    """One line of a round."""
    status = "ok" if not result.problems else f"{len(result.problems)} PROBLEMS"
    print(
        f"  {label:8} {what:5} {result.units:7g} {unit:5} in {result.seconds:7.2f} s = "
        f"{result.rate:8.1f} {unit}/s, server CPU {result.cpu_ms:7.3f} ms/{unit}  {status}",
        flush=True,
    )
    for problem in result.problems[:10]:
        print(f"      {problem}", flush=True)


def main() -> int:
    """Start both servers, measure them in alternating rounds, print each round and a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client", choices=sorted(CLIENTS), default="lftp")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (and logs)")
    args = parser.parse_args()
    for tool in (args.client, "openssl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install {tool}")
    # Ctrl-C and SIGTERM end the bench through the finally blocks that stop the servers; SIGINT
    # explicitly, because a shell that starts the bench in the background makes it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    configure_logging(fmt="console", level="warning", stream=sys.stderr)  # provisioning's events
    work = Path(tempfile.mkdtemp(prefix="bench-ftp-"))
    servers: list[Server] = []
    failed = False
    try:
        big = work / "big.bin"
        with open(big, "wb") as out:
            for _ in range(args.big_mib):
                out.write(os.urandom(MIB))
        gateway, sender = start_gateway(work, args.big_mib * MIB)
        servers.append(gateway)
        servers.append(start_vsftpd(work))
        day = datetime.now(DEFAULT_TIMEZONE).strftime("%Y%m%d")  # the gateway's calendar
        names = Names(sender, day)  # the same names on both servers: a fresh batch each round
        results: dict[tuple[str, str], list[Result]] = {}
        print(
            f"bench/ftp.py: client {args.client}, {os.cpu_count()} CPUs, load "
            f"{os.getloadavg()[0]:.2f}; sender {sender}; vsftpd port {servers[1].port}, "
            f"gateway port {gateway.port}",
            flush=True,
        )
        for server in servers:  # warm-up: first connection, TLS, login, caches
            warm = small_files(work / f"warm-{server.label}", names.take(1))
            measure(args.client, server, warm, "/IN/", 1, [warm[0].name])
        for round_ in range(args.rounds):
            order = servers if round_ % 2 == 0 else servers[::-1]
            print(f"round {round_ + 1} of {args.rounds}: {order[0].label} first", flush=True)
            (name,) = names.take(1)
            for server in order:
                result = measure(
                    args.client, server, [big], f"/IN/{name}", big.stat().st_size / MIB, [name]
                )
                results.setdefault((server.label, "big"), []).append(result)
                show(server.label, "big", result, "MiB")
            batch = names.take(args.files)
            files = small_files(work / f"small-{round_}", batch)
            for server in order:
                result = measure(args.client, server, files, "/IN/", len(files), batch)
                results.setdefault((server.label, "small"), []).append(result)
                show(server.label, "small", result, "file")
        failed = report(
            results,
            rows=[
                (f"upload one {args.big_mib} MiB file (MiB/s)", "big", ">= 1.0x"),
                (f"{args.files} x 4 KiB, one connection (files/s)", "small", ">= 0.8x"),
            ],
            peer="vsftpd",
            client=args.client,
            rounds=args.rounds,
            work=work,
        )
    finally:
        for server in servers:
            stop(server)
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if failed:
        print("FAILED: some uploads did not arrive intact (see PROBLEMS above)")
    return 1 if failed else 0


def report(
    results: dict[tuple[str, str], list[Result]],
    *,
    rows: list[tuple[str, str, str]],
    peer: str,
    client: str,
    rounds: int,
    work: Path,
) -> bool:
    """Print the median of the rounds per server and measure with the gateway/``peer`` ratios
    (``rows``: title, ``"big"`` or ``"small"``, target), the server CPU per unit, and this
    disk's durability floor; True when some upload did not arrive intact."""

    def median(label: str, field_: str, value: Callable[[Result], float]) -> float:
        return statistics.median(value(r) for r in results[(label, field_)])

    lines = [(title, field_, lambda r: r.rate, target) for title, field_, target in rows]
    lines += [
        ("server CPU per MiB, big file (ms)", "big", lambda r: r.cpu_ms, ""),
        ("server CPU per file, small files (ms)", "small", lambda r: r.cpu_ms, ""),
    ]
    print(f"median of {rounds} rounds (client {client}):")
    print(f"{'measure':46} {'gateway':>9} {peer:>9} {'ratio':>6}  target")
    for title, field_, value, target in lines:
        g, p = median("gateway", field_, value), median(peer, field_, value)
        ratio = g / p if p else float("nan")
        print(f"{title:46} {g:9.2f} {p:9.2f} {ratio:6.2f}  {target}")
    floor_dir = work / "floor"
    floor_dir.mkdir()
    floor = durability_floor(floor_dir, work / "floor.sqlite3")
    print(
        f"durability floor on this disk: {floor:.2f} ms per committed file (fsync file+dir, "
        f"SQLite FULL commit), which the gateway pays and {peer} does not; load at the end "
        f"{os.getloadavg()[0]:.2f}"
    )
    return any(r.problems for rs in results.values() for r in rs)


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # the servers are stopped and the work folder removed by now
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
