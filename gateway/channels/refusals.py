"""Refused connections in the log: the first few per source, then a count (issue 15 item 8).

A scanner or a flood from one network can be refused thousands of times a second (one ssh-audit
run: 4,701 ``connection.refused`` lines in 2 s), which buries every other line and fills disks.

Rules:

- Per source (the :class:`~gateway.channels.penalties.SourceGuard` network, else the peer
  address) and window of ``window_seconds``, the first ``per_source`` refusals are logged as
  ``connection.refused``, each with its channel, peer and reason. Later ones in the window are
  only counted; when the window ends, one ``connection.refused_summary`` line gives the count
  suppressed per channel and reason, with the window's length.
- Metrics stay exact: every refusal counts in ``gateway_connections_refused_total`` whether its
  line was written or not.
- The table of sources is bounded (``max_sources``): past it, ended windows are summarised and
  dropped first, then the oldest.

:class:`RefusalWindows` decides (values and ``now`` in, no I/O); :class:`RefusalLog` writes the
lines and owns the one timer that writes summaries as windows end. One log is shared by every
channel, as the guard is.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.ops.metrics import Metrics

log = structlog.get_logger("gateway.channels")


@dataclass(frozen=True, slots=True, kw_only=True)
class RefusalLogPolicy:
    """How many ``connection.refused`` lines per source and window (``[limits]``)."""

    per_source: int = 10
    window_seconds: float = 60.0
    max_sources: int = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """Refusals of one source whose lines a window left out."""

    source: str
    suppressed: dict[str, int]
    """Count per ``channel:reason``."""
    window_seconds: float


@dataclass(slots=True)
class _Window:
    started: float
    logged: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class RefusalWindows:
    """Which refusals are logged, and the summaries due (no I/O, no clock of its own)."""

    policy: RefusalLogPolicy = field(default_factory=RefusalLogPolicy)
    _windows: dict[str, _Window] = field(default_factory=dict)
    logged: int = 0
    suppressed: int = 0
    _overflow: list[Summary] = field(default_factory=list)

    def note(self, source: str, kind: str, now: float) -> tuple[bool, Summary | None]:
        """Count one refusal of ``source`` (``kind``: ``channel:reason``): whether to log its
        line, and the summary of the source's previous window if it just ended."""
        ended: Summary | None = None
        window = self._windows.get(source)
        if window is not None and now - window.started >= self.policy.window_seconds:
            ended = self._summary(source, window)
            window = None
        if window is None:
            if len(self._windows) >= self.policy.max_sources:
                self._make_room(now)
            window = self._windows[source] = _Window(started=now)
        if window.logged < self.policy.per_source:
            window.logged += 1
            self.logged += 1
            return True, ended
        window.suppressed[kind] += 1
        self.suppressed += 1
        return False, ended

    def due(self, now: float) -> list[Summary]:
        """The summaries of the windows ended by ``now`` (those windows are dropped)."""
        ended = [
            source
            for source, window in self._windows.items()
            if now - window.started >= self.policy.window_seconds
        ]
        summaries = [self._summary(source, self._windows[source]) for source in ended]
        for source in ended:
            del self._windows[source]
        return [s for s in summaries if s is not None]

    def drain(self) -> list[Summary]:
        """The summaries of every window, ended or not (at stop)."""
        summaries = [self._summary(source, window) for source, window in self._windows.items()]
        self._windows.clear()
        return [s for s in summaries if s is not None]

    def pending(self) -> bool:
        """Whether a window holds suppressed refusals (a summary will be due)."""
        return any(window.suppressed for window in self._windows.values())

    def __len__(self) -> int:
        return len(self._windows)

    def _summary(self, source: str, window: _Window) -> Summary | None:
        if not window.suppressed:
            return None
        return Summary(
            source=source,
            suppressed=dict(window.suppressed),
            window_seconds=self.policy.window_seconds,
        )

    def _make_room(self, now: float) -> None:
        self._overflow.extend(self.due(now))
        while len(self._windows) >= self.policy.max_sources:
            source = next(iter(self._windows))  # the oldest (dicts keep insertion order)
            dropped = self._summary(source, self._windows.pop(source))
            if dropped is not None:
                self._overflow.append(dropped)

    def overflow(self) -> list[Summary]:
        """Summaries of windows dropped to make room, not yet written."""
        taken, self._overflow = self._overflow, []
        return taken


class RefusalLog:
    """Writes ``connection.refused`` and ``connection.refused_summary`` lines as
    :class:`RefusalWindows` decides, and counts every refusal in the metrics."""

    def __init__(
        self,
        policy: RefusalLogPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.windows = RefusalWindows(policy or RefusalLogPolicy())
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None

    def refused(
        self,
        *,
        channel: str,
        source: str | None,
        peer: str | None,
        reason: str,
        metrics: Metrics | None = None,
        **fields: Any,
    ) -> None:
        """One connection of ``peer`` (counted under ``source``) refused for ``reason``."""
        if metrics is not None:
            metrics.connections_refused_total.labels(channel=channel, reason=reason).inc()
        key = source or peer or "?"
        write, ended = self.windows.note(key, f"{channel}:{reason}", self._clock())
        self._write(self.windows.overflow())
        if ended is not None:
            self._write([ended])
        if write:
            log.warning(
                "connection.refused",
                channel=channel,
                peer=peer,
                source=source,
                reason=reason,
                **fields,
            )
        elif self._timer is None:
            self._arm()

    def flush(self) -> None:
        """Write the summaries of the windows that ended (the timer calls it)."""
        self._timer = None
        self._write(self.windows.due(self._clock()))
        if self.windows.pending():
            self._arm()

    def close(self) -> None:
        """Write every summary now and stop the timer (a listener stops)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._write(self.windows.drain())

    def _arm(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover  (refusals happen on the listener's loop)
            return
        self._timer = loop.call_later(self.windows.policy.window_seconds, self.flush)

    @staticmethod
    def _write(summaries: list[Summary]) -> None:
        for summary in summaries:
            log.warning(
                "connection.refused_summary",
                source=summary.source,
                suppressed=sum(summary.suppressed.values()),
                by_reason=summary.suppressed,
                window_seconds=summary.window_seconds,
            )
