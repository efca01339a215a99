"""The daemon's operational frame: metrics server, readiness, systemd notify and watchdog, signals.

``serve()`` uses it so that its own body reads top to bottom (STYLE.md habit 5)::

    stop = asyncio.Event()
    async with running_ops(settings.metrics) as ops:
        install_stop_signals(stop)
        ... open registry, start listeners ...
        ops.ready()             # /readyz 200, READY=1 to systemd, "daemon.ready" logged
        await stop.wait()
        ops.draining()          # /readyz 503, STOPPING=1, "daemon.draining" logged
        ... stop accepting, drain within the deadline ...
    # leaving the block stops the watchdog task and closes the metrics server

Rules: the watchdog task is owned by the context manager, which stops and awaits it on
every exit; readiness goes down *before* draining starts so a load balancer stops sending new
sessions; the metrics server is started only when ``[metrics] enabled`` and binds the management
address from the settings (SECURITY.md 9).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import structlog

from gateway.ops import systemd
from gateway.ops.metrics import Metrics, MetricsServer, serve_metrics
from gateway.ops.settings import MetricsSettings

__all__ = ["OpsHandle", "install_stop_signals", "running_ops"]

log = structlog.get_logger(__name__)


class OpsHandle:
    """What ``serve()`` holds while running: the metrics, and the two state changes."""

    def __init__(
        self,
        *,
        metrics: Metrics,
        server: MetricsServer | None,
        environ: Mapping[str, str] | None,
    ) -> None:
        self.metrics = metrics
        self.server = server
        self._environ = environ

    def ready(self) -> None:
        """Listeners are open: report ready to the load balancer and to systemd."""
        if self.server is not None:
            self.server.set_ready(True)
        systemd.ready(environ=self._environ)
        log.info("daemon.ready")

    def add_readiness_check(self, check: Callable[[], str | None]) -> None:
        """``/readyz`` answers 503 while ``check()`` names a problem (the spool short of space)."""
        if self.server is not None:
            self.server.add_readiness_check(check)

    def draining(self) -> None:
        """Shutdown began: stop attracting sessions, tell systemd we are stopping."""
        if self.server is not None:
            self.server.set_ready(False)
        systemd.stopping(environ=self._environ)
        log.info("daemon.draining")


@asynccontextmanager
async def running_ops(
    settings: MetricsSettings,
    *,
    metrics: Metrics | None = None,
    environ: Mapping[str, str] | None = None,
) -> AsyncIterator[OpsHandle]:
    """Start the metrics server (if enabled) and the systemd watchdog (if asked for)."""
    metrics = metrics or Metrics.create()
    server: MetricsServer | None = None
    if settings.enabled:
        server = await serve_metrics(metrics, settings.host, settings.port)
        log.info("metrics.listening", host=settings.host, port=server.port)
    stop_watchdog = asyncio.Event()
    interval = systemd.watchdog_interval(environ=environ)
    watchdog: asyncio.Task[int] | None = None
    try:
        if interval is not None:
            watchdog = asyncio.create_task(
                systemd.run_watchdog(interval, stop_watchdog, environ=environ),
                name="systemd-watchdog",
            )
            log.info("watchdog.started", interval_seconds=interval)
        yield OpsHandle(metrics=metrics, server=server, environ=environ)
    finally:
        # Not a TaskGroup around the yield: it would wrap the body's own exception in an
        # ExceptionGroup. The task is still owned: stopped and awaited here, on every exit.
        stop_watchdog.set()
        if watchdog is not None:
            await watchdog
        if server is not None:
            await server.aclose()


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (once logged); the daemon then drains and exits."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        if not stop.is_set():
            log.info("daemon.stop_requested", signal=signum.name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


def install_reload_signal(reload: Callable[[], None]) -> None:
    """SIGHUP calls ``reload`` (on the event loop; sessions are not touched)."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
