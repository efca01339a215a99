"""Benchmark: the gateway's HTTPS web channel against nginx with client certificates, side by side.

Both servers run on this machine in the same run and are driven by the same client command line
(curl with ``--cert/--key/--cacert``), which differs only in port and in the CA file that
verifies the server:

- **nginx** (the Debian package, ``/usr/sbin/nginx``, built with ``http_dav_module``) with its
  own config file in a temporary folder: ``daemon off; master_process off`` (one process, like
  the gateway), TLS 1.2+ with the gateway's suites (``ECDHE+AESGCM:ECDHE+CHACHA20``), a
  throwaway P-256 server certificate made with openssl at run time, ``ssl_verify_client on``
  with the bench CA as ``ssl_client_certificate``, ``dav_methods PUT`` into a ``root``, with
  ``client_body_temp_path`` in the same file system (the finished body is renamed into place)
  and ``client_max_body_size 0``. nginx does not fsync what it stores; the gateway does.
- **the gateway**: ``gateway serve`` in a temporary state folder with a generated config
  (``[web] enabled``, SFTP off, limits raised for a 256 MiB file), with one sender provisioned
  through the registry's service API whose quality has a web-service channel with the bench's
  client certificate registered on it. The bench CA is in the trust folder
  (``[signature] trust_dir``). Its server certificate is the development one made under
  ``<state>/web/`` (verified with ``ca.pem``).

The client certificate (P-256, ``extendedKeyUsage=clientAuth``) and its CA are made with openssl
at run time in the temporary folder; nothing is committed.

Measured, ``--rounds`` times (default 3), the servers alternating which goes first:

1. upload MB/s for one 256 MiB file (``--big-mib``; MiB/s printed), and the server's CPU ms
   per MiB;
2. uploads per second for 1,000 files of 4 KiB (``--files``) on one keep-alive connection (one
   curl command reading a config file of ``url``/``upload-file`` pairs; curl reuses its
   connection), and the server's CPU ms per file.

File names are declaration names (``FI.DMFA.<sender>.<today>.<SEQ>.R.1.1``, fresh sequence
numbers each round), PUT to ``/v1/IN/<name>`` on both servers; with no GO the gateway stores them
and processes nothing. Every answer must be 201. After each measure every file is checked on the
server's disk: size and SHA-256 (for the gateway also its ``uploads`` row); a missing or damaged
file is printed and makes the exit status 1. The summary is the median of the rounds.

Server CPU is read from /proc while the client runs (:class:`bench.ftp.CpuMeter`).

Target (issue 12, quoted, not asserted): both ratios >= 0.5x nginx.

Run from the repository root as root: ``python bench/web.py [--rounds 3]``. Needs nginx, curl
and openssl: ``apt-get install nginx curl openssl``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ftp import (  # noqa: E402
    MIB,
    NETWORKS,
    SERVICES,
    CpuMeter,
    Names,
    Result,
    Server,
    _wait_ready,
    check_landed,
    report,
    sha256_file,
    show,
    small_files,
    stop,
)
from bench.sftp import free_port, free_ports  # noqa: E402
from gateway.ops.logging import configure_logging  # noqa: E402
from gateway.ops.settings import DEFAULT_TIMEZONE  # noqa: E402
from gateway.registry.migrate import migrate  # noqa: E402
from gateway.registry.types import ChannelKind  # noqa: E402
from tests.channels.provision import registry_on  # noqa: E402
from tests.pipeline.provision import ok, provision  # noqa: E402

NGINX = "/usr/sbin/nginx"
SUITES = "ECDHE+AESGCM:ECDHE+CHACHA20"
P256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


# -- certificates -------------------------------------------------------------------------------


class Client:
    """The bench CA and the client certificate it issued (files in ``folder``)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir()
        self.ca, ca_key = folder / "ca.pem", folder / "ca.key"
        self.cert, self.key = folder / "client.pem", folder / "client.key"
        csr, ext = folder / "client.csr", folder / "client.ext"
        _openssl(
            "req", "-x509", *P256, "-keyout", ca_key, "-out", self.ca, "-days", "2",
            "-subj", "/O=Batch Gateway bench/CN=Bench client CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        _openssl("req", "-new", *P256, "-keyout", self.key, "-out", csr,
                 "-subj", "/O=Batch Gateway bench/CN=bench-sender")  # fmt: skip
        ext.write_text(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=clientAuth\n"
        )
        _openssl(
            "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key, "-out", self.cert,
            "-days", "2", "-set_serial", str(secrets.randbits(63)), "-extfile", ext,
        )  # fmt: skip


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


# -- the servers --------------------------------------------------------------------------------


def _wait_tls(port: int, process: subprocess.Popen[bytes], label: str, log: Path) -> None:
    """Wait until ``port`` accepts a TCP connection."""
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"{label} exited at start:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 2):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{label} did not listen on port {port} within 60 s")
        time.sleep(0.05)


def start_nginx(work: Path, client: Client) -> Server:
    """nginx accepting ``PUT`` with a client certificate; uploads land in work/nginx/root/v1/IN."""
    if not Path(NGINX).exists():
        raise SystemExit("nginx not found: apt-get install nginx")
    etc = work / "nginx"
    root = etc / "root"
    (root / "v1" / "IN").mkdir(parents=True)
    temp = etc / "temp"  # the same file system as root: a finished body is renamed into place
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (temp / name).mkdir(parents=True)
    cert, key = etc / "cert.pem", etc / "key.pem"
    _openssl("req", "-x509", *P256, "-keyout", key, "-out", cert, "-days", "2",
             "-subj", "/CN=localhost", "-addext",
             "subjectAltName=DNS:localhost,IP:127.0.0.1")  # fmt: skip
    port = free_port()
    config = etc / "nginx.conf"
    config.write_text(
        f"daemon off;\nmaster_process off;\nworker_processes 1;\npid {etc / 'nginx.pid'};\n"
        f"error_log {etc / 'error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "  access_log off;\n  sendfile on;\n"
        f"  client_body_temp_path {temp / 'body'};\n  proxy_temp_path {temp / 'proxy'};\n"
        f"  fastcgi_temp_path {temp / 'fastcgi'};\n  uwsgi_temp_path {temp / 'uwsgi'};\n"
        f"  scgi_temp_path {temp / 'scgi'};\n"
        "  keepalive_requests 1000000;\n  keepalive_timeout 75s;\n"
        "  server {\n"
        f"    listen 127.0.0.1:{port} ssl;\n"
        f"    ssl_certificate {cert};\n    ssl_certificate_key {key};\n"
        f"    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_ciphers {SUITES};\n"
        f"    ssl_verify_client on;\n    ssl_client_certificate {client.ca};\n"
        "    ssl_verify_depth 2;\n"
        f"    root {root};\n"
        "    client_max_body_size 0;\n"
        "    location /v1/ { dav_methods PUT; dav_access user:rw group:r all:r; }\n"
        "  }\n"
        "}\n"
    )
    log = etc / "nginx.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [NGINX, "-c", str(config), "-p", str(etc)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    server = Server(
        label="nginx",
        port=port,
        user="",
        password="",
        ca=cert,
        process=process,
        landed=lambda name: (root / "v1" / "IN" / name, None, None),
    )
    _wait_tls(port, process, "nginx", etc / "error.log")
    return server


async def provision_web(url: str, state: Path, certificate: bytes) -> str:
    """One sender whose quality has a web-service channel with ``certificate``: its number.

    The shared provisioning helper makes the quality's first channel (SFTP, with a key made
    here and never used), which assigns the sender number; the web-service channel is added
    beside it.
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
                actor=made.htb,
                quality=made.quality,
                kind=ChannelKind.webservice,
                client_certificate=certificate,
            )
        )
    finally:
        await registry.engine.dispose()
    return made.number


def start_gateway(work: Path, big_bytes: int, client: Client) -> tuple[Server, str]:
    """``gateway serve`` with the web service on, on a provisioned SQLite registry; and the
    sender number."""
    state = work / "gateway-state"  # not "gateway": python -m gateway runs in ``work``
    state.mkdir()
    trust = work / "trust"
    trust.mkdir()
    shutil.copyfile(client.ca, trust / "bench-ca.pem")
    url = f"sqlite+aiosqlite:///{state / 'registry.sqlite3'}"
    sender = asyncio.run(provision_web(url, state, client.cert.read_bytes()))
    port, metrics_port = free_ports(2)
    config = work / "gateway.toml"
    config.write_text(
        f'state_dir = "{state}"\nlog_format = "json"\nlog_level = "info"\ndrain_seconds = 5.0\n'
        "[sftp]\nenabled = false\n"
        f'[ftp]\nenabled = false\nnetworks_file = "{NETWORKS}"\n'
        f'[web]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n'
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
        user="",
        password="",
        ca=state / "web" / "ca.pem",
        process=process,
        landed=landed,
    )
    _wait_ready(process, log, metrics_port)
    _wait_tls(port, process, "gateway", log)
    return server, sender


# -- the client ---------------------------------------------------------------------------------


def upload(
    server: Server, client: Client, files: list[Path], names: list[str], work: Path
) -> tuple[float, list[str]]:
    """One curl command PUTting each file to ``/v1/IN/<name>`` over one keep-alive connection:
    (wall seconds, what went wrong: a status other than 201, curl's error)."""
    listing = work / f"curl-{server.label}.conf"
    with open(listing, "w") as out:
        for path, name in zip(files, names, strict=True):
            out.write(
                f'url = "https://127.0.0.1:{server.port}/v1/IN/{name}"\n'
                f'upload-file = "{path}"\noutput = "/dev/null"\n'
            )
    command = [
        "curl", "--silent", "--show-error", "--cacert", str(server.ca), "--cert",
        str(client.cert), "--key", str(client.key), "--write-out", "%{http_code}\\n",
        "--config", str(listing),
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    problems = []
    statuses = result.stdout.decode().split()
    wrong = [s for s in statuses if s != "201"]
    if wrong or len(statuses) != len(files):
        problems.append(f"client: {len(statuses)} answers, not 201: {sorted(set(wrong))}")
    if result.returncode != 0:
        errors = result.stderr.decode(errors="replace").strip()[-400:]
        problems.append(f"client: exit {result.returncode}: {errors}")
    listing.unlink()
    return elapsed, problems


def measure(
    server: Server, client: Client, files: list[Path], names: list[str], units: float, work: Path
) -> Result:
    """Upload ``files`` under ``names`` (same order) and check them on the server."""
    sent = {}
    for path, name in zip(files, names, strict=True):
        sent[name] = (path.stat().st_size, sha256_file(path))
    with CpuMeter(server.process.pid) as meter:
        seconds, problems = upload(server, client, files, names, work)
    problems += check_landed(server, sent)
    return Result(seconds=seconds, cpu=meter.seconds, units=units, problems=problems)


# -- the run ------------------------------------------------------------------------------------


def main() -> int:
    """Start both servers, measure them in alternating rounds, print each round and a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (and logs)")
    args = parser.parse_args()
    for tool in ("curl", "openssl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install {tool}")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    configure_logging(fmt="console", level="warning", stream=sys.stderr)  # provisioning's events
    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    servers: list[Server] = []
    failed = False
    try:
        client = Client(work / "client")
        big = work / "big.bin"
        with open(big, "wb") as out:
            for _ in range(args.big_mib):
                out.write(os.urandom(MIB))
        gateway, sender = start_gateway(work, args.big_mib * MIB, client)
        servers.append(gateway)
        servers.append(start_nginx(work, client))
        day = datetime.now(DEFAULT_TIMEZONE).strftime("%Y%m%d")  # the gateway's calendar
        names = Names(sender, day)  # the same names on both servers: a fresh batch each round
        results: dict[tuple[str, str], list[Result]] = {}
        print(
            f"bench/web.py: client curl, {os.cpu_count()} CPUs, load "
            f"{os.getloadavg()[0]:.2f}; sender {sender}; nginx port {servers[1].port}, "
            f"gateway port {gateway.port}",
            flush=True,
        )
        for server in servers:  # warm-up: first connection, TLS, caches
            batch = names.take(1)
            warm = small_files(work / f"warm-{server.label}", batch)
            measure(server, client, warm, batch, 1, work)
        for round_ in range(args.rounds):
            order = servers if round_ % 2 == 0 else servers[::-1]
            print(f"round {round_ + 1} of {args.rounds}: {order[0].label} first", flush=True)
            name = names.take(1)
            for server in order:
                result = measure(server, client, [big], name, big.stat().st_size / MIB, work)
                results.setdefault((server.label, "big"), []).append(result)
                show(server.label, "big", result, "MiB")
            batch = names.take(args.files)
            files = small_files(work / f"small-{round_}", batch)
            for server in order:
                result = measure(server, client, files, batch, len(files), work)
                results.setdefault((server.label, "small"), []).append(result)
                show(server.label, "small", result, "file")
        failed = report(
            results,
            rows=[
                (f"upload one {args.big_mib} MiB file (MiB/s)", "big", ">= 0.5x"),
                (f"{args.files} x 4 KiB, keep-alive (uploads/s)", "small", ">= 0.5x"),
            ],
            peer="nginx",
            client="curl",
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


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # the servers are stopped and the work folder removed by now
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
