"""Tell systemd how the daemon is doing: the ``sd_notify`` protocol, without a dependency.

The protocol (sd_notify(3)): newline-separated ``KEY=VALUE`` assignments sent as one datagram on
the ``AF_UNIX`` socket named by ``$NOTIFY_SOCKET``. A name starting with ``@`` is in the Linux
abstract namespace (the ``@`` stands for a leading NUL byte). When ``$NOTIFY_SOCKET`` is unset
(not started by systemd, or ``Type=`` is not ``notify``) every call is a no-op returning False.

Rules:
- Only :func:`notify` takes raw assignments; :func:`status` scrubs its free text so a value can
  never add an assignment of its own (a newline in a status would otherwise forge ``READY=1``).
- The watchdog interval is *half* of ``$WATCHDOG_USEC``, as sd_watchdog_enabled(3) recommends,
  and only when ``$WATCHDOG_PID`` is unset or names this process.
- The environment is a parameter (default ``os.environ``) so tests and callers can inject it.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import Mapping

__all__ = [
    "notify",
    "ready",
    "run_watchdog",
    "status",
    "stopping",
    "watchdog_interval",
    "watchdog_ping",
]

# C0 controls, DEL and the Unicode bidi overrides/isolates: never part of a status text.
_UNSAFE = re.compile("[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def _socket_address(name: str) -> str | bytes:
    if name.startswith("@"):
        # Abstract namespace: a leading NUL, no terminating NUL, no filesystem entry.
        return b"\0" + name[1:].encode()
    return name


def notify(state: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (``KEY=VALUE`` lines) to systemd; False when there is no notify socket.

    Raises ``OSError`` when the socket is configured but the datagram cannot be sent: systemd
    asked for notifications, so failing to deliver them is worth knowing about.
    """
    env = os.environ if environ is None else environ
    name = env.get("NOTIFY_SOCKET", "")
    if not name or name[0] not in "/@":
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        # Bounded: a blocked systemd must not freeze the event loop that calls us.
        sock.settimeout(1.0)
        sock.connect(_socket_address(name))
        sock.sendall(state.encode())
    return True


def ready(*, environ: Mapping[str, str] | None = None) -> bool:
    """The daemon is serving: listeners are open and the registry is reachable."""
    return notify("READY=1", environ=environ)


def stopping(*, environ: Mapping[str, str] | None = None) -> bool:
    """The daemon has begun its graceful shutdown (drain)."""
    return notify("STOPPING=1", environ=environ)


def status(text: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Show ``text`` in ``systemctl status``; control characters become spaces."""
    return notify("STATUS=" + _UNSAFE.sub(" ", text), environ=environ)


def watchdog_ping(*, environ: Mapping[str, str] | None = None) -> bool:
    """Keep the systemd watchdog from restarting the daemon."""
    return notify("WATCHDOG=1", environ=environ)


def watchdog_interval(*, environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings (half of ``$WATCHDOG_USEC``), or None when not asked for."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000


async def run_watchdog(
    interval: float, stop: asyncio.Event, *, environ: Mapping[str, str] | None = None
) -> int:
    """Ping the watchdog every ``interval`` seconds until ``stop`` is set; return the ping count.

    Meant to be one task of the daemon's ``TaskGroup``. The wait is on ``stop`` with a timeout, so
    shutdown ends the loop at once instead of after the next tick.
    """
    pings = 0
    while not stop.is_set():
        watchdog_ping(environ=environ)
        pings += 1
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            continue
    return pings
