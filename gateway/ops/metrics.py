"""The product's Prometheus metrics, and the small HTTP server that exposes them with health checks.

Rules:
- Metrics live in a registry of their own (never prometheus_client's global default), built by
  :meth:`Metrics.create`, so two daemons in one test process never share counters.
- Every name carries the ``gateway_`` prefix; label values are bounded sets chosen by our code
  (channel, code, outcome…), never peer data such as a username or a file name.
- The server answers ``GET`` (and ``HEAD``) on three paths only: ``/metrics`` (text exposition
  format), ``/healthz`` (200 while the event loop answers) and ``/readyz`` (200 once the daemon
  says it is ready, 503 before and while draining, and while a readiness check names a problem:
  the spool short of space, so a balancer sends new sessions to another node). Everything else
  is 404, other methods 405.
  It is meant for the management interface only (SECURITY.md 9): settings bind it to 127.0.0.1
  by default and it is never mounted on a sender-facing listener.
- Each request is bounded (8 KiB of head, 10 s to send it) and the connection is closed after
  the answer, so a slow or hostile scraper cannot hold the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["SET_DURATION_BUCKETS", "Metrics", "MetricsServer", "serve_metrics"]

NAMESPACE = "gateway"

# A set takes from well under a second (small DmfA, local route) to minutes (large file, slow
# HTTPS destination with retries).
SET_DURATION_BUCKETS: tuple[float, ...] = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)

# The classic text format, which every Prometheus version and compatible scraper reads; newer
# prometheus-client releases label their default "1.0.0", which older scrapers do not know.
EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_MAX_HEAD = 8192
_READ_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Metrics:
    """Every metric of the gateway, registered in :attr:`registry`.

    Label meanings: ``channel`` ∈ sftp, ftp, web; ``env`` ∈ R, T, S; ``code`` is the catalogue
    code of the refusal; ``outcome`` is an enum value chosen by the caller (accepted, rejected,
    cancelled, expired for sets, and failed for a set a local fault stopped, which is retried;
    delivered, retry, failed for routing attempts); ``result`` for
    acknowledgements is positive or negative; ``reason`` for authentication failures is a fixed
    word (unknown_user, bad_password, bad_key, blocked, password_login_off, …).
    """

    registry: CollectorRegistry
    sessions_active: Gauge
    sessions_total: Counter
    auth_failures_total: Counter
    connections_refused_total: Counter
    uploads_stored_total: Counter
    upload_bytes_total: Counter
    uploads_refused_total: Counter
    uploads_short_of_space_total: Counter
    storage_reserve_released_total: Counter
    sets_total: Counter
    set_duration_seconds: Histogram
    acks_written_total: Counter
    admissions_held_total: Counter
    routing_attempts_total: Counter
    certificates_expiring: Gauge
    certificate_next_expiry: Gauge
    build_info: Gauge

    @classmethod
    def create(cls) -> Metrics:
        """A fresh registry holding a fresh set of the gateway's metrics."""
        registry = CollectorRegistry(auto_describe=True)
        ns = NAMESPACE
        return cls(
            registry=registry,
            sessions_active=Gauge(
                "sessions_active",
                "Sessions open now.",
                ["channel"],
                namespace=ns,
                registry=registry,
            ),
            sessions_total=Counter(
                "sessions",
                "Sessions authenticated since start.",
                ["channel"],
                namespace=ns,
                registry=registry,
            ),
            auth_failures_total=Counter(
                "auth_failures",
                "Failed authentications.",
                ["channel", "reason"],
                namespace=ns,
                registry=registry,
            ),
            connections_refused_total=Counter(
                "connections_refused",
                "Connections refused before login (penalty, max_startups, max_startups_per_source, "
                "stopping), each counted even when its log line was left out.",
                ["channel", "reason"],
                namespace=ns,
                registry=registry,
            ),
            uploads_stored_total=Counter(
                "uploads_stored",
                "Uploads stored durably.",
                ["channel", "env"],
                namespace=ns,
                registry=registry,
            ),
            upload_bytes_total=Counter(
                "upload_bytes",
                "Bytes of uploads stored durably.",
                ["channel"],
                namespace=ns,
                registry=registry,
            ),
            uploads_refused_total=Counter(
                "uploads_refused",
                "Uploads refused, by catalogue code.",
                ["channel", "code"],
                namespace=ns,
                registry=registry,
            ),
            uploads_short_of_space_total=Counter(
                "uploads_short_of_space",
                "Uploads refused with 929: the spool below its free-space floor (cause=floor) "
                "or its filesystem full (cause=disk_full).",
                ["channel", "cause"],
                namespace=ns,
                registry=registry,
            ),
            storage_reserve_released_total=Counter(
                "storage_reserve_released",
                "Times the space reserve was given up on a full filesystem, by where it was met "
                "(upload, commit, remove; start: no room for it at start).",
                ["cause"],
                namespace=ns,
                registry=registry,
            ),
            sets_total=Counter(
                "sets",
                "Sets processed, by outcome (failed: a local fault; the set is retried).",
                ["outcome"],
                namespace=ns,
                registry=registry,
            ),
            set_duration_seconds=Histogram(
                "set_duration_seconds",
                "Seconds from a set's GO to its acknowledgement.",
                buckets=SET_DURATION_BUCKETS,
                namespace=ns,
                registry=registry,
            ),
            acks_written_total=Counter(
                "acks_written",
                "Acknowledgements (ACRF) written, by result.",
                ["result"],
                namespace=ns,
                registry=registry,
            ),
            admissions_held_total=Counter(
                "admissions_held",
                "GO/TD commits held because the pipeline had admission_backlog sets in hand.",
                namespace=ns,
                registry=registry,
            ),
            routing_attempts_total=Counter(
                "routing_attempts",
                "Delivery attempts to online services.",
                ["destination", "outcome"],
                namespace=ns,
                registry=registry,
            ),
            certificates_expiring=Gauge(
                "certificates_expiring",
                "Certificates that expire within 30 days or have expired: registered signing "
                "certificates (signing), channel client certificates (client), the gateway's own "
                "acknowledgement certificate (gateway).",
                ["kind"],
                namespace=ns,
                registry=registry,
            ),
            certificate_next_expiry=Gauge(
                "certificate_next_expiry_timestamp_seconds",
                "When the first certificate of each kind expires (Unix time; absent when none).",
                ["kind"],
                namespace=ns,
                registry=registry,
            ),
            build_info=Gauge(
                "build_info",
                "1, labelled with the package version and the build (a digest of the installed "
                "files' recorded hashes; 'source' for a source checkout).",
                ["version", "build"],
                namespace=ns,
                registry=registry,
            ),
        )

    def exposition(self) -> bytes:
        """The current values in the Prometheus text format."""
        return generate_latest(self.registry)


class MetricsServer:
    """A running metrics/health server; close it with :meth:`aclose` or ``async with``."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._server: asyncio.Server | None = None
        self._ready = False
        self._checks: list[Callable[[], str | None]] = []
        self._handlers: set[asyncio.Task[None]] = set()

    async def _start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port, limit=_MAX_HEAD)

    @property
    def metrics(self) -> Metrics:
        """The metrics this server exposes."""
        return self._metrics

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        if self._server is None:
            raise RuntimeError("metrics server not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200."""
        return self._ready

    def set_ready(self, ready: bool) -> None:
        """Set readiness: True once listeners are open, False again when draining starts."""
        self._ready = ready

    def add_readiness_check(self, check: Callable[[], str | None]) -> None:
        """While ``check()`` names a problem (a short fixed text), ``/readyz`` answers 503 with
        it. Called at each request, on the event loop: it must be quick (one ``statvfs``)."""
        self._checks.append(check)

    def readiness_problem(self) -> str | None:
        """Why ``/readyz`` answers 503 now, or None."""
        if not self._ready:
            return "not ready"
        for check in self._checks:
            try:
                problem = check()
            except Exception:  # a failing check is itself a reason not to take traffic
                problem = "readiness check failed"
            if problem is not None:
                return f"not ready: {problem}"
        return None

    async def aclose(self) -> None:
        """Stop listening and end any request still in progress."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def __aenter__(self) -> MetricsServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            status, body, content_type, head_only = await self._answer(reader)
            await _respond(writer, status, body, content_type, head_only=head_only)
        except (OSError, asyncio.IncompleteReadError):
            pass  # the scraper went away; nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            if task is not None:
                self._handlers.discard(task)

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes, str, bool]:
        text = "text/plain; charset=utf-8"
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.LimitOverrunError, ValueError):
            return 431, b"request head too large\n", text, False
        except TimeoutError:
            return 400, b"bad request\n", text, False
        request_line = head.split(b"\r\n", 1)[0]
        parts = request_line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return 400, b"bad request\n", text, False
        method, target = parts[0], parts[1]
        if method not in (b"GET", b"HEAD"):
            return 405, b"method not allowed\n", text, False
        head_only = method == b"HEAD"
        path = target.split(b"?", 1)[0]
        if path == b"/metrics":
            return 200, self._metrics.exposition(), EXPOSITION_CONTENT_TYPE, head_only
        if path == b"/healthz":
            return 200, b"ok\n", text, head_only
        if path == b"/readyz":
            problem = self.readiness_problem()
            if problem is None:
                return 200, b"ready\n", text, head_only
            return 503, f"{problem}\n".encode(), text, head_only
        return 404, b"not found\n", text, head_only


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    content_type: str,
    *,
    head_only: bool,
) -> None:
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    if status == 405:
        lines.append("Allow: GET, HEAD")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
    if not head_only:
        writer.write(body)
    await writer.drain()


async def serve_metrics(metrics: Metrics, host: str, port: int) -> MetricsServer:
    """Start serving ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (0: any port).

    Readiness starts False; the daemon calls ``set_ready(True)`` once its listeners are open.
    """
    running = MetricsServer(metrics)
    await running._start(host, port)
    return running
