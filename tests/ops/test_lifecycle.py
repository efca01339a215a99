"""The operational frame: readiness, systemd notifications and the watchdog, end to end."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ops.lifecycle import install_stop_signals, running_ops
from gateway.ops.settings import MetricsSettings


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A non-blocking datagram socket bound to a short temporary path."""
    with tempfile.TemporaryDirectory(prefix="gw-lc-") as tmp:
        path = str(Path(tmp) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.setblocking(False)
        try:
            yield sock, path
        finally:
            sock.close()


async def http_status(port: int, path: str) -> int:
    """The status of a plain GET on loopback."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


async def test_ready_and_draining_reach_systemd_and_readyz(
    notify_socket: tuple[socket.socket, str],
) -> None:
    """ready() opens /readyz and sends READY=1; draining() closes it and sends STOPPING=1."""
    sock, path = notify_socket
    loop = asyncio.get_running_loop()
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000000"}
    async with asyncio.timeout(30):
        async with running_ops(MetricsSettings(port=0), environ=env) as ops:
            assert ops.server is not None
            assert await loop.sock_recv(sock, 4096) == b"WATCHDOG=1"
            assert await http_status(ops.server.port, "/readyz") == 503
            ops.ready()
            assert await loop.sock_recv(sock, 4096) == b"READY=1"
            assert await http_status(ops.server.port, "/readyz") == 200
            ops.draining()
            assert await loop.sock_recv(sock, 4096) == b"STOPPING=1"
            assert await http_status(ops.server.port, "/readyz") == 503
            port = ops.server.port
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)


async def test_body_exception_is_not_wrapped() -> None:
    """An error in the daemon's body comes out as itself, and everything is closed."""
    ports: list[int] = []

    async def body() -> None:
        async with running_ops(MetricsSettings(port=0), environ={}) as ops:
            assert ops.server is not None
            ports.append(ops.server.port)
            raise KeyError("boom")

    with pytest.raises(KeyError):
        await body()
    (port,) = ports
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_metrics_disabled_starts_no_server() -> None:
    """[metrics] enabled = false: no listener, ready() still works."""
    async with running_ops(MetricsSettings(enabled=False), environ={}) as ops:
        assert ops.server is None
        ops.ready()


async def test_sigterm_sets_the_stop_event() -> None:
    """SIGTERM sets the stop event instead of killing the process."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    loop = asyncio.get_running_loop()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        async with asyncio.timeout(10):
            await stop.wait()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGINT)
