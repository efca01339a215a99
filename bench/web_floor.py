"""Benchmark: how fast can a durable HTTPS PUT server be, next to nginx, with curl's one connection?

``bench/web.py`` finds the gateway's web channel at a fraction of nginx's uploads per second for
1,000 files of 4 KiB PUT one after another over one keep-alive connection. The gateway answers
201 only once a file is durable (file fsync'ed, renamed, directory fsync'ed, its row committed
in SQLite with WAL and ``synchronous=FULL``); nginx does none of that. curl sends one request
and waits for its answer, so the durability of one upload cannot be batched with the next one's:
every file pays the disk's durability floor in full, in the answer's latency.

This script measures minimal prototypes that pay exactly those durability costs and nothing else
the gateway does (no registry, no name grammar, no quotas, no events), to give the lower bound a
design with this durability reaches against nginx with this client. In one run, side by side,
with ``bench/web.py``'s client (one curl command, the same command line for every server but
its port and CA file), each server is measured ``--rounds`` times (default 3), the order
alternating each round:

- ``nginx``: as ``bench/web.py`` starts it (``dav_methods PUT``, no fsync);
- ``A-loop``, ``A-thread``: a minimal ``aiohttp.web.Server`` handler. The body is streamed
  (``readany``) into a temporary file in the spool folder (``os.write``, SHA-256 as it comes),
  then: fsync the file, rename it to its name, fsync the folder, ``INSERT`` one row (name, size,
  sha256) into SQLite in WAL mode with ``synchronous=FULL`` (autocommit: the one statement is
  its own transaction, committed before it returns), and answer 201 with a small JSON body.
  ``-loop`` does that work on the event loop itself (blocking it for the floor: a sequential
  client has nothing else waiting); ``-thread`` does it in one hop to a single worker thread
  (fsync + rename + folder fsync + commit together, the loop free meanwhile);
- ``B-loop``, ``B-thread``: the same durability behind a raw ``asyncio.Protocol`` HTTP/1.1 PUT
  handler (Content-Length bodies only; no aiohttp), to see aiohttp's own cost;
- ``C``, ``C-raw``: aiohttp and the raw protocol with no durability (write and rename only, as
  nginx does: no fsync, no SQLite), to split the durability cost from the HTTP/TLS cost;
- ``D-sync``: the raw handler on blocking ``ssl`` sockets, one thread per connection, no
  asyncio (its TLS record layer is OpenSSL on the socket rather than asyncio's ``SSLProtocol``
  on memory BIOs), with the durability done inline;
- ``E-blob``: another design with the same promise (a 201 means the upload survives a crash),
  to show what the three syncs above cost: aiohttp as in A, the body committed as a BLOB in its
  SQLite row (one WAL fdatasync) and the file written and renamed without fsync, a copy that a
  restart could remake from the row;
- ``gateway``: ``gateway serve`` as ``bench/web.py`` starts it (``--no-gateway`` skips it).

Every prototype uses the gateway's TLS context (``gateway.ops.tls.server_context``: TLS 1.2+,
``ECDHE+AESGCM:ECDHE+CHACHA20``, no session tickets) with the client certificate required and
verified against the bench CA, and runs as its own process (``--serve``, spawned by this
script) so that :class:`bench.ftp.CpuMeter` reads its CPU alone. After each measure every file
is checked on the server's disk (size and SHA-256) and, where a database is kept, its row.

Printed: per server, the median over the rounds of uploads/s, of the same round's ratio to
nginx, of the wall ms per file and of the server CPU ms per file (the steadier figure on a shared
machine), then the durability floor of this disk (``bench.sftp.durability_floor``) and the bound
it sets: a server as fast as nginx that adds the floor to each answer reaches at most
``wall_nginx / (wall_nginx + floor)`` of nginx's rate.

``--profile LABELS`` records one more upload per listed server with ``py-spy record --gil``
(``--py-spy PATH``, or ``py-spy`` on ``PATH``) and prints the functions that hold the GIL most.

Run from the repository root as root: ``python bench/web_floor.py [--rounds 3]``. Needs nginx,
curl and openssl, as ``bench/web.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from aiohttp import web
from aiohttp.http import HttpVersion11

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ftp import MIB, Names, Result, Server, sha256_file, small_files, stop  # noqa: E402
from bench.sftp import durability_floor, free_port  # noqa: E402
from bench.web import Client, _openssl, _wait_tls, measure, start_gateway, start_nginx  # noqa: E402
from gateway.channels.web_config import VERIFY_FLAGS  # noqa: E402
from gateway.ops.logging import configure_logging  # noqa: E402
from gateway.ops.settings import DEFAULT_TIMEZONE  # noqa: E402
from gateway.ops.tls import server_context  # noqa: E402

PREFIX = "/v1/IN/"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
MAX_HEAD = 16 * 1024


@dataclass(frozen=True, slots=True)
class Proto:
    """One prototype: its front end and where its durability work runs."""

    label: str
    front: str  # "aiohttp", "raw" (asyncio.Protocol) or "sync" (blocking ssl sockets)
    hop: str  # where the durability work runs: "loop" (inline) or "thread" (one hop to one worker)
    store: str  # "files" (fsync file and folder, a row), "blob" (the body in the row) or "none"
    what: str


PROTOS = (
    Proto("A-loop", "aiohttp", "loop", "files", "aiohttp, durable on the loop"),
    Proto("A-thread", "aiohttp", "thread", "files", "aiohttp, durable in one thread hop"),
    Proto("B-loop", "raw", "loop", "files", "asyncio.Protocol, durable on the loop"),
    Proto("B-thread", "raw", "thread", "files", "asyncio.Protocol, durable in one hop"),
    Proto("C", "aiohttp", "loop", "none", "aiohttp, no fsync, no SQLite"),
    Proto("C-raw", "raw", "loop", "none", "asyncio.Protocol, no fsync, no SQLite"),
    Proto("D-sync", "sync", "loop", "files", "blocking ssl sockets, durable inline"),
    Proto("E-blob", "aiohttp", "loop", "blob", "aiohttp, body in the row: one commit"),
)
WHAT = {
    "nginx": "nginx PUT (dav), no fsync",
    "gateway": "gateway serve, web channel",
    **{p.label: p.what for p in PROTOS},
}


# -- the durable spool (the prototypes' one storage) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Stored:
    """A committed upload."""

    name: str
    size: int
    sha256: str


class Upload:
    """One body being written to its temporary file in the spool folder."""

    def __init__(self, folder: int, name: str) -> None:
        self.folder, self.name = folder, name
        self.temp = f".{name}.{os.getpid()}.{threading.get_ident()}.part"
        self.fd = os.open(self.temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o640, dir_fd=folder)
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, block: bytes) -> None:
        """Append ``block`` (page cache only: microseconds for these sizes, so on the loop)."""
        view = memoryview(block)
        while view:
            view = view[os.write(self.fd, view) :]
        self.digest.update(block)
        self.size += len(block)

    def abort(self) -> None:
        """Drop the temporary file (an interrupted or refused body)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp, dir_fd=self.folder)


class Spool:
    """The upload folder and its SQLite table.

    ``store``: ``"files"`` fsyncs the file and the folder and commits a row (what the gateway
    does); ``"none"`` only writes and renames (what nginx does); ``"blob"`` commits the body
    itself in the row (one WAL fdatasync: durable once committed) and writes and renames the
    file without fsync, a copy that a restart could remake from the row (not done here).
    """

    def __init__(self, folder: Path, database: Path, *, store: str) -> None:
        self.store = store
        self.folder = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        self._lock = threading.Lock()  # D-sync's threads share the one connection
        self._db = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS uploads "
            "(name TEXT PRIMARY KEY, size INTEGER, sha256 TEXT, body BLOB)"
        )

    def open(self, name: str) -> Upload:
        """A new upload for ``name`` (its temporary file created)."""
        return Upload(self.folder, name)

    def finish(self, upload: Upload) -> Stored:
        """Make ``upload`` durable under its name and record it (blocking: the floor)."""
        stored = Stored(upload.name, upload.size, upload.digest.hexdigest())
        fd, upload.fd = upload.fd, -1
        if self.store == "blob":
            body = os.pread(fd, upload.size, 0)  # back from the page cache: 4 KiB files here
            with self._lock:  # autocommit: one statement, one WAL commit before it returns
                self._db.execute(
                    "INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?)",
                    (stored.name, stored.size, stored.sha256, body),
                )
        elif self.store == "files":
            os.fsync(fd)
        os.close(fd)
        os.rename(upload.temp, upload.name, src_dir_fd=self.folder, dst_dir_fd=self.folder)
        if self.store == "files":
            os.fsync(self.folder)  # the rename itself survives a crash
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, NULL)",
                    (stored.name, stored.size, stored.sha256),
                )
        return stored


def created(stored: Stored) -> bytes:
    """The 201 answer's JSON body."""
    return json.dumps({"name": stored.name, "size": stored.size, "sha256": stored.sha256}).encode()


def route(method: str, target: str) -> str | tuple[int, str]:
    """The file name a ``PUT /v1/IN/{name}`` stores, or (status, reason) of a refusal."""
    if method != "PUT":
        return 405, "only PUT"
    name = target.removeprefix(PREFIX)
    if name == target or NAME.fullmatch(name) is None:
        return 404, "no such resource"
    return name


# -- A and C: aiohttp's low-level server --------------------------------------------------------


async def serve_aiohttp(context: ssl.SSLContext, port: int, spool: Spool, where: str) -> None:
    """aiohttp's ``web.Server`` on ``port`` until the process is stopped."""
    hop = ThreadPoolExecutor(1, "durable") if where == "thread" else None
    loop = asyncio.get_running_loop()

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        name = route(request.method, request.raw_path)
        if isinstance(name, tuple):
            return web.Response(status=name[0], text=name[1])
        upload = spool.open(name)
        if request.version == HttpVersion11 and request.headers.get("Expect", "").lower() == (
            "100-continue"
        ):  # curl asks for it on every PUT body over 1 KiB (and waits 1 s without it)
            await request.writer.write(CONTINUE)
        try:
            while block := await request.content.readany():
                upload.write(block)
            if request.content_length is not None and upload.size != request.content_length:
                raise ConnectionError("the body ended before its Content-Length")
            if hop is None:
                stored = spool.finish(upload)
            else:
                stored = await loop.run_in_executor(hop, spool.finish, upload)
        finally:
            upload.abort()  # a no-op once finished
        return web.Response(status=201, body=created(stored), content_type="application/json")

    server = web.Server(handle, access_log=None, auto_decompress=False)
    runner = web.ServerRunner(server, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    await asyncio.Event().wait()


# -- B, C-raw and D: a minimal HTTP/1.1 PUT reader (sans-IO) ------------------------------------


@dataclass(frozen=True, slots=True)
class Head:
    """A request head accepted for storing: its body of ``length`` bytes follows."""

    name: str
    length: int
    close: bool
    expect: bool


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request this reader will not serve: answered, then the connection closed."""

    status: int
    reason: str


END = b""
"""The event after a body's last byte (body pieces are never empty)."""


def parse_head(head: bytes) -> Head | Refusal:
    """RFC 9112 §3 and §5, as much as a PUT with a Content-Length needs."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        return Refusal(400, "bad request line")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        return Refusal(505, "HTTP/1.1 only")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        key, colon, value = line.partition(":")
        if not colon or key != key.strip():
            return Refusal(400, "bad header field")
        fields[key.lower()] = value.strip()
    name = route(method, target)
    if isinstance(name, tuple):
        return Refusal(*name)
    if "transfer-encoding" in fields:
        return Refusal(501, "Content-Length bodies only")
    length = fields.get("content-length", "")
    if not length.isdigit():
        return Refusal(411, "Content-Length required")
    connection = {t.strip().lower() for t in fields.get("connection", "").split(",")}
    close = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
    expect = fields.get("expect", "").lower() == "100-continue"
    return Head(name, int(length), close, expect)


class Reader:
    """Bytes in, events out: :class:`Head`, body pieces, ``END``, :class:`Refusal`, or None
    (more bytes needed)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._remaining: int | None = None  # None: waiting for a head

    def feed(self, data: bytes) -> None:
        """Bytes received."""
        self._buffer += data

    def next(self) -> Head | bytes | Refusal | None:
        """The next event."""
        if self._remaining is None:
            while self._buffer.startswith(b"\r\n"):  # RFC 9112 §2.2: empty lines before a request
                del self._buffer[:2]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return Refusal(431, "head too large") if len(self._buffer) > MAX_HEAD else None
            event = parse_head(bytes(self._buffer[:end]))
            del self._buffer[: end + 4]
            if isinstance(event, Head):
                self._remaining = event.length
            return event
        if self._remaining == 0:
            self._remaining = None
            return END
        if not self._buffer:
            return None
        piece = bytes(self._buffer[: self._remaining])
        del self._buffer[: len(piece)]
        self._remaining -= len(piece)
        return piece


class Dates:
    """The ``Date`` field, formatted once a second (as aiohttp does)."""

    def __init__(self) -> None:
        self._second, self._text = 0, ""

    def now(self) -> str:
        """Now as an HTTP date."""
        second = int(time.time())
        if second != self._second:
            self._second, self._text = second, email.utils.formatdate(second, usegmt=True)
        return self._text


DATES = Dates()
REASONS = {201: "Created", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           411: "Length Required", 431: "Request Header Fields Too Large", 500: "Internal Server "
           "Error", 501: "Not Implemented", 505: "HTTP Version Not Supported"}  # fmt: skip
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def answer(status: int, body: bytes, *, close: bool, kind: str = "application/json") -> bytes:
    """A whole response."""
    return (
        f"HTTP/1.1 {status} {REASONS[status]}\r\nServer: floor\r\nDate: {DATES.now()}\r\n"
        f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
        f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
    ).encode() + body


def refused(event: Refusal) -> bytes:
    """The answer to a refusal (the connection then closes)."""
    return answer(event.status, event.reason.encode(), close=True, kind="text/plain")


class RawPut(asyncio.Protocol):
    """B and C-raw: one connection, one request at a time (reading paused during a hop)."""

    def __init__(self, spool: Spool, hop: ThreadPoolExecutor | None) -> None:
        self._spool, self._hop = spool, hop
        self._reader = Reader()
        self._head: Head | None = None
        self._upload: Upload | None = None
        self._busy = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a stream server's
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._upload is not None and not self._busy:
            self._upload.abort()

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        self._advance()

    def _advance(self) -> None:
        transport = self._transport
        assert transport is not None  # set before any data
        while not self._busy and not transport.is_closing():
            event = self._reader.next()
            if event is None:
                return
            if isinstance(event, Refusal):
                transport.write(refused(event))
                transport.close()
            elif isinstance(event, Head):
                self._head, self._upload = event, self._spool.open(event.name)
                if event.expect:
                    transport.write(CONTINUE)
            elif event is END:
                upload, self._upload = self._upload, None
                assert upload is not None  # END follows a head
                if self._hop is None:
                    self._answer(self._spool.finish(upload))
                else:
                    self._busy = True
                    transport.pause_reading()
                    done = asyncio.get_running_loop().run_in_executor(
                        self._hop, self._spool.finish, upload
                    )
                    done.add_done_callback(self._finished)
            else:
                assert self._upload is not None  # a piece follows a head
                self._upload.write(event)

    def _answer(self, stored: Stored) -> None:
        assert self._transport is not None
        assert self._head is not None
        self._transport.write(answer(201, created(stored), close=self._head.close))
        if self._head.close:
            self._transport.close()

    def _finished(self, done: asyncio.Future[Stored]) -> None:
        self._busy = False
        assert self._transport is not None
        if self._transport.is_closing():
            return
        if done.exception() is not None:
            self._transport.write(refused(Refusal(500, "not stored")))
            self._transport.close()
            return
        self._answer(done.result())
        self._transport.resume_reading()
        self._advance()


async def serve_raw(context: ssl.SSLContext, port: int, spool: Spool, where: str) -> None:
    """:class:`RawPut` on ``port`` until the process is stopped."""
    hop = ThreadPoolExecutor(1, "durable") if where == "thread" else None
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: RawPut(spool, hop), "127.0.0.1", port, ssl=context)
    await server.serve_forever()


def serve_sync(context: ssl.SSLContext, port: int, spool: Spool) -> None:
    """D-sync: a thread per connection on a blocking ``ssl`` socket."""
    listener = socket.create_server(("127.0.0.1", port))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_sync_connection, args=(context, conn, spool), daemon=True).start()


def _sync_connection(context: ssl.SSLContext, conn: socket.socket, spool: Spool) -> None:
    reader, head, upload = Reader(), None, None
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            while data := tls.recv(256 * 1024):
                reader.feed(data)
                while (event := reader.next()) is not None:
                    if isinstance(event, Refusal):
                        tls.sendall(refused(event))
                        return
                    if isinstance(event, Head):
                        head, upload = event, spool.open(event.name)
                        if event.expect:
                            tls.sendall(CONTINUE)
                    elif event is END and upload is not None and head is not None:
                        stored, upload = spool.finish(upload), None
                        tls.sendall(answer(201, created(stored), close=head.close))
                        if head.close:
                            return
                    elif upload is not None:
                        upload.write(event)
    except (OSError, ssl.SSLError):
        pass  # the client went away: its upload is dropped below
    finally:
        if upload is not None:
            upload.abort()


def serve(args: argparse.Namespace) -> int:
    """The ``--serve`` subcommand: one prototype, until SIGTERM."""
    proto = next(p for p in PROTOS if p.label == args.serve)
    context = server_context(args.cert, args.key)  # the gateway's: TLS 1.2+, its suites
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= VERIFY_FLAGS
    context.load_verify_locations(cafile=args.ca)
    spool = Spool(args.spool, args.database, store=proto.store)
    if proto.front == "sync":
        serve_sync(context, args.port, spool)
    elif proto.front == "raw":
        asyncio.run(serve_raw(context, args.port, spool, proto.hop))
    else:
        asyncio.run(serve_aiohttp(context, args.port, spool, proto.hop))
    return 0


# -- the bench ----------------------------------------------------------------------------------


def start_proto(work: Path, proto: Proto, client: Client, cert: Path, key: Path) -> Server:
    """``proto`` as its own process; its uploads land in work/<label>/spool."""
    home = work / proto.label
    spool = home / "spool"
    spool.mkdir(parents=True)
    database = home / "uploads.sqlite3"
    port = free_port()
    log = home / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, __file__, "--serve", proto.label, "--port", str(port),
             "--cert", str(cert), "--key", str(key), "--ca", str(client.ca),
             "--spool", str(spool), "--database", str(database)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def landed(name: str) -> tuple[Path, int | None, str | None]:
        row = None
        if proto.store != "none":
            with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
                row = db.execute(
                    "SELECT size, sha256 FROM uploads WHERE name = ?", (name,)
                ).fetchone()
        return spool / name, (row[0] if row else None), (row[1] if row else None)

    server = Server(
        label=proto.label, port=port, user="", password="", ca=cert, process=process,
        landed=landed,
    )  # fmt: skip
    _wait_tls(port, process, proto.label, log)
    return server


def measure_rows(
    server: Server, client: Client, files: list[Path], names: list[str], work: Path
) -> Result:
    """``bench.web.measure`` (upload, files checked on disk), plus each prototype row's."""
    result = measure(server, client, files, names, len(files), work)
    proto = next((p for p in PROTOS if p.label == server.label), None)
    if proto is not None and proto.store != "none":
        for path, name in zip(files, names, strict=True):
            _, size, digest = server.landed(name)
            if (size, digest) != (path.stat().st_size, sha256_file(path)):
                result.problems.append(f"{name}: uploads row {size} {digest}")
    return result


def profile(
    spy: str, server: Server, client: Client, files: list[Path], names: list[str], work: Path
) -> None:
    """One upload under ``py-spy record --gil``; print where the GIL was held."""
    raw = work / f"profile-{server.label}.txt"
    recorder = subprocess.Popen(
        [spy, "record", "--gil", "--nonblocking", "--full-filenames", "--rate", "500",
         "--format", "raw", "--output", str(raw), "--pid", str(server.process.pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)  # py-spy attaches; no readiness signal to wait on
    result = measure_rows(server, client, files, names, work)
    recorder.send_signal(signal.SIGINT)
    recorder.wait(timeout=30)
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines() if raw.exists() else []:
        stack, _, hits = line.rpartition(" ")
        frames = stack.split(";")
        total += int(hits)
        own[_short(frames[-1])] += int(hits)
        packages[_package(frames[-1])] += int(hits)
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += int(hits)
    print(f"py-spy --gil on {server.label} ({total} samples, {result.cpu_ms:.3f} ms CPU/file):")
    trunk = {f for f, hits in inclusive.items() if hits > 0.5 * total or "threading.py" in f}
    below = Counter({f: hits for f, hits in inclusive.items() if f not in trunk})
    for title, counts in (("inclusive, below the loop", below), ("own", own), ("own, by package",
                          packages)):  # fmt: skip
        print(f"  top {title}:")
        for frame, share in counts.most_common(20):
            print(f"    {100 * share / max(total, 1):5.1f}%  {frame}")


def _short(frame: str) -> str:
    """``function (file.py)`` of py-spy's ``function (path:line)``."""
    return re.sub(r" \((.*/)?([^/]*):\d+\)$", r" (\2)", frame)


def _package(frame: str) -> str:
    """The package (or standard module) of a py-spy frame's file."""
    path = re.sub(r"^.* \((.*):\d+\)$", r"\1", frame)
    if "site-packages/" in path:
        return path.split("site-packages/")[1].split("/")[0].removesuffix(".py")
    if "/gateway/" in path:
        return "/".join(["gateway", *path.split("/gateway/")[1].split("/")[:-1]])
    if "/bench/" in path:
        return "bench"
    parts = path.rsplit("/python3", 1)[-1].split("/")  # [".11", "asyncio", "events.py"]
    return "stdlib " + (parts[1] if len(parts) > 1 else path)


def table(results: dict[str, list[Result]], labels: list[str], rounds: int, floor: float) -> None:
    """The medians over the rounds, each ratio taken within its round."""
    nginx = results["nginx"]
    print(f"median of {rounds} rounds, {nginx[0].units:g} x 4 KiB PUT over one keep-alive "
          "connection (one curl command):")  # fmt: skip
    print(f"{'server':9} {'what':38} {'uploads/s':>9} {'ratio':>6} {'wall ms':>8} {'CPU ms':>7}")
    for label in labels:
        runs = results[label]
        ratio = statistics.median(r.rate / n.rate for r, n in zip(runs, nginx, strict=True))
        rate = statistics.median(r.rate for r in runs)
        print(
            f"{label:9} {WHAT[label]:38} {rate:9.1f} {ratio:6.2f} {1000 / rate:8.3f} "
            f"{statistics.median(r.cpu_ms for r in runs):7.3f}"
        )
    wall = 1000 / statistics.median(r.rate for r in nginx)
    print(
        f"durability floor on this disk: {floor:.2f} ms per committed file (fsync file + folder, "
        f"SQLite WAL FULL commit); nginx's wall per file {wall:.3f} ms, so a durable server as "
        f"fast as nginx otherwise reaches at most {wall / (wall + floor):.2f}x with this client; "
        f"load at the end {os.getloadavg()[0]:.2f}"
    )


def bench(args: argparse.Namespace) -> int:
    """Start the servers, measure them in alternating rounds, print each round and the table."""
    for tool in ("curl", "openssl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install {tool}")
    protos = [p for p in PROTOS if not args.only or p.label in args.only.split(",")]
    spy = args.py_spy or shutil.which("py-spy")
    if args.profile and spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy, or --py-spy PATH")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    configure_logging(fmt="console", level="warning", stream=sys.stderr)  # provisioning's events
    work = Path(tempfile.mkdtemp(prefix="bench-web-floor-"))
    servers: list[Server] = []
    failed = False
    try:
        client = Client(work / "client")
        sender = "006400"
        if not args.no_gateway:
            gateway, sender = start_gateway(work, MIB, client)
            servers.append(gateway)
        servers.append(start_nginx(work, client))
        cert, key = work / "proto-cert.pem", work / "proto-key.pem"
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                 "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")  # fmt: skip
        servers += [start_proto(work, p, client, cert, key) for p in protos]
        names = Names(sender, datetime.now(DEFAULT_TIMEZONE).strftime("%Y%m%d"))
        print(
            f"bench/web_floor.py: client curl, {os.cpu_count()} CPUs, load "
            f"{os.getloadavg()[0]:.2f}; servers " + ", ".join(s.label for s in servers),
            flush=True,
        )
        for server in servers:  # warm-up: first connection, TLS, caches
            batch = names.take(1)
            measure_rows(server, client, small_files(work / f"warm-{server.label}", batch),
                         batch, work)  # fmt: skip
        results: dict[str, list[Result]] = {}
        for round_ in range(args.rounds):
            order = servers if round_ % 2 == 0 else servers[::-1]
            print(f"round {round_ + 1} of {args.rounds}: {order[0].label} first", flush=True)
            batch = names.take(args.files)
            files = small_files(work / f"small-{round_}", batch)
            for server in order:
                result = measure_rows(server, client, files, batch, work)
                results.setdefault(server.label, []).append(result)
                status = "ok" if not result.problems else f"{len(result.problems)} PROBLEMS"
                print(f"  {server.label:9} {result.rate:8.1f} uploads/s, server CPU "
                      f"{result.cpu_ms:6.3f} ms/file  {status}", flush=True)  # fmt: skip
                for problem in result.problems[:10]:
                    print(f"      {problem}", flush=True)
                failed = failed or bool(result.problems)
        floor_dir = work / "floor"
        floor_dir.mkdir()
        floor = durability_floor(floor_dir, work / "floor.sqlite3")
        table(results, [s.label for s in servers], args.rounds, floor)
        for label in args.profile.split(",") if args.profile else []:
            server = next(s for s in servers if s.label == label)
            batch = names.take(args.files)
            files = small_files(work / f"profile-{label}", batch)
            assert spy is not None  # checked at the start
            profile(spy, server, client, files, batch, work)
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


def main() -> int:
    """The bench, or with ``--serve`` one prototype server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="prototypes to run, e.g. A-thread,B-loop")
    parser.add_argument("--no-gateway", action="store_true", help="leave the gateway out")
    parser.add_argument("--profile", default="", help="servers to profile, e.g. gateway,A-loop")
    parser.add_argument("--py-spy", default=None, help="the py-spy program")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (and logs)")
    internal = parser.add_argument_group("one prototype (spawned by the bench)")
    internal.add_argument("--serve", choices=[p.label for p in PROTOS])
    internal.add_argument("--port", type=int)
    for option in ("--cert", "--key", "--ca", "--spool", "--database"):
        internal.add_argument(option, type=Path)
    args = parser.parse_args()
    return serve(args) if args.serve else bench(args)


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # the servers are stopped and the work folder removed by now
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
