"""sd_notify over a real AF_UNIX datagram socket, path and abstract namespace alike."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ops import systemd


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound to a short path in a fresh temporary directory."""
    # AF_UNIX paths are limited to 107 bytes, so not pytest's (long) tmp_path.
    with tempfile.TemporaryDirectory(prefix="gw-sd-") as tmp:
        path = str(Path(tmp) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(5)
        try:
            yield sock, path
        finally:
            sock.close()


def test_ready_reaches_the_socket(notify_socket: tuple[socket.socket, str]) -> None:
    """ready() sends READY=1 to the path in NOTIFY_SOCKET."""
    sock, path = notify_socket
    assert systemd.ready(environ={"NOTIFY_SOCKET": path}) is True
    assert sock.recv(4096) == b"READY=1"


def test_each_helper_sends_its_assignment(notify_socket: tuple[socket.socket, str]) -> None:
    """stopping(), watchdog_ping() and notify() send exactly their assignments."""
    sock, path = notify_socket
    env = {"NOTIFY_SOCKET": path}
    systemd.stopping(environ=env)
    systemd.watchdog_ping(environ=env)
    systemd.notify("RELOADING=1\nMONOTONIC_USEC=1", environ=env)
    assert [sock.recv(4096) for _ in range(3)] == [
        b"STOPPING=1",
        b"WATCHDOG=1",
        b"RELOADING=1\nMONOTONIC_USEC=1",
    ]


def test_status_cannot_forge_an_assignment(notify_socket: tuple[socket.socket, str]) -> None:
    """A newline in a status text cannot add READY=1 of its own."""
    sock, path = notify_socket
    systemd.status("draining\nREADY=1\u202e", environ={"NOTIFY_SOCKET": path})
    assert sock.recv(4096) == b"STATUS=draining READY=1 "


def test_abstract_namespace_socket() -> None:
    """A NOTIFY_SOCKET starting with '@' is an abstract-namespace address."""
    name = "gw-test-" + secrets.token_hex(8)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        assert systemd.ready(environ={"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(4096) == b"READY=1"


def test_without_notify_socket_nothing_is_sent() -> None:
    """Outside systemd every call is a no-op returning False."""
    assert systemd.ready(environ={}) is False
    assert systemd.notify("READY=1", environ={"NOTIFY_SOCKET": "relative/path"}) is False


def test_configured_but_absent_socket_raises() -> None:
    """A NOTIFY_SOCKET naming nothing is an error, not silence."""
    with tempfile.TemporaryDirectory(prefix="gw-sd-") as tmp, pytest.raises(FileNotFoundError):
        systemd.ready(environ={"NOTIFY_SOCKET": str(Path(tmp) / "missing")})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    """The interval is half of WATCHDOG_USEC, and only for this process."""
    assert systemd.watchdog_interval(environ=env) == expected


async def test_run_watchdog_pings_until_stopped(
    notify_socket: tuple[socket.socket, str],
) -> None:
    """run_watchdog pings at once, then ends as soon as its stop event is set."""
    sock, path = notify_socket
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    async with asyncio.timeout(10):
        task = asyncio.create_task(
            systemd.run_watchdog(3600.0, stop, environ={"NOTIFY_SOCKET": path})
        )
        assert await loop.sock_recv(sock, 4096) == b"WATCHDOG=1"
        stop.set()
        assert await task == 1
